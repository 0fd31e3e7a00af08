"""Splits: deterministic, independent of row order, stable when rows are added, no answer in two splits."""

from __future__ import annotations

import random

import polars as pl
from data_helpers import settings_for

from medscribe.data import dedup, leakage, splits


def _records(n: int, seed: int = 0, organs=("печень", "почки", "легкие")) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        organ = organs[i % len(organs)]
        # Few distinct conclusions: many rows share an answer, which must keep them together.
        target = f"Заключение {organ} {rng.randrange(12)}"
        rows.append({"id": f"x{i}", "input": f"Описание {i} {organ}", "target": target, "organ": organ,
                     "specialty": None, "modality": None})
    return rows


def _split(rows: list[dict], settings) -> dict[str, str]:
    frame = dedup.add_keys(pl.DataFrame(rows))
    out, _ = splits.assign_splits(frame, settings.data)
    return dict(zip(out.get_column("id").to_list(), out.get_column("split").to_list(), strict=True))


def test_no_answer_text_lands_in_two_splits(tmp_path):
    settings = settings_for(tmp_path, group_by="organ", test_per_group=10, eval_fraction=0.2)
    rows = _records(300)
    assigned = _split(rows, settings)
    where: dict[str, set[str]] = {}
    for row in rows:
        where.setdefault(row["target"].lower(), set()).add(assigned[row["id"]])
    assert all(len(s) == 1 for s in where.values())
    assert set(assigned.values()) == {"train", "eval", "test"}


def test_splits_do_not_depend_on_row_order_and_follow_the_seed(tmp_path):
    settings = settings_for(tmp_path, group_by="organ", test_per_group=10)
    rows = _records(200)
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert _split(rows, settings) == _split(shuffled, settings)
    other_seed = _split(rows, settings_for(tmp_path, group_by="organ", test_per_group=10, seed=7))
    assert other_seed != _split(rows, settings)


def test_test_set_is_n_per_group_and_stable_when_other_groups_grow(tmp_path):
    settings = settings_for(tmp_path, group_by="organ", test_per_group=5, eval_fraction=0.0)
    rows = [{**r, "target": f"Уникальное заключение {r['id']}"} for r in _records(90)]
    before = _split(rows, settings)
    test_counts: dict[str, int] = {}
    for row in rows:
        if before[row["id"]] == "test":
            test_counts[row["organ"]] = test_counts.get(row["organ"], 0) + 1
    assert test_counts == {"печень": 5, "почки": 5, "легкие": 5}
    extra = [{**r, "id": f"new{i}", "organ": "щитовидная железа", "input": f"Узел {i}", "target": f"Новое {i}"}
             for i, r in enumerate(_records(30, seed=5))]
    after = _split(rows + extra, settings)
    assert {k for k, v in before.items() if v == "test"} <= {k for k, v in after.items() if v == "test"}


def test_train_fractions_move_the_rest_of_train_into_pool(tmp_path):
    settings = settings_for(tmp_path, group_by="organ", test_per_group=0, eval_fraction=0.0,
                            train_fractions={"печень": 0.25})
    rows = [{**r, "target": f"Уникальное заключение {r['id']}"} for r in _records(300)]
    assigned = _split(rows, settings)
    liver = [assigned[r["id"]] for r in rows if r["organ"] == "печень"]
    others = [assigned[r["id"]] for r in rows if r["organ"] != "печень"]
    assert set(others) == {"train"}
    assert 0.1 < liver.count("train") / len(liver) < 0.4 and liver.count("pool") + liver.count("train") == 100


def test_leakage_audit_reports_exact_and_near_inputs_across_splits():
    frame = dedup.add_keys(pl.DataFrame([
        {"id": "a", "input": "Очаг в печени 5 мм.", "target": "Киста.", "split": "train"},
        {"id": "b", "input": "очаг в печени 5 мм", "target": "Гемангиома.", "split": "test"},
        {"id": "c", "input": "В печени образование с четкими контурами 7 мм.", "target": "X.", "split": "train"},
        {"id": "d", "input": "В печени образование с четкими контурами 9 мм.", "target": "Y.", "split": "eval"},
    ]))
    report = leakage.audit_leakage(frame, threshold=0.9)
    assert report["exact_input"]["count"] == 1
    assert report["exact_input"]["examples"][0]["ids"] == ["a", "b"]
    assert report["exact_target"]["count"] == 0
    assert report["near_input"]["count"] == 1 and report["near_input"]["examples"][0]["ids"] == ["c", "d"]
