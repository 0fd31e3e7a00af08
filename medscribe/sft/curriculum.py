"""Curricula and two-stage LoRA: `[[sft.stages]]` trained one after another in one `medscribe sft` run.

    settings = load_settings("medscribe.toml")    # with [[sft.stages]] tables (docs/sft.md)
    manifest = run_sft(settings)                   # train.run_sft hands a run with stages to run_curriculum

Every stage trains the adapter the stage before it left (same LoRA weights, a new optimizer and schedule with
the stage's epochs / max_steps / learning rate), on its own rows: a split file (`data`, default
paths.data/train.jsonl) narrowed by `where` (row field -> kept values) and `turns` (single / multi). A stage with
`merge = true` is merged into its base in 16 bits (merge.merge_adapter) and the next stage trains a FRESH
adapter, possibly on other `target_modules`, on the merged model: the two-stage LoRA recipe. Eval rows are
paths.data/eval.jsonl narrowed by the same filter.

Everything a stage needs is checked before any model loads (files, rows, filters, target modules), so a stage
naming a missing file is exit 2 with nothing trained. Layout of paths.sft/<run>/:
- curriculum.json: the plan's fingerprint (every stage's settings and data file content, the shared LoRA and
  prompt settings); `--resume` refuses a run whose curriculum changed, naming the stage and the field.
- stages/<name>/: checkpoints/, history.json, examples.json (its prompts: a resumed stage trains on the same),
  adapter/ (the adapter after the stage), merged/ (merge = true), done.json (the stage's record, written when
  it finished: `--resume` skips finished stages and continues the first unfinished one from its checkpoint).
- history.json: ONE history, every entry tagged `stage`, `step` counted over the whole run (`stage_step`
  within the stage), plus the step range of each stage.
- adapter/ (the last stage's adapter), training_config.json (the manifest: `stages`, one record each, and
  `serve`: the model and adapter `ask` must load, e.g. the merged stage-1 model + the stage-2 adapter).
"""

from __future__ import annotations

import gc
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medscribe import fingerprint as fp
from medscribe.errors import RuntimeFailure, UsageError
from medscribe.io import atomic_write_json

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
        check_reasoning(chosen, path, settings.prompt)
        evals = select(eval_all, stage)
        if sft.max_eval_samples is not None:
            evals = evals[: sft.max_eval_samples]
        plan = StagePlan(i, stage.name, stage, stage_settings(sft, stage), path, chosen, evals, {
            "file": str(path), "rows_in_file": len(records), "rows_selected": len(chosen),
            "eval_rows_selected": len(evals), "turns": stage.turns, "where": dict(stage.where)},
            run_dir / STAGES_DIR / stage.name)
        plans.append(plan)
    for before, plan in zip(plans, plans[1:], strict=False):
        # One adapter keeps its modules; only a merge lets the next stage adapt others.
        if not before.stage.merge and list(before.sft.target_modules) != list(plan.sft.target_modules):
            raise UsageError(
                f"{origin}{plan.where()}.target_modules: differs from stage '{before.name}', which is not merged "
                f"(one adapter cannot change its modules): set merge = true on '{before.name}' or use the same "
                "target_modules")
    return plans


def curriculum_fingerprint(settings: Any, plans: list[StagePlan]) -> dict:
    """Parts: each stage field (`stages[1].learning_rate`), each stage file's content, the shared settings."""
    parts: dict[str, Any] = {"stage_names": [p.name for p in plans]}
    for plan in plans:
        for key, value in plan.stage.model_dump(mode="json").items():
            parts[f"stages[{plan.index}].{key}"] = value
        parts[f"stages[{plan.index}].data_content"] = fp.file_hash(plan.train_file)
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


