"""Strict JSON answers: the schema sent to servers, and parsing/repair of what a model actually wrote.

    from medscribe.ask.answers import parse_answer
    parsed = parse_answer('```json\\n{"result": "Киста печени"}\\n```', task="report")
    parsed.ok, parsed.prediction, parsed.repaired   # True, "Киста печени", True

Order of attempts: strict `json.loads`, then the first balanced `{...}` in the text (code fences,
chatter before/after), then `json_repair` (single quotes, unterminated strings/braces, trailing commas).
`json-repair` is a maintained, pure-Python, dependency-free package built exactly for LLM output; writing
our own tolerant parser would be more code with fewer cases covered. Whatever is parsed must validate
against `medscribe.schemas.ANSWER_SCHEMAS[task]`; otherwise the raw text is kept as the prediction with
`ok=False` and the reason, never silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from medscribe.schemas import ANSWER_SCHEMAS, ANSWER_TEXT_FIELD


@dataclass
class ParsedAnswer:
    ok: bool
    prediction: str
    parsed: dict[str, Any] | None
    repaired: bool = False
    reason: str | None = None


def answer_json_schema(task: str, reasoning: bool = False) -> dict[str, Any]:
    """The JSON schema of the answer model for `response_format={"type": "json_schema", ...}`.

    `reasoning=True` (prompt variant "cot") makes `reasoning` required and first; otherwise the property is left
    out, so a schema-constrained server spends no tokens on it."""
    schema = ANSWER_SCHEMAS[task].model_json_schema()
    schema["additionalProperties"] = False
    if reasoning:
        schema["required"] = ["reasoning", *[r for r in schema.get("required", []) if r != "reasoning"]]
        schema["properties"]["reasoning"] = {"title": "Reasoning", "type": "string"}
    else:
        schema["properties"].pop("reasoning", None)
    return schema


def response_format(task: str, reasoning: bool = False) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": f"{task}_answer", "schema": answer_json_schema(task, reasoning), "strict": False},
    }


def _objects(text: str) -> Iterator[str]:
    """Every top-level balanced {...} in `text`, honouring strings (braces inside values do not count)."""
    start = text.find("{")
    while start != -1:
        depth, in_string, escaped, end = 0, False, False, None
        for i in range(start, len(text)):
            ch = text[i]
            if in_string:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_string = False
            elif ch == '"':
                in_string = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    end = i
                    break
        if end is None:
            return
        yield text[start : end + 1]
        start = text.find("{", end + 1)


def _candidates(raw: str) -> Iterator[tuple[Any, bool]]:
    """Objects decoded from `raw`, best first (lazily), each with whether a repair was needed."""
    text = raw.strip()
    try:
        yield json.loads(text), False
    except (json.JSONDecodeError, ValueError):
        pass
    for block in _objects(text):
        if block == text:
            continue
        try:
            yield json.loads(block), True
        except (json.JSONDecodeError, ValueError):
            continue
    import json_repair

    try:
        repaired = json_repair.repair_json(text, return_objects=True)
    except Exception:  # json_repair is tolerant, but a parser bug must not kill a batch row
        repaired = None
    for item in repaired if isinstance(repaired, list) else [repaired]:
        if isinstance(item, dict) and item:
            yield item, True


def parse_answer(raw: str | None, task: str) -> ParsedAnswer:
    """Parse a model's raw answer for `task`; never raises."""
    if raw is None:
        return ParsedAnswer(False, "", None, reason="no output")
    if task == "dialogue":  # a conversation turn is free text (sft trains it without the JSON format)
        return ParsedAnswer(True, raw.strip(), None)
    schema = ANSWER_SCHEMAS[task]
    field = ANSWER_TEXT_FIELD[task]
    reason = "no JSON object found"
    for obj, repaired in _candidates(raw):
        if not isinstance(obj, dict):
            reason = f"JSON is a {type(obj).__name__}, not an object"
            continue
        try:
            answer = schema.model_validate(obj)
        except ValidationError as exc:
            first = exc.errors()[0]
            reason = f"schema: {'.'.join(str(p) for p in first['loc']) or field}: {first['msg']}"
            continue
        data = answer.model_dump()
        return ParsedAnswer(True, str(data[field]), data, repaired=repaired)
    return ParsedAnswer(False, raw.strip(), None, reason=reason)
