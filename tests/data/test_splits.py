"""Splits: deterministic, independent of row order, stable when rows are added, no finding (report) or answer
(qa) in two splits, and a test split whose answer distribution tracks the data's."""

from __future__ import annotations

import random

import polars as pl
import pytest
from data_helpers import settings_for, write_jsonl

from medscribe.data import dedup, leakage, run_data, splits
from medscribe.errors import RuntimeFailure, UsageError


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


def test_split_key_both_keeps_every_answer_text_in_one_split(tmp_path):
    settings = settings_for(tmp_path, group_by="organ", test_per_group=10, eval_fraction=0.2,
                            split_group_by="both")
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


STOCK = ("Без острой патологии.", "No acute cardiopulmonary abnormality.", "Возрастные изменения.")


def _stock_records(per_organ: int = 400, organs=("печень", "почки", "легкие")) -> list[dict]:
    """60% of the rows share 3 stock conclusions (20% each); every 10th finding repeats the one before it
    with another conclusion (two radiologists, one finding), so findings link rows into units of two."""
    rows = []
    for organ in organs:
        for i in range(per_organ):
            target = STOCK[i % 5] if i % 5 < 3 else f"Уникальное заключение {organ} {i}."
            finding = f"Описание {organ} {i - 1 if i % 10 == 9 else i}."
            rows.append({"id": f"{organ}-{i}", "input": finding, "target": target, "organ": organ,
                         "specialty": None, "modality": None, "source": f"s{i % 7}"})
    return rows


def _split_frame(rows: list[dict], settings) -> tuple[pl.DataFrame, dict]:
    return splits.assign_splits(dedup.add_keys(pl.DataFrame(rows)), settings.data)


def _share(frame: pl.DataFrame, split: str | None, answers) -> float:
    part = frame if split is None else frame.filter(pl.col("split") == split)
    return part.filter(pl.col("target").is_in(list(answers))).height / part.height


def test_report_test_split_holds_stock_answers_in_their_share_and_no_finding_in_two_splits(tmp_path):
    settings = settings_for(tmp_path, task="report", group_by="organ", test_per_group=30, eval_fraction=0.1)
    rows = _stock_records()
    frame, info = _split_frame(rows, settings)
    assert info["key"] == "input" and info["linked_by"] == ["input"] and info["largest_unit_rows"] == 2
    test = frame.filter(pl.col("split") == "test")
    assert dict(test.group_by("organ").len().iter_rows()) == {"печень": 30, "почки": 30, "легкие": 30}
    # Proportional quotas per group: 20% of 30 = 6 rows per stock answer per organ; a stratum may end one row
    # short when its next unit is a two-row finding (<= 1/30 = 0.033 per answer). 0.05 holds that and still
    # fails a sampler that ignores answers (a random 90 rows: std 0.05 on the 0.6 share) or one that keeps
    # stock answers out of test (share 0).
    assert _share(frame, None, STOCK) == pytest.approx(0.6)
    assert abs(_share(frame, "test", STOCK) - 0.6) <= 0.05
    for answer in STOCK:
        assert abs(_share(frame, "test", [answer]) - 0.2) <= 0.05, answer
    where: dict[str, set[str]] = {}
    for finding, split in frame.select("_norm_input", "split").iter_rows():
        where.setdefault(finding, set()).add(split)
    assert all(len(s) == 1 for s in where.values())  # no finding in two splits
    # The audit: the 3 stock answers lead, with their share in all rows and in test, named without full text.
    top = info["top_answers"]
    assert [t["rows"] for t in top[:3]] == [240, 240, 240] and all(t["share_all"] == 0.2 for t in top[:3])
    assert all(abs(t["share_test"] - 0.2) <= 0.05 for t in top[:3])
    assert top[0]["prefix"].endswith("…") and len(top[0]["prefix"]) <= splits.PREFIX_CHARS + 1
    assert len(top[0]["answer_sha256"]) == 16
    assert len(top) == 3 and info["top_answers_share"]["all"] == pytest.approx(0.6)  # answers given once: not top
    assert abs(info["top_answers_share"]["test"] - info["top_answers_share"]["all"]) <= 0.05
    assert splits.representativeness_warning(info) is None
    leak = leakage.audit_leakage(frame, threshold=0.95)
    assert leak["exact_input"]["count"] == 0 and leak["exact_target"]["count"] == 3  # stock answers: reported
    splits.check_no_leak(leak, info)  # shared targets are allowed with the report key


