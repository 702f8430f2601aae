"""Speech recognition with a CTC head on the Conformer encoder (Graves et al., 2006, "Connectionist Temporal
Classification"), and the CTC pieces the attention model's joint loss shares (:mod:`.asr`).

    ConformerCTC   features (B, T, M) -> ConformerEncoder -> frames (B, T', D) -> Linear -> log-softmax (B, T', V)
                   trained with CTC, decoded greedily or by prefix beam search (:mod:`tformer.generation.ctc`).

Lengths travel with the features: the encoder's output lengths mask the padded frames out of the loss and the
decodings, so an utterance's outputs do not depend on its batch. The model saves and loads as the other families
(:class:`~tformer.io.pretrained.Pretrained`): ``config.json`` holds the :class:`ConformerConfig` and a "ctc"
section (:class:`CTCConfig`).

Shape legend: B batch, T input frames, M mel channels, T' encoder frames, D d_model, L target length,
V vocabulary (the blank included).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tformer.config import Config, check
from tformer.generation import Capabilities, Feature
from tformer.generation.ctc import ctc_greedy, ctc_prefix_beam_search, ctc_prefix_beam_search_nbest
from tformer.io.pretrained import Pretrained
from tformer.models.conformer.config import ConformerConfig
from tformer.models.conformer.model import ConformerEncoder
from tformer.nn.linear import Linear
from tformer.nn.modes import eval_mode

__all__ = ["CTCConfig", "ConformerCTC", "at_least_float32", "check_no_classes", "ctc_loss", "log_softmax_float32"]


@dataclass(frozen=True)
class CTCConfig(Config):
    """The CTC output layer: V labels, the blank among them."""

    vocab_size: int
    blank_id: int = 0

    def __post_init__(self) -> None:
        check(self.vocab_size >= 2, f"vocab_size must be >= 2 (the blank and a label), got {self.vocab_size}")
        check(0 <= self.blank_id < self.vocab_size, f"blank_id must be in [0, {self.vocab_size}), got {self.blank_id}")


def check_no_classes(cfg: ConformerConfig, who: str) -> None:
    """Speech recognisers read out a vocabulary: the encoder must have no classifier head."""
    check(cfg.num_classes == 0, f"{who} has an output vocabulary, not classes: set num_classes 0, got "
                                f"{cfg.num_classes}")


def ctc_loss(log_probs: Tensor, frame_lengths: Tensor, targets: Tensor, target_lengths: Tensor, blank: int) -> Tensor:
    """CTC's -log p(y | x) (Graves et al., 2006), each utterance's divided by its target length, mean over the batch
    (``F.ctc_loss``'s "mean"); impossible alignments (a target longer than its frames allow) count 0.

    log_probs (B, T', V), frame_lengths (B,), targets (B, L) padded with anything past target_lengths (B,)."""
    return F.ctc_loss(log_probs.transpose(0, 1), targets, frame_lengths, target_lengths, blank=blank,
                      reduction="mean", zero_infinity=True)  # (T', B, V) as F.ctc_loss reads them


def at_least_float32(x: Tensor) -> Tensor:
    """x in float32, or float64 if it is (softmax and losses of half-precision outputs in float32)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def log_softmax_float32(logits: Tensor) -> Tensor:
    """log-softmax in float32 at least (float64 stays float64)."""
    return at_least_float32(logits).log_softmax(dim=-1)


class ConformerCTC(Pretrained, nn.Module):
    """The Conformer encoder with a linear CTC head: per encoder frame, log-probabilities over the V labels and the
    blank. (The paper's decoder is an RNN transducer; a CTC head is the simplest one, as NeMo's Conformer-CTC.)"""

    config_class = ConformerConfig
    sections = {"ctc": CTCConfig}
    capabilities = Capabilities("a CTC speech recogniser (Conformer)", (Feature.GREEDY, Feature.BEAM, Feature.NBEST))

    def __init__(self, cfg: ConformerConfig, vocab_size: int, blank_id: int = 0) -> None:
        super().__init__()
        check_no_classes(cfg, "ConformerCTC")
        self.cfg = cfg
        self.ctc_cfg = CTCConfig(vocab_size, blank_id)
        self.encoder = ConformerEncoder(cfg)
        self.head = Linear(cfg.d_model, vocab_size)

    def config_sections(self) -> dict[str, dict[str, Any]]:
        return {"ctc": self.ctc_cfg.to_dict()}

    @classmethod
    def from_config(cls, cfg: ConformerConfig, sections: dict[str, Any]) -> ConformerCTC:
        return cls(cfg, **dataclasses.asdict(sections["ctc"]))

    @property
    def blank_id(self) -> int:
        return self.ctc_cfg.blank_id

    def forward(self, features: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """features (B, T, M), lengths (B,) -> log-probabilities (B, T', V) (float32, float64 for a float64 model)
        and the encoder's lengths (B,); frames past a length hold padding."""
        frames, frame_lengths = self.encoder(features, lengths)  # (B, T', D), (B,)
        return log_softmax_float32(self.head(frames)), frame_lengths  # (B, T', V)

    def loss(self, features: Tensor, lengths: Tensor, targets: Tensor, target_lengths: Tensor) -> Tensor:
        """The CTC loss (:func:`ctc_loss`) of targets (B, L) int64 (padded), target_lengths (B,)."""
        log_probs, frame_lengths = self(features, lengths)
        return ctc_loss(log_probs, frame_lengths, targets, target_lengths, self.blank_id)

    @torch.no_grad()
    def transcribe(self, features: Tensor, lengths: Tensor | None = None, beam_size: int = 1,
                   max_len: int | None = None) -> list[list[int]]:
        """Label ids per utterance (blanks and repeats collapsed): greedy with beam 1, prefix beam search otherwise
        (in evaluation mode; the previous mode afterwards). ``max_len`` is unused (CTC emits at most T' labels)."""
        with eval_mode(self):
            log_probs, frame_lengths = self(features, lengths)
        if beam_size == 1:
            return ctc_greedy(log_probs, frame_lengths, self.blank_id)
        return ctc_prefix_beam_search(log_probs, frame_lengths, beam_size, self.blank_id)

    @torch.no_grad()
    def transcribe_nbest(self, features: Tensor, lengths: Tensor | None = None, beam_size: int = 8,
                         nbest: int | None = None) -> list[list]:
        """Prefix beam search's ``nbest`` best :class:`~tformer.generation.ctc.CTCHypothesis` per utterance."""
        with eval_mode(self):
            log_probs, frame_lengths = self(features, lengths)
        return ctc_prefix_beam_search_nbest(log_probs, frame_lengths, beam_size, self.blank_id, nbest)
