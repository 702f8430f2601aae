"""Hard monotonic attention (Raffel et al., 2017): the expected alignment sums to at most 1 per step, equals a
brute-force sum over every hard monotonic path on tiny inputs, and its parallel form (Eq. 12-14) equals the
recurrence (Eq. 10-11); at inference the attended position never moves backwards, cached hard decoding equals a
full recomputation of the hard decisions, and padding never leaks; the energy noise only in training."""

import itertools

import pytest
import torch

from tformer import Transformer, TransformerConfig
from tformer.config import ConfigError
from tformer.models.cmlm.config import CMLMConfig
from tformer.nn.attention import AttentionProbe
from tformer.nn.masks import padding_mask
from tformer.nn.monotonic_attention import (
    MonotonicAttention,
    expected_alignment,
    expected_alignment_recurrent,
    expected_alignments,
    hard_alignments,
    safe_exclusive_cumprod,
)

MONOTONIC = {"kind": "monotonic", "monotonic_bias": 0.0, "monotonic_noise": 0.0}  # p near 1/2: both choices happen


def probabilities(seed, *shape, low=0.05, high=0.95):
    g = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(*shape, generator=g, dtype=torch.double)


def brute_force(p):
    """P(step i attends to j) (T, S) by walking every hard monotonic path: step i scans from where step i-1
    stopped and stops at j with probability Π_{t<=l<j} (1 - p_il) p_ij; a step that runs off ends the path."""
    n_out, n_in = p.shape
    out = torch.zeros_like(p)

    def walk(i, start, prob):
        if i == n_out:
            return
        go_on = 1.0
        for j in range(start, n_in):
            stop = prob * go_on * p[i, j]
            out[i, j] += stop
            walk(i + 1, j, stop)
            go_on = go_on * (1 - p[i, j])

    walk(0, 0, 1.0)
    return out


def test_the_exclusive_cumprod_is_the_product_before_each_position():
    x = probabilities(0, 3, 6, low=0.0, high=1.0)
    x[0, 2] = 0.0  # a zero factor: no nan, the products after it vanish (down to the clamp)
    want = torch.cat([torch.ones(3, 1, dtype=torch.double), x.cumprod(-1)[:, :-1]], -1)
    torch.testing.assert_close(safe_exclusive_cumprod(x), want, atol=1e-300, rtol=1e-12)


@pytest.mark.parametrize("n_out,n_in", list(itertools.product(range(1, 5), range(1, 5))))
def test_the_expected_alignment_equals_the_sum_over_every_path(n_out, n_in):
    p = probabilities(10 * n_out + n_in, n_out, n_in)
    alpha, last = expected_alignments(p)
    torch.testing.assert_close(alpha, brute_force(p), atol=1e-12, rtol=0)
    assert torch.equal(last, alpha[-1])


@pytest.mark.parametrize("seed", range(3))
def test_the_parallel_form_equals_the_recurrence_and_rows_sum_to_at_most_one(seed):
    p = probabilities(seed, 2, 3, 8, 11, low=0.0, high=1.0)  # (B, H, T, S)
    p[..., 7:] = 0.0  # source padding: p = 0 there
    previous = torch.zeros(2, 3, 11, dtype=torch.double)
    previous[..., 0] = 1.0
    for i in range(p.shape[2]):
        parallel = expected_alignment(p[:, :, i], previous)
        torch.testing.assert_close(parallel, expected_alignment_recurrent(p[:, :, i], previous), atol=1e-10, rtol=0)
        assert (parallel.sum(-1) <= 1 + 1e-12).all() and (parallel >= 0).all()
        assert (parallel[..., 7:] == 0).all()
        previous = parallel


def test_hard_alignments_stop_at_the_first_likely_position_and_never_move_back():
    p = torch.tensor([[0.1, 0.6, 0.9, 0.2],  # from 0: stops at 1
                      [0.7, 0.2, 0.4, 0.8],  # from 1: 0 lies behind, stops at 3
                      [0.9, 0.9, 0.9, 0.1],  # from 3: nothing -> a zero context, off the end
                      [0.9, 0.9, 0.9, 0.9]])  # off the end: nothing ever again
    weights, position = hard_alignments(p)
    assert weights.argmax(-1)[:2].tolist() == [1, 3] and weights.sum(-1).tolist() == [1, 1, 0, 0]
    assert int(position) == 4
    p = probabilities(3, 5, 4, 20, 9, low=0.0, high=1.0)
    weights, _ = hard_alignments(p)
    attended = torch.where(weights.sum(-1) > 0, weights.argmax(-1), 9)  # 9 = none (ran off)
    assert (attended[..., 1:] >= attended[..., :-1]).all()


def model_of(seed, cross=MONOTONIC, **kw):
    torch.manual_seed(seed)
    cfg = TransformerConfig.tiny(vocab_size=24, dropout=0.0, max_len=40, cross_attention=cross, **kw)
    return Transformer(cfg).double().eval()


def batch(seed, b=3, s=9, t=7):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 24, (b, s), generator=g)
    for row in range(1, b):  # rows of other lengths, right-padded
        src[row, s - 2 * row :] = 0
    tgt_in = torch.cat([torch.ones(b, 1, dtype=torch.long), torch.randint(4, 24, (b, t - 1), generator=g)], 1)
    return src, tgt_in


def cached(model, src, tgt_in):
    """Feed tgt_in one position at a time through the cache: logits (B, T, V) and each layer's weights."""
    cache = model.start_decoding(model.encode(src), src)
    logits, weights = [], []
    for t in range(tgt_in.shape[1]):
        out, w = model.decode_step(tgt_in[:, t : t + 1], cache, cross_attention=AttentionProbe())
        logits.append(out)
        weights.append(w)
    return torch.cat(logits, 1), [torch.cat(ws, 2) for ws in zip(*weights, strict=True)]


