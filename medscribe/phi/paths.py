"""PHI in file paths: exports named after the patient or the study date (`Ivanov_I_I_2024-03-01.csv`).

    from medscribe.phi.paths import path_spans, scrub_path
    scrub_path("МРТ/Иванов И.И. 01.03.2024.xlsx")     # -> "МРТ/[NAME] [DATE].xlsx"
    path_spans("smith_john_mrn123456.json")            # -> [(0, 10, 'NAME'), (14, 20, 'ID')]

A file name has no sentences, so the text rules alone miss most of it (measured: 0.46 token recall on the
path corpus, `bench/phi_bench.py --paths-baseline`). Two passes:

1. the text rules run on a "text view" of the path (same length: `_` read as a space, or as `.` between
   digits so `01_03_2024` is a date), plus path rules that need no context: digit runs of 6+ (IDs, compact
   dates), three digit groups that form a date in any order, Latin transliterated surname endings
   (`-ov`, `-ova`, `-enko`, `-sky`), first names of the lexicon, Russian words the dictionary reads as names or
   does not know, eponyms (in a file name `Parkinson_A_2021.csv` is a patient, `parkinson_disease.csv` is not),
   and capitalized Latin words that are not ordinary export words;
2. when the path holds any of that (a date, an ID, a name), every other capitalized word and every lowercase
   word that is not an ordinary export word (`mri`, `report`, `выгрузка`) is read as a name too, and single
   letters next to a name are its initials (`Ivanov_I_I`).

The extension is never touched. Over-tagging costs little here (a file label is provenance, the manifest keeps
each input's sha256 to find the file), a leak costs a patient's name in every record's `source`.
"""

from __future__ import annotations

import re
from functools import lru_cache

from medscribe.phi.detect import detect_batch, merge_spans

Span = tuple[int, int, str]

# Ordinary words of export file names: never a name, whatever else the path holds.
PATH_WORDS = frozenset(
    """report reports export exports exported data dataset datasets final draft copy new old part batch sample
    samples study studies findings finding results result answers answer questions question with and the of for
    from to by in on at all full list table sheet book file files scan scans image images series ct mri mr us pet
    xray x-ray dicom chest head brain abdomen pelvis spine neck knee hip shoulder liver kidney kidneys lung lungs
    heart breast thyroid radiology patient patients pt name names mrn id dob date dates year month day week daily
    weekly monthly archive backup test tests train eval dev val valid validation summary summaries qa medquad
    reviewed review clean raw processed output input notes note text texts protocol protocols case cases cohort
    site hospital clinic dept department ward unit er ed icu opd ipd en ru eng rus csv tsv xlsx xls json jsonl
    ndjson txt tmp temp v1 v2 v3 main misc other others extra more set sets split chunk chunks
    выгрузка выгрузки экспорт отчет отчеты отчёт отчёты протокол протоколы данные пациент пациенты пациента
    исследование исследования заключение заключения описание описания архив часть копия итог итоги список
    таблица файл лист выписка выписки результаты результат снимки серия мрт кт узи пэт рентген рентгенография
    радиология за от по на для без года год месяц день неделя новый новые старый старые финал итоговый""".split()
)
MONTH_WORDS = frozenset(
    """january february march april may june july august september october november december jan feb mar apr jun
    jul aug sep sept oct nov dec январь февраль март апрель май июнь июль август сентябрь октябрь ноябрь декабрь
    января февраля марта апреля мая июня июля августа сентября октября ноября декабря""".split()
)
DATA_SUFFIX_RE = re.compile(r"\.(?:csv|tsv|xlsx|xlsm|xls|json|jsonl|ndjson|txt|parquet|zip|gz)$", re.IGNORECASE)
TOKEN_RE = re.compile(r"[^\W_]+")
DIGITS_RE = re.compile(r"\d{6,}")
DATE_PARTS_RE = re.compile(r"(?<!\d)(\d{1,4})[-._ ](\d{1,2})[-._ ](\d{1,4})(?!\d)")
LATIN_SURNAME_RE = re.compile(
    r"(?:ov|ova|ev|eva|yov|yova|sky|ski|skiy|skii|skaya|skaia|enko|vich|ovich|evich|ovna|evna|shvili|dze|yan|yants)$"
)
LATIN_SURNAME_TITLE_RE = re.compile(r"(?:in|ina|yn|yna|uk|yuk|ko|ich)$")  # only capitalized: "protein", "login"
CYRILLIC_RE = re.compile(r"[А-Яа-яЁё]")


