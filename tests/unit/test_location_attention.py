"""Location-aware attention (Chorowski et al., 2015) as the encoder-decoder attention of the paper's Transformer:
cached decoding equals full recomputation (beams reordered too), padding never leaks, gradients reach the
convolution, and with the convolution's weights zero it is plain attention exactly; the config choice and saved
folders."""

import json

import pytest
import torch

from tformer import Transformer, TransformerConfig
from tformer.config import CROSS_ATTENTION_KINDS, ConfigError, CrossAttentionConfig
from tformer.nn.attention import AttentionProbe, MultiHeadAttention
from tformer.nn.cache import AlignedKV, MonotonicWindow
from tformer.nn.cross_attention import CROSS_ATTENTIONS, build_cross_attention
from tformer.nn.location_attention import LocationAwareAttention
from tformer.nn.masks import padding_mask

LOCATION = {"kind": "location", "location_channels": 3, "location_kernel": 5}


def model_of(seed, cross=LOCATION, **kw):
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


def cached_logits(model, src, tgt_in, chunks=(1,)):
    """Feed tgt_in through the cache in pieces of the given sizes (the last size repeats): logits (B, T, V)."""
    cache = model.start_decoding(model.encode(src), src)
    out, pos, sizes = [], 0, list(chunks)
    while pos < tgt_in.shape[1]:
        n = sizes.pop(0) if len(sizes) > 1 else sizes[0]
        out.append(model.decode_step(tgt_in[:, pos : pos + n], cache))
        pos += n
    return torch.cat(out, 1)


@pytest.mark.parametrize("seed", range(3))
def test_cached_decoding_equals_full_recomputation(seed):
    model = model_of(seed)
    src, tgt_in = batch(seed)
    full = model(src, tgt_in)
    torch.testing.assert_close(cached_logits(model, src, tgt_in), full, atol=1e-10, rtol=0)
    torch.testing.assert_close(cached_logits(model, src, tgt_in, chunks=(3, 1, 2)), full, atol=1e-10, rtol=0)


def test_the_previous_weights_follow_the_beams():
    """Two beams of one sentence swap their rows half-way (beam search's reorder_targets): each continues with its
    own previous weights, as a full recomputation of the swapped prefixes says."""
    model = model_of(5)
    src, tgt_in = batch(5, b=1)
    other = tgt_in.flip(1).roll(1, 1)  # another target of the same length (BOS first)
    targets = torch.cat([tgt_in, other])  # (2, T): two beams
    cache = model.start_decoding(model.encode(src), src)
    cache.repeat_interleave(2)
    model.decode_step(targets[:, :4], cache)
    cache.reorder_targets(torch.tensor([1, 0]))
    swapped = targets.flip(0)  # the rows' prefixes after the swap
    cached = model.decode_step(swapped[:, 4:], cache)
    full = model(src.expand(2, -1), swapped)[:, 4:]
    torch.testing.assert_close(cached, full, atol=1e-10, rtol=0)
    assert isinstance(cache.cross_kv[0], AlignedKV) and cache.cross_kv[0].state["weights"].shape[:2] == (2, 4)


@pytest.mark.parametrize("seed", range(2))
def test_padding_never_leaks(seed):
    model = model_of(seed)
    src, tgt_in = batch(seed)
    logits, maps = model(src, tgt_in, need_weights=True)
    pads = ~padding_mask(src, 0)[:, :, 0]  # (B, 1, S)
    for w in maps.decoder_cross:  # (B, H, T, S): no weight on source padding
        assert (w.masked_select(pads[:, :, None].expand_as(w)) == 0).all()
    for b in range(src.shape[0]):  # each sentence alone, without the others' padding
        n = int((src[b] != 0).sum())
        alone = model(src[b : b + 1, :n], tgt_in[b : b + 1])
        torch.testing.assert_close(logits[b : b + 1], alone, atol=1e-10, rtol=0)
    greedy = model.generate(src, max_len=6)
    for b in range(src.shape[0]):
        n = int((src[b] != 0).sum())
        alone = model.generate(src[b : b + 1, :n], max_len=6)
        assert torch.equal(greedy[b : b + 1, : alone.shape[1]], alone)


