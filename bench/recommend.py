"""Section 6: recommend_all for every user of a large model against a plain NumPy baseline,
and similar_items per item: one call at a time before and after the fitted state kept its
float64 factors, and the batch form.

    python bench/recommend.py [--users 100000] [--items 20000] [--k 64] [--n 10]
                              [--baseline-users 10000] [--quick]
                              [--only recommend_all|similar] [--sim-users 100000]
                              [--sim-items 50000] [--sim-ratings 2000000]
                              [--sim-queries 200]

The model is fitted for one epoch on random ratings (training does not matter for the
timing); the seen record holds 50 items per user. Baseline: dense scores for all users at
once, seen items masked, then np.argsort per row — what one writes without mfsgd. Each row
runs in its own process, so one measurement's memory does not mask another's; prints
seconds and the growth of the process's peak RSS during the call.

similar_items (6b): a model of --sim-users x --sim-items fitted for two epochs on
``make_ratings`` (--sim-ratings ratings), top 10 at min_support=5 (the default). "before"
runs what each call did before the cache (the float64 copy, the norms and the support
counts made again, then one matrix-vector product: ``mfsgd._recommend.similar``); "one
id" times the estimator's calls, its first (which makes the copy) apart; "list" passes
every item of the model at once.
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
    """recommend_all (6), then similar_items (6b) unless --only says otherwise."""
    if getattr(args, "only", None) == "similar":
        return run_similar(rep, args)
    run_recommend_all(rep, args)
    if getattr(args, "only", None) is None:
        run_similar(rep, args)


def run_recommend_all(rep: Report, args) -> None:
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


def measure_similar(users: int, items: int, ratings: int, k: int, n: int,
                    queries: int) -> dict:
    """Run in a child process (run_child): ms per item of similar_items, before the cache
    (the old computation per call), with it (first call apart) and as one list."""
    import time

    from mfsgd import MatrixFactorization
    from mfsgd import _recommend as R
    from mfsgd.datasets import make_ratings

    data = make_ratings(users, items, ratings, random_state=0, as_frame=False)
    m = MatrixFactorization(n_factors=k, n_epochs=2, random_state=0).fit(data)
    st, ids = m._state, m.item_ids_
    qs = ids[:: max(1, ids.size // queries)][:queries]

    def old(x):  # similar_ids before review 26: everything made again per call
        row = R.row_of(st.item_map, x, "item")
        eligible = st.support("item") >= 5
        c, v = R.similar(st.factors("item_factors"), row, n, eligible)
        return ids[c], v

    def per_item(f, xs):
        t = time.perf_counter()
        for x in xs:
            f(x)
        return (time.perf_counter() - t) / len(xs) * 1e3

    before = per_item(old, qs)
    t = time.perf_counter()
    first_ids, _ = m.similar_items(qs[0], n)
    first = (time.perf_counter() - t) * 1e3
    cached = per_item(lambda x: m.similar_items(x, n), qs)
    rss = rss_kib("VmHWM")
    t = time.perf_counter()
    table, sims = m.similar_items(ids, n)
    batch = (time.perf_counter() - t) / ids.size * 1e3
    assert np.array_equal(table[0][np.isfinite(sims[0])], m.similar_items(ids[0], n)[0])
    f, norms = st.derived(("similarity", "item"), None)
    return {"before": before, "first": first, "cached": cached, "batch": batch,
            "items": int(ids.size), "cache_mib": (f.nbytes + norms.nbytes) / 2**20,
            "batch_extra_gib": (rss_kib("VmHWM") - rss) / 2**20,
            "same": bool(np.array_equal(first_ids, old(qs[0])[0]))}


def run_similar(rep: Report, args) -> None:
    rep.add("## 6b. similar_items per item\n")
    rep.add(load_line() + "\n")
    rep.add(f"similar_items: {args.sim_users:,} users x {args.sim_items:,} items, "
            f"{args.sim_ratings:,} ratings, k={args.k}, top {args.n}, min_support=5\n")
    progress("  similar_items")
    try:
        r = run_child("recommend:measure_similar", args.sim_users, args.sim_items,
                      args.sim_ratings, args.k, args.n, args.sim_queries)
    except RuntimeError as e:
        rep.add(f"failed: {e}\n")
        return
    q = args.sim_queries
    rows = [[f"one id per call, before the cache ({q} calls)", f"{r['before']:.2f}"],
            ["one id, first call (makes the float64 copy)", f"{r['first']:.2f}"],
            [f"one id per call, cached ({q} calls)", f"{r['cached']:.2f}"],
            [f"one list of all {r['items']:,} items", f"{r['batch']:.3f}"]]
    rep.add(md_table(["similar_items", "ms per item"], rows))
    rep.add(f"\nkept with the fitted state: {r['cache_mib']:.1f} MiB (float64 factors and "
            f"norms); the list's extra peak RSS {r['batch_extra_gib']:.2f} GiB; first call's "
            f"list {'equals' if r['same'] else 'DIFFERS FROM'} the old computation's; "
            f"all items, before / list: {r['before'] / r['batch']:.0f}x the time\n")



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
    ap.add_argument("--only", choices=("recommend_all", "similar"), default=None,
                    help="run one part (default: both)")
    ap.add_sized("--sim-users", type=int, full=100_000, quick=2_000,
                 help="users of the similar_items model")
    ap.add_sized("--sim-items", type=int, full=50_000, quick=1_000,
                 help="items of the similar_items model")
    ap.add_sized("--sim-ratings", type=int, full=2_000_000, quick=40_000,
                 help="ratings of the similar_items model")
    ap.add_argument("--sim-queries", type=int, default=200,
                    help="single-id calls timed (default %(default)s)")
    ap.add_out()
    return ap


if __name__ == "__main__":
    run_alone(parser(), run)
