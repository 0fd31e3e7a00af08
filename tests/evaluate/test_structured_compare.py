"""Structured metrics, retrieval metrics, paired bootstrap and group breakdowns, on hand-checked tiny data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from medscribe.evaluate.breakdown import group_scores, recommend_fractions, weakest_groups
from medscribe.evaluate.compare import RunScores, bootstrap, resample_counts, resampled_corpus, resampled_mean
from medscribe.evaluate.loading import RunData
from medscribe.evaluate.metrics import compute_lexical
from medscribe.evaluate.structured import (
    citation_metrics,
    field_accuracy,
    json_validity,
    organ_cosine,
    retrieval_metrics,
)


def make_run(parsed, parse_ok, organs, has_finding, retrieved=None, gold=None) -> RunData:
    n = len(parsed)
    return RunData(
        name="r", path=Path("r"), ids=[str(i) for i in range(n)], predictions=["x"] * n, references=["x"] * n,
        parsed=parsed, parse_ok=parse_ok, groups={},
        ref_fields={"has_finding": has_finding, "organ": organs, "modality": [None] * n},
        retrieved_ids=retrieved or [None] * n, gold_ids=gold or [None] * n,
    )


def test_json_validity_and_field_accuracy():
    run = make_run(
        parsed=[{"organ": "Печень", "has_finding": True}, {"organ": "почки", "has_finding": "false"}, None, {}],
        parse_ok=[True, True, False, True],
        organs=["печень", "печень", "печень", None],
        has_finding=[True, False, True, None],
    )
    assert json_validity(run)["json_valid"].tolist() == [1, 1, 0, 1]
    acc = field_accuracy(run)
    # organ: row 0 right (case-insensitive), row 1 wrong, row 2 unparsed = wrong, row 3 no reference
    assert acc["organ_acc"][:3].tolist() == [1, 0, 0] and math.isnan(acc["organ_acc"][3])
    # has_finding: True==True, "false"->False==False, unparsed wrong
    assert acc["has_finding_acc"][:3].tolist() == [1, 1, 0]
    assert "modality_acc" not in acc  # no reference modality anywhere


def test_organ_cosine_uses_embedder():
    class FakeEmbedder:
        def pair_cosine(self, left, right):
            return np.array([1.0 if a == b else 0.5 for a, b in zip(left, right, strict=False)])

    run = make_run(
        parsed=[{"organ": "печень"}, {"organ": "печени"}, {}, None],
        parse_ok=[True] * 4, organs=["печень", "печень", "печень", None], has_finding=[None] * 4,
    )
    out = organ_cosine(run, FakeEmbedder(), threshold=0.8)
    assert out["organ_cosine"][:3].tolist() == [1.0, 0.5, 0.0] and math.isnan(out["organ_cosine"][3])
    assert out["organ_match"][:3].tolist() == [1.0, 0.0, 0.0]


def test_retrieval_recall_and_mrr_by_hand():
    run = make_run(
        parsed=[None] * 4, parse_ok=[None] * 4, organs=[None] * 4, has_finding=[None] * 4,
        retrieved=[["g0", "a", "b"], ["a", "g1", "b"], ["a", "b", "c"], ["a"]],
        gold=["g0", "g1", "g2", None],
    )
    out = retrieval_metrics(run, [1, 3])
    assert out["recall@1"][:3].tolist() == [1, 0, 0]
    assert out["recall@3"][:3].tolist() == [1, 1, 0]
    assert out["mrr"][:3].tolist() == [1.0, 0.5, 0.0]
    assert math.isnan(out["mrr"][3])
    assert np.nanmean(out["mrr"]) == pytest.approx(0.5)


def test_citations_are_checked_against_the_retrieved_ids():
    run = make_run(
        parsed=[{"answer": "a", "citations": ["c1", "made-up"]}, {"answer": "b", "citations": []},
                {"answer": "c", "citations": ["c9"]}, None, {"answer": "e", "citations": ["c1"]}],
        parse_ok=[True, True, True, False, True], organs=[None] * 5, has_finding=[None] * 5,
        retrieved=[["c1", "c2"], ["c3"], ["c9"], ["c1"], None],
    )
    out = citation_metrics(run)
    assert out["citation_precision"][:3].tolist()[0] == 0.5 and out["citation_precision"][2] == 1.0
    assert math.isnan(out["citation_precision"][1])  # cites nothing: no precision to speak of
    assert out["citation_rate"][:3].tolist() == [1.0, 0.0, 1.0]
    assert math.isnan(out["citation_rate"][3]) and math.isnan(out["citation_rate"][4])  # unparsed / nothing shown
    reports = make_run(parsed=[{"result": "x"}], parse_ok=[True], organs=[None], has_finding=[None],
                       retrieved=[["c1"]])
    assert citation_metrics(reports) == {}  # report answers have no citations field: nothing reported


def test_resample_counts_and_means():
    counts = resample_counts(5, 7, np.random.default_rng(0))
    assert counts.shape == (7, 5) and (counts.sum(axis=1) == 5).all()
    values = np.array([1.0, 0.0, np.nan, 1.0, 0.0])
    ones = np.ones((1, 5), dtype=int)
    assert resampled_mean(ones, values)[0] == pytest.approx(0.5)  # NaN row excluded


def test_resampled_corpus_bleu_equals_corpus_score_on_identity():
    preds, refs = ["the cat sat on the mat", "a dog"], ["the cat sat on a mat", "a dog barked"]
    lex = compute_lexical(preds, refs, {"bleu"})
    ones = np.ones((1, 2), dtype=int)
    assert resampled_corpus(ones, lex.corpus_stats["bleu"], lex.score_from_stats["bleu"])[0] == pytest.approx(
        lex.corpus["bleu"]
    )


def _scores(name, values, lex=None):
    scores = RunScores(name=name, per_row={"acc": np.asarray(values, dtype=float)})
    if lex is not None:
        scores.per_row["bleu"] = lex.per_row["bleu"]
        scores.corpus_stats["bleu"] = lex.corpus_stats["bleu"]
        scores.score_from_stats["bleu"] = lex.score_from_stats["bleu"]
    return scores


def test_paired_bootstrap_deterministic_and_sensible():
    rng = np.random.default_rng(1)
    base = (rng.random(200) < 0.4).astype(float)
    better = np.maximum(base, (rng.random(200) < 0.5).astype(float))  # never worse on any row
    ref = "the liver has a small simple cyst"
    lex_a = compute_lexical([f"{ref} and a stone"] * 200, [ref] * 200, {"bleu"})
    lex_b = compute_lexical([ref] * 200, [ref] * 200, {"bleu"})
    runs = [_scores("a", base, lex_a), _scores("b", better, lex_b)]
    one = bootstrap(runs, samples=300, seed=7)
    two = bootstrap(runs, samples=300, seed=7)
    other = bootstrap(runs, samples=300, seed=8)
    assert one.diff == two.diff and one.ci == two.ci
    assert one.diff["b"]["acc"] != other.diff["b"]["acc"]
    d = one.diff["b"]["acc"]
    observed = better.mean() - base.mean()
    assert d["low"] <= observed <= d["high"] and d["low"] > 0  # paired: every resample improves
    assert d["p_value"] < 0.01
    low, high = one.ci["a"]["acc"]
    assert low <= base.mean() <= high
    assert one.diff["b"]["bleu"]["low"] > 0  # corpus BLEU difference from resampled statistics
    assert one.ci["b"]["bleu"] == pytest.approx((1.0, 1.0))


def test_identical_runs_have_zero_difference():
    values = np.array([1, 0, 1, 1, 0], dtype=float)
    boot = bootstrap([_scores("a", values), _scores("b", values)], samples=50, seed=0)
    assert boot.diff["b"]["acc"]["low"] == 0 and boot.diff["b"]["acc"]["high"] == 0
    assert boot.diff["b"]["acc"]["p_value"] == 1.0


def test_group_scores_weakest_and_recommendations():
    values = np.array([1, 1, 1, 0.5, 0.5, 0.5, 0, 0, 0, 1], dtype=float)
    groups = ["cardio"] * 3 + ["neuro"] * 3 + ["onco"] * 3 + [None]
    table = group_scores(_scores("r", values), groups)
    by_group = {row["group"]: row for row in table}
    assert by_group["cardio"]["acc"] == 1.0 and by_group["neuro"]["acc"] == 0.5 and by_group["onco"]["acc"] == 0
    assert by_group["(unknown)"]["n"] == 1
    assert [row["group"] for row in weakest_groups(table, "acc", n=3, min_size=3)] == ["onco"]  # at most half
    tied = [{"group": g, "n": 5, "acc": v} for g, v in (("a", 1.0), ("b", 1.0), ("c", 1.0), ("d", 0.9))]
    assert [row["group"] for row in weakest_groups(tied, "acc", n=3, min_size=3)] == ["d"]  # ties with best: not weak
    rec = recommend_fractions(table, "acc", min_fraction=0.5, min_size=3)
    # best 1.0, worst 0.0: fraction = 0.5 + 0.5 * gap / 1.0
    assert rec["train_fractions"] == {"cardio": 0.5, "neuro": 0.75, "onco": 1.0}
    few = recommend_fractions(table, "acc", min_fraction=0.5, min_size=4)
    assert set(few["train_fractions"].values()) == {1.0}  # too few rows everywhere: keep all data


def test_a_field_no_answer_fills_is_not_scored_and_says_why():
    run = make_run(parsed=[{"result": "x", "organ": None}, {"result": "y"}], parse_ok=[True, True],
                   organs=["печень", "почки"], has_finding=[True, None])
    skipped: dict[str, str] = {}
    acc = field_accuracy(run, skipped)
    assert "organ_acc" not in acc and "has_finding_acc" not in acc
    assert skipped == {"organ_acc (r)": "no answer fills 'organ' (the prompt does not ask for it)",
                       "has_finding_acc (r)": "no answer fills 'has_finding' (the prompt does not ask for it)"}
