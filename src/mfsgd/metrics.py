"""Accuracy metrics (RMSE, MAE) and top-k ranking metrics for rating models.

The ranking metrics and ``top_k_items`` read a model's public fitted parameters
(``global_mean_``, ``user_bias_``, ``item_bias_``, ``user_factors_``,
``item_factors_``, ``user_ids_``, ``item_ids_``; ``biased`` when present), so any object
with them works, and rank through the package's one top-k path
(``_recommend.top_n_batches``) in float64: a block of users at a time, one matrix
product, the compiled top-k scan; no Python loop runs per user or per rating
(``mfsgd.Popularity`` has these attributes too). ``ranking_scorer`` serves scikit-learn's
searches, which never show a scorer the training fold: it takes the lists from the
estimator's ``recommend_all`` (which excludes its seen items) and scores them with the
same code (``_ListMetrics``).
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _recommend as R
from ._config import METRIC_ALIASES
from ._data import columns_of, unpack
from ._idmap import IdMap, id_list, idmap_from_ids, normalize_ids, sorted_unique, unique_inverse
from ._state import FittedState, seen_csr
from ._validation import as_1d, check_int, check_real_or_none, loose_iterable, refuse_mapping
from .exceptions import NotFittedError

__all__ = [
    "rmse",
    "mae",
    "precision_at_k",
    "recall_at_k",
    "ndcg_at_k",
    "map_at_k",
    "hit_rate_at_k",
    "auc_score",
    "ranking_metrics",
    "ranking_scorer",
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
_FITTED = ("global_mean_", "user_bias_", "item_bias_", "user_factors_", "item_factors_",
           "user_ids_", "item_ids_")


def _attributes(model: Any, names: tuple[str, ...], what: str) -> dict[str, Any]:
    """The attributes ``names`` of ``model``; TypeError naming the missing ones (an
    unfitted estimator's NotFittedError passes through)."""
    out, missing = {}, []
    for name in names:
        try:
            out[name] = getattr(model, name)
        except NotFittedError:
            raise
        except AttributeError:
            missing.append(name)
    if missing:
        raise TypeError(f"{what} must be a fitted mfsgd model (MatrixFactorization or "
                        f"Popularity) or an object with {', '.join(names)}; got "
                        f"{type(model).__name__}, which has no {', '.join(missing)}.")
    return out


def _fitted(model: Any) -> FittedState:
    """A state holding the model's public fitted parameters (views, no copy of the
    factors), for the top-k functions of ``_recommend``. Metrics read no private state:
    they take any object with the public attributes (reading one of an unfitted
    MatrixFactorization raises NotFittedError; an object without them, TypeError)."""
    a = _attributes(model, _FITTED, "model")
    P = np.asarray(a["user_factors_"])
    return FittedState(
        global_mean=float(a["global_mean_"]), user_factors=P,
        item_factors=np.asarray(a["item_factors_"]),
        user_bias=np.asarray(a["user_bias_"], dtype=np.float64),
        item_bias=np.asarray(a["item_bias_"], dtype=np.float64),
        user_map=idmap_from_ids(np.asarray(a["user_ids_"])),
        item_map=idmap_from_ids(np.asarray(a["item_ids_"])),
        rating_range=(-math.inf, math.inf), biased=bool(getattr(model, "biased", True)),
        n_factors=P.shape[1], item_counts=_counts(model, "item_counts_"),
        user_counts=_counts(model, "user_counts_"))


def _counts(model: Any, name: str) -> np.ndarray | None:
    """The model's ``item_counts_`` or ``user_counts_`` as an array, if it has them
    (in their own dtype: a weighted Popularity's are sums of weights)."""
    counts = getattr(model, name, None)
    return None if counts is None else np.asarray(counts)


def _check_k(k: Any) -> int:
    return check_int("k", k)


class UndefinedAUC(ValueError):
    """No evaluated user has a relevant item the model knows and another candidate:
    AUC is undefined (cross_validate records NaN for that fold)."""


def check_threshold(threshold: Any) -> float | None:
    return check_real_or_none(threshold, "threshold must be a finite number (or None: every "
                                         "held-out rating is relevant)")


def _exclusions(st: FittedState, columns: tuple[Any, Any, Any], train: Any,
                users_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The items each of ``users_sorted`` rated in ``train``, as a CSR over their
    positions (model items only). ``users_sorted`` must have passed the model's user
    look-up: the train users are matched against them, so a type mismatch here is
    train's."""
    tu, ti, _ = unpack(train, None, columns=columns, ratings="ignore", what="train",
                       prefix="train ")
    pos = IdMap(users_sorted).lookup("train users", tu)
    item = st.item_map.lookup("train items", ti)
    keep = (pos >= 0) & (item >= 0)
    return seen_csr(pos[keep], item[keep], users_sorted.size)


def _relevance(item_map: IdMap, columns: tuple[Any, Any, Any], test: Any, y: Any,
               threshold: float | None, what: str = "test",
               fix: str = "") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The evaluated users (sorted ids: those with a relevant held-out item), their
    numbers of distinct relevant items, and the sorted keys ``position * n_items +
    item row`` of their relevant items that ``item_map`` knows."""
    need = threshold is not None
    u, i, r = unpack(test, y, columns=columns, ratings="optional" if need else "ignore",
                     what=what, prefix="test ")
    if need:
        if r is None:
            raise ValueError(f"{what} has no ratings, so threshold={threshold} cannot select the "
                             f"relevant items; pass a {columns[2]!r} column or a (users, "
                             f"items, ratings) tuple{fix}, or threshold=None.")
        relevant = _finite_1d("test ratings", r) >= threshold
        u, i = u[relevant], i[relevant]
    users, upos = unique_inverse(normalize_ids("test users", u))
    if users.size == 0:
        raise ValueError(f"no test rating is >= threshold {threshold}, so no user has a "
                         "relevant item to find; lower threshold or check the test ratings.")
    n_items = len(item_map)
    # Distinct relevant (user, item) pairs; unknown items count as relevant but unfindable.
    codes, icode = unique_inverse(normalize_ids("test items", i))
    pair = sorted_unique(upos.astype(np.int64) * codes.size + icode)
    pu = pair // codes.size
    n_rel = np.bincount(pu, minlength=users.size)
    pitem = item_map.lookup("test items", codes[pair % codes.size])
    known = pitem >= 0
    return users, n_rel, np.sort(pu[known] * n_items + pitem[known])


class _ListMetrics:
    """Per-user metrics of top-k lists against the relevant items, filled block by
    block: the one implementation of the definitions below, whether the lists come
    from ``_recommend.top_n_batches`` or from an estimator's ``recommend_all``."""

    def __init__(self, n_rel: np.ndarray, rel_keys: np.ndarray, k: int, n_items: int) -> None:
        self.n_rel, self.rel_keys, self.n_items = n_rel, rel_keys, n_items
        # k may be any int >= 1, even one NumPy cannot hold (2**63, "ndcg@" + "9" * 20).
        # No list or ideal DCG needs more than max(|R_u|, n_items) slots, so index with
        # that; precision still divides by k itself (a k beyond float64 would leave it
        # below 1e-290: 0).
        self.slots = min(k, max(int(n_rel.max()), n_items))
        try:
            self.k_denominator = float(k)
        except OverflowError:
            self.k_denominator = math.inf
        self.discount = 1.0 / np.log2(np.arange(2, self.slots + 2, dtype=np.float64))
        self.idcg_table = np.cumsum(self.discount)
        self.out = {name: np.zeros(n_rel.size) for name in ("precision", "recall", "ndcg",
                                                             "map", "hit_rate")}
        self.recommended = np.zeros(n_items, dtype=bool)

    def add(self, s: int, e: int, top: np.ndarray, valid: np.ndarray) -> None:
        """The lists of users s..e-1: item rows ``top`` (best first), ``valid`` false in
        the slots without an item."""
        n_items, rel_keys = self.n_items, self.rel_keys
        width = top.shape[1]
        keys = np.arange(s, e, dtype=np.int64)[:, None] * n_items + top
        if rel_keys.size:
            at = np.minimum(np.searchsorted(rel_keys, keys), rel_keys.size - 1)
            hit = valid & (rel_keys[at] == keys)
        else:
            hit = np.zeros(keys.shape, dtype=bool)
        nrel = self.n_rel[s:e]
        n_hit = hit.sum(axis=1)
        out = self.out
        out["precision"][s:e] = n_hit / self.k_denominator
        out["recall"][s:e] = n_hit / nrel
        out["hit_rate"][s:e] = n_hit > 0
        ideal = np.minimum(self.slots, nrel)  # min(k, |R_u|)
        out["ndcg"][s:e] = (hit @ self.discount[:width]) / self.idcg_table[ideal - 1]
        prec_at = np.cumsum(hit, axis=1) / np.arange(1, width + 1, dtype=np.float64)
        out["map"][s:e] = (hit * prec_at).sum(axis=1) / ideal
        self.recommended[top[valid]] = True

    def coverage(self) -> float:
        return float(self.recommended.sum() / max(self.n_items, 1))


def _evaluated(model: Any, test: Any, threshold: float | None, exclude_train: bool,
               train: Any) -> tuple[FittedState, np.ndarray, np.ndarray, np.ndarray,
                                    np.ndarray, tuple[np.ndarray, np.ndarray] | None]:
    """The arguments of a ranking evaluation checked and read: the model's state, the
    evaluated users (sorted ids), their numbers of relevant items, the relevant keys
    (:func:`_relevance`), the users' model rows (-1: unknown) and the CSR of their
    training items over their positions (None without ``exclude_train``)."""
    threshold = check_threshold(threshold)
    if not isinstance(exclude_train, (bool, np.bool_)):
        raise TypeError(f"exclude_train must be True or False; got {exclude_train!r}.")
    if exclude_train and train is None:
        raise ValueError("exclude_train=True needs the training ratings: pass train= (the data "
                         "the model was fitted on), or exclude_train=False to rank every item.")
    st = _fitted(model)
    columns = columns_of(model)
    users, n_rel, rel_keys = _relevance(st.item_map, columns, test, None, threshold)
    # The test users against the model first: _exclusions checks the train users
    # against them, and would blame train for test ids of the wrong type.
    rows = st.user_map.lookup("test users", users)
    excl = _exclusions(st, columns, train, users) if exclude_train else None
    return st, users, n_rel, rel_keys, rows, excl


def ranking_arrays(model: Any, test: Any, k: int, threshold: float | None,
                   exclude_train: bool, train: Any,
                   block_elements: int | None = None) -> dict[str, Any]:
    """Per-user metric arrays (the evaluated users sorted by id) and the coverage: the
    work of :func:`ranking_metrics`, also used by ``model_selection.cross_validate``.
    ``block_elements`` overrides the scores per block (tests)."""
    k = _check_k(k)
    st, users, n_rel, rel_keys, rows, excl = _evaluated(model, test, threshold, exclude_train,
                                                        train)
    acc = _ListMetrics(n_rel, rel_keys, k, len(st.item_map))
    for s, e, top, score in R.top_n_batches(st, rows, k, exclude=excl,
                                            exclude_rows=np.arange(users.size), float64=True,
                                            budget=block_elements):
        acc.add(s, e, top, score > -np.inf)
    out: dict[str, Any] = dict(acc.out)
    out["users"] = users
    out["n_relevant"] = n_rel
    out["coverage"] = acc.coverage()
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
      candidates remain). Users the model has not seen get the most popular items,
      as ``recommend`` serves them: the candidates with the most training
      interactions (``item_counts_``; equal counts in ``item_ids_`` order). A model
      whose ``item_counts_`` is None ranks them by the item terms alone (``b'_j``).
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
                    exclude_train: bool = True, *, train: Any = None,
                    per_user: bool = False) -> dict[str, Any]:
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
    per_user : bool, default False
        Return each evaluated user's values instead of their means (for significance
        tests, or results by segment of users).

    Returns
    -------
    dict
        ``precision``, ``recall``, ``ndcg``, ``map``, ``hit_rate`` (means over the
        evaluated users), ``coverage`` (share of the model's items that appear in at
        least one evaluated user's top-k list) and ``n_users`` (users evaluated). With
        ``per_user=True``, the five metrics are float64 arrays with one value per
        evaluated user, ``users`` holds those users' ids (sorted) in the same order,
        and ``n_relevant`` their numbers of relevant items; their means are the values
        ``per_user=False`` returns.

    Raises
    ------
    NotFittedError
        The model is not fitted.
    TypeError, ValueError
        Bad arguments (``TypeError`` for a model without the fitted attributes above);
        ``exclude_train=True`` without ``train``; no relevant item in ``test``.

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
    if not isinstance(per_user, (bool, np.bool_)):
        raise TypeError(f"per_user must be True or False; got {per_user!r}.")
    arr = ranking_arrays(model, test, k, threshold, exclude_train, train)
    names = ("precision", "recall", "ndcg", "map", "hit_rate")
    if per_user:
        out = {name: np.asarray(arr[name], dtype=np.float64) for name in names}
        out.update(users=arr["users"], n_relevant=np.asarray(arr["n_relevant"]),
                   coverage=arr["coverage"], n_users=int(arr["users"].size))
        return out
    res = {name: float(np.mean(arr[name])) for name in names}
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


def auc_score(model: Any, test: Any, threshold: float | None = 4.0,
              exclude_train: bool = True, *, train: Any = None) -> float:
    """ROC AUC of each evaluated user's ranking of all candidate items, averaged over
    the users: LightFM's ``auc_score`` and implicit's AUC, on mfsgd's definitions.

    For user u, with the relevant items R_u and candidates as in
    :func:`ranking_metrics`, AUC_u is the probability that a relevant candidate scores
    above a non-relevant one (ties count one half): 1 is a perfect ranking, 0.5 a
    random one. Relevant items the model has never seen cannot be scored and are left
    out; a user is evaluated when at least one relevant and one other candidate remain.
    Users the model has not seen are ranked by the most popular items, as in
    :func:`ranking_metrics`.

    Parameters
    ----------
    model, test, threshold, exclude_train, train
        As in :func:`ranking_metrics` (``train`` is required while ``exclude_train``).

    Returns
    -------
    float
        The mean of AUC_u over the evaluated users.

    Raises
    ------
    ValueError
        As :func:`ranking_metrics`; also when no user has a scorable relevant item and
        another candidate.

    Notes
    -----
    Unlike the top-k metrics this ranks every candidate: each block of users' scores
    (float64, ``U_block @ V.T``) is sorted, O(n_users x n_items x (n_factors + log
    n_items)) time, memory bounded by the block.

    Examples
    --------
    >>> from mfsgd import MatrixFactorization
    >>> from mfsgd.datasets import make_ratings
    >>> from mfsgd.model_selection import train_test_split
    >>> data = make_ratings(300, 200, 6000, random_state=0, as_frame=False)
    >>> train, test = train_test_split(data, random_state=0)
    >>> model = MatrixFactorization(n_factors=8, n_epochs=5, random_state=0).fit(train)
    >>> 0.5 < auc_score(model, test, train=train) <= 1.0
    True
    """
    st, users, _, rel_keys, rows, excl = _evaluated(model, test, threshold, exclude_train,
                                                    train)
    n_items = len(st.item_map)
    rel_user, rel_item = rel_keys // max(n_items, 1), rel_keys % max(n_items, 1)
    bounds = np.searchsorted(rel_user, np.arange(users.size + 1))
    aucs = []
    for s0, _, sc, _ in R.score_batches(st, rows, exclude=excl,
                                        exclude_rows=np.arange(users.size), float64=True):
        for r in range(sc.shape[0]):
            row = sc[r]
            relevant = np.zeros(n_items, dtype=bool)
            relevant[rel_item[bounds[s0 + r]:bounds[s0 + r + 1]]] = True
            candidate = row > -np.inf  # an excluded (training) item is no candidate
            aucs.append(_user_auc(row[relevant & candidate], row[~relevant & candidate]))
    return _mean_auc(aucs)


def _user_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """The share of (relevant, other) candidate pairs whose relevant item scores higher,
    ties one half; NaN when either side is empty (the user is not evaluated)."""
    if pos.size == 0 or neg.size == 0:
        return math.nan
    neg = np.sort(neg)
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below + 0.5 * ties).sum()) / (pos.size * neg.size)


