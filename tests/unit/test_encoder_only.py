"""Properties of the BERT-style encoder-only model and its heads: no padding leaks, masks, pooling, save/load.

The outside oracle (Hugging Face's BertModel with the same weights, and the real all-MiniLM-L6-v2) is in
test_interop_bert.py.
"""

import dataclasses
import json

import pytest
import torch

from tformer.config import ConfigError
from tformer.errors import TformerError
from tformer.models.bert import (
    ClassifierConfig,
    EncoderOnly,
    EncoderOnlyConfig,
    EncoderOnlyForClassification,
    EncoderOnlyForMaskedLM,
    encode_sentences,
    mean_pool,
    sentence_embeddings,
)

PAD = 0


def _cfg(**kw) -> EncoderOnlyConfig:
    return EncoderOnlyConfig.tiny(**kw)


def _randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Random values everywhere (LayerNorms and biases included), so that no parameter is inert."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model.eval()


def _batch():
    ids = torch.randint(1, 64, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, 6:], mask[1, 8:] = 0, 0
    ids[mask == 0] = PAD
    return ids, mask


# ---- configuration ---------------------------------------------------------------------------------
def test_config_is_frozen_and_round_trips():
    cfg = EncoderOnlyConfig.minilm_l6()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.d_model = 8
    assert EncoderOnlyConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.replace(num_layers=3).num_layers == 3 and cfg.d_head == 32


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"d_model": 30}, "divisible by num_heads"),
        ({"vocab_size": 0}, "vocab_size must be positive"),
        ({"num_layers": 0}, "num_layers must be >= 1"),
        ({"type_vocab_size": -1}, "type_vocab_size must be >= 0"),
        ({"activation": "tanh"}, "activation must be one of"),
        ({"norm": "sandwich"}, "norm must be one of"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"attention_dropout": -0.1}, r"attention_dropout must be in \[0, 1\)"),
        ({"pad_id": 64}, "pad_id=64 is outside the vocabulary"),
        ({"layer_norm_eps": 0.0}, "layer_norm_eps must be positive"),
        ({"init_std": 0.0}, "init_std must be positive"),
    ],
)
def test_invalid_config_values_are_one_line_errors(kw, match):
    with pytest.raises(ConfigError, match=match) as e:
        _cfg(**kw)
    assert "\n" not in str(e.value)


def test_from_dict_and_replace_reject_unknown_keys_and_wrong_types():
    with pytest.raises(ConfigError, match="unknown key.*num_encoder_layers") as e:
        EncoderOnlyConfig.from_dict({"vocab_size": 10, "num_encoder_layers": 2})
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="d_model must be an integer"):
        EncoderOnlyConfig.from_dict({"vocab_size": 10, "d_model": "big"})
    with pytest.raises(ConfigError, match="divisible"):
        _cfg().replace(num_heads=5)


@pytest.mark.parametrize(
    "kw, match",
    [({"num_classes": 0}, "num_classes must be >= 1"), ({"num_classes": 2, "pooling": "max"}, "pooling must be"),
     ({"num_classes": 2, "dropout": 1.5}, "classifier dropout")],
)
def test_invalid_classifier_config_is_a_one_line_error(kw, match):
    with pytest.raises(ConfigError, match=match) as e:
        ClassifierConfig(**kw)
    assert "\n" not in str(e.value)


def test_presets_have_the_published_sizes():
    # all-MiniLM-L6-v2: 22,713,216 parameters, less its pooler's 384 * 384 + 384 = 147,840.
    assert EncoderOnly(EncoderOnlyConfig.minilm_l6()).num_parameters() == 22_713_216 - 147_840
    assert EncoderOnlyConfig.bert_base().d_model == 768 and EncoderOnlyConfig.bert_tiny().num_layers == 2


# ---- the encoder -----------------------------------------------------------------------------------
@pytest.mark.parametrize("norm", ["post", "pre"])
def test_padding_never_leaks(norm):
    model = _randomize(EncoderOnly(_cfg(norm=norm)))
    ids, mask = _batch()
    out = model(ids, mask)
    assert out.shape == (3, 9, 32)
    # Whatever sits under the pads, the real positions do not see it...
    garbage = ids.clone()
    garbage[mask == 0] = torch.randint(1, 64, (int((mask == 0).sum()),))
    torch.testing.assert_close(model(garbage, mask)[mask == 1], out[mask == 1], atol=1e-5, rtol=1e-5)
    # ...nor how many pads there are: each sentence alone gives the same states.
    for i in range(3):
        n = int(mask[i].sum())
        alone = model(ids[i : i + 1, :n])
        torch.testing.assert_close(alone[0], out[i, :n], atol=1e-5, rtol=1e-5)
    # ...while a real token does matter (the test can fail).
    changed = ids.clone()
    changed[0, 2] = changed[0, 2] % 63 + 1
    assert not torch.allclose(model(changed, mask)[0, :6], out[0, :6])


