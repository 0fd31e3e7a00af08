"""Model loading for `medscribe sft`: which backend, which dtype, which quantization, all said out loud.

    from medscribe.sft.backends import choose_setup, load_model
    setup = choose_setup(settings.sft)            # Setup(backend, reason, precision, quantization, ...)
    model, tokenizer = load_model(settings.sft, setup)

Backends:
- `unsloth`: `FastLanguageModel` 4-bit QLoRA, `use_gradient_checkpointing="unsloth"`; one GPU only (it also
  runs on CPU for tiny models). `import unsloth` must happen before trl/transformers/peft in the process.
- `hf`: transformers + PEFT; 4-bit nf4 through bitsandbytes (`prepare_model_for_kbit_training`) when
  bitsandbytes works on this machine, plain LoRA otherwise (printed + recorded, never silent). Runs under
  `accelerate launch` / `torchrun` (DDP) on several GPUs. On CPU it takes the fast path of cpu_fast.py
  (`sft.cpu_fast`): bf16 where the CPU has native bf16, no 4-bit/checkpointing where RAM is plentiful,
  padding-free per-row attention, LM head only at labelled positions. Nothing of it applies on CUDA.
`auto` picks unsloth when a CUDA GPU is present and unsloth is installed, else hf.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medscribe.errors import UsageError

UNSLOTH_INSTALL = "pip install --no-deps unsloth==2026.10.9 unsloth_zoo==2026.10.9 (see docs/sft.md)"


@dataclass
class Setup:
    backend: str
    reason: str
    device: str
    precision: str  # bf16 | fp16 | fp32: the compute dtype of training
    quantization: str  # nf4 | none
    world_size: int = 1
    notes: list[str] = field(default_factory=list)
    cpu_fast: dict[str, Any] = field(default_factory=dict)  # cpu_fast.CpuFast.as_dict(); {"enabled": False, ...}
    allocator: str = "system"  # allocator.active_allocator(): "tcmalloc" | "jemalloc" | "system"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def unsloth_installed() -> bool:
    return importlib.util.find_spec("unsloth") is not None


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def choose_precision(requested: str, cuda: bool) -> str:
    """bf16 where the GPU supports it, else fp16 on CUDA; fp32 on CPU (half precision there is slow or broken)."""
    import torch

    if requested == "auto":
        if not cuda:
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if requested == "fp16" and not cuda:
        raise UsageError("sft.precision = 'fp16' needs a CUDA GPU (mixed precision on CPU supports bf16 or fp32)")
    if requested == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise UsageError("sft.precision = 'bf16': this GPU does not support bfloat16; use 'fp16' or 'auto'")
    return requested


def bitsandbytes_works() -> tuple[bool, str]:
    """Whether bitsandbytes 4-bit can run here (it has a CPU backend since 0.45; a broken install says why)."""
    try:
        import bitsandbytes  # noqa: F401
    except Exception as exc:  # ImportError, or a CUDA library mismatch raising at import
        return False, f"bitsandbytes unavailable ({type(exc).__name__})"
    return True, ""


def choose_setup(sft: Any) -> Setup:
    cuda = cuda_available()
    device = "cuda" if cuda else "cpu"
    ws = world_size()
    backend = sft.backend
    if backend == "auto":
        if cuda and unsloth_installed() and ws == 1:
            backend, reason = "unsloth", "auto: CUDA GPU and unsloth installed"
        elif cuda and ws > 1:
            backend, reason = "hf", f"auto: {ws} processes (unsloth supports one GPU)"
        elif cuda:
            backend, reason = "hf", f"auto: unsloth not installed ({UNSLOTH_INSTALL})"
        else:
            backend, reason = "hf", "auto: no CUDA GPU"
    else:
        reason = f"sft.backend = '{backend}'"
    if backend == "unsloth":
        if not unsloth_installed():
            raise UsageError(f"sft.backend = 'unsloth' but unsloth is not installed: {UNSLOTH_INSTALL}")
        if ws > 1:
            raise UsageError(
                "the unsloth backend supports one GPU; for several GPUs set sft.backend = 'hf' and run under "
                "`accelerate launch` or `torchrun`"
            )
    precision = choose_precision(sft.precision, cuda)
    from medscribe.sft.cpu_fast import plan_cpu_fast

    # The model folder only matters for the CPU fast path's memory check (nothing changes for CUDA users).
    fast = plan_cpu_fast(sft, device, backend, _model_path_or_none(sft.base_model) if not cuda else None, ws)
    notes: list[str] = list(fast.notes)
    if fast.enabled:
        precision = "bf16" if fast.bf16 else "fp32"
        parts = [("bf16 autocast, fp32 LoRA" if fast.bf16 else "fp32"), "padding-free",
                 "LM head on labelled tokens", f"{fast.threads} threads"]
        reason += f"; cpu fast path: {', '.join(parts)}"
    quantization = "none"
    if sft.load_in_4bit and not fast.skip_4bit:
        if backend == "unsloth":
            quantization = "nf4"
        else:
            ok, why = bitsandbytes_works()
            if ok:
                quantization = "nf4"
            else:
                notes.append(f"4-bit requested but {why}: training plain LoRA on {precision} weights")
    from medscribe.sft.allocator import active_allocator, allocator_note

    allocator = active_allocator()
    if fast.enabled:
        reason += f", {'glibc malloc' if allocator == 'system' else allocator}"
        note = allocator_note(allocator)
        if note:
            notes.append(note)
    return Setup(backend, reason, device, precision, quantization, ws, notes, fast.as_dict(), allocator)


def _model_path_or_none(name: str) -> str | None:
    try:
        return resolve_base_model(name)
    except UsageError:
        return None  # reported with its own message when the model is loaded


def torch_dtype(precision: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def resolve_base_model(name: str) -> str:
    """A local folder, or a hub id already in the local cache; anything else is a UsageError (we never download)."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UsageError(f"sft.base_model: {path} has no config.json (not a Hugging Face model folder)")
        return str(path)
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, local_files_only=True)
    except Exception:
        raise UsageError(
            f"sft.base_model: '{name}' is neither a local folder nor in the Hugging Face cache (offline); "
            "download it once (huggingface-cli download) or set sft.base_model to a model folder"
        ) from None


