"""Exact and near-duplicate detection that scales to 200k+ rows.

    from medscribe.data.dedup import add_keys, reject_duplicates, near_pairs
    frame = add_keys(frame)                           # _norm_input, _norm_target, _numbers
    kept, rejects = reject_duplicates(frame, 0.95)

- exact: identical (input, target) after cleaning (and the same image, when the data has an image column: rows
  are only ever compared with rows showing the same picture);
- near, normalized: identical after case folding, ё->е, punctuation and whitespace removal;
- near, fuzzy: rapidfuzz ratio >= threshold between neighbours in two sort orders (text and reversed
  text: the "sorted neighbourhood" method, O(n log n) instead of O(n^2)), and only when the two texts are
  typo variants of each other: same numbers, same number of words, and every differing word pair is at
  least 4 characters long and >= 80% similar. A high character ratio alone is not enough in clinical
  text: "верхней доле левого" and "нижней доле правого" are 95% similar and mean different things.
The first row (in input order) of each duplicate cluster is kept; the others are rejected naming it.
Sorted neighbourhood misses pairs whose differences sort them far apart; the manifest states the method.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from rapidfuzz import fuzz, process

METHOD = "exact + normalized-text hash + rapidfuzz ratio between sorted neighbours (typo variants only)"
TYPO_MIN_WORD = 4
TYPO_MIN_SIMILARITY = 80


def norm_expr(expr: pl.Expr) -> pl.Expr:
    """The text as compared for near-duplicates and grouping: case, ё, punctuation and spacing ignored."""
    return (
        expr.str.to_lowercase()
        .str.replace_all("ё", "е", literal=True)
        .str.replace_all(r"[^\w\s]", " ")
        # = every run of \s+ -> " ", written so that a lone plain space is not a match (2x faster)
        .str.replace_all(r"\s{2,}|[^\S ]", " ")
        .str.strip_chars()
    )


def add_keys(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        norm_expr(pl.col("input")).alias("_norm_input"),
        norm_expr(pl.col("target")).alias("_norm_target"),
        pl.concat_str(pl.col("input"), pl.col("target")).str.extract_all(r"\d+").list.join(" ").alias("_numbers"),
    )


def typo_variants(a: str, b: str) -> bool:
    """Same words up to typos: equal word count, each differing pair long and >= 80% similar."""
    wa, wb = a.split(), b.split()
    if len(wa) != len(wb):
        return False
    for x, y in zip(wa, wb, strict=True):
        if x != y and (min(len(x), len(y)) < TYPO_MIN_WORD or not fuzz.ratio(x, y, score_cutoff=TYPO_MIN_SIMILARITY)):
            return False
    return True


def neighbour_pairs(
    texts: list[str], blocks: list[str], threshold: float, typos_only: bool = False,
    across: list[str] | None = None,
) -> list[tuple[int, int]]:
    """Index pairs (i, j) whose texts are >= threshold similar, comparing neighbours in the sorted orders.

    `blocks` restricts comparison to rows with the same block value (e.g. the same numbers);
    `typos_only` further requires `typo_variants`; `across` keeps only pairs whose values differ (splits)."""
    cutoff = threshold * 100
    frame = pl.DataFrame(
        {"t": texts, "b": blocks, "g": across if across is not None else [""] * len(texts)},
        schema={"t": pl.String, "b": pl.String, "g": pl.String},
    ).with_row_index("i")
    if across is None:
        # Only rows sharing their block with another row can pair: with blocks = the numbers of the row, most
        # rows of a report export are alone in theirs. Dropping them changes no adjacency inside a block.
        frame = frame.filter(pl.len().over("b") > 1)
    frame = frame.with_columns(pl.col("t").str.len_chars().alias("n"), reversed_texts(frame.get_column("t")).alias("r"))
    pairs: set[tuple[int, int]] = set()  # both sort orders often find the same pair
    for key in ("t", "r"):
        ordered = frame.sort("b", key).select("i", "t", "b", "n", "g")
        following = ordered.select(pl.all().shift(-1).name.suffix("_next"))
        candidates = pl.concat([ordered, following], how="horizontal").filter(
            (pl.col("b") == pl.col("b_next"))
            & (pl.col("t") != pl.col("t_next"))
            & ((pl.col("g") != pl.col("g_next")) if across is not None else pl.lit(True))
            # ratio = 2*matches/(la+lb) <= 2*min(la,lb)/(la+lb): skip pairs whose lengths rule it out
            & (pl.min_horizontal("n", "n_next") * 200 >= cutoff * (pl.col("n") + pl.col("n_next")))
        )
        if candidates.height == 0:
            continue
        left, right = candidates.get_column("t").to_list(), candidates.get_column("t_next").to_list()
        scores = process.cpdist(left, right, scorer=fuzz.ratio, score_cutoff=cutoff, workers=-1)
        first, second = candidates.get_column("i").to_list(), candidates.get_column("i_next").to_list()
        for k in np.flatnonzero(scores >= cutoff).tolist():
            if not typos_only or typo_variants(left[k], right[k]):
                a, b = first[k], second[k]
                pairs.add((min(a, b), max(a, b)))
    return sorted(pairs)


# Strings whose every character is its own grapheme cluster (Latin, Greek, Cyrillic letters without combining
# marks, common punctuation): reversing them by characters equals polars' grapheme-cluster `str.reverse`.
_SINGLE_CHAR_GRAPHEMES = r"^[\x20-\x7e\u00a0-\u02ff\u0370-\u0482\u048a-\u052f\u2010-\u2027\u2030-\u205e]*$"


def reversed_texts(column: pl.Series) -> pl.Series:
    """`column.str.reverse()` (reversal by grapheme clusters), ~3x faster: plain string slicing where that is
    the same, polars only for the strings that have multi-character clusters (combining marks, emoji)."""
    simple = column.str.contains(_SINGLE_CHAR_GRAPHEMES).fill_null(True)
    values = [None if t is None else t[::-1] for t in column.to_list()]
    out = pl.Series(column.name, values, dtype=pl.String)
    if not simple.all():
        rows = (~simple).arg_true()
        out = out.scatter(rows, column.gather(rows).str.reverse())
    return out


class UnionFind:
    """Connected components with the smallest index as representative (= first row in input order)."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        parent = self.parent
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            if ra < rb:
                self.parent[rb] = ra
            else:
                self.parent[ra] = rb


