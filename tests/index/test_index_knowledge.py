"""Knowledge documents: every file type -> chunks, chunking with overlap, sibling expansion at query time."""

from __future__ import annotations

import json

import pytest
from index_helpers import write_docx, write_minimal_pdf

from medscribe.errors import UsageError
from medscribe.index import Retriever, build_index
from medscribe.index.knowledge import expand_sources, extract_text, join_spans, load_chunks, split_spans

LONG = " ".join(f"Sentence number {i} about hepatic cysts and their follow up imaging." for i in range(40))


def test_split_spans_respects_size_and_overlap_and_join_restores_text():
    spans = split_spans(LONG, chunk_size=200, chunk_overlap=50)
    assert len(spans) > 5
    assert all(e - s <= 200 for s, e in spans)
    assert all(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))  # consecutive chunks overlap
    assert spans[0][0] == 0 and spans[-1][1] == len(LONG)
    assert join_spans([(s, e, LONG[s:e]) for s, e in spans]) == LONG
    assert join_spans([(s, e, LONG[s:e]) for s, e in spans[2:5]]) == LONG[spans[2][0] : spans[4][1]].strip()


def test_overlap_must_be_smaller_than_size():
    with pytest.raises(UsageError, match="chunk_overlap"):
        split_spans(LONG, chunk_size=100, chunk_overlap=100)


def test_every_file_type_is_read(tmp_path):
    (tmp_path / "a.txt").write_bytes("Киста печени: контроль через 6 месяцев.".encode("cp1251"))
    (tmp_path / "b.md").write_text("# Anemia\n\nIron deficiency is the most common cause.", encoding="utf-8")
    (tmp_path / "c.html").write_text(
        "<html><head><style>p{}</style><script>var x=1;</script></head><body><h1>Asthma</h1>"
        "<p>Inhaled steroids &amp; bronchodilators.</p></body></html>",
        encoding="utf-8",
    )
    write_minimal_pdf(tmp_path / "d.pdf", ["Migraine prevention guideline.", "Beta blockers are first line."])
    write_docx(tmp_path / "e.docx", ["Пневмония: антибиотики.", "Second paragraph."], table=[["Drug", "Dose"]])
    texts = {p.name: extract_text(p) for p in expand_sources([str(tmp_path)])}
    assert "Киста печени" in texts["a.txt"]
    assert "Iron deficiency" in texts["b.md"]
    assert "Inhaled steroids & bronchodilators." in texts["c.html"] and "var x" not in texts["c.html"]
    assert "Beta blockers are first line." in texts["d.pdf"]
    assert "Пневмония: антибиотики." in texts["e.docx"] and "Drug | Dose" in texts["e.docx"]


def test_sources_that_match_nothing_or_wrong_type_are_errors(tmp_path):
    with pytest.raises(UsageError, match="matches no"):
        expand_sources([str(tmp_path / "nothing-*.pdf")])
    (tmp_path / "x.csv").write_text("a,b", encoding="utf-8")
    with pytest.raises(UsageError, match="unsupported knowledge file type"):
        expand_sources([str(tmp_path / "x.csv")])
    (tmp_path / "bad.pdf").write_bytes(b"not a pdf")
    with pytest.raises(UsageError, match="bad.pdf: cannot read PDF"):
        extract_text(tmp_path / "bad.pdf")


def test_chunks_carry_document_id_number_and_span(tmp_path):
    path = tmp_path / "guide.txt"
    path.write_text(LONG, encoding="utf-8")
    chunks, digest = load_chunks(path, chunk_size=200, chunk_overlap=40)
    assert [c.number for c in chunks] == list(range(len(chunks)))
    assert {c.doc_id for c in chunks} == {chunks[0].doc_id} and chunks[0].doc_id.startswith("guide-")
    assert all(LONG[c.start : c.end] == c.text for c in chunks)
    assert len(digest) == 64


