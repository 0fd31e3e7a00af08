"""Language-independent PHI patterns: contacts, numeric identifiers, numeric dates, ages over 89.

Each detector is `(type, trigger, finder)`: `trigger` is a cheap regex that polars runs over the whole column
(Rust regex engine, no look-arounds) to pick candidate rows; `finder(text)` yields `(start, end, type)` spans
and runs in Python only on those rows. `medscribe.phi.detect` combines these with the language rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from medscribe.phi.ids import digits_of, inn_valid, oms_valid, snils_valid

Span = tuple[int, int, str]

# Bounded repeats and a start-of-token lookbehind keep these linear on hostile input (a 50 kB run of letters
# before an "@" took 5 s with unbounded `[\w.+-]+@`).
EMAIL_RE = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}")
URL_RE = re.compile(
    r"(?:https?://|www\.)[^\s<>\"«»]{1,2000}"
    r"|(?<![\w.-])[\w-]{1,63}(?:\.[\w-]{1,63}){0,6}\.(?:ru|com|org|net|рф|su|info|edu|gov|io|med)\b"
    r"(?:/[^\s<>\"«»]{0,2000})?",
    re.IGNORECASE,
)
IP_RE = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]*\d)")

# Phones: Russian +7/8 with a 3-digit code, North American (xxx) xxx-xxxx, and international "+CC ...".
PHONE_RE = re.compile(
    r"(?<![\w+])(?:"
    r"(?:\+7|8)[\s-]?\(?\d{3,4}\)?[\s-]?\d{2,3}[\s-]?\d{2}[\s-]?\d{2}"
    r"|(?:\+1[\s.-]?)?\(\d{3}\)\s?\d{3}[\s.-]\d{4}"
    r"|(?:\+1[\s.-]?)?\d{3}[.-]\d{3}[.-]\d{4}"
    r"|\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}"
    r")(?![\w])"
)
# Extension-less local numbers only with a context word: "тел. 22-33-44", "ext 4521".
PHONE_CTX_RE = re.compile(
    r"(?:тел(?:ефон)?\.?|моб\.?|phone|tel\.?|ph\.?|cell|ext\.?|доб\.?)\s*[:№#]?\s*(\+?[\d()][\d()\s.-]{3,18}\d)",
    re.IGNORECASE,
)

SNILS_RE = re.compile(r"(?<![\d-])\d{3}-\d{3}-\d{3}[\s-]\d{2}(?![\d-])|(?<!\d)\d{11}(?!\d)")
SNILS_CTX_RE = re.compile(r"СНИЛС\w*\s*[:№]?\s*(\d[\d\s-]{9,15}\d)", re.IGNORECASE)
INN_RE = re.compile(r"(?<!\d)(?:\d{12}|\d{10})(?!\d)")
INN_CTX_RE = re.compile(r"\b(?:ИНН|INN)\s*[:№]?\s*(\d{10,12})", re.IGNORECASE)
OMS_RE = re.compile(r"(?<!\d)\d{4}[\s-]?\d{4}[\s-]?\d{4}[\s-]?\d{4}(?!\d)")
OMS_CTX_RE = re.compile(
    r"(?:полис\w*(?:\s+ОМС)?|ОМС|policy)\s*(?:№|N|no\.?|#)?\s*:?\s*(\d[\d\s-]{8,20}\d)", re.IGNORECASE
)
PASSPORT_RE = re.compile(
    r"(?:паспорт\w*|passport)(?:\s+(?:РФ|серии|серия|сер\.|гражданина\s+РФ|no\.?|number|#|№))*\s*[:№]?\s*"
    r"(\d{2}\s?\d{2}(?:\s*(?:№|номер|N)?\s*)\d{6}|[A-Z]{0,2}\d{6,9})",
    re.IGNORECASE,
)
# Record numbers need a context word: MRN, accession, "история болезни №", "карта №", "ID".
RECORD_RE = re.compile(
    r"(?:\bMRN|\bmedical record(?: number| no\.?)?|\brecord(?: number| no\.?| #)|\baccession(?: number| no\.?| #)?|"
    r"\bAcc\.?(?: no\.?| #)?|\bpatient ID|\bID|\bchart(?: number| no\.?| #)?|\bcase(?: number| no\.?| #)|"
    r"\bspecimen(?: no\.?| #)?|"
    r"\bистори\w+ болезни|\bИБ|\bкарт\w*(?: пациента| больного| стационарного больного| амбулаторного больного)?|"
    r"\bамбулаторн\w+ карт\w*|\bмедицинск\w+ карт\w*|\bномер исследования|\bисследовани\w+|\bпротокол\w*|"
    r"\bнаправлени\w+|\bрег(?:истрационный)?\.? ?номер|\bномер|\bshipment|\border(?: no\.?| #)?)"
    r"\s*(?:no\.?|number|№|N|#|:)?\s*[:№#]?\s*"
    r"([A-ZА-Я]{0,4}[-/]?\d[\d/-]{2,}[A-ZА-Я]?\d*)",
    re.IGNORECASE,
)
# A bare "№ 12345" or "#12345" is an identifier in clinical text (protocol, card, accession numbers).
NUMBER_SIGN_RE = re.compile(r"(?:№|#)\s*([A-ZА-Я]{0,3}[-/]?\d{3,}[\d/-]*)")
# US Social Security numbers: the ddd-dd-dddd shape is specific enough without a context word.
SSN_RE = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")
LONG_NUMBER_RE = re.compile(r"(?<![\d.,])\d{7,}(?![\d.,]*\d)")

_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_MONTH = r"(?:0?[1-9]|1[0-2])"
NUMERIC_DATE_RE = re.compile(
    rf"(?<![\d.:/-])(?:{_DAY}\.{_MONTH}\.(?:19|20)?\d\d|{_MONTH}/{_DAY}/(?:19|20)?\d\d|{_DAY}/{_MONTH}/(?:19|20)\d\d"
    rf"|{_DAY}-{_MONTH}-(?:19|20)\d\d|(?:19|20)\d\d[-./]{_MONTH}[-./]{_DAY})(?![\d/]|\.\d)"
)
AGE_RE = re.compile(
    r"(?:(?:aged?|age:|возраст\w*:?|в возрасте)\s*)?\b(9\d|1[01]\d)"
    r"(?=[\s-]*(?:years?|yrs?\b|y/?o\b|yo\b|year-old|-year|лет\b|г\.\s*р|года?\b))"
    r"|(?:aged?|age:|возраст\w*:?)\s*(9\d|1[01]\d)\b",
    re.IGNORECASE,
)


def _group_or_all(m: re.Match) -> tuple[int, int]:
    for g in range(1, (m.re.groups or 0) + 1):
        if m.group(g) is not None:
            return m.start(g), m.end(g)
    return m.start(), m.end()


def _strip_trailing(text: str, start: int, end: int, chars: str = ".,;:)]»\"'") -> tuple[int, int]:
    while end > start and text[end - 1] in chars:
        end -= 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def find_contacts(text: str) -> Iterator[Span]:
    for m in EMAIL_RE.finditer(text):
        yield m.start(), m.end(), "EMAIL"
    for m in URL_RE.finditer(text):
        if "@" in text[max(0, m.start() - 1) : m.start()]:
            continue  # the domain of an e-mail, already covered
        s, e = _strip_trailing(text, m.start(), m.end())
        yield s, e, "URL"
    for m in IP_RE.finditer(text):
        if all(int(p) <= 255 for p in m.group().split(".")):
            yield m.start(), m.end(), "IP"


def find_phones(text: str) -> Iterator[Span]:
    for m in PHONE_RE.finditer(text):
        if len(digits_of(m.group())) >= 10:
            yield m.start(), m.end(), "PHONE"
    for m in PHONE_CTX_RE.finditer(text):
        s, e = _strip_trailing(text, m.start(1), m.end(1), ".,;:(- ")
        if len(digits_of(text[s:e])) >= 5:
            yield s, e, "PHONE"


def find_national_ids(text: str) -> Iterator[Span]:
    for m in SNILS_CTX_RE.finditer(text):
        s, e = _strip_trailing(text, m.start(1), m.end(1), " -")
        yield s, e, "SNILS"
    for m in SNILS_RE.finditer(text):
        if snils_valid(m.group()):
            yield m.start(), m.end(), "SNILS"
    for m in INN_CTX_RE.finditer(text):
        yield m.start(1), m.end(1), "INN"
    for m in INN_RE.finditer(text):
        if inn_valid(m.group()):
            yield m.start(), m.end(), "INN"
    for m in OMS_CTX_RE.finditer(text):
        s, e = _strip_trailing(text, m.start(1), m.end(1), " -")
        yield s, e, "OMS"
    for m in OMS_RE.finditer(text):
        if oms_valid(m.group()) or len(digits_of(m.group())) == 16:
            yield m.start(), m.end(), "OMS"
    for m in PASSPORT_RE.finditer(text):
        yield m.start(1), m.end(1), "PASSPORT"


def find_records(text: str) -> Iterator[Span]:
    for m in RECORD_RE.finditer(text):
        s, e = _strip_trailing(text, m.start(1), m.end(1), "-/.")
        if sum(ch.isdigit() for ch in text[s:e]) >= 3:
            yield s, e, "ID"
    for m in NUMBER_SIGN_RE.finditer(text):
        s, e = _strip_trailing(text, m.start(1), m.end(1), "-/.")
        yield s, e, "ID"
    for m in LONG_NUMBER_RE.finditer(text):
        yield m.start(), m.end(), "ID"
    for m in SSN_RE.finditer(text):
        yield m.start(), m.end(), "ID"


def find_numeric_dates(text: str) -> Iterator[Span]:
    for m in NUMERIC_DATE_RE.finditer(text):
        yield m.start(), m.end(), "DATE"


def find_ages(text: str) -> Iterator[Span]:
    for m in AGE_RE.finditer(text):
        s, e = _group_or_all(m)
        yield s, e, "AGE"