def test_mask_forms_agree_and_none_attends_to_every_position():
    model = _randomize(EncoderOnly(_cfg()))
    ids, mask = _batch()
    out = model(ids, mask)
    torch.testing.assert_close(model(ids, mask.bool()), out)
    torch.testing.assert_close(model(ids, mask.float()), out)
    # None = every position is real, pads included (as transformers.BertModel)
    torch.testing.assert_close(model(ids, None), model(ids, torch.ones_like(ids)))
    assert not torch.allclose(model(ids, None)[0, :6], out[0, :6])


def test_attention_weights_when_asked():
    model = _randomize(EncoderOnly(_cfg()))
    ids, mask = _batch()
    out, weights = model(ids, mask, need_weights=True)
    torch.testing.assert_close(out, model(ids, mask), atol=1e-5, rtol=1e-5)  # reference path = fused path
    assert len(weights) == 2 and weights[0].shape == (3, 4, 9, 9)
    torch.testing.assert_close(weights[1].sum(-1), torch.ones(3, 4, 9))
    assert torch.all(weights[0][0, :, :, 6:] == 0) and torch.all(weights[0][1, :, :, 8:] == 0)


def test_token_types():
    model = _randomize(EncoderOnly(_cfg(type_vocab_size=2)))
    ids, mask = _batch()
    types = torch.zeros_like(ids)
    torch.testing.assert_close(model(ids, mask, types), model(ids, mask))  # None = type 0
    types[:, 4:] = 1
    assert not torch.allclose(model(ids, mask, types), model(ids, mask))
    with pytest.raises(TformerError, match=r"token_type_ids must lie in \[0, 2\)"):
        model(ids, mask, types + 1)
    no_types = EncoderOnly(_cfg(type_vocab_size=0)).eval()
    assert no_types.embeddings.token_types is None
    with pytest.raises(TformerError, match="no token types"):
        no_types(ids, mask, types)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda m: m(torch.full((1, 65), 5)), "exceeds the model's max_len 64"),
        (lambda m: m(torch.tensor([[3, 64]])), r"input_ids must lie in \[0, 64\)"),
        (lambda m: m(torch.tensor([[3, 4]]), torch.ones(1, 3)), "attention_mask has shape"),
        (lambda m: m(torch.tensor([3, 4])), "input_ids must be"),
    ],
)
def test_bad_inputs_are_one_line_errors(call, match):
    with pytest.raises(TformerError, match=match) as e:
        call(EncoderOnly(_cfg()).eval())
    assert "\n" not in str(e.value)


def test_a_row_with_no_real_token_stays_finite():
    model = EncoderOnly(_cfg()).eval()
    ids, mask = _batch()
    mask[2] = 0
    assert torch.isfinite(model(ids, mask)).all()
    assert torch.isfinite(sentence_embeddings(model, ids, mask, normalize=False)).all()


# ---- heads -----------------------------------------------------------------------------------------
def test_masked_lm_head_ties_the_embeddings_and_trains_every_parameter():
    model = EncoderOnlyForMaskedLM(_cfg(norm="pre"))
    assert model.head.output.weight is model.encoder.embeddings.tokens.weight
    ids, mask = _batch()
    logits = model(ids, mask)
    assert logits.shape == (3, 9, 64)
    torch.nn.functional.cross_entropy(logits[mask == 1], ids[mask == 1]).backward()
    # token_types' rows for type 1 are never used when every token is type 0: they alone may have no gradient
    unused = {"encoder.embeddings.token_types.weight"}
    for name, p in model.named_parameters():
        assert name in unused or (p.grad is not None and p.grad.abs().sum() > 0), name


@pytest.mark.parametrize("pooling", ["cls", "mean", "pooler"])
def test_classifier_logits_and_padding(pooling):
    model = _randomize(EncoderOnlyForClassification(_cfg(), 3, pooling=pooling))
    assert (model.head.pooler is not None) == (pooling == "pooler")
    ids, mask = _batch()
    logits = model(ids, mask)
    assert logits.shape == (3, 3)
    garbage = ids.clone()
    garbage[mask == 0] = 7
    torch.testing.assert_close(model(garbage, mask), logits, atol=1e-5, rtol=1e-5)
    logits_w, weights = model(ids, mask, need_weights=True)
    torch.testing.assert_close(logits_w, logits, atol=1e-5, rtol=1e-5)
    assert len(weights) == 2


def test_classifier_on_a_pretrained_encoder_shares_it():
    encoder = EncoderOnly(_cfg())
    model = EncoderOnlyForClassification(encoder, 2, pooling="mean", dropout=0.0)
    assert model.encoder is encoder and model.head_cfg == ClassifierConfig(2, "mean", 0.0)
    assert EncoderOnlyForClassification(encoder, 2).head_cfg.dropout == encoder.cfg.dropout  # None = encoder's


