"""Training rows: answer-only labels for any chat template, RAG context without own-answer leakage, cot
targets with reasoning, QA citations, and input errors. Training prompt == serving prompt through the real
loading code: tests/test_prompt_parity.py."""

from __future__ import annotations

import pytest
from sft_helpers import FakeRetriever, report_rows, tiny_settings, tiny_sft_flags, write_data, write_jsonl

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
    # Padded batches hold one example per row; the CPU fast path's padding-free batch joins them in one row,
    # each starting where its position ids restart at 0.
    segments = []
    positions = batch.get("position_ids")
    for r, labels in enumerate(batch["labels"].tolist()):
        starts = [0] if positions is None else [i for i, p in enumerate(positions[r].tolist()) if p == 0]
        for a, b in zip(starts, [*starts[1:], len(labels)], strict=True):
            segments.append(labels[a:b])
    seen = [tok.decode([t for t in seg if t != IGNORE_INDEX]) for seg in segments]
    assert set(seen) <= answers and len(set(seen)) == len(seen) == min(settings.sft.batch_size, len(rows))
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


def test_cot_prompt_trains_on_reasoning_and_refuses_rows_without_it(tmp_path):
    """prompt.variant = "cot" asks for reasoning first: training targets carry it, and data without it is refused
    (file, row, field) before any model is loaded (the parity of the whole prompt is tests/test_prompt_parity.py)."""
    import json

    from medscribe.settings import load_settings
    from medscribe.sft.train import training_examples

    rows = [{**r, "reasoning": f"Контуры четкие, {r['organ']}."} for r in report_rows(3)]
    write_jsonl(tmp_path / "data" / "train.jsonl", rows)
    flags = tiny_sft_flags(tmp_path, tmp_path)
    settings = load_settings(flags={**flags, "prompt": {"variant": "cot"}})
    examples = training_examples(settings, tmp_path / "run", None, reuse=False, is_main=True)
    train, stats = examples["train"]
    assert stats["rows_with_reasoning"] == 3
    for row, example in zip(rows, train, strict=True):
        target = json.loads(example["completion"][0]["content"])
        assert list(target) == ["reasoning", "result"] and target["reasoning"] == row["reasoning"]
    # Another variant ignores the field: the prompt does not ask for reasoning.
    detailed = training_examples(tiny_settings(tmp_path, tmp_path), tmp_path / "run2", None, reuse=False, is_main=True)
    assert list(json.loads(detailed["train"][0][0]["completion"][0]["content"])) == ["result"]

    rows[1]["reasoning"] = "  "
    del rows[2]["reasoning"]
    write_jsonl(tmp_path / "data" / "train.jsonl", rows)
    with pytest.raises(UsageError, match=r"train.jsonl: row 2: field 'reasoning': missing \(2 of 3 rows\)"):
        training_examples(settings, tmp_path / "run3", None, reuse=False, is_main=True)
    write_jsonl(tmp_path / "data" / "train.jsonl", [{**r, "reasoning": "x"} for r in report_rows(2)])
    write_jsonl(tmp_path / "data" / "eval.jsonl", report_rows(1, start=50))
    with pytest.raises(UsageError, match=r"eval.jsonl: row 1: field 'reasoning'"):
        training_examples(settings, tmp_path / "run4", None, reuse=False, is_main=True)


def test_own_answer_is_dropped_after_exact_match_normalization(tmp_path):
    """A hit whose answer differs from the target only in case/punctuation still hands over the answer."""
    record = _records(1)[0]
    hits = [Hit(id="x1", text="t", answer=record.target.upper() + " !", score=0.9),
            Hit(id="x2", text="t", answer="Другое", score=0.8),
            Hit(id="kb-1", text="a document chunk", answer=None, score=0.7)]

    class Fixed:
        def search_many(self, queries, k=None, filters=None, exclude_ids=None, indexed_ids=None):
            return [list(hits) for _ in queries]

    examples, stats = build_examples([record], tiny_settings(tmp_path, tmp_path).prompt, Fixed(), k=3)
    assert examples[0]["context_ids"] == ["x2", "kb-1"] and stats["own_answer_hits_dropped"] == 1
    assert stats["knowledge_hits"] == 1
    assert "[kb-1] a document chunk" in examples[0]["prompt"][0]["content"]  # the chunk reaches the prompt


def test_training_context_mirrors_what_the_split_key_lets_serving_see(tmp_path):
    """Reports (split key "input" by default): a neighbour sharing the stock conclusion stays, as test rows see
    such neighbours when served; a duplicate finding under another id goes. QA ("both") drops the answer too."""
    from medscribe.settings import load_settings
    from medscribe.sft.dataset import answer_linked_tasks

    record = _records(1)[0]
    hits = [Hit(id="stock", text="Другой очаг 9 мм", answer=record.target, score=0.9),
            Hit(id="dup", text=record.input.upper(), answer="Иное заключение", score=0.8),
            Hit(id="other", text="Третий очаг", answer="Другое", score=0.7)]

    class Fixed:
        def search_many(self, queries, k=None, filters=None, exclude_ids=None, indexed_ids=None):
            return [list(hits) for _ in queries]

    def data(group):
        return load_settings(flags={"data": {"split_group_by": group}}).data

    assert answer_linked_tasks(data("auto")) == ("qa",) and answer_linked_tasks(data("both")) == ("report", "qa")
    assert answer_linked_tasks(data("organ")) == ()
    prompt = tiny_settings(tmp_path, tmp_path).prompt
    kept, stats = build_examples([record], prompt, Fixed(), k=3, answer_linked=answer_linked_tasks(data("auto")))
    assert kept[0]["context_ids"] == ["stock", "other"] and stats["own_answer_hits_dropped"] == 1
    qa = Record(id="q1", task="qa", input=record.input, target=record.target)
    dropped, _ = build_examples([qa], prompt, Fixed(), k=3, answer_linked=answer_linked_tasks(data("auto")))
    assert dropped[0]["context_ids"] == ["other"]


def test_qa_targets_cite_the_document_that_states_the_answer(tmp_path):
    import json

    record = Record(id="q1", task="qa", input="Symptoms of anemia?", target="Fatigue, pallor and dyspnea.")
    hits = [Hit(id="kb-1", text="Anemia: fatigue, pallor and dyspnea are typical.", answer=None, score=0.9),
            Hit(id="kb-2", text="Unrelated chunk.", answer=None, score=0.8)]

    class Fixed:
        def search_many(self, queries, k=None, filters=None, exclude_ids=None, indexed_ids=None):
            return [list(hits) for _ in queries]

    examples, stats = build_examples([record], tiny_settings(tmp_path, tmp_path).prompt, Fixed(), k=2)
    assert json.loads(examples[0]["completion"][0]["content"])["citations"] == ["kb-1"]
    assert stats["rows_with_citations"] == 1


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
