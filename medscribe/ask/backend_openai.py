"""OpenAI-compatible backend (vLLM, OpenAI, Together, llama.cpp server) through `openai.AsyncOpenAI`.

    backend = OpenAIBackend(settings.ask)
    backend.generate([Request(messages, "report"), ...], on_done=lambda i, gen: ...)

- Bounded concurrency: an asyncio.Semaphore of `ask.concurrency` requests in flight.
- Retries: our own loop rather than the client's `max_retries` (set to 0), because the log records the
  attempt count per row, the backoff base must be configurable (tests use milliseconds), and a shared
  circuit breaker is needed: once one request has exhausted its retries on a refused connection, the other
  rows fail fast instead of each waiting out its own backoff against a dead server. Retried: 408/409/429,
  5xx, timeouts, connection errors, responses without choices. A server's Retry-After is honoured.
- `ask.json_mode`: "schema" sends a JSON-schema `response_format`; "prompt" never does (the prompt already
  asks for JSON); "auto" tries the schema and, when the server rejects it (400/422 saying it is unsupported, or
  llama.cpp's 500 naming response_format), falls back to prompt-only
  JSON for the rest of the run (`json_mode_used`, `json_mode_fallback` are reported in summary.json).
- The API key is read from the SecretStr only here and is scrubbed from every error message.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from medscribe.ask.answers import response_format
from medscribe.ask.generation import Generation, OnDone, Request, one_line, redact
from medscribe.ask.vision import openai_messages

RETRYABLE_STATUS = {408, 409, 429}
SCHEMA_HINTS = ("response_format", "json_schema", "guided", "structured output", "not supported", "unsupported")


class _NoChoices(Exception):
    """A 200 response that carries no completion (a broken proxy or server): worth a retry."""


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000.0
        if "retry-after" in headers:
            return float(headers["retry-after"])
    except (TypeError, ValueError):
        return None
    return None


class OpenAIBackend:
    name = "openai"

    def __init__(self, ask: Any):
        if not ask.base_url:
            from medscribe.errors import UsageError

            raise UsageError("ask.base_url: required for the openai backend (e.g. http://127.0.0.1:8000/v1)")
        self.ask = ask
        self.model = ask.model
        self._api_key = ask.api_key.get_secret_value() if ask.api_key is not None else "EMPTY"
        self.json_mode_used = "prompt" if ask.json_mode == "prompt" else "schema"
        self.json_mode_fallback: str | None = None
        self._unreachable = False
        # The client and httpx log request details at DEBUG; keep them quiet even with --verbose.
        for name in ("openai", "httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model, "base_url": self.ask.base_url, "adapter": None}

    def generate(self, requests: list[Request], on_done: OnDone) -> None:
        """Run all requests (bounded concurrency) and call on_done(i, Generation) as each finishes."""
        if requests:
            asyncio.run(self._run(requests, on_done))

    async def _run(self, requests: list[Request], on_done: OnDone) -> None:
        from openai import AsyncOpenAI

        client = AsyncOpenAI(
            api_key=self._api_key, base_url=self.ask.base_url, timeout=self.ask.timeout, max_retries=0
        )
        semaphore = asyncio.Semaphore(self.ask.concurrency)
        # on_done writes and fsyncs the row; it runs in one worker thread (so calls stay in order, one at a
        # time) and the event loop keeps serving the other requests meanwhile.
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ask-writer")
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task] = []
        try:
            tasks = [asyncio.create_task(self._one(client, semaphore, i, req)) for i, req in enumerate(requests)]
            for finished in asyncio.as_completed(tasks):
                index, generation = await finished
                await loop.run_in_executor(writer, on_done, index, generation)
        finally:
            for task in tasks:
                task.cancel()
            writer.shutdown(wait=True)
            await client.close()

    def _delay(self, attempt: int, exc: Exception) -> float:
        hinted = _retry_after(exc)
        if hinted is not None:
            return max(0.0, min(hinted, self.ask.max_backoff))
        base = min(self.ask.max_backoff, self.ask.retry_backoff * 2 ** (attempt - 1))
        return base * random.uniform(0.5, 1.0)  # jitter: a burst of 429s does not retry in lockstep

    def _error(self, exc: Exception) -> str:
        status = getattr(exc, "status_code", None)
        text = re.sub(r"^Error code: \d+ - ", "", str(exc))
        prefix = f"HTTP {status}: " if status else f"{type(exc).__name__}: "
        return one_line(redact(prefix + text, [self._api_key]))

    def _fallback_to_prompt(self, exc: Exception) -> None:
        if self.json_mode_used != "prompt":
            self.json_mode_used = "prompt"
            self.json_mode_fallback = self._error(exc)

    async def _one(self, client: Any, semaphore: asyncio.Semaphore, index: int, req: Request):
        import openai

        attempts = 0
        started: float | None = None
        while True:
            attempts += 1
            kwargs: dict[str, Any] = {
                "model": self.model,
                "messages": openai_messages(req.messages),  # image parts -> image_url data URLs
                "temperature": self.ask.temperature,
                "max_tokens": self.ask.max_new_tokens,
            }
            try:
                async with semaphore:
                    # Decided once a slot is free, so a fallback found meanwhile applies to queued requests.
                    if self.json_mode_used == "schema" and req.task != "dialogue":  # free-text turns
                        kwargs["response_format"] = response_format(req.task, req.reasoning)
                    started = started or time.monotonic()
                    response = await client.chat.completions.create(**kwargs)
                choices = getattr(response, "choices", None)
                if not choices:
                    raise _NoChoices("server returned no choices")
                self._unreachable = False
                usage = getattr(response, "usage", None)
                return index, Generation(
                    raw=choices[0].message.content or "",
                    latency_s=time.monotonic() - started,
                    prompt_tokens=getattr(usage, "prompt_tokens", None),
                    completion_tokens=getattr(usage, "completion_tokens", None),
                    attempts=attempts,
                )
            except openai.APIStatusError as exc:
                status = exc.status_code
                message = str(exc).lower()
                # Servers reject an unsupported schema differently: vLLM/OpenAI with 400, some proxies with
                # 422, llama.cpp's server with a 500 naming response_format. A plain 500 is retried instead.
                rejected_schema = (status in (400, 422) and any(hint in message for hint in SCHEMA_HINTS)) or (
                    status == 500 and "response_format" in message
                )
                if rejected_schema and "response_format" in kwargs and self.ask.json_mode == "auto":
                    self._fallback_to_prompt(exc)
                    continue
                retryable = status in RETRYABLE_STATUS or status >= 500
                if not retryable or attempts > self.ask.max_retries:
                    return index, self._failed(exc, started, attempts)
                await asyncio.sleep(self._delay(attempts, exc))
            except (openai.APIConnectionError, _NoChoices) as exc:  # APITimeoutError is a subclass
                refused = not isinstance(exc, (openai.APITimeoutError, _NoChoices))
                if attempts > self.ask.max_retries or (refused and self._unreachable):
                    if refused:
                        self._unreachable = True
                    return index, self._failed(exc, started, attempts)
                await asyncio.sleep(self._delay(attempts, exc))
            except Exception as exc:  # a row must fail alone, never take the batch down
                return index, self._failed(exc, started, attempts)

    def _failed(self, exc: Exception, started: float | None, attempts: int) -> Generation:
        latency = time.monotonic() - started if started else 0.0
        return Generation(error=self._error(exc), latency_s=latency, attempts=attempts)
