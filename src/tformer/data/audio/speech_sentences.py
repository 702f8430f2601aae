"""Spoken English number sentences, synthesised with espeak-ng: a speech-recognition set made locally.

A sentence is one or more numbers below 10,000 in English words, one after another, with spaces for hyphens
(3205 and 19: "three thousand two hundred five nineteen"), so its words come from a vocabulary of 30
(:data:`VOCABULARY`: zero .. nineteen, twenty .. ninety, hundred, thousand) and its characters from
:data:`CHARACTERS`. The number words are :func:`tformer.data.synthetic.english_words`, the demo's.

Voices: a voice identity is an English accent of espeak-ng (:data:`ACCENTS`: British, American, Scottish,
Lancastrian, Received Pronunciation, West Midlands, Caribbean, New York) with a variant (:data:`VARIANTS`: male
m1..m8, female f1..f5), e.g. ``en-gb-scotland+f3``; each utterance also gets its own speed (-s, words per
minute) and pitch (-p, 0..99) drawn from ranges. Whole identities are held out (:func:`voice_splits`): for each
accent, ``test_per_accent`` variants speak only test and test_long, ``valid_per_accent`` others only valid, and
the rest train. Held-out identities are new combinations of an accent and a variant that training hears in other
combinations, assigned by rotation so that every variant and every accent stays in training. valid has its own
held-out voices, so choosing a model on valid rewards what test measures: recognising voices never heard.

Splits (:class:`SpeechSentencesConfig`): train, valid and test have 1..``max_words`` words; test_long has
``long_words`` words, more than any training utterance, to test length generalisation. Texts of 3 words or more
in valid, test and test_long never occur in train (shorter ones must repeat: there are only 28 one-word numbers).

Layout of ``root`` (:data:`SPEECH_SENTENCES_PATH`, made by :data:`SPEECH_SENTENCES_COMMAND`, which runs
``python -m tformer.data.audio.speech_sentences_build build data/speech_sentences``, synthesising with
espeak-ng in :mod:`.speech_sentences_build`)::

    manifest.tsv    id, split, voice, speed, pitch, seconds, text (a header line, then one row per utterance)
    wav/<id>.wav    16-bit mono PCM at espeak-ng's 22,050 Hz, untrimmed
    README.txt      how it was built: the espeak-ng version, seed, voices per split, counts and durations

Everything is drawn from ``random.Random`` streams seeded by ``seed`` and the split's name, so the manifest's
texts and voices are the same on every machine; the audio is espeak-ng's (its version is in README.txt).
"""

from __future__ import annotations

import os
import random
import re
import statistics
import string
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

from tformer.data.synthetic import english_words
from tformer.errors import TformerError, first_line

__all__ = ["ACCENTS", "CHARACTERS", "SPEECH_SENTENCES_COMMAND", "SPEECH_SENTENCES_PATH", "SPLITS", "VARIANTS",
           "VOCABULARY", "SpeechSentencesConfig", "SpokenSentence", "load_speech_sentences",
           "number_words", "plan", "read_manifest", "sentence", "summary", "voice_splits", "write_manifest"]

SPEECH_SENTENCES_PATH = "data/speech_sentences"
SPEECH_SENTENCES_COMMAND = "./dev data speech-sentences"  # what makes SPEECH_SENTENCES_PATH, under the repository
CHARACTERS = " '" + string.ascii_lowercase  # every character a text may hold (the generator uses a subset)
SPLITS = ("train", "valid", "test", "test_long")
COLUMNS = ("id", "split", "voice", "speed", "pitch", "seconds", "text")
MANIFEST = "manifest.tsv"
ACCENTS = ("en-gb", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029",
           "en-us-nyc")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5")
MAX_NUMBER = 9_999  # numbers in sentences: 0 .. 9,999, one to six words each
UNIQUE_FROM_WORDS = 3  # texts this long in valid / test / test_long are not in train
_TEXT = re.compile(r"[a-z']+( [a-z']+)*")
_ID = re.compile(r"[A-Za-z0-9_-]+")


def number_words(n: int) -> str:
    """``n`` (0..9,999) in English words separated by single spaces: 1921 -> "one thousand nine hundred twenty one"."""
    if not 0 <= n <= MAX_NUMBER:
        raise TformerError(f"sentence numbers are 0..{MAX_NUMBER}, got {n}")
    return english_words(n).replace("-", " ")


