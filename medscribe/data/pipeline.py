"""The data stage end to end: `run_data(settings) -> DataResult`.

    from medscribe.settings import load_settings
    from medscribe.data import run_data
    result = run_data(load_settings("medscribe.toml"))
    print(result.counts, result.out_dir)

Order matters for privacy: rows with no text are rejected first (their rejects carry no text), then every
free-text field is anonymized, and only then is anything (rejects included) written.
"""

from __future__ import annotations

import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from medscribe.data import chat, clean, dedup, images, ingest, leakage, manifest, outputs, scans, splits
from medscribe.data.anonymize import anonymize, scrub_input_notes, scrub_source_labels
from medscribe.errors import RuntimeFailure, UsageError
from medscribe.io import atomic_write_json, sha256_file
from medscribe.schemas import SPLITS

REJECT_COLUMNS = {"file": pl.String, "row": pl.Int64, "reason": pl.String, "detail": pl.String,
                  "input": pl.String, "target": pl.String}


@dataclass
class DataResult:
    out_dir: Path
    counts: dict[str, int]                      # rows_in, rows_kept, rows_rejected
    steps: dict[str, int]                       # rows rejected per reason
    splits: dict[str, int]
    by_group: dict[str, dict[str, int]]         # group value -> split -> rows
    files: dict[str, str]
    manifest: dict
    seconds: float
    phi_seconds: float
    warnings: list[str] = field(default_factory=list)


def _rejects_frame(parts: list[pl.DataFrame]) -> pl.DataFrame:
    aligned = []
    for part in parts:
        cols = [
            (pl.col(c).cast(t) if c in part.columns else pl.lit(None, dtype=t)).alias(c)
            for c, t in REJECT_COLUMNS.items()
        ]
        aligned.append(part.select(cols))
    if not aligned:
        return pl.DataFrame(schema=REJECT_COLUMNS)
    return pl.concat(aligned).sort("file", "row")


