"""``tformer evaluate RUN_DIR --src F --ref F``: translate and score with sacreBLEU; prints JSON.

``--hyp F`` scores an existing translation file instead of decoding (RUN_DIR is then optional).
Scores are BLEU and chrF on detokenized, cased text, with sacreBLEU's signatures.
"""

from __future__ import annotations

import argparse
import json
import time

from tformer.cli.translate import add_decoding_arguments, decoding_options, load_translator
from tformer.errors import TformerError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", nargs="?", help="run directory (not needed with --hyp)")
    p.add_argument("--src", help="source file (one sentence a line, .gz allowed)")
    p.add_argument("--ref", required=True, help="reference translations, aligned with --src")
    p.add_argument("--hyp", help="score this file of translations instead of decoding")
    p.add_argument("--output", "-o", help="also write the translations here (atomically)")
    p.add_argument("--tokenize", default="13a", help="sacreBLEU tokenizer for BLEU (default 13a)")
    add_decoding_arguments(p)


def run(args: argparse.Namespace) -> int:
    from tformer.cli.translate import write_output
    from tformer.data.corpus import read_lines
    from tformer.evaluation.bleu import score

    refs = read_lines(args.ref)
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
        hyps, result = translate(args, srcs)
        if args.output:
            write_output(args.output, hyps)
    print(json.dumps({**score(hyps, refs, tokenize=args.tokenize), **result}))
    return 0


def translate(args: argparse.Namespace, srcs: list[str]) -> tuple[list[str], dict]:
    """The run's translations of ``srcs`` and what to report beside the scores: time and decoding settings."""
    from tformer.generation import Feature

    translator = load_translator(args)
    options = translator.decoding_options(decoding_options(args), what="tformer evaluate")
    t0 = time.perf_counter()
    hyps = translator.translate(srcs, options, max_tokens=args.max_tokens)
    result: dict = {"decode_seconds": round(time.perf_counter() - t0, 2)}
    if translator.capabilities.supports(Feature.MASK_PREDICT):
        result.update(iterations=options.iterations, length_beam=options.length_candidates)
    else:
        result.update(beam=options.beam_size, alpha=options.length_penalty)
    return hyps, result
