"""Dynamic batching in front of the local backend: requests that arrive within a few ms generate together.

    engine = Engine(LocalBackend(settings.ask), max_batch=8, batch_wait_ms=5, max_queue=64)
    engine.start()
    job = Job(messages, adapter=True, max_tokens=64, temperature=0.0, loop=loop)
    engine.submit(job)            # raises QueueFull when max_queue jobs are already waiting or running
    async for kind, value in job.events(): ...   # ("delta", text) ... ("done", None) | ("error", message)

How: one worker thread owns the model. It takes the oldest waiting job, waits until `batch_wait_ms` after that
job arrived (or until `max_batch` compatible jobs wait), and generates every compatible waiting job in one
left-padded `generate` call. Compatible = same weights (adapter on or off: one PEFT model serves both through
`disable_adapter()`) and same sampling parameters; per-row `max_tokens` differ freely: a stopping criterion ends
each row at its own limit, and a streamer hands each row's new tokens to its job as they are produced, so
streaming and batching work together. A cancelled job (a client that went away) is stopped at the next token and
its slot freed. Requests that arrive while a batch runs wait for the next one (dynamic, not continuous, batching:
a batch runs until its longest row ends).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from medscribe.ask.generation import one_line

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """max_queue jobs are already waiting or running: the server answers 503 with Retry-After."""


@dataclass(eq=False)  # identity: two equal-looking requests are two jobs
class Job:
    """One chat completion for the engine. Events are delivered on `loop` (the server's event loop)."""

    messages: list[dict[str, str]]
    adapter: bool
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()  # stop strings: the text ends before the first one (not sent, not kept)
    loop: asyncio.AbstractEventLoop | None = None
    # filled by the engine
    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    error: str | None = None
    batch_size: int = 0
    enqueued: float = field(default_factory=time.monotonic)
    cancelled: bool = False
    _queue: asyncio.Queue | None = None
    _ids: list[int] = field(default_factory=list)
    _sent: int = 0
    _stopped: bool = False  # a stop string was generated

    def __post_init__(self) -> None:
        self.loop = self.loop or asyncio.get_running_loop()
        self._queue = asyncio.Queue()

    @property
    def key(self) -> tuple:
        sampling = self.temperature > 0
        return (self.adapter, sampling, self.temperature if sampling else 0.0, self.top_p if sampling else 1.0)

    def cancel(self) -> None:
        """Stop generating for this job (the worker checks it at every token); its slot is freed."""
        self.cancelled = True

    def _emit(self, kind: str, value: Any = None) -> None:
        self.loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))

    async def events(self) -> AsyncIterator[tuple[str, Any]]:
        while True:
            kind, value = await self._queue.get()
            yield kind, value
            if kind in ("done", "error"):
                return

    async def result(self) -> Job:
        """Wait for the whole answer (non-streaming requests)."""
        async for kind, value in self.events():
            if kind == "error":
                raise GenerationError(value)
        return self


class GenerationError(Exception):
    """The model failed on this job's batch (the message is for the log; clients get a request id)."""


