"""A table of positive and negative examples: every PHI type and every control case, English and Russian.

Positives: the marked substring must be fully covered by a span (any type: a leak is a leak) and the span that
covers it must carry the expected type. Negatives: the text must come back with no span at all.
"""

from __future__ import annotations

import pytest

from medscribe.phi import audit_texts
from medscribe.phi.detect import detect_batch

# (text, PHI substring, expected type)
POSITIVES = [
    # names, Russian, every case and initials order
    ("Пациентка Иванова жалуется на боли.", "Иванова", "NAME"),
    ("Заключение выдано Иванову И.И. на руки.", "Иванову И.И.", "NAME"),
    ("Исследование выполнил И.И. Иванов.", "И.И. Иванов", "NAME"),
    ("Осмотр пациентки Ивановой проведен.", "Ивановой", "NAME"),
    ("Консультирован врачом Петровым.", "Петровым", "NAME"),
    ("Сведения о Петрове переданы.", "Петрове", "NAME"),
    ("пациентка Петрова, 54 года.", "Петрова", "NAME"),
    ("Курдюмцев Эдуард Валерьевич обратился с жалобами.", "Курдюмцев Эдуард Валерьевич", "NAME"),
    ("Передано Нелли Руслановне по телефону.", "Нелли Руслановне", "NAME"),
    ("Направила врач Зарубайлова Т.С.", "Зарубайлова Т.С.", "NAME"),
    ("ФИО: СИДОРЕНКО О.П. Исследование: КТ ОГК.", "СИДОРЕНКО О.П.", "NAME"),
    ("Пациент: ПЕТРОВА АННА СЕРГЕЕВНА, 1950 г.р.", "ПЕТРОВА АННА СЕРГЕЕВНА", "NAME"),
    ("Пациент ЧЕРНОПЯТОВ жалуется на головную боль.", "ЧЕРНОПЯТОВ", "NAME"),  # caps surname after context
    ("Врач: КУЗНЕЦОВА МАРИНА, кабинет 12.", "КУЗНЕЦОВА МАРИНА", "NAME"),
    # names, English
    ("Seen by Dr. Whitfield in clinic.", "Whitfield", "NAME"),
    ("Report dictated by Gideon O'Sullivan, MD.", "Gideon O'Sullivan", "NAME"),
    ("Mrs. Van der Berg reports chest pain.", "Van der Berg", "NAME"),
    ("Findings discussed with Cordelia McAllister by phone.", "Cordelia McAllister", "NAME"),
    ("Name: Thistlewood, Imogen. Sex: F.", "Thistlewood, Imogen", "NAME"),
    ("Referring physician: A. Fennimore.", "A. Fennimore", "NAME"),
    # dates
    ("Дата исследования: 12.03.2021.", "12.03.2021", "DATE"),
    ("Госпитализирован 12 марта 2021 г. в экстренном порядке.", "12 марта 2021 г.", "DATE"),
    ("Повторный осмотр 3 апреля.", "3 апреля", "DATE"),
    ("Пациент 1950 г.р. поступил.", "1950", "DATE"),
    ("Admitted on March 12, 2021.", "March 12, 2021", "DATE"),
    ("DOB 3/12/2021.", "3/12/2021", "DATE"),
    ("Prior study dated 2021-03-12.", "2021-03-12", "DATE"),
    ("Admitted 12 March 2021 with dyspnea.", "12 March 2021", "DATE"),
    # ages over 89
    ("Пациентке 93 года, ИБС.", "93", "AGE"),
    ("Больной в возрасте 95 лет.", "95", "AGE"),
    ("A 94-year-old woman with falls.", "94", "AGE"),
    ("Aged 97, lives alone.", "97", "AGE"),
    # phones
    ("Тел. +7 (912) 345-67-89.", "+7 (912) 345-67-89", "PHONE"),
    ("Контакт: 8 912 345-67-89.", "8 912 345-67-89", "PHONE"),
    ("Call (555) 123-4567 with questions.", "(555) 123-4567", "PHONE"),
    ("International: +44 20 7946 0958.", "+44 20 7946 0958", "PHONE"),
    # contacts
    ("Почта: ivanova78@mail.ru.", "ivanova78@mail.ru", "EMAIL"),
    ("Contact: j.whitfield@stbrendan.org for the images.", "j.whitfield@stbrendan.org", "EMAIL"),
    ("Images at https://pacs.rivermed.org/study/123456 today.", "https://pacs.rivermed.org/study/123456", "URL"),
    ("Снимки на www.zdravitsa-med.ru.", "www.zdravitsa-med.ru", "URL"),
    ("Sent from workstation 192.168.14.7.", "192.168.14.7", "IP"),
    ("Снимки загружены с рабочей станции 10.20.30.40.", "10.20.30.40", "IP"),
    # Russian national identifiers (valid checksums)
    ("СНИЛС 112-233-445 95.", "112-233-445 95", "SNILS"),
    ("Страховой номер 112-233-445 95 в направлении.", "112-233-445 95", "SNILS"),
    ("ИНН 500100732259.", "500100732259", "INN"),
    ("Полис ОМС № 7751234567890123.", "7751234567890123", "OMS"),
    ("Паспорт 45 10 123456, выдан ОУФМС.", "45 10 123456", "PASSPORT"),
    ("Паспорт серии 4510 № 123456.", "4510 № 123456", "PASSPORT"),
    ("Passport number X12345678 on file.", "X12345678", "PASSPORT"),
    # record numbers with context
    ("MRN: 00123456.", "00123456", "ID"),
    ("Accession # A1234567.", "A1234567", "ID"),
    ("Медицинская карта № 12345/21.", "12345/21", "ID"),
    ("История болезни № 45678.", "45678", "ID"),
    # addresses
    ("Проживает: г. Сызрань, ул. Черемуховая, д. 12, кв. 45.", "г. Сызрань, ул. Черемуховая, д. 12, кв. 45", "ADDRESS"),
    ("Зарегистрирована: пер. Тополиный, д. 3.", "пер. Тополиный, д. 3", "ADDRESS"),
    ("Проживает в Кинешме, работает водителем.", "Кинешме", "ADDRESS"),
    ("Home: 1187 Larkspur Avenue, Millbrook, OH 44102.", "1187 Larkspur Avenue, Millbrook, OH 44102", "ADDRESS"),
    ("She lives in Port Fenwick and works as a teacher.", "Port Fenwick", "ADDRESS"),
    # organizations
    ("Направлен из ГБУЗ «Самарская городская больница № 3».", "ГБУЗ «Самарская городская больница № 3»", "ORG"),
    ("Наблюдается в ГКБ № 15 у эндокринолога.", "ГКБ № 15", "ORG"),
    ("Находится на учете у терапевта поликлиники № 12.", "поликлиники № 12", "ORG"),
    ("Transferred from Saint Brendan's Hospital for surgery.", "Saint Brendan's Hospital", "ORG"),
    ("Outside images from Lakeshore Imaging Center were reviewed.", "Lakeshore Imaging Center", "ORG"),
]

