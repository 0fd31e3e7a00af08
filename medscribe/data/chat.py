"""Chat-format columns (messages / sharegpt / alpaca) for a whole frame, rendered by the shared prompt builder.

    from medscribe.data.chat import chat_column
    frame, note = chat_column(frame, task, settings.prompt, "messages")   # adds the `messages` column

Calling `medscribe.prompts.build_messages` once per row costs ~25 us: 5 s of a 200k-row run. So the builder
is called once per *shape* (which of organ/modality/specialty are empty) with placeholder values, the
rendered text is cut at the placeholders, and polars glues each row's values in (JSON-escaped where the
builder JSON-encodes, e.g. the `{"result": ...}` target). The result is checked against a direct
`build_messages` call on sample rows of every shape; on any difference (a custom template doing something
unusual) every row is rendered by the builder itself and `note` says so for the manifest.
"""

from __future__ import annotations

import json
import re
from typing import Any

import polars as pl

from medscribe.prompts import build_messages

FIELDS = ("input", "target", "organ", "modality", "specialty")
OPTIONAL = ("organ", "modality", "specialty")
# Private-use characters + a quote: the quote shows whether the builder JSON-escaped the value there.
MARK = {f: f'\ue000{i}"\ue001' for i, f in enumerate(FIELDS)}
ESCAPED_MARK = {f: json.dumps(m, ensure_ascii=False)[1:-1] for f, m in MARK.items()}
TOKEN_RE = re.compile("|".join(re.escape(m) for m in [*MARK.values(), *ESCAPED_MARK.values()]))
TOKEN_FIELD = {**{m: (f, False) for f, m in MARK.items()}, **{m: (f, True) for f, m in ESCAPED_MARK.items()}}
SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt"}
CHAT_FIELD = {"messages": "messages", "sharegpt": "conversations", "alpaca": "alpaca"}
VERIFY_ROWS = 25


def json_escaped(values: pl.Series) -> pl.Series:
    """`json.dumps(v, ensure_ascii=False)[1:-1]` for every value, vectorized. Besides control characters the
    json module escapes only backslash and double quote; values with a control character (none after cleaning)
    go through the json module itself."""
    out = values.str.replace_all("\\", "\\\\", literal=True).str.replace_all('"', '\\"', literal=True)
    odd = values.str.contains(r"[\x00-\x1f]").fill_null(False)
    if odd.any():
        rows = odd.arg_true()
        escaped = [json.dumps(v, ensure_ascii=False)[1:-1] for v in values.gather(rows).to_list()]
        out = out.scatter(rows, pl.Series(escaped, dtype=pl.String))
    return out


def _json_escaped(column: str) -> pl.Expr:
    return pl.col(f"_json_{column}")


def _content_expr(text: str) -> pl.Expr:
    """Rendered text with placeholders -> concat of literals and (escaped) columns."""
    parts: list[pl.Expr] = []
    cursor = 0
    for match in TOKEN_RE.finditer(text):
        if match.start() > cursor:
            parts.append(pl.lit(text[cursor:match.start()]))
        field, escaped = TOKEN_FIELD[match.group()]
        parts.append(_json_escaped(field) if escaped else pl.col(field))
        cursor = match.end()
    if cursor < len(text) or not parts:
        parts.append(pl.lit(text[cursor:]))
    return pl.concat_str(parts) if len(parts) > 1 else parts[0]


def _format_expr(messages: list[dict], chat_format: str) -> pl.Expr:
    contents = [(m["role"], _content_expr(m["content"])) for m in messages]
    if chat_format == "messages":
        return pl.concat_list([pl.struct(role=pl.lit(r), content=c) for r, c in contents])
    if chat_format == "sharegpt":
        return pl.concat_list([pl.struct(**{"from": pl.lit(SHAREGPT_ROLES[r]), "value": c}) for r, c in contents])
    system = [c for r, c in contents if r == "system"]
    user = [c for r, c in contents if r == "user"]
    return pl.struct(
        instruction=pl.concat_str(system, separator="\n\n"),
        input=pl.concat_str(user, separator="\n\n"),
        output=contents[-1][1],
    )


