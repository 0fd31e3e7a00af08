"""BM25 over the indexed texts, for hybrid retrieval (`index.hybrid = true`).

Unicode word tokens (`\\w\\w+`, so Cyrillic works), lower-cased, each word stemmed with the Snowball stemmer
of its script (Russian for Cyrillic words, English otherwise; PyStemmer), so `гипертонии` matches
`гипертония`. Built in memory from the collection the first time a hybrid search runs (bm25s indexes
~16k short texts in well under a second), so it always matches what the index holds.

    lex = LexicalIndex.from_collection(collection)
    ranked = lex.search(["боль в груди"], n=20, masks=[None])   # [[(chroma_id, bm25_score), ...]]
"""

from __future__ import annotations

import logging
import re
from typing import Any

from medscribe.index import store

_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_TOKEN = re.compile(r"(?u)\b\w\w+\b")


class _ScriptStemmer:
    """Stem Cyrillic words as Russian and the rest as English (mixed-language clinical text)."""

    def __init__(self) -> None:
        import Stemmer

        self._ru = Stemmer.Stemmer("russian")
        self._en = Stemmer.Stemmer("english")

    def __call__(self, word: str) -> str:
        return (self._ru if _CYRILLIC.search(word) else self._en).stemWord(word)


def tokenize(texts: list[str], stem) -> list[list[str]]:
    return [[stem(w) for w in _TOKEN.findall(t.lower())] for t in texts]


class LexicalIndex:
    def __init__(self, ids: list[str], metadatas: list[dict[str, Any]], texts: list[str]) -> None:
        import bm25s

        # bm25s sets its logger to DEBUG when imported ("Building index from tokens" on every build); only its
        # warnings are worth a user's terminal.
        logging.getLogger("bm25s").setLevel(logging.WARNING)
        self.ids = ids
        self.metadatas = metadatas
        self.record_ids = {cid: str(m.get("record_id", cid)) for cid, m in zip(ids, metadatas, strict=False)}
        self._stem = _ScriptStemmer()
        self._bm25 = bm25s.BM25()
        tokens = tokenize(texts, self._stem)
        # bm25s rejects an empty vocabulary; a corpus of one-letter texts is not worth a lexical index.
        self._empty = not any(tokens)
        if not self._empty:
            self._bm25.index(tokens, show_progress=False)

    @classmethod
    def from_collection(cls, collection) -> LexicalIndex:
        ids: list[str] = []
        metas: list[dict[str, Any]] = []
        texts: list[str] = []
        for page in store.iter_entries(collection, include=["documents", "metadatas"]):
            ids += page["ids"]
            metas += [m or {} for m in page["metadatas"]]
            texts += [d or "" for d in page["documents"]]
        return cls(ids, metas, texts)

    def mask(self, matches) -> Any:
        """A 0/1 weight per document: those whose metadata passes `matches(meta)` (filters, exclusions)."""
        import numpy as np

        return np.fromiter((1.0 if matches(m) else 0.0 for m in self.metadatas), dtype=np.float32, count=len(self.ids))

    def search(self, queries: list[str], n: int, masks: list[Any]) -> list[list[tuple[str, float]]]:
        """Top-`n` (chroma id, score) per query, zero scores dropped; `masks[i]` None means all documents.

        Queries that share a mask go to bm25s in one `retrieve` call (its batched scoring), not one by one."""
        out: list[list[tuple[str, float]]] = [[] for _ in queries]
        if self._empty or not self.ids or n <= 0:
            return out
        n = min(n, len(self.ids))
        all_tokens = tokenize(queries, self._stem)
        groups: dict[int, list[int]] = {}
        for i, (tokens, mask) in enumerate(zip(all_tokens, masks, strict=False)):
            if tokens:
                groups.setdefault(id(mask), []).append(i)
        for members in groups.values():
            docs, scores = self._bm25.retrieve(
                [all_tokens[i] for i in members], k=n, show_progress=False, weight_mask=masks[members[0]]
            )
            for row, i in enumerate(members):
                out[i] = [(self.ids[d], float(s)) for d, s in zip(docs[row], scores[row], strict=False) if s > 0]
        return out


def reciprocal_rank_fusion(rankings: list[list[str]], k: int = 60) -> dict[str, float]:
    """RRF (Cormack et al. 2009): score = sum over rankings of 1 / (k + rank), rank from 1."""
    fused: dict[str, float] = {}
    for ranking in rankings:
        for rank, cid in enumerate(ranking, start=1):
            fused[cid] = fused.get(cid, 0.0) + 1.0 / (k + rank)
    return fused
