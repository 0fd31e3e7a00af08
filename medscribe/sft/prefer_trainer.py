"""Tokenized pairs and the TRL trainers (DPOTrainer, experimental ORPOTrainer) of `medscribe sft --method dpo|orpo`.

    rows, stats = encode_pairs(pairs, tokenizer, max_length)    # prompt_ids / chosen_ids / rejected_ids
    trainer = build_prefer_trainer("dpo", model, tokenizer, sft, setup, run_dir, train_rows, eval_rows, console)

Answer-only by construction: the prompt is the chat template's rendering with the generation prompt, tokenized
alone (what `ask` feeds the model), and each completion is the answer plus the template's end-of-turn marker,
tokenized alone (what the model generates after it). TRL's loss covers the completion tokens only
(`completion_mask` for DPO, `-100` prompt labels for ORPO); we hand TRL these ids instead of letting it render
the template, so the template's scaffolding after the end-of-turn (a newline) never carries loss, exactly as in
`sft` (dataset.answer_span), and a BOS the template writes is not doubled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from medscribe.errors import UsageError
from medscribe.io import atomic_write_json

ORPO_MISSING = ("sft.method = 'orpo' needs trl.experimental.orpo (TRL 1.x); this TRL has none: "
                "install trl>=1.0 or use sft.method = 'dpo'")


def end_of_turn(prompt: list[dict], tokenizer: Any) -> str:
    """What the chat template writes after an assistant answer (minus trailing whitespace), else EOS."""
    from medscribe.sft.dataset import answer_span, render_texts

    probe = "medscribe-probe-answer"
    prompt_text, full_text = render_texts({"prompt": prompt, "completion": [
        {"role": "assistant", "content": probe}]}, tokenizer)
    start, end = answer_span(prompt_text, full_text, probe)
    marker = full_text[start + len(probe):end]
    return marker or (tokenizer.eos_token or "")


def encode_pairs(pairs: list, tokenizer: Any, max_length: int) -> tuple[list[dict], dict]:
    """Token ids of each pair; pairs longer than `max_length` (prompt + longer answer) are dropped and counted."""
    from medscribe.sft.dataset import render_texts

    rows, too_long, lengths = [], 0, []
    marker = None
    for pair in pairs:
        prompt_text, _ = render_texts({"prompt": pair.prompt, "completion": [
            {"role": "assistant", "content": pair.chosen}]}, tokenizer)
        marker = end_of_turn(pair.prompt, tokenizer) if marker is None else marker
        prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        chosen_ids = tokenizer(pair.chosen + marker, add_special_tokens=False)["input_ids"]
        rejected_ids = tokenizer(pair.rejected + marker, add_special_tokens=False)["input_ids"]
        longest = len(prompt_ids) + max(len(chosen_ids), len(rejected_ids))
        if longest > max_length:
            too_long += 1
            continue
        lengths.append(longest)
        rows.append({"prompt_ids": prompt_ids, "chosen_ids": chosen_ids, "rejected_ids": rejected_ids})
    stats = {
        "pairs": len(rows), "dropped_too_long": too_long, "max_tokens": max(lengths, default=0),
        "chosen_tokens_with_loss": sum(len(r["chosen_ids"]) for r in rows),
        "rejected_tokens_with_loss": sum(len(r["rejected_ids"]) for r in rows),
    }
    return rows, stats


def orpo_classes() -> tuple[Any, Any]:
    """(ORPOConfig, ORPOTrainer) from trl.experimental.orpo, or a UsageError saying it is absent."""
    try:
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer
    except ImportError:
        raise UsageError(ORPO_MISSING) from None
    return ORPOConfig, ORPOTrainer


def _dpo_classes() -> tuple[Any, Any]:
    from trl import DPOConfig, DPOTrainer

    class PreTokenizedDPOTrainer(DPOTrainer):
        """DPOTrainer fed our prompt/chosen/rejected ids (see the module docstring) instead of rendering text."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if "prompt_ids" in dataset.column_names:
                return dataset
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    return DPOConfig, PreTokenizedDPOTrainer


def _orpo_rows(rows: list[dict]) -> list[dict]:
    """Our ids in the fields ORPOTrainer.tokenize_row produces: prompt labels -100, loss on the answer only."""
    out = []
    for r in rows:
        p = r["prompt_ids"]
        row = {"prompt_input_ids": p, "prompt_attention_mask": [1] * len(p)}
        for side in ("chosen", "rejected"):
            seq = p + r[f"{side}_ids"]
            row[f"{side}_input_ids"] = seq
            row[f"{side}_attention_mask"] = [1] * len(seq)
            row[f"{side}_labels"] = [-100] * len(p) + r[f"{side}_ids"]
        out.append(row)
    return out


def _orpo_trainer_class(base: Any) -> Any:
    class PreTokenizedORPOTrainer(base):
        """ORPOTrainer whose rows are already tokenized (its own tokenize_row would re-tokenize prompt text)."""

        def tokenize_row(self, feature, model=None):
            return feature

    return PreTokenizedORPOTrainer


def split_prefer_history(log_history: list[dict]) -> dict[str, list[dict]]:
    """Trainer logs -> {"train": [{step, epoch, loss, rewards/margins, ...}], "eval": [{step, eval_loss, ...}]}:
    every number the trainer logged (DPO/ORPO log rewards/*, logps/*, ORPO also nll_loss, log_odds_ratio)."""
    skip = {"total_flos", "train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss"}
    train, evals = [], []
    for entry in log_history:
        kept = {k: v for k, v in entry.items() if k not in skip and isinstance(v, int | float)}
        if "loss" in entry:
            train.append({k: v for k, v in kept.items() if not k.startswith("eval_")})
        elif "eval_loss" in entry:
            evals.append({k: v for k, v in kept.items() if k in ("step", "epoch") or k.startswith("eval_")})
    return {"train": train, "eval": evals}


