"""Pairs built from an eval run (sft/pairs_eval.py): a real ask run (fake backend and retriever) scored by a real
eval; rows below the threshold give pairs whose prompt is what the shared builder renders with the context the
model saw (and what ask logged), right answers give none, and a run that cannot be reproduced is refused."""

from __future__ import annotations

import json

import pytest
from sft_helpers import write_jsonl

from medscribe.ask import run_batch
from medscribe.ask.generation import Generation
from medscribe.errors import UsageError
from medscribe.evaluate import run_eval
from medscribe.prompts import build_messages, render_target
from medscribe.schemas import Hit
from medscribe.settings import load_settings
from medscribe.sft.pairs_eval import pairs_from_eval

ROWS = [
    {"id": f"t{i}", "input": f"Очаг {i} мм в печени, четкие контуры", "target": f"Киста печени {i}",
     "organ": "печень", "modality": "КТ"}
    for i in range(6)
]
WRONG = {"t1", "t3", "t4"}  # the fake model answers these badly


class Retriever:
    """search_many like the index's: one case per query, chosen from the query text (so it is reproducible)."""

    def __init__(self, shift: int = 0):
        self.shift = shift

    def search_many(self, queries, k=None, filters=None, exclude_ids=None, indexed_ids=None):
        out = []
        for q in queries:
            n = (sum(map(ord, q)) + self.shift) % 7
            out.append([Hit(id=f"case-{n}", text=f"Образование {n} мм", answer=f"Гемангиома {n}", score=0.9,
                            metadata={"organ": "печень", "modality": "КТ"})][:k])
        return out


class Backend:
    def describe(self):
        return {"backend": "fake", "model": "fake"}

    def generate(self, requests, on_done):
        for i, request in enumerate(requests):
            text = request.messages[-1]["content"]
            row = next(r for r in ROWS if r["input"] in text)
            answer = "Норма без изменений" if row["id"] in WRONG else row["target"]
            on_done(i, Generation(raw=json.dumps({"result": answer}, ensure_ascii=False), latency_s=0.01))


def settings_for(tmp_path, **sft):
    return load_settings(flags={
        "paths": {"ask": str(tmp_path / "ask"), "eval": str(tmp_path / "eval"), "index": str(tmp_path / "index")},
        "data": {"task": "report"}, "ask": {"k": 1},
        "eval": {"metrics": ["exact_match", "token_f1"], "group_by": [], "report_formats": [],
                 "bootstrap_samples": 10},
        "sft": {"pairs_metric": "token_f1", "pairs_threshold": 0.9, **sft},
    })


@pytest.fixture
def runs(tmp_path):
    """(settings, ask run dir, eval dir) of a finished ask + eval."""
    settings = settings_for(tmp_path)
    test_file = write_jsonl(tmp_path / "test.jsonl", ROWS)
    run_batch(settings, test_file, run="sft-run", retriever=Retriever(), backend=Backend())
    ask_dir = tmp_path / "ask" / "sft-run"
    run_eval(settings, [ask_dir], out=tmp_path / "eval" / "sft-run")
    return settings, ask_dir, tmp_path / "eval" / "sft-run"


def test_wrong_answers_give_pairs_with_the_prompt_the_model_saw(runs):
    settings, ask_dir, eval_dir = runs
    pairs, report = pairs_from_eval(settings, eval_dir, retriever=Retriever())
    assert sorted(p.id for p in pairs) == sorted(WRONG)  # right answers give no pair
    assert report.counts["right"] == len(ROWS) - len(WRONG) and report.counts["below_threshold"] == len(WRONG)
    assert report.counts["prompt_checked_against_log"] == len(WRONG)
    logged = {line["id"]: line["messages"] for line in map(json.loads, (ask_dir / "log.jsonl").open(encoding="utf-8"))}
    for pair in pairs:
        row = next(r for r in ROWS if r["id"] == pair.id)
        hits = Retriever().search_many([row["input"]], k=1)[0]
        assert pair.prompt == build_messages(row, "report", settings.prompt, context=hits)
        assert pair.prompt == logged[pair.id]
        assert pair.chosen == render_target(row, "report", settings.prompt, hits)
        assert json.loads(pair.rejected) == {"result": "Норма без изменений"}
        assert pair.origin["token_f1"] < 0.9
    assert report.source["kind"] == "eval" and report.source["run"] == "sft-run"


def test_an_ask_run_folder_is_scored_here_and_gives_the_same_pairs(runs):
    settings, ask_dir, eval_dir = runs
    from_eval = pairs_from_eval(settings, eval_dir, retriever=Retriever())[0]
    from_ask = pairs_from_eval(settings, ask_dir, retriever=Retriever())[0]
    assert [p.as_dict() for p in from_ask] == [p.as_dict() for p in from_eval]


def test_no_answer_below_the_threshold_is_an_error_naming_it(runs, tmp_path):
    _, _, eval_dir = runs
    settings = settings_for(tmp_path, pairs_threshold=0.0)
    with pytest.raises(UsageError, match=r"no usable pairs: no answer scored below sft.pairs_threshold = 0 on "
                                         r"token_f1 \(6 of 6 rows at or above it"):
        pairs_from_eval(settings, eval_dir, retriever=Retriever())


def test_context_that_cannot_be_reproduced_is_rejected(runs):
    settings, _, eval_dir = runs
    with pytest.raises(UsageError, match=r"3 answers scored below sft.pairs_threshold = 0.9 on token_f1, none "
                                         r"usable \(first: retrieved context differs from the one recorded\)"):
        pairs_from_eval(settings, eval_dir, retriever=Retriever(shift=1))


def test_a_prompt_that_differs_from_the_logged_one_is_rejected(runs):
    settings, ask_dir, eval_dir = runs
    log = ask_dir / "log.jsonl"
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    for line in lines:
        if line["id"] == "t1":
            line["messages"][0]["content"] += " (edited)"
    log.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    pairs, report = pairs_from_eval(settings, eval_dir, retriever=Retriever())
    assert sorted(p.id for p in pairs) == ["t3", "t4"]
    assert {"line": 2, "id": "t1", "reason": "prompt differs from the one ask sent (log.jsonl)"} in report.rejects


def test_other_prompt_settings_are_refused(runs, tmp_path):
    _, _, eval_dir = runs
    settings = load_settings(flags={**json.loads(json.dumps({"prompt": {"variant": "simple"}})),
                                    "data": {"task": "report"}, "ask": {"k": 1},
                                    "paths": {"index": str(tmp_path / "index")}})
    with pytest.raises(UsageError, match="generated with another prompt"):
        pairs_from_eval(settings, eval_dir, retriever=Retriever())


def test_bad_sources(runs, tmp_path):
    settings, _, eval_dir = runs
    with pytest.raises(UsageError, match="sft.pairs_eval: .*nowhere not found"):
        pairs_from_eval(settings, tmp_path / "nowhere", retriever=Retriever())
    with pytest.raises(UsageError, match="sft.pairs_eval_run: 'other' is not a run"):
        pairs_from_eval(settings_for(tmp_path, pairs_eval_run="other"), eval_dir, retriever=Retriever())
    with pytest.raises(UsageError, match="rows.csv: no column 'bleu'"):
        pairs_from_eval(settings_for(tmp_path, pairs_metric="bleu"), eval_dir, retriever=Retriever())
