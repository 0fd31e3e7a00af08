"""Read raw exports (CSV, XLSX, JSON, JSONL; PDF and scanned images, one row per file) into polars frames.

    from medscribe.data.ingest import discover_files, read_source
    files = discover_files(["exports/", "more/*.csv"])
    frame, info = read_source(files[0], settings.data)

Encoding: UTF-8 (BOM stripped) first, then cp1251 only when the whole file reads as plausible text in it (no
control bytes, Cyrillic letters in ordinary word shapes: `plausible_cp1251`); an explicit `data.encoding` is
used as is. The CSV separator is sniffed among `,` `;` and tab unless `data.csv_separator` is set. Every
problem with a file (missing, empty, undecodable, unknown sheet, a JSONL file most of whose lines are broken)
is a `UsageError` naming the file and the line; problems with single rows (a ragged CSV row, one broken JSONL
line) are marked here and rejected by the cleaning step.

Hidden files (a name or a folder starting with "." inside an input folder) are skipped unless
`data.include_hidden`; how many were skipped is said, also when a folder then has no data files at all.

`row` (provenance) is the line of the file for CSV/JSONL (header = line 1), the spreadsheet row for XLSX and
the 1-based entry number for JSON files.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from medscribe.data.encoding import CP1251_NOTE, decode_bytes, plausible_cp1251
from medscribe.documents import OCR_SUFFIXES
from medscribe.errors import UsageError

__all__ = ["CP1251_NOTE", "FileInfo", "SourceFile", "decode_bytes", "discover_files", "plausible_cp1251",
           "read_source"]

TABLE_SUFFIXES = {".csv", ".tsv", ".xlsx", ".xlsm", ".xls", ".json", ".jsonl", ".ndjson"}
# PDF and scanned images: one row per file, text layer first, OCR otherwise (data/scans.py, documents.py)
SUFFIXES = TABLE_SUFFIXES | OCR_SUFFIXES
AUDIT_SUFFIXES = TABLE_SUFFIXES | {".txt"}  # --phi-audit also scans plain text, one row per line
SPECIALTY_FILE_RE = re.compile(r"^dataset_with_answers_(?P<specialty>.+)\.json$", re.IGNORECASE)
SEPARATORS = [",", ";", "\t"]


@dataclass
class SourceFile:
    """One input file and the input root it was found under (for the origin folder and stable ids).

    `label` / `folder_label`: what outputs record instead of `relative` / `folder` (the data stage sets them to
    the PHI-scrubbed path, see `medscribe.phi.paths`); None = the path as is."""

    path: Path
    root: Path
    label: str | None = None
    folder_label: str | None = None

    @property
    def relative(self) -> str:
        try:
            rel = self.path.relative_to(self.root)
        except ValueError:
            rel = Path(self.path.name)
        return rel.as_posix() if str(rel) != "." else self.path.name

    @property
    def folder(self) -> str:
        """The folder the file sits in (used for modality-from-folder)."""
        return self.path.parent.name


@dataclass
class FileInfo:
    """What was found out about one file: goes into the manifest."""

    file: str
    format: str
    rows: int
    encoding: str | None = None
    separator: str | None = None
    sheet: str | None = None
    notes: list[str] = field(default_factory=list)
    ocr: dict | None = None  # PDF/image inputs: OCR used, mean confidence, rejected pages (documents.py)


HIDDEN_HINT = "set data.include_hidden = true (or MEDSCRIBE_DATA__INCLUDE_HIDDEN=true), or name the file with --input"


def _is_hidden(path: Path, root: Path) -> bool:
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        parts = (path.name,)
    return any(part.startswith(".") for part in parts)


def _skipped(hidden: int) -> str:
    return f"{hidden} hidden file{'s' if hidden != 1 else ''} skipped (name or folder starting with '.')"


def discover_files(
    inputs: list[str], suffixes: set[str] = SUFFIXES, include_hidden: bool = False,
    notes: list[tuple[str, str]] | None = None,
) -> list[SourceFile]:
    """Expand files, globs and folders (recursively) into a sorted, de-duplicated list of data files.

    A file named explicitly is read whatever its suffix (as CSV unless it looks like XLSX/JSON/JSONL). Inside
    a folder or a glob, hidden data files (a name or folder starting with ".") are skipped unless
    `include_hidden`; `(input, "N hidden files skipped ...")` is appended to `notes` (and the count is part of
    the error when nothing else is left). The input is kept apart so that the caller can scrub it (a folder
    may be named after the patient) before it goes into a manifest."""
    if not inputs:
        raise UsageError("data.inputs: no input given (use --input PATH or data.inputs in the config)")
    found: dict[Path, SourceFile] = {}
    for item in inputs:
        path = Path(item)
        if any(ch in item for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True, include_hidden=True))
            candidates = [m for m in matches if m.is_file() and m.suffix.lower() in suffixes]
            root = _glob_root(item)
            # a pattern that names a dot itself (`exports/.old/*.csv`, `.r*.csv`) asks for hidden files
            wants_hidden = include_hidden or any(part.startswith(".") and part not in (".", "..")
                                                 for part in Path(item).relative_to(root).parts)
            files = [m for m in candidates if wants_hidden or not _is_hidden(m, root)]
            hidden = len(candidates) - len(files)
            if not files:
                extra = f"; {_skipped(hidden)}: {HIDDEN_HINT}" if hidden else ""
                raise UsageError(f"{item}: no data files match this pattern{extra}")
            if hidden and notes is not None:
                notes.append((item, f"{_skipped(hidden)}; to read them {HIDDEN_HINT}"))
            for f in files:
                found.setdefault(f.resolve(), SourceFile(f, root))
        elif path.is_dir():
            candidates = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
            files = [p for p in candidates if include_hidden or not _is_hidden(p, path)]
            hidden = len(candidates) - len(files)
            if not files:
                extra = f"; {_skipped(hidden)}: {HIDDEN_HINT}" if hidden else ""
                raise UsageError(f"{path}: folder has no data files ({', '.join(sorted(suffixes))}){extra}")
            if hidden and notes is not None:
                notes.append((str(path), f"{_skipped(hidden)}; to read them {HIDDEN_HINT}"))
            for f in files:
                found.setdefault(f.resolve(), SourceFile(f, path))
        elif path.is_file():
            found.setdefault(path.resolve(), SourceFile(path, path.parent))
        else:
            raise UsageError(f"{path}: file not found")
    return sorted(found.values(), key=lambda s: str(s.path))


def _glob_root(pattern: str) -> Path:
    """The literal folder part of a glob, so `exports/**/*.csv` keeps `mri/a.csv` as relative path."""
    parts = []
    for part in Path(pattern).parts:
        if any(ch in part for ch in "*?["):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def sniff_separator(text: str, configured: str | None) -> str:
    if configured:
        return "\t" if configured in ("\\t", "tab") else configured
    sample = "\n".join(text.splitlines()[:20])
    try:
        return csv.Sniffer().sniff(sample, delimiters="".join(SEPARATORS)).delimiter
    except csv.Error:
        header = sample.split("\n", 1)[0]
        return max(SEPARATORS, key=header.count)


def read_source(source: SourceFile, data_settings: Any) -> tuple[pl.DataFrame, FileInfo]:
    """One file as a frame of string columns plus `_row`, `_file`, `_folder` provenance columns."""
    path = source.path
    suffix = path.suffix.lower()
    if suffix in OCR_SUFFIXES:
        from medscribe.data.scans import read_document_rows

        frame, found = read_document_rows(path, data_settings)
        info = FileInfo(path.name, found["format"], frame.height, ocr=found["ocr"])
    elif suffix in (".xlsx", ".xlsm", ".xls"):
        frame, info = _read_excel(path, data_settings.sheet)
    elif suffix == ".json":
        frame, info = _read_json(path, data_settings)
    elif suffix in (".jsonl", ".ndjson"):
        frame, info = _read_jsonl(path, data_settings.encoding)
    else:
        frame, info = _read_csv(path, data_settings)
    if frame.height == 0:
        raise UsageError(f"{path}: no data rows")
    info.file = source.label or source.relative
    if info.encoding == "cp1251" and not data_settings.encoding and CP1251_NOTE not in info.notes:
        info.notes.append(CP1251_NOTE)
    frame = frame.with_columns(
        pl.lit(source.label or source.relative).alias("_file"),
        pl.lit(source.folder_label if source.folder_label is not None else source.folder).alias("_folder"),
    )
    return frame, info


def _read_csv(path: Path, data_settings: Any) -> tuple[pl.DataFrame, FileInfo]:
    raw = path.read_bytes()
    if not raw.strip():
        raise UsageError(f"{path}: file is empty")
    text, encoding = decode_bytes(raw, path, data_settings.encoding)
    separator = sniff_separator(text, data_settings.csv_separator)
    data = text.encode("utf-8")

    def read(truncate_ragged: bool) -> pl.DataFrame:
        try:
            return pl.read_csv(
                io.BytesIO(data), separator=separator, infer_schema=False, truncate_ragged_lines=truncate_ragged,
                raise_if_empty=True, row_index_name="_row", row_index_offset=2,
            )
        except (pl.exceptions.PolarsError, ValueError) as exc:
            # The library's message may quote the offending line (PHI): name only the error class.
            raise UsageError(
                f"{path}: cannot parse as CSV with separator {separator!r} ({type(exc).__name__})") from None

    # Rows with more fields than the header: polars would cut the extra fields off silently, so the strict read
    # comes first; when it refuses, those rows are found, marked and rejected as `ragged_row` by the clean step
    # (a shifted row is not data to train on).
    try:
        frame, ragged = read(truncate_ragged=False), []
    except UsageError:
        ragged = ragged_rows(text, separator)
        if not ragged:
            raise
        frame = read(truncate_ragged=True)
    frame = frame.with_columns(pl.col("_row").is_in(ragged).alias("_ragged"))
    frame = frame.rename({c: c.strip() for c in frame.columns if c != "_row"})
    return frame, FileInfo(path.name, "csv", frame.height, encoding=encoding, separator=separator)


def ragged_rows(text: str, separator: str) -> list[int]:
    """`_row` numbers (header = row 1) of the records with more fields than the header; only run when polars
    refused the file, so the Python csv module costs nothing on well-formed exports."""
    import csv

    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
    header = next(reader, [])
    return [number for number, fields in enumerate(reader, start=2) if len(fields) > len(header)]


def _read_excel(path: Path, sheet: str | None) -> tuple[pl.DataFrame, FileInfo]:
    if path.stat().st_size == 0:
        raise UsageError(f"{path}: file is empty")
    try:
        import fastexcel

        reader = fastexcel.read_excel(str(path))
        names = reader.sheet_names
    except Exception as exc:  # fastexcel raises its own error classes for broken workbooks
        raise UsageError(f"{path}: cannot open workbook ({_short(exc)})") from None
    if sheet is not None and sheet not in names:
        raise UsageError(f"{path}: sheet {sheet!r} not found (sheets: {', '.join(names)})")
    chosen = sheet if sheet is not None else names[0]
    try:
        frame = pl.read_excel(path, sheet_name=chosen, infer_schema_length=0, drop_empty_rows=False)
    except pl.exceptions.NoDataError:
        raise UsageError(f"{path}: sheet {chosen!r} has no data rows") from None
    except Exception as exc:
        raise UsageError(f"{path}: cannot read sheet {chosen!r} ({_short(exc)})") from None
    frame = frame.with_columns(pl.all().cast(pl.String))
    frame = frame.rename({c: str(c).strip() for c in frame.columns})
    frame = frame.with_row_index("_row", offset=2)
    # Trailing empty rows in spreadsheets are formatting, not data: drop them before counting.
    value_cols = [c for c in frame.columns if c != "_row"]
    if value_cols:
        frame = frame.filter(~pl.all_horizontal(pl.col(value_cols).is_null()))
    return frame, FileInfo(path.name, "xlsx", frame.height, sheet=chosen)


def _read_json(path: Path, data_settings: Any) -> tuple[pl.DataFrame, FileInfo]:
    """`{question: answer, ...}` (one specialty per file) or a list of objects."""
    raw = path.read_bytes()
    if not raw.strip():
        raise UsageError(f"{path}: file is empty")
    text, encoding = decode_bytes(raw, path, data_settings.encoding)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    if isinstance(obj, dict) and obj and all(isinstance(v, (str, type(None))) for v in obj.values()):
        columns = data_settings.columns
        q_col, a_col = columns.get("question", "question"), columns.get("answer", "answer")
        rows = {q_col: list(obj.keys()), a_col: [v for v in obj.values()]}
        frame = pl.DataFrame(rows, schema={q_col: pl.String, a_col: pl.String})
        shape = "question->answer map"
    elif isinstance(obj, dict) and len(obj) == 1 and isinstance(next(iter(obj.values())), list):
        frame, shape = _frame_from_objects(path, next(iter(obj.values()))), "object with a list"
    elif isinstance(obj, list):
        frame, shape = _frame_from_objects(path, obj), "list of objects"
    else:
        raise UsageError(f"{path}: expected {{question: answer}} pairs or a list of objects")
    frame = frame.with_row_index("_row", offset=1)
    info = FileInfo(path.name, "json", frame.height, encoding=encoding, notes=[shape])
    match = SPECIALTY_FILE_RE.match(path.name)
    if match and data_settings.specialty_from_filename:
        frame = frame.with_columns(pl.lit(match["specialty"].replace("_", " ")).alias("_specialty_from_file"))
        info.notes.append("specialty from file name")
    return frame, info


def _frame_from_objects(path: Path, items: list) -> pl.DataFrame:
    for i, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise UsageError(f"{path}: entry {i}: expected a JSON object, got {type(item).__name__}")
    return _objects_to_frame(items)


def _objects_to_frame(items: list[dict]) -> pl.DataFrame:
    """Objects with possibly different keys -> string columns (non-strings kept as JSON text)."""
    keys: dict[str, None] = {}
    for item in items:
        keys.update(dict.fromkeys(item))
    columns = {
        str(k): [_as_text(item.get(k)) for item in items] for k in keys
    }
    return pl.DataFrame(columns, schema={str(k): pl.String for k in keys})


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


# A JSONL file is an error (not a file with rejects) when more than this share of its lines are broken: then it
# is most likely not JSONL at all, or cut in the wrong encoding, and rejecting almost every line hides that.
JSONL_BROKEN_MAX = 0.5


def _read_jsonl(path: Path, encoding: str | None) -> tuple[pl.DataFrame, FileInfo]:
    """One object per line. A line that is not a JSON object (a truncated last line, a stray fragment) becomes
    a row with `_invalid` = why, rejected as `invalid_json` with its line number by the clean step."""
    raw = path.read_bytes()
    if not raw.strip():
        raise UsageError(f"{path}: file is empty")
    text, used = decode_bytes(raw, path, encoding)
    items: list[dict] = []
    lines: list[int] = []
    invalid: list[str | None] = []
    first_error: tuple[int, str] | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            problem = None if isinstance(obj, dict) else f"a JSON {type(obj).__name__}, not an object"
        except json.JSONDecodeError as exc:
            obj, problem = None, f"invalid JSON ({exc.msg})"
        if problem is not None:
            first_error = first_error or (lineno, problem)
            obj = {}
        items.append(obj)
        lines.append(lineno)
        invalid.append(problem)
    broken = sum(p is not None for p in invalid)
    if first_error is not None and broken > JSONL_BROKEN_MAX * len(items):
        raise UsageError(f"{path}:{first_error[0]}: {first_error[1]}; {broken} of {len(items)} lines are broken "
                         f"(is this a JSONL file?)")
    frame = _objects_to_frame(items).with_columns(
        pl.Series("_row", lines, dtype=pl.UInt32), pl.Series("_invalid", invalid, dtype=pl.String)
    )
    info = FileInfo(path.name, "jsonl", frame.height, encoding=used)
    if broken:
        info.notes.append(f"{broken} broken line{'s' if broken != 1 else ''} rejected as invalid_json")
    return frame, info


def _short(exc: Exception) -> str:
    """First line of a library error, trimmed: never a data value dump of unbounded size."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]
