"""Labeled PHI evaluation corpus: synthetic clinical sentences (English and Russian) with character spans.

    from medscribe.phi.corpus import generate_corpus
    docs = generate_corpus(n_per_language=600, seed=13)   # deterministic for a seed
    docs[0] -> {"id", "lang", "kind": "phi"|"control", "text", "spans": [[start, end, type], ...]}

Each "phi" document is one to two PHI sentences (a template with typed slots) among PHI-free report
sentences; each "control" document holds the things that must stay untouched (eponyms in every case,
measurements, lab values, vertebra levels, ICD codes, BI-RADS, durations, size-like decimals). Values come from
`corpus_lists` (held out from every detector list) and from number generators (valid SNILS/INN/OMS checksums).
"""

from __future__ import annotations

import random
import re
import string

from medscribe.phi import corpus_lists as L
from medscribe.phi.corpus_templates import CONTROLS, FILLERS, TEMPLATES
from medscribe.phi.corpus_templates_heldout import (
    CONTROLS_BLIND,
    CONTROLS_FINAL,
    CONTROLS_HELDOUT,
    TEMPLATES_BLIND,
    TEMPLATES_FINAL,
    TEMPLATES_HELDOUT,
)
from medscribe.phi.corpus_titles import (
    COMMON_SURNAMES_EN,
    COMMON_SURNAMES_EN_B,
    COMMON_SURNAMES_RU,
    COMMON_SURNAMES_RU_B,
    CONTROLS_TITLES,
    CONTROLS_TITLES_B,
    EPONYM_SURNAMES_EN,
    EPONYM_SURNAMES_EN_B,
    EPONYM_SURNAMES_RU,
    EPONYM_SURNAMES_RU_B,
    PATH_CONTROLS,
    PATH_CONTROLS_B,
    PATH_TEMPLATES,
    PATH_TEMPLATES_B,
    TEMPLATES_TITLES,
    TEMPLATES_TITLES_B,
)
from medscribe.phi.ids import make_inn, make_oms, make_snils

# Written in this order: "dev" (the rules were developed on it), then "heldout", "blind", "final" and "titles"
# (surnames that are eponyms or common words, issue 20), each run blind once, its first-run numbers recorded in
# docs/phi.md, and only then the rules fixed.
TEMPLATE_SETS = {
    "dev": (TEMPLATES, CONTROLS),
    "heldout": (TEMPLATES_HELDOUT, CONTROLS_HELDOUT),
    "blind": (TEMPLATES_BLIND, CONTROLS_BLIND),
    "final": (TEMPLATES_FINAL, CONTROLS_FINAL),
    "titles": (TEMPLATES_TITLES, CONTROLS_TITLES),
    "titles_b": (TEMPLATES_TITLES_B, CONTROLS_TITLES_B),
}
PATH_SETS = {"paths": (PATH_TEMPLATES, PATH_CONTROLS), "paths_b": (PATH_TEMPLATES_B, PATH_CONTROLS_B)}
_EPONYM_POOLS = {
    "EPO": {"ru": EPONYM_SURNAMES_RU + COMMON_SURNAMES_RU, "en": EPONYM_SURNAMES_EN + COMMON_SURNAMES_EN},
    "EPB": {"ru": EPONYM_SURNAMES_RU_B + COMMON_SURNAMES_RU_B, "en": EPONYM_SURNAMES_EN_B + COMMON_SURNAMES_EN_B},
}
CASES = ("nom", "gen", "dat", "acc", "ins", "loc")
MONTHS_RU_GEN = ("января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября", "октября",
                 "ноября", "декабря")
MONTHS_EN = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
             "November", "December")


