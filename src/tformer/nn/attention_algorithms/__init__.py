"""The ways of computing Eq. 1 (§3.2.1), one file each, found by name in one registry.

    Attention(Q, K, V) = softmax(Q Kᵀ / sqrt(d_k)) V                                  (Eq. 1)

Eq. 1 as written stores the (Tq, Tk) matrix softmax(Q Kᵀ / sqrt(d_k)) for every head. The kinds of
:class:`~tformer.config.AttentionConfig`:

* ``full`` (:mod:`.sdpa`): PyTorch's fused SDPA, the default and the paper's attention;
* ``reference`` (:mod:`.reference`): Eq. 1 written out, the oracle of the others and the path of the weights;
* ``chunked`` (:mod:`.chunked`, exact): query x key blocks with a running softmax (Rabe & Staats, 2021);
* ``sliding`` (:mod:`.sliding`, a band): each position sees ``window`` positions each side (Longformer, 2020);
* ``linformer`` (:mod:`.linformer`, approximate): keys and values projected along the sequence (Wang et al., 2020);
* ``lsh`` (:mod:`.lsh`, approximate): shared-QK attention within hash buckets (Reformer, Kitaev et al., 2020).

Adding an algorithm: write one file here with a subclass of :class:`AttentionAlgorithm` (its ``name``, what it can
do as class attributes, ``forward`` and, if it forms the weights, ``with_weights``), decorate it with
:func:`register_attention` and import the file below; then add the name to ``ATTENTION_KINDS`` in
:mod:`tformer.config` (the config validates kinds without importing torch). Every model takes it from there:
``model.attention.kind=NAME``.
"""

from tformer.nn.attention_algorithms import chunked, linformer, lsh, reference, sdpa, sliding  # noqa: F401 (register)
from tformer.nn.attention_algorithms.chunked import attention_chunked
from tformer.nn.attention_algorithms.linformer import attention_linformer
from tformer.nn.attention_algorithms.lsh import attention_lsh, attention_shared_qk
from tformer.nn.attention_algorithms.reference import attention_reference, attention_weights
from tformer.nn.attention_algorithms.registry import (
    ATTENTION_ALGORITHMS,
    AttentionAlgorithm,
    algorithm_class,
    build_attention,
    causal_attention_config,
    cross_attention_config,
    register_attention,
)
from tformer.nn.attention_algorithms.sdpa import attention_fast
from tformer.nn.attention_algorithms.sliding import attention_sliding, sliding_window_mask

__all__ = [
    "ATTENTION_ALGORITHMS", "AttentionAlgorithm", "algorithm_class", "attention_chunked", "attention_fast",
    "attention_linformer", "attention_lsh", "attention_reference", "attention_shared_qk", "attention_sliding",
    "attention_weights",
    "build_attention", "causal_attention_config", "cross_attention_config", "register_attention",
    "sliding_window_mask",
]
