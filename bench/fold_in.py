"""Top-N quality of rows added by ``fold_in`` to a ranking model, against the fitted rows.

MovieLens 100K's five folds with the protocol of ``ranking_proto.py`` (relevance = test
ratings >= 4, every unrated training item ranked), each loss at its defaults, k=64,
``random_state=0``. For each fold:

- fitted: the model as ``fit`` left it;
- users refolded: every user's row recomputed by ``fold_in`` from their own training
  interactions, the items fixed (what a user's row would be from their history alone);
- items refolded: the same for every item, ``side="item"``, the users fixed;
- new users: 10% of the users (seeded) left out of the fit, then folded in from their
  training interactions; scored on those users only, beside the most popular items;
- the fit and fold-in seconds (process CPU).

``--reg`` sets the fold-in penalty of a ranking model (``FOLD_IN_RANKING_REG``, per unit
of the other side's mean squared row norm) to compare values.

``--squared`` measures the squared loss instead (its defaults): 10% of the users, then
10% of the items (seeded), left out of the fit and added from their uN.base ratings by
``fold_in`` at each ``--squared-reg`` (``fold_in(..., reg=)``; "default" is the model's
``reg_factors``) or by 5 epochs of ``partial_fit``; the RMSE on their uN.test ratings,
and for items the share of all users' top-10 slots that the added items take.

``--latency`` measures what serving pays instead: wall milliseconds per new user when
users are folded in one per call and 100 per call, on ``make_ratings`` sets of
``--sizes`` ratings (users = ratings / 20, items = ratings / 40, k = ``--k``, 64 by
default), for the squared loss, bpr, and bpr with ``min_rating=3`` (each new user's rows
half above it, half below; one epoch each: the fit's quality does not matter here); best
of 3 rounds. Then 20 rounds of a service's calls: one new user's
fold-in, ``similar_users`` and an unknown user's ``recommend`` (median ms of each: what a
fold-in makes the next queries rebuild). For bpr also new items, one per call (10 users each):
the first call on a fresh copy of the model (which computes every user's log partition
over the items) and the median of the next ``--item-calls`` (default 5).

    python bench/fold_in.py [--data DIR] [--loss warp bpr softmax] [--reg 0.03]
    python bench/fold_in.py [--data DIR] --squared [--squared-reg 0.05 0.1 0.2]
    python bench/fold_in.py --latency [--sizes 200000 2000000] [--k 64] [--item-calls 5]
"""

from __future__ import annotations

import copy
import time

import numpy as np
from _common import Parser, header, md_table, progress
from ranking import scores_of
from ranking_proto import evaluate, load_fold, popularity_scores

import mfsgd._recommend as R
from mfsgd import MatrixFactorization


