"""A/B timing of two or more builds of the compiled kernel, alternated in one process.

    python bench/ab_kernel.py old=/path/to/pkg-root:avx2 new=/path/b --k 64 --repeats 5

Each TAG=DIR[:ISA] loads DIR/mfsgd/_sgd*.so under its own name (copy the .so to a
separate folder per build or per ISA: one file is loaded once per process), optionally
forcing a variant. The synthetic set (20 M ratings by default, from the shared cache) is
laid out once per build, then epochs of the segment kernel alone (no fit bookkeeping)
alternate between the builds, for three visiting orders: shuffled (random cell order and
in-cell permutations, the default), cell order only (random cell order, stored order
inside), and stored order. Prints the median and minimum seconds per epoch and M
updates/s. This is the harness behind the kernel measurements quoted in the source
comments and notes.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import statistics
import sys
import time

import numpy as np
from _common import Parser, Report, get_data, md_table, run_alone, size_dims

from mfsgd import _training as T


def load(path: str, tag: str):
    so = glob.glob(os.path.join(path, "mfsgd", "_sgd*.so"))
    if not so:
        sys.exit(f"{path}: no mfsgd/_sgd*.so there")
    spec = importlib.util.spec_from_file_location(f"{tag}._sgd", so[0])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(rep: Report, args) -> None:
    mods = {}
    for b in args.builds:
        tag, _, rest = b.partition("=")
        path, _, isa = rest.partition(":")
        mods[tag] = load(path, tag)
        if isa:
            mods[tag].isa_select(getattr(mods[tag], f"ISA_{isa.upper()}"))
    # Builds before the rename of blocks to segments name the entry point sgd_blocks (same
    # arguments), so that A/B runs against them still work.
    run_segments = {tag: getattr(mod, "sgd_segments", None) or mod.sgd_blocks
                    for tag, mod in mods.items()}
    n = args.ratings
    nu, ni = size_dims(n)
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
    for rep_i in range(args.repeats):
        for mode in args.modes:
            for tag in mods:
                L, P, Q, bu, bi = state[tag]
                plan = T.epoch_plan(L, None if mode == "stored" else np.random.default_rng(rep_i))
                t0 = time.perf_counter()
                for st in plan:
                    sse = np.zeros(st.segments.size)
                    run_segments[tag](L.users, L.items, L.ratings, L.seg_ptr, st.segments,
                                      st.seeds if mode == "shuffled" else None, P, Q, bu, bi,
                                      mu, 0.002, 0.02, 0.02, True, False, sse, e0, e0)
                times[(tag, mode)].append(time.perf_counter() - t0)
    rep.add(f"{n:,} ratings, k={k}, {s}x{s} cells, {args.repeats} epoch(s) per build and "
            "order\n")
    rows = []
    for (tag, mode), ts in times.items():
        m = statistics.median(ts)
        rows.append([tag, mode, f"{m:.3f}", f"{min(ts):.3f}", f"{n / m / 1e6:.1f}"])
    rep.add(md_table(["build", "order", "s/epoch (median)", "min", "M updates/s"], rows))


def parser() -> Parser:
    ap = Parser(__doc__)
    ap.add_argument("builds", nargs="+", metavar="TAG=DIR[:ISA]")
    ap.add_argument("--ratings", type=int, default=20_000_000,
                    help="ratings in the synthetic set (default %(default)s)")
    ap.add_argument("--k", type=int, default=64, help="n_factors (default %(default)s)")
    ap.add_repeats(5, what="epochs per build and order")
    ap.add_argument("--modes", nargs="+", default=["shuffled", "cells", "stored"],
                    choices=["shuffled", "cells", "stored"], help="visiting orders")
    ap.add_cache()
    ap.add_out()
    return ap


if __name__ == "__main__":
    run_alone(parser(), run)
