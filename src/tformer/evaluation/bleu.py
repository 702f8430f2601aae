"""Corpus BLEU, chrF and TER with sacreBLEU, with sacreBLEU's signatures; and the tokenized, lowercased BLEU
that papers on Multi30k report.

The signature (e.g. ``nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.4.0``) says exactly
how a score was computed; report it next to the number so that scores compare across papers.

``bleu``, ``chrf`` and ``ter`` score the detokenized, cased text as it is (the numbers to compare across
systems). ``bleu_tok`` is the number comparable with papers that report tokenized BLEU (Multi30k papers:
``multi-bleu.perl`` on the dataset's lowercased, Moses-tokenized files): both sides go through the pipeline
that made those files (multi30k/dataset's ``scripts/task1-tokenize.sh``): ``lowercase.perl |
normalize-punctuation.perl -l L | tokenizer.perl -l L`` (no ``-a``: hyphenated words stay whole; with the
tokenizer's default escaping of ``& | < > ' " [ ]``, which changes no score), here by sacremoses, the
scripts' Python port, which reproduces the official English, German and Czech test files line for line.
Then sacreBLEU scores the tokens as they are (``tok:none``). Its signature starts with the Moses steps
and language, e.g. ``moses:en+lc+norm|sacremoses:0.2.0|nrefs:1|case:lc|eff:no|tok:none|smooth:exp|...``.
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


def moses_languages() -> list[str]:
    """The language codes the Moses tokenizer has non-breaking prefixes for (en, de, fr, cs, ...)."""
    from sacremoses.corpus import NonbreakingPrefixes

    return sorted(set(NonbreakingPrefixes().available_langs.values()))


def check_moses_language(lang: str) -> None:
    """Raise a one-line error unless the Moses tokenizer knows ``lang`` (tokenizer.perl would fall back to
    English, and the signature would name a language the text was not tokenized for)."""
    known = moses_languages()
    if lang not in known:
        raise TformerError(f"the Moses tokenizer has no language {lang!r} (one of {', '.join(known)})")


def moses_tokenize(lines: Sequence[str], lang: str = "en") -> list[str]:
    """``lines`` as Multi30k's tokenized files have them: lowercased, punctuation normalized, Moses-tokenized
    for language ``lang`` (``lowercase.perl | normalize-punctuation.perl -l L | tokenizer.perl -l L``)."""
    from sacremoses import MosesPunctNormalizer, MosesTokenizer

    check_moses_language(lang)
    norm, tok = MosesPunctNormalizer(lang=lang), MosesTokenizer(lang=lang)
    return [tok.tokenize(norm.normalize(line.lower()), escape=True, return_str=True) for line in lines]


def tokenized_bleu(hypotheses: Sequence[str], references: Sequence[str], lang: str = "en") -> tuple[float, str]:
    """BLEU of the text through :func:`moses_tokenize` (sacreBLEU, ``tokenize="none"``, ``lowercase=True``); returns
    (score, signature), the signature with the Moses steps in front."""
    from importlib.metadata import version

    from sacrebleu.metrics import BLEU

    bleu = BLEU(tokenize="none", lowercase=True, force=True)  # tokenized on purpose: no warning that it is
    b = bleu.corpus_score(moses_tokenize(hypotheses, lang), [moses_tokenize(references, lang)])
    return b.score, f"moses:{lang}+lc+norm|sacremoses:{version('sacremoses')}|{bleu.get_signature()}"


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str], *, tokenize: str = "13a") -> dict:
    """BLEU alone (what validation reports): {"bleu": float, "bleu_signature": str}."""
    from sacrebleu.metrics import BLEU

    if len(hypotheses) != len(references):
        raise TformerError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    check_tokenizer(tokenize)
    bleu = BLEU(tokenize=tokenize)
    return {"bleu": round(bleu.corpus_score(list(hypotheses), [list(references)]).score, 2),
            "bleu_signature": str(bleu.get_signature())}


def score(hypotheses: Sequence[str], references: Sequence[str], *, tokenize: str = "13a", lang: str = "en") -> dict:
    """BLEU, chrF and TER of ``hypotheses`` against one reference each, and the tokenized BLEU.

    Args:
        tokenize: sacreBLEU's tokenizer for ``bleu``.
        lang: the language of the text, for the Moses tokenizer of ``bleu_tok``.

    Returns:
        {"bleu", "chrf", "ter", "bleu_tok": float, "bleu_signature", "chrf_signature", "ter_signature",
        "bleu_tok_signature": str, "sentences": int}; TER is edits per reference word x 100 (lower is better).
        TER searches word shifts: on poor translations of a large test set it takes seconds.
    """
    from sacrebleu.metrics import CHRF, TER

    bleu = corpus_bleu(hypotheses, references, tokenize=tokenize)
    check_moses_language(lang)
    chrf, ter = CHRF(), TER()
    hyps, refs = list(hypotheses), [list(references)]
    bleu_tok, bleu_tok_signature = tokenized_bleu(hyps, refs[0], lang)
    return {
        "bleu": bleu["bleu"],
        "chrf": round(chrf.corpus_score(hyps, refs).score, 2),
        "ter": round(ter.corpus_score(hyps, refs).score, 2),
        "bleu_tok": round(bleu_tok, 2),
        "bleu_signature": bleu["bleu_signature"],
        "chrf_signature": str(chrf.get_signature()),
        "ter_signature": str(ter.get_signature()),
        "bleu_tok_signature": bleu_tok_signature,
        "sentences": len(hyps),
    }
