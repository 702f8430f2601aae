"""CTC decoding against brute force: every one of the V^T alignments of a tiny input enumerated, collapsed and summed
per labelling in float64; the labelling probabilities against PyTorch's own CTC loss; lengths respected."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from tformer.errors import TformerError
from tformer.generation import (
    CTCHypothesis,
    ctc_collapse,
    ctc_greedy,
    ctc_prefix_beam_search,
    ctc_prefix_beam_search_nbest,
)

CASES = [(t, v, blank, seed) for t, v, blank in [(1, 2, 0), (3, 3, 0), (4, 4, 2), (5, 3, 1), (6, 4, 0)]
         for seed in range(3)]


def _log_probs(t: int, v: int, seed: int, batch: int = 1, sharpness: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, t, v, generator=g, dtype=torch.float64) * sharpness).log_softmax(-1)  # (B, T, V)


def _enumerate(lp: torch.Tensor, blank: int) -> tuple[dict[tuple[int, ...], float], tuple[int, ...]]:
    """Brute force over one utterance lp (T, V): log p(y | x) of every labelling (logsumexp over its alignments),
    and the most probable single alignment."""
    t, v = lp.shape
    paths = torch.tensor(list(itertools.product(range(v), repeat=t)), dtype=torch.long)  # (V^T, T)
    scores = lp.gather(1, paths.t()).sum(dim=0) if t else torch.zeros(1, dtype=torch.float64)  # (V^T,)
    per_label: dict[tuple[int, ...], list[torch.Tensor]] = {}
    for path, s in zip(paths.tolist(), scores, strict=True):
        per_label.setdefault(tuple(ctc_collapse(path, blank)), []).append(s)
    exact = {y: float(torch.stack(s).logsumexp(0)) for y, s in per_label.items()}
    return exact, tuple(paths[int(scores.argmax())].tolist())


def _prefix_count(t: int, v: int) -> int:
    """Distinct labelling prefixes of at most t labels out of v - 1: the beam that prunes nothing."""
    return sum((v - 1) ** n for n in range(t + 1))


def test_collapse_merges_repeats_then_drops_blanks():
    assert ctc_collapse([1, 1, 0, 1, 2, 2, 0, 0, 2], blank=0) == [1, 1, 2, 2]
    assert ctc_collapse([0, 0], blank=0) == [] and ctc_collapse([], blank=0) == []
    assert ctc_collapse([3, 3, 1, 3], blank=3) == [1]


@pytest.mark.parametrize("t, v, blank, seed", CASES)
def test_greedy_is_the_collapsed_best_alignment(t, v, blank, seed):
    lp = _log_probs(t, v, seed)
    _, best_path = _enumerate(lp[0], blank)
    assert ctc_greedy(lp, blank=blank) == [ctc_collapse(list(best_path), blank)]


@pytest.mark.parametrize("t, v, blank, seed", CASES)
def test_unpruned_prefix_beam_search_is_exact(t, v, blank, seed):
    """With a beam that holds every prefix, the search returns every labelling with its exact log p(y | x), and its
    best is the most probable labelling."""
    lp = _log_probs(t, v, seed)
    exact, _ = _enumerate(lp[0], blank)
    k = _prefix_count(t, v)
    hyps = ctc_prefix_beam_search_nbest(lp, beam_size=k, blank=blank)[0]
    assert {h.tokens for h in hyps} == set(exact)  # every labelling of at most T labels, nothing else
    for h in hyps:
        assert h.logprob == pytest.approx(exact[h.tokens], abs=1e-12)
    best = max(exact, key=exact.get)
    assert hyps[0].tokens == best
    assert ctc_prefix_beam_search(lp, beam_size=k, blank=blank) == [list(best)]


@pytest.mark.parametrize("t, v, blank, seed", CASES)
def test_logprob_equals_torch_ctc_loss(t, v, blank, seed):
    """-F.ctc_loss (no reduction) is log p(y | x): the scores of the unpruned search equal it."""
    lp = _log_probs(t, v, seed)
    hyps = ctc_prefix_beam_search_nbest(lp, beam_size=_prefix_count(t, v), blank=blank)[0]
    for h in hyps[:8]:
        target = torch.tensor([h.tokens], dtype=torch.long).reshape(1, -1)
        loss = F.ctc_loss(lp.transpose(0, 1), target, torch.tensor([t]), torch.tensor([len(h.tokens)]), blank=blank,
                          reduction="none")
        assert -float(loss) == pytest.approx(h.logprob, abs=1e-10)


@pytest.mark.parametrize("beam", [1, 2, 4])
@pytest.mark.parametrize("t, v, blank, seed", CASES[3:])
def test_a_pruned_beam_scores_a_lower_bound(beam, t, v, blank, seed):
    """With pruning, a kept prefix sums only the alignments that stayed in the beam: at most its exact log p(y | x).
    (Beam 1 is not greedy decoding, and a wider beam may find another labelling: neither is asserted.)"""
    lp = _log_probs(t, v, seed)
    exact, _ = _enumerate(lp[0], blank)
    for h in ctc_prefix_beam_search_nbest(lp, beam_size=beam, blank=blank)[0]:
        assert h.logprob <= exact[h.tokens] + 1e-12


def test_beam_search_finds_the_labelling_that_greedy_misses():
    """Two frames, p(blank) = 0.6, p(a) = 0.4: the best path is "--" (0.36), but "a" has three alignments (0.64)."""
    lp = torch.tensor([[[0.6, 0.4], [0.6, 0.4]]], dtype=torch.float64).log()
    assert ctc_greedy(lp) == [[]]
    assert ctc_prefix_beam_search(lp, beam_size=1) == [[]]  # "a" was pruned after the first frame
    best = ctc_prefix_beam_search_nbest(lp, beam_size=2)[0][0]
    assert best.tokens == (1,) and best.logprob == pytest.approx(math.log(0.64), abs=1e-12)


def test_frames_past_a_length_are_ignored():
    """Each utterance of a padded batch (garbage in its padding) decodes as it does alone."""
    lengths = [6, 2, 0, 4]
    lp = _log_probs(6, 5, seed=7, batch=len(lengths), sharpness=1.0)
    for beam in (1, 3, 50):
        batched = ctc_prefix_beam_search_nbest(lp, torch.tensor(lengths), beam_size=beam)
        for i, n in enumerate(lengths):
            alone = ctc_prefix_beam_search_nbest(lp[i : i + 1, :n], beam_size=beam)[0]
            assert batched[i] == alone
    greedy = ctc_greedy(lp, torch.tensor(lengths))
    assert greedy == [ctc_greedy(lp[i : i + 1, :n])[0] for i, n in enumerate(lengths)]
    assert greedy[2] == [] and batched[2] == [CTCHypothesis((), 0.0)]  # no frames: the empty labelling, p = 1


def test_bad_arguments_are_one_line_errors():
    lp = _log_probs(3, 3, seed=0)
    with pytest.raises(TformerError, match="beam_size must be >= 1"):
        ctc_prefix_beam_search(lp, beam_size=0)
    with pytest.raises(TformerError, match="blank id 3 is not one of the 3 labels"):
        ctc_greedy(lp, blank=3)
    with pytest.raises(TformerError, match=r"expected 1 lengths in \[0, 3\]"):
        ctc_greedy(lp, torch.tensor([4]))
    with pytest.raises(TformerError, match="shape"):
        ctc_greedy(lp[0])
    with pytest.raises(TformerError, match="nbest"):
        ctc_prefix_beam_search_nbest(lp, beam_size=2, nbest=3)
