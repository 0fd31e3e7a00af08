"""Rebuild medquad_sample.jsonl from the full MedQuAD export (CC BY 4.0). Run from the repo root:

    python examples/sample/qa/make_sample.py /path/to/medquad_qa.jsonl.gz

Takes 30 short pairs (40-400 characters of answer) per source with a fixed seed and maps each source to a
specialty, as described in README.md next to this file.
"""

import gzip
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

SPECIALTY = {
    "CancerGov": "oncology", "GARD": "rare diseases", "GHR": "genetics", "MPlusHealthTopics": "general medicine",
    "NIDDK": "gastroenterology", "NINDS": "neurology", "NIHSeniorHealth": "geriatrics", "NHLBI": "cardiology",
    "CDC": "infectious disease",
}


def main(src: str) -> None:
    by_source = defaultdict(list)
    with gzip.open(src, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if 40 <= len(row["answer"]) <= 400:
                by_source[row["source"]].append(row)
    rng = random.Random(7)
    out = []
    for source in sorted(by_source):
        rows = sorted(by_source[source], key=lambda r: r["id"])
        rng.shuffle(rows)
        for row in rows[:30]:
            out.append({
                "id": f"mq-{source}-{row['id']}", "question": row["question"], "answer": row["answer"],
                "specialty": SPECIALTY[source], "source": source, "qtype": row["qtype"], "focus": row["focus"],
                "url": row["url"],
            })
    target = Path(__file__).with_name("medquad_sample.jsonl")
    target.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), encoding="utf-8")
    print(f"{len(out)} pairs -> {target}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/medquad/medquad_qa.jsonl.gz")
