"""The FastAPI app of `medscribe serve`: OpenAI-compatible chat completions over the batching engine.

    app = create_app(settings, engine, models, rag=RagFrontEnd(settings))   # what medscribe.serve.build_app does
    uvicorn.run(app, host="127.0.0.1", port=8000)

Endpoints: POST /v1/chat/completions (plain, and `stream: true` as server-sent events in OpenAI's chunk format),
GET /v1/models, GET /health (no key needed), GET /metrics (Prometheus text), GET / (the web page: medscribe/serve/
web.py) and GET /ui/comparison (the eval folder it shows).

Faults answer with OpenAI's error shape and the request id, and the server goes on: malformed JSON 400, bad key
401, unknown model 404, oversize 413, a request that violates the request schema (or an unusable
response_format) 422, a model answer that still violates response_format after `serve.schema_retries` retries
422 (`response_format_unsatisfied`), a full queue 503 + Retry-After, a generation failure 500 (the detail goes to
the PHI-scrubbed log under the request id, never a traceback to the client). A stream whose client disconnects
cancels its job: it leaves the queue, or stops at its next token, and frees its slot.

`response_format` (json_object / json_schema) is validated-and-retried, not constrained: the answer is
validated with jsonschema; a failing answer is asked again (sampled, with the validation error as a user turn)
up to `serve.schema_retries` times. A stream with a response_format is validated first, then sent.
"""

from __future__ import annotations

import json
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from medscribe.ask.answers import _objects
from medscribe.serve import protocol as p
from medscribe.serve.batching import GenerationError, Job, QueueFull
from medscribe.serve.cache import ResponseCache
from medscribe.serve.guards import LogScrubber, TooLarge, authorized, cap_max_tokens, log, read_body
from medscribe.serve.metrics import Metrics

RETRY_TEMPERATURE = 0.7  # a greedy retry would repeat the same answer


@dataclass
class ServedModel:
    name: str
    kind: str  # "base" | "tuned" | "rag"
    adapter: bool
    fingerprint: str


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str, kind: str = "invalid_request_error",
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.kind, self.headers = status, message, code, kind, headers or {}


