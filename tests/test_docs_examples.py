"""The Python examples of the Sphinx docs run, as the README's do (tests/test_readme.py).

Convention for docs/index.rst and docs/guide/*.rst:

* Every ``.. code-block:: python`` block is run. The blocks of one page run in order in
  one namespace (a later block may use an earlier block's names), in a fresh temporary
  directory. No other spelling of Python examples is used (no ``.. code::``, no ``>>>``),
  so that none is skipped by accident; the docstrings' own examples are doctests.
* A block that cannot run here (a download, a real cluster) carries ``:class: no-test``
  and is preceded by a comment saying why: ``.. Not run: <reason>``.
* A page whose examples need optional packages says so in a comment anywhere on the page:
  ``.. test-requires: pandas sklearn``; the page is skipped when one is missing.

Tracebacks point at the line of the .rst file.
"""

from __future__ import annotations

import pathlib
import re
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

pytestmark = pytest.mark.skipif(not (DOCS / "guide").is_dir(),
                                reason="docs/ not beside the tests")

IMPORT_NAMES = {"sklearn": "sklearn", "pandas": "pandas", "dask": "dask.dataframe",
                "distributed": "distributed", "matplotlib": "matplotlib"}


def pages() -> list[pathlib.Path]:
    if not (DOCS / "guide").is_dir():
        return []
    return [DOCS / "index.rst", *sorted((DOCS / "guide").glob("*.rst"))]


def python_blocks(path: pathlib.Path) -> list[dict]:
    """``.. code-block:: python`` blocks: first line number (1-based), options, code."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)\.\. code-block:: python\s*$", lines[i])
        if not m:
            i += 1
            continue
        indent = len(m.group(1))
        start = i
        i += 1
        options = {}
        while i < len(lines) and re.match(r"^\s+:[\w-]+:", lines[i]):
            name, _, value = lines[i].strip()[1:].partition(":")
            options[name] = value.strip()
            i += 1
        body_start = i
        while i < len(lines) and (not lines[i].strip() or
                                  len(lines[i]) - len(lines[i].lstrip()) > indent):
            i += 1
        body = lines[body_start:i]
        prev = next((ln for ln in reversed(lines[:start]) if ln.strip()), "")
        blocks.append({"line": start + 1, "first": body_start + 1, "options": options,
                       "code": textwrap.dedent("\n".join(body)), "comment_before": prev})
    return blocks


def is_skipped(block: dict) -> bool:
    return "no-test" in block["options"].get("class", "").split()


def requirements(path: pathlib.Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    return [name for m in re.finditer(r"^\.\. test-requires:(.*)$", text, flags=re.M)
            for name in m.group(1).split()]


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(DOCS).as_posix())
def test_docs_python_examples_run(page, tmp_path, monkeypatch):
    for name in requirements(page):
        pytest.importorskip(IMPORT_NAMES.get(name, name))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace = {"__name__": "__docs__"}
    for block in python_blocks(page):
        if is_skipped(block):
            continue
        # Pad with blank lines so that line numbers in a traceback are the .rst's.
        code = "\n" * (block["first"] - 1) + block["code"]
        exec(compile(code, str(page), "exec"), namespace)


def test_docs_have_runnable_examples():
    """The parser finds the examples: a change of convention cannot silently skip them."""
    found = {p.name: [b for b in python_blocks(p) if not is_skipped(b)] for p in pages()}
    for name in ("index.rst", "data.rst", "recommending.rst", "evaluation.rst",
                 "dask.rst", "persistence.rst"):
        assert found.get(name), f"no runnable python block found in {name}"


@pytest.mark.parametrize("page", pages(), ids=lambda p: p.relative_to(DOCS).as_posix())
def test_docs_use_one_example_convention(page):
    text = page.read_text(encoding="utf-8")
    other = re.findall(r"^\s*(?:\.\. (?:code|sourcecode)::.*|\.\. code-block:: "
                       r"(?!python\s*$|bash\s*$|console\s*$|text\s*$).*|>>> .*)$",
                       text, flags=re.M)
    assert not other, (f"{page.name}: write Python examples as '.. code-block:: python' "
                       f"(other languages: bash, console, text); found {other}")
    for block in python_blocks(page):
        if is_skipped(block):
            assert block["comment_before"].startswith(".. Not run:"), (
                f"{page.name}:{block['line']}: a no-test block must be preceded by "
                "'.. Not run: <reason>'")
