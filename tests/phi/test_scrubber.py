"""Scrubber: tag and pseudonym modes, per-type modes, surrogate consistency, the salt and the report."""

from __future__ import annotations

import json

import pytest

from medscribe.errors import UsageError
from medscribe.phi import PHI_TYPES, Scrubber

TEXTS = [
    "Пациентка Иванова И.И., 12.03.1950 г.р., тел. +7 (912) 345-67-89, СНИЛС 112-233-445 95.",
    "Заключение выдано Ивановой И.И. Признаки болезни Паркинсона.",
    "Seen by Dr. Whitfield on March 12, 2021. MRN: 00123456. Email jc@mail.com.",
    "Печень не увеличена, образование 3.5 x 2.1 см.",
]
SALT = "test-salt-7f3a9c"


def test_tag_mode_replaces_with_typed_tags_and_keeps_the_rest():
    out = Scrubber().scrub_texts(TEXTS)
    assert out[0] == "Пациентка [NAME], [DATE] г.р., тел. [PHONE], СНИЛС [SNILS]."
    assert out[1] == "Заключение выдано [NAME] Признаки болезни Паркинсона."
    assert out[2] == "Seen by Dr. [NAME] on [DATE]. MRN: [ID]. Email [EMAIL]."
    assert out[3] == TEXTS[3]


def test_report_counts_types_languages_and_rows_without_values():
    scrubber = Scrubber()
    scrubber.scrub_texts(TEXTS)
    report = scrubber.report()
    assert report["texts_scanned"] == 4
    assert report["texts_changed"] == 3
    assert report["by_type"] == {"DATE": 2, "EMAIL": 1, "ID": 1, "NAME": 3, "PHONE": 1, "SNILS": 1}
    assert report["by_language"] == {"en": 4, "ru": 5}
    assert report["by_language_and_type"] == {"en.DATE": 1, "en.EMAIL": 1, "en.ID": 1, "en.NAME": 1,
                                              "ru.DATE": 1, "ru.NAME": 2, "ru.PHONE": 1, "ru.SNILS": 1}
    assert report["mode"] == "tag" and report["enabled"] is True
    assert "names_ru" in report["detectors"]
    dumped = json.dumps(report, ensure_ascii=False)
    for secret in ("Иванов", "Whitfield", "912", "112-233", "00123456", "mail.com", "1950"):
        assert secret not in dumped


def test_counts_accumulate_over_batches():
    scrubber = Scrubber()
    scrubber.scrub_texts(TEXTS[:2])
    scrubber.scrub_texts(TEXTS[2:])
    assert scrubber.report()["texts_scanned"] == 4
    assert scrubber.report()["by_type"]["NAME"] == 3


def test_pseudonym_mode_without_salt_is_a_usage_error():
    with pytest.raises(UsageError) as exc:
        Scrubber(mode="pseudonym")
    assert str(exc.value) == "data.phi.salt: pseudonym mode needs a salt; set MEDSCRIBE_DATA__PHI__SALT"
    with pytest.raises(UsageError):
        Scrubber(mode="tag", per_type={"NAME": "pseudonym"})


def test_pseudonym_mode_gives_realistic_consistent_surrogates():
    out = Scrubber(mode="pseudonym", salt=SALT).scrub_texts(TEXTS)
    for original in ("Иванова", "Ивановой", "+7 (912) 345-67-89", "112-233-445 95", "Whitfield", "jc@mail.com"):
        assert original not in " ".join(out)
    assert "[" not in out[0]  # every value in row 0 has a surrogate form, no tag fallback
    # Same person in another case -> the same surrogate surname, inflected into that case.
    surname_nom = out[0].split()[1]
    surname_dat = out[1].split()[2]
    assert surname_nom[:-1] == surname_dat[:-2] or surname_nom.rstrip("а") == surname_dat.rstrip("ой")
    assert out[3] == TEXTS[3]


def test_surrogates_are_stable_across_scrubbers_with_the_same_salt_and_differ_with_another():
    a = Scrubber(mode="pseudonym", salt=SALT).scrub_texts(TEXTS)
    b = Scrubber(mode="pseudonym", salt=SALT).scrub_texts(list(reversed(TEXTS)))
    assert a == list(reversed(b))
    c = Scrubber(mode="pseudonym", salt="another-salt").scrub_texts(TEXTS)
    assert a != c


def test_same_value_same_surrogate_everywhere_in_a_run():
    scrubber = Scrubber(mode="pseudonym", salt=SALT)
    rows = scrubber.scrub_texts(["Тел. +7 (912) 345-67-89.", "Контакт: +7 (912) 345-67-89, повторно."])
    first = rows[0].removeprefix("Тел. ").rstrip(".")
    assert first in rows[1]
    assert scrubber.pseudonymize_value("Иванов Иван Иванович") == scrubber.pseudonymize_value("Иванов Иван Иванович")


