"""Chat exports -> multi-turn samples (`data.chats.enabled`): Telegram JSON, WhatsApp TXT (Android and iOS date
formats), generic JSONL; persona, dialogue gaps, merged messages, context budget, PHI, chat formats, splits by
dialogue and bad input (data/chats.py, data/chat_samples.py)."""

from __future__ import annotations

import json

import pytest
from data_helpers import all_output_text, invoke, read_jsonl, settings_for, write_jsonl

from medscribe.data import run_data
from medscribe.errors import UsageError

DOCTOR = "Dr. Petrova"


def telegram(path, messages, full_export=False):
    chat = {"name": "Консультации", "type": "personal_chat", "id": 7, "messages": messages}
    obj = {"about": "export", "chats": {"about": "", "list": [chat]}} if full_export else chat
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def tg(n, when, author, text, **extra):
    return {"id": n, "type": "message", "date": when, "from": author, "from_id": f"user{hash(author) % 1000}",
            "text": text, **extra}


TG_MESSAGES = [
    tg(1, "2024-03-01T10:00:00", "Иван Сидоров", "Здравствуйте, доктор."),
    tg(2, "2024-03-01T10:00:30", "Иван Сидоров", "Третий день болит голова, мой телефон +7 912 345-67-89."),
    tg(3, "2024-03-01T10:05:00", DOCTOR, ["Здравствуйте, Иван! ", {"type": "bold", "text": "Есть ли температура?"}]),
    {"id": 4, "type": "service", "date": "2024-03-01T10:06:00", "actor": "Иван Сидоров", "action": "pin_message"},
    tg(5, "2024-03-01T10:06:30", "Иван Сидоров", "", photo="photos/1.jpg"),
    tg(6, "2024-03-01T10:07:00", "Иван Сидоров", "Нет, температуры нет. Сидоров просит совета."),
    tg(7, "2024-03-01T10:09:00", DOCTOR, "Примите парацетамол и измерьте давление."),
    tg(8, "2024-03-02T18:00:00", "Иван Сидоров", "Давление 150/95."),  # next day: a new dialogue
    tg(9, "2024-03-02T18:10:00", DOCTOR, "Нужна очная консультация терапевта."),
]

WA_ANDROID_US = """12/31/21, 9:41 PM - Messages and calls are end-to-end encrypted.
12/31/21, 9:41 PM - John Smith: Hi doctor, my son has a fever of 39.
12/31/21, 9:42 PM - John Smith: He is 4 years old.
12/31/21, 9:45 PM - Dr. Petrova: Give ibuprofen by weight
and watch for a rash.
12/31/21, 9:50 PM - John Smith: <Media omitted>
12/31/21, 9:51 PM - John Smith: Thank you!
12/31/21, 9:52 PM - Dr. Petrova: Call me if it does not go down in 24 hours.
"""
WA_IOS_RU = """[14.02.22, 08:01:10] Мария Кузнецова: Доброе утро! Можно ли делать прививку при насморке?
[14.02.22, 08:20:45] Dr. Petrova: При лёгком насморке без температуры можно.
[14.02.22, 08:21:00] Мария Кузнецова: А если температура 37,5?
[14.02.22, 08:21:30] Мария Кузнецова: ‎<attached: 00000012-PHOTO-2022-02-14-08-21-30.jpg>
[14.02.22, 08:30:00] Dr. Petrova: Тогда лучше отложить на неделю.
"""
JSONL = [
    {"dialogue_id": "a", "role": "user", "text": "What is a normal resting heart rate?", "time": "2024-01-01T10:00:00"},
    {"dialogue_id": "a", "role": "assistant", "text": "60 to 100 beats per minute for adults."},
    {"dialogue_id": "b", "author": "Patient", "text": "Can I take aspirin with ibuprofen?", "time": 1704103200000},
    {"dialogue_id": "b", "author": DOCTOR, "text": "Better not without asking your doctor."},
]


def chat_settings(tmp_path, inputs, fmt="messages", **chats):
    return settings_for(tmp_path, inputs=[str(p) for p in inputs], chat_format=fmt, eval_fraction=0.0,
                        chats={"enabled": True, "assistant": [DOCTOR], "test_fraction": 0.0, **chats})


def _train(tmp_path):
    return read_jsonl(tmp_path / "out" / "train.jsonl")


