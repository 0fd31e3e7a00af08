"""The one prompt builder. `sft` trains on what it renders and `ask` serves with it, so the two can
never disagree on the template.

    from medscribe.prompts import build_messages, render_target
    messages = build_messages(record, task="report", prompt=settings.prompt, context=hits)

`record` is anything with `input` and optionally `organ`, `modality`, `specialty` (a Record, a dict).
`context` is a list of retrieved `Hit`s: shown as few-shot turns or as documents in the system prompt.
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
    "qa": 'Answer with JSON only: {"answer": "<answer>", "citations": ["<case id>", ...]}',
    "qa_cot": 'Answer with JSON only: {"reasoning": "<your reasoning>", "answer": "<answer>", "citations": []}',
}

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


def render_target(record: Any, task: str, prompt: Any) -> str:
    """The assistant turn the model is trained to produce for a record with a known target."""
    target = _get(record, "target")
    if target is None:
        raise ValueError("record has no target to render")
    if not getattr(prompt, "json_answer", True):
        return str(target)
    if task == "report":
        return json.dumps({"result": target}, ensure_ascii=False)
    return json.dumps({"answer": target, "citations": []}, ensure_ascii=False)


def system_prompt(task: str, prompt: Any, context: Sequence[Hit] = ()) -> str:
    variant = getattr(prompt, "variant", "detailed")
    text = getattr(prompt, "system", None) or SYSTEM_PROMPTS[(task, variant)]
    if getattr(prompt, "json_answer", True):
        text += "\n" + JSON_INSTRUCTIONS[f"{task}_cot" if variant == "cot" else task]
    if context and getattr(prompt, "context", "few_shot") == "system":
        lines = ["", "Similar cases:"]
        for hit in context:
            answer = f" -> {hit.answer}" if hit.answer else ""
            lines.append(f"[{hit.id}] {hit.text}{answer}")
        text += "\n".join(lines)
    return text


def build_messages(
    record: Any,
    task: str,
    prompt: Any,
    context: Sequence[Hit] = (),
    include_target: bool = False,
) -> list[dict[str, str]]:
    """Chat messages for one record: system, optional few-shot turns from `context`, the user turn,
    and (for training) the assistant target."""
    messages = [{"role": "system", "content": system_prompt(task, prompt, context)}]
    if context and getattr(prompt, "context", "few_shot") == "few_shot":
        for hit in context:
            if hit.answer is None:
                continue
            shot = {**hit.metadata, "input": hit.text, "target": hit.answer}
            messages.append({"role": "user", "content": render_user(shot, task, prompt)})
            messages.append({"role": "assistant", "content": render_target(shot, task, prompt)})
    messages.append({"role": "user", "content": render_user(record, task, prompt)})
    if include_target:
        messages.append({"role": "assistant", "content": render_target(record, task, prompt)})
    return messages


def build_prompt_completion(record: Any, task: str, prompt: Any, context: Sequence[Hit] = ()) -> dict:
    """TRL's prompt/completion form: loss on the completion only, whatever the chat template."""
    return {
        "prompt": build_messages(record, task, prompt, context),
        "completion": [{"role": "assistant", "content": render_target(record, task, prompt)}],
    }
