"""A trained ``task: asr`` run as a :class:`~tformer.tasks.predictor.Predictor`: audio in, transcripts out, for
``tformer predict`` and ``tformer serve`` (``tformer transcribe`` and :class:`~tformer.tasks.transcriber.Transcriber`
read files the same way).

An input is one of

* a path to an audio file (a line of ``tformer predict``'s input; read with soundfile), when files may be read;
* ``{"samples": [...], "sample_rate": R}``: a mono waveform, samples in [-1, 1] (what the HTTP API takes: a server
  reads no file a request names).

Features are the run's own (log-mel filterbanks at the audio's own sample rate, normalised per utterance:
:class:`~tformer.tasks.asr_features.SpeechFeatures`); the read-out decodes them as ``tformer transcribe`` does
(CTC prefix beam search or the attention decoder's beam search, its default beam unless ``beam_size`` is given).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from tformer.data.audio.speech_sentences import load_speech_sentences
from tformer.errors import TformerError
from tformer.tasks.asr import transcribe_features
from tformer.tasks.classifier_runs import check_device, input_error, run_config
from tformer.tasks.predictor import Predictor, register_predictor
from tformer.tasks.transcriber import Transcriber

MAX_EXAMPLE_SECONDS = 8.0  # a longer first validation utterance is not offered as the page's example


@register_predictor
class SpeechPredictor(Predictor):
    """A speech-recognition run: its features, characters and best model (see the module docstring)."""

    task = "asr"
    input_kind = "audio"

    def __init__(self, transcriber: Transcriber, run_dir: str | os.PathLike | None = None) -> None:
        self.transcriber, self.run_dir = transcriber, run_dir
        self.model, self.device = transcriber.model, torch.device(transcriber.device)

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> SpeechPredictor:
        return cls(Transcriber.from_run(run_dir, check_device(device)), run_dir)

    def features(self, n: int, value: Any, files: bool) -> torch.Tensor:
        """Input ``n``'s features (T, M): from a file's path, or from ``{"samples", "sample_rate"}``."""
        speech = self.transcriber.features
        if isinstance(value, str) and files:
            if not os.path.isfile(value):
                raise input_error(n, f"no such audio file: {value}")
            try:
                return speech.of_file(value)[0]
            except (OSError, RuntimeError, ValueError) as e:
                raise input_error(n, f"cannot read the audio file {value}: {e}") from None
        if not isinstance(value, dict) or not isinstance(value.get("samples"), list) or \
                not isinstance(value.get("sample_rate"), int) or isinstance(value.get("sample_rate"), bool):
            what = "an audio file's path or " if files else ""
            raise input_error(n, f"expected {what}{{\"samples\": [...], \"sample_rate\": R}}")
        rate, samples = value["sample_rate"], value["samples"]
        if not 1000 <= rate <= 192_000:
            raise input_error(n, f"sample_rate must be in 1000..192000 Hz, got {rate}")
        try:
            wave = torch.tensor(samples, dtype=torch.float32)  # (N,)
        except (TypeError, ValueError):
            raise input_error(n, "samples must be numbers") from None
        if wave.ndim != 1 or wave.numel() == 0 or not torch.isfinite(wave).all() or wave.abs().max() > 1:
            raise input_error(n, "samples must be a non-empty list of numbers in [-1, 1]")
        return speech.of_waveform(wave, rate)

    def predict(self, inputs: Sequence[Any], beam_size: int | None = None, files: bool = True,
                max_tokens: int = 20000, **options: Any) -> list[dict[str, Any]]:
        """``{"transcript": ...}`` per input, in order (``files=False``: paths are refused, as over HTTP)."""
        if options:
            raise TformerError(f"a speech-recognition run takes only beam_size, not {', '.join(sorted(options))}")
        beam = self.transcriber.read_out.default_beam if beam_size is None else beam_size
        if beam < 1:
            raise TformerError(f"the beam size must be >= 1, got {beam}")
        feats = [self.features(n, x, files) for n, x in enumerate(inputs, 1)]
        t = self.transcriber
        texts = transcribe_features(t.model, t.vocab, feats, beam, self.device, max_tokens, None)
        return [{"transcript": text} for text in texts]

    def example(self) -> dict[str, Any] | None:
        """The run's first validation utterance as ``{"samples", "sample_rate"}`` (None when its data is gone or
        the utterance is longer than 8 s)."""
        from tformer.data.audio import read_wav

        cfg = run_config(self.run_dir) if self.run_dir is not None else None
        root = cfg.data.path("train_src") if cfg is not None else ""
        try:
            valid = load_speech_sentences(root)["valid"] if root else []
            if not valid:
                return None
            wave, rate = read_wav(valid[0].path)
        except (TformerError, OSError):
            return None
        if wave.numel() > MAX_EXAMPLE_SECONDS * rate:
            return None
        return {"samples": [round(float(x), 5) for x in wave.reshape(-1)], "sample_rate": int(rate)}

    def info(self) -> dict[str, Any]:
        t = self.transcriber
        return {"model": self.model.cfg.to_dict(), "read_out": t.read_out_name, "features": t.features.to_dict(),
                "characters": "".join(t.vocab.characters)}

