"""Decoder-only folders -> language-model runs (``task: lm``: ``tformer generate``, ``tformer serve``).

* ``gpt2`` (``GPT2LMHeadModel``): the fast tokenizer's ``tokenizer.json`` (byte-level BPE), whose one
  ``<|endoftext|>`` starts and ends text and stands for an unknown token; the model has no padding id (a
  ``pad_token_id`` equal to it means none). The run reads a prompt as ``<|endoftext|>`` + the prompt's ids (a
  document's start, as GPT-2 read its training text) and stops a continuation at the next ``<|endoftext|>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tformer.config import ConfigError
from tformer.errors import TformerError
from tformer.interop.folders.base import (
    TOKENIZER_FILE,
    TaskRun,
    check_architecture,
    check_ids,
    folder_tokenizer,
    load_hf_model,
    transformers_module,
)
from tformer.interop.gpt2 import config_from_gpt2, from_hf_gpt2

__all__ = ["load_gpt2"]

# what the model's config.json holds that the tokenizer decides (tformer train's lm model section leaves them out)
_FROM_TOKENIZER = ("vocab_size", "pad_id", "bos_id", "eos_id")


def load_gpt2(folder: Path, config: dict[str, Any]) -> TaskRun:
    """A GPT2LMHeadModel (or GPT2Model, whose output layer is its embedding matrix) and its ``tokenizer.json``."""
    check_architecture(folder, config, ("GPT2LMHeadModel", "GPT2Model"))
    tokenizer = folder_tokenizer(folder)
    try:
        config_from_gpt2(transformers_module().GPT2Config.from_pretrained(folder))  # a variant: before the weights
        model = from_hf_gpt2(load_hf_model(folder, "GPT2LMHeadModel"))
    except ConfigError as e:  # cross-attention, another attention scaling or activation
        raise TformerError(f"{folder}: {e}") from None
    cfg = model.cfg
    check_ids(folder, tokenizer, cfg.vocab_size, {"pad": cfg.pad_id, "bos": cfg.bos_id, "eos": cfg.eos_id})
    section = {k: v for k, v in cfg.to_dict().items() if k not in _FROM_TOKENIZER}
    return TaskRun("lm", model, {TOKENIZER_FILE: tokenizer.to_json()}, section, max_len=cfg.max_len)
