"""`medscribe doctor`: is this machine ready to run the configured pipeline?"""

import typer

from medscribe.commands._common import console, handle_errors, load_settings


@handle_errors
def doctor(ctx: typer.Context) -> None:
    """Check python, torch, CUDA/GPU, key packages, configured models (offline) and paths. Exit 1 if not ready."""
    from rich.table import Table

    from medscribe.doctor import run_checks

    settings = load_settings(ctx)
    checks = run_checks(settings)
    table = Table(title="medscribe doctor")
    for column in ("check", "status", "detail"):
        table.add_column(column)
    for check in checks:
        if check.ok:
            status = "[green]ok[/green]"
        else:
            status = "[red]MISSING[/red]" if check.required else "[yellow]warn[/yellow]"
        table.add_row(check.name, status, check.detail)
    console.print(table)
    failed = [c.name for c in checks if c.required and not c.ok]
    if failed:
        console.print(f"[red]not ready:[/red] {', '.join(failed)}")
        raise typer.Exit(1)
    console.print("[green]ready[/green]")
