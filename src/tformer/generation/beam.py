"""Beam search (§6.1: beam size 4, length penalty alpha = 0.6, max length = source length + 50).

Batched over sentences and beams: the cache holds n x K rows (K = beam size) and every step
scores all K x V continuations of each live sentence at once. Hypotheses are ranked by

    score(Y) = log P(Y | X) / lp(Y),   lp(Y) = ((5 + |Y|) / 6)^alpha          (Wu et al., 2016)

A sentence is finished once its ``nbest`` best completed hypotheses cannot be beaten by any live
beam (a live score only falls, so its best possible normalised score is bounded), or when it
reaches its own length limit; finished sentences leave the batch. With alpha > 0, beam size 1 may
differ from greedy search (it may keep extending a prefix whose normalised score could still win);
``generate`` sends beam size 1 to greedy search.

Passing ``trace=[]`` records every step as a :class:`BeamStep` (what ``tformer plot beam`` draws);
with the default ``trace=None`` nothing is recorded and nothing is copied.

Shape legend: B sentences, n sentences still decoding, K beams, V vocabulary, L length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from tformer.errors import TformerError

if TYPE_CHECKING:
    from tformer.models.transformer.model import Transformer


@dataclass(frozen=True)
class Hypothesis:
    """A finished hypothesis: its tokens (ending in EOS unless cut at the length limit), log-probability and score."""

    tokens: tuple[int, ...]
    logprob: float
    score: float  # logprob / lp(len(tokens))


@dataclass(frozen=True)
class BeamStep:
    """One step t of beam search, recorded when a ``trace`` list is passed; tensors on the CPU.

    Row i is live sentence ``sentences[i]``; column c is one of its 2K best candidates (best first):
    live beam ``parent[i, c]`` (the rank of that beam after the previous step) extended by ``token[i, c]``,
    with log-probability ``logprob[i, c]``. A candidate is ``finished`` (ended in EOS among the K best: a
    completed hypothesis), ``kept`` (live beam number ``kept[i, :c].sum()`` of the next step), or else pruned.
    A sentence missing from the next step has stopped: its kept beams were cut at its length limit (and
    count as completed hypotheses) or could no longer beat its completed ones.
    """

    step: int  # t: the candidates' tokens are output position t
    sentences: list[int]  # (n,) original index of each live sentence
    parent: Tensor  # (n, 2K)
    token: Tensor  # (n, 2K)
    logprob: Tensor  # (n, 2K)
    finished: Tensor  # (n, 2K) bool
    kept: Tensor  # (n, 2K) bool, K True per row


def length_penalty(length: int, alpha: float) -> float:
    """lp(Y) = ((5 + |Y|) / 6)^alpha."""
    return ((5.0 + length) / 6.0) ** alpha


def row_limits(max_len: int | Tensor, batch: int) -> list[int]:
    """One length limit per sentence, from an int or a (B,) tensor."""
    if isinstance(max_len, Tensor):
        return [int(x) for x in max_len.tolist()]
    return [int(max_len)] * batch


def forbid_special(scores: Tensor, cfg, t: int, min_len: int) -> None:
    """Tokens a hypothesis may never contain (pad, BOS) and EOS before ``min_len``: -inf in place. scores (N, V)."""
    scores[:, cfg.pad_id] = float("-inf")
    if cfg.bos_id != cfg.eos_id:
        scores[:, cfg.bos_id] = float("-inf")
    if t < min_len:
        scores[:, cfg.eos_id] = float("-inf")


@torch.no_grad()
def beam_search_nbest(
    model: Transformer, src: Tensor, *, beam_size: int, max_len: int | Tensor, min_len: int = 0,
    length_penalty_alpha: float = 0.6, nbest: int = 1, trace: list[BeamStep] | None = None,
) -> list[list[Hypothesis]]:
    """The ``nbest`` best hypotheses per sentence, best first.

    Args:
        max_len: the most tokens per sentence, EOS included: one int, or a (B,) tensor of per-sentence limits.
        trace: if a list, one :class:`BeamStep` per step is appended to it (the search itself is unchanged).
    """
    cfg, k, alpha = model.cfg, beam_size, length_penalty_alpha
    if not 1 <= nbest <= k:
        raise TformerError(f"nbest must be in [1, beam_size={k}], got {nbest}")
    b, device = src.shape[0], src.device
    limits = row_limits(max_len, b)
    if min(limits) < 1:
        raise TformerError(f"max_len must be >= 1, got {min(limits)}")
    cache = model.start_decoding(model.encode(src), src)
    cache.repeat_interleave(k)  # (B*K) rows: sentence i owns rows i*K .. i*K+K-1
    sent = torch.arange(b, device=device)  # original index of each live sentence, (n,)
    scores = torch.full((b, k), float("-inf"), device=device)  # (n, K) log-probabilities of the live beams
    scores[:, 0] = 0.0  # all beams start identical: let only the first one expand
    seqs = src.new_empty((b * k, 0))  # (n*K, t) tokens so far, without BOS
    tokens = src.new_full((b * k, 1), cfg.bos_id)  # (n*K, 1)
    finished: list[list[Hypothesis]] = [[] for _ in range(b)]
    for t in range(max(limits)):
        logp = model.decode_step(tokens, cache)[:, -1].float().log_softmax(dim=-1)  # (n*K, V)
        forbid_special(logp, cfg, t, min_len)
        n, v = sent.numel(), logp.shape[-1]
        cand = (scores[:, :, None] + logp.view(n, k, v)).view(n, k * v)  # (n, K, V) -> (n, K*V)
        top_s, top_i = cand.topk(min(2 * k, k * v), dim=1)  # (n, 2K), best first
        top_beam, top_tok = top_i // v, top_i % v  # (n, 2K) which beam, which token
        is_eos = top_tok == cfg.eos_id

        # Completed hypotheses: EOS among the K best candidates of a sentence.
        lp_now = length_penalty(t + 1, alpha)
        for i, j in (is_eos[:, :k] & torch.isfinite(top_s[:, :k])).nonzero().tolist():
            toks = tuple(seqs[i * k + int(top_beam[i, j])].tolist()) + (cfg.eos_id,)
            s = float(top_s[i, j])
            finished[int(sent[i])].append(Hypothesis(toks, s, s / lp_now))

        # The K best candidates that do not end here continue (at most K of the 2K can be EOS).
        alive = ~is_eos
        keep = alive & (alive.cumsum(dim=1) <= k)  # (n, 2K), exactly K True per row
        scores = top_s[keep].view(n, k)  # (n, K)
        rows = torch.arange(n, device=device)[:, None] * k + top_beam[keep].view(n, k)  # (n, K) cache rows
        new_tok = top_tok[keep].view(n, k)  # (n, K)
        if trace is not None:
            completed = is_eos & torch.isfinite(top_s)  # (n, 2K); only the K best may complete
            completed[:, k:] = False
            trace.append(BeamStep(t, sent.tolist(), top_beam.cpu(), top_tok.cpu(), top_s.cpu(), completed.cpu(),
                                  keep.cpu()))

        done = []
        best_live = scores[:, 0].tolist()
        for i in range(n):
            fin, limit = finished[int(sent[i])], limits[int(sent[i])]
            if t + 1 >= limit:  # out of length: the live beams end here, cut
                for j in range(k):
                    s = float(scores[i, j])
                    if s > float("-inf"):
                        toks = tuple(seqs[int(rows[i, j])].tolist()) + (int(new_tok[i, j]),)
                        fin.append(Hypothesis(toks, s, s / length_penalty(t + 1, alpha)))
                done.append(True)
                continue
            # A live score can only fall: its best normalised score is score / (the largest lp still reachable).
            bound = best_live[i] / max(length_penalty(limit, alpha), length_penalty(t + 2, alpha))
            done.append(len(fin) >= nbest and sorted((h.score for h in fin), reverse=True)[nbest - 1] >= bound)
        live = ~torch.tensor(done, dtype=torch.bool, device=device)
        if not live.any():
            break
        if not any(done):  # every sentence goes on: beams move within their sentence
            rows, new_tok = rows.view(-1), new_tok.view(-1, 1)
            cache.reorder_targets(rows)
        else:  # finished sentences leave the batch
            rows, new_tok, scores, sent = rows[live].view(-1), new_tok[live].view(-1, 1), scores[live], sent[live]
            cache.select(rows)
        seqs = torch.cat([seqs[rows], new_tok], dim=1)  # (n*K, t+1)
        tokens = new_tok
    return [sorted(h, key=lambda h: -h.score)[:nbest] for h in finished]


def beam_search(
    model: Transformer, src: Tensor, *, beam_size: int, max_len: int | Tensor, min_len: int = 0,
    length_penalty_alpha: float = 0.6,
) -> Tensor:
    """(B, S) source ids -> (B, L) best hypothesis per sentence, without BOS, padded with pad_id."""
    best = [h[0].tokens for h in beam_search_nbest(
        model, src, beam_size=beam_size, max_len=max_len, min_len=min_len, length_penalty_alpha=length_penalty_alpha
    )]
    out = src.new_full((len(best), max(len(t) for t in best)), model.cfg.pad_id)  # (B, L)
    for i, toks in enumerate(best):
        out[i, : len(toks)] = torch.tensor(toks, dtype=out.dtype)
    return out
