"""OCR for `medscribe index --knowledge`: scanned PDFs and images are OCR'd into chunks, the index manifest
records per document whether OCR ran and its confidence, low-confidence pages stay out of the index, and an
unreadable document is a one-line error naming it (documents.py, index/knowledge.py)."""

from __future__ import annotations

import json

from data_helpers import invoke
from ocr_helpers import join_pdfs, needs_tesseract, render, write_scan, write_text_pdf

GUIDE_EN = "Simple hepatic cysts need no follow-up imaging.\nComplex cysts need contrast MRI."
GUIDE_RU = "Узлы щитовидной железы TI-RADS 3 размером более 25 мм подлежат биопсии."


def _config(tmp_path, minilm, extra: str = "") -> str:
    path = tmp_path / "medscribe.toml"
    path.write_text(
        f'[paths]\ndata = "{tmp_path / "data"}"\nindex = "{tmp_path / "index"}"\n'
        f'[index]\nembedding_model = "{minilm}"\nbatch_size = 16\ndevice = "cpu"\n{extra}',
        encoding="utf-8",
    )
    return str(path)


@needs_tesseract
def test_scanned_knowledge_documents_are_ocrd_and_recorded(tmp_path, minilm):
    from PIL import ImageFilter

    kb = tmp_path / "kb"
    write_scan(kb / "cysts.png", GUIDE_EN)
    write_text_pdf(kb / "digital.pdf", ["Iron deficiency is the most common cause of anemia."])
    # a two-page scan: a clear page and a blurred, faint one (mean confidence ~60, below the 70 threshold)
    write_scan(tmp_path / "p1.pdf", GUIDE_RU)
    faint = render("Findings: small nodule.\nConclusion: benign.", size=16).filter(ImageFilter.GaussianBlur(1.5))
    faint.point(lambda v: 150 + v // 3).save(tmp_path / "p2.pdf", resolution=200.0)
    join_pdfs(kb / "thyroid.pdf", [tmp_path / "p1.pdf", tmp_path / "p2.pdf"])
    config = _config(tmp_path, minilm, extra="[data.ocr]\nmin_confidence = 70\n")
    result = invoke("--config", config, "index", "--knowledge", str(kb))
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "index" / "index_manifest.json").read_text(encoding="utf-8"))
    docs = {d["file"]: d for d in manifest["knowledge"]}
    assert docs["cysts.png"]["ocr"]["ocr_used"] and docs["cysts.png"]["ocr"]["mean_confidence"] > 80
    assert docs["digital.pdf"]["ocr"]["ocr_used"] is False and docs["digital.pdf"]["ocr"]["ocr_pages"] == 0
    thyroid = docs["thyroid.pdf"]["ocr"]
    assert thyroid["ocr_pages"] == 2 and [p["page"] for p in thyroid["rejected_pages"]] == [2]
    assert "< data.ocr.min_confidence 70" in thyroid["rejected_pages"][0]["reason"]

    from medscribe.index import Retriever
    from medscribe.settings import load_settings

    retriever = Retriever.open(load_settings(config))
    hits = retriever.search("do simple hepatic cysts need follow-up imaging", k=1)
    assert hits and hits[0].metadata["source"] == "cysts.png" and "follow-up" in hits[0].text
    every = retriever.search("nodule benign", k=10)
    thyroid_text = " ".join(h.text for h in every if h.metadata["source"] == "thyroid.pdf")
    assert "TI-RADS" in thyroid_text and "nodule" not in thyroid_text  # the rejected page is not indexed


def test_unreadable_knowledge_document_is_a_one_line_error(tmp_path, minilm):
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    result = invoke("--config", _config(tmp_path, minilm), "index", "--knowledge", str(kb))
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "broken.png: cannot read image" in result.output
    write_text_pdf(tmp_path / "src.pdf", ["Iron deficiency is the most common cause of anemia."])
    (kb / "broken.png").unlink()
    join_pdfs(kb / "locked.pdf", [tmp_path / "src.pdf"], password="s3cret")
    result = invoke("--config", _config(tmp_path, minilm), "index", "--knowledge", str(kb))
    assert result.exit_code == 2 and "locked.pdf: password-protected PDF" in result.output
