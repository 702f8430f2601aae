"""``tformer params``: parameter counts of the presets, next to the paper's (Table 3)."""

from __future__ import annotations

import argparse
import json

import torch

from tformer.models.transformer.config import TransformerConfig
from tformer.models.transformer.model import Transformer

PAPER = {"base": 65e6, "big": 213e6}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vocab-size", type=int, default=37000, help="shared vocabulary size (paper: 37000 BPE)")


def run(args: argparse.Namespace) -> int:
    rows = []
    for name in ("tiny", "small", "base", "big"):
        cfg = getattr(TransformerConfig, name)(vocab_size=args.vocab_size)
        with torch.device("meta"):  # shapes only: no memory, no time
            n = Transformer(cfg).num_parameters()
        row = {"preset": name, "parameters": n}
        if name in PAPER:
            row["paper"] = int(PAPER[name])
            row["relative_difference"] = round((n - PAPER[name]) / PAPER[name], 4)
        rows.append(row)
    for r in rows:
        print(json.dumps(r))
    return 0