def reject_duplicates(frame: pl.DataFrame, threshold: float) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """Drop exact, normalized and fuzzy duplicates of (input, target); frame must have `add_keys` columns."""
    # The image is part of the example: the same text with another image is another example, and rows are only
    # compared (exactly or fuzzily) with rows showing the same image (`image` = its pixel hash, data/images.py).
    image = pl.col("image").fill_null("") if "image" in frame.columns else pl.lit("")
    frame = frame.with_row_index("_idx").with_columns(
        pl.concat_str(image, pl.lit("\n"), "_norm_input", pl.lit("\n"), "_norm_target").alias("_pair"),
        pl.struct("input", "target", image.alias("_image")).is_first_distinct().alias("_first_exact"),
        pl.concat_str("_numbers", pl.lit("\n"), image).alias("_block"),
    )
    frame = frame.with_columns(pl.col("_idx").min().over("_pair").alias("_norm_rep"))
    frame = frame.with_columns(pl.col("_norm_rep").alias("_rep"))
    if threshold < 1.0:
        # Fuzzy matching only among rows that are not already normalized duplicates.
        unique = frame.filter(pl.col("_norm_rep") == pl.col("_idx"))
        positions = unique.get_column("_idx").to_list()
        pairs = neighbour_pairs(
            unique.get_column("_pair").to_list(), unique.get_column("_block").to_list(), threshold, typos_only=True
        )
        if pairs:
            uf = UnionFind(len(positions))
            for a, b in pairs:
                uf.union(a, b)
            touched = {i for pair in pairs for i in pair}
            remap = {positions[i]: positions[uf.find(i)] for i in touched if uf.find(i) != i}
            frame = frame.with_columns(
                pl.col("_rep").replace_strict(remap, default=pl.col("_rep"), return_dtype=pl.UInt32).alias("_rep")
            )
            # A normalized duplicate of a fuzzy duplicate points at the cluster's first row too.
            frame = frame.with_columns(pl.col("_rep").gather(pl.col("_rep")).alias("_rep"))
    is_dup = pl.col("_rep") != pl.col("_idx")
    reason = (
        pl.when(~pl.col("_first_exact")).then(pl.lit("duplicate"))
        .when(is_dup).then(pl.lit("near_duplicate"))
        .otherwise(None)
    )
    frame = frame.with_columns(reason.alias("_reason"))
    counts = frame.select(
        (~pl.col("_first_exact")).sum().alias("duplicate"),
        (pl.col("_first_exact") & (pl.col("_norm_rep") != pl.col("_idx"))).sum().alias("near_duplicate_normalized"),
        ((pl.col("_norm_rep") == pl.col("_idx")) & is_dup).sum().alias("near_duplicate_fuzzy"),
    ).row(0, named=True)
    bad = frame.filter(pl.col("_reason").is_not_null())
    rejects = bad.select(
        pl.col("_file").alias("file"), pl.col("_row").alias("row"), pl.col("_reason").alias("reason"),
        pl.concat_str(pl.lit("same as "), frame.get_column("_file").gather(bad.get_column("_rep")).alias("f"),
                      pl.lit(" row "), frame.get_column("_row").gather(bad.get_column("_rep")).cast(pl.String)
                      ).alias("detail"),
        "input", "target",
    )
    helpers = ("_reason", "_idx", "_pair", "_first_exact", "_block", "_norm_rep", "_rep")
    kept = frame.filter(pl.col("_reason").is_null()).drop(*helpers)
    return kept, rejects, {k: int(v) for k, v in counts.items()}
