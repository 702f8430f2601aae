"""The paper's Transformer decoder over Conformer frames (Vaswani et al., 2017, §3.1; as ESPnet's Conformer
encoder-decoder ASR), assembled here from :mod:`tformer.nn`'s parts: each family builds its own stacks.

    tgt_in ids -> Embedding * sqrt(d_model) + PE (sinusoids, §3.4-3.5) -> Dropout
               -> N x DecoderLayer (masked self-attention, attention over the encoder frames, FFN)
                  (the encoder-decoder attention a kind of :mod:`tformer.nn.cross_attention`: the paper's dot
                  product, location-aware or monotonic)
               -> [LayerNorm, pre-norm only] -> hidden (B, L, D) -> x Eᵀ (the embedding matrix, tied: §3.4) -> logits

Run two ways: :meth:`SpeechDecoder.forward` (teacher forcing, causal self-attention over the whole target) and
:meth:`SpeechDecoder.step` (incremental decoding over a :class:`~tformer.nn.cache.DecoderCache`, the same numbers,
one new position at a time). Encoder frames past an utterance's length are masked out of cross-attention.

Asked with an :class:`~tformer.nn.attention.AttentionProbe`, the decoder also returns the cross-attention weights of
the probed layers and heads, from beside the fast attention path (the guided attention loss,
:mod:`tformer.training.guided_attention`). A cache that carries a monotonic window
(:class:`~tformer.nn.cache.MonotonicWindow`, :meth:`~tformer.nn.cache.DecoderCache.constrain`) is honoured by
:meth:`SpeechDecoder.step`: each new position sees only the frames within the window, which then moves to the peak of
the last layer's attention (as the Transformer family's decoder does).

Shape legend: B batch, L target length (new positions when cached), T' encoder frames, D d_model, H heads,
V vocabulary.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from tformer.config import CrossAttentionConfig
from tformer.nn.attention import AttentionProbe, MultiHeadAttention
from tformer.nn.cache import DecoderCache, KVCache
from tformer.nn.cross_attention import build_cross_attention, project_source
from tformer.nn.embedding import Embeddings, TokenEmbedding
from tformer.nn.feedforward import PositionwiseFeedForward
from tformer.nn.layers import DecoderLayer
from tformer.nn.norms import build_norm
from tformer.nn.positional import SinusoidalPositionalEncoding
from tformer.nn.window_step import step_in_window

__all__ = ["SpeechDecoder", "SpeechDecoderOutput"]


class SpeechDecoderOutput(NamedTuple):
    """hidden (B, L, D); each layer's cross-attention weights (B, H, L, T') if asked (``need_weights``); the probed
    layers' weights of the probed heads (B, H', L, T'), in layer order, if a probe asked."""

    hidden: Tensor
    cross_weights: list[Tensor]
    probed: list[Tensor]