def inflect_surname(surname: str, gender: str, case: str) -> str:
    """Russian surname declension by ending (-ов/-ев/-ин/-ын, -ский/-цкий, -ый/-ой, and indeclinables);
    double surnames part by part (`Петров-Водкин` -> `Петрова-Водкина`)."""
    if "-" in surname:
        return "-".join(inflect_surname(part, gender, case) for part in surname.split("-"))
    idx = CASES.index(case)
    for stem_end, masc, fem in (
        ("ский", ("ский", "ского", "скому", "ского", "ским", "ском"), ("ская", "ской", "ской", "скую", "ской", "ской")),
        ("цкий", ("цкий", "цкого", "цкому", "цкого", "цким", "цком"), ("цкая", "цкой", "цкой", "цкую", "цкой", "цкой")),
        ("ный", ("ный", "ного", "ному", "ного", "ным", "ном"), ("ная", "ной", "ной", "ную", "ной", "ной")),
        ("ой", ("ой", "ого", "ому", "ого", "ым", "ом"), ("ая", "ой", "ой", "ую", "ой", "ой")),
    ):
        if surname.endswith(stem_end):
            stem = surname[: -len(stem_end)]
            return stem + (masc if gender == "m" else fem)[idx]
    if re.search(r"(?:ов|ев|ёв|ин|ын)$", surname):
        masc = ("", "а", "у", "а", "ым", "е")
        fem = ("а", "ой", "ой", "у", "ой", "ой")
        return surname + (masc if gender == "m" else fem)[idx]
    if gender == "m" and re.search(r"(?:ук|юк|ич|ак)$", surname):
        return surname + ("", "а", "у", "а", "ом", "е")[idx]
    if gender == "m" and re.search(r"ь$", surname):  # Коваль, Бондарь: soft stem
        return surname[:-1] + ("ь", "я", "ю", "я", "ем", "е")[idx]
    if gender == "m" and re.search(r"[жшчщц]$", surname):  # Кравец is not handled (fleeting vowel): -ом/-ем
        return surname + ("", "а", "у", "а", "ем" if surname.endswith("ц") else "ом", "е")[idx]
    if gender == "m" and re.search(r"[бвгдзклмнпрстфх]$", surname):  # Мороз, Волк, Даун, Мюллер
        return surname + ("", "а", "у", "а", "ом", "е")[idx]
    return surname  # -енко, -ко, -их, vowel endings and feminine consonant endings do not decline


def inflect_first_name(name: str, gender: str, case: str) -> str:
    idx = CASES.index(case)
    if name.endswith("ия"):
        return name[:-1] + ("я", "и", "и", "ю", "ей", "и")[idx]
    if name.endswith("а"):
        soft = name[-2] in "гкхжшщч"
        return name[:-1] + ("а", "и" if soft else "ы", "е", "у", "ой", "е")[idx]
    if name.endswith("й"):
        return name[:-1] + ("й", "я", "ю", "я", "ем", "е")[idx]
    if gender == "f":
        return name  # Нелли
    return name + ("", "а", "у", "а", "ом", "е")[idx]


def inflect_patronymic(base: str, gender: str, case: str) -> str:
    idx = CASES.index(case)
    if gender == "m":
        return base + ("", "а", "у", "а", "ем", "е")[idx]
    stem = base[:-2]  # -ич -> -на
    return stem + ("на", "ны", "не", "ну", "ной", "не")[idx]


