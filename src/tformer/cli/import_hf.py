"""``tformer import FOLDER --out RUN``: a Hugging Face model folder (as ``save_pretrained`` writes it) becomes a tformer
run directory: Marian and T5 a translation run (``translate``, ``evaluate``, ``serve``, ``plot``, ``export``, ``train``
with ``model.init_from``), GPT-2 a language-model run (``generate``, ``serve``), a BERT sequence classifier a classify
run (``predict``, ``serve``, ``export``), a ViT image classifier an image_classify run (``predict``, ``serve``,
``export``). Prints JSON: what was imported (also written to ``RUN/imported.json``). See
:mod:`tformer.interop.folders`.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="a Hugging Face model folder: config.json, model.safetensors or pytorch_model.bin, "
                                  "tokenizer files (Marian: source.spm, target.spm, vocab.json; T5, GPT-2, BERT: "
                                  "tokenizer.json; ViT: preprocessor_config.json); model_type marian, t5, gpt2, bert "
                                  "or vit")
    p.add_argument("--out", "-o", required=True, help="the run directory to create (must not exist, or use --force)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")


def run(args: argparse.Namespace) -> int:
    from tformer.interop.folders import import_folder

    print(json.dumps(import_folder(args.folder, args.out, force=args.force)))
    return 0
