"""Distributed stratified SGD (DSGD, Gemulla et al. 2011) on a Dask cluster.

The schedule is the single-machine one (see ``_training``): the same P x P grid of
blocks, the same cells inside blocks, the same strata, segment order and shuffle seeds,
drawn on the client from the same generator. Only the placement differs: the rating
block (r, c) lives on the worker that owns user block r, and each sub-epoch (stratum)
runs one task per worker, holding that worker's blocks of the stratum: it receives their
user-factor blocks r and item-factor blocks c as task inputs and returns them updated.
Item-factor blocks therefore travel to the next owner once per sub-epoch:
n_items x k x itemsize bytes per sub-epoch in total.

Inside a task the blocks run on the worker's kernel threads exactly as the local
``EpochRunner`` runs a stratum (largest block first to the least loaded thread, each
block's segments in plan order on one thread). Blocks of a stratum share no user and no
item row, so the model does not depend on the thread count, the worker count or timing:
it equals the local fit with the same n_blocks, bit for bit.

The tasks are pure (they copy their inputs before the kernel writes), so when a worker
dies Dask recomputes lost results from their lineage and gets the same numbers.

Imported only when a Dask collection is passed to ``fit``: dask is an optional extra.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import io
import math
import operator
import os
import stat
import time
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from . import _sgd
from . import _training as T
from ._config import AUTO_PARAMS, LOSSES, FitConfig, fit_rng, resolved
from ._data import check_columns, eval_indices, refuse_constant_range, resolve_columns
from ._fileio import check_writable
from ._idmap import IdMap, sorted_unique
from ._state import (
    FittedState,
    aligned_concat,
    counts_of,
    init_rows,
    padded_width,
    seen_csr,
)
from ._validation import check_ratings
from .exceptions import ModelFileError
from .persistence import (
    read_model,
    read_model_file,
    stored_params,
    write_model,
    write_model_file,
)

# ---- tasks (run on workers; module-level so they pickle by reference) -------------------

def _part_ids(df: Any, ucol: str, icol: str, rcol: str, dtype: str, part: int,
              n_parts: int) -> tuple:
    """Distinct user and item ids of partition ``part`` (of ``n_parts``), its size, sum,
    min and max rating. This first pass checks every partition's columns and values as a
    local fit checks its data; an error names the partition (its positions count within
    it), and a partition that lacks a column the collection's meta promised (a bare
    KeyError, before) is refused as such."""
    from ._idmap import normalize_ids, refuse_empty

    where = f"partition {part} (of {n_parts}) of the Dask DataFrame"
    check_columns(getattr(df, "columns", []), (ucol, icol, rcol), where)
    try:
        u = normalize_ids("users", df[ucol])
        i = normalize_ids("items", df[icol])
        r = check_ratings(df[rcol], np.dtype(dtype))
        su, si = sorted_unique(u), sorted_unique(i)
        refuse_empty("users", su, lambda k: u == su[k])
        refuse_empty("items", si, lambda k: i == si[k])
    except (ValueError, TypeError) as e:
        rows = ", positions counted from its first row" if "position" in str(e) else ""
        raise type(e)(f"{where}{rows}: {e}") from None
    if r.size == 0:
        return su, si, 0, 0.0, math.inf, -math.inf
    return su, si, r.size, float(np.sum(r, dtype=np.float64)), float(r.min()), float(r.max())


def _all_ids(name: str, parts: list[np.ndarray]) -> np.ndarray:
    """The sorted distinct ids of all partitions (each normalised alone: int64, uint64
    or str). np.concatenate would turn int64 and uint64 into float64 (merging ids) and
    ints beside strings into strings (merging 1 and "1"): refuse what one local column
    could not hold either."""
    kinds = {p.dtype.kind for p in parts if p.size}
    if "U" in kinds and kinds != {"U"}:
        raise TypeError(f"{name} mixes id types (int, str) across the partitions; use one "
                        "type for all ids, e.g. convert them with .astype(str).")
    if kinds == {"i", "u"}:
        if any(p.dtype.kind == "i" and p.size and p.min() < 0 for p in parts):
            raise ValueError(f"{name} holds ids beyond the int64 range in some partitions "
                             "and negative ids in others; no integer type holds both: use "
                             "string ids.")
        parts = [p.astype(np.uint64) for p in parts]
    out = sorted_unique(np.concatenate(parts))
    return out.astype(str) if out.dtype.kind == "U" else out


def _part_map(df: Any, ucol: str, icol: str, rcol: str, dtype: str, uids: np.ndarray,
              iids: np.ndarray) -> tuple:
    """Indices (int32), ratings (model dtype) and per-row counts of one partition."""
    u = IdMap(uids).lookup("users", df[ucol])
    i = IdMap(iids).lookup("items", df[icol])
    r = check_ratings(df[rcol], np.dtype(dtype))
    return u, i, r, counts_of(u, uids.size), counts_of(i, iids.size), _fingerprint(u, i, r)


def _fingerprint(u: np.ndarray, i: np.ndarray, r: np.ndarray) -> int:
    """A 64-bit sum of a hash of each (user, item, rating) row: the same for the same
    rows in any order and any partitioning, so a checkpoint knows its data (the same
    ids, range and mean do not tell other ratings apart; review 20)."""
    x = u.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    x ^= i.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
    x ^= r.view(np.uint32 if r.dtype.itemsize == 4 else np.uint64).astype(np.uint64)
    for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):  # splitmix64
        x ^= x >> np.uint64(shift)
        x *= np.uint64(mult)
    x ^= x >> np.uint64(31)
    return int(np.sum(x, dtype=np.uint64))  # wraps: a sum modulo 2**64


def _part_split(mapped: tuple, key_u: np.ndarray, key_i: np.ndarray, p: int, s: int,
                ustart: np.ndarray, istart: np.ndarray) -> tuple:
    """One partition cut into its P*P block pieces (stable), with local row indices and
    the cell of each rating inside its block; plus the partition's global cell counts."""
    u, i, r = mapped[:3]
    cell = key_u[u].astype(np.int64) + key_i[i]
    ss = s * s
    block = cell // ss
    counts = np.bincount(cell, minlength=p * p * ss)
    order = np.argsort(block, kind="stable")
    bounds = np.searchsorted(block[order], np.arange(p * p + 1))
    pieces = []
    for b in range(p * p):
        sel = order[bounds[b]:bounds[b + 1]]
        rb, cb = divmod(b, p)
        pieces.append(((u[sel] - ustart[rb]).astype(np.int32),
                       (i[sel] - istart[cb]).astype(np.int32), r[sel],
                       (cell[sel] - b * ss).astype(np.int32)))
    return pieces, counts


