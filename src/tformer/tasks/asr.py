"""Speech recognition: the Conformer encoder (Gulati et al., 2020) on log-mel filterbanks, read out as characters by
CTC (Graves et al., 2006) or by the paper's Transformer decoder (attention; optionally joint CTC/attention, Kim et
al., 2017; Watanabe et al., 2017), trained on spoken sentences such as espeak-ng's numbers in words.

Data: ``data.train_src`` names a directory of spoken sentences (:mod:`tformer.data.audio.speech_sentences`; unset:
``data/speech_sentences``, made by ``./dev data speech-sentences``) with the splits train, valid, test (voices held out
of training) and test_long (held-out voices, sentences longer than any in training). Features
(:class:`SpeechFeatures`): ``asr.n_mels`` log-mel channels of ``asr.window_ms`` windows every ``asr.hop_ms``, at each
file's own sample rate (nothing is resampled), limited to ``asr.top_db`` below the utterance's peak (espeak-ng's
digital silence), each utterance normalised alone (per channel, mean 0 and variance 1);
computed once, when the run starts (the test splits when it ends), and kept in memory. SpecAugment masks training
utterances (``asr.freq_masks``, ``asr.time_masks`` and their widths; off by default), drawn from the run's seeded
generator, so resuming stays exact. Targets are characters (:class:`CharVocabulary`, from the data's inventory);
the vocabulary and the feature settings are saved in the run directory as ``asr.json``, so that
:class:`~tformer.tasks.transcriber.Transcriber` (``tformer transcribe``) works from the run alone.

Model: ``asr.model`` picks the read-out from :data:`ASR_MODELS` (``ctc``:
:class:`~tformer.models.conformer.ctc.ConformerCTC`; ``attention``:
:class:`~tformer.models.conformer.asr.ConformerSeq2Seq` with ``asr.decoder_layers`` decoder layers and, when
``asr.ctc_weight`` > 0, a CTC loss on the encoder beside the decoder's); ``model.preset`` picks the encoder's size from
:data:`PRESETS` and the other ``model`` keys are :class:`ConformerConfig` fields on top of it (``n_mels`` is
``asr.n_mels``). An utterance costs its frames in the token budget (``train.max_tokens``). Validation: loss, and the
character and word error rates (CER, WER) of greedy transcripts of the first ``asr.wer_samples`` validation utterances.
At the end the best model (by validation loss) is scored once on test and test_long, greedy and with a beam (CTC prefix
beam search, 8; attention beam search, 4; or ``asr.beam_size``): ``test_wer_beam``, ``test_long_cer_greedy``, ... in the
run's summary.

Alignment (attention only): ``train.guided_attention`` (weight > 0) adds the guided attention loss (Tachibana et al.,
2017; :mod:`tformer.training.guided_attention`) on the decoder's cross-attention over the encoder frames, in training
only, logged as ``guided_attention``; ``asr.monotonic_window`` (N encoder frames, null = off) makes the final test
scores decode under a monotonic window (:class:`~tformer.nn.cache.MonotonicWindow`: [focus - back, focus + N], the
focus moving only forward). Encoder frames are 4x subsampled: at 10 ms hops, 25 a second.

The config: ``task: asr`` and its section ``asr: {model: ctc, n_mels: 80, time_masks: 2, ...}``.

Shape legend: B utterances, T frames (padded), M mel channels, T' encoder frames, L characters (padded), V vocabulary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from tformer.config import CrossAttentionConfig, check, check_cross_attention, from_dict
from tformer.console import log
from tformer.data.audio import SpecAugment
from tformer.data.audio.speech_sentences import (
    CHARACTERS,
    SPEECH_SENTENCES_PATH,
    load_speech_sentences,
)
from tformer.data.batching import TokenBatchSampler
from tformer.errors import TformerError
from tformer.evaluation.wer import char_error_rate, word_error_rate
from tformer.generation import Feature, capabilities_of
from tformer.io.files import write_json
from tformer.models.conformer import FRONT_ENDS, ConformerConfig
from tformer.nn.cache import MonotonicWindow
from tformer.registry import Registry
from tformer.tasks.asr_features import CharVocabulary, SpeechFeatures
from tformer.tasks.asr_readouts import ASR_MODELS, AsrBatch, CTCReadOut, ReadOut
from tformer.tasks.base import Task, TaskSettings
from tformer.tasks.registry import register
from tformer.training.config import GuidedAttentionConfig, RunConfig
from tformer.training.label_smoothing import LossOutput

RUN_FILE = "asr.json"  # the run's read-out kind, feature settings and vocabulary


def _speech_preset(**kw: Any) -> ConformerConfig:
    """Sized for a 2-core CPU and 10-15 minutes: d_model 144, 4 heads, d_ff 576, 4 layers, kernel 15, 64 channels in
    the 4x subsampling."""
    base = dict(d_model=144, num_heads=4, d_ff=576, num_layers=4, conv_kernel_size=15, subsampling_channels=64)
    return ConformerConfig(**{**base, **kw})


PRESETS: Registry[Callable[..., ConformerConfig]] = Registry("model.preset", {
    "speech": _speech_preset,
    "tiny": ConformerConfig.tiny,
    "small": ConformerConfig.small,  # Table 1's Conformer (S), (M), (L)
    "medium": ConformerConfig.medium,
    "large": ConformerConfig.large,
})
"""``model.preset`` -> the encoder config it starts from."""

DATA_KEYS = ("n_mels", "num_classes")  # model fields the task sets: asr.n_mels, and no classifier head


def model_config(cfg: RunConfig, n_mels: int = 80) -> ConformerConfig:
    """The encoder config of ``cfg``: the preset's (``speech`` when unset) with the other ``model`` keys, ``n_mels``
    and no classifier head put on top."""
    spec = dict(cfg.model)
    preset = PRESETS.lookup(spec.pop("preset", "speech"))
    return from_dict(ConformerConfig, {**preset().to_dict(), **spec, "n_mels": n_mels, "num_classes": 0},
                     where="model")


# ---- the settings ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AsrSettings(TaskSettings):
    """The ``asr`` section.

    Attributes:
        model: the read-out, a name in :data:`ASR_MODELS`: "ctc" or "attention".
        decoder_layers: the Transformer decoder's layers (attention).
        ctc_weight: lambda of joint CTC/attention training, L = lambda CTC + (1 - lambda) attention (attention;
            0 = the decoder's loss alone).
        n_mels, window_ms, hop_ms, top_db: the features (:class:`SpeechFeatures`).
        freq_masks, max_freq_width, time_masks, max_time_width, max_time_ratio: SpecAugment's masks on training
            utterances (:class:`~tformer.data.audio.SpecAugment`; off while both counts are 0).
        wer_samples: validation utterances transcribed greedily for CER and WER at each validation (0 = skip).
        beam_size: the beam of the final scores (None = the read-out's: 8 for CTC, 4 for attention).
        monotonic_window: attention only: the final test scores decode under a monotonic window reaching this many
            encoder frames ahead of the focus (25 a second with 4x subsampling at 10 ms hops); None = no window.
        monotonic_window_back: how many encoder frames behind the focus the window reaches.
        cross_attention: attention only: the decoder's attention over the encoder frames
            (:class:`~tformer.config.CrossAttentionConfig`: ``kind`` dot, the paper's; location, location-aware;
            monotonic, hard monotonic attention; with their settings).
    """

    model: str = "ctc"
    decoder_layers: int = 6
    ctc_weight: float = 0.0
    n_mels: int = 80
    window_ms: float = 25.0
    hop_ms: float = 10.0
    top_db: float | None = 80.0
    freq_masks: int = 0
    max_freq_width: int = 27
    time_masks: int = 0
    max_time_width: int = 40
    max_time_ratio: float = 0.05
    wer_samples: int = 200
    beam_size: int | None = None
    monotonic_window: int | None = None
    monotonic_window_back: int = 1
    cross_attention: CrossAttentionConfig = CrossAttentionConfig()

    def __post_init__(self) -> None:
        ASR_MODELS.lookup(self.model)
        check_cross_attention(self)
        check(self.cross_attention.kind == "dot" or self.model == "attention",
              f"cross_attention needs model: attention (a {self.model} read-out has no encoder-decoder attention)")
        check(self.monotonic_window is None or self.monotonic_window >= 1,
              f"monotonic_window must be >= 1 encoder frames or null (off), got {self.monotonic_window}")
        check(self.monotonic_window_back >= 0, f"monotonic_window_back must be >= 0, got {self.monotonic_window_back}")
        check(self.monotonic_window is None or self.model == "attention",
              f"monotonic_window needs model: attention (a {self.model} read-out has no encoder-decoder attention)")
        check(self.decoder_layers >= 1, f"decoder_layers must be >= 1, got {self.decoder_layers}")
        check(0.0 <= self.ctc_weight < 1.0, f"ctc_weight must be in [0, 1), got {self.ctc_weight}")
        check(self.wer_samples >= 0, f"wer_samples must be >= 0, got {self.wer_samples}")
        check(self.beam_size is None or self.beam_size >= 1, f"beam_size must be >= 1 or null, got {self.beam_size}")
        self.features()
        self.spec_augment()

    def window(self) -> MonotonicWindow | None:
        """The monotonic window of the final scores, or None."""
        if self.monotonic_window is None:
            return None
        return MonotonicWindow(ahead=self.monotonic_window, back=self.monotonic_window_back)

    def features(self) -> SpeechFeatures:
        return SpeechFeatures(self.n_mels, self.window_ms, self.hop_ms, self.top_db)

    def spec_augment(self) -> SpecAugment | None:
        """The masks of these settings; None when both counts are 0."""
        masks = SpecAugment(self.freq_masks, self.max_freq_width, self.time_masks, self.max_time_width,
                            self.max_time_ratio)
        return masks if self.freq_masks or self.time_masks else None


# ---- utterances in memory, and decoding them --------------------------------------------------------------
@dataclass
class SpeechSplit:
    features: list[Tensor]  # (T, M) each, normalised
    texts: list[str]
    targets: list[list[int]]


def read_split(sentences: list, features: SpeechFeatures, vocab: CharVocabulary) -> SpeechSplit:
    """The features, texts and character ids of a split's :class:`SpokenSentence` s."""
    feats = [features.of_file(s.path)[0] for s in sentences]
    return SpeechSplit(feats, [s.text for s in sentences], [vocab.encode(s.text) for s in sentences])


def padded(feats: list[Tensor], min_frames: int) -> tuple[Tensor, Tensor]:
    """Utterances (T_b, M) -> (B, T, M) right-padded with zeros (the normalised mean), and their lengths (B,); one
    shorter than ``min_frames`` (what the subsampling needs) gets zero frames appended."""
    lengths = torch.tensor([max(len(f), min_frames) for f in feats])  # (B,)
    x = torch.zeros(len(feats), int(lengths.max()), feats[0].shape[1])  # (B, T, M)
    for b, f in enumerate(feats):
        x[b, : len(f)] = f
    return x, lengths


@torch.no_grad()
def transcribe_features(model: nn.Module, vocab: CharVocabulary, feats: list[Tensor], beam_size: int,
                        device: torch.device | str, max_tokens: int, window: MonotonicWindow | None = None
                        ) -> list[str]:
    """Transcripts of utterances ``feats`` (T, M), in order (beam 1 = greedy), by ``model.transcribe`` in batches of
    similar length under ``max_tokens`` frames; under a monotonic ``window`` if given (a model that supports it)."""
    if window is not None:
        capabilities_of(model).require(Feature.MONOTONIC_WINDOW, what="transcribing under a monotonic window")
    options = {} if window is None else {"window": window}
    out = [""] * len(feats)
    min_frames = model.cfg.min_frames
    sampler = TokenBatchSampler([max(len(f), min_frames) - 1 for f in feats], [0] * len(feats), max_tokens,
                                shuffle=False)
    for idx in sampler.batches_for_epoch(0):
        x, lengths = padded([feats[i] for i in idx], min_frames)
        hyps = model.transcribe(x.to(device), lengths.to(device), beam_size=beam_size, **options)
        for i, ids in zip(idx, hyps, strict=True):
            out[i] = vocab.decode(ids)
    return out


def error_rates(references: list[str], hypotheses: list[str], suffix: str = "") -> dict[str, float]:
    return {f"wer{suffix}": word_error_rate(references, hypotheses),
            f"cer{suffix}": char_error_rate(references, hypotheses)}


# ---- the task ------------------------------------------------------------------------------------------
@register
class AsrTask(Task):
    """Spoken sentences -> :class:`ConformerCTC` or :class:`ConformerSeq2Seq` (see the module docstring)."""

    name = "asr"
    unit = "utterances"
    Settings = AsrSettings
    guides_attention = True  # with asr.model: attention only (check_config refuses it for CTC)

    def __init__(self, splits: dict[str, SpeechSplit], sentences: dict[str, list], settings: AsrSettings,
                 vocab: CharVocabulary, min_frames: int, guided: GuidedAttentionConfig | None = None) -> None:
        self.splits, self.sentences, self.settings, self.vocab = splits, sentences, settings, vocab
        self.read_out, self.features = ASR_MODELS.lookup(settings.model), settings.features()
        self.spec_augment, self.min_frames = settings.spec_augment(), min_frames
        self.guided = guided if guided is not None and guided.enabled else None  # train.guided_attention

    # -- the config --
    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        given = sorted(set(cfg.model) & set(DATA_KEYS))
        check(not given, f"model: {', '.join(given)} come(s) from the data and asr.n_mels, not the model section")
        m = model_config(cfg)
        guided, settings = cfg.train.guided_attention, cls.settings_from(cfg)
        if guided.enabled:
            check(settings.model == "attention", f"train.guided_attention needs asr.model: attention (a "
                                                 f"{settings.model} read-out has no encoder-decoder attention to "
                                                 f"guide); set its weight to 0")
            guided.check_model(settings.decoder_layers, m.num_heads)

    @classmethod
    def model_width(cls, cfg: RunConfig) -> int:
        return model_config(cfg).d_model

    @classmethod
    def build(cls, cfg: RunConfig, run_dir: Path, resume: bool) -> tuple[AsrTask, nn.Module]:
        settings = cls.settings_from(cfg)
        root = cfg.data.path("train_src") or SPEECH_SENTENCES_PATH
        sentences = load_speech_sentences(root)
        if not sentences["train"]:
            raise TformerError(f"{root} holds no training utterances")
        read_out = ASR_MODELS.lookup(settings.model)
        vocab = CharVocabulary(read_out.specials, CHARACTERS)
        t0 = time.perf_counter()
        splits = {name: read_split(sentences[name], settings.features(), vocab) for name in ("train", "valid")}
        frames = sum(len(f) for s in splits.values() for f in s.features)
        log(f"features: {settings.n_mels} log-mel channels of {settings.window_ms:g} ms every {settings.hop_ms:g} ms, "
            f"{frames:,} frames of {sum(len(s.texts) for s in splits.values())} utterances in "
            f"{time.perf_counter() - t0:.1f}s")
        m = model_config(cfg, settings.n_mels)
        log(f"utterances: {len(splits['train'].texts)} train, {len(splits['valid'].texts)} valid, "
            f"{len(sentences['test'])} test, {len(sentences['test_long'])} test_long; {vocab.size} tokens"
            + _ctc_warning(splits["train"], m, read_out, settings))
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / RUN_FILE, {"model": settings.model, "features": settings.features().to_dict(),
                                        "vocabulary": vocab.to_dict()})
        model = read_out.build(m, vocab, settings)
        return cls(splits, sentences, settings, vocab, m.min_frames, cfg.train.guided_attention), model

    # -- training --
    def lengths(self, split: str) -> tuple[list[int], list[int]]:
        part = self.splits[split]
        frames = [max(len(f), self.min_frames) - 1 for f in part.features]  # the sampler adds 1
        return frames, [len(t) for t in part.targets]

    def collate(self, split: str, indices: list[int], model: nn.Module) -> AsrBatch:
        part = self.splits[split]
        x, lengths = padded([part.features[i] for i in indices], self.min_frames)  # (B, T, M), (B,)
        if split == "train" and self.spec_augment is not None:
            x = self.spec_augment(x, lengths)  # drawn from torch's default generator: the run's seeded one
        targets = [part.targets[i] for i in indices]
        target_lengths = torch.tensor([len(t) for t in targets])  # (B,)
        y = torch.zeros(len(targets), max(1, int(target_lengths.max())), dtype=torch.long)  # (B, L)
        for b, t in enumerate(targets):
            y[b, : len(t)] = torch.tensor(t, dtype=torch.long)
        return AsrBatch(x, lengths, y, target_lengths, int(lengths.sum()), self.read_out.loss_units(target_lengths))

    def loss(self, model: nn.Module, batch: AsrBatch, label_smoothing: float) -> LossOutput:
        """The read-out's loss; in training, with ``train.guided_attention`` on, plus the guided attention loss
        (validation losses stay comparable across runs with and without it)."""
        return self.read_out.loss(model, batch, label_smoothing, self.guided if model.training else None)

    def extra_validation(self, model: nn.Module, device: torch.device, max_tokens: int) -> dict[str, Any]:
        """CER and WER of greedy transcripts of the first ``wer_samples`` validation utterances."""
        part = self.splits["valid"]
        n = min(self.settings.wer_samples, len(part.texts))
        if not n:
            return {}
        hyps = transcribe_features(model, self.vocab, part.features[:n], 1, device, max_tokens)
        return {**error_rates(part.texts[:n], hyps), "wer_utterances": n}

    def final_report(self, run_dir: Path, device: torch.device, max_tokens: int) -> dict[str, Any]:
        """The best model's WER and CER on valid, test and test_long: greedy, and with the beam (under
        ``asr.monotonic_window`` if set)."""
        best = self.read_out.model_class.from_pretrained(run_dir / "model", map_location=device).eval()
        beam = self.settings.beam_size or self.read_out.default_beam
        window = self.settings.window()
        report: dict[str, Any] = {"beam_size": beam, "monotonic_window": self.settings.monotonic_window}
        for name in ("valid", "test", "test_long"):
            if not self.sentences[name]:
                continue
            t0 = time.perf_counter()
            part = self.splits.get(name) or read_split(self.sentences[name], self.features, self.vocab)
            t1 = time.perf_counter()
            for search, k in (("greedy", 1), ("beam", beam)):
                if name == "valid" and search == "beam":
                    continue
                hyps = transcribe_features(best, self.vocab, part.features, k, device, max_tokens, window)
                report.update({f"{name}_{key}": v for key, v in error_rates(part.texts, hyps, f"_{search}").items()})
            report[f"{name}_utterances"] = len(part.texts)
            log(f"{name}: {len(part.texts)} utterances, features {t1 - t0:.1f}s, decoding "
                f"{time.perf_counter() - t1:.1f}s | WER {report[f'{name}_wer_greedy']:.4f} greedy"
                + (f", {report[f'{name}_wer_beam']:.4f} beam {beam}" if f"{name}_wer_beam" in report else "")
                + ("" if window is None else f" (monotonic window {window.ahead} ahead, {window.back} back)"))
        return report


def _ctc_warning(train: SpeechSplit, m: ConformerConfig, read_out: type[ReadOut], settings: AsrSettings) -> str:
    """A note when CTC reads the encoder and some training utterances have fewer encoder frames than their
    transcripts need (a frame per character, and a blank between repeats): their loss is infinite (skipped)."""
    if read_out is not CTCReadOut and settings.ctc_weight == 0:
        return ""
    frames = FRONT_ENDS.lookup(str(m.subsampling)).lengths  # encoder frames of T input frames
    short = sum(frames(max(len(f), m.min_frames)) < len(t) + sum(a == b for a, b in zip(t, t[1:], strict=False))
                for f, t in zip(train.features, train.targets, strict=True))
    return (f"; {short} training utterances have fewer encoder frames than CTC needs (lower asr.hop_ms)"
            if short else "")
