"""Exact dense search (index/exact.py): the same hits as a brute-force cosine ranking, filters, excluded records,
ties in id order; the retriever uses it under index.search = "auto"/"exact" and Chroma's graph under "hnsw"."""

from __future__ import annotations

import numpy as np
import pytest

from medscribe.index import Retriever, exact, store
from medscribe.index.exact import ExactIndex, use_exact
from medscribe.index.retriever import matches


def _index(n: int = 300, dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim)).astype(np.float32) * rng.uniform(0.5, 3.0, size=(n, 1)).astype(np.float32)
    ids = [f"c{i:04d}" for i in rng.permutation(n)]  # stored in another order than sorted
    metas = [{"record_id": f"r{i // 2}", "organ": ("liver", "lung", "brain")[i % 3]} for i in range(n)]
    return ids, metas, vectors


def _brute(ids, metas, vectors, query, n, flt=None, exclude=()):
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    q = query / np.linalg.norm(query)
    scored = [(-(float(unit[i] @ q)), ids[i]) for i in range(len(ids))
              if matches(metas[i], flt) and metas[i]["record_id"] not in exclude]
    return [cid for _, cid in sorted(scored)[:n]]


def test_exact_search_is_the_brute_force_ranking_with_filters_and_exclusions(monkeypatch):
    ids, metas, vectors = _index()
    index = ExactIndex(ids, metas, vectors)
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(7, vectors.shape[1])).astype(np.float32)
    filters = [None, {"organ": "liver"}, {"organ": ["lung", "brain"]}, None, {"organ": "liver"}, None, None]
    excludes = [set(), set(), {"r3", "r10"}, {f"r{i}" for i in range(140)}, set(), set(), {"no-such"}]
    monkeypatch.setattr(exact, "SCORE_BLOCK", 3 * len(ids))  # several score blocks, as on a large index
    got = index.search(queries, 10, filters, excludes, matches)
    for i, q in enumerate(queries):
        want = _brute(ids, metas, vectors, q, 10, filters[i], excludes[i])
        assert [cid for cid, _ in got[i]] == want, i
        scores = [s for _, s in got[i]]
        assert scores == sorted(scores, reverse=True)
    # an excluded record takes all of its entries with it (records r0..r139 own entries 0..279)
    assert {metas[ids.index(cid)]["record_id"] for cid, _ in got[3]} <= {f"r{i}" for i in range(140, 150)}


def test_exact_search_breaks_ties_by_id_and_returns_what_there_is():
    vectors = np.array([[1, 0], [1, 0], [1, 0], [0, 1]], dtype=np.float32)
    index = ExactIndex(["b", "c", "a", "d"], [{}, {}, {}, {}], vectors)
    assert [cid for cid, _ in index.search(np.array([[1, 0]]), 2, [None], [set()], matches)[0]] == ["a", "b"]
    assert [cid for cid, _ in index.search(np.array([[1, 0]]), 9, [None], [{"a"}], matches)[0]] == ["b", "c", "d"]
    assert index.search(np.array([[1, 0]]), 3, [{"organ": "x"}], [set()], matches) == [[]]
    assert ExactIndex([], [], []).search(np.array([[1.0, 0.0]]), 3, [None], [set()], matches) == [[]]


def test_auto_is_exact_up_to_the_limit():
    assert use_exact("auto", exact.EXACT_AUTO_MAX) and not use_exact("auto", exact.EXACT_AUTO_MAX + 1)
    assert use_exact("exact", 10**9) and not use_exact("hnsw", 1)


def test_the_retriever_searches_exactly_unless_told_hnsw(built, make_settings, monkeypatch):
    settings, _ = built
    queries = ["What are the symptoms of anemia?", "How is type 2 diabetes treated?"]
    hnsw = Retriever.open(make_settings(search="hnsw")).search_many(queries, k=3, exclude_ids=[{"q-anemia"}, set()])
    real_query = store.query_bounded
    calls = []
    monkeypatch.setattr(store, "query_bounded", lambda *a, **kw: (calls.append(1), real_query(*a, **kw))[1])
    for mode in ("auto", "exact"):
        got = Retriever.open(make_settings(search=mode)).search_many(queries, k=3, exclude_ids=[{"q-anemia"}, set()])
        assert not calls, f"index.search={mode} asked Chroma's HNSW graph"
        # on a corpus this small HNSW is exact too: the same hits, the same scores
        assert [[h.id for h in hits] for hits in got] == [[h.id for h in hits] for hits in hnsw]
        for a, b in zip(got, hnsw, strict=True):
            assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)
            assert all(h.text for h in a)
    Retriever.open(make_settings(search="hnsw")).search(queries[0], k=2)
    assert calls
