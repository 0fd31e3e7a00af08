"""Read what eval scores: an `ask` run dir (its results.jsonl + summary.json) or any CSV/JSONL file with a
prediction and a reference column, into one aligned `RunData`.

    from medscribe.evaluate.loading import load_run, align_runs
    run = load_run(Path("artifacts/ask/tuned-rag"), settings.eval)

Bad input (missing file or column, empty file, duplicate ids, ids that differ between runs) raises UsageError
with one line naming the file, line and field; never the row's text.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medscribe.errors import UsageError
from medscribe.io import read_jsonl

REFERENCE_FIELDS = ("has_finding", "organ", "modality")


@dataclass
class RunData:
    name: str
    path: Path
    ids: list[str]
    predictions: list[str]
    references: list[str | None]
    parsed: list[dict | None]
    parse_ok: list[bool | None]
    # whether the parsed JSON needed a repair (fences, chatter, json_repair), None when unknown
    repaired: list[bool | None] = field(default_factory=list)
    # group_by field -> value per row (None when unknown)
    groups: dict[str, list[str | None]] = field(default_factory=dict)
    # reference values of structured fields (has_finding/organ/modality) per row, None when unknown
    ref_fields: dict[str, list[Any]] = field(default_factory=dict)
    retrieved_ids: list[list[str] | None] = field(default_factory=list)
    gold_ids: list[str | None] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # line of each row in its file, for messages without ids
    errors: int = 0
    summary: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # what produced the run (`fingerprint.json` / summary.json["fingerprint"]): {"digest", "parts"}, or None
    fingerprint: dict | None = None
    notes: list[str] = field(default_factory=list)   # how a metric was derived (shown in the report)
    inputs: list[str | None] = field(default_factory=list)  # the finding/question, for the report's example rows

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, order: list[int]) -> RunData:
        """The same run with its rows reordered (used to align runs by id)."""
        pick = lambda values: [values[i] for i in order]  # noqa: E731
        return RunData(
            name=self.name, path=self.path, ids=pick(self.ids), predictions=pick(self.predictions),
            references=pick(self.references), parsed=pick(self.parsed), parse_ok=pick(self.parse_ok),
            repaired=pick(self.repaired),
            groups={k: pick(v) for k, v in self.groups.items()},
            ref_fields={k: pick(v) for k, v in self.ref_fields.items()},
            retrieved_ids=pick(self.retrieved_ids), gold_ids=pick(self.gold_ids), lines=pick(self.lines),
            errors=self.errors, summary=self.summary, warnings=self.warnings, fingerprint=self.fingerprint,
            notes=self.notes, inputs=pick(self.inputs) if self.inputs else [],
        )


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Hospital exports from Windows are often cp1251; every byte decodes there, so it is the last resort.
        text = raw.decode("cp1251")
    if not text.strip():
        raise UsageError(f"{path}: empty file")
    first_line = text.splitlines()[0]
    delimiter = max([",", ";", "\t"], key=first_line.count)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    rows = []
    for row in reader:  # line_num counts physical lines, so quoted multi-line cells keep numbers right
        rows.append((reader.line_num, row))
    return header, rows


def _read_jsonl_rows(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    if path.stat().st_size == 0:
        raise UsageError(f"{path}: empty file")
    rows: list[tuple[int, dict]] = []
    # read_jsonl reports broken lines precisely; line numbers here count non-empty lines, as it reads them.
    with open(path, encoding="utf-8") as fh:
        numbers = [i for i, line in enumerate(fh, start=1) if line.strip()]
    for lineno, row in zip(numbers, read_jsonl(path), strict=False):
        rows.append((lineno, row))
    header = sorted({key for _, row in rows for key in row})
    return header, rows


def _as_bool(value: Any) -> bool | None:
    if isinstance(value, bool) or value is None:
        return value
    text = str(value).strip().casefold()
    if text in {"true", "1", "yes", "да", "y"}:
        return True
    if text in {"false", "0", "no", "нет", "n"}:
        return False
    return None


def _as_list(value: Any) -> list[str] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = [v for v in value.replace(";", ",").split(",") if v.strip()]
    if not isinstance(value, list):
        return None
    return [str(v).strip() for v in value]


def _as_parsed(value: Any) -> dict | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            obj = json.loads(value)
        except json.JSONDecodeError:
            return None
        return obj if isinstance(obj, dict) else None
    return None


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def results_file(path: Path) -> Path:
    """A run dir means its results.jsonl; a file is taken as it is."""
    if path.is_dir():
        candidate = path / "results.jsonl"
        if not candidate.is_file():
            raise UsageError(f"{path}: no results.jsonl in this run directory")
        return candidate
    if not path.is_file():
        raise UsageError(f"{path}: file not found")
    return path


def load_run(path: Path, cfg, name: str | None = None) -> RunData:
    """Read one run; `cfg` is settings.eval (column names, group_by fields)."""
    path = Path(path)
    source = results_file(path)
    suffix = source.suffix.lower()
    if suffix == ".csv" or suffix == ".tsv":
        header, rows = _read_csv(source)
    elif suffix in {".jsonl", ".json", ".ndjson"}:
        header, rows = _read_jsonl_rows(source)
    else:
        raise UsageError(f"{source}: unsupported file type {suffix or '(none)'} (use .jsonl or .csv)")
    if not rows:
        raise UsageError(f"{source}: empty file (no rows)")
    for column in (cfg.prediction_column, cfg.reference_column):
        if column not in header:
            have = ", ".join(header[:12])
            raise UsageError(f"{source}: missing column {column!r} (columns: {have})")

    run = RunData(
        name=name or (path.name if path.is_dir() else path.stem), path=path, ids=[], predictions=[],
        references=[], parsed=[], parse_ok=[], repaired=[],
        groups={g: [] for g in cfg.group_by}, ref_fields={f: [] for f in REFERENCE_FIELDS},
    )
    has_ids = cfg.id_column in header
    if not has_ids:
        run.warnings.append(f"{source}: no {cfg.id_column!r} column: rows are identified by their line number")
    seen: dict[str, int] = {}
    for lineno, row in rows:
        if cfg.prediction_column not in row or cfg.reference_column not in row:
            missing = cfg.prediction_column if cfg.prediction_column not in row else cfg.reference_column
            raise UsageError(f"{source}:{lineno}: missing field {missing!r}")
        row_id = _clean(row.get(cfg.id_column)) if has_ids else f"line-{lineno}"
        if row_id is None:
            raise UsageError(f"{source}:{lineno}: empty {cfg.id_column!r}")
        if row_id in seen:
            # The id itself stays out of the message: an arbitrary CSV's id column may be a record number.
            raise UsageError(f"{source}:{lineno}: duplicate {cfg.id_column!r} (same as line {seen[row_id]})")
        seen[row_id] = lineno
        prediction = row.get(cfg.prediction_column)
        if row.get("error"):
            run.errors += 1
        run.ids.append(row_id)
        run.lines.append(lineno)
        run.predictions.append("" if prediction is None else str(prediction))
        run.references.append(_clean(row.get(cfg.reference_column)))
        run.inputs.append(_clean(row.get("input")))
        parsed = _as_parsed(row.get("parsed"))
        run.parsed.append(parsed)
        run.parse_ok.append(_as_bool(row.get("parse_ok")) if "parse_ok" in row else None)
        run.repaired.append(_repaired(row, run.parse_ok[-1]))
        for group in cfg.group_by:
            run.groups[group].append(_clean(row.get(group)))
        for field_name in REFERENCE_FIELDS:
            value = row.get(field_name)
            run.ref_fields[field_name].append(_as_bool(value) if field_name == "has_finding" else _clean(value))
        run.retrieved_ids.append(_as_list(row.get("retrieved_ids")))
        run.gold_ids.append(_clean(row.get(cfg.gold_column)))
    if all(ref is None for ref in run.references):
        raise UsageError(f"{source}: column {cfg.reference_column!r} is empty in every row: nothing to score")
    if any(ok and "repaired" not in row for (_, row), ok in zip(rows, run.parse_ok, strict=True)):
        run.notes.append(f"{run.name}: rows without 'repaired': json_strict from strict json.loads of 'raw'")
    summary_path = source.parent / "summary.json"
    if summary_path.is_file():
        try:
            run.summary = json.loads(summary_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            run.warnings.append(f"{summary_path}: unreadable, ignored")
    run.fingerprint = read_fingerprint(source.parent, run.summary)
    return run


def _repaired(row: dict, parse_ok: bool | None) -> bool | None:
    """Did the parsed answer need a repair? The row says so (`repaired`, written by ask); an older or foreign
    file without it is judged from `raw`: strict JSON as produced means no repair. Unknown -> None."""
    if not parse_ok:
        return None
    if "repaired" in row:
        return _as_bool(row["repaired"])
    raw = row.get("raw")
    if not isinstance(raw, str):
        return None
    try:
        return not isinstance(json.loads(raw.strip()), dict)
    except (json.JSONDecodeError, ValueError):
        return True


def read_fingerprint(folder: Path, summary: dict) -> dict | None:
    """The run's fingerprint from `fingerprint.json`, else from summary.json; None when it has none.

    Both present and different means the run was restarted after its summary was written (a run that was
    not finished): its answers cannot be attributed, so that is a usage error."""
    found: dict[str, dict] = {}
    path = folder / "fingerprint.json"
    if path.is_file():
        try:
            found[str(path)] = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UsageError(f"{path}: not valid JSON") from None
    if isinstance(summary, dict) and summary.get("fingerprint") is not None:
        found[f"{folder / 'summary.json'} field 'fingerprint'"] = summary["fingerprint"]
    for where, record in found.items():
        if not isinstance(record, dict) or not isinstance(record.get("digest"), str) \
                or not isinstance(record.get("parts"), dict):
            raise UsageError(f"{where}: expected {{\"digest\": \"<hex>\", \"parts\": {{...}}}}")
    records = list(found.values())
    if len(records) == 2 and records[0]["digest"] != records[1]["digest"]:
        raise UsageError(
            f"{folder}: fingerprint.json ({records[0]['digest']}) and summary.json ({records[1]['digest']}) "
            "disagree: the run was restarted and not finished; finish it with ask first")
    return records[0] if records else None


def align_runs(runs: list[RunData]) -> list[RunData]:
    """Reorder every run to the first run's id order; ids that differ between runs are a usage error."""
    first = runs[0]
    index_of = {row_id: i for i, row_id in enumerate(first.ids)}
    aligned = [first]
    for run in runs[1:]:
        mine = set(run.ids)
        only_first = [i for i in first.ids if i not in mine]
        only_here = [i for i in run.ids if i not in index_of]
        if only_first or only_here:
            # Point at a line, not at the id value (ids of arbitrary files may be record numbers).
            where = (
                f"first: {results_file(first.path)} line {first.lines[first.ids.index(only_first[0])]}" if only_first
                else f"first: {results_file(run.path)} line {run.lines[run.ids.index(only_here[0])]}"
            )
            raise UsageError(
                f"{run.path}: ids do not match {first.path}: {len(only_first)} only in {first.name!r}, "
                f"{len(only_here)} only in {run.name!r} ({where})"
            )
        position = {row_id: i for i, row_id in enumerate(run.ids)}
        aligned.append(run.take([position[row_id] for row_id in first.ids]))
    return aligned
