"""Fingerprints of seeded fits, to show that a refactoring changed no result.

Run it before and after a change and diff the outputs: every line is one scenario and
the SHA-256 of the fitted model's arrays (factors, biases, ids, seen-items record), its
global mean and its history without timings. Equal lines mean bit-identical models.

    python tools/fit_fingerprints.py > before.txt
    ... change ...
    python tools/fit_fingerprints.py > after.txt && diff before.txt after.txt

Scenarios: local fits on 1 and 2 threads (fixed n_blocks), early stopping, AdaGrad with
lr decay, float64 with the unbiased and non-negative model, partial_fit, fold_in of users
and items, and (with dask installed; --no-dask skips it) a fit on a LocalCluster.
"""

from __future__ import annotations

import argparse
import hashlib
import json

import numpy as np

from mfsgd import MatrixFactorization
from mfsgd.datasets import make_ratings


def fingerprint(m: MatrixFactorization) -> str:
    h = hashlib.sha256()
    for a in (m.user_factors_, m.item_factors_, m.user_bias_, m.item_bias_, m.user_ids_,
              m.item_ids_):
        h.update(np.ascontiguousarray(a).tobytes())
    seen = m.recommend_all(n=5, exclude_seen=True)[0]  # depends on the seen-items record
    h.update(np.ascontiguousarray(seen).tobytes())
    hist = [{k: v for k, v in r.items() if k != "seconds"} for r in m.history_]
    h.update(json.dumps([float(m.global_mean_), hist], sort_keys=True).encode())
    return h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-dask", action="store_true", help="skip the LocalCluster scenario")
    args = ap.parse_args()
    data = make_ratings(3000, 1500, 120_000, rank=5, noise=0.4, random_state=11, as_frame=False)
    u, i, r = data
    base = dict(n_factors=16, n_epochs=6, learning_rate=0.01, random_state=3)
    cases = {
        "local, 1 thread": dict(n_threads=1, n_blocks=2),
        "local, 2 threads": dict(n_threads=2, n_blocks=2),
        "early stopping": dict(n_epochs=30, early_stopping=True, n_iter_no_change=2),
        "adagrad + lr_decay": dict(adagrad=True, learning_rate=0.05, lr_decay=0.1),
        "float64, unbiased, nonnegative": dict(dtype=np.float64, biased=False,
                                               nonnegative=True),
    }
    for name, extra in cases.items():
        m = MatrixFactorization(**{**base, **extra}).fit(data)
        print(f"{name:<34} {fingerprint(m)}")

    m = MatrixFactorization(**base).fit((u[:100_000], i[:100_000], r[:100_000]))
    m.partial_fit((u[100_000:], i[100_000:], r[100_000:]), n_epochs=2)
    print(f"{'partial_fit':<34} {fingerprint(m)}")
    m.fold_in(([10**6] * 4, i[:4], r[:4]))
    m.fold_in((u[:30], np.full(30, 10**6), r[:30]), side="item")
    print(f"{'fold_in user + item':<34} {fingerprint(m)}")

    if not args.no_dask:
        import pandas as pd
        from dask import dataframe as dd
        from dask.distributed import Client, LocalCluster

        df = pd.DataFrame({"user": u, "item": i, "rating": r})
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=False) as cluster, \
                Client(cluster) as client:
            ddf = dd.from_pandas(df, npartitions=4)
            m = MatrixFactorization(**{**base, "n_blocks": 2}).fit(ddf, client=client)
            print(f"{'dask LocalCluster':<34} {fingerprint(m)}")


if __name__ == "__main__":
    main()
