"""Rich output for `medscribe ask`: the answer panel (single) and the summary table (batch)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text


def answer_panel(row: dict[str, Any]) -> Panel:
    body: list[Any] = [Text(row["prediction"] or "")]
    if not row["parse_ok"]:
        body.append(Text(f"\n(not valid JSON: {row.get('parse_error')}; raw text shown)", style="yellow"))
    parsed = row.get("parsed") or {}
    if parsed.get("citations"):
        # A cited id that was not retrieved is made up (or copied from a few-shot turn): say so next to it.
        shown = set(map(str, row.get("retrieved_ids") or []))
        cited = [c if c in shown else f"{c} (not retrieved)" for c in map(str, parsed["citations"])]
        body.append(Text(f"\nmodel cites: {', '.join(cited)}", style="dim"))
    if row["retrieved_ids"]:
        cases = Table(title="retrieved cases", title_justify="left", show_edge=False)
        cases.add_column("case id")
        cases.add_column("cosine", justify="right")
        cases.add_column("text", overflow="ellipsis", no_wrap=True, max_width=60)
        for hit in row.get("hits", []):
            cases.add_row(str(hit["id"]), f"{hit['score']:.3f}", hit["text"])
        body += [Text(""), cases]
    else:
        body.append(Text("\nno retrieval (k=0)", style="dim"))
    tokens = f"{row.get('prompt_tokens')} prompt / {row.get('completion_tokens')} completion tokens"
    return Panel(Group(*body), title=f"answer ({row['task']})", subtitle=f"{row['latency_s']:.2f} s, {tokens}")


def summary_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"ask run {summary['run']}", show_header=False, title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value")
    rate = summary["json_valid_rate"]
    rows = [
        ("rows", f"{summary['answered']} answered / {summary['count']} ({summary['failures']} failed)"),
        ("asked this run", f"{summary['asked_this_run']} (resumed {summary['resumed_rows']})"),
        ("JSON valid", "-" if rate is None else f"{rate:.1%} ({summary['json_repaired']} repaired)"),
        ("latency p50 / p95", f"{_s(summary['latency_p50_s'])} / {_s(summary['latency_p95_s'])}"),
        ("tokens/s", "-" if summary["tokens_per_s"] is None else f"{summary['tokens_per_s']:.1f}"),
        ("backend / model", f"{summary['backend']} / {summary['model']}"),
        ("adapter", str(summary["adapter"] or "none")),
        *([("tokenizer", summary["tokenizer_source"])] if summary.get("tokenizer_source") else []),
        ("k", str(summary["k"])),
    ]
    if summary.get("json_mode"):
        used = summary.get("json_mode_used") or "-"
        rows.append(("json mode", f"{summary['json_mode']} (used: {used})"))
    rows.append(("output", summary["run_dir"]))
    for key, value in rows:
        table.add_row(key, value)
    return table


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"
