"""Terminal output of eval: a rich progress bar while scoring and rich tables of the results.

Progress goes to stderr (so `medscribe eval ... > out.txt` keeps only the tables), tables to stdout.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table


def _consoles(console: Console | None) -> tuple[Console, Console]:
    from medscribe.commands._common import console as out
    from medscribe.commands._common import err_console

    return (console or out), err_console


@contextmanager
def progress(console: Console | None = None) -> Iterator:
    """Yield step(what, done, total): one bar whose label says what is being computed."""
    _, err = _consoles(console)
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), console=err, transient=True,
    ) as bar:
        task = bar.add_task("eval", total=None)

        def step(what: str, done: int, total: int) -> None:
            bar.update(task, description=what, completed=done, total=total or None)

        yield step


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4f}"


def metrics_table(report: dict) -> Table:
    runs = list(report["runs"])
    base = runs[0]
    table = Table(title=f"eval {report['name']} (0..1, [95% CI])", show_lines=False)
    table.add_column("metric", style="bold")
    for run in runs:
        table.add_column(run, justify="right")
    for run in runs[1:]:
        table.add_column(f"Δ {run}−{base} [95% CI]", justify="right")
    for metric in report["metric_order"]:
        cells = [metric]
        for run in runs:
            data = report["runs"][run]
            low, high = data["ci95"].get(metric, (None, None))
            n = data["n"].get(metric)
            ci = f" [{_fmt(low)}, {_fmt(high)}]" if low is not None else ""
            cells.append(f"{_fmt(data['metrics'].get(metric))}{ci}" + (f" n={n}" if n != data["scored"] else ""))
        for run in runs[1:]:
            d = report["comparison"].get(run, {}).get(metric)
            if not d:
                cells.append("–")
                continue
            significant = d["low"] > 0 or d["high"] < 0
            color = ("green" if d["delta"] > 0 else "red") if significant else "white"
            cells.append(f"[{color}]{d['delta']:+.4f}[/{color}] [{_fmt(d['low'])}, {_fmt(d['high'])}]")
        table.add_row(*cells)
    return table


def group_tables(report: dict) -> list[Table]:
    metric = report["primary_metric"]
    last = list(report["runs"])[-1]
    data = report["runs"][last]
    tables = []
    for field, rows in data["groups"].items():
        weakest = {row["group"] for row in data.get("weakest", {}).get(field, [])}
        table = Table(title=f"{last}: {metric} by {field} (weakest marked)")
        table.add_column(field)
        table.add_column("n", justify="right")
        table.add_column(metric, justify="right")
        for row in rows:
            mark = " [red]◀ weak[/red]" if row["group"] in weakest else ""
            table.add_row(row["group"], str(row["n"]), _fmt(row.get(metric)) + mark)
        tables.append(table)
    return tables


def show(result, console: Console | None = None) -> None:
    out, err = _consoles(console)
    report = result.report
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}", highlight=False, soft_wrap=True)
    out.print(metrics_table(report))
    for table in group_tables(report):
        out.print(table)
    for name, signature in report["signatures"].items():
        out.print(f"[dim]{name} signature: {signature}[/dim]", highlight=False)
    for name, text in report["variants"].items():
        out.print(f"[dim]{name}: {text}[/dim]", highlight=False)
    fractions = report.get("recommendations", {}).get("train_fractions")
    if fractions:
        out.print(f"recommended data.train_fractions: {fractions}", highlight=False)
    out.print(f"report: {result.out_dir}", highlight=False)
