"""The registry of attention algorithms: ``AttentionConfig.kind`` -> the module that computes Eq. 1 (§3.2.1).

    Attention(Q, K, V) = softmax(Q Kᵀ / sqrt(d_k)) V                                  (Eq. 1)

:class:`~tformer.nn.attention.MultiHeadAttention` projects and splits the heads (§3.2.2) and hands q, k, v to
one :class:`AttentionAlgorithm`, looked up here by name (as Hugging Face's ``ALL_ATTENTION_FUNCTIONS[name]``).
What an algorithm can do (be causal, take a score bias, form the weights, share Q and K) is declared by its
class attributes, so that no caller branches on the name: this file and the config's validation are the
only places that know the kinds.

Shape legend: B batch, H heads, Tq queries, Tk keys, Dh = d_k = d_v.
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor, nn

from tformer.config import AttentionConfig, ConfigError
from tformer.registry import Registry


class AttentionAlgorithm(nn.Module):
    """One way of computing Eq. 1 over split heads. Subclasses set the class attributes and ``forward``.

    ``forward(q, k, v, mask, *, causal, dropout_p, score_bias, scale)`` takes q (B, H, Tq, Dh), k/v (B, H, Tk, Dh),
    a boolean mask broadcastable to (B, H, Tq, Tk) (True = may attend), and returns (B, H, Tq, Dh).
    """

    name: ClassVar[str]
    same_as_full: ClassVar[bool] = False  # computes the paper's full attention (exactly, up to rounding)
    can_be_causal: ClassVar[bool] = True  # usable for a decoder's masked self-attention
    takes_score_bias: ClassVar[bool] = True  # adds a float (1, H, Tq, Tk) bias to the scores (relative positions)
    forms_weights: ClassVar[bool] = True  # can return the weights (B, H, Tq, Tk) (``need_weights``)
    serves_cross_attention: ClassVar[bool] = False  # encoder-decoder attention next to it uses it too (else full)
    shares_qk: ClassVar[bool] = False  # the keys are the normalised queries: the layer has no W^K

    def __init__(self, cfg: AttentionConfig, max_len: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg

    def with_weights(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, **options) -> tuple[Tensor, Tensor]:
        """Eq. 1 and the weights it used: (B, H, Tq, Dh), (B, H, Tq, Tk). Only where ``forms_weights``."""
        raise ConfigError(f"{self.name} attention forms no attention weights; ask for them with full, chunked "
                          "or sliding attention")

    def shared_keys(self, q: Tensor) -> Tensor:
        """The keys of a shared-QK algorithm, from its queries (B, H, T, Dh). Only where ``shares_qk``."""
        raise NotImplementedError(f"{self.name} attention projects its own keys")


ATTENTION_ALGORITHMS: Registry[type[AttentionAlgorithm]] = Registry("attention kind")


def register_attention(cls: type[AttentionAlgorithm]) -> type[AttentionAlgorithm]:
    """Class decorator: make ``cls`` the algorithm of ``AttentionConfig(kind=cls.name)``."""
    return ATTENTION_ALGORITHMS.add(cls.name, cls)


def algorithm_class(kind: str) -> type[AttentionAlgorithm]:
    """The registered class of ``kind``; a one-line :class:`ConfigError` for an unknown name."""
    return ATTENTION_ALGORITHMS.lookup(kind)


def build_attention(cfg: AttentionConfig | None, max_len: int | None = None) -> AttentionAlgorithm:
    """The algorithm ``cfg`` names (None = full), built with ``cfg``'s settings; ``max_len``: the most positions
    it will see (Linformer's E and F cover them)."""
    cfg = AttentionConfig() if cfg is None else cfg
    return algorithm_class(cfg.kind)(cfg, max_len)


def causal_attention_config(cfg: AttentionConfig | None) -> AttentionConfig | None:
    """The attention config of a decoder's causal self-attention next to an encoder's ``cfg``: where that kind
    cannot be causal (Linformer's E, F mix all positions; Reformer's global sort lets later queries decide which
    earlier keys share a chunk) the decoder uses full attention (None); the other kinds stay."""
    return None if cfg is None or not algorithm_class(cfg.kind).can_be_causal else cfg


def cross_attention_config(cfg: AttentionConfig | None) -> AttentionConfig | None:
    """The attention config of encoder-decoder attention next to self-attention ``cfg``: the kinds that serve
    cross-attention (chunked) stay; every other kind becomes full (a window, Linformer's E and F and shared-QK
    hashing are defined over one sequence's own positions, and the source is the part that is usually short)."""
    return cfg if cfg is not None and algorithm_class(cfg.kind).serves_cross_attention else None