@pytest.mark.parametrize("seed", range(3))
def test_cached_hard_decoding_equals_full_recomputation_of_the_hard_decisions(seed):
    model = model_of(seed)
    src, tgt_in = batch(seed)
    logits, maps = model(src, tgt_in, need_weights=True)
    step_logits, step_weights = cached(model, src, tgt_in)
    torch.testing.assert_close(step_logits, logits, atol=1e-10, rtol=0)
    for full, step in zip(maps.decoder_cross, step_weights, strict=True):
        assert torch.equal(full, step)
        assert ((full == 0) | (full == 1)).all() and (full.sum(-1) <= 1).all()  # hard: one position or none
    stops = torch.cat([m.flatten() for m in maps.decoder_cross])
    assert 0 < stops.sum() < stops.numel()  # the test sees both stops and zero contexts


def test_cached_expected_alignment_equals_full_recomputation_in_training():
    model = model_of(4).train()  # noise 0: deterministic
    src, tgt_in = batch(4)
    logits, maps = model(src, tgt_in, need_weights=True)
    step_logits, step_weights = cached(model, src, tgt_in)
    torch.testing.assert_close(step_logits, logits, atol=1e-10, rtol=0)
    for full, step in zip(maps.decoder_cross, step_weights, strict=True):
        torch.testing.assert_close(step, full, atol=1e-12, rtol=0)
        assert (full.sum(-1) <= 1 + 1e-12).all()
        assert not ((full == 0) | (full == 1)).all()  # soft


@pytest.mark.parametrize("seed", range(3))
def test_the_attended_position_never_moves_backwards_at_inference(seed):
    model = model_of(seed)
    src, _ = batch(seed)
    out = model.generate(src, max_len=12)
    tgt_in = torch.cat([torch.ones_like(out[:, :1]), out[:, :-1]], 1)
    _, maps = model(src, tgt_in, need_weights=True)  # = the cached decisions (test above)
    s = src.shape[1]
    for w in maps.decoder_cross:  # (B, H, T, S)
        attended = torch.where(w.sum(-1) > 0, w.argmax(-1), s)  # s: none (ran off the source)
        assert (attended[..., 1:] >= attended[..., :-1]).all()
    assert torch.equal(model.generate(src, beam_size=1, max_len=12), out)
    assert model.generate(src, beam_size=3, max_len=12).shape[0] == src.shape[0]


@pytest.mark.parametrize("train", [False, True])
def test_padding_never_leaks(train):
    model = model_of(6).train(train)
    src, tgt_in = batch(6)
    logits, maps = model(src, tgt_in, need_weights=True)
    pads = ~padding_mask(src, 0)[:, :, 0]  # (B, 1, S)
    for w in maps.decoder_cross:
        assert (w.masked_select(pads[:, :, None].expand_as(w)) == 0).all()
    for b in range(src.shape[0]):
        n = int((src[b] != 0).sum())
        alone = model(src[b : b + 1, :n], tgt_in[b : b + 1])
        torch.testing.assert_close(logits[b : b + 1], alone, atol=1e-10, rtol=0)


def test_noise_only_in_training_and_gradients_reach_the_energy():
    model = model_of(7, cross={"kind": "monotonic"})  # the paper's r = -4 and noise 1
    attn = model.decoder.layers[0].cross_attn
    assert isinstance(attn, MonotonicAttention) and attn.noise == 1.0
    assert torch.equal(attn.energy_bias.detach(), torch.full((4,), -4.0, dtype=torch.double))
    src, tgt_in = batch(7)
    assert torch.equal(model(src, tgt_in), model(src, tgt_in))  # eval: no noise
    model.train()
    assert not torch.equal(model(src, tgt_in), model(src, tgt_in))
    model(src, tgt_in).logsumexp(-1).mean().backward()
    for layer in model.decoder.layers:
        assert layer.cross_attn.energy_gain.grad.abs().sum() > 0
        assert layer.cross_attn.energy_bias.grad.abs().sum() > 0
        assert layer.cross_attn.q_proj.weight.grad.abs().sum() > 0
    quiet = model_of(7).train()
    assert torch.equal(quiet(src, tgt_in), quiet(src, tgt_in))  # noise 0: deterministic


def test_config_errors_are_one_line():
    for make, words in [(lambda: TransformerConfig.tiny(cross_attention={"kind": "monotonic", "monotonic_noise": -1}),
                         "monotonic_noise"),
                        (lambda: TransformerConfig.tiny(pointer_generator=True, cross_attention={"kind": "monotonic"}),
                         "pointer_generator"),
                        (lambda: CMLMConfig(vocab_size=32, cross_attention={"kind": "location"}), "CMLM")]:
        with pytest.raises(ConfigError, match=words) as e:
            make()
        assert "\n" not in str(e.value)


def test_beam_search_scores_equal_full_recomputation_of_the_hard_decisions():
    model = model_of(8)
    src, _ = batch(8)
    for b, hyps in enumerate(model.generate_nbest(src, beam_size=3, nbest=3, max_len=7)):
        n = int((src[b] != 0).sum())
        for hyp in hyps:
            tokens = torch.tensor([list(hyp.tokens)])
            tgt_in = torch.cat([torch.ones_like(tokens[:, :1]), tokens[:, :-1]], 1)
            with torch.no_grad():
                logp = model(src[b : b + 1, :n], tgt_in).log_softmax(-1).gather(-1, tokens[..., None]).sum()
            assert abs(hyp.logprob - float(logp)) < 1e-5  # beam search scores in float32
