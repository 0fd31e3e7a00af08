"""Multi-turn samples from chat exports in sft: loss on the last assistant turn or on every assistant turn, the
shared prompt builder (prompts.build_dialogue_messages), bad rows, and a real run on the tiny model from what
`medscribe data` wrote for a chat export."""

from __future__ import annotations

import json

import pytest
from sft_helpers import tiny_settings, write_jsonl

from medscribe.errors import UsageError
from medscribe.prompts import DIALOGUE_SYSTEM, build_dialogue_messages
from medscribe.sft.dataset import IGNORE_INDEX, build_examples, encode_example, load_records

TURNS = [
    {"role": "user", "content": "Болит голова третий день."},
    {"role": "assistant", "content": "Есть ли температура?"},
    {"role": "user", "content": "Нет, температуры нет."},
    {"role": "assistant", "content": "Измерьте давление и примите парацетамол."},
]


def dialogue_row(loss: str, turns=TURNS, **extra) -> dict:
    return {"id": f"d-{loss}", "task": "dialogue", "input": turns[-2]["content"], "target": turns[-1]["content"],
            "turns": turns, "loss": loss, "system": None, "split": "train", "dialogue": "chat#1",
            "messages": [], **extra}


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _runs(row: dict) -> list[list[int]]:
    """Consecutive runs of labelled tokens."""
    runs, current = [], []
    for label in row["labels"]:
        if label == IGNORE_INDEX:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(label)
    return runs + ([current] if current else [])


def _examples(tmp_path, rows):
    path = write_jsonl(tmp_path / "data" / "train.jsonl", rows)
    records = load_records(path)
    return build_examples(records, tiny_settings(tmp_path, tmp_path).prompt)


def test_last_turn_loss_only_on_the_final_answer(tokenizer, tmp_path):
    examples, stats = _examples(tmp_path, [dialogue_row("last")])
    [example] = examples
    assert example["prompt"] == build_dialogue_messages(TURNS[:-1])  # the shared builder, system first
    assert example["prompt"][0]["content"] == DIALOGUE_SYSTEM and stats["dialogue_rows"] == 1
    row = encode_example(example, tokenizer)
    end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    expected = tokenizer(TURNS[3]["content"], add_special_tokens=False)["input_ids"] + [end_id]
    assert _runs(row) == [expected]
    # the earlier assistant turn is in the input, without loss
    earlier = tokenizer(TURNS[1]["content"], add_special_tokens=False)["input_ids"]
    text = tokenizer.decode(row["input_ids"])
    assert TURNS[1]["content"] in text and len(earlier) > 0


def test_all_turns_loss_on_every_assistant_turn_and_nothing_else(tokenizer, tmp_path):
    examples, stats = _examples(tmp_path, [dialogue_row("all")])
    assert stats["dialogue_loss"] == {"all": 1}
    row = encode_example(examples[0], tokenizer)
    decoded = [tokenizer.decode(run) for run in _runs(row)]
    assert decoded == [TURNS[1]["content"] + "<|im_end|>", TURNS[3]["content"] + "<|im_end|>"]
    assert all(r["content"] not in "".join(decoded) for r in TURNS if r["role"] == "user")


def test_template_that_rewrites_earlier_turns_cannot_train_all_turns(tokenizer, tmp_path):
    """A template that renders past assistant turns differently (Qwen3-style reasoning stripping, here: upper
    case) would put loss on text the model never sees: refused for loss = all, fine for loss = last."""
    rewriting = (
        "{% for message in messages %}{% if message['role'] == 'assistant' and not loop.last %}"
        "{{ '<|im_start|>assistant\\n' + message['content'] | upper + '<|im_end|>\\n' }}"
        "{% else %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
        "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    tok = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    tok.chat_template = rewriting
    examples, _ = _examples(tmp_path, [dialogue_row("all"), dialogue_row("last", id="d-2")])
    with pytest.raises(UsageError, match="earlier assistant turn"):
        encode_example(examples[0], tok)
    assert len(_runs(encode_example(examples[1], tok))) == 1


def test_dialogue_rows_are_validated_with_their_row_number(tmp_path):
    bad = {**dialogue_row("last"), "turns": [{"role": "user", "content": "only a question"}]}
    path = write_jsonl(tmp_path / "data" / "train.jsonl", [dialogue_row("last"), bad])
    with pytest.raises(UsageError, match=r"train.jsonl: row 2: field 'turns'"):
        load_records(path)


def test_sft_trains_on_samples_written_by_medscribe_data(tiny_model_dir, tmp_path):
    """Chat export -> `medscribe data` -> `run_sft` on the tiny model: the training examples are the dialogue
    samples, and the loss tokens are the assistant turns."""
    from medscribe.data import run_data
    from medscribe.settings import load_settings
    from medscribe.sft import run_sft

    lines = []
    for d in range(6):
        for t in range(2):
            lines += [{"dialogue_id": f"d{d}", "role": "user", "text": f"Вопрос {t} про давление {d}?"},
                      {"dialogue_id": f"d{d}", "role": "assistant", "text": f"Ответ {t}: контроль давления {d}."}]
    export = write_jsonl(tmp_path / "export.jsonl", lines)
    data_settings = load_settings(None, flags={
        "paths": {"data": str(tmp_path / "data")},
        "data": {"inputs": [str(export)], "eval_fraction": 0.2,
                 "chats": {"enabled": True, "loss": "all", "test_fraction": 0.0}}})
    result = run_data(data_settings)
    assert result.counts["rows_kept"] == 6
    manifest = run_sft(tiny_settings(tmp_path, tiny_model_dir), resume=False)
    examples = json.loads((tmp_path / "sft" / "t" / "examples.json").read_text(encoding="utf-8"))
    train, stats = examples["train"]
    assert {e["loss"] for e in train} == {"all"} and stats["dialogue_rows"] == len(train) > 0
    assert all(len(e["prompt"]) == 4 for e in train)  # system, user, assistant, user
    assert (tmp_path / "sft" / "t" / "adapter").is_dir()
    # loss on every assistant turn (+ its <|im_end|>), nothing else
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    expected = sum(len(tok(m["content"], add_special_tokens=False)["input_ids"]) + 1
                   for e in train for m in e["prompt"] + e["completion"] if m["role"] == "assistant")
    assert manifest["data"]["train"]["loss_tokens"] == expected
