"""The registry of encoder-decoder attentions: ``CrossAttentionConfig.kind`` -> the module a decoder layer attends
to the source with. Any encoder-decoder family builds its layers' cross-attention here
(:func:`build_cross_attention`), so each kind is a config choice, not a flag threaded through the layers:

    dot        the paper's scaled dot-product attention (§3.2.3)          tformer.nn.attention.MultiHeadAttention
    location   location-aware attention (Chorowski et al., 2015)          tformer.nn.location_attention
    monotonic  hard monotonic attention (Raffel et al., 2017)              tformer.nn.monotonic_attention

Each takes the same call as :class:`~tformer.nn.attention.MultiHeadAttention` and caches its source keys/values
with ``project_kv``; the location-aware and monotonic ones carry the previous step's alignment in that cache
(:class:`~tformer.nn.cache.AlignedKV`), seeded from the source padding by :func:`project_source`. To add a
kind: a builder registered with :func:`register_cross_attention`, and its name in ``CROSS_ATTENTION_KINDS``
(:mod:`tformer.config`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from torch import Tensor

from tformer.config import CrossAttentionConfig
from tformer.nn.attention import MultiHeadAttention
from tformer.nn.cache import AlignedKV, StaticKV
from tformer.nn.location_attention import LocationAwareAttention
from tformer.nn.monotonic_attention import MonotonicAttention
from tformer.registry import Registry

__all__ = ["CROSS_ATTENTIONS", "build_cross_attention", "project_source", "register_cross_attention"]

# (spec, d_model, num_heads, attention_dropout, **MultiHeadAttention options) -> the module
Builder = Callable[..., MultiHeadAttention]
CROSS_ATTENTIONS: Registry[Builder] = Registry("cross_attention kind")


def register_cross_attention(kind: str) -> Callable[[Builder], Builder]:
    """Decorator: make the function the builder of ``CrossAttentionConfig(kind=kind)`` (a kind registered twice is
    a ``ValueError``)."""
    return CROSS_ATTENTIONS.decorator(kind)


def build_cross_attention(spec: CrossAttentionConfig | None, d_model: int, num_heads: int,
                          attention_dropout: float = 0.0, **options: Any) -> MultiHeadAttention:
    """The encoder-decoder attention ``spec`` names (None = dot), with :class:`MultiHeadAttention`'s ``options``
    (``d_head``, ``bias``, ``scale_scores``, ``attention``: the algorithm of Eq. 1, for dot attention)."""
    spec = CrossAttentionConfig() if spec is None else spec
    return CROSS_ATTENTIONS.lookup(spec.kind)(spec, d_model, num_heads, attention_dropout, **options)


def project_source(cross_attns: Iterable[MultiHeadAttention], memory: Tensor, memory_mask: Tensor) -> list[StaticKV]:
    """What a decoder's cache holds for the source: each layer's cross-attention keys/values of ``memory``
    (B, S, D), computed once, and for an alignment-carrying kind its state before the first target position, from
    the source padding ``memory_mask`` (B, 1, 1, S) alone (never from a later decoding window)."""
    cross_kv = [attn.project_kv(memory) for attn in cross_attns]
    for attn, kv in zip(cross_attns, cross_kv, strict=True):
        if isinstance(kv, AlignedKV):
            kv.state.update(attn.initial_state(memory_mask))
    return cross_kv


@register_cross_attention("dot")
def _dot(spec: CrossAttentionConfig, d_model: int, num_heads: int, attention_dropout: float,
         **options: Any) -> MultiHeadAttention:
    return MultiHeadAttention(d_model, num_heads, attention_dropout, **options)


@register_cross_attention("location")
def _location(spec: CrossAttentionConfig, d_model: int, num_heads: int, attention_dropout: float, *,
              attention: Any = None, **options: Any) -> MultiHeadAttention:
    # it forms its weights itself, position by position: no algorithm of Eq. 1 to choose
    return LocationAwareAttention(d_model, num_heads, attention_dropout, channels=spec.location_channels,
                                  kernel_size=spec.location_kernel, **options)


@register_cross_attention("monotonic")
def _monotonic(spec: CrossAttentionConfig, d_model: int, num_heads: int, attention_dropout: float, *,
               attention: Any = None, **options: Any) -> MultiHeadAttention:
    return MonotonicAttention(d_model, num_heads, attention_dropout, bias_init=spec.monotonic_bias,
                              noise=spec.monotonic_noise, **options)