def test_mean_pool_is_the_mean_over_real_tokens():
    hidden = torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    pooled = mean_pool(hidden, mask)
    torch.testing.assert_close(pooled[0], hidden[0, :2].mean(0))
    torch.testing.assert_close(pooled[1], hidden[1].mean(0))
    torch.testing.assert_close(mean_pool(hidden), hidden.mean(1))


def test_sentence_embeddings_are_unit_vectors_independent_of_padding():
    model = _randomize(EncoderOnly(_cfg()))
    ids, mask = _batch()
    emb = sentence_embeddings(model, ids, mask)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    alone = sentence_embeddings(model, ids[:1, :6], None)
    torch.testing.assert_close(alone[0], emb[0], atol=1e-5, rtol=1e-5)
    clf = EncoderOnlyForClassification(model, 2)
    torch.testing.assert_close(sentence_embeddings(clf, ids, mask), emb)  # the encoder of a head model


def test_encode_sentences_with_a_tokenizer_does_not_depend_on_batching():
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    words = "[PAD] [UNK] a dog cat runs sleeps the on mat and".split()
    tok = tokenizers.Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    tok.enable_padding(pad_id=0, pad_token="[PAD]", length=12)  # fixed padding, as all-MiniLM-L6-v2's file has
    model = _randomize(EncoderOnly(_cfg(vocab_size=len(words), type_vocab_size=2)))
    model.train()
    sentences = ["a dog runs", "the cat sleeps on the mat", "a cat and a dog", "dog"]
    together = encode_sentences(model, tok, sentences, batch_size=4)
    one_by_one = encode_sentences(model, tok, sentences, batch_size=1)
    assert model.training  # the mode is restored
    assert together.shape == (4, 32)
    torch.testing.assert_close(together, one_by_one, atol=1e-5, rtol=1e-5)
    with pytest.raises(TformerError, match="list of sentences"):
        encode_sentences(model, tok, "a dog")


# ---- save / load -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "build",
    [lambda: EncoderOnly(_cfg(norm="pre")), lambda: EncoderOnlyForMaskedLM(_cfg()),
     lambda: EncoderOnlyForClassification(_cfg(type_vocab_size=0), 5, pooling="pooler")],
)
def test_save_load_round_trip(tmp_path, build):
    model = _randomize(build())
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = type(model).from_pretrained(tmp_path).eval()
    ids, mask = _batch()
    assert torch.equal(loaded(ids, mask), model(ids, mask))
    if isinstance(loaded, EncoderOnlyForMaskedLM):
        assert loaded.head.output.weight is loaded.encoder.embeddings.tokens.weight


def test_the_encoder_of_a_head_model_loads_alone_but_heads_do_not_mix(tmp_path):
    mlm = _randomize(EncoderOnlyForMaskedLM(_cfg()))
    mlm.save_pretrained(tmp_path)
    encoder = EncoderOnly.from_pretrained(tmp_path).eval()
    ids, mask = _batch()
    assert torch.equal(encoder(ids, mask), mlm.encoder(ids, mask))
    with pytest.raises(ConfigError, match="holds an EncoderOnlyForMaskedLM, not an EncoderOnlyForClassification"):
        EncoderOnlyForClassification.from_pretrained(tmp_path)


def test_mismatched_weights_name_the_first_tensor_in_one_line(tmp_path):
    EncoderOnly(_cfg()).save_pretrained(tmp_path)
    doc = json.loads((tmp_path / "config.json").read_text())
    assert doc["architecture"] == "EncoderOnly"
    doc["d_ff"] = 48
    (tmp_path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"^layers\.0\.ffn\.w_1\.weight: shape \(64, 32\) in .*model\.safetensors, "
                                          r"\(48, 32\) expected$") as e:
        EncoderOnly.from_pretrained(tmp_path)
    assert "\n" not in str(e.value)
    doc["d_ff"], doc["num_layers"] = 64, 3
    (tmp_path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"model\.safetensors: no tensor layers\.2\.self_attn\.q_proj\.weight$"):
        EncoderOnly.from_pretrained(tmp_path)
    doc["num_layers"] = 1
    (tmp_path / "config.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=r"unexpected tensor layers\.1\.ffn\.w_1\.bias \(and 15 more\)$"):
        EncoderOnly.from_pretrained(tmp_path)


def test_bad_folders_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        EncoderOnly.from_pretrained(tmp_path)
    EncoderOnly(_cfg()).save_pretrained(tmp_path)
    w = tmp_path / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(ConfigError, match="cannot load .*model.safetensors") as e:
        EncoderOnly.from_pretrained(tmp_path)
    assert "\n" not in str(e.value)
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "GPT", "encoder": {}}))
    with pytest.raises(ConfigError, match=r"holds a GPT, not an EncoderOnly$"):
        EncoderOnly.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "EncoderOnly", "encoder": {"vocab_size": 0}}))
    with pytest.raises(ConfigError, match=r"config.json: encoder: vocab_size must be positive"):
        EncoderOnly.from_pretrained(tmp_path)
