"""Distributed stratified SGD on a LocalCluster: seconds per epoch and RMSE for 1, 2 and
4 worker processes next to the single-machine fit, plus measured kernel throughput per
block task for the cluster estimate.

    python bench/dask_scaling.py [--ratings 20000000] [--workers 1 2 4] [--k 64] [--epochs 3]

All workers share this machine's 2 cores, so the table shows overheads (serialisation,
transfers, scheduling), not a speed-up; bench/RESULTS.md, section 4, turns the
throughput and overhead measured here into an estimate for a real cluster.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratings", type=int, default=20_000_000)
    ap.add_argument("--users", type=int, default=200_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--blocks", type=int, default=4)
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--cache", default=os.environ.get("MFSGD_BENCH_CACHE", "/tmp/mfsgd-bench"))
    args = ap.parse_args()

    import dask.dataframe as dd
    import pandas as pd
    from distributed import Client, LocalCluster

    import mfsgd
    from throughput import get_data

    u, i, r = get_data(args.users, args.items, args.ratings, args.cache)
    n_test = len(r) // 50
    test = (u[:n_test], i[:n_test], r[:n_test])
    df = pd.DataFrame({"user": u[n_test:], "item": i[n_test:], "rating": r[n_test:]})
    kw = dict(n_factors=args.k, n_epochs=args.epochs, n_blocks=args.blocks, random_state=0,
              learning_rate=0.005, reg_factors=0.03)

    def rmse(m):
        return float(np.sqrt(np.mean((m.predict(test[:2]) - test[2]) ** 2)))

    t = time.perf_counter()
    local = mfsgd.MatrixFactorization(**kw).fit(df)
    local_total = time.perf_counter() - t
    rows = [("single machine (1 thread)", local_total,
             np.median([h["seconds"] for h in local.history_]), rmse(local), 0.0)]
    n_train = len(df)
    for w in args.workers:
        with LocalCluster(n_workers=w, threads_per_worker=1, processes=True,
                          dashboard_address=None, host="127.0.0.1",
                          memory_limit=f"{int(16 / w)}GiB") as cl, Client(cl) as client:
            ddf = dd.from_pandas(df, npartitions=args.partitions)
            t = time.perf_counter()
            m = mfsgd.MatrixFactorization(**kw).fit(ddf, client=client)
            total = time.perf_counter() - t
            diff = float(np.abs(m.user_factors_ - local.user_factors_).max())
            rows.append((f"Dask, {w} worker process{'es' if w > 1 else ''}", total,
                         np.median([h["seconds"] for h in m.history_]), rmse(m), diff))
    print(f"\n{n_train:,} training ratings, k={args.k}, n_blocks={args.blocks}, "
          f"{args.epochs} epochs; test RMSE on {n_test:,} held-out ratings\n")
    print("| run | fit s (total) | s/epoch (median) | M updates/s | test RMSE | "
          "max abs diff vs single machine |")
    print("|---|---|---|---|---|---|")
    for name, total, per, e, diff in rows:
        print(f"| {name} | {total:.1f} | {per:.2f} | {n_train / per / 1e6:.1f} | {e:.4f} | "
              f"{diff:.1e} |")


if __name__ == "__main__":
    main()
