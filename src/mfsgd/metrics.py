"""Accuracy metrics (RMSE, MAE) and top-k ranking metrics for rating models.

The ranking metrics and ``top_k_items`` read a model's public fitted parameters
(``global_mean_``, ``user_bias_``, ``item_bias_``, ``user_factors_``,
``item_factors_``, ``user_ids_``, ``item_ids_``; ``biased`` when present), so any object
with them works, and rank through the package's one top-k path
(``_recommend.top_n_batches``) in float64: a block of users at a time, one matrix
product, the compiled top-k scan; no Python loop runs per user or per rating.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from . import _recommend as R
from ._data import columns_of, unpack
from ._idmap import IdMap, idmap_from_ids, normalize_ids, sorted_unique, unique_inverse
from ._state import FittedState, seen_csr
from ._validation import as_1d, check_int

__all__ = [
    "rmse",
    "mae",
    "precision_at_k",
    "recall_at_k",
    "ndcg_at_k",
    "map_at_k",
    "hit_rate_at_k",
    "ranking_metrics",
    "top_k_items",
    "coverage",
]


# ---------------------------------------------------------------------- RMSE / MAE
def _finite_1d(name: str, values: Any) -> np.ndarray:
    arr = as_1d(name, values)
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must be numeric; got an object array with non-numeric "
                            "values.") from None
    if arr.dtype.kind not in "iuf":
        what = "booleans" if arr.dtype.kind == "b" else f"dtype {arr.dtype}"
        raise TypeError(f"{name} must be numeric (int or float); got {what}.")
    arr = arr.astype(np.float64, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{name} has {int(bad.sum())} non-finite values (first at position "
                         f"{first}: {arr[first]!r}); metrics need finite values.")
    return arr


def _pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t, p = _finite_1d("y_true", y_true), _finite_1d("y_pred", y_pred)
    if t.size != p.size:
        raise ValueError(f"y_true and y_pred must have the same length; y_true has {t.size}, "
                         f"y_pred has {p.size}.")
    if t.size == 0:
        raise ValueError("y_true and y_pred are empty; a metric needs at least one rating.")
    return t, p


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error ``sqrt(mean((y_true - y_pred)^2))``.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        True and predicted ratings (finite numbers).

    Returns
    -------
    float

    Raises
    ------
    TypeError, ValueError
        Non-numeric or non-finite values, different lengths, or empty input.

    Examples
    --------
    >>> from mfsgd.metrics import rmse
    >>> rmse([4, 3, 5], [3.5, 3, 4])
    0.6454972243679028
    """
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error ``mean(|y_true - y_pred|)``.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
        True and predicted ratings (finite numbers).

    Returns
    -------
    float

    Examples
    --------
    >>> from mfsgd.metrics import mae
    >>> mae([4, 3, 5], [3.5, 3, 4])
    0.5
    """
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


# ---------------------------------------------------------------------- top-k core
def _fitted(model: Any) -> FittedState:
    """A state holding the model's public fitted parameters (views, no copy of the
    factors), for the top-k functions of ``_recommend``. Metrics read no private state:
    they take any object with the public attributes (reading one of an unfitted
    MatrixFactorization raises NotFittedError)."""
    item_ids = np.asarray(model.item_ids_)
    user_ids = np.asarray(model.user_ids_)
    P = np.asarray(model.user_factors_)
    return FittedState(
        global_mean=float(model.global_mean_), user_factors=P,
        item_factors=np.asarray(model.item_factors_),
        user_bias=np.asarray(model.user_bias_, dtype=np.float64),
        item_bias=np.asarray(model.item_bias_, dtype=np.float64),
        user_map=idmap_from_ids(user_ids), item_map=idmap_from_ids(item_ids),
        rating_range=(-math.inf, math.inf), biased=bool(getattr(model, "biased", True)),
        n_factors=P.shape[1])


def _check_k(k: Any) -> int:
    return check_int("k", k)


def _check_threshold(threshold: Any) -> float | None:
    if threshold is None:
        return None
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, numbers.Real) \
            or not math.isfinite(threshold):
        raise TypeError(f"threshold must be a finite number (or None: every held-out rating is "
                        f"relevant); got {threshold!r}.")
    return float(threshold)


def _exclusions(st: FittedState, columns: tuple[Any, Any, Any], train: Any,
                users_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The items each of ``users_sorted`` rated in ``train``, as a CSR over their
    positions (model items only)."""
    tu, ti, _ = unpack(train, None, columns=columns, ratings="ignore", what="train",
                       prefix="train ")
    pos = IdMap(users_sorted).lookup("train users", tu)
    item = st.item_map.lookup("train items", ti)
    keep = (pos >= 0) & (item >= 0)
    return seen_csr(pos[keep], item[keep], users_sorted.size)


