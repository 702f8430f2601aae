"""The training curves of a run, from the ``metrics.jsonl`` that :mod:`tformer.training.trainer` writes.

One JSON object a line: ``{"kind": "train", "step", "loss", "ppl", "lr", "tokens_per_s", ...}`` every
``train.log_every`` steps and ``{"kind": "valid", "step", "loss", "ppl", "bleu", ...}`` at each
validation. Both losses are the label-smoothed cross-entropy per target token (§5.4). A resumed run
appends; where a step was logged twice the later record wins.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from tformer.errors import TformerError
from tformer.viz.figure import new_figure, set_title

_TRAIN, _VALID = "#2b6cb0", "#dd6b20"


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl``, in file order.

    Raises:
        TformerError: the file is missing, holds a line that is not a JSON object, or has no records.
    """
    path = Path(path)
    if not path.is_file():
        raise TformerError(f"no training metrics: {path} not found (a run made by tformer train has one)")
    records = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                raise TformerError(f"{path}, line {n}: not valid JSON") from None
            if not isinstance(rec, dict) or "kind" not in rec or "step" not in rec:
                raise TformerError(f"{path}, line {n}: not a metrics record (needs kind and step)")
            records.append(rec)
    if not records:
        raise TformerError(f"{path} holds no records yet")
    return records


def series(records: list[dict[str, Any]], kind: str, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of ``key`` in the records of ``kind`` ("train" or "valid"), by step; the later
    record wins where a step appears twice (a resumed run)."""
    by_step = {int(r["step"]): float(r[key]) for r in records
               if r.get("kind") == kind and isinstance(r.get(key), (int, float)) and math.isfinite(r[key])}
    steps = sorted(by_step)
    return steps, [by_step[s] for s in steps]


def logged_learning_rates(records: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """(update number, learning rate) from the train records. The trainer logs the scheduler's rate after
    ``scheduler.step()``, which is the rate of the next update: record ``step`` s holds Eq. 3 at s + 1."""
    steps, lrs = series(records, "train", "lr")
    return [(s + 1, lr) for s, lr in zip(steps, lrs, strict=True)]


def plot_curves(records: list[dict[str, Any]], title: str = "Training curves") -> Figure:
    """Four panels over training steps: train and validation loss, validation BLEU, tokens/s and the
    learning rate.

    Args:
        records: from :func:`read_metrics`.
        title: the figure's title (e.g. the run directory).
    """
    fig = new_figure(11.0, 7.5)
    (ax_loss, ax_bleu), (ax_speed, ax_lr) = fig.subplots(2, 2, sharex=True)
    panels = [
        (ax_loss, "loss per target token (label-smoothed)",
         [("train", "loss", "train", _TRAIN), ("valid", "loss", "validation", _VALID)]),
        (ax_bleu, "validation BLEU", [("valid", "bleu", "validation BLEU", _VALID)]),
        (ax_speed, "tokens/s (source + target)", [("train", "tokens_per_s", "train", _TRAIN)]),
        (ax_lr, "learning rate (Eq. 3)", [("train", "lr", "train", _TRAIN)]),
    ]
    for ax, ylabel, lines in panels:
        drawn = False
        for kind, key, label, color in lines:
            if key == "lr":
                x, y = [s for s, _ in logged_learning_rates(records)], [lr for _, lr in logged_learning_rates(records)]
            else:
                x, y = series(records, kind, key)
            if x:
                ax.plot(x, y, "o-" if kind == "valid" else "-", ms=4, color=color, label=label)
                drawn = True
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not in metrics.jsonl", transform=ax.transAxes, ha="center", color="grey")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    ax_loss.set_title("loss (train: mean since the last log line)", fontsize=9)
    ax_bleu.set_title("BLEU of greedy translations of validation sentences", fontsize=9)
    ax_speed.set_title("training throughput", fontsize=9)
    ax_lr.set_title("learning rate of each update", fontsize=9)
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    for ax in (ax_speed, ax_lr):
        ax.set_xlabel("training step")
    set_title(fig, title, fontsize=12)
    return fig
