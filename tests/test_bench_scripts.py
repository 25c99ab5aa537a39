"""Every benchmark script starts: its imports resolve and its command line parses.

The benchmarks run for minutes to an hour and need data (MovieLens, anchors' venvs), so
the suite does not run them; but a script that no longer starts after a change to a
module it imports (``bench/ranking_blocks.py`` imported a function ``bench/ranking.py``
had dropped) is found here rather than by whoever next runs it.
"""

import pathlib
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "bench"
# the scripts: the modules that run as a program (libs.py, _common.py are imported only)
SCRIPTS = sorted(p.name for p in BENCH.glob("*.py")
                 if 'if __name__ == "__main__":' in p.read_text()) if BENCH.is_dir() else []

pytestmark = pytest.mark.skipif(not SCRIPTS, reason="bench/ not beside the tests")


@pytest.mark.parametrize("script", SCRIPTS)
def test_bench_script_starts(script):
    r = subprocess.run([sys.executable, script, "--help"], cwd=BENCH, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("usage:"), r.stdout[:500]


def test_parse_params_reads_literals_and_words_and_refuses_a_bare_word(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    from _common import parse_params

    got = parse_params(["loss=softmax", "n_negatives=10", "reg_factors=0.02", "adagrad=True",
                        "n_epochs=None", "eval_metric=ndcg@10"])
    assert got == {"loss": "softmax", "n_negatives": 10, "reg_factors": 0.02, "adagrad": True,
                   "n_epochs": None, "eval_metric": "ndcg@10"}
    with pytest.raises(SystemExit, match="'n_negatives': expected key=value"):
        parse_params(["n_negatives"])
