"""The epoch driver: block layout, shuffling schedule, threaded kernel calls, history,
early stopping, divergence and interrupt handling. No Python work per rating.

Layout. The ratings are copied once per fit into a P x P grid of blocks (user block x
item block, users and items split into P ranges balanced by rating count), stored block
after block, and each block is cut into segments of at most ``SEGMENT`` ratings. The
kernel runs a list of segments; a segment is the unit of the in-kernel shuffle.

Schedule of one epoch (``shuffle=True``): the P strata are visited in a random order;
stratum s holds the blocks (r, c[(r + s) mod P]) for r = 0..P-1 with c a random column
permutation, so its blocks share no user and no item. Inside a block the segments come
in random order and each segment is shuffled in place by the kernel with its own seed.
All random numbers are drawn here from one ``numpy.random.Generator``, so the result
depends on the data, the seed and P only: blocks of one stratum touch disjoint rows,
and which thread runs which block cannot change a single bit.
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from . import _sgd

SEGMENT = 1 << 18  # ratings per segment: ~10 ms of kernel time, an L2-sized shuffle
CALL_RATINGS = 1 << 20  # ratings per kernel call: bounds Ctrl-C latency to ~50 ms at k=64
MAX_BLOCKS = 255  # block keys are uint16, sorted by numpy's O(n) radix sort


def default_n_blocks(n_users: int, n_items: int, n_ratings: int, n_factors: int,
                     itemsize: int, n_threads: int) -> int:
    """Blocks per side: enough that a block's rows fit in ~1 MiB of cache (the measured
    win of blocking, shared/PERF-NOTES.md), never so many that blocks get tiny, and at
    least 2 x threads so every thread has a disjoint block in each stratum."""
    model_bytes = (n_users + n_items) * n_factors * itemsize
    p_cache = math.ceil(model_bytes / (1 << 20)) if model_bytes > (4 << 20) else 1
    p_small = max(1, int(math.sqrt(n_ratings / 4096)))
    p = min(p_cache, p_small)
    if n_threads > 1:
        p = max(p, 2 * n_threads)
    return int(max(1, min(p, MAX_BLOCKS)))


def _balanced_split(indices: np.ndarray, n: int, p: int) -> np.ndarray:
    """Block of each of n ids: contiguous id ranges with about equal rating counts."""
    if p == 1:
        return np.zeros(n, dtype=np.int64)
    counts = np.bincount(indices, minlength=n).astype(np.float64)
    before = np.cumsum(counts) - counts  # ratings of ids before this one
    total = max(counts.sum(), 1.0)
    return np.minimum((before * p / total).astype(np.int64), p - 1)


@dataclass
class Layout:
    """Rating triples stored block by block (the kernel's own copy; it shuffles them)."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    n_blocks: int  # P: blocks per side
    seg_ptr: np.ndarray  # segment s spans seg_ptr[s]:seg_ptr[s+1]
    block_segs: np.ndarray  # block b owns segments block_segs[b]:block_segs[b+1]
    block_sizes: np.ndarray = field(repr=False)

    @classmethod
    def build(cls, users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int,
              n_items: int, p: int) -> Layout:
        if p == 1:
            # One copy, in the given order (kept exactly when shuffle=False).
            u, i, r = users.copy(), items.copy(), ratings.copy()
            sizes = np.array([len(r)], dtype=np.int64)
        else:
            ub = _balanced_split(users, n_users, p)
            ib = _balanced_split(items, n_items, p)
            key = (ub[users] * p + ib[items]).astype(np.uint16)
            order = np.argsort(key, kind="stable")  # radix sort for 16-bit keys
            sizes = np.bincount(key, minlength=p * p).astype(np.int64)
            del key
            u, i, r = users[order], items[order], ratings[order]
            del order
        nseg = np.maximum(1, -(-sizes // SEGMENT))
        block_segs = np.concatenate([[0], np.cumsum(nseg)]).astype(np.int64)
        seg_ptr = np.empty(block_segs[-1] + 1, dtype=np.int64)
        start = 0
        for b in range(p * p):  # P^2 <= 65025 iterations once per fit, not per rating
            n, m = int(sizes[b]), int(nseg[b])
            seg_ptr[block_segs[b]:block_segs[b] + m] = start + (np.arange(m) * n) // m
            start += n
        seg_ptr[-1] = start
        return cls(u, i, r, p, seg_ptr, block_segs, sizes)

    @property
    def n_segments(self) -> int:
        return len(self.seg_ptr) - 1


@dataclass
class Params:
    """Model parameters being trained (the wrapper's private copies)."""

    P: np.ndarray
    Q: np.ndarray
    bu: np.ndarray
    bi: np.ndarray

    def copy(self) -> Params:
        return Params(self.P.copy(), self.Q.copy(), self.bu.copy(), self.bi.copy())

    def copy_to(self, other: Params) -> None:
        for a, b in ((self.P, other.P), (self.Q, other.Q), (self.bu, other.bu),
                     (self.bi, other.bi)):
            np.copyto(b, a)

    def all_finite(self) -> bool:
        return all(bool(np.isfinite(a).all()) for a in (self.P, self.Q, self.bu, self.bi))


@dataclass
class Hyper:
    lr: float
    reg_f: float
    reg_b: float
    mu: float
    use_bias: bool
    nonneg: bool


class Stop(Exception):
    """Raised inside the driver when training must end early (not user-facing)."""


def epoch_plan(layout: Layout, rng: np.random.Generator | None) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Per stratum: the segment ids in visiting order grouped by block, and their seeds.

    Returns a list of (segments per block as a list of arrays, seeds) per stratum; with
    rng None the stored order is kept (no shuffle)."""
    p = layout.n_blocks
    if rng is None:
        strata, cols = np.arange(p), np.arange(p)
    else:
        strata, cols = rng.permutation(p), rng.permutation(p)
    plan = []
    rows = np.arange(p)
    for s in strata:
        blocks = rows * p + cols[(rows + s) % p]
        segs = []
        for b in blocks:
            lo, hi = layout.block_segs[b], layout.block_segs[b + 1]
            ids = np.arange(lo, hi, dtype=np.int64)
            if rng is not None and ids.size > 1:
                ids = rng.permutation(ids)
            segs.append(ids)
        seeds = None
        if rng is not None:
            n = sum(len(x) for x in segs)
            seeds = rng.integers(1, np.iinfo(np.int64).max, size=n, dtype=np.int64).view(np.uint64)
        plan.append((segs, seeds))
    return plan


def _assign(segs: list[np.ndarray], sizes: np.ndarray, n_threads: int) -> list[list[int]]:
    """Blocks of a stratum -> threads, largest first to the least loaded (LPT). Only
    speed depends on this: blocks of a stratum share no rows."""
    load = [0] * n_threads
    out: list[list[int]] = [[] for _ in range(n_threads)]
    for j in sorted(range(len(segs)), key=lambda j: -int(sizes[j])):
        t = min(range(n_threads), key=load.__getitem__)
        out[t].append(j)
        load[t] += int(sizes[j])
    return out


class EpochRunner:
    """Runs epochs of the kernel over a layout, on n_threads threads."""

    def __init__(self, layout: Layout, params: Params, hyper: Hyper, n_threads: int) -> None:
        self.layout = layout
        self.params = params
        self.hyper = hyper
        self.n_threads = n_threads
        self.sse = np.zeros(layout.n_segments, dtype=np.float64)
        self._stop = threading.Event()
        self._pool = cf.ThreadPoolExecutor(n_threads - 1, thread_name_prefix="mfsgd") \
            if n_threads > 1 else None
        seg_len = np.diff(layout.seg_ptr)
        self._seg_len = seg_len

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _run_list(self, seg_ids: np.ndarray, seeds: np.ndarray | None) -> None:
        """Run segments in order, in kernel calls of about CALL_RATINGS ratings, checking
        the stop flag (set on Ctrl-C or divergence) between calls."""
        L, p, h = self.layout, self.params, self.hyper
        if seg_ids.size == 0:
            return
        lens = self._seg_len[seg_ids]
        bounds = np.searchsorted(np.cumsum(lens), np.arange(CALL_RATINGS, lens.sum() + CALL_RATINGS,
                                                            CALL_RATINGS), side="left") + 1
        start = 0
        out = np.empty(seg_ids.size, dtype=np.float64)
        for stop in np.unique(np.minimum(bounds, seg_ids.size)):
            if self._stop.is_set():
                raise Stop
            ids = seg_ids[start:stop]
            _sgd.sgd_blocks(L.users, L.items, L.ratings, L.seg_ptr, ids,
                            None if seeds is None else seeds[start:stop],
                            p.P, p.Q, p.bu, p.bi, h.mu, h.lr, h.reg_f, h.reg_b,
                            h.use_bias, h.nonneg, out[start:stop])
            if not math.isfinite(float(out[start:stop].sum())):
                self.sse[ids] = out[start:stop]
                self._stop.set()
                raise Stop
            start = stop
        self.sse[seg_ids] = out

    def run_epoch(self, rng: np.random.Generator | None,
                  between_calls: Callable[[], None] | None = None) -> float:
        """One epoch; returns the SSE (summed in segment order: deterministic). Raises
        Stop when a worker saw a non-finite error, KeyboardInterrupt on Ctrl-C; in both
        cases every worker has finished before this returns."""
        self._stop.clear()
        plan = epoch_plan(self.layout, rng)
        for segs, seeds in plan:
            offs = np.concatenate([[0], np.cumsum([len(x) for x in segs])])
            if self._pool is None:
                self._run_list(np.concatenate(segs), seeds)
            else:
                sizes = np.array([int(self._seg_len[x].sum()) for x in segs])
                groups = _assign(segs, sizes, self.n_threads)
                lists = []
                for g in groups:
                    ids = [segs[j] for j in g]
                    sd = None if seeds is None else [seeds[offs[j]:offs[j + 1]] for j in g]
                    lists.append((np.concatenate(ids) if ids else np.empty(0, np.int64),
                                  None if sd is None else
                                  (np.concatenate(sd) if sd else np.empty(0, np.uint64))))
                futs = [self._pool.submit(self._run_list, *a) for a in lists[1:]]
                try:
                    self._run_list(*lists[0])
                    for f in futs:
                        f.result()
                except BaseException:
                    self._stop.set()
                    cf.wait(futs)  # never leave a worker writing into the arrays
                    raise
            if between_calls is not None:
                between_calls()
        return float(self.sse.sum())


def hold_out(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random train / validation split of positions."""
    n_val = max(1, int(round(n * fraction)))
    if n_val >= n:
        raise ValueError(
            f"validation_fraction={fraction} leaves no training ratings out of {n}; "
            "lower it or pass eval_set."
        )
    perm = rng.permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def predict_idx(params: Params, mu: float, u: np.ndarray, i: np.ndarray) -> np.ndarray:
    out = np.empty(len(u), dtype=np.float64)
    _sgd.predict_pairs(u, i, params.P, params.Q, params.bu, params.bi, mu, out)
    return out


def rmse_of(params: Params, mu: float, u: np.ndarray, i: np.ndarray, r: np.ndarray,
            lo: float | None = None, hi: float | None = None) -> float:
    pred = predict_idx(params, mu, u, i)
    if lo is not None:
        np.clip(pred, lo, hi, out=pred)
    return float(np.sqrt(np.mean((pred - r) ** 2))) if len(r) else float("nan")


@dataclass
class TrainResult:
    params: Params
    history: list[dict[str, Any]]
    epochs_done: int
    reason: str  # "completed", "early_stopping", "diverged", "interrupted"
    diverged_epoch: int | None = None


def train(layout: Layout, params: Params, hyper: Hyper, *, n_epochs: int, n_threads: int,
          rng: np.random.Generator, shuffle: bool, lr_schedule: Callable[[int], float],
          val: tuple[np.ndarray, np.ndarray, np.ndarray] | None, clip: tuple[float, float] | None,
          early_stopping: bool, n_iter_no_change: int, tol: float, epoch_offset: int = 0,
          on_epoch: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Train in place on ``params``; the returned params are those to keep (the last
    finite epoch, or the best one under early stopping)."""
    n = len(layout.ratings)
    last_good = params.copy()  # restored on divergence or interrupt mid-epoch
    best = None
    best_val, no_improve = math.inf, 0
    history: list[dict[str, Any]] = []
    runner = EpochRunner(layout, params, hyper, n_threads)
    reason, diverged = "completed", None
    lo, hi = clip if clip is not None else (None, None)
    try:
        for e in range(n_epochs):
            phase, row = "train", None
            try:
                t0 = time.perf_counter()
                hyper.lr = lr_schedule(epoch_offset + e)
                try:
                    sse = runner.run_epoch(rng if shuffle else None)
                except Stop:
                    sse = math.nan
                if not math.isfinite(sse) or not params.all_finite():
                    last_good.copy_to(params)
                    reason, diverged = "diverged", epoch_offset + e + 1
                    break
                row = {"epoch": epoch_offset + e + 1,
                       "train_rmse": math.sqrt(sse / n) if n else math.nan}
                if val is not None:
                    row["val_rmse"] = rmse_of(params, hyper.mu, *val, lo, hi)
                row["learning_rate"] = hyper.lr
                row["seconds"] = time.perf_counter() - t0
                # Each copy below is one C call; a Ctrl-C between them is completed by
                # the handler (phase says how far it got), so no snapshot is ever torn.
                phase = "commit"
                params.copy_to(last_good)
                history.append(row)
                phase = "best"
                if early_stopping and val is not None and row["val_rmse"] < best_val - tol:
                    best_val, no_improve = row["val_rmse"], 0
                    row["best"] = True  # before the copy: the Ctrl-C handler redoes it
                    best = _snapshot(params, best)
                elif early_stopping and val is not None:
                    no_improve += 1
                phase = "done"
                if on_epoch is not None:
                    on_epoch(row)
                if early_stopping and no_improve >= n_iter_no_change:
                    reason = "early_stopping"
                    break
            except KeyboardInterrupt:
                if phase == "train":
                    last_good.copy_to(params)
                elif phase == "commit":
                    params.copy_to(last_good)
                    if not history or history[-1] is not row:
                        history.append(row)
                elif phase == "best" and row.get("best"):
                    best = _snapshot(params, best)
                reason = "interrupted"
                break
    finally:
        runner.close()
    if early_stopping and best is not None:
        best.copy_to(params)
    return TrainResult(params, history, len(history), reason, diverged)


def _snapshot(params: Params, into: Params | None) -> Params:
    if into is None:
        return params.copy()
    params.copy_to(into)
    return into
