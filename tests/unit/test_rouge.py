"""tformer.evaluation.rouge against ROUGE's definition worked out by hand (clipped n-gram counts, the longest common
subsequence, F1), by properties (identical = 100, disjoint = 0), and the lead baseline's sentence rule."""

import pytest

from tformer.errors import TformerError
from tformer.evaluation.rouge import lead, lead_baseline, rouge


def f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def test_identical_is_100_and_disjoint_is_0():
    assert rouge(["a fast frobnicator for widgets"], ["a fast frobnicator for widgets"]) == pytest.approx(
        {"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0})
    assert rouge(["green apples"], ["a fast frobnicator"]) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


def test_a_case_worked_by_hand():
    # reference: the quick brown fox jumps (5 words, 4 bigrams); summary: the brown fox runs (4 words, 3 bigrams)
    # shared unigrams: the, brown, fox (3); shared bigrams: "brown fox" (1); LCS: the brown fox (3)
    got = rouge(["the brown fox runs"], ["the quick brown fox jumps"])
    assert got["rouge1"] == pytest.approx(100 * f1(3 / 4, 3 / 5))  # 66.67
    assert got["rouge2"] == pytest.approx(100 * f1(1 / 3, 1 / 4))  # 28.57
    assert got["rougeL"] == pytest.approx(100 * f1(3 / 4, 3 / 5))


def test_counts_are_clipped_text_is_lowercased_and_stemmed_and_the_mean_is_over_pairs():
    # "the the the" against "the cat": one "the" matches (clipped): P = 1/3, R = 1/2
    assert rouge(["the the the"], ["the cat"])["rouge1"] == pytest.approx(100 * f1(1 / 3, 1 / 2))
    assert rouge(["Cats, DOGS!"], ["cat dog"])["rouge1"] == pytest.approx(100.0)  # Porter stems, case, punctuation
    assert rouge(["a b", "x"], ["a b", "y"])["rouge1"] == pytest.approx(50.0)
    assert rouge([""], ["a b"])["rouge1"] == 0.0


def test_bad_input_is_one_line():
    with pytest.raises(TformerError, match="2 summaries but 1 references"):
        rouge(["a", "b"], ["a"])
    with pytest.raises(TformerError, match="no summaries"):
        rouge([], [])


def test_lead_is_the_first_sentence():
    assert lead("Foo frobnicates widgets. It is fast.") == "Foo frobnicates widgets."
    assert lead("  Foo is fast! Really.") == "Foo is fast!"
    assert lead("It reads files, e.g. logs. Then it stops.") == "It reads files, e.g. logs."
    assert lead("Version 2.0 adds things. 3 more.") == "Version 2.0 adds things."
    assert lead("no sentence end here") == "no sentence end here"
    assert lead_baseline(["A b. C d."], ["a b"])["rouge1"] == pytest.approx(100.0)
