"""Speed of `medscribe serve`: the real `openai` client (AsyncOpenAI) at concurrency 1, 8 and 32.

    flock /tmp/medscribe-heavy.lock .venv/bin/python bench/serve_bench.py [--max-tokens 32] [--adapter DIR]

Setup (in a temp folder, ~10 s): `medscribe data` + `medscribe index` on the bundled sample with
examples/demo.toml, then `medscribe serve` in its own process with the demo model (SmolLM2-135M-Instruct, plus
--adapter when given) on this CPU. Every request is a `medscribe-rag` answer (retrieve -> prompt -> generate ->
JSON) for a finding of the test split, greedy, at most --max-tokens new tokens; serve.schema_retries = 0 so
every request is one generation and the levels do the same work per request (the same 8 findings, each level
with its own `user` field so nothing comes from the cache).

Measured: requests/s and p50/p95 latency per level, errors, and the cache: the same request 30 times after a
first answer (p50 latency of the hits). Targets: throughput at concurrency 8 >= 3x concurrency 1 (batching),
0 errors, cache-hit p50 <= 5 ms. Prints the figures, the key figure on the last line; exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "artifacts" / "models" / "SmolLM2-135M-Instruct"
THROUGHPUT_TARGET = 3.0
CACHE_TARGET_MS = 5.0
CLI = [sys.executable, "-c", "from medscribe.cli import app; app(prog_name='medscribe')", "-c",
       str(ROOT / "examples" / "demo.toml")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def level(client, findings: list[dict], concurrency: int, requests: int, max_tokens: int, tag: str):
    """`requests` answers with `concurrency` in flight; returns (wall seconds, latencies, errors)."""
    latencies: list[float] = []
    errors: list[str] = []
    queue = [findings[i % len(findings)] for i in range(requests)]

    async def worker() -> None:
        while queue:
            row = queue.pop()
            started = time.perf_counter()
            try:
                await client.chat.completions.create(
                    model="medscribe-rag", messages=[{"role": "user", "content": row["input"]}], temperature=0,
                    max_tokens=max_tokens, user=tag,
                    extra_body={"medscribe": {"organ": row.get("organ"), "modality": row.get("modality")}})
                latencies.append(time.perf_counter() - started)
            except Exception as exc:  # counted, the bench goes on
                errors.append(f"{type(exc).__name__}: {exc}"[:200])

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies, errors


async def cache_hits(client, row: dict, max_tokens: int, n: int = 30) -> tuple[list[float], int]:
    kwargs = {"model": "medscribe-rag", "messages": [{"role": "user", "content": row["input"]}], "temperature": 0,
              "max_tokens": max_tokens, "user": "cache"}
    await client.chat.completions.create(**kwargs)  # the miss that fills the entry
    latencies, hits = [], 0
    for _ in range(n):
        started = time.perf_counter()
        raw = await client.chat.completions.with_raw_response.create(**kwargs)
        latencies.append(time.perf_counter() - started)
        hits += raw.headers.get("x-medscribe-cache") == "hit"
    return latencies, hits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--adapter", default=None, help="serve this adapter too (medscribe-rag then uses it)")
    parser.add_argument("--max-batch", type=int, default=16)
    args = parser.parse_args()
    if not (MODEL / "config.json").is_file():
        print(f"serve_bench: {MODEL} is missing (run `make demo-model` first)")
        return 1
    from openai import AsyncOpenAI

    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "MEDSCRIBE_PATHS__DATA": f"{tmp}/data", "MEDSCRIBE_PATHS__INDEX": f"{tmp}/index",
               "MEDSCRIBE_PATHS__ARTIFACTS": tmp, "MEDSCRIBE_SERVE__SCHEMA_RETRIES": "0", "COLUMNS": "240"}
        for stage in ("data", "index"):
            subprocess.run([*CLI, stage], cwd=ROOT, env=env, check=True, capture_output=True)
        findings = [json.loads(line) for line in Path(f"{tmp}/data/test.jsonl").read_text("utf-8").splitlines()][:8]
        port = free_port()
        serve = [*CLI, "serve", "--port", str(port), "--max-batch", str(args.max_batch), "--batch-wait-ms", "10",
                 "--max-queue", "256", "--device", "cpu"]
        serve += ["--adapter", args.adapter] if args.adapter else ["--no-adapter"]
        log_path = Path(tmp) / "serve.log"  # a file, not a pipe: a full pipe would stall the server
        log = open(log_path, "w", encoding="utf-8")
        server = subprocess.Popen(serve, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                        break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        print("serve_bench: the server did not start:", log_path.read_text("utf-8")[-1000:])
                        return 1
                    time.sleep(0.5)
            return asyncio.run(measure(AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none",
                                                   max_retries=0, timeout=300), findings, args))
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
            lines = log_path.read_text("utf-8").splitlines()
            print(f"server log: {sum('status=200' in line for line in lines)} request lines with status 200, "
                  f"{sum('status=5' in line for line in lines)} with 5xx")


async def measure(client, findings: list[dict], args) -> int:
    await level(client, findings, 1, 2, args.max_tokens, "warmup")
    results = {}
    for concurrency, requests in ((1, 8), (8, 32), (32, 64)):
        wall, latencies, errors = await level(client, findings, concurrency, requests, args.max_tokens,
                                              f"c{concurrency}")
        results[concurrency] = (len(latencies) / wall, latencies, errors)
        print(f"concurrency {concurrency:>2}: {requests:>2} requests in {wall:6.2f} s = {len(latencies) / wall:5.2f} "
              f"req/s, p50 {pct(latencies, 0.5) * 1000:7.0f} ms, p95 {pct(latencies, 0.95) * 1000:7.0f} ms, "
              f"errors {len(errors)}" + (f" ({errors[0]})" if errors else ""))
    hit_latencies, hits = await cache_hits(client, findings[0], args.max_tokens)
    cache_p50 = statistics.median(hit_latencies) * 1000
    print(f"cache: {hits}/{len(hit_latencies)} hits, p50 {cache_p50:.1f} ms, "
          f"p95 {pct(hit_latencies, 0.95) * 1000:.1f} ms (target p50 <= {CACHE_TARGET_MS:.0f} ms)")
    await client.close()
    speedup = results[8][0] / results[1][0]
    errors = sum(len(r[2]) for r in results.values())
    all_hits = hits == len(hit_latencies)
    ok = speedup >= THROUGHPUT_TARGET and errors == 0 and cache_p50 <= CACHE_TARGET_MS and all_hits
    print(f"serve_bench: throughput at concurrency 8 = {speedup:.2f}x concurrency 1 "
          f"(target >= {THROUGHPUT_TARGET:.0f}x), 32 = {results[32][0] / results[1][0]:.2f}x, errors {errors}, "
          f"cache-hit p50 {cache_p50:.1f} ms"
          f"{'' if ok else ' -- MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
