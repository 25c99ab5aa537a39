"""Peak resident memory of `fit` on synthetic data, measured in a fresh subprocess.

    python bench/memory.py [--ratings 20000000 100000000] [--k 64] [--threads 2]

Each size runs in its own process: generate (or load from the cache) the int32/int32/
float32 arrays, then fit 1 epoch. Prints the arrays' own size, the peak RSS before fit
(data loaded), and the peak RSS of the whole process, in GiB. Peak = VmHWM from
/proc/self/status (ru_maxrss elsewhere): on Linux a child's ru_maxrss starts from its
parent's high-water mark, which would inflate small runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {here!r})
from throughput import get_data
import mfsgd

def peak_kib():
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

n, users, items, k, threads, cache = {args}
u, i, r = get_data(users, items, n, cache)
before = peak_kib()
t = time.perf_counter()
m = mfsgd.MatrixFactorization(n_factors=k, n_epochs=1, n_threads=threads, random_state=0,
                              learning_rate=0.002).fit((u, i, r))
print(json.dumps({{"data_gib": (u.nbytes + i.nbytes + r.nbytes) / 2**30,
                  "rss_data_gib": before / 2**20,
                  "peak_gib": peak_kib() / 2**20,
                  "fit_s": time.perf_counter() - t,
                  "epoch_s": m.history_[0]["seconds"]}}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ratings", type=int, nargs="+", default=[20_000_000])
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default=os.environ.get("MFSGD_BENCH_CACHE", "/tmp/mfsgd-bench"))
    args = ap.parse_args()
    print("| ratings | users x items | k | threads | input arrays GiB | RSS with data GiB |"
          " peak RSS GiB | fit s | epoch s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in args.ratings:
        users, items = n // 100, max(n // 1000, 1000)
        if n == 20_000_000:
            users, items = 200_000, 20_000
        code = CHILD.format(here=HERE, args=(n, users, items, args.k, args.threads, args.cache))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"| {n:,} | failed: {out.stderr.strip().splitlines()[-1]} |")
            continue
        res = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {n:,} | {users:,} x {items:,} | {args.k} | {args.threads} | "
              f"{res['data_gib']:.2f} | {res['rss_data_gib']:.2f} | {res['peak_gib']:.2f} | "
              f"{res['fit_s']:.1f} | {res['epoch_s']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
