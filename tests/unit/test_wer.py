"""Word and character error rates against jiwer (the outside oracle): counts equal on many seeded random corpora,
the edge cases, and the alignment against a brute-force minimum edit distance."""

import itertools
import random

import pytest

from tformer.errors import TformerError
from tformer.evaluation import EditCounts, char_error_rate, edit_counts, word_error_rate
from tformer.evaluation.wer import align, characters, words

jiwer = pytest.importorskip("jiwer")

WORDS = ["one", "two", "three", "four", "five", "twenty", "hundred", "and"]


def _sentence(r: random.Random, vocab: list[str], longest: int) -> str:
    return " ".join(r.choice(vocab) for _ in range(r.randint(0, longest)))


def _corpus(seed: int) -> tuple[list[str], list[str]]:
    """Random reference/hypothesis pairs: a small vocabulary makes many ties between alignments of equal cost."""
    r = random.Random(seed)
    vocab = WORDS[: r.randint(1, len(WORDS))]
    n = r.randint(1, 4)
    refs = [_sentence(r, vocab, 20) for _ in range(n)]
    hyps = [_sentence(r, vocab, 20) for _ in range(n)]
    if not any(ref.split() for ref in refs):
        refs[0] = vocab[0]
    return refs, hyps


def _jiwer_counts(out) -> tuple[int, int, int, int]:
    return out.substitutions, out.deletions, out.insertions, out.hits


def _counts(c: EditCounts) -> tuple[int, int, int, int]:
    return c.substitutions, c.deletions, c.insertions, c.hits


@pytest.mark.parametrize("block", range(4))
def test_word_counts_and_rate_equal_jiwer(block):
    for seed in range(block * 150, (block + 1) * 150):
        refs, hyps = _corpus(seed)
        ours = edit_counts(refs, hyps)
        assert _counts(ours) == _jiwer_counts(jiwer.process_words(refs, hyps)), (refs, hyps)
        assert word_error_rate(refs, hyps) == pytest.approx(jiwer.wer(refs, hyps), abs=1e-12)


@pytest.mark.parametrize("block", range(2))
def test_char_counts_and_rate_equal_jiwer(block):
    for seed in range(block * 100, (block + 1) * 100):
        refs, hyps = _corpus(10_000 + seed)
        ours = edit_counts(refs, hyps, characters)
        assert _counts(ours) == _jiwer_counts(jiwer.process_characters(refs, hyps)), (refs, hyps)
        assert char_error_rate(refs, hyps) == pytest.approx(jiwer.cer(refs, hyps), abs=1e-12)


def test_long_character_strings_equal_jiwer():
    """Beyond one 64-bit block of rapidfuzz's bit-parallel alignment."""
    for seed in range(20):
        r = random.Random(seed)
        ref, hyp = ("".join(r.choice("ab c") for _ in range(r.randint(100, 300))) for _ in range(2))
        assert _counts(edit_counts([ref], [hyp], characters)) == _jiwer_counts(jiwer.process_characters(ref, hyp))


def _brute_force_distance(a: list[str], b: list[str]) -> int:
    """The edit distance by its recursive definition, without a table (exponential: tiny inputs only)."""
    if not a or not b:
        return len(a) + len(b)
    return min(_brute_force_distance(a[1:], b) + 1, _brute_force_distance(a, b[1:]) + 1,
               _brute_force_distance(a[1:], b[1:]) + (a[0] != b[0]))


def test_alignment_is_a_minimum_edit_alignment():
    """S + D + I is the edit distance; H + S + D and H + S + I are the two lengths."""
    for ref, hyp in itertools.product(["", "a", "a b", "b a a", "a b c a"], repeat=2):
        r, h = ref.split(), hyp.split()
        c = align(r, h)
        assert c.errors == _brute_force_distance(r, h)
        assert c.reference_length == len(r) and c.hits + c.substitutions + c.insertions == len(h)


def test_edge_cases_follow_jiwer():
    # an empty hypothesis: every reference word deleted
    assert _counts(edit_counts(["one two"], [""])) == (0, 2, 0, 0) == _jiwer_counts(jiwer.process_words("one two", ""))
    assert word_error_rate(["one two"], [""]) == 1.0
    # an empty reference sentence among others: its hypothesis words are insertions
    refs, hyps = ["", "one"], ["two three", "one"]
    assert _counts(edit_counts(refs, hyps)) == _jiwer_counts(jiwer.process_words(refs, hyps)) == (0, 0, 2, 1)
    assert word_error_rate(refs, hyps) == jiwer.wer(refs, hyps) == 2.0
    # extra spaces do not make words; characters keep the inner spaces of the stripped text
    assert words("  one   two ") == ["one", "two"]
    assert characters(" a b ") == ["a", " ", "b"]
    assert edit_counts(["one  two"], ["one two"]).errors == 0


def test_no_reference_words_is_an_error_not_a_rate():
    """jiwer returns the insertion count when the references hold no word at all; a rate is undefined: an error."""
    with pytest.raises(TformerError, match="undefined"):
        word_error_rate(["", " "], ["one", ""])
    with pytest.raises(TformerError, match="2 references but 1 hypotheses"):
        char_error_rate(["a", "b"], ["a"])