class SpeechDecoder(nn.Module):
    """Embeddings, N decoder layers (§3.1) and, when pre-norm, a final LayerNorm; ``weight`` is the embedding
    matrix (V, D), which is also the pre-softmax linear map (§3.4).

    Args:
        vocab_size: V; d_model, num_heads, d_ff: the layer sizes; num_layers: N.
        dropout: P_drop on the embedding sums and every sub-layer output; attention_dropout: on the weights.
        pre_norm: x + Sublayer(LayerNorm(x)) and a final LayerNorm; False = the paper's LayerNorm(x + Sublayer(x)).
        max_len: the positions the sinusoid table covers (BOS and the tokens fed back).
        eps: LayerNorm's epsilon.
        cross_attention: the encoder-decoder attention's kind and settings (None = the paper's dot product).
    """

    def __init__(self, vocab_size: int, d_model: int, num_heads: int, d_ff: int, num_layers: int, *, dropout: float,
                 attention_dropout: float, pre_norm: bool, max_len: int, eps: float = 1e-5,
                 cross_attention: CrossAttentionConfig | None = None) -> None:
        super().__init__()
        tokens = TokenEmbedding(vocab_size, d_model)  # N(0, d^-1/2), times sqrt(d)
        self.embed = Embeddings(tokens, SinusoidalPositionalEncoding(max_len, d_model), dropout, max_len)

        def layer() -> DecoderLayer:
            def norm() -> nn.Module:
                return build_norm("layer", d_model, eps)

            return DecoderLayer(MultiHeadAttention(d_model, num_heads, attention_dropout),
                                build_cross_attention(cross_attention, d_model, num_heads, attention_dropout),
                                PositionwiseFeedForward(d_model, d_ff, "relu"), self_attn_norm=norm(),
                                cross_attn_norm=norm(), ffn_norm=norm(), dropout=dropout, pre_norm=pre_norm)

        self.layers = nn.ModuleList(layer() for _ in range(num_layers))
        self.final_norm = build_norm("layer", d_model, eps) if pre_norm else nn.Identity()
        for module in self.layers.modules():  # Xavier-uniform projections, zero biases (as the paper's model here)
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def weight(self) -> Tensor:
        """The embedding matrix E (V, D): logits = hidden Eᵀ."""
        return self.embed.tokens.weight

    def forward(self, tgt_in: Tensor, memory: Tensor, memory_mask: Tensor, *, need_weights: bool = False,
                probe: AttentionProbe | None = None) -> SpeechDecoderOutput:
        """Teacher forcing: tgt_in (B, L) ids, memory (B, T', D), memory_mask (B, 1, 1, T') True = a real frame
        -> hidden (B, L, D), each layer's cross-attention weights (B, H, L, T') if asked, and the probed ones."""
        return self._run(tgt_in, [memory] * len(self.layers), memory_mask, causal=True, need_weights=need_weights,
                         probe=probe)

    def start(self, memory: Tensor, memory_mask: Tensor) -> DecoderCache:
        """An empty cache for :meth:`step` with each layer's cross-attention keys/values of ``memory`` (and the
        alignment state an alignment-carrying kind starts from)."""
        return DecoderCache(self_kv=[KVCache() for _ in self.layers],
                            cross_kv=project_source([layer.cross_attn for layer in self.layers], memory, memory_mask),
                            memory_mask=memory_mask)

    def step(self, tokens: Tensor, cache: DecoderCache, *, probe: AttentionProbe | None = None
             ) -> SpeechDecoderOutput:
        """tokens (B, t) at positions cache.length .. cache.length + t - 1 -> hidden (B, t, D); the cache grows.
        Under the cache's monotonic window (``cache.window``) one position at a time
        (:func:`~tformer.nn.window_step.step_in_window`)."""
        if cache.window is not None:
            return step_in_window(
                lambda cross_mask, window_probe: self._run(
                    tokens, cache.cross_kv, cross_mask, causal=False, self_caches=cache.self_kv, offset=cache.length,
                    probe=window_probe),
                tokens, cache, len(self.layers), probe)
        return self._run(tokens, cache.cross_kv, cache.memory_mask, causal=tokens.shape[1] > 1,
                         self_caches=cache.self_kv, offset=cache.length, probe=probe)

    def _run(self, tgt: Tensor, memories: list, memory_mask: Tensor, *, causal: bool, need_weights: bool = False,
             self_caches: list[KVCache] | None = None, offset: int = 0, probe: AttentionProbe | None = None
             ) -> SpeechDecoderOutput:
        y = self.embed(tgt, offset)  # (B, L, D)
        probed_layers = () if probe is None else probe.layer_indices(len(self.layers))
        heads = None if probe is None else probe.head_index()
        weights, probed = [], []
        for i, layer in enumerate(self.layers):
            probed_here = i in probed_layers
            y, _, cross = layer(y, memories[i], memory_mask, causal=causal, need_weights=need_weights,
                                self_cache=None if self_caches is None else self_caches[i],
                                cross_heads=heads if probed_here else None)
            if need_weights:
                weights.append(cross)
            if probed_here:
                probed.append(cross[:, heads] if need_weights else cross)  # (B, H', L, T')
        return SpeechDecoderOutput(self.final_norm(y), weights, probed)
