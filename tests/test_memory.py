"""No resource grows over many fit / predict / partial_fit / save / load cycles: resident
memory (from /proc/self/statm), open file descriptors and threads.

The model is sized so that leaking one model's arrays per cycle (~0.5 MB) or one
training copy of the ratings per cycle would pass the 30 MB bound within the 200 cycles.
"""

import gc
import os
import sys
import threading

import numpy as np
import pytest
from helpers import asan_loaded

import mfsgd
from mfsgd import MatrixFactorization
from mfsgd.datasets import make_ratings

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"),
                       reason="reads /proc/self/statm and /proc/self/fd (Linux)"),
    pytest.mark.skipif(asan_loaded(),
                       reason="ASan's quarantine holds freed memory: RSS says nothing"),
    pytest.mark.slow,
]

WARMUP, CYCLES = 20, 200
BOUND = 30 << 20  # bytes of RSS growth allowed after the warm-up


def rss():
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def open_fds():
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(scope="module")
def data():
    u, i, r = make_ratings(3000, 1500, 30_000, rank=4, random_state=0, as_frame=False)
    su = np.array([f"user-{x}" for x in u])  # string ids: the save path for U arrays
    return (su, i, r), (su[:2000], i[:2000])


def cycle(k, data, path):
    train, query = data
    n_threads = 1 + k % 2  # a thread pool every other fit
    m = MatrixFactorization(n_factors=32, n_epochs=2, random_state=k, n_threads=n_threads)
    m.fit(train)
    p = m.predict(query)
    m.partial_fit((train[0][:500], train[1][:500], train[2][:500]))
    m.save(path)
    m2 = mfsgd.load(path)
    np.testing.assert_array_equal(m2.predict(query), m.predict(query))
    assert np.isfinite(p).all()


def test_no_growth_over_many_cycles(data, tmp_path):
    path = tmp_path / "model.mfsgd"
    for k in range(WARMUP):
        cycle(k, data, path)
    base_rss, base_fds, base_threads = rss(), open_fds(), threading.active_count()
    samples = [base_rss]
    for k in range(WARMUP, WARMUP + CYCLES):
        cycle(k, data, path)
        if (k - WARMUP) % 40 == 39:
            samples.append(rss())
    growth = samples[-1] - base_rss
    mb = [round(s / 2**20, 1) for s in samples]
    assert growth < BOUND, f"RSS grew by {growth / 2**20:.1f} MB over {CYCLES} cycles: {mb} MB"
    assert open_fds() == base_fds, "file descriptors leaked"
    assert threading.active_count() == base_threads, "threads leaked"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.mfsgd"]  # no temp files
