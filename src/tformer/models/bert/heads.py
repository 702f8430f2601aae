"""The heads on the encoder-only model (BERT: Devlin et al., 2019, §3.1 and Figure 4).

    hidden ─► MaskedLMHead ─► logits over the vocabulary, per position          (masked language modelling)
    hidden ─► pool ("cls" / masked "mean" / BERT's "pooler") ─► Dropout ─► Linear ─► class logits

Shape legend: B batch, S length, D d_model, V vocabulary, C classes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from tformer.io.pretrained import Pretrained
from tformer.models.bert.config import ClassifierConfig, EncoderOnlyConfig
from tformer.models.bert.model import EncoderOnly, init_bert, mean_pool
from tformer.nn.dropout import Dropout
from tformer.nn.feedforward import ACTIVATION_FUNCTIONS


class MaskedLMHead(nn.Module):
    """BERT's masked-LM head: LayerNorm(act(dense(h))), then the token embedding matrix (tied) plus a bias."""

    def __init__(self, cfg: EncoderOnlyConfig, token_embedding: nn.Parameter) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.d_model, cfg.d_model)
        self.activation = ACTIVATION_FUNCTIONS[cfg.activation]
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.output = nn.Linear(cfg.d_model, cfg.vocab_size)
        init_bert(self, cfg.init_std)
        self.output.weight = token_embedding  # tied (V, D), as BERT's decoder

    def forward(self, hidden: Tensor) -> Tensor:
        return self.output(self.norm(self.activation(self.dense(hidden))))  # (B, S, D) -> (B, S, V)


class SequenceClassifier(nn.Module):
    """Pool the hidden states into one vector per sequence, dropout, linear map to C logits."""

    def __init__(self, d_model: int, head: ClassifierConfig, init_std: float = 0.02) -> None:
        super().__init__()
        self.pooling = head.pooling
        self.pooler = nn.Linear(d_model, d_model) if head.pooling == "pooler" else None  # BERT's tanh pooler
        self.dropout = Dropout(head.dropout)
        self.proj = nn.Linear(d_model, head.num_classes)
        init_bert(self, init_std)

    def forward(self, hidden: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """hidden (B, S, D), attention_mask (B, S) or None -> logits (B, C)."""
        if self.pooling == "mean":
            pooled = mean_pool(hidden, attention_mask)  # (B, D)
        else:
            pooled = hidden[:, 0]  # (B, D): the first position ([CLS])
            if self.pooler is not None:
                pooled = torch.tanh(self.pooler(pooled))
        return self.proj(self.dropout(pooled))  # (B, C)


class EncoderOnlyForMaskedLM(Pretrained, nn.Module):
    """:class:`EncoderOnly` + :class:`MaskedLMHead`: logits (B, S, V) at every position (BERT pre-training)."""

    config_class = EncoderOnlyConfig
    legacy_section = "encoder"

    def __init__(self, encoder: EncoderOnly | EncoderOnlyConfig) -> None:
        super().__init__()
        self.encoder = encoder if isinstance(encoder, EncoderOnly) else EncoderOnly(encoder)
        self.cfg = self.encoder.cfg
        self.head = MaskedLMHead(self.cfg, self.encoder.embeddings.tokens.weight)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
        *, need_weights: bool = False,
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Logits (B, S, V) (and each layer's attention weights if asked); arguments as :meth:`EncoderOnly.forward`."""
        out = self.encoder(input_ids, attention_mask, token_type_ids, need_weights=need_weights)
        if need_weights:
            return self.head(out[0]), out[1]
        return self.head(out)


class EncoderOnlyForClassification(Pretrained, nn.Module):
    """:class:`EncoderOnly` + :class:`SequenceClassifier`: logits (B, C) per sequence.

    Args:
        encoder: a config (a fresh encoder) or a built, e.g. pretrained, :class:`EncoderOnly`.
        num_classes: C.
        pooling: "cls", "mean" (over real tokens) or "pooler" (BERT's tanh pooler on [CLS]).
        dropout: before the final linear layer; None = the encoder's dropout (as BERT).

    Its ``config.json`` holds the head's :class:`ClassifierConfig` as the section "classifier".
    """

    config_class = EncoderOnlyConfig
    sections = {"classifier": ClassifierConfig}
    legacy_section = "encoder"

    def __init__(self, encoder: EncoderOnly | EncoderOnlyConfig, num_classes: int, *, pooling: str = "cls",
                 dropout: float | None = None) -> None:
        super().__init__()
        self.encoder = encoder if isinstance(encoder, EncoderOnly) else EncoderOnly(encoder)
        self.cfg = self.encoder.cfg
        self.head_cfg = ClassifierConfig(num_classes, pooling, self.cfg.dropout if dropout is None else dropout)
        self.head = SequenceClassifier(self.cfg.d_model, self.head_cfg, self.cfg.init_std)

    def config_sections(self) -> dict[str, dict[str, Any]]:
        return {"classifier": self.head_cfg.to_dict()}

    @classmethod
    def from_config(cls, cfg: EncoderOnlyConfig, sections: dict[str, Any]) -> EncoderOnlyForClassification:
        head = sections["classifier"]
        return cls(cfg, head.num_classes, pooling=head.pooling, dropout=head.dropout)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
        *, need_weights: bool = False,
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Logits (B, C) (and each layer's attention weights if asked); arguments as :meth:`EncoderOnly.forward`."""
        out = self.encoder(input_ids, attention_mask, token_type_ids, need_weights=need_weights)
        hidden = out[0] if need_weights else out
        logits = self.head(hidden, attention_mask)
        return (logits, out[1]) if need_weights else logits
