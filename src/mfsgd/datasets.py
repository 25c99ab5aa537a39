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
    With pandas installed the file is read by pyarrow's multi-threaded parser when
    pyarrow is installed, else by pandas' C parser; peak memory is about twice the
    result (the parsed frame, then the arrays taken from it). Without pandas, NumPy
    reads numeric ids and the csv module string ids (slower).
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
        engine = "python" if sep == " " else "c"
        if sep != " ":
            try:
                import pyarrow  # noqa: F401  (multi-threaded parser, ~3x the C engine)
                engine = "pyarrow"
            except ImportError:
                pass
        kw = dict(sep=sep if sep != " " else r"\s+", header=0 if has_header else None,
                  usecols=pos)
        try:
            df = pd.read_csv(spath, engine=engine, **kw)
        except Exception:  # pyarrow refuses some files the C parser reads (e.g. ragged)
            if engine != "pyarrow":
                raise
            df = pd.read_csv(spath, engine="c", **kw)
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
    """
    import os

    if data_home is None:
        data_home = os.environ.get("MFSGD_DATA") or None
    if data_home is None:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        data_home = os.path.join(cache, "mfsgd")
    path = os.path.abspath(os.path.expanduser(os.fspath(data_home)))
    os.makedirs(path, exist_ok=True)
    return path


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
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
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
        req = urllib.request.Request(url, headers={"User-Agent": f"mfsgd/{__version__}"})
        print(f"mfsgd: downloading {url} to {path}", file=sys.stderr, flush=True)
        try:
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

    Notes
    -----
    The zip ``ml-<variant>.zip`` is fetched from ``MOVIELENS_BASE_URL``
    (https://files.grouplens.org/datasets/movielens/; the environment variable
    ``MFSGD_MOVIELENS_URL`` overrides it) into the cache folder, streamed to a
    temporary file that is renamed into place only once complete and verified, so an
    interrupted download never leaves a partial file. A cached zip is never downloaded
    again. Every load verifies its SHA-256: against the official checksums built into
    mfsgd; for a variant without one, against the checksum recorded in
    ``<zip>.sha256`` when the file was first seen (trust on first use). A file placed
    in the cache folder by hand is verified the same way. Only the ratings file is
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
    if as_frame == "auto":
        try:
            import pandas  # noqa: F401
            as_frame = True
        except ImportError:
            as_frame = False
    folder = get_data_home(data_home)
    path = os.path.join(folder, _MOVIELENS[variant][0])
    digest = None
    if not os.path.exists(path):
        url = _movielens_url(variant)
        if not download:
            raise FileNotFoundError(f"{path} does not exist and download=False. Pass "
                                    f"download=True, or place the file there by hand. "
                                    f"{_manual_hint(url, path)}")
        digest = _download(url, path, _MOVIELENS_SHA256.get(variant))
    _verify(path, variant, digest)
    return _read_movielens(path, variant, bool(as_frame))
