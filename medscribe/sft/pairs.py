"""Preference pairs for `medscribe sft --method dpo|orpo`: read from a file, checked, fingerprinted.

    from medscribe.sft.pairs import pairs_from_file
    pairs, report = pairs_from_file(settings, "pairs.jsonl")    # -> [Pair], PairReport (counts, rejects)

A pair file is JSONL or CSV with `prompt`, `chosen`, `rejected` (and optionally `id`, `task`, `organ`,
`modality`, `specialty`); `sft.pairs_columns` renames them ({prompt = "question", ...}). Two forms:
- plain: `prompt` is the finding/question text and `chosen`/`rejected` are answer texts. The prompt is rendered
  by THE prompt builder (medscribe.prompts.build_messages, no retrieved context) and each answer by
  `render_target` (the answer JSON of prompt.json_answer), so the pair looks exactly like what `ask` serves.
- conversational (TRL's form): `prompt` is a list of {role, content} messages ending with a user turn and
  `chosen`/`rejected` are a string or a one-message assistant list; used as they are. In CSV the cell holds
  the JSON list.
Rows with an empty chosen/rejected, chosen == rejected, a missing prompt or malformed messages are rejected
with a reason (line, id, reason: never the text) and written to `<run>/pairs_rejects.jsonl` by the caller.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medscribe.errors import UsageError

FIELDS = ("prompt", "chosen", "rejected", "id", "task", "organ", "modality", "specialty")
REQUIRED = ("prompt", "chosen", "rejected")


@dataclass
class Pair:
    """One preference pair, normalized: `prompt` is chat messages, `chosen`/`rejected` assistant texts."""

    id: str
    prompt: list[dict[str, str]]
    chosen: str
    rejected: str
    origin: dict[str, Any] = field(default_factory=dict)  # line, or the eval row's id and score

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PairReport:
    """What a pair source gave: counts, rejects (line/id/reason), and the source's identity for the manifest."""

    source: dict[str, Any]
    rows: int = 0
    pairs: int = 0
    rejects: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # eval pairs: rows right / below threshold / ...
    warnings: list[str] = field(default_factory=list)

    def reject(self, reason: str, line: int | None = None, row_id: str | None = None) -> None:
        self.rejects.append({"line": line, "id": row_id, "reason": reason})

    def summary(self) -> dict[str, Any]:
        reasons: dict[str, int] = {}
        for r in self.rejects:
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
        return {**self.source, "rows": self.rows, "pairs": self.pairs, "rejected": len(self.rejects),
                "reject_reasons": dict(sorted(reasons.items())), **self.counts, "warnings": self.warnings}


def pairs_fingerprint(pairs: list[Pair]) -> str:
    """16-hex hash of what is trained on (prompts and answers in order), for the manifest and resume checks."""
    from medscribe import fingerprint as fp

    return fp.short_hash([[p.prompt, p.chosen, p.rejected] for p in pairs])


def _read_rows(path: Path) -> list[tuple[int, dict]]:
    from medscribe.evaluate.loading import _read_csv, _read_jsonl_rows  # the readers eval uses (cp1251, BOM, lines)

    if not path.is_file():
        raise UsageError(f"sft.pairs_file: {path} not found")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _read_csv(path)[1]
    if suffix in (".jsonl", ".ndjson", ".json"):
        return _read_jsonl_rows(path)[1]
    raise UsageError(f"sft.pairs_file: {path}: unsupported file type {suffix or '(none)'} (use .jsonl or .csv)")


def _column_map(columns: dict[str, str]) -> dict[str, str]:
    unknown = sorted(set(columns) - set(FIELDS))
    if unknown:
        raise UsageError(f"sft.pairs_columns: unknown field(s) {', '.join(unknown)} (known: {', '.join(FIELDS)})")
    return {name: columns.get(name, name) for name in FIELDS}


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _messages(value: Any) -> list[dict[str, str]] | None:
    """A list of {role, content} messages, or None when `value` is not one."""
    if not isinstance(value, list) or not value:
        return None
    out = []
    for m in value:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            return None
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _answer(value: Any) -> tuple[str | None, bool]:
    """(assistant text, conversational?) of a chosen/rejected cell: a string, or one assistant message."""
    value = _maybe_json(value)
    if isinstance(value, list):
        msgs = _messages(value)
        if msgs is None or len(msgs) != 1 or msgs[0]["role"] != "assistant":
            return None, True
        return msgs[0]["content"], True
    if value is None:
        return "", False
    return str(value), False


