"""The input forms of ratings: one place that knows them.

Ratings arrive as a pandas DataFrame (or any object with named ``columns`` and
``X[col]``), an Arrow table (a pyarrow Table, or any object with the Arrow PyCapsule
stream interface ``__arrow_c_stream__``, such as a polars DataFrame), a tuple or list of
columns ``(users, items[, ratings, ...])``, a list of ``(user, item[, rating])`` tuples
(rows, however few), a dict of columns, an ``(n, 2)`` array of
(user, item) ids with the ratings in ``y``, or an ``(n, 3)`` numeric array. This module
turns them into columns (``unpack``, ``eval_indices``), counts and selects rows in the
form given (``n_rows``, ``take``, ``column``, for the splitters), and checks column
names (``check_columns``, also for a Dask DataFrame). It owns the messages about forms
and columns; the checks of values (1-D, numeric, finite, equal lengths) are
``_validation``'s, those of ids ``_idmap``'s.
The estimator, ``metrics``, ``model_selection`` and ``_dask`` read data through here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from ._idmap import Encoded, _missing_mask, id_array
from ._validation import as_1d, check_ratings, check_same_length, loose_iterable

_FORMS = ("a DataFrame, a (users, items, ratings) tuple of equally long columns, a dict of "
          "columns, or a 2-D array of rows")


def columns_of(model: Any) -> tuple[Any, Any, Any]:
    """(user_col, item_col, rating_col) of a model; the defaults for an object without them."""
    return (getattr(model, "user_col", "user"), getattr(model, "item_col", "item"),
            getattr(model, "rating_col", "rating"))


def check_columns(available: Any, required: Any, what: str) -> None:
    """Raise ValueError naming the first of ``required`` missing from ``available``."""
    cols = list(available)
    for c in required:
        if c not in cols:
            raise ValueError(f"{what} has no column {c!r} (columns: {cols}); name the columns "
                             "with user_col=, item_col=, rating_col=.")


def _named_columns(X: Any) -> bool:
    """Read by column name: a DataFrame of pandas, polars or anything alike."""
    return hasattr(X, "columns") and hasattr(X, "__getitem__") and not isinstance(X, np.ndarray)


def _arrow_table(X: Any) -> Any:
    """X as a pyarrow Table when it speaks Arrow (a pyarrow Table or RecordBatch, a polars
    DataFrame, anything with ``__arrow_c_stream__``) and is not a pandas DataFrame (read
    by column as before), else None."""
    if is_frame(X) or isinstance(X, (np.ndarray, dict, tuple, list)) or \
            not hasattr(X, "__arrow_c_stream__"):
        return None
    try:
        import pyarrow as pa
    except ImportError:
        if _named_columns(X):
            return None  # e.g. polars without pyarrow: read column by column
        raise ImportError(f"{type(X).__name__} is an Arrow stream; reading it needs pyarrow: "
                          "pip install pyarrow (or 'mfsgd[parquet]').") from None
    if isinstance(X, pa.Table):
        return X
    try:
        return pa.table(X)  # consumes the PyCapsule stream; zero-copy for numeric columns
    except (TypeError, ValueError, pa.ArrowException) as e:
        raise TypeError(f"{type(X).__name__} has __arrow_c_stream__ but is not a table of "
                        f"columns ({e}); pass a table with user, item and rating "
                        "columns.") from None


def _arrow_column(col: Any) -> Any:
    """A pyarrow ChunkedArray as NumPy: numbers as an array (no copy for one chunk
    without nulls; nulls become NaN, reported by the checks), strings and dictionary
    columns as :class:`Encoded` codes into their distinct values (never one Python
    string per row)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    t = col.type
    if pa.types.is_dictionary(t) or pa.types.is_string(t) or pa.types.is_large_string(t) or \
            pa.types.is_string_view(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        enc = col if pa.types.is_dictionary(t) else pc.dictionary_encode(col)
        enc = enc.unify_dictionaries()
        if enc.num_chunks == 0:
            return np.empty(0, dtype=np.int64)
        codes = [pc.fill_null(c.indices, -1).to_numpy(zero_copy_only=False)
                 for c in enc.chunks]
        values = enc.chunk(0).dictionary.to_numpy(zero_copy_only=False)
        return Encoded(codes[0] if len(codes) == 1 else np.concatenate(codes), values)
    return col.to_numpy()


DEFAULT_COLUMNS = ("user", "item", "rating")
#: The usual names of the user, item and rating columns (any case), as load_csv
#: recognises them in a header and fit in a DataFrame keeping the default column names.
ROLE_NAMES = {
    "user": ("user", "userid", "user_id", "users", "uid", "customer_id"),
    "item": ("item", "itemid", "item_id", "items", "movieid", "movie_id", "iid", "product_id",
             "bookid", "book_id", "isbn"),
    "rating": ("rating", "ratings", "score", "stars", "value", "book-rating"),
}


#: The rating column's names recognised in a DataFrame (load_csv also takes "score" and
#: "value" in a file's header; a frame's "score" or "value" is as often a price or a
#: count, so there the rating column must be named).
FRAME_RATING_NAMES = ("rating", "ratings", "stars", "book-rating")


def resolve_columns(cols: list[Any], columns: tuple[Any, Any, Any]) -> tuple[Any, Any, Any]:
    """The (user, item, rating) column names to read from a frame's ``cols``. Names the
    model sets (``user_col``...) are read as given. With the default names, a role whose
    default column is absent is found by the usual names, in any case, as ``load_csv``
    recognises them in a header (``userId``, ``movieId``..., rating: FRAME_RATING_NAMES;
    the default name wins when both are there); in a frame of two columns, one not
    recognised is the other role, and two not recognised are (user, item) in that order
    (e.g. GridSearchCV's X=df[["uid", "iid"]]). Names not found are left for
    check_columns to report."""
    ucol, icol, rcol = columns
    two = len(cols) == 2 and ucol not in cols and icol not in cols
    if tuple(columns) != DEFAULT_COLUMNS:
        return (cols[0], cols[1], rcol) if two else columns
    low = [c.lower() if isinstance(c, str) else None for c in cols]

    def find(default: str, names: tuple[str, ...]) -> Any:
        if default in cols:
            return default
        return next((cols[low.index(n)] for n in names if n in low), None)

    u, i = find(ucol, ROLE_NAMES["user"]), find(icol, ROLE_NAMES["item"])
    r = find(rcol, FRAME_RATING_NAMES)
    if two and (u is None or i is None):
        if u is None and i is None:
            u, i = cols
        elif u is None:
            u = cols[1 - cols.index(i)]
        else:
            i = cols[1 - cols.index(u)]
    return (ucol if u is None else u, icol if i is None else i, rcol if r is None else r)


def _split_arrow(table: Any, y: Any, columns: tuple[Any, Any, Any],
                 what: str) -> tuple[Any, Any, Any]:
    cols = list(table.column_names)
    ucol, icol, rcol = resolve_columns(cols, columns)
    check_columns(cols, (ucol, icol), what)
    ratings = y if y is not None else (_arrow_column(table.column(rcol)) if rcol in cols
                                       else None)
    return _arrow_column(table.column(ucol)), _arrow_column(table.column(icol)), ratings


def _categorical(col: Any) -> Any:
    """A pandas Categorical column as :class:`Encoded` (its codes and categories), and a
    pandas column of strings or objects as the codes and distinct values of its
    ``factorize`` (a hash table: the ids are then checked, mapped and looked up once per
    distinct value, not sorted or searched per row, 10-20x faster on string ids); else
    the column unchanged."""
    dtype = getattr(col, "dtype", None)
    if getattr(dtype, "name", None) == "category" and hasattr(col, "cat"):
        return Encoded(np.asarray(col.cat.codes), np.asarray(col.cat.categories))
    if getattr(dtype, "kind", None) in ("O", "U") and hasattr(col, "factorize") and \
            type(col).__module__.partition(".")[0] == "pandas" and _one_id_type(col):
        codes, uniques = col.factorize()  # missing ids: code -1, refused as for a Categorical
        return Encoded(np.asarray(codes), np.asarray(uniques, dtype=object))
    return col


def _one_id_type(col: Any) -> bool:
    """A pandas column whose values are all strings, or all integers (missing ones
    aside), which factorize may map: it takes 1, True and Decimal(1) for one value, and
    fails on unhashable ones, where the row-by-row reading refuses the mix by name."""
    import pandas as pd

    return pd.api.types.infer_dtype(col, skipna=True) in ("string", "integer", "empty")


def _is_sparse(X: Any) -> bool:
    """A 2-D scipy.sparse matrix or array (duck-typed: scipy is never imported)."""
    return hasattr(X, "tocoo") and hasattr(X, "nnz") and getattr(X, "ndim", 2) == 2


def _is_scalar_row(x: Any) -> bool:
    """(u, i) or (u, i, r) of scalars is one row, not three columns."""
    return all(np.ndim(v) == 0 for v in x)


def _is_row(r: Any, width: int) -> bool:
    """A tuple, list or 1-D array of ``width`` scalars."""
    return (isinstance(r, (tuple, list)) or (isinstance(r, np.ndarray) and r.ndim == 1)) \
        and len(r) == width and _is_scalar_row(r)


def _row_list(X: Any) -> bool:
    """A non-empty list of rows of 2 or 3 scalars (tuples, lists or 1-D arrays), all one
    length."""
    if not isinstance(X, list) or not X:
        return False
    width = len(X[0]) if hasattr(X[0], "__len__") else 0
    return width in (2, 3) and all(_is_row(r, width) for r in X)


def _is_records(X: Any) -> bool:
    """A list of (user, item) or (user, item, rating) rows of scalars, all one length:
    tuples however few (two of them would otherwise read as two columns), lists or 1-D
    arrays when there are not 2 or 3 of them (see _ambiguous_lists)."""
    return _row_list(X) and (all(isinstance(r, tuple) for r in X) or len(X) not in (2, 3))


def _ambiguous_lists(X: Any) -> bool:
    """2 or 3 rows of 2 or 3 scalars, not all tuples: ``[[1, 10], [2, 20]]`` is two
    (user, item) rows as NumPy and scikit-learn read it (and as a longer such list is
    read), or the columns (users, items). Not guessed."""
    return _row_list(X) and len(X) in (2, 3) and not all(isinstance(r, tuple) for r in X)


def refuse_ambiguous(X: Any, what: str, with_ratings: bool = True) -> None:
    """ValueError for the forms that could be rows or columns (a 1-tuple of a sequence,
    short lists of rows: _ambiguous_lists), naming both readings."""
    if isinstance(X, tuple) and len(X) == 1 and np.ndim(X[0]) > 0:
        # (users,) with the items forgotten: NumPy would read it as one row (review 19)
        raise ValueError(
            f"{what} is a tuple of one sequence; pass the columns as (users, items"
            f"{', ratings' if with_ratings else ''}), or rows as a list of tuples.")
    if _ambiguous_lists(X):
        n, w = len(X), len(X[0])
        fields = ("user, item, rating" if w == 3 else "user, item")
        cols = ("users, items, ratings" if n == 3 else "users, items")
        raise ValueError(
            f"{what} is ambiguous: a list of {n} lists of {w} values is {n} ({fields}) rows "
            f"or the {n} columns ({cols}), and a longer list of rows would be read as rows. "
            f"Pass rows as tuples, [({fields}), ...], or as an array, np.array({what}); "
            f"columns as a tuple, ({cols}).")


def _split(X: Any, y: Any, columns: tuple[Any, Any, Any], ratings: str,
           what: str) -> tuple[Any, Any, Any]:
    """(users, items, ratings-or-None) of any accepted form, as given (not yet arrays).
    ``ratings`` (unpack's) only words the message for an unsupported form."""
    with_ratings = ratings != "ignore"
    ucol, icol, rcol = columns
    table = _arrow_table(X)
    if table is not None:
        return _split_arrow(table, y, columns, what)
    if _named_columns(X):
        cols = list(X.columns)
        ucol, icol, rcol = resolve_columns(cols, columns)
        check_columns(cols, (ucol, icol), what)
        ratings = y if y is not None else (X[rcol] if rcol in cols else None)
        return _categorical(X[ucol]), _categorical(X[icol]), ratings
    if _is_sparse(X):
        # A scipy.sparse user x item matrix: the row and column indices are the ids, the
        # stored values the ratings. Tested before the dict: a DOK matrix is a dict of
        # (row, column) keys.
        if y is not None:
            raise ValueError(f"{what} is a sparse matrix, whose values are the ratings; "
                             "y must be None.")
        # Read the matrix's values, as X.toarray() and scipy see them, not its stored
        # entries: duplicates are summed (min_rating filtered them one by one, squared
        # trained them as separate ratings) and explicit zeros, such as
        # X.data[X.data < 4] = 0 leaves, are no interactions. On a copy: X is the user's.
        coo = X.tocoo(copy=True)
        coo.sum_duplicates()
        coo.eliminate_zeros()
        return coo.row, coo.col, coo.data
    if isinstance(X, Mapping):  # a dict of columns, or a UserDict, a mappingproxy...
        if ucol not in X or icol not in X:
            raise ValueError(f"{what} as a dict needs keys {ucol!r} and {icol!r}; got {list(X)}.")
        return X[ucol], X[icol], y if y is not None else X.get(rcol)
    if _is_records(X):
        # [(u, i), ...] or [(u, i, r), ...]: rows, transposed with their Python types
        # kept (np.asarray would turn ids and ratings into one common type).
        cols = list(zip(*X, strict=True))
        if len(cols) == 3 and y is not None:
            raise ValueError(f"ratings given twice: as the third field of {what}'s rows and "
                             "as y.")
        return cols[0], cols[1], cols[2] if len(cols) == 3 else y
    refuse_ambiguous(X, what, with_ratings)
    # A set or a generator is 0-d to NumPy but no scalar: read as a column, for as_1d
    # to refuse it saying what to pass.
    if isinstance(X, (tuple, list)) and len(X) in (2, 3) and (
            not _is_scalar_row(X) or any(loose_iterable(v) is not None for v in X)):
        if len(X) == 3 and y is not None:
            raise ValueError(f"ratings given twice: as the third element of {what} and as y.")
        return X[0], X[1], X[2] if len(X) == 3 else y
    if X is None:
        raise TypeError(f"{what} is None; pass a DataFrame, a (users, items, ratings) tuple or an "
                        "(n, 2) array of ids with y.")
    # a masked array keeps its mask, for as_1d to refuse masked entries by row
    arr = X if np.ma.isMaskedArray(X) else np.asarray(X)
    if arr.ndim == 2 and arr.shape[1] == 2:
        return arr[:, 0], arr[:, 1], y
    if arr.ndim == 2 and arr.shape[1] == 3 and y is None:
        return arr[:, 0], arr[:, 1], arr[:, 2]
    got = f"{type(X).__name__}{' of shape ' + str(arr.shape) if hasattr(arr, 'shape') else ''}"
    if isinstance(X, (tuple, list)) and len(X) in (2, 3) and _is_scalar_row(X):
        got += (" (one row of scalars: pass it as a list of rows, [(user, item"
                f"{', rating' if len(X) == 3 else ''})], or as columns, ([user], [item]"
                f"{', [rating]' if len(X) == 3 else ''}); predict_one(user, item) scores "
                "one pair)")
    loose = loose_iterable(X)
    if loose is not None:  # NumPy reads it as one object ("generator of shape ()")
        rows = "(user, item, rating)" if ratings == "require" and y is None else "(user, item)"
        got = (f"{loose}, which is not a sequence of rows. Pass a list of {rows} rows, "
               f"e.g. list({what})")
    raise ValueError(
        f"{what} must be a DataFrame with columns {ucol!r}, {icol!r}"
        f"{', ' + repr(rcol) if with_ratings else ''}, a (users, items"
        f"{', ratings' if with_ratings else ''}) tuple, or an (n, 2) array of (user, item) ids"
        f"{' with y' if with_ratings else ''}; got {got}."
    )


def broadcast_pair(X: Any) -> Any:
    """``(user, items)`` or ``(users, item)``, one id and a 1-D sequence of ids, as the
    pair of equally long columns it stands for (LightFM's ``predict(user_id,
    item_ids)``); any other X unchanged (``(user, item)`` of two ids stays one pair)."""
    if not (isinstance(X, tuple) and len(X) == 2):
        return X
    one = [isinstance(v, (str, bytes)) or (np.ndim(v) == 0 and loose_iterable(v) is None
                                           and not isinstance(v, (set, frozenset)))
           for v in X]
    if one[0] == one[1]:
        return X
    k = 0 if one[0] else 1
    other = X[1 - k]
    n = len(other) if hasattr(other, "__len__") else None
    if n is None:
        return X  # a generator: refused downstream, saying what to pass
    col = [X[k]] * n  # a list: checked as any list of ids is (a NUL, mixed types...)
    return (col, other) if k == 0 else (other, col)


def unpack(X: Any, y: Any = None, *, columns: tuple[Any, Any, Any],
           ratings: Literal["require", "optional", "ignore"],
           what: str = "X", prefix: str = "",
           encoded: bool = False) -> tuple[np.ndarray, np.ndarray, Any]:
    """Users, items and ratings of any accepted form, as 1-D arrays of equal length.

    Parameters
    ----------
    X, y
        The data and, for an ``(n, 2)`` array or a two-column form, the ratings.
    columns : (user_col, item_col, rating_col)
        Names read from a DataFrame or dict.
    ratings : {"require", "optional", "ignore"}
        "require": absent ratings raise ``ValueError``; "optional": they come back as
        None (the caller words the error); "ignore": ratings are not read (None).
    what : str
        The argument's name in messages.
    prefix : str
        Prefix of the column names in messages (``"test "`` gives "test users ...").
    encoded : bool, default False
        Return dictionary-encoded ids (an Arrow dictionary or string column, a pandas
        Categorical) as :class:`~mfsgd._idmap.Encoded` for ``IdMap.fit``; otherwise
        they are decoded to one id per row.
    """
    _refuse_dask(what, X, what, f"{what}.compute()")
    _refuse_dask("y", y, what, "y.compute()")
    u, i, r = _split(X, y, columns, ratings, what)
    for name, v in (("users", u), ("items", i), ("ratings", r)):  # e.g. (ddf.user, ddf.item)
        _refuse_dask(f"the {name} column of {what}", v, what, "each column's .compute()")
    u, i = (_ids(f"{prefix}{name}", v, encoded) for name, v in (("users", u), ("items", i)))
    if ratings == "ignore" or r is None:
        if ratings == "require":
            raise ValueError(f"{what} has no ratings: pass a {columns[2]!r} column, a "
                             "(users, items, ratings) tuple, or y.")
        check_same_length(users=u, items=i)
        return u, i, None
    r = as_1d(f"{prefix}ratings", r)
    check_same_length(users=u, items=i, ratings=r)
    return u, i, r


def _refuse_dask(name: str, v: Any, what: str, fix: str) -> None:
    """A Dask collection where in-memory data is read (``name`` in the message, ``fix``
    what to call instead): np.asarray would compute it here, pulling the whole collection
    into this process, where fit(X, client=...) trains on the cluster and refuses it
    without a client."""
    if not hasattr(v, "__dask_graph__"):
        return
    if what == "eval_set":
        raise TypeError(f"{name} is a Dask collection; eval_set must be in-memory data, also "
                        f"when X is one (pass {fix}).")
    raise TypeError(
        f"{name} is a Dask collection; only fit(X, client=...) takes one (it trains on the "
        f"cluster). Here pass in-memory data, e.g. {fix}, if it fits in this process's "
        "memory.")


def _ids(name: str, v: Any, encoded: bool) -> Any:
    if isinstance(v, Encoded):
        return v if encoded else v.decode(name)
    return id_array(name, v)


def _eval_xy(eval_set: Any) -> tuple[Any, Any]:
    """``eval_set`` as (X, y): a pair ``(X_val, y_val)`` with X_val an (n, 2) array, or
    any form of ``unpack`` with no separate y."""
    if isinstance(eval_set, (tuple, list)) and len(eval_set) == 2 and \
            np.ndim(eval_set[0]) == 2:
        return eval_set[0], eval_set[1]
    return eval_set, None


def eval_indices(eval_set: Any, *, columns: tuple[Any, Any, Any], user_map: Any,
                 item_map: Any, dtype: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The validation ratings of ``fit(eval_set=...)`` as (user rows, item rows,
    ratings in ``dtype``); ids the maps do not know get row -1. Besides the forms of
    ``unpack``, ``eval_set`` may be a pair ``(X_val, y_val)`` with X_val an (n, 2) array."""
    X, y = _eval_xy(eval_set)
    u, i, r = unpack(X, y, columns=columns, ratings="require", what="eval_set")
    r = check_ratings(r, dtype, name="eval_set ratings")
    if r.size == 0:  # every epoch's val_rmse would be NaN
        raise ValueError("eval_set has no ratings; pass validation ratings or leave "
                         "eval_set out.")
    return user_map.lookup("eval_set users", u), item_map.lookup("eval_set items", i), r


def eval_pairs(eval_set: Any, *, columns: tuple[Any, Any, Any], user_map: Any, item_map: Any,
               min_rating: float | None) -> tuple[np.ndarray, np.ndarray]:
    """The validation interactions of a ranking fit's ``eval_set`` as (user rows, item
    rows), -1 for ids the maps do not know; ratings, when present, only select rows
    (those >= ``min_rating`` when it is set)."""
    X, y = _eval_xy(eval_set)
    u, i, r = unpack(X, y, columns=columns, ratings="optional", what="eval_set")
    if min_rating is not None:
        keep = rated_at_least(r, min_rating, "eval_set")
        u, i = u[keep], i[keep]
    if len(u) == 0:  # every epoch's metric would be NaN
        raise ValueError(f"eval_set has no interactions"
                         f"{' at or above min_rating' if min_rating is not None else ''}; "
                         "pass validation pairs or leave eval_set out.")
    return user_map.lookup("eval_set users", u), item_map.lookup("eval_set items", i)


def split_low(u: Any, i: Any, r: Any, min_rating: float, what: str
              ) -> tuple[np.ndarray, Any, Any, tuple]:
    """The mask of the rows rated >= ``min_rating``, their (users, items), and the
    (users, items) of the others, the rows to record as seen: the user's training items
    all the same, never recommended back. A row left out that lacks an id was ignored,
    not refused: it is not among them."""
    kept = rated_at_least(r, min_rating, what)
    low = np.flatnonzero(~kept)
    low = low[_has_id(u[low]) & _has_id(i[low])]
    return kept, u[kept], i[kept], (u[low], i[low])


def rated_at_least(r: Any, min_rating: float, what: str) -> np.ndarray:
    """The mask of the ratings ``r`` that are >= ``min_rating``."""
    if r is None:
        raise ValueError(f"min_rating={min_rating} needs ratings, but {what} has none: pass "
                         "a rating column or set min_rating=None.")
    return check_ratings(r, np.dtype(np.float64), name=f"{what} ratings") >= min_rating


# ---------------------------------------------------------------------- rows, in the form given
def is_frame(data: Any) -> bool:
    """A pandas-like DataFrame: named columns and rows selected with ``.iloc``."""
    return hasattr(data, "iloc") and hasattr(data, "columns")


def n_rows(data: Any, what: str = "data") -> int:
    """Number of rows of ``data``, checking that it is one of the forms ``take`` serves:
    a DataFrame, a tuple or list of two or more equally long columns (extra columns such
    as timestamps are fine), a list of row tuples, a dict of columns, or a 2-D array of
    rows."""
    if is_frame(data) or _is_records(data):
        return len(data)
    refuse_ambiguous(data, what)  # read as rows by fit: not split as columns
    if isinstance(data, dict) and not _is_sparse(data):  # a DOK matrix is a dict
        cols = list(data.items())
    elif isinstance(data, (tuple, list)):
        if len(data) < 2 or all(np.ndim(c) == 0 for c in data):
            raise ValueError(f"{what} must be {_FORMS}; got a {type(data).__name__} of "
                             f"{len(data)} scalars.")
        cols = [(f"column {j}", c) for j, c in enumerate(data)]
    elif isinstance(data, np.ndarray) and data.ndim == 2:
        return int(data.shape[0])
    else:
        shape = f" of shape {np.shape(data)}" if isinstance(data, np.ndarray) else ""
        raise TypeError(f"{what} must be {_FORMS}; got {type(data).__name__}{shape}.")
    if not cols:
        raise ValueError(f"{what} has no columns.")
    lengths = {name: len(as_1d(f"{what} {name}", c)) for name, c in cols}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise ValueError(f"the columns of {what} must have the same length; {desc}.")
    return next(iter(lengths.values()))


def take(data: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of ``data`` (a form ``n_rows`` accepts), in the same form."""
    if is_frame(data):
        return data.iloc[idx]
    if isinstance(data, dict):
        return {k: as_1d(str(k), v)[idx] for k, v in data.items()}
    if _is_records(data):  # rows as tuples: two or three of them stay rows
        return [tuple(data[j]) for j in np.asarray(idx).tolist()]
    if isinstance(data, (tuple, list)):
        parts = [as_1d("column", c)[idx] for c in data]
        return tuple(parts) if isinstance(data, tuple) else parts
    return data[idx]


def column(data: Any, col: Any, what: str, role: str) -> np.ndarray:
    """Column ``col`` of a DataFrame or dict (``what`` names the argument that chose it,
    ``role`` what it holds), or the first column of a tuple, list or 2-D array."""
    if is_frame(data) or isinstance(data, dict):
        keys = list(data.columns) if is_frame(data) else list(data)
        if col not in keys:
            raise ValueError(f"data has no {role} column {col!r} (columns: {keys}); name it "
                             f"with {what}=.")
        return as_1d(role, data[col])
    if _is_records(data):
        return as_1d(role, [r[0] for r in data])
    if isinstance(data, (tuple, list)):
        return as_1d(role, data[0])
    return as_1d(role, (data if np.ma.isMaskedArray(data) else np.asarray(data))[:, 0])


def weights_given(X: Any, y: Any, sample_weight: Any, columns: tuple[Any, Any, Any]
                  ) -> tuple[Any, Any]:
    """(X, sample_weight) as the readers take them: for a sparse ``X`` with weights, its
    (rows, columns, values) entries with one weight each (:func:`_sparse_entries`; y must
    then be None), the weights of any form :func:`_weight_form` takes. No weights: as
    given."""
    if sample_weight is None:
        return X, None
    X, sample_weight = _weight_form(X, sample_weight, columns)
    if not _is_sparse(X):
        return X, sample_weight
    if y is not None:
        raise ValueError("X is a sparse matrix, whose values are the ratings; y must be None.")
    return _sparse_entries(X, sample_weight)


def _weight_form(X: Any, sample_weight: Any, columns: tuple[Any, Any, Any]
                 ) -> tuple[Any, Any]:
    """(X, sample_weight) with the weights as an array-like, from the forms peers take
    besides one weight per row: the name of a column of a DataFrame or Arrow table ``X``
    (``"plays"``), and, for a sparse ``X``, a sparse matrix of its shape (LightFM's
    ``sample_weight``). A weights matrix stored at exactly X's coordinates, entry for
    entry, weighs each entry; otherwise it gives each cell a weight (its entries summed),
    split evenly over X's entries of that cell so that the cell, summed as X's duplicates
    are, gets that weight; X comes back as COO when it had no entry order (LIL, DOK)."""
    if isinstance(sample_weight, str):
        table = _arrow_table(X)  # as _split reads X: Arrow first (a pyarrow Table has
        # a .columns attribute too), then columns by name
        cols = list(table.column_names) if table is not None else \
            list(X.columns) if _named_columns(X) else None
        if cols is None:
            raise TypeError(f"sample_weight={sample_weight!r} names a column, but X has no "
                            f"columns ({type(X).__name__}); pass one weight per row.")
        if sample_weight not in cols:
            raise ValueError(f"sample_weight={sample_weight!r}: X has no such column "
                             f"(columns: {cols}).")
        if sample_weight in resolve_columns(cols, columns)[:2]:
            raise ValueError(f"sample_weight={sample_weight!r} is X's user or item column; "
                             "name a column of weights.")
        if table is not None:
            return X, _arrow_column(table.column(sample_weight))
        return X, X[sample_weight]
    if not _is_sparse(sample_weight):
        return X, sample_weight
    if not _is_sparse(X):
        raise TypeError("sample_weight is a sparse matrix, which gives weights per cell of a "
                        "sparse X; with this X pass one weight per row.")
    if tuple(sample_weight.shape) != tuple(X.shape):
        raise ValueError(f"sample_weight is a {sample_weight.shape[0]} x "
                         f"{sample_weight.shape[1]} matrix but X is {X.shape[0]} x "
                         f"{X.shape[1]}; give a weight in each stored cell of X.")
    W = sample_weight.tocoo(copy=True)
    w_data = check_ratings(np.asarray(W.data), np.dtype(np.float64), name="sample_weight",
                           keep_nonzero=True)  # each entry, before any sum
    if w_data.size and float(w_data.min()) < 0:
        raise ValueError(f"sample_weight must be >= 0; got {float(w_data.min())} (an entry "
                         f"of the weights matrix).")
    data = getattr(X, "data", None)
    if not isinstance(data, np.ndarray) or data.shape != (X.nnz,):
        X = X.tocoo()  # LIL, DOK...: no entry order of their own; COO's is the one used
    coo = X.tocoo(copy=False)  # CSR, CSC and COO keep the order of .data
    rows, cols = np.asarray(coo.row, np.int64), np.asarray(coo.col, np.int64)
    if W.nnz == rows.size and np.array_equal(np.asarray(W.row, np.int64), rows) and \
            np.array_equal(np.asarray(W.col, np.int64), cols):
        return X, w_data  # entry for entry (LightFM's form: built on X's coordinates)
    n_cols = np.int64(X.shape[1])
    w_keys = np.asarray(W.row, np.int64) * n_cols + np.asarray(W.col, np.int64)
    cells, at = np.unique(w_keys, return_inverse=True)
    cell_w = np.bincount(at.reshape(-1), weights=w_data, minlength=cells.size)
    x_keys = rows * n_cols + cols
    pos = np.minimum(np.searchsorted(cells, x_keys), max(cells.size - 1, 0))
    found = (cells[pos] == x_keys) if cells.size else np.zeros(x_keys.size, bool)
    stored = np.asarray(coo.data) != 0  # entries of value 0 are dropped as X is read
    missing = stored & ~found
    if missing.any():
        k = int(np.argmax(missing))
        raise ValueError(f"sample_weight has no entry for {int(np.count_nonzero(missing))} "
                         f"stored cells of X (the first: row {int(rows[k])}, column "
                         f"{int(cols[k])}); give a weight in each stored cell of X.")
    # each cell's weight split over X's entries of it, which X's reading sums
    _, x_at, x_n = np.unique(x_keys, return_inverse=True, return_counts=True)
    w = np.where(found, cell_w[pos], 0.0) / x_n[x_at.reshape(-1)]
    return X, w


def _sparse_entries(X: Any, sample_weight: Any) -> tuple[tuple, np.ndarray]:
    """A sparse X as (rows, columns, values), read as unpack reads it (duplicates summed,
    entries of value 0 dropped, row-major order), with ``sample_weight`` -- one weight
    per stored entry, in the order of ``X.data`` -- carried along: a duplicate's weights
    are summed as its values are, and a dropped entry's weight goes with it. The
    weights followed the matrix's rows only when its entries were sorted and distinct,
    so ``sample_weight=X.data`` silently weighted other entries of an unsorted CSR."""
    data = getattr(X, "data", None)
    if not isinstance(data, np.ndarray) or data.shape != (X.nnz,):
        raise TypeError(f"sample_weight with a sparse X gives one weight per stored entry, "
                        f"in the order of X.data; a {type(X).__name__} has no such order: "
                        "pass X.tocsr() and weights in the order of its .data.")
    w = as_1d("sample_weight", sample_weight, "1-D (one weight per stored entry of X)")
    if w.size != X.nnz:
        raise ValueError(f"sample_weight has {w.size} values but X stores {X.nnz} entries; "
                         "pass one weight per stored entry, in the order of X.data.")
    # checked before duplicates add up: -1 and 2 on one cell are no weight of 1
    w = check_ratings(w, np.dtype(np.float64), name="sample_weight", keep_nonzero=True)
    if w.size and float(w.min()) < 0:
        raise ValueError(f"sample_weight must be >= 0; got {float(w.min())} (first at "
                         f"position {int(np.argmin(w))}).")
    coo = X.tocoo(copy=True)  # CSR, CSC and COO keep the order of .data
    rows, cols, vals = (np.asarray(a) for a in (coo.row, coo.col, coo.data))
    order = np.lexsort((cols, rows))
    rows, cols, vals, w = rows[order], cols[order], vals[order], w[order]
    first = np.flatnonzero(np.r_[True, (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])])
    if first.size < rows.size:
        vals = np.add.reduceat(vals, first) if first.size else vals[:0]
        w = np.add.reduceat(w.astype(np.float64), first) if first.size else w[:0]
        rows, cols = rows[first], cols[first]
    keep = vals != 0
    return (rows[keep], cols[keep], vals[keep]), w[keep]


