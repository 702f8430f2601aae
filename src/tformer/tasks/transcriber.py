"""A trained ``task: asr`` run (:mod:`tformer.tasks.asr`): audio files in, transcripts out (``tformer transcribe``),
and the weights that tie a transcript to its frames (``tformer plot alignment``).

Shape legend: T feature frames, M mel channels, T' encoder frames, H heads.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from tformer.errors import ConfigError, TformerError
from tformer.io.files import read_json
from tformer.nn.cache import MonotonicWindow
from tformer.tasks.asr import RUN_FILE, padded, transcribe_features
from tformer.tasks.asr_features import CharVocabulary, SpeechFeatures
from tformer.tasks.asr_readouts import ASR_MODELS


@dataclass
class SpeechAlignment:
    """One utterance, its transcript and what ties them: the features (T, M) and, per layer, weights (H, rows, T')
    (the decoder's cross-attention, or CTC's frame posteriors) with the token of each row."""

    features: Tensor
    hop_seconds: float  # between feature frames
    frame_seconds: float  # between encoder frames
    transcript: str
    layers: list[Tensor]
    rows: list[str]
    kind: str  # "cross-attention" or "CTC posteriors"


class Transcriber:
    """A trained ``task: asr`` run: its features, characters and best model. Audio files in, transcripts out."""

    def __init__(self, model: nn.Module, read_out_name: str, features: SpeechFeatures, vocab: CharVocabulary,
                 device: torch.device | str = "cpu") -> None:
        self.model, self.features, self.vocab, self.device = model.eval(), features, vocab, device
        self.read_out_name, self.read_out = read_out_name, ASR_MODELS.lookup(read_out_name)

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, device: torch.device | str = "cpu") -> Transcriber:
        """Load a run of ``task: asr`` (its ``asr.json`` and ``model/``); another kind of run is a one-line error."""
        run = Path(run_dir)
        if not run.is_dir():
            raise TformerError(f"run directory not found: {run}")
        if not (run / RUN_FILE).is_file():
            raise TformerError(f"{run} is not a speech-recognition run (no {RUN_FILE}): train one with task: asr")
        doc = read_json(run / RUN_FILE)
        try:
            read_out = ASR_MODELS.lookup(doc.get("model"))
            features = SpeechFeatures.from_dict(doc.get("features"), where="features")
            vocab = CharVocabulary.from_dict(doc.get("vocabulary"), where="vocabulary")
        except ConfigError as e:
            raise ConfigError(f"{run / RUN_FILE}: {e}") from None
        if not (run / "model").is_dir():
            raise TformerError(f"{run} has no model/ yet (it is written at the first validation)")
        model = read_out.model_class.from_pretrained(run / "model", map_location=device)
        return cls(model, doc["model"], features, vocab, device)

    def transcribe(self, paths: Sequence[str | os.PathLike], beam_size: int | None = None,
                   max_tokens: int = 20000, window: MonotonicWindow | None = None) -> list[str]:
        """The transcript of each audio file (beam 1 = greedy; None = the read-out's default beam); ``window``:
        decode under this monotonic window, in encoder frames (an attention run only; a CTC run refuses it)."""
        beam = self.read_out.default_beam if beam_size is None else beam_size
        if beam < 1:
            raise TformerError(f"the beam size must be >= 1, got {beam}")
        feats = [self.features.of_file(p)[0] for p in paths]
        return transcribe_features(self.model, self.vocab, feats, beam, self.device, max_tokens, window)

    @torch.no_grad()
    def alignment(self, path: str | os.PathLike, beam_size: int | None = None,
                  window: MonotonicWindow | None = None) -> SpeechAlignment:
        """One file's transcript and the weights that tie it to the frames (for ``tformer plot alignment``); under a
        monotonic ``window`` both the transcript and the weights (the window moving as in decoding)."""
        feats, hop = self.features.of_file(path)
        transcript = self.transcribe([path], beam_size, window=window)[0]
        x, lengths = padded([feats], self.model.cfg.min_frames)
        x, lengths = x.to(self.device), lengths.to(self.device)
        layers, rows = self.read_out.alignment(self.model, x, lengths, self.vocab.encode(transcript), window)
        tokens = self.vocab.tokens
        return SpeechAlignment(feats, hop, hop * self.model.cfg.subsampling, transcript,
                               [w.float().cpu() for w in layers], [tokens[i] for i in rows],
                               self.read_out.alignment_kind)
