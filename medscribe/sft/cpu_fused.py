"""Fused forwards for the CPU fast path (cpu_fast.py): fewer, larger operations per training step.

    from medscribe.sft.cpu_fused import fuse_lora, fuse_rms_norm, unfuse
    n_lora, skipped = fuse_lora(peft_model)   # LoRA Linear: base matmul + one addmm, scaling folded into alpha
    n_norm = fuse_rms_norm(peft_model)        # verified RMSNorm classes -> torch.nn.functional.rms_norm
    unfuse(peft_model)                        # back to PEFT's / transformers' own forwards

The fast path uses fuse_lora (plan field `fused_lora`, off when lora_dropout > 0). fuse_rms_norm is not on it:
in torch 2.13 F.rms_norm on CPU is a composite of the same elementwise operations (with more dtype casts, 5
instead of 2 in the forward), it measured no faster, and it rounds differently; bench/cpu_step_bench.py keeps
it as the `norm` variant so that can be re-measured on a newer torch.
Both replace a module's forward on the instance (nothing global, no class is patched), so a GPU run or a
`sft.cpu_fast = false` run in the same process is untouched, and `unfuse` restores the originals exactly.
What was measured: docs/sft.md ("Training on a CPU: the fast path"); bench/cpu_step_bench.py repeats it.
"""

from __future__ import annotations

from typing import Any

# transformers RMSNorm classes whose forward is exactly `weight * (x.float() * rsqrt(mean(x.float()**2) + eps))
# .to(x.dtype)` -- checked against F.rms_norm by tests/sft/test_sft_cpu_fast.py. Others (Gemma's `1 + weight`,
# OLMo's, ...) keep their own forward.
RMS_NORM_CLASSES = (
    ("transformers.models.llama.modeling_llama", "LlamaRMSNorm"),
    ("transformers.models.mistral.modeling_mistral", "MistralRMSNorm"),
    ("transformers.models.qwen2.modeling_qwen2", "Qwen2RMSNorm"),
    ("transformers.models.qwen3.modeling_qwen3", "Qwen3RMSNorm"),
)


def rms_norm_classes() -> tuple[type, ...]:
    import importlib

    found = []
    for module_name, name in RMS_NORM_CLASSES:
        try:
            found.append(getattr(importlib.import_module(module_name), name))
        except (ImportError, AttributeError):  # an older/newer transformers without that model
            continue
    return tuple(found)


def fusable_lora(module: Any) -> str | None:
    """None when `module` is a PEFT LoRA Linear the fused forward computes exactly, else why not."""
    import torch
    from peft.tuners.lora.layer import Linear as LoraLinear

    if not isinstance(module, LoraLinear):
        return "not a LoRA Linear"
    if type(module.get_base_layer()) is not torch.nn.Linear:
        return "base layer is not a plain Linear (4-bit?)"
    if len(module.active_adapters) != 1 or getattr(module, "fan_in_fan_out", False):
        return "several adapters or fan_in_fan_out"
    name = module.active_adapters[0]
    if name not in module.lora_A or name in getattr(module, "lora_variant", {}):
        return "DoRA or another LoRA variant"
    if not isinstance(module.lora_dropout[name], torch.nn.Identity):
        return "lora_dropout > 0"
    if getattr(module, "lora_bias", {}).get(name, False):
        return "lora_bias"
    return None


def fuse_lora(model: Any) -> tuple[int, dict[str, int]]:
    """Give every fusable LoRA Linear the fused forward; returns (fused, {reason: count} of those left alone)."""
    import types

    fused, skipped = 0, {}
    for module in model.modules():
        why = fusable_lora(module)
        if why == "not a LoRA Linear":
            continue
        if why is not None:
            skipped[why] = skipped.get(why, 0) + 1
            continue
        if "forward" not in module.__dict__:
            # a bound method, not a closure: copy.deepcopy rebinds it to the copy (a closure would keep
            # computing with the original module's weights)
            module.forward = types.MethodType(_fused_lora_forward, module)
        fused += 1
    return fused, skipped


def _fused_lora_forward(self, x, *args, **kwargs):
    """PEFT computes `base(x) + lora_B(lora_A(dropout(x))) * scaling`: besides the matmuls a full-size multiply
    and add, each with its backward, per module. Here: `addmm(base(x), lora_A(x), B^T, alpha=scaling)` -- the
    scaling rides on the small matmul and the sum is part of the GEMM. Under autocast every operand is cast as
    autocast casts it for PEFT's version (linear and addmm are both bf16 ops), so the dtypes are the same.
    Anything PEFT could do differently at call time (adapters disabled, merged, several or other adapters,
    dropout, extra arguments, mixed dtypes outside autocast) goes to PEFT's own forward."""
    import torch

    names = self.active_adapters
    name = names[0] if len(names) == 1 else None
    if (args or kwargs or name is None or self.disable_adapters or self.merged or name not in self.lora_A
            or name in self.lora_variant or not isinstance(self.lora_dropout[name], torch.nn.Identity)
            or (x.dtype != self.lora_A[name].weight.dtype and not torch.is_autocast_enabled("cpu"))):
        return type(self).forward(self, x, *args, **kwargs)
    out = self.base_layer(x)  # the module, not its weight: hooks on the base layer still run
    h = torch.nn.functional.linear(x, self.lora_A[name].weight)
    shape = out.shape
    out = torch.addmm(out.reshape(-1, shape[-1]), h.reshape(-1, h.shape[-1]), self.lora_B[name].weight.t(),
                      alpha=self.scaling[name])
    return out.view(shape)


def fuse_rms_norm(model: Any) -> int:
    """Give the verified RMSNorm modules (RMS_NORM_CLASSES) the `torch.nn.functional.rms_norm` forward.

    F.rms_norm computes in fp32 for bf16 input too, but rounds once, at the end, where transformers rounds
    before the weight multiply (a bf16-rounding difference). On CUDA it is one fused kernel; on CPU (torch
    2.13) it is not (see the module docstring), so the fast path does not use it."""
    import types

    classes = rms_norm_classes()
    count = 0
    for module in model.modules():
        if type(module) in classes:
            if "forward" not in module.__dict__:
                module.forward = types.MethodType(_fused_rms_norm_forward, module)
            count += 1
    return count


def _fused_rms_norm_forward(self, hidden):
    import torch

    weight = self.weight
    if hidden.dtype != weight.dtype:  # transformers returns the dtype promotion then; keep its forward
        return type(self).forward(self, hidden)
    with torch.autocast("cpu", enabled=False):  # same dtype in and out as transformers' forward
        return torch.nn.functional.rms_norm(hidden, (hidden.shape[-1],), weight, self.variance_epsilon)


def unfuse(model: Any) -> int:
    """Remove the fused forwards (fuse_lora, fuse_rms_norm) again; returns how many were removed."""
    removed = 0
    for module in model.modules():
        fwd = module.__dict__.get("forward")
        if getattr(fwd, "__func__", None) in (_fused_lora_forward, _fused_rms_norm_forward):
            del module.forward
            removed += 1
    return removed
