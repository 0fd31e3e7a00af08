"""Deterministic, leak-free train/eval/test(/pool) splits whose test split looks like the data.

    from medscribe.data.splits import assign_splits
    frame, info = assign_splits(frame, settings.data)  # adds `split`; frame needs _norm_input/_norm_target

Rows linked by the split key are one *unit* and always land in the same split (`data.split_group_by`):
- the normalized input (finding/question) always links rows: the same finding in train and test is leakage;
- `both` also links rows with equal normalized targets (no answer text in two splits: the qa default);
- a column name (`source`, `organ`, `modality`, `specialty`) also links rows with equal values of it;
- `auto` = `input` for the report task (a stock conclusion shared by train and test is not leakage, and
  keeping it in one unit would keep the most frequent conclusions out of test), `both` for qa.

Each unit gets hash-based scores from `seed` + its key (the smallest normalized input in it), never from
row order, so shuffling rows changes nothing and adding rows mostly leaves earlier choices in place:
- test: per `group_by` value, `test_per_group` rows, stratified by answer: the group's most frequent
  answers (up to STRATA of them, >= 2 rows each) and "the rest" each get a share of the quota proportional
  to their rows (largest remainders), filled with their units in score order; a unit larger than what its
  stratum still misses is skipped, and what strata could not fill is taken from any unit in score order;
- eval: remaining units whose eval score < `eval_fraction`;
- pool: train units of a group whose pool score >= `train_fractions[group]` (key `*` = every group).
`answer_audit` puts the share of the 10 most frequent answers in each split into the manifest.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from typing import Any

import polars as pl

from medscribe.errors import RuntimeFailure, UsageError

UNKNOWN_GROUP = "unknown"
STRATA = 10          # answer strata per group for the test quota (the rest is one more stratum)
TOP_ANSWERS = 10     # answers the manifest audit follows
PREFIX_CHARS = 24    # of a frequent normalized answer shown in the manifest (stock phrases, already scrubbed)
REST = "\x00rest"


def unit_score(seed: int, purpose: str, key: str) -> float:
    """Uniform in [0, 1), fixed by (seed, purpose, key)."""
    digest = hashlib.blake2b(f"{seed}\x1f{purpose}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def unit_scores(seed: int, purpose: str, keys: list[str]) -> list[float]:
    """`unit_score` for many keys (one list comprehension: ~2x faster than calling it per unit)."""
    blake2b, from_bytes, prefix = hashlib.blake2b, int.from_bytes, f"{seed}\x1f{purpose}\x1f"
    return [from_bytes(blake2b(f"{prefix}{key}".encode(), digest_size=8).digest(), "big") / 2**64 for key in keys]


def split_key(data: Any) -> str:
    """The resolved `data.split_group_by`: `input`, `both` or a column name."""
    setting = getattr(data, "split_group_by", "auto")
    if setting == "auto":
        return "input" if data.task == "report" else "both"
    return setting


def link_columns(key: str) -> list[str]:
    """Columns whose equal values put rows in one unit, for a resolved key."""
    if key == "input":
        return ["_norm_input"]
    if key == "both":
        return ["_norm_input", "_norm_target"]
    return ["_norm_input", key]


def find_units(frame: pl.DataFrame, links: tuple[str, ...] | list[str] = ("_norm_input", "_norm_target")) -> pl.Series:
    """Unit per row = smallest row index of its connected component (rows linked by an equal value of any
    column in `links`; a null links nothing). Min-label propagation with pointer jumping, vectorized."""
    index = pl.int_range(pl.len(), dtype=pl.Int64)
    # A null value must not link all rows that lack it: each gets a value of its own.
    columns = [
        pl.coalesce(pl.col(c).cast(pl.String), pl.lit("\x00row").add(index.cast(pl.String))).alias(f"_l{i}")
        for i, c in enumerate(links)
    ]
    units = frame.select(index.alias("_u"), *columns)
    while True:
        step = units
        for i in range(len(links)):
            step = step.with_columns(pl.col("_u").min().over(f"_l{i}"))
        step = step.with_columns(pl.col("_u").gather(pl.col("_u")))
        if step.get_column("_u").equals(units.get_column("_u")):
            return step.get_column("_u")
        units = step


def _largest_remainder(quota: int, weights: list[int]) -> list[int]:
    """Integers proportional to `weights` summing to `quota` (ties go to the earlier, larger stratum)."""
    total = sum(weights)
    exact = [quota * w / total for w in weights]
    shares = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in order[: quota - sum(shares)]:
        shares[i] += 1
    return shares


def _pick_test(members: list[int], sizes: dict[int, int], stratum: dict[int, str], frequent: list[str],
               quota: int) -> list[int]:
    """Test units of one group (`members` in test-score order): stratified by answer, then filled up.
    `frequent`: the group's answer strata, most rows first; `stratum`: the stratum of each unit (or REST)."""
    weight = Counter()
    for u in members:
        weight[stratum[u]] += sizes[u]
    kept = [s for s in [*frequent, REST] if weight[s] > 0]
    total = sum(weight.values())
    missing = dict(zip(kept, _largest_remainder(min(quota, total), [weight[s] for s in kept]), strict=True))
    unfilled = sum(missing.values())
    chosen: list[int] = []
    taken: set[int] = set()
    for u in members:
        if unfilled == 0:
            break
        if sizes[u] <= missing[stratum[u]]:
            chosen.append(u)
            taken.add(u)
            missing[stratum[u]] -= sizes[u]
            unfilled -= sizes[u]
    left = quota - sum(sizes[u] for u in chosen)
    for u in members:  # strata whose units are too big for their share leave room: fill it in score order
        if left <= 0:
            break
        if u not in taken and sizes[u] <= left:
            chosen.append(u)
            left -= sizes[u]
    return chosen


