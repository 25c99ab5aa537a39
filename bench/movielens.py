"""MovieLens 100K, five official folds (u1..u5): RMSE, MAE and fit seconds of mfsgd alone.

    python bench/movielens.py [--data ../shared/data/ml-100k] [--repeats 1] [--threads 1]
                              [key=value ...]

Extra key=value pairs are MatrixFactorization parameters (default: its own defaults,
which are Surprise's SVD defaults: 100 factors, 20 epochs, lr 0.005, reg 0.02), with
random_state=0. Predictions are scored as mfsgd returns them (clipped to the training
range unless clip=False). For mfsgd beside the other libraries see accuracy.py.
"""

from __future__ import annotations

import statistics

from _common import (
    Parser,
    Report,
    md_table,
    median_of,
    movielens_fold,
    parse_params,
    rmse_mae,
    run_alone,
    timed,
)

import mfsgd


def run(rep: Report, args) -> None:
    params = {"random_state": 0, "n_threads": args.threads, **parse_params(args.params)}
    rep.add(f"MatrixFactorization parameters: {params}\n")
    rows = []
    for k in range(1, 6):
        train, test = movielens_fold(args.data, k)

        def fit(train=train):
            model = mfsgd.MatrixFactorization(**params)
            return timed(model.fit, train)

        fit_s, model = median_of(fit, args.repeats)
        rmse, mae = rmse_mae(model.predict(test[:2]), test[2])
        rows.append({"rmse": rmse, "mae": mae, "fit_s": fit_s})
    m = {key: statistics.mean(r[key] for r in rows) for key in ("rmse", "mae", "fit_s")}
    sd = statistics.stdev(r["rmse"] for r in rows)
    cells = [[f"u{k}", f"{r['rmse']:.4f}", f"{r['mae']:.4f}", f"{r['fit_s']:.3f}"]
             for k, r in enumerate(rows, 1)]
    cells.append(["**mean**", f"**{m['rmse']:.4f}** (sd {sd:.4f})", f"**{m['mae']:.4f}**",
                  f"**{m['fit_s']:.3f}**"])
    rep.add(md_table(["fold", "RMSE", "MAE", "fit s (median of repeats)"], cells))


def parser() -> Parser:
    ap = Parser(__doc__)
    ap.add_data()
    ap.add_repeats(1, what="fits per fold")
    ap.add_threads(1)
    ap.add_out()
    ap.add_argument("params", nargs="*", metavar="key=value",
                    help="MatrixFactorization parameters")
    return ap


if __name__ == "__main__":
    run_alone(parser(), run)
