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
The layers themselves are the toolkit's :class:`~tformer.nn.layers.EncoderLayer`.

Masks: ``attention_mask`` is Hugging Face's (B, S) 1/0 (or True/False): 1 = a real token, 0 = padding.
``None`` means every position is real, as in ``transformers.BertModel``: to hide pads given only the
ids, pass ``input_ids != cfg.pad_id``. It becomes the toolkit's one mask convention once
(:mod:`tformer.nn.masks`: boolean (B, 1, 1, S), True = may attend).

Shape legend: B batch, S length, D d_model, H heads, V vocabulary, C classes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tformer.config import AttentionConfig, ConfigError, check, check_attention, from_dict
from tformer.errors import TformerError
from tformer.io.files import atomic_open, atomic_write_text
from tformer.models.transformer.config import ACTIVATIONS, NORMS
from tformer.nn.dropout import Dropout
from tformer.nn.embedding import LearnedPositionalEmbedding, TokenEmbedding
from tformer.nn.feedforward import _ACTIVATIONS
from tformer.nn.gradient_checkpointing import run_layer
from tformer.nn.layers import EncoderLayer

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
POOLINGS = ("cls", "mean", "pooler")


# ---- configuration -------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncoderOnlyConfig:
    """A BERT-style encoder. The defaults are BERT-base (Devlin et al., 2019, §3).

    Attributes:
        vocab_size: token vocabulary size V.
        d_model: model width (BERT's hidden_size).
        num_heads: attention heads h; d_k = d_v = d_model / h (§3.2.2).
        d_ff: FFN inner width (BERT's intermediate_size) (§3.3).
        num_layers: N, the number of encoder layers.
        max_len: positions in the learned position table (BERT's max_position_embeddings).
        type_vocab_size: token types ("segments", sentence A / B); 0 = no token-type embedding.
        activation: FFN non-linearity: "gelu" (exact erf, BERT), "gelu_tanh", "relu" or "silu".
        norm: "post" = LayerNorm(x + Sublayer(x)) as BERT and the paper; "pre" = x + Sublayer(LayerNorm(x))
            with a final LayerNorm after the stack.
        layer_norm_eps: epsilon of every LayerNorm (BERT: 1e-12).
        dropout: on the embeddings and on each sub-layer output (§5.4).
        attention_dropout: on the attention weights (BERT's attention_probs_dropout_prob).
        pad_id: the padding token (its embedding row starts at zero); the mask still comes from
            ``attention_mask``.
        init_std: std of the N(0, init_std) initialisation of every matrix and embedding (BERT: 0.02).
        attention: how self-attention is computed for long inputs (:class:`tformer.config.AttentionConfig`;
            any kind, linformer included: the encoder is not causal).
    """

    vocab_size: int
    d_model: int = 768
    num_heads: int = 12
    d_ff: int = 3072
    num_layers: int = 12
    max_len: int = 512
    type_vocab_size: int = 2
    activation: str = "gelu"
    norm: str = "post"
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    attention_dropout: float = 0.1
    pad_id: int = 0
    init_std: float = 0.02
    attention: AttentionConfig = AttentionConfig()

    def __post_init__(self) -> None:
        check_attention(self, causal=False)
        check(self.vocab_size > 0, f"vocab_size must be positive, got {self.vocab_size}")
        check(self.d_model > 0 and self.num_heads > 0, "d_model and num_heads must be positive")
        check(
            self.d_model % self.num_heads == 0,
            f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})",
        )
        check(self.d_ff > 0, f"d_ff must be positive, got {self.d_ff}")
        check(self.num_layers >= 1, f"num_layers must be >= 1, got {self.num_layers}")
        check(self.max_len >= 1, f"max_len must be >= 1, got {self.max_len}")
        check(self.type_vocab_size >= 0,
               f"type_vocab_size must be >= 0 (0 = no token types), got {self.type_vocab_size}")
        check(self.activation in ACTIVATIONS, f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        check(self.norm in NORMS, f"norm must be one of {NORMS}, got {self.norm!r}")
        check(self.layer_norm_eps > 0, f"layer_norm_eps must be positive, got {self.layer_norm_eps}")
        for name in ("dropout", "attention_dropout"):
            p = getattr(self, name)
            check(0.0 <= p < 1.0, f"{name} must be in [0, 1), got {p}")
        check(0 <= self.pad_id < self.vocab_size, f"pad_id={self.pad_id} is outside the vocabulary")
        check(self.init_std > 0, f"init_std must be positive, got {self.init_std}")

    @property
    def d_head(self) -> int:
        """d_k = d_v = d_model / h (§3.2.2)."""
        return self.d_model // self.num_heads

    # ---- presets ------------------------------------------------------------------------------
    @classmethod
    def tiny(cls, vocab_size: int = 64, **kw: Any) -> EncoderOnlyConfig:
        """A very small model for tests: d_model 32, 2 layers, 4 heads, d_ff 64."""
        return cls(vocab_size=vocab_size, **{**dict(d_model=32, num_heads=4, d_ff=64, num_layers=2, max_len=64), **kw})

    @classmethod
    def bert_tiny(cls, vocab_size: int = 30522, **kw: Any) -> EncoderOnlyConfig:
        """BERT-Tiny (Turc et al., 2019): 2 layers, d_model 128, 2 heads."""
        return cls(vocab_size=vocab_size, **{**dict(d_model=128, num_heads=2, d_ff=512, num_layers=2), **kw})

    @classmethod
    def bert_base(cls, vocab_size: int = 30522, **kw: Any) -> EncoderOnlyConfig:
        """BERT-base: 12 layers, d_model 768, 12 heads, d_ff 3072 (110M parameters)."""
        return cls(vocab_size=vocab_size, **kw)

    @classmethod
    def minilm_l6(cls, vocab_size: int = 30522, **kw: Any) -> EncoderOnlyConfig:
        """MiniLM-L6-H384 (Wang et al., 2020), the encoder of all-MiniLM-L6-v2: 6 layers, d_model 384, 12 heads."""
        return cls(vocab_size=vocab_size, **{**dict(d_model=384, num_heads=12, d_ff=1536, num_layers=6), **kw})

    # ---- (de)serialisation --------------------------------------------------------------------
    def replace(self, **changes: Any) -> EncoderOnlyConfig:
        """A copy with ``changes`` applied and validated again."""
        return from_dict(type(self), {**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderOnlyConfig:
        return from_dict(cls, d)


@dataclass(frozen=True)
class ClassifierConfig:
    """The classification head of :class:`EncoderOnlyForClassification`.

    Attributes:
        num_classes: C, the number of logits (1 for regression).
        pooling: how one vector stands for the sequence: "cls" = the first position's hidden state,
            "mean" = the mean over real tokens, "pooler" = BERT's tanh(W h_cls + b).
        dropout: before the final linear layer.
    """

    num_classes: int
    pooling: str = "cls"
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check(self.num_classes >= 1, f"num_classes must be >= 1, got {self.num_classes}")
        check(self.pooling in POOLINGS, f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        check(0.0 <= self.dropout < 1.0, f"classifier dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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


# ---- the model -----------------------------------------------------------------------------------
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


def _init_bert(module: nn.Module, std: float) -> None:
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


class _Pretrained:
    """save_pretrained / from_pretrained / num_parameters, shared by the three models below.

    ``config.json`` holds {"architecture": class name, "encoder": EncoderOnlyConfig, ["classifier": ...]};
    ``model.safetensors`` holds each tensor once (a tied matrix under its first name).
    """

    def _config_doc(self) -> dict[str, Any]:
        return {"architecture": type(self).__name__, "encoder": self.cfg.to_dict()}

    def num_parameters(self) -> int:
        """Number of distinct parameters (tied matrices counted once)."""
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``config.json`` and ``model.safetensors``, each atomically."""
        from safetensors.torch import save

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tensors = {name: t.contiguous() for name, t in unique_state(self).items()}
        with atomic_open(d / WEIGHTS_NAME) as f:
            f.write(save(tensors, metadata={"format": "pt"}))
        atomic_write_text(d / CONFIG_NAME, json.dumps(self._config_doc(), indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu"):
        """Load a model written by ``save_pretrained``. :class:`EncoderOnly` also loads the encoder of a
        head model's folder (to fine-tune it with another head).

        Raises:
            ConfigError: a missing, corrupt or mismatched file, in one line naming it.
        """
        d = Path(directory)
        doc = _read_json(d / CONFIG_NAME)
        unknown = sorted(set(doc) - {"architecture", "encoder", "classifier"})
        check(not unknown, f"{d / CONFIG_NAME}: unknown key(s) {', '.join(map(str, unknown))}")
        arch = doc.get("architecture")
        check(arch in _ARCHITECTURES, f"{d / CONFIG_NAME}: architecture must be one of {tuple(_ARCHITECTURES)}, "
                                       f"got {arch!r}")
        try:
            cfg = from_dict(EncoderOnlyConfig, doc.get("encoder"), where="encoder")
            head = None
            if "classifier" in doc:
                head = from_dict(ClassifierConfig, doc["classifier"], where="classifier")
        except ConfigError as e:
            raise ConfigError(f"{d / CONFIG_NAME}: {e}") from None
        prefix = ""
        if cls is EncoderOnly and arch != "EncoderOnly":
            prefix = "encoder."  # the encoder part of a head model
        else:
            check(arch == cls.__name__, f"{d} holds an {arch}, not an {cls.__name__}")
        if cls is EncoderOnlyForClassification:
            check(head is not None, f"{d / CONFIG_NAME}: no classifier section")
            model = cls(cfg, head.num_classes, pooling=head.pooling, dropout=head.dropout)
        else:
            model = cls(cfg)
        tensors = _read_safetensors(d / WEIGHTS_NAME)
        if prefix:
            tensors = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        load_checked(model, tensors, str(d / WEIGHTS_NAME))
        return model.to(map_location)


class EncoderOnly(_Pretrained, nn.Module):
    """Embeddings, then N :class:`EncoderLayer` (bidirectional self-attention + FFN); the last hidden states."""

    def __init__(self, cfg: EncoderOnlyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embeddings = EncoderOnlyEmbeddings(cfg)
        self.layers = nn.ModuleList(
            EncoderLayer(cfg.d_model, cfg.num_heads, cfg.d_ff, dropout=cfg.dropout,
                         attention_dropout=cfg.attention_dropout, activation=cfg.activation, activation_dropout=0.0,
                         pre_norm=cfg.norm == "pre", eps=cfg.layer_norm_eps, attention=cfg.attention,
                         max_len=cfg.max_len)
            for _ in range(cfg.num_layers)
        )
        self.final_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps) if cfg.norm == "pre" else nn.Identity()
        self.gradient_checkpointing = False  # see tformer.nn.gradient_checkpointing
        _init_bert(self, cfg.init_std)
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


# ---- heads -----------------------------------------------------------------------------------------
class MaskedLMHead(nn.Module):
    """BERT's masked-LM head: LayerNorm(act(dense(h))), then the token embedding matrix (tied) plus a bias."""

    def __init__(self, cfg: EncoderOnlyConfig, token_embedding: nn.Parameter) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.d_model, cfg.d_model)
        self.activation = _ACTIVATIONS[cfg.activation]
        self.norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.output = nn.Linear(cfg.d_model, cfg.vocab_size)
        _init_bert(self, cfg.init_std)
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
        _init_bert(self, init_std)

    def forward(self, hidden: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """hidden (B, S, D), attention_mask (B, S) or None -> logits (B, C)."""
        if self.pooling == "mean":
            pooled = mean_pool(hidden, attention_mask)  # (B, D)
        else:
            pooled = hidden[:, 0]  # (B, D): the first position ([CLS])
            if self.pooler is not None:
                pooled = torch.tanh(self.pooler(pooled))
        return self.proj(self.dropout(pooled))  # (B, C)


class EncoderOnlyForMaskedLM(_Pretrained, nn.Module):
    """:class:`EncoderOnly` + :class:`MaskedLMHead`: logits (B, S, V) at every position (BERT pre-training)."""

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


class EncoderOnlyForClassification(_Pretrained, nn.Module):
    """:class:`EncoderOnly` + :class:`SequenceClassifier`: logits (B, C) per sequence.

    Args:
        encoder: a config (a fresh encoder) or a built, e.g. pretrained, :class:`EncoderOnly`.
        num_classes: C.
        pooling: "cls", "mean" (over real tokens) or "pooler" (BERT's tanh pooler on [CLS]).
        dropout: before the final linear layer; None = the encoder's dropout (as BERT).
    """

    def __init__(self, encoder: EncoderOnly | EncoderOnlyConfig, num_classes: int, *, pooling: str = "cls",
                 dropout: float | None = None) -> None:
        super().__init__()
        self.encoder = encoder if isinstance(encoder, EncoderOnly) else EncoderOnly(encoder)
        self.cfg = self.encoder.cfg
        self.head_cfg = ClassifierConfig(num_classes, pooling, self.cfg.dropout if dropout is None else dropout)
        self.head = SequenceClassifier(self.cfg.d_model, self.head_cfg, self.cfg.init_std)

    def _config_doc(self) -> dict[str, Any]:
        return {**super()._config_doc(), "classifier": self.head_cfg.to_dict()}

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
        *, need_weights: bool = False,
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Logits (B, C) (and each layer's attention weights if asked); arguments as :meth:`EncoderOnly.forward`."""
        out = self.encoder(input_ids, attention_mask, token_type_ids, need_weights=need_weights)
        hidden = out[0] if need_weights else out
        logits = self.head(hidden, attention_mask)
        return (logits, out[1]) if need_weights else logits


_ARCHITECTURES = {"EncoderOnly": EncoderOnly, "EncoderOnlyForMaskedLM": EncoderOnlyForMaskedLM,
                  "EncoderOnlyForClassification": EncoderOnlyForClassification}


# ---- sentence embeddings ---------------------------------------------------------------------------
def _encoder_of(model: nn.Module) -> EncoderOnly:
    if isinstance(model, EncoderOnly):
        return model
    if isinstance(getattr(model, "encoder", None), EncoderOnly):
        return model.encoder
    raise TformerError(f"expected an EncoderOnly model (or one with an .encoder), got {type(model).__name__}")


def sentence_embeddings(
    model: nn.Module, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None,
    *, normalize: bool = True,
) -> Tensor:
    """Sentence vectors (B, D): the mean of the last hidden states over real tokens, L2-normalised
    (what sentence-transformers computes for all-MiniLM-L6-v2). Dot products of normalised vectors are
    cosine similarities.

    Keeps gradients and the model's mode: for inference call ``model.eval()`` and use ``torch.no_grad()``
    (or :func:`encode_sentences`, which does both).
    """
    hidden = _encoder_of(model)(input_ids, attention_mask, token_type_ids)  # (B, S, D)
    pooled = mean_pool(hidden, attention_mask)  # (B, D)
    return F.normalize(pooled, p=2.0, dim=-1) if normalize else pooled


@torch.no_grad()
def encode_sentences(model: nn.Module, tokenizer, sentences: Sequence[str], *, batch_size: int = 32,
                     normalize: bool = True) -> Tensor:
    """Text in, sentence vectors (N, D) out, in eval mode and batches of ``batch_size``.

    Args:
        tokenizer: a ``tokenizers.Tokenizer`` (e.g. from :func:`tformer.interop.bert.load_bert_folder`);
            its own truncation applies, and each batch is cut to its longest sentence.
    """
    if isinstance(sentences, str):
        raise TformerError("encode_sentences takes a list of sentences, not one string")
    if batch_size < 1:
        raise TformerError(f"batch_size must be >= 1, got {batch_size}")
    encoder = _encoder_of(model)
    device = next(encoder.parameters()).device
    out = []
    with _eval_mode(encoder):
        for start in range(0, len(sentences), batch_size):
            encs = tokenizer.encode_batch(list(sentences[start : start + batch_size]))
            real = [[j for j, m in enumerate(e.attention_mask) if m] for e in encs]  # whatever padding it did
            width = max(map(len, real))  # the longest sentence of the batch
            ids = torch.full((len(encs), width), encoder.cfg.pad_id, dtype=torch.long)  # (B, S), right-padded
            types = torch.zeros(len(encs), width, dtype=torch.long)
            mask = torch.zeros(len(encs), width, dtype=torch.long)
            for i, (e, keep) in enumerate(zip(encs, real, strict=True)):
                n = len(keep)
                ids[i, :n] = torch.tensor([e.ids[j] for j in keep])
                types[i, :n] = torch.tensor([e.type_ids[j] for j in keep])
                mask[i, :n] = 1
            types_arg = types.to(device) if encoder.cfg.type_vocab_size else None
            out.append(sentence_embeddings(encoder, ids.to(device), mask.to(device), types_arg, normalize=normalize))
    return torch.cat(out) if out else torch.empty(0, encoder.cfg.d_model)


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


# ---- weights in and out ----------------------------------------------------------------------------
def unique_state(model: nn.Module) -> dict[str, Tensor]:
    """The state dict with each tensor once: a tied matrix under its first name."""
    out, seen = {}, set()
    for name, t in model.state_dict().items():
        if t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            out[name] = t
    return out


def load_checked(model: nn.Module, tensors: dict[str, Tensor], source: str) -> None:
    """Copy ``tensors`` into ``model`` after checking that names and shapes match exactly.

    Raises:
        ConfigError: one line naming the first missing, mis-shaped or unexpected tensor.
    """
    expected = unique_state(model)
    for name, t in expected.items():
        if name not in tensors:
            raise ConfigError(f"{source}: no tensor {name}")
        if tuple(tensors[name].shape) != tuple(t.shape):
            raise ConfigError(f"{name}: shape {tuple(tensors[name].shape)} in {source}, {tuple(t.shape)} expected")
    extra = sorted(set(tensors) - set(expected))
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise ConfigError(f"{source}: unexpected tensor {extra[0]}{more}")
    with torch.no_grad():
        for name, t in expected.items():
            t.copy_(tensors[name])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    except (ValueError, RecursionError) as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from None
    check(isinstance(doc, dict), f"{path}: expected a JSON object, got {type(doc).__name__}")
    return doc


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise ConfigError(f"weights file not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, RuntimeError, OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot load {path}: {first}") from None
