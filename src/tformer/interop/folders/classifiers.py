"""Encoder folders -> classifier runs, or a one-line refusal that says what to do instead.

* ``bert`` (``BertForSequenceClassification``): a ``task: classify`` run (``tformer predict``, ``serve``,
  ``export``): the encoder with BERT's pooler and classifier, the folder's ``tokenizer.json`` as it is (WordPiece;
  it adds ``[CLS]`` and ``[SEP]`` itself) and ``labels.json`` (``id2label`` in id order, the ``[PAD]`` id). A text's
  answer is the label of the largest logit (single-label classification; a multi-label or regression head is
  refused). A BERT without a classification head (``BertModel``, ``BertForMaskedLM``) is refused with the way to
  fine-tune it: ``task: classify`` with ``model.init_from: FOLDER``.
* ``vit`` (``ViTForImageClassification``): refused. tformer's vision runs classify scikit-learn's 8 x 8 digits: an
  image is 8 x 8 ink in 0..16 on one channel, repeated up to the model's size, with labels ``0``..``9``. A ViT's
  inputs are its own size, channels and normalization (its image processor's), which such a run cannot hold.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn

from tformer.config import ConfigError
from tformer.errors import TformerError
from tformer.interop.bert import from_hf_bert
from tformer.interop.folders.base import TOKENIZER_FILE, TaskRun, check_ids, folder_tokenizer, load_hf_model

__all__ = ["LABELS_FILE", "load_bert", "refuse_vit"]

LABELS_FILE = "labels.json"  # a classify run's labels, in id order, and its pad id (tformer train's)
_HEADLESS = ("BertModel", "BertForMaskedLM", "BertForPreTraining")


def load_bert(folder: Path, config: dict[str, Any]) -> TaskRun:
    """A BertForSequenceClassification (single-label) and its ``tokenizer.json``, as a classify run."""
    names = config.get("architectures") or []
    if "BertForSequenceClassification" not in names:
        what = (f"{folder}'s config.json names no architecture, so no classification head" if not names else
                f"{folder} holds a {names[0]}, " + ("without a classification head" if names[0] in _HEADLESS else
                                                    "not a text classifier"))
        raise TformerError(f"{what}: tformer imports BertForSequenceClassification; fine-tune this one with task: "
                           f"classify and model.init_from: {folder}")
    problem = config.get("problem_type")
    labels = _labels(folder, config)
    if problem not in (None, "single_label_classification") or len(labels) < 2:
        raise TformerError(f"{folder}: a {problem or 'regression'} head with {len(labels)} output(s); a classify run "
                           "answers the one label of the largest logit (single_label_classification)")
    tokenizer = folder_tokenizer(folder)
    try:
        model = from_hf_bert(load_hf_model(folder, "BertForSequenceClassification")).eval()
    except ConfigError as e:  # relative positions, a decoder, an activation tformer does not build
        raise TformerError(f"{folder}: {e}") from None
    cfg = model.cfg
    check_ids(folder, tokenizer, cfg.vocab_size, {"pad": cfg.pad_id})
    files = {TOKENIZER_FILE: (folder / TOKENIZER_FILE).read_text(encoding="utf-8"),
             LABELS_FILE: json.dumps({"labels": labels, "pad_id": cfg.pad_id}) + "\n"}
    section = {**{k: v for k, v in cfg.to_dict().items() if k not in ("vocab_size", "pad_id")},
               "pooling": model.head_cfg.pooling, "classifier_dropout": model.head_cfg.dropout}
    return TaskRun("classify", model, files, section, max_len=cfg.max_len, settings={"labels": labels})


def _labels(folder: Path, config: dict[str, Any]) -> list[str]:
    """``id2label``'s names in id order (``LABEL_0``, ... for ``num_labels`` alone, as transformers names them)."""
    id2label = config.get("id2label") or {str(i): f"LABEL_{i}" for i in range(int(config.get("num_labels", 2)))}
    try:
        ids = sorted(int(i) for i in id2label)
    except (TypeError, ValueError):
        raise TformerError(f"{folder}/config.json: id2label's keys must be ids 0..K-1") from None
    if ids != list(range(len(ids))):
        raise TformerError(f"{folder}/config.json: id2label's keys must be ids 0..K-1, got {ids}")
    return [str(id2label[str(i)] if str(i) in id2label else id2label[i]) for i in ids]


def refuse_vit(folder: Path, config: dict[str, Any]) -> NoReturn:
    """Refuses a ViT folder, saying why (see the module docstring)."""
    size, channels = config.get("image_size", 224), config.get("num_channels", 3)
    raise TformerError(f"{folder}: a ViT ({size}x{size} pixels, {channels} channel(s)) cannot become a tformer "
                       "vision run: those classify scikit-learn's 8x8 digits (one channel of ink 0..16, labels 0-9) "
                       "and hold no image processor (size, normalization) of another model")
