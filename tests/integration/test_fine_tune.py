"""Fine-tuning: ``model.init_from`` (a tformer run or a Hugging Face folder) and ``train.reset_optimizer``."""

import json

import pytest
import torch
from cli_helpers import tformer_cli, write_recipe

from tformer import Translator
from tformer.data.vocabularies import Vocabularies
from tformer.tasks.translation import TranslationTask
from tformer.training.config_file import read_run_config
from tformer.training.schedule import noam_lr


def fine_tune_recipe(corpus, run_dir, init_from, max_steps=4, **model):
    """The tiny recipe with ``model: {init_from: ..., **model}`` in place of the preset."""
    text = write_recipe(corpus, run_dir, max_steps=max_steps).read_text()
    extra = "".join(f"\n  {k}: {v}" for k, v in model.items())
    text = text.replace("model:\n  preset: tiny\n  dropout: 0.0", f"model:\n  init_from: {init_from}{extra}")
    path = corpus / f"fine-{run_dir.name}.yaml"
    path.write_text(text)
    return path


def test_init_from_a_run_starts_from_its_weights_and_tokenizer(corpus, trained_run, tmp_path):
    cfg = read_run_config(fine_tune_recipe(corpus, tmp_path / "ft", trained_run, dropout=0.3))
    task, model = TranslationTask.build(cfg, tmp_path / "ft", resume=False)
    pretrained = Translator.from_pretrained(trained_run).model
    assert model.cfg.dropout == 0.3 and pretrained.cfg.dropout == 0.0  # the one change asked for
    ours, theirs = model.state_dict(), pretrained.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert (tmp_path / "ft" / "tokenizer.json").read_text() == (trained_run / "tokenizer.json").read_text()
    assert TranslationTask.model_width(cfg) == pretrained.cfg.d_model


def test_fine_tuning_a_run_trains_and_translates(corpus, trained_run, tmp_path):
    run = tmp_path / "ft"
    r = tformer_cli("train", fine_tune_recipe(corpus, run, trained_run, max_steps=30), "--no-progress")
    assert r.returncode == 0, r.stderr
    valid = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if '"valid"' in x]
    start = [json.loads(x) for x in (trained_run / "metrics.jsonl").read_text().splitlines() if '"valid"' in x]
    # it goes on from where the pretrained run ended (1.72 here; 1.49 after 30 more updates), which a fresh model
    # is far from at its first validation (the pretrained run's own: 2.30)
    assert valid[0]["loss"] < min(x["loss"] for x in start)
    r = tformer_cli("translate", run, input="three hundred\n")
    assert r.returncode == 0 and r.stdout.strip(), r.stderr


def test_fine_tuning_a_hugging_face_marian_folder(marian, tmp_path):
    pytest.importorskip("transformers")
    from hf_helpers import word_pairs

    d = tmp_path / "data"
    d.mkdir()
    for name, pairs in (("train", word_pairs(200, seed=11)), ("valid", word_pairs(20, seed=12))):
        (d / f"{name}.en").write_text("\n".join(s for s, _ in pairs) + "\n")
        (d / f"{name}.de").write_text("\n".join(t for _, t in pairs) + "\n")
    cfg = tmp_path / "marian.yaml"
    cfg.write_text(f"""
run_dir: {tmp_path / "run"}
data: {{data_dir: {d}, train_src: train.en, train_tgt: train.de, valid_src: valid.en, valid_tgt: valid.de}}
model: {{init_from: {marian}, dropout: 0.0}}
train: {{max_tokens: 800, max_steps: 30, warmup_steps: 10, lr_scale: 0.5, eval_every: 15, log_every: 5}}
translation: {{bleu_samples: 0}}
""")
    r = tformer_cli("train", cfg, "--no-progress")
    assert r.returncode == 0, r.stderr
    run = tmp_path / "run"
    vocabs = Vocabularies.load(run)  # Marian's own files and ids: </s> 0, <unk> 1, <pad> last
    assert (run / "source.spm").is_file() and (vocabs.src.eos_id, vocabs.src.unk_id) == (0, 1)
    losses = [json.loads(x)["loss"] for x in (run / "metrics.jsonl").read_text().splitlines() if '"valid"' in x]
    assert losses[-1] < losses[0]
    r = tformer_cli("translate", run, input="The dog runs.\n")
    assert r.returncode == 0 and r.stdout.strip(), r.stderr


def test_what_fine_tuning_refuses(corpus, trained_run, tmp_path):
    r = tformer_cli("train", fine_tune_recipe(corpus, tmp_path / "a", trained_run, d_model=64), "--no-progress")
    assert r.returncode == 2 and "d_model cannot change a pretrained model" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = tformer_cli("train", fine_tune_recipe(corpus, tmp_path / "b", tmp_path / "nothing"), "--no-progress")
    assert r.returncode == 2 and "is not a run directory" in r.stderr


def test_resuming_with_another_init_from_vocabulary_is_refused(corpus, trained_run, tmp_path):
    other = corpus / "other-vocab"
    text = write_recipe(corpus, other, max_steps=2).read_text().replace("vocab_size: 60", "vocab_size: 50")
    (corpus / "other.yaml").write_text(text)
    assert tformer_cli("train", corpus / "other.yaml", "--no-progress").returncode == 0
    run = tmp_path / "ft"
    first = fine_tune_recipe(corpus, run, trained_run, max_steps=2)
    assert tformer_cli("train", first, "--no-progress").returncode == 0
    r = tformer_cli("train", fine_tune_recipe(corpus, run, other, max_steps=4), "--resume", "--no-progress")
    assert r.returncode == 2 and "vocabulary is not model.init_from's" in r.stderr


def test_reset_optimizer_restarts_adam_and_the_warm_up_at_the_resume_step(corpus, tmp_path):
    run = tmp_path / "run"
    recipe = write_recipe(corpus, run, max_steps=20)
    assert tformer_cli("train", recipe, "train.save_every=10", "--no-progress").returncode == 0
    r = tformer_cli("train", recipe, "train.max_steps=30", "train.reset_optimizer=true", "--resume",
                    "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "a fresh optimizer and schedule from step 20" in r.stderr
    rec = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    lr = {x["step"]: x["lr"] for x in rec if x.get("kind") == "train" and "lr" in x}
    d_model = Translator.from_pretrained(run).model.cfg.d_model
    # the rate logged at step s is the next update's: s + 1 of the first schedule, s - 20 + 1 of the fresh one
    assert lr[20] == pytest.approx(noam_lr(21, d_model, 20))
    assert lr[30] == pytest.approx(noam_lr(11, d_model, 20))  # in a new warm-up, not at step 31 of the old one
    ckpt = torch.load(run / "checkpoints" / "step-00000030.pt", weights_only=False)
    assert ckpt["train_state"]["step"] == 30  # the run's position goes on
    adam_steps = {float(s["step"]) for s in ckpt["optimizer"]["state"].values()}
    assert adam_steps == {10.0}  # Adam's moments are 10 updates old
