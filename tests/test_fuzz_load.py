"""Fuzzing of ``mfsgd.load``: a damaged, truncated, forged or hostile model file raises
``mfsgd.ModelFileError`` or loads a model identical to the one saved -- never another
exception, a crash, a hang, a NumPy warning, or an allocation much larger than the file.

Every load here runs under ``tracemalloc`` (NumPy reports its buffers to it too), and
the decompression bombs and size lies also run in a child process whose address space
is capped (``RLIMIT_AS``), so an attempted big allocation fails the test either way.
"""

import bz2
import io
import json
import math
import os
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import warnings
import zipfile
import zlib

import numpy as np
import pytest
from helpers import asan_loaded, rewrite
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

import mfsgd
from mfsgd import MatrixFactorization, ModelFileError

# MFSGD_FUZZ_SCALE=20 multiplies the examples for a longer local run (default: < 20 s).
# At the default scale the examples are derandomized (drawn from a hash of each test),
# so a run of the suite, in CI or after a clone, tests the same cases every time; a
# scaled run draws fresh ones, to explore.
SCALE = max(1, int(os.environ.get("MFSGD_FUZZ_SCALE", "1")))
FUZZ = settings(derandomize=SCALE == 1, max_examples=150 * SCALE, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
SOME = settings(FUZZ, max_examples=100 * SCALE)

# A load may allocate a few copies of the file (the bytes read, the array, its
# native-order copy) plus a fixed overhead; a blow-up is orders of magnitude more.
ALLOC_SLACK = 4 << 20


# ----------------------------------------------------------------------------- the model
@pytest.fixture(scope="module")
def original(tmp_path_factory):
    """A small model with string user ids (some non-ASCII), int item ids, an early-stopping
    history and a best epoch: every header field is present and non-trivial."""
    rng = np.random.default_rng(0)
    users = np.array(["ann", "bob", "ça", "d\u00e9j\u00e0"])[np.arange(40) % 4]
    items = np.array([-7, 3, 10**12, 42])[rng.permutation(40) % 4]
    ratings = rng.uniform(1, 5, 40)
    m = MatrixFactorization(n_factors=2, n_epochs=4, random_state=0, early_stopping=True,
                            validation_fraction=0.25, n_iter_no_change=5)
    with pytest.warns(UserWarning, match="too few to tell the epochs apart"):
        m.fit((users, items, ratings))  # small on purpose: a file of every header field
    path = tmp_path_factory.mktemp("orig") / "model.mfsgd"
    m.save(path)
    return m, path.read_bytes()


@pytest.fixture(scope="module")
def optional_arrays(tmp_path_factory):
    """A ranking model with every optional array: AdaGrad's accumulators and min_rating's
    counts and rows below it (format 5), one user known only from a low row."""
    rng = np.random.default_rng(1)
    users, items = rng.integers(0, 6, 40), rng.integers(0, 5, 40)
    ratings = rng.integers(1, 6, 40).astype(float)
    m = MatrixFactorization(loss="bpr", min_rating=3, adagrad=True, n_factors=2,
                            n_epochs=2, random_state=0)
    m.fit((np.r_[users, 99], np.r_[items, 0], np.r_[ratings, 1.0]))
    path = tmp_path_factory.mktemp("optional") / "model.mfsgd"
    m.save(path)
    return m, path.read_bytes()


def assert_same_optional(m, orig):
    assert_identical(m, orig)
    for a, b in zip((*m._state.accumulators(), m.user_counts_, m.item_counts_,
                     *m._state.low()),
                    (*orig._state.accumulators(), orig.user_counts_, orig.item_counts_,
                     *orig._state.low()), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "case.mfsgd"


def try_load(scratch, data):
    """Load ``data`` from a file: the model, or None for ModelFileError. Any other
    exception or any warning propagates (fails the test); so does a big allocation.
    The file is also loaded memory-mapped, which must give the same outcome: the same
    refusal or the same model."""
    scratch.write_bytes(data)
    # A new file each time (renamed over the last): a mapped file is never rewritten.
    mapped_path = scratch.with_suffix(".mapped")
    scratch.with_suffix(".tmp").write_bytes(data)
    os.replace(scratch.with_suffix(".tmp"), mapped_path)
    tracemalloc.start()
    outcome = "loaded"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                m = mfsgd.load(scratch)
            except ModelFileError as e:
                assert str(e).startswith(f"{scratch} ") and str(e).endswith("."), str(e)
                outcome = "refused: " + str(e)[len(str(scratch)):].split("(")[0][:60]
                with pytest.raises(ModelFileError) as mapped_error:
                    mfsgd.load(mapped_path, mmap=True)
                why = str(mapped_error.value)[len(str(mapped_path)):]
                assert why == str(e)[len(str(scratch)):]
                return None
            assert_identical(mfsgd.load(mapped_path, mmap=True), m)
            return m
    finally:
        if currently_in_test_context():
            event(outcome)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak <= 4 * len(data) + ALLOC_SLACK, f"load allocated {peak} bytes"


def public_state(m):
    return {
        "arrays": [getattr(m, n) for n in ("user_factors_", "item_factors_", "user_bias_",
                                           "item_bias_", "user_ids_", "item_ids_")],
        "scalars": (m.global_mean_, m.rating_range_, m.n_epochs_, m.best_epoch_,
                    m.n_blocks_, json.dumps(m.history_)),
        "params": {k: v for k, v in m.get_params().items() if k != "dtype"},
        "dtype": np.dtype(m.dtype),
    }


def assert_identical(m, orig):
    a, b = public_state(m), public_state(orig)
    for x, y in zip(a["arrays"], b["arrays"], strict=True):
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)
    assert a["scalars"] == b["scalars"] and a["params"] == b["params"]
    assert a["dtype"] == b["dtype"]
    u, i = orig.user_ids_, orig.item_ids_
    pairs = (np.resize(u, 12), np.resize(i, 12))
    np.testing.assert_array_equal(m.predict(pairs), orig.predict(pairs))


def assert_usable(m, orig, scratch):
    """A model loaded from a file whose header was edited: the arrays are the saved ones
    (they are checksummed), predictions are finite with and without clipping, it saves
    and loads back unchanged, and partial_fit gives a finite model or a clean error."""
    for x, y in zip(public_state(m)["arrays"], public_state(orig)["arrays"], strict=True):
        np.testing.assert_array_equal(x, y)
    pairs = (np.resize(orig.user_ids_, 12), np.resize(orig.item_ids_, 12))
    new = (np.array(["new-user", "ann"]), np.array([99, -7]))
    for clip in (True, False):
        m.clip = clip
        for p in (pairs, new):
            assert np.isfinite(m.predict(p)).all()
    out = scratch.with_suffix(".again")
    m.save(out)
    again = mfsgd.load(out)
    assert_identical(again, m)
    params = m.get_params()
    if isinstance(params["n_threads"], int) and params["n_threads"] <= 4:
        try:
            with warnings.catch_warnings():  # a loaded range may not reach these ratings
                warnings.simplefilter("ignore", UserWarning)
                m.partial_fit((np.array(["ann", "zed"]), np.array([3, 5]),
                               np.array([1.0, 2.0])))
        except (TypeError, ValueError):
            pass
        else:
            assert np.isfinite(m.user_factors_).all() and np.isfinite(m.user_bias_).all()


# ----------------------------------------------------------------------------- zip surgery
def central_entry(data, name):
    """Offset of the central-directory record of member ``name``."""
    pos = 0
    while (pos := data.find(b"PK\x01\x02", pos)) >= 0:
        n = struct.unpack_from("<H", data, pos + 28)[0]
        if data[pos + 46:pos + 46 + n] == name.encode():
            return pos
        pos += 4
    raise KeyError(name)


def patch_central(data, name, *, method=None, compress_size=None, file_size=None, flags=None):
    b = bytearray(data)
    pos = central_entry(data, name)
    for off, fmt, v in ((8, "<H", flags), (10, "<H", method), (20, "<I", compress_size),
                        (24, "<I", file_size)):
        if v is not None:
            struct.pack_into(fmt, b, pos + off, v)
    return bytes(b)


def npy_bytes(a):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a)
    return buf.getvalue()


