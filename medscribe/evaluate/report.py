"""PNG plots (matplotlib, Agg backend: no display needed) and self-contained HTML / Markdown reports that embed
them as base64, so one file can be mailed or attached to a CI run.

    from medscribe.evaluate.report import plot_groups, plot_comparison, write_html, write_markdown

Reports show metrics, intervals, group tables and ids only: no input, prediction or reference text.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

from medscribe.io import atomic_path, atomic_write_text


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, target: Path) -> Path:
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return target


def plot_groups(tables: dict[str, list[dict]], field: str, metric: str, target: Path) -> Path | None:
    """Grouped bars: `metric` per group of `field`, one bar per run. `tables`: run name -> group rows."""
    plt = _pyplot()
    groups = sorted({row["group"] for rows in tables.values() for row in rows})
    if not groups:
        return None
    width = 0.8 / max(1, len(tables))
    fig, ax = plt.subplots(figsize=(min(18, max(6, 0.6 * len(groups) * max(1, len(tables)) + 2)), 4.5))
    for i, (run, rows) in enumerate(tables.items()):
        by_group = {row["group"]: row.get(metric) for row in rows}
        heights = [by_group.get(g) if by_group.get(g) is not None else 0.0 for g in groups]
        ax.bar([x + i * width for x in range(len(groups))], heights, width=width, label=run)
    ax.set_xticks([x + width * (len(tables) - 1) / 2 for x in range(len(groups))])
    ax.set_xticklabels(groups, rotation=30, ha="right")
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1.05)
    ax.set_title(f"{metric} by {field}")
    if len(tables) > 1:
        ax.legend()
    return _save(fig, target)


def plot_comparison(aggregates: dict[str, dict[str, float]], ci: dict[str, dict], metrics: list[str], target: Path):
    """Bars per metric, one per run, with bootstrap 95% intervals as error bars."""
    plt = _pyplot()
    metrics = [m for m in metrics if any(m in agg and agg[m] is not None for agg in aggregates.values())]
    if not metrics:
        return None
    width = 0.8 / max(1, len(aggregates))
    fig, ax = plt.subplots(figsize=(min(18, max(6, 0.45 * len(metrics) * len(aggregates) + 2)), 5))
    for i, (run, agg) in enumerate(aggregates.items()):
        values = [agg.get(m) if agg.get(m) is not None else 0.0 for m in metrics]
        low = [max(0.0, v - ci.get(run, {}).get(m, (v, v))[0]) for v, m in zip(values, metrics, strict=False)]
        high = [max(0.0, ci.get(run, {}).get(m, (v, v))[1] - v) for v, m in zip(values, metrics, strict=False)]
        low = [0.0 if math.isnan(x) else x for x in low]
        high = [0.0 if math.isnan(x) else x for x in high]
        ax.bar([x + i * width for x in range(len(metrics))], values, width=width, yerr=[low, high], capsize=3,
               label=run)
    ax.set_xticks([x + width * (len(aggregates) - 1) / 2 for x in range(len(metrics))])
    ax.set_xticklabels(metrics, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_title("metrics (bars: bootstrap 95% CI)")
    ax.legend()
    return _save(fig, target)


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def _data_uri(png: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode("ascii")


def _sections(report: dict) -> list[tuple[str, list[str], list[list]]]:
    """(title, header, rows) of every table in the report, shared by HTML and Markdown."""
    runs = list(report["runs"])
    base = report.get("baseline") or runs[0]
    others = [run for run in runs if run != base]
    sections = [(
        "Runs (fingerprint: what produced each run, written by ask; unknown = provenance not recorded)",
        ["run", "rows", "scored", "fingerprint", "mode", "test input (sha256/16)"],
        [[run, data["rows"], data["scored"], *_provenance(data.get("fingerprint"))]
         for run, data in report["runs"].items()],
    )]
    header = ["metric", *runs]
    for run in others:
        header += [f"Δ {run} − {base}", "95% CI", "p"]
    rows = []
    for metric in report["metric_order"]:
        row = [metric]
        for run in runs:
            value = report["runs"][run]["metrics"].get(metric)
            low, high = report["runs"][run]["ci95"].get(metric, (None, None))
            row.append(_fmt(value) + (f" [{_fmt(low)}, {_fmt(high)}]" if low is not None else ""))
        for run in others:
            d = report.get("comparison", {}).get(run, {}).get(metric)
            row += [_fmt(d["delta"]), f"[{_fmt(d['low'])}, {_fmt(d['high'])}]", _fmt(d["p_value"])] if d else ["–"] * 3
        rows.append(row)
    sections.append((f"Metrics (0..1; bootstrap 95% CI; Δ against the baseline {base})", header, rows))
    pairwise = report.get("pairwise") or {}
    if len(runs) > 2:  # with two runs the one pair is the baseline comparison above
        keys = list(pairwise)
        header = ["metric"]
        for key in keys:
            first, second = key.split("|", 1)
            header.append(f"Δ {second} − {first} [95% CI]")
        sections.append(("Pairwise differences (paired bootstrap, same resamples)", header, [
            [metric, *(_delta(pairwise[key].get(metric)) for key in keys)] for metric in report["metric_order"]
        ]))
    last = runs[-1]
    for field, table in report["runs"][last]["groups"].items():
        metric = report["primary_metric"]
        sections.append((
            f"{last}: {metric} by {field}", ["group", "n", metric],
            [[row["group"], row["n"], _fmt(row.get(metric))] for row in table],
        ))
    weakest = report["runs"][last].get("weakest", {})
    for field, rows in weakest.items():
        sections.append((
            f"{last}: weakest {field} groups", ["group", "n", report["primary_metric"]],
            [[row["group"], row["n"], _fmt(row.get(report["primary_metric"]))] for row in rows],
        ))
    rec = report.get("recommendations") or {}
    if rec.get("groups"):
        sections.append((
            "Recommended data.train_fractions for the next round", ["specialty", "n", "fraction", "why"],
            [[g["group"], g["n"], _fmt(g["fraction"]), g["reason"]] for g in rec["groups"]],
        ))
    return sections


EXAMPLES_PER_KIND = 5
EXAMPLE_CHARS = 300  # longer texts are cut in the report (rows.csv keeps them whole)

Section = tuple[str, list[str], list[list]]


def example_sections(report: dict, runs, scores, n: int = EXAMPLES_PER_KIND) -> list[Section]:
    """What the models actually wrote: per compared run, its n worst and n best rows by the primary metric and
    a fixed random sample of n (seeded like the bootstrap), each with the input, the reference and every
    run's answer side by side, so a reader can check the aggregate numbers against real answers."""
    import random

    import numpy as np

    metric = report.get("primary_metric")
    names = [run.name for run in runs]
    base = report.get("baseline") or names[0]
    compared = [i for i, name in enumerate(names) if name != base] or [0]
    header = ["id", "input", "reference", *[f"{name}" for name in names], f"{metric} ({{run}})"]
    out: list[Section] = []
    for i in compared:
        values = scores[i].per_row.get(metric) if metric else None
        if values is None:
            continue
        scored = [r for r in range(len(values)) if not np.isnan(values[r])]
        if not scored:
            continue
        order = sorted(scored, key=lambda r: (values[r], runs[i].ids[r]))
        rng = random.Random(report.get("bootstrap", {}).get("seed", 0))
        sample = sorted(rng.sample(scored, min(n, len(scored))), key=lambda r: runs[i].ids[r])
        for kind, rows in (("worst", order[:n]), ("best", order[::-1][:n]), ("random sample", sample)):
            title = f"{names[i]}: {kind} {len(rows)} rows by {metric} (answers of every run side by side)"
            out.append((title, [h.replace("{run}", names[i]) for h in header], [
                [runs[i].ids[r], _cut(runs[0].inputs[r] if runs[0].inputs else None), _cut(runs[0].references[r]),
                 *[_cut(run.predictions[r]) for run in runs], _fmt(float(values[r]))]
                for r in rows
            ]))
    return _scrubbed(out)


