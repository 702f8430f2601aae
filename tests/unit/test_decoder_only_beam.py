"""Beam search for the decoder-only language model: the encoder-decoder's engine started from the prefilled prompts.

The oracle is enumeration: on a vocabulary of 7 (5 tokens a continuation may hold: not padding, not BOS) every
continuation of up to 3 tokens is scored by the full forward pass in float64 (no cache), and a beam wide enough
never to prune must return the same best hypothesis and the same n-best list, with and without the length penalty,
with a minimum length and under the n-gram ban. Also: beam 1 with alpha 0 is greedy search, a prompt's beam does
not depend on its batch (prompts of different lengths, padded on either side), the cache under beam reorders
equals recomputation, the positions and a vocabulary without padding are respected.
"""

import itertools

import pytest
import torch

from tformer.generation import beam_search, greedy_search, length_penalty
from tformer.models.gpt.model import DecoderOnly, DecoderOnlyConfig

PAD, BOS, EOS = 0, 1, 2


def _model(vocab=7, seed=0, eos_bias=0.0, **kw) -> DecoderOnly:
    """A seeded, untrained tiny model in float64 with spread-out predictions (few near-ties); ``eos_bias`` raises
    EOS's logit (through its embedding row's agreement with every hidden state: a bias on a tied output layer)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        cfg = DecoderOnlyConfig.tiny(vocab_size=vocab, dropout=0.0, attention_dropout=0.0, tie_output=False, **kw)
        m = DecoderOnly(cfg).double().eval()
        with torch.no_grad():
            for name, p in m.named_parameters():
                if "norm" not in name:
                    p.normal_(0.0, 0.05 if name.endswith("bias") else 0.4)
            m.tokens.weight.normal_(0.0, 0.5)
            m.positions.weight.normal_(0.0, 0.5)
            if eos_bias:  # the final LayerNorm's output has mean 0 and norm ~sqrt(D): add along its bias direction
                m.final_norm.bias.fill_(1.0)
                m.output_projection.weight[m.cfg.eos_id] += eos_bias / m.cfg.d_model
    return m


def _logprob(model, prompt, seq) -> float:
    """log P(seq | prompt) by one full forward pass over prompt + seq (float64, no cache)."""
    ids = torch.tensor([list(prompt) + list(seq)])
    with torch.no_grad():
        logp = model(ids)[0].log_softmax(-1)  # (T, V)
    p = len(prompt)
    return sum(float(logp[p - 1 + i, tok]) for i, tok in enumerate(seq))


def _repeats(seq, n):
    """Whether seq holds some n-gram twice (the brute-force definition of the ban)."""
    grams = [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]
    return n > 0 and len(grams) != len(set(grams))


def _brute_force(model, prompt, *, max_len, alpha, min_len=0, ngram=0):
    """Every continuation beam search may return, best first, as (score, tokens, logprob): it ends in EOS (not
    before ``min_len`` tokens), or is cut at ``max_len``; it holds no padding or BOS, and no repeated n-gram of its
    own tokens (the prompt's are not counted)."""
    vocab, out = model.cfg.vocab_size, []
    for n in range(1, max_len + 1):
        for seq in itertools.product([t for t in range(vocab) if t not in (PAD, BOS)], repeat=n):
            ends = [i for i, t in enumerate(seq) if t == EOS]
            if ends and (ends[0] != n - 1 or n - 1 < min_len) or (not ends and n < max_len) or _repeats(seq, ngram):
                continue
            lp = _logprob(model, prompt, seq)
            out.append((lp / length_penalty(n, alpha), seq, lp))
    return sorted(out, reverse=True)


def _padded(prompts, *, left_rows=(), width=None):
    """Prompts in one batch (B, P) with their attention mask, right-padded except the rows in ``left_rows``."""
    width = width or max(len(p) for p in prompts)
    ids, mask = torch.full((len(prompts), width), 5), torch.zeros(len(prompts), width, dtype=torch.long)
    for row, p in enumerate(prompts):
        at = width - len(p) if row in left_rows else 0
        ids[row, at : at + len(p)], mask[row, at : at + len(p)] = torch.tensor(p), 1
    return ids, mask


def _nbest(model, prompts, *, left_rows=(), **settings):
    ids, mask = _padded(prompts, left_rows=left_rows)
    return model.generate_nbest(ids, attention_mask=mask, **settings)


# ---- exhaustive beam = brute force ----------------------------------------------------------------
PROMPTS = [[BOS, 3, 4, 5, 6, 3], [BOS], [BOS, 6, 4]]  # of different lengths, in one batch


@pytest.mark.parametrize("alpha, min_len", [(0.0, 0), (0.6, 0), (1.0, 0), (0.6, 2)])
def test_an_exhaustive_beam_returns_the_brute_force_best_and_nbest(alpha, min_len):
    # At most 4 * 4 live prefixes x 5 tokens = 80 candidates a step: a beam of 7^3 never prunes, so its n-best
    # list must be the top of the enumeration of every allowed continuation, scored without any cache.
    model = _model(eos_bias=3.0)
    max_len, nbest = 3, 6
    got = _nbest(model, PROMPTS, left_rows=(2,), beam_size=7**3, nbest=nbest, max_new_tokens=max_len,
                 min_new_tokens=min_len, length_penalty=alpha)
    for prompt, hyps in zip(PROMPTS, got, strict=True):
        expected = _brute_force(model, prompt, max_len=max_len, alpha=alpha, min_len=min_len)[:nbest]
        assert [h.tokens for h in hyps] == [seq for _, seq, _ in expected], prompt
        for h, (score, _, lp) in zip(hyps, expected, strict=True):
            assert h.score == pytest.approx(score, abs=1e-5) and h.logprob == pytest.approx(lp, abs=1e-5)
        assert any(EOS in h.tokens for h in hyps) and any(EOS not in h.tokens for h in hyps)  # both kinds compared
    assert len({h[0].tokens for h in got}) > 1  # the prompts matter


@pytest.mark.parametrize("n", [1, 2])
def test_an_exhaustive_beam_under_the_ngram_ban_counts_the_continuation_only(n):
    # The ban is on repeats among the new tokens: a continuation may repeat the prompt's n-grams (as the greedy
    # search and sampling of this model). With n = 1 and a prompt holding every word, counting the prompt would
    # leave only EOS; the n-best list holds words.
    model = _model(seed=1, eos_bias=-2.0)
    prompt = [BOS, 3, 4, 5, 6, 3, 4]
    expected = _brute_force(model, prompt, max_len=4, alpha=0.6, ngram=n)[:3]
    (hyps,) = model.generate_nbest(torch.tensor([prompt]), beam_size=7**3, nbest=3, max_new_tokens=4,
                                   no_repeat_ngram_size=n)
    assert [h.tokens for h in hyps] == [seq for _, seq, _ in expected]
    assert hyps[0].score == pytest.approx(expected[0][0], abs=1e-5)
    assert len(hyps) == 3 and any(set(h.tokens) & set(prompt[1:]) for h in hyps)  # prompt words again
    plain = _brute_force(model, prompt, max_len=4, alpha=0.6)[0][1]
    assert _repeats(plain, n) or n == 2  # n = 1: the ban changed the answer (the test can fail)


def test_a_narrow_beams_nbest_is_sorted_and_scored_truly():
    model = _model(vocab=12, seed=2, eos_bias=1.0)
    prompts = [[BOS, 3, 9, 4, 7], [BOS, 8], [BOS, 5, 5, 10]]
    ids, mask = _padded(prompts, left_rows=(1,))
    hyps = model.generate_nbest(ids, attention_mask=mask, beam_size=4, nbest=4, max_new_tokens=8,
                                length_penalty=0.0)
    for prompt, row_hyps in zip(prompts, hyps, strict=True):
        assert len(row_hyps) == 4 and len({h.tokens for h in row_hyps}) == 4
        assert [h.score for h in row_hyps] == sorted((h.score for h in row_hyps), reverse=True)
        for h in row_hyps:
            assert h.logprob == pytest.approx(_logprob(model, prompt, h.tokens), abs=1e-5)


# ---- beam 1 = greedy, batch independence, cache ----------------------------------------------------
@pytest.mark.parametrize("settings", [{}, {"min_len": 3}, {"no_repeat_ngram_size": 2}])
def test_beam_one_without_length_penalty_is_greedy_search(settings):
    model = _model(vocab=16, seed=3, eos_bias=0.5)
    prompts = [[BOS, 4, 9, 12, 3], [BOS, 7], [BOS, 15, 15, 6, 6, 8, 10], [BOS, 5, 11]]
    ids, mask = _padded(prompts, left_rows=(0, 3))

    def start():
        return model.prefill(ids, mask)

    beam = beam_search(model, ids, beam_size=1, max_len=12, length_penalty_alpha=0.0, start=start, **settings)
    greedy = greedy_search(model, ids, max_len=12, start=start, **settings)
    assert torch.equal(beam, greedy)
    ends = {row.index(EOS) if EOS in row else len(row) for row in greedy.tolist()}
    assert len(ends) > 1  # rows leave the batch at different steps


@pytest.mark.parametrize("beam", [3, 5])
def test_a_prompts_beam_does_not_depend_on_its_batch(beam):
    model = _model(vocab=16, seed=4, eos_bias=1.5)
    prompts = [[BOS, 4, 9, 12, 3], [BOS, 7], [BOS, 15, 15, 6, 6, 8, 10], [BOS, 5, 11], [BOS, 13, 2, 6]]
    alone = [model.generate_nbest(torch.tensor([p]), beam_size=beam, max_new_tokens=10)[0] for p in prompts]
    for order, left in (([0, 1, 2, 3, 4], (1, 3)), ([4, 2, 0], (0,)), ([3, 1], ())):
        ids, mask = _padded([prompts[i] for i in order], left_rows=left, width=9)
        together = model.generate_nbest(ids, attention_mask=mask, beam_size=beam, max_new_tokens=10)
        best = model.generate(ids, attention_mask=mask, beam_size=beam, max_new_tokens=10)
        for row, i in enumerate(order):
            assert [h.tokens for h in together[row]] == [h.tokens for h in alone[i]], (order, row)
            assert [h.score for h in together[row]] == pytest.approx([h.score for h in alone[i]], abs=1e-6)
            toks = alone[i][0].tokens
            assert best[row, : len(toks)].tolist() == list(toks) and (best[row, len(toks) :] == PAD).all()
    assert len({a[0].tokens for a in alone}) > 1 and len({len(a[0].tokens) for a in alone}) > 1  # not vacuous


def test_the_cache_under_beam_reorders_equals_recomputation():
    # What beam search does to the cache: prefill padded prompts, widen to K rows each, and between steps keep
    # rows in any order (repeats too), then drop some (finished prompts leave): each row's logits must be those
    # of the full forward pass over its own prompt and tokens.
    model = _model(vocab=16, seed=5)
    prompts = [[BOS, 4, 9, 12, 3], [BOS, 7], [BOS, 15, 6, 8]]
    ids, mask = _padded(prompts, left_rows=(2,))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        cache, first = model.prefill(ids, mask)
        cache.repeat_interleave(2)
        seqs = [list(prompts[i]) for i in range(3) for _ in range(2)]  # (B*K) rows' sequences so far
        tokens = first.repeat_interleave(2, dim=0)
        for step in range(5):
            logits = model.decode_step(tokens, cache)[:, -1]  # (N, V)
            for row, seq in enumerate(seqs):
                torch.testing.assert_close(logits[row], model(torch.tensor([seq]))[0, -1], atol=1e-10, rtol=0)
            index = torch.randint(0, len(seqs), (len(seqs) if step != 2 else 3,), generator=g)
            (cache.reorder_targets if step != 2 else cache.select)(index)
            tokens = torch.randint(3, 16, (len(index), 1), generator=g)
            seqs = [seqs[int(i)] + [int(t)] for i, t in zip(index, tokens[:, 0], strict=True)]


# ---- limits and vocabularies ---------------------------------------------------------------------------
def test_the_beam_stops_where_the_positions_run_out_and_at_max_new_tokens():
    model = _model(vocab=16, seed=6)  # max_len 128
    long_prompt = torch.randint(3, 16, (1, 125))
    (hyps,) = model.generate_nbest(long_prompt, beam_size=3, max_new_tokens=10, min_new_tokens=10)
    assert all(len(h.tokens) == 4 for h in hyps)  # positions 125..127 fed back: 4 tokens, cut there
    out = model.generate(torch.tensor([[BOS, 3], [BOS, 4]]), beam_size=3, max_new_tokens=6, min_new_tokens=6)
    assert out.shape == (2, 6) and not (out[:, :6] == EOS).any()
    assert [len(h) for h in model.generate_nbest(torch.tensor([[BOS, 3]]), max_new_tokens=3)] == [4]  # beam 4


def test_without_a_padding_token_beams_fill_finished_rows_with_eos():
    model = _model(vocab=9, seed=7, eos_bias=2.0)
    gpt = DecoderOnly(model.cfg.replace(pad_id=None, bos_id=EOS, eos_id=EOS)).double().eval()  # GPT-2's ids
    gpt.load_state_dict(model.state_dict())
    prompts = torch.tensor([[EOS, 3, 4], [EOS, 7, 8], [EOS, 5, 6]])
    out = gpt.generate(prompts, beam_size=3, max_new_tokens=6)
    rows = out.tolist()
    assert any(EOS in r and r.index(EOS) < out.shape[1] - 1 for r in rows)  # an early end, filled after
    for row, hyps, p in zip(rows, gpt.generate_nbest(prompts, beam_size=3, max_new_tokens=6), prompts, strict=True):
        toks = list(hyps[0].tokens)
        assert row == toks + [EOS] * (len(row) - len(toks))
        assert hyps[0].logprob == pytest.approx(_logprob(gpt, p.tolist(), toks), abs=1e-5)