def test_telegram_export_persona_merging_gaps_and_phi(tmp_path):
    path = telegram(tmp_path / "tg" / "result.json", TG_MESSAGES)
    result = run_data(chat_settings(tmp_path, [path]))
    rows = _train(tmp_path)
    assert [len(r["turns"]) for r in rows] == [2, 4, 2]  # one sample per assistant turn, context before it
    first, second, third = rows
    assert first["turns"][0]["role"] == "user" and "\n" in first["turns"][0]["content"]  # two messages merged
    assert first["target"] == "Здравствуйте, [NAME]! Есть ли температура?"  # entities joined, name replaced
    assert "[PHONE]" in first["input"]
    assert second["turns"][:2] == first["turns"] and second["target"] == "Примите парацетамол и измерьте давление."
    assert "Сидоров" not in second["input"]  # the export's own author surname, replaced in the text
    assert third["dialogue"] != first["dialogue"] and third["input"] == "Давление 150/95."  # > 6 h pause
    assert {r["task"] for r in rows} == {"dialogue"} and {r["loss"] for r in rows} == {"last"}
    messages = second["messages"]
    assert messages[0]["role"] == "system" and [m["role"] for m in messages[1:]] == ["user", "assistant"] * 2
    chats = result.manifest["chats"]
    assert chats["dialogues"] == 2 and chats["samples"] == 3 and chats["merged_messages"] == 1
    assert "approximate" in chats["token_count"]
    [entry] = result.manifest["inputs"]
    assert entry["format"] == "telegram" and entry["skipped"] == {"service": 1, "media_or_empty": 1}
    text = all_output_text(tmp_path / "out")
    for secret in ("Иван", "Сидоров", "345-67-89", "Petrova"):
        assert secret not in text
    # the same chat inside a full Telegram export ({"chats": {"list": [...]}}) gives the same samples
    telegram(tmp_path / "full" / "result.json", TG_MESSAGES, full_export=True)
    run_data(chat_settings(tmp_path, [tmp_path / "full" / "result.json"]))
    assert [r["turns"] for r in _train(tmp_path)] == [r["turns"] for r in rows]


def test_whatsapp_android_us_dates_and_ios_day_first(tmp_path):
    us = tmp_path / "wa_us.txt"
    us.write_text(WA_ANDROID_US, encoding="utf-8")
    ru = tmp_path / "wa_ru.txt"
    ru.write_text(WA_IOS_RU, encoding="utf-8")
    result = run_data(chat_settings(tmp_path, [us, ru]))
    rows = {(r["source"], len(r["turns"])): r for r in _train(tmp_path)}
    assert set(rows) == {("wa_us.txt", 2), ("wa_us.txt", 4), ("wa_ru.txt", 2), ("wa_ru.txt", 4)}
    us_first = rows[("wa_us.txt", 2)]
    assert us_first["input"] == "Hi doctor, my son has a fever of 39.\nHe is 4 years old."
    assert us_first["target"] == "Give ibuprofen by weight\nand watch for a rash."  # continuation line kept
    assert rows[("wa_us.txt", 4)]["input"] == "Thank you!"  # <Media omitted> skipped
    assert rows[("wa_ru.txt", 4)]["target"] == "Тогда лучше отложить на неделю."
    inputs = {i["file"]: i for i in result.manifest["inputs"]}
    assert inputs["wa_us.txt"]["skipped"] == {"system": 1, "media_or_empty": 1}
    assert inputs["wa_ru.txt"]["notes"] == []  # 14 > 12: day-first is certain
    assert inputs["wa_ru.txt"]["skipped"] == {"media_or_empty": 1}  # iOS "<attached: ...>"
    # a month-first file read day-first would put the 31st into the month: auto chose mdy
    assert inputs["wa_us.txt"]["notes"] == []


def test_whatsapp_gap_splits_dialogues_by_real_time(tmp_path):
    """3/1 9 AM and 3/2 9 AM: a day apart only when read as the right order (here dmy: 3 Jan, 3 Feb)."""
    chat = ("01.03.22, 09:00 - Anna Lee: Is it safe to run with a cold?\n"
            "01.03.22, 09:05 - Dr. Petrova: Light exercise is fine without fever.\n"
            "01.03.22, 09:20 - Anna Lee: And with a sore throat?\n"
            "01.03.22, 09:30 - Dr. Petrova: Rest until it is gone.\n")
    path = tmp_path / "wa.txt"
    path.write_text(chat, encoding="utf-8")
    result = run_data(chat_settings(tmp_path, [path], gap_minutes=10))
    assert result.manifest["chats"]["dialogues"] == 2  # 15 min pause > 10 min
    assert {len(r["turns"]) for r in _train(tmp_path)} == {2}
    assert "ambiguous" in result.manifest["inputs"][0]["notes"][0]