def _sorted_list_auc(scores: np.ndarray, live: np.ndarray, relevant: np.ndarray
                     ) -> np.ndarray:
    """_user_auc of each row of lists sorted best first (``recommend_all``'s): the
    candidates are the ``live`` entries, those ``relevant`` the positives. Equal scores
    are contiguous in a sorted list, so each positive's strictly lower negatives are those
    after its run of ties, and its tied negatives those inside the run."""
    b, n = scores.shape
    neg = live & ~relevant
    before = np.zeros((b, n + 1), dtype=np.int64)  # negatives at positions < p
    np.cumsum(neg, axis=1, out=before[:, 1:])
    pos = np.arange(n)
    last = np.ones((b, n), dtype=bool)  # p ends its run of equal scores
    last[:, :-1] = scores[:, 1:] != scores[:, :-1]
    first = np.ones((b, n), dtype=bool)
    first[:, 1:] = last[:, :-1]
    end = np.minimum.accumulate(np.where(last, pos, n)[:, ::-1], axis=1)[:, ::-1]
    start = np.maximum.accumulate(np.where(first, pos, 0), axis=1)
    rows = np.arange(b)[:, None]
    total = before[:, -1:]
    lower = total - before[rows, end + 1]
    tied = before[rows, end + 1] - before[rows, start]
    n_pos, n_neg = relevant.sum(1), total[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(relevant, lower + 0.5 * tied, 0.0).sum(1) / (n_pos * n_neg)
    out[(n_pos == 0) | (n_neg == 0)] = np.nan
    return out


def _mean_auc(aucs: list[float]) -> float:
    done = [a for a in aucs if not math.isnan(a)]
    if not done:
        raise UndefinedAUC("no evaluated user has both a relevant item the model knows and "
                         "another candidate, so AUC is undefined.")
    return float(np.mean(done))


# ---------------------------------------------------------------------- scorers
RANKING_METRICS = ("precision", "recall", "ndcg", "map", "hit_rate", "coverage")
# fullmatch: "$" would also match before a final newline; ASCII digits only, and few
# enough of them for int() (whose limit is 4300 digits; k >= 2**63 already ranks everything).
_RANKING_NAME = re.compile(rf"({'|'.join((*RANKING_METRICS, *METRIC_ALIASES))})@([0-9]{{1,100}})")


def parse_ranking_metric(name: Any) -> tuple[str, int] | None:
    """``("ndcg", 10)`` for ``"ndcg@10"`` (k not checked); None for any other value.
    The one reading of these names, for ``ranking_scorer`` and ``cross_validate``."""
    m = _RANKING_NAME.fullmatch(name) if isinstance(name, str) else None
    return None if m is None else (METRIC_ALIASES.get(m.group(1), m.group(1)), int(m.group(2)))


class _RankingScorer:
    """The callable :func:`ranking_scorer` returns (a class, so that it pickles for
    scikit-learn's parallel searches and prints its settings)."""

    def __init__(self, metric: str, kind: str, k: int, threshold: float | None,
                 exclude_train: bool) -> None:
        self.metric, self.kind, self.k = metric, kind, k
        self.threshold, self.exclude_train = threshold, exclude_train

    def __repr__(self) -> str:
        return (f"ranking_scorer({self.metric!r}, threshold={self.threshold!r}, "
                f"exclude_train={self.exclude_train!r})")

    def __call__(self, estimator: Any, X: Any, y: Any = None) -> float:
        a = _attributes(estimator, ("item_ids_", "recommend_all"), "estimator")
        item_map = idmap_from_ids(np.asarray(a["item_ids_"]))
        fix = ", or pass y to the search's fit" if y is None else ""
        users, n_rel, rel_keys = _relevance(item_map, columns_of(estimator), X, y,
                                            self.threshold, what="X", fix=fix)
        # The estimator's own lists: recommend_all excludes the items of each user's
        # training rows (its seen record), which is what the scorer cannot be given.
        if self.kind == "auc":
            return self._auc(a["recommend_all"], item_map, users, rel_keys)
        items, scores = a["recommend_all"](users, n=self.k, exclude_seen=self.exclude_train)
        top = item_map.lookup("recommended items", np.asarray(items).ravel())
        acc = _ListMetrics(n_rel, rel_keys, self.k, len(item_map))
        acc.add(0, users.size, top.astype(np.int64).reshape(np.shape(items)),
                np.isfinite(scores))
        if self.kind == "coverage":
            return acc.coverage()
        return float(np.mean(acc.out[self.kind]))

    def _auc(self, recommend_all: Any, item_map: IdMap, users: np.ndarray,
             rel_keys: np.ndarray) -> float:
        """auc_score's value from the estimator's whole lists (every candidate ranked),
        users in blocks of about 64 MiB of list entries (ids, scores and their
        positions: string ids count their width), the ids looked up once per block."""
        n_items = max(len(item_map), 1)
        per_entry = item_map.ids.dtype.itemsize + 40
        step = max(1, (64 << 20) // (n_items * per_entry))
        aucs = []
        for s0 in range(0, users.size, step):
            items, scores = recommend_all(users[s0:s0 + step], n=n_items,
                                          exclude_seen=self.exclude_train)
            scores = np.asarray(scores, dtype=np.float64)
            b = scores.shape[0]
            live = np.isfinite(scores)  # -inf: past the user's candidates
            cols = np.full(scores.shape, n_items, dtype=np.int64)  # n_items: no item
            cols[live] = item_map.lookup("recommended items", np.asarray(items)[live])
            # each item's position in its user's list (the last column takes the padding),
            # then the block's relevant (user, item) pairs marked at their positions
            where = np.full((b, n_items + 1), -1, dtype=np.int64)
            np.put_along_axis(where, cols, np.broadcast_to(np.arange(cols.shape[1]),
                                                           cols.shape), axis=1)
            lo, hi = np.searchsorted(rel_keys, [s0 * n_items, (s0 + b) * n_items])
            ru, rc = np.divmod(rel_keys[lo:hi], n_items)
            at = where[ru - s0, rc]
            relevant = np.zeros(scores.shape, dtype=bool)
            relevant[ru[at >= 0] - s0, at[at >= 0]] = True  # excluded items: no position
            aucs.extend(_sorted_list_auc(scores, live, relevant).tolist())
        return _mean_auc(aucs)


def ranking_scorer(metric: str = "ndcg@10", threshold: float | None = None,
                   exclude_train: bool = True) -> Callable[..., float]:
    """A ranking metric as a scikit-learn scorer, for ``GridSearchCV`` and friends.

    Parameters
    ----------
    metric : str, default "ndcg@10"
        ``"<name>@<k>"`` with name ``precision``, ``recall``, ``ndcg``, ``map``,
        ``hit_rate`` or ``coverage`` (as in :func:`ranking_metrics`); ``hr`` is accepted
        for ``hit_rate``. ``"auc"`` is :func:`auc_score`, from the estimator's whole
        lists (``recommend_all`` with ``n`` = every item: several times the time of
        :func:`auc_score`, which ranks in float64 where the lists keep the model's
        dtype).
    threshold : float or None, default None
        A held-out row is relevant when its rating is ``>= threshold`` (the ratings
        come from ``y``, or the rating column of a DataFrame); None makes every
        held-out (user, item) pair relevant, for implicit data without ratings.
    exclude_train : bool, default True
        Leave each user's training items out of their list.

    Returns
    -------
    callable
        ``scorer(estimator, X, y=None) -> float``, higher is better: the metric's mean
        over the users with a relevant item in ``X`` (the test fold: an ``(n, 2)``
        array of (user, item) ids or a DataFrame, with the ratings in ``y``).

    Raises
    ------
    TypeError, ValueError
        An unknown metric name, k < 1, a non-numeric threshold. Calling the scorer
        raises ``ValueError`` when no held-out row is relevant.

    Notes
    -----
    A scorer is given the fitted estimator and the test fold, not the training fold,
    so it takes the lists from the estimator itself: ``estimator.recommend_all(users,
    n=k, exclude_seen=exclude_train)``, which leaves out the items of each user's
    training rows (the estimator's seen record). The metric is then computed from
    these lists by the same code and definitions as :func:`ranking_metrics`, so on a
    float64 model the score equals ``ranking_metrics(model, test, k, threshold,
    train=train)[name]``. (``recommend_all`` ranks in the model's dtype and
    :func:`ranking_metrics` in float64: on a float32 model, items whose scores agree
    to float32 precision may swap places.) Any estimator with ``item_ids_`` and
    ``recommend_all`` works, :class:`mfsgd.Popularity` included.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import GridSearchCV, KFold
    >>> from mfsgd import MatrixFactorization
    >>> from mfsgd.datasets import make_ratings
    >>> users, items, ratings = make_ratings(200, 100, 4000, random_state=0, as_frame=False)
    >>> X = np.column_stack([users, items])
    >>> search = GridSearchCV(MatrixFactorization(n_epochs=5, random_state=0),
    ...                       {"n_factors": [4, 8]}, scoring=ranking_scorer("ndcg@10"),
    ...                       cv=KFold(3, shuffle=True, random_state=0))
    >>> search.fit(X, ratings).best_params_["n_factors"] in (4, 8)
    True
    """
    parsed = ("auc", 1) if metric == "auc" else parse_ranking_metric(metric)  # k unused
    if parsed is None:
        raise ValueError(f"metric must be '<name>@<k>' with name in {list(RANKING_METRICS)} "
                         f"(e.g. 'ndcg@10'), or 'auc'; got {metric!r}.")
    kind, k = parsed
    if k < 1:
        raise ValueError(f"metric {metric!r}: k must be >= 1.")
    threshold = check_threshold(threshold)
    if not isinstance(exclude_train, (bool, np.bool_)):
        raise TypeError(f"exclude_train must be True or False; got {exclude_train!r}.")
    return _RankingScorer(metric, kind, k, threshold, bool(exclude_train))


def top_k_items(model: Any, users: Any, k: int = 10, *,
                train: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Each user's k best-scored items.

    Parameters
    ----------
    model : fitted MatrixFactorization
        As in :func:`ranking_metrics`.
    users : list or 1-D array of user ids
        Users to recommend for, one row of the result each (repeats allowed; unknown
        users get the most popular items, as in :func:`ranking_metrics`). A set or a
        generator raises ``ValueError``: it has no order to give the rows.
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
        Unclipped predicted ratings (for an unknown user served by popularity, the
        interaction counts). A user with fewer than k candidates left has
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
    ids, inverse = unique_inverse(id_list("users", users, ordered=True))
    rows = st.user_map.lookup("users", ids)  # before _exclusions: see ranking_arrays
    excl = None if train is None else _exclusions(st, columns_of(model), train, ids)
    top, score = R.recommend_rows(st, rows, k, exclude=excl, exclude_rows=np.arange(ids.size),
                                  float64=True)
    return st.item_map.ids[top[inverse]], score[inverse]


def coverage(recommended_item_ids: Any, catalogue: Any, *, scores: Any = None) -> float:
    """Catalogue coverage: the share of the catalogue recommended to at least one user.

    Parameters
    ----------
    recommended_item_ids : array-like of item ids
        All recommended items, in any shape (e.g. the ``(n_users, k)`` array from
        :func:`top_k_items` or ``recommend_all``, with their ``scores``), as a
        sequence of per-user lists of any lengths, or without ``scores`` as any
        iterable of ids (a set, a generator).
    catalogue : int, array-like or set of item ids, or a fitted model
        The number of items in the catalogue, the catalogue's item ids, or a model
        (its ``item_ids_``). With ids, recommended items outside the catalogue are
        ignored.
    scores : array-like, optional
        The scores of ``recommended_item_ids``, in the same shape: only the slots
        with a finite score count. Pass it with the arrays of :func:`top_k_items`
        and ``recommend_all``, whose ``-inf`` slots (a user with fewer than k
        candidates left) hold placeholder ids, not recommendations.

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
    >>> coverage([[1, 2], [2, 3]], 10, scores=[[0.9, 0.5], [0.7, float("-inf")]])
    0.2
    """
    if scores is not None and loose_iterable(recommended_item_ids) is not None:
        raise ValueError(f"with scores=, recommended_item_ids must be an array of the scores' "
                         f"shape (such as top_k_items and recommend_all return); got "
                         f"{loose_iterable(recommended_item_ids)}.")
    rec = _flatten_ids("recommended_item_ids", recommended_item_ids)
    if scores is not None:
        rec = rec[_finite_slots(recommended_item_ids, scores)]
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
    cat = sorted_unique(normalize_ids("catalogue", _flatten_ids("catalogue", catalogue)))
    if cat.size == 0:
        raise ValueError("catalogue is empty; pass the number of items or their ids.")
    if distinct.size == 0:
        return 0.0
    found = IdMap(cat).lookup("recommended_item_ids", distinct) >= 0
    return float(found.sum() / cat.size)


def _finite_slots(recommended: Any, scores: Any) -> np.ndarray:
    """The flattened slots of ``recommended`` whose score is finite, as a mask."""
    arrays = []
    for name, values in (("recommended_item_ids", recommended), ("scores", scores)):
        if hasattr(values, "to_numpy") and not isinstance(values, np.ndarray):
            values = values.to_numpy()
        try:
            arrays.append(np.asarray(values))
        except ValueError:  # NumPy: "inhomogeneous shape" of lists of different lengths
            raise ValueError(f"with scores=, {name} must be one array (such as top_k_items "
                             "and recommend_all return); got lists of different "
                             "lengths.") from None
    ids, s = arrays
    if s.shape != ids.shape:
        raise ValueError(f"scores must have the shape of recommended_item_ids, {ids.shape}; "
                         f"got {s.shape}.")
    if s.dtype.kind not in "iuf":
        what = "booleans" if s.dtype.kind == "b" else f"dtype {s.dtype}"
        raise TypeError(f"scores must be numeric (int or float); got {what}.")
    return np.isfinite(s).ravel()


def _flatten_ids(name: str, values: Any) -> np.ndarray:
    """Item ids in any shape (an array, a list of per-user lists, a set, a generator) as
    one flat array; only which ids occur counts here, not their order."""
    if hasattr(values, "to_numpy") and not isinstance(values, np.ndarray):
        values = values.to_numpy()
    kind = loose_iterable(values)
    if kind is not None:
        refuse_mapping(name, "item ids", values, kind)
        values = list(values)
    if isinstance(values, (list, tuple)) and any(np.ndim(v) > 0 for v in values):
        parts = [np.ravel(np.asarray(v)) for v in values]
        parts = [p for p in parts if p.size]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    arr = np.asarray(values)
    if arr.ndim == 0:
        raise ValueError(f"{name} must be item ids (a list, a set, an array or a list of "
                         f"lists); got a scalar {arr!r}.")
    return arr.ravel()