class PreferHistoryCallback(TrainerCallback):
    """history.json rewritten (atomically) on every log, with the reward margins and accuracies."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero:
            atomic_write_json(self.path, split_prefer_history(state.log_history))


def build_prefer_trainer(method: str, model: Any, tokenizer: Any, sft: Any, setup: Any, run_dir: Path,
                         train_rows: list[dict], eval_rows: list[dict], console: Any = None) -> Any:
    """The DPO or ORPO trainer, configured from [sft] like the SFT trainer (sft/trainer.py)."""
    from datasets import Dataset
    from transformers import EarlyStoppingCallback, PrinterCallback

    from medscribe.sft.callbacks import RichProgressCallback, SpeedCallback
    from medscribe.sft.trainer import _checkpointing_args, _config

    if method == "orpo":
        config_cls, trainer_cls = orpo_classes()
        trainer_cls = _orpo_trainer_class(trainer_cls)
        train_data, eval_data = _orpo_rows(train_rows), _orpo_rows(eval_rows)
        extra: dict[str, Any] = {"max_length": sft.max_seq_length, "remove_unused_columns": False}
    else:
        config_cls, trainer_cls = _dpo_classes()
        train_data, eval_data = train_rows, eval_rows
        # Rows are already filtered to max_seq_length (encode_pairs): TRL never truncates an answer.
        extra = {"max_length": None, "precompute_ref_log_probs": False}
    use_eval = bool(eval_rows)
    report_to = [] if sft.report_to == "none" else [sft.report_to]
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / "tensorboard")
    config = _config(
        config_cls,
        output_dir=str(run_dir / "checkpoints"), run_name=run_dir.name,
        num_train_epochs=sft.epochs, max_steps=sft.max_steps, learning_rate=sft.learning_rate,
        lr_scheduler_type=sft.lr_scheduler, warmup_steps=sft.warmup_ratio, weight_decay=sft.weight_decay,
        per_device_train_batch_size=sft.batch_size, per_device_eval_batch_size=sft.batch_size,
        gradient_accumulation_steps=sft.grad_accum,
        **_checkpointing_args(sft.gradient_checkpointing and setup.backend == "hf", config_cls),
        beta=sft.beta,
        eval_strategy="steps" if use_eval else "no", eval_steps=sft.eval_steps,
        save_strategy="steps", save_steps=sft.eval_steps, save_total_limit=sft.save_total_limit,
        load_best_model_at_end=use_eval, metric_for_best_model="eval_loss" if use_eval else None,
        greater_is_better=False if use_eval else None,
        logging_steps=sft.logging_steps, logging_first_step=True, report_to=report_to,
        seed=sft.seed, data_seed=sft.seed,
        bf16=setup.precision == "bf16", fp16=setup.precision == "fp16", use_cpu=setup.device == "cpu",
        disable_tqdm=True, dataset_num_proc=None,
        ddp_find_unused_parameters=False if setup.world_size > 1 else None,
        **extra,
    )
    tokens = sum(len(r["prompt_ids"]) * 2 + len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in train_rows)
    speed = SpeedCallback(console, examples=len(train_rows), tokens=tokens)
    history = PreferHistoryCallback(run_dir / "history.json")
    callbacks: list[Any] = [RichProgressCallback(console, method), history, speed]
    if use_eval and sft.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=sft.early_stopping_patience,
                                               early_stopping_threshold=sft.early_stopping_threshold))
    trainer = trainer_cls(
        model=model, args=config, train_dataset=Dataset.from_list(train_data),
        eval_dataset=Dataset.from_list(eval_data) if use_eval else None,
        processing_class=tokenizer, callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.medscribe_speed = speed
    return trainer


def summary_table(manifest: dict) -> Any:
    """The rich table printed at the end of a dpo/orpo run."""
    from rich.table import Table

    result, pairs = manifest.get("result", {}), manifest["pairs"]
    table = Table(title=f"medscribe sft --method {manifest['method']}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")

    def fmt(x: Any) -> str:
        return f"{x:.4f}" if isinstance(x, float) else str(x)

    rows = [
        ("backend", f"{manifest['setup']['backend']} ({manifest['setup']['reason']})"),
        ("start / reference", f"{manifest['start']} / {manifest['reference']}"),
        ("pairs", f"{pairs['source']['kind']} {pairs['source']['path']}: {pairs['train']} train, "
                  f"{pairs['eval']} eval, {pairs['source']['rejected']} rejected"),
        ("steps", f"{result.get('global_step')} of {result.get('max_steps')}"
                  + (" (stopped early)" if result.get("stopped_early") else "")),
        ("final train loss", fmt(result.get("final_train_loss"))),
        ("best eval loss", fmt(result.get("best_eval_loss"))),
        ("eval reward margin / accuracy", f"{fmt(result.get('eval_rewards_margins'))} / "
                                          f"{fmt(result.get('eval_rewards_accuracies'))}"),
        ("train time (s)", fmt(manifest.get("train_seconds"))),
        ("adapter", manifest.get("adapter", "")),
    ]
    for key, value in rows:
        table.add_row(key, str(value))
    return table
