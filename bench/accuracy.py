"""Section 1: MovieLens 100K accuracy and fit time of mfsgd and every installed anchor.

    python bench/accuracy.py [--data ../shared/data/ml-100k] [--libmf-cli PATH/mf-train]
                             [--repeats 3] [--quick] [--out FILE.md]

Five official folds u1..u5: RMSE, MAE and fit seconds of each library (a) at Surprise's
SVD defaults and (b) at each library's best setting from a small grid, chosen on a
validation split carved out of u1.base (never on the test folds); plus mfsgd's fast
setting and a setting tuned by hand on u1. Anchors that are not installed are left out
(bench/README.md says how to install them).
"""

from __future__ import annotations

import itertools
import statistics

from _common import Parser, Report, load_line, md_table
from libs import (
    CLI,
    CORNAC,
    LIBMF_FAMILY,
    MFSGD,
    PYLIBMF,
    SURPRISE,
    Anchors,
    add_options,
    fmt_p,
    run_alone,
)

# Surprise's SVD defaults; LibMF's closest: same k, iterations and L2, its own default eta
# (0.1), because its per-coordinate adaptive step makes 0.005 a different, much smaller rate.
SURPRISE_DEFAULTS = {"k": 100, "epochs": 20, "lr": 0.005, "reg": 0.02}
LIBMF_DEFAULTS = {"k": 100, "epochs": 20, "lr": 0.1, "reg": 0.02}
GRID = {"k": [16, 64, 100], "epochs": [10, 20, 40], "lr": [0.005, 0.01], "reg": [0.02, 0.05, 0.1]}
LIBMF_GRID = dict(GRID, lr=[0.05, 0.1])
QUICK_GRID = {"k": [16], "epochs": [10], "lr": [0.01], "reg": [0.02, 0.1]}
QUICK_LIBMF_GRID = dict(QUICK_GRID, lr=[0.1])
MFSGD_FAST = {"k": 16, "epochs": 10, "lr": 0.01, "reg": 0.02}
# Found on u1 by hand (README's parameters: lr_decay, init_std as small as Cornac's 0.01):
# indicative only, since it was picked looking at u1.test.
MFSGD_TUNED = {"k": 64, "epochs": 40, "lr": 0.015, "reg": 0.06, "reg_bias": 0.02,
               "lr_decay": 0.02, "init_std": 0.01}


def defaults_for(lib: str) -> dict:
    return LIBMF_DEFAULTS if lib in LIBMF_FAMILY else SURPRISE_DEFAULTS


def grid_configs(grid: dict) -> list[dict]:
    keys = list(grid)
    return [dict(zip(keys, v, strict=True)) for v in itertools.product(*grid.values())]


def summarize(rows: list[dict]) -> dict:
    r = [x["rmse"] for x in rows]
    return {"rmse": statistics.mean(r), "sd": statistics.stdev(r) if len(r) > 1 else 0.0,
            "mae": statistics.mean(x["mae"] for x in rows),
            "fit_s": statistics.mean(x["fit_s"] for x in rows), "folds": r}


def fold_cells(sm: dict) -> list[str]:
    return [f"{sm['rmse']:.4f} (sd {sm['sd']:.4f})", f"{sm['mae']:.4f}", f"{sm['fit_s']:.3f}",
            " / ".join(f"{x:.4f}" for x in sm["folds"])]


def ratio_lines(rep: Report, d: dict, what: str) -> None:
    if MFSGD not in d:
        return
    m = d[MFSGD]
    for lib in (SURPRISE, CORNAC, CLI, PYLIBMF):
        if lib in d:
            o = d[lib]
            rep.add(f"- {what}: fit time ratio mfsgd/{lib} = {m['fit_s'] / o['fit_s']:.3f} "
                    f"({m['fit_s']:.3f} s vs {o['fit_s']:.3f} s per fold; mean RMSE "
                    f"{m['rmse']:.4f} vs {o['rmse']:.4f}).")
    rep.add("")