def ranking_arrays(model: Any, test: Any, k: int, threshold: float | None,
                   exclude_train: bool, train: Any,
                   block_elements: int | None = None) -> dict[str, Any]:
    """Per-user metric arrays (the evaluated users sorted by id) and the coverage: the
    work of :func:`ranking_metrics`, also used by ``model_selection.cross_validate``.
    ``block_elements`` overrides the scores per block (tests)."""
    k = _check_k(k)
    threshold = _check_threshold(threshold)
    if not isinstance(exclude_train, (bool, np.bool_)):
        raise TypeError(f"exclude_train must be True or False; got {exclude_train!r}.")
    if exclude_train and train is None:
        raise ValueError("exclude_train=True needs the training ratings: pass train= (the data "
                         "the model was fitted on), or exclude_train=False to rank every item.")
    st = _fitted(model)
    columns = columns_of(model)
    need = threshold is not None
    u, i, r = unpack(test, None, columns=columns, ratings="optional" if need else "ignore",
                     what="test", prefix="test ")
    if need:
        if r is None:
            raise ValueError(f"test has no ratings, so threshold={threshold} cannot select the "
                             f"relevant items; pass a {columns[2]!r} column or a (users, "
                             "items, ratings) tuple, or threshold=None.")
        relevant = _finite_1d("test ratings", r) >= threshold
        u, i = u[relevant], i[relevant]

    # Evaluated users: those with at least one relevant held-out item.
    users, upos = unique_inverse(normalize_ids("test users", u))
    n_users = int(users.size)
    if n_users == 0:
        raise ValueError(f"no test rating is >= threshold {threshold}, so no user has a relevant "
                         "item to find; lower threshold or check the test ratings.")
    n_items = len(st.item_map)
    # Distinct relevant (user, item) pairs; unknown items count as relevant but unfindable.
    codes, icode = unique_inverse(normalize_ids("test items", i))
    pair = sorted_unique(upos.astype(np.int64) * codes.size + icode)
    pu = pair // codes.size
    n_rel = np.bincount(pu, minlength=n_users)
    pitem = st.item_map.lookup("test items", codes[pair % codes.size])
    known = pitem >= 0
    rel_keys = np.sort(pu[known] * n_items + pitem[known])

    excl = _exclusions(st, columns, train, users) if exclude_train else None
    rows = st.user_map.lookup("test users", users)

    kk = min(k, n_items)
    ideal_len = int(min(k, max(int(n_rel.max()), kk)))
    discount = 1.0 / np.log2(np.arange(2, ideal_len + 2, dtype=np.float64))
    idcg_table = np.cumsum(discount)
    out = {name: np.zeros(n_users) for name in ("precision", "recall", "ndcg", "map",
                                                   "hit_rate")}
    recommended = np.zeros(n_items, dtype=bool)
    ranks = np.arange(1, kk + 1, dtype=np.float64)
    for s, e, top, score in R.top_n_batches(st, rows, k, exclude=excl,
                                            exclude_rows=np.arange(n_users), float64=True,
                                            budget=block_elements):
        valid = score > -np.inf
        keys = np.arange(s, e, dtype=np.int64)[:, None] * n_items + top
        if rel_keys.size:
            at = np.minimum(np.searchsorted(rel_keys, keys), rel_keys.size - 1)
            hit = valid & (rel_keys[at] == keys)
        else:
            hit = np.zeros(keys.shape, dtype=bool)
        nrel = n_rel[s:e]
        n_hit = hit.sum(axis=1)
        out["precision"][s:e] = n_hit / k
        out["recall"][s:e] = n_hit / nrel
        out["hit_rate"][s:e] = n_hit > 0
        ideal = np.minimum(k, nrel)
        out["ndcg"][s:e] = (hit @ discount[:kk]) / idcg_table[ideal - 1]
        prec_at = np.cumsum(hit, axis=1) / ranks
        out["map"][s:e] = (hit * prec_at).sum(axis=1) / ideal
        recommended[top[valid]] = True
    out["users"] = users
    out["n_relevant"] = n_rel
    out["coverage"] = float(recommended.sum() / max(n_items, 1))
    return out


_DEFINITIONS = """
    Definitions (per evaluated user u; then averaged over the evaluated users):

    * The **relevant** items R_u are the distinct items u rated ``>= threshold`` in
      ``test`` (all of u's held-out items when ``threshold`` is None). Only users with
      at least one relevant item are evaluated. Relevant items the model has never
      seen count in ``|R_u|`` but can never be recommended.
    * The **candidates** are all items of the model, minus the items u rated in
      ``train`` when ``exclude_train``. Each candidate's score is the model's
      unclipped prediction; the top-k list L_u holds the k best (fewer when fewer
      candidates remain). Users the model has not seen are ranked by the item terms
      alone (``b'_j``), as ``predict`` would.
    * h_j = 1 if the j-th item of L_u is in R_u, else 0 (j = 1 .. k).
    * ``precision@k = sum_j h_j / k``
    * ``recall@k = sum_j h_j / |R_u|``
    * ``hit_rate@k = 1 if sum_j h_j >= 1 else 0``
    * ``ndcg@k = DCG / IDCG`` with binary gains and a log2 discount:
      ``DCG = sum_j h_j / log2(j + 1)``, ``IDCG = sum_{j=1..min(k, |R_u|)} 1 / log2(j + 1)``.
    * ``map@k`` = mean over users of ``AP@k = (1 / min(k, |R_u|)) sum_j h_j * precision@j``,
      where ``precision@j = (sum_{l<=j} h_l) / j``.

"""


