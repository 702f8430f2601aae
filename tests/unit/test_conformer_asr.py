"""Speech recognition on the Conformer: the CTC model and the encoder-decoder (Transformer decoder, joint CTC).

Properties, in float64 where they are exact: padding never leaks, the future never leaks, cached decoding equals
teacher forcing, beam 1 equals greedy, an unpruned beam finds the brute-force best transcript, save/load
round-trips; and the CTC loss falls on a tiny overfit. The guided attention side path equals the reference weights
and trains only the probed heads; the monotonic window: one over every frame changes nothing, the focus never moves
back, and beam scores under a window replay exactly."""

import itertools
import json

import pytest
import torch
import torch.nn.functional as F

from tformer.config import ConfigError, CrossAttentionConfig
from tformer.data.audio import frame_mask
from tformer.errors import TformerError
from tformer.generation import Feature, beam_search, beam_search_nbest, greedy_search
from tformer.models.conformer import (
    ConformerConfig,
    ConformerCTC,
    ConformerSeq2Seq,
    ctc_loss,
)
from tformer.nn.attention import AttentionProbe
from tformer.nn.cache import MonotonicWindow
from tformer.training.guided_attention import guided_attention_loss

PAD, BOS, EOS, BLANK = 0, 1, 2, 3
V = 9  # pad, bos, eos, blank and 5 labels


def _cfg(**kw) -> ConformerConfig:
    base = dict(n_mels=16, d_model=16, num_heads=2, d_ff=32, conv_kernel_size=5, dropout=0.0, attention_dropout=0.0)
    return ConformerConfig.tiny(**{**base, **kw})


def _ctc(**kw) -> ConformerCTC:
    torch.manual_seed(0)
    return ConformerCTC(_cfg(**kw), V, blank_id=BLANK).double().eval()


def _seq2seq(ctc_weight: float = 0.3, cross: str = "dot", **kw) -> ConformerSeq2Seq:
    torch.manual_seed(0)
    model = ConformerSeq2Seq(_cfg(**kw), V, decoder_layers=2, pad_id=PAD, bos_id=BOS, eos_id=EOS,
                             ctc_weight=ctc_weight, blank_id=BLANK, cross_attention=CrossAttentionConfig(cross))
    return model.double().eval()


CROSS_KINDS = ("dot", "location", "monotonic")  # the encoder-decoder attentions of tformer.nn.cross_attention


def _features(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A padded batch with garbage (not zeros) in its padding, so that a leak would show."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), max(lengths), 16, generator=g, dtype=torch.float64)  # (B, T, M)
    return x, torch.tensor(lengths)


def _targets() -> tuple[torch.Tensor, torch.Tensor]:
    """tgt_in = BOS + y and tgt_out = y + EOS of two transcripts of 3 and 1 labels, padded."""
    tgt_in = torch.tensor([[BOS, 4, 5, 6], [BOS, 7, PAD, PAD]])
    tgt_out = torch.tensor([[4, 5, 6, EOS], [7, EOS, PAD, PAD]])
    return tgt_in, tgt_out


# ---- configuration and shapes ---------------------------------------------------------------------
def test_shapes_and_lengths():
    x, lengths = _features([40, 29])
    log_probs, frame_lengths = _ctc()(x, lengths)
    assert log_probs.shape == (2, 9, V) and frame_lengths.tolist() == [9, 6]  # ((T - 1) // 2 - 1) // 2
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2, 9, dtype=torch.float64))
    tgt_in, _ = _targets()
    model = _seq2seq()
    assert model(x, lengths, tgt_in).shape == (2, 4, V)
    weights = model.cross_attention(x, lengths, tgt_in)
    assert len(weights) == 2 and weights[0].shape == (2, 2, 4, 9)
    assert torch.allclose(weights[1].sum(-1), torch.ones(2, 2, 4, dtype=torch.float64))
    assert weights[0][1, :, :, 6:].abs().max() == 0  # no weight on the second utterance's padded frames


