"""What both backends return for one request, and the one place secrets are scrubbed from error text.

A backend takes a list of `Request`s and calls `on_done(index, Generation)` as each one finishes, so the
batch runner can append the row to disk at once (a kill loses at most the requests in flight).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    messages: list[dict[str, str]]
    task: str
    reasoning: bool = False  # chain of thought: the answer schema asks for "reasoning" first


@dataclass
class Generation:
    raw: str | None = None
    error: str | None = None
    latency_s: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    attempts: int = 1
    extra: dict[str, Any] = field(default_factory=dict)


OnDone = Callable[[int, Generation], None]


def redact(text: str, secrets: list[str | None]) -> str:
    """Remove every secret (and its long tail, which servers often echo as 'sk-...abcd') from `text`."""
    for secret in secrets:
        if not secret or secret == "EMPTY":
            continue
        text = text.replace(secret, "***")
        if len(secret) >= 12:
            text = text.replace(secret[-8:], "***")
    return text


def one_line(text: str, limit: int = 300) -> str:
    """Error text as one short line (server bodies can be long and multi-line)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
