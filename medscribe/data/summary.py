"""Rich tables for the end of `medscribe data`: rows in/kept/rejected, per split, per group, the most frequent
answers per split (is test representative?); PHI audit."""

from __future__ import annotations

from rich.table import Table

SPLIT_ORDER = ("train", "eval", "test", "pool")


def data_tables(result) -> list[Table]:
    counts = Table(title="medscribe data", show_header=True)
    counts.add_column("rows")
    counts.add_column("count", justify="right")
    counts.add_row("in", str(result.counts["rows_in"]))
    counts.add_row("kept", str(result.counts["rows_kept"]))
    counts.add_row("rejected", str(result.counts["rows_rejected"]))
    for reason, n in sorted(result.steps.items()):
        counts.add_row(f"  {reason}", str(n))
    splits = [s for s in SPLIT_ORDER if s in result.splits]
    group_by = result.manifest.get("group_by", "group")
    per_group = Table(title=f"rows per split and {group_by}")
    per_group.add_column(group_by)
    for split in splits:
        per_group.add_column(split, justify="right")
    for group in sorted(result.by_group):
        per_group.add_row(group, *(str(result.by_group[group].get(s, 0)) for s in splits))
    per_group.add_row("[bold]total[/bold]", *(f"[bold]{result.splits[s]}[/bold]" for s in splits))
    tables = [counts, per_group]
    audit = result.manifest.get("splits_audit") or {}
    if audit.get("top_answers"):
        tables.append(answers_table(audit, {s: result.splits[s] for s in splits}))
    return tables


def answers_table(audit: dict, split_rows: dict[str, int]) -> Table:
    """Rows (share) of the most frequent answers per split: the test column should read like the `all` one."""
    shared = audit.get("shared_across_splits") or {}
    table = Table(title=f"most frequent answers per split (split key {audit.get('key')!r}; across splits: "
                        f"{shared.get('inputs', 0)} inputs, {shared.get('targets', 0)} targets)")
    table.add_column("answer")
    for name in ("all", *split_rows):
        table.add_column(name, justify="right")
    total = sum(split_rows.values())
    for top in audit["top_answers"]:
        counts = top["rows_by_split"]
        cells = [_cell(top["rows"], total), *(_cell(counts.get(s, 0), n) for s, n in split_rows.items())]
        table.add_row(top["prefix"], *cells)
    share = audit.get("top_answers_share") or {}
    table.add_row("[bold]together[/bold]", *(f"[bold]{share[s]:.1%}[/bold]" if share.get(s) is not None else "–"
                                             for s in ("all", *split_rows)))
    return table


def _cell(rows: int, of: int) -> str:
    return f"{rows} ({rows / of:.1%})" if of else str(rows)


def audit_table(result) -> Table:
    table = Table(title=f"PHI audit: {len(result.findings)} finding(s) in {result.cells} cells")
    for name in ("file", "row", "column", "type"):
        table.add_column(name, justify="right" if name == "row" else "left")
    for f in result.findings[:200]:
        table.add_row(f["file"], str(f["row"]), f["column"], f["type"])
    if len(result.findings) > 200:
        table.add_row("...", "", "", f"{len(result.findings) - 200} more in the JSON report")
    return table
