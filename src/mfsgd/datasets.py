"""Data sets: synthetic ratings with the shape of real ones."""

from __future__ import annotations

import math
import os
import re
from collections.abc import KeysView, Mapping, Set
from typing import Any

import numpy as np

from ._data import ROLE_NAMES as _ROLE_NAMES
from ._idmap import sorted_unique
from ._validation import check_bool, check_float, check_int, check_random_state

__all__ = ["make_ratings", "load_csv", "load_ratings"]


def make_ratings(
    n_users: int = 1000,
    n_items: int = 500,
    n_ratings: int = 50_000,
    *,
    rank: int = 10,
    noise: float = 0.5,
    random_state: Any = None,
    as_frame: bool | str = "auto",
    return_truth: bool = False,
) -> Any:
    """Generate explicit ratings from a biased low-rank model plus Gaussian noise.

    Ratings follow ``r = 3.5 + b_u + b_i + u . v + noise`` with true factors of
    rank ``rank`` (``u . v`` has standard deviation about 0.64 at any rank, biases 0.3
    and 0.5).
    Pairs are distinct. User activity follows a power law and item popularity a
    Zipf-like law, as in real rating data: most users rate a few items, a few rate
    very many. Everything is vectorised (20 M ratings take a few seconds).

    Parameters
    ----------
    n_users, n_items : int
        Number of users and items (ids ``0 .. n-1``; some may receive no rating), each
        at most ``max(n_ratings, 2**20)``: every user and item costs about
        ``50 + 12 * rank`` bytes whether rated or not, and at most ``n_ratings`` of
        them can be rated.
    n_ratings : int
        Number of distinct (user, item) pairs, at most ``n_users * n_items``.
    rank : int, default 10
        Rank of the true factor matrices, from 1 to 65536, with ``rank * (n_users +
        n_items)`` at most ``2**31`` (checked before allocating).
    noise : float, default 0.5
        Standard deviation of the Gaussian noise: the best achievable test RMSE. Ratings
        are float32: a noise that makes one overflow to infinity raises ``ValueError``.
    random_state : None, int or numpy.random.Generator
        Seed for reproducible data.
    as_frame : bool or "auto", default "auto"
        Return a pandas DataFrame with columns ``user, item, rating`` (``"auto"``:
        when pandas is installed); otherwise a tuple ``(users, items, ratings)`` of
        int32, int32 and float32 arrays.
    return_truth : bool, default False
        Also return a dict with the true ``mu``, ``user_bias``, ``item_bias``,
        ``user_factors`` and ``item_factors``.

    Returns
    -------
    DataFrame or tuple of arrays (and the truth dict if requested)

    Examples
    --------
    >>> from mfsgd.datasets import make_ratings
    >>> users, items, ratings = make_ratings(100, 50, 1000, random_state=0, as_frame=False)
    >>> len(ratings)
    1000
    """
    n_users = check_int("n_users", n_users)
    n_items = check_int("n_items", n_items)
    n_ratings = check_int("n_ratings", n_ratings)
    rank = check_int("rank", rank, high=_MAX_RANK)
    noise = check_float("noise", noise)
    as_frame = _check_as_frame(as_frame)
    return_truth = check_bool("return_truth", return_truth)
    if n_ratings > n_users * n_items:
        raise ValueError(f"n_ratings must be at most n_users * n_items = {n_users * n_items}; "
                         f"got {n_ratings}.")
    if n_users > 2**31 - 1 or n_items > 2**31 - 1:
        raise ValueError("n_users and n_items must be below 2**31.")
    # Factors and weights are drawn for every user and item, rated or not: refuse counts
    # that could only add unrated ones beyond a bounded size, before allocating them.
    most = max(n_ratings, _MAX_UNRATED)
    for name, n in (("n_users", n_users), ("n_items", n_items)):
        if n > most:
            raise ValueError(f"{name} must be at most max(n_ratings, {_MAX_UNRATED}) = {most}: "
                             f"at most n_ratings of them can be rated, and each costs memory "
                             f"(about {50 + 12 * rank} bytes) rated or not; got {n}.")
    if rank * (n_users + n_items) > _MAX_FACTOR_VALUES:
        raise ValueError(f"rank * (n_users + n_items) must be at most {_MAX_FACTOR_VALUES}: the "
                         f"true factors hold that many values (12 bytes each while drawn); got "
                         f"rank={rank} with {n_users + n_items} users and items. Lower rank.")
    rng = check_random_state(random_state)

    # Popularity weights: power law over randomly permuted ids.
    user_w = _power_weights(n_users, 0.8, 5.0, rng)
    item_w = _power_weights(n_items, 1.0, 1.0, rng)
    keys = _distinct_pairs(n_users, n_items, n_ratings, user_w, item_w, rng)
    users = (keys // n_items).astype(np.int32)
    items = (keys % n_items).astype(np.int32)

    scale = 0.8 / np.sqrt(rank) ** 0.5
    P = rng.normal(0.0, scale, size=(n_users, rank)).astype(np.float32)
    Q = rng.normal(0.0, scale, size=(n_items, rank)).astype(np.float32)
    bu = rng.normal(0.0, 0.3, size=n_users).astype(np.float32)
    bi = rng.normal(0.0, 0.5, size=n_items).astype(np.float32)
    mu = 3.5
    ratings = np.empty(n_ratings, dtype=np.float32)
    step = min(1 << 20, max(1, (1 << 24) // rank))  # bounded temporaries (rows x rank)
    for s in range(0, n_ratings, step):
        u, i = users[s:s + step], items[s:s + step]
        dots = np.einsum("ij,ij->i", P[u], Q[i])
        ratings[s:s + step] = mu + bu[u] + bi[i] + dots
    if noise > 0:
        with np.errstate(over="ignore"):
            ratings += rng.normal(0.0, noise, size=n_ratings).astype(np.float32)
        if not np.isfinite(ratings).all():
            raise ValueError(f"noise={noise!r} makes ratings overflow float32 (at most about "
                             "3.4e38); use a smaller noise.")

    if as_frame:
        from ._compat import require_pandas
        pd = require_pandas("make_ratings(as_frame=True)")
        out: Any = pd.DataFrame({"user": users, "item": items, "rating": ratings})
    else:
        out = (users, items, ratings)
    if return_truth:
        truth = {"mu": mu, "user_bias": bu, "item_bias": bi, "user_factors": P, "item_factors": Q}
        return out, truth
    return out


def _power_weights(n: int, exponent: float, offset: float, rng: np.random.Generator) -> np.ndarray:
    w = 1.0 / (np.arange(n, dtype=np.float64) + offset) ** exponent
    rng.shuffle(w)
    return w / w.sum()


def _cap_weights(w: np.ndarray, n: int, cap: float) -> np.ndarray:
    """Cap expected counts n * w at ``cap`` (redistributing the excess), so that the heaviest
    users or items do not saturate and pair rejection converges in a few rounds."""
    for _ in range(20):
        over = w * n > cap
        if not over.any():
            break
        excess = (w[over] - cap / n).sum()
        w = w.copy()
        w[over] = cap / n
        w[~over] += excess * w[~over] / w[~over].sum()
    return w / w.sum()


def _distinct_pairs(n_users: int, n_items: int, n: int, user_w: np.ndarray, item_w: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """n distinct keys user * n_items + item, drawn from the product weights, in random order."""
    total = n_users * n_items
    if n > total // 4:
        # Dense: rejection would crawl; sample the pairs uniformly without replacement.
        return rng.choice(total, size=n, replace=False).astype(np.int64)
    user_cdf = np.cumsum(_cap_weights(user_w, n, 0.25 * n_items))
    item_cdf = np.cumsum(_cap_weights(item_w, n, 0.25 * n_users))
    keys = np.empty(0, dtype=np.int64)
    for _ in range(40):
        need = n - keys.size
        if need <= 0:
            break
        m = int(need * 1.1) + 16
        u = np.minimum(np.searchsorted(user_cdf, rng.random(m)), n_users - 1)
        i = np.minimum(np.searchsorted(item_cdf, rng.random(m)), n_items - 1)
        keys = sorted_unique(np.concatenate([keys, u.astype(np.int64) * n_items + i]))
    while keys.size < n:  # pathological shapes only: top up uniformly
        extra = rng.integers(0, total, size=2 * (n - keys.size) + 16, dtype=np.int64)
        keys = sorted_unique(np.concatenate([keys, extra]))
    return rng.permutation(keys)[:n]


#: make_ratings' n_users and n_items may exceed n_ratings (leaving some unrated) up to this.
_MAX_UNRATED = 1 << 20
#: make_ratings' largest rank: MatrixFactorization's largest n_factors, far beyond any use.
_MAX_RANK = 1 << 16
#: make_ratings' largest true factor matrices, rank * (n_users + n_items) values: drawn in
#: float64 before any rating, so refused before allocating (8 GiB as float32).
_MAX_FACTOR_VALUES = 1 << 31

#: The columns every ratings file needs, in the order ``columns=`` lists them; a file of
#: interactions (``load_csv(ratings=False)``, for the ranking losses) needs the first two.
_ROLES = ("user", "item", "rating")
_LEADING_ZERO = re.compile(r"\s*[+-]?0[0-9]")


def _column_refs(name: str, value: Any) -> list[int | str]:
    """``value`` as a list of column names (str) and 0-based positions (int); a string of
    digits is a position (as the command line passes them)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise TypeError(f"{name} must be a list of column names or 0-based positions; got "
                        f"{value!r}.")
    # The order says which column is the user, the item and the rating: a set's order
    # changes from run to run (PYTHONHASHSEED), and a dict's keys would be taken for the
    # columns whatever it maps them to. (dict.keys() is a Set, but keeps its order.)
    if isinstance(value, Mapping) or (isinstance(value, Set)
                                      and not isinstance(value, KeysView)):
        why = "list the columns" if isinstance(value, Mapping) else "its order is arbitrary"
        raise TypeError(f"{name} must be an ordered sequence (a list or tuple) of column "
                        f"names or 0-based positions; got a {type(value).__name__} ({why}): "
                        f"{value!r}.")
    out: list[int | str] = []
    for c in value:
        if isinstance(c, str) and c.strip().isdigit():
            c = int(c)
        if isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_)) and c >= 0:
            out.append(int(c))
        elif isinstance(c, str) and c.strip():
            out.append(c.strip())
        else:
            raise TypeError(f"{name} must hold column names (non-empty strings) or 0-based "
                            f"positions (ints >= 0); got {c!r} in {list(value)!r}.")
    return out


def _check_columns(columns: Any, keep: Any, want: tuple[str, ...] = _ROLES,
                   ) -> tuple[list[int | str] | None, list[int | str]]:
    """(the ``want`` role columns or None to find them in the header, the extras)."""
    roles = None
    extras: list[int | str] = []
    if columns is not None:
        refs = _column_refs("columns", columns)
        n = len(want)
        if len(refs) < n:
            example = list(refs) + [r for r in want[len(refs):]]
            hint = (" (a file of interactions without ratings: ratings=False)"
                    if n == 3 and len(refs) == 2 else "")
            raise ValueError(
                f"columns must list the {', '.join(want[:-1])} and {want[-1]} columns in "
                f"that order (names or 0-based positions), optionally followed by extra "
                f"columns to keep; got {list(columns)!r} ({len(refs)} "
                f"entr{'y' if len(refs) == 1 else 'ies'}). Add the missing "
                f"{' and '.join(want[len(refs):])} column, e.g. columns={example!r}{hint}.")
        roles, extras = refs[:n], refs[n:]
    if keep is not None:
        extras += _column_refs("keep", [keep] if isinstance(keep, (str, int)) else keep)
    return roles, extras


def _named_roles(names: list[str], want: tuple[str, ...], path: str) -> list[int | str]:
    """Positions of the ``want`` columns recognised by name (``userId``, ``movieId``...,
    any case) in a header or schema, or ValueError naming the missing one."""
    low = [n.lower() for n in names]
    roles: list[int | str] = []
    for role in want:
        hit = next((low.index(c) for c in _ROLE_NAMES[role] if c in low), None)
        if hit is None:
            raise ValueError(f"{path}: no {role} column among {names}; pass "
                             f"columns=[{', '.join(want)}] names or positions (on the command "
                             f"line --columns {','.join(w.upper() for w in want)}).")
        roles.append(hit)
    return roles


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _position(ref: int | str, names: list[str] | None, width: int, path: str,
              what: str) -> int:
    if isinstance(ref, str):
        if names is not None and ref not in names:
            # the header's case may differ ("User" for "user"), as the automatic
            # recognition of the usual names already allows; one match only
            same = [k for k, n in enumerate(names) if n.casefold() == ref.casefold()]
            if len(same) == 1:
                return same[0]
            if same:
                raise ValueError(f"{path}: column {ref!r} matches {len(same)} columns that "
                                 f"differ only in case ({[names[k] for k in same]}); name "
                                 "one exactly.")
        if names is None or ref not in names:
            raise ValueError(f"{path}: no column {ref!r}; "
                             + (f"columns are {names}." if names is not None else
                                "the file has no header line, so name columns by 0-based "
                                "position."))
        return names.index(ref)
    if ref >= width:
        fields = f"{width} field{'s' if width != 1 else ''}"
        hint = " (is the separator right?)" if width == 1 else ""
        raise ValueError(f"{path}: there is no {what} column at position {ref}: its lines have "
                         f"{fields}{hint}.")
    return ref


def load_csv(path: Any, *, columns: Any = None, sep: str | None = None,
             header: Any = "infer", keep: Any = None, as_frame: bool | str = "auto",
             ratings: bool = True) -> Any:
    """Read a delimited ratings file: comma, tab, semicolon, pipe, "::" or blanks.

    Parameters
    ----------
    path : str, bytes or PathLike
        The file (UTF-8 or ASCII text). A pipe or another stream (``/dev/stdin``, a
        shell's ``<(...)``) is read once, into a temporary file; see Notes.
    columns : sequence of names or 0-based positions, optional
        The user, item and rating columns in this order, optionally followed by extra
        columns to keep (e.g. ``["userId", "movieId", "rating", "timestamp"]`` or
        ``[0, 1, 2, 3]``); a string of digits counts as a position. Without it, a
        header naming ``userId, movieId, rating`` or ``user, item, rating`` (and
        common variants) is recognised; a file without header uses columns 0, 1, 2.
    sep : str, optional
        Field separator: one character (``","``, ``"\\t"``, ``";"``, ``"|"``...),
        ``"::"`` (MovieLens 1M and 10M), or ``" "`` for runs of spaces and tabs (the
        number of blanks between fields may vary; blanks at line ends are ignored).
        Detected from the first lines when omitted; see Notes.
    header : "infer", True or False, default "infer"
        Whether the first non-blank line is a header. "infer": yes when ``columns``
        names a column, or when the line's rating field is not a number (for
        ``ratings=False``, see there).
    keep : name, position or sequence of them, optional
        Extra columns to return besides user, item and rating (same as listing them
        after the first three of ``columns``), e.g. ``keep=["timestamp"]`` for
        :func:`~mfsgd.model_selection.temporal_split`.
    as_frame : bool or "auto", default "auto"
        Return a DataFrame (``"auto"``: when pandas is installed) or arrays.
    ratings : bool, default True
        False reads a file of interactions (clicks, plays, purchases) for the ranking
        losses: ``columns`` then lists the user and item columns (then extras), and no
        rating column is read or returned: ``(users, items)`` (``(users, items,
        extras)`` with extra columns), or a DataFrame with columns ``user, item``. A
        file's rating column can still be kept as an extra column, e.g. to filter liked
        rows. The first line is then a header when it holds a known user or item column
        name, or when its user and item fields are words where, in one of those
        columns, the next lines have numbers (``CustomerID,ProductID`` above ``24,41``:
        names it does not know are refused, choose them with ``columns=``). Ids that are
        words throughout cannot tell a header from data: pass ``header=True`` or name
        the columns.

    Returns
    -------
    DataFrame
        Columns ``user, item, rating``, then the extra columns under their header
        names (``col<k>`` for position k when the file has no header).
    tuple
        With ``as_frame=False``: ``(users, items, ratings)``, or, when extra columns
        were asked for, ``(users, items, ratings, extras)`` with ``extras`` a dict
        ``{name: array}`` in the order asked. With ``ratings=False`` the same without
        ``ratings``.

        Ids keep their natural type: integers when every value of the column is an
        integer -- int32 when they all fit, else int64, uint64 beyond int64 --, else
        strings (an object array of ``str``), the same wherever in the file the value
        that decides is. Two exceptions: a zero-padded id (``"007"``) makes the column
        strings only in the first 20 lines (further down it is the integer 7: give such
        ids a non-digit, or read the file with pandas' ``dtype=str``); and a column of
        floats beyond 2**53 (integers with one value written ``"5.0"``) comes back as
        its text, since floats there would round ids into one another. Ratings are
        float32. Extra columns are int64, float64 or strings.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        The file cannot be opened; ``.filename`` is ``path``, ``.strerror`` the
        system's message, as ``open()`` raises them.
    ValueError
        ``columns``/``keep`` are wrong for this file (too few columns, an unknown
        name, a position past the line's end), the file is empty or not UTF-8 text
        (UTF-16 and UTF-32 are recognised and named), or a line is wrong (the message
        names it): a rating is missing or not a finite number, a user or item id is
        empty, the line has more fields than the file's lines, it is one of the first
        lines and the separator does not split it (a title or a ``#`` comment above the
        data), or it repeats the header's user and item names below the first line.
    TypeError
        ``columns``, ``keep``, ``sep``, ``header``, ``as_frame`` or ``ratings`` are of
        the wrong kind (``columns`` and ``keep`` must be ordered: a list or tuple, not a
        set or a dict).

    Notes
    -----
    Separator detection reads the first 20 non-blank lines: a separator fits when it
    splits each of them into the same number (at least 2) of fields, quotes respected;
    among those that fit, the one giving the most fields wins (ties in the order
    ``::``, comma, tab, semicolon, pipe); failing all, runs of blanks. Pass ``sep``
    when the first lines are not typical of the file. When no separator splits all
    of them but one splits at least half, the first line it does not split is refused,
    named: a title or a comment line above the data (lines starting with ``#`` are not
    skipped) would otherwise make blanks the separator, or be read as data.

    Fields: the file's lines have the number of fields most of its first data lines
    have (the header is not counted). A line with more is refused, naming it (a
    separator inside a field that is not quoted, or lines run together, would shift
    or drop fields; and pandas' parser, which sizes the lines of a whole chunk to the
    widest, would need memory for a million such lines). A line with fewer gets empty
    fields: an empty rating, user or item is refused, naming the line.

    Speed: with pandas every separator is read by pandas' C parser at about the speed
    of a comma-separated file; ``::`` and runs of blanks are rewritten on the fly to a
    one-byte separator (quoted fields in a blank-separated file use pandas' slower
    whitespace parser). Memory: the file is parsed in chunks of a million lines into
    columns allocated once, so the peak is about the result (12 bytes per rating with
    int32 ids) plus the parser's buffers of one chunk.
    Without pandas, NumPy reads all-numeric files and a Python loop the others
    (slower, same results).

    Empty lines are skipped and not counted as rows; line numbers in messages are
    the file's own.

    A path that is no regular file (a pipe: ``cat r.csv | ... /dev/stdin``, a shell's
    ``<(...)``, a character device) can be read only once, whereas the file is opened
    several times (sniffing, parsing, line numbers of errors): it is first copied to a
    temporary file in the temporary folder (``TMPDIR``), deleted before returning.

    Examples
    --------
    >>> import os, tempfile
    >>> from mfsgd.datasets import load_csv
    >>> path = os.path.join(tempfile.mkdtemp(), "u.data")
    >>> with open(path, "w") as f:
    ...     _ = f.write("1\\t10\\t4\\t881250949\\n2\\t10\\t3.5\\t891717742\\n")
    >>> users, items, ratings, extra = load_csv(path, columns=[0, 1, 2, 3], as_frame=False)
    >>> users.tolist(), ratings.tolist(), extra["col3"].tolist()
    ([1, 2], [4.0, 3.5], [881250949, 891717742])
    """
    from . import _fileio as F

    spath = _file_path(path)
    opts = _read_options(columns, sep, header, keep, as_frame, ratings)
    with F.as_regular_file(spath) as source:
        return _read_text(spath, source, *opts)


def _file_path(path: Any) -> str:
    """``path`` as a str (bytes too, decoded as ``open()`` decodes them)."""
    return os.fsdecode(os.fspath(path))


def _check_as_frame(as_frame: Any) -> bool:
    """``as_frame`` as a bool; ``"auto"``: whether pandas is installed."""
    if isinstance(as_frame, str) and as_frame == "auto":
        try:
            import pandas  # noqa: F401
        except ImportError:
            return False
        return True
    if not isinstance(as_frame, (bool, np.bool_)):
        raise TypeError(f"as_frame must be True, False or 'auto'; got {as_frame!r}.")
    return bool(as_frame)


def _read_options(columns: Any, sep: Any, header: Any, keep: Any, as_frame: Any,
                  ratings: Any) -> tuple:
    """The checked options of load_csv and load_ratings, before the file is opened:
    (want, roles, extras, dialect, header, as_frame)."""
    from . import _fileio as F

    if not isinstance(ratings, (bool, np.bool_)):
        raise TypeError(f"ratings must be True or False; got {ratings!r}.")
    want = _ROLES if ratings else _ROLES[:2]
    roles, extras = _check_columns(columns, keep, want)
    if not (isinstance(header, (bool, np.bool_))
            or (isinstance(header, str) and header == "infer")):
        raise TypeError(f"header must be 'infer', True or False; got {header!r}.")
    header = header if isinstance(header, str) else bool(header)
    return want, roles, extras, F.check_sep(sep), header, _check_as_frame(as_frame)


def _read_text(spath: str, source: str, want: tuple[str, ...], roles: list[int | str] | None,
               extras: list[int | str], dialect: Any, header: Any, as_frame: bool) -> Any:
    """load_csv's work: ``source`` is the file to read (``spath`` or its copy), ``spath``
    the name messages give."""
    from . import _fileio as F

    ratings, chosen = len(want) == 3, roles is not None
    head = F.sniff(source, dialect, name=spath)
    if not head.rows:
        raise ValueError(f"{spath} is empty; expected lines of {', '.join(want)}.")
    first = [f.strip() for f in head.rows[0]]
    named = any(isinstance(c, str) for c in (roles or []) + extras)
    if header == "infer" and not ratings:
        # ids may be words: a known name, or words where the next lines have numbers
        known = {n for r in want for n in _ROLE_NAMES[r]}
        id_pos = [c for c in roles if isinstance(c, int)] if roles is not None else [0, 1]
        has_header = (named or any(f.lower() in known for f in first)
                      or _words_over_numbers(head.rows, id_pos))
    elif header == "infer":
        pos_r = roles[2] if roles is not None and isinstance(roles[2], int) else 2
        has_header = named or (pos_r < len(first) and not _is_number(first[pos_r]))
    else:
        has_header = bool(header)
        if named and not has_header:
            raise ValueError("columns/keep name columns but header=False; pass 0-based "
                             "positions, or header=True.")
    names = first if has_header else None
    width = len(first)
    if roles is None:
        if names is None:
            roles = list(range(len(want)))
        else:
            roles = _named_roles(names, want, spath)
    if ratings and not chosen and width == 2:
        raise ValueError(f"{spath}: lines have 2 fields, so there is no rating column; read "
                         "interactions (user, item) with ratings=False and fit them with a "
                         "ranking loss (loss='bpr', 'warp' or 'softmax'; on the command line "
                         "--loss bpr), or choose the columns with columns=.")
    pos = [_position(c, names, width, spath, role) for c, role in zip(roles, want, strict=True)]
    extra_pos = [_position(c, names, width, spath, "extra") for c in extras]
    seen: dict[int, str] = {}
    for p, what in zip(pos + extra_pos, [*want, *map(repr, extras)], strict=True):
        if p in seen:
            label = names[p] if names is not None else f"position {p}"
            raise ValueError(f"{spath}: column {label!r} is asked for twice (as {seen[p]} and "
                             f"as {what}); list each column once.")
        seen[p] = what
    extra_names = [names[p] if names is not None else f"col{p}" for p in extra_pos]
    clash = set(extra_names) & set(want)
    if clash:
        raise ValueError(f"{spath}: the extra column {sorted(clash)[0]!r} would clash with the "
                         f"output columns {list(want)}; it cannot be kept under that name.")
    dtypes = {pos[2]: "float32"} if ratings else {}
    for p in pos[:2]:  # "007" is a label, not the number 7
        if any(p < len(row) and _LEADING_ZERO.match(row[p]) for row in head.rows[has_header:]):
            dtypes[p] = "str"
    fields = _check_first_lines(head, int(has_header), pos, max(seen) + 1, spath)
    skip = head.first_line + int(has_header)
    try:
        # an empty id would be the id "" and turn a column of numbers into strings
        with np.errstate(over="ignore"):  # a rating beyond float32: reported below
            cols = F.read_columns(source, head.dialect, skip=skip, usecols=sorted(seen),
                                  dtypes=dtypes, narrow=pos[:2], name=spath, width=fields,
                                  nonempty=pos[:2])
    except F.EmptyField as e:
        role = want[pos.index(e.position)]
        line = F.physical_line(source, e.row, skip, head.dialect)
        raise ValueError(f"{spath}: line {line} has an empty {role} id; fix or remove that "
                         f"line, or choose the {role} column with columns=.") from None
    out = {"user": cols[pos[0]], "item": cols[pos[1]]}
    if ratings:
        out["rating"] = _checked_ratings(cols[pos[2]], spath, skip, source, head.dialect,
                                         pos[2])
    extra = {n: cols[p] for n, p in zip(extra_names, extra_pos, strict=True)}
    if as_frame:
        from ._compat import require_pandas

        pdm = require_pandas("load_csv(as_frame=True)")
        return pdm.DataFrame({**out, **extra}, copy=False)
    return (*out.values(), extra) if extras else tuple(out.values())


def _words_over_numbers(rows: list[list[str]], id_pos: list[int]) -> bool:
    """Whether the first of ``rows`` (a file's first lines) is a header although it uses
    no known column name: its id fields (at ``id_pos``) are all words, not numbers, and
    in one of those columns every following line has a number ("CustomerID,ProductID"
    above "24,41"). Ids that are words throughout cannot tell a header from data."""
    first, rest = rows[0], rows[1:]
    if not rest or not id_pos or any(p >= len(first) for p in id_pos):
        return False
    if any(not first[p].strip() or _is_number(first[p]) for p in id_pos):
        return False
    return any(all(p < len(r) and _is_number(r[p]) for r in rest) for p in id_pos)


def _usual(counts: list[int]) -> int:
    """The most frequent of ``counts`` (the smallest on a tie)."""
    top = max(counts.count(c) for c in counts)
    return min(c for c in counts if counts.count(c) == top)


def _check_first_lines(head: Any, start: int, pos: list[int], needed: int, path: str) -> int:
    """The number of fields of the file's lines, after checking its first data lines
    (``head.rows[start:]``): the most frequent count among them, or ``needed`` (the
    columns read) if larger. A line with more fields raises TextFormatError naming it
    (the parser sizes its rows from the first one, so it must not be wider), as does one
    that names the user and item columns as a header does but is not the first line."""
    from . import _fileio as F

    rows, numbers, texts = head.rows[start:], head.numbers[start:], head.lines[start:]
    u, i = pos[0], pos[1]
    for row, line, text in zip(rows[1 - start:], numbers[1 - start:], texts[1 - start:],
                               strict=True):  # the lines after the file's first
        if (max(u, i) < len(row) and row[u].strip().lower() in _ROLE_NAMES["user"]
                and row[i].strip().lower() in _ROLE_NAMES["item"]):
            raise ValueError(
                f"{path}: line {line} ({F._abridged(text)!r}) names the user and item columns "
                "as a header does, but it is not the file's first line: remove the lines above "
                "it if they are a title or a comment, or this line if it repeats the header "
                "(files joined together?).")
    fields = max(_usual([len(r) for r in rows]) if rows else len(head.rows[0]), needed)
    for row, line, text in zip(rows, numbers, texts, strict=True):
        if len(row) > fields:
            raise F.too_wide(path, head.dialect, fields, line, text)
    return fields


def _checked_ratings(values: np.ndarray, path: str, skip: int, source: str,
                     dialect: Any = None, position: int | None = None) -> np.ndarray:
    """float32 ratings, or ValueError naming the line of the first bad one (counted in
    ``source``, the file read: ``path`` or its copy) and its value as written (field
    ``position`` of the line when the column was parsed as numbers)."""
    from . import _fileio as F

    if values.dtype.kind in "iuf":
        r = values.astype(np.float32, copy=False)
    else:  # text: some value did not parse
        try:
            import pandas as pd

            r = pd.to_numeric(pd.Series(values, copy=False), errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan)
        except ImportError:
            r = np.array([_to_float(v) for v in values], dtype=np.float64)
        r = r.astype(np.float32)
    with np.errstate(over="ignore"):
        bad = ~np.isfinite(r)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        line = F.physical_line(source, row, skip, dialect)
        shown = str(values[row])
        if values.dtype.kind == "f" and position is not None:  # parsed: the text as written
            text, _ = F.nth_line(source, line)
            fields = dialect.split(text) if dialect is not None else text.split(",")
            shown = fields[position].strip() if position < len(fields) else ""
        value = _to_float(shown)
        if math.isfinite(value) or (math.isinf(value) and "inf" not in shown.lower()):
            # a number written out (1e39, 1e309), beyond float32's range
            raise ValueError(f"{path}: line {line} has a rating beyond float32's range "
                             f"({shown!r}; at most about 3.4e38); fix or remove that line, or "
                             "choose the rating column with columns=.")
        raise ValueError(f"{path}: line {line} has a missing or non-numeric rating "
                         f"({shown!r}); fix or remove that line, or choose the rating "
                         "column with columns=.")
    return r


def _to_float(v: Any) -> float:
    try:
        return float(v)
    except ValueError:
        return float("nan")


PARQUET_EXTENSIONS = (".parquet", ".pq")


def _is_parquet(path: str, source: str) -> bool:
    """A Parquet file: by the extension of ``path``, or by the magic bytes "PAR1" of
    ``source`` (the file read: ``path`` or its copy)."""
    if path.lower().endswith(PARQUET_EXTENSIONS):
        return True
    try:
        with open(source, "rb") as f:
            return f.read(4) == b"PAR1"
    except OSError:
        return False  # load_csv raises the error, naming the path


def load_ratings(path: Any, *, columns: Any = None, sep: str | None = None,
                 header: Any = "infer", keep: Any = None, as_frame: bool | str = "auto",
                 ratings: bool = True) -> Any:
    """Read a ratings file: Parquet, or delimited text (any separator :func:`load_csv` reads).

    A file ending in ``.parquet`` or ``.pq``, or starting with Parquet's magic bytes, is
    read with pyarrow; any other file by :func:`load_csv`. The command line's ``train``
    and ``evaluate`` read their files through this function.

    Parameters
    ----------
    path : str, bytes or PathLike
        The file; a pipe or another stream is read once, into a temporary file (see
        :func:`load_csv`).
    columns : sequence of names or 0-based positions, optional
        The user, item and rating columns in this order, optionally followed by extra
        columns to keep, as for :func:`load_csv`. Without it, the column names are
        recognised (``userId, movieId, rating``, ``user, item, rating`` and common
        variants).
    sep, header
        For text files only (see :func:`load_csv`); a Parquet file has its own schema.
    keep : name, position or sequence of them, optional
        Extra columns to return besides user, item and rating.
    as_frame : bool or "auto", default "auto"
        Return a DataFrame (``"auto"``: when pandas is installed) or arrays.
    ratings : bool, default True
        False reads interactions (user, item) without a rating column, for the ranking
        losses, as :func:`load_csv` does.

    Returns
    -------
    DataFrame or tuple
        As :func:`load_csv` returns them: columns ``user, item, rating`` (then the extra
        columns), or ``(users, items, ratings[, extras])``. Integer ids are int32 when
        they all fit, else int64 (a Parquet int32 column is never widened); string ids
        an object array of ``str``; ratings float32.

    Raises
    ------
    ImportError
        A Parquet file without pyarrow installed (``pip install 'mfsgd[parquet]'``).
    ValueError
        A column is missing (the message lists the file's columns), an id is missing
        (null), a rating is missing or not a number, ``sep``/``header`` were given for a
        Parquet file, or the file is not valid Parquet.

    Notes
    -----
    Memory: Parquet string ids are read dictionary-encoded (each distinct id once, one
    int32 code per row) and each column is converted to NumPy and dropped from the
    Arrow table in turn, so the peak is about the result plus one column.

    Examples
    --------
    >>> import os, tempfile
    >>> import pyarrow as pa, pyarrow.parquet as pq
    >>> from mfsgd.datasets import load_ratings
    >>> path = os.path.join(tempfile.mkdtemp(), "r.parquet")
    >>> pq.write_table(pa.table({"userId": [1, 2], "movieId": [10, 10],
    ...                          "rating": [4.0, 3.5]}), path)
    >>> users, items, ratings = load_ratings(path, as_frame=False)
    >>> users.tolist(), users.dtype.name, ratings.tolist()
    ([1, 2], 'int32', [4.0, 3.5])
    """
    from . import _fileio as F

    spath = _file_path(path)
    opts = _read_options(columns, sep, header, keep, as_frame, ratings)
    with F.as_regular_file(spath) as source:
        if not _is_parquet(spath, source):
            return _read_text(spath, source, *opts)
        if sep is not None or header != "infer":
            raise ValueError(f"{spath} is a Parquet file: sep= and header= are for text "
                             "files; its columns are named in its schema (choose them with "
                             "columns=).")
        want, roles, extras, _, _, frame = opts
        return _load_parquet(spath, source, roles, extras, frame, want)


def _require_pyarrow(what: str) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(f"{what} needs pyarrow: pip install 'mfsgd[parquet]' (or pip "
                          "install pyarrow).") from None
    return pq


def _load_parquet(spath: str, source: str, roles: list[int | str] | None,
                  extras: list[int | str], as_frame: bool, want: tuple[str, ...]) -> Any:
    """Read ``source`` (``spath`` or its copy); messages name ``spath``."""
    import errno

    from . import _fileio as F

    pq = _require_pyarrow(f"Reading the Parquet file {spath}")
    import pyarrow as pa

    if os.path.isdir(spath):
        raise F.path_error(errno.EISDIR, spath)
    open(source, "rb").close()  # FileNotFoundError / PermissionError, as open() raises them
    try:
        schema = pq.read_schema(source)
    except (pa.ArrowInvalid, OSError) as e:
        raise ValueError(f"{spath} is not a valid Parquet file: "
                         f"{str(e).replace(source, spath)}") from None
    names = list(schema.names)
    if roles is None:
        roles = _named_roles(names, want, spath)
    pos = [_position(c, names, len(names), spath, r) for c, r in zip(roles, want, strict=True)]
    extra_pos = [_position(c, names, len(names), spath, "extra") for c in extras]
    if len(set(pos + extra_pos)) < len(pos + extra_pos):
        raise ValueError(f"{spath}: a column is asked for twice in {[names[p] for p in pos]} "
                         f"+ {[names[p] for p in extra_pos]}; list each column once.")
    extra_names = [names[p] for p in extra_pos]
    clash = set(extra_names) & set(want)
    if clash:
        raise ValueError(f"{spath}: the extra column {sorted(clash)[0]!r} would clash with the "
                         f"output columns {list(want)}; it cannot be kept under that name.")
    wanted = [names[p] for p in pos + extra_pos]
    types = [schema.field(n).type for n in wanted]
    rated = len(want) == 3  # column 2 is the rating (else an extra column)
    if all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in types):
        out = _parquet_numbers(pq, source, spath, wanted, rated)
    else:
        out = _parquet_table(pq, source, spath, wanted, types, rated)
    # Arrow's allocator (mimalloc or jemalloc) keeps freed buffers for reuse: hand them
    # back to the system, or the process keeps the size of the file's data twice.
    pa.default_memory_pool().release_unused()
    roles_out = dict(zip(want, out[:len(want)], strict=True))
    extra = dict(zip(extra_names, out[len(want):], strict=True))
    del out
    if as_frame:
        from ._compat import require_pandas

        pdm = require_pandas("load_ratings(as_frame=True)")
        return pdm.DataFrame({**roles_out, **extra}, copy=False)
    return (*roles_out.values(), extra) if extras else tuple(roles_out.values())


_PARQUET_BATCH = 1 << 20  # rows per batch of an all-numeric Parquet file


def _parquet_numbers(pq: Any, source: str, spath: str, wanted: list[str], rated: bool = True,
                     ) -> list[np.ndarray]:
    """All-numeric columns, batch by batch into arrays allocated once (the file says how
    many rows it has): the peak is the result plus one batch."""
    import pyarrow as pa

    from ._fileio import narrow_ints

    pf = pq.ParquetFile(source, pre_buffer=False)
    n = pf.metadata.num_rows
    out: list[np.ndarray | None] = [None] * len(wanted)
    start = 0
    for batch in pf.iter_batches(batch_size=_PARQUET_BATCH, columns=wanted):
        k = batch.num_rows
        for j, name in enumerate(wanted):
            col = batch.column(j)
            if j < 2 and col.null_count:
                row = start + int(np.argmax(col.is_null().to_numpy(zero_copy_only=False)))
                raise ValueError(f"{spath}: column {name!r} has missing ids (first in row "
                                 f"{row}); drop those rows first.")
            if j == 2 and rated:
                a = _parquet_ratings(pa.chunked_array([col]), spath, name, offset=start)
            else:
                a = col.to_numpy(zero_copy_only=False)
            if out[j] is None:
                dt = a.dtype
                if j < 2 and dt == np.int64 and narrow_ints(a).dtype == np.int32:
                    dt = np.dtype(np.int32)  # tentatively: widened if a later id is larger
                out[j] = np.empty(n, dtype=dt)
            elif out[j].dtype != a.dtype and not (
                    j < 2 and narrow_ints(a).dtype == out[j].dtype):
                out[j] = out[j].astype(np.result_type(out[j].dtype, a.dtype))
            out[j][start:start + k] = a
        start += k
    if out[0] is None:  # no rows
        return [np.empty(0, dtype=np.int32 if j < 2 else np.float32 if j == 2 and rated
                         else np.int64) for j in range(len(wanted))]
    return out  # type: ignore[return-value]


def _parquet_table(pq: Any, source: str, spath: str, wanted: list[str], types: list,
                   rated: bool = True) -> list[np.ndarray]:
    """Columns of any type (string ids read dictionary-encoded), one at a time out of
    the table, each dropped from it once converted."""
    textual = [n for n, t in zip(wanted[:2], types, strict=False) if _arrow_is_text(t)]
    table = pq.read_table(source, columns=wanted, read_dictionary=textual, pre_buffer=False)
    out: list[np.ndarray] = []
    for k, name in enumerate(wanted):
        col = table.column(0)
        if k < 2:
            out.append(_parquet_ids(col, spath, name))
        elif k == 2 and rated:
            out.append(_parquet_ratings(col, spath, name))
        else:
            out.append(col.to_numpy())
        table = table.drop_columns([table.column_names[0]])
        del col
    return out


def _arrow_is_text(t: Any) -> bool:
    import pyarrow as pa

    return bool(pa.types.is_string(t) or pa.types.is_large_string(t)
                or pa.types.is_string_view(t))


def _parquet_ids(col: Any, path: str, name: str) -> np.ndarray:
    """An id column: integers (int32 when they fit) or str (an object array sharing one
    str object per distinct id); a null is an error naming its row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from ._fileio import narrow_ints

    if col.null_count:
        row = int(pc.index(pc.is_null(col), True).as_py())
        raise ValueError(f"{path}: column {name!r} has {col.null_count} missing ids (first "
                         f"in row {row}); drop those rows first.")
    t = col.type
    if pa.types.is_dictionary(t):
        col = col.unify_dictionaries()
        values = (col.chunk(0).dictionary.to_numpy(zero_copy_only=False) if col.num_chunks
                  else np.empty(0, dtype=object))
        codes = [c.indices.to_numpy() for c in col.chunks]
        return values[np.concatenate(codes)] if len(codes) != 1 else values[codes[0]]
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or _arrow_is_text(t)):
        raise ValueError(f"{path}: column {name!r} holds {t} values; ids must be integers or "
                         "strings.")
    a = narrow_ints(col.to_numpy())
    return a if a.flags.writeable else a.copy()  # Arrow's buffers are read-only


def _parquet_ratings(col: Any, path: str, name: str, offset: int = 0) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
            or pa.types.is_decimal(col.type)):
        raise ValueError(f"{path}: the rating column {name!r} holds {col.type} values, not "
                         "numbers; choose the rating column with columns=.")
    r = col.cast(pa.float32()).to_numpy() if col.type != pa.float32() else col.to_numpy()
    with np.errstate(over="ignore", invalid="ignore"):
        bad = ~np.isfinite(r)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = col[row].as_py() if not pc.is_null(col[row]).as_py() else None
        what = "a rating beyond float32's range (at most about 3.4e38)" if value is not None \
            and math.isfinite(value) else "a missing or non-finite rating"
        raise ValueError(f"{path}: row {offset + row} has {what} ({value!r}); "
                         "fix or remove that row, or choose the rating column with columns=.")
    if not r.flags.writeable:
        r = r.copy()
    return r


# ---------------------------------------------------------------------- MovieLens
__all__ += ["load_movielens", "get_data_home", "DownloadError", "ChecksumError"]

#: Where the MovieLens zips are downloaded from; ``MFSGD_MOVIELENS_URL`` overrides it
#: (read at every call), e.g. for a mirror or a local server.
MOVIELENS_BASE_URL = "https://files.grouplens.org/datasets/movielens/"

# variant: (zip name, ratings member, field separator, header line, columns used).
# ml-1m and ml-10m separate fields by "::"; reading them with the one-character
# separator ":" (every other field is then empty) lets pandas' fast C parser and
# numpy.loadtxt read them.
_MOVIELENS = {
    "100k": ("ml-100k.zip", "ml-100k/u.data", "\t", False, (0, 1, 2, 3)),
    "1m": ("ml-1m.zip", "ml-1m/ratings.dat", ":", False, (0, 2, 4, 6)),
    "10m": ("ml-10m.zip", "ml-10M100K/ratings.dat", ":", False, (0, 2, 4, 6)),
    "20m": ("ml-20m.zip", "ml-20m/ratings.csv", ",", True, (0, 1, 2, 3)),
    "25m": ("ml-25m.zip", "ml-25m/ratings.csv", ",", True, (0, 1, 2, 3)),
    "32m": ("ml-32m.zip", "ml-32m/ratings.csv", ",", True, (0, 1, 2, 3)),
    "latest-small": ("ml-latest-small.zip", "ml-latest-small/ratings.csv", ",", True,
                     (0, 1, 2, 3)),
}

# SHA-256 of the official zips. GroupLens publishes only MD5 files (ml-*.zip.md5); these
# SHA-256 values are the ones pinned by TensorFlow Datasets (url_checksums/movielens.txt:
# 100k, 1m, 20m, 25m, latest-small) and, for 10m and 32m, by several independent projects
# that also checked GroupLens' MD5 (10m: ce571fd5..., 32m: d472be33...). A variant mapped
# to None is verified trust-on-first-use: the SHA-256 of the first copy is recorded in a
# sidecar file "<zip>.sha256" and every later load is checked against it.
_MOVIELENS_SHA256: dict[str, str | None] = {
    "100k": "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
    "1m": "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
    "10m": "813c411ccb6122564edfe752e7f80c4dcc5aa25fa94c93622f6877a7ba252862",
    "20m": "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
    "25m": "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
    "32m": "e4a68655d7386b8f95f2f2424b2ff975dfdd15ffd59e0d864a14dca43e99d6ee",
    "latest-small": "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
}

_DOWNLOAD_TIMEOUT = 60.0  # seconds without progress before a download is abandoned
_CHUNK = 1 << 20


class DownloadError(ConnectionError):
    """A data set could not be downloaded (no network, HTTP error, truncated transfer).

    The message names the URL and where to place the file by hand.
    """


class ChecksumError(OSError):
    """A downloaded or cached file does not have the expected SHA-256 checksum."""


def get_data_home(data_home: Any = None) -> str:
    """The folder where downloaded data sets are kept (created if missing).

    Parameters
    ----------
    data_home : str or PathLike, optional
        Use this folder. Otherwise the environment variable ``MFSGD_DATA``, else
        ``$XDG_CACHE_HOME/mfsgd``, else ``~/.cache/mfsgd``.

    Returns
    -------
    str
        The absolute path of the folder.

    Raises
    ------
    NotADirectoryError
        The folder, or a folder above it, is a file; the message says where the path
        came from (``data_home``, ``MFSGD_DATA``, ``XDG_CACHE_HOME``).
    TypeError, ValueError
        ``data_home`` is not a path, or is empty.
    """
    import os

    path, source = _data_home(data_home)
    try:
        os.makedirs(path, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # a file in the way
        raise NotADirectoryError(f"{source} {path} cannot be the folder of downloaded data "
                                 f"sets: it or a folder above it is a file. Choose another "
                                 f"folder (data_home= or MFSGD_DATA).") from None
    return path


def _data_home(data_home: Any) -> tuple[str, str]:
    """get_data_home's folder, not created, and where its path came from (for messages)."""
    import os

    source = "data_home"
    if data_home is None:
        data_home, source = os.environ.get("MFSGD_DATA") or None, "MFSGD_DATA"
    elif not isinstance(data_home, (str, bytes, os.PathLike)):
        raise TypeError(f"data_home must be a folder path (str or PathLike) or None; got "
                        f"{data_home!r} ({type(data_home).__name__}).")
    elif not os.fspath(data_home):
        # os.path.abspath("") is the working directory: a cache there was never meant
        raise ValueError("data_home is an empty path; pass a folder, or None for the "
                         "default cache folder.")
    if data_home is None:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        data_home = os.path.join(cache, "mfsgd")
        source = ("XDG_CACHE_HOME" if os.environ.get("XDG_CACHE_HOME")
                  else "the default cache folder")
    return os.path.abspath(os.path.expanduser(os.fsdecode(os.fspath(data_home)))), source


def _movielens_variant(variant: Any) -> str:
    if not isinstance(variant, str):
        raise TypeError(f"variant must be a string such as '100k'; got {variant!r}.")
    v = variant.strip().lower()
    v = v[3:] if v.startswith("ml-") else v
    if v not in _MOVIELENS:
        raise ValueError(f"variant must be one of {list(_MOVIELENS)}; got {variant!r}.")
    return v


def _movielens_url(variant: str) -> str:
    import os

    base = os.environ.get("MFSGD_MOVIELENS_URL") or MOVIELENS_BASE_URL
    return base.rstrip("/") + "/" + _MOVIELENS[variant][0]


def _sha256_of(path: str) -> str:
    """The SHA-256 of the cached zip at ``path``, which must be a regular file (else an
    OSError naming it, before any byte is read): a named pipe would block the read
    forever, and a device such as ``/dev/zero`` would be hashed forever."""
    import hashlib
    import stat

    from .persistence import _open_nonblocking

    h = hashlib.sha256()
    # O_NONBLOCK: opening a FIFO would otherwise wait for a writer; it changes nothing for
    # a regular file. A directory raises IsADirectoryError here, naming the path.
    with open(path, "rb", opener=_open_nonblocking) as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise OSError(f"{path} is not a regular file (a device, pipe or socket), so it "
                          "cannot be the cached archive; delete it and call load_movielens "
                          "again to download it anew.")
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _manual_hint(url: str, path: str) -> str:
    return (f"To work offline, download {url} on a machine with internet access and place it "
            f"at {path} (or point data_home= / MFSGD_DATA to the folder holding it); set "
            "MFSGD_MOVIELENS_URL to download from a mirror.")


def _download(url: str, path: str, expected: str | None) -> str:
    """Stream ``url`` into a temporary file beside ``path``, check it, rename it into place.

    Returns the SHA-256 of the file. Nothing is left behind on failure; the file gets the
    mode ``open()`` would give it (a shared cache folder stays readable to its group).
    """
    import contextlib
    import hashlib
    import http.client
    import sys
    import urllib.error
    import urllib.request

    from ._fileio import atomic_write
    from ._version import __version__

    with atomic_write(path, "wb") as out:
        h = hashlib.sha256()
        received = 0
        with contextlib.suppress(OSError):  # a notice: a closed or full stderr stops no download
            print(f"mfsgd: downloading {url} to {path}", file=sys.stderr, flush=True)
        try:
            # built here: Request raises ValueError for a malformed URL (a bad
            # MFSGD_MOVIELENS_URL), reported like any other failed download
            req = urllib.request.Request(url, headers={"User-Agent": f"mfsgd/{__version__}"})
            resp = urllib.request.urlopen(req, timeout=_DOWNLOAD_TIMEOUT)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise DownloadError(f"Could not download {url}: {exc}. "
                                f"{_manual_hint(url, path)}") from exc
        with resp:
            length = resp.headers.get("Content-Length")
            while True:
                try:
                    chunk = resp.read(_CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise DownloadError(f"Download of {url} failed after {received} bytes: "
                                        f"{exc!r}. {_manual_hint(url, path)}") from exc
                if not chunk:
                    break
                out.write(chunk)
                h.update(chunk)
                received += len(chunk)
        if length is not None and length.isdigit() and received != int(length):
            raise DownloadError(f"Download of {url} was cut short: got {received} of "
                                f"{length} bytes. Try again. {_manual_hint(url, path)}")
        digest = h.hexdigest()
        if expected is not None and digest != expected:
            raise ChecksumError(f"The file downloaded from {url} has SHA-256 {digest}, expected "
                                f"{expected}; it was discarded. The transfer was corrupted or "
                                "the server holds a different file; try again, or check "
                                "MFSGD_MOVIELENS_URL if you set it.")
    return digest


def _verify(path: str, variant: str, fresh_digest: str | None) -> None:
    """Check the cached zip against the known SHA-256, or against (or into) its sidecar."""
    import os

    expected = _MOVIELENS_SHA256.get(variant)
    digest = fresh_digest or _sha256_of(path)
    sidecar = path + ".sha256"
    if expected is None and os.path.exists(sidecar):
        with open(sidecar, encoding="ascii") as f:
            expected = (f.read().split() or [""])[0].lower()
        source = f"the checksum recorded at its first download ({sidecar})"
    else:
        source = "the official archive's checksum"
    if expected is None:
        # Trust on first use: record the checksum so later loads detect any change.
        tmp = sidecar + ".tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(f"{digest}  {os.path.basename(path)}\n")
        os.replace(tmp, sidecar)
        return
    if digest != expected:
        raise ChecksumError(f"{path} has SHA-256 {digest}, but {source} is {expected}: the "
                            "file is damaged or not the official archive. Delete it and call "
                            "load_movielens again to download it anew.")


def _read_movielens(path: str, variant: str, as_frame: bool) -> Any:
    import io
    import zipfile

    _, member, sep, header, cols = _MOVIELENS[variant]
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise OSError(f"{path} is not a valid zip archive ({exc}); delete it and call "
                      "load_movielens again to download it anew.") from exc
    with zf:
        names = zf.namelist()
        if member not in names:
            base = member.rsplit("/", 1)[-1]
            found = [n for n in names if n.rsplit("/", 1)[-1] == base]
            if not found:
                raise OSError(f"{path} holds no {member} (members: {names[:10]}); it is not the "
                              f"MovieLens {variant} archive. Delete it and call load_movielens "
                              "again.")
            member = found[0]
        with zf.open(member) as raw:
            try:
                import pandas as pd
            except ImportError:
                pd = None
            if pd is not None:
                df = pd.read_csv(raw, sep=sep, header=None, skiprows=int(header),
                                 usecols=list(cols), engine="c",
                                 dtype={cols[0]: np.int64, cols[1]: np.int64,
                                        cols[2]: np.float32, cols[3]: np.int64})
                users, items, ratings, stamps = (df[c].to_numpy() for c in cols)
            else:
                text = io.TextIOWrapper(raw, encoding="latin-1")
                a = np.loadtxt(text, delimiter=sep, skiprows=int(header), usecols=cols,
                               dtype=np.float64, ndmin=2)
                users, items = a[:, 0].astype(np.int64), a[:, 1].astype(np.int64)
                ratings, stamps = a[:, 2].astype(np.float32), a[:, 3].astype(np.int64)
    if as_frame:
        from ._compat import require_pandas

        pdm = require_pandas("load_movielens(as_frame=True)")
        return pdm.DataFrame({"user": users, "item": items, "rating": ratings,
                              "timestamp": stamps})
    return users, items, ratings, stamps


def load_movielens(variant: str = "100k", *, data_home: Any = None,
                   as_frame: bool | str = "auto", download: bool = True) -> Any:
    """Load the ratings of a MovieLens data set, downloading it once from GroupLens.

    Parameters
    ----------
    variant : {"100k", "1m", "10m", "20m", "25m", "32m", "latest-small"}, default "100k"
        Which data set (``"ml-100k"`` etc. also work).
    data_home : str or PathLike, optional
        Cache folder; see :func:`get_data_home` (``MFSGD_DATA``, ``$XDG_CACHE_HOME/mfsgd``,
        ``~/.cache/mfsgd``).
    as_frame : bool or "auto", default "auto"
        A DataFrame with columns ``user, item, rating, timestamp`` (``"auto"``: when
        pandas is installed), else a tuple ``(users, items, ratings, timestamps)`` of
        int64, int64, float32 and int64 arrays (``fit(data[:3])`` fits it).
    download : bool, default True
        Download the zip if it is not in the cache folder; False raises instead.

    Returns
    -------
    DataFrame or tuple of arrays
        The ratings in file order; timestamps are Unix seconds.

    Raises
    ------
    DownloadError
        (a ``ConnectionError``, hence ``OSError``) The download failed; the message
        names the URL and where to place the file by hand.
    ChecksumError
        (an ``OSError``) The downloaded or cached zip has the wrong SHA-256.
    FileNotFoundError
        The zip is not cached and ``download`` is False.
    OSError
        The cached zip is not a regular file (a named pipe, a device such as
        ``/dev/zero``: refused before any byte is read) or not a zip archive; the
        message names it.

    Notes
    -----
    The zip ``ml-<variant>.zip`` is fetched from ``MOVIELENS_BASE_URL``
    (https://files.grouplens.org/datasets/movielens/; the environment variable
    ``MFSGD_MOVIELENS_URL`` overrides it) into the cache folder, streamed to a
    temporary file that is renamed into place only once complete and verified, so an
    interrupted download never leaves a partial file. A cached zip is never downloaded
    again. Every load verifies its SHA-256 against the official checksum built into
    mfsgd (every variant offered has one). A file placed in the cache folder by hand is
    verified the same way. Only the ratings file is
    read, straight from the zip (``u.data``, tab-separated, for 100k;
    ``ratings.dat`` with ``::`` for 1m and 10m; ``ratings.csv`` with a header for the
    others). The data are subject to GroupLens' license (non-commercial use;
    see the README inside each zip).

    Examples
    --------
    >>> from mfsgd.datasets import load_movielens
    >>> df = load_movielens("100k")          # doctest: +SKIP
    >>> df.shape                             # doctest: +SKIP
    (100000, 4)
    """
    import os

    variant = _movielens_variant(variant)
    if not isinstance(download, (bool, np.bool_)):
        raise TypeError(f"download must be True or False; got {download!r}.")
    as_frame = _check_as_frame(as_frame)
    # the folder is made only for a download: download=False with a mistyped folder
    # must not leave that folder behind
    path = os.path.join(_data_home(data_home)[0], _MOVIELENS[variant][0])
    digest = None
    if not os.path.exists(path):
        url = _movielens_url(variant)
        if not download:
            raise FileNotFoundError(f"{path} does not exist and download=False. Pass "
                                    f"download=True, or place the file there by hand. "
                                    f"{_manual_hint(url, path)}")
        path = os.path.join(get_data_home(data_home), _MOVIELENS[variant][0])
        digest = _download(url, path, _MOVIELENS_SHA256.get(variant))
    _verify(path, variant, digest)
    return _read_movielens(path, variant, as_frame)
