"""``tformer train CONFIG.yaml [key=value ...] [--resume]``: train a model as a YAML recipe says.

Overrides use dotted keys and YAML values: ``train.max_steps=2000 model.d_model=128 data.shared_vocab=false``.
Prints the run summary as one JSON line on stdout; progress goes to stderr. SIGINT (Ctrl-C) or SIGTERM
finishes the current update, writes a checkpoint and exits with 128 + the signal's number (130, 143);
``--resume`` then continues exactly. A second Ctrl-C stops at once (the last checkpoint still resumes).

Several processes (data parallel, one per GPU or CPU share)::

    torchrun --nproc_per_node=4 --no-python tformer train CONFIG.yaml

Only rank 0 prints the summary and writes files (see :mod:`tformer.training.distributed`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="YAML run config (see configs/)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. train.max_steps=100")
    p.add_argument("--resume", action="store_true", help="continue the run in run_dir from its newest checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines instead)")


def run(args: argparse.Namespace) -> int:
    from tformer.tasks import load_run_config, run_training

    cfg = load_run_config(args.config, args.overrides)
    summary = run_training(cfg, resume=args.resume, show_progress=False if args.no_progress else None)
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps(summary))
    stopped = summary.get("interrupted")
    if stopped in signal.Signals.__members__:  # stopped by SIGINT/SIGTERM after saving: 128 + signal, as shells do
        return 128 + signal.Signals[stopped].value
    return 0
