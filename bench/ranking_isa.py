"""Section 13: the ranking kernel's SIMD variants, side by side in one process.

    python bench/ranking_isa.py [--data DIR] [--repeats 7] [--k 32 64 128] [--out FILE]

Each ranking loss at its defaults (10 epochs on MovieLens 100K's u1.base: 1,682 items,
whose rows stay in L2; 2 epochs on a synthetic 2 M interactions x 20,000 items, whose
rows do not), for each k in float32 and k = 64 in float64, one thread, with the AVX2+FMA
and the AVX-512 variant forced (``_sgd.isa_select``) and the automatic choice, the three
alternated ``--repeats`` times in one process; the least process CPU seconds of each is
kept, so that the ratio is measured side by side. It is the measurement behind the rule
of ``mf_rank_isa_f32`` (``src/mfsgd/_kernel.c``). Needs a CPU with both variants.
"""

from __future__ import annotations

import time

import numpy as np
from _common import Parser, md_table, progress, run_alone
from ranking_proto import load_fold

from mfsgd import MatrixFactorization, _sgd
from mfsgd._kernels import available
from mfsgd.datasets import make_ratings

VARIANTS = {"avx2": _sgd.ISA_AVX2, "avx512": _sgd.ISA_AVX512, "auto": _sgd.ISA_AUTO}


def cpu_seconds(X, loss: str, k: int, dtype, epochs: int) -> float:
    m = MatrixFactorization(loss=loss, n_factors=k, dtype=dtype, n_epochs=epochs,
                            random_state=0, n_threads=1)
    t0 = time.process_time()
    m.fit(X)
    return time.process_time() - t0


def run(rep, args) -> None:
    if not {_sgd.ISA_AVX2, _sgd.ISA_AVX512} <= set(available()):
        rep.add("This CPU lacks AVX2 or AVX-512: nothing to compare.")
        return
    tr = load_fold(args.data, 1)[0]
    su, si, _ = make_ratings(40_000, 20_000, 2_000_000, random_state=0, as_frame=False)
    sets = [("MovieLens 100K u1 (10 epochs)", (tr[0], tr[1]), 10),
            ("synthetic 2 M x 20,000 items (2 epochs)", (su, si), 2)]
    shapes = [(k, np.float32) for k in args.k] + [(64, np.float64)]
    rows = []
    before = _sgd.isa_current()
    try:
        for name, X, epochs in sets:
            for loss in ("warp", "bpr", "softmax"):
                for k, dt in shapes:
                    times = {v: [] for v in VARIANTS}
                    for _ in range(args.repeats):
                        for v, isa in VARIANTS.items():
                            _sgd.isa_select(isa)
                            times[v].append(cpu_seconds(X, loss, k, dt, epochs))
                    best = {v: min(t) for v, t in times.items()}
                    progress(f"{name}, {loss}, k={k} {np.dtype(dt).name}: {best}")
                    rows.append([name, loss, k, np.dtype(dt).name,
                                 f"{best['avx2']:.3f}", f"{best['avx512']:.3f}",
                                 f"{best['auto']:.3f}",
                                 f"{best['avx512'] / best['avx2']:.2f}"])
    finally:
        _sgd.isa_select(before)
    rep.add(f"Least process CPU seconds of {args.repeats} fits per variant, alternated.\n")
    rep.add(md_table(["data", "loss", "k", "dtype", "avx2+fma s", "avx512 s", "auto s",
                      "avx512 / avx2"], rows))


def parser() -> Parser:
    ap = Parser(__doc__)
    ap.add_data()
    ap.add_argument("--repeats", type=int, default=7, metavar="N",
                    help="fits per variant and setting; the least CPU time is kept "
                         "(default %(default)s)")
    ap.add_argument("--k", type=int, nargs="+", default=[32, 64, 128],
                    help="float32 factor counts (default %(default)s)")
    ap.add_out()
    return ap


if __name__ == "__main__":
    run_alone(parser(), run)
