"""The pieces single and batch asking share: retrieval, the prompt, the backend, the result row.

    from medscribe.ask import ask_one
    row = ask_one(settings, "Очаг 5 мм в белом веществе", organ="головной мозг", modality="МРТ")
    row["prediction"], row["retrieved_ids"]

The retriever and the backend are arguments (dependency injection): tests pass fakes, the CLI passes
None and gets the real ones. With k=0 (`--no-rag`) the index is never opened.

Answer modes (`ask.mode`): `generate` (the model answers), `copy` (the answer of the nearest retrieved training
case, no model loaded: the retrieval-copy baseline), `copy_or_generate` (copy when the nearest case's cosine is
at least `ask.copy_threshold`, generate otherwise). A copied answer is written in the same JSON structure a model
answer has and parsed by the same parser, so eval scores it like any run; `copied_from` names the case.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from medscribe.ask.answers import parse_answer
from medscribe.ask.generation import Generation, Request
from medscribe.errors import RuntimeFailure, UsageError
from medscribe.schemas import ANSWER_TEXT_FIELD, Hit

RESULT_FIELDS = (
    "id", "task", "input", "reference", "prediction", "raw", "parsed", "parse_ok", "specialty", "organ",
    "modality", "retrieved_ids", "retrieved_scores", "error", "latency_s", "prompt_tokens", "completion_tokens",
)
NO_CASE_TO_COPY = "copy: no retrieved case with an answer (index.threshold, filters or k left none)"


def effective_k(settings: Any) -> int:
    """ask.k when set (`--k`, `--no-rag` = 0), else the index's default k."""
    return settings.ask.k if settings.ask.k is not None else settings.index.k


def check_mode(settings: Any) -> None:
    """Copy modes need retrieval, and copy_or_generate a threshold: say so before any work is done."""
    ask = settings.ask
    if ask.mode != "generate" and effective_k(settings) == 0:
        raise UsageError(f"ask.mode = {ask.mode!r} copies a retrieved case: it needs k >= 1 (not --no-rag / k = 0)")
    if ask.mode == "copy_or_generate" and ask.copy_threshold is None:
        raise UsageError("ask.mode = 'copy_or_generate' needs ask.copy_threshold (--copy-threshold, a cosine)")


def case_to_copy(hits: list[Hit], settings: Any) -> Hit | None:
    """The retrieved case whose answer this row copies, or None when the model must answer.

    The nearest hit that is a case (has an answer; knowledge chunks have none). copy: always that case;
    copy_or_generate: only when its score (cosine) is >= ask.copy_threshold."""
    mode = settings.ask.mode
    if mode == "generate":
        return None
    case = next((h for h in hits if h.answer is not None), None)
    if mode == "copy_or_generate" and (case is None or case.score < settings.ask.copy_threshold):
        return None
    return case


def copy_generation(case: Hit | None, task: str) -> Generation:
    """A copied answer as a Generation: the case's answer in the task's answer JSON (qa cites the case)."""
    if case is None:
        return Generation(error=NO_CASE_TO_COPY)
    answer: dict[str, Any] = {ANSWER_TEXT_FIELD[task]: case.answer}
    if task == "qa":
        answer["citations"] = [case.id]
    return Generation(raw=json.dumps(answer, ensure_ascii=False), latency_s=0.0, attempts=0)


def open_retriever(settings: Any) -> Any | None:
    if effective_k(settings) == 0:
        return None
    try:
        from medscribe.index import Retriever
    except ImportError:
        raise RuntimeFailure("retrieval needs the index stage (medscribe.index), not installed; use --no-rag") from None
    return Retriever.open(settings)


def make_backend(settings: Any) -> Any:
    backend = settings.ask.backend
    if backend == "openai":
        if settings.ask.adapter:
            raise UsageError(
                "--adapter applies to the local backend; to serve an adapter with vLLM start it with "
                "--lora-modules NAME=PATH and pass --model NAME"
            )
        from medscribe.ask.backend_openai import OpenAIBackend

        return OpenAIBackend(settings.ask)
    if backend == "local":
        from medscribe.vlm import is_vision_model

        if is_vision_model(settings.ask.local_model):  # Qwen2-VL & co: images + text (ask/vision.py)
            from medscribe.ask.vision import VisionLocalBackend

            return VisionLocalBackend(settings.ask)
        from medscribe.ask.backend_local import LocalBackend

        return LocalBackend(settings.ask)
    raise UsageError(f"ask.backend: unknown backend {backend!r} (use openai or local)")  # pragma: no cover


