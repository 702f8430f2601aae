"""``tformer generate RUN_DIR``: continue prompts with a language-model run (task lm).

Prompts come from ``--prompt TEXT`` (repeatable), ``--input F`` or stdin, one a line; each gets one line out
(stdout or ``--output``, written atomically): the prompt followed by its continuation, or with ``--json`` one JSON
object (``prompt``, ``continuation``, ``tokens``, and ``score`` under beam search, ``nbest`` with ``--nbest N``).
``--nbest N`` without ``--json`` prints N lines a prompt, ``index ||| text ||| score`` (as ``tformer translate``).

Greedy search by default; ``--beam K`` (with ``--alpha``, ``--nbest``) or ``--sample`` (with ``--temperature``,
``--top-k``, ``--top-p``, ``--seed``). The refusals are ``tformer translate``'s (a sampling flag without
``--sample``, ``--alpha`` without beam search: :func:`tformer.cli.translate.decoding_options`). Decoding runs through
the run's predictor (:class:`tformer.tasks.lm_run.LanguageModelPredictor`), as ``tformer serve`` and Python do.
"""

from __future__ import annotations

import argparse
import json
import re

from tformer.cli.translate import add_sampling_arguments
from tformer.errors import TformerError

LENGTH_FLAGS = {"max_len": "--max-new-tokens", "min_len": "--min-new-tokens"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a language-model run directory (task lm)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--prompt", "-p", action="append", metavar="TEXT", help="a prompt (repeat for more)")
    source.add_argument("--input", "-i", help="prompts, one a line (default: stdin)")
    p.add_argument("--output", "-o", help="output file (default: stdout)")
    p.add_argument("--json", action="store_true", help="one JSON object a prompt: prompt, continuation, tokens, score")
    p.add_argument("--max-new-tokens", type=int, default=None, help="most new tokens a prompt (default 32)")
    p.add_argument("--min-new-tokens", type=int, default=0, help="no end of text before this many new tokens")
    p.add_argument("--beam", type=int, default=1, help="beam size (default 1: greedy search)")
    p.add_argument("--alpha", type=float, default=None, help="beam search's length penalty alpha (default 0.6)")
    p.add_argument("--nbest", type=int, default=0, help="the N best continuations a prompt (beam search)")
    add_sampling_arguments(p)
    p.add_argument("--no-repeat-ngram", type=int, default=0, metavar="N",
                   help="no continuation repeats an N-gram of its own new tokens (default 0: off)")
    p.add_argument("--max-tokens", type=int, default=4096, help="padded prompt tokens per batch")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    # what tformer translate's decoding_options also reads, which a language model does not take
    p.set_defaults(max_len=None, scores=False, iterations=None, length_beam=None, monotonic_window=None,
                   monotonic_window_back=1)


def generation_options(args: argparse.Namespace):
    """The flags as :class:`~tformer.generation.GenerationOptions`, refused in one line naming the flags."""
    from tformer.cli.translate import decoding_options
    from tformer.generation import GenerationOptions

    opts = decoding_options(args)
    try:
        return GenerationOptions.of(opts, max_len=args.max_new_tokens, min_len=args.min_new_tokens)
    except TformerError as e:
        raise TformerError(re.sub(r"\b(max_len|min_len)\b", lambda m: LENGTH_FLAGS[m.group(0)], str(e))) from None


def run(args: argparse.Namespace) -> int:
    from tformer.cli.predict import located
    from tformer.cli.translate import read_input_lines, write_output
    from tformer.tasks import open_run

    options = generation_options(args)  # bad flags are refused before the run is loaded
    predictor = open_run(args.run_dir, device=args.device)
    if predictor.endpoint != "generate":
        raise TformerError(f"{args.run_dir} is a run of task {predictor.task}: tformer generate continues text with "
                           "a language-model run (task lm); use tformer predict")
    prompts = args.prompt if args.prompt is not None else read_input_lines(args.input)
    try:
        answers = predictor.predict(prompts, options, max_tokens=args.max_tokens) if prompts else []
    except TformerError as e:  # "input N: ..." names the prompt: say where it came from
        if args.prompt is None:
            raise TformerError(located(str(e), args.input or "<stdin>")) from None
        raise TformerError(re.sub(r"^input (\d+)", r"--prompt \1", str(e))) from None
    write_output(args.output, [line for i, a in enumerate(answers) for line in _lines(i, a, args)])
    return 0


def _lines(index: int, answer: dict, args: argparse.Namespace) -> list[str]:
    """The output lines of prompt ``index``'s answer."""
    if args.json:
        return [json.dumps(answer, ensure_ascii=False)]
    if args.nbest:
        return [f"{index} ||| {answer['prompt']}{h['continuation']} ||| {h['score']:.4f}" for h in answer["nbest"]]
    return [answer["prompt"] + answer["continuation"]]
