"""Sentence embeddings for the index: one model loaded once, e5-style prefixes, batched and normalized.

    from medscribe.index.embed import Embedder
    emb = Embedder.from_settings(settings.index)
    vectors = emb.encode(["query: ..."], progress=False)   # float32, L2-normalized (cosine = dot product)

sentence-transformers (and torch) are imported only when the first text is encoded, so opening an index
to check it, or rerunning on an unchanged corpus, never pays for loading a model.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medscribe.errors import UsageError

log = logging.getLogger(__name__)

# Texts are encoded in blocks of this many batches so the progress bar moves and memory stays flat.
BLOCK_BATCHES = 32
_LOAD_LOCK = threading.Lock()
GENERIC_FOLDER_NAMES = {"model", "models", "default", "final", "checkpoint", "embedder", "encoder"}


def model_identity(model: str) -> str:
    """A stable name for the embedding model, independent of where it lies on disk.

    `/opt/models/all-MiniLM-L6-v2`, `~/all-MiniLM-L6-v2/` and `sentence-transformers/all-MiniLM-L6-v2` are the
    same model; a moved folder must not make an index unusable, a different model must.
    """
    path = Path(str(model).rstrip("/\\"))
    name = path.name or str(model)
    # Packaged or cached models often sit in a folder called `model` or a snapshot hash: use the parent's name.
    if (name.lower() in GENERIC_FOLDER_NAMES or re.fullmatch(r"[0-9a-f]{40}", name)) and path.parent.name:
        parent = path.parent
        if parent.name == "snapshots" and parent.parent.name:  # HF cache: models--org--name/snapshots/<hash>
            return parent.parent.name.removeprefix("models--").split("--")[-1]
        return parent.name
    return name


def wants_e5_prefixes(model: str) -> bool:
    return "e5" in model_identity(model).lower()


def resolve_prefixes(model: str, query_prefix: str | None, passage_prefix: str | None) -> tuple[str, str]:
    """(query prefix, passage prefix): explicit settings win, else e5 models get `query: ` / `passage: `."""
    e5 = wants_e5_prefixes(model)
    query = query_prefix if query_prefix is not None else ("query: " if e5 else "")
    passage = passage_prefix if passage_prefix is not None else ("passage: " if e5 else "")
    return query, passage


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


@dataclass
class Embedder:
    """Wraps one SentenceTransformer; counts what it encodes so tests and summaries can prove reuse."""

    model_name: str
    device: str = "auto"
    batch_size: int = 64
    query_prefix: str = ""
    passage_prefix: str = ""
    encoded_texts: int = 0
    encode_calls: int = 0
    _model: Any = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, index_settings) -> Embedder:
        query, passage = resolve_prefixes(
            index_settings.embedding_model, index_settings.query_prefix, index_settings.passage_prefix
        )
        return cls(
            model_name=index_settings.embedding_model,
            device=index_settings.device,
            batch_size=index_settings.batch_size,
            query_prefix=query,
            passage_prefix=passage,
        )

    @property
    def identity(self) -> str:
        return model_identity(self.model_name)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def model(self):
        if self._model is None:
            with _LOAD_LOCK:  # ask may search from several threads: load the model once
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self):
        from sentence_transformers import SentenceTransformer

        device = resolve_device(self.device)
        try:
            model = SentenceTransformer(self.model_name, device=device)
        except (OSError, ValueError) as exc:
            hint = (
                "not a folder" if not Path(self.model_name).exists() else "folder is not a sentence-transformers model"
            )
            raise UsageError(
                f"index.embedding_model: cannot load '{self.model_name}' ({hint}; no model hub here: "
                f"give a local path or a model already in the HF cache): {type(exc).__name__}"
            ) from None
        log.debug("loaded embedding model %s on %s", self.model_name, device)
        return model

    @property
    def dimension(self) -> int:
        model = self.model
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return int(getter())

    def encode(self, texts: list[str], progress: Any = None, task_id: Any = None):
        """Encode already-prefixed texts -> float32 array (n, dim), unit length.

        `progress`/`task_id`: a rich Progress and task to advance per block (None: no bar).
        Blocks are cut from texts sorted by length, so padding stays as low as one big encode call.
        """
        import numpy as np

        if not texts:
            return np.zeros((0, self.dimension if self.loaded else 0), dtype=np.float32)
        model = self.model
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        block = self.batch_size * BLOCK_BATCHES
        for start in range(0, len(order), block):
            idx = order[start : start + block]
            vectors = model.encode(
                [texts[i] for i in idx],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            out[idx] = vectors.astype(np.float32, copy=False)
            if progress is not None:
                progress.advance(task_id, len(idx))
        self.encode_calls += 1
        self.encoded_texts += len(texts)
        return out

    def encode_queries(self, queries: list[str], progress: Any = None, task_id: Any = None):
        return self.encode([self.query_prefix + q for q in queries], progress, task_id)

    def encode_passages(self, passages: list[str], progress: Any = None, task_id: Any = None):
        return self.encode([self.passage_prefix + p for p in passages], progress, task_id)
