"""OCR and PDF inputs of `medscribe data`: scanned reports (PNG/TIFF, image-only PDF) become rows, PDFs with a
text layer are read as text, bad documents are rejects or one-line errors (medscribe/documents.py, data/scans.py).

Tests that run Tesseract are skipped where it is not installed; `.ci/run` installs it, so CI runs them."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from data_helpers import all_output_text, invoke, read_jsonl, settings_for, write_csv
from ocr_helpers import join_pdfs, needs_tesseract, write_scan, write_text_pdf
from rapidfuzz.fuzz import ratio

from medscribe.data import run_data
from medscribe.data.scans import split_sections
from medscribe.errors import UsageError

EN = ("City Hospital, Radiology Department\n"
      "Findings: A hypodense lesion 12 mm in liver segment 7.\n"
      "Conclusion: Simple hepatic cyst.")
RU = ("Описание: В верхней доле правого легкого солидный очаг 8 мм.\n"
      "Заключение: Солидный очаг верхней доли правого легкого.")
NO_SPLIT = {"test_per_group": 0, "eval_fraction": 0.0}


def _rows(out) -> dict[str, dict]:
    return {r["source"]: r for r in read_jsonl(out / "train.jsonl")}


def _manifest(out) -> dict[str, dict]:
    return {i["file"]: i for i in json.loads((out / "manifest.json").read_text(encoding="utf-8"))["inputs"]}


def test_sections_headings_pattern_and_whole_text():
    docs = SimpleNamespace(sections={}, pattern=None)
    text = "Клиника №1\nОписание: очаг 8 мм\nв правом легком.\nЗаключение - Очаг легкого."
    assert split_sections(text, "report", docs) == {"finding": "очаг 8 мм\nв правом легком.",
                                                    "conclusion": "Очаг легкого."}
    assert split_sections("Findings:\nlesion\nIMPRESSION: cyst", "report", docs) == {
        "finding": "lesion", "conclusion": "cyst"}
    own = SimpleNamespace(sections={"finding": ["Результат"], "organ": ["Орган"]}, pattern=None)
    assert split_sections("Орган: печень\nРезультат: киста", "report", own) == {"organ": "печень", "finding": "киста"}
    pattern = SimpleNamespace(sections={}, pattern=r"(?s)^(?P<finding>.*?)\s*=>\s*(?P<conclusion>.*)$")
    assert split_sections("очаг 5 мм => киста", "report", pattern) == {"finding": "очаг 5 мм", "conclusion": "киста"}
    assert split_sections("no headings here", "report", docs) == {}
    # a protocol without its own heading, then the conclusion: the text before is the finding
    protocol = "Печень не увеличена, в VII сегменте киста 12 мм.\nЗаключение: Киста печени."
    assert split_sections(protocol, "report", docs, "finding") == {
        "conclusion": "Киста печени.", "finding": "Печень не увеличена, в VII сегменте киста 12 мм."}
    assert split_sections(text, "report", docs, "finding")["finding"] == "очаг 8 мм\nв правом легком."
    assert split_sections(protocol, "report", docs) == {"conclusion": "Киста печени."}


def test_bad_document_settings_are_usage_errors(tmp_path):
    write_csv(tmp_path / "in" / "a.csv", ["finding", "conclusion"], [["очаг 5 мм в печени", "киста печени"]])
    for documents, message in (({"pattern": "(?P<finding>"}, "not a valid regular expression"),
                               ({"pattern": "Findings: (.*)"}, "no named group"),
                               ({"sections": {"diagnosis": ["Диагноз"]}}, "unknown field(s) diagnosis")):
        settings = settings_for(tmp_path, inputs=[str(tmp_path / "in")], documents=documents)
        try:
            run_data(settings)
        except UsageError as exc:
            assert message in str(exc)
        else:
            raise AssertionError(f"{documents} accepted")


@needs_tesseract
def test_scanned_reports_become_rows_through_the_cli(tmp_path):
    """PNG (English), image-only PDF (Russian), a text-layer PDF and a PDF with a text page + a scanned page,
    next to a CSV in the same run; the manifest says per file whether OCR ran and how confident it was."""
    scans = tmp_path / "scans"
    write_scan(scans / "en.png", EN)
    write_scan(scans / "ru.pdf", RU)
    write_text_pdf(scans / "digital.pdf", ["Findings: Normal heart size, clear lungs.", "Conclusion: Normal chest."])
    write_text_pdf(tmp_path / "page1.pdf", ["Findings: Diffuse thickening of the gallbladder wall 5 mm."])
    write_scan(tmp_path / "page2.pdf", "Conclusion: Chronic cholecystitis.")
    join_pdfs(scans / "mixed.pdf", [tmp_path / "page1.pdf", tmp_path / "page2.pdf"])
    write_csv(scans / "table.csv", ["finding", "conclusion"], [["Очаг 5 мм в белом веществе.", "Очаговые изменения."]])
    write_scan(scans / "phi.png", "Описание: Пациент Иванов Иван Петрович, тел. +7 (912) 345-67-89.\n"
                                  "Почки обычно расположены.\nЗаключение: Эхопризнаков патологии почек не выявлено.")
    config = tmp_path / "medscribe.toml"
    config.write_text(f'[paths]\ndata = "{tmp_path / "out"}"\n[data]\ninputs = ["{scans}"]\ntest_per_group = 0\n'
                      'eval_fraction = 0.0\n', encoding="utf-8")
    result = invoke("--config", str(config), "data")
    assert result.exit_code == 0, result.output
    rows, inputs = _rows(tmp_path / "out"), _manifest(tmp_path / "out")
    assert set(rows) == {"en.png", "ru.pdf", "digital.pdf", "mixed.pdf", "table.csv", "phi.png"}
    written = all_output_text(tmp_path / "out")  # OCR text is scrubbed like any other row
    assert "Иванов" not in written and "345-67" not in written and "[NAME]" in rows["phi.png"]["input"]
    assert ratio(rows["en.png"]["input"], "A hypodense lesion 12 mm in liver segment 7.") >= 95
    assert ratio(rows["en.png"]["target"], "Simple hepatic cyst.") >= 95
    assert ratio(rows["ru.pdf"]["input"], "В верхней доле правого легкого солидный очаг 8 мм.") >= 95
    assert ratio(rows["ru.pdf"]["target"], "Солидный очаг верхней доли правого легкого.") >= 95
    assert "City Hospital" not in json.dumps(rows, ensure_ascii=False)  # letterhead before the first heading
    assert rows["digital.pdf"]["input"] == "Normal heart size, clear lungs."  # the text layer, exactly
    assert rows["mixed.pdf"]["input"] == "Diffuse thickening of the gallbladder wall 5 mm."
    assert ratio(rows["mixed.pdf"]["target"], "Chronic cholecystitis.") >= 95
    for name in ("en.png", "ru.pdf"):
        ocr = inputs[name]["ocr"]
        assert ocr["ocr_used"] and ocr["ocr_pages"] == 1 and ocr["mean_confidence"] > 80 and ocr["fields"] == "sections"
    assert inputs["digital.pdf"]["ocr"] == {"ocr_used": False, "mean_confidence": None, "pages": 1, "ocr_pages": 0,
                                            "rejected_pages": [], "rotated_pages": [], "fields": "sections"}
    assert inputs["mixed.pdf"]["ocr"]["pages"] == 2 and inputs["mixed.pdf"]["ocr"]["ocr_pages"] == 1
    assert "ocr" not in inputs["table.csv"]
    provenance = {r["file"]: r["row"] for r in read_jsonl(tmp_path / "out" / "provenance.jsonl")}
    assert provenance["en.png"] == 1


def test_text_layer_pdf_needs_no_tesseract(tmp_path):
    """Text first: a born-digital PDF is read without OCR, so a missing Tesseract does not matter for it."""
    write_text_pdf(tmp_path / "in" / "d.pdf", ["Findings: Normal heart size, clear lungs.", "Conclusion: Normal."])
    write_text_pdf(tmp_path / "in" / "e.pdf", ["The liver is not enlarged, a cyst of 12 mm in segment 7.",
                                               "Conclusion: Hepatic cyst."])  # no heading for the finding
    settings = settings_for(tmp_path, inputs=[str(tmp_path / "in")], ocr={"tesseract_cmd": "/nonexistent/tesseract"},
                            **NO_SPLIT)
    result = run_data(settings)
    assert result.counts["rows_kept"] == 2
    assert [i["ocr"]["ocr_used"] for i in result.manifest["inputs"]] == [False, False]
    assert _rows(tmp_path / "out")["e.pdf"]["input"] == "The liver is not enlarged, a cyst of 12 mm in segment 7."


def test_missing_tesseract_is_one_line_saying_how_to_install(tmp_path):
    from PIL import Image  # any image needs OCR: no font or Tesseract needed to build this one

    (tmp_path / "in").mkdir(parents=True, exist_ok=True)
    Image.new("L", (200, 100), 255).save(tmp_path / "in" / "scan.png")
    config = tmp_path / "medscribe.toml"
    config.write_text(f'[paths]\ndata = "{tmp_path / "out"}"\n[data]\ninputs = ["{tmp_path / "in"}"]\n'
                      '[data.ocr]\ntesseract_cmd = "/nonexistent/tesseract"\n', encoding="utf-8")
    result = invoke("--config", str(config), "data")
    assert result.exit_code == 2
    assert "apt-get install tesseract-ocr tesseract-ocr-rus" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


@needs_tesseract
def test_missing_language_pack_is_a_usage_error(tmp_path):
    write_scan(tmp_path / "in" / "scan.png", EN)
    settings = settings_for(tmp_path, inputs=[str(tmp_path / "in")], ocr={"languages": "eng+zzz"})
    try:
        run_data(settings)
    except UsageError as exc:
        assert "no language data for zzz" in str(exc) and "tesseract-ocr-zzz" in str(exc)
    else:
        raise AssertionError("a missing language pack was accepted")


@needs_tesseract
def test_bad_documents_are_rejects_naming_the_file(tmp_path):
    """Corrupt image, password-protected PDF, broken PDF and a low-confidence scan: rejects with a reason and no
    text; the good scan is kept; a path that does not exist is a one-line error."""
    scans = tmp_path / "scans"
    write_scan(scans / "good.png", RU)
    (scans / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    (scans / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is no pdf")
    write_scan(tmp_path / "secret_src.pdf", EN)
    join_pdfs(scans / "secret.pdf", [tmp_path / "secret_src.pdf"], password="s3cret")
    # Blurred, low-contrast text: Tesseract reads words but is unsure of them (mean confidence ~60 here)
    from ocr_helpers import render
    from PIL import Image, ImageFilter

    faint = render("Findings: small nodule.\nConclusion: benign.", size=16).filter(ImageFilter.GaussianBlur(1.5))
    faint.point(lambda v: 150 + v // 3).save(scans / "faint.png")
    Image.new("L", (800, 300), 255).save(scans / "blank.tiff")  # a scanned empty page: nothing to recognise
    settings = settings_for(tmp_path, inputs=[str(scans)], ocr={"min_confidence": 70}, **NO_SPLIT)
    result = run_data(settings)
    rejects = {r["file"]: r for r in read_jsonl(tmp_path / "out" / "rejects.jsonl")}
    for name, says in (("corrupt.png", "cannot read image"), ("broken.pdf", "cannot read PDF"),
                       ("secret.pdf", "password-protected PDF")):
        assert rejects[name]["reason"] == "unreadable_file" and says in rejects[name]["detail"]
    assert rejects["faint.png"]["reason"] == "low_ocr_confidence"
    assert "OCR mean confidence" in rejects["faint.png"]["detail"]
    assert "< data.ocr.min_confidence 70" in rejects["faint.png"]["detail"]
    assert rejects["blank.tiff"] == {**rejects["blank.tiff"], "reason": "ocr_failed",
                                     "detail": "page 1: no text recognised"}
    assert all(r["input"] is None and r["target"] is None for r in rejects.values())
    assert set(_rows(tmp_path / "out")) == {"good.png"}
    assert result.counts == {"rows_in": 6, "rows_kept": 1, "rows_rejected": 5}
    faint_info = _manifest(tmp_path / "out")["faint.png"]["ocr"]
    assert faint_info["ocr_used"] and faint_info["mean_confidence"] < 70
    assert faint_info["rejected_pages"][0]["page"] == 1 and "confidence" in faint_info["rejected_pages"][0]["reason"]

    result = invoke("data", "--input", str(scans / "missing.png"), "--out", str(tmp_path / "o2"))
    assert result.exit_code == 2 and "missing.png: file not found" in result.output


@needs_tesseract
def test_threshold_rejects_a_page_and_a_report_without_conclusion_is_empty_target(tmp_path):
    scans = tmp_path / "scans"
    write_scan(scans / "ru.png", RU)
    write_scan(scans / "finding_only.png", "Описание: Печень не увеличена, контуры ровные.")
    settings = settings_for(tmp_path, inputs=[str(scans)], ocr={"min_confidence": 99.9}, **NO_SPLIT)
    try:
        run_data(settings)
    except UsageError as exc:  # every file rejected: one line naming the first and counting the reasons
        assert "every input file was rejected" in str(exc) and "low_ocr_confidence" in str(exc)
    else:
        raise AssertionError("a 99.9 threshold kept a page")
    result = run_data(settings_for(tmp_path, inputs=[str(scans)], **NO_SPLIT))
    rejects = {r["file"]: r["reason"] for r in read_jsonl(tmp_path / "out" / "rejects.jsonl")}
    assert rejects == {"finding_only.png": "empty_target"} and result.counts["rows_kept"] == 1



@needs_tesseract
def test_documents_are_ocrd_once_in_parallel_workers(tmp_path, monkeypatch):
    """The pipeline reads all PDFs/scans ahead in `data.workers` threads (one Tesseract each) and the readers
    take those results: every file is recognised exactly once, whatever the worker count."""
    from medscribe.data import scans

    calls = []
    real = scans.read_document
    monkeypatch.setattr(scans, "read_document", lambda *a, **k: calls.append(a[0].name) or real(*a, **k))
    for i in range(3):
        write_scan(tmp_path / "in" / f"r{i}.png", f"Findings: A cyst {i + 3} mm in the liver.\nConclusion: Cyst {i}.")
    for workers in (1, 3):
        calls.clear()
        result = run_data(settings_for(tmp_path, inputs=[str(tmp_path / "in")], workers=workers, **NO_SPLIT))
        assert sorted(calls) == ["r0.png", "r1.png", "r2.png"] and result.counts["rows_kept"] == 3
        assert result.manifest["timings"]["ocr_workers"] == workers
    assert {r["target"] for r in read_jsonl(tmp_path / "out" / "train.jsonl")} == {"Cyst 0.", "Cyst 1.", "Cyst 2."}


@needs_tesseract
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_multipage_tiff_and_oversized_image(tmp_path, monkeypatch):
    """Every frame of a TIFF is a page of one report; an image over Pillow's decompression-bomb limit is a
    reject, not a crash."""
    from ocr_helpers import render
    from PIL import Image

    first, second = render("Findings: A cyst 12 mm in the liver."), render("Conclusion: Simple hepatic cyst.")
    (tmp_path / "in").mkdir()
    first.save(tmp_path / "in" / "two.tiff", save_all=True, append_images=[second])
    write_scan(tmp_path / "in" / "big.png", EN)
    # Pillow refuses images over twice the limit: big.png is 1700 x 251 px, the TIFF frames 1700 x 137
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200_000)
    run_data(settings_for(tmp_path, inputs=[str(tmp_path / "in")], **NO_SPLIT))
    [row] = read_jsonl(tmp_path / "out" / "train.jsonl")
    assert (row["input"], row["target"]) == ("A cyst 12 mm in the liver.", "Simple hepatic cyst.")
    assert _manifest(tmp_path / "out")["two.tiff"]["ocr"]["pages"] == 2
    [reject] = read_jsonl(tmp_path / "out" / "rejects.jsonl")
    assert reject["file"] == "big.png" and reject["reason"] == "unreadable_file"
    assert "decompression-bomb" in reject["detail"]


@needs_tesseract
def test_transparent_png_is_read_on_white_paper(tmp_path):
    """A screenshot-like PNG: black text on transparent pixels that are black underneath. Converted to grey as
    is, the page is all black and nothing is recognised."""
    from ocr_helpers import font_path
    from PIL import Image, ImageDraw, ImageFont

    from medscribe.documents import read_document
    from medscribe.settings import OcrSection

    image = Image.new("RGBA", (1200, 200), (0, 0, 0, 0))
    ImageDraw.Draw(image).text((40, 60), "Findings: A cyst 12 mm in the liver.",
                               font=ImageFont.truetype(font_path(), 40), fill=(0, 0, 0, 255))
    image.save(tmp_path / "shot.png")
    doc = read_document(tmp_path / "shot.png", OcrSection())
    assert doc.text == "Findings: A cyst 12 mm in the liver." and not doc.rejected_pages


@needs_tesseract
def test_sideways_and_upside_down_scans_are_turned(tmp_path):
    """A page fed sideways or upside down reads as garbage (confidence ~45 here); Tesseract's orientation
    detection turns it, the turned page is kept when it reads better, and the manifest says so."""
    from ocr_helpers import render

    (tmp_path / "in").mkdir()
    for angle in (90, 180):
        render(f"Описание: В верхней доле правого легкого солидный очаг {angle // 10} мм.\n"
               "Заключение: Солидный очаг верхней доли правого легкого.").rotate(angle, expand=True).save(
            tmp_path / "in" / f"rot{angle}.png")
    run_data(settings_for(tmp_path, inputs=[str(tmp_path / "in")], **NO_SPLIT))
    rows, inputs = _rows(tmp_path / "out"), _manifest(tmp_path / "out")
    for angle in (90, 180):
        assert ratio(rows[f"rot{angle}.png"]["input"],
                     f"В верхней доле правого легкого солидный очаг {angle // 10} мм.") >= 95
        assert inputs[f"rot{angle}.png"]["ocr"]["rotated_pages"] == [{"page": 1, "degrees": angle}]
