"""What goes into the index: corpus rows (cases) and knowledge chunks as `Entry` objects, with content-hash ids.

    from medscribe.index.entries import read_corpus, read_knowledge
    entries, rejects = read_corpus(Path("artifacts/data/corpus.jsonl"))   # rejects: {file, line, id, reason}
    chunks, documents = read_knowledge(["guidelines/"], chunk_size=800, chunk_overlap=100)

An entry's Chroma id hashes (kind, record id, embedded text), so an unchanged row keeps its id and is never
embedded again; `payload_hash` (in the metadata) tells a changed answer/metadata apart without embedding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medscribe.errors import UsageError
from medscribe.index.knowledge import expand_sources, load_document_chunks
from medscribe.io import sha256_text

CASE_FIELDS = ("answer", "task", "specialty", "organ", "modality", "source", "split")
RETRIEVABLE_SPLITS = {None, "train"}


@dataclass
class Entry:
    chroma_id: str
    record_id: str
    group: str  # replacement scope: a case's record id, a knowledge chunk's document
    kind: str  # "case" | "knowledge"
    text: str
    metadata: dict[str, Any]


def entry_id(kind: str, record_id: str, text: str) -> str:
    return sha256_text(f"{kind}\x00{record_id}\x00{text}")[:32]


def scalar_metadata(values: dict[str, Any]) -> dict[str, Any]:
    """Chroma metadata must be scalar: drop None, JSON-encode lists/dicts."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, (str, int, float, bool)):
            out[key] = value
        else:
            out[key] = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return out


def with_payload_hash(meta: dict[str, Any]) -> dict[str, Any]:
    meta["payload_hash"] = sha256_text(json.dumps(meta, ensure_ascii=False, sort_keys=True))[:16]
    return meta


def read_corpus(path: Path) -> tuple[list[Entry], list[dict[str, Any]]]:
    """Corpus rows -> entries, plus rejects ({line, id, reason}: never the row's text)."""
    if not path.is_file():
        raise UsageError(f"{path}: corpus not found (run `medscribe data` first, or pass --corpus)")
    entries: list[Entry] = []
    rejects: list[dict[str, Any]] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise UsageError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            reason = _reject_reason(row, seen)
            if reason:
                rejects.append({"file": str(path), "line": lineno, "id": _safe_id(row), "reason": reason})
                continue
            record_id, text = str(row["id"]), row["text"]
            seen.add(record_id)
            extra = {k: v for k, v in row.items() if k not in {"id", "text", *CASE_FIELDS}}
            meta = scalar_metadata(
                {"kind": "case", "record_id": record_id, **{k: row.get(k) for k in CASE_FIELDS}, **extra}
            )
            entries.append(
                Entry(entry_id("case", record_id, text), record_id, record_id, "case", text, with_payload_hash(meta))
            )
    return entries, rejects


def _safe_id(row: dict[str, Any]) -> str | None:
    value = row.get("id")
    return str(value) if isinstance(value, (str, int)) else None


def _reject_reason(row: dict[str, Any], seen: set[str]) -> str | None:
    if not isinstance(row.get("id"), (str, int)) or str(row.get("id")).strip() == "":
        return "id: missing"
    if not isinstance(row.get("text"), str) or not row["text"].strip():
        return "text: missing or empty"
    if row.get("split") not in RETRIEVABLE_SPLITS:
        return f"split: '{row.get('split')}' records must never be retrievable (only train)"
    if str(row["id"]) in seen:
        return "id: duplicate (first occurrence kept)"
    return None


def read_knowledge(
    sources: list[str], chunk_size: int, chunk_overlap: int, ocr: Any = None
) -> tuple[list[Entry], list[dict]]:
    """Entries of every knowledge chunk + one manifest entry per document (`ocr` for PDFs/images: whether OCR
    was used, mean confidence, rejected pages). `ocr` = the `data.ocr` settings."""
    entries: list[Entry] = []
    documents: list[dict[str, Any]] = []
    for path in expand_sources(sources):
        chunks, digest, ocr_info = load_document_chunks(path, chunk_size, chunk_overlap, ocr)
        documents.append({"file": path.name, "sha256": digest, "chunks": len(chunks),
                          **({"ocr": ocr_info} if ocr_info is not None else {})})
        for c in chunks:
            meta = scalar_metadata(
                {
                    "kind": "knowledge",
                    "record_id": c.record_id,
                    "doc_id": c.doc_id,
                    "chunk": c.number,
                    "n_chunks": len(chunks),
                    "start": c.start,
                    "end": c.end,
                    "source": c.source,
                }
            )
            entries.append(
                Entry(
                    entry_id("knowledge", c.record_id, c.text),
                    c.record_id,
                    c.doc_id,
                    "knowledge",
                    c.text,
                    with_payload_hash(meta),
                )
            )
    return entries, documents
