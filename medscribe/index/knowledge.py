"""Knowledge documents -> text chunks for the index (TXT, MD, HTML, PDF, DOCX via python-docx, PNG/JPG/TIFF).

PDF pages are read from their text layer; scanned pages and images are OCR'd (medscribe/documents.py, the
`data.ocr` settings): `load_document_chunks` also returns what the manifest records (OCR used, mean
confidence, rejected pages: their text is left out of the index).

    from medscribe.index.knowledge import expand_sources, load_chunks
    files = expand_sources(["guidelines/", "notes/*.md", "atlas.pdf"])
    chunks = load_chunks(files[0], chunk_size=800, chunk_overlap=100)

Each chunk keeps its document id, its number and its character span in the document text, so a hit can be
expanded with its neighbours (N-1, N+1) and the overlap between them removed when they are joined.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from medscribe.documents import IMAGE_SUFFIXES, OCR_SUFFIXES, read_document
from medscribe.errors import UsageError
from medscribe.io import sha256_file, sha256_text

SUFFIXES = {".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx"} | IMAGE_SUFFIXES
TEXT_ENCODINGS = ("utf-8-sig", "cp1251")  # Russian hospital files are often Windows-1251


@dataclass
class Chunk:
    record_id: str  # "<doc_id>#<n>": what a Hit reports as its id
    doc_id: str
    number: int
    text: str
    start: int  # character span in the document's extracted text
    end: int
    source: str  # file name (no directories: paths can name patients' folders)


def expand_sources(sources: list[str]) -> list[Path]:
    """Files, folders (recursive) and globs -> sorted supported files. A source matching nothing is an error."""
    files: dict[Path, None] = {}
    for source in sources:
        path = Path(source).expanduser()
        if path.is_dir():
            found = [p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in SUFFIXES]
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise UsageError(f"{path}: unsupported knowledge file type (use {', '.join(sorted(SUFFIXES))})")
            found = [path]
        else:
            found = [
                Path(p) for p in sorted(glob.glob(str(path), recursive=True)) if Path(p).suffix.lower() in SUFFIXES
            ]
        if not found:
            raise UsageError(f"index.knowledge: '{source}' matches no TXT/MD/HTML/PDF/DOCX/image file")
        for p in found:
            files[p.resolve()] = None
    return list(files)


def document_id(path: Path) -> str:
    """Stable per file location: the name (readable) plus a short hash of the full path (unique)."""
    return f"{path.stem}-{sha256_text(str(path.resolve()))[:8]}"


def extract_text(path: Path, ocr: Any = None) -> str:
    return extract_document(path, ocr)[0]


def extract_document(path: Path, ocr: Any = None) -> tuple[str, dict | None]:
    """(text, OCR manifest entry or None). `ocr` = the `data.ocr` settings (None: their defaults). A file that
    cannot be read at all is a UsageError naming it (the index is built from every listed document or none)."""
    suffix = path.suffix.lower()
    if suffix in OCR_SUFFIXES:
        if ocr is None:
            from medscribe.settings import OcrSection

            ocr = OcrSection()
        doc = read_document(path, ocr)
        if doc.error:
            raise UsageError(f"{path}: {doc.error}")
        return doc.text, doc.manifest()
    return _extract_text(path), None


def _extract_text(path: Path) -> str:
    suffix = path.suffix.lower()
    try:
        if suffix == ".docx":
            return _docx_text(path)
        raw = _read_text(path)
    except UsageError:
        raise
    except Exception as exc:  # a corrupt PDF/DOCX: name the file, not its content
        raise UsageError(f"{path}: cannot read {suffix[1:].upper()} ({type(exc).__name__}: {exc})") from None
    if suffix in {".html", ".htm"}:
        return _html_text(raw)
    return raw


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    for encoding in TEXT_ENCODINGS:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise UsageError(f"{path}: not UTF-8 or cp1251 text")


def _docx_text(path: Path) -> str:
    import docx

    document = docx.Document(str(path))
    parts = [p.text for p in document.paragraphs]
    for table in document.tables:  # tables hold much of a clinical guideline's content
        for row in table.rows:
            parts.append(" | ".join(cell.text.strip() for cell in row.cells))
    return "\n\n".join(parts)


class _TextOnly(HTMLParser):
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "table"}
    SKIP = {"script", "style", "head", "noscript"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self._skip += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP and self._skip:
            self._skip -= 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def _html_text(raw: str) -> str:
    parser = _TextOnly()
    parser.feed(raw)
    parser.close()
    return "".join(parser.parts)


def normalize_text(text: str) -> str:
    """Collapse runs of spaces and blank lines (PDF/HTML extraction leaves many) but keep paragraphs."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    text = re.sub(r"[ \t\f\v]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def split_spans(text: str, chunk_size: int, chunk_overlap: int) -> list[tuple[int, int]]:
    """Character spans of at most `chunk_size`, each starting `chunk_overlap` before the previous end.

    A chunk ends at the last paragraph, sentence or word break in its second half when there is one, so
    chunks rarely cut a word; the overlap keeps a sentence cut at a boundary visible in both chunks.
    """
    if chunk_overlap >= chunk_size:
        raise UsageError(f"index.chunk_overlap ({chunk_overlap}) must be smaller than index.chunk_size ({chunk_size})")
    spans: list[tuple[int, int]] = []
    start, n = 0, len(text)
    while start < n:
        end = min(start + chunk_size, n)
        if end < n:
            window = text[start:end]
            for sep in ("\n\n", "\n", ". ", "! ", "? ", "; ", " "):
                cut = window.rfind(sep)
                if cut >= chunk_size // 2:
                    end = start + cut + len(sep)
                    break
        spans.append((start, end))
        if end >= n:
            break
        next_start = max(end - chunk_overlap, start + 1)
        # Start the overlap at a word boundary (never in the middle of a word).
        space = text.find(" ", next_start, end)
        start = space + 1 if 0 <= space < end - 1 else next_start
    return spans


def load_chunks(path: Path, chunk_size: int, chunk_overlap: int) -> tuple[list[Chunk], str]:
    """(chunks, sha256 of the file). An empty document gives no chunks (reported by the caller)."""
    chunks, digest, _ = load_document_chunks(path, chunk_size, chunk_overlap)
    return chunks, digest


def load_document_chunks(
    path: Path, chunk_size: int, chunk_overlap: int, ocr: Any = None
) -> tuple[list[Chunk], str, dict | None]:
    """(chunks, sha256 of the file, OCR manifest entry for PDFs/images or None)."""
    raw, ocr_info = extract_document(path, ocr)
    text = normalize_text(raw)
    doc_id = document_id(path)
    chunks: list[Chunk] = []
    for start, end in split_spans(text, chunk_size, chunk_overlap):
        raw = text[start:end]
        body = raw.strip()
        if not body:
            continue
        # Exact span of the stripped text, so neighbours can be joined without repeating their overlap.
        start += len(raw) - len(raw.lstrip())
        end = start + len(body)
        n = len(chunks)
        chunks.append(Chunk(f"{doc_id}#{n}", doc_id, n, body, start, end, path.name))
    return chunks, sha256_file(path), ocr_info


def join_spans(pieces: list[tuple[int, int, str]]) -> str:
    """Join neighbouring chunks (start, end, text) in document order without repeating their overlap."""
    pieces = sorted(pieces)
    out, covered = "", None
    for start, end, text in pieces:
        if covered is None or start >= covered:
            out = f"{out} {text}" if out else text
        else:
            out += text[covered - start :]  # drop the part the previous chunk already showed
        covered = end if covered is None else max(covered, end)
    return out.strip()