NEGATIVES = [
    # acronyms in capitals after a person-context word are not surnames
    "Пациенту МРТ головного мозга выполнено.",
    "Врач УЗИ рекомендует контроль.",
    "Пациентке ЭКГ в динамике, ОАК без особенностей.",
    "Пациенту ФГДС и МСКТ ОГК назначены.",
    # eponyms in every case
    "Признаки болезни Паркинсона.",
    "Пациент с болезнью Паркинсона, тремор покоя.",
    "Наблюдается по поводу болезни Крона с 2019 года.",
    "Исключить лимфому Ходжкина.",
    "Parkinson's disease with resting tremor.",
    "Follow-up of Hodgkin lymphoma after chemotherapy.",
    "Синдром Дауна в анамнезе.",
    "У ребенка с синдромом Дауна порок сердца.",
    "Катетеризация по Сельдингеру.",
    "Проба Манту отрицательная.",
    "Лимфома Ходжкина, состояние после ПХТ.",
    "Болезнь Крона терминального отдела подвздошной кишки.",
    "Грыжи Шморля в телах позвонков Th8-Th10.",
    "History of Parkinson's disease.",
    "Findings are consistent with Hodgkin lymphoma.",
    "Known Down syndrome.",
    "Crohn's disease of the terminal ileum.",
    "Central line placed using the Seldinger technique.",
    "Mantoux test negative.",
    # measurements, lab values, scores, codes, durations
    "Образование 3.5 x 2.1 см в правой доле.",
    "Узел 12 мм, TI-RADS 4.",
    "BI-RADS 4A lesion measuring 8 x 6 mm.",
    "Образование правой молочной железы 9 мм, BI-RADS 3.",
    "Thyroid nodule 14 mm, TI-RADS 3.",
    "Hb 135 g/L, WBC 6.2 x 10^9/L, glucose 5.2 mmol/L.",
    "Гемоглобин 135 г/л, глюкоза 5.2 ммоль/л.",
    "АД 120/80 мм рт. ст., ЧСС 72 уд/мин.",
    "BP 120/80 mmHg, HR 72 bpm.",
    "Протрузия диска C5-C6 до 2 мм.",
    "Disc protrusion at C5-C6 of 2 mm.",
    "Диагноз по МКБ-10: I21.4.",
    "ICD-10 code I21.4.",
    "Жалобы беспокоят в течение 3 лет.",
    "Symptoms for 8 years.",
    "Размер печени 15.5 см, селезенки 11.2 x 4.3 см.",
    "Liver span 15.5 cm, spleen 11.2 x 4.3 cm.",
    "Стеноз ВСА справа 50-60%.",
    "Gleason score 3+4=7.",
    "Пациенту 45 лет, курит 20 лет.",
    "A 67-year-old man.",
    "Печень не увеличена. Желчный пузырь без особенностей. Правая почка в норме.",
    "ЗАКЛЮЧЕНИЕ: КТ ОГК без патологии. МСКТ ОБП В.В. не проводилась.",
    "The liver is normal in size. No free fluid.",
]


