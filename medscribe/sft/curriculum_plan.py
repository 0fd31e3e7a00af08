"""Planning a curriculum (curriculum.py runs it): each stage's rows and settings, checked before any model loads,
the plan's fingerprint (a resume across a changed plan is refused), and where a run starts.

    plans = plan_stages(settings, run_dir)        # UsageError naming the stage and field for any bad stage
    record = curriculum_fingerprint(settings, plans)
    check_start(run_dir, plans, record, resume)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medscribe import fingerprint as fp
from medscribe.errors import UsageError

PLAN_FILE = "curriculum.json"
STAGES_DIR = "stages"
DONE_FILE = "done.json"
# Shared settings that shape the adapter: a resume with another value would continue different weights.
SHARED_KEYS = ("base_model", "lora_r", "lora_alpha", "lora_dropout", "target_modules", "max_seq_length",
               "rag_context", "rag_k", "chat_template", "epochs", "max_steps", "learning_rate")


@dataclass
class StagePlan:
    index: int
    name: str
    stage: Any  # SftStageSection
    sft: Any  # the [sft] section with the stage's values applied
    train_file: Path
    train_records: list
    eval_records: list
    selection: dict
    dir: Path  # paths.sft/<run>/stages/<name>
    content: str = ""  # hash of what the stage reads (its split file, or its knowledge documents)
    text_chunks: list[dict] | None = None  # a knowledge-text stage: [{"id", "text"}], else None

    def where(self) -> str:
        return f"sft.stages[{self.index}] ({self.name})"


def stage_settings(sft: Any, stage: Any) -> Any:
    """The [sft] section as the stage trains with it: its epochs, max_steps, learning rate, target modules and
    rag_context replace the shared ones where set (epochs alone also clears a shared max_steps)."""
    update: dict[str, Any] = {"stages": []}
    if stage.epochs is not None:
        update["epochs"], update["max_steps"] = stage.epochs, -1
    for key in ("max_steps", "learning_rate", "target_modules", "rag_context"):
        if getattr(stage, key) is not None:
            update[key] = getattr(stage, key)
    return sft.model_copy(update=update)


def is_multi_turn(record: Any) -> bool:
    return getattr(record, "task", None) == "dialogue" and len(record.turns) > 2


def select(records: list, stage: Any) -> list:
    """The rows of `records` the stage trains on: its `turns` and `where` filters."""
    kept = []
    for record in records:
        if stage.turns == "single" and is_multi_turn(record):
            continue
        if stage.turns == "multi" and not is_multi_turn(record):
            continue
        if any(str(getattr(record, f, None)) not in [str(v) for v in values] for f, values in stage.where.items()):
            continue
        kept.append(record)
    return kept


def select_hard(settings: Any, records: list, source: Path, where: str) -> tuple[list, dict]:
    """The rows whose answer in the eval/ask run `source` scored below sft.pairs_threshold on sft.pairs_metric:
    a hard-negative stage without a prepared file. Rows the run did not answer are left out (counted)."""
    from medscribe.evaluate.loading import results_file
    from medscribe.evaluate.runner import canonical_metric
    from medscribe.sft.pairs_eval import scores_of

    metric, threshold = canonical_metric(settings.sft.pairs_metric), settings.sft.pairs_threshold
    if not source.exists():
        raise UsageError(f"{where}.hard_from_eval: {source}: not found (no stage has been trained)")
    _, ask_path, scores = scores_of(settings, source, metric, f"{where}.hard_from_eval")
    scored = [r for r in records if str(r.id) in scores]
    kept = [r for r in scored if scores[str(r.id)] < threshold]
    if not kept:
        raise UsageError(
            f"{where}.hard_from_eval: no row scored below sft.pairs_threshold = {threshold} on {metric} in {source} "
            f"({len(scored)} of the stage's {len(records)} rows were scored there; no stage has been trained)")
    parts = [fp.file_hash(results_file(ask_path))]
    if (source / "rows.csv").is_file():
        parts.append(fp.file_hash(source / "rows.csv"))
    return kept, {"hard_from_eval": str(source), "hard_metric": metric, "hard_threshold": threshold,
                  "rows_scored": len(scored), "rows_below_threshold": len(kept), "content": fp.short_hash(parts)}


def plan_stages(settings: Any, run_dir: Path) -> list[StagePlan]:
    """Every stage's rows and settings, checked up front: UsageError (exit 2) before any model loads."""
    from medscribe.sft.dataset import DialogueRecord, TrainingRecord, check_reasoning, load_records

    sft = settings.sft
    config = getattr(settings, "_config_path", None)
    origin = f"{config}: " if config else ""
    data_dir = Path(settings.paths.data)
    known = set(TrainingRecord.model_fields) | set(DialogueRecord.model_fields)
    eval_all = load_records(data_dir / "eval.jsonl", required=False)
    plans: list[StagePlan] = []
    for i, stage in enumerate(sft.stages):
        where = f"{origin}sft.stages[{i}] ({stage.name})"
        if stage.text:
            plans.append(_text_plan(settings, i, stage, where, run_dir))
            continue
        unknown = sorted(set(stage.where) - known)
        if unknown:
            raise UsageError(f"{where}.where: unknown row field '{unknown[0]}' (known: {', '.join(sorted(known))})")
        path = Path(stage.data) if stage.data else data_dir / "train.jsonl"
        if not path.is_file():
            raise UsageError(f"{where}.data: {path}: file not found (no stage has been trained)")
        records = load_records(path)
        chosen = select(records, stage)
        if not chosen:
            raise UsageError(
                f"{where}: no row of {path} passes the stage's filter (turns = {stage.turns!r}, where = "
                f"{dict(stage.where)}) out of {len(records)}")
        hard: dict = {}
        content = fp.file_hash(path)
        if stage.hard_from_eval:
            chosen, hard = select_hard(settings, chosen, Path(stage.hard_from_eval), where)
            content = fp.short_hash([content, hard.pop("content")])
        check_reasoning(chosen, path, settings.prompt)
        evals = select(eval_all, stage)
        if sft.max_eval_samples is not None:
            evals = evals[: sft.max_eval_samples]
        plan = StagePlan(i, stage.name, stage, stage_settings(sft, stage), path, chosen, evals, {
            "file": str(path), "rows_in_file": len(records), "rows_selected": len(chosen),
            "eval_rows_selected": len(evals), "turns": stage.turns, "where": dict(stage.where), **hard},
            run_dir / STAGES_DIR / stage.name, content)
        plans.append(plan)
    for before, plan in zip(plans, plans[1:], strict=False):
        # One adapter keeps its modules; only a merge lets the next stage adapt others.
        if not before.stage.merge and list(before.sft.target_modules) != list(plan.sft.target_modules):
            raise UsageError(
                f"{origin}{plan.where()}.target_modules: differs from stage '{before.name}', which is not merged "
                f"(one adapter cannot change its modules): set merge = true on '{before.name}' or use the same "
                "target_modules")
    return plans


