"""Splitting ratings into training and test sets, and cross-validation.

Every splitter accepts the data forms ``fit`` accepts and returns the form it was
given: a pandas DataFrame (rows taken with ``.iloc``, index kept), a tuple or list of
equally long columns (``(users, items, ratings)``, or with more columns such as the
timestamps from :func:`mfsgd.datasets.load_movielens`), a dict of columns, or a 2-D
array of rows. Parts keep the rows' original order. Per-user splits group rows with
one stable argsort over a random permutation (vectorised: no Python loop per user or
rating).
"""

from __future__ import annotations

import copy
import math
import numbers
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np

from ._baseline import Popularity
from ._config import RANKING_LOSSES
from ._data import column, columns_of, is_frame, n_rows, take, unpack
from ._idmap import normalize_ids, unique_inverse
from ._validation import as_1d, check_bool, check_int, check_random_state
from .exceptions import UndefinedMetricWarning

__all__ = [
    "train_test_split",
    "leave_k_out",
    "per_user_split",
    "temporal_split",
    "KFold",
    "PredefinedSplit",
    "cross_validate",
]


# ---------------------------------------------------------------------- helpers
def _user_codes(data: Any, user_col: Any) -> tuple[np.ndarray, int]:
    """Contiguous int code of each row's user, and the number of users."""
    ids, codes = unique_inverse(normalize_ids("users", column(data, user_col, "user_col",
                                                               "user")))
    return codes.astype(np.int64), int(ids.size)


def _split(data: Any, test_mask: np.ndarray) -> tuple[Any, Any]:
    return take(data, np.flatnonzero(~test_mask)), take(data, np.flatnonzero(test_mask))


def _check_fraction(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, Decimal)):
        raise TypeError(f"{name} must be a float > 0 and < 1; got {value!r} "
                        f"({type(value).__name__}).")
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be a float > 0 and < 1; got {value!r}.")
    return float(value)


def _n_test(name: str, value: Any, n: int) -> int:
    """A test size as a fraction (rounded up, as scikit-learn does) or a count."""
    if n < 2:
        raise ValueError(f"splitting needs at least 2 ratings; got {n}.")
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        if not 1 <= value <= n - 1:
            raise ValueError(f"{name} as a count must be from 1 to {n - 1} (the number of "
                             f"ratings - 1); got {value}.")
        return int(value)
    frac = _check_fraction(name, value)
    n_test = math.ceil(frac * n)
    if n_test >= n:
        raise ValueError(f"{name}={value} would leave no training rating out of {n}; use a "
                         "smaller fraction.")
    return n_test


def _round_half_up(frac: Any, counts: np.ndarray) -> np.ndarray:
    """round(frac x count) per count, halves up, in exact arithmetic on the decimal the
    user wrote: 0.7 x 45 is 31.5 and gives 32 (in floating point it is 31.4999...). A
    float (NumPy's float32 too) is read as the shortest decimal of its type."""
    if isinstance(frac, (float, np.floating)):
        f = Fraction(np.format_float_positional(frac, unique=True))
    else:  # Fraction, Decimal: exact already; another Real type through its float
        try:
            f = Fraction(frac)
        except (TypeError, ValueError):
            f = Fraction(np.format_float_positional(float(frac), unique=True))
    uniq, inv = np.unique(counts, return_inverse=True)
    half = Fraction(1, 2)
    out = np.array([math.floor(f * int(c) + half) for c in uniq.tolist()], dtype=np.int64)
    return out[inv.reshape(-1)]


def _random_ranks(codes: np.ndarray, n_groups: int, rng: np.random.Generator):
    """A uniformly random rank 0..count-1 of each row within its group, and group sizes."""
    perm = rng.permutation(codes.size)
    order = perm[np.argsort(codes[perm], kind="stable")]
    return _ranks_of(order, codes, n_groups)


def _ranks_of(order: np.ndarray, codes: np.ndarray, n_groups: int):
    """Rank of each row within its group given ``order``, rows sorted by group first."""
    counts = np.bincount(codes, minlength=n_groups)
    starts = np.cumsum(counts) - counts
    rank = np.empty(codes.size, dtype=np.int64)
    rank[order] = np.arange(codes.size, dtype=np.int64) - starts[codes[order]]
    return rank, counts


