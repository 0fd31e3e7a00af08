"""Model-based similarity: BERTScore (bert-score) and embedding cosine (sentence-transformers).

    from medscribe.evaluate.semantic import bertscore, EmbeddingModel
    p, r, f1, info = bertscore(preds, refs, model="/models/xlm-roberta-large", num_layers=17)
    cos = EmbeddingModel("/models/e5").pair_cosine(preds, refs)

Each model is loaded once and fed in batches. A model that cannot be loaded raises `ModelUnavailable`; the eval
runner then skips that metric with a warning and records why in metrics.json (never a silent zero).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

# Pairs handed to bert-score per call: small enough for a progress bar to move, large enough to fill batches.
BERTSCORE_CHUNK = 256


class ModelUnavailable(Exception):
    """A configured model could not be loaded (missing path, not cached offline, broken files)."""


def ensure_local(model: str, what: str) -> None:
    """Fail fast unless `model` is a local dir or already in the Hugging Face cache.

    eval never downloads: without this check a hub id that is not cached costs minutes of network retries on an
    offline machine before transformers gives up.
    """
    if Path(model).expanduser().is_dir():
        return
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json")
    except Exception:  # not even a valid repo id (e.g. a mistyped path)
        cached = None
    if not isinstance(cached, str):
        raise ModelUnavailable(
            f"{what} model {model!r} is neither a local dir nor in the Hugging Face cache (eval downloads nothing)"
        )


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def bertscore(
    predictions: Sequence[str],
    references: Sequence[str],
    model: str,
    num_layers: int,
    batch_size: int = 32,
    device: str = "auto",
    on_progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Per-pair BERTScore precision, recall, F1 (no baseline rescaling) and a description of the run."""
    import logging

    from bert_score import BERTScorer

    # transformers logs a wall of "weights not used" lines for a sentence-transformers folder: not our news.
    logging.getLogger("transformers").setLevel(logging.ERROR)
    model = str(model)  # bert-score calls str methods on it
    ensure_local(model, "bertscore")
    try:
        scorer = BERTScorer(
            model_type=model, num_layers=num_layers, batch_size=batch_size, device=resolve_device(device)
        )
    except Exception as exc:  # any loader failure means the same thing to the user: this model is not usable
        raise ModelUnavailable(f"bertscore model {model!r} could not be loaded ({type(exc).__name__})") from exc
    # bert-score warns and returns 0 for empty candidates; a single space keeps the batch shape and scores ~0.
    preds = [p if p and p.strip() else " " for p in predictions]
    refs = [r if r and r.strip() else " " for r in references]
    parts: list[tuple] = []
    for start in range(0, len(preds), BERTSCORE_CHUNK):
        end = start + BERTSCORE_CHUNK
        parts.append(scorer.score(preds[start:end], refs[start:end], batch_size=batch_size))
        if on_progress:
            on_progress(min(end, len(preds)))
    p, r, f = (np.concatenate([part[i].numpy() for part in parts]).astype(np.float64) for i in range(3))
    info = {
        "model": model,
        "num_layers": num_layers,
        "rescale_with_baseline": False,
        "note": "raw BERTScore (no baseline rescaling: bert-score has no baseline for a local model), "
        "so values cluster high; compare runs scored with the same model only",
    }
    return p, r, f, info


class EmbeddingModel:
    """A sentence-transformers model used for cosine similarity between two lists of texts."""

    def __init__(self, model: str, device: str = "auto", batch_size: int = 64, prefix: str | None = None):
        import logging

        logging.getLogger("transformers").setLevel(logging.ERROR)
        ensure_local(str(model), "embedding")
        try:
            from sentence_transformers import SentenceTransformer

            self.model = SentenceTransformer(str(model), device=resolve_device(device))
        except Exception as exc:
            raise ModelUnavailable(f"embedding model {model!r} could not be loaded ({type(exc).__name__})") from exc
        self.name = model
        self.batch_size = batch_size
        # e5-style models expect a prefix; the same one on both sides keeps the comparison symmetric.
        self.prefix = prefix or ""

    def encode_unique(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Normalized embeddings of each distinct text (organ names repeat a lot: encode each once)."""
        unique = sorted(set(texts))
        if not unique:
            return {}
        vectors = self.model.encode(
            [self.prefix + t for t in unique],
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return dict(zip(unique, np.asarray(vectors, dtype=np.float64), strict=False))

    def pair_cosine(self, left: Sequence[str], right: Sequence[str]) -> np.ndarray:
        vectors = self.encode_unique([*left, *right])
        if not vectors:
            return np.zeros(0)
        a = np.stack([vectors[t] for t in left])
        b = np.stack([vectors[t] for t in right])
        return np.clip(np.einsum("ij,ij->i", a, b), -1.0, 1.0)
