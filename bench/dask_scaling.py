"""Section 5: distributed stratified SGD on a Dask LocalCluster beside the single-machine fit.

    python bench/dask_scaling.py [--ratings 20000000] [--clusters 1x1 1x2 2x1] [--k 64]
                                 [--epochs 3] [--quick]

Seconds per epoch, updates per second, the cores a worker's task kept busy, and test
RMSE (2% of the ratings held out) for LocalClusters of W worker processes with T threads
each (``--clusters WxT``; each worker runs its blocks of a stratum on its T threads) next
to the single-machine fit of the same data, seed and n_blocks on 1 and 2 threads, and the
largest difference of the user factors between them (0: bit-identical). All workers share
this machine's cores, so the rows show how well a worker uses its threads and the
overheads (serialisation, transfers, scheduling), not a cluster's speed-up;
bench/RESULTS.md, section 5, turns the throughput and overhead measured here into an
estimate for a real cluster. Needs the dask extra: pip install 'mfsgd[dask]'.
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import (
    Parser,
    Report,
    get_data,
    load_line,
    md_table,
    progress,
    run_alone,
    synthetic_dims,
    timed,
)


def cluster_shape(text: str) -> tuple[int, int]:
    """``WxT``: W worker processes with T threads each."""
    try:
        w, t = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected WORKERSxTHREADS such as 1x2; got {text!r}") from None
    if w < 1 or t < 1:
        raise argparse.ArgumentTypeError(f"workers and threads must be >= 1; got {text!r}")
    return w, t


def _instrument_blocks() -> None:
    """On a worker: count each block's kernel call in CPU seconds of its own thread, so
    that CPU s / task s shows how many cores a worker's task really kept busy (on a
    shared machine, wall-clock speed-ups alone cannot tell)."""
    import time

    from mfsgd import _dask

    if not hasattr(_dask, "_bench_cpu"):
        orig = _dask._block_run

        def block_run(*args):
            t0 = time.thread_time()
            try:
                return orig(*args)
            finally:
                _dask._bench_cpu.append(time.thread_time() - t0)

        _dask._bench_cpu = []
        _dask._block_run = block_run
    _dask._bench_cpu.clear()


def _block_cpu() -> float:
    from mfsgd import _dask

    return float(sum(_dask._bench_cpu))


def run(rep: Report, args) -> None:
    rep.add("## 5. Distributed stratified SGD on Dask (LocalCluster on this machine)\n")
    try:
        import dask
        import dask.dataframe as dd
        import distributed
        import pandas as pd
        from distributed import Client, LocalCluster
    except ImportError as e:
        rep.add(f"Skipped: {e.name} is not installed (pip install 'mfsgd[dask]').\n")
        return
    import mfsgd

    rep.add(load_line() + f" dask {dask.__version__}, distributed {distributed.__version__}.\n")
    u, i, r = get_data(*synthetic_dims(args), args.ratings, args.cache)
    n_test = len(r) // 50
    test = (u[:n_test], i[:n_test], r[:n_test])
    df = pd.DataFrame({"user": u[n_test:], "item": i[n_test:], "rating": r[n_test:]})
    kw = dict(n_factors=args.k, n_epochs=args.epochs, n_blocks=args.blocks, random_state=0,
              learning_rate=0.005, reg_factors=0.03)

    def rmse(m):
        return float(np.sqrt(np.mean((m.predict(test[:2]) - test[2]) ** 2)))

    rows, ref = [], None
    for t in (1, 2):
        progress(f"  single machine, {t} thread(s)")
        local = mfsgd.MatrixFactorization(**kw, n_threads=t)
        total, _ = timed(local.fit, df)
        ref = local if ref is None else ref
        diff = float(np.abs(local.user_factors_ - ref.user_factors_).max())
        rows.append((f"single machine, {t} thread{'s' if t > 1 else ''}", total,
                     np.median([h["seconds"] for h in local.history_]), rmse(local), diff,
                     None))
    n_train = len(df)
    for w, t in (cluster_shape(c) if isinstance(c, str) else c for c in args.clusters):
        progress(f"  Dask, {w} worker(s) x {t} thread(s)")
        with LocalCluster(n_workers=w, threads_per_worker=t, processes=True,
                          dashboard_address=None, host="127.0.0.1",
                          memory_limit=f"{int(16 / w)}GiB") as cl, Client(cl) as client:
            ddf = dd.from_pandas(df, npartitions=args.partitions)
            m = mfsgd.MatrixFactorization(**kw)
            client.run(_instrument_blocks)
            with distributed.get_task_stream(client) as ts:
                total, _ = timed(m.fit, ddf, client=client)
            cpu = sum(client.run(_block_cpu).values())
            task_s = sum(ss["stop"] - ss["start"] for d in ts.data
                         if str(d["key"]).startswith("mfsgd-e")
                         for ss in d["startstops"] if ss["action"] == "compute")
            diff = float(np.abs(m.user_factors_ - ref.user_factors_).max())
            rows.append((f"Dask, {w} worker{'s' if w > 1 else ''} x {t} thread"
                         f"{'s' if t > 1 else ''}", total,
                         np.median([h["seconds"] for h in m.history_]), rmse(m), diff,
                         cpu / task_s if task_s else float("nan")))
    rep.add(f"{n_train:,} training ratings, k={args.k}, n_blocks={args.blocks}, "
            f"{args.epochs} epochs; test RMSE on {n_test:,} held-out ratings\n")
    first_dask = next((row[2] for row in rows if row[0].startswith("Dask")), None)
    rep.add(md_table(["run", "fit s (total)", "s/epoch (median)", "M updates/s",
                      "updates/s vs first Dask row", "kernel CPU s / task s",
                      "test RMSE", "max abs diff vs single machine"],
                     [[name, f"{total:.1f}", f"{per:.2f}", f"{n_train / per / 1e6:.1f}",
                       f"{first_dask / per:.2f}" if first_dask else "",
                       "" if cores is None else f"{cores:.2f}", f"{e:.4f}", f"{diff:.1e}"]
                      for name, total, per, e, diff, cores in rows]))
    rep.add("\nkernel CPU s / task s: CPU seconds of the block kernels' threads (time.thread_time) "
            "over the wall seconds of the per-worker tasks, summed over workers; how many cores "
            "a worker's task kept busy on average (at most its threads).\n")
    rep.add("")


def parser() -> Parser:
    ap = Parser(__doc__)
    ap.add_quick("100,000 ratings, clusters 1x1 and 1x2, 1 epoch")
    ap.add_synthetic()
    ap.add_sized("--clusters", type=cluster_shape, nargs="+", metavar="WxT",
                 full=["1x1", "1x2", "2x1"], quick=["1x1", "1x2"],
                 help="LocalCluster shapes, W worker processes x T threads, one row each")
    ap.add_argument("--k", type=int, default=64, help="n_factors (default %(default)s)")
    ap.add_sized("--epochs", type=int, full=3, quick=1, help="epochs per fit")
    ap.add_argument("--blocks", type=int, default=4, help="n_blocks (default %(default)s)")
    ap.add_sized("--partitions", type=int, full=16, quick=4,
                 help="partitions of the Dask DataFrame")
    ap.add_cache()
    ap.add_out()
    return ap


if __name__ == "__main__":
    run_alone(parser(), run)
