"""``tformer average CKPT ... --out DIR``: average the parameters of several checkpoints (§6.1).

The paper averages the last 5 (base) or 20 (big) checkpoints. ``--run RUN_DIR --last N`` picks
the N newest step checkpoints of a run. The result (``DIR/model`` and the run's tokenizer) loads
and translates like any run: ``tformer translate DIR``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from tformer.errors import TformerError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="*", help="checkpoint files (.pt) of one run")
    p.add_argument("--run", help="a run directory: average its newest step checkpoints")
    p.add_argument("--last", type=int, default=5, help="with --run: how many newest checkpoints (default 5)")
    p.add_argument("--out", required=True, help="output folder")


def run(args: argparse.Namespace) -> int:
    from tformer.io.checkpoints import step_checkpoints
    from tformer.training.average import average_checkpoints
    from tformer.training.trainer import CHECKPOINT_DIR

    paths = [Path(p) for p in args.checkpoints]
    if args.run:
        found = step_checkpoints(Path(args.run) / CHECKPOINT_DIR)
        if not found:
            raise TformerError(f"no step checkpoints in {Path(args.run) / CHECKPOINT_DIR}")
        if args.last < 1:
            raise TformerError("--last must be >= 1")
        paths += found[-args.last :]
    if not paths:
        raise TformerError("name checkpoint files, or --run RUN_DIR")
    for p in paths:
        if not p.is_file():
            raise TformerError(f"checkpoint not found: {p}")
    run_dir = paths[0].resolve().parent.parent  # RUN_DIR/checkpoints/step-N.pt
    tokenizers = sorted(run_dir.glob("tokenizer*.json"))
    if not tokenizers:
        raise TformerError(f"no tokenizer files in {run_dir}: cannot make a translatable folder")
    out = Path(args.out)
    if out.resolve() == run_dir:
        raise TformerError("--out must not be the run directory (its model/ would be replaced)")
    model = average_checkpoints(paths)  # all checks done: from here on, files are written
    model.save_pretrained(out / "model")
    for t in tokenizers:
        shutil.copyfile(t, out / t.name)
    print(json.dumps({"averaged": [str(p) for p in paths], "out": str(out)}))
    return 0