def test_linking_answers_keeps_stock_answers_out_of_test_and_says_so(tmp_path):
    settings = settings_for(tmp_path, task="report", group_by="organ", test_per_group=30, split_group_by="both")
    frame, info = _split_frame(_stock_records(), settings)
    assert info["linked_by"] == ["input", "target"]
    assert _share(frame, "test", STOCK) == 0  # each stock answer is one unit of 720 rows > the quota
    warning = splits.representativeness_warning(info)
    assert warning and "not representative" in warning and "'both'" in warning
    assert info["top_answers"][0]["share_test"] == 0


def test_qa_default_keeps_answers_together_and_a_column_key_links_its_values(tmp_path):
    rows = _stock_records(per_organ=60)
    qa = settings_for(tmp_path, task="qa", group_by="organ", test_per_group=5)
    frame, info = _split_frame(rows, qa)
    assert info["key"] == "both"
    assert frame.group_by("_norm_target").agg(pl.col("split").n_unique()).get_column("split").max() == 1
    by_source = settings_for(tmp_path, task="report", group_by="organ", test_per_group=5, eval_fraction=0.2,
                             split_group_by="source")
    frame, info = _split_frame(rows, by_source)
    assert info["key"] == "source" and info["units"] <= 7
    assert frame.group_by("source").agg(pl.col("split").n_unique()).get_column("split").max() == 1
    with pytest.raises(UsageError, match="split_group_by"):
        settings_for(tmp_path, split_group_by="target")  # a finding could sit in two splits: not offered


def test_a_linked_field_in_two_splits_fails_the_run():
    leak = {"exact_input": {"count": 1}, "exact_target": {"count": 4}}
    with pytest.raises(RuntimeFailure, match="normalized input landed in two splits"):
        splits.check_no_leak(leak, {"key": "input", "linked_by": ["input"]})
    with pytest.raises(RuntimeFailure, match="normalized target"):
        splits.check_no_leak({**leak, "exact_input": {"count": 0}}, {"key": "both", "linked_by": ["input", "target"]})


def test_manifest_shows_a_representative_test_split_on_stock_answers(tmp_path):
    rows = [{k: r[k] for k in ("id", "input", "target", "organ")} for r in _stock_records(per_organ=200)]
    source = write_jsonl(tmp_path / "raw" / "reports.jsonl", rows)
    settings = settings_for(tmp_path, scrub=False, task="report", inputs=[str(source)], group_by="organ",
                            test_per_group=20, columns={"finding": "input", "conclusion": "target"})
    result = run_data(settings)
    audit = result.manifest["splits_audit"]
    assert audit["key"] == "input" and audit["shared_across_splits"]["inputs"] == 0
    assert audit["shared_across_splits"]["targets"] >= 3
    assert result.splits["test"] == 60
    assert abs(audit["top_answers_share"]["test"] - audit["top_answers_share"]["all"]) <= 0.05
    assert [t["rows"] for t in audit["top_answers"][:3]] == [120, 120, 120]
    assert not any("not representative" in w for w in result.warnings)


def test_a_missing_column_value_links_nothing():
    frame = pl.DataFrame({"_norm_input": ["a", "b", "c", "d", "d"], "source": [None, None, "x", "x", None]})
    assert splits.find_units(frame, ["_norm_input", "source"]).to_list() == [0, 1, 2, 2, 2]
