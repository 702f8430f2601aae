"""Audio for speech models: features computed with torch, their augmentation, and reading files.

* :mod:`.features`: log-mel filterbanks (``torch.stft`` and a mel filterbank, HTK or Slaney scale), frame counts
  and masks, per-utterance mean/variance normalisation.
* :mod:`.specaugment`: SpecAugment's frequency and time masks, a seeded training-time transform.
* :mod:`.wav`: :func:`read_wav`, with ``soundfile`` (installed separately: ``pip install soundfile``).
* :mod:`.spoken_digits`: utterances of feature frames from one ``.npz`` file (the Free Spoken Digit Dataset's MFCCs,
  ``./dev data spoken-digits``), split stratified by class.
"""

from tformer.data.audio.features import (
    MEL_SCALES,
    LogMelConfig,
    frame_mask,
    log_mel,
    mel_filterbank,
    normalize_utterances,
    num_frames,
)
from tformer.data.audio.specaugment import SpecAugment
from tformer.data.audio.speech_sentences import (
    CHARACTERS,
    SPEECH_SENTENCES_COMMAND,
    SPEECH_SENTENCES_PATH,
    SpokenSentence,
    load_speech_sentences,
)
from tformer.data.audio.spoken_digits import (
    SPOKEN_DIGITS_COMMAND,
    SPOKEN_DIGITS_PATH,
    UtteranceSplit,
    UtteranceSplits,
    load_utterance_splits,
    read_utterances,
    stratified_split,
)
from tformer.data.audio.wav import read_wav

__all__ = ["CHARACTERS", "MEL_SCALES", "SPEECH_SENTENCES_COMMAND", "SPEECH_SENTENCES_PATH", "SpokenSentence",
           "load_speech_sentences", "SPOKEN_DIGITS_COMMAND", "SPOKEN_DIGITS_PATH", "LogMelConfig", "SpecAugment",
           "UtteranceSplit", "UtteranceSplits", "frame_mask", "load_utterance_splits", "log_mel", "mel_filterbank",
           "normalize_utterances", "num_frames", "read_utterances", "read_wav", "stratified_split"]
