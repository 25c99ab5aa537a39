"""Peak resident memory of mfsgd's fit on synthetic sets, one fresh process per row.

    python bench/memory.py [--ratings 20000000 100000000] [--k 64] [--threads 1 2]

Each row: the int32/int32/float32 arrays loaded from the cache (generated first, in this
process, so that the child's peak is the fit's), then a 1-epoch fit. Prints the arrays'
own size, the resident memory once they are loaded, and the peak of the whole process, in
GiB (peak = VmHWM, see _common.rss_kib). Section 2 of RESULTS.md reports the same for
every k and thread count; this script is for the sizes it leaves out (100 M).
"""

from __future__ import annotations

from _common import Parser, Report, get_data, md_table, progress, run_alone, size_dims
from libs import mfsgd_synth


def run(rep: Report, args) -> None:
    rows = []
    for n in args.ratings:
        users, items = size_dims(n)
        get_data(users, items, n, args.cache)
        for t in args.threads:
            progress(f"  {n:,} ratings, {t} thread(s)")
            try:
                m = mfsgd_synth(n, users, items, args.k, t, 1, args.cache)
            except RuntimeError as e:
                rows.append([f"{n:,}", f"failed: {e}", "", "", "", "", "", "", ""])
                continue
            rows.append([f"{n:,}", f"{users:,} x {items:,}", args.k, t,
                         f"{m['data_bytes'] / 2**30:.2f}", f"{m['rss_data_kib'] / 2**20:.2f}",
                         f"{m['peak_kib'] / 2**20:.2f}", f"{m['fit_s']:.1f}",
                         f"{m['epoch_s'][0]:.2f}"])
    rep.add(md_table(["ratings", "users x items", "k", "threads", "input arrays GiB",
                      "RSS with data GiB", "peak RSS GiB", "fit s", "epoch s"], rows))


def parser() -> Parser:
    ap = Parser(__doc__)
    ap.add_argument("--ratings", type=int, nargs="+", default=[20_000_000],
                    help="set sizes, one row each (default %(default)s)")
    ap.add_argument("--k", type=int, default=64, help="n_factors (default %(default)s)")
    ap.add_threads([1])
    ap.add_cache()
    ap.add_out()
    return ap


if __name__ == "__main__":
    run_alone(parser(), run)
