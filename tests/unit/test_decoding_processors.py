"""The step processors (repetition penalty, no repeated n-grams) against Hugging Face's own logits processors, and
forced prefixes in greedy and beam search: properties and brute force."""

import itertools

import pytest
import torch
from transformers import LogitsProcessorList, NoRepeatNGramLogitsProcessor, RepetitionPenaltyLogitsProcessor

from tformer import Transformer, TransformerConfig
from tformer.errors import TformerError
from tformer.generation import GenerationOptions, beam_search_nbest, greedy_search, length_penalty
from tformer.generation.processors import forbid_repeats, penalize_repeats, prefix_tensor
from tformer.generation.search import length_limits, search

PAD, BOS, EOS = 0, 1, 2


def _model(vocab: int = 16, eos_bias: float | None = None, seed: int = 0) -> Transformer:
    """A random tiny model with spread logits; with ``eos_bias`` an output bias that only EOS has."""
    torch.manual_seed(seed)
    extra = {} if eos_bias is None else {"output_bias": True, "tie_output": False, "share_embeddings": False}
    m = Transformer(TransformerConfig.tiny(vocab_size=vocab, **extra)).eval()
    with torch.no_grad():
        m.output_projection.weight.mul_(3.0)
        if eos_bias is not None:
            m.output_projection.bias.zero_()
            m.output_projection.bias[EOS] = eos_bias
    return m


def _hf(penalty: float = 1.0, n: int = 0) -> LogitsProcessorList:
    procs = [RepetitionPenaltyLogitsProcessor(penalty)] if penalty != 1.0 else []
    return LogitsProcessorList(procs + ([NoRepeatNGramLogitsProcessor(n)] if n else []))


def _step_scores(model, src, toks, log_probs: bool) -> torch.Tensor:
    """Full recomputation (no cache) of the next scores after BOS + toks, float64, pad and BOS forbidden."""
    ids = torch.tensor([[BOS, *toks]])
    scores = model(src, ids)[:, -1].double()
    if log_probs:
        scores = scores.log_softmax(dim=-1)
    scores[:, [PAD, BOS]] = float("-inf")
    return scores


# ---- the processors themselves ------------------------------------------------------------------------------------
@pytest.mark.parametrize("penalty", [0.5, 1.3, 4.0])
def test_penalize_repeats_equals_hugging_face_on_both_signs(penalty):
    scores = torch.randn(5, 11, dtype=torch.float64) * 3  # positive and negative
    seqs = torch.randint(0, 11, (5, 7))  # with repeated tokens
    ours = scores.clone()
    penalize_repeats(ours, seqs, penalty)
    assert torch.equal(ours, RepetitionPenaltyLogitsProcessor(penalty)(seqs, scores.clone()))
    assert (ours != scores).any()


@pytest.mark.parametrize("n", [1, 2, 3])
def test_forbid_repeats_equals_hugging_face(n):
    scores = torch.randn(6, 5, dtype=torch.float64)
    seqs = torch.randint(0, 5, (6, 9))  # a small vocabulary: many repeats
    ours = scores.clone()
    forbid_repeats(ours, seqs, n)
    assert torch.equal(ours, NoRepeatNGramLogitsProcessor(n)(seqs, scores.clone()))


def test_repetition_penalty_is_checked_and_asks_for_its_feature():
    with pytest.raises(TformerError, match="repetition_penalty must be a positive number"):
        GenerationOptions(repetition_penalty=0.0)
    with pytest.raises(TformerError, match="repetition_penalty must be a positive number"):
        GenerationOptions(repetition_penalty=float("inf"))
    assert GenerationOptions().asks() == []
    from tformer.generation import Feature
    assert GenerationOptions(repetition_penalty=1.2).asks() == [(Feature.REPETITION_PENALTY, "repetition_penalty=1.2")]


# ---- greedy and beam search with them -------------------------------------------------------------------------------
@pytest.mark.parametrize("penalty, n", [(1.8, 0), (0.6, 0), (1.5, 2)])
def test_greedy_takes_the_argmax_of_the_logits_hugging_face_processes(penalty, n):
    """Hugging Face's greedy search processes the logits: each output token is the argmax of their processors
    applied to the full recomputation's logits of BOS + the output so far (BOS counts there: it is forbidden)."""
    model = _model(vocab=12)
    src = torch.randint(4, 12, (3, 6))
    src[1, 4:] = PAD
    out = model.generate(src, max_len=15, repetition_penalty=penalty, no_repeat_ngram_size=n)
    if penalty > 1:  # the untrained model repeats itself: the penalty changes that
        assert not torch.equal(out, model.generate(src, max_len=15, no_repeat_ngram_size=n))
    hf = _hf(penalty, n)
    for i, row in enumerate(out.tolist()):
        toks = [t for t in row if t != PAD]
        for t, tok in enumerate(toks):
            scores = _step_scores(model, src[i : i + 1], toks[:t], log_probs=False)
            assert hf(torch.tensor([[BOS, *toks[:t]]]), scores).argmax().item() == tok, (i, t)


