"""The end of every dataset builder's command line (tformer.data.build_cli.run_build): the report, the "exists"
message, and a user's error as one line with exit status 2, TformerError and OSError alike."""

import pytest

from tformer.data import babi
from tformer.data.build_cli import run_build
from tformer.errors import TformerError, os_error_line


def test_the_report_of_a_build(capsys):
    assert run_build(lambda: {"train": 3}, "ROOT", lambda r: f"wrote {r['train']}") == 0
    assert capsys.readouterr().out == "wrote 3\n"


def test_an_existing_root_is_not_rebuilt(capsys):
    assert run_build(lambda: None, "some/root", str) == 0
    assert capsys.readouterr().out == "some/root exists; --force rebuilds it\n"


def _raise(e: Exception):
    def make():
        raise e
    return make


@pytest.mark.parametrize("error, line", [
    (TformerError("bad --valid"), "error: bad --valid\n"),
    (FileNotFoundError(2, "No such file or directory", "src.dict"), "error: No such file or directory: src.dict\n"),
    (PermissionError(13, "Permission denied"), "error: Permission denied\n"),
])
def test_a_users_error_is_one_line_and_status_2(capsys, error, line):
    assert run_build(_raise(error), "ROOT", str) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err == line


def test_other_errors_are_not_swallowed():
    with pytest.raises(ZeroDivisionError):
        run_build(lambda: 1 / 0, "ROOT", str)


def test_os_error_line_names_the_path():
    assert os_error_line(IsADirectoryError(21, "Is a directory", "/tmp")) == "Is a directory: /tmp"
    assert os_error_line(OSError("disk on fire")) == "disk on fire"


def test_a_builder_whose_root_cannot_be_made(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    assert babi.main(["build", str(tmp_path / "file" / "babi"), "--train-questions", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "file" in err
    assert (tmp_path / "file").read_text() == "not a folder"
