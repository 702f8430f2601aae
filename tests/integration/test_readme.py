"""The README's Python examples run as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples():
    assert len(_python_blocks()) >= 2


@pytest.mark.parametrize("i", range(2))
def test_readme_python_example_runs(i, tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    code = "\n".join(_python_blocks()[: i + 1])  # later blocks may use names of earlier ones
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace("/tmp/tformer-tiny", str(tmp_path / "tiny")), f"README block {i}", "exec"), {})