def read_training(X: Any, y: Any, cfg: Any, sample_weight: Any, what: str,
                  stacklevel: int = 4, only_dropped: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(users, items, ratings, weights) of a fit's input. For a ranking loss the
    rows are filtered by ``min_rating``, the third array holds the weights (ones when
    none are given) and the fourth is the (users, items) of the rows ``min_rating``
    dropped (None without it): they are not trained on, but the model records them as
    seen (``fit_new`` / ``fit_more`` take them as ``dropped``). A ranking fit of a sparse
    matrix whose values differ, with neither weights nor ``min_rating``, warns that the
    values are not used (``stacklevel`` points at the user's call). ``only_dropped``
    (partial_fit) accepts rows that min_rating all dropped: no interaction, the rows to
    record as seen."""
    sparse = _is_sparse(X)
    # the stored values as given (before duplicates add up), for the warning below
    stored = getattr(X, "data", None) if sparse else None
    X, sample_weight = weights_given(X, y, sample_weight, cfg.columns)
    users, items, ratings = unpack(X, y, columns=cfg.columns, what="X", encoded=True,
                                   ratings="optional" if cfg.ranking else "require")
    if not isinstance(stored, np.ndarray) or stored.ndim != 1:
        stored = ratings  # DOK, LIL...: the values read
    if (sparse and cfg.ranking and sample_weight is None and cfg.min_rating is None
            and stored is not None and np.size(stored)
            and np.min(stored) != np.max(stored)):  # bool too (np.ptp refuses bool)
        import warnings

        warnings.warn(
            f"loss={cfg.loss!r} does not use the values of the sparse matrix X: every "
            "stored entry is one interaction, of weight 1. To weight interactions by the "
            "values (confidences, play counts), pass sample_weight=X.data; to keep only "
            "the entries rated at or above a threshold, pass min_rating= to the model.",
            UserWarning, stacklevel=stacklevel)
    weights = None
    if sample_weight is not None:
        weights = check_ratings(sample_weight, cfg.dtype, name="sample_weight",
                                keep_nonzero=True)
        if weights.size != users.size:
            raise ValueError(f"sample_weight has {weights.size} values but X has "
                             f"{users.size} rows; pass one weight per row.")
        if weights.size and float(weights.min()) < 0:
            raise ValueError(f"sample_weight must be >= 0; got {float(weights.min())} "
                             f"(first at position {int(np.argmin(weights))}).")
    if cfg.ranking:
        dropped = None
        if cfg.min_rating is not None:
            # The rows below min_rating are still the user's training items: recommend
            # must not offer them back, and ranking_metrics(train=X) excludes them too.
            kept, users, items, dropped = split_low(users, items, ratings, cfg.min_rating,
                                                    "X")
            weights = None if weights is None else weights[kept]
        n = users.size
        if n == 0 and not (only_dropped and dropped is not None and len(dropped[0])):
            raise ValueError(f"{what} needs at least one interaction; got none"
                             f"{' at or above min_rating' if cfg.min_rating else ''}.")
        if n:
            _refuse_zero_weights(weights)
        w = weights if weights is not None else np.ones(n, dtype=cfg.dtype)
        return users, items, w, dropped
    ratings = check_ratings(ratings, cfg.dtype)
    if ratings.size == 0:
        raise ValueError(f"{what} needs at least one rating; got an empty input.")
    _refuse_zero_weights(weights)
    return users, items, ratings, weights


def _has_id(v: Any) -> np.ndarray:
    """The rows of an id column whose id is present (not None, NaN, pandas.NA or a null
    code, nor a code of a null value: an Arrow dictionary may hold one)."""
    if isinstance(v, Encoded):
        return ~v.missing_rows(_missing_mask(v.values))
    return ~_missing_mask(np.asarray(v))


def _refuse_zero_weights(weights: np.ndarray | None, fix: str = "give some rows a positive "
                         "weight", where: str = "") -> None:
    """All-zero weights leave nothing to fit (and no mean): a ValueError, not a NaN.
    ``where`` and ``fix`` word it for a subset of the rows (the training part of the
    early-stopping hold-out)."""
    if weights is not None and weights.size and not weights.any():
        raise ValueError(f"sample_weight is 0 for all {weights.size} rows{where}, so there "
                         f"is nothing to fit; {fix}.")


class Handoff(dict):
    """Columns handed to ``fit`` by their only holder (the command line): ``fit`` empties
    it once it has read them, so that the loaded arrays can be freed while the training
    layout copies them (at 20 M ratings this is 12 bytes per rating less at the peak). A
    user's dict is never emptied: only this private type is."""


MIN_CONSTANT = 20  # fit refuses this many or more equal ratings with loss="squared"


def refuse_constant(cfg: Any, ratings: np.ndarray) -> None:
    """Raise when a squared-loss fit gets MIN_CONSTANT or more ratings, all equal: such a
    log is interactions, and the model would only learn the constant. Equal ratings by
    chance happen in tiny samples (a toy example, a fold of a few ratings)."""
    if not cfg.ranking and ratings.size:
        refuse_constant_range(ratings.size, float(ratings.min()), float(ratings.max()))


def refuse_constant_range(n: int, low: float, high: float) -> None:
    """refuse_constant from the count and range of the ratings (a Dask fit's summary)."""
    if n >= MIN_CONSTANT and low == high:
        raise ValueError(
            f"every rating is {low!r}: with loss='squared' the model would only "
            "learn that constant. For interactions (clicks, plays, purchases) use a "
            "ranking loss: loss='warp', 'bpr' or 'softmax' (see the guide's page on "
            "ranking).")