def _scrubbed(sections: list[Section]) -> list[Section]:
    """Reports travel (e-mail, slides): every text cell is PHI-scrubbed once more, model answers included (a
    model can write a name it saw in pretraining even though its training data was scrubbed)."""
    from medscribe.phi import Scrubber

    cells = [(s, r, c) for s, (_t, _h, rows) in enumerate(sections) for r, row in enumerate(rows)
             for c in range(1, len(row) - 1)]
    if not cells:
        return sections
    clean = iter(Scrubber().scrub_texts([sections[s][2][r][c] for s, r, c in cells]))
    for s, r, c in cells:
        sections[s][2][r][c] = next(clean)
    return sections


def _cut(text: str | None) -> str:
    if text is None:
        return "–"
    text = " ".join(str(text).split())
    return text if len(text) <= EXAMPLE_CHARS else text[: EXAMPLE_CHARS - 1] + "…"


def _delta(d: dict | None) -> str:
    return f"{_fmt(d['delta'])} [{_fmt(d['low'])}, {_fmt(d['high'])}] p={_fmt(d['p_value'])}" if d else "–"


def _provenance(fingerprint: dict | None) -> list[str]:
    if not fingerprint:
        return ["unknown", "–", "–"]
    parts = fingerprint.get("parts") or {}
    return [fingerprint["digest"], str(parts.get("mode") or "–"), str(parts.get("input") or "–")]


