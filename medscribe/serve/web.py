"""The web page of `medscribe serve` (GET /): a chat with the assistant and a comparison view of an eval folder.

    comparison = load_comparison(Path("artifacts/demo/eval/pipeline"))   # what GET /ui/comparison returns

The page (medscribe/resources/serve/index.html) is one self-contained file: inline CSS and JavaScript, no CDN, no
web font, so it works offline. Chat: it calls /v1/chat/completions (medscribe-rag by default) and shows the
retrieved cases beside each answer. Comparison: per row of the eval folder (`serve.eval_dir`, `--eval DIR`) the
finding, the reference and each run's answer side by side with its score on the primary metric; filter by group
(specialty/organ/modality), sort by the score of any run.

The comparison reads the folder's metrics.json (runs, their paths, the primary metric, the group columns) and
rows.csv (per run and id: groups, reference, prediction, per-row metrics); the finding comes from each run's
results.jsonl (`input`) when that run folder is still there, else it is left empty.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from medscribe.errors import UsageError

PAGE = Path(__file__).resolve().parents[1] / "resources" / "serve" / "index.html"


def page() -> str:
    return PAGE.read_text(encoding="utf-8")


def _inputs(run_path: str | None) -> dict[str, str]:
    """id -> input from an ask run folder's results.jsonl (empty when the folder is gone)."""
    if not run_path:
        return {}
    source = Path(run_path) / "results.jsonl" if Path(run_path).is_dir() else Path(run_path)
    if not source.is_file() or source.suffix != ".jsonl":
        return {}
    out: dict[str, str] = {}
    for line in source.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and row.get("id") is not None and row.get("input"):
            out[str(row["id"])] = str(row["input"])
    return out


def load_comparison(eval_dir: str | Path) -> dict[str, Any]:
    folder = Path(eval_dir)
    metrics_file, rows_file = folder / "metrics.json", folder / "rows.csv"
    if not metrics_file.is_file() or not rows_file.is_file():
        raise UsageError(f"{folder}: not an eval folder (needs metrics.json and rows.csv from `medscribe eval`)")
    report = json.loads(metrics_file.read_text(encoding="utf-8"))
    runs = list(report.get("runs") or {})
    primary = report.get("primary_metric") or "rougeL"
    with open(rows_file, encoding="utf-8-sig", newline="") as fh:
        table = list(csv.DictReader(fh))
    header = list(table[0]) if table else []
    fixed = {"run", "id", "reference", "prediction"}
    metric_columns = set(report.get("metric_order") or [])
    groups = [c for c in header if c not in fixed and c not in metric_columns]
    inputs: dict[str, str] = {}
    for name in runs:
        for key, value in _inputs((report["runs"][name] or {}).get("path")).items():
            inputs.setdefault(key, value)
    rows: dict[str, dict[str, Any]] = {}
    for line in table:
        row = rows.setdefault(line["id"], {"id": line["id"], "input": inputs.get(line["id"], ""),
                                           "reference": line["reference"], "groups": {g: line[g] for g in groups},
                                           "answers": {}})
        score = line.get(primary)
        row["answers"][line["run"]] = {"prediction": line["prediction"],
                                       "score": float(score) if score not in (None, "") else None}
    return {"name": report.get("name") or folder.name, "runs": runs, "primary_metric": primary,
            "groups": groups, "rows": list(rows.values()),
            "metrics": {name: (report["runs"][name] or {}).get("metrics", {}).get(primary) for name in runs}}
