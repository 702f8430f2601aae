"""Audio features: log-mel filterbanks against Hugging Face's numpy implementation (transformers.audio_utils),
normalisation and SpecAugment by their properties, and reading WAV files."""

import sys

import numpy as np
import pytest
import torch

from tformer.data.audio import (
    LogMelConfig,
    SpecAugment,
    frame_mask,
    log_mel,
    mel_filterbank,
    normalize_utterances,
    num_frames,
    read_wav,
)
from tformer.errors import ConfigError, TformerError

SCALES = [("htk", None), ("slaney", None), ("slaney", "slaney"), ("htk", "slaney")]


def _chirp(seconds: float = 0.5, rate: int = 16000, dtype=torch.float64) -> torch.Tensor:
    """A sine sweeping 100 Hz -> 7 kHz (every mel band lit in turn) and a faint seeded noise floor (-60 dB)."""
    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    f0, f1 = 100.0, 7000.0
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / (2 * seconds))
    noise = torch.randn(t.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return (0.5 * torch.sin(phase) + 1e-3 * noise).to(dtype)


def _oracle(waveform: np.ndarray, cfg: LogMelConfig) -> np.ndarray:
    """transformers.audio_utils: numpy STFT (float64, stored as complex64) and its mel filter bank -> (T, M)."""
    audio_utils = pytest.importorskip("transformers.audio_utils")
    fbank = audio_utils.mel_filter_bank(cfg.n_fft // 2 + 1, cfg.n_mels, cfg.f_min, cfg.top_frequency,
                                        cfg.sample_rate, norm=cfg.mel_norm, mel_scale=cfg.mel_scale)
    window = audio_utils.window_function(cfg.n_fft, "hann", periodic=True)
    spec = audio_utils.spectrogram(waveform, window, frame_length=cfg.n_fft, hop_length=cfg.hop_length,
                                   power=cfg.power, center=cfg.center, pad_mode="reflect", mel_filters=fbank,
                                   mel_floor=cfg.floor, log_mel="log", dtype=np.float64)
    return spec.T


# ---- the mel filterbank and log-mel features against transformers.audio_utils -----------------------
@pytest.mark.parametrize("scale, norm", SCALES)
def test_mel_filterbank_equals_hugging_faces(scale, norm):
    audio_utils = pytest.importorskip("transformers.audio_utils")
    cfg = LogMelConfig(n_fft=512, n_mels=40, f_min=20.0, f_max=7600.0, mel_scale=scale, mel_norm=norm)
    ref = audio_utils.mel_filter_bank(257, 40, 20.0, 7600.0, 16000, norm=norm, mel_scale=scale)
    ours = mel_filterbank(cfg)
    assert ours.shape == (257, 40) and ours.dtype == torch.float64
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize("scale, norm", SCALES[:3])
def test_log_mel_equals_hugging_faces_in_float64(scale, norm):
    # Tolerance 1e-5 (natural log): both compute in float64, but the oracle stores the STFT as complex64,
    # a relative rounding of 6e-8 per bin, about 1e-7 in the log.
    cfg = LogMelConfig(mel_scale=scale, mel_norm=norm)
    wave = _chirp()
    ours = log_mel(wave, cfg)
    ref = _oracle(wave.numpy(), cfg)
    assert ours.shape == ref.shape == (num_frames(8000, cfg), 80) == (51, 80)
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-5, rtol=0)


def test_log_mel_in_float32_is_within_float32_rounding():
    # float32 STFT rounding is absolute, about 1e-7 of a frame's energy, so a band's log error grows as its energy
    # falls below the frame's loudest band: measured 8e-7 within e^-5 of it, 1e-4 within e^-15, 4e-4 within e^-20
    # (-87 dB), 3e-3 in a noise band e^-21 down. Tolerance 1e-3 on every band within e^-20 of its frame's loudest.
    cfg = LogMelConfig()
    ours = log_mel(_chirp(dtype=torch.float32), cfg)
    assert ours.dtype == torch.float32
    ours = ours.double().numpy()
    ref = _oracle(_chirp().numpy(), cfg)
    loud = ref >= ref.max(axis=1, keepdims=True) - 20.0
    assert loud.mean() > 0.95
    np.testing.assert_allclose(ours[loud], ref[loud], atol=1e-3, rtol=0)


