"""Batch input for `medscribe ask --input FILE`: CSV or JSONL rows mapped to ask records.

    rows = read_inputs("artifacts/data/test.jsonl", columns={}, task="report")

Fields: id, input, target, organ, modality, specialty, image (and task, when a JSONL row carries one).
`image` is a path, absolute or relative to the input file's folder (the data stage's `images/<hash>.png` in
test.jsonl works as is); each is decoded before any row is asked, and a missing or corrupt one is a UsageError
naming file, row and field. Each is read
from `columns[field]` when mapped (`ask.columns` or `--column field=COLUMN`), else from a column of the same
name. The data stage's test.jsonl works as is, multi-turn samples from chat exports included: a JSONL row with
`task = "dialogue"` keeps its `turns` (user/assistant, ending with the assistant turn the answer is scored
against) and `system`, and is asked with the conversation before that turn, as sft trained it.
CSV: UTF-8 (with or without BOM), falling back to cp1251; the separator (`;`, `,`, tab) is sniffed.
Problems are UsageErrors naming file, row and field, never the
row's content (it may hold PHI).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from medscribe.errors import UsageError

FIELDS = ("id", "input", "target", "organ", "modality", "specialty", "image")


def _read_csv(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    raw = path.read_bytes()
    for encoding in ("utf-8-sig", "cp1251"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - cp1251 decodes almost anything
        raise UsageError(f"{path}: cannot decode as UTF-8 or cp1251")
    first_line = text.split("\n", 1)[0]
    delimiter = max([";", ",", "\t"], key=first_line.count)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    # Row numbers as a spreadsheet shows them: the header is row 1.
    return [(i, dict(row)) for i, row in enumerate(reader, start=2)], list(reader.fieldnames or [])


def _read_jsonl(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[str]]:
    rows: list[tuple[int, dict[str, Any]]] = []
    keys: set[str] = set()
    with open(path, encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise UsageError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            rows.append((lineno, obj))
            keys.update(obj)
    return rows, sorted(keys)


def _dialogue_fields(row: dict[str, Any], raw: dict[str, Any], where: str) -> None:
    """`turns` + `system` of a dialogue row, checked like sft checks them; the target is the last turn."""
    turns = raw.get("turns")
    roles = [t.get("role") for t in turns] if isinstance(turns, list) and all(isinstance(t, dict) for t in turns) \
        else None
    if not roles or len(roles) < 2 or roles[-1] != "assistant" or roles[-2] != "user" or \
            any(r not in ("user", "assistant") for r in roles):
        raise UsageError(f"{where}: field 'turns': a dialogue row needs user/assistant turns ending with a user "
                         "turn and the assistant turn to score")
    if any(not str(t.get("content") or "").strip() for t in turns):
        raise UsageError(f"{where}: field 'turns': a turn has no content")
    row["turns"] = [{"role": t["role"], "content": str(t["content"])} for t in turns]
    row["system"] = raw.get("system") if isinstance(raw.get("system"), str) else None
    row["target"] = row["target"] or row["turns"][-1]["content"].strip()


def read_inputs(path: str | Path, columns: dict[str, str], task: str) -> tuple[list[dict[str, Any]], bool]:
    """Rows as dicts with FIELDS (+ task); returns (rows, ids_from_row_numbers)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: input file not found")
    unknown = sorted(set(columns) - set(FIELDS))
    if unknown:
        raise UsageError(f"ask.columns: unknown field {unknown[0]!r} (known: {', '.join(FIELDS)})")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        rows, available = _read_jsonl(path)
        where = "line"
    elif suffix in (".csv", ".tsv", ".txt"):
        rows, available = _read_csv(path)
        where = "row"
    else:
        raise UsageError(f"{path}: unsupported input format {suffix or '(none)'} (use .csv or .jsonl)")
    if not rows:
        raise UsageError(f"{path}: no rows")
    source = {field: columns.get(field, field) for field in FIELDS}
    input_col = source["input"]
    if input_col not in available:
        raise UsageError(f"{path}: missing input column {input_col!r} (map it with --column input=NAME)")
    for field, column in columns.items():
        if column not in available:
            raise UsageError(f"{path}: missing column {column!r} mapped to {field}")
    ids_from_rows = source["id"] not in available
    out: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for number, raw in rows:
        row: dict[str, Any] = {}
        for field, column in source.items():
            value = raw.get(column)
            if value is not None and not isinstance(value, str):
                value = json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list)) else str(value)
            row[field] = value.strip() if isinstance(value, str) and value.strip() else None
        row["task"] = raw.get("task") if raw.get("task") in ("report", "qa", "dialogue") else task
        if row["task"] == "dialogue":
            _dialogue_fields(row, raw, f"{path}:{where} {number}")
        if ids_from_rows:
            row["id"] = f"row-{number}"
        if not row["id"]:
            raise UsageError(f"{path}:{where} {number}: field 'id' ({source['id']}) is empty")
        if not row["input"]:
            raise UsageError(f"{path}:{where} {number}: field 'input' ({input_col}) is empty")
        if row["image"]:
            from medscribe.ask.vision import check_image

            row["image"] = check_image(row["image"], path.parent, f"{path}:{where} {number}")
        if row["id"] in seen:
            # The id value itself is not printed: an export's ID column may be a patient number.
            raise UsageError(f"{path}:{where} {number}: duplicate id (first at {where} {seen[row['id']]})")
        seen[row["id"]] = number
        out.append(row)
    return out, ids_from_rows