def render_row(record: dict, task: str, prompt: Any, chat_format: str) -> Any:
    """The chat value for one record straight from the builder (the reference the fast path must equal)."""
    messages = build_messages(record, task, prompt, include_target=True)
    if chat_format == "messages":
        return messages
    if chat_format == "sharegpt":
        return [{"from": SHAREGPT_ROLES[m["role"]], "value": m["content"]} for m in messages]
    # alpaca is nested: Record already has an `input` field (the raw finding/question) that index, ask and
    # eval read; the alpaca `input` is the rendered user turn.
    return {
        "instruction": "\n\n".join(m["content"] for m in messages if m["role"] == "system"),
        "input": "\n\n".join(m["content"] for m in messages if m["role"] == "user"),
        "output": messages[-1]["content"],
    }


def chat_column(frame: pl.DataFrame, task: str, prompt: Any, chat_format: str) -> tuple[pl.DataFrame, str | None]:
    name = CHAT_FIELD[chat_format]
    if frame.height == 0:
        return frame.with_columns(pl.lit(None).alias(name)), None
    # The builder drops user-template lines that end with ":"; a value with a line break or a trailing colon
    # can therefore change the layout, so such rows are rendered by the builder itself.
    special = pl.any_horizontal(pl.col(FIELDS).str.contains(r"\n|:\s*$").fill_null(False))
    fields = list(FIELDS)
    if "reasoning" in frame.columns:  # rows with reasoning (cot targets) are rendered by the builder itself
        special = special | pl.col("reasoning").is_not_null()
        fields.append("reasoning")
    frame = frame.with_row_index("_chat_order")
    simple, odd = frame.filter(~special), frame.filter(special)
    try:
        fast = _fast(simple, task, prompt, chat_format, name) if simple.height else simple
    except (KeyError, ValueError, IndexError):
        fast = None
    note = None
    if fast is None:
        odd, fast = frame, None
        note = "chat field rendered row by row (placeholder rendering did not match the prompt builder)"
    parts = [fast] if fast is not None and fast.height else []
    if odd.height:
        values = [render_row(r, task, prompt, chat_format) for r in odd.select(fields).to_dicts()]
        parts.append(odd.with_columns(pl.Series(name, values)))
    out = pl.concat(parts, how="vertical_relaxed") if len(parts) > 1 else parts[0]
    return out.sort("_chat_order").drop("_chat_order"), note


def _fast(frame: pl.DataFrame, task: str, prompt: Any, chat_format: str, name: str) -> pl.DataFrame | None:
    if frame.select(pl.any_horizontal(pl.col(FIELDS).str.contains("[\ue000\ue001]")).any()).item():
        return None
    shape = pl.struct([pl.col(f).is_null().alias(f) for f in OPTIONAL])
    work = frame.with_row_index("_chat_idx").with_columns(shape.alias("_shape"))
    rendered = {}
    for nulls in work.get_column("_shape").unique(maintain_order=True).to_list():
        placeholder = {f: (None if nulls[f] else MARK[f]) for f in OPTIONAL}
        placeholder.update(input=MARK["input"], target=MARK["target"])
        rendered[tuple(nulls.values())] = build_messages(placeholder, task, prompt, include_target=True)
    # JSON-escaped copies only of the fields the builder JSON-encodes somewhere (usually just the target),
    # escaped by the json module itself so the escaping is the builder's.
    escaped_fields = {
        TOKEN_FIELD[token][0]
        for messages in rendered.values() for m in messages for token in TOKEN_RE.findall(m["content"])
        if TOKEN_FIELD[token][1]
    }
    work = work.with_columns([json_escaped(work.get_column(f)).alias(f"_json_{f}") for f in escaped_fields])
    parts = []
    for key, part in work.group_by("_shape", maintain_order=True):
        messages = rendered[tuple(key[0].values())]
        part = part.with_columns(_format_expr(messages, chat_format).alias(name))
        picks = [round(i * (part.height - 1) / max(VERIFY_ROWS - 1, 1)) for i in range(min(VERIFY_ROWS, part.height))]
        for row in part.gather(picks).select(*FIELDS, name).to_dicts():
            if row[name] != render_row(row, task, prompt, chat_format):
                return None
        parts.append(part)
    out = pl.concat(parts).sort("_chat_idx")
    return out.drop("_chat_idx", "_shape", *[f"_json_{f}" for f in escaped_fields])