def write_html(report: dict, plots: list[Path], target: Path, examples: list[Section] = ()) -> Path:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>medscribe eval</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}th{background:#f3f3f3}</style></head><body>",
        f"<h1>medscribe eval: {html.escape(report['name'])}</h1>",
        "<ul>" + "".join(f"<li>{html.escape(note)}</li>" for note in _notes(report)) + "</ul>",
    ]
    for title, header, rows in [*_sections(report), *examples]:
        if not rows:
            continue  # an empty table says nothing
        parts.append(f"<h2>{html.escape(title)}</h2><table><tr>")
        parts += [f"<th>{html.escape(str(h))}</th>" for h in header]
        parts.append("</tr>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
        parts.append("</table>")
    for png in plots:
        parts.append(f"<h2>{html.escape(png.stem)}</h2><img alt='{html.escape(png.stem)}' src='{_data_uri(png)}'>")
    parts.append("</body></html>\n")
    return atomic_write_text(target, "".join(parts))


def write_markdown(report: dict, plots: list[Path], target: Path, examples: list[Section] = ()) -> Path:
    lines = [f"# medscribe eval: {report['name']}", "", *[f"- {note}" for note in _notes(report)], ""]
    for title, header, rows in [*_sections(report), *examples]:
        if not rows:
            continue
        lines += [f"## {title}", "", "| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
        lines.append("")
    for png in plots:
        lines += [f"## {png.stem}", "", f"![{png.stem}]({_data_uri(png)})", ""]
    return atomic_write_text(target, "\n".join(lines))


def _notes(report: dict) -> list[str]:
    notes = [f"{report['bootstrap']['samples']} paired bootstrap resamples, seed {report['bootstrap']['seed']}."]
    notes += [f"{name}: {sig}" for name, sig in report.get("signatures", {}).items()]
    notes += [f"{name}: {text}" for name, text in report.get("variants", {}).items()]
    notes += [f"skipped {name}: {why}" for name, why in report.get("skipped", {}).items()]
    notes += list(report.get("notes", []))
    notes += [f"{run}: no fingerprint: provenance unknown (compared by id only)"
              for run, data in report["runs"].items() if not data.get("fingerprint")]
    return notes