# ---------------------------------------------------------------------- splitters
def train_test_split(data: Any, test_size: float | int = 0.2,
                     random_state: Any = None) -> tuple[Any, Any]:
    """Split ratings at random into a training and a test part.

    Parameters
    ----------
    data : DataFrame, tuple, list, dict or 2-D array
        The ratings (see the module docstring for the forms).
    test_size : float or int, default 0.2
        A fraction in (0, 1) of the ratings (rounded up) or a number of ratings.
    random_state : None, int or numpy.random.Generator
        Seed of the random choice.

    Returns
    -------
    train, test
        The same form as ``data``; rows keep their original order.

    Examples
    --------
    >>> from mfsgd.datasets import make_ratings
    >>> data = make_ratings(100, 50, 1000, random_state=0, as_frame=False)
    >>> train, test = train_test_split(data, test_size=0.25, random_state=0)
    >>> len(train[0]), len(test[0])
    (750, 250)
    """
    n = n_rows(data)
    n_test = _n_test("test_size", test_size, n)
    rng = check_random_state(random_state)
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[:n_test]] = True
    return _split(data, mask)


def leave_k_out(data: Any, k: int = 1, random_state: Any = None, *,
                user_col: Any = "user") -> tuple[Any, Any]:
    """Hold out k random ratings of every user who has more than k.

    Users with at most k ratings stay entirely in the training part, so every user
    in the test part is known to a model fitted on the training part.

    Parameters
    ----------
    data : DataFrame, tuple, list, dict or 2-D array
        The ratings; users are the ``user_col`` column of a DataFrame or dict, else
        the first column.
    k : int, default 1
        Ratings held out per user.
    random_state : None, int or numpy.random.Generator
        Seed of the random choice.
    user_col : str, default "user"
        User column of a DataFrame or dict.

    Returns
    -------
    train, test
        The same form as ``data``; rows keep their original order.

    Examples
    --------
    >>> from mfsgd.datasets import make_ratings
    >>> data = make_ratings(100, 50, 1000, random_state=0, as_frame=False)
    >>> train, test = leave_k_out(data, k=1, random_state=0)
    >>> len(set(test[0].tolist())) == len(test[0])
    True
    """
    # k >= n (any user's count) holds nobody out, as k = n does; clamped, a huge k stays an
    # int64 for the comparisons below on every NumPy version
    k = min(check_int("k", k), n_rows(data))
    codes, n_users = _user_codes(data, user_col)
    rank, counts = _random_ranks(codes, n_users, check_random_state(random_state))
    return _split(data, (rank < k) & (counts[codes] > k))


def per_user_split(data: Any, test_fraction: float = 0.2, min_train: int = 1,
                   random_state: Any = None, *, user_col: Any = "user") -> tuple[Any, Any]:
    """Hold out a fraction of every user's ratings, chosen at random.

    A user with n ratings gives ``min(round(test_fraction * n), n - min_train)``
    ratings (never fewer than 0; halves round up) to the test part, so each user keeps
    at least ``min_train`` ratings for training and is split in the same proportion.

    Parameters
    ----------
    data : DataFrame, tuple, list, dict or 2-D array
        The ratings.
    test_fraction : float, default 0.2
        Share of each user's ratings held out, in (0, 1).
    min_train : int, default 1
        Ratings every user keeps in the training part (0 allows users that are only
        in the test part).
    random_state : None, int or numpy.random.Generator
        Seed of the random choice.
    user_col : str, default "user"
        User column of a DataFrame or dict.

    Returns
    -------
    train, test
        The same form as ``data``; rows keep their original order.
    """
    _check_fraction("test_fraction", test_fraction)  # used as written: _round_half_up
    # No user has more than n ratings, so any min_train >= n means min_train = n (every
    # rating in training); clamped, a huge int cannot overflow counts - min_train (int64).
    min_train = min(check_int("min_train", min_train, low=0), n_rows(data))
    codes, n_users = _user_codes(data, user_col)
    rank, counts = _random_ranks(codes, n_users, check_random_state(random_state))
    n_test = np.clip(np.minimum(_round_half_up(test_fraction, counts), counts - min_train),
                     0, None)
    return _split(data, rank < n_test[codes])


