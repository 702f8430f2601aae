"""Fine-tuning a translation model: ``model.init_from: RUN_OR_FOLDER`` starts a run from another model's weights.

``RUN_OR_FOLDER`` is a tformer run directory (or a folder with ``config.json`` + ``model.safetensors`` and the
tokenizer files, as ``tformer average`` writes) or a Hugging Face folder that ``tformer import`` takes (read on the
fly, :mod:`tformer.interop.folders`). What comes from it: the architecture, the weights and the tokenizer (the
run's ``data.tokenizer``, ``data.vocab_size`` and ``data.shared_vocab`` are not used; the data is tokenized with the
pretrained tokenizer). What is new: the optimizer and the learning-rate schedule (the ``train`` section), and the
dropout rates when the ``model`` section gives them (``FINE_TUNE_KEYS``); any other model key would not fit the
weights and is refused in one line. Resuming a fine-tuning run checks that its saved tokenizer is the pretrained
one: a vocabulary mismatch is one line, never a silent reshuffle of the embedding rows.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import torch

from tformer.config import check
from tformer.console import log
from tformer.data.vocabularies import Vocabularies
from tformer.errors import TformerError
from tformer.training.config import RunConfig
from tformer.translator import MODEL_SUBDIR, Translator

__all__ = ["FINE_TUNE_KEYS", "check_fine_tune_config", "init_from", "pretrained_translator", "start_model"]

FINE_TUNE_KEYS = ("init_from", "dropout", "attention_dropout", "activation_dropout")
"""The ``model`` keys a fine-tuning run may set: where the weights come from, and the dropout rates."""


def init_from(cfg: RunConfig) -> str | None:
    """``model.init_from`` of the run config, or None."""
    value = cfg.model.get("init_from")
    return str(value) if value else None


def check_fine_tune_config(cfg: RunConfig) -> None:
    """Only :data:`FINE_TUNE_KEYS` beside ``model.init_from`` (one-line ConfigError), and the folder exists."""
    extra = sorted(set(cfg.model) - set(FINE_TUNE_KEYS))
    check(not extra, f"model: {', '.join(extra)} cannot change a pretrained model (model.init_from); "
                     f"a fine-tuning run may set {', '.join(FINE_TUNE_KEYS[1:])}")
    path = Path(init_from(cfg))
    check(path.is_dir(), f"model.init_from: {path} is not a run directory or model folder")


def _is_hf_folder(path: Path) -> bool:
    """A Hugging Face folder: ``config.json`` with a ``model_type`` and no tformer model folder."""
    import json

    config = path / "config.json"
    if (path / MODEL_SUBDIR).is_dir() or not config.is_file():
        return False
    try:
        return "model_type" in json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def pretrained_translator(cfg: RunConfig) -> Translator:
    """The model and tokenizer ``model.init_from`` names (a Hugging Face folder is imported in memory), read once
    per folder and version of its files (the config check and the build of one ``tformer train`` share it;
    :func:`start_model` copies the weights and lets it go)."""
    path = Path(init_from(cfg)).resolve()
    files = [f for d in (path, path / MODEL_SUBDIR) if d.is_dir() for f in d.iterdir() if f.is_file()]
    return _read_pretrained(path, max((f.stat().st_mtime_ns for f in files), default=0))


@functools.lru_cache(maxsize=2)
def _read_pretrained(path: Path, stamp: int) -> Translator:
    if _is_hf_folder(path):
        from tformer.interop.folders import IMPORTERS, load_folder

        run = load_folder(path)
        if not isinstance(run, Translator):
            raise TformerError(f"model.init_from: {path} is not a translation model (tformer imports "
                               f"{', '.join(sorted(IMPORTERS))})")
        return run
    return Translator.from_pretrained(path)


def start_model(pretrained: Translator, cfg: RunConfig, model_class: type[torch.nn.Module]) -> torch.nn.Module:
    """A fresh ``model_class`` with the pretrained weights and the run's dropout rates (one line when the pretrained
    model is of another class)."""
    model = pretrained.model
    if type(model) is not model_class:
        raise TformerError(f"model.init_from holds a {type(model).__name__}; task {cfg.task} trains a "
                           f"{model_class.__name__}")
    changes = {k: float(v) for k, v in cfg.model.items() if k in FINE_TUNE_KEYS[1:]}
    fresh = model_class(dataclasses.replace(model.cfg, **changes))
    fresh.load_state_dict(model.state_dict())
    _read_pretrained.cache_clear()  # the copy is the run's; the pretrained weights need not stay in memory
    log(f"init_from {init_from(cfg)}: {sum(p.numel() for p in fresh.parameters()):,} parameters, tokenizer "
        f"vocabulary {pretrained.vocabs.src.vocab_size}" + (f"; {changes}" if changes else ""))
    return fresh


def check_same_vocabularies(saved: Vocabularies, pretrained: Vocabularies, run_dir: Path) -> None:
    """A resumed fine-tuning run's tokenizer is the pretrained model's (one line naming what differs)."""
    for side in ("src", "tgt"):
        a, b = getattr(saved, side), getattr(pretrained, side)
        if type(a) is not type(b) or a.vocab_size != b.vocab_size or any(
                a.id_to_token(i) != b.id_to_token(i) for i in range(a.vocab_size)):
            raise TformerError(f"{run_dir}'s {side} vocabulary is not model.init_from's: this run was started "
                               "from another model; start a new run_dir")
