"""Scanned and PDF reports (PDF, PNG/JPG/TIFF) as `data` inputs: one row per file.

    from medscribe.data.scans import read_document_rows
    frame, info_fields = read_document_rows(path, settings.data)

The file's text comes from `medscribe.documents.read_document` (text layer first, OCR for scanned pages). It is
split into fields by section headings: a line starting with a heading ("Findings:", "Заключение:") opens that
field's section, which runs to the next heading; text before the first heading (a letterhead, the patient's
name) is not used, unless the text field (the finding) has no heading of its own: then that text is the
finding. `data.documents.sections` replaces the built-in headings (`DEFAULT_SECTIONS`), and
`data.documents.pattern` (a regular expression with named groups) replaces both. A file with no heading at all
puts its whole text into `data.documents.text_field` (default: the finding / the question).

Columns are named like the source columns `data.columns` maps (finding -> "Описание" when so mapped), so the
usual column mapping (clean.to_canonical) picks them up next to CSV files in the same run. A file that cannot
be read (corrupt image, password-protected PDF) or with a page rejected by OCR (mean confidence below
`data.ocr.min_confidence`) is one row marked `_doc_reject` / `_doc_detail`: the pipeline writes it to the
rejects (no text) instead of reading it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl

from medscribe.data.clean import MAPPABLE, TASK_FIELDS
from medscribe.documents import Document, Ocr, read_document
from medscribe.errors import UsageError

DEFAULT_SECTIONS: dict[str, dict[str, list[str]]] = {
    "report": {
        "finding": ["Findings", "Finding", "Description", "Описание", "Протокол исследования", "Протокол"],
        "conclusion": ["Conclusion", "Impression", "Заключение", "Вывод"],
        "organ": ["Organ", "Орган", "Область исследования"],
        "modality": ["Modality", "Модальность", "Вид исследования"],
    },
    "qa": {
        "question": ["Question", "Вопрос"],
        "answer": ["Answer", "Ответ"],
        "specialty": ["Specialty", "Специальность"],
    },
}
_OCR_CACHE: dict[tuple, Ocr] = {}
# Documents read ahead by `prefetch`, taken (once) by read_document_rows: key = (path, size, mtime).
_PREFETCHED: dict[tuple, Document] = {}
MAX_OCR_WORKERS = 8


def _key(path: Path) -> tuple:
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def prefetch(paths: list[Path], data: Any, advance: Callable[[], None] | None = None) -> int:
    """Read (OCR) many documents at once: one Tesseract process per worker thread, each limited to one
    OpenMP thread (Tesseract's own threads would oversubscribe the cores). Workers: `data.workers` (0 = one
    per core, at most 8). bench/ocr_bench.py: 2 workers x 1 thread gave 2.0 pages/s on 2 cores, one process
    with its default threads ~1.2. Returns the number of workers used."""
    workers = min(data.workers or os.cpu_count() or 1, MAX_OCR_WORKERS, max(len(paths), 1))
    ocr = _ocr_for(data.ocr)
    if not paths:
        return 0
    ocr_needed = any(p.suffix.lower() != ".pdf" for p in paths)
    if ocr_needed:
        ocr.check()  # a missing Tesseract is one error, before any thread starts

    def read(path: Path) -> None:
        _PREFETCHED[_key(path)] = read_document(path, data.ocr, ocr)
        if advance:
            advance()

    if workers == 1:
        for path in paths:
            read(path)
        return 1
    previous = os.environ.get("OMP_THREAD_LIMIT")
    os.environ["OMP_THREAD_LIMIT"] = "1"  # inherited by the tesseract processes pytesseract starts
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(read, paths):
                pass
    finally:
        if previous is None:
            os.environ.pop("OMP_THREAD_LIMIT", None)
        else:
            os.environ["OMP_THREAD_LIMIT"] = previous
    return workers


def check_document_settings(data: Any) -> None:
    """Unknown fields in data.documents and a pattern that does not compile are config errors (exit 2)."""
    docs = data.documents
    fields = set(docs.sections)
    if docs.pattern:
        try:
            fields |= set(re.compile(docs.pattern).groupindex)
        except re.error as exc:
            raise UsageError(f"data.documents.pattern: not a valid regular expression ({exc})") from None
        if not re.compile(docs.pattern).groupindex:
            raise UsageError("data.documents.pattern: has no named group, e.g. (?P<finding>...)")
    if docs.text_field:
        fields.add(docs.text_field)
    unknown = sorted(fields - MAPPABLE)
    if unknown:
        raise UsageError(
            f"data.documents: unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(MAPPABLE))})")


def split_sections(text: str, task: str, documents: Any, preamble_field: str | None = None) -> dict[str, str]:
    """field -> text of its section (see the module docstring). With `preamble_field`, when no heading of that
    field was found but others were, the text before the first heading becomes it: a Russian protocol is often
    the description without an "Описание:" heading, followed by "Заключение: ..."."""
    if documents.pattern:
        match = re.search(documents.pattern, text)
        if match:
            return {k: v.strip() for k, v in match.groupdict().items() if v and v.strip()}
        return {}
    sections = documents.sections or DEFAULT_SECTIONS[task]
    headings = sorted(((h, f) for f, names in sections.items() for h in names), key=lambda x: -len(x[0]))
    by_heading = {h.casefold(): f for h, f in headings}
    alternatives = "|".join(re.escape(h) for h, _ in headings)
    # A heading is at the start of a line, followed by ":" (or a dash), or standing alone on its line.
    heading_re = re.compile(rf"^[ \t]*({alternatives})[ \t]*(?:[:\-–—][ \t]*|$)", re.IGNORECASE | re.MULTILINE)
    found: dict[str, list[str]] = {}
    marks = list(heading_re.finditer(text))
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        body = text[mark.end():end].strip()
        field = by_heading[mark.group(1).casefold()]
        if body:
            found.setdefault(field, []).append(body)
    out = {f: "\n".join(parts) for f, parts in found.items()}
    if preamble_field and out and preamble_field not in out and text[:marks[0].start()].strip():
        out[preamble_field] = text[:marks[0].start()].strip()
    return out


def _ocr_for(settings: Any) -> Ocr:
    key = (settings.languages, settings.tesseract_cmd, settings.min_confidence, settings.dpi)
    if key not in _OCR_CACHE:
        _OCR_CACHE[key] = Ocr(settings)
    return _OCR_CACHE[key]


def reject_of(doc: Document) -> tuple[str, str] | None:
    """(reason, detail) when the file must not become a row, else None."""
    if doc.error:
        return "unreadable_file", doc.error
    low = [p for p in doc.rejected_pages if "confidence" in (p.rejected or "")]
    other = [p for p in doc.rejected_pages if p not in low]
    if low or other:
        pages = low or other
        detail = "; ".join(f"page {p.number}: {p.rejected}" for p in pages[:5])
        if len(pages) > 5:
            detail += f"; {len(pages) - 5} more pages"
        return ("low_ocr_confidence" if low else "ocr_failed"), detail
    return None


def read_document_rows(path: Path, data: Any) -> tuple[pl.DataFrame, dict[str, Any]]:
    """One row for one PDF/image: the mapped field columns, `_row` = 1, `_doc_reject`, `_doc_detail`; plus what
    the manifest records about the file (format, OCR use and confidence, the sections found)."""
    doc = _PREFETCHED.pop(_key(path), None) or read_document(path, data.ocr, _ocr_for(data.ocr))
    task = data.task
    aliases = TASK_FIELDS[task]  # finding -> input, ...
    # canonical names also accepted as keys ("input"/"target"): written under the alias the mapping reads
    canonical = {v: k for k, v in aliases.items()}
    text_field = canonical.get(data.documents.text_field or "", data.documents.text_field) or next(iter(aliases))
    values = split_sections(doc.text, task, data.documents, text_field) if doc.text else {}
    values = {canonical.get(f, f): v for f, v in values.items()}
    how = "sections" if values else "whole text"
    if not values and doc.text.strip():
        values = {text_field: doc.text.strip()}
    reject = reject_of(doc)
    columns: dict[str, str | None] = {}
    for field in (*aliases, *sorted(set(values) - set(aliases))):
        name = data.columns.get(field) or data.columns.get(aliases.get(field, "")) or field
        columns[name] = None if reject else values.get(field)
    frame = pl.DataFrame({**{k: [v] for k, v in columns.items()}, "_row": [1],
                          "_doc_reject": [reject[0] if reject else None],
                          "_doc_detail": [reject[1] if reject else None]},
                         schema={**{k: pl.String for k in columns}, "_row": pl.Int64, "_doc_reject": pl.String,
                                 "_doc_detail": pl.String})
    info = {
        "format": "pdf" if path.suffix.lower() == ".pdf" else "image",
        "ocr": {**doc.manifest(), "fields": how if not reject else None},
    }
    return frame, info