def test_gradients_reach_the_convolution_and_its_projection():
    torch.manual_seed(0)
    cfg = TransformerConfig.tiny(vocab_size=24, cross_attention=LOCATION)
    model = Transformer(cfg)
    src, tgt_in = batch(0)
    model(src, tgt_in).logsumexp(-1).mean().backward()
    for layer in model.decoder.layers:
        attn = layer.cross_attn
        assert isinstance(attn, LocationAwareAttention)
        assert attn.location_conv.weight.grad.abs().sum() > 0
        assert attn.location_proj.grad.abs().sum() > 0


def test_with_the_convolution_zero_it_is_plain_attention_exactly():
    """Q = 0 makes the location term 0: the same numbers as the written-out Eq. 1 with the same projections."""
    torch.manual_seed(1)
    location = LocationAwareAttention(16, 4, channels=3, kernel_size=5).double()
    plain = MultiHeadAttention(16, 4, attention=None).double()
    plain.load_state_dict({k: v for k, v in location.state_dict().items() if not k.startswith("location")})
    with torch.no_grad():
        location.location_conv.weight.zero_()
    x, memory = torch.randn(2, 5, 16, dtype=torch.double), torch.randn(2, 6, 16, dtype=torch.double)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])[:, None, None, :]
    out, w = location(x, memory, mask, need_weights=True)
    want, want_w = plain(x, memory, mask, need_weights=True)  # need_weights: the reference path
    assert torch.equal(out, want) and torch.equal(w, want_w)
    # and the whole model: a location model with Q = 0 against a dot model holding the same other weights
    loc_model = model_of(2, attention={"kind": "reference"})
    dot_model = model_of(2, cross={"kind": "dot"}, attention={"kind": "reference"})
    dot_model.load_state_dict({k: v for k, v in loc_model.state_dict().items() if ".location_" not in k})
    for layer in loc_model.decoder.layers:
        with torch.no_grad():
            layer.cross_attn.location_conv.weight.zero_()
    src, tgt_in = batch(2)
    assert torch.equal(loc_model(src, tgt_in), dot_model(src, tgt_in))


def test_greedy_and_beam_search_run_and_beam_one_is_greedy():
    model = model_of(3)
    src, _ = batch(3)
    greedy = model.generate(src, max_len=8)
    assert torch.equal(model.generate(src, beam_size=1, max_len=8), greedy)
    assert model.generate(src, beam_size=3, max_len=8).shape[0] == src.shape[0]


def test_the_config_choice_and_saved_folders(tmp_path):
    assert set(CROSS_ATTENTIONS) == set(CROSS_ATTENTION_KINDS)
    assert type(build_cross_attention(None, 16, 4)) is MultiHeadAttention
    plain = model_of(0, cross={"kind": "dot"})
    plain.save_pretrained(tmp_path / "dot")
    assert "cross_attention" not in json.loads((tmp_path / "dot" / "config.json").read_text())  # as before
    model = model_of(0)
    model.save_pretrained(tmp_path / "location")
    doc = json.loads((tmp_path / "location" / "config.json").read_text())
    assert doc["cross_attention"]["kind"] == "location"
    loaded = Transformer.from_pretrained(tmp_path / "location").double().eval()
    assert loaded.cfg.cross_attention == CrossAttentionConfig(**LOCATION)
    src, tgt_in = batch(0)
    torch.testing.assert_close(loaded(src, tgt_in), model(src, tgt_in), atol=1e-12, rtol=0)
    for bad, words in [({"kind": "additive"}, "kind"), ({"kind": "location", "location_kernel": 4}, "odd"),
                       ({"kind": "location", "location_channels": 0}, "location_channels"),
                       ({"colour": 1}, "unknown key")]:
        with pytest.raises(ConfigError, match=words) as e:
            TransformerConfig.tiny(cross_attention=bad)
        assert "\n" not in str(e.value)


