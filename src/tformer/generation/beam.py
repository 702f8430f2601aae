"""Beam search (§6.1: beam size 4, length penalty alpha = 0.6, max length = source length + 50).

Batched over sentences and beams: the cache holds n x K rows (K = beam size) and every step
scores all K x V continuations of each live sentence at once. Hypotheses are ranked by

    score(Y) = log P(Y | X) / lp(Y),   lp(Y) = ((5 + |Y|) / 6)^alpha          (Wu et al., 2016)

A sentence is finished once its ``nbest`` best completed hypotheses cannot be beaten by any live
beam (a live score only falls, so its best possible normalised score is bounded), or when it
reaches its own length limit; finished sentences leave the batch. With alpha > 0, beam size 1 may
differ from greedy search (it may keep extending a prefix whose normalised score could still win);
``generate`` sends beam size 1 to greedy search.

Where the search begins is the ``start`` a model gives (:data:`~tformer.generation.protocols.BeamStart`): by
default an encoder-decoder's encoded source and BOS; a decoder-only language model's prompts read into the cache,
each prompt's last token the first input (:meth:`tformer.models.gpt.model.DecoderOnly.prefill`). The search is the
same from there: hypotheses, scores and limits count the new tokens only, never a prompt's.

Passing ``trace=[]`` records every step as a :class:`BeamStep` (what ``tformer plot beam`` draws);
with the default ``trace=None`` nothing is recorded and nothing is copied.

Shape legend: B sentences, n sentences still decoding, K beams, V vocabulary, L length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from tformer.errors import TformerError
from tformer.generation.options import GenerationOptions
from tformer.generation.processors import (  # noqa: F401 (forbid_*: still importable from here, their first home)
    Step,
    forbid_repeats,
    forbid_special,
    process,
    processors,
)
from tformer.generation.protocols import BeamCache, BeamStart, StepDecoder, TokenIds, encoder_decoder_start
from tformer.nn.cache import MonotonicWindow


@dataclass(frozen=True)
class Hypothesis:
    """A finished hypothesis: its tokens (ending in EOS unless cut at the length limit), log-probability and score.

    The log-probability sums the step scores the processors left (:mod:`tformer.generation.processors`): with a
    repetition penalty, the penalised ones."""

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
    """One length limit per sentence, from an int or a (B,) tensor; each must be >= 1 (one-line TformerError)."""
    limits = [int(x) for x in max_len.tolist()] if isinstance(max_len, Tensor) else [int(max_len)] * batch
    if limits and min(limits) < 1:
        raise TformerError(f"max_len must be >= 1, got {min(limits)}")
    return limits


def fill_id(cfg: TokenIds) -> int:
    """What fills a finished row of an output tensor: ``pad_id``, or ``eos_id`` for a vocabulary without padding."""
    return cfg.eos_id if cfg.pad_id is None else cfg.pad_id


@torch.no_grad()
def beam_search_nbest(
    model: StepDecoder, src: Tensor, *, beam_size: int, max_len: int | Tensor, min_len: int = 0,
    length_penalty_alpha: float = 0.6, nbest: int = 1, trace: list[BeamStep] | None = None,
    window: MonotonicWindow | None = None, no_repeat_ngram_size: int = 0, start: BeamStart | None = None,
    repetition_penalty: float = 1.0, prefix: Tensor | None = None,
) -> list[list[Hypothesis]]:
    """The ``nbest`` best hypotheses per sentence, best first.

    Args:
        model: a :class:`~tformer.generation.protocols.StepDecoder` (cfg, decode_step); without ``start`` an
            :class:`~tformer.generation.protocols.EncoderDecoder` (also encode, start_decoding).
        src: (B, S) source ids, or with ``start`` any (B, ...) tensor of the batch's ids (a language model's
            prompts): its rows are the sentences, its device and dtype the outputs'.
        max_len: the most tokens per sentence, EOS included: one int, or a (B,) tensor of per-sentence limits.
        nbest: 1 <= nbest <= beam_size (the settings are checked by :class:`GenerationOptions`).
        trace: if a list, one :class:`BeamStep` per step is appended to it (the search itself is unchanged).
        window: decode under this monotonic window (each beam carries its own focus), or None.
        no_repeat_ngram_size: n > 0: no hypothesis repeats an n-gram of its own new tokens (:func:`forbid_repeats`;
            a prompt's tokens are not counted); 0 = off.
        start: () -> (cache, first input (B, t)) (:data:`~tformer.generation.protocols.BeamStart`); default:
            encode ``src`` and start from BOS (:func:`~tformer.generation.protocols.encoder_decoder_start`).
        repetition_penalty: p != 1: the log-probability of a token the beam already produced is multiplied by p
            (:func:`~tformer.generation.processors.penalize_repeats`); the scores then sum the penalised values.
        prefix: (B, P) the first tokens of every hypothesis of each sentence, forced (-1 where a row's prefix has
            ended; :func:`~tformer.generation.processors.prefix_tensor`), or None. They count in the scores.
    """
    GenerationOptions(beam_size=beam_size, nbest=nbest)  # a direct caller's settings, checked once
    cfg, k, alpha = model.cfg, beam_size, length_penalty_alpha
    procs = processors(cfg, min_len=min_len, repetition_penalty=repetition_penalty,
                       no_repeat_ngram_size=no_repeat_ngram_size)
    b, device = src.shape[0], src.device
    limits = row_limits(max_len, b)
    cache, first = encoder_decoder_start(model, src) if start is None else start()  # first (B, t)
    if window is not None:
        cache.constrain(window)
    cache.repeat_interleave(k)  # (B*K) rows: sentence i owns rows i*K .. i*K+K-1
    sent = torch.arange(b, device=device)  # original index of each live sentence, (n,)
    scores = torch.full((b, k), float("-inf"), device=device)  # (n, K) log-probabilities of the live beams
    scores[:, 0] = 0.0  # all beams start identical: let only the first one expand
    seqs = src.new_empty((b * k, 0))  # (n*K, t) tokens so far, without BOS
    tokens = first.repeat_interleave(k, dim=0)  # (n*K, t)
    finished: list[list[Hypothesis]] = [[] for _ in range(b)]
    for t in range(max(limits)):
        logp = model.decode_step(tokens, cache)[:, -1].float().log_softmax(dim=-1)  # (n*K, V)
        process(logp, Step(t, seqs, sent.repeat_interleave(k)), procs, prefix)
        top_s, top_beam, top_tok = _best_candidates(scores, logp, k)  # (n, 2K) each, best first
        is_eos = top_tok == cfg.eos_id
        _complete(finished, sent, seqs, top_s, top_beam, is_eos, k, cfg.eos_id, length_penalty(t + 1, alpha))
        keep, scores, rows, new_tok = _continuing(top_s, top_beam, top_tok, is_eos, k)  # (n, K) but keep (n, 2K)
        if trace is not None:
            trace.append(_record(t, sent, top_s, top_beam, top_tok, is_eos, keep, k))
        done = _stopped(finished, sent, limits, t, nbest, alpha, scores, seqs, rows, new_tok)
        if all(done):
            break
        rows, new_tok, scores, sent = _next_batch(done, cache, rows, new_tok, scores, sent)  # (n*K,), (n*K, 1), ...
        seqs = torch.cat([seqs[rows], new_tok], dim=1)  # (n*K, t+1)
        tokens = new_tok
    return [sorted(h, key=lambda h: -h.score)[:nbest] for h in finished]


def _next_batch(done: list[bool], cache: BeamCache, rows: Tensor, new_tok: Tensor, scores: Tensor,
                sent: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The next step's batch, with the cache moved to it: the kept beams' cache rows (n*K,) and tokens (n*K, 1), and
    the scores (n, K) and sentence indices (n,) of the sentences that go on; the finished ones leave the batch."""
    if not any(done):  # every sentence goes on: beams move within their sentence
        rows = rows.view(-1)
        cache.reorder_targets(rows)
        return rows, new_tok.view(-1, 1), scores, sent
    live = ~torch.tensor(done, dtype=torch.bool, device=rows.device)  # (n,)
    rows = rows[live].view(-1)
    cache.select(rows)
    return rows, new_tok[live].view(-1, 1), scores[live], sent[live]


def _best_candidates(scores: Tensor, logp: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The 2K best continuations of each sentence: scores (n, K) + logp (n*K, V) -> score, beam, token, each (n, 2K)."""
    n, v = scores.shape[0], logp.shape[-1]
    cand = (scores[:, :, None] + logp.view(n, k, v)).view(n, k * v)  # (n, K, V) -> (n, K*V)
    top_s, top_i = cand.topk(min(2 * k, k * v), dim=1)  # (n, 2K), best first
    return top_s, top_i // v, top_i % v  # which beam, which token


def _complete(finished: list[list[Hypothesis]], sent: Tensor, seqs: Tensor, top_s: Tensor, top_beam: Tensor,
              is_eos: Tensor, k: int, eos_id: int, lp: float) -> None:
    """Completed hypotheses: EOS among the K best candidates of a sentence joins its finished list."""
    for i, j in (is_eos[:, :k] & torch.isfinite(top_s[:, :k])).nonzero().tolist():
        toks = tuple(seqs[i * k + int(top_beam[i, j])].tolist()) + (eos_id,)
        s = float(top_s[i, j])
        finished[int(sent[i])].append(Hypothesis(toks, s, s / lp))


def _continuing(top_s: Tensor, top_beam: Tensor, top_tok: Tensor, is_eos: Tensor,
                k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The K best candidates that do not end here (at most K of the 2K can be EOS): which (n, 2K), and their
    scores, cache rows and tokens (n, K)."""
    n = top_s.shape[0]
    alive = ~is_eos
    keep = alive & (alive.cumsum(dim=1) <= k)  # (n, 2K), exactly K True per row
    rows = torch.arange(n, device=top_s.device)[:, None] * k + top_beam[keep].view(n, k)  # (n, K) cache rows
    return keep, top_s[keep].view(n, k), rows, top_tok[keep].view(n, k)


def _record(t: int, sent: Tensor, top_s: Tensor, top_beam: Tensor, top_tok: Tensor, is_eos: Tensor,
            keep: Tensor, k: int) -> BeamStep:
    """Step t as a :class:`BeamStep` on the CPU."""
    completed = is_eos & torch.isfinite(top_s)  # (n, 2K); only the K best may complete
    completed[:, k:] = False
    return BeamStep(t, sent.tolist(), top_beam.cpu(), top_tok.cpu(), top_s.cpu(), completed.cpu(), keep.cpu())


def _stopped(finished: list[list[Hypothesis]], sent: Tensor, limits: list[int], t: int, nbest: int, alpha: float,
             scores: Tensor, seqs: Tensor, rows: Tensor, new_tok: Tensor) -> list[bool]:
    """Whether each live sentence stops after step t: at its length limit (its live beams end here, cut, and join
    its completed hypotheses), or when its ``nbest`` best completed hypotheses cannot be beaten by a live beam."""
    done = []
    best_live = scores[:, 0].tolist()
    for i in range(sent.numel()):
        fin, limit = finished[int(sent[i])], limits[int(sent[i])]
        if t + 1 >= limit:  # out of length: the live beams end here, cut
            for j in range(scores.shape[1]):
                s = float(scores[i, j])
                if s > float("-inf"):
                    toks = tuple(seqs[int(rows[i, j])].tolist()) + (int(new_tok[i, j]),)
                    fin.append(Hypothesis(toks, s, s / length_penalty(t + 1, alpha)))
            done.append(True)
            continue
        # A live score can only fall: its best normalised score is score / (the largest lp still reachable).
        bound = best_live[i] / max(length_penalty(limit, alpha), length_penalty(t + 2, alpha))
        done.append(len(fin) >= nbest and sorted((h.score for h in fin), reverse=True)[nbest - 1] >= bound)
    return done


def beam_search(
    model: StepDecoder, src: Tensor, *, beam_size: int, max_len: int | Tensor, min_len: int = 0,
    length_penalty_alpha: float = 0.6, window: MonotonicWindow | None = None, no_repeat_ngram_size: int = 0,
    start: BeamStart | None = None, repetition_penalty: float = 1.0, prefix: Tensor | None = None,
) -> Tensor:
    """(B, S) source ids -> (B, L) best hypothesis per sentence, without BOS, padded with pad_id (``eos_id`` for a
    vocabulary without padding). The settings: see :func:`beam_search_nbest`."""
    best = [h[0].tokens for h in beam_search_nbest(
        model, src, beam_size=beam_size, max_len=max_len, min_len=min_len, length_penalty_alpha=length_penalty_alpha,
        window=window, no_repeat_ngram_size=no_repeat_ngram_size, start=start, repetition_penalty=repetition_penalty,
        prefix=prefix,
    )]
    out = src.new_full((len(best), max(len(t) for t in best)), fill_id(model.cfg))  # (B, L)
    for i, toks in enumerate(best):
        out[i, : len(toks)] = torch.tensor(toks, dtype=out.dtype)
    return out
