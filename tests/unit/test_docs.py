"""docs/walkthrough.md: every link points at an existing file, and every code link at its definition's line."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIX_HINT = "run `python docs/check_links.py --fix` (and fix by hand whatever it cannot)"


def _load_checker():
    spec = importlib.util.spec_from_file_location("check_links", ROOT / "docs" / "check_links.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("doc", ["walkthrough.md", "architecture.md"])
def test_the_docs_links_point_at_their_definitions(doc):
    problems = _load_checker().check(ROOT / "docs" / doc, fix=False)
    assert not problems, f"docs/{doc} has stale links; {FIX_HINT} docs/{doc}:\n" + "\n".join(map(str, problems))


def test_the_architecture_page_names_every_package_of_the_layer_contract():
    """docs/architecture.md's picture and pyproject.toml's import-linter layers name the same packages."""
    import tomllib

    layers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]
    packages = {name.strip("() ").removeprefix("tformer.") for row in layers for name in row.split("|")}
    page = (ROOT / "docs" / "architecture.md").read_text()
    missing = sorted(p for p in packages if p not in page)
    assert not missing, f"docs/architecture.md does not show {missing}"


def test_checker_finds_and_fixes_a_moved_definition(tmp_path):
    checker = _load_checker()
    source = ROOT / "src" / "tformer" / "training" / "label_smoothing.py"
    line = checker.definitions(source.read_text(encoding="utf-8"))["label_smoothed_loss"]
    doc = tmp_path / "doc.md"
    picture = ROOT / "docs" / "pictures" / "missing.png"
    doc.write_text(f"[`label_smoothed_loss`]({source}#L{line + 1}), [`nope`]({source}#L1), ![x]({picture})\n")
    problems = checker.check(doc)
    assert [p.message.split(": ", 1)[1] for p in problems] == [
        f"`label_smoothed_loss` is at #L{line}, not #L{line + 1}",
        "`nope` is not defined in src/tformer/training/label_smoothing.py",
        "docs/pictures/missing.png does not exist",
    ]
    assert len(checker.check(doc, fix=True)) == 2
    assert f"{source}#L{line})" in doc.read_text()