def npy_split(member):
    """(dtype, fortran, header length) of a version 1.0 npy member, as save writes."""
    buf = io.BytesIO(member)
    assert np.lib.format.read_magic(buf) == (1, 0)
    _, fortran, dt = np.lib.format.read_array_header_1_0(buf)
    return dt, fortran, buf.tell()


def npy_claiming(member, shape, data=True):
    """The member's npy bytes with a header claiming ``shape``; its data kept, or none."""
    dt, fortran, start = npy_split(member)
    h = repr({"descr": np.lib.format.dtype_to_descr(dt), "fortran_order": fortran,
              "shape": tuple(shape)}).encode("latin1")
    h += b" " * (63 - (10 + len(h)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + \
        (member[start:] if data else b"")


def set_path(h, path, value):
    """h with the JSON value at ``path`` (keys / list indices) replaced, or deleted when
    value is DELETE."""
    node = h
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return h


DELETE = object()


def often(common, rare):
    """``common`` half of the time, else ``rare``."""
    return st.booleans().flatmap(lambda c: common if c else rare)
ARRAYS = ("user_factors", "item_factors", "user_bias", "item_bias", "user_ids", "item_ids")


def header_paths(h):
    """Every path into the header JSON (dict keys and list indices), leaves and inner
    nodes alike."""
    out = []

    def walk(node, prefix):
        items = node.items() if isinstance(node, dict) else \
            enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            out.append(prefix + (k,))
            walk(v, prefix + (k,))

    walk(h, ())
    return out


INTERESTING = st.sampled_from([
    0, -1, 1, 2, 5, 99, 2**31, 2**62, 2**63, 2**64, 10**400, -(10**400), 2**32 - 1,
    float("inf"), float("-inf"), float("nan"), 1e300, -1e300, 3.5e38, -0.0, 0.5, True, False,
    None, "", "3", "\x00", "mfsgd", [], {}, [1, 2], [float("inf")], [-1], [2**62, 4],
    "<f4", ">f4", "<f8", ">f8", "|O", "<U0", "<U5", "<i8", ">i8", "<u8", "<i4", "|i1", "V8",
    "f4,f4", "(2,)f4", "M8[s]", "float32", "float16", [{"epoch": 1}], [1], [[]],
])
json_leaf = st.one_of(INTERESTING, st.integers(-(2**70), 2**70), st.floats(),
                      st.text(max_size=8))
NUMBERS = st.sampled_from([float("inf"), float("-inf"), float("nan"), 10**400, -(10**400),
                           1e300, 3.5e38, -5, 0, 2**63, 2**64, True, "3", None, [], 2.5])
json_value = often(NUMBERS, often(INTERESTING, st.recursive(
    json_leaf, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=8)))
KEY_PATHS = [("global_mean",), ("rating_range",), ("rating_range", 0), ("rating_range", 1),
             ("n_epochs",), ("best_epoch",), ("n_blocks",), ("biased",), ("history",),
             ("history", 0), ("history", 0, "train_rmse"), ("format",), ("format_version",),
             ("params",), ("params", "dtype"), ("params", "random_state"),
             ("params", "n_factors"), ("params", "clip"), ("arrays",)] + [
    ("arrays", n, f) for n in ARRAYS for f in ("dtype", "shape", "crc32")] + [
    ("arrays", n, "shape", i) for n in ARRAYS[:2] for i in (0, 1)]


# ----------------------------------------------------------------------------- byte-level
def test_the_original_loads_identically(original, scratch):
    m, data = original
    assert_identical(try_load(scratch, data), m)


@FUZZ
@given(cut=st.integers(0, 10**9))
def test_truncated_files_are_refused(original, scratch, cut):
    _, data = original
    assert try_load(scratch, data[:cut % len(data)]) is None


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 7)), min_size=1,
                      max_size=4))
