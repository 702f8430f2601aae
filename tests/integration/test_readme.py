"""The README's Python examples run as written."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def _python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples():
    assert len(_python_blocks()) >= 2


@pytest.mark.parametrize("i", range(3))
def test_readme_python_example_runs(i, tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    code = "\n".join(_python_blocks()[: i + 1])  # later blocks may use names of earlier ones
    monkeypatch.chdir(tmp_path)
    exec(compile(code.replace("/tmp/tformer-tiny", str(tmp_path / "tiny")), f"README block {i}", "exec"), {})


def test_every_test_the_guarantees_name_exists():
    """The README's Guarantees table names its tests as `path::name`, then further names in the same file."""
    root = README.parents[0]
    section = README.read_text().split("## Guarantees", 1)[1].split("\n## ", 1)[0]
    named = 0
    for row in section.splitlines():
        path = None
        for ref in re.findall(r"`(tests/[\w/]+\.py::)?(test_\w+)`", row):
            path = ref[0][:-2] if ref[0] else path
            assert path is not None, row
            source = (root / path).read_text()
            assert re.search(rf"^(async )?def {ref[1]}\(", source, flags=re.M), f"{path}::{ref[1]} does not exist"
            named += 1
    assert named >= 20
