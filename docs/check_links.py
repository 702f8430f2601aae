"""Check that the code links of docs/walkthrough.md still point at the right lines.

The walkthrough links each idea of the paper to the function that implements it, written as a
relative link whose text names the definition in inline code and whose anchor is its line::

    [`MultiHeadAttention.forward`](../src/tformer/nn/attention.py#L88)

For every markdown link (inline links, images and reference definitions; links in fenced code
blocks and inside inline code are not links, and URLs with a scheme are skipped) that points into
the repository, this script checks that:

* the linked file or folder exists (pictures in ``docs/pictures``, other docs, source files);
* for a link to a ``.py`` file whose text is a name in inline code (``name``, ``Class``,
  ``Class.method``, ``Class.Inner.method``; a trailing ``()`` is allowed), that the name is
  defined in that file (top-level functions and classes, and methods as ``Class.method``, read
  with :mod:`ast`), and that the ``#L<n>`` anchor is the line of that definition: the ``def`` or
  ``class`` line, which for a decorated function is the ``def`` line, not the decorator's. A link
  to such a name without an anchor is reported too (``--fix`` adds one);
* a ``#L<n>`` anchor on a ``.py`` link whose text names nothing is within the file.

Usage:
    python docs/check_links.py              # report problems, one line each; exit 1 if any
    python docs/check_links.py --fix        # rewrite wrong anchors in place, then report what is left
    python docs/check_links.py OTHER.md     # check another markdown file the same way

Only the standard library is used. ``tests/unit/test_docs.py`` runs :func:`check` (without
``--fix``) so that a moved function fails the tests until the anchors are fixed.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DOC = REPO_ROOT / "docs" / "walkthrough.md"

# [text](destination "optional title") and ![alt](destination); the text may hold inline code.
_INLINE_LINK = re.compile(
    r"(?<!\\)!?\[(?P<text>(?:[^\[\]\\`]|\\.|`[^`]*`)*)\]"
    r"\(\s*(?P<dest><[^>\n]*>|[^\s()]+)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\)"
)
# [label]: destination   (a reference definition, at the start of a line)
_REFERENCE_DEF = re.compile(r"^ {0,3}\[(?P<text>[^\]]+)\]:\s*(?P<dest><[^>\n]*>|\S+)")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_NAME = re.compile(r"`\s*(?P<name>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?:\(\))?\s*`")
_LINE_ANCHOR = re.compile(r"L(?P<start>\d+)(?:-L(?P<end>\d+))?")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class Link(NamedTuple):
    """One markdown link.

    Attributes:
        line: 1-based line of the markdown file.
        text: the link text (or image alt text, or reference label).
        dest: the destination as written (angle brackets removed).
        dest_start: offset of ``dest`` in the markdown file's text.
    """

    line: int
    text: str
    dest: str
    dest_start: int


class Problem(NamedTuple):
    """A link that is wrong.

    Attributes:
        doc: the markdown file.
        line: 1-based line of the link.
        message: what is wrong.
        link: the link.
        fixed_dest: the corrected destination where ``--fix`` can correct it, else None.
    """

    doc: Path
    line: int
    message: str
    link: Link
    fixed_dest: str | None = None

    def __str__(self) -> str:
        return f"{_display(self.doc)}:{self.line}: {self.message}"


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def _code_spans(line: str) -> list[tuple[int, int]]:
    return [m.span() for m in _CODE_SPAN.finditer(line)]


def parse_links(text: str) -> list[Link]:
    """Every markdown link of ``text`` outside fenced code blocks and inline code.

    Args:
        text: the markdown file's contents.

    Returns:
        The links, in the order they appear.
    """
    links: list[Link] = []
    fence: str | None = None
    offset = 0
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        start = offset
        offset += len(line)
        opener = _FENCE.match(line)
        if fence is not None:
            if opener and opener.group(1)[0] == fence[0] and len(opener.group(1)) >= len(fence):
                fence = None
            continue
        if opener:
            fence = opener.group(1)
            continue
        spans = _code_spans(line)
        found: list[re.Match[str]] = list(_INLINE_LINK.finditer(line))
        ref = _REFERENCE_DEF.match(line)
        if ref:
            found.append(ref)
        for m in found:
            if any(a <= m.start() < b for a, b in spans):
                continue  # written inside inline code: not a link
            dest, dest_start = m.group("dest"), m.start("dest")
            if dest.startswith("<") and dest.endswith(">"):
                dest, dest_start = dest[1:-1], dest_start + 1
            links.append(Link(number, m.group("text"), dest, start + dest_start))
    return links


def definitions(source: str) -> dict[str, int]:
    """Names defined in a Python module and the line of each definition.

    Args:
        source: the module's source.

    Returns:
        ``{name: line}`` for top-level functions and classes, and ``Class.member`` (recursively,
        ``Class.Inner.method``) for what a class body defines. The line is that of ``def`` or
        ``class``, never a decorator's. A name defined twice (a property's setter) keeps the first.
    """
    found: dict[str, int] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found.setdefault(prefix + node.name, node.lineno)
                if isinstance(node, ast.ClassDef):
                    visit(node.body, f"{prefix}{node.name}.")

    visit(ast.parse(source).body, "")
    return found


def _module_info(path: Path) -> tuple[dict[str, int], int] | str:
    """The definitions of a Python file and its number of lines, or why it cannot be read."""
    try:
        source = path.read_text(encoding="utf-8")
        return definitions(source), len(source.splitlines())
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError) as e:
        return f"cannot be parsed ({type(e).__name__}: {e})"


def _check_link(doc: Path, link: Link, cache: dict[Path, tuple[dict[str, int], int] | str]) -> Problem | None:
    dest = link.dest
    if not dest or dest.startswith("#") or _SCHEME.match(dest) or dest.startswith("//"):
        return None  # an anchor in this file, or a URL: not a path into the repository
    path_part, _, anchor = dest.partition("#")
    target = (doc.parent / unquote(path_part)).resolve()
    try:
        target.relative_to(REPO_ROOT)
    except ValueError:
        return Problem(doc, link.line, f"{dest}: points outside the repository", link)
    if not target.exists():
        return Problem(doc, link.line, f"{dest}: {_display(target)} does not exist", link)
    if target.suffix != ".py" or not target.is_file():
        return None
    if target not in cache:
        cache[target] = _module_info(target)
    info = cache[target]
    if isinstance(info, str):
        return Problem(doc, link.line, f"{dest}: {_display(target)} {info}", link)
    defs, num_lines = info
    m = _LINE_ANCHOR.fullmatch(anchor) if anchor else None
    if anchor and not m:
        return Problem(doc, link.line, f"{dest}: anchor #{anchor} is not a line anchor (#L<n>)", link)
    name_match = _NAME.fullmatch(link.text.strip())
    if name_match is None:  # the text names no definition: only the anchor's range can be checked
        if m and not 1 <= int(m.group("start")) <= num_lines:
            return Problem(doc, link.line, f"{dest}: the file has no line {m.group('start')} ({num_lines} lines)", link)
        return None
    name = name_match.group("name")
    if name not in defs:
        return Problem(doc, link.line, f"{dest}: `{name}` is not defined in {_display(target)}", link)
    want = defs[name]
    if m is None:
        return Problem(doc, link.line, f"{dest}: `{name}` has no line anchor; it is at #L{want}", link,
                       f"{path_part}#L{want}")
    start = int(m.group("start"))
    if start == want:
        return None
    new_anchor = f"L{want}"
    if m.group("end"):
        new_anchor += f"-L{int(m.group('end')) + want - start}"
    return Problem(doc, link.line, f"{dest}: `{name}` is at #L{want}, not #L{start}", link,
                   f"{path_part}#{new_anchor}")


def find_problems(doc: Path = DEFAULT_DOC) -> list[Problem]:
    """Check every link of a markdown file.

    Args:
        doc: the markdown file.

    Returns:
        One :class:`Problem` per wrong link, in the file's order.
    """
    doc = Path(doc).resolve()
    with open(doc, encoding="utf-8", newline="") as f:  # offsets as on disk: apply_fixes edits the same text
        text = f.read()
    cache: dict[Path, tuple[dict[str, int], int] | str] = {}
    problems = [_check_link(doc, link, cache) for link in parse_links(text)]
    return [p for p in problems if p is not None]


def _write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def apply_fixes(doc: Path, problems: list[Problem]) -> list[Problem]:
    """Rewrite the destinations that ``problems`` can correct, in place (temporary file + ``os.replace``).

    Args:
        doc: the markdown file the problems were found in.
        problems: what :func:`find_problems` returned for ``doc``.

    Returns:
        The problems that were fixed.
    """
    doc = Path(doc).resolve()
    fixable = [p for p in problems if p.fixed_dest is not None and Path(p.doc).resolve() == doc]
    if not fixable:
        return []
    with open(doc, encoding="utf-8", newline="") as f:
        text = f.read()
    for p in sorted(fixable, key=lambda p: p.link.dest_start, reverse=True):
        start, end = p.link.dest_start, p.link.dest_start + len(p.link.dest)
        if text[start:end] != p.link.dest:
            raise RuntimeError(f"{_display(doc)}:{p.line}: the file changed while it was being fixed")
        text = text[:start] + p.fixed_dest + text[end:]
    _write_atomically(doc, text)
    return fixable


def check(doc: Path = DEFAULT_DOC, fix: bool = False) -> list[Problem]:
    """Check a markdown file's links, fixing the anchors first if asked.

    Args:
        doc: the markdown file (default: docs/walkthrough.md).
        fix: rewrite wrong ``#L<n>`` anchors in place before reporting.

    Returns:
        The problems that remain.
    """
    problems = find_problems(doc)
    if fix:
        for p in apply_fixes(doc, problems):
            print(f"{_display(p.doc)}:{p.line}: fixed {p.link.dest} -> {p.fixed_dest}")
        problems = find_problems(doc)
    return problems


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 1 if any problem remains, else 0.
    """
    parser = argparse.ArgumentParser(description="Check the code links (and their #L anchors) of a markdown file.")
    parser.add_argument("doc", nargs="?", type=Path, default=DEFAULT_DOC, help="markdown file (docs/walkthrough.md)")
    parser.add_argument("--fix", action="store_true", help="rewrite wrong line anchors in place")
    args = parser.parse_args(argv)
    problems = check(args.doc, fix=args.fix)
    for p in problems:
        print(p)
    if not problems:
        print(f"{_display(Path(args.doc))}: all links OK")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
