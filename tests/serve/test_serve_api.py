"""medscribe serve driven by the real `openai` client: models, plain, streaming, medscribe-rag, cache, batching,
metrics, and PHI-scrubbed logging."""

from __future__ import annotations

import json
import logging
import threading
import time

import httpx

ASK = [{"role": "user", "content": "What are the symptoms of anemia?"}]


def test_models_and_health(server):
    client = server.client()
    names = [m.id for m in client.models.list().data]
    assert names == ["tiny-llama0", "medscribe-tuned", "medscribe-rag"]
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["models"] == names


def test_plain_completion_and_the_adapter_is_applied(server):
    client = server.client()
    tuned = client.chat.completions.create(model="medscribe-tuned", messages=ASK, max_tokens=8, user="plain")
    base = client.chat.completions.create(model="tiny-llama0", messages=ASK, max_tokens=8, user="plain")
    assert tuned.object == "chat.completion" and tuned.choices[0].message.role == "assistant"
    assert tuned.choices[0].finish_reason in ("stop", "length")
    assert tuned.usage.completion_tokens <= 8 and tuned.usage.prompt_tokens > 0
    assert tuned.usage.total_tokens == tuned.usage.prompt_tokens + tuned.usage.completion_tokens
    # The LoRA weights are non-zero: the same greedy prompt gives another answer with the adapter off.
    assert tuned.choices[0].message.content != base.choices[0].message.content


