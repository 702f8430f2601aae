"""The encoder and decoder stacks (§3.1, Figure 1), each built from parts by
:mod:`tformer.models.transformer.builders`.

    src ids ──Embeddings──► N × EncoderLayer ──► final norm ──► memory
    tgt ids ──Embeddings──► N × DecoderLayer (self-attention, attention over memory, FFN) ──► final norm ──► states

The decoder is run three ways, one method each: :meth:`Decoder.forward` (teacher forcing: causal
self-attention over the whole target), :meth:`Decoder.step` (incremental decoding: the new positions continue
a :class:`~tformer.nn.cache.DecoderCache`) and :meth:`Decoder.bidirectional` (the non-autoregressive pass of
:mod:`tformer.models.cmlm`: every position sees every real target position).

A stack with a relative position bias (T5) computes it once per call and adds it to the self-attention scores
of every layer.

The decoder returns the encoder-decoder attention weights of some layers and heads when asked with an
:class:`~tformer.nn.attention.AttentionProbe` (``probe``): they come beside the fast attention path, for the
guided attention loss and the monotonic window (:class:`~tformer.nn.cache.MonotonicWindow`), which
:meth:`Decoder.step` applies when the cache carries one.

Shape legend: B batch, S source length, T target length (new positions when cached), D d_model, H heads.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from tformer.nn.attention import AttentionProbe
from tformer.nn.cache import DecoderCache, KVCache, StaticKV
from tformer.nn.cross_attention import project_source
from tformer.nn.embedding import Embeddings
from tformer.nn.gradient_checkpointing import run_layer
from tformer.nn.positional import RelativePositionBias
from tformer.nn.window_step import step_in_window


class DecoderOutput(NamedTuple):
    """The decoder stack's output: hidden states (B, T, D); self- (B, H, T, T') and cross-attention weights
    (B, H, T, S) per layer, empty lists unless asked for (``need_weights``); and the probed layers' cross-attention
    weights of the probed heads (B, H', T, S), in layer order, empty unless a probe asked."""

    hidden: Tensor
    self_weights: list[Tensor]
    cross_weights: list[Tensor]
    probed: list[Tensor] | tuple = ()


class Stack(nn.Module):
    """What the encoder and decoder share: Embeddings, a relative position bias or none, N layers, then the
    final norm (pre-norm) and dropout (T5), or nothing."""

    def __init__(self, embed: Embeddings, layers: nn.ModuleList, *, relative_bias: RelativePositionBias | None = None,
                 final_norm: nn.Module | None = None, final_dropout: nn.Module | None = None) -> None:
        super().__init__()
        self.embed = embed
        self.relative_bias = relative_bias
        self.layers = layers
        self.final_norm = nn.Identity() if final_norm is None else final_norm
        self.final_dropout = nn.Identity() if final_dropout is None else final_dropout
        self.gradient_checkpointing = False  # see tformer.nn.gradient_checkpointing


class Encoder(Stack):
    """Embeddings, then N identical layers of self-attention + FFN (§3.1), then the stack's end."""

    def forward(self, src: Tensor, src_mask: Tensor, need_weights: bool = False) -> tuple[Tensor, list[Tensor]]:
        """src (B, S) ids, src_mask (B, 1, 1, S) -> memory (B, S, D) and per-layer weights (B, H, S, S) if asked."""
        x = self.embed(src)  # (B, S, D)
        s = src.shape[1]
        bias = None if self.relative_bias is None else self.relative_bias(s, s)  # (1, H, S, S), shared by the layers
        weights = []
        for layer in self.layers:
            x, w = run_layer(self, layer, x, src_mask, need_weights, score_bias=bias)
            if need_weights:
                weights.append(w)
        return self.final_dropout(self.final_norm(x)), weights


class Decoder(Stack):
    """Embeddings, then N identical layers of masked self-attention, cross-attention and FFN (§3.1), then the
    stack's end. With ``output_scale`` (T5) its output is multiplied by it (d_model^-0.5), ready for the tied
    output layer. The other arguments (``relative_bias``, ``final_norm``, ``final_dropout``) are :class:`Stack`'s."""

    def __init__(self, embed: Embeddings, layers: nn.ModuleList, *, output_scale: float | None = None,
                 **parts: nn.Module | None) -> None:
        super().__init__(embed, layers, **parts)
        self.output_scale = output_scale

    def forward(self, tgt: Tensor, memory: Tensor, memory_mask: Tensor, *, need_weights: bool = False,
                probe: AttentionProbe | None = None) -> DecoderOutput:
        """Teacher forcing: tgt (B, T) ids, each position attending to itself and the earlier ones, and to
        ``memory`` (B, S, D) where ``memory_mask`` (B, 1, 1, S), or per position (B, 1, T, S), is True."""
        return self._run(tgt, [memory] * len(self.layers), memory_mask, causal=True, need_weights=need_weights,
                         probe=probe)

    def start(self, memory: Tensor, memory_mask: Tensor, src: Tensor | None = None) -> DecoderCache:
        """An empty cache for :meth:`step`, holding each layer's cross-attention keys/values of ``memory``
        (computed once per source); ``src`` (B, S) is kept for an output layer that reads the source ids."""
        cross_kv = project_source([layer.cross_attn for layer in self.layers], memory, memory_mask)
        return DecoderCache(self_kv=[KVCache() for _ in self.layers], cross_kv=cross_kv, memory_mask=memory_mask,
                            src=src)

    def step(self, tokens: Tensor, cache: DecoderCache, *, need_weights: bool = False,
             probe: AttentionProbe | None = None) -> DecoderOutput:
        """Incremental decoding: tokens (B, t) at positions cache.length .. cache.length + t - 1, attending to
        the cached positions and causally to each other; the cache grows by t positions.

        Under a monotonic window (``cache.window``): one position, :func:`~tformer.nn.window_step.step_in_window`."""
        if cache.window is not None:
            return step_in_window(
                lambda cross_mask, window_probe: self._run(
                    tokens, cache.cross_kv, cross_mask, causal=False, self_caches=cache.self_kv, offset=cache.length,
                    need_weights=need_weights, probe=window_probe),
                tokens, cache, len(self.layers), probe)
        # A single new position may attend to every cached one: no causal mask is needed.
        return self._run(tokens, cache.cross_kv, cache.memory_mask, causal=tokens.shape[1] > 1,
                         self_caches=cache.self_kv, offset=cache.length, need_weights=need_weights, probe=probe)

    def bidirectional(self, tgt: Tensor, memory: Tensor | list[StaticKV], memory_mask: Tensor, self_mask: Tensor,
                      *, need_weights: bool = False) -> DecoderOutput:
        """The non-autoregressive pass (:mod:`tformer.models.cmlm`): every position of tgt (B, T) attends to every
        position that ``self_mask`` (B, 1, 1, T) allows (the real target positions), no causal mask.

        ``memory``: the encoder output (B, S, D), or each layer's cross-attention keys/values computed once
        (``layer.cross_attn.project_kv(memory)``), for repeated passes over one source."""
        memories = [memory] * len(self.layers) if isinstance(memory, Tensor) else memory
        return self._run(tgt, memories, memory_mask, causal=False, self_mask=self_mask, need_weights=need_weights)

    def _run(self, tgt: Tensor, memories: list, memory_mask: Tensor, *, causal: bool, need_weights: bool,
             self_mask: Tensor | None = None, self_caches: list | None = None, offset: int = 0,
             probe: AttentionProbe | None = None) -> DecoderOutput:
        """The stack over tgt (B, T) at positions offset .. offset+T-1; ``memories``: per layer, the encoder output
        (B, S, D) or its cross-attention keys/values; ``probe``: whose cross-attention weights to return."""
        y = self.embed(tgt, offset)  # (B, T, D)
        t = tgt.shape[1]
        # Queries at offset .. offset+T-1 against every key so far: (1, H, T, offset+T), shared by the layers.
        bias = None if self.relative_bias is None else self.relative_bias(t, offset + t, offset)
        # no probe (the default decoding path): no bookkeeping at all, () is a constant
        probed_layers = () if probe is None else probe.layer_indices(len(self.layers))
        heads = None if probe is None else probe.head_index()
        self_ws, cross_ws, probed = [], [], []
        for i, layer in enumerate(self.layers):
            probed_here = probe is not None and i in probed_layers
            y, sw, cw = run_layer(
                self, layer, y, memories[i], memory_mask, causal=causal, self_mask=self_mask,
                self_cache=None if self_caches is None else self_caches[i], need_weights=need_weights,
                score_bias=bias, cross_heads=heads if probed_here else None,
            )
            if need_weights:
                self_ws.append(sw)
                cross_ws.append(cw)
            if probed_here:
                probed.append(cw[:, heads] if need_weights else cw)  # (B, H', T, S)
        y = self.final_dropout(self.final_norm(y))
        return DecoderOutput(y if self.output_scale is None else y * self.output_scale, self_ws, cross_ws, probed)
