"""A tiny corpus and a tiny trained run, made once per test session with tformer's own code."""

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
