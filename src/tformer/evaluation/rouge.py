"""ROUGE for summaries, by Google's ``rouge-score`` package, and the lead baseline.

ROUGE-N (Lin, 2004) counts the n-grams a summary shares with its reference: with ``m`` the clipped count of shared
n-grams, precision = m / (n-grams of the summary), recall = m / (n-grams of the reference), F1 their harmonic mean;
ROUGE-L does the same with the longest common subsequence of words. :func:`rouge` reports ROUGE-1, ROUGE-2 and
ROUGE-L F1 (the sentence-level ``rougeL``, not ``rougeLsum``), times 100, averaged over the examples, as
``rouge_score.rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)`` computes them per
pair: lower-cased, every run of characters other than a-z and 0-9 a word boundary, Porter-stemmed. An empty summary
scores 0.

The **lead baseline** summarizes a text by its first sentence (:func:`lead`): the text up to and including the first
``.``, ``!`` or ``?`` that is followed by white space and an upper-case letter or a digit (so ``e.g. this`` and
``v2.0 adds`` do not end a sentence; ``Mr. Smith`` does), or the whole text when there is none. For news the lead
is the first three sentences (See et al., 2017); a synopsis is one line, so one sentence here.

``rouge-score`` is the ``summarization`` extra (``pip install 'tformer[summarization]'``); without it the metric
raises a one-line :class:`TformerError` saying so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from tformer.errors import TformerError

__all__ = ["ROUGE_KEYS", "lead", "lead_baseline", "rouge"]

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL")
_SENTENCE_END = re.compile(r"[.!?](?=\s+[A-Z0-9])")


def lead(text: str) -> str:
    """The first sentence of ``text`` (see the module docstring), stripped."""
    text = text.strip()
    end = _SENTENCE_END.search(text)
    return text if end is None else text[: end.end()]


def _scorer():
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        raise TformerError("ROUGE needs Google's rouge-score package: pip install 'tformer[summarization]'") from None
    return rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)


def rouge(summaries: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1, ROUGE-2 and ROUGE-L F1 (x 100) of ``summaries`` against ``references``, pair by pair.

    Returns:
        ``{"rouge1": ..., "rouge2": ..., "rougeL": ...}``.

    Raises:
        TformerError: the lists differ in length or are empty, or rouge-score is not installed (one line).
    """
    if len(summaries) != len(references):
        raise TformerError(f"rouge: {len(summaries)} summaries but {len(references)} references")
    if not summaries:
        raise TformerError("rouge: no summaries to score")
    scorer = _scorer()
    totals = dict.fromkeys(ROUGE_KEYS, 0.0)
    for summary, reference in zip(summaries, references, strict=True):
        scores = scorer.score(reference, summary)  # rouge-score takes (target, prediction)
        for key in ROUGE_KEYS:
            totals[key] += scores[key].fmeasure
    return {key: 100.0 * total / len(summaries) for key, total in totals.items()}


def lead_baseline(texts: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """The ROUGE of the lead baseline: each text's first sentence as its summary."""
    return rouge([lead(t) for t in texts], references)
