"""Memory of worker processes serving one saved model: ``load(path)`` against
``load(path, mmap=True)``.

    python bench/serving_memory.py [--ratings 5000000] [--users 1000000] [--items 100000]
                                   [--k 64] [--workers 4] [--out FILE.md]

A model is fitted (one epoch of the squared loss on a ``make_ratings`` set: its quality
does not matter here) and saved to a temporary directory. Then, for each way of loading,
``--workers`` fresh processes (spawned, as a pre-fork server's workers loading after the
fork, or separate services) each load the file, answer 200 ``recommend`` calls and report,
while all of them are alive, their resident memory (RSS), what of it is theirs alone
(private: USS) and their proportional share (PSS: each shared page counted once across
the processes), from ``/proc/self/smaps_rollup`` (Linux). The sum of PSS is what the
workers take together. Load seconds are the median over the workers' wall times, so the
first ones also read the file from disk or the page cache.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time

import numpy as np
from _common import Parser, Report, md_table, progress, run_alone

_FIELDS = ("Rss", "Pss", "Private_Clean", "Private_Dirty")


def smaps_kib() -> dict[str, int]:
    """The process's totals of ``_FIELDS`` in KiB (Linux's smaps_rollup)."""
    out = dict.fromkeys(_FIELDS, 0)
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in out:
                out[name] = int(rest.split()[0])
    return out


def worker(path: str, mmap: bool, calls: int, ready: mp.Barrier, done: mp.Barrier,
           results: mp.Queue) -> None:
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    import mfsgd

    t0 = time.perf_counter()
    m = mfsgd.load(path, mmap=mmap)
    load_s = time.perf_counter() - t0
    users = m.user_ids_[np.random.default_rng(os.getpid()).integers(0, m.user_ids_.size, calls)]
    for u in users:
        m.recommend(u, n=10)
    ready.wait()  # every worker loaded and served: the page cache is shared now
    mem = smaps_kib()
    results.put((load_s, mem))
    done.wait()  # stay alive until all have measured, so PSS splits the shared pages


def measure(path: str, mmap: bool, workers: int, calls: int) -> list:
    ctx = mp.get_context("spawn")
    ready, done, results = ctx.Barrier(workers), ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(path, mmap, calls, ready, done, results))
             for _ in range(workers)]
    for p in procs:
        p.start()
    got = [results.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"a worker exited with {p.exitcode}")
    return got


def run(rep: Report, args) -> None:
    import mfsgd
    from mfsgd.datasets import make_ratings

    progress(f"fitting: {args.ratings:,} ratings, {args.users:,} x {args.items:,}, k={args.k}")
    data = make_ratings(args.users, args.items, args.ratings, random_state=0)
    m = mfsgd.MatrixFactorization(n_factors=args.k, n_epochs=1, random_state=0).fit(data)
    del data
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.mfsgd")
        m.save(path)
        size = os.path.getsize(path) / 2**20
        del m
        for mmap in (False, True):
            progress(f"  {args.workers} workers, mmap={mmap}")
            got = measure(path, mmap, args.workers, args.calls)
            mem = {f: np.array([g[1][f] for g in got]) / 1024 for f in _FIELDS}
            uss = mem["Private_Clean"] + mem["Private_Dirty"]
            rows.append([f"load(path, mmap={mmap})", f"{np.median([g[0] for g in got]):.2f}",
                         f"{np.median(mem['Rss']):.0f}", f"{np.median(uss):.0f}",
                         f"{np.median(mem['Pss']):.0f}", f"{mem['Pss'].sum():.0f}"])
    rep.add(f"Model file: {size:.0f} MiB ({args.users:,} users x {args.items:,} items, "
            f"k = {args.k}, float32). {args.workers} spawned workers, each loading it and "
            f"answering {args.calls} `recommend` calls; MiB per worker (median) and the "
            f"workers' PSS summed.\n")
    rep.add(md_table(["load", "load s", "RSS", "private (USS)", "PSS", f"PSS, {args.workers} "
                      "workers"], rows))


def main() -> None:
    ap = Parser(__doc__)
    ap.add_argument("--ratings", type=int, default=5_000_000)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_out()
    run_alone(ap, run)


if __name__ == "__main__":
    main()