@cache
def _numbers_by_words() -> dict[int, tuple[int, ...]]:
    """Word count -> the numbers 0..MAX_NUMBER whose words are that many."""
    table: dict[int, list[int]] = {}
    for n in range(MAX_NUMBER + 1):
        table.setdefault(len(number_words(n).split()), []).append(n)
    return {k: tuple(v) for k, v in sorted(table.items())}


VOCABULARY = tuple(sorted({w for n in range(MAX_NUMBER + 1) for w in number_words(n).split()}))
"""The 30 words sentences use."""


def sentence(rng: random.Random, num_words: int) -> str:
    """A sentence of exactly ``num_words`` words: numbers of 1..6 words each, until the count is reached."""
    if num_words < 1:
        raise TformerError(f"a sentence has at least one word, got {num_words}")
    table, parts = _numbers_by_words(), []
    while num_words > 0:
        size = rng.randint(1, min(num_words, max(table)))  # a number of `size` words
        parts.append(number_words(rng.choice(table[size])))
        num_words -= size
    return " ".join(parts)


@dataclass(frozen=True)
class SpokenSentence:
    """One utterance of the set.

    Attributes:
        path: its WAV file (absolute once loaded; ``wav/<id>.wav`` relative to the set's directory in a plan).
        text: lower-case words of :data:`CHARACTERS`, single spaces.
        voice: espeak-ng's ``-v`` argument, accent+variant (e.g. ``en-us+f2``).
        speed: words per minute (``-s``).
        pitch: 0..99 (``-p``).
        split: one of :data:`SPLITS`.
        seconds: the audio's duration (0.0 in a plan, before synthesis).
        id: the manifest's id, the WAV file's stem.
    """

    path: str
    text: str
    voice: str
    speed: int
    pitch: int
    split: str
    seconds: float = 0.0
    id: str = ""


@dataclass(frozen=True)
class SpeechSentencesConfig:
    """What :func:`plan` draws: sizes, sentence lengths, voices and their ranges, all from ``seed``.

    Attributes:
        seed: seeds every draw.
        train, valid, test, test_long: utterances per split.
        max_words: train, valid and test sentences have 1..max_words words, uniformly.
        long_words: (lowest, highest) words of test_long sentences; lowest > max_words.
        speeds, pitches: inclusive ranges of espeak-ng's -s and -p, drawn uniformly per utterance.
        accents, variants: the voice identities are accent+variant for all pairs.
        test_per_accent, valid_per_accent: variants per accent held out for test (and test_long) and for valid.
    """

    seed: int = 0
    train: int = 4000
    valid: int = 300
    test: int = 300
    test_long: int = 200
    max_words: int = 8
    long_words: tuple[int, int] = (12, 16)
    speeds: tuple[int, int] = (130, 190)
    pitches: tuple[int, int] = (30, 70)
    accents: tuple[str, ...] = ACCENTS
    variants: tuple[str, ...] = VARIANTS
    test_per_accent: int = 2
    valid_per_accent: int = 1

    def __post_init__(self) -> None:
        for name in ("train", "valid", "test", "test_long", "test_per_accent", "valid_per_accent"):
            if getattr(self, name) < 0:
                raise TformerError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 1 <= self.max_words < self.long_words[0] <= self.long_words[1]:
            raise TformerError(f"need 1 <= max_words < long_words[0] <= long_words[1], got max_words="
                               f"{self.max_words}, long_words={self.long_words}")
        if not 80 <= self.speeds[0] <= self.speeds[1] <= 450 or not 0 <= self.pitches[0] <= self.pitches[1] <= 99:
            raise TformerError(f"need speeds in 80..450 and pitches in 0..99, low <= high, got speeds={self.speeds}, "
                               f"pitches={self.pitches}")
        if not self.accents or self.test_per_accent + self.valid_per_accent >= len(self.variants):
            raise TformerError(f"need accents and more variants ({len(self.variants)}) than test_per_accent + "
                               f"valid_per_accent ({self.test_per_accent + self.valid_per_accent})")

    def words(self, split: str) -> tuple[int, int]:
        """The (lowest, highest) word count of ``split``'s sentences."""
        return self.long_words if split == "test_long" else (1, self.max_words)


