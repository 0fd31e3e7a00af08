"""The one prompt builder: where each kind of hit goes, which context a QA target cites, cot targets."""

from __future__ import annotations

import json

import pytest

from medscribe.prompts import JSON_INSTRUCTIONS, build_messages, render_target, supporting_ids
from medscribe.schemas import Hit
from medscribe.settings import PromptSection

CASE = Hit(id="c1", text="Which vitamin is low in pernicious anemia?", answer="Vitamin B12.", score=0.9,
           metadata={"specialty": "hematology"})
DOC = Hit(id="kb-7", text="Пернициозная анемия: дефицит витамина B12 из-за аутоиммунного гастрита.", answer=None,
          score=0.8, metadata={"kind": "knowledge", "source": "anemia.pdf"})
QUESTION = {"input": "Что вызывает пернициозную анемию?", "target": "Дефицит витамина B12", "specialty": None}


@pytest.mark.parametrize("context", ["few_shot", "system"])
def test_knowledge_chunks_reach_the_prompt_in_both_context_modes(context):
    messages = build_messages(QUESTION, "qa", PromptSection(context=context), context=[CASE, DOC])
    system = messages[0]["content"]
    assert f"Reference documents:\n[kb-7] {DOC.text}" in system
    assert all(DOC.text not in m["content"] for m in messages[1:])  # listed once, never as a few-shot turn
    if context == "few_shot":
        assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
        assert messages[1]["content"].endswith(CASE.text) and "Similar cases" not in system
    else:
        assert [m["role"] for m in messages] == ["system", "user"]
        assert f"Similar cases:\n[c1] {CASE.text} -> Vitamin B12." in system


def test_qa_citations_name_what_the_prompt_shows_holding_the_answer():
    few_shot, system = PromptSection(context="few_shot"), PromptSection(context="system")
    # A document containing the whole normalized answer (case, punctuation, Cyrillic) is cited in both modes.
    assert supporting_ids("дефицит витамина B12!", [CASE, DOC], few_shot) == ["kb-7"]
    # A case with the same answer after normalization: cited where its id is shown (system), not as a few-shot turn.
    assert supporting_ids("vitamin b12", [CASE, DOC], system) == ["c1"]
    assert supporting_ids("vitamin b12", [CASE, DOC], few_shot) == []
    # Fewer than MIN_QUOTE_WORDS words inside a document is no evidence; a part of a word is no match.
    assert supporting_ids("B12", [DOC], few_shot) == []
    assert supporting_ids("дефицит витамина B1", [DOC], few_shot) == []
    assert supporting_ids("дефицит витамина B12", [DOC, DOC], few_shot) == ["kb-7"]
    target = json.loads(render_target(QUESTION, "qa", few_shot, [CASE, DOC]))
    assert target == {"answer": "Дефицит витамина B12", "citations": ["kb-7"]}
    # Training and the instruction agree: both QA instructions ask for ids, neither for an empty list.
    assert all("citations\": [\"<id" in JSON_INSTRUCTIONS[key] for key in ("qa", "qa_cot"))


def test_cot_targets_put_the_reasoning_first():
    cot = PromptSection(variant="cot")
    record = {**QUESTION, "reasoning": "Аутоиммунный гастрит нарушает всасывание B12."}
    assert list(json.loads(render_target(record, "qa", cot))) == ["reasoning", "answer", "citations"]
    report = {"input": "Киста 12 мм", "target": "Киста печени", "reasoning": "Четкие контуры."}
    assert list(json.loads(render_target(report, "report", cot))) == ["reasoning", "result"]
    assert render_target(report, "report", PromptSection(variant="cot", json_answer=False)) == (
        "Четкие контуры.\n\nКиста печени")
    # Other variants do not ask for reasoning, so it is not trained even when the row has it.
    assert list(json.loads(render_target(report, "report", PromptSection()))) == ["result"]
