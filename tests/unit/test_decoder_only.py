"""The GPT-style decoder-only model: the future never leaks, padding (either side) never leaks, cached decoding
equals full recomputation, greedy = argmax, a prompt's continuation does not depend on its batch, sampling is
seeded and stays inside top-k / top-p, EOS and max_len stop, perplexity = exp(mean NLL), configs fail in one line.

The outside oracle (Hugging Face's GPT-2 with the same weights) is in test_interop_gpt2.py.
"""

import math

import pytest
import torch

from tformer.config import ConfigError
from tformer.errors import TformerError
from tformer.generation import filter_logits
from tformer.models.gpt.model import DecoderOnly, DecoderOnlyConfig, perplexity
from tformer.training.label_smoothing import linear_label_smoothed_loss

V, PAD, BOS, EOS = 64, 0, 1, 2
FIRST_WORD = 3


def _model(seed=0, **kw) -> DecoderOnly:
    """A seeded, untrained tiny model with spread-out, varied predictions (random, but not stuck repeating
    one token as the default initialisation is: few near-ties for argmax, distinct prompts go different ways)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        m = DecoderOnly(DecoderOnlyConfig.tiny(vocab_size=V, dropout=0.0, attention_dropout=0.0, **kw)).eval()
        with torch.no_grad():
            for name, p in m.named_parameters():
                if "norm" not in name:
                    p.normal_(0.0, 0.05 if name.endswith("bias") else 0.4)
            m.tokens.weight.normal_(0.0, 0.5)
            m.positions.weight.normal_(0.0, 0.5)
    return m


def _words(*shape, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(FIRST_WORD, V, shape, generator=g)


def _greedy_by_recomputation(model, prompt, n):
    """Up to n argmax steps, each recomputing ``forward`` on the whole growing sequence (no cache); stops at EOS."""
    seq = prompt[None, :]
    with torch.no_grad():
        for _ in range(n):
            nxt = model(seq)[0, -1]
            nxt[PAD] = float("-inf")  # generation never emits padding (nor BOS, a distinct id here)
            nxt[BOS] = float("-inf")
            seq = torch.cat([seq, nxt.argmax().view(1, 1)], dim=1)
            if seq[0, -1] == EOS:
                break
    return seq[0, len(prompt):].tolist()


# ---- configuration ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw, words",
    [
        ({"d_model": 30, "num_heads": 4}, "divisible"),
        ({"activation": "tanh"}, "activation"),
        ({"norm": "sandwich"}, "norm"),
        ({"dropout": 1.0}, "dropout"),
        ({"num_layers": 0}, "num_layers"),
        ({"eos_id": 64}, "eos_id=64"),
        ({"pad_id": 2}, "pad_id"),
        ({"init_std": 0.0}, "init_std"),
    ],
)
def test_bad_configs_fail_in_one_line(kw, words):
    with pytest.raises(ConfigError, match=words) as e:
        DecoderOnlyConfig.tiny(vocab_size=V, **kw)
    assert "\n" not in str(e.value)


def test_config_round_trips_and_rejects_unknown_keys_in_one_line():
    cfg = DecoderOnlyConfig.tiny(vocab_size=V, pad_id=None)
    assert DecoderOnlyConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.replace(num_layers=3).num_layers == 3
    with pytest.raises(ConfigError, match="unknown key.*num_decoder_layers") as e:
        DecoderOnlyConfig.from_dict({**cfg.to_dict(), "num_decoder_layers": 2})
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="d_model must be an integer"):
        DecoderOnlyConfig.from_dict({**cfg.to_dict(), "d_model": "32"})
    assert DecoderOnlyConfig.gpt2().vocab_size == 50257


def test_output_layer_is_the_embedding_matrix_and_trains():
    model = _model()
    assert model.output_projection.weight is model.tokens.weight
    untied = _model(tie_output=False)
    assert untied.output_projection.weight is not untied.tokens.weight
    model.train()
    ids = _words(2, 9)
    logits = model(ids)
    assert logits.shape == (2, 9, V)
    logits.log_softmax(-1)[:, :-1].gather(2, ids[:, 1:, None]).mean().backward()
    assert model.tokens.weight.grad is not None and model.layers[0].self_attn.q_proj.weight.grad is not None


# ---- the mask convention ------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["pre", "post"])
def test_the_future_never_leaks(norm):
    model = _model(norm=norm)
    ids = _words(2, 10)
    changed = ids.clone()
    changed[:, 6:] = _words(2, 4, seed=7)
    with torch.no_grad():
        a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :6], b[:, :6], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_padding_on_either_side_leaves_the_real_logits_unchanged():
    model = _model()
    seq = _words(1, 6)
    with torch.no_grad():
        alone = model(seq)[0]  # (6, V)
        right = torch.cat([seq, torch.full((1, 3), PAD)], dim=1)
        left = torch.cat([torch.full((1, 3), 17), seq], dim=1)  # left "padding" with a real word id, masked out
        left_mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1, 1]])
        torch.testing.assert_close(model(right)[0, :6], alone, atol=1e-5, rtol=0)  # mask from pad_id
        torch.testing.assert_close(model(left, attention_mask=left_mask)[0, 3:], alone, atol=1e-5, rtol=0)
        logits, weights = model(left, attention_mask=left_mask, need_weights=True)
    torch.testing.assert_close(logits[0, 3:], alone, atol=1e-5, rtol=0)
    assert len(weights) == 2 and weights[0].shape == (1, 4, 9, 9)
    for w in weights:
        assert torch.all(w[0, :, 3:, :3] == 0)  # real queries give the padding exactly zero weight
        assert torch.all(w[0].triu(diagonal=1) == 0)  # nor the future
        torch.testing.assert_close(w.sum(-1), torch.ones(1, 4, 9))


# ---- incremental decoding ------------------------------------------------------------------------
def test_cached_decoding_equals_full_recomputation():
    model = _model()
    ids = _words(3, 12)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # a left-padded prompt: prefill left-aligns it
    mask[2, 7:] = 0  # a right-padded one: prefill moves its padding in front
    with torch.no_grad():
        cache, last = model.prefill(ids[:, :8], mask[:, :8])
        stepped = [model.decode_step(last, cache)[:, -1]]
        for t in range(8, 12):
            stepped.append(model.decode_step(ids[:, t : t + 1], cache)[:, -1])
        for row, real in enumerate(mask[:, :8].bool()):  # each row alone, unpadded, without a cache
            prompt = ids[row, :8][real]
            full = model(torch.cat([prompt, ids[row, 8:]])[None])[0]  # (T, V)
            got = torch.stack([s[row] for s in stepped])  # (5, V): after the prompt, then after each fed token
            torch.testing.assert_close(got, full[len(prompt) - 1 :], atol=1e-5, rtol=0)
    assert cache.key_mask.shape == (3, 12) and cache.next_position.tolist() == [12, 8, 11]


def test_greedy_is_the_argmax_of_forward_on_the_growing_sequence():
    model = _model()
    prompts = [_words(5, seed=2), _words(2, seed=3), _words(9, seed=4)]
    batch = torch.full((3, 9), PAD)
    for i, p in enumerate(prompts):
        batch[i, : len(p)] = p
    out = model.generate(batch, max_new_tokens=8)
    for i, p in enumerate(prompts):
        expected = _greedy_by_recomputation(model, p, 8)
        assert out[i].tolist() == expected + [PAD] * (out.shape[1] - len(expected))


def test_a_prompts_continuation_does_not_depend_on_its_batch():
    model = _model(seed=3)
    prompts = [_words(n, seed=10 + n) for n in (1, 4, 7, 4, 2)]
    alone = [model.generate(p[None], max_new_tokens=10)[0] for p in prompts]
    for order in ([0, 1, 2, 3, 4], [4, 2, 0, 3, 1], [2, 1]):
        width = max(len(prompts[i]) for i in order) + 2  # extra padding columns too
        batch = torch.full((len(order), width), 33)
        mask = torch.zeros_like(batch)
        for row, i in enumerate(order):
            n = len(prompts[i])
            at = 0 if row % 2 else width - n  # right- and left-padded rows mixed
            batch[row, at : at + n], mask[row, at : at + n] = prompts[i], 1
        out = model.generate(batch, max_new_tokens=10, attention_mask=mask)
        for row, i in enumerate(order):
            assert torch.equal(out[row], alone[i]), (order, row)
    assert len({tuple(a.tolist()) for a in alone}) > 1  # not vacuous: different prompts, different outputs


def test_eos_stops_a_row_and_padding_fills_it():
    model = _model()
    prompts = _words(3, 4)
    out = model.generate(prompts, max_new_tokens=8)
    rows = out.tolist()
    assert any(EOS in r for r in rows) and any(EOS not in r for r in rows)  # (this seed) both kinds of row
    for row, p in zip(rows, prompts, strict=True):
        expected = _greedy_by_recomputation(model, p, 8)
        assert row == expected + [PAD] * (8 - len(expected))
    stopping = [i for i, r in enumerate(rows) if EOS in r]
    alone = model.generate(prompts[stopping[:1]], max_new_tokens=8)  # a batch whose rows all stop early is short
    assert alone.shape[1] == rows[stopping[0]].index(EOS) + 1
    late = model.generate(prompts, max_new_tokens=8, min_new_tokens=7)
    assert EOS not in late[:, :7]


def test_without_a_padding_token_finished_rows_fill_with_eos():
    model = _model()
    prompts = _words(4, 3)
    eos = int(model.generate(prompts[:1], max_new_tokens=2)[0, 1])
    gpt = DecoderOnly(model.cfg.replace(pad_id=None, bos_id=eos, eos_id=eos)).eval()  # one id for both, as GPT-2
    gpt.load_state_dict(model.state_dict())
    out = gpt.generate(prompts, max_new_tokens=6)
    assert out.shape == (4, 6) and out[0, 1] == eos  # row 0 stopped at its second token, another row went on
    for row in out.tolist():
        if eos in row:
            assert all(t == eos for t in row[row.index(eos) :])


def test_generation_stops_where_the_positions_run_out():
    model = _model()  # max_len 128
    long_prompt = _words(1, 125)
    assert model.generate(long_prompt, max_new_tokens=10).shape == (1, 4)  # positions 125..127 fed back: 4 tokens
    with pytest.raises(TformerError, match="exceeds the model's max_len"):
        model.generate(_words(1, 129), max_new_tokens=1)
    with pytest.raises(TformerError, match="sequence of 129 positions exceeds the model's max_len 128"):
        model(_words(1, 129))
    assert model(_words(1, 131), attention_mask=torch.tensor([[0, 0, 0] + [1] * 128])).shape == (1, 131, V)
    with pytest.raises(TformerError, match="max_new_tokens"):
        model.generate(long_prompt, max_new_tokens=0)
    with pytest.raises(TformerError, match="prompt 1 has no tokens"):
        model.generate(torch.tensor([[5, 6], [PAD, PAD]]), max_new_tokens=2)


# ---- sampling -------------------------------------------------------------------------------------
def test_sampling_is_seeded_and_top_k_1_is_greedy():
    model = _model()
    prompts = _words(4, 5)
    a = model.generate(prompts, max_new_tokens=12, do_sample=True, seed=5)
    b = model.generate(prompts, max_new_tokens=12, do_sample=True, seed=5)
    c = model.generate(prompts, max_new_tokens=12, do_sample=True, seed=6)
    assert torch.equal(a, b) and not torch.equal(a, c)
    greedy = model.generate(prompts, max_new_tokens=12)
    assert torch.equal(model.generate(prompts, max_new_tokens=12, do_sample=True, top_k=1, seed=1), greedy)
    assert torch.equal(model.generate(prompts, max_new_tokens=12, do_sample=True, top_p=1e-6, seed=1), greedy)


@pytest.mark.parametrize("top_k, top_p", [(3, 1.0), (0, 0.5)])
def test_every_sampled_token_is_inside_the_top_k_top_p_set(top_k, top_p):
    model = _model()
    prompts = _words(6, 3)
    out = model.generate(prompts, max_new_tokens=10, do_sample=True, top_k=top_k, top_p=top_p, temperature=1.5,
                         seed=0)
    assert out.shape == (6, 10)
    with torch.no_grad():
        logits = model(torch.cat([prompts, out[:, :-1]], dim=1))[:, 2:]  # (6, 10, V) the steps' logits
    logits[..., PAD] = logits[..., BOS] = float("-inf")
    allowed = filter_logits(logits.reshape(-1, V) / 1.5, top_k, top_p).isfinite()  # (60, V)
    drawn = (out == EOS).long().cumsum(1) - (out == EOS).long() == 0  # (6, 10) up to each row's EOS
    assert allowed.gather(1, out.reshape(-1, 1))[drawn.reshape(-1)].all()
    assert allowed.sum(1).min() >= 1 and (top_p == 1.0 or allowed.sum(1).float().mean() < V - 2)


# ---- perplexity -----------------------------------------------------------------------------------
def test_perplexity_is_exp_of_the_mean_next_token_nll_over_real_tokens():
    model = _model()
    ids = _words(3, 10)
    ids[1, 6:] = PAD
    with torch.no_grad():
        nlls = []
        for row in ids:
            seq = row[row != PAD]
            logp = model(seq[None])[0, :-1].log_softmax(-1)
            nlls.append(-logp.gather(1, seq[1:, None]).squeeze(1))
        expected = math.exp(torch.cat(nlls).mean().item())
        assert perplexity(model, ids) == pytest.approx(expected, rel=1e-5)
        # The fused loss a trainer uses (hidden states x the tied output matrix, logits never stored) agrees.
        hidden = model.hidden_states(ids)
        out = linear_label_smoothed_loss(hidden[:, :-1], model.output_projection.weight, model.output_projection.bias,
                                         ids[:, 1:], 0.0, PAD)
    assert out.num_tokens == 9 + 5 + 9
    assert math.exp(out.nll.item() / out.num_tokens) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(TformerError, match="two or more real tokens"):
        perplexity(model, torch.tensor([[5, PAD, PAD]]))


@pytest.mark.parametrize("sampled", [False, True])
def test_no_repeated_ngrams_among_the_generated_tokens(sampled):
    model = _model()
    prompts = _words(4, 5)
    plain = model.generate(prompts, max_new_tokens=30, do_sample=sampled, **({"seed": 3} if sampled else {}))
    out = model.generate(prompts, max_new_tokens=30, no_repeat_ngram_size=2, do_sample=sampled,
                         **({"seed": 3} if sampled else {}))
    assert out.shape[1] <= 30

    def bigrams(row):
        return [tuple(row[i : i + 2]) for i in range(len(row) - 1)]

    assert any(len(set(bigrams(r))) < len(bigrams(r)) for r in plain.tolist())  # the test can fail
    fill = {model.cfg.eos_id, model.cfg.pad_id}  # what follows a row's end
    for row in out.tolist():
        end = next((i for i, t in enumerate(row) if t == model.cfg.eos_id), len(row))
        assert all(t in fill for t in row[end:])
        grams = bigrams(row[: end + 1])
        assert len(set(grams)) == len(grams), row
