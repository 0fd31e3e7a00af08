"""The one prompt builder. `sft` trains on what it renders and `ask` serves with it, so the two can
never disagree on the template.

    from medscribe.prompts import build_messages, render_target
    messages = build_messages(record, task="report", prompt=settings.prompt, context=hits)

`record` is anything with `input` and optionally `organ`, `modality`, `specialty` (a Record, a dict); for
training also `target` and, with the chain-of-thought variant, `reasoning`.
`context` is a list of retrieved `Hit`s. Cases (hits with an answer) are few-shot turns (`prompt.context =
"few_shot"`) or listed in the system prompt (`"system"`); knowledge chunks (hits without an answer: PDF/DOCX/MD
documents of the index) are always listed in the system prompt as reference documents, so every hit counted in
`context_ids` reaches the model.

QA targets cite the shown context that holds the answer (`supporting_ids`): a listed case whose answer equals
the target after eval's exact-match normalization, or a reference document whose text contains the whole
normalized answer (answers of at least `MIN_QUOTE_WORDS` words: a "yes" occurs in any document). Few-shot cases
are demonstrations whose ids the prompt does not show, so they are never cited.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from medscribe.schemas import Hit

SYSTEM_PROMPTS: dict[tuple[str, str], str] = {
    ("report", "simple"): "You are a radiologist. Write the conclusion for the findings.",
    ("report", "detailed"): (
        "You are an experienced radiologist. Read the findings of an imaging study and write a concise "
        "conclusion in the same language as the findings, using standard radiological terminology."
    ),
    ("report", "cot"): (
        "You are an experienced radiologist. Read the findings of an imaging study, reason step by step "
        "about what they show, then write a concise conclusion in the same language as the findings."
    ),
    ("qa", "simple"): "You are a medical expert. Answer the question.",
    ("qa", "detailed"): (
        "You are a careful medical expert. Answer the question accurately and concisely in the same "
        "language as the question. Say so when the evidence is insufficient."
    ),
    ("qa", "cot"): (
        "You are a careful medical expert. Think through the question step by step, then answer it "
        "accurately and concisely in the same language as the question."
    ),
}

JSON_INSTRUCTIONS = {
    "report": 'Answer with JSON only: {"result": "<conclusion>"}',
    "report_cot": 'Answer with JSON only: {"reasoning": "<your reasoning>", "result": "<conclusion>"}',
    "qa": 'Answer with JSON only: {"answer": "<answer>", "citations": ["<id of a listed case or document that '
    'states the answer>", ...]}',
    "qa_cot": 'Answer with JSON only: {"reasoning": "<your reasoning>", "answer": "<answer>", "citations": ["<id '
    'of a listed case or document that states the answer>", ...]}',
}
# A shorter answer found inside a document is no evidence that the document states it ("yes", "no", "iron").
MIN_QUOTE_WORDS = 3

USER_TEMPLATES = {
    "report": "Organ: {organ}\nModality: {modality}\nFindings: {input}",
    "qa": "Specialty: {specialty}\nQuestion: {input}",
}


def _get(record: Any, key: str) -> Any:
    if isinstance(record, Mapping):
        return record.get(key)
    return getattr(record, key, None)


def render_user(record: Any, task: str, prompt: Any) -> str:
    """The user turn for one record; missing optional fields render as an empty string."""
    template = getattr(prompt, "user_template", None) or USER_TEMPLATES[task]
    values = {key: (_get(record, key) or "") for key in ("input", "organ", "modality", "specialty")}
    text = template.format(**values)
    # Drop lines whose field was empty ("Organ: "), so QA without specialty reads naturally.
    return "\n".join(line for line in text.split("\n") if not line.rstrip().endswith(":")).strip()


def render_target(record: Any, task: str, prompt: Any, context: Sequence[Hit] = ()) -> str:
    """The assistant turn the model is trained to produce for a record with a known target.

    With `prompt.variant = "cot"` the record's `reasoning` comes first when it has one (sft refuses to train a
    cot prompt on rows without it; the data stage's chat column and few-shot turns render what they have)."""
    target = _get(record, "target")
    if target is None:
        raise ValueError("record has no target to render")
    reasoning = None
    if getattr(prompt, "variant", "detailed") == "cot":
        reasoning = str(_get(record, "reasoning") or "").strip() or None
    if not getattr(prompt, "json_answer", True):
        return f"{reasoning}\n\n{target}" if reasoning else str(target)
    answer: dict[str, Any] = {"reasoning": reasoning} if reasoning else {}
    if task == "report":
        answer["result"] = target
    else:
        answer.update(answer=target, citations=supporting_ids(str(target), context, prompt))
    return json.dumps(answer, ensure_ascii=False)


