"""Sequence-level distillation: `medscribe sft --method distill` trains the student on a teacher's answers.

    settings = load_settings(flags={"sft": {"method": "distill", "teacher_backend": "openai",
                                            "teacher_model": "Qwen/Qwen2.5-72B-Instruct"}})
    manifest = run_sft(settings)      # train.run_sft hands method "distill" to run_distill

1. The teacher answers every report/qa training input through the normal `ask` path (`ask.run_batch`: the shared
   prompt builder, batched or concurrent, resumable, fingerprinted) into `<run>/teacher/` (results.jsonl,
   log.jsonl, summary.json, fingerprint.json). Teacher = `sft.teacher_backend`: "openai" (`teacher_model` on
   `teacher_base_url`, default ask.model / ask.base_url, key from MEDSCRIBE_ASK__API_KEY) or "local"
   (`teacher_model` folder + `teacher_adapter`). With `sft.rag_context` it sees as many retrieved cases as the
   student's prompts get (ask never retrieves a row's own case); without, none. A killed run asks only the rows
   not answered yet when rerun; a teacher whose fingerprint changed is refused by ask (use another --run).
2. Each answered row's target becomes the teacher's parsed answer (its `reasoning` too with prompt.variant =
   "cot"; with prompt.json_answer = false its plain text), PHI-scrubbed again (data.phi: a teacher can write a
   name it saw in pretraining); rows the teacher failed, answered with unparsable JSON or left empty, and
   dialogue rows (ask answers single turns), go to `<run>/distill_rejects.jsonl` with id and reason only (never
   the text). The student's rows are written to `<run>/distill_train.jsonl`.
3. The student trains on them as a one-stage curriculum (curriculum.py: resume, one history, the manifest);
   eval rows keep their gold references (paths.data/eval.jsonl), so eval loss says how close the student gets
   to the truth, not to the teacher. The manifest's `distill` records the teacher's identity (backend, model,
   server without credentials, adapter hash, ask fingerprint) and the row counts.

Compare student and teacher on the test split with bench/distill_demo.py (quality and latency, docs/sft.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medscribe.errors import RuntimeFailure, UsageError
from medscribe.io import atomic_write_jsonl

TEACHER_RUN = "teacher"
TRAIN_FILE = "distill_train.jsonl"
REJECTS_FILE = "distill_rejects.jsonl"
INPUT_FILE = "teacher_input.jsonl"
STAGE = "distill"


def teacher_k(settings: Any) -> int:
    """Retrieved cases the teacher sees: what the student's prompts carry (none without sft.rag_context)."""
    sft = settings.sft
    if not sft.rag_context:
        return 0
    return sft.rag_k or (settings.ask.k if settings.ask.k is not None else settings.index.k) or 1


def teacher_settings(settings: Any, ask_root: Path | None = None) -> Any:
    """The settings `ask` answers with as the teacher: [ask] with the teacher's backend, model, server or
    adapter, mode generate, k = teacher_k; ask runs under `ask_root` when given."""
    sft, ask = settings.sft, settings.ask
    update: dict[str, Any] = {"backend": sft.teacher_backend, "mode": "generate", "k": teacher_k(settings),
                              "copy_threshold": None}
    if sft.teacher_backend == "openai":
        if sft.teacher_adapter:
            raise UsageError("sft.teacher_adapter applies to sft.teacher_backend = 'local'; an OpenAI-compatible "
                             "teacher serves its adapter itself (name it in sft.teacher_model)")
        update.update(model=sft.teacher_model or ask.model, base_url=sft.teacher_base_url or ask.base_url,
                      adapter=None)
    else:
        update.update(local_model=sft.teacher_model or ask.local_model, adapter=sft.teacher_adapter)
    out = settings.model_copy(update={"ask": ask.model_copy(update=update)})
    if ask_root is not None:
        out = out.model_copy(update={"paths": settings.paths.model_copy(update={"ask": Path(ask_root)})})
    return out


def teacher_identity(summary: dict) -> dict:
    """Who answered: from the teacher run's summary.json and fingerprint (no key: ask never records one)."""
    parts = (summary.get("fingerprint") or {}).get("parts") or {}
    return {
        "backend": summary.get("backend"), "model": summary.get("model"), "server": parts.get("server"),
        "adapter": summary.get("adapter"), "adapter_hash": parts.get("adapter"),
        "model_files": parts.get("model_files"), "fingerprint": (summary.get("fingerprint") or {}).get("digest"),
        "prompt": parts.get("prompt"), "k": summary.get("k"), "temperature": parts.get("temperature"),
        "max_new_tokens": parts.get("max_new_tokens"),
    }


def student_rows(records: list, results: dict[str, dict], prompt: Any, phi: Any) -> tuple[list[dict], list[dict], int]:
    """(training rows with the teacher's answers as targets, rejects {id, reason}, answers the PHI scrubber
    changed), in the order of `records`."""
    kept, rejects = [], []
    # prompt.json_answer = false asks for (and trains on) plain text: the raw answer is the answer then.
    plain = not getattr(prompt, "json_answer", True)
    for record in records:
        row = results.get(record.id)
        if record.task == "dialogue":
            rejects.append({"id": record.id, "reason": "dialogue row: the teacher answers single-turn inputs"})
        elif row is None:
            rejects.append({"id": record.id, "reason": "the teacher has no answer for this row"})
        elif row.get("error"):
            rejects.append({"id": record.id, "reason": f"teacher failed: {str(row['error'])[:200]}"})
        elif not plain and not row.get("parse_ok"):
            rejects.append({"id": record.id, "reason": f"teacher answer is not valid answer JSON "
                                                       f"({str(row.get('parse_error') or 'unparsable')[:120]})"})
        elif not str(row.get("prediction") or "").strip():
            rejects.append({"id": record.id, "reason": "teacher answer is empty"})
        else:
            target = str(row["prediction"]).strip()
            cot = getattr(prompt, "variant", None) == "cot"
            reasoning = (row.get("parsed") or {}).get("reasoning") if cot else None
            kept.append({**record.model_dump(mode="json"), "target": target,
                         **({"reasoning": str(reasoning).strip()} if reasoning else {})})
    scrubbed = 0
    if kept and getattr(phi, "enabled", False):
        from medscribe.phi import Scrubber

        scrubber = Scrubber.from_settings(phi)
        for key in ("target", "reasoning"):
            rows = [r for r in kept if r.get(key)]
            clean = scrubber.scrub_texts([r[key] for r in rows])
            for r, text in zip(rows, clean, strict=True):
                scrubbed += text != r[key]
                r[key] = text
    return kept, rejects, scrubbed


