"""``tformer translate RUN_DIR``: one sentence a line in (stdin or --input), one out (stdout or --output).

Empty and whitespace-only lines stay empty, so line counts always match. ``--output`` is written
atomically: a failed run never leaves a half-written file. ``--nbest N`` prints N lines per sentence as
``index ||| translation ||| score`` (Moses n-best style); ``--scores`` appends a tab and the score.
``--monotonic-window N`` decodes under a monotonic window: each step attends only to the source positions from
``--monotonic-window-back`` behind to N ahead of the previous step's attention peak, which never moves back.
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import TYPE_CHECKING

from tformer.errors import TformerError

if TYPE_CHECKING:
    from tformer.generation import GenerationOptions


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a run directory (or a folder written by `tformer average`)")
    p.add_argument("--input", "-i", help="source file (default: stdin)")
    p.add_argument("--output", "-o", help="output file (default: stdout)")
    add_decoding_arguments(p)
    p.add_argument("--nbest", type=int, default=0, help="print the N best translations per sentence (beam search)")
    p.add_argument("--scores", action="store_true", help="append the score (log-probability / length penalty)")


def add_decoding_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--beam", type=int, default=None, help="beam size; 1 = greedy (default 4, as in §6.1)")
    p.add_argument("--alpha", type=float, default=None, help="beam search's length penalty alpha (default 0.6)")
    p.add_argument("--max-len", type=int, default=None, help="most output tokens (default: source length + 50)")
    p.add_argument("--max-tokens", type=int, default=4096, help="source tokens per batch")
    add_sampling_arguments(p)
    p.add_argument("--no-repeat-ngram", type=int, default=0, metavar="N",
                   help="no output repeats an N-gram of its own tokens (default 0: off)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    p.add_argument("--iterations", type=int, default=None,
                   help="non-autoregressive (CMLM) runs: mask-predict rounds (default 10)")
    p.add_argument("--length-beam", type=int, default=None,
                   help="non-autoregressive (CMLM) runs: target lengths decoded side by side (default 3)")
    p.add_argument("--monotonic-window", type=int, default=None, metavar="N",
                   help="attend only to source positions up to N ahead of the previous step's attention peak (and "
                        "--monotonic-window-back behind it); the window never moves backwards")
    p.add_argument("--monotonic-window-back", type=int, default=1, metavar="M",
                   help="with --monotonic-window: how far behind the peak the window reaches (default 1)")
    p.add_argument("--int8", action="store_true",
                   help="CPU only: run the linear layers in int8 (dynamic quantization; faster, slightly different)")


def add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    """--sample and the settings only sampling reads (refused without it by :func:`decoding_options`)."""
    p.add_argument("--sample", action="store_true", help="sample instead of searching (with --temperature etc.)")
    p.add_argument("--temperature", type=float, default=None, help="with --sample: divide the logits by it (default 1)")
    p.add_argument("--top-k", type=int, default=None, help="with --sample: draw among the k likeliest (default 0: all)")
    p.add_argument("--top-p", type=float, default=None,
                   help="with --sample: draw among the likeliest whose probabilities sum to p (default 1: all)")
    p.add_argument("--seed", type=int, default=None, help="with --sample: the generator's seed")


def load_translator(args: argparse.Namespace):
    """The run's Translator, int8-quantized when --int8 is given."""
    import torch

    from tformer.translator import Translator

    try:
        device_type = torch.device(args.device).type
    except RuntimeError:
        raise TformerError(f"unknown device {args.device!r} (cpu, cuda, cuda:1, mps, ...)") from None
    if args.int8 and device_type != "cpu":
        raise TformerError("--int8 runs on the CPU: do not combine it with --device")
    translator = Translator.from_pretrained(args.run_dir, device=args.device)
    return translator.quantized() if args.int8 else translator


