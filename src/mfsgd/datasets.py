"""Data sets: synthetic ratings with the shape of real ones."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._idmap import sorted_unique
from ._validation import check_float, check_int, check_random_state

__all__ = ["make_ratings"]


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
