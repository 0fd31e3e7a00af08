"""Replacement of detected PHI: typed tags (`[NAME]`) or consistent, realistic surrogates.

Surrogates are keyed by a salted HMAC of the normalized value, so the same person gets the same surrogate
everywhere in a run (and in later runs with the same salt) while the salt itself, which only comes from the
environment, is never written anywhere. Russian surnames are normalized through their lemma and the surrogate
is inflected back into the original's case (`Иванову` -> `Соболеву`, `Иванов` -> `Соболев`). Dates move by one
salted per-run offset, so intervals between dates survive.

    from medscribe.phi.replace import Surrogates
    s = Surrogates(b"salt")
    s.replace("Иванову", "NAME")
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date, timedelta

SURNAMES_RU = (
    "Соболев", "Лаптев", "Рябинин", "Ветров", "Журавлёв", "Колосов", "Крылов", "Зимин", "Липатов", "Ершов",
    "Гончаров", "Мельников", "Тихонов", "Сорокин", "Белоусов", "Панкратов", "Уваров", "Ясенев", "Дубровин", "Карпов",
)
FIRST_NAMES_RU = {
    "masc": ("Алексей", "Борис", "Виктор", "Глеб", "Денис", "Константин", "Леонид", "Михаил"),
    "femn": ("Елена", "Жанна", "Ирина", "Ксения", "Лариса", "Марина", "Нина", "Оксана"),
}
PATRONYMICS_RU = {
    "masc": ("Алексеевич", "Борисович", "Викторович", "Денисович", "Михайлович", "Олегович"),
    "femn": ("Алексеевна", "Борисовна", "Викторовна", "Денисовна", "Михайловна", "Олеговна"),
}
SURNAMES_EN = (
    "Ashford", "Bramley", "Calloway", "Dunmore", "Ellery", "Fairbanks", "Galloway", "Hartwell", "Ingram", "Jarvis",
    "Kendrick", "Langley", "Merriman", "Northcott", "Oakes", "Pembroke", "Quinlan", "Radcliffe", "Stanton", "Thorne",
)
FIRST_NAMES_EN = ("Avery", "Blake", "Casey", "Drew", "Emerson", "Finley", "Harper", "Jamie", "Morgan", "Quinn")
STREETS_RU = ("Садовая", "Полевая", "Лесная", "Речная", "Школьная", "Зелёная", "Луговая", "Новая")
STREETS_EN = ("Maple", "Cedar", "Willow", "Birch", "Elm", "Juniper", "Aspen", "Linden")
CITIES_RU = ("Энск", "Приморск", "Заречный", "Светлогорск")
CITIES_EN = ("Springdale", "Riverton", "Lakeside", "Fairview")

_CYR = re.compile(r"[А-Яа-яЁё]")
_TITLES = frozenset({"Dr", "Mr", "Mrs", "Ms", "Miss", "Prof", "Mx", "д-р", "проф"})
_INITIAL = re.compile(r"^[A-ZА-ЯЁ]\.$")
_MONTHS_RU_GEN = (
    "января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября", "октября", "ноября",
    "декабря",
)
_MONTHS_EN = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November",
    "December",
)


def tag(phi_type: str) -> str:
    return f"[{phi_type}]"


class Surrogates:
    """Deterministic surrogate values for one salt; `fallbacks` counts values that could only be tagged."""

    def __init__(self, salt: bytes):
        self._salt = salt
        self.fallbacks = 0
        self._memo: dict[tuple[str, str], tuple[str, bool]] = {}
        self._date_shift = timedelta(days=self._number("date-shift", 730) - 365 or 17)

    def _digest(self, key: str) -> bytes:
        return hmac.new(self._salt, key.encode("utf-8"), hashlib.sha256).digest()

    def _number(self, key: str, modulo: int) -> int:
        return int.from_bytes(self._digest(key)[:8], "big") % modulo

    def _pick(self, key: str, options: tuple[str, ...]) -> str:
        return options[self._number(key, len(options))]

    def _digits_like(self, key: str, value: str) -> str:
        """Same shape as `value` (separators, letters kept), every digit replaced by a keyed digit."""
        digest = self._digest(key)
        out, i = [], 0
        for ch in value:
            if ch.isdigit():
                out.append(str(digest[i % len(digest)] % 10))
                i += 1
            else:
                out.append(ch)
        return "".join(out)

    def replace(self, value: str, phi_type: str) -> str:
        # Memoized: report columns repeat the same values, and name inflection through pymorphy is the slow part.
        key = (value, phi_type)
        if key not in self._memo:
            before = self.fallbacks
            self._memo[key] = (self._replace_uncached(value, phi_type), self.fallbacks > before)
            self.fallbacks = before
        result, fell_back = self._memo[key]
        self.fallbacks += fell_back
        return result

    def _replace_uncached(self, value: str, phi_type: str) -> str:
        handler = getattr(self, f"_replace_{phi_type.lower()}", None)
        if handler is not None:
            result = handler(value)
            if result is not None:
                return result
        if any(ch.isdigit() for ch in value) and phi_type in ("PHONE", "SNILS", "INN", "OMS", "PASSPORT", "ID", "IP"):
            return self._digits_like(f"{phi_type}:{value}", value)
        self.fallbacks += 1
        return tag(phi_type)

    # --- names -------------------------------------------------------------------------------------------------
    def _replace_name(self, value: str) -> str:
        parts = re.split(r"(\s+|(?<=\.))", value)
        out = []
        russian = bool(_CYR.search(value))
        for part in parts:
            if not part or part.isspace():
                out.append(part)
                continue
            if part.rstrip(".") in _TITLES:
                out.append(part)
            elif _INITIAL.match(part):
                pool = FIRST_NAMES_RU["masc"] + FIRST_NAMES_RU["femn"] if russian else FIRST_NAMES_EN
                out.append(self._pick(f"initial:{part}", pool)[0] + ".")
            elif russian:
                word = part.rstrip(",;:")
                out.append(self._russian_name_word(word) + part[len(word) :])
            else:
                word = part.rstrip(",;:")
                pool = FIRST_NAMES_EN if word in _en_first_names() else SURNAMES_EN
                out.append(self._pick(f"name-en:{word.lower()}", pool) + part[len(word) :])
        return "".join(out)

    def _russian_name_word(self, word: str) -> str:
        from medscribe.phi.rules_ru import morph

        parses = morph().parse(word)
        best = next((p for p in parses if {"Surn", "Name", "Patr"} & set(p.tag.grammemes)), parses[0])
        lemma = best.normal_form
        gender = "femn" if best.tag.gender == "femn" else "masc"
        if "Name" in best.tag:
            surrogate, tag = self._pick(f"name-ru:{lemma}", FIRST_NAMES_RU[gender]), "Name"
        elif "Patr" in best.tag:
            surrogate, tag = self._pick(f"patr-ru:{lemma}", PATRONYMICS_RU[gender]), "Patr"
        else:
            # Keyed by the masculine lemma, so Иванов / Иванову / Ивановой all map to one surrogate family.
            surrogate, tag = self._pick(f"surname-ru:{lemma}", SURNAMES_RU), "Surn"
        grammemes = {g for g in (best.tag.case, best.tag.number) if g}
        if tag == "Surn" and best.tag.gender:
            grammemes.add(best.tag.gender)
        for parse in morph().parse(surrogate):
            if tag in parse.tag:
                inflected = parse.inflect(grammemes) if grammemes else parse
                if inflected is not None:
                    return inflected.word.capitalize()
        return surrogate

    # --- dates -------------------------------------------------------------------------------------------------
    def _replace_date(self, value: str) -> str | None:
        m = re.fullmatch(r"(\d{1,2})([./-])(\d{1,2})\2(\d{2,4})", value)
        if m:
            a, sep, b, y = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
            year = y if y > 99 else 2000 + y if y < 50 else 1900 + y
            day, month = (b, a) if sep == "/" and a <= 12 else (a, b)
            shifted = _safe_shift(year, month, day, self._date_shift)
            if shifted is None:
                return None
            first, second = (shifted.month, shifted.day) if sep == "/" and a <= 12 else (shifted.day, shifted.month)
            ylen = len(m.group(4))
            year_text = f"{shifted.year % (10**ylen):0{ylen}d}"
            return f"{first:0{len(m.group(1))}d}{sep}{second:0{len(m.group(3))}d}{sep}{year_text}"
        m = re.fullmatch(r"(\d{4})([-./])(\d{1,2})\2(\d{1,2})", value)
        if m:
            shifted = _safe_shift(int(m.group(1)), int(m.group(3)), int(m.group(4)), self._date_shift)
            if shifted is None:
                return None
            return f"{shifted.year}{m.group(2)}{shifted.month:02d}{m.group(2)}{shifted.day:02d}"
        m = re.fullmatch(r"(\d{1,2})\s+(\w+?)(\s+\d{4}.*)?", value)
        if m and m.group(2).lower()[:3] in {x[:3] for x in _MONTHS_RU_GEN}:
            month = [x[:3] for x in _MONTHS_RU_GEN].index(m.group(2).lower()[:3]) + 1
            year_m = re.search(r"\d{4}", value)
            shifted = _safe_shift(int(year_m.group()) if year_m else 2000, month, int(m.group(1)), self._date_shift)
            if shifted is None:
                return None
            tail = f" {shifted.year} г." if year_m else ""
            return f"{shifted.day} {_MONTHS_RU_GEN[shifted.month - 1]}{tail}"
        m = re.fullmatch(r"([A-Z][a-z]+)\.?\s+(\d{1,2})(?:st|nd|rd|th)?(?:,?\s+(\d{4}))?", value)
        if m and m.group(1)[:3] in {x[:3] for x in _MONTHS_EN}:
            month = [x[:3] for x in _MONTHS_EN].index(m.group(1)[:3]) + 1
            year = int(m.group(3)) if m.group(3) else 2000
            shifted = _safe_shift(year, month, int(m.group(2)), self._date_shift)
            if shifted is None:
                return None
            tail = f", {shifted.year}" if m.group(3) else ""
            return f"{_MONTHS_EN[shifted.month - 1]} {shifted.day}{tail}"
        if re.fullmatch(r"(?:19|20)\d\d", value):
            return str(int(value) + self._date_shift.days // 365)
        return None

    # --- contacts and identifiers ------------------------------------------------------------------------------
    def _replace_phone(self, value: str) -> str:
        # The country/trunk prefix stays (+7, 8, +1, +44): it says which format the number has, not who it is.
        m = re.match(r"\+\d{1,3}|8(?=[\s(-]*9)", value)
        prefix = m.group() if m else ""
        # Keyed by the last 10 digits, so "+7 (912) ..." and "8 912 ..." (one number) get one surrogate.
        return prefix + self._digits_like("PHONE:" + re.sub(r"\D", "", value)[-10:], value[len(prefix) :])

    def _replace_email(self, value: str) -> str:
        return f"user{self._number('email:' + value.lower(), 10**6):06d}@example.org"

    def _replace_url(self, value: str) -> str:
        return f"https://example.org/r{self._number('url:' + value.lower(), 10**6):06d}"

    def _replace_ip(self, value: str) -> str:
        n = self._number("ip:" + value, 256**3)
        return f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}"

    def _replace_age(self, value: str) -> str:
        return "90"  # HIPAA Safe Harbor: every age over 89 is reported as 90 or older

    def _replace_address(self, value: str) -> str:
        key = "address:" + re.sub(r"\W+", " ", value.lower()).strip()
        number = self._number(key + "#", 98) + 1
        if _CYR.search(value):
            if re.search(r"ул|пр|пер|б-р|бульвар|шоссе|наб|пл\.|площад|д\.|дом", value):
                return f"ул. {self._pick(key, STREETS_RU)}, д. {number}"
            return self._pick(key, CITIES_RU)
        if any(ch.isdigit() for ch in value):
            return f"{number} {self._pick(key, STREETS_EN)} Street"
        return self._pick(key, CITIES_EN)

    def _replace_org(self, value: str) -> str:
        number = self._number("org:" + value.lower(), 98) + 1
        return f"Больница № {number}" if _CYR.search(value) else f"General Hospital {number}"


def _safe_shift(year: int, month: int, day: int, shift: timedelta) -> date | None:
    try:
        return date(year, month, day) + shift
    except ValueError:
        return None


def _en_first_names() -> frozenset[str]:
    from medscribe.phi.rules_en import first_names_en

    return first_names_en()