def decoding_options(args: argparse.Namespace) -> GenerationOptions:
    """The decoding flags as :class:`~tformer.generation.GenerationOptions` (checked there, in one line); the
    Translator fills in its defaults (beam 4, or a CMLM's 10 rounds over 3 lengths) and refuses what the model
    does not support."""
    from tformer.generation import GenerationOptions

    nbest = getattr(args, "nbest", 0) or (1 if getattr(args, "scores", False) else None)  # --nbest, --scores
    if args.alpha is not None and (args.beam == 1 or args.sample):
        raise TformerError(f"--alpha (the length penalty) only applies to beam search: leave it out with "
                           f"{'--sample' if args.sample else '--beam 1'}")
    sampling = {name: getattr(args, name) for name in ("temperature", "top_k", "top_p", "seed")}
    given = [FLAGS[name] for name, value in sampling.items() if value is not None]
    if given and not args.sample:  # even at their defaults: a flag that would do nothing is a mistake
        raise TformerError(f"{' and '.join(given)} only {'applies' if len(given) == 1 else 'apply'} when sampling: "
                           f"add --sample or leave {'it' if len(given) == 1 else 'them'} out")
    defaults = {name: getattr(GenerationOptions, name) for name in sampling}
    try:
        return GenerationOptions(
            beam_size=args.beam, nbest=nbest, length_penalty=GenerationOptions.length_penalty if args.alpha is None
            else args.alpha, max_len=args.max_len, do_sample=args.sample,
            **{name: defaults[name] if value is None else value for name, value in sampling.items()},
            iterations=args.iterations, length_candidates=args.length_beam,
            monotonic_window=args.monotonic_window, monotonic_window_back=args.monotonic_window_back,
            no_repeat_ngram_size=args.no_repeat_ngram,
        )
    except TformerError as e:  # the message names the options' fields: say the flags the user typed
        raise TformerError(re.sub(FLAG_PATTERN, lambda m: FLAGS[m.group(0)], str(e))) from None


FLAGS = {"beam_size": "--beam", "length_penalty": "--alpha", "max_len": "--max-len", "do_sample": "--sample",
         "temperature": "--temperature", "top_k": "--top-k", "top_p": "--top-p", "seed": "--seed",
         "iterations": "--iterations", "length_candidates": "--length-beam", "nbest": "--nbest",
         "monotonic_window_back": "--monotonic-window-back", "monotonic_window": "--monotonic-window",
         "no_repeat_ngram_size": "--no-repeat-ngram"}
FLAG_PATTERN = r"\b(" + "|".join(FLAGS) + r")\b"


def read_input_lines(path: str | None) -> list[str]:
    """Lines of ``path`` or of stdin; invalid UTF-8 is a one-line error naming the line.

    Lines split at ``\\n`` and ``\\r\\n`` only, and a byte-order mark opening the input is dropped, as in
    :func:`tformer.data.corpus.read_lines`; a lone ``\\r`` or a control character stays in its line (the
    tokenizer reads ``\\r`` as a space and an unseen character as ``<unk>``).
    """
    if path is not None:
        from tformer.data.corpus import read_lines

        return read_lines(path)
    lines = sys.stdin.buffer.read().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for n, raw in enumerate(lines, start=1):
        try:
            text = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            raise TformerError(f"<stdin>:{n}: invalid UTF-8") from None
        out.append(text.removeprefix("\ufeff") if n == 1 else text)
    return out


def write_output(path: str | None, lines: list[str]) -> None:
    text = "".join(line + "\n" for line in lines)
    if path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from tformer.io.files import atomic_write_text

    try:
        atomic_write_text(path, text)
    except OSError as e:
        raise TformerError(f"cannot write {path}: {e.strerror}") from None


def run(args: argparse.Namespace) -> int:
    from tformer.generation import Feature

    translator = load_translator(args)
    lines = read_input_lines(args.input)
    options = decoding_options(args)
    if args.nbest or args.scores:  # (text, score) lists from beam search
        flag = "--nbest" if args.nbest else "--scores"
        translator.capabilities.require(Feature.NBEST, what=f"tformer translate {flag}")
    options = translator.decoding_options(options, what="tformer translate")
    progress = len(lines) > 200 and sys.stderr.isatty()
    if args.nbest:
        nbest = translator.translate_nbest(lines, options, max_tokens=args.max_tokens, progress=progress)
        out = [f"{i} ||| {text} ||| {s:.4f}" for i, hyps in enumerate(nbest) for text, s in hyps]
    elif args.scores:
        best = translator.translate_nbest(lines, options, max_tokens=args.max_tokens, progress=progress)
        out = [f"{hyps[0][0]}\t{hyps[0][1]:.4f}" for hyps in best]
    else:
        out = translator.translate(lines, options, max_tokens=args.max_tokens, progress=progress)
    write_output(args.output, out)
    return 0
