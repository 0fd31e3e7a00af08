"""Environment checks behind `medscribe doctor`: versions, CUDA, models resolvable offline, writable paths.

    from medscribe.doctor import run_checks
    checks = run_checks(settings)   # list[Check]; any required check with ok=False means "not ready"
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

REQUIRED_PACKAGES = [
    "typer", "rich", "pydantic-settings", "polars", "datasets", "transformers", "peft", "trl", "accelerate",
    "chromadb", "sentence-transformers", "openai", "sacrebleu", "rouge-score", "bert-score",
]
OPTIONAL_PACKAGES = ["bitsandbytes", "unsloth", "unsloth_zoo"]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def model_resolves_offline(name: str) -> tuple[bool, str]:
    """True when `name` is a local model folder or a hub id already in the local HF cache."""
    path = Path(name).expanduser()
    if path.exists():
        has_config = (path / "config.json").is_file() or (path / "modules.json").is_file()
        return has_config, f"local folder{'' if has_config else ' without config.json/modules.json'}"
    if name.count("/") > 1 or name.startswith((".", "~")) or path.is_absolute():
        return False, "no such local path"
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return False, "huggingface_hub missing"
    for filename in ("config.json", "modules.json"):
        try:
            found = try_to_load_from_cache(name, filename)
        except ValueError:  # huggingface_hub's HFValidationError: not a valid hub id either
            return False, "neither a local path nor a valid hub id"
        if isinstance(found, str):
            return True, "in the local HF cache"
    return False, "not in the local HF cache (download it once on a machine with hub access)"


def _writable(path: Path) -> tuple[bool, str]:
    probe = path
    while not probe.exists():
        probe = probe.parent
    ok = os.access(probe, os.W_OK)
    return ok, f"{'writable' if ok else 'not writable'} ({probe})"


def run_checks(settings) -> list[Check]:
    checks = [Check("python", sys.version_info >= (3, 10), platform.python_version())]
    for dist in REQUIRED_PACKAGES:
        version = _version(dist)
        checks.append(Check(dist, version is not None, version or "missing"))
    try:
        import torch

        checks.append(Check("torch", True, torch.__version__))
        cuda = torch.cuda.is_available()
        if cuda:
            props = torch.cuda.get_device_properties(0)
            detail = (
                f"{torch.cuda.device_count()}x {props.name}, {props.total_memory / 2**30:.0f} GiB, "
                f"bf16 {torch.cuda.is_bf16_supported()}"
            )
        else:
            detail = "no CUDA GPU: sft uses the hf backend on CPU (slow), unsloth QLoRA needs a GPU"
        checks.append(Check("CUDA", cuda, detail, required=False))
        if not cuda:  # CPU training restarts itself under tcmalloc/jemalloc when one is installed
            from medscribe.sft.allocator import INSTALL, find_library, kind_of

            library = find_library("auto")
            checks.append(Check("allocator", library is not None,
                                f"{kind_of(library)}: sft on CPU runs under it ({library})" if library else
                                f"glibc only: {INSTALL} for ~20 % faster CPU training", required=False))
    except ImportError:
        checks.append(Check("torch", False, "missing"))
    for dist in OPTIONAL_PACKAGES:
        version = _version(dist)
        checks.append(Check(dist, version is not None, version or "missing (optional: GPU QLoRA)", required=False))
    models = {
        "sft.base_model": settings.sft.base_model,
        "ask.local_model": settings.ask.local_model if settings.ask.backend == "local" else None,
        "index.embedding_model": settings.index.embedding_model,
        "index.rerank_model": settings.index.rerank_model,
        "eval.bertscore_model": settings.eval.bertscore_model if "bertscore" in settings.eval.metrics else None,
    }
    for key, name in models.items():
        if name:
            ok, detail = model_resolves_offline(name)
            checks.append(Check(f"{key}", ok, f"{name}: {detail}"))
    for key in ("artifacts", "index"):
        ok, detail = _writable(Path(getattr(settings.paths, key)))
        checks.append(Check(f"paths.{key}", ok, detail))
    if settings.ask.backend == "openai":
        has_key = settings.ask.api_key is not None
        detail = "set (from env)" if has_key else "not set (fine for a local vLLM)"
        checks.append(Check("ask.api_key", True, detail, required=False))
    return checks
