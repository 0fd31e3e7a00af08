"""How fast `medscribe --help` starts, compared with `trl --help` measured in the same run.

    python bench/cli_startup.py [--runs 7]

Target: median(medscribe --help) <= 0.8 x median(trl --help). A bare Typer app with rich help already costs
~0.75x; anything above that is medscribe importing what it does not need yet. Also reports which heavy modules
`import medscribe.cli` pulls in (must be none). Exits 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ["torch", "transformers", "chromadb", "sentence_transformers", "datasets", "unsloth", "trl", "peft",
         "bert_score", "pydantic_settings", "polars"]
TARGET = 0.8


def _script(name: str) -> str:
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        sys.exit(f"{name}: not installed (run `make install`)")
    return found


def median_seconds(cmd: list[str], runs: int) -> float:
    subprocess.run(cmd, capture_output=True, check=True)  # warm the page cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    probe = f"import sys, medscribe.cli; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    heavy = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    medscribe = median_seconds([_script("medscribe"), "--help"], args.runs)
    trl = median_seconds([_script("trl"), "--help"], args.runs)
    ratio = medscribe / trl
    print(f"medscribe --help: median {medscribe * 1000:.0f} ms over {args.runs} runs")
    print(f"trl --help:       median {trl * 1000:.0f} ms over {args.runs} runs")
    print(f"heavy modules imported by `import medscribe.cli`: {heavy or 'none'}")
    ok = ratio <= TARGET and not heavy
    print(f"startup ratio medscribe/trl: {ratio:.3f} (target <= {TARGET}) {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