def test_bit_flips_are_refused_or_harmless(original, scratch, flips):
    m, data = original
    b = bytearray(data)
    for pos, bit in flips:
        b[pos % len(b)] ^= 1 << bit
    loaded = try_load(scratch, bytes(b))
    if loaded is not None:  # e.g. a flipped timestamp: the model must be the saved one
        assert_identical(loaded, m)


def test_the_optional_arrays_load_identically(optional_arrays, scratch):
    m, data = optional_arrays
    assert json.loads(zipfile.ZipFile(io.BytesIO(data)).read("header.json"))[
        "format_version"] == 5
    assert m._state.low()[1].size > 0  # the fixture has rows below min_rating
    assert_same_optional(try_load(scratch, data), m)


@SOME
@given(flips=st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 7)), min_size=1,
                      max_size=4), cut=st.none() | st.integers(0, 10**9))
def test_optional_arrays_damaged_are_refused_or_harmless(optional_arrays, scratch, flips,
                                                         cut):
    """Bit flips (and truncations) of a file with the accumulators and counts: refused,
    or the saved model itself, those arrays included."""
    m, data = optional_arrays
    b = bytearray(data)
    for pos, bit in flips:
        b[pos % len(b)] ^= 1 << bit
    if cut is not None:
        b = b[:cut % len(b)]
    loaded = try_load(scratch, bytes(b))
    if loaded is not None:
        assert_same_optional(loaded, m)


