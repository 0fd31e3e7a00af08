"""Chat exports -> multi-turn training samples: `run_chats(settings) -> DataResult` (`data.chats.enabled`).

    MEDSCRIBE_DATA__CHATS__ENABLED=true medscribe data --input telegram/result.json --input wa.txt

Steps: read every export (data/chats.py) -> dialogues -> PHI scrubbing of every turn (the data stage's
scrubber, plus the export's own author names replaced by [NAME]) -> samples -> duplicates rejected -> splits
by dialogue (all samples of one dialogue in one split) -> train/eval/test.jsonl + dataset/ + rejects.jsonl +
provenance.jsonl + manifest.json, every file atomic.

Samples (`data.chats.loss`):
- `last`: one sample per assistant turn, with the dialogue before it as context; loss on that turn only.
  When the whole dialogue does not fit `data.chats.context_tokens`, the oldest turns are left out (always a
  whole user/assistant pair, so the sample still starts with a user turn) and the manifest counts it.
- `all`: one sample per dialogue (cut into consecutive windows that fit the budget), loss on every assistant
  turn; so no assistant turn is trained twice.
A single user turn + its answer longer than the budget is a reject (`too_long`, naming the dialogue).

Tokens are counted with `data.chats.tokenizer` (a local tokenizer folder) when set, else approximated as
ceil(characters / 3) + 4 per turn (Russian text runs ~3 characters per token in multilingual tokenizers,
English ~4: the rule errs on the long side); the manifest says which was used.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl

from medscribe.data import chats as chat_io
from medscribe.data import ingest, manifest, outputs
from medscribe.data.anonymize import _scrubber_report, load_scrubber, scrub_input_notes, scrub_source_labels
from medscribe.data.chat import CHAT_FIELD, SHAREGPT_ROLES
from medscribe.errors import RuntimeFailure, UsageError
from medscribe.io import atomic_write_json, sha256_file
from medscribe.prompts import build_dialogue_messages

TURN_OVERHEAD = 4  # role header + end-of-turn marker of a chat template, in tokens
APPROX_RULE = "approximate: ceil(characters / 3) + 4 per turn (set data.chats.tokenizer to count exactly)"


def token_counter(chats: Any) -> tuple[Any, str]:
    if not chats.tokenizer:
        return (lambda text: math.ceil(len(text) / 3) + TURN_OVERHEAD), APPROX_RULE
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(chats.tokenizer, local_files_only=True)
    except Exception as exc:
        raise UsageError(f"data.chats.tokenizer: cannot load '{chats.tokenizer}' ({type(exc).__name__})") from None
    return (lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]) + TURN_OVERHEAD), \
        f"tokenizer {Path(chats.tokenizer).name} + 4 per turn"


def make_samples(turns: list[dict], count: Any, system_tokens: int, budget: int, loss: str,
                 ) -> tuple[list[tuple[int, int]], list[tuple[int, int]], int]:
    """(windows [start, end) of `turns` to train on, too-long (user, assistant) pairs, truncated count).
    Turns alternate user/assistant starting with user (chats.dialogues_of)."""
    sizes = [count(t["content"]) for t in turns]
    windows, too_long, truncated = [], [], 0
    if loss == "last":
        for end in range(2, len(turns) + 1, 2):
            start = end - 2
            if system_tokens + sizes[start] + sizes[start + 1] > budget:
                too_long.append((start, end))
                continue
            used = system_tokens + sum(sizes[start:end])
            while start >= 2 and used + sizes[start - 2] + sizes[start - 1] <= budget:
                start -= 2
                used += sizes[start] + sizes[start + 1]
            truncated += start > 0
            windows.append((start, end))
        return windows, too_long, truncated
    start = 0
    while start < len(turns):
        end, used = start, system_tokens
        while end + 2 <= len(turns) and used + sizes[end] + sizes[end + 1] <= budget:
            used += sizes[end] + sizes[end + 1]
            end += 2
        if end == start:
            too_long.append((start, start + 2))
            start += 2
            continue
        truncated += end < len(turns) or start > 0
        windows.append((start, end))
        start = end
    return windows, too_long, truncated


def chat_value(messages: list[dict], chat_format: str) -> Any:
    if chat_format == "messages":
        return messages
    if chat_format == "sharegpt":
        return [{"from": SHAREGPT_ROLES[m["role"]], "value": m["content"]} for m in messages]
    turns = messages[1:]  # alpaca with history (LLaMA-Factory): earlier (user, assistant) pairs
    return {"instruction": messages[0]["content"], "input": turns[-2]["content"], "output": turns[-1]["content"],
            "history": [[turns[i]["content"], turns[i + 1]["content"]] for i in range(0, len(turns) - 2, 2)]}


def _names_pattern(names: list[str]) -> re.Pattern | None:
    """Author names of the export as words to replace in texts: every capitalised part of >= 3 letters of a
    name with two or more words ("Иван Сидоров", "Dr. Petrova"). A one-word author ("Patient", "Клиника") is
    too often an ordinary word: such names are left to the scrubber."""
    parts = {p for name in names if len(re.findall(r"\w+", name)) >= 2
             for p in re.findall(r"\w{3,}", name) if p[:1].isupper()}
    if not parts:
        return None
    return re.compile(r"\b(" + "|".join(re.escape(p) for p in sorted(parts, key=len, reverse=True)) + r")\b")


def _split_of(key: str, seed: int, eval_fraction: float, test_fraction: float) -> str:
    score = int.from_bytes(hashlib.blake2b(f"{seed}\x1f{key}".encode(), digest_size=8).digest(), "big") / 2**64
    if score < test_fraction:
        return "test"
    if score < test_fraction + eval_fraction:
        return "eval"
    return "train"


def run_chats(settings: Any, console: Any = None) -> Any:
    from medscribe.data.pipeline import DataResult

    started = time.perf_counter()
    data, chats = settings.data, settings.data.chats
    out_dir = Path(settings.paths.data)
    notes: list[tuple[str, str]] = []
    sources = ingest.discover_files(list(data.inputs), chat_io.CHAT_SUFFIXES, data.include_hidden, notes)
    path_report = scrub_source_labels(sources, data.phi)
    warnings = scrub_input_notes(notes, data.phi)
    count, rule = token_counter(chats)
    system = chats.system
    system_text = build_dialogue_messages([], settings.prompt, system)[0]["content"]
    system_tokens = count(system_text)
    rejects: list[dict] = []
    inputs, dialogues, stats = [], [], Counter()
    names: list[str] = []
    for source in sources:
        label = source.label or source.relative
        messages, info = chat_io.read_chat_file(source.path, label, chats)
        names += chat_io.author_names(messages)
        found, group_stats = chat_io.dialogues_of(messages, label, chats)
        stats.update(group_stats)
        rejects += info.rejects
        dialogues += found
        inputs.append({"file": label, "format": info.format, "messages": info.messages, "authors": info.authors,
                       "dialogues": len(found), "skipped": info.skipped, "notes": info.notes,
                       "sha256": sha256_file(source.path)})
        warnings += [f"{label}: {note}" for note in info.notes]
    # PHI: the export's own author names first (the scrubber may not know a rare surname), then the scrubber.
    pattern = _names_pattern(names) if data.phi.enabled else None
    texts = sorted({t["content"] for d in dialogues for t in d.turns})
    phi_report: dict[str, Any] = {"enabled": data.phi.enabled}
    phi_started = time.perf_counter()
    if data.phi.enabled:
        named = [pattern.sub("[NAME]", t) if pattern else t for t in texts]
        scrubber = load_scrubber(data.phi)
        cleaned = scrubber.scrub_texts(named)
        if len(cleaned) != len(texts):
            raise RuntimeFailure(f"medscribe.phi returned {len(cleaned)} texts for {len(texts)}")
        mapping = dict(zip(texts, cleaned, strict=True))
        phi_report.update({"mode": data.phi.mode, **_scrubber_report(scrubber), "paths": path_report,
                           "author_names_replaced": sum(a != b for a, b in zip(texts, named, strict=True))})
        for d in dialogues:
            for t in d.turns:
                t["content"] = mapping[t["content"]]
    else:
        phi_report["warning"] = "PHI scrubbing disabled (data.phi.enabled = false)"
        warnings.append(phi_report["warning"])
    phi_seconds = time.perf_counter() - phi_started

    rows, provenance, seen = [], [], {}
    for d in dialogues:
        windows, too_long, truncated = make_samples(d.turns, count, system_tokens, chats.context_tokens, chats.loss)
        stats["context_truncated"] += truncated
        for start, _ in too_long:
            rejects.append({"file": d.file, "row": d.line, "reason": "too_long",
                            "detail": f"dialogue {d.key}: turns {start + 1}-{start + 2} alone need more than "
                                      f"data.chats.context_tokens = {chats.context_tokens} tokens ({rule})"})
        split = _split_of(d.turns[0]["content"] + "\x1f" + d.turns[1]["content"], data.seed, data.eval_fraction,
                          chats.test_fraction)
        for start, end in windows:
            turns = d.turns[start:end]
            key = hashlib.sha256(repr((system_text, [(t["role"], t["content"]) for t in turns])).encode()).hexdigest()
            if key in seen:
                rejects.append({"file": d.file, "row": d.line, "reason": "duplicate",
                                "detail": f"same as {seen[key]}"})
                continue
            sample_id = f"d-{key[:16]}"
            seen[key] = f"{d.key} turn {end}"
            messages = build_dialogue_messages(turns, settings.prompt, system)
            rows.append({"id": sample_id, "task": "dialogue", "input": turns[-2]["content"],
                         "target": turns[-1]["content"], "source": d.file, "dialogue": d.key, "split": split,
                         "loss": chats.loss, "system": system_text, "turns": turns,
                         CHAT_FIELD[data.chat_format]: chat_value(messages, data.chat_format)})
            provenance.append({"id": sample_id, "file": d.file, "row": d.line, "folder": None})
    if not rows:
        reasons = Counter(r["reason"] for r in rejects)
        raise UsageError(f"no training sample could be built from {len(sources)} chat export(s) "
                         f"({', '.join(f'{n} {r}' for r, n in sorted(reasons.items())) or 'no dialogues'})")
    files = _write(out_dir, rows, provenance, rejects)
    split_counts = dict(Counter(r["split"] for r in rows))
    split_counts = {s: split_counts.get(s, 0) for s in ("train", "eval", "test")}
    reasons = dict(Counter(r["reason"] for r in rejects))
    # rows = samples, plus the input lines rejected before any sample existed (broken JSONL lines)
    counts = {"rows_in": len(rows) + len(rejects), "rows_kept": len(rows), "rows_rejected": len(rejects)}
    empty = [name for name in ("eval", "test") if not split_counts[name] and
             (data.eval_fraction if name == "eval" else chats.test_fraction) > 0]
    if empty:
        warnings.append(f"no dialogue landed in {' or '.join(empty)} ({len(dialogues)} dialogues; splits are "
                        "by dialogue, so small exports need a larger data.eval_fraction / data.chats.test_fraction)")
    seconds = time.perf_counter() - started
    man = manifest.build_manifest(
        task="dialogue", config_hash=manifest.config_hash(settings), chat_format=data.chat_format,
        chat_field=CHAT_FIELD[data.chat_format], inputs=inputs, counts=counts, rejected_by_reason=reasons,
        splits=split_counts, phi=phi_report, fallbacks=warnings,
        chats={"dialogues": len(dialogues), "samples": len(rows), "loss": chats.loss,
               "context_tokens": chats.context_tokens, "token_count": rule, "gap_minutes": chats.gap_minutes,
               "split_by": "dialogue", **dict(stats)},
        timings={"total_s": round(seconds, 3), "phi_s": round(phi_seconds, 3)},
    )
    files["manifest.json"] = str(atomic_write_json(out_dir / "manifest.json", man))
    by_group = {"dialogue": split_counts}
    return DataResult(out_dir, counts, reasons, split_counts, by_group, files, man, seconds, phi_seconds, warnings)


def _write(out_dir: Path, rows: list[dict], provenance: list[dict], rejects: list[dict]) -> dict[str, str]:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)  # written last: no manifest = mid-rebuild
    (out_dir / "corpus.jsonl").unlink(missing_ok=True)  # dialogues are not retrieval cases
    frame = pl.DataFrame(rows)
    files = {}
    parts = {name: frame.filter(pl.col("split") == name) for name in ("train", "eval", "test")}
    for name, part in parts.items():
        files[f"{name}.jsonl"] = str(outputs.write_frame_jsonl(out_dir / f"{name}.jsonl", part))
    reject_schema = {"file": pl.String, "row": pl.Int64, "reason": pl.String, "detail": pl.String}
    files["rejects.jsonl"] = str(outputs.write_frame_jsonl(
        out_dir / "rejects.jsonl", pl.DataFrame(rejects, schema=reject_schema)))
    files["provenance.jsonl"] = str(outputs.write_frame_jsonl(
        out_dir / "provenance.jsonl", pl.DataFrame(provenance, schema={"id": pl.String, "file": pl.String,
                                                                       "row": pl.Int64, "folder": pl.String})))
    files["dataset"] = str(outputs.write_dataset_dict(out_dir, {k: v for k, v in parts.items() if v.height}))
    return files
