"""Speed of `medscribe serve`: the real `openai` client (AsyncOpenAI) at concurrency 1, 8 and 32.

    flock /tmp/medscribe-heavy.lock .venv/bin/python bench/serve_bench.py [--max-tokens 32] [--adapter DIR]

Setup (in a temp folder, ~10 s): `medscribe data` + `medscribe index` on the bundled sample with
examples/demo.toml, then `medscribe serve` in its own process with the demo model (SmolLM2-135M-Instruct, plus
--adapter when given) on this CPU. Two workloads, the same N findings of the test split at every level, greedy,
each request unique (its own `user` field) so nothing comes from the cache:
- plain chat with the base model: the finding as the whole prompt (~60 tokens), up to --plain-tokens (48) new
  tokens: decode-bound, where batching pays on a CPU;
- medscribe-rag: the server retrieves, prompts (~235 tokens with the retrieved case) and parses; up to
  --max-tokens (16) new tokens (demo conclusions are ~17); serve.schema_retries = 0 so each request is one
  generation. Prefill-bound: a batch's prefill costs what its rows cost alone (compute-bound), so batching
  gains less here.
Levels: --requests N at concurrency 1, 4N at 8, 8N at 32. Also the cache: the same request 30 times after a
first answer (p50 latency of the hits), and the mean generation batch size from /metrics.

Targets: plain-chat throughput at concurrency 8 >= 3x concurrency 1 (batching), 0 errors, cache-hit p50 <= 5 ms.
Prints the figures, the key figure on the last line; exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
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


def request_for(workload: str, base_model: str, row: dict, max_tokens: int, user: str) -> dict:
    """One chat completion: medscribe-rag (the finding only; the server retrieves and prompts) or plain chat
    with the base model (the finding as the whole prompt: short prompt, the answer runs to max_tokens)."""
    kwargs = {"messages": [{"role": "user", "content": row["input"]}], "temperature": 0, "max_tokens": max_tokens,
              "user": user}
    if workload == "plain":
        return {**kwargs, "model": base_model}
    return {**kwargs, "model": "medscribe-rag",
            "extra_body": {"medscribe": {"organ": row.get("organ"), "modality": row.get("modality")}}}


async def level(client, findings: list[dict], concurrency: int, requests: int, make) -> tuple:
    """`requests` answers with `concurrency` in flight; returns (wall seconds, latencies, errors)."""
    latencies: list[float] = []
    errors: list[str] = []
    # Every request is unique (its own `user`), so none is answered from the cache.
    queue = [(i, findings[i % len(findings)]) for i in range(requests)]

    async def worker() -> None:
        while queue:
            i, row = queue.pop()
            started = time.perf_counter()
            try:
                await client.chat.completions.create(**make(row, i))
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
    parser.add_argument("--max-tokens", type=int, default=16, help="medscribe-rag answers (demo conclusions: ~17)")
    parser.add_argument("--plain-tokens", type=int, default=48, help="plain chat answers")
    parser.add_argument("--requests", type=int, default=4, help="requests at concurrency 1 (x4 at 8, x8 at 32)")
    parser.add_argument("--adapter", default=None, help="serve this adapter too (medscribe-rag then uses it)")
    parser.add_argument("--max-batch", type=int, default=16)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still stops the server (finally below)
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
        findings = [json.loads(line) for line in Path(f"{tmp}/data/test.jsonl").read_text("utf-8").splitlines()]
        findings = findings[: args.requests]  # the same findings at every level: the same work per request
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
    models = (await client.models.list()).data
    base = next(m.id for m in models if (m.model_extra or {}).get("medscribe_kind") == "base")
    tokens = {"plain": args.plain_tokens, "rag": args.max_tokens}
    ratios: dict[str, dict[int, float]] = {}
    errors = 0
    for workload in ("plain", "rag"):
        def make(row, i, tag="", workload=workload):
            return request_for(workload, base, row, tokens[workload], f"{workload}-{tag}-{i}")

        await level(client, findings, 1, 1, lambda row, i: make(row, i, "warmup"))
        rates = {}
        for concurrency, requests in ((1, args.requests), (8, 4 * args.requests), (32, 8 * args.requests)):
            wall, latencies, errs = await level(client, findings, concurrency, requests,
                                                lambda row, i, c=concurrency: make(row, i, f"c{c}"))
            rates[concurrency] = len(latencies) / wall
            errors += len(errs)
            print(f"{workload:>5} concurrency {concurrency:>2}: {requests:>2} requests in {wall:6.2f} s = "
                  f"{rates[concurrency]:5.2f} req/s, p50 {pct(latencies, 0.5) * 1000:6.0f} ms, "
                  f"p95 {pct(latencies, 0.95) * 1000:6.0f} ms, errors {len(errs)}" + (f" ({errs[0]})" if errs else ""))
        ratios[workload] = {c: rates[c] / rates[1] for c in (8, 32)}
    metrics = urllib.request.urlopen(str(client.base_url).replace("/v1/", "/metrics")).read().decode()
    values = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines() if line.startswith("medscribe_")}
    mean_batch = values["medscribe_batch_size_sum"] / max(1.0, values["medscribe_batch_size_count"])
    print(f"generation batches: {values['medscribe_batch_size_count']:.0f}, mean size {mean_batch:.2f} "
          f"(serve.max_batch {args.max_batch})")
    hit_latencies, hits = await cache_hits(client, findings[0], args.max_tokens)
    cache_p50 = statistics.median(hit_latencies) * 1000
    print(f"cache: {hits}/{len(hit_latencies)} hits, p50 {cache_p50:.1f} ms, "
          f"p95 {pct(hit_latencies, 0.95) * 1000:.1f} ms (target p50 <= {CACHE_TARGET_MS:.0f} ms)")
    await client.close()
    speedup = ratios["plain"][8]
    ok = speedup >= THROUGHPUT_TARGET and errors == 0 and cache_p50 <= CACHE_TARGET_MS and hits == len(hit_latencies)
    print(f"serve_bench: throughput at concurrency 8 vs 1: plain chat {speedup:.2f}x (target >= "
          f"{THROUGHPUT_TARGET:.0f}x; 32: {ratios['plain'][32]:.2f}x), medscribe-rag {ratios['rag'][8]:.2f}x "
          f"(32: {ratios['rag'][32]:.2f}x; prefill-bound), errors {errors}, cache-hit p50 {cache_p50:.1f} ms"
          f"{'' if ok else ' -- MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
