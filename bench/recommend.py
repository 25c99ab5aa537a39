"""Section 6: recommend_all for every user of a large model against a plain NumPy baseline.

    python bench/recommend.py [--users 100000] [--items 20000] [--k 64] [--n 10]
                              [--baseline-users 10000] [--quick]

The model is fitted for one epoch on random ratings (training does not matter for the
timing); the seen record holds 50 items per user. Baseline: dense scores for all users at
once, seen items masked, then np.argsort per row — what one writes without mfsgd. Each row
runs in its own process, so one measurement's memory does not mask another's; prints
seconds and the growth of the process's peak RSS during the call.
"""

from __future__ import annotations

import numpy as np
from _common import (
    Parser,
    Report,
    load_line,
    md_table,
    progress,
    rss_kib,
    run_alone,
    run_child,
    timed,
)


def build(users: int, items: int, k: int):
    """A model of ``users`` x ``items`` whose seen record holds 50 items per user, and
    those (user, item) pairs. Built through the public API: one epoch on random ratings
    of exactly those pairs (the values do not matter for the timing). Every item is in
    the first pairs, so ids and rows coincide on both sides."""
    from mfsgd import MatrixFactorization

    rng = np.random.default_rng(0)
    u = np.repeat(np.arange(users, dtype=np.int32), 50)
    i = rng.integers(0, items, u.size).astype(np.int32)
    i[:min(items, u.size)] = np.arange(min(items, u.size))
    r = rng.uniform(1, 5, u.size).astype(np.float32)
    return MatrixFactorization(n_factors=k, n_epochs=1, random_state=0).fit((u, i, r)), (u, i)


def measure(users: int, items: int, k: int, n: int, baseline: bool) -> dict:
    """Run in a child process (run_child): seconds and peak-RSS growth of one top-n call."""
    m, (seen_u, seen_i) = build(users, items, k)
    before = rss_kib("VmHWM")
    if baseline:
        def dense_top_n():
            P, Q = m.user_factors_, m.item_factors_
            S = P @ Q.T + m.item_bias_[None, :] + m.user_bias_[:, None] + m.global_mean_
            S[seen_u, seen_i] = -np.inf
            return np.argsort(-S, axis=1)[:, :n]

        secs, _ = timed(dense_top_n)
    else:
        secs, _ = timed(m.recommend_all, n=n)
    return {"seconds": secs, "extra_gib": (rss_kib("VmHWM") - before) / 2**20}


def run(rep: Report, args) -> None:
    rep.add("## 6. recommend_all for every user of a large model\n")
    rep.add(load_line() + "\n")
    rep.add(f"recommend_all: {args.users:,} users x {args.items:,} items, k={args.k}, "
            f"top {args.n}\n")
    rows, secs = [], []
    runs = [(f"mfsgd recommend_all, {args.users:,} users", False, args.users),
            (f"mfsgd recommend_all, {args.baseline_users:,} users", False, args.baseline_users),
            (f"NumPy dense scores + argsort, {args.baseline_users:,} users", True,
             args.baseline_users)]
    for name, baseline, users in runs:
        progress(f"  {name}")
        try:
            r = run_child("recommend:measure", users, args.items, args.k, args.n, baseline)
        except RuntimeError as e:
            rows.append([name, f"failed: {e}", ""])
            continue
        secs.append(r["seconds"])
        rows.append([name, f"{r['seconds']:.2f}", f"{r['extra_gib']:.2f}"])
    rep.add(md_table(["method", "seconds", "extra peak RSS GiB"], rows))
    if len(secs) == 3:
        rep.add(f"\nsame users, baseline / mfsgd: {secs[2] / secs[1]:.1f}x the time")
    rep.add("")


def parser() -> Parser:
    ap = Parser(__doc__)
    ap.add_quick("2,000 users x 1,000 items, baseline on 1,000 users")
    ap.add_sized("--users", type=int, full=100_000, quick=2_000, help="users of the model")
    ap.add_sized("--items", type=int, full=20_000, quick=1_000, help="items of the model")
    ap.add_argument("--k", type=int, default=64, help="n_factors (default %(default)s)")
    ap.add_argument("--n", type=int, default=10, help="items per user (default %(default)s)")
    ap.add_sized("--baseline-users", type=int, full=10_000, quick=1_000,
                 help="users for the dense baseline and the mfsgd run beside it (all 100k "
                      "need ~24 GB: scores and argsort indices)")
    ap.add_out()
    return ap


if __name__ == "__main__":
    run_alone(parser(), run)
