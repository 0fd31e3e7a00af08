"""Batch input reading: JSONL (the data stage's test.jsonl), CSV (UTF-8/cp1251, `;`), column mapping, errors."""

from __future__ import annotations

import pytest
from ask_helpers import REPORT_ROWS, write_jsonl

from medscribe.ask.inputs import read_inputs
from medscribe.errors import UsageError


def test_data_stage_rows_work_as_is(tmp_path):
    rows = [{**r, "task": "report", "split": "test", "messages": [{"role": "user", "content": "x"}]}
            for r in REPORT_ROWS]
    path = write_jsonl(tmp_path / "test.jsonl", rows)
    out, from_rows = read_inputs(path, {}, "qa")
    assert not from_rows
    assert [r["id"] for r in out] == ["r1", "r2", "r3"]
    assert out[0]["organ"] == "головной мозг" and out[0]["target"] == "Очаговые изменения"
    assert out[0]["task"] == "report"  # the row's own task wins over the default


def test_russian_csv_cp1251_with_mapping(tmp_path):
    text = "ID;Орган;Модальность;Описание;Заключение\n1;печень;КТ;Киста 12 мм;Киста печени\n2;почки;УЗИ;Норма;Норма\n"
    path = tmp_path / "radiology.csv"
    path.write_bytes(text.encode("cp1251"))
    mapping = {"id": "ID", "organ": "Орган", "modality": "Модальность", "input": "Описание", "target": "Заключение"}
    out, _ = read_inputs(path, mapping, "report")
    assert out[0] == {"id": "1", "input": "Киста 12 мм", "target": "Киста печени", "organ": "печень",
                      "modality": "КТ", "specialty": None, "image": None, "task": "report"}


def test_csv_without_id_column_uses_row_numbers(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text("input,specialty\nWhat is anemia?,hematology\n", encoding="utf-8-sig")
    out, from_rows = read_inputs(path, {}, "qa")
    assert from_rows and out[0]["id"] == "row-2" and out[0]["specialty"] == "hematology"


@pytest.mark.parametrize(
    ("rows", "mapping", "message"),
    [
        ([{"id": "a", "question": "q"}], {}, "missing input column 'input'"),
        ([{"id": "a", "input": "q"}], {"target": "answer"}, "missing column 'answer' mapped to target"),
        ([{"id": "a", "input": "  "}], {}, "line 1: field 'input' (input) is empty"),
        ([{"id": "a", "input": "x"}, {"id": "a", "input": "y"}], {}, "line 2: duplicate id (first at line 1)"),
        ([{"id": "a", "input": "x"}], {"diagnosis": "x"}, "unknown field 'diagnosis'"),
    ],
)
def test_bad_input_is_a_one_line_usage_error(tmp_path, rows, mapping, message):
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    with pytest.raises(UsageError) as exc:
        read_inputs(path, mapping, "qa")
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_broken_jsonl_line_and_unknown_format(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"id": "a", "input": "x"}\n{"id": "b", "inp\n', encoding="utf-8")
    with pytest.raises(UsageError, match=r"in.jsonl:2: invalid JSON"):
        read_inputs(path, {}, "qa")
    other = tmp_path / "in.parquet"
    other.write_bytes(b"x")
    with pytest.raises(UsageError, match="unsupported input format"):
        read_inputs(other, {}, "qa")
