"""Chroma writes in a child process (index/writer.py): same index as the thread, updates after it, failures."""

from __future__ import annotations

import os

import numpy as np
import pytest
from index_helpers import CASES, dies_on_encode_call, write_corpus

from medscribe.errors import RuntimeFailure
from medscribe.index import Retriever, build, build_index, store
from medscribe.index import writer as writer_module
from medscribe.index.writer import ProcessWriter, ThreadWriter, open_writer, threads_while_writing


def _contents(settings) -> dict[str, tuple]:
    collection = store.get_collection(store.open_client(settings), settings.index.collection)
    got = collection.get(include=["embeddings", "documents", "metadatas"])
    return {
        cid: (doc, meta, np.asarray(vec))
        for cid, doc, meta, vec in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True)
    }


class CountingProcessWriter(ProcessWriter):
    started = 0

    def __init__(self, *args, **kwargs):
        type(self).started += 1
        super().__init__(*args, **kwargs)


@pytest.fixture
def spy(monkeypatch):
    CountingProcessWriter.started = 0
    monkeypatch.setattr(writer_module, "ProcessWriter", CountingProcessWriter)
    monkeypatch.setattr(build, "WRITE_BLOCK", 3)  # several blocks, so writes overlap with encoding
    return CountingProcessWriter


def test_process_writer_builds_the_same_index_as_the_thread(tmp_path, make_settings, corpus, spy):
    by_thread = make_settings(writer="thread", collection="by-thread")
    by_process = make_settings(writer="process", collection="by-process")
    assert build_index(by_thread, show_progress=False).entries == 7
    assert spy.started == 0
    import torch

    threads = torch.get_num_threads()
    report = build_index(by_process, show_progress=False)
    assert spy.started == 1 and report.manifest["writer"] == "process"
    assert torch.get_num_threads() == threads  # the thread given up while the child wrote is back
    assert (report.added, report.embedded, report.entries) == (7, 7, 7)
    a, b = _contents(by_thread), _contents(by_process)
    assert a.keys() == b.keys()
    for cid in a:
        assert a[cid][:2] == b[cid][:2]
        np.testing.assert_allclose(a[cid][2], b[cid][2], atol=1e-5)
    hits = Retriever.open(by_process).search("What are the symptoms of anemia?", k=2)
    assert hits[0].id == "q-anemia" and hits[0].score == pytest.approx(1.0, abs=1e-3)


def test_updates_and_prune_after_a_process_build_see_the_childs_rows(tmp_path, make_settings, corpus, spy):
    settings = make_settings(writer="process")
    build_index(settings, show_progress=False)
    rows = [dict(r) for r in CASES]
    rows[0]["answer"] = "Tiredness."  # payload change: updated in place
    rows[1]["text"] = "Which drugs treat type 2 diabetes?"  # text change: re-embedded
    del rows[2]  # gone: pruned
    rows.append({"id": "q-gout", "text": "What triggers gout flares?", "answer": "Purines.", "split": "train"})
    write_corpus(tmp_path / "data" / "corpus.jsonl", rows)
    report = build_index(settings, prune=True, show_progress=False)
    assert spy.started == 2
    assert (report.added, report.updated, report.deleted, report.entries) == (1, 2, 1, 7)
    retriever = Retriever.open(settings)
    assert retriever.search("What are the symptoms of anemia?", k=1)[0].answer == "Tiredness."
    assert retriever.search("What triggers gout flares?", k=1)[0].id == "q-gout"
    assert retriever.search("Which drugs treat type 2 diabetes?", k=1)[0].score == pytest.approx(1.0, abs=1e-3)
    ids = [h.id for h in retriever.search("asthma attacks", k=7)]
    assert "q-asthma" not in ids and len(ids) == len(set(ids)) == 7  # every row once, the pruned one gone


def test_writer_choice(make_settings, tmp_path):
    from medscribe.index.embed import Embedder

    settings = make_settings()
    embedder = Embedder.from_settings(settings.index)
    collection = store.create_collection(store.open_client(settings), "choice", store.space_metadata("m", 3, "", ""))
    assert isinstance(open_writer(settings, collection, 10, None), ThreadWriter)
    with open_writer(settings, collection, writer_module.PROCESS_WRITER_MIN, embedder) as writer:
        assert isinstance(writer, ProcessWriter)
    remote = make_settings(server_url="http://127.0.0.1:9")
    assert isinstance(open_writer(remote, collection, 10**6, None), ThreadWriter)  # the server writes itself
    assert isinstance(open_writer(make_settings(writer="thread"), collection, 10**6, None), ThreadWriter)


