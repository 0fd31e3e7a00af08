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

# Set "titles_b": written after the "titles" fixes were in, with other surnames and other phrasing, and run
# blind once (numbers in docs/phi.md): a check of whether those fixes generalize.
EPONYM_SURNAMES_EN_B = (
    "Babinski", "Kernig", "Raynaud", "Meckel", "Barrett", "Gleason", "Tanner", "Apgar", "Hartmann", "Colles",
    "Kaposi", "Wegener", "Marfan", "Whipple", "Cooper", "Willis", "Glisson", "Sachs", "Lyme", "Chiari",
)
COMMON_SURNAMES_EN_B = (
    "Banks", "Bird", "Church", "Cross", "Day", "Dean", "Ford", "Grant", "Hall", "King", "Knight", "Lane", "Lee",
    "Mills", "Nash", "Pope", "Reed", "Shaw", "Sharp", "Swift", "Ward", "West", "Wise", "Bishop", "Chase",
)
EPONYM_SURNAMES_RU_B = (
    "Бабинский", "Керниг", "Вирхов", "Ортнер", "Ласег", "Мерфи", "Пастернацкий", "Ровзинг", "Образцов",
    "Склифосовский", "Мечников", "Вишневский", "Бурденко", "Спасокукоцкий", "Греков", "Оппель", "Шморль",
)
COMMON_SURNAMES_RU_B = (
    "Белов", "Чернов", "Новиков", "Ветров", "Дубов", "Рыбаков", "Пчёлкин", "Ястребов", "Гусь", "Лебедь", "Карась",
    "Соловей", "Скворцов", "Щукин", "Синицын", "Грачёв", "Бобров", "Сова",
)

TEMPLATES_TITLES_B = {
    "ru": [
        "Заключение выдано на руки пациенту {NAME_EPB_RU:surname/dat}.",
        "Консультирован д-ром мед. наук {NAME_EPB_RU:surname/ins}.",
        "Исследование проведено под контролем проф. {NAME_EPB_RU:io_last/gen}.",
        "Врач УЗД {NAME_EPB_RU:surname/nom}.",
        "Результаты доведены до сведения лечащего врача {NAME_EPB_RU:surname/gen}.",
        "Описание выполнил: врач-рентгенолог {NAME_EPB_RU:init_before/nom}",
        "Рекомендована консультация нейрохирурга {NAME_EPB_RU:surname/gen}.",
        "Со слов пациентки {NAME_EPB_RU:surname/gen}, травма накануне.",
        "Подписано: {NAME_EPB_RU:init_after/nom}",
        "Дежурный врач {NAME_EPB_RU:surname/nom} уведомлен в 02:40.",
        "По согласованию с заведующей отделением {NAME_EPB_RU:surname/ins}.",
        "Протокол подписал доцент {NAME_EPB_RU:surname/nom}.",
        "Медсестра {NAME_EPB_RU:surname/nom}, тел. {PHONE:ru_8}.",
        "Консультация кардиолога {NAME_EPB_RU:surname/gen} от {DATE:dmy}.",
        "Больной {NAME_EPB_RU:surname/nom} в сопровождении жены.",
        "Исследование назначено доктором медицинских наук {NAME_EPB_RU:surname/ins}.",
        "Передано по телефону врачу приемного отделения {NAME_EPB_RU:surname/dat}.",
        "Сопровождающий — сын пациента, {NAME_EPB_RU:full/nom}.",
        "Проф. {NAME_EPB_RU:surname/nom} рекомендует ПЭТ-КТ.",
        "Акад. {NAME_EPB_RU:init_before/nom} осмотрел пациента на обходе.",
    ],
    "en": [
        "Dr {NAME_EPB_EN:last} was paged and agreed with the plan.",
        "Critical result phoned to Dr. {NAME_EPB_EN:last} at 03:10.",
        "Verbal report given to {NAME_EPB_EN:last}, RN.",
        "Case presented at tumor board by Prof {NAME_EPB_EN:last}.",
        "Patient's wife, Mrs {NAME_EPB_EN:last}, provided the history.",
        "Follow-up with Dr. {NAME_EPB_EN:initial} in clinic.",
        "Attending radiologist: {NAME_EPB_EN:full}",
        "Preliminary read by {NAME_EPB_EN:last} (resident) was confirmed.",
        "Images reviewed together with Dr. {NAME_EPB_EN:last} and Dr. {NAME_EPB_EN:last}.",
        "Referring: {NAME_EPB_EN:full}, MD.",
        "Comparison with outside study read by Dr. {NAME_EPB_EN:last}.",
        "Mr {NAME_EPB_EN:last} tolerated the procedure well.",
        "Dictated by: {NAME_EPB_EN:initial}, MD",
        "Nurse {NAME_EPB_EN:last} assisted.",
        "Contact Ms {NAME_EPB_EN:last} at {PHONE:us_dash}.",
        "Drs. {NAME_EPB_EN:last} and {NAME_EPB_EN:last} were notified.",
        "Dr. {NAME_EPB_EN:last}, please call back.",
        "Report finalized by {NAME_EPB_EN:last} on {DATE:en_short}.",
        "Transcribed by {NAME_EPB_EN:full}.",
        "PCP: Dr. {NAME_EPB_EN:last}",
    ],
}

