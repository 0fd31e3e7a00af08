"""Rich tables for `medscribe index`: the build summary and the query hits."""

from __future__ import annotations

from rich.table import Table


def _short(text: str | None, limit: int) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_build_report(console, settings, report) -> None:
    m = report.manifest
    table = Table(title=f"index {m.get('collection')} @ {m.get('location')}", show_header=True)
    for name in ("added", "updated", "unchanged", "deleted", "stale", "rejected", "embedded", "entries"):
        table.add_column(name, justify="right")
    c = report.counts()
    table.add_row(
        *(
            str(c[name])
            for name in ("added", "updated", "unchanged", "deleted", "stale", "rejected", "embedded", "entries")
        )
    )
    console.print(table)
    console.print(
        f"model {m.get('embedding_model')} ({m.get('dimension')}-d), {report.seconds:.1f} s; "
        f"manifest: {settings.paths.index}/index_manifest.json",
        highlight=False,
    )
    if report.stale:
        console.print(
            f"[yellow]warning:[/yellow] {report.stale} entries are gone from the sources; "
            "rerun with --prune to delete them"
        )
    if report.rejected:
        console.print(
            f"[yellow]warning:[/yellow] {report.rejected} corpus rows rejected: see "
            f"{settings.paths.index}/rejects.jsonl"
        )
    if m.get("corpus") is None:
        console.print("[yellow]warning:[/yellow] no corpus indexed (knowledge documents only)")


def print_hits(console, query: str, hits) -> None:
    table = Table(title=f"hits for: {_short(query, 80)}", show_lines=True)
    for name, kwargs in (
        ("#", {"justify": "right"}),
        ("id", {}),
        ("score", {"justify": "right"}),
        ("text", {"ratio": 3}),
        ("answer", {"ratio": 2}),
        ("metadata", {"ratio": 2}),
    ):
        table.add_column(name, **kwargs)
    for rank, hit in enumerate(hits, start=1):
        meta = ", ".join(f"{k}={v}" for k, v in sorted(hit.metadata.items()) if k not in {"start", "end"})
        table.add_row(
            str(rank), hit.id, f"{hit.score:.3f}", _short(hit.text, 300), _short(hit.answer, 200), _short(meta, 200)
        )
    console.print(table)
    if not hits:
        console.print("no hits (empty index, filters too narrow, or all below index.threshold)")
