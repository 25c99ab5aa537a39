"""Section 3: test RMSE against wall-clock seconds on MovieLens 100K u1, every library.

    python bench/curves.py [--data ../shared/data/ml-100k] [--libmf-cli PATH/mf-train]
                           [--repeats 3] [--plot bench/rmse_vs_time.png] [--quick]

Curves at Surprise's defaults, at a shared setting and at mfsgd's fast and tuned
settings; the time each curve takes to reach RMSE 0.95/0.94/0.93/0.92, its best RMSE,
and a PNG plot. The grid-best curves need section 1's choice, so they are drawn only
when bench/run.py runs both sections (``--sections accuracy,curves``).
"""

from __future__ import annotations

from _common import (
    Parser,
    Report,
    figure,
    figure_path,
    load_line,
    md_table,
    progress,
    pyplot,
    save_figure,
)
from accuracy import MFSGD_FAST, MFSGD_TUNED, defaults_for
from libs import (
    CLI,
    CORNAC,
    MFSGD,
    PYLIBMF,
    SURPRISE,
    Anchors,
    add_options,
    fmt_p,
    run_alone,
)

SHARED = {"k": 64, "epochs": 60, "lr": 0.01, "reg": 0.1}  # same model & hyper-parameters
CURVE_EPOCHS = [1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 35, 40, 50, 60]
QUICK_EPOCHS = [1, 2, 5, 10]
THRESHOLDS = [0.95, 0.94, 0.93, 0.92]


def hits(pts: list[tuple[int, float, float]], thresholds: list[float]) -> list[str]:
    """Table cells: when each RMSE threshold is first reached, then the best point."""
    out = []
    for thr in thresholds:
        hit = next((x for x in pts if x[2] <= thr), None)
        out.append(f"{hit[1]:.3f} s (ep {hit[0]})" if hit else "not reached")
    b = min(pts, key=lambda x: x[2])
    return out + [f"{b[2]:.4f} at {b[1]:.3f} s (ep {b[0]})"]


def run(rep: Report, args, anchors: Anchors) -> None:
    epochs = QUICK_EPOCHS if args.quick else CURVE_EPOCHS
    emax, names, u1 = max(epochs), anchors.names, anchors.folds[0]
    rep.add(f"## 3. Test RMSE against wall-clock seconds on u1 (up to {emax} epochs)\n")
    rep.add(load_line() + "\n")
    curves = []  # (label, lib, panel, setting, points)

    def add(label, lib, panel, p):
        try:
            pts = anchors.curve(lib, u1, p, epochs, args.repeats)
        except Exception as e:  # noqa: BLE001 - a failing anchor must not stop the run
            progress(f"  curve {label} failed: {e}")
            return
        curves.append((label, lib, panel, p, pts))
        progress(f"  curve {label}: best {min(x[2] for x in pts):.4f}")

    for lib in names:
        add(f"{lib} defaults", lib, 0, defaults_for(lib))
    best = anchors.results.get("accuracy", {}).get("best", {})
    if not best:
        progress("  no grid-best curves: they need section 1 in the same run "
                 "(bench/run.py --sections accuracy,curves)")
    for lib in names:
        if lib in best:
            add(f"{lib} grid best", lib, 1, best[lib]["p"])
    for lib in (MFSGD, SURPRISE, CORNAC):
        if lib in names:
            add(f"{lib} shared k64 lr.01 reg.1", lib, 1, SHARED)
    add("mfsgd fast (k16 lr.01)", MFSGD, 0, MFSGD_FAST)
    add("mfsgd tuned (init_std .01, lr_decay)", MFSGD, 1, MFSGD_TUNED)

    path = figure_path(args.plot, args.out, "rmse_vs_time.png")
    if path:
        rep.add(figure(plot(curves, path), path, args.out, "test RMSE vs seconds"))
    rep.add(f"How each point is timed (median of {args.repeats} runs). mfsgd: one fit with "
            "`eval_set=u1.test`, clock read in "
            "fit's per-epoch callback (includes setup and mfsgd's own per-epoch validation "
            "pass). Surprise, Cornac, PyPI libmf: no per-epoch hook that reports test RMSE, so "
            f"each point is a fresh fit with n_epochs = {epochs} (deterministic seeds: the "
            "model after e epochs of a longer run is the same), timed like section 1 (median "
            f"of {args.repeats}; then made non-decreasing in e, so that timer noise cannot "
            "make a longer fit look faster). LibMF "
            "CLI: one verbose `mf-train -p u1.test` run, each iteration line timestamped "
            "from process start (includes reading the text files); its RMSE is LibMF's own "
            "`va_rmse` (predictions not clipped to [1, 5]). Left panel: Surprise-default "
            "hyper-parameters (mfsgd fast too); right: each library's grid-best setting run "
            f"for {emax} epochs, the same setting (k=64, lr 0.01, reg 0.1) in the three "
            "biased-SGD libraries, and mfsgd with init_std 0.01 (Cornac's init) and lr_decay "
            "(chosen looking at u1.test: indicative).\n")
    rows = [[label, fmt_p(dict(p, epochs=emax), lib), *hits(pts, THRESHOLDS)]
            for label, lib, _, p, pts in curves]
    rep.add(md_table(["curve", "setting", *[f"to {t}" for t in THRESHOLDS], "best RMSE"], rows))
    rep.add("")
    ratios(rep, curves, names)


