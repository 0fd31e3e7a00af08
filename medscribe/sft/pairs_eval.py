"""Preference pairs built from an eval run: the model's own weak answers are the rejected side (hard negatives).

    from medscribe.sft.pairs_eval import pairs_from_eval
    pairs, report = pairs_from_eval(settings, "artifacts/eval/sft-run")   # or an ask run folder

For every row of the ask run that the eval scored below `sft.pairs_threshold` on `sft.pairs_metric`:
chosen = the reference rendered as the training target (`prompts.render_target`, the SFT target), rejected = the
model's raw answer as it generated it, prompt = `prompts.build_messages` with the SAME retrieved context the model
saw. That context is found again: the retrieval ask ran (its k and filter fields from the run's fingerprint) is
repeated on the current index, whose fingerprint must equal the one the run recorded, and the hit ids must equal
the row's `retrieved_ids`; where the run's log.jsonl holds the messages ask sent, the rebuilt prompt must equal
them. The current [prompt] settings must render what the run's fingerprint recorded (`provenance.prompt_hash`).
Rows whose answer was right (score >= threshold) give no pair; rows that failed, were copied from a case, have
no reference, or whose context cannot be reproduced are rejected with a reason.

The source is an eval output folder (metrics.json + rows.csv: scores per row; `sft.pairs_eval_run` picks the
run, default the last one compared) or an ask run folder (scored here with eval's scorer on that one metric).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from medscribe.errors import UsageError
from medscribe.io import read_jsonl
from medscribe.sft.pairs import Pair, PairReport


def _scores_from_eval_dir(folder: Path, run_name: str | None, metric: str) -> tuple[str, Path, dict[str, float]]:
    """(run name, ask run path, id -> score) from an eval output folder."""
    try:
        report = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        runs = report["runs"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise UsageError(f"{folder / 'metrics.json'}: not an eval report (no 'runs')") from None
    if not runs:
        raise UsageError(f"{folder / 'metrics.json'}: the report has no runs")
    name = run_name or list(runs)[-1]
    if name not in runs:
        raise UsageError(f"sft.pairs_eval_run: {name!r} is not a run of {folder} ({', '.join(runs)})")
    scores: dict[str, float] = {}
    with open(folder / "rows.csv", encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        if metric not in (reader.fieldnames or []):
            have = [c for c in (reader.fieldnames or []) if c not in ("run", "id", "reference", "prediction")]
            raise UsageError(f"{folder / 'rows.csv'}: no column {metric!r} (sft.pairs_metric); it has: "
                             f"{', '.join(have[-12:]) or 'none'}")
        for row in reader:
            if row.get("run") == name and row.get(metric) not in (None, ""):
                scores[str(row["id"])] = float(row[metric])
    return name, Path(runs[name]["path"]), scores


def _scores_from_ask_run(settings: Any, run_dir: Path, metric: str) -> dict[str, float]:
    """id -> score of one ask run, scored with eval's scorer on the metric's family only (no other models)."""
    from medscribe.evaluate.loading import load_run
    from medscribe.evaluate.runner import FAMILY
    from medscribe.evaluate.scoring import score_runs

    family = FAMILY.get(metric) if metric in FAMILY else ("exact_match" if metric.startswith("recall@") else None)
    cfg = settings.eval.model_copy(update={"metrics": [family] if family else []})
    run = load_run(run_dir, cfg)
    scores, notes = score_runs([run], settings.model_copy(update={"eval": cfg}))
    values = scores[0].per_row.get(metric)
    if values is None:
        why = notes.skipped.get(family or "", "no data for it in this run")
        raise UsageError(f"sft.pairs_metric: {metric!r} could not be computed for {run_dir} ({why})")
    return {row_id: float(v) for row_id, v in zip(run.ids, values, strict=True) if not math.isnan(float(v))}


def scores_of(settings: Any, source: Path, metric: str, field: str) -> tuple[str | None, Path, dict[str, float]]:
    """(run name or None, ask run path, id -> score on `metric`) of an eval output folder (metrics.json + rows.csv,
    `sft.pairs_eval_run` picks the run) or an ask run folder (scored here). `field` names the setting in errors."""
    if (source / "metrics.json").is_file() and (source / "rows.csv").is_file():
        return _scores_from_eval_dir(source, settings.sft.pairs_eval_run, metric)
    if source.exists():
        return None, source, _scores_from_ask_run(settings, source, metric)
    raise UsageError(f"{field}: {source} not found (an eval output folder or an ask run folder)")


def _logged_messages(run_dir: Path) -> dict[str, list]:
    """id -> the messages ask sent for it (the last answered request in log.jsonl), when the log exists."""
    path = run_dir / "log.jsonl"
    if not path.is_file():
        return {}
    out = {}
    for line in read_jsonl(path):
        if line.get("id") is not None and line.get("messages") and not line.get("error"):
            out[str(line["id"])] = line["messages"]
    return out


def _check_prompt(settings: Any, parts: dict, tasks: list[str], run_dir: Path) -> None:
    from medscribe.ask.provenance import prompt_hash

    recorded = parts.get("prompt")
    if recorded is None:
        return
    current = prompt_hash(settings, tasks)
    if current != recorded:
        raise UsageError(
            f"{run_dir}: its answers were generated with another prompt (prompt {recorded[:8]}..., the current "
            f"[prompt] settings render {current[:8]}...): use the [prompt] settings of that run")


def _open_retriever(settings: Any, parts: dict, run_dir: Path, retriever: Any) -> Any:
    from medscribe import fingerprint as fp

    if retriever is None:
        from medscribe.sft.train import _open_retriever as open_index

        retriever = open_index(settings)
    recorded = parts.get("index")
    if recorded is not None:
        current = fp.index_fingerprint(settings, retriever)
        if current != recorded:
            raise UsageError(
                f"{run_dir}: the index changed since this run answered (index {recorded[:8]}... -> "
                f"{current[:8]}...), so the context it saw cannot be rebuilt; ask again on the current index")
    return retriever


def pairs_from_eval(settings: Any, source: str | Path, retriever: Any = None) -> tuple[list[Pair], PairReport]:
    """Pairs from the rows of an eval/ask run scored below the threshold (see the module docstring)."""
    from medscribe import fingerprint as fp
    from medscribe.ask.core import retrieve
    from medscribe.evaluate.loading import read_fingerprint, results_file
    from medscribe.evaluate.runner import canonical_metric
    from medscribe.prompts import build_messages, render_target

    sft = settings.sft
    source = Path(source)
    metric, threshold = canonical_metric(sft.pairs_metric), sft.pairs_threshold
    if settings.prompt.variant == "cot":
        raise UsageError("sft.pairs_eval with prompt.variant = 'cot': ask results carry no reference reasoning to "
                         "train the chosen answer on; use sft.pairs_file or prompt.variant = 'detailed'")
    run_name, ask_path, scores = scores_of(settings, source, metric, "sft.pairs_eval")
    results = results_file(ask_path)
    run_dir = results.parent
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else {}
    fingerprint = read_fingerprint(run_dir, summary)
    parts = (fingerprint or {}).get("parts") or {}
    rows = read_jsonl(results)
    report = PairReport(source={
        "kind": "eval", "path": str(source), "run": run_name, "ask_run": str(run_dir), "metric": metric,
        "threshold": threshold, "ask_fingerprint": (fingerprint or {}).get("digest"),
        "results_sha256": fp.file_hash(results),
    })
    report.rows = len(rows)
    if fingerprint is None:
        report.warnings.append(f"{run_dir}: no fingerprint: prompt and index of the run not checked")
    _check_prompt(settings, parts, [r.get("task") or settings.data.task for r in rows], run_dir)
    counts = {"right": 0, "below_threshold": 0, "prompt_checked_against_log": 0}
    candidates = []
    for lineno, row in enumerate(rows, start=1):
        row_id = str(row.get("id"))
        score = scores.get(row_id)
        if row.get("error"):
            report.reject("ask failed on this row", lineno, row_id)
        elif row.get("copied"):
            report.reject("copied answer (not the model's own)", lineno, row_id)
        elif not row.get("reference"):
            report.reject("no reference", lineno, row_id)
        elif not str(row.get("raw") or "").strip():
            report.reject("empty model answer", lineno, row_id)
        elif score is None:
            report.reject(f"not scored on {metric}", lineno, row_id)
        elif score >= threshold:
            counts["right"] += 1  # a right answer is no negative: no pair
        else:
            counts["below_threshold"] += 1
            candidates.append((lineno, row, score))
    k = int(parts.get("k", summary.get("k", 0)) or 0)
    hits_per_row: list[list] = [[] for _ in candidates]
    if candidates and k > 0:
        retriever = _open_retriever(settings, parts, run_dir, retriever)
        filters = list(parts.get("filter_fields", settings.ask.filter_fields) or [])
        records = [{"id": row.get("id"), "input": row["input"], **{f: row.get(f) for f in filters}}
                   for _, row, _ in candidates]
        hits_per_row = retrieve(retriever, records, k, filters)
    logged = _logged_messages(run_dir)
    pairs: list[Pair] = []
    for (lineno, row, score), hits in zip(candidates, hits_per_row, strict=True):
        row_id = str(row.get("id"))
        if [h.id for h in hits] != list(row.get("retrieved_ids") or []):
            report.reject("retrieved context differs from the one recorded", lineno, row_id)
            continue
        task = row.get("task") or settings.data.task
        record = {k_: row.get(k_) for k_ in ("input", "organ", "modality", "specialty")}
        record["target"] = row["reference"]
        prompt = build_messages(record, task, settings.prompt, context=hits)
        if row_id in logged:
            if logged[row_id] != prompt:
                report.reject("prompt differs from the one ask sent (log.jsonl)", lineno, row_id)
                continue
            counts["prompt_checked_against_log"] += 1
        chosen = render_target(record, task, settings.prompt, hits)
        rejected = str(row["raw"]).strip()
        if chosen.strip() == rejected:
            report.reject("chosen equals rejected", lineno, row_id)
            continue
        pairs.append(Pair(id=row_id, prompt=prompt, chosen=chosen, rejected=rejected,
                          origin={"line": lineno, metric: round(score, 4)}))
    report.pairs, report.counts = len(pairs), counts
    if not pairs:
        if not candidates:
            raise UsageError(
                f"{source}: no usable pairs: no answer scored below sft.pairs_threshold = {threshold:g} on {metric} "
                f"({counts['right']} of {len(rows)} rows at or above it, {len(report.rejects)} unusable)")
        first = next(r["reason"] for r in report.rejects if r["line"] in {c[0] for c in candidates})
        raise UsageError(
            f"{source}: no usable pairs: {len(candidates)} answers scored below sft.pairs_threshold = {threshold:g} "
            f"on {metric}, none usable (first: {first})")
    return pairs, report
