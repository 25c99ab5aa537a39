"""Save and load models: one ZIP archive of .npy arrays plus a JSON header.

Nothing is ever unpickled: arrays are read with ``allow_pickle=False``, ids are stored
as integer or fixed-width unicode arrays, and everything else lives in the JSON header.
A file is checked before any array is allocated: member names, JSON fields, each
array's dtype and shape against the header and against the other arrays, the member's
size against that shape, and a CRC-32 of every array's bytes.

Writes go to a temporary file in the target directory, are flushed to disk, then
renamed over the target, so a failed save never damages an existing file; the file gets
the mode ``open()`` would give it, or keeps the mode of the file it replaces
(``_fileio.atomic_write``).
"""

from __future__ import annotations

import ast
import io
import json
import math
import mmap
import numbers
import os
import stat
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from ._config import LOSSES
from ._fileio import atomic_write
from ._idmap import sorted_unique
from ._state import FittedState
from ._training import MAX_BLOCKS, all_finite_from
from ._version import __version__
from .exceptions import ModelFileError

FORMAT_NAME = "mfsgd"
# 2: the loss (and its parameters) of issue 14; history rows of ranking models carry
# train_loss instead of train_rmse. Format 1 files load as loss="squared".
# 3: format 2 plus AdaGrad's accumulators (user_accum, item_accum: a model trained with
# adagrad=True), so that partial_fit after load continues each row's rate. Only such a
# model is written in format 3: a reader of format 2 then asks for an upgrade instead of
# calling the file damaged, and every other model stays readable by it.
# 4: format 3 plus the interactions per user and item (user_counts, item_counts: a
# ranking model trained with min_rating, whose seen record also holds the rows it
# dropped). Written only for such a model, as format 3 is only for AdaGrad's.
# 5: format 4 plus those dropped rows apart (low_indptr, low_items: a CSR like the seen
# record's), so that the interactions are exactly the seen record minus them. A format 4
# file loads without them (fold_in and partial_fit then approximate as they did).
FORMAT_VERSION = 5
MAX_HEADER_BYTES = 64 << 20  # the JSON header (history included) is never near this
_ARRAYS = ("user_factors", "item_factors", "user_bias", "item_bias", "user_ids", "item_ids",
           "seen_indptr", "seen_items")
_ACCUM = ("user_accum", "item_accum")  # format 3
_COUNTS = ("user_counts", "item_counts")  # format 4
_LOW = ("low_indptr", "low_items")  # format 5
_FLOATS = {"float32", "float64"}
NPY_HEADER_MAX = 10000  # bytes; NumPy's own limit for loading untrusted headers
MAX_DIM = 2**31 - 1  # rows are int32 indices in the kernel; no factor count comes near it
# Members: a fixed date, so saving a model twice gives the same bytes; data aligned to
# cache lines through a padding extra field (_write_member).
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_MEMBER_ALIGN = 64
_PAD_FIELD = 0xD935
_LOCAL_HEADER = 30  # bytes of a ZIP local file header before its name and extra field

__all__ = ["write_model", "read_model"]


def _json_param(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):  # float, NumPy floats, Fraction: as fit read them
        return float(v)
    if v is None or isinstance(v, str):
        return v
    try:
        return np.dtype(v).name  # dtype
    except TypeError:
        return None  # e.g. a Generator as random_state: not storable, reset to None


