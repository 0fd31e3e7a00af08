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


def fingerprint_label(data: dict) -> str:
    """A run's fingerprint digest (what produced it), or a visible 'unknown'."""
    fingerprint = data.get("fingerprint")
    return fingerprint["digest"] if fingerprint else "unknown"


def _delta_cell(d: dict | None) -> str:
    if not d:
        return "–"
    significant = d["low"] > 0 or d["high"] < 0
    color = ("green" if d["delta"] > 0 else "red") if significant else "white"
    return f"[{color}]{d['delta']:+.4f}[/{color}] [{_fmt(d['low'])}, {_fmt(d['high'])}]"


def metrics_table(report: dict) -> Table:
    runs = list(report["runs"])
    base = report.get("baseline") or runs[0]
    others = [run for run in runs if run != base]
    table = Table(title=f"eval {report['name']} (0..1, [95% CI]; baseline {base})", show_lines=False)
    table.add_column("metric", style="bold")
    for run in runs:
        table.add_column(run, justify="right")
    for run in others:
        table.add_column(f"Δ {run}−{base} [95% CI]", justify="right")
    table.add_row("[dim]fingerprint[/dim]", *(
        f"[dim]{fingerprint_label(report['runs'][r])}[/dim]" if report["runs"][r].get("fingerprint")
        else "[yellow]unknown[/yellow]" for r in runs), *([""] * len(others)))
    for metric in report["metric_order"]:
        cells = [metric]
        for run in runs:
            data = report["runs"][run]
            low, high = data["ci95"].get(metric, (None, None))
            n = data["n"].get(metric)
            ci = f" [{_fmt(low)}, {_fmt(high)}]" if low is not None else ""
            cells.append(f"{_fmt(data['metrics'].get(metric))}{ci}" + (f" n={n}" if n != data["scored"] else ""))
        for run in others:
            cells.append(_delta_cell(report["comparison"].get(run, {}).get(metric)))
        table.add_row(*cells)
    return table


def pairwise_table(report: dict) -> Table | None:
    """Δ (second − first) of every pair of runs; only worth a table when some pair leaves out the baseline."""
    base = report.get("baseline")
    pairs = [key for key in report.get("pairwise", {}) if base not in key.split("|")]
    if not pairs:
        return None
    keys = list(report["pairwise"])
    table = Table(title="pairwise Δ (second − first) [95% CI]")
    table.add_column("metric", style="bold")
    for key in keys:
        first, second = key.split("|", 1)
        table.add_column(f"{second}−{first}", justify="right")
    for metric in report["metric_order"]:
        table.add_row(metric, *(_delta_cell(report["pairwise"][key].get(metric)) for key in keys))
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
    for run, data in report["runs"].items():  # whole digests, which a narrow table would wrap
        fingerprint = data.get("fingerprint")
        if fingerprint:
            parts = fingerprint.get("parts") or {}
            out.print(f"[dim]{run} fingerprint {fingerprint['digest']} (input {parts.get('input') or 'unknown'})"
                      "[/dim]", highlight=False, soft_wrap=True)
        else:
            out.print(f"[yellow]{run} fingerprint unknown: provenance not recorded[/yellow]", highlight=False,
                      soft_wrap=True)
    pairwise = pairwise_table(report)
    if pairwise is not None:
        out.print(pairwise)
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
