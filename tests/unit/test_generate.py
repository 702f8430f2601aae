"""Greedy and beam search: stopping, lengths, beam 1 = greedy, exhaustive beam = brute force, batch independence."""

import itertools

import pytest
import torch

from tformer import Transformer, TransformerConfig
from tformer.generation import beam_search, beam_search_nbest, greedy_search, length_penalty

EOS, PAD = 2, 0


def _model(vocab=64, **kw):
    m = Transformer(TransformerConfig.tiny(vocab_size=vocab, **kw)).eval()
    with torch.no_grad():  # random but not degenerate: spread the logits
        m.output_projection.weight.mul_(3.0)
    return m


def _favour_eos(model, bias):
    """Make EOS likely by adding to its output logit (an output bias only on EOS)."""
    cfg = model.cfg.replace(output_bias=True, tie_output=False, share_embeddings=False)
    m = Transformer(cfg).eval()
    missing, unexpected = m.load_state_dict(model.state_dict(), strict=False)
    assert missing == ["output_projection.bias"] and not unexpected
    with torch.no_grad():
        m.output_projection.bias.zero_()
        m.output_projection.bias[EOS] = bias
    return m


def _teacher_forced_logprob(model, src, out):
    tgt_in = torch.cat([torch.full((1, 1), model.cfg.bos_id), out[None, :-1]], dim=1)
    logp = model(src, tgt_in).log_softmax(-1)[0]
    return logp.gather(1, out[:, None]).sum().item()


def test_greedy_picks_the_argmax_each_step():
    model = _model()
    src = torch.randint(4, 64, (1, 6))
    out = greedy_search(model, src, max_len=6)
    for t in range(out.shape[1]):
        tgt_in = torch.cat([torch.tensor([[model.cfg.bos_id]]), out[:, :t]], dim=1)
        assert model(src, tgt_in)[0, -1].argmax().item() == out[0, t].item()


def test_greedy_stops_at_eos_and_pads_after():
    model = _favour_eos(_model(), bias=0.0)
    src = torch.randint(4, 64, (4, 5))
    free = greedy_search(model, src, max_len=10)
    with torch.no_grad():
        model.output_projection.bias[EOS] = 8.0  # EOS soon
    out = greedy_search(model, src, max_len=10)
    for row in out.tolist():
        assert EOS in row
        after = row[row.index(EOS) + 1 :]
        assert all(t == PAD for t in after)
    assert out.shape[1] <= free.shape[1]


def test_max_len_and_min_len_are_honoured():
    model = _favour_eos(_model(), bias=50.0)  # EOS is always the argmax
    src = torch.randint(4, 64, (3, 5))
    assert greedy_search(model, src, max_len=10).tolist() == [[EOS]] * 3
    out = greedy_search(model, src, max_len=10, min_len=4)
    assert out.shape == (3, 5) and (out[:, 4] == EOS).all() and (out[:, :4] != EOS).all()
    model2 = _model()
    out = model2.generate(src, beam_size=1, max_len=7)
    assert out.shape[1] <= 7
    out = model.generate(src, beam_size=3, max_len=10, min_len=4)
    assert (out[:, 4] == EOS).all() and (out[:, :4] != EOS).all()


def test_beam_size_one_equals_greedy():
    model = _model()
    src = torch.randint(4, 64, (5, 6))
    src[2, 4:] = PAD
    greedy = greedy_search(model, src, max_len=12)
    beam = beam_search(model, src, beam_size=1, max_len=12, length_penalty_alpha=0.0)
    assert torch.equal(beam, greedy)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
def test_exhaustive_beam_finds_the_brute_force_best(alpha):
    # With 7 tokens (5 of them allowed in an output: not pad, not BOS) and at most 3 steps, a beam
    # of 7*7 never prunes: it must return the best of all sequences under score = logprob / lp,
    # found by enumeration.
    vocab, max_len = 7, 3
    model = _favour_eos(_model(vocab=vocab), bias=1.0)
    src = torch.randint(4, vocab, (1, 4))
    best, best_score = None, float("-inf")
    for n in range(1, max_len + 1):
        for seq in itertools.product(range(2, vocab), repeat=n):
            if EOS in seq[:-1] or (n < max_len and seq[-1] != EOS):
                continue
            s = _teacher_forced_logprob(model, src, torch.tensor(seq)) / length_penalty(n, alpha)
            if s > best_score:
                best, best_score = seq, s
    hyp = beam_search_nbest(model, src, beam_size=vocab * vocab, max_len=max_len, length_penalty_alpha=alpha)[0][0]
    assert hyp.tokens == best
    assert hyp.score == pytest.approx(best_score, abs=1e-4)


