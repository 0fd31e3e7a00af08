"""The openai backend through run_batch/ask_one against the fault-injecting test server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from ask_helpers import QA_ROWS, REPORT_ROWS, read_results, write_jsonl
from fake_server import FakeServer

from medscribe.ask import ask_one, run_batch
from medscribe.errors import RuntimeFailure, UsageError

RESULT_CONTRACT = {
    "id", "input", "reference", "prediction", "raw", "parsed", "parse_ok", "specialty", "organ", "modality",
    "retrieved_ids", "retrieved_scores", "error", "latency_s", "prompt_tokens", "completion_tokens",
}


def test_single_report_with_retrieval(server, make_settings, fake_retriever):
    settings = make_settings(base_url=server.base_url, k=2)
    row = ask_one(settings, "Очаг 5 мм", organ="головной мозг", modality="МРТ", retriever=fake_retriever)
    assert row["parse_ok"] and row["prediction"].startswith("conclusion:")
    assert row["retrieved_ids"] == ["case-0", "case-1"] and row["retrieved_scores"] == [0.9, 0.8]
    sent = server.requests[0]
    # few-shot: system, 2 x (user, assistant), user; the organ reaches the prompt
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert "головной мозг" in sent["messages"][-1]["content"]
    assert sent["response_format"]["type"] == "json_schema"
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0


def test_chain_of_thought_batch_sends_reasoning_first_and_keeps_it(tmp_path, server):
    from medscribe.settings import load_settings

    settings = load_settings(None, {
        "paths": {"ask": str(tmp_path / "ask"), "index": str(tmp_path / "index")},
        "ask": {"base_url": server.base_url, "k": 0, "timeout": 1.0, "max_retries": 0},
        "data": {"task": "qa"}, "prompt": {"variant": "cot"},
    })
    path = write_jsonl(tmp_path / "qa.jsonl", QA_ROWS[:2])
    run_batch(settings, path, run="cot")
    rows = read_results(tmp_path / "ask" / "cot")
    sent = server.requests[0]
    assert "reasoning" in sent["messages"][0]["content"]  # the prompt asks for it too
    assert sent["response_format"]["json_schema"]["schema"]["required"][0] == "reasoning"
    assert len(rows) == 2 and all(r["parse_ok"] and r["parsed"]["reasoning"].startswith("because") for r in rows)


def test_single_qa_without_rag_never_touches_a_retriever(server, make_settings, monkeypatch):
    import medscribe.ask.core as core

    monkeypatch.setattr(core, "open_retriever", lambda s: pytest.fail("index opened with k=0"))
    settings = make_settings(base_url=server.base_url, k=0)
    row = ask_one(settings, "What is anemia?", specialty="hematology", task="qa")
    assert row["task"] == "qa" and row["parse_ok"] and row["retrieved_ids"] == []
    assert [m["role"] for m in server.requests[0]["messages"]] == ["system", "user"]


def test_batch_faults_are_retried_or_recorded(tmp_path, server, make_settings, fake_retriever):
    rows = [
        {"id": "ok", "input": "plain finding"},
        {"id": "500x2", "input": "recovers [[500x2]]"},
        {"id": "429", "input": "rate limited [[429x1]]"},
        {"id": "drop", "input": "dropped [[dropx1]]"},
        {"id": "slow", "input": "times out once [[timeoutx1]]"},
        {"id": "fence", "input": "fenced [[fence]]"},
        {"id": "bad", "input": "broken json [[badjson]]"},
        {"id": "prose", "input": "no json [[prose]]"},
        {"id": "dead", "input": "always 500 [[500]]"},
        {"id": "empty", "input": "no choices [[nochoices]]"},
        {"id": "hung", "input": "times out every time [[timeout]]"},
    ]
    server.slow_s = 1.5  # > the 1 s client timeout
    settings = make_settings(base_url=server.base_url, k=1, concurrency=4)
    summary = run_batch(settings, write_jsonl(tmp_path / "in.jsonl", rows), run="faults",
                        retriever=fake_retriever)
    results = {r["id"]: r for r in read_results(Path(summary["run_dir"]))}
    assert set(results) == {r["id"] for r in rows}
    assert all(RESULT_CONTRACT <= set(r) for r in results.values())
    for rid in ("ok", "500x2", "429", "drop", "slow", "fence", "bad"):
        assert results[rid]["error"] is None and results[rid]["parse_ok"], rid
    assert results["fence"]["raw"].startswith("Sure!")
    assert results["prose"]["parse_ok"] is False and results["prose"]["prediction"] == results["prose"]["raw"]
    assert results["dead"]["error"].startswith("HTTP 500") and results["dead"]["prediction"] is None
    assert "no choices" in results["empty"]["error"]
    assert "timed out" in results["hung"]["error"].lower() and results["hung"]["prediction"] is None
    assert summary["count"] == 11 and summary["failures"] == 3 and summary["answered"] == 8
    assert summary["json_valid_rate"] == pytest.approx(7 / 8)
    assert summary["latency_p50_s"] is not None and summary["latency_p95_s"] >= summary["latency_p50_s"]
    log = [json.loads(x) for x in (Path(summary["run_dir"]) / "log.jsonl").read_text().splitlines()]
    attempts = {entry["id"]: entry["attempts"] for entry in log}
    assert attempts["500x2"] == 3 and attempts["429"] == 2 and attempts["ok"] == 1
    assert attempts["dead"] == 3  # 1 + max_retries
    assert all(entry["messages"][0]["role"] == "system" for entry in log)


def test_rerun_retries_only_failed_rows(tmp_path, server, make_settings):
    rows = [{"id": "a", "input": "fine"}, {"id": "b", "input": "fails [[500x3]]"}]
    settings = make_settings(base_url=server.base_url, k=0, max_retries=1)
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    first = run_batch(settings, path, run="r")
    assert first["failures"] == 1
    before = len(server.requests)
    second = run_batch(settings, path, run="r")
    assert second["failures"] == 0 and second["resumed_rows"] == 1 and second["asked_this_run"] == 1
    again = [r["messages"][-1]["content"] for r in server.requests[before:]]
    assert len(again) == 2 and all("fails" in c for c in again)  # only row b: its 3rd try fails, 4th works
    assert [r["id"] for r in read_results(Path(second["run_dir"]))] == ["a", "b"]


def test_schema_fallback_is_remembered_and_reported(tmp_path, make_settings):
    with FakeServer(reject_schema=True) as server:
        settings = make_settings(base_url=server.base_url, k=0, concurrency=1)
        summary = run_batch(settings, write_jsonl(tmp_path / "in.jsonl", REPORT_ROWS), run="fb")
    assert summary["failures"] == 0 and summary["json_mode"] == "auto"
    assert summary["json_mode_used"] == "prompt" and "not supported" in summary["json_mode_fallback"]
    # one rejected schema request, then prompt-only JSON for every row
    assert sum(1 for r in server.requests if "response_format" in r) == 1
    assert len(server.requests) == len(REPORT_ROWS) + 1


def test_auto_falls_back_on_llamacpp_500_naming_response_format(tmp_path, make_settings):
    """llama.cpp's server rejects a json_schema response_format with a 500: auto must fall back, not retry."""
    with FakeServer(reject_schema="llamacpp") as server:
        settings = make_settings(base_url=server.base_url, k=0, concurrency=1)
        summary = run_batch(settings, write_jsonl(tmp_path / "in.jsonl", QA_ROWS), run="fb500")
    assert summary["failures"] == 0 and summary["json_mode_used"] == "prompt"
    assert sum(1 for r in server.requests if "response_format" in r) == 1
    assert len(server.requests) == len(QA_ROWS) + 1