class ValueMaker:
    """Random PHI values of every type, in the formats clinical text uses."""

    def __init__(self, rng: random.Random):
        self.r = rng

    def digits(self, n: int) -> str:
        return "".join(self.r.choice(string.digits) for _ in range(n))

    def ru_name(self, form: str, case: str) -> str:
        r = self.r
        first, gender = r.choice(L.FIRST_NAMES_RU)
        surname = inflect_surname(r.choice(L.SURNAMES_RU), gender, case)
        patronymic = r.choice(L.PATRONYMIC_BASES_RU)
        initials = f"{first[0]}.{patronymic[0]}."
        if form == "full":
            return f"{surname} {inflect_first_name(first, gender, case)} {inflect_patronymic(patronymic, gender, case)}"
        if form == "io":
            return f"{inflect_first_name(first, gender, case)} {inflect_patronymic(patronymic, gender, case)}"
        if form == "init_after":
            return f"{surname} {initials}" if r.random() < 0.7 else f"{surname} {first[0]}. {patronymic[0]}."
        if form == "init_before":
            return f"{initials} {surname}"
        return surname

    def epo_ru_name(self, form: str, case: str, pool: str = "EPO") -> str:
        """A Russian name whose surname is an eponym or a common word (corpus_titles)."""
        r = self.r
        first, gender = r.choice(L.FIRST_NAMES_RU)
        surname = inflect_surname(r.choice(_EPONYM_POOLS[pool]["ru"]), gender, case)
        patronymic = r.choice(L.PATRONYMIC_BASES_RU)
        io = f"{inflect_first_name(first, gender, case)} {inflect_patronymic(patronymic, gender, case)}"
        return {"surname": surname, "full": f"{surname} {io}", "io_last": f"{io} {surname}",
                "init_after": f"{surname} {first[0]}.{patronymic[0]}.",
                "init_before": f"{first[0]}.{patronymic[0]}. {surname}"}[form]

    def epo_en_name(self, form: str, pool: str = "EPO") -> str:
        r = self.r
        first, last = r.choice(L.FIRST_NAMES_EN), r.choice(_EPONYM_POOLS[pool]["en"])
        return {"full": f"{first} {last}", "last": last, "initial": f"{first[0]}. {last}"}[form]

    def file_name_part(self, lang: str, form: str) -> str:
        """One part of a name as export file names write it: `Ivanov`, `ivanov`, `I`, `Иванов И.И.`."""
        r = self.r
        if lang == "ru":
            first, gender = r.choice(L.FIRST_NAMES_RU)
            surname = r.choice(L.SURNAMES_RU + EPONYM_SURNAMES_RU + COMMON_SURNAMES_RU)
            if gender == "f":
                surname = inflect_surname(surname, "f", "nom")
            patronymic = r.choice(L.PATRONYMIC_BASES_RU)
            return {
                "surname": surname, "surname_upper": surname.upper(), "surname_lower": surname.lower(),
                "first": first, "initial": first[0], "init_after": f"{surname} {first[0]}.{patronymic[0]}.",
                "full": f"{surname} {first} {inflect_patronymic(patronymic, gender, 'nom')}",
                "translit": transliterate(surname), "translit_lower": transliterate(surname).lower(),
                "initial_latin": transliterate(first[0]).upper()[:1],
            }[form]
        first = r.choice(L.FIRST_NAMES_EN)
        last = r.choice(L.SURNAMES_EN + EPONYM_SURNAMES_EN + COMMON_SURNAMES_EN).replace(" ", "")
        return {"last": last, "first": first, "lower_last": last.lower(), "lower_first": first.lower(),
                "upper_last": last.upper(), "upper_first": first.upper(), "initial_latin": first[0]}[form]

    def en_name(self, form: str) -> str:
        r = self.r
        first, last = r.choice(L.FIRST_NAMES_EN), r.choice(L.SURNAMES_EN)
        return {"full": f"{first} {last}", "last": last, "initial": f"{first[0]}. {last}",
                "last_first": f"{last}, {first}", "middle": f"{first} {r.choice(string.ascii_uppercase)}. {last}"}[form]

    def date(self, fmt: str) -> str:
        r = self.r
        y, m, d = r.randint(1930, 2025), r.randint(1, 12), r.randint(1, 28)
        return {
            "dmy": f"{d:02d}.{m:02d}.{y}", "dmy_short": f"{d:02d}.{m:02d}.{y % 100:02d}", "mdy": f"{m}/{d}/{y}",
            "mdy0": f"{m:02d}/{d:02d}/{y}", "iso": f"{y}-{m:02d}-{d:02d}",
            "ru_text": f"{d} {MONTHS_RU_GEN[m - 1]} {y} г.",
            "ru_text_noyear": f"{d} {MONTHS_RU_GEN[m - 1]}", "ru_year_g": f"{d} {MONTHS_RU_GEN[m - 1]} {y} года",
            "en_text": f"{MONTHS_EN[m - 1]} {d}, {y}", "en_dmy": f"{d} {MONTHS_EN[m - 1]} {y}",
            "en_short": f"{MONTHS_EN[m - 1][:3]} {d}, {y}", "year": f"{y}",
            "compact": f"{y}{m:02d}{d:02d}", "dmy_underscore": f"{d:02d}_{m:02d}_{y}",
            "mdy_dash": f"{m:02d}-{d:02d}-{y}",
        }[fmt]

    def phone(self, fmt: str) -> str:
        r, dg = self.r, self.digits
        code = "9" + dg(2)
        return {
            "ru_plus": f"+7 ({code}) {dg(3)}-{dg(2)}-{dg(2)}", "ru_8": f"8 {code} {dg(3)}-{dg(2)}-{dg(2)}",
            "ru_dash": f"8-{code}-{dg(3)}-{dg(2)}-{dg(2)}", "ru_compact": f"+7{code}{dg(7)}",
            "ru_city": f"8 (846) {dg(3)}-{dg(2)}-{dg(2)}", "us_paren": f"({r.randint(201, 989)}) {dg(3)}-{dg(4)}",
            "us_dash": f"{r.randint(201, 989)}-{dg(3)}-{dg(4)}", "us_plus": f"+1 {r.randint(201, 989)} {dg(3)} {dg(4)}",
            "intl": f"+44 20 {dg(4)} {dg(4)}", "us_dot": f"{r.randint(201, 989)}.{dg(3)}.{dg(4)}",
        }[fmt]

    def value(self, slot: str) -> str:
        r = self.r
        kind, _, arg = slot.partition(":")
        if kind == "EMAIL":
            user = r.choice(["ivanova", "j.smith", "kovalev78", "patient.care", "m_orlova", "drwhitlock", "helpdesk"])
            domain = r.choice(["mail.ru", "yandex.ru", "gmail.com", "clinic-med.org", "hospital.net"])
            return f"{user}{r.randint(1, 99)}@{domain}"
        if kind == "URL":
            host = r.choice(
                ["portal.medclinic.ru", "www.zdravitsa-med.ru", "records.lakeshore-imaging.com", "pacs.rivermed.org"]
            )
            return f"https://{host}/study/{self.digits(6)}" if r.random() < 0.6 else f"www.{host.split('.', 1)[1]}"
        if kind == "IP":
            return f"{r.randint(10, 223)}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
        if kind == "SNILS":
            s = make_snils(r)
            return s if arg != "plain" else s.replace("-", "").replace(" ", "")
        if kind == "INN":
            return make_inn(r, person=True)
        if kind == "OMS":
            o = make_oms(r)
            return o if arg != "grouped" else " ".join(o[i : i + 4] for i in range(0, 16, 4))
        if kind == "PASSPORT":
            return {"ru": f"{self.digits(2)} {self.digits(2)} {self.digits(6)}",
                    "ru_no": f"{self.digits(4)} № {self.digits(6)}",
                    "en": f"{r.choice(string.ascii_uppercase)}{self.digits(8)}"}[arg or "ru"]
        if kind == "ID":
            return {"num": self.digits(r.randint(5, 8)), "slash": f"{self.digits(5)}/{r.randint(18, 25)}",
                    "dash": f"{r.randint(2018, 2025)}-{self.digits(6)}", "alpha": f"A{self.digits(7)}",
                    "ssn": f"{r.randint(100, 899)}-{self.digits(2)}-{self.digits(4)}",
                    "ru_alpha": f"КТ-{self.digits(5)}"}[arg or "num"]
        if kind == "AGE":
            return str(r.randint(90, 104))
        if kind == "PHONE":
            return self.phone(arg)
        if kind == "DATE":
            return self.date(arg)
        if kind == "NAME_RU":
            form, _, case = arg.partition("/")
            return self.ru_name(form, case or "nom")
        if kind == "NAME_EN":
            return self.en_name(arg)
        if kind in ("NAME_EPO_RU", "NAME_EPB_RU"):
            form, _, case = arg.partition("/")
            return self.epo_ru_name(form, case or "nom", kind.split("_")[1])
        if kind in ("NAME_EPO_EN", "NAME_EPB_EN"):
            return self.epo_en_name(arg, kind.split("_")[1])
        if kind in ("NAME_FILE_RU", "NAME_FILE_EN"):
            return self.file_name_part(kind[-2:].lower(), arg)
        if kind == "ADDRESS_RU":
            city, city_loc = r.choice(L.CITIES_RU)
            street = f"{r.choice(L.STREET_TYPES_RU)} {r.choice(L.STREETS_RU)}"
            house = f"д. {r.randint(1, 150)}" + (f", кв. {r.randint(1, 300)}" if r.random() < 0.6 else "")
            return {"full": f"г. {city}, {street}, {house}", "street": f"{street}, {house}",
                    "city_loc": city_loc, "index": f"{r.randint(400000, 460000)}, г. {city}, {street}, {house}"}[arg]
        if kind == "ADDRESS_EN":
            street = f"{r.randint(1, 9999)} {r.choice(L.STREETS_EN)} {r.choice(L.STREET_TYPES_EN)}"
            city = r.choice(L.CITIES_EN)
            return {"full": f"{street}, {city}, {r.choice(L.STATES_EN)} {self.digits(5)}", "street": street,
                    "apt": f"{street}, Apt {r.randint(1, 40)}{r.choice('ABCD')}", "city": city}[arg]
        if kind == "ORG_RU":
            return {"gbuz": f"ГБУЗ «{r.choice(L.REGION_ADJ_RU)} городская больница № {r.randint(1, 12)}»",
                    "gkb": f"ГКБ № {r.randint(1, 90)}", "clinic": f"клиники «{r.choice(L.ORG_WORDS_RU)}»",
                    "ooo": f"ООО «{r.choice(L.ORG_WORDS_RU)}»",
                    "oblast": f"{r.choice(L.REGION_ADJ_RU)} областная клиническая больница",
                    "poly": f"поликлиники № {r.randint(1, 40)}"}[arg]
        if kind == "ORG_EN":
            return r.choice(L.ORG_NAMES_EN)
        raise KeyError(slot)


