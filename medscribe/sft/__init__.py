"""The `sft` stage: LoRA / QLoRA fine-tuning (Unsloth on CUDA, transformers + PEFT anywhere).

    from medscribe.sft import run_sft, merge_adapter
    manifest = run_sft(settings)                      # trains, writes paths.sft/<run>/
    merge_adapter("artifacts/sft/<run>/adapter", "artifacts/models/merged")

Submodules: dataset (records -> answer-only-labelled token ids), backends (unsloth / hf loading),
trainer (SFTTrainer config, callbacks), train (run_sft), merge (16-bit merge, GGUF).
Importing this package is cheap: torch & co. load only when a function runs.
"""

from __future__ import annotations

from typing import Any


def run_sft(settings: Any, **kwargs: Any) -> dict:
    from medscribe.sft.train import run_sft as _run

    return _run(settings, **kwargs)


def merge_adapter(adapter_dir: Any, out_dir: Any, **kwargs: Any):
    from medscribe.sft.merge import merge_adapter as _merge

    return _merge(adapter_dir, out_dir, **kwargs)


__all__ = ["run_sft", "merge_adapter"]
