"""Text of scanned and born-digital documents (PDF, PNG/JPG/TIFF): text first, OCR where there is no text.

    from medscribe.documents import read_document, OCR_SUFFIXES
    doc = read_document(Path("scan.pdf"), settings.data.ocr)
    doc.text, doc.ocr_used, doc.mean_confidence, doc.rejected_pages, doc.error

One place for both stages that read documents: `data` (a folder of scanned reports -> rows, data/scans.py)
and `index` (knowledge documents, index/knowledge.py).

- PDF: every page's text layer is read with pypdf (what `index` always used). A page whose text layer has
  fewer than `MIN_TEXT_CHARS` letters/digits is a scan: it is rendered with pypdfium2 at `ocr.dpi` and OCR'd.
- PNG/JPG/TIFF (every frame of a multi-page TIFF): OCR'd.
- OCR is Tesseract (Debian packages `tesseract-ocr`, `tesseract-ocr-rus`) through pytesseract, one
  `image_to_data` call per page: it gives the words with their layout (lines, paragraphs) AND each word's
  confidence, so text and confidence come from the same recognition. A page's confidence is the mean over its
  recognised words (Tesseract's -1 for layout boxes is left out); a page below `ocr.min_confidence` is rejected
  with a reason (its text is not used), as is a page on which Tesseract finds no word at all.
- Problems with one file (corrupt image, encrypted or broken PDF) are returned as `doc.error` (a short reason
  without the file's content): the caller decides whether that is a reject (data) or an error (index).
  Tesseract missing, or a language pack missing, is a `UsageError` saying how to install it: never a skip.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medscribe.errors import UsageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}
OCR_SUFFIXES = IMAGE_SUFFIXES | {".pdf"}
# A text layer with fewer letters/digits than this is treated as no text layer: scanners stamp a page number
# or a date on image-only pages, which must not hide the scan from OCR.
MIN_TEXT_CHARS = 16
# Rendering a huge page (a PDF made from a photo at 72 "dpi" is 40 inches wide) at ocr.dpi would give a
# 10k-pixel bitmap: the long side is capped, which is still > 300 dpi for an A4 page.
MAX_RENDER_SIDE = 5000
# A page the first pass is unsure of is checked for a 90/180/270 degree turn (a phone photo, a sheet fed
# sideways) when Tesseract's orientation confidence is at least this; the turned page is kept when it reads better.
OSD_MIN_CONF = 2.0
PAGE_TIMEOUT_S = 300  # Tesseract on one page; a stuck page is a reject, not a hung run
INSTALL_HINT = "apt-get install tesseract-ocr tesseract-ocr-rus (Debian/Ubuntu), or set data.ocr.tesseract_cmd"
LANG_PACKAGES = {"rus": "tesseract-ocr-rus", "eng": "tesseract-ocr-eng"}
_WORDY = re.compile(r"\w", re.UNICODE)


@dataclass
class Page:
    number: int  # 1-based
    method: str  # "text" (text layer) | "ocr"
    chars: int
    confidence: float | None = None  # mean word confidence 0-100, OCR pages only
    rejected: str | None = None  # why the page's text is not used
    rotated: int = 0  # degrees (clockwise) the page was turned after Tesseract's orientation detection


@dataclass
class Document:
    path: Path
    text: str = ""
    pages: list[Page] = field(default_factory=list)
    error: str | None = None  # the whole file could not be read (reason, no content)

    @property
    def ocr_used(self) -> bool:
        return any(p.method == "ocr" for p in self.pages)

    @property
    def mean_confidence(self) -> float | None:
        """Mean of the OCR pages' confidences (rejected pages included: it describes the scan)."""
        values = [p.confidence for p in self.pages if p.confidence is not None]
        return round(sum(values) / len(values), 1) if values else None

    @property
    def rejected_pages(self) -> list[Page]:
        return [p for p in self.pages if p.rejected]

    def manifest(self) -> dict[str, Any]:
        """What a manifest records per file: whether OCR was used, its mean confidence, rejected pages."""
        return {
            "ocr_used": self.ocr_used,
            "mean_confidence": self.mean_confidence,
            "pages": len(self.pages),
            "ocr_pages": sum(p.method == "ocr" for p in self.pages),
            "rejected_pages": [{"page": p.number, "reason": p.rejected} for p in self.rejected_pages],
            "rotated_pages": [{"page": p.number, "degrees": p.rotated} for p in self.pages if p.rotated],
            **({"error": self.error} if self.error else {}),
        }


def is_document(path: Path) -> bool:
    return path.suffix.lower() in OCR_SUFFIXES


