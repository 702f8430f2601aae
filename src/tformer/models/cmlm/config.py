"""The non-autoregressive translator's configuration (Mask-Predict, Ghazvininejad et al., 2019)."""

from __future__ import annotations

from dataclasses import dataclass

from tformer.config import check
from tformer.models.transformer.config import TransformerConfig


@dataclass(frozen=True)
class CMLMConfig(TransformerConfig):
    """The non-autoregressive translator (:class:`tformer.models.cmlm.model.CMLM`): the encoder-decoder of
    :class:`TransformerConfig` whose decoder attends to the whole (partly masked) target, plus a
    target-length predictor on the encoder (Ghazvininejad et al., 2019, "Mask-Predict").

    Attributes (beyond :class:`TransformerConfig`'s):
        max_target_len: the length predictor's classes are 0..max_target_len target tokens (decoding never goes
            past ``max_len`` positions either).
        length_loss_weight: the length predictor's cross-entropy, summed over sentences, is added to the summed
            token loss with this weight (the trainer divides both by the hidden tokens; see :mod:`tformer.tasks.cmlm`).

    The mask token is one more row of the target embedding, id ``target_vocab_size`` (:attr:`mask_id`); the
    output layer never predicts it.
    """

    max_target_len: int = 256
    length_loss_weight: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_at_least(1, "max_target_len")
        self.check_at_least(0, "length_loss_weight")
        check(not self.pointer_generator, "pointer_generator is for the autoregressive decoder, not a CMLM")
        check(self.positional != "relative", "a CMLM needs absolute positions (sinusoidal or learned)")
        check(self.cross_attention.kind == "dot", "a CMLM decodes every position at once: its cross_attention "
                                                  f"kind must be dot, got {self.cross_attention.kind!r}")

    @property
    def mask_id(self) -> int:
        """The id of the mask token: one past the target vocabulary."""
        return self.target_vocab_size
