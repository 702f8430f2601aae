"""The read-outs of speech recognition (:mod:`tformer.tasks.asr`): how the Conformer encoder's frames become
characters. ``ctc``: :class:`CTCReadOut` (CTC, Graves et al., 2006); ``attention``: :class:`AttentionReadOut` (the
paper's Transformer decoder over the frames, optionally joint with CTC). Each names its model class, special
tokens, loss and alignment picture; :data:`ASR_MODELS` maps ``asr.model`` to one.

Shape legend: B utterances, T frames (padded), M mel channels, T' encoder frames, L characters (padded), V vocabulary.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import torch
from torch import Tensor, nn

from tformer.config import CrossAttentionConfig
from tformer.data.audio import frame_mask
from tformer.models.conformer import ConformerConfig
from tformer.models.conformer.asr import ConformerSeq2Seq
from tformer.models.conformer.ctc import ConformerCTC
from tformer.nn.cache import MonotonicWindow
from tformer.registry import Registry
from tformer.training import guided_attention
from tformer.training.config import GuidedAttentionConfig
from tformer.training.label_smoothing import LossOutput

if TYPE_CHECKING:
    from tformer.tasks.asr_features import CharVocabulary


class ReadOutSettings(Protocol):
    """What a read-out's model is built from in the ``asr`` section (:class:`~tformer.tasks.asr.AsrSettings`)."""

    decoder_layers: int
    ctc_weight: float
    cross_attention: CrossAttentionConfig


@dataclass(frozen=True)
class AsrBatch:
    """One training or validation batch of the asr task (the decoding engines take a
    :class:`~tformer.models.conformer.asr.SpeechBatch`)."""

    features: Tensor  # (B, T, M), right-padded with zeros
    lengths: Tensor  # (B,) frames of each utterance
    targets: Tensor  # (B, L) character ids, right-padded with 0
    target_lengths: Tensor  # (B,)
    num_src_tokens: int  # frames read
    num_tgt_tokens: int  # what the loss is averaged over: utterances (CTC) or output tokens (attention)

    def to(self, device, non_blocking: bool = False) -> AsrBatch:
        f, n, y, m = (t.to(device, non_blocking=non_blocking)
                      for t in (self.features, self.lengths, self.targets, self.target_lengths))
        return AsrBatch(f, n, y, m, self.num_src_tokens, self.num_tgt_tokens)


class ReadOut(ABC):
    """How the encoder's frames become characters: the model class, its special tokens and its loss. Both models
    decode with ``model.transcribe(features, lengths, beam_size)`` (beam 1 = greedy)."""

    model_class: ClassVar[type[nn.Module]]
    specials: ClassVar[tuple[str, ...]]
    default_beam: ClassVar[int]
    alignment_kind: ClassVar[str]

    @classmethod
    @abstractmethod
    def build(cls, cfg: ConformerConfig, vocab: CharVocabulary, settings: ReadOutSettings) -> nn.Module: ...

    @classmethod
    @abstractmethod
    def loss_units(cls, target_lengths: Tensor) -> int:
        """What a batch's loss is averaged over."""

    @classmethod
    @abstractmethod
    def loss(cls, model: nn.Module, batch: AsrBatch, eps: float, guided: GuidedAttentionConfig | None = None
             ) -> LossOutput:
        """The batch's loss summed over its :meth:`loss_units`, and the NLL; with ``guided`` (attention only) plus
        the guided attention loss."""

    @classmethod
    @abstractmethod
    def alignment(cls, model: nn.Module, features: Tensor, lengths: Tensor, ids: list[int],
                  window: MonotonicWindow | None = None) -> tuple[list[Tensor], list[int]]:
        """What ties a transcript ``ids`` of one utterance to its frames: per layer (H, rows, T') weights, and the
        token of each row; under a monotonic ``window`` if given (a read-out that decodes under one)."""