def ranking_metrics(model: Any, test: Any, k: int = 10, threshold: float | None = 4.0,
                    exclude_train: bool = True, *, train: Any = None) -> dict[str, float]:
    """Top-k ranking quality of a fitted model on held-out ratings.

    Parameters
    ----------
    model : fitted MatrixFactorization
        Any object with the fitted attributes ``item_bias_``, ``user_bias_``,
        ``global_mean_``, ``user_factors_``, ``item_factors_``, ``user_ids_`` and
        ``item_ids_`` works.
    test : DataFrame, tuple or dict
        Held-out ratings in the forms ``fit`` accepts (DataFrame columns named by the
        model's ``user_col``, ``item_col``, ``rating_col``).
    k : int, default 10
        Length of each user's recommendation list.
    threshold : float or None, default 4.0
        A held-out item is relevant when its rating is ``>= threshold``; None makes
        every held-out item relevant (ratings not needed).
    exclude_train : bool, default True
        Remove each user's training items from the candidates (the usual protocol;
        otherwise known items crowd the top of the lists). Needs ``train``.
    train : same forms as ``test``, optional
        The ratings the model was fitted on (only users and items are read).

    Returns
    -------
    dict
        ``precision``, ``recall``, ``ndcg``, ``map``, ``hit_rate`` (means over the
        evaluated users), ``coverage`` (share of the model's items that appear in at
        least one evaluated user's top-k list) and ``n_users`` (users evaluated).

    Raises
    ------
    NotFittedError
        The model is not fitted.
    TypeError, ValueError
        Bad arguments; ``exclude_train=True`` without ``train``; no relevant item in
        ``test``.

    Notes
    -----
    {definitions}

    Scores are computed in float64 for blocks of users (at most 2^24 scores per block)
    as ``U_block @ V.T`` and the top k are found by a compiled single scan: time
    O(n_users x n_items x n_factors), memory bounded by the block. Equal scores are
    ordered by item position in ``item_ids_``.

    Examples
    --------
    >>> from mfsgd import MatrixFactorization
    >>> from mfsgd.datasets import make_ratings
    >>> from mfsgd.model_selection import train_test_split
    >>> data = make_ratings(300, 200, 6000, random_state=0, as_frame=False)
    >>> train, test = train_test_split(data, random_state=0)
    >>> model = MatrixFactorization(n_factors=8, n_epochs=5, random_state=0).fit(train)
    >>> m = ranking_metrics(model, test, k=10, train=train)
    >>> sorted(m)
    ['coverage', 'hit_rate', 'map', 'n_users', 'ndcg', 'precision', 'recall']
    """
    arr = ranking_arrays(model, test, k, threshold, exclude_train, train)
    res = {name: float(np.mean(arr[name])) for name in ("precision", "recall", "ndcg", "map",
                                                         "hit_rate")}
    res["coverage"] = arr["coverage"]
    res["n_users"] = int(arr["users"].size)
    return res


if ranking_metrics.__doc__:  # None under python -OO
    ranking_metrics.__doc__ = ranking_metrics.__doc__.replace("{definitions}",
                                                              _DEFINITIONS.strip())


def _single(name: str, label: str):
    def metric(model: Any, test: Any, k: int = 10, threshold: float | None = 4.0,
               exclude_train: bool = True, *, train: Any = None) -> float:
        arr = ranking_arrays(model, test, k, threshold, exclude_train, train)
        return float(np.mean(arr[name]))

    metric.__name__ = metric.__qualname__ = f"{name}_at_k"
    metric.__doc__ = f"""{label} of a fitted model's top-k lists on held-out ratings.

    Parameters
    ----------
    model, test, k, threshold, exclude_train, train
        As in :func:`ranking_metrics` (``train`` is required while ``exclude_train``).

    Returns
    -------
    float
        The mean over the evaluated users (those with at least one relevant
        held-out item).

    See Also
    --------
    ranking_metrics : all ranking metrics from one pass over the users.

    Notes
    -----
    {_DEFINITIONS.strip()}
    """
    return metric


