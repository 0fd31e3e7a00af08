"""Issue 20's "done when": a file like the held-out one (400 findings with injected names, dates, phones,
e-mails, SNILS, MRN, passport and OMS numbers, a patient-name column nobody mapped, a file named after the
patient) through `medscribe data`, then `--phi-audit` over every output finds nothing and no injected value
survives anywhere. The values are generated here (invented surnames that are in no rule list, plus eponym
surnames after titles, the held-out check's leak) and differ from the PHI corpus."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
from data_helpers import all_output_text, invoke, write_csv

from medscribe.phi import ids, rules_en, rules_ru
from medscribe.phi.corpus import inflect_surname
from medscribe.phi.corpus_templates import FILLERS

STEMS_RU = ("Зарем", "Куплет", "Тромб", "Ширяк", "Полоз", "Вершин", "Гречан", "Лопух", "Мостов", "Хлебор", "Дроздик",
            "Каймак", "Пузан", "Ромаш", "Сухоруч", "Тулуп", "Чернобров", "Ягодк")
ENDS_RU = ("ов", "ин", "ский", "ев")
FIRST_RU = (("Всеслав", "m", "Всеславович"), ("Милена", "f", "Олеговна"), ("Добрыня", "m", "Ильич"),
            ("Ярина", "f", "Тарасовна"), ("Остап", "m", "Богданович"), ("Любава", "f", "Демьяновна"))
EPONYM_RU = ("Мерфи", "Ровзинг", "Пертес", "Зудек", "Потт", "Мондор", "Титце", "Кальве", "Вирхов", "Шопар")
COMMON_RU = ("Щукин", "Синицын", "Грачёв", "Карасёв", "Сорокин", "Воронин")
STEMS_EN = ("Thorn", "Quill", "Brack", "Marrow", "Pennel", "Wick", "Harrow", "Crane", "Gorse", "Lark", "Tully", "Sedge")
ENDS_EN = ("bury", "feather", "wick", "stead", "holme", "ridge")
FIRST_EN = ("Thelonius", "Marisol", "Evangeline", "Caspian", "Leopold", "Ottilie")
EPONYM_EN = ("Barrett", "Huntington", "Chance", "Mallory", "Weiss", "Epstein", "Doppler", "Monro", "Galen", "Dandy",
             "Jefferson", "Virchow", "Kernig", "Kaposi")
CONCLUSIONS = {
    "ru": ["Без патологии.", "Киста печени.", "Очаговые изменения белого вещества.", "Узел щитовидной железы."],
    "en": ["No acute findings.", "Simple hepatic cyst.", "Nonspecific white matter foci.", "Thyroid nodule."],
}


def _values(rng: random.Random) -> dict[str, str]:
    first, gender, patronymic = rng.choice(FIRST_RU)
    surname = rng.choice(STEMS_RU) + rng.choice(ENDS_RU)
    return {
        "ru_patient": f"{inflect_surname(surname, gender, 'nom')} {first} {patronymic}",
        "ru_surname_gen": inflect_surname(surname, gender, "gen"),
        "ru_doctor_ins": inflect_surname(rng.choice(EPONYM_RU + COMMON_RU), "m", "ins"),
        "ru_doctor": rng.choice(EPONYM_RU + COMMON_RU),
        "en_patient": f"{rng.choice(FIRST_EN)} {rng.choice(STEMS_EN)}{rng.choice(ENDS_EN)}",
        "en_doctor": rng.choice(EPONYM_EN),
        "date": f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.{rng.randint(1940, 2023)}",
        "date_us": f"{rng.randint(1, 12)}/{rng.randint(1, 28)}/{rng.randint(1940, 2023)}",
        "phone": f"+7 9{rng.randint(10, 99)} {rng.randint(100, 999)}-{rng.randint(10, 99)}-{rng.randint(10, 99)}",
        "phone_us": f"({rng.randint(201, 989)}) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}",
        "email": f"{rng.choice(['patient', 'kin', 'family'])}.{rng.randint(100, 999)}@"
                 f"{rng.choice(['inbox.ru', 'post.com'])}",
        "snils": ids.make_snils(rng),
        "oms": ids.make_oms(rng),
        "mrn": f"{rng.randint(10_000_000, 99_999_999)}",
        "passport": f"{rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(100_000, 999_999)}",
        "passport_en": f"K{rng.randint(10_000_000, 99_999_999)}",
    }


PHI_RU = [
    "Пациентка {ru_patient}, {date} г.р., направлена на исследование.",
    "Обсуждено с д-ром {ru_doctor_ins} по телефону {phone}.",
    "Лечащий врач {ru_doctor}, СНИЛС пациента {snils}.",
    "Полис ОМС {oms}, паспорт {passport}.",
    "Со слов {ru_surname_gen}, жалобы около месяца; e-mail {email}.",
    "Номер истории болезни {mrn}, дата поступления {date}.",
]
PHI_EN = [
    "Discussed with Dr. {en_doctor} by phone.",
    "Patient {en_patient}, DOB {date_us}, MRN {mrn}.",
    "Callback number {phone_us}; report e-mailed to {email}.",
    "Passport {passport_en} on file. Seen by Dr. {en_doctor} on {date_us}.",
]


def _held_out_like_file(folder: Path, n: int = 400) -> tuple[Path, set[str]]:
    rng = random.Random(2020)
    rows, injected = [], set()
    for i in range(n):
        lang = "ru" if i % 2 else "en"
        values = _values(rng)
        phi = rng.choice(PHI_RU if lang == "ru" else PHI_EN)
        sentences = rng.sample(FILLERS[lang], k=rng.randint(2, 3)) + [phi.format(**values)]
        rng.shuffle(sentences)
        used = [v for k, v in values.items() if "{" + k + "}" in phi]
        patient = values["ru_patient"] if lang == "ru" else values["en_patient"]
        injected.update(used + [patient])
        conclusion = rng.choice(CONCLUSIONS[lang])
        if rng.random() < 0.2:
            conclusion += f" Результат сообщен д-ру {inflect_surname(values['ru_doctor'], 'm', 'dat')}." \
                if lang == "ru" else f" Discussed with Dr. {values['en_doctor']} by phone."
            injected.add(values["ru_doctor"] if lang == "ru" else values["en_doctor"])
        rows.append([f"{i:04d}", patient, " ".join(sentences), conclusion])
    path = write_csv(folder / "Zaremov_V_V_2024-05-06.csv", ["Номер", "ФИО пациента", "finding", "conclusion"], rows)
    injected.update({"Zaremov", "2024-05-06"})
    return path, injected


def test_generated_values_are_in_no_rule_list():
    source = "".join(Path(m.__file__).read_text(encoding="utf-8").lower() for m in (rules_en, rules_ru))
    invented = [*STEMS_RU, *STEMS_EN, *FIRST_RU[0][:1], *FIRST_EN]
    assert [w for w in invented if re.search(rf"\b{w.lower()}", source)] == []


@pytest.mark.slow  # ~20 s alone (data stage on 400 rows + a MiniLM index), more on a loaded machine
def test_phi_audit_over_every_output_of_a_held_out_like_run_finds_nothing(tmp_path, minilm):
    path, injected = _held_out_like_file(tmp_path / "in")
    out = tmp_path / "out"
    result = invoke("data", "--input", str(path), "--out", str(out), "--task", "report")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["rows_in"] == 400 and manifest["phi"]["by_type"]["NAME"] > 100

    outputs = sorted(p for p in out.iterdir() if p.suffix in (".jsonl", ".json") and p.name != "phi_audit.json")
    assert {p.name for p in outputs} >= {"train.jsonl", "eval.jsonl", "test.jsonl", "corpus.jsonl",
                                          "provenance.jsonl", "rejects.jsonl", "manifest.json"}
    args = [a for p in outputs for a in ("--phi-audit", str(p))]
    audit = invoke("data", *args, "--audit-report", str(tmp_path / "audit.json"))
    report = json.loads((tmp_path / "audit.json").read_text(encoding="utf-8"))
    left = [(f["file"], f["row"], f["column"], f["type"]) for f in report["findings"]]
    assert audit.exit_code == 0 and left == [], left[:20]

    # The index built from it (Chroma's sqlite + HNSW files, the BM25 side files): `source` and texts clean too.
    from medscribe.index import build_index
    from medscribe.settings import load_settings

    index_settings = load_settings(None, flags={
        "paths": {"data": str(out), "index": str(tmp_path / "index")},
        "index": {"embedding_model": minilm, "batch_size": 64, "device": "cpu", "writer": "thread"},
    })
    build_index(index_settings, show_progress=False)
    index_text = all_output_text(tmp_path / "index")
    assert "[NAME]" in index_text and "[DATE]" in index_text  # the stored documents are readable in the bytes

    text = all_output_text(out) + index_text + result.output  # every byte written, and what was printed
    leaked = sorted(v for v in injected if v in text)
    assert leaked == [], leaked[:20]
    assert "[NAME]_[DATE].csv" in text  # the file label is recorded, scrubbed