def supporting_ids(target: str, context: Sequence[Hit], prompt: Any) -> list[str]:
    """Ids of the hits shown WITH their id that hold `target` (see the module docstring), in context order."""
    if not context:
        return []
    from medscribe.evaluate.metrics import normalize_text  # the form eval's exact match compares

    want = normalize_text(target)
    listed_cases = getattr(prompt, "context", "few_shot") == "system"
    ids: list[str] = []
    for hit in context:
        if hit.answer is not None:
            holds = listed_cases and normalize_text(hit.answer) == want
        else:
            holds = len(want.split()) >= MIN_QUOTE_WORDS and f" {want} " in f" {normalize_text(hit.text)} "
        if holds and hit.id not in ids:
            ids.append(hit.id)
    return ids


def system_prompt(task: str, prompt: Any, context: Sequence[Hit] = ()) -> str:
    variant = getattr(prompt, "variant", "detailed")
    text = getattr(prompt, "system", None) or SYSTEM_PROMPTS[(task, variant)]
    if getattr(prompt, "json_answer", True):
        text += "\n" + JSON_INSTRUCTIONS[f"{task}_cot" if variant == "cot" else task]
    cases = [hit for hit in context if hit.answer is not None]
    documents = [hit for hit in context if hit.answer is None]
    if cases and getattr(prompt, "context", "few_shot") == "system":
        text += "\n".join(["", "Similar cases:", *(f"[{hit.id}] {hit.text} -> {hit.answer}" for hit in cases)])
    if documents:  # knowledge chunks have no answer to show as a few-shot turn: they are listed in both modes
        text += "\n".join(["", "Reference documents:", *(f"[{hit.id}] {hit.text}" for hit in documents)])
    return text


def build_messages(
    record: Any,
    task: str,
    prompt: Any,
    context: Sequence[Hit] = (),
    include_target: bool = False,
) -> list[dict[str, str]]:
    """Chat messages for one record: system (with listed cases/documents), few-shot turns from the cases in
    `context`, the user turn, and (for training) the assistant target."""
    messages = [{"role": "system", "content": system_prompt(task, prompt, context)}]
    if context and getattr(prompt, "context", "few_shot") == "few_shot":
        for hit in context:
            if hit.answer is None:  # a knowledge chunk: listed in the system prompt
                continue
            shot = {**hit.metadata, "input": hit.text, "target": hit.answer}
            messages.append({"role": "user", "content": render_user(shot, task, prompt)})
            messages.append({"role": "assistant", "content": render_target(shot, task, prompt)})
    messages.append({"role": "user", "content": render_user(record, task, prompt)})
    if include_target:
        messages.append({"role": "assistant", "content": render_target(record, task, prompt, context)})
    return messages


def build_prompt_completion(record: Any, task: str, prompt: Any, context: Sequence[Hit] = ()) -> dict:
    """TRL's prompt/completion form: loss on the completion only, whatever the chat template."""
    return {
        "prompt": build_messages(record, task, prompt, context),
        "completion": [{"role": "assistant", "content": render_target(record, task, prompt, context)}],
    }


def build_chat_messages(
    record: Any,
    task: str,
    prompt: Any,
    context: Sequence[Hit] = (),
    history: Sequence[Mapping[str, str]] = (),
) -> list[dict[str, str]]:
    """Multi-turn chat (`medscribe chat`): `build_messages` for the new record, with the earlier turns of the
    conversation (user/assistant messages, oldest first, as they were sent and answered) between the few-shot
    cases and the new user turn. No history: exactly `build_messages`, so a single turn is what sft trains on."""
    messages = build_messages(record, task, prompt, context)
    earlier = [{"role": str(m["role"]), "content": str(m["content"])} for m in history]
    return [*messages[:-1], *earlier, messages[-1]]


DIALOGUE_SYSTEM = (
    "You are a helpful, careful medical assistant. Continue the conversation in its language and style; "
    "say so when you are not sure."
)


def build_dialogue_messages(turns: Sequence[Mapping[str, str]], prompt: Any = None,
                            system: str | None = None) -> list[dict[str, str]]:
    """Multi-turn samples from chat exports (data/chat_samples.py, sft): the system prompt (`system`, else
    `DIALOGUE_SYSTEM`), then the dialogue's user/assistant turns as they are. No JSON answer format and no
    report/qa template: the assistant turns are free text. `prompt` is accepted for symmetry with the other
    builders (a dialogue has no variant)."""
    text = system if system is not None and system.strip() else DIALOGUE_SYSTEM
    return [{"role": "system", "content": text},
            *({"role": str(t["role"]), "content": str(t["content"])} for t in turns)]


def attach_image(messages: list[dict[str, Any]], image: str | None) -> list[dict[str, Any]]:
    """`messages` from one of the builders above with `image` (a path) as a content part of the LAST user turn:
    `[{"type": "image", "image": PATH}, {"type": "text", "text": <the user text>}]`, the form vision-language
    chat templates (Qwen2-VL / Qwen2.5-VL) render and the OpenAI-compatible backend turns into an `image_url`
    part (ask/vision.py). The image comes first, as in the Qwen-VL model cards. No image: `messages` unchanged,
    so text-only rows of a vision run get exactly the text prompt."""
    if not image:
        return messages
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    out = [dict(m) for m in messages]
    out[last_user]["content"] = [{"type": "image", "image": str(image)},
                                 {"type": "text", "text": messages[last_user]["content"]}]
    return out
