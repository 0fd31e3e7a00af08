"""Record ids, chat-format fields and every file the data stage writes (all atomically).

    from medscribe.data.outputs import assign_ids, write_outputs
    frame, rejects = assign_ids(frame, task)
    written = write_outputs(out_dir, split_frames, corpus, provenance, rejects)

Layout under `settings.paths.data`: `train/eval/test(/pool).jsonl` (Record fields + chat field),
`dataset/` (HF DatasetDict, written to a temp dir and renamed), `corpus.jsonl` (train only, for the index),
`provenance.jsonl` (id -> file, row, folder), `rejects.jsonl`, `manifest.json` (written last, by the caller).
A rerun recomputes everything deterministically and replaces each file whole, so a killed run leaves either
the old or the new version of a file, never half of one, and never duplicates.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import polars as pl

from medscribe.io import atomic_path
from medscribe.schemas import Record

RECORD_FIELDS = list(Record.model_fields)


def assign_ids(frame: pl.DataFrame, task: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Ids from the id column where mapped, else a hash of source file + row content (stable across reruns).

    A repeated id (same id column value, different content) is rejected: ids must be unique keys."""
    missing = frame.get_column("id").is_null()
    if missing.any():  # hash only the rows without a mapped id (none when the export has an id column)
        rows = missing.arg_true()
        part = frame.select("_file", "input", "target").gather(rows)
        prefix = task[0]
        hashed = [
            f"{prefix}-" + hashlib.sha256(f"{f}\x1f{i}\x1f{t}".encode()).hexdigest()[:16]
            for f, i, t in part.iter_rows()
        ]
        frame = frame.with_columns(frame.get_column("id").scatter(rows, pl.Series(hashed, dtype=pl.String)))
    first = frame.select(pl.col("id").is_first_distinct()).to_series()
    bad = frame.filter(~first)
    rejects = bad.select(
        pl.col("_file").alias("file"), pl.col("_row").alias("row"), pl.lit("duplicate_id").alias("reason"),
        pl.lit("id already used by an earlier row").alias("detail"), "input", "target",
    )
    return frame.filter(first), rejects


def corpus_frame(train: pl.DataFrame) -> pl.DataFrame:
    """What the index embeds: TRAIN rows only, so eval/test answers can never be retrieved."""
    return train.select(
        "id", pl.col("input").alias("text"), pl.col("target").alias("answer"), "task", "specialty", "organ",
        "modality", "source", "split",
    )


def write_frame_jsonl(target: Path, frame: pl.DataFrame) -> Path:
    """One JSON object per row (polars' writer: ~10x faster than json.dumps per row), atomically."""
    with atomic_path(target) as tmp:
        frame.write_ndjson(tmp)
    return target


def arrow_table(frame: pl.DataFrame):
    """polars -> pyarrow with plain `string`/`list` types (what datasets.from_list would infer), so readers
    of `dataset/` see ordinary features, and typed Record columns even when a column is all null."""
    import pyarrow as pa

    typed = frame.with_columns(
        [pl.col(c).cast(pl.Boolean if c == "has_finding" else pl.String) for c in RECORD_FIELDS if c in frame.columns]
    )
    table = typed.to_arrow(compat_level=pl.CompatLevel.oldest())

    def plain(t: pa.DataType) -> pa.DataType:
        if pa.types.is_large_string(t):
            return pa.string()
        if pa.types.is_large_list(t) or pa.types.is_list(t):
            return pa.list_(plain(t.value_type))
        if pa.types.is_struct(t):
            return pa.struct([pa.field(f.name, plain(f.type)) for f in t])
        return t

    schema = pa.schema([pa.field(f.name, plain(f.type)) for f in table.schema])
    return table.cast(schema)


def write_dataset_dict(out_dir: Path, frames: dict[str, pl.DataFrame]) -> Path:
    """HF DatasetDict via a temp dir + rename, so a reader never sees a half-written `dataset/`."""
    from datasets import Dataset, DatasetDict, disable_progress_bars, enable_progress_bars, is_progress_bar_enabled

    target = out_dir / "dataset"
    tmp = out_dir / f".dataset.tmp-{os.getpid()}"
    old = out_dir / f".dataset.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    # An explicit fingerprint (hash of the split's ids): otherwise datasets pickles the whole table to make one.
    dd = DatasetDict({
        name: Dataset(arrow_table(frame), fingerprint=hashlib.blake2b(
            "\x1f".join(frame.get_column("id").to_list()).encode(), digest_size=8).hexdigest())
        for name, frame in frames.items()
    })
    # Our own progress bar covers this step; datasets' per-split bars would garble it.
    bars_were_on = is_progress_bar_enabled()
    disable_progress_bars()
    try:
        dd.save_to_disk(str(tmp))
    finally:
        if bars_were_on:
            enable_progress_bars()
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def write_outputs(
    out_dir: Path,
    split_frames: dict[str, pl.DataFrame],
    corpus: pl.DataFrame,
    provenance: pl.DataFrame,
    rejects: pl.DataFrame,
) -> dict[str, str]:
    """Write every data file; returns name -> path. train/eval/test always get a file (maybe empty);
    `pool` only when train_fractions moved rows into it (a stale one from an earlier run is removed)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # The manifest is written last: no manifest means "this folder is mid-rebuild", never a stale one that
    # describes files from an earlier run.
    (out_dir / "manifest.json").unlink(missing_ok=True)
    stale_pool = out_dir / "pool.jsonl"
    if "pool" not in split_frames and stale_pool.exists():
        stale_pool.unlink()
    jsonl = {f"{name}.jsonl": frame for name, frame in split_frames.items()}
    jsonl.update({"corpus.jsonl": corpus, "provenance.jsonl": provenance, "rejects.jsonl": rejects})
    # The HF dataset (mostly Python + arrow) is written while polars writes the JSONL files (native, no GIL).
    with ThreadPoolExecutor(max_workers=2) as pool:
        dataset = pool.submit(write_dataset_dict, out_dir, {k: v for k, v in split_frames.items() if v.height})
        written = {name: str(write_frame_jsonl(out_dir / name, frame)) for name, frame in jsonl.items()}
        written["dataset"] = str(dataset.result())
    return written
