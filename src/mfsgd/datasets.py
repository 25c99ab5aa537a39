"""Data sets: synthetic ratings with the shape of real ones."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._idmap import sorted_unique
from ._validation import check_float, check_int, check_random_state

__all__ = ["make_ratings", "load_csv"]


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
    rank ``rank`` (``u . v`` has standard deviation about 0.8, biases 0.3 and 0.5).
    Pairs are distinct. User activity follows a power law and item popularity a
    Zipf-like law, as in real rating data: most users rate a few items, a few rate
    very many. Everything is vectorised (20 M ratings take a few seconds).

    Parameters
    ----------
    n_users, n_items : int
        Number of users and items (ids ``0 .. n-1``; some may receive no rating).
    n_ratings : int
        Number of distinct (user, item) pairs, at most ``n_users * n_items``.
    rank : int, default 10
        Rank of the true factor matrices.
    noise : float, default 0.5
        Standard deviation of the Gaussian noise: the best achievable test RMSE.
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
    rank = check_int("rank", rank)
    noise = check_float("noise", noise)
    if n_ratings > n_users * n_items:
        raise ValueError(f"n_ratings must be at most n_users * n_items = {n_users * n_items}; "
                         f"got {n_ratings}.")
    if n_users > 2**31 - 1 or n_items > 2**31 - 1:
        raise ValueError("n_users and n_items must be below 2**31.")
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
    step = 1 << 20  # bounded temporaries for the row-wise dot products
    for s in range(0, n_ratings, step):
        u, i = users[s:s + step], items[s:s + step]
        dots = np.einsum("ij,ij->i", P[u], Q[i])
        ratings[s:s + step] = mu + bu[u] + bi[i] + dots
    ratings += rng.normal(0.0, noise, size=n_ratings).astype(np.float32) if noise > 0 else 0

    if as_frame == "auto":
        try:
            import pandas  # noqa: F401
            as_frame = True
        except ImportError:
            as_frame = False
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


_USER_NAMES = ("user", "userid", "user_id", "users", "uid", "customer_id")
_ITEM_NAMES = ("item", "itemid", "item_id", "items", "movieid", "movie_id", "iid", "product_id",
               "bookid", "book_id", "isbn")
_RATING_NAMES = ("rating", "ratings", "score", "stars", "value", "book-rating")


def _sniff(path: str, sep: str | None) -> tuple[str, list[str]]:
    import csv

    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        head = f.read(1 << 16)
    lines = [ln for ln in head.splitlines() if ln.strip()][:20]
    if not lines:
        raise ValueError(f"{path} is empty; expected lines of user, item, rating.")
    if sep is None:
        try:
            sep = csv.Sniffer().sniff("\n".join(lines), delimiters=",\t;| ").delimiter
        except csv.Error:
            sep = "\t" if "\t" in lines[0] else ","
    return sep, lines


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def load_csv(path: Any, *, columns: Any = None, sep: str | None = None,
             header: Any = "infer", as_frame: bool | str = "auto") -> Any:
    """Read a delimited ratings file.

    Parameters
    ----------
    path : str or PathLike
        The file.
    columns : sequence of three names or 0-based positions, optional
        The user, item and rating columns. Without it, a header naming
        ``userId, movieId, rating`` or ``user, item, rating`` (and common variants)
        is recognised; a file without header uses columns 0, 1, 2.
    sep : str, optional
        Separator; sniffed from the first lines when omitted (comma, tab, semicolon,
        pipe or space).
    header : "infer", True or False
        Whether the first line is a header; "infer" says yes when its rating field is
        not a number.
    as_frame : bool or "auto"
        DataFrame (columns user, item, rating) or a tuple of arrays.

    Notes
    -----
    With pandas installed the file is read by its C parser (about 1 s and 40 bytes
    of peak memory per rating-line beyond the result, per 10 M lines); without
    pandas, by NumPy for numeric ids or the csv module for string ids (slower).
    """
    import os

    spath = os.fspath(path)
    if not os.path.exists(spath):
        raise FileNotFoundError(f"no such file: {spath}")
    sep, lines = _sniff(spath, sep)
    first = lines[0].split(sep) if sep != " " else lines[0].split()
    if header == "infer":
        pos_r = 2 if columns is None or isinstance(columns[2], str) else int(columns[2])
        has_header = pos_r < len(first) and not _is_number(first[pos_r].strip().strip('"'))
        if columns is not None and all(isinstance(c, str) for c in columns):
            has_header = True
    else:
        has_header = bool(header)
    names = [c.strip().strip('"') for c in first]
    if columns is None:
        if has_header:
            low = [n.lower() for n in names]
            pos = []
            for role, cands in (("user", _USER_NAMES), ("item", _ITEM_NAMES),
                                ("rating", _RATING_NAMES)):
                hit = next((low.index(c) for c in cands if c in low), None)
                if hit is None:
                    raise ValueError(f"{spath}: no {role} column among {names}; pass "
                                     f"columns=(user, item, rating) names or positions.")
                pos.append(hit)
        else:
            pos = [0, 1, 2]
    else:
        if len(columns) != 3:
            raise ValueError(f"columns must name 3 columns (user, item, rating); got {columns!r}.")
        pos = []
        for c in columns:
            if isinstance(c, str) and not c.isdigit():
                if not has_header or c not in names:
                    raise ValueError(f"{spath}: no column {c!r}; columns are {names}.")
                pos.append(names.index(c))
            else:
                pos.append(int(c))
        if max(pos) >= len(names):
            raise ValueError(f"{spath}: column position {max(pos)} is out of range; lines have "
                             f"{len(names)} fields.")
    try:
        import pandas as pd
    except ImportError:
        pd = None
    if pd is not None:
        df = pd.read_csv(spath, sep=sep if sep != " " else r"\s+", header=0 if has_header else None,
                         usecols=pos, engine="c" if sep != " " else "python")
        cols = [df.columns[sorted(pos).index(p)] for p in pos]
        users, items = df[cols[0]].to_numpy(), df[cols[1]].to_numpy()
        ratings = pd.to_numeric(df[cols[2]], errors="coerce").to_numpy(dtype=np.float64)
    else:
        users, items, ratings = _read_numpy(spath, sep, has_header, pos)
    bad = ~np.isfinite(ratings)
    if bad.any():
        line = int(np.flatnonzero(bad)[0]) + 1 + int(has_header)
        raise ValueError(f"{spath}: line {line} has a missing or non-numeric rating.")
    ratings = ratings.astype(np.float32)
    if as_frame == "auto":
        as_frame = pd is not None
    if as_frame:
        from ._compat import require_pandas
        pdm = require_pandas("load_csv(as_frame=True)")
        return pdm.DataFrame({"user": users, "item": items, "rating": ratings})
    return users, items, ratings


def _read_numpy(path: str, sep: str, has_header: bool, pos: list[int]):
    delim = None if sep == " " else sep
    try:
        a = np.loadtxt(path, delimiter=delim, skiprows=int(has_header), usecols=pos,
                       dtype=np.float64, ndmin=2)
        u, i = a[:, 0], a[:, 1]
        if np.array_equal(u, np.round(u)) and np.array_equal(i, np.round(i)):
            return u.astype(np.int64), i.astype(np.int64), a[:, 2]
    except ValueError:
        pass
    import csv

    users, items, ratings = [], [], []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter=sep) if sep != " " else (ln.split() for ln in f)
        if has_header:
            next(reader, None)
        for row in reader:
            if not row:
                continue
            users.append(row[pos[0]])
            items.append(row[pos[1]])
            try:
                ratings.append(float(row[pos[2]]))
            except ValueError:
                ratings.append(np.nan)
    return np.array(users), np.array(items), np.array(ratings, dtype=np.float64)