@pytest.mark.parametrize("fmt", ["messages", "sharegpt", "alpaca"])
def test_generic_jsonl_in_all_three_chat_formats(tmp_path, fmt):
    path = write_jsonl(tmp_path / "chats.jsonl", JSONL)
    result = run_data(chat_settings(tmp_path, [path], fmt=fmt))
    rows = _train(tmp_path)
    assert result.counts["rows_kept"] == 2 and len(rows) == 2
    by_input = {r["input"]: r for r in rows}
    row = by_input["Can I take aspirin with ibuprofen?"]  # author mapped by the persona
    assert row["turns"] == [{"role": "user", "content": "Can I take aspirin with ibuprofen?"},
                            {"role": "assistant", "content": "Better not without asking your doctor."}]
    if fmt == "messages":
        assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    elif fmt == "sharegpt":
        assert [m["from"] for m in row["conversations"]] == ["system", "human", "gpt"]
    else:
        assert row["alpaca"]["output"] == "Better not without asking your doctor." and row["alpaca"]["history"] == []


def test_alpaca_history_holds_the_earlier_pairs(tmp_path):
    path = telegram(tmp_path / "result.json", TG_MESSAGES)
    run_data(chat_settings(tmp_path, [path], fmt="alpaca"))
    longest = max(_train(tmp_path), key=lambda r: len(r["turns"]))
    alpaca = longest["alpaca"]
    assert alpaca["input"] == longest["input"] and alpaca["output"] == longest["target"]
    assert alpaca["history"] == [[longest["turns"][0]["content"], longest["turns"][1]["content"]]]


def test_context_budget_truncates_oldest_pairs_and_rejects_what_cannot_fit(tmp_path):
    long_turns = []
    for i in range(4):
        long_turns += [{"dialogue_id": "x", "role": "user", "text": f"Вопрос {i}: " + "симптом " * 40},
                       {"dialogue_id": "x", "role": "assistant", "text": f"Ответ {i}: " + "совет " * 40}]
    long_turns += [{"dialogue_id": "y", "role": "user", "text": "огромный вопрос " * 400},
                   {"dialogue_id": "y", "role": "assistant", "text": "ответ"}]
    path = write_jsonl(tmp_path / "long.jsonl", long_turns)
    # each pair ~ 2 x (330 / 3 + 4) = ~230 tokens; budget 600 holds the system prompt + 2 pairs
    result = run_data(chat_settings(tmp_path, [path], context_tokens=600))
    rows = _train(tmp_path)
    assert [len(r["turns"]) for r in rows] == [2, 4, 4, 4]
    assert rows[-1]["turns"][0]["content"].startswith("Вопрос 2")  # oldest pairs left out
    assert result.manifest["chats"]["context_truncated"] == 2
    [reject] = read_jsonl(tmp_path / "out" / "rejects.jsonl")
    assert reject["reason"] == "too_long" and "long.jsonl#2" in reject["detail"]
    assert "data.chats.context_tokens = 600" in reject["detail"]
    assert result.counts == {"rows_in": 5, "rows_kept": 4, "rows_rejected": 1}
    # loss = all: one sample per window, no assistant turn trained twice
    result = run_data(chat_settings(tmp_path, [path], context_tokens=600, loss="all"))
    rows = _train(tmp_path)
    assert [len(r["turns"]) for r in rows] == [4, 4] and {r["loss"] for r in rows} == {"all"}
    assert rows[1]["turns"][0]["content"].startswith("Вопрос 2")


