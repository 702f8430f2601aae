"""The registry of architectures: which model class a saved folder (or a run checkpoint's config) holds.

Every ``config.json`` written by :meth:`tformer.io.pretrained.Pretrained.save_pretrained` names its model class
under ``"architecture"``; :func:`load_pretrained` looks that name up in :data:`ARCHITECTURES` and lets the class
load the folder. ``Translator``, ``tformer average``, ``export``, ``serve`` and ``plot`` all resolve folders here.

Folders written by tformer 0.1.0 keep loading. They named their kind in one of three ways, and
:func:`legacy_architecture` reads each:

1. the encoder-only models: an ``"architecture"`` key (with the config nested under ``"encoder"``), as today;
2. the CMLM: no name, but the length predictor's keys (``max_target_len``);
3. the encoder-decoder, GPT and ViT: nothing; the config's own keys tell them apart (``num_encoder_layers``;
   ``tie_output`` with ``num_layers``; ``image_size``, and for the classifier its ``head`` tensors).

Adding a family: its model class (with :class:`~tformer.io.pretrained.Pretrained`) and one entry below.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tformer.errors import ConfigError
from tformer.io.pretrained import CONFIG_NAME, WEIGHTS_NAME, architecture_of, read_json, tensor_names
from tformer.models.bert.heads import EncoderOnlyForClassification, EncoderOnlyForMaskedLM
from tformer.models.bert.model import EncoderOnly
from tformer.models.bert.span import EncoderOnlyForQuestionAnswering
from tformer.models.cmlm.model import CMLM
from tformer.models.conformer.asr import ConformerSeq2Seq
from tformer.models.conformer.classifier import ConformerClassifier
from tformer.models.conformer.ctc import ConformerCTC
from tformer.models.conformer.model import ConformerEncoder
from tformer.models.gpt.model import DecoderOnly
from tformer.models.swin.model import SwinClassifier, SwinTransformer
from tformer.models.transformer.model import Transformer
from tformer.models.vit.model import VisionClassifier, VisionTransformer

ARCHITECTURES: dict[str, type[nn.Module]] = {
    cls.__name__: cls
    for cls in (Transformer, CMLM, EncoderOnly, EncoderOnlyForMaskedLM, EncoderOnlyForClassification,
                EncoderOnlyForQuestionAnswering, DecoderOnly, VisionTransformer, VisionClassifier, SwinTransformer,
                SwinClassifier, ConformerEncoder, ConformerClassifier, ConformerCTC, ConformerSeq2Seq)
}
"""Model class name (config.json's ``"architecture"``) -> the class, which has ``from_pretrained``."""


def model_class(name: str, source: str | os.PathLike = "") -> type[nn.Module]:
    """The registered class called ``name``.

    Raises:
        ConfigError: no such architecture, in one line (naming ``source``, the file that asked, when given).
    """
    if name not in ARCHITECTURES:
        prefix = f"{source}: " if source else ""
        raise ConfigError(f"{prefix}architecture must be one of {tuple(ARCHITECTURES)}, got {name!r}")
    return ARCHITECTURES[name]


def legacy_architecture(config: dict[str, Any], names: Callable[[], Iterable[str]] = tuple,
                        source: str | os.PathLike = "") -> str:
    """The architecture of a config written by tformer 0.1.0, which named none: told apart by its keys.

    Args:
        config: the config's mapping (a folder's config.json, or a run checkpoint's ``model_config``).
        names: gives the names of the saved tensors (asked only for a ViT, whose classifier has ``head.*``).
        source: the file, for the error message.
    """
    if "max_target_len" in config:  # the CMLM's length predictor
        return CMLM.__name__
    if "num_encoder_layers" in config:
        return Transformer.__name__
    if "image_size" in config:
        return VisionClassifier.__name__ if any(n.startswith("head.") for n in names()) else VisionTransformer.__name__
    if "tie_output" in config and "num_layers" in config:
        return DecoderOnly.__name__
    prefix = f"{source}: " if source else ""
    raise ConfigError(f"{prefix}no architecture key, and the keys are none of a known model's")


def resolve(directory: str | os.PathLike) -> type[nn.Module]:
    """The model class of the folder ``directory`` (config.json's architecture, or the legacy rules)."""
    d = Path(directory)
    if not d.is_dir():
        raise ConfigError(f"{d} is a file, not a model folder" if d.exists() else f"model folder not found: {d}")
    doc = read_json(d / CONFIG_NAME)
    name = architecture_of(doc, d / CONFIG_NAME)
    if name is None:
        name = legacy_architecture(doc, lambda: tensor_names(d / WEIGHTS_NAME), d / CONFIG_NAME)
    return model_class(name, d / CONFIG_NAME)


def load_pretrained(directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """The model saved in ``directory``, of whatever registered architecture, on ``map_location``.

    Raises:
        ConfigError: a missing, corrupt or mismatched file, or an unknown architecture, in one line.
    """
    return resolve(directory).from_pretrained(directory, map_location=map_location)


def model_from_config(config: dict[str, Any], architecture: str | None = None,
                      names: Callable[[], Iterable[str]] = tuple) -> nn.Module:
    """A fresh model for a config mapping (e.g. a run checkpoint's ``model_config``) of ``architecture``, or,
    when that is None, of the architecture :func:`legacy_architecture` reads from its keys."""
    cls = model_class(architecture or legacy_architecture(config, names))
    cfg = cls.config_class.from_dict(config)
    return cls(cfg)
