"""Save and load models: one ZIP archive of .npy arrays plus a JSON header.

Nothing is ever unpickled: arrays are read with ``allow_pickle=False``, ids are stored
as integer or fixed-width unicode arrays, and everything else lives in the JSON header.
A file is checked before any array is allocated: member names, JSON fields, each
array's dtype and shape against the header and against the other arrays, the member's
size against that shape, and a CRC-32 of every array's bytes.

Writes go to a temporary file in the target directory, are flushed to disk, then
renamed over the target, so a failed save never damages an existing file.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
import zlib
from typing import Any

import numpy as np

from ._idmap import idmap_from_ids
from ._version import __version__
from .exceptions import ModelFileError

FORMAT_NAME = "mfsgd"
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 64 << 20  # the JSON header (history included) is never near this
_ARRAYS = ("user_factors", "item_factors", "user_bias", "item_bias", "user_ids", "item_ids",
           "seen_indptr", "seen_items")
_FLOATS = {"float32", "float64"}

__all__ = ["save_model", "load_model", "load"]


def _json_param(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v)
    if v is None or isinstance(v, str):
        return v
    try:
        return np.dtype(v).name  # dtype
    except TypeError:
        return None  # e.g. a Generator as random_state: not storable, reset to None


def save_model(model: Any, path: Any) -> None:
    st = model._require_fitted("save")
    arrays = {
        "user_factors": st.factors("user_factors"), "item_factors": st.factors("item_factors"),
        "user_bias": st.user_bias, "item_bias": st.item_bias,
        "user_ids": st.user_map.ids, "item_ids": st.item_map.ids,
        "seen_indptr": model._seen(st)[0], "seen_items": model._seen(st)[1],
    }
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "mfsgd_version": __version__,
        "params": {k: _json_param(v) for k, v in model.get_params().items()},
        "global_mean": st.global_mean,
        "rating_range": list(st.rating_range),
        "biased": st.biased,
        "history": st.history,
        "n_epochs": st.n_epochs,
        "best_epoch": st.best_epoch,
        "n_blocks": st.n_blocks,
        "arrays": {k: {"dtype": a.dtype.str, "shape": list(a.shape),
                       "crc32": zlib.crc32(np.ascontiguousarray(a).view(np.uint8).reshape(-1))}
                   for k, a in arrays.items()},
    }
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
                zf.writestr("header.json", json.dumps(header, allow_nan=True))
                for name, a in arrays.items():
                    buf = io.BytesIO()
                    np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
                    zf.writestr(f"{name}.npy", buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _bad(path: str, why: str) -> ModelFileError:
    return ModelFileError(f"{path!s} is not a valid mfsgd model file: {why}.")


def _read_header(zf: zipfile.ZipFile, path: str) -> dict[str, Any]:
    try:
        info = zf.getinfo("header.json")
    except KeyError:
        raise _bad(path, "it has no header.json (not an mfsgd model)") from None
    if info.file_size > MAX_HEADER_BYTES:
        raise _bad(path, f"its header is {info.file_size} bytes (limit {MAX_HEADER_BYTES})")
    with zf.open(info) as f:
        raw = f.read(MAX_HEADER_BYTES + 1)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise _bad(path, f"its header is not valid JSON ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise _bad(path, "its header does not name the mfsgd format")
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise _bad(path, "its header has no integer format_version")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was written in model format {version} by mfsgd "
            f"{header.get('mfsgd_version', '?')}; this mfsgd ({__version__}) reads format "
            f"{FORMAT_VERSION} at most. Upgrade mfsgd to load it.")
    if version < 1:
        raise _bad(path, f"unknown format_version {version}")
    return header


def _expected_specs(header: dict[str, Any], path: str) -> dict[str, tuple[np.dtype, tuple]]:
    specs = header.get("arrays")
    if not isinstance(specs, dict) or set(specs) != set(_ARRAYS):
        raise _bad(path, f"its header must describe the arrays {list(_ARRAYS)}")
    out = {}
    for name in _ARRAYS:
        s = specs[name]
        try:
            dt = np.dtype(s["dtype"])
            shape = tuple(int(x) for x in s["shape"])
            int(s["crc32"])
        except (TypeError, KeyError, ValueError) as e:
            raise _bad(path, f"array {name!r} is described wrongly ({e})") from None
        if dt.hasobject or any(x < 0 for x in shape):
            raise _bad(path, f"array {name!r} has a forbidden dtype or shape")
        out[name] = (dt, shape)
    fdt = out["user_factors"][0]
    if fdt.name not in _FLOATS or any(out[n][0] != fdt for n in _ARRAYS[:4]):
        raise _bad(path, "the parameter arrays must all be float32 or all float64")
    for n in ("user_ids", "item_ids"):
        if out[n][0].kind not in "iuU":
            raise _bad(path, f"{n} must hold integers or strings")
    (nu, k), (ni, k2) = _two_d(out, "user_factors", path), _two_d(out, "item_factors", path)
    want = {"user_bias": (nu,), "item_bias": (ni,), "user_ids": (nu,), "item_ids": (ni,),
            "seen_indptr": (nu + 1,)}
    if out["seen_indptr"][0] != np.dtype("<i8") or out["seen_items"][0] != np.dtype("<i4") \
            or len(out["seen_items"][1]) != 1:
        raise _bad(path, "the seen-items arrays must be int64 indptr and 1-D int32 items")
    if k != k2 or any(out[n][1] != s for n, s in want.items()):
        raise _bad(path, "array shapes disagree (factors, biases and ids must match)")
    return out


def _two_d(specs: dict, name: str, path: str) -> tuple[int, int]:
    shape = specs[name][1]
    if len(shape) != 2 or shape[1] < 1:
        raise _bad(path, f"{name} must be 2-D with at least one factor; got shape {shape}")
    return shape


def _read_array(zf: zipfile.ZipFile, name: str, dt: np.dtype, shape: tuple, crc: int,
                path: str) -> np.ndarray:
    try:
        info = zf.getinfo(f"{name}.npy")
    except KeyError:
        raise _bad(path, f"array {name!r} is missing") from None
    nbytes = dt.itemsize * int(np.prod(shape, dtype=np.int64))
    with zf.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                fshape, fortran, fdt = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                fshape, fortran, fdt = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"npy version {version}")
        except ValueError as e:
            raise _bad(path, f"array {name!r} has a broken header ({e})") from None
        if fdt != dt or tuple(fshape) != shape or fortran:
            raise _bad(path, f"array {name!r} is {fdt}{tuple(fshape)} but the header says "
                             f"{dt}{shape}")
        # Size check before allocating: the member must hold exactly the array's bytes.
        if info.file_size - f.tell() != nbytes:
            raise _bad(path, f"array {name!r} has {info.file_size - f.tell()} bytes of data; "
                             f"{nbytes} expected")
        data = f.read(nbytes)
    if len(data) != nbytes:
        raise _bad(path, f"array {name!r} is truncated")
    if zlib.crc32(data) != crc:
        raise _bad(path, f"array {name!r} fails its checksum (the file is corrupted)")
    return np.frombuffer(data, dtype=dt).reshape(shape).copy()


def load_model(path: Any) -> Any:
    """Load a model written by ``MatrixFactorization.save``.

    Raises
    ------
    ModelFileError
        The file is not an mfsgd model, is damaged, or comes from a newer format.
    FileNotFoundError
        There is no such file.
    """
    from .model import FittedState, MatrixFactorization

    spath = os.fspath(path)
    try:
        zf = zipfile.ZipFile(spath, "r")
    except zipfile.BadZipFile:
        raise _bad(spath, "it is not a ZIP archive") from None
    except (OSError, ValueError) as e:
        if isinstance(e, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        raise _bad(spath, str(e)) from None
    try:
        with zf:
            header = _read_header(zf, spath)
            specs = _expected_specs(header, spath)
            arrays = {n: _read_array(zf, n, *specs[n], int(header["arrays"][n]["crc32"]), spath)
                      for n in _ARRAYS}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
            RuntimeError) as e:
        raise _bad(spath, f"its archive is damaged ({type(e).__name__}: {e})") from None
    return _build(header, arrays, spath, MatrixFactorization, FittedState)


def _build(header: dict, arrays: dict, path: str, cls: Any, state_cls: Any) -> Any:
    try:
        gm = float(header["global_mean"])
        lo, hi = (float(x) for x in header["rating_range"])
        biased = header["biased"]
        history = header["history"]
        n_epochs = int(header["n_epochs"])
        best = header.get("best_epoch")
        n_blocks = int(header.get("n_blocks", 1))
        params = header["params"]
        if not isinstance(params, dict) or not isinstance(history, list) or \
                not isinstance(biased, bool) or not (best is None or isinstance(best, int)):
            raise TypeError("wrong field types")
    except (KeyError, TypeError, ValueError) as e:
        raise _bad(path, f"its header is incomplete ({e})") from None
    model = cls()
    known = set(model.get_params())
    try:
        model.set_params(**{k: v for k, v in params.items() if k in known})
        model._checked_params()
    except (TypeError, ValueError) as e:
        raise _bad(path, f"its stored parameters are invalid ({e})") from None
    model.dtype = arrays["user_factors"].dtype.type
    ip, seen = arrays["seen_indptr"], arrays["seen_items"]
    if ip[0] != 0 or ip[-1] != seen.size or np.any(np.diff(ip) < 0) or (
            seen.size and (seen.min() < 0 or seen.max() >= arrays["item_ids"].size)):
        raise _bad(path, "its seen-items index is inconsistent")
    for n in ("user_ids", "item_ids"):
        ids = arrays[n]
        if ids.size > 1 and len(np.unique(ids)) != ids.size:
            raise _bad(path, f"{n} has duplicates")
    if not all(np.isfinite(arrays[n]).all() for n in _ARRAYS[:4]) or not (
            np.isfinite(gm) and lo <= hi):
        raise _bad(path, "it holds non-finite parameters")
    from .model import padded_width

    k = arrays["user_factors"].shape[1]
    padded = {}
    for n in ("user_factors", "item_factors"):
        a = arrays[n]
        padded[n] = np.zeros((a.shape[0], padded_width(k, a.dtype)), dtype=a.dtype)
        padded[n][:, :k] = a
    model._state = state_cls(
        global_mean=gm, user_factors=padded["user_factors"], item_factors=padded["item_factors"],
        n_factors=k,
        user_bias=arrays["user_bias"], item_bias=arrays["item_bias"],
        user_map=idmap_from_ids(arrays["user_ids"]), item_map=idmap_from_ids(arrays["item_ids"]),
        rating_range=(lo, hi), biased=biased, history=history, n_epochs=n_epochs,
        best_epoch=best, n_blocks=n_blocks, seen_indptr=ip, seen_items=seen)
    return model


load = load_model
