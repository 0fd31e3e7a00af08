"""Training rows for `medscribe sft`: records -> chat prompt/completion -> token ids with answer-only labels.

    from medscribe.sft.dataset import load_records, build_examples, tokenize_examples
    records = load_records(settings.paths.data / "train.jsonl")
    examples = build_examples(records, settings.prompt, retriever=None)          # or a Retriever for RAG context
    rows, stats = tokenize_examples(examples, tokenizer, max_length=2048)         # input_ids + labels

The prompt is built by `medscribe.prompts.build_prompt_completion`, the SAME builder `ask` uses when
serving, so training and serving prompts cannot drift apart. Labels are computed here (not by TRL) from
character offsets of the rendered chat template: exactly the assistant answer and the end-of-turn marker carry
loss, whatever the template (with or without `{% generation %}` markers), and the template's own
scaffolding inside the assistant turn (role header, a trailing newline) does not.

Multi-turn rows (`task = "dialogue"`, written by `medscribe data` from chat exports, data/chat_samples.py) are
`DialogueRecord`s: their prompt is `prompts.build_dialogue_messages` (system + the turns before the answer), no
retrieval; `loss = "last"` puts loss on the final assistant turn, `loss = "all"` on every assistant turn (each
span found like the answer's, by rendering the conversation up to that turn).

Training rows may carry an optional `reasoning` (kept on `TrainingRecord`): with `prompt.variant = "cot"` the
target is `{"reasoning": ..., "result"|"answer": ...}`, and `check_reasoning` refuses rows without it (the cot
prompt and the served schema require reasoning; a target without it would teach the model to break both).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from medscribe.errors import UsageError
from medscribe.io import read_jsonl
from medscribe.prompts import build_dialogue_messages, build_prompt_completion, supporting_ids
from medscribe.schemas import Hit, Record

IGNORE_INDEX = -100


class TrainingRecord(Record):
    """A split row as sft reads it: a Record plus the optional chain-of-thought `reasoning` of its target."""

    reasoning: str | None = None


class DialogueRecord(BaseModel):
    """A multi-turn sample from a chat export: `turns` ends with the assistant turn trained on (`target`)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    task: Literal["dialogue"]
    input: str  # the last user turn
    target: str  # the last assistant turn
    turns: list[dict[str, str]]
    loss: Literal["last", "all"] = "last"
    system: str | None = None
    source: str | None = None
    split: str | None = None
    reasoning: str | None = None

    @field_validator("turns")
    @classmethod
    def _alternating(cls, turns: list[dict[str, str]]) -> list[dict[str, str]]:
        roles = [t.get("role") for t in turns]
        if len(turns) < 2 or roles[-1] != "assistant" or any(r not in ("user", "assistant") for r in roles):
            raise ValueError("expected user/assistant turns ending with the assistant turn")
        if any(not str(t.get("content") or "").strip() for t in turns):
            raise ValueError("a turn has no content")
        return turns


def load_records(path: str | Path, required: bool = True) -> list[TrainingRecord | DialogueRecord]:
    """Records of one split file; extra columns written by `data` (messages, ...) are ignored.

    A missing/empty file is a UsageError when `required`, else an empty list."""
    path = Path(path)
    if not path.is_file():
        if required:
            raise UsageError(f"{path}: training set not found (run `medscribe data` first or set paths.data)")
        return []
    records: list[TrainingRecord | DialogueRecord] = []
    fields = set(TrainingRecord.model_fields)
    for lineno, row in enumerate(read_jsonl(path), start=1):
        try:
            if row.get("task") == "dialogue":
                records.append(DialogueRecord(**row))
                continue
            records.append(TrainingRecord(**{k: v for k, v in row.items() if k in fields}))
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "row"
            raise UsageError(f"{path}: row {lineno}: field '{field}': {err['msg']}") from None
    if required and not records:
        raise UsageError(f"{path}: training set is empty (run `medscribe data` with more input rows)")
    return records


