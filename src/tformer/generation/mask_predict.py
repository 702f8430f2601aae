"""Mask-predict: non-autoregressive decoding by iterative refinement (Ghazvininejad et al., 2019, §3).

For each sentence, the ``length_candidates`` most likely target lengths are decoded side by side:

    t = 0:        y = <mask> ... <mask>  (|y| of them)   ->  predict every position:  y_i, p_i = argmax, max p
    t = 1..T-1:   n = |y| * (T - t) / T  (rounded down)  ->  hide the n positions with the lowest p_i, predict
                                                             them from the rest; update those y_i and p_i
    finally:      keep the candidate with the highest mean log p_i

Each round is one pass of the decoder over all positions at once, so the cost grows with T, not with the
output length (the autoregressive decoder makes one pass per token). The cross-attention keys and values are
projected once, and the output layer runs only at the positions being predicted. A round with nothing to
re-predict (n = 0 for every row: short outputs, late rounds) is skipped, so ``iterations`` is an upper bound
on the decoder passes.

Shape legend: B sentences, C length candidates, R = B * C rows, S source length, T longest candidate, V vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tformer.errors import TformerError
from tformer.generation.options import GenerationOptions
from tformer.generation.protocols import MaskPredictIds, MaskPredictor


def length_limit(cfg: MaskPredictIds, max_len: int | None) -> int:
    """The longest target the decoder may produce, EOS not counted."""
    if max_len is not None and max_len < 2:
        raise TformerError(f"max_len must be >= 2 for a non-autoregressive model (a token and EOS), got {max_len}")
    limit = min(cfg.max_target_len, cfg.max_len)
    return limit if max_len is None else min(limit, max_len - 1)


@torch.no_grad()
def mask_predict(model: MaskPredictor, src: Tensor, *, iterations: int = 10, length_candidates: int = 3,
                 max_len: int | None = None, trace: list[Tensor] | None = None) -> Tensor:
    """(B, S) source ids -> (B, L) output ids, each row its tokens then EOS, pad-filled.

    ``iterations`` and ``length_candidates`` are >= 1 (checked by :class:`GenerationOptions`). ``trace``, when a
    list, receives the tokens (R, T) after every decoder pass (for pictures and tests).
    """
    GenerationOptions(iterations=iterations, length_candidates=length_candidates)  # a direct caller's, checked once
    cfg = model.cfg
    b = src.shape[0]
    limit = length_limit(cfg, max_len)
    memory = model.encode(src)  # (B, S, D)
    length_logits = model.predict_length(memory, src).float()  # (B, L + 1)
    length_logits[:, 0] = float("-inf")  # a translation has at least one token
    length_logits[:, limit + 1:] = float("-inf")
    c = min(length_candidates, limit)
    lengths = length_logits.topk(c, dim=-1).indices.reshape(-1)  # (R,) candidate c of sentence i at row i*C + c
    memory, src_r = memory.repeat_interleave(c, dim=0), src.repeat_interleave(c, dim=0)  # (R, S, D), (R, S)
    cross_kv = model.project_memory(memory)  # each layer's cross-attention keys and values, projected once
    t_max = int(lengths.max())
    real = torch.arange(t_max, device=src.device)[None, :] < lengths[:, None]  # (R, T)
    tokens = torch.where(real, cfg.mask_id, cfg.pad_id)  # (R, T) all <mask>
    logp = torch.zeros(tokens.shape, dtype=torch.float32, device=src.device)  # (R, T) confidence of each token
    for t in range(iterations):
        if t == 0:
            hide = real
        else:
            n = lengths * (iterations - t) // iterations  # (R,) tokens to re-predict
            if not bool((n > 0).any()):
                continue
            rank = logp.masked_fill(~real, float("inf")).argsort(dim=1).argsort(dim=1)  # 0 = least confident
            hide = rank < n[:, None]  # (R, T)
            tokens = tokens.masked_fill(hide, cfg.mask_id)
        states = model.decoder_states(tokens, memory, src_r, cross_kv=cross_kv)  # (R, T, D)
        logits = model.token_logits(states[hide]).float()  # (N, V): only the N positions being predicted
        logits[:, [cfg.pad_id, cfg.bos_id, cfg.eos_id]] = float("-inf")  # never inside a translation
        best_logp, best = logits.log_softmax(dim=-1).max(dim=-1)  # (N,)
        tokens, logp = tokens.masked_scatter(hide, best), logp.masked_scatter(hide, best_logp)
        if trace is not None:
            trace.append(tokens.clone())
    mean_logp = (logp * real).sum(dim=1) / lengths  # (R,)
    pick = mean_logp.view(b, c).argmax(dim=1) + torch.arange(b, device=src.device) * c  # (B,) row of the winner
    out = torch.full((b, t_max + 1), cfg.pad_id, dtype=torch.long, device=src.device)  # (B, T + 1)
    out[:, :t_max] = tokens[pick]
    out[torch.arange(b, device=src.device), lengths[pick]] = cfg.eos_id
    return out[:, : int(lengths[pick].max()) + 1]
