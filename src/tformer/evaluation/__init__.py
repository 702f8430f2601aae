"""Evaluation: BLEU and chrF with sacreBLEU (with their signatures); word, character and sequence error rates."""

from tformer.evaluation.bleu import score
from tformer.evaluation.wer import EditCounts, char_error_rate, edit_counts, sequence_error_rate, word_error_rate

__all__ = ["EditCounts", "char_error_rate", "edit_counts", "score", "sequence_error_rate", "word_error_rate"]
