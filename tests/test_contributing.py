"""CONTRIBUTING.md's commands are run by CI, in order, in a fresh venv
(tools/check_contributing.sh); these checks keep that wiring and the set-up order."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONTRIBUTING = ROOT / "CONTRIBUTING.md"

pytestmark = pytest.mark.skipif(not CONTRIBUTING.exists(),
                                reason="CONTRIBUTING.md not beside the tests")


def commands():
    blocks = re.findall(r"```bash\n(.*?)```", CONTRIBUTING.read_text(), flags=re.S)
    return [ln.strip() for b in blocks for ln in b.splitlines()
            if ln.strip() and not ln.strip().startswith("#")]


def test_ci_runs_every_contributing_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "tools/check_contributing.sh" in ci
    checker = (ROOT / "tools" / "check_contributing.sh").read_text()
    assert "CONTRIBUTING.md" in checker


def test_build_tools_come_before_the_first_no_build_isolation_install():
    """A fresh venv has no Cython and an old setuptools: `pip install -e .
    --no-build-isolation` as the first command failed with "No module named 'Cython'"."""
    cmds = commands()
    assert cmds[0].startswith("python -m venv")
    first_nbi = next(k for k, c in enumerate(cmds) if "--no-build-isolation" in c)
    tools = next(k for k, c in enumerate(cmds) if "Cython" in c and "setuptools" in c)
    assert tools < first_nbi
