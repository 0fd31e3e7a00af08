"""Where the benches find real data: `../shared/data/medquad/` beside the checkout, or MEDSCRIBE_MEDQUAD.

    from benchdata import medquad_path
    path = medquad_path(args.data)   # the argument, else $MEDSCRIBE_MEDQUAD, else ../shared/... ; None if absent

Never an absolute path in code: a fresh clone on another machine has the data elsewhere (or not at all, and
then a bench says so and skips).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = "MEDSCRIBE_MEDQUAD"
BESIDE = ROOT.parent / "shared" / "data" / "medquad" / "medquad_qa.jsonl.gz"


def medquad_path(given: str | None = None) -> Path | None:
    for candidate in (given, os.environ.get(ENV), BESIDE):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
        if candidate and (given or os.environ.get(ENV)) == candidate:
            raise SystemExit(f"{candidate}: no such file (MedQuAD jsonl.gz; from the argument or ${ENV})")
    return None


def skip_message(what: str) -> str:
    return (f"SKIP: {what} needs the MedQuAD file: pass its path, set ${ENV}, or put it at {BESIDE} "
            "(16,407 QA pairs, CC BY 4.0)")