def one_fold(loss: str, k: int, tr, te, nu: int, ni: int) -> dict:
    u, i = tr[0], tr[1]
    kw = dict(loss=loss, n_factors=k, random_state=0, n_threads=1)
    out = {}
    t0 = time.process_time()
    m = MatrixFactorization(**kw).fit((u, i))
    out["fit s"] = time.process_time() - t0
    out["fitted"] = evaluate(scores_of(m, nu, ni), tr, te, ni)["ndcg"]
    for side in ("user", "item"):
        refolded = copy.deepcopy(m)  # fold_in changes the model it is called on
        t0 = time.process_time()
        refolded.fold_in((u, i), side=side)
        out[f"{side}s s"] = time.process_time() - t0
        out[f"{side}s refolded"] = evaluate(scores_of(refolded, nu, ni), tr, te, ni)["ndcg"]
    users = np.unique(u)
    new = np.random.default_rng(0).choice(users, users.size // 10, replace=False)
    held = np.isin(u, new)
    m = MatrixFactorization(**kw).fit((u[~held], i[~held])).fold_in((u[held], i[held]))
    on_new = np.isin(te[0], new)
    te_new = tuple(c[on_new] for c in te)
    out["new users"] = evaluate(scores_of(m, nu, ni), tr, te_new, ni)["ndcg"]
    out["popularity, new users"] = evaluate(popularity_scores(tr, nu, ni), tr, te_new,
                                            ni)["ndcg"]
    return out


def squared_fold(side: str, regs: list, tr, te, nu: int, ni: int, seed: int) -> dict:
    """RMSE of held-out users (or items) added by fold_in at each reg, or partial_fit."""
    own_t, own_v = (tr[0], te[0]) if side == "user" else (tr[1], te[1])
    ids = np.unique(own_t)
    new = np.random.default_rng(seed).choice(ids, ids.size // 10, replace=False)
    held_t, held_v = np.isin(own_t, new), np.isin(own_v, new)
    rest = tuple(c[~held_t] for c in tr)
    m = MatrixFactorization(random_state=0, n_threads=1).fit(rest)
    # test rows of the held-out ids whose other side the model knows
    other_ids = m.item_ids_ if side == "user" else m.user_ids_
    sel = held_v & np.isin(te[1] if side == "user" else te[0], other_ids)
    added = tuple(c[held_t] for c in tr)
    out = {}
    for reg in [*regs, "partial_fit, 5 epochs"]:
        mm = copy.deepcopy(m)
        if reg == "partial_fit, 5 epochs":
            mm.partial_fit(added, n_epochs=5)
        else:
            mm.fold_in(added, side=side, reg=None if reg == "default" else reg)
        err = mm.predict((te[0][sel], te[1][sel])) - te[2][sel]
        out[reg] = [float(np.sqrt(np.mean(err ** 2)))]
        if side == "item":
            out[reg].append(float(np.isin(mm.recommend_all(n=10)[0], new).mean()))
    return out


def squared_main(args, folds) -> None:
    regs = ["default", *args.squared_reg]
    for side in ("user", "item"):
        progress(f"squared, new {side}s")
        res = [squared_fold(side, regs, *f, seed=s) for s, f in zip(args.folds, folds, strict=True)]
        rows = [[str(r), *(f"{np.mean([x[r][c] for x in res]):.4f}"
                           for c in range(len(res[0][r])))] for r in res[0]]
        cols = ["RMSE"] + (["share of top-10 slots"] if side == "item" else [])
        print(f"\n## squared loss: 10% of the {side}s added after the fit (MovieLens 100K, "
              f"folds {args.folds}; mean over the folds)\n")
        print(md_table(["added by (fold_in reg)", *cols], rows))


def latency_main(sizes: list[int], k: int = 64, item_calls: int = 5) -> None:
    """Per-user wall ms of fold_in: one new user (10 interactions) per call, and 100
    new users in one call; for a ranking model also new items, one per call."""
    from mfsgd.datasets import make_ratings

    rows, items_rows, after_rows = [], [], []
    for n in sizes:
        u, i, r = make_ratings(max(n // 20, 10), max(n // 40, 10), n, random_state=0,
                               as_frame=False)
        items = np.unique(i)
        rng = np.random.default_rng(1)
        batches = [rng.choice(items, 10, replace=False) for _ in range(100)]
        for loss, low in (("squared", None), ("bpr", None), ("bpr", 3.0)):
            name = loss if low is None else f"{loss}, min_rating=3 (half the rows below)"
            progress(f"{n} ratings, {name}")
            m = MatrixFactorization(loss=loss, n_factors=k, n_epochs=1, random_state=0,
                                    min_rating=low)
            m.fit((u, i, r) if loss == "squared" or low is not None else (u, i))
            stars = np.full(10, 4.0) if low is None else np.r_[[5.0] * 5, [1.0] * 5]
            one, many = [], []
            for rnd in range(3):
                base = 10**9 + rnd * 1000
                mm = copy.deepcopy(m)
                t = time.perf_counter()
                for q, its in enumerate(batches):
                    mm.fold_in((np.full(10, base + q), its, stars))
                one.append((time.perf_counter() - t) / len(batches))
                mm = copy.deepcopy(m)
                users = np.repeat(base + np.arange(len(batches)), 10)
                t = time.perf_counter()
                mm.fold_in((users, np.concatenate(batches), np.tile(stars, len(batches))))
                many.append((time.perf_counter() - t) / len(batches))
            rows.append([f"{n:,}", name, f"{min(one) * 1e3:.2f}", f"{min(many) * 1e3:.3f}"])
            # a service's queries between one-user fold-ins: what each must rebuild
            mm = copy.deepcopy(m)
            mm.similar_users(mm.user_ids_[0], n=10)
            mm.recommend(10**12, n=10)
            med = [[], [], []]
            for q, its in enumerate(batches[:20]):
                t0 = time.perf_counter()
                mm.fold_in((np.full(10, 2 * 10**9 + q), its, stars))
                t1 = time.perf_counter()
                mm.similar_users(mm.user_ids_[0], n=10)
                t2 = time.perf_counter()
                mm.recommend(10**12, n=10)  # an unknown user: the most popular items
                t3 = time.perf_counter()
                for lst, x in zip(med, (t1 - t0, t2 - t1, t3 - t2), strict=True):
                    lst.append(x)
            after_rows.append([f"{n:,}", name, *(f"{np.median(x) * 1e3:.2f}" for x in med)])
            if loss != "squared" and low is None:  # new items, one per call
                mm, its = copy.deepcopy(m), []
                users_of = np.unique(u)
                for q in range(1 + item_calls):
                    who = rng.choice(users_of, 10, replace=False)
                    t = time.perf_counter()
                    mm.fold_in((who, np.full(10, 10**9 + q)), side="item")
                    its.append(time.perf_counter() - t)
                items_rows.append([f"{n:,}", name, f"{its[0] * 1e3:.1f}",
                                   f"{np.median(its[1:]) * 1e3:.2f}"])
    print(f"\n## fold_in latency: wall ms per new user (10 interactions each), k={k}, "
          "best of 3\n")
    print(md_table(["ratings", "loss", "one user per call", "100 users in one call"], rows))
    print("\n## between one-user fold-ins: median wall ms of the fold-in, then of "
          "similar_users and of an unknown user's recommend (20 rounds)\n")
    print(md_table(["ratings", "loss", "fold_in", "similar_users", "unknown user's recommend"],
                   after_rows))
    if items_rows:
        print(f"\n## fold_in latency: wall ms per new item (10 interactions each), one per "
              f"call: the first call on a fresh copy of the model, then the median of the "
              f"next {item_calls}\n")
        print(md_table(["ratings", "loss", "first item", "next items (median)"],
                       items_rows))


def main() -> None:
    ap = Parser(__doc__)
    ap.add_data()
    ap.add_argument("--loss", nargs="+", default=["warp", "bpr", "softmax"])
    # None: a build without it (before the softmax fold-in), to measure the old solve
    default = getattr(R, "FOLD_IN_RANKING_REG", None)
    ap.add_argument("--reg", type=float, default=default,
                    help=f"FOLD_IN_RANKING_REG (default {default})")
    ap.add_argument("--k", type=int, default=64, help="n_factors (default 64)")
    ap.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--squared", action="store_true",
                    help="measure the squared loss's fold_in instead (RMSE)")
    ap.add_argument("--squared-reg", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.5],
                    help="fold_in(reg=) values for --squared (default 0.05 0.1 0.2 0.5)")
    ap.add_argument("--latency", action="store_true",
                    help="measure fold_in's per-user latency on synthetic sets instead")
    ap.add_argument("--sizes", type=int, nargs="+", default=[200_000, 2_000_000],
                    help="ratings of the --latency sets (default 200000 2000000)")
    ap.add_argument("--item-calls", type=int, default=5,
                    help="--latency: new items timed after the first (default 5)")
    args = ap.parse_args()
    if args.latency:
        print(header())
        latency_main(args.sizes, args.k, args.item_calls)
        return
    if args.reg is not None:
        R.FOLD_IN_RANKING_REG = args.reg
    print(header())
    folds = [load_fold(args.data, f) for f in args.folds]
    if args.squared:
        squared_main(args, folds)
        return
    cols = ["fitted", "users refolded", "items refolded", "new users",
            "popularity, new users"]
    secs = ["fit s", "users s", "items s"]
    rows = []
    for loss in args.loss:
        progress(f"{loss}")
        res = [one_fold(loss, args.k, *f) for f in folds]
        rows.append([loss, *(f"{np.mean([r[c] for r in res]):.3f}" for c in cols),
                     *(f"{np.median([r[c] for r in res]):.2f}" for c in secs)])
    print(f"\n## fold_in of a ranking model (MovieLens 100K, folds {args.folds}, "
          f"FOLD_IN_RANKING_REG={args.reg})\n")
    print("NDCG@10, mean over the folds; CPU seconds, median over the folds.\n")
    print(md_table(["loss", *(f"NDCG@10 {c}" for c in cols),
                    "fit CPU s", "refold users CPU s", "refold items CPU s"], rows))


if __name__ == "__main__":
    main()