@FUZZ
@given(pos=st.integers(0, 10**9), junk=st.binary(min_size=1, max_size=64),
       insert=st.booleans())
def test_overwritten_or_inserted_bytes_are_refused_or_harmless(original, scratch, pos, junk,
                                                               insert):
    m, data = original
    pos %= len(data)
    b = data[:pos] + junk + data[pos + (0 if insert else len(junk)):]
    loaded = try_load(scratch, b)
    if loaded is not None:
        assert_identical(loaded, m)


@FUZZ
@given(data=st.one_of(st.binary(max_size=2048),
                      st.binary(max_size=2048).map(lambda b: b"PK\x03\x04" + b),
                      st.binary(max_size=200).map(lambda b: b + b"PK\x05\x06" + bytes(18))))
def test_random_bytes_are_refused(scratch, data):
    assert try_load(scratch, data) is None


# ----------------------------------------------------------------------------- the header
@SOME
@given(data=st.data())
@example(data=None)
def test_mutated_header_fields_are_refused_or_give_a_sound_model(original, scratch, data):
    m, raw = original
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        header = json.loads(zf.read("header.json"))
    if data is None:  # the explicit example: the unmodified header round-trips exactly
        loaded = try_load(scratch, rewrite(raw, header=lambda h: h))
        assert_identical(loaded, m)
        return
    paths = often(st.sampled_from(KEY_PATHS), st.sampled_from(header_paths(header)))
    value = st.integers(0, 9).flatmap(lambda k: st.just(DELETE) if k == 0 else json_value)
    edits = data.draw(st.lists(st.tuples(paths, value), min_size=1, max_size=2))

    def edit(h):
        for path, value in edits:
            try:
                set_path(h, path, value)
            except (KeyError, IndexError, TypeError):
                pass  # an earlier edit removed or replaced the parent
        return json.dumps(h, allow_nan=True).encode()

    loaded = try_load(scratch, rewrite(raw, header=edit))
    if loaded is not None:
        assert_usable(loaded, m, scratch)


