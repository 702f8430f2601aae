"""One decoding step under a monotonic window (:class:`~tformer.nn.cache.MonotonicWindow`), for any decoder stack.

The window is a decoding option (``GenerationOptions.monotonic_window``) that any trained encoder-decoder model can
use: each new position's cross-attention sees only the source positions within the window around the cache's
focus (``cache.cross_mask()``), and after the step each row's focus moves to the peak of the last layer's
attention, averaged over its heads, never back (``cache.advance_focus``). A decoder stack hands its own layer loop
(``run``) to :func:`step_in_window`; the Transformer's decoder and the speech decoder share this one function.

Shape legend: B rows, H heads, H' probed heads, S source positions (encoder frames).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from torch import Tensor

from tformer.errors import TformerError
from tformer.nn.attention import AttentionProbe
from tformer.nn.cache import DecoderCache

__all__ = ["step_in_window"]


class ProbedOutput(Protocol):
    """A decoder stack's output: a NamedTuple with the probed layers' cross-attention weights."""

    probed: list[Tensor]

    def _replace(self, **kw: Any) -> ProbedOutput: ...


def step_in_window(run: Callable[[Tensor, AttentionProbe], ProbedOutput], tokens: Tensor, cache: DecoderCache,
                   num_layers: int, probe: AttentionProbe | None) -> ProbedOutput:
    """One new position (tokens (B, 1)) under ``cache.window``.

    Args:
        run: ``run(cross_mask, probe)`` runs the stack's layers over ``tokens`` with the cache, the cross-attention
            restricted by ``cross_mask`` (B, 1, 1, S), and returns its output with the ``probe``'s weights.
        probe: the layers and heads whose cross-attention weights the caller wants back (or None).

    Returns:
        ``run``'s output, ``probed`` holding the asked layers' weights (B, H', 1, S) of the asked heads.
    """
    if tokens.shape[1] != 1:
        raise TformerError(f"decoding under a monotonic window takes one new position per step (the window moves "
                           f"after each), got {tokens.shape[1]} tokens at once")
    asked = [] if probe is None else probe.layer_indices(num_layers)
    layers = sorted({*asked, num_layers - 1})  # the focus needs the last layer, every head
    out = run(cache.cross_mask(), AttentionProbe(layers=tuple(layers)))
    by_layer = dict(zip(layers, out.probed, strict=True))  # (B, H, 1, S) each
    cache.advance_focus(by_layer[num_layers - 1])
    heads = slice(None) if probe is None else probe.head_index()
    return out._replace(probed=[by_layer[i][:, heads] for i in asked])