def _block_assemble(*parts: tuple, b: int = 0, s: int = 1) -> tuple:
    """The ratings of block b from every partition, in partition order, sorted by cell
    (stable): the order the single-machine layout stores them in."""
    pieces = [p[0][b] for p in parts]
    u = np.concatenate([x[0] for x in pieces])
    i = np.concatenate([x[1] for x in pieces])
    r = np.concatenate([x[2] for x in pieces])
    cell = np.concatenate([x[3] for x in pieces])
    counts = np.zeros(s * s, np.int64)
    _sgd.count_keys(cell, counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    out = []
    for a in (u, i, r):
        o = np.empty_like(a)
        _sgd.scatter_by_key(cell, a, starts.copy(), o)
        out.append(o)
    seg_ptr, _ = T.segments(counts)
    return out[0], out[1], out[2], seg_ptr


def _block_run(block: tuple, P: np.ndarray, bu: np.ndarray, Q: np.ndarray, bi: np.ndarray,
               segs: np.ndarray, seeds: np.ndarray | None, hyper: T.Hyper) -> tuple:
    """One block's share of a sub-epoch: the kernel on copies (tasks stay pure, so a
    recomputation after a lost worker gives the same result)."""
    u, i, r, seg_ptr = block
    # Arrays deserialised from other processes may sit at any byte offset: the kernel
    # reads int64/uint64 through typed pointers, so give it aligned, contiguous copies.
    seg_ptr = np.require(seg_ptr, requirements="CA")
    segs = np.require(segs, requirements="CA")
    seeds = None if seeds is None else np.require(seeds, requirements="CA")
    # The kernel never writes the triples, so they are copied only when deserialisation
    # left them misaligned (UBSan caught such reads; np.require copies only then). The
    # parameters are copied: tasks stay pure, and aligned rows run the fixed-width body.
    u, i, r = (np.require(a, requirements="CA") for a in (u, i, r))
    P, Q = aligned_concat([P]), aligned_concat([Q])
    bu, bi = bu.copy(), bi.copy()
    sse = np.zeros(segs.size)
    empty = np.empty(0, P.dtype)
    _sgd.sgd_segments(u, i, r, seg_ptr, segs, seeds, P, Q, bu, bi, hyper.mu, hyper.lr,
                      hyper.reg_f, hyper.reg_b, hyper.use_bias, hyper.nonneg, sse, empty, empty)
    return (u, i, r, seg_ptr), P, bu, Q, bi, sse


def _blocks_run(blocks: list, Ps: list, bus: list, Qs: list, bis: list, segs: list,
                seeds: list, sizes: np.ndarray, hyper: T.Hyper, n_threads: int) -> tuple:
    """One worker's blocks of a stratum on ``n_threads`` kernel threads, as the local
    path runs a stratum: blocks go to threads largest first (``_training._assign``), each
    block's segments run in plan order on one thread (``_block_run``; the kernel releases
    the GIL). The blocks share no rows and each works on its own copies, so the results
    do not depend on n_threads. Returns one ``_block_run`` result per block, in order."""
    jobs = list(zip(blocks, Ps, bus, Qs, bis, segs, seeds, strict=True))
    out: list = [None] * len(jobs)

    def run(group: list[int]) -> None:
        for j in group:
            out[j] = _block_run(*jobs[j], hyper)

    groups = T._assign(np.asarray(sizes), max(1, min(n_threads, len(jobs))))
    if len(groups) == 1:
        run(groups[0])
    else:
        with cf.ThreadPoolExecutor(len(groups) - 1, thread_name_prefix="mfsgd-dask") as pool:
            futs = [pool.submit(run, g) for g in groups[1:]]
            run(groups[0])
            for f in futs:
                f.result()
    return tuple(out)


def _pick(res: tuple, j: int, m: int) -> Any:
    """Output m of block j of a ``_blocks_run`` result."""
    return res[j][m]


def _block_pairs(block: tuple, ustart: int, istart: int) -> tuple:
    return block[0].astype(np.int32) + np.int32(ustart), block[1] + np.int32(istart)


# ---- the driver (client side) --------------------------------------------------------------

class DaskExecutor(T.Executor):
    """Epochs on a Dask cluster: the parameters are lists of futures, one per user block
    (P, bu) and per item block (Q, bi); a snapshot is a copy of those lists, so keeping
    the last good epoch costs nothing but keeping its futures alive."""

    def __init__(self, client: Any, skeleton: T.Layout, blocks: dict, owner: list,
                 threads: dict[str, int], params: tuple[list, list, list, list], epoch: int,
                 tag: str, callback: Callable | None, width: int, dtype: np.dtype) -> None:
        self.width, self.dtype = width, dtype  # of the factor rows (padded)
        self.client, self.skeleton, self.blocks, self.owner = client, skeleton, blocks, owner
        self.threads = threads  # kernel threads per worker address
        self.workers = {w: n for n, w in enumerate(dict.fromkeys(owner))}  # for task names
        self.P, self.bu, self.Q, self.bi = (list(x) for x in params)
        self.epoch, self.tag, self.callback = epoch, tag, callback
        self.seg_lo = np.searchsorted(skeleton.seg_block,
                                      np.arange(skeleton.n_blocks ** 2 + 1))
        self.held: list = []  # the last epoch's multi-output results: lineage of the pieces

    def run_epoch(self, hyper: T.Hyper, rng: np.random.Generator | None) -> float:
        from distributed import wait

        self.epoch += 1
        e, P_, c = self.epoch, self.skeleton.n_blocks, self.client
        with _failures():
            sse_parts, held = [], []
            for t, st in enumerate(T.epoch_plan(self.skeleton, rng)):
                # The stratum's blocks, grouped by the worker that owns their user block:
                # one task per worker, running its blocks on that worker's threads.
                groups: dict[str, list[int]] = {}
                for j in range(st.block_bounds.size - 1):
                    b = int(self.skeleton.seg_block[st.segments[st.block_bounds[j]]])
                    groups.setdefault(self.owner[b // P_], []).append(j)
                futs = []
                for w, js in groups.items():
                    ids, segs, seeds = [], [], []
                    for j in js:
                        lo, hi = st.block_bounds[j], st.block_bounds[j + 1]
                        gsegs = st.segments[lo:hi]
                        b = int(self.skeleton.seg_block[gsegs[0]])
                        ids.append((b, *divmod(b, P_), gsegs))
                        segs.append((gsegs - self.seg_lo[b]).astype(np.int64))
                        seeds.append(None if st.seeds is None else st.seeds[lo:hi])
                    res = c.submit(_blocks_run, [self.blocks[b] for b, *_ in ids],
                                   [self.P[rb] for _, rb, _, _ in ids],
                                   [self.bu[rb] for _, rb, _, _ in ids],
                                   [self.Q[cb] for _, _, cb, _ in ids],
                                   [self.bi[cb] for _, _, cb, _ in ids], segs, seeds,
                                   st.block_sizes[js], hyper, self.threads.get(w, 1),
                                   workers=[w], allow_other_workers=True, pure=False,
                                   key=f"mfsgd-e{e}-s{t + 1}-worker-{self.workers[w]}-"
                                       f"{self.tag}")
                    held.append(res)
                    for k, (b, rb, cb, gsegs) in enumerate(ids):
                        self.blocks[b] = c.submit(_pick, res, k, 0, pure=False)
                        self.P[rb] = c.submit(_pick, res, k, 1, pure=False)
                        self.bu[rb] = c.submit(_pick, res, k, 2, pure=False)
                        self.Q[cb] = c.submit(_pick, res, k, 3, pure=False)
                        self.bi[cb] = c.submit(_pick, res, k, 4, pure=False)
                        sse_f = c.submit(_pick, res, k, 5, pure=False)
                        futs.append(sse_f)
                        sse_parts.append((gsegs, sse_f))
                wait(futs)  # the barrier of the sub-epoch
                if self.callback is not None:
                    self.callback({"epoch": e, "stratum": t + 1, "n_strata": P_})
            sse = np.zeros(self.skeleton.n_segments)
            got = c.gather([f for _, f in sse_parts])
            for (gsegs, _), vals in zip(sse_parts, got, strict=True):
                sse[gsegs] = vals
            self.held = held
            return float(sse.sum())

    def snapshot(self, into: Any = None) -> tuple[list, list, list, list]:
        return list(self.P), list(self.bu), list(self.Q), list(self.bi)

    def restore(self, snap: tuple[list, list, list, list]) -> None:
        self.P, self.bu, self.Q, self.bi = (list(x) for x in snap)

    def params(self) -> T.Params:
        with _failures():
            got = self.client.gather([self.P, self.bu, self.Q, self.bi])
        return T.Params(np.concatenate(got[0]), np.concatenate(got[2]),
                        np.concatenate(got[1]), np.concatenate(got[3]))

    def all_finite(self, mu: float) -> bool:
        # Reduced on the workers: each piece sends back two numbers, not its rows.
        with _failures():
            ext = self.client.gather([[self.client.submit(_extremes, f, pure=False) for f in part]
                                      for part in (self.P, self.Q, self.bu, self.bi)])
        return T.all_finite_from(ext, mu, self.width, self.dtype)

    def rmse(self, val: tuple, mu: float, clip: tuple[float, float] | None,
             unknown: float | None = None) -> float:
        return T.rmse_of(self.params(), mu, *val, *(clip if clip is not None else (None, None)),
                         unknown=unknown)


@contextlib.contextmanager
def _failures() -> Any:
    """Errors of the cluster (lost workers beyond recovery, cancelled futures) become
    ExecutorFailure, which the epoch loop reports as "failed" keeping the last good
    epoch; the user's own mistakes (TypeError, ValueError) stay what they are."""
    try:
        yield
    except (TypeError, ValueError):
        raise
    except Exception as exc:
        raise T.ExecutorFailure(exc) from exc


def _extremes(a: np.ndarray) -> tuple[float, float]:
    return (float(a.max()), float(a.min())) if a.size else (0.0, 0.0)


def fit_dask(ddf: Any, client: Any, cfg: FitConfig, *, random_state: Any,
             params: dict[str, Any], eval_set: Any = None,
             callback: Callable | None = None, checkpoint: str | None = None,
             resume: bool = False, threads_per_worker: int | None = None,
             ) -> tuple[FittedState | None, T.TrainResult, int]:
    """Fit on a Dask DataFrame of user, item, rating columns.

    ``params`` (the estimator's get_params) is stored in checkpoints.
    ``threads_per_worker`` (validated by the caller) is the number of kernel threads
    each worker's task uses; None: each worker's own ``nthreads``. Returns the fitted
    state (None when nothing may be kept), how training ended, and the epochs that a
    resumed checkpoint had already done."""
    from distributed import wait

    checkpoint = check_checkpoint(checkpoint, resume)
    if cfg.ranking:
        raise ValueError(f"loss={cfg.loss!r} is not supported with a Dask collection yet "
                         "(only loss='squared'); compute the data and fit locally.")
    if cfg.adagrad or cfg.early_stopping and eval_set is None:
        what = "adagrad" if cfg.adagrad else "early_stopping without eval_set"
        raise ValueError(f"{what} is not supported with a Dask collection yet; fit without it "
                         "or compute the data and fit locally.")
    # the usual names (userId, movieId...) recognised as for a local DataFrame
    ucol, icol, rcol = resolve_columns(list(getattr(ddf, "columns", [])), cfg.columns)
    check_columns(getattr(ddf, "columns", []), (ucol, icol, rcol), "the Dask DataFrame")
    dtype = np.dtype(cfg.dtype).name
    dt = np.dtype(dtype)
    nthreads = client.nthreads()
    if not nthreads:  # the tasks below would wait for one forever
        raise ValueError("the Dask cluster has no workers; start some (or wait for them: "
                         "client.wait_for_workers(1)) before fitting.")
    parts = client.compute(ddf[[ucol, icol, rcol]].to_delayed())

    # 1. one pass for ids, count, mean and range
    stats = client.gather([client.submit(_part_ids, df, ucol, icol, rcol, dtype, k,
                                         len(parts), pure=False)
                           for k, df in enumerate(parts)])
    n = sum(x[2] for x in stats)
    if n == 0:
        raise ValueError("fit needs at least one rating; got an empty Dask DataFrame.")
    uids = _all_ids("users", [x[0] for x in stats])
    iids = _all_ids("items", [x[1] for x in stats])
    mean = sum(x[3] for x in stats) / n
    rr = (min(x[4] for x in stats), max(x[5] for x in stats))
    refuse_constant_range(n, *rr)
    uids_f, iids_f = client.scatter([uids, iids], broadcast=True)
    mapped = [client.submit(_part_map, df, ucol, icol, rcol, dtype, uids_f, iids_f, pure=False)
              for df in parts]
    del parts
    nu, ni = uids.size, iids.size
    counts = client.gather([client.submit(lambda m: (m[3], m[4], m[5]), m) for m in mapped])
    cu = np.sum([c[0] for c in counts], axis=0)
    ci = np.sum([c[1] for c in counts], axis=0)
    data_key = f"{sum(c[2] for c in counts) % 2**64:016x}"  # the checkpoint's data

    # 2. the grid, exactly as the single-machine fit would choose it for as many threads
    # as the cluster's workers run the kernel on (2 blocks per thread)
    threads = {w: threads_per_worker or int(n) for w, n in nthreads.items()}
    P_ = cfg.n_blocks or T.default_n_blocks(max(cfg.n_threads, sum(threads.values())), n)
    if cfg.n_blocks is not None and P_ > 1 and n < T.MIN_CELL_RATINGS * P_ * P_:
        # Each epoch runs P_ sub-epochs, each a round of tasks (one per worker) and a
        # barrier: on 3,000 ratings, 32 blocks took 14 s per epoch (0.5 s with 4) and 255
        # did not finish an epoch in minutes. (One block cannot be fewer: no warning.)
        warnings.warn(
            f"n_blocks={P_} cuts {n} ratings into {P_ * P_} blocks of about "
            f"{n // (P_ * P_)} ratings, and every epoch runs {P_} sub-epochs, each a round "
            "of Dask tasks and a barrier: the scheduling will cost far more than the "
            "training. Use fewer blocks (None chooses 2 per kernel thread of the cluster).",
            UserWarning, stacklevel=4)
    row_bytes = padded_width(cfg.n_factors, dtype) * np.dtype(dtype).itemsize
    S = T.default_n_cells(nu, ni, n, row_bytes, P_) if cfg.shuffle else 1
    fu, fi = T.split_by_counts(cu, P_ * S), T.split_by_counts(ci, P_ * S)
    key_u, key_i = T.cell_keys(fu, fi, P_, S)
    ublock, iblock = fu // S, fi // S
    ustart = np.searchsorted(ublock, np.arange(P_ + 1))
    istart = np.searchsorted(iblock, np.arange(P_ + 1))
    split = [client.submit(_part_split, m, key_u, key_i, P_, S, ustart, istart, pure=False)
             for m in mapped]
    del mapped
    cell_sizes = np.sum(client.gather([client.submit(operator.getitem, x, 1) for x in split]),
                        axis=0)
    skeleton = T.Layout.skeleton(cell_sizes, P_, S)
    # the workers of the same snapshot as their thread counts: a second query of the
    # scheduler once came back empty in CI (a ZeroDivisionError below)
    workers = list(threads)
    owner = [workers[r % len(workers)] for r in range(P_)]
    blocks = {}
    for b in range(P_ * P_):
        rb = b // P_
        blocks[b] = client.submit(_block_assemble, *split, b=b, s=S, workers=[owner[rb]],
                                  allow_other_workers=True, key=f"mfsgd-layout-block-{b}-"
                                  f"{id(ddf)}-{time.time_ns()}")
    wait(list(blocks.values()))
    del split

    # 3. parameters: the same draws, in the same order, as MatrixFactorization.fit
    rng = fit_rng(random_state)
    Pfull = init_rows(rng, nu, cfg.n_factors, dt, cfg.init_std, cfg.nonnegative)
    Qfull = init_rows(rng, ni, cfg.n_factors, dt, cfg.init_std, cfg.nonnegative)
    start_epoch, history = 0, []
    bu0, bi0 = np.zeros(nu, dt), np.zeros(ni, dt)
    umap, imap = IdMap(uids), IdMap(iids)
    base = FittedState(mean, None, None, None, None, umap, imap, rr,  # type: ignore[arg-type]
                       cfg.biased, cfg.n_factors, n_blocks=P_)
    if resume and checkpoint is not None and _exists(checkpoint):
        k = cfg.n_factors
        ck, resume_at = _load_checkpoint(checkpoint, base, dt, params, data_key)
        Pfull[:, :k], Qfull[:, :k] = ck.factors("user_factors"), ck.factors("item_factors")
        bu0, bi0 = ck.user_bias, ck.item_bias
        rng.bit_generator.state = resume_at["rng"]
        start_epoch, history = resume_at["epoch"], ck.history
    mu = mean if cfg.biased else 0.0
    # Initial blocks are tasks with their data embedded (not client.scatter): a task can be
    # recomputed when its worker dies, scattered data cannot. They pass through the
    # scheduler once, (n_users + n_items) x k values in all.
    def put(a: np.ndarray, r: int | None) -> Any:
        kw = {"workers": [owner[r]], "allow_other_workers": True} if r is not None else {}
        return client.submit(np.array, a, pure=False, **kw)

    init = ([put(Pfull[ustart[r]:ustart[r + 1]], r) for r in range(P_)],
            [put(bu0[ustart[r]:ustart[r + 1]], r) for r in range(P_)],
            [put(Qfull[istart[c]:istart[c + 1]], None) for c in range(P_)],
            [put(bi0[istart[c]:istart[c + 1]], None) for c in range(P_)])
    del Pfull, Qfull
    hyper = T.hyper_of(cfg, mu)
    val = None
    if eval_set is not None:
        val = eval_indices(eval_set, columns=cfg.columns, user_map=IdMap(uids),
                           item_map=IdMap(iids), dtype=dt)
    ex = DaskExecutor(client, skeleton, blocks, owner, threads, init, start_epoch,
                      f"{id(ddf):x}-{time.time_ns()}", callback,
                      padded_width(cfg.n_factors, dt), dt)

    def after_epoch(row: dict[str, Any], hist: list[dict[str, Any]]) -> None:
        with _failures():
            if len(workers) > 1:
                # the last completed epoch survives the loss of any one worker
                client.replicate([f for part in ex.snapshot() for f in part], n=2)
            if checkpoint is not None:
                prm = ex.params()
                st = replace(base, user_factors=prm.P, item_factors=prm.Q, user_bias=prm.bu,
                             item_bias=prm.bi, history=history + hist, n_epochs=row["epoch"])
                _save_checkpoint(checkpoint, st, params,
                                 {"epoch": row["epoch"], "rng": rng.bit_generator.state,
                                  "data": data_key})

    res = T.run_epochs(ex, hyper, n_epochs=max(0, cfg.n_epochs - start_epoch), n_ratings=n,
                       rng=rng if cfg.shuffle else None, lr_at=cfg.lr_at, val=val,
                       clip=rr if cfg.clip else None, early_stopping=cfg.early_stopping,
                       n_iter_no_change=cfg.n_iter_no_change, tol=cfg.tol,
                       epoch_offset=start_epoch, after_epoch=after_epoch,
                       val_unknown=None if base.biased else base.global_mean)
    if res.reason == "diverged":
        res.causes = T.divergence_causes(cfg, rating_span=rr[1] - rr[0])
    # A worker lost now (after the last epoch) fails the fit the same way as during it.
    try:
        with _failures():
            prm = ex.params()
            pairs = client.gather([client.submit(_block_pairs, blocks[b], ustart[b // P_],
                                                 istart[b % P_]) for b in range(P_ * P_)])
    except T.ExecutorFailure as exc:
        # The completed epochs' parameters lived on the lost workers (only a checkpoint
        # keeps them): say so, rather than "no epoch completed".
        return None, T.TrainResult(history, 0, "failed",
                                   error=res.error if res.reason == "failed" else exc.cause,
                                   lost=res.epochs_done), start_epoch
    seen = seen_csr(np.concatenate([x[0] for x in pairs]),
                    np.concatenate([x[1] for x in pairs]), nu)
    del pairs
    history = history + res.history
    best_epoch = next((r["epoch"] for r in reversed(history) if r.get("best")), None)
    state = replace(base, user_factors=prm.P, item_factors=prm.Q, user_bias=prm.bu,
                    item_bias=prm.bi, history=history, n_epochs=len(history),
                    best_epoch=best_epoch, seen_indptr=seen[0], seen_items=seen[1])
    return state, res, start_epoch


def check_checkpoint(checkpoint: Any, resume: bool) -> str | None:
    """``checkpoint=`` of a Dask fit as a str, checked before any training: it is first
    written after epoch 1, and a path that can never be written would stop the fit there
    and replace the fitted model with that one epoch. The type always; a local path by
    the write's own steps (``atomic_write``: not a directory, the folder exists and takes
    a new file), left before anything is written. A URL is only reached when written
    (which may need the network or credentials)."""
    if checkpoint is None:
        if resume:
            raise ValueError("resume=True needs checkpoint=, the file to resume from.")
        return None
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a path (str or os.PathLike) or an fsspec URL; "
                        f"got {checkpoint!r} ({type(checkpoint).__name__}).")
    path = os.fsdecode(os.fspath(checkpoint))
    if not path or "\0" in path:
        raise ValueError(f"checkpoint must be a non-empty path without NUL characters, or "
                         f"an fsspec URL; got {path!r}.")
    local = _local_file(path)
    if local is None:
        return path
    try:
        st = os.stat(local)
    except OSError:
        st = None  # a new file: atomic_write says why it cannot be made, if it cannot
    if st is not None and not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        # resume reads it back, which read_model refuses (and a FIFO would block the write)
        raise ValueError(f"checkpoint {path} is not a regular file (a device, pipe or "
                         "socket); choose a file path.")
    try:
        check_writable(local)
    except OSError as e:
        raise type(e)(e.errno, f"the checkpoint cannot be written there ({e.strerror}); "
                      "the model is unchanged", path) from None
    return path


def _local_file(path: str) -> str | None:
    """The local file a checkpoint path is written to (as _save_checkpoint resolves it),
    or None for an fsspec URL of another file system."""
    try:
        import fsspec
    except ImportError:
        return path
    if fsspec.utils.get_protocol(path) not in ("file", "local"):
        return None
    return fsspec.core.url_to_fs(path)[1]


def _exists(path: str) -> bool:
    try:
        import fsspec
    except ImportError:
        return os.path.exists(path)
    fs, p = fsspec.core.url_to_fs(path)
    return fs.exists(p)


def _load_checkpoint(path: str, base: FittedState, dt: np.dtype, params: dict[str, Any],
                     data_key: str) -> tuple[FittedState, dict[str, Any]]:
    """Read a checkpoint written by _save_checkpoint (a model file whose header carries
    the resume point), checking that it belongs to this data and these parameters (see
    _check_resumed)."""
    try:
        import fsspec
    except ImportError:
        stored, st, extra = read_model(path, dict)
    else:
        with fsspec.open(path, "rb") as f:
            data = f.read()
        stored, st, extra = read_model_file(io.BytesIO(data), len(data), path, dict)
    at = extra.get("checkpoint")
    if not (isinstance(at, dict) and isinstance(at.get("epoch"), int)
            and isinstance(at.get("rng"), dict)):
        raise ModelFileError(f"{path} is a model file but not an mfsgd checkpoint (it has no "
                             "resume point); remove it or choose another path.")
    k = base.n_factors
    pshape, qshape = (len(base.user_map), k), (len(base.item_map), k)
    got_p, got_q = st.factors("user_factors").shape, st.factors("item_factors").shape
    if got_p != pshape or got_q != qshape or st.user_factors.dtype != dt:
        raise ModelFileError(f"{path} is a checkpoint of another model (shapes "
                             f"{got_p}/{got_q}, expected {pshape}/{qshape}); "
                             "remove it or choose another path.")
    # a checkpoint written before the data key has none: checked without it
    _check_resumed(path, st, base, params, stored, at.get("data", data_key), data_key)
    return st, at


#: Parameters that may differ between the interrupted fit and its resumption: they do not
#: change the epochs' arithmetic (n_threads, n_blocks: the grid used is compared instead;
#: n_epochs: a resumed fit may run longer) or only when training stops.
_RESUME_FREE = frozenset({"n_epochs", "n_threads", "n_blocks", "verbose", "early_stopping",
                          "tol", "n_iter_no_change", "user_col", "item_col", "rating_col"})


def _check_resumed(path: str, ck: FittedState, base: FittedState, params: dict[str, Any],
                   stored: dict[str, Any], ck_key: str, data_key: str) -> None:
    """ModelFileError unless the checkpoint ``ck`` (its stored parameters ``stored``, its
    data key ``ck_key``) was written by a fit of the same data (``base``: its ids, rating
    range and mean, and its grid; ``data_key``: _fingerprint of its rows) with the same
    parameters, a default and its value being the same: resuming another fit's rows would
    give them to other users (review 19), and another seed, grid or rate would be neither
    model."""
    def value(p: dict[str, Any], name: str) -> Any:
        if name not in AUTO_PARAMS:
            return p.get(name)
        loss = p.get("loss", "squared")
        return resolved(name, p.get(name), loss if loss in LOSSES else "squared",
                        bool(p.get("adagrad")))

    def differs() -> str | None:
        for side, mine, theirs in (("user", base.user_map.ids, ck.user_map.ids),
                                   ("item", base.item_map.ids, ck.item_map.ids)):
            if mine.dtype.kind != theirs.dtype.kind or not np.array_equal(mine, theirs):
                return f"other {side} ids"
        if tuple(map(float, ck.rating_range)) != tuple(map(float, base.rating_range)) or (
                not math.isclose(ck.global_mean, base.global_mean, rel_tol=1e-9)) or (
                ck_key != data_key):
            return "other ratings"
        if ck.n_blocks != base.n_blocks:
            return f"n_blocks={ck.n_blocks}, this fit {base.n_blocks}"
        now = stored_params(params)
        for name in sorted(set(now) | set(stored)):
            if name not in _RESUME_FREE and value(now, name) != value(stored, name):
                return f"{name}={value(stored, name)!r}, this fit {value(now, name)!r}"
        return None

    why = differs()
    if why is not None:
        raise ModelFileError(f"{path} is a checkpoint of another fit ({why}); resuming it would "
                             "not continue this one: remove it, choose another path, or fit "
                             "with its data and parameters.")


def _save_checkpoint(path: str, st: FittedState, params: dict[str, Any],
                     at: dict[str, Any]) -> None:
    """The state after an epoch, in the model format (versioned, checksummed), with the
    resume point (epoch and generator state) in the header; written atomically, to a
    local path or, through fsspec, to a URL."""
    extra = {"checkpoint": at}
    try:
        import fsspec
    except ImportError:
        write_model(path, st, params, extra)
        return
    fs, p = fsspec.core.url_to_fs(path)
    if isinstance(fs, fsspec.implementations.local.LocalFileSystem):
        write_model(p, st, params, extra)  # keeps the file mode, fsyncs
        return
    with fsspec.open(path + ".tmp", "wb") as f:
        write_model_file(f, st, params, extra)
    fs.mv(p + ".tmp", p)
