"""The fast chat-field rendering must equal the shared prompt builder row by row, in every format."""

from __future__ import annotations

import polars as pl
import pytest

from medscribe.data import chat
from medscribe.settings import PromptSection

ROWS = [
    {"input": 'Очаг 5 мм, "киста"?', "target": 'Киста \\ печени "S7".', "organ": "печень", "modality": "УЗИ",
     "specialty": None},
    {"input": "Findings line one\nConclusion so far:", "target": "Multi\nline", "organ": None, "modality": "CT",
     "specialty": "radiology"},
    {"input": "What is {input}?", "target": "A placeholder-looking answer {organ}.", "organ": None, "modality": None,
     "specialty": None},
    {"input": "Узел щитовидной железы", "target": "TI-RADS 3", "organ": "щж:", "modality": None, "specialty": None},
]


@pytest.mark.parametrize("chat_format", ["messages", "sharegpt", "alpaca"])
@pytest.mark.parametrize(
    "prompt",
    [PromptSection(), PromptSection(variant="cot"), PromptSection(json_answer=False, variant="simple"),
     PromptSection(user_template="[{organ}|{modality}]\n{input}\nSpecialty: {specialty}")],
    ids=["detailed", "cot", "plain", "custom"],
)
@pytest.mark.parametrize("task", ["report", "qa"])
def test_chat_column_equals_the_builder(task, prompt, chat_format):
    frame = pl.DataFrame(ROWS * 3, schema={k: pl.String for k in ROWS[0]})
    out, note = chat.chat_column(frame, task, prompt, chat_format)
    assert note is None
    name = chat.CHAT_FIELD[chat_format]
    assert out.select(list(ROWS[0])).to_dicts() == ROWS * 3  # row order kept
    for row, value in zip(ROWS * 3, out.get_column(name).to_list(), strict=True):
        assert value == chat.render_row(row, task, prompt, chat_format)
