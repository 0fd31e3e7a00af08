"""`medscribe data` end to end on raw files: both tasks, English and Russian, every input shape, PHI, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_helpers import (
    QA_ROWS,
    RU_HEADER,
    RU_ROWS,
    all_output_text,
    invoke,
    read_jsonl,
    settings_for,
    write_config,
    write_csv,
    write_jsonl,
    write_xlsx,
)

from medscribe.data import run_data
from medscribe.schemas import Record

REPORT_TOML = """
[paths]
data = "{out}"
[data]
task = "report"
inputs = ["{input}"]
group_by = "organ"
test_per_group = 3
[data.columns]
id = "ID"
organ = "Орган"
modality = "Модальность"
finding = "Описание"
conclusion = "Заключение"
[data.value_maps.organ]
"гм" = "головной мозг"
"щж" = "щитовидная железа"
"""
SAMPLE_PHI = ["Кудрявцев", "Сорокина", "345-67-89", "7751234567890123", "14.05.1962"]


def _report_config(tmp_path: Path, input_path: Path, out: Path) -> Path:
    return write_config(tmp_path / "medscribe.toml", REPORT_TOML.format(out=out, input=input_path))


def _splits(out: Path) -> dict[str, list[dict]]:
    names = ("train", "eval", "test", "pool")
    return {name: read_jsonl(out / f"{name}.jsonl") for name in names if (out / f"{name}.jsonl").exists()}


def test_russian_report_sample_end_to_end(tmp_path, sample_dir):
    out = tmp_path / "out"
    config = _report_config(tmp_path, sample_dir / "report" / "radiology_ru.csv", out)
    result = invoke("--config", str(config), "data")
    assert result.exit_code == 0, result.output
    assert "rows per split and organ" in result.output and "most frequent answers per split" in result.output

    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    rejects = read_jsonl(out / "rejects.jsonl")
    splits = _splits(out)
    assert counts["rows_in"] == 224 == counts["rows_kept"] + counts["rows_rejected"]
    assert counts["rows_rejected"] == len(rejects) > 0 and counts["rows_kept"] == sum(map(len, splits.values()))
    assert manifest["phi"]["enabled"] and manifest["phi"]["by_type"]["NAME"] > 0
    assert manifest["inputs"][0]["sha256"] and manifest["config_hash"]
    # Report task: a finding is never in two splits; stock conclusions may be (reported, not forbidden).
    audit = manifest["splits_audit"]
    assert manifest["leakage"]["exact_input"]["count"] == 0 == audit["shared_across_splits"]["inputs"]
    assert audit["key"] == "input"

    text = all_output_text(out)
    for value in SAMPLE_PHI:
        assert value not in text, value
    assert "[NAME]" in text

    rows = [r for rows in splits.values() for r in rows]
    organs = {r["organ"] for r in rows}
    assert organs >= {"головной мозг", "щитовидная железа"} and "гм" not in organs
    for row in rows:
        Record(**{k: v for k, v in row.items() if k != "messages"})
        assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
        assert json.loads(row["messages"][-1]["content"]) == {"result": row["target"]}
    findings: dict[str, set[str]] = {}
    for row in rows:
        findings.setdefault(row["input"], set()).add(row["split"])
    assert all(len(s) == 1 for s in findings.values())

    corpus = read_jsonl(out / "corpus.jsonl")
    assert [c["id"] for c in corpus] == [r["id"] for r in splits["train"]]
    assert set(corpus[0]) == {"id", "text", "answer", "task", "specialty", "organ", "modality", "source", "split"}
    assert {c["split"] for c in corpus} == {"train"}

    from datasets import load_from_disk

    dd = load_from_disk(str(out / "dataset"))
    assert set(dd) == set(splits) and len(dd["train"]) == len(splits["train"])
    assert dd["train"][0]["messages"][0]["role"] == "system"

    # A rerun gives byte-identical splits (stable ids, deterministic splits).
    before = {n: (out / f"{n}.jsonl").read_bytes() for n in ("train", "eval", "test", "corpus", "rejects")}
    assert invoke("--config", str(config), "data").exit_code == 0
    assert before == {n: (out / f"{n}.jsonl").read_bytes() for n in before}


def test_english_qa_jsonl_with_sharegpt_format(tmp_path, sample_dir):
    out = tmp_path / "qa"
    result = invoke("data", "--input", str(sample_dir / "qa" / "medquad_sample.jsonl"), "--task", "qa",
                    "--out", str(out), "--format", "sharegpt", "--seed", "3")
    assert result.exit_code == 0, result.output
    splits = _splits(out)
    row = splits["train"][0]
    assert row["task"] == "qa" and row["source"] and row["specialty"]
    assert [t["from"] for t in row["conversations"]] == ["system", "human", "gpt"]
    assert json.loads(row["conversations"][-1]["value"])["answer"] == row["target"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["chat_field"] == "conversations" and manifest["counts"]["rows_in"] == 247
    ids = {r["id"] for rows in splits.values() for r in rows}
    assert all(i.startswith("mq-") for i in ids)  # the source's own ids are kept


def test_mixed_folder_xlsx_cp1251_and_folder_modality(tmp_path):
    root = tmp_path / "exports"
    header = ["Орган", "Описание", "Заключение", "Пациент"]
    rows = [[r[1], r[3], r[4], "Петров П.П."] for r in RU_ROWS]
    write_csv(root / "УЗИ" / "part1.csv", header, rows[:3], sep=";", encoding="cp1251")
    write_xlsx(root / "КТ" / "part2.xlsx", header, rows[3:])
    settings = settings_for(
        tmp_path, inputs=[str(root)], columns={"organ": "Орган", "finding": "Описание", "conclusion": "Заключение"},
        value_maps={"organ": {"гм": "головной мозг", "щж": "щитовидная железа"}}, modality_from_folder=True,
        test_per_group=1, group_by="modality", phi={"columns": {"Пациент": "drop"}},
    )
    result = run_data(settings)
    assert result.counts == {"rows_in": 6, "rows_kept": 6, "rows_rejected": 0}
    assert any("cp1251" in w for w in result.warnings)
    rows = [r for rows in _splits(result.out_dir).values() for r in rows]
    assert {r["modality"] for r in rows} == {"УЗИ", "КТ"}
    assert {r["source"] for r in rows} == {"УЗИ/part1.csv", "КТ/part2.xlsx"}
    assert "Иванов" not in all_output_text(result.out_dir) and "Петров" not in all_output_text(result.out_dir)
    provenance = read_jsonl(result.out_dir / "provenance.jsonl")
    assert {(p["file"], p["row"]) for p in provenance} >= {("УЗИ/part1.csv", 2), ("КТ/part2.xlsx", 4)}
    # Ids are stable and not row-order dependent: they hash file + content.
    again = run_data(settings)
    assert read_jsonl(again.out_dir / "provenance.jsonl") == provenance


def test_specialty_json_files_alpaca_and_english_phi(tmp_path):
    root = tmp_path / "qa"
    root.mkdir()
    (root / "dataset_with_answers_cardiology.json").write_text(json.dumps({
        "What is angina pectoris?": "Chest pain caused by reduced blood flow to the heart.",
        "Call Dr. Jane Miller at (617) 555-0143 about what lowers blood pressure?": "Diet, exercise and drugs.",
    }), encoding="utf-8")
    write_jsonl(root / "more.jsonl", QA_ROWS)
    settings = settings_for(tmp_path, task="qa", inputs=[str(root)], chat_format="alpaca", test_per_group=1)
    result = run_data(settings)
    assert result.counts["rows_in"] == 6 and result.counts["rows_kept"] == 6
    rows = [r for rows in _splits(result.out_dir).values() for r in rows]
    assert {r["specialty"] for r in rows} >= {"cardiology", "hematology", "rheumatology"}
    alpaca = rows[0]["alpaca"]
    assert set(alpaca) == {"instruction", "input", "output"} and "Question:" in alpaca["input"]
    text = all_output_text(result.out_dir)
    for value in ("John Smith", "03/14/1962", "Jane Miller", "555-0143"):
        assert value not in text, value


def test_russian_qa_json_and_english_report_csv(tmp_path):
    """The other two combinations of task shape and language: Russian QA by specialty, English reports."""
    qa = tmp_path / "qa"
    qa.mkdir()
    (qa / "dataset_with_answers_кардиология.json").write_text(json.dumps({
        "Что такое стенокардия?": "Боль в груди из-за недостаточного кровотока в сердце.",
        "Пациентка Смирнова спрашивает, как снизить давление?": "Диета, нагрузка и препараты.",
        "Чем опасна фибрилляция предсердий?": "Риском инсульта.",
    }, ensure_ascii=False), encoding="utf-8")
    result = run_data(settings_for(tmp_path, task="qa", inputs=[str(qa)], test_per_group=1))
    rows = [r for rows in _splits(result.out_dir).values() for r in rows]
    assert result.counts["rows_kept"] == 3 and {r["specialty"] for r in rows} == {"кардиология"}
    assert "Смирнова" not in all_output_text(result.out_dir)
    assert any("стенокардия" in r["messages"][-2]["content"] for r in rows)

    report = write_csv(tmp_path / "en" / "reports.csv", ["organ", "finding", "impression"], [
        ["liver", "A 12 mm hypodense lesion in segment 7, well defined.", "Hepatic cyst."],
        ["brain", "Seen by Dr. Whitfield: a 5 mm T2 hyperintense focus in the frontal white matter.",
         "Nonspecific white matter focus."],
        ["kidney", "No hydronephrosis. A 20 mm simple cyst in the left kidney.", "Simple left renal cyst."],
    ], sep=",")
    settings = settings_for(tmp_path / "r", task="report", inputs=[str(report)], test_per_group=1,
                            columns={"organ": "organ", "finding": "finding", "conclusion": "impression"})
    result = run_data(settings)
    rows = [r for rows in _splits(result.out_dir).values() for r in rows]
    assert result.counts["rows_kept"] == 3 and {r["organ"] for r in rows} == {"liver", "brain", "kidney"}
    assert "Whitfield" not in all_output_text(result.out_dir)
    assert "12 mm" in all_output_text(result.out_dir)  # a size is not PHI


def test_rejects_account_for_every_row_and_carry_no_raw_phi(tmp_path):
    phi_row = ["r9", "печень", "УЗИ", "Пациентка Смирнова Анна Сергеевна. В печени киста 12 мм.", "Киста печени."]
    rows = [
        *RU_ROWS,
        phi_row,
        phi_row,                                             # exact duplicate (with PHI)
        ["r10", "печень", "УЗИ", "", "Киста печени."],       # empty finding
        ["r11", "печень", "УЗИ", "Норма", "ok"],             # too short conclusion
        ["r2", "почки", "УЗИ", "Другое описание почек.", "Другое заключение."],  # repeated id
    ]
    path = write_csv(tmp_path / "r.csv", RU_HEADER, rows)
    settings = settings_for(tmp_path, inputs=[str(path)], columns={
        "id": "ID", "organ": "Орган", "modality": "Модальность", "finding": "Описание", "conclusion": "Заключение"},
        min_chars=3)
    result = run_data(settings)
    rejects = read_jsonl(result.out_dir / "rejects.jsonl")
    assert result.counts == {"rows_in": 11, "rows_kept": 7, "rows_rejected": 4}
    assert {(r["row"], r["reason"]) for r in rejects} == {
        (9, "duplicate"), (10, "empty_input"), (11, "too_short_target"), (12, "duplicate_id")}
    assert all(r["file"] == "r.csv" for r in rejects)
    assert "Смирнова" not in (result.out_dir / "rejects.jsonl").read_text()
    assert result.steps == {"duplicate": 1, "empty_input": 1, "too_short_target": 1, "duplicate_id": 1}


def test_ragged_csv_rows_are_rejected_not_truncated(tmp_path):
    path = write_csv(tmp_path / "r.csv", RU_HEADER, RU_ROWS)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] += ";лишнее поле"  # data row 2 (file row 3) has one field more than the header
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = settings_for(tmp_path, inputs=[str(path)], columns={
        "id": "ID", "organ": "Орган", "modality": "Модальность", "finding": "Описание", "conclusion": "Заключение"},
        min_chars=3)
    result = run_data(settings)
    rejects = read_jsonl(result.out_dir / "rejects.jsonl")
    assert [(r["row"], r["reason"], r["detail"]) for r in rejects] == [(3, "ragged_row", "more fields than the header")]
    assert result.counts == {"rows_in": len(RU_ROWS), "rows_kept": len(RU_ROWS) - 1, "rows_rejected": 1}


def test_train_fractions_write_a_pool_split_and_a_rerun_without_removes_it(tmp_path, sample_dir):
    base = {"inputs": [str(sample_dir / "qa" / "medquad_sample.jsonl")], "task": "qa", "test_per_group": 2}
    result = run_data(settings_for(tmp_path, train_fractions={"*": 0.5}, **base))
    assert result.splits["pool"] > 0 and (result.out_dir / "pool.jsonl").exists()
    assert not {r["id"] for r in read_jsonl(result.out_dir / "pool.jsonl")} & {
        c["id"] for c in read_jsonl(result.out_dir / "corpus.jsonl")}
    result = run_data(settings_for(tmp_path, **base))
    assert "pool" not in result.splits and not (result.out_dir / "pool.jsonl").exists()


def test_disabled_phi_is_loud(tmp_path):
    path = write_csv(tmp_path / "r.csv", RU_HEADER, RU_ROWS)
    config = _report_config(tmp_path, path, tmp_path / "out")
    config.write_text(config.read_text() + "[data.phi]\nenabled = false\n", encoding="utf-8")
    result = invoke("--config", str(config), "data")
    assert result.exit_code == 0, result.output
    assert "PHI scrubbing disabled" in result.output
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["phi"]["enabled"] is False


def _one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_bad_inputs_exit_2_with_one_line_naming_the_file(tmp_path):
    out = str(tmp_path / "out")
    good = write_csv(tmp_path / "good.csv", RU_HEADER, RU_ROWS)
    config = _report_config(tmp_path, good, tmp_path / "out")

    _one_line_error(invoke("--config", str(config), "data", "--input", str(tmp_path / "missing.csv")),
                    "missing.csv", "not found")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    _one_line_error(invoke("--config", str(config), "data", "--input", str(empty)), "empty.csv", "empty")
    no_organ = write_csv(tmp_path / "no_organ.csv", ["ID", "Модальность", "Описание", "Заключение"],
                         [[r[0], r[2], r[3], r[4]] for r in RU_ROWS])
    _one_line_error(invoke("--config", str(config), "data", "--input", str(no_organ)),
                    "no_organ.csv", "'Орган'", "data.columns.organ")
    broken = tmp_path / "broken.jsonl"  # most lines broken: not a JSONL file, an error (one truncated line: a reject)
    broken.write_text('{"question": "q", "answer": "a"}\n{"question": \n[1, 2\n', encoding="utf-8")
    _one_line_error(invoke("data", "--input", str(broken), "--task", "qa", "--out", out), "broken.jsonl:2",
                    "2 of 3 lines are broken")
    broken_json = tmp_path / "dataset_with_answers_cardiology.json"
    broken_json.write_text('{"What is angina?": "Chest pain.",\n "What is', encoding="utf-8")
    _one_line_error(invoke("data", "--input", str(broken_json), "--task", "qa", "--out", out),
                    "dataset_with_answers_cardiology.json:2")
    cp = write_csv(tmp_path / "cp.csv", RU_HEADER, RU_ROWS, encoding="cp1251")
    config_utf8 = write_config(tmp_path / "utf8.toml", config.read_text().replace(
        'task = "report"', 'task = "report"\nencoding = "utf-8"'))
    _one_line_error(invoke("--config", str(config_utf8), "data", "--input", str(cp)), "cp.csv:1", "undecodable")
    xlsx = write_xlsx(tmp_path / "book.xlsx", RU_HEADER, RU_ROWS)
    config_sheet = write_config(tmp_path / "sheet.toml", config.read_text().replace(
        'task = "report"', 'task = "report"\nsheet = "Данные"'))
    _one_line_error(invoke("--config", str(config_sheet), "data", "--input", str(xlsx)), "book.xlsx", "'Данные'")
    result = invoke("data", "--input", str(good), "--task", "essay", "--out", out)
    assert result.exit_code == 2 and "data.task" in result.output


def test_phi_audit_finds_phi_in_raw_files_and_none_in_outputs(tmp_path, sample_dir):
    raw = sample_dir / "report" / "radiology_ru.csv"
    report = tmp_path / "audit.json"
    result = invoke("data", "--phi-audit", str(raw), "--audit-report", str(report))
    assert result.exit_code == 1, result.output
    audit = json.loads(report.read_text())
    assert audit["findings_count"] > 0 and {"NAME", "PHONE"} <= set(audit["by_type"])
    finding = audit["findings"][0]
    assert set(finding) == {"file", "row", "column", "type", "start", "end"} and finding["column"] == "Описание"
    for value in SAMPLE_PHI:
        assert value not in report.read_text() and value not in result.output

    notes = tmp_path / "notes.txt"
    notes.write_text("Patient John Smith called from (617) 555-0143.\nNo findings.\n", encoding="utf-8")
    result = invoke("data", "--phi-audit", str(notes), "--audit-report", str(report))
    assert result.exit_code == 1
    assert {(f["row"], f["column"]) for f in json.loads(report.read_text())["findings"]} == {(1, "text")}

    out = tmp_path / "out"
    config = _report_config(tmp_path, raw, out)
    assert invoke("--config", str(config), "data").exit_code == 0
    # The scrubbed outputs: the audit finds nothing at all in them (the chat turns included).
    result = invoke("--config", str(config), "data", "--phi-audit", str(out / "train.jsonl"),
                    "--phi-audit", str(out / "rejects.jsonl"), "--phi-audit", str(out / "corpus.jsonl"))
    left = [(f["file"], f["row"], f["type"]) for f in json.loads((out / "phi_audit.json").read_text())["findings"]]
    assert result.exit_code == 0 and left == [], left
    clean = tmp_path / "clean.csv"
    clean.write_text("finding;conclusion\nКиста печени 12 мм.;Киста печени.\n", encoding="utf-8")
    result = invoke("--config", str(config), "data", "--phi-audit", str(clean))
    assert result.exit_code == 0, result.output
    assert "no PHI found" in result.output and (out / "phi_audit.json").exists()


@pytest.mark.parametrize("flag", ["--input", "--phi-audit"])
def test_help_mentions_the_flags(flag):
    result = invoke("data", "--help")
    assert result.exit_code == 0 and flag in result.output


def test_phi_columns_drop_and_pseudonymize_the_id_column(tmp_path, monkeypatch):
    header = ["MRN", "ФИО", "Описание", "Заключение"]
    rows = [[f"77{i:06d}", "Сидоров Петр Ильич", f"Очаг в печени {i} мм.", f"Очаг печени {i} мм."] for i in range(1, 6)]
    path = write_csv(tmp_path / "r.csv", header, rows)
    columns = {"id": "MRN", "finding": "Описание", "conclusion": "Заключение"}
    tagged = run_data(settings_for(tmp_path, inputs=[str(path)], columns=columns, test_per_group=1,
                                   phi={"columns": {"MRN": "pseudonymize", "ФИО": "drop"}}))
    ids = [r["id"] for rows in _splits(tagged.out_dir).values() for r in rows]
    assert len(set(ids)) == 5 and not any(i.startswith("77") for i in ids)
    assert any("content" in w for w in tagged.warnings)
    monkeypatch.setenv("MEDSCRIBE_DATA__PHI__SALT", "test-salt")
    pseudo = run_data(settings_for(tmp_path, inputs=[str(path)], columns=columns, test_per_group=1,
                                   phi={"columns": {"MRN": "pseudonymize", "ФИО": "drop"}, "mode": "pseudonym"}))
    ids = [r["id"] for rows in _splits(pseudo.out_dir).values() for r in rows]
    assert len(set(ids)) == 5 and all(len(i) == 8 and i.isdigit() for i in ids)
    assert not set(ids) & {r[0] for r in rows}
    assert "Сидоров" not in all_output_text(pseudo.out_dir)
