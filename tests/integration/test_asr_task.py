"""`task: asr` through `tformer train`, `tformer transcribe` and `tformer plot filterbank|alignment`: the Conformer with
a CTC head, and with the Transformer decoder (joint CTC/attention), learn to transcribe, resume exactly, score test
and test_long, transcribe files from the run directory alone; bad input is one line and exit status 2.

The data is a tiny set in the layout of ./dev data speech-sentences (a manifest and 16-bit WAV files), made here: each
letter of "abcde" is a tone of its own frequency (70 ms, a Hann envelope, its pitch jittered), a space is 70 ms of
silence, and no letter follows itself (CTC needs a blank between repeats), at 8 kHz with a little noise.

Issue 20 on the attention model: ``train.guided_attention`` trains through run_training and is logged (training only,
weight > 0 only); ``asr.monotonic_window`` scores the test splits under the window, as ``tformer transcribe
--monotonic-window`` decodes; bad settings are one line."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml
from cli_helpers import tformer_cli
from speech_helpers import LETTERS, write_tone_sentences

from tformer.errors import TformerError
from tformer.tasks import load_run_config, run_training

pytest.importorskip("soundfile")  # the tone sentences are written as WAV files

RECIPE = """
run_dir: {run_dir}
task: asr
asr: {{model: {kind}, decoder_layers: 1, ctc_weight: {ctc_weight}, n_mels: 32, freq_masks: 1, max_freq_width: 4,
       time_masks: 1, max_time_width: 4, wer_samples: 8}}
seed: 1
data: {{train_src: {data}}}
model: {{preset: tiny, d_model: 32, num_heads: 2, d_ff: 64, num_layers: 1, conv_kernel_size: 5, dropout: 0.0,
         subsampling_channels: 16}}
train: {{max_steps: {steps}, max_tokens: 400, warmup_steps: 20, schedule: cosine, lr: 0.005, eval_every: {every},
         save_every: 7, log_every: 25, label_smoothing: {eps}, device: cpu}}
"""


def config(tmp, name, data, kind="ctc", steps=150, every=50, ctc_weight=0.0, eps=0.0):
    path = tmp / f"{name}.yaml"
    path.write_text(RECIPE.format(run_dir=tmp / name, data=data, kind=kind, steps=steps, every=every,
                                  ctc_weight=ctc_weight, eps=eps))
    return load_run_config(path)


def guided_config(tmp, name, data, steps=12, window=3, cross="dot"):
    """A short attention run with the guided attention loss (weight 1, the last layer) and a monotonic window, its
    decoder's cross-attention of kind ``cross``."""
    doc = yaml.safe_load(RECIPE.format(run_dir=tmp / name, data=data, kind="attention", steps=steps, every=steps,
                                       ctc_weight=0.3, eps=0.1))
    doc["asr"].update(monotonic_window=window, wer_samples=2, cross_attention={"kind": cross})
    doc["train"].update(log_every=4, guided_attention={"weight": 1.0, "sigma": 0.2, "layers": [-1]})
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_run_config(path)


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    root = tmp_path_factory.mktemp("tones") / "speech"
    write_tone_sentences(root)
    return root