def _text_view(component: str) -> str:
    """The same string with `_` read as a space (as `.` between digits), so the text rules see words and dates."""
    chars = list(component)
    for i, ch in enumerate(chars):
        if ch == "_":
            digits_around = 0 < i < len(chars) - 1 and chars[i - 1].isdigit() and chars[i + 1].isdigit()
            chars[i] = "." if digits_around else " "
    return "".join(chars)


def _plausible_date(a: str, b: str, c: str) -> bool:
    def year(x: str) -> bool:
        return len(x) == 4 and 1900 <= int(x) <= 2099

    def day(x: str) -> bool:
        return 1 <= int(x) <= 31 and len(x) <= 2

    def month(x: str) -> bool:
        return 1 <= int(x) <= 12 and len(x) <= 2

    return (year(a) and month(b) and day(c)) or (year(c) and ((day(a) and month(b)) or (month(a) and day(b))))


def _compact_date(digits: str) -> bool:
    return len(digits) == 8 and (_plausible_date(digits[:4], digits[4:6], digits[6:]) or
                                 _plausible_date(digits[:2], digits[2:4], digits[4:]))


# Clinical word endings (`cardiology`, `hepatitis`); not `-ing`/`-ence`, which surnames and first names have
# (`Kettering`, `Florence`).
TERM_SUFFIX_RE = re.compile(r"(?:ology|ologies|itis|omas?|osis|ectomy|plasty|scopy|graphy|pathy|emia|ations?|ments?)$")
# Short capitals that are modalities or file words, not initials ("CT", "QA"); every other 1-2 capital letters
# next to a name are initials ("Ivanov_PT", "Smith_AT").
ACRONYMS = frozenset(
    """ct mr mri us pet qa id en ru ed er icu dob mrn xr cr dx rx spect cta mra ogk
    мрт кт узи пэт экг ээг рг огк обп омт гм щж мскт кта мра оак бак""".split()
)
# A word after one of these in a file name is the person it names ("reports_for_blackwood", "пациент_волк").
PATH_PERSON_CONTEXT = frozenset(
    "for patient pt name dr doctor mr mrs ms prof пациент пациентка пациента фио врач доктор больной больная".split()
)


def _ordinary(low: str) -> bool:
    return low in PATH_WORDS or low in MONTH_WORDS or (len(low) > 5 and TERM_SUFFIX_RE.search(low) is not None)


@lru_cache(maxsize=20_000)
def _word_verdict(word: str) -> str:
    """'name': a name on its own; 'maybe': a name when the path holds other PHI; 'no': an ordinary word."""
    low = word.lower()
    if _ordinary(low) or low.isdigit():
        return "no"
    if CYRILLIC_RE.search(word):
        from medscribe.phi.rules_ru import _is_eponym_lemma, could_be_surname

        if word.isupper() and low in ACRONYMS:
            return "no"  # МРТ, КТ, УЗИ
        cap = word[:1].upper() + word[1:].lower()
        if could_be_surname(cap) or _is_eponym_lemma(cap):
            return "name"
        return "maybe" if word[:1].isupper() else "no"
    from medscribe.phi.rules_en import EPONYMS_EN, first_names_en

    if word.isupper() and low in ACRONYMS:
        return "no"  # CT, MRI, PET
    if word.isupper() and len(word) <= 4:
        return "maybe"  # HILL, ROSE: a name when the path names someone
    if len(low) >= 5 and LATIN_SURNAME_RE.search(low):
        return "name"
    if low.capitalize() in first_names_en():
        return "name"
    if word[:1].isupper():
        if len(low) >= 5 and LATIN_SURNAME_TITLE_RE.search(low):
            return "name"
        return "maybe" if low in EPONYMS_EN else "name"
    return "maybe"