def _timed(function: Any, *args: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = function(*args)
    return result, round(time.perf_counter() - started, 3)


def run_data(settings: Any, console: Console | None = None) -> DataResult:
    """Ingest, clean, anonymize, de-duplicate, split, audit and write the dataset described by `settings`."""
    started = time.perf_counter()
    console = console or Console(stderr=True)
    data = settings.data
    if data.chats.enabled:  # chat exports -> multi-turn samples: their own steps (data/chat_samples.py)
        from medscribe.data.chat_samples import run_chats

        return run_chats(settings, console)
    task = data.task
    clean.check_column_settings(data)
    scans.check_document_settings(data)
    splits.check_fractions(data.train_fractions)
    out_dir = Path(settings.paths.data)
    warnings: list[str] = []
    timings: dict[str, float] = {}
    lap = [time.perf_counter()]

    def done(step: str) -> None:
        now = time.perf_counter()
        timings[step] = round(now - lap[0], 3)
        lap[0] = now

    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=True,
    )
    with progress:
        input_notes: list[tuple[str, str]] = []
        sources = ingest.discover_files(list(data.inputs), include_hidden=data.include_hidden, notes=input_notes)
        # File names are often the patient's name or the study date: every output records the scrubbed path
        # relative to the input folder (`label`), never the raw one; notes about an input scrub it too.
        path_report = scrub_source_labels(sources, data.phi)
        warnings.extend(scrub_input_notes(input_notes, data.phi))
        documents = [s.path for s in sources if s.path.suffix.lower() in ingest.OCR_SUFFIXES]
        if documents:  # PDFs/scans first, in parallel (OCR is ~1 s a page); read_source then takes the results
            ocr_task = progress.add_task("reading PDFs / OCR", total=len(documents))
            timings["ocr_workers"] = scans.prefetch(documents, data, lambda: progress.advance(ocr_task))
            done("ocr_s")
        reading = progress.add_task("reading files", total=len(sources))
        frames, infos, file_hashes, doc_rejects = [], [], [], []
        for source in sources:
            raw, info = ingest.read_source(source, data)
            infos.append(info)
            file_hashes.append(sha256_file(source.path))
            progress.advance(reading)
            if "_doc_reject" in raw.columns:  # a PDF/image that cannot be read or whose OCR is too unsure
                doc_rejects.append(raw.filter(pl.col("_doc_reject").is_not_null()).select(
                    "_file", "_row", pl.col("_doc_reject").alias("reason"), pl.col("_doc_detail").alias("detail")))
                raw = raw.filter(pl.col("_doc_reject").is_null()).drop("_doc_reject", "_doc_detail")
                if raw.height == 0:
                    continue
            canonical = clean.to_canonical(raw, str(source.path), task, data)
            # the image column: each image checked and stored under its pixel hash, bad ones rejected (images.py)
            canonical, rejected_images = images.attach_images(canonical, source, out_dir, data)
            if rejected_images is not None:
                doc_rejects.append(rejected_images)
            # `_control` first: normalize() removes control bytes, and a field that held one is rejected
            frames.append(clean.mark_control_bytes(canonical))
            warnings.extend(f"{info.file}: {note}" for note in info.notes if "cp1251" in note or "invalid_json" in note)
        rejected_docs = pl.concat(doc_rejects).rename({"_file": "file", "_row": "row"}) if doc_rejects else None
        if not frames:
            reasons = Counter(rejected_docs.get_column("reason").to_list()) if rejected_docs is not None else {}
            first = rejected_docs.row(0, named=True) if rejected_docs is not None else {}
            raise UsageError(f"{first.get('file')}: {first.get('detail')}; every input file was rejected "
                             f"({', '.join(f'{n} {r}' for r, n in sorted(reasons.items()))})")
        frame = pl.concat(frames, how="vertical_relaxed")
        rows_in = frame.height + (rejected_docs.height if rejected_docs is not None else 0)
        done("read_s")
        stage = progress.add_task("cleaning", total=6)
        frame = clean.parse_has_finding(clean.normalize(frame, data))
        frame, rejected_empty = clean.reject_empty(frame, data.max_chars)
        progress.advance(stage)
        done("clean_s")

        progress.update(stage, description="anonymizing")
        frame, phi_report, phi_seconds = anonymize(frame, settings)
        if phi_report["enabled"]:
            phi_report["paths"] = path_report
        if not phi_report["enabled"]:
            warnings.append(phi_report["warning"])
        warnings.extend(phi_report.get("notes", []))
        frame, rejected_short = clean.reject_short(frame, data.min_chars)
        progress.advance(stage)
        done("anonymize_s")

        progress.update(stage, description="de-duplicating")
        frame = dedup.add_keys(frame)
        frame, rejected_dups, dup_counts = dedup.reject_duplicates(frame, data.near_duplicate_threshold)
        frame, rejected_ids = outputs.assign_ids(frame, task)
        progress.advance(stage)
        done("dedup_s")

        progress.update(stage, description="splitting")
        frame = frame.with_columns(
            pl.coalesce("source", "_file").alias("source"), pl.lit(task).alias("task")
        )
        frame, split_info = splits.assign_splits(frame, data)
        progress.advance(stage)
        done("split_s")

        progress.update(stage, description="leakage audit + chat field")
        # The leakage audit (polars sorts, rapidfuzz: native code that releases the GIL) runs in a thread while
        # the chat field is built; nothing is written before both are done and the audit has passed.
        with ThreadPoolExecutor(max_workers=1) as pool:
            audit = pool.submit(_timed, leakage.audit_leakage, frame, data.near_duplicate_threshold)
            rejects = _rejects_frame([part for part in (rejected_docs, rejected_empty, rejected_short, rejected_dups,
                                                        rejected_ids) if part is not None])
            rows_kept = frame.height
            if rows_kept + rejects.height != rows_in:  # the accounting invariant: nothing vanishes silently
                raise RuntimeFailure(
                    f"row accounting broken: {rows_in} in != {rows_kept} kept + {rejects.height} rejected")
            chat_frame, chat_note = chat.chat_column(frame, task, settings.prompt, data.chat_format)
            leak, timings["leakage_s"] = audit.result()
        splits.check_no_leak(leak, split_info)
        note = splits.representativeness_warning(split_info)
        if note:
            warnings.append(note)
        frame = chat_frame
        if chat_note:
            warnings.append(chat_note)
        progress.advance(stage)
        done("leakage_and_chat_s")
        chat_name = chat.CHAT_FIELD[data.chat_format]
        records = frame.select(*outputs.RECORD_FIELDS, chat_name)
        present = set(frame.get_column("split").unique().to_list())
        by_split = {name: records.filter(pl.col("split") == name)
                    for name in SPLITS if name in present or name in ("train", "eval", "test")}
        corpus = outputs.corpus_frame(by_split["train"])
        provenance = frame.select("id", pl.col("_file").alias("file"), pl.col("_row").alias("row"),
                                  pl.col("_folder").alias("folder"))
        files = outputs.write_outputs(out_dir, by_split, corpus, provenance, rejects)
        image_refs = set(frame.get_column("image").drop_nulls().to_list())
        image_info = None
        if image_refs or (out_dir / images.IMAGE_DIR).is_dir():  # images of rejected rows / earlier runs go
            image_info = {"rows_with_image": frame.get_column("image").is_not_null().sum(),
                          "distinct_images": len(image_refs), "stored_as": images.STORED_AS,
                          "pruned": images.prune_images(out_dir, image_refs)}
        progress.advance(stage)
        done("write_s")

    split_counts = {name: part.height for name, part in by_split.items()}
    group_counts: dict[str, dict[str, int]] = {}
    group_values = frame.get_column(data.group_by).fill_null(splits.UNKNOWN_GROUP).to_list()
    for group, split in zip(group_values, frame.get_column("split").to_list(), strict=True):
        group_counts.setdefault(group, {}).setdefault(split, 0)
        group_counts[group][split] += 1
    reasons = dict(Counter(rejects.get_column("reason").to_list()))
    counts = {"rows_in": rows_in, "rows_kept": rows_kept, "rows_rejected": rejects.height}
    seconds = time.perf_counter() - started
    man = manifest.build_manifest(
        task=task,
        config_hash=manifest.config_hash(settings),
        chat_format=data.chat_format,
        chat_field=chat.CHAT_FIELD[data.chat_format],
        inputs=[{**{k: v for k, v in vars(info).items() if k != "ocr" or v is not None}, "sha256": sha}
                for info, sha in zip(infos, file_hashes, strict=True)],
        counts=counts,
        rejected_by_reason=reasons,
        duplicates={**dup_counts, "method": dedup.METHOD, "threshold": data.near_duplicate_threshold},
        splits=split_counts,
        group_by=data.group_by,
        by_group=group_counts,
        splits_audit={**split_info, "shared_across_splits": {
            "inputs": leak["exact_input"]["count"], "targets": leak["exact_target"]["count"],
            "near_inputs": leak["near_input"]["count"]}},
        phi=phi_report,
        leakage=leak,
        fallbacks=warnings,
        timings={"total_s": round(seconds, 3), "phi_s": round(phi_seconds, 3), **timings},
    )
    if image_info is not None:
        man["images"] = image_info
    files["manifest.json"] = str(atomic_write_json(out_dir / "manifest.json", man))
    return DataResult(out_dir, counts, reasons, split_counts, group_counts, files, man, seconds, phi_seconds,
                      warnings)
