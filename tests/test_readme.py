"""The README's Python examples run, and its commands match CI."""

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

pytestmark = pytest.mark.skipif(not README.exists(), reason="README not beside the tests")


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_examples_run(tmp_path, monkeypatch):
    pytest.importorskip("pandas")
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks()
    assert blocks
    for code in blocks:
        exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "<!-- test-command -->" in ci and "README.md" in ci


@pytest.mark.parametrize("kernel", ["baseline", "avx2", "avx512"])
def test_kernel_env_var_selects_variant(kernel):
    code = "import mfsgd, mfsgd._sgd as s; print(s.isa_name(s.isa_current()))"
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True,
                         text=True, env={"MFSGD_KERNEL": kernel, "PATH": ""}, timeout=120)
    assert out.returncode == 0, out.stderr
    from mfsgd import _sgd

    want = {"baseline": 0, "avx2": 1, "avx512": 2}[kernel]
    assert out.stdout.strip() == _sgd.isa_name(_best_at_most(want))


def _best_at_most(want):
    from mfsgd import _sgd

    mask = _sgd.isa_available()
    while want > 0 and not mask & (1 << want):
        want -= 1
    return want
