"""Top-N quality of the ranking losses against the number of grid blocks (n_blocks).

With n_blocks > 1 a positive's negatives come from the items of its block column (so
that threads never share a row). This measures what that costs on MovieLens 100K's
five folds, with the protocol of ``ranking_proto.py``: each loss at its defaults, k=64,
``random_state=0``; the model is the same for any thread count at a fixed n_blocks.

    python bench/ranking_blocks.py [--data DIR] [--blocks 1 2 4 8] [--loss warp bpr softmax]
"""

from __future__ import annotations

import numpy as np
from _common import Parser, header, md_table, progress
from ranking import scores_of
from ranking_proto import evaluate, load_fold

from mfsgd import MatrixFactorization


def main() -> None:
    ap = Parser(__doc__)
    ap.add_data()
    ap.add_argument("--loss", nargs="+", default=["warp", "bpr", "softmax"])
    ap.add_argument("--blocks", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--k", type=int, default=64, help="n_factors (default 64)")
    ap.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    args = ap.parse_args()
    print(header())
    folds = [load_fold(args.data, f) for f in args.folds]
    rows = []
    for loss in args.loss:
        for nb in args.blocks:
            progress(f"{loss}: n_blocks={nb}")
            res = []
            for tr, te, nu, ni in folds:
                m = MatrixFactorization(loss=loss, n_factors=args.k, random_state=0,
                                        n_blocks=nb, n_threads=min(nb, 2))
                m.fit((tr[0], tr[1]))
                res.append(evaluate(scores_of(m, nu, ni), tr, te, ni))
            rows.append([loss, str(nb), *(f"{np.mean([r[k] for r in res]):.3f}"
                                          for k in ("ndcg", "hr", "recall"))])
    print("\n## Ranking quality against n_blocks (MovieLens 100K, each loss at its defaults)\n")
    print(md_table(["loss", "n_blocks", "NDCG@10", "HR@10", "Recall@10"], rows))


if __name__ == "__main__":
    main()
