"""Training and serving see the same prompt (issue 15, section 2), through the real loading code.

One few-step `run_sft` on the tiny model (tests/kit.py) with a custom `sft.chat_template` writes a real adapter
folder. Then, for every task x prompt variant x context mode:
- the trainer's side: the SFT dataset built as `medscribe sft` builds it (`training_examples` +
  `tokenize_examples`, with the tokenizer saved in the adapter folder, which test 1 proves is the trainer's);
- the local backend's side: `LocalBackend` loaded from the adapter folder, fed requests made by ask's own
  `retrieve` + `build_request`; the token ids are captured where they enter `model.generate`;
- the OpenAI-compatible side: the messages `OpenAIBackend` posts to tests/ask/fake_server.py.
The prompt part of the training ids must equal the ids the backend generates from, and the posted messages
must equal the training messages. The base model's template differs from the adapter's, so serving with the
base tokenizer (the old behaviour) fails these tests.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from ask.fake_server import FakeServer
from sft.sft_helpers import tiny_sft_flags, write_jsonl

from medscribe.schemas import Hit
from medscribe.settings import load_settings

# Differs from the base tokenizer's ChatML ("<|im_start|>user\n" vs "<|im_start|>user turn\n").
TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + ' turn\\n' + m['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant turn\\n' }}{% endif %}"
)
DOC_TEXT = "Anemia. Typical symptoms include fatigue, pallor and shortness of breath on exertion."
ROWS = [
    {"id": "r1", "task": "report", "input": "Гиподенсное образование 12 мм в S7", "target": "Киста печени",
     "organ": "печень", "modality": "КТ", "reasoning": "Гиподенсное, четкие контуры: киста."},
    {"id": "r2", "task": "report", "input": "Очаг 5 мм в белом веществе", "target": "Очаговые изменения",
     "organ": "головной мозг", "modality": "МРТ", "reasoning": "Единичный очаг без отека."},
    {"id": "q1", "task": "qa", "input": "What are the symptoms of anemia?",
     "target": "Fatigue, pallor and shortness of breath.", "specialty": "hematology",
     "reasoning": "The reference document lists them."},
    {"id": "q2", "task": "qa", "input": "How is hypertension diagnosed?", "target": "Repeated readings.",
     "specialty": "cardiology", "reasoning": "One reading is not enough."},
]
EVAL_ROWS = [{**ROWS[0], "id": "e1", "input": "Киста 8 мм в S6"}, {**ROWS[2], "id": "e2", "input": "Anemia signs?"}]
# The module trains once (~15 s on 2 busy cores, plus the torch/transformers imports); each check is then fast.
pytestmark = pytest.mark.slow
COMBOS = [(task, variant, context) for task in ("report", "qa") for variant in ("simple", "detailed", "cot")
          for context in ("few_shot", "system", "none")]


class Retriever:
    """`search_many` as the index answers: two cases and one knowledge chunk (no answer) per query, never the
    query's own row, in a fixed order, so training (k + 2, then own-answer filtering) and serving (k) get the
    same first k hits."""

    def search_many(self, queries, k=None, filters=None, exclude_ids=None, indexed_ids=None):
        out = []
        for query in queries:
            task = "qa" if query.endswith("?") else "report"
            meta = {"specialty": "hematology"} if task == "qa" else {"organ": "печень", "modality": "КТ"}
            hits = [
                Hit(id=f"case-{task}-1", text=f"similar to: {query[:12]}", answer="similar answer one", score=0.9,
                    metadata={"kind": "case", **meta}),
                Hit(id="kb-anemia-0", text=DOC_TEXT, answer=None, score=0.8,
                    metadata={"kind": "knowledge", "source": "anemia.md", "chunk": 0}),
                Hit(id=f"case-{task}-2", text="another case", answer="another answer", score=0.7,
                    metadata={"kind": "case", **meta}),
                Hit(id=f"case-{task}-3", text="a third case", answer="third answer", score=0.6, metadata=meta),
            ]
            out.append(hits[:k])
        return out


def _flags(root: Path, model_dir: Path, variant: str, context: str) -> dict:
    rag = context != "none"
    # 2 steps, one evaluation and one checkpoint: the adapter folder is all this run is for.
    flags = tiny_sft_flags(root, model_dir, chat_template=TEMPLATE, rag_context=rag, max_seq_length=1024,
                           eval_steps=2)
    flags["prompt"] = {"variant": variant, "context": "few_shot" if context == "none" else context}
    flags["ask"] = {"k": 3 if rag else 0, "backend": "local", "local_model": str(model_dir), "device": "cpu",
                    "max_new_tokens": 1, "batch_size": 1}
    return flags


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    """One 2-step training run (cot prompt, few-shot RAG context); records the rows the trainer was given."""
    import medscribe.sft.trainer as trainer_module
    from medscribe.sft import run_sft

    root = tmp_path_factory.mktemp("parity")
    write_jsonl(root / "data" / "train.jsonl", [{**r, "split": "train"} for r in ROWS])
    write_jsonl(root / "data" / "eval.jsonl", [{**r, "split": "eval"} for r in EVAL_ROWS])
    seen: dict = {}
    real_build = trainer_module.build_trainer

    def build_trainer(model, tokenizer, sft, setup, run_dir, train_rows, eval_rows, console=None):
        seen.update(tokenizer=tokenizer, train_rows=train_rows)
        return real_build(model, tokenizer, sft, setup, run_dir, train_rows, eval_rows, console)

    settings = load_settings(flags=_flags(root, tiny_model_dir, "cot", "few_shot"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer_module, "build_trainer", build_trainer)
        manifest = run_sft(settings, retriever=Retriever())
    return {"root": root, "adapter": Path(manifest["adapter"]), "manifest": manifest, **seen}


@pytest.fixture(scope="module")
def local_backend(trained, tiny_model_dir):
    """The local backend loaded from the adapter folder by its real loading code; `.fed` collects the token
    ids of every row as they enter model.generate (padding removed)."""
    from medscribe.ask.backend_local import LocalBackend

    settings = load_settings(flags={"ask": {**_flags(trained["root"], tiny_model_dir, "cot", "few_shot")["ask"],
                                            "adapter": str(trained["adapter"])}})
    backend = LocalBackend(settings.ask)
    backend.fed = []
    real_generate = backend.model.generate

    def generate(**kwargs):
        for ids, mask in zip(kwargs["input_ids"].tolist(), kwargs["attention_mask"].tolist(), strict=True):
            backend.fed.append([t for t, m in zip(ids, mask, strict=True) if m])
        return real_generate(**kwargs)

    backend.model.generate = generate
    return backend


@pytest.fixture(scope="module")
def adapter_tokenizer(trained):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(trained["adapter"])


def _training_side(settings, root: Path, task: str, tokenizer):
    """Examples and token rows exactly as `medscribe sft` makes them (its own functions, fresh cache)."""
    from medscribe.sft.dataset import tokenize_examples
    from medscribe.sft.train import training_examples

    run_dir = root / "sft" / f"check-{task}-{settings.prompt.variant}-{settings.prompt.context}-{settings.ask.k}"
    run_dir.mkdir(parents=True, exist_ok=True)
    examples, _stats = training_examples(settings, run_dir, Retriever(), reuse=False, is_main=True)["train"]
    examples = [e for e, r in zip(examples, ROWS, strict=True) if r["task"] == task]
    rows, _ = tokenize_examples(examples, tokenizer, settings.sft.max_seq_length)
    return examples, rows


def _serving_requests(settings, root: Path, task: str):
    """Requests exactly as `ask` makes them from the same split file (read_inputs, retrieve, build_request)."""
    from medscribe.ask.core import build_request, effective_k, retrieve
    from medscribe.ask.inputs import read_inputs

    records, _ = read_inputs(root / "data" / "train.jsonl", settings.ask.columns, settings.data.task)
    records = [r for r in records if r["task"] == task]
    hits = retrieve(Retriever(), records, effective_k(settings), settings.ask.filter_fields)
    return [build_request(r, h, settings) for r, h in zip(records, hits, strict=True)]


def test_the_adapter_folder_holds_the_tokenizer_the_trainer_used(trained, local_backend, adapter_tokenizer,
                                                                 tiny_model_dir):
    from transformers import AutoTokenizer

    from medscribe.sft.dataset import tokenize_examples

    assert local_backend.describe()["tokenizer_source"] == "adapter"
    assert local_backend.tokenizer.chat_template == trained["tokenizer"].chat_template == TEMPLATE
    assert AutoTokenizer.from_pretrained(tiny_model_dir).chat_template != TEMPLATE  # so a fallback is caught
    # The saved tokenizer reproduces, token for token, every row the trainer was given.
    cache = json.loads((trained["root"] / "sft" / "t" / "examples.json").read_text(encoding="utf-8"))
    rows, _ = tokenize_examples(cache["train"][0], adapter_tokenizer, 1024)
    assert rows == trained["train_rows"]
    assert trained["manifest"]["chat_template"]["source"] == "sft.chat_template"


@pytest.mark.parametrize(("task", "variant", "context"), COMBOS, ids=["-".join(c) for c in COMBOS])
def test_trainer_and_local_backend_see_the_same_prompt_ids(trained, local_backend, adapter_tokenizer, task,
                                                           variant, context):
    from medscribe.ask.generation import Generation
    from medscribe.sft.dataset import IGNORE_INDEX

    settings = load_settings(flags=_flags(trained["root"], Path(local_backend.model_name), variant, context))
    examples, rows = _training_side(settings, trained["root"], task, adapter_tokenizer)
    requests = _serving_requests(settings, trained["root"], task)
    assert [r.messages for r in requests] == [e["prompt"] for e in examples]
    for example, row, request in zip(examples, rows, requests, strict=True):
        local_backend.fed.clear()
        done: list[Generation] = []
        local_backend.generate([request], lambda _i, gen, done=done: done.append(gen))
        assert done[0].error is None
        first_label = next(i for i, t in enumerate(row["labels"]) if t != IGNORE_INDEX)
        assert local_backend.fed == [row["input_ids"][:first_label]]  # what serving feeds == the trained prefix
        assert done[0].prompt_tokens == first_label
        system = example["prompt"][0]["content"]
        if context == "none":
            assert example["context_ids"] == [] and "Reference documents" not in system
        else:
            # Every counted hit reaches the model: the knowledge chunk as a reference document in both modes.
            assert example["context_ids"] == [f"case-{task}-1", "kb-anemia-0", f"case-{task}-2"]
            assert f"[kb-anemia-0] {DOC_TEXT}" in system
            assert DOC_TEXT in adapter_tokenizer.decode(row["input_ids"][:first_label])
            shots = [m for m in example["prompt"][1:-1] if m["role"] == "assistant"]
            assert len(shots) == (2 if context == "few_shot" else 0)
        answer = json.loads(example["completion"][0]["content"])
        assert ("reasoning" in answer) == (variant == "cot")
        if variant == "cot":
            assert list(answer)[0] == "reasoning"
        if task == "qa":
            own = next(r for r in ROWS if r["target"] == answer["answer"])
            # q1's answer is stated by the reference document; q2's by nothing shown.
            expected = ["kb-anemia-0"] if own["id"] == "q1" and context != "none" else []
            assert answer["citations"] == expected


@pytest.mark.parametrize(("task", "variant", "context"), COMBOS, ids=["-".join(c) for c in COMBOS])
def test_openai_server_receives_the_training_messages(trained, adapter_tokenizer, tiny_model_dir, task, variant,
                                                      context):
    from medscribe.ask.backend_openai import OpenAIBackend

    flags = _flags(trained["root"], tiny_model_dir, variant, context)
    examples = None
    with FakeServer() as server:
        flags["ask"].update(backend="openai", base_url=server.base_url, model="fake", timeout=5.0, max_retries=0)
        settings = load_settings(flags=flags)
        examples, _ = _training_side(settings, trained["root"], task, adapter_tokenizer)
        requests = _serving_requests(settings, trained["root"], task)
        done = []
        OpenAIBackend(settings.ask).generate(requests, lambda _i, gen: done.append(gen))
        sent = [body["messages"] for body in server.requests]
    assert all(gen.error is None for gen in done) and len(sent) == len(examples)
    key = lambda messages: messages[-1]["content"]  # noqa: E731 - requests arrive in any order
    assert sorted(sent, key=key) == sorted((e["prompt"] for e in examples), key=key)


def test_an_adapter_without_a_tokenizer_falls_back_visibly(trained, tiny_model_dir, tmp_path, caplog):
    from medscribe.ask.backend_local import LocalBackend

    bare = tmp_path / "bare-adapter"
    bare.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(trained["adapter"] / name, bare / name)
    flags = _flags(trained["root"], tiny_model_dir, "detailed", "few_shot")["ask"]
    settings = load_settings(flags={"ask": {**flags, "adapter": str(bare)}})
    with caplog.at_level(logging.WARNING, logger="medscribe.ask.backend_local"):
        backend = LocalBackend(settings.ask)
    assert backend.describe()["tokenizer_source"] == "base model (adapter has no tokenizer)"
    assert "has no tokenizer" in caplog.text and str(bare) in caplog.text
    assert backend.tokenizer.chat_template != TEMPLATE
