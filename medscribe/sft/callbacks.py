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

    def __init__(self, console: Any = None):
        self.console = console
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
            TextColumn("[bold]sft[/bold] {task.description}"),
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
