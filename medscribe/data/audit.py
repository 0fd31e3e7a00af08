"""`medscribe data --phi-audit FILE...`: find what looks like PHI in any CSV/XLSX/JSON/JSONL/TXT file.

    from medscribe.data.audit import run_phi_audit
    result = run_phi_audit(["artifacts/data/train.jsonl"], Path("phi_audit.json"), settings.data)
    result.findings   # [{file, row, column, type, start, end}], never the matched text

Detection is `medscribe.phi.audit_texts` (owned by the PHI engineer). Rows are file lines (CSV header = 1,
JSONL/TXT line numbers), spreadsheet rows, or entry numbers (JSON). Nested JSON fields are reported by
path, e.g. `messages[2].content`; a JSONL line that is not JSON is scanned as text (column `(invalid json)`).
Values the data stage generates (content-hash record ids in `id`, hex digests) are skipped.
Hidden files inside folders are scanned too (a gate must not skip files). File paths in the report and the
table are PHI-scrubbed like the data stage's file labels (`[NAME]_[DATE].csv`), since raw exports are often
named after the patient. The caller exits 1 when anything is found, so teams can gate sharing on it.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medscribe.data import ingest
from medscribe.errors import RuntimeFailure, UsageError
from medscribe.io import atomic_write_json

# Values the data stage generates itself, which hold no PHI but can look like a number (7+ digit runs in hex):
# record ids derived from content (`r-` + 16 hex of sha256, outputs.assign_ids) in an id field (`id`,
# `ids[1]`, `pairs[0].train_id`), and hex digests (file sha256, config hash, the manifest's `answer_sha256`) of
# 16+ characters with at least one letter, so a long plain number is still scanned.
GENERATED_ID_RE = re.compile(r"[a-z]{1,3}-[0-9a-f]{16}")
DIGEST_RE = re.compile(r"(?=[0-9]*[a-f])[0-9a-f]{16,128}")
ID_FIELD_RE = re.compile(r"(?:^|[._])ids?(?:\[\d+\])*$")


def _generated(column: str, text: str) -> bool:
    if DIGEST_RE.fullmatch(text):
        return True
    return ID_FIELD_RE.search(column) is not None and GENERATED_ID_RE.fullmatch(text) is not None


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
            except json.JSONDecodeError:
                cells.append((lineno, "(invalid json)", line))  # a broken line can hold PHI too: scan its text
                continue
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
    from medscribe.phi import Scrubber

    sources = ingest.discover_files(paths, ingest.AUDIT_SUFFIXES, include_hidden=True)
    labels = Scrubber().scrub_paths([s.path.as_posix() for s in sources])
    findings: list[dict] = []
    total = 0
    for source, label in zip(sources, labels, strict=True):
        cells = _cells(source, data)
        total += len(cells)
        by_column: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for row, column, text in cells:
            if not _generated(column, text):
                by_column[column].append((row, text))
        for column, items in by_column.items():
            for hit in audit_texts([text for _, text in items]):
                findings.append({
                    "file": label, "row": items[hit.row][0], "column": column,
                    "type": hit.type, "start": hit.start, "end": hit.end,
                })
    findings.sort(key=lambda f: (f["file"], f["row"], f["column"], f["start"]))
    by_type = dict(Counter(f["type"] for f in findings))
    report = {
        "files": labels, "cells_scanned": total, "findings_count": len(findings),
        "by_type": by_type, "findings": findings,
    }
    atomic_write_json(report_path, report)
    return AuditResult(labels, total, findings, by_type, report_path)
