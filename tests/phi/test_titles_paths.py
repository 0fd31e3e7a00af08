"""Issue 20: a title or another strong person context wins over the eponym/common-word lists; eponyms stay
eponyms in their medical context; PHI in file paths is scrubbed."""

from __future__ import annotations

import pytest

from medscribe.phi import Scrubber
from medscribe.phi.detect import detect
from medscribe.phi.paths import path_spans, scrub_path


def _names(text: str) -> list[str]:
    return [text[s:e] for s, e, kind in detect(text) if kind == "NAME"]


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Discussed with Dr. Wilson by phone.", "Wilson"),
        ("Discussed with Dr Parkinson at 10:15.", "Parkinson"),
        ("Results called to Dr. Graves, who acknowledged.", "Graves"),
        ("Mr. Down reports chest pain.", "Down"),
        ("Mrs. Bell declined contrast.", "Bell"),
        ("Ms. Baker was informed.", "Baker"),
        ("Case reviewed with Prof. Stone.", "Stone"),
        ("Referred by Hunter for headache.", "Hunter"),
        ("Signed: Miller, MD", "Miller"),
        ("Electronically signed by Dr. Young.", "Young"),
        ("Attending: Dr. Ansel White", "Ansel White"),
        ("Reading radiologist: A. Brown", "A. Brown"),
        ("Doctor Smith reviewed the images.", "Smith"),
        ("cc: Dr. Bell, Dr. Hill", "Hill"),
        ("Ordered by: Dr. Edwards Dr. Fox", "Fox"),  # a name span that swallowed the next title resumes at it
        ("Discussed with Dr. May.", "May"),
        ("Результаты обсуждены с д-ром Боткиным по телефону.", "Боткиным"),
        ("Консультация проф. Корсакова: рекомендовано МРТ.", "Корсакова"),
        ("Лечащий врач Кузнецов, отделение неврологии.", "Кузнецов"),
        ("Д-р Паркинсон рекомендует контроль.", "Паркинсон"),
        ("Консультирован неврологом Волковым.", "Волковым"),
        ("Операцию выполнил хирург Мороз.", "Мороз"),
        ("Заключение согласовано с заведующим отделением Вебером.", "Вебером"),
        ("Ответственный врач — Крон.", "Крон"),
        ("Присутствовала мать пациента, Даун Злата Глебовна.", "Даун Злата Глебовна"),
        ("Снимки пересмотрены профессором Римским-Корсаковым.", "Римским-Корсаковым"),
        ("Осмотрена доцентом Бехтеревой.", "Бехтеревой"),
        # the second blind set ("titles_b"): plural titles, person verbs, more Russian contexts
        ("Drs. Lee and Hartmann were notified.", "Hartmann"),
        ("Drs. Lee and Hartmann were notified.", "Lee"),
        ("Report finalized by Knight on Mar 3, 2024.", "Knight"),
        ("Подписано: Карась З.З.", "Карась"),
        ("Врач УЗД Бабинская.", "Бабинская"),
        ("Передано по телефону врачу приемного отделения Соловью.", "Соловью"),
        ("Консультирован д-ром мед. наук Вирховым.", "Вирховым"),
        ("Акад. Л.Р. Бурденко осмотрел пациента.", "Бурденко"),
        ("ATTENDING: DR. WILSON", "WILSON"),
        ("Discussed with Dr. PARKINSON by phone.", "PARKINSON"),
        ("Professor Graves reviewed the case.", "Graves"),
        ("Врач: БОТКИН", "БОТКИН"),
    ],
)
def test_a_title_or_person_context_wins_over_the_eponym_list(text, name):
    names = _names(text)
    assert any(name in n for n in names), (text, names)
    assert name not in Scrubber().scrub_text(text)


