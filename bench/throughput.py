"""Rating-updates per second of mfsgd on synthetic data (make_ratings).

    python bench/throughput.py [--ratings 20000000] [--users 200000] [--items 20000]
                               [--k 32 64 128] [--threads 1 2] [--epochs 3] [--kernel ...]

Times whole epochs of `fit` (history_ seconds; the first epoch is included) and prints a
markdown table of seconds per epoch (median) and M updates/s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

import mfsgd
from mfsgd import _sgd
from mfsgd.datasets import make_ratings


def get_data(n_users: int, n_items: int, n_ratings: int, cache: str | None):
    path = None
    if cache:
        os.makedirs(cache, exist_ok=True)
        path = os.path.join(cache, f"synth_{n_users}_{n_items}_{n_ratings}.npz")
        if os.path.exists(path):
            z = np.load(path)
            return z["u"], z["i"], z["r"]
    t = time.perf_counter()
    u, i, r = make_ratings(n_users, n_items, n_ratings, random_state=0, as_frame=False)
    print(f"generated {n_ratings:,} ratings in {time.perf_counter() - t:.1f}s")
    if path:
        np.savez(path, u=u, i=i, r=r)
    return u, i, r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratings", type=int, default=20_000_000)
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--k", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--blocks", type=int, default=None)
    ap.add_argument("--kernel", nargs="+", default=None, help="auto baseline avx2 avx512")
    ap.add_argument("--cache", default=os.environ.get("MFSGD_BENCH_CACHE", "/tmp/mfsgd-bench"))
    args = ap.parse_args()
    u, i, r = get_data(args.users, args.items, args.ratings, args.cache)
    kernels = args.kernel or ["current"]
    names = {"auto": _sgd.ISA_AUTO, "baseline": 0, "avx2": 1, "avx512": 2}
    print(f"\nmfsgd {mfsgd.__version__}; {len(r):,} ratings, {args.users:,} users x "
          f"{args.items:,} items; {args.epochs} epochs each\n")
    print("| kernel | k | threads | blocks | s/epoch (median) | M updates/s |")
    print("|---|---|---|---|---|---|")
    for kern in kernels:
        if kern in names:
            _sgd.isa_select(names[kern])
        for k in args.k:
            for t in args.threads:
                m = mfsgd.MatrixFactorization(n_factors=k, n_epochs=args.epochs, n_threads=t,
                                              n_blocks=args.blocks, random_state=0,
                                              learning_rate=0.002)
                m.fit((u, i, r))
                s = statistics.median(h["seconds"] for h in m.history_)
                used = _sgd.isa_name(_sgd.isa_for(m._state.user_factors.strides[0]))
                sel = "auto: " if _sgd.isa_current() == _sgd.ISA_AUTO else ""
                print(f"| {sel}{used} | {k} | {t} | {m.n_blocks_} | "
                      f"{s:.3f} | {len(r) / s / 1e6:.1f} |", flush=True)


if __name__ == "__main__":
    main()
