"""Checks of scalar parameters and of 1-D arrays, with their messages.

Owns the checks of ints, floats, bools, the dtype and random_state (for ``_config`` and
``datasets``), and of columns of values: 1-D (``as_1d``), numeric and finite ratings in
the model dtype (``check_ratings``), equal lengths (``check_same_length``). Messages
name the argument, the rule, what was received and a fix. Other checks live beside
what they check: the data forms and column names in ``_data``, ids in ``_idmap``,
the estimator's parameters as a set (ranges, column names) in ``_config``, the
arguments of metrics and splitters in ``metrics`` and ``model_selection``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import ItemsView, Iterator, KeysView, Mapping, Set, ValuesView
from typing import Any

import numpy as np

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_int(name: str, value: Any, *, low: int = 1, high: int | None = None) -> int:
    rule = f">= {low}" if high is None else f"from {low} to {high}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int {rule}; got {value!r} ({type(value).__name__}).")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be an int {rule}; got {value!r}.")
    return int(value)


def check_float(
    name: str, value: Any, *, low: float = 0.0, strict: bool = False, high: float | None = None,
    high_strict: bool = False,
) -> float:
    rule = f"> {low}" if strict else f">= {low}"
    if high is not None:
        rule += f" and {'<' if high_strict else '<='} {high}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float {rule}; got {value!r} ({type(value).__name__}).")
    try:
        v = float(value)
    except OverflowError:  # an int beyond float64, e.g. 10**400
        v = math.inf
    bad = not np.isfinite(v) or v < low or (strict and v == low)
    if high is not None:
        bad = bad or v > high or (high_strict and v == high)
    if bad:
        raise ValueError(f"{name} must be a float {rule}; got {value!r}.")
    return v


def check_real_or_none(value: Any, rule: str) -> float | None:
    """None, or ``value`` as a finite float; else an error worded ``"{rule}; got ..."``:
    TypeError for a non-number or a non-finite one, ValueError for an int beyond float64
    (10**400 has too many digits to print)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{rule}; got {value!r}.")
    try:
        v = float(value)
    except OverflowError:
        raise ValueError(f"{rule}; got an int too large for float64.") from None
    if not math.isfinite(v):
        raise TypeError(f"{rule}; got {value!r}.")
    return v


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r} ({type(value).__name__}).")
    return bool(value)


def check_dtype(value: Any) -> np.dtype:
    # np.dtype() raises TypeError, ValueError or KeyError on junk such as {"a": 1} or [1];
    # and `None in (dtype, ...)` would be True (a dtype compares equal to None), so compare
    # against the two dtypes explicitly. None itself is NumPy's float64 and stays accepted.
    try:
        dt = np.dtype(value)
    except (TypeError, ValueError, KeyError, IndexError, OverflowError, RecursionError):
        dt = None
    if dt is None or not any(dt == f for f in _FLOAT_DTYPES):
        raise TypeError(f"dtype must be numpy.float32 or numpy.float64; got {value!r}.")
    return _FLOAT_DTYPES[0] if dt == _FLOAT_DTYPES[0] else _FLOAT_DTYPES[1]


def check_random_state(value: Any) -> np.random.Generator:
    """None, an int seed, a SeedSequence or a Generator -> a Generator."""
    if value is None or isinstance(value, (numbers.Integral, np.random.SeedSequence)):
        if isinstance(value, (bool, np.bool_)):
            raise TypeError(f"random_state must be None, an int or a Generator; got {value!r}.")
        if isinstance(value, numbers.Integral) and value < 0:
            raise ValueError(f"random_state must be a non-negative int; got {value!r}.")
        return np.random.default_rng(value)
    if isinstance(value, np.random.Generator):
        return value
    raise TypeError(
        f"random_state must be None, an int or a numpy Generator; got {type(value).__name__}."
    )


def loose_iterable(values: Any) -> str | None:
    """How to name an iterable that NumPy reads as one object (``np.asarray`` of a set
    or a generator is a 0-d object array): "a set", "a dict", "a dict_keys", "a
    generator", "a map"... None for anything else: arrays, pandas objects, lists,
    tuples, ranges, scalars, and str or bytes (one id, never a sequence of characters)."""
    if isinstance(values, (str, bytes, np.ndarray)) or hasattr(values, "to_numpy"):
        return None
    if isinstance(values, (Mapping, Set, KeysView, ValuesView, ItemsView, Iterator)):
        return f"a {type(values).__name__}"
    return None


