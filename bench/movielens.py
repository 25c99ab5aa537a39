"""MovieLens 100K, five official folds (u1..u5): RMSE, MAE and fit seconds of mfsgd.

    python bench/movielens.py [--data ../shared/data/ml-100k] [--threads 1] [key=value ...]

Extra key=value pairs are MatrixFactorization parameters (default: Surprise's SVD
defaults, 100 factors, 20 epochs, lr 0.005, reg 0.02). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import ast
import os
import platform
import statistics
import time

import numpy as np

import mfsgd

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "data", "ml-100k"))


def read_fold(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.loadtxt(path, dtype=np.int64, usecols=(0, 1, 2))
    return a[:, 0], a[:, 1], a[:, 2].astype(np.float32)


def run_folds(data: str, params: dict, folds=range(1, 6)) -> list[dict]:
    rows = []
    for k in folds:
        tr = read_fold(os.path.join(data, f"u{k}.base"))
        te = read_fold(os.path.join(data, f"u{k}.test"))
        model = mfsgd.MatrixFactorization(**params)
        t0 = time.perf_counter()
        model.fit(tr)
        secs = time.perf_counter() - t0
        pred = model.predict(te[:2])
        err = pred - te[2]
        rows.append({"fold": k, "rmse": float(np.sqrt(np.mean(err**2))),
                     "mae": float(np.mean(np.abs(err))), "fit_s": secs})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("params", nargs="*", help="MatrixFactorization parameters as key=value")
    args = ap.parse_args()
    params = {"random_state": 0}
    for kv in args.params:
        k, v = kv.split("=", 1)
        try:
            params[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            params[k] = v
    print(f"mfsgd {mfsgd.__version__}, kernel {mfsgd._sgd.isa_name(mfsgd._sgd.isa_current())}, "
          f"{platform.processor() or platform.machine()}, params {params}\n")
    print("| fold | RMSE | MAE | fit s (median of repeats) |\n|---|---|---|---|")
    allrows = []
    for k in range(1, 6):
        reps = [run_folds(args.data, params, [k])[0] for _ in range(args.repeats)]
        row = dict(reps[0], fit_s=statistics.median(r["fit_s"] for r in reps))
        allrows.append(row)
        print(f"| u{k} | {row['rmse']:.4f} | {row['mae']:.4f} | {row['fit_s']:.3f} |")
    m = {k: statistics.mean(r[k] for r in allrows) for k in ("rmse", "mae", "fit_s")}
    sd = statistics.stdev(r["rmse"] for r in allrows)
    print(f"| **mean** | **{m['rmse']:.4f}** (sd {sd:.4f}) | **{m['mae']:.4f}** | "
          f"**{m['fit_s']:.3f}** |")


if __name__ == "__main__":
    main()
