"""Hugging Face folders in: ``tformer import FOLDER --out RUN`` turns a folder written by ``save_pretrained`` into a
tformer run directory.

A folder holds ``config.json`` (whose ``model_type`` picks the importer in :data:`IMPORTERS`), the weights
(``model.safetensors`` or ``pytorch_model.bin``) and the tokenizer's files. The run directory written is the one
``tformer train`` writes, so ``translate``, ``evaluate``, ``serve``, ``plot``, ``export`` and ``train`` (with
``model.init_from: RUN``) take it: ``model/`` (``config.json`` + ``model.safetensors``), the tokenizer files, and
``imported.json``, which records where the run came from and the folder's own generation settings (a Marian
checkpoint's beam size, for instance), to be passed explicitly where wanted.

The tokenizer keeps the folder's ids (Marian: ``</s>`` = 0, ``<unk>`` = 1, ``<pad>`` last, decoding starts from
``<pad>``); the model's special ids are checked against the tokenizer's, so that a mismatch is one line here, not
wrong translations later. Needs ``transformers`` (and ``sentencepiece`` for Marian): ``pip install 'tformer[hf]'``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tformer.data.vocabularies import Vocabularies
from tformer.errors import TformerError
from tformer.interop.marian import from_hf_marian
from tformer.io.files import atomic_directory, read_json, write_json
from tformer.registry import Registry
from tformer.translator import Translator
from tformer.version import VERSION

__all__ = ["IMPORTERS", "IMPORT_RECORD", "Importer", "import_folder", "load_folder"]

IMPORT_RECORD = "imported.json"


@dataclass(frozen=True)
class Importer:
    """How one ``model_type`` becomes a run (an entry of :data:`IMPORTERS`).

    Attributes:
        task: the kind of run written (``translation``).
        load: folder -> the object whose ``save_pretrained(run_dir)`` writes the run (a :class:`Translator`).
    """

    task: str
    load: Callable[[Path], Translator]


def _transformers():
    try:
        import transformers
    except ImportError:
        raise TformerError("tformer import needs transformers: pip install 'tformer[hf]'") from None
    return transformers


def check_special_ids(cfg, vocabs: Vocabularies, folder: Path) -> None:
    """The model's pad/EOS ids are the tokenizer's, and its vocabulary holds the tokenizer's (one line if not)."""
    for side, tok, size in (("source", vocabs.src, cfg.vocab_size), ("target", vocabs.tgt, cfg.target_vocab_size)):
        if tok.vocab_size > size:
            raise TformerError(f"{folder}: the {side} tokenizer has {tok.vocab_size} ids but the model's "
                               f"vocabulary only {size}")
        for role in ("pad", "eos"):
            if getattr(tok, f"{role}_id") != getattr(cfg, f"{role}_id"):
                raise TformerError(f"{folder}: the {side} tokenizer's {role} id is {getattr(tok, f'{role}_id')} "
                                   f"but the model's is {getattr(cfg, f'{role}_id')}")


def _marian(folder: Path) -> Translator:
    """A MarianMTModel (OPUS-MT) and its SentencePiece tokenizer (``source.spm``, ``target.spm``, ``vocab.json``)."""
    transformers = _transformers()
    vocabs = Vocabularies.load(folder)
    hf = transformers.MarianMTModel.from_pretrained(folder).eval()
    model = from_hf_marian(hf)
    check_special_ids(model.cfg, vocabs, folder)
    return Translator(model, vocabs)


IMPORTERS: Registry[Importer] = Registry("Hugging Face model_type", {
    "marian": Importer("translation", _marian),
})
"""``config.json``'s ``model_type`` -> its :class:`Importer`."""


def load_folder(folder: str | os.PathLike) -> Translator:
    """The run a Hugging Face folder becomes (a :class:`Translator` for Marian), in memory, not written.

    Raises:
        TformerError: a folder without config.json or whose model_type has no importer (one line).
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise TformerError(f"{folder} is not a Hugging Face model folder (no config.json)")
    model_type = read_json(folder / "config.json").get("model_type")
    if model_type not in IMPORTERS:
        raise TformerError(f"{folder}: model_type {model_type!r} cannot be imported; tformer imports "
                           f"{', '.join(sorted(IMPORTERS))}")
    return IMPORTERS[model_type].load(folder)


def import_folder(folder: str | os.PathLike, out: str | os.PathLike, *, force: bool = False) -> dict:
    """Write the run directory ``out`` from the Hugging Face folder ``folder``; returns what :data:`IMPORT_RECORD`
    holds. ``out`` appears complete or not at all (written beside it, then renamed).

    Raises:
        TformerError: a missing folder or config, a model_type without importer, an ``out`` that exists (without
            ``force``), a tokenizer that does not fit the model: one line.
    """
    folder, out = Path(folder), Path(out)
    if not (folder / "config.json").is_file():
        raise TformerError(f"{folder} is not a Hugging Face model folder (no config.json)")
    if out.exists() and not force:
        raise TformerError(f"{out} exists (use --force to replace it)")
    if out.exists() and folder.resolve().is_relative_to(out.resolve()):
        raise TformerError(f"--out {out} holds the folder {folder}: choose another folder")
    config = read_json(folder / "config.json")
    model_type, run = config.get("model_type"), load_folder(folder)
    importer = IMPORTERS[model_type]
    generation = folder / "generation_config.json"
    record = {"task": importer.task, "model_type": model_type, "source": str(folder.resolve()),
              "architectures": config.get("architectures"), "tformer_version": VERSION,
              "transformers_version": _transformers().__version__,
              "generation_config": json.loads(generation.read_text()) if generation.is_file() else None}
    with atomic_directory(out) as tmp:
        run.save_pretrained(tmp)
        write_json(tmp / IMPORT_RECORD, record)
    return record
