"""Helpers and tiny data shared by the ask tests (a plain module: `conftest` names clash across folders)."""

from __future__ import annotations

import json
from pathlib import Path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def read_results(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text(encoding="utf-8").splitlines()]


REPORT_ROWS = [
    {"id": "r1", "input": "Очаг 5 мм в белом веществе лобной доли", "target": "Очаговые изменения",
     "organ": "головной мозг", "modality": "МРТ"},
    {"id": "r2", "input": "Гиподенсное образование 12 мм в S7", "target": "Киста печени", "organ": "печень",
     "modality": "КТ"},
    {"id": "r3", "input": "Без патологических изменений", "target": "Норма", "organ": "почки", "modality": "УЗИ"},
]
QA_ROWS = [
    {"id": "q1", "input": "What are the symptoms of anemia?", "target": "Fatigue and pallor.",
     "specialty": "hematology"},
    {"id": "q2", "input": "How is hypertension diagnosed?", "target": "By repeated blood pressure readings.",
     "specialty": "cardiology"},
]
