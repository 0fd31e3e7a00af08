"""Merge a LoRA adapter into its 16-bit base: a plain HF model folder that vLLM (or a stage-2 sft) loads.

    from medscribe.sft.merge import merge_adapter
    merge_adapter("artifacts/sft/run1/adapter", "artifacts/models/run1-merged")

CLI: `medscribe sft merge ADAPTER --out DIR` or `medscribe sft --merge` after training.
The base is always reloaded in 16 bits (never merged into 4-bit weights, which would bake quantization error
into the result). Two-stage training: point `sft.base_model` at a merged stage-1 folder.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medscribe.errors import UsageError


def adapter_base(adapter_dir: Path) -> str:
    config = adapter_dir / "adapter_config.json"
    if not config.is_file():
        raise UsageError(f"{adapter_dir}: not a LoRA adapter folder (no adapter_config.json)")
    try:
        base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except json.JSONDecodeError as exc:
        raise UsageError(f"{config}: invalid JSON ({exc.msg})") from None
    if not base:
        raise UsageError(f"{config}: field 'base_model_name_or_path' is empty; pass --base")
    return base


def merge_adapter(
    adapter_dir: str | Path, out_dir: str | Path, base_model: str | None = None, dtype: str = "bf16"
) -> Path:
    """Load base (16-bit) + adapter, merge_and_unload, save model + tokenizer into `out_dir` atomically."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from medscribe.sft.backends import resolve_base_model

    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    base_path = resolve_base_model(base_model or adapter_base(adapter_dir))
    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch_dtype)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    # The adapter folder holds the tokenizer as trained (its chat template included); the base may lack it.
    tokenizer_dir = adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else Path(base_path)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    # Write next to the target and rename, so a killed merge never leaves a half-written model folder.
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    merged.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def export_gguf(
    model: Any, tokenizer: Any, out_dir: Path, setup: Any, quantization: str | None, say: Callable[..., Any]
) -> str | None:
    """GGUF through Unsloth on a CUDA GPU; elsewhere a clear message with the llama.cpp route."""
    if not quantization:
        return None
    if setup.backend != "unsloth" or setup.device != "cuda":
        say(
            "[yellow]GGUF export skipped:[/yellow] it needs the unsloth backend on a CUDA GPU; convert the merged "
            "folder with llama.cpp instead: python convert_hf_to_gguf.py <run>/merged --outtype bf16, then "
            f"llama-quantize <file>.gguf {quantization.upper()}",
            highlight=False,
        )
        return "skipped: needs the unsloth backend on a CUDA GPU"
    model.save_pretrained_gguf(str(out_dir), tokenizer, quantization_method=quantization)
    return str(out_dir)
