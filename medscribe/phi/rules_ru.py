"""Russian PHI rules: person names in every grammatical case, textual dates, addresses, organizations.

Names come from pymorphy3's dictionary (tags Surn/Name/Patr, with its suffix-based guesser for surnames it
has never seen), so `Иванова`, `Иванову`, `Ивановой` are all found without a surname list of our own; plus
initials (`Иванов И.И.`, `И.И. Иванов`) and context words (`пациентка`, `врач`). Eponyms (`болезнь
Паркинсона`, `по Сельдингеру`) are protected by lemma and by the word before them.

    from medscribe.phi.rules_ru import find_names_ru
    list(find_names_ru("Пациентка Петрова А.С., 1950 г.р."))
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

Span = tuple[int, int, str]

_UP = "А-ЯЁ"
_LO = "а-яё"
CAP_WORD_RE = re.compile(rf"(?<![\w-])[{_UP}][{_LO}]+(?:-[{_UP}][{_LO}]+)?(?![\w])")
MID_CAP_WORD_RE = re.compile(rf"[{_LO},]\s+([{_UP}][{_LO}]+(?:-[{_UP}][{_LO}]+)?)(?![\w])")
INITIALS_AFTER_RE = re.compile(rf"[{_UP}][{_LO}]+(?:-[{_UP}][{_LO}]+)?\s+[{_UP}]\.\s?(?:[{_UP}]\.)?")
INITIALS_BEFORE_RE = re.compile(rf"(?<![\w.])[{_UP}]\.\s?(?:[{_UP}]\.\s?)?[{_UP}][{_LO}]+(?:-[{_UP}][{_LO}]+)?")
PATRONYMIC_RE = re.compile(rf"[{_UP}][{_LO}]+(?:(?:ович|евич|ьич)(?:а|у|ем|е)?|(?:овн|евн|ичн)(?:а|ы|е|у|ой))(?![\w])")
SURNAME_SHAPE_RE = re.compile(
    r"(?:(?:ов|ев|ёв|ин|ын)(?:а|у|ым|ом|е|ой|ы)?|(?:ск|цк)(?:ий|ого|ому|им|ом|ая|ой|ую)|енко|ко|ук|юк|ич|их|ых|ян|дзе|швили)$"
)
WORD_BEFORE_RE = re.compile(rf"(?<![\w-])([{_UP}][{_LO}]+(?:-[{_UP}][{_LO}]+)?) $")
WORD_AFTER_RE = re.compile(rf" ([{_UP}][{_LO}]+)(?![\w])")
# Capitalized words that pymorphy can read as first names but are ordinary words in clinical text.
NON_NAMES_RU = frozenset(
    {"пол", "мир", "роза", "лев", "слава", "надежда", "любовь", "вера", "марс", "ветер", "луна", "дата",
     "акад", "проф", "доц", "зав"}  # title abbreviations ("Акад. Л.Р. Бурденко")
)
# Words after which the next capitalized words are a person, whatever pymorphy thinks of them.
# A title or a profession before a surname makes it a person even when the surname is also an eponym or a
# common word ("д-р Боткин", "проф. Корсакова", "неврологом Кузнецовым"): PERSON_CONTEXT_RE has no eponym veto.
_SPECIALISTS = (
    "хирург", "терапевт", "педиатр", "онколог", "невролог", "кардиолог", "уролог", "гинеколог", "эндокринолог",
    "офтальмолог", "травматолог", "анестезиолог", "реаниматолог", "гастроэнтеролог", "пульмонолог", "нефролог",
    "ревматолог", "гематолог", "инфекционист", "нейрохирург", "ортопед", "оториноларинголог", "отоларинголог",
    "дерматолог", "психиатр", "стоматолог", "флеболог", "маммолог", "проктолог", "колопроктолог",
    "профессор", "академик", "доцент", "ассистент", "ординатор",
)
_PERSON_CONTEXT = (
    # "врач УЗД X", "врачу приемного отделения X", "д-ром мед. наук X", "доктором медицинских наук X"
    r"(?i:(?:врач\w*|доктор\w*|д-р\w*|медсестр\w*)(?:\s+(?-i:[А-ЯЁ]{2,5})|\s+[а-яё]+(?:ого|его|ой|ей)\s+отделения|"
    r"\s+отделения|\s+мед(?:\.|ицинских)\s+наук)?|"
    r"пациент\w*|больн(?:ой|ая|ого|ому|ую|ым|ом)|фельдшер\w*|подписал\w*|подписан\w*|"
    r"лаборант\w*|рентгенолог\w*|заведующ\w*(?:\s+отделени\w*)?|зав\.(?:\s*отд(?:\.|елени\w*))?|гр\.|"
    r"граждан\w*|ФИО|Ф\.И\.О\.|подпись|исполнитель|проф\.|акад\.|доц\.|"
    # the noun's case endings only: "хирургом Жуковым", not "хирургического Центра"
    + "|".join(rf"{w}(?:а|у|ом|е|и|ы|ов|ам|ами)?" for w in _SPECIALISTS) + "|"
    r"(?:с\s+)?(?:мужем|женой|сыном|дочерью|матерью|отцом)|мать|отец|сын|дочь|муж|жена|"
    r"консультирован\w*|направил\w*|осмотрен\w*|оператор)\s*[:,—–]?\s+"
)
# The same context before a surname in capitals, as headers write it: "Пациент: ИВАНОВ", "Врач ПЕТРОВА АННА".
PERSON_CONTEXT_CAPS_RE = re.compile(
    # 4+ letters: the 3-letter capitals after such words are document acronyms ("Данные пациента: ИНН ...").
    _PERSON_CONTEXT + rf"([{_UP}]{{4,}}(?:-[{_UP}]{{3,}})?(?:\s+[{_UP}]{{3,}}){{0,2}})(?![\w-])"
)
PERSON_CONTEXT_RE = re.compile(
    _PERSON_CONTEXT + rf"([{_UP}]\.\s?(?:[{_UP}]\.\s?)?[{_UP}][{_LO}]+(?:-[{_UP}][{_LO}]+)?"
    rf"|[{_UP}][{_LO}]+(?:-[{_UP}][{_LO}]+)?(?:\s+[{_UP}][{_LO}]+){{0,2}}(?:\s+[{_UP}]\.\s?(?:[{_UP}]\.)?)?)",
)
# Eponyms and capitalized non-names seen in clinical Russian; matched on the lemma's start (all cases).
EPONYM_STEMS = (
    "паркинсон", "ходжкин", "даун", "крон", "сельдингер", "манту", "альцгеймер", "бехтерев", "кушинг", "аддисон",
    "грейвс", "базедов", "хашимото", "бейкер", "шморл", "пирогов", "бартолин", "вирхов", "боткин", "вильямс",
    "вильсон", "конн", "педжет", "рейно", "сьегрен", "шегрен", "барретт", "меккел", "коновалов", "кер", "ортнер",
    "ласег", "бабинск", "керниг", "брудзинск", "менетрие", "ходжкинск", "фаллопиев", "евстахиев", "гиппократ",
    "дуглас", "велллис", "виллиз", "глиссон", "лисфранк", "шопар", "ахилл", "пуарт", "зондерн", "кавасак",
    "гудпасчер", "вегенер", "марфан", "элерс", "тернер", "клайнфельтер", "эдвардс", "патау", "апгар", "глисон",
    "хаусфилд", "хаунсфилд", "доплер", "допплер", "вальсальв", "велс", "уэллс", "ренкин", "бозниак", "босняк",
    "фишер", "спетцлер", "гарден", "вебер", "нир", "вальдейер", "гартман", "бильрот", "ру", "виллебранд",
    "дюпюитрен", "бейкерова", "лимфом", "стюарт", "шершевск", "лериш", "морган", "гиршпрунг", "коллес", "смит",
    "монтеджи", "бартон", "беннетт", "хилл", "сакс", "гоше", "тея", "кристмас", "берет", "лайм", "эпштейн",
    "барр", "ньюйорк", "гринвич", "цельси", "кельвин", "рентген", "вассерман", "грам", "циль", "нильсен",
    "гис", "гален", "пуркинье", "вальдейер", "сильви", "монро", "мажанди", "люшк", "роландо", "брок", "вернике",
    "корсаков", "мейнерт", "ауэрбах", "мейсснер", "одди", "вирсунг", "санторини", "фатер", "трейц", "бауэр",
    "гартман", "кало", "морисон", "меккел", "мюллер", "вольф", "ранвье", "лангерганс", "купфер", "лейдиг",
    "сертоли", "граафов", "фаллоп", "евстахи", "кейт", "флак", "ашофф", "тавар", "бахман", "венкебах",
    "уипл", "виппл", "керли", "беннет", "ортнер", "мерфи", "щеткин", "блюмберг", "ровзинг", "ситковск",
    "пастернацк", "кохер", "мак-берни", "мак", "курвуазье", "кальве", "пертес", "шляттер", "осгуд", "кинбек",
    "шейерман", "фрайберг", "келер", "зудек", "форестье", "педжет", "юинг", "вильмс", "беркитт", "капоши",
    "гюртл", "кукенберг", "вирхов", "труазье", "шницлер", "крукенберг", "мондор", "титце", "педжетт",
    "лефор", "ле", "джефферсон", "хангман", "шанс", "сегонд", "банкарт", "хилл-сакс", "голеацци", "монтеджа",
    "мальгень", "дюпюитрен", "лисфранк", "стенер", "роландо", "тиллауx", "мезоннев", "джонс", "потт",

)
# Words before a capitalized word that make it an eponym ("синдром Дауна", "по Сельдингеру").
EPONYM_CONTEXT_RE = re.compile(
    r"(?:болезн\w*|синдром\w*|симптом\w*|проб\w*|реакци\w*|метод\w*|операци\w*|шкал\w*|классификаци\w*|"
    r"критери\w*|пузыр\w*|узл\w*|триад\w*|грыж\w*|клетк\w*|киста|кисты|кисту|кистой|по|им\.|имени|"
    r"тип\w*|перелом\w*|индекс\w*|доступ\w*|точк\w*|линии|линия|позиции|позиция|угол|угла|пакет\w*|"
    # anatomical nouns + a capitalized genitive are anatomical eponyms ("пучок Гиса", "вена Галена")
    r"пуч\w*|вен[аыуе]|вено\w*|артери\w*|ножк\w*|связк\w*|канал\w*|сфинктер\w*|ямк\w*|проток\w*|кольц\w*|"
    r"мешк\w*|мешок|карман\w*|отверсти\w*|борозд\w*|извилин\w*|остров\w*|тельц\w*|желез\w*|клетк\w*|"
    r"волокн\w*|пространств\w*|треугольник\w*|сплетени\w*|узел|узла|узлу|ампул\w*|складк\w*|сосочк\w*|"
    r"перешеек|перешейка|сегмент\w*|зон[аыуе]|пол[ао]ст\w*|луковиц\w*|дивертикул\w*|аномали\w*|"
    r"деформаци\w*|признак\w*|феномен\w*|рефлекс\w*|закон\w*|формул\w*|аппарат\w*|повязк\w*|"
    r"шин[аыуе]|тест\w*|модификаци\w*|по\s+методу|в\s+модификации|"
    # ointments, sutures and instruments named after people ("мазь Вишневского", "шов Донати", "зонд Блэкмора")
    r"маз[ьи]|мазью|шов|шва|швом|швы|зажим\w*|игл[аыуой]|катетер\w*|зонд\w*|раствор\w*)\s+$",
    re.IGNORECASE,
)
# A sentence start, also behind an opening quote: `{"result": "Рентгенологических ...` (the answer JSON of a
# chat turn) or `: «Без патологии»` start a sentence there, the capital does not name a person.
SENTENCE_START_RE = re.compile(r"(?:^|[.!?:;\n]\s*|[\n•·-]\s*|\d[.)]\s*)(?:[\"'«„“\[{]\s*)?$")
_NAME_TAGS = ("Surn", "Name", "Patr")

MONTHS_RU = (
    r"(?:январ[яье]|феврал[яье]|марта?|марте|апрел[яье]|ма[яйе]|июн[яье]|июл[яье]|августа?|августе|сентябр[яье]|"
    r"октябр[яье]|ноябр[яье]|декабр[яье])"
)
DATE_RU_RE = re.compile(
    rf"(?<!\d)(?:(?:0?[1-9]|[12]\d|3[01])(?:-?го)?\s+{MONTHS_RU}(?:\s+(?:19|20)\d\d(?:\s*(?:г\.|года|г\b))?)?"
    rf"|{MONTHS_RU}\s+(?:19|20)\d\d(?:\s*(?:г\.|года|г\b))?)",
    re.IGNORECASE,
)
BIRTH_YEAR_RE = re.compile(r"(?<!\d)((?:19|20)\d\d)\s*(?:г\.\s*р\.?|года рождения|г\.р\.|гр\.)", re.IGNORECASE)

_STREET_TYPES = (
    r"ул\.|улиц[аеыу]|пр-т|пр-кт|просп\.|проспект[аеу]?|пер\.|переул(?:ок|ке|ка)|б-р|бульвар[аеу]?|ш\.|шоссе|"
    r"наб\.|набережн(?:ая|ой|ую)|пл\.|площад(?:ь|и)|мкр\.?|микрорайон[аеу]?|проезд[аеу]?|тупик[аеу]?|аллея|аллее"
)
_NAME_WORDS = rf"(?:\d+-?(?:я|й|го|ая)\s+)?[{_UP}0-9][\w-]*(?:\s+[{_UP}][\w-]*){{0,3}}"
_HOUSE = (
    r"(?:,?\s*(?:д\.|дом)\s*\d+[а-яА-Я]?(?:/\d+)?)?(?:,?\s*(?:корп\.|к\.|корпус|стр\.|строение)\s*\d+)?"
    r"(?:,?\s*(?:кв\.|квартира|оф\.|офис)\s*\d+)?"
)
ADDRESS_RU_RE = re.compile(
    rf"(?:(?<![\w])\d{{6}},?\s*)?"
    rf"(?:(?<!\d )(?:г\.|город[аеу]?|пос\.|пгт|с\.|дер\.|деревн[яеи])\s*[{_UP}][\w-]+(?:[-\s][{_UP}][\w-]+)?,?\s*)?"
    rf"(?:(?:{_STREET_TYPES})\s*{_NAME_WORDS}|{_NAME_WORDS}\s+(?:{_STREET_TYPES}))(?![\w]){_HOUSE}"
    rf"|(?:(?<![\w])\d{{6}},?\s*)?(?<![\w])(?<!\d )(?:г\.|пос\.|пгт|дер\.)\s*[{_UP}][\w-]+(?:[-\s][{_UP}][\w-]+)?"
    rf"|(?<![\w])(?:д\.|дом)\s*\d+[а-я]?(?:,?\s*(?:кв\.|квартира)\s*\d+)"
    rf"|[{_UP}][{_LO}]+(?:ск(?:ая|ой|ую)|ов(?:ская|ской)?)\s+област(?:ь|и)|[{_UP}][{_LO}]+ск(?:ий|ого|ом)\s+(?:район|край|края|крае|районе|района)",
)
LIVES_IN_RU_RE = re.compile(
    rf"(?i:прожива\w+|зарегистрирован\w*|житель\w*|адрес\w*|прибыл\w*\s+из|приехал\w*\s+из|из\s+города)\s*:?\s+(?:в\s+|по\s+адресу:?\s+)?"
    rf"([{_UP}][\w-]+(?:[-\s][{_UP}][\w-]+)?)",
)
_ORG_HEADS = (
    r"ГБУЗ|ГАУЗ|ГУЗ|ГБУ|ФГБУ|ФГБОУ\s+ВО|ФГБОУ|ФГАОУ|ФГБНУ|ФГУП|МБУЗ|МУЗ|ООО|ОАО|ПАО|ЗАО|АО|НИИ|НМИЦ|ФНКЦ|ГКБ|ДГКБ|ГКП|"
    r"ОКБ|ОДКБ|ЦРБ|КДЦ|МСЧ|ФМБА|ДГП|ГП|ЛДЦ|МРТ-центр|СОКБ|ОКОД|ООД|ГКОД|МОНИКИ|ЦКБ|ГВКГ|ГНЦ|МКНЦ"
)
ORG_RU_RE = re.compile(
    rf"(?<![\w])(?:{_ORG_HEADS})(?![\w])(?:\s+(?:[{_UP}]{{2,}}|[{_UP}][\w-]+|им\.|имени|№\s*\d+|«[^»\n]{{1,80}}»|\"[^\"\n]{{1,80}}\"))*"
    rf"|(?:[{_UP}][{_LO}]+(?:-[{_UP}]?[{_LO}]+)?\s+)?(?:(?:[{_UP}]?[{_LO}]+(?:ая|ой|ую|ий|ый|ого|ом|ое|ых)\s+){{0,3}})"
    rf"(?:больниц[аеуыи]|поликлиник[аеуи]|госпитал[ьеяю]|диспансер[аеу]?|клиник[аеуи]|медицинск\w+ центр\w*|"
    rf"центр[аеу]?|медсанчаст[ьи]|роддом[аеу]?|санатори[йяюи]|лаборатори[яиюей]|институт[аеу]?|университет[аеу]?|"
    rf"академи[яиюей]|госпиталь)"
    rf"(?:\s*(?:№\s*\d+|им(?:\.|ени)\s+[^,.;()\n]{{2,40}}?(?=[,.;()\n]|$)|«[^»\n]{{1,80}}»|\"[^\"\n]{{1,80}}\"))+"
    rf"|(?:клиник\w*|центр\w*|лаборатори\w*|компани\w*|медцентр\w*)\s+«[^»\n]{{1,80}}»"
    rf"|[{_UP}][{_LO}]+(?:ск(?:ая|ой|ую|ий|ого)|ов(?:ская|ской))\s+(?:(?:област|город|краев|республиканск|районн|"
    rf"центральн|клиническ|детск|онкологическ|многопрофильн)\w*\s+){{1,4}}(?:больниц\w*|поликлиник\w*|госпитал\w*|диспансер\w*|центр\w*)",
)


@lru_cache(maxsize=1)
def morph():
    import pymorphy3

    return pymorphy3.MorphAnalyzer()


_EPONYM_ENDINGS = ("", "а", "у", "ом", "ым", "е", "ой", "ы", "и", "я", "ю", "ем", "ий", "ая", "ого", "ому", "ская",
                   "ской",
                   "ский", "ского", "скую", "ова", "ову", "овой", "ова", "овский", "овская")


@lru_cache(maxsize=100_000)
def _is_eponym_lemma(word: str) -> bool:
    """The word is a known eponym in some case: the stem plus at most a case/adjective ending.

    Matching whole stem + ending (not a bare prefix) keeps "Леонов" from matching the stem "ле" (Le Fort).
    """
    candidates = {word.lower()} | {p.normal_form for p in morph().parse(word)[:3]}
    for form in candidates:
        for stem in EPONYM_STEMS:
            if form.startswith(stem) and form[len(stem) :] in _EPONYM_ENDINGS:
                return True
    return False


@lru_cache(maxsize=200_000)
def word_kind(word: str) -> tuple[str, float]:
    """('name'|'geo'|'other', score of the best name/geo parse); cached because vocabularies are small."""
    if _is_eponym_lemma(word):
        return "other", 0.0
    parses = morph().parse(word)
    top = parses[0]
    tag = str(top.tag)
    if any(t in tag for t in _NAME_TAGS):
        return "name", top.score if top.is_known else 0.5 * top.score
    if "Geox" in tag:
        return "geo", top.score
    best = max((p.score for p in parses if any(t in str(p.tag) for t in _NAME_TAGS)), default=0.0)
    return ("name", best * 0.5) if best > 0 else ("other", 0.0)


@lru_cache(maxsize=100_000)
def could_be_surname(word: str) -> bool:
    """A name by the dictionary, a surname-shaped word, or one the dictionary does not know; not a common word."""
    if word.lower() in NON_NAMES_RU:
        return False
    if SURNAME_SHAPE_RE.search(word) and not _is_eponym_lemma(word):
        return True
    kind, _ = word_kind(word)
    if kind == "name":
        return True
    if kind == "geo" or _is_eponym_lemma(word):
        return False
    return not morph().word_is_known(word.lower())


def _at_sentence_start(text: str, start: int) -> bool:
    return SENTENCE_START_RE.search(text, max(0, start - 4), start) is not None or start == 0


def _is_eponym_context(text: str, start: int) -> bool:
    return _eponym_window(text[max(0, start - 24) : start])


@lru_cache(maxsize=100_000)
def _eponym_window(window: str) -> bool:
    # Cached per 24-character window: the words before a capital repeat a lot in report text, and this
    # case-insensitive alternation of ~100 words costs ~5 us per search.
    return EPONYM_CONTEXT_RE.search(window) is not None


# Headers often write the surname (or the whole name) in capitals: "ИВАНОВ И.И.", "ИВАНОВА МАРИЯ ПЕТРОВНА".
CAPS_INITIALS_RE = re.compile(rf"(?<![\w-])([{_UP}]{{3,}})\s+[{_UP}]\.\s?(?:[{_UP}]\.)?")
CAPS_PATRONYMIC_RE = re.compile(
    rf"(?<![\w-])(?:[{_UP}]{{2,}}\s+){{1,2}}[{_UP}]+(?:ОВИЧ|ЕВИЧ|ЬИЧ|ОВН|ЕВН|ИЧН)[{_UP}]{{0,3}}(?![\w])"
)
CAPS_RUN_RE = re.compile(rf"[{_UP}]{{3}}")
_VOWELS_RU = set("аеёиоуыэюя")


def _pronounceable(word: str) -> bool:
    """A word with a vowel in every four letters: surnames are (ИВАНОВ, ШМИДТ), acronyms mostly not (ФГДС, МСКТ)."""
    return sum(ch in _VOWELS_RU for ch in word.lower()) * 4 >= len(word)


def _caps_word_is_name(word: str) -> bool:
    """A word written in capitals, title-cased (`Иванов`): a dictionary name or a surname shape, not an eponym."""
    return (word_kind(word)[0] == "name" or SURNAME_SHAPE_RE.search(word) is not None) and not _is_eponym_lemma(word)


AFTER_NUMBER_RE = re.compile(r"\d\s?$")
INITIAL_HINT_RE = re.compile(rf"[{_UP}]\.")
PATRONYMIC_HINT_RE = re.compile(r"ович|евич|ьич|овн|евн|ичн")
# PERSON_CONTEXT_RE starts with a case-insensitive alternation that Python's `re` tries at every position of
# the text (~45 us per report row). Its words, lowercased: where none of them occurs, it cannot match, and
# `str.find` locates them ~10x faster. The family words may follow "с " (`с мужем`).
_PERSON_WORDS = (
    "пациент", "больн", "врач", "доктор", "д-р", "медсестр", "фельдшер", "лаборант", "рентгенолог", "заведующ",
    "зав.", "гр.", "граждан", "фио", "ф.и.о.", "подпись", "исполнитель", "консультирован", "направил", "осмотрен",
    "оператор", "мать", "отец", "сын", "дочь", "муж", "жена", "проф.", "акад.", "доц.", "подписа",
    *_SPECIALISTS,
)
_FAMILY_AFTER_S = ("мужем", "женой", "сыном", "дочерью", "матерью", "отцом")
# Characters whose case-insensitive match in `re` is not `str.lower()` equality (U+1C80-U+1C88, old Cyrillic
# letter forms that `re` treats as в, д, о, с, т, ъ, ѣ): texts with them take the plain regex scan.
_CASE_VARIANTS_RE = re.compile("[\u1c80-\u1c88]")


def _person_context_starts(text: str) -> list[int] | None:
    """Positions where PERSON_CONTEXT_RE may match (a superset), or None when only a full scan is exact."""
    low = text.lower()
    if len(low) != len(text) or _CASE_VARIANTS_RE.search(text):
        return None
    starts: set[int] = set()
    for word in _PERSON_WORDS:
        i = low.find(word)
        while i >= 0:
            starts.add(i)
            i = low.find(word, i + 1)
    for word in _FAMILY_AFTER_S:
        i = low.find(word)
        while i >= 0:
            starts.add(i)
            j = i
            while j > 0 and low[j - 1].isspace():
                j -= 1
            if j < i and j > 0 and low[j - 1] == "с":  # "с\s+мужем": the match starts at the "с"
                starts.add(j - 1)
            i = low.find(word, i + 1)
    return sorted(starts)


def _person_context_matches(text: str, regex: re.Pattern = PERSON_CONTEXT_RE) -> Iterator[re.Match]:
    """Exactly `regex.finditer(text)` for a regex that starts with _PERSON_CONTEXT, trying only the positions
    where a context word starts."""
    starts = _person_context_starts(text)
    if starts is None:
        yield from regex.finditer(text)
        return
    end = 0
    for pos in starts:
        if pos < end:
            continue  # finditer resumes after the previous match
        m = regex.match(text, pos)
        if m:
            yield m
            end = m.end()


@lru_cache(maxsize=200_000)
def _cap_word_verdict(word: str) -> int:
    """0: not a name; 1: a name only in mid-sentence; 2: a name even at a sentence start (confident)."""
    if word.lower() in NON_NAMES_RU:
        return 0
    kind, score = word_kind(word)
    if kind == "name":
        return 2 if score >= 0.3 else 1
    return 1 if kind == "other" and could_be_surname(word) else 0


def find_names_ru(text: str) -> Iterator[Span]:
    spans: list[Span] = []
    # Cheap hint searches first: most candidate rows have one kind of evidence, not all of them.
    if INITIAL_HINT_RE.search(text):
        for m in INITIALS_AFTER_RE.finditer(text):
            surname = m.group().split()[0]
            # "Осмотрел И.И. Иванов": a verb before initials is not a surname; the initials go with the next word
            if could_be_surname(surname) and not _is_eponym_context(text, m.start()):
                spans.append((m.start(), m.end(), "NAME"))
        for m in INITIALS_BEFORE_RE.finditer(text):
            surname = re.split(r"[.\s]+", m.group())[-1]
            if could_be_surname(surname):
                spans.append((m.start(), m.end(), "NAME"))
    for m in CAPS_INITIALS_RE.finditer(text):
        word = m.group(1).capitalize()  # acronyms ("ОБП В.В.") are unknown words: ask for a name or surname shape
        if _caps_word_is_name(word):
            spans.append((m.start(), m.end(), "NAME"))
    for m in CAPS_PATRONYMIC_RE.finditer(text):
        spans.append((m.start(), m.end(), "NAME"))
    if PATRONYMIC_HINT_RE.search(text):
        for m in PATRONYMIC_RE.finditer(text):
            spans.append((m.start(), m.end(), "NAME"))
    for m in _person_context_matches(text):
        spans.append((m.start(1), m.end(1), "NAME"))
    if CAPS_RUN_RE.search(text):
        for m in _person_context_matches(text, PERSON_CONTEXT_CAPS_RE):
            word = m.group(1).split()[0].split("-")[0].capitalize()  # acronyms (МРТ, УЗИ) have no name shape
            # after a person context an eponym or a word the dictionary does not know is a surname too
            # ("Врач: БОТКИН"); known common words are not ("Пациент: ПОДПИСЬ")
            if word.lower() not in NON_NAMES_RU and _pronounceable(word) and (
                _caps_word_is_name(word) or _is_eponym_lemma(word) or not morph().word_is_known(word.lower())
            ):
                spans.append((m.start(1), m.end(1), "NAME"))
    for m in CAP_WORD_RE.finditer(text):
        verdict = _cap_word_verdict(m.group())
        if verdict == 0:
            continue
        # Sentence-initial capitals are mostly ordinary words: there only a confident dictionary name counts.
        # Mid-sentence capitals in Russian are proper nouns (eponyms and places are excluded below).
        # (Checked first: it is the cheapest test and rejects most capitals of report text.)
        if verdict == 1 and _at_sentence_start(text, m.start()):
            continue
        if _is_eponym_context(text, m.start()):
            continue
        if AFTER_NUMBER_RE.search(text, max(0, m.start() - 3), m.start()):
            continue  # "3 Тл", "5 Гр": a capitalized unit after a number, not a person
        spans.append((m.start(), m.end(), "NAME"))
    yield from _extend_names(text, spans) if spans else ()


def _extend_names(text: str, spans: list[Span]) -> list[Span]:
    """Grow each name over an adjacent surname before it and first name/patronymic after it
    ("Сидоренко Олег Павлович" at a sentence start, where the surname alone is not trusted)."""
    out = list(spans)
    frontier = list(spans)
    for _ in range(2):  # "Фамилия Имя" before a patronymic: two steps back at most
        grown = []
        for start, end, _ in frontier:
            before = WORD_BEFORE_RE.search(text, max(0, start - 40), start)
            if before and not _is_eponym_context(text, before.start(1)):
                word = before.group(1)
                if could_be_surname(word) or _has_first_name_parse(word):
                    grown.append((before.start(1), end, "NAME"))
            after = WORD_AFTER_RE.match(text, end)
            if after and after.group(1).lower() not in NON_NAMES_RU and (
                word_kind(after.group(1))[0] == "name"
                # after a first name a capitalized word is the surname, even an eponym ("Мария Даун")
                or (_ends_with_first_name(text, start, end) and after.group(1)[:1].isupper()
                    and (could_be_surname(after.group(1)) or _is_eponym_lemma(after.group(1))))
            ):
                grown.append((start, after.end(1), "NAME"))
        out.extend(grown)
        frontier = grown
    return out


def _ends_with_first_name(text: str, start: int, end: int) -> bool:
    words = text[start:end].split()
    return bool(words) and _has_first_name_parse(words[-1].strip(".,"))


@lru_cache(maxsize=50_000)
def _has_first_name_parse(word: str) -> bool:
    return word.lower() not in NON_NAMES_RU and any("Name" in p.tag for p in morph().parse(word))


def find_dates_ru(text: str) -> Iterator[Span]:
    for m in DATE_RU_RE.finditer(text):
        yield m.start(), m.end(), "DATE"
    for m in BIRTH_YEAR_RE.finditer(text):
        yield m.start(1), m.end(1), "DATE"


def find_addresses_ru(text: str) -> Iterator[Span]:
    for m in ADDRESS_RU_RE.finditer(text):
        yield m.start(), m.end(), "ADDRESS"
    for m in LIVES_IN_RU_RE.finditer(text):
        yield m.start(1), m.end(1), "ADDRESS"


def find_places_ru(text: str) -> Iterator[Span]:
    """Capitalized words that the dictionary knows as places (Geox), outside sentence starts and eponyms."""
    for m in MID_CAP_WORD_RE.finditer(text):
        kind, score = word_kind(m.group(1))
        if kind == "geo" and score >= 0.3 and not _is_eponym_context(text, m.start(1)):
            yield m.start(1), m.end(1), "ADDRESS"


def find_orgs_ru(text: str) -> Iterator[Span]:
    for m in ORG_RU_RE.finditer(text):
        end = m.end()
        while end > m.start() and text[end - 1] in " ,.;":
            end -= 1
        yield m.start(), end, "ORG"
