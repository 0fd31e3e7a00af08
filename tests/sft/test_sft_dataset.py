"""Training rows: answer-only labels for any chat template, RAG context without own-answer leakage,
training prompt == serving prompt, and input errors."""

from __future__ import annotations

import pytest
from sft_helpers import FakeRetriever, report_rows, tiny_settings, write_data, write_jsonl

from medscribe.errors import UsageError
from medscribe.schemas import Hit, Record
from medscribe.sft.dataset import IGNORE_INDEX, build_examples, encode_example, load_records, tokenize_examples

# Real-world templates WITHOUT {% generation %} markers: SmolLM2/Qwen-style ChatML and Llama-3 style.
CHATML_NO_MARKERS = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA3_STYLE = (
    "{{ '<|begin_of_text|>' }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _records(n=3):
    return [Record(**{k: v for k, v in r.items() if k != "messages"}) for r in report_rows(n)]


def _loss_text(tokenizer, row):
    return tokenizer.decode([t for t in row["labels"] if t != IGNORE_INDEX])


@pytest.mark.parametrize("template", [None, CHATML_NO_MARKERS], ids=["tiny-generation-markers", "chatml-no-markers"])
def test_labels_are_exactly_answer_plus_end_of_turn_token(tokenizer, tmp_path, template):
    if template:
        tokenizer = _with_template(tokenizer, template)
    settings = tiny_settings(tmp_path, tmp_path)
    examples, _ = build_examples(_records(), settings.prompt)
    end_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    for example in examples:
        row = encode_example(example, tokenizer)
        answer = example["completion"][0]["content"]
        expected = tokenizer(answer, add_special_tokens=False)["input_ids"] + [end_id]
        loss_ids = [t for t in row["labels"] if t != IGNORE_INDEX]
        assert loss_ids == expected
        # Loss tokens are one contiguous run at the very end (nothing of the prompt, no trailing newline).
        first = next(i for i, t in enumerate(row["labels"]) if t != IGNORE_INDEX)
        last = first + len(expected)
        assert row["labels"][first:last] == row["input_ids"][first:last]
        # The template's trailing newline after <|im_end|> is in the input but carries no loss.
        assert row["input_ids"][last:] == tokenizer("\n", add_special_tokens=False)["input_ids"]
        assert all(t == IGNORE_INDEX for t in row["labels"][:first] + row["labels"][last:])


def test_labels_with_llama3_style_template(tokenizer, tmp_path):
    tok = _with_template(tokenizer, LLAMA3_STYLE)
    examples, _ = build_examples(_records(1), tiny_settings(tmp_path, tmp_path).prompt)
    row = encode_example(examples[0], tok)
    assert _loss_text(tok, row) == examples[0]["completion"][0]["content"] + "<|eot_id|>"


def test_trainer_batches_carry_the_same_labels(tiny_model_dir, tmp_path):
    """What reaches the model (after TRL's collator) masks exactly the same tokens."""
    from medscribe.sft.backends import choose_setup, load_model
    from medscribe.sft.trainer import build_trainer

    settings = tiny_settings(tmp_path, tiny_model_dir)
    setup = choose_setup(settings.sft)
    model, tok = load_model(settings.sft, setup, str(tiny_model_dir))
    examples, _ = build_examples(_records(4), settings.prompt)
    rows, stats = tokenize_examples(examples, tok, 384)
    trainer = build_trainer(model, tok, settings.sft, setup, tmp_path / "run", rows, [], None)
    batch = next(iter(trainer.get_train_dataloader()))
    answers = {e["completion"][0]["content"] + "<|im_end|>" for e in examples}
    seen = set()
    for labels in batch["labels"].tolist():
        seen.add(tok.decode([t for t in labels if t != IGNORE_INDEX]))
    assert seen <= answers and len(seen) == len(batch["labels"])
    assert stats["loss_tokens"] == sum(sum(t != IGNORE_INDEX for t in r["labels"]) for r in rows)


def test_rag_context_excludes_own_id_and_own_answer(tmp_path):
    rows = report_rows(6)
    retriever = FakeRetriever(rows)
    records = _records(6)
    settings = tiny_settings(tmp_path, tmp_path)
    examples, stats = build_examples(records, settings.prompt, retriever, k=2)
    assert retriever.calls[0]["exclude_ids"] == [{r.id} for r in records]
    assert stats["own_answer_hits_dropped"] >= 2 * len(records)
    for record, example in zip(records, examples, strict=True):
        assert record.id not in example["context_ids"] and f"{record.id}-dup" not in example["context_ids"]
        assert len(example["context_ids"]) == 2
        shots = [m["content"] for m in example["prompt"] if m["role"] == "assistant"]
        assert len(shots) == 2
        assert all(record.target not in shot for shot in shots)  # the own answer never leaks into the prompt


def test_rag_context_uses_ask_filter_fields(tmp_path):
    retriever = FakeRetriever(report_rows(6))
    build_examples(_records(6), tiny_settings(tmp_path, tmp_path).prompt, retriever, k=1, filter_fields=["organ"])
    assert len(retriever.calls) == 3  # one batched search per organ
    assert {c["filters"]["organ"] for c in retriever.calls} == {"печень", "почка", "головной мозг"}


def test_training_prompt_equals_serving_prompt(tokenizer, tmp_path):
    """sft's rendered training prompt == the text `ask` sends for the same record and hits."""
    from medscribe.ask.core import build_request
    from medscribe.sft.dataset import render_texts

    settings = tiny_settings(tmp_path, tmp_path)
    record = report_rows(1)[0]
    hits = [Hit(id="n1", text="Очаг 3 мм", answer="Киста", score=0.8, metadata={"organ": "печень", "modality": "КТ"})]

    class OneHit:
        def search_many(self, queries, k=None, filters=None, exclude_ids=None):
            return [list(hits) for _ in queries]

    examples, _ = build_examples(_records(1), settings.prompt, OneHit(), k=1)
    train_prompt, _ = render_texts(examples[0], tokenizer)
    serving = build_request(record, hits, settings)
    serve_prompt = tokenizer.apply_chat_template(serving.messages, tokenize=False, add_generation_prompt=True)
    assert train_prompt == serve_prompt
    assert "Очаг 3 мм" in train_prompt and record["input"] in train_prompt


def test_too_long_rows_are_dropped_and_counted(tokenizer, tmp_path):
    examples, _ = build_examples(_records(3), tiny_settings(tmp_path, tmp_path).prompt)
    rows, stats = tokenize_examples(examples, tokenizer, max_length=20)
    assert rows == [] and stats["dropped_too_long"] == 3


def test_missing_empty_and_bad_training_files(tmp_path):
    with pytest.raises(UsageError, match="train.jsonl: training set not found"):
        load_records(tmp_path / "train.jsonl")
    write_jsonl(tmp_path / "train.jsonl", [])
    with pytest.raises(UsageError, match="training set is empty"):
        load_records(tmp_path / "train.jsonl")
    bad = report_rows(2)
    del bad[1]["target"]
    write_jsonl(tmp_path / "train.jsonl", bad)
    with pytest.raises(UsageError, match=r"train.jsonl: row 2: field 'target'"):
        load_records(tmp_path / "train.jsonl")
    assert load_records(tmp_path / "missing.jsonl", required=False) == []


def test_template_that_cannot_render_is_a_usage_error(tokenizer, tmp_path):
    tok = _with_template(tokenizer, "{{ raise_exception('roles must alternate') }}")
    examples, _ = build_examples(_records(1), tiny_settings(tmp_path, tmp_path).prompt)
    with pytest.raises(UsageError, match="chat template cannot render"):
        encode_example(examples[0], tok)


def _with_template(tokenizer, template):
    import copy

    tok = copy.deepcopy(tokenizer)
    tok.chat_template = template
    return tok


def test_write_data_helper_roundtrip(tmp_path):
    data = write_data(tmp_path, 3, 2)
    assert len(load_records(data / "train.jsonl")) == 3 and len(load_records(data / "eval.jsonl")) == 2
