"""The package's import graph has no cycle, counting imports inside functions, and only
``__init__`` and ``_cli`` import the estimator module (STYLE.md: dependencies run one
way, and a lower module never imports a higher one, not even inside a function)."""

import ast
import pathlib

import pytest

import mfsgd

PKG = pathlib.Path(mfsgd.__file__).resolve().parent
SRC = sorted(PKG.glob("*.py"))

pytestmark = pytest.mark.skipif(not SRC, reason="package sources not found")


def imports_of(path: pathlib.Path) -> set[str]:
    """Modules of the package that ``path`` imports anywhere (top level or inside a
    function or method), as module names without the package prefix."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module:  # from .x import y
                names.add(node.module.split(".")[0])
            elif node.level == 1:  # from . import x, y
                names.update(a.name for a in node.names)
            elif node.module and node.module.split(".")[0] == "mfsgd":
                parts = node.module.split(".")
                names.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == "mfsgd" and len(parts) > 1:
                    names.add(parts[1])
    own = {p.stem for p in SRC} | {"_sgd"}
    return (names & own) - {path.stem}


def graph() -> dict[str, set[str]]:
    return {p.stem: imports_of(p) for p in SRC}


def test_no_import_cycle():
    g = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(g.get(m, ())):
            if state.get(n) == 1:
                cycle = path[path.index(n):] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)


def test_only_the_entry_points_import_the_estimator():
    importers = {m for m, deps in graph().items() if "model" in deps}
    assert importers <= {"__init__", "_cli"}, importers


def test_the_graph_sees_imports_inside_functions(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from .model import X\n    from . import _state\n")
    assert imports_of(f) >= {"model", "_state"}
