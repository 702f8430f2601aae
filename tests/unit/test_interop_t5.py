"""The outside oracle for the T5 configuration: Hugging Face's T5ForConditionalGeneration with the same weights."""

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")
from transformers import T5Config, T5ForConditionalGeneration  # noqa: E402
from transformers.models.t5.modeling_t5 import T5Attention  # noqa: E402

from tformer.config import ConfigError  # noqa: E402
from tformer.interop.t5 import config_from_t5, from_hf_t5  # noqa: E402
from tformer.nn.positional import relative_position_bucket  # noqa: E402

V, PAD, EOS = 50, 0, 1


def _t5(untie_lm_head: bool = False, untie_decoder_embeddings: bool = False, **kw) -> T5ForConditionalGeneration:
    base = dict(vocab_size=V, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
                relative_attention_max_distance=20, dropout_rate=0.0, feed_forward_proj="relu",
                decoder_start_token_id=PAD, pad_token_id=PAD, eos_token_id=EOS)
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(**{**base, **kw}))
    d = model.config.d_model
    if untie_lm_head:
        model.lm_head.weight = nn.Parameter(torch.empty(V, d))
    if untie_decoder_embeddings:
        model.decoder.embed_tokens = nn.Embedding(V, d)
    with torch.no_grad():  # random values everywhere, so that a wrongly mapped norm or bias table shows
        for name, p in model.named_parameters():
            if name.endswith("layer_norm.weight"):
                p.uniform_(0.5, 1.5)
            elif "relative_attention_bias" in name:
                p.normal_(0.0, 1.0)
            else:
                p.normal_(0.0, 0.3)
    return model.eval()


def _batch():
    g = torch.Generator().manual_seed(1)
    src = torch.randint(2, V, (3, 11), generator=g)
    src[0, 7:], src[1, 10:] = PAD, PAD  # padded rows
    tgt_in = torch.cat([torch.full((3, 1), PAD), torch.randint(2, V, (3, 8), generator=g)], dim=1)  # starts at pad
    return src, tgt_in


CASES = {
    "tied": {},  # one matrix three ways, decoder output * d_model^-0.5
    "untied-lm-head": dict(tie_word_embeddings=False, untie_lm_head=True),  # no output scaling
    "tied-unscaled": dict(tie_word_embeddings=False),  # transformers 5 keeps the matrix tied, without the scaling
    "untied-all": dict(untie_lm_head=True, untie_decoder_embeddings=True, num_decoder_layers=3),
    "wide-heads-gelu": dict(d_model=48, d_kv=16, num_heads=4, d_ff=96, relative_attention_num_buckets=32,
                            relative_attention_max_distance=128, feed_forward_proj="gelu_new"),  # 4 * 16 != 48
}


@pytest.mark.parametrize("case", CASES)
def test_same_weights_same_logits_with_padded_sources(case):
    hf = _t5(**CASES[case])
    ours = from_hf_t5(hf).eval()
    src, tgt_in = _batch()
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=(src != PAD).long(), decoder_input_ids=tgt_in).logits
        out = ours(src, tgt_in)
    assert out.shape == ref.shape == (3, 9, V)
    assert ref.abs().max() > 0.5  # the comparison is not between near-zero numbers
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_what_the_mapping_reads_from_the_tensors():
    cfg = from_hf_t5(_t5()).cfg
    assert (cfg.positional, cfg.norm, cfg.norm_type, cfg.bias, cfg.scale_attention) == ("relative", "pre", "rms",
                                                                                          False, False)
    assert cfg.share_embeddings and cfg.tie_output and cfg.scale_output and cfg.bos_id == PAD
    cfg = from_hf_t5(_t5(**CASES["untied-all"])).cfg
    assert not cfg.share_embeddings and not cfg.tie_output and cfg.scale_output and cfg.num_decoder_layers == 3
    cfg = from_hf_t5(_t5(**CASES["untied-lm-head"])).cfg
    assert cfg.share_embeddings and not cfg.tie_output and not cfg.scale_output
    assert from_hf_t5(_t5(**CASES["wide-heads-gelu"])).cfg.d_head == 16


def test_encoder_output_equals_the_hf_encoder():
    hf = _t5(**CASES["wide-heads-gelu"])
    ours = from_hf_t5(hf).eval()
    src, _ = _batch()
    real = src != PAD
    with torch.no_grad():
        ref = hf.encoder(input_ids=src, attention_mask=real.long()).last_hidden_state
        out = ours.encode(src)
    torch.testing.assert_close(out[real], ref[real], atol=1e-5, rtol=1e-5)


