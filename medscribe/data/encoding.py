"""Decoding raw export bytes: UTF-8 (BOM or not), else cp1251 only when the whole file is plausible text.

    from medscribe.data.encoding import decode_bytes, plausible_cp1251
    text, encoding = decode_bytes(path.read_bytes(), path, settings.data.encoding)

Why the check: Russian hospital exports are often cp1251, but bytes of any other encoding (UTF-16, a binary
dump, UTF-8 with one broken byte) also "decode" as cp1251, into garbage with NULs that the text cleaning then
hides. The fallback is taken only for a file that reads as Russian text (`plausible_cp1251`), and is recorded
per file in the manifest (`inputs[].encoding`, a note and a warning); otherwise a UsageError names file and line.
"""

from __future__ import annotations

import re
from pathlib import Path

from medscribe.errors import UsageError

CP1251_NOTE = "not valid UTF-8: decoded as cp1251 (the whole file checked as plausible cp1251 text)"
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# What a cp1251 text file holds besides ASCII: Cyrillic letters and the typographic signs of Russian text.
_CP1251_TEXT_RE = re.compile(r"[А-Яа-яЁё«»—–№…“”„‘’•°±§©®·µ\u00a0\u00ad]")
_CYRILLIC_WORD_RE = re.compile(r"[А-Яа-яЁё]{3,}")
# lowercase, Capitalized, CAPITALS, and the clinical abbreviations that mix them: ЭхоКГ, свТ4 (свТ)
_WORD_SHAPE_RE = re.compile(r"[А-ЯЁ]?[а-яё]+(?:[А-ЯЁ]{1,3})?|[А-ЯЁ]+")


def plausible_cp1251(text: str) -> tuple[int, str] | None:
    """None when `text` (a whole file decoded as cp1251) reads as real text; else (line, reason) of the first
    problem. Real cp1251 exports are Russian text: no control bytes, non-ASCII characters are Cyrillic letters
    or Russian typography, and Cyrillic words are lowercase, Capitalized or CAPITALS. Bytes of another
    encoding read as cp1251 give control bytes, symbols (Ђ ‰ Ћ) and mixed-case letter salad (`РџСЂРё`)."""
    control = _CONTROL_RE.search(text)
    if control:
        return text.count("\n", 0, control.start()) + 1, f"control byte 0x{ord(control.group()):02x}"
    non_ascii = [(i, ch) for i, ch in enumerate(text) if ord(ch) > 127]
    odd = [(i, ch) for i, ch in non_ascii if not _CP1251_TEXT_RE.match(ch)]
    if non_ascii and len(odd) > max(2, 0.02 * len(non_ascii)):
        return text.count("\n", 0, odd[0][0]) + 1, "characters that are not Russian text"
    words = list(_CYRILLIC_WORD_RE.finditer(text))
    mixed = [m for m in words if not _WORD_SHAPE_RE.fullmatch(m.group())]
    if words and len(mixed) > max(2, 0.05 * len(words)):
        return text.count("\n", 0, mixed[0].start()) + 1, "letters in no word shape (another encoding?)"
    return None


def decode_bytes(raw: bytes, path: Path, encoding: str | None) -> tuple[str, str]:
    """Decode a text file: the configured encoding, else UTF-8 (BOM or not), else cp1251 when the whole file
    is plausible cp1251 text (`plausible_cp1251`); otherwise a UsageError naming the file and line."""
    if encoding:
        try:
            return raw.decode(encoding).removeprefix("\ufeff"), encoding
        except (UnicodeDecodeError, LookupError) as exc:
            raise UsageError(_decode_error(raw, path, encoding, exc)) from None
    if raw.startswith(b"\xef\xbb\xbf"):
        try:
            return raw[3:].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError as exc:
            raise UsageError(_decode_error(raw, path, "utf-8-sig", exc)) from None
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        first_error = exc
    try:
        text = raw.decode("cp1251")
    except UnicodeDecodeError:
        raise UsageError(_decode_error(raw, path, "utf-8 or cp1251", first_error)) from None
    problem = plausible_cp1251(text)
    if problem is not None:
        utf8_line = raw[: first_error.start].count(b"\n") + 1
        raise UsageError(
            f"{path}:{utf8_line}: undecodable bytes (not utf-8, and as cp1251 line {problem[0]} has {problem[1]}; "
            f"set data.encoding)"
        )
    return text, "cp1251"


def _decode_error(raw: bytes, path: Path, encoding: str, exc: Exception) -> str:
    if isinstance(exc, LookupError):
        return f"{path}: unknown encoding {encoding!r} (data.encoding)"
    line = raw[: getattr(exc, "start", 0)].count(b"\n") + 1
    return f"{path}:{line}: undecodable bytes (not {encoding}; set data.encoding)"
