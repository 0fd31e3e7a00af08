"""Helpers for the data-stage tests: tiny raw exports in every supported shape and a settings builder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from medscribe.cli import app
from medscribe.settings import load_settings

RU_HEADER = ["ID", "Орган", "Модальность", "Описание", "Заключение"]
RU_ROWS = [
    ["r1", "гм", "МРТ", "В белом веществе лобных долей единичные очаги 5 мм.", "Очаговые изменения белого вещества."],
    ["r2", "печень", "УЗИ", "В VII сегменте гиперэхогенное образование 12 мм.", "Эхопризнаки гемангиомы печени."],
    ["r3", "почки", "УЗИ", "Пациент Иванов Иван Петрович, тел. +7 (912) 345-67-89. Почки обычно расположены.",
     "Эхопризнаков патологии почек не выявлено."],
    ["r4", "легкие", "КТ", "В верхней доле правого легкого солидный очаг 8 мм.",
     "Солидный очаг верхней доли правого легкого."],
    ["r5", "легкие", "КТ", "В нижней доле левого легкого солидный очаг 8 мм.",
     "Солидный очаг нижней доли левого легкого."],
    ["r6", "щж", "УЗИ", "В правой доле узел 9 мм, TI-RADS 3.", "Узел правой доли щитовидной железы, TI-RADS 3."],
]

QA_ROWS = [
    {"id": "q1", "question": "What are the symptoms of anemia?", "answer": "Fatigue, pallor and shortness of breath.",
     "specialty": "hematology"},
    {"id": "q2", "question": "How is hypertension diagnosed?", "answer": "By repeated blood pressure measurements.",
     "specialty": "cardiology"},
    {"id": "q3", "question": "Patient John Smith, DOB 03/14/1962, asks: what causes gout?",
     "answer": "Uric acid crystals deposited in the joints.", "specialty": "rheumatology"},
    {"id": "q4", "question": "What is a statin?", "answer": "A drug that lowers LDL cholesterol.",
     "specialty": "cardiology"},
]

runner = CliRunner()


def write_csv(path: Path, header: list[str], rows: list[list[str]], sep: str = ";", encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [sep.join(header)] + [sep.join(_quote(v, sep) for v in row) for row in rows]
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


def _quote(value: str, sep: str) -> str:
    return f'"{value}"' if sep in value or '"' in value else value


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_xlsx(path: Path, header: list[str], rows: list[list[str]], sheet: str = "Sheet1") -> Path:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = sheet
    ws.append(header)
    for row in rows:
        ws.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    wb.save(path)
    return path


def settings_for(tmp_path: Path, *, scrub: bool = True, phi: dict | None = None, **data: Any):
    """Settings with paths.data under tmp_path and the given [data] values (flags precedence)."""
    flags = {"paths": {"data": str(tmp_path / "out")}, "data": {**data, "phi": {"enabled": scrub, **(phi or {})}}}
    return load_settings(None, flags=flags)


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def invoke(*args: str):
    return runner.invoke(app, list(args))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def all_output_text(out_dir: Path) -> str:
    """Every byte the stage wrote (jsonl, manifest, HF arrow files), as text, for PHI leak checks."""
    chunks = []
    for path in sorted(out_dir.rglob("*")):
        if path.is_file():
            chunks.append(path.read_bytes().decode("utf-8", errors="ignore"))
    return "\n".join(chunks)