def run_curriculum(settings: Any, run: str | None = None, resume: bool = False, retriever: Any = None,
                   merge: bool | None = None, console: Any = None, extra: dict | None = None) -> dict:
    """Train every stage of settings.sft.stages in order; return (and write) the manifest. `extra` is merged
    into the manifest (distill.py records its teacher there)."""
    from medscribe.sft.backends import choose_setup, resolve_base_model
    from medscribe.sft.train import last_checkpoint, split_examples

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("sft.stages runs in one process (not under torchrun/accelerate yet): start it plainly")
    say = console.print if console is not None else (lambda *a, **k: None)
    sft = settings.sft
    run_dir = pick_curriculum_dir(settings, run, resume)
    plans = plan_stages(settings, run_dir)
    record = curriculum_fingerprint(settings, plans)
    check_start(run_dir, plans, record, resume)
    setup = choose_setup(plans[0].sft)
    if setup.backend == "unsloth":
        import unsloth  # noqa: F401  (before trl/transformers/peft: it patches them)
    base_path = resolve_base_model(sft.base_model)
    atomic_write_json(run_dir / PLAN_FILE, record)
    # Prompts of every stage now (retrieval included), so a broken index fails before stage 1 trains.
    examples = {p.name: _stage_examples(settings, p, retriever, split_examples) for p in plans}

    say(f"[bold]backend[/bold] {setup.backend} ({setup.reason}) · device {setup.device} · dtype {setup.precision} "
        f"· quantization {setup.quantization} · {len(plans)} stages", highlight=False)
    for note in setup.notes:
        say(f"[yellow]warning:[/yellow] {note}", highlight=False)

    records: list[dict] = []
    model = tokenizer = loaded = None
    previous_adapter: Path | None = None  # weights the next stage starts from (None: a fresh adapter)
    offset, tokenized = 0, {}
    for plan in plans:
        done = _read_json(plan.dir / DONE_FILE)
        if done is not None:  # finished before a resume: its adapter (or merged model) carries over
            records.append(done)
            offset = done["last_step"]
            previous_adapter = None if done.get("merged") else Path(done["adapter"])
            base_path = done.get("merged") or base_path
            continue
        if model is None:
            from transformers import set_seed

            from medscribe.sft.train import load_for_training

            set_seed(sft.seed)  # the fresh LoRA init is random: seeded, a rerun of the same plan is the same run
            model, tokenizer, loaded = load_for_training(plan.sft, setup, base_path, say)
            if previous_adapter is not None:
                _restore_adapter(model, previous_adapter)
            tokenized = _tokenize_rest(plans, plan.index, examples, tokenizer, sft.max_seq_length)
        train_rows, train_tok, eval_rows, eval_tok = tokenized[plan.name]
        checkpoint = last_checkpoint(plan.dir)
        where = f", where {dict(plan.stage.where)}" if plan.stage.where else ""
        say(f"[bold]stage {plan.index + 1}/{len(plans)}[/bold] {plan.name}: {len(train_rows)} rows "
            f"({plan.train_file.name}, turns {plan.stage.turns}{where}) "
            f"· lr {plan.sft.learning_rate} · "
            + (f"max_steps {plan.sft.max_steps}" if plan.sft.max_steps > 0 else f"epochs {plan.sft.epochs}")
            + (f" · resuming from {checkpoint.name}" if checkpoint else ""), highlight=False)
        if not eval_rows:
            say(f"[yellow]warning:[/yellow] stage {plan.name}: no eval rows pass its filter: no evaluation, "
                "the last step is kept", highlight=False)
        stage = _train_stage(plan, model, tokenizer, setup, train_rows, eval_rows, console, checkpoint,
                             run_dir, records, offset)
        stage["data"] = {"train": {**examples[plan.name]["train"][1], **train_tok},
                         "eval": {**examples[plan.name]["eval"][1], **eval_tok}}
        stage["base_model_path"] = str(base_path)
        stage["settings"] = {k: _plain(getattr(plan.sft, k)) for k in (
            "epochs", "max_steps", "learning_rate", "target_modules", "rag_context")} | {"merge": plan.stage.merge}
        stage["selection"] = plan.selection
        if plan.stage.merge:
            from medscribe.sft.merge import merge_adapter

            del model
            model = None
            gc.collect()
            merged = merge_adapter(plan.dir / "adapter", plan.dir / "merged", base_model=str(base_path),
                                   dtype=sft.merge_dtype)
            stage["merged"] = str(merged)
            base_path = str(merged)
            previous_adapter = None
        atomic_write_json(plan.dir / DONE_FILE, stage)
        records.append(stage)
        offset = stage["last_step"]
    del model
    gc.collect()
    return _finish(settings, run_dir, plans, records, setup, base_path, loaded, record, merge, extra)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _read_json(path: Path) -> dict | None:
    import json

    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _stage_examples(settings: Any, plan: StagePlan, retriever: Any, split_examples: Any) -> dict:
    """The stage's prompts, cached in stages/<name>/examples.json: a resumed stage trains on the same ones."""
    cache = plan.dir / "examples.json"
    cached = _read_json(cache)
    if cached is not None:
        return cached
    built = split_examples(settings, plan.sft, plan.train_records, plan.eval_records, retriever)
    atomic_write_json(cache, built)
    return _read_json(cache)  # the same JSON shape (lists, not tuples) as a resumed run reads