def test_float32_model_gives_float32_log_probs():
    torch.manual_seed(0)
    model = ConformerCTC(_cfg(), V).eval()
    x, lengths = _features([20])
    assert model(x.float(), lengths)[0].dtype == torch.float32


@pytest.mark.parametrize("make, needle", [
    (lambda: ConformerCTC(_cfg(num_classes=3), V), "num_classes 0"),
    (lambda: ConformerCTC(_cfg(), V, blank_id=V), "blank_id must be in"),
    (lambda: ConformerSeq2Seq(_cfg(), V, ctc_weight=1.0), r"ctc_weight must be in \[0, 1\)"),
    (lambda: ConformerSeq2Seq(_cfg(), V, pad_id=2, eos_id=2), "eos_id must differ from pad_id"),
    (lambda: ConformerSeq2Seq(_cfg(), V, bos_id=V), "bos_id must be in"),
    (lambda: ConformerSeq2Seq(_cfg(), V, decoder_norm="middle"), "decoder_norm must be one of"),
])
def test_bad_settings_are_one_line_config_errors(make, needle):
    with pytest.raises(ConfigError, match=needle):
        make()


def test_asr_small_preset():
    cfg = ConformerConfig.asr_small()
    assert (cfg.n_mels, cfg.d_model, cfg.num_heads, cfg.num_layers, cfg.subsampling) == (80, 144, 4, 4, 4)


# ---- padding never leaks -----------------------------------------------------------------------------
def test_ctc_padding_invariance():
    """An utterance's log-probabilities are the same alone and in a batch padded with other frames."""
    model = _ctc()
    x, lengths = _features([41, 23, 30], seed=1)
    batched, frame_lengths = model(x, lengths)
    for i, n in enumerate(lengths.tolist()):
        alone, alone_lengths = model(x[i : i + 1, :n], lengths[i : i + 1])
        m = int(alone_lengths)
        assert m == int(frame_lengths[i])
        torch.testing.assert_close(batched[i, :m], alone[0], rtol=0, atol=1e-10)


@pytest.mark.parametrize("cross", CROSS_KINDS)
def test_seq2seq_padding_invariance(cross):
    model = _seq2seq(cross=cross)
    x, lengths = _features([41, 23], seed=2)
    tgt_in, _ = _targets()
    batched = model(x, lengths, tgt_in)
    for i, n in enumerate(lengths.tolist()):
        real = int((tgt_in[i] != PAD).sum())
        alone = model(x[i : i + 1, :n], lengths[i : i + 1], tgt_in[i : i + 1, :real])
        torch.testing.assert_close(batched[i, :real], alone[0], rtol=0, atol=1e-10)


@pytest.mark.parametrize("cross", CROSS_KINDS)
def test_transcripts_do_not_depend_on_the_batch(cross):
    model = _seq2seq(cross=cross)
    x, lengths = _features([41, 23, 33], seed=3)
    for beam in (1, 3):
        batched = model.transcribe(x, lengths, beam_size=beam, max_len=6)
        alone = [model.transcribe(x[i : i + 1, :n], lengths[i : i + 1], beam_size=beam, max_len=6)[0]
                 for i, n in enumerate(lengths.tolist())]
        assert batched == alone


# ---- the decoder: causal, cached ---------------------------------------------------------------------
def test_the_future_never_leaks():
    """Logits at position t do not change when the decoder inputs after t do."""
    model = _seq2seq()
    x, lengths = _features([30], seed=4)
    tgt_in = torch.tensor([[BOS, 4, 5, 6, 7]])
    changed = tgt_in.clone()
    changed[0, 3:] = torch.tensor([8, 8])
    a, b = model(x, lengths, tgt_in), model(x, lengths, changed)
    torch.testing.assert_close(a[:, :3], b[:, :3], rtol=0, atol=1e-12)
    assert (a[:, 3:] - b[:, 3:]).abs().max() > 1e-6


