"""An utterance classifier on the Conformer encoder (or on its plain-Transformer baseline, ``block: transformer``):

    features (B, T, n_mels), lengths (B,) -> ConformerEncoder -> frames (B, T', D), lengths (B,)
                                          -> mean over each utterance's real frames (B, D) -> Linear -> logits (B, K)

The pooled vector averages the real frames only, so padding changes no utterance's logits. The head starts at
zero (every class equally likely at first), as the Vision Transformer's.

Shape legend: B batch, T input frames, T' encoder frames, D d_model, K classes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tformer.config import check
from tformer.data.audio import frame_mask
from tformer.io.pretrained import Pretrained
from tformer.models.conformer.config import ConformerConfig
from tformer.models.conformer.model import ConformerEncoder
from tformer.nn.modes import eval_mode

__all__ = ["ConformerClassifier", "mean_over_frames"]


def mean_over_frames(frames: Tensor, lengths: Tensor) -> Tensor:
    """The mean of ``frames`` (B, T, D) over the first ``lengths[b]`` frames of each row -> (B, D)."""
    real = frame_mask(lengths, frames.shape[1])[:, :, None].to(frames.dtype)  # (B, T, 1)
    return (frames * real).sum(dim=1) / real.sum(dim=1).clamp(min=1.0)  # (B, D)


class ConformerClassifier(Pretrained, nn.Module):
    """:class:`ConformerEncoder`, the mean of its real frames and a linear head: logits (B, K) per utterance."""

    config_class = ConformerConfig

    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        check(cfg.num_classes >= 1, "ConformerClassifier needs num_classes >= 1 (use ConformerEncoder for no head)")
        self.cfg = cfg
        self.encoder = ConformerEncoder(cfg)
        self.head = nn.Linear(cfg.d_model, cfg.num_classes)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, features: Tensor, lengths: Tensor | None = None) -> Tensor:
        """features (B, T, n_mels), lengths (B,) real frames (None = all T) -> logits (B, K)."""
        frames, frame_lengths = self.encoder(features, lengths)  # (B, T', D), (B,)
        return self.head(mean_over_frames(frames, frame_lengths))  # (B, D) -> (B, K)

    @torch.no_grad()
    def predict(self, features: Tensor, lengths: Tensor | None = None) -> Tensor:
        """The most likely class of each utterance, (B,) int64 (in evaluation mode; the previous mode afterwards)."""
        with eval_mode(self):
            return self(features, lengths).argmax(dim=-1)
