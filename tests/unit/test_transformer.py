"""Properties of the whole encoder-decoder: no leaks, cache = recomputation, gradients, tying, sizes."""

import pytest
import torch

from tformer import Transformer, TransformerConfig

PAD = 0


def _model(**kw) -> Transformer:
    return Transformer(TransformerConfig.tiny(**kw)).eval()


def _ids(b, t, vocab=64):
    return torch.randint(4, vocab, (b, t))


@pytest.mark.parametrize("norm", ["post", "pre"])
def test_padding_never_leaks_into_encoder_or_cross_attention(norm):
    model = _model(norm=norm)
    src, tgt = _ids(2, 6), _ids(2, 5)
    padded = torch.cat([src, torch.full((2, 4), PAD)], dim=1)  # four extra pads
    mem, mem_padded = model.encode(src), model.encode(padded)
    torch.testing.assert_close(mem_padded[:, :6], mem, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.decode(tgt, mem_padded, padded), model.decode(tgt, mem, src), atol=1e-5, rtol=1e-5)
    # Changing what sits under the pads changes nothing either.
    garbage = mem_padded.clone()
    garbage[:, 6:] = 100.0
    torch.testing.assert_close(model.decode(tgt, garbage, padded), model.decode(tgt, mem, src), atol=1e-5, rtol=1e-5)


def test_future_never_leaks():
    model = _model()
    src, tgt = _ids(2, 6), _ids(2, 7)
    logits = model(src, tgt)
    for t in range(6):
        changed = tgt.clone()
        changed[:, t + 1 :] = torch.randint(4, 64, changed[:, t + 1 :].shape)
        torch.testing.assert_close(model(src, changed)[:, : t + 1], logits[:, : t + 1], atol=1e-5, rtol=1e-5)
    # ...while the past does matter (the test can fail).
    changed = tgt.clone()
    changed[:, 0] = (changed[:, 0] + 1 - 4) % 60 + 4
    assert not torch.allclose(model(src, changed)[:, 1:], logits[:, 1:])


# T5's configuration of the encoder-decoder (TransformerConfig.t5_small at the tiny size).
T5_STYLE = dict(positional="relative", relative_buckets=8, relative_max_distance=20, norm="pre", norm_type="rms",
                layer_norm_eps=1e-6, bias=False, scale_attention=False, scale_embedding=False, scale_output=True,
                final_dropout=True)