@pytest.mark.parametrize("cross", CROSS_KINDS)
def test_cached_decoding_equals_teacher_forcing(cross):
    """(Monotonic attention decodes hard in eval mode, in both passes: the same hard decisions.)"""
    model = _seq2seq(cross=cross)
    x, lengths = _features([41, 23], seed=5)
    tgt_in = torch.tensor([[BOS, 4, 5, 6, 7, 8], [BOS, 8, 7, 6, 5, 4]])
    full = model(x, lengths, tgt_in)  # (B, L, V)
    memory, frame_lengths = model.encode_audio(x, lengths)
    cache = model.start_decoding(memory, frame_lengths)
    steps = [model.decode_step(tgt_in[:, :2], cache)]  # two positions at once, then one at a time
    steps += [model.decode_step(tgt_in[:, t : t + 1], cache) for t in range(2, tgt_in.shape[1])]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=0, atol=1e-10)


# ---- search ------------------------------------------------------------------------------------------
def _sequence_logprob(model: ConformerSeq2Seq, x, lengths, tokens: list[int]) -> float:
    """log P(tokens | x) by teacher forcing, log-softmax over all V (as the engines score)."""
    tgt_in = torch.tensor([[BOS, *tokens[:-1]]])
    with torch.no_grad():
        logp = model(x, lengths, tgt_in).log_softmax(-1)[0]  # (L, V)
    return float(logp.gather(1, torch.tensor(tokens)[:, None]).sum())


def test_beam_one_equals_greedy():
    model = _seq2seq()
    x, lengths = _features([41, 23, 33], seed=6)
    batch = model.batch(x, lengths)
    greedy = greedy_search(batch, batch.src, max_len=7)
    beam = beam_search(batch, batch.src, beam_size=1, max_len=7, length_penalty_alpha=0.0)
    assert [r[r != PAD].tolist() for r in greedy] == [r[r != PAD].tolist() for r in beam]
    assert model.transcribe(x, lengths, beam_size=1, max_len=7) == [
        [t for t in r.tolist() if t not in (PAD, EOS)] for r in greedy]


def test_an_unpruned_beam_finds_the_best_transcript():
    """A vocabulary of pad, BOS, EOS and two labels, at most 3 tokens: 15 transcripts in all (pad and BOS are never
    emitted). A beam of 16 keeps every candidate, so it scores all 15 exactly and its best is the brute-force best,
    hence at least greedy's. (The engines score in float32: 1e-5.)"""
    torch.manual_seed(1)
    model = ConformerSeq2Seq(_cfg(), 5, decoder_layers=2, pad_id=PAD, bos_id=BOS, eos_id=EOS).double().eval()
    x, lengths = _features([30], seed=7)
    labels = [3, 4]
    candidates = [(EOS,)] + [(a, EOS) for a in labels] + [
        (a, b, c) for a, b in itertools.product(labels, repeat=2) for c in [EOS, *labels]]
    exact = {c: _sequence_logprob(model, x, lengths, list(c)) for c in candidates}
    batch = model.batch(x, lengths)
    hyps = beam_search_nbest(batch, batch.src, beam_size=16, max_len=3, length_penalty_alpha=0.0, nbest=16)[0]
    assert {h.tokens for h in hyps} == set(candidates)
    for h in hyps:
        assert h.logprob == pytest.approx(exact[h.tokens], abs=1e-5)
    assert hyps[0].tokens == max(exact, key=exact.get)
    greedy = tuple(t for t in greedy_search(batch, batch.src, max_len=3)[0].tolist() if t != PAD)
    assert hyps[0].logprob >= exact[greedy] - 1e-5


# ---- losses ------------------------------------------------------------------------------------------
def test_ctc_loss_is_the_mean_of_per_utterance_losses_over_target_lengths():
    model = _ctc()
    x, lengths = _features([41, 29], seed=8)
    targets, target_lengths = torch.tensor([[4, 5, 5, 6], [7, 8, 0, 0]]), torch.tensor([4, 2])
    log_probs, frame_lengths = model(x, lengths)
    each = F.ctc_loss(log_probs.transpose(0, 1), targets, frame_lengths, target_lengths, blank=BLANK,
                      reduction="none")  # (B,)
    expected = (each / target_lengths).mean()
    torch.testing.assert_close(model.loss(x, lengths, targets, target_lengths), expected, rtol=0, atol=1e-12)