def _timestamps(data: Any, timestamps: Any, n: int) -> np.ndarray:
    if isinstance(timestamps, str):
        if not (is_frame(data) or isinstance(data, dict)):
            raise TypeError(f"timestamps={timestamps!r} names a column, which needs a DataFrame "
                            "or dict; with a tuple pass the timestamps array itself.")
        ts = column(data, timestamps, "timestamps", "timestamp")
    else:
        ts = as_1d("timestamps", timestamps)
    if ts.size != n:
        raise ValueError(f"timestamps must have one value per rating; got {ts.size} for {n} "
                         "ratings.")
    kind = ts.dtype.kind
    if kind == "M":
        if np.isnat(ts).any():
            raise ValueError(f"timestamps has {int(np.isnat(ts).sum())} NaT values; drop those "
                             "ratings first.")
    elif kind == "f":
        if not np.isfinite(ts).all():
            raise ValueError(f"timestamps has {int((~np.isfinite(ts)).sum())} non-finite values; "
                             "drop those ratings first.")
    elif kind not in "iu":
        if kind == "O" and ts.size and getattr(ts[0], "tzinfo", None) is not None:
            # A time-zone-aware pandas column arrives as objects; NumPy has no such dtype.
            raise TypeError("timestamps are time-zone-aware datetimes, which are not "
                            "supported; convert them to naive UTC datetime64 first (pandas: "
                            "s.dt.tz_convert(None)) or to numbers such as POSIX seconds.")
        raise TypeError(f"timestamps must be numbers or datetime64; got dtype {ts.dtype}.")
    return ts


def temporal_split(data: Any, timestamps: Any, test_size: float | int = 0.2,
                   per_user: bool = False, *, user_col: Any = "user") -> tuple[Any, Any]:
    """Hold out the latest ratings: train on the past, test on the future.

    Parameters
    ----------
    data : DataFrame, tuple, list, dict or 2-D array
        The ratings.
    timestamps : array-like or str
        One time per rating (numbers or datetime64), or the name of a DataFrame / dict
        column holding them (e.g. ``"timestamp"`` for :func:`~mfsgd.datasets.load_movielens`).
        Time-zone-aware times raise ``TypeError``: convert them to naive UTC first.
    test_size : float or int, default 0.2
        Globally: a fraction in (0, 1) of all ratings (rounded up) or a count. With
        ``per_user``: a fraction in (0, 1) of each user's ratings.
    per_user : bool, default False
        False: the ``test_size`` latest ratings overall form the test part (every
        test rating is at least as late as every training rating). True: each user's
        latest ``round(test_size * n_u)`` ratings, capped at ``n_u - 1`` so every user
        keeps one training rating (halves round up).
    user_col : str, default "user"
        User column of a DataFrame or dict (for ``per_user``).

    Returns
    -------
    train, test
        The same form as ``data``; rows keep their original order. Equal timestamps
        are ordered by row: of two ratings at the same time, the later row counts as
        later.

    Examples
    --------
    >>> import numpy as np
    >>> users = np.array([1, 1, 1, 2, 2])
    >>> items = np.array([10, 11, 12, 10, 13])
    >>> ratings = np.array([4.0, 3.0, 5.0, 2.0, 4.0])
    >>> ts = np.array([30, 10, 20, 5, 40])
    >>> train, test = temporal_split((users, items, ratings), ts, test_size=2)
    >>> test[1]
    array([10, 13])
    """
    n = n_rows(data)
    ts = _timestamps(data, timestamps, n)
    per_user = check_bool("per_user", per_user)
    mask = np.zeros(n, dtype=bool)
    if not per_user:
        n_test = _n_test("test_size", test_size, n)
        mask[np.argsort(ts, kind="stable")[n - n_test:]] = True
        return _split(data, mask)
    _check_fraction("test_size", test_size)  # used as written: _round_half_up
    codes, n_users = _user_codes(data, user_col)
    order = np.lexsort((np.arange(n), ts, codes))  # by user, then time, then row
    rank, counts = _ranks_of(order, codes, n_users)
    from_end = counts[codes] - 1 - rank
    n_test = np.clip(np.minimum(_round_half_up(test_size, counts), counts - 1), 0, None)
    return _split(data, from_end < n_test[codes])


