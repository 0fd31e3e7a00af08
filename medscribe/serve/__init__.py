"""`medscribe serve`: the tuned, retrieval-augmented assistant behind an OpenAI-compatible HTTP API.

    from medscribe.settings import load_settings
    from medscribe.serve import build_app, serve
    app = build_app(settings)          # loads the model (+ adapter), the batching engine, the RAG front end
    serve(settings)                    # build_app + uvicorn on serve.host:serve.port (what the CLI runs)

Served models: the base model (`serve.base_name`, default its folder name), the base + adapter
(`serve.tuned_name`, when an adapter is served) and `serve.rag_name` ("medscribe-rag": retrieve similar cases ->
the shared prompt builder -> generate with the adapter -> strict JSON answer with citations). Modules: app.py
(routes and faults), batching.py (dynamic batching engine), cache.py, guards.py, metrics.py, protocol.py (the
wire format), rag.py, vllm.py (`--engine vllm`). fastapi/uvicorn/torch are imported only here, not by the CLI's
--help. Docs: docs/serve.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def served_models(settings: Any, has_adapter: bool, retriever: Any = None) -> list[Any]:
    """The ServedModel list with each model's fingerprint (the response cache keys on it)."""
    from medscribe import fingerprint as fp
    from medscribe.ask.core import effective_k
    from medscribe.serve.app import ServedModel

    model, adapter = model_and_adapter(settings)
    base = {"model": model, "model_files": fp.model_files_hash(model)}
    tuned = {**base, "adapter": fp.adapter_hash(adapter)} if has_adapter else base
    rag: dict[str, Any] = {**tuned, "prompt": settings.prompt.model_dump(), "task": settings.data.task,
                           "k": effective_k(settings), "mode": settings.ask.mode,
                           "copy_threshold": settings.ask.copy_threshold, "filter_fields": settings.ask.filter_fields}
    if rag["k"] > 0:
        rag["index"] = fp.index_fingerprint(settings, retriever)
    serve = settings.serve
    out = [ServedModel(base_name(settings), "base", False, fp.short_hash(base))]
    if has_adapter:
        out.append(ServedModel(serve.tuned_name, "tuned", True, fp.short_hash(tuned)))
    out.append(ServedModel(serve.rag_name, "rag", has_adapter, fp.short_hash(rag)))
    return out


def model_and_adapter(settings: Any) -> tuple[str, str | None]:
    return settings.serve.model or settings.ask.local_model, settings.serve.adapter or settings.ask.adapter


def base_name(settings: Any) -> str:
    if settings.serve.base_name:
        return settings.serve.base_name
    model, _ = model_and_adapter(settings)
    path = Path(model)
    return path.name if path.is_dir() else model


def build_app(settings: Any, *, retriever: Any = None, backend: Any = None) -> Any:
    """Load the model (+ adapter) and build the FastAPI app (the engine starts with the app's lifespan)."""
    from medscribe.serve.app import create_app
    from medscribe.serve.batching import Engine, load_base_tokenizer
    from medscribe.serve.metrics import Metrics
    from medscribe.serve.rag import RagFrontEnd

    serve = settings.serve
    if backend is None:
        from medscribe.ask.backend_local import LocalBackend

        model, adapter = model_and_adapter(settings)
        backend = LocalBackend(settings.ask.model_copy(update={"local_model": model, "adapter": adapter}))
    metrics = Metrics()
    engine = Engine(backend, max_batch=serve.max_batch, batch_wait_ms=serve.batch_wait_ms, max_queue=serve.max_queue,
                    metrics=metrics, base_tokenizer=load_base_tokenizer(backend))
    rag = RagFrontEnd(settings, retriever)
    models = served_models(settings, engine.has_adapter, rag.retriever())
    return create_app(settings, engine, models, rag=rag, metrics=metrics, api_key=api_key(settings))


def api_key(settings: Any) -> str | None:
    key = settings.serve.api_key
    return key.get_secret_value() if key is not None else None


def serve(settings: Any, *, on_ready: Any = None) -> None:
    """Check the bind address, build the app (or launch vLLM) and run uvicorn until interrupted."""
    import logging

    import uvicorn

    from medscribe.serve.guards import check_bind

    check_bind(settings.serve.host, api_key(settings))
    # One plain line per request on stderr: rich's handler costs milliseconds per line, a cache hit costs less.
    request_log = logging.getLogger("medscribe.serve")
    request_log.setLevel(logging.INFO)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    request_log.addHandler(handler)
    request_log.propagate = False
    if settings.serve.engine == "vllm":
        from medscribe.serve.vllm import build_vllm_app

        app, process = build_vllm_app(settings)
    else:
        app, process = build_app(settings), None
    if on_ready is not None:
        on_ready(settings.serve.host, settings.serve.port)
    try:
        uvicorn.run(app, host=settings.serve.host, port=settings.serve.port, access_log=False, log_level="info")
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
