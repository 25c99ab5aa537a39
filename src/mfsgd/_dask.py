"""Distributed stratified SGD (DSGD, Gemulla et al. 2011) on a Dask cluster.

The schedule is the single-machine one (see ``_training``): the same P x P grid of
blocks, the same cells inside blocks, the same strata, segment order and shuffle seeds,
drawn on the client from the same generator. Only the placement differs: the rating
block (r, c) lives on the worker that owns user block r, and each sub-epoch (stratum)
runs P tasks, one per block, that receive the user-factor block r and the item-factor
block c as task inputs and return them updated. Item-factor blocks therefore travel to
the next owner once per sub-epoch: n_items x k x itemsize bytes per sub-epoch in total.

The block tasks are pure (they copy their inputs before the kernel writes), so when a
worker dies Dask recomputes lost results from their lineage and gets the same numbers.

Imported only when a Dask collection is passed to ``fit``: dask is an optional extra.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _sgd
from . import _training as T
from ._config import FitConfig, fit_rng
from ._idmap import IdMap, sorted_unique
from ._state import init_rows, padded_width
from ._validation import check_ratings


def is_dask_collection(x: Any) -> bool:
    return hasattr(x, "__dask_graph__")


# ---- tasks (run on workers; module-level so they pickle by reference) -------------------

def _part_ids(df: Any, ucol: str, icol: str, rcol: str, dtype: str) -> tuple:
    """Distinct user and item ids of one partition, its size, sum, min and max rating."""
    from ._idmap import normalize_ids

    u = normalize_ids("users", df[ucol])
    i = normalize_ids("items", df[icol])
    r = check_ratings(df[rcol], np.dtype(dtype))
    if r.size == 0:
        return sorted_unique(u), sorted_unique(i), 0, 0.0, math.inf, -math.inf
    return (sorted_unique(u), sorted_unique(i), r.size, float(np.sum(r, dtype=np.float64)),
            float(r.min()), float(r.max()))


def _part_map(df: Any, ucol: str, icol: str, rcol: str, dtype: str, uids: np.ndarray,
              iids: np.ndarray) -> tuple:
    """Indices (int32), ratings (model dtype) and per-row counts of one partition."""
    u = IdMap(uids).lookup("users", df[ucol])
    i = IdMap(iids).lookup("items", df[icol])
    r = check_ratings(df[rcol], np.dtype(dtype))
    return u, i, r, T.counts_of(u, uids.size), T.counts_of(i, iids.size)


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
    P, Q = T.aligned_concat([P]), T.aligned_concat([Q])
    bu, bi = bu.copy(), bi.copy()
    sse = np.zeros(segs.size)
    empty = np.empty(0, P.dtype)
    _sgd.sgd_blocks(u, i, r, seg_ptr, segs, seeds, P, Q, bu, bi, hyper.mu, hyper.lr,
                    hyper.reg_f, hyper.reg_b, hyper.use_bias, hyper.nonneg, sse, empty, empty)
    return (u, i, r, seg_ptr), P, bu, Q, bi, sse


def _block_pairs(block: tuple, ustart: int, istart: int) -> tuple:
    return block[0].astype(np.int32) + np.int32(ustart), block[1] + np.int32(istart)


# ---- the driver (client side) --------------------------------------------------------------

def fit_dask(model: Any, ddf: Any, client: Any, cfg: FitConfig, *, eval_set: Any = None,
             callback: Callable | None = None, checkpoint: str | None = None,
             resume: bool = False) -> Any:
    """Fit ``model`` on a Dask DataFrame of user, item, rating columns.

    Returns (FittedState, reason, error) with reason "completed", "early_stopping",
    "diverged", "interrupted" or "failed" (error then holds the cause)."""
    from distributed import wait

    from .model import FittedState

    if cfg.adagrad or cfg.early_stopping and eval_set is None:
        what = "adagrad" if cfg.adagrad else "early_stopping without eval_set"
        raise ValueError(f"{what} is not supported with a Dask collection yet; fit without it "
                         "or compute the data and fit locally.")
    ucol, icol, rcol = cfg.columns
    cols = list(getattr(ddf, "columns", []))
    for c in (ucol, icol, rcol):
        if c not in cols:
            raise ValueError(f"the Dask DataFrame has no column {c!r} (columns: {cols}); name "
                             "the columns with user_col=, item_col=, rating_col=.")
    dtype = np.dtype(cfg.dtype).name
    dt = np.dtype(dtype)
    parts = client.compute(ddf[[ucol, icol, rcol]].to_delayed())

    # 1. one pass for ids, count, mean and range
    stats = client.gather([client.submit(_part_ids, df, ucol, icol, rcol, dtype, pure=False)
                           for df in parts])
    n = sum(x[2] for x in stats)
    if n == 0:
        raise ValueError("fit needs at least one rating; got an empty Dask DataFrame.")
    uids = sorted_unique(np.concatenate([x[0] for x in stats]))
    iids = sorted_unique(np.concatenate([x[1] for x in stats]))
    if uids.dtype.kind == "U" or iids.dtype.kind == "U":
        uids, iids = uids.astype(str) if uids.dtype.kind == "U" else uids, \
            iids.astype(str) if iids.dtype.kind == "U" else iids
    mean = sum(x[3] for x in stats) / n
    rr = (min(x[4] for x in stats), max(x[5] for x in stats))
    uids_f, iids_f = client.scatter([uids, iids], broadcast=True)
    mapped = [client.submit(_part_map, df, ucol, icol, rcol, dtype, uids_f, iids_f, pure=False)
              for df in parts]
    del parts
    nu, ni = uids.size, iids.size
    counts = client.gather([client.submit(lambda m: (m[3], m[4]), m) for m in mapped])
    cu = np.sum([c[0] for c in counts], axis=0)
    ci = np.sum([c[1] for c in counts], axis=0)

    # 2. the grid, exactly as the single-machine fit would choose it
    P_ = cfg.n_blocks or T.default_n_blocks(max(cfg.n_threads, len(client.nthreads())))
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
    workers = list(client.scheduler_info()["workers"])
    owner = [workers[r % len(workers)] for r in range(P_)]
    blocks = {}
    for b in range(P_ * P_):
        rb = b // P_
        blocks[b] = client.submit(_block_assemble, *split, b=b, s=S, workers=[owner[rb]],
                                  allow_other_workers=True, key=f"mfsgd-layout-block-{b}-"
                                  f"{id(model)}-{time.time_ns()}")
    wait(list(blocks.values()))
    del split
    seg_lo = np.searchsorted(skeleton.seg_block, np.arange(P_ * P_ + 1))

    # 3. parameters: the same draws, in the same order, as MatrixFactorization.fit
    rng = fit_rng(model.random_state)
    Pfull = init_rows(rng, nu, cfg.n_factors, dt, cfg.init_std, cfg.nonnegative)
    Qfull = init_rows(rng, ni, cfg.n_factors, dt, cfg.init_std, cfg.nonnegative)
    start_epoch, history = 0, []
    bu0, bi0 = np.zeros(nu, dt), np.zeros(ni, dt)
    if resume and checkpoint is not None and _exists(checkpoint):
        k = cfg.n_factors
        ck = _load_checkpoint(checkpoint, (nu, k), (ni, k), dt)
        Pfull[:, :k], Qfull[:, :k], bu0, bi0 = ck["P"], ck["Q"], ck["bu"], ck["bi"]
        rng.bit_generator.state = ck["meta"]["rng"]
        start_epoch, history = ck["meta"]["epoch"], ck["meta"]["history"]
    mu = mean if cfg.biased else 0.0
    # Initial blocks are tasks with their data embedded (not client.scatter): a task can be
    # recomputed when its worker dies, scattered data cannot. They pass through the
    # scheduler once, (n_users + n_items) x k values in all.
    def put(a: np.ndarray, r: int | None) -> Any:
        kw = {"workers": [owner[r]], "allow_other_workers": True} if r is not None else {}
        return client.submit(np.array, a, pure=False, **kw)

    Pf = [put(Pfull[ustart[r]:ustart[r + 1]], r) for r in range(P_)]
    buf = [put(bu0[ustart[r]:ustart[r + 1]], r) for r in range(P_)]
    Qf = [put(Qfull[istart[c]:istart[c + 1]], None) for c in range(P_)]
    bif = [put(bi0[istart[c]:istart[c + 1]], None) for c in range(P_)]
    del Pfull, Qfull
    hyper = T.Hyper(lr=cfg.learning_rate, reg_f=cfg.reg_factors, reg_b=cfg.reg_bias, mu=mu,
                    use_bias=cfg.biased, nonneg=cfg.nonnegative)
    val = None
    if eval_set is not None:
        val = model._eval_indices(eval_set, IdMap(uids), IdMap(iids), dt)
    lr_of = cfg.lr_at
    good = (list(Pf), list(buf), list(Qf), list(bif))
    reason = "completed"
    tag = f"{id(model):x}-{time.time_ns()}"
    best, best_val, no_improve = None, math.inf, 0
    error = None
    try:
        for e in range(start_epoch, cfg.n_epochs):
            t0 = time.perf_counter()
            # a fresh object per epoch: submit may serialise arguments later, in the
            # background, so the hyper-parameters it ships must never change afterwards
            hyper = dataclasses.replace(hyper, lr=lr_of(e))
            sse_parts = []
            held = []  # this epoch's multi-output results: the lineage of the pieces
            for t, st in enumerate(T.epoch_plan(skeleton, rng if cfg.shuffle else None)):
                futs = []
                for j in range(st.block_bounds.size - 1):
                    lo, hi = st.block_bounds[j], st.block_bounds[j + 1]
                    gsegs = st.segments[lo:hi]
                    b = int(skeleton.seg_block[gsegs[0]])
                    rb, cb = divmod(b, P_)
                    local = (gsegs - seg_lo[b]).astype(np.int64)
                    seeds = None if st.seeds is None else st.seeds[lo:hi]
                    res = client.submit(_block_run, blocks[b], Pf[rb], buf[rb], Qf[cb], bif[cb],
                                        local, seeds, hyper, workers=[owner[rb]],
                                        allow_other_workers=True, pure=False,
                                        key=f"mfsgd-e{e + 1}-s{t + 1}-block-{rb}x{cb}-{tag}")
                    held.append(res)
                    blocks[b] = client.submit(operator.getitem, res, 0, pure=False)
                    Pf[rb] = client.submit(operator.getitem, res, 1, pure=False)
                    buf[rb] = client.submit(operator.getitem, res, 2, pure=False)
                    Qf[cb] = client.submit(operator.getitem, res, 3, pure=False)
                    bif[cb] = client.submit(operator.getitem, res, 4, pure=False)
                    sse_f = client.submit(operator.getitem, res, 5, pure=False)
                    futs.append(sse_f)
                    sse_parts.append((gsegs, sse_f))
                wait(futs)  # the barrier of the sub-epoch
                if callback is not None:
                    callback({"epoch": e + 1, "stratum": t + 1, "n_strata": P_})
            sse = np.zeros(skeleton.n_segments)
            for gsegs, vals in zip([g for g, _ in sse_parts],
                                   client.gather([f for _, f in sse_parts])):
                sse[gsegs] = vals
            total = float(sse.sum())
            if not math.isfinite(total):
                Pf, buf, Qf, bif = (list(x) for x in good)
                reason = "diverged"
                break
            row = {"epoch": e + 1, "train_rmse": math.sqrt(total / n)}
            if val is not None:
                params = _gather_params(client, Pf, buf, Qf, bif)
                row["val_rmse"] = T.rmse_of(params, mu, *val, *(rr if cfg.clip else (None, None)))
            row["learning_rate"] = hyper.lr
            row["seconds"] = time.perf_counter() - t0
            history.append(row)
            good = (list(Pf), list(buf), list(Qf), list(bif))
            if len(workers) > 1:
                # the last completed epoch survives the loss of any one worker
                client.replicate([f for part in good for f in part], n=2)
            prev_held = held  # noqa: F841  (kept alive until the next epoch completes)
            if checkpoint is not None:
                _save_checkpoint(checkpoint, client, good, row, rng, history, cfg.n_factors)
            if cfg.early_stopping:
                if row["val_rmse"] < best_val - cfg.tol:
                    best_val, no_improve, best = row["val_rmse"], 0, good
                    row["best"] = True
                else:
                    no_improve += 1
                    if no_improve >= cfg.n_iter_no_change:
                        reason = "early_stopping"
                        break
    except KeyboardInterrupt:
        Pf, buf, Qf, bif = (list(x) for x in good)
        reason = "interrupted"
    except (TypeError, ValueError):
        raise
    except Exception as exc:  # lost workers beyond recovery, cancelled futures, ...
        error, reason = exc, "failed"
        Pf, buf, Qf, bif = (list(x) for x in good)
    if cfg.early_stopping and best is not None:
        Pf, buf, Qf, bif = (list(x) for x in best)
    # A worker lost now (after the last epoch) fails the fit the same way as during it.
    try:
        params = _gather_params(client, Pf, buf, Qf, bif)
        pairs = client.gather([client.submit(_block_pairs, blocks[b], ustart[b // P_],
                                             istart[b % P_]) for b in range(P_ * P_)])
    except (TypeError, ValueError):
        raise
    except Exception as exc:
        return None, "failed", error if reason == "failed" else exc
    from ._state import seen_csr

    seen = seen_csr(np.concatenate([x[0] for x in pairs]),
                    np.concatenate([x[1] for x in pairs]), nu)
    del pairs
    best_epoch = next((r["epoch"] for r in reversed(history) if r.get("best")), None)
    state = FittedState(mean, params.P, params.Q, params.bu, params.bi, IdMap(uids), IdMap(iids),
                        rr, cfg.biased, cfg.n_factors, history=history,
                        n_epochs=len(history), best_epoch=best_epoch, n_blocks=P_,
                        seen_indptr=seen[0], seen_items=seen[1])
    return state, reason, error


def _gather_params(client: Any, Pf: list, buf: list, Qf: list, bif: list) -> T.Params:
    got = client.gather([Pf, buf, Qf, bif])
    return T.Params(np.concatenate(got[0]), np.concatenate(got[2]), np.concatenate(got[1]),
                    np.concatenate(got[3]))


def _exists(path: str) -> bool:
    try:
        import fsspec
    except ImportError:
        import os

        return os.path.exists(path)
    fs, p = fsspec.core.url_to_fs(path)
    return fs.exists(p)


def _load_checkpoint(path: str, pshape: tuple, qshape: tuple, dt: np.dtype) -> dict:
    """Read a checkpoint written by _save_checkpoint, checking it fits this data."""
    import io
    import json

    from .exceptions import ModelFileError

    try:
        import fsspec

        with fsspec.open(path, "rb") as f:
            raw = f.read()
    except ImportError:
        with open(path, "rb") as f:
            raw = f.read()
    try:
        z = np.load(io.BytesIO(raw), allow_pickle=False)
        out = {k: z[k] for k in ("P", "Q", "bu", "bi")}
        out["meta"] = json.loads(bytes(z["meta"]).decode())
    except (ValueError, KeyError, OSError) as e:
        raise ModelFileError(f"{path} is not a valid mfsgd checkpoint: {e}.") from None
    if out["P"].shape != pshape or out["Q"].shape != qshape or out["P"].dtype != dt:
        raise ModelFileError(f"{path} is a checkpoint of another model (shapes "
                             f"{out['P'].shape}/{out['Q'].shape}, expected {pshape}/{qshape}); "
                             "remove it or choose another path.")
    return out


def _save_checkpoint(path: str, client: Any, good: tuple, row: dict, rng: Any,
                     history: list, k: int) -> None:
    """Parameters after an epoch, written atomically through fsspec (local path or URL)."""
    import io
    import json

    params = _gather_params(client, *good)
    buf = io.BytesIO()
    meta = {"epoch": row["epoch"], "rng": rng.bit_generator.state, "history": history}
    np.savez(buf, P=params.P[:, :k], Q=params.Q[:, :k], bu=params.bu, bi=params.bi,
             meta=np.frombuffer(json.dumps(meta, default=int).encode(), dtype=np.uint8))
    try:
        import fsspec
    except ImportError:
        import os
        import tempfile

        d = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=d, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(buf.getvalue())
        os.replace(tmp, path)
        return
    with fsspec.open(path + ".tmp", "wb") as f:
        f.write(buf.getvalue())
    fs, p = fsspec.core.url_to_fs(path)
    fs.mv(p + ".tmp", p)
