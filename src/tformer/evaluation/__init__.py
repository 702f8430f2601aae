"""Evaluation: BLEU and chrF with sacreBLEU (with their signatures); word and character error rates."""

from tformer.evaluation.bleu import score
from tformer.evaluation.wer import EditCounts, char_error_rate, edit_counts, word_error_rate

__all__ = ["EditCounts", "char_error_rate", "edit_counts", "score", "word_error_rate"]