FORGED = {
    # Found by the fuzz tests above: a bare OverflowError/ValueError escaped ...
    "shape Infinity": ({"arrays": {"user_bias": {"shape": [float("inf")]}}}, "forbidden"),
    "crc Infinity": ({"arrays": {"user_bias": {"crc32": float("inf")}}}, "described wrongly"),
    "n_epochs Infinity": ({"n_epochs": float("inf")}, "'n_epochs' is invalid"),
    "global_mean 10**400": ({"global_mean": 10**400}, "'global_mean' is invalid"),
    # ... or a model loaded that then failed: inf predictions (mu beyond float32 in the
    # kernel), partial_fit seeding with a negative epoch count or random_state, `mfsgd
    # info` reading history_[-1]["train_rmse"], a dtype of None from junk
    "global_mean 1e300 in float32": ({"global_mean": 1e300, "params": {"clip": False}},
                                     "'global_mean' is invalid"),
    "n_epochs -5": ({"n_epochs": -5}, "'n_epochs' is invalid"),
    "n_epochs 10**400": ({"n_epochs": 10**400}, "'n_epochs' is invalid"),  # lr schedule
    "random_state -1": ({"params": {"random_state": -1}}, "random_state must be"),
    "history rows not dicts": ({"history": [1, 2]}, "'history' is invalid"),
    "history rows without train_rmse": ({"history": [{"epoch": 1}]}, "'history' is invalid"),
    "dtype param junk": ({"params": {"dtype": {"a": 5}}}, "stored parameters are invalid"),
    "rating_range -inf..inf": ({"rating_range": [float("-inf"), float("inf")]},
                               "'rating_range' is invalid"),
    "n_blocks 0": ({"n_blocks": 0}, "'n_blocks' is invalid"),
    "best_epoch True": ({"best_epoch": True}, "'best_epoch' is invalid"),
    "best_epoch after the last": ({"best_epoch": 99}, "'best_epoch' is invalid"),
    # refused before too; pinned so they stay refused
    "ids dtype U0": ({"arrays": {"user_ids": {"dtype": "<U0"}}}, "int64, uint64 or unicode"),
    "ids dtype int8": ({"arrays": {"item_ids": {"dtype": "|i1"}}}, "int64, uint64 or unicode"),
    "dtype is a dict": ({"arrays": {"user_ids": {"dtype": {"a": 1}}}}, "described wrongly"),
    # 3: AdaGrad's accumulators, 4: min_rating's counts, 5: its rows below min_rating
    "newer format": ({"format_version": 6}, "format 6 .*Upgrade mfsgd"),
    "global_mean a string": ({"global_mean": "3.5"}, "'global_mean' is invalid"),
}


def _merge(h, patch):
    """h with the patch's leaves written in (nested dicts are merged, not replaced)."""
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(h.get(k), dict):
            _merge(h[k], v)
        else:
            h[k] = v
    return h


