"""`run_prefer`: preference tuning (`sft.method = "dpo" | "orpo"`) of a LoRA adapter on chosen/rejected pairs.

    from medscribe.sft import run_sft          # dispatches here when settings.sft.method is dpo/orpo
    manifest = run_sft(settings, run="dpo-1")  # -> paths.sft/dpo-1/{adapter, history.json, training_config.json}

Where it starts and what it is compared with:
- `sft.init_adapter` (an SFT run folder or its adapter folder): the SFT adapter is loaded trainable on its base
  model. DPO's reference is the SFT model itself: TRL copies the loaded adapter into a frozen second adapter
  ("ref") and computes the reference log-probabilities with it, not with the adapter-disabled base model.
- no init adapter: a fresh LoRA on `sft.base_model`; its zero-initialized copy makes the reference the base model.
- ORPO has no reference model (its odds-ratio term is computed on the policy alone).
Pairs come from `sft.pairs_file` (pairs.py) or `sft.pairs_eval` (pairs_eval.py), exactly one of them; a share
(`sft.pairs_eval_fraction`) is held out for eval loss and reward margins. The run folder is like an sft run's:
`adapter/` (what `ask --adapter` serves), `checkpoints/`, `history.json` (train/eval loss, rewards/margins,
rewards/accuracies, ...), `training_config.json` (method, start, reference, pairs source + fingerprint + counts),
`pairs_rejects.jsonl` and `prefer_config.json`, the fingerprint a `--resume` must match: resuming with other
pairs, method, start adapter or training settings is refused, naming what changed.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

from medscribe import fingerprint as fp
from medscribe.errors import RuntimeFailure, UsageError
from medscribe.io import atomic_write_json, atomic_write_jsonl

CONFIG_FILE = "prefer_config.json"
LABELS = {"method": "another method", "pairs": "other pairs", "init_adapter": "another start adapter",
          "base_model": "another base model"}


def resolve_init_adapter(value: str | None, model_path: str) -> tuple[Path | None, list[str]]:
    """(adapter folder, notes) for sft.init_adapter: a run folder (its adapter/) or an adapter folder."""
    if not value:
        return None, []
    path = Path(value).expanduser()
    if (path / "adapter" / "adapter_config.json").is_file():
        path = path / "adapter"
    if not (path / "adapter_config.json").is_file():
        raise UsageError(f"sft.init_adapter: {value} is neither an sft run folder nor an adapter folder "
                         "(no adapter_config.json)")
    recorded = json.loads((path / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    notes = []
    if recorded and Path(recorded).is_dir():
        if Path(recorded).resolve() != Path(model_path).resolve():
            raise UsageError(f"sft.init_adapter: {path} was trained on {recorded}, but sft.base_model is "
                             f"{model_path}; set sft.base_model to the adapter's base")
    elif recorded:
        notes.append(f"sft.init_adapter: its recorded base {recorded!r} is not a local folder; using {model_path}")
    return path, notes


def load_pairs(settings: Any, retriever: Any = None) -> tuple[list, Any]:
    sft = settings.sft
    if bool(sft.pairs_file) == bool(sft.pairs_eval):
        raise UsageError(f"sft.method = {sft.method!r} needs exactly one pair source: sft.pairs_file (--pairs) or "
                         "sft.pairs_eval (--pairs-from-eval)")
    if sft.pairs_file:
        from medscribe.sft.pairs import pairs_from_file

        return pairs_from_file(settings, sft.pairs_file)
    from medscribe.sft.pairs_eval import pairs_from_eval

    return pairs_from_eval(settings, sft.pairs_eval, retriever=retriever)


def split_pairs(pairs: list, fraction: float, seed: int) -> tuple[list, list]:
    """(train, eval): a seeded shuffle holds out round(n * fraction) pairs (at least one when fraction > 0)."""
    if fraction <= 0 or len(pairs) < 2:
        return list(pairs), []
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_eval = min(max(1, round(len(pairs) * fraction)), len(pairs) - 1)
    held = set(order[:n_eval])
    return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]


def config_fingerprint(sft: Any, model_path: str, init_adapter: Path | None, pairs_digest: str) -> dict:
    """What a resumed run must share with the run it continues (the values that change what is trained)."""
    # epochs/max_steps may grow on a resume (train longer), as with sft; everything else must stay.
    keys = ("beta", "learning_rate", "lr_scheduler", "warmup_ratio", "weight_decay", "batch_size", "grad_accum",
            "max_seq_length", "pairs_eval_fraction", "seed", "load_in_4bit", "precision")
    parts: dict[str, Any] = {"method": sft.method, "base_model": fp.model_files_hash(model_path),
                             "init_adapter": fp.adapter_hash(init_adapter), "pairs": pairs_digest,
                             **{k: getattr(sft, k) for k in keys}}
    if init_adapter is None:  # a fresh adapter: its shape is ours; a loaded one brings its own
        parts.update(lora_r=sft.lora_r, lora_alpha=sft.lora_alpha, lora_dropout=sft.lora_dropout,
                     target_modules=list(sft.target_modules))
    return fp.make(parts)


def check_resume(run_dir: Path, record: dict, resume: bool) -> None:
    stored = fp.read(run_dir / CONFIG_FILE)
    if not resume:
        return
    if stored is None:
        raise UsageError(f"--resume: {run_dir} has no {CONFIG_FILE} (not a dpo/orpo run); pick another --run")
    diff = fp.changes(stored, record)
    if diff:
        raise UsageError(f"--resume: {run_dir} was started with {fp.describe_changes(diff, LABELS)}; resume it with "
                         "the same settings and pairs, or start another --run")


def load_policy(sft: Any, setup: Any, model_path: str, init_adapter: Path | None) -> tuple[Any, Any]:
    """(trainable PEFT model, tokenizer): a fresh LoRA (backends.load_model) or the SFT adapter, trainable."""
    from medscribe.sft.backends import load_model, placement_kwargs, prepare_tokenizer, torch_dtype

    if init_adapter is None:
        return load_model(sft, setup, model_path)
    tokenizer_dir = init_adapter if (init_adapter / "tokenizer_config.json").is_file() else Path(model_path)
    if setup.backend == "unsloth":
        import unsloth  # noqa: F401
        from unsloth import FastLanguageModel

        # Unsloth loads base + adapter from the adapter folder (its adapter_config names the base).
        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=str(init_adapter), max_seq_length=sft.max_seq_length, dtype=torch_dtype(setup.precision),
            load_in_4bit=setup.quantization == "nf4", local_files_only=True)
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.requires_grad_(True)
        return model, prepare_tokenizer(tokenizer, sft.chat_template)
    from peft import PeftModel, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(str(tokenizer_dir)), sft.chat_template)
    kwargs: dict[str, Any] = {"dtype": torch_dtype(setup.precision),
                              **placement_kwargs(setup, torch_dtype(setup.precision))}
    model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    if setup.quantization == "nf4":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=sft.gradient_checkpointing)
    return PeftModel.from_pretrained(model, str(init_adapter), is_trainable=True), tokenizer


def _last(entries: list[dict], key: str) -> Any:
    return next((e[key] for e in reversed(entries) if key in e), None)


def run_prefer(settings: Any, run: str | None = None, resume: bool = False, retriever: Any = None,
               merge: bool | None = None, console: Any = None) -> dict:
    """Train with DPO or ORPO; return (and write) the run manifest (see the module docstring)."""
    from medscribe.sft.backends import choose_setup, loaded_summary, resolve_base_model
    from medscribe.sft.prefer_trainer import build_prefer_trainer, encode_pairs, orpo_classes, split_prefer_history
    from medscribe.sft.train import _raise_friendly, open_run, versions

    sft = settings.sft
    method = sft.method
    if method == "orpo":
        orpo_classes()  # absent in this TRL: say so before any work
    is_main = int(os.environ.get("RANK", "0")) == 0
    say = console.print if console is not None and is_main else (lambda *a, **k: None)
    # The cpu fast path replaces the SFT loss and attention; DPO/ORPO compute their own loss, so it is off here.
    # Its memory decision stays: where it would skip 4-bit for sft (RAM is plentiful), bitsandbytes' slow CPU
    # kernels are skipped here too.
    fast = choose_setup(sft).cpu_fast if sft.cpu_fast is not False else {}
    skip_4bit = bool(fast.get("enabled") and fast.get("skip_4bit") and sft.load_in_4bit)
    policy_sft = sft.model_copy(update={"cpu_fast": False, **({"load_in_4bit": False} if skip_4bit else {})})
    setup = choose_setup(policy_sft)
    if fast.get("enabled"):
        setup.notes.append(f"cpu fast path off for sft.method = {method!r} (TRL's {method.upper()} loss is used)"
                           + ("; 4-bit off too: the model fits in RAM" if skip_4bit else ""))
    if setup.backend == "unsloth":
        import unsloth  # noqa: F401  (before trl/transformers/peft: it patches them)
    model_path = resolve_base_model(sft.base_model)
    init_adapter, notes = resolve_init_adapter(sft.init_adapter, model_path)
    setup.notes += notes
    run_dir, checkpoint = open_run(settings, run, resume)

    from medscribe.sft.pairs import pairs_fingerprint

    pairs, report = load_pairs(settings, retriever)
    digest = pairs_fingerprint(pairs)
    record = config_fingerprint(sft, model_path, init_adapter, digest)
    check_resume(run_dir, record, resume)
    train_pairs, eval_pairs = split_pairs(pairs, sft.pairs_eval_fraction, sft.seed)
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / CONFIG_FILE, record)
        atomic_write_jsonl(run_dir / "pairs_rejects.jsonl", report.rejects)
    if report.rejects:
        say(f"[yellow]warning:[/yellow] {len(report.rejects)} pair rows rejected (reasons in "
            f"{run_dir / 'pairs_rejects.jsonl'})", highlight=False)
    for note in setup.notes + report.warnings:
        say(f"[yellow]warning:[/yellow] {note}", highlight=False)
    say(f"[bold]{method}[/bold] {len(train_pairs)} train / {len(eval_pairs)} eval pairs · backend {setup.backend} "
        f"({setup.reason}) · device {setup.device} · dtype {setup.precision}", highlight=False)

    try:
        model, tokenizer = load_policy(policy_sft, setup, model_path, init_adapter)
    except (UsageError, RuntimeFailure):
        raise
    except ValueError as exc:
        raise RuntimeFailure(f"loading {sft.base_model} for {setup.backend} failed: {str(exc)[:200]}") from None
    train_rows, train_tok = encode_pairs(train_pairs, tokenizer, sft.max_seq_length)
    eval_rows, eval_tok = encode_pairs(eval_pairs, tokenizer, sft.max_seq_length)
    if not train_rows:
        raise UsageError(f"all {len(train_pairs)} training pairs are longer than sft.max_seq_length="
                         f"{sft.max_seq_length} tokens; raise it")
    if train_tok["dropped_too_long"] or eval_tok["dropped_too_long"]:
        say(f"[yellow]warning:[/yellow] dropped {train_tok['dropped_too_long'] + eval_tok['dropped_too_long']} pairs "
            f"longer than sft.max_seq_length={sft.max_seq_length}", highlight=False)

    trainer = build_prefer_trainer(method, model, tokenizer, sft, setup, run_dir, train_rows, eval_rows, console)
    if method == "dpo":
        reference = "SFT model (frozen copy of the init adapter)" if init_adapter else "base model"
        frozen = [n for n, p in trainer.model.named_parameters() if ".ref." in n and p.requires_grad]
        if frozen:  # the reference must not move with the policy
            raise RuntimeFailure(f"dpo: the reference adapter has {len(frozen)} trainable tensors (TRL/PEFT change?)")
    else:
        reference = "none (ORPO uses no reference model)"
    manifest: dict[str, Any] = {
        "run_dir": str(run_dir), "method": method, "base_model": sft.base_model, "base_model_path": model_path,
        "start": f"sft adapter {init_adapter}" if init_adapter else "base model (fresh LoRA)",
        "init_adapter": str(init_adapter) if init_adapter else None, "reference": reference,
        "setup": setup.as_dict(), "model": loaded_summary(trainer.model),
        "settings": {"sft": sft.model_dump(mode="json"), "prompt": settings.prompt.model_dump(mode="json")},
        "pairs": {"source": report.summary(), "fingerprint": digest, "train": len(train_rows), "eval": len(eval_rows),
                  "train_tokens": train_tok, "eval_tokens": eval_tok,
                  "rejects_file": str(run_dir / "pairs_rejects.jsonl")},
        "config_fingerprint": record["digest"], "versions": versions(),
        "resumed_from": str(checkpoint) if checkpoint else None, "is_main_process": is_main,
    }
    started = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except Exception as exc:
        _raise_friendly(exc, sft)
    manifest["train_seconds"] = round(time.perf_counter() - started, 2)
    manifest["speed"] = trainer.medscribe_speed.summary()
    state = trainer.state
    history = split_prefer_history(state.log_history)
    early = [c for c in trainer.callback_handler.callbacks if type(c).__name__ == "EarlyStoppingCallback"]
    manifest["result"] = {
        "global_step": state.global_step, "max_steps": state.max_steps,
        "stopped_early": bool(early) and state.global_step < state.max_steps,
        "best_checkpoint": state.best_model_checkpoint, "best_eval_loss": state.best_metric,
        "final_train_loss": _last(history["train"], "loss"),
        "train_rewards_margins": _last(history["train"], "rewards/margins"),
        "eval_rewards_margins": _last(history["eval"], "eval_rewards/margins"),
        "eval_rewards_accuracies": _last(history["eval"], "eval_rewards/accuracies"),
    }
    adapter_dir = run_dir / "adapter"
    if is_main:
        # Only the trained adapter: DPO's frozen "ref" copy is not what ask should serve.
        trainer.model.save_pretrained(str(adapter_dir), selected_adapters=["default"])
        tokenizer.save_pretrained(str(adapter_dir))
        manifest["adapter"] = str(adapter_dir)
        atomic_write_json(run_dir / "history.json", history)
        atomic_write_json(run_dir / "training_config.json", manifest)
    if (sft.merge if merge is None else merge) and is_main:
        from medscribe.sft.merge import merge_adapter

        manifest["merged"] = str(merge_adapter(adapter_dir, run_dir / "merged", base_model=model_path,
                                               dtype=sft.merge_dtype))
        atomic_write_json(run_dir / "training_config.json", manifest)
    return manifest
