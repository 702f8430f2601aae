"""The Conformer (Gulati et al., 2020): configuration, front end, relative attention, padding, save/load, and
Hugging Face's Wav2Vec2ConformerEncoder layers with the same weights as the outside oracle."""

import math

import pytest
import torch
from torch import nn

from tformer.config import AttentionConfig, ConfigError
from tformer.errors import TformerError
from tformer.models.conformer import (
    CONFORMER_BLOCKS,
    CONFORMER_POSITIONAL,
    FRONT_ENDS,
    ConformerClassifier,
    ConformerConfig,
    ConformerEncoder,
    MaskedBatchNorm1d,
    subsampled_lengths,
)
from tformer.models.conformer.config import BLOCK_KINDS, POSITIONAL_KINDS, SUBSAMPLING_MIN_FRAMES
from tformer.models.registry import load_pretrained
from tformer.nn.relative_attention import RelativeMultiHeadAttention, relative_shift, relative_sinusoids

POSITIONAL = ["relative", "none"]


def _model(positional: str = "relative", **kw) -> ConformerEncoder:
    cfg = ConformerConfig.tiny(n_mels=16, d_model=16, num_heads=2, d_ff=32, conv_kernel_size=5, dropout=0.0,
                               attention_dropout=0.0, positional=positional, **kw)
    model = ConformerEncoder(cfg)
    _randomise_batch_norms(model)
    return model.eval()