def create_app(settings: Any, engine: Any, models: list[ServedModel], *, rag: Any = None,
               metrics: Metrics | None = None, api_key: str | None = None) -> FastAPI:
    serve = settings.serve
    metrics = metrics or getattr(engine, "metrics", None) or Metrics()
    cache = ResponseCache(serve.cache_size)
    scrub = LogScrubber()
    by_name = {m.name: m for m in models}

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        engine.start()
        try:
            yield
        finally:
            engine.stop()

    app = FastAPI(title="medscribe", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine, app.state.metrics, app.state.cache, app.state.settings = engine, metrics, cache, settings
    app.state.rag = rag

    def error_response(exc: ApiError, rid: str) -> JSONResponse:
        return JSONResponse(p.error_body(exc.message, exc.kind, exc.code, rid), status_code=exc.status,
                            headers={"x-request-id": rid, **exc.headers})

    def check_key(request: Request) -> None:
        if not authorized(request.headers.get("authorization"), api_key):
            raise ApiError(401, "missing or wrong API key (Authorization: Bearer ...)", "invalid_api_key",
                           "authentication_error")

    def log_line(rid: str, model: str, status: int, started: float, answer: dict | None, note: str = "",
                 text: str | None = None) -> None:
        latency = time.monotonic() - started
        tokens = (answer or {}).get("prompt_tokens") or 0, (answer or {}).get("completion_tokens") or 0
        metrics.request(model, status, latency, *tokens)
        line = f"{rid} model={model} status={status} latency={latency:.3f}s tokens={tokens[0]}/{tokens[1]}{note}"
        if serve.log_text and (text or answer):
            asked, said = scrub(text or "", (answer or {}).get("content") or "")
            line += f" request={json.dumps(asked, ensure_ascii=False)} answer={json.dumps(said, ensure_ascii=False)}"
        log.info(line)

    def submit(messages, model: ServedModel, max_tokens: int, temperature: float, top_p: float,
               stop: tuple[str, ...] = ()) -> Job:
        job = Job(messages, adapter=model.adapter, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                  stop=stop)
        try:
            engine.submit(job)
        except QueueFull as exc:
            metrics.error("queue_full")
            raise ApiError(503, f"server busy: {exc}; retry later", "queue_full", "server_error",
                           {"Retry-After": str(serve.retry_after_s)}) from None
        return job

    async def generate(messages, model: ServedModel, max_tokens: int, temperature: float, top_p: float,
                       stop: tuple[str, ...] = ()) -> Job:
        job = submit(messages, model, max_tokens, temperature, top_p, stop)
        try:
            return await job.result()
        except GenerationError as exc:
            raise _Failed(str(exc)) from None
        except BaseException:  # cancelled while waiting (client gone): free the slot
            engine.cancel(job)
            raise

    async def complete(req: p.ChatRequest, model: ServedModel, max_tokens: int, temperature: float,
                       validate: Any) -> dict[str, Any]:
        """The whole answer (validated and retried when a response_format asks for JSON)."""
        top_p = req.top_p or 1.0
        plan = None
        if model.kind == "rag":
            text = p.text_of(next((m for m in reversed(req.messages) if m.role == "user"), req.messages[-1]))
            if not text.strip():
                raise ApiError(422, "medscribe-rag: the last user message (the finding or question) is empty",
                               "empty_input")
            plan = await run_in_threadpool(rag.prepare, text, req.medscribe)
            if plan["copied"]:
                try:
                    return {**rag.answer(plan, None, attempts=0), "finish_reason": "stop"}
                except LookupError as exc:
                    raise ApiError(422, str(exc), "nothing_to_copy") from None
            messages = plan["messages"]
        else:
            messages = p.chat_messages(req)
        attempts, tried, answer, problem = 0, messages, None, None
        prompt_tokens = completion_tokens = 0
        while True:
            attempts += 1
            job = await generate(tried, model, max_tokens, temperature if attempts == 1 else
                                 max(temperature, RETRY_TEMPERATURE), top_p, tuple(req.stop))
            prompt_tokens += job.prompt_tokens
            completion_tokens += job.completion_tokens
            problem = None
            if plan is not None:
                answer = rag.answer(plan, job.text, prompt_tokens, completion_tokens, attempts)
                problem = None if answer["parse_ok"] else answer["medscribe"]["parse_error"]
            else:
                answer = {"content": job.text, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
            answer["finish_reason"] = job.finish_reason
            if validate is not None and problem is None:
                content, problem = checked(answer["content"], validate)
                answer["content"] = content
            if problem is None or attempts > serve.schema_retries:
                break
            tried = [*messages, {"role": "assistant", "content": job.text},
                     {"role": "user", "content": f"That answer is not valid ({problem}). Answer again with the "
                      "JSON only."}]
        if problem is not None and validate is not None:
            raise ApiError(422, f"the model's answer did not match response_format after {attempts} attempt(s): "
                           f"{problem}", "response_format_unsatisfied")
        return answer

    @app.get("/")
    async def index() -> HTMLResponse:
        from medscribe.serve.web import page

        return HTMLResponse(page())  # static: the data it shows comes from the key-checked endpoints

    @app.get("/ui/comparison")
    async def comparison(request: Request) -> Response:
        rid = new_id()
        try:
            check_key(request)
            if not serve.eval_dir:
                raise ApiError(404, "no eval folder: start medscribe serve with --eval DIR (serve.eval_dir)",
                               "no_eval_dir")
            from medscribe.errors import UsageError
            from medscribe.serve.web import load_comparison

            try:
                return JSONResponse(await run_in_threadpool(load_comparison, serve.eval_dir))
            except UsageError as exc:
                raise ApiError(404, str(exc), "no_eval_dir") from None
        except ApiError as exc:
            return error_response(exc, rid)

    def key_refusal(request: Request) -> Response | None:
        """The error response when the request lacks the API key, else None (endpoints with no other checks)."""
        try:
            check_key(request)
        except ApiError as exc:
            return error_response(exc, new_id())
        return None

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "models": list(by_name), "queue_depth": engine.depth}

    @app.get("/metrics")
    async def metrics_endpoint(request: Request) -> Response:
        if (refused := key_refusal(request)) is not None:
            return refused
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def list_models(request: Request) -> Response:
        if (refused := key_refusal(request)) is not None:
            return refused
        created = int(time.time())
        return JSONResponse({"object": "list", "data": [
            {"id": m.name, "object": "model", "created": created, "owned_by": "medscribe", "medscribe_kind": m.kind}
            for m in models]})

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        rid, started = new_id(), time.monotonic()
        model_name, text = "-", None
        try:
            check_key(request)
            try:
                body = await read_body(request, serve.max_request_bytes)
            except TooLarge as exc:
                raise ApiError(413, str(exc), "request_too_large") from None
            try:
                data = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise ApiError(400, f"malformed JSON body ({getattr(exc, 'msg', exc)})", "invalid_json") from None
            if not isinstance(data, dict):
                raise ApiError(400, "the body must be a JSON object", "invalid_json")
            try:
                req = p.ChatRequest.model_validate(data)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(x) for x in first["loc"]) or "body"
                raise ApiError(422, f"{where}: {first['msg']}", "invalid_request") from None
            model_name = req.model if req.model in by_name else "-"
            model = by_name.get(req.model)
            if model is None:
                raise ApiError(404, f"model {req.model!r} is not served here (GET /v1/models)", "model_not_found")
            if req.stop and model.kind == "rag":
                raise ApiError(422, "stop: medscribe-rag answers with a JSON object, which a stop string would cut; "
                               "send stop to the base or tuned model", "invalid_request")
            text = p.text_of(req.messages[-1])
            try:
                validate = p.answer_validator(req.response_format)
            except p.BadSchema as exc:
                raise ApiError(422, str(exc), "invalid_response_format") from None
            max_tokens, capped = cap_max_tokens(req.max_tokens or req.max_completion_tokens,
                                                serve.default_max_tokens or settings.ask.max_new_tokens,
                                                serve.max_tokens_cap)
            headers = {"x-request-id": rid}
            if capped:
                headers["x-medscribe-max-tokens-capped"] = str(max_tokens)
            temperature = req.temperature if req.temperature is not None else settings.ask.temperature
            key = cache.key(data, model.fingerprint) if serve.cache and temperature == 0 else None
            note = " max_tokens_capped" if capped else ""
            answer = cache.get(key) if key else None
            if key:
                metrics.cache(answer is not None)
            if answer is not None:
                headers["x-medscribe-cache"] = "hit"
                note += " cache=hit"
            elif req.stream and validate is None and model.kind != "rag":
                return await stream_live(req, model, max_tokens, temperature, rid, started, headers, key, text)
            else:
                answer = await complete(req, model, max_tokens, temperature, validate)
                if key and answer.get("finish_reason") in ("stop", "length"):
                    cache.put(key, answer)
            log_line(rid, model.name, 200, started, answer, note, text)
            if req.stream:
                return StreamingResponse(replay(rid, model.name, answer, req), media_type="text/event-stream",
                                         headers=headers)
            return JSONResponse(p.completion_body(rid, model.name, answer), headers=headers)
        except ApiError as exc:
            log_line(rid, model_name, exc.status, started, None, f" error={exc.code}")
            return error_response(exc, rid)
        except _Failed as exc:
            return failed(rid, model_name, started, str(exc))
        except Exception as exc:  # a bug: 500 with the request id, the (scrubbed) detail in the log only
            return failed(rid, model_name, started, f"{type(exc).__name__}: {exc}")

    def failed(rid: str, model_name: str, started: float, detail: str) -> JSONResponse:
        metrics.error("internal")
        log.error("%s generation failed: %s", rid, scrub(detail)[0])
        log_line(rid, model_name, 500, started, None, " error=internal")
        return error_response(ApiError(500, f"the server failed to answer (request id {rid}); see the server log",
                                       "internal_error", "server_error"), rid)

    async def stream_live(req, model, max_tokens, temperature, rid, started, headers, key, text):
        job = submit(p.chat_messages(req), model, max_tokens, temperature, req.top_p or 1.0, tuple(req.stop))
        include_usage = bool((req.stream_options or {}).get("include_usage"))

        async def events():
            created, status = int(time.time()), 200
            try:
                yield p.chunk(rid, model.name, created, {"role": "assistant", "content": ""})
                async for kind, value in job.events():
                    if kind == "delta":
                        yield p.chunk(rid, model.name, created, {"content": value})
                    elif kind == "error":
                        status = 500
                        metrics.error("internal")
                        log.error("%s generation failed: %s", rid, scrub(value)[0])
                        body = p.error_body(f"the server failed to answer (request id {rid})", "server_error",
                                            "internal_error", rid)
                        yield f"data: {json.dumps(body)}\n\n"
                        return
                yield p.chunk(rid, model.name, created, {}, job.finish_reason)
                answer = {"content": job.text, "finish_reason": job.finish_reason,
                          "prompt_tokens": job.prompt_tokens, "completion_tokens": job.completion_tokens}
                if include_usage:
                    yield p.usage_chunk(rid, model.name, created, answer)
                yield p.DONE
                if key and job.finish_reason in ("stop", "length"):
                    cache.put(key, answer)
            finally:
                if job.finish_reason is None and job.error is None:  # the client went away mid-stream
                    engine.cancel(job)
                    metrics.stream_cancelled()
                    status = 499
                log_line(rid, model.name, status, started, {"content": job.text, "prompt_tokens": job.prompt_tokens,
                         "completion_tokens": job.completion_tokens}, " stream", text)

        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    return app


class _Failed(Exception):
    """A generation error (500)."""


def new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def checked(content: str, validate: Any) -> tuple[str, str | None]:
    """(content, None) when it validates, else the first balanced {...} inside it that does, else the error."""
    text = content.strip()
    problem = validate(text)
    if problem is None:
        return text, None
    for block in _objects(text):  # a fenced or chatty answer around a valid object
        if validate(block) is None:
            return block, None
    return content, problem


async def replay(rid: str, model: str, answer: dict[str, Any], req: p.ChatRequest):
    """A finished answer (cached, validated or medscribe-rag) as a stream of OpenAI chunks."""
    created = int(time.time())
    extra = {"medscribe": answer["medscribe"]} if answer.get("medscribe") else None
    yield p.chunk(rid, model, created, {"role": "assistant", "content": ""})
    yield p.chunk(rid, model, created, {"content": answer["content"]})
    yield p.chunk(rid, model, created, {}, answer.get("finish_reason") or "stop", extra)
    if (req.stream_options or {}).get("include_usage"):
        yield p.usage_chunk(rid, model, created, answer)
    yield p.DONE
