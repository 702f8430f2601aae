"""``tformer evaluate RUN_DIR --src F --ref F``: translate and score with sacreBLEU; prints JSON.

``--hyp F`` scores an existing translation file instead of decoding (RUN_DIR is then optional); more run
directories after the first decode as an ensemble (the mean of their probabilities, ``tformer translate``'s).
Scores (``--metric``, repeatable, from :data:`METRICS`): ``bleu`` (the default) is BLEU, chrF and TER on
detokenized, cased text, with sacreBLEU's signatures, and the tokenized, lowercased BLEU of Multi30k papers
(``bleu_tok``, Moses-tokenized for ``--lang``); ``per`` is for outputs that are space-separated symbols, such as the
phonemes of grapheme-to-phoneme conversion: the phoneme error rate (edit distance over symbols / reference
symbols, corpus level) and the word error rate of that field (the share of lines with any symbol wrong).
For a model with encoder-decoder attention, also how closely that attention followed the source in order while
translating: the diagonal focus rate and the monotonic rate (:mod:`tformer.evaluation.alignment`) of the last
decoder layer (``--alignment-layer``), averaged over heads, with the band ``--focus-band``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from tformer.cli.translate import add_decoding_arguments, add_ensemble_argument, decoding_options, load_translator
from tformer.errors import TformerError
from tformer.registry import Registry


def bleu_scores(hyps: list[str], refs: list[str], args: argparse.Namespace) -> dict:
    """BLEU, chrF, TER and tokenized BLEU with their signatures (``--tokenize`` is BLEU's tokenizer, ``--lang``
    the language of the Moses tokenizer of the tokenized BLEU)."""
    from tformer.evaluation.bleu import score

    return score(hyps, refs, tokenize=args.tokenize, lang=args.lang)


def symbol_error_scores(hyps: list[str], refs: list[str], args: argparse.Namespace) -> dict:
    """The phoneme (symbol) error rate over space-separated symbols, and the share of lines not exactly right."""
    from tformer.evaluation.wer import edit_counts, sequence_error_rate

    counts = edit_counts(refs, hyps)
    return {"per": round(counts.error_rate, 6), "wer": round(sequence_error_rate(refs, hyps), 6),
            "ref_symbols": counts.reference_length, "sentences": len(refs)}


Scorer = Callable[[list[str], list[str], argparse.Namespace], dict]  # (hyps, refs, args) -> the scores to print
METRICS: Registry[Scorer] = Registry("--metric", {"bleu": bleu_scores, "per": symbol_error_scores})


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", nargs="?", help="run directory (not needed with --hyp)")
    add_ensemble_argument(p)
    p.add_argument("--src", help="source file (one sentence a line, .gz allowed)")
    p.add_argument("--ref", required=True, help="reference translations, aligned with --src")
    p.add_argument("--hyp", help="score this file of translations instead of decoding")
    p.add_argument("--output", "-o", help="also write the translations here (atomically)")
    p.add_argument("--tokenize", default="13a", help="sacreBLEU tokenizer for BLEU (default 13a)")
    p.add_argument("--lang", default="en",
                   help="language of the translations, for the Moses tokenizer of the tokenized BLEU (bleu_tok; "
                        "default en)")
    p.add_argument("--metric", action="append", choices=tuple(METRICS),
                   help="what to score, repeatable: bleu (BLEU and chrF, the default) or per (phoneme error rate "
                        "and word error rate over space-separated symbols, e.g. grapheme-to-phoneme)")
    add_decoding_arguments(p)
    p.add_argument("--focus-band", type=float, default=None,
                   help="half-width of the diagonal band of the focus rate, a share of the source (default 0.1)")
    p.add_argument("--alignment-layer", type=int, default=-1,
                   help="decoder layer whose attention (mean over heads) the alignment rates read (default -1: last)")


def run(args: argparse.Namespace) -> int:
    from tformer.cli.translate import write_output
    from tformer.data.corpus import read_lines

    refs = read_lines(args.ref)
    if "bleu" in (args.metric or ["bleu"]):  # a language the Moses tokenizer lacks fails now, not after decoding
        from tformer.evaluation.bleu import check_moses_language

        check_moses_language(args.lang)
    result: dict = {}
    if args.hyp:
        hyps = read_lines(args.hyp)
        if len(hyps) != len(refs):
            raise TformerError(f"{args.hyp} has {len(hyps)} lines but {args.ref} has {len(refs)}")
    else:
        if not args.run_dir or not args.src:
            raise TformerError("give RUN_DIR and --src to translate, or --hyp to score existing translations")
        srcs = read_lines(args.src)
        if len(srcs) != len(refs):
            raise TformerError(f"{args.src} has {len(srcs)} lines but {args.ref} has {len(refs)}")
        translator = load_translator(args)
        check_alignment_settings(args, translator)  # a bad setting fails now, not after the whole decode
        hyps, result = translate(args, translator, srcs)
        if args.output:
            write_output(args.output, hyps)
    scores: dict = {}
    for name in dict.fromkeys(args.metric or ["bleu"]):
        scores.update(METRICS.lookup(name)(hyps, refs, args))
    print(json.dumps({**scores, **result}))
    return 0


def translate(args: argparse.Namespace, translator, srcs: list[str]) -> tuple[list[str], dict]:
    """The translations of ``srcs`` and what to report beside the scores: time and decoding settings."""
    from tformer.generation import Feature

    options = translator.decoding_options(decoding_options(args), what="tformer evaluate")
    t0 = time.perf_counter()
    outputs = translator.translate_ids(srcs, options, max_tokens=args.max_tokens)  # the alignment reads these ids
    hyps = translator.texts(outputs)
    result: dict = {"decode_seconds": round(time.perf_counter() - t0, 2)}
    if translator.capabilities.supports(Feature.MASK_PREDICT):
        result.update(iterations=options.iterations, length_beam=options.length_candidates)
    else:
        result.update(beam=options.beam_size, alpha=options.length_penalty)
    if options.no_repeat_ngram_size:
        result.update(no_repeat_ngram=options.no_repeat_ngram_size)
    if options.repetition_penalty != 1.0:
        result.update(repetition_penalty=options.repetition_penalty)
    if len(translator.members) > 1:
        result.update(ensemble=len(translator.members))
    if options.monotonic_window is not None:
        result.update(monotonic_window=options.monotonic_window, monotonic_window_back=options.monotonic_window_back)
    if translator.capabilities.supports(Feature.ATTENTION_MAPS):
        result.update(alignment(args, translator, srcs, outputs, options))
    return hyps, result


def check_alignment_settings(args: argparse.Namespace, translator) -> None:
    """``--focus-band`` and ``--alignment-layer`` are valid for this model (one-line TformerError); nothing to check
    for a model without encoder-decoder attention maps (no alignment is reported)."""
    from tformer.evaluation.alignment import check_band
    from tformer.generation import Feature

    if not translator.capabilities.supports(Feature.ATTENTION_MAPS):
        return
    try:
        if args.focus_band is not None:
            check_band(args.focus_band)
    except TformerError as e:
        raise TformerError(f"--focus-band: {e}") from None
    translator.check_alignment_layer(args.alignment_layer)  # "alignment layer N is out of range for ..."


def alignment(args: argparse.Namespace, translator, srcs: list[str], outputs: list[list[int]], options) -> dict:
    """The diagonal focus rate and monotonic rate of the translations (their decoded ids), as evaluate reports
    them."""
    from tformer.evaluation.alignment import DEFAULT_BAND

    band = DEFAULT_BAND if args.focus_band is None else args.focus_band
    rates = translator.alignment_rates(srcs, outputs, options, band=band, layer=args.alignment_layer,
                                       max_tokens=args.max_tokens)
    rounded = {k: round(getattr(rates, k), 4) for k in ("diagonal_focus_rate", "monotonic_rate")}
    return {**rounded, "focus_band": band, "alignment_layer": args.alignment_layer}
