"""Encoder-decoder folders -> translation runs (:class:`~tformer.translator.Translator`: ``tformer translate``,
``evaluate``, ``serve``, ``plot``, ``export``, and ``train`` with ``model.init_from``).

* ``marian`` (``MarianMTModel``, OPUS-MT): Marian's SentencePiece files (``source.spm``, ``target.spm``,
  ``vocab.json``), with their own ids (``</s>`` = 0, ``<unk>`` = 1, ``<pad>`` last, decoding from ``<pad>``).
* ``t5`` (``T5ForConditionalGeneration``, v1.0's ungated FFN): the fast tokenizer's ``tokenizer.json`` (unigram;
  ``<pad>`` = 0, the decoder's start, ``</s>`` = 1, ``<unk>`` = 2), one vocabulary for both sides. A source is
  read as ``T5Tokenizer`` reads it (its ids, then ``</s>``), task prefix and all (``translate English to German:
  ...``: the prefix is part of the text).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tformer.config import ConfigError
from tformer.data.vocabularies import Vocabularies
from tformer.errors import TformerError
from tformer.interop.folders.base import (
    check_architecture,
    check_ids,
    folder_tokenizer,
    load_hf_model,
    transformers_module,
)
from tformer.interop.marian import from_hf_marian
from tformer.interop.t5 import config_from_t5, from_hf_t5
from tformer.models.transformer.model import Transformer
from tformer.translator import Translator

__all__ = ["load_marian", "load_t5"]


def _check(folder: Path, model: Transformer, vocabs: Vocabularies) -> None:
    """Each side's tokenizer fits its vocabulary, with the model's pad and EOS ids."""
    cfg = model.cfg
    for side, tok, size in (("source ", vocabs.src, cfg.vocab_size), ("target ", vocabs.tgt, cfg.target_vocab_size)):
        check_ids(folder, tok, size, {"pad": cfg.pad_id, "eos": cfg.eos_id}, "" if vocabs.shared else side)


def load_marian(folder: Path, config: dict[str, Any]) -> Translator:
    """A MarianMTModel (OPUS-MT) and its SentencePiece tokenizer (``source.spm``, ``target.spm``, ``vocab.json``)."""
    check_architecture(folder, config, ("MarianMTModel",))
    vocabs = Vocabularies.load(folder)
    model = from_hf_marian(load_hf_model(folder, "MarianMTModel"))
    _check(folder, model, vocabs)
    return Translator(model, vocabs)


def load_t5(folder: Path, config: dict[str, Any]) -> Translator:
    """A T5ForConditionalGeneration (or T5Model: the same weights) and its ``tokenizer.json``, shared by both sides."""
    check_architecture(folder, config, ("T5ForConditionalGeneration", "T5Model"),
                       "; an encoder alone (T5EncoderModel) does not translate")
    tokenizer = folder_tokenizer(folder)
    try:
        config_from_t5(transformers_module().T5Config.from_pretrained(folder))  # a gated FFN: before the weights
        model = from_hf_t5(load_hf_model(folder, "T5ForConditionalGeneration"))
    except ConfigError as e:  # T5 v1.1, Flan-T5 (gated FFN); a tensor that does not fit
        raise TformerError(f"{folder}: {e}") from None
    vocabs = Vocabularies(tokenizer, tokenizer)
    _check(folder, model, vocabs)
    return Translator(model, vocabs)
