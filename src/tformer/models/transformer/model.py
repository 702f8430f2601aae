"""The encoder-decoder Transformer (§3, Figure 1), read top to bottom.

    src ids ──Embeddings──► N × EncoderLayer ──► memory ─┐
                                                          ▼ (cross-attention in every decoder layer)
    tgt_in ids ──Embeddings──► N × DecoderLayer ──► Linear ──► logits ──softmax──► p(y_t | y_<t, x)

``tgt_in`` is the target shifted right behind BOS (teacher forcing); logits at position t predict
target token t. Softmax is left to the loss and to decoding (they need log-probabilities).

The text-to-text Transformer (T5) is a configuration of this model (:meth:`TransformerConfig.t5_small`):
no absolute positions but a relative position bias per stack, computed once per forward and added
to the self-attention scores of every layer; pre-norm RMSNorm; no biases; unscaled scores; the
decoder output times d_model^-0.5 before the tied output layer (see :mod:`tformer.interop.t5`).

Shape legend: B batch, S source length, T target length, D d_model, H heads, V target vocabulary.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from tformer.config import ConfigError
from tformer.io.files import atomic_open, atomic_write_text
from tformer.models.transformer.config import TransformerConfig
from tformer.nn.attention import MultiHeadAttention
from tformer.nn.cache import DecoderCache, KVCache
from tformer.nn.copy import PointerGenerator
from tformer.nn.dropout import Dropout
from tformer.nn.embedding import (
    Embeddings,
    LearnedPositionalEmbedding,
    RelativePositionBias,
    SinusoidalPositionalEncoding,
    TokenEmbedding,
)
from tformer.nn.gradient_checkpointing import run_layer
from tformer.nn.layers import DecoderLayer, EncoderLayer, make_norm
from tformer.nn.masks import padding_mask

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    """Dropout off while decoding; the previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@dataclass
class AttentionMaps:
    """Attention weights of every layer, returned only when asked for (``need_weights=True``).

    Each entry is one layer's weights, (B, H, T_query, T_key).
    """

    encoder: list[Tensor] = field(default_factory=list)  # (B, H, S, S) per layer
    decoder_self: list[Tensor] = field(default_factory=list)  # (B, H, T, T) per layer
    decoder_cross: list[Tensor] = field(default_factory=list)  # (B, H, T, S) per layer


def _positions(cfg: TransformerConfig) -> nn.Module | None:
    """The absolute positions added to the embeddings; None for relative positions."""
    if cfg.positional == "relative":
        return None
    if cfg.positional == "learned":
        return LearnedPositionalEmbedding(cfg.max_len, cfg.d_model)
    return SinusoidalPositionalEncoding(cfg.max_len, cfg.d_model, cfg.sinusoidal_layout)


def _relative_bias(cfg: TransformerConfig, bidirectional: bool) -> RelativePositionBias | None:
    """The stack's relative position bias: both directions in the encoder, only the past in the decoder."""
    if cfg.positional != "relative":
        return None
    return RelativePositionBias(cfg.relative_buckets, cfg.relative_max_distance, cfg.num_heads,
                                bidirectional=bidirectional, std=cfg.d_model**-0.5)


def _layer_kwargs(cfg: TransformerConfig) -> dict:
    return dict(dropout=cfg.dropout, attention_dropout=cfg.attention_dropout, activation=cfg.activation,
                activation_dropout=cfg.activation_dropout, pre_norm=cfg.norm == "pre", eps=cfg.layer_norm_eps,
                norm_type=cfg.norm_type, d_head=cfg.d_kv, bias=cfg.bias, scale_scores=cfg.scale_attention,
                attention=cfg.attention, max_len=cfg.max_len)


def _final_norm(cfg: TransformerConfig) -> nn.Module:
    """Pre-norm stacks end in a norm; post-norm ones already did."""
    return make_norm(cfg.norm_type, cfg.d_model, cfg.layer_norm_eps) if cfg.norm == "pre" else nn.Identity()


def _final_dropout(cfg: TransformerConfig) -> nn.Module:
    """Dropout on a stack's output, after its final norm (T5), or nothing."""
    return Dropout(cfg.dropout) if cfg.final_dropout else nn.Identity()