@pytest.mark.parametrize("kw", [{}, {"norm": "pre"}, {"positional": "learned"}, T5_STYLE, {**T5_STYLE, "d_kv": 16}])
def test_cached_incremental_decoding_equals_full_recomputation(kw):
    model = _model(**kw)
    src = torch.cat([_ids(3, 5), torch.full((3, 2), PAD)], dim=1)
    src[1, 5:] = 9  # rows of different lengths
    tgt = _ids(3, 8)
    full = model(src, tgt)
    cache = model.start_decoding(model.encode(src), src)
    steps = [model.decode_step(tgt[:, :3], cache)]  # a prefix of 3 at once, then one by one
    steps += [model.decode_step(tgt[:, t : t + 1], cache) for t in range(3, 8)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_every_parameter_receives_a_gradient():
    model = Transformer(TransformerConfig.tiny(tie_output=False, share_embeddings=False, output_bias=True,
                                               positional="learned"))
    src, tgt = _ids(2, 6), _ids(2, 5)
    model(src, tgt).logsumexp(-1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        if name.endswith("k_proj.bias"):
            # q.(k + b) adds the same q.b to every score of a query, and softmax ignores a shift:
            # the key bias gets no gradient (kept for weight compatibility with Marian and torch).
            assert p.grad.abs().max() < 1e-5, name
        else:
            assert p.grad.abs().sum() > 1e-4, name


def test_three_way_tying_with_a_shared_vocabulary():
    m = _model()
    assert m.encoder.embed.tokens.weight is m.decoder.embed.tokens.weight is m.output_projection.weight


def test_two_way_tying_with_separate_vocabularies():
    m = _model(tgt_vocab_size=50, share_embeddings=False)
    assert m.decoder.embed.tokens.weight is m.output_projection.weight
    assert m.encoder.embed.tokens.weight is not m.decoder.embed.tokens.weight
    assert m(_ids(1, 4), _ids(1, 3, vocab=50)).shape == (1, 3, 50)


def test_untied_parameter_count_adds_the_matrices():
    tied, untied = _model(), _model(share_embeddings=False, tie_output=False)
    assert untied.num_parameters() - tied.num_parameters() == 2 * 64 * 32


@pytest.mark.parametrize("preset,paper", [(TransformerConfig.base, 65e6), (TransformerConfig.big, 213e6)])
def test_parameter_counts_match_the_paper(preset, paper):
    # Table 3 with a shared source-target vocabulary of 37,000 tokens.
    cfg = preset(vocab_size=37000)
    with torch.device("meta"):
        n = Transformer(cfg).num_parameters()
    assert abs(n - paper) / paper < 0.04, n


def test_paper_table3_hyperparameters():
    base, big = TransformerConfig.base(), TransformerConfig.big()
    assert (base.num_encoder_layers, base.d_model, base.d_ff, base.num_heads, base.dropout) == (6, 512, 2048, 8, 0.1)
    assert (big.num_encoder_layers, big.d_model, big.d_ff, big.num_heads, big.dropout) == (6, 1024, 4096, 16, 0.3)
    assert base.d_head == 64


def test_pre_norm_has_a_final_layer_norm_and_post_norm_none():
    assert isinstance(_model(norm="pre").encoder.final_norm, torch.nn.LayerNorm)
    assert isinstance(_model().encoder.final_norm, torch.nn.Identity)


def test_attention_maps_are_returned_only_when_asked():
    model = _model()
    src, tgt = _ids(2, 6), _ids(2, 5)
    logits, maps = model(src, tgt, need_weights=True)
    torch.testing.assert_close(logits, model(src, tgt), atol=1e-5, rtol=1e-5)
    assert [w.shape for w in maps.encoder] == [(2, 4, 6, 6)] * 2
    assert [w.shape for w in maps.decoder_self] == [(2, 4, 5, 5)] * 2
    assert [w.shape for w in maps.decoder_cross] == [(2, 4, 5, 6)] * 2
    # weights are returned, never kept on a module
    for module in model.modules():
        assert not any(isinstance(v, torch.Tensor) and v.dim() == 4 for v in vars(module).values())


def test_dropout_is_active_in_training_and_off_in_eval():
    model = Transformer(TransformerConfig.tiny(dropout=0.3))
    src, tgt = _ids(2, 6), _ids(2, 5)
    model.train()
    assert not torch.equal(model(src, tgt), model(src, tgt))
    model.eval()
    assert torch.equal(model(src, tgt), model(src, tgt))


def test_too_long_input_is_a_clear_error():
    model = _model()
    with pytest.raises(ValueError, match="max_len"):
        model.encode(_ids(1, 200))


# ---- the text-to-text configuration (T5): relative position bias, RMSNorm, no biases ---------------------------


def test_t5_preset_has_t5_smalls_parameter_count():
    cfg = TransformerConfig.t5_small()
    with torch.device("meta"):
        n = Transformer(cfg).num_parameters()
    assert n == 60_506_624  # transformers' T5ForConditionalGeneration(T5Config()), i.e. t5-small


def test_t5_style_has_no_biases_no_absolute_positions_and_rms_norms():
    model = _model(**T5_STYLE)
    names = [name for name, _ in model.named_parameters()]
    assert not any(name.endswith("bias") for name in names)
    assert model.encoder.embed.positions is None and model.decoder.embed.positions is None
    assert model.encoder.relative_bias.weight.shape == (8, 4)  # (buckets, heads), one table per stack
    assert model.encoder.relative_bias.bidirectional and not model.decoder.relative_bias.bidirectional
    assert all(isinstance(m, torch.nn.RMSNorm) for m in model.modules() if "Norm" in type(m).__name__)


@pytest.mark.parametrize("side", ["right", "left"])
def test_t5_style_padding_never_leaks_on_either_side(side):
    # With relative positions only, the distances between real tokens do not change when pads come first.
    model = _model(**T5_STYLE)
    src, tgt = _ids(2, 6), _ids(2, 5)
    pads = torch.full((2, 3), PAD)
    padded = torch.cat([src, pads] if side == "right" else [pads, src], dim=1)
    real = slice(0, 6) if side == "right" else slice(3, 9)
    torch.testing.assert_close(model.encode(padded)[:, real], model.encode(src), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(padded, tgt), model(src, tgt), atol=1e-5, rtol=1e-5)


def test_t5_style_future_never_leaks_and_beam_search_runs():
    model = _model(**T5_STYLE)
    src, tgt = _ids(2, 6), _ids(2, 7)
    logits = model(src, tgt)
    changed = tgt.clone()
    changed[:, 4:] = _ids(2, 3)
    torch.testing.assert_close(model(src, changed)[:, :4], logits[:, :4], atol=1e-5, rtol=1e-5)
    greedy = model.generate(src, beam_size=1, max_len=8)
    assert torch.equal(model.generate(src, beam_size=1, max_len=8), greedy)
    assert model.generate(src, beam_size=3, max_len=8).shape[0] == 2


def test_t5_style_every_parameter_receives_a_gradient():
    model = Transformer(TransformerConfig.tiny(**T5_STYLE, share_embeddings=False, tie_output=False, d_kv=16))
    src, tgt = _ids(2, 6), _ids(2, 5)
    model(src, tgt).logsumexp(-1).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 1e-4, name


def test_t5_style_round_trips_through_save_and_load(tmp_path):
    model = _model(**T5_STYLE, d_kv=16)
    model.save_pretrained(tmp_path)
    loaded = Transformer.from_pretrained(tmp_path).eval()
    assert loaded.cfg == model.cfg
    src, tgt = _ids(2, 6), _ids(2, 5)
    torch.testing.assert_close(loaded(src, tgt), model(src, tgt))


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"norm_type": "batch"}, "norm_type must be one of"),
        ({"relative_buckets": 2}, "relative_buckets must be >= 4"),
        ({"relative_buckets": 32, "relative_max_distance": 16}, "relative_max_distance .* must exceed"),
        ({"d_kv": 0}, "d_kv must be positive"),
        ({"final_dropout": True}, "final_dropout needs norm: pre"),
        ({"positional": "rotary"}, "positional must be one of"),
    ],
)
def test_t5_fields_are_validated_in_one_line(kw, match):
    from tformer import ConfigError

    with pytest.raises(ConfigError, match=match) as e:
        TransformerConfig.tiny(**kw)
    assert "\n" not in str(e.value)


def test_d_kv_lifts_the_divisibility_rule():
    cfg = TransformerConfig.tiny(d_model=30, num_heads=4, d_kv=8, positional="relative")
    assert cfg.d_head == 8
    assert _model(d_model=30, num_heads=4, d_kv=8, positional="relative")(_ids(1, 4), _ids(1, 3)).shape == (1, 3, 64)
