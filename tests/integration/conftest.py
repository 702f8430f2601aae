"""Tiny corpora and tiny trained runs of every task, made once per test session with tformer's own code."""

import json
from pathlib import Path

import pytest
from cli_helpers import tformer_cli, write_recipe

from tformer.data.synthetic import make_number_task, write_parallel


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    task = make_number_task(400, 40, 30, max_number=999, seed=3)
    write_parallel(task["train"], d / "train.en", d / "train.de.gz")
    write_parallel(task["valid"], d / "valid.en", d / "valid.de")
    write_parallel(task["test"], d / "test.en", d / "test.de")
    return d


@pytest.fixture(scope="session")
def trained_run(corpus):
    """A finished tiny run (read-only for the tests that use it), trained by `tformer train` in this process."""
    run_dir = corpus / "shared-run"
    r = tformer_cli("train", str(write_recipe(corpus, run_dir)), "--no-progress")
    assert r.returncode == 0, r.stderr
    return run_dir


# ---- tiny finished runs of the other tasks, shared by the tests of predict, generate and serve ----------------

@pytest.fixture(scope="session")
def langid_corpus(tmp_path_factory):
    """Number words in English and German, one file per language and split (a two-class task, and text)."""
    d = tmp_path_factory.mktemp("langid")
    task = make_number_task(200, 30, 30, max_number=9999, seed=4)
    for split in ("train", "valid", "test"):
        (d / f"{split}.en").write_text("".join(en + "\n" for en, _ in task[split]))
        (d / f"{split}.de").write_text("".join(de + "\n" for _, de in task[split]))
    return d


def _train(d, name: str, body: str):
    from tformer.tasks import load_run_config, run_training

    recipe = d / f"{name}.yaml"
    recipe.write_text(f"run_dir: {d / name}\n{body}")
    run_training(load_run_config(recipe), show_progress=False)
    return d / name


@pytest.fixture(scope="session")
def classify_run(langid_corpus, tmp_path_factory):
    """A finished tiny text classifier (en / de), trained from scratch in a few seconds."""
    return _train(tmp_path_factory.mktemp("runs"), "classify", f"""task: classify
classify: {{labels: [en, de]}}
data: {{data_dir: {langid_corpus}, train_src: 'train.{{label}}', valid_src: 'valid.{{label}}', vocab_size: 120,
        max_len: 40}}
model: {{preset: tiny, pooling: mean}}
train: {{max_steps: 40, max_tokens: 600, warmup_steps: 10, lr_scale: 0.3, eval_every: 40, device: cpu}}
""")


@pytest.fixture(scope="session")
def lm_run(langid_corpus, tmp_path_factory):
    """A finished tiny language model of English number words."""
    return _train(tmp_path_factory.mktemp("runs"), "lm", f"""task: lm
data: {{data_dir: {langid_corpus}, train_src: train.en, valid_src: valid.en, vocab_size: 100, max_len: 40}}
model: {{preset: tiny, dropout: 0.0}}
train: {{max_steps: 40, max_tokens: 800, warmup_steps: 20, eval_every: 40, label_smoothing: 0.0, device: cpu}}
""")


@pytest.fixture(scope="session")
def vision_run(tmp_path_factory):
    """A finished tiny Vision Transformer on scikit-learn's digits (barely trained: 30 updates)."""
    pytest.importorskip("sklearn")
    return _train(tmp_path_factory.mktemp("runs"), "vision", """task: vision
data: {train_src: digits}
model: {d_model: 32, num_layers: 2, d_ff: 64}
train: {max_steps: 30, max_tokens: 1088, warmup_steps: 10, eval_every: 30, device: cpu}
""")


