"""Encoder folders -> classifier runs, or a one-line refusal that says what to do instead.

* ``bert`` (``BertForSequenceClassification``): a ``task: classify`` run (``tformer predict``, ``serve``,
  ``export``): the encoder with BERT's pooler and classifier, the folder's ``tokenizer.json`` as it is (WordPiece;
  it adds ``[CLS]`` and ``[SEP]`` itself) and ``labels.json`` (``id2label`` in id order, the ``[PAD]`` id). A text's
  answer is the label of the largest logit (single-label classification; a multi-label or regression head is
  refused). A BERT without a classification head (``BertModel``, ``BertForMaskedLM``) is refused with the way to
  fine-tune it: ``task: classify`` with ``model.init_from: FOLDER``.
* ``vit`` (``ViTForImageClassification``): a ``task: image_classify`` run (``tformer predict``, ``serve``,
  ``export``, :mod:`tformer.tasks.image_run`): the ViT with its classifier, ``labels.json`` (``id2label`` in id
  order) and ``image_processor.json``, the folder's ``preprocessor_config.json`` (its size, resampling, rescaling and
  normalization: :class:`~tformer.models.vit.image_processor.ImageProcessor`), whose size must be the model's
  ``image_size``. A ViT without a classification head (``ViTModel``, ``ViTForMaskedImageModeling``) is refused, as
  are a processor that crops or pads and a model of other than 3 (RGB) channels. (tformer's own ``vision`` runs are
  another task: they classify scikit-learn's 8 x 8 digits.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tformer.config import ConfigError
from tformer.errors import TformerError
from tformer.interop.bert import from_hf_bert
from tformer.interop.folders.base import (
    TOKENIZER_FILE,
    TaskRun,
    check_architecture,
    check_ids,
    folder_tokenizer,
    load_hf_model,
)
from tformer.interop.vit import from_hf_vit
from tformer.io.files import read_json
from tformer.models.vit.image_processor import PROCESSOR_FILE, ImageProcessor

__all__ = ["LABELS_FILE", "load_bert", "load_vit"]

LABELS_FILE = "labels.json"  # a classify run's labels, in id order, and its pad id (tformer train's)
PROCESSOR_FILE_HF = "preprocessor_config.json"  # what save_pretrained writes for an image processor
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
    labels = _single_labels(folder, config, "a classify run")
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


def _single_labels(folder: Path, config: dict[str, Any], run: str) -> list[str]:
    """The labels of a single-label classification head (one line for a multi-label or regression head)."""
    problem = config.get("problem_type")
    labels = _labels(folder, config)
    if problem not in (None, "single_label_classification") or len(labels) < 2:
        raise TformerError(f"{folder}: a {problem or 'regression'} head with {len(labels)} output(s); {run} "
                           "answers the one label of the largest logit (single_label_classification)")
    return labels


def load_vit(folder: Path, config: dict[str, Any]) -> TaskRun:
    """A ViTForImageClassification (single-label, RGB) and its ``preprocessor_config.json``, as an image_classify
    run."""
    check_architecture(folder, config, ("ViTForImageClassification",),
                       ": a ViT without a classification head has no labels to answer")
    labels = _single_labels(folder, config, "an image_classify run")
    if config.get("num_channels", 3) != 3:
        raise TformerError(f"{folder}: a ViT of {config['num_channels']} channel(s); tformer reads images as RGB (3)")
    processor = _processor(folder)
    hf_model = load_hf_model(folder, "ViTForImageClassification")
    try:
        model = from_hf_vit(hf_model).eval()
    except TformerError as e:  # a setting tformer's ViT does not build (an activation, a non-square image or patch)
        raise TformerError(f"{folder}: {e}") from None
    size = model.cfg.image_size
    if (processor.height, processor.width) != (size, size):
        raise TformerError(f"{folder}/{PROCESSOR_FILE_HF}: images are resized to {processor.height}x"
                           f"{processor.width} but the model reads {size}x{size} (config.json's image_size)")
    files = {PROCESSOR_FILE: json.dumps(processor.to_dict(), indent=2) + "\n",
             LABELS_FILE: json.dumps({"labels": labels}) + "\n"}
    return TaskRun("image_classify", model, files, model.cfg.to_dict(), max_len=model.cfg.num_patches + 1,
                   settings={"labels": labels})


def _processor(folder: Path) -> ImageProcessor:
    """The folder's image processor (one line when it has none or tformer cannot follow it)."""
    path = folder / PROCESSOR_FILE_HF
    if not path.is_file():
        raise TformerError(f"{folder} has no {PROCESSOR_FILE_HF}: an image classifier needs its image processor; "
                           "write it with transformers.AutoImageProcessor.from_pretrained(...).save_pretrained(FOLDER)")
    try:
        return ImageProcessor.from_hf(read_json(path))
    except ConfigError as e:
        raise TformerError(f"{path}: {e}") from None