class _RowStreamer:
    """transformers' streamer protocol for a whole batch: `put` receives the prompt ids once, then one new token
    per row per step; each row's text delta goes to its job until it ends (EOS, its max_tokens, or cancel)."""

    def __init__(self, engine: Engine, jobs: list[Job], tokenizer: Any, stop_ids: set[int]):
        self.engine, self.jobs, self.tokenizer, self.stop_ids = engine, jobs, tokenizer, stop_ids
        self.done = [False] * len(jobs)
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if not self._prompt_seen:  # the first call carries the prompt ids
            self._prompt_seen = True
            return
        tokens = value.tolist() if hasattr(value, "tolist") else list(value)
        for i, (job, tok) in enumerate(zip(self.jobs, tokens, strict=True)):
            if self.done[i]:
                continue
            if job.cancelled:
                self._finish(i, "cancelled")
                continue
            if tok in self.stop_ids:
                self._finish(i, "stop")
                continue
            job._ids.append(int(tok))
            job.completion_tokens += 1
            self._send_delta(job)
            if job._stopped:
                self._finish(i, "stop")
            elif job.completion_tokens >= job.max_tokens:
                self._finish(i, "length")

    def _send_delta(self, job: Job, final: bool = False) -> None:
        if job._stopped:  # the text already ends before its stop string
            return
        text = self.tokenizer.decode(job._ids, skip_special_tokens=True)
        # A multi-byte character split over tokens decodes as U+FFFD until its last byte arrives: hold it back.
        if not final and text.endswith("\ufffd"):
            return
        hold = 0
        if job.stop:
            found = [at for at in (text.find(s) for s in job.stop) if at >= 0]
            if found:
                text, job._stopped = text[: min(found)], True
            elif not final:  # a stop string may be arriving: send nothing that could be its beginning
                hold = max((n for s in job.stop for n in range(1, len(s)) if text.endswith(s[:n])), default=0)
        job.text = text
        text = text[: len(text) - hold]
        if len(text) > job._sent:
            delta = text[job._sent :]
            job._sent = len(text)
            job._emit("delta", delta)

    def _finish(self, i: int, reason: str) -> None:
        self.done[i] = True
        job = self.jobs[i]
        self._send_delta(job, final=True)
        job.text = job.text.strip() if reason != "cancelled" else job.text
        job.finish_reason = reason
        self.engine._release(job)
        job._emit("done")

    def end(self) -> None:
        for i in range(len(self.jobs)):
            if not self.done[i]:
                self._finish(i, "length")