def stored_params(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters as a file stores them (JSON values), hence as ``read_model``'s
    ``parse_params`` will see them: ``MatrixFactorization.save`` checks these before
    writing."""
    return {k: _json_param(v) for k, v in params.items()}


def write_model(path: Any, st: FittedState, params: dict[str, Any],
                extra: dict[str, Any] | None = None) -> None:
    """Write a fitted state and the estimator's parameters to ``path``, atomically.

    ``extra`` (JSON-serialisable) is stored in the header under ``"extra"``: a training
    checkpoint keeps its resume information there."""
    # A new file gets the mode open() would give it (0o666 & ~umask), a replaced one keeps
    # its mode, so a serving process running as another user can read the model.
    with atomic_write(path, "wb") as f:
        write_model_file(f, st, params, extra)


def write_model_file(f: Any, st: FittedState, params: dict[str, Any],
                     extra: dict[str, Any] | None = None) -> None:
    """``write_model`` into an open binary file (e.g. one opened through fsspec)."""
    arrays = {
        "user_factors": st.factors("user_factors"), "item_factors": st.factors("item_factors"),
        "user_bias": st.user_bias, "item_bias": st.item_bias,
        "user_ids": st.user_map.ids, "item_ids": st.item_map.ids,
        "seen_indptr": st.seen()[0], "seen_items": st.seen()[1],
    }
    if st.user_accum is not None:
        arrays.update(zip(_ACCUM, st.accumulators(), strict=True))
    if st.user_counts is not None and st.item_counts is not None:
        arrays.update(user_counts=st.user_counts, item_counts=st.item_counts)
        if st.low_indptr is not None:
            arrays.update(zip(_LOW, st.low(), strict=True))
    version = 5 if "low_indptr" in arrays else 4 if "user_counts" in arrays else \
        3 if st.user_accum is not None else 2
    header = {
        "format": FORMAT_NAME,
        "format_version": version,
        "mfsgd_version": __version__,
        "params": stored_params(params),
        "global_mean": st.global_mean,
        "rating_range": list(st.rating_range),
        "biased": st.biased,
        "loss": st.loss,
        "history": st.history,
        "n_epochs": st.n_epochs,
        "best_epoch": st.best_epoch,
        "n_blocks": st.n_blocks,
        "arrays": {k: {"dtype": a.dtype.str, "shape": list(a.shape),
                       "crc32": zlib.crc32(np.ascontiguousarray(a).view(np.uint8).reshape(-1))}
                   for k, a in arrays.items()},
    }
    if extra is not None:
        header["extra"] = extra
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
        _write_member(zf, "header.json", json.dumps(header, allow_nan=True).encode("utf-8"))
        for name, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
            _write_member(zf, f"{name}.npy", buf.getvalue())


def _write_member(zf: zipfile.ZipFile, name: str, data: bytes) -> None:
    """One stored member, written so that the same model always gives the same bytes and
    its data can be memory-mapped in place (``read_model(..., mmap_arrays=True)``):

    - a fixed date (ZIP's earliest, 1980-01-01) instead of the time of the save;
    - its data starting on a 64-byte boundary of the file, by a padding field in the
      local header's extra data (ID 0xD935, as Android's zipalign writes; readers skip
      extra fields they do not know). An .npy header is itself padded to a multiple of 64
      bytes, so the array's first element is then on a cache line, as the kernel's
      fast loops want it. A ZIP64 member (over 2 GiB) gets a 20-byte ZIP64 field after
      ours, counted here; any other offset only costs the mapping (the reader checks)."""
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o600 << 16  # what writestr(name, ...) gives a member
    zip64 = 20 if len(data) * 1.05 > zipfile.ZIP64_LIMIT else 0  # zipfile's own rule
    start = zf.fp.tell() + _LOCAL_HEADER + len(name.encode("utf-8")) + zip64 + 4
    pad = -start % _MEMBER_ALIGN
    info.extra = struct.pack("<HH", _PAD_FIELD, pad) + bytes(pad)
    zf.writestr(info, data)


def _bad(path: str, why: str) -> ModelFileError:
    return ModelFileError(f"{path!s} is not a valid mfsgd model file: {why}.")


def _member(zf: zipfile.ZipFile, name: str, archive_size: int, path: str,
            missing: str) -> zipfile.ZipInfo:
    """The member ``name``, checked so that reading it allocates no more than the file's
    own size: stored (mfsgd never compresses, so a compressed member can only be a
    decompression bomb or another tool's file), not encrypted, and with sizes that agree
    with each other and fit inside the file (the sizes come from the central directory, and
    Python's reader allocates the requested size before reading)."""
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise _bad(path, missing) from None
    if info.compress_type != zipfile.ZIP_STORED:
        raise _bad(path, f"member {name!r} is compressed (ZIP method {info.compress_type}); "
                         f"mfsgd model files are stored uncompressed")
    if info.flag_bits & 0x1:
        raise _bad(path, f"member {name!r} is encrypted")
    if info.compress_size != info.file_size or \
            info.header_offset + info.compress_size > archive_size:
        raise _bad(path, f"member {name!r} claims {info.file_size} bytes, more than the "
                         f"file holds ({archive_size} bytes)")
    return info


def _read_header(zf: zipfile.ZipFile, path: str, archive_size: int) -> dict[str, Any]:
    info = _member(zf, "header.json", archive_size, path,
                   "it has no header.json (not an mfsgd model)")
    if info.file_size > MAX_HEADER_BYTES:
        raise _bad(path, f"its header is {info.file_size} bytes (limit {MAX_HEADER_BYTES})")
    with zf.open(info) as f:
        raw = f.read(MAX_HEADER_BYTES + 1)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # ValueError: bad UTF-8, bad JSON, or an
        # integer of more than sys.get_int_max_str_digits() digits
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
    # the optional pairs of arrays this format may add (each pair whole or not at all)
    groups = [g for g, v in ((_ACCUM, 3), (_COUNTS, 4), (_LOW, 5))
              if header["format_version"] >= v]
    names = _ARRAYS
    if isinstance(specs, dict):
        names += tuple(n for g in groups if set(g) <= set(specs) for n in g)
    if not isinstance(specs, dict) or set(specs) != set(names):
        raise _bad(path, f"its header must describe the arrays {list(_ARRAYS)}"
                         + "".join(f" (and may add both of {list(g)})" for g in groups))
    out = {}
    for name in names:
        s = specs[name]
        if not isinstance(s, dict) or not isinstance(s.get("dtype"), str) or \
                not isinstance(s.get("shape"), list) or not _is_int(s.get("crc32")) or \
                not 0 <= s["crc32"] < 2**32:
            raise _bad(path, f"array {name!r} is described wrongly (want dtype: str, shape: "
                             f"list of ints, crc32: unsigned 32-bit int)")
        try:
            dt = np.dtype(s["dtype"])
        except (TypeError, ValueError, KeyError, IndexError, OverflowError, SyntaxError,
                RecursionError) as e:
            raise _bad(path, f"array {name!r} has an unknown dtype ({e})") from None
        shape = tuple(s["shape"])
        if dt.hasobject or not all(_is_int(x) and x >= 0 for x in shape):
            raise _bad(path, f"array {name!r} has a forbidden dtype or shape")
        out[name] = (dt, shape)
    fdt = out["user_factors"][0]
    if fdt.kind != "f" or fdt.name not in _FLOATS or any(out[n][0] != fdt for n in _ARRAYS[:4]):
        raise _bad(path, "the parameter arrays must all be float32 or all float64")
    for n in ("user_ids", "item_ids"):
        dt = out[n][0]
        if not (dt.kind == "U" and dt.itemsize > 0 or dt.kind in "iu" and dt.itemsize == 8):
            raise _bad(path, f"{n} must hold int64, uint64 or unicode ids")
    (nu, k), (ni, k2) = _two_d(out, "user_factors", path), _two_d(out, "item_factors", path)
    if max(nu, ni, k) > MAX_DIM:
        raise _bad(path, f"its factor arrays are {nu} x {k} and {ni} x {k2}; at most "
                         f"{MAX_DIM} rows and factors are supported")
    if min(nu, ni) < 1:  # no fit makes such a model, and recommend would index its rows
        raise _bad(path, f"it has {nu} users and {ni} items; a model has at least one of "
                         f"each")
    want = {"user_bias": (nu,), "item_bias": (ni,), "user_ids": (nu,), "item_ids": (ni,),
            "seen_indptr": (nu + 1,)}
    if "user_accum" in out:
        want.update(user_accum=(nu,), item_accum=(ni,))
        if any(out[n][0] != fdt for n in _ACCUM):
            raise _bad(path, "the AdaGrad accumulators must have the factors' dtype")
    if "user_counts" in out:
        want.update(user_counts=(nu,), item_counts=(ni,))
        if any(out[n][0] != np.dtype("<i8") for n in _COUNTS):
            raise _bad(path, "the interaction counts must be int64")
    if "low_indptr" in out:
        if "user_counts" not in out:
            raise _bad(path, "it has rows below min_rating (low_indptr, low_items) but no "
                             "interaction counts")
        want.update(low_indptr=(nu + 1,))
    for ip, items, what in (("seen_indptr", "seen_items", "seen-items"),
                            ("low_indptr", "low_items", "low-rows")):
        if ip in out and (out[ip][0] != np.dtype("<i8") or out[items][0] != np.dtype("<i4")
                          or len(out[items][1]) != 1):
            raise _bad(path, f"the {what} arrays must be int64 indptr and 1-D int32 items")
    if k != k2 or any(out[n][1] != s for n, s in want.items()):
        raise _bad(path, "array shapes disagree (factors, biases and ids must match)")
    return out


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_real(x: Any) -> bool:
    """A finite JSON number (a huge int would overflow float())."""
    if _is_int(x):
        return abs(x) < 2**1023
    return isinstance(x, float) and math.isfinite(x)


def _two_d(specs: dict, name: str, path: str) -> tuple[int, int]:
    shape = specs[name][1]
    if len(shape) != 2 or shape[1] < 1:
        raise _bad(path, f"{name} must be 2-D with at least one factor; got shape {shape}")
    return shape


def _npy_header(f: Any, name: str, path: str) -> tuple[tuple, bool, np.dtype]:
    """(shape, fortran_order, dtype) from an npy header of version 1.0 or 2.0, read
    strictly: a literal dict of exactly those three keys, descr a dtype string, at most
    NPY_HEADER_MAX bytes. (NumPy's reader also retries Python 2 headers through tokenize,
    whose TokenError is no ValueError, and warns when that works.)"""
    magic = f.read(8)
    if len(magic) != 8 or magic[:6] != b"\x93NUMPY" or magic[6:] not in (b"\x01\x00",
                                                                      b"\x02\x00"):
        raise _bad(path, f"array {name!r} is not an npy array of version 1.0 or 2.0")
    size_format = "<H" if magic[6] == 1 else "<I"
    raw = f.read(struct.calcsize(size_format))
    if len(raw) != struct.calcsize(size_format):
        raise _bad(path, f"array {name!r} has a broken header (truncated)")
    length = struct.unpack(size_format, raw)[0]
    if length > NPY_HEADER_MAX:
        raise _bad(path, f"array {name!r} has a header of {length} bytes (limit "
                         f"{NPY_HEADER_MAX})")
    text = f.read(length)
    try:
        if len(text) != length:
            raise ValueError("truncated")
        d = ast.literal_eval(text.decode("latin1"))
        ok = isinstance(d, dict) and set(d) == {"descr", "fortran_order", "shape"} and \
            isinstance(d["descr"], str) and isinstance(d["fortran_order"], bool) and \
            isinstance(d["shape"], tuple) and all(_is_int(x) for x in d["shape"])
        if not ok:
            raise ValueError("not a dict of descr, fortran_order and shape")
        dt = np.dtype(d["descr"])
    except (ValueError, TypeError, SyntaxError, KeyError, IndexError, OverflowError,
            RecursionError, MemoryError) as e:
        raise _bad(path, f"array {name!r} has a broken header ({type(e).__name__})") from None
    return d["shape"], d["fortran_order"], dt


def _read_array(zf: zipfile.ZipFile, name: str, dt: np.dtype, shape: tuple, crc: int,
                path: str, archive_size: int, mapped: mmap.mmap | None = None) -> np.ndarray:
    """The member's array, checked; with ``mapped`` (the whole file, mapped read-only), a
    read-only view of the file's own bytes where the member stores them in this
    machine's byte order, instead of a copy."""
    info = _member(zf, f"{name}.npy", archive_size, path, f"array {name!r} is missing")
    nbytes = dt.itemsize * math.prod(shape)  # Python ints: np.prod would wrap around
    with zf.open(info) as f:
        fshape, fortran, fdt = _npy_header(f, name, path)
        if fdt != dt or tuple(fshape) != shape or fortran:
            raise _bad(path, f"array {name!r} is {fdt}{tuple(fshape)} but the header says "
                             f"{dt}{shape}")
        # Size check before allocating: the member must hold exactly the array's bytes.
        if info.file_size - f.tell() != nbytes:
            raise _bad(path, f"array {name!r} has {info.file_size - f.tell()} bytes of data; "
                             f"{nbytes} expected")
        at = None if mapped is None else _mapped_at(mapped, info, f.tell(), nbytes, dt,
                                                    archive_size)
        if at is None:
            data = f.read(nbytes)  # zipfile checks the member's CRC-32 on reaching its end
        else:
            view = memoryview(mapped)
            data = view[at:at + nbytes]
            # the same check: the ZIP CRC-32 of the member, npy header and data
            if zlib.crc32(data, zlib.crc32(view[at - f.tell():at])) != info.CRC:
                raise zipfile.BadZipFile(f"Bad CRC-32 for file {info.filename!r}")
    if len(data) != nbytes:
        raise _bad(path, f"array {name!r} is truncated")
    if zlib.crc32(data) != crc:
        raise _bad(path, f"array {name!r} fails its checksum (the file is corrupted)")
    a = np.frombuffer(data, dtype=dt).reshape(shape)
    if at is None:
        # Native byte order: the kernel's typed memoryviews refuse big-endian buffers.
        a = a.astype(dt.newbyteorder("="))
    if dt.kind == "U" and a.size and a.view(np.uint32).max() > 0x10FFFF:
        raise _bad(path, f"array {name!r} holds invalid characters (not Unicode)")
    return a


def _mapped_at(mapped: mmap.mmap, info: zipfile.ZipInfo, npy_header: int, nbytes: int,
               dt: np.dtype, archive_size: int) -> int | None:
    """The file offset of a member's array data, to use it in place: after the member's
    local header, name and extra field (whose lengths may differ from the central
    directory's: zf.open has checked that header) and its ``npy_header`` bytes. None,
    to read it instead, when it is not in this machine's byte order, not aligned for its
    dtype (the kernel's C code reads it), or not inside the file (reading then says how)."""
    start = info.header_offset
    if not dt.isnative or start + _LOCAL_HEADER > archive_size or \
            mapped[start:start + 4] != b"PK\x03\x04":
        return None
    name_len, extra_len = struct.unpack("<HH", mapped[start + 26:start + 30])
    at = start + _LOCAL_HEADER + name_len + extra_len + npy_header
    return at if at + nbytes <= archive_size and at % dt.alignment == 0 else None


def read_model(path: Any, parse_params: Callable[[dict[str, Any]], Any], *,
               mmap_arrays: bool = False) -> tuple[Any, FittedState, dict[str, Any]]:
    """Read a file written by ``write_model``: (``parse_params(params)``, the fitted
    state, the header's ``extra`` dict). ``parse_params`` validates the stored
    parameters (TypeError, ValueError or OverflowError become ModelFileError) and
    returns what the caller wants of them, such as a new estimator.

    Only regular files are read: a device, FIFO or socket (``/dev/zero``, a named pipe)
    raises ModelFileError before any byte is read. A ZIP archive is read from its end,
    which a pipe cannot seek to, and such a file has no size to bound the reads by
    (``/dev/zero`` never ends); to load a model from a stream, save it to a file first.

    With ``mmap_arrays``, the arrays are read-only views of the file mapped into memory
    (checked as always: every byte is read once for its checksum), which processes
    loading the same file share through the page cache. Arrays stored in another byte
    order or not aligned for their dtype, and factor matrices whose rows the kernel
    needs padded or whose data is not on a cache line (files of other writers), are
    copied as without it; so is everything when the file cannot be mapped. Each check
    of the read applies, the ZIP CRC-32 of every member included, with the same message.

    Raises
    ------
    ModelFileError
        The file is not an mfsgd model (or not a regular file), is damaged, or comes
        from a newer format.
    FileNotFoundError, IsADirectoryError, PermissionError
        The file cannot be opened (``filename`` is ``path``).
    """
    spath = os.fspath(path)
    # FileNotFoundError, IsADirectoryError... propagate. O_NONBLOCK: opening a FIFO would
    # otherwise wait for a writer; it changes nothing for a regular file.
    with open(spath, "rb", opener=_open_nonblocking) as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise _bad(spath, "it is not a regular file (a device, pipe or socket)")
        mapped = None
        if mmap_arrays:
            try:
                # Python 3.13+ need not keep a duplicate of the file descriptor open
                mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ,
                                   **({"trackfd": False} if sys.version_info >= (3, 13)
                                      else {}))
            except (OSError, ValueError):  # ValueError: an empty file (not a model)
                pass
        return read_model_file(fh, st.st_size, spath, parse_params, mapped=mapped)


def _open_nonblocking(path: Any, flags: int) -> int:
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


def read_model_file(fh: Any, size: int, spath: str, parse_params: Callable[[dict[str, Any]], Any],
                    *, mapped: mmap.mmap | None = None) -> tuple[Any, FittedState, dict[str, Any]]:
    """``read_model`` of an open binary file of ``size`` bytes (``spath`` names it in
    messages): for files that are not local paths, e.g. opened through fsspec.
    ``mapped``: the same file mapped read-only, to take the arrays from."""
    try:
        zf = zipfile.ZipFile(fh, "r")
    except zipfile.BadZipFile:
        raise _bad(spath, "it is not a ZIP archive") from None
    except (OSError, ValueError, EOFError, OverflowError, struct.error,
            NotImplementedError, RuntimeError) as e:  # e.g. "zip file version 6.4"
        raise _bad(spath, f"it is not a readable ZIP archive ({type(e).__name__}: {e})") \
            from None
    try:
        with zf:
            header = _read_header(zf, spath, size)
            specs = _expected_specs(header, spath)
            arrays = {n: _read_array(zf, n, *specs[n], header["arrays"][n]["crc32"], spath,
                                     size, mapped) for n in specs}
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
            RuntimeError, ValueError, OverflowError, struct.error) as e:
        # zipfile's own errors on a damaged archive (ValueError: e.g. a bad UTF-8 name
        # in a local header; RuntimeError: an encrypted member; struct.error: short
        # records).
        raise _bad(spath, f"its archive is damaged ({type(e).__name__}: {e})") from None
    return _build(header, arrays, spath, parse_params)


def _build(header: dict, arrays: dict, path: str,
           parse_params: Callable[[dict[str, Any]], Any]) -> tuple[Any, FittedState, dict]:
    try:
        gm, rr = header["global_mean"], header["rating_range"]
        biased, history, params = header["biased"], header["history"], header["params"]
        n_epochs, best = header["n_epochs"], header.get("best_epoch")
        n_blocks = header.get("n_blocks", 1)
        loss = header["loss"] if header["format_version"] >= 2 else "squared"
    except (KeyError, TypeError) as e:
        raise _bad(path, f"its header is incomplete (no {e})") from None
    # Field by field, with the types save writes: int() or float() of a JSON value could
    # raise OverflowError (Infinity, 10**400) or accept a string.
    fmax = float(np.finfo(arrays["user_factors"].dtype).max)
    checks = (
        # beyond the parameters' float range, mu would overflow in the kernel
        ("global_mean", gm, _is_real(gm) and abs(gm) <= fmax),
        ("rating_range", rr, isinstance(rr, list) and len(rr) == 2
         and all(_is_real(x) for x in rr) and rr[0] <= rr[1]),
        ("biased", biased, isinstance(biased, bool)),
        ("params", params, isinstance(params, dict)),
        ("loss", loss, isinstance(loss, str) and loss in LOSSES),
        # rows as fit writes them; `mfsgd info` reads history_[-1]["train_rmse"] (squared)
        ("history", history, isinstance(history, list) and all(
            isinstance(h, dict) and _is_number(h.get("train_rmse" if loss == "squared"
                                                     else "train_loss")) for h in history)),
        # bounded: the learning-rate schedule turns the epoch count into a float
        ("n_epochs", n_epochs, _is_int(n_epochs) and 0 <= n_epochs <= MAX_DIM),
        ("best_epoch", best, best is None or _is_int(best) and _is_int(n_epochs)
         and 1 <= best <= n_epochs),
        ("n_blocks", n_blocks, _is_int(n_blocks) and 1 <= n_blocks <= MAX_BLOCKS),
    )
    for field, value, ok in checks:
        if not ok:
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise _bad(path, f"its header field {field!r} is invalid ({shown})")
    gm, (lo, hi) = float(gm), (float(rr[0]), float(rr[1]))
    extra = header.get("extra", {})
    if not isinstance(extra, dict):
        raise _bad(path, "its header field 'extra' is invalid")
    try:
        parsed = parse_params(params)
    except (TypeError, ValueError, OverflowError) as e:  # OverflowError: float() of a
        # huge JSON integer, e.g. min_rating 10**400
        raise _bad(path, f"its stored parameters are invalid ({e})") from None
    stored = params.get("loss", "squared")
    if stored != loss:  # the factors were trained for the header's loss; params must agree
        raise _bad(path, f"its header says loss {loss!r} but its stored parameters say "
                         f"{stored!r}")
    for ipn, itn, what in (("seen_indptr", "seen_items", "seen-items"),
                           ("low_indptr", "low_items", "low-rows")):
        if ipn not in arrays:
            continue
        ip, seen = arrays[ipn], arrays[itn]
        if ip[0] != 0 or ip[-1] != seen.size or np.any(np.diff(ip) < 0) or (
                seen.size and (seen.min() < 0 or seen.max() >= arrays["item_ids"].size)):
            raise _bad(path, f"its {what} index is inconsistent")
    if "low_indptr" in arrays and np.any(np.diff(arrays["low_indptr"])
                                         > np.diff(arrays["seen_indptr"])):
        raise _bad(path, "it has more rows below min_rating than seen rows for a user")
    for n in ("user_ids", "item_ids"):
        ids = arrays[n]
        if ids.size > 1 and sorted_unique(ids).size != ids.size:
            raise _bad(path, f"{n} has duplicates")
    if not all(np.isfinite(arrays[n]).all() for n in _ARRAYS[:4]) or not (
            np.isfinite(gm) and lo <= hi):
        raise _bad(path, "it holds non-finite parameters")
    # An accumulator starts at 1 and only grows (+inf, when float32's range is passed,
    # freezes its row; NaN fails the comparison).
    if "user_accum" in arrays and not all(np.all(arrays[n] >= 1) for n in _ACCUM):
        raise _bad(path, "its AdaGrad accumulators are not all >= 1")
    if "user_counts" in arrays and not all(np.all(arrays[n] >= 0) for n in _COUNTS):
        raise _bad(path, "its interaction counts are not all >= 0")
    # Finite is not enough: factors of 1e20 give an infinite u . v (then NaN predictions,
    # even clipped). Refuse what training refuses as diverged (the same bound): for a
    # ranking loss, scores beyond float32's range whatever the dtype (score_limit). No
    # fit, partial_fit or fold_in keeps such parameters, so only a foreign or edited file
    # (or one saved before that rule) holds them, and its next partial_fit would raise
    # DivergenceError at once: better said here.
    extremes = [[(float(a.max()), float(a.min())) if a.size else (0.0, 0.0)]
                for a in (arrays[n] for n in _ARRAYS[:4])]
    fit_args = (extremes, gm if biased else 0.0, arrays["user_factors"].shape[1],
                arrays["user_factors"].dtype)
    if not all_finite_from(*fit_args):
        raise _bad(path, "it holds parameters whose predictions overflow")
    if loss != "squared" and not all_finite_from(*fit_args, ranking=True):
        raise _bad(path, f"it holds parameters whose scores exceed float32's range, which for "
                         f"a ranking loss ({loss!r}) means training diverged")
    state = FittedState.from_arrays(
        arrays, global_mean=gm, rating_range=(lo, hi), biased=biased, history=history,
        n_epochs=n_epochs, best_epoch=best, n_blocks=n_blocks, loss=loss)
    return parsed, state, extra
