"""Log-mel filterbank features with torch, and per-utterance mean/variance normalisation.

The Conformer reads 80-channel log-mel filterbanks of 25 ms windows every 10 ms (Gulati et al., 2020, §3.1):

    X[t, k] = STFT of the waveform, Hann window of ``win_length``, hop ``hop_length``, ``n_fft`` bins
    M[t, m] = sum_k |X[t, k]|^power  W[k, m]        W: ``n_mels`` triangular filters evenly spaced in mel
    feature[t, m] = log(max(M[t, m], floor))

W's triangles rise from mel point m to m + 1 and fall to m + 2, for n_mels + 2 points evenly spaced in mel between
``f_min`` and ``f_max`` and mapped back to Hz (the filters are triangles in Hz, as librosa, torchaudio and Hugging
Face build them), on the mel scale "htk" (2595 log10(1 + f / 700)) or "slaney" (linear below 1 kHz, logarithmic
above, as Slaney's Auditory Toolbox); ``mel_norm="slaney"`` scales each filter to unit area (2 / its width in Hz).

Frames are centred (``center``): frame t covers samples around t · hop, the waveform reflected at both ends, so
N samples give 1 + N // hop frames (:func:`num_frames`). Compute each utterance's features alone, then pad the
batch: the last frames of an utterance read past its end.

Shape legend: B batch, N samples, T frames, K = n_fft // 2 + 1 frequency bins, M n_mels.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor

from tformer.errors import ConfigError
from tformer.registry import Registry

__all__ = ["MEL_SCALES", "LogMelConfig", "frame_mask", "log_mel", "mel_filterbank", "normalize_utterances",
           "num_frames"]

N = TypeVar("N", int, Tensor)


# ---- mel scales: Hz -> mel and back, on float64 tensors -----------------------------------------------
def _htk_mel(hz: Tensor) -> Tensor:
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def _htk_hz(mel: Tensor) -> Tensor:
    return 700.0 * (torch.pow(10.0, mel / 2595.0) - 1.0)


_SLANEY_BREAK_HZ, _SLANEY_BREAK_MEL, _SLANEY_LOG_STEP = 1000.0, 15.0, math.log(6.4) / 27.0


def _slaney_mel(hz: Tensor) -> Tensor:
    log_part = _SLANEY_BREAK_MEL + torch.log(hz.clamp(min=_SLANEY_BREAK_HZ) / _SLANEY_BREAK_HZ) / _SLANEY_LOG_STEP
    return torch.where(hz >= _SLANEY_BREAK_HZ, log_part, 3.0 * hz / 200.0)


def _slaney_hz(mel: Tensor) -> Tensor:
    log_part = _SLANEY_BREAK_HZ * torch.exp(_SLANEY_LOG_STEP * (mel - _SLANEY_BREAK_MEL))
    return torch.where(mel >= _SLANEY_BREAK_MEL, log_part, 200.0 * mel / 3.0)


MEL_SCALES: Registry[tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = Registry("mel_scale", {
    "htk": (_htk_mel, _htk_hz),
    "slaney": (_slaney_mel, _slaney_hz),
})
"""Mel scale name -> (Hz -> mel, mel -> Hz)."""


@dataclass(frozen=True)
class LogMelConfig:
    """The log-mel filterbank's settings (defaults: 16 kHz audio, 25 ms windows, 10 ms hop, 80 channels).

    Attributes:
        sample_rate: samples per second of the waveform.
        n_fft: FFT size; K = n_fft // 2 + 1 frequency bins.
        hop_length: samples between frames.
        win_length: Hann window length, <= n_fft (None = n_fft); a shorter one is centred in the FFT frame.
        n_mels: mel filters M.
        f_min, f_max: the band the filters cover in Hz (f_max None = sample_rate / 2).
        mel_scale: "htk" or "slaney" (:data:`MEL_SCALES`).
        mel_norm: None (peak 1) or "slaney" (unit area).
        power: 2 = power spectrum, 1 = magnitude.
        floor: the smallest filterbank energy before the log (log(0) would be -inf).
        center: centre frame t on sample t · hop_length (reflecting the waveform at the ends).
    """

    sample_rate: int = 16000
    n_fft: int = 400
    hop_length: int = 160
    win_length: int | None = None
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None
    mel_scale: str = "htk"
    mel_norm: str | None = None
    power: float = 2.0
    floor: float = 1e-10
    center: bool = True

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_fft", "hop_length", "n_mels", "power", "floor"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.win_length is not None and not 0 < self.win_length <= self.n_fft:
            raise ConfigError(f"win_length must be in [1, n_fft={self.n_fft}], got {self.win_length}")
        MEL_SCALES.lookup(self.mel_scale)
        if self.mel_norm not in (None, "slaney"):
            raise ConfigError(f"mel_norm must be null or 'slaney', got {self.mel_norm!r}")
        if not 0.0 <= self.f_min < self.top_frequency <= self.sample_rate / 2:
            raise ConfigError(f"need 0 <= f_min < f_max <= sample_rate / 2, got f_min={self.f_min}, "
                              f"f_max={self.f_max}, sample_rate={self.sample_rate}")

    @property
    def top_frequency(self) -> float:
        """f_max, or the Nyquist frequency when it is None."""
        return self.sample_rate / 2 if self.f_max is None else self.f_max


def mel_filterbank(cfg: LogMelConfig | None = None) -> Tensor:
    """W, (K, M) float64: column m is the m-th triangular filter over the K = n_fft // 2 + 1 FFT bins."""
    cfg = LogMelConfig() if cfg is None else cfg
    to_mel, to_hz = MEL_SCALES.lookup(cfg.mel_scale)
    edges = torch.tensor([cfg.f_min, cfg.top_frequency], dtype=torch.float64)
    mels = torch.linspace(*to_mel(edges).tolist(), cfg.n_mels + 2, dtype=torch.float64)  # (M + 2,) evenly in mel
    points = to_hz(mels)  # (M + 2,) in Hz
    bins = torch.arange(cfg.n_fft // 2 + 1, dtype=torch.float64) * cfg.sample_rate / cfg.n_fft  # (K,) in Hz
    lower, centre, upper = points[:-2], points[1:-1], points[2:]  # (M,) each
    rising = (bins[:, None] - lower) / (centre - lower)  # (K, M)
    falling = (upper - bins[:, None]) / (upper - centre)  # (K, M)
    w = torch.minimum(rising, falling).clamp(min=0.0)  # (K, M) triangles
    return w * (2.0 / (upper - lower)) if cfg.mel_norm == "slaney" else w


def num_frames(num_samples: N, cfg: LogMelConfig | None = None) -> N:
    """Frames of ``num_samples`` samples (an int or an int64 tensor): 1 + N // hop centred, else
    1 + (N - n_fft) // hop."""
    cfg = LogMelConfig() if cfg is None else cfg
    if cfg.center:
        return 1 + num_samples // cfg.hop_length
    return 1 + (num_samples - cfg.n_fft) // cfg.hop_length


def log_mel(waveform: Tensor, cfg: LogMelConfig | None = None) -> Tensor:
    """Log-mel filterbank features of ``waveform`` (..., N) float -> (..., T, M), in the waveform's dtype.

    float64 input is computed in float64 throughout (the oracle's precision); float32 in float32.
    """
    cfg = LogMelConfig() if cfg is None else cfg
    if not waveform.is_floating_point():
        raise ValueError(f"expected a float waveform, got {waveform.dtype}")
    lead, n = waveform.shape[:-1], waveform.shape[-1]
    win = cfg.n_fft if cfg.win_length is None else cfg.win_length
    window = torch.hann_window(win, periodic=True, dtype=waveform.dtype, device=waveform.device)
    spec = torch.stft(waveform.reshape(-1, n), cfg.n_fft, hop_length=cfg.hop_length, win_length=win,
                      window=window, center=cfg.center, pad_mode="reflect", return_complex=True)  # (B, K, T)
    power = spec.abs().pow(cfg.power)  # (B, K, T)
    fbank = mel_filterbank(cfg).to(device=waveform.device, dtype=waveform.dtype)  # (K, M)
    mel = power.transpose(1, 2) @ fbank  # (B, T, K) @ (K, M) -> (B, T, M)
    return mel.clamp(min=cfg.floor).log().reshape(*lead, mel.shape[1], cfg.n_mels)  # (..., T, M)


def frame_mask(lengths: Tensor, max_len: int) -> Tensor:
    """(B, max_len) boolean, True = a real frame (t < lengths[b])."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]  # (B, T)


def normalize_utterances(features: Tensor, lengths: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Per-utterance, per-channel mean and variance normalisation over the real frames.

    Args:
        features: (B, T, M), right-padded.
        lengths: (B,) real frames of each row (None = all T).
        eps: added to the variance before the square root (a constant channel becomes 0, not NaN).

    Returns:
        (B, T, M): (x - mean) / sqrt(var + eps) on real frames (mean and biased variance of the utterance's real
        frames), 0 on padded frames, so a padded batch gives each utterance what it gets alone.
    """
    b, t, _ = features.shape
    if lengths is None:
        lengths = torch.full((b,), t, dtype=torch.long, device=features.device)
    real = frame_mask(lengths, t)[:, :, None]  # (B, T, 1)
    count = lengths.clamp(min=1).to(features.dtype)[:, None, None]  # (B, 1, 1)
    mean = features.masked_fill(~real, 0.0).sum(dim=1, keepdim=True) / count  # (B, 1, M)
    centred = (features - mean).masked_fill(~real, 0.0)  # (B, T, M)
    var = centred.pow(2).sum(dim=1, keepdim=True) / count  # (B, 1, M)
    return centred * torch.rsqrt(var + eps)