def test_knowledge_index_siblings_and_document_update(make_settings, tmp_path):
    guide = tmp_path / "kb" / "guide.md"
    guide.parent.mkdir()
    parts = [
        "Anemia is a low red cell count.",
        "Asthma attacks follow allergen exposure.",
        "Migraine prevention uses beta blockers.",
        "Diabetes is treated with metformin.",
        "Liver cysts need no treatment.",
    ]
    guide.write_text("\n\n".join(p * 3 for p in parts), encoding="utf-8")
    write_docx(tmp_path / "kb" / "extra.docx", ["Pneumonia is treated with antibiotics."])
    settings = make_settings(knowledge=[str(tmp_path / "kb")], chunk_size=100, chunk_overlap=20)
    report = build_index(settings, show_progress=False)
    assert report.entries >= 6 and report.manifest["corpus"] is None and len(report.manifest["knowledge"]) == 2

    hit = Retriever.open(settings).search("beta blockers for migraine prevention", k=1)[0]
    assert hit.metadata["kind"] == "knowledge" and "Migraine" in hit.text and hit.answer is None
    assert hit.id == f"{hit.metadata['doc_id']}#{hit.metadata['chunk']}"
    n = hit.metadata["chunk"]

    with_siblings = Retriever.open(
        make_settings(knowledge=[str(tmp_path / "kb")], chunk_size=100, chunk_overlap=20, siblings=1)
    )
    expanded = with_siblings.search("beta blockers for migraine prevention", k=1)[0]
    assert expanded.id == hit.id
    assert expanded.metadata["siblings"] == [i for i in (n - 1, n, n + 1) if 0 <= i < hit.metadata["n_chunks"]]
    assert hit.text in expanded.text and len(expanded.text) > len(hit.text)

    guide.write_text("Anemia is a low red cell count.", encoding="utf-8")  # the document shrank to one chunk
    report = build_index(settings, show_progress=False)
    assert report.deleted >= 1 and report.embedded == 1
    docs = Retriever.open(settings).search("migraine", k=20)
    assert not any("Migraine" in h.text for h in docs)


def test_e5_model_gets_query_prefix_for_cases_and_passage_prefix_for_chunks(minilm, make_settings, corpus,
                                                                             tmp_path, monkeypatch):
    """A model whose name says e5 gets `query: ` on cases and queries, `passage: ` on knowledge chunks (the
    MiniLM weights under an e5-style folder name: the prefix choice goes by the model's name)."""
    from medscribe.index.embed import Embedder

    e5 = tmp_path / "models" / "multilingual-e5-small"
    e5.parent.mkdir()
    e5.symlink_to(minilm, target_is_directory=True)
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "note.txt").write_text("Liver cysts need no treatment.", encoding="utf-8")
    seen: list[str] = []
    original = Embedder.encode

    def recording(self, texts, *args, **kwargs):
        seen.extend(texts)
        return original(self, texts, *args, **kwargs)

    monkeypatch.setattr(Embedder, "encode", recording)
    settings = make_settings(embedding_model=str(e5), knowledge=[str(kb)])
    report = build_index(settings, show_progress=False)
    assert report.manifest["query_prefix"] == "query: " and report.manifest["passage_prefix"] == "passage: "
    assert "passage: Liver cysts need no treatment." in seen
    cases = [t for t in seen if not t.startswith("passage: ")]
    assert cases and all(t.startswith("query: ") for t in cases)
    seen.clear()
    Retriever.open(settings).search("symptoms of anemia", k=1)
    assert seen == ["query: symptoms of anemia"]


def test_knowledge_of_every_type_is_indexed_and_retrieved(make_settings, tmp_path):
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "a.txt").write_bytes("Киста печени: контроль через шесть месяцев.".encode("cp1251"))
    (kb / "b.md").write_text("# Anemia\n\nIron deficiency is the most common cause of anemia.", encoding="utf-8")
    (kb / "c.html").write_text("<html><body><p>Asthma is treated with inhaled steroids.</p></body></html>",
                               encoding="utf-8")
    write_minimal_pdf(kb / "d.pdf", ["Migraine prevention uses beta blockers."])
    write_docx(kb / "e.docx", ["Pneumonia is treated with antibiotics."])
    settings = make_settings(knowledge=[str(kb)], chunk_size=200, chunk_overlap=20, hybrid=True)
    report = build_index(settings, show_progress=False)
    assert len(report.manifest["knowledge"]) == 5
    retriever = Retriever.open(settings)
    for query, name in [("контроль кисты печени", "a.txt"), ("iron deficiency anemia", "b.md"),
                        ("inhaled steroids for asthma", "c.html"), ("beta blockers migraine", "d.pdf"),
                        ("antibiotics for pneumonia", "e.docx")]:
        hit = retriever.search(query, k=1)[0]
        assert hit.metadata["kind"] == "knowledge" and name in json.dumps(hit.metadata, ensure_ascii=False), (
            query, hit.metadata)
