"""`medscribe serve --engine vllm`: launch `vllm serve` with the base model + adapter, and the medscribe front end
(medscribe-rag, cache, guards, metrics) on top of it.

    vllm serve BASE --host 127.0.0.1 --port 8001 --served-model-name NAME \
        --enable-lora --lora-modules medscribe-tuned=ADAPTER --max-lora-rank R \
        [--chat-template ADAPTER/chat_template.jinja] [serve.vllm_args ...]

vLLM does the batching (continuous batching, paged attention) on the GPU; the front end forwards each job as a
streamed chat completion (`ProxyEngine`), so clients see the same API, models and faults as with the local
engine. vLLM renders every model with one chat template: the adapter's `chat_template.jinja` when sft saved one
(a model trained with `sft.chat_template`), else the base model's. `ProxyEngine` works against any
OpenAI-compatible server (it is tested against a local `medscribe serve`).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from medscribe.ask.generation import one_line
from medscribe.errors import RuntimeFailure
from medscribe.serve.batching import QueueFull

VLLM_START_TIMEOUT_S = 900  # a 7B model loads and compiles its CUDA graphs in minutes


def lora_rank(adapter: str | Path) -> int:
    """vLLM's --max-lora-rank must be at least the adapter's r (its default is 16)."""
    try:
        r = int(json.loads((Path(adapter) / "adapter_config.json").read_text(encoding="utf-8")).get("r", 16))
    except (OSError, ValueError):
        r = 16
    return max(16, r)


def vllm_command(settings: Any) -> list[str]:
    from medscribe.serve import base_name, model_and_adapter

    serve = settings.serve
    model, adapter = model_and_adapter(settings)
    cmd = ["vllm", "serve", model, "--host", "127.0.0.1", "--port", str(serve.vllm_port),
           "--served-model-name", base_name(settings)]
    if adapter:
        cmd += ["--enable-lora", "--lora-modules", f"{serve.tuned_name}={adapter}",
                "--max-lora-rank", str(lora_rank(adapter))]
        template = Path(adapter) / "chat_template.jinja"
        if template.is_file():
            cmd += ["--chat-template", str(template)]
    return cmd + list(serve.vllm_args)


class ProxyEngine:
    """The Engine interface (submit/cancel/depth) over an OpenAI-compatible server, one streamed call per job."""

    def __init__(self, base_url: str, base_model: str, tuned_model: str | None, *, max_queue: int = 64,
                 metrics: Any = None, timeout: float = 600.0):
        self.base_url, self.base_model, self.tuned_model = base_url, base_model, tuned_model
        self.has_adapter = tuned_model is not None
        self.max_queue, self.metrics, self.timeout = max_queue, metrics, timeout
        self.batch_sizes: list[int] = []  # the upstream server batches; nothing to record here
        self._active = 0
        self._client: Any = None
        self._tasks: dict[int, asyncio.Task] = {}

    @property
    def depth(self) -> int:
        return self._active

    def start(self) -> ProxyEngine:
        return self

    def stop(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()

    def submit(self, job: Any) -> None:
        if self._active >= self.max_queue:
            raise QueueFull(f"{self._active} requests in progress (serve.max_queue = {self.max_queue})")
        self._active += 1
        self._gauge()
        self._tasks[id(job)] = job.loop.create_task(self._run(job))

    def cancel(self, job: Any) -> None:
        job.cancel()
        task = self._tasks.get(id(job))
        if task is not None:
            task.cancel()

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.set_queue_depth(self._active)

    async def _run(self, job: Any) -> None:
        from openai import AsyncOpenAI

        if self._client is None:
            self._client = AsyncOpenAI(base_url=self.base_url, api_key="EMPTY", max_retries=0, timeout=self.timeout)
        outcome: tuple[str, Any] = ("done", None)
        try:
            stream = await self._client.chat.completions.create(
                model=self.tuned_model if job.adapter and self.tuned_model else self.base_model,
                messages=job.messages, max_tokens=job.max_tokens, temperature=job.temperature, top_p=job.top_p,
                stop=list(job.stop) or None, stream=True, stream_options={"include_usage": True})
            async for chunk in stream:
                if chunk.usage is not None:
                    job.prompt_tokens = chunk.usage.prompt_tokens
                    job.completion_tokens = chunk.usage.completion_tokens
                for choice in chunk.choices:
                    if choice.delta and choice.delta.content:
                        job.text += choice.delta.content
                        job._emit("delta", choice.delta.content)
                    if choice.finish_reason:
                        job.finish_reason = choice.finish_reason
            job.text = job.text.strip()
            job.finish_reason = job.finish_reason or "stop"
        except asyncio.CancelledError:
            job.finish_reason = "cancelled"
        except Exception as exc:  # the upstream failed: this job fails (500), the server goes on
            job.error = one_line(f"{type(exc).__name__}: {exc}")
            outcome = ("error", job.error)
            if self.metrics is not None:
                self.metrics.error("generation")
        finally:
            self._active -= 1
            self._tasks.pop(id(job), None)
            self._gauge()
            job._emit(*outcome)


def wait_until_up(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeFailure(f"vllm serve exited with code {process.returncode} before it was up (see its output)")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    process.terminate()
    raise RuntimeFailure(f"vllm serve was not up after {timeout:.0f} s ({url})")


def build_vllm_app(settings: Any) -> tuple[Any, subprocess.Popen]:
    """Launch vllm serve, wait until it answers /health, and build the front end app on a ProxyEngine."""
    from medscribe.serve import api_key, base_name, model_and_adapter, served_models
    from medscribe.serve.app import create_app
    from medscribe.serve.metrics import Metrics
    from medscribe.serve.rag import RagFrontEnd

    if shutil.which("vllm") is None:
        raise RuntimeFailure("serve.engine = 'vllm': the vllm command is not installed (pip install vllm, CUDA)")
    command = vllm_command(settings)
    process = subprocess.Popen(command)
    port = settings.serve.vllm_port
    wait_until_up(f"http://127.0.0.1:{port}/health", process, VLLM_START_TIMEOUT_S)
    _, adapter = model_and_adapter(settings)
    metrics = Metrics()
    engine = ProxyEngine(f"http://127.0.0.1:{port}/v1", base_name(settings),
                         settings.serve.tuned_name if adapter else None, max_queue=settings.serve.max_queue,
                         metrics=metrics)
    rag = RagFrontEnd(settings)
    models = served_models(settings, engine.has_adapter, rag.retriever())
    return create_app(settings, engine, models, rag=rag, metrics=metrics, api_key=api_key(settings)), process