@pytest.mark.parametrize(("text", "value", "phi_type"), POSITIVES)
def test_positive_is_covered_with_its_type(text, value, phi_type):
    start = text.index(value)
    end = start + len(value)
    spans = detect_batch([text])[0]
    covering = [s for s in spans if s[0] <= start and s[1] >= end]
    assert covering, f"not fully covered: {value!r} in {text!r}; spans={[(text[s:e], t) for s, e, t in spans]}"
    assert covering[0][2] == phi_type


@pytest.mark.parametrize("text", NEGATIVES)
def test_control_is_untouched(text):
    spans = detect_batch([text])[0]
    assert spans == [], [(text[s:e], t) for s, e, t in spans]


def test_every_phi_type_has_a_positive_example():
    from medscribe.phi import PHI_TYPES

    assert {t for _, _, t in POSITIVES} == set(PHI_TYPES)


def test_both_languages_are_in_the_table():
    cyrillic = [t for t, _, _ in POSITIVES if any("а" <= ch <= "я" for ch in t.lower())]
    assert 10 < len(cyrillic) < len(POSITIVES)
    assert any(any("а" <= ch <= "я" for ch in t.lower()) for t in NEGATIVES)


def test_invalid_checksum_without_context_is_not_an_id():
    # 11 digits in SNILS shape but a wrong control number, no context word: a lab/order number, not SNILS
    assert not [s for s in detect_batch(["Значение 112-233-445 96 получено."])[0] if s[2] == "SNILS"]


def test_audit_reports_positions_not_values():
    texts = ["Без изменений.", "Пациентка Иванова, тел. +7 (912) 345-67-89."]
    findings = audit_texts(texts)
    assert {f.row for f in findings} == {1}
    for f in findings:
        assert set(vars(f)) == {"row", "type", "start", "end"}
    phone = next(f for f in findings if f.type == "PHONE")
    assert texts[1][phone.start : phone.end] == "+7 (912) 345-67-89"
    name = next(f for f in findings if f.type == "NAME")
    assert texts[1][name.start : name.end] == "Иванова"


def test_batch_and_single_agree_and_empty_input():
    texts = [t for t, _, _ in POSITIVES[:10]] + NEGATIVES[:5] + ["", "   "]
    batch = detect_batch(texts)
    assert batch == [detect_batch([t])[0] for t in texts]
    assert detect_batch([]) == []


def test_name_span_does_not_swallow_the_verb_before_initials():
    text = "Осмотрел И.И. Иванов. Осмотрена Петровой А.А."
    spans = detect_batch([text])[0]
    assert [text[s:e] for s, e, _ in spans] == ["И.И. Иванов", "Петровой А.А."]
