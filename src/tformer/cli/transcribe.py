"""``tformer transcribe RUN_DIR FILE.wav [MORE.wav ...]``: one transcript a line, in the order of the files.

RUN_DIR is a run of ``task: asr`` (its ``asr.json``, the feature settings and characters, and its best ``model/``).
Each file is read with soundfile at its own sample rate. ``--beam N`` sets the search: 1 = greedy, more = CTC prefix
beam search or the decoder's beam search (default: the run's read-out, 8 for CTC and 4 for attention).
``--output`` is written atomically. A missing or unreadable file, or a run of another task, is one line and exit
status 2; nothing is written then.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run of task asr (tformer train configs/speech_ctc.yaml)")
    p.add_argument("files", metavar="FILE", nargs="+", help="audio files to transcribe (WAV, FLAC, ...)")
    p.add_argument("--beam", type=int, default=None,
                   help="beam size; 1 = greedy (default: 8 for a CTC run, 4 for an attention run)")
    p.add_argument("--output", "-o", help="write the transcripts here (default: stdout)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ...")


def run(args: argparse.Namespace) -> int:
    import torch

    from tformer.cli.translate import write_output
    from tformer.errors import TformerError
    from tformer.tasks.transcriber import Transcriber

    if args.beam is not None and args.beam < 1:
        raise TformerError(f"--beam must be >= 1, got {args.beam}")
    try:
        torch.device(args.device)
    except RuntimeError:
        raise TformerError(f"unknown device {args.device!r} (cpu, cuda, cuda:1, mps, ...)") from None
    transcriber = Transcriber.from_run(args.run_dir, device=args.device)
    write_output(args.output, transcriber.transcribe(args.files, beam_size=args.beam))
    return 0
