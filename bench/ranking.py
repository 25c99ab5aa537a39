"""Top-N quality of the estimator's ranking losses at their defaults, beside popularity.

The protocol of issue 14 (as ``ranking_proto.py``, whose ``evaluate`` it shares): train on
``uN.base`` with every training rating as an interaction; for each test user with at least
one test rating >= 4 on an item seen in training, rank every training item the user has
not rated in training; HR@10, NDCG@10 and Recall@10 against those liked items; mean over
users, then over the folds. Here the models are ``MatrixFactorization(loss=...)`` at
their defaults (``n_factors`` as given, ``random_state=0``), fitted through the public
API; fit time is process CPU seconds, median over the folds. The anchors (implicit,
LightFM) are measured by ``ranking_proto.py --anchors``.

    python bench/ranking.py [--data DIR] [--loss warp bpr softmax squared] [--k 64]
"""

from __future__ import annotations

import time

import numpy as np
from _common import Parser, header, md_table, progress
from ranking_proto import evaluate, load_fold, popularity_scores

from mfsgd import MatrixFactorization


def scores_of(m: MatrixFactorization, n_users: int, n_items: int) -> np.ndarray:
    """(n_users, n_items) scores in the fold's index space (ids are 0-based indices)."""
    s = np.full((n_users, n_items), -np.inf)
    P = m.user_factors_.astype(np.float64)
    Q = m.item_factors_.astype(np.float64)
    s[np.ix_(m.user_ids_, m.item_ids_)] = P @ Q.T + m.item_bias_[None, :]
    return s


def main() -> None:
    ap = Parser(__doc__)
    ap.add_data()
    ap.add_argument("--loss", nargs="+", default=["warp", "bpr", "softmax", "squared"])
    ap.add_argument("--k", type=int, default=64, help="n_factors (default 64)")
    ap.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    args = ap.parse_args()
    folds = [load_fold(args.data, f) for f in args.folds]
    rows = []
    pop = [evaluate(popularity_scores(tr, nu, ni), tr, te, ni) for tr, te, nu, ni in folds]
    base = np.mean([r["ndcg"] for r in pop])
    rows.append(["most popular (training counts)", *(f"{np.mean([r[m] for r in pop]):.3f}"
                                                     for m in ("ndcg", "hr", "recall")),
                 "1.00", "-"])
    for loss in args.loss:
        res, secs = [], []
        for tr, te, nu, ni in folds:
            progress(f"{loss}: fold {len(res) + 1}/{len(folds)}")
            m = MatrixFactorization(loss=loss, n_factors=args.k, random_state=0)
            data = (tr[0], tr[1]) if loss != "squared" else (tr[0], tr[1], tr[2] * 1.0)
            t0 = time.process_time()
            m.fit(data)
            secs.append(time.process_time() - t0)
            res.append(evaluate(scores_of(m, nu, ni), tr, te, ni))
        ndcg = np.mean([r["ndcg"] for r in res])
        rows.append([f"mfsgd loss={loss!r}, defaults, k={args.k}", f"{ndcg:.3f}",
                     f"{np.mean([r['hr'] for r in res]):.3f}",
                     f"{np.mean([r['recall'] for r in res]):.3f}", f"{ndcg / base:.2f}",
                     f"{np.median(secs):.2f}"])
    print(header())
    print(md_table(["model", "NDCG@10", "HR@10", "Recall@10", "NDCG / popularity",
                    "fit CPU s/fold"], rows))


if __name__ == "__main__":
    main()
