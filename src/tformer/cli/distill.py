"""``tformer distill TEACHER CONFIG.yaml [key=value ...]``: sequence-level knowledge distillation (Kim & Rush, 2016).

1. The teacher run translates the training sources of CONFIG (``data.train_src``) with beam search; the
   translations are the distilled targets, written atomically to ``--corpus`` (default:
   ``<run_dir>/distilled.txt``) with a sidecar ``.json`` naming the teacher's weights, the source file, the
   beam and the corpus itself by their checksums. A later call with the same teacher, sources and beam reuses
   the file (when it is still the one written), so several
   students (an autoregressive one, a CMLM) can share one corpus.
2. The student (any translation-like ``task``: ``translation`` or ``cmlm``) is trained as ``tformer train``
   would, with ``data.train_tgt`` replaced by the distilled corpus; validation data stays the real one.

``--corpus-only`` stops after step 1. The summary JSON line adds ``distilled_corpus``, its sentence count and the
seconds the teacher took. Needs plain-text training files (``data.train_src`` and ``data.train_tgt``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import time
from pathlib import Path

from tformer.errors import TformerError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("teacher", help="the teacher's run directory (an autoregressive translation model)")
    p.add_argument("config", help="the student's YAML run config (see configs/)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. train.max_steps=100")
    p.add_argument("--corpus", help="the distilled target file (default: RUN_DIR/distilled.txt); reused when its "
                                    "sidecar .json matches the teacher, the sources and the beam")
    p.add_argument("--beam", type=int, default=4, help="the teacher's beam size (default 4)")
    p.add_argument("--alpha", type=float, default=0.6, help="the teacher's length penalty (default 0.6)")
    p.add_argument("--max-tokens", type=int, default=4096, help="source tokens per teacher batch")
    p.add_argument("--device", default="cpu", help="the teacher's device (cpu, cuda, ...)")
    p.add_argument("--corpus-only", action="store_true", help="make the distilled corpus, do not train")
    p.add_argument("--resume", action="store_true", help="continue the student's run from its newest checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log lines instead)")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def distill_corpus(teacher_dir: str, src_path: str, corpus: Path, *, beam: int, alpha: float, max_tokens: int,
                   device: str, progress: bool) -> dict:
    """Translate ``src_path`` with the teacher into ``corpus`` (or reuse a matching one); returns its sidecar."""
    from tformer.console import log
    from tformer.data.corpus import read_lines
    from tformer.generation import Feature
    from tformer.io.files import atomic_write_text
    from tformer.translator import MODEL_SUBDIR, Translator

    if beam < 1:
        raise TformerError("--beam must be >= 1")
    teacher = Path(teacher_dir)
    weights = teacher / MODEL_SUBDIR / "model.safetensors"
    if not weights.is_file():
        weights = teacher / "model.safetensors"
    if not weights.is_file():
        raise TformerError(f"no trained model in {teacher} (expected {teacher / MODEL_SUBDIR / 'model.safetensors'})")
    meta = {"teacher": str(teacher.resolve()), "teacher_sha256": _sha256(weights),
            "source": str(Path(src_path).resolve()), "source_sha256": _sha256(Path(src_path)),
            "beam": beam, "alpha": alpha}
    sidecar = corpus.with_name(corpus.name + ".json")
    if corpus.is_file() and sidecar.is_file():
        try:
            old = json.loads(sidecar.read_text(encoding="utf-8"))
        except ValueError:
            old = {}
        if ({k: old.get(k) for k in meta} == meta and old.get("corpus_sha256") == _sha256(corpus)
                and old.get("sentences") == len(read_lines(src_path))):
            log(f"distill: reusing {corpus} ({old.get('sentences')} sentences, teacher and sources unchanged)")
            return old
    translator = Translator.from_pretrained(teacher, device=device)
    translator.capabilities.require(Feature.BEAM, what="tformer distill's teacher")
    sources = read_lines(src_path)
    log(f"distill: translating {len(sources)} sentences with {teacher} (beam {beam})")
    t0 = time.perf_counter()
    hyps = translator.translate(sources, beam_size=beam, length_penalty=alpha, max_tokens=max_tokens,
                                progress=progress)
    seconds = round(time.perf_counter() - t0, 1)
    log(f"distill: {len(hyps)} sentences in {seconds} s")
    corpus.parent.mkdir(parents=True, exist_ok=True)
    sidecar.unlink(missing_ok=True)  # no sidecar may vouch for a corpus it did not see written
    atomic_write_text(corpus, "".join(h + "\n" for h in hyps))
    meta.update(sentences=len(hyps), teacher_seconds=seconds, corpus_sha256=_sha256(corpus))
    atomic_write_text(sidecar, json.dumps(meta, indent=2) + "\n")  # written last: it vouches for the corpus
    return meta


def _student_sources(cfg) -> str:
    """The student's training sources, after checking that the student translates plain-text files."""
    from tformer.tasks import get_task
    from tformer.tasks.translation import TranslationTask

    if not issubclass(get_task(cfg.task), TranslationTask):
        raise TformerError(f"distill trains a translation student (task translation or cmlm), not task {cfg.task!r}")
    src = cfg.data.path("train_src")
    if not src or not cfg.data.path("train_tgt") or cfg.data.format not in ("auto", "text") \
            or src.removesuffix(".gz").endswith((".tsv", ".jsonl", ".json")):
        raise TformerError("distill needs plain-text training files: data.train_src and data.train_tgt")
    if not Path(src).is_file():
        raise TformerError(f"training sources not found: {src}")
    return src


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import sys

    from tformer.tasks import load_run_config, run_training

    cfg = load_run_config(args.config, args.overrides)
    src = _student_sources(cfg)
    corpus = Path(args.corpus) if args.corpus else Path(cfg.run_dir) / "distilled.txt"
    progress = not args.no_progress and sys.stderr.isatty()
    meta = distill_corpus(args.teacher, src, corpus, beam=args.beam, alpha=args.alpha, max_tokens=args.max_tokens,
                          device=args.device, progress=progress)
    report = {"distilled_corpus": str(corpus), "distilled_sentences": meta.get("sentences"),
              "teacher_seconds": meta.get("teacher_seconds")}
    if args.corpus_only:
        print(json.dumps(report))
        return 0
    student = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, train_tgt=str(corpus.resolve())))
    summary = run_training(student, resume=args.resume, show_progress=False if args.no_progress else None)
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps({**summary, **report}))
    stopped = summary.get("interrupted")
    if stopped in signal.Signals.__members__:
        return 128 + signal.Signals[stopped].value
    return 0
