"""recommend_all for every user of a large model vs a plain NumPy baseline.

    python bench/recommend.py [--users 100000] [--items 20000] [--k 64] [--n 10]

The model's parameters are random (training does not matter for the timing); the seen
record holds 50 items per user. Baseline: dense scores for all users at once, seen items
masked, then np.argsort per row — what one writes without mfsgd. Prints seconds and
peak RSS growth of each (the baseline runs second, in a subprocess, so its memory does
not mask ours).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np

CHILD = r"""
import json, resource, sys, time
import numpy as np
sys.path.insert(0, {here!r})
from recommend import build
m, st = build({users}, {items}, {k})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
if {baseline}:
    P, Q = m.user_factors_, m.item_factors_
    S = P @ Q.T + m.item_bias_[None, :] + m.user_bias_[:, None] + m.global_mean_
    rows = np.repeat(np.arange(len(P)), np.diff(st.seen_indptr))
    S[rows, st.seen_items] = -np.inf
    top = np.argsort(-S, axis=1)[:, :{n}]
else:
    ids, scores = m.recommend_all(n={n})
secs = time.perf_counter() - t
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": secs, "extra_gib": (after - before) / 2**20}}))
"""


def build(users: int, items: int, k: int):
    from mfsgd import MatrixFactorization
    from mfsgd.model import FittedState, padded_width
    from mfsgd._idmap import IdMap
    from mfsgd import _recommend as R

    rng = np.random.default_rng(0)
    kp = padded_width(k, np.float32)
    P = np.zeros((users, kp), np.float32)
    Q = np.zeros((items, kp), np.float32)
    P[:, :k] = rng.normal(0, 0.1, (users, k))
    Q[:, :k] = rng.normal(0, 0.1, (items, k))
    su = np.repeat(np.arange(users, dtype=np.int32), 50)
    si = rng.integers(0, items, su.size).astype(np.int32)
    ip, it = R.seen_csr(su, si, users)
    st = FittedState(3.5, P, Q, rng.normal(0, .1, users).astype(np.float32),
                     rng.normal(0, .1, items).astype(np.float32),
                     IdMap(np.arange(users, dtype=np.int64)), IdMap(np.arange(items, dtype=np.int64)),
                     (1.0, 5.0), True, k, seen_indptr=ip, seen_items=it)
    m = MatrixFactorization(n_factors=k)
    m._state = st
    return m, st


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--baseline-users", type=int, default=10_000,
                    help="users for the dense baseline (all 100k need ~24 GB: scores and "
                         "argsort indices)")
    args = ap.parse_args()
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    print(f"recommend_all: {args.users:,} users x {args.items:,} items, k={args.k}, top {args.n}\n")
    print("| method | seconds | extra peak RSS GiB |\n|---|---|---|")
    res = {}
    runs = [(f"mfsgd recommend_all, {args.users:,} users", False, args.users),
            (f"mfsgd recommend_all, {args.baseline_users:,} users", False, args.baseline_users),
            (f"NumPy dense scores + argsort, {args.baseline_users:,} users", True,
             args.baseline_users)]
    for name, baseline, users in runs:
        code = CHILD.format(here=here, users=users, items=args.items, k=args.k,
                            n=args.n, baseline=baseline)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if out.returncode != 0:
            why = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
            print(f"| {name} | failed: {why} | |")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        res[name] = r
        print(f"| {name} | {r['seconds']:.2f} | {r['extra_gib']:.2f} |", flush=True)
    if len(res) == 3:
        _, a, b = (r["seconds"] for r in res.values())
        print(f"\nsame users, baseline / mfsgd: {b / a:.1f}x the time")


if __name__ == "__main__":
    main()
