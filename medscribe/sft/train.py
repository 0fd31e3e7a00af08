"""`run_sft`: LoRA/QLoRA fine-tuning on the outputs of `medscribe data`, with TRL's SFTTrainer.

    from medscribe.settings import load_settings
    from medscribe.sft import run_sft
    result = run_sft(load_settings("medscribe.toml"), resume=False)   # -> dict (also training_config.json)

A run folder `paths.sft/<run>` holds: `adapter/` (LoRA weights + tokenizer: what `ask` loads),
`checkpoints/` (for `--resume`), `tensorboard/`, `history.json` (train/eval loss), `training_config.json`
(settings, backend, dtype, quantization, data stats, versions), and `merged/` after `--merge`.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from medscribe.errors import RuntimeFailure, UsageError
from medscribe.io import atomic_write_json

CHECKPOINTS = "checkpoints"


def pick_run_dir(settings: Any, run: str | None, resume: bool) -> Path:
    """paths.sft/<run>; with --resume and no name, the newest run that has checkpoints."""
    root = Path(settings.paths.sft)
    name = run or settings.sft.run_name
    if name:
        return root / name
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not resume:
        # Each rank would stamp its own time: the processes must agree on one folder.
        raise UsageError("several processes (torchrun/accelerate): name the run with --run (sft.run_name)")
    if resume:
        runs = sorted(
            (p for p in root.glob("*") if any((p / CHECKPOINTS).glob("checkpoint-*"))),
            key=lambda p: p.stat().st_mtime,
        )
        if not runs:
            raise UsageError(f"--resume: no run with checkpoints under {root} (name one with --run)")
        return runs[-1]
    return root / datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")


def open_run(settings: Any, run: str | None, resume: bool) -> tuple[Path, Path | None]:
    """(run folder, checkpoint to resume from): --resume needs a checkpoint; a fresh start refuses a folder that
    has some (starting over there would mix two runs' checkpoints and history)."""
    run_dir = pick_run_dir(settings, run, resume)
    checkpoint = last_checkpoint(run_dir) if resume else None
    if resume and checkpoint is None:
        raise UsageError(f"--resume: {run_dir / CHECKPOINTS} has no checkpoint to continue from")
    if not resume and last_checkpoint(run_dir) is not None:
        raise UsageError(
            f"{run_dir}: this run already has checkpoints; continue it with --resume or pick another --run"
        )
    return run_dir, checkpoint


# What a resumed run must share with the run it continues; epochs/max_steps may grow (train longer).
RESUME_KEYS = ("method", "learning_rate", "lr_scheduler", "warmup_ratio", "weight_decay", "batch_size", "grad_accum",
               "max_seq_length", "packing", "seed", "load_in_4bit", "precision", "cpu_fast", "lora_r", "lora_alpha",
               "lora_dropout", "target_modules")
SFT_CONFIG_FILE = "sft_config.json"
RESUME_LABELS = {"base_model": "another base model", "examples": "other training examples"}


def sft_fingerprint(sft: Any, model_path: str, examples: dict) -> dict:
    """The fingerprint record of a plain sft run (`<run>/sft_config.json`): base model files, the training and
    eval examples (prompts with their retrieved context, as cached in examples.json) and RESUME_KEYS."""
    from medscribe import fingerprint as fp

    parts: dict[str, Any] = {"base_model": fp.model_files_hash(model_path),
                             "examples": fp.short_hash([examples["train"][0], examples["eval"][0]])}
    for key in RESUME_KEYS:
        value = getattr(sft, key)
        parts[key] = list(value) if isinstance(value, (list, tuple)) else value
    return fp.make(parts)


def check_sft_resume(run_dir: Path, record: dict, checkpoint: Path | None) -> None:
    """A --resume continues only a run started with the same fingerprint; UsageError naming what changed."""
    if checkpoint is None:
        return
    from medscribe import fingerprint as fp

    stored = fp.read(run_dir / SFT_CONFIG_FILE)
    if stored is None:
        raise UsageError(f"--resume: {run_dir} has no {SFT_CONFIG_FILE} (started by an older medscribe, or not a "
                         "plain sft run), so what it was trained with cannot be checked; start another --run")
    diff = fp.changes(stored, record)
    if diff:
        raise UsageError(f"--resume: {run_dir} was started with {fp.describe_changes(diff, RESUME_LABELS)}; resume "
                         "it with the same settings, or start another --run")


def last_checkpoint(run_dir: Path) -> Path | None:
    ckpts = [p for p in (run_dir / CHECKPOINTS).glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(ckpts, key=lambda p: int(p.name.split("-")[-1]), default=None)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("medscribe", "torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes", "unsloth"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def run_sft(
    settings: Any,
    run: str | None = None,
    resume: bool = False,
    retriever: Any = None,
    merge: bool | None = None,
    console: Any = None,
) -> dict:
    """Train a LoRA adapter; return (and write) the run manifest. `retriever` overrides the index for RAG data."""
    from medscribe.sft.backends import choose_setup, resolve_base_model
    from medscribe.sft.vision import run_vision_sft, wants_vision

    # image rows or a vision-language base model: image + text runs (vision.py; plain sft only, it says so)
    if wants_vision(settings):
        return run_vision_sft(settings, run=run, resume=resume, merge=merge, console=console)
    if settings.sft.method in ("dpo", "orpo"):  # preference tuning on chosen/rejected pairs (prefer.py)
        from medscribe.sft.prefer import run_prefer

        return run_prefer(settings, run=run, resume=resume, retriever=retriever, merge=merge, console=console)
    if settings.sft.method == "distill":  # the student trains on a teacher's answers (distill.py)
        from medscribe.sft.distill import run_distill

        return run_distill(settings, run=run, resume=resume, retriever=retriever, merge=merge, console=console)
    if settings.sft.stages:  # a curriculum / two-stage LoRA: one run folder, stage after stage (curriculum.py)
        from medscribe.sft.curriculum import run_curriculum

        return run_curriculum(settings, run=run, resume=resume, retriever=retriever, merge=merge, console=console)
    sft = settings.sft
    # Under torchrun/accelerate every rank runs this; only rank 0 talks and writes the run's files.
    is_main = int(os.environ.get("RANK", "0")) == 0
    if not is_main:
        console = None
    say = console.print if console is not None else (lambda *a, **k: None)
    setup = choose_setup(sft)
    if setup.backend == "unsloth":
        import unsloth  # noqa: F401  (before trl/transformers/peft: it patches them)

    model_path = resolve_base_model(sft.base_model)
    run_dir, checkpoint = open_run(settings, run, resume)
    examples = training_examples(settings, run_dir, retriever, reuse=resume, is_main=is_main)
    record = sft_fingerprint(sft, model_path, examples)
    check_sft_resume(run_dir, record, checkpoint)
    if is_main:
        atomic_write_json(run_dir / SFT_CONFIG_FILE, record)
    (train_examples, train_stats), (eval_examples, eval_stats) = examples["train"], examples["eval"]

    say(
        f"[bold]backend[/bold] {setup.backend} ({setup.reason}) · device {setup.device} · dtype {setup.precision} "
        f"· quantization {setup.quantization} · world size {setup.world_size}",
        highlight=False,
    )
    for note in setup.notes:
        say(f"[yellow]warning:[/yellow] {note}", highlight=False)

    model, tokenizer, loaded = load_for_training(sft, setup, model_path, say)

    from medscribe.sft.dataset import tokenize_examples

    train_rows, train_tok = tokenize_examples(train_examples, tokenizer, sft.max_seq_length)
    eval_rows, eval_tok = tokenize_examples(eval_examples, tokenizer, sft.max_seq_length)
    if not train_rows:
        raise UsageError(
            f"all {len(train_examples)} training rows are longer than sft.max_seq_length={sft.max_seq_length} tokens; "
            "raise it"
        )
    if train_tok["dropped_too_long"]:
        say(
            f"[yellow]warning:[/yellow] dropped {train_tok['dropped_too_long']} training rows longer than "
            f"sft.max_seq_length={sft.max_seq_length}",
            highlight=False,
        )
    use_eval = bool(eval_rows)
    if not use_eval:
        say(
            "[yellow]warning:[/yellow] no eval rows: no evaluation, no early stopping, last step is kept",
            highlight=False,
        )

    from medscribe.sft.trainer import build_trainer

    trainer = build_trainer(model, tokenizer, sft, setup, run_dir, train_rows, eval_rows, console)
    manifest: dict[str, Any] = {
        "run_dir": str(run_dir),
        "base_model": sft.base_model,
        "base_model_path": model_path,
        "setup": setup.as_dict(),
        "model": loaded,
        "settings": {"sft": sft.model_dump(mode="json"), "prompt": settings.prompt.model_dump(mode="json")},
        "data": {
            "train_file": str(Path(settings.paths.data) / "train.jsonl"),
            "train": {**train_stats, **train_tok},
            "eval": {**eval_stats, **eval_tok},
        },
        # The adapter folder carries this tokenizer and template; `ask --adapter` serves with them.
        "chat_template": {
            "source": "sft.chat_template" if sft.chat_template else "base model",
            "sha256": hashlib.sha256(str(tokenizer.chat_template).encode("utf-8")).hexdigest(),
        },
        "versions": versions(),
        "resumed_from": str(checkpoint) if checkpoint else None,
        "config_fingerprint": record["digest"],  # sft_config.json: what a --resume must match
        "is_main_process": is_main,
    }
    started = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except Exception as exc:
        _raise_friendly(exc, sft)
    manifest["train_seconds"] = round(time.perf_counter() - started, 2)
    speed = getattr(trainer, "medscribe_speed", None)  # tokens/s, examples/s, epoch estimate (callbacks.py)
    manifest["speed"] = speed.summary() if speed is not None else {}

    state = trainer.state
    early = [c for c in trainer.callback_handler.callbacks if type(c).__name__ == "EarlyStoppingCallback"]
    manifest["result"] = {
        "global_step": state.global_step,
        "max_steps": state.max_steps,
        "stopped_early": bool(early) and state.global_step < state.max_steps,
        "best_checkpoint": state.best_model_checkpoint,
        "best_eval_loss": state.best_metric,
        "final_train_loss": next((e["loss"] for e in reversed(state.log_history) if "loss" in e), None),
        "train_tokens_with_loss": train_tok["loss_tokens"],
    }
    adapter_dir = run_dir / "adapter"
    if is_main:
        # The trainer reloaded the best checkpoint (load_best_model_at_end) before we save it.
        trainer.model.save_pretrained(str(adapter_dir))
        tokenizer.save_pretrained(str(adapter_dir))
        manifest["adapter"] = str(adapter_dir)
        atomic_write_json(run_dir / "training_config.json", manifest)
    do_merge = sft.merge if merge is None else merge
    if do_merge and is_main:
        from medscribe.sft.merge import export_gguf, merge_adapter

        merged = merge_adapter(adapter_dir, run_dir / "merged", base_model=model_path, dtype=sft.merge_dtype)
        manifest["merged"] = str(merged)
        manifest["gguf"] = export_gguf(trainer.model, tokenizer, run_dir / "gguf", setup, sft.gguf_quantization, say)
        atomic_write_json(run_dir / "training_config.json", manifest)
    return manifest


def load_for_training(sft: Any, setup: Any, model_path: str, say: Any) -> tuple[Any, Any, dict]:
    """(PEFT model, tokenizer, loaded_summary) for `setup`; load errors become one-line failures, and a 4-bit
    load the backend did not apply is recorded in `setup` and said (curriculum.py loads through here too)."""
    from medscribe.sft.backends import load_model, loaded_summary

    try:
        model, tokenizer = load_model(sft, setup, model_path)
    except (UsageError, RuntimeFailure):
        raise
    except ValueError as exc:
        # e.g. PEFT refusing target modules after our check, bitsandbytes refusing this hardware
        raise RuntimeFailure(f"loading {sft.base_model} for {setup.backend} failed: {str(exc)[:200]}") from None
    loaded = loaded_summary(model)
    if setup.quantization == "nf4" and not loaded["linear_4bit_layers"]:
        # The backend accepted load_in_4bit but loaded full-precision weights: say so, never pass it off as QLoRA.
        setup.quantization = "none (4-bit requested, not applied by the backend)"
        setup.notes.append(f"{setup.backend}: sft.load_in_4bit = true, but the loaded model has no 4-bit layers")
        say(f"[yellow]warning:[/yellow] {setup.notes[-1]}", highlight=False)
    return model, tokenizer, loaded


def training_examples(settings: Any, run_dir: Path, retriever: Any, reuse: bool, is_main: bool) -> dict:
    """Chat examples for train and eval, cached in <run>/examples.json.

    The cache makes a resumed run train on exactly the prompts (and retrieved context) it started with, and
    under torchrun only rank 0 queries the index (ChromaDB is not multi-process safe): the other ranks wait
    for rank 0's file."""
    from medscribe.sft.dataset import check_reasoning, load_records

    cache = run_dir / "examples.json"
    launch = os.environ.get("TORCHELASTIC_RUN_ID", "")  # same for all ranks of one torchrun/accelerate launch
    if reuse and cache.is_file():
        return json.loads(cache.read_text(encoding="utf-8"))
    if not is_main:
        deadline = time.monotonic() + 1800
        while True:  # a file left by an earlier launch does not count
            if cache.is_file() and json.loads(cache.read_text(encoding="utf-8")).get("launch") == launch:
                return json.loads(cache.read_text(encoding="utf-8"))
            if time.monotonic() > deadline:
                raise RuntimeFailure(f"{cache}: rank 0 did not write the training examples within 30 minutes")
            time.sleep(1)
    sft = settings.sft
    data_dir = Path(settings.paths.data)
    train_records = load_records(data_dir / "train.jsonl")
    eval_records = load_records(data_dir / "eval.jsonl", required=False)
    if sft.max_eval_samples is not None:
        eval_records = eval_records[: sft.max_eval_samples]
    check_reasoning(train_records, data_dir / "train.jsonl", settings.prompt)
    check_reasoning(eval_records, data_dir / "eval.jsonl", settings.prompt)
    examples = {"launch": launch, **split_examples(settings, sft, train_records, eval_records, retriever)}
    atomic_write_json(cache, examples)
    return examples


def split_examples(settings: Any, sft: Any, train_records: list, eval_records: list, retriever: Any) -> dict:
    """{"train": (examples, stats), "eval": (...)} with retrieved context when `sft.rag_context` (the index is
    opened when no retriever is given). curriculum.py builds each stage's examples through here."""
    from medscribe.sft.dataset import answer_linked_tasks, build_examples

    if sft.rag_context and retriever is None:
        retriever = _open_retriever(settings)
    rag = retriever if sft.rag_context else None
    # Same metadata filters and k as serving (`ask`), so training prompts carry the context serving will show.
    filters = list(getattr(settings.ask, "filter_fields", []) or [])
    rag_k = sft.rag_k or (settings.ask.k if settings.ask.k is not None else settings.index.k) or 1
    # Context shows what serving a test row can retrieve: the data split key decides whether that ever holds
    # the row's own answer (dataset.answer_linked_tasks).
    linked = answer_linked_tasks(settings.data)
    return {
        "train": build_examples(train_records, settings.prompt, rag, rag_k, filters, linked),
        "eval": build_examples(eval_records, settings.prompt, rag, rag_k, filters, linked),
    }


def _open_retriever(settings: Any) -> Any:
    try:
        from medscribe.index import Retriever
    except ImportError:
        raise UsageError("sft.rag_context needs the index stage (medscribe.index), which is not available") from None
    try:
        return Retriever.open(settings)
    except (UsageError, RuntimeFailure):
        raise
    except Exception as exc:
        raise UsageError(
            f"sft.rag_context: cannot open the index at {settings.paths.index} ({type(exc).__name__}); "
            "run `medscribe index` first"
        ) from None


def _raise_friendly(exc: Exception, sft: Any) -> None:
    import torch

    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower():
        raise RuntimeFailure(
            f"out of memory while training (batch_size={sft.batch_size}, max_seq_length={sft.max_seq_length}): "
            "lower sft.batch_size (raise sft.grad_accum to keep the effective batch), lower sft.max_seq_length, "
            "or set sft.load_in_4bit = true"
        ) from None
    raise exc
