"""Ensembles at decode time: one model, two copies of one model, and two different models against a brute-force
step-by-step computation of the averaged distribution in float64."""

import copy

import pytest
import torch

from tformer import Transformer, TransformerConfig
from tformer.errors import TformerError
from tformer.generation import GenerationOptions
from tformer.generation.ensemble import Ensemble
from tformer.generation.search import length_limits, search, search_nbest

PAD, BOS, EOS = 0, 1, 2
V = 14


def _model(seed: int, eos_bias: float = 0.0, vocab: int = V, **kw) -> Transformer:
    torch.manual_seed(seed)
    m = Transformer(TransformerConfig.tiny(vocab_size=vocab, output_bias=True, tie_output=False,
                                           share_embeddings=False, **kw)).eval()
    with torch.no_grad():
        m.output_projection.weight.mul_(3.0)
        m.output_projection.bias.zero_()
        m.output_projection.bias[EOS] = eos_bias
    return m


def _src() -> torch.Tensor:
    torch.manual_seed(3)
    src = torch.randint(4, V, (4, 7))
    src[1, 3:] = PAD
    src[2, 5:] = PAD
    return src


def _limits(src, max_len=10):
    return length_limits(src, PAD, max_len, 64)


def _mean_logp(models, src, toks) -> torch.Tensor:
    """Brute force: log of the mean of the models' next-token probabilities after BOS + toks, float64, computed
    by each model's full forward pass (no cache) in float64."""
    tgt_in = torch.tensor([[BOS, *toks]])
    probs = torch.stack([m.double()(src, tgt_in)[0, -1].softmax(-1) for m in models]).mean(0)  # (V,)
    for m in models:
        m.float()
    return probs.log()


@pytest.mark.parametrize("beam", [1, 3])
def test_an_ensemble_of_one_model_or_of_two_copies_decodes_as_the_model(beam):
    model, src = _model(0), _src()
    opts = GenerationOptions(beam_size=beam, max_len=10)
    alone = model.generate(src, opts)
    assert torch.equal(search(Ensemble([model]), src, opts, max_len=_limits(src)), alone)
    assert torch.equal(search(Ensemble([model, copy.deepcopy(model)]), src, opts, max_len=_limits(src)), alone)
    if beam > 1:
        ours = search_nbest(Ensemble([model, copy.deepcopy(model)]), src, GenerationOptions(beam_size=3, nbest=3),
                            max_len=_limits(src))
        theirs = model.generate_nbest(src, beam_size=3, nbest=3, max_len=10)
        for a, b in zip(ours, theirs, strict=True):
            assert [h.tokens for h in a] == [h.tokens for h in b]
            assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-5)


def test_greedy_ensemble_of_two_models_follows_the_averaged_distribution():
    models, src = [_model(0, eos_bias=-0.5), _model(1, eos_bias=-0.5)], _src()
    out = search(Ensemble(models), src, GenerationOptions(beam_size=1), max_len=_limits(src, 9))
    assert not torch.equal(out, models[0].generate(src, max_len=9))  # not just the first model
    for i, row in enumerate(out.tolist()):
        toks = [t for t in row if t != PAD]
        for t, tok in enumerate(toks):
            logp = _mean_logp(models, src[i : i + 1], toks[:t])
            logp[[PAD, BOS]] = float("-inf")
            assert logp.argmax().item() == tok, (i, t)
        assert toks[-1] == EOS or len(toks) == 9


def test_beam_ensemble_scores_are_the_averaged_log_probabilities():
    models, src = [_model(0, eos_bias=1.0), _model(2, eos_bias=1.0)], _src()
    nbest = search_nbest(Ensemble(models), src, GenerationOptions(beam_size=3, nbest=3, length_penalty=0.0),
                         max_len=_limits(src, 8))
    for i, hyps in enumerate(nbest):
        for h in hyps:
            brute = sum(_mean_logp(models, src[i : i + 1], list(h.tokens[:t]))[tok].item()
                        for t, tok in enumerate(h.tokens))
            assert h.logprob == pytest.approx(brute, abs=1e-4)


@pytest.mark.parametrize("opts", [GenerationOptions(beam_size=1), GenerationOptions(beam_size=3),
                                  GenerationOptions(beam_size=2, monotonic_window=2, repetition_penalty=1.5)])
def test_an_ensemble_output_does_not_depend_on_the_rest_of_the_batch(opts):
    ensemble, src = Ensemble([_model(0, eos_bias=-0.5), _model(1, eos_bias=-0.5)]), _src()
    together = search(ensemble, src, opts, max_len=_limits(src))
    for i in range(src.shape[0]):
        alone_src = src[i : i + 1, : int((src[i] != PAD).sum())]
        alone = search(ensemble, alone_src, opts, max_len=_limits(alone_src))[0]
        assert together[i, : alone.shape[0]].tolist() == alone.tolist()


def test_members_must_share_the_target_vocabulary():
    with pytest.raises(TformerError, match="^ensemble model 2 has other special ids or another output vocabulary"):
        Ensemble([_model(0), _model(1, vocab=V + 1)])
    with pytest.raises(TformerError, match="at least one model"):
        Ensemble([])
