"""Shared data and helpers for the index tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import json
from pathlib import Path

CASES = [
    {
        "id": "q-anemia",
        "text": "What are the symptoms of anemia?",
        "answer": "Fatigue, pallor and shortness of breath.",
        "task": "qa",
        "specialty": "hematology",
        "source": "medquad",
        "split": "train",
    },
    {
        "id": "q-diabetes",
        "text": "How is type 2 diabetes treated?",
        "answer": "Diet, exercise and metformin.",
        "task": "qa",
        "specialty": "endocrinology",
        "source": "medquad",
        "split": "train",
    },
    {
        "id": "q-asthma",
        "text": "What causes asthma attacks?",
        "answer": "Allergens, infections, cold air.",
        "task": "qa",
        "specialty": "pulmonology",
        "source": "medquad",
        "split": "train",
    },
    {
        "id": "q-migraine",
        "text": "How can migraine headaches be prevented?",
        "answer": "Avoid triggers; preventive drugs.",
        "task": "qa",
        "specialty": "neurology",
        "source": "medquad",
        "split": "train",
    },
    {
        "id": "r-liver",
        "text": "Печень не увеличена, в сегменте 7 гиподенсное образование 12 мм с чёткими контурами.",
        "answer": "Киста печени.",
        "task": "report",
        "organ": "печень",
        "modality": "КТ",
        "split": "train",
    },
    {
        "id": "r-brain",
        "text": "В белом веществе лобной доли единичный очаг 5 мм, гиперинтенсивный на T2.",
        "answer": "Очаговые изменения белого вещества.",
        "task": "report",
        "organ": "головной мозг",
        "modality": "МРТ",
        "split": "train",
    },
    {
        "id": "r-lung",
        "text": "В нижней доле правого лёгкого участок консолидации с воздушной бронхограммой.",
        "answer": "Пневмония нижней доли справа.",
        "task": "report",
        "organ": "лёгкие",
        "modality": "КТ",
        "split": "train",
    },
]


def write_corpus(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_minimal_pdf(path: Path, lines: list[str]) -> Path:
    """A valid one-page PDF (Helvetica, ASCII text) written by hand: no PDF writer dependency."""
    content = (
        "BT /F1 12 Tf 72 720 Td 14 TL "
        + " ".join(
            "(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") Tj T*" for line in lines
        )
        + " ET"
    )
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(out)
    return path


def write_docx(path: Path, paragraphs: list[str], table: list[list[str]] | None = None) -> Path:
    import docx

    document = docx.Document()
    for p in paragraphs:
        document.add_paragraph(p)
    if table:
        t = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                t.cell(r, c).text = value
    document.save(str(path))
    return path


def build_tiny_cross_encoder(out_dir: Path, minilm: str, seed: int = 0) -> Path:
    """A random BERT cross-encoder (MiniLM's config and tokenizer, 1-label head): exercises the rerank path."""
    import shutil

    import torch
    from transformers import AutoConfig, BertForSequenceClassification

    config = AutoConfig.from_pretrained(minilm)
    config.num_labels = 1
    config.num_hidden_layers = 1
    torch.manual_seed(seed)
    BertForSequenceClassification(config).save_pretrained(out_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (Path(minilm) / name).exists():
            shutil.copy(Path(minilm) / name, out_dir / name)
    return out_dir


def dies_on_encode_call(embedder, n: int):
    """Make `embedder.encode` raise KeyboardInterrupt on its n-th call: a build killed mid-way."""
    real_encode = embedder.encode
    calls = {"n": 0}

    def dying_encode(texts, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return real_encode(texts, *args, **kwargs)

    embedder.encode = dying_encode
    return embedder
