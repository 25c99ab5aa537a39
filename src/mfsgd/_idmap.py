"""IdMap: raw user/item ids (ints or strings) <-> contiguous int32 indices, vectorised.

Ids are labels, not indices: negative or huge integers are fine. The ids are kept
sorted, so a look-up is one ``np.searchsorted`` and index ``k`` belongs to ``ids[k]``.

Mapping a fit's ids is the peak of memory before training, so ``IdMap.fit`` works in the
ids' own dtype: int32 ids are never copied to int64 (only the table of distinct ids is),
ids that are already the codes 0..n-1 are their own indices (no copy at all), and
dictionary-encoded ids (:class:`Encoded`: an Arrow dictionary column, a pandas
Categorical) are mapped through their small table of values, never one string per row.
"""

from __future__ import annotations

import math
import numbers
import sys
import threading
from collections.abc import Callable, Iterable, Set
from typing import Any

import numpy as np

from ._validation import as_1d, loose_iterable, refuse_mapping

MAX_IDS = 2**31 - 1  # indices are int32 in the kernel


_I64 = np.iinfo(np.int64)
_CHUNK = 1 << 20  # rows per step where a whole-array temporary would be int64 (8 bytes/row)


class Encoded:
    """Ids given as integer ``codes`` into a table of distinct ``values``, as an Arrow
    dictionary column or a pandas Categorical holds them; a code < 0 is a missing id.

    :meth:`IdMap.fit` maps them through the table (one pass over the codes); anything
    else gets the ids one per row from :meth:`decode`."""

    __slots__ = ("codes", "values")

    def __init__(self, codes: np.ndarray, values: np.ndarray) -> None:
        self.codes, self.values = codes, values

    def __reduce__(self) -> tuple[Any, ...]:
        # A class with __slots__ pickles only from protocol 2 on; this works at every one.
        return Encoded, (self.codes, self.values)

    def __len__(self) -> int:
        return int(self.codes.size)

    @property
    def size(self) -> int:
        return int(self.codes.size)

    def __getitem__(self, idx: Any) -> Encoded:
        return Encoded(self.codes[idx], self.values)

    def missing_rows(self, missing: np.ndarray | None = None) -> np.ndarray:
        """The mask of the rows whose id is missing: a null code (< 0) or, given
        ``missing`` (a mask over ``values``), the code of a missing value."""
        bad = self.codes < 0
        if missing is not None and missing.any():
            bad |= np.take(missing, self.codes, mode="clip")  # a code < 0 clips: bad already
        return bad

    def check_codes(self, name: str, missing: np.ndarray | None = None) -> None:
        """Raise when a row's id is missing (:meth:`missing_rows`). Rows are counted, not
        values."""
        bad = self.missing_rows(missing)
        if bad.any():
            raise ValueError(f"{name} has {int(np.count_nonzero(bad))} missing ids (None or "
                             f"NaN; first at position {int(np.argmax(bad))}); drop those rows "
                             "first.")

    def used_values(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The indices of the values some row uses (ascending) and those values normalised
        as :func:`normalize_ids` returns them, or raise naming the first row with a bad id.

        Only the values in use are checked: a dictionary may hold others, even a null, that
        no row refers to."""
        values, codes = self.values, self.codes
        self.check_codes(name, _missing_mask(values))
        used = np.zeros(values.size, dtype=bool)
        for s in range(0, codes.size, _CHUNK):
            used[codes[s:s + _CHUNK]] = True
        where = np.flatnonzero(used)
        try:
            return where, normalize_ids(name, values[where])
        except (TypeError, ValueError) as e:
            error = e  # its position is the value's place in the table, not a row
        # A bad value: check the values again in the order rows first use them, so that
        # the first bad one found is the first bad row, and report that row (not the
        # value's place in the table). Only on this path is the first use worked out.
        first = np.full(values.size, codes.size, dtype=np.int64)
        for s in range(0, codes.size, _CHUNK):
            c = codes[s:s + _CHUNK]
            np.minimum.at(first, c, np.arange(s, s + c.size))
        first = first[where]
        order = np.argsort(first, kind="stable")
        normalize_ids(name, values[where[order]], rows=first[order])
        raise error  # not reached: the same values in another order raise as well

    def decode(self, name: str) -> np.ndarray:
        """The ids one per row (normalised as :func:`normalize_ids` returns them)."""
        where, used = self.used_values(name)
        table = np.zeros(self.values.size, dtype=used.dtype)  # values no row uses stay 0
        table[where] = used
        return table[self.codes]


def id_array(name: str, values: Any, what: str = "1-D (one value per rating)") -> np.ndarray:
    """``as_1d`` for ids: a list or tuple mixing strings with other scalars stays an
    object array (np.asarray would turn 1 into "1", merging user 1 with user "1"), so
    that normalize_ids refuses the mix as it does for an object array or a DataFrame;
    one of strings (or bytes) holding a NUL character is refused. ``what`` words the
    shape rule, as in ``as_1d``."""
    if isinstance(values, (list, tuple)):
        kinds = {str if isinstance(v, str) else bytes if isinstance(v, bytes)
                 else bool if isinstance(v, (bool, np.bool_)) else None for v in values}
        if bool in kinds:  # NumPy reads [5, True] as [5, 1]
            raise TypeError(f"{name} must be integers or strings; got booleans (such as "
                            f"{next(v for v in values if isinstance(v, (bool, np.bool_)))!r}).")
        if kinds in ({str}, {bytes}):
            _refuse_nul(name, values)  # before NumPy's strings drop trailing NULs
            _refuse_widening(name, values)
        elif kinds & {str, bytes}:  # [b"1", 1] would become [b"1", b"1"] too
            values = np.array(values, dtype=object)
    arr = as_1d(name, values, what)
    if arr.dtype.kind == "f" and isinstance(values, (list, tuple)) and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
        # NumPy reads integers beyond int64 mixed with others ([2**64 - 1, 5]) as float64;
        # as objects they stay exact (uint64 ids, or refused as outside the 64-bit range)
        arr = np.array(values, dtype=object)
    return arr


def id_list(name: str, values: Any, *, ordered: bool) -> np.ndarray:
    """:func:`normalize_ids` for an argument that lists ids, not a column of rating rows:
    the candidates and exclusions of ``recommend``, the users of ``recommend_all``.

    ``ordered``: the result has one row per id (``recommend_all``'s users), so the ids
    must have positions: a list, tuple, range, Series or 1-D array. Otherwise (a
    whitelist or a blacklist, where only membership counts) any iterable of ids is
    taken as well: a set, frozenset or dict keys (their ids sorted, so that the result
    does not depend on the iteration order), dict values, a generator. Refused with
    a message saying what to pass: a str or bytes (one id, not a sequence of
    characters), any other single id, a dict (keys or values?), and a set or generator
    where order counts."""
    what = f"a list{'' if ordered else ', a set'} or a 1-D array of ids"
    if values is None or isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        one = ("", "") if values is None else (", not one id", f" Pass [{values!r}].")
        raise ValueError(f"{name} must be {what}{one[0]}; got {values!r}.{one[1]}")
    kind = loose_iterable(values)
    if kind is None:
        return normalize_ids(name, id_array(name, values, what))
    refuse_mapping(name, what, values, kind)
    if ordered:
        fix = f"sorted({name})" if isinstance(values, Set) else f"list({name})"
        raise ValueError(f"{name} must be {what}, as row k of the result belongs to "
                         f"{name}[k]; got {kind}, which is not a sequence. Pass a list, "
                         f"e.g. {fix}.")
    ids = normalize_ids(name, id_array(name, list(values), what))
    return np.sort(ids) if isinstance(values, Set) else ids


#: Above this size, a fixed-width array of string ids that is mostly padding is refused.
_WIDE_BYTES = 1 << 30


def _refuse_widening(name: str, values: list, rows: np.ndarray | None = None) -> None:
    """Raise when NumPy's fixed-width strings would blow a few long ids up into gigabytes:
    every id is stored at the longest one's width (4 bytes a character), so one id of a
    million characters among a million rows would take 3.7 TiB. Refused when that array
    exceeds 1 GiB and is more than 16 times the ids' own characters."""
    longest = max(map(len, values), default=0)
    wide = 4 * longest * len(values)
    if wide <= _WIDE_BYTES or wide <= 16 * 4 * sum(map(len, values)):
        return
    pos = next(i for i, v in enumerate(values) if len(v) == longest)
    raise ValueError(f"{name} has an id of {longest:,} characters (first at position "
                     f"{_row(rows, pos)}); NumPy stores every id at the longest one's width, "
                     f"which would take {wide / 2**30:,.1f} GiB for these {len(values):,} rows. "
                     "Shorten such ids (e.g. map them to short keys or hashes) first.")


def _refuse_nul(name: str, values: list, rows: np.ndarray | None = None) -> None:
    """Raise when a str (or bytes) id holds a NUL character. NumPy's fixed-width strings
    drop trailing NULs, so "u0\\x00" would become "u0": a new id silently merged with
    an existing one. (A NumPy str array given as such has lost them already.)"""
    nul = "\x00" if isinstance(values[0], str) else b"\x00"
    if nul in nul[:0].join(values):
        pos = next(i for i, v in enumerate(values) if nul in v)
        raise ValueError(f"{name} has ids containing the NUL character \\x00 (first at "
                         f"position {_row(rows, pos)}: {values[pos]!r}); NumPy's strings drop "
                         "trailing NULs, which would merge such an id with another. Remove the "
                         "NUL characters first.")


def _row(rows: np.ndarray | None, pos: int) -> int:
    """The position to name in a message for value ``pos``: itself, or ``rows[pos]``."""
    return pos if rows is None else int(rows[pos])


def _missing_positions(values: list) -> list[int]:
    """Where a list of ids holds None, NaN or pandas.NA (a pandas "string" column's gap)."""
    na = getattr(sys.modules.get("pandas"), "NA", None)
    return [i for i, v in enumerate(values)
            if v is None or v is na or (isinstance(v, float) and v != v)]


def _missing_mask(values: np.ndarray) -> np.ndarray:
    """A mask of the missing ids (NaN, None, pandas.NA) in an array of ids, e.g. the
    values of an Arrow dictionary, which may hold a null."""
    mask = np.zeros(values.size, dtype=bool)
    if values.dtype.kind == "f":
        mask = np.isnan(values)
    elif values.dtype.kind == "O":
        mask[_missing_positions(values.tolist())] = True
    return mask


def normalize_ids(name: str, values: Any, rows: np.ndarray | None = None) -> np.ndarray:
    """Return a 1-D array of int64/uint64 or str ids, or raise naming the problem.

    Integers come back as int64, or as uint64 when some exceed the int64 range. A message
    names the position of a bad value, or ``rows[position]`` when given (the row using a
    dictionary's value)."""
    if isinstance(values, Encoded):
        return values.decode(name)
    arr = id_array(name, values)
    kind = arr.dtype.kind
    if kind in "iu":
        if kind == "u" and arr.dtype.itemsize == 8 and arr.size and arr.max() > _I64.max:
            return arr.astype(np.uint64, copy=False)
        return arr.astype(np.int64, copy=False)
    if kind == "b":
        raise TypeError(f"{name} must be integers or strings; got booleans.")
    if kind == "f":
        if arr.size and not np.isfinite(arr).all():
            pos = int(np.flatnonzero(~np.isfinite(arr))[0])
            raise ValueError(f"{name} has a missing or non-finite id (first at position "
                             f"{_row(rows, pos)}: {arr[pos]!r}); drop those rows first.")
        # float(2**63) is exact; anything from it up cannot be cast to int64 (NumPy would
        # warn and return garbage), so check the range before the cast.
        wide = arr.astype(np.float64, copy=False)  # 2.0**63 would overflow a float16 array
        outside = (wide < -(2.0**63)) | (wide >= 2.0**63)
        if outside.any():
            pos = int(np.flatnonzero(outside)[0])
            raise ValueError(f"{name} has float ids outside the int64 range (first at position "
                             f"{_row(rows, pos)}: {arr[pos]!r}); use integer or string ids.")
        # From 2**53 (float64; 2**24 for float32) a float no longer holds every integer:
        # neighbouring ids may already have been rounded into one, and a model trained
        # on them would silently pool those users.
        bits = np.finfo(arr.dtype).nmant + 1
        inexact = np.abs(wide) >= 2.0**bits
        if inexact.any():
            pos = int(np.flatnonzero(inexact)[0])
            raise ValueError(
                f"{name} has float ids of magnitude 2**{bits} or more "
                f"(first at position {_row(rows, pos)}: {float(arr[pos])!r}), where {arr.dtype} "
                "cannot tell neighbouring integers apart, so distinct ids may have merged; "
                "pass the ids as integers or strings.")
        as_int = wide.astype(np.int64)
        if not np.array_equal(as_int, wide):
            raise TypeError(f"{name} must be integers or strings; got non-integral floats "
                            f"(for example {arr[np.flatnonzero(as_int != arr)[0]]!r}).")
        return as_int
    if kind == "U":
        return arr
    if kind == "S":
        return _decode_bytes(name, arr, rows)
    if kind == "O":
        return _normalize_objects(name, arr, rows)
    raise TypeError(f"{name} must be integers or strings; got dtype {arr.dtype}.")


def _decode_bytes(name: str, arr: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Bytes ids -> str ids (ASCII, as NumPy converts them)."""
    try:
        return arr.astype(str)
    except UnicodeDecodeError:
        pos = next(i for i, b in enumerate(arr.tolist()) if not b.isascii())
        raise ValueError(f"{name} holds bytes ids that are not ASCII (first at position "
                         f"{_row(rows, pos)}: {arr[pos]!r}); decode them to str first, e.g. "
                         f"[b.decode('utf-8') for b in ids].") from None


def _ints_to_array(name: str, values: list) -> np.ndarray:
    """Python/NumPy integers -> int64, or uint64 when all are >= 0 and some exceed int64."""
    ints = [int(v) for v in values]
    lo, hi = min(ints), max(ints)
    if lo >= _I64.min and hi <= _I64.max:
        return np.array(ints, dtype=np.int64)
    if lo >= 0 and hi <= np.iinfo(np.uint64).max:
        return np.array(ints, dtype=np.uint64)
    raise ValueError(f"{name} has integer ids outside the 64-bit range (from {lo} to {hi}); "
                     f"use ids from -2**63 to 2**63-1, or from 0 to 2**64-1, or strings.")


def _normalize_objects(name: str, arr: np.ndarray,
                       rows: np.ndarray | None = None) -> np.ndarray:
    values = arr.tolist()
    types = {type(v) for v in values}
    if not types:
        return np.empty(0, dtype=np.int64)
    if all(issubclass(t, str) for t in types):
        _refuse_nul(name, values, rows)
        _refuse_widening(name, values, rows)
        return arr.astype(str)
    if all(issubclass(t, bytes) for t in types):
        _refuse_nul(name, values, rows)
        _refuse_widening(name, values, rows)
        return _decode_bytes(name, np.array(values, dtype=bytes), rows)

    def is_bool(t: type) -> bool:
        return issubclass(t, (bool, np.bool_))

    if all(issubclass(t, numbers.Integral) and not is_bool(t) for t in types):
        return _ints_to_array(name, values)
    missing = _missing_positions(values)
    if missing:
        raise ValueError(f"{name} has {len(missing)} missing ids (None or NaN; first at position "
                         f"{_row(rows, missing[0])}); drop those rows first.")
    if all(issubclass(t, numbers.Real) and not is_bool(t) for t in types):
        # Floats among ints (e.g. read from a file): fine when integral, checked one by one
        # so that large ints keep every digit.
        ints = []
        for pos, v in enumerate(values):
            if not isinstance(v, numbers.Integral):
                f = float(v)
                if not math.isfinite(f):
                    raise ValueError(f"{name} has a missing or non-finite id (first at position "
                                     f"{_row(rows, pos)}: {v!r}); drop those rows first.")
                if not f.is_integer():
                    raise TypeError(f"{name} must be integers or strings; got non-integral "
                                    f"floats (for example {v!r}).")
                v = int(f)
            ints.append(v)
        return _ints_to_array(name, ints)
    names = sorted(t.__name__ for t in types)
    if len(names) == 1:
        raise TypeError(f"{name} must be integers or strings; got {names[0]} objects.")
    raise TypeError(f"{name} mixes id types ({', '.join(names)}); use one type for all ids, "
                    f"e.g. convert them with .astype(str).")


def _common_int_dtype(name: str, a: np.ndarray, b: np.ndarray) -> np.dtype:
    """int64 or uint64 holding every value of two integer id arrays, or raise."""
    lo = min(int(a.min()) if a.size else 0, int(b.min()) if b.size else 0)
    hi = max(int(a.max()) if a.size else 0, int(b.max()) if b.size else 0)
    if hi <= _I64.max:
        return np.dtype(np.int64)
    if lo >= 0:
        return np.dtype(np.uint64)
    raise ValueError(f"{name}: the model's ids and the new ids together range from {lo} to {hi}, "
                     f"which no 64-bit integer type holds; use ids from -2**63 to 2**63-1, or "
                     f"from 0 to 2**64-1, or strings.")


def _as_dtype_of(raw: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Integer ids ``raw`` in the dtype of ``ids`` (int64 vs uint64), and a mask of those
    that fit in it (None: all do). Without this, NumPy's searchsorted compares int64 with
    uint64 as float64 and mismatches ids above 2**53."""
    if raw.dtype == ids.dtype or raw.dtype.kind not in "iu" or ids.dtype.kind not in "iu":
        return raw, None
    if ids.dtype.kind == "u" and raw.dtype.kind == "i":
        fits = raw >= 0
        if ids.dtype.itemsize < 8:
            fits &= raw <= np.iinfo(ids.dtype).max
    elif ids.dtype.kind == "i" and raw.dtype.kind == "u":
        fits = raw <= np.uint64(np.iinfo(ids.dtype).max)
    elif raw.dtype.itemsize > ids.dtype.itemsize:
        # narrower ids (a duck-typed model's, in mfsgd.metrics): an id beyond their range
        # would wrap onto a known one (256 onto 0 in uint8)
        info = np.iinfo(ids.dtype)
        fits = (raw >= info.min) & (raw <= info.max)
    else:
        return raw.astype(ids.dtype), None  # same signedness, e.g. int32 into int64
    return np.where(fits, raw, raw.dtype.type(0)).astype(ids.dtype), fits


def sorted_unique(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values. (np.unique on numpy 2.4 took 22 s on 20 M int64 here, a plain
    sort 1.7 s: see bench notes; this is sort + mask. Without return_index/return_inverse,
    which take its sorting path, np.unique stays 4-35x slower than this on int64 and
    unicode ids of 1 M: use this instead.)"""
    s = np.sort(a)
    if s.size == 0:
        return s
    keep = np.empty(s.size, dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def unique_inverse(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and the int32 index of each element among them.

    Integer ids are worked on in their own dtype (int32 stays int32), and int32 ids
    that already are 0..n-1 with every value present come back as their own index (the
    same array, not a copy: the kernel only reads it)."""
    if a.dtype.kind in "iu" and a.size:
        lo, hi = int(a.min()), int(a.max())
        if hi - lo <= 2 * a.size + 1_000_000:
            # Dense integer ids (the common case): a look-up table, O(n) instead of a sort,
            # shifted in chunks so that no int64 copy of the ids is made.
            present = np.zeros(hi - lo + 1, dtype=bool)
            direct = lo == 0 and a.dtype.kind in "iu" and a.dtype.itemsize >= 4
            for s in range(0, a.size, _CHUNK):
                present[a[s:s + _CHUNK] if direct else _shifted(a[s:s + _CHUNK], lo)] = True
            n_ids = int(np.count_nonzero(present))
            if n_ids > MAX_IDS:
                return (np.flatnonzero(present).astype(a.dtype) + a.dtype.type(lo),
                        np.empty(0, dtype=np.int32))
            if (n_ids == present.size and lo == 0 and a.dtype == np.int32
                    and a.flags.c_contiguous):
                return np.arange(n_ids).astype(a.dtype), a  # already the codes
            ids = np.flatnonzero(present).astype(a.dtype) + a.dtype.type(lo)
            lut = np.cumsum(present, dtype=np.int32)
            lut -= 1
            del present
            inverse = np.empty(a.size, dtype=np.int32)
            for s in range(0, a.size, _CHUNK):
                c = a[s:s + _CHUNK]
                np.take(lut, c if direct else _shifted(c, lo), out=inverse[s:s + _CHUNK],
                        mode="clip")
            return ids, inverse
    order = np.argsort(a, kind="stable")
    s = a[order]
    if s.size == 0:
        return s, np.empty(0, dtype=np.int32)
    new = np.empty(s.size, dtype=bool)
    new[0] = True
    np.not_equal(s[1:], s[:-1], out=new[1:])
    ids = s[new]
    del s
    if ids.size > MAX_IDS:
        return ids, np.empty(0, dtype=np.int32)  # caller reports the count
    inverse = np.empty(a.size, dtype=np.int32)
    rank = np.cumsum(new, dtype=np.int64 if a.size > MAX_IDS else np.int32)
    rank -= 1
    inverse[order] = rank
    return ids, inverse


def _shifted(c: np.ndarray, lo: int) -> np.ndarray:
    """A chunk of ids minus ``lo`` (its minimum over all chunks), as indices. 64-bit ids
    are subtracted in their own dtype (uint64 ids may exceed intp; the difference is
    small), narrower ones after widening (127 - (-128) overflows an int8)."""
    if c.dtype.itemsize == 8:
        return (c - c.dtype.type(lo)).astype(np.intp, copy=False)
    out = c.astype(np.intp)
    out -= lo
    return out


def blank_index(ids: np.ndarray) -> int:
    """Index of the first id of ``ids`` that is empty or only whitespace, or -1."""
    if ids.dtype.kind != "U" or not ids.size:
        return -1
    if ids[0] == "":  # sorts first when present
        return 0
    hit = np.flatnonzero(np.char.isspace(ids))  # False for "" and for any other character
    return int(hit[0]) if hit.size else -1


def refuse_empty(name: str, ids: np.ndarray, rows: Callable[[int], np.ndarray]) -> None:
    """ValueError if the new ``ids`` of a fit hold the empty string or one of only
    whitespace: it is a missing id (an empty field), not a user or an item, as the file
    loaders also say. ``rows(k)`` (called only then) marks the rows holding ``ids[k]``,
    for the message."""
    k = blank_index(ids)
    if k < 0:
        return
    v = ids[k].item()
    pos = int(np.flatnonzero(rows(k))[0])
    what = "an empty" if v == "" else "a blank"
    raise ValueError(f"{name} has {what} id {v!r} (first at position {pos}): a missing "
                     "id, not a name; drop those rows or give them an id first.")


_TABLE_LOCK = threading.Lock()
# A map of integer ids whose range is at most this many times their count (plus a
# little) also keeps a table from id to index: a look-up is then a gather, not a binary
# search. Memory: at most 4 bytes x (2 n + 1024) beside the ids' 8 n.
DENSE_SPAN = 2


class IdMap:
    """Sorted unique ids with vectorised look-up."""

    __slots__ = ("ids", "_dense")

    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids
        self._dense: tuple | bool | None = None  # (lowest id, table) once built; False: none

    def _table(self) -> tuple | None:
        """For 64-bit integer ids (every map a fit or load makes) spanning at most
        DENSE_SPAN times their count (0..n-1, 1..n, codes with gaps), ``(lowest id,
        table)`` with ``table[id - lowest]`` the id's index (-1: none), built on first use;
        None for other maps. (Narrower ids, as a duck-typed model's may be, would wrap in
        ``id - lowest``.) Built once under a lock, a chunk of ids at a time: the table is
        the only large allocation."""
        dense = self._dense
        if dense is None:
            with _TABLE_LOCK:
                dense = self._dense
                if dense is None:
                    dense = self._build_table()
                    self._dense = dense
        return dense or None

    def _build_table(self) -> tuple | bool:
        ids = self.ids
        if ids.dtype.kind not in "iu" or ids.dtype.itemsize != 8 or ids.size == 0:
            return False
        span = int(ids[-1]) - int(ids[0]) + 1  # Python ints: no overflow
        if span > DENSE_SPAN * ids.size + 1024:
            return False
        lo = ids[0]
        table = np.full(span, -1, dtype=np.int32)
        for s in range(0, ids.size, _CHUNK):  # differences < span: no wrap
            off = (ids[s:s + _CHUNK] - lo).astype(np.intp, copy=False)
            table[off] = np.arange(s, s + off.size, dtype=np.int32)
        return lo, table

    def __reduce__(self) -> tuple[Any, ...]:
        # A class with __slots__ pickles only from protocol 2 on (a model holds two maps);
        # rebuilt from its ids, a map pickles at every protocol. Subclasses too: they are
        # built from their ids alone.
        return type(self), (self.ids,)

    @classmethod
    def fit(cls, name: str, values: Any) -> tuple[IdMap, np.ndarray]:
        """Map raw ids; return the map and the int32 index of every value.

        The map's ids are int64 (uint64 beyond its range) or str whatever the input's
        width, so a model's ids do not depend on how they were read."""
        if isinstance(values, Encoded):
            return cls._fit_encoded(name, values)
        arr = id_array(name, values)
        if arr.dtype.kind in "iu" and arr.dtype.itemsize < 8:
            ids, inverse = unique_inverse(arr)  # in the ids' own dtype: no int64 copy
            ids = ids.astype(np.int64)
        else:
            ids, inverse = unique_inverse(normalize_ids(name, arr))
        if ids.size > MAX_IDS:
            raise ValueError(f"{name} has {ids.size} distinct ids; at most {MAX_IDS} are "
                             f"supported.")
        refuse_empty(name, ids, lambda k: inverse == k)
        return cls(ids), inverse

    @classmethod
    def _fit_encoded(cls, name: str, enc: Encoded) -> tuple[IdMap, np.ndarray]:
        """Map dictionary-encoded ids through their table: only the values in use count
        (a dictionary may hold more), each equal value gets one index."""
        where, used = enc.used_values(name)
        n_values, codes = enc.values.size, enc.codes
        ids, rank = unique_inverse(used)
        if ids.size > MAX_IDS:
            raise ValueError(f"{name} has {ids.size} distinct ids; at most {MAX_IDS} are "
                             f"supported.")
        if (where.size == n_values and np.array_equal(rank, np.arange(rank.size))
                and codes.dtype == np.int32 and codes.flags.c_contiguous):
            refuse_empty(name, ids, lambda k: codes == k)
            return cls(ids), codes  # a sorted table, every value used: codes are indices
        lut = np.full(n_values, -1, dtype=np.int32)
        lut[where] = rank
        inverse = np.empty(codes.size, dtype=np.int32)
        for s in range(0, codes.size, _CHUNK):
            np.take(lut, codes[s:s + _CHUNK], out=inverse[s:s + _CHUNK], mode="clip")
        refuse_empty(name, ids, lambda k: inverse == k)
        return cls(ids), inverse

    def __len__(self) -> int:
        return int(self.ids.size)

    def lookup(self, name: str, values: Any) -> np.ndarray:
        """int32 indices of raw ids; -1 where an id is unknown. Dictionary-encoded ids
        (:class:`Encoded`) are looked up once per distinct value in use, then indexed by
        their codes (decoding every row first cost 10-20x on string ids)."""
        if isinstance(values, Encoded):
            where, used = values.used_values(name)
            lut = np.full(values.values.size, -1, dtype=np.int32)
            lut[where] = self.lookup(name, used)
            out = np.empty(values.codes.size, dtype=np.int32)
            for s in range(0, out.size, _CHUNK):  # no int64 copy of the codes
                np.take(lut, values.codes[s:s + _CHUNK], out=out[s:s + _CHUNK], mode="clip")
            return out
        raw = normalize_ids(name, values)
        if raw.size == 0:
            return np.empty(0, dtype=np.int32)
        mine_str = self.ids.dtype.kind == "U"
        if mine_str != (raw.dtype.kind == "U"):
            want, got = ("strings", "integers") if mine_str else ("integers", "strings")
            raise TypeError(f"{name}: this model's ids are {want}; got {got} such as "
                            f"{raw[0].item()!r}.")
        if self.ids.size == 0:
            return np.full(raw.size, -1, dtype=np.int32)
        raw, fits = _as_dtype_of(raw, self.ids)
        dense = self._table() if raw.dtype == self.ids.dtype else None
        if dense is not None:
            lo, table = dense
            inside = (raw >= lo) & (raw <= self.ids[-1])
            # outside the range the difference may wrap; those entries are replaced
            out = table[np.where(inside, raw - lo, 0).astype(np.intp, copy=False)]
            out[~inside] = -1
            if fits is not None:
                out[~fits] = -1
            return out
        pos = np.searchsorted(self.ids, raw)
        pos_c = np.minimum(pos, self.ids.size - 1)
        found = self.ids[pos_c] == raw
        if fits is not None:
            found &= fits
        return np.where(found, pos_c, -1).astype(np.int32)

    def extended(self, name: str, values: Any) -> tuple[IdMap, np.ndarray]:
        """A map that also holds the new ids among ``values`` (appended after the old ones,
        so existing indices keep their meaning), and the indices of ``values`` in it."""
        raw = normalize_ids(name, values)
        idx = self.lookup(name, raw)
        new = sorted_unique(raw[idx < 0])
        if new.size == 0:
            return self, idx
        refuse_empty(name, new, lambda k: (raw == new[k]) & (idx < 0))
        if self.ids.size + new.size > MAX_IDS:
            raise ValueError(f"{name}: the model would hold more than {MAX_IDS} ids.")
        old = self.ids
        if old.dtype.kind in "iu" and new.dtype != old.dtype:
            # int64 model meeting ids above 2**63-1, or uint64 model meeting negative ids:
            # never wrap (a wrapped id is a wrong row, or an index of -1 in the kernel).
            dt = _common_int_dtype(name, old, new)
            old, new = old.astype(dt), new.astype(dt)
        # Strings: concatenate widens to the longest id (casting new ids to the old width
        # would truncate them, and a truncated id is not found: index -1 in the kernel).
        ext = _AppendedIdMap(np.concatenate([old, new]))
        idx = ext.lookup(name, raw)
        if idx.size and idx.min() < 0:  # an invariant; -1 would write outside the factors
            raise RuntimeError(f"mfsgd internal error: {name} ids were not all mapped after "
                               f"growing the model; please report this with the ids' dtype.")
        return ext, idx


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
