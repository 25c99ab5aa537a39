"""Prototype: top-10 quality and speed of the ranking kernel (issue 14) on MovieLens 100K.

    python bench/ranking_proto.py                       # the defaults of every loss, 5 folds
    python bench/ranking_proto.py --loss warp --lr 0.05 --epochs 30 --folds 1 2
    python bench/ranking_proto.py --grid                # the tuning table
    python bench/ranking_proto.py --anchors /work/venv-anchors/bin/python   # + implicit, LightFM
    python bench/ranking_proto.py --throughput          # interactions/s, one thread

Protocol: train on uN.base, every training rating an interaction (weight 1). For each
test user with at least one test rating >= 4 on an item seen in training, rank every
training item the user has not rated in training; HR@10 (any liked test item in the top
10), NDCG@10 (binary gains, ideal DCG over min(10, liked) items) and Recall@10 (hits /
liked; the issue's table divides by min(10, liked), ``recall_k``) against those liked
items; mean over users, then over folds. One thread. Fit time is the process CPU time of
the training alone (layout, initialisation, epochs), median over folds: the machine is
shared, and CPU time is what wall time would be alone.

The epoch loop here is a minimal stand-in for the driver (mfsgd._training): one thread,
so the grid is 1 x 1 (one block: negatives come from all items) and each segment is
shuffled in the kernel with a seed from the run's generator. Anchors run in another
interpreter (a venv with implicit and lightfm) through --anchor, with the same code.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time

# One thread everywhere, set before NumPy loads its BLAS: idle BLAS threads spinning after
# the evaluation's matrix product would otherwise be charged to the next fit's CPU time.
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "..", "shared", "data", "ml-100k")

# Defaults of each loss, from the tuning runs in bench/RANKING.md (5 folds, k=64). The
# rate falls as lr / (1 + decay * epoch).
DEFAULTS = {
    "bpr": dict(lr=0.1, decay=0.3, reg=0.01, n_neg=2, beta=0.0, epochs=10, init_std=0.1,
                seen=True),
    "warp": dict(lr=0.005, decay=0.3, reg=0.01, margin=1.0, max_sampled=10, beta=0.0,
                 epochs=15, init_std=0.01, seen=True),
    "softmax": dict(lr=0.1, decay=0.3, reg=0.01, n_neg=10, beta=0.0, epochs=15, init_std=0.01,
                    seen=True, logq=False),
}


def load_fold(data: str, fold: int):
    def read(name):
        a = np.loadtxt(os.path.join(data, name), dtype=np.int64, usecols=(0, 1, 2))
        return a[:, 0] - 1, a[:, 1] - 1, a[:, 2]

    tr, te = read(f"u{fold}.base"), read(f"u{fold}.test")
    n_users = int(max(tr[0].max(), te[0].max())) + 1
    n_items = int(max(tr[1].max(), te[1].max())) + 1
    return tr, te, n_users, n_items


def evaluate(scores: np.ndarray, tr, te, n_items: int, k: int = 10) -> dict:
    """HR, NDCG and Recall at k; scores: (n_users, n_items), higher is better."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    in_train = np.zeros(n_items, bool)
    in_train[tr[1]] = True
    scores[:, ~in_train] = -np.inf
    scores[tr[0], tr[1]] = -np.inf
    liked = te[2] >= 4
    lu, li = te[0][liked], te[1][liked]
    ok = in_train[li] & np.isfinite(scores[lu, li])
    lu, li = lu[ok], li[ok]
    users = np.unique(lu)
    top = np.argpartition(-scores[users], k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores[users], top, 1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, 1)
    rel = np.zeros((users.size, n_items), bool)
    rel[np.searchsorted(users, lu), li] = True
    hit = np.take_along_axis(rel, top, 1)
    n_rel = rel.sum(1)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hit * disc).sum(1)
    idcg = np.cumsum(disc)[np.minimum(n_rel, k) - 1]
    # recall_k: hits / min(k, liked), the table's "Recall@10" (0.207 for popularity)
    return {"hr": float(hit.any(1).mean()), "ndcg": float((dcg / idcg).mean()),
            "recall": float((hit.sum(1) / n_rel).mean()),
            "recall_k": float((hit.sum(1) / np.minimum(n_rel, k)).mean())}


def popularity_scores(tr, n_users, n_items):
    pop = np.bincount(tr[1], minlength=n_items).astype(np.float64)
    return np.broadcast_to(pop, (n_users, n_items))


# ---- mfsgd ranking kernel -------------------------------------------------------------------

