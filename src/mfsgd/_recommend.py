"""Scoring, top-N, similarity and fold-in on a fitted state (vectorised NumPy).

The one top-k path of the package is ``top_n_batches``: for a batch of users, one
matrix product scores every candidate item, excluded items are set to -inf (a CSR of
items per row, such as the seen-items record, and a list banned for every user), the
compiled scan keeps the n best, and their predictions are returned. ``recommend_rows``
collects its batches; ``recommend`` adds the id look-ups of the estimator's
``recommend`` / ``recommend_all``; ``mfsgd.metrics`` (ranking metrics, ``top_k_items``)
calls the same functions. Memory stays bounded by ``SCORE_BUDGET`` scores per batch.

Everything here reads a ``FittedState`` and returns new arrays; ``fold_in`` returns a
new state. No Python loop runs per item or per rating; fold-in loops per folded-in row
(one small ridge solve each).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from . import _sgd
from ._idmap import (
    IdMap,
    blank_index,
    id_list,
    normalize_ids,
    refuse_empty,
    sorted_unique,
    unique_inverse,
)
from ._state import (
    SOFTMAX_START,
    FittedState,
    appended,
    counts_of,
    grown,
    merge_seen,
    plus_counts,
    unrecorded,
)
from ._training import Params, all_finite_from, predict_idx, score_limit

SCORE_BUDGET = 1 << 24  # score-matrix entries per batch (64 MiB float32, 128 MiB float64)
# Issue 14 item 5: predict gives an unknown user the known terms (mu + b'_j), but
# top_n_batches ranks the most popular items for them (the state's support("item"):
# training interactions per item), so recommend, recommend_all, ranking_scorer and
# mfsgd.metrics (whose states carry the model's item_counts_) serve them alike.
def predict_rows(st: FittedState, urows: np.ndarray, icols: np.ndarray) -> np.ndarray:
    """Unclipped float64 predictions of (user row, item row) pairs, -1 meaning unknown:
    the known terms (``mu + b'_j`` for an unknown user; the global mean for an unknown
    side of the model without biases)."""
    urows = np.ascontiguousarray(urows, dtype=np.int32)
    icols = np.ascontiguousarray(icols, dtype=np.int32)
    out = predict_idx(Params(st.user_factors, st.item_factors, st.user_bias, st.item_bias),
                      st.kernel_mu, urows, icols)
    if not st.biased:
        out[(urows < 0) | (icols < 0)] = st.global_mean
    return out


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and scores of the n best per row, best first (ties: lower column
    first). A compiled single scan for small n; argpartition + sort for large n, where
    the insertion buffer would cost O(n) per insertion."""
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
        _lowest_at_the_cut(scores, part)
        part.sort(axis=1)  # column order, which the stable sort below keeps among ties
    else:
        part = np.broadcast_to(np.arange(n), (rows, n)).copy()
    ps = np.take_along_axis(scores, part, axis=1)
    o = np.argsort(-ps, axis=1, kind="stable")
    return np.take_along_axis(part, o, axis=1), np.take_along_axis(ps, o, axis=1)


def _lowest_at_the_cut(scores: np.ndarray, part: np.ndarray) -> None:
    """Make argpartition's choice follow the tie rule, in place: where more columns
    than fit tie at a row's n-th best score, keep the lowest of them (argpartition keeps
    any). Only the rows with such a tie are rescanned."""
    n = part.shape[1]
    cut = np.take_along_axis(scores, part, axis=1).min(axis=1)
    tied = np.flatnonzero((scores >= cut[:, None]).sum(axis=1) > n)
    for r in tied.tolist():
        row = scores[r]
        above = np.flatnonzero(row > cut[r])
        at = np.flatnonzero(row == cut[r])[:n - above.size]
        part[r] = np.concatenate([above, at])


def _candidates(st: FittedState, icols: np.ndarray | None,
                float64: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Factors and biases of the candidate items in the ranking dtype, gathered once per
    call (not per batch); biases None for a model without them."""
    Q = st.factors("item_factors")
    b = st.item_bias
    if icols is not None:
        Q, b = Q[icols], b[icols]
    if float64:
        Q = np.asarray(Q, dtype=np.float64)
    return Q, (b.astype(Q.dtype) if st.biased else None)


def _rank_scores(P: np.ndarray, Q: np.ndarray, bias: np.ndarray | None,
                 urows: np.ndarray) -> np.ndarray:
    """Scores that order each row like the predictions: u_i . v_j + b'_j in the dtype
    of ``Q``. The per-user constant mu + b_i is left out (it cannot change a row's
    order); an unknown user (row -1) gets zero factors, leaving b'_j."""
    known = urows >= 0
    Pu = P[np.maximum(urows, 0)]
    if Pu.dtype != Q.dtype:
        Pu = Pu.astype(Q.dtype)
    if not known.all():
        Pu = np.where(known[:, None], Pu, 0)
    s = Pu @ Q.T
    if bias is not None:
        s += bias[None, :]
    return s


def _exclude(scores: np.ndarray, indptr: np.ndarray, items: np.ndarray, rows: np.ndarray,
             icols: np.ndarray | None) -> None:
    """Set to -inf, in place, the items of CSR row ``rows[r]`` in score row r (row -1:
    none). With candidates ``icols``, items are matched to candidate columns."""
    known = rows >= 0
    starts = np.where(known, indptr[np.maximum(rows, 0)], 0)
    ends = np.where(known, indptr[np.maximum(rows, 0) + 1], 0)
    lens = ends - starts
    if lens.sum() == 0 or (icols is not None and icols.size == 0):
        return
    r = np.repeat(np.arange(len(rows)), lens)
    pos = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens) + \
        np.arange(lens.sum())
    cols = items[pos]
    if icols is None:
        scores[r, cols] = -np.inf
        return
    # candidates: map item index -> candidate column(s)
    order = np.argsort(icols, kind="stable")
    sorted_c = icols[order]
    hit = np.searchsorted(sorted_c, cols)
    ok = (hit < sorted_c.size) & (sorted_c[np.minimum(hit, sorted_c.size - 1)] == cols)
    scores[r[ok], order[hit[ok]]] = -np.inf  # candidates are distinct (recommend drops repeats)


def _predictions(st: FittedState, urows: np.ndarray, items: np.ndarray, v: np.ndarray,
                 float64: bool) -> np.ndarray:
    """float64 predictions of the chosen items (``v`` their rank scores), -inf where a
    row had no candidate left."""
    if not float64:
        # Ranked in the model's dtype: recompute the chosen pairs exactly with the kernel.
        exact = predict_rows(st, np.repeat(urows, items.shape[1]), items.ravel())
        return np.where(np.isneginf(v), -np.inf, exact.reshape(items.shape))
    # Ranked in float64 already: add the per-user constant the ranking left out.
    out = v.astype(np.float64)
    known = urows >= 0
    out[known] += st.user_bias[urows[known]][:, None]
    out += st.kernel_mu
    if not st.biased and not known.all():
        out[~known] = np.where(np.isneginf(out[~known]), -np.inf, st.global_mean)
    return out


