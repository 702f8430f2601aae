"""benchmarks/recipe_sweep.py: a job trains with the recipe's config and its overrides, is scored on validation
and recorded; a job that cannot start in time, an unknown job and a failing job are recorded or refused in one
line. Its CPU dry run stands in for the GPU, on a small parallel corpus written here."""

import gzip
import json
import random
import sys
import tarfile
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import recipe_sweep  # noqa: E402  (a script beside the benchmarks, not a package)

WORDS = {"en": "a the dog cat man woman runs sits on in red blue park street ball child".split(),
         "de": "ein der hund katze mann frau läuft sitzt auf im roten blauen park straße ball kind".split()}


def _corpus(root: Path, n: int = 120) -> Path:
    """Word-for-word 'translations' of random English sentences, in the Multi30k file layout."""
    rng = random.Random(0)
    sentences = [[rng.randrange(len(WORDS["en"])) for _ in range(rng.randint(3, 8))] for _ in range(n)]
    for split, rows in (("train", sentences[:100]), ("val", sentences[100:])):
        for lang, words in WORDS.items():
            with gzip.open(root / f"{split}.{lang}.gz", "wt", encoding="utf-8") as f:
                f.writelines(" ".join(words[i] for i in row) + "\n" for row in rows)
    return root


def _sweep(tmp_path, *args):
    out = tmp_path / "out"
    assert recipe_sweep.main([str(out), "--data", str(_corpus(tmp_path)), "--cpu-dry-run", *args]) == 0
    return json.loads((out / "sweep.json").read_text())["jobs"], out


@pytest.mark.slow  # two short trainings of the small model and their evaluations: about a minute on 2 cores
def test_a_dry_run_trains_scores_and_records_each_job(tmp_path):
    jobs, out = _sweep(tmp_path, "--jobs", "1", "--only", "de-en 1750,en-de 1750 lr 2.5e-3")
    assert set(jobs) == {"de-en 1750", "en-de 1750 lr 2.5e-3"}
    for name, job in jobs.items():
        assert job["status"] == "ok", (name, job)
        assert job["updates"] == 12 and job["last_logged_step"] == 12
        assert [v["step"] for v in job["valid"]] == [12] and job["valid"][0]["loss"] > 0
        assert 0 <= job["bleu"] <= 100 and 0 <= job["bleu_tok"] <= 100 and 0 <= job["chrf"] <= 100
    assert jobs["en-de 1750 lr 2.5e-3"]["overrides"] == ["train.lr=0.0025"]
    with tarfile.open(out / "logs.tgz") as tar:
        assert {"de_en_1750.log", "de_en_1750.metrics.jsonl"} <= set(tar.getnames())
        argv = tar.extractfile("en_de_1750_lr_2_5e_3.log").read().decode().splitlines()[0].split()
    assert "configs/multi30k_en_de.yaml" in argv
    assert argv.index("train.lr=0.002") < argv.index("train.lr=0.0025")  # the sweep's base, then the job's


@pytest.mark.parametrize("sweep", list(recipe_sweep.SWEEPS))
def test_every_job_of_every_sweep_is_a_valid_run_config(sweep):
    """A typo in a job's overrides would cost a GPU call: each job's overrides, as the sweep passes them, load as
    its recipe, and the job's own settings are the ones that take effect."""
    from tformer.tasks import load_run_config

    base, jobs = recipe_sweep.SWEEPS[sweep]
    for name, (direction, steps, overrides) in jobs.items():
        assert name.startswith(direction), name
        cfg = load_run_config(BENCHMARKS.parent / recipe_sweep.recipe(direction),
                              recipe_sweep.job_overrides(base, steps, overrides))
        d = cfg.to_dict()
        for item in [f"train.max_steps={steps}", "train.decay_over=steps", *overrides]:
            key, value = item.split("=")
            node = d
            for part in key.split("."):
                node = node[part]
            assert str(node) == value or float(node) == float(value), (name, item)


def test_a_bad_override_is_caught_by_that_check():
    from tformer.config import ConfigError
    from tformer.tasks import load_run_config

    with pytest.raises(ConfigError):
        load_run_config(BENCHMARKS.parent / "configs/multi30k_en_de.yaml", ["model.num_encoder_layer=4"])

def test_a_job_without_the_time_to_run_is_recorded_as_not_started(tmp_path):
    jobs, out = _sweep(tmp_path, "--seconds", "5", "--only", "en-de 1750")
    assert jobs == {"en-de 1750": {"direction": "en-de", "updates": 12, "overrides": [],
                                   "status": "not started: out of time"}}
    assert (out / "logs.tgz").exists()


def test_a_training_that_fails_is_recorded_with_its_exit_status(tmp_path, monkeypatch):
    monkeypatch.setitem(recipe_sweep.SWEEPS[recipe_sweep.LATEST][1], "broken", ("en-de", 10, ["model.dropout=2"]))
    jobs, out = _sweep(tmp_path, "--only", "broken")
    assert jobs["broken"]["status"] == "train: exit 2" and jobs["broken"]["valid"] == []


def test_an_unknown_job_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        recipe_sweep.main([str(tmp_path / "out"), "--data", str(tmp_path), "--only", "en-de 99"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"unknown job(s) of sweep {recipe_sweep.LATEST}: en-de 99" in err and "en-de 1750" in err


def test_an_earlier_sweep_can_be_chosen(tmp_path):
    assert "en-de 1750 lr 3e-3" not in recipe_sweep.SWEEPS[recipe_sweep.LATEST][1]
    jobs, out = _sweep(tmp_path, "--sweep", "nine", "--seconds", "5", "--only", "en-de 1750 lr 3e-3")
    assert jobs["en-de 1750 lr 3e-3"]["overrides"] == ["train.lr=0.003"]
    record = json.loads((out / "sweep.json").read_text())
    assert record["sweep"] == "nine" and record["base"] == recipe_sweep.SWEEPS["nine"][0]


def test_a_job_of_another_sweep_is_named_in_the_refusal(tmp_path, capsys):
    with pytest.raises(SystemExit):
        recipe_sweep.main([str(tmp_path / "out"), "--data", str(tmp_path), "--only", "en-de 1750 lr 3e-3"])
    assert "see --sweep nine" in capsys.readouterr().err
