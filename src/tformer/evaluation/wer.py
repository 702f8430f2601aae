"""Word and character error rates: the Levenshtein alignment of each hypothesis with its reference, counted over
a whole corpus.

    WER = (S + D + I) / N          N = H + S + D, the reference words of the whole corpus

S substitutions, D deletions (reference units missing from the hypothesis), I insertions (hypothesis units not in
the reference) and H hits are summed over the sentences of one minimum-edit alignment each; the rate is corpus-level
(total edits / total reference units, as ``jiwer`` computes it), not a mean of sentence rates. CER is the same over
characters. In grapheme-to-phoneme conversion (one word a line, its phonemes separated by spaces) the same
counts over phonemes are the phoneme error rate (PER), and the "word error rate" of that field is
:func:`sequence_error_rate`: the share of lines (words) whose phonemes are not exactly the reference's.

The numbers are ``jiwer``'s (tested equal, counts included, on random sentence pairs):

* words: whitespace-separated tokens (``str.split()``; jiwer collapses runs of spaces and splits on " ");
  characters: every character of the stripped string, spaces between words included;
* among alignments of equal cost, the one ``rapidfuzz.distance.Levenshtein.opcodes`` (jiwer's engine) picks:
  common prefix and suffix matched, then a backtrace from the end that prefers a deletion, then an insertion,
  then the diagonal (:func:`align`). The total S + D + I is the edit distance whichever alignment is chosen;
  the split between S, D and I, and so H, depends on this rule;
* an empty reference sentence is allowed (its hypothesis units are insertions); a corpus whose references hold no
  unit at all has no rate (jiwer returns the insertion count there): :class:`TformerError`.

Shape legend: m reference units, n hypothesis units of one sentence.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from tformer.errors import TformerError

__all__ = ["EditCounts", "align", "char_error_rate", "edit_counts", "sequence_error_rate", "word_error_rate", "words",
           "characters"]


@dataclass(frozen=True)
class EditCounts:
    """Edit operations of a corpus (or one sentence) against its references.

    Attributes:
        substitutions, deletions, insertions, hits: summed over the sentences' alignments.
    """

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    hits: int = 0

    @property
    def errors(self) -> int:
        """S + D + I: the summed edit distances."""
        return self.substitutions + self.deletions + self.insertions

    @property
    def reference_length(self) -> int:
        """N = H + S + D: the reference units."""
        return self.hits + self.substitutions + self.deletions

    @property
    def error_rate(self) -> float:
        """(S + D + I) / N; a :class:`TformerError` when N is 0 (the rate is undefined)."""
        if self.reference_length == 0:
            raise TformerError("the error rate is undefined: the references hold no words (or characters) at all")
        return self.errors / self.reference_length

    def __add__(self, other: EditCounts) -> EditCounts:
        return EditCounts(self.substitutions + other.substitutions, self.deletions + other.deletions,
                          self.insertions + other.insertions, self.hits + other.hits)


def words(text: str) -> list[str]:
    """The words of ``text``: its whitespace-separated tokens."""
    return text.split()


def characters(text: str) -> list[str]:
    """The characters of ``text`` stripped of leading and trailing whitespace (inner spaces count, as jiwer's)."""
    return list(text.strip())


def _distances(ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> list[list[int]]:
    """D (m+1, n+1): D[i][j] = the edit distance of ref[:i] and hyp[:j] (unit costs)."""
    d = [list(range(len(hyp) + 1))]
    for i in range(1, len(ref) + 1):
        row = [i] + [0] * len(hyp)
        prev = d[-1]
        for j in range(1, len(hyp) + 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ref[i - 1] != hyp[j - 1]))
        d.append(row)
    return d


def align(reference: Sequence[Hashable], hypothesis: Sequence[Hashable]) -> EditCounts:
    """One minimum-edit alignment of two unit sequences, counted; ties broken as rapidfuzz's ``editops`` does.

    The common prefix and suffix are hits. On the rest, the backtrace from (m, n) takes a deletion of ref[i-1]
    when D[i][j] = D[i-1][j] + 1; otherwise it steps to column j - 1 and takes an insertion of hyp[j-1] when
    D[i][j-1] = D[i-1][j-1] - 1, else the diagonal (a hit or a substitution). This is Hyyrö's bit-parallel
    backtrace (rapidfuzz) written with the distance matrix.
    """
    m, n = len(reference), len(hypothesis)
    lo = 0
    while lo < min(m, n) and reference[lo] == hypothesis[lo]:
        lo += 1
    hi = 0
    while hi < min(m, n) - lo and reference[m - 1 - hi] == hypothesis[n - 1 - hi]:
        hi += 1
    ref, hyp = reference[lo : m - hi], hypothesis[lo : n - hi]
    d = _distances(ref, hyp)
    i, j = len(ref), len(hyp)
    sub = dele = ins = 0
    while i and j:
        if d[i][j] == d[i - 1][j] + 1:  # deletion of ref[i-1]
            dele, i = dele + 1, i - 1
            continue
        j -= 1
        if j and d[i][j] == d[i - 1][j] - 1:  # insertion of hyp[j] (the one left of the old column)
            ins += 1
        else:  # the diagonal: ref[i-1] against hyp[j]
            i -= 1
            sub += ref[i] != hyp[j]
    dele, ins = dele + i, ins + j  # what is left on one side
    hits = m - sub - dele
    return EditCounts(sub, dele, ins, hits)


def edit_counts(references: Sequence[str], hypotheses: Sequence[str],
                units: Callable[[str], list[str]] = words) -> EditCounts:
    """Substitutions, deletions, insertions and hits summed over sentence pairs, each aligned on ``units``
    (:func:`words` or :func:`characters`).

    Raises:
        TformerError: the two lists differ in length.
    """
    if len(references) != len(hypotheses):
        raise TformerError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    total = EditCounts()
    for ref, hyp in zip(references, hypotheses, strict=True):
        total = total + align(units(ref), units(hyp))
    return total


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER: (S + D + I) / N over all words (:func:`edit_counts`); 0.0 is perfect, it may exceed 1.0.

    Raises:
        TformerError: lists of different lengths, or references without a single word.
    """
    return edit_counts(references, hypotheses, words).error_rate


def char_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus CER: as :func:`word_error_rate` over characters (spaces between words count)."""
    return edit_counts(references, hypotheses, characters).error_rate


def sequence_error_rate(references: Sequence[str], hypotheses: Sequence[str],
                        units: Callable[[str], list[str]] = words) -> float:
    """The share of sentences whose ``units`` differ from their reference's in any way (0.0 = all exact).

    Grapheme-to-phoneme conversion calls this the word error rate: a word (one line) is wrong when any of its
    phonemes is (Bisani and Ney, 2008). Units, not strings, are compared, so spacing never counts.

    Raises:
        TformerError: lists of different lengths, or no sentences at all.
    """
    if len(references) != len(hypotheses):
        raise TformerError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        raise TformerError("the sequence error rate is undefined: there are no sentences")
    wrong = sum(units(ref) != units(hyp) for ref, hyp in zip(references, hypotheses, strict=True))
    return wrong / len(references)
