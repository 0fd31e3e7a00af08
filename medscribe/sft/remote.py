"""Remote fine-tuning on an OpenAI-compatible fine-tuning API (`medscribe sft remote`): upload, start, poll.

    medscribe sft remote --run gpt-radiology-v1            # upload train/eval, start the job, wait for it
    medscribe sft remote --run gpt-radiology-v1 --no-wait  # start it and return; the same command later polls
    from medscribe.sft.remote import run_remote; job = run_remote(settings, run="gpt-radiology-v1")

The training files are the chat examples the local backends train on (`build_examples`: the one prompt builder
that `ask` serves with, retrieved context included when `sft.rag_context` is on), as `{"messages": [...]}`
lines, written into the run folder before anything is uploaded. `job.json` in the run folder records the file
ids and the job id as soon as the server hands them out, so a rerun after a crash or Ctrl-C polls the same job
instead of uploading and paying twice. The API key is `ask.api_key` (MEDSCRIBE_ASK__API_KEY or OPENAI_API_KEY):
read from the environment, never written or printed. Data sent to a hosted API leaves the hospital: medscribe
uploads only what `data` wrote, which is PHI-scrubbed, but whether it may leave at all is the user's decision.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from medscribe.errors import RuntimeFailure, UsageError
from medscribe.io import atomic_write_json, atomic_write_text

TERMINAL = ("succeeded", "failed", "cancelled")


def chat_lines(examples: list[dict]) -> str:
    """One `{"messages": prompt + completion}` JSON line per example (OpenAI's chat fine-tuning format)."""
    return "".join(
        json.dumps({"messages": e["prompt"] + e["completion"]}, ensure_ascii=False) + "\n" for e in examples
    )


def _client(settings: Any) -> Any:
    from openai import OpenAI

    key = settings.ask.api_key.get_secret_value() if settings.ask.api_key else None
    base_url = settings.sft.remote_base_url or settings.ask.base_url
    if not key and (base_url is None or "api.openai.com" in base_url):
        raise UsageError("sft remote: set MEDSCRIBE_ASK__API_KEY (or OPENAI_API_KEY) for the fine-tuning API")
    return OpenAI(api_key=key or "none", base_url=base_url, timeout=settings.ask.timeout, max_retries=3)


def _error(exc: Exception, secrets: list[str | None]) -> str:
    from medscribe.ask.generation import one_line, redact

    return redact(one_line(exc, 200), secrets)


def _job_state(job: Any) -> dict[str, Any]:
    error = getattr(job, "error", None)
    return {
        "job_id": job.id,
        "status": job.status,
        "fine_tuned_model": getattr(job, "fine_tuned_model", None),
        "trained_tokens": getattr(job, "trained_tokens", None),
        "error": getattr(error, "message", None) if error else None,
    }


def run_remote(
    settings: Any, run: str | None = None, wait: bool = True, retriever: Any = None, console: Any = None,
    poll_s: float | None = None,
) -> dict[str, Any]:
    """Start (or pick up) the remote job of run `paths.sft/<run>`; returns the job record (also job.json)."""
    from medscribe.sft.train import pick_run_dir

    sft = settings.sft
    say = console.print if console is not None else (lambda *a, **k: None)
    run_dir = pick_run_dir(settings, run, resume=False)
    job_file = run_dir / "job.json"
    record: dict[str, Any] = json.loads(job_file.read_text(encoding="utf-8")) if job_file.is_file() else {}
    client = _client(settings)
    secrets = [settings.ask.api_key.get_secret_value() if settings.ask.api_key else None]
    try:
        if not record.get("job_id"):
            record = _start(settings, client, run_dir, record, retriever, say)
            atomic_write_json(job_file, record)
        else:
            say(f"picking up job {record['job_id']} ({job_file})", highlight=False)
        if not wait:
            return record
        interval = poll_s if poll_s is not None else sft.remote_poll_s
        status = None
        while True:
            state = _job_state(client.fine_tuning.jobs.retrieve(record["job_id"]))
            record.update(state)
            atomic_write_json(job_file, record)
            if state["status"] != status:
                say(f"job {record['job_id']}: {state['status']}", highlight=False)
                status = state["status"]
            if status in TERMINAL:
                break
            time.sleep(interval)
    except (UsageError, RuntimeFailure):
        raise
    except Exception as exc:  # openai.APIError and friends: one line, the key scrubbed
        raise RuntimeFailure(f"sft remote ({settings.sft.remote_base_url or settings.ask.base_url}): "
                             f"{_error(exc, secrets)}; rerun the same command to continue") from None
    if record["status"] != "succeeded":
        raise RuntimeFailure(f"remote job {record['job_id']} {record['status']}: {record.get('error') or 'no reason'}")
    say(f"fine-tuned model: {record['fine_tuned_model']}", highlight=False)
    return record


def _start(settings: Any, client: Any, run_dir: Path, record: dict, retriever: Any, say: Any) -> dict:
    """Write the chat files, upload them (once: ids are kept in the record), create the job."""
    from medscribe.sft.train import training_examples

    sft = settings.sft
    examples = training_examples(settings, run_dir, retriever, reuse=True, is_main=True)
    (train, _), (evaluation, _) = examples["train"], examples["eval"]
    if not train:
        raise UsageError(f"{Path(settings.paths.data) / 'train.jsonl'}: no training rows")
    files = {"train": run_dir / "remote_train.jsonl", "eval": run_dir / "remote_eval.jsonl"}
    atomic_write_text(files["train"], chat_lines(train))
    if evaluation:
        atomic_write_text(files["eval"], chat_lines(evaluation))
    for split, path in files.items():
        key = f"{split}_file_id"
        if record.get(key) or not path.is_file():
            continue
        with path.open("rb") as handle:
            record[key] = client.files.create(file=handle, purpose="fine-tune").id
        atomic_write_json(run_dir / "job.json", record)  # an upload is never paid for twice
        say(f"uploaded {path.name} ({sum(1 for _ in path.open(encoding='utf-8'))} rows) as {record[key]}",
            highlight=False)
    hyper: dict[str, Any] = {"n_epochs": max(1, round(sft.epochs))}
    job = client.fine_tuning.jobs.create(
        model=sft.remote_model,
        training_file=record["train_file_id"],
        validation_file=record.get("eval_file_id"),
        hyperparameters=hyper,
        suffix=run_dir.name[:18],
        seed=sft.seed,
    )
    record.update({"model": sft.remote_model, "hyperparameters": hyper, "train_rows": len(train),
                   "eval_rows": len(evaluation), **_job_state(job)})
    say(f"started job {job.id} on {sft.remote_model}", highlight=False)
    return record
