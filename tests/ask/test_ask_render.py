"""The answer panel checks the model's citations against the retrieved ids."""

from __future__ import annotations

from rich.console import Console

from medscribe.ask.render import answer_panel


def test_a_citation_that_was_not_retrieved_is_flagged():
    row = {
        "task": "qa", "prediction": "Дефицит B12", "parse_ok": True, "latency_s": 0.1, "prompt_tokens": 10,
        "completion_tokens": 5, "retrieved_ids": ["kb-7"],
        "parsed": {"answer": "Дефицит B12", "citations": ["kb-7", "case-99"]},
        "hits": [{"id": "kb-7", "score": 0.81, "text": "Пернициозная анемия: дефицит витамина B12."}],
    }
    console = Console(width=120, record=True)
    console.print(answer_panel(row))
    text = console.export_text()
    assert "model cites: kb-7, case-99 (not retrieved)" in text
