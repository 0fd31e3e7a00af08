"""Fifth template set of the PHI corpus, "titles": people whose surname is also an eponym or a common word.

Written for issue 20 after the rules of the four earlier sets were final, and run blind once before any rule
was changed (first-run numbers in docs/phi.md and README). Every name slot here draws its surname from
`EPONYM_SURNAMES_*` / `COMMON_SURNAMES_*`: words that the detectors deliberately treat as non-names when they
stand alone (`Wilson disease`, `синдром Дауна`), so only the person context (a title, `discussed with`,
`signed:`, `лечащий врач`, `проф.`) can tell the detector that this time they are a person. The controls are
the same words in their medical or ordinary sense, which must stay untouched.

Also here: file-name templates (`PATH_TEMPLATES`), because hospital exports are named after the patient or
the study date (`Ivanov_I_I_2024-03-01.csv`); `corpus.generate_path_corpus` fills them.
"""

from __future__ import annotations

# Surnames that are also eponyms (a disease, sign, cyst or anatomical structure is named after them).
EPONYM_SURNAMES_EN = (
    "Parkinson", "Down", "Wilson", "Graves", "Bell", "Baker", "Hodgkin", "Crohn", "Addison", "Cushing", "Paget",
    "Turner", "Murphy", "Fisher", "Weber", "Walker", "Bennett", "Barton", "Stewart", "Douglas", "Edwards",
    "Harris", "Jones", "Hunter", "Wells", "Smith", "Hill", "Marshall", "Horner", "Ewing",
)
# Surnames that are ordinary English words.
COMMON_SURNAMES_EN = (
    "Brown", "Miller", "Young", "White", "Stone", "Black", "Green", "Gray", "Long", "Short", "Little", "Strong",
    "Price", "Rich", "Fox", "Moon", "Field", "Lord", "Hope", "Rose", "Bush", "Wood", "Cook", "Parker", "Mason",
    "Carter", "Fletcher", "Page", "Frost", "Snow",
)
# Russian surnames (masculine nominative) that are also eponyms in Russian clinical text.
EPONYM_SURNAMES_RU = (
    "Боткин", "Бехтерев", "Пирогов", "Коновалов", "Корсаков", "Щеткин", "Илизаров", "Филатов", "Кожевников",
    "Сеченов", "Паркинсон", "Вильсон", "Крон", "Кушинг", "Даун", "Мюллер", "Вольф", "Кохер", "Фишер", "Вебер",
    "Смит", "Гартман", "Бейкер", "Тернер", "Аддисон", "Морган", "Римский-Корсаков", "Блюмберг", "Ситковский",
    "Бартон",
)
# Russian surnames that are ordinary words or derived from them (кузнец, волк, мороз, жук).
COMMON_SURNAMES_RU = (
    "Кузнецов", "Волков", "Медведев", "Орлов", "Соколов", "Лебедев", "Зайцев", "Морозов", "Комаров", "Голубев",
    "Гусев", "Жуков", "Козлов", "Баранов", "Быков", "Петухов", "Мороз", "Жук", "Волк", "Коваль", "Мельник",
    "Бондарь", "Кравец", "Гончар", "Рыбак", "Сокол", "Голуб", "Петров-Водкин", "Соколов-Микитов", "Мамин-Сибиряк",
)

