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

    python bench/fold_in.py [--data DIR] [--loss warp bpr softmax] [--reg 0.03]
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
    args = ap.parse_args()
    if args.reg is not None:
        R.FOLD_IN_RANKING_REG = args.reg
    print(header())
    folds = [load_fold(args.data, f) for f in args.folds]
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
