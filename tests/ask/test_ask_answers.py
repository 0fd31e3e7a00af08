"""JSON parsing/repair of model answers, and the schema sent to servers."""

from __future__ import annotations

import json

from medscribe.ask.answers import answer_json_schema, parse_answer, response_format


def test_strict_json_is_not_marked_repaired():
    out = parse_answer('{"result": "Киста печени", "has_finding": true}', "report")
    assert out.ok and not out.repaired
    assert out.prediction == "Киста печени"
    assert out.parsed["has_finding"] is True


def test_code_fence_and_chatter_are_stripped():
    raw = 'Sure:\n```json\n{"answer": "Iron deficiency {often}", "citations": ["case-1"]}\n```\nBye'
    out = parse_answer(raw, "qa")
    assert out.ok and out.repaired
    assert out.prediction == "Iron deficiency {often}"
    assert out.parsed["citations"] == ["case-1"]


def test_single_quotes_are_repaired():
    out = parse_answer("{'answer': 'rest and fluids', 'citations': []}", "qa")
    assert out.ok and out.repaired and out.prediction == "rest and fluids"


def test_unterminated_string_and_brace_are_repaired():
    out = parse_answer('{"result": "Очаговые изменения', "report")
    assert out.ok and out.repaired and out.prediction == "Очаговые изменения"


def test_plain_text_is_kept_with_parse_failure():
    raw = "Probably a benign cyst."
    out = parse_answer(raw, "report")
    assert not out.ok and out.parsed is None
    assert out.prediction == raw
    assert out.reason


def test_valid_json_with_wrong_schema_is_a_failure_not_a_guess():
    out = parse_answer('{"conclusion": "cyst"}', "report")
    assert not out.ok
    assert "result" in out.reason
    out = parse_answer('["a", "b"]', "qa")
    assert not out.ok


def test_first_valid_object_wins_when_several():
    out = parse_answer('{"foo": 1} then {"answer": "yes", "citations": []}', "qa")
    assert out.ok and out.prediction == "yes"


def test_none_and_empty_output():
    assert not parse_answer(None, "qa").ok
    assert not parse_answer("", "qa").ok


def test_response_format_carries_the_pydantic_schema():
    fmt = response_format("report")
    assert fmt["type"] == "json_schema"
    schema = fmt["json_schema"]["schema"]
    assert "result" in schema["required"] and schema["additionalProperties"] is False
    assert "answer" in answer_json_schema("qa")["properties"]
    json.dumps(fmt)  # serialisable as a request body


def test_chain_of_thought_schema_asks_for_reasoning_first():
    for task, text_field in (("report", "result"), ("qa", "answer")):
        cot = answer_json_schema(task, reasoning=True)
        assert list(cot["properties"])[0] == "reasoning"
        assert cot["required"][:2] == ["reasoning", text_field]
        plain = answer_json_schema(task)
        assert "reasoning" not in plain["properties"] and "reasoning" not in plain["required"]
    assert response_format("qa", reasoning=True)["json_schema"]["schema"]["required"][0] == "reasoning"


def test_reasoning_is_kept_in_the_parsed_answer_for_both_tasks():
    qa = parse_answer('{"reasoning": "iron is low", "answer": "Iron-deficiency anemia", "citations": ["c1"]}', "qa")
    assert qa.ok and qa.prediction == "Iron-deficiency anemia" and qa.parsed["reasoning"] == "iron is low"
    report = parse_answer('{"reasoning": "очаг 5 мм", "result": "Киста печени"}', "report")
    assert report.ok and report.prediction == "Киста печени" and report.parsed["reasoning"] == "очаг 5 мм"
