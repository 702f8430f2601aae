"""Decoding the frame-wise outputs of a CTC model (Graves et al., 2006): greedy and prefix beam search.

A CTC model gives, for each of T frames, log-probabilities over the labels and a *blank*. An alignment
pi (one symbol per frame) stands for the labelling B(pi) it collapses to: merge repeated symbols, then drop blanks
("aa-ab" -> "aab"). The probability of a labelling sums over its alignments:

    p(y | x) = sum over pi with B(pi) = y of  prod_t p_t(pi_t)                              (Graves et al., Eq. 3)

* :func:`ctc_greedy` ("best path"): the most probable alignment, frame by frame (argmax), collapsed. Fast; not
  always the most probable labelling, which can win by summing many alignments.
* :func:`ctc_prefix_beam_search` (Hannun et al., 2014, "First-Pass Large Vocabulary Continuous Speech
  Recognition using Bi-Directional Recurrent DNNs", Algorithm 1, here without a language model): keeps the
  ``beam_size`` most probable *labelling prefixes*, each with two probabilities, that its alignments so far end
  in a blank (p_b) or in its last label (p_nb). At frame t, for a prefix l with last label l_end:

      blank:          p_b(l)      += (p_b(l) + p_nb(l)) * p_t(blank)
      repeat l_end:   p_nb(l)     += p_nb(l) * p_t(l_end)                 (merged into the same label)
      a new label c:  p_nb(l + c) += (p_b(l) + p_nb(l)) * p_t(c)          c != l_end
                      p_nb(l + c) += p_b(l) * p_t(c)                      c == l_end: needs a blank in between

  in log space (float64). Every alignment prefix lands in exactly one (prefix, ending) cell, so without pruning
  the search is exact: p_b(y) + p_nb(y) after the last frame is p(y | x), and the best prefix is the most
  probable labelling. With pruning, a kept prefix's score sums only the alignments that stayed in the beam: a
  lower bound of its p(y | x). Beam size 1 is *not* greedy decoding (it follows the most probable prefix, not
  the most probable alignment); the two often agree on confident outputs.

Frames past an utterance's length are never read. Shape legend: B utterances, T frames, V labels with the blank,
K beam size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from tformer.errors import TformerError

__all__ = ["CTCHypothesis", "ctc_collapse", "ctc_greedy", "ctc_prefix_beam_search", "ctc_prefix_beam_search_nbest"]

NEG_INF = float("-inf")


@dataclass(frozen=True)
class CTCHypothesis:
    """A labelling and the log-probability the search gives it (exact when nothing was pruned)."""

    tokens: tuple[int, ...]
    logprob: float


def _checked(log_probs: Tensor, lengths: Tensor | None, blank: int) -> list[int]:
    """Each utterance's frame count, validated (one-line :class:`TformerError`s)."""
    if log_probs.dim() != 3:
        raise TformerError(f"expected log-probabilities of shape (B, T, V), got {tuple(log_probs.shape)}")
    b, t, v = log_probs.shape
    if not 0 <= blank < v:
        raise TformerError(f"blank id {blank} is not one of the {v} labels")
    if lengths is None:
        return [t] * b
    out = [int(x) for x in lengths.tolist()]
    if len(out) != b or any(not 0 <= x <= t for x in out):
        raise TformerError(f"expected {b} lengths in [0, {t}], got {out}")
    return out


def ctc_collapse(path: list[int], blank: int = 0) -> list[int]:
    """B(pi): merge repeated symbols, then drop blanks."""
    out, prev = [], None
    for s in path:
        if s != prev and s != blank:
            out.append(s)
        prev = s
    return out


def ctc_greedy(log_probs: Tensor, lengths: Tensor | None = None, blank: int = 0) -> list[list[int]]:
    """The collapsed best path of each utterance: log_probs (B, T, V) (or any scores: only the argmax is read),
    lengths (B,) real frames (None = all T) -> B label lists."""
    frames = _checked(log_probs, lengths, blank)
    best = log_probs.argmax(dim=-1).tolist()  # (B, T)
    return [ctc_collapse(row[:n], blank) for row, n in zip(best, frames, strict=True)]


