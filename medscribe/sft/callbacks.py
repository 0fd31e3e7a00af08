"""Trainer callbacks for `medscribe sft`: a rich progress bar and the loss history written as it grows.

Only the main process (rank 0) draws and writes, so DDP runs print one bar and write one history.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from medscribe.io import atomic_write_json


def split_history(log_history: list[dict]) -> dict[str, list[dict]]:
    """Trainer log entries -> {"train": [{step, epoch, loss, learning_rate, grad_norm}],
    "eval": [{step, eval_loss, ...}]}."""
    train, evals = [], []
    for entry in log_history:
        if "loss" in entry:
            train.append({k: entry[k] for k in ("step", "epoch", "loss", "learning_rate", "grad_norm") if k in entry})
        elif "eval_loss" in entry:
            evals.append({k: v for k, v in entry.items() if k in ("step", "epoch") or k.startswith("eval_")})
    return {"train": train, "eval": evals}


class HistoryCallback(TrainerCallback):
    """Rewrites history.json (atomically) on every log, so a killed run still has its curve."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero:
            atomic_write_json(self.path, split_history(state.log_history))


class RichProgressCallback(TrainerCallback):
    """One rich progress bar over optimizer steps, with the latest train/eval loss in its description."""

    def __init__(self, console: Any = None, label: str = "sft"):
        self.console = console
        self.label = label  # what trains: "sft", "dpo", "orpo"
        self.enabled = console is not None
        self.progress = None
        self.task = None
        self.last = {"loss": None, "eval_loss": None}

    def on_train_begin(self, args, state, control, **kwargs):
        if not (self.enabled and state.is_world_process_zero):
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn(f"[bold]{self.label}[/bold] {{task.description}}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task("training", total=state.max_steps, completed=state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step, description=self._describe())

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is None or not logs:
            return
        for key in self.last:
            if key in logs:
                self.last[key] = logs[key]
        self.progress.update(self.task, description=self._describe())

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)
            self.progress.stop()
            self.progress = None

    def _describe(self) -> str:
        parts = []
        if self.last["loss"] is not None:
            parts.append(f"loss {self.last['loss']:.4f}")
        if self.last["eval_loss"] is not None:
            parts.append(f"eval {self.last['eval_loss']:.4f}")
        return " ".join(parts) or "training"


class SpeedCallback(TrainerCallback):
    """Training speed as a user needs it to judge the budget: real (unpadded) tokens/s, examples/s, seconds per
    optimizer step and the estimated time of one epoch.

    Each optimizer step is timed from `on_step_begin` to `on_step_end` (forward, backward, optimizer; evaluation,
    checkpointing and logging are not in it). The first step is warm-up and left out when later steps exist.
    Tokens come from `token_counter` (TRL's running count of real tokens) when set, else from the mean row length;
    the epoch estimate is the epoch's tokens at the measured tokens/s when they are counted.
    After `report_after` timed steps one line is printed; `summary()` gives the figures for the manifest."""

    def __init__(self, console: Any = None, examples: int = 0, tokens: int = 0, report_after: int = 3):
        self.console = console
        self.examples, self.tokens = examples, tokens
        self.report_after = report_after
        self.token_counter = None
        self.steps: list[tuple[float, float | None]] = []  # (seconds, real tokens) per optimizer step
        self.examples_per_step = 0
        self.steps_per_epoch = 0
        self._start = None
        self._tokens_at_start = None
        self.reported = False

    def _count(self) -> float | None:
        value = self.token_counter() if self.token_counter is not None else None
        return float(value) if value is not None else None

    def on_train_begin(self, args, state, control, **kwargs):
        import math

        world = max(getattr(args, "world_size", 1) or 1, 1)
        self.examples_per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps * world
        self.steps_per_epoch = math.ceil(self.examples / self.examples_per_step) if self.examples else 0

    def on_step_begin(self, args, state, control, **kwargs):
        import time

        self._start = time.perf_counter()
        self._tokens_at_start = self._count()

    def on_step_end(self, args, state, control, **kwargs):
        import time

        if self._start is None:
            return
        seconds = time.perf_counter() - self._start
        now = self._count()
        tokens = now - self._tokens_at_start if now is not None and self._tokens_at_start is not None else None
        self.steps.append((seconds, tokens))
        self._start = None
        if not self.reported and len(self.steps) >= self.report_after + 1 and state.is_world_process_zero:
            self.reported = True
            if self.console is not None:
                s = self.summary()
                self.console.print(
                    f"[bold]speed[/bold] after {s['steps_timed']} steps: {s['tokens_per_s']:.0f} tokens/s · "
                    f"{s['examples_per_s']:.2f} examples/s · {s['seconds_per_step']:.2f} s/step · "
                    f"one epoch ({self.examples} rows) ≈ {format_duration(s['epoch_seconds_estimate'])} "
                    "(without evaluations)",
                    highlight=False,
                )

    def summary(self) -> dict[str, Any]:
        """The figures over the timed steps (all steps but the first, when there are several)."""
        timed = self.steps[1:] if len(self.steps) > 1 else self.steps
        if not timed:
            return {"steps_timed": 0}
        seconds = sum(s for s, _ in timed)
        measured = all(t is not None for _, t in timed)
        if measured:
            tokens = sum(t for _, t in timed)
        else:
            tokens = len(timed) * self.examples_per_step * (self.tokens / max(self.examples, 1))
        s_per_step = seconds / len(timed)
        # The epoch from its real tokens at the measured tokens/s where tokens are counted: a step's time follows
        # its tokens, and the first steps' rows need not be of average length (on MedQuAD's GHR pairs the
        # step-based figure after 3 steps was 8 % short). Else from steps x seconds per step.
        by_tokens = measured and self.tokens > 0 and tokens > 0
        epoch = self.tokens * seconds / tokens if by_tokens else self.steps_per_epoch * s_per_step
        return {
            "steps_timed": len(timed),
            "warmup_steps_excluded": len(self.steps) - len(timed),
            "seconds_per_step": round(s_per_step, 4),
            "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
            "tokens_source": "counted (real tokens, no padding)" if measured else "estimated (mean row length)",
            "examples_per_s": round(len(timed) * self.examples_per_step / seconds, 3) if seconds > 0 else None,
            "examples_per_step": self.examples_per_step,
            "steps_per_epoch": self.steps_per_epoch,
            "epoch_seconds_estimate": round(epoch, 1),
            "epoch_estimate_from": "tokens" if by_tokens else "steps",
        }


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