class Ocr:
    """Tesseract through pytesseract, checked once (binary + language packs) on the first page that needs it."""

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self._checked = False

    def check(self) -> None:
        if self._checked:
            return
        try:
            import pytesseract
        except ImportError:
            raise UsageError("OCR needs the Python package pytesseract: pip install pytesseract") from None
        command = getattr(self.settings, "tesseract_cmd", None) or "tesseract"
        if shutil.which(command) is None:
            raise UsageError(f"OCR needs Tesseract, and '{command}' is not installed or not on PATH: {INSTALL_HINT}")
        pytesseract.pytesseract.tesseract_cmd = command
        try:
            have = set(pytesseract.get_languages(config=""))
        except Exception as exc:  # a broken install: say what failed, not a traceback
            raise UsageError(f"Tesseract ('{command}') does not run ({type(exc).__name__}): {INSTALL_HINT}") from None
        missing = [lang for lang in self.languages if lang not in have]
        if missing:
            packages = " ".join(LANG_PACKAGES.get(lang, f"tesseract-ocr-{lang}") for lang in missing)
            raise UsageError(
                f"Tesseract has no language data for {', '.join(missing)} (data.ocr.languages = "
                f"'{self.settings.languages}'; installed: {', '.join(sorted(have)) or 'none'}): "
                f"apt-get install {packages}"
            )
        self._checked = True

    @property
    def languages(self) -> list[str]:
        return [lang for lang in str(self.settings.languages).split("+") if lang]

    def orientation(self, image: Any) -> int:
        """Degrees to turn the page clockwise (0, 90, 180, 270) by Tesseract's orientation detection (OSD);
        0 when it is unsure or cannot tell (too little text, no `osd` language data)."""
        import pytesseract

        try:
            osd = pytesseract.image_to_osd(image, output_type=pytesseract.Output.DICT, timeout=PAGE_TIMEOUT_S)
        except Exception:  # TesseractError "Too few characters", missing osd.traineddata, timeout
            return 0
        rotate = int(osd.get("rotate", 0) or 0)
        return rotate if rotate in (90, 180, 270) and float(osd.get("orientation_conf", 0)) >= OSD_MIN_CONF else 0

    def page(self, image: Any) -> tuple[str, float | None]:
        """(text with line and paragraph breaks, mean word confidence or None when no word was found)."""
        import pytesseract

        self.check()
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            # transparent pixels are usually black underneath: flatten onto white paper first
            from PIL import Image

            rgba = image.convert("RGBA")
            paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(paper, rgba)
        image = image.convert("L") if image.mode not in ("L", "RGB") else image
        data = pytesseract.image_to_data(
            image, lang=self.settings.languages, output_type=pytesseract.Output.DICT, timeout=PAGE_TIMEOUT_S,
        )
        lines: dict[tuple[int, int, int], list[str]] = {}
        confidences: list[float] = []
        for word, conf, block, par, line in zip(
            data["text"], data["conf"], data["block_num"], data["par_num"], data["line_num"], strict=True
        ):
            word = str(word).strip()
            if not word or float(conf) < 0:
                continue
            confidences.append(float(conf))
            lines.setdefault((block, par, line), []).append(word)
        out, previous = [], None
        for key in sorted(lines):
            if previous is not None:
                out.append("\n\n" if key[:2] != previous[:2] else "\n")
            out.append(" ".join(lines[key]))
            previous = key
        mean = round(sum(confidences) / len(confidences), 1) if confidences else None
        return "".join(out), mean


def read_document(path: Path, settings: Any, ocr: Ocr | None = None) -> Document:
    """Text of one PDF or image (see the module docstring). `settings` is `data.ocr` (OcrSection)."""
    ocr = ocr or Ocr(settings)
    doc = Document(path)
    texts: list[str] = []
    try:
        if path.suffix.lower() == ".pdf":
            _read_pdf(path, settings, ocr, doc, texts)
        else:
            _read_image(path, settings, ocr, doc, texts)
    except UsageError:
        raise
    except _Unreadable as exc:
        doc.error = str(exc)
    doc.text = "\n\n".join(t for t in texts if t.strip())
    return doc


class _Unreadable(Exception):
    """The file as a whole cannot be read (message: the reason, never content)."""