def top_n_batches(st: FittedState, urows: np.ndarray, n: int, *,
                  exclude: tuple[np.ndarray, np.ndarray] | None = None,
                  exclude_rows: np.ndarray | None = None, icols: np.ndarray | None = None,
                  banned: np.ndarray | None = None, float64: bool = False,
                  budget: int | None = None,
                  ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Yield ``(start, stop, cols, scores)`` for the users ``urows[start:stop]``, batch
    by batch: each user's top ``min(n, n_candidates)`` candidate columns, best first
    (equal scores in column order), and their unclipped float64 predictions, -inf in
    the slots of a user with fewer candidates left. An unknown user gets the items with
    the most training interactions, the counts as scores (when the state has its
    seen-items record; else the item terms rank).

    Parameters
    ----------
    st : FittedState
        The model (its factor arrays may be padded, or plain (n, k) arrays).
    urows : ndarray of int
        User rows; -1 is an unknown user, served the most popular items (the item
        terms alone when the state has no interaction counts).
    exclude : (indptr, items), optional
        A CSR of item rows to exclude per row of ``exclude_rows`` (e.g. ``st.seen()``).
    exclude_rows : ndarray of int, optional
        The CSR row of each user (-1: none); default ``urows``.
    icols : ndarray of int, optional
        Candidate item rows (default: every item); columns index into it.
    banned : ndarray of int, optional
        Candidate columns no user may get.
    float64 : bool, default False
        False ranks in the model's dtype (in float32 half the memory traffic of the
        product) and recomputes the chosen pairs with the kernel, which needs the
        state's own contiguous arrays. True ranks in float64 (the evaluation protocol
        of ``mfsgd.metrics``: lists equal a float64 brute force) and adds the per-user
        terms to the rank scores; it works on any (n, k) arrays.
    budget : int, optional
        Scores per batch; default ``SCORE_BUDGET``.
    """
    n_eff = min(n, st.item_bias.size if icols is None else icols.size)
    for s, rows, sc, idle in score_batches(st, urows, exclude=exclude,
                                           exclude_rows=exclude_rows, icols=icols,
                                           banned=banned, float64=float64, budget=budget):
        c, v = top_n(sc, n_eff)
        items = c if icols is None else icols[c]
        out = _predictions(st, rows, items, v, float64)
        if idle is not None:
            out[idle] = v[idle]  # the counts
        yield s, s + rows.size, c, out


def score_batches(st: FittedState, urows: np.ndarray, *,
                  exclude: tuple[np.ndarray, np.ndarray] | None = None,
                  exclude_rows: np.ndarray | None = None, icols: np.ndarray | None = None,
                  banned: np.ndarray | None = None, float64: bool = False,
                  budget: int | None = None,
                  ) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray | None]]:
    """Yield ``(start, rows, scores, idle)`` for the users ``rows = urows[start:...]``,
    batch by batch: every candidate's rank score (:func:`_rank_scores`), -inf for the
    excluded and banned ones; ``idle`` (None, or a mask of ``rows``) marks the users
    whose scores are the items' training interactions instead. The scoring of
    :func:`top_n_batches` (same options), also ranked whole by ``metrics.auc_score``."""
    Q, bias = _candidates(st, icols, float64)
    batch = max(1, (SCORE_BUDGET if budget is None else budget) // max(Q.shape[0], 1))
    ex_rows = urows if exclude_rows is None else exclude_rows
    P = st.factors("user_factors")
    # Unknown users (row -1), and known ones without a training interaction (only rows
    # min_rating dropped), get the most popular items: training interactions per item
    # as their scores (ties in item order). No factors describe them, and for a ranking
    # model an item bias alone is no popularity. A known one's seen items stay excluded.
    idle = st.idle(urows)
    pop = st.support("item") if idle.any() else None
    if pop is not None:
        pop = (pop if icols is None else pop[icols]).astype(Q.dtype)
    for s in range(0, urows.size, batch):
        rows = urows[s:s + batch]
        sc = _rank_scores(P, Q, bias, rows)
        cold = None
        if pop is not None:
            cold = idle[s:s + batch]
            sc[cold] = pop
        if exclude is not None:
            _exclude(sc, exclude[0], exclude[1], ex_rows[s:s + batch], icols)
        if banned is not None and banned.size:
            sc[:, banned] = -np.inf
        yield s, rows, sc, cold


def recommend_rows(st: FittedState, urows: np.ndarray, n: int, *,
                   icols: np.ndarray | None = None,
                   **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """All batches of ``top_n_batches`` (same options) as two arrays of shape
    (len(urows), min(n, n_candidates)): candidate columns and float64 predictions."""
    n_eff = min(n, st.item_bias.size if icols is None else icols.size)
    cols = np.empty((urows.size, n_eff), dtype=np.int64)
    vals = np.empty((urows.size, n_eff), dtype=np.float64)
    for s, e, c, v in top_n_batches(st, urows, n, icols=icols, **options):
        cols[s:e], vals[s:e] = c, v
    return cols, vals


def _banned(item_map: IdMap, exclude_items: Any, name: str = "exclude_items") -> np.ndarray:
    """The rows of the blacklist's ids the model knows (``name``: the argument, for
    messages; the users' map for similar_users' ``exclude_users``). Unknown ids are
    ignored, ids of the other type too (a str on an integer-id model, or in a list mixing
    both: a blacklist drawn from a shared catalogue), which cannot be the model's."""
    if isinstance(exclude_items, Iterator):  # a generator: read once, for a second look
        exclude_items = list(exclude_items)
    try:
        rows = item_map.lookup(name, id_list(name, exclude_items, ordered=False))
    except TypeError:
        if isinstance(exclude_items, (str, bytes)) or not isinstance(exclude_items, Iterable):
            raise
        values = exclude_items.tolist() if isinstance(exclude_items, np.ndarray) else \
            list(exclude_items)
        if item_map.ids.dtype.kind == "U":
            mine = [v for v in values if isinstance(v, str)]
        else:  # integers, and floats that hold one (7.0), as an id list of floats is read
            mine = [v for v in values if (isinstance(v, (int, np.integer)) or (
                isinstance(v, (float, np.floating)) and float(v).is_integer()))
                and not isinstance(v, (bool, np.bool_))]
        if len(mine) == len(values):  # not a question of the other type: its own error
            raise
        if not mine:
            return np.empty(0, dtype=np.int32)
        rows = item_map.lookup(name, id_list(name, mine, ordered=False))
    return rows[rows >= 0]


def recommend(st: FittedState, users: Any, n: int, exclude_seen: bool, items: Any,
              exclude_items: Any) -> tuple[np.ndarray, np.ndarray]:
    """The estimator's recommend_all on validated ``n`` and ``exclude_seen``: look up
    the users (None: all, in row order; a list or array, one row each), the candidates
    ``items`` (unknown ids raise; repeats are dropped) and the blacklist
    ``exclude_items`` (unknown ids ignored), both any iterable of ids (a set too, see
    ``id_list``); return item ids (the model's ``item_ids_`` dtype) and scores, -inf in
    empty slots."""
    urows = np.arange(len(st.user_map), dtype=np.int32) if users is None else \
        st.user_map.lookup("users", id_list("users", users, ordered=True))
    banned = None if exclude_items is None else _banned(st.item_map, exclude_items)
    icols = None
    if items is not None:
        icols = candidate_rows(st.item_map, "items", items, "an item")
        if banned is not None:
            icols, banned = icols[~np.isin(icols, banned)], None
    seen = st.seen() if exclude_seen and st.seen_indptr is not None else None
    cols, vals = recommend_rows(st, urows, n, exclude=seen, icols=icols, banned=banned)
    return st.item_map.ids[cols if icols is None else icols[cols]], vals


# ---------------------------------------------------------------------- similarity
def row_of(idmap: IdMap, raw: Any, what: str) -> int:
    """The row of one known id; ValueError naming it when the model does not know it."""
    r = int(idmap.lookup(what, [raw])[0])
    if r < 0:
        raise ValueError(f"{what} {raw!r} is not in the model.")
    return r


def similar(factors: np.ndarray, row: int, n: int,
            eligible: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows most cosine-similar to ``row`` (itself excluded), best first. Only rows where
    ``eligible`` is true may be returned (fewer than n when fewer qualify). Converts and
    normalises ``factors`` on every call: the estimator's similar_items uses
    :func:`similar_one` on the arrays its fitted state keeps (:func:`similarity_arrays`)."""
    f = factors.astype(np.float64)
    return similar_one(f, np.linalg.norm(f, axis=1), row, n,
                       None if eligible is None else ~eligible)


def similarity_arrays(st: FittedState, side: str) -> tuple[np.ndarray, np.ndarray]:
    """The float64 factors of ``side`` ("item" or "user") and their norms, made once per
    fitted state (n x (k + 1) x 8 bytes, kept until the state is replaced)."""
    def build() -> tuple[np.ndarray, np.ndarray]:
        f = st.factors(f"{side}_factors").astype(np.float64)
        norms = np.linalg.norm(f, axis=1)
        f.flags.writeable = norms.flags.writeable = False  # shared: never written
        return f, norms

    return st.derived(("similarity", side), build)


def extremes(st: FittedState, name: str) -> tuple[float, float]:
    """(max, min) of the state's array ``name`` (user_factors, item_factors, user_bias,
    item_bias; padding columns are 0), made once per state: the divergence check of a
    fold-in needs them for the side it does not change."""
    return st.derived(("extremes", name), lambda: _minmax(getattr(st, name)))


def _minmax(a: np.ndarray, ext: tuple[float, float] | None = None) -> tuple[float, float]:
    """(max, min) of ``a`` ((0, 0) when empty), or of ``a`` and an array whose (max, min)
    is ``ext``."""
    if a.size == 0:
        return (0.0, 0.0) if ext is None else ext
    hi, lo = float(a.max()), float(a.min())
    return (hi, lo) if ext is None else (max(ext[0], hi), min(ext[1], lo))


def similar_one(f: np.ndarray, norms: np.ndarray, row: int, n: int,
                dead: np.ndarray | None = None, icols: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`similar` on float64 ``f`` and its row ``norms``: the candidate columns (rows
    of ``f``, or of ``f[icols]``) most cosine-similar to ``row``, best first (equal
    similarities in column order), without ``row`` itself and the columns ``dead``
    marks; fewer than n when fewer qualify. One matrix-vector product."""
    q = f[row] / norms[row] if norms[row] > 0 else f[row]
    F, nr = (f, norms) if icols is None else (f[icols], norms[icols])
    with np.errstate(invalid="ignore", divide="ignore"):
        sims = (F @ q) / nr
    sims[~np.isfinite(sims)] = 0.0  # all-zero rows: no direction, similarity 0
    if icols is None:
        sims[row] = -np.inf
    else:
        sims[icols == row] = -np.inf
    if dead is not None:
        sims[dead] = -np.inf
    c, v = top_n(sims[None, :], min(n, F.shape[0] - (icols is None)))
    keep = np.isfinite(v[0])
    return c[0][keep], v[0][keep]