def test_cpu_encoder_gives_up_a_thread_only_without_a_spare_core(make_settings, monkeypatch):
    import torch

    from medscribe.index.embed import Embedder

    embedder = Embedder.from_settings(make_settings().index)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    monkeypatch.setattr(writer_module.os, "sched_getaffinity", lambda _pid: set(range(4)), raising=False)
    assert threads_while_writing(embedder) == (4, 3)
    monkeypatch.setattr(writer_module.os, "sched_getaffinity", lambda _pid: set(range(8)), raising=False)
    assert threads_while_writing(embedder) is None


def _writer_on_new_collection(settings) -> ProcessWriter:
    client = store.open_client(settings)
    store.create_collection(client, settings.index.collection, store.space_metadata("m", 3, "", ""))
    return ProcessWriter(settings.paths.index, settings.index.collection)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity is Linux-only")
def test_the_child_can_be_pinned_to_one_core(make_settings):
    settings = make_settings()
    client = store.open_client(settings)
    store.create_collection(client, settings.index.collection, store.space_metadata("m", 3, "", ""))
    with ProcessWriter(settings.paths.index, settings.index.collection, cpu=0) as writer:
        writer.submit(["a"], np.ones((1, 3), dtype=np.float32), ["text a"], [{"kind": "case"}])
        writer.wait()  # the child has pinned itself before its first write
        assert os.sched_getaffinity(writer._proc.pid) == {0}


def test_a_failed_write_is_a_one_line_runtime_failure(make_settings):
    settings = make_settings()
    writer = _writer_on_new_collection(settings)
    writer.submit(["a"], np.ones((1, 3), dtype=np.float32), ["text a"], [{"kind": "case"}])
    writer.wait()
    assert writer.written == 1 and not writer.busy
    writer.submit(["b"], np.ones((1, 3), dtype=np.float32), ["text b"], [{"nested": {"no": 1}}])
    with pytest.raises(RuntimeFailure, match="Chroma write failed in the writer process") as err:
        writer.close()
    assert "\n" not in str(err.value)
    reopened = store.get_collection(store.reopen_client(settings), settings.index.collection)
    assert reopened.get()["ids"] == ["a"]  # the good block is on disk


def test_a_killed_writer_process_is_reported_not_waited_for(make_settings):
    settings = make_settings()
    writer = _writer_on_new_collection(settings)
    writer._proc.kill()
    writer._proc.wait()
    with pytest.raises(RuntimeFailure, match="writer process"):
        writer.submit(["a"], np.ones((1, 3), dtype=np.float32), ["text a"], [{"kind": "case"}])
        writer.close()


def test_a_build_killed_while_the_child_writes_resumes_without_duplicates(make_settings, corpus, spy):
    from medscribe.index.embed import Embedder

    settings = make_settings(writer="process")
    # killed while block 2 is embedded and block 1 is in the child
    embedder = dies_on_encode_call(Embedder.from_settings(settings.index), 2)
    with pytest.raises(KeyboardInterrupt):
        build_index(settings, show_progress=False, embedder=embedder)
    store.reopen_client(settings)
    report = build_index(settings, show_progress=False)
    assert (report.unchanged, report.embedded, report.entries) == (3, 4, 7)


def test_a_retriever_opened_before_a_build_in_this_process_sees_the_new_rows(tmp_path, make_settings, corpus, spy):
    settings = make_settings(writer="process", hybrid=True)
    build_index(settings, show_progress=False)
    retriever = Retriever.open(settings)
    assert retriever.search("What triggers gout flares?", k=1)[0].id != "q-gout"
    rows = [dict(r) for r in CASES] + [
        {"id": "q-gout", "text": "What triggers gout flares?", "answer": "Purines.", "split": "train"}
    ]
    write_corpus(tmp_path / "data" / "corpus.jsonl", rows)
    build_index(settings, show_progress=False)  # written by the child, cached graph dropped (reopen_client)
    hit = retriever.search("What triggers gout flares?", k=1)[0]  # dense + BM25 both see the new row
    assert hit.id == "q-gout" and hit.score == pytest.approx(1.0, abs=1e-3)
    assert retriever.size == 8
