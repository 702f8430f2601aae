"""Corpus BLEU and chrF with sacreBLEU, on detokenized, cased text, with sacreBLEU's signatures.

The signature (e.g. ``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.4.0``) says exactly
how a score was computed; report it next to the number so that scores compare across papers.
"""

from __future__ import annotations

from collections.abc import Sequence

from tformer.errors import TformerError


def check_tokenizer(name: str) -> None:
    """Raise a one-line error unless sacreBLEU knows the BLEU tokenizer ``name``."""
    from sacrebleu.metrics import BLEU

    try:
        BLEU(tokenize=name)
    except Exception:  # sacreBLEU raises KeyError or RuntimeError depending on the version
        raise TformerError(f"unknown sacreBLEU tokenizer {name!r} (e.g. 13a, intl, char, none)") from None


def score(hypotheses: Sequence[str], references: Sequence[str], *, tokenize: str = "13a") -> dict:
    """BLEU and chrF of ``hypotheses`` against one reference each.

    Returns:
        {"bleu": float, "chrf": float, "bleu_signature": str, "chrf_signature": str, "sentences": int}
    """
    from sacrebleu.metrics import BLEU, CHRF

    if len(hypotheses) != len(references):
        raise TformerError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    check_tokenizer(tokenize)
    bleu, chrf = BLEU(tokenize=tokenize), CHRF()
    hyps, refs = list(hypotheses), [list(references)]
    b, c = bleu.corpus_score(hyps, refs), chrf.corpus_score(hyps, refs)
    return {
        "bleu": round(b.score, 2),
        "chrf": round(c.score, 2),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
        "sentences": len(hyps),
    }
