"""The image column of `data` inputs: each row's image is checked, stored under a content hash and referenced.

    from medscribe.data.images import attach_images
    frame, rejects = attach_images(frame, source, out_dir, settings.data)   # after clean.to_canonical

`image` (data.columns.image, or a column named "image") holds a path: absolute, or relative to the folder of
the input file it is in. Each path is checked: it must exist, decode fully with Pillow (a truncated or corrupt
file is caught by `Image.load()`, not just by reading its header) and stay under Pillow's decompression-bomb
limit. A row whose image fails is rejected (`image_not_found`, `image_unreadable`, `image_corrupt`,
`image_too_large`) with a detail naming the image (PHI-scrubbed) and the row; never a crash.

PHI: image file names are often the patient's name or the study date (`Ivanov_2024-03-01.png`), so no raw name
reaches the dataset. Each image is re-encoded as PNG WITHOUT its metadata (EXIF, PNG text chunks: camera owner,
dates, GPS) into `<paths.data>/images/<digest>.png`, where digest = sha256 of the decoded pixels (mode, size,
bytes), and the record's `image` is that path relative to the data folder (`images/3f2a....png`). The same
picture saved under two names or formats is therefore one image, which is what dedup and splits compare
(data/dedup.py, data/splits.py). What this cannot remove: text burned into the pixels (names in a DICOM overlay
or on a photographed request form); docs/data.md says so.

Resume: the store is content-addressed and each file is written atomically, so a killed run leaves only whole
images and a rerun writes none twice; images no record refers to any more are removed by `prune_images`.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl

from medscribe.io import atomic_path

IMAGE_DIR = "images"
STORED_AS = "images/<sha256 of the decoded pixels>.png, re-encoded without metadata"
REASONS = ("image_not_found", "image_unreadable", "image_corrupt", "image_too_large")


class ImageProblem(Exception):
    """An image that cannot be used: `reason` (one of REASONS) and a one-line `detail` without the path."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def open_image(path: Path) -> Any:
    """The fully decoded image (RGB or L kept, anything else -> RGB); ImageProblem when it cannot be used."""
    from PIL import Image, UnidentifiedImageError

    try:
        if not path.is_file():
            raise ImageProblem("image_not_found", "file not found")
    except (OSError, ValueError):  # a NUL byte or an over-long name in the path
        raise ImageProblem("image_not_found", "not a valid path") from None
    try:
        with Image.open(path) as img:
            img.load()  # decodes every byte: a truncated PNG/JPEG fails here, not later in training
            image = img.convert("RGB") if img.mode not in ("RGB", "L") else img.copy()
    except Image.DecompressionBombError:
        raise ImageProblem("image_too_large", f"more than {2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels "
                                              "(Pillow's decompression-bomb limit)") from None
    except UnidentifiedImageError:
        raise ImageProblem("image_unreadable", "not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated data, broken chunks / CRCs
        raise ImageProblem("image_corrupt", f"corrupt image data ({type(exc).__name__})") from None
    if image.width == 0 or image.height == 0:
        raise ImageProblem("image_corrupt", "image has no pixels")
    return image


def pixel_digest(image: Any) -> str:
    """sha256 of what the image shows (mode, size, pixels): independent of file name, format and metadata."""
    digest = hashlib.sha256(f"{image.mode}:{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()[:32]


def store_image(image: Any, out_dir: Path) -> str:
    """Write the image as `images/<digest>.png` (no metadata) under out_dir once; return that relative path."""
    name = f"{IMAGE_DIR}/{pixel_digest(image)}.png"
    target = out_dir / name
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            image.save(tmp, format="PNG")  # a fresh PNG: no EXIF, no text chunks from the original
    return name


def resolve(value: str, base: Path) -> Path:
    path = Path(value.strip()).expanduser()
    return path if path.is_absolute() else base / path


def _one(value: str, base: Path, out_dir: Path) -> tuple[str | None, str | None, str | None]:
    """(stored reference, reject reason, reject detail) for one image cell."""
    try:
        image = open_image(resolve(value, base))
        return store_image(image, out_dir), None, None
    except ImageProblem as problem:
        return None, problem.reason, problem.detail


def attach_images(frame: pl.DataFrame, source: Any, out_dir: Path,
                  data: Any) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """Check and store every row's image; return (rows kept, with `image` = stored reference, rejects or None).

    Rejects have file/row/reason/detail; the detail names the image by its path as written in the input,
    PHI-scrubbed like input file names, and the row (`image 'scans/[NAME].png' (row 3): file not found`)."""
    if "image" not in frame.columns:
        return frame, None
    values = frame.get_column("image").to_list()
    rows = [i for i, v in enumerate(values) if v is not None and str(v).strip()]
    if not rows:
        return frame.with_columns(pl.lit(None, dtype=pl.String).alias("image")), None
    base = source.path.parent
    workers = max(1, min(8, data.workers or (os.cpu_count() or 1)))
    with ThreadPoolExecutor(max_workers=workers) as pool:  # Pillow decodes and encodes without the GIL
        found = list(pool.map(lambda i: _one(str(values[i]), base, out_dir), rows))
    stored: list[str | None] = [None] * len(values)
    reasons: list[str | None] = [None] * len(values)
    details: list[str | None] = [None] * len(values)
    bad = [i for i, (_, reason, _) in zip(rows, found, strict=True) if reason is not None]
    shown = _labels([str(values[i]) for i in bad], data.phi)
    row_numbers = frame.get_column("_row").to_list()
    labels = dict(zip(bad, shown, strict=True))
    for i, (ref, reason, detail) in zip(rows, found, strict=True):
        stored[i], reasons[i] = ref, reason
        if reason is not None:
            details[i] = f"image {labels[i]!r} (row {row_numbers[i]}): {detail}"
    frame = frame.with_columns(pl.Series("image", stored, dtype=pl.String),
                               pl.Series("_image_reason", reasons, dtype=pl.String),
                               pl.Series("_image_detail", details, dtype=pl.String))
    rejected = frame.filter(pl.col("_image_reason").is_not_null()).select(
        "_file", pl.col("_row").cast(pl.Int64), pl.col("_image_reason").alias("reason"),
        pl.col("_image_detail").alias("detail"))
    kept = frame.filter(pl.col("_image_reason").is_null()).drop("_image_reason", "_image_detail")
    return kept, rejected if rejected.height else None


def _labels(paths: list[str], phi: Any) -> list[str]:
    """Image paths as a reject may show them: PHI in folder and file names replaced (phi/paths.py)."""
    if not paths:
        return []
    if not phi.enabled:
        return paths
    from medscribe.data.anonymize import load_scrubber

    return load_scrubber(phi).scrub_paths([Path(p).as_posix() for p in paths])


def prune_images(out_dir: Path, referenced: set[str]) -> int:
    """Remove stored images that no record refers to (rows rejected later, earlier runs); returns how many."""
    folder = out_dir / IMAGE_DIR
    if not folder.is_dir():
        return 0
    removed = 0
    for path in folder.iterdir():
        if path.is_file() and f"{IMAGE_DIR}/{path.name}" not in referenced:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