def test_the_exporters_refuse_an_alignment_carrying_attention():
    ct2 = pytest.importorskip("tformer.export.ctranslate2")
    onnx = pytest.importorskip("tformer.export.onnx")
    for kind in ("location", "monotonic"):
        cfg = TransformerConfig.tiny(cross_attention={"kind": kind})
        assert kind in ct2.unsupported(cfg)
        with pytest.raises(onnx.TformerError, match=kind):
            onnx.check_supported(cfg)
    assert ct2.unsupported(TransformerConfig.tiny()) is None


@torch.no_grad()
def test_a_window_does_not_move_where_the_alignment_starts():
    """The monotonic window limits what each step sees, not the previous weights before the first step: those are
    uniform over the real source whatever the window. So the first step's weights under any window are the
    unwindowed ones renormalised over the window (layer 0, whose queries the window cannot change), and a window
    wider than the source changes nothing."""
    model = model_of(6)
    src, _ = batch(6)
    real = (src != 0).double()  # (B, S)
    bos = torch.ones(src.shape[0], 1, dtype=torch.long)
    probe = AttentionProbe(layers=(0,))
    cache = model.start_decoding(model.encode(src), src)
    _, (plain,) = model.decode_step(bos, cache, cross_attention=probe)  # (B, H, 1, S)
    for window in (MonotonicWindow(1, 0), MonotonicWindow(2, 1), MonotonicWindow(4, 0)):
        cache = model.start_decoding(model.encode(src), src)
        cache.constrain(window)
        for kv in cache.aligned_kv:  # the state the first step reads: uniform over the real source
            uniform = (real / real.sum(1, keepdim=True))[:, None].expand(-1, kv.k.shape[1], -1)  # (B, H, S)
            torch.testing.assert_close(kv.state["weights"], uniform, atol=1e-15, rtol=0)
        _, (windowed,) = model.decode_step(bos, cache, cross_attention=probe)
        inside = real.clone()
        inside[:, window.ahead + 1 :] = 0  # the first focus is 0: [0 - back, 0 + ahead]
        expected = plain * inside[:, None, None]
        torch.testing.assert_close(windowed, expected / expected.sum(-1, keepdim=True), atol=1e-12, rtol=0)
    wide = {"monotonic_window": src.shape[1], "monotonic_window_back": src.shape[1]}
    assert torch.equal(model.generate(src, max_len=8, **wide), model.generate(src, max_len=8))
    assert model.generate_nbest(src, beam_size=3, nbest=3, max_len=8, **wide) == \
        model.generate_nbest(src, beam_size=3, nbest=3, max_len=8)


def test_only_alignment_carrying_caches_are_reordered_with_the_beams():
    src, _ = batch(0)
    dot = model_of(0, cross={"kind": "dot"})
    assert dot.start_decoding(dot.encode(src), src).aligned_kv == []  # nothing to reorder per beam step
    model = model_of(0)
    cache = model.start_decoding(model.encode(src), src)
    assert len(cache.aligned_kv) == model.cfg.num_decoder_layers
    assert all(a is c for a, c in zip(cache.aligned_kv, cache.cross_kv, strict=True))


@torch.no_grad()
def full_logprob(model, src, tokens):
    """log P(tokens | src) by one teacher-forced pass (float64)."""
    tokens = torch.tensor([tokens])
    tgt_in = torch.cat([torch.ones_like(tokens[:, :1]), tokens[:, :-1]], 1)
    logp = model(src, tgt_in).log_softmax(-1)
    return float(logp.gather(-1, tokens[..., None]).sum())


def test_beam_search_scores_equal_full_recomputation():
    """Every hypothesis of a batched beam search (beams reordered, finished sentences dropped from the cache) has
    the log-probability a teacher-forced pass gives it: the previous weights followed their beams."""
    model = model_of(8)
    src, _ = batch(8)
    nbest = model.generate_nbest(src, beam_size=3, nbest=3, max_len=7)
    for b, hyps in enumerate(nbest):
        n = int((src[b] != 0).sum())
        for hyp in hyps:  # beam search scores in float32
            assert abs(hyp.logprob - full_logprob(model, src[b : b + 1, :n], list(hyp.tokens))) < 1e-5
