"""The CPU fast path of the `hf` backend: what makes LoRA training on a CPU faster than plain TRL.

    from medscribe.sft.cpu_fast import plan_cpu_fast, apply_runtime
    plan = plan_cpu_fast(sft, "cpu", "hf", model_path)   # CpuFast(enabled, bf16, ...), every decision with a reason
    apply_runtime(plan.as_dict(), model)                 # threads, denormals, LoRA input casts, fp32 LM head

What it does (measured pieces in docs/sft.md; bench/sft_bench.py compares the whole against plain TRL):
- bf16 compute where the CPU has native bf16 matmuls (AVX512-BF16 or AMX, checked on the spot, plus a small
  numeric self-check): the model is loaded in fp32, LoRA is added (fp32 init), the frozen weights are cast to
  bf16 (no fp32 -> bf16 cast of every weight on every matmul), norms and the residual stream stay fp32; training
  runs under bf16 autocast and the optimizer updates the fp32 LoRA weights.
- no 4-bit and no activation checkpointing when the model and its activations fit easily in RAM: dequantizing nf4
  on every matmul and recomputing the forward cost time and save memory nobody needs.
- logits and loss only at positions that carry a label (`logits_to_keep` with a boolean mask), the head in fp32:
  the answer is ~15 % of the tokens, and the 49k-wide LM head plus its softmax is a large part of a small
  model's step.
- padding-free batches: the rows of a batch are concatenated into one row with per-row position ids; attention
  runs per row (`varlen_sdpa`: one causal SDPA call per row on the cumulative lengths TRL's collator passes),
  so no token attends across rows and nothing is computed on padding.
- all the cores this process may use (`os.sched_getaffinity`) as torch threads; denormals flushed.
- LoRA Linear layers as base matmul + one addmm (cpu_fused.fuse_lora): no separate full-size scale and add.
`sft.cpu_fast = "auto"` turns it on for the hf backend on CPU; `true` forces it there; `false` is plain TRL.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

VARLEN_ATTENTION = "medscribe_varlen_sdpa"


@dataclass
class CpuFast:
    enabled: bool
    reason: str
    bf16: bool = False
    label_only_head: bool = False
    padding_free: bool = False
    threads: int = 0
    flush_denormal: bool = False
    skip_4bit: bool = False
    skip_checkpointing: bool = False
    fused_lora: bool = False  # cpu_fused.fuse_lora: base matmul + one addmm per LoRA Linear
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)



def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def native_bf16() -> tuple[bool, str]:
    """Whether bf16 matmuls run natively here (AVX512-BF16 or AMX) and give correct results.

    Without native support oneDNN emulates bf16, which is slower than fp32. The self-check compares a bf16 matmul
    with fp32: a broken kernel (an AMX build crashed on these machines in llama.cpp) must not train garbage."""
    import torch

    cpu = getattr(torch, "cpu", None)
    amx = bool(getattr(cpu, "_is_amx_tile_supported", lambda: False)())
    avx512_bf16 = bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)())
    if not (amx or avx512_bf16):
        return False, "no AVX512-BF16/AMX on this CPU (bf16 would be emulated, slower than fp32)"
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 256, generator=gen), torch.randn(256, 96, generator=gen)
    err = ((a.bfloat16() @ b.bfloat16()).float() - a @ b).abs().max().item()
    if not err < 0.05 * (a @ b).abs().max().item():
        return False, f"bf16 matmul self-check failed (max error {err:.3g})"
    return True, "AMX" if amx else "AVX512-BF16"


def fits_in_ram(model_path: str, sft: Any) -> tuple[bool, str]:
    """Whether bf16/fp32 weights plus the activations of one batch use well under half of the available RAM.

    The activation estimate (per token and layer ~16 hidden-sized and ~6 intermediate-sized tensors, fp32) is
    deliberately pessimistic: the point is to skip 4-bit and checkpointing only where memory is plentiful."""
    path = Path(model_path)
    files = list(path.glob("*.safetensors")) or list(path.glob("*.bin"))
    weights = sum(p.stat().st_size for p in files)
    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
        cfg = cfg.get("text_config", cfg)
        per_token = cfg["num_hidden_layers"] * (16 * cfg["hidden_size"] + 6 * cfg["intermediate_size"]) * 4
    except (OSError, KeyError, ValueError):
        return False, "cannot read the model's config.json sizes"
    need = 2 * weights + sft.batch_size * sft.max_seq_length * per_token
    avail = available_ram()
    if avail is None:
        return False, "available RAM unknown"
    ok = need < avail / 2
    return ok, f"needs ~{need / 2**30:.1f} GiB of {avail / 2**30:.1f} GiB available"


def available_ram() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def plan_cpu_fast(sft: Any, device: str, backend: str, model_path: str | None, world_size: int = 1) -> CpuFast:
    """What the fast path does for this run; every decision comes with its reason (printed, in the manifest)."""
    mode = sft.cpu_fast
    if backend != "hf" or device != "cpu":
        only = " (sft.cpu_fast = true applies to hf on CPU only)" if mode is True else ""
        return CpuFast(False, f"off: {backend} backend on {device}{only}")
    if mode is False:
        return CpuFast(False, "off: sft.cpu_fast = false (plain TRL)")
    plan = CpuFast(True, "auto: hf backend on CPU" if mode == "auto" else "sft.cpu_fast = true")
    plan.threads = usable_cores()
    import torch

    # Probed with the default (off): True where the CPU can flush (x86 SSE3); apply_runtime turns it on.
    plan.flush_denormal = bool(torch.set_flush_denormal(False))
    ok, why = native_bf16() if sft.precision in ("auto", "bf16") else (False, "")
    if sft.precision == "bf16":
        plan.bf16 = True  # as set, even where it is emulated
        if not ok:
            plan.notes.append(f"cpu_fast: sft.precision = 'bf16' although {why}")
    elif sft.precision == "auto":
        plan.bf16 = ok
        if not ok:
            plan.notes.append(f"cpu_fast: training in fp32: {why}")
    plan.padding_free = True
    plan.label_only_head = True
    plan.fused_lora = not getattr(sft, "lora_dropout", 0.0)
    if not plan.fused_lora:
        plan.notes.append("cpu_fast: LoRA branch not fused (lora_dropout > 0 needs PEFT's dropout)")
    if model_path is not None and (sft.load_in_4bit or sft.gradient_checkpointing):
        ok, why = fits_in_ram(model_path, sft)
        if ok:
            plan.skip_4bit = bool(sft.load_in_4bit)
            plan.skip_checkpointing = bool(sft.gradient_checkpointing)
            skipped = " and ".join(x for x, on in (("4-bit", plan.skip_4bit), ("activation checkpointing",
                                                                                  plan.skip_checkpointing)) if on)
            plan.notes.append(f"cpu_fast: {skipped} off, the model fits in RAM ({why}); "
                              "sft.cpu_fast = false keeps them")
        else:
            plan.notes.append(f"cpu_fast: keeping 4-bit/activation checkpointing as set ({why})")
    return plan


def apply_runtime(plan: dict, model: Any) -> None:
    """Process and model settings of the fast path, applied once before training.

    - torch threads = the cores this process may use.
    - flush denormals to zero: LoRA B starts at zero, so the first gradients and Adam's second moments are tiny
      and fp32 arithmetic on denormal numbers is ~100x slower on x86 (one AdamW step over the 4.9M LoRA
      parameters of SmolLM2 took 2.8 s instead of ~10 ms). bf16 has no denormals worth keeping either.
    - under bf16 autocast, PEFT's cast of every LoRA input to the fp32 adapter dtype is a full copy of the
      activations per LoRA layer and direction; autocast runs the LoRA matmuls in bf16 anyway (the fp32 weights
      stay the optimizer's master copy).
    - the fused LoRA Linear forward (cpu_fused.py) where the plan says so; modules it cannot compute exactly
      keep PEFT's forward, and the counts go into the plan's notes (and so the manifest)."""
    import torch

    if not plan.get("enabled"):
        return
    if plan.get("fused_lora"):
        from medscribe.sft.cpu_fused import fuse_lora

        fused, skipped = fuse_lora(model)
        left = "; ".join(f"{n} kept PEFT's forward: {why}" for why, n in skipped.items())
        plan.setdefault("notes", []).append(f"cpu_fast: {fused} LoRA Linear layers fused"
                                            + (f" ({left})" if left else ""))
    if plan.get("threads") and torch.get_num_threads() != plan["threads"]:
        torch.set_num_threads(plan["threads"])
    if plan.get("flush_denormal"):
        torch.set_flush_denormal(True)
    if plan.get("bf16"):
        for module in model.modules():
            if hasattr(module, "cast_input_dtype_enabled"):
                module.cast_input_dtype_enabled = False
        head = model.get_output_embeddings()
        if head is not None and not getattr(head, "_medscribe_fp32", False):
            head.forward = _fp32_linear(head)
            head._medscribe_fp32 = True


def _fp32_linear(head: Any):
    """The LM head in fp32 outside autocast: it runs on the labelled positions only (~15 % of the tokens), and
    bf16 logits (3 significant digits) would shift the loss by a few percent at the small losses of a tuned
    model.

    The frozen head weight (SmolLM2: the tied 49152 x 576 embedding) is cast to fp32 once, not on every
    forward (a 28M-element copy per step); the copy is redone when the weight changes (its `_version`) and
    not used at all when the weight trains. The backward for the hidden states: `_head_function`."""
    import torch

    cache: dict[str, Any] = {}
    head_fn = _head_function()

    def fp32_weight():
        weight = head.weight
        if weight.requires_grad or weight.dtype == torch.float32:
            return weight.float()
        key = (weight.data_ptr(), weight._version)
        if cache.get("key") != key:
            cache["key"], cache["weight"] = key, weight.detach().float()
        return cache["weight"]

    def forward(hidden):
        with torch.autocast("cpu", enabled=False):
            if hidden.dtype in (torch.bfloat16, torch.float32) and head.bias is None \
                    and not head.weight.requires_grad and head.weight.dtype == torch.bfloat16:
                return head_fn.apply(hidden, fp32_weight(), head.weight)
            bias = head.bias.float() if head.bias is not None else None
            return torch.nn.functional.linear(hidden.float(), fp32_weight(), bias)

    forward.fp32_weight = fp32_weight
    return forward


def _head_function():
    import torch

    class Fp32HeadBf16Grad(torch.autograd.Function):
        """logits = hidden.float() @ W32^T in fp32; the gradient for the hidden states as a bf16 matmul with the
        bf16 weight, returned in the hidden states' dtype (fp32 for the fp32 residual stream). Plain autograd
        would run that backward matmul in fp32; here the fp32 logits' gradient is rounded to bf16 first instead
        (bf16 noise, as in every other matmul of the bf16 backward), and the matmul runs ~2.5x faster (measured
        360 x 576 @ 576 x 49152: 0.60 s fp32, 0.24 s bf16 on the loaded 2-core box)."""

        @staticmethod
        def forward(ctx, hidden, weight32, weight16):
            ctx.save_for_backward(weight16)
            ctx.hidden_dtype = hidden.dtype
            return torch.nn.functional.linear(hidden.float(), weight32)

        @staticmethod
        def backward(ctx, grad):
            (weight16,) = ctx.saved_tensors
            return (grad.to(torch.bfloat16) @ weight16).to(ctx.hidden_dtype), None, None

    return Fp32HeadBf16Grad


def cast_frozen_to_bf16(model: Any) -> int:
    """Cast the frozen weight matrices to bf16 after PEFT created the adapter on fp32 weights, so the LoRA
    weights start exactly as they would in fp32 (PEFT initialises them in the base weights' dtype), and keep the
    residual stream in fp32. Returns the number of parameters cast.

    Only matrices (>= 2-D) are cast: the matmuls run on them in bf16 without a per-step cast. Norm weights and
    biases stay fp32 and the input embeddings' output is cast to fp32 (`_fp32_output`), so the hidden states that
    flow from layer to layer -- and their gradients -- are fp32: every `residual + block(x)` adds a bf16 block
    output to an fp32 stream, as torch autocast over fp32 weights does. With the stream in bf16 the rounding of
    30 residual adds piled up: the LoRA gradients of one SmolLM2 batch were 5.4 % (L2) off the fp32 ones, 3.6 %
    with this (the same as autocast over fp32 weights), for no measurable step time."""
    import torch

    cast = 0
    for param in model.parameters():
        if not param.requires_grad and param.dtype == torch.float32 and param.dim() >= 2:
            param.data = param.data.to(torch.bfloat16)
            cast += param.numel()
    embeddings = model.get_input_embeddings()
    if embeddings is not None and not getattr(embeddings, "_medscribe_fp32_out", False):
        embeddings.register_forward_hook(_fp32_output)
        embeddings._medscribe_fp32_out = True
    return cast


def _fp32_output(module: Any, inputs: Any, output: Any) -> Any:
    import torch

    return output.float() if isinstance(output, torch.Tensor) and output.dtype == torch.bfloat16 else output


def varlen_sdpa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, is_causal=None,
                **kwargs):
    """SDPA that, on a padding-free batch (one row, `cu_seq_lens_q` from TRL's collator), attends within each
    original row only: one causal SDPA call per row. Anything else (padded eval batches, generation) goes to
    transformers' own SDPA unchanged.

    Transformers' SDPA would instead build a block-diagonal mask over the whole concatenated row and compute every
    block of it (for 8 rows of ~300 tokens, ~8x the attention FLOPs of the rows alone)."""
    import torch
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    cu = kwargs.get("cu_seq_lens_q")
    if cu is None or query.shape[0] != 1 or query.shape[2] != key.shape[2] or query.shape[2] != int(cu[-1]):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    # Measured on 8 rows of ~330 tokens (fwd+bwd, bf16, 2 cores): slicing q[:, :, s:e] 0.98 s per layer (each
    # slice's backward zero-fills a full-size gradient), split 0.20 s; SDPA's enable_gqa instead of repeat_kv 0.63 s.
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    lengths = cu.diff().tolist()
    parts = [
        torch.nn.functional.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scaling, is_causal=True)
        for q, k, v in zip(query.split(lengths, 2), key.split(lengths, 2), value.split(lengths, 2), strict=True)
    ]
    out = torch.cat(parts, dim=2)
    return out.transpose(1, 2).contiguous(), None


def register_varlen_attention() -> str:
    """Register `varlen_sdpa` under VARLEN_ATTENTION (masks as for sdpa) and return the name for from_pretrained."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(VARLEN_ATTENTION, varlen_sdpa)
    ALL_MASK_ATTENTION_FUNCTIONS.register(VARLEN_ATTENTION, sdpa_mask)
    return VARLEN_ATTENTION


def label_position_loss(model: Any, inputs: dict, num_items_in_batch: Any = None) -> tuple[Any, dict]:
    """(loss, stats) with the LM head applied only where the next token carries a label.

    `logits_to_keep` takes a boolean (batch, seq) mask in transformers 5 and returns the kept rows flattened, so
    padded and padding-free batches both work. The loss is the same token-level mean TRL computes: the sum of the
    answer tokens' negative log-likelihoods over `num_items_in_batch` (all answer tokens of the accumulated
    batch), or over this batch's answer tokens."""
    import torch

    labels = inputs["labels"]
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != -100
    targets = labels[:, 1:][keep[:, :-1]]
    model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
    outputs = model(**model_inputs, use_cache=False, logits_to_keep=keep)
    logits = outputs.logits.reshape(-1, outputs.logits.shape[-1]).float()
    # cross_entropy = nll_loss(log_softmax): one log_softmax serves the loss and the logged entropy
    logp = torch.log_softmax(logits, dim=-1)
    total = torch.nn.functional.nll_loss(logp, targets, reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else targets.numel()
    loss = total / torch.as_tensor(count, device=total.device).clamp(min=1)
    with torch.no_grad():
        logp = logp.detach()
        entropy = -(logp.exp() * logp).sum(-1).sum()
        correct = (logp.argmax(-1) == targets).sum()
    return loss, {"label_tokens": targets.numel(), "entropy_sum": entropy, "correct": correct}
