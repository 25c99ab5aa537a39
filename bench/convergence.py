"""Section 4: learning-rate schedules and cache blocking, accuracy per epoch and per second.

    python bench/convergence.py [--data ../shared/data/ml-100k] [--libmf-cli PATH/mf-train]
                                [--repeats 3] [--plot-convergence bench/convergence.png]
                                [--quick]

(a) MovieLens 100K u1: constant rate, per-epoch decay and AdaGrad, each schedule's rate
chosen on the 90/10 split of u1.base. (b) The 20 M synthetic set with 1% held out:
validation RMSE against seconds for the three schedules, the LibMF CLI and Cornac.
(c) The default cell layout against a full shuffle and against no shuffle, from the same
initial parameters. One thread everywhere; a PNG of the three panels.
"""

from __future__ import annotations

import statistics
import tempfile
import time

import numpy as np
from _common import (
    Parser,
    Report,
    figure,
    figure_path,
    get_data,
    load_line,
    md_table,
    progress,
    pyplot,
    save_figure,
    size_dims,
)
from curves import CURVE_EPOCHS, QUICK_EPOCHS, THRESHOLDS, hits
from libs import CLI, CORNAC, MFSGD, Anchors, Split, add_options, fmt_p, mfsgd_curve, run_alone

SCHEDULES = {  # name -> grid of the schedule's own knobs (k=64, reg 0.1 for all, on u1)
    "constant": [{"lr": lr} for lr in (0.005, 0.01, 0.02)],
    "lr_decay": [{"lr": lr, "lr_decay": d} for lr in (0.01, 0.02) for d in (0.02, 0.1)],
    "AdaGrad": [{"lr": lr, "adagrad": True} for lr in (0.02, 0.05, 0.1)],
}
# 20 M set (noise floor 0.5): settings from a 12-epoch sweep on the same split (indicative)
SCHEDULES_20M = {"constant": {"lr": 0.02}, "lr_decay": {"lr": 0.02, "lr_decay": 0.1},
                 "AdaGrad": {"lr": 0.1, "adagrad": True}}
THRESHOLDS_20M = [0.60, 0.57, 0.56, 0.55]


def blocking_curves(train, val, k: int, lr: float, reg: float, epochs: int) -> dict:
    """Validation RMSE per epoch and seconds per epoch, one thread, the same initial
    parameters, for: the default layout (cells, per-epoch random cell order and in-cell
    permutations), a full shuffle (a global permutation of all ratings every epoch, then
    the kernel in that order: the textbook schedule), and no shuffle (stored order)."""
    from mfsgd import _sgd
    from mfsgd import _training as T

    u, i, r = (np.ascontiguousarray(train[0], np.int32), np.ascontiguousarray(train[1], np.int32),
               np.ascontiguousarray(train[2], np.float32))
    vu, vi, vr = (np.asarray(val[0], np.int32), np.asarray(val[1], np.int32),
                  np.asarray(val[2], np.float64))
    nu, ni = int(max(u.max(), vu.max())) + 1, int(max(i.max(), vi.max())) + 1
    mu = float(r.mean(dtype=np.float64))
    rng0 = np.random.default_rng(0)
    P0 = (rng0.standard_normal((nu, k)) * 0.1).astype(np.float32)
    Q0 = (rng0.standard_normal((ni, k)) * 0.1).astype(np.float32)
    hyper = T.Hyper(lr=lr, reg_f=reg, reg_b=reg, mu=mu, use_bias=True, nonneg=False)
    out = {}
    for name in ("cells", "full shuffle", "no shuffle"):
        params = T.Params(T.aligned_concat([P0]), T.aligned_concat([Q0]),
                          np.zeros(nu, np.float32), np.zeros(ni, np.float32))
        rng = np.random.default_rng(1)
        s = T.default_n_cells(nu, ni, len(r), k * 4, 1) if name == "cells" else 1
        layout = T.Layout.build([u, i, r], nu, ni, 1, s)  # reads them, never writes
        runner = T.EpochRunner(layout, params, hyper, 1)
        rows = []
        for _ in range(epochs):
            t0 = time.perf_counter()
            if name == "full shuffle":
                perm = rng.permutation(len(r))
                su, si, sr = u[perm], i[perm], r[perm]
                t1 = time.perf_counter()
                _sgd.sgd_epoch(su, si, sr, params.P, params.Q, params.bu, params.bi, mu, lr,
                               reg, reg)
                del su, si, sr, perm
            else:
                t1 = t0
                runner.run_epoch(rng if name == "cells" else None)
            t2 = time.perf_counter()
            rows.append((t2 - t0, t1 - t0, T.rmse_of(params, mu, vu, vi, vr)))
        runner.close()
        out[name] = {"rows": rows, "cells": s}
        progress(f"  blocking {name}: val {rows[-1][2]:.4f}, "
                 f"{statistics.median(x[0] for x in rows):.3f} s/epoch")
    return out