def test_stream_yields_the_same_answer_in_openai_chunks(server):
    client = server.client()
    plain = client.chat.completions.create(model="medscribe-tuned", messages=ASK, max_tokens=12, user="s1")
    stream = client.chat.completions.create(model="medscribe-tuned", messages=ASK, max_tokens=12, user="s2",
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == [plain.choices[0].finish_reason]
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 2  # token by token
    assert text.strip() == plain.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_medscribe_rag_retrieves_and_answers_strict_json(server):
    client = server.client()
    reply = client.chat.completions.create(model="medscribe-rag", messages=ASK,
                                           extra_body={"medscribe": {"specialty": "hematology"}})
    answer = json.loads(reply.choices[0].message.content)  # always JSON, even from a random tiny model
    assert set(answer) >= {"answer", "citations"} and isinstance(answer["answer"], str)
    extra = reply.model_extra["medscribe"]
    assert [h["id"] for h in extra["retrieved"]] == ["q-anemia"]  # the real index, k = 1
    assert extra["task"] == "qa"
    # The tiny model writes no JSON: the answer was asked again serve.schema_retries (2) times, and says so.
    assert extra["parse_ok"] is False and extra["attempts"] == 3
    assert set(answer["citations"]) <= {"q-anemia"}
    streamed = list(client.chat.completions.create(model="medscribe-rag", messages=ASK, stream=True,
                                                   extra_body={"medscribe": {"specialty": "hematology"}}))
    assert json.loads("".join(c.choices[0].delta.content or "" for c in streamed if c.choices)) == answer


def test_concurrent_rag_requests_retrieve_in_one_batch(server):
    client = server.client()
    batcher = server.app.state.rag.batcher
    before = len(batcher.batch_sizes)
    questions = [f"What are the symptoms of anemia, case {i}?" for i in range(6)]
    threads = [threading.Thread(target=lambda q=q: client.chat.completions.create(
        model="medscribe-rag", max_tokens=2, messages=[{"role": "user", "content": q}])) for q in questions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sizes = batcher.batch_sizes[before:]
    assert sum(sizes) == 6 and max(sizes) > 1, sizes  # (retries of an unparsable answer reuse the retrieval)


def test_medscribe_rag_prompt_is_the_shared_builder(server):
    from medscribe.ask import core
    from medscribe.index import Retriever
    from medscribe.prompts import build_messages
    from medscribe.serve.rag import RagFrontEnd

    settings = server.app.state.settings  # the running server's
    record = {"id": None, "input": "What are the symptoms of anemia?", "task": "qa", "organ": None,
              "modality": None, "specialty": None}
    hits = core.retrieve(Retriever.open(settings), [record], 1, [])[0]
    expected = build_messages(record, "qa", settings.prompt, context=hits)
    plan = RagFrontEnd(settings).prepare("What are the symptoms of anemia?", None)
    assert plan["messages"] == expected and [h.id for h in plan["hits"]] == ["q-anemia"]


def test_cache_hit_is_exact_and_fast(server):
    client = server.client()
    ask = [{"role": "user", "content": "How is type 2 diabetes treated?"}]
    first = client.chat.completions.with_raw_response.create(model="medscribe-tuned", messages=ask, max_tokens=10)
    started = time.monotonic()
    second = client.chat.completions.with_raw_response.create(model="medscribe-tuned", messages=ask, max_tokens=10)
    elapsed = time.monotonic() - started
    assert first.headers.get("x-medscribe-cache") is None and second.headers["x-medscribe-cache"] == "hit"
    assert second.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert elapsed < 1.0
    # Another model (other fingerprint) or sampling: no hit.
    other = client.chat.completions.with_raw_response.create(model="tiny-llama0", messages=ask, max_tokens=10)
    sampled = client.chat.completions.with_raw_response.create(model="medscribe-tuned", messages=ask, max_tokens=10,
                                                               temperature=0.8)
    again = client.chat.completions.with_raw_response.create(model="medscribe-tuned", messages=ask, max_tokens=10,
                                                             temperature=0.8)
    assert {r.headers.get("x-medscribe-cache") for r in (other, sampled, again)} == {None}
    assert _metric(server, "medscribe_cache_hits_total") >= 1


def _metric(server, name: str) -> float:
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_concurrent_requests_are_batched_and_answers_match_sequential(server):
    client = server.client()
    questions = [f"Question number {i}: what causes asthma?" for i in range(8)]
    sequential = [client.chat.completions.create(model="medscribe-tuned", max_tokens=6, user="seq",
                                                 messages=[{"role": "user", "content": q}]).choices[0].message.content
                  for q in questions]
    before = len(server.engine.batch_sizes)
    results: dict[int, str] = {}

    def one(i: int) -> None:
        reply = client.chat.completions.create(model="medscribe-tuned", max_tokens=6, user="conc",
                                               messages=[{"role": "user", "content": questions[i]}])
        results[i] = reply.choices[0].message.content

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sizes = server.engine.batch_sizes[before:]
    assert max(sizes) > 1 and sum(sizes) == 8, sizes
    assert [results[i] for i in range(8)] == sequential  # batching changes nothing in a greedy answer


def test_metrics_text(server):
    client = server.client()
    client.chat.completions.create(model="tiny-llama0", messages=ASK, max_tokens=4, user="metrics")
    text = httpx.get(server.url + "/metrics").text
    for name in ("medscribe_requests_total{model=\"tiny-llama0\",status=\"200\"}",
                 "medscribe_request_latency_seconds_bucket{model=\"tiny-llama0\",le=\"+Inf\"}",
                 "medscribe_prompt_tokens_total", "medscribe_completion_tokens_total", "medscribe_cache_hits_total",
                 "medscribe_queue_depth 0", "medscribe_batch_size_count", "# TYPE medscribe_request_latency_seconds"):
        assert name in text, name


def test_log_lines_are_phi_scrubbed(server, caplog):
    settings = server.app.state.settings
    settings.serve.log_text = True
    try:
        with caplog.at_level(logging.INFO, logger="medscribe.serve"):
            server.client().chat.completions.create(
                model="tiny-llama0", max_tokens=4,
                messages=[{"role": "user", "content": "Пациент Иванов Иван Иванович, тел. 8 (916) 123-45-67"}])
    finally:
        settings.serve.log_text = False
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "medscribe.serve")
    assert "model=tiny-llama0 status=200" in text
    assert "[PHONE]" in text and "[NAME]" in text
    assert "Иванов" not in text and "123-45-67" not in text


def test_stop_strings_end_the_answer_before_them_plain_and_streamed(server):
    client = server.client()
    plain = client.chat.completions.create(model="medscribe-tuned", messages=ASK, max_tokens=24, user="stop0")
    text = plain.choices[0].message.content
    assert len(text) >= 6, text  # the tiny random model says something to cut
    stop = text[len(text) // 2: len(text) // 2 + 2]
    expected = text[: text.find(stop)].strip()
    cut = client.chat.completions.create(model="medscribe-tuned", messages=ASK, max_tokens=24, user="stop1",
                                         stop=[stop, "never-generated-xyz"])
    assert cut.choices[0].message.content == expected
    assert cut.choices[0].finish_reason == "stop"
    stream = client.chat.completions.create(model="medscribe-tuned", messages=ASK, max_tokens=24, user="stop2",
                                            stop=stop, stream=True)
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert stop not in streamed and streamed.strip() == expected  # nothing of the stop string was sent
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]


def test_stop_is_refused_where_it_cannot_be_honoured(server):
    rag = httpx.post(server.url + "/v1/chat/completions", json={"model": "medscribe-rag", "messages": ASK,
                                                                 "stop": ["."]})
    assert rag.status_code == 422 and "JSON object" in rag.json()["error"]["message"]
    many = httpx.post(server.url + "/v1/chat/completions", json={"model": "medscribe-tuned", "messages": ASK,
                                                                  "stop": ["a", "b", "c", "d", "e"]})
    assert many.status_code == 422 and "stop" in many.json()["error"]["message"]
