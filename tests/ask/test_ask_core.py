"""Retrieval plumbing, run names and resume bookkeeping (no server, no model)."""

from __future__ import annotations

import json

import pytest

from medscribe.ask.batch import default_run_name, load_done, percentile
from medscribe.ask.core import build_request, effective_k, retrieve
from medscribe.ask.generation import redact


def test_retrieve_groups_by_filter_and_excludes_own_id(fake_retriever):
    records = [
        {"id": "a", "input": "x", "organ": "печень"},
        {"id": "b", "input": "y", "organ": "почки"},
        {"id": "c", "input": "z", "organ": "печень"},
        {"id": "d", "input": "w"},
    ]
    hits = retrieve(fake_retriever, records, 2, ["organ"])
    assert [len(h) for h in hits] == [2, 2, 2, 2]
    calls = {json.dumps(c["filters"], ensure_ascii=False): c for c in fake_retriever.calls}
    assert calls['{"organ": "печень"}']["queries"] == ["x", "z"]  # one batched call per filter value
    assert calls['{"organ": "печень"}']["exclude_ids"] == [{"a"}, {"c"}]
    assert calls["null"]["queries"] == ["w"] and len(fake_retriever.calls) == 3


def test_no_retriever_or_k0_gives_no_hits(fake_retriever):
    assert retrieve(None, [{"id": "a", "input": "x"}], 3, []) == [[]]
    assert retrieve(fake_retriever, [{"id": "a", "input": "x"}], 0, []) == [[]]
    assert fake_retriever.calls == []


def test_prompt_context_modes(make_settings, fake_retriever):
    record = {"id": "a", "input": "Киста 12 мм", "organ": "печень", "task": "report"}
    hits = retrieve(fake_retriever, [record], 2, [])[0]
    few_shot = build_request(record, hits, make_settings(k=2)).messages
    assert [m["role"] for m in few_shot] == ["system", "user", "assistant", "user", "assistant", "user"]
    from medscribe.settings import load_settings

    system = build_request(record, hits, load_settings(None, {"prompt": {"context": "system"}})).messages
    assert [m["role"] for m in system] == ["system", "user"] and "[case-1]" in system[0]["content"]


def test_k_and_run_names(make_settings, tmp_path):
    assert effective_k(make_settings()) == 3  # index.k
    assert effective_k(make_settings(k=0)) == 0
    assert default_run_name(make_settings(k=0)) == "openai-Qwen2.5-7B-Instruct-base-norag"
    local = make_settings(backend="local", local_model="/m/SmolLM2", adapter=str(tmp_path / "adapter"), k=2)
    assert default_run_name(local) == "local-SmolLM2-adapter-rag2"


def test_load_done_drops_failed_and_torn_lines(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"id": "a", "error": null}\n{"id": "b", "error": "HTTP 500"}\n{"id": "c", "err', encoding="utf-8")
    done, dropped = load_done(path)
    assert list(done) == ["a"] and dropped == 1


def test_percentile_and_redact():
    assert percentile([], 0.5) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.5) == pytest.approx(2.5)
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.95) == pytest.approx(3.85)
    key = "sk-proj-abcdefghijklmnop"
    assert redact(f"bad key {key}, ends ...{key[-8:]}", [key]) == "bad key ***, ends ...***"
    assert redact("EMPTY stays", ["EMPTY"]) == "EMPTY stays"