CONTROLS_TITLES_B = {
    "ru": [
        "Симптом Бабинского отрицательный.",
        "Симптом Кернига слабо положительный.",
        "Грыжи Шморля в телах L2-L4.",
        "Железа Вирхова не пальпируется.",
        "Симптом Ортнера положительный.",
        "Симптом Ласега справа под углом 40 градусов.",
        "Симптом Образцова отрицательный.",
        "Повязка с мазью Вишневского.",
        "Операция по Спасокукоцкому в анамнезе.",
        "Симптом Пастернацкого отрицательный с обеих сторон.",
        "Симптом Мерфи сомнительный.",
        "Новых очагов не выявлено, белое вещество без особенностей.",
    ],
    "en": [
        "Barrett esophagus without dysplasia.",
        "Raynaud phenomenon of the fingers.",
        "Meckel diverticulum is not seen.",
        "Gleason score 3+4=7.",
        "Tanner stage 3 breast development.",
        "Status post Whipple procedure in 2018.",
        "Cooper ligament is intact.",
        "The circle of Willis is patent.",
        "Glisson capsule is smooth.",
        "Kaposi sarcoma is not excluded.",
        "West Nile virus serology negative.",
        "Day 3 after surgery.",
        "Lyme disease serology pending.",
        "Chiari I malformation, 6 mm tonsillar ectopia.",
        "Sharp margins without spiculation.",
    ],
}

PATH_TEMPLATES_B = {
    "ru": [
        "{NAME_FILE_RU:surname_upper}_{NAME_FILE_RU:initial}{NAME_FILE_RU:initial}.csv",
        "пациент_{NAME_FILE_RU:surname_lower}.xlsx",
        "{NAME_FILE_RU:surname}-{NAME_FILE_RU:first}-{DATE:dmy}.csv",
        "Врач_{NAME_FILE_RU:surname}/{DATE:iso}.csv",
        "КТ_ОГК_{NAME_FILE_RU:surname}_{NAME_FILE_RU:initial}.{NAME_FILE_RU:initial}.xlsx",
        "{NAME_FILE_RU:translit}{NAME_FILE_RU:initial_latin}{NAME_FILE_RU:initial_latin}.csv",
    ],
    "en": [
        "{NAME_FILE_EN:last}{NAME_FILE_EN:first}_CT_{DATE:iso}.csv",
        "reports_for_{NAME_FILE_EN:lower_last}.csv",
        "{NAME_FILE_EN:upper_last}_{NAME_FILE_EN:upper_first}.xlsx",
        "{NAME_FILE_EN:last}-{NAME_FILE_EN:first}-{ID:num}.jsonl",
        "Dr_{NAME_FILE_EN:last}_patients.csv",
        "{DATE:mdy_dash}_{NAME_FILE_EN:last}.csv",
        "MRN{ID:num}_{NAME_FILE_EN:last}.json",
    ],
}
PATH_CONTROLS_B = {
    "ru": ["КТ_ОГК/описания.csv", "МРТ_ГМ_2022.xlsx", "выгрузка-март.csv", "Отчеты/Итог.xlsx"],
    "en": ["CT_chest_2024.csv", "Reports/Final.xlsx", "mri-brain-batch3.jsonl", "Radiology_Export.csv"],
}
