"""What a speech-recognition run saves beside its model (``asr.json``): the feature settings
(:class:`SpeechFeatures`, log-mel filterbanks) and the character vocabulary (:class:`CharVocabulary`). The task
(:mod:`tformer.tasks.asr`) makes them; :class:`~tformer.tasks.transcriber.Transcriber` reads them back.

Shape legend: T frames, M mel channels, N samples.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from tformer.config import Config, check
from tformer.data.audio import LogMelConfig, log_mel, normalize_utterances, read_wav
from tformer.data.audio.speech_sentences import CHARACTERS
from tformer.errors import TformerError


@dataclass(frozen=True)
class SpeechFeatures(Config):
    """Log-mel filterbanks of windows of ``window_ms`` every ``hop_ms`` at a file's own sample rate (the FFT is the
    next power of two), normalised per utterance. The paper's: 80 channels, 25 ms, 10 ms (§3.1).

    Energies more than ``top_db`` decibels below the utterance's loudest are raised to that level (librosa's
    ``power_to_db(top_db=80)``; Whisper's 8 log10 units): digital silence, the exact zeros espeak-ng writes before,
    between and after words, would otherwise sit at log(1e-10) = -23, far below any speech, and dominate the
    utterance's mean and variance. None = no limit."""

    n_mels: int = 80
    window_ms: float = 25.0
    hop_ms: float = 10.0
    top_db: float | None = 80.0

    def __post_init__(self) -> None:
        self.check_positive("n_mels", "window_ms", "hop_ms")
        self.check_positive("top_db", nullable=True)
        check(self.hop_ms <= self.window_ms, f"hop_ms ({self.hop_ms}) must not exceed window_ms ({self.window_ms})")

    def log_mel_config(self, sample_rate: int) -> LogMelConfig:
        """The settings at ``sample_rate`` Hz: windows and hops rounded to whole samples."""
        win = max(1, round(sample_rate * self.window_ms / 1000))
        hop = max(1, round(sample_rate * self.hop_ms / 1000))
        return LogMelConfig(sample_rate=sample_rate, n_fft=1 << (win - 1).bit_length(), hop_length=hop,
                            win_length=win, n_mels=self.n_mels)

    def of_waveform(self, waveform: Tensor, sample_rate: int) -> Tensor:
        """waveform (N,) -> normalised features (T, M); a waveform shorter than half a window is padded with
        silence first (the centred frames reflect it at both ends)."""
        cfg = self.log_mel_config(sample_rate)
        short = cfg.n_fft // 2 + 1 - waveform.shape[-1]
        if short > 0:
            waveform = torch.nn.functional.pad(waveform, (0, short))
        x = log_mel(waveform, cfg)  # (T, M)
        if self.top_db is not None:
            x = x.clamp(min=float(x.max()) - self.top_db * math.log(10) / 10)  # top_db below the peak, in nats
        return normalize_utterances(x[None])[0]

    def of_file(self, path: str | os.PathLike) -> tuple[Tensor, float]:
        """An audio file's features (T, M), and the seconds between frames (one hop at its sample rate)."""
        waveform, rate = read_wav(path)
        if waveform.numel() == 0:
            raise TformerError(f"{path} holds no samples")
        return self.of_waveform(waveform, rate), self.log_mel_config(rate).hop_length / rate


@dataclass(frozen=True)
class CharVocabulary(Config):
    """Characters and the read-out's special tokens before them: id 0 is CTC's blank and the padding."""

    specials: tuple[str, ...] = ("<blank>",)
    characters: str = CHARACTERS

    def __post_init__(self) -> None:
        check(len(self.specials) >= 1, "a vocabulary needs a special token at id 0 (blank / padding)")
        check(len(set(self.characters)) == len(self.characters), "the vocabulary's characters must be distinct")

    @property
    def tokens(self) -> tuple[str, ...]:
        return (*self.specials, *self.characters)

    @property
    def size(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        """Character ids of ``text``; a character outside the vocabulary is a one-line TformerError."""
        ids = {c: i + len(self.specials) for i, c in enumerate(self.characters)}
        unknown = sorted(set(text) - set(ids))
        if unknown:
            raise TformerError(f"character(s) {''.join(unknown)!r} of {text!r} are not in the vocabulary")
        return [ids[c] for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        """The characters of ``ids``, special tokens left out."""
        n = len(self.specials)
        return "".join(self.characters[i - n] for i in ids if n <= i < self.size)
