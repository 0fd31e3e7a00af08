"""The TRL SFTTrainer for `medscribe sft`: config from settings, callbacks, and the final results table.

Rows arrive pre-tokenized (`input_ids` + `labels`, see dataset.py), so TRL neither re-renders the template
nor rebuilds labels: it pads, truncates and (with sft.packing) packs what we give it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def build_trainer(
    model: Any,
    tokenizer: Any,
    sft: Any,
    setup: Any,
    run_dir: Path,
    train_rows: list[dict],
    eval_rows: list[dict],
    console: Any = None,
) -> Any:
    from datasets import Dataset
    from transformers import EarlyStoppingCallback, PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from medscribe.sft.callbacks import HistoryCallback, RichProgressCallback, SpeedCallback

    fast = getattr(setup, "cpu_fast", {}) or {}
    if fast.get("enabled"):
        from medscribe.sft.cpu_fast import apply_runtime

        apply_runtime(fast, model)
    use_eval = bool(eval_rows)
    early_stopping = use_eval and bool(sft.early_stopping_patience)
    report_to = [] if sft.report_to == "none" else [sft.report_to]
    if sft.report_to == "wandb":
        import importlib.util

        from medscribe.errors import UsageError

        if importlib.util.find_spec("wandb") is None:
            raise UsageError("sft.report_to = 'wandb' needs `pip install wandb` (and WANDB_API_KEY in the environment)")
    # TensorBoard's writer reads its folder from the environment in transformers 5.
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(run_dir / "tensorboard")
    config = _config(
        SFTConfig,
        output_dir=str(run_dir / "checkpoints"),
        run_name=run_dir.name,
        num_train_epochs=sft.epochs,
        max_steps=sft.max_steps,
        learning_rate=sft.learning_rate,
        lr_scheduler_type=sft.lr_scheduler,
        warmup_steps=sft.warmup_ratio,  # a float < 1 is a ratio of total steps in transformers 5
        weight_decay=sft.weight_decay,
        per_device_train_batch_size=sft.batch_size,
        per_device_eval_batch_size=sft.batch_size,
        gradient_accumulation_steps=sft.grad_accum,
        **_checkpointing_args(
            sft.gradient_checkpointing and setup.backend == "hf" and not fast.get("skip_checkpointing"), SFTConfig
        ),
        # Rows are already filtered to max_seq_length (dataset.py); padding-free without packing needs None here.
        max_length=None if fast.get("padding_free") and not sft.packing else sft.max_seq_length,
        packing=sft.packing,
        padding_free=bool(fast.get("padding_free")),
        eval_packing=False,
        eval_strategy="steps" if use_eval else "no",
        eval_steps=sft.eval_steps,
        save_strategy="steps",
        save_steps=sft.eval_steps,  # must match eval_steps for load_best_model_at_end
        save_total_limit=sft.save_total_limit,
        load_best_model_at_end=use_eval,  # the adapter saved is the lowest-eval-loss checkpoint
        metric_for_best_model="eval_loss" if use_eval else None,
        greater_is_better=False if use_eval else None,
        logging_steps=sft.logging_steps,
        logging_first_step=True,
        report_to=report_to,
        seed=sft.seed,
        data_seed=sft.seed,
        bf16=setup.precision == "bf16",
        fp16=setup.precision == "fp16",
        use_cpu=setup.device == "cpu",
        disable_tqdm=True,  # the rich bar replaces tqdm
        dataset_num_proc=None,
        ddp_find_unused_parameters=False if setup.world_size > 1 else None,
    )
    speed = SpeedCallback(console, examples=len(train_rows), tokens=sum(len(r["input_ids"]) for r in train_rows))
    callbacks: list[Any] = [RichProgressCallback(console), HistoryCallback(run_dir / "history.json"), speed]
    if early_stopping:
        callbacks.append(EarlyStoppingCallback(
            early_stopping_patience=sft.early_stopping_patience,
            early_stopping_threshold=sft.early_stopping_threshold,
        ))
    trainer_cls = _cpu_fast_trainer(SFTTrainer, bf16=setup.precision == "bf16") if fast.get("label_only_head") \
        else SFTTrainer
    trainer = trainer_cls(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(eval_rows) if use_eval else None,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    # disable_tqdm makes the Trainer print raw log dicts instead; the rich bar and history.json cover them.
    trainer.remove_callback(PrinterCallback)
    speed.token_counter = lambda: getattr(trainer, "_total_train_tokens", None)  # TRL's count of real tokens
    trainer.medscribe_speed = speed
    return trainer


def _speed_rows(speed: dict) -> list[tuple[str, str]]:
    """Speed figures of the summary table (callbacks.SpeedCallback.summary), or nothing when no step was timed."""
    if not speed.get("steps_timed"):
        return []
    from medscribe.sft.callbacks import format_duration

    return [
        ("speed", f"{speed['tokens_per_s']:.0f} tokens/s · {speed['examples_per_s']:.2f} examples/s · "
                  f"{speed['seconds_per_step']:.2f} s/step ({speed['steps_timed']} steps timed)"),
        ("estimated epoch", f"{format_duration(speed['epoch_seconds_estimate'])} ({speed['steps_per_epoch']} steps, "
                            "without evaluations)"),
    ]


def _cpu_fast_trainer(base: Any, bf16: bool) -> Any:
    """SFTTrainer whose loss applies the LM head only at labelled positions (cpu_fast.label_position_loss).

    It logs what TRL's own compute_loss logs (entropy, mean_token_accuracy, num_tokens), so curves and the
    bench compare like with like. Calls that want the logits (return_outputs) take TRL's path."""
    import torch

    from medscribe.sft.cpu_fast import label_position_loss

    class CpuFastSFTTrainer(base):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if return_outputs or "labels" not in inputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            mode = "train" if self.model.training else "eval"
            # accelerate autocasts the wrapped forward already; this makes eval and unwrapped calls agree.
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss, stats = label_position_loss(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            metrics = getattr(self, "_metrics", None)
            if metrics is not None:
                gather = self.accelerator.gather_for_metrics
                n = gather(torch.as_tensor(stats["label_tokens"], device=loss.device)).sum()
                ent, ok = gather(stats["entropy_sum"].detach()).sum(), gather(stats["correct"]).sum()
                metrics[mode]["entropy"].append((ent / n).item() if n > 0 else 0.0)
                metrics[mode]["mean_token_accuracy"].append((ok / n).item() if n > 0 else 0.0)
                if mode == "train":
                    if "attention_mask" in inputs:
                        local = inputs["attention_mask"].sum()
                    else:  # padding-free: one row of real tokens
                        local = torch.as_tensor(inputs["position_ids"].size(1), device=loss.device)
                    self._total_train_tokens += gather(local).sum().item()
                metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return loss

    return CpuFastSFTTrainer


def _config(config_cls: Any, **kwargs: Any) -> Any:
    """SFTConfig, with its validation errors (unknown scheduler, ...) as one-line usage errors."""
    from medscribe.errors import UsageError

    try:
        return config_cls(**kwargs)
    except ValueError as exc:
        raise UsageError(f"sft settings rejected by TRL/transformers: {str(exc).splitlines()[0][:200]}") from None


def _checkpointing_args(enabled: bool, config_cls: Any) -> dict:
    """Activation checkpointing flags under their transformers-5 names, or the older ones."""
    # unsloth applies its own checkpointing inside get_peft_model; the hf backend uses the trainer's.
    fields = getattr(config_cls, "__dataclass_fields__", {})
    prefix = "activation_checkpointing" if "activation_checkpointing" in fields else "gradient_checkpointing"
    return {prefix: enabled, f"{prefix}_kwargs": {"use_reentrant": False}}


def summary_table(manifest: dict) -> Any:
    """The rich table printed at the end of a run."""
    from rich.table import Table

    setup, result, data = manifest["setup"], manifest.get("result", {}), manifest["data"]
    table = Table(title="medscribe sft", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")

    def fmt(x: Any) -> str:
        return f"{x:.4f}" if isinstance(x, float) else str(x)

    rows = [
        ("backend", f"{setup['backend']} ({setup['reason']})"),
        ("dtype / quantization", f"{setup['precision']} / {setup['quantization']}"),
        ("base model", manifest["base_model"]),
        ("train rows / tokens with loss", f"{data['train']['examples']} / {data['train']['loss_tokens']}"),
        ("eval rows", data["eval"].get("examples", 0)),
        ("steps", f"{result.get('global_step')} of {result.get('max_steps')}"
         + (" (stopped early)" if result.get("stopped_early") else "")),
        ("final train loss", fmt(result.get("final_train_loss"))),
        ("best eval loss", fmt(result.get("best_eval_loss"))),
        ("train time (s)", fmt(manifest.get("train_seconds"))),
        *_speed_rows(manifest.get("speed") or {}),
        ("adapter", manifest.get("adapter", "")),
    ]
    if manifest.get("merged"):
        rows.append(("merged model", manifest["merged"]))
    if manifest.get("gguf"):
        rows.append(("gguf", manifest["gguf"]))
    for key, value in rows:
        table.add_row(key, str(value))
    return table