def _ocr_page(number: int, image: Any, settings: Any, ocr: Ocr, doc: Document, texts: list[str]) -> None:
    try:
        text, confidence = ocr.page(image)
    except UsageError:
        raise
    except RuntimeError as exc:  # pytesseract raises RuntimeError on its timeout
        doc.pages.append(Page(number, "ocr", 0, None, f"OCR failed ({str(exc)[:80]})"))
        return
    except Exception as exc:  # TesseractError: the engine failed on this bitmap
        doc.pages.append(Page(number, "ocr", 0, None, f"OCR failed ({type(exc).__name__})"))
        return
    rotated = 0
    if confidence is None or confidence < settings.min_confidence or not _WORDY.search(text):
        turn = _safe(ocr.orientation, image) or 0
        if turn:
            better = _safe(ocr.page, image.rotate(-turn, expand=True))  # PIL turns counterclockwise
            if better and better[1] is not None and better[1] > (confidence or 0):
                (text, confidence), rotated = better, turn
    page = Page(number, "ocr", len(text), confidence, rotated=rotated)
    if confidence is None or not _WORDY.search(text):
        page.rejected = "no text recognised"
    elif confidence < settings.min_confidence:
        page.rejected = (f"OCR mean confidence {confidence:.1f} < data.ocr.min_confidence "
                         f"{settings.min_confidence:g}")
    else:
        texts.append(text)
    doc.pages.append(page)


def _safe(function: Any, *args: Any) -> Any:
    """The second look at an unsure page must not turn a reject into a crash."""
    try:
        return function(*args)
    except UsageError:
        raise
    except Exception:
        return None


def _read_image(path: Path, settings: Any, ocr: Ocr, doc: Document, texts: list[str]) -> None:
    """Every frame (a multi-page TIFF) is OCR'd as it is decoded: one page in memory at a time."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    number = 0
    try:
        with Image.open(path) as image:
            for frame in ImageSequence.Iterator(image):
                number += 1
                frame.load()
                _ocr_page(number, frame, settings, ocr, doc, texts)
    except UsageError:
        raise
    except Image.DecompressionBombError:
        raise _Unreadable("cannot read image (more pixels than Pillow's decompression-bomb limit)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        if number > 1:  # a truncated multi-page TIFF: the frames read so far count, the rest is a page reject
            doc.pages.append(Page(number, "ocr", 0, None, f"cannot decode this frame ({type(exc).__name__})"))
            return
        reason = "not an image Pillow can read" if isinstance(exc, UnidentifiedImageError) else type(exc).__name__
        raise _Unreadable(f"cannot read image ({reason})") from None


def _read_pdf(path: Path, settings: Any, ocr: Ocr, doc: Document, texts: list[str]) -> None:
    """Text layer per page (pypdf); a page without one that holds an image is rendered (pypdfium2) and OCR'd
    right away, so a long scanned PDF never holds more than one page bitmap."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(str(path))
        if reader.is_encrypted and not reader.decrypt(""):
            raise _Unreadable("password-protected PDF (decrypt it first: qpdf --decrypt --password=...)")
        layers = [(page.extract_text() or "") for page in reader.pages]
    except _Unreadable:
        raise
    except (PyPdfError, OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        reason = "password-protected PDF" if "decrypt" in str(exc).lower() else f"broken PDF: {type(exc).__name__}"
        raise _Unreadable(f"cannot read PDF ({reason})") from None
    if not layers:
        raise _Unreadable("cannot read PDF (no pages)")
    scans = {i for i, text in enumerate(layers) if len(_WORDY.findall(text)) < MIN_TEXT_CHARS}
    pdf = _open_pdfium(path) if scans else None
    try:
        for i, text in enumerate(layers):
            bitmap = _render_page(pdf, i, settings.dpi) if i in scans else None
            if bitmap is not None:
                _ocr_page(i + 1, bitmap, settings, ocr, doc, texts)
                del bitmap
            else:
                doc.pages.append(Page(i + 1, "text", len(text.strip())))
                texts.append(text.strip())
    finally:
        if pdf is not None:
            pdf.close()


def _open_pdfium(path: Path) -> Any:
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        raise _Unreadable(f"cannot render PDF ({str(exc)[:80]})") from None


def _render_page(pdf: Any, index: int, dpi: int) -> Any:
    """The page as a grayscale bitmap, or None when it holds no image: a blank or nearly empty page of a
    born-digital PDF needs no OCR (and no Tesseract)."""
    import pypdfium2.raw as pdfium_c

    page = pdf[index]
    try:
        if next(iter(page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=3)), None) is None:
            return None
        width, height = page.get_size()  # points (1/72 inch)
        scale = min(dpi / 72, MAX_RENDER_SIDE / max(width, height, 1))
        return page.render(scale=scale, grayscale=True).to_pil().copy()  # own memory: the bitmap is freed
    finally:
        page.close()
