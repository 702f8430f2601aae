"""Beam search (§6.1: beam size 4, length penalty alpha = 0.6, max length = source length + 50).

Batched over sentences and beams: the cache holds B' x K rows (K = beam size) and every step
scores all K x V continuations of each sentence at once. Hypotheses are ranked by

    score(Y) = log P(Y | X) / lp(Y),   lp(Y) = ((5 + |Y|) / 6)^alpha          (Wu et al., 2016)

A sentence is finished as soon as it holds K completed hypotheses and no live beam can still
beat the best of them (an exact bound, not a heuristic); finished sentences leave the batch.

Shape legend: B sentences, n sentences still decoding, K beams, V vocabulary, L length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Hypothesis:
    """A finished hypothesis: its tokens (ending in EOS unless cut at max_len), log-probability and score."""

    tokens: tuple[int, ...]
    logprob: float
    score: float  # logprob / lp(len(tokens))


def length_penalty(length: int, alpha: float) -> float:
    """lp(Y) = ((5 + |Y|) / 6)^alpha."""
    return ((5.0 + length) / 6.0) ** alpha


@torch.no_grad()
def beam_search_nbest(
    model, src: Tensor, *, beam_size: int, max_len: int, min_len: int = 0, length_penalty_alpha: float = 0.6,
    nbest: int = 1,
) -> list[list[Hypothesis]]:
    """The ``nbest`` best hypotheses per sentence, best first."""
    cfg = model.cfg
    k, eos = beam_size, cfg.eos_id
    if not 1 <= nbest <= k:
        raise ValueError(f"nbest must be in [1, beam_size={k}], got {nbest}")
    b = src.shape[0]
    cache = model.start_decoding(model.encode(src), src)
    cache.repeat_interleave(k)  # (B*K) rows: sentence i owns rows i*K .. i*K+K-1
    device = src.device
    sent = torch.arange(b, device=device)  # original index of each live sentence, (n,)
    scores = torch.full((b, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: let only the first one expand
    seqs = src.new_empty((b * k, 0))  # (n*K, t) tokens so far, without BOS
    tokens = src.new_full((b * k, 1), cfg.bos_id)
    finished: list[list[Hypothesis]] = [[] for _ in range(b)]
    best_lp = max(length_penalty(max_len, length_penalty_alpha), length_penalty(1, length_penalty_alpha))
    for t in range(max_len):
        logp = model.decode_step(tokens, cache)[:, -1].float().log_softmax(dim=-1)  # (n*K, V)
        if t < min_len:
            logp[:, eos] = float("-inf")
        n, v = sent.numel(), logp.shape[-1]
        cand = (scores[:, :, None] + logp.view(n, k, v)).view(n, k * v)  # (n, K*V)
        top_s, top_i = cand.topk(min(2 * k, k * v), dim=1)  # (n, 2K), best first
        top_beam, top_tok = top_i // v, top_i % v  # (n, 2K)
        is_eos = top_tok == eos

        # Completed hypotheses: EOS among the K best candidates of a sentence.
        lp_now = length_penalty(t + 1, length_penalty_alpha)
        hits = (is_eos[:, :k] & torch.isfinite(top_s[:, :k])).nonzero().tolist()
        for i, j in hits:
            row = i * k + int(top_beam[i, j])
            toks = tuple(seqs[row].tolist()) + (eos,)
            s = float(top_s[i, j])
            finished[int(sent[i])].append(Hypothesis(toks, s, s / lp_now))

        # The K best candidates that do not end here continue (at most K of 2K can be EOS).
        alive = ~is_eos
        keep = alive & (alive.cumsum(dim=1) <= k)  # (n, 2K), exactly K True per row
        scores = top_s[keep].view(n, k)
        rows = (torch.arange(n, device=device)[:, None] * k + top_beam[keep].view(n, k))  # (n, K)
        new_tok = top_tok[keep].view(n, k)

        # A sentence is done when K hypotheses are complete and no live beam can beat the best one:
        # a live score can only fall, so its best possible normalised score is score / max lp.
        bound = (scores[:, 0] / best_lp).tolist()
        done = torch.tensor(
            [len(finished[int(sent[i])]) >= k and max(h.score for h in finished[int(sent[i])]) >= bound[i]
             for i in range(n)],
            dtype=torch.bool, device=device,
        )
        if t == max_len - 1 or bool(done.all()):
            # Out of length (or all done): live hypotheses that never ended count as they stand.
            if t == max_len - 1:
                lp_max = length_penalty(max_len, length_penalty_alpha)
                for i in (~done).nonzero().squeeze(1).tolist():
                    for j in range(k):
                        s = float(scores[i, j])
                        if s > float("-inf"):
                            toks = tuple(seqs[int(rows[i, j])].tolist()) + (int(new_tok[i, j]),)
                            finished[int(sent[i])].append(Hypothesis(toks, s, s / lp_max))
            break
        live = ~done
        rows, new_tok, scores, sent = rows[live].view(-1), new_tok[live].view(-1, 1), scores[live], sent[live]
        cache.select(rows)
        seqs = torch.cat([seqs[rows], new_tok], dim=1)  # (n*K, t+1)
        tokens = new_tok
    return [sorted(h, key=lambda h: -h.score)[:nbest] for h in finished]


def beam_search(
    model, src: Tensor, *, beam_size: int, max_len: int, min_len: int = 0, length_penalty: float = 0.6
) -> Tensor:
    """(B, S) source ids -> (B, L) best hypothesis per sentence, without BOS, padded with pad_id."""
    best = [h[0].tokens for h in beam_search_nbest(
        model, src, beam_size=beam_size, max_len=max_len, min_len=min_len, length_penalty_alpha=length_penalty
    )]
    length = max(len(t) for t in best)
    out = src.new_full((len(best), length), model.cfg.pad_id)
    for i, toks in enumerate(best):
        out[i, : len(toks)] = torch.tensor(toks, dtype=out.dtype)
    return out
