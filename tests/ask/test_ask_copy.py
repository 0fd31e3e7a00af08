"""`ask.mode`: copy (the nearest retrieved case's answer, no model) and copy_or_generate (copy above a cosine)."""

from __future__ import annotations

import json

import pytest
from ask_helpers import QA_ROWS, REPORT_ROWS, read_results, write_jsonl

from medscribe.ask import ask_one, run_batch
from medscribe.errors import UsageError
from medscribe.schemas import Hit


class NoModel:
    """A backend that must not be used."""

    def describe(self):
        raise AssertionError("copy mode loaded a model")

    def generate(self, requests, on_done):
        raise AssertionError("copy mode asked a model")


class ScoredRetriever:
    """The nearest case's answer and cosine depend on the query: 'близко' -> 0.95, anything else -> 0.40;
    a query with 'справка' gets only a knowledge chunk (no answer to copy)."""

    def search_many(self, queries, k=None, filters=None, exclude_ids=None, indexed_ids=None):
        out = []
        for q in queries:
            if "справка" in q:
                out.append([Hit(id="doc-1", text="chunk", answer=None, score=0.99, metadata={"kind": "knowledge"})])
                continue
            score = 0.95 if "близко" in q else 0.40
            hits = [Hit(id=f"case-{q[:6]}", text=f"case for {q}", answer=f"ответ для «{q}»", score=score)]
            hits += [Hit(id=f"far-{j}", text="far", answer="далеко", score=0.1) for j in range(1, k)]
            out.append(hits)
        return out


def test_copy_mode_answers_are_the_nearest_case_answers_without_a_model(tmp_path, make_settings):
    path = write_jsonl(tmp_path / "in.jsonl", REPORT_ROWS)
    settings = make_settings(mode="copy", k=1)
    summary = run_batch(settings, path, run="copy", retriever=ScoredRetriever(), backend=NoModel())
    rows = read_results(tmp_path / "ask" / "copy")
    assert [r["prediction"] for r in rows] == [f"ответ для «{r['input']}»" for r in REPORT_ROWS]
    assert all(r["copied"] and r["parse_ok"] and not r["repaired"] and r["error"] is None for r in rows)
    assert [r["copied_from"] for r in rows] == [r["retrieved_ids"][0] for r in rows]
    assert rows[0]["parsed"]["result"] == rows[0]["prediction"]  # the same answer structure a model writes
    assert summary["copied"] == 3 and summary["mode"] == "copy" and summary["model"] is None
    assert summary["fingerprint"]["parts"]["mode"] == "copy" and "model" not in summary["fingerprint"]["parts"]


def test_copy_mode_qa_cites_the_copied_case(tmp_path, make_settings, fake_retriever):
    path = write_jsonl(tmp_path / "in.jsonl", [{**r, "task": "qa"} for r in QA_ROWS])
    run_batch(make_settings(mode="copy", k=2), path, run="qa", retriever=fake_retriever, backend=NoModel())
    row = read_results(tmp_path / "ask" / "qa")[0]
    assert row["task"] == "qa" and row["parsed"]["citations"] == ["case-0"] and row["parse_ok"]
    assert row["prediction"] == "similar conclusion 0" and row["retrieved_ids"] == ["case-0", "case-1"]


def test_copy_mode_with_no_case_to_copy_fails_the_row(tmp_path, make_settings):
    rows = [*REPORT_ROWS[:2], {"id": "k", "input": "справка"}]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    summary = run_batch(make_settings(mode="copy", k=1), path, run="c", retriever=ScoredRetriever(), backend=NoModel())
    by_id = {r["id"]: r for r in read_results(tmp_path / "ask" / "c")}
    assert by_id["k"]["error"].startswith("copy: no retrieved case") and not by_id["k"]["copied"]
    assert summary["answered"] == 2 and summary["copied"] == 2


