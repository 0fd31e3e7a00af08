"""Preference pairs from a file (sft/pairs.py): plain and conversational rows, column mapping, rejects with a
reason for every bad row, one-line errors when nothing is usable. No model is loaded."""

from __future__ import annotations

import json

import pytest
from sft_helpers import write_jsonl

from medscribe.errors import UsageError
from medscribe.prompts import build_messages, render_target
from medscribe.settings import load_settings
from medscribe.sft.pairs import pairs_fingerprint, pairs_from_file


def _settings(**sft):
    return load_settings(flags={"data": {"task": "report"}, "sft": sft})


CONVERSATION = [{"role": "system", "content": "Ты врач."}, {"role": "user", "content": "Очаг 5 мм?"}]


def test_plain_rows_are_rendered_by_the_shared_prompt_builder(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [
        {"id": "a", "prompt": "Очаг 5 мм в печени", "chosen": "Киста печени", "rejected": "Норма", "organ": "печень",
         "modality": "КТ"},
    ])
    settings = _settings()
    pairs, report = pairs_from_file(settings, path)
    assert [p.id for p in pairs] == ["a"] and report.pairs == 1 and not report.rejects
    record = {"input": "Очаг 5 мм в печени", "organ": "печень", "modality": "КТ"}
    assert pairs[0].prompt == build_messages(record, "report", settings.prompt)
    assert pairs[0].chosen == render_target({"target": "Киста печени"}, "report", settings.prompt)
    assert json.loads(pairs[0].rejected) == {"result": "Норма"}
    assert report.summary()["sha256"] and report.summary()["kind"] == "file"


def test_conversational_rows_are_used_as_they_are_and_columns_can_be_mapped(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [
        {"q": CONVERSATION, "good": [{"role": "assistant", "content": "Киста"}], "bad": "Норма", "key": "x1"},
    ])
    settings = _settings(pairs_columns={"prompt": "q", "chosen": "good", "rejected": "bad", "id": "key"})
    pairs, _ = pairs_from_file(settings, path)
    assert pairs[0].id == "x1" and pairs[0].prompt == CONVERSATION
    assert (pairs[0].chosen, pairs[0].rejected) == ("Киста", "Норма")


def test_csv_with_json_message_cells(tmp_path):
    path = tmp_path / "pairs.csv"
    cell = json.dumps(CONVERSATION, ensure_ascii=False).replace('"', '""')
    path.write_text(f'prompt,chosen,rejected\n"{cell}",Киста,Норма\n', encoding="utf-8")
    pairs, _ = pairs_from_file(_settings(), path)
    assert pairs[0].prompt == CONVERSATION and pairs[0].id == "line-2"


@pytest.mark.parametrize("row, reason", [
    ({"prompt": "Очаг", "chosen": "", "rejected": "Норма"}, "empty chosen"),
    ({"prompt": "Очаг", "chosen": "Киста", "rejected": "  "}, "empty rejected"),
    ({"prompt": "Очаг", "chosen": "Киста", "rejected": "Киста"}, "chosen equals rejected"),
    ({"prompt": "", "chosen": "Киста", "rejected": "Норма"}, "missing prompt"),
    ({"chosen": "Киста", "rejected": "Норма"}, "missing prompt"),
    ({"prompt": [{"role": "user"}], "chosen": "Киста", "rejected": "Норма"},
     "prompt is not a list of {role, content} messages"),
    ({"prompt": CONVERSATION + [{"role": "assistant", "content": "x"}], "chosen": "a", "rejected": "b"},
     "prompt messages must end with a user turn"),
    ({"prompt": CONVERSATION, "chosen": [{"role": "user", "content": "a"}], "rejected": "b"},
     "chosen/rejected is not one assistant message"),
])
def test_bad_rows_are_rejected_with_their_reason_and_line(tmp_path, row, reason):
    good = {"id": "ok", "prompt": "Очаг 3 мм", "chosen": "Киста", "rejected": "Норма"}
    path = write_jsonl(tmp_path / "pairs.jsonl", [good, {"id": "bad", **row}])
    pairs, report = pairs_from_file(_settings(), path)
    assert [p.id for p in pairs] == ["ok"]
    assert report.rejects == [{"line": 2, "id": "bad", "reason": reason}]
    assert report.summary()["reject_reasons"] == {reason: 1}


def test_chosen_equals_rejected_after_rendering_conversational(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [
        {"prompt": CONVERSATION, "chosen": [{"role": "assistant", "content": "Киста"}], "rejected": "Киста"}])
    with pytest.raises(UsageError, match=r"pairs.jsonl: no usable pairs \(1 of 1 rows rejected; first: line 1: "
                                         r"chosen equals rejected\)"):
        pairs_from_file(_settings(), path)


def test_duplicate_ids_are_rejected(tmp_path):
    row = {"id": "a", "prompt": "Очаг", "chosen": "Киста", "rejected": "Норма"}
    path = write_jsonl(tmp_path / "pairs.jsonl", [row, {**row, "chosen": "Киста 2"}])
    pairs, report = pairs_from_file(_settings(), path)
    assert len(pairs) == 1 and report.rejects[0]["reason"] == "duplicate id"


def test_file_errors_are_one_line_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="sft.pairs_file: .*missing.jsonl not found"):
        pairs_from_file(_settings(), tmp_path / "missing.jsonl")
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"question": "Очаг", "chosen": "a", "rejected": "b"}])
    with pytest.raises(UsageError, match="missing column 'prompt'.*sft.pairs_columns"):
        pairs_from_file(_settings(), path)
    with pytest.raises(UsageError, match="sft.pairs_columns: unknown field"):
        pairs_from_file(_settings(pairs_columns={"answer": "x"}), path)
    (tmp_path / "pairs.txt").write_text("x", encoding="utf-8")
    with pytest.raises(UsageError, match="unsupported file type .txt"):
        pairs_from_file(_settings(), tmp_path / "pairs.txt")


def test_fingerprint_follows_the_pairs(tmp_path):
    a = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "Очаг", "chosen": "Киста", "rejected": "Норма"}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"prompt": "Очаг", "chosen": "Киста", "rejected": "Норма?"}])
    fa, fb = (pairs_fingerprint(pairs_from_file(_settings(), p)[0]) for p in (a, b))
    assert fa != fb and fa == pairs_fingerprint(pairs_from_file(_settings(), a)[0])