def assign_splits(frame: pl.DataFrame, data: Any) -> tuple[pl.DataFrame, dict]:
    check_fractions(data.train_fractions)
    key = split_key(data)
    links = link_columns(key)
    if "image" in frame.columns and frame.get_column("image").is_not_null().any():
        links = [*links, "image"]  # rows showing one image (its pixel hash) stay in one split, whatever their text
    if key not in ("input", "both") and key not in frame.columns:
        raise UsageError(f"data.split_group_by: column {key!r} is not in the data")
    frame = frame.with_columns(find_units(frame, links).alias("_unit"))
    # Group of a unit = the group of its first row (the unit id is that row's index).
    group = pl.col(data.group_by).cast(pl.String)
    frame = frame.with_columns(
        pl.when(group.is_null() | (group == "")).then(pl.lit(UNKNOWN_GROUP)).otherwise(group)
        .gather(pl.col("_unit")).alias("_group"),
        pl.col("_norm_target").fill_null(REST).alias("_answer"),
    )
    # Answer strata per group: its STRATA most frequent answers given >= 2 times; each unit stands for the one
    # of its answers most frequent in its group (ties: smallest text), REST when that is not a stratum.
    answer_rows = frame.group_by("_group", "_answer").agg(pl.len().alias("rows"))
    strata = (
        answer_rows.filter((pl.col("rows") >= 2) & (pl.col("_answer") != REST))
        .sort(["_group", "rows", "_answer"], descending=[False, True, False])
        .group_by("_group", maintain_order=True).head(STRATA)
    )
    frequent: dict[str, list[str]] = defaultdict(list)
    for g, answer in strata.select("_group", "_answer").iter_rows():
        frequent[g].append(answer)
    units = (
        frame.group_by("_unit", "_group", "_answer").agg(pl.len().alias("n"), pl.col("_norm_input").min().alias("key"))
        .join(strata.select("_group", "_answer", "rows"), on=["_group", "_answer"], how="left")
        .sort(["_unit", "rows", "_answer"], descending=[False, True, False], nulls_last=True)
        .group_by("_unit", maintain_order=True)
        .agg(pl.col("n").sum().alias("size"), pl.col("key").min(), pl.col("_group").first(),
             pl.when(pl.col("rows").first().is_null()).then(pl.lit(REST)).otherwise(pl.col("_answer").first())
             .alias("stratum"))
    )
    unit_ids = units.get_column("_unit").to_list()
    sizes = dict(zip(unit_ids, units.get_column("size").to_list(), strict=True))
    unit_key = dict(zip(unit_ids, units.get_column("key").to_list(), strict=True))
    unit_group = dict(zip(unit_ids, units.get_column("_group").to_list(), strict=True))
    stratum = dict(zip(unit_ids, units.get_column("stratum").to_list(), strict=True))

    split_of_unit: dict[int, str] = {}
    by_group: dict[str, list[int]] = defaultdict(list)
    for u in unit_ids:
        by_group[unit_group[u]].append(u)
    test_score = dict(zip(unit_ids, unit_scores(data.seed, "test", [unit_key[u] for u in unit_ids]), strict=True))
    if data.test_per_group > 0:
        for members in by_group.values():
            members.sort(key=test_score.__getitem__)
            for u in _pick_test(members, sizes, stratum, frequent[unit_group[members[0]]], data.test_per_group):
                split_of_unit[u] = "test"
    rest = [u for u in unit_ids if u not in split_of_unit]
    eval_score = (
        dict(zip(rest, unit_scores(data.seed, "eval", [unit_key[u] for u in rest]), strict=True))
        if data.eval_fraction > 0 else {}
    )
    eval_units = [u for u in rest if eval_score.get(u, 1.0) < data.eval_fraction]
    if data.eval_fraction > 0 and not eval_units and len(rest) > 1:
        # Tiny data: the threshold picked nothing, so take the lowest-scoring unit (still deterministic).
        eval_units = [min(rest, key=eval_score.__getitem__)]
    for u in eval_units:
        split_of_unit[u] = "eval"
    default_fraction = data.train_fractions.get("*")
    for u in rest:
        if u in split_of_unit:
            continue
        fraction = data.train_fractions.get(unit_group[u], default_fraction)
        keep = fraction is None or unit_score(data.seed, "pool", unit_key[u]) < fraction
        split_of_unit[u] = "train" if keep else "pool"
    frame = frame.with_columns(
        pl.col("_unit").replace_strict(split_of_unit, return_dtype=pl.String).alias("split")
    ).drop("_group", "_answer")
    info = {
        "split_group_by": getattr(data, "split_group_by", "auto"),
        "key": key,
        "linked_by": [c.removeprefix("_norm_") for c in links],
        "units": len(unit_ids),
        "largest_unit_rows": max(sizes.values(), default=0),
        "method": "units of rows with an equal split key; blake2b(seed, key) scores; test per group stratified "
                  f"by answer ({STRATA} most frequent + the rest, proportional quotas), then bottom-k",
        **answer_audit(frame),
    }
    return frame, info