def retrieve(retriever: Any, records: list[dict[str, Any]], k: int, filter_fields: list[str]) -> list[list[Hit]]:
    """Top-k hits per record, batched; a record never retrieves itself (its id is excluded). Dialogue rows
    retrieve nothing: their context is the conversation (sft trains them without retrieval)."""
    if retriever is None or k == 0 or not records:
        return [[] for _ in records]
    # search_many takes one filter for all its queries, so records are grouped by their filter values.
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        if record.get("task") == "dialogue":
            continue
        groups[tuple((f, record.get(f)) for f in filter_fields if record.get(f))].append(i)
    hits: list[list[Hit]] = [[] for _ in records]
    for key, indices in groups.items():
        found = retriever.search_many(
            [records[i]["input"] for i in indices],
            k=k,
            filters=dict(key) or None,
            exclude_ids=[{records[i]["id"]} if records[i].get("id") else set() for i in indices],
        )
        for i, row_hits in zip(indices, found, strict=True):
            hits[i] = list(row_hits)[:k]
    return hits


def build_request(record: dict[str, Any], hits: list[Hit], settings: Any) -> Request:
    from medscribe.prompts import attach_image, build_dialogue_messages, build_messages

    task = record.get("task") or settings.data.task
    prompt = settings.prompt
    if task == "dialogue":  # the turns before the scored answer, as sft's build_dialogue_example renders them
        messages = build_dialogue_messages(record["turns"][:-1], prompt, record.get("system"))
        return Request(messages=messages, task=task, reasoning=False)
    if record.get("image"):
        from medscribe.ask.vision import check_backend_takes_images

        check_backend_takes_images(settings)
    return Request(
        messages=attach_image(build_messages(record, task, prompt, context=hits), record.get("image")),
        task=task,
        reasoning=prompt.variant == "cot" and prompt.json_answer,
    )


def result_row(record: dict[str, Any], hits: list[Hit], generation: Generation, task: str,
               copied_from: Hit | None = None, copied: bool = False) -> dict[str, Any]:
    """One results.jsonl row (the contract eval reads); `copied` marks a retrieval-copy answer."""
    failed = generation.error is not None
    parsed = None if failed else parse_answer(generation.raw, task)
    return {
        "id": record.get("id"),
        "task": task,
        "input": record["input"],
        "reference": record.get("target"),
        "prediction": None if failed else parsed.prediction,
        "raw": generation.raw,
        "parsed": None if failed else parsed.parsed,
        "parse_ok": False if failed else parsed.ok,
        "specialty": record.get("specialty"),
        "organ": record.get("organ"),
        "modality": record.get("modality"),
        "retrieved_ids": [h.id for h in hits],
        "retrieved_scores": [round(float(h.score), 6) for h in hits],
        "error": generation.error,
        "latency_s": round(generation.latency_s, 4),
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": generation.completion_tokens,
        # Not part of the eval contract; the log has the same, kept here for a quick look.
        "parse_error": None if failed or parsed.ok else parsed.reason,
        "repaired": False if failed else parsed.repaired,
        "copied": copied,
        "copied_from": copied_from.id if copied_from is not None else None,
    }


def ask_one(
    settings: Any,
    text: str,
    *,
    organ: str | None = None,
    modality: str | None = None,
    specialty: str | None = None,
    task: str | None = None,
    retriever: Any = None,
    backend: Any = None,
    image: str | None = None,
) -> dict[str, Any]:
    """Answer one finding/question: retrieve, prompt, generate, parse. Returns a results row (+ hits).
    `image`: a path sent with the text (a vision-language model or server sees it; ask/vision.py)."""
    if not text or not text.strip():
        raise UsageError("ask: the text to answer is empty")
    if image:
        from pathlib import Path

        from medscribe.ask.vision import check_image

        image = check_image(image, Path.cwd(), "--image")
    check_mode(settings)
    task = task or settings.data.task
    record = {"id": None, "input": text.strip(), "organ": organ, "modality": modality, "specialty": specialty,
              "image": image}
    record["task"] = task
    k = effective_k(settings)
    if retriever is None and k > 0:
        retriever = open_retriever(settings)
    hits = retrieve(retriever, [record], k, settings.ask.filter_fields)[0]
    case = case_to_copy(hits, settings)
    if settings.ask.mode == "copy" or case is not None:
        row = result_row(record, hits, copy_generation(case, task), task, copied_from=case,
                         copied=case is not None)
        row["hits"], row["messages"] = [h.model_dump() for h in hits], None
    else:
        request = build_request(record, hits, settings)
        backend = backend or make_backend(settings)
        generations: list[Generation] = []
        backend.generate([request], lambda _i, gen: generations.append(gen))
        row = result_row(record, hits, generations[0], task)
        row["hits"] = [h.model_dump() for h in hits]
        row["messages"] = request.messages
    if row["error"]:
        raise RuntimeFailure(f"ask: {row['error']}")
    return row
