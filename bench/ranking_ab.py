"""A/B timing of builds of the ranking kernel: whole fits, builds alternated in fresh processes.

    python bench/ranking_ab.py old=/path/a/src new=/path/b/src [--repeats 7] [--out FILE]

Each TAG=DIR is a package root holding a built ``mfsgd`` (``DIR/mfsgd/_sgd*.so``), e.g. the
``src`` of a clone built with ``python setup.py build_ext --inplace``. For each data set
(a synthetic 5 M interactions x 50,000 items, whose item rows at k = 64 are 12.8 MB, beyond
L2; MovieLens 100K's u1.base, 1,682 items, whose rows stay in L2), one process per build
fits each ranking setting below for 3 epochs at one thread and reports the least process
CPU seconds of epochs 2 and 3 (the per-epoch callback's gaps); the builds' processes
alternate ``--repeats`` times. A fresh process per fit round: the timings vary by process
(memory placement), so the table gives the least and the median over the processes.
``ab_kernel.py`` does the same for the squared loss's block kernel, in one process.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import numpy as np
from _common import Parser, md_table, progress, run_alone
from ranking_proto import load_fold

SETTINGS = [("bpr", {}), ("bpr", {"n_negatives": 1}), ("bpr", {"n_factors": 128}),
            ("warp", {}), ("warp", {"adagrad": True}), ("softmax", {})]

CHILD = r"""
import json, sys, time
import numpy as np, mfsgd
d = np.load(sys.argv[1])
out = []
for loss, kw in json.loads(sys.argv[2]):
    gaps, last = [], [0.0]
    def cb(*a, **k):
        now = time.process_time()
        gaps.append(now - last[0])
        last[0] = now
    m = mfsgd.MatrixFactorization(loss=loss, n_epochs=3, n_threads=1, random_state=0,
                                  **{"n_factors": 64, **kw})
    last[0] = time.process_time()
    m.fit((d["u"], d["i"]), callback=cb)
    out.append(min(gaps[1:]))
print(json.dumps(out))
"""


def label(loss: str, kw: dict) -> str:
    return loss + "".join(f", {k}={v}" for k, v in kw.items())


def run(rep, args) -> None:
    builds = dict(b.split("=", 1) for b in args.builds)
    os.makedirs(args.cache, exist_ok=True)
    syn = os.path.join(args.cache, "ranking_ab_5m_50k.npz")
    if not os.path.exists(syn):
        from mfsgd.datasets import make_ratings

        u, i, _ = make_ratings(200_000, 50_000, 5_000_000, random_state=0, as_frame=False)
        np.savez(syn, u=u, i=i)
    ml = os.path.join(args.cache, "ranking_ab_ml100k_u1.npz")
    tr = load_fold(args.data, 1)[0]
    np.savez(ml, u=tr[0], i=tr[1])
    rows = []
    for name, path in (("synthetic 5 M x 50,000 items", syn), ("MovieLens 100K u1", ml)):
        times: dict[str, list[list[float]]] = {t: [] for t in builds}
        for r in range(args.repeats):
            for tag, src in builds.items():
                env = {**os.environ, "PYTHONPATH": src, "OPENBLAS_NUM_THREADS": "1"}
                p = subprocess.run([sys.executable, "-c", CHILD, path, json.dumps(SETTINGS)],
                                   env=env, capture_output=True, text=True, check=True)
                times[tag].append(json.loads(p.stdout.strip().splitlines()[-1]))
                progress(f"{name}, round {r + 1}, {tag}: {times[tag][-1]}")
        first = next(iter(builds))
        for s, (loss, kw) in enumerate(SETTINGS):
            cells = [name, label(loss, kw)]
            least = {t: min(x[s] for x in v) for t, v in times.items()}
            med = {t: statistics.median(x[s] for x in v) for t, v in times.items()}
            for t in builds:
                cells.append(f"{least[t]:.3f} / {med[t]:.3f}")
            for t in list(builds)[1:]:
                cells.append(f"{least[t] / least[first]:.2f} / {med[t] / med[first]:.2f}")
            rows.append(cells)
    tags = list(builds)
    rep.add(f"CPU seconds per epoch (least / median of {args.repeats} processes per build, "
            "alternated), one thread, k = 64 unless said.\n")
    rep.add(md_table(["data", "setting"] + [f"{t} s" for t in tags]
                     + [f"{t} / {tags[0]}" for t in tags[1:]], rows))


def parser() -> Parser:
    ap = Parser(__doc__)
    ap.add_argument("builds", nargs="+", metavar="TAG=DIR",
                    help="package roots with a built mfsgd, the first the reference")
    ap.add_data()
    ap.add_cache()
    ap.add_argument("--repeats", type=int, default=7, metavar="N",
                    help="processes per build and data set, alternated (default %(default)s)")
    ap.add_out()
    return ap


if __name__ == "__main__":
    run_alone(parser(), run)
