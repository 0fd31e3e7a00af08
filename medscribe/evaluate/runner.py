"""`run_eval`: score one or more runs, compare them, break them down, write the report, check the gates.

    from medscribe.settings import load_settings
    from medscribe.evaluate import run_eval
    result = run_eval(load_settings(), [Path("artifacts/ask/base"), Path("artifacts/ask/tuned")])
    result.report["runs"]["tuned"]["metrics"]["rougeL"]

Writes into `settings.paths.eval/<name>` (or `out`): metrics.json, rows.csv, recommendations.json, PNG plots,
report.html / report.md. Every run is compared with `baseline` (a run name or path; default the first run):
report["comparison"][run][metric] = {"delta", "low", "high", "p_value"}, and every pair a-before-b in the given
order: report["pairwise"]["a|b"][metric] (b - a). Each run's fingerprint (what produced it, written by ask) is
in report["runs"][run]["fingerprint"]; runs whose fingerprints name different test inputs are refused
(UsageError), runs without one are compared by id with a warning. Gates (`fail_under`, merged over
`eval.fail_under`) check the LAST run given (the candidate); a gate that fails raises `GateFailed` (exit 1)
after everything is written.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from medscribe.errors import RuntimeFailure, UsageError
from medscribe.evaluate.breakdown import group_scores, recommend_fractions, weakest_groups
from medscribe.evaluate.compare import bootstrap, pair_key
from medscribe.evaluate.loading import align_runs, load_run
from medscribe.evaluate.scoring import score_runs
from medscribe.io import atomic_path, atomic_write_json

# Display order; recall@k follow in k order, then mrr.
METRIC_ORDER = [
    "exact_match", "token_f1", "bleu", "chrf", "rouge1", "rouge2", "rougeL", "meteor", "meteor_exact",
    "edit_similarity", "bertscore_f1", "bertscore_precision", "bertscore_recall", "embedding_cosine",
    "json_valid", "json_strict", "json_repaired", "has_finding_acc", "organ_acc", "modality_acc", "organ_cosine",
    "organ_match", "citation_precision", "citation_rate",
]
# Metric -> the eval.metrics family that produces it (None: computed whenever its columns exist).
FAMILY = {
    "exact_match": "exact_match", "token_f1": "token_f1", "bleu": "bleu", "chrf": "chrf", "rouge1": "rouge",
    "rouge2": "rouge", "rougeL": "rouge", "meteor": "meteor", "meteor_exact": "meteor",
    "edit_similarity": "edit_similarity", "bertscore_f1": "bertscore", "bertscore_precision": "bertscore",
    "bertscore_recall": "bertscore", "embedding_cosine": "embedding_cosine", "organ_cosine": "organ_cosine",
    "organ_match": "organ_cosine", "json_valid": None, "json_strict": None, "json_repaired": None,
    "has_finding_acc": None, "organ_acc": None,
    "modality_acc": None, "mrr": None, "citation_precision": None, "citation_rate": None,
}
RECALL_RE = re.compile(r"^recall@(\d+)$")


class GateFailed(RuntimeFailure):
    """A --fail-under gate was not met (exit 1). `.result` holds the full EvalResult."""

    def __init__(self, message: str, result: EvalResult):
        super().__init__(message)
        self.result = result


@dataclass
class EvalResult:
    out_dir: Path
    report: dict
    files: list[Path] = field(default_factory=list)
    gate_failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def canonical_metric(name: str) -> str:
    """The metric's canonical name (case-insensitive); UsageError for a name no eval produces."""
    lowered = name.strip().lower()
    for known in FAMILY:
        if known.lower() == lowered:
            return known
    if RECALL_RE.match(lowered):
        return lowered
    raise UsageError(
        f"unknown metric {name!r} in gates (known: {', '.join(FAMILY)}, recall@K)"
    )


def parse_gates(items: list[str] | None) -> dict[str, float]:
    """['rougeL=0.3', 'bleu=0.1'] -> {'rougeL': 0.3, 'bleu': 0.1}; malformed items are usage errors."""
    gates: dict[str, float] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            gates[canonical_metric(name)] = float(value)
        except ValueError:
            raise UsageError(f"--fail-under {item!r}: expected METRIC=VALUE, e.g. rougeL=0.3") from None
    return gates


def _aggregate(scores) -> tuple[dict[str, float], dict[str, int]]:
    values: dict[str, float] = {}
    counts: dict[str, int] = {}
    for metric, stats in scores.corpus_stats.items():
        values[metric] = scores.score_from_stats[metric](stats.sum(axis=0))
    for metric, per_row in scores.per_row.items():
        valid = per_row[~np.isnan(per_row)]
        counts.setdefault(metric, int(valid.size))
        if metric in scores.corpus_stats:
            values[f"{metric}_sentence_mean"] = float(valid.mean()) if valid.size else float("nan")
        else:
            values[metric] = float(valid.mean()) if valid.size else float("nan")
    return values, counts


def _metric_order(present: set[str]) -> list[str]:
    recalls = sorted((m for m in present if RECALL_RE.match(m)), key=lambda m: int(m.split("@")[1]))
    tail = recalls + (["mrr"] if "mrr" in present else [])
    return [m for m in METRIC_ORDER if m in present] + tail


