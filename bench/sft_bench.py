"""Training throughput of `medscribe sft`: tokens/s and peak memory for the hf and unsloth backends, packed
and unpacked, on the same data, in one run.

    flock /tmp/medscribe-heavy.lock .venv/bin/python bench/sft_bench.py                 # tiny model, CPU
    python bench/sft_bench.py --model artifacts/models/SmolLM2-135M-Instruct --steps 4  # a real model
    python bench/sft_bench.py --model Qwen/Qwen2.5-7B-Instruct --4bit --batch-size 4    # what a GPU user runs

Data: `--data DIR/train.jsonl` (the `data` stage's output), else the bundled Russian radiology sample.
Each configuration runs in its own process: unsloth patches transformers on import, and peak memory
(max RSS on CPU, torch.cuda.max_memory_allocated on GPU) must belong to one configuration only.
tokens/s counts the non-padding tokens TRL reports (`num_tokens`) from the end of the first optimizer step
(warm-up excluded) to the last. Exit 1 when a configuration fails or the best tokens/s is under --target.
The last line is the key figure.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CSV = ROOT / "examples" / "sample" / "report" / "radiology_ru.csv"


def sample_records(limit: int) -> list[dict]:
    rows = []
    with open(SAMPLE_CSV, encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, delimiter=";"):
            rows.append({
                "id": row["ID"], "task": "report", "input": row["Описание"], "target": row["Заключение"],
                "organ": row["Орган"], "modality": row["Модальность"],
            })
    return (rows * (limit // max(len(rows), 1) + 1))[:limit]


def child(spec: dict) -> dict:
    """Train `steps` optimizer steps with one configuration; report throughput and peak memory."""
    if spec["backend"] == "unsloth":
        import unsloth  # noqa: F401  (before transformers/trl/peft)
    import resource

    import torch
    from transformers import TrainerCallback

    from medscribe.schemas import Record
    from medscribe.settings import load_settings
    from medscribe.sft.backends import choose_setup, load_model
    from medscribe.sft.dataset import build_examples, tokenize_examples
    from medscribe.sft.trainer import build_trainer

    settings = load_settings(flags={"sft": {
        "backend": spec["backend"], "base_model": spec["model"], "load_in_4bit": spec["four_bit"],
        "packing": spec["packing"], "max_steps": spec["steps"], "batch_size": spec["batch_size"], "grad_accum": 1,
        "max_seq_length": spec["seq_len"], "lora_r": spec["lora_r"], "lora_alpha": 2 * spec["lora_r"],
        "logging_steps": 1, "report_to": "none", "eval_steps": 10_000, "save_total_limit": 1,
    }})
    setup = choose_setup(settings.sft)
    model, tokenizer = load_model(settings.sft, setup, spec["model"])
    records = [Record(**r) for r in spec["records"]]
    examples, _ = build_examples(records, settings.prompt)
    rows, stats = tokenize_examples(examples, tokenizer, settings.sft.max_seq_length)

    marks: list[tuple[float, float]] = []  # (time, cumulative num_tokens) after each logged step

    class Clock(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "num_tokens" in logs:
                marks.append((time.perf_counter(), float(logs["num_tokens"])))

    with tempfile.TemporaryDirectory() as tmp:
        trainer = build_trainer(model, tokenizer, settings.sft, setup, Path(tmp), rows, [], None)
        trainer.args.save_strategy = "no"
        trainer.add_callback(Clock())
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    (t0, n0), (t1, n1) = marks[0], marks[-1]
    peak = (torch.cuda.max_memory_allocated() if torch.cuda.is_available()
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {
        "backend": setup.backend, "packing": spec["packing"], "quantization": setup.quantization,
        "precision": setup.precision, "device": setup.device, "rows": stats["examples"],
        "steps_timed": len(marks) - 1, "seconds": round(t1 - t0, 3),
        "tokens_per_s": round((n1 - n0) / (t1 - t0), 1) if t1 > t0 else 0.0,
        "s_per_step": round((t1 - t0) / max(len(marks) - 1, 1), 3),
        "peak_memory_mb": round(peak / 2**20, 1),
        "peak_memory_kind": "cuda allocated" if setup.device == "cuda" else "process max RSS",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="HF model folder (default: the tiny test model, built on the spot)")
    parser.add_argument("--data", type=Path, help="train.jsonl from `medscribe data` (default: bundled sample)")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per configuration (first is warm-up)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--4bit", dest="four_bit", action="store_true", help="QLoRA nf4 for both backends")
    parser.add_argument("--backends", default="hf,unsloth")
    parser.add_argument("--target", type=float, default=1000.0,
                        help="minimum best tokens/s (default fits the tiny model on 2 CPU cores)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(Path(args.child).read_text(encoding="utf-8")))))
        return 0

    from rich.console import Console
    from rich.table import Table

    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            sys.path.insert(0, str(ROOT / "tests"))
            from kit import build_tiny_causal_lm

            model = str(build_tiny_causal_lm(Path(tmp) / "tiny"))
        if args.data:
            from medscribe.io import read_jsonl

            fields = ("id", "task", "input", "target", "organ", "modality", "specialty")
            records = [{k: r.get(k) for k in fields} for r in read_jsonl(args.data)][: args.rows]
        else:
            records = sample_records(args.rows)
        results, failed = [], []
        for backend in args.backends.split(","):
            for packing in (False, True):
                spec = {"backend": backend, "model": model, "four_bit": args.four_bit, "packing": packing,
                        "steps": args.steps, "batch_size": args.batch_size, "seq_len": args.seq_len,
                        "lora_r": args.lora_r, "records": records}
                spec_path = Path(tmp) / "spec.json"
                spec_path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
                label = f"{backend} {'packed' if packing else 'unpacked'}"
                with console.status(f"training {label}"):
                    proc = subprocess.run([sys.executable, __file__, "--child", str(spec_path)],
                                          capture_output=True, text=True, cwd=ROOT)
                line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
                if proc.returncode != 0 or line is None:
                    failed.append(label)
                    console.print(f"[red]{label} failed[/red]: {proc.stderr.strip().splitlines()[-1:]}")
                    continue
                results.append(json.loads(line[len("RESULT "):]))

    table = Table(title=f"sft throughput ({Path(model).name if args.model else 'tiny model'}, "
                        f"batch {args.batch_size}, {args.rows} rows, max len {args.seq_len})")
    for col in ("backend", "packing", "device", "dtype", "quant", "s/step", "tokens/s", "peak MB"):
        table.add_column(col, justify="right" if col in {"s/step", "tokens/s", "peak MB"} else "left")
    for r in results:
        table.add_row(r["backend"], str(r["packing"]), r["device"], r["precision"], r["quantization"],
                      f"{r['s_per_step']:.3f}", f"{r['tokens_per_s']:.0f}", f"{r['peak_memory_mb']:.0f}")
    console.print(table)
    print(json.dumps(results, ensure_ascii=False))
    best = max(results, key=lambda r: r["tokens_per_s"], default=None)
    if best is None:
        print("best tokens/s: none (every configuration failed)")
        return 1
    ok = not failed and best["tokens_per_s"] >= args.target
    print(f"best tokens/s: {best['tokens_per_s']:.0f} ({best['backend']}, packing={best['packing']}) "
          f"target {args.target:.0f}: {'ok' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
