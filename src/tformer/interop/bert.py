"""Hugging Face BERT -> tformer's encoder-only model: the same weights give the same hidden states.

Two ways in:

* :func:`from_hf_bert` copies a ``transformers`` ``BertModel``, ``BertForMaskedLM`` (or ``BertForPreTraining``)
  or ``BertForSequenceClassification`` object that the caller built or loaded;
* :func:`load_bert_folder` reads a BERT folder (``config.json`` + ``model.safetensors`` [+ ``tokenizer.json``])
  without ``transformers``, e.g. sentence-transformers' all-MiniLM-L6-v2.

``transformers`` is never imported by this module. Parameter names, BERT -> tformer (layer i):

    embeddings.word_embeddings / position_embeddings / token_type_embeddings / LayerNorm
                                          -> embeddings.tokens / positions / token_types / norm
    encoder.layer.i.attention.self.query / key / value   -> layers.i.self_attn.q_proj / k_proj / v_proj
    encoder.layer.i.attention.output.dense / LayerNorm   -> layers.i.self_attn.out_proj / self_attn_residual.norm
    encoder.layer.i.intermediate.dense                   -> layers.i.ffn.w_1
    encoder.layer.i.output.dense / LayerNorm             -> layers.i.ffn.w_2 / ffn_residual.norm
    cls.predictions.transform.dense / LayerNorm, .bias   -> head.dense / head.norm, head.output.bias
    pooler.dense, classifier                             -> head.pooler, head.proj

Old checkpoints' ``LayerNorm.gamma`` / ``LayerNorm.beta`` are read as ``weight`` / ``bias``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tformer.config import ConfigError, check, from_dict
from tformer.errors import first_line
from tformer.io.pretrained import CONFIG_NAME, WEIGHTS_NAME, read_json, read_safetensors
from tformer.models.bert import EncoderOnly, EncoderOnlyConfig, EncoderOnlyForClassification, EncoderOnlyForMaskedLM

# BERT's hidden_act -> tformer's activation ("gelu" is the exact erf form in both).
_ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
                "gelu_fast": "gelu_tanh", "silu": "silu", "swish": "silu"}
HEADS = ("masked_lm", "classification")
_SUPPORTED = {"BertModel": "encoder", "BertForMaskedLM": "masked_lm", "BertForPreTraining": "masked_lm",
              "BertForSequenceClassification": "classification"}

_LAYER = {
    "attention.self.query": "self_attn.q_proj",
    "attention.self.key": "self_attn.k_proj",
    "attention.self.value": "self_attn.v_proj",
    "attention.output.dense": "self_attn.out_proj",
    "attention.output.LayerNorm": "self_attn_residual.norm",
    "intermediate.dense": "ffn.w_1",
    "output.dense": "ffn.w_2",
    "output.LayerNorm": "ffn_residual.norm",
}
_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")  # HF buffers, not weights


def config_from_bert(hf_config: Any) -> EncoderOnlyConfig:
    """The :class:`EncoderOnlyConfig` of a BERT config: a ``transformers.BertConfig`` or its ``config.json`` dict.

    Raises:
        ConfigError: a BERT variant tformer does not build (relative positions, a decoder, ...), in one line.
    """
    c = hf_config if isinstance(hf_config, dict) else hf_config.to_dict()
    check(c.get("model_type", "bert") == "bert", f"model_type {c.get('model_type')!r} is not BERT (supported: 'bert')")
    pos = c.get("position_embedding_type", "absolute")
    check(pos == "absolute", f"position_embedding_type {pos!r} is not supported (only 'absolute')")
    check(not c.get("is_decoder") and not c.get("add_cross_attention"), "BERT as a decoder is not supported")
    act = c.get("hidden_act", "gelu")
    check(isinstance(act, str) and act in _ACTIVATIONS,
           f"unsupported BERT hidden_act {act!r} (supported: {sorted(_ACTIVATIONS)})")
    required = ("vocab_size", "hidden_size", "num_attention_heads", "intermediate_size", "num_hidden_layers")
    missing = [k for k in required if k not in c]
    check(not missing, f"BERT config lacks {', '.join(missing)}")
    pad = c.get("pad_token_id")
    return from_dict(EncoderOnlyConfig, dict(  # from_dict: a wrongly typed value is a one-line error too
        vocab_size=c["vocab_size"],
        d_model=c["hidden_size"],
        num_heads=c["num_attention_heads"],
        d_ff=c["intermediate_size"],
        num_layers=c["num_hidden_layers"],
        max_len=c.get("max_position_embeddings", 512),
        type_vocab_size=c.get("type_vocab_size", 2),
        activation=_ACTIVATIONS[act],
        norm="post",
        layer_norm_eps=c.get("layer_norm_eps", 1e-12),
        dropout=c.get("hidden_dropout_prob", 0.1),
        attention_dropout=c.get("attention_probs_dropout_prob", 0.1),
        pad_id=0 if pad is None else pad,
        init_std=c.get("initializer_range", 0.02),
    ))


def bert_names(
    model: EncoderOnly | EncoderOnlyForMaskedLM | EncoderOnlyForClassification, prefix: str = ""
) -> list[tuple[str, str]]:
    """(BERT name, tformer name) of every tensor ``model`` needs.

    ``prefix`` ("bert." in the checkpoints of BERT with a head) goes before the encoder's and the pooler's
    names; the heads' own (``cls.*``, ``classifier.*``) never have it.
    """
    encoder = model if isinstance(model, EncoderOnly) else model.encoder
    ours = "" if isinstance(model, EncoderOnly) else "encoder."
    cfg = encoder.cfg
    pairs = [("embeddings.word_embeddings", "embeddings.tokens"), ("embeddings.position_embeddings",
                                                                    "embeddings.positions")]
    if cfg.type_vocab_size:
        pairs.append(("embeddings.token_type_embeddings", "embeddings.token_types"))
    names = [(f"{prefix}{b}.weight", f"{ours}{t}.weight") for b, t in pairs]
    names += [(f"{prefix}embeddings.LayerNorm.{p}", f"{ours}embeddings.norm.{p}") for p in ("weight", "bias")]
    for i in range(cfg.num_layers):
        for b, t in _LAYER.items():
            names += [(f"{prefix}encoder.layer.{i}.{b}.{p}", f"{ours}layers.{i}.{t}.{p}") for p in ("weight", "bias")]
    if isinstance(model, EncoderOnlyForMaskedLM):  # the output matrix is tied to the token embeddings
        for b, t in (("transform.dense", "dense"), ("transform.LayerNorm", "norm")):
            names += [(f"cls.predictions.{b}.{p}", f"head.{t}.{p}") for p in ("weight", "bias")]
        names.append(("cls.predictions.bias", "head.output.bias"))
    if isinstance(model, EncoderOnlyForClassification):
        if model.head_cfg.pooling == "pooler":
            names += [(f"{prefix}pooler.dense.{p}", f"head.pooler.{p}") for p in ("weight", "bias")]
        names += [(f"classifier.{p}", f"head.proj.{p}") for p in ("weight", "bias")]
    return names


@torch.no_grad()
def load_bert_state_dict(model, state_dict: dict[str, Tensor], source: str = "the state dict"):
    """Copy a BERT state dict (with or without the ``bert.`` prefix) into a tformer encoder-only model.

    Tensors the model has no place for are ignored outside the encoder (the pooler, NSP head, another
    task's head); inside the encoder (``embeddings.*``, ``encoder.*``) they are an error, as a config that
    does not match its weights.

    Raises:
        ConfigError: one line naming the first missing, mis-shaped or unexpected tensor.

    Returns:
        ``model``, for chaining.
    """
    sd = {k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias"): v
          for k, v in state_dict.items()}
    if "cls.predictions.bias" not in sd and "cls.predictions.decoder.bias" in sd:
        sd["cls.predictions.bias"] = sd["cls.predictions.decoder.bias"]
    prefix = "bert." if any(k.startswith("bert.") for k in sd) else ""
    ours = dict(model.state_dict())
    used = set()
    names = bert_names(model, prefix)
    for name, t in names:
        if name not in sd:
            raise ConfigError(f"{source} has no tensor {name} (needed for tformer's {t})")
        if tuple(sd[name].shape) != tuple(ours[t].shape):
            raise ConfigError(f"{name}: shape {tuple(sd[name].shape)} in {source}, {tuple(ours[t].shape)} expected "
                              f"(tformer's {t})")
        used.add(name)
    inside = (prefix + "embeddings.", prefix + "encoder.")
    extra = sorted(k for k in sd if k.startswith(inside) and k not in used and k[len(prefix):] not in _BUFFERS)
    if extra:
        raise ConfigError(f"{source}: unexpected tensor {extra[0]} (not part of the BERT its config describes)")
    if isinstance(model, EncoderOnlyForMaskedLM) and "cls.predictions.decoder.weight" in sd:
        word = sd[prefix + "embeddings.word_embeddings.weight"]
        check(torch.equal(sd["cls.predictions.decoder.weight"], word),
               f"{source}: cls.predictions.decoder.weight differs from the word embeddings; tformer's masked-LM "
               "head ties them")
    for name, t in names:
        ours[t].copy_(sd[name])
    return model


def from_hf_bert(hf_model) -> EncoderOnly | EncoderOnlyForMaskedLM | EncoderOnlyForClassification:
    """A tformer copy of a ``transformers`` BERT: ``BertModel`` -> :class:`EncoderOnly`; ``BertForMaskedLM``
    (or ``BertForPreTraining``) -> :class:`EncoderOnlyForMaskedLM`; ``BertForSequenceClassification`` ->
    :class:`EncoderOnlyForClassification` (BERT's tanh pooler on [CLS]).

    The copy is in the same train/eval mode and gives the same outputs (to float rounding) for the same,
    possibly padded, inputs.
    """
    kind = next((_SUPPORTED[k.__name__] for k in type(hf_model).__mro__ if k.__name__ in _SUPPORTED), None)
    if kind is None:
        raise ConfigError(f"expected a Hugging Face {', '.join(_SUPPORTED)}, got {type(hf_model).__name__}")
    hf_cfg = hf_model.config
    cfg = config_from_bert(hf_cfg)
    if kind == "masked_lm":
        model = EncoderOnlyForMaskedLM(cfg)
    elif kind == "classification":
        p = getattr(hf_cfg, "classifier_dropout", None)
        model = EncoderOnlyForClassification(cfg, hf_model.classifier.out_features, pooling="pooler",
                                             dropout=cfg.dropout if p is None else float(p))
    else:
        model = EncoderOnly(cfg)
    load_bert_state_dict(model, hf_model.state_dict(), "the Hugging Face model")
    return model.train(hf_model.training)


def load_bert_folder(path: str | os.PathLike, *, head: str | None = None):
    """Read a BERT folder (``config.json`` + ``model.safetensors``) without ``transformers``.

    Args:
        head: None = the encoder alone (:class:`EncoderOnly`, any BERT checkpoint); "masked_lm" =
            :class:`EncoderOnlyForMaskedLM`; "classification" = :class:`EncoderOnlyForClassification`
            (BERT's pooler; the number of classes from ``id2label`` / ``num_labels``).

    Returns:
        (model in eval mode, ``tokenizers.Tokenizer`` from ``tokenizer.json`` or None when the folder has none).

    Raises:
        ConfigError: a missing or corrupt file, or weights that do not match the config, in one line.
    """
    d = Path(path)
    check(d.is_dir(), f"not a folder: {d}")
    check(head is None or head in HEADS, f"head must be None or one of {HEADS}, got {head!r}")
    doc = read_json(d / CONFIG_NAME)
    try:
        cfg = config_from_bert(doc)
    except ConfigError as e:
        raise ConfigError(f"{d / CONFIG_NAME}: {e}") from None
    if head == "masked_lm":
        model = EncoderOnlyForMaskedLM(cfg)
    elif head == "classification":
        labels = doc.get("id2label")
        num = len(labels) if isinstance(labels, dict) and labels else doc.get("num_labels", 2)
        p = doc.get("classifier_dropout")
        check(isinstance(num, int) and (p is None or isinstance(p, (int, float))),
               f"{d / CONFIG_NAME}: bad id2label / num_labels / classifier_dropout")
        model = EncoderOnlyForClassification(cfg, num, pooling="pooler", dropout=cfg.dropout if p is None else p)
    else:
        model = EncoderOnly(cfg)
    weights = d / WEIGHTS_NAME
    if not weights.is_file() and (d / "pytorch_model.bin").is_file():
        raise ConfigError(f"{d} has pytorch_model.bin but no {WEIGHTS_NAME}: only safetensors are read (convert it)")
    load_bert_state_dict(model, read_safetensors(weights), str(weights))
    return model.eval(), _read_tokenizer(d / "tokenizer.json")


def _read_tokenizer(path: Path):
    if not path.is_file():
        return None
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # the tokenizers library raises plain Exception on a bad file
        raise ConfigError(f"cannot load {path}: {first_line(e)}") from None
