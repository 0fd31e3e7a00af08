"""`medscribe serve`: the tuned assistant behind an OpenAI-compatible HTTP API. Run `medscribe serve --help`.

Thin: parses flags, loads settings, calls `medscribe.serve.serve` (fastapi/uvicorn/torch are imported there).
"""

import typer

from medscribe.commands._common import err_console, handle_errors, load_settings, setup_logging


@handle_errors
def command(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="Bind address (a non-loopback one needs an API key)."),
    port: int | None = typer.Option(None, "--port", min=1, max=65535),
    engine: str | None = typer.Option(None, "--engine", help="local (transformers + batching) or vllm (CUDA)."),
    model: str | None = typer.Option(None, "--model", help="Base model folder or hub id (default: ask.local_model)."),
    adapter: str | None = typer.Option(None, "--adapter", help="LoRA adapter folder (default: ask.adapter)."),
    no_adapter: bool = typer.Option(False, "--no-adapter", help="Serve the base model only."),
    k: int | None = typer.Option(None, "--k", min=0, help="Retrieved cases per medscribe-rag answer."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1."),
    max_batch: int | None = typer.Option(None, "--max-batch", min=1, help="Requests generated together."),
    batch_wait_ms: float | None = typer.Option(None, "--batch-wait-ms", min=0.0),
    max_queue: int | None = typer.Option(None, "--max-queue", min=1, help="Admitted requests; more get 503."),
    no_cache: bool = typer.Option(False, "--no-cache", help="No response cache."),
    log_text: bool = typer.Option(False, "--log-text", help="Also log PHI-scrubbed request/answer text."),
    eval_dir: str | None = typer.Option(None, "--eval", help="An eval folder for the web page's comparison view."),
    dry_run: bool = typer.Option(False, "--dry-run", help="--engine vllm: print the vllm command and exit."),
) -> None:
    """Serve the base model, the tuned adapter and medscribe-rag (the whole RAG answer path) over HTTP."""
    from medscribe.errors import UsageError

    setup_logging(ctx)
    if adapter and no_adapter:
        raise UsageError("serve: --adapter and --no-adapter exclude each other")
    serve_flags = {"host": host, "port": port, "engine": engine, "model": model, "adapter": adapter,
                   "max_batch": max_batch, "batch_wait_ms": batch_wait_ms, "max_queue": max_queue,
                   "cache": False if no_cache else None, "log_text": True if log_text else None,
                   "eval_dir": eval_dir}
    settings = load_settings(ctx, {"serve": serve_flags, "ask": {"k": k, "device": device}})
    if no_adapter:
        settings.serve.adapter = None
        settings.ask.adapter = None
    if dry_run:
        if settings.serve.engine != "vllm":
            raise UsageError("serve: --dry-run prints the vllm command (--engine vllm)")
        import shlex

        from medscribe.serve.vllm import vllm_command

        typer.echo(shlex.join(vllm_command(settings)))
        return
    from medscribe.serve import serve

    def ready(h: str, p: int) -> None:
        err_console.print(f"medscribe serve: http://{h}:{p}/v1 (web page: http://{h}:{p}/, metrics: /metrics)",
                          highlight=False)

    serve(settings, on_ready=ready)
