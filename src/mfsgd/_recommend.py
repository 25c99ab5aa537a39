"""Top-N recommendation, similarity and fold-in on a fitted state (vectorised NumPy).

Everything here reads a ``FittedState`` and returns new arrays; fold-in returns a new
state. No Python loop runs per item or per rating; fold-in loops per folded-in row
(one small ridge solve each).
"""

from __future__ import annotations

from typing import Any

import numpy as np

SCORE_BUDGET = 1 << 24  # score-matrix entries per batch of recommend_all (64 MiB float32)


def _factors(st: Any) -> tuple[np.ndarray, np.ndarray]:
    return st.factors("user_factors"), st.factors("item_factors")


def _mask_seen(st: Any, scores: np.ndarray, urows: np.ndarray, icols: np.ndarray | None) -> None:
    """Set the scores of items each user rated in training to -inf, in place."""
    ip, it = st.seen_indptr, st.seen_items
    if ip is None:
        return
    known = urows >= 0
    starts = np.where(known, ip[np.maximum(urows, 0)], 0)
    ends = np.where(known, ip[np.maximum(urows, 0) + 1], 0)
    lens = ends - starts
    if lens.sum() == 0:
        return
    rows = np.repeat(np.arange(len(urows)), lens)
    pos = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + \
        np.arange(lens.sum())
    cols = it[pos]
    if icols is None:
        scores[rows, cols] = -np.inf
        return
    # candidates: map item index -> candidate column(s)
    order = np.argsort(icols, kind="stable")
    sorted_c = icols[order]
    hit = np.searchsorted(sorted_c, cols)
    ok = (hit < sorted_c.size) & (sorted_c[np.minimum(hit, sorted_c.size - 1)] == cols)
    scores[rows[ok], order[hit[ok]]] = -np.inf
    # (a candidate listed twice keeps its second copy; candidates are meant to be distinct)


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and scores of the n best per row, best first (ties: lower column
    first). A compiled single scan for small n; argpartition + sort for large n, where
    the insertion buffer would cost O(n) per insertion."""
    from . import _sgd

    rows, m = scores.shape
    n = min(n, m)
    if n == 0:
        return np.empty((rows, 0), np.int64), np.empty((rows, 0), scores.dtype)
    if n <= 64 and scores.dtype in (np.float32, np.float64):
        idx = np.empty((rows, n), np.int64)
        val = np.empty((rows, n), scores.dtype)
        _sgd.top_n_rows(np.ascontiguousarray(scores), idx, val)
        return idx, val
    if n < m:
        part = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    else:
        part = np.broadcast_to(np.arange(n), (rows, n)).copy()
    ps = np.take_along_axis(scores, part, axis=1)
    o = np.argsort(-ps, axis=1, kind="stable")
    return np.take_along_axis(part, o, axis=1), np.take_along_axis(ps, o, axis=1)


def _rank_scores(st: Any, urows: np.ndarray, icols: np.ndarray | None) -> np.ndarray:
    """Scores that order each row like the predictions: u_i . v_j + b'_j in the model's
    dtype. The per-user constant mu + b_i is left out (it cannot change a row's order);
    exact float64 predictions are computed afterwards for the selected items only."""
    P, Q = _factors(st)
    bi = st.item_bias if icols is None else np.where(icols >= 0, st.item_bias[icols], 0)
    Qc = Q if icols is None else np.where((icols >= 0)[:, None], Q[np.maximum(icols, 0)], 0)
    known = urows >= 0
    Pu = P[np.maximum(urows, 0)]
    if not known.all():
        Pu = np.where(known[:, None], Pu, 0)
    s = Pu @ Qc.T
    if st.biased:
        s += bi.astype(s.dtype)[None, :]
    return s


def recommend_rows(st: Any, urows: np.ndarray, n: int, exclude_seen: bool,
                   icols: np.ndarray | None,
                   banned: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-n (candidate column indices, scores) for many users, in bounded memory:
    users in batches of SCORE_BUDGET scores, ranked in the model's dtype by one matrix
    product, then exact float64 predictions for the n chosen items of each user.
    ``banned`` lists candidate columns no user may get (scored -inf)."""
    n_cols = st.item_bias.size if icols is None else icols.size
    batch = max(1, SCORE_BUDGET // max(n_cols, 1))
    n_eff = min(n, n_cols)
    cols = np.empty((urows.size, n_eff), dtype=np.int64)
    vals = np.empty((urows.size, n_eff), dtype=np.float64)
    for s in range(0, urows.size, batch):
        rows = urows[s:s + batch]
        sc = _rank_scores(st, rows, icols)
        if exclude_seen:
            _mask_seen(st, sc, rows, icols)
        if banned is not None and banned.size:
            sc[:, banned] = -np.inf
        c, v = top_n(sc, n_eff)
        # exact predictions of the chosen pairs (float64), -inf where nothing was left
        items = c if icols is None else icols[c]
        exact = _pair_scores(st, np.repeat(rows, n_eff), items.ravel()).reshape(c.shape)
        cols[s:s + batch] = c
        vals[s:s + batch] = np.where(np.isneginf(v), -np.inf, exact)
    return cols, vals


def _pair_scores(st: Any, urows: np.ndarray, icols: np.ndarray) -> np.ndarray:
    """Unclipped predictions of (user row, item row) pairs, -1 meaning unknown."""
    from ._training import Params, predict_idx

    out = predict_idx(Params(st.user_factors, st.item_factors, st.user_bias, st.item_bias),
                      st.kernel_mu, urows.astype(np.int32), icols.astype(np.int32))
    if not st.biased:
        out[(urows < 0) | (icols < 0)] = st.global_mean
    return out


def similar(factors: np.ndarray, row: int, n: int,
            eligible: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows most cosine-similar to ``row`` (itself excluded), best first. Only rows where
    ``eligible`` is true may be returned (fewer than n when fewer qualify)."""
    f = factors.astype(np.float64)
    norms = np.linalg.norm(f, axis=1)
    q = f[row] / norms[row] if norms[row] > 0 else f[row]
    with np.errstate(invalid="ignore", divide="ignore"):
        sims = (f @ q) / norms
    sims[~np.isfinite(sims)] = 0.0  # all-zero rows: no direction, similarity 0
    sims[row] = -np.inf
    if eligible is not None:
        sims[~eligible] = -np.inf
    c, v = top_n(sims[None, :], min(n, f.shape[0] - 1))
    keep = np.isfinite(v[0])
    return c[0][keep], v[0][keep]


def ridge_rows(targets: list[np.ndarray], feats: list[np.ndarray], reg_f: float,
               reg_b: float, with_bias: bool) -> tuple[np.ndarray, np.ndarray]:
    """Solve, per row, min sum_j (t_j - b - z_j . x)^2 + n (reg_f |x|^2 + reg_b b^2).

    The regulariser is counted once per rating, as in the training loss (each rating's
    term carries lambda |u_i|^2), hence the factor n = the row's rating count."""
    k = feats[0].shape[1] if feats else 0
    X = np.zeros((len(targets), k))
    B = np.zeros(len(targets))
    for r, (t, Z) in enumerate(zip(targets, feats)):
        n = t.size
        if n == 0:
            continue
        if with_bias:
            Z = np.hstack([Z, np.ones((n, 1))])
        lam = np.full(Z.shape[1], n * reg_f)
        if with_bias:
            lam[-1] = n * reg_b
        A = Z.T @ Z + np.diag(np.maximum(lam, 1e-12))
        sol = np.linalg.solve(A, Z.T @ t)
        X[r] = sol[:k]
        if with_bias:
            B[r] = sol[k]
    return X, B
