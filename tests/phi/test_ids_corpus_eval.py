"""Checksums, the labeled corpus (deterministic, aligned, held out from detector lists) and the metrics."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from medscribe.phi import PHI_TYPES, corpus_lists
from medscribe.phi.corpus import TEMPLATE_SETS, generate_corpus, inflect_surname, typical_reports
from medscribe.phi.evaluate import check_targets, evaluate, precision, recall, summary_metrics
from medscribe.phi.ids import inn_valid, make_inn, make_oms, make_snils, oms_valid, snils_valid

ROOT = Path(__file__).resolve().parents[2]


def test_snils_checksum():
    assert snils_valid("112-233-445 95")
    assert not snils_valid("112-233-445 96")
    assert snils_valid("11223344595")
    assert not snils_valid("112-233-445")


def test_inn_checksum_person_and_organization():
    assert inn_valid("7707083893")  # a well-known organization INN
    assert not inn_valid("7707083894")
    rng = random.Random(1)
    for _ in range(50):
        assert inn_valid(make_inn(rng, person=True))
        assert inn_valid(make_inn(rng, person=False))


def test_generated_numbers_validate():
    rng = random.Random(2)
    for _ in range(50):
        assert snils_valid(make_snils(rng))
        assert oms_valid(make_oms(rng))
    for _ in range(50):  # a wrong control digit is rejected, whatever the first 15 digits
        good = make_oms(rng)
        bad = good[:15] + str((int(good[15]) + 1 + rng.randrange(9)) % 10)
        assert not oms_valid(bad)
    assert not oms_valid("775123456789012")  # 15 digits


def test_russian_surname_declension():
    assert inflect_surname("Белокуров", "m", "dat") == "Белокурову"
    assert inflect_surname("Белокуров", "f", "gen") == "Белокуровой"
    assert inflect_surname("Ухтомский", "f", "acc") == "Ухтомскую"
    assert inflect_surname("Лещенко", "m", "ins") == "Лещенко"


def test_corpus_is_deterministic_and_spans_align():
    a = generate_corpus(60, seed=5)
    b = generate_corpus(60, seed=5)
    assert a == b
    assert a != generate_corpus(60, seed=6)
    for doc in a + [d for t in TEMPLATE_SETS for d in generate_corpus(60, seed=5, templates=t)]:
        assert doc["kind"] in ("phi", "control")
        if doc["kind"] == "control":
            assert doc["spans"] == []
        for start, end, phi_type in doc["spans"]:
            value = doc["text"][start:end]
            assert value == value.strip() and value, doc
            assert phi_type in PHI_TYPES


def test_corpus_covers_every_type_in_both_languages():
    docs = generate_corpus(200, seed=13) + generate_corpus(200, seed=13, templates="heldout")
    seen = {(t, d["lang"]) for d in docs for _, _, t in d["spans"]}
    for phi_type in PHI_TYPES:
        assert any((phi_type, lang) in seen for lang in ("en", "ru")), phi_type
    for lang in ("en", "ru"):
        expected = {"NAME", "DATE", "AGE", "PHONE", "EMAIL", "URL", "ID", "ADDRESS", "ORG"}
        assert {t for t, lg in seen if lg == lang} >= expected


def test_evaluation_lists_are_held_out_from_detector_lists():
    from medscribe.phi import replace, rules_en, rules_ru

    detector_first_names = rules_en.first_names_en()
    assert not set(corpus_lists.FIRST_NAMES_EN) & detector_first_names
    detector_source = "".join(
        Path(m.__file__).read_text(encoding="utf-8").lower() for m in (rules_en, rules_ru, replace)
    ) + "".join(detector_first_names).lower()
    held_out = (
        list(corpus_lists.SURNAMES_RU) + list(corpus_lists.SURNAMES_EN) + list(corpus_lists.STREETS_RU)
        + list(corpus_lists.STREETS_EN) + [c for c, _ in corpus_lists.CITIES_RU] + list(corpus_lists.CITIES_EN)
        + list(corpus_lists.ORG_WORDS_RU) + list(corpus_lists.ORG_NAMES_EN)
    )
    leaked = [w for w in held_out if re.search(rf"\b{re.escape(w.lower())}\b", detector_source)]
    assert leaked == []


def test_metrics_count_partial_coverage_as_a_leak():
    docs = [
        {"id": "1", "lang": "ru", "kind": "phi", "text": "Пациент Иванов Иван, тел. 123", "spans": [[8, 19, "NAME"]]},
        {"id": "2", "lang": "en", "kind": "control", "text": "BI-RADS 4.", "spans": []},
    ]

    def find(texts):
        return [[(8, 16, "NAME"), (26, 29, "PHONE")], [(0, 2, "NAME")]]  # "Иванов И" only; a FP; a control hit

    result = evaluate(docs, find)
    assert recall(result, "NAME", "ru") == 0.5  # "Иван" has a surviving character -> leaked
    assert precision(result, "NAME") == 0.5 and precision(result, "PHONE") == 0.0
    summary = summary_metrics(result)
    assert summary["controls_untouched"] == 0.0
    assert summary["leaked_tokens"] == 1
    assert any(not met for _, _, _, met in check_targets(result))


def test_rules_meet_the_targets_on_a_small_corpus():
    from medscribe.phi.detect import detect_batch

    for templates in TEMPLATE_SETS:
        result = evaluate(generate_corpus(120, seed=21, templates=templates), detect_batch)
        # a type the set has no template for (the "titles" set has only names, dates, phones) has no measurement
        missed = [(label, value) for label, value, _, met in check_targets(result) if not met and value is not None]
        assert missed == [], (templates, missed)


def test_typical_reports_are_report_like():
    rows = typical_reports(200, seed=1)
    assert len(rows) == 200 and all(len(r) > 60 for r in rows)
    assert 0.6 < sum(bool(re.search("[а-я]", r)) for r in rows) / 200 < 0.85


@pytest.mark.slow
def test_bench_script_runs_and_prints_the_key_figure_last():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench/phi_bench.py"), "--n", "80", "--rows", "3000"],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    last = proc.stdout.strip().splitlines()[-1]
    tail = proc.stdout[-2000:] + proc.stderr[-2000:]
    assert last.startswith("phi_bench titles_first_blind_recall=0.7817 (fitted "), tail
    assert " recall_all=" in last and " paths_recall=" in last
    figures = dict(re.findall(r"(recall_all|controls|paths_recall)=([0-9.]+)", last))
    assert float(figures["recall_all"]) >= 0.99 and float(figures["controls"]) >= 0.99, last
    assert float(figures["paths_recall"]) >= 0.99, last
    # Every quality target is met; only the throughput target depends on how busy the machine is. The exit code
    # must agree with the verdict the bench prints.
    assert (proc.returncode, last.endswith(" PASS")) == (0, True) or (
        proc.returncode == 1 and last.endswith(" FAIL: throughput rows/s (tag)")), tail

