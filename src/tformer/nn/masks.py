"""Attention masks: the one convention of the whole toolkit.

A mask is a boolean tensor that broadcasts to the attention scores (B, H, Tq, Tk) and is
**True where a query may attend to a key**, exactly as ``torch.nn.functional.scaled_dot_product_attention``
reads a boolean ``attn_mask``. Positions that are False get a score of -inf before the softmax
(Eq. 1), so they receive zero weight.

Shape legend: B batch, S source length, T target length, Tq/Tk query/key length.
"""

from __future__ import annotations

import torch
from torch import Tensor


def padding_mask(ids: Tensor, pad_id: int) -> Tensor:
    """Keys that are real tokens may be attended to; padding may not.

    Args:
        ids: (B, S) token ids, right-padded with ``pad_id``.

    Returns:
        (B, 1, 1, S) boolean, True = real token.
    """
    return (ids != pad_id)[:, None, None, :]  # (B, S) -> (B, 1, 1, S)


def causal_mask(t_q: int, t_k: int | None = None, *, device: torch.device | None = None) -> Tensor:
    """Position i may attend to positions <= i (§3.2.3: "prevent leftward information flow").

    With ``t_k > t_q`` (incremental decoding with ``t_k - t_q`` cached keys), the queries are the
    last ``t_q`` positions of the sequence.

    Returns:
        (t_q, t_k) boolean, lower-triangular (shifted by t_k - t_q).
    """
    t_k = t_q if t_k is None else t_k
    return torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril(diagonal=t_k - t_q)


def combine(*masks: Tensor | None) -> Tensor | None:
    """Logical AND of masks (broadcasting); None entries mean "no restriction"."""
    out: Tensor | None = None
    for m in masks:
        if m is not None:
            out = m if out is None else out & m
    return out


def monotonic_window_mask(focus: Tensor, s: int, back: int, ahead: int) -> Tensor:
    """Source positions within [focus - back, focus + ahead] of each row (the monotonic window of decoding).

    Args:
        focus: (B,) or (B, T) source positions the windows are centred on (one per row, or per query).
        s: source length S.

    Returns:
        (B, 1, 1, S) or (B, 1, T, S) boolean, True = inside the window.
    """
    n = torch.arange(s, device=focus.device)  # (S,)
    f = focus[..., None]  # (B, [T,] 1)
    inside = (n >= f - back) & (n <= f + ahead)  # (B, [T,] S)
    return inside[:, None, None, :] if focus.dim() == 1 else inside[:, None, :, :]
