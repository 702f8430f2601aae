"""``tformer predict RUN_DIR``: one input a line in (stdin or --input), one JSON answer a line out (stdout or
--output), for a run of any task with a predictor (:func:`tformer.tasks.predictor.open_run`).

A line is what the run's task reads (:meth:`Predictor.parse_input`): a text (classify, lm), an image path,
``digits:N`` or ``{"pixels": ...}`` (vision), a JSON object (qa). ``--output`` is written atomically, and only when
every input was answered. A bad line stops the command with one line naming it (``FILE:N: ...``, exit 2).
Translation runs use ``tformer translate``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re

from tformer.errors import TformerError

INPUT_ERROR = re.compile(r"input (\d+)(: )?")  # how a predictor names a bad input (counted from 1)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a trained run directory (classify, vision, audio_classify, qa, lm, ...)")
    p.add_argument("--input", "-i", help="inputs, one a line (default: stdin)")
    p.add_argument("--output", "-o", help="answers, one JSON object a line (default: stdout)")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="padded tokens (or patches, frames) per batch (default: the predictor's, 4096 for classifiers)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ...")


def run(args: argparse.Namespace) -> int:
    from tformer.cli.translate import write_output
    from tformer.tasks import open_run

    if args.max_tokens is not None and args.max_tokens < 1:
        raise TformerError(f"--max-tokens must be >= 1, got {args.max_tokens}")
    predictor = open_run(args.run_dir, device=args.device)
    options = {}
    if args.max_tokens is not None:
        if "max_tokens" not in inspect.signature(predictor.predict).parameters:
            raise TformerError(f"a {predictor.task} run does not batch by --max-tokens: leave it out")
        options["max_tokens"] = args.max_tokens
    source = args.input or "<stdin>"
    inputs = read_inputs(predictor, args.input)
    try:
        answers = predictor.predict(inputs, **options) if inputs else []
    except TformerError as e:
        raise TformerError(located(str(e), source)) from None
    write_output(args.output, [json.dumps(a, ensure_ascii=False) for a in answers])
    return 0


def read_inputs(predictor, path: str | None) -> list:
    """The inputs of ``path`` (stdin when None), one a line, parsed by the predictor (a bad line: "FILE:N: ...")."""
    from tformer.cli.translate import read_input_lines

    inputs = []
    for n, line in enumerate(read_input_lines(path), start=1):
        try:
            inputs.append(predictor.parse_input(line))
        except TformerError as e:
            raise TformerError(f"{path or '<stdin>'}:{n}: {e}") from None
    return inputs


def located(message: str, source: str) -> str:
    """A predictor's error with its input file: "input N: ..." (input N is line N) -> "SOURCE:N: ..."."""
    m = INPUT_ERROR.match(message)
    if m and m.group(2):
        return f"{source}:{m.group(1)}: {message[m.end():]}"
    m = INPUT_ERROR.search(message)
    return f"{source}:{m.group(1)}: {message}" if m else f"{source}: {message}"
