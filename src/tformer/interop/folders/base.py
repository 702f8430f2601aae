"""What every importer of :mod:`tformer.interop.folders` shares: the :class:`Importer` entry, the run it returns
(a :class:`~tformer.translator.Translator` for translation, a :class:`TaskRun` for any other task), and the
one-line checks of a folder (its architecture, its weights, its tokenizer's special ids).

``transformers`` is imported here on first use, never at import time: ``pip install 'tformer[hf]'``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from torch import nn

from tformer.data.tokenizer import Tokenizer
from tformer.errors import TformerError, first_line
from tformer.io.files import atomic_write_text
from tformer.training.config import DataConfig, RunConfig
from tformer.training.config_file import dump_run_config

__all__ = ["CONFIG_FILE", "MODEL_DIR", "TOKENIZER_FILE", "ImportedRun", "Importer", "TaskRun", "check_architecture",
           "check_ids", "folder_tokenizer", "load_hf_model", "quiet_transformers", "transformers_module"]

MODEL_DIR, CONFIG_FILE, TOKENIZER_FILE = "model", "config.yaml", "tokenizer.json"  # a run's files (tformer train's)
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json")  # one model's weights, or the index of its shards


class ImportedRun(Protocol):
    """What an importer returns: something that writes a run directory."""

    def save_pretrained(self, directory: str | os.PathLike) -> None: ...


@dataclass(frozen=True)
class Importer:
    """How one ``model_type`` becomes a run (an entry of :data:`tformer.interop.folders.IMPORTERS`).

    Attributes:
        task: the kind of run written (``translation``, ``lm``, ``classify``); None for a model_type that is
            recognised only to be refused with its reason (its ``load`` raises).
        load: folder (with its parsed ``config.json``) -> the run, whose ``save_pretrained(run_dir)`` writes it.
    """

    task: str | None
    load: Callable[[Path, dict[str, Any]], ImportedRun]


@dataclass(frozen=True)
class TaskRun:
    """A run of a task other than translation, as ``tformer train`` leaves it: ``model/`` (config.json +
    model.safetensors), the task's files (``tokenizer.json``, ``labels.json``, ...) and ``config.yaml``, whose
    ``task`` tells ``tformer predict``, ``generate`` and ``serve`` which predictor opens the run.

    Attributes:
        task: the run's task.
        model: the tformer model (saved to ``model/``).
        files: file name -> text, written beside it.
        model_section: the ``model`` section of ``config.yaml`` (a record of the architecture).
        max_len: ``data.max_len`` of ``config.yaml`` (the longest input the run's predictor reads).
        settings: the task's section of ``config.yaml`` (``classify: {labels: [...]}``).
    """

    task: str
    model: nn.Module
    files: dict[str, str]
    model_section: dict[str, Any] = field(default_factory=dict)
    max_len: int = 100
    settings: dict[str, Any] = field(default_factory=dict)

    def config(self, run_dir: str | os.PathLike) -> RunConfig:
        """The run's ``config.yaml`` as a :class:`RunConfig` (``run_dir`` recorded where it will live)."""
        return RunConfig(run_dir=str(run_dir), task=self.task, model=dict(self.model_section),
                         data=DataConfig(max_len=self.max_len), task_settings=dict(self.settings))

    def save_pretrained(self, directory: str | os.PathLike, run_dir: str | os.PathLike | None = None) -> None:
        """Write the run into ``directory``; ``config.yaml`` names ``run_dir`` (default: ``directory``)."""
        d = Path(directory)
        self.model.save_pretrained(d / MODEL_DIR)
        for name, text in self.files.items():
            atomic_write_text(d / name, text)
        atomic_write_text(d / CONFIG_FILE, dump_run_config(self.config(run_dir or d)))


def transformers_module():
    """``transformers``, or a one-line error saying how to install it."""
    try:
        import transformers
    except ImportError:
        raise TformerError("tformer import needs transformers: pip install 'tformer[hf]'") from None
    return transformers


def check_architecture(folder: Path, config: dict[str, Any], takes: Iterable[str], refused: str = "") -> None:
    """The folder's ``architectures`` (in ``config.json``) name one of ``takes`` (a folder that names none is taken).

    Raises:
        TformerError: naming the architecture and what is imported, then ``refused`` (what to do instead).
    """
    names = config.get("architectures") or []
    takes = tuple(takes)
    if names and not set(names) & set(takes):
        raise TformerError(f"{folder} holds a {names[0]}; tformer imports {' or '.join(takes)} of model_type "
                           f"{config.get('model_type')!r}{refused}")


@contextlib.contextmanager
def quiet_transformers() -> Iterator[Any]:
    """``transformers`` without its progress bars and warnings (what they would say, the checks here say in one
    line), put back as they were afterwards; yields the module."""
    transformers = transformers_module()
    log = transformers.utils.logging
    verbosity, bars = log.get_verbosity(), log.is_progress_bar_enabled()
    log.set_verbosity_error()
    log.disable_progress_bar()
    try:
        yield transformers
    finally:
        log.set_verbosity(verbosity)
        if bars:
            log.enable_progress_bar()


def load_hf_model(folder: Path, class_name: str):
    """The ``transformers`` model ``class_name`` read from ``folder`` (in eval mode).

    Raises:
        TformerError: no weights file, unreadable weights, or weights that do not fill the class as its config
            describes it (missing or of another shape, which ``transformers`` would fill with random numbers), in one
            line.
    """
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise TformerError(f"{folder} has no weights (model.safetensors or pytorch_model.bin)")
    with quiet_transformers() as transformers:
        try:
            model, info = getattr(transformers, class_name).from_pretrained(
                folder, output_loading_info=True, ignore_mismatched_sizes=True)  # reported below, in one line
        except (OSError, ValueError, RuntimeError, KeyError) as e:
            raise TformerError(f"cannot load {folder} as a {class_name}: {first_line(e)}") from None
    mismatched = sorted(info.get("mismatched_keys") or ())  # (name, the folder's shape, the config's shape)
    if mismatched:
        name, theirs, ours = mismatched[0]
        raise TformerError(f"{folder}: the weights' {name} has shape {tuple(theirs)}; its config.json describes "
                           f"{tuple(ours)}")
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise TformerError(f"{folder}: the weights lack {missing[0]}{more}, which a {class_name} needs")
    return model.eval()


def folder_tokenizer(folder: Path) -> Tokenizer:
    """The folder's fast tokenizer (``tokenizer.json``) as a tformer :class:`Tokenizer`, with its own ids.

    Raises:
        TformerError: no ``tokenizer.json`` (with how to write one), an unreadable one, or one without the special
            tokens a run needs, in one line.
    """
    path = folder / TOKENIZER_FILE
    if not path.is_file():
        raise TformerError(f"{folder} has no {TOKENIZER_FILE}: tformer reads the fast tokenizer's file; "
                           f"write it with transformers.AutoTokenizer.from_pretrained(FOLDER).save_pretrained(FOLDER)")
    return Tokenizer.load(path)  # a TokenizerError (a TformerError) names the file


def check_ids(folder: Path, tokenizer: Tokenizer, vocab_size: int, ids: dict[str, int | None],
              side: str = "") -> None:
    """The tokenizer fits the model: its ids fit the model's vocabulary and its special ids are the model's.

    Args:
        ids: role (``pad``, ``bos``, ``eos``, ``unk``) -> the model's id (None: the model has none, not checked).
        side: ``"source "`` or ``"target "`` for an encoder-decoder with two tokenizers.

    Raises:
        TformerError: the first disagreement, in one line.
    """
    if tokenizer.vocab_size > vocab_size:
        raise TformerError(f"{folder}: the {side}tokenizer has {tokenizer.vocab_size} ids but the model's vocabulary "
                           f"only {vocab_size}")
    for role, model_id in ids.items():
        ours = getattr(tokenizer, f"{role}_id")
        if model_id is not None and ours != model_id:
            raise TformerError(f"{folder}: the {side}tokenizer's {role} id is {ours} "
                               f"({tokenizer.id_to_token(ours)!r}) but the model's is {model_id}")
