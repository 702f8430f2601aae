"""``tformer export RUN_DIR --format onnx|ctranslate2 -o DIR``: a trained translation model for deployment.

The folder is written next to ``DIR`` and renamed into place when complete, so a failed export never
leaves a half-written model. ``--check SRC`` then translates SRC greedily with the PyTorch model and
with the exported one and prints JSON: how many outputs are identical, and both decoding times.

Each format is a module of :mod:`tformer.export` with ``export(translator, out_dir)`` and a ``Runtime(out_dir)``
whose ``translate(texts, beam_size=1, max_tokens=4096)`` returns strings.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from tformer.errors import TformerError

FORMATS = {"onnx": "onnx", "ctranslate2": "ctranslate2"}  # --format -> module of tformer.export


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a translation run directory (or a folder written by `tformer average`)")
    p.add_argument("--format", "-f", required=True, choices=sorted(FORMATS), help="what to write")
    p.add_argument("--output", "-o", required=True, help="the folder to create (must not exist, or use --force)")
    p.add_argument("--force", action="store_true", help="replace --output if it exists")
    p.add_argument("--check", metavar="SRC", help="translate SRC (one sentence a line) greedily with both models "
                                                  "and report how many outputs agree")
    p.add_argument("--limit", type=int, default=0, help="with --check: only the first N sentences (0 = all)")
    p.add_argument("--max-tokens", type=int, default=4096, help="with --check: source tokens per batch")


def load_format(name: str):
    """The module of :mod:`tformer.export` for format ``name`` (a one-line error when its package is missing)."""
    try:
        return importlib.import_module(f"tformer.export.{FORMATS[name]}")
    except ImportError as e:
        raise TformerError(f"--format {name} needs the package {e.name!r}: pip install 'tformer[export]'") from None


def run(args: argparse.Namespace) -> int:
    from tformer.generation import Feature
    from tformer.translator import Translator

    module = load_format(args.format)
    out = Path(args.output)
    if out.exists() and not args.force:
        raise TformerError(f"{out} exists (use --force to replace it)")
    if args.limit < 0:
        raise TformerError("--limit must be >= 0")
    if out.exists() and Path(args.run_dir).resolve().is_relative_to(out.resolve()):
        raise TformerError(f"--output {out} holds the run {args.run_dir}: choose another folder")
    translator = Translator.from_pretrained(args.run_dir)
    translator.capabilities.require(Feature.GREEDY, what="tformer export (an encoder and a decoder step)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private (0700); the model folder gets the usual mode
    try:
        t0 = time.perf_counter()
        info = dict(module.export(translator, tmp) or {})
        info["export_seconds"] = round(time.perf_counter() - t0, 2)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    result = {"format": args.format, "output": str(out), **info}
    if args.check:
        result.update(check(translator, module.Runtime(out), args.check, args.limit, args.max_tokens))
    print(json.dumps(result))
    return 0


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