def refuse_mapping(name: str, what: str, values: Any, kind: str) -> None:
    """ValueError if ``values`` (named ``kind`` by :func:`loose_iterable`) is a dict, where
    ids are wanted: its keys or its values? The message tells how to pass either."""
    if isinstance(values, Mapping):
        raise ValueError(f"{name} must be {what}; got {kind}: pass list(d) for its keys or "
                         "list(d.values()) for its values.")


def as_1d(name: str, values: Any, what: str = "1-D (one value per rating)") -> np.ndarray:
    """Any array-like (list, Series, array) -> a 1-D numpy array, without copying when
    possible. ``what`` words the rule in messages ("users must be {what}; got ...")."""
    if hasattr(values, "to_numpy") and not isinstance(values, np.ndarray):
        values = values.to_numpy()
    mask = None
    if np.ma.isMaskedArray(values):
        # np.asarray drops the mask: the masked (missing) slots would be read as data,
        # with whatever stale values they hold. An array with nothing masked is its data.
        mask, values = np.ma.getmaskarray(values), values.data
    try:
        arr = np.asarray(values)
    except ValueError:  # NumPy: "setting an array element with a sequence ... inhomogeneous"
        raise ValueError(f"{name} must be {what}; got a nested sequence of uneven lengths; "
                         f"pass a flat list or array.") from None
    if arr.ndim == 0:
        kind = loose_iterable(values)
        if kind is not None:  # a set, a dict, a generator: one object to NumPy
            raise ValueError(f"{name} must be {what}; got {kind}, which is not a "
                             f"sequence. Pass a list or a 1-D array.")
        raise ValueError(f"{name} must be {what}; got a scalar {arr!r}.")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be {what}; got shape {arr.shape}.")
    if mask is not None and mask.any():
        bad = np.flatnonzero(mask)
        raise ValueError(f"{name} has {bad.size} masked (missing) value"
                         f"{'s' if bad.size > 1 else ''} (first at position {int(bad[0])}); "
                         "drop those rows first.")
    return arr


def check_ratings(values: Any, dtype: np.dtype, name: str = "ratings",
                  keep_nonzero: bool = False) -> np.ndarray:
    """Numeric, finite, 1-D ratings cast to the model dtype (native byte order, contiguous).
    ``keep_nonzero``: a non-zero value that the cast rounds to 0 (1e-300 in float32) is a
    ValueError, not a silent 0 (a weight of 0 drops its row)."""
    arr = as_1d(name, values)
    if arr.dtype == object:
        # Lists mixing numbers and None/strings end up here.
        try:
            arr = arr.astype(np.float64)
        except OverflowError:  # Python ints beyond float64
            big = next((i for i, v in enumerate(arr.tolist()) if _overflows_float(v)), "?")
            raise ValueError(
                f"{name} has values too large for float64 (first at position {big}); drop or "
                f"rescale them before fit."
            ) from None
        except (TypeError, ValueError):
            raise TypeError(
                f"{name} must be numeric; got an object array with non-numeric values "
                f"(first: {next((v for v in arr if not isinstance(v, numbers.Real)), '?')!r})."
            ) from None
    if arr.dtype.kind == "b":
        raise TypeError(f"{name} must be numeric (int or float); got booleans.")
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be numeric (int or float); got dtype {arr.dtype}.")
    with np.errstate(over="ignore", invalid="ignore"):  # reported below, by position
        out = np.ascontiguousarray(arr, dtype=dtype)
    finite = np.isfinite(out)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        first = int(bad[0])
        what = "non-finite" if np.isfinite(arr[first]) else "non-finite (NaN or inf)"
        extra = ""
        if np.isfinite(arr[first]):
            extra = f" (too large for {dtype.name})"
        raise ValueError(
            f"{name} has {bad.size} {what} value{'s' if bad.size > 1 else ''}{extra} "
            f"(first at position {first}: {arr[first]!r}); drop or impute them before fit."
        )
    if keep_nonzero and out.dtype != arr.dtype:
        lost = np.flatnonzero((out == 0) & (arr != 0))
        if lost.size:
            first = int(lost[0])
            raise ValueError(
                f"{name} has {lost.size} non-zero value{'s' if lost.size > 1 else ''} too "
                f"small for {dtype.name}, which would become 0 (first at position {first}: "
                f"{float(arr[first])!r}); rescale them or use "
                f"dtype='float64'."
            )
    return out


def _overflows_float(v: Any) -> bool:
    try:
        float(v)
    except OverflowError:
        return True
    except (TypeError, ValueError):
        pass
    return False


def check_same_length(**arrays: np.ndarray) -> int:
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        desc = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise ValueError(f"users, items and ratings must have the same length; {desc}.")
    return next(iter(lengths.values()))
