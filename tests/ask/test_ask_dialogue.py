"""Dialogue rows (multi-turn samples from chat exports) in `ask --input test.jsonl` and `eval`: asked with the
conversation before the scored turn (what sft trained), no retrieval, free-text answers scored as text."""

from __future__ import annotations

import json

import pytest
from ask_helpers import read_results, write_jsonl

from medscribe.ask import run_batch
from medscribe.errors import UsageError
from medscribe.prompts import build_dialogue_messages

TURNS = [
    {"role": "user", "content": "Болит голова третий день."},
    {"role": "assistant", "content": "Есть ли температура?"},
    {"role": "user", "content": "Нет, температуры нет."},
    {"role": "assistant", "content": "Измерьте давление и примите парацетамол."},
]


def dialogue_row(i: int, turns=TURNS, **extra) -> dict:
    # As data/chat_samples.py writes test.jsonl (plus the chat-format column, which ask ignores).
    last_two = turns[-2:] if isinstance(turns, list) and len(turns) >= 2 else [{"content": "x"}, {"content": "y"}]
    return {"id": f"d-{i}", "task": "dialogue", "input": last_two[0]["content"], "target": last_two[1]["content"],
            "turns": turns, "loss": "last", "system": "Ты врач-терапевт.", "split": "test", "dialogue": f"chat#{i}",
            "messages": [], **extra}


def test_dialogue_rows_are_asked_with_their_conversation_and_scored_as_text(tmp_path, server, make_settings,
                                                                            fake_retriever):
    settings = make_settings(base_url=server.base_url, k=2)
    path = write_jsonl(tmp_path / "test.jsonl", [dialogue_row(1), dialogue_row(2, TURNS[:2])])
    run_batch(settings, path, run="dialogue", retriever=fake_retriever)
    rows = {r["id"]: r for r in read_results(tmp_path / "ask" / "dialogue")}
    sent = {json.dumps(r["messages"], ensure_ascii=False): r for r in server.requests}
    # The prompt is sft's (build_dialogue_example): the system text, then every turn before the scored answer.
    expected = build_dialogue_messages(TURNS[:-1], settings.prompt, "Ты врач-терапевт.")
    request = sent[json.dumps(expected, ensure_ascii=False)]
    assert "response_format" not in request  # a conversation turn is free text, not the report/qa JSON
    row = rows["d-1"]
    assert row["task"] == "dialogue" and row["reference"] == TURNS[-1]["content"]
    assert row["parse_ok"] and row["prediction"] == row["raw"].strip()
    assert row["retrieved_ids"] == []  # the context is the conversation, as in training
    assert all(not call["queries"] for call in fake_retriever.calls)
    assert rows["d-2"]["reference"] == "Есть ли температура?"

    from medscribe.evaluate import run_eval

    result = run_eval(settings, [tmp_path / "ask" / "dialogue"], out=tmp_path / "eval", name="dialogue")
    report = next(iter(result.report["runs"].values()))
    assert report["rows"] == 2


@pytest.mark.parametrize("turns, message", [
    ([{"role": "user", "content": "a"}], "ending with a user turn"),
    ([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}], "ending with a user turn"),
    ([{"role": "user", "content": " "}, {"role": "assistant", "content": "b"}], "no content"),
    ("not a list", "ending with a user turn"),
])
def test_broken_dialogue_rows_name_file_line_and_field(tmp_path, make_settings, server, turns, message):
    settings = make_settings(base_url=server.base_url, k=0)
    path = write_jsonl(tmp_path / "test.jsonl", [dialogue_row(1), dialogue_row(2, turns)])
    with pytest.raises(UsageError, match=rf"test.jsonl:line 2: field 'turns': .*{message}"):
        run_batch(settings, path, run="bad")
    assert not server.requests  # refused before anything was asked
