"""The epoch driver: block layout, shuffling schedule, threaded kernel calls, history,
early stopping, divergence and interrupt handling. No Python work per rating.

Layout (two levels). Users and items are each split into P x S contiguous ranges of
about equal rating counts. A *block* (user range r, item range c of the P x P grid) is
the unit of parallel work; a *cell* (one of the S x S sub-ranges inside a block) is the
unit of cache locality: the rows of one cell fit in L2. The ratings are copied once per
fit, stored block by block and cell by cell, and each cell is cut into segments of at
most ``SEGMENT`` ratings. The kernel runs lists of segments; a segment is the unit of
the in-kernel shuffle.

Schedule of one epoch (``shuffle=True``): the P strata are visited in a random order;
stratum s holds the blocks (r, c[(r + s) mod P]) for r = 0..P-1 with c a random column
permutation, so its blocks share no user and no item and may run on different threads
at once. Inside a block, the cell rows come in a random order and, within each, the
cells in a random order, so consecutive cells share their user rows (measured: visiting
blocks in stratum order without cells ran at 25 M updates/s, in row order at 36, k=64,
20 M ratings). Segments of a cell come in random order, each visited in a random
order that the kernel draws from its own seed (the stored triples are never modified).
Every random number is drawn here from one
``numpy.random.Generator``: the model depends on the data, the seed, P and S only,
never on the thread count or timing, since blocks of one stratum touch disjoint rows.
"""

from __future__ import annotations

import concurrent.futures as cf
import heapq
import math
import signal
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np

from . import _sgd
from ._config import resolved
from ._data import _refuse_zero_weights, eval_indices, eval_pairs
from ._idmap import IdMap, sorted_unique
from ._state import (  # noqa: F401  (aligned_concat: tests and bench reach it here)
    FittedState,
    aligned_concat,
    aligned_empty,
    appended,
    counts_of,
    fresh_accumulators,
    grown,
    init_rows,
    interaction_pairs,
    merge_seen,
    no_low,
    padded_width,
    plus_counts,
    seen_csr,
    unrecorded,
)
from .exceptions import (
    DistributedTrainingError,
    DivergenceError,
    StopTraining,
    TrainingInterrupted,
)

SEGMENT = 1 << 18  # ratings per segment at most: ~10 ms of kernel time at k=64
CALL_RATINGS = 1 << 20  # ratings per kernel call: bounds Ctrl-C latency to ~50 ms at k=64
#: Negatives per positive (WARP's max_sampled, BPR's and softmax's n_negatives) above
#: which a ranking call's length is not bounded by its rows: its calls then run on worker
#: threads, stopped through the kernel's polled flag (EpochRunner).
POLL_NEGATIVES = 64
MAX_BLOCKS = 255
CELL_ROW_BYTES = 512 << 10  # target bytes of factor rows (users + items) per cell
MIN_CELL_RATINGS = 2048  # smaller cells cost more in bookkeeping than they save


