"""Retriever: k=0, batching, exclusion, filters, threshold, hybrid BM25 (Russian), CrossEncoder rerank."""

from __future__ import annotations

import pytest
from index_helpers import CASES, build_tiny_cross_encoder

from medscribe.errors import UsageError
from medscribe.index import Retriever
from medscribe.index.embed import Embedder
from medscribe.index.lexical import reciprocal_rank_fusion
from medscribe.index.retriever import chroma_where, matches

TEXT = {case["id"]: case["text"] for case in CASES}


def cosines(retriever, query: str) -> dict[str, float]:
    """The cosine of `query` to every case, computed here with numpy from the embedder (cases are embedded
    with the query prefix, as the build does)."""
    ids = list(TEXT)
    vectors = retriever.embedder.encode_queries([query, *(TEXT[i] for i in ids)])
    return {i: float(vectors[0] @ v) for i, v in zip(ids, vectors[1:], strict=True)}


def test_k_zero_returns_nothing_and_loads_nothing(built):
    settings, _ = built
    embedder = Embedder.from_settings(settings.index)
    r = Retriever.open(settings, embedder=embedder)
    assert r.search("anything", k=0) == [] and r.search_many(["a", "b"], k=0) == [[], []]
    assert not embedder.loaded


def test_search_many_is_one_batched_encode_and_matches_search(built):
    settings, _ = built
    r = Retriever.open(settings)
    queries = ["What are the symptoms of anemia?", "How is type 2 diabetes treated?", "What causes asthma attacks?"]
    batch = r.search_many(queries, k=2)
    assert r.embedder.encode_calls == 1 and r.embedder.encoded_texts == 3
    assert [hits[0].id for hits in batch] == ["q-anemia", "q-diabetes", "q-asthma"]
    assert all(len(hits) == 2 and hits[0].score >= hits[1].score for hits in batch)
    single = r.search(queries[1], k=2)
    assert [h.id for h in single] == [h.id for h in batch[1]]
    assert single[0].score == pytest.approx(batch[1][0].score, abs=1e-5)


def test_exclude_ids_per_query_removes_the_sample_itself(built):
    settings, _ = built
    r = Retriever.open(settings)
    queries = ["What are the symptoms of anemia?", "How is type 2 diabetes treated?"]
    batch = r.search_many(queries, k=3, exclude_ids=[{"q-anemia"}, set()])
    assert "q-anemia" not in {h.id for h in batch[0]} and len(batch[0]) == 3
    assert batch[1][0].id == "q-diabetes"
    assert [h.id for h in r.search(queries[0], k=7, exclude_ids={"q-anemia", "q-asthma"})].count("q-asthma") == 0
    with pytest.raises(UsageError, match="one set of ids per query"):
        r.search_many(queries, k=1, exclude_ids=["q-anemia", "q-diabetes"])
    with pytest.raises(UsageError, match="2 queries"):
        r.search_many(queries, k=1, exclude_ids=[set()])


def test_filters_dict_list_and_per_query(built):
    settings, _ = built
    r = Retriever.open(settings)
    hits = r.search("What are the symptoms of anemia?", k=5, filters={"task": "report"})
    assert hits and {h.metadata["task"] for h in hits} == {"report"}
    hits = r.search("symptoms", k=5, filters={"specialty": ["neurology", "pulmonology"]})
    assert {h.id for h in hits} == {"q-migraine", "q-asthma"}
    batch = r.search_many(["anemia", "anemia"], k=3, filters=[{"organ": "печень"}, None])
    assert [h.id for h in batch[0]] == ["r-liver"] and len(batch[1]) == 3
    assert r.search("anemia", k=3, filters={"organ": "nowhere"}) == []


def test_filter_helpers():
    assert chroma_where(None) is None
    assert chroma_where({"a": 1}) == {"a": {"$eq": 1}}
    assert chroma_where({"a": 1, "b": ["x", "y"]}) == {"$and": [{"a": {"$eq": 1}}, {"b": {"$in": ["x", "y"]}}]}
    assert matches({"a": 1, "b": "x"}, {"a": 1, "b": ["x", "y"]}) and not matches({"a": 2}, {"a": 1})


def test_threshold_returns_nothing_rather_than_junk(make_settings, built):
    strict = Retriever.open(make_settings(threshold=0.9))
    hits = strict.search("What are the symptoms of anemia?", k=3)
    assert [h.id for h in hits] == ["q-anemia"]
    assert strict.search("quarterly revenue of the steel industry", k=3) == []


def test_hybrid_finds_russian_case_by_word_forms(make_settings, built):
    r = Retriever.open(make_settings(hybrid=True))
    # Different word forms than the stored text (гиподенсное образование / печени -> образования в печени).
    query = "гиподенсные образования в печени 12 мм"
    hits = r.search(query, k=2)
    assert hits[0].id == "r-liver"
    assert hits[0].metadata["bm25_score"] > 0 and hits[0].metadata["rrf_score"] > 0
    cos = cosines(r, query)
    assert [h.score for h in hits] == pytest.approx([cos[h.id] for h in hits], abs=1e-4)  # the cosine, not RRF
    # Fused order, not cosine order: MiniLM (English) ranks the lung case above the liver one for "печени",
    # BM25 (stem "печен") only has the liver case, so RRF puts it first; hits come in RRF order.
    cos = cosines(r, "печени")
    assert max(cos, key=cos.get) != "r-liver"
    hits = r.search("печени", k=3)
    assert hits[0].id == "r-liver" and [h.score for h in hits] != sorted((h.score for h in hits), reverse=True)
    assert [h.metadata["rrf_score"] for h in hits] == sorted((h.metadata["rrf_score"] for h in hits), reverse=True)
    assert [h.score for h in hits] == pytest.approx([cos[h.id] for h in hits], abs=1e-4)
    hits = r.search("консолидация правого лёгкого", k=1, exclude_ids={"r-lung"})
    assert hits and hits[0].id != "r-lung"
    assert r.search("очаг белого вещества", k=3, filters={"organ": "печень"})[0].id == "r-liver"