# Seen items are rejected through a bitmap (one load per check) up to this size, else
# through the CSR record (a binary search per check).
SEEN_BITMAP_BYTES = 64 << 20


def fit_rank(tr, n_users, n_items, loss, *, k=64, lr=0.05, reg=0.01, reg_b=None, n_neg=1,
             max_sampled=10, margin=1.0, beta=0.0, epochs=30, init_std=0.1, seen=True,
             logq=False, decay=0.0, seed=0, dtype=np.float32):
    """Train with the ranking kernel; returns (P, Q, bi, seconds)."""
    from mfsgd import _sgd
    from mfsgd._training import Layout, aligned_concat

    t0 = time.process_time()
    rng = np.random.default_rng(seed)
    u, i = tr[0].astype(np.int32), tr[1].astype(np.int32)
    P = aligned_concat([rng.normal(0, init_std, (n_users, k)).astype(dtype)])
    Q = aligned_concat([rng.normal(0, init_std, (n_items, k)).astype(dtype)])
    bi = np.zeros(n_items, dtype)
    lay = Layout.build([u.copy(), i.copy(), np.ones(len(u), dtype)], n_users, n_items, 1, 1)
    nseg = lay.n_segments
    lo = np.zeros(nseg, np.int32)
    hi = np.full(nseg, n_items, np.int32)
    cdf = None
    if beta:
        w = np.bincount(i, minlength=n_items).astype(np.float64) ** beta
        cdf = np.concatenate([[0.0], np.cumsum(w)])
    sp = si = bits = None
    if seen == "csr" or (seen and n_users * n_items > 8 * SEEN_BITMAP_BYTES):
        key = np.unique(u.astype(np.int64) * n_items + i)
        si = (key % n_items).astype(np.int32)
        sp = np.concatenate([[0], np.cumsum(np.bincount(key // n_items, minlength=n_users))])
    elif seen:
        bits = _sgd.seen_bitmap(u, i, n_users, n_items)
    empty = np.empty(0, dtype)
    segs = np.arange(nseg, dtype=np.int64)
    lid = _sgd.LOSSES[loss]
    for e in range(epochs):
        seeds = rng.integers(1, 2**63, nseg, dtype=np.int64).view(np.uint64)
        dseeds = rng.integers(1, 2**63, nseg, dtype=np.int64).view(np.uint64)
        _sgd.rank_segments(lay.users, lay.items, empty, lay.seg_ptr, lo, hi, segs, seeds,
                           dseeds, cdf, sp, si, P, Q, bi, lid, lr / (1.0 + decay * e), reg,
                           reg if reg_b is None else reg_b, True, n_neg, max_sampled, margin,
                           logq, None, bits)
    return P, Q, bi, time.process_time() - t0


def run_mfsgd(data, folds, loss, cfg):
    res, secs = [], []
    for f in folds:
        tr, te, nu, ni = load_fold(data, f)
        P, Q, bi, s = fit_rank(tr, nu, ni, loss, **cfg)
        res.append(evaluate(P.astype(np.float64) @ Q.T.astype(np.float64) + bi, tr, te, ni))
        secs.append(s)
    return res, secs


# ---- anchors (run in the anchors' interpreter) ----------------------------------------------

def interactions(u, i, n_users, n_items):
    """The user x item CSR matrix of ones that implicit and LightFM train on."""
    import scipy.sparse as sp

    return sp.csr_matrix((np.ones(len(u), np.float32), (u, i)), shape=(n_users, n_items))


def make_anchor(name, k=64, threads=1, **params):
    """An unfitted anchor model and its fit(X) call. ``params`` go to the constructor
    (implicit: e.g. iterations, regularization, alpha; LightFM: e.g. learning_rate), except
    LightFM's ``epochs`` (default 30), which goes to fit."""
    if name.startswith("lightfm-"):
        from lightfm import LightFM

        epochs = params.pop("epochs", 30)
        m = LightFM(no_components=k, loss=name.split("-")[1], random_state=0, **params)
        return m, lambda X: m.fit(X.tocoo(), epochs=epochs, num_threads=threads)
    import implicit
    from threadpoolctl import threadpool_limits

    if name == "implicit-als":
        cls = implicit.cpu.als.AlternatingLeastSquares  # codespell:ignore als
    else:
        cls = implicit.cpu.bpr.BayesianPersonalizedRanking
    m = cls(factors=k, num_threads=threads, random_state=0, **params)

    def fit(X):
        with threadpool_limits(1):  # implicit's ALS would otherwise use every BLAS thread
            m.fit(X, show_progress=False)
    return m, fit


def anchor_scores(m):
    """(n_users, n_items) scores of a fitted anchor (per-user constants left out)."""
    if hasattr(m, "item_embeddings"):  # LightFM
        return m.user_embeddings @ m.item_embeddings.T + m.item_biases[None, :]
    return m.user_factors @ m.item_factors.T


def fit_anchor(name, tr, n_users, n_items, k=64, **params):
    """Fit an anchor on one thread; returns (scores, process CPU seconds of the fit)."""
    X = interactions(tr[0], tr[1], n_users, n_items)
    m, fit = make_anchor(name, k, **params)
    t0 = time.process_time()
    fit(X)
    return anchor_scores(m), time.process_time() - t0


# The settings (implicit BPR: its default 100 iterations).
ANCHORS = {"implicit-als": dict(iterations=15, regularization=0.05),
           "implicit-bpr": {}, "lightfm-warp": dict(epochs=30), "lightfm-bpr": dict(epochs=30)}


def run_anchor(data, folds, name, k=64):
    res, secs = [], []
    for f in folds:
        tr, te, nu, ni = load_fold(data, f)
        S, s = fit_anchor(name, tr, nu, ni, k, **ANCHORS[name])
        res.append(evaluate(S, tr, te, ni))
        secs.append(s)
    return res, secs


def implicit_bpr_throughput(data, k=64, epochs=100):
    """Positives per second of implicit's BPR (one thread, its default 100 iterations)."""
    import implicit

    tr, te, nu, ni = load_fold(data, 1)
    X = interactions(tr[0], tr[1], nu, ni)
    m = implicit.cpu.bpr.BayesianPersonalizedRanking(factors=k, num_threads=1, iterations=epochs,
                                                     random_state=0)
    t0 = time.process_time()
    m.fit(X, show_progress=False)
    return len(tr[0]) * epochs / (time.process_time() - t0)


# ---- reporting -------------------------------------------------------------------------------

def summarise(res, secs):
    return {m: float(np.mean([r[m] for r in res])) for m in ("ndcg", "hr", "recall")} | \
        {"sec": float(np.median(secs))}


def row(name, s, pop):
    return (f"| {name} | {s['ndcg']:.3f} | {s['hr']:.3f} | {s['recall']:.3f} | "
            f"{s['ndcg'] / pop['ndcg']:.2f} | {s['sec']:.2f} |")


HEADER = ("| model | NDCG@10 | HR@10 | Recall@10 | NDCG / popularity | fit CPU s/fold |\n"
          "|---|---|---|---|---|---|")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--folds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--loss", nargs="+", default=["bpr", "warp", "softmax"])
    ap.add_argument("--k", type=int, default=64)
    for name, typ in (("lr", float), ("reg", float), ("n-neg", int), ("beta", float),
                      ("margin", float), ("max-sampled", int), ("epochs", int),
                      ("init-std", float), ("decay", float)):
        ap.add_argument(f"--{name}", type=typ)
    ap.add_argument("--seen", type=int, choices=[0, 1])
    ap.add_argument("--logq", type=int, choices=[0, 1])
    ap.add_argument("--grid", action="store_true",
                    help="run the tuning table (options not given take fit_rank's defaults)")
    ap.add_argument("--anchors", metavar="PYTHON", help="interpreter with implicit + lightfm")
    ap.add_argument("--anchor", help=argparse.SUPPRESS)
    ap.add_argument("--throughput", action="store_true")
    a = ap.parse_args(argv)
    data = os.path.abspath(a.data)

    if a.anchor:  # child mode, in the anchors' interpreter
        if a.anchor == "bpr-throughput":
            print(json.dumps({"per_s": implicit_bpr_throughput(data, a.k)}))
            return
        res, secs = run_anchor(data, a.folds, a.anchor, a.k)
        print(json.dumps(summarise(res, secs)))
        return

    from mfsgd import _sgd

    print(f"# ranking prototype: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cpus, numpy {np.__version__}, kernel "
          f"{_sgd.isa_name(_sgd.isa_for(a.k * 4))}, folds {a.folds}, k={a.k}\n")

    if a.throughput:
        tr, te, nu, ni = load_fold(data, 1)
        lines = ["| loss | options | M positives/s, median of 5 | best of 5 |",
                 "|---|---|---|---|"]
        for loss, cfg in (("bpr", dict(n_neg=1, seen=False)),
                          ("bpr", dict(n_neg=1, seen="csr")),
                          ("bpr", dict(n_neg=1, seen=True)),
                          ("bpr", dict(n_neg=1, seen=True, beta=0.75)),
                          ("warp", dict(seen=True)), ("softmax", dict(n_neg=20, seen=True))):
            t = []
            for _ in range(5):
                *_, s = fit_rank(tr, nu, ni, loss, k=a.k, epochs=20, **cfg)
                *_, s0 = fit_rank(tr, nu, ni, loss, k=a.k, epochs=0, **cfg)
                t.append(len(tr[0]) * 20 / (s - s0))
            lines.append(f"| {loss} | {cfg} | {np.median(t) / 1e6:.2f} | {max(t) / 1e6:.2f} |")
        if a.anchors:
            t = []
            for _ in range(3):
                out = subprocess.run([a.anchors, __file__, "--data", data, "--anchor",
                                      "bpr-throughput", "--k", str(a.k)], capture_output=True,
                                     text=True, check=True)
                t.append(json.loads(out.stdout.strip().splitlines()[-1])["per_s"])
            lines.append(f"| implicit BPR | 100 iterations, verify_negative_samples | "
                         f"{np.median(t) / 1e6:.2f} | {max(t) / 1e6:.2f} |")
        print("\n".join(lines))
        return

    pop_runs = []
    for f in a.folds:
        tr, te, nu, ni = load_fold(data, f)
        t0 = time.perf_counter()
        S = popularity_scores(tr, nu, ni)
        sec = time.perf_counter() - t0
        pop_runs.append((evaluate(S, tr, te, ni), sec))
    pop = summarise([r for r, _ in pop_runs], [s for _, s in pop_runs])
    lines = [HEADER, row("most popular", pop, pop)]
    print(lines[0])
    print(lines[1], flush=True)

    if a.anchors:
        for name in ("implicit-als", "implicit-bpr", "lightfm-warp"):
            out = subprocess.run([a.anchors, __file__, "--data", data, "--anchor", name,
                                  "--k", str(a.k), "--folds", *map(str, a.folds)],
                                 capture_output=True, text=True,
                                 env={**os.environ, "OMP_NUM_THREADS": "1",
                                      "OPENBLAS_NUM_THREADS": "1"})
            if out.returncode:
                print(f"| {name} | failed: {out.stderr.strip().splitlines()[-1]} |")
                continue
            print(row(name, json.loads(out.stdout.strip().splitlines()[-1]), pop), flush=True)

    overrides = {key: getattr(a, key) for key in ("lr", "reg", "n_neg", "beta", "margin",
                                                 "max_sampled", "epochs", "init_std", "decay",
                                                 "seen", "logq")
                 if getattr(a, key) is not None}
    configs = []
    if a.grid:
        configs = GRID
    else:
        for loss in a.loss:
            cfg = dict(DEFAULTS[loss])
            cfg.update(overrides)
            cfg.pop("max_sampled", None) if loss != "warp" else None
            configs.append((loss, cfg))
    for loss, cfg in configs:
        cfg = {"k": a.k, **cfg}
        s = summarise(*run_mfsgd(data, a.folds, loss, cfg))
        desc = ", ".join(f"{key}={v}" for key, v in cfg.items() if key != "k")
        print(row(f"mfsgd {loss} ({desc})", s, pop), flush=True)


def _grid() -> list:
    """Every configuration of the tuning runs (bench/RANKING.md), in the order run."""
    g = []
    for ep in (10, 20, 30):
        for lr in (0.02, 0.05, 0.1):
            for reg in (0.003, 0.01, 0.03):
                g.append(("bpr", dict(lr=lr, reg=reg, epochs=ep)))
    g += [
        ("bpr", dict(lr=0.05, reg=0.01, epochs=15, init_std=0.01)),
        ("bpr", dict(lr=0.1, reg=0.01, epochs=15, decay=0.3)),
        ("bpr", dict(lr=0.05, reg=0.01, epochs=15, n_neg=2)),
        ("bpr", dict(lr=0.05, reg=0.01, epochs=15, beta=0.5)),
        ("bpr", dict(lr=0.05, reg=0.01, epochs=15, beta=1.0)),
        ("bpr", dict(lr=0.05, reg=0.01, epochs=15, seen=False)),
        ("softmax", dict(lr=0.05, reg=0.01, epochs=10, n_neg=10)),
        ("softmax", dict(lr=0.1, reg=0.01, epochs=10, n_neg=5)),
        ("warp", dict(lr=0.003, reg=0.01, epochs=15)),
        ("warp", dict(lr=0.01, reg=0.003, epochs=15, decay=0.3)),
    ]
    for ep, lr, dec in ((10, 0.1, 0.3), (15, 0.1, 0.1), (15, 0.2, 0.3), (15, 0.1, 1.0),
                        (20, 0.1, 0.3), (15, 0.15, 0.5)):
        g.append(("bpr", dict(lr=lr, reg=0.01, epochs=ep, decay=dec)))
    g += [
        ("bpr", dict(lr=0.1, reg=0.005, epochs=15, decay=0.3)),
        ("bpr", dict(lr=0.1, reg=0.02, epochs=15, decay=0.3)),
        ("bpr", dict(lr=0.1, reg=0.01, epochs=10, decay=0.3, n_neg=2)),
        ("bpr", dict(lr=0.1, reg=0.01, epochs=15, decay=0.3, init_std=0.05)),
        ("bpr", dict(lr=0.1, reg=0.01, epochs=8, decay=0.3, n_neg=3)),
        ("bpr", dict(lr=0.1, reg=0.01, epochs=12, decay=0.3, n_neg=2)),
        ("bpr", dict(lr=0.15, reg=0.01, epochs=10, decay=0.5, n_neg=2)),
        ("warp", dict(lr=0.002, reg=0.01, epochs=30)),
        ("warp", dict(lr=0.005, reg=0.01, epochs=30, decay=0.3)),
        ("warp", dict(lr=0.005, reg=0.01, epochs=20, decay=0.3, margin=0.5)),
        ("softmax", dict(lr=0.1, reg=0.01, epochs=15, n_neg=10, decay=0.3)),
        ("softmax", dict(lr=0.2, reg=0.01, epochs=10, n_neg=20, decay=0.3)),
        ("warp", dict(lr=0.005, reg=0.01, epochs=30, decay=0.3, max_sampled=50)),
        ("warp", dict(lr=0.005, reg=0.003, epochs=30, decay=0.3)),
        ("warp", dict(lr=0.005, reg=0.03, epochs=30, decay=0.3)),
        ("warp", dict(lr=0.02, reg=0.01, epochs=30, decay=1.0)),
        ("warp", dict(lr=0.005, reg=0.01, epochs=30, decay=0.3, init_std=0.01)),
        ("warp", dict(lr=0.01, reg=0.01, epochs=30, decay=0.3, margin=0.3)),
        ("softmax", dict(lr=0.05, reg=0.01, epochs=20, n_neg=20, decay=0.1)),
        ("softmax", dict(lr=0.1, reg=0.003, epochs=15, n_neg=10, decay=0.3)),
        ("softmax", dict(lr=0.1, reg=0.01, epochs=15, n_neg=10, decay=0.3, beta=0.5, logq=True)),
        ("warp", dict(lr=0.005, reg=0.01, epochs=20, decay=0.3, init_std=0.01)),
        ("warp", dict(lr=0.01, reg=0.01, epochs=20, decay=0.3, init_std=0.01)),
        ("warp", dict(lr=0.01, reg=0.01, epochs=30, decay=0.3, init_std=0.01)),
        ("warp", dict(lr=0.005, reg=0.01, epochs=30, decay=0.3, init_std=0.001)),
        ("warp", dict(lr=0.005, reg=0.03, epochs=30, decay=0.3, init_std=0.01)),
        ("warp", dict(lr=0.005, reg=0.01, epochs=30, decay=0.3, init_std=0.01, max_sampled=30)),
        ("bpr", dict(lr=0.1, reg=0.01, epochs=10, decay=0.3, n_neg=2, init_std=0.01)),
        ("softmax", dict(lr=0.1, reg=0.01, epochs=15, n_neg=10, decay=0.3, init_std=0.01)),
        ("warp", dict(lr=0.005, reg=0.01, epochs=10, decay=0.3, init_std=0.01)),
        ("warp", dict(lr=0.005, reg=0.01, epochs=15, decay=0.3, init_std=0.01)),
        ("warp", dict(lr=0.003, reg=0.01, epochs=20, decay=0.3, init_std=0.01)),
        ("warp", dict(lr=0.005, reg=0.01, epochs=20, decay=0.3, init_std=0.001)),
        ("warp", dict(lr=0.007, reg=0.01, epochs=15, decay=0.3, init_std=0.01)),
        ("warp", dict(lr=0.005, reg=0.01, epochs=15, decay=0.3, init_std=0.01, max_sampled=5)),
    ]
    return g


GRID = _grid()

if __name__ == "__main__":
    main()