def test_joint_loss_combines_attention_and_ctc_without_eos():
    """L = lambda CTC + (1 - lambda) attention; CTC's targets are the transcripts (EOS and padding left out)."""
    model = _seq2seq(ctc_weight=0.3)
    x, lengths = _features([41, 29], seed=9)
    tgt_in, tgt_out = _targets()
    terms = model.loss_terms(x, lengths, tgt_in, tgt_out, label_smoothing=0.1)
    memory, frame_lengths = model.encode_audio(x, lengths)
    ctc = ctc_loss(model.ctc_log_probs(memory), frame_lengths, torch.tensor([[4, 5, 6], [7, 0, 0]]),
                   torch.tensor([3, 1]), BLANK)
    logits = model(x, lengths, tgt_in)
    attention = F.cross_entropy(logits.reshape(-1, V), tgt_out.reshape(-1), ignore_index=PAD, label_smoothing=0.1,
                                reduction="sum") / 6
    torch.testing.assert_close(terms.ctc, ctc, rtol=0, atol=1e-12)
    torch.testing.assert_close(terms.attention, attention, rtol=0, atol=1e-12)
    torch.testing.assert_close(terms.loss, 0.3 * ctc + 0.7 * attention, rtol=0, atol=1e-12)
    assert terms.num_tokens == 6
    nll = F.cross_entropy(logits.reshape(-1, V), tgt_out.reshape(-1), ignore_index=PAD, reduction="sum")
    torch.testing.assert_close(terms.nll, nll, rtol=0, atol=1e-12)
    plain = _seq2seq(ctc_weight=0.0)
    assert plain.ctc_head is None and plain.loss_terms(x, lengths, tgt_in, tgt_out).ctc is None


def test_ctc_loss_falls_on_a_tiny_overfit():
    torch.manual_seed(0)
    model = ConformerCTC(_cfg(), V, blank_id=BLANK)
    x, lengths = _features([40, 32], seed=10)
    x = x.float()
    targets, target_lengths = torch.tensor([[4, 5, 6], [7, 8, 0]]), torch.tensor([3, 2])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = model.loss(x, lengths, targets, target_lengths)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


# ---- save and load -----------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [_ctc, lambda: _seq2seq(ctc_weight=0.3), lambda: _seq2seq(ctc_weight=0.0),
                                  lambda: _seq2seq(cross="location"), lambda: _seq2seq(cross="monotonic")])
def test_save_load_round_trip(tmp_path, make):
    model = make()
    model.save_pretrained(tmp_path)
    doc = json.loads((tmp_path / "config.json").read_text())
    assert doc["architecture"] == type(model).__name__
    loaded = type(model).from_pretrained(tmp_path).double().eval()
    x, lengths = _features([33, 25], seed=11)
    if isinstance(model, ConformerCTC):
        assert doc["ctc"] == {"vocab_size": V, "blank_id": BLANK}
        torch.testing.assert_close(loaded(x, lengths)[0], model(x, lengths)[0], rtol=0, atol=0)
    else:
        assert loaded.decoder_cfg == model.decoder_cfg and doc["asr"]["ctc_weight"] == model.decoder_cfg.ctc_weight
        kind = model.decoder_cfg.cross_attention.kind  # recorded only when it is not the paper's (older folders)
        assert doc["asr"].get("cross_attention", {"kind": "dot"})["kind"] == kind
        assert ("cross_attention" in doc["asr"]) == (kind != "dot")
        assert type(loaded.decoder.layers[0].cross_attn) is type(model.decoder.layers[0].cross_attn)
        tgt_in, _ = _targets()
        torch.testing.assert_close(loaded(x, lengths, tgt_in), model(x, lengths, tgt_in), rtol=0, atol=0)


