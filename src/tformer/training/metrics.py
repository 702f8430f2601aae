"""What a run reports as it trains: ``metrics.jsonl`` (one JSON object per line), TensorBoard events when
``train.tensorboard`` is true, and the log window that sums the updates between two ``train`` lines.

Records have a ``kind``: ``train`` (the window's loss, perplexity, learning rate and speed, and each auxiliary
loss inside the loss by name, e.g. ``guided_attention``, per target token; under fp16 also the gradient scaler's
``loss_scale``), ``valid`` (see :meth:`tformer.training.trainer.Trainer.validate`) or ``skip``
(an update skipped for a non-finite loss or gradient; under fp16 an overflow, with the ``loss_scale`` it
overflowed at). Only rank 0 writes. A resumed run first drops the lines written after its checkpoint, which it
writes again, so the file of a resumed run equals that of a run never stopped.

TensorBoard (``pip install 'tformer[tensorboard]'``; ``tensorboard --logdir RUN/tensorboard``) gets every number
of every record as the scalar ``KIND/NAME`` at the record's step: ``train/loss``, ``train/ppl``, ``train/lr``,
``train/tokens_per_s``, ``train/tgt_tokens_per_s``, ``valid/loss``, ``valid/ppl``, ``valid/bleu`` (translation),
``valid/accuracy``, ... A resumed run starts a new event file that hides the events after its checkpoint
(``purge_step``), so TensorBoard shows each step once, as written by the resumed run.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from tformer.errors import ConfigError
from tformer.io.files import atomic_write_text

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
COUNTERS = ("step", "epoch", "batch_in_epoch")  # where a record is, not what it measures: no TensorBoard scalar


def check_tensorboard() -> None:
    """Raise a one-line error unless TensorBoard can be written (``train.tensorboard: true`` asks for it). An
    error, not a warning: the run stops before any work, rather than ending without the curves asked for."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError("train.tensorboard is true but tensorboard is not installed: pip install "
                          "'tformer[tensorboard]', or set train.tensorboard: false") from None


@dataclass
class LogWindow:
    """Sums since the last ``train`` line of metrics.jsonl; a checkpoint carries them (exact resume)."""

    loss: float | Tensor = 0.0  # summed on the device; read at log time (no sync per step)
    nll: float | Tensor = 0.0
    tgt: int = 0
    src: int = 0
    t0: float = field(default_factory=time.perf_counter)
    terms: dict[str, float | Tensor] = field(default_factory=dict)  # auxiliary losses by name, summed

    def add(self, loss: float | Tensor, nll: float | Tensor, tgt: int, src: int,
            terms: dict[str, float | Tensor] | None = None) -> None:
        """Count one update: its summed loss and NLL, target and source tokens, and its summed auxiliary losses
        (:attr:`~tformer.training.label_smoothing.LossOutput.terms`)."""
        self.loss, self.nll, self.tgt = self.loss + loss, self.nll + nll, self.tgt + tgt
        self.src += src
        for name, value in (terms or {}).items():
            self.terms[name] = self.terms.get(name, 0.0) + value

    def record(self, step: int, epoch: int, lr: float) -> dict[str, Any]:
        """The ``train`` record of the window: mean loss per target token, perplexity, tokens per second."""
        dt = max(time.perf_counter() - self.t0, 1e-9)
        tgt = max(self.tgt, 1)
        return {"kind": "train", "step": step, "epoch": epoch, "loss": float(self.loss) / tgt,
                "ppl": math.exp(min(float(self.nll) / tgt, 50.0)), "lr": lr, "tgt_tokens_per_s": self.tgt / dt,
                "tokens_per_s": (self.tgt + self.src) / dt,
                **{name: float(value) / tgt for name, value in self.terms.items()}}

    def state_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "nll": self.nll, "tgt": self.tgt, "src": self.src, "terms": dict(self.terms)}


class MetricsLog:
    """``metrics.jsonl`` and (with ``tensorboard``) the TensorBoard events of a run directory; does nothing where
    ``enabled`` is False (the ranks other than 0)."""

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = False) -> None:
        self.path, self.run_dir, self.enabled = run_dir / METRICS_FILE, run_dir, enabled
        self.use_tensorboard = tensorboard
        self.tensorboard = None

    def open_tensorboard(self, step: int) -> None:
        """Start TensorBoard events in ``RUN/tensorboard`` for a run at ``step`` (if asked for)."""
        if not self.use_tensorboard:
            return
        check_tensorboard()  # on every rank: all stop alike
        if not self.enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        # a resumed run hides the events after its checkpoint (a killed run may have written some): it writes
        # them again
        self.tensorboard = SummaryWriter(str(self.run_dir / TENSORBOARD_DIR), purge_step=step + 1 if step else None)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in COUNTERS:
                    self.tensorboard.add_scalar(f"{record['kind']}/{k}", v, record["step"])

    def truncate(self, step: int, position: tuple[int, int] | None = None) -> int:
        """Drop the lines after ``step`` (and a line cut short by a kill): the resumed run writes them again.
        A ``skip`` record of the next update stays if its batches are at or before ``position`` (epoch, batch in
        epoch) of the checkpoint: a stop during a skipped update saves after it, and the resumed run goes on
        from there. Returns how many were dropped."""
        if not self.enabled or not self.path.is_file():
            return 0
        keep, dropped = [], 0
        for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                rec = json.loads(line)
                ok = rec.get("step", 0) <= step or (position is not None and rec.get("kind") == "skip"
                                                    and (rec["epoch"], rec["batch_in_epoch"]) <= position)
            except (json.JSONDecodeError, AttributeError, KeyError, TypeError):
                ok = False
            if ok:
                keep.append(line)
            else:
                dropped += 1
        if dropped:
            atomic_write_text(self.path, "".join(f"{line}\n" for line in keep))
        return dropped

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