def _text_plan(settings: Any, i: int, stage: Any, where: str, run_dir: Path) -> StagePlan:
    """A knowledge-text stage: the documents read and chunked as the index does (index/knowledge.py, index.chunk_size
    characters with index.chunk_overlap), each chunk one plain-text row with loss on every token."""
    from medscribe.index.knowledge import expand_sources, load_document_chunks

    mixed = [k for k in ("data", "where") if getattr(stage, k)] + (["turns"] if stage.turns != "any" else [])
    if mixed or stage.rag_context:
        raise UsageError(f"{where}.text: a knowledge-text stage trains on documents, not rows: remove "
                         f"{', '.join(mixed) or 'rag_context'}")
    try:
        files = expand_sources(list(stage.text))
    except UsageError as exc:
        detail = str(exc).split(": ", 1)[-1]
        raise UsageError(f"{where}.text: {detail} (no stage has been trained)") from None
    chunks, digests = [], []
    for path in files:
        found, digest, _ocr = load_document_chunks(path, settings.index.chunk_size, settings.index.chunk_overlap,
                                                   settings.data.ocr)
        digests.append(digest)
        chunks += [{"id": c.record_id, "text": c.text} for c in found]
    if not chunks:
        raise UsageError(f"{where}.text: the documents hold no text")
    return StagePlan(i, stage.name, stage, stage_settings(settings.sft, stage), files[0], [], [], {
        "text": list(stage.text), "documents": [p.name for p in files], "chunks": len(chunks)},
        run_dir / STAGES_DIR / stage.name, fp.short_hash(digests), chunks)


