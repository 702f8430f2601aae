"""Tests of the demo task: number words are checked against facts written by hand."""

import re

import pytest

from tformer.data.corpus import read_parallel
from tformer.data.synthetic import english_words, german_words, make_number_task, write_parallel

ENGLISH = {
    0: "zero",
    1: "one",
    7: "seven",
    11: "eleven",
    12: "twelve",
    13: "thirteen",
    15: "fifteen",
    18: "eighteen",
    20: "twenty",
    21: "twenty-one",
    40: "forty",
    58: "fifty-eight",
    99: "ninety-nine",
    100: "one hundred",
    105: "one hundred five",
    110: "one hundred ten",
    321: "three hundred twenty-one",
    1000: "one thousand",
    1001: "one thousand one",
    2020: "two thousand twenty",
    12345: "twelve thousand three hundred forty-five",
    40000: "forty thousand",
    100000: "one hundred thousand",
    101101: "one hundred one thousand one hundred one",
    999999: "nine hundred ninety-nine thousand nine hundred ninety-nine",
}

GERMAN = {
    0: "null",
    1: "eins",
    2: "zwei",
    6: "sechs",
    7: "sieben",
    11: "elf",
    12: "zwölf",
    13: "dreizehn",
    16: "sechzehn",
    17: "siebzehn",
    20: "zwanzig",
    21: "einundzwanzig",
    30: "dreißig",
    31: "einunddreißig",
    60: "sechzig",
    66: "sechsundsechzig",
    70: "siebzig",
    77: "siebenundsiebzig",
    99: "neunundneunzig",
    100: "einhundert",
    101: "einhunderteins",
    111: "einhundertelf",
    200: "zweihundert",
    321: "dreihunderteinundzwanzig",
    1000: "eintausend",
    1001: "eintausendeins",
    2001: "zweitausendeins",
    17017: "siebzehntausendsiebzehn",
    21000: "einundzwanzigtausend",
    100000: "einhunderttausend",
    101101: "einhunderteintausendeinhunderteins",
    600000: "sechshunderttausend",
    999999: "neunhundertneunundneunzigtausendneunhundertneunundneunzig",
}

UNITS_AND_TENS = re.compile(r"und(zwanzig|dreißig|vierzig|fünfzig|sechzig|siebzig|achtzig|neunzig)$")


@pytest.mark.parametrize(("n", "words"), sorted(ENGLISH.items()))
def test_english_words_known_values(n, words):
    assert english_words(n) == words


@pytest.mark.parametrize(("n", "word"), sorted(GERMAN.items()))
def test_german_words_known_values(n, word):
    assert german_words(n) == word


def test_number_word_structure_below_1000():
    for n in range(1000):
        en, de = english_words(n), german_words(n)
        assert " " not in de and "-" not in de
        tens, units = divmod(n % 100, 10)
        assert ("-" in en) == (tens >= 2 and units > 0)
        assert bool(UNITS_AND_TENS.search(de)) == (tens >= 2 and units > 0)
        assert de.endswith("eins") == (n % 100 == 1)  # a final 1 is "eins", never "ein"
        assert "and" not in en.split()


@pytest.mark.parametrize("n", [-1, 1_000_000])
def test_number_words_reject_out_of_range(n):
    with pytest.raises(ValueError, match="0..999999"):
        english_words(n)
    with pytest.raises(ValueError, match="0..999999"):
        german_words(n)


def test_make_number_task_sizes_and_disjoint_splits():
    splits = make_number_task(300, 50, 40, seed=3)
    assert {name: len(pairs) for name, pairs in splits.items()} == {"train": 300, "valid": 50, "test": 40}
    seen = [en for pairs in splits.values() for en, _ in pairs]
    assert len(set(seen)) == len(seen)  # no number twice, within or across splits


def test_make_number_task_pairs_are_translations():
    by_english = {english_words(n): n for n in range(1000)}
    splits = make_number_task(500, 100, 100, max_number=999, seed=1)
    for pairs in splits.values():
        for en, de in pairs:
            assert de == german_words(by_english[en])


def test_make_number_task_is_seeded():
    assert make_number_task(20, 5, 5, seed=7) == make_number_task(20, 5, 5, seed=7)
    assert make_number_task(20, 5, 5, seed=7) != make_number_task(20, 5, 5, seed=8)


def test_make_number_task_can_use_every_number():
    splits = make_number_task(8, 1, 1, max_number=9)
    assert sorted(en for pairs in splits.values() for en, _ in pairs) == sorted(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    )
    with pytest.raises(ValueError, match="distinct numbers"):
        make_number_task(9, 1, 1, max_number=9)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_write_parallel_round_trips(tmp_path, suffix):
    pairs = make_number_task(30, 0, 0, seed=2)["train"]
    src, tgt = tmp_path / "out" / f"train.en{suffix}", tmp_path / "out" / f"train.de{suffix}"
    write_parallel(pairs, src, tgt)
    assert read_parallel(src, tgt) == pairs
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([src.name, tgt.name])  # no temp left


def test_write_parallel_rejects_line_breaks(tmp_path):
    with pytest.raises(ValueError, match="line break"):
        write_parallel([("a\nb", "c")], tmp_path / "s", tmp_path / "t")
    assert not (tmp_path / "s").exists()


def test_balanced_digits_covers_every_magnitude_without_repeats():
    splits = make_number_task(3000, 200, 200, seed=5, balanced_digits=True)
    english = [e for pairs in splits.values() for e, _ in pairs]
    assert len(set(english)) == 3400
    one_digit = {english_words(n) for n in range(10)}
    two_digits = {english_words(n) for n in range(10, 100)}
    # 1- and 2-digit numbers are used up (100 of them); the rest is spread over 3..6 digits.
    assert one_digit | two_digits <= set(english)
    below_1000 = {english_words(n) for n in range(1000)}
    share = sum(e in below_1000 for e in english) / len(english)
    assert 0.2 < share < 0.45  # uniform draws would give about 0.1%
    assert make_number_task(50, 5, 5, seed=2, balanced_digits=True) == make_number_task(
        50, 5, 5, seed=2, balanced_digits=True)


def test_the_names_task_carries_each_name_through_and_tests_only_unseen_names():
    from tformer.data.synthetic import make_names_task

    task = make_names_task(300, 40, 50, seed=3, train_names=30)
    name = lambda pair: pair[0].rsplit(" for ", 1)[1]  # noqa: E731
    for split in task.values():
        for en, de in split:
            assert de.endswith(" für " + en.rsplit(" for ", 1)[1])  # the name passes through unchanged
    train = {name(p) for p in task["train"]}
    held_out = [name(p) for p in task["valid"] + task["test"]]
    assert len(train) <= 30 and len(set(held_out)) == len(held_out) == 90 and not train & set(held_out)
    assert make_names_task(300, 40, 50, seed=3, train_names=30) == task  # the seed fixes it
