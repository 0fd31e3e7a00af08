"""Lexical metrics, per row and for the corpus: exact match, token F1, BLEU, chrF, ROUGE-1/2/L, METEOR, edit
similarity. Everything works on Unicode text (Russian included) and runs over all pairs in one call.

    from medscribe.evaluate.metrics import compute_lexical
    lex = compute_lexical(predictions, references, families={"bleu", "rouge"})
    lex.per_row["rougeL"]      # numpy array, one value per pair, 0..1
    lex.corpus["bleu"]         # corpus-level BLEU, 0..1 (sacrebleu's score / 100)

All scores are on a 0..1 scale, BLEU and chrF included, so tables, bootstraps and gates treat every metric alike.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

WORD_RE = re.compile(r"\w+")
_SPACE_RE = re.compile(r"\s+")

LEXICAL_FAMILIES = ("exact_match", "token_f1", "bleu", "chrf", "rouge", "meteor", "edit_similarity")


_PUNCTUATION: dict[str, bool] = {}  # character -> is Unicode punctuation (category P*), filled on first sight


@lru_cache(maxsize=4096)  # retrieved answers recur across rows (stock conclusions, popular neighbours)
def normalize_text(text: str) -> str:
    """NFKC, casefold, punctuation -> space, collapsed whitespace: the form exact match compares.

    Works per distinct character (a text has ~100), not per character: a Python test per character made this
    most of the time sft spends building MedQuAD-size prompts (58 s of 149 for 14k rows)."""
    text = unicodedata.normalize("NFKC", text or "").casefold()
    for ch in set(text):
        punct = _PUNCTUATION.get(ch)
        if punct is None:
            punct = _PUNCTUATION[ch] = unicodedata.category(ch).startswith("P")
        if punct:
            text = text.replace(ch, " ")
    return " ".join(text.split())


def word_tokens(text: str) -> list[str]:
    """Unicode word tokens, lowercased (casefold) after NFKC: 'Киста печени, 12 мм.' -> [киста, печени, 12, мм]."""
    return WORD_RE.findall(unicodedata.normalize("NFKC", text or "").casefold())


class UnicodeTokenizer:
    """rouge-score tokenizer: its default keeps only ASCII [a-z0-9], which scores every Russian pair 0.
    No stemming: the Porter stemmer is English-only and would treat the two languages differently."""

    def tokenize(self, text: str) -> list[str]:
        return word_tokens(text)


def token_f1(prediction: str, reference: str) -> float:
    pred, ref = word_tokens(prediction), word_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


class _NoSynonyms:
    """Stands in for nltk's WordNet when no local copy exists: METEOR then matches exact tokens only."""

    def synsets(self, *args, **kwargs):
        return []


class _IdentityStemmer:
    def stem(self, word: str) -> str:
        return word


def meteor_variant() -> tuple[str, Callable[[list[str], list[str]], float]]:
    """('meteor', fn) with nltk's WordNet when a local copy is installed, else ('meteor_exact', fn).

    nltk downloads WordNet at run time, which is impossible offline, and PyPI has no package shipping it in a
    form nltk reads; so the exact-match variant is named differently and never passes for the full metric.
    """
    import nltk
    from nltk.translate.meteor_score import single_meteor_score

    try:
        nltk.data.find("corpora/wordnet.zip")
        has_wordnet = True
    except LookupError:
        try:
            nltk.data.find("corpora/wordnet")
            has_wordnet = True
        except LookupError:
            has_wordnet = False
    if has_wordnet:
        from nltk.corpus import wordnet
        from nltk.stem.porter import PorterStemmer

        stemmer = PorterStemmer()
        return "meteor", lambda ref, hyp: single_meteor_score(ref, hyp, stemmer=stemmer, wordnet=wordnet)
    no_syn, identity = _NoSynonyms(), _IdentityStemmer()
    return "meteor_exact", lambda ref, hyp: single_meteor_score(ref, hyp, stemmer=identity, wordnet=no_syn)


@dataclass
class LexicalResult:
    """Per-row arrays (0..1), corpus-level scores, and what the bootstrap needs to recompute corpus scores."""

    per_row: dict[str, np.ndarray] = field(default_factory=dict)
    corpus: dict[str, float] = field(default_factory=dict)
    # Per-row sufficient statistics (n x k) and a function turning summed statistics into a 0..1 score:
    # corpus BLEU/chrF of any resample or group is score_from_stats(stats[rows].sum(0)).
    corpus_stats: dict[str, np.ndarray] = field(default_factory=dict)
    score_from_stats: dict[str, Callable[[np.ndarray], float]] = field(default_factory=dict)
    signatures: dict[str, str] = field(default_factory=dict)
    variants: dict[str, str] = field(default_factory=dict)


