"""``tformer translate RUN_DIR``: one sentence a line in (stdin or --input), one out (stdout or --output).

Empty and whitespace-only lines stay empty, so line counts always match. ``--output`` is written
atomically: a failed run never leaves a half-written file. ``--nbest N`` prints N lines per sentence as
``index ||| translation ||| score`` (Moses n-best style); ``--scores`` appends a tab and the score.
``--monotonic-window N`` decodes under a monotonic window: each step attends only to the source positions from
``--monotonic-window-back`` behind to N ahead of the previous step's attention peak, which never moves back.

Translators' options:

* ``tformer translate RUN1 RUN2 ...``: the runs decode as an ensemble (each step the mean of their probabilities);
  they must share their tokenizer files. The run directories come together, before or after the options.
* ``--prefix-file F``: line i of F (target-language text; empty = none) is what translation i starts with.
* ``--no-repeat-ngram N``, ``--repetition-penalty P``: against repeats (:mod:`tformer.generation.processors`).
* ``--print-alignment``: after a tab, each output token's source token as ``j-i`` pairs (source index - target
  index, 0-based subword tokens, EOS left out on both sides; fairseq's hard alignment, in the Pharaoh format) from
  the attention of decoder layer ``--alignment-layer`` (default -1, the last, fairseq's default), mean over heads.
  The line is ``translation<TAB>alignment`` (``translation<TAB>score<TAB>alignment`` with ``--scores``).
* ``--interactive`` (the default when stdin is a terminal and there is no --input or --output): each line is
  answered, and the answer flushed, as soon as it is read, instead of after the end of the input.
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
    add_ensemble_argument(p)
    p.add_argument("--input", "-i", help="source file (default: stdin)")
    p.add_argument("--output", "-o", help="output file (default: stdout)")
    add_decoding_arguments(p)
    p.add_argument("--nbest", type=int, default=0, help="print the N best translations per sentence (beam search)")
    p.add_argument("--scores", action="store_true", help="append the score (log-probability / length penalty)")
    p.add_argument("--prefix-file", metavar="F",
                   help="one target-language prefix per input line (empty line: none): each translation starts "
                        "with its prefix's tokens, then decodes freely")
    p.add_argument("--print-alignment", action="store_true",
                   help="append a tab and the alignment: for each output token, the source token with the most "
                        "attention, as 'source-target' index pairs (0-based tokens, EOS left out)")
    p.add_argument("--alignment-layer", type=int, default=-1,
                   help="with --print-alignment: the decoder layer whose attention (mean over heads) aligns "
                        "(default -1: the last, as fairseq)")
    p.add_argument("--interactive", action="store_true",
                   help="answer each line as soon as it is read (the default when stdin is a terminal)")


def add_ensemble_argument(p: argparse.ArgumentParser) -> None:
    """More run directories after the first: decode with all of them as an ensemble."""
    p.add_argument("ensemble", nargs="*", metavar="RUN_DIR",
                   help="more runs with the same tokenizer files: decode with the mean of all the runs' "
                        "probabilities (an ensemble)")


def add_decoding_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--beam", type=int, default=None, help="beam size; 1 = greedy (default 4, as in §6.1)")
    p.add_argument("--alpha", type=float, default=None, help="beam search's length penalty alpha (default 0.6)")
    p.add_argument("--max-len", type=int, default=None, help="most output tokens (default: source length + 50)")
    p.add_argument("--max-tokens", type=int, default=4096, help="source tokens per batch")
    add_sampling_arguments(p)
    p.add_argument("--no-repeat-ngram", type=int, default=0, metavar="N",
                   help="no output repeats an N-gram of its own tokens (default 0: off)")
    p.add_argument("--repetition-penalty", type=float, default=None, metavar="P",
                   help="scores of tokens already in the output divided by P where positive, multiplied where "
                        "negative (CTRL, Hugging Face's repetition_penalty; default 1: off)")
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
    """The run's Translator (the runs' ensemble when more are given), int8-quantized when --int8 is given."""
    import torch

    from tformer.translator import Translator

    try:
        device_type = torch.device(args.device).type
    except RuntimeError:
        raise TformerError(f"unknown device {args.device!r} (cpu, cuda, cuda:1, mps, ...)") from None
    if args.int8 and device_type != "cpu":
        raise TformerError("--int8 runs on the CPU: do not combine it with --device")
    runs = [args.run_dir, *getattr(args, "ensemble", [])]
    translators = [Translator.from_pretrained(run, device=args.device) for run in runs]
    try:
        translator = translators[0] if len(runs) == 1 else Translator.ensemble(translators)
    except TformerError as e:  # "ensemble model 2 ...": say which run
        raise TformerError(re.sub(r"\bmodel (\d+)", lambda m: runs[int(m.group(1)) - 1], str(e))) from None
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
            repetition_penalty=GenerationOptions.repetition_penalty if getattr(args, "repetition_penalty", None) is None
            else args.repetition_penalty,
        )
    except TformerError as e:  # the message names the options' fields: say the flags the user typed
        raise TformerError(re.sub(FLAG_PATTERN, lambda m: FLAGS[m.group(0)], str(e))) from None


FLAGS = {"beam_size": "--beam", "length_penalty": "--alpha", "max_len": "--max-len", "do_sample": "--sample",
         "temperature": "--temperature", "top_k": "--top-k", "top_p": "--top-p", "seed": "--seed",
         "iterations": "--iterations", "length_candidates": "--length-beam", "nbest": "--nbest",
         "monotonic_window_back": "--monotonic-window-back", "monotonic_window": "--monotonic-window",
         "no_repeat_ngram_size": "--no-repeat-ngram", "repetition_penalty": "--repetition-penalty"}
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
    translator = load_translator(args)
    check_output_flags(args, translator)  # first: a refusal names the flag (--nbest), not the setting it makes
    options = translator.decoding_options(decoding_options(args), what="tformer translate")
    if interactive(args):
        for n, line in enumerate(stdin_lines()):
            sys.stdout.write("".join(out + "\n" for out in answer(translator, [line], None, options, args, n)))
            sys.stdout.flush()
        return 0
    lines = read_input_lines(args.input)
    prefixes = read_prefixes(args.prefix_file, len(lines))
    write_output(args.output, answer(translator, lines, prefixes, options, args, 0,
                                     progress=len(lines) > 200 and sys.stderr.isatty()))
    return 0


def check_output_flags(args: argparse.Namespace, translator) -> None:
    """Flags that cannot go together, or that this model cannot honour: refused in one line before decoding."""
    from tformer.generation import Feature

    if args.nbest or args.scores:  # (text, score) lists from beam search
        flag = "--nbest" if args.nbest else "--scores"
        translator.capabilities.require(Feature.NBEST, what=f"tformer translate {flag}")
    if args.print_alignment:
        if args.nbest:
            raise TformerError("--print-alignment prints one line per sentence: leave out --nbest")
        translator.capabilities.require(Feature.ATTENTION_MAPS, what="tformer translate --print-alignment")
        translator.check_alignment_layer(args.alignment_layer)
    if args.prefix_file:
        translator.capabilities.require(Feature.FORCED_PREFIX, what="tformer translate --prefix-file")
    if args.interactive and (args.input or args.output or args.prefix_file):
        raise TformerError("--interactive reads stdin and answers on stdout: leave out --input, --output and "
                           "--prefix-file")


def interactive(args: argparse.Namespace) -> bool:
    """Answer line by line: --interactive, or a terminal on stdin with nothing read or written to files."""
    return args.interactive or (not (args.input or args.output or args.prefix_file) and sys.stdin.isatty())


def stdin_lines():
    """The lines of stdin one at a time, as soon as each is complete (read_input_lines' rules, line by line)."""
    for n, raw in enumerate(iter(sys.stdin.buffer.readline, b""), start=1):
        try:
            text = raw.removesuffix(b"\n").decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            raise TformerError(f"<stdin>:{n}: invalid UTF-8") from None
        yield text.removeprefix("\ufeff") if n == 1 else text


def read_prefixes(path: str | None, n: int) -> list[str] | None:
    """The lines of the prefix file, which must have one line per input line; None without one."""
    if path is None:
        return None
    from tformer.data.corpus import read_lines

    prefixes = read_lines(path)
    if len(prefixes) != n:
        raise TformerError(f"{path} has {len(prefixes)} lines but the input has {n}: give one prefix per line "
                           "(an empty line for none)")
    return prefixes


def answer(translator, lines: list[str], prefixes: list[str] | None, options, args: argparse.Namespace, first: int,
           progress: bool = False) -> list[str]:
    """The output lines for ``lines`` (sentence numbers from ``first``): translations, n-best lists or scores,
    with alignments when asked."""
    kw = {"max_tokens": args.max_tokens, "progress": progress, "prefixes": prefixes}
    if args.nbest:
        nbest = translator.translate_nbest(lines, options, **kw)
        return [f"{first + i} ||| {text} ||| {s:.4f}" for i, hyps in enumerate(nbest) for text, s in hyps]
    if args.scores:
        best = [hyps[0] for hyps in translator.translate_nbest_ids(lines, options, **kw)]
        ids = [toks for toks, _ in best]
        out = [f"{text}\t{s:.4f}" for text, (_, s) in zip(translator.texts(ids), best, strict=True)]
    else:
        ids = translator.translate_ids(lines, options, **kw)
        out = translator.texts(ids)
    if not args.print_alignment:
        return out
    pairs = translator.alignments(lines, ids, options, layer=args.alignment_layer, max_tokens=args.max_tokens)
    return [f"{line}\t{' '.join(f'{j}-{i}' for j, i in p)}" for line, p in zip(out, pairs, strict=True)]
