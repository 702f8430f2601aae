"""Greedy search: at each step take the most probable next token (argmax of the logits).

Uses the KV cache (one new position per step) and drops finished sentences from the batch,
so the work per step shrinks as sentences end.

Shape legend: B sentences, B' sentences still decoding, L generated length, V vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def greedy_search(model, src: Tensor, *, max_len: int, min_len: int = 0) -> Tensor:
    """(B, S) source ids -> (B, L) output ids without BOS, ending in EOS when produced, pad-filled.

    Args:
        model: a :class:`tformer.Transformer` (anything with encode / start_decoding / decode_step / cfg).
        max_len: the most tokens to generate, EOS included.
        min_len: EOS is forbidden before this many tokens.
    """
    cfg = model.cfg
    b = src.shape[0]
    cache = model.start_decoding(model.encode(src), src)
    out = src.new_full((b, max_len), cfg.pad_id)  # (B, max_len)
    rows = torch.arange(b, device=src.device)  # original sentence index of each cache row, (B',)
    tokens = src.new_full((b, 1), cfg.bos_id)  # (B', 1) the last token of each row
    length = 0
    for t in range(max_len):
        logits = model.decode_step(tokens, cache)[:, -1]  # (B', V)
        if t < min_len:
            logits[:, cfg.eos_id] = float("-inf")
        next_tok = logits.argmax(dim=-1)  # (B',)
        out[rows, t] = next_tok
        length = t + 1
        done = next_tok == cfg.eos_id
        if done.any():
            keep = (~done).nonzero().squeeze(1)  # (B'',)
            if keep.numel() == 0:
                break
            cache.select(keep)
            rows, next_tok = rows[keep], next_tok[keep]
        tokens = next_tok[:, None]  # (B', 1)
    return out[:, :length]
