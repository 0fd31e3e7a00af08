"""Paired bootstrap: 95% confidence intervals for every metric of every run, for the difference of each run
against the baseline (the first run unless named) and for every pair of runs, resampling the SAME rows for
all runs (that is what makes it paired).

    from medscribe.evaluate.compare import bootstrap, pair_key
    boot = bootstrap(run_scores, samples=1000, seed=42, baseline="base")
    boot.ci[run][metric]             # (low, high) of the run's own score
    boot.diff[run][metric]           # {"low", "high", "p_value"} of run - baseline
    boot.pairwise[pair_key(a, b)][metric]   # the same for b - a, every a before b in the given order

Vectorized with numpy: each resample is a row of counts (how often each row was drawn), so a mean metric is
counts @ values and a corpus metric (BLEU, chrF) is computed from counts @ per-row sufficient statistics.
Same seed, same data -> same intervals.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# Resamples drawn per block: bounds memory (block x rows counts) for large test sets.
BLOCK = 200


@dataclass
class RunScores:
    """What the bootstrap needs from one run: per-row metrics (NaN = not applicable) and corpus statistics."""

    name: str
    per_row: dict[str, np.ndarray]
    corpus_stats: dict[str, np.ndarray] = field(default_factory=dict)
    score_from_stats: dict[str, Callable[[np.ndarray], float]] = field(default_factory=dict)


@dataclass
class BootstrapResult:
    samples: int
    seed: int
    ci: dict[str, dict[str, tuple[float, float]]]
    diff: dict[str, dict[str, dict[str, float]]]
    baseline: str = ""
    pairwise: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


def pair_key(a: str, b: str) -> str:
    """Key of the pair (a, b) in `pairwise`: its values are b - a."""
    return f"{a}|{b}"


def resample_counts(n_rows: int, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_samples x n_rows) draw counts: row j of sample b was drawn counts[b, j] times."""
    draws = rng.integers(0, n_rows, size=(n_samples, n_rows))
    offsets = (np.arange(n_samples) * n_rows)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=n_samples * n_rows).reshape(n_samples, n_rows)


def resampled_mean(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mean over the applicable rows (NaN excluded) of each resample."""
    valid = ~np.isnan(values)
    counts = counts.astype(np.float64)
    numerator = counts @ np.where(valid, values, 0.0)
    denominator = counts @ valid.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return numerator / denominator


def resampled_corpus(counts: np.ndarray, stats: np.ndarray, score: Callable[[np.ndarray], float]) -> np.ndarray:
    summed = counts.astype(np.float64) @ stats
    return np.array([score(row) for row in summed], dtype=np.float64)


def metric_names(run: RunScores) -> list[str]:
    return [*run.corpus_stats, *[m for m in run.per_row if m not in run.corpus_stats]]


def bootstrap(
    runs: list[RunScores], samples: int = 1000, seed: int = 42, baseline: str | None = None
) -> BootstrapResult:
    """Percentile 95% intervals; runs must be aligned row by row (same ids, same order). Differences against
    `baseline` (a run name; default the first run) and between every pair come from the same resamples."""
    n_rows = len(next(iter(runs[0].per_row.values())))
    rng = np.random.default_rng(seed)
    draws: dict[str, dict[str, list[np.ndarray]]] = {run.name: {} for run in runs}
    done = 0
    while done < samples:
        block = min(BLOCK, samples - done)
        counts = resample_counts(n_rows, block, rng)
        for run in runs:
            for metric in metric_names(run):
                if metric in run.corpus_stats:
                    values = resampled_corpus(counts, run.corpus_stats[metric], run.score_from_stats[metric])
                else:
                    values = resampled_mean(counts, run.per_row[metric])
                draws[run.name].setdefault(metric, []).append(values)
        done += block
    joined = {name: {m: np.concatenate(parts) for m, parts in metrics.items()} for name, metrics in draws.items()}

    ci = {
        name: {m: _interval(values) for m, values in metrics.items()} for name, metrics in joined.items()
    }
    base = baseline if baseline is not None else runs[0].name
    if base not in joined:
        raise ValueError(f"baseline {base!r} is not one of the runs")
    diff = {run.name: _differences(joined[base], joined[run.name]) for run in runs if run.name != base}
    pairwise = {
        pair_key(a.name, b.name): _differences(joined[a.name], joined[b.name])
        for i, a in enumerate(runs) for b in runs[i + 1:]
    }
    return BootstrapResult(samples=samples, seed=seed, ci=ci, diff=diff, baseline=base, pairwise=pairwise)


def _differences(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Interval and p-value of second - first for every metric both have, from their paired resamples."""
    out: dict[str, dict[str, float]] = {}
    for metric, values in second.items():
        if metric not in first:
            continue
        delta = values - first[metric]
        delta = delta[~np.isnan(delta)]
        if delta.size == 0:
            continue
        low, high = np.percentile(delta, [2.5, 97.5])
        # Two-sided bootstrap p-value: how often the resampled difference lands on the other side of 0.
        p_value = min(1.0, 2 * min(np.mean(delta <= 0), np.mean(delta >= 0)))
        out[metric] = {"low": float(low), "high": float(high), "p_value": float(p_value)}
    return out


def _interval(values: np.ndarray) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    low, high = np.percentile(values, [2.5, 97.5])
    return (float(low), float(high))