@pytest.fixture(scope="module")
def ctc_run(tones, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ctc")
    return tmp / "run", run_training(config(tmp, "run", tones), show_progress=False)


@pytest.fixture(scope="module")
def attention_run(tones, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("attention")
    return tmp / "run", run_training(config(tmp, "run", tones, "attention", steps=200, ctc_weight=0.3, eps=0.1),
                                     show_progress=False)


def wavs(tones, *ids):
    return [str(tones / "wav" / f"{i}.wav") for i in ids]


def texts(tones) -> dict[str, str]:
    lines = (tones / "manifest.tsv").read_text().splitlines()[1:]
    return {f[0]: f[6] for f in (line.split("\t") for line in lines)}


# ---- training and the summary ------------------------------------------------------------------------------
def test_ctc_learns_the_tones_and_scores_test_and_test_long(ctc_run):
    run, summary = ctc_run
    for split, n in (("valid", 8), ("test", 8), ("test_long", 4)):
        assert summary[f"{split}_utterances"] == n
    assert summary["beam_size"] == 8
    assert summary["valid_cer_greedy"] < 0.2 and summary["test_cer_beam"] < 0.2  # chance: about 1
    assert summary["test_long_cer_greedy"] < 0.3  # longer than any training utterance
    saved = json.loads((run / "model" / "config.json").read_text())
    assert saved["architecture"] == "ConformerCTC" and saved["n_mels"] == 32
    asr = json.loads((run / "asr.json").read_text())
    assert asr["model"] == "ctc"
    assert asr["features"] == {"n_mels": 32, "window_ms": 25.0, "hop_ms": 10.0, "top_db": 80.0}
    validations = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
                   if json.loads(line).get("kind") == "valid"]
    assert validations and {"cer", "wer", "wer_utterances"} <= set(validations[-1])


def test_the_attention_model_trains_jointly_with_ctc(attention_run):
    run, summary = attention_run
    assert summary["beam_size"] == 4 and {"test_wer_beam", "test_long_cer_greedy"} <= set(summary)
    saved = json.loads((run / "model" / "config.json").read_text())
    assert saved["architecture"] == "ConformerSeq2Seq" and saved["asr"]["ctc_weight"] == 0.3
    assert saved["asr"]["decoder_layers"] == 1 and (saved["asr"]["pad_id"], saved["asr"]["eos_id"]) == (0, 2)
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()
              if json.loads(line).get("kind") == "valid"]
    assert min(losses) < 0.85 * losses[0] and summary["valid_cer_greedy"] < 0.9


def test_resuming_is_exact(tones, tmp_path):
    # SpecAugment's masks come from the run's generator: a run stopped after 10 updates and resumed ends as one
    straight = run_training(config(tmp_path, "a", tones, steps=20, every=20), show_progress=False)
    run_training(config(tmp_path, "b", tones, steps=10, every=20), show_progress=False)
    resumed = run_training(config(tmp_path, "b", tones, steps=20, every=20), resume=True, show_progress=False)
    assert straight["steps"] == resumed["steps"] == 20
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(v, b[k]) for k, v in a.items())