def init_weights(model: nn.Module, cfg: TransformerConfig) -> None:
    """Xavier-uniform projection matrices and zero biases (as tensor2tensor / fairseq); embeddings
    are drawn N(0, d_model^-1/2) in :class:`TokenEmbedding`, so that embedding * sqrt(d_model) has unit scale.
    Without ``scale_attention`` the missing 1/sqrt(d_k) is folded into W^Q's initial values (as T5 does)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    if not cfg.scale_attention:
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, MultiHeadAttention):
                    module.q_proj.weight.mul_(module.d_head**-0.5)


class Encoder(nn.Module):
    """Embeddings, then N identical layers of self-attention + FFN (§3.1)."""

    def __init__(self, cfg: TransformerConfig, tokens: TokenEmbedding) -> None:
        super().__init__()
        self.embed = Embeddings(tokens, _positions(cfg), cfg.dropout, cfg.max_len)
        self.relative_bias = _relative_bias(cfg, bidirectional=True)
        self.layers = nn.ModuleList(
            EncoderLayer(cfg.d_model, cfg.num_heads, cfg.d_ff, **_layer_kwargs(cfg))
            for _ in range(cfg.num_encoder_layers)
        )
        self.final_norm = _final_norm(cfg)
        self.final_dropout = _final_dropout(cfg)
        self.gradient_checkpointing = False  # see tformer.nn.gradient_checkpointing

    def forward(self, src: Tensor, src_mask: Tensor, need_weights: bool = False) -> tuple[Tensor, list[Tensor]]:
        """src (B, S) ids, src_mask (B, 1, 1, S) -> memory (B, S, D) and per-layer weights if asked."""
        x = self.embed(src)  # (B, S, D)
        s = src.shape[1]
        bias = None if self.relative_bias is None else self.relative_bias(s, s)  # (1, H, S, S), shared by the layers
        weights = []
        for layer in self.layers:
            x, w = run_layer(self, layer, x, src_mask, need_weights, score_bias=bias)
            if need_weights:
                weights.append(w)
        return self.final_dropout(self.final_norm(x)), weights


class Decoder(nn.Module):
    """Embeddings, then N identical layers of masked self-attention, cross-attention and FFN (§3.1).

    With ``scale_output`` (T5) its output is multiplied by d_model^-0.5, ready for the tied output layer.
    """

    def __init__(self, cfg: TransformerConfig, tokens: TokenEmbedding) -> None:
        super().__init__()
        self.embed = Embeddings(tokens, _positions(cfg), cfg.dropout, cfg.max_len)
        self.relative_bias = _relative_bias(cfg, bidirectional=False)
        self.layers = nn.ModuleList(
            DecoderLayer(cfg.d_model, cfg.num_heads, cfg.d_ff, **_layer_kwargs(cfg))
            for _ in range(cfg.num_decoder_layers)
        )
        self.final_norm = _final_norm(cfg)
        self.final_dropout = _final_dropout(cfg)
        self.output_scale = cfg.d_model**-0.5 if cfg.scale_output else None
        self.gradient_checkpointing = False  # see tformer.nn.gradient_checkpointing

    def forward(
        self, tgt: Tensor, memory: Tensor | None, memory_mask: Tensor, *, cache: DecoderCache | None = None,
        need_weights: bool = False, self_mask: Tensor | None = None, cross_kv: list | None = None,
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """tgt (B, T) ids -> hidden states (B, T, D), self- and cross-attention weights per layer if asked.

        With ``cache``, ``tgt`` holds only new positions, which continue the cached ones. ``self_mask``
        (B, 1, 1, T) makes self-attention bidirectional over the real target positions (the non-autoregressive
        decoder); ``cross_kv`` holds each layer's projected memory (``cross_attn.project_kv``) when ``memory``
        is None and there is no cache.
        """
        if cache is not None:
            cross_kv = cache.cross_kv
        offset = 0 if cache is None else cache.length
        y = self.embed(tgt, offset)  # (B, T, D)
        t = tgt.shape[1]
        # Queries at offset .. offset+T-1 against every key so far: (1, H, T, offset+T), shared by the layers.
        bias = None if self.relative_bias is None else self.relative_bias(t, offset + t, offset)
        self_ws, cross_ws = [], []
        for i, layer in enumerate(self.layers):
            y, sw, cw = run_layer(
                self, layer, y, memory, memory_mask,
                self_cache=None if cache is None else cache.self_kv[i],
                cross_kv=None if cross_kv is None else cross_kv[i],
                need_weights=need_weights,
                score_bias=bias,
                self_mask=self_mask,
            )
            if need_weights:
                self_ws.append(sw)
                cross_ws.append(cw)
        y = self.final_dropout(self.final_norm(y))
        return (y if self.output_scale is None else y * self.output_scale), self_ws, cross_ws


class Transformer(nn.Module):
    """The paper's encoder-decoder model. See the module docstring for the data flow."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        std = cfg.init_std
        src_tokens = TokenEmbedding(cfg.vocab_size, cfg.d_model, scale=cfg.scale_embedding, std=std)
        tgt_tokens = (
            src_tokens if cfg.share_embeddings
            else TokenEmbedding(cfg.target_vocab_size, cfg.d_model, scale=cfg.scale_embedding, std=std)
        )
        self.encoder = Encoder(cfg, src_tokens)
        self.decoder = Decoder(cfg, tgt_tokens)
        # The pre-softmax linear transformation (§3.4), optionally sharing the target embedding matrix.
        self.output_projection = nn.Linear(cfg.d_model, cfg.target_vocab_size, bias=cfg.output_bias)
        self.pointer_generator = PointerGenerator(cfg.d_model) if cfg.pointer_generator else None  # copying
        self._init_weights()
        if cfg.tie_output:
            self.output_projection.weight = tgt_tokens.weight

    def _init_weights(self) -> None:
        init_weights(self, self.cfg)

    # ---- the three plain methods -------------------------------------------------------
    def encode(self, src: Tensor, *, need_weights: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """src (B, S) int64 ids, right-padded with pad_id -> memory (B, S, D) (and weights if asked)."""
        memory, weights = self.encoder(src, padding_mask(src, self.cfg.pad_id), need_weights)
        return (memory, weights) if need_weights else memory

    def decode(
        self, tgt_in: Tensor, memory: Tensor, src: Tensor, *, need_weights: bool = False
    ) -> Tensor | tuple[Tensor, list[Tensor], list[Tensor]]:
        """Logits (B, T, V) for decoder input ``tgt_in`` (B, T), given the encoded source.

        ``src`` (B, S) is needed only for its padding: the decoder never attends to source pads.
        """
        copying = self.pointer_generator is not None  # the copy distribution needs the cross-attention weights
        hidden, self_ws, cross_ws = self.decoder(
            tgt_in, memory, padding_mask(src, self.cfg.pad_id), need_weights=need_weights or copying
        )
        logits = self.output_projection(hidden)  # (B, T, D) -> (B, T, V)
        if copying:  # log P of the mixture of generating and copying (B, T, V)
            logits = self._copy_log_probs(logits, hidden, tgt_in, cross_ws[-1], src)
        return (logits, self_ws, cross_ws) if need_weights else logits

    def _copy_log_probs(self, logits: Tensor, hidden: Tensor, tokens: Tensor, cross_weights: Tensor,
                        src: Tensor) -> Tensor:
        inputs = self.decoder.embed.tokens(tokens)  # (B, T, D) y_{t-1}
        return self.pointer_generator(logits, hidden, inputs, cross_weights, src)

    def decoder_states(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        """The decoder stack's output (B, T, D), before the pre-softmax linear layer: ``forward`` without
        the last step, for losses that fuse that layer with the softmax (:func:`tformer.training.loss.
        linear_label_smoothed_loss`). Not for the copy mechanism, whose output is more than that layer."""
        if self.pointer_generator is not None:
            raise TypeError("decoder_states: with pointer_generator the output distribution needs forward()")
        hidden, _, _ = self.decoder(tgt_in, self.encode(src), padding_mask(src, self.cfg.pad_id))
        return hidden

    def forward(
        self, src: Tensor, tgt_in: Tensor, *, need_weights: bool = False
    ) -> Tensor | tuple[Tensor, AttentionMaps]:
        """Teacher-forced logits (B, T, V); with ``need_weights`` also every layer's attention weights."""
        if not need_weights:
            return self.decode(tgt_in, self.encode(src), src)
        memory, enc_ws = self.encode(src, need_weights=True)
        logits, self_ws, cross_ws = self.decode(tgt_in, memory, src, need_weights=True)
        return logits, AttentionMaps(enc_ws, self_ws, cross_ws)

    # ---- incremental decoding ------------------------------------------------------------
    def start_decoding(self, memory: Tensor, src: Tensor) -> DecoderCache:
        """A cache holding each layer's cross-attention keys/values, computed once for this source."""
        return DecoderCache(
            self_kv=[KVCache() for _ in self.decoder.layers],
            cross_kv=[layer.cross_attn.project_kv(memory) for layer in self.decoder.layers],
            memory_mask=padding_mask(src, self.cfg.pad_id),
            src=src if self.pointer_generator is not None else None,
        )

    def decode_step(self, tokens: Tensor, cache: DecoderCache) -> Tensor:
        """Logits (B, t, V) for new decoder inputs ``tokens`` (B, t) that continue the cached positions
        (with the copy mechanism: log-probabilities, which log_softmax leaves as they are)."""
        copying = self.pointer_generator is not None
        hidden, _, cross_ws = self.decoder(tokens, None, cache.memory_mask, cache=cache, need_weights=copying)
        logits = self.output_projection(hidden)
        return self._copy_log_probs(logits, hidden, tokens, cross_ws[-1], cache.src) if copying else logits

    def _length_limits(self, src: Tensor, max_len: int | None, min_len: int) -> Tensor:
        """Per-sentence output limits (B,): ``max_len``, or the sentence's own length + 50 (§6.1),
        never more than the decoder's positions (BOS plus max_len - 1 fed-back tokens)."""
        from tformer.errors import TformerError

        if max_len is None:
            limits = (src != self.cfg.pad_id).sum(dim=1) + 50  # (B,) per sentence, not the padded width
        else:
            if max_len < 1:
                raise TformerError(f"max_len must be >= 1, got {max_len}")
            limits = torch.full((src.shape[0],), max_len, device=src.device)
            if min_len > max_len:
                raise TformerError(f"min_len ({min_len}) must not exceed max_len ({max_len})")
        if min_len < 0:
            raise TformerError(f"min_len must be >= 0, got {min_len}")
        return limits.clamp(max=self.cfg.max_len)

    @torch.no_grad()
    def generate(
        self,
        src: Tensor,
        beam_size: int = 1,
        max_len: int | None = None,
        min_len: int = 0,
        length_penalty: float = 0.6,
        *,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> Tensor:
        """Translate a batch: (B, S) source ids -> (B, L) output ids.

        Each row is the best hypothesis (or the sample) without the leading BOS, ending in EOS
        when the model produced one within the length limit, then padded with pad_id. A searched
        row (greedy or beam) does not depend on the other rows of the batch; a sampled row repeats
        for the same seed and batch only (see :func:`tformer.generation.sample`).

        Args:
            beam_size: 1 = greedy search; more = beam search (§6.1: beam 4).
            max_len: the most tokens to generate, EOS included; None = each source's length + 50 (§6.1).
            min_len: EOS is forbidden before this many tokens.
            length_penalty: alpha of the GNMT length penalty ((5 + |Y|) / 6)^alpha (§6.1: 0.6).
            do_sample: draw tokens instead of searching (``beam_size`` must be 1), with
                ``temperature``, ``top_k`` (0 = off), ``top_p`` (1 = off) and ``seed``.
        """
        from tformer.errors import TformerError
        from tformer.generation import beam_search, greedy_search, sample

        if beam_size < 1:
            raise TformerError(f"beam_size must be >= 1, got {beam_size}")
        if do_sample and beam_size != 1:
            raise TformerError("sampling draws one hypothesis per sentence: use beam_size=1 with do_sample=True")
        limits = self._length_limits(src, max_len, min_len)  # (B,)
        with _eval_mode(self):
            if do_sample:
                return sample(self, src, max_len=limits, min_len=min_len, temperature=temperature, top_k=top_k,
                              top_p=top_p, seed=seed)
            if beam_size == 1:
                return greedy_search(self, src, max_len=limits, min_len=min_len)
            return beam_search(self, src, beam_size=beam_size, max_len=limits, min_len=min_len,
                               length_penalty_alpha=length_penalty)

    @torch.no_grad()
    def generate_nbest(
        self, src: Tensor, beam_size: int = 4, nbest: int = 4, max_len: int | None = None, min_len: int = 0,
        length_penalty: float = 0.6,
    ) -> list:
        """Beam search's ``nbest`` best :class:`tformer.generation.Hypothesis` per sentence (tokens, logprob, score)."""
        from tformer.generation import beam_search_nbest

        limits = self._length_limits(src, max_len, min_len)
        with _eval_mode(self):
            return beam_search_nbest(self, src, beam_size=beam_size, max_len=limits, min_len=min_len,
                                     length_penalty_alpha=length_penalty, nbest=nbest)

    # ---- bookkeeping ---------------------------------------------------------------------
    def num_parameters(self) -> int:
        """Number of distinct parameters (tied matrices counted once)."""
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``config.json`` and ``model.safetensors`` (tied tensors stored once), each atomically."""
        from safetensors.torch import save

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tensors, seen = {}, set()
        for name, t in self.state_dict().items():  # a tied matrix is stored once, under its first name
            if t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                tensors[name] = t.contiguous()
        with atomic_open(d / WEIGHTS_NAME) as f:
            f.write(save(tensors, metadata={"format": "pt"}))  # one key: safetensors orders several at random
        atomic_write_text(d / CONFIG_NAME, json.dumps(self.cfg.to_dict(), indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> Transformer:
        """Load a model written by :meth:`save_pretrained`.

        Raises:
            ConfigError: a missing, corrupt or mismatched file, in one line naming it.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_model

        d = Path(directory)
        cfg = TransformerConfig.load_json(d / CONFIG_NAME)
        model = cls(cfg)
        weights = d / WEIGHTS_NAME
        if not weights.is_file():
            raise ConfigError(f"weights file not found: {weights}")
        try:
            missing, unexpected = load_model(model, str(weights), strict=False, device=str(map_location))
        except (SafetensorError, RuntimeError, OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"cannot load {weights}: {first}") from None
        if missing or unexpected:
            raise ConfigError(
                f"{weights} does not match {d / CONFIG_NAME}: "
                f"missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}"
            )
        return model