def normalize_row(row: dict, names: dict[str, str], settings: Any) -> tuple[Pair | None, str | None]:
    """(Pair, None) for a usable row, else (None, reason)."""
    from medscribe.prompts import build_messages, render_target

    raw_prompt = _maybe_json(row.get(names["prompt"]))
    if raw_prompt is None or (isinstance(raw_prompt, str) and not raw_prompt.strip()):
        return None, "missing prompt"
    chosen, chosen_conv = _answer(row.get(names["chosen"]))
    rejected, rejected_conv = _answer(row.get(names["rejected"]))
    if chosen is None or rejected is None:
        return None, "chosen/rejected is not one assistant message"
    if not chosen.strip():
        return None, "empty chosen"
    if not rejected.strip():
        return None, "empty rejected"
    if isinstance(raw_prompt, list):
        prompt = _messages(raw_prompt)
        if prompt is None:
            return None, "prompt is not a list of {role, content} messages"
        if prompt[-1]["role"] != "user":
            return None, "prompt messages must end with a user turn"
    else:
        if chosen_conv or rejected_conv:
            return None, "plain prompt with conversational chosen/rejected"
        task = str(row.get(names["task"]) or settings.data.task)
        if task not in ("report", "qa"):
            return None, f"unknown task {task!r} (report or qa)"
        record = {"input": str(raw_prompt).strip(),
                  **{k: row.get(names[k]) for k in ("organ", "modality", "specialty") if row.get(names[k])}}
        prompt = build_messages(record, task, settings.prompt)
        # Plain answers are answer texts: rendered as the model is asked to answer (JSON or text).
        chosen = render_target({"target": chosen.strip()}, task, settings.prompt)
        rejected = render_target({"target": rejected.strip()}, task, settings.prompt)
    if chosen.strip() == rejected.strip():
        return None, "chosen equals rejected"
    return Pair(id="", prompt=prompt, chosen=chosen, rejected=rejected), None


def pairs_from_file(settings: Any, path: str | Path) -> tuple[list[Pair], PairReport]:
    """Every usable pair of `path` (in file order) and the report; UsageError when none is usable."""
    from medscribe import fingerprint as fp

    path = Path(path)
    names = _column_map(dict(settings.sft.pairs_columns))
    rows = _read_rows(path)
    report = PairReport(source={"kind": "file", "path": str(path), "sha256": fp.file_hash(path)})
    report.rows = len(rows)
    if rows:
        present = set().union(*(row.keys() for _, row in rows))
        missing = [names[f] for f in REQUIRED if names[f] not in present]
        if missing:
            have = ", ".join(sorted(map(str, present))[:12])
            raise UsageError(
                f"{path}: missing column {missing[0]!r} (columns: {have}; map them with sft.pairs_columns)")
    pairs: list[Pair] = []
    seen: set[str] = set()
    for lineno, row in rows:
        row_id = str(row.get(names["id"]) or f"line-{lineno}")
        pair, reason = normalize_row(row, names, settings)
        if pair is None:
            report.reject(reason, lineno, row_id if row.get(names["id"]) else None)
            continue
        if row_id in seen:
            report.reject("duplicate id", lineno, row_id)
            continue
        seen.add(row_id)
        pair.id, pair.origin = row_id, {"line": lineno}
        pairs.append(pair)
    report.pairs = len(pairs)
    if not pairs:
        first = report.rejects[0] if report.rejects else None
        why = f"; first: line {first['line']}: {first['reason']}" if first else ""
        raise UsageError(f"{path}: no usable pairs ({len(report.rejects)} of {len(rows)} rows rejected{why})")
    return pairs, report