@pytest.fixture(scope="session")
def asr_run(tmp_path_factory):
    """A finished tiny CTC speech recognizer of tone sentences (barely trained: 30 updates), and its data."""
    pytest.importorskip("soundfile")
    from speech_helpers import write_tone_sentences

    root = tmp_path_factory.mktemp("tones") / "speech"
    write_tone_sentences(root)
    return _train(tmp_path_factory.mktemp("runs"), "asr", f"""task: asr
asr: {{model: ctc, n_mels: 32, wer_samples: 2}}
data: {{train_src: {root}}}
model: {{preset: tiny, d_model: 32, num_heads: 2, d_ff: 64, num_layers: 1, conv_kernel_size: 5, dropout: 0.0,
         subsampling_channels: 16}}
train: {{max_steps: 30, max_tokens: 400, warmup_steps: 10, schedule: cosine, lr: 0.005, eval_every: 30, device: cpu}}
""")


# ---- tiny runs of task qa and summarization (their tests, and tformer serve's) ----------------------------------

QA_RECIPE = """
run_dir: {run_dir}
task: qa
qa: {{doc_stride: 16, max_answer_len: 3, test_sets: [test_long.jsonl]}}
seed: 3
data: {{data_dir: {data}, train_src: train.jsonl, valid_src: valid.jsonl, test_src: test.jsonl, vocab_size: 120,
        max_len: 48}}
model: {{preset: tiny}}
train: {{max_steps: 8, max_tokens: 1536, warmup_steps: 4, eval_every: 4, log_every: 4, device: cpu,
         keep_checkpoints: 1}}
"""


@pytest.fixture(scope="session")
def babi(tmp_path_factory):
    """Tiny bAbI-style data from tformer.data.babi's generator."""
    from tformer.data.babi import BabiConfig, build

    d = tmp_path_factory.mktemp("babi") / "babi"
    build(d, BabiConfig(train_questions=30, eval_questions=4, test_questions=5, long_questions=2))
    return d


@pytest.fixture(scope="session")
def qa_run(babi):
    """A finished tiny extractive-QA run on ``babi`` (its directory, and its summary)."""
    run_dir = babi.parent / "run"
    cfg = babi.parent / "qa.yaml"
    cfg.write_text(QA_RECIPE.format(run_dir=run_dir, data=babi))
    r = tformer_cli("train", str(cfg), "--no-progress")
    assert r.returncode == 0, r.stderr
    return run_dir, json.loads(r.stdout)


@pytest.fixture(scope="session")
def summarization_run(tmp_path_factory):
    """A finished tiny summarization run with copy and coverage (its data folder, and its summary)."""
    import random

    from summary_helpers import write_split

    recipe = Path(__file__).resolve().parents[2] / "configs" / "summarization.yaml"
    tmp = tmp_path_factory.mktemp("summarization")
    rng = random.Random(7)
    for split, n in (("train", 300), ("valid", 20), ("test", 20)):
        write_split(tmp, split, n, rng)
    r = tformer_cli("train", str(recipe), f"run_dir={tmp / 'run'}", f"data.data_dir={tmp}", "data.vocab_size=120",
                    "data.max_len=32", "summarization.max_source_len=24", "summarization.coverage=1.0",
                    "summarization.rouge_samples=8", "summarization.test_samples=10", "summarization.beam_size=2",
                    "model.preset=tiny", "model.d_model=32", "model.d_ff=64", "model.num_heads=2",
                    "model.num_encoder_layers=1", "model.num_decoder_layers=1", "model.max_len=40",
                    "model.dropout=0.0", "train.max_tokens=800", "train.max_steps=40", "train.warmup_steps=10",
                    "train.eval_every=20", "train.max_minutes=0", "--no-progress")
    assert r.returncode == 0, r.stderr
    return tmp, json.loads(r.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def marian(tmp_path_factory):
    """A real Hugging Face Marian folder (MarianMTModel + MarianTokenizer, SentencePiece models trained here),
    briefly trained on word-by-word English -> German (hf_helpers.marian_folder)."""
    pytest.importorskip("transformers")
    pytest.importorskip("sentencepiece")
    from hf_helpers import marian_folder

    return marian_folder(tmp_path_factory.mktemp("hf") / "opus-mt-tiny")