def check_reasoning(records: Sequence[Record], path: str | Path, prompt: Any) -> None:
    """With `prompt.variant = "cot"`, every row must carry a non-empty `reasoning`: a UsageError names the first
    row without one (rows are numbered like load_records' messages) and how many lack it."""
    if getattr(prompt, "variant", None) != "cot":
        return
    missing = [i for i, r in enumerate(records, start=1)
               if r.task != "dialogue" and not str(getattr(r, "reasoning", None) or "").strip()]
    if missing:
        raise UsageError(
            f"{path}: row {missing[0]}: field 'reasoning': missing ({len(missing)} of {len(records)} rows); "
            "prompt.variant = 'cot' asks the model to reason before answering, so sft trains on each row's "
            "reasoning: add it to every row, or train with prompt.variant = 'detailed'"
        )


def answer_linked_tasks(data: Any) -> tuple[str, ...]:
    """Tasks whose split key (`data.split_group_by`, data/splits.py) keeps equal answers in one split.

    For them a test row can never retrieve a train case holding its answer, so training context must not show
    one either. Elsewhere (reports by default: stock conclusions are shared across splits) serving does see
    such neighbours, and training keeps them so the model learns what serving will show it."""
    setting = getattr(data, "split_group_by", "both")
    return ("report", "qa") if setting == "both" else ("qa",) if setting == "auto" else ()


def retrieve_context(
    records: Sequence[Record], retriever: Any, k: int, filter_fields: Sequence[str] = (),
    answer_linked: Sequence[str] = ("report", "qa"),
) -> tuple[list[list[Hit]], int]:
    """Hits for each record from the same retriever `ask` uses, without the record's own case.

    Like `ask`, records are grouped by their values of `filter_fields` (ask.filter_fields) so each group
    searches with the same metadata filter serving will use. The own id is excluded in the query; hits with the
    record's input are dropped too (a duplicate case under another id: `data` never lets a test row share its
    input with a train case), and, for tasks in `answer_linked` (see answer_linked_tasks), hits whose answer
    equals the record's target. We ask for a few more than `k` so that dropping still leaves `k` where the
    index has them. "Equals" is eval's exact-match comparison (`medscribe.evaluate.metrics.normalize_text`),
    the one `prompts.supporting_ids` uses. Returns (hits per record, dropped count)."""
    from medscribe.evaluate.metrics import normalize_text

    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        key = tuple((f, getattr(record, f, None)) for f in filter_fields if getattr(record, f, None))
        groups[key].append(i)
    contexts: list[list[Hit]] = [[] for _ in records]
    dropped = 0
    for key, indices in groups.items():
        found = retriever.search_many(
            [records[i].input for i in indices],
            k=k + 2,
            filters=dict(key) or None,
            exclude_ids=[{records[i].id} for i in indices],
            indexed_ids=[records[i].id for i in indices],  # training rows are the corpus: reuse their vectors
        )
        for i, hits in zip(indices, found, strict=True):
            own_input = normalize_text(records[i].input)
            own = normalize_text(records[i].target) if records[i].task in answer_linked else None
            kept = []
            for hit in hits:
                same_answer = own is not None and hit.answer is not None and normalize_text(hit.answer) == own
                if hit.id == records[i].id or same_answer or (
                    hit.answer is not None and normalize_text(hit.text) == own_input
                ):
                    dropped += 1
                    continue
                kept.append(hit)
            contexts[i] = kept[:k]
    return contexts, dropped


