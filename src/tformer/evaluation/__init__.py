"""Evaluation: BLEU, chrF and TER with sacreBLEU (with their signatures) and the tokenized BLEU of Multi30k papers;
word, character and sequence error rates;
extractive question answering's exact match and F1 (SQuAD v1.1's)."""

from tformer.evaluation.bleu import score
from tformer.evaluation.qa import exact_match, f1, normalize_answer, qa_scores
from tformer.evaluation.wer import EditCounts, char_error_rate, edit_counts, sequence_error_rate, word_error_rate

__all__ = ["EditCounts", "char_error_rate", "edit_counts", "exact_match", "f1", "normalize_answer", "qa_scores",
           "score", "sequence_error_rate", "word_error_rate"]
