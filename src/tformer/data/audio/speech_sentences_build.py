"""Building the spoken number sentences (:mod:`.speech_sentences`) with espeak-ng: each planned utterance is
spoken into ``wav/<id>.wav`` by the ``espeak-ng`` program, in a temporary directory renamed into place at the end,
so a set on disk is either complete or absent.

    python -m tformer.data.audio.speech_sentences_build build ROOT [--seed S] [--force] [--workers N] [--train N ...]
    python -m tformer.data.audio.speech_sentences_build info ROOT

(``./dev data speech-sentences`` runs the first into ``data/speech_sentences``.) espeak-ng is a system program
(``apt-get install espeak-ng``), not a Python dependency; without it, building fails with a one-line error.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import wave
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path

from tformer.data.audio.speech_sentences import (
    COLUMNS,
    MANIFEST,
    SPEECH_SENTENCES_COMMAND,
    SPLITS,
    VOCABULARY,
    SpeechSentencesConfig,
    SpokenSentence,
    load_speech_sentences,
    plan,
    summary,
    write_manifest,
)
from tformer.data.build_cli import run_build
from tformer.errors import TformerError
from tformer.io.files import atomic_directory

__all__ = ["build", "main"]


def _espeak(*args: str) -> str:
    """espeak-ng's stdout for ``args``; a missing program or a failure is a one-line TformerError."""
    try:
        done = subprocess.run(["espeak-ng", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise TformerError("espeak-ng is not installed (apt-get install espeak-ng)") from None
    if done.returncode != 0:
        message = done.stderr.strip().splitlines()
        raise TformerError(f"espeak-ng {' '.join(args)} failed: {message[0] if message else done.returncode}")
    return done.stdout


def _check_voices(rows: Sequence[SpokenSentence]) -> None:
    """Every accent and variant the rows use exists in this espeak-ng (it ignores an unknown variant silently)."""
    accents = {line.split()[1] for line in _espeak("--voices=en").splitlines()[1:] if line.split()}
    variants = set(re.findall(r"!v/(\S+)", _espeak("--voices=variant")))
    for voice in sorted({r.voice for r in rows}):
        accent, _, variant = voice.partition("+")
        if accent not in accents or (variant and variant not in variants):
            raise TformerError(f"espeak-ng has no voice {voice} (see espeak-ng --voices=en and --voices=variant)")


def _synthesise(row: SpokenSentence, directory: Path) -> SpokenSentence:
    """Speak ``row`` into ``directory / row.path``; returns it with its duration."""
    out = directory / row.path
    _espeak("-v", row.voice, "-s", str(row.speed), "-p", str(row.pitch), "-w", str(out), row.text)
    with wave.open(str(out), "rb") as w:
        return replace(row, seconds=w.getnframes() / w.getframerate())


def _readme(cfg: SpeechSentencesConfig, rows: Sequence[SpokenSentence], version: str, seconds: float) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in asdict(cfg).items() if k not in ("accents", "variants"))
    return (f"Spoken English number sentences, synthesised with {version}\n"
            f"Built by `{SPEECH_SENTENCES_COMMAND}` (python -m tformer.data.audio.speech_sentences_build build) in "
            f"{seconds:.0f} s; see tformer/data/audio/speech_sentences.py and speech_sentences_build.py.\n"
            f"Settings: {settings}\n"
            f"Accents: {' '.join(cfg.accents)}\nVariants: {' '.join(cfg.variants)}\n"
            f"Voice identities are accent+variant; valid and test (test_long shares test's) hold out their own.\n"
            f"Vocabulary ({len(VOCABULARY)} words): {' '.join(VOCABULARY)}\n"
            f"Files: {MANIFEST} ({' '.join(COLUMNS)}), wav/<id>.wav (16-bit mono PCM, untrimmed)\n\n"
            f"{summary(rows)}\n")


def build(root: str | os.PathLike, cfg: SpeechSentencesConfig | None = None, *, force: bool = False,
          workers: int = 2) -> list[SpokenSentence] | None:
    """Synthesise the set of ``cfg`` into ``root`` atomically: built in a temporary directory beside it, then
    renamed, so ``root`` is either complete or absent. Returns the rows, or None when ``root`` exists and not
    ``force`` (nothing is done). ``workers`` espeak-ng processes run at once."""
    cfg = SpeechSentencesConfig() if cfg is None else cfg
    target = Path(root)
    if target.exists() and not force:
        return None
    rows = plan(cfg)
    _check_voices(rows)
    version = _espeak("--version").strip().split("  Data at")[0]
    with atomic_directory(target) as tmp:
        start = time.monotonic()
        (tmp / "wav").mkdir()
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # each thread waits on one espeak-ng
            rows = list(pool.map(lambda r: _synthesise(r, tmp), rows))
        write_manifest(tmp / MANIFEST, rows)
        (tmp / "README.txt").write_text(_readme(cfg, rows, version, time.monotonic() - start), encoding="utf-8")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """``build ROOT [--seed S] [--force] [--workers N] [--train N ...]`` or ``info ROOT``; exit status 2 on errors."""
    parser = argparse.ArgumentParser(
        prog="python -m tformer.data.audio.speech_sentences_build",
        description="Build the spoken number sentences with espeak-ng, or summarise a built set.")
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("build", help="synthesise the set into ROOT (atomically)")
    make.add_argument("root")
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--force", action="store_true", help="rebuild ROOT when it exists")
    make.add_argument("--workers", type=int, default=2, help="espeak-ng processes at once")
    for split in SPLITS:
        make.add_argument(f"--{split.replace('_', '-')}", type=int, default=getattr(SpeechSentencesConfig, split))
    sub.add_parser("info", help="print the per-split summary of ROOT").add_argument("root")
    args = parser.parse_args(argv)
    if args.command == "info":
        return run_build(lambda: [r for rows in load_speech_sentences(args.root).values() for r in rows],
                         args.root, summary)
    start = time.monotonic()

    def build_root():
        cfg = SpeechSentencesConfig(seed=args.seed, **{s: getattr(args, s) for s in SPLITS})
        return build(args.root, cfg, force=args.force, workers=args.workers)

    return run_build(build_root, args.root, lambda rows: f"wrote {args.root} in {time.monotonic() - start:.1f} s\n"
                                                   f"{summary(rows)}")


if __name__ == "__main__":
    sys.exit(main())
