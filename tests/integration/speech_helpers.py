"""Tiny speech for the tests of task asr (the layout of ./dev data speech-sentences: a manifest and 16-bit WAV files):
each letter of "abcde" is a tone of its own frequency (70 ms, a Hann envelope, its pitch jittered), a space is 70 ms
of silence, and no letter follows itself (CTC needs a blank between repeats), at 8 kHz with a little noise."""

from __future__ import annotations

import random

import numpy as np

RATE, LETTERS, TONE_SECONDS = 8000, "abcde", 0.07
SPLITS = (("train", 48, 2, 7), ("valid", 8, 2, 7), ("test", 8, 2, 7), ("test_long", 4, 9, 12))  # count, characters


def tone_text(rng: random.Random, low: int, high: int) -> str:
    """A text of low..high characters of LETTERS and single spaces, no character twice in a row."""
    n, out = rng.randint(low, high), []
    while len(out) < n:
        space_ok = out and out[-1] != " " and len(out) < n - 1
        c = rng.choice(LETTERS + " ") if space_ok else rng.choice(LETTERS)
        if not out or c != out[-1]:
            out.append(c)
    return "".join(out)


def speak(text: str, rng: random.Random) -> np.ndarray:
    t = np.arange(int(RATE * TONE_SECONDS)) / RATE
    parts = [np.zeros(int(RATE * 0.05))]
    for c in text:
        if c == " ":
            parts.append(np.zeros_like(t))
        else:
            f = (300 + 350 * LETTERS.index(c)) * rng.uniform(0.97, 1.03)
            parts.append(0.5 * np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) * np.hanning(len(t)))
    x = np.concatenate([*parts, np.zeros(int(RATE * 0.05))])
    return (x + 0.01 * np.random.default_rng(rng.randint(0, 10**6)).standard_normal(len(x))).astype(np.float32)


def write_tone_sentences(root, seed: int = 0) -> None:
    import soundfile as sf

    from tformer.data.audio.speech_sentences import SpokenSentence, write_manifest

    rng, rows = random.Random(seed), []
    (root / "wav").mkdir(parents=True)
    for split, count, low, high in SPLITS:
        for i in range(count):
            uid, text = f"{split}-{i:03d}", tone_text(rng, low, high)
            x = speak(text, rng)
            sf.write(root / "wav" / f"{uid}.wav", x, RATE, subtype="PCM_16")
            rows.append(SpokenSentence(f"wav/{uid}.wav", text, "tone", 100, 50, split, len(x) / RATE, uid))
    write_manifest(root / "manifest.tsv", rows)


