"""The monotonic window at inference on trained speech runs (task asr, asr.model: attention): the window
(ahead, back, in encoder frames) is chosen on valid among (4, 1), (8, 2), (16, 4); test and test_long are then
transcribed with it (greedy and beam 4) and without it (greedy). Prints one JSON line per run:

    python benchmarks/asr_window.py runs/speech-joint runs/speech-joint-guided runs/speech-attention

(the README's "Guided and monotonic attention" table; ./dev data speech-sentences first).
"""

from __future__ import annotations

import json
import sys

from tformer.data.audio.speech_sentences import load_speech_sentences
from tformer.nn.cache import MonotonicWindow
from tformer.tasks.asr import error_rates, read_split, transcribe_features
from tformer.tasks.transcriber import Transcriber

WINDOWS = [(4, 1), (8, 2), (16, 4)]  # (ahead, back) in encoder frames (40 ms each with 4x subsampling)


def score(tr: Transcriber, part, window: MonotonicWindow | None, beam: int = 1) -> dict[str, float]:
    """WER and CER of one split's transcripts."""
    hyps = transcribe_features(tr.model, tr.vocab, part.features, beam, "cpu", 20000, window)
    return error_rates(part.texts, hyps)


def measure(run: str, sentences: dict) -> dict:
    tr = Transcriber.from_run(run)
    parts = {n: read_split(sentences[n], tr.features, tr.vocab) for n in ("valid", "test", "test_long")}
    res = {f"valid_{a}_{b}": score(tr, parts["valid"], MonotonicWindow(a, b)) for a, b in WINDOWS}
    res["valid_plain_greedy"] = score(tr, parts["valid"], None)
    chosen = min(WINDOWS, key=lambda ab: (res[f"valid_{ab[0]}_{ab[1]}"]["wer"], res[f"valid_{ab[0]}_{ab[1]}"]["cer"]))
    res["chosen"] = list(chosen)
    window = MonotonicWindow(*chosen)
    for split in ("test", "test_long"):
        res[f"{split}_window_greedy"] = score(tr, parts[split], window)
        res[f"{split}_window_beam4"] = score(tr, parts[split], window, 4)
        res[f"{split}_plain_greedy"] = score(tr, parts[split], None)
    return res


if __name__ == "__main__":
    sentences = load_speech_sentences("data/speech_sentences")
    for run in sys.argv[1:]:
        print(run, json.dumps(measure(run, sentences)), flush=True)