@pytest.mark.parametrize(
    "text",
    [
        "History of Down syndrome.",
        "Wilson disease with basal ganglia signal change.",
        "Parkinson's disease, on levodopa.",
        "Bell's palsy on the left.",
        "Graves' disease with thyroid enlargement.",
        "A 3 cm Baker's cyst in the popliteal fossa.",
        "A so-called Baker's cyst.",
        "Per Wells criteria, low probability.",
        "Findings discussed with Parkinson's disease specialists.",
        "Miller Fisher syndrome suspected.",
        "White matter hyperintensities, Fazekas grade 1.",
        "Stone burden unchanged.",
        "Синдром Дауна в анамнезе.",
        "Болезнь Боткина в детстве.",
        "Болезнь Вильсона-Коновалова.",
        "Синдром Корсакова у пациента с алкогольной болезнью.",
        "Аппарат Илизарова на левой голени.",
        "Доступ по Кохеру.",
        "Хирургическое лечение не показано.",
        "Сатурация 97%, температура 36.6 °C. Ki-67 15%.",
        "Повязка с мазью Вишневского.",
        "Confirmed by Doppler ultrasound.",
        "MR ANGIOGRAPHY of the brain.",
        "MS PLAQUES in the periventricular white matter.",
        "Пациент: ПОДПИСЬ",
    ],
)
def test_eponyms_in_their_medical_context_stay(text):
    assert detect(text) == [], (text, detect(text))


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("Ivanov_I_I_2024-03-01.csv", "[NAME]_[DATE].csv"),
        ("Иванов И.И. 01.03.2024.xlsx", "[NAME] [DATE].xlsx"),
        ("smith_john_mrn123456.json", "[NAME]_mrn[ID].json"),
        ("МРТ/Петрова Анна Сергеевна.xlsx", "МРТ/[NAME].xlsx"),
        ("CT/Wilson, Ansel/report.csv", "CT/[NAME], [NAME]/report.csv"),
        ("mri_Parkinson_20240301.xlsx", "mri_[NAME]_[ID].xlsx"),
        ("kuznetsova_05_11_1961.csv", "[NAME]_[DATE].csv"),
        ("exports/2024-03-01/Stone_Ansel.csv", "exports/[DATE]/[NAME].csv"),
        ("reports_for_blackwood.csv", "reports_for_[NAME].csv"),
        ("пациент_волк.xlsx", "пациент_[NAME].xlsx"),
        ("ЖУК_АГ.csv", "[NAME].csv"),
        ("HILL_CORDELIA.xlsx", "[NAME].xlsx"),
        ("Lockhart-Lavinia-54303.jsonl", "[NAME]-[NAME]-[ID].jsonl"),
    ],
)
def test_paths_named_after_the_patient_or_date_are_scrubbed(path, expected):
    assert scrub_path(path) == expected


@pytest.mark.parametrize(
    "path",
    ["exports/mri_reports.csv", "УЗИ/part1.csv", "КТ/deep/b.csv", "qa/medquad_sample.jsonl", "radiology_2023.xlsx",
     "dataset_with_answers_кардиология.json", "parkinson_disease_cohort.csv", "синдром_Дауна.xlsx", "CT_A.csv",
     "архив/часть_2.csv", "protein_levels_2023.csv", "КТ_ОГК/описания.csv", "Radiology_Export.csv",
     "mri-brain-batch3.jsonl"],
)
def test_paths_without_phi_are_kept(path):
    assert path_spans(path) == [] and scrub_path(path) == path


def test_scrubber_scrub_paths_counts_and_honours_keep():
    scrubber = Scrubber()
    assert scrubber.scrub_paths(["Ivanov_I_I_2024-03-01.csv", "a.csv"]) == ["[NAME]_[DATE].csv", "a.csv"]
    assert scrubber.report()["paths"] == {"scanned": 2, "changed": 1, "by_type": {"DATE": 1, "NAME": 1}}
    keep = Scrubber(per_type={"DATE": "keep"})
    assert keep.scrub_paths(["Ivanov_I_I_2024-03-01.csv"]) == ["[NAME]_2024-03-01.csv"]
    assert Scrubber(enabled=False).scrub_paths(["Ivanov_I_I.csv"]) == ["Ivanov_I_I.csv"]