def run(rep: Report, args, anchors: Anchors) -> None:
    quick, u1, val = args.quick, anchors.folds[0], anchors.val
    epochs = QUICK_EPOCHS if quick else CURVE_EPOCHS
    rep.add("## 4. Learning-rate schedules and cache blocking: accuracy per epoch and per "
            "second\n")
    rep.add(load_line() + " One thread everywhere.\n")
    # --- 4a: schedules on u1
    base = {"k": 64, "reg": 0.1, "epochs": max(epochs)}
    curves_u1 = []
    for name, grid in SCHEDULES.items():
        # the setting with the best validation RMSE at any epoch, on the 90/10 split
        scored = [(min(x[2] for x in mfsgd_curve(val.train, val.test, p)), p)
                  for p in (dict(base, **g) for g in (grid[:1] if quick else grid))]
        best = min(scored, key=lambda x: x[0])[1]
        pts = anchors.curve(MFSGD, u1, best, epochs, args.repeats)
        curves_u1.append((name, best, pts))
        progress(f"  schedule {name}: {fmt_p(best, MFSGD)} best {min(x[2] for x in pts):.4f}")
    rep.add("### 4a. MovieLens 100K u1: constant rate, per-epoch decay, AdaGrad\n")
    rep.add("Same model (k=64, reg 0.1, init_std 0.1) with each schedule; each schedule's "
            "rate (and decay) chosen from a small grid by the best validation RMSE on the 10% "
            "split of u1.base (section 1b's split), then run on u1.base and scored on "
            f"u1.test after every epoch (median of {args.repeats} runs; clock as in section 3). "
            f"Grids: {'; '.join(f'{n}: {g}' for n, g in SCHEDULES.items())}.\n")
    rows = [[n, fmt_p(p, MFSGD), *hits(pts, THRESHOLDS)] for n, p, pts in curves_u1]
    rep.add(md_table(["schedule", "setting", *[f"to {t}" for t in THRESHOLDS], "best RMSE"],
                     rows))
    rep.add("")
    # --- 4b/4c: the 20 M set
    n20 = 100_000 if quick else 20_000_000
    nu, ni = size_dims(n20)
    u, i, r = get_data(nu, ni, n20, args.cache)
    mask = np.random.default_rng(0).random(len(r)) < 0.01
    tr = (u[~mask], i[~mask], r[~mask])
    te = (u[mask], i[mask], r[mask])
    del u, i, r
    e20 = 3 if quick else 20
    curves_20 = []
    with tempfile.TemporaryDirectory(prefix="synth-", dir=args.cache) as work:
        s20 = Split(f"synth{n20}", tr, te, work)
        for name, g in SCHEDULES_20M.items():
            p = dict({"k": 64, "reg": 0.02, "epochs": e20}, **g)
            pts = anchors.curve(MFSGD, s20, p, list(range(1, e20 + 1)), 1)
            curves_20.append((f"mfsgd {name}", MFSGD, p, pts))
            progress(f"  20M mfsgd {name}: best {min(x[2] for x in pts):.4f}")
        other_epochs = [1, 2, 3] if quick else [1, 2, 4, 6, 8, 12, 16, 20]
        for lib, p in ((CLI, {"k": 64, "lr": 0.1, "reg": 0.02, "epochs": e20}),
                       (CORNAC, {"k": 64, "lr": 0.02, "reg": 0.02, "epochs": e20})):
            if lib not in anchors.names:
                continue
            try:
                pts = anchors.curve(lib, s20, p, other_epochs, 1)
            except Exception as e:  # noqa: BLE001 - a failing anchor must not stop the run
                progress(f"  20M {lib} failed: {e}")
                continue
            curves_20.append((lib, lib, p, pts))
            progress(f"  20M {lib}: best {min(x[2] for x in pts):.4f}")
    rep.add(f"### 4b. {n20:,} synthetic ratings: validation RMSE against seconds\n")
    rep.add(f"`make_ratings({nu}, {ni}, {n20}, random_state=0)` (noise sd 0.5, the best "
            "achievable RMSE), 1% held out at random (seed 0) for validation. mfsgd: one fit "
            "per schedule with eval_set (clock includes setup: id mapping and layout, and the "
            "per-epoch validation pass); settings from a 12-epoch sweep on this split "
            "(indicative). LibMF CLI: one verbose run with `-p` (clock includes parsing its "
            "text file); Cornac: a fresh fit per point, its Dataset built "
            "beforehand. Surprise is left out here: at its ~2 M updates/s (section 2) each "
            "point would take minutes.\n")
    rows = [[label, fmt_p(p, lib), *hits(pts, THRESHOLDS_20M)] for label, lib, p, pts in curves_20]
    rep.add(md_table(["curve", "setting", *[f"to {t}" for t in THRESHOLDS_20M], "best RMSE"],
                     rows))
    rep.add("")
    # --- 4c: blocking
    blk = blocking_curves(tr, te, 64, 0.02, 0.02, 4 if quick else 12)
    rep.add("### 4c. Cache blocking vs a full shuffle, same data and initial parameters\n")
    rep.add("k=64, constant lr 0.02, reg 0.02, float32, one thread. *cells*: the default "
            f"layout ({blk['cells']['cells']}x{blk['cells']['cells']} cells; each epoch a random "
            "cell order and a fresh permutation inside each cell); *full shuffle*: a global "
            "`numpy` permutation of all ratings every epoch, gathered, then the kernel in that "
            "order (its seconds include the permutation and gather, shown apart); *no "
            "shuffle*: the stored order every epoch.\n")
    ep = [e for e in (1, 2, 4, 8, 12) if e <= len(blk["cells"]["rows"])]
    rows = []
    for name, d in blk.items():
        rr = d["rows"]
        med = statistics.median(x[0] for x in rr)
        shuf = statistics.median(x[1] for x in rr)
        rows.append([name, *[f"{rr[e - 1][2]:.4f}" for e in ep], f"{med:.3f}",
                     f"{shuf:.3f}", f"{len(tr[2]) / med / 1e6:.1f}"])
    rep.add(md_table(["schedule", *[f"val RMSE ep {e}" for e in ep], "s/epoch",
                      "of which numpy shuffle s", "M upd/s"], rows))
    c, f = blk["cells"]["rows"], blk["full shuffle"]["rows"]
    rep.add(f"\n- cells vs full shuffle: val RMSE after epoch {len(c)} {c[-1][2]:.4f} vs "
            f"{f[-1][2]:.4f}; seconds per epoch ratio full/cells = "
            f"{statistics.median(x[0] for x in f) / statistics.median(x[0] for x in c):.1f}.\n")
    path = figure_path(args.plot_convergence, args.out, "convergence.png")
    if path:
        rep.add(figure(plot(curves_u1, curves_20, blk, path), path, args.out,
                       "schedules and blocking"))


