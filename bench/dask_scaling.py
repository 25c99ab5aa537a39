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


def task_body(u, i, r, k: int, p: int, repeats: int) -> list[list[str]]:
    """The worker task's body without Dask: ``_dask._blocks_run`` over the p strata of one
    epoch on this data's p x p grid, on 1 and on 2 threads, alternated ``repeats`` times,
    beside the local ``EpochRunner`` on 1 and 2 threads (the control: what this machine's
    cores give right now). Rows: what, threads, median wall s, median CPU s."""
    import time

    from mfsgd import _dask
    from mfsgd import _training as T
    from mfsgd._state import counts_of, init_rows, padded_width

    nu, ni = int(u.max()) + 1, int(i.max()) + 1
    s = T.default_n_cells(nu, ni, len(r), padded_width(k, np.float32) * 4, p)
    lay = T.Layout.build([u.astype(np.int32), i.astype(np.int32), r.astype(np.float32)],
                         nu, ni, p, s)
    u_start = np.searchsorted(T.split_by_counts(counts_of(lay.users, nu), p * s) // s,
                          np.arange(p + 1))
    i_start = np.searchsorted(T.split_by_counts(counts_of(lay.items, ni), p * s) // s,
                          np.arange(p + 1))
    rng = np.random.default_rng(0)
    P = init_rows(rng, nu, k, np.float32, 0.1, False)
    Q = init_rows(rng, ni, k, np.float32, 0.1, False)
    lo_seg = np.searchsorted(lay.seg_block, np.arange(p * p + 1))
    blocks = []
    for b in range(p * p):  # as _dask._block_assemble leaves them: local row indices
        rb, cb = divmod(b, p)
        a, z = lay.seg_ptr[lo_seg[b]], lay.seg_ptr[lo_seg[b + 1]]
        blocks.append(((lay.users[a:z] - u_start[rb]).astype(np.int32),
                       (lay.items[a:z] - i_start[cb]).astype(np.int32), lay.ratings[a:z],
                       lay.seg_ptr[lo_seg[b]:lo_seg[b + 1] + 1] - a))
    hyper = T.Hyper(lr=0.005, reg_f=0.02, reg_b=0.02, mu=float(r.mean()), use_bias=True,
                    nonneg=False)
    plan = T.epoch_plan(lay, rng)

    def blocks_run(nt: int) -> None:
        for st in plan:
            a: list[list] = [[] for _ in range(7)]
            for j in range(st.block_bounds.size - 1):
                lo, hi = st.block_bounds[j], st.block_bounds[j + 1]
                g = st.segments[lo:hi]
                b = int(lay.seg_block[g[0]])
                rb, cb = divmod(b, p)
                for lst, v in zip(a, (blocks[b], P[u_start[rb]:u_start[rb + 1]],
                                      np.zeros(u_start[rb + 1] - u_start[rb], np.float32),
                                      Q[i_start[cb]:i_start[cb + 1]],
                                      np.zeros(i_start[cb + 1] - i_start[cb], np.float32),
                                      g - lo_seg[b], st.seeds[lo:hi]), strict=True):
                    lst.append(v)
            _dask._blocks_run(*a, st.block_sizes, hyper, nt)

    def local(nt: int) -> None:
        prm = T.Params(P.copy(), Q.copy(), np.zeros(nu, np.float32), np.zeros(ni, np.float32))
        er = T.EpochRunner(lay, prm, hyper, nt)
        try:
            er.run_epoch(np.random.default_rng(1))
        finally:
            er.close()

    got: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for _ in range(repeats):
        for what, fn in (("local EpochRunner (control)", local),
                         ("worker task body (_blocks_run)", blocks_run)):
            for nt in (1, 2):
                t0, c0 = time.perf_counter(), time.process_time()
                fn(nt)
                got.setdefault((what, nt), []).append((time.perf_counter() - t0,
                                                       time.process_time() - c0))
    rows = []
    for (what, nt), v in got.items():
        wall, cpu = float(np.median([x[0] for x in v])), float(np.median([x[1] for x in v]))
        one = float(np.median([x[0] for x in got[(what, 1)]]))
        rows.append([what, str(nt), f"{wall:.3f}", f"{cpu:.3f}", f"{one / wall:.2f}"])
    return rows


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
    progress("  the task body without Dask")
    rows2 = task_body(u[n_test:], i[n_test:], r[n_test:], args.k, args.blocks, args.repeats)
    rep.add(f"\nThe worker task's body without Dask: one epoch of `_blocks_run` over the "
            f"{args.blocks} strata (all {args.blocks} blocks of a stratum in one call, as a "
            f"1-worker cluster runs them), {args.repeats} alternated repeats, medians:\n")
    rep.add(md_table(["what", "threads", "wall s", "CPU s", "speed-up vs 1 thread"], rows2))
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
    ap.add_sized("--repeats", type=int, full=3, quick=1,
                 help="alternated repeats of the task-body measurement")
    ap.add_sized("--partitions", type=int, full=16, quick=4,
                 help="partitions of the Dask DataFrame")
    ap.add_cache()
    ap.add_out()
    return ap


if __name__ == "__main__":
    run_alone(parser(), run)
