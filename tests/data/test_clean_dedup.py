"""Column mapping, normalization, value maps, validation and duplicate detection (plain functions)."""

from __future__ import annotations

import unicodedata

import polars as pl
import pytest
from data_helpers import settings_for

from medscribe.data import clean, dedup
from medscribe.errors import UsageError


def _frame(rows: list[dict]) -> pl.DataFrame:
    base = {"id": None, "input": None, "target": None, "organ": None, "modality": None, "specialty": None,
            "has_finding": None, "source": None, "_file": "f.csv", "_folder": "МРТ"}
    full = [{**base, "_row": i + 2, **r} for i, r in enumerate(rows)]
    return pl.DataFrame(full, schema={**{k: pl.String for k in base}, "_row": pl.Int64})


def test_mapping_uses_configured_columns_and_names_a_missing_one(tmp_path):
    settings = settings_for(tmp_path, columns={"finding": "Описание", "conclusion": "Заключение", "organ": "Орган"})
    raw = pl.DataFrame({"Описание": ["очаг"], "Заключение": ["киста"], "Орган": ["печень"], "_row": [2]})
    out = clean.to_canonical(raw.with_columns(pl.lit("f.csv").alias("_file"), pl.lit("x").alias("_folder")),
                             "f.csv", "report", settings.data)
    assert out.row(0, named=True)["input"] == "очаг" and out.row(0, named=True)["organ"] == "печень"
    with pytest.raises(UsageError, match=r"f\.csv: column 'Орган' \(data.columns.organ\) not found; columns: "):
        clean.to_canonical(raw.drop("Орган"), "f.csv", "report", settings.data)


def test_unmapped_qa_columns_are_found_by_name_and_missing_text_columns_are_errors(tmp_path):
    settings = settings_for(tmp_path, task="qa")
    raw = pl.DataFrame({"Question": ["q?"], "ANSWER": ["a."], "_row": [1]})
    out = clean.to_canonical(raw, "x.jsonl", "qa", settings.data)
    assert out.row(0, named=True)["input"] == "q?"
    with pytest.raises(UsageError, match=r"x\.jsonl: no column for answer"):
        clean.to_canonical(raw.drop("ANSWER"), "x.jsonl", "qa", settings.data)


def test_unknown_mapping_key_and_dropped_mapped_column_are_config_errors(tmp_path):
    with pytest.raises(UsageError, match="data.columns: unknown field"):
        clean.check_column_settings(settings_for(tmp_path, columns={"findings": "x"}).data)
    settings = settings_for(tmp_path, columns={"finding": "Описание"}, phi={"columns": {"Описание": "drop"}})
    with pytest.raises(UsageError, match="drops"):
        clean.check_column_settings(settings.data)


def test_normalize_nfc_whitespace_value_maps_and_folder_modality(tmp_path):
    settings = settings_for(
        tmp_path, value_maps={"organ": {"ГМ": "головной мозг"}}, modality_from_folder=True
    )
    decomposed = unicodedata.normalize("NFD", "Йод  в\u00a0норме\r\n\r\n\r\n вывод ")
    frame = clean.normalize(_frame([{"input": decomposed, "target": " ok ", "organ": " гм "}]), settings.data)
    row = frame.row(0, named=True)
    assert row["input"] == "Йод в норме\n\nвывод"
    assert unicodedata.is_normalized("NFC", row["input"])
    assert row["organ"] == "головной мозг"
    assert row["modality"] == "МРТ"


def test_validation_rejects_empty_bad_flags_and_short_rows(tmp_path):
    frame = _frame([
        {"input": "очаг в печени", "target": "киста", "has_finding": "да"},
        {"input": "", "target": "киста"},
        {"input": "очаг", "target": None},
        {"input": "очаг в печени", "target": "киста", "has_finding": "maybe"},
        {"input": "ok", "target": "киста печени"},
    ])
    frame = clean.parse_has_finding(frame)
    kept, rejected = clean.reject_empty(frame)
    assert rejected.get_column("reason").to_list() == ["empty_input", "empty_target", "invalid_has_finding"]
    assert kept.get_column("has_finding").to_list() == [True, None]
    kept, short = clean.reject_short(kept, min_chars=3)
    assert short.get_column("reason").to_list() == ["too_short_input"]
    assert kept.height == 1


