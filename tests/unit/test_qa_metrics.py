"""SQuAD v1.1's EM and F1: known cases worked by hand from the official script's definitions, and properties."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tformer.errors import TformerError
from tformer.evaluation.qa import exact_match, f1, normalize_answer, qa_scores


@pytest.mark.parametrize("text, normalised", [
    ("The  Eiffel Tower!", "eiffel tower"),
    ("don't", "dont"),  # punctuation is deleted, not replaced by a space
    ("a-b", "ab"),
    ("An apple, a day", "apple day"),
    ("theatre", "theatre"),  # articles only as whole words
    ("Anne and the THE", "anne and"),
    ("50 °C — hot", "50 °c — hot"),  # non-ASCII punctuation stays, as in the script
    ("  ", ""),
])
def test_normalisation(text, normalised):
    assert normalize_answer(text) == normalised


@pytest.mark.parametrize("prediction, answers, em, f", [
    ("Cat.", ["the cat"], 1.0, 1.0),
    ("the cat sat", ["a cat sat down"], 0.0, 0.8),  # P = 2/2, R = 2/3
    ("x x y", ["x y y"], 0.0, 2 / 3),  # multiset intersection {x, y}: P = R = 2/3
    ("x x x", ["x"], 0.0, 0.5),  # P = 1/3, R = 1
    ("kitchen", ["garden", "the kitchen"], 1.0, 1.0),  # the best answer counts
    ("red house", ["house red"], 0.0, 1.0),  # F1 ignores order
    ("", ["garden"], 0.0, 0.0),
    ("", [""], 1.0, 0.0),  # v1.1: no shared token, F1 0
    ("a the", ["an"], 1.0, 0.0),
])
def test_known_cases(prediction, answers, em, f):
    assert exact_match(prediction, answers) == em
    assert f1(prediction, answers) == pytest.approx(f, abs=1e-12)


def test_corpus_scores_are_means_over_questions():
    scores = qa_scores(["Cat.", "the cat sat", "dog"], [["the cat"], ["a cat sat down"], "kitchen"])
    assert scores["exact_match"] == pytest.approx(1 / 3)
    assert scores["f1"] == pytest.approx((1.0 + 0.8 + 0.0) / 3)
    assert scores["questions"] == 3
    with pytest.raises(TformerError, match="2 predictions for 1 questions"):
        qa_scores(["a", "b"], [["a"]])
    with pytest.raises(TformerError, match="at least one gold answer"):
        qa_scores(["a"], [[]])


words = st.lists(st.sampled_from(["cat", "sat", "the", "mat", "on", "a", "Mat."]), max_size=6).map(" ".join)


@given(words, words)
def test_f1_is_symmetric_bounded_and_one_on_an_exact_match(a, b):
    assert f1(a, [b]) == pytest.approx(f1(b, [a]))
    assert 0.0 <= f1(a, [b]) <= 1.0
    if exact_match(a, [b]) and normalize_answer(a):
        assert f1(a, [b]) == 1.0
