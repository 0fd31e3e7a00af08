"""A reasoning column (data.columns.reasoning) reaches the records scrubbed, and cot chat targets carry it."""

from __future__ import annotations

import json

from data_helpers import read_jsonl, settings_for, write_csv

from medscribe.data import run_data


def _rows(n: int) -> list[list[str]]:
    rows = []
    for i in range(n):
        reasoning = f"Очаг {i} мм с четкими контурами, без признаков роста: доброкачественный характер."
        if i == 0:
            reasoning = "Сравнение с исследованием пациента Петрова Ивана Сергеевича, тел. +7 912 345-67-89."
        if i == 1:
            reasoning = ""  # no reasoning for this row: stays None, not ""
        rows.append([f"r{i}", "печень", "КТ", f"В печени очаг {i} мм, контуры четкие.", f"Киста печени {i} мм.",
                     reasoning])
    return rows


def test_reasoning_is_mapped_scrubbed_and_trained_in_cot_targets(tmp_path):
    src = write_csv(tmp_path / "in" / "reports.csv", ["ID", "Орган", "Мод", "Описание", "Заключение", "Обоснование"],
                    _rows(40))
    columns = {"id": "ID", "organ": "Орган", "modality": "Мод", "finding": "Описание", "conclusion": "Заключение",
               "reasoning": "Обоснование"}
    settings = settings_for(tmp_path, inputs=[str(src)], columns=columns, test_per_group=4)
    settings.prompt.variant = "cot"
    run_data(settings)
    records = {}
    for split in ("train", "eval", "test"):
        for row in read_jsonl(tmp_path / "out" / f"{split}.jsonl"):
            records[row["id"]] = row
    by_index = {r["input"].split()[3]: r for r in records.values()}
    assert by_index["5"]["reasoning"].startswith("Очаг 5 мм")
    assert by_index["1"]["reasoning"] is None
    assert "Петров" not in by_index["0"]["reasoning"] and "345-67-89" not in by_index["0"]["reasoning"]
    # The chat format's assistant turn is the cot target: reasoning first, then the conclusion.
    answer = json.loads(by_index["5"]["messages"][-1]["content"])
    assert list(answer)[:2] == ["reasoning", "result"] and answer["reasoning"] == by_index["5"]["reasoning"]
    assert "reasoning" not in json.loads(by_index["1"]["messages"][-1]["content"])


def test_without_the_column_records_have_no_reasoning(tmp_path):
    rows = [r[:5] for r in _rows(20)]
    src = write_csv(tmp_path / "in" / "reports.csv", ["ID", "Орган", "Мод", "Описание", "Заключение"], rows)
    columns = {"id": "ID", "organ": "Орган", "modality": "Мод", "finding": "Описание", "conclusion": "Заключение"}
    run_data(settings_for(tmp_path, inputs=[str(src)], columns=columns, test_per_group=2))
    assert all(r["reasoning"] is None for r in read_jsonl(tmp_path / "out" / "train.jsonl"))