class KFold:
    """K-fold cross-validation over the ratings.

    Parameters
    ----------
    n_splits : int, default 5
        Number of folds, at least 2.
    shuffle : bool, default True
        Assign ratings to folds at random (False: contiguous blocks in data order,
        rarely what you want for ratings sorted by user or time).
    random_state : None, int or numpy.random.Generator
        Seed of the assignment when ``shuffle``; an int gives the same folds on every
        call of :meth:`split`.

    Examples
    --------
    >>> from mfsgd.datasets import make_ratings
    >>> data = make_ratings(100, 50, 1000, random_state=0, as_frame=False)
    >>> [len(test) for _, test in KFold(3, random_state=0).split(data)]
    [334, 333, 333]
    """

    def __init__(self, n_splits: int = 5, shuffle: bool = True, random_state: Any = None) -> None:
        self.n_splits = n_splits
        self.shuffle = shuffle
        self.random_state = random_state

    def __repr__(self) -> str:
        return (f"KFold(n_splits={self.n_splits!r}, shuffle={self.shuffle!r}, "
                f"random_state={self.random_state!r})")

    def get_n_splits(self, data: Any = None) -> int:
        """Number of folds."""
        return check_int("n_splits", self.n_splits, low=2)

    def split(self, data: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train_idx, test_idx)`` row positions (sorted int64 arrays) per fold.

        Every row is in exactly one test fold; fold sizes differ by at most one.
        Take the rows with :func:`numpy.take`, ``df.iloc[idx]`` or ``column[idx]``.
        """
        k = self.get_n_splits()
        shuffle = check_bool("shuffle", self.shuffle)
        n = n_rows(data)
        if k > n:
            raise ValueError(f"n_splits={k} is more than the number of ratings ({n}); use at "
                             f"most {n} folds.")
        order = check_random_state(self.random_state).permutation(n) if shuffle \
            else np.arange(n)
        sizes = np.full(k, n // k, dtype=np.int64)
        sizes[: n % k] += 1
        fold = np.empty(n, dtype=np.int64)
        fold[order] = np.repeat(np.arange(k), sizes)
        for f in range(k):
            test = fold == f
            yield np.flatnonzero(~test), np.flatnonzero(test)


class PredefinedSplit:
    """Fixed (train, test) pairs, such as MovieLens 100K's official folds u1 .. u5.

    Parameters
    ----------
    folds : iterable of (train, test) pairs
        Each pair holds two data sets in any form ``fit`` accepts (or two arrays of
        row positions, or two boolean masks, into the data later given to
        :meth:`split`). A pandas Index holds row labels, not positions, and raises
        ``TypeError``: pass ``data.index.get_indexer(labels)``.

    Examples
    --------
    >>> from mfsgd.datasets import make_ratings
    >>> a = make_ratings(100, 50, 800, random_state=0, as_frame=False)
    >>> b = make_ratings(100, 50, 200, random_state=1, as_frame=False)
    >>> cv = PredefinedSplit([(a, b), (b, a)])
    >>> cv.get_n_splits()
    2
    """

    def __init__(self, folds: Iterable[tuple[Any, Any]]) -> None:
        folds = list(folds)
        for j, pair in enumerate(folds):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                size = f" of length {len(pair)}" if hasattr(pair, "__len__") else ""
                raise ValueError(f"folds must be (train, test) pairs; fold {j} is a "
                                 f"{type(pair).__name__}{size}.")
            for part, x in zip(("train", "test"), pair, strict=True):
                _refuse_pandas_index(x, f"PredefinedSplit fold {j}", part)
        if not folds:
            raise ValueError("folds is empty; pass at least one (train, test) pair.")
        self.folds = folds

    def __repr__(self) -> str:
        return f"PredefinedSplit(<{len(self.folds)} folds>)"

    def get_n_splits(self, data: Any = None) -> int:
        """Number of folds."""
        return len(self.folds)

    def split(self, data: Any = None) -> Iterator[tuple[Any, Any]]:
        """Yield the given (train, test) pairs (``data`` is not used)."""
        yield from (tuple(p) for p in self.folds)


# ---------------------------------------------------------------------- cross-validation
def _check_metrics(metrics: Any) -> list[tuple[str, Any]]:
    from . import metrics as M

    if isinstance(metrics, str) or callable(metrics):
        metrics = (metrics,)
    elif not isinstance(metrics, Iterable):
        raise TypeError(f"metrics must be a metric name, a callable or a sequence of them, "
                        f"e.g. ('rmse', 'mae') or ('ndcg@10',); got {metrics!r}.")
    out: list[tuple[str, Any]] = []
    for m in metrics:
        if callable(m):
            name = getattr(m, "__name__", None) or type(m).__name__
            out.append((name, ("point", m)))
        elif isinstance(m, str) and m in ("rmse", "mae"):
            out.append((m, ("point", getattr(M, m))))
        elif isinstance(m, str) and m == "auc":
            out.append((m, ("auc",)))
        elif M.parse_ranking_metric(m) is not None:
            kind, k = M.parse_ranking_metric(m)
            if k < 1:
                raise ValueError(f"metric {m!r}: k must be >= 1.")
            out.append((m, ("rank", kind, k)))
        else:
            raise ValueError(f"unknown metric {m!r}; use 'rmse', 'mae', '<name>@<k>' with name "
                             f"in {list(M.RANKING_METRICS)} (e.g. 'ndcg@10'), 'auc', or a "
                             "callable f(y_true, y_pred).")
    names = [n for n, _ in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"metrics has duplicate names {sorted(dup)}.")
    if not out:
        raise ValueError("metrics is empty; ask for at least one, e.g. ('rmse', 'mae').")
    return out


def _folds(cv: Any, data: Any, random_state: Any) -> Iterator[tuple[Any, Any]]:
    """Yield (train, test) data pairs from an int, a splitter or an iterable of pairs."""
    if isinstance(cv, numbers.Integral) and not isinstance(cv, (bool, np.bool_)):
        cv = KFold(check_int("cv", cv, low=2), shuffle=True, random_state=random_state)
    if isinstance(cv, (KFold, PredefinedSplit)):
        pairs: Iterable[Any] = cv.split(data)
    elif isinstance(cv, (str, bytes)):  # before the duck test: str has a split method too
        raise TypeError(f"cv must be an int >= 2, a splitter with a split(data) method (KFold, "
                        f"PredefinedSplit, scikit-learn's), or an iterable of (train, test) "
                        f"pairs; got the string {cv!r}.")
    elif hasattr(cv, "split"):
        # A foreign splitter (e.g. scikit-learn's) counts rows with len(X), which a
        # (users, items, ratings) tuple would get wrong: give it one row per rating.
        pairs = cv.split(np.arange(n_rows(data)).reshape(-1, 1))
    elif isinstance(cv, Iterable):
        pairs = cv
    else:
        raise TypeError(f"cv must be an int >= 2, a splitter with a split(data) method (KFold, "
                        f"PredefinedSplit, scikit-learn's), or an iterable of (train, test) "
                        f"pairs; got {type(cv).__name__}.")
    for f, pair in enumerate(pairs):
        try:
            train, test = pair
        except (TypeError, ValueError):
            size = f" of {len(pair)} items" if hasattr(pair, "__len__") else ""
            raise ValueError(f"cv fold {f} must be a (train, test) pair; got "
                             f"{type(pair).__name__}{size}.") from None
        for part, x in (("train", train), ("test", test)):
            _refuse_pandas_index(x, f"cv fold {f}", part)
        train, test = (np.asarray(x) if _is_int_list(x) else x for x in (train, test))
        is_idx = _is_index(train), _is_index(test)
        if all(is_idx):
            if data is None:
                raise ValueError("cv yields row positions but data is None; pass the data.")
            n = n_rows(data)
            yield (take(data, _positions(train, n, f, "train")),
                   take(data, _positions(test, n, f, "test")))
        elif any(is_idx):
            a, b = ("train", "test") if is_idx[0] else ("test", "train")
            raise TypeError(f"cv fold {f}: {a} is an array of row positions but {b} is not; "
                            "give both as row positions (or boolean masks), or both as data.")
        else:
            yield train, test


def _refuse_pandas_index(x: Any, where: str, part: str) -> None:
    """TypeError for a pandas Index given as a fold's part (``df.index[...]``, a
    RangeIndex). It is no data set, and fit's "X must be a DataFrame ... got RangeIndex"
    did not say what to pass instead. Nor is it read as row positions: an Index holds row
    labels, which are positions only while the data keeps a default RangeIndex (not after
    a filter, a sort or a concat), so reading them as positions would train on other rows
    without a word. The message shows both conversions."""
    pd = sys.modules.get("pandas")  # an Index exists only once pandas is imported
    if pd is None or not isinstance(x, pd.Index):
        return
    raise TypeError(
        f"{where}: {part} is a pandas {type(x).__name__}, which holds row labels, not row "
        "positions; give a fold as data, or as row positions (a 1-D integer array or "
        "list) or a boolean mask into the data. For labels, pass "
        "data.index.get_indexer(labels) (their positions) or data.loc[labels] (the rows); "
        "np.asarray(labels) is the same only while the data has its default RangeIndex "
        "0..n-1.")


def _is_int_list(x: Any) -> bool:
    """A non-empty list of Python or NumPy ints: row positions (no data form is a list
    of scalars)."""
    return isinstance(x, list) and bool(x) and all(
        isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)) for v in x)


def _is_index(x: Any) -> bool:
    """Row positions (1-D integers) or a boolean mask, as opposed to a data set."""
    return isinstance(x, np.ndarray) and x.ndim == 1 and x.dtype.kind in "iub"


def _positions(idx: np.ndarray, n: int, fold: int, part: str) -> np.ndarray:
    """The row positions of a fold's part, checked against the n rows of the data; a
    boolean mask (one entry per row) gives its true rows."""
    if idx.dtype.kind == "b":
        if idx.size != n:
            raise ValueError(f"cv fold {fold}: the {part} mask has {idx.size} entries but the "
                             f"data has {n} rows; a boolean mask needs one entry per row.")
        return np.flatnonzero(idx)
    bad = (idx < 0) | (idx >= n)
    if bad.any():
        raise ValueError(f"cv fold {fold}: {part} index {idx[bad][0].item()} is out of range "
                         f"for data of {n} rows (row positions are 0 to {n - 1}).")
    return idx


def _check_model(model: Any, wanted: list[tuple[str, Any]]) -> None:
    """TypeError unless ``model`` is an estimator instance with the methods the metrics
    need; ValueError for rating metrics of a ranking loss."""
    needed = ["get_params", "fit"]
    if any(spec[0] == "point" for _, spec in wanted):
        needed.append("predict")
    if isinstance(model, type):
        raise TypeError(f"model must be an estimator instance; got the class {model.__name__} "
                        f"(pass {model.__name__}(...)).")
    missing = [m for m in needed if not callable(getattr(model, m, None))]
    if missing:
        raise TypeError(f"model must be an mfsgd estimator (MatrixFactorization or Popularity) "
                        f"or an object with the methods {', '.join(needed)}; got "
                        f"{type(model).__name__}, which has no {', '.join(missing)}.")
    loss = getattr(model, "loss", "squared")
    rating = [name for name, spec in wanted if spec[0] == "point" and name in ("rmse", "mae")]
    if rating and isinstance(loss, str) and loss in RANKING_LOSSES:
        raise ValueError(f"metrics {rating}: a ranking loss (loss={loss!r}) predicts scores, not "
                         "ratings; use ranking metrics such as 'ndcg@10', 'hit_rate@10', "
                         "'recall@10'.")
    if rating and isinstance(model, Popularity):
        raise ValueError(f"metrics {rating}: Popularity predicts interaction counts, not "
                         "ratings; use ranking metrics such as 'ndcg@10', 'hit_rate@10', "
                         "'recall@10'.")


def _clone(model: Any) -> Any:
    """A fresh, unfitted copy with the same hyper-parameters (like sklearn.base.clone)."""
    return type(model)(**copy.deepcopy(model.get_params()))


def _no_relevant(y_true: Any, threshold: float | None) -> bool:
    """Whether a test fold's ratings (finite ones: others are refused by the metrics
    themselves) hold none at or above ``threshold``: its ranking metrics are undefined."""
    if y_true is None or threshold is None:
        return False
    y = np.asarray(y_true)
    if y.dtype.kind not in "iuf" or y.size == 0 or not np.isfinite(y).all():
        return False
    return not bool((y >= threshold).any())


def _warn_undefined(fold: int, what: str) -> None:
    """The UndefinedMetricWarning of cross_validate's ``fold``, pointing at its caller."""
    warnings.warn(f"fold {fold} (counted from 0): {what} the other folds are unaffected "
                  "(numpy.nanmean averages them).", UndefinedMetricWarning, stacklevel=3)