def _prefix(text: str) -> str:
    if len(text) <= PREFIX_CHARS:
        return text
    head = text[: PREFIX_CHARS + 1]  # a space right after the limit keeps the last whole word
    cut = head.rsplit(" ", 1)[0] if " " in head else head
    return cut[:PREFIX_CHARS] + "…"


def answer_audit(frame: pl.DataFrame) -> dict:
    """The TOP_ANSWERS most frequent normalized answers (given at least twice): rows and share in all rows
    and in each split, and the share of all of them together per split (`top_answers_share`).

    Answers are named by 16 hex of sha256 of the normalized text and a short prefix of it (targets are
    scrubbed before splitting; the prefix only shows which stock phrase it is)."""
    total = frame.height
    per_split = dict(frame.group_by("split").len().iter_rows())
    counts = (
        frame.group_by("_norm_target").agg(pl.len().alias("rows"), pl.col("split"))
        .filter(pl.col("rows") >= 2)  # an answer given once is not a frequent one (and ties would pick at random)
        .sort(["rows", "_norm_target"], descending=[True, False]).head(TOP_ANSWERS)
    )
    top: list[dict] = []
    in_top = Counter()
    for answer, rows, splits in counts.iter_rows():
        by_split = Counter(splits)
        in_top.update(by_split)
        top.append({
            "answer_sha256": hashlib.sha256((answer or "").encode()).hexdigest()[:16],
            "prefix": _prefix(answer or ""),
            "rows": rows,
            "share_all": round(rows / total, 4) if total else None,
            "rows_by_split": dict(sorted(by_split.items())),
            "share_test": round(by_split["test"] / per_split["test"], 4) if per_split.get("test") else None,
        })
    top_share = {"all": round(sum(in_top.values()) / total, 4) if total else None}
    for split, n in sorted(per_split.items()):
        top_share[split] = round(in_top[split] / n, 4) if n else None
    return {"top_answers": top, "top_answers_share": top_share}


def representativeness_warning(info: dict, tolerance: float = 0.1) -> str | None:
    """A visible note when the test split holds the most frequent answers far less (or more) than the data."""
    share = info.get("top_answers_share") or {}
    if share.get("test") is None or share.get("all") is None:
        return None
    if abs(share["test"] - share["all"]) <= tolerance:
        return None
    return (f"test split is not representative: the {len(info['top_answers'])} most frequent answers are "
            f"{share['test']:.0%} of test vs {share['all']:.0%} of all rows (split key {info['key']!r} makes "
            f"units larger than the per-group test quota; see manifest splits_audit)")


def check_no_leak(leak: dict, info: dict) -> None:
    """What the split key links may never be in two splits: fail the run if the audit finds it anyway."""
    for field in ("input", "target", "image"):
        if field in info["linked_by"] and leak.get(f"exact_{field}", {}).get("count"):
            raise RuntimeFailure(f"internal error: a normalized {field} landed in two splits "
                                 f"(split key {info['key']!r})")


def check_fractions(fractions: dict[str, float]) -> None:
    for group, value in fractions.items():
        if not 0 <= value <= 1:
            raise UsageError(f"data.train_fractions.{group}: {value} is not between 0 and 1")
