"""Bad input and faults: each answers with a JSON error body and the right status, and the server goes on."""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest
from conftest import start_server

ASK = [{"role": "user", "content": "What causes asthma attacks?"}]


def still_serving(server) -> None:
    reply = server.client().chat.completions.create(model="tiny-llama0", messages=ASK, max_tokens=3,
                                                    user=str(time.monotonic()))
    assert reply.choices[0].message.content is not None
    assert server.engine.depth == 0


def post(server, content: bytes | str, **headers) -> httpx.Response:
    return httpx.post(server.url + "/v1/chat/completions", content=content,
                      headers={"content-type": "application/json", **headers}, timeout=30)


def test_malformed_json_400(server):
    response = post(server, b'{"model": "tiny-llama0", "messages": [')
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_json" and error["request_id"].startswith("chatcmpl-")
    assert post(server, b"[1, 2]").status_code == 400
    still_serving(server)


def test_unknown_model_404(server):
    with pytest.raises(openai.NotFoundError) as info:
        server.client().chat.completions.create(model="gpt-nonexistent", messages=ASK)
    assert info.value.status_code == 404 and "not served" in info.value.body["message"]
    still_serving(server)


def test_schema_violations_422(server):
    missing = post(server, json.dumps({"model": "tiny-llama0"}))
    assert missing.status_code == 422 and missing.json()["error"]["message"].startswith("messages:")
    wrong = post(server, json.dumps({"model": "tiny-llama0", "messages": ASK, "max_tokens": -5}))
    assert wrong.status_code == 422 and "max_tokens" in wrong.json()["error"]["message"]
    with pytest.raises(openai.UnprocessableEntityError):
        server.client().chat.completions.create(
            model="tiny-llama0", messages=ASK,
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}})
    # A random model never writes the asked JSON: validated, retried serve.schema_retries times, then 422.
    with pytest.raises(openai.UnprocessableEntityError) as info:
        server.client().chat.completions.create(
            model="tiny-llama0", messages=ASK, max_tokens=6,
            response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": {
                "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}}})
    assert info.value.body["code"] == "response_format_unsatisfied" and "after 3 attempt" in info.value.body["message"]
    still_serving(server)


def test_oversize_413(server):
    big = json.dumps({"model": "tiny-llama0", "messages": [{"role": "user", "content": "x" * 1_100_000}]})
    response = post(server, big)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
    still_serving(server)


def test_max_tokens_is_capped(server):
    settings = server.app.state.settings
    settings.serve.max_tokens_cap = 5
    try:
        raw = server.client().chat.completions.with_raw_response.create(model="tiny-llama0", messages=ASK,
                                                                         max_tokens=500, user="cap")
    finally:
        settings.serve.max_tokens_cap = 1024
    assert raw.headers["x-medscribe-max-tokens-capped"] == "5"
    assert raw.parse().usage.completion_tokens <= 5


def test_disconnect_mid_stream_frees_the_slot(server, monkeypatch):
    metrics = server.app.state.metrics
    cancelled = metrics.cancelled
    released = []
    release = server.engine._release
    monkeypatch.setattr(server.engine, "_release", lambda job: (released.append(job), release(job)))
    body = {"model": "tiny-llama0", "messages": ASK, "max_tokens": 1000, "stream": True, "user": "leave"}
    started = time.monotonic()
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=30) as response:
        lines = response.iter_lines()
        got = [next(lines) for _ in range(6)]  # a few chunks arrive, then the client goes away
    assert any(line.startswith("data: ") for line in got)
    deadline = time.monotonic() + 10
    while (server.engine.depth or metrics.cancelled == cancelled) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.engine.depth == 0 and metrics.cancelled == cancelled + 1
    # The generation itself stopped (at its next token), not after its 1000 tokens.
    assert [j.finish_reason for j in released] == ["cancelled"] and released[0].completion_tokens < 200
    assert time.monotonic() - started < 5
    still_serving(server)


def test_generation_error_500_with_request_id_no_traceback(server, monkeypatch, caplog):
    model = server.engine.backend.model

    def boom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory while reading /secret/path Traceback")

    monkeypatch.setattr(model, "generate", boom)
    response = post(server, json.dumps({"model": "tiny-llama0", "messages": ASK, "max_tokens": 4}))
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["request_id"] in error["message"] and error["code"] == "internal_error"
    assert "Traceback" not in response.text and "secret" not in response.text
    # Streaming: the error arrives as an error event, the client raises.
    with pytest.raises(openai.APIError):
        list(server.client().chat.completions.create(model="tiny-llama0", messages=ASK, max_tokens=4, stream=True,
                                                     user="boom"))
    monkeypatch.undo()
    still_serving(server)


def test_full_queue_503_with_retry_after(server):
    engine = server.engine
    engine.max_queue = 2
    results: list[str] = []

    def one(i: int) -> None:
        reply = server.client().chat.completions.create(model="tiny-llama0", messages=ASK, max_tokens=3,
                                                        user=f"q{i}")
        results.append(reply.choices[0].finish_reason)

    try:
        with engine.run_lock:  # the worker cannot start a batch: admitted requests wait
            threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 10
            while engine.depth < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            response = post(server, json.dumps({"model": "tiny-llama0", "messages": ASK, "user": "third"}))
            assert response.status_code == 503
            assert response.headers["retry-after"] == "1" and response.json()["error"]["code"] == "queue_full"
        for t in threads:
            t.join(timeout=30)
    finally:
        engine.max_queue = 64
    assert len(results) == 2  # the admitted ones were answered
    still_serving(server)


def test_api_key_required_and_checked(serve_root, monkeypatch):
    monkeypatch.setenv("MEDSCRIBE_SERVE__API_KEY", "sk-serve-test-key-123456")
    with start_server(serve_root["flags"]) as srv:
        assert httpx.get(srv.url + "/health").status_code == 200
        with pytest.raises(openai.AuthenticationError):
            srv.client(api_key="wrong").chat.completions.create(model="tiny-llama0", messages=ASK, max_tokens=2)
        assert httpx.get(srv.url + "/v1/models").status_code == 401
        assert httpx.get(srv.url + "/metrics").status_code == 401
        reply = srv.client(api_key="sk-serve-test-key-123456").chat.completions.create(
            model="tiny-llama0", messages=ASK, max_tokens=2)
        assert reply.choices


def test_non_loopback_bind_needs_a_key():
    from medscribe.errors import UsageError
    from medscribe.serve.guards import check_bind

    with pytest.raises(UsageError, match="MEDSCRIBE_SERVE__API_KEY"):
        check_bind("0.0.0.0", None)
    check_bind("0.0.0.0", "key")
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("localhost", None)

