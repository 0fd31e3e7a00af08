"""Reading raw exports: encodings, separators, spreadsheets, JSON shapes, folders and globs, bad files."""

from __future__ import annotations

import json

import pytest
from data_helpers import QA_ROWS, RU_HEADER, RU_ROWS, settings_for, write_csv, write_jsonl, write_xlsx

from medscribe.data import ingest
from medscribe.errors import UsageError


def _read(path, tmp_path, **data):
    settings = settings_for(tmp_path, **data)
    return ingest.read_source(ingest.SourceFile(path, path.parent), settings.data)


@pytest.mark.parametrize(
    ("sep", "encoding", "expected_encoding"),
    [(";", "utf-8", "utf-8"), (",", "utf-8-sig", "utf-8-sig"), (";", "cp1251", "cp1251"), ("\t", "utf-8", "utf-8")],
)
def test_csv_encodings_and_separators_are_detected(tmp_path, sep, encoding, expected_encoding):
    path = write_csv(tmp_path / "r.csv", RU_HEADER, RU_ROWS, sep=sep, encoding=encoding)
    frame, info = _read(path, tmp_path)
    assert info.encoding == expected_encoding
    assert info.separator == sep
    assert set(RU_HEADER) <= set(frame.columns)
    assert frame.height == len(RU_ROWS)
    assert frame.get_column("Описание").to_list()[0] == RU_ROWS[0][3]
    assert frame.get_column("_row").to_list()[:2] == [2, 3]  # header is line 1


def test_cp1251_fallback_is_noted(tmp_path):
    path = write_csv(tmp_path / "r.csv", RU_HEADER, RU_ROWS, encoding="cp1251")
    _, info = _read(path, tmp_path)
    assert any("cp1251" in note for note in info.notes)


def test_explicit_encoding_that_does_not_fit_is_a_usage_error(tmp_path):
    path = write_csv(tmp_path / "r.csv", RU_HEADER, RU_ROWS, encoding="cp1251")
    with pytest.raises(UsageError, match=r"r\.csv:1: undecodable bytes \(not utf-8"):
        _read(path, tmp_path, encoding="utf-8")


def test_bytes_that_are_neither_utf8_nor_cp1251_are_a_usage_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"a;b\n" + b"x\x98y;z\n")  # 0x98 is undefined in cp1251
    with pytest.raises(UsageError, match=r"bad\.csv:2: undecodable bytes"):
        _read(path, tmp_path)


def test_xlsx_reads_all_cells_as_text_and_checks_the_sheet(tmp_path):
    rows = [[*r[:3], r[3], r[4]] for r in RU_ROWS]
    rows[0][0] = 101  # numeric cell stays text
    path = write_xlsx(tmp_path / "r.xlsx", RU_HEADER, rows, sheet="Отчеты")
    frame, info = _read(path, tmp_path, sheet="Отчеты")
    assert info.sheet == "Отчеты" and frame.height == len(rows)
    assert frame.get_column("ID").to_list()[0] == "101"
    assert frame.get_column("_row").to_list()[0] == 2
    with pytest.raises(UsageError, match=r"r\.xlsx: sheet 'Лист2' not found \(sheets: Отчеты\)"):
        _read(path, tmp_path, sheet="Лист2")


def test_json_question_answer_map_takes_specialty_from_file_name(tmp_path):
    path = tmp_path / "dataset_with_answers_cardiology.json"
    path.write_text(json.dumps({"What is angina?": "Chest pain from ischemia.", "What is AF?": "An arrhythmia."}))
    frame, info = _read(path, tmp_path)
    assert frame.get_column("question").to_list() == ["What is angina?", "What is AF?"]
    assert set(frame.get_column("_specialty_from_file").to_list()) == {"cardiology"}
    assert frame.get_column("_row").to_list() == [1, 2]


def test_jsonl_keeps_line_numbers_and_marks_a_broken_line(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", QA_ROWS)
    frame, _ = _read(path, tmp_path)
    assert frame.height == len(QA_ROWS)
    path.write_text(path.read_text() + "\n{broken\n")
    frame, info = _read(path, tmp_path)
    assert frame.get_column("_row").to_list() == [1, 2, 3, 4, 6]
    assert frame.get_column("_invalid").to_list()[:4] == [None] * 4
    assert frame.get_column("_invalid").to_list()[4].startswith("invalid JSON (")
    assert any("invalid_json" in note for note in info.notes)
    path.write_text('{"question": "q", "answer": "a"}\n{broken\n"a string"\n')
    with pytest.raises(UsageError, match=r"qa\.jsonl:2: invalid JSON .*2 of 3 lines are broken"):
        _read(path, tmp_path)


def test_empty_and_missing_files_are_usage_errors(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(UsageError, match=r"empty\.csv: file is empty"):
        _read(empty, tmp_path)
    header_only = write_csv(tmp_path / "h.csv", RU_HEADER, [])
    with pytest.raises(UsageError, match=r"h\.csv"):
        _read(header_only, tmp_path)
    with pytest.raises(UsageError, match=r"nope\.csv: file not found"):
        ingest.discover_files([str(tmp_path / "nope.csv")])


def test_folders_are_recursive_and_globs_keep_relative_paths(tmp_path):
    write_csv(tmp_path / "exports" / "МРТ" / "a.csv", RU_HEADER, RU_ROWS[:2])
    write_csv(tmp_path / "exports" / "КТ" / "deep" / "b.csv", RU_HEADER, RU_ROWS[2:])
    (tmp_path / "exports" / "notes.md").write_text("not data")
    found = ingest.discover_files([str(tmp_path / "exports")])
    assert [f.relative for f in found] == ["КТ/deep/b.csv", "МРТ/a.csv"]
    assert [f.folder for f in found] == ["deep", "МРТ"]
    globbed = ingest.discover_files([str(tmp_path / "exports" / "**" / "*.csv")])
    assert [f.relative for f in globbed] == ["КТ/deep/b.csv", "МРТ/a.csv"]
    with pytest.raises(UsageError, match="no data files match"):
        ingest.discover_files([str(tmp_path / "exports" / "*.xlsx")])