class Engine:
    """The batching worker over a loaded LocalBackend (model, adapter, tokenizer)."""

    def __init__(self, backend: Any, *, max_batch: int = 8, batch_wait_ms: float = 5.0, max_queue: int = 64,
                 metrics: Any = None, base_tokenizer: Any = None):
        self.backend = backend
        self.max_batch = max_batch
        self.batch_wait = batch_wait_ms / 1000.0
        self.max_queue = max_queue
        self.metrics = metrics
        self.has_adapter = getattr(backend, "adapter", None) is not None
        # The base model renders with its own chat template; the adapter with the one sft saved beside it.
        self.base_tokenizer = base_tokenizer or backend.tokenizer
        self.batch_sizes: list[int] = []  # every batch run, for /metrics and the tests
        self._pending: deque[Job] = deque()
        self._active = 0  # admitted and not yet finished (waiting or generating)
        self._cond = threading.Condition()
        # Held while a batch generates: one batch at a time owns the model.
        self.run_lock = threading.Lock()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._running: list[Job] = []

    # -- admission ---------------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Jobs admitted and not finished: waiting plus generating."""
        return self._active

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._active >= self.max_queue:
                raise QueueFull(f"{self._active} requests in progress (serve.max_queue = {self.max_queue})")
            self._active += 1
            job.enqueued = time.monotonic()
            self._pending.append(job)
            self._cond.notify()
        self._gauge()

    def cancel(self, job: Job) -> None:
        """The client went away: a waiting job leaves the queue now, a generating one stops at its next token."""
        job.cancel()
        with self._cond:
            waiting = job in self._pending
            if waiting:
                self._pending.remove(job)
        if waiting:
            job.finish_reason = "cancelled"
            self._release(job)
            job._emit("done")

    def _release(self, job: Job) -> None:
        with self._cond:
            if getattr(job, "_released", False):
                return
            job._released = True  # type: ignore[attr-defined]
            self._active -= 1
        self._gauge()

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.set_queue_depth(self._active)

    # -- worker ------------------------------------------------------------------------------------
    def start(self) -> Engine:
        if self._thread is None:
            self._stop = False
            self._thread = threading.Thread(target=self._loop, name="medscribe-batcher", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Shut down: waiting and generating jobs are cancelled (a batch ends at its next token)."""
        with self._cond:
            self._stop = True
            for job in [*self._pending, *self._running]:
                job.cancel()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _take_batch(self) -> list[Job] | None:
        with self._cond:
            while not self._pending and not self._stop:
                self._cond.wait()
            if self._stop:
                return None
            first = self._pending[0]
            deadline = first.enqueued + self.batch_wait
            while not self._stop:
                same = sum(1 for j in self._pending if j.key == first.key)
                left = deadline - time.monotonic()
                if same >= self.max_batch or left <= 0:
                    break
                self._cond.wait(timeout=left)
            batch: list[Job] = []
            for job in list(self._pending):
                if job.key == first.key and len(batch) < self.max_batch:
                    self._pending.remove(job)
                    batch.append(job)
        live = []
        for job in batch:
            if job.cancelled:  # the client left while waiting
                job.finish_reason = "cancelled"
                self._release(job)
                job._emit("done")
            else:
                live.append(job)
        return live

    def _loop(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            if not batch:
                continue
            with self.run_lock:
                try:
                    self._run(batch)
                except Exception as exc:  # the batch fails, the worker and the server go on
                    message = one_line(f"{type(exc).__name__}: {exc}")
                    log.error("generation failed for a batch of %d", len(batch))
                    for job in batch:
                        if job.finish_reason is None:
                            job.error = message
                            self._release(job)
                            job._emit("error", message)
                    if self.metrics is not None:
                        self.metrics.error("generation")

    def _run(self, jobs: list[Job]) -> None:
        import contextlib

        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        self._running = jobs
        backend = self.backend
        adapter = jobs[0].adapter and self.has_adapter
        tokenizer = backend.tokenizer if adapter else self.base_tokenizer
        texts = [tokenizer.apply_chat_template(j.messages, tokenize=False, add_generation_prompt=True) for j in jobs]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(backend.device)
        prompt_len = enc["input_ids"].shape[1]
        for job, mask in zip(jobs, enc["attention_mask"], strict=True):
            job.prompt_tokens = int(mask.sum())
            job.batch_size = len(jobs)
        self.batch_sizes.append(len(jobs))
        if self.metrics is not None:
            self.metrics.observe_batch(len(jobs))
        limits = torch.tensor([j.max_tokens for j in jobs])

        class _PerRow(StoppingCriteria):
            """Row i stops at its own max_tokens or when its client is gone."""

            def __call__(self, input_ids, scores, **kwargs):
                generated = input_ids.shape[1] - prompt_len
                cancelled = torch.tensor([j.cancelled for j in jobs])
                return ((generated >= limits) | cancelled).to(input_ids.device)

        stop_ids = backend._stop_ids()
        if tokenizer.eos_token_id is not None:
            stop_ids.add(tokenizer.eos_token_id)
        streamer = _RowStreamer(self, jobs, tokenizer, stop_ids)
        first = jobs[0]
        kwargs: dict[str, Any] = {
            "max_new_tokens": max(j.max_tokens for j in jobs),
            "pad_token_id": tokenizer.pad_token_id,
            "stopping_criteria": StoppingCriteriaList([_PerRow()]),
            "streamer": streamer,
        }
        if first.temperature > 0:
            kwargs.update(do_sample=True, temperature=first.temperature, top_p=first.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        model = backend.model
        off = model.disable_adapter() if (self.has_adapter and not adapter) else contextlib.nullcontext()
        try:
            with torch.inference_mode(), off:
                model.generate(**enc, **kwargs)
            streamer.end()
        finally:
            self._running = []


def load_base_tokenizer(backend: Any) -> Any:
    """The base model's own tokenizer (left-padded) when the backend renders with the adapter's."""
    if getattr(backend, "adapter", None) is None:
        return backend.tokenizer
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(backend.model_name)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not getattr(tok, "chat_template", None):  # a base model without a template: use the adapter's
        return backend.tokenizer
    return tok