def _component_spans(component: str) -> tuple[list[Span], list[tuple[int, int, str]]]:
    """Spans of pass 1 and the letter tokens with their verdicts (for pass 2)."""
    stem_end = len(component)
    suffix = DATA_SUFFIX_RE.search(component)
    if suffix:
        stem_end = suffix.start()
    view = _text_view(component[:stem_end])
    spans: list[Span] = list(detect_batch([view])[0])
    for m in DATE_PARTS_RE.finditer(view):
        if _plausible_date(*m.groups()):
            spans.append((m.start(), m.end(), "DATE"))
    tokens = []
    previous = ""
    for m in TOKEN_RE.finditer(view):
        word, after_context = m.group(), previous in PATH_PERSON_CONTEXT
        previous = word.lower()
        for d in DIGITS_RE.finditer(word):
            kind = "DATE" if _compact_date(d.group()) else "ID"
            spans.append((m.start() + d.start(), m.start() + d.end(), kind))
        if re.fullmatch(r"\d{5}", word):
            tokens.append((m.start(), m.end(), "number"))  # an ID when the path names someone
        if not word.isalpha():
            continue
        if word.isupper() and (len(word) == 1 or (len(word) == 2 and word.lower() not in ACRONYMS)):
            tokens.append((m.start(), m.end(), "initial"))
            continue
        verdict = _word_verdict(word)
        if after_context and verdict == "maybe" or (after_context and verdict == "no" and not _ordinary(word.lower())):
            verdict = "name"
        tokens.append((m.start(), m.end(), verdict))
        if verdict == "name" and not _medical_context(view, m.start(), m.end()):
            spans.append((m.start(), m.end(), "NAME"))
    return spans, tokens


def _medical_context(view: str, start: int, end: int) -> bool:
    """`parkinson_disease.csv`, `синдром_Дауна.xlsx`: the eponym in its medical sense."""
    from medscribe.phi.rules_en import _medical_after
    from medscribe.phi.rules_ru import _is_eponym_context

    return _medical_after(view, end) or _is_eponym_context(view, start)


def path_spans(path: str) -> list[Span]:
    """PHI spans `(start, end, type)` in a relative path (`/` separated), extension excluded."""
    out: list[Span] = []
    offset = 0
    found: list[tuple[int, list[Span], list[tuple[int, int, str]]]] = []
    for component in path.split("/"):
        spans, tokens = _component_spans(component)
        found.append((offset, spans, tokens))
        offset += len(component) + 1
    # Evidence that the path names a person or a date: any span, or initials right after a capitalized word
    # ("УЗИ Мельник И.Э..csv").
    evidence = any(spans for _, spans, _ in found) or any(
        a[2] in ("maybe", "name") and b[2] == "initial"
        for _, _, tokens in found
        for a, b in zip(tokens, tokens[1:], strict=False)
    )
    for base, spans, tokens in found:
        spans = list(spans)
        if evidence:
            names = {(s, e) for s, e, k in spans if k == "NAME"}
            for s, e, verdict in tokens:
                if verdict == "maybe":
                    spans.append((s, e, "NAME"))
                    names.add((s, e))
                elif verdict == "number":
                    spans.append((s, e, "ID"))
            # initials next to a name: "Ivanov_I_I", "Kashevarova_SA"
            letters = [t for t in tokens if t[2] not in ("no", "number")]
            changed = True
            while changed:
                changed = False
                for i, (s, e, verdict) in enumerate(letters):
                    if verdict != "initial" or (s, e) in names:
                        continue
                    near = [letters[j] for j in (i - 1, i + 1) if 0 <= j < len(letters)]
                    if any((ns, ne) in names for ns, ne, _ in near):
                        spans.append((s, e, "NAME"))
                        names.add((s, e))
                        changed = True
        out.extend((s + base, e + base, k) for s, e, k in spans)
    view = "/".join(_text_view(c) for c in path.split("/"))
    return merge_spans(out, view)


def scrub_path(path: str, replacement=lambda value, kind: f"[{kind}]") -> str:
    """The path with every PHI span replaced (`[NAME]`, `[DATE]`, ...); separators and extension kept."""
    pieces, cursor = [], 0
    for start, end, kind in path_spans(path):
        pieces.append(path[cursor:start])
        pieces.append(replacement(path[start:end], kind))
        cursor = end
    pieces.append(path[cursor:])
    return "".join(pieces)