# ---- the guided attention side path and the monotonic window (issue 20) ------------------------------------------
def test_probed_weights_equal_the_reference_cross_attention():
    """The side path's weights (fast attention kept) equal the written-out weights of the same layers and heads."""
    model = _seq2seq()
    x, lengths = _features([41, 23], seed=12)
    tgt_in, tgt_out = _targets()
    reference = model.cross_attention(x, lengths, tgt_in)  # per layer (B, H, L, T')
    hidden, probed = model.decoder_states(x, lengths, tgt_in, cross_attention=AttentionProbe(layers=(-1,), heads=(1,)))
    assert len(probed) == 1
    torch.testing.assert_close(probed[0], reference[1][:, 1:2], rtol=0, atol=1e-12)
    torch.testing.assert_close(hidden, model.decoder_states(x, lengths, tgt_in), rtol=0, atol=0)
    terms = model.loss_terms(x, lengths, tgt_in, tgt_out, 0.1, cross_attention=AttentionProbe())
    assert terms.frame_lengths.tolist() == [9, 5] and len(terms.cross_weights) == 2
    for got, want in zip(terms.cross_weights, reference, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert list(model.loss_terms(x, lengths, tgt_in, tgt_out).cross_weights) == []  # no probe, no weights


def test_guided_gradients_reach_only_the_probed_heads():
    """The guided loss on layer 0, head 1 moves that head's query and key rows, not head 0's, not the values, and
    nothing of layer 1."""
    model = _seq2seq().train()
    x, lengths = _features([41, 23], seed=13)
    tgt_in, tgt_out = _targets()
    terms = model.loss_terms(x, lengths, tgt_in, tgt_out, cross_attention=AttentionProbe(layers=(0,), heads=(1,)))
    guided_attention_loss(terms.cross_weights, frame_mask(terms.frame_lengths, 9), tgt_out != PAD, 0.2).backward()
    dh = 16 // 2
    layer0, layer1 = model.decoder.layers
    for proj in (layer0.cross_attn.q_proj, layer0.cross_attn.k_proj):
        assert proj.weight.grad[:dh].abs().max() == 0 and proj.weight.grad[dh:].abs().max() > 0
    for proj in (layer0.cross_attn.v_proj, layer0.cross_attn.out_proj):
        assert proj.weight.grad is None or proj.weight.grad.abs().max() == 0
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in layer1.parameters())


def test_a_window_over_every_frame_changes_nothing():
    model = _seq2seq()
    x, lengths = _features([41, 23, 33], seed=14)
    everything = MonotonicWindow(ahead=100, back=100)
    for beam in (1, 3):
        assert model.transcribe(x, lengths, beam_size=beam, max_len=6, window=everything) == model.transcribe(
            x, lengths, beam_size=beam, max_len=6)
    plain = model.transcribe_nbest(x, lengths, beam_size=3, max_len=4)
    windowed = model.transcribe_nbest(x, lengths, beam_size=3, max_len=4, window=everything)
    assert [[(h.tokens, h.logprob) for h in s] for s in plain] == [[(h.tokens, h.logprob) for h in s] for s in windowed]
    memory, frame_lengths = model.encode_audio(x, lengths)
    tgt_in = torch.tensor([[BOS, 4, 5, 6]] * 3)
    cache = model.start_decoding(memory, frame_lengths)
    cache.constrain(everything)
    steps = torch.cat([model.decode_step(tgt_in[:, t : t + 1], cache) for t in range(4)], dim=1)
    torch.testing.assert_close(steps, model(x, lengths, tgt_in), rtol=0, atol=1e-10)
    for stepped, forced in zip(model.cross_attention(x, lengths, tgt_in, everything),
                               model.cross_attention(x, lengths, tgt_in), strict=True):  # the pictures' weights
        torch.testing.assert_close(stepped, forced, rtol=0, atol=1e-10)


