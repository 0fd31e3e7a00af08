"""`medscribe data`: raw exports -> anonymized, split dataset (+ `--phi-audit FILE` to scan files for PHI).

    medscribe data --input exports/ --task report --out artifacts/data --format messages --seed 42
    medscribe data --phi-audit artifacts/data/train.jsonl --phi-audit notes.txt   # exit 1 if PHI found
"""

from pathlib import Path

import typer

from medscribe.commands._common import console, err_console, handle_errors, load_settings


@handle_errors
def command(
    ctx: typer.Context,
    inputs: list[str] | None = typer.Option(
        None, "--input", "-i", help="File, folder (recursive) or glob; repeat for several. Overrides data.inputs."
    ),
    task: str | None = typer.Option(None, "--task", help="report | qa (data.task)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (paths.data)."),
    chat_format: str | None = typer.Option(None, "--format", help="messages | sharegpt | alpaca (data.chat_format)."),
    seed: int | None = typer.Option(None, "--seed", help="Split seed (data.seed)."),
    phi_audit: list[Path] | None = typer.Option(
        None, "--phi-audit", help="Scan these files for PHI instead of building data; repeatable. Exit 1 if found."
    ),
    audit_report: Path | None = typer.Option(
        None, "--audit-report", help="Where --phi-audit writes its JSON report (default: <out>/phi_audit.json)."
    ),
) -> None:
    """Ingest raw exports, clean, anonymize, de-duplicate, split and write train/eval/test + corpus + manifest."""
    flags = {
        "paths": {"data": out},
        "data": {"inputs": inputs or None, "task": task, "chat_format": chat_format, "seed": seed},
    }
    settings = load_settings(ctx, flags)
    if phi_audit:
        from medscribe.data import run_phi_audit
        from medscribe.data.summary import audit_table

        report = audit_report or Path(settings.paths.data) / "phi_audit.json"
        result = run_phi_audit([str(p) for p in phi_audit], report, settings.data)
        if result.findings:
            console.print(audit_table(result))
            err_console.print(f"[red]PHI found:[/red] {len(result.findings)} finding(s); report: {report}")
            raise typer.Exit(1)
        console.print(f"[green]no PHI found[/green] in {len(result.files)} file(s), {result.cells} cells; "
                      f"report: {report}")
        return

    from medscribe.data import run_data
    from medscribe.data.summary import data_tables

    result = run_data(settings, console=err_console)
    for table in data_tables(result):
        console.print(table)
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {warning}")
    console.print(f"wrote {result.out_dir} in {result.seconds:.1f} s (PHI scrubbing {result.phi_seconds:.1f} s)")