def plot(curves_u1, curves_20, blk, path: str) -> bool:
    """Three panels (u1 schedules, 20 M curves, blocking per epoch); False without
    matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    from matplotlib.ticker import NullFormatter

    fig, ax = plt.subplots(1, 3, figsize=(17, 5))
    sched_color = {"constant": "C0", "lr_decay": "C1", "AdaGrad": "C4"}
    for name, _, pts in curves_u1:
        ax[0].plot([x[1] for x in pts], [x[2] for x in pts], marker=".", ms=4, label=name,
                   color=sched_color.get(name))
    ax[0].set(xscale="log", xlabel="seconds (log)", ylabel="test RMSE",
              title="MovieLens 100K u1: schedules (mfsgd, k=64)", ylim=(0.905, 1.0))
    colors = {CLI: "C3", CORNAC: "C2"}
    for label, lib, _, pts in curves_20:
        c = colors.get(lib) or sched_color.get(label.replace("mfsgd ", ""))
        ax[1].plot([x[1] for x in pts], [x[2] for x in pts], marker=".", ms=4, label=label,
                   color=c, ls="-" if lib == MFSGD else "--")
    ax[1].set(xscale="log", xlabel="seconds (log)", ylabel="validation RMSE",
              title="20 M synthetic ratings, k=64, one thread", ylim=(0.53, 0.85))
    for name, d in blk.items():
        rr = d["rows"]
        ax[2].plot(range(1, len(rr) + 1), [x[2] for x in rr], marker="o", ms=3, label=name)
    ax[2].set(xlabel="epoch", ylabel="validation RMSE", ylim=(0.53, 0.85),
              title="20 M: cache blocking vs full shuffle (per epoch)")
    for a in ax:
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=8)
        a.xaxis.set_minor_formatter(NullFormatter())
    return save_figure(plt, fig, path, dpi=100)


def add_section_options(ap: Parser) -> None:
    """This section's own options (run.py takes them too)."""
    ap.add_plot("--plot-convergence", "convergence.png")


def parser() -> Parser:
    ap = Parser(__doc__)
    ap.add_quick(f"epochs {QUICK_EPOCHS}, one rate per schedule, a 100K synthetic set, "
                 "1 repeat")
    add_options(ap)
    add_section_options(ap)
    return ap


if __name__ == "__main__":
    run_alone(parser(), run)