TEMPLATES_TITLES = {
    "ru": [
        "Результаты обсуждены с д-ром {NAME_EPO_RU:surname/ins} по телефону.",
        "Консультация проф. {NAME_EPO_RU:surname/gen}: рекомендовано МРТ с контрастированием.",
        "Лечащий врач {NAME_EPO_RU:surname/nom}, отделение неврологии.",
        "Лечащий врач: {NAME_EPO_RU:init_after/nom}",
        "Исследование описал врач-рентгенолог {NAME_EPO_RU:init_before/nom}.",
        "Направлен доктором {NAME_EPO_RU:surname/ins} для исключения инсульта.",
        "Со слов доктора {NAME_EPO_RU:surname/gen}, ранее выполнялась резекция.",
        "Снимки пересмотрены профессором {NAME_EPO_RU:full/ins}.",
        "Заключение согласовано с заведующим отделением {NAME_EPO_RU:surname/ins}.",
        "Д-р {NAME_EPO_RU:surname/nom} рекомендует контроль через 6 месяцев.",
        "Подпись: {NAME_EPO_RU:surname/nom}",
        "Пациентка {NAME_EPO_RU:surname/nom} доставлена бригадой СМП.",
        "Пациент {NAME_EPO_RU:full/nom} повторно осмотрен.",
        "Результат передан врачу {NAME_EPO_RU:surname/dat} лично.",
        "Консультирован неврологом {NAME_EPO_RU:surname/ins}.",
        "Операцию выполнил хирург {NAME_EPO_RU:surname/nom}.",
        "Направление выдал терапевт {NAME_EPO_RU:init_after/nom}.",
        "Осмотрена доцентом {NAME_EPO_RU:surname/ins}.",
        "Присутствовала мать пациента, {NAME_EPO_RU:full/nom}.",
        "Рентгенолог {NAME_EPO_RU:surname/nom}, к.м.н.",
        "Ответственный врач — {NAME_EPO_RU:surname/nom}.",
        "У врача {NAME_EPO_RU:surname/gen} на приеме 3 раза за год.",
        "Обсуждено с доктором {NAME_EPO_RU:io_last/ins}.",
        "Исполнитель: {NAME_EPO_RU:init_after/nom}, тел. {PHONE:ru_city}.",
        "Дата консультации проф. {NAME_EPO_RU:surname/gen}: {DATE:dmy}.",
    ],
    "en": [
        "Discussed with Dr. {NAME_EPO_EN:last} by phone.",
        "Findings discussed with Dr {NAME_EPO_EN:last} at 14:20.",
        "Results called to Dr. {NAME_EPO_EN:last}, who acknowledged receipt.",
        "Referred by {NAME_EPO_EN:last} for evaluation of headache.",
        "Referred by Dr. {NAME_EPO_EN:initial} for abdominal pain.",
        "Signed: {NAME_EPO_EN:full}, MD",
        "Electronically signed by Dr. {NAME_EPO_EN:last} on {DATE:mdy0}.",
        "Mr. {NAME_EPO_EN:last} reports intermittent chest pain.",
        "Mrs. {NAME_EPO_EN:last} declined contrast.",
        "Ms. {NAME_EPO_EN:last} was informed of the results.",
        "Case reviewed with Prof. {NAME_EPO_EN:last}.",
        "Attending: Dr. {NAME_EPO_EN:full}",
        "cc: Dr. {NAME_EPO_EN:last}, Dr. {NAME_EPO_EN:last}",
        "Findings communicated to Doctor {NAME_EPO_EN:last} in person.",
        "Prior study interpreted by Dr. {NAME_EPO_EN:last} was reviewed.",
        "Patient was seen by Dr. {NAME_EPO_EN:last} in the emergency department.",
        "Consent obtained by Dr. {NAME_EPO_EN:last}.",
        "Reading radiologist: {NAME_EPO_EN:initial}",
        "Per Dr. {NAME_EPO_EN:last}, the patient has a history of lymphoma.",
        "The patient's daughter, Ms. {NAME_EPO_EN:full}, was present.",
        "Dr. {NAME_EPO_EN:last}'s team requested a repeat scan.",
        "Spoke with Mrs. {NAME_EPO_EN:last} regarding follow-up.",
        "Ordered by: Dr. {NAME_EPO_EN:last}",
        "Dictated by {NAME_EPO_EN:full}, MD, on {DATE:en_text}.",
        "Mr. {NAME_EPO_EN:last}, phone {PHONE:us_paren}, prefers morning calls.",
    ],
}

