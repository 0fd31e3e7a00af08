"""Guardrails of `medscribe serve`: PHI-scrubbed logging, the bearer API key, request size, max_tokens cap.

- Logs: the request log line carries ids, model, status, latency and token counts, never text. With
  `serve.log_text = true` it adds the last user message and the answer, PHI-scrubbed by medscribe.phi.Scrubber
  first; error messages are scrubbed the same way. The Authorization header is never logged (uvicorn's access
  log is off: the server writes its own line).
- API key: `serve.api_key` (environment only: MEDSCRIBE_SERVE__API_KEY). Every endpoint but /health needs
  `Authorization: Bearer <key>` when it is set; binding to a non-loopback address without one is refused.
- Size: a body larger than `serve.max_request_bytes` is refused with 413 before it is parsed (Content-Length, and
  counted while reading for chunked uploads).
- max_tokens above `serve.max_tokens_cap` is lowered to the cap; the response says so in the
  `x-medscribe-max-tokens-capped` header and the log line.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import threading
from typing import Any

from medscribe.errors import UsageError

log = logging.getLogger("medscribe.serve")


class TooLarge(Exception):
    pass


class LogScrubber:
    """medscribe.phi.Scrubber for log text, behind a lock (the scrubber keeps counters; handlers run in threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scrubber: Any = None

    def __call__(self, *texts: str) -> list[str]:
        try:
            with self._lock:
                if self._scrubber is None:
                    from medscribe.phi import Scrubber

                    self._scrubber = Scrubber()
                return self._scrubber.scrub_texts([t or "" for t in texts])
        except Exception:  # a scrubber failure must not leak the text: log nothing of it
            return ["(withheld: could not be PHI-scrubbed)" for _ in texts]


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None) -> None:
    """A server reachable from other machines must have an API key (refused before anything is loaded)."""
    if not is_loopback(host) and not api_key:
        raise UsageError(
            f"serve.host = {host!r} is reachable from other machines: set an API key in the environment "
            "(MEDSCRIBE_SERVE__API_KEY) or bind to 127.0.0.1"
        )


def authorized(header: str | None, api_key: str | None) -> bool:
    if not api_key:
        return True
    if not header or not header.lower().startswith("bearer "):
        return False
    return hmac.compare_digest(header[7:].strip().encode("utf-8"), api_key.encode("utf-8"))


async def read_body(request: Any, limit: int) -> bytes:
    """The request body, or TooLarge as soon as it exceeds `limit` bytes (never read whole first)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"request body of {declared} bytes exceeds serve.max_request_bytes = {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"request body exceeds serve.max_request_bytes = {limit}")
        chunks.append(chunk)
    return b"".join(chunks)


def cap_max_tokens(requested: int | None, default: int, cap: int) -> tuple[int, bool]:
    """(max_tokens to generate, whether the request asked for more than the cap)."""
    wanted = requested if requested is not None else default
    return (cap, True) if wanted > cap else (wanted, False)
