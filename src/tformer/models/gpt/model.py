"""The decoder-only Transformer (GPT-style causal language model; Radford et al., 2018, 2019).

The paper's decoder without the encoder: every layer keeps masked self-attention and the FFN and
drops encoder-decoder attention, so each position predicts the next token from the ones before it.

    ids ──token embedding + learned position──► N × decoder_only_block ──► LayerNorm ──► Linear ──► logits
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
feeds each prompt's last token and continues one position per step: greedy search, sampling, or beam
search (the encoder-decoder's, started from the prefilled prompts: the cache widens to K rows per prompt
and follows the beams). A prompt's continuation does not depend on the other prompts of its batch
(masked keys get weight exactly 0). Scores, lengths and the n-gram ban count the new tokens only.

Shape legend: B batch, T length (new positions), L cached positions, D d_model, H heads, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tformer.errors import TformerError
from tformer.generation import (
    PAPER_BEAM_SIZE,
    Capabilities,
    Feature,
    GenerationOptions,
    Hypothesis,
    beam_search,
    beam_search_nbest,
    greedy_search,
    sample,
)
from tformer.io.pretrained import Pretrained
from tformer.models.gpt.config import DecoderOnlyConfig
from tformer.nn.cache import KVCache
from tformer.nn.dropout import Dropout
from tformer.nn.embedding import TokenEmbedding
from tformer.nn.gradient_checkpointing import run_layer
from tformer.nn.layers import EncoderLayer, layer_norm_layer
from tformer.nn.linear import Linear
from tformer.nn.masks import causal_mask
from tformer.nn.modes import eval_mode
from tformer.nn.positional import LearnedPositionalEmbedding


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

    def repeat_interleave(self, n: int) -> None:
        """Repeat every row n times (row b becomes rows b*n .. b*n+n-1): one row per beam."""
        self.select(torch.arange(self.key_mask.shape[0], device=self.key_mask.device).repeat_interleave(n))

    def reorder_targets(self, index: Tensor) -> None:
        """Rows ``index`` (B',) for beam search: here every cached state is the sequence's own (no source)."""
        self.select(index)


def decoder_only_block(cfg: DecoderOnlyConfig) -> EncoderLayer:
    """GPT-2's ``Block``: masked multi-head self-attention, then the position-wise FFN, each inside a residual
    connection (the paper's decoder layer without encoder-decoder attention): an :class:`EncoderLayer` that the
    stack calls with ``causal`` and a cache."""
    return layer_norm_layer(cfg.d_model, cfg.num_heads, cfg.d_ff, dropout=cfg.dropout,
                            attention_dropout=cfg.attention_dropout, activation=cfg.activation,
                            pre_norm=cfg.norm == "pre", eps=cfg.layer_norm_eps, attention=cfg.attention)


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
        self.layers = nn.ModuleList(decoder_only_block(cfg) for _ in range(cfg.num_layers))
        self.final_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps) if cfg.norm == "pre" else nn.Identity()
        self.output_projection = Linear(cfg.d_model, cfg.vocab_size, bias=False)
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
        :func:`tformer.training.label_smoothing.linear_label_smoothed_loss` with ``output_projection.weight``."""
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

    capabilities = Capabilities("a decoder-only language model", (
        Feature.GREEDY, Feature.BEAM, Feature.NBEST, Feature.SAMPLING, Feature.MIN_LENGTH, Feature.NO_REPEAT_NGRAM))
    """What this kind decodes with (asked before decoding)."""

    @torch.no_grad()
    def generate(
        self,
        input_ids: Tensor,
        options: GenerationOptions | None = None,
        *,
        attention_mask: Tensor | None = None,
        max_new_tokens: int | None = None,
        min_new_tokens: int | None = None,
        **settings,
    ) -> Tensor:
        """Continue prompts (B, P) -> the new tokens (B, L), without the prompts.

        Each row ends in EOS when the model produced one, then is filled with ``pad_id`` (``eos_id`` when the
        vocabulary has no padding token). A row also stops where its positions run out (``max_len``). Greedy and
        beam continuations do not depend on the other rows of the batch; samples repeat for the same seed and batch.

        Args:
            input_ids: prompts, padded on either side; ``attention_mask`` (B, P) marks the real tokens with 1
                (default: ``input_ids != pad_id``, or all real when ``pad_id`` is None).
            options: the settings (:class:`tformer.generation.GenerationOptions`; default: greedy, 32 tokens).
            max_new_tokens: the most tokens to generate per row, EOS included (the options' ``max_len``).
            min_new_tokens: EOS is forbidden before this many tokens (the options' ``min_len``).
            **settings: fields of :class:`GenerationOptions` as keywords, applied over ``options``: ``beam_size``
                (more than 1: beam search, ranked by log P(continuation | prompt) / lp with ``length_penalty``
                alpha, lp counting the new tokens), ``do_sample`` draws tokens (with ``temperature``, ``top_k``
                (0 = off), ``top_p`` (1 = off), ``seed``) instead of taking the argmax, ``no_repeat_ngram_size``
                (no continuation repeats an n-gram of its own new tokens; the prompt's are not counted).
        """
        if options is not None and not isinstance(options, GenerationOptions):  # 0.1.0: generate(ids, 16)
            if max_new_tokens is not None:
                raise TypeError("got multiple values for max_new_tokens")
            options, max_new_tokens = None, options
        opts = _new_token_limits(GenerationOptions.of(options, **settings), max_new_tokens, min_new_tokens)
        self.capabilities.check(opts, "generate()")
        limits = self._row_limits(input_ids, attention_mask, opts)  # (B,)
        start = partial(self.prefill, input_ids, attention_mask)  # the engines' start: the prompts read into the cache
        ban = opts.no_repeat_ngram_size
        with eval_mode(self):
            if opts.do_sample:
                return sample(self, input_ids, max_len=limits, min_len=opts.min_len, temperature=opts.temperature,
                              top_k=opts.top_k, top_p=opts.top_p, seed=opts.seed, start=start, no_repeat_ngram_size=ban)
            if opts.beam_size in (None, 1):
                return greedy_search(self, input_ids, max_len=limits, min_len=opts.min_len, start=start,
                                     no_repeat_ngram_size=ban)
            return beam_search(self, input_ids, beam_size=opts.beam_size, max_len=limits, min_len=opts.min_len,
                               length_penalty_alpha=opts.length_penalty, no_repeat_ngram_size=ban, start=start)

    @torch.no_grad()
    def generate_nbest(
        self,
        input_ids: Tensor,
        options: GenerationOptions | None = None,
        *,
        attention_mask: Tensor | None = None,
        max_new_tokens: int | None = None,
        min_new_tokens: int | None = None,
        **settings,
    ) -> list[list[Hypothesis]]:
        """Beam search's ``nbest`` best continuations per prompt, best first, as
        :class:`tformer.generation.Hypothesis` (new tokens, log P(tokens | prompt), score = logprob / lp).
        Settings as for :meth:`generate`; here ``beam_size`` defaults to 4 and ``nbest`` to the beam."""
        opts = _new_token_limits(GenerationOptions.of(options, **settings), max_new_tokens, min_new_tokens)
        opts = opts.with_defaults(beam_size=PAPER_BEAM_SIZE)
        opts = opts.with_defaults(nbest=opts.beam_size)
        self.capabilities.check(opts, "generate_nbest()")
        limits = self._row_limits(input_ids, attention_mask, opts)
        with eval_mode(self):
            return beam_search_nbest(
                self, input_ids, beam_size=opts.beam_size, max_len=limits, min_len=opts.min_len,
                length_penalty_alpha=opts.length_penalty, nbest=opts.nbest,
                no_repeat_ngram_size=opts.no_repeat_ngram_size, start=partial(self.prefill, input_ids, attention_mask))

    def _row_limits(self, input_ids: Tensor, attention_mask: Tensor | None, opts: GenerationOptions) -> Tensor:
        """The most new tokens per row (B,): ``opts.max_len``, fewer where the positions run out."""
        real = self._real(input_ids, attention_mask)
        lengths = input_ids.new_full((input_ids.shape[0],), input_ids.shape[1]) if real is None else real.sum(1)
        if int(lengths.max()) > self.cfg.max_len:
            raise TformerError(f"a prompt of {int(lengths.max())} tokens exceeds the model's max_len "
                               f"{self.cfg.max_len}")
        # The last generated token is never fed back: a row has max_len - length + 1 tokens to give.
        return (self.cfg.max_len - lengths + 1).clamp(max=opts.max_len)


def _new_token_limits(opts: GenerationOptions, max_new_tokens: int | None,
                      min_new_tokens: int | None) -> GenerationOptions:
    """``opts`` with Hugging Face's names for its length limits applied (checked under those names), and at most
    32 new tokens when no limit is given."""
    if max_new_tokens is not None and max_new_tokens < 1:
        raise TformerError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if max_new_tokens is not None:
        opts = GenerationOptions.of(opts, max_len=max_new_tokens)
    opts = opts.with_defaults(max_len=32)
    if min_new_tokens is not None and not 0 <= min_new_tokens <= opts.max_len:
        raise TformerError(f"min_new_tokens must be in [0, max_new_tokens={opts.max_len}], got {min_new_tokens}")
    return GenerationOptions.of(opts, min_len=min_new_tokens) if min_new_tokens is not None else opts


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
    with eval_mode(model):
        logits = model(input_ids, attention_mask=real)[:, :-1].float()  # (B, T-1, V)
    nll = F.cross_entropy(logits[counted], input_ids[:, 1:][counted], reduction="mean")
    return float(nll.exp())


__all__ = ["DecoderOnly", "DecoderOnlyCache", "DecoderOnlyConfig", "decoder_only_block", "perplexity"]