def test_samples_of_one_dialogue_share_a_split(tmp_path):
    rows = []
    for d in range(30):
        for t in range(3):
            rows += [{"dialogue_id": f"d{d}", "role": "user", "text": f"Question {t} of dialogue {d}?"},
                     {"dialogue_id": f"d{d}", "role": "assistant", "text": f"Answer {t} to dialogue {d}."}]
    path = write_jsonl(tmp_path / "many.jsonl", rows)
    settings = settings_for(tmp_path, inputs=[str(path)], eval_fraction=0.2,
                            chats={"enabled": True, "test_fraction": 0.2})
    result = run_data(settings)
    seen: dict[str, set] = {}
    for split in ("train", "eval", "test"):
        for row in read_jsonl(tmp_path / "out" / f"{split}.jsonl"):
            seen.setdefault(row["dialogue"], set()).add(split)
    assert len(seen) == 30 and all(len(s) == 1 for s in seen.values())
    assert all(result.splits[s] > 0 for s in ("train", "eval", "test"))
    again = run_data(settings)
    assert again.splits == result.splits  # deterministic


def test_bad_chat_exports(tmp_path):
    no_doctor = telegram(tmp_path / "a" / "result.json", [tg(1, "2024-03-01T10:00:00", "Иван", "Привет")])
    with pytest.raises(UsageError, match=r"result.json: no message by the assistant .*Dr. Petrova"):
        run_data(chat_settings(tmp_path, [no_doctor]))
    notes = tmp_path / "notes.txt"
    notes.write_text("just some notes\nwithout dates\n", encoding="utf-8")
    with pytest.raises(UsageError, match="notes.txt: not a WhatsApp export"):
        run_data(chat_settings(tmp_path, [notes]))
    (tmp_path / "weird.json").write_text('{"data": []}', encoding="utf-8")
    with pytest.raises(UsageError, match="weird.json: not a Telegram export"):
        run_data(chat_settings(tmp_path, [tmp_path / "weird.json"]))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"dialogue_id": 1, "role": "user", "text": "hi"}\n{"oops\n[1]\n', encoding="utf-8")
    with pytest.raises(UsageError, match=r"broken.jsonl:2: invalid JSON .*2 of 3 lines are broken"):
        run_data(chat_settings(tmp_path, [broken]))
    bad_role = write_jsonl(tmp_path / "role.jsonl", [*JSONL, {"dialogue_id": "c", "role": "nurse", "text": "x"}])
    run_data(chat_settings(tmp_path, [bad_role]))
    [reject] = read_jsonl(tmp_path / "out" / "rejects.jsonl")
    assert reject == {"file": "role.jsonl", "row": 5, "reason": "invalid_message",
                      "detail": "field 'role': 'nurse' is not user or assistant"}
    # the CLI: one line, exit 2, naming the file
    config = tmp_path / "medscribe.toml"
    config.write_text(f'[paths]\ndata = "{tmp_path / "o"}"\n[data]\ninputs = ["{no_doctor}"]\n'
                      '[data.chats]\nenabled = true\nassistant = ["Dr. House"]\n', encoding="utf-8")
    result = invoke("--config", str(config), "data")
    assert result.exit_code == 2 and "result.json: no message by the assistant" in result.output
    assert "Traceback" not in result.output and "Иван" not in result.output


def test_the_exports_own_author_names_are_replaced_in_texts(tmp_path):
    """The scrubber does not know every surname ("Kowalczyk will call back" passes it): the export names its
    authors, so their names are replaced wherever the texts mention them."""
    path = write_jsonl(tmp_path / "c.jsonl", [
        {"dialogue_id": "a", "author": "Ewa Kowalczyk", "text": "Kowalczyk will call back about the MRI."},
        {"dialogue_id": "a", "author": DOCTOR, "text": "Thank you, tell Ewa the MRI slot is at 9."},
    ])
    result = run_data(chat_settings(tmp_path, [path]))
    [row] = _train(tmp_path)
    assert row["input"] == "[NAME] will call back about the MRI."
    assert "Ewa" not in row["target"] and "Kowalczyk" not in all_output_text(tmp_path / "out")
    assert result.manifest["phi"]["author_names_replaced"] == 2


def test_small_export_warns_when_no_dialogue_reaches_test(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", JSONL)
    settings = settings_for(tmp_path, inputs=[str(path)], chats={"enabled": True, "assistant": [DOCTOR],
                                                                 "test_fraction": 0.01}, eval_fraction=0.0)
    result = run_data(settings)
    assert result.splits == {"train": 2, "eval": 0, "test": 0}
    assert any("no dialogue landed in test" in w for w in result.warnings)
    assert result.manifest["fallbacks"] == result.warnings
