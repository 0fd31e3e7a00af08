"""Scores per group (specialty / organ / modality), the weakest groups, and training-fraction recommendations.

    from medscribe.evaluate.breakdown import group_scores, weakest_groups, recommend_fractions
    table = group_scores(scores, run.groups["specialty"])        # [{"group", "n", metric: value, ...}]
    weakest_groups(table, "rougeL", n=3, min_size=5)
    recommend_fractions(table, "rougeL", min_fraction=0.5, min_size=5)

Recommendation formula (also in docs/eval.md): with s_g the group's primary metric, s_best the best group's and
gap_g = s_best - s_g, fraction_g = f_min + (1 - f_min) * gap_g / max_gap. The weakest group keeps all of its
training data (1.0), the strongest keeps f_min, the rest in proportion; groups with fewer than `min_size` scored
rows keep 1.0 (too little evidence to cut their data). The data stage reads it as `data.train_fractions`.
"""

from __future__ import annotations

import numpy as np

from medscribe.evaluate.compare import RunScores

UNKNOWN = "(unknown)"


def group_scores(scores: RunScores, values: list[str | None]) -> list[dict]:
    """One row per group value: its row count and every metric over the group's rows (corpus metrics too)."""
    labels = np.array([v if v is not None else UNKNOWN for v in values], dtype=object)
    table = []
    for group in sorted(set(labels.tolist()), key=lambda g: (g == UNKNOWN, g)):
        mask = labels == group
        row: dict = {"group": group, "n": int(mask.sum())}
        for metric, stats in scores.corpus_stats.items():
            row[metric] = scores.score_from_stats[metric](stats[mask].sum(axis=0))
        for metric, per_row in scores.per_row.items():
            if metric in scores.corpus_stats:
                continue
            selected = per_row[mask]
            selected = selected[~np.isnan(selected)]
            row[metric] = float(selected.mean()) if selected.size else None
        table.append(row)
    return table


def weakest_groups(table: list[dict], metric: str, n: int = 3, min_size: int = 5) -> list[dict]:
    """The n groups with the lowest `metric` among groups with at least `min_size` rows (unknown excluded)."""
    candidates = [
        row for row in table
        if row["group"] != UNKNOWN and row["n"] >= min_size and row.get(metric) is not None
    ]
    # At most half of the groups (with two groups only one is "weak", with one none is), and never a group that
    # ties with the best: a group scoring like the best one is not weak, whatever its rank.
    best = max((row[metric] for row in candidates), default=None)
    below_best = [row for row in candidates if row[metric] < best]
    return sorted(below_best, key=lambda row: (row[metric], row["group"]))[: min(n, len(candidates) // 2)]


def recommend_fractions(table: list[dict], metric: str, min_fraction: float = 0.5, min_size: int = 5) -> dict:
    """{"train_fractions": {group: fraction}, "groups": [...explanations]} for the next training round."""
    scored = [
        row for row in table
        if row["group"] != UNKNOWN and row["n"] >= min_size and row.get(metric) is not None
    ]
    best = max((row[metric] for row in scored), default=None)
    max_gap = max((best - row[metric] for row in scored), default=0.0) if best is not None else 0.0
    fractions: dict[str, float] = {}
    explained = []
    for row in table:
        if row["group"] == UNKNOWN:
            continue
        score = row.get(metric)
        if row["n"] < min_size or score is None:
            fraction, reason = 1.0, f"only {row['n']} scored rows (< {min_size}): keep all training data"
        elif max_gap <= 0:
            fraction, reason = 1.0, "all groups score the same: keep all training data"
        else:
            gap = best - score
            fraction = min_fraction + (1.0 - min_fraction) * gap / max_gap
            reason = f"{metric} {score:.3f} is {gap:.3f} below the best group"
        fractions[row["group"]] = round(float(fraction), 3)
        explained.append(
            {"group": row["group"], "n": row["n"], metric: score, "fraction": fractions[row["group"]], "reason": reason}
        )
    return {
        "metric": metric,
        "formula": "fraction = f_min + (1 - f_min) * (best - score) / (best - worst); groups with too few "
        "scored rows keep 1.0",
        "min_fraction": min_fraction,
        "min_group_size": min_size,
        "train_fractions": fractions,
        "groups": explained,
    }
