"""Every Chroma call is cut to sizes Chroma/SQLite accept (store.query_bounded / get_by_ids)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medscribe.index import store


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    import chromadb

    path = tmp_path_factory.mktemp("bounded")
    client = chromadb.PersistentClient(path=str(path), settings=store.chroma_settings())
    col = client.get_or_create_collection("bounded", configuration={"hnsw": {"space": "cosine"}},
                                          embedding_function=None)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(6000, 16)).astype(np.float32)
    for start in range(0, len(vectors), 2000):
        ids = [f"id{i}" for i in range(start, start + 2000)]
        col.add(ids=ids, embeddings=vectors[start : start + 2000],
                metadatas=[{"record_id": i, "organ": f"o{int(i[2:]) % 7}"} for i in ids])
    return col, vectors


def test_many_queries_with_many_results_do_not_hit_the_sql_limit(collection):
    col, vectors = collection
    queries = vectors[:2500]
    with pytest.raises(Exception, match="too many SQL variables"):  # what the unbounded call did (issue 14)
        col.query(query_embeddings=queries, n_results=20, include=["distances", "metadatas"])
    got = store.query_bounded(col, queries, 20, None, ["distances", "metadatas"])
    assert len(got["ids"]) == 2500 and all(len(row) == 20 for row in got["ids"])
    for q in (0, 1234, 2499):  # same answer as one query alone
        alone = col.query(query_embeddings=queries[q : q + 1], n_results=20, include=["distances"])
        assert got["ids"][q] == alone["ids"][0]
        assert got["ids"][q][0] == f"id{q}"  # a vector's own entry is its nearest


def test_a_huge_in_filter_is_split_and_merged_by_distance(collection):
    col, vectors = collection
    wanted = [f"id{i}" for i in range(0, 6000, 2)] + [f"nope{i}" for i in range(40_000)]
    where = {"$and": [{"record_id": {"$in": wanted}}, {"organ": {"$ne": "o3"}}]}
    assert len(store._split_where(where)) > 1
    got = store.query_bounded(col, vectors[:3], 10, where, ["metadatas"])
    small = {"$and": [{"record_id": {"$in": wanted[:3000]}}, {"organ": {"$ne": "o3"}}]}
    expected = col.query(query_embeddings=vectors[:3], n_results=10, where=small, include=["distances"])
    assert got["ids"] == expected["ids"]


def test_get_by_ids_any_number(collection):
    col, _ = collection
    ids = [f"id{i}" for i in range(5999, -1, -1)] + ["missing"]
    got = store.get_by_ids(col, ids, ["metadatas"])
    assert sorted(got["ids"]) == sorted(f"id{i}" for i in range(6000))
    assert len(got["metadatas"]) == 6000


def test_max_batch_is_the_clients(collection):
    col, _ = collection
    assert store.max_batch(col) == col._client.get_max_batch_size()


def test_exclusions_beyond_the_overfetch_cap_still_give_k_hits(built, make_settings, monkeypatch):
    import medscribe.index.retriever as retriever_mod
    from medscribe.index import Retriever

    retriever = Retriever.open(make_settings(search="hnsw"))  # the over-fetch is Chroma's path
    query = "What are the symptoms of anemia?"
    ranked = [h.id for h in retriever.search(query, k=retriever.size)]
    excluded = set(ranked[:-2])  # everything but the two least similar
    monkeypatch.setattr(retriever_mod, "MAX_OVERFETCH", 1)
    hits = retriever.search(query, k=2, exclude_ids=excluded)
    assert [h.id for h in hits] == ranked[-2:]


def test_indexed_queries_reuse_their_stored_vectors(built, monkeypatch):
    from medscribe.index import Retriever

    settings, _report = built
    retriever = Retriever.open(settings)
    rows = [json.loads(line) for line in (Path(settings.paths.data) / "corpus.jsonl").read_text().splitlines()]
    queries, ids = [r["text"] for r in rows], [r["id"] for r in rows]
    expected = retriever.search_many(queries, k=2, exclude_ids=[{i} for i in ids])
    encoded: list[str] = []
    real = retriever.embedder.encode_queries
    monkeypatch.setattr(retriever.embedder, "encode_queries", lambda texts, *a, **kw: (encoded.extend(texts),
                                                                                       real(texts, *a, **kw))[1])
    # One query is not in the index under that id (a changed text): only it is encoded.
    queries[0] = queries[0] + " (revised)"
    got = retriever.search_many(queries, k=2, exclude_ids=[{i} for i in ids], indexed_ids=ids)
    assert encoded == [queries[0]]
    assert [[h.id for h in hits] for hits in got[1:]] == [[h.id for h in hits] for hits in expected[1:]]
    for a, b in zip(got[1:], expected[1:], strict=True):
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)
