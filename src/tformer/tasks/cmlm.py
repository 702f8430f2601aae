"""Non-autoregressive translation: train the conditional masked language model
(:class:`tformer.models.cmlm.model.CMLM`).

Data, tokenizer and filtering are translation's (:func:`tformer.tasks.translation.prepare_data`). A batch hides
n ~ U{1, ..., |y|} random tokens of each target behind ``<mask>`` (drawn when the batch is made: from the
training RNG, which checkpoints save, for training batches; from a fixed seed per batch for validation, so
the validation loss is comparable across the run). The loss, summed over the hidden tokens (which the trainer
divides by), is

    label-smoothed CE of the hidden tokens  +  length_loss_weight * CE(length predictor, |y|)

Both terms are sums over the batch (tokens, sentences), and the trainer divides the total by the hidden tokens,
so the length term weighs length_loss_weight per sentence against each hidden token. Mask-Predict's fairseq code
adds 0.1 x the per-sentence mean to the per-token mean instead, a weight about (|y| + 1) / 2 times larger
(~8x on Multi30k); raise ``length_loss_weight`` to match it.

Validation adds the BLEU of mask-predict translations (``cmlm.iterations`` rounds, ``cmlm.length_candidates``
lengths) of the first ``cmlm.bleu_samples`` validation sentences.

The config: ``task: cmlm`` and its section ``cmlm: {iterations: 10, length_candidates: 3}`` (and translation's
``bleu_samples``, ``bleu_tokenize``); ``model`` holds a preset and :class:`tformer.models.cmlm.config.CMLMConfig`
fields.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tformer.config import check
from tformer.models.cmlm.config import CMLMConfig
from tformer.models.cmlm.model import CMLM
from tformer.tasks.registry import register
from tformer.tasks.translation import TranslationSettings, TranslationTask
from tformer.training.config import RunConfig
from tformer.training.label_smoothing import LossOutput, linear_label_smoothed_loss
from tformer.translator import Translator

VALID_MASK_SEED = 1234  # validation batches hide the same tokens at every validation


@dataclass
class MaskedBatch:
    """Pairs for the CMLM, all tensors int64.

    ``tgt_in`` is the target (no BOS, no EOS) with the hidden tokens replaced by ``mask_id``; ``tgt_out`` holds
    the hidden tokens where ``tgt_in`` has ``mask_id`` and pad elsewhere (only hidden tokens are scored).
    """

    src: Tensor  # (B, S) source ids + EOS, right-padded
    tgt_in: Tensor  # (B, T) target with <mask> at the hidden positions, right-padded
    tgt_out: Tensor  # (B, T) the hidden tokens, pad elsewhere
    lengths: Tensor  # (B,) target lengths |y|
    num_src_tokens: int
    num_tgt_tokens: int  # hidden tokens: what the loss is averaged over

    def to(self, device: torch.device | str, non_blocking: bool = False) -> MaskedBatch:
        move = {k: getattr(self, k).to(device, non_blocking=non_blocking) for k in ("src", "tgt_in", "tgt_out",
                                                                                    "lengths")}
        return MaskedBatch(**move, num_src_tokens=self.num_src_tokens, num_tgt_tokens=self.num_tgt_tokens)


def hide_tokens(tgt: Tensor, pad_id: int, mask_id: int, generator: torch.Generator | None = None
                ) -> tuple[Tensor, Tensor]:
    """CMLM's training corruption of targets ``tgt`` (B, T) (right-padded): per row draw n ~ U{1..|y|} and hide
    n positions chosen uniformly. Returns (decoder input with ``mask_id`` there, the hidden tokens with pad
    elsewhere)."""
    real = tgt != pad_id  # (B, T)
    lengths = real.sum(dim=1)  # (B,)
    u = torch.rand(tgt.shape, generator=generator)  # (B, T) random order of the positions
    n = (torch.rand(lengths.shape, generator=generator) * lengths).long() + 1  # (B,) uniform in 1..|y|
    rank = u.masked_fill(~real, 2.0).argsort(dim=1).argsort(dim=1)  # pads rank last
    hidden = (rank < n[:, None]) & real
    return tgt.masked_fill(hidden, mask_id), tgt.masked_fill(~hidden, pad_id)


def cmlm_loss(model: CMLM, batch: MaskedBatch, eps: float) -> LossOutput:
    """The summed loss of the hidden tokens plus the weighted length loss (the pre-softmax layer fused into
    the token loss, as in translation); ``nll`` is the hidden tokens' alone."""
    memory = model.encode(batch.src)
    hidden = model.decoder_states(batch.tgt_in, memory, batch.src)  # (B, T, D)
    weight, bias = model.output_weight()
    out = linear_label_smoothed_loss(hidden, weight, bias, batch.tgt_out, eps, model.cfg.pad_id)
    length_logits = model.predict_length(memory, batch.src).float()  # (B, L + 1)
    lengths = batch.lengths.clamp(max=model.cfg.max_target_len)
    length_loss = torch.nn.functional.cross_entropy(length_logits, lengths, reduction="sum")
    return LossOutput(loss=out.loss + model.cfg.length_loss_weight * length_loss, nll=out.nll,
                      num_tokens=out.num_tokens)


