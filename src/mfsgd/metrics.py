"""Accuracy metrics (RMSE, MAE) and top-k ranking metrics for rating models.

The ranking metrics score every item for every evaluated user from the model's public
fitted parameters (``item_bias_``, ``user_factors_``, ``item_factors_``, ``user_ids_``,
``item_ids_``), a block of users at a time, and pick each user's top k with
``np.argpartition``; no Python loop runs per user or per rating.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._idmap import IdMap, idmap_from_ids, normalize_ids, sorted_unique, unique_inverse
from ._recommend import top_n
from ._validation import as_1d, check_int, check_same_length, unpack_data

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

# Scores are computed for a block of users at once: at most _BLOCK_USERS users and at most
# _BLOCK_ELEMENTS scores (128 MiB of float64), so memory stays bounded for any catalogue.
_BLOCK_USERS = 1024
_BLOCK_ELEMENTS = 1 << 24


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
class _Scorer:
    """The model's parameters needed for ranking, read once from its public attributes."""

    def __init__(self, model: Any) -> None:
        # Reading a fitted attribute of an unfitted MatrixFactorization raises NotFittedError.
        self.item_ids = np.asarray(model.item_ids_)
        self.user_map = idmap_from_ids(np.asarray(model.user_ids_))
        self.item_map = idmap_from_ids(self.item_ids)
        self.P = np.asarray(model.user_factors_)
        self.Q = np.asarray(model.item_factors_, dtype=np.float64)
        self.item_bias = np.asarray(model.item_bias_, dtype=np.float64)
        self.user_bias = np.asarray(model.user_bias_, dtype=np.float64)
        biased = bool(getattr(model, "biased", True))
        self.mu = float(model.global_mean_) if biased else 0.0
        self.n_items = int(self.Q.shape[0])
        self.columns = (getattr(model, "user_col", "user"), getattr(model, "item_col", "item"),
                        getattr(model, "rating_col", "rating"))

    def iter_top_k(self, rows: np.ndarray, k: int, excl_pos: np.ndarray,
                   excl_item: np.ndarray, block_elements: int | None = None,
                   ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(start, stop, top, score, valid)`` per block of the users ``rows``.

        ``rows`` are model user rows (-1: unknown user, ranked by item terms only).
        ``(excl_pos, excl_item)`` are (position in ``rows``, item index) pairs removed
        from the candidates, sorted by position. ``top`` holds item indices best first;
        ``score`` the part of the prediction that varies per item (``b'_j + u . v_j``);
        ``valid`` is False where a user had fewer than k candidates left.
        """
        n_items = self.n_items
        kk = min(k, n_items)
        budget = _BLOCK_ELEMENTS if block_elements is None else block_elements
        step = max(1, min(_BLOCK_USERS, budget // max(n_items, 1)))
        Qt = self.Q.T
        for s in range(0, rows.size, step):
            e = min(s + step, rows.size)
            r = rows[s:e]
            U = self.P[np.maximum(r, 0)].astype(np.float64)
            U[r < 0] = 0.0
            S = U @ Qt
            S += self.item_bias
            lo, hi = np.searchsorted(excl_pos, [s, e])
            if hi > lo:
                S[excl_pos[lo:hi] - s, excl_item[lo:hi]] = -np.inf
            top, score = top_n(S, kk)  # best first; equal scores in item-index order
            yield s, e, top, score, score > -np.inf


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


def _exclusions(scorer: _Scorer, train: Any, users_sorted: np.ndarray):
    """(position among ``users_sorted``, item index) of the training pairs, sorted."""
    tu, ti, _ = unpack_data(train, None, need_ratings=False, columns=scorer.columns,
                            what="train")
    tu, ti = as_1d("train users", tu), as_1d("train items", ti)
    check_same_length(users=tu, items=ti)
    pos = IdMap(users_sorted).lookup("train users", tu)
    item = scorer.item_map.lookup("train items", ti)
    keep = (pos >= 0) & (item >= 0)
    key = np.sort(pos[keep].astype(np.int64) * scorer.n_items + item[keep])
    return key // scorer.n_items, key % scorer.n_items


def _ranking_arrays(model: Any, test: Any, k: int, threshold: float | None,
                    exclude_train: bool, train: Any,
                    block_elements: int | None = None) -> dict[str, Any]:
    """Per-user metric arrays (the evaluated users sorted by id) and the coverage."""
    k = _check_k(k)
    threshold = _check_threshold(threshold)
    if not isinstance(exclude_train, (bool, np.bool_)):
        raise TypeError(f"exclude_train must be True or False; got {exclude_train!r}.")
    if exclude_train and train is None:
        raise ValueError("exclude_train=True needs the training ratings: pass train= (the data "
                         "the model was fitted on), or exclude_train=False to rank every item.")
    scorer = _Scorer(model)
    need = threshold is not None
    u, i, r = unpack_data(test, None, need_ratings=need, columns=scorer.columns, what="test")
    u, i = as_1d("test users", u), as_1d("test items", i)
    if need:
        if r is None:
            raise ValueError(f"test has no ratings, so threshold={threshold} cannot select the "
                             f"relevant items; pass a {scorer.columns[2]!r} column or a (users, "
                             "items, ratings) tuple, or threshold=None.")
        r = _finite_1d("test ratings", r)
        check_same_length(users=u, items=i, ratings=r)
        relevant = r >= threshold
        u, i = u[relevant], i[relevant]
    else:
        check_same_length(users=u, items=i)

    # Evaluated users: those with at least one relevant held-out item.
    users, upos = unique_inverse(normalize_ids("test users", u))
    n_users = int(users.size)
    if n_users == 0:
        raise ValueError(f"no test rating is >= threshold {threshold}, so no user has a relevant "
                         "item to find; lower threshold or check the test ratings.")
    # Distinct relevant (user, item) pairs; unknown items count as relevant but unfindable.
    codes, icode = unique_inverse(normalize_ids("test items", i))
    pair = sorted_unique(upos.astype(np.int64) * codes.size + icode)
    pu = pair // codes.size
    n_rel = np.bincount(pu, minlength=n_users)
    pitem = scorer.item_map.lookup("test items", codes[pair % codes.size])
    known = pitem >= 0
    rel_keys = np.sort(pu[known] * scorer.n_items + pitem[known])

    if exclude_train:
        excl_pos, excl_item = _exclusions(scorer, train, users)
    else:
        excl_pos = excl_item = np.empty(0, dtype=np.int64)
    rows = scorer.user_map.lookup("test users", users)

    kk = min(k, scorer.n_items)
    ideal_len = int(min(k, max(int(n_rel.max()), kk)))
    discount = 1.0 / np.log2(np.arange(2, ideal_len + 2, dtype=np.float64))
    idcg_table = np.cumsum(discount)
    out = {name: np.zeros(n_users) for name in ("precision", "recall", "ndcg", "map",
                                                   "hit_rate")}
    recommended = np.zeros(scorer.n_items, dtype=bool)
    ranks = np.arange(1, kk + 1, dtype=np.float64)
    for s, e, top, _, valid in scorer.iter_top_k(rows, k, excl_pos, excl_item, block_elements):
        keys = np.arange(s, e, dtype=np.int64)[:, None] * scorer.n_items + top
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
    out["coverage"] = float(recommended.sum() / max(scorer.n_items, 1))
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

    Scores are computed for blocks of users (at most 1024 users and 2^24 scores per
    block) as ``U_block @ V.T`` and the top k are found by a compiled single scan:
    time O(n_users x n_items x n_factors), memory bounded by the block. Equal scores
    are ordered by item position in ``item_ids_``.

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
    arr = _ranking_arrays(model, test, k, threshold, exclude_train, train)
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
        arr = _ranking_arrays(model, test, k, threshold, exclude_train, train)
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
    scorer = _Scorer(model)
    ids, inverse = unique_inverse(normalize_ids("users", users))
    if train is not None:
        excl_pos, excl_item = _exclusions(scorer, train, ids)
    else:
        excl_pos = excl_item = np.empty(0, dtype=np.int64)
    rows = scorer.user_map.lookup("users", ids)
    kk = min(k, scorer.n_items)
    top = np.zeros((ids.size, kk), dtype=np.int64)
    score = np.empty((ids.size, kk), dtype=np.float64)
    for s, e, t, sc, _ in scorer.iter_top_k(rows, k, excl_pos, excl_item):
        top[s:e], score[s:e] = t, sc
    known = rows >= 0
    score[known] += scorer.user_bias[rows[known]][:, None]
    score += scorer.mu
    return scorer.item_ids[top[inverse]], score[inverse]


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