def test_schema_mode_does_not_fall_back(tmp_path, make_settings):
    with FakeServer(reject_schema=True) as server:
        settings = make_settings(base_url=server.base_url, k=0, json_mode="schema")
        with pytest.raises(RuntimeFailure, match="every row failed.*HTTP 400"):
            run_batch(settings, write_jsonl(tmp_path / "in.jsonl", QA_ROWS), run="s")


def test_prompt_mode_never_sends_response_format(tmp_path, server, make_settings):
    settings = make_settings(base_url=server.base_url, k=0, json_mode="prompt")
    run_batch(settings, write_jsonl(tmp_path / "in.jsonl", QA_ROWS), run="p")
    assert server.requests and all("response_format" not in r for r in server.requests)


def test_server_down_fails_fast_with_one_line(tmp_path, make_settings):
    with FakeServer() as server:
        url = server.base_url  # the port is free again once stopped
    settings = make_settings(base_url=url, k=0, max_retries=3, concurrency=2)
    rows = [{"id": str(i), "input": f"q{i}"} for i in range(12)]
    started = time.monotonic()
    with pytest.raises(RuntimeFailure) as exc:
        run_batch(settings, write_jsonl(tmp_path / "in.jsonl", rows), run="down")
    assert "every row failed (12 of 12)" in str(exc.value) and "\n" not in str(exc.value)
    assert time.monotonic() - started < 10  # circuit breaker: not 12 x full backoff
    summary = json.loads((tmp_path / "ask" / "down" / "summary.json").read_text())
    assert summary["failures"] == 12


def test_server_dying_mid_batch_keeps_finished_rows(tmp_path, make_settings):
    with FakeServer(drop_after=5) as server:
        settings = make_settings(base_url=server.base_url, k=0, concurrency=1, max_retries=1)
        rows = [{"id": str(i), "input": f"q{i}"} for i in range(10)]
        summary = run_batch(settings, write_jsonl(tmp_path / "in.jsonl", rows), run="dying")
        port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
    assert summary["answered"] == 5 and summary["failures"] == 5
    # the server is back at the same address (another address is another server: a resume there is refused)
    with FakeServer(port=port) as server:
        settings = make_settings(base_url=server.base_url, k=0)
        summary = run_batch(settings, tmp_path / "in.jsonl", run="dying")
        assert len(server.requests) == 5
    assert summary["answered"] == 10 and summary["failures"] == 0


def test_concurrency_overlaps_requests(tmp_path, make_settings):
    # The server holds each request until 8 are in flight at once (at most 20 s), so the count cannot depend on
    # how busy the machine is: a client with 8 in flight reaches 8, one that sends fewer never does.
    with FakeServer(hold_until=8) as server:
        settings = make_settings(base_url=server.base_url, k=0, concurrency=8, timeout=60.0)
        rows = [{"id": str(i), "input": f"q{i}"} for i in range(16)]
        summary = run_batch(settings, write_jsonl(tmp_path / "in.jsonl", rows), run="c")
    assert summary["answered"] == 16
    assert server.max_in_flight == 8  # 8 at once, never more than ask.concurrency


def test_adapter_with_openai_backend_is_a_usage_error(tmp_path, server, make_settings):
    settings = make_settings(base_url=server.base_url, k=0, adapter=str(tmp_path))
    with pytest.raises(UsageError, match="--adapter applies to the local backend"):
        ask_one(settings, "x")