@dataclass(frozen=True)
class CMLMSettings(TranslationSettings):
    """The ``cmlm`` section: translation's settings, and how validation decodes.

    Attributes:
        iterations: the mask-predict rounds of the validation translations.
        length_candidates: the target lengths tried per sentence (the length predictor's best).
    """

    iterations: int = 10
    length_candidates: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.iterations >= 1 and self.length_candidates >= 1,
              "iterations and length_candidates must be >= 1")


@register
class CMLMTask(TranslationTask):
    """Parallel text -> :class:`CMLM` (see the module docstring)."""

    name = "cmlm"
    Settings = CMLMSettings
    model_class = CMLM
    config_class = CMLMConfig
    guides_attention = False  # its loss is mask-predict's (no guided attention loss)
    restricts_output_vocab = False  # its model is not the Transformer

    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        """Translation's checks, and the model section as a :class:`CMLMConfig` (one-line ConfigError)."""
        m = cls.checked_model_config(cfg)
        check(cfg.data.max_len <= m.max_target_len,
              f"data.max_len ({cfg.data.max_len}) exceeds model.max_target_len ({m.max_target_len}): the length "
              f"predictor could not name the longest targets")

    def collate(self, split: str, indices: list[int], model: CMLM) -> MaskedBatch:
        cfg = model.cfg
        pairs = super().collate(split, indices, model)  # translation's batch: src + EOS, tgt_out = y + EOS
        tgt = pairs.tgt_out.masked_fill(pairs.tgt_out == cfg.eos_id, cfg.pad_id)[:, :-1]  # (B, T) y alone
        generator = None
        if split != "train":
            generator = torch.Generator().manual_seed(VALID_MASK_SEED + indices[0])
        tgt_in, tgt_out = hide_tokens(tgt, cfg.pad_id, cfg.mask_id, generator)
        return MaskedBatch(pairs.src, tgt_in, tgt_out, (tgt != cfg.pad_id).sum(dim=1),
                           num_src_tokens=pairs.num_src_tokens, num_tgt_tokens=int((tgt_out != cfg.pad_id).sum()))

    def loss(self, model: CMLM, batch: MaskedBatch, label_smoothing: float) -> LossOutput:
        return cmlm_loss(model, batch, label_smoothing)

    def translate(self, model: CMLM, sources: list[str], device: torch.device, max_tokens: int) -> list[str]:
        """How validation translates: mask-predict, ``iterations`` rounds, ``length_candidates`` lengths."""
        return Translator(model, self.data.vocabs, device).translate(
            sources, iterations=self.settings.iterations, length_candidates=self.settings.length_candidates,
            max_tokens=max_tokens)