def run_distill(settings: Any, run: str | None = None, resume: bool = False, retriever: Any = None,
                merge: bool | None = None, console: Any = None) -> dict:
    """Teacher answers (resumable) -> student rows -> a one-stage curriculum on them; returns the manifest."""
    from medscribe.ask import run_batch
    from medscribe.settings import SftStageSection
    from medscribe.sft.curriculum import PLAN_FILE, pick_curriculum_dir, run_curriculum
    from medscribe.sft.dataset import load_records

    sft = settings.sft
    if sft.stages:
        raise UsageError("sft.method = 'distill' trains one stage on the teacher's answers: remove sft.stages "
                         "(or distill first, then run the curriculum with the distilled rows as a stage's data)")
    say = console.print if console is not None else (lambda *a, **k: None)
    run_dir = pick_curriculum_dir(settings, run, resume)
    teacher = teacher_settings(settings, ask_root=run_dir)  # checks the teacher settings before any work
    train_path = Path(settings.paths.data) / "train.jsonl"
    records = load_records(train_path)
    asked = [r for r in records if r.task != "dialogue"]
    if not asked:
        raise UsageError(f"{train_path}: no report/qa rows for the teacher to answer (dialogue rows are not distilled)")
    inputs = atomic_write_jsonl(run_dir / INPUT_FILE, [
        {k: v for k, v in r.model_dump(mode="json").items() if k in ("id", "task", "input", "target", "organ",
                                                                        "modality", "specialty")} for r in asked])
    ask = teacher.ask
    who = ask.model if ask.backend == "openai" else ask.local_model
    say(f"[bold]teacher[/bold] {ask.backend} {who}{' + ' + str(ask.adapter) if ask.adapter else ''} answers "
        f"{len(asked)} training inputs (k = {ask.k}) -> {run_dir / TEACHER_RUN}", highlight=False)
    try:
        summary = run_batch(teacher, inputs, run=TEACHER_RUN, retriever=retriever if ask.k else None,
                            console=console)
    except UsageError as exc:  # ask's advice (--overwrite, --run) is for `medscribe ask`, not for this command
        if "use --overwrite" not in str(exc):
            raise
        raise UsageError(str(exc).split("; use --overwrite")[0] + "; the teacher's answers belong to other inputs "
                         "or another teacher: train under another --run (sft.run_name)") from None
    results = {}
    with open(run_dir / TEACHER_RUN / "results.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                results[str(row["id"])] = row
    kept, rejects, scrubbed = student_rows(records, results, settings.prompt, settings.data.phi)
    atomic_write_jsonl(run_dir / REJECTS_FILE, rejects)
    if not kept:
        reasons = sorted({r["reason"] for r in rejects})
        raise RuntimeFailure(f"distill: no usable teacher answer ({len(rejects)} rows rejected, see "
                             f"{run_dir / REJECTS_FILE}); first reason: {reasons[0] if reasons else 'none'}")
    if rejects:
        say(f"[yellow]warning:[/yellow] {len(rejects)} of {len(records)} training rows rejected (reasons in "
            f"{run_dir / REJECTS_FILE})", highlight=False)
    train_file = atomic_write_jsonl(run_dir / TRAIN_FILE, kept)
    student = settings.model_copy(update={"sft": sft.model_copy(update={
        "stages": [SftStageSection(name=STAGE, data=str(train_file))]})})
    record = {
        "teacher": teacher_identity(summary),
        "teacher_run": str(run_dir / TEACHER_RUN),
        "teacher_summary": {k: summary.get(k) for k in ("count", "answered", "failures", "json_valid_rate",
                                                        "latency_p50_s", "latency_p95_s", "tokens_per_s",
                                                        "asked_this_run", "resumed_rows")},
        "inputs": len(records), "trained_rows": len(kept), "rejected": len(rejects),
        "rejects_file": str(run_dir / REJECTS_FILE), "train_file": str(train_file),
        "answers_phi_scrubbed": scrubbed if settings.data.phi.enabled else "off (data.phi.enabled = false)",
        "eval_targets": "gold references (paths.data/eval.jsonl)",
    }
    # A run killed while the teacher was answering has no curriculum yet: training starts now, not resumes.
    resume_training = resume and (run_dir / PLAN_FILE).is_file()
    return run_curriculum(student, run=run_dir.name, resume=resume_training, retriever=retriever, merge=merge,
                          console=console, extra={"method": "distill", "distill": record})


def read_manifest(run_dir: str | Path) -> dict:
    """A distill run's training_config.json (bench/distill_demo.py), with a clear error when it is not one."""
    path = Path(run_dir) / "training_config.json"
    if not path.is_file():
        raise UsageError(f"{path}: not found (train the student first: medscribe sft --method distill)")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("method") != "distill":
        raise UsageError(f"{path}: not a distillation run (method {manifest.get('method')!r})")
    return manifest
