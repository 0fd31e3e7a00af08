"""`medscribe pipeline`: every stage in order on the configured data (what `make demo` runs)."""

import typer

from medscribe.commands._common import console, handle_errors, load_settings, setup_logging


@handle_errors
def command(
    ctx: typer.Context,
    sft_run: str = typer.Option("pipeline", "--sft-run", help="Name of the sft run (paths.sft/<name>)."),
    force: list[str] = typer.Option(
        [], "--force", help="Redo a step and every step downstream of it (repeatable): data, index, ask-base, "
        "ask-base-rag, ask-copy, sft, ask-tuned-rag, eval."),
) -> None:
    """data -> index -> ask (base) -> ask (base + RAG) -> ask (retrieval-copy) -> sft -> ask (tuned + RAG) -> eval;
    like make, a step is redone only when something upstream of it changed."""
    from rich.table import Table

    from medscribe.pipeline import run_pipeline

    setup_logging(ctx)
    settings = load_settings(ctx)
    from medscribe.sft.allocator import restart_with_fast_allocator

    restart_with_fast_allocator(settings)  # it trains: on a CPU the pipeline runs under tcmalloc/jemalloc
    result = run_pipeline(settings, sft_run=sft_run, force=tuple(force), console=console)
    table = Table(title="pipeline")
    for column in ("step", "seconds", "result"):
        table.add_column(column)
    for name, info in result.steps.items():
        rest = {k: v for k, v in info.items() if k != "seconds"}
        table.add_row(name, str(info.get("seconds")), ", ".join(f"{k}={v}" for k, v in rest.items())[:120])
    console.print(table)
    if result.headline:
        console.print(f"[bold]{result.headline}[/bold]")
    if result.eval_dir:
        console.print(f"report: [bold]{result.eval_dir}[/bold]")