def run(rep: Report, args, anchors: Anchors) -> dict:
    """Prints section 1; returns its results: ``best[lib]["p"]`` is the grid-best setting
    that section 3 plots."""
    R, folds, val = args.repeats, anchors.folds, anchors.val
    res: dict = {"defaults": {}, "best": {}, "extra": {}}
    rep.add(f"## 1. MovieLens 100K, official folds {folds[0].name}..{folds[-1].name}\n")
    rep.add(load_line() + "\n")
    rep.add("Train on `uN.base`, score on `uN.test`; every library's predictions are clipped "
            "to [1, 5]; unknown users/items get the library's own fallback (biases / global "
            "mean; LibMF: training mean). Fit seconds = median of "
            f"{R} repeat(s) per fold, then the mean over folds; one thread everywhere. "
            "Timed: mfsgd `fit` from raw ids (includes its id mapping and data layout); "
            "Surprise `SVD.fit` (trainset built beforehand, not timed); Cornac `MF.fit` "
            "(Dataset built beforehand); LibMF CLI: wall time of the `mf-train --quiet` "
            "process (includes parsing its text file and writing the model file); PyPI "
            "libmf: `MF.fit` (includes its conversion of the array).\n")

    # (a) defaults
    rows = []
    for lib in anchors.names:
        p = defaults_for(lib)
        try:
            sm = summarize(anchors.evaluate(lib, folds, [p], R)[0])
        except Exception as e:  # noqa: BLE001 - a failing anchor must not stop the run
            rows.append([lib, fmt_p(p, lib), f"failed: {e}", "", "", ""])
            continue
        res["defaults"][lib] = dict(sm, p=p)
        rows.append([lib, fmt_p(p, lib), *fold_cells(sm)])
    rep.add("### 1a. Surprise's SVD defaults in every library\n")
    rep.add("k=100, 20 epochs, lr 0.005, reg 0.02 (factors and biases). LibMF has no bias terms "
            "and adaptive per-coordinate step sizes: closest setting is k=100, 20 iterations, "
            "L2 0.02 on P and Q, L1 0, and its own default initial rate eta 0.1 (a plain 0.005 "
            "would be a far smaller effective step).\n")
    rep.add(md_table(["library", "setting", "mean RMSE", "mean MAE", "fit s/fold",
                      "RMSE per fold"], rows))
    rep.add("")
    ratio_lines(rep, res["defaults"], "defaults")

    # (b) small grid on a validation split of u1.base
    rep.add("### 1b. Each library's best setting from a small grid\n")
    g, lg = (QUICK_GRID, QUICK_LIBMF_GRID) if args.quick else (GRID, LIBMF_GRID)
    rep.add(f"Grid (every combination, {len(grid_configs(g))} settings per library): "
            f"k {g['k']}, epochs {g['epochs']}, lr {g['lr']}, reg {g['reg']} "
            f"(LibMF: eta {lg['lr']} instead of lr). Each setting is fitted once on 90% of "
            f"u1.base and scored on the other 10% (split with "
            f"`mfsgd.model_selection.train_test_split(test_size=0.1, random_state=0)`); the "
            f"setting with the lowest validation RMSE is then run on the five folds. The "
            f"official test folds are never used for the choice.\n")
    rows, top = [], []
    for lib in anchors.names:
        cfgs = grid_configs(lg if lib in LIBMF_FAMILY else g)
        try:
            scored = [(r[0]["rmse"], r[0]["fit_s"], p)
                      for r, p in zip(anchors.evaluate(lib, [val], cfgs, 1), cfgs, strict=True)]
        except Exception as e:  # noqa: BLE001
            rows.append([lib, f"grid failed: {e}", "", "", "", "", ""])
            continue
        scored.sort(key=lambda x: (round(x[0], 4), x[1]))
        for v, fs, p in scored[:3]:
            top.append([lib, fmt_p(p, lib), f"{v:.4f}", f"{fs:.3f}"])
        best = scored[0][2]
        try:
            sm = summarize(anchors.evaluate(lib, folds, [best], R)[0])
        except Exception as e:  # noqa: BLE001
            rows.append([lib, fmt_p(best, lib), f"failed: {e}", "", "", "", ""])
            continue
        res["best"][lib] = dict(sm, p=best)
        rows.append([lib, fmt_p(best, lib), f"{scored[0][0]:.4f}", *fold_cells(sm)])
    # mfsgd extra rows: the README-style fast setting and the u1-tuned setting
    for name, p in (("mfsgd fast", MFSGD_FAST), ("mfsgd tuned on u1 (see 3)", MFSGD_TUNED)):
        sm = summarize(anchors.evaluate(MFSGD, folds, [p], R)[0])
        res["extra"][name] = dict(sm, p=p)
        rows.append([name, fmt_p(p, MFSGD), "", *fold_cells(sm)])
    rep.add(md_table(["library", "chosen setting", "val RMSE", "mean RMSE (5 folds)",
                      "mean MAE", "fit s/fold", "RMSE per fold"], rows))
    rep.add("")
    ratio_lines(rep, res["best"], "best settings")
    if MFSGD in res["defaults"] and "mfsgd fast" in res["extra"]:
        f = res["extra"]["mfsgd fast"]
        rep.add(f"- mfsgd fast setting (k=16, 10 epochs, lr 0.01): mean RMSE {f['rmse']:.4f}, "
                f"{f['fit_s']:.3f} s/fold.")
        for lib in (SURPRISE, CORNAC):
            if lib in res["defaults"]:
                d = res["defaults"][lib]
                rep.add(f"- mfsgd fast vs {lib} defaults: RMSE {f['rmse']:.4f} vs {d['rmse']:.4f}, "
                        f"fit time ratio mfsgd/{lib} = {f['fit_s'] / d['fit_s']:.3f} "
                        f"({d['fit_s'] / f['fit_s']:.1f}x faster).")
    rep.add("")
    rep.add("Top 3 of each grid (validation RMSE on the 10% split of u1.base, fit s):\n")
    rep.add(md_table(["library", "setting", "val RMSE", "fit s"], top))
    rep.add("")
    return res


def parser() -> Parser:
    ap = Parser(__doc__)
    ap.add_quick("fold u1 only, a 2-setting grid, 1 repeat")
    add_options(ap)
    return ap


if __name__ == "__main__":
    run_alone(parser(), run)