def test_duplicates_exact_normalized_and_typos_but_not_laterality_or_numbers():
    rows = [
        {"input": "В печени киста 12 мм с четкими контурами.", "target": "Киста печени."},       # kept
        {"input": "В печени киста 12 мм с четкими контурами.", "target": "Киста печени."},       # exact
        {"input": "в печени КИСТА 12 мм, с четкими контурами", "target": "киста печени"},        # normalized
        {"input": "В печени киста 12 мм с четкими кантурами.", "target": "Киста печени."},       # typo
        {"input": "В печени киста 21 мм с четкими контурами.", "target": "Киста печени."},       # other size
        {"input": "В верхней доле левого легкого очаг 8 мм.", "target": "Очаг левого легкого."},  # kept
        {"input": "В нижней доле правого легкого очаг 8 мм.", "target": "Очаг правого легкого."},  # other side
    ]
    frame = dedup.add_keys(_frame(rows))
    kept, rejects, counts = dedup.reject_duplicates(frame, threshold=0.9)
    assert rejects.get_column("row").to_list() == [3, 4, 5]
    assert rejects.get_column("reason").to_list() == ["duplicate", "near_duplicate", "near_duplicate"]
    assert set(rejects.get_column("detail").to_list()) == {"same as f.csv row 2"}
    assert counts == {"duplicate": 1, "near_duplicate_normalized": 1, "near_duplicate_fuzzy": 1}
    assert kept.height == 4


def test_threshold_one_disables_fuzzy_matching():
    rows = [{"input": "В печени киста с четкими контурами.", "target": "Киста."},
            {"input": "В печени киста с четкими кантурами.", "target": "Киста."}]
    kept, _, counts = dedup.reject_duplicates(dedup.add_keys(_frame(rows)), threshold=1.0)
    assert kept.height == 2 and counts["near_duplicate_fuzzy"] == 0


def test_parallel_scrubbing_equals_serial_and_merges_the_counts(tmp_path, monkeypatch):
    from medscribe.data import anonymize

    rows = [{"input": f"Пациент Иванов И.И., тел. +7 (912) 345-67-{i:02d}. Очаг {i} мм.", "target": "Очаг печени.",
             "organ": "печень"} for i in range(60)]
    frame = _frame(rows)
    settings = settings_for(tmp_path, workers=2)
    serial, serial_report, _ = anonymize.anonymize(frame, settings)
    monkeypatch.setattr(anonymize, "PARALLEL_MIN_TEXTS", 10)
    parallel, parallel_report, _ = anonymize.anonymize(frame, settings)
    assert parallel_report["processes"] == 2 and serial_report["processes"] == 1
    assert parallel.equals(serial)
    assert "Иванов" not in "".join(parallel.get_column("input").to_list())
    assert parallel_report["by_type"] == serial_report["by_type"]
    assert parallel_report["texts_scanned"] == serial_report["texts_scanned"]


def test_fast_reverse_and_json_escape_equal_the_reference():
    import json

    import polars as pl

    from medscribe.data.chat import json_escaped
    from medscribe.data.dedup import reversed_texts

    values = ["киста правой доли", "и\u0306од", "👍🏽 x", "a\"b\\c", "x\ny\x01", None, "", "№ 5 — «п»"]
    series = pl.Series(values, dtype=pl.String)
    assert reversed_texts(series).to_list() == series.str.reverse().to_list()
    assert json_escaped(series).to_list() == [None if v is None else json.dumps(v, ensure_ascii=False)[1:-1]
                                              for v in values]
