"""Batch PHI detection: a polars pre-filter over the whole column, Python rules only on candidate rows.

    from medscribe.phi.detect import detect_batch
    spans_per_text = detect_batch(["Пациентка Петрова, тел. +7 (912) 345-67-89", "No PHI here."])

Why two levels: most rows of a real report column contain no PHI of a given kind. Each detector has a
cheap trigger regex that polars evaluates for all rows at once in Rust (many times faster than a Python loop);
the exact, validating Python finder runs only where its trigger fired. Overlapping spans are merged, the
longest span naming the type (so `ул. Ленина` is one ADDRESS, not a NAME inside an address).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from medscribe.phi import patterns, rules_en, rules_ru

Span = tuple[int, int, str]

# The order breaks ties between equally long overlapping spans: the more specific type wins.
TYPE_PRIORITY = (
    "SNILS", "INN", "OMS", "PASSPORT", "EMAIL", "URL", "IP", "PHONE", "ID", "DATE", "AGE", "ADDRESS", "ORG", "NAME",
)
PHI_TYPES = TYPE_PRIORITY

# Triggers are Rust regexes run by polars. They avoid `\b` (a Unicode word boundary forces Rust's slow engine:
# measured 100x slower here) and case-insensitive groups: `lower` runs on a lowercased copy of the column.
_NOT_RU = r"(?:^|[^а-яё])"
_END_RU = r"(?:[^а-яё]|$)"
# Python's `\s` (str.isspace) also matches \x1c-\x1f, Rust's does not: triggers must fire wherever a finder can.
_WS = r"[\s\x1c-\x1f]"


@dataclass(frozen=True)
class Detector:
    name: str
    find: Callable[[str], Iterable[Span]]
    trigger: str = ""  # on the original text; a row is scanned by `find` if this or `lower` matches
    lower: str = ""  # on the lowercased text


DETECTORS: tuple[Detector, ...] = (
    Detector(
        "contacts", patterns.find_contacts,
        trigger=r"@|[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]",
        lower=r"https?://|www\.|\.(?:ru|com|org|net|рф|su|info|edu|gov|io|med)(?:[^a-zа-яё]|$)",
    ),
    Detector(
        "phones", patterns.find_phones,
        trigger=r"\+[0-9]|[0-9]{3}\)?[ .-]{0,2}[0-9]{3}[ .-]?[0-9]{2}|[0-9]{3}[ .-][0-9]{4}",
        lower=rf"{_NOT_RU}тел(?:\.|ефон|:)|phone|(?-u:\b)(?:tel|ext|ph|cell|pager|fax)(?-u:\b)|моб\.|мобильн|доб\.|факс",
    ),
    Detector(
        "national_ids", patterns.find_national_ids,
        trigger=r"[0-9]{3}-[0-9]{3}-[0-9]{3}|[0-9]{10}|[0-9]{4}[ -][0-9]{4}[ -][0-9]{4}",
        lower=rf"{_NOT_RU}(?:снилс|инн|омс){_END_RU}|полис|паспорт|passport|policy|(?-u:\b)inn(?-u:\b)",
    ),
    Detector(
        "records", patterns.find_records,
        trigger=r"№|#|[0-9]{7}|[0-9]{3}-[0-9]{2}-[0-9]{4}",
        lower=r"(?:mrn|record|accession|acc|id|chart|case|specimen|истори|иб|карт|исследовани|протокол|"
        r"направлени|номер|order|shipment)[^\n]{0,24}[0-9]{3}",
    ),
    Detector(
        "numeric_dates", patterns.find_numeric_dates,
        trigger=r"[0-9][./-][0-9]{1,2}[./-][0-9]{2}|[0-9]{4}[-./][0-9]{1,2}[-./][0-9]",
    ),
    Detector("ages", patterns.find_ages, trigger=r"(?:^|[^0-9.,])(?:9[0-9]|1[01][0-9])(?:[^0-9.,]|[.,](?:[^0-9]|$)|$)"),
    Detector(
        "names_ru", rules_ru.find_names_ru,
        trigger=r"[А-ЯЁ]\.|[А-ЯЁ][а-яё]+(?:ович|евич|овн|евн|ичн)|[А-ЯЁ](?:ОВИЧ|ЕВИЧ|ОВН|ЕВН|ИЧН)|"
        r"[а-яё,]\s+(?:[—–]\s+)?[А-ЯЁ][а-яё]|"
        r"(?:^|[.!?;:]\s+)[А-ЯЁ][а-яё]+(?:ов|ев|ёв|ин|ын|ова|ева|ина|ына|ский|ская|цкий|цкая|енко|ук|юк|ич|ко)[\s,]",
        lower=r"пациент|больн(?:ой|ая|ого|ому|ую|ым)|врач|доктор|д-р|медсестр|фельдшер|лаборант|рентгенолог|"
        r"заведующ|зав\.|гр\.|граждан|фио|ф\.и\.о|подпис|исполнитель|консультир|направил|осмотрен|оператор|"
        r"проф\.|акад\.|доц\.|"
        rf"{_NOT_RU}(?:мужем|женой|сыном|дочерью|матерью|отцом|мать|отец|сын|дочь|муж|жена){_END_RU}",
    ),
    Detector(
        "dates_ru", rules_ru.find_dates_ru,
        lower=rf"январ|феврал|март|апрел|{_NOT_RU}ма[йяе]{_END_RU}|июн|июл|август|сентябр|октябр|ноябр|декабр|"
        r"г\.\s*р|года рожд|г\.р|[0-9]\s*гр\.",
    ),
    Detector(
        "places_ru", rules_ru.find_places_ru, trigger=r"[а-яё,]\s+[А-ЯЁ][а-яё]",
    ),
    Detector(
        # Each alternative is what one branch of ADDRESS_RU_RE / LIVES_IN_RU_RE needs: a street type, a settlement
        # abbreviation, "д. 5, кв. 3", "<...>ская область" / "<...>ский район|край", a residence verb. Bare
        # "области", "района", "края", "город" are not enough: "в области ворот", "по краю" fill radiology text.
        "addresses_ru", rules_ru.find_addresses_ru,
        lower=rf"ул\.|улиц|пр-т|пр-кт|просп|проспект|пер\.|переул|б-р|бульвар|шоссе|наб\.|набережн|пл\.|площад|мкр|"
        rf"микрорайон|проезд|тупик|аллея|аллее|{_NOT_RU}ш\.|{_NOT_RU}г\.|пос\.|пгт|дер\.|(?:д\.|дом){_WS}*\d|"
        rf"(?:ск|ов)[а-яё]{{0,4}}{_WS}+област[ьи]|ск(?:ий|ого|ом){_WS}+(?:район|кра[йяе])|"
        rf"прожива|зарегистр|житель|адрес|прибыл|приехал|из{_WS}+город",
    ),
    Detector(
        "orgs_ru", rules_ru.find_orgs_ru,
        trigger=r"ГБУЗ|ГАУЗ|ГУЗ|ГБУ|ФГБУ|ФГБОУ|ФГАОУ|ФГБНУ|ФГУП|МБУЗ|МУЗ|ООО|ОАО|ПАО|ЗАО|АО|НИИ|НМИЦ|ФНКЦ|ГКБ|ДГКБ|ГКП|ОКБ|"
        r"ОДКБ|ЦРБ|КДЦ|МСЧ|ФМБА|ДГП|ГП|ЛДЦ|МРТ-центр|СОКБ|ОКОД|ООД|ГКОД|МОНИКИ|ЦКБ|ГВКГ|ГНЦ|МКНЦ|«",
        lower=r"(?:больниц|поликлиник|госпитал|диспансер|клиник|центр|медсанчаст|роддом|санатори|лаборатори|институт|"
        r"университет|академи)[^\n]{0,6}(?:№|им\.|имени|«|\")|"
        r"(?:област|краев|республиканск|городск|районн|центральн|клиническ|детск|онкологическ|многопрофильн)"
        r"\S*\s(?:\S+\s){0,3}(?:больниц|поликлиник|госпитал|диспансер|центр)",
    ),
    Detector(
        "names_en", rules_en.find_names_en,
        trigger=r"(?-u:\b)(?:Dr|Drs|Mr|Mrs|Ms|Miss|Prof|Professor|Mister|Madam|Sir|Dame|Mx|Sr|Sister|Nurse|Doctor|MD|DO|"
        r"RN|NP|PhD|MBBS|FRCR|DR|MR|MRS|MS|PROF|DOCTOR)(?-u:\b)|M\.D\.|"
        r"(?:^|[^A-Za-z.])[A-Z]\.\s?[A-Z]['’a-z]|[A-Z][a-z]+\s+(?:[a-z]{1,4}\s+)?[A-Z][a-z]",
        lower=r"patient|(?-u:\b)pt(?-u:\b)|name|(?-u:\b)(?:by|per|cc|son|pcp)(?-u:\b)|attending|referring|discussed|"
        r"spoke|spoken|informed|contacted|called|wife|husband|daughter|mother|father|sister|brother|partner|"
        r"guardian|caregiver|friend|neighbo|nurse|physician|surgeon|radiologist|technologist|resident|fellow|provider",
    ),
    Detector(
        "dates_en", rules_en.find_dates_en,
        trigger=r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)",
        lower=r"(?-u:\b)dob(?-u:\b)|date of birth|born in|(?-u:\b)b\.\s*[0-9]",
    ),
    Detector(
        "addresses_en", rules_en.find_addresses_en,
        trigger=r"[0-9]\s+[A-Z][a-z]|,\s*[A-Z]{2}\s+[0-9]{5}|P\.?O\.? Box",
        lower=r"lives|living|resident of|resides|town of|moved from|relocated|address|home in|travel|returned from|"
        r"visiting from| from [a-z]|native of|born in",
    ),
    Detector(
        "orgs_en", rules_en.find_orgs_en,
        trigger=r"Hospital|Medical Cent|Health|Clinic|Infirmary|Institute|University|Medical Group|Imaging|Radiology|"
        r"Hospice|Sanatorium|Laborator|Labs|Cancer Center|Children's|Foundation|Associates|Pharmacy|Nursing Home|"
        r"Rehab|Surgical Center|Surgery Center|Diagnostics|College",
    ),
)


def _lower_pattern(d: Detector) -> str:
    return f"(?i:{d.lower})" if d.lower else ""


@lru_cache(maxsize=8)
def _gate_patterns(detectors: tuple[Detector, ...]) -> tuple[str, str]:
    """Two union regexes over all triggers (one per case mode; a single union of both thrashes Rust's DFA cache)."""
    exact = "|".join(f"(?:{d.trigger})" for d in detectors if d.trigger)
    folded = "(?i:" + "|".join(f"(?:{d.lower})" for d in detectors if d.lower) + ")"
    return exact, folded


def candidate_rows(texts: list[str], detectors: tuple[Detector, ...] = DETECTORS) -> dict[str, list[int]]:
    """Row indices where each detector's trigger fires, computed by polars over the whole batch.

    First one pass of the union of all triggers finds the rows that may hold any PHI at all (about one in
    eight of typical report rows); the per-detector triggers then run on those rows only.
    """
    import polars as pl

    if not texts:
        return {d.name: [] for d in detectors}
    column = pl.Series("text", texts, dtype=pl.String)
    exact, folded = _gate_patterns(detectors)
    gate = (column.str.contains(exact) | column.str.contains(folded)).fill_null(False)
    rows = gate.arg_true()
    if rows.len() == 0:
        return {d.name: [] for d in detectors}
    subset = column.gather(rows)
    out: dict[str, list[int]] = {}
    for d in detectors:
        mask = None
        for pattern in (d.trigger, _lower_pattern(d)):
            if pattern:
                hit = subset.str.contains(pattern)
                mask = hit if mask is None else mask | hit
        out[d.name] = rows.gather(mask.fill_null(False).arg_true()).to_list()
    return out


def merge_spans(spans: Iterable[Span], text: str) -> list[Span]:
    """Union overlapping spans (and NAME spans only whitespace apart); the longest part names the type."""
    ordered = sorted((s for s in spans if s[1] > s[0]), key=lambda s: (s[0], -s[1]))
    merged: list[list] = []  # [start, end, type, length_of_typing_span, priority]
    for start, end, kind in ordered:
        prio = TYPE_PRIORITY.index(kind)
        if merged:
            last = merged[-1]
            gap = text[last[1] : start] if start > last[1] else ""
            joins_names = (
                kind == "NAME" and last[2] == "NAME" and start >= last[1] and gap.strip() == "" and "\n" not in gap
            )
            if start < last[1] or joins_names:
                length = end - start
                if length > last[3] or (length == last[3] and prio < last[4]):
                    last[2], last[3], last[4] = kind, length, prio
                last[1] = max(last[1], end)
                continue
        merged.append([start, end, kind, end - start, prio])
    return [(s, e, k) for s, e, k, _, _ in merged]


def detect_batch(texts: list[str]) -> list[list[Span]]:
    """Merged PHI spans for every text (same order), each `(start, end, type)`."""
    found: dict[int, list[Span]] = {}  # only rows with a hit: most rows of a batch have none
    candidates = candidate_rows(texts)
    for detector in DETECTORS:
        find = detector.find
        for row in candidates[detector.name]:
            spans = list(find(texts[row]))
            if spans:
                found.setdefault(row, []).extend(spans)
    out: list[list[Span]] = [[] for _ in texts]
    for row, spans in found.items():
        out[row] = merge_spans(spans, texts[row])
    return out


def detect(text: str) -> list[Span]:
    return detect_batch([text])[0]


CYRILLIC_RE = re.compile(r"[А-Яа-яЁё]")
LATIN_RE = re.compile(r"[A-Za-z]")


def language_of(text: str) -> str:
    """'ru' when Cyrillic letters outnumber Latin ones, else 'en' (a cheap per-text guess for reports)."""
    head = text[:200]  # enough to tell, and keeps this O(1) per row
    cyr = len(CYRILLIC_RE.findall(head))
    lat = len(LATIN_RE.findall(head))
    return "ru" if cyr >= lat and cyr > 0 else "en"


def iter_findings(texts: list[str]) -> Iterator[tuple[int, Span]]:
    for row, spans in enumerate(detect_batch(texts)):
        for span in spans:
            yield row, span
