"""Lexical metrics against values computed by hand, in English and Russian."""

from __future__ import annotations

import math

import pytest
import sacrebleu

from medscribe.evaluate.metrics import compute_lexical, normalize_text, token_f1, word_tokens


def lex(pred: str, ref: str, families: set[str]):
    return compute_lexical([pred], [ref], families)


def test_normalize_and_tokens_are_unicode():
    assert normalize_text("  Киста  ПЕЧЕНИ. ") == "киста печени"
    assert normalize_text("ﬁbrosis, liver!") == "fibrosis liver"  # NFKC folds the ligature
    assert word_tokens("Киста печени, 12 мм.") == ["киста", "печени", "12", "мм"]


def test_exact_match_normalized():
    result = compute_lexical(["Киста печени.", "liver cyst", "cyst"], ["киста  печени", "Liver cyst!", "liver cyst"],
                             {"exact_match"})
    assert result.per_row["exact_match"].tolist() == [1.0, 1.0, 0.0]


def test_token_f1_by_hand():
    # P = 2/3, R = 1 -> F1 = 0.8, same in both languages
    assert token_f1("liver cyst small", "liver cyst") == pytest.approx(0.8)
    assert token_f1("киста печени слева", "Киста печени") == pytest.approx(0.8)
    assert token_f1("", "") == 1.0
    assert token_f1("cyst", "") == 0.0


def test_bleu_by_hand():
    # 1..4-gram precisions 5/6, 3/5, 2/4, 1/3, equal lengths (BP = 1): BLEU = (5/6*3/5*1/2*1/3) ** 0.25
    expected = (5 / 6 * 3 / 5 * 1 / 2 * 1 / 3) ** 0.25
    result = lex("the cat sat on the mat", "the cat sat on a mat", {"bleu"})
    assert result.corpus["bleu"] == pytest.approx(expected, abs=1e-6)
    assert result.per_row["bleu"][0] == pytest.approx(expected, abs=1e-6)
    assert "tok:13a" in result.signatures["bleu"]


def test_bleu_russian_and_corpus_matches_sacrebleu():
    preds = ["киста печени размером 12 мм", "очаговых изменений не выявлено", "конкремент левой почки"]
    refs = ["киста печени 12 мм", "очаговых изменений не выявлено", "конкремент правой почки 5 мм"]
    result = compute_lexical(preds, refs, {"bleu", "chrf"})
    assert result.corpus["bleu"] == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score / 100)
    assert result.corpus["chrf"] == pytest.approx(sacrebleu.corpus_chrf(preds, [refs]).score / 100)
    for i, (p, r) in enumerate(zip(preds, refs, strict=False)):
        assert result.per_row["bleu"][i] == pytest.approx(sacrebleu.sentence_bleu(p, [r]).score / 100)
        assert result.per_row["chrf"][i] == pytest.approx(sacrebleu.sentence_chrf(p, [r]).score / 100)
    assert result.per_row["bleu"][1] == pytest.approx(1.0)
    assert 0 < result.corpus["bleu"] < 1


def test_chrf_identity_and_disjoint():
    result = compute_lexical(["киста печени", "abc"], ["киста печени", "xyz"], {"chrf"})
    assert result.per_row["chrf"].tolist() == pytest.approx([1.0, 0.0])


def test_rouge_russian_not_zero_by_hand():
    # unigrams: 2 shared of 3 / 2 -> P 2/3, R 1, F 0.8; no shared bigram; LCS = 2 -> 0.8
    result = lex("киста правой печени", "киста печени", {"rouge"})
    assert result.per_row["rouge1"][0] == pytest.approx(0.8)
    assert result.per_row["rouge2"][0] == pytest.approx(0.0)
    assert result.per_row["rougeL"][0] == pytest.approx(0.8)
    english = lex("the liver cyst", "liver cyst", {"rouge"})
    assert english.per_row["rouge2"][0] == pytest.approx(2 * 0.5 * 1 / 1.5)  # 1 of 2 bigrams, 1 of 1


def test_meteor_exact_by_hand():
    result = lex("киста печени справа", "киста печени", {"meteor"})
    name = "meteor_exact" if "meteor_exact" in result.per_row else "meteor"
    # m = 2, P = 2/3, R = 1: Fmean = P*R / (0.9 P + 0.1 R) = 20/21; one chunk: penalty 0.5 * (1/2)^3
    expected = (2 / 3) / (0.9 * 2 / 3 + 0.1) * (1 - 0.5 * 0.5**3)
    assert result.per_row[name][0] == pytest.approx(expected)
    same = lex("a b c", "a b c", {"meteor"})
    assert same.per_row[name][0] == pytest.approx(1 - 0.5 / 27)
    assert name in result.variants


def test_meteor_variant_is_labelled_offline():
    import nltk

    try:
        nltk.data.find("corpora/wordnet.zip")
        pytest.skip("WordNet installed locally: the full METEOR runs")
    except LookupError:
        pass
    result = lex("liver cyst", "liver cyst", {"meteor"})
    assert "meteor_exact" in result.per_row and "meteor" not in result.per_row
    assert "exact" in result.variants["meteor_exact"]


def test_edit_similarity_by_hand():
    result = compute_lexical(["kitten", "кот", ""], ["sitting", "Кит", ""], {"edit_similarity"})
    assert result.per_row["edit_similarity"].tolist() == pytest.approx([1 - 3 / 7, 1 - 1 / 3, 1.0])


def test_all_families_shapes():
    result = compute_lexical(["a b", "c"], ["a b", "d"])
    for values in result.per_row.values():
        assert values.shape == (2,)
        assert all(0.0 <= v <= 1.0 for v in values if not math.isnan(v))
    assert set(result.corpus) == {"bleu", "chrf"}


def test_bertscore_equals_its_definition_in_english_and_russian(minilm):
    """BERTScore computed here by hand with transformers: greedy cosine matching of layer-6 token embeddings,
    averaged over the tokens of one side without [CLS]/[SEP] (bert-score gives them idf weight 0 but keeps
    them as match targets). The wrapper must give the same P, R, F1: no rescaling, no idf."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from medscribe.evaluate.semantic import bertscore

    pairs = [("a small cyst in the liver", "simple hepatic cyst"), ("киста печени 12 мм", "простая киста печени")]
    p, r, f, _ = bertscore([c for c, _ in pairs], [ref for _, ref in pairs], minilm, num_layers=6, device="cpu")
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    model = AutoModel.from_pretrained(minilm).eval()

    def token_vectors(text: str) -> torch.Tensor:
        encoded = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**encoded, output_hidden_states=True).hidden_states[6][0]
        return hidden / hidden.norm(dim=-1, keepdim=True)

    for i, (candidate, reference) in enumerate(pairs):
        sim = token_vectors(candidate) @ token_vectors(reference).T
        precision = sim[1:-1].max(dim=1).values.mean().item()  # each candidate word: its best reference token
        recall = sim[:, 1:-1].max(dim=0).values.mean().item()
        assert p[i] == pytest.approx(precision, abs=1e-4) and r[i] == pytest.approx(recall, abs=1e-4)
        assert f[i] == pytest.approx(2 * precision * recall / (precision + recall), abs=1e-4)
