"""A/B timing of two or more builds of the compiled kernel, alternated in one process.

    python bench/ab_kernel.py old=/path/to/pkg-root:avx2 new=/path/b --k 64 --repeats 5

Each TAG=DIR[:ISA] loads DIR/mfsgd/_sgd*.so under its own name (copy the .so to a
separate folder per build or per ISA: one file is loaded once per process), optionally
forcing a variant. The 20 M synthetic set (bench/throughput.py's cache) is laid out once
per build, then epochs of the block kernel alone (no fit bookkeeping) alternate between
the builds, for three visiting orders: shuffled (random cell order and in-cell
permutations, the default), cell order only (random cell order, stored order inside), and
stored order. Prints the median and minimum seconds per epoch and M updates/s. This is
the harness behind the kernel measurements quoted in the source comments and notes.
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from throughput import get_data  # noqa: E402

from mfsgd import _training as T  # noqa: E402

ISAS = {"auto": -1, "baseline": 0, "avx2": 1, "avx512": 2}


def load(path: str, tag: str):
    so = glob.glob(os.path.join(path, "mfsgd", "_sgd*.so"))
    if not so:
        sys.exit(f"{path}: no mfsgd/_sgd*.so there")
    spec = importlib.util.spec_from_file_location(f"{tag}._sgd", so[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("builds", nargs="+", metavar="TAG=DIR[:ISA]")
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--modes", nargs="+", default=["shuffled", "cells", "stored"])
    ap.add_argument("--cache", default=os.environ.get("MFSGD_BENCH_CACHE", "/tmp/mfsgd-bench"))
    args = ap.parse_args()
    mods = {}
    for b in args.builds:
        tag, _, rest = b.partition("=")
        path, _, isa = rest.partition(":")
        mods[tag] = load(path, tag)
        if isa:
            mods[tag].isa_select(ISAS[isa])
    nu, ni, n = 200_000, 20_000, 20_000_000
    u, i, r = get_data(nu, ni, n, args.cache)
    k = args.k
    s = T.default_n_cells(nu, ni, n, k * 4, 1)
    rng = np.random.default_rng(0)
    P0 = (rng.standard_normal((nu, k)) * 0.1).astype(np.float32)
    Q0 = (rng.standard_normal((ni, k)) * 0.1).astype(np.float32)
    state = {}
    for tag in mods:
        L = T.Layout.build([u.astype(np.int32, copy=False), i.astype(np.int32, copy=False),
                            r.astype(np.float32, copy=False)], nu, ni, 1, s)
        state[tag] = (L, T.aligned_concat([P0]), T.aligned_concat([Q0]),
                      np.zeros(nu, np.float32), np.zeros(ni, np.float32))
    mu, e0 = float(r.mean()), np.empty(0, np.float32)
    times = {(t, m): [] for t in mods for m in args.modes}
    for rep in range(args.repeats):
        for mode in args.modes:
            for tag, mod in mods.items():
                L, P, Q, bu, bi = state[tag]
                plan = T.epoch_plan(L, None if mode == "stored" else np.random.default_rng(rep))
                t0 = time.perf_counter()
                for st in plan:
                    sse = np.zeros(st.segments.size)
                    mod.sgd_blocks(L.users, L.items, L.ratings, L.seg_ptr, st.segments,
                                   st.seeds if mode == "shuffled" else None, P, Q, bu, bi,
                                   mu, 0.002, 0.02, 0.02, True, False, sse, e0, e0)
                times[(tag, mode)].append(time.perf_counter() - t0)
    print(f"\n20 M ratings, k={k}, {s}x{s} cells, {args.repeats} epoch(s) per build and order\n")
    print("| build | order | s/epoch (median) | min | M updates/s |")
    print("|---|---|---|---|---|")
    for (tag, mode), ts in times.items():
        m = statistics.median(ts)
        print(f"| {tag} | {mode} | {m:.3f} | {min(ts):.3f} | {n / m / 1e6:.1f} |")


if __name__ == "__main__":
    main()