precision_at_k = _single("precision", "Precision@k")
recall_at_k = _single("recall", "Recall@k")
ndcg_at_k = _single("ndcg", "NDCG@k (binary gains, log2 discount)")
map_at_k = _single("map", "MAP@k (mean average precision, normalised by ``min(k, |R_u|)``)")
hit_rate_at_k = _single("hit_rate", "Hit rate@k (share of users with a relevant item in the top k)")


def top_k_items(model: Any, users: Any, k: int = 10, *,
                train: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Each user's k best-scored items.

    Parameters
    ----------
    model : fitted MatrixFactorization
        As in :func:`ranking_metrics`.
    users : array-like of user ids
        Users to recommend for (repeats allowed; unknown users are ranked by the
        item terms ``mu + b'_j`` alone).
    k : int, default 10
        List length (capped at the number of items).
    train : DataFrame, tuple or dict, optional
        Ratings whose (user, item) pairs are removed from the candidates, usually
        the training data.

    Returns
    -------
    items : ndarray of shape (n_users, min(k, n_items))
        Item ids, best first (dtype of ``model.item_ids_``).
    scores : ndarray of float64, same shape
        Unclipped predicted ratings. A user with fewer than k candidates left has
        ``-inf`` in the slots without an item (``items[np.isfinite(scores)]`` keeps
        the real recommendations).

    Examples
    --------
    >>> from mfsgd import MatrixFactorization
    >>> from mfsgd.datasets import make_ratings
    >>> data = make_ratings(300, 200, 6000, random_state=0, as_frame=False)
    >>> model = MatrixFactorization(n_factors=8, n_epochs=5, random_state=0).fit(data)
    >>> items, scores = top_k_items(model, [0, 1, 2], k=5, train=data)
    >>> items.shape
    (3, 5)
    """
    k = _check_k(k)
    st = _fitted(model)
    ids, inverse = unique_inverse(normalize_ids("users", users))
    excl = None if train is None else _exclusions(st, columns_of(model), train, ids)
    rows = st.user_map.lookup("users", ids)
    top, score = R.recommend_rows(st, rows, k, exclude=excl, exclude_rows=np.arange(ids.size),
                                  float64=True)
    return st.item_map.ids[top[inverse]], score[inverse]


def coverage(recommended_item_ids: Any, catalogue: Any) -> float:
    """Catalogue coverage: the share of the catalogue recommended to at least one user.

    Parameters
    ----------
    recommended_item_ids : array-like of item ids
        All recommended items, in any shape (e.g. the ``(n_users, k)`` array from
        :func:`top_k_items`) or as a sequence of per-user lists of any lengths.
    catalogue : int, array-like of item ids, or a fitted model
        The number of items in the catalogue, the catalogue's item ids, or a model
        (its ``item_ids_``). With ids, recommended items outside the catalogue are
        ignored.

    Returns
    -------
    float
        ``|distinct recommended items in the catalogue| / |catalogue|``, in [0, 1].

    Examples
    --------
    >>> from mfsgd.metrics import coverage
    >>> coverage([[1, 2], [2, 3]], 10)
    0.3
    >>> coverage([["a", "b"], ["b"]], ["a", "b", "c", "d"])
    0.5
    """
    rec = _flatten_ids(recommended_item_ids)
    distinct = sorted_unique(normalize_ids("recommended_item_ids", rec)) if rec.size else rec
    if hasattr(type(catalogue), "item_ids_") or hasattr(catalogue, "item_ids_"):
        catalogue = catalogue.item_ids_  # an unfitted model raises NotFittedError here
    if isinstance(catalogue, numbers.Integral) and not isinstance(catalogue, (bool, np.bool_)):
        n = check_int("catalogue", catalogue)
        if distinct.size > n:
            raise ValueError(f"recommended_item_ids holds {distinct.size} distinct items, more "
                             f"than the catalogue size {n}; pass the catalogue's item ids "
                             "instead.")
        return float(distinct.size / n)
    cat = sorted_unique(normalize_ids("catalogue", _flatten_ids(catalogue)))
    if cat.size == 0:
        raise ValueError("catalogue is empty; pass the number of items or their ids.")
    if distinct.size == 0:
        return 0.0
    found = IdMap(cat).lookup("recommended_item_ids", distinct) >= 0
    return float(found.sum() / cat.size)


def _flatten_ids(values: Any) -> np.ndarray:
    if hasattr(values, "to_numpy") and not isinstance(values, np.ndarray):
        values = values.to_numpy()
    if isinstance(values, (list, tuple)) and any(np.ndim(v) > 0 for v in values):
        parts = [np.ravel(np.asarray(v)) for v in values]
        parts = [p for p in parts if p.size]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    arr = np.asarray(values)
    if arr.ndim == 0:
        raise ValueError(f"expected item ids (an array or a list of lists); got a scalar {arr!r}.")
    return arr.ravel()
