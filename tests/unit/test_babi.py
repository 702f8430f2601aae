"""The bAbI-style generator: answers checked by an independent reading of each story (regular expressions and a
dictionary of holders, not the generator's World), spans point at their answers, splits are seeded and disjoint."""

import json
import re

import pytest

from tformer.data.babi import ANSWER_WORDS, SPLITS, TASKS, BabiConfig, build, generate_split, main, read_split
from tformer.errors import TformerError

SMALL = BabiConfig(seed=3, train_questions=60, eval_questions=20, test_questions=20, long_questions=5)
MOVE = re.compile(r"^(\w+) (?:went|journeyed|travelled|moved) to the (\w+)\.$")
TAKE = re.compile(r"^(\w+) (?:picked up|grabbed|got) the (\w+)\.$")
DROP = re.compile(r"^(\w+) (?:dropped|put down|left) the (\w+)\.$")


def read_story(story):
    """Where each person is, who holds each object, where each dropped object lies."""
    where, holder, lying = {}, {}, {}
    for sentence in story:
        if m := MOVE.match(sentence):
            where[m[1]] = m[2]
        elif m := TAKE.match(sentence):
            assert m[2] not in holder and m[1] in where, sentence  # only free objects, by someone somewhere
            holder[m[2]] = m[1]
            lying.pop(m[2], None)
        elif m := DROP.match(sentence):
            assert holder.get(m[2]) == m[1], sentence
            del holder[m[2]]
            lying[m[2]] = where[m[1]]
        else:
            raise AssertionError(f"unknown sentence {sentence!r}")
    return where, holder, lying


def expected_answer(q):
    where, holder, lying = read_story(q.story)
    if m := re.fullmatch(r"Where is (\w+)\?", q.question):
        return where[m[1]]
    if m := re.fullmatch(r"Where is the (\w+)\?", q.question):
        return where[holder[m[1]]] if m[1] in holder else lying[m[1]]
    if m := re.fullmatch(r"Is (\w+) in the (\w+)\?", q.question):
        return "yes" if where[m[1]] == m[2] else "no"
    if m := re.fullmatch(r"How many objects is (\w+) carrying\?", q.question):
        return ("none", "one", "two", "three")[sum(h == m[1] for h in holder.values())]
    raise AssertionError(q.question)


@pytest.fixture(scope="module")
def splits():
    seen = set()
    return {split: generate_split(SMALL, split, seen) for split in SPLITS}


def test_every_answer_is_what_the_story_says(splits):
    for questions in splits.values():
        for q in questions:
            assert q.answer == expected_answer(q), (q.story, q.question)


def test_answers_are_spans_of_the_context_in_a_supporting_sentence(splits):
    for questions in splits.values():
        for q in questions:
            assert q.context == " ".join([ANSWER_WORDS, *q.story])
            assert q.context[q.answer_start : q.answer_start + len(q.answer)] == q.answer
            assert q.answer_start == 0 or q.context[q.answer_start - 1] == " "
            if q.task in (1, 2):  # the location word of a supporting sentence, after the answer words
                assert q.answer_start > len(ANSWER_WORDS)
                sentence = next(s for i, s in enumerate(q.story) if i == max(q.supporting))
                assert sentence.endswith(f" {q.answer}.") or any(q.story[i].endswith(f" {q.answer}.")
                                                                for i in q.supporting)
            else:
                assert q.answer_start < len(ANSWER_WORDS)


def test_supporting_facts_are_one_for_task_1_and_two_for_task_2(splits):
    for q in splits["train"]:
        if q.task in (1, 6):
            assert len(q.supporting) == 1 and MOVE.match(q.story[q.supporting[0]])
        if q.task == 2:
            assert len(q.supporting) == 2


def test_sizes_balance_and_lengths(splits):
    assert [sum(q.task == t for q in splits["train"]) for t in TASKS] == [60] * len(TASKS)
    assert all(2 <= len(q.story) <= 12 for q in splits["test"])
    assert all(30 <= len(q.story) <= 60 for q in splits["test_long"])
    yes_no = [q.answer for q in splits["train"] if q.task == 6]
    assert 0.3 < yes_no.count("yes") / len(yes_no) < 0.7
    assert len({q.answer for q in splits["train"] if q.task == 7}) >= 3
    assert len({q.answer for q in splits["train"] if q.task == 1}) >= 5


def test_seeded_and_disjoint(splits):
    again = generate_split(SMALL, "test")
    assert [q.question for q in again] == [q.question for q in splits["test"]]
    assert [q.story for q in generate_split(BabiConfig(seed=4, train_questions=60), "train")] != \
        [q.story for q in splits["train"]]
    keys = {split: {(tuple(q.story), q.question) for q in qs} for split, qs in splits.items()}
    assert all(not (keys[a] & keys[b]) for a in SPLITS for b in SPLITS if a < b)


def test_build_writes_the_splits_and_reads_back(tmp_path, capsys):
    root = tmp_path / "babi"
    assert main(["build", str(root), "--seed", "2", "--train-questions", "5"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["questions"]["train"] == {str(t): 5 for t in TASKS}
    back = read_split(root, "train")
    assert len(back) == 5 * len(TASKS) and back[0].context.startswith(ANSWER_WORDS)
    assert "settings" in (root / "README.txt").read_text()
    with pytest.raises(TformerError, match="./dev data babi"):
        read_split(tmp_path / "nowhere", "train")
    assert build(root, BabiConfig(seed=2, train_questions=5, eval_questions=2, test_questions=2,
                                  long_questions=1))["valid"] == \
        {t: 2 for t in TASKS}


def test_bad_settings_are_one_line_errors():
    with pytest.raises(TformerError, match="unknown bAbI task"):
        BabiConfig(tasks=(3,))
    with pytest.raises(TformerError, match="1 <= min <= max"):
        BabiConfig(min_sentences=5, max_sentences=4)