def _randomise_batch_norms(model: nn.Module) -> None:
    """Running statistics away from (0, 1), so that a wrongly mapped or skipped BatchNorm shows."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.normal_(0.0, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1.0, 0.2)
                m.bias.normal_(0.0, 0.2)


# ---- configuration -----------------------------------------------------------------------------
@pytest.mark.parametrize("kw, needle", [
    ({"conv_kernel_size": 32}, "conv_kernel_size must be odd"),
    ({"conv_kernel_size": 0}, "conv_kernel_size must be positive"),
    ({"positional": "rotary"}, "positional must be one of ('relative', 'none', 'sinusoidal')"),
    ({"n_mels": 6}, "n_mels must be >= 7"),
    ({"subsampling": 2}, "subsampling must be one of (4, 1), got 2"),
    ({"block": "macaron"}, "block must be one of ('conformer', 'transformer')"),
    ({"num_classes": -1}, "num_classes must be >= 0"),
    ({"d_model": 30}, "d_model (30) must be divisible by num_heads (4)"),
    ({"dropout": 1.0}, "dropout must be in [0, 1)"),
    ({"subsampling_channels": 0}, "subsampling_channels must be positive or null"),
    ({"attention": AttentionConfig(kind="sliding")}, "relative positions need full or chunked attention"),
    ({"attention": AttentionConfig(kind="lsh")}, "supports attention kinds"),
])
def test_bad_config_values_are_one_line_errors(kw, needle):
    with pytest.raises(ConfigError, match=None) as e:
        ConformerConfig(**kw)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_config_keys_round_trip_and_unknown_keys_are_refused():
    cfg = ConformerConfig.tiny(positional="none", attention=AttentionConfig(kind="sliding", window=4))
    assert ConformerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown key"):
        ConformerConfig.from_dict({**cfg.to_dict(), "kernel": 31})
    assert ConformerConfig.small().d_model == 144 and ConformerConfig.large().num_layers == 17


def test_the_registry_knows_exactly_the_configs_kinds():
    assert tuple(CONFORMER_POSITIONAL) == POSITIONAL_KINDS
    assert tuple(CONFORMER_BLOCKS) == BLOCK_KINDS
    assert tuple(FRONT_ENDS) == tuple(str(k) for k in SUBSAMPLING_MIN_FRAMES)


def test_without_subsampling_every_frame_stays_and_few_mels_are_allowed():
    model = ConformerEncoder(ConformerConfig.tiny(n_mels=3, d_model=16, num_heads=2, subsampling=1)).eval()
    with torch.no_grad():
        out, lengths = model(torch.randn(2, 5, 3), torch.tensor([5, 1]))
    assert out.shape == (2, 5, 16) and lengths.tolist() == [5, 1]
    assert model.output_lengths(torch.tensor([9])).tolist() == [9]


# ---- the front end -----------------------------------------------------------------------------
def test_subsampling_reduces_time_4x_by_the_lengths_formula():
    model = _model()
    for t in (7, 8, 10, 11, 13, 40, 41, 100):
        with torch.no_grad():
            out, lengths = model(torch.randn(1, t, 16))
        assert out.shape == (1, subsampled_lengths(t), 16) and lengths.tolist() == [((t - 1) // 2 - 1) // 2]
        assert model.output_lengths(torch.tensor([t])).tolist() == lengths.tolist()
        assert t // 4 - 2 <= out.shape[1] <= t // 4
    assert subsampled_lengths(torch.tensor([7, 100])).tolist() == [1, 24]


@pytest.mark.parametrize("features, lengths, needle", [
    (torch.randn(2, 20, 15), None, "expected features of shape (B, T, 16)"),
    (torch.randn(2, 20, 16), torch.tensor([20, 6]), "every length must be in [7, 20]"),
    (torch.randn(2, 20, 16), torch.tensor([21, 8]), "every length must be in [7, 20]"),
    (torch.randn(2, 20, 16), torch.tensor([20]), "expected lengths of shape (2,)"),
])
def test_bad_inputs_are_clear_errors(features, lengths, needle):
    with pytest.raises(ValueError) as e:
        _model()(features, lengths)
    assert needle in str(e.value)


# ---- padding never leaks -----------------------------------------------------------------------
@pytest.mark.parametrize("positional, attention, kw", [
    ("relative", "full", {}), ("none", "full", {}), ("relative", "chunked", {}), ("none", "sliding", {}),
    ("sinusoidal", "full", {"subsampling": 1}), ("sinusoidal", "full", {"block": "transformer"}),
    ("relative", "full", {"block": "transformer", "subsampling": 1}),
])
def test_a_padded_batch_gives_each_utterance_its_outputs_alone(positional, attention, kw):
    model = _model(positional, attention=AttentionConfig(kind=attention, chunk_size=3, window=2), **kw)
    lengths = torch.tensor([41, 23, 9])
    batch = torch.randn(3, 41, 16) * 5.0  # padding full of large noise: any leak shows
    with torch.no_grad():
        out, out_lengths = model(batch, lengths)
        for b, n in enumerate(lengths.tolist()):
            alone, alone_lengths = model(batch[b : b + 1, :n])
            assert out_lengths[b] == alone_lengths[0] == alone.shape[1]
            torch.testing.assert_close(out[b, : alone.shape[1]], alone[0], atol=1e-5, rtol=1e-5)


def test_gradients_of_real_outputs_never_reach_padded_inputs():
    model = _model().train()  # dropout 0: only MaskedBatchNorm's statistics differ from evaluation
    features = torch.randn(2, 30, 16, requires_grad=True)
    lengths = torch.tensor([30, 19])
    out, out_lengths = model(features, lengths)
    (out[1, : out_lengths[1]] * torch.randn(out_lengths[1], 16)).sum().backward()  # a plain sum of LayerNorms: 0
    assert features.grad[1, 19:].abs().max() == 0 and features.grad[1, :19].abs().max() > 0


def test_masked_batch_norm_is_batch_norm_over_the_real_frames_only():
    torch.manual_seed(1)
    x, real = torch.randn(3, 4, 9), torch.ones(3, 9, dtype=torch.bool)
    real[1, 5:], real[2, 2:] = False, False
    ours, ref = MaskedBatchNorm1d(4).train(), nn.BatchNorm1d(4).train()
    with torch.no_grad():
        ours.weight.normal_()
        ours.bias.normal_()
    ref.load_state_dict(ours.state_dict())
    # Without a mask it is BatchNorm1d; with one, BatchNorm1d of the real frames laid end to end.
    torch.testing.assert_close(ours(x), ref(x))
    frames = x.transpose(1, 2)[real].T[None]  # (B, D, T) -> (B, T, D) -> (N real, D) -> (1, D, N real)
    y = ours(x, real)
    torch.testing.assert_close(y.transpose(1, 2)[real].T[None], ref(frames))
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 2
    torch.testing.assert_close(ours.eval()(x, real), ref.eval()(x))  # evaluation: the running statistics


# ---- relative positions (Transformer-XL §3.3) ----------------------------------------------------
def test_relative_sinusoids_are_the_sinusoids_of_the_signed_distances():
    t, d = 5, 6
    table = relative_sinusoids(t, d, dtype=torch.float64)
    for k in range(2 * t - 1):
        r = t - 1 - k
        for i in range(d // 2):
            angle = r / 10000 ** (2 * i / d)
            assert table[k, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[k, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_relative_shift_picks_the_column_of_each_distance():
    t = 4
    scores = torch.arange(2 * 3 * t * (2 * t - 1), dtype=torch.float32).view(2, 3, t, 2 * t - 1)
    out = relative_shift(scores)
    for i in range(t):
        for j in range(t):
            assert torch.equal(out[..., i, j], scores[..., i, t - 1 - (i - j)])


@pytest.mark.parametrize("kind", ["full", "reference", "chunked"])
def test_relative_attention_is_transformer_xl_written_out(kind):
    torch.manual_seed(2)
    d, h, t = 8, 2, 5
    attn = RelativeMultiHeadAttention(d, h, attention=AttentionConfig(kind=kind, chunk_size=2)).eval()
    with torch.no_grad():
        attn.pos_bias_u.normal_()
        attn.pos_bias_v.normal_()
    x, mask = torch.randn(2, t, d), torch.tensor([[True] * 5, [True] * 3 + [False] * 2])[:, None, None, :]
    with torch.no_grad():
        out, _ = attn(x, mask=mask)
        q, k, v = (p(x).view(2, t, h, d // h).transpose(1, 2) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
        dist = relative_sinusoids(t, d)  # row T - 1 - r: distance r
        scores = torch.empty(2, h, t, t)
        for i in range(t):
            for j in range(t):
                r = attn.pos_proj(dist[t - 1 - (i - j)]).view(h, d // h)  # W_R R_{i-j}, (H, Dh)
                ac = ((q[:, :, i] + attn.pos_bias_u) * k[:, :, j]).sum(-1)  # (a) + (c)
                bd = ((q[:, :, i] + attn.pos_bias_v) * r).sum(-1)  # (b) + (d)
                scores[:, :, i, j] = (ac + bd) / math.sqrt(d // h)
        weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        ref = attn.out_proj((weights @ v).transpose(1, 2).reshape(2, t, d))
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_attention_weights_are_returned_when_asked_and_skip_padding():
    model = _model()
    with torch.no_grad():
        _, lengths, weights = model(torch.randn(2, 40, 16), torch.tensor([40, 25]), need_weights=True)
    assert len(weights) == 2 and weights[0].shape == (2, 2, 9, 9)
    torch.testing.assert_close(weights[1].sum(-1), torch.ones(2, 2, 9))
    assert weights[0][1, :, :, lengths[1]:].abs().max() == 0


def test_the_classifier_pools_real_frames_only_and_starts_at_even_odds():
    cfg = ConformerConfig.tiny(n_mels=16, d_model=16, num_heads=2, d_ff=32, conv_kernel_size=5, num_classes=3)
    model = ConformerClassifier(cfg).eval()
    x, lengths = torch.randn(2, 30, 16), torch.tensor([30, 17])
    with torch.no_grad():
        assert model(x, lengths).abs().max() == 0  # the head starts at zero
        torch.nn.init.normal_(model.head.weight)
        padded = model(x * 1, lengths)[1]
        x[1, 17:] = 1e3  # padding full of noise: the logits stay
        torch.testing.assert_close(model(x, lengths)[1], padded)
        torch.testing.assert_close(model(x[1:, :17])[0], padded, atol=1e-5, rtol=1e-5)
    assert model.predict(x, lengths).shape == (2,) and not model.training
    with pytest.raises(ConfigError, match="needs num_classes >= 1"):
        ConformerClassifier(ConformerConfig.tiny())


# ---- save / load -------------------------------------------------------------------------------
@pytest.mark.parametrize("positional", POSITIONAL)
def test_save_and_load_round_trip(tmp_path, positional):
    model = _model(positional)
    model.save_pretrained(tmp_path)
    for loaded in (ConformerEncoder.from_pretrained(tmp_path), load_pretrained(tmp_path)):
        assert isinstance(loaded, ConformerEncoder) and loaded.cfg == model.cfg
        x, lengths = torch.randn(2, 30, 16), torch.tensor([30, 17])
        with torch.no_grad():
            torch.testing.assert_close(loaded.eval()(x, lengths)[0], model(x, lengths)[0], atol=0, rtol=0)


def test_a_classifier_folder_loads_whole_and_gives_its_encoder(tmp_path):
    model = ConformerClassifier(ConformerConfig.tiny(n_mels=16, d_model=16, num_heads=2, block="transformer",
                                                     positional="sinusoidal", subsampling=1, num_classes=4)).eval()
    model.save_pretrained(tmp_path)
    x, lengths = torch.randn(2, 30, 16), torch.tensor([30, 17])
    loaded, encoder = load_pretrained(tmp_path).eval(), ConformerEncoder.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, ConformerClassifier) and loaded.cfg == model.cfg
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, lengths), model(x, lengths), atol=0, rtol=0)
        torch.testing.assert_close(encoder(x, lengths)[0], model.encoder(x, lengths)[0], atol=0, rtol=0)


# ---- Hugging Face's Wav2Vec2ConformerEncoder layers with the same weights -------------------------
def _hf_encoder(position_embeddings_type, **kw):
    transformers = pytest.importorskip("transformers")
    base = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                conv_depthwise_kernel_size=5, hidden_act="swish", position_embeddings_type=position_embeddings_type,
                hidden_dropout=0.0, activation_dropout=0.0, attention_dropout=0.0, conformer_conv_dropout=0.0,
                layerdrop=0.0, num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2, max_source_positions=64,
                attn_implementation="eager")
    cfg = transformers.Wav2Vec2ConformerConfig(**{**base, **kw})
    from transformers.models.wav2vec2_conformer.modeling_wav2vec2_conformer import Wav2Vec2ConformerEncoder

    encoder = Wav2Vec2ConformerEncoder(cfg)
    with torch.no_grad():
        for p in encoder.parameters():
            p.normal_(0.0, 0.2)
    _randomise_batch_norms(encoder)
    return encoder.eval()


HF_CASES = [("relative", {}), (None, {}), ("relative", {"num_attention_heads": 4, "conv_depthwise_kernel_size": 3})]


def _ours(hf) -> ConformerEncoder:
    from tformer.interop.conformer import from_hf_wav2vec2_conformer_layers

    return from_hf_wav2vec2_conformer_layers(hf, n_mels=16).eval()


@pytest.mark.parametrize("kind, kw", HF_CASES)
def test_same_weights_same_frames_as_hugging_face(kind, kw):
    hf = _hf_encoder(kind, **kw)
    ours = _ours(hf)
    assert ours.cfg.positional == ("none" if kind is None else kind)
    x = torch.randn(3, 13, 16)
    with torch.no_grad():
        ref = hf(x.clone()).last_hidden_state
        out = hf.layer_norm(ours.encode_frames(x)[0])  # the encoder's last LayerNorm is Hugging Face's own
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind, kw", HF_CASES)
def test_padded_batch_equals_hugging_face_on_each_utterance_alone(kind, kw):
    hf = _hf_encoder(kind, **kw)
    ours = _ours(hf)
    lengths = torch.tensor([13, 8, 4])
    x = torch.randn(3, 13, 16)
    # Hugging Face's padded batch (attention_mask) is not the oracle here: its convolution module reads padded
    # frames, which are zero only before the first layer, so its real frames near the padding change with it.
    with torch.no_grad():
        out = hf.layer_norm(ours.encode_frames(x, lengths)[0])
        for b, n in enumerate(lengths.tolist()):
            alone = hf(x[b : b + 1, :n].clone()).last_hidden_state[0]
            torch.testing.assert_close(out[b, :n], alone, atol=1e-5, rtol=1e-5)


def test_unsupported_hugging_face_models_are_one_line_errors():
    from tformer.interop.conformer import from_hf_wav2vec2_conformer_layers

    with pytest.raises(TformerError, match="expected a transformers Wav2Vec2ConformerEncoder"):
        from_hf_wav2vec2_conformer_layers(nn.Linear(2, 2))
    with pytest.raises(TformerError, match="relative or no positions, not 'rotary'"):
        from_hf_wav2vec2_conformer_layers(_hf_encoder("rotary"))
