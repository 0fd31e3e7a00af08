"""Micro-bench of one CPU fast-path training step (forward + backward), variant against variant, interleaved.

    flock /tmp/medscribe-heavy.lock .venv/bin/python bench/cpu_step_bench.py [--layers 30] [--reps 7]
        [--rows 8] [--tokens 300] [--variants oldhead,lora,lora+norm,lora+padded_attn] [--profile]

Loads the demo model (artifacts/models/SmolLM2-135M-Instruct) exactly as the fast path does (backends.load_model
with `cpu_fast = "auto"`, LoRA r16 on all 7 projections, bf16 frozen weights where the CPU has native bf16),
optionally keeps only the first `--layers` decoder layers, and times forward + backward of
`label_position_loss` under bf16 autocast on one padding-free batch (TRL's collator; `--rows` rows of
`--tokens` +- 25 % random tokens, the last 15 % of each row labelled). Each repetition runs every variant
once, in turn (reversed every other repetition), on the same model and batch (variants are switched between
steps), so a shared machine's changing load hits all of them alike; medians per variant (wall time, and the
process's CPU time, which a loaded machine inflates less) and the ratio to the first are printed, key figure
last.
The loss and the LoRA gradient norm of each variant are printed too (the same within bf16 noise).

Variants (combine with +): base (PEFT's LoRA and transformers' RMSNorm forwards, the fast path's fp32 head),
lora (cpu_fused.fuse_lora), norm (cpu_fused.fuse_rms_norm), padded_attn (one SDPA call over
[rows, heads, Lmax, d] with a causal+padding mask instead of one call per row), math_attn (per-row calls on
SDPA's math backend), oldhead (the fp32 head as before 2026-12-02: the weight cast to fp32 on every forward,
the backward matmul in fp32). The fast path as trained now is `lora`; as before, `oldhead`.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "artifacts" / "models" / "SmolLM2-135M-Instruct"


def load(model_path: Path, layers: int):
    from medscribe.settings import load_settings
    from medscribe.sft.backends import choose_setup, load_model

    tmp = Path(tempfile.mkdtemp(prefix="cpu-step-bench-"))
    flags = {"backend": "hf", "base_model": str(model_path), "load_in_4bit": False, "lora_r": 16,
             "lora_alpha": 32, "max_seq_length": 512, "batch_size": 8, "report_to": "none", "cpu_fast": "auto"}
    settings = load_settings(flags={"paths": {"data": str(tmp), "sft": str(tmp)}, "sft": flags})
    setup = choose_setup(settings.sft)
    plan = dict(setup.cpu_fast, fused_lora=False, fused_rms_norm=False)  # the bench switches these itself
    model, _ = load_model(settings.sft, setup, str(model_path))
    if layers:
        inner = model.get_base_model().model
        del inner.layers[layers:]
        model.config.num_hidden_layers = len(inner.layers)
    from medscribe.sft.cpu_fast import apply_runtime

    apply_runtime(plan, model)
    model.train()
    return model, setup


def batch(rows: int, tokens: int, vocab: int, seed: int = 0) -> dict:
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    rnd = random.Random(seed)
    examples = []
    for _ in range(rows):
        n = rnd.randint(int(tokens * 0.75), int(tokens * 1.25))
        ids = [rnd.randrange(3, vocab) for _ in range(n)]
        answer = max(1, int(n * 0.15))
        examples.append({"input_ids": ids, "labels": [-100] * (n - answer) + ids[n - answer:]})
    return DataCollatorForLanguageModeling(pad_token_id=2, padding_free=True)(examples)


def padded_sdpa(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, is_causal=None,
                **kwargs):
    """One SDPA call over the rows padded to the longest: [rows, heads, Lmax, d], causal + key-padding mask."""
    import torch
    from transformers.integrations.sdpa_attention import repeat_kv

    from medscribe.sft.cpu_fast import varlen_sdpa

    cu = kwargs.get("cu_seq_lens_q")
    if cu is None or query.shape[0] != 1:
        return varlen_sdpa(module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs)
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    lengths = cu.diff()
    rows, lmax, total = lengths.numel(), int(lengths.max()), int(cu[-1])
    row = torch.repeat_interleave(torch.arange(rows), lengths)
    index = row * lmax + (torch.arange(total) - cu[:-1].long()[row])  # flat padded slot of every token
    heads, dim = query.shape[1], query.shape[3]

    def pad(t):
        flat = t[0].transpose(0, 1)  # [T, H, d]
        out = flat.new_zeros(rows * lmax, heads, dim).index_copy(0, index, flat)
        return out.view(rows, lmax, heads, dim).transpose(1, 2)

    valid = torch.arange(lmax)[None, :] < lengths[:, None]  # [rows, Lmax]
    mask = torch.ones(lmax, lmax, dtype=torch.bool).tril()[None] & valid[:, None, :]
    out = torch.nn.functional.scaled_dot_product_attention(pad(query), pad(key), pad(value), attn_mask=mask[:, None],
                                                           dropout_p=dropout, scale=scaling)
    out = out.transpose(1, 2).reshape(rows * lmax, heads, dim).index_select(0, index)
    return out[None], None


def math_sdpa(*args, **kwargs):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from medscribe.sft.cpu_fast import varlen_sdpa

    with sdpa_kernel(SDPBackend.MATH):
        return varlen_sdpa(*args, **kwargs)


def old_head(head):
    import torch

    def forward(hidden):
        with torch.autocast("cpu", enabled=False):
            bias = head.bias.float() if head.bias is not None else None
            return torch.nn.functional.linear(hidden.float(), head.weight.float(), bias)

    return forward


def switch(model, variant: str) -> None:
    from transformers import AttentionInterface

    from medscribe.sft.cpu_fast import VARLEN_ATTENTION, varlen_sdpa
    from medscribe.sft.cpu_fused import fuse_lora, fuse_rms_norm, unfuse

    parts = set(variant.split("+"))
    unknown = parts - {"base", "lora", "norm", "padded_attn", "math_attn", "oldhead"}
    if unknown:
        raise SystemExit(f"unknown variant part(s): {', '.join(sorted(unknown))}")
    head = model.get_output_embeddings()
    if not hasattr(head, "_bench_fast_forward"):
        head._bench_fast_forward, head._bench_old_forward = head.forward, old_head(head)
    head.forward = head._bench_old_forward if "oldhead" in parts else head._bench_fast_forward
    unfuse(model)
    if "lora" in parts:
        fuse_lora(model)
    if "norm" in parts:
        fuse_rms_norm(model)
    attn = padded_sdpa if "padded_attn" in parts else math_sdpa if "math_attn" in parts else varlen_sdpa
    AttentionInterface.register(VARLEN_ATTENTION, attn)


def step(model, inputs: dict, bf16: bool) -> tuple[float, float, float, float]:
    import torch

    from medscribe.sft.cpu_fast import label_position_loss

    model.zero_grad(set_to_none=True)
    start, cpu = time.perf_counter(), time.process_time()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss, _ = label_position_loss(model, dict(inputs))
    loss.backward()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    grads = [p.grad.float().norm() for n, p in model.named_parameters() if "lora_" in n and p.grad is not None]
    return seconds, cpu, loss.item(), torch.stack(grads).norm().item()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=MODEL)
    parser.add_argument("--layers", type=int, default=0, help="keep only the first N decoder layers (0: all)")
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=300)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--variants", default="oldhead,lora")
    parser.add_argument("--profile", action="store_true", help="torch.profiler table of one step per variant")
    args = parser.parse_args(argv)
    if not (args.model / "config.json").exists():
        print(f"{args.model}: no model there (make demo-model)", file=sys.stderr)
        return 2
    import torch

    model, setup = load(args.model, args.layers)
    bf16 = setup.precision == "bf16"
    inputs = batch(args.rows, args.tokens, model.config.vocab_size)
    variants = args.variants.split(",")
    print(f"{args.model.name}: {len(model.get_base_model().model.layers)} layers, {args.rows} rows, "
          f"{inputs['input_ids'].shape[1]} tokens, {'bf16' if bf16 else 'fp32'}, {torch.get_num_threads()} threads")
    times: dict[str, list[float]] = {v: [] for v in variants}
    cpu_times: dict[str, list[float]] = {v: [] for v in variants}
    checks: dict[str, tuple[float, float]] = {}
    for v in variants:  # warm-up (first-call allocations, oneDNN kernel creation), not timed
        switch(model, v)
        checks[v] = step(model, inputs, bf16)[2:]
    for rep in range(args.reps):
        for v in variants if rep % 2 == 0 else variants[::-1]:  # ABBA: neither goes first every time
            switch(model, v)
            seconds, cpu, *_ = step(model, inputs, bf16)
            times[v].append(seconds)
            cpu_times[v].append(cpu)
        print(f"rep {rep + 1}: " + "  ".join(f"{v} {times[v][-1]:.3f}s" for v in variants), flush=True)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for v in variants:
            switch(model, v)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                step(model, inputs, bf16)
            print(f"--- {v}\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))
    first, first_cpu = statistics.median(times[variants[0]]), statistics.median(cpu_times[variants[0]])
    for v in variants:
        med, med_cpu = statistics.median(times[v]), statistics.median(cpu_times[v])
        loss, grad = checks[v]
        print(f"{v:>24}: median {med:.3f} s wall ({first / med:.2f}x of {variants[0]}), {med_cpu:.3f} s CPU "
              f"({first_cpu / med_cpu:.2f}x), fastest {min(times[v]):.3f} s  loss {loss:.5f}  "
              f"LoRA grad norm {grad:.5f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