def build_examples(
    records: Sequence[Record], prompt: Any, retriever: Any = None, k: int = 1, filter_fields: Sequence[str] = (),
    answer_linked: Sequence[str] = ("report", "qa"),
) -> tuple[list[dict], dict]:
    """Prompt/completion chat examples (TRL's conversational form) + stats about retrieval."""
    stats: dict[str, Any] = {"rows": len(records), "rag_context": retriever is not None}
    dialogues = [r for r in records if r.task == "dialogue"]
    if dialogues:  # multi-turn samples: no retrieval (their context is the conversation)
        stats["dialogue_rows"] = len(dialogues)
        stats["dialogue_loss"] = dict(sorted(Counter(r.loss for r in dialogues).items()))
        records = [r for r in records if r.task != "dialogue"]
    contexts: list[list[Hit]] = [[] for _ in records]
    if retriever is not None and records:
        contexts, dropped = retrieve_context(records, retriever, k, filter_fields, answer_linked)
        stats["rag_k"] = k
        stats["same_answer_dropped_for"] = list(answer_linked)
        stats["own_answer_hits_dropped"] = dropped
        stats["mean_context_hits"] = round(sum(map(len, contexts)) / len(records), 3)
        # Knowledge chunks reach the prompt as reference documents; QA targets cite what holds the answer.
        stats["knowledge_hits"] = sum(1 for hits in contexts for h in hits if h.answer is None)
        stats["rows_with_citations"] = sum(
            1 for r, hits in zip(records, contexts, strict=True)
            if r.task == "qa" and getattr(prompt, "json_answer", True) and supporting_ids(r.target, hits, prompt)
        )
    if getattr(prompt, "variant", None) == "cot":
        stats["rows_with_reasoning"] = sum(1 for r in records if str(getattr(r, "reasoning", None) or "").strip())
    examples = []
    for record, hits in zip(records, contexts, strict=True):
        example = build_prompt_completion(record, record.task, prompt, context=hits)
        example["id"] = record.id
        example["context_ids"] = [h.id for h in hits]
        examples.append(example)
    examples += [build_dialogue_example(r, prompt) for r in dialogues]
    return examples, stats


def build_dialogue_example(record: DialogueRecord, prompt: Any) -> dict:
    """Prompt/completion form of a multi-turn sample: the prompt holds the earlier turns, the completion the
    last assistant turn; `loss = "all"` asks encode_example to label the earlier assistant turns too."""
    messages = build_dialogue_messages(record.turns, prompt, record.system)
    return {"prompt": messages[:-1], "completion": messages[-1:], "loss": record.loss, "id": record.id,
            "context_ids": []}


def render_texts(example: dict, tokenizer: Any) -> tuple[str, str]:
    """(prompt text with the generation prompt, full text with the answer) as the chat template renders them."""
    try:
        prompt_text = tokenizer.apply_chat_template(example["prompt"], tokenize=False, add_generation_prompt=True)
        full_text = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)
    except Exception as exc:  # jinja errors, templates rejecting a role, ...
        raise UsageError(
            f"chat template cannot render the training messages ({type(exc).__name__}: {str(exc)[:120]}); "
            "set sft.chat_template to a template that accepts system/user/assistant turns"
        ) from None
    return prompt_text, full_text


def answer_span(prompt_text: str, full_text: str, answer: str) -> tuple[int, int]:
    """Character span [start, end) of the answer plus the end-of-turn marker in `full_text`.

    The end-of-turn marker is whatever the template puts after the answer, minus trailing whitespace
    (`<|im_end|>` of `<|im_end|>\\n`, `<|eot_id|>`, `<end_of_turn>`), so the model learns to stop."""
    if not full_text.startswith(prompt_text):
        raise UsageError(
            "chat template renders the prompt differently once the answer is appended, so the answer cannot be "
            "isolated; set sft.chat_template to a standard template"
        )
    start = full_text.find(answer, len(prompt_text))
    if start < 0:
        raise UsageError("chat template alters the assistant answer text; set sft.chat_template to a standard template")
    end = start + len(answer)
    end_of_turn = full_text[end:].rstrip()
    return start, end + len(end_of_turn)


def earlier_answer_spans(example: dict, tokenizer: Any, full_text: str) -> list[tuple[int, int]]:
    """Spans of the assistant turns inside the prompt (multi-turn `loss = "all"`): each rendered like the final
    answer, from the conversation up to that turn, which the full text must start with."""
    spans = []
    messages = example["prompt"]
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        partial = {"prompt": messages[:i], "completion": [message]}
        before, through = render_texts(partial, tokenizer)
        start, end = answer_span(before, through, message["content"])
        if not full_text.startswith(through[:end]):
            raise UsageError(
                "chat template renders an earlier assistant turn differently once the conversation goes on "
                "(e.g. it strips reasoning from past turns), so its loss span cannot be found; train dialogues "
                "with data.chats.loss = 'last' or set sft.chat_template to a standard template")
        spans.append((start, end))
    return spans


