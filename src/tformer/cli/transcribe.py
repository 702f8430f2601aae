"""``tformer transcribe RUN_DIR FILE.wav [MORE.wav ...]``: one transcript a line, in the order of the files.

RUN_DIR is a run of ``task: asr`` (its ``asr.json``, the feature settings and characters, and its best ``model/``).
Each file is read with soundfile at its own sample rate. ``--beam N`` sets the search: 1 = greedy, more = CTC prefix
beam search or the decoder's beam search (default: the run's read-out, 8 for CTC and 4 for attention).
``--monotonic-window N`` (an attention run) decodes under a monotonic window: each step's encoder-decoder attention
sees only the encoder frames [focus - B, focus + N] (B: ``--monotonic-window-back``, 1), the focus being the previous
step's attention peak, never moving back; encoder frames come 25 a second (4x subsampling of 10 ms hops).
``--output`` is written atomically. A missing or unreadable file, or a run of another task, is one line and exit
status 2; nothing is written then.
"""

from __future__ import annotations

import argparse


def add_window_arguments(p: argparse.ArgumentParser) -> None:
    """``--monotonic-window N`` and ``--monotonic-window-back B`` (also ``tformer plot alignment``'s)."""
    p.add_argument("--monotonic-window", type=int, default=None, metavar="N",
                   help="attention runs: attend only to encoder frames [focus - back, focus + N] (25 a second); "
                        "default: no window")
    p.add_argument("--monotonic-window-back", type=int, default=1, metavar="B",
                   help="how many encoder frames behind the focus the window reaches (default 1)")


def window_of(args: argparse.Namespace):
    """The :class:`~tformer.nn.cache.MonotonicWindow` the arguments ask for, or None; a bad size is a one-line
    TformerError."""
    from tformer.errors import TformerError
    from tformer.nn.cache import MonotonicWindow

    if args.monotonic_window is None:
        return None
    if args.monotonic_window < 1 or args.monotonic_window_back < 0:
        raise TformerError(f"--monotonic-window must be >= 1 and --monotonic-window-back >= 0, got "
                           f"{args.monotonic_window} and {args.monotonic_window_back}")
    return MonotonicWindow(ahead=args.monotonic_window, back=args.monotonic_window_back)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run of task asr (tformer train configs/speech_ctc.yaml)")
    p.add_argument("files", metavar="FILE", nargs="+", help="audio files to transcribe (WAV, FLAC, ...)")
    p.add_argument("--beam", type=int, default=None,
                   help="beam size; 1 = greedy (default: 8 for a CTC run, 4 for an attention run)")
    add_window_arguments(p)
    p.add_argument("--output", "-o", help="write the transcripts here (default: stdout)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ...")


def run(args: argparse.Namespace) -> int:
    import torch

    from tformer.cli.translate import write_output
    from tformer.errors import TformerError
    from tformer.tasks.transcriber import Transcriber

    if args.beam is not None and args.beam < 1:
        raise TformerError(f"--beam must be >= 1, got {args.beam}")
    window = window_of(args)
    try:
        torch.device(args.device)
    except RuntimeError:
        raise TformerError(f"unknown device {args.device!r} (cpu, cuda, cuda:1, mps, ...)") from None
    transcriber = Transcriber.from_run(args.run_dir, device=args.device)
    write_output(args.output, transcriber.transcribe(args.files, beam_size=args.beam, window=window))
    return 0
