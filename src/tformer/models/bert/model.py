"""The encoder-only Transformer (BERT: Devlin et al., 2019): the paper's encoder stack (§3.1) on its own,
every position attending to every other one, with heads for masked language modelling, classification
and sentence embeddings.

    input_ids ─► token + position (+ token type) embeddings ─► LayerNorm ─► Dropout ─► N × EncoderLayer ─► hidden
    hidden ─► MaskedLMHead ─► logits over the vocabulary, per position          (masked language modelling)
    hidden ─► pool ("cls" / masked "mean" / BERT's "pooler") ─► Dropout ─► Linear ─► class logits
    hidden ─► masked mean ─► L2 normalisation ─► sentence embedding            (sentence-transformers)

What differs from the paper's encoder, as BERT has it: learned positions (the paper's alternative,
Table 3 row E), token embeddings not scaled by sqrt(d_model), an optional token-type ("segment")
embedding, a LayerNorm on the embedding sum, GELU in the FFN, LayerNorm eps 1e-12, N(0, 0.02) init.
The layers themselves are the toolkit's :class:`~tformer.nn.layers.EncoderLayer`. The heads are in
:mod:`tformer.models.bert.heads`, sentence embeddings in :mod:`tformer.models.bert.sentences`.

Masks: ``attention_mask`` is Hugging Face's (B, S) 1/0 (or True/False): 1 = a real token, 0 = padding.
``None`` means every position is real, as in ``transformers.BertModel``: to hide pads given only the
ids, pass ``input_ids != cfg.pad_id``. It becomes the toolkit's one mask convention once
(:mod:`tformer.nn.masks`: boolean (B, 1, 1, S), True = may attend).

Shape legend: B batch, S length, D d_model, H heads, V vocabulary, C classes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from tformer.errors import TformerError
from tformer.io.pretrained import Pretrained
from tformer.models.bert.config import EncoderOnlyConfig
from tformer.nn.dropout import Dropout
from tformer.nn.embedding import TokenEmbedding
from tformer.nn.gradient_checkpointing import run_layer
from tformer.nn.layers import layer_norm_layer
from tformer.nn.positional import LearnedPositionalEmbedding


# ---- masks and pooling ---------------------------------------------------------------------------
def key_mask(attention_mask: Tensor | None, input_ids: Tensor) -> Tensor | None:
    """Hugging Face's (B, S) 1/0 ``attention_mask`` -> the toolkit's (B, 1, 1, S) boolean, True = may attend.

    None (or a mask with no padding) gives None, "attend everywhere", which keeps the fused attention
    kernel on its fastest path. A row with no real token at all attends everywhere: its output is
    meaningless but finite, where an all-False row would give NaN.
    """
    if attention_mask is None:
        return None
    if tuple(attention_mask.shape) != tuple(input_ids.shape):
        raise TformerError(f"attention_mask has shape {tuple(attention_mask.shape)}, input_ids "
                           f"{tuple(input_ids.shape)}: they must match")
    keep = attention_mask.to(device=input_ids.device, dtype=torch.bool)  # (B, S), nonzero = real token
    if bool(keep.all()):
        return None
    keep = keep | ~keep.any(dim=-1, keepdim=True)
    return keep[:, None, None, :]  # (B, S) -> (B, 1, 1, S)


def mean_pool(hidden: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """The mean of ``hidden`` (B, S, D) over the real tokens of each row -> (B, D).

    ``attention_mask`` (B, S): 1/True = real token; None = every position. Pads contribute nothing,
    whatever they hold (as sentence-transformers' mean pooling, whose denominator is clamped at 1e-9).
    """
    if attention_mask is None:
        return hidden.mean(dim=1)
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, S, 1)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)  # (B, D)


# ---- the encoder ----------------------------------------------------------------------------------
class EncoderOnlyEmbeddings(nn.Module):
    """BERT's input: Dropout(LayerNorm(token + position + token type)); no sqrt(d_model) scaling."""

    def __init__(self, cfg: EncoderOnlyConfig) -> None:
        super().__init__()
        self.tokens = TokenEmbedding(cfg.vocab_size, cfg.d_model, scale=False, std=cfg.init_std)
        self.positions = LearnedPositionalEmbedding(cfg.max_len, cfg.d_model)
        self.token_types = nn.Embedding(cfg.type_vocab_size, cfg.d_model) if cfg.type_vocab_size else None
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.dropout = Dropout(cfg.dropout)
        self.vocab_size, self.max_len = cfg.vocab_size, cfg.max_len

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """input_ids (B, S), token_type_ids (B, S) or None (= type 0) -> (B, S, D)."""
        if input_ids.dim() != 2:
            raise TformerError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
        s = input_ids.shape[1]
        if s > self.max_len:
            raise TformerError(f"sequence of {s} positions exceeds the model's max_len {self.max_len}")
        if input_ids.numel() and not (0 <= int(input_ids.min()) and int(input_ids.max()) < self.vocab_size):
            raise TformerError(f"input_ids must lie in [0, {self.vocab_size}), got {int(input_ids.min())}.."
                               f"{int(input_ids.max())}")
        x = self.tokens(input_ids) + self.positions(s)  # (B, S, D) + (S, D)
        if self.token_types is not None:
            if token_type_ids is None:
                x = x + self.token_types.weight[0]  # (D,): every position is of type 0
            else:
                if tuple(token_type_ids.shape) != tuple(input_ids.shape):
                    raise TformerError(f"token_type_ids has shape {tuple(token_type_ids.shape)}, input_ids "
                                       f"{tuple(input_ids.shape)}: they must match")
                n = self.token_types.num_embeddings
                if token_type_ids.numel() and not (0 <= int(token_type_ids.min()) and int(token_type_ids.max()) < n):
                    raise TformerError(f"token_type_ids must lie in [0, {n})")
                x = x + self.token_types(token_type_ids)  # (B, S, D)
        elif token_type_ids is not None:
            raise TformerError("this model has no token types (type_vocab_size=0): pass token_type_ids=None")
        return self.dropout(self.norm(x))


def init_bert(module: nn.Module, std: float) -> None:
    """BERT's initialisation: every matrix and embedding N(0, std), biases 0, LayerNorms (1, 0)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.Embedding, TokenEmbedding, LearnedPositionalEmbedding)):
            nn.init.normal_(m.weight, std=std)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class EncoderOnly(Pretrained, nn.Module):
    """Embeddings, then N :class:`EncoderLayer` (bidirectional self-attention + FFN); the last hidden states.

    ``from_pretrained`` also reads the encoder of a head model's folder (to fine-tune it with another head).
    """

    config_class = EncoderOnlyConfig
    parts = {"EncoderOnlyForMaskedLM": "encoder.", "EncoderOnlyForClassification": "encoder.",
             "EncoderOnlyForQuestionAnswering": "encoder."}
    legacy_section = "encoder"  # tformer 0.1.0: {"architecture": ..., "encoder": {...}, ["classifier": {...}]}

    def __init__(self, cfg: EncoderOnlyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embeddings = EncoderOnlyEmbeddings(cfg)
        self.layers = nn.ModuleList(
            layer_norm_layer(cfg.d_model, cfg.num_heads, cfg.d_ff, dropout=cfg.dropout,
                             attention_dropout=cfg.attention_dropout, activation=cfg.activation,
                             pre_norm=cfg.norm == "pre", eps=cfg.layer_norm_eps, attention=cfg.attention,
                             max_len=cfg.max_len)
            for _ in range(cfg.num_layers)
        )
        self.final_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps) if cfg.norm == "pre" else nn.Identity()
        self.gradient_checkpointing = False  # see tformer.nn.gradient_checkpointing
        init_bert(self, cfg.init_std)
        with torch.no_grad():
            self.embeddings.tokens.weight[cfg.pad_id].zero_()

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
        *, need_weights: bool = False,
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Last hidden states (B, S, D) of ``input_ids`` (B, S).

        Args:
            attention_mask: (B, S) 1/True = real token, 0/False = padding; None = attend to every position.
            token_type_ids: (B, S) segment ids; None = all type 0. Must be None when type_vocab_size is 0.
            need_weights: also return each layer's attention weights (B, H, S, S) (the reference path).
        """
        mask = key_mask(attention_mask, input_ids)  # (B, 1, 1, S) or None
        x = self.embeddings(input_ids, token_type_ids)  # (B, S, D)
        weights = []
        for layer in self.layers:
            x, w = run_layer(self, layer, x, mask, need_weights)
            if need_weights:
                weights.append(w)
        x = self.final_norm(x)
        return (x, weights) if need_weights else x