class CTCReadOut(ReadOut):
    """:class:`ConformerCTC`: a linear layer and a softmax per encoder frame; CTC's loss; greedy or prefix beam."""

    model_class = ConformerCTC
    specials = ("<blank>",)
    default_beam = 8
    alignment_kind = "CTC posteriors"

    @classmethod
    def build(cls, cfg, vocab, settings):
        return ConformerCTC(cfg, vocab.size, blank_id=0)

    @classmethod
    def loss_units(cls, target_lengths):
        return len(target_lengths)  # utterances: CTC's loss is per utterance, divided by its length

    @classmethod
    def loss(cls, model, batch, eps, guided=None):
        mean = model.loss(batch.features, batch.lengths, batch.targets, batch.target_lengths)
        loss = mean.float() * batch.num_tgt_tokens  # summed over the utterances
        return LossOutput(loss, loss.detach(), batch.num_tgt_tokens)

    @classmethod
    def alignment(cls, model, features, lengths, ids, window=None):
        posteriors = model(features, lengths)[0][0].exp().T  # (V, T'): P(token | frame), one "layer" and "head"
        rows = [v for v in range(len(posteriors)) if v == 0 or float(posteriors[v].max()) >= 0.01]  # blank + seen
        return [posteriors[rows][None]], rows  # (1, rows, T')


class AttentionReadOut(ReadOut):
    """:class:`ConformerSeq2Seq`: the paper's decoder over the encoder's frames (label-smoothed cross-entropy, and
    ``ctc_weight`` x CTC on the encoder when > 0); greedy or beam search."""

    model_class = ConformerSeq2Seq
    specials = ("<pad>", "<bos>", "<eos>")  # pad is also the blank of the CTC head
    default_beam = 4
    alignment_kind = "cross-attention"

    @classmethod
    def build(cls, cfg, vocab, settings):
        return ConformerSeq2Seq(cfg, vocab.size, decoder_layers=settings.decoder_layers, pad_id=0, bos_id=1, eos_id=2,
                                ctc_weight=settings.ctc_weight, blank_id=0, cross_attention=settings.cross_attention)

    @classmethod
    def loss_units(cls, target_lengths):
        return int(target_lengths.sum()) + len(target_lengths)  # the characters and an EOS each

    @staticmethod
    def teacher_forcing(targets: Tensor, target_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """(B, L) characters padded with 0 -> decoder input BOS + y and labels y + EOS, (B, L + 1) each."""
        b = targets.shape[0]
        tgt_in = torch.cat([targets.new_full((b, 1), 1), targets], dim=1)  # (B, L + 1)
        tgt_out = torch.cat([targets, targets.new_zeros((b, 1))], dim=1)  # (B, L + 1)
        tgt_out[torch.arange(b, device=targets.device), target_lengths] = 2  # EOS after the last character
        return tgt_in, tgt_out

    @classmethod
    def loss(cls, model, batch, eps, guided=None):
        """The joint loss summed over the target tokens; with ``guided``, plus ``guided.weight`` x the guided
        attention loss per token on the probed cross-attention weights (B, H', L + 1, T') of the same pass."""
        tgt_in, tgt_out = cls.teacher_forcing(batch.targets, batch.target_lengths)
        probe = None if guided is None else guided_attention.probe(guided)
        out = model.loss_terms(batch.features, batch.lengths, tgt_in, tgt_out, eps, cross_attention=probe)
        summed = LossOutput(out.loss * out.num_tokens, out.nll, out.num_tokens)  # per target token -> summed
        if guided is None:
            return summed
        frames = frame_mask(out.frame_lengths, out.cross_weights[0].shape[-1])  # (B, T') True = a real frame
        return guided_attention.with_guided_attention(summed, out.cross_weights, frames, tgt_out != 0, guided)

    @classmethod
    def alignment(cls, model, features, lengths, ids, window=None):
        tgt_in = torch.tensor([[1, *ids]], device=features.device)  # (1, L + 1): BOS + the transcript
        layers = model.cross_attention(features, lengths, tgt_in, window)  # per layer (1, H, L + 1, T')
        return [w[0] for w in layers], [*ids, 2]  # row i predicts character i, the last EOS


ASR_MODELS: Registry[type[ReadOut]] = Registry("model", {"ctc": CTCReadOut, "attention": AttentionReadOut})
"""``asr.model`` -> the read-out."""