def voice_splits(cfg: SpeechSentencesConfig) -> dict[str, tuple[str, ...]]:
    """The voice identities of each split (test_long has test's): disjoint for train, valid and test.

    Variants and accents are shuffled by the seed; accent i then holds out the next ``test_per_accent`` variants
    from position i * test_per_accent for test and the ``valid_per_accent`` after them for valid (a rotation), so
    held-out identities spread over all variants and every variant keeps training identities.
    """
    rng = random.Random(f"{cfg.seed}:voices")
    accents, variants = rng.sample(cfg.accents, len(cfg.accents)), rng.sample(cfg.variants, len(cfg.variants))
    held = cfg.test_per_accent + cfg.valid_per_accent
    out: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for i, accent in enumerate(accents):
        start = i * cfg.test_per_accent
        for j in range(len(variants)):
            k = (j - start) % len(variants)  # position after this accent's start
            split = "test" if k < cfg.test_per_accent else "valid" if k < held else "train"
            out[split].append(f"{accent}+{variants[j]}")
    return {"train": tuple(sorted(out["train"])), "valid": tuple(sorted(out["valid"])),
            "test": tuple(sorted(out["test"])), "test_long": tuple(sorted(out["test"]))}


def _texts(rng: random.Random, count: int, words: tuple[int, int], avoid: set[str]) -> list[str]:
    """``count`` sentences of uniform word counts in ``words``; those of UNIQUE_FROM_WORDS words or more are not in
    ``avoid`` (redrawn until they are not)."""
    texts = []
    for _ in range(count):
        n = rng.randint(*words)
        text, tries = sentence(rng, n), 1
        while n >= UNIQUE_FROM_WORDS and text in avoid:
            if tries == 1000:
                raise TformerError(f"found no {n}-word sentence outside train in 1000 draws")
            text, tries = sentence(rng, n), tries + 1
        texts.append(text)
    return texts


def plan(cfg: SpeechSentencesConfig | None = None) -> list[SpokenSentence]:
    """Every utterance to synthesise, split by split (paths ``wav/<id>.wav``, seconds 0.0): deterministic in cfg.

    Each split's voices are used equally often (the identities in a seeded order, repeated, then shuffled); speed
    and pitch are uniform in their ranges.
    """
    cfg = SpeechSentencesConfig() if cfg is None else cfg
    voices, rows, train_texts = voice_splits(cfg), [], set()
    for split in SPLITS:
        count, rng = getattr(cfg, split), random.Random(f"{cfg.seed}:{split}")
        texts = _texts(rng, count, cfg.words(split), set() if split == "train" else train_texts)
        if split == "train":
            train_texts = set(texts)
        if count and not voices[split]:
            raise TformerError(f"split {split} has utterances but no voices")
        order = rng.sample(voices[split], len(voices[split]))  # a small split still gets varied voices
        who = [order[i % len(order)] for i in range(count)]
        rng.shuffle(who)
        for i, (text, voice) in enumerate(zip(texts, who, strict=True)):
            uid = f"{split}-{i:05d}"
            rows.append(SpokenSentence(path=f"wav/{uid}.wav", text=text, voice=voice, speed=rng.randint(*cfg.speeds),
                                       pitch=rng.randint(*cfg.pitches), split=split, id=uid))
    return rows