def test_nbest_is_sorted_and_scores_are_true_logprobs():
    model = _favour_eos(_model(), bias=2.0)
    src = torch.randint(4, 64, (2, 5))
    nbest = beam_search_nbest(model, src, beam_size=4, max_len=8, nbest=4)
    for i, hyps in enumerate(nbest):
        assert len(hyps) == 4
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        for h in hyps:
            assert h.logprob == pytest.approx(_teacher_forced_logprob(model, src[i : i + 1], torch.tensor(h.tokens)),
                                              abs=1e-4)


@pytest.mark.parametrize("beam", [1, 4])
@pytest.mark.parametrize("max_len", [12, None])  # None: each sentence's own length + 50, not the batch's
def test_output_does_not_depend_on_the_rest_of_the_batch(beam, max_len):
    model = _favour_eos(_model(), bias=-1.0 if max_len is None else 2.0)  # None: long outputs, limits matter
    src = torch.randint(4, 64, (5, 7))
    src[1, 3:] = PAD
    src[3, 5:] = PAD
    together = model.generate(src, beam_size=beam, max_len=max_len)
    for i in range(5):
        alone = model.generate(src[i : i + 1, : int((src[i] != PAD).sum())], beam_size=beam, max_len=max_len)
        row = together[i, : alone.shape[1]]
        assert torch.equal(row, alone[0]), i
        assert (together[i, alone.shape[1] :] == PAD).all()


def test_filter_logits_top_k_and_top_p():
    from tformer.generation import filter_logits

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [[False, False, True, True]]
    # top-p 0.7: 0.5 alone is below 0.7, 0.5 + 0.3 reaches it -> keep two.
    assert torch.isinf(filter_logits(logits, top_p=0.7)).tolist() == [[False, False, True, True]]
    assert torch.isinf(filter_logits(logits, top_p=0.5)).tolist() == [[False, True, True, True]]
    assert not torch.isinf(filter_logits(logits)).any()


def test_sampling_is_seeded_and_follows_the_distribution():
    model = _model()
    src = torch.randint(4, 64, (1, 5)).repeat(400, 1)  # one sentence, 400 draws
    a = model.generate(src, do_sample=True, max_len=1, seed=7)
    b = model.generate(src, do_sample=True, max_len=1, seed=7)
    assert torch.equal(a, b)
    assert not torch.equal(a, model.generate(src, do_sample=True, max_len=1, seed=8))
    p = model(src[:1], torch.tensor([[model.cfg.bos_id]]))[0, -1].softmax(-1)
    freq = torch.bincount(a[:, 0], minlength=64).float() / 400
    top = p.argmax()
    assert abs(freq[top] - p[top]) < 4 * (p[top] * (1 - p[top]) / 400) ** 0.5 + 1e-3


def test_top_k_one_sampling_is_greedy():
    model = _model()
    src = torch.randint(4, 64, (3, 6))
    assert torch.equal(model.generate(src, do_sample=True, top_k=1, max_len=8, seed=0),
                       model.generate(src, beam_size=1, max_len=8))


def test_low_temperature_sampling_approaches_greedy():
    model = _model()
    src = torch.randint(4, 64, (3, 6))
    assert torch.equal(model.generate(src, do_sample=True, temperature=1e-4, max_len=8, seed=0),
                       model.generate(src, beam_size=1, max_len=8))
    # a temperature whose 1/t overflows (found by fuzzing tformer serve) is greedy too, not a crash on nan
    assert torch.equal(model.generate(src, do_sample=True, temperature=5e-324, top_p=5e-324, max_len=8, seed=0),
                       model.generate(src, beam_size=1, max_len=8))


def test_sampling_argument_errors():
    model = _model()
    src = torch.randint(4, 64, (1, 4))
    with pytest.raises(ValueError, match="beam_size=1"):
        model.generate(src, beam_size=2, do_sample=True)
    with pytest.raises(ValueError, match="temperature"):
        model.generate(src, do_sample=True, temperature=0)


@pytest.mark.parametrize("kw", [{"beam_size": 1}, {"beam_size": 3}, {"do_sample": True, "seed": 0}])
def test_pad_and_bos_are_never_generated(kw):
    m = _favour_eos(_model(), bias=0.0)
    with torch.no_grad():  # make pad and BOS by far the most likely tokens everywhere
        m.output_projection.bias[PAD] = 50.0
        m.output_projection.bias[1] = 50.0
    out = m.generate(torch.randint(4, 64, (3, 5)), max_len=6, **kw)
    for row in out.tolist():
        body = row[: row.index(EOS)] if EOS in row else row
        assert len(body) > 0 or row[0] == EOS
        assert PAD not in body and 1 not in body, row


