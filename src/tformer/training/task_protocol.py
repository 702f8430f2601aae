"""What the trainer needs from a task: its examples' lengths, batches, loss, validation metrics and final report.

:class:`tformer.tasks.base.Task` (the base class every task of ``tformer train`` extends) implements this
protocol; the trainer sees only the protocol, so that training imports no task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from tformer.training.label_smoothing import LossOutput


class TaskBatch(Protocol):
    """A padded batch. ``num_tgt_tokens`` is what the loss is averaged over (target tokens, or examples);
    ``num_src_tokens`` counts the other tokens the model read (for tokens/s)."""

    num_src_tokens: int
    num_tgt_tokens: int

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TaskBatch: ...


class TrainingTask(Protocol):
    """A kind of training, as the loop sees it.

    Examples are batched by :class:`tformer.data.batching.TokenBatchSampler` from two length lists
    (a pair's source and target lengths; a single sequence, or an image's patch count, on one side
    and 0 on the other), so every task gets token-budget batches and an exact position to resume at.
    """

    name: str  # "translation", ...
    unit: str  # what an example is called in log lines: "pairs", "sentences", "images"

    def lengths(self, split: str) -> tuple[list[int], list[int]]:
        """Source-side and target-side lengths of the ``"train"`` or ``"valid"`` examples."""
        ...

    def collate(self, split: str, indices: list[int], model: nn.Module) -> TaskBatch:
        """The batch of these examples of ``split``."""
        ...

    def loss(self, model: nn.Module, batch: TaskBatch, label_smoothing: float) -> LossOutput:
        """Summed training loss of a batch (and the summed NLL, for perplexity)."""
        ...

    def extra_validation(self, model: nn.Module, device: torch.device, max_tokens: int) -> dict[str, Any]:
        """Metrics beyond loss and perplexity (BLEU, accuracy), on the validation data."""
        ...

    def final_report(self, run_dir: Path, device: torch.device, max_tokens: int) -> dict[str, Any]:
        """Numbers for the run's summary, from the best model in ``run_dir / "model"`` (e.g. test accuracy)."""
        ...