def curriculum_fingerprint(settings: Any, plans: list[StagePlan]) -> dict:
    """Parts: each stage field (`stages[1].learning_rate`), each stage file's content, the shared settings."""
    parts: dict[str, Any] = {"stage_names": [p.name for p in plans]}
    for plan in plans:
        for key, value in plan.stage.model_dump(mode="json").items():
            parts[f"stages[{plan.index}].{key}"] = value
        parts[f"stages[{plan.index}].data_content"] = plan.content
    for key in SHARED_KEYS:
        parts[f"sft.{key}"] = getattr(settings.sft, key)
    parts["prompt"] = fp.short_hash(settings.prompt.model_dump(mode="json"))
    return fp.make(parts)


def pick_curriculum_dir(settings: Any, run: str | None, resume: bool) -> Path:
    """paths.sft/<run>; `--resume` without a name: the newest run with a curriculum.json."""
    from medscribe.sft.train import pick_run_dir

    if resume and not (run or settings.sft.run_name):
        root = Path(settings.paths.sft)
        runs = sorted((p.parent for p in root.glob(f"*/{PLAN_FILE}")), key=lambda p: p.stat().st_mtime)
        if not runs:
            raise UsageError(f"--resume: no curriculum run under {root} (name one with --run)")
        return runs[-1]
    return pick_run_dir(settings, run, resume)


def check_start(run_dir: Path, plans: list[StagePlan], record: dict, resume: bool) -> None:
    """A new run never lands on a started one; a resume only continues the same curriculum."""
    from medscribe.sft.train import last_checkpoint

    started = any((p.dir / DONE_FILE).is_file() or last_checkpoint(p.dir) for p in plans)
    if not resume:
        if started or last_checkpoint(run_dir) is not None:
            raise UsageError(f"{run_dir}: this run already has trained stages or checkpoints; continue it with "
                             "--resume or pick another --run")
        return
    stored = fp.read(run_dir / PLAN_FILE)
    if stored is None:
        raise UsageError(f"--resume: {run_dir} has no {PLAN_FILE} (not a curriculum run, or never started)")
    diff = fp.changes(stored, record)
    if diff:
        raise UsageError(f"--resume: {run_dir}: the curriculum changed since the run started "
                         f"({fp.describe_changes(diff).split(' (', 1)[1].rstrip(')')}); resuming would continue "
                         "another plan: restore the settings or start another --run")


def tokenize_text(chunks: list[dict], tokenizer: Any, max_length: int) -> tuple[list[dict], dict]:
    """Plain-text rows (continued pretraining on knowledge): the chunk + EOS, every token labelled; rows longer
    than max_length are dropped and counted, like tokenize_examples does."""
    rows, too_long = [], 0
    for chunk in chunks:
        ids = tokenizer(chunk["text"] + (tokenizer.eos_token or ""), add_special_tokens=False)["input_ids"]
        if len(ids) > max_length:
            too_long += 1
            continue
        rows.append({"input_ids": list(ids), "labels": list(ids)})
    lengths = [len(r["input_ids"]) for r in rows]
    return rows, {"examples": len(rows), "dropped_too_long": too_long, "tokens": sum(lengths),
                  "max_tokens": max(lengths, default=0), "loss_tokens": sum(lengths)}