def test_guided_attention_trains_and_is_logged_and_the_window_scores(tones, tmp_path):
    summary = run_training(guided_config(tmp_path, "guided", tones), show_progress=False)
    assert summary["steps"] == 12 and summary["monotonic_window"] == 3 and "test_long_wer_beam" in summary
    records = [json.loads(line) for line in (tmp_path / "guided" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("kind") == "train"]
    assert train and all(0 < r["guided_attention"] < 1 for r in train)  # L_att per token, in [0, 1)
    assert all("guided_attention" not in r for r in records if r.get("kind") == "valid")  # training only


@pytest.mark.parametrize("cross", ["location", "monotonic"])
def test_the_decoder_takes_location_aware_and_monotonic_attention(tones, tmp_path, cross):
    from tformer.tasks.transcriber import Transcriber

    summary = run_training(guided_config(tmp_path, cross, tones, steps=6, cross=cross), show_progress=False)
    assert summary["steps"] == 6 and "test_long_wer_beam" in summary
    saved = json.loads((tmp_path / cross / "model" / "config.json").read_text())
    assert saved["asr"]["cross_attention"]["kind"] == cross
    layer = Transcriber.from_run(tmp_path / cross).model.decoder.layers[0]
    assert type(layer.cross_attn).__name__ == {"location": "LocationAwareAttention",
                                               "monotonic": "MonotonicAttention"}[cross]


def test_the_guided_term_is_in_the_loss_only_in_training_with_a_weight():
    from tformer.models.conformer import ConformerConfig
    from tformer.tasks.asr import AsrSettings, AsrTask, SpeechSplit
    from tformer.tasks.asr_features import CharVocabulary
    from tformer.tasks.asr_readouts import AttentionReadOut
    from tformer.training.config import GuidedAttentionConfig
    from tformer.training.guided_attention import TERM

    settings = AsrSettings(model="attention", decoder_layers=2, n_mels=16)
    vocab = CharVocabulary(AttentionReadOut.specials, LETTERS + " ")
    g = torch.Generator().manual_seed(0)
    split = SpeechSplit([torch.randn(40, 16, generator=g), torch.randn(29, 16, generator=g)], ["ab c", "e"],
                        [vocab.encode("ab c"), vocab.encode("e")])
    torch.manual_seed(0)
    model = AttentionReadOut.build(ConformerConfig.tiny(n_mels=16, d_model=16, num_heads=2, d_ff=32,
                                                        conv_kernel_size=5, dropout=0.0, attention_dropout=0.0),
                                   vocab, settings)
    guided = GuidedAttentionConfig(weight=0.5, layers=(-1,))

    def task(cfg):
        return AsrTask({"train": split}, {}, settings, vocab, model.cfg.min_frames, cfg)

    batch = task(None).collate("train", [0, 1], model)
    for training in (True, False):
        model.train(training)
        plain, zero, with_term = (task(c).loss(model, batch, 0.1) for c in (None, GuidedAttentionConfig(), guided))
        assert TERM not in plain.terms and TERM not in zero.terms
        torch.testing.assert_close(zero.loss, plain.loss, rtol=0, atol=0)
        if not training:  # validation losses stay comparable across runs
            assert TERM not in with_term.terms
            torch.testing.assert_close(with_term.loss, plain.loss, rtol=0, atol=0)
            continue
        term = with_term.terms[TERM]  # L_att summed per token, as the loss is
        assert with_term.num_tokens == plain.num_tokens == 7 and 0 < float(term) / 7 < 1
        torch.testing.assert_close(with_term.loss, plain.loss + 0.5 * term, rtol=1e-6, atol=1e-6)


# ---- transcribe ------------------------------------------------------------------------------------------------
def test_transcribe_reads_the_run_alone(ctc_run, tones, tmp_path):
    run, _ = ctc_run
    ids = ("test-000", "test_long-001", "test-003")
    r = tformer_cli("transcribe", run, *wavs(tones, *ids))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3
    truth = texts(tones)
    from tformer.evaluation.wer import char_error_rate

    assert char_error_rate([truth[i] for i in ids], lines) < 0.2
    out = tmp_path / "out.txt"
    greedy = tformer_cli("transcribe", run, *wavs(tones, *ids), "--beam", "1", "--output", out)
    assert greedy.returncode == 0 and greedy.stdout == "" and len(out.read_text().splitlines()) == 3


def test_predict_reads_audio_files_and_waveforms_as_transcribe_does(ctc_run, tones, tmp_path):
    from tformer.data.audio import read_wav
    from tformer.tasks import open_run

    run, _ = ctc_run
    files = wavs(tones, "test-000", "test_long-001")
    (tmp_path / "in.txt").write_text("".join(f + "\n" for f in files))
    r = tformer_cli("predict", run, "--input", tmp_path / "in.txt")
    assert r.returncode == 0, r.stderr
    want = tformer_cli("transcribe", run, *files).stdout.splitlines()
    assert [json.loads(line)["transcript"] for line in r.stdout.splitlines()] == want
    wave, rate = read_wav(files[0])  # the waveform itself, as the HTTP API takes it
    p = open_run(run)
    assert p.predict([{"samples": wave.tolist(), "sample_rate": rate}], files=False) == [{"transcript": want[0]}]
    with pytest.raises(TformerError, match=r"^input 1: expected \{\"samples\""):
        p.predict(files[:1], files=False)  # a server opens no file a request names
    (tmp_path / "bad.txt").write_text(files[0] + "\nnot-a-file.wav\n")
    r = tformer_cli("predict", run, "--input", tmp_path / "bad.txt")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "bad.txt:2: no such audio file" in r.stderr


def test_transcribe_an_attention_run_matches_the_task_decoding(attention_run, tones):
    from tformer.tasks.transcriber import Transcriber

    run, _ = attention_run
    files = wavs(tones, "test-001", "test-002")
    r = tformer_cli("transcribe", run, *files, "--beam", "2")
    assert r.returncode == 0 and r.stdout.splitlines() == Transcriber.from_run(run).transcribe(files, beam_size=2)
    from tformer.nn.cache import MonotonicWindow

    window = MonotonicWindow(ahead=4, back=2)
    r = tformer_cli("transcribe", run, *files, "--beam", "2", "--monotonic-window", "4", "--monotonic-window-back", "2")
    assert r.returncode == 0 and r.stdout.splitlines() == Transcriber.from_run(run).transcribe(files, 2, window=window)


# ---- pictures ----------------------------------------------------------------------------------------------
def test_the_pictures_are_written(ctc_run, attention_run, tones, tmp_path):
    pytest.importorskip("matplotlib")
    (wav,) = wavs(tones, "test_long-000")
    for args in (["filterbank", wav], ["filterbank", ctc_run[0], wav], ["alignment", ctc_run[0], wav],
                 ["alignment", attention_run[0], wav, "--head", "2", "--layer", "1", "--guided-band", "0.3"],
                 ["alignment", attention_run[0], wav, "--monotonic-window", "3", "--beam", "1"]):
        out = tmp_path / f"{args[0]}-{len(args)}.svg"
        r = tformer_cli("plot", *args, "-o", out)
        assert r.returncode == 0, r.stderr
        assert "time (s)" in out.read_text()
    assert "cross-attention" not in (tmp_path / "alignment-3.svg").read_text()  # a CTC run: its posteriors
    assert "&lt;blank&gt;" in (tmp_path / "alignment-3.svg").read_text()
    assert "guided band, g = 0.3" in (tmp_path / "alignment-9.svg").read_text()
    assert "under a monotonic window (3 ahead, 1 back)" in (tmp_path / "alignment-7.svg").read_text()


# ---- bad input -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case, words", [
    ("missing file", "audio file not found"),
    ("not audio", "cannot read"),
    ("not an asr run", "is not a speech-recognition run"),
    ("no run", "run directory not found"),
    ("beam 0", "--beam must be >= 1"),
    ("window 0", "--monotonic-window must be >= 1"),
    ("window on ctc", "needs a monotonic attention window"),
    ("layer 9", "layer 9 does not exist"),
    ("plot window 0", "--monotonic-window must be >= 1"),
])
def test_bad_input_is_one_line_and_exit_2(ctc_run, attention_run, tones, tmp_path, case, words):
    (wav,) = wavs(tones, "test-000")
    run = str(attention_run[0])
    (tmp_path / "notes.wav").write_text("not audio")
    argv = {"missing file": ["transcribe", run, str(tmp_path / "nothing.wav")],
            "not audio": ["transcribe", run, str(tmp_path / "notes.wav")],
            "not an asr run": ["transcribe", str(tones), wav],
            "no run": ["transcribe", str(tmp_path / "no-run"), wav],
            "beam 0": ["transcribe", run, wav, "--beam", "0"],
            "window 0": ["transcribe", run, wav, "--monotonic-window", "0"],
            "window on ctc": ["transcribe", str(ctc_run[0]), wav, "--monotonic-window", "5"],
            "layer 9": ["plot", "alignment", run, wav, "--layer", "9", "-o", str(tmp_path / "a.png")],
            "plot window 0": ["plot", "alignment", run, wav, "--monotonic-window", "0", "-o", str(tmp_path / "a.png")],
            }[case]
    r = tformer_cli(*argv)
    err = r.stderr.strip()
    assert r.returncode == 2 and words in err and "\n" not in err and r.stdout == ""