SLOT_RE = re.compile(r"\{([A-Z_]+(?::[a-z_0-9/]+)?)\}")


def fill(template: str, maker: ValueMaker) -> tuple[str, list[list]]:
    """Template -> (text, spans); the span type is the slot's base type (NAME_RU -> NAME)."""
    out, spans, cursor = [], [], 0
    length = 0
    for m in SLOT_RE.finditer(template):
        literal = template[cursor : m.start()]
        out.append(literal)
        length += len(literal)
        value = maker.value(m.group(1))
        phi_type = m.group(1).split(":")[0].split("_")[0]
        spans.append([length, length + len(value), phi_type])
        out.append(value)
        length += len(value)
        cursor = m.end()
    out.append(template[cursor:])
    return "".join(out), spans


def _doc(rng: random.Random, sentences: list[tuple[str, list[list]]], fillers: list[str]) -> tuple[str, list[list]]:
    parts = sentences + [(f, []) for f in rng.sample(fillers, k=rng.randint(0, 2))]
    rng.shuffle(parts)
    text, spans = "", []
    for sentence, sentence_spans in parts:
        if text:
            text += " "
        spans.extend([s + len(text), e + len(text), t] for s, e, t in sentence_spans)
        text += sentence
    return text, spans


def generate_corpus(
    n_per_language: int = 600, seed: int = 13, control_share: float = 0.25, templates: str = "dev"
) -> list[dict]:
    """`templates`: "dev", "heldout", "blind" or "final" (see TEMPLATE_SETS)."""
    template_sets, control_sets = TEMPLATE_SETS[templates]
    rng = random.Random(seed)
    maker = ValueMaker(rng)
    docs: list[dict] = []
    for lang in ("en", "ru"):
        n_control = int(n_per_language * control_share)
        for i in range(n_per_language):
            if i < n_control:
                chosen = rng.sample(control_sets[lang], k=rng.randint(1, 2))
                text, spans = _doc(rng, [(c, []) for c in chosen], FILLERS[lang])
                kind = "control"
            else:
                # Cycle through templates so that every PHI type is represented in proportion to its templates.
                template = template_sets[lang][(i - n_control) % len(template_sets[lang])]
                sentences = [fill(template, maker)]
                if rng.random() < 0.3:
                    sentences.append(fill(rng.choice(template_sets[lang]), maker))
                text, spans = _doc(rng, sentences, FILLERS[lang])
                kind = "phi"
            docs.append({"id": f"{templates}-{lang}-{i:05d}", "lang": lang, "kind": kind, "text": text, "spans": spans})
    return docs