def _search(lp: np.ndarray, beam_size: int, blank: int) -> list[CTCHypothesis]:
    """Prefix beam search over one utterance's log-probabilities lp (T, V), float64; the final beam, best first."""
    v = lp.shape[1]
    prefixes: list[tuple[int, ...]] = [()]
    p_b, p_nb = np.array([0.0]), np.array([NEG_INF])  # (K,) log p of the alignments ending in blank / in a label
    labels = np.array([c for c in range(v) if c != blank])  # (V-1,)
    for frame in lp:
        total = np.logaddexp(p_b, p_nb)  # (K,)
        last = np.array([p[-1] if p else -1 for p in prefixes])  # (K,), -1 for the empty prefix
        # staying on the same prefix: a blank, or the last label repeated (merged)
        stay_b = total + frame[blank]
        repeat = np.where(last >= 0, frame[np.maximum(last, 0)], NEG_INF)
        stay_nb = p_nb + repeat
        # a new label c: from every alignment, except that the last label again needs a blank in between
        ext = np.where(labels[None, :] == last[:, None], p_b[:, None], total[:, None]) + frame[labels][None, :]
        # an extension that is itself a kept prefix merges into that prefix's p_nb (its parent is unique)
        index = {p: k for k, p in enumerate(prefixes)}
        label_column = {int(c): j for j, c in enumerate(labels)}
        for k, p in enumerate(prefixes):
            parent = index.get(p[:-1]) if p else None
            if parent is not None:
                j = label_column[p[-1]]
                stay_nb[k] = np.logaddexp(stay_nb[k], ext[parent, j])
                ext[parent, j] = NEG_INF  # counted once, in the kept prefix
        scores = np.concatenate([np.logaddexp(stay_b, stay_nb), ext.reshape(-1)])  # (K + K*(V-1),)
        live = np.flatnonzero(scores > NEG_INF)
        keep = live[np.argsort(-scores[live], kind="stable")[:beam_size]]
        n_stay, width = len(prefixes), len(labels)
        new_prefixes, new_b, new_nb = [], [], []
        for c in keep.tolist():
            if c < n_stay:
                new_prefixes.append(prefixes[c])
                new_b.append(stay_b[c])
                new_nb.append(stay_nb[c])
            else:
                k, j = divmod(c - n_stay, width)
                new_prefixes.append(prefixes[k] + (int(labels[j]),))
                new_b.append(NEG_INF)
                new_nb.append(ext[k, j])
        prefixes, p_b, p_nb = new_prefixes, np.array(new_b), np.array(new_nb)
    total = np.logaddexp(p_b, p_nb)
    order = np.argsort(-total, kind="stable")
    return [CTCHypothesis(prefixes[k], float(total[k])) for k in order.tolist()]


def ctc_prefix_beam_search_nbest(log_probs: Tensor, lengths: Tensor | None = None, beam_size: int = 8,
                                 blank: int = 0, nbest: int | None = None) -> list[list[CTCHypothesis]]:
    """The ``nbest`` (default: all ``beam_size``) best labellings of each utterance with their log-probabilities,
    best first.

    Args:
        log_probs: (B, T, V) log-softmax outputs (e.g. :meth:`ConformerCTC.forward`'s); computed in float64.
        lengths: (B,) real frames of each utterance (None = all T).
        beam_size: K, the prefixes kept after each frame (>= 1). With K at least the number of distinct prefixes
            (sum of (V-1)^l for l <= T) nothing is pruned and the scores are exact.
        blank: the blank's id.
    """
    if beam_size < 1:
        raise TformerError(f"beam_size must be >= 1, got {beam_size}")
    if nbest is not None and not 1 <= nbest <= beam_size:
        raise TformerError(f"nbest must be in [1, beam_size={beam_size}], got {nbest}")
    frames = _checked(log_probs, lengths, blank)
    lp = log_probs.detach().to("cpu", torch.float64).numpy()  # (B, T, V)
    return [_search(lp[i, :n], beam_size, blank)[:nbest] for i, n in enumerate(frames)]


def ctc_prefix_beam_search(log_probs: Tensor, lengths: Tensor | None = None, beam_size: int = 8,
                           blank: int = 0) -> list[list[int]]:
    """The best labelling of each utterance by prefix beam search (:func:`ctc_prefix_beam_search_nbest`)."""
    return [list(h[0].tokens) for h in ctc_prefix_beam_search_nbest(log_probs, lengths, beam_size, blank, nbest=1)]