def test_frames_and_batches():
    cfg = LogMelConfig(n_fft=256, hop_length=100, n_mels=20, center=False)
    waves = torch.randn(2, 3, 1234)
    feats = log_mel(waves, cfg)
    assert feats.shape == (2, 3, num_frames(1234, cfg), 20) == (2, 3, 1 + (1234 - 256) // 100, 20)
    torch.testing.assert_close(feats[1, 2], log_mel(waves[1, 2], cfg))
    assert num_frames(torch.tensor([16000]), LogMelConfig()).tolist() == [101]
    assert log_mel(torch.zeros(800), LogMelConfig()).min().item() == pytest.approx(np.log(1e-10))  # the floor


@pytest.mark.parametrize("kw, needle", [
    ({"mel_scale": "bark"}, "mel_scale must be one of ('htk', 'slaney')"),
    ({"mel_norm": "area"}, "mel_norm must be null or 'slaney'"),
    ({"f_max": 9000.0}, "need 0 <= f_min < f_max <= sample_rate / 2"),
    ({"win_length": 500}, "win_length must be in [1, n_fft=400]"),
    ({"hop_length": 0}, "hop_length must be positive"),
])
def test_bad_feature_settings_are_one_line_errors(kw, needle):
    with pytest.raises(ConfigError) as e:
        LogMelConfig(**kw)
    assert needle in str(e.value)


# ---- per-utterance normalisation ----------------------------------------------------------------
def test_normalisation_gives_zero_mean_unit_variance_on_real_frames_and_zero_padding():
    torch.manual_seed(3)
    feats = torch.randn(3, 20, 8) * 4.0 + 7.0
    lengths = torch.tensor([20, 12, 5])
    out = normalize_utterances(feats, lengths)
    for b, n in enumerate(lengths.tolist()):
        real = out[b, :n]
        torch.testing.assert_close(real.mean(0), torch.zeros(8), atol=1e-5, rtol=0)
        torch.testing.assert_close(real.var(0, unbiased=False), torch.ones(8), atol=1e-4, rtol=0)
        assert not out[b, n:].any()  # padding is 0
        torch.testing.assert_close(out[b, :n], normalize_utterances(feats[b : b + 1, :n])[0])  # batch = alone


def test_normalisation_ignores_a_per_channel_gain_and_offset():
    feats, lengths = torch.randn(2, 15, 6, dtype=torch.float64), torch.tensor([15, 9])
    gain, offset = torch.rand(6, dtype=torch.float64) * 10 + 1, torch.randn(6, dtype=torch.float64) * 100
    torch.testing.assert_close(normalize_utterances(feats * gain + offset, lengths, eps=0.0),
                               normalize_utterances(feats, lengths, eps=0.0))
    assert torch.equal(frame_mask(lengths, 15).sum(1), lengths)


# ---- SpecAugment -----------------------------------------------------------------------------------
def test_spec_augment_masks_exactly_the_requested_widths_on_real_frames():
    aug = SpecAugment(freq_masks=1, min_freq_width=5, max_freq_width=5, time_masks=1, min_time_width=7,
                      max_time_width=7, mask_value=-9.0)
    feats, lengths = torch.randn(4, 30, 20), torch.tensor([30, 22, 12, 8])
    masks = aug.masks(feats, lengths, torch.Generator().manual_seed(0))
    out = aug(feats, lengths, torch.Generator().manual_seed(0))
    for b, n in enumerate(lengths.tolist()):
        real = masks[b, :n]
        channels = real.all(dim=0).nonzero().flatten()  # channels masked on every real frame
        frames = real.all(dim=1).nonzero().flatten()  # frames masked on every channel
        assert len(channels) == 5 and channels.tolist() == list(range(channels[0], channels[0] + 5))
        assert len(frames) == 7 and frames.tolist() == list(range(frames[0], frames[0] + 7))
        assert int(real.sum()) == 5 * n + 7 * 20 - 5 * 7  # the two bands and nothing else
        assert not masks[b, n:].any()  # nothing on padding
    assert torch.equal(out, feats.masked_fill(masks, -9.0))


def test_spec_augment_is_seeded_and_bounded():
    aug = SpecAugment(freq_masks=2, max_freq_width=6, time_masks=3, max_time_width=10, max_time_ratio=0.2)
    feats, lengths = torch.randn(5, 50, 16), torch.tensor([50, 40, 30, 20, 10])
    first = aug(feats, lengths, torch.Generator().manual_seed(7))
    assert torch.equal(first, aug(feats, lengths, torch.Generator().manual_seed(7)))
    assert not torch.equal(first, aug(feats, lengths, torch.Generator().manual_seed(8)))
    masks = aug.masks(feats, lengths, torch.Generator().manual_seed(7))
    for b, n in enumerate(lengths.tolist()):
        frames = masks[b, :n].all(dim=1)  # whole frames masked: at most 3 masks of at most floor(0.2 n) each
        assert int(frames.sum()) <= 3 * min(10, int(0.2 * n))
    assert torch.equal(SpecAugment(freq_masks=0, time_masks=0)(feats, lengths), feats)


@pytest.mark.parametrize("kw, needle", [
    ({"freq_masks": -1}, "freq_masks must be >= 0"),
    ({"min_time_width": 5, "max_time_width": 4}, "min_time_width (5) must be <= max_time_width (4)"),
    ({"max_time_ratio": 0.0}, "max_time_ratio must be in (0, 1]"),
])
def test_bad_spec_augment_settings_are_one_line_errors(kw, needle):
    with pytest.raises(ConfigError) as e:
        SpecAugment(**kw)
    assert needle in str(e.value)


# ---- reading WAV files ---------------------------------------------------------------------------
def test_reading_without_soundfile_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "soundfile", None)  # import soundfile -> ImportError
    with pytest.raises(TformerError, match="pip install soundfile"):
        read_wav(tmp_path / "a.wav")


def test_wav_round_trip(tmp_path):
    soundfile = pytest.importorskip("soundfile")
    wave = (0.5 * torch.sin(torch.arange(1600) / 5.0)).numpy()
    soundfile.write(tmp_path / "a.wav", np.stack([wave, -wave], axis=1), 8000, subtype="FLOAT")
    mono, rate = read_wav(tmp_path / "a.wav")
    stereo, _ = read_wav(tmp_path / "a.wav", mono=False)
    assert rate == 8000 and stereo.shape == (2, 1600) and mono.abs().max() < 1e-6
    np.testing.assert_allclose(stereo[0].numpy(), wave, atol=1e-7)
    with pytest.raises(TformerError, match="audio file not found"):
        read_wav(tmp_path / "missing.wav")
