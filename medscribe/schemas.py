"""Shared record contracts: what `data` writes, what `index` stores, what `ask` answers, what `eval` reads.

One place for each shape, so the stages can never disagree on a field name.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Task = Literal["report", "qa"]
SPLITS = ("train", "eval", "test", "pool")


class Record(BaseModel):
    """One cleaned, anonymized example. `input` is the finding (report) or the question (qa);
    `target` is the conclusion (report) or the answer (qa)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    task: Task
    input: str
    target: str
    specialty: str | None = None
    organ: str | None = None
    modality: str | None = None
    has_finding: bool | None = None
    source: str | None = None
    split: str | None = None
    # The reasoning behind the target, when the export has it (data.columns.reasoning): what a chain-of-thought
    # prompt (prompt.variant = "cot") trains on before the answer.
    reasoning: str | None = None
    # The example's image (data.columns.image): `images/<pixel sha256>.png`, relative to the data folder
    # (data/images.py); vision-language sft and ask send it with the text.
    image: str | None = None


class ReportAnswer(BaseModel):
    """The strict JSON answer for the report task. `reasoning` comes first: with chain of thought on, a
    server that decodes by the schema writes the reasoning before the conclusion, not after it."""

    reasoning: str | None = None
    result: str
    has_finding: bool | None = None
    organ: str | None = None
    modality: str | None = None


class QAAnswer(BaseModel):
    """The strict JSON answer for the qa task (`reasoning` first, as for reports)."""

    reasoning: str | None = None
    answer: str
    citations: list[str] = Field(default_factory=list)


ANSWER_SCHEMAS: dict[str, type[BaseModel]] = {"report": ReportAnswer, "qa": QAAnswer}
ANSWER_TEXT_FIELD = {"report": "result", "qa": "answer"}


class Hit(BaseModel):
    """One retrieved case or knowledge chunk. `score` is cosine similarity (higher is closer)."""

    id: str
    text: str
    answer: str | None = None
    score: float
    metadata: dict[str, Any] = Field(default_factory=dict)