def _output_name(runs) -> str:
    return "-vs-".join(run.name for run in runs)


def run_eval(
    settings,
    inputs: list[Path],
    out: Path | None = None,
    name: str | None = None,
    fail_under: dict[str, float] | None = None,
    console=None,
    baseline: str | None = None,
) -> EvalResult:
    """Evaluate `inputs` (run dirs or CSV/JSONL files); every run is compared with `baseline` (a run name or
    one of `inputs`; default the first) and every pair of runs with each other."""
    from medscribe.evaluate import display

    cfg = settings.eval
    if not inputs:
        raise UsageError("eval: give at least one run dir or results file")
    gates = {canonical_metric(k): v for k, v in {**cfg.fail_under, **(fail_under or {})}.items()}
    for metric in gates:  # a gate on a metric nobody asked for is a config mistake: say so before any work
        family = FAMILY.get(metric)
        if family and family not in cfg.metrics:
            raise UsageError(f"gate {metric}: metric family {family!r} is not in eval.metrics")
    runs = [load_run(Path(p), cfg) for p in inputs]
    names = [run.name for run in runs]
    for i, run in enumerate(runs):  # two runs named alike (e.g. two results.jsonl files) get their position
        if names.count(run.name) > 1:
            run.name = f"{run.name}#{i + 1}"
    base = resolve_baseline(runs, baseline)
    provenance = check_provenance(runs)
    runs = align_runs(runs)
    warnings = [w for run in runs for w in run.warnings] + provenance

    with display.progress(console) as step:
        scores, notes = score_runs(runs, settings, step)
        if not any(run_scores.per_row for run_scores in scores):
            skipped = "; ".join(f"{k}: {v}" for k, v in notes.skipped.items()) or "no metric applies to these columns"
            raise RuntimeFailure(f"eval: no metric could be computed ({skipped})")
        step("bootstrap", 0, cfg.bootstrap_samples)
        boot = bootstrap(scores, samples=cfg.bootstrap_samples, seed=cfg.seed, baseline=base)
    for family, why in notes.skipped.items():
        warnings.append(f"{family} skipped: {why}")

    report: dict = {
        "name": name or _output_name(runs),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bootstrap": {"samples": boot.samples, "seed": boot.seed, "method": "paired percentile bootstrap"},
        "signatures": notes.signatures,
        "variants": notes.variants,
        "skipped": notes.skipped,
        "models": notes.models,
        "scale": "every metric is on 0..1 (BLEU and chrF are sacrebleu's score / 100)",
        "notes": [note for run in runs for note in run.notes],
        "baseline": base,
        "runs": {},
        "comparison": {},
        "pairwise": {},
    }
    present: set[str] = set()
    for run, run_scores in zip(runs, scores, strict=False):
        values, counts = _aggregate(run_scores)
        present |= {m for m in values if not m.endswith("_sentence_mean")}
        groups = {g: group_scores(run_scores, run.groups[g]) for g in cfg.group_by if any(run.groups[g])}
        report["runs"][run.name] = {
            "path": str(run.path), "rows": len(run), "scored": sum(r is not None for r in run.references),
            "errors": run.errors, "metrics": values, "n": counts,
            "ci95": {m: list(ci) for m, ci in boot.ci[run.name].items()},
            "groups": groups, "summary": run.summary, "fingerprint": run.fingerprint,
        }
    primary = cfg.primary_metric if cfg.primary_metric in present else next(iter(_metric_order(present)), None)
    if primary != cfg.primary_metric:
        warnings.append(f"primary metric {cfg.primary_metric!r} not computed: ranking groups by {primary!r}")
    report["primary_metric"] = primary
    report["metric_order"] = _metric_order(present)
    for run in runs:
        if run.name != base:
            report["comparison"][run.name] = _with_deltas(report, base, run.name, boot.diff[run.name])
    for i, first in enumerate(runs):
        for second in runs[i + 1:]:
            key = pair_key(first.name, second.name)
            report["pairwise"][key] = _with_deltas(report, first.name, second.name, boot.pairwise[key])
    last = report["runs"][runs[-1].name]
    if primary:
        last["weakest"] = {
            g: weakest_groups(table, primary, cfg.weakest_n, cfg.min_group_size) for g, table in last["groups"].items()
        }
    if primary and "specialty" in last["groups"]:
        report["recommendations"] = recommend_fractions(
            last["groups"]["specialty"], primary, cfg.recommend_min_fraction, cfg.min_group_size
        )
    else:
        report["recommendations"] = {"train_fractions": {}, "note": "no specialty column: nothing to recommend"}

    out_dir = Path(out) if out else Path(settings.paths.eval) / report["name"]
    result = EvalResult(out_dir=out_dir, report=report, warnings=warnings)
    result.gate_failures = check_gates(report, runs[-1].name, gates)
    report["gates"] = {"checked_run": runs[-1].name, "fail_under": gates, "failures": result.gate_failures}
    result.files = write_outputs(result, runs, scores, cfg)
    display.show(result, console)
    if result.gate_failures:
        raise GateFailed("gates failed: " + "; ".join(result.gate_failures), result)
    return result


