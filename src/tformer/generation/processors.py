"""What a decoding step does to the model's scores before choosing: small processors applied in a list.

Each engine (greedy search, sampling, beam search) scores the next token of N rows, (N, V), and hands the scores
to :func:`process`, which applies a list of processors, in place, then forces a prefix's tokens if one is given:

    forbid_special        pad and BOS never, EOS not before ``min_len`` output tokens
    penalize_repeats      a token already in the row's output: its score divided by p if positive, multiplied by p
                          if negative (CTRL, Keskar et al., 2019; Hugging Face's RepetitionPenaltyLogitsProcessor)
    forbid_repeats        a token that would complete an n-gram already in the row's output: -inf (Paulus et al.)
    forced prefix         while a row's prefix lasts, only its next token (with the model's own score) may follow

What the scores are is the engine's: greedy search and sampling process logits, beam search log-probabilities
(as Hugging Face's generate does, so the repetition penalty agrees with theirs on both). Only the output's own
tokens count as "already generated": never the source, nor a language model's prompt (for an encoder-decoder
Hugging Face counts the decoder's tokens only, as here, plus its start token, which is forbidden anyway).

Shape legend: N rows (sentences x beams), t tokens so far, V vocabulary, B sentences, P prefix length.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from tformer.generation.protocols import TokenIds


@dataclass(frozen=True)
class Step:
    """What a processor may read about the step: output position ``t``, each row's output so far ``seqs`` (N, t)
    and the sentence each row belongs to ``sentence`` (N,) (its index in the batch the engine was given)."""

    t: int
    seqs: Tensor
    sentence: Tensor


Processor = Callable[[Tensor, Step], None]
"""scores (N, V), step -> None: changes the scores in place."""


def forbid_special(scores: Tensor, cfg: TokenIds, t: int, min_len: int) -> None:
    """Tokens a hypothesis may never contain (pad, BOS) and EOS before ``min_len``: -inf in place. scores (N, V).

    BOS is allowed where it is also EOS (GPT-2's one ``<|endoftext|>``); a vocabulary may have no padding token."""
    if cfg.pad_id is not None:
        scores[:, cfg.pad_id] = float("-inf")
    if cfg.bos_id != cfg.eos_id:
        scores[:, cfg.bos_id] = float("-inf")
    if t < min_len:
        scores[:, cfg.eos_id] = float("-inf")


def forbid_repeats(scores: Tensor, seqs: Tensor, n: int) -> None:
    """No n-gram twice: each row's tokens that would complete an n-gram already in its output ``seqs`` (N, t)
    get -inf in ``scores`` (N, V), in place (n = 1: every token already produced). Nothing for n = 0."""
    t = seqs.shape[1]
    if n <= 0 or t < n:  # no complete n-gram yet
        return
    grams = seqs.unfold(1, n, 1)  # (N, t - n + 1, n): every n-gram so far
    match = (grams[:, :, :-1] == seqs[:, t - n + 1 :][:, None, :]).all(dim=-1)  # (N, t - n + 1) same first n-1
    hits = scores.new_zeros(scores.shape).scatter_add_(1, grams[:, :, -1], match.to(scores.dtype))  # (N, V)
    scores.masked_fill_(hits > 0, float("-inf"))


def penalize_repeats(scores: Tensor, seqs: Tensor, penalty: float) -> None:
    """The repetition penalty, in place: the score s of each token in a row's output ``seqs`` (N, t) becomes s / p
    where s > 0 and s * p where s < 0 (p > 1 discourages repeats). scores (N, V)."""
    if seqs.shape[1] == 0 or penalty == 1.0:
        return
    seen = scores.gather(1, seqs)  # (N, t) a token seen twice is penalised once
    scores.scatter_(1, seqs, torch.where(seen < 0, seen * penalty, seen / penalty))


def processors(cfg: TokenIds, *, min_len: int = 0, repetition_penalty: float = 1.0,
               no_repeat_ngram_size: int = 0) -> list[Processor]:
    """The processors of these settings, in the order they apply (each left out when it would do nothing)."""
    procs: list[Processor] = [lambda scores, step: forbid_special(scores, cfg, step.t, min_len)]
    if repetition_penalty != 1.0:
        procs.append(lambda scores, step: penalize_repeats(scores, step.seqs, repetition_penalty))
    if no_repeat_ngram_size:
        procs.append(lambda scores, step: forbid_repeats(scores, step.seqs, no_repeat_ngram_size))
    return procs


def prefix_tensor(prefixes: Sequence[Sequence[int]], device: torch.device | str = "cpu") -> Tensor | None:
    """Token prefixes, one per sentence, as the (B, P) tensor the engines take: each row's tokens, then -1 where
    its prefix has ended; None when every prefix is empty (nothing to force)."""
    width = max((len(p) for p in prefixes), default=0)
    if width == 0:
        return None
    out = torch.full((len(prefixes), width), -1, dtype=torch.long)
    for i, p in enumerate(prefixes):
        out[i, : len(p)] = torch.tensor(list(p), dtype=torch.long)
    return out.to(device)


def process(scores: Tensor, step: Step, procs: Sequence[Processor], prefix: Tensor | None = None) -> None:
    """Apply ``procs`` to ``scores`` (N, V) in order, in place; then, while a row's ``prefix`` (B, P; -1 = ended,
    see :func:`prefix_tensor`) lasts, every token but the prefix's next one gets -inf. A forced token keeps the
    model's own score: no processor (ban, penalty, minimum length) applies to what the caller asked for."""
    forced = None if prefix is None or step.t >= prefix.shape[1] else prefix[step.sentence, step.t]  # (N,)
    if forced is not None:
        rows = (forced >= 0).nonzero().squeeze(1)  # (N',) rows still inside their prefix
        tokens = forced[rows]
        kept = scores[rows, tokens]  # (N',) before any processor
    for proc in procs:
        proc(scores, step)
    if forced is not None and rows.numel():
        scores[rows] = float("-inf")
        scores[rows, tokens] = kept