CONTROLS_TITLES = {
    "ru": [
        "Синдром Дауна в анамнезе.",
        "Болезнь Боткина в детстве.",
        "Болезнь Бехтерева, двусторонний сакроилеит.",
        "Болезнь Паркинсона, дрожательная форма.",
        "Болезнь Вильсона-Коновалова, кольца Кайзера-Флейшера.",
        "Симптом Щеткина-Блюмберга отрицательный.",
        "Синдром Корсакова у пациента с алкогольной болезнью.",
        "Аппарат Илизарова на левой голени.",
        "Болезнь Крона терминального отдела подвздошной кишки.",
        "Синдром Кушинга, аденома надпочечника 18 мм.",
        "Киста Бейкера 25 х 8 мм в подколенной области.",
        "Операция Гартмана в 2019 году.",
        "Доступ по Кохеру.",
        "Синдром Тернера, кариотип 45,X0.",
        "Болезнь Аддисона, надпочечники уменьшены.",
        "Узловой зоб, кровоток по Доплеру усилен.",
    ],
    "en": [
        "History of Down syndrome.",
        "Wilson disease with basal ganglia signal change.",
        "Parkinson's disease, on levodopa.",
        "Bell's palsy on the left, resolved.",
        "Graves' disease with thyroid enlargement.",
        "A 3 cm Baker's cyst in the popliteal fossa.",
        "Hodgkin lymphoma, status post chemotherapy.",
        "Crohn's disease of the terminal ileum.",
        "Turner syndrome with a horseshoe kidney.",
        "Murphy's sign was negative.",
        "Hunter syndrome (MPS II) with dysostosis multiplex.",
        "Miller Fisher syndrome suspected clinically.",
        "White matter hyperintensities, Fazekas grade 1.",
        "Stone burden unchanged in the left kidney.",
        "Brown adipose tissue uptake in the supraclavicular regions.",
        "Young age favors a benign etiology.",
        "Horner syndrome on the right.",
        "Ewing sarcoma of the femur, post resection.",
    ],
}

# File names of exports, relative to the input folder ("/" separates folders). Slots as in the templates; the
# path corpus builds names from them with `_`, `-`, `.` or spaces as separators.
PATH_TEMPLATES = {
    "ru": [
        "{NAME_FILE_RU:surname}_{NAME_FILE_RU:initial}_{NAME_FILE_RU:initial}_{DATE:iso}.csv",
        "{NAME_FILE_RU:init_after} {DATE:dmy}.xlsx",
        "МРТ/{NAME_FILE_RU:full}.xlsx",
        "выгрузка_КТ_{NAME_FILE_RU:surname}_{DATE:dmy}.csv",
        "{NAME_FILE_RU:surname}/протокол_{DATE:iso}.jsonl",
        "УЗИ {NAME_FILE_RU:surname} {NAME_FILE_RU:initial}.{NAME_FILE_RU:initial}..csv",
        "{NAME_FILE_RU:translit_lower}_{DATE:dmy_underscore}.csv",
        "{NAME_FILE_RU:translit}_{NAME_FILE_RU:initial_latin}{NAME_FILE_RU:initial_latin}_{DATE:compact}.csv",
    ],
    "en": [
        "{NAME_FILE_EN:lower_last}_{NAME_FILE_EN:lower_first}_mrn{ID:num}.json",
        "{NAME_FILE_EN:last}_{NAME_FILE_EN:first}_{DATE:iso}.csv",
        "CT/{NAME_FILE_EN:last}, {NAME_FILE_EN:first}/report.csv",
        "mri_{NAME_FILE_EN:last}_{DATE:compact}.xlsx",
        "{NAME_FILE_EN:first} {NAME_FILE_EN:last} chest CT.xlsx",
        "patient-{NAME_FILE_EN:lower_last}-{DATE:iso}.jsonl",
        "{NAME_FILE_EN:last}.{NAME_FILE_EN:initial_latin}.{DATE:mdy_dash}.csv",
        "exports/{DATE:iso}/{NAME_FILE_EN:last}_{NAME_FILE_EN:first}.csv",
    ],
}
# File names without PHI: nothing in them may be replaced.
PATH_CONTROLS = {
    "ru": ["МРТ/выгрузка_2024.csv", "КТ/отчеты_за_март.xlsx", "радиология_ru.csv", "УЗИ/почки/протоколы.jsonl",
           "dataset_with_answers_кардиология.json", "архив/часть_2.csv"],
    "en": ["exports/mri_reports.csv", "CT/chest/findings_part1.csv", "radiology_2023.xlsx", "qa/medquad_sample.jsonl",
           "dataset_with_answers_cardiology.json", "batch_07/reports.jsonl"],
}
