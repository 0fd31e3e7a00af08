"""De-identification metrics on a span-labeled corpus, measured the way de-id systems are measured.

    from medscribe.phi.corpus import generate_corpus
    from medscribe.phi.evaluate import evaluate
    result = evaluate(generate_corpus(600), find=Scrubber().find)

- token recall per type and language: a PHI token (a `\\w+` run inside a gold span) leaks if ANY of its
  characters is not covered by a predicted span, whatever type the prediction has;
- span precision per predicted type: a predicted span is right when it overlaps some gold span;
- controls untouched: control documents (eponyms, measurements, ...) with no predicted span at all;
- non-PHI tokens kept: tokens outside gold spans that no prediction touches;
- leaks per 100k words: leaked PHI tokens per 100,000 tokens of text.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable

TOKEN_RE = re.compile(r"\w+")
ID_TYPES = ("SNILS", "INN", "OMS", "PASSPORT", "PHONE", "EMAIL", "URL", "IP", "ID")

# (metric, group, language or "all") -> minimum; groups are PHI types or "IDS" / "ALL".
TARGETS: dict[tuple[str, str, str], float] = {
    ("recall", "IDS", "all"): 0.995,
    ("precision", "IDS", "all"): 0.95,
    ("recall", "NAME", "en"): 0.98,
    ("recall", "NAME", "ru"): 0.95,
    ("precision", "NAME", "all"): 0.85,
    ("recall", "DATE", "all"): 0.98,
    ("recall", "ADDRESS", "en"): 0.95,
    ("recall", "ADDRESS", "ru"): 0.90,
    ("recall", "ORG", "en"): 0.95,
    ("recall", "ORG", "ru"): 0.90,
    ("recall", "ALL", "all"): 0.99,
    ("controls_untouched", "ALL", "all"): 0.99,
    ("non_phi_kept", "ALL", "all"): 0.98,
}


def _covered(length: int, spans) -> bytearray:
    mask = bytearray(length)
    for start, end, *_ in spans:
        mask[start:end] = b"\x01" * (end - start)
    return mask


def evaluate(docs: list[dict], find: Callable[[list[str]], list[list[tuple[int, int, str]]]]) -> dict:
    texts = [d["text"] for d in docs]
    predicted = find(texts)
    tok_total: dict[tuple[str, str], int] = defaultdict(int)
    tok_leaked: dict[tuple[str, str], int] = defaultdict(int)
    pred_total: dict[tuple[str, str], int] = defaultdict(int)
    pred_right: dict[tuple[str, str], int] = defaultdict(int)
    controls = controls_clean = 0
    non_phi = non_phi_kept = words = 0
    for doc, spans in zip(docs, predicted, strict=True):
        text, lang, gold = doc["text"], doc["lang"], doc["spans"]
        covered = _covered(len(text), spans)
        gold_mask = _covered(len(text), gold)
        for start, end, phi_type in gold:
            for m in TOKEN_RE.finditer(text, start, end):
                tok_total[(phi_type, lang)] += 1
                if not all(covered[m.start() : m.end()]):
                    tok_leaked[(phi_type, lang)] += 1
        for start, end, phi_type in spans:
            pred_total[(phi_type, lang)] += 1
            if any(gold_mask[start:end]):
                pred_right[(phi_type, lang)] += 1
        for m in TOKEN_RE.finditer(text):
            words += 1
            if not any(gold_mask[m.start() : m.end()]):
                non_phi += 1
                non_phi_kept += not any(covered[m.start() : m.end()])
        if doc["kind"] == "control":
            controls += 1
            controls_clean += not spans
    return {
        "tokens": {f"{t}|{lang}": [tok_total[(t, lang)], tok_leaked[(t, lang)]] for t, lang in tok_total},
        "predicted": {f"{t}|{lang}": [pred_total[(t, lang)], pred_right[(t, lang)]] for t, lang in pred_total},
        "controls": [controls, controls_clean],
        "non_phi": [non_phi, non_phi_kept],
        "words": words,
        "docs": len(docs),
    }


def _members(group: str) -> tuple[str, ...] | None:
    if group == "ALL":
        return None
    if group == "IDS":
        return ID_TYPES
    return (group,)


def recall(result: dict, group: str = "ALL", lang: str = "all") -> float | None:
    members = _members(group)
    total = leaked = 0
    for key, (n, bad) in result["tokens"].items():
        t, lg = key.split("|")
        if (members is None or t in members) and lang in ("all", lg):
            total, leaked = total + n, leaked + bad
    return None if total == 0 else 1 - leaked / total


def precision(result: dict, group: str = "ALL", lang: str = "all") -> float | None:
    members = _members(group)
    total = right = 0
    for key, (n, ok) in result["predicted"].items():
        t, lg = key.split("|")
        if (members is None or t in members) and lang in ("all", lg):
            total, right = total + n, right + ok
    return None if total == 0 else right / total


def summary_metrics(result: dict) -> dict:
    leaked = sum(bad for _, bad in result["tokens"].values())
    controls, clean = result["controls"]
    non_phi, kept = result["non_phi"]
    return {
        "recall_all": recall(result),
        "precision_all": precision(result),
        "controls_untouched": clean / controls if controls else None,
        "non_phi_kept": kept / non_phi if non_phi else None,
        "leaks_per_100k_words": 1e5 * leaked / max(result["words"], 1),
        "phi_tokens": sum(n for n, _ in result["tokens"].values()),
        "leaked_tokens": leaked,
    }


def check_targets(result: dict) -> list[tuple[str, float | None, float, bool]]:
    """(label, measured, target, met) for every target; a missing measurement counts as missed."""
    summary = summary_metrics(result)
    rows = []
    for (metric, group, lang), target in TARGETS.items():
        if metric == "recall":
            value = recall(result, group, lang)
        elif metric == "precision":
            value = precision(result, group, lang)
        else:
            value = summary[metric]
        label = f"{metric} {group} {lang}"
        rows.append((label, value, target, value is not None and value >= target))
    return rows