@pytest.mark.parametrize("case", list(FORGED))
def test_forged_header_fields_are_refused(original, scratch, case):
    patch, message = FORGED[case]
    scratch.write_bytes(rewrite(original[1], header=lambda h: _merge(h, patch)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. no "overflow encountered in cast"
        with pytest.raises(ModelFileError, match=message):
            mfsgd.load(scratch)


def test_json_integer_beyond_the_digit_limit_is_refused(original, scratch):
    huge = b"9" * 5000  # int() refuses > 4300 digits with a ValueError, not a JSON error
    scratch.write_bytes(rewrite(original[1], header=lambda h: json.dumps(h).encode().replace(
        b'"n_blocks": ', b'"n_blocks": ' + huge + b", \"x\": ")))
    with pytest.raises(ModelFileError, match="not valid JSON"):
        mfsgd.load(scratch)


# ----------------------------------------------------------------------------- the arrays
big_dim = st.one_of(st.integers(0, 50), st.sampled_from([2**31 - 1, 2**31, 2**32, 2**40,
                                                         2**62, 2**63 - 1]))


@SOME
@given(name=st.sampled_from(ARRAYS), shape=st.lists(big_dim, min_size=0, max_size=3),
       also_header=st.booleans())
def test_npy_headers_claiming_other_shapes_are_refused(original, scratch, name, shape,
                                                       also_header):
    m, raw = original
    true_shape = list(np.asarray(getattr(m, name + "_")).shape)
    if shape == true_shape:
        shape = shape + [1]

    def header(h):
        if also_header:  # the header.json claims the same: only the sizes can tell
            h["arrays"][name]["shape"] = shape
        return h

    data = rewrite(raw, header=header,
                   members={f"{name}.npy": lambda b: npy_claiming(b, shape)})
    assert try_load(scratch, data) is None


@pytest.mark.parametrize("k", [2**62, 2**26, 2**31, 2**40])
def test_consistent_huge_shape_claims_are_refused(original, scratch, k):
    """header.json and the npy headers agree on 4 x k factor matrices with no data behind
    them, and the checksums claimed are those of no data (0). Found by this test: with
    k = 2**62 the byte count 4 * 4 * 2**62 wrapped to 0 in int64 arithmetic, every check
    passed, and reshaping the empty buffer raised a bare ValueError."""
    m, raw = original
    assert len(m.user_ids_) == len(m.item_ids_) == 4
    names = ("user_factors", "item_factors")

    def header(h):
        for n in names:
            h["arrays"][n].update(shape=[4, k], crc32=0)
        return h

    data = rewrite(raw, header=header, members={
        f"{n}.npy": lambda b: npy_claiming(b, (4, k), data=False) for n in names})
    assert try_load(scratch, data) is None


def npy_with_header_text(member, text, version=b"\x01\x00"):
    """The member's data behind an npy header of arbitrary text."""
    _, _, start = npy_split(member)
    size = struct.pack("<H" if version == b"\x01\x00" else "<I", len(text))
    return b"\x93NUMPY" + version + size + text + member[start:]


BROKEN_NPY_HEADERS = {
    # Found by the atheris target: NumPy retries a header that does not parse as a
    # Python 2 one through tokenize, whose TokenError is not a ValueError.
    "unclosed bracket": b"{'descr': '<f4', 'fortran_order': False, 'shape': (4, 2\n",
    # NumPy accepts this Python 2 header with a UserWarning; mfsgd never wrote one.
    "python 2 longs": b"{'descr': '<f4', 'fortran_order': False, 'shape': (4L, 2L), }\n",
    "deep nesting": b"(" * 5000 + b")" * 5000,
    "not a dict": b"[1, 2, 3]\n",
    "extra key": b"{'descr': '<f4', 'fortran_order': False, 'shape': (4, 2), 'x': 1}\n",
    "descr a list": b"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (4,)}\n",
    "descr junk": b"{'descr': '<f4,(99999999999999,)i8', 'fortran_order': False, 'shape': ()}",
    "shape of floats": b"{'descr': '<f4', 'fortran_order': False, 'shape': (4.0, 2.0)}\n",
    "fortran": b"{'descr': '<f4', 'fortran_order': True, 'shape': (4, 2)}\n",
    "not latin-1 text": "{'descr': '<f4', 'sh\u00e4pe': 1}".encode("utf-8"),
    "too long": b" " * 10001,
}


@pytest.mark.parametrize("case", list(BROKEN_NPY_HEADERS))
def test_broken_npy_headers_are_refused(original, scratch, case):
    text = BROKEN_NPY_HEADERS[case]
    data = rewrite(original[1], members={
        "user_factors.npy": lambda b: npy_with_header_text(b, text)})
    assert try_load(scratch, data) is None


@pytest.mark.parametrize("version,length", [(b"\x02\x00", 2**32 - 1), (b"\x03\x00", 10),
                                            (b"\x01\x00", 65535)])
def test_npy_header_lengths_and_versions(original, scratch, version, length):
    def member(b):
        _, _, start = npy_split(b)
        size = struct.pack("<H" if version == b"\x01\x00" else "<I", length)
        return b"\x93NUMPY" + version + size + b[start:]
    assert try_load(scratch, rewrite(original[1], members={"item_bias.npy": member})) is None


@SOME
@given(text=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(
    lambda t: t.encode("utf-8")), st.builds(
        lambda d, f, sh: repr({"descr": d, "fortran_order": f, "shape": sh}).encode("latin1",
                                                                                    "replace"),
        st.one_of(st.text(max_size=12), st.sampled_from(["<f4", ">f4", "<f8", "|b1", "<U3"])),
        st.one_of(st.booleans(), st.integers()), st.tuples(st.integers(-3, 2**65)))),
       name=st.sampled_from(ARRAYS))
def test_random_npy_headers_are_refused(original, scratch, text, name):
    data = rewrite(original[1], members={f"{name}.npy": lambda b: npy_with_header_text(b, text)})
    assert try_load(scratch, data) is None


def _forge_arrays(raw, arrays, header_edit=None):
    """Replace whole arrays (with their true dtype, shape and CRC in the header): a file
    that passes every checksum, as a hand-crafted one would."""
    def header(h):
        for n, a in arrays.items():
            h["arrays"][n] = {"dtype": a.dtype.str, "shape": list(a.shape),
                              "crc32": zlib.crc32(np.ascontiguousarray(a).view(np.uint8))}
        return header_edit(h) if header_edit else h

    return rewrite(raw, header=header, members={f"{n}.npy": (lambda b, a=a: npy_bytes(a))
                                                for n, a in arrays.items()})


def test_big_endian_arrays_load_in_native_order(original, scratch):
    """Found by this suite: a '>f4' model loaded, then predict raised Cython's
    "Big-endian buffer not supported" ValueError."""
    m, raw = original
    arrays = {n: getattr(m, n + "_").astype(getattr(m, n + "_").dtype.newbyteorder(">"))
              for n in ARRAYS[:4]}
    loaded = try_load(scratch, _forge_arrays(raw, arrays))
    assert loaded.user_factors_.dtype == np.float32  # native
    assert_identical(loaded, m)


def test_invalid_unicode_ids_are_refused(original, scratch):
    """Found by this suite: code points above U+10FFFF loaded, then printing the ids
    raised SystemError."""
    m, raw = original
    bad = np.frombuffer(np.full(len(m.user_ids_), 0xFFFFFFFF, "<u4").tobytes(), "<U1")
    with pytest.raises(ModelFileError, match="invalid characters"):
        mfsgd.load(scratch if scratch.write_bytes(_forge_arrays(raw, {"user_ids": bad}))
                   else scratch)


@pytest.mark.parametrize("name", ["user_ids", "item_ids"])
def test_duplicate_ids_are_refused(original, scratch, name):
    m, raw = original
    ids = getattr(m, name + "_").copy()
    ids[1] = ids[0]
    scratch.write_bytes(_forge_arrays(raw, {name: ids}))
    with pytest.raises(ModelFileError, match="duplicates"):
        mfsgd.load(scratch)


# ----------------------------------------------------------------------------- the archive
@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2,
                                         zipfile.ZIP_LZMA])
