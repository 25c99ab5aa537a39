"""Popularity: the baseline every evaluation should print beside a model.

It recommends the items with the most training interactions. It is held as a
``FittedState`` of the biased model with no factors (mu = 0, b_u = 0, b'_j = the item's
count), so the package's one top-k path (``_recommend.recommend``) ranks it, with the
seen-items record for ``exclude_seen``, and the ranking metrics of ``mfsgd.metrics``
(which read the public fitted parameters) evaluate it like ``MatrixFactorization``.
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

from . import _recommend as R
from ._base import EstimatorBase, _readonly
from ._config import check_columns
from ._data import broadcast_pair, columns_of, split_low, unpack, weights_given
from ._idmap import IdMap
from ._state import FittedState, counts_of, seen_csr
from ._validation import check_bool, check_int, check_ratings, check_real_or_none


def _check_min_rating(value: Any) -> float | None:
    return check_real_or_none(value, "min_rating must be a finite number (or None: keep "
                                     "every row)")


def _check_weights(sample_weight: Any, n: int) -> np.ndarray:
    w = check_ratings(sample_weight, np.dtype(np.float64), name="sample_weight")
    if w.size != n:
        raise ValueError(f"sample_weight must have one value per row of X; got {w.size} for "
                         f"{n} rows.")
    if w.size and w.min() < 0:
        first = int(np.flatnonzero(w < 0)[0])
        raise ValueError(f"sample_weight must be >= 0; got {float(w[first])!r} at position "
                         f"{first}.")
    return w


class Popularity(EstimatorBase):
    """Recommend the most popular items: those with the most training interactions.

    The non-personalised baseline to report beside every model: a model that does not
    beat it on the ranking metrics has learnt nothing about individual users. The score
    of item j is its **interaction count**, the number of (user, item) rows of j in the
    training data (each row counts, repeats included); ratings are ignored, except that
    ``min_rating`` drops the rows rated below it before counting. With
    ``sample_weight`` the count is the sum of the rows' weights.

    Parameters
    ----------
    min_rating : float, optional
        Count only the rows rated ``>= min_rating`` (they must have ratings). The others
        are seen, not counted, as in ``MatrixFactorization``: never recommended back to
        their user, and a user known only from them is in the model (served the list
        without them); an item known only from them is not. Default None: every row
        counts.
    user_col, item_col, rating_col : str or int, default "user", "item", "rating"
        Column labels read from a DataFrame or dict, as in ``MatrixFactorization``:
        three different labels.

    Attributes
    ----------
    item_counts_ : ndarray of shape (n_items,)
        The score of each item of ``item_ids_``: int64 counts, or float64 sums of
        ``sample_weight``.
    user_counts_ : ndarray of shape (n_users,)
        The (kept) training rows of each user of ``user_ids_``, int64 (rows, not
        weights): 0 for a user known only from rows below ``min_rating``.
    user_ids_, item_ids_ : ndarray
        Raw ids, sorted: the items of the (kept) training rows, and their users plus
        those known only from rows below ``min_rating``.

    See Also
    --------
    mfsgd.MatrixFactorization : the personalised model to compare with it.
    mfsgd.metrics.ranking_metrics : evaluates either.

    Notes
    -----
    Equal counts are ordered by item position in ``item_ids_`` (ascending id): the
    lists are deterministic. An unknown user gets the plain popularity list; a known
    user with ``exclude_seen=True`` the same list without the items of their training
    rows.

    Popularity is the biased model without factors whose prediction is ``b'_j``, the
    count: it has the fitted attributes the metrics read (``global_mean_`` = 0,
    ``user_bias_`` = 0, ``item_bias_`` = the counts as float64, ``user_factors_`` and
    ``item_factors_`` with zero columns), so :func:`mfsgd.metrics.ranking_metrics`,
    :func:`~mfsgd.metrics.top_k_items`, :func:`~mfsgd.model_selection.cross_validate`
    and :func:`~mfsgd.metrics.ranking_scorer` evaluate it exactly as they evaluate
    ``MatrixFactorization``, through the same top-k code.

    Examples
    --------
    >>> from mfsgd import Popularity
    >>> users = [1, 1, 2, 2, 3]
    >>> items = ["a", "b", "b", "c", "b"]
    >>> pop = Popularity().fit((users, items))
    >>> pop.item_counts_
    array([1, 3, 1])
    >>> pop.recommend(99, n=2)  # an unknown user; "a" and "c" tie: item order decides
    (array(['b', 'a'], dtype='<U1'), array([3., 1.]))
    >>> pop.recommend(2)[0]     # user 2 has seen "b" and "c"
    array(['a'], dtype='<U1')
    """

    def __init__(self, min_rating: float | None = None, user_col: str = "user",
                 item_col: str = "item", rating_col: str = "rating") -> None:
        self.min_rating = min_rating
        self.user_col = user_col
        self.item_col = item_col
        self.rating_col = rating_col
        self._lock = threading.RLock()
        self._state: FittedState | None = None
        self._item_counts: np.ndarray | None = None

    def __sklearn_tags__(self) -> Any:
        """Tags for scikit-learn >= 1.6 (imported lazily: scikit-learn is optional)."""
        from sklearn.utils import Tags, TargetTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False))

    def fit(self, X: Any, y: Any = None, *, sample_weight: Any = None) -> Popularity:
        """Count each item's training interactions.

        Parameters
        ----------
        X : DataFrame, tuple, dict or array
            The forms ``MatrixFactorization.fit`` accepts: a DataFrame (or dict) with the
            user and item columns (and the rating column, read only for
            ``min_rating``); a tuple ``(users, items)`` or ``(users, items, ratings)``;
            an ``(n, 2)`` array of (user, item) ids, or ``(n, 3)`` with ratings.
        y : array-like, optional
            Ratings when ``X`` holds only ids (read only for ``min_rating``).
        sample_weight : array-like of shape (n,), optional
            A finite weight >= 0 per row, not all 0: item j scores the sum of its rows'
            weights (which must be finite in float64).

        Returns
        -------
        self

        Raises
        ------
        TypeError, ValueError
            Bad data or parameters (e.g. two column names alike); ``min_rating`` without
            ratings; no row left; ``sample_weight`` all 0, or sums of it beyond float64.
        """
        min_rating = _check_min_rating(self.min_rating)
        columns = check_columns(self.user_col, self.item_col, self.rating_col)
        X, sample_weight = weights_given(X, y, sample_weight, columns)
        users, items, ratings = unpack(X, y, columns=columns, ratings="optional")
        weights = None if sample_weight is None else _check_weights(sample_weight, users.size)
        low = (users[:0], items[:0])
        if min_rating is not None:
            if ratings is None:
                raise ValueError(f"min_rating={min_rating} keeps the rows rated >= it, but X "
                                 f"has no ratings; pass a {self.rating_col!r} column, a "
                                 "(users, items, ratings) tuple or y, or min_rating=None.")
            keep, users, items, low = split_low(users, items, ratings, min_rating, "X")
            weights = None if weights is None else weights[keep]
            if users.size == 0:
                raise ValueError(f"no row of X is rated >= min_rating={min_rating}; lower "
                                 "min_rating or check the ratings.")
        if users.size == 0:
            raise ValueError("fit needs at least one (user, item) row; got an empty input.")
        if weights is not None and not weights.any():
            # Every count would be 0 and the "most popular" list mere id order.
            raise ValueError(f"sample_weight is 0 for all {weights.size} rows"
                             f"{' rated >= min_rating' if min_rating is not None else ''}, so "
                             "every item's count is 0; give some rows a positive weight.")
        imap, iidx = IdMap.fit("items", items)
        # The rows below min_rating are seen, not counted, as in MatrixFactorization: never
        # recommended back, and a user known only from them is in the model (served the
        # list without them); those of items no kept row has are dropped.
        low_i = imap.lookup("items", low[1])
        low_u = low[0][low_i >= 0]
        umap, uidx = IdMap.fit("users", np.concatenate([np.asarray(users), np.asarray(low_u)]))
        n_users, n_items = len(umap), len(imap)
        if weights is None:
            counts = counts_of(iidx, n_items)
        else:
            counts = np.bincount(iidx, weights=weights, minlength=n_items)
            # Refused rather than rescaled: item_counts_ and the scores are the sums.
            over = np.flatnonzero(np.isinf(counts))
            if over.size:
                raise ValueError(f"sample_weight sums overflow float64: the weights of "
                                 f"{over.size} item(s) (first: {imap.ids[over[0]].item()!r}) "
                                 f"add up to more than {np.finfo(np.float64).max:.3g}; "
                                 "rescale sample_weight (only the ratios of the weights "
                                 "matter to the ranking).")
        seen_indptr, seen_items = seen_csr(uidx, np.concatenate([iidx, low_i[low_i >= 0]]),
                                           n_users)
        state = FittedState(
            global_mean=0.0, user_factors=np.zeros((n_users, 0)),
            item_factors=np.zeros((n_items, 0)), user_bias=np.zeros(n_users),
            item_bias=counts.astype(np.float64), user_map=umap, item_map=imap,
            rating_range=(-math.inf, math.inf), biased=True, n_factors=0,
            seen_indptr=seen_indptr, seen_items=seen_items, item_counts=counts,
            # the kept rows of each user, as MatrixFactorization counts them (a user known
            # only from low rows has 0), not the seen record's, which holds the low rows
            user_counts=counts_of(uidx[:len(users)], n_users))
        with self._lock:
            self._state, self._item_counts = state, counts
        return self

    @property
    def item_counts_(self) -> np.ndarray:
        """Training interactions (or summed weights) per item, in ``item_ids_`` order."""
        self._require_fitted("item_counts_")
        return _readonly(self._item_counts)

    def predict(self, X: Any) -> np.ndarray:
        """Each (user, item) pair's score: the item's count, 0 for an unknown item.

        Parameters
        ----------
        X : DataFrame, tuple, dict or array
            (user, item) pairs in the forms of :meth:`fit` (ratings are not read), or
            ``(user, items)`` / ``(users, item)``: one id beside a sequence, as in
            :meth:`MatrixFactorization.predict`.

        Returns
        -------
        ndarray of float64
        """
        st = self._require_fitted("predict")
        _, items, _ = unpack(broadcast_pair(X), None, columns=columns_of(self),
                             ratings="ignore")
        cols = st.item_map.lookup("items", items)
        return np.where(cols >= 0, st.item_bias[np.maximum(cols, 0)], 0.0)

    def recommend(self, user: Any, n: int = 10, *, exclude_seen: bool = True,
                  items: Any = None, exclude_items: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """The n most popular items for one user, best first.

        Parameters
        ----------
        user : id
            A user id; an unknown user gets the plain popularity list.
        n : int, default 10
            How many items (fewer when fewer candidates remain).
        exclude_seen : bool, default True
            Leave out the items of the user's training rows.
        items : list, set or array-like of ids, optional
            Candidate items (a whitelist; any iterable of ids, a repeated id counting
            once, as in :meth:`MatrixFactorization.recommend`); unknown ids raise
            ``ValueError``.
        exclude_items : list, set or array-like of ids, optional
            Items never to recommend (any iterable of ids; unknown ids are ignored).

        Returns
        -------
        item_ids : ndarray
        scores : ndarray of float64
            The items' counts.
        """
        ids, scores = self._recommend_many("recommend", [user], n, exclude_seen, items,
                                           exclude_items)
        keep = np.isfinite(scores[0])
        return ids[0][keep], scores[0][keep]

    def recommend_all(self, users: Any = None, n: int = 10, *, exclude_seen: bool = True,
                      items: Any = None,
                      exclude_items: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """The n most popular items for many users at once.

        Parameters
        ----------
        users : list or 1-D array of ids, optional
            One row of the result each (a set or a generator raises ``ValueError``: it
            has no order to give the rows). Default: every user of the model, in
            ``user_ids_`` order.
        n, exclude_seen, items, exclude_items
            As in :meth:`recommend`.

        Returns
        -------
        item_ids, scores : ndarray of shape (len(users), min(n, n_candidates))
            Row k belongs to ``users[k]``; slots a user has no candidate left for have
            score ``-inf``.
        """
        return self._recommend_many("recommend_all", users, n, exclude_seen, items,
                                    exclude_items)

    def _recommend_many(self, what: str, users: Any, n: Any, exclude_seen: Any, items: Any,
                        exclude_items: Any) -> tuple[np.ndarray, np.ndarray]:
        st = self._require_fitted(what)
        return R.recommend(st, users, check_int("n", n),
                           check_bool("exclude_seen", exclude_seen), items, exclude_items)


def _not_an_attribute(name: str) -> property:
    """A fitted attribute of the SGD estimator that a count has no use for."""
    def get(self: Popularity) -> Any:
        raise AttributeError(f"Popularity has no {name}: it counts interactions, it is not "
                             "trained by SGD.")

    return property(get)


for _name in ("history_", "n_epochs_", "best_epoch_", "rating_range_", "n_blocks_"):
    setattr(Popularity, _name, _not_an_attribute(_name))
del _name