def similar_blocks(f: np.ndarray, norms: np.ndarray, rows: np.ndarray, n: int,
                   dead: np.ndarray | None = None, icols: np.ndarray | None = None,
                   budget: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`similar_one` for many ``rows`` at once, as two arrays of shape
    (len(rows), min(n, n_candidates)) (n_candidates: the rows of ``f`` but one, or
    len(icols)): candidate columns and similarities, -inf in the slots of a row with
    fewer qualifying candidates (their columns mean nothing). Blocks of query rows,
    each one matrix product against every candidate and the compiled top-n scan, at
    most ``budget`` (default SCORE_BUDGET / 2: 64 MiB of float64) scores at a time.

    The same lists as the per-row calls, to rounding: a matrix product sums a dot
    product's k terms in another order than a matrix-vector product (and BLAS's order
    can depend on the block's shape), so a similarity may differ in its last bits, and
    two candidates within such a difference of each other may swap."""
    F, nr = (f, norms) if icols is None else (f[icols], norms[icols])
    width = min(n, F.shape[0] - (icols is None))
    cols = np.empty((rows.size, width), np.int64)
    vals = np.empty((rows.size, width), np.float64)
    if rows.size == 0 or width == 0:
        return cols, vals
    where = None  # each query row's own candidate column (-1: none)
    if icols is not None:
        where = np.full(f.shape[0], -1, np.int64)
        where[icols] = np.arange(icols.size)
    step = max(1, ((SCORE_BUDGET // 2) if budget is None else budget) // max(F.shape[0], 1))
    for s in range(0, rows.size, step):
        r = rows[s:s + step]
        qn = norms[r][:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            Q = np.where(qn > 0, f[r] / qn, f[r])
            S = Q @ F.T
            S /= nr[None, :]
        S[~np.isfinite(S)] = 0.0
        own = r if where is None else where[r]
        mine = own >= 0
        S[np.flatnonzero(mine), own[mine]] = -np.inf
        if dead is not None:
            S[:, dead] = -np.inf
        cols[s:s + r.size], vals[s:s + r.size] = top_n(S, width)
    return cols, vals


def _unknown_error(what: str, ids: np.ndarray, why: str) -> ValueError:
    shown = ", ".join(repr(x.item()) for x in ids[:5])
    more = f" and {ids.size - 5} more" if ids.size > 5 else ""
    return ValueError(f"{what} holds {ids.size} id(s) the model does not know "
                      f"({shown}{more}); {why}")


def candidate_rows(idmap: IdMap, name: str, values: Any, noun: str) -> np.ndarray:
    """The rows of a whitelist ``values`` (any iterable of ids, see ``id_list``), first
    occurrences in the order given; ValueError naming the ids the model does not know
    (``noun``: "an item", "a user")."""
    cand = id_list(name, values, ordered=False)
    rows = idmap.lookup(name, cand)
    unknown = cand[rows < 0]
    if unknown.size:
        raise _unknown_error(name, unknown, f"{noun} unseen in training cannot be ranked. "
                                            "Drop them from the candidates.")
    # A repeated candidate would be listed twice, and only one copy excluded as seen.
    return rows[np.sort(np.unique(rows, return_index=True)[1])]


def similar_ids(st: FittedState, side: str, raw: Any, n: int, min_support: int, *,
                many: bool = False, candidates: Any = None, exclude: Any = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """similar_items (side "item") / similar_users ("user") on validated ``n`` and
    ``min_support``: ids and cosine similarities, best first. ``many``: ``raw`` is a
    list of ids, and the result two arrays of one row per id (see
    :func:`similar_blocks`); otherwise one id, and 1-D arrays. ``candidates`` /
    ``exclude``: the whitelist and blacklist, checked as recommend's ``items`` /
    ``exclude_items``."""
    idmap = st.item_map if side == "item" else st.user_map
    noun = side + "s"
    if many:
        asked = id_list(side, raw, ordered=True)
        rows = idmap.lookup(side, asked) if asked.size else np.empty(0, np.int64)
        if (rows < 0).any():
            unknown, first = np.unique(asked[rows < 0], return_index=True)
            raise _unknown_error(side, unknown[np.argsort(first)],
                                 f"similar_{noun} compares known {noun} only.")
    else:
        rows = np.array([row_of(idmap, raw, side)])
    # every row has an interaction unless the state counts them apart (min_rating)
    counts = None
    if min_support > 1 or st.user_counts is not None:
        counts = st.support(side)  # the counts, or the seen record's (kept with st)
    if counts is not None and rows.size and (counts[rows] == 0).any():  # zero factors
        if not many:
            raise ValueError(f"{side} {raw!r} has no training interaction (every row of it "
                             "was rated below min_rating), so no factors to compare.")
        empty = np.unique(asked[counts[rows] == 0])
        shown = ", ".join(repr(x.item()) for x in empty[:5])
        raise ValueError(f"{side}(s) {shown} have no training interaction (every row of "
                         "them was rated below min_rating), so no factors to compare; leave "
                         "them out of the query.")
    dead = None if counts is None else counts < max(min_support, 1)
    icols = None
    banned = None if exclude is None else _banned(idmap, exclude, f"exclude_{noun}")
    if candidates is not None:
        icols = candidate_rows(idmap, noun, candidates, "an item" if side == "item" else
                               "a user")
        if banned is not None:
            icols = icols[~np.isin(icols, banned)]
        if dead is not None:
            dead = dead[icols]
    elif banned is not None and banned.size:
        dead = np.zeros(len(idmap), bool) if dead is None else dead.copy()
        dead[banned] = True
    f, norms = similarity_arrays(st, side)
    if many:
        c, v = similar_blocks(f, norms, rows, n, dead, icols)
    else:
        c, v = similar_one(f, norms, int(rows[0]), n, dead, icols)
    return idmap.ids[c if icols is None else icols[c]], v


# ---------------------------------------------------------------------- fold-in
# Which form the fold-in solves take: None picks the cheaper one per row (the n x n dual
# when a row has fewer ratings n than its primal system has unknowns, the item-space
# form when a ranking model has fewer items than factors), True / False force the dual /
# the primal. Both are exact; the dual keeps memory O(n k) and time O(n^2 k + n^3)
# where the primal needs a (k+1) x (k+1) or k x k matrix whatever n.
FOLD_IN_DUAL: bool | None = None


def _use_dual(n: int, size: int, dual: bool | None) -> bool:
    """The dual form (an n x n system) instead of the primal (size x size)?"""
    if dual is None:
        dual = FOLD_IN_DUAL
    return n < size if dual is None else dual


def ridge_rows(targets: list[np.ndarray], feats: list[np.ndarray], reg_f: float,
               reg_b: float, with_bias: bool, nonnegative: bool = False,
               dual: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Solve, per row, min sum_j (t_j - b - z_j . x)^2 + n (reg_f |x|^2 + reg_b b^2).

    The regulariser is counted once per rating, as in the training loss (each rating's
    term carries lambda |u_i|^2), hence the factor n = the row's rating count. With
    ``nonnegative`` the factors x are solved under x >= 0 (:func:`nonneg_solve`) and the
    bias stays free, as training projects the factors only.

    A row with fewer ratings than unknowns is solved through its n x n dual
    (:func:`_ridge_dual`), exactly, in O(n k) memory; ``dual`` forces one form (default
    ``FOLD_IN_DUAL``, None: the cheaper)."""
    k = feats[0].shape[1] if feats else 0
    X = np.zeros((len(targets), k))
    B = np.zeros(len(targets))
    for r, (t, Z) in enumerate(zip(targets, feats, strict=True)):
        n = t.size
        if n == 0:
            continue
        if _use_dual(n, k + with_bias, dual):
            X[r], B[r] = _ridge_dual(t, Z, max(n * reg_f, 1e-12),
                                     max(n * reg_b, 1e-12) if with_bias else None,
                                     nonnegative)
            continue
        if with_bias:
            Z = np.hstack([Z, np.ones((n, 1))])
        lam = np.full(Z.shape[1], n * reg_f)
        if with_bias:
            lam[-1] = n * reg_b
        A = Z.T @ Z + np.diag(np.maximum(lam, 1e-12))
        c = Z.T @ t
        sol = nonneg_solve(A, c, k) if nonnegative else np.linalg.solve(A, c)
        X[r] = sol[:k]
        if with_bias:
            B[r] = sol[k]
    return X, B


def _ridge_dual(t: np.ndarray, Z: np.ndarray, lam: float, lam_b: float | None,
                nonnegative: bool) -> tuple[np.ndarray, float]:
    """(x, b) = argmin |t - b 1 - Z x|^2 + lam |x|^2 + lam_b b^2 (b = 0 when ``lam_b`` is
    None; x >= 0 with ``nonnegative``), the primal of :func:`ridge_rows`, through n x n
    systems only (Z is n x k).

    For a fixed b the ridge solution is x = Z' S^-1 (t - b 1), S = Z Z' + lam I (as
    (Z'Z + lam I) Z' = Z' S), with residual t - b 1 - Z x = lam S^-1 (t - b 1); setting
    the derivative in b to 0 then gives b = 1'u / (lam_b / lam + 1'v), u = S^-1 t,
    v = S^-1 1 (no cancellation when lam_b is tiny: an unpenalised bias).

    Under x >= 0 (when that solution has a negative entry) the bias is eliminated
    instead: min over b of |r - b 1|^2 + lam_b b^2 is r' M r, M = I - 1 1' / (n + lam_b)
    = L^2 with L = I - (1 - s) 1 1' / n, s = sqrt(lam_b / (n + lam_b)) (L subtracts
    (1 - s) times the mean), so x solves the bias-free problem on (L t, L Z) and
    b = 1'(t - Z x) / (n + lam_b). Its optimality conditions give x = (Z'y)_+ with
    lam y = t - Z x the residual, and y minimises the strongly convex, piecewise
    quadratic psi(y) = lam |y|^2 / 2 - t'y + |(Z'y)_+|^2 / 2 (the Lagrange dual):
    :func:`_nonneg_dual` finds the positive entries in a few n x n Newton steps, and
    :func:`_nonneg_active_set` (Lawson-Hanson, as :func:`nonneg_solve`, from them)
    solves exactly on them and checks, or corrects, the optimality conditions in the
    primal, as y = residual / lam loses precision when lam is tiny."""
    n = t.size
    S = Z @ Z.T
    S[np.diag_indices(n)] += lam
    if lam_b is None:
        x = Z.T @ np.linalg.solve(S, t)
        b = 0.0
    else:
        u, v = np.linalg.solve(S, np.column_stack([t, np.ones(n)])).T
        b = float(u.sum() / (lam_b / lam + v.sum()))
        x = Z.T @ (u - b * v)
    if not nonnegative or (x >= 0).all():
        return x, b
    tt, ZZ = t, Z
    if lam_b is not None:
        shrink = 1.0 - np.sqrt(lam_b / (n + lam_b))
        tt = t - shrink * t.mean()
        ZZ = Z - shrink * Z.mean(0)
        S = ZZ @ ZZ.T
        S[np.diag_indices(n)] += lam
    y = np.linalg.solve(S, tt)
    x = _nonneg_active_set(ZZ, tt, lam, np.maximum(_nonneg_dual(ZZ, tt, lam, y, ZZ.T @ y), 0))
    b = 0.0 if lam_b is None else float((t - Z @ x).sum() / (n + lam_b))
    return x, b


def _nonneg_dual(Z: np.ndarray, t: np.ndarray, lam: float, y: np.ndarray,
                 s: np.ndarray) -> np.ndarray:
    """Z'y near the minimum of psi(y) = lam |y|^2 / 2 - t'y + |(Z'y)_+|^2 / 2, from y
    (s = Z'y): semismooth Newton steps with an Armijo backtracking search, to find the
    positive set of the optimum for :func:`_nonneg_active_set`, which solves and checks
    exactly. On the pieces where the positive set P of Z'y is fixed, psi is quadratic
    with Hessian lam I + Z_P Z_P', so the method ends, exactly, at the first full step
    that leaves P unchanged (a few dozen steps at most, as P shrinks geometrically). With
    a tiny lam (y = residual / lam is huge) rounding stalls the steps: it stops when P
    has not changed in 3 steps or after 50 + n steps; P is then (nearly) the answer."""
    n = t.size

    def psi(y: np.ndarray, s: np.ndarray) -> float:
        sp = np.maximum(s, 0.0)
        return 0.5 * lam * float(y @ y) - float(t @ y) + 0.5 * float(sp @ sp)

    f = psi(y, s)
    P = s > 0
    same = 0
    for _ in range(50 + n):
        grad = lam * y - t + Z @ np.maximum(s, 0.0)
        ZP = Z[:, P]
        H = ZP @ ZP.T
        H[np.diag_indices(n)] += lam
        d = -np.linalg.solve(H, grad)
        slope = float(grad @ d)  # < 0: H is positive definite
        if not slope < 0:  # grad is 0 (to rounding): y is optimal
            break
        step = 1.0
        while True:
            y_new = y + step * d
            s_new = Z.T @ y_new
            f_new = psi(y_new, s_new)
            if f_new <= f + 1e-4 * step * slope + 1e-13 * abs(f) or step < 1e-9:
                break
            step *= 0.5
        y, s, f = y_new, s_new, f_new
        P_new = s > 0
        same = same + 1 if np.array_equal(P_new, P) else 0
        if same and step == 1.0 or same >= 3:
            break  # the exact minimiser of the quadratic on P, inside P's piece, or stalled
        P = P_new
    return s


def _nonneg_active_set(Z: np.ndarray, t: np.ndarray, lam: float,
                       x: np.ndarray) -> np.ndarray:
    """argmin |t - Z x|^2 + lam |x|^2 subject to x >= 0 (Z is n x k), from a feasible
    ``x``: :func:`nonneg_solve`'s Lawson-Hanson steps without the k x k matrix. The
    minimiser on a passive set P is solved in the smaller of its two forms,
    (Z_P'Z_P + lam I) x_P = Z_P't (|P| <= n) or x_P = Z_P' (Z_P Z_P' + lam I)^-1 t, and
    the gradient is Z'(Z x - t) + lam x: O(n k) memory. From the positive set of the
    optimum (which :func:`_nonneg_dual` returns) it ends after one solve."""
    n, k = Z.shape

    def solve_on(passive: np.ndarray) -> np.ndarray:
        s = np.zeros(k)
        idx = np.flatnonzero(passive)
        if idx.size:
            ZP = Z[:, idx]
            if idx.size <= n:
                A = ZP.T @ ZP
                A[np.diag_indices(idx.size)] += lam
                s[idx] = np.linalg.solve(A, ZP.T @ t)
            else:
                S = ZP @ ZP.T
                S[np.diag_indices(n)] += lam
                s[idx] = ZP.T @ np.linalg.solve(S, t)
        return s

    c = Z.T @ t
    scale = float((Z * Z).sum(0).max()) + lam  # max |A| of A = Z'Z + lam I (its diagonal)
    free = np.zeros(k, dtype=bool)
    x, passive = _walk_to_feasible(x, x > 0, free, solve_on)
    return _lawson_hanson(x, passive, free, solve_on, lambda x: c - Z.T @ (Z @ x) - lam * x,
                          c, scale, 3 * (k + 1) - 1)


def _walk_to_feasible(x: np.ndarray, passive: np.ndarray, free: np.ndarray,
                      solve_on: Callable[[np.ndarray], np.ndarray]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Lawson-Hanson's inner loop, from a feasible ``x``: solve on the passive set and,
    where a constrained entry would turn negative, walk from x towards that solution as
    far as every entry stays >= 0, drop the entries that reached 0, and solve again.
    Returns the solution on the final passive set, and that set (updated in place)."""
    while True:
        s = solve_on(passive)
        neg = passive & ~free & (s <= 0)
        if not neg.any():
            return s, passive
        step = x[neg] - s[neg]
        ratio = np.divide(x[neg], step, out=np.zeros(step.size), where=step > 0)
        alpha = ratio.min()
        x = x + alpha * (s - x)
        zero = np.zeros(x.size, dtype=bool)
        zero[np.flatnonzero(neg)[ratio <= alpha]] = True
        passive &= ~zero & (free | (x > 0))
        x[~passive] = 0.0


def _lawson_hanson(x: np.ndarray, passive: np.ndarray, free: np.ndarray,
                   solve_on: Callable[[np.ndarray], np.ndarray],
                   neg_grad: Callable[[np.ndarray], np.ndarray], c: np.ndarray, scale: float,
                   steps: int) -> np.ndarray:
    """Lawson-Hanson's outer loop, from a feasible ``x`` optimal on ``passive``: add the
    entry at 0 whose gradient (``neg_grad(x)``: minus the gradient, > 0 where raising x
    lowers the objective) most wants it to grow, then :func:`_walk_to_feasible`; end when
    no entry at 0 has a descending gradient (to a tolerance relative to ``scale``, the
    largest entry of the normal matrix, and ``c``), or after ``steps`` steps. ``free``
    entries (a bias) are never constrained."""
    for _ in range(steps):
        grad = neg_grad(x)
        grad[passive] = -np.inf
        j = int(np.argmax(grad))
        if grad[j] <= 1e-12 * x.size * (scale * np.abs(x).max() + np.abs(c).max()):
            break
        passive[j] = True
        x, passive = _walk_to_feasible(x, passive, free, solve_on)
    return x


def nonneg_solve(A: np.ndarray, c: np.ndarray, k: int) -> np.ndarray:
    """argmin 0.5 x'Ax - c'x subject to x[:k] >= 0 (the entries after k, a bias, are
    free), for a symmetric positive definite A: the ridge normal equations of a row.

    The unconstrained solution is returned as it is when its first k entries are >= 0.
    Otherwise Lawson and Hanson's active-set method on the normal equations: the
    passive set holds the free entries and those allowed to be positive, the others
    are 0. Each step adds the entry at 0 whose gradient most wants it to grow, solves
    the equations on the passive set and, where an entry would turn negative, stops at
    the boundary and drops the entries that reached 0. It ends when no entry at 0 has a
    descending gradient. Every solve is exact on its set, so the result meets the KKT
    conditions: the gradient Ax - c is ~0 on the positive and free entries and >= 0 on
    those at 0. The passive set starts as the positive entries of the unconstrained
    solution when the solve on it stays positive (usually the answer, or close). At
    most 3 (k + 1) steps, a cap against cycling from rounding; every iterate is
    feasible."""
    x = np.linalg.solve(A, c)
    if (x[:k] >= 0).all():
        return x
    m = c.size
    free = np.arange(m) >= k

    def solve_on(passive: np.ndarray) -> np.ndarray:
        s = np.zeros(m)
        if passive.any():
            s[passive] = np.linalg.solve(A[np.ix_(passive, passive)], c[passive])
        return s

    passive = free | (x > 0)
    x = solve_on(passive)
    if (x[passive & ~free] <= 0).any():  # no feasible warm start: from the free entries
        passive = free.copy()
        x = solve_on(passive)
    return _lawson_hanson(x, passive, free, solve_on, lambda x: c - A @ x, c,
                          np.abs(A).max(), 3 * (k + 1))


#: The fold-in's L2 penalty on a ranking model's new row, per unit of the other side's
#: mean squared row norm, so that scaling every row of the other side changes no ranking.
#: Measured on MovieLens 100K (u1..u5, each user refolded from their training items,
#: NDCG@10 on the test folds; see the CHANGELOG): 0.03 lands within 1% of the best
#: penalty for bpr, warp and softmax at their defaults.
FOLD_IN_RANKING_REG = 0.03


def _reduced(F: np.ndarray, dual: bool | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(F', B): with fewer rows m than columns k (or ``dual`` True), the row space of F
    in an orthonormal basis, F = F' B^T with B (k, r), r <= min(m, k); a minimiser of a
    loss of F x plus reg |x|^2 lies in that space (x = B y, |x| = |y|), so the solve
    has r unknowns, not k. (F, None) for the primal form."""
    m, k = F.shape
    if not _use_dual(m, k, dual):
        return F, None
    _, sv, vt = np.linalg.svd(F, full_matrices=False)
    r = int(np.sum(sv > sv[0] * 1e-12)) if sv.size and sv[0] > 0 else 0
    return F @ vt[:r].T, vt[:r].T


def _newton(f: Any, grad_hess: Any, x: np.ndarray, max_iter: int = 100) -> np.ndarray:
    """Minimise a smooth strictly convex ``f`` by Newton's method with backtracking
    (Armijo), from ``x``; ``grad_hess(x)`` gives the gradient and the Hessian. Once the
    Newton decrement g.H^-1.g is small (the quadratic region, where f can no longer
    resolve a step's gain) full steps are taken while it keeps falling, so x is found
    to rounding level, not to the square root of it."""
    fx = f(x)
    last = np.inf
    for _ in range(max_iter):
        g, H = grad_hess(x)
        d = np.linalg.solve(H, g)
        dec = float(g @ d)
        if not dec > 1e-30 or dec >= last:  # converged, at rounding level, or NaN
            break
        if dec < 1e-10:
            x, last = x - d, dec
            continue
        t = 1.0
        while True:
            xn = x - t * d
            fn = f(xn)
            if fn <= fx - 1e-4 * t * dec or t < 1e-12:
                break
            t *= 0.5
        if not fn < fx:
            break
        x, fx = xn, fn
    return x


def _weighted_gram(A: np.ndarray, w: np.ndarray,
                   center: np.ndarray | None = None) -> np.ndarray:
    """``sum_j w_j (a_j - center)(a_j - center)^T`` (float64) for weights ``w >= 0``
    and the rows a_j of ``A`` (``center`` 0 if None), the Hessians' O(m k^2) term,
    summed in ``A``'s dtype: as ``G.T @ G`` with ``G = sqrt(w) (A - center)``, which
    NumPy hands to BLAS's symmetric rank-k update (half a general product's work).
    Rows whose weight is below 1e-17 of the largest add less than rounding and are
    left out, when they are most of them. On 50,000 x 64 (one thread): 25 ms in
    float64, 11.5 ms in float32, against 64 ms for ``(A[live] * w[live]).T @
    A[live]``."""
    live = w > 1e-17 * w.max() if w.size else w > 0
    if np.count_nonzero(live) < live.size // 2:
        A, w = A[live], w[live]
    sw = np.sqrt(w).astype(A.dtype)[:, None]
    if center is None:
        G = A * sw
    else:
        G = A - center.astype(A.dtype)
        G *= sw
    return (G.T @ G).astype(np.float64, copy=False)


# softmax_rows sums its Hessians in float32 (for a float32 model) only while the penalty
# 2 reg, a floor under their eigenvalues, is at least this share of the largest squared
# row norm: float32's rounding of the sum is 1e-7 to 1e-5 of it, so the error stays a
# small fraction of every eigenvalue (fitted models: 2 reg is 0.02-0.03 of it).
F32_HESSIAN_FLOOR = 1e-3


def _lse(s: np.ndarray) -> float:
    top = s.max()
    return float(top + np.log(np.exp(s - top).sum()))


#: softmax_rows' quasi-Newton iteration: the pairs of steps and gradient changes it
#: keeps (L-BFGS memory), and the steps after which a row still unsolved is finished
#: by Newton's method (exact Hessians) from where it stands.
SOFTMAX_MEMORY = 8
SOFTMAX_QN_STEPS = 40
#: Rows softmax_rows solves together: this many scores (m per row), the size of its
#: (m, rows) float64 arrays (32 MiB each).
SOFTMAX_BLOCK = 1 << 22


def _exp_columns(S: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of ``S``: (exp(S - max), its sum z, log sum exp)."""
    top = S.max(0)
    E = np.subtract(S, top)
    np.exp(E, out=E)
    z = E.sum(0)
    return E, z, top + np.log(z)


def softmax_start(F: np.ndarray, ob: np.ndarray, reg: float, dual: bool | None = None,
                  hess_dtype: Any = np.float64) -> dict:
    """The part of :func:`softmax_rows` that depends on the items only (``F``, ``ob``,
    ``reg``), which a model can keep for its next calls: the row-space reduction, the
    rows the Hessians are summed from, and the state at x = 0 (the softmax of ``ob``,
    its objective, gradient and Hessian, the same for every row, with the inverse of
    the Hessian's Cholesky factor)."""
    Fr, B = _reduced(F, dual)
    r = Fr.shape[1]
    reg = reg if reg > 0 else 1e-12  # 0 only when every row of F is 0
    scale = float(np.abs(Fr).max()) if Fr.size else 0.0
    if (np.dtype(hess_dtype) == np.float32 and scale > 0
            and 2 * reg >= F32_HESSIAN_FLOOR * float(np.einsum("ij,ij->i", Fr, Fr).max())):
        Fh = (Fr / scale).astype(np.float32)
    else:
        Fh, scale = Fr, 1.0
    E, z, lse0 = _exp_columns(ob[:, None])
    p0 = E[:, 0] / z[0]
    mv0 = Fr.T @ p0
    H0 = _weighted_gram(Fh, p0, center=mv0 / scale)
    if scale != 1.0:
        H0 *= scale * scale
    H0[np.diag_indices(r)] += 2 * reg
    return dict(Fr=Fr, B=B, reg=reg, Fh=Fh, scale=scale, lse0=float(lse0[0]), mv0=mv0,
                Li=_inverse_factor(H0), k=F.shape[1])


def _inverse_factor(H: np.ndarray) -> np.ndarray:
    """``Li`` with ``Li.T @ Li`` = H^-1 for a symmetric positive definite ``H``: the
    inverse of its Cholesky factor, so that H^-1 q costs two small matrix products and
    stays positive definite whatever the rounding. If rounding made ``H`` not positive
    definite (a penalty far below its scale), its eigenvalues are floored at 1e-15 of
    the largest instead: the preconditioner only sets the iteration's speed."""
    try:
        return np.linalg.solve(np.linalg.cholesky(H), np.eye(H.shape[0]))
    except np.linalg.LinAlgError:
        w, V = np.linalg.eigh(H)
        w = np.maximum(w, 1e-15 * max(float(w.max(initial=0.0)), 1e-300))
        return (V / np.sqrt(w)).T


def softmax_rows(pos: list[np.ndarray], F: np.ndarray | None, ob: np.ndarray, reg: float,
                 dual: bool | None = None, hess_dtype: Any = np.float64,
                 start: dict | None = None) -> np.ndarray:
    """Per row (a user), with the other side's rows ``F`` (m, k) and biases ``ob`` fixed:

        x = argmin  -mean_{j in pos} s_j + log sum_j exp(s_j) + reg |x|^2,  s = F x + ob,

    the row's interactions read as draws from a softmax over all m items (the full
    objective the "softmax" loss samples, and a ranking objective for bpr and warp: it
    puts the row's items above the others). Strictly convex, so any descent method from
    x = 0 (the popularity ranking of ``ob``) finds the one minimum. With fewer items
    than factors the solve runs in the row space of F (:func:`_reduced`): r <= m
    unknowns, as the squared loss's dual.

    The method is L-BFGS (memory SOFTMAX_MEMORY) whose initial Hessian is the exact one
    at x = 0, the same for every row (the covariance of F's rows under the softmax of
    ``ob``, plus 2 reg): one O(m k^2) Hessian per call instead of one per Newton step
    and row, then O(m k) per step, with a backtracking (Armijo) line search that needs
    no product with F (the scores along the step are s + t F d). The rows advance
    together in blocks, their products with F as matrix products. The stopping rule is
    Newton's: the decrement g.H^-1.g (with L-BFGS's H) at rounding level, 1e-30, or no
    longer falling (twice) once below 1e-10, where f cannot resolve a step's gain and
    full steps are taken. A row still unsolved after SOFTMAX_QN_STEPS steps (a Hessian
    far from the one at 0: a tiny penalty) is finished by Newton's method from there.

    The Hessian at 0 (and Newton's, if any) is summed in float32 when ``hess_dtype`` is
    (a float32 model's: so will the solution be) and 2 reg is at least
    F32_HESSIAN_FLOOR of the largest squared row norm; the rows are scaled to at most 1
    first (no overflow or underflow). The gradients and objective stay float64: an
    inexact Hessian can slow the iteration, not move the minimum. ``start``: this
    call's :func:`softmax_start` (with the same arguments), if kept from a previous
    one; ``F`` is not read then (it may be None)."""
    st = softmax_start(F, ob, reg, dual, hess_dtype) if start is None else start
    Fr, B = st["Fr"], st["B"]
    m, r = Fr.shape
    X = np.zeros((len(pos), st["k"]))
    if r == 0:
        return X
    step = max(1, SOFTMAX_BLOCK // max(m, 1))  # rows per block
    for b0 in range(0, len(pos), step):
        Y = _softmax_block(pos[b0:b0 + step], ob, st)
        X[b0:b0 + Y.shape[1]] = (Y if B is None else B @ Y).T
    return X


def _softmax_block(pos: list[np.ndarray], ob: np.ndarray, st: dict) -> np.ndarray:
    """:func:`softmax_rows` on a block of rows, as columns (r, len(pos))."""
    Fr, reg, Li = st["Fr"], st["reg"], st["Li"]
    (m, r), b, mem = Fr.shape, len(pos), SOFTMAX_MEMORY
    T = np.stack([Fr[j].mean(0) for j in pos], axis=1)  # the gradient's constant part
    obm = np.array([ob[j].mean() for j in pos])  # s[j].mean() = T.y + obm
    out = np.zeros((r, b))
    ids = np.arange(b)  # the rows still iterating, and their state:
    Y = np.zeros((r, b))
    S = np.broadcast_to(ob[:, None], (m, b))  # scores Fr Y + ob
    fv = st["lse0"] - obm
    G = st["mv0"][:, None] - T
    Sh, Yh, rho = np.zeros((mem, r, b)), np.zeros((mem, r, b)), np.zeros((mem, b))
    best, stall, slot = np.full(b, np.inf), np.zeros(b, dtype=np.int64), 0
    for it in range(SOFTMAX_QN_STEPS):
        # the direction R ~ H^-1 G: L-BFGS's two loops over the pairs kept, from the
        # Hessian at 0 (a pair whose curvature was not positive has rho 0: no effect)
        Q, al = G.copy(), np.zeros((mem, ids.size))
        kept = [(slot - 1 - n) % mem for n in range(min(it, mem))]
        for i in kept:
            al[i] = rho[i] * np.einsum("ij,ij->j", Sh[i], Q)
            Q -= al[i] * Yh[i]
        R = Li.T @ (Li @ Q)
        for i in reversed(kept):
            R += Sh[i] * (al[i] - rho[i] * np.einsum("ij,ij->j", Yh[i], R))
        dec = np.einsum("ij,ij->j", G, R)
        stall = np.where(dec < best, 0, stall + 1)
        best = np.minimum(best, dec)
        # converged, at rounding level, or NaN; or no longer falling in the quadratic
        # region (below 1e-10, as Newton's)
        done = ~(dec > 1e-30) | ((best < 1e-10) & (stall >= 2))
        if done.any():
            out[:, ids[done]] = Y[:, done]
            keep = ~done
            ids, Y, S, fv, G, T, obm, R, dec, best, stall = (
                a[..., keep] for a in (ids, Y, S, fv, G, T, obm, R, dec, best, stall))
            Sh, Yh, rho, al = Sh[..., keep], Yh[..., keep], rho[:, keep], al[:, keep]
            if not ids.size:
                return out
        # the step -t R, t halved from 1 until Armijo's condition holds (full steps in
        # the quadratic region); the scores along it cost no product with Fr
        SD = Fr @ R
        full = best < 1e-10
        t = np.ones(ids.size)
        Sn = S - SD
        E, z, lse = _exp_columns(Sn)
        Yn = Y - R
        fn = lse - np.einsum("ij,ij->j", T, Yn) - obm + reg * np.einsum("ij,ij->j", Yn, Yn)
        fail = ~(full | (fn <= fv - 1e-4 * dec))
        while fail.any():
            c = np.flatnonzero(fail)
            t[c] *= 0.5
            Sn[:, c] = S[:, c] - SD[:, c] * t[c]
            E[:, c], z[c], lse[c] = _exp_columns(Sn[:, c])
            Yn[:, c] = Y[:, c] - R[:, c] * t[c]
            fn[c] = (lse[c] - np.einsum("ij,ij->j", T[:, c], Yn[:, c]) - obm[c]
                     + reg * np.einsum("ij,ij->j", Yn[:, c], Yn[:, c]))
            fail[c] = ~((fn[c] <= fv[c] - 1e-4 * t[c] * dec[c]) | (t[c] < 1e-12))
        # no decrease even at t ~ 1e-12: f cannot tell the points apart, x is found
        lost = ~full & ~(fn < fv)
        Gn = (Fr.T @ E) / z - T + 2 * reg * Yn
        sv, yv = Yn - Y, Gn - G
        cur = np.einsum("ij,ij->j", sv, yv)
        Sh[slot], Yh[slot] = sv, yv
        rho[slot] = np.where(cur > 0, 1.0 / np.where(cur > 0, cur, 1.0), 0.0)
        slot = (slot + 1) % mem
        Y, S, fv, G = np.where(lost, Y, Yn), Sn, fn, Gn
        if lost.any():  # they stop here, at the point before the step
            out[:, ids[lost]] = Y[:, lost]
            best[lost] = -np.inf
            stall[lost] = 2
    for c, row in enumerate(ids):  # unsolved: Newton's method from where they stand
        if best[c] == -np.inf:
            continue
        out[:, row] = _softmax_newton(pos[row], ob, st, T[:, c], Y[:, c])
    return out


def _softmax_newton(j: np.ndarray, ob: np.ndarray, st: dict, target: np.ndarray,
                    y: np.ndarray) -> np.ndarray:
    """One row of :func:`softmax_rows` by Newton's method (exact Hessians) from ``y``."""
    Fr, Fh, scale, reg = st["Fr"], st["Fh"], st["scale"], st["reg"]
    r = Fr.shape[1]

    def f(y):
        s = Fr @ y + ob
        return _lse(s) - float(s[j].mean()) + reg * float(y @ y)

    def grad_hess(y):
        s = Fr @ y + ob
        p = np.exp(s - s.max())
        p /= p.sum()
        mv = Fr.T @ p
        H = _weighted_gram(Fh, p, center=mv / scale)
        if scale != 1.0:
            H *= scale * scale
        H[np.diag_indices(r)] += 2 * reg
        return mv - target + 2 * reg * y, H

    return _newton(f, grad_hess, y)


#: The derived key of a ranking model's per-user log partition over the items (see
#: log_partition), kept with the state for the next item fold-in.
LOG_Z = ("log_z",)


def log_partition(U: np.ndarray, V: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row u of ``U``: log sum_j exp(U_u . V_j + b_j) over the rows j of ``V``
    (float64; -inf when V has none), in chunks of about 4 M scores. O(n m k): the cost
    of an item fold-in on a large model, which the model therefore keeps (LOG_Z)."""
    n = U.shape[0]
    out = np.empty(n)
    if V.shape[0] == 0:
        out.fill(-np.inf)
        return out
    step = max(1, (1 << 22) // V.shape[0])
    for s0 in range(0, n, step):
        S = U[s0:s0 + step] @ V.T + b
        top = S.max(1)
        out[s0:s0 + step] = np.log(np.exp(S - top[:, None]).sum(1)) + top
    return out


def softmax_columns(pos: list[np.ndarray], U: np.ndarray, V: np.ndarray, b: np.ndarray,
                    counts: np.ndarray, replaced: np.ndarray, reg: float,
                    with_bias: bool = True, dual: bool | None = None,
                    added: list[np.ndarray] | None = None,
                    log_z: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per new column (an item), with the users ``U`` (n, k), the other items (``V``,
    ``b``) and every user's softmax over items fixed: the factors v and bias c maximising
    the multinomial log-likelihood of the training interactions (user u's ``counts[u]``
    draws from a softmax over the items, this item's score t_u = U_u . v + c),

        (v, c) = argmin  -mean_{u in pos} t_u + (1/|pos|) sum_u counts_u log(Z_u + e^t_u)
                         + reg |v|^2,

    Z_u being u's sum of exp(score) over the other items (without ``replaced[col]``, the
    item's own old row, if it has one: -1 if not); c = 0 unless ``with_bias``. Each
    user's draws are their interactions after the fold-in: ``counts`` plus one per entry
    of ``added[col]`` (the column's interactions the counts do not hold yet; default
    ``pos[col]``: all of them, as for a new item). One
    pass over every user x item score computes log Z (``log_partition``, O(n m k);
    ``log_z`` if given); then Newton per item from v = 0, each step O(n k^2) (the solve
    in the row space of U when it has fewer users than factors)."""
    n, k = U.shape
    if log_z is None:
        log_z = log_partition(U, V, b)
    Ur, Bm = _reduced(U, dual)
    A = np.hstack([Ur, np.ones((n, 1))]) if with_bias else Ur
    r = Ur.shape[1]
    reg = reg if reg > 0 else 1e-12  # 0 only when every row of F is 0
    w = counts.astype(np.float64)
    Xv, Xb = np.zeros((len(pos), k)), np.zeros(len(pos))
    for col, P in enumerate(pos):
        lz = log_z  # read only: a changed copy replaces it below
        # each user's draws, this item's among them: the counts plus the rows they do
        # not hold yet (a user listed twice drew the item twice, as in fit)
        wc = w.copy()
        users, times = np.unique(P if added is None else added[col], return_counts=True)
        wc[users] += times
        if replaced[col] >= 0:  # Z without the item's old score: log(Z - e^old)
            j = replaced[col]
            share = np.exp(U @ V[j] + b[j] - log_z)  # the old item's share of Z
            with np.errstate(divide="ignore"):
                lz = lz + np.log1p(-np.minimum(share, 1.0))
            # where it held nearly all of Z the difference lost its digits: sum the
            # other items' terms directly for those users
            close = np.flatnonzero(share > 1.0 - 1e-6)
            if close.size:
                others = np.arange(V.shape[0]) != j
                S = U[close] @ V[others].T + b[others]
                lz[close] = (np.log(np.exp(S - S.max(1, keepdims=True)).sum(1))
                             + S.max(1)) if S.shape[1] else -np.inf
        # a user with no other item has a softmax of one item: probability 1 whatever
        # the parameters, no term (else the bias would be linear and unbounded)
        alone = np.isneginf(lz)
        if alone.any():
            wc[alone] = 0.0
            P = P[~alone[P]]
            if P.size == 0:
                continue
        m_ = len(P)
        tgt = A[P].sum(0) / m_

        def f(x, lz=lz, P=P, m_=m_, wc=wc):
            t = A @ x
            return (float(wc @ np.logaddexp(lz, t)) / m_ - float(t[P].mean())
                    + reg * float(x[:r] @ x[:r]))

        def grad_hess(x, lz=lz, tgt=tgt, m_=m_, wc=wc):
            t = A @ x
            q = np.exp(t - np.logaddexp(lz, t))  # this item's share of each user's softmax
            g = A.T @ (wc * q) / m_ - tgt
            g[:r] += 2 * reg * x[:r]
            H = _weighted_gram(A, wc * q * (1 - q) / m_)
            H[np.arange(r), np.arange(r)] += 2 * reg
            if with_bias:
                H[r, r] += 1e-12
            return g, H

        x = _newton(f, grad_hess, np.zeros(A.shape[1]))
        Xv[col] = x[:r] if Bm is None else Bm @ x[:r]
        Xb[col] = x[r] if with_bias else 0.0
    return Xv, Xb


def fold_in(st: FittedState, own: Any, other: Any, ratings: np.ndarray, *, side: str,
            reg_factors: float, reg_bias: float, nonnegative: bool = False,
            ranking_reg: float | None = None) -> FittedState:
    """A new state in which the ``own`` ids (users for side "user", items for "item")
    have the bias and factors minimising their part of the training loss on
    ``ratings`` of the ``other`` ids, the other side held fixed (one ridge solve per
    id; with ``nonnegative``, the factors constrained to >= 0 as in training). New ids
    are appended, known ones recomputed; the pairs join the seen-items record. Ratings
    of unknown ``other`` ids are ignored; an id left with none raises ``ValueError``, as
    do ratings beyond the model's dtype and rows whose solution is not finite in it (the
    state is then left as it was). ``ratings`` are validated float64, as long as
    ``own`` and ``other``.
    """
    dtype = st.user_factors.dtype
    if st.loss == "squared":  # a ranking model ignores the ratings
        with np.errstate(over="ignore"):
            big = np.flatnonzero(~np.isfinite(ratings.astype(dtype)))
        if big.size:
            raise ValueError(
                f"ratings has {big.size} value{'s' if big.size > 1 else ''} too large for "
                f"{dtype.name}, the model's dtype (first at position {int(big[0])}: "
                f"{float(ratings[big[0]])!r}); drop or rescale them before fold_in.")
    own_map, other_map = (st.user_map, st.item_map) if side == "user" else \
        (st.item_map, st.user_map)
    other_idx = other_map.lookup("items" if side == "user" else "users", other)
    name = "users" if side == "user" else "items"
    own_ids = normalize_ids(name, own)
    raw_ids, inv = unique_inverse(own_ids)
    k = blank_index(raw_ids)
    if k >= 0 and own_map.lookup(name, raw_ids[k:k + 1])[0] < 0:  # before solving, at its row
        refuse_empty(name, raw_ids, lambda k: own_ids == raw_ids[k])
    if own_map.ids.size and (raw_ids.dtype.kind == "U") != (own_map.ids.dtype.kind == "U"):
        own_map.lookup(side + "s", raw_ids)  # raises the type-mismatch error
    # the other side's float64 rows, kept with the state (read-only; a fold-in keeps them
    # for the next one: see _with_rows); a ranking model's user fold-in takes the items'
    # from its own kept start instead (softmax_start)
    F = None if st.loss != "squared" and side == "user" else \
        similarity_arrays(st, "item" if side == "user" else "user")[0]
    ob = (st.item_bias if side == "user" else st.user_bias).astype(np.float64)
    mu = st.kernel_mu
    ok = other_idx >= 0
    empty = np.bincount(inv[ok], minlength=raw_ids.size) == 0
    if empty.any():
        other_side = "items" if side == "user" else "users"
        shown = ", ".join(repr(x.item()) for x in raw_ids[empty][:5])
        raise ValueError(
            f"fold_in: {side}(s) {shown} rated only {other_side} the model does not "
            f"know, so nothing can be learnt for them; pass ratings of known "
            f"{other_side} (or fit/partial_fit to add new {other_side}).")
    order = np.argsort(inv[ok], kind="stable")
    oi, rr, gi = other_idx[ok][order], ratings[ok][order], inv[ok][order]
    bounds = np.searchsorted(gi, np.arange(raw_ids.size + 1))
    # The rows the record (seen items, counts) does not hold yet: a known id refolded
    # from its own rows (as the docs ask: "pass all of them") adds none of them again.
    known = own_map.lookup(name, raw_ids) if len(own_map) else np.full(raw_ids.size, -1)
    new = unrecorded(st, *((known[gi], oi) if side == "user" else (oi, known[gi])),
                     counted=side)
    idle = None
    if side == "item" and st.low_indptr is not None and st.user_counts is not None:
        # An item fold-in solves no user: a user without interactions stays without, and
        # their rows are recorded as seen but no interaction, like the rows below
        # min_rating (a later user fold-in counts them, on both sides). So for them the
        # record's copies are the low ones.
        idle = st.user_counts[oi] == 0
        if idle.any():
            new = np.where(idle, unrecorded(st, oi, known[gi], low=True), new)
    if st.loss != "squared":
        # A ranking model: the interactions say which items, not how much (ratings are
        # ignored); a row is solved from the softmax over the other side's rows. A
        # repeated interaction is a second draw, as a repeated row is a second positive
        # in fit.
        pos = [oi[bounds[g]:bounds[g + 1]] for g in range(raw_ids.size)]
        added = [oi[bounds[g]:bounds[g + 1]][new[bounds[g]:bounds[g + 1]]]
                 for g in range(raw_ids.size)]
        vec, bias = _ranking_rows(st, side, raw_ids, pos, F, ranking_reg, added)
        return _with_rows(st, side, raw_ids, vec, bias, oi[new], gi[new],
                          None if idle is None else idle[new])
    targets, feats = [], []
    for g in range(raw_ids.size):
        j = oi[bounds[g]:bounds[g + 1]]
        targets.append(rr[bounds[g]:bounds[g + 1]] - (mu + ob[j] if st.biased else 0.0))
        feats.append(F[j])
    vec, bias = ridge_rows(targets, feats, reg_factors, reg_bias, st.biased, nonnegative)
    return _with_rows(st, side, raw_ids, vec, bias, oi[new], gi[new])


def _ranking_rows(st: FittedState, side: str, raw_ids: np.ndarray, pos: list[np.ndarray],
                  F: np.ndarray | None, ranking_reg: float | None = None,
                  added: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Factors and biases of folded-in rows of a ranking model (:func:`softmax_rows` for
    users, :func:`softmax_columns` for items), the penalty ``ranking_reg`` (default
    FOLD_IN_RANKING_REG) times the other side's mean squared row norm. ``added``: per
    item, the users of ``pos`` whose rows are new to the record (default: all)."""
    c = FOLD_IN_RANKING_REG if ranking_reg is None else ranking_reg
    if side == "user":
        def build() -> dict:
            F = st.factors("item_factors").astype(np.float64)
            reg = c * float(np.mean(np.sum(F * F, axis=1))) if F.size else 0.0
            ob = st.item_bias.astype(np.float64) if st.biased else np.zeros(F.shape[0])
            return dict(softmax_start(F, ob, reg, hess_dtype=st.user_factors.dtype), ob=ob)

        # the items' part of the solve (their float64 rows, the Hessian at 0), kept with
        # the state and with those a user fold-in makes from it (F is None: not cast)
        start = st.derived(
            (SOFTMAX_START, c, _use_dual(*st.factors("item_factors").shape, None)),
            build, evict=lambda key: key[0] == SOFTMAX_START)  # one reg's at a time
        return (softmax_rows(pos, None, start["ob"], start["reg"], start=start),
                np.zeros(raw_ids.size))
    assert F is not None  # the users' float64 rows, for an item fold-in
    reg = c * float(np.mean(np.sum(F * F, axis=1))) if F.size else 0.0
    V = st.factors("item_factors").astype(np.float64)
    b = st.item_bias.astype(np.float64) if st.biased else np.zeros(V.shape[0])
    # each user's interactions (not the rows min_rating dropped, which are only seen)
    support = st.support("user")
    counts = (np.zeros(F.shape[0]) if support is None else support[: F.shape[0]]
              ).astype(np.float64)
    replaced = st.item_map.lookup("items", raw_ids) if len(st.item_map) else \
        np.full(raw_ids.size, -1)
    # every user's log partition over the items, the O(users x items x k) part: kept
    # with the state and carried to the states fold-ins of new items and users make
    # (see _carried_log_z), so a stream of new items pays it once
    log_z = st.derived(LOG_Z, lambda: log_partition(F, V, b))
    return softmax_columns(pos, F, V, b, counts, replaced, reg, with_bias=st.biased,
                           added=added, log_z=log_z)


def _with_rows(st: FittedState, side: str, raw_ids: np.ndarray, vec: np.ndarray,
               bias: np.ndarray, other_idx: np.ndarray, group: np.ndarray,
               idle: np.ndarray | None = None) -> FittedState:
    """``st`` with rows ``raw_ids`` of ``side`` set to (vec, bias), the maps and arrays
    grown for new ids, and the (row of group g, other_idx) pairs added to the seen
    record (those marked ``idle``, an item fold-in's rows of users without interactions,
    to its low rows instead of the counts). Raises ValueError, before building anything,
    if a row is not finite in the model's dtype."""
    with np.errstate(over="ignore", invalid="ignore"):
        bad = ~(np.isfinite(vec.astype(st.user_factors.dtype)).all(1)
                & np.isfinite(bias.astype(st.user_bias.dtype)))
    if bad.any():
        shown = ", ".join(repr(x.item()) for x in raw_ids[bad][:5])
        raise ValueError(
            f"fold_in: the solved factors or bias of {side}(s) {shown} are not finite in "
            f"{st.user_factors.dtype.name} (ratings too large for the model's scale); the "
            "model is unchanged. Rescale the ratings or raise reg_factors / reg_bias.")
    name = "users" if side == "user" else "items"
    old_map = st.user_map if side == "user" else st.item_map
    new_map, rows = old_map.extended(name, raw_ids)
    Fw = st.user_factors if side == "user" else st.item_factors
    b = st.user_bias if side == "user" else st.item_bias
    grow = len(new_map) - len(old_map)
    only_new = bool(rows.size) and int(rows.min()) >= len(old_map)
    if only_new:  # (a stream of new users) grown in place, past the rows old states hold
        add_f = np.zeros((grow, Fw.shape[1]), Fw.dtype)
        add_f[rows - len(old_map), : st.n_factors] = vec
        add_b = np.zeros(grow, b.dtype)
        add_b[rows - len(old_map)] = bias
        F2, b2 = appended(Fw, add_f), appended(b, add_b)
    else:
        F2, b2 = grown(Fw, grow), grown(b, grow)  # aligned, like every factor matrix
        F2[rows, : st.n_factors] = vec
        b2[rows] = bias
    other = "item" if side == "user" else "user"
    own_ext = None
    if only_new:
        # only new rows: the grown arrays' extremes are the old ones' (kept with the
        # state) and the new rows' (padding included), without a pass over the model
        own_ext = {f"{side}_factors": _minmax(F2[rows], extremes(st, f"{side}_factors")),
                   f"{side}_bias": _minmax(b2[rows], extremes(st, f"{side}_bias"))}
    _check_in_range(st, side, raw_ids, vec, bias, F2, b2, own_ext)
    # What the next fold-in needs of the state, kept with it: what was derived from the
    # other side, whose arrays are unchanged (for a user fold-in, the items' part of a
    # ranking solve too), and this side's extremes as they follow from the above.
    keep = st.derived_of_side(other)
    keep.update({("extremes", k): v for k, v in (own_ext or {}).items()})
    log_z = _carried_log_z(st, side, rows, F2, b2, only_new)
    if log_z is not None:
        keep[LOG_Z] = log_z
    # the seen record takes the pairs (rows[group], other_idx), in this side's order
    keep.update(_carried_rows(st, side, F2, rows[group], other_idx, only_new))
    accum = {}
    if st.user_accum is not None:  # AdaGrad: a solved row starts afresh, as a new one
        old_acc = st.user_accum if side == "user" else st.item_accum
        if only_new and old_acc is not None and len(old_acc) == len(old_map):
            acc = appended(old_acc, np.ones(grow, old_acc.dtype))
        else:
            gu, gi = st.accumulators(**{f"n_{side}s": len(new_map)})
            acc = gu if side == "user" else gi
            acc[rows] = 1
        accum[f"{side}_accum"] = acc
    if side == "user":
        seen = merge_seen(*st.seen(), len(new_map), rows[group], other_idx)
        counts = st.counted(rows[group], other_idx, len(new_map), len(st.item_map))
        return replace(st, user_map=new_map, user_factors=F2, user_bias=b2,
                       seen_indptr=seen[0], seen_items=seen[1], **accum,
                       **counts).keeping(keep)
    seen = merge_seen(*st.seen(), len(st.user_map), other_idx.astype(np.int32),
                      rows[group])
    # A user without interactions keeps none: nothing solved their (zero) row, so they
    # are still served the most popular items.
    if idle is not None:  # and their rows are no interactions of the item either
        counts = st.counted(other_idx[~idle], rows[group][~idle], len(st.user_map),
                            len(new_map))
        return replace(st, item_map=new_map, item_factors=F2, item_bias=b2,
                       seen_indptr=seen[0], seen_items=seen[1], **accum, **counts,
                       **st.with_low((other_idx[idle], rows[group][idle]))).keeping(keep)
    # (a state of format 4 keeps no low rows apart: the item counts them)
    users = other_idx if st.user_counts is None else other_idx[st.user_counts[other_idx] > 0]
    counts = st.counted(users, rows[group], len(st.user_map), len(new_map))
    return replace(st, item_map=new_map, item_factors=F2, item_bias=b2,
                   seen_indptr=seen[0], seen_items=seen[1], **accum, **counts).keeping(keep)


def _carried_rows(st: FittedState, side: str, F2: np.ndarray, own_pairs: np.ndarray,
                  other_pairs: np.ndarray, only_new: bool) -> dict[Any, np.ndarray]:
    """What a fold-in's state can take over of ``st``'s derived arrays for the side it
    changes, updated rather than rebuilt, so that a fold-in of one user does not make
    the next ``similar_users`` or unknown user's list rescan the model:

    - the float64 rows and norms of ``similar_*``, when every row is new (appended,
      O(new rows));
    - the support counts counted from the seen record, plus the pairs (``own_pairs``,
      ``other_pairs``) the record takes, when ``st`` keeps no counts of its own (with
      counts, as min_rating keeps, some recorded pairs are no interactions, and the new
      state's counts are its support)."""
    have = st.derived_where(lambda key: key[0] in ("similarity", "support"))
    out: dict[Any, np.ndarray] = {}
    old = have.get(("similarity", side))
    if old is not None and only_new:  # every new row is set: F2's rows past the old ones
        f = F2[len(old[0]):, :st.n_factors].astype(np.float64)
        pair = (appended(old[0], f), appended(old[1], np.linalg.norm(f, axis=1)))
        for a in pair:
            a.flags.writeable = False
        out[("similarity", side)] = pair
    if st.user_counts is not None or st.item_counts is not None:
        return out  # support() is the state's own counts, which the fold-in replaces
    other = "item" if side == "user" else "user"
    n = {side: len(F2), other: len(st.item_map if other == "item" else st.user_map)}
    for which, pairs in ((side, own_pairs), (other, other_pairs)):
        counts = have.get(("support", which))
        if counts is None:
            continue
        if which == side and only_new:
            grown_counts = appended(counts, counts_of(
                (pairs - counts.size).astype(np.int32), n[which] - counts.size))
        else:
            grown_counts = plus_counts(counts, pairs, n[which])
        grown_counts.flags.writeable = False
        out[("support", which)] = grown_counts
    return out


def _carried_log_z(st: FittedState, side: str, rows: np.ndarray, F2: np.ndarray,
                   b2: np.ndarray, only_new: bool) -> np.ndarray | None:
    """The per-user log partition (LOG_Z) of the state a fold-in makes from ``st``, the
    rows ``rows`` of ``side`` set to those of ``F2`` and ``b2`` (the grown arrays), from
    ``st``'s own when it has one: new items add their terms to every user's (O(users x
    k) each); new or refolded users get theirs computed (O(items x k) each). None when
    ``st`` keeps none, or when known items were refolded (their old terms would have to
    be taken out: the next item fold-in computes it afresh)."""
    old = st.derived_where(lambda key: key == LOG_Z).get(LOG_Z)
    if old is None or (side == "item" and not only_new):
        return None
    k = st.n_factors
    if side == "item":
        U = similarity_arrays(st, "user")[0]
        T = U @ F2[rows, :k].astype(np.float64).T
        if st.biased:
            T += b2[rows].astype(np.float64)
        out = np.logaddexp.reduce(np.column_stack([old, T]), axis=1)
        out.flags.writeable = False
        return out
    V = similarity_arrays(st, "item")[0]
    b = st.item_bias.astype(np.float64) if st.biased else np.zeros(V.shape[0])
    if only_new:  # every new row is set: F2's rows past the old ones
        out = appended(old, log_partition(F2[len(old):, :k].astype(np.float64), V, b))
    else:
        out = np.empty(len(F2))
        out[:len(old)] = old
        out[rows] = log_partition(F2[rows, :k].astype(np.float64), V, b)
    out.flags.writeable = False  # shared by the states that carry it: never written
    return out


def _check_in_range(st: FittedState, side: str, raw_ids: np.ndarray, vec: np.ndarray,
                    bias: np.ndarray, F2: np.ndarray, b2: np.ndarray,
                    own_ext: dict[str, tuple[float, float]] | None = None) -> None:
    """ValueError unless the grown model (``F2``, ``b2`` on ``side``, ``st``'s other
    side) passes training's divergence check (all_finite_from). Finite rows are not
    enough: ratings of 1e38 in a float32 model give factors and a bias of ~1e38, whose
    predictions overflow; every later fit or partial_fit then raised DivergenceError
    ("try a smaller learning_rate"), blaming the wrong thing. Names the folded-in ids
    whose own predictions reach the bound (the largest one if only their combination
    with the other rows does). ``own_ext``: F2's and b2's (max, min) when known (the
    other side's are kept with the state), to spare a pass over the model."""
    other = "item" if side == "user" else "user"
    oF, ob = (st.item_factors, st.item_bias) if side == "user" else \
        (st.user_factors, st.user_bias)
    ranking = st.loss != "squared"
    if own_ext is None:
        own_ext = {f"{side}_factors": _minmax(F2), f"{side}_bias": _minmax(b2)}
    ext = [[own_ext[f"{side}_factors"]], [extremes(st, f"{other}_factors")],
           [own_ext[f"{side}_bias"]], [extremes(st, f"{other}_bias")]]
    if all_finite_from(ext, st.kernel_mu, F2.shape[1], st.user_factors.dtype, ranking=ranking):
        return
    limit = score_limit(st.user_factors.dtype, ranking)
    amax = [float(np.abs(a).max()) if a.size else 0.0 for a in (oF, ob)]
    with np.errstate(over="ignore", invalid="ignore"):
        reach = (np.abs(vec).max(1, initial=0.0) * amax[0] * F2.shape[1] + np.abs(bias)
                 + amax[1] + abs(st.kernel_mu))
    flagged = reach >= limit
    if not flagged.any():
        flagged[np.argmax(reach)] = True
    shown = ", ".join(repr(x.item()) for x in raw_ids[flagged][:5])
    dtype = st.user_factors.dtype.name
    if ranking:
        why = (f"the solved factors of {side}(s) {shown} give scores beyond float32's range "
               f"({limit:.3g}), which training treats as divergence for a ranking loss")
        fix = "Raise reg_factors"
    else:
        why = (f"the ratings are too large for this model's dtype ({dtype}): the solved "
               f"factors and bias of {side}(s) {shown} give predictions beyond {limit:.3g}, "
               "which training treats as divergence")
        fix = "Rescale the ratings" + (" (or fit a float64 model)" if dtype == "float32"
                                       else "")
    raise ValueError(f"fold_in: {why}; the model is unchanged. {fix}.")


# ---------------------------------------------------------------------- ranking metric
def rank_metric(st: FittedState, val_u: np.ndarray, val_i: np.ndarray,
                seen: tuple[np.ndarray, np.ndarray], name: str, k: int) -> float:
    """Mean over the validation users of ``name`` at ``k`` ("ndcg": binary gains, ideal
    DCG over min(k, relevant) items; "recall": hits / relevant; "hit_rate": any hit): each
    user's items ranked among all items, the user's items of the CSR ``seen`` excluded
    (the training record), through the one top-k path in float64 with the -inf slots
    (no candidate left) never hits: the value ``mfsgd.metrics`` gives for these pairs.
    ``val_u``/``val_i`` are rows of known (user, item) validation pairs; NaN when there
    are none."""
    if val_u.size == 0:
        return float("nan")
    users, inv = np.unique(val_u, return_inverse=True)
    # relevant items per validation user, as a sorted key user * n_items + item
    n_items = st.item_bias.size
    k = min(k, n_items)  # a list holds every item at most: ndcg@10**12 is ndcg@n_items
    rel = sorted_unique(inv.astype(np.int64) * n_items + val_i)
    n_rel = np.bincount(rel // n_items, minlength=users.size)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    total = 0.0
    for s, e, cols, vals in top_n_batches(st, users.astype(np.int32), k, exclude=seen,
                                          float64=True):
        keys = np.arange(s, e, dtype=np.int64)[:, None] * n_items + cols
        pos = np.minimum(np.searchsorted(rel, keys), rel.size - 1)
        hit = (rel[pos] == keys) & (vals > -np.inf)  # a -inf slot holds an excluded item
        nr = n_rel[s:e]
        if name == "ndcg":
            ideal = np.cumsum(disc)[np.minimum(nr, cols.shape[1]) - 1]
            total += float(((hit * disc[: cols.shape[1]]).sum(1) / ideal).sum())
        elif name == "recall":
            total += float((hit.sum(1) / nr).sum())
        else:
            total += float(hit.any(1).sum())
    return total / users.size