def test_the_weights_under_a_window_are_those_decoding_used():
    """cross_attention(window=...) feeds the positions one at a time as decoding does: its last layer's weights are
    zero outside each step's window, and the rows it gives equal the probed weights of a decode_step replay."""
    model = _seq2seq()
    x, lengths = _features([61], seed=15)
    tgt_in = torch.tensor([[BOS, 4, 5, 6, 7, 8, 4, 5]])
    window = MonotonicWindow(ahead=2, back=1)
    layers = model.cross_attention(x, lengths, tgt_in, window)  # per layer (1, H, L, T')
    assert len(layers) == 2 and layers[-1].shape[:3] == (1, 2, 8)
    support = (layers[-1][0].sum(0) > 0).int()  # (L, T') the frames each step could see
    assert (support.sum(-1) <= 4).all()  # ahead + back + the focus itself
    assert not torch.equal(layers[-1], model.cross_attention(x, lengths, tgt_in)[-1])


@pytest.mark.parametrize("seed", range(4))
def test_under_a_tight_window_the_focus_never_moves_back(seed):
    """A random model fed random tokens: each step attends only inside [focus - back, focus + ahead] of real frames,
    and the focus never decreases nor leaves the utterance."""
    torch.manual_seed(seed)
    model = ConformerSeq2Seq(_cfg(), V, decoder_layers=2, pad_id=PAD, bos_id=BOS, eos_id=EOS).double().eval()
    x, lengths = _features([61, 37], seed=seed)
    memory, frame_lengths = model.encode_audio(x, lengths)
    window = MonotonicWindow(ahead=2, back=1)
    cache = model.start_decoding(memory, frame_lengths)
    cache.constrain(window)
    tokens = torch.randint(3, V, (2, 12), generator=torch.Generator().manual_seed(seed))
    focus = cache.focus.clone()
    for t in range(12):
        out = model.decoder.step(tokens[:, t : t + 1], cache, probe=AttentionProbe(layers=(0,)))
        inside = torch.arange(memory.shape[1])[None, :]
        allowed = (inside >= focus[:, None] - 1) & (inside <= focus[:, None] + 2) & (inside < frame_lengths[:, None])
        assert out.probed[0][:, :, 0][~allowed[:, None].expand(-1, 2, -1)].abs().max() == 0  # (B, H, T')
        assert (cache.focus >= focus).all() and (cache.focus < frame_lengths).all()
        focus = cache.focus.clone()
    assert focus.max() > 0  # it did move


def test_beam_scores_under_a_window_replay_exactly():
    """Every hypothesis' log-probability equals stepping its tokens one by one under the same window."""
    model = _seq2seq()
    x, lengths = _features([41, 23], seed=15)
    window = MonotonicWindow(ahead=1, back=0)
    nbest = model.transcribe_nbest(x, lengths, beam_size=4, max_len=5, length_penalty=0.0, window=window)
    memory, frame_lengths = model.encode_audio(x, lengths)
    unwindowed = []
    for b, hyps in enumerate(nbest):
        for h in hyps:
            cache = model.start_decoding(memory[b : b + 1], frame_lengths[b : b + 1])
            cache.constrain(window)
            inputs = [BOS, *h.tokens[:-1]]
            with torch.no_grad():
                logp = sum(float(model.decode_step(torch.tensor([[tok]]), cache)[0, -1].log_softmax(-1)[nxt])
                           for tok, nxt in zip(inputs, h.tokens, strict=True))
            assert h.logprob == pytest.approx(logp, abs=1e-5)
            unwindowed.append(abs(logp - _sequence_logprob(model, x[b : b + 1, : lengths[b]], lengths[b : b + 1],
                                                           list(h.tokens))))
    assert max(unwindowed) > 1e-3  # the window did bind: without it the same tokens score otherwise


def test_a_window_is_one_step_at_a_time():
    model = _seq2seq()
    x, lengths = _features([41], seed=16)
    memory, frame_lengths = model.encode_audio(x, lengths)
    cache = model.start_decoding(memory, frame_lengths)
    cache.constrain(MonotonicWindow(ahead=3))
    with pytest.raises(TformerError, match="one new position per step"):
        model.decode_step(torch.tensor([[BOS, 4]]), cache)
    assert ConformerSeq2Seq.capabilities.supports(Feature.MONOTONIC_WINDOW)
    assert not ConformerCTC.capabilities.supports(Feature.MONOTONIC_WINDOW)
