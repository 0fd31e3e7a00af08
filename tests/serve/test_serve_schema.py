"""response_format json_schema (validated and retried) and medscribe-rag's parsed answer, with a scripted model:
the engine's generation step returns set texts (a random tiny model never writes valid JSON), everything else
(HTTP, the openai client, validation, retries, the RAG path with the real index) is the real thing."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from conftest import RunningServer, free_port

from medscribe.serve.batching import Engine

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}, "score": {"type": "integer"}},
          "required": ["answer", "score"], "additionalProperties": False}
FORMAT = {"type": "json_schema", "json_schema": {"name": "scored", "schema": SCHEMA}}


class ScriptedEngine(Engine):
    """Engine whose model writes the next scripted text; records the messages of every job."""

    def __init__(self, texts: list[str]):
        super().__init__(SimpleNamespace(tokenizer=None, adapter=None), max_batch=4, batch_wait_ms=1)
        self.texts, self.seen = list(texts), []

    def _run(self, jobs):
        for job in jobs:
            self.seen.append((job.messages, job.temperature))
            job.text = self.texts.pop(0)
            job.prompt_tokens, job.completion_tokens, job.finish_reason = 10, 5, "stop"
            job._emit("delta", job.text)
            self._release(job)
            job._emit("done")


@pytest.fixture(scope="module")
def settings(serve_root):
    from medscribe.settings import load_settings

    return load_settings(None, serve_root["flags"])


def scripted_server(settings, texts):
    from medscribe.serve.app import ServedModel, create_app
    from medscribe.serve.rag import RagFrontEnd

    engine = ScriptedEngine(texts)
    models = [ServedModel("base", "base", False, "fp-base"), ServedModel("medscribe-rag", "rag", False, "fp-rag")]
    return RunningServer(create_app(settings, engine, models, rag=RagFrontEnd(settings)), free_port())


def test_json_schema_answer_is_validated_and_retried(settings):
    texts = ['{"answer": "x"}', 'Sure! ```json\n{"answer": "fatigue", "score": 3}\n```']
    with scripted_server(settings, texts) as srv:
        reply = srv.client().chat.completions.create(model="base", messages=[{"role": "user", "content": "q"}],
                                                     response_format=FORMAT)
        assert json.loads(reply.choices[0].message.content) == {"answer": "fatigue", "score": 3}
        (first, t1), (retry, t2) = srv.app.state.engine.seen
        assert t1 == 0.0 and t2 > 0  # the retry samples (a greedy retry would repeat the answer)
        assert retry[-2] == {"role": "assistant", "content": '{"answer": "x"}'}
        assert "score" in retry[-1]["content"]  # the validation error is shown to the model


def test_json_schema_stream_is_validated_before_it_is_sent(settings):
    with scripted_server(settings, ["no json", '{"answer": "a", "score": 1}']) as srv:
        chunks = list(srv.client().chat.completions.create(
            model="base", messages=[{"role": "user", "content": "q"}], response_format=FORMAT, stream=True))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert json.loads(text) == {"answer": "a", "score": 1}


def test_medscribe_rag_parsed_answer_keeps_only_shown_citations(settings):
    answer = '{"answer": "Fatigue and pallor.", "citations": ["q-anemia", "invented-id"]}'
    with scripted_server(settings, [answer]) as srv:
        reply = srv.client().chat.completions.create(
            model="medscribe-rag", messages=[{"role": "user", "content": "What are the symptoms of anemia?"}])
        content = json.loads(reply.choices[0].message.content)
        assert content == {"answer": "Fatigue and pallor.", "citations": ["q-anemia"]}
        extra = reply.model_extra["medscribe"]
        assert extra["parse_ok"] is True and extra["attempts"] == 1
        messages, _ = srv.app.state.engine.seen[0]
        # the prompt carries the retrieved case as a few-shot turn and the question last
        assert messages[-1]["content"].endswith("What are the symptoms of anemia?")
        assert any("Fatigue, pallor and shortness of breath." in m["content"] for m in messages[1:-1])


def test_medscribe_rag_copy_mode_answers_without_the_model(serve_root):
    from medscribe.settings import load_settings

    settings = load_settings(None, {**serve_root["flags"], "ask": {**serve_root["flags"]["ask"], "mode": "copy"}})
    with scripted_server(settings, []) as srv:  # no scripted text: the model must not be asked
        reply = srv.client().chat.completions.create(
            model="medscribe-rag", messages=[{"role": "user", "content": "What are the symptoms of anemia?"}])
        assert json.loads(reply.choices[0].message.content) == {
            "answer": "Fatigue, pallor and shortness of breath.", "citations": ["q-anemia"]}
        assert reply.model_extra["medscribe"]["copied_from"] == "q-anemia" and srv.app.state.engine.seen == []