def _sacrebleu_metric(lex: LexicalResult, name: str, corpus_metric, sentence_metric, preds, refs) -> None:
    # One pass extracts per-sentence statistics; corpus and sentence scores are both computed from them
    # (sacrebleu's own bootstrap works the same way), so nothing is tokenized twice.
    stats = corpus_metric._extract_corpus_statistics(list(preds), [list(refs)])
    arr = np.asarray(stats, dtype=np.float64)
    lex.corpus_stats[name] = arr
    # min(1, .): sacrebleu's exp(log) round trip gives 100.00000000000004 for a perfect match.
    lex.score_from_stats[name] = lambda s, m=corpus_metric: min(1.0, m._compute_score_from_stats(s).score / 100.0)
    lex.corpus[name] = lex.score_from_stats[name](arr.sum(axis=0))
    lex.per_row[name] = np.array(
        [min(1.0, sentence_metric._compute_score_from_stats(row).score / 100.0) for row in stats], dtype=np.float64
    )
    lex.signatures[name] = str(corpus_metric.get_signature())


def compute_lexical(
    predictions: Sequence[str],
    references: Sequence[str],
    families: set[str] | None = None,
    bleu_tokenize: str = "13a",
    on_step: Callable[[str], None] | None = None,
) -> LexicalResult:
    """All requested lexical metric families over aligned prediction/reference lists."""
    families = set(LEXICAL_FAMILIES) if families is None else families & set(LEXICAL_FAMILIES)
    preds = [p or "" for p in predictions]
    refs = [r or "" for r in references]
    lex = LexicalResult()
    step = on_step or (lambda _name: None)

    if "exact_match" in families:
        lex.per_row["exact_match"] = np.array(
            [float(normalize_text(p) == normalize_text(r)) for p, r in zip(preds, refs, strict=False)], dtype=np.float64
        )
        step("exact_match")
    if "token_f1" in families:
        lex.per_row["token_f1"] = np.array(
            [token_f1(p, r) for p, r in zip(preds, refs, strict=True)], dtype=np.float64
        )
        step("token_f1")
    if "bleu" in families:
        from sacrebleu.metrics import BLEU

        corpus, sentence = BLEU(tokenize=bleu_tokenize), BLEU(tokenize=bleu_tokenize, effective_order=True)
        _sacrebleu_metric(lex, "bleu", corpus, sentence, preds, refs)
        step("bleu")
    if "chrf" in families:
        from sacrebleu.metrics import CHRF

        chrf = CHRF()
        _sacrebleu_metric(lex, "chrf", chrf, chrf, preds, refs)
        step("chrf")
    if "rouge" in families:
        from rouge_score.rouge_scorer import RougeScorer

        scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False, tokenizer=UnicodeTokenizer())
        scores = [scorer.score(r, p) for p, r in zip(preds, refs, strict=False)]
        for key in ("rouge1", "rouge2", "rougeL"):
            lex.per_row[key] = np.array([s[key].fmeasure for s in scores], dtype=np.float64)
        lex.variants["rouge"] = "rouge-score F-measure, Unicode word tokenizer, no stemming"
        step("rouge")
    if "meteor" in families:
        name, meteor = meteor_variant()
        values = []
        for p, r in zip(preds, refs, strict=False):
            hyp, ref = word_tokens(p), word_tokens(r)
            values.append(float(hyp == ref) if not hyp or not ref else meteor(ref, hyp))
        lex.per_row[name] = np.array(values, dtype=np.float64)
        lex.variants[name] = (
            "nltk METEOR with WordNet synonyms and Porter stems"
            if name == "meteor"
            else "nltk METEOR, exact token matches only (no WordNet available offline, no stemming)"
        )
        step("meteor")
    if "edit_similarity" in families:
        from rapidfuzz import process
        from rapidfuzz.distance import Levenshtein

        light = [_SPACE_RE.sub(" ", unicodedata.normalize("NFKC", t).casefold()).strip() for t in preds + refs]
        lex.per_row["edit_similarity"] = np.asarray(
            process.cpdist(light[: len(preds)], light[len(preds) :], scorer=Levenshtein.normalized_similarity),
            dtype=np.float64,
        )
        step("edit_similarity")
    return lex
