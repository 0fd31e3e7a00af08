"""What the demo experiments (bench/dpo_demo.py, bench/recipes_demo.py) share: the real CLI, one step at a time,
and where their runs go.

    from demo_runs import Runs, run
    runs = Runs.of(settings, out)             # paths.* of the config, or <out>/sft|ask|eval via MEDSCRIBE_PATHS__*
    run(["-c", config, "sft", "--run", "x"], runs.env, log)   # exit with the failed command on a non-zero exit
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MEDSCRIBE = str(Path(sys.executable).with_name("medscribe"))


def run(args: list[str], env: dict, log: list) -> None:
    started = time.monotonic()
    print("+ medscribe " + " ".join(args), flush=True)
    done = subprocess.run([MEDSCRIBE, *args], env=env, cwd=ROOT)
    log.append({"command": " ".join(args), "seconds": round(time.monotonic() - started, 1), "rc": done.returncode})
    if done.returncode != 0:
        sys.exit(f"step failed (exit {done.returncode}): medscribe {' '.join(args)}")


@dataclass
class Runs:
    env: dict
    data: Path
    sft: Path
    ask: Path
    eval: Path
    out: Path  # where the experiment's summary JSON goes

    @classmethod
    def of(cls, settings, out: Path | None) -> Runs:
        """`out` puts the sft/ask/eval runs under another folder (a smoke run leaves the demo artifacts alone)."""
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        p = settings.paths
        sft, ask, evals = Path(p.sft), Path(p.ask), Path(p.eval)
        if out:
            sft, ask, evals = out / "sft", out / "ask", out / "eval"
            env.update(MEDSCRIBE_PATHS__SFT=str(sft), MEDSCRIBE_PATHS__ASK=str(ask), MEDSCRIBE_PATHS__EVAL=str(evals))
        return cls(env, Path(p.data), sft, ask, evals, out or Path(p.artifacts))
