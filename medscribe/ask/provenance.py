"""What produced an ask run: its fingerprint (`<run>/fingerprint.json`, and `summary.json["fingerprint"]`).

    from medscribe.ask.provenance import run_fingerprint, check_resume
    record = run_fingerprint(settings, records, "artifacts/data/test.jsonl", retriever)
    check_resume(run_dir, record, overwrite=False)   # UsageError naming what changed, or None

Parts (a value, or a 16-hex hash): `mode`, `input` (sha256 of the input file's content), `task`, `columns`; when
a model answers (mode generate / copy_or_generate): `backend`, `model` (local path or server model name),
`model_files` (local: names/sizes/mtimes of the weight and tokenizer files), `server` (openai: base_url without
credentials), `adapter` (content hash), `prompt` (hash of the messages the prompt builder renders for a probe
record, with a retrieved case and a knowledge chunk), `prompt.variant`, `prompt.context`, `temperature`,
`max_new_tokens`, `json_mode` (openai); when it retrieves (k > 0): `k`, `index` (index fingerprint),
`index.embedding_model`, `index.hybrid`, `index.search`, `index.threshold`, `index.rerank_model`, `index.siblings`,
`filter_fields`; `copy_threshold` in copy_or_generate. What cannot change an answer (batch size, concurrency,
timeouts, `--limit`) is left out, so `--limit 10` then a full run still resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medscribe import fingerprint as fp
from medscribe.errors import UsageError
from medscribe.schemas import Hit

FINGERPRINT_FILE = "fingerprint.json"
RUN_FILES = ("results.jsonl", "log.jsonl", "summary.json", FINGERPRINT_FILE)
LABELS = {
    "mode": "another ask mode", "input": "another input file", "task": "another task", "columns": "other columns",
    "backend": "another backend", "model": "another model", "model_files": "another model (its files changed)",
    "server": "another server", "adapter": "another adapter", "prompt": "another prompt",
    "prompt.variant": "another prompt", "prompt.context": "another prompt", "k": "another k",
    "index": "another index", "temperature": "other decoding settings", "max_new_tokens": "other decoding settings",
    "json_mode": "other decoding settings", "copy_threshold": "another copy threshold",
}

# A probe record and context: rendering them shows every part of the template (fields, few-shot turns,
# knowledge documents), so a change to the prompt settings or to the prompt builder changes the hash.
_PROBE_RECORD = {"input": "<input>", "organ": "<organ>", "modality": "<modality>", "specialty": "<specialty>"}
_PROBE_CONTEXT = [
    Hit(id="<case>", text="<case text>", answer="<case answer>", score=1.0,
        metadata={"organ": "<organ>", "modality": "<modality>", "specialty": "<specialty>", "kind": "case"}),
    Hit(id="<chunk>", text="<chunk text>", answer=None, score=0.5, metadata={"kind": "knowledge", "chunk": 0}),
]


def prompt_hash(settings: Any, tasks: list[str]) -> str:
    """Hash of the messages medscribe.prompts renders for each task in `tasks` (with and without context)."""
    from medscribe.prompts import build_dialogue_messages, build_messages

    def render(task: str) -> list:
        if task == "dialogue":  # the conversation is the row's (the input file's hash covers it)
            return [build_dialogue_messages([{"role": "user", "content": "<turn>"}], settings.prompt)]
        return [build_messages(_PROBE_RECORD, task, settings.prompt, context=ctx) for ctx in ((), _PROBE_CONTEXT)]

    rendered = {task: render(task) for task in sorted(set(tasks))}
    return fp.short_hash({"messages": rendered, "settings": settings.prompt.model_dump(mode="json")})


def run_fingerprint(settings: Any, records: list[dict[str, Any]], input_path: str | Path, retriever: Any = None,
                    k: int | None = None) -> dict[str, Any]:
    """The fingerprint record of a run over `records` read from `input_path` (see the module docstring)."""
    from medscribe.ask.core import effective_k

    ask = settings.ask
    k = effective_k(settings) if k is None else k
    parts: dict[str, Any] = {
        "mode": ask.mode,
        "input": fp.file_hash(input_path),
        "task": settings.data.task,
        "columns": dict(sorted(ask.columns.items())),
    }
    if ask.mode != "copy":
        parts["backend"] = ask.backend
        if ask.backend == "local":
            parts["model"] = str(ask.local_model)
            parts["model_files"] = fp.model_files_hash(str(ask.local_model))
            parts["adapter"] = fp.adapter_hash(ask.adapter)
        else:
            parts["model"] = ask.model
            parts["server"] = fp.public_url(ask.base_url)
            parts["json_mode"] = ask.json_mode
        parts["prompt"] = prompt_hash(settings, [r.get("task") or settings.data.task for r in records])
        parts["prompt.variant"] = settings.prompt.variant
        parts["prompt.context"] = settings.prompt.context
        parts["temperature"] = ask.temperature
        parts["max_new_tokens"] = ask.max_new_tokens
    if ask.mode == "copy_or_generate":
        parts["copy_threshold"] = ask.copy_threshold
    parts["k"] = k
    if k > 0:
        idx = settings.index
        parts["index"] = fp.index_fingerprint(settings, retriever)
        parts["index.embedding_model"] = idx.embedding_model
        parts["index.hybrid"] = idx.hybrid
        parts["index.search"] = idx.search
        parts["index.threshold"] = idx.threshold
        parts["index.rerank_model"] = idx.rerank_model
        parts["index.siblings"] = idx.siblings
        parts["filter_fields"] = list(ask.filter_fields)
    return fp.make(parts)


def check_resume(run_dir: Path, record: dict[str, Any], has_results: bool, overwrite: bool) -> None:
    """Before a run starts in `run_dir`: with `overwrite`, delete the run's files; otherwise refuse (UsageError)
    to resume results made by something else, or by a medscribe that recorded no fingerprint."""
    if overwrite:
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        return
    if not has_results:
        return
    advice = "use --overwrite to start it afresh or another --run"
    stored = fp.read(run_dir / FINGERPRINT_FILE)
    if stored is None:
        raise UsageError(
            f"{run_dir}: this run has results but no {FINGERPRINT_FILE} (made before runs recorded what produced "
            f"them), so resuming it could mix answers of another model or prompt; {advice}"
        )
    diff = fp.changes(stored, record)
    if diff:
        raise UsageError(f"{run_dir}: this run was made with {fp.describe_changes(diff, LABELS)}; {advice}")
