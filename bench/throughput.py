"""Section 8: rating-updates per second of mfsgd alone, per kernel variant, k and threads.

    python bench/throughput.py [--ratings 20000000] [--users 200000] [--items 20000]
                               [--k 32 64 128] [--threads 1 2] [--epochs 3]
                               [--kernel auto baseline avx2 avx512] [--quick]

Synthetic data from mfsgd.datasets.make_ratings (cached, see --cache). Times whole
epochs of `fit` (history_ seconds; the first epoch is included) and prints a markdown
table of seconds per epoch (median) and M updates/s, with the variant that actually ran
(``--kernel`` forces one with ``_sgd.isa_select``; a variant this CPU lacks falls back
to the best one below it). bench/run.py runs it as RESULTS.md's section 8 (variants by
row width); section 7 (portable against ``-march=native``) is this script run by two
builds, see bench/README.md.
"""

from __future__ import annotations

import statistics

from _common import (
    Parser,
    Report,
    get_data,
    load_line,
    md_table,
    progress,
    run_alone,
    synthetic_dims,
)

import mfsgd
from mfsgd import _kernels, _sgd

KERNELS = _kernels.SELECTABLE
# what bench/run.py passes for RESULTS.md's section 8
RESULTS_ARGV = ["--kernel", "avx2", "avx512", "auto", "--threads", "1"]


def run(rep: Report, args) -> None:
    users, items = synthetic_dims(args)
    u, i, r = get_data(users, items, args.ratings, args.cache)
    rep.add("## 8. mfsgd throughput by kernel variant, k and threads\n")
    rep.add(load_line() + "\n")
    rep.add(f"mfsgd {mfsgd.__version__}; {len(r):,} ratings, {users:,} users x {items:,} items; "
            f"{args.epochs} epochs each\n")
    rows = []
    before = _sgd.isa_current()
    try:
        for kern in args.kernel or [None]:
            if kern:
                _sgd.isa_select(KERNELS[kern])
            for k in args.k:
                for t in args.threads:
                    m = mfsgd.MatrixFactorization(n_factors=k, n_epochs=args.epochs, n_threads=t,
                                                  n_blocks=args.blocks, random_state=0,
                                                  learning_rate=0.002)
                    m.fit((u, i, r))
                    s = statistics.median(h["seconds"] for h in m.history_)
                    # user_factors_ views the padded rows: its stride is the row width
                    # the kernel chooses its variant by
                    used = _sgd.isa_name(_sgd.isa_for(m.user_factors_.strides[0]))
                    sel = "auto: " if _sgd.isa_current() == _sgd.ISA_AUTO else ""
                    rows.append([f"{sel}{used}", k, t, m.n_blocks_, f"{s:.3f}",
                                 f"{len(r) / s / 1e6:.1f}"])
                    progress(f"  {rows[-1][0]} k={k} threads={t}: {s:.3f} s/epoch")
    finally:  # the selection is global to the process: leave it as found for later sections
        _sgd.isa_select(before)
    rep.add(md_table(["kernel", "k", "threads", "blocks", "s/epoch (median)", "M updates/s"],
                     rows))
    rep.add("")


def parser() -> Parser:
    ap = Parser(__doc__)
    ap.add_quick("100,000 ratings, k 32")
    ap.add_synthetic()
    ap.add_sized("--k", type=int, nargs="+", full=[32, 64, 128], quick=[32], metavar="K",
                 help="factor counts")
    ap.add_threads([1, 2])
    ap.add_argument("--epochs", type=int, default=3, help="epochs per fit (default %(default)s)")
    ap.add_argument("--blocks", type=int, default=None, help="n_blocks (default: mfsgd's choice)")
    ap.add_argument("--kernel", nargs="+", default=None, choices=list(KERNELS),
                    help="force these variants in turn (default: the current selection)")
    ap.add_cache()
    ap.add_out()
    return ap


if __name__ == "__main__":
    run_alone(parser(), run)