def _tokenize_rest(plans: list[StagePlan], start: int, examples: dict, tokenizer: Any, max_length: int) -> dict:
    """Token rows of the stages still to train, all before the first of them trains (too-long rows fail early)."""
    from medscribe.sft.dataset import tokenize_examples

    out = {}
    for plan in plans[start:]:
        train_rows, train_tok = tokenize_examples(examples[plan.name]["train"][0], tokenizer, max_length)
        eval_rows, eval_tok = tokenize_examples(examples[plan.name]["eval"][0], tokenizer, max_length)
        if not train_rows:
            raise UsageError(f"{plan.where()}: all {len(examples[plan.name]['train'][0])} rows are longer than "
                             f"sft.max_seq_length={max_length} tokens; raise it")
        out[plan.name] = (train_rows, train_tok, eval_rows, eval_tok)
    return out


def _restore_adapter(model: Any, adapter_dir: Path) -> None:
    """Load a finished stage's LoRA weights into a freshly built adapter (a resume after that stage)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    result = set_peft_model_state_dict(model, load_file(str(adapter_dir / "adapter_model.safetensors")))
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise RuntimeFailure(f"{adapter_dir}: its weights do not fit the adapter of this stage ({unexpected[0]})")


def _train_stage(plan: StagePlan, model: Any, tokenizer: Any, setup: Any, train_rows: list, eval_rows: list,
                 console: Any, checkpoint: Path | None, run_dir: Path, records: list, offset: int) -> dict:
    from medscribe.sft.train import _raise_friendly
    from medscribe.sft.trainer import build_trainer

    trainer = build_trainer(model, tokenizer, plan.sft, setup, plan.dir, train_rows, eval_rows, console)
    trainer.add_callback(_combined_history_callback(run_dir, records, plan.name, offset))
    started = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except Exception as exc:
        _raise_friendly(exc, plan.sft)
    state = trainer.state
    early = [c for c in trainer.callback_handler.callbacks if type(c).__name__ == "EarlyStoppingCallback"]
    adapter_dir = plan.dir / "adapter"
    trainer.model.save_pretrained(str(adapter_dir))  # the best checkpoint's weights (load_best_model_at_end)
    tokenizer.save_pretrained(str(adapter_dir))
    speed = getattr(trainer, "medscribe_speed", None)
    return {
        "index": plan.index, "name": plan.name, "adapter": str(adapter_dir),
        "first_step": offset + 1, "last_step": offset + state.global_step,
        "resumed_from": str(checkpoint) if checkpoint else None,
        "train_seconds": round(time.perf_counter() - started, 2),
        "speed": speed.summary() if speed is not None else {},
        "result": {
            "global_step": state.global_step, "max_steps": state.max_steps,
            "stopped_early": bool(early) and state.global_step < state.max_steps,
            "best_checkpoint": state.best_model_checkpoint, "best_eval_loss": state.best_metric,
            "final_train_loss": next((e["loss"] for e in reversed(state.log_history) if "loss" in e), None),
        },
    }


def combined_history(run_dir: Path, records: list[dict], current: str | None = None, offset: int = 0,
                     log_history: list | None = None) -> dict:
    """One history over all stages: finished stages from their history.json, the running one from its log."""
    from medscribe.sft.callbacks import split_history

    parts = [(r["name"], r["first_step"] - 1, _read_json(run_dir / STAGES_DIR / r["name"] / "history.json") or {})
             for r in records]
    if current is not None:
        parts.append((current, offset, split_history(log_history or [])))
    out: dict[str, Any] = {"train": [], "eval": [], "stages": []}
    for name, start, history in parts:
        for kind in ("train", "eval"):
            for entry in history.get(kind, []):
                out[kind].append({"stage": name, **entry, "stage_step": entry["step"], "step": start + entry["step"]})
        steps = [e["step"] for e in out["train"] if e["stage"] == name]
        out["stages"].append({"name": name, "first_step": start + 1, "last_step": max(steps, default=start)})
    return out


def _combined_history_callback(run_dir: Path, records: list[dict], name: str, offset: int) -> Any:
    from transformers import TrainerCallback

    class CombinedHistory(TrainerCallback):
        """Rewrites <run>/history.json (atomically) on every log, like callbacks.HistoryCallback per stage."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero:
                atomic_write_json(run_dir / "history.json",
                                  combined_history(run_dir, records, name, offset, state.log_history))

    return CombinedHistory()


