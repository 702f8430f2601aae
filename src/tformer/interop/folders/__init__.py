"""Hugging Face folders in: ``tformer import FOLDER --out RUN`` turns a folder written by ``save_pretrained`` into a
tformer run directory.

A folder holds ``config.json`` (whose ``model_type`` picks the importer in :data:`IMPORTERS`), the weights
(``model.safetensors`` or ``pytorch_model.bin``) and the tokenizer's files (a ViT: its image processor's,
``preprocessor_config.json``). The run directory written is the one ``tformer train`` writes for the importer's task
(``image_classify``, a ViT with its own image processor, is a task only ``tformer import`` writes), so the commands
that take such a run take it:

==========  =============================  ==============  ======================================================
model_type  architecture                   run (task)      commands that take the run
==========  =============================  ==============  ======================================================
marian      MarianMTModel                  translation     translate, evaluate, serve, plot, export (onnx,
                                                           ctranslate2, hf), train (``model.init_from``)
t5          T5ForConditionalGeneration     translation     translate, evaluate, serve, plot, export (onnx), train
                                                           (``model.init_from``)
gpt2        GPT2LMHeadModel                lm              generate, predict, serve
bert        BertForSequenceClassification  classify        predict, serve, export (onnx)
vit         ViTForImageClassification      image_classify  predict, serve, export (onnx)
==========  =============================  ==============  ======================================================

A plain BERT (``BertModel``, ``BertForMaskedLM``) is refused with the way to fine-tune it: ``task: classify`` with
``model.init_from: FOLDER``. A special token a model emits is written as its text (``<unk>``, T5's sentinels
``<extra_id_N>``), where ``transformers``' ``skip_special_tokens`` drops it; a special token's text typed in the input
(``</s>``, ``<|endoftext|>``) is read as text, where a ``transformers`` tokenizer reads the special id.

Every run gets ``imported.json``, which records where it came from and the folder's own generation settings (a
Marian checkpoint's beam size, for instance), to be passed explicitly where wanted. The tokenizer keeps the
folder's ids, found by name (:data:`tformer.data.tokenizer.SPECIAL_TOKEN_NAMES`); the model's special ids are
checked against the tokenizer's, so that a mismatch is one line here, not wrong output later. Needs
``transformers`` (and ``sentencepiece`` for Marian): ``pip install 'tformer[hf]'``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tformer.errors import TformerError
from tformer.interop.folders.base import ImportedRun, Importer, TaskRun, transformers_module
from tformer.interop.folders.classifiers import load_bert, load_vit
from tformer.interop.folders.lm import load_gpt2
from tformer.interop.folders.translation import load_marian, load_t5
from tformer.io.files import atomic_directory, read_json, write_json
from tformer.registry import Registry
from tformer.version import VERSION

__all__ = ["IMPORTERS", "IMPORT_RECORD", "Importer", "import_folder", "load_folder"]

IMPORT_RECORD = "imported.json"

IMPORTERS: Registry[Importer] = Registry("Hugging Face model_type", {
    "marian": Importer("translation", load_marian),
    "t5": Importer("translation", load_t5),
    "gpt2": Importer("lm", load_gpt2),
    "bert": Importer("classify", load_bert),
    "vit": Importer("image_classify", load_vit),
})
"""``config.json``'s ``model_type`` -> its :class:`Importer`."""


def _config(folder: Path) -> dict:
    """The folder's ``config.json`` (one line when it is missing or its model_type has no importer)."""
    if not (folder / "config.json").is_file():
        raise TformerError(f"{folder} is not a Hugging Face model folder (no config.json)")
    config = read_json(folder / "config.json")
    if config.get("model_type") not in IMPORTERS:
        taken = sorted(name for name, importer in IMPORTERS.items() if importer.task is not None)
        raise TformerError(f"{folder}: model_type {config.get('model_type')!r} cannot be imported; tformer imports "
                           f"{', '.join(taken)}")
    return config


def load_folder(folder: str | os.PathLike) -> ImportedRun:
    """The run a Hugging Face folder becomes, in memory (a :class:`~tformer.translator.Translator` for translation,
    a :class:`TaskRun` otherwise): what :func:`import_folder` writes, and what ``model.init_from`` reads.

    Raises:
        TformerError: a folder that cannot be imported, in one line saying why.
    """
    folder = Path(folder)
    config = _config(folder)
    return IMPORTERS[config["model_type"]].load(folder, config)


def import_folder(folder: str | os.PathLike, out: str | os.PathLike, *, force: bool = False) -> dict:
    """Write the run directory ``out`` from the Hugging Face folder ``folder``; returns what :data:`IMPORT_RECORD`
    holds. ``out`` appears complete or not at all (written beside it, then renamed).

    Raises:
        TformerError: a missing folder or config, a model_type without importer, an ``out`` that exists (without
            ``force``), a folder that does not fit its model_type (weights, tokenizer, special ids): one line.
    """
    folder, out = Path(folder), Path(out)
    config = _config(folder)
    if out.exists() and not force:
        raise TformerError(f"{out} exists (use --force to replace it)")
    if out.exists() and folder.resolve().is_relative_to(out.resolve()):
        raise TformerError(f"--out {out} holds the folder {folder}: choose another folder")
    importer = IMPORTERS[config["model_type"]]
    run = importer.load(folder, config)
    generation = folder / "generation_config.json"
    record = {"task": importer.task, "model_type": config["model_type"], "source": str(folder.resolve()),
              "architectures": config.get("architectures"), "tformer_version": VERSION,
              "transformers_version": transformers_module().__version__,
              "generation_config": json.loads(generation.read_text()) if generation.is_file() else None}
    with atomic_directory(out) as tmp:
        if isinstance(run, TaskRun):
            run.save_pretrained(tmp, run_dir=out)  # its config.yaml names where it will live
        else:
            run.save_pretrained(tmp)
        write_json(tmp / IMPORT_RECORD, record)
    return record