# ---- the manifest -----------------------------------------------------------------------------------------------
def write_manifest(path: str | os.PathLike, rows: Sequence[SpokenSentence]) -> None:
    """Write ``rows`` as a manifest: the header :data:`COLUMNS`, then one tab-separated line per utterance."""
    lines = ["\t".join(COLUMNS)]
    lines += [f"{r.id}\t{r.split}\t{r.voice}\t{r.speed}\t{r.pitch}\t{r.seconds:.3f}\t{r.text}" for r in rows]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _row(fields: list[str], where: str) -> SpokenSentence:
    """One manifest line's fields as a SpokenSentence (path ``wav/<id>.wav``), checked; errors name ``where``."""
    if len(fields) != len(COLUMNS):
        raise TformerError(f"{where}: expected {len(COLUMNS)} tab-separated fields, got {len(fields)}")
    uid, split, voice, speed, pitch, seconds, text = fields
    if not _ID.fullmatch(uid):
        raise TformerError(f"{where}: id {uid!r} must be letters, digits, '-' or '_'")
    if split not in SPLITS:
        raise TformerError(f"{where}: split {split!r} is not one of {', '.join(SPLITS)}")
    if not voice or any(c.isspace() for c in voice):
        raise TformerError(f"{where}: voice {voice!r} must be one word")
    try:
        speed_, pitch_, seconds_ = int(speed), int(pitch), float(seconds)
    except ValueError:
        raise TformerError(f"{where}: speed and pitch must be integers and seconds a number, got {speed!r}, "
                           f"{pitch!r}, {seconds!r}") from None
    if not seconds_ > 0:
        raise TformerError(f"{where}: seconds must be positive, got {seconds!r}")
    if not _TEXT.fullmatch(text):
        raise TformerError(f"{where}: text {text!r} must be words of {CHARACTERS.strip()!r} joined by single spaces")
    return SpokenSentence(path=f"wav/{uid}.wav", text=text, voice=voice, speed=speed_, pitch=pitch_, split=split,
                          seconds=seconds_, id=uid)


def read_manifest(path: str | os.PathLike) -> list[SpokenSentence]:
    """The rows of a manifest, checked (paths stay ``wav/<id>.wav``): a bad header, field, or duplicate id is a
    one-line TformerError naming the file and line."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise TformerError(f"cannot read {p}: {first_line(e)}") from None
    if not lines or lines[0].split("\t") != list(COLUMNS):
        raise TformerError(f"{p}: the first line must be the header {' '.join(COLUMNS)} (tab-separated)")
    rows, seen = [], set()
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        row = _row(line.split("\t"), f"{p}:{number}")
        if row.id in seen:
            raise TformerError(f"{p}:{number}: duplicate id {row.id}")
        seen.add(row.id)
        rows.append(row)
    if not rows:
        raise TformerError(f"{p}: no utterances")
    return rows


def load_speech_sentences(root: str | os.PathLike = SPEECH_SENTENCES_PATH) -> dict[str, list[SpokenSentence]]:
    """The set in ``root`` by split: keys :data:`SPLITS` (empty lists for splits it lacks), absolute WAV paths.

    Raises:
        TformerError: ``root`` or its manifest is missing (naming the command that builds the set), the manifest
            is malformed, or a WAV file it lists is missing, in one line.
    """
    base = Path(root).resolve()
    if not base.is_dir():
        raise TformerError(f"{root} not found (the spoken number sentences: `{SPEECH_SENTENCES_COMMAND}` writes "
                           f"{SPEECH_SENTENCES_PATH})")
    if not (base / MANIFEST).is_file():
        raise TformerError(f"{root} has no {MANIFEST} (rebuild it: `{SPEECH_SENTENCES_COMMAND} --force`)")
    out: dict[str, list[SpokenSentence]] = {split: [] for split in SPLITS}
    for row in read_manifest(base / MANIFEST):
        wav = base / row.path
        if not wav.is_file():
            raise TformerError(f"{wav} is missing (rebuild the set: `{SPEECH_SENTENCES_COMMAND} --force`)")
        out[row.split].append(replace(row, path=str(wav)))
    return out


def summary(rows: Sequence[SpokenSentence]) -> str:
    """Per split: utterances, hours, seconds and words (min / median / max), and the voices, as text lines."""
    lines = []
    for split in SPLITS:
        part = [r for r in rows if r.split == split]
        if not part:
            continue
        secs, words = [r.seconds for r in part], [len(r.text.split()) for r in part]
        voices = sorted({r.voice for r in part})
        lines += [f"{split}: {len(part)} utterances, {sum(secs) / 3600:.2f} h; seconds {min(secs):.2f} / "
                  f"{statistics.median(secs):.2f} / {max(secs):.2f}; words {min(words)} / "
                  f"{statistics.median(words):g} / {max(words)} (min / median / max)",
                  f"  {len(voices)} voices: {' '.join(voices)}"]
    total = sum(r.seconds for r in rows)
    return "\n".join([*lines, f"all: {len(rows)} utterances, {total / 3600:.2f} h"])