def default_n_blocks(n_threads: int, n_ratings: int) -> int:
    """Blocks per side of the parallel grid (``n_blocks=None``): 1 for one thread; else 2
    per thread, so the LPT assignment of a stratum's blocks to threads can even out
    unequal block sizes, but no more than leave MIN_CELL_RATINGS ratings per block on
    average (P <= sqrt(n_ratings / 2048)). Smaller blocks cost more in thread hand-offs
    than they train: 64 threads cut 3,000 ratings into 128 x 128 blocks and took 0.4 s
    per epoch (a millisecond on one block). 2 x n_threads is kept from
    2048 (2 n_threads)^2 ratings on: 32,768 for 2 threads (MovieLens 100K: up to 3)."""
    if n_threads == 1:
        return 1
    return max(1, min(2 * n_threads, MAX_BLOCKS, math.isqrt(n_ratings // MIN_CELL_RATINGS)))


#: Fewest items a block column may hold under a ranking loss: each positive's negatives
#: are drawn from its block column, so a column of a few items (one user may have seen
#: them all) gives no or the same few negatives; the model then barely trains.
MIN_BLOCK_ITEMS = 16


def ranking_blocks(nb: int, requested: bool, item_counts: np.ndarray) -> int:
    """The blocks per side of a ranking fit: ``nb``, lowered until every block column
    holding interactions has at least MIN_BLOCK_ITEMS items (columns are cut by
    interaction count, so popular items make narrow columns). ``requested``: the
    user set ``n_blocks``, which is then kept or refused, never changed."""
    def fewest(p: int) -> int:
        col = split_by_counts(item_counts, p)
        items = np.bincount(col, minlength=p)
        used = np.bincount(col, weights=item_counts, minlength=p) > 0
        return int(items[used].min()) if used.any() else item_counts.size

    p = nb
    while p > 1 and fewest(p) < MIN_BLOCK_ITEMS:
        p -= 1
    if requested and p < nb:
        raise ValueError(
            f"n_blocks={nb} cuts the {item_counts.size} items into block columns of as few "
            f"as {fewest(nb)} item(s); a ranking loss draws each interaction's negatives from "
            f"its block column, which needs at least {MIN_BLOCK_ITEMS} items. Use "
            f"n_blocks <= {p}, or None to choose it from the data.")
    return p


def default_n_cells(n_users: int, n_items: int, n_ratings: int, row_bytes: int, p: int) -> int:
    """Cells per side inside a block: enough that a cell's rows fit ~512 KiB of cache,
    few enough that cells keep ~2k ratings on average."""
    rows = (n_users + n_items) * row_bytes / p
    s_cache = math.ceil(rows / CELL_ROW_BYTES)
    s_small = max(1, int(math.sqrt(n_ratings / (p * p * MIN_CELL_RATINGS))))
    return int(max(1, min(s_cache, s_small, 255)))


def split_by_counts(counts: np.ndarray, parts: int) -> np.ndarray:
    """Part of each id: contiguous id ranges with about equal rating counts."""
    if parts == 1:
        return np.zeros(counts.size, dtype=np.int64)
    counts = counts.astype(np.float64)
    before = np.cumsum(counts) - counts  # ratings of ids before this one
    total = max(counts.sum(), 1.0)
    return np.minimum((before * parts / total).astype(np.int64), parts - 1)


def cell_keys(fu: np.ndarray, fi: np.ndarray, p: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Per user and per item, its share of the cell key: cell = key_u[u] + key_i[i] with
    cell id = (block * s + sub_r) * s + sub_c and block = (fu // s) * p + fi // s."""
    kdt = np.uint16 if p * p * s * s <= 1 << 16 else np.uint32
    key_u = ((fu // s) * (p * s * s) + (fu % s) * s).astype(kdt)
    key_i = ((fi // s) * (s * s) + (fi % s)).astype(kdt)
    return key_u, key_i


def segments(sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut cells of the given sizes into segments of at most SEGMENT ratings, split
    evenly; returns (seg_ptr, seg_cell)."""
    n_cells_total = sizes.size
    nseg = np.maximum(1, -(-sizes // SEGMENT))
    seg_cell = np.repeat(np.arange(n_cells_total, dtype=np.int64), nseg)
    # segment j of cell c starts at cell_start + j * size // nseg (even split)
    first = np.concatenate([[0], np.cumsum(nseg)[:-1]])
    j = np.arange(seg_cell.size) - first[seg_cell]
    cell_start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    seg_ptr = np.empty(seg_cell.size + 1, dtype=np.int64)
    seg_ptr[:-1] = cell_start[seg_cell] + (j * sizes[seg_cell]) // nseg[seg_cell]
    seg_ptr[-1] = int(sizes.sum())
    return seg_ptr, seg_cell


@dataclass
class Layout:
    """Rating triples stored block by block, cell by cell. The kernel only reads them: a
    shuffled segment is visited through a permuted copy in the kernel's scratch."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    n_blocks: int  # P: blocks per side
    n_cells: int  # S: cells per side inside a block
    seg_ptr: np.ndarray  # segment g spans seg_ptr[g]:seg_ptr[g+1]
    seg_cell: np.ndarray  # cell of each segment; cell id = (block * S + sub_r) * S + sub_c
    weights: np.ndarray | None = None  # sample_weight, at the positions of the ratings

    @classmethod
    def build(cls, triples: list, n_users: int, n_items: int, p: int, s: int = 1) -> Layout:
        """Layout of ``triples = [users, items, ratings]`` (int32, int32, model dtype),
        optionally followed by the weights of the ratings (model dtype).

        The list is emptied: each source array is dropped as soon as its copy is made,
        so a caller that passed its only references keeps memory at one extra copy."""
        users, items, ratings = triples[:3]
        weights = triples[3] if len(triples) > 3 else None
        triples.clear()
        # The kernel runs without bounds checks: an index out of range here would be a
        # bug in the id mapping, and must never reach it.
        for name, idx, n in (("user", users, n_users), ("item", items, n_items)):
            if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
                raise RuntimeError(f"internal error: {name} index out of range [0, {n}); "
                                   "please report this with the data that caused it.")
        n_cells_total = p * p * s * s
        if n_cells_total == 1:
            # The given order (kept exactly when shuffle=False). The ratings may be the
            # caller's array: the kernel never writes the triples, so no copy is made.
            u, i, r, w = users, items, ratings, weights
            sizes = np.array([len(r)], dtype=np.int64)
        else:
            fu = split_by_counts(counts_of(users, n_users), p * s)
            fi = split_by_counts(counts_of(items, n_items), p * s)
            key_u, key_i = cell_keys(fu, fi, p, s)
            key = key_u[users]
            key += key_i[items]
            del fu, fi, key_u, key_i
            # Counting sort by cell, one array at a time, each source freed once copied.
            sizes = np.zeros(n_cells_total, dtype=np.int64)
            _sgd.count_keys(key, sizes)
            starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
            u = np.empty_like(users)
            _sgd.scatter_by_key(key, users, starts.copy(), u)
            del users
            i = np.empty_like(items)
            _sgd.scatter_by_key(key, items, starts.copy(), i)
            del items
            w = None
            if weights is not None:
                w = np.empty_like(weights)
                _sgd.scatter_by_key(key, weights, starts.copy(), w)
                del weights
            r = np.empty_like(ratings)
            _sgd.scatter_by_key(key, ratings, starts, r)
            del ratings, key
        seg_ptr, seg_cell = segments(sizes)
        return cls(u, i, r, p, s, seg_ptr, seg_cell, w)

    @classmethod
    def skeleton(cls, cell_sizes: np.ndarray, p: int, s: int) -> Layout:
        """Segments and cells without rating arrays: enough for epoch_plan (used by the
        distributed driver, whose blocks live on the workers)."""
        seg_ptr, seg_cell = segments(cell_sizes)
        empty = np.empty(0, np.int32)
        return cls(empty, empty, np.empty(0), p, s, seg_ptr, seg_cell)

    @property
    def n_segments(self) -> int:
        return len(self.seg_ptr) - 1

    @property
    def seg_block(self) -> np.ndarray:
        return self.seg_cell // (self.n_cells * self.n_cells)


@dataclass
class Params:
    """Model parameters being trained (the wrapper's private copies)."""

    P: np.ndarray
    Q: np.ndarray
    bu: np.ndarray
    bi: np.ndarray
    # AdaGrad's accumulators, one per user and per item row (None without adagrad): part
    # of the parameters, so that a snapshot restored (best epoch, divergence, Ctrl-C)
    # keeps the accumulators of the rows it keeps.
    gu: np.ndarray | None = None
    gi: np.ndarray | None = None

    def _arrays(self) -> tuple[np.ndarray, ...]:
        extra = () if self.gu is None or self.gi is None else (self.gu, self.gi)
        return (self.P, self.Q, self.bu, self.bi, *extra)

    def copy(self) -> Params:
        return Params(*(a.copy() for a in self._arrays()))

    def copy_to(self, other: Params) -> None:
        for a, b in zip(self._arrays(), other._arrays(), strict=True):
            np.copyto(b, a)

    def all_finite(self, mu: float = 0.0, *, ranking: bool = False) -> bool:
        """Finite, and small enough that no prediction can overflow (see
        all_finite_from; ``ranking``: the model has a ranking loss). One max and one min
        per array (NaN propagates through both), no temporaries: 5 ms instead of 17-50 ms
        for isfinite + abs on a 200k x 64 model, run after every epoch."""
        ext = [[(float(a.max()), float(a.min())) if a.size else (0.0, 0.0)]
               for a in (self.P, self.Q, self.bu, self.bi)]
        return all_finite_from(ext, mu, self.P.shape[1], self.P.dtype, ranking=ranking)


def score_limit(dtype: Any, ranking: bool = False) -> float:
    """The bound on |prediction| beyond which parameters count as diverged.

    For the squared loss, the dtype's own maximum: its predictions are ratings, and a
    float64 model may legitimately fit ratings of 1e300. A ranking loss's scores have no
    scale of their own: only differences of scores enter its loss, through a sigmoid
    (bpr), a hinge of margin ~1 (warp) or a softmax, all decided within a few units, so
    scores beyond float32's range only come from SGD running away. For a ranking loss the
    bound is therefore float32's maximum whatever the dtype: past it the same model in
    float32 has certainly overflowed (and raised), and a float64 model now raises too
    instead of training on with losses of 1e47 and parameters of 1e29. (float32 can
    overflow earlier, in a sum or an AdaGrad accumulator; float64 is not made to
    imitate that.) The check runs beside the epochs: it changes no fit that does not
    diverge.
    """
    if ranking:
        return float(np.finfo(np.float32).max)
    return float(np.finfo(dtype).max)


def all_finite_from(extremes: list[list[tuple[float, float]]], mu: float, width: int,
                    dtype: Any, *, ranking: bool = False) -> bool:
    """From the (max, min) of the pieces of P, Q, bu and bi (in that order): every value
    finite, and small enough that no prediction can overflow (exceed score_limit: the
    dtype's maximum, float32's for a ranking loss). Finite factors of 1e21 still give an
    infinite u . v (then inf - inf = NaN) in float32."""
    amax = []
    for pieces in extremes:
        m = 0.0
        for hi, lo in pieces:
            if not (math.isfinite(hi) and math.isfinite(lo)):
                return False
            m = max(m, abs(hi), abs(lo))
        amax.append(m)
    bound = amax[0] * amax[1] * width + amax[2] + amax[3] + abs(mu)
    return bound < score_limit(dtype, ranking)


@dataclass(frozen=True)
class Hyper:
    lr: float
    reg_f: float
    reg_b: float
    mu: float
    use_bias: bool
    nonneg: bool
    adagrad: bool = False
    loss: int = _sgd.LOSS_SQUARED
    n_neg: int = 1
    max_sampled: int = 10
    margin: float = 1.0
    #: The factors of a row (its arrays may be wider: zero padding); AdaGrad's mean
    #: squared gradient is over these. 0: every column.
    n_factors: int = 0


class Stop(Exception):
    """Raised inside the driver when training must end early (not user-facing)."""


@dataclass
class Stratum:
    """Segments of one stratum in visiting order, grouped by block."""

    segments: np.ndarray  # segment ids, block after block
    seeds: np.ndarray | None  # per segment (None: no shuffle)
    block_bounds: np.ndarray  # block j of the stratum owns segments[b[j]:b[j+1]]
    block_sizes: np.ndarray  # ratings per block of the stratum


def epoch_plan(layout: Layout, rng: np.random.Generator | None) -> list[Stratum]:
    """The visiting order of one epoch (see the module docstring); vectorised: one sort
    of the segments per epoch, whatever the number of cells."""
    p, s = layout.n_blocks, layout.n_cells
    nseg = layout.n_segments
    cell = layout.seg_cell
    block = cell // (s * s)
    br, bc = block // p, block % p
    sub_r, sub_c = (cell // s) % s, cell % s
    if rng is None:
        strata_order = np.arange(p)
        col_perm = np.arange(p)
        row_rank = np.tile(np.arange(s), p * p)  # per (block, sub_r)
        col_rank = np.tile(np.arange(s), p * p * s)  # per (block, sub_r, sub_c)
        tie = np.arange(nseg)
    else:
        strata_order = rng.permutation(p)
        col_perm = rng.permutation(p)
        row_rank = np.argsort(rng.random((p * p, s)), axis=1).argsort(axis=1).ravel()
        col_rank = np.argsort(rng.random((p * p * s, s)), axis=1).argsort(axis=1).ravel()
        tie = rng.random(nseg)
    # block (br, bc) lies in stratum t where col_perm[(br + t) % p] == bc
    inv_col = np.argsort(col_perm)
    stratum_of_block = (inv_col[bc] - br) % p
    stratum_rank = np.argsort(strata_order)[stratum_of_block]
    cell_rank = row_rank[block * s + sub_r] * s + col_rank[(block * s + sub_r) * s + sub_c]
    order = np.lexsort((tie, cell_rank, br, stratum_rank))
    seeds = None
    if rng is not None:
        seeds = rng.integers(1, np.iinfo(np.int64).max, size=nseg, dtype=np.int64).view(np.uint64)
    lens = np.diff(layout.seg_ptr)
    out = []
    srank = stratum_rank[order]
    cuts = np.searchsorted(srank, np.arange(p + 1))
    for t in range(p):
        segs = order[cuts[t]:cuts[t + 1]]
        b = block[segs]
        bounds = np.concatenate([[0], np.flatnonzero(b[1:] != b[:-1]) + 1, [segs.size]])
        sizes = np.add.reduceat(lens[segs], bounds[:-1]) if segs.size else np.zeros(0, np.int64)
        out.append(Stratum(segs.astype(np.int64),
                           None if seeds is None else seeds[segs], bounds, sizes))
    return out


def _assign(sizes: np.ndarray, n_threads: int) -> list[list[int]]:
    """Blocks of a stratum -> threads, largest first to the least loaded (LPT; ties to
    the lowest thread). Only speed depends on this: blocks of a stratum share no rows.
    At most one group per block and never an empty one (a thread without a block would
    only be woken up for nothing: 255 threads on 3 ratings took seconds per epoch), in
    O(blocks log threads)."""
    n = max(1, min(n_threads, sizes.size))
    out: list[list[int]] = [[] for _ in range(n)]
    heap = [(0, t) for t in range(n)]  # (load, thread): a valid heap as it stands
    for j in np.argsort(-sizes, kind="stable").tolist():
        load, t = heap[0]
        out[t].append(j)
        heapq.heapreplace(heap, (load + int(sizes[j]), t))
    return [g for g in out if g]  # blocks of no ratings leave threads without work


@dataclass
class Sampler:
    """What the ranking kernel needs besides the layout: each segment's item range (the
    items of its block column: blocks of one stratum share no item, so negatives drawn
    there are safe to update from another thread), the negative distribution, the
    user's seen items to reject, and the generator of the per-segment draw seeds."""

    item_lo: np.ndarray  # int32 per segment
    item_hi: np.ndarray
    cdf: np.ndarray | None  # cumulative float64 item weights (n_items + 1), None: uniform
    seen_bits: np.ndarray | None  # the bitmap record (see _sgd.seen_bitmap), or
    seen_ptr: np.ndarray | None  # the sorted CSR record when the bitmap would be too big
    seen_items: np.ndarray | None
    rng: np.random.Generator
    weighted: bool  # Layout.ratings holds sample weights (else ones, not passed)


SEEN_BITMAP_BYTES = 64 << 20  # bitmap (one load per check) up to this, else sorted CSR


def make_sampler(layout: Layout, n_items: int, n_users: int, beta: float,
                 seen: tuple[np.ndarray, np.ndarray], rng: np.random.Generator,
                 weighted: bool) -> Sampler:
    """The Sampler of a ranking fit on ``layout``; ``seen`` = (users, items) pairs whose
    items are never drawn as negatives of their user (the training interactions)."""
    p, s = layout.n_blocks, layout.n_cells
    if p == 1:
        lo = np.zeros(layout.n_segments, np.int32)
        hi = np.full(layout.n_segments, n_items, np.int32)
    else:
        # The layout's item ranges, recomputed as Layout.build cut them (same counts).
        col = split_by_counts(counts_of(layout.items, n_items), p * s) // s
        first = np.searchsorted(col, np.arange(p), side="left").astype(np.int32)
        last = np.searchsorted(col, np.arange(p), side="right").astype(np.int32)
        bcol = layout.seg_block % p
        lo, hi = first[bcol], last[bcol]
        # an item-less block column has no interactions either: its segments are empty
    cdf = None
    if beta:
        c = counts_of(seen[1], n_items).astype(np.float64)
        w = (c / max(c.max(), 1.0)) ** beta  # relative to the top count: never overflows
        cdf = np.concatenate([[0.0], np.cumsum(w)])
    su, si = (np.ascontiguousarray(a, dtype=np.int32) for a in seen)
    bits = ptr = items = None
    if n_users * ((n_items + 63) // 64) * 8 <= SEEN_BITMAP_BYTES:
        bits = _sgd.seen_bitmap(su, si, n_users, n_items)
    else:
        key = sorted_unique(su.astype(np.int64) * n_items + si)  # np.unique: 30x slower
        items = (key % n_items).astype(np.int32)
        ptr = np.zeros(n_users + 1, np.int64)
        np.cumsum(np.bincount(key // n_items, minlength=n_users), out=ptr[1:])
    return Sampler(np.ascontiguousarray(lo), np.ascontiguousarray(hi), cdf, bits, ptr, items,
                   rng, weighted)


class EpochRunner:
    """Runs epochs of the kernel over a layout, on n_threads threads."""

    def __init__(self, layout: Layout, params: Params, hyper: Hyper, n_threads: int,
                 sampler: Sampler | None = None) -> None:
        self.layout = layout
        self.sampler = sampler
        self._dseeds: np.ndarray | None = None
        if sampler is not None:
            self._rank_w = layout.ratings if sampler.weighted else \
                np.empty(0, layout.ratings.dtype)
        self.params = params
        self.hyper = hyper
        # More threads than blocks per stratum would only wait.
        self.n_threads = n_threads = max(1, min(n_threads, layout.n_blocks))
        self.sse = np.zeros(layout.n_segments, dtype=np.float64)
        self._stop = threading.Event()
        # The flag the ranking kernels poll while they run (_sgd.rank_segments' ``stop``).
        self._cstop = np.zeros(1, dtype=np.int32)
        # A call's work is bounded by its rows only while the negatives per positive are
        # few: WARP draws up to max_sampled (2**31 - 1 allowed), softmax up to 256. With
        # more than POLL_NEGATIVES, every call runs on the pool and the calling thread
        # waits, as a thread inside a kernel call cannot take Ctrl-C: on Ctrl-C it sets
        # the flag the kernel polls. Otherwise the caller runs one share itself, as for
        # the squared loss: handing every call to a worker cost 2-5% at one thread.
        self._caller_works = sampler is None or max(hyper.n_neg, hyper.max_sampled
                                                    if hyper.loss == _sgd.LOSS_WARP else 0) \
            <= POLL_NEGATIVES
        workers = n_threads - 1 if self._caller_works else n_threads
        self._pool = cf.ThreadPoolExecutor(workers, thread_name_prefix="mfsgd") \
            if workers > 0 else None
        self._seg_len = np.diff(layout.seg_ptr)
        dt = params.bu.dtype
        if hyper.adagrad and (params.gu is None or params.gi is None):
            raise AssertionError("adagrad needs the accumulators in Params")
        self.accum = (params.gu, params.gi) if hyper.adagrad else \
            (np.empty(0, dt), np.empty(0, dt))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _run_list(self, seg_ids: np.ndarray, seeds: np.ndarray | None) -> None:
        """Run segments in order, in kernel calls of about CALL_RATINGS ratings, checking
        the stop flag (set on Ctrl-C or divergence) between calls."""
        L, p, h = self.layout, self.params, self.hyper
        if seg_ids.size == 0:
            return
        ends = np.cumsum(self._seg_len[seg_ids])
        cuts = np.searchsorted(ends, np.arange(CALL_RATINGS, int(ends[-1]), CALL_RATINGS),
                               side="left") + 1
        out = np.empty(seg_ids.size, dtype=np.float64)
        start = 0
        for stop in [*np.unique(np.minimum(cuts, seg_ids.size)).tolist(), seg_ids.size]:
            if stop <= start:
                continue
            if self._stop.is_set():
                raise Stop
            chunk = seg_ids[start:stop]
            cseeds = None if seeds is None else seeds[start:stop]
            if self.sampler is not None:
                sm = self.sampler
                _sgd.rank_segments(L.users, L.items, self._rank_w, L.seg_ptr, sm.item_lo,
                                   sm.item_hi, chunk, cseeds, self._dseeds[chunk], sm.cdf,
                                   sm.seen_ptr, sm.seen_items, p.P, p.Q, p.bi, h.loss, h.lr,
                                   h.reg_f, h.reg_b, h.use_bias, h.n_neg, h.max_sampled,
                                   h.margin, False, out[start:stop], sm.seen_bits, *self.accum,
                                   stop=self._cstop, n_factors=h.n_factors)
                if self._cstop[0]:  # ended early: its parameters are part-way
                    raise Stop
            elif L.weights is not None:
                _sgd.sgd_segments_weighted(L.users, L.items, L.ratings, L.weights, L.seg_ptr,
                                           chunk, cseeds, p.P, p.Q, p.bu, p.bi, h.mu, h.lr,
                                           h.reg_f, h.reg_b, h.use_bias, h.nonneg,
                                           out[start:stop], *self.accum, h.n_factors)
            else:
                _sgd.sgd_segments(L.users, L.items, L.ratings, L.seg_ptr, chunk, cseeds,
                                  p.P, p.Q, p.bu, p.bi, h.mu, h.lr, h.reg_f, h.reg_b,
                                  h.use_bias, h.nonneg, out[start:stop], *self.accum,
                                  h.n_factors)
            if not math.isfinite(float(out[start:stop].sum())):
                self.sse[seg_ids] = math.nan
                self._stop.set()
                self._cstop[0] = 1
                raise Stop
            start = stop
        self.sse[seg_ids] = out

    def run_epoch(self, rng: np.random.Generator | None) -> float:
        """One epoch; returns the SSE (summed in segment-id order: deterministic). Raises
        Stop when a kernel call saw a non-finite error, KeyboardInterrupt on Ctrl-C; in
        both cases every worker has finished before this returns."""
        self._stop.clear()
        self._cstop[0] = 0
        plan = epoch_plan(self.layout, rng)
        if self.sampler is not None:
            # The negatives' draw seeds, per segment id, after the plan's draws (so
            # they come from the fit's one generator, in a fixed order).
            self._dseeds = self.sampler.rng.integers(
                1, np.iinfo(np.int64).max, size=self.layout.n_segments,
                dtype=np.int64).view(np.uint64)
        for st in plan:
            # Only the blocks holding ratings are shared out: the others' segments are
            # empty (on little data, most of a large grid), and waking a thread for them
            # cost more than the training (255 threads on 3 ratings: seconds per epoch).
            full = np.flatnonzero(st.block_sizes)
            if full.size == 0:
                continue
            if self._pool is None or (full.size == 1 and self._caller_works):
                self._run_list(st.segments, st.seeds)
                continue
            b = st.block_bounds
            lists = []
            for group in _assign(st.block_sizes[full], self.n_threads):
                idx = np.concatenate([np.arange(b[j], b[j + 1]) for j in full[group]])
                lists.append((st.segments[idx], None if st.seeds is None else st.seeds[idx]))
            own = lists[0] if self._caller_works else None
            futs = [self._pool.submit(self._run_list, *a)
                    for a in (lists[1:] if self._caller_works else lists)]
            try:
                if own is not None:
                    self._run_list(*own)
                for f in futs:
                    f.result()  # a wait that Ctrl-C interrupts
            except BaseException:
                self._stop.set()
                self._cstop[0] = 1  # running ranking calls end within milliseconds
                _wait_through_interrupts(futs)  # never leave a worker writing into the arrays
                raise
        return float(self.sse.sum())


def _wait_through_interrupts(futs: list) -> None:
    """Wait until every future is done, whatever Ctrl-C presses come meanwhile. The
    caller re-raises the first interrupt once the workers have stopped: a second Ctrl-C
    that broke this wait let the epoch loop restore the last good parameters while a
    worker was still writing into them (a model that was no epoch's)."""
    while True:
        try:
            cf.wait(futs)
            return
        except KeyboardInterrupt:
            continue


class HeldInterrupt:
    """Ctrl-C while a trained model is being stored. During the epochs Ctrl-C stops
    training at once (run_epochs keeps the last completed epoch). Once they are over
    (``hold()``, called by run_epochs), the seen-items record, the items' order and the
    model's attributes take a moment more (0.08 s after 3 epochs on 4 M ratings), and a
    KeyboardInterrupt there discarded every completed epoch. From ``hold()`` to the end
    of the ``with`` block, SIGINT is only recorded (``pressed``); the caller stores the
    model, then raises KeyboardInterrupt (raise_for's ``late_interrupt``).

    Only in the main thread (the one Python delivers SIGINT to) and only while SIGINT
    has Python's default handler: a program's own handler is left alone.

    A KeyboardInterrupt leaving the block came before the epochs (reading, mapping and
    laying out the data, drawing the initial factors: 0.3-0.6 s on 2 M ratings), as
    run_epochs handles its own: the model is unchanged, and the block warns
    TrainingInterrupted as for any other Ctrl-C of a fit (``stacklevel`` is the
    warning's, counted from ``__exit__``)."""

    def __init__(self, stacklevel: int = 3) -> None:
        self.holding = self.pressed = False
        self._old: Any = None
        self.stacklevel = stacklevel

    def __enter__(self) -> HeldInterrupt:
        if threading.current_thread() is threading.main_thread():
            now = signal.getsignal(signal.SIGINT)
            # an outer fit's (a fit called from another fit's callback): its handler is
            # put back on exit, as Python's own would be
            if now is signal.default_int_handler or isinstance(
                    getattr(now, "__self__", None), HeldInterrupt):
                self._old = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if not self.holding:
            raise KeyboardInterrupt
        self.pressed = True

    def hold(self) -> None:
        self.holding = True

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None
        if exc_type is KeyboardInterrupt:
            warnings.warn(TrainingInterrupted("Training interrupted before its first epoch; "
                                              "the model is unchanged.", "before"),
                          stacklevel=self.stacklevel)


#: Fewest ratings (or pairs) early stopping's validation_fraction hold-out may have
#: without a warning: the validation RMSE or NDCG of fewer is mostly noise (the standard
#: error of an RMSE over m ratings is about RMSE / sqrt(2 m): 7% at 100), and the epoch
#: kept follows it (one held-out rating kept epoch 1 of 6).
MIN_HOLDOUT = 100


def hold_out(users: np.ndarray, items: np.ndarray, n_users: int, n_items: int,
             fraction: float, rng: np.random.Generator, unit: str = "ratings") -> np.ndarray:
    """Random validation mask over the ratings (or pairs) of ``users`` and ``items``
    rows for early stopping (``unit`` in messages), given back where it took a user's or
    an item's every row (:func:`keep_one_each`). Warns (UserWarning) when the validation
    part has fewer than MIN_HOLDOUT positions, or the training part fewer than the
    validation part: early stopping would then be steered by noise, or the model would
    learn from fewer ratings than it is checked on."""
    n = users.size
    n_val = max(1, int(round(n * fraction)))
    if n_val >= n:
        raise ValueError(
            f"validation_fraction={fraction} leaves no training {unit} out of {n}; "
            "lower it or pass eval_set."
        )
    fix = None
    if n_val < MIN_HOLDOUT:
        fix = (f"holds out only {n_val} of the {n} {unit} for early stopping: too few to "
               "tell the epochs apart, so the epoch kept follows their noise. " + (
                   f"Raise it to {MIN_HOLDOUT / n:.3g} or more ({MIN_HOLDOUT} {unit})"
                   if n >= 2 * MIN_HOLDOUT else
                   f"With {n} {unit} in all, train a fixed n_epochs without early_stopping"))
    elif n - n_val < n_val:
        fix = (f"leaves only {n - n_val} of the {n} {unit} for training and holds out "
               f"{n_val} for early stopping: the model learns from less than it is checked "
               "on. Lower it")
    if fix is not None:
        # stacklevel: hold_out, fit_new, _fit_local, fit (or partial_fit), the caller
        warnings.warn(f"validation_fraction={fraction} {fix}, or pass eval_set.",
                      UserWarning, stacklevel=5)
    in_va = np.zeros(n, dtype=bool)
    in_va[rng.permutation(n)[:n_val]] = True
    return keep_one_each(in_va, users, items, n_users, n_items, unit)


def keep_one_each(in_va: np.ndarray, users: np.ndarray, items: np.ndarray, n_users: int,
                  n_items: int, what: str) -> np.ndarray:
    """The hold-out mask ``in_va`` (over ratings or pairs of ``users`` and ``items``
    rows) with, for each user and each item whose every row it took, the first of them
    given back to training: a user (or item) seen only in validation would keep its
    random initial row and never be trained, yet count as known. ValueError if nothing
    is left to validate on."""
    for idx, n in ((users, n_users), (items, n_items)):
        lost = np.bincount(idx[~in_va], minlength=n) == 0
        back = np.flatnonzero(in_va & lost[idx])
        if back.size:
            _, first = np.unique(idx[back], return_index=True)
            in_va[back[first]] = False
    if not in_va.any():
        raise ValueError(
            f"the validation_fraction hold-out for early stopping took only {what} that were "
            "the last of their user or item, and those stay in training (else their rows "
            "would never be trained), so nothing is left to validate on; pass eval_set or "
            "train a fixed n_epochs without early_stopping.")
    return in_va


def predict_idx(params: Params, mu: float, u: np.ndarray, i: np.ndarray) -> np.ndarray:
    """mu + b_u + b'_i + u . v for index pairs (an index < 0: that side's terms left out)."""
    if params.P.ndim != 2 or params.P.shape[1] == 0:
        # No factors (the Popularity baseline): only the bias terms. The kernel would take
        # the address of row 0 of a zero-width array, which the bounds-checked debug build
        # rightly refuses.
        out = np.full(len(u), mu, dtype=np.float64)
        ku, ki = u >= 0, i >= 0
        out[ku] += params.bu[u[ku]]
        out[ki] += params.bi[i[ki]]
        return out
    out = np.empty(len(u), dtype=np.float64)
    _sgd.predict_pairs(u, i, params.P, params.Q, params.bu, params.bi, mu, out)
    return out


def rmse_of(params: Params, mu: float, u: np.ndarray, i: np.ndarray, r: np.ndarray,
            lo: float | None = None, hi: float | None = None, *,
            unknown: float | None = None) -> float:
    """RMSE of index pairs (-1: an unknown id), predicted as ``predict`` does: ``unknown``
    (a model without biases: the global mean) for a pair with an unknown side, else the
    known terms."""
    pred = predict_idx(params, mu, u, i)
    if unknown is not None:
        pred[(u < 0) | (i < 0)] = unknown
    if lo is not None:
        np.clip(pred, lo, hi, out=pred)
    if not len(r):
        return float("nan")
    # Validation ratings may be huge yet finite (1e154): their squared error is inf,
    # which is the RMSE to report, not a reason for a RuntimeWarning.
    with np.errstate(over="ignore"):
        return float(np.sqrt(np.mean((pred - r) ** 2)))


class Cause(NamedTuple):
    """A value that made a diverged fit's steps too large: its phrase for the error, and
    whether a smaller learning rate would also help (not for scores that start near
    float32's range)."""

    text: str
    rate_helps: bool = True


@dataclass
class TrainResult:
    """How a run of epochs ended. The executor's parameters are those to keep: the last
    finite epoch, or the best one under early stopping."""

    history: list[dict[str, Any]]
    epochs_done: int
    reason: str  # "completed", "early_stopping", "diverged", "interrupted", "failed"
    diverged_epoch: int | None = None
    error: BaseException | None = None  # the cause, for "failed"
    causes: tuple[Cause, ...] = ()  # for "diverged": divergence_causes, named in the error
    lost: int = 0  # for "failed": epochs completed whose parameters went with the workers


class ExecutorFailure(Exception):
    """Raised by an executor when the machinery running the epochs broke (a lost Dask
    worker, cancelled futures): the loop keeps the last good parameters and reports
    "failed" with the cause."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class Executor:
    """Runs epochs of the kernel somewhere: ``LocalExecutor`` on threads of this process,
    ``_dask.DaskExecutor`` on the workers of a cluster. ``run_epochs`` drives either.

    Snapshots are opaque to the loop: copies of the arrays here, lists of futures there.
    """

    def run_epoch(self, hyper: Hyper, rng: np.random.Generator | None) -> float:
        """One epoch with these hyper-parameters; returns the SSE seen during the pass
        (NaN when a kernel call met a non-finite error). KeyboardInterrupt passes through
        after every worker has stopped writing."""
        raise NotImplementedError

    def snapshot(self, into: Any = None) -> Any:
        """The current parameters, kept (written into ``into`` when given: reuse)."""
        raise NotImplementedError

    def restore(self, snap: Any) -> None:
        raise NotImplementedError

    def all_finite(self, mu: float) -> bool:
        raise NotImplementedError

    def rmse(self, val: tuple, mu: float, clip: tuple[float, float] | None,
             unknown: float | None = None) -> float:
        """RMSE of the current parameters on (user idx, item idx, ratings) (see
        :func:`rmse_of`)."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class LocalExecutor(Executor):
    """Epochs on ``n_threads`` threads of this process, in place on ``params``."""

    def __init__(self, layout: Layout, params: Params, hyper: Hyper, n_threads: int,
                 sampler: Sampler | None = None) -> None:
        self.params = params
        self.runner = EpochRunner(layout, params, hyper, n_threads, sampler)

    def run_epoch(self, hyper: Hyper, rng: np.random.Generator | None) -> float:
        self.runner.hyper = hyper
        try:
            return self.runner.run_epoch(rng)
        except Stop:
            return math.nan

    def snapshot(self, into: Params | None = None) -> Params:
        if into is None:
            return self.params.copy()
        self.params.copy_to(into)
        return into

    def restore(self, snap: Params) -> None:
        snap.copy_to(self.params)

    def all_finite(self, mu: float) -> bool:
        return self.params.all_finite(mu, ranking=self.runner.hyper.loss != _sgd.LOSS_SQUARED)

    def rmse(self, val: tuple, mu: float, clip: tuple[float, float] | None,
             unknown: float | None = None) -> float:
        return rmse_of(self.params, mu, *val, *(clip if clip is not None else (None, None)),
                       unknown=unknown)

    def close(self) -> None:
        self.runner.close()


def run_epochs(ex: Executor, hyper: Hyper, *, n_epochs: int, n_ratings: int,
               rng: np.random.Generator | None, lr_at: Callable[[int], float],
               val: tuple | None, clip: tuple[float, float] | None, early_stopping: bool,
               n_iter_no_change: int, tol: float, epoch_offset: int = 0,
               on_epoch: Callable[[dict[str, Any]], None] | None = None,
               after_epoch: Callable[[dict[str, Any], list[dict[str, Any]]], None] | None = None,
               metric: tuple[str, Callable[[], float]] | None = None,
               train_key: str = "train_rmse",
               interrupts: HeldInterrupt | None = None,
               val_unknown: float | None = None) -> TrainResult:
    """The one epoch loop: history rows, divergence (non-finite SSE or parameters),
    early stopping with best-epoch restore, Ctrl-C, executor failures, and a hook after
    each committed epoch (``after_epoch(row, history)``: Dask's checkpoint). On return
    the executor holds the parameters to keep.

    ``train_key`` "train_rmse" reports sqrt(SSE / n_ratings); "train_loss" (the ranking
    losses) the summed loss / n_ratings. ``metric = (name, score)`` (ranking losses,
    instead of ``val``): ``score()`` of the current parameters is recorded as
    ``val_<name>`` and early stopping maximises it. ``interrupts.hold()`` is called once
    the epochs are over: Ctrl-C is then held until the caller has stored the model.
    ``val_unknown``: what a validation pair with an unknown side predicts, when not the
    known terms (a model without biases: the global mean, as ``predict``)."""
    good = ex.snapshot()  # restored on divergence, interrupt or failure mid-epoch
    best = None
    best_val, no_improve = math.inf, 0
    history: list[dict[str, Any]] = []
    reason, diverged, error = "completed", None, None
    for e in range(n_epochs):
        phase, row = "train", None
        try:
            t0 = time.perf_counter()
            # a fresh object per epoch: an executor may ship it to other processes later
            epoch_hyper = replace(hyper, lr=lr_at(epoch_offset + e))
            sse = ex.run_epoch(epoch_hyper, rng)
            if not math.isfinite(sse) or not ex.all_finite(hyper.mu):
                ex.restore(good)
                reason, diverged = "diverged", epoch_offset + e + 1
                break
            if train_key == "train_rmse":
                row = {"epoch": epoch_offset + e + 1,
                       "train_rmse": math.sqrt(sse / n_ratings) if n_ratings else math.nan}
            else:
                row = {"epoch": epoch_offset + e + 1,
                       train_key: sse / n_ratings if n_ratings else math.nan}
            watched = None  # what early stopping minimises
            if val is not None:
                row["val_rmse"] = watched = ex.rmse(val, hyper.mu, clip, val_unknown)
            if metric is not None:
                row[f"val_{metric[0]}"] = value = metric[1]()
                watched = -value if math.isfinite(value) else math.inf
            row["learning_rate"] = epoch_hyper.lr
            row["seconds"] = time.perf_counter() - t0
            # Each local snapshot below is one C call; a Ctrl-C between them is completed
            # by the handler (phase says how far it got), so no snapshot is ever torn.
            phase = "commit"
            good = ex.snapshot(good)
            history.append(row)
            phase = "best"
            if early_stopping and watched is not None and watched < best_val - tol:
                best_val, no_improve = watched, 0
                row["best"] = True  # before the copy: the Ctrl-C handler redoes it
                best = ex.snapshot(best)
            elif early_stopping and watched is not None:
                no_improve += 1
            phase = "done"
            if after_epoch is not None:
                after_epoch(row, history)
            if on_epoch is not None:
                on_epoch(row)
            if early_stopping and no_improve >= n_iter_no_change:
                reason = "early_stopping"
                break
        except KeyboardInterrupt:
            if interrupts is not None:
                # a second Ctrl-C must not break the restore (or the snapshot) below
                interrupts.hold()
            if phase == "train":
                ex.restore(good)
            elif phase == "commit":
                good = ex.snapshot(good)
                if not history or history[-1] is not row:
                    history.append(row)
            elif phase == "best" and row.get("best"):
                best = ex.snapshot(best)
            reason = "interrupted"
            break
        except ExecutorFailure as exc:
            ex.restore(good)
            reason, error = "failed", exc.cause
            break
    if interrupts is not None:
        interrupts.hold()
    if early_stopping and best is not None and reason != "failed":
        ex.restore(best)
    return TrainResult(history, len(history), reason, diverged, error)


def divergence_causes(cfg: Any, *, max_weight: float = 1.0,
                      rating_span: float = 0.0) -> tuple[Cause, ...]:
    """What besides the learning rate made the steps of a diverged fit too large, as
    phrases for DivergenceError's message. A value is named when it overshoots even at
    the loss's default learning rate (or the fit's own, if lower), so one that is too
    large only because the rate is far above its default is left to the rate's advice.
    The rules (measured on make_ratings data, k = 16 and 100; defaults otherwise):
    squared SGD diverges once learning_rate x init_std^2 x n_factors, learning_rate x
    reg, or learning_rate x the ratings' span reaches 1 to 2; a sample weight multiplies
    its row's rate, and weights from 10 (bpr, softmax) or 40 to 100 (squared, warp) up
    diverged at the default rates, so a weight that lifts the rate tenfold above its
    default is named. A ranking loss's gradients are bounded, so init_std matters there only when
    the first scores come near float32's range (its divergence bound)."""
    lr = cfg.learning_rate
    lr_ref = min(lr, resolved("learning_rate", None, cfg.loss, cfg.adagrad))
    out = []
    s2k = cfg.init_std ** 2 * cfg.n_factors
    if cfg.ranking and s2k * 1e3 >= float(np.finfo(np.float32).max):
        out.append(Cause(f"init_std={cfg.init_std:g} (init_std^2 x n_factors is {s2k:.2g}: "
                         f"scores near float32's range from the start)", rate_helps=False))
    elif not cfg.ranking and lr_ref * s2k >= 1:
        out.append(Cause(f"init_std={cfg.init_std:g} (learning_rate x init_std^2 x n_factors "
                         f"is {lr * s2k:.2g}; SGD is stable below about 1)"))
    for name in ("reg_factors", "reg_bias") if cfg.biased else ("reg_factors",):
        reg = getattr(cfg, name)
        if lr_ref * reg >= 1:
            out.append(Cause(f"{name}={reg:g} (learning_rate x {name} is {lr * reg:.2g}; "
                             f"above 1, a step shrinks a parameter past zero)"))
    if lr_ref * max_weight >= 10 * resolved("learning_rate", None, cfg.loss, cfg.adagrad):
        out.append(Cause(f"sample_weight up to {max_weight:g} (it multiplies the "
                         f"learning_rate of its row: steps of up to {lr * max_weight:.2g})"))
    if not cfg.ranking and lr_ref * rating_span >= 1:
        out.append(Cause(f"the ratings' scale (they span {rating_span:.3g}; learning_rate x "
                         f"span is {lr * rating_span:.2g}, stable below about 1)"))
    return tuple(out)


def raise_for(result: TrainResult, *, epochs_before: int, learning_rate: float,
              checkpoint: str | None = None, callback_error: BaseException | None = None,
              stacklevel: int = 3, late_interrupt: bool = False) -> None:
    """The one place that turns how training ended into the user's exception: nothing
    for "completed" / "early_stopping"; DivergenceError; DistributedTrainingError; the
    callback's own error; or a TrainingInterrupted warning and KeyboardInterrupt, also
    for a fit that ended but saw Ctrl-C while its model was stored (``late_interrupt``)."""
    done = epochs_before + result.epochs_done
    none = "no epoch completed, so the model is unchanged"
    kept = f"the model keeps epoch {done}" if result.epochs_done else none
    if result.lost:
        kept = (f"{result.lost} epoch(s) had completed, but their parameters were lost with "
                "the workers, so the model is unchanged")
    if result.reason == "diverged":
        kept = f"the model keeps the parameters of epoch {done}" if result.epochs_done else none
        advice = f"Try a smaller learning_rate (now {learning_rate})"
        if result.causes:  # named by divergence_causes: the rate is not the only lever
            them = "it" if len(result.causes) == 1 else "them"
            rate = (f" or the learning_rate (now {learning_rate})"
                    if any(c.rate_helps for c in result.causes) else "")
            advice = (f"Unusually large for this fit: "
                      f"{', '.join(c.text for c in result.causes)}. Lower {them}{rate}")
        raise DivergenceError(
            f"Training diverged in epoch {result.diverged_epoch} (the loss became "
            f"non-finite or the parameters too large for the model's range). {advice}; "
            f"{kept}.")
    if result.reason == "failed":
        ck = (f"; resume with fit(..., checkpoint={checkpoint!r}, resume=True)" if checkpoint
              else "; pass checkpoint= to be able to resume")
        err = result.error
        raise DistributedTrainingError(
            f"Distributed training failed ({type(err).__name__}: {err}); {kept}{ck}.") from err
    if result.reason == "interrupted":
        if isinstance(callback_error, StopTraining):
            return  # the callback's request: the model keeps epoch `done`, fit returns
        if callback_error is not None and not isinstance(callback_error, KeyboardInterrupt):
            raise callback_error  # the callback's own error; the model keeps epoch `done`
        warnings.warn(TrainingInterrupted(f"Training interrupted in epoch {done + 1}; {kept}."),
                      stacklevel=stacklevel)
        raise KeyboardInterrupt
    if late_interrupt:
        warnings.warn(TrainingInterrupted(f"Training interrupted after its last epoch "
                                          f"({done}); the trained model is kept.", "after"),
                      stacklevel=stacklevel)
        raise KeyboardInterrupt


def hyper_of(cfg: Any, mu: float) -> Hyper:
    """The kernel's hyper-parameters from a FitConfig."""
    return Hyper(lr=cfg.learning_rate, reg_f=cfg.reg_factors, reg_b=cfg.reg_bias, mu=mu,
                 use_bias=cfg.biased, nonneg=cfg.nonnegative, adagrad=cfg.adagrad,
                 loss=_sgd.LOSSES[cfg.loss], n_neg=cfg.n_negatives,
                 max_sampled=cfg.max_sampled, margin=cfg.margin, n_factors=cfg.n_factors)


def train_local(cfg: Any, base: FittedState, make_params: Callable[[], Params], triples: list,
                rng: np.random.Generator, val: tuple | None, n_epochs: int, *,
                epoch_offset: int, history: list,
                on_epoch: Callable[[dict[str, Any]], None] | None = None,
                seen_extra: tuple | None = None, low_extra: tuple | None = None,
                weighted: bool = False,
                evaluate: tuple[str, Callable[[FittedState], float]] | None = None,
                interrupts: HeldInterrupt | None = None, update: bool = False,
                ) -> tuple[FittedState | None, TrainResult]:
    """Fit on this machine: the grid layout, the parameters, ``n_epochs`` epochs on
    ``cfg.n_threads`` threads; returns the new state (None when nothing changed) and how
    training ended. ``base`` holds the maps, mean and range; ``triples`` (user idx, item
    idx, ratings[, weights]) is emptied, so the caller's references are the only ones
    left. With a ranking loss the third array holds the interactions' weights (ones
    unless ``weighted``), and ``evaluate = (name, score(state))`` is the per-epoch
    validation metric. ``seen_extra`` (held-out pairs, the rows min_rating dropped)
    joins the seen record, and ``low_extra`` (those rows min_rating dropped) the record
    of low rows too. ``interrupts``: see HeldInterrupt. ``update``: partial_fit's
    batch, whose ranking grid is lowered like a chosen one when its items cannot fill
    ``n_blocks`` block columns (a small batch), where fit refuses the user's n_blocks."""
    nb = cfg.n_blocks or default_n_blocks(cfg.n_threads, triples[2].size)
    order = pos = None
    if cfg.ranking and nb > 1:
        # Negatives come from the item range of the positive's block column, and the
        # grid cuts the item indices into contiguous ranges. Ids are often in order of
        # popularity or age (MovieLens 100K: the first ids are the most rated), so those
        # ranges would hold items of one popularity only, and a positive would be
        # compared with negatives like itself: NDCG@10 on MovieLens 100K fell from 0.355
        # (one block) to 0.17 (4 blocks). The kernel therefore sees the items in a fixed
        # random order: every block column is then a random sample of the catalogue.
        order, pos = _item_order(len(base.item_map))
        # counts in the kernel's order: index k is item order[k] (no per-rating copy)
        nb = ranking_blocks(nb, cfg.n_blocks is not None and not update,
                            counts_of(triples[1], len(base.item_map))[order])
        if nb == 1:
            order = pos = None
        else:
            triples[1] = pos[triples[1]]
    n_ratings = triples[2].size
    # Denominator of the reported training loss: the weight sum when weighted.
    if len(triples) > 3:
        denom = float(np.sum(triples[3], dtype=np.float64))
    elif cfg.ranking and weighted:
        denom = float(np.sum(triples[2], dtype=np.float64))
    else:
        denom = n_ratings
    # Cells (cache blocking inside a block) reorder the ratings, so shuffle=False,
    # which promises the given order, runs without them.
    row_bytes = padded_width(cfg.n_factors, cfg.dtype) * np.dtype(cfg.dtype).itemsize
    ns = default_n_cells(len(base.user_map), len(base.item_map), n_ratings,
                         row_bytes, nb) if cfg.shuffle else 1
    # The layout takes the index arrays out of `triples` (its only reference) and
    # frees each as soon as its reordered copy exists: peak memory stays at about one
    # extra copy of the ratings.
    layout = Layout.build(triples, len(base.user_map), len(base.item_map), nb, ns)
    # The parameters are made only now (same random draws: the layout uses none), so
    # they are not resident during the layout's copying, the peak of a fit (100 M
    # ratings, k = 64: 3.11 -> 2.8 GiB, bench/memory.py).
    params = make_params()
    if order is not None:  # the kernel's copies, in its item order (the base's: natural)
        params = Params(params.P, _rows(params.Q, order), params.bu, params.bi[order],
                        params.gu, None if params.gi is None else params.gi[order])
    base = replace(base, user_factors=params.P, item_factors=params.Q, user_bias=params.bu,
                   item_bias=params.bi)
    hyper = hyper_of(cfg, base.kernel_mu)
    sampler = None
    if cfg.ranking:
        su, si = layout.users, layout.items
        if base.seen_indptr is not None:
            # partial_fit: the earlier interactions too (not the rows below min_rating,
            # which fit may draw as negatives as well)
            old_u, old_i = interaction_pairs(base)
            old_i = old_i if order is None else pos[old_i]
            su, si = np.concatenate([old_u, su]), np.concatenate([old_i, si])
            del old_u, old_i
        sampler = make_sampler(layout, len(base.item_map), len(base.user_map),
                               cfg.negative_exponent, (su, si), rng, weighted)
        del su, si
    metric = None
    if evaluate is not None:
        name, score = evaluate
        if order is None:
            metric = (name, lambda: score(base))  # base's arrays are the live parameters
        else:
            metric = (name, lambda: score(replace(base, item_factors=params.Q[pos],
                                                  item_bias=params.bi[pos])))
    ex = LocalExecutor(layout, params, hyper, cfg.n_threads, sampler)
    try:
        res = run_epochs(ex, hyper, n_epochs=n_epochs, n_ratings=denom,
                         rng=rng if cfg.shuffle else None, lr_at=cfg.lr_at, val=val,
                         clip=base.rating_range if cfg.clip and not cfg.ranking else None,
                         early_stopping=cfg.early_stopping,
                         n_iter_no_change=cfg.n_iter_no_change, tol=cfg.tol,
                         epoch_offset=epoch_offset, on_epoch=on_epoch, metric=metric,
                         train_key="train_loss" if cfg.ranking else "train_rmse",
                         interrupts=interrupts,
                         val_unknown=None if base.biased else base.global_mean)
    finally:
        ex.close()
    if res.reason == "diverged":
        w = layout.weights if not cfg.ranking else layout.ratings if weighted else None
        span = 0.0
        if not cfg.ranking and n_ratings:
            span = float(np.max(layout.ratings)) - float(np.min(layout.ratings))
        res.causes = divergence_causes(
            cfg, max_weight=float(np.max(w)) if w is not None and w.size else 1.0,
            rating_span=span)
    if res.epochs_done == 0 and (epoch_offset == 0 or res.reason != "completed"):
        # Nothing to keep: a fit stopped in its first epoch, or a partial_fit that ended
        # before completing one (diverged, interrupted, its callback raised) leaves the
        # model as it was, without the new ids, rows and seen items. (A continued fit that
        # completes has run an epoch: partial_fit refuses n_epochs=0.)
        return None, res
    best = None
    if cfg.early_stopping:
        best = next((r["epoch"] for r in reversed(res.history) if r.get("best")), None)
    # The seen-items record is built from the layout after training, once its
    # ratings are freed, so that it does not add to the peak memory of training.
    layout.ratings = layout.weights = None
    su, si = layout.users, layout.items
    del layout, ex
    base = replace(base, user_accum=params.gu, item_accum=params.gi)
    if order is not None:  # back to the natural item order, aligned like every factor array
        base = replace(base, item_factors=_rows(params.Q, pos), item_bias=params.bi[pos],
                       item_accum=None if params.gi is None else params.gi[pos])
        si = order[si]
    if seen_extra is not None:
        su, si = np.concatenate([su, seen_extra[0]]), np.concatenate([si, seen_extra[1]])
    if base.seen_indptr is None:
        seen = seen_csr(su, si, len(base.user_map))
    else:
        seen = merge_seen(base.seen_indptr, base.seen_items, len(base.user_map), su, si)
    del su, si
    state = replace(base, history=history + res.history,
                    n_epochs=epoch_offset + res.epochs_done, best_epoch=best, n_blocks=nb,
                    seen_indptr=seen[0], seen_items=seen[1],
                    **base.with_low(low_extra))
    return state, res


def _item_order(n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed random order of the item indices, the same for any seed and thread count:
    ``order[k]`` is the item the kernel sees as index k, and ``pos`` its inverse
    (``pos[item]`` = k)."""
    order = np.random.default_rng([0x6D66736764, n_items]).permutation(n_items)
    order = order.astype(np.int32)
    pos = np.empty_like(order)
    pos[order] = np.arange(n_items, dtype=np.int32)
    return order, pos


def _rows(a: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``a[index]`` in a cache-line-aligned array, as the kernel's factor arrays are."""
    out = aligned_empty((index.size, *a.shape[1:]), a.dtype)
    np.take(a, index, axis=0, out=out)
    return out


def epoch_line(row: dict[str, Any]) -> str:
    """One ``history_`` row as the progress line of ``verbose`` and the command line:
    ``epoch   3  train_rmse 0.9012  val_rmse 0.9311  0.052s`` (``train_loss`` and e.g.
    ``val_ndcg@10`` for a ranking loss)."""
    train = next(k for k in ("train_rmse", "train_loss") if k in row)
    extra = "".join(f"  {k} {v:.4f}" for k, v in row.items() if k.startswith("val_"))
    return f"epoch {row['epoch']:>3}  {train} {row[train]:.4f}{extra}  {row['seconds']:.3f}s"


def check_callback(callback: Any) -> None:
    """``callback=`` of fit / partial_fit: None or a callable, checked before training
    starts. Called after the first epoch, a non-callable would stop training there like
    a raising callback, and the fitted model would be replaced by that one epoch."""
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be None or a callable taking each epoch's record "
                        f"(a dict); got {type(callback).__name__}.")


class EpochReporter:
    """The per-epoch hook of a local fit: the ``verbose`` line, then the user's callback.
    A callback that raises stops training like Ctrl-C (the model keeps the last completed
    epoch); ``error`` then holds its exception, which raise_for re-raises."""

    def __init__(self, verbose: bool, callback: Callable | None) -> None:
        self.verbose, self.callback = verbose, callback
        self.error: BaseException | None = None

    def __call__(self, row: dict[str, Any]) -> None:
        if self.verbose:
            print(epoch_line(row), flush=True)
        if self.callback is not None:
            try:
                self.callback(dict(row))  # a copy: history_ keeps what training recorded
            except BaseException as e:  # stop like Ctrl-C, then re-raise it
                self.error = e
                raise KeyboardInterrupt from e


def fit_new(cfg: Any, cols: list, *,
            rng: np.random.Generator, eval_set: Any, on_epoch: Callable | None,
            weights: np.ndarray | None = None, dropped: tuple | None = None,
            rank_eval: Callable | None = None,
            interrupts: HeldInterrupt | None = None) -> tuple[FittedState | None, TrainResult]:
    """A fit from scratch on ``cols = [users, items, ratings]``: maps the ids, holds out
    the validation ratings (``eval_set``, or ``cfg.validation_fraction`` under early
    stopping), computes mu and the rating range, and trains ``cfg.n_epochs`` epochs.
    The list is emptied: the caller passes its only references to the arrays, so that
    they are freed as soon as the layout has its copy (ids already 0..n-1 in int32 are
    their own index arrays: a reference kept by a caller's frame would keep them alive
    beside that copy).

    With a ranking loss, ``ratings`` are the interactions' weights (ones when
    unweighted; ``weights`` is then None), ``dropped`` is the (users, items) of the rows
    ``min_rating`` dropped (read_training's fourth value: recorded as seen, not trained
    on), mu is 0, and the validation pairs are scored
    by ``rank_eval(state, user rows, item rows, training seen CSR)``."""
    users, items, ratings = cols
    cols.clear()
    umap, uidx = IdMap.fit("users", users)
    imap, iidx = IdMap.fit("items", items)
    del users, items
    n_trained = len(umap)
    umap, low = _low_pairs(dropped, umap, imap)
    trained_rows = None  # where the users with kept rows are, once low-only users joined
    if len(umap) > n_trained:
        # Users known only from low rows join in sorted order (they were appended), so
        # that user_ids_ is sorted after fit as for any other (and as Popularity's):
        # np.searchsorted(user_ids_, ids) finds rows. The rows are renumbered, the
        # trained users keep their initial draws (make_params scatters them).
        order = np.argsort(umap.ids, kind="stable")
        rank = np.empty(order.size, dtype=np.int32)
        rank[order] = np.arange(order.size, dtype=np.int32)
        umap, uidx = IdMap(umap.ids[order]), rank[uidx]
        low = (rank[low[0]], low[1])
        trained_rows = rank[:n_trained]
        del order, rank
    # With min_rating the seen record also holds the rows it dropped, so the model keeps
    # its interactions (the rows it kept, held-out ones too) per user and item apart: the
    # popularity, and who has none.
    counts = {}
    if cfg.ranking and cfg.min_rating is not None:
        counts = {"user_counts": plus_counts(None, uidx, len(umap)),
                  "item_counts": plus_counts(None, iidx, len(imap)),
                  **no_low()}  # and the low rows apart (low_extra below adds them)
    val, held, vpairs = None, None, None
    if eval_set is not None and cfg.ranking:
        vpairs = eval_pairs(eval_set, columns=cfg.columns, user_map=umap, item_map=imap,
                            min_rating=cfg.min_rating)
    elif eval_set is not None:
        val = eval_indices(eval_set, columns=cfg.columns, user_map=umap, item_map=imap,
                           dtype=cfg.dtype)
    elif cfg.early_stopping:
        if cfg.ranking:
            # Repeated rows of a pair (plays, clicks) are common: a held-out row whose
            # copy stays in training is left out of its user's ranking and can never be
            # a hit (the metric was 0 in every epoch). So the hold-out draws distinct
            # (user, item) pairs, and every row of a chosen pair goes to validation.
            n_i = np.int64(len(imap))
            pairs, inverse = np.unique(uidx * n_i + iidx, return_inverse=True)
            chosen = hold_out(pairs // n_i, pairs % n_i, len(umap), len(imap),
                              cfg.validation_fraction, rng, "user-item pairs")
            pva = np.flatnonzero(chosen)
            in_va = chosen[inverse.reshape(-1)]
            tr, va = np.flatnonzero(~in_va), np.flatnonzero(in_va)
            del inverse, chosen, in_va
            vpairs = ((pairs[pva] // n_i).astype(np.int32), (pairs[pva] % n_i).astype(np.int32))
            # held-out rows still count as seen by their users, each row (the counts
            # of a model without min_rating come from this record: a pair of 3 plays
            # counts 3, as when it trains)
            held = (uidx[va], iidx[va])
            del pairs
        else:
            in_va = hold_out(uidx, iidx, len(umap), len(imap), cfg.validation_fraction, rng)
            tr, va = np.flatnonzero(~in_va), np.flatnonzero(in_va)
            del in_va
            val = (uidx[va], iidx[va], ratings[va])
            held = (uidx[va], iidx[va])  # held-out ratings still count as seen by their users
        if low is not None:
            held = (np.concatenate([held[0], low[0]]), np.concatenate([held[1], low[1]]))
        uidx, iidx, ratings = uidx[tr], iidx[tr], ratings[tr]
        if weights is not None:
            weights = weights[tr]
        # read_training refused all-zero weights before the split; the hold-out may
        # still take every positive-weight row (a ranking loss's weights are `ratings`)
        _refuse_zero_weights(ratings if cfg.ranking else weights,
                             f"lower validation_fraction (now {cfg.validation_fraction}) "
                             "or pass eval_set",
                             " left for training by the validation_fraction hold-out")
    evaluate = None
    if vpairs is not None and rank_eval is not None:
        known = (vpairs[0] >= 0) & (vpairs[1] >= 0)
        if vpairs[0].size and not known.any():
            raise ValueError(
                f"eval_set has {vpairs[0].size} interaction(s), but none of a user and an "
                "item both in the training data, so no ranking metric can be computed (and "
                "early stopping would stop blindly); pass validation pairs of known users "
                "and items.")
        vu, vi = vpairs[0][known], vpairs[1][known]
        tu, ti = (uidx, iidx) if low is None else (np.concatenate([uidx, low[0]]),
                                                   np.concatenate([iidx, low[1]]))
        train_seen = seen_csr(tu, ti, len(umap))  # only training items are excluded
        # A training pair is left out of its user's ranking, so as a validation pair it
        # can never be a hit. Such pairs still count (the metric is mfsgd.metrics' value,
        # as ranking_metrics(train=...) counts them), but an eval_set made only of them
        # (e.g. eval_set=X) would score 0 in every epoch: refused.
        n_imap = np.int64(len(imap))
        fresh = ~np.isin(vu * n_imap + vi, tu * n_imap + ti)
        del tu, ti
        if vu.size and not fresh.any():
            src = "eval_set" if eval_set is not None else \
                f"the validation_fraction={cfg.validation_fraction} hold-out"
            raise ValueError(
                f"{src} has {vpairs[0].size} interaction(s), but all of known users and "
                "items are training pairs, which are left out of their user's ranking, so "
                "no ranking metric can be computed (and early stopping would stop "
                "blindly); pass validation pairs that are not in the training data.")
        del fresh
        name = f"{cfg.eval_metric[0]}@{cfg.eval_metric[1]}"
        evaluate = (name, lambda st: rank_eval(st, vu, vi, train_seen))
    if cfg.ranking:
        mean = 0.0  # no mu in a ranking model (it cancels)
    elif weights is not None:
        # the weights are not all 0 (read_training refuses that); sum them in float64
        mean = float(np.sum(ratings * weights.astype(np.float64))
                     / np.sum(weights, dtype=np.float64))
    else:
        mean = float(np.mean(ratings, dtype=np.float64))

    def make_params() -> Params:
        P = init_rows(rng, n_trained, cfg.n_factors, cfg.dtype, cfg.init_std, cfg.nonnegative)
        if trained_rows is not None:  # users known only from low rows: zero factors
            full = aligned_empty((len(umap), P.shape[1]), P.dtype)
            full[:] = 0
            full[trained_rows] = P
            P = full
        return Params(
            P,
            init_rows(rng, len(imap), cfg.n_factors, cfg.dtype, cfg.init_std, cfg.nonnegative),
            np.zeros(len(umap), dtype=cfg.dtype), np.zeros(len(imap), dtype=cfg.dtype),
            *(fresh_accumulators(len(umap), len(imap), cfg.dtype) if cfg.adagrad else ()))

    rr = (0.0, 0.0) if cfg.ranking else (float(ratings.min()), float(ratings.max()))
    base = FittedState(mean, None, None, None, None, umap, imap, rr,  # type: ignore[arg-type]
                       cfg.biased, cfg.n_factors, loss=cfg.loss, **counts)
    triples = [uidx, iidx, ratings] if weights is None else [uidx, iidx, ratings, weights]
    del uidx, iidx, ratings, weights  # train_local frees them once the layout has its copy
    if held is None:
        held = low
    return train_local(cfg, base, make_params, triples, rng, val, cfg.n_epochs,
                       epoch_offset=0, history=[], on_epoch=on_epoch, seen_extra=held,
                       low_extra=low, weighted=cfg.ranking and not _all_ones(triples[2]),
                       evaluate=evaluate,
                       interrupts=interrupts)


def _low_pairs(pairs: tuple | None, umap: IdMap, imap: IdMap,
               new_users: bool = True) -> tuple[IdMap, tuple | None]:
    """The user map grown with the users known only from ``pairs`` (raw ids: the rows
    min_rating dropped), and the (user, item) rows of those pairs whose item is in the
    model (None when there are none). They are recorded as seen, not trained on: such a
    user joins the model with no interaction (zero factors; served the most popular
    items, without their seen ones), and an item known only from them stays unknown.
    ``new_users=False`` keeps only the pairs of users already in ``umap``."""
    if pairs is None or len(pairs[0]) == 0:
        return umap, None
    i = imap.lookup("items", pairs[1])
    known = i >= 0
    if not new_users:
        u = umap.lookup("users", pairs[0])
        known &= u >= 0
        return umap, (u[known], i[known]) if known.any() else None
    if not known.any():
        return umap, None
    umap, u = umap.extended("users", pairs[0][known])
    return umap, (u, i[known])


def own_counts(st: FittedState) -> FittedState:
    """``st`` with counts of its own (user_counts, item_counts) and a record of low rows,
    so that rows recorded as seen but not interactions (min_rating's) stay out of them:
    a state without them (fitted without min_rating, or loaded from an older file)
    starts from its seen record's counts and no low row."""
    if st.user_counts is not None or st.seen_indptr is None:
        return st
    return replace(st, user_counts=st.support("user"), item_counts=st.support("item"),
                   **no_low())


def record_low(st: FittedState, pairs: tuple | None, new_users: bool = True,
               refold: bool = False) -> FittedState | None:
    """``st`` with ``pairs`` (raw ids: rows min_rating dropped) recorded as seen, not
    trained on: users new to the model join it with zero factors and no interaction
    (unless ``new_users`` is False: their pairs are left out). None when no pair has an
    item the model knows: nothing to record. ``refold`` (fold_in's rows): only the pairs
    the record does not hold yet join it (see :func:`unrecorded`)."""
    st = own_counts(st)
    umap, low = _low_pairs(pairs, st.user_map, st.item_map, new_users)
    if low is None:
        return None
    if refold:
        old_users = np.where(low[0] < len(st.user_map), low[0], -1)
        keep = unrecorded(st, old_users, low[1], low=True)
        low = (low[0][keep], low[1][keep])
    grow = len(umap) - len(st.user_map)

    def with_zeros(a: np.ndarray, fill: float = 0) -> np.ndarray:
        # the new users' rows (zero factors: no interaction), appended past the rows
        # older states hold; no growth: the state's own array (never written)
        return a if grow == 0 else appended(a, np.full((grow, *a.shape[1:]), fill, a.dtype))

    acc = {}
    if st.user_accum is not None:
        acc["user_accum"] = with_zeros(st.user_accum, 1) if \
            len(st.user_accum) == len(st.user_map) else st.accumulators(len(umap))[0]
    none = np.empty(0, dtype=np.int32)
    seen = merge_seen(*st.seen(), len(umap), *low)
    return replace(st, user_map=umap, user_factors=with_zeros(st.user_factors),
                   user_bias=with_zeros(st.user_bias), seen_indptr=seen[0],
                   seen_items=seen[1], **acc, **st.with_low(low, len(umap)),
                   **st.counted(none, none, len(umap), len(st.item_map))
                   ).keeping(st.derived_of_side("item") if grow else  # the items unchanged;
                             # no user added: every array is, only the seen record is not
                             st.derived_where(lambda key: key[0] != "support"))


def _all_ones(a: np.ndarray) -> bool:
    """The placeholder weights of an unweighted ranking fit (the kernel then runs its
    unweighted loop)."""
    return bool(a.size == 0 or (a.min() == 1 and a.max() == 1))


def fit_more(cfg: Any, st: FittedState, users: np.ndarray, items: np.ndarray,
             ratings: np.ndarray, *, rng: np.random.Generator, n_epochs: int,
             on_epoch: Callable | None, weights: np.ndarray | None = None,
             dropped: tuple | None = None,
             interrupts: HeldInterrupt | None = None) -> tuple[FittedState | None, TrainResult]:
    """``n_epochs`` more epochs from the fitted state ``st`` on these ratings: new users
    and items grow the model (rows drawn as in a fit), mu stays, the rating range widens.
    ``weights`` and ``dropped`` as for fit_new. A batch of only rows that min_rating
    dropped trains nothing: they join the seen record (their new users the model, with
    zero factors), and no epoch runs."""
    if cfg.ranking and cfg.min_rating is not None:
        st = own_counts(st)
    if len(users) == 0:  # only rows min_rating dropped: recorded as seen, nothing to train
        return record_low(st, dropped), TrainResult([], 0, "completed")
    umap, uidx = st.user_map.extended("users", users)
    imap, iidx = st.item_map.extended("items", items)
    del users, items
    n_trained = len(umap)
    umap, low = _low_pairs(dropped, umap, imap)
    grow_u, grow_i = n_trained - len(st.user_map), len(imap) - len(st.item_map)
    counts = st.counted(uidx, iidx, len(umap), len(imap))

    def make_params() -> Params:
        new_rows = [init_rows(rng, g, cfg.n_factors, cfg.dtype, cfg.init_std, cfg.nonnegative)
                    for g in (grow_u, grow_i)]
        if len(umap) > n_trained:  # users known only from low rows: zero factors
            new_rows[0] = grown(new_rows[0], len(umap) - n_trained)
        # AdaGrad continues each row's accumulator where the last fit left it (new rows,
        # and every row of a state without them, start at 1 as in a fit): restarting them
        # took every step back to the base rate, and one epoch of partial_fit on the
        # fit's own data then cost a tuned ranking model up to a third of its NDCG@10.
        acc = st.accumulators(len(umap), len(imap)) if cfg.adagrad else ()
        return Params(grown(st.user_factors, new_rows[0]), grown(st.item_factors, new_rows[1]),
                      grown(st.user_bias, len(umap) - len(st.user_map)),
                      grown(st.item_bias, grow_i), *acc)

    rr = st.rating_range if cfg.ranking else (min(st.rating_range[0], float(ratings.min())),
                                              max(st.rating_range[1], float(ratings.max())))
    base = replace(st, user_map=umap, item_map=imap, rating_range=rr, **counts)
    triples = [uidx, iidx, ratings] if weights is None else [uidx, iidx, ratings, weights]
    del uidx, iidx, ratings, weights
    return train_local(cfg, base, make_params, triples, rng, None, n_epochs,
                       epoch_offset=st.n_epochs, history=list(st.history), on_epoch=on_epoch,
                       seen_extra=low, low_extra=low,
                       weighted=cfg.ranking and not _all_ones(triples[2]),
                       interrupts=interrupts, update=True)
