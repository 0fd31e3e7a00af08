"""Map source columns to canonical fields, normalize text, apply value maps and reject unusable rows.

    from medscribe.data.clean import mark_control_bytes, normalize, parse_has_finding, reject_empty, to_canonical
    frame = to_canonical(raw_frame, info_file, settings.data)   # canonical columns + provenance
    frame = mark_control_bytes(frame)                              # `_control`: a field with a C0 byte (first!)
    frame = parse_has_finding(normalize(frame, settings.data))     # NFC, whitespace, value maps, folder modality
    kept, rejected = reject_empty(frame, settings.data.max_chars)  # broken / empty / too long / bad has_finding

Canonical fields: `input`/`target` (from finding/conclusion for `report`, question/answer for `qa`),
`id`, `organ`, `modality`, `specialty`, `has_finding`, `source`, `reasoning` (free text, scrubbed like the
input: what a cot prompt trains on), `image` (a path; data/images.py). Provenance: `_file`, `_folder`, `_row`.
All vectorized in polars: this step must keep up with 200k-row exports.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from medscribe.errors import UsageError

TEXT_FIELDS = ("input", "target")
META_FIELDS = ("organ", "modality", "specialty", "source")
CANONICAL = ("id", "input", "target", "organ", "modality", "specialty", "has_finding", "source", "reasoning",
             "image")
PROVENANCE = ("_file", "_folder", "_row")
# Names a user may map in `data.columns`, and which canonical field each fills for each task.
TASK_FIELDS = {
    "report": {"finding": "input", "conclusion": "target"},
    "qa": {"question": "input", "answer": "target"},
}
# `image`: a path to the row's image, checked and stored under a content hash by data/images.py (not cleaned
# as text here: a path is not prose, and NFC could change a file name that exists only in NFD)
OPTIONAL = ("id", "organ", "modality", "specialty", "has_finding", "source", "reasoning", "image")
MAPPABLE = {"finding", "conclusion", "question", "answer", "input", "target", *OPTIONAL}
TRUE_VALUES = {"1", "true", "yes", "y", "да", "д", "есть", "+", "t"}
FALSE_VALUES = {"0", "false", "no", "n", "нет", "н", "-", "f"}


def check_column_settings(data: Any) -> None:
    unknown = sorted(set(data.columns) - MAPPABLE)
    if unknown:
        raise UsageError(
            f"data.columns: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(MAPPABLE))})"
        )
    dropped = {col for col, policy in data.phi.columns.items() if policy == "drop"}
    clash = sorted(f for f, col in data.columns.items() if col in dropped)
    if clash:
        raise UsageError(f"data.columns: {', '.join(clash)} maps a column that data.phi.columns drops")


def source_columns(task: str, data: Any) -> dict[str, str | None]:
    """canonical field -> configured source column (None: look for a column named like the field)."""
    mapping: dict[str, str | None] = {}
    for alias, field in TASK_FIELDS[task].items():
        mapping[field] = data.columns.get(alias) or data.columns.get(field)
    for field in OPTIONAL:
        mapping[field] = data.columns.get(field)
    return mapping


def to_canonical(frame: pl.DataFrame, file_label: str, task: str, data: Any) -> pl.DataFrame:
    """Select and rename the mapped columns; a mapped column missing from the file is a UsageError."""
    drop = [c for c, policy in data.phi.columns.items() if policy == "drop" and c in frame.columns]
    frame = frame.drop(drop)
    by_lower = {c.lower(): c for c in frame.columns if not c.startswith("_")}
    exprs = []
    aliases = {v: k for k, v in TASK_FIELDS[task].items()}
    for field, column in source_columns(task, data).items():
        if column is not None:
            if column not in frame.columns:
                shown = ", ".join(c for c in frame.columns if not c.startswith("_"))
                raise UsageError(f"{file_label}: column {column!r} (data.columns.{_key(field, aliases, data)}) "
                                 f"not found; columns: {shown}")
            exprs.append(pl.col(column).cast(pl.String).alias(field))
            continue
        guess = by_lower.get(field) or by_lower.get(aliases.get(field, field))
        if guess is not None:
            exprs.append(pl.col(guess).cast(pl.String).alias(field))
        elif field in TEXT_FIELDS:
            names = " or ".join(f"data.columns.{n}" for n in (aliases[field], field))
            shown = ", ".join(c for c in frame.columns if not c.startswith("_"))
            raise UsageError(f"{file_label}: no column for {aliases[field]} (set {names}); columns: {shown}")
        else:
            exprs.append(pl.lit(None, dtype=pl.String).alias(field))
    extra = [c for c in (*PROVENANCE, "_specialty_from_file") if c in frame.columns]
    ragged = pl.col("_ragged") if "_ragged" in frame.columns else pl.lit(False).alias("_ragged")
    invalid = pl.col("_invalid") if "_invalid" in frame.columns else pl.lit(None, dtype=pl.String).alias("_invalid")
    out = frame.select(*exprs, *extra, ragged, invalid)
    if "_specialty_from_file" in out.columns:
        out = out.with_columns(pl.coalesce("specialty", "_specialty_from_file").alias("specialty"))
        out = out.drop("_specialty_from_file")
    return out.with_columns(pl.col("_row").cast(pl.Int64))


def _key(field: str, aliases: dict[str, str], data: Any) -> str:
    alias = aliases.get(field)
    return alias if alias and alias in data.columns else field


# Strings made only of these characters are already NFC (no combining marks, no characters NFC replaces):
# polars' NFC costs ~2 us per report cell, so only the other strings are normalized.
_NFC_STABLE = r"^[\x00-\u02ff\u0370-\u0373\u0375-\u037d\u037f-\u0386\u0388-\u0482\u048a-\u052f]*$"


_BLANKS = r"\t\u00a0\u2000-\u200a\u202f\u205f\u3000"  # blanks other than the plain space


def _nfc(expr: pl.Expr) -> pl.Expr:
    return pl.when(expr.str.contains(_NFC_STABLE)).then(expr).otherwise(expr.str.normalize("NFC"))


def _clean_text(expr: pl.Expr) -> pl.Expr:
    """NFC, no control/zero-width characters, runs of spaces collapsed, lines trimmed, ends stripped."""
    return (
        _nfc(expr)
        .str.replace_all(r"\r\n?", "\n")
        .str.replace_all(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200d\u2060\ufeff]", "")
        # = every run of [ \t\u00a0...]+ -> " ", written so that a lone plain space is not a match (rebuilding
        # every string for each of its spaces cost 0.2 s per 200k cells)
        .str.replace_all(rf"[ {_BLANKS}]{{2,}}|[{_BLANKS}]", " ")
        .str.replace_all(r" ?\n ?", "\n")
        .str.replace_all(r"\n{3,}", "\n\n")
        .str.strip_chars()
    )


# C0 control bytes other than tab, line feed and carriage return: a field holding one is a broken export (a NUL
# from a binary dump, garbage from a wrong encoding), rejected as `control_bytes` rather than silently cleaned.
CONTROL_BYTES = r"[\x00-\x08\x0b\x0c\x0e-\x1f]"


def mark_control_bytes(frame: pl.DataFrame) -> pl.DataFrame:
    """`_control`: the first canonical field (input, target, ...) holding a C0 control byte, else null.
    Runs before `normalize`, which would remove them."""
    fields = [f for f in (*TEXT_FIELDS, *META_FIELDS, "id", "has_finding", "reasoning") if f in frame.columns]
    expr = pl.lit(None, dtype=pl.String)
    for field in reversed(fields):
        expr = pl.when(pl.col(field).str.contains(CONTROL_BYTES).fill_null(False)).then(pl.lit(field)).otherwise(expr)
    return frame.with_columns(expr.alias("_control"))


def normalize(frame: pl.DataFrame, data: Any) -> pl.DataFrame:
    optional_text = [f for f in (*META_FIELDS, "id", "reasoning") if f in frame.columns]
    exprs = [_clean_text(pl.col(f)).alias(f) for f in (*TEXT_FIELDS, *optional_text)]
    frame = frame.with_columns(exprs)
    # Empty metadata means "unknown", not an empty category (and an empty reasoning: none).
    frame = frame.with_columns([
        pl.when(pl.col(f) == "").then(None).otherwise(pl.col(f)).alias(f) for f in optional_text
    ])
    for field, mapping in data.value_maps.items():
        if field not in frame.columns or field in ("_file", "_folder", "_row"):
            raise UsageError(f"data.value_maps.{field}: not a canonical field ({', '.join(CANONICAL)})")
        lowered = {str(k).strip().lower(): str(v) for k, v in mapping.items()}
        low = pl.col(field).str.strip_chars().str.to_lowercase()
        frame = frame.with_columns(
            pl.when(low.is_in(list(lowered))).then(low.replace(lowered)).otherwise(pl.col(field)).alias(field)
        )
    if data.modality_from_folder:
        frame = frame.with_columns(pl.coalesce(pl.col("modality"), pl.col("_folder")).alias("modality"))
    return frame


def parse_has_finding(frame: pl.DataFrame) -> pl.DataFrame:
    """`has_finding` text -> bool; `_bad_has_finding` marks values that are neither true nor false."""
    low = pl.col("has_finding").str.strip_chars().str.to_lowercase()
    return frame.with_columns(
        pl.when(low.is_in(list(TRUE_VALUES))).then(True)
        .when(low.is_in(list(FALSE_VALUES))).then(False)
        .otherwise(None).alias("_has_finding_bool"),
        (pl.col("has_finding").is_not_null() & ~low.is_in(list(TRUE_VALUES | FALSE_VALUES))).alias("_bad_has_finding"),
    ).with_columns(pl.col("_has_finding_bool").alias("has_finding")).drop("_has_finding_bool")


def reject_empty(frame: pl.DataFrame, max_chars: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rows that are broken or have no input/target (ragged_row, invalid_json, control_bytes, empty_input,
    empty_target, too_long, invalid_has_finding): rejected before anonymization, so rejects carry no text.
    `max_chars` (data.max_chars, 0 = no limit): a longer input or target is `too_long`."""
    def column(name: str, default: pl.Expr) -> pl.Expr:
        return pl.col(name) if name in frame.columns else default

    ragged = column("_ragged", pl.lit(False))
    invalid = column("_invalid", pl.lit(None, dtype=pl.String))
    control = column("_control", pl.lit(None, dtype=pl.String))
    in_len, out_len = pl.col("input").str.len_chars().fill_null(0), pl.col("target").str.len_chars().fill_null(0)
    too_long = (in_len > max_chars) | (out_len > max_chars) if max_chars else pl.lit(False)
    reason = (
        pl.when(ragged).then(pl.lit("ragged_row"))
        .when(invalid.is_not_null()).then(pl.lit("invalid_json"))
        .when(control.is_not_null()).then(pl.lit("control_bytes"))
        .when(pl.col("input").is_null() | (pl.col("input") == "")).then(pl.lit("empty_input"))
        .when(pl.col("target").is_null() | (pl.col("target") == "")).then(pl.lit("empty_target"))
        .when(too_long).then(pl.lit("too_long"))
        .when(pl.col("_bad_has_finding")).then(pl.lit("invalid_has_finding"))
        .otherwise(None)
    )
    longest = pl.when(in_len > max_chars).then(pl.lit("input")).otherwise(pl.lit("target"))
    detail = (
        pl.when(pl.col("_reason") == "ragged_row").then(pl.lit("more fields than the header"))
        .when(pl.col("_reason") == "invalid_json").then(invalid)
        .when(pl.col("_reason") == "control_bytes").then(pl.lit("NUL or another C0 control byte in ") + control)
        .when(pl.col("_reason") == "too_long").then(
            longest + pl.lit(" has ") + pl.max_horizontal(in_len, out_len).cast(pl.String)
            + pl.lit(f" characters (data.max_chars = {max_chars})"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    frame = frame.with_columns(reason.alias("_reason"))
    bad = frame.filter(pl.col("_reason").is_not_null())
    rejects = bad.select(
        pl.col("_file").alias("file"), pl.col("_row").alias("row"), pl.col("_reason").alias("reason"),
        detail.alias("detail"),
    )
    kept = frame.filter(pl.col("_reason").is_null())
    marks = [c for c in ("_ragged", "_invalid", "_control") if c in kept.columns]
    return kept.drop("_reason", "_bad_has_finding", *marks), rejects


def reject_short(frame: pl.DataFrame, min_chars: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """After anonymization: too-short input/target (a finding of 'норма.' is not a training example)."""
    reason = (
        pl.when(pl.col("input").str.len_chars() < min_chars).then(pl.lit("too_short_input"))
        .when(pl.col("target").str.len_chars() < min_chars).then(pl.lit("too_short_target"))
        .otherwise(None)
    )
    frame = frame.with_columns(reason.alias("_reason"))
    bad = frame.filter(pl.col("_reason").is_not_null())
    rejects = bad.select(
        pl.col("_file").alias("file"), pl.col("_row").alias("row"), pl.col("_reason").alias("reason"),
        pl.lit(f"fewer than {min_chars} characters").alias("detail"), "input", "target",
    )
    return frame.filter(pl.col("_reason").is_null()).drop("_reason"), rejects