_TRANSLIT = dict(zip(
    "абвгдеёжзийклмнопрстуфхцчшщъыьэюя",
    ["a", "b", "v", "g", "d", "e", "e", "zh", "z", "i", "y", "k", "l", "m", "n", "o", "p", "r", "s", "t", "u", "f",
     "kh", "ts", "ch", "sh", "shch", "", "y", "", "e", "yu", "ya"],
    strict=True,
))


def transliterate(word: str) -> str:
    """Russian -> Latin as passports and file names write it (`Щеткин` -> `Shchetkin`)."""
    out = []
    for ch in word:
        latin = _TRANSLIT.get(ch.lower(), ch)
        out.append(latin.capitalize() if ch.isupper() else latin)
    return "".join(out)


def generate_path_corpus(
    n_per_language: int = 300, seed: int = 13, control_share: float = 0.25, templates: str = "paths"
) -> list[dict]:
    """Export file paths (relative to the input folder) with name/date/ID spans, plus PHI-free controls.
    `templates`: "paths" (written with the path rules) or "paths_b" (written after them, run blind once)."""
    path_templates, path_controls = PATH_SETS[templates]
    rng = random.Random(seed)
    maker = ValueMaker(rng)
    docs = []
    for lang in ("en", "ru"):
        n_control = int(n_per_language * control_share)
        for i in range(n_per_language):
            if i < n_control:
                text, spans, kind = path_controls[lang][i % len(path_controls[lang])], [], "control"
            else:
                template = path_templates[lang][(i - n_control) % len(path_templates[lang])]
                (text, spans), kind = fill(template, maker), "phi"
            docs.append({"id": f"{templates}-{lang}-{i:05d}", "lang": lang, "kind": kind, "text": text, "spans": spans})
    return docs


def typical_reports(n: int, seed: int = 7, phi_share: float = 0.12) -> list[str]:
    """Report-like rows (3-6 PHI-free sentences, about one in eight with a PHI sentence) for throughput tests."""
    rng = random.Random(seed)
    maker = ValueMaker(rng)
    rows = []
    for _ in range(n):
        lang = "ru" if rng.random() < 0.7 else "en"
        sentences = rng.choices(FILLERS[lang], k=rng.randint(3, 6))
        if rng.random() < phi_share:
            sentences.insert(0, fill(rng.choice(TEMPLATES[lang]), maker)[0])
        rows.append(" ".join(sentences))
    return rows