def ratios(rep: Report, curves: list, names: list[str]) -> None:
    """Time-to-RMSE of the fastest mfsgd curve over the fastest curve of each anchor."""
    fastest = {}
    for thr in THRESHOLDS:
        for label, lib, _, _, pts in curves:
            hit = next((x for x in pts if x[2] <= thr), None)
            if hit and (fastest.get((lib, thr)) is None or hit[1] < fastest[(lib, thr)][0]):
                fastest[(lib, thr)] = (hit[1], label)
    lines = []
    for thr in THRESHOLDS:
        m = fastest.get((MFSGD, thr))
        for lib in (SURPRISE, CORNAC, CLI, PYLIBMF):
            o = fastest.get((lib, thr))
            if m and o:
                lines.append(f"- RMSE {thr}: fastest mfsgd curve {m[0]:.3f} s ({m[1]}) vs "
                             f"fastest {lib} curve {o[0]:.3f} s ({o[1]}): ratio "
                             f"{m[0] / o[0]:.3f}.")
            elif m and lib in names:
                lines.append(f"- RMSE {thr}: mfsgd {m[0]:.3f} s ({m[1]}); {lib} not reached.")
    same = [c for c in curves if "shared" in c[0]]
    for thr in THRESHOLDS:
        first = {c[1]: next((x for x in c[4] if x[2] <= thr), None) for c in same}
        if first.get(MFSGD) and first.get(SURPRISE):
            lines.append(f"- Same hyper-parameters, RMSE {thr}: mfsgd {first[MFSGD][1]:.3f} s vs "
                         f"Surprise {first[SURPRISE][1]:.3f} s (ratio "
                         f"{first[MFSGD][1] / first[SURPRISE][1]:.3f}).")
    if lines:
        rep.add("Time-to-RMSE ratios (same run):\n")
        rep.add("\n".join(lines))
        rep.add("")


def plot(curves, path: str) -> bool:
    """Two panels (Surprise defaults, tuned settings); False without matplotlib."""
    plt = pyplot()
    if plt is None:
        return False
    colors = {MFSGD: "C0", SURPRISE: "C1", CORNAC: "C2", CLI: "C3", PYLIBMF: "C4"}
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), sharey=True)
    styles: dict = {}
    for label, lib, panel, _, pts in curves:
        ax = axes[panel]
        n = styles.setdefault((panel, lib), [0])
        ls = ["-", "--", ":", "-."][n[0] % 4]
        n[0] += 1
        ax.plot([x[1] for x in pts], [x[2] for x in pts], ls, marker=".", ms=4, color=colors[lib],
                label=label)
    for ax, title in zip(axes, ["Surprise-default hyper-parameters", "tuned settings"],
                         strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("wall-clock seconds (log)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        for thr in THRESHOLDS:
            ax.axhline(thr, color="grey", lw=0.6, alpha=0.5)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("test RMSE on MovieLens 100K u1")
    axes[0].set_ylim(0.905, 1.06)
    fig.suptitle("MovieLens 100K u1: test RMSE vs training time (one thread)")
    return save_figure(plt, fig, path, dpi=110)


def add_section_options(ap: Parser) -> None:
    """This section's own options (run.py takes them too)."""
    ap.add_plot("--plot", "rmse_vs_time.png")


def parser() -> Parser:
    ap = Parser(__doc__)
    ap.add_quick(f"fold u1, epochs {QUICK_EPOCHS}, 1 repeat")
    add_options(ap)
    add_section_options(ap)
    return ap


if __name__ == "__main__":
    run_alone(parser(), run)