def test_missing_data_is_one_line_naming_the_command(tmp_path):
    cfg = tmp_path / "r.yaml"
    cfg.write_text(f"run_dir: {tmp_path / 'run'}\ntask: asr\ndata: {{train_src: {tmp_path / 'nothing'}}}\n"
                   f"train: {{max_steps: 1, device: cpu}}\n")
    r = tformer_cli("train", "--no-progress", cfg)
    err = r.stderr.strip()
    assert r.returncode == 2 and "\n" not in err and "./dev data speech-sentences" in err


@pytest.mark.parametrize("section, message", [
    ("asr: {model: rnnt}", "asr: model must be one of ('ctc', 'attention')"),
    ("asr: {ctc_weight: 1.5}", "ctc_weight must be in [0, 1)"),
    ("asr: {hop_ms: 30}", "hop_ms (30.0) must not exceed window_ms"),
    ("model: {n_mels: 40}", "model: n_mels come(s) from the data"),
    ("model: {preset: huge}", "model.preset must be one of"),
    ("train: {max_steps: 1, guided_attention: {weight: 1}}",
     "train.guided_attention needs asr.model: attention (a ctc read-out"),
    ("asr: {model: attention, decoder_layers: 2}\ntrain: {max_steps: 1, guided_attention: {weight: 1, layers: [2]}}",
     "train.guided_attention.layers: 2 is out of range for a decoder with 2 layers"),
    ("asr: {model: attention}\ntrain: {max_steps: 1, guided_attention: {weight: 1, heads: [-5]}}",
     "train.guided_attention.heads: -5 is out of range for a decoder with 4 heads"),
    ("asr: {model: attention, monotonic_window: 0}", "monotonic_window must be >= 1 encoder frames or null"),
    ("asr: {model: attention, monotonic_window: 5, monotonic_window_back: -1}", "monotonic_window_back must be >= 0"),
    ("asr: {monotonic_window: 5}", "monotonic_window needs model: attention"),
    ("asr: {cross_attention: {kind: location}}", "cross_attention needs model: attention"),
    ("asr: {model: attention, cross_attention: {kind: lsh}}", "cross_attention kind must be one of"),
])
def test_config_errors_are_one_line(tmp_path, section, message):
    from tformer.config import ConfigError

    cfg = tmp_path / "r.yaml"
    cfg.write_text(f"task: asr\n{section}\n")
    with pytest.raises(ConfigError) as e:
        load_run_config(cfg)
    assert message in str(e.value) and "\n" not in str(e.value)


