"""Batch asking with resume: `medscribe ask --input FILE [--run NAME]` -> `paths.ask/<run>/`.

    from medscribe.ask import run_batch
    summary = run_batch(settings, "artifacts/data/test.jsonl", run="baseline")

Files in the run folder:
- results.jsonl: one row per input id (contract in `core.RESULT_FIELDS`). Each finished row is appended
  and fsynced at once, so a kill -9 loses only the requests in flight. On restart the valid lines are read
  (a torn last line is dropped), failed rows are dropped so they are retried, the file is rewritten
  atomically, and only the ids not yet done are asked. At the end the file is compacted atomically in
  input order. No id ever appears twice.
- log.jsonl: one line per request (prompt messages, retrieved ids/scores, raw output, parsed answer,
  latency, tokens, attempts, error); append-only across reruns.
- summary.json: counts, failures, JSON validity rate, latency p50/p95, tokens/s, backend, model, adapter,
  k, json mode requested/used, mode and copied rows, and the run's fingerprint.
- fingerprint.json: what produced the run (`provenance.run_fingerprint`), written before the first row. A rerun
  of the same run with results present and another fingerprint is refused naming what changed (a resume would
  mix two models' answers under one name); `overwrite=True` (`--overwrite`) deletes the run's files first.
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medscribe.ask.core import (
    build_request,
    case_to_copy,
    check_mode,
    copy_generation,
    effective_k,
    make_backend,
    open_retriever,
    result_row,
    retrieve,
)
from medscribe.ask.generation import Generation
from medscribe.ask.inputs import read_inputs
from medscribe.ask.provenance import FINGERPRINT_FILE, check_resume, run_fingerprint
from medscribe.errors import RuntimeFailure, UsageError
from medscribe.io import atomic_write_json, atomic_write_jsonl


class _Appender:
    """Append JSON lines: write + flush per line (a kill -9 keeps every finished line: it is in the OS
    already); `durable` adds an fsync per line, so results also survive a power loss or an OS crash."""

    def __init__(self, path: Path, durable: bool):
        self.fh = open(path, "a", encoding="utf-8")
        self.durable = durable

    def write(self, row: dict[str, Any]) -> None:
        self.fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
        self.fh.flush()
        if self.durable:
            os.fsync(self.fh.fileno())

    def close(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()


def default_run_name(settings: Any) -> str:
    ask = settings.ask
    model = ask.model if ask.backend == "openai" else ask.local_model
    adapter = Path(ask.adapter).name if ask.adapter else "base"
    k = effective_k(settings)
    name = f"{ask.backend}-{Path(str(model)).name}-{adapter}-{'rag' + str(k) if k else 'norag'}"
    return re.sub(r"[^\w.-]+", "_", name)


def load_done(results: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """Finished rows by id from a previous (possibly killed) run, and how many broken lines were dropped."""
    done: dict[str, dict[str, Any]] = {}
    dropped = 0
    if not results.is_file():
        return done, dropped
    with open(results, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                dropped += 1  # a torn line from a kill mid-write: that row is simply asked again
                continue
            if isinstance(row, dict) and row.get("id") is not None and not row.get("error"):
                done[str(row["id"])] = row
    return done, dropped


def _trim_torn_tail(path: Path) -> None:
    """Cut a log file back to its last complete line."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    pos = (len(values) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def run_batch(
    settings: Any,
    input_path: str | Path,
    *,
    run: str | None = None,
    retriever: Any = None,
    backend: Any = None,
    limit: int | None = None,
    console: Any = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Answer every row of `input_path`, resumably; returns the summary (also written to summary.json).

    Raises UsageError when the run folder holds results made with another fingerprint (unless `overwrite`),
    RuntimeFailure when no row at all could be answered."""
    check_mode(settings)
    records, ids_from_rows = read_inputs(input_path, settings.ask.columns, settings.data.task)
    if limit is not None:
        records = records[:limit]
    run = run or default_run_name(settings)
    if not re.fullmatch(r"[\w.-]+", run):
        raise UsageError(f"--run: {run!r} must be letters, digits, '.', '_' or '-'")
    run_dir = Path(settings.paths.ask) / run
    run_dir.mkdir(parents=True, exist_ok=True)
    results_path, log_path = run_dir / "results.jsonl", run_dir / "log.jsonl"

    k = effective_k(settings)
    if retriever is None and k > 0 and settings.index.server_url:
        retriever = open_retriever(settings)  # a server index is fingerprinted by its row count: open it first
    fingerprint = run_fingerprint(settings, records, input_path, retriever, k)
    check_resume(run_dir, fingerprint, has_results=bool(load_done(results_path)[0]), overwrite=overwrite)
    atomic_write_json(run_dir / FINGERPRINT_FILE, fingerprint)  # before any row: a killed run has it too

    previous, dropped = load_done(results_path)
    by_id = {r["id"]: r for r in records}
    done = {i: row for i, row in previous.items() if i in by_id and row.get("input") == by_id[i]["input"]}
    if results_path.exists():  # start from a clean file: finished rows only, no torn line, no failures
        atomic_write_jsonl(results_path, [done[r["id"]] for r in records if r["id"] in done])
    _trim_torn_tail(log_path)
    todo = [r for r in records if r["id"] not in done]

    started = time.monotonic()
    new_rows: dict[str, dict[str, Any]] = {}
    info: dict[str, Any] = {}
    if todo:
        if retriever is None and k > 0:
            retriever = open_retriever(settings)
        hits = retrieve(retriever, todo, k, settings.ask.filter_fields)
        cases = [case_to_copy(row_hits, settings) for row_hits in hits]
        # copy mode copies every row (a row with no case to copy fails, it is not handed to a model)
        generate = [i for i, case in enumerate(cases) if case is None and settings.ask.mode != "copy"]
        requests = {i: build_request(todo[i], hits[i], settings) for i in generate}
        results_out, log_out = _Appender(results_path, durable=True), _Appender(log_path, durable=False)
        progress = _progress(console)
        task_id = progress.add_task(f"ask {run}", total=len(todo))

        def write(index: int, row: dict[str, Any], messages: list | None, generation: Generation) -> None:
            results_out.write(row)
            log_out.write(_log_line(row, messages, generation, info))
            new_rows[todo[index]["id"]] = row
            progress.advance(task_id)

        try:
            with progress:
                for i, case in enumerate(cases):
                    if i not in requests:
                        task = todo[i].get("task") or settings.data.task
                        generation = copy_generation(case, task)
                        write(i, result_row(todo[i], hits[i], generation, task, case, copied=case is not None),
                              None, generation)
                if generate:
                    backend = backend or make_backend(settings)  # copy mode never loads a model
                    info = backend.describe()
                    order = list(requests)

                    def on_done(index: int, generation: Generation) -> None:
                        i = order[index]
                        row = result_row(todo[i], hits[i], generation, requests[i].task)
                        write(i, row, requests[i].messages, generation)

                    backend.generate([requests[i] for i in order], on_done)
        finally:
            results_out.close()
            log_out.close()
    generation_s = time.monotonic() - started

    final = [new_rows.get(r["id"]) or done[r["id"]] for r in records if r["id"] in new_rows or r["id"] in done]
    atomic_write_jsonl(results_path, final)
    summary = _summary(settings, backend, info, run, run_dir, input_path, final, len(records), new_rows,
                       len(done), dropped, generation_s, ids_from_rows)
    summary["fingerprint"] = fingerprint
    atomic_write_json(run_dir / "summary.json", summary)
    if summary["answered"] == 0:
        reasons = [row["error"] for row in final if row.get("error")]
        reason = max(set(reasons), key=reasons.count) if reasons else "no rows answered"
        raise RuntimeFailure(f"ask: every row failed ({len(reasons)} of {len(records)}); first cause: {reason}")
    return summary


def _progress(console: Any):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console or Console(stderr=True), transient=False,
    )


def _log_line(row: dict[str, Any], messages: list | None, gen: Generation, info: dict) -> dict[str, Any]:
    return {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "id": row["id"],
        "task": row["task"],
        "backend": info.get("backend"),
        "model": info.get("model"),
        "adapter": info.get("adapter"),
        "messages": messages,
        "retrieved_ids": row["retrieved_ids"],
        "retrieved_scores": row["retrieved_scores"],
        "raw": gen.raw,
        "parsed": row["parsed"],
        "parse_ok": row["parse_ok"],
        "parse_error": row["parse_error"],
        "repaired": row["repaired"],
        "latency_s": row["latency_s"],
        "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": gen.completion_tokens,
        "attempts": gen.attempts,
        "error": gen.error,
        "copied_from": row.get("copied_from"),
    }


def _summary(settings, backend, info, run, run_dir, input_path, rows, total, new_rows, resumed, dropped,
             generation_s, ids_from_rows) -> dict[str, Any]:
    ok_rows = [r for r in rows if not r.get("error")]
    failed = [r for r in rows if r.get("error")]
    latencies = [r["latency_s"] for r in ok_rows if r.get("latency_s") is not None]
    fresh_ok = [r for r in new_rows.values() if not r.get("error")]
    new_tokens = sum(r.get("completion_tokens") or 0 for r in fresh_ok)
    ask = settings.ask
    copy_only = ask.mode == "copy"
    return {
        "run": run,
        "run_dir": str(run_dir),
        "input": str(input_path),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "count": total,
        "answered": len(ok_rows),
        "failures": len(failed) + (total - len(rows)),
        "errors": sorted({r["error"] for r in failed})[:10],
        "json_valid": sum(1 for r in ok_rows if r.get("parse_ok")),
        "json_valid_rate": round(sum(1 for r in ok_rows if r.get("parse_ok")) / len(ok_rows), 4) if ok_rows else None,
        "json_repaired": sum(1 for r in ok_rows if r.get("repaired")),
        "latency_p50_s": _round(percentile(latencies, 0.5)),
        "latency_p95_s": _round(percentile(latencies, 0.95)),
        "asked_this_run": len(new_rows),
        "resumed_rows": resumed,
        "torn_lines_dropped": dropped,
        "wall_s": round(generation_s, 3),
        "completion_tokens": new_tokens,
        "tokens_per_s": round(new_tokens / generation_s, 2) if new_rows and generation_s > 0 else None,
        "mode": ask.mode,
        "copy_threshold": ask.copy_threshold if ask.mode == "copy_or_generate" else None,
        "copied": sum(1 for r in rows if r.get("copied")),
        # copy mode answers without a model: no backend, model or adapter produced its rows
        "backend": None if copy_only else ask.backend,
        "model": None if copy_only else (
            info.get("model") or (ask.model if ask.backend == "openai" else ask.local_model)),
        "adapter": None if copy_only else info.get("adapter", ask.adapter),
        "device": info.get("device"),
        "tokenizer_source": info.get("tokenizer_source"),
        "k": effective_k(settings),
        "rag": effective_k(settings) > 0,
        "prompt_context": settings.prompt.context,
        "json_mode": ask.json_mode if ask.backend == "openai" else None,
        "json_mode_used": getattr(backend, "json_mode_used", None),
        "json_mode_fallback": getattr(backend, "json_mode_fallback", None),
        "ids_from_row_numbers": ids_from_rows,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