@pytest.mark.parametrize("penalty, n", [(2.5, 0), (0.5, 0), (1.7, 1)])
def test_exhaustive_beam_with_hugging_face_scores_finds_the_brute_force_best(penalty, n):
    """Beam search scores the processed log-probabilities (as Hugging Face's beam search): a beam that never prunes
    returns the best of all sequences under sum(processed log p) / lp, found by enumeration in float64."""
    vocab, max_len = 7, 3
    model = _model(vocab=vocab, eos_bias=0.5)
    src = torch.randint(4, vocab, (1, 4))
    hf = _hf(penalty, n)
    best, best_score = None, float("-inf")
    for length in range(1, max_len + 1):
        for seq in itertools.product(range(2, vocab), repeat=length):
            if EOS in seq[:-1] or (length < max_len and seq[-1] != EOS):
                continue
            total = 0.0
            for t in range(length):
                scores = hf(torch.tensor([[BOS, *seq[:t]]]), _step_scores(model, src, list(seq[:t]), log_probs=True))
                total += scores[0, seq[t]].item()
            if total / length_penalty(length, 0.6) > best_score:
                best, best_score = seq, total / length_penalty(length, 0.6)
    hyp = beam_search_nbest(model, src, beam_size=vocab**2, max_len=max_len, repetition_penalty=penalty,
                            no_repeat_ngram_size=n)[0][0]
    assert hyp.tokens == best and hyp.score == pytest.approx(best_score, abs=1e-4)


# ---- forced prefixes -------------------------------------------------------------------------------------------------
PREFIXES = [[5, 6, 7], [], [9], [5, 5, 5, 5, 5]]


def _src() -> torch.Tensor:
    torch.manual_seed(1)
    src = torch.randint(4, 16, (4, 7))
    src[1, 3:] = PAD
    src[3, 5:] = PAD
    return src


@pytest.mark.parametrize("beam", [1, 3])
def test_outputs_start_with_their_prefix_and_a_mixed_batch_equals_one_by_one(beam):
    model, src = _model(), _src()
    opts = GenerationOptions(beam_size=beam, max_len=12, no_repeat_ngram_size=1)  # a ban the prefix overrides
    limits = length_limits(src, PAD, 12, model.cfg.max_len)
    out = search(model, src, opts, max_len=limits, prefix=prefix_tensor(PREFIXES))
    for i, p in enumerate(PREFIXES):
        assert out[i, : len(p)].tolist() == p
        alone = src[i : i + 1, : int((src[i] != PAD).sum())]
        one = search(model, alone, opts, max_len=limits[i : i + 1], prefix=prefix_tensor([p]))
        assert out[i, : one.shape[1]].tolist() == one[0].tolist() and (out[i, one.shape[1] :] == PAD).all()


def test_greedy_with_the_first_tokens_of_its_own_output_as_prefix_gives_that_output():
    model, src = _model(eos_bias=-1.0), _src()
    free = greedy_search(model, src, max_len=10)
    for k in range(1, 6):
        forced = greedy_search(model, src, max_len=10, prefix=prefix_tensor([row[:k] for row in free.tolist()]))
        assert torch.equal(forced, free), k


def test_forced_tokens_keep_the_model_scores_in_beam_search():
    model, src = _model(eos_bias=1.0), _src()[:1]
    prefix = [5, 6, 5]
    hyps = beam_search_nbest(model, src, beam_size=3, nbest=3, max_len=8, prefix=prefix_tensor([prefix]),
                             min_len=5)[0]
    for h in hyps:  # the prefix, then free tokens; log P as teacher forcing computes it (the prefix included)
        assert list(h.tokens[:3]) == prefix
        tgt_in = torch.tensor([[BOS, *h.tokens[:-1]]])
        logp = model(src, tgt_in).log_softmax(-1)[0].gather(1, torch.tensor(h.tokens)[:, None]).sum().item()
        assert h.logprob == pytest.approx(logp, abs=1e-4)
