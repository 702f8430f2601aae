"""Hostile input (issue 7) through the real command: every user error is one line on stderr, exit status 2,
no traceback, and nothing that existed before (run directories, checkpoints, output files) changes; hostile
but valid text translates line for line.

The commands run through `tformer.cli.main.main` in this process, with bytes on stdin as a pipe gives them
(cli_helpers.run_main); test_cli_plot.py runs the installed command as a process.
"""

import hashlib
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from cli_helpers import run_main, write_recipe

from tformer.cli.main import main


def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (and every folder's name): any change, creation or deletion shows."""
    out = {}
    for root in roots:
        for p in [root, *root.rglob("*")] if root.exists() else []:
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
    return out


@dataclass
class Case:
    args: list
    expect: tuple[str, ...]  # pieces of the one error line
    watch: tuple[Path, ...]  # what must stay byte for byte as it was
    stdin: bytes = b""


@dataclass
class Outcome:
    case: Case
    result: subprocess.CompletedProcess
    before: dict[str, str]
    after: dict[str, str]


def _execute(case: Case) -> Outcome:
    before = snapshot(*case.watch)
    result = run_main(case.args, stdin=case.stdin)
    return Outcome(case, result, before, snapshot(*case.watch))


def _existing(folder: Path) -> Path:
    out = folder / "existing.txt"
    out.write_bytes(b"an earlier translation\r\nkept byte for byte \xff\n")
    return out


def _short(folder: Path) -> Path:
    short = folder / "short.de"
    short.write_text("eins\nzwei\n")
    return short


def _invalid_utf8(c):
    (c.sub / "bad.de").write_text("eins\nzwei\ndrei\n")
    (c.sub / "bad.en").write_bytes(b"one\ntwo \xff\xfe\nthree\n")
    return Case(["train", c.recipe, f"data.train_src={c.sub / 'bad.en'}", f"data.train_tgt={c.sub / 'bad.de'}",
                 f"run_dir={c.sub / 'run'}"], (f"{c.sub / 'bad.en'}:2: invalid UTF-8",), (c.sub,))


def _copy_of_run(c) -> Path:
    return Path(shutil.copytree(c.run, c.sub / "run"))


# name -> builder of the case in its own folder c.sub (c.run: the session's trained run)
CASES: dict[str, Callable[[SimpleNamespace], Case]] = {
    "train-misaligned-corpus": lambda c: Case(
        ["train", c.recipe, f"data.train_tgt={_short(c.sub)}", f"run_dir={c.sub / 'run'}"],
        ("misaligned corpus: ", "train.en has 400 lines but ", "short.de has 2"), (c.sub,)),
    "train-invalid-utf8-corpus": _invalid_utf8,
    "train-missing-config": lambda c: Case(
        ["train", c.sub / "nope.yaml"], (f"config file not found: {c.sub / 'nope.yaml'}",), (c.sub,)),
    "train-missing-data": lambda c: Case(
        ["train", c.recipe, f"data.train_src={c.sub / 'missing.en'}", f"run_dir={c.sub / 'run'}"],
        (f"corpus file not found: {c.sub / 'missing.en'}",), (c.sub,)),
    "translate-missing-run-dir": lambda c: Case(
        ["translate", c.sub / "no-run", "-o", _existing(c.sub)], ("run directory not found",), (c.sub,)),
    "average-missing-checkpoint": lambda c: Case(
        ["average", c.sub / "run/checkpoints/step-00000010.pt", "--out", c.sub / "avg"], ("checkpoint not found",),
        (c.sub,)),
    "plot-missing-run-dir": lambda c: Case(
        ["plot", "curves", c.sub / "no-run", "-o", c.sub / "curves.png"], ("run directory not found",), (c.sub,)),
    # A run with checkpoints must survive a bad override, with or without --resume.
    "train-bad-override-on-existing-run": lambda c: Case(
        ["train", c.recipe, f"run_dir={_copy_of_run(c)}", "model.num_heads=7"], ("divisible by num_heads",),
        (c.sub,)),
    "train-resume-misaligned-on-existing-run": lambda c: Case(
        ["train", c.recipe, f"run_dir={_copy_of_run(c)}", f"data.train_tgt={_short(c.sub)}", "--resume"],
        ("misaligned corpus: ",), (c.sub,)),
    "translate-invalid-utf8-stdin": lambda c: Case(
        ["translate", c.run, "--beam", "1", "-o", _existing(c.sub)], ("<stdin>:2: invalid UTF-8",), (c.sub, c.run),
        stdin=b"one hundred five\n\xc3(\nseven\n"),
    "evaluate-missing-ref": lambda c: Case(
        ["evaluate", c.run, "--src", c.corpus / "test.en", "--ref", c.sub / "missing.de", "-o", _existing(c.sub)],
        (f"corpus file not found: {c.sub / 'missing.de'}",), (c.sub, c.run)),
    "evaluate-line-counts-differ": lambda c: Case(
        ["evaluate", c.run, "--src", c.corpus / "test.en", "--ref", _short(c.sub), "-o", _existing(c.sub)],
        ("test.en has 30 lines but ", "short.de has 2"), (c.sub, c.run)),
}

HOSTILE_LINES = [
    "\ufeffone hundred five",  # a byte-order mark opening stdin
    "",
    "   \t\u00a0\u3000 ",  # whitespace only
    "twelve\r",  # \r\r\n
    "se\x07ven\x00 \x1b[31mnine\x1b[0m",  # control characters
    "日本語 русский עברית",  # scripts the tokenizer never saw
    "one\rhundred",  # a lone \r stays inside its line
    "nine " * 20_000,  # 100k characters: truncated with a warning
    "<s> </s> <pad> <unk> ▁▁",  # special-token strings are text
    "\u2028five\u2029\x85\x0cnine\x0b",  # characters str.splitlines would split at
    "\u0301\u200b\ufeff",
]


@pytest.fixture(scope="module")
def cli(corpus, trained_run, tmp_path_factory):
    """What the cases need: the corpus, a recipe, the trained run."""
    root = tmp_path_factory.mktemp("hostile-cli")
    return SimpleNamespace(corpus=corpus, recipe=write_recipe(corpus, root / "hostile-run"), run=trained_run)


@pytest.mark.parametrize("name", CASES)
def test_user_error_is_one_line_exit_2_and_changes_nothing(cli, tmp_path, name):
    o = _execute(CASES[name](SimpleNamespace(**vars(cli), sub=tmp_path)))
    stderr = o.result.stderr
    assert o.result.returncode == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("tformer: error: "), stderr
    for piece in o.case.expect:
        assert piece in lines[0], stderr
    assert {p: h for p, h in o.after.items() if p in o.before} == o.before, "a file or folder changed or went"
    assert all(o.after[p] == "folder" for p in o.after.keys() - o.before.keys()), "a failed command wrote a file"


def test_hostile_but_valid_text_translates_line_for_line(cli):
    """Documented: one output line per input line; empty and whitespace-only lines give empty lines; control
    characters, unseen scripts and special-token strings are text (unseen characters become <unk>); an
    over-long line is truncated with a warning."""
    r = run_main(["translate", cli.run, "--beam", "1"], stdin="\r\n".join(HOSTILE_LINES).encode() + b"\n")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "truncated" in r.stderr
    out = r.stdout.split("\n")
    assert len(out) == len(HOSTILE_LINES) + 1 and out[-1] == ""
    for text, translation in zip(HOSTILE_LINES, out, strict=False):
        assert "\r" not in translation
        assert (translation == "") == (text.strip() == ""), (text, translation)


BAD_RECIPES = {
    "unknown key": ("train:\n  max_steps: 5\n  max_stepz: 5\n", "unknown key(s) for TrainConfig: max_stepz"),
    "wrong type": ("model:\n  preset: tiny\n  d_model: [64]\n", "model.d_model must be an integer"),
    "d_model not divisible": ("model:\n  preset: tiny\n  d_model: 30\n", "d_model (30) must be divisible"),
    "negative size": ("data:\n  vocab_size: -8000\n", "data.vocab_size must be >= 16"),
    "a section that is a list": ("train: [1, 2]\n", "expected a mapping for TrainConfig"),
    "not YAML": ("train: {max_steps: 5\n", "not valid YAML"),
    "an impossible date": ("train:\n  max_steps: 5\n  max_minutes: 2001-13-01\n", "not valid YAML"),
    "invalid UTF-8": (b"train:\n  device: \xff\n", "not valid YAML"),
}
BAD_OVERRIDES = [
    ("train.lr_scale=.nan", "train.lr_scale must be a finite number"),
    ("train.max_minutes=.inf", "train.max_minutes must be a finite number"),
    ("train.adam_eps=-1", "train.adam_eps and train.weight_decay must be >= 0"),
    ("model.init_std=-0.1", "init_std must be positive"),
    ("model.d_ff=-1", "d_ff must be positive"),
    ("seed=100000000000000000000000", "seed must be in [0, 2**64)"),
    ("train.max_steps=2001-13-01", "the value is not valid YAML"),
    ("train.max_steps=[1", "the value is not valid YAML"),
    ("data=5", "expected a mapping for DataConfig"),
    ("trian.max_steps=3", "unknown key(s) for RunConfig: trian"),
]


def _train_in_process(capsys, *argv) -> str:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("tformer: error: "), err
    return err


@pytest.mark.parametrize("name", BAD_RECIPES)
def test_bad_recipe_is_one_line_and_exit_2(capsys, tmp_path, name):
    body, message = BAD_RECIPES[name]
    recipe = tmp_path / "bad.yaml"
    recipe.write_bytes(body if isinstance(body, bytes) else body.encode())
    assert message in _train_in_process(capsys, "train", recipe, f"run_dir={tmp_path / 'run'}")
    assert sorted(tmp_path.iterdir()) == [recipe]


@pytest.fixture(scope="module")
def recipe(corpus, tmp_path_factory):
    return write_recipe(corpus, tmp_path_factory.mktemp("hostile-overrides") / "hostile-override-run")


@pytest.mark.parametrize("override,message", BAD_OVERRIDES)
def test_bad_override_is_one_line_and_exit_2(capsys, recipe, tmp_path, override, message):
    assert message in _train_in_process(capsys, "train", recipe, f"run_dir={tmp_path / 'run'}", override)
    assert not (tmp_path / "run").exists()