def test_date_surrogates_keep_intervals():
    scrubber = Scrubber(mode="pseudonym", salt=SALT)
    out = scrubber.scrub_texts(["КТ от 10.03.2021.", "Контроль 20.03.2021."])
    from datetime import datetime

    d1 = datetime.strptime(out[0].split()[2].rstrip("."), "%d.%m.%Y")
    d2 = datetime.strptime(out[1].split()[1].rstrip("."), "%d.%m.%Y")
    assert (d2 - d1).days == 10
    assert d1 != datetime(2021, 3, 10)


def test_salt_is_never_written(tmp_path):
    scrubber = Scrubber(mode="pseudonym", salt=SALT)
    out = scrubber.scrub_texts(TEXTS)
    report = json.dumps(scrubber.report(), ensure_ascii=False)
    assert SALT not in report and SALT not in "".join(out)
    assert SALT not in repr(scrubber) and SALT not in repr(vars(scrubber))


def test_salt_from_settings_env(monkeypatch):
    from medscribe.settings import load_settings

    monkeypatch.setenv("MEDSCRIBE_DATA__PHI__SALT", SALT)
    monkeypatch.setenv("MEDSCRIBE_DATA__PHI__MODE", "pseudonym")
    settings = load_settings(None)
    assert SALT not in repr(settings.data.phi)
    scrubber = Scrubber.from_settings(settings.data.phi)
    assert scrubber.scrub_texts(TEXTS) == Scrubber(mode="pseudonym", salt=SALT).scrub_texts(TEXTS)


def test_pseudonym_settings_without_salt_fail_with_the_documented_message(monkeypatch):
    from medscribe.settings import load_settings

    monkeypatch.setenv("MEDSCRIBE_DATA__PHI__MODE", "pseudonym")
    with pytest.raises(UsageError, match="MEDSCRIBE_DATA__PHI__SALT"):
        Scrubber.from_settings(load_settings(None).data.phi)


def test_per_type_modes_keep_tag_and_pseudonym():
    scrubber = Scrubber(mode="tag", per_type={"DATE": "keep", "NAME": "pseudonym"}, salt=SALT)
    out = scrubber.scrub_texts([TEXTS[0]])[0]
    assert "12.03.1950" in out and "[PHONE]" in out and "[SNILS]" in out
    assert "[NAME]" not in out and "Иванова" not in out
    assert "DATE" not in scrubber.report()["by_type"]
    assert scrubber.report()["per_type"] == {"DATE": "keep", "NAME": "pseudonym"}


def test_unknown_per_type_key_is_a_usage_error():
    with pytest.raises(UsageError, match="NAMES"):
        Scrubber(per_type={"NAMES": "tag"})


def test_pseudonymize_value_for_phi_columns():
    tagger = Scrubber()
    assert tagger.pseudonymize_value("Иванов Иван Иванович") == "[NAME]"
    assert tagger.pseudonymize_value("  ") == "  "
    surrogate = Scrubber(mode="pseudonym", salt=SALT)
    value = surrogate.pseudonymize_value("Иванова Мария Петровна")
    assert value != "Иванова Мария Петровна" and len(value.split()) == 3 and value.split()[0].endswith("а")
    assert surrogate.pseudonymize_value("12.03.1950", "DATE").count(".") == 2
    assert surrogate.pseudonymize_value("Whitfield, John", "NAME") != "Whitfield, John"
    with pytest.raises(UsageError):
        surrogate.pseudonymize_value("x", "PERSON")
    assert surrogate.report()["by_type"] == {"DATE": 1, "NAME": 2}


def test_disabled_scrubber_passes_text_through_and_says_so():
    scrubber = Scrubber(enabled=False, mode="pseudonym")  # no salt needed when disabled
    assert scrubber.scrub_texts(TEXTS) == TEXTS
    assert scrubber.report()["enabled"] is False and scrubber.report()["by_type"] == {}


def test_none_and_non_string_cells_are_handled():
    assert Scrubber().scrub_texts([None, 123, "Тел. +7 (912) 345-67-89"]) == ["", "123", "Тел. [PHONE]"]


def test_phi_types_are_the_public_tag_names():
    out = Scrubber().scrub_texts(TEXTS)
    tags = {part.split("]")[0] for row in out for part in row.split("[")[1:]}
    assert tags <= set(PHI_TYPES)


def test_one_person_in_any_name_order_and_case_gets_one_surrogate_surname():
    out = Scrubber(mode="pseudonym", salt=SALT).scrub_texts(
        ["Пациент Иванов И.И. осмотрен.", "Осмотрел И.И. Иванов.", "Выдано Иванову И.И."]
    )
    nominative = out[0].split()[1]
    assert out[1].split()[2].rstrip(".") == nominative
    assert out[2].split()[1] == nominative + "у"


def test_values_without_a_surrogate_form_fall_back_to_the_tag_visibly():
    scrubber = Scrubber(mode="pseudonym", salt=SALT)
    out = scrubber.scrub_texts(["Выписан в марте 2021 г.", "Выписан в марте 2021 г.", "Дата 12.03.2021."])
    assert out[0] == out[1] == "Выписан в [DATE]"
    assert "[DATE]" not in out[2] and "12.03.2021" not in out[2]
    assert scrubber.report()["surrogate_fallbacks"] == 2
