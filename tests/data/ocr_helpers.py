"""Scanned reports for the OCR tests: known English/Russian text rendered to PNG/TIFF or to a PDF without a text
layer (Pillow), and whether Tesseract with the eng+rus packs is installed (`.ci/run` installs it)."""

from __future__ import annotations

import glob
import shutil
import subprocess
from pathlib import Path

import pytest

FONT_CANDIDATES = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    *sorted(glob.glob("/usr/share/fonts/**/DejaVuSans.ttf", recursive=True)),
]


def font_path() -> str | None:
    return next((p for p in FONT_CANDIDATES if Path(p).is_file()), None)


def tesseract_languages() -> set[str]:
    if shutil.which("tesseract") is None:
        return set()
    try:
        out = subprocess.run(["tesseract", "--list-langs"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    return {line.strip() for line in out.splitlines()[1:] if line.strip()}


needs_tesseract = pytest.mark.skipif(
    not {"eng", "rus"} <= tesseract_languages() or font_path() is None,
    reason="needs tesseract-ocr + tesseract-ocr-rus and fonts-dejavu-core (installed by .ci/run)",
)


def render(text: str, size: int = 34, width: int = 1700):
    """Black text on white, DejaVu Sans (has Cyrillic), ~200 dpi for an A4-width line of text."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(font_path(), size)
    lines = text.split("\n")
    image = Image.new("L", (width, 80 + int(size * 1.7) * len(lines)), 255)
    ImageDraw.Draw(image).multiline_text((50, 40), text, font=font, fill=0, spacing=int(size * 0.7))
    return image


def write_scan(path: Path, text: str, **save: object) -> Path:
    """PNG/JPG/TIFF by suffix; .pdf = an image-only PDF (no text layer), as a scanner writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = render(text)
    if path.suffix.lower() == ".pdf":
        image.save(path, resolution=200.0, **save)
    else:
        image.save(path, **save)
    return path


def write_text_pdf(path: Path, lines: list[str]) -> Path:
    """A born-digital one-page PDF with a text layer (the index tests' hand-written PDF)."""
    from index.index_helpers import write_minimal_pdf  # tests/ is on sys.path (tests/conftest.py)

    path.parent.mkdir(parents=True, exist_ok=True)
    return write_minimal_pdf(path, lines)


def join_pdfs(path: Path, parts: list[Path], password: str | None = None) -> Path:
    """Pages of `parts` in order into one PDF (optionally encrypted with a user password)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for part in parts:
        for page in PdfReader(str(part)).pages:
            writer.add_page(page)
    if password:
        writer.encrypt(password, algorithm="RC4-128")
    with path.open("wb") as handle:
        writer.write(handle)
    return path