def _uncached_greedy(model, src, steps: int) -> torch.Tensor:
    """Argmax decoding that recomputes the whole target at every step (no cache); pad after EOS."""
    tgt = torch.full((src.shape[0], 1), model.cfg.bos_id)
    for _ in range(steps):
        logits = model(src, tgt)[:, -1]
        logits[:, model.cfg.pad_id] = float("-inf")  # as generate: pad (T5's start token) is never emitted
        tgt = torch.cat([tgt, logits.argmax(-1, keepdim=True)], dim=1)
    out = tgt[:, 1:]
    is_eos = (out == model.cfg.eos_id).long()
    out[is_eos.cumsum(1) - is_eos > 0] = model.cfg.pad_id  # everything after the first EOS
    return out


def _pad_to(x: torch.Tensor, width: int) -> torch.Tensor:
    return nn.functional.pad(x, (0, width - x.shape[1]), value=PAD)


@pytest.mark.parametrize("case", ["tied", "untied-lm-head"])
def test_cached_greedy_equals_recomputation_and_hf_generate(case):
    hf = _t5(**CASES[case])
    ends_early = case == "untied-lm-head"
    if ends_early:
        with torch.no_grad():  # EOS likely enough that some rows end early and leave the batch
            hf.lm_head.weight[EOS] *= 2.5
    ours = from_hf_t5(hf).eval()
    src, _ = _batch()
    steps = 12
    out = ours.generate(src, beam_size=1, max_len=steps)
    with torch.no_grad():
        full = _uncached_greedy(ours, src, steps)
        ref = hf.generate(src, attention_mask=(src != PAD).long(), num_beams=1, do_sample=False,
                          max_new_tokens=steps, min_new_tokens=0, bad_words_ids=[[PAD]])[:, 1:]  # drop the start
    width = max(out.shape[1], full.shape[1], ref.shape[1])
    assert torch.equal(_pad_to(out, width), _pad_to(full, width))
    assert torch.equal(_pad_to(out, width), _pad_to(ref, width))
    if ends_early:  # some rows end early, others go on
        assert (out == EOS).any(dim=1).sum() >= 1 and (out[:, 1:] != PAD).any()


@pytest.mark.parametrize("buckets,max_distance", [(8, 20), (32, 128), (16, 50), (4, 3), (9, 40)])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_relative_bucket_equals_hf(buckets, max_distance, bidirectional):
    rel = torch.arange(-300, 301)[:, None] + torch.arange(0, 3)[None, :]  # (601, 3), every distance in [-300, 302]
    ours = relative_position_bucket(rel, bidirectional=bidirectional, num_buckets=buckets, max_distance=max_distance)
    ref = T5Attention._relative_position_bucket(rel, bidirectional=bidirectional, num_buckets=buckets,
                                                max_distance=max_distance)
    assert torch.equal(ours, ref)
    assert 0 <= int(ours.min()) and int(ours.max()) < buckets


def _one_line_error(hf, match: str) -> str:
    with pytest.raises(ConfigError, match=match) as e:
        from_hf_t5(hf)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_mismatching_weights_fail_in_one_line_naming_the_first_tensor():
    hf = _t5()
    hf.encoder.block[1].layer[0].SelfAttention.k.weight = nn.Parameter(torch.zeros(16, 32))
    hf.decoder.block[1].layer[2].DenseReluDense.wo.weight = nn.Parameter(torch.zeros(32, 8))
    msg = _one_line_error(hf, r"encoder\.block\.1\.layer\.0\.SelfAttention\.k\.weight")
    assert "(16, 32)" in msg and "(32, 32)" in msg and "decoder" not in msg

    hf = _t5()
    del hf.decoder.final_layer_norm
    _one_line_error(hf, r"no decoder\.final_layer_norm\.weight")

    hf = _t5()  # a tensor tformer has no place for: a bias
    hf.decoder.block[0].layer[1].EncDecAttention.q.bias = nn.Parameter(torch.zeros(32))
    _one_line_error(hf, r"decoder\.block\.0\.layer\.1\.EncDecAttention\.q\.bias has no counterpart")


def test_gated_t5_is_refused_in_one_line():
    cfg = T5Config(vocab_size=V, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4, feed_forward_proj="gated-gelu")
    with pytest.raises(ConfigError, match="gated") as e:
        config_from_t5(cfg)
    assert "\n" not in str(e.value)
