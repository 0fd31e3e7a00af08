"""The speed-ups of the Russian rules must not change what they find; the JSON-quote sentence start."""

from __future__ import annotations

import random

from medscribe.phi import Scrubber, audit_texts
from medscribe.phi.detect import DETECTORS, candidate_rows
from medscribe.phi.rules_ru import PERSON_CONTEXT_RE, _person_context_matches, find_addresses_ru

WORDS = [
    "пациент", "Пациентка", "врачом", "с мужем", "с  женой", "С\tсыном", "мать", "Смать", "ФИО:", "Ф.И.О.", "гр.",
    "зав.", "д-р", "Иванов", "Петрова", "И.И.", "Сидоренко", "Олег", "Павлович", "ОПЕРАТОР", "Дочерью", "жена:",
    "\u1c80рач", "İ", "консультирован", ",", ".", "\n", "3", "Тл",
]


def test_person_context_fast_scan_equals_finditer():
    rng = random.Random(7)
    for _ in range(3000):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 10)))
        fast = [(m.start(1), m.end(1), m.start(), m.end()) for m in _person_context_matches(text)]
        full = [(m.start(1), m.end(1), m.start(), m.end()) for m in PERSON_CONTEXT_RE.finditer(text)]
        assert fast == full, text


def test_capitalized_word_after_a_json_quote_is_a_sentence_start_not_a_name():
    texts = [
        '{"result": "Рентгенологических признаков патологии не выявлено."}',
        '{"result":"Рентгенологических признаков патологии не выявлено."}',
        "Заключение: «Рентгенологических признаков патологии нет».",
    ]
    assert audit_texts(texts) == []
    # a name after the quote is still found when the dictionary is sure, and mid-sentence capitals still count
    assert [f.type for f in audit_texts(['{"result": "Иванов И.И. осмотрен."}'])] == ["NAME"]
    assert [f.type for f in audit_texts(['{"result": "Осмотрена Зарубайлова."}'])] == ["NAME"]


def test_address_trigger_ignores_anatomical_oblast_but_keeps_regions():
    name = next(d.name for d in DETECTORS if d.name == "addresses_ru")
    texts = ["В области ворот печени киста.", "По краю правой доли кальцинат.", "Проживает: Самарская область.",
             "Житель Кировский района.", "Ленинградское ш., д. 5, кв. 3."]
    rows = candidate_rows(texts)[name]
    assert rows == [2, 3, 4]
    for row in rows:
        assert list(find_addresses_ru(texts[row]))
    assert Scrubber().scrub_texts(texts[:2]) == texts[:2]
