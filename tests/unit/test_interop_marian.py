"""The outside oracle for the whole stack: Hugging Face's MarianMTModel with the same weights."""

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import MarianConfig, MarianMTModel  # noqa: E402

from tformer.interop import from_hf_marian  # noqa: E402

V = 60
PAD = V - 1


def _marian(**kw) -> MarianMTModel:
    base = dict(vocab_size=V, decoder_vocab_size=V, d_model=32, encoder_layers=2, decoder_layers=3,
                encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
                max_position_embeddings=64, pad_token_id=PAD, eos_token_id=0, decoder_start_token_id=PAD,
                forced_eos_token_id=None, dropout=0.1)
    model = MarianMTModel(MarianConfig(**{**base, **kw})).eval()
    with torch.no_grad():  # random values everywhere, so that a wrongly mapped LayerNorm or bias shows
        for name, p in model.named_parameters():
            if "embed_positions" not in name:
                p.normal_(0.0, 0.15)
        model.final_logits_bias.normal_(0.0, 1.0)
    return model


def _batch():
    src = torch.randint(1, PAD, (3, 9))
    src[0, 6:], src[1, 8:] = PAD, PAD  # padded rows
    labels = torch.randint(1, PAD, (3, 7))
    labels[2, 5:] = PAD
    tgt_in = torch.cat([torch.full((3, 1), PAD), labels[:, :-1]], dim=1)  # Marian starts decoding from pad
    return src, labels, tgt_in


@pytest.mark.parametrize(
    "kw",
    [
        {"activation_function": "swish", "scale_embedding": True},
        {"activation_function": "relu", "scale_embedding": False},
        {"activation_function": "gelu", "share_encoder_decoder_embeddings": False, "decoder_vocab_size": 75},
        {"tie_word_embeddings": False, "scale_embedding": True},
    ],
)
def test_same_weights_same_logits_with_padded_batches(kw):
    hf = _marian(**kw)
    ours = from_hf_marian(hf).eval()
    src, labels, tgt_in = _batch()
    if not hf.config.share_encoder_decoder_embeddings:  # target ids from the whole target vocabulary
        assert ours.cfg.target_vocab_size == 75 and not ours.cfg.share_embeddings
        labels[:, :5] = torch.randint(60, 75, (3, 5))
        tgt_in[:, 1:] = labels[:, :-1]
    with torch.no_grad():
        ref = hf(input_ids=src, attention_mask=(src != PAD).long(), decoder_input_ids=tgt_in).logits
        out = ours(src, tgt_in)
    real = torch.ones_like(labels, dtype=torch.bool)
    real[2, 5:] = False  # compare the positions that are not padding
    torch.testing.assert_close(out[real], ref[real], atol=1e-4, rtol=1e-4)


def test_greedy_generation_matches_transformers_generate():
    hf = _marian(scale_embedding=True, activation_function="swish")
    ours = from_hf_marian(hf).eval()
    src, _, _ = _batch()
    with torch.no_grad():
        # Real Marian checkpoints forbid generating pad (their decoder start token): bad_words_ids=[[pad]].
        ref = hf.generate(src, attention_mask=(src != PAD).long(), num_beams=1, do_sample=False, max_new_tokens=10,
                          bad_words_ids=[[PAD]],
                          min_new_tokens=0)
    out = ours.generate(src, beam_size=1, max_len=10)
    ref = ref[:, 1:]  # drop the decoder start token
    width = max(ref.shape[1], out.shape[1])
    pad = lambda x: torch.nn.functional.pad(x, (0, width - x.shape[1]), value=PAD)  # noqa: E731
    assert torch.equal(pad(out), pad(ref))
