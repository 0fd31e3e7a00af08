"""Leakage audit across splits: inputs (and targets) that appear, exactly or nearly, in two splits.

    from medscribe.data.leakage import audit_leakage
    report = audit_leakage(frame, threshold=0.95)   # goes into manifest.json under "leakage"

Exact = equal normalized text; near = rapidfuzz ratio >= threshold between sorted neighbours (see dedup.py),
with no same-numbers condition here: a finding that differs from a training finding only in a measurement
is still one the model has practically seen. Ids are listed (up to `max_examples` pairs), never texts.
"""

from __future__ import annotations

import polars as pl

from medscribe.data.dedup import neighbour_pairs


def audit_leakage(frame: pl.DataFrame, threshold: float, max_examples: int = 50) -> dict:
    report: dict = {"threshold": threshold}
    for field in ("input", "target"):
        count, examples = _exact_cross_split(frame, f"_norm_{field}", max_examples)
        report[f"exact_{field}"] = {"count": count, "examples": examples}
    if "image" in frame.columns and frame.get_column("image").is_not_null().any():  # one picture, two splits
        count, examples = _exact_cross_split(frame.filter(pl.col("image").is_not_null()), "image", max_examples)
        report["exact_image"] = {"count": count, "examples": examples}
    ids = frame.get_column("id").to_list()
    splits = frame.get_column("split").to_list()
    inputs = frame.get_column("_norm_input").to_list()
    pairs = neighbour_pairs(inputs, [""] * len(inputs), threshold, across=splits)
    near = [{"ids": [ids[a], ids[b]], "splits": [splits[a], splits[b]]} for a, b in pairs]
    report["near_input"] = {"count": len(near), "examples": near[:max_examples]}
    return report


def _exact_cross_split(frame: pl.DataFrame, key: str, max_examples: int) -> tuple[int, list[dict]]:
    """Normalized texts present in more than one split: how many, and the first id in each split."""
    per_split = frame.group_by(key, "split", maintain_order=True).agg(pl.col("id").first())
    shared = (
        per_split.group_by(key, maintain_order=True)
        .agg(pl.col("id").alias("ids"), pl.col("split").alias("splits"))
        .filter(pl.col("splits").list.len() > 1)
    )
    return shared.height, shared.head(max_examples).select("ids", "splits").to_dicts()
