"""Write one MedQuAD source (a specialty) as a JSONL export that `medscribe data` reads: what examples/cpu-qa.toml
trains on. Run from the repo root:

    python examples/medquad_export.py                       # GHR (genetics, 5,430 pairs) -> artifacts/cpu-qa/raw/
    python examples/medquad_export.py --source NINDS /path/to/medquad_qa.jsonl.gz

The MedQuAD file is the argument, else $MEDSCRIBE_MEDQUAD, else ../shared/data/medquad/medquad_qa.jsonl.gz.
MedQuAD (CC BY 4.0, github.com/abachaa/MedQuAD; Ben Abacha & Demner-Fushman, BMC Bioinformatics 20, 511, 2019)
reuses ids across its collections, so the id written is `<MedQuAD id>@<line>`; the source maps to a specialty
as in examples/sample/qa/README.md. Every pair of the source is written, long ones too: what does not fit
`sft.max_seq_length` is dropped and counted by `medscribe sft`, not here.
"""

import argparse
import gzip
import json
import os
from pathlib import Path

SPECIALTY = {
    "CancerGov": "oncology", "GARD": "rare diseases", "GHR": "genetics", "MPlusHealthTopics": "general medicine",
    "NIDDK": "gastroenterology", "NINDS": "neurology", "NIHSeniorHealth": "geriatrics", "NHLBI": "cardiology",
    "CDC": "infectious disease",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("medquad", nargs="?", type=Path,
                        default=Path(os.environ.get("MEDSCRIBE_MEDQUAD", "../shared/data/medquad/medquad_qa.jsonl.gz")))
    parser.add_argument("--source", default="GHR", choices=sorted(SPECIALTY))
    parser.add_argument("--out", type=Path, help="default: artifacts/cpu-qa/raw/medquad-<source>.jsonl")
    args = parser.parse_args()
    src = args.medquad / "medquad_qa.jsonl.gz" if args.medquad.is_dir() else args.medquad
    if not src.is_file():
        raise SystemExit(f"medquad_export: {src} not found (pass the file or set MEDSCRIBE_MEDQUAD)")
    out = args.out or Path("artifacts/cpu-qa/raw") / f"medquad-{args.source.lower()}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    tmp = out.with_suffix(".tmp")
    with gzip.open(src, "rt", encoding="utf-8") as fh, open(tmp, "w", encoding="utf-8") as dst:
        for lineno, line in enumerate(fh, start=1):
            row = json.loads(line)
            if row["source"] != args.source:
                continue
            dst.write(json.dumps({"id": f"{row['id']}@{lineno}", "question": row["question"], "answer": row["answer"],
                                  "specialty": SPECIALTY[row["source"]], "qtype": row["qtype"],
                                  "focus": row["focus"]}, ensure_ascii=False) + "\n")
            count += 1
    tmp.replace(out)
    print(f"{count} {args.source} pairs -> {out}")


if __name__ == "__main__":
    main()