def _finish(settings: Any, run_dir: Path, plans: list[StagePlan], records: list[dict], setup: Any, base_path: str,
            loaded: dict | None, record: dict, merge: bool | None, extra: dict | None) -> dict:
    """The last stage's adapter as <run>/adapter, the one history, the manifest (+ merged/ with --merge)."""
    import hashlib

    from medscribe.sft.train import versions

    sft = settings.sft
    last = records[-1]
    adapter_dir = run_dir / "adapter"
    tmp = run_dir / ".adapter.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(last["adapter"], tmp)
    shutil.rmtree(adapter_dir, ignore_errors=True)
    tmp.rename(adapter_dir)
    atomic_write_json(run_dir / "history.json", combined_history(run_dir, records))
    template = (adapter_dir / "chat_template.jinja")
    tokenizer_config = _read_json(adapter_dir / "tokenizer_config.json") or {}
    template_text = (template.read_text(encoding="utf-8") if template.is_file()
                     else tokenizer_config.get("chat_template"))

    def total(kind: str, key: str) -> int:
        return sum(int(r["data"][kind].get(key) or 0) for r in records if "data" in r)

    manifest: dict[str, Any] = {
        "run_dir": str(run_dir),
        "base_model": sft.base_model,
        "base_model_path": records[0].get("base_model_path"),
        "setup": setup.as_dict(),
        "model": loaded or {},
        "settings": {"sft": sft.model_dump(mode="json"), "prompt": settings.prompt.model_dump(mode="json")},
        "curriculum": {"file": str(run_dir / PLAN_FILE), "digest": record["digest"], "stages": len(plans)},
        "stages": records,
        "data": {
            "train": {"examples": total("train", "examples"), "loss_tokens": total("train", "loss_tokens"),
                      "dropped_too_long": total("train", "dropped_too_long")},
            "eval": {"examples": last.get("data", {}).get("eval", {}).get("examples", 0)},
        },
        "chat_template": {"source": "sft.chat_template" if sft.chat_template else "base model",
                          "sha256": hashlib.sha256(str(template_text).encode("utf-8")).hexdigest()},
        "versions": versions(),
        "resumed_from": next((r["resumed_from"] for r in records if r.get("resumed_from")), None),
        "is_main_process": True,
        "train_seconds": round(sum(r.get("train_seconds") or 0 for r in records), 2),
        "speed": last.get("speed") or {},
        "result": {
            "global_step": last["last_step"],
            "max_steps": sum(r["result"]["max_steps"] for r in records),
            "stopped_early": any(r["result"]["stopped_early"] for r in records),
            "best_checkpoint": last["result"]["best_checkpoint"],
            "best_eval_loss": last["result"]["best_eval_loss"],
            "final_train_loss": last["result"]["final_train_loss"],
            "train_tokens_with_loss": total("train", "loss_tokens"),
        },
        "adapter": str(adapter_dir),
        **(extra or {}),
    }
    # What `ask --backend local` loads: after a merged stage, its merged model is the base of the adapter.
    if last.get("merged"):
        serve = {"local_model": last["merged"], "adapter": None}
    else:
        serve = {"local_model": str(base_path), "adapter": str(adapter_dir)}
    serve["command"] = f"medscribe ask --backend local --local-model {serve['local_model']}" + (
        f" --adapter {serve['adapter']}" if serve["adapter"] else " --no-adapter")
    manifest["serve"] = serve
    atomic_write_json(run_dir / "training_config.json", manifest)
    do_merge = sft.merge if merge is None else merge
    if do_merge and serve["adapter"]:
        from medscribe.sft.merge import merge_adapter

        manifest["merged"] = str(merge_adapter(adapter_dir, run_dir / "merged", base_model=str(base_path),
                                               dtype=sft.merge_dtype))
        if sft.gguf_quantization:
            manifest["gguf"] = "skipped: curricula do not export GGUF; convert merged/ with llama.cpp"
        atomic_write_json(run_dir / "training_config.json", manifest)
    return manifest


def stages_table(manifest: dict) -> Any:
    """The rich table of a curriculum's stages, printed under the summary."""
    from rich.table import Table

    table = Table(title="stages")
    for column in ("stage", "rows", "steps", "lr", "final train loss", "best eval loss", "merged"):
        table.add_column(column)
    for r in manifest.get("stages", []):
        res = r["result"]
        def fmt(x: Any) -> str:
            return f"{x:.4f}" if isinstance(x, float) else str(x)

        table.add_row(r["name"], str(r.get("data", {}).get("train", {}).get("examples", "")),
                      f"{r['first_step']}-{r['last_step']}", str(r.get("settings", {}).get("learning_rate", "")),
                      fmt(res["final_train_loss"]), fmt(res["best_eval_loss"]), "yes" if r.get("merged") else "")
    return table
