"""The decoder-only Transformer (GPT-style causal language model; Radford et al., 2018, 2019).

The paper's decoder without the encoder: every layer keeps masked self-attention and the FFN and
drops encoder-decoder attention, so each position predicts the next token from the ones before it.

    ids ──token embedding + learned position──► N × DecoderOnlyBlock ──► LayerNorm ──► Linear ──► logits
                                                (causal self-attention, FFN)           (tied to the embedding)

    p(x_t | x_<t) = softmax(logits[t - 1])

GPT-2's choices, all from the existing parts: pre-norm residuals (``norm="pre"``) with a final
LayerNorm, learned positions, GELU with the tanh approximation, token embeddings not scaled by
sqrt(d_model) (§3.4 scales them; GPT-2 does not), and the output layer sharing the embedding matrix.

Padding. ``attention_mask`` (B, T) marks real tokens with 1. Padded keys are never attended to and
positions count real tokens only, so padding on either side leaves the real positions' logits as they
are without it. (Right padding needs no mask at all: a causal model never sees later positions. When
no mask is given and ``pad_id`` is set, the mask is ``input_ids != pad_id``.)

Generation runs through the toolkit's one decoding engine (:mod:`tformer.generation`) and KV cache:
:meth:`DecoderOnly.prefill` reads the prompts into the cache, left-aligned (each row's padding moved
in front of its tokens, so that every row's last prompt token is in the last column), and the engine
feeds each prompt's last token and continues one position per step. A prompt's continuation does not
depend on the other prompts of its batch (masked keys get weight exactly 0).

Shape legend: B batch, T length (new positions), L cached positions, D d_model, H heads, V vocabulary.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tformer.config import AttentionConfig, check, check_attention, from_dict
from tformer.errors import TformerError
from tformer.io.pretrained import Pretrained
from tformer.models.transformer.config import ACTIVATIONS, NORMS
from tformer.models.transformer.model import _eval_mode
from tformer.nn.attention import MultiHeadAttention
from tformer.nn.cache import KVCache
from tformer.nn.dropout import Dropout
from tformer.nn.embedding import LearnedPositionalEmbedding, TokenEmbedding
from tformer.nn.feedforward import PositionwiseFeedForward
from tformer.nn.gradient_checkpointing import run_layer
from tformer.nn.layers import Residual
from tformer.nn.masks import causal_mask


@dataclass(frozen=True)
class DecoderOnlyConfig:
    """A GPT-style causal language model.

    Attributes:
        vocab_size: vocabulary size V.
        d_model, num_heads, d_ff, num_layers: as in :class:`tformer.TransformerConfig` (N = ``num_layers``).
        max_len: the number of learned positions (GPT-2: 1024, ``n_positions``).
        activation: FFN non-linearity; GPT-2 uses "gelu_tanh".
        norm: "pre" (GPT-2: x + Sublayer(LayerNorm(x)), then a final LayerNorm) or "post" (the paper's).
        layer_norm_eps: epsilon of every LayerNorm.
        dropout: on the embedding sum and on every sub-layer output; attention_dropout: on attention weights.
        tie_output: the output layer reuses the token embedding matrix (GPT-2 does).
        pad_id: the padding token, or None for a vocabulary without one (GPT-2): padding is then marked
            only by ``attention_mask``, and generation fills finished rows with ``eos_id``.
        bos_id, eos_id: start and end of text; GPT-2 uses one id (50256, ``<|endoftext|>``) for both.
        init_std: std of the normal initialisation of every weight matrix (GPT-2: 0.02); the two residual
            output projections of each block get ``init_std / sqrt(2 * num_layers)`` (GPT-2, §2.3).
        attention: how self-attention is computed for long inputs (:class:`tformer.config.AttentionConfig`):
            full or chunked (padded batches use per-query masks, which the other kinds do not take).
    """

    vocab_size: int
    d_model: int = 768
    num_heads: int = 12
    d_ff: int = 3072
    num_layers: int = 12
    max_len: int = 1024
    activation: str = "gelu_tanh"
    norm: str = "pre"
    layer_norm_eps: float = 1e-5
    dropout: float = 0.1
    attention_dropout: float = 0.1
    tie_output: bool = True
    pad_id: int | None = 0
    bos_id: int = 1
    eos_id: int = 2
    init_std: float = 0.02
    attention: AttentionConfig = AttentionConfig()

    def __post_init__(self) -> None:
        check_attention(self, causal=True, kinds=("full", "chunked"))
        check(self.vocab_size > 0, f"vocab_size must be positive, got {self.vocab_size}")
        check(self.d_model > 0 and self.num_heads > 0, "d_model and num_heads must be positive")
        check(
            self.d_model % self.num_heads == 0,
            f"d_model ({self.d_model}) must be divisible by num_heads ({self.num_heads})",
        )
        check(self.d_ff > 0, f"d_ff must be positive, got {self.d_ff}")
        check(self.num_layers >= 1, f"num_layers must be >= 1, got {self.num_layers}")
        check(self.max_len >= 2, f"max_len must be >= 2, got {self.max_len}")
        check(self.activation in ACTIVATIONS, f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        check(self.norm in NORMS, f"norm must be one of {NORMS}, got {self.norm!r}")
        check(self.layer_norm_eps > 0, "layer_norm_eps must be positive")
        for name in ("dropout", "attention_dropout"):
            p = getattr(self, name)
            check(0.0 <= p < 1.0, f"{name} must be in [0, 1), got {p}")
        check(self.init_std > 0, f"init_std must be positive, got {self.init_std}")
        for name in ("pad_id", "bos_id", "eos_id"):
            i = getattr(self, name)
            check(i is None and name == "pad_id" or i is not None and 0 <= i < self.vocab_size,
                   f"{name}={i} is outside the vocabulary (size {self.vocab_size})")
        check(self.pad_id != self.eos_id,
               "eos_id must differ from pad_id (pad_id: null for a vocabulary without a padding token, as GPT-2)")

    @property
    def d_head(self) -> int:
        """d_k = d_v = d_model / h (§3.2.2)."""
        return self.d_model // self.num_heads

    # ---- presets ----------------------------------------------------------------------------
    @classmethod
    def tiny(cls, vocab_size: int = 64, **kw: Any) -> DecoderOnlyConfig:
        """A very small model for tests: d_model 32, 2 layers, 4 heads, 128 positions."""
        base = dict(d_model=32, num_heads=4, d_ff=64, num_layers=2, max_len=128)
        return cls(vocab_size=vocab_size, **{**base, **kw})

    @classmethod
    def gpt2(cls, **kw: Any) -> DecoderOnlyConfig:
        """GPT-2 small (124M): 12 layers, d_model 768, 12 heads, 1024 positions, its 50257-token vocabulary."""
        base = dict(vocab_size=50257, pad_id=None, bos_id=50256, eos_id=50256)
        return cls(**{**base, **kw})

    # ---- (de)serialisation ------------------------------------------------------------------
    def replace(self, **changes: Any) -> DecoderOnlyConfig:
        """A copy with ``changes`` applied and validated again."""
        return from_dict(type(self), {**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DecoderOnlyConfig:
        """Build from a mapping; unknown keys and wrong types are one-line :class:`ConfigError` s."""
        return from_dict(cls, d)


@dataclass
class DecoderOnlyCache:
    """Everything needed to extend a batch of sequences by one (or a few) positions."""

    self_kv: list[KVCache]  # one per block
    key_mask: Tensor  # (B, L) True = a real token in that cache slot (False: a prompt's padding)
    next_position: Tensor  # (B,) int64, the position index of each row's next token

    @property
    def length(self) -> int:
        """Number of cache slots filled (padding included)."""
        return self.key_mask.shape[1]

    def select(self, index: Tensor) -> None:
        """Keep batch rows ``index`` (B',), in that order (finished rows leave the batch)."""
        index = index.to(self.key_mask.device)
        for c in self.self_kv:
            c.select(index)
        self.key_mask = self.key_mask.index_select(0, index)
        self.next_position = self.next_position.index_select(0, index)


class DecoderOnlyBlock(nn.Module):
    """Masked multi-head self-attention, then the position-wise FFN, each inside a :class:`Residual` (GPT-2's
    ``Block``: the paper's decoder layer without encoder-decoder attention)."""

    def __init__(self, cfg: DecoderOnlyConfig) -> None:
        super().__init__()
        pre_norm = cfg.norm == "pre"
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.num_heads, cfg.attention_dropout,
                                            attention=cfg.attention)
        self.self_attn_residual = Residual(cfg.d_model, cfg.dropout, pre_norm, cfg.layer_norm_eps)
        self.ffn = PositionwiseFeedForward(cfg.d_model, cfg.d_ff, cfg.activation)
        self.ffn_residual = Residual(cfg.d_model, cfg.dropout, pre_norm, cfg.layer_norm_eps)

    def forward(
        self, x: Tensor, mask: Tensor | None, *, causal: bool, cache: KVCache | None = None, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """x (B, T, D) attends causally to itself and the ``cache``'s earlier positions -> (B, T, D), weights
        (B, H, T, L) if asked. ``mask`` (B, 1, T, L), True = may attend."""
        h, weights = self.self_attn(
            self.self_attn_residual.normed_input(x), mask=mask, causal=causal, cache=cache, need_weights=need_weights
        )
        x = self.self_attn_residual.add(x, h)
        x = self.ffn_residual.add(x, self.ffn(self.ffn_residual.normed_input(x)))
        return x, weights


def _self_attention_mask(key_real: Tensor, t_q: int) -> Tensor:
    """Causal and padding mask (B, 1, Tq, L) for the last ``t_q`` of L positions; ``key_real`` (B, L).

    A query may always attend to itself, so that a padding query's row is never empty (an empty row
    would give NaN, and NaN values times zero weights would reach the real rows).
    """
    t_k = key_real.shape[1]
    causal = causal_mask(t_q, t_k, device=key_real.device)  # (Tq, L)
    own = torch.arange(t_k, device=key_real.device)[None, :] == (
        torch.arange(t_q, device=key_real.device)[:, None] + t_k - t_q
    )  # (Tq, L) the query's own position
    return causal & (key_real[:, None, None, :] | own)  # (B, 1, Tq, L)


class DecoderOnly(Pretrained, nn.Module):
    """A GPT-style causal language model. See the module docstring for the data flow and padding."""

    config_class = DecoderOnlyConfig

    def __init__(self, cfg: DecoderOnlyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.tokens = TokenEmbedding(cfg.vocab_size, cfg.d_model, scale=False, std=cfg.init_std)
        self.positions = LearnedPositionalEmbedding(cfg.max_len, cfg.d_model)
        self.embed_dropout = Dropout(cfg.dropout)
        self.layers = nn.ModuleList(DecoderOnlyBlock(cfg) for _ in range(cfg.num_layers))
        self.final_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps) if cfg.norm == "pre" else nn.Identity()
        self.output_projection = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.gradient_checkpointing = False  # see tformer.nn.gradient_checkpointing
        self._init_weights()
        if cfg.tie_output:
            self.output_projection.weight = self.tokens.weight

    def _init_weights(self) -> None:
        """GPT-2's: every matrix and embedding N(0, init_std), biases 0; the projections that write into the
        residual stream (W^O and the FFN's W_2) N(0, init_std / sqrt(2N))."""
        std = self.cfg.init_std
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.normal_(self.positions.weight, std=std)
        for block in self.layers:
            for w in (block.self_attn.out_proj.weight, block.ffn.w_2.weight):
                nn.init.normal_(w, std=std / (2 * self.cfg.num_layers) ** 0.5)

    # ---- the stack ------------------------------------------------------------------------
    def _real(self, input_ids: Tensor, attention_mask: Tensor | None) -> Tensor | None:
        """(B, T) bool, True = real token; None = all real."""
        if attention_mask is not None:
            if attention_mask.shape != input_ids.shape:
                raise TformerError(
                    f"attention_mask {tuple(attention_mask.shape)} must have the shape of input_ids "
                    f"{tuple(input_ids.shape)}"
                )
            return attention_mask.bool()
        return None if self.cfg.pad_id is None else input_ids != self.cfg.pad_id

    def _run(
        self, input_ids: Tensor, real: Tensor | None, cache: DecoderOnlyCache | None, need_weights: bool
    ) -> tuple[Tensor, list[Tensor]]:
        """ids (B, T) (continuing ``cache`` if given) -> final hidden states (B, T, D), weights per layer if asked."""
        b, t = input_ids.shape
        device = input_ids.device
        # Positions count real tokens only: padding shifts nothing.
        steps = torch.arange(t, device=device).expand(b, t) if real is None else (real.cumsum(1) - 1).clamp(min=0)
        if cache is not None:
            steps = cache.next_position[:, None] + steps  # (B, T)
        longest = t if real is None and cache is None else int(steps.max()) + 1  # (no device sync when unpadded)
        if longest > self.cfg.max_len:
            raise TformerError(f"sequence of {longest} positions exceeds the model's max_len {self.cfg.max_len}")
        if cache is not None:
            new_real = torch.ones(b, t, dtype=torch.bool, device=device) if real is None else real
            cache.key_mask = torch.cat([cache.key_mask, new_real], dim=1)  # (B, L)
            cache.next_position = cache.next_position + new_real.sum(1)
            real = cache.key_mask
        x = self.embed_dropout(self.tokens(input_ids) + F.embedding(steps, self.positions.weight))  # (B, T, D)
        if real is None or bool(real.all()):
            mask, causal = None, t > 1  # a single new position may attend to every cached one
        else:
            mask, causal = _self_attention_mask(real, t), False  # (B, 1, T, L)
        weights = []
        for i, block in enumerate(self.layers):
            x, w = run_layer(self, block, x, mask, causal=causal, cache=None if cache is None else cache.self_kv[i],
                             need_weights=need_weights)
            if need_weights:
                weights.append(w)
        return self.final_norm(x), weights

    def hidden_states(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """The final hidden states (B, T, D), before the output layer: ``forward`` without its last step, for
        :func:`tformer.training.loss.linear_label_smoothed_loss` with ``output_projection.weight``."""
        return self._run(input_ids, self._real(input_ids, attention_mask), None, False)[0]

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, need_weights: bool = False
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Next-token logits (B, T, V) for ids (B, T); ``attention_mask`` (B, T), 1 = real token.

        With ``need_weights``, also each layer's self-attention weights (B, H, T, T).
        """
        hidden, weights = self._run(input_ids, self._real(input_ids, attention_mask), None, need_weights)
        logits = self.output_projection(hidden)  # (B, T, D) -> (B, T, V)
        return (logits, weights) if need_weights else logits

    # ---- incremental decoding ---------------------------------------------------------------
    def prefill(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> tuple[DecoderOnlyCache, Tensor]:
        """Read prompts (B, P) into a fresh cache, all but each prompt's last token, which is returned (B, 1):
        the first input of the decoding loop (the ``start`` of :func:`tformer.generation.decode_single_path`).

        The prompts may be padded on either side (``attention_mask``, or ``pad_id``); each row is left-aligned
        first: its padding moved in front of its tokens, which keep their order.
        """
        b, p = input_ids.shape
        real = self._real(input_ids, attention_mask)
        if real is None:
            real = torch.ones_like(input_ids, dtype=torch.bool)
        empty = (~real.any(dim=1)).nonzero()
        if empty.numel():
            raise TformerError(f"prompt {int(empty[0])} has no tokens: start it with bos_id ({self.cfg.bos_id})")
        order = real.to(torch.int8).argsort(dim=1, stable=True)  # (B, P) padding first, then the tokens in order
        ids, real = input_ids.gather(1, order), real.gather(1, order)  # (B, P) left-aligned
        cache = DecoderOnlyCache(
            self_kv=[KVCache() for _ in self.layers],
            key_mask=real.new_zeros(b, 0),
            next_position=torch.zeros(b, dtype=torch.long, device=input_ids.device),
        )
        if p > 1:
            self._run(ids[:, :-1], real[:, :-1], cache, False)
        return cache, ids[:, -1:]

    def decode_step(self, tokens: Tensor, cache: DecoderOnlyCache) -> Tensor:
        """Logits (B, t, V) for new tokens (B, t) that continue the cached positions (all real)."""
        hidden, _ = self._run(tokens, None, cache, False)
        return self.output_projection(hidden)

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        max_new_tokens: int = 32,
        *,
        attention_mask: Tensor | None = None,
        min_new_tokens: int = 0,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> Tensor:
        """Continue prompts (B, P) -> the new tokens (B, L), without the prompts.

        Each row ends in EOS when the model produced one, then is filled with ``pad_id`` (``eos_id`` when the
        vocabulary has no padding token). A row also stops where its positions run out (``max_len``). Greedy
        continuations do not depend on the other rows of the batch; samples repeat for the same seed and batch.

        Args:
            input_ids: prompts, padded on either side; ``attention_mask`` (B, P) marks the real tokens with 1
                (default: ``input_ids != pad_id``, or all real when ``pad_id`` is None).
            max_new_tokens: the most tokens to generate per row, EOS included.
            min_new_tokens: EOS is forbidden before this many tokens.
            do_sample: draw tokens (with ``temperature``, ``top_k`` (0 = off), ``top_p`` (1 = off), ``seed``)
                instead of taking the argmax.
        """
        from tformer.generation import greedy_search, sample

        if max_new_tokens < 1:
            raise TformerError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if not 0 <= min_new_tokens <= max_new_tokens:
            raise TformerError(f"min_new_tokens must be in [0, max_new_tokens={max_new_tokens}], got {min_new_tokens}")
        real = self._real(input_ids, attention_mask)
        lengths = input_ids.new_full((input_ids.shape[0],), input_ids.shape[1]) if real is None else real.sum(1)
        if int(lengths.max()) > self.cfg.max_len:
            raise TformerError(f"a prompt of {int(lengths.max())} tokens exceeds the model's max_len "
                               f"{self.cfg.max_len}")
        # The last generated token is never fed back: a row has max_len - length + 1 tokens to give.
        limits = (self.cfg.max_len - lengths + 1).clamp(max=max_new_tokens)  # (B,)

        def start() -> tuple[DecoderOnlyCache, Tensor]:
            return self.prefill(input_ids, attention_mask)

        with _eval_mode(self):
            if do_sample:
                return sample(self, input_ids, max_len=limits, min_len=min_new_tokens, temperature=temperature,
                              top_k=top_k, top_p=top_p, seed=seed, start=start)
            return greedy_search(self, input_ids, max_len=limits, min_len=min_new_tokens, start=start)

    # ---- bookkeeping ----------------------------------------------------------------------
    def num_parameters(self) -> int:
        """Number of distinct parameters (tied matrices counted once)."""
        return sum(p.numel() for p in self.parameters())


@torch.no_grad()
def perplexity(model: DecoderOnly, input_ids: Tensor, attention_mask: Tensor | None = None) -> float:
    """exp(mean negative log-likelihood) of every real next token given the tokens before it.

    Position t predicts token t + 1; a prediction counts when both are real tokens. ``attention_mask`` (B, T),
    1 = real (default: ``input_ids != pad_id``, or all real when the model has no padding token).
    """
    real = model._real(input_ids, attention_mask)
    if real is None:
        real = torch.ones_like(input_ids, dtype=torch.bool)
    counted = real[:, :-1] & real[:, 1:]  # (B, T-1)
    if not bool(counted.any()):
        raise TformerError("perplexity needs at least one sequence of two or more real tokens")
    with _eval_mode(model):
        logits = model(input_ids, attention_mask=real)[:, :-1].float()  # (B, T-1, V)
    nll = F.cross_entropy(logits[counted], input_ids[:, 1:][counted], reduction="mean")
    return float(nll.exp())


__all__ = ["DecoderOnly", "DecoderOnlyBlock", "DecoderOnlyCache", "DecoderOnlyConfig", "perplexity"]
