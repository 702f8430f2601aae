"""``tformer export RUN_DIR --format onnx|ctranslate2|hf -o DIR``: a trained model for deployment or for
``transformers`` (``hf``: a MarianMTModel folder, :mod:`tformer.export.hf`).

What is written depends on the run's model (its ``model/config.json`` architecture, :data:`RUN_KINDS`):

* a translation model (Transformer, CMLM): ONNX graphs of the encoder and a decoder step, CTranslate2's format,
  or a Hugging Face Marian folder (a Transformer only).
  ``--check SRC`` then translates SRC greedily with the PyTorch model and with the exported one and prints JSON:
  how many outputs are identical, and both decoding times. Each format is a module of :mod:`tformer.export` with
  ``export(translator, out_dir)`` and a ``Runtime(out_dir)`` whose ``translate(texts, beam_size=1,
  max_tokens=4096)`` returns strings.
* a classifier run (``task: classify`` or ``vision``): ONNX only, one graph, inputs in and logits out
  (:mod:`tformer.export.onnx_classifiers`). The parity check always runs: on the inputs of ``--check SRC`` (one a
  line, as ``tformer predict`` reads them) or else the run's own held-out inputs (validation texts, the digits'
  test images), it reports the largest absolute difference of the logits and how many argmaxes agree.

The folder is written next to ``DIR`` and renamed into place when complete, so a failed export never
leaves a half-written model.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from tformer.errors import TformerError

FORMATS = {"onnx": "onnx", "ctranslate2": "ctranslate2", "hf": "hf"}  # --format -> module of tformer.export
EXTRAS = {"hf": "hf"}  # --format -> the extra that installs its packages (default: export)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a translation run directory (or a folder written by `tformer average`), or a "
                                   "classify or vision run (ONNX)")
    p.add_argument("--format", "-f", required=True, choices=sorted(FORMATS), help="what to write")
    p.add_argument("--output", "-o", required=True, help="the folder to create (must not exist, or use --force)")
    p.add_argument("--force", action="store_true", help="replace --output if it exists")
    p.add_argument("--check", metavar="SRC", help="translate SRC (one sentence a line) greedily with both models "
                                                  "and report how many outputs agree; for a classifier: its inputs, "
                                                  "one a line (default: the run's validation or test inputs)")
    p.add_argument("--limit", type=int, default=0, help="check on the first N inputs only (0 = all)")
    p.add_argument("--max-tokens", type=int, default=4096, help="with --check: source tokens per batch")


def load_format(name: str):
    """The module of :mod:`tformer.export` for format ``name`` (or ``onnx_classifiers``), a one-line error when its
    package is missing."""
    try:
        return importlib.import_module(f"tformer.export.{FORMATS.get(name, name)}")
    except ImportError as e:
        extra = EXTRAS.get(name, "export")
        raise TformerError(f"--format {name} needs the package {e.name!r}: pip install 'tformer[{extra}]'") from None


RUN_KINDS = {"Transformer": "translation", "CMLM": "translation", "EncoderOnlyForClassification": "classifier",
             "VisionClassifier": "classifier", "SwinClassifier": "classifier"}
"""Architecture of the run's model -> how it is exported (:data:`EXPORTERS`)."""


def run_kind(run_dir: str) -> str:
    """"translation" or "classifier", from the architecture of the model in ``run_dir`` (one line otherwise)."""
    from tformer.models.registry import resolve

    d = Path(run_dir)
    if not d.is_dir():
        raise TformerError(f"{d} is a file, not a run directory" if d.exists() else f"run directory not found: {d}")
    model_dir = d / "model" if (d / "model").is_dir() else d
    if not (model_dir / "config.json").is_file():
        raise TformerError(f"no trained model in {d} (expected {d / 'model' / 'config.json'})")
    name = resolve(model_dir).__name__
    if name not in RUN_KINDS:
        raise TformerError(f"tformer export writes translation models and classifiers ({', '.join(RUN_KINDS)}); "
                           f"{d} holds a {name}")
    return RUN_KINDS[name]


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.exists() and not args.force:
        raise TformerError(f"{out} exists (use --force to replace it)")
    if args.limit < 0:
        raise TformerError("--limit must be >= 0")
    if out.exists() and Path(args.run_dir).resolve().is_relative_to(out.resolve()):
        raise TformerError(f"--output {out} holds the run {args.run_dir}: choose another folder")
    result = EXPORTERS[run_kind(args.run_dir)](args, out)
    print(json.dumps(result))
    return 0


