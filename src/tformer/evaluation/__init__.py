"""Evaluation with sacreBLEU (BLEU, chrF) and their signatures."""

from tformer.evaluation.bleu import score

__all__ = ["score"]
