"""Speed of `medscribe ask` batches: API concurrency and local batched generation.

    flock /tmp/medscribe-heavy.lock .venv/bin/python bench/ask_bench.py [--rows 64] [--local-rows 32]

1. openai backend against the test server (tests/ask/fake_server.py) with a fixed 200 ms latency per request:
   time per row at concurrency 1 vs concurrency 16, through the real `run_batch` (prompt building, JSON
   parsing, fsynced appends included). Target: speedup >= 80% of the ideal 16x.
2. local backend on the tiny test model (tests/kit.py): the same prompts at batch_size 1 vs batch_size 16
   (greedy, so both produce the same tokens). Target: >= 3x.

Prints the figures, the key figure on the last line, and exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "ask")]

LATENCY = 0.2
CONCURRENCY = 16
API_TARGET = 0.8  # of the ideal 16x
LOCAL_TARGET = 3.0


def _rows(n: int, prefix: str) -> list[dict]:
    return [{"id": f"{prefix}{i}", "input": f"Очаг {i} мм в белом веществе лобной доли", "organ": "головной мозг",
             "modality": "МРТ"} for i in range(n)]


def _write(path: Path, rows: list[dict]) -> Path:
    import json

    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@contextmanager
def test_server(latency: float):
    """The test server in its own process, as a real server would be (not sharing our GIL)."""
    script = ROOT / "tests" / "ask" / "fake_server.py"
    proc = subprocess.Popen([sys.executable, str(script), "--port", "0", "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("serving on "):
            sys.exit("api bench: the test server did not start")
        yield line.split()[-1]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def bench_api(work: Path, rows: int) -> float:
    from medscribe.ask import run_batch
    from medscribe.settings import load_settings

    sequential_rows = max(CONCURRENCY, rows // 4)  # enough to time; 16 x 0.2 s at concurrency 1
    with test_server(LATENCY) as base_url:
        timings = {}
        # The first run pays one-off costs (imports, first connections): warm up, untimed.
        for concurrency, n in ((4, 4), (1, sequential_rows), (CONCURRENCY, rows)):
            settings = load_settings(None, {
                "paths": {"ask": str(work / "ask")},
                "ask": {"base_url": base_url, "k": 0, "concurrency": concurrency, "json_mode": "prompt"},
            })
            path = _write(work / f"api-{concurrency}.jsonl", _rows(n, f"c{concurrency}-"))
            started = time.perf_counter()
            summary = run_batch(settings, path, run=f"api-c{concurrency}", console=_quiet())
            elapsed = time.perf_counter() - started
            if summary["failures"]:
                sys.exit(f"api bench: {summary['failures']} failed rows ({summary['errors'][:1]})")
            if concurrency == 4:
                continue
            timings[concurrency] = elapsed / n
            print(f"openai  concurrency {concurrency:>2}: {n:>3} rows in {elapsed:6.2f} s = "
                  f"{timings[concurrency] * 1000:6.1f} ms/row (latency p50 {summary['latency_p50_s']:.3f} s)")
    speedup = timings[1] / timings[CONCURRENCY]
    print(f"openai  speedup at concurrency {CONCURRENCY}: {speedup:.2f}x "
          f"({speedup / CONCURRENCY:.0%} of ideal, target >= {API_TARGET:.0%})")
    return speedup


def bench_local(work: Path, rows: int, max_new_tokens: int) -> float:
    from kit import build_tiny_causal_lm

    from medscribe.ask import run_batch
    from medscribe.ask.backend_local import LocalBackend
    from medscribe.settings import load_settings

    model_dir = build_tiny_causal_lm(work / "tiny-model")
    path = _write(work / "local.jsonl", _rows(rows, "l"))
    timings, tokens = {}, {}
    for batch_size in (1, 16):
        settings = load_settings(None, {
            "paths": {"ask": str(work / "ask")},
            "ask": {"backend": "local", "local_model": str(model_dir), "k": 0, "batch_size": batch_size,
                    "max_new_tokens": max_new_tokens, "device": "cpu"},
        })
        backend = LocalBackend(settings.ask)  # loading is not what is measured
        from medscribe.ask.generation import Request  # one untimed warm-up generation (first-call costs)

        backend.generate([Request([{"role": "user", "content": "warm up"}], "report")], lambda *_: None)
        started = time.perf_counter()
        summary = run_batch(settings, path, run=f"local-b{batch_size}", backend=backend, console=_quiet())
        timings[batch_size] = time.perf_counter() - started
        tokens[batch_size] = summary["completion_tokens"]
        print(f"local   batch_size {batch_size:>2}: {rows} rows in {timings[batch_size]:6.2f} s, "
              f"{summary['completion_tokens']} tokens, {summary['tokens_per_s']:.0f} tokens/s")
    if tokens[1] != tokens[16]:
        print(f"warning: batched run produced {tokens[16]} tokens vs {tokens[1]} one at a time")
    speedup = timings[1] / timings[16]
    print(f"local   batched speedup: {speedup:.2f}x (target >= {LOCAL_TARGET:.0f}x)")
    return speedup


def _quiet():
    from rich.console import Console

    return Console(stderr=True, quiet=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=128, help="rows for the concurrency-16 API run (a test set)")
    parser.add_argument("--local-rows", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ask-bench-") as tmp:
        api = bench_api(Path(tmp), args.rows)
        local = bench_local(Path(tmp), args.local_rows, args.max_new_tokens)
    ok = api >= API_TARGET * CONCURRENCY and local >= LOCAL_TARGET
    print(f"ask_bench: api speedup {api:.2f}x at concurrency {CONCURRENCY} ({api / CONCURRENCY:.0%} of ideal, "
          f"target >= {API_TARGET:.0%}); local batched {local:.2f}x (target >= {LOCAL_TARGET:.0f}x): "
          f"{'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