def test_copy_or_generate_copies_above_the_threshold_only(tmp_path, make_settings, server):
    rows = [{"id": "near", "input": "близко к случаю"}, {"id": "far", "input": "что-то другое"},
            {"id": "doc", "input": "справка"}]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    settings = make_settings(mode="copy_or_generate", copy_threshold=0.9, k=2, base_url=server.base_url)
    summary = run_batch(settings, path, run="mix", retriever=ScoredRetriever())
    by_id = {r["id"]: r for r in read_results(tmp_path / "ask" / "mix")}
    assert by_id["near"]["copied"] and by_id["near"]["prediction"] == "ответ для «близко к случаю»"
    assert not by_id["far"]["copied"] and by_id["far"]["prediction"].startswith("conclusion:")  # the model's
    assert not by_id["doc"]["copied"] and by_id["doc"]["error"] is None  # a knowledge chunk is not copied
    assert len(server.requests) == 2 and summary["copied"] == 1
    assert summary["fingerprint"]["parts"]["copy_threshold"] == 0.9
    # the threshold is part of what produced the run: another one is another run
    with pytest.raises(UsageError, match=r"another copy threshold \(copy_threshold: 0.9 -> 0.3\)"):
        run_batch(make_settings(mode="copy_or_generate", copy_threshold=0.3, k=2, base_url=server.base_url), path,
                  run="mix", retriever=ScoredRetriever())
    low = run_batch(make_settings(mode="copy_or_generate", copy_threshold=0.3, k=2, base_url=server.base_url),
                    path, run="low", retriever=ScoredRetriever())
    assert low["copied"] == 2 and len(server.requests) == 3


def test_copy_modes_need_retrieval_and_a_threshold(tmp_path, make_settings):
    path = write_jsonl(tmp_path / "in.jsonl", REPORT_ROWS)
    with pytest.raises(UsageError, match="needs k >= 1"):
        run_batch(make_settings(mode="copy", k=0), path, backend=NoModel())
    with pytest.raises(UsageError, match="needs ask.copy_threshold"):
        run_batch(make_settings(mode="copy_or_generate", k=1), path, backend=NoModel())


def test_single_text_copy(make_settings):
    row = ask_one(make_settings(mode="copy", k=1), "близко", retriever=ScoredRetriever(), backend=NoModel())
    assert row["copied"] and row["prediction"] == "ответ для «близко»" and json.loads(row["raw"]) == {
        "result": "ответ для «близко»"}


@pytest.mark.slow
def test_copy_mode_through_the_cli_with_a_real_index(tmp_path, minilm, monkeypatch):
    """The real retriever: every copied answer is the answer of the case Retriever.search ranks first."""
    from typer.testing import CliRunner

    from medscribe.cli import app
    from medscribe.index import Retriever, build_index
    from medscribe.settings import load_settings

    monkeypatch.setenv("MEDSCRIBE_PATHS__ASK", str(tmp_path / "ask"))
    monkeypatch.setenv("MEDSCRIBE_PATHS__INDEX", str(tmp_path / "index"))
    monkeypatch.setenv("MEDSCRIBE_INDEX__EMBEDDING_MODEL", minilm)
    monkeypatch.setenv("MEDSCRIBE_INDEX__DEVICE", "cpu")
    monkeypatch.chdir(tmp_path)
    corpus = [
        {"id": f"t{i}", "text": text, "answer": answer, "task": "qa", "specialty": None, "organ": None,
         "modality": None, "source": "s", "split": "train"}
        for i, (text, answer) in enumerate([
            ("What are the symptoms of anemia?", "Fatigue, pallor."),
            ("How is high blood pressure diagnosed?", "Repeated readings."),
            ("What causes asthma?", "Airway inflammation."),
        ])
    ]
    build_index(load_settings(None), corpus=write_jsonl(tmp_path / "corpus.jsonl", corpus), show_progress=False)
    rows = [{"id": "x1", "input": "Which signs point to anemia?"}, {"id": "x2", "input": "Why do people get asthma?"},
            {"id": "t1", "input": "How is high blood pressure diagnosed?"}]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    result = CliRunner().invoke(app, ["ask", "--input", str(path), "--mode", "copy", "--k", "1", "--task", "qa",
                                      "--run", "copy", "--backend", "local", "--local-model", "no/such-model"])
    assert result.exit_code == 0, result.output
    assert "3 of 3 answer(s) copied" in result.output
    retriever = Retriever.open(load_settings(None))
    by_id = {r["id"]: r for r in read_results(tmp_path / "ask" / "copy")}
    for row in rows:
        nearest = retriever.search(row["input"], k=1, exclude_ids={row["id"]})[0]
        assert by_id[row["id"]]["prediction"] == nearest.answer and by_id[row["id"]]["copied_from"] == nearest.id
    assert by_id["t1"]["copied_from"] != "t1"  # never its own answer