#: cross_validate's metrics when none are named: a model of ratings is scored by its
#: errors, a model of interactions (a ranking loss, Popularity) by its top-10 lists.
RATING_METRICS = ("rmse", "mae")
RANKING_METRICS = ("ndcg@10", "hit_rate@10", "recall@10")


def default_metrics(model: Any) -> tuple[str, ...]:
    """The metrics ``cross_validate(model, ...)`` computes when none are named."""
    loss = getattr(model, "loss", "squared")
    ranks = isinstance(model, Popularity) or (isinstance(loss, str) and loss in RANKING_LOSSES)
    return RANKING_METRICS if ranks else RATING_METRICS


def cross_validate(model: Any, data: Any, cv: Any = 5,
                   metrics: Iterable[str | Callable[..., float]] | None = None,
                   return_models: bool = False, *, threshold: float | None = 4.0,
                   random_state: Any = None) -> dict[str, Any]:
    """Fit a fresh copy of ``model`` on each training fold and score it on the test fold.

    Parameters
    ----------
    model : MatrixFactorization or Popularity
        The estimator; each fold fits ``type(model)(**model.get_params())``, so
        ``model`` itself is never changed.
    data : DataFrame, tuple, list, dict or 2-D array
        All ratings, or (user, item) pairs without ratings for the ranking metrics of
        a model that fits on pairs (may be None when ``cv`` yields data pairs, e.g.
        PredefinedSplit).
    cv : int, splitter or iterable, default 5
        An int makes ``KFold(cv, shuffle=True, random_state=random_state)``; or any
        object with ``split(data)`` yielding (train_idx, test_idx) row positions
        (KFold, scikit-learn's splitters) or (train, test) data pairs
        (PredefinedSplit); or an iterable of such pairs. Row positions are 1-D integer
        arrays (or lists of ints) from 0 to n - 1 (ValueError naming the fold
        otherwise) or boolean masks of length n.
    metrics : sequence of str or callable, optional
        Default: ``("rmse", "mae")`` for a model of ratings (the squared loss), and
        ``("ndcg@10", "hit_rate@10", "recall@10")`` for a ranking loss or
        :class:`mfsgd.Popularity` (as ``mfsgd evaluate`` chooses).
        ``"rmse"``, ``"mae"`` (not for a ranking loss or :class:`mfsgd.Popularity`,
        whose predictions are scores or counts, not ratings: ``ValueError``); ranking
        metrics ``"precision@k"``, ``"recall@k"``, ``"ndcg@k"``, ``"map@k"``,
        ``"hit_rate@k"``, ``"coverage@k"`` (computed by
        :func:`mfsgd.metrics.ranking_metrics` with the fold's training items excluded)
        and ``"auc"`` (:func:`mfsgd.metrics.auc_score`, the same exclusions); or
        callables ``f(y_true, y_pred) -> float`` (named by ``__name__``).
    return_models : bool, default False
        Also return the fitted model of each fold under ``"models"``.
    threshold : float or None, default 4.0
        Relevance threshold of the ranking metrics: a held-out rating ``>= threshold``
        is relevant. A test fold without ratings (implicit data: ``(users, items)``
        pairs, an ``(n, 2)`` array, a DataFrame without the rating column) has every
        held-out pair relevant, whatever the threshold. A fold with ratings but none
        ``>= threshold`` has its ranking metrics NaN, with an
        :class:`~mfsgd.exceptions.UndefinedMetricWarning` naming it.
    random_state : None, int or numpy.random.Generator
        Seed of the folds when ``cv`` is an int.

    Returns
    -------
    dict
        ``"test_<metric>"``: ndarray with one value per fold for every metric;
        ``"fit_time"`` and ``"test_time"``: seconds per fold; ``"models"`` when asked.

    Examples
    --------
    >>> from mfsgd import MatrixFactorization
    >>> from mfsgd.datasets import make_ratings
    >>> data = make_ratings(300, 200, 6000, random_state=0, as_frame=False)
    >>> model = MatrixFactorization(n_factors=8, n_epochs=5, random_state=0)
    >>> res = cross_validate(model, data, cv=3, random_state=0)
    >>> sorted(res), res["test_rmse"].shape
    (['fit_time', 'test_mae', 'test_rmse', 'test_time'], (3,))
    """
    from .metrics import UndefinedAUC, auc_score, check_threshold, ranking_arrays

    wanted = _check_metrics(default_metrics(model) if metrics is None else metrics)
    _check_model(model, wanted)
    return_models = check_bool("return_models", return_models)
    cols = columns_of(model)
    scores: dict[str, list[float]] = {name: [] for name, _ in wanted}
    fit_time: list[float] = []
    test_time: list[float] = []
    models: list[Any] = []
    from_data = isinstance(cv, numbers.Integral) or (hasattr(cv, "split")
                                                     and not isinstance(cv, PredefinedSplit))
    if from_data and data is not None and any(spec[0] != "point" for _, spec in wanted):
        _, _, y_all = unpack(data, None, columns=cols, ratings="optional", what="data")
        if _no_relevant(y_all, check_threshold(threshold)):  # no fold could have one
            raise ValueError(f"no rating is >= threshold {threshold}, so no user has a "
                             "relevant item to find in any fold; lower threshold or check "
                             "the ratings.")
    for train, test in _folds(cv, data, random_state):
        est = _clone(model)
        t0 = time.perf_counter()
        est.fit(train)
        fit_time.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        pred = None
        _, _, y_true = unpack(test, None, columns=cols, ratings="optional", what="test fold")
        # Implicit data (no ratings): every held-out pair is relevant, whatever threshold.
        fold_threshold = None if y_true is None else threshold
        ranked: dict[int, dict[str, Any]] = {}
        fold = len(fit_time) - 1
        undefined = _no_relevant(y_true, fold_threshold)
        if undefined and any(spec[0] != "point" for _, spec in wanted):
            names = ", ".join(n for n, spec in wanted if spec[0] != "point")
            _warn_undefined(fold, f"no held-out rating is >= threshold {fold_threshold}, so "
                                  f"its ranking metrics ({names}) are undefined and NaN;")
        for name, spec in wanted:
            if spec[0] != "point" and undefined:
                scores[name].append(math.nan)
                continue
            if spec[0] == "point":
                if y_true is None:
                    raise ValueError("the test fold has no ratings; rmse, mae and "
                                     "callables need them.")
                if pred is None:
                    y_true = np.asarray(y_true, dtype=np.float64)
                    pred = est.predict(test)
                scores[name].append(float(spec[1](y_true, pred)))
            elif spec[0] == "auc":
                try:
                    value = auc_score(est, test, fold_threshold, True, train=train)
                except UndefinedAUC as e:  # this fold only: NaN, as for no relevant rating
                    _warn_undefined(fold, f"{e} It is NaN;")
                    value = math.nan
                scores[name].append(value)
            else:
                _, kind, k = spec
                if k not in ranked:
                    ranked[k] = ranking_arrays(est, test, k, fold_threshold, True, train)
                value = ranked[k][kind]
                scores[name].append(float(value if np.ndim(value) == 0 else np.mean(value)))
        test_time.append(time.perf_counter() - t0)
        if return_models:
            models.append(est)
    if not fit_time:
        raise ValueError("cv produced no folds.")
    out: dict[str, Any] = {f"test_{name}": np.asarray(v) for name, v in scores.items()}
    out["fit_time"] = np.asarray(fit_time)
    out["test_time"] = np.asarray(test_time)
    if return_models:
        out["models"] = models
    return out