def export_translation(args: argparse.Namespace, out: Path) -> dict:
    """A translation run in ``args.format`` (and the greedy check of ``--check SRC``)."""
    from tformer.generation import Feature
    from tformer.translator import Translator

    module = load_format(args.format)
    translator = Translator.from_pretrained(args.run_dir)
    translator.capabilities.require(Feature.GREEDY, what="tformer export (an encoder and a decoder step)")
    info = write_atomically(out, lambda tmp: module.export(translator, tmp))
    result = {"format": args.format, "output": str(out), **info}
    if args.check:
        result.update(check(translator, module.Runtime(out), args.check, args.limit, args.max_tokens))
    return result


def export_classifier(args: argparse.Namespace, out: Path) -> dict:
    """A classify or vision run as ONNX, and the parity check on real inputs."""
    from tformer.cli.predict import located, read_inputs
    from tformer.tasks import open_run

    if args.format != "onnx":
        raise TformerError(f"--format {args.format} takes translation runs; a classifier run exports with "
                           "--format onnx")
    onnx_classifiers = load_format("onnx_classifiers")
    predictor = open_run(args.run_dir)
    inputs = read_inputs(predictor, args.check) if args.check else predictor.validation_inputs()
    inputs = inputs[: args.limit] if args.limit else inputs
    if not inputs:
        raise TformerError(f"no inputs to check the export on: {args.run_dir}'s data cannot be read; give --check SRC")
    meta = {"task": predictor.task, **predictor.export_meta()}
    batches = []
    for i in range(0, len(inputs), CHECK_BATCH):
        try:
            batches.append(predictor.model_inputs(inputs[i : i + CHECK_BATCH]))
        except TformerError as e:  # "input N" of this batch is input i + N of the check
            message = re.sub(r"^input (\d+)", lambda m, i=i: f"input {int(m.group(1)) + i}", str(e))
            raise TformerError(located(message, args.check or args.run_dir)) from None
    info = write_atomically(out, lambda tmp: onnx_classifiers.export_classifier(predictor.model, tmp, meta,
                                                                               predictor.export_files()))
    runtime = onnx_classifiers.ClassifierRuntime(out)
    return {"format": "onnx", "task": predictor.task, "output": str(out), **info,
            **onnx_classifiers.parity(predictor.model, runtime, batches)}


EXPORTERS = {"translation": export_translation, "classifier": export_classifier}
"""What :func:`run` does for each kind of run."""
CHECK_BATCH = 32  # inputs per batch of the classifiers' parity check


def write_atomically(out: Path, write) -> dict:
    """``write(tmp)`` into a fresh folder beside ``out``, renamed to ``out`` when complete (the previous ``out``
    replaced); returns what ``write`` returns, with the seconds it took."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private (0700); the model folder gets the usual mode
    try:
        t0 = time.perf_counter()
        info = dict(write(tmp) or {})
        info["export_seconds"] = round(time.perf_counter() - t0, 2)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return info


def check(translator, runtime, src_path: str, limit: int, max_tokens: int) -> dict:
    """Greedy outputs of the PyTorch model and of the exported one on the sentences of ``src_path``."""
    from tformer.data.corpus import read_lines

    texts = read_lines(src_path)
    if limit:
        texts = texts[:limit]
    if not texts:
        raise TformerError(f"{src_path} has no sentences")
    t0 = time.perf_counter()
    ref = translator.translate(texts, beam_size=1, max_tokens=max_tokens)
    t1 = time.perf_counter()
    got = runtime.translate(texts, beam_size=1, max_tokens=max_tokens)
    t2 = time.perf_counter()
    same = sum(a == b for a, b in zip(ref, got, strict=True))
    return {"sentences": len(texts), "identical": same, "agreement": round(same / len(texts), 4),
            "torch_seconds": round(t1 - t0, 2), "exported_seconds": round(t2 - t1, 2)}