# ---- the parts -------------------------------------------------------------------------------------------------
def test_features_at_a_files_own_rate_and_the_vocabulary():
    from tformer.data.audio import log_mel, normalize_utterances
    from tformer.errors import TformerError
    from tformer.tasks.asr_features import CharVocabulary, SpeechFeatures
    from tformer.tasks.asr_readouts import AttentionReadOut

    cfg = SpeechFeatures().log_mel_config(22050)  # espeak-ng's rate: 25 ms = 551 samples, 10 ms = 220
    assert (cfg.win_length, cfg.hop_length, cfg.n_fft, cfg.n_mels) == (551, 220, 1024, 80)
    wave = torch.randn(4000, generator=torch.Generator().manual_seed(0))
    wave[1000:3000] = 0.0  # digital silence: log(floor) = -23
    plain = SpeechFeatures(n_mels=20, top_db=None)
    raw = log_mel(wave, plain.log_mel_config(8000))  # (T, M)
    assert torch.equal(plain.of_waveform(wave, 8000), normalize_utterances(raw[None])[0])
    floor = float(raw.max()) - 8 * math.log(10)  # 80 dB below the peak: 8 powers of ten
    limited = SpeechFeatures(n_mels=20).of_waveform(wave, 8000)
    assert torch.equal(limited, normalize_utterances(raw.clamp(min=floor)[None])[0])
    assert limited.shape == (1 + 4000 // 80, 20) and raw.min() < floor

    vocab = CharVocabulary(AttentionReadOut.specials, " 'abc")
    assert vocab.encode("ab c") == [5, 6, 3, 7] and vocab.decode([1, 5, 6, 3, 7, 2, 0]) == "ab c"
    with pytest.raises(TformerError, match="'z'"):
        vocab.encode("abz")
    tgt_in, tgt_out = AttentionReadOut.teacher_forcing(torch.tensor([[5, 6, 7], [5, 0, 0]]), torch.tensor([3, 1]))
    assert tgt_in.tolist() == [[1, 5, 6, 7], [1, 5, 0, 0]] and tgt_out.tolist() == [[5, 6, 7, 2], [5, 2, 0, 0]]
