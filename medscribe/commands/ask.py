"""`medscribe ask`: retrieval-augmented answers, one text or a whole file. Run `medscribe ask --help`.

Thin: parses flags, loads settings, calls `medscribe.ask.ask_one` or `medscribe.ask.run_batch`.
"""

from pathlib import Path

import typer

from medscribe.commands._common import console, err_console, handle_errors, load_settings, setup_logging


def _column_map(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    from medscribe.errors import UsageError

    mapping: dict[str, str] = {}
    for pair in pairs:
        field, sep, column = pair.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise UsageError(f"--column: expected FIELD=COLUMN, got {pair!r}")
        mapping[field.strip()] = column.strip()
    return mapping


@handle_errors
def command(
    ctx: typer.Context,
    text: str | None = typer.Argument(None, help="A finding (report task) or a question (qa task)."),
    input: Path | None = typer.Option(None, "--input", "-i", help="Batch: a CSV or JSONL file (e.g. test.jsonl)."),
    run: str | None = typer.Option(None, "--run", help="Batch run name (default: backend-model-adapter-rag)."),
    task: str | None = typer.Option(None, "--task", help="report or qa (default: data.task)."),
    organ: str | None = typer.Option(None, "--organ", help="Organ, for the report task."),
    modality: str | None = typer.Option(None, "--modality", help="Modality (CT, МРТ, ...), for the report task."),
    specialty: str | None = typer.Option(None, "--specialty", help="Specialty, for the qa task."),
    image: Path | None = typer.Option(
        None, "--image", help="An image sent with TEXT (vision model or server); for --input, an image column."),
    backend: str | None = typer.Option(None, "--backend", help="openai or local."),
    base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible server URL (.../v1)."),
    model: str | None = typer.Option(None, "--model", help="Model name on the server (openai backend)."),
    local_model: str | None = typer.Option(None, "--local-model", help="HF folder or hub id (local backend)."),
    adapter: str | None = typer.Option(None, "--adapter", help="PEFT adapter folder (output of sft)."),
    no_adapter: bool = typer.Option(False, "--no-adapter", help="Ignore a configured adapter (baseline)."),
    k: int | None = typer.Option(None, "--k", min=0, help="Retrieved cases per prompt (default: index.k)."),
    no_rag: bool = typer.Option(False, "--no-rag", help="No retrieval (k=0); the index is not opened."),
    concurrency: int | None = typer.Option(None, "--concurrency", min=1, help="Requests in flight (openai)."),
    batch_size: int | None = typer.Option(None, "--batch-size", min=1, help="Generation batch (local)."),
    max_new_tokens: int | None = typer.Option(None, "--max-new-tokens", min=1),
    temperature: float | None = typer.Option(None, "--temperature", min=0.0, help="0 = greedy."),
    json_mode: str | None = typer.Option(None, "--json-mode", help="auto, schema or prompt (openai)."),
    timeout: float | None = typer.Option(None, "--timeout", help="Seconds per request (openai)."),
    max_retries: int | None = typer.Option(None, "--max-retries", min=0),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda, cuda:1 (local)."),
    column: list[str] | None = typer.Option(None, "--column", help="FIELD=COLUMN mapping for --input; repeat."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N input rows."),
    mode: str | None = typer.Option(
        None, "--mode", help="generate (the model answers), copy (the nearest case's answer, no model) or "
        "copy_or_generate (copy when its cosine >= --copy-threshold)."),
    copy_threshold: float | None = typer.Option(None, "--copy-threshold", help="Cosine for copy_or_generate."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Batch: delete the run's results and start afresh."),
    as_json: bool = typer.Option(False, "--json", help="Single: print the result row as JSON."),
) -> None:
    """Answer a finding/question with retrieved similar cases, or a whole file (--input) into a resumable run."""
    from medscribe.errors import UsageError

    setup_logging(ctx)
    if (text is None) == (input is None):
        raise UsageError("ask: give either TEXT or --input FILE (not both)")
    if adapter and no_adapter:
        raise UsageError("ask: --adapter and --no-adapter exclude each other")
    if no_rag and k not in (None, 0):
        raise UsageError("ask: --no-rag and --k exclude each other")
    ask_flags = {
        "backend": backend, "base_url": base_url, "model": model, "local_model": local_model,
        "adapter": adapter, "k": 0 if no_rag else k, "concurrency": concurrency, "batch_size": batch_size,
        "max_new_tokens": max_new_tokens, "temperature": temperature, "json_mode": json_mode,
        "timeout": timeout, "max_retries": max_retries, "device": device, "columns": _column_map(column),
        "mode": mode, "copy_threshold": copy_threshold,
    }
    settings = load_settings(ctx, {"ask": ask_flags, "data": {"task": task}})
    if no_adapter:
        settings.ask.adapter = None

    if input is None:
        if overwrite:
            raise UsageError("ask: --overwrite applies to a batch run (--input)")
        from medscribe.ask import ask_one
        from medscribe.ask.render import answer_panel

        row = ask_one(settings, text or "", organ=organ, modality=modality, specialty=specialty,
                      image=str(image) if image else None)
        if as_json:
            import json

            typer.echo(json.dumps({k: v for k, v in row.items() if k != "messages"}, ensure_ascii=False))
        else:
            console.print(answer_panel(row))
            if row.get("copied"):
                console.print(f"copied from case {row['copied_from']} (ask.mode = {settings.ask.mode}): no model ran")
        return

    if organ or modality or specialty or image:
        raise UsageError("ask: --organ/--modality/--specialty/--image are for a single TEXT; map file columns with "
                         "--column (images: an `image` column)")
    from medscribe.ask import run_batch
    from medscribe.ask.render import summary_table

    summary = run_batch(settings, input, run=run, limit=limit, console=err_console, overwrite=overwrite)
    console.print(summary_table(summary))
    console.print(f"fingerprint {summary['fingerprint']['digest']} (what produced this run: "
                  f"{summary['run_dir']}/fingerprint.json)", highlight=False)
    if summary["mode"] != "generate":
        console.print(f"mode {summary['mode']}: {summary['copied']} of {summary['count']} answer(s) copied "
                      "from the nearest retrieved case")
    if summary["failures"]:
        err_console.print(
            f"[yellow]warning:[/yellow] {summary['failures']} row(s) failed "
            f"({'; '.join(summary['errors'][:2])}); rerun the same command to retry them"
        )