def labelled_text(example: dict, tokenizer: Any) -> tuple[str, list[tuple[int, int]]]:
    """(full chat text, character spans that carry loss) for one prompt/completion example."""
    prompt_text, full_text = render_texts(example, tokenizer)
    answer = example["completion"][0]["content"]
    start, end = answer_span(prompt_text, full_text, answer)
    earlier = earlier_answer_spans(example, tokenizer, full_text) if example.get("loss") == "all" else []
    if end == start + len(answer) and tokenizer.eos_token:
        # The template closes the turn with nothing: append EOS, or the model never learns to stop.
        full_text = full_text[:end] + tokenizer.eos_token + full_text[end:]
        end += len(tokenizer.eos_token)
    return full_text, [*earlier, (start, end)]


def _labels(ids: Sequence[int], offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """A token is labelled when its characters overlap a loss span. Vectorized: MedQuAD-size examples have
    thousands of tokens, and a Python test per token was most of sft's time before its first step."""
    ids_array = np.asarray(ids, dtype=np.int64)
    offsets_array = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    inside = np.zeros(len(ids_array), dtype=bool)
    for s, e in spans:
        inside |= (offsets_array[:, 0] < e) & (offsets_array[:, 1] > s)
    return np.where(inside, ids_array, IGNORE_INDEX)


def _require_fast(tokenizer: Any) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise UsageError(
            "sft needs a fast (Rust) tokenizer for exact answer-only labels; the base model has a slow one"
        )


def encode_example(example: dict, tokenizer: Any) -> dict:
    """input_ids + labels (IGNORE_INDEX outside the answer spans) for one prompt/completion example."""
    full_text, spans = labelled_text(example, tokenizer)
    _require_fast(tokenizer)
    enc = tokenizer(full_text, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    return {"input_ids": ids, "labels": _labels(ids, enc["offset_mapping"], spans).tolist()}


ENCODE_BATCH = 256  # texts per tokenizer call: one Rust call (parallel where tokenizers may use threads)


def _batch_encoder(tokenizer: Any, probe: str):
    """texts -> (ids per text, offsets per text). The Rust backend directly when it encodes `probe` exactly
    as the tokenizer's own call does (it skips transformers' per-text conversion: ~1.5x on MedQuAD-size
    texts), else the tokenizer's call."""
    def through_tokenizer(texts: list[str]):
        enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
        return enc["input_ids"], enc["offset_mapping"]

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return through_tokenizer

    def through_backend(texts: list[str]):
        encodings = backend.encode_batch(texts, add_special_tokens=False)
        return [e.ids for e in encodings], [e.offsets for e in encodings]

    reference = through_tokenizer([probe])
    same = through_backend([probe])
    return through_backend if [list(x) for x in same[0]] == [list(x) for x in reference[0]] and \
        [list(map(tuple, x)) for x in same[1]] == [list(map(tuple, x)) for x in reference[1]] else through_tokenizer


def tokenize_examples(examples: Sequence[dict], tokenizer: Any, max_length: int) -> tuple[list[dict], dict]:
    """Encode all examples (what encode_example does, ENCODE_BATCH texts per tokenizer call); drop (and count)
    those longer than `max_length`.

    Dropping, not truncating: a truncated answer would teach the model to stop mid-sentence, and a
    truncated prompt would train on an input the model never sees at serving time."""
    _require_fast(tokenizer)
    rows, too_long, lengths, loss_tokens = [], 0, [], 0
    encode = None
    for begin in range(0, len(examples), ENCODE_BATCH):
        texts, spans = zip(*(labelled_text(e, tokenizer) for e in examples[begin:begin + ENCODE_BATCH]), strict=True)
        encode = encode or _batch_encoder(tokenizer, texts[0])
        for ids, offsets, row_spans in zip(*encode(list(texts)), spans, strict=True):
            if len(ids) > max_length:
                too_long += 1
                continue
            labels = _labels(ids, offsets, row_spans)
            loss_tokens += int((labels != IGNORE_INDEX).sum())
            lengths.append(len(ids))
            rows.append({"input_ids": list(ids), "labels": labels.tolist()})
    stats = {
        "examples": len(rows),
        "dropped_too_long": too_long,
        "tokens": sum(lengths),
        "max_tokens": max(lengths, default=0),
        "loss_tokens": loss_tokens,
    }
    return rows, stats
