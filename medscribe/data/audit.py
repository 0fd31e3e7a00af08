"""`medscribe data --phi-audit FILE...`: find what looks like PHI in any CSV/XLSX/JSON/JSONL/TXT file.

    from medscribe.data.audit import run_phi_audit
    result = run_phi_audit(["artifacts/data/train.jsonl"], Path("phi_audit.json"), settings.data)
    result.findings   # [{file, row, column, type, start, end}], never the matched text

Detection is `medscribe.phi.audit_texts` (owned by the PHI engineer). Rows are file lines (CSV header = 1,
JSONL/TXT line numbers), spreadsheet rows, or entry numbers (JSON). Nested JSON fields are reported by
path, e.g. `messages[2].content`. The caller exits 1 when anything is found, so teams can gate sharing on it.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medscribe.data import ingest
from medscribe.errors import RuntimeFailure, UsageError
from medscribe.io import atomic_write_json


@dataclass
class AuditResult:
    files: list[str]
    cells: int
    findings: list[dict]
    by_type: dict[str, int]
    report_path: Path


def _flatten(value: Any, prefix: str, out: list[tuple[str, str]]) -> None:
    if isinstance(value, str):
        out.append((prefix or "value", value))
    elif isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _flatten(item, f"{prefix}[{i}]", out)


def _cells(source: ingest.SourceFile, data: Any) -> list[tuple[int, str, str]]:
    """(row, column, text) for every text cell of the file."""
    path = source.path
    suffix = path.suffix.lower()
    cells: list[tuple[int, str, str]] = []
    if suffix in (".jsonl", ".ndjson", ".txt"):
        raw = path.read_bytes()
        text, _ = ingest.decode_bytes(raw, path, data.encoding)
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            if suffix == ".txt":
                cells.append((lineno, "text", line))
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
            flat: list[tuple[str, str]] = []
            _flatten(obj, "", flat)
            cells.extend((lineno, column, value) for column, value in flat)
        return cells
    if suffix == ".json":
        text, _ = ingest.decode_bytes(path.read_bytes(), path, data.encoding)
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
        items = obj if isinstance(obj, list) else [obj]
        entries = list(obj.items()) if isinstance(obj, dict) else list(enumerate(items))
        for i, (key, value) in enumerate(entries, start=1):
            if isinstance(key, str):
                cells.append((i, "key", key))
            flat = []
            _flatten(value, "", flat)
            cells.extend((i, column, v) for column, v in flat)
        return cells
    frame, _ = ingest.read_source(source, data)
    for column in frame.columns:
        if column.startswith("_"):
            continue
        for row, value in zip(frame.get_column("_row").to_list(), frame.get_column(column).to_list(), strict=True):
            if value:
                cells.append((row, column, value))
    return cells


def run_phi_audit(paths: list[str], report_path: Path, data: Any) -> AuditResult:
    try:
        from medscribe.phi import audit_texts
    except ImportError as exc:
        raise RuntimeFailure(f"--phi-audit needs medscribe.phi, which cannot be imported ({exc.name})") from None
    sources = ingest.discover_files(paths, ingest.AUDIT_SUFFIXES)
    findings: list[dict] = []
    total = 0
    for source in sources:
        cells = _cells(source, data)
        total += len(cells)
        by_column: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for row, column, text in cells:
            by_column[column].append((row, text))
        for column, items in by_column.items():
            for hit in audit_texts([text for _, text in items]):
                findings.append({
                    "file": str(source.path), "row": items[hit.row][0], "column": column,
                    "type": hit.type, "start": hit.start, "end": hit.end,
                })
    findings.sort(key=lambda f: (f["file"], f["row"], f["column"], f["start"]))
    by_type = dict(Counter(f["type"] for f in findings))
    report = {
        "files": [str(s.path) for s in sources], "cells_scanned": total, "findings_count": len(findings),
        "by_type": by_type, "findings": findings,
    }
    atomic_write_json(report_path, report)
    return AuditResult([str(s.path) for s in sources], total, findings, by_type, report_path)
