"""A translation run with ``data.output_vocab: target``: its model scores exactly the subwords of the training targets
and the special tokens (computed here again with the run's own tokenizer), never translates into another token,
resumes, and exports to a Marian folder whose logits are the model's (-inf included)."""

import gzip
import json

import pytest
import torch
from cli_helpers import tformer_cli, write_recipe

from tformer import Translator
from tformer.data.vocabularies import Vocabularies
from tformer.tasks.run import load_run_config, run_training

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "restricted"
    cfg = load_run_config(write_recipe(corpus, run_dir, max_steps=40), ["data.output_vocab=target"])
    summary = run_training(cfg, show_progress=False)
    assert summary["steps"] == 40
    return corpus, run_dir


def test_the_model_scores_the_training_targets_subwords_and_the_specials(run):
    corpus, run_dir = run
    translator = Translator.from_pretrained(run_dir)
    model, tgt = translator.model, Vocabularies.load(run_dir).tgt
    lines = gzip.open(corpus / "train.de.gz", "rt", encoding="utf-8").read().splitlines()
    seen = {i for ids in tgt.encode_batch(lines) for i in ids}
    want = sorted(seen | {tgt.pad_id, tgt.eos_id, tgt.unk_id})
    assert model.output_ids.tolist() == want and model.cfg.output_vocab == len(want) < model.cfg.vocab_size
    assert json.loads((run_dir / "model" / "config.json").read_text())["output_vocab"] == len(want)

    sources = (corpus / "valid.en").read_text().splitlines()[:8]
    scored = set(want)
    for settings in (dict(beam_size=1), dict(beam_size=4), dict(do_sample=True, seed=0, temperature=3.0)):
        outputs = translator.translate_ids(sources, max_len=20, **settings)
        assert all(set(ids) <= scored for ids in outputs), settings


def test_the_run_resumes_with_the_same_scored_tokens(run, tmp_path):
    corpus, run_dir = run
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    cfg = load_run_config(copy / "config.yaml", ["train.max_steps=45", f"run_dir={copy}"])
    assert cfg.data.output_vocab == "target"
    assert run_training(cfg, resume=True, show_progress=False)["steps"] == 45
    assert torch.equal(Translator.from_pretrained(copy).model.output_ids,
                       Translator.from_pretrained(run_dir).model.output_ids)


def test_the_marian_export_gives_the_models_logits_with_minus_inf_outside(run):
    pytest.importorskip("transformers")
    from tformer.export.hf import marian_model

    _, run_dir = run
    translator = Translator.from_pretrained(run_dir)
    model = translator.model.eval()
    hf = marian_model(translator)
    src = torch.randint(4, model.cfg.vocab_size, (2, 6), generator=torch.Generator().manual_seed(0))
    tgt_in = torch.cat([torch.full((2, 1), model.cfg.bos_id), src[:, :4]], dim=1)
    with torch.no_grad():
        ours = model(src, tgt_in)
        theirs = hf(input_ids=src, attention_mask=torch.ones_like(src), decoder_input_ids=tgt_in).logits
    scored = model.scored_tokens()
    torch.testing.assert_close(theirs[..., scored], ours[..., scored], rtol=1e-4, atol=1e-4)
    assert bool((theirs[..., ~scored] == float("-inf")).all())


@pytest.mark.parametrize("override, message", [
    ("model.output_vocab=10", "data.output_vocab"),
    ("data.output_vocab=source", "data.output_vocab must be one of"),
])
def test_user_errors_are_one_line_and_exit_2(corpus, tmp_path, override, message):
    r = tformer_cli("train", str(write_recipe(corpus, tmp_path / "r")), override)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_averaging_keeps_the_scored_tokens_and_refuses_checkpoints_with_others(run, tmp_path):
    from tformer.errors import TformerError
    from tformer.io.checkpoints import load_checkpoint, save_checkpoint
    from tformer.training.average import average_checkpoints

    _, run_dir = run
    paths = sorted((run_dir / "checkpoints").glob("step-*.pt"))
    assert len(paths) >= 2
    assert torch.equal(average_checkpoints(paths).output_ids, Translator.from_pretrained(run_dir).model.output_ids)
    ckpt = load_checkpoint(paths[0])
    ids = ckpt["model"]["output_ids"]
    gap = int(torch.nonzero(ids[1:] - ids[:-1] > 1)[0])  # an id whose successor is unscored: scoring that one instead
    ids[gap] += 1
    save_checkpoint(tmp_path / "other.pt", ckpt)
    with pytest.raises(TformerError, match="another output_ids"):
        average_checkpoints([paths[-1], tmp_path / "other.pt"])
