"""Where the benches find real data: `../shared/data/medquad/` beside the checkout, or MEDSCRIBE_MEDQUAD.

    from benchdata import medquad_path
    path = medquad_path(args.data)   # the argument, else $MEDSCRIBE_MEDQUAD, else ../shared/... ; None if absent

Never an absolute path in code: a fresh clone on another machine has the data elsewhere (or not at all, and
then a bench says so and skips).
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
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


def medquad_pairs(path: Path) -> Iterator[dict]:
    """MedQuAD rows with a line-unique `uid`: its own ids repeat across collections (12,133 distinct for
    16,407 pairs), so the line number is added."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            row = json.loads(line)
            yield {**row, "uid": f"{row['id']}@{lineno}"}