def prepare_tokenizer(tokenizer: Any, chat_template: str | None) -> Any:
    """Apply sft.chat_template if set; fail clearly when there is no template at all; ensure a pad token."""
    if chat_template:
        path = Path(chat_template)
        if path.suffix == ".jinja":
            if not path.is_file():
                raise UsageError(f"sft.chat_template: {path} not found")
            chat_template = path.read_text(encoding="utf-8")
        tokenizer.chat_template = chat_template
    if not getattr(tokenizer, "chat_template", None):
        raise UsageError(
            "sft.base_model: the tokenizer has no chat template; use an instruct model or set sft.chat_template "
            "(Jinja text or a .jinja file)"
        )
    if tokenizer.pad_token is None:
        # Padding tokens never carry loss (labels are -100 there), so reusing EOS is safe.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def linear_module_names(model: Any) -> set[str]:
    import torch

    names = set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) or type(module).__name__ in {"Linear4bit", "Linear8bitLt"}:
            names.add(name.rsplit(".", 1)[-1])
    return names


def check_target_modules(model: Any, targets: list[str]) -> None:
    available = linear_module_names(model)
    missing = [t for t in targets if t not in available]
    if missing:
        raise UsageError(
            f"sft.target_modules: {', '.join(missing)} not in this model; its linear layers are: "
            f"{', '.join(sorted(available - {'lm_head'}))}"
        )


def loaded_summary(model: Any) -> dict[str, int]:
    """What was really loaded: 4-bit linear layers (bitsandbytes Linear4bit, also under a LoRA wrapper) and
    parameter counts. Written to the manifest so a requested 4-bit load that did not happen is visible."""
    four_bit = sum(1 for m in model.modules() if type(m).__name__ == "Linear4bit")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"linear_4bit_layers": four_bit, "trainable_parameters": trainable, "parameters": total}


def placement_kwargs(setup: Setup, dtype: Any, skip_modules: list[str] | None = None) -> dict[str, Any]:
    """from_pretrained arguments for where the model goes: one full copy per DDP process on its own GPU, and the
    nf4 quantization config (`skip_modules` stay unquantized, e.g. a vision tower) when setup asks for 4-bit."""
    kwargs: dict[str, Any] = {}
    if setup.device == "cuda":
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    if setup.quantization == "nf4":
        from transformers import BitsAndBytesConfig

        extra = {"llm_int8_skip_modules": skip_modules} if skip_modules else {}
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True,
            **extra)
        kwargs.setdefault("device_map", "cpu")
    return kwargs


def load_model(sft: Any, setup: Setup, model_path: str) -> tuple[Any, Any]:
    """(PEFT model ready to train, tokenizer) for the chosen backend."""
    if setup.backend == "unsloth":
        return _load_unsloth(sft, setup, model_path)
    return _load_hf(sft, setup, model_path)


def _load_hf(sft: Any, setup: Setup, model_path: str) -> tuple[Any, Any]:
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(model_path), sft.chat_template)
    dtype = torch_dtype(setup.precision)
    # CPU fast path in bf16: load fp32, add LoRA, then cast the frozen weights (fp32 LoRA init, bf16 base).
    fast_bf16 = bool(setup.cpu_fast.get("enabled") and setup.precision == "bf16")
    kwargs: dict[str, Any] = {"dtype": torch_dtype("fp32") if fast_bf16 else dtype}
    if setup.cpu_fast.get("padding_free"):
        from medscribe.sft.cpu_fast import register_varlen_attention

        kwargs["attn_implementation"] = register_varlen_attention()
    kwargs.update(placement_kwargs(setup, dtype))
    model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    check_target_modules(model, sft.target_modules)
    if setup.quantization == "nf4":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=sft.gradient_checkpointing)
    lora = LoraConfig(
        r=sft.lora_r,
        lora_alpha=sft.lora_alpha,
        lora_dropout=sft.lora_dropout,
        target_modules=list(sft.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    if fast_bf16:
        from medscribe.sft.cpu_fast import cast_frozen_to_bf16

        cast_frozen_to_bf16(model)
    return model, tokenizer


def _load_unsloth(sft: Any, setup: Setup, model_path: str) -> tuple[Any, Any]:
    import unsloth  # noqa: F401  (patches transformers/trl/peft: must come first)
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=model_path,
        max_seq_length=sft.max_seq_length,
        dtype=torch_dtype(setup.precision),
        load_in_4bit=setup.quantization == "nf4",
        local_files_only=True,
    )
    tokenizer = prepare_tokenizer(tokenizer, sft.chat_template)
    check_target_modules(model, sft.target_modules)
    model = FastLanguageModel.get_peft_model(
        model,
        r=sft.lora_r,
        lora_alpha=sft.lora_alpha,
        lora_dropout=sft.lora_dropout,
        target_modules=list(sft.target_modules),
        bias="none",
        use_gradient_checkpointing="unsloth" if sft.gradient_checkpointing else False,
        random_state=sft.seed,
    )
    return model, tokenizer