def test_reciprocal_rank_fusion():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]])
    assert max(fused, key=fused.get) == "a" and fused["c"] > fused["b"]


def test_rerank_with_a_local_cross_encoder(make_settings, built, tmp_path, minilm):
    ce_dir = build_tiny_cross_encoder(tmp_path / "ce", minilm)
    from sentence_transformers import CrossEncoder

    r = Retriever.open(make_settings(rerank_model=str(ce_dir)))
    query = "What are the symptoms of anemia?"
    hits = r.search(query, k=3)
    # Every case is a candidate here (k * 4 < MIN_CANDIDATES): the expected order is the cross-encoder's own
    # scores of (query, case) sorted, computed here with the same model, and it is not the cosine order.
    expected = dict(zip(TEXT, CrossEncoder(str(ce_dir), device="cpu").predict(
        [(query, TEXT[i]) for i in TEXT], show_progress_bar=False).tolist(), strict=True))
    by_cross_encoder = sorted(expected, key=expected.get, reverse=True)
    cos = cosines(r, query)
    by_cosine = sorted(cos, key=cos.get, reverse=True)
    assert by_cross_encoder[:3] != by_cosine[:3]
    assert [h.id for h in hits] == by_cross_encoder[:3]
    assert [h.metadata["rerank_score"] for h in hits] == pytest.approx([expected[h.id] for h in hits], abs=1e-5)
    assert [h.score for h in hits] == pytest.approx([cos[h.id] for h in hits], abs=1e-4)  # score stays the cosine
    with pytest.raises(UsageError, match="index.rerank_model"):
        Retriever.open(make_settings(rerank_model=str(tmp_path / "missing"))).search("x", k=1)


def test_lexical_index_stems_russian_and_english_words():
    from medscribe.index.lexical import LexicalIndex

    texts = ["Артериальная гипертония, головная боль", "Киста печени 12 мм", "Symptoms of anemia in children"]
    lex = LexicalIndex(["a", "b", "c"], [{}, {}, {}], texts)
    ranked = lex.search(["гипертонии", "печень", "symptom anemic", "ничего общего"], n=3, masks=[None] * 4)
    assert [r[0][0] if r else None for r in ranked] == ["a", "b", "c", None]
    masked = lex.search(["печень"], n=3, masks=[lex.mask(lambda m: False)])
    assert masked == [[]]


def test_hybrid_brings_in_bm25_only_candidates_with_their_true_cosine(make_settings, built, monkeypatch):
    from medscribe.index import retriever as retriever_module

    monkeypatch.setattr(retriever_module, "MIN_CANDIDATES", 2)
    monkeypatch.setattr(retriever_module, "CANDIDATES_PER_HIT", 1)
    settings, _ = built
    dense = {h.id: h.score for h in Retriever.open(settings).search("печени", k=7)}
    assert "r-liver" not in list(dense)[:2]  # MiniLM alone misses it (English-only model)
    hits = Retriever.open(make_settings(hybrid=True)).search("печени", k=3)
    liver = next(h for h in hits if h.id == "r-liver")  # found by BM25 (stem "печен")
    assert liver.metadata["bm25_score"] > 0
    assert liver.score == pytest.approx(dense["r-liver"], abs=1e-4)  # cosine from the stored vector



def test_hybrid_candidate_in_another_querys_dense_list(make_settings, built, monkeypatch):
    """Regression: a BM25 hit that query 0's dense list has but query 1's lacks needs query 1's own cosine."""
    r = Retriever.open(make_settings(hybrid=True, search="hnsw"))  # skews Chroma's dense lists
    real_dense = r._dense

    def skewed(vectors, per_filter, excludes, n, record_of):
        out = real_dense(vectors, per_filter, excludes, n, record_of)
        liver = [c for c in out[0] if record_of[c["cid"]] == "r-liver"]
        return [out[0], [c for c in out[1] if record_of[c["cid"]] != "r-liver"]] if liver else out

    monkeypatch.setattr(r, "_dense", skewed)
    queries = ["гиподенсное образование печени", "киста печени"]
    batch = r.search_many(queries, k=5)
    liver = [h for h in batch[1] if h.id == "r-liver"]
    assert liver, "BM25 should bring the liver case back for the second query"
    own, other = cosines(r, queries[1])["r-liver"], cosines(r, queries[0])["r-liver"]
    assert abs(own - other) > 1e-3  # so taking query 0's cosine would show
    assert liver[0].score == pytest.approx(own, abs=1e-4)


def test_hybrid_search_many_matches_single_searches(make_settings, built, monkeypatch):
    """Regression: a BM25 hit that one query's dense list has and another's lacks still gets its own cosine."""
    from medscribe.index import retriever as retriever_module

    monkeypatch.setattr(retriever_module, "MIN_CANDIDATES", 2)
    monkeypatch.setattr(retriever_module, "CANDIDATES_PER_HIT", 1)
    r = Retriever.open(make_settings(hybrid=True))
    queries = ["печени", "гиподенсное образование печени 12 мм", "What are the symptoms of anemia?", "киста печени"]
    batch = r.search_many(queries, k=3)
    for query, hits in zip(queries, batch, strict=True):
        single = r.search(query, k=3)
        assert [h.id for h in hits] == [h.id for h in single]
        assert [round(h.score, 4) for h in hits] == [round(h.score, 4) for h in single]
