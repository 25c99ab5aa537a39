"""IdMap: raw user/item ids (ints or strings) <-> contiguous int32 indices, vectorised.

Ids are labels, not indices: negative or huge integers are fine. The ids are kept
sorted, so a look-up is one ``np.searchsorted`` and index ``k`` belongs to ``ids[k]``.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ._validation import as_1d

MAX_IDS = 2**31 - 1  # indices are int32 in the kernel


def normalize_ids(name: str, values: Any) -> np.ndarray:
    """Return a 1-D array of int64/uint64 or str ids, or raise naming the problem."""
    arr = as_1d(name, values)
    kind = arr.dtype.kind
    if kind in "iu":
        if kind == "u" and arr.dtype.itemsize == 8 and arr.size and arr.max() > np.iinfo(np.int64).max:
            return arr.astype(np.uint64, copy=False)
        return arr.astype(np.int64, copy=False)
    if kind == "b":
        raise TypeError(f"{name} must be integers or strings; got booleans.")
    if kind == "f":
        if arr.size and not np.isfinite(arr).all():
            pos = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise ValueError(f"{name} has a missing or non-finite id (first at position {pos}: "
                             f"{arr[pos]!r}); drop those rows before fit.")
        as_int = arr.astype(np.int64)
        if not np.array_equal(as_int, arr):
            raise TypeError(f"{name} must be integers or strings; got non-integral floats "
                            f"(for example {arr[np.flatnonzero(as_int != arr)[0]]!r}).")
        return as_int
    if kind in "US":
        return arr.astype(str, copy=False) if kind == "S" else arr
    if kind == "O":
        return _normalize_objects(name, arr)
    raise TypeError(f"{name} must be integers or strings; got dtype {arr.dtype}.")


def _normalize_objects(name: str, arr: np.ndarray) -> np.ndarray:
    types = {type(v) for v in arr.tolist()}
    if not types:
        return np.empty(0, dtype=np.int64)
    is_str = all(issubclass(t, str) for t in types)
    is_int = all(issubclass(t, numbers.Integral) and not issubclass(t, bool) for t in types)
    if is_str:
        return arr.astype(str)
    if is_int:
        try:
            return arr.astype(np.int64)
        except OverflowError:
            raise ValueError(f"{name} has integer ids outside the 64-bit range.") from None
    missing = [i for i, v in enumerate(arr.tolist())
               if v is None or (isinstance(v, float) and v != v)]
    if missing:
        raise ValueError(f"{name} has {len(missing)} missing ids (None or NaN; first at position "
                         f"{missing[0]}); drop those rows before fit.")
    names = sorted(t.__name__ for t in types)
    raise TypeError(f"{name} mixes id types ({', '.join(names)}); use one type for all ids, "
                    f"e.g. convert them with .astype(str).")


def sorted_unique(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values. (np.unique on numpy 2.4 took 22 s on 20 M int64 here, a plain
    sort 1.7 s: see bench notes; this is sort + mask.)"""
    s = np.sort(a)
    if s.size == 0:
        return s
    keep = np.empty(s.size, dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def unique_inverse(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and the int32 index of each element among them."""
    if a.dtype.kind in "iu" and a.size:
        lo, hi = int(a.min()), int(a.max())
        if hi - lo <= 2 * a.size + 1_000_000:
            # Dense integer ids (the common case): a look-up table, O(n) instead of a sort.
            present = np.zeros(hi - lo + 1, dtype=bool)
            shifted = (a - lo) if lo != 0 else a
            present[shifted] = True
            ids = np.flatnonzero(present).astype(a.dtype) + a.dtype.type(lo)
            if ids.size > MAX_IDS:
                return ids, np.empty(0, dtype=np.int32)
            lut = np.cumsum(present, dtype=np.int64).astype(np.int32) - 1
            return ids, lut[shifted]
    order = np.argsort(a, kind="stable")
    s = a[order]
    if s.size == 0:
        return s, np.empty(0, dtype=np.int32)
    new = np.empty(s.size, dtype=bool)
    new[0] = True
    np.not_equal(s[1:], s[:-1], out=new[1:])
    ids = s[new]
    if ids.size > MAX_IDS:
        return ids, np.empty(0, dtype=np.int32)  # caller reports the count
    inverse = np.empty(a.size, dtype=np.int32)
    inverse[order] = np.cumsum(new, dtype=np.int64).astype(np.int32) - 1
    return ids, inverse


class IdMap:
    """Sorted unique ids with vectorised look-up."""

    __slots__ = ("ids",)

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids

    @classmethod
    def fit(cls, name: str, values: Any) -> tuple[IdMap, np.ndarray]:
        """Map raw ids; return the map and the int32 index of every value."""
        raw = normalize_ids(name, values)
        ids, inverse = unique_inverse(raw)
        if ids.size > MAX_IDS:
            raise ValueError(f"{name} has {ids.size} distinct ids; at most {MAX_IDS} are supported.")
        return cls(ids), inverse

    def __len__(self) -> int:
        return int(self.ids.size)

    def lookup(self, name: str, values: Any) -> np.ndarray:
        """int32 indices of raw ids; -1 where an id is unknown."""
        raw = normalize_ids(name, values)
        if raw.size == 0:
            return np.empty(0, dtype=np.int32)
        mine_str = self.ids.dtype.kind == "U"
        if mine_str != (raw.dtype.kind == "U"):
            want = "strings" if mine_str else "integers"
            raise TypeError(f"{name}: this model's ids are {want}; got {raw.dtype.name} ids.")
        if self.ids.size == 0:
            return np.full(raw.size, -1, dtype=np.int32)
        pos = np.searchsorted(self.ids, raw)
        pos_c = np.minimum(pos, self.ids.size - 1)
        found = self.ids[pos_c] == raw
        return np.where(found, pos_c, -1).astype(np.int32)

    def extended(self, name: str, values: Any) -> tuple[IdMap, np.ndarray]:
        """A map that also holds the new ids among ``values`` (appended after the old ones,
        so existing indices keep their meaning), and the indices of ``values`` in it."""
        raw = normalize_ids(name, values)
        idx = self.lookup(name, raw)
        new = sorted_unique(raw[idx < 0])
        if new.size == 0:
            return self, idx
        if self.ids.size + new.size > MAX_IDS:
            raise ValueError(f"{name}: the model would hold more than {MAX_IDS} ids.")
        ext = _AppendedIdMap(np.concatenate([self.ids, new.astype(self.ids.dtype)]))
        return ext, ext.lookup(name, raw)


class _AppendedIdMap(IdMap):
    """An IdMap whose ids are not globally sorted (new ids appended at the end)."""

    __slots__ = ("_order", "_sorted")

    def __init__(self, ids: np.ndarray) -> None:
        super().__init__(ids)
        self._order = np.argsort(ids, kind="stable")
        self._sorted = IdMap(ids[self._order])

    def lookup(self, name: str, values: Any) -> np.ndarray:
        idx = self._sorted.lookup(name, values)
        return np.where(idx >= 0, self._order[np.maximum(idx, 0)], -1).astype(np.int32)


def idmap_from_ids(ids: np.ndarray) -> IdMap:
    """Rebuild a map from stored ids (sorted or appended order)."""
    if ids.size < 2 or bool(np.all(ids[1:] > ids[:-1])):
        return IdMap(ids)
    return _AppendedIdMap(ids)
