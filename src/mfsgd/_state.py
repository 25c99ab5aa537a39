"""The fitted state: what fitting or loading produces, and how its arrays are made.

Owns ``FittedState`` (replaced as a whole, never mutated), the padded row width and the
cache-line-aligned allocation of factor matrices, the initial rows, row growth (for
``partial_fit``, ``fold_in`` and loading), and the seen-items record (CSR of the items
each user rated in training). Below ``_training``: the epoch driver allocates through
here, and ``persistence``, ``_dask`` and ``_recommend`` build states through here, so
none of them needs the estimator module.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _sgd
from ._idmap import IdMap, idmap_from_ids

_MISSING = object()

#: The key of a ranking model's user fold-in start, derived from the items alone (see
#: ``_recommend.softmax_start``).
SOFTMAX_START = "softmax_start"


def padded_width(k: int, dtype: Any) -> int:
    """Row width rounded up to whole 64-byte cache lines. The padding columns start at
    zero and stay zero under every update (0 + lr (e 0 - reg 0) = 0), so they change no
    prediction; they make each row start on a cache line and let the kernel's SIMD loops
    run without remainder iterations."""
    per_line = 64 // np.dtype(dtype).itemsize
    return -(-k // per_line) * per_line


def aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised array whose data starts on a 64-byte cache line. NumPy only
    promises 16 bytes; with padded rows this puts every factor row on whole lines, and
    the kernel then runs its variant for aligned rows of a fixed width (about 5% faster
    at k = 64 from the alignment alone, measured in bench/RESULTS.md section 2)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buf = np.empty(nbytes + 64, dtype=np.uint8)
    off = (-buf.ctypes.data) % 64
    return buf[off:off + nbytes].view(dtype).reshape(shape)


def aligned_concat(parts: list[np.ndarray]) -> np.ndarray:
    """np.concatenate along axis 0 into a cache-line-aligned array."""
    out = aligned_empty((sum(len(x) for x in parts), *parts[0].shape[1:]), parts[0].dtype)
    np.concatenate(parts, out=out)
    return out


class _Room:
    """A buffer with spare rows beyond those its views show, and how many rows states
    have claimed: the rows beyond ``claimed`` belong to no state yet."""

    __slots__ = ("buffer", "claimed")

    def __init__(self, buffer: np.ndarray, claimed: int) -> None:
        self.buffer, self.claimed = buffer, claimed


# id(view) -> (weak reference to the view, its _Room), for the arrays ``appended`` made.
# An entry goes when its view does (weakref.finalize); ndarrays are not hashable, so this
# is keyed by id and checked against the reference.
_ROOMS: dict[int, tuple[weakref.ref, _Room]] = {}
_ROOM_LOCK = threading.Lock()


def _room_of(arr: np.ndarray) -> _Room | None:
    entry = _ROOMS.get(id(arr))
    return entry[1] if entry is not None and entry[0]() is arr else None


def appended(arr: np.ndarray, extra: np.ndarray) -> np.ndarray:
    """``arr`` followed by the rows ``extra`` (same dtype and row shape), aligned like
    every factor matrix, for a model that grows a few rows at a time (``fold_in`` of new
    users, one per call, in a streaming job).

    The result is a view of a buffer with room for more rows. When ``arr`` is itself
    such a view, the longest of its buffer that any state holds, and the rows fit, they
    are written into the spare rows, so ``arr`` is not copied (at 100 k users x 64 that
    copy was half of a one-user fold-in's time). ``arr``'s own rows are never written:
    a state or a serving thread that holds ``arr`` sees it unchanged, and the longer view
    is the only one that shows the new rows. Otherwise (a fitted or loaded array, or one
    a longer view has already grown past: two models that shared a state and grew apart)
    ``arr`` and ``extra`` are copied into a new buffer with room for an eighth more.
    """
    n, m = len(arr), len(extra)
    with _ROOM_LOCK:  # claim the rows: two threads growing one array get different rows
        room = _room_of(arr)
        if room is not None and room.claimed == n and n + m <= len(room.buffer):
            room.claimed = n + m
        else:
            room = None
    if room is None:
        buf = aligned_empty((n + m + n // 8 + 64, *arr.shape[1:]), arr.dtype)
        buf[:n] = arr
        room = _Room(buf, n + m)
    room.buffer[n:n + m] = extra
    out = room.buffer[:n + m]
    key = id(out)
    _ROOMS[key] = (weakref.ref(out), room)
    weakref.finalize(out, _ROOMS.pop, key, None)
    return out


def init_rows(rng: np.random.Generator, n: int, k: int, dtype: Any, init_std: float,
              nonnegative: bool) -> np.ndarray:
    """n factor rows drawn N(0, init_std^2) (absolute values when nonnegative), padded
    with zeros to ``padded_width`` and aligned."""
    out = aligned_empty((n, padded_width(k, dtype)), dtype)
    out[:, k:] = 0
    # Drawn in chunks of rows (the same numbers as one draw of n x k): a float64
    # temporary of the whole matrix would be the peak of a large fit (512 MiB for
    # 1 M users at k = 64).
    step = max(1, (1 << 20) // max(k, 1))
    for s in range(0, n, step):
        a = rng.normal(0.0, init_std, size=(min(step, n - s), k))
        if nonnegative:
            np.abs(a, out=a)
        out[s:s + len(a), :k] = a
    return out


def grown(rows: np.ndarray, extra: np.ndarray | int) -> np.ndarray:
    """``rows`` followed by ``extra`` (rows of the same width, or a count of zero rows),
    aligned like every factor matrix (1-D bias vectors grow the same way)."""
    if isinstance(extra, (int, np.integer)):
        extra = np.zeros((int(extra), *rows.shape[1:]), rows.dtype)
    return aligned_concat([rows, extra.astype(rows.dtype, copy=False)])


def padded(a: np.ndarray) -> np.ndarray:
    """A loaded (n, k) factor matrix in the training layout: padded and aligned; ``a``
    itself when it has that layout already (e.g. mapped from a file, read-only: nothing
    writes a state's arrays in place, fits and fold-ins make new ones)."""
    if a.shape[1] == padded_width(a.shape[1], a.dtype) and a.flags.c_contiguous and \
            a.ctypes.data % 64 == 0:
        return a
    out = aligned_empty((a.shape[0], padded_width(a.shape[1], a.dtype)), a.dtype)
    out[:, a.shape[1]:] = 0
    out[:, :a.shape[1]] = a
    return out


def counts_of(indices: np.ndarray, n: int) -> np.ndarray:
    """Occurrences of each index 0..n-1 (np.bincount would make an int64 copy first)."""
    counts = np.zeros(n, dtype=np.int64)
    _sgd.count_keys(indices, counts)
    return counts


def seen_csr(uidx: np.ndarray, iidx: np.ndarray, n_users: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-user rated items as CSR (indptr int64, items int32): user u rated
    items[indptr[u]:indptr[u+1]]. Duplicates are kept (harmless for masking)."""
    uidx = np.ascontiguousarray(uidx, dtype=np.int32)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(counts_of(uidx, n_users), out=indptr[1:])
    items = np.empty(uidx.size, dtype=np.int32)
    _sgd.scatter_by_key(uidx, np.ascontiguousarray(iidx, dtype=np.int32), indptr[:-1].copy(),
                        items)
    return indptr, items


def merge_seen(indptr: np.ndarray, items: np.ndarray, n_users: int, uidx: np.ndarray,
               iidx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR of old pairs plus new (user, item) pairs, for a model that may have grown to
    ``n_users``: each user's new items after their old ones, in the order given (the
    CSR of ``seen_csr`` over the old pairs then the new). The new items are inserted in
    one pass (``np.insert``: a copy of the record, no sort of it), so a fold-in of a few
    rows costs a memory copy, not a rebuild (8.6 -> about 1 ms at 2 M pairs). When every
    pair is of a user beyond the old ones (a fold-in of new users), their items go at the
    end of the record, which ``appended`` grows without the copy."""
    n_old = len(indptr) - 1
    ip = indptr.astype(np.int64, copy=False)
    uidx = np.asarray(uidx)
    order = np.argsort(uidx, kind="stable")
    su = uidx[order].astype(np.int64, copy=False)
    if n_users > n_old and su.size and su[0] >= n_old:
        tail = ip[-1] + np.cumsum(counts_of((su - n_old).astype(np.int32), n_users - n_old))
        return (appended(ip, tail),
                appended(items, np.asarray(iidx, dtype=np.int32)[order]))
    if n_users > n_old:
        ip = np.concatenate([ip, np.full(n_users - n_old, ip[-1], np.int64)])
    if uidx.size == 0:
        return ip.copy(), items.copy()
    new_items = np.insert(items, ip[su + 1], np.asarray(iidx, dtype=np.int32)[order])
    out = ip.copy()
    out[1:] += np.cumsum(counts_of(su.astype(np.int32), n_users))
    return out, new_items


def _copies(csr: tuple[np.ndarray, np.ndarray], ask: np.ndarray, keys: np.ndarray,
            n_items: np.int64) -> np.ndarray:
    """How many times the CSR ``csr`` (per-user items) holds each pair ``keys`` (user *
    n_items + item), whose users are among the sorted unique ``ask``."""
    indptr, seen = csr
    lens = indptr[ask + 1] - indptr[ask]
    starts = np.repeat(indptr[ask] - np.cumsum(lens) + lens, lens) + np.arange(lens.sum())
    old_keys, old_n = np.unique(np.repeat(ask, lens) * n_items + seen[starts],
                                return_counts=True)
    held = np.zeros(keys.size, dtype=np.int64)
    if old_keys.size:
        at = np.minimum(np.searchsorted(old_keys, keys), old_keys.size - 1)
        held = np.where(old_keys[at] == keys, old_n[at], 0)
    return held


def unrecorded(st: FittedState, users: np.ndarray, items: np.ndarray,
               counted: str | None = None, low: bool = False) -> np.ndarray:
    """Which (user row, item row) pairs (a row -1: a new id) ``st``'s seen-items record
    does not hold yet, as a mask: a pair given m times that the record holds m0 times
    marks its last m - m0 copies (none if m <= m0). For fold_in, which recomputes a
    known id from the rows given ("pass all of them"): those rows join the record and
    the counts once, and only the rows beyond them are new.

    With ``min_rating`` the record also holds the rows below it, which are no
    interactions, and the model keeps them apart too (``st.low()``). ``counted`` ("user"
    or "item": the side fold_in recomputes): the rows are interactions, so m0 is the
    pair's interaction copies (recorded copies minus low ones), at most the refolded
    id's count (an item fold-in counts the rows of a user without interactions for the
    item only: a later user fold-in counts them for that user). ``low``: the rows are
    below min_rating, so m0 is the pair's low copies. A state loaded from a file of
    format 4 does not know which recorded rows were low: there m0 counts every copy,
    still capped by the count, and a pair re-rated from below min_rating to above it can
    go uncounted.
    """
    out = np.ones(users.size, dtype=bool)
    known = np.flatnonzero((users >= 0) & (items >= 0))
    if st.seen_indptr is None or known.size == 0:
        return out
    users, items = users[known].astype(np.int64), items[known].astype(np.int64)
    n_items = np.int64(len(st.item_map))
    keys = users * n_items + items
    ask = np.unique(users)
    if low:
        held = _copies(st.low(), ask, keys, n_items) if st.low_indptr is not None else \
            _copies(st.seen(), ask, keys, n_items)
    else:
        held = _copies(st.seen(), ask, keys, n_items)
        if st.low_indptr is not None:
            held -= _copies(st.low(), ask, keys, n_items)
        if counted is not None and st.user_counts is not None and st.item_counts is not None:
            own = st.user_counts[users] if counted == "user" else st.item_counts[items]
            held = np.minimum(held, own)
    # each given copy's place among the copies of its pair, in the order given
    srt = np.argsort(keys, kind="stable")
    ks = keys[srt]
    first = np.r_[0, np.flatnonzero(ks[1:] != ks[:-1]) + 1]
    place = np.arange(ks.size) - np.repeat(first, np.diff(np.r_[first, ks.size]))
    copy_no = np.empty_like(place)
    copy_no[srt] = place
    out[known] = copy_no >= held
    return out


def interaction_pairs(st: FittedState) -> tuple[np.ndarray, np.ndarray]:
    """The (user rows, item rows) of ``st``'s recorded interactions, one per copy: the
    seen record without the rows below min_rating (the whole record when the state
    keeps no low rows apart)."""
    indptr, items = st.seen()
    users = np.repeat(np.arange(len(indptr) - 1, dtype=np.int32), np.diff(indptr))
    if st.low_indptr is None or st.low_items.size == 0:
        return users, items
    keep = unrecorded(st, users, items, low=True)  # each pair's copies beyond its low ones
    return users[keep], items[keep]


def no_low() -> dict[str, np.ndarray]:
    """The low-row fields of a state that keeps its low rows apart and has none yet."""
    return {"low_indptr": np.zeros(1, np.int64), "low_items": np.empty(0, np.int32)}


def plus_counts(counts: np.ndarray | None, rows: np.ndarray, n: int) -> np.ndarray:
    """``counts`` (int64; None: none yet) grown with zeros to ``n`` entries, plus one per
    entry of ``rows`` (indices below ``n``)."""
    out = np.zeros(n, np.int64)
    if counts is not None:
        out[:counts.size] = counts
    out += counts_of(np.ascontiguousarray(rows, dtype=np.int32), n)
    return out


def fresh_accumulators(n_users: int, n_items: int, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """AdaGrad's accumulators of new rows: 1 (as LibMF's), so a row's first step is the
    base rate itself."""
    return np.ones(n_users, dtype), np.ones(n_items, dtype)


@dataclass(frozen=True)
class FittedState:
    """Everything fitting or loading produces; replaced as a whole, never mutated, so
    a concurrent ``predict`` sees either the old model or the new one, never a mix."""

    global_mean: float
    user_factors: np.ndarray
    item_factors: np.ndarray
    user_bias: np.ndarray
    item_bias: np.ndarray
    user_map: IdMap
    item_map: IdMap
    rating_range: tuple[float, float]
    biased: bool
    n_factors: int  # factor arrays may be wider (zero padding); see padded_width
    history: list[dict[str, Any]] = field(default_factory=list)
    n_epochs: int = 0
    best_epoch: int | None = None
    n_blocks: int = 1
    seen_indptr: np.ndarray | None = None  # CSR of items each user rated in training
    seen_items: np.ndarray | None = None
    # The seen rows that are no interactions (a CSR like seen's, which also holds them):
    # the rows min_rating dropped, and an item fold-in's rows of users without
    # interactions. The interactions are the seen record minus these. Its indptr may be
    # shorter than n_users + 1 (users added since have none: see low()). None: no
    # min_rating, or a file of format 4, which does not say which seen rows were low.
    low_indptr: np.ndarray | None = None
    low_items: np.ndarray | None = None
    loss: str = "squared"  # "bpr", "warp", "softmax": a ranking model (no mu, no b_i)
    # Training interactions per item and per user row (int64), when the seen record
    # holds more than them: the rows min_rating dropped are seen but are no interactions,
    # and a user known only from such rows has a count of 0 (served as an unknown user).
    # None: the seen record's counts (support).
    item_counts: np.ndarray | None = None
    user_counts: np.ndarray | None = None
    # AdaGrad's accumulator per user and item row after the last training with
    # adagrad=True (None otherwise). Rows added later (fold_in) have none yet: see
    # accumulators().
    user_accum: np.ndarray | None = None
    item_accum: np.ndarray | None = None

    def derived(self, key: Any, build: Callable[[], Any],
                evict: Callable[[Any], bool] | None = None) -> Any:
        """``build()``, computed on first use and kept with this state: arrays derived
        from the fitted arrays that several queries reuse (``similar_items``' float64
        factors and norms). The state is never mutated and every fit, partial_fit,
        fold_in or load makes a new one, so what is kept here never outlives the arrays
        it was derived from. Not a field: pickling, ``copy.deepcopy`` and ``save`` leave
        it out (see ``__getstate__``), and ``dataclasses.replace`` starts without it.
        ``evict``: the keys a new entry replaces (an array built per parameter value, of
        which only the last is kept)."""
        cache = self.__dict__.get("_derived")
        if cache is not None:  # (one look-up: another thread may evict between two)
            value = cache.get(key, _MISSING)
            if value is not _MISSING:
                return value
        with self._lock():
            cache = self.__dict__.setdefault("_derived", {})
            if key not in cache:
                value = build()
                for old in [k for k in cache if evict is not None and evict(k)]:
                    del cache[old]
                cache[key] = value
            return cache[key]

    def _lock(self) -> Any:
        """The state's lock for its derived arrays. One per state (frozen: set through
        __dict__; setdefault is atomic), so two threads asking at once build an array
        once, not twice the memory, while other models' queries (a service may hold
        several) never wait for this build."""
        return self.__dict__.get("_derived_lock") or \
            self.__dict__.setdefault("_derived_lock", threading.RLock())

    def derived_where(self, keep: Callable[[Any], bool]) -> dict[Any, Any]:
        """The derived arrays this state has made whose key passes ``keep`` (nothing is
        built): what a state made from this one may take over (see :meth:`keeping`).
        Read under the state's lock: another thread may be adding one."""
        with self._lock():
            return {k: v for k, v in self.__dict__.get("_derived", {}).items() if keep(k)}

    def derived_of_side(self, side: str) -> dict[Any, Any]:
        """The derived arrays this state has made that depend on ``side``'s arrays only
        ("user" or "item": their float64 rows, extremes, and for the items a ranking user
        fold-in's start), which a state whose other side alone changed may take over."""
        keys = {("similarity", side), ("extremes", f"{side}_factors"),
                ("extremes", f"{side}_bias")}
        return self.derived_where(lambda key: key in keys
                                  or (side == "item" and key[0] == SOFTMAX_START))

    def keeping(self, entries: dict[Any, Any]) -> FittedState:
        """This state (new, not yet shared) with ``entries`` as its derived arrays: what
        a state derived from another may take over unchanged (its arrays are the same
        objects). Returns self."""
        if entries:
            self.__dict__["_derived"] = dict(entries)
        return self

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_derived", None)  # rebuilt on demand; a pickle or a copy holds none
        state.pop("_derived_lock", None)
        return state

    @property
    def kernel_mu(self) -> float:
        return self.global_mean if self.biased else 0.0

    def factors(self, which: str) -> np.ndarray:
        """The user-facing (n, n_factors) view, without the padding columns."""
        return getattr(self, which)[:, : self.n_factors]

    def accumulators(self, n_users: int | None = None, n_items: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
        """AdaGrad's accumulators for ``n_users`` and ``n_items`` rows (default: the
        model's), in the factors' dtype: the stored ones, then 1 for every row without
        one (rows added since, or all rows when the state has none)."""
        n_users = len(self.user_map) if n_users is None else n_users
        n_items = len(self.item_map) if n_items is None else n_items
        out = fresh_accumulators(n_users, n_items, self.user_factors.dtype)
        for acc, old in zip(out, (self.user_accum, self.item_accum), strict=True):
            if old is not None:
                acc[:len(old)] = old
        return out

    def idle(self, rows: np.ndarray) -> np.ndarray:
        """Which user ``rows`` are served the most popular items: unknown ones (-1), and
        known users without a training interaction (count 0: known only from rows that
        ``min_rating`` dropped, whose factors are zero)."""
        out = rows < 0
        if self.user_counts is not None:
            out |= self.user_counts[np.maximum(rows, 0)] == 0
        return out

    def counted(self, users: np.ndarray, items: np.ndarray, n_users: int,
                n_items: int) -> dict[str, np.ndarray]:
        """``user_counts`` and ``item_counts`` grown to ``n_users`` and ``n_items`` rows
        plus one per (user, item) row given: the fields to replace, or none when the
        state keeps no counts of its own."""
        if self.user_counts is None or self.item_counts is None:
            return {}
        n_old = self.user_counts.size
        if users.size == 0 or int(users.min()) >= n_old:  # no old user's count changes
            uc = self.user_counts if n_users == n_old else appended(
                self.user_counts,
                counts_of((np.asarray(users) - n_old).astype(np.int32), n_users - n_old))
        else:
            uc = plus_counts(self.user_counts, users, n_users)
        ic = self.item_counts if items.size == 0 and n_items == self.item_counts.size else \
            plus_counts(self.item_counts, items, n_items)
        return {"user_counts": uc, "item_counts": ic}

    def seen(self) -> tuple[np.ndarray, np.ndarray]:
        """The seen-items CSR; an empty one (every user rated nothing) when there is none."""
        if self.seen_indptr is None:
            return np.zeros(len(self.user_map) + 1, np.int64), np.empty(0, np.int32)
        return self.seen_indptr, self.seen_items

    def low(self) -> tuple[np.ndarray, np.ndarray]:
        """The CSR of the rows below min_rating (an empty one when there is none), its
        indptr covering every user of the model."""
        n = len(self.user_map) + 1
        if self.low_indptr is None:
            return np.zeros(n, np.int64), np.empty(0, np.int32)
        ip = self.low_indptr
        if ip.size < n:
            ip = np.concatenate([ip, np.full(n - ip.size, ip[-1], np.int64)])
        return ip, self.low_items

    def with_low(self, pairs: tuple[np.ndarray, np.ndarray] | None,
                 n_users: int | None = None) -> dict[str, np.ndarray]:
        """The low_indptr and low_items fields with these (user rows, item rows) pairs
        added, for ``n_users`` users (default: the state's): none when the state does not
        keep its low rows apart."""
        if self.low_indptr is None:
            return {}
        none = np.empty(0, np.int32)
        ip, it = merge_seen(*self.low(), len(self.user_map) if n_users is None else n_users,
                            *(pairs or (none, none)))
        return {"low_indptr": ip, "low_items": it}

    def support(self, side: str) -> np.ndarray | None:
        """Training interactions per user row (side "user") or item row (side "item");
        None for a state without a seen-items record or counts. ``user_counts`` and
        ``item_counts``, when set (weighted counts, or the rows ``min_rating`` kept), win
        over the seen record's."""
        counts = self.user_counts if side == "user" else self.item_counts
        if counts is not None:
            return counts
        if self.seen_indptr is None:
            return None

        def build() -> np.ndarray:  # O(ratings) for the items: kept (unknown users' lists)
            out = np.diff(self.seen_indptr) if side == "user" else \
                counts_of(self.seen_items, len(self.item_map))
            out.flags.writeable = False  # shared by every caller: never written
            return out

        return self.derived(("support", side), build)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], **fields: Any) -> FittedState:
        """A state from stored (unpadded) arrays: user_factors, item_factors, user_bias,
        item_bias, user_ids, item_ids, seen_indptr, seen_items, and user_accum and
        item_accum, user_counts and item_counts, low_indptr and low_items when present;
        ``fields`` gives the rest."""
        return cls(user_factors=padded(arrays["user_factors"]),
                   item_factors=padded(arrays["item_factors"]),
                   n_factors=arrays["user_factors"].shape[1],
                   user_bias=arrays["user_bias"], item_bias=arrays["item_bias"],
                   user_map=idmap_from_ids(arrays["user_ids"]),
                   item_map=idmap_from_ids(arrays["item_ids"]),
                   seen_indptr=arrays["seen_indptr"], seen_items=arrays["seen_items"],
                   user_accum=arrays.get("user_accum"), item_accum=arrays.get("item_accum"),
                   user_counts=arrays.get("user_counts"),
                   item_counts=arrays.get("item_counts"),
                   low_indptr=arrays.get("low_indptr"), low_items=arrays.get("low_items"),
                   **fields)
