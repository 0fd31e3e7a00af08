"""Metrics of the structured (JSON) answers and of retrieval, per row as numpy arrays (NaN = not applicable).

    from medscribe.evaluate.structured import json_validity, field_accuracy, organ_cosine, retrieval_metrics
    json_validity(run)            # {"json_valid", "json_strict", "json_repaired": arrays of 0/1}
    field_accuracy(run)           # {"has_finding_acc": ..., "organ_acc": ..., "modality_acc": ...}
    retrieval_metrics(run, [1, 3, 5])   # {"recall@1": ..., "recall@3": ..., "mrr": ...}
    citation_metrics(run)         # {"citation_precision": ..., "citation_rate": ...} (qa answers with citations)

A row counts only where the reference is known; a missing or unparsable predicted field then counts as wrong.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medscribe.evaluate.loading import RunData, _as_bool
from medscribe.evaluate.metrics import normalize_text

NAN = float("nan")


def json_validity(run: RunData) -> dict[str, np.ndarray]:
    """json_valid: the answer parsed (strictly or after a repair); json_strict: it parsed as produced;
    json_repaired: it parsed only after a repair (fences, chatter, json_repair). valid = strict + repaired.
    Rows whose repair status is unknown are NaN in strict/repaired (and the pair is left out when none is known)."""
    if all(ok is None for ok in run.parse_ok):
        return {}
    out = {"json_valid": np.array([NAN if ok is None else float(ok) for ok in run.parse_ok], dtype=np.float64)}
    repaired = run.repaired or [None] * len(run.parse_ok)
    parsed = [i for i, ok in enumerate(run.parse_ok) if ok]
    if parsed and all(repaired[i] is None for i in parsed):
        return out  # nothing says how the answers parsed: no strict/repaired split rather than a wrong one
    strict, fixed = [], []
    for ok, rep in zip(run.parse_ok, repaired, strict=True):
        unknown = ok is None or (ok and rep is None)
        strict.append(NAN if unknown else float(bool(ok) and rep is False))
        fixed.append(NAN if unknown else float(bool(ok) and rep is True))
    out["json_strict"] = np.array(strict, dtype=np.float64)
    out["json_repaired"] = np.array(fixed, dtype=np.float64)
    return out


def _predicted(parsed: dict | None, field_name: str) -> Any:
    return parsed.get(field_name) if isinstance(parsed, dict) else None


def field_accuracy(run: RunData, skipped: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """Accuracy of has_finding / organ / modality in the parsed answer against the reference fields.

    A field that no answer of the run fills (null or absent everywhere: the prompt did not ask for it) is not
    scored, and `skipped` gets the reason: a column of zeros would read as a model that gets organs wrong."""
    out: dict[str, np.ndarray] = {}
    if all(p is None for p in run.parsed):
        return out
    for field_name, references in run.ref_fields.items():
        if all(ref is None for ref in references):
            continue
        if not any(_predicted(p, field_name) is not None for p in run.parsed):
            if skipped is not None:
                skipped[f"{field_name}_acc ({run.name})"] = (
                    f"no answer fills {field_name!r} (the prompt does not ask for it)")
            continue
        values = []
        for ref, parsed in zip(references, run.parsed, strict=False):
            if ref is None:
                values.append(NAN)
                continue
            pred = _predicted(parsed, field_name)
            if field_name == "has_finding":
                values.append(float(_as_bool(pred) is ref))
            else:
                values.append(float(pred is not None and normalize_text(str(pred)) == normalize_text(str(ref))))
        out[f"{field_name}_acc"] = np.array(values, dtype=np.float64)
    return out


def organ_cosine(run: RunData, embedder, threshold: float) -> dict[str, np.ndarray]:
    """Cosine between predicted and reference organ names ('печень' vs 'печени' match here, not exactly)."""
    references = run.ref_fields.get("organ") or []
    predicted = [_predicted(parsed, "organ") for parsed in run.parsed]
    rows = [
        i for i, ref in enumerate(references)
        if ref is not None and isinstance(predicted[i], str) and predicted[i].strip()
    ]
    known = [i for i, ref in enumerate(references) if ref is not None]
    if not known or all(p is None for p in run.parsed):
        return {}
    cos = np.full(len(run), NAN)
    for i in known:  # reference known but no predicted organ: as far from a match as it gets
        cos[i] = 0.0
    if rows:
        left = [predicted[i].strip() for i in rows]
        right = [str(references[i]).strip() for i in rows]
        cos[rows] = embedder.pair_cosine(left, right)
    match = np.where(np.isnan(cos), NAN, (cos >= threshold).astype(np.float64))
    return {"organ_cosine": cos, "organ_match": match}


def citation_metrics(run: RunData) -> dict[str, np.ndarray]:
    """Citations checked against what the model was shown (the prompt asks it to cite the retrieved ids).

    citation_precision: the share of an answer's cited ids that were retrieved for that row (NaN when the answer
    cites nothing or did not parse): a cited id the model was never shown is made up. citation_rate: 1 when a
    parsed answer cites at least one id. Only rows whose answers have a `citations` list (qa) and that retrieved
    something count; without any such row nothing is reported."""
    precision = np.full(len(run), NAN)
    rate = np.full(len(run), NAN)
    counted = False
    for i, parsed in enumerate(run.parsed):
        cited = _predicted(parsed, "citations")
        retrieved = run.retrieved_ids[i] if i < len(run.retrieved_ids) else None
        if not isinstance(cited, list) or not retrieved:
            continue
        counted = True
        cited_ids = [str(c).strip() for c in cited if str(c).strip()]
        rate[i] = float(bool(cited_ids))
        if cited_ids:
            shown = set(map(str, retrieved))
            precision[i] = sum(c in shown for c in cited_ids) / len(cited_ids)
    return {"citation_precision": precision, "citation_rate": rate} if counted else {}


def retrieval_metrics(run: RunData, ks: list[int]) -> dict[str, np.ndarray]:
    """recall@k (gold case among the first k retrieved ids) and reciprocal rank, where the gold id is known."""
    rows = [i for i, gold in enumerate(run.gold_ids) if gold is not None and run.retrieved_ids[i] is not None]
    if not rows:
        return {}
    ranks = np.full(len(run), NAN)  # 1-based rank of the gold id; inf when not retrieved
    for i in rows:
        retrieved = run.retrieved_ids[i] or []
        ranks[i] = retrieved.index(run.gold_ids[i]) + 1 if run.gold_ids[i] in retrieved else np.inf
    out: dict[str, np.ndarray] = {}
    valid = ~np.isnan(ranks)
    for k in sorted(set(ks)):
        out[f"recall@{k}"] = np.where(valid, (ranks <= k).astype(np.float64), NAN)
    with np.errstate(divide="ignore"):
        out["mrr"] = np.where(valid, 1.0 / ranks, NAN)
    return out
