"""The Conformer encoder (Gulati et al., 2020, §2, Fig. 1): log-mel features -> one d_model vector per 40 ms.

    features (B, T, n_mels) -> convolutional subsampling (4x fewer frames) -> Linear -> Dropout
                            -> num_layers Conformer blocks (Eq. 1)                  -> (B, T', D)

Registries choose the parts (:class:`ConformerConfig`): the front end (``subsampling``: 4, or 1 = a linear map of
each frame), the positions (``positional``) and the block (``block``: the Conformer's, or the plain Transformer
encoder layer for a baseline of the same shape).

SpecAugment (Fig. 1's first box) is a training-time transform of the features, in
:mod:`tformer.data.audio` with the log-mel filterbanks it applies to.

Lengths travel with the frames: the front end computes the output lengths from the input lengths
(:func:`~tformer.models.conformer.subsampling.subsampled_lengths`), and every block masks padded frames out of
attention and out of its convolution, so a padded batch gives each utterance the outputs it has alone.

* :class:`ConformerConfig` (:mod:`tformer.models.conformer.config`): the frozen, validated configuration.
* :class:`ConformerEncoder`: features and lengths -> frames and lengths; ``encode_frames`` runs the blocks alone
  (the part Hugging Face's ``Wav2Vec2ConformerEncoder`` shares, :mod:`tformer.interop.conformer`).

Shape legend: B batch, T input frames, T' = ((T - 1) // 2 - 1) // 2 frames after subsampling, D d_model,
H heads.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tformer.data.audio import frame_mask
from tformer.io.pretrained import Pretrained
from tformer.models.conformer.blocks import CONFORMER_BLOCKS
from tformer.models.conformer.config import ConformerConfig
from tformer.models.conformer.positional import CONFORMER_POSITIONAL
from tformer.models.conformer.subsampling import FRONT_ENDS
from tformer.nn.dropout import Dropout


class ConformerEncoder(Pretrained, nn.Module):
    """Log-mel features (B, T, n_mels) and their lengths -> encoder frames (B, T', D) and theirs (Fig. 1)."""

    config_class = ConformerConfig
    parts = {"ConformerClassifier": "encoder.", "ConformerCTC": "encoder.",  # the encoder of a classifier's
             "ConformerSeq2Seq": "encoder."}  # or of a recognizer's folder

    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.front_end = FRONT_ENDS.lookup(str(cfg.subsampling))
        self.subsampling = self.front_end.build(cfg)
        self.dropout = Dropout(cfg.dropout)
        self.positional = CONFORMER_POSITIONAL.lookup(cfg.positional)
        block = CONFORMER_BLOCKS.lookup(cfg.block)
        self.blocks = nn.ModuleList(block(cfg) for _ in range(cfg.num_layers))

    def forward(self, features: Tensor, lengths: Tensor | None = None, need_weights: bool = False
                ) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, list[Tensor]]:
        """Encode a right-padded batch of feature sequences.

        Args:
            features: (B, T, n_mels) float, e.g. from :func:`tformer.data.audio.log_mel`.
            lengths: (B,) int64 real frames of each row (None = all T); each at least ``cfg.min_frames`` (7 with
                4x subsampling).
            need_weights: also return every block's self-attention weights, (B, H, T', T') each.

        Returns:
            frames (B, T', D) (rows past a length hold padding: read them with the lengths), lengths (B,) of
            T' = ((T - 1) // 2 - 1) // 2 real frames each (T with ``subsampling`` 1), and the weights if asked.

        Raises:
            ValueError: features of the wrong shape, or a length out of [7, T].
        """
        lengths = self._checked_lengths(features, lengths)
        x, lengths = self.subsampling(features, lengths)  # (B, T', D), (B,)
        return self.encode_frames(self.dropout(x), lengths, need_weights)

    def encode_frames(self, x: Tensor, lengths: Tensor | None = None, need_weights: bool = False
                      ) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, list[Tensor]]:
        """The Conformer blocks alone: frames x (B, T', D) with ``lengths`` (B,) (None = all real) -> the same as
        :meth:`forward` returns."""
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device)
        real = frame_mask(lengths, x.shape[1])  # (B, T'), True = a real frame
        x = self.positional.embed(x)  # absolute positions added ("sinusoidal"), else x itself
        positional = self.positional.inputs(x)  # what every block's attention reads (R of the distances)
        weights = []
        for block in self.blocks:
            x, w = block(x, real, positional=positional, need_weights=need_weights)
            weights.append(w)
        return (x, lengths, weights) if need_weights else (x, lengths)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Encoder frames of inputs of ``lengths`` frames (B,): ((L - 1) // 2 - 1) // 2 with 4x subsampling, L
        with none (what CTC needs)."""
        return self.front_end.lengths(lengths)

    def _checked_lengths(self, features: Tensor, lengths: Tensor | None) -> Tensor:
        b, t, f = features.shape if features.dim() == 3 else (0, 0, 0)
        if features.dim() != 3 or f != self.cfg.n_mels:
            raise ValueError(f"expected features of shape (B, T, {self.cfg.n_mels}), got {tuple(features.shape)}")
        if lengths is None:
            lengths = torch.full((b,), t, dtype=torch.long, device=features.device)
        if lengths.shape != (b,):
            raise ValueError(f"expected lengths of shape ({b},), got {tuple(lengths.shape)}")
        low = self.cfg.min_frames
        if b and (int(lengths.min()) < low or int(lengths.max()) > t):
            raise ValueError(f"every length must be in [{low}, {t}] (the subsampling needs {low} frames for one), "
                             f"got {lengths.tolist()}")
        return lengths
