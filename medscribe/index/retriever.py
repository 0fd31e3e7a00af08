"""The retriever that `ask` and `sft` use: similar cases / knowledge chunks for a query, as `Hit`s.

    from medscribe.index import Retriever
    r = Retriever.open(settings)                      # checks the model matches the index; loads nothing yet
    hits = r.search("hypodense lesion in segment 7", k=3, filters={"organ": "liver"}, exclude_ids={"case-17"})
    batch = r.search_many(questions, k=3, exclude_ids=[{q_id} for q_id in ids])   # one batched encode

`Hit.id` is the corpus record id, `Hit.score` the cosine similarity of the query to the embedded text.
Options (settings.index): `threshold` (drop hits below this cosine: nothing rather than junk), `siblings`
(join knowledge chunks N-s..N+s of the same document into the hit's text), `hybrid` (BM25 + dense fused
by reciprocal rank fusion), `rerank_model` (a sentence-transformers CrossEncoder reorders candidates) and
`search` (dense search: "exact" over every stored vector, "hnsw" Chroma's approximate graph, "auto" exact up to
exact.EXACT_AUTO_MAX entries: see index/exact.py for why).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from medscribe.errors import UsageError, failure_context
from medscribe.index import store
from medscribe.index.embed import Embedder, resolve_device
from medscribe.index.exact import ExactIndex, use_exact
from medscribe.index.knowledge import join_spans
from medscribe.index.lexical import LexicalIndex, reciprocal_rank_fusion
from medscribe.schemas import Hit

CANDIDATES_PER_HIT = 4  # hybrid/rerank look at k * this many candidates (at least MIN_CANDIDATES)
MIN_CANDIDATES = 20
# search_many works through its queries this many at a time: encode, Chroma, BM25 and rerank memory grows
# with this, not with the number of queries (sft asks for every training row at once).
QUERY_CHUNK = 512
# A query's excluded ids are over-fetched (n + exclusions) up to this many results; past it the query is
# asked again with twice as many until it has n hits or the whole index was seen.
MAX_OVERFETCH = 1024
INTERNAL_KEYS = {"record_id", "answer", "payload_hash"}

Filter = dict[str, Any]


def chroma_where(filters: Filter | None) -> dict[str, Any] | None:
    """{"organ": "liver", "modality": ["CT", "MRI"]} -> Chroma `where` ($eq / $in, joined by $and)."""
    if not filters:
        return None
    clauses = []
    for key, value in filters.items():
        if isinstance(value, (list, tuple, set)):
            clauses.append({key: {"$in": list(value)}})
        else:
            clauses.append({key: {"$eq": value}})
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def matches(meta: dict[str, Any], filters: Filter | None) -> bool:
    for key, value in (filters or {}).items():
        allowed = list(value) if isinstance(value, (list, tuple, set)) else [value]
        if meta.get(key) not in allowed:
            return False
    return True


class Retriever:
    def __init__(self, settings, collection, embedder: Embedder) -> None:
        self.settings = settings
        self.options = settings.index
        self.collection = collection
        self.embedder = embedder
        self.size = collection.count()
        self._generation = store.generation()
        self._lexical: LexicalIndex | None = None
        self._exact: ExactIndex | None = None
        self._cross_encoder = None
        self._lazy_lock = threading.Lock()  # callers may search from several threads

    @classmethod
    def open(cls, settings, embedder: Embedder | None = None) -> Retriever:
        """Open the index named by `settings`; UsageError if it is missing or built with another model."""
        embedder = embedder or Embedder.from_settings(settings.index)
        where = store.where_label(settings)
        if not settings.index.server_url and not (Path(settings.paths.index) / "chroma.sqlite3").is_file():
            # Checked before opening: an embedded client would create an empty database here.
            raise UsageError(f"{where}: no index; run `medscribe index` first")
        client = store.open_client(settings)
        collection = store.get_collection(client, settings.index.collection)
        if collection is None:
            raise UsageError(
                f"{where}: no index (collection '{settings.index.collection}'); run `medscribe index` first"
            )
        store.check_space(collection, embedder, where)
        return cls(settings, collection, embedder)

    # -- public API --------------------------------------------------------------------------------------

    def search(
        self, query: str, k: int | None = None, filters: Filter | None = None, exclude_ids: set[str] | None = None
    ) -> list[Hit]:
        return self.search_many([query], k, filters, [set(exclude_ids or ())])[0]

    def search_many(
        self,
        queries: list[str],
        k: int | None = None,
        filters: Filter | list[Filter | None] | None = None,
        exclude_ids: list[set[str]] | None = None,
        indexed_ids: list[str | None] | None = None,
    ) -> list[list[Hit]]:
        """Top-k hits per query. `indexed_ids[i]`: the record id under which query i itself may be an indexed case
        (sft asks for every training row, and the training rows are the corpus): its stored vector is then used
        instead of encoding the text again. It is the same vector: same model, prefix and text (the Chroma id
        hashes the text), so results do not change, only the encoding time goes."""
        k = self.options.k if k is None else int(k)
        if k < 0:
            raise UsageError(f"k: must be >= 0, got {k}")
        queries = list(queries)
        if self._generation != store.generation():
            self._refresh()
        if k == 0 or not queries or self.size == 0:
            return [[] for _ in queries]
        per_filter = self._per_query(filters, len(queries), "filters")
        excludes = [set(map(str, e or ())) for e in self._per_query(exclude_ids, len(queries), "exclude_ids")]
        known = list(indexed_ids) if indexed_ids is not None else [None] * len(queries)
        if len(known) != len(queries):
            raise UsageError(f"indexed_ids: {len(known)} given for {len(queries)} queries")
        results: list[list[Hit]] = []
        for start in range(0, len(queries), QUERY_CHUNK):
            end = start + QUERY_CHUNK
            with failure_context(f"retrieving for queries {start + 1}-{min(end, len(queries))} of {len(queries)}"):
                vectors = self._query_vectors(queries[start:end], known[start:end])
                results += self._search_chunk(queries[start:end], vectors, k, per_filter[start:end],
                                              excludes[start:end])
        return results

    # -- steps -------------------------------------------------------------------------------------------

    def _query_vectors(self, queries: list[str], known: list[str | None]):
        """Query vectors: stored ones for queries that are indexed cases (see search_many), encoded otherwise."""
        import numpy as np

        from medscribe.index.entries import entry_id

        cids = {i: entry_id("case", str(rid), q) for i, (q, rid) in enumerate(zip(queries, known, strict=True)) if rid}
        stored: dict[str, Any] = {}
        if cids:
            got = store.get_by_ids(self.collection, sorted(set(cids.values())), ["embeddings"])
            stored = {cid: emb for cid, emb in zip(got["ids"], got["embeddings"], strict=True) if emb is not None}
        todo = [i for i in range(len(queries)) if cids.get(i) not in stored]
        encoded = self.embedder.encode_queries([queries[i] for i in todo]) if todo else None
        if encoded is not None:
            self._check_dimension(encoded.shape[1])
        dimension = encoded.shape[1] if encoded is not None else len(next(iter(stored.values())))
        vectors = np.empty((len(queries), dimension), dtype=np.float32)
        for row, i in enumerate(todo):
            vectors[i] = encoded[row]
        for i, cid in cids.items():
            if cid in stored:
                vectors[i] = np.asarray(stored[cid], dtype=np.float32)
        return vectors

    def _search_chunk(self, queries: list[str], vectors, k: int, per_filter: list, excludes: list[set[str]]
                      ) -> list[list[Hit]]:
        fused = bool(self.options.hybrid or self.options.rerank_model)
        n = max(k * CANDIDATES_PER_HIT, MIN_CANDIDATES) if fused else k

        # Hybrid search knows every entry's record id (BM25 holds the corpus): dense candidates then need only
        # ids and distances, and texts/metadata are fetched for the hits kept (k of n), which for 14k MedQuAD
        # training rows was most of Chroma's time (long answers in the metadata of 21 candidates per query).
        if use_exact(self.options.search, self.size):
            ranked = self._exact_index().search(vectors, n, per_filter, excludes, matches)
            candidates = [[{"cid": cid, "score": score} for cid, score in row] for row in ranked]
        else:
            record_of = self._lexical_index().record_ids if self.options.hybrid else None
            candidates = self._dense(vectors, per_filter, excludes, n, record_of)
        if self.options.hybrid:
            candidates = self._hybrid(queries, vectors, candidates, per_filter, excludes, n)
        if self.options.threshold is not None:
            candidates = [[c for c in cands if c["score"] >= self.options.threshold] for cands in candidates]
        if self.options.rerank_model:
            self._fill(candidates)
            candidates = self._rerank(queries, candidates)
        candidates = [cands[:k] for cands in candidates]
        self._fill(candidates)
        results = [[self._to_hit(c) for c in cands] for cands in candidates]
        if self.options.siblings:
            results = [[self._with_siblings(h) for h in hits] for hits in results]
        return results

    def _refresh(self) -> None:
        """A build in this process wrote the index: reopen the collection (a writer process's rows are not in
        this process's cached HNSW graph, see index/writer.py) and drop the BM25 index built from old rows."""
        with self._lazy_lock:
            if self._generation == store.generation():
                return
            collection = store.get_collection(store.open_client(self.settings), self.options.collection)
            if collection is not None:
                self.collection, self.size = collection, collection.count()
            self._lexical = self._exact = None
            self._generation = store.generation()

    def _check_dimension(self, dimension: int) -> None:
        built = (self.collection.metadata or {}).get(store.META_DIMENSION)
        if built is not None and int(built) != dimension:
            raise UsageError(
                f"{store.where_label(self.settings)}: index.embedding_model '{self.embedder.identity}' gives "
                f"{dimension}-d vectors, the index holds {built}-d ones (same name, different model?); rebuild"
            )

    @staticmethod
    def _per_query(value, n: int, name: str) -> list:
        if value is None or isinstance(value, dict):
            return [value] * n
        value = list(value)
        if name == "exclude_ids" and value and isinstance(value[0], str):
            raise UsageError("exclude_ids: give one set of ids per query (a list of sets)")
        if len(value) != n:
            raise UsageError(f"{name}: {len(value)} given for {n} queries (give one per query, or one dict for all)")
        return value

    def _exact_index(self) -> ExactIndex:
        with self._lazy_lock:
            if self._exact is None:
                self._exact = ExactIndex.from_collection(self.collection)
        return self._exact

    def _lexical_index(self) -> LexicalIndex:
        with self._lazy_lock:
            if self._lexical is None:
                self._lexical = LexicalIndex.from_collection(self.collection)
        return self._lexical

    def _fill(self, candidates: list[list[dict[str, Any]]]) -> None:
        """Text and metadata of candidates that have only an id and a score (one bounded get for all)."""
        missing = sorted({c["cid"] for cands in candidates for c in cands if "meta" not in c})
        if not missing:
            return
        got = store.get_by_ids(self.collection, missing, ["documents", "metadatas"])
        found = {cid: (doc or "", meta or {}) for cid, doc, meta in
                 zip(got["ids"], got["documents"], got["metadatas"], strict=True)}
        for cands in candidates:
            for c in cands:
                if "meta" not in c:
                    # An entry deleted since the query (a rebuild in another process) keeps an empty text.
                    c["text"], c["meta"] = found.get(c["cid"], ("", {}))

    def _dense(self, vectors, per_filter, excludes, n: int, record_of: dict[str, str] | None = None
               ) -> list[list[dict[str, Any]]]:
        """Cosine top-n per query; queries sharing a filter go to Chroma together (store.query_bounded cuts the
        calls to sizes Chroma accepts). Excluded ids are over-fetched and dropped; a query that still has
        fewer than n is asked again with twice as many results (until the whole index was seen).

        With `record_of` (entry id -> record id) or nothing to exclude, candidates carry only cid and score
        (`_fill` adds text and metadata later); otherwise Chroma returns their metadata to find record ids."""
        out: list[list[dict[str, Any]]] = [[] for _ in per_filter]
        groups: dict[str, list[int]] = {}
        for i, f in enumerate(per_filter):
            groups.setdefault(json.dumps(f, sort_keys=True, default=list), []).append(i)
        for members in groups.values():
            where = chroma_where(per_filter[members[0]])
            want = {i: min(self.size, n + min(len(excludes[i]), MAX_OVERFETCH)) for i in members}
            todo = members
            while todo:
                # One call per distinct over-fetch size, so a query with many exclusions does not make every
                # query of its group fetch as much.
                by_want: dict[int, list[int]] = {}
                for i in todo:
                    by_want.setdefault(want[i], []).append(i)
                again = []
                for size, part in by_want.items():
                    lean = record_of is not None or not any(excludes[i] for i in part)
                    include = ["distances"] if lean else ["documents", "metadatas", "distances"]
                    got = store.query_bounded(self.collection, vectors[part], size, where, include)
                    for row, i in enumerate(part):
                        cands = []
                        for j, (cid, dist) in enumerate(zip(got["ids"][row], got["distances"][row], strict=True)):
                            if lean:
                                if excludes[i] and record_of.get(cid, cid) in excludes[i]:
                                    continue
                                cands.append({"cid": cid, "score": 1.0 - float(dist)})
                                continue
                            meta = got["metadatas"][row][j] or {}
                            if str(meta.get("record_id", cid)) in excludes[i]:
                                continue
                            doc = got["documents"][row][j] or ""
                            cands.append({"cid": cid, "text": doc, "meta": meta, "score": 1.0 - float(dist)})
                        out[i] = cands[:n]
                        if len(cands) < n and len(got["ids"][row]) >= size and size < self.size:
                            want[i] = min(self.size, size * 2)
                            again.append(i)
                todo = again
        return out

    def _hybrid(self, queries, vectors, dense, per_filter, excludes, n: int) -> list[list[dict[str, Any]]]:
        """Fuse dense and BM25 rankings (RRF); BM25-only candidates get their true cosine from stored vectors."""
        import numpy as np

        lex = self._lexical_index()
        # One mask per distinct filter (not per query); exclusions: over-fetch, then drop (as in _dense).
        mask_cache: dict[str, Any] = {}
        masks = []
        for f in per_filter:
            key = json.dumps(f, sort_keys=True, default=list)
            if key not in mask_cache:
                mask_cache[key] = lex.mask(lambda m, f=f: matches(m, f)) if f else None
            masks.append(mask_cache[key])
        lexical = []
        for i, ranked in enumerate(lex.search(queries, n + min(max(map(len, excludes)), MAX_OVERFETCH), masks)):
            record_of = lex.record_ids
            lexical.append([(cid, s) for cid, s in ranked if record_of[cid] not in excludes[i]][:n])
        # Per query: a BM25 hit that this query's dense list lacks needs its stored vector (another query's dense
        # list having it is no help, since the cosine is per query).
        missing = set()
        for cands, ranked in zip(dense, lexical, strict=False):
            have = {c["cid"] for c in cands}
            missing.update(cid for cid, _ in ranked if cid not in have)
        stored: dict[str, Any] = {}
        if missing:  # vectors only: text and metadata come later for the hits kept (_fill)
            got = store.get_by_ids(self.collection, sorted(missing), ["embeddings"])
            for cid, emb in zip(got["ids"], got["embeddings"], strict=True):
                stored[cid] = np.asarray(emb, dtype=np.float32)
        out = []
        for i, (cands, ranked) in enumerate(zip(dense, lexical, strict=False)):
            by_id = {c["cid"]: c for c in cands}
            bm25 = dict(ranked)
            for cid, _ in ranked:
                if cid not in by_id and cid in stored:  # not stored: deleted since BM25 was built
                    by_id[cid] = {"cid": cid, "score": float(vectors[i] @ stored[cid])}
            fused = reciprocal_rank_fusion([[c["cid"] for c in cands], [cid for cid, _ in ranked]])
            order = sorted(by_id, key=lambda cid: fused[cid], reverse=True)
            for cid in order:
                by_id[cid]["extra"] = {"rrf_score": round(fused[cid], 6), "bm25_score": round(bm25.get(cid, 0.0), 4)}
            out.append([by_id[cid] for cid in order])
        return out

    def _rerank(self, queries, candidates) -> list[list[dict[str, Any]]]:
        """Reorder each query's candidates by a CrossEncoder score (one batched predict for all pairs)."""
        with self._lazy_lock:
            if self._cross_encoder is None:
                self._cross_encoder = self._load_cross_encoder()
        pairs = [(q, c["text"]) for q, cands in zip(queries, candidates, strict=False) for c in cands]
        if not pairs:
            return candidates
        scores = self._cross_encoder.predict(pairs, batch_size=self.options.batch_size, show_progress_bar=False)
        it = iter(scores.tolist() if hasattr(scores, "tolist") else scores)
        out = []
        for cands in candidates:
            for c in cands:
                value = next(it)
                c.setdefault("extra", {})["rerank_score"] = round(
                    float(value[0] if isinstance(value, list) else value), 6
                )
            out.append(sorted(cands, key=lambda c: c["extra"]["rerank_score"], reverse=True))
        return out

    def _load_cross_encoder(self):
        from sentence_transformers import CrossEncoder

        name = self.options.rerank_model
        try:
            return CrossEncoder(name, device=resolve_device(self.options.device))
        except (OSError, ValueError) as exc:
            raise UsageError(
                f"index.rerank_model: cannot load '{name}' as a CrossEncoder (local path or cached model): "
                f"{type(exc).__name__}"
            ) from None

    def _to_hit(self, c: dict[str, Any]) -> Hit:
        meta = c["meta"]
        public = {k: v for k, v in meta.items() if k not in INTERNAL_KEYS}
        public.update(c.get("extra", {}))
        return Hit(
            id=str(meta.get("record_id", c["cid"])),
            text=c["text"],
            answer=meta.get("answer"),
            score=round(c["score"], 6),
            metadata=public,
        )

    def _with_siblings(self, hit: Hit) -> Hit:
        """Knowledge chunk N -> the text of chunks N-s..N+s of its document, joined without the overlaps."""
        meta = hit.metadata
        if meta.get("kind") != "knowledge" or "chunk" not in meta:
            return hit
        n, s = int(meta["chunk"]), self.options.siblings
        wanted = [i for i in range(n - s, n + s + 1) if i >= 0]
        got = self.collection.get(
            where={"$and": [{"doc_id": {"$eq": meta["doc_id"]}}, {"chunk": {"$in": wanted}}]},
            include=["documents", "metadatas"],
        )
        pieces = [
            (int(m["start"]), int(m["end"]), d or "") for d, m in zip(got["documents"], got["metadatas"], strict=False)
        ]
        if len(pieces) <= 1:
            return hit
        numbers = sorted(int(m["chunk"]) for m in got["metadatas"])
        return hit.model_copy(update={"text": join_spans(pieces), "metadata": {**meta, "siblings": numbers}})
