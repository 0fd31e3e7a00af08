"""Exact cosine search over every stored vector: what the dense side of `Retriever` uses up to
EXACT_AUTO_MAX entries (`index.search = "auto"`), and always with `index.search = "exact"`.

Why not Chroma's HNSW graph there: it is approximate, and the graph an embedded Chroma loads differs from one
process to the next. Measured on MedQuAD GHR (4,714 entries, ef_search 100): recall@10 against exact search
0.945-0.947, different in each process; the same `medscribe sft` run gave 163 of 4,714 training rows another
retrieved case than the run before (among them misses of a 0.835-cosine nearest neighbour). Retrieved cases are
what the model is trained and evaluated with, and the retrieval-copy baseline is "the nearest training case":
those must not change between two runs of the same command. Exact search is one matrix product per chunk of
queries: ~1 s for 5k queries x 5k entries on two cores; 100k x 100k is ~80 s, so larger indexes keep HNSW.

    exact = ExactIndex.from_collection(collection)
    ranked = exact.search(vectors, n=20, filters=[None] * len(vectors), excludes=[{"case-1"}, set()], matches=fn)
    # [[(chroma_id, cosine), ...] per query], best first; equal scores in chroma-id order
"""

from __future__ import annotations

from typing import Any

from medscribe.index import store

EXACT_AUTO_MAX = 100_000  # entries: above this, "auto" searches Chroma's HNSW graph
SCORE_BLOCK = 1 << 24  # query x entry scores held at once (64 MB of float32), whatever the index size


def use_exact(mode: str, size: int) -> bool:
    """Whether dense search is exact for `index.search` = mode on an index of `size` entries."""
    return mode == "exact" or (mode == "auto" and size <= EXACT_AUTO_MAX)


class ExactIndex:
    def __init__(self, ids: list[str], metadatas: list[dict[str, Any]], vectors: Any) -> None:
        import numpy as np

        # Sorted by id, so that equal scores come out in one order in every process.
        order = sorted(range(len(ids)), key=ids.__getitem__)
        self.ids = [ids[i] for i in order]
        self.metadatas = [metadatas[i] for i in order]
        matrix = np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1)[order] if ids else \
            np.zeros((0, 0), dtype=np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True) if len(ids) else np.ones((0, 1), dtype=np.float32)
        self.matrix = matrix / np.maximum(norms, 1e-12)  # Chroma's cosine space normalizes the same way
        self.rows_of: dict[str, list[int]] = {}  # record id -> its entries (a record may have several)
        for row, (cid, meta) in enumerate(zip(self.ids, self.metadatas, strict=True)):
            self.rows_of.setdefault(str(meta.get("record_id", cid)), []).append(row)

    @classmethod
    def from_collection(cls, collection) -> ExactIndex:
        ids: list[str] = []
        metas: list[dict[str, Any]] = []
        vectors: list[Any] = []
        for page in store.iter_entries(collection, include=["embeddings", "metadatas"]):
            ids += page["ids"]
            metas += [m or {} for m in page["metadatas"]]
            vectors += list(page["embeddings"])
        return cls(ids, metas, vectors)

    def search(self, vectors: Any, n: int, filters: list[Any], excludes: list[set[str]], matches: Any
               ) -> list[list[tuple[str, float]]]:
        """Top-`n` (chroma id, cosine) per query among the entries that pass `matches(meta, filters[i])` and
        whose record id is not in `excludes[i]`."""
        import numpy as np
        import torch  # topk: ~10x numpy's argpartition per row on 100k entries

        out: list[list[tuple[str, float]]] = [[] for _ in range(len(vectors))]
        size = len(self.ids)
        if not size or n <= 0:
            return out
        queries = np.asarray(vectors, dtype=np.float32)
        queries = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
        allowed: dict[str, Any] = {}  # one mask per distinct filter
        step = max(1, SCORE_BLOCK // size)
        for start in range(0, len(queries), step):
            scores = queries[start:start + step] @ self.matrix.T
            for row in range(scores.shape[0]):
                i = start + row
                if filters[i]:
                    key = repr(sorted(filters[i].items()))
                    if key not in allowed:
                        allowed[key] = np.fromiter((matches(m, filters[i]) for m in self.metadatas), dtype=bool,
                                                   count=size)
                    scores[row][~allowed[key]] = -np.inf
                for record in excludes[i]:
                    rows = self.rows_of.get(record)
                    if rows:
                        scores[row][rows] = -np.inf
            best = torch.topk(torch.from_numpy(scores), min(n, size), dim=1).values.numpy()
            for row in range(scores.shape[0]):
                line = scores[row]
                finite = int(np.isfinite(best[row]).sum())
                if not finite:
                    continue
                # everything scoring at least the cut-off, so ties at the cut are all in; then best first,
                # equal scores in chroma id order
                top = np.flatnonzero(line >= best[row][finite - 1])
                top = top[np.lexsort((top, -line[top]))][:finite]
                out[start + row] = [(self.ids[j], float(line[j])) for j in top]
        return out
