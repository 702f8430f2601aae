"""Extractive question answering's scores, as the official SQuAD v1.1 evaluation script computes them (Rajpurkar
et al., 2016, "SQuAD: 100,000+ questions for machine comprehension of text"):

    normalise(s)  lower case, delete ASCII punctuation (``string.punctuation``), replace the articles "a", "an",
                  "the" (whole words) by a space, collapse white space
    EM            1 if normalise(prediction) == normalise(answer), else 0
    F1            over the normalised tokens: with c the size of the multiset intersection of the prediction's and
                  the answer's tokens, P = c / |prediction|, R = c / |answer|, F1 = 2PR / (P + R) (0 when c = 0)

Each is the maximum over a question's gold answers, then the mean over the questions. The script reports them
times 100; here they stay in [0, 1]. As in v1.1 (unlike v2.0's script), an empty prediction scores 0 F1 against
any answer, including an empty one; non-ASCII punctuation is kept.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from tformer.errors import TformerError

__all__ = ["exact_match", "f1", "normalize_answer", "qa_scores"]

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _f1(prediction: str, answer: str) -> float:
    pred, gold = normalize_answer(prediction).split(), normalize_answer(answer).split()
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 if the prediction equals one of the answers after normalisation, else 0.0."""
    return float(any(normalize_answer(prediction) == normalize_answer(a) for a in _answers(answers)))


def f1(prediction: str, answers: Sequence[str]) -> float:
    """The best token F1 of the prediction against the answers."""
    return max(_f1(prediction, a) for a in _answers(answers))


def qa_scores(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """{"exact_match", "f1", "questions"}: the means over the questions (each prediction against its answers)."""
    if len(predictions) != len(answers):
        raise TformerError(f"got {len(predictions)} predictions for {len(answers)} questions")
    if not predictions:
        raise TformerError("no questions to score")
    em = sum(exact_match(p, a) for p, a in zip(predictions, answers, strict=True))
    f = sum(f1(p, a) for p, a in zip(predictions, answers, strict=True))
    return {"exact_match": em / len(predictions), "f1": f / len(predictions), "questions": len(predictions)}


def _answers(answers: Sequence[str]) -> Sequence[str]:
    if isinstance(answers, str):  # one answer given as a string, not a list of characters
        return [answers]
    if not answers:
        raise TformerError("a question needs at least one gold answer")
    return answers
