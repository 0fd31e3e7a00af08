"""The OpenAI chat-completions wire format `medscribe serve` speaks: request model, responses, chunks, errors.

Unknown request fields are ignored (clients send many optional ones); fields medscribe cannot honour are
refused (n > 1; `stop` on medscribe-rag, whose answer is a JSON object a stop string would cut) rather than
silently dropped. Errors have OpenAI's shape:
`{"error": {"message", "type", "code", "request_id"}}`.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class MedscribeOptions(BaseModel):
    """medscribe-rag only, sent as `extra_body={"medscribe": {...}}`: the record fields of the finding."""

    model_config = ConfigDict(extra="forbid")

    task: Literal["report", "qa"] | None = None
    organ: str | None = None
    modality: str | None = None
    specialty: str | None = None
    k: int | None = Field(default=None, ge=0, le=50)


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    # Up to 4 strings (OpenAI's limit): generation ends before the first one, which is not returned.
    stop: str | list[str] | None = Field(default_factory=list)
    medscribe: MedscribeOptions | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("give at most 4 non-empty stop strings")
        return stops


def text_of(message: Message) -> str:
    """A message's text: a string, or the text parts of a content list."""
    if isinstance(message.content, str):
        return message.content
    if not message.content:
        return ""
    return "".join(str(p.get("text", "")) for p in message.content if p.get("type") in ("text", None))


def chat_messages(request: ChatRequest) -> list[dict[str, str]]:
    """Messages for the chat template (developer -> system, tool turns as user text)."""
    roles = {"developer": "system", "tool": "user"}
    return [{"role": roles.get(m.role, m.role), "content": text_of(m)} for m in request.messages]


def error_body(message: str, kind: str, code: str, request_id: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code, "request_id": request_id}}


def completion_body(request_id: str, model: str, answer: dict[str, Any]) -> dict[str, Any]:
    body = {
        "id": request_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer["content"]},
                     "finish_reason": answer["finish_reason"], "logprobs": None}],
        "usage": usage(answer),
    }
    if answer.get("medscribe") is not None:
        body["medscribe"] = answer["medscribe"]
    return body


def usage(answer: dict[str, Any]) -> dict[str, int]:
    p, c = int(answer.get("prompt_tokens") or 0), int(answer.get("completion_tokens") or 0)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def chunk(request_id: str, model: str, created: int, delta: dict[str, Any], finish_reason: str | None = None,
          extra: dict[str, Any] | None = None) -> str:
    """One SSE event in OpenAI's chat.completion.chunk format."""
    body: dict[str, Any] = {
        "id": request_id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }
    if extra:
        body.update(extra)
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def usage_chunk(request_id: str, model: str, created: int, answer: dict[str, Any]) -> str:
    body = {"id": request_id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": usage(answer)}
    return f"data: {json.dumps(body)}\n\n"


DONE = "data: [DONE]\n\n"


# --- response_format ---------------------------------------------------------------------------------------
class BadSchema(ValueError):
    """The request's response_format is not usable (422)."""


def answer_validator(response_format: dict[str, Any] | None):
    """None (free text), or a function text -> error message or None for `json_object` / `json_schema`."""
    if not response_format or response_format.get("type") in (None, "text"):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        schema: dict[str, Any] | None = {"type": "object"}
    elif kind == "json_schema":
        spec = response_format.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise BadSchema("response_format.json_schema.schema: required, a JSON schema object")
        schema = spec["schema"]
    else:
        raise BadSchema(f"response_format.type: {kind!r} is not one of text, json_object, json_schema")
    import jsonschema

    try:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise BadSchema(f"response_format.json_schema.schema: not a valid JSON schema ({exc.message})") from None
    validator = cls(schema)

    def check(text: str) -> str | None:
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, ValueError) as exc:
            return f"not JSON ({exc.msg})"
        error = next(iter(validator.iter_errors(value)), None)
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        return f"{where}: {error.message}"

    return check