def test_default_max_len_is_each_source_length_plus_50():
    model = _favour_eos(_model(), bias=-30.0)  # never EOS: outputs run to their limits
    src = torch.randint(4, 64, (2, 9))
    src[1, 4:] = PAD
    out = model.generate(src, beam_size=1)
    assert out.shape[1] == 59
    assert (out[0] != PAD).sum() == 59 and (out[1] != PAD).sum() == 54


# ---- no repeated n-grams -----------------------------------------------------------------------------------------
def _repeats(seq, n):
    """Whether seq holds some n-gram twice (the brute-force definition)."""
    grams = [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]
    return len(grams) != len(set(grams))


def test_forbid_repeats_bans_exactly_the_completing_tokens():
    from tformer.generation.beam import forbid_repeats

    seqs = torch.tensor([[5, 6, 5, 7, 5], [1, 2, 3, 4, 5]])  # row 0: 5 was followed by 6 and 7; row 1: no 5 before
    scores = torch.zeros(2, 9)
    forbid_repeats(scores, seqs, 2)
    assert torch.isinf(scores[0]).nonzero().flatten().tolist() == [6, 7] and not torch.isinf(scores[1]).any()
    scores = torch.zeros(2, 9)
    forbid_repeats(scores, seqs, 1)  # n = 1: every token already produced
    assert torch.isinf(scores).nonzero().tolist() == [[0, 5], [0, 6], [0, 7], [1, 1], [1, 2], [1, 3], [1, 4], [1, 5]]
    scores = torch.zeros(2, 9)
    forbid_repeats(scores, seqs, 3)  # (7, 5) never came before
    assert not torch.isinf(scores).any()
    forbid_repeats(scores, seqs[:, :2], 3)  # shorter than n: nothing
    assert not torch.isinf(scores).any()


@pytest.mark.parametrize("n, max_len", [(1, 3), (2, 4)])
def test_exhaustive_beam_without_repeats_finds_the_brute_force_best(n, max_len):
    vocab = 7
    model = _favour_eos(_model(vocab=vocab), bias=0.5)
    src = torch.randint(4, vocab, (1, 4))
    best, best_score = None, float("-inf")
    for length in range(1, max_len + 1):
        for seq in itertools.product(range(2, vocab), repeat=length):
            if EOS in seq[:-1] or (length < max_len and seq[-1] != EOS) or _repeats(seq, n):
                continue
            s = _teacher_forced_logprob(model, src, torch.tensor(seq)) / length_penalty(length, 0.6)
            if s > best_score:
                best, best_score = seq, s
    hyp = beam_search_nbest(model, src, beam_size=vocab**3, max_len=max_len, length_penalty_alpha=0.6,
                            no_repeat_ngram_size=n)[0][0]
    assert hyp.tokens == best and hyp.score == pytest.approx(best_score, abs=1e-4)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_greedy_and_beam_never_repeat_an_ngram_and_greedy_takes_the_best_allowed_token(n):
    model = _model(vocab=12)  # a small vocabulary: unconstrained outputs repeat
    src = torch.randint(4, 12, (4, 6))
    src[1, 4:] = PAD
    plain = model.generate(src, max_len=20)
    assert any(_repeats([t for t in row if t not in (PAD, EOS)], n) for row in plain.tolist())
    out = model.generate(src, max_len=20, no_repeat_ngram_size=n)
    for i, row in enumerate(out.tolist()):
        toks = [t for t in row if t != PAD]
        assert not _repeats(toks, n), toks
        for t in range(len(toks)):  # each token: the argmax among those that complete no earlier n-gram
            tgt_in = torch.tensor([[model.cfg.bos_id, *toks[:t]]])
            logits = model(src[i : i + 1], tgt_in)[0, -1]
            banned = {PAD, model.cfg.bos_id} | {g for g in range(12) if _repeats(toks[:t] + [g], n)}
            assert toks[t] == max((g for g in range(12) if g not in banned), key=lambda g: logits[g].item())
    beams = model.generate(src, beam_size=3, max_len=20, no_repeat_ngram_size=n)
    assert not any(_repeats([t for t in row if t != PAD], n) for row in beams.tolist())
    assert torch.equal(model.generate(src, max_len=20, no_repeat_ngram_size=0), plain)
