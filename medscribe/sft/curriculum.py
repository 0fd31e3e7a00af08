"""Curricula and two-stage LoRA: `[[sft.stages]]` trained one after another in one `medscribe sft` run.

    settings = load_settings("medscribe.toml")    # with [[sft.stages]] tables (docs/sft.md)
    manifest = run_sft(settings)                   # train.run_sft hands a run with stages to run_curriculum

Every stage trains the adapter the stage before it left (same LoRA weights, a new optimizer and schedule with
the stage's epochs / max_steps / learning rate), on its own rows: a split file (`data`, default
paths.data/train.jsonl) narrowed by `where` (row field -> kept values) and `turns` (single / multi). A stage with
`merge = true` is merged into its base in 16 bits (merge.merge_adapter) and the next stage trains a FRESH
adapter, possibly on other `target_modules`, on the merged model: the two-stage LoRA recipe. Eval rows are
paths.data/eval.jsonl narrowed by the same filter.

A stage with `text` (knowledge documents, like index.knowledge) trains on them as plain text instead: each
chunk (index.chunk_size characters) one row, loss on every token, no eval rows.

Everything a stage needs is checked before any model loads (files, rows, filters, target modules: planning is
curriculum_plan.py), so a stage naming a missing file is exit 2 with nothing trained. Layout of paths.sft/<run>/:
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
from pathlib import Path
from typing import Any

from medscribe.errors import RuntimeFailure, UsageError
from medscribe.io import atomic_write_json
from medscribe.sft.curriculum_plan import (
    DONE_FILE,
    PLAN_FILE,
    STAGES_DIR,
    StagePlan,
    check_start,
    curriculum_fingerprint,
    pick_curriculum_dir,
    plan_stages,
    tokenize_text,
)

__all__ = ["PLAN_FILE", "pick_curriculum_dir", "run_curriculum", "stages_table"]

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
        source = (f"knowledge text, {len(plan.selection['documents'])} documents" if plan.text_chunks is not None
                  else f"{plan.train_file.name}, turns {plan.stage.turns}{where}")
        say(f"[bold]stage {plan.index + 1}/{len(plans)}[/bold] {plan.name}: {len(train_rows)} rows ({source}) "
            f"· lr {plan.sft.learning_rate} · "
            + (f"max_steps {plan.sft.max_steps}" if plan.sft.max_steps > 0 else f"epochs {plan.sft.epochs}")
            + (f" · resuming from {checkpoint.name}" if checkpoint else ""), highlight=False)
        if not eval_rows:
            why = "knowledge text has none" if plan.text_chunks is not None else "none passes its filter"
            say(f"[yellow]warning:[/yellow] stage {plan.name}: no eval rows ({why}): no evaluation, the last step "
                "is kept", highlight=False)
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
    if plan.text_chunks is not None:  # plain text: no prompt, no retrieval, no eval rows
        built = {"train": (plan.text_chunks, {"rows": len(plan.text_chunks), "knowledge_text": True}),
                 "eval": ([], {"rows": 0})}
    else:
        built = split_examples(settings, plan.sft, plan.train_records, plan.eval_records, retriever)
    atomic_write_json(cache, built)
    return _read_json(cache)  # the same JSON shape (lists, not tuples) as a resumed run reads


def _tokenize_rest(plans: list[StagePlan], start: int, examples: dict, tokenizer: Any, max_length: int) -> dict:
    """Token rows of the stages still to train, all before the first of them trains (too-long rows fail early)."""
    from medscribe.sft.dataset import tokenize_examples

    out = {}
    for plan in plans[start:]:
        encode = tokenize_text if plan.text_chunks is not None else tokenize_examples
        train_rows, train_tok = encode(examples[plan.name]["train"][0], tokenizer, max_length)
        eval_rows, eval_tok = encode(examples[plan.name]["eval"][0], tokenizer, max_length)
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