def _with_deltas(report: dict, first: str, second: str, intervals: dict[str, dict]) -> dict[str, dict]:
    """{"delta": second - first, "low", "high", "p_value"} per metric both runs have."""
    out = {}
    for metric, d in intervals.items():
        a = report["runs"][first]["metrics"].get(metric)
        b = report["runs"][second]["metrics"].get(metric)
        if a is not None and b is not None:
            out[metric] = {"delta": b - a, **d}
    return out


def resolve_baseline(runs, baseline: str | None) -> str:
    """The baseline run's name: `baseline` names a run (its name, or the path it was given as)."""
    if baseline is None:
        return runs[0].name
    for run in runs:
        if baseline == run.name:
            return run.name
    wanted = Path(baseline).resolve()
    for run in runs:
        if run.path.resolve() == wanted:
            return run.name
    raise UsageError(f"--baseline {baseline!r} is none of the runs ({', '.join(run.name for run in runs)})")


def check_provenance(runs) -> list[str]:
    """Refuse runs that answered different test inputs (their fingerprints' `input` hashes differ); warn about
    runs whose provenance is unknown (no fingerprint, or one without an input hash)."""
    warnings = []
    first = None
    for run in runs:
        fingerprint = run.fingerprint
        if fingerprint is None:
            warnings.append(f"{run.name}: no fingerprint (fingerprint.json / summary.json): provenance unknown, "
                            "compared by id only")
            continue
        source = (fingerprint.get("parts") or {}).get("input")
        if source is None:
            warnings.append(f"{run.name}: fingerprint {fingerprint['digest']} has no input hash: test inputs "
                            "not checked, compared by id only")
            continue
        if first is None:
            first = (run.name, source)
        elif source != first[1]:
            raise UsageError(
                f"runs {first[0]!r} and {run.name!r} answered different test inputs (input {first[1]} vs "
                f"{source}): compare runs over the same test file")
    return warnings


def check_gates(report: dict, run_name: str, gates: dict[str, float]) -> list[str]:
    failures = []
    metrics = report["runs"][run_name]["metrics"]
    for metric, threshold in gates.items():
        value = metrics.get(metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            family = FAMILY.get(metric)
            why = report["skipped"].get(family or "", "no data for it in this run")
            if metric == "meteor" and "meteor_exact" in metrics:
                why = "only meteor_exact ran: no local WordNet"
            failures.append(f"{metric} not computed ({why})")
        elif value < threshold:
            failures.append(f"{metric} {value:.4f} < {threshold:g}")
    return failures


def json_safe(obj):
    """NaN (a metric with no applicable row) becomes null: json.dumps would write NaN, which is not JSON."""
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def write_outputs(result: EvalResult, runs, scores, cfg) -> list[Path]:
    from medscribe.evaluate import report as reporting

    out, report = result.out_dir, result.report
    out.mkdir(parents=True, exist_ok=True)
    files = [atomic_write_json(out / "metrics.json", json_safe(report))]
    files.append(atomic_write_json(out / "recommendations.json", json_safe(report["recommendations"])))
    files.append(_write_rows_csv(out / "rows.csv", runs, scores, report["metric_order"], cfg.group_by))
    plots = []
    primary = report["primary_metric"]
    for group_field in cfg.group_by:
        tables = {
            r: data["groups"][group_field] for r, data in report["runs"].items() if group_field in data["groups"]
        }
        if tables and primary:
            png = reporting.plot_groups(tables, group_field, primary, out / f"by_{group_field}.png")
            if png:
                plots.append(png)
    aggregates = {r: v["metrics"] for r, v in report["runs"].items()}
    ci = {r: {m: tuple(x) for m, x in v["ci95"].items()} for r, v in report["runs"].items()}
    png = reporting.plot_comparison(aggregates, ci, report["metric_order"], out / "metrics.png")
    if png:
        plots.append(png)
    files += plots
    examples = reporting.example_sections(report, runs, scores)
    if "html" in cfg.report_formats:
        files.append(reporting.write_html(report, plots, out / "report.html", examples))
    if "md" in cfg.report_formats:
        files.append(reporting.write_markdown(report, plots, out / "report.md", examples))
    return files


def _write_rows_csv(target: Path, runs, scores, metric_order: list[str], group_by: list[str]) -> Path:
    with atomic_path(target) as tmp, open(tmp, "w", encoding="utf-8-sig", newline="") as fh:  # BOM: Excel + Cyrillic
        writer = csv.writer(fh)
        writer.writerow(["run", "id", *group_by, "reference", "prediction", *metric_order])
        for run, run_scores in zip(runs, scores, strict=False):
            for i, row_id in enumerate(run.ids):
                values = []
                for metric in metric_order:
                    per_row = run_scores.per_row.get(metric)
                    value = None if per_row is None else per_row[i]
                    values.append("" if value is None or np.isnan(value) else f"{value:.4f}")
                groups = [run.groups[g][i] or "" for g in group_by]
                writer.writerow([run.name, row_id, *groups, run.references[i] or "", run.predictions[i], *values])
    return target
