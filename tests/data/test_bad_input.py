"""Issue 20, bad input: broken JSONL lines and control bytes are rejects, cp1251 only for plausible files,
data.max_chars, hidden files said out loud, and no PHI from file paths in any output."""

from __future__ import annotations

import json

import pytest
from data_helpers import RU_HEADER, RU_ROWS, all_output_text, read_jsonl, settings_for, write_csv, write_jsonl

from medscribe.data import ingest, run_data
from medscribe.errors import UsageError

COLUMNS = {"id": "ID", "organ": "Орган", "modality": "Модальность", "finding": "Описание", "conclusion": "Заключение"}
QA = [
    {"question": f"What does finding number {i} of the liver mean?", "answer": f"It is a benign cyst, case {i}."}
    for i in range(1, 7)
]


def _rejects(result) -> list[dict]:
    return read_jsonl(result.out_dir / "rejects.jsonl")


def test_a_truncated_jsonl_line_is_a_reject_with_its_line_number(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", QA)
    path.write_text(path.read_text(encoding="utf-8") + '{"question": "What is a cyst?", "ans\n', encoding="utf-8")
    result = run_data(settings_for(tmp_path, task="qa", inputs=[str(path)], test_per_group=1))
    assert result.counts == {"rows_in": 7, "rows_kept": 6, "rows_rejected": 1}
    [reject] = _rejects(result)
    assert (reject["file"], reject["row"], reject["reason"]) == ("qa.jsonl", 7, "invalid_json")
    assert reject["detail"].startswith("invalid JSON (") and reject["input"] is None
    assert any("qa.jsonl: 1 broken line rejected as invalid_json" in w for w in result.warnings)


def test_a_jsonl_file_with_mostly_broken_lines_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "reports.jsonl"
    path.write_text(json.dumps(QA[0]) + "\n{\"question\": \n{\"question\": \"x\", \n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"reports\.jsonl:2: invalid JSON .*2 of 3 lines are broken"):
        run_data(settings_for(tmp_path, task="qa", inputs=[str(path)]))


def test_fields_with_nul_or_c0_control_bytes_are_rejected(tmp_path):
    rows = [list(r) for r in RU_ROWS]
    rows[1][3] = "В VII сегменте\x00 гиперэхогенное образование 12 мм."  # NUL in the finding
    rows[3][4] = "Солидный очаг\x1b[0m верхней доли."  # an ESC sequence in the conclusion
    rows[4][3] = "В нижней доле\tлевого легкого солидный очаг 8 мм."  # a tab is text, not a reject
    path = write_csv(tmp_path / "r.csv", RU_HEADER, rows)
    qa = tmp_path / "qa.jsonl"
    qa_rows = [*QA[:2], {**QA[2], "answer": "A cyst,\r\nbenign.\tNo follow-up."}, {**QA[3], "answer": "A cyst.\u0007"}]
    qa.write_text("".join(json.dumps(r) + "\n" for r in qa_rows), encoding="utf-8")  # CR, LF, tab: text
    result = run_data(settings_for(tmp_path, inputs=[str(path)], columns=COLUMNS, test_per_group=1))
    got = {(r["row"], r["reason"], r["detail"]) for r in _rejects(result)}
    assert got == {(3, "control_bytes", "NUL or another C0 control byte in input"),
                   (5, "control_bytes", "NUL or another C0 control byte in target")}
    assert result.counts["rows_kept"] == len(RU_ROWS) - 2
    qa_result = run_data(settings_for(tmp_path / "q", task="qa", inputs=[str(qa)], test_per_group=1))
    assert [(r["row"], r["reason"]) for r in _rejects(qa_result)] == [(4, "control_bytes")]


def test_cp1251_fallback_only_for_plausible_files_and_recorded_in_the_manifest(tmp_path):
    good = write_csv(tmp_path / "cp.csv", RU_HEADER, RU_ROWS, encoding="cp1251")
    result = run_data(settings_for(tmp_path, inputs=[str(good)], columns=COLUMNS, test_per_group=1))
    [entry] = result.manifest["inputs"]
    assert entry["encoding"] == "cp1251" and any("plausible cp1251" in n for n in entry["notes"])
    assert any("cp1251" in w for w in result.manifest["fallbacks"])

    utf16 = tmp_path / "utf16.csv"  # bytes of another encoding: as cp1251 they hold NULs
    utf16.write_bytes("\n".join(";".join(r) for r in [RU_HEADER, *RU_ROWS]).encode("utf-16"))
    with pytest.raises(UsageError, match=r"utf16\.csv:1: undecodable bytes \(not utf-8, and as cp1251 line 1 "
                                         r"has control byte 0x00; set data.encoding\)"):
        ingest.read_source(ingest.SourceFile(utf16, tmp_path), settings_for(tmp_path).data)

    # valid UTF-8 Russian with one stray byte: the whole file as cp1251 is mixed-case letter salad ("Р’ Р±")
    salad = tmp_path / "salad.csv"
    lines = ["Описание;Заключение", *["Печень не увеличена, контуры ровные;Патологии не выявлено"] * 3]
    raw = "\n".join(lines).encode("utf-8").replace("ровные".encode(), b"\xff" + "ровные".encode(), 2)
    raw.decode("cp1251")  # it does decode: the plausibility check is what refuses it
    salad.write_bytes(raw)
    with pytest.raises(UsageError, match=r"salad\.csv:2: undecodable bytes \(not utf-8, and as cp1251 line 1 has "
                                         r"characters that are not Russian text"):
        ingest.read_source(ingest.SourceFile(salad, tmp_path), settings_for(tmp_path).data)


def test_plausible_cp1251_check():
    assert ingest.plausible_cp1251("Описание;Заключение\nКиста печени 12 мм — «норма» №5.\n") is None
    assert ingest.plausible_cp1251("ЭхоКГ: ФВ 60%. ТТГ 2.1, свТ4 14; ЭКГ без динамики.") is None
    assert ingest.plausible_cp1251("ok\nbad\x00line") == (2, "control byte 0x00")
    assert ingest.plausible_cp1251("РџСЂРёРІРµС‚ РјРёСЂ, РєР°Рє РґРµР»Р°? РЎРїР°СЃРёР±Рѕ") is not None
    assert ingest.plausible_cp1251("ПРиВеТ мИр, КаК дЕлА? сПаСиБо")[1].startswith("letters in no word shape")
    assert ingest.plausible_cp1251("ЂЃ‚ѓ„…†‡€‰Љ‹ЊЌЋЏ")[1] == "characters that are not Russian text"


def test_max_chars_rejects_too_long_inputs_and_targets(tmp_path):
    rows = [list(r) for r in RU_ROWS]
    rows[0][3] = "В белом веществе очаги 5 мм. " * 1000  # ~29k characters: a broken export, not a finding
    rows[2][4] = "Эхопризнаков патологии не выявлено. " * 5
    path = write_csv(tmp_path / "r.csv", RU_HEADER, rows)
    result = run_data(settings_for(tmp_path, inputs=[str(path)], columns=COLUMNS, test_per_group=1))
    assert [(r["row"], r["reason"]) for r in _rejects(result)] == [(2, "too_long")]
    assert _rejects(result)[0]["detail"] == "input has 28999 characters (data.max_chars = 20000)"
    assert _rejects(result)[0]["input"] is None  # rejected before anonymization: no text in rejects
    tight = run_data(settings_for(tmp_path, inputs=[str(path)], columns=COLUMNS, test_per_group=1, max_chars=150))
    assert {(r["row"], r["reason"]) for r in _rejects(tight)} == {(2, "too_long"), (4, "too_long")}
    assert "target has 179 characters (data.max_chars = 150)" in [r["detail"] for r in _rejects(tight)]
    unlimited = run_data(settings_for(tmp_path, inputs=[str(path)], columns=COLUMNS, test_per_group=1, max_chars=0))
    assert unlimited.counts["rows_rejected"] == 0


def test_hidden_files_are_counted_and_the_way_to_read_them_is_named(tmp_path):
    folder = tmp_path / "exports"
    write_csv(folder / ".r.csv", RU_HEADER, RU_ROWS)
    write_csv(folder / ".cache" / "old.csv", RU_HEADER, RU_ROWS)
    with pytest.raises(UsageError) as info:
        run_data(settings_for(tmp_path, inputs=[str(folder)], columns=COLUMNS))
    message = str(info.value)
    assert "folder has no data files" in message and "2 hidden files skipped" in message
    assert "data.include_hidden = true" in message and "\n" not in message

    write_csv(folder / "visible.csv", RU_HEADER, RU_ROWS[:3])
    result = run_data(settings_for(tmp_path, inputs=[str(folder)], columns=COLUMNS, test_per_group=1))
    assert result.counts["rows_in"] == 3
    assert any("2 hidden files skipped" in w and "data.include_hidden" in w for w in result.manifest["fallbacks"])
    every = run_data(settings_for(tmp_path, inputs=[str(folder)], columns=COLUMNS, test_per_group=1,
                                  include_hidden=True))
    assert every.counts["rows_in"] == 3 + 2 * len(RU_ROWS)
    assert not any("hidden" in w for w in every.warnings)
    globbed = run_data(settings_for(tmp_path, inputs=[str(folder / "**" / "*.csv")], columns=COLUMNS,
                                    test_per_group=1))
    assert globbed.counts["rows_in"] == 3 and any("2 hidden files skipped" in w for w in globbed.warnings)
    named = run_data(settings_for(tmp_path, inputs=[str(folder / ".r*.csv")], columns=COLUMNS, test_per_group=1))
    assert named.counts["rows_in"] == len(RU_ROWS)  # a pattern that names the dot asks for hidden files
    write_csv(tmp_path / "other" / ".x.csv", RU_HEADER, RU_ROWS)
    with pytest.raises(UsageError, match=r"no data files match this pattern; 1 hidden file skipped"):
        run_data(settings_for(tmp_path, inputs=[str(tmp_path / "other" / "*.csv")], columns=COLUMNS))


def test_notes_about_an_input_folder_named_after_the_patient_are_scrubbed(tmp_path):
    folder = tmp_path / "Ivanov_I_I_2024-03-01"
    write_csv(folder / ".old.csv", RU_HEADER, RU_ROWS)
    write_csv(folder / "reports.csv", RU_HEADER, RU_ROWS[:3])
    result = run_data(settings_for(tmp_path, inputs=[str(folder)], columns=COLUMNS, test_per_group=1))
    [note] = [w for w in result.manifest["fallbacks"] if "hidden" in w]
    assert "[NAME]_[DATE]: 1 hidden file skipped" in note
    assert "Ivanov" not in all_output_text(result.out_dir) and "2024-03-01" not in all_output_text(result.out_dir)


def test_file_paths_named_after_patients_leave_no_phi_in_any_output(tmp_path):
    root = tmp_path / "exports"
    rows = [list(r) for r in RU_ROWS]
    write_csv(root / "Ivanov_I_I_2024-03-01.csv", RU_HEADER, rows[:3])
    write_csv(root / "Петров Сергей Ильич" / "Петров С.И. 02.03.2024.csv", RU_HEADER, rows[3:])
    write_csv(root / "smith_john_mrn123456.csv", RU_HEADER, [rows[0], ["r1x", *rows[0][1:]]])  # duplicate row
    settings = settings_for(tmp_path, inputs=[str(root)], columns={**COLUMNS, "id": "ID"}, test_per_group=1,
                            modality_from_folder=True)
    result = run_data(settings)
    assert result.counts["rows_rejected"] >= 1  # rejects name the (scrubbed) file too
    labels = {r["file"] for r in read_jsonl(result.out_dir / "provenance.jsonl")}
    assert labels == {"[NAME]_[DATE].csv", "[NAME]/[NAME] [DATE].csv"}
    assert {r["file"] for r in _rejects(result)} == {"[NAME]_mrn[ID].csv"}
    assert {i["file"] for i in result.manifest["inputs"]} == labels | {"[NAME]_mrn[ID].csv"}
    text = all_output_text(result.out_dir) + json.dumps(result.warnings, ensure_ascii=False)
    for value in ("Ivanov", "2024-03-01", "Петров", "Сергей", "02.03.2024", "smith", "john", "123456"):
        assert value not in text, value
    assert result.manifest["phi"]["paths"]["changed"] == 4  # 3 file names and the folder named after a patient
