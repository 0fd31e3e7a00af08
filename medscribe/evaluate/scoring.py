"""Score aligned runs: every requested metric family, per row, with the models loaded once for all runs.

    from medscribe.evaluate.scoring import score_runs
    scores, notes = score_runs(runs, settings, progress)

Rows without a reference get NaN for text metrics (excluded from means) and zero corpus statistics, so every
array has one value per row of the run and the bootstrap can resample all metrics together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from medscribe.evaluate.compare import RunScores
from medscribe.evaluate.loading import RunData
from medscribe.evaluate.metrics import LEXICAL_FAMILIES, compute_lexical
from medscribe.evaluate.semantic import EmbeddingModel, ModelUnavailable, bertscore
from medscribe.evaluate.structured import (
    citation_metrics,
    field_accuracy,
    json_validity,
    organ_cosine,
    retrieval_metrics,
)

Step = Callable[[str, int, int], None]  # (what, done, total)


@dataclass
class ScoringNotes:
    signatures: dict[str, str] = field(default_factory=dict)
    variants: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    models: dict[str, dict] = field(default_factory=dict)


def _spread(values: np.ndarray, rows: list[int], n: int, fill=np.nan) -> np.ndarray:
    out = np.full((n, *values.shape[1:]), fill, dtype=np.float64)
    out[rows] = values
    return out


def score_runs(runs: list[RunData], settings, step: Step | None = None) -> tuple[list[RunScores], ScoringNotes]:
    cfg = settings.eval
    families = set(cfg.metrics)
    notes = ScoringNotes()
    step = step or (lambda what, done, total: None)
    scored_rows = [[i for i, ref in enumerate(run.references) if ref is not None] for run in runs]
    all_scores = [RunScores(name=run.name, per_row={}) for run in runs]

    lexical = families & set(LEXICAL_FAMILIES)
    for run, rows, scores in zip(runs, scored_rows, all_scores, strict=False):
        if not lexical:
            break
        preds = [run.predictions[i] for i in rows]
        refs = [run.references[i] for i in rows]
        lex = compute_lexical(
            preds, refs, lexical, bleu_tokenize=cfg.bleu_tokenize,
            on_step=lambda name, run_name=run.name: step(f"lexical {run_name}: {name}", 1, 0),
        )
        n = len(run)
        for metric, values in lex.per_row.items():
            scores.per_row[metric] = _spread(values, rows, n)
        for metric, stats in lex.corpus_stats.items():
            scores.corpus_stats[metric] = _spread(stats, rows, n, fill=0.0)
            scores.score_from_stats[metric] = lex.score_from_stats[metric]
        notes.signatures.update(lex.signatures)
        notes.variants.update(lex.variants)

    if "bertscore" in families:
        _bertscore(runs, scored_rows, all_scores, cfg, notes, step)

    embedder = None
    if families & {"embedding_cosine", "organ_cosine"}:
        model_name = cfg.embedding_model or settings.index.embedding_model
        try:
            embedder = EmbeddingModel(
                model_name, device=cfg.device, batch_size=cfg.embedding_batch_size, prefix=settings.index.query_prefix
            )
            notes.models["embedding"] = {"model": model_name}
        except ModelUnavailable as exc:
            for family in families & {"embedding_cosine", "organ_cosine"}:
                notes.skipped[family] = str(exc)
    if embedder is not None and "embedding_cosine" in families:
        for run, rows, scores in zip(runs, scored_rows, all_scores, strict=False):
            step(f"embedding cosine {run.name}", 0, len(rows))
            cos = embedder.pair_cosine([run.predictions[i] for i in rows], [run.references[i] for i in rows])
            scores.per_row["embedding_cosine"] = _spread(cos, rows, len(run))

    for run, scores in zip(runs, all_scores, strict=False):
        scores.per_row.update(json_validity(run))
        scores.per_row.update(field_accuracy(run, notes.skipped))
        if embedder is not None and "organ_cosine" in families:
            scores.per_row.update(organ_cosine(run, embedder, cfg.organ_match_threshold))
        scores.per_row.update(retrieval_metrics(run, cfg.retrieval_k))
        scores.per_row.update(citation_metrics(run))
    return all_scores, notes


def _bertscore(runs, scored_rows, all_scores, cfg, notes: ScoringNotes, step: Step) -> None:
    # All runs in one call: the model loads once and batches stay full.
    preds = [run.predictions[i] for run, rows in zip(runs, scored_rows, strict=False) for i in rows]
    refs = [run.references[i] for run, rows in zip(runs, scored_rows, strict=False) for i in rows]
    total = len(preds)
    try:
        p, r, f, info = bertscore(
            preds, refs, cfg.bertscore_model, cfg.bertscore_num_layers, cfg.bertscore_batch_size, cfg.device,
            on_progress=lambda done: step("bertscore", done, total),
        )
    except ModelUnavailable as exc:
        notes.skipped["bertscore"] = (
            f"{exc}; set eval.bertscore_model to a local model dir or drop it from eval.metrics"
        )
        return
    notes.models["bertscore"] = info
    notes.variants["bertscore"] = info["note"]
    start = 0
    for run, rows, scores in zip(runs, scored_rows, all_scores, strict=False):
        end = start + len(rows)
        for key, values in (("bertscore_f1", f), ("bertscore_precision", p), ("bertscore_recall", r)):
            scores.per_row[key] = _spread(values[start:end], rows, len(run))
        start = end