def test_compressed_members_are_refused(original, scratch, compression):
    scratch.write_bytes(rewrite(original[1], compression=compression))
    with pytest.raises(ModelFileError, match=r"is compressed \(ZIP method \d+\)"):
        mfsgd.load(scratch)


@SOME
@given(name=st.sampled_from(("header.json",) + tuple(f"{n}.npy" for n in ARRAYS)),
       compress_size=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
       file_size=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
       method=st.one_of(st.none(), st.sampled_from([0, 1, 8, 9, 12, 14, 99, 65535])),
       flags=st.one_of(st.none(), st.integers(0, 0xFFFF)))
def test_central_directory_lies_are_refused_or_harmless(original, scratch, name,
                                                        compress_size, file_size, method,
                                                        flags):
    m, raw = original
    data = patch_central(raw, name, method=method, compress_size=compress_size,
                         file_size=file_size, flags=flags)
    loaded = try_load(scratch, data)
    if loaded is not None:
        assert_identical(loaded, m)


def test_member_size_claims_beyond_the_file_are_refused(original, scratch):
    """A stored member whose (consistent) sizes claim 1.3 GB: Python's reader would
    allocate the claimed size before finding the file short."""
    m, raw = original
    data = _size_lie(raw, m)
    scratch.write_bytes(data)
    with pytest.raises(ModelFileError, match="more than the file holds"):
        mfsgd.load(scratch)


def _size_lie(raw, m):
    k = 2**26  # 5 x 2**26 float32 = 1.34 GB claimed, 0 bytes present
    nu, ni = len(m.user_ids_), len(m.item_ids_)
    shapes = {"user_factors": (nu, k), "item_factors": (ni, k)}

    def header(h):
        for n, s in shapes.items():
            h["arrays"][n]["shape"] = list(s)
        return h

    data = rewrite(raw, header=header,
                   members={f"{n}.npy": (lambda b, s=s: npy_claiming(b, s, data=False))
                            for n, s in shapes.items()})
    for n, s in shapes.items():
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            head = zf.getinfo(f"{n}.npy").file_size
        claim = head + 4 * math.prod(s)
        data = patch_central(data, f"{n}.npy", compress_size=claim, file_size=claim)
    return data


BOMB_BYTES = 384 << 20  # decompressed size; the child's cap leaves it 128 MiB


def _bz2_bomb_member(prefix):
    """bz2 stream of prefix + BOMB_BYTES zero bytes (~0.5 KB, built in ~2 s)."""
    c = bz2.BZ2Compressor(9)
    parts = [c.compress(prefix)]
    chunk = bytes(1 << 20)
    for _ in range(BOMB_BYTES >> 20):
        parts.append(c.compress(chunk))
    parts.append(c.flush())
    return b"".join(parts)


def _with_raw_member(raw, name, payload, method, file_size):
    """raw with member ``name`` replaced by the already-compressed ``payload``: written as
    stored, then the compression method and uncompressed size patched in both the local
    and the central header (flags, time, date and CRC are zeroed)."""
    data = rewrite(raw, members={name: lambda b: payload})
    b = bytearray(data)
    pos = central_entry(data, name)
    local = struct.unpack_from("<I", data, pos + 42)[0]
    # flags, method, time, date, crc, sizes: at +8 in a central record, +6 in a local one
    for at in (pos + 8, local + 6):
        struct.pack_into("<HHHHIII", b, at, 0, method, 0, 0, 0, len(payload), file_size)
    return bytes(b)


@pytest.fixture(scope="module")
def hostile_files(original, tmp_path_factory):
    m, raw = original
    d = tmp_path_factory.mktemp("hostile")
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        npy_head = zf.read("user_bias.npy")[:128]
    bomb = _bz2_bomb_member(npy_head)
    files = {
        # an array member as a bz2 bomb, sizes honest (384 MiB) or lying (tiny)
        "bz2 bomb": _with_raw_member(raw, "user_bias.npy", bomb, zipfile.ZIP_BZIP2,
                                     BOMB_BYTES),
        "bz2 bomb, small size claim": _with_raw_member(raw, "user_bias.npy", bomb,
                                                       zipfile.ZIP_BZIP2, 100),
        "bz2 bomb as header": _with_raw_member(raw, "header.json", bomb, zipfile.ZIP_BZIP2,
                                               1000),
        "deflate bomb": _with_raw_member(
            raw, "user_bias.npy", zlib.compress(npy_head + bytes(64 << 20), 9)[2:-4],
            zipfile.ZIP_DEFLATED, 100),
        "size lie": _size_lie(raw, m),
    }
    paths = {}
    for name, data in files.items():
        p = d / (name.replace(" ", "_").replace(",", "") + ".mfsgd")
        p.write_bytes(data)
        paths[name] = p
    return paths


@pytest.mark.parametrize("case", ["bz2 bomb", "bz2 bomb, small size claim",
                                  "bz2 bomb as header", "deflate bomb", "size lie"])
def test_hostile_files_are_refused_in_process(hostile_files, scratch, case):
    assert try_load(scratch, hostile_files[case].read_bytes()) is None


CHILD = textwrap.dedent("""
    import json, resource, sys
    import mfsgd
    with open("/proc/self/statm") as f:
        vm = int(f.read().split()[0]) * resource.getpagesize()
    cap = vm + (128 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    out = {}
    for path in sys.argv[1:]:
        try:
            mfsgd.load(path)
            out[path] = "loaded"
        except mfsgd.ModelFileError:
            out[path] = "ModelFileError"
        except BaseException as e:
            out[path] = type(e).__name__
    print(json.dumps(out))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc: Linux")
@pytest.mark.skipif(asan_loaded(), reason="ASan reserves terabytes of address space")
def test_hostile_files_are_refused_under_a_memory_cap(hostile_files):
    """In a child whose address space may grow by 128 MiB only: a 384 MiB decompression,
    or the 1.3 GB buffer of a size lie, would raise MemoryError there."""
    paths = [str(p) for p in hostile_files.values()]
    proc = subprocess.run([sys.executable, "-c", CHILD, *paths], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result == {p: "ModelFileError" for p in paths}
