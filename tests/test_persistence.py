"""save / load: round trips, atomic writes, and refusal of damaged or foreign files."""

import io
import json
import os
import pickle
import re
import zipfile
import zlib

import numpy as np
import pytest
from helpers import rewrite

import mfsgd
from mfsgd import MatrixFactorization, ModelFileError, persistence


@pytest.fixture(scope="module")
def fitted(small_data):
    u, i, r = small_data
    su = np.array([f"u{x}" for x in u])
    return MatrixFactorization(n_factors=5, n_epochs=3, random_state=0, early_stopping=True,
                               validation_fraction=0.2).fit((su, i, r))


@pytest.fixture()
def saved(fitted, tmp_path):
    path = tmp_path / "model.mfsgd"
    fitted.save(path)
    return path


def test_roundtrip_is_bit_identical(fitted, saved, small_data):
    u, i, _ = small_data
    su = np.array([f"u{x}" for x in u])
    m = mfsgd.load(saved)
    np.testing.assert_array_equal(m.predict((su, i)), fitted.predict((su, i)))
    for name in ("user_factors_", "item_factors_", "user_bias_", "item_bias_", "user_ids_",
                 "item_ids_"):
        a, b = getattr(m, name), getattr(fitted, name)
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert m.history_ == fitted.history_
    assert m.get_params() == fitted.get_params()
    assert (m.global_mean_, m.rating_range_, m.n_epochs_, m.best_epoch_) == (
        fitted.global_mean_, fitted.rating_range_, fitted.n_epochs_, fitted.best_epoch_)
    assert MatrixFactorization.load(saved).n_epochs_ == fitted.n_epochs_
    # a loaded model keeps training
    m.partial_fit((su[:100], i[:100], np.full(100, 3.0)))


def test_roundtrip_float64_and_int_ids(small_data, tmp_path):
    m = MatrixFactorization(n_factors=3, n_epochs=2, dtype=np.float64, random_state=0)
    m.fit(small_data)
    m.save(tmp_path / "m")
    m2 = mfsgd.load(tmp_path / "m")  # saved exactly at the given path, no suffix added
    assert m2.user_factors_.dtype == np.float64 and m2.user_ids_.dtype == np.int64
    np.testing.assert_array_equal(m2.predict(small_data), m.predict(small_data))


def test_file_holds_no_pickle(saved):
    with zipfile.ZipFile(saved) as zf:
        names = set(zf.namelist())
        header = json.loads(zf.read("header.json"))
    assert names == {"header.json"} | {f"{n}.npy" for n in persistence._ARRAYS}
    # without AdaGrad accumulators: format 2, which readers from before them load
    assert header["format"] == "mfsgd" and header["format_version"] == 2
    assert header["mfsgd_version"] == mfsgd.__version__
    assert b"pickle" not in saved.read_bytes()


def _rewrite(src, dst, *, header=None, arrays=None, drop=()):
    """Copy a model file, replacing the header or some members' bytes."""
    dst.write_bytes(rewrite(src.read_bytes(), header=header, members=arrays, drop=drop))
    return dst


def _flip(data):
    b = bytearray(data)
    b[-3] ^= 0x10
    return bytes(b)


def _npy(a):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a)
    return buf.getvalue()


BAD_FILES = {
    "random bytes": (lambda p, d: d.write_bytes(os.urandom(2000)), "not a ZIP archive"),
    "empty file": (lambda p, d: d.write_bytes(b""), "not a ZIP archive"),
    "truncated": (lambda p, d: d.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
                  "not a ZIP archive|damaged|truncated"),
    "foreign zip": (lambda p, d: zipfile.ZipFile(d, "w").writestr("a.txt", "hi"),
                    "no header.json"),
    "header not json": (lambda p, d: _rewrite(p, d, header=lambda h: b"{nope"), "not valid JSON"),
    "other format": (lambda p, d: _rewrite(p, d, header=lambda h: {**h, "format": "x"}),
                     "does not name the mfsgd format"),
    "newer version": (lambda p, d: _rewrite(p, d, header=lambda h: {**h, "format_version": 99}),
                      "format 99.*Upgrade mfsgd"),
    "bit flip in factors": (lambda p, d: _rewrite(p, d, arrays={"user_factors.npy": _flip}),
                            "fails its checksum"),
    "missing array": (lambda p, d: _rewrite(p, d, drop={"item_bias.npy"}),
                      "'item_bias' is missing"),
    "shape lie in header": (
        lambda p, d: _rewrite(p, d, header=lambda h: {**h, "arrays": {
            **h["arrays"], "user_bias": {**h["arrays"]["user_bias"], "shape": [10**12]}}}),
        "shapes disagree"),
    "huge npy shape": (
        lambda p, d: _rewrite(p, d, arrays={"user_bias.npy": lambda b: b.replace(
            b"'shape': (", b"'shape': (999999999999")}),
        "broken header|but the header says|bytes of data"),
    "wrong dtype": (
        lambda p, d: _rewrite(p, d, arrays={"user_bias.npy": lambda b: _npy(
            np.zeros(len(np.load(io.BytesIO(b))), dtype=np.float64))}),
        "but the header says"),
    "object ids": (
        lambda p, d: _rewrite(p, d, header=lambda h: {**h, "arrays": {
            **h["arrays"], "user_ids": {**h["arrays"]["user_ids"], "dtype": "|O"}}}),
        "forbidden dtype"),
    "bad params": (lambda p, d: _rewrite(p, d, header=lambda h: {
        **h, "params": {**h["params"], "n_factors": -3}}), "stored parameters are invalid"),
    "header is a list": (lambda p, d: _rewrite(p, d, header=lambda h: [1, 2]),
                         "does not name the mfsgd format"),
    # factors trained for the squared loss must not be served as a ranking model
    "loss of params disagrees": (lambda p, d: _rewrite(p, d, header=lambda h: {
        **h, "params": {**h["params"], "loss": "bpr"}}),
        "header says loss 'squared' but its stored parameters say 'bpr'"),
}


@pytest.fixture(scope="module")
def adagrad_saved(small_data, tmp_path_factory):
    m = MatrixFactorization(n_factors=3, n_epochs=2, adagrad=True, random_state=0)
    path = tmp_path_factory.mktemp("adagrad") / "m.mfsgd"
    m.fit(small_data).save(path)
    return m, path


def _with_array(name, fn):
    """A rewrite that replaces array ``name`` by ``fn(array)``, its header entry (CRC
    included) updated to match: what is refused is then the array itself."""
    def make(p, d):
        with zipfile.ZipFile(p) as zf:
            a = np.ascontiguousarray(fn(np.load(io.BytesIO(zf.read(f"{name}.npy")))))
        spec = {"dtype": a.dtype.str, "shape": list(a.shape),
                "crc32": zlib.crc32(a.view(np.uint8).reshape(-1))}
        _rewrite(p, d, header=lambda h: {**h, "arrays": {**h["arrays"], name: spec}},
                 arrays={f"{name}.npy": lambda raw: _npy(a)})
    return make


def test_adagrad_accumulators_are_saved_in_format_3(adagrad_saved, tmp_path):
    """A model with AdaGrad's accumulators is written with them, in format 3 (a format-2
    reader then asks for an upgrade); loaded, it holds the same accumulators."""
    m, path = adagrad_saved
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        header = json.loads(zf.read("header.json"))
    assert header["format_version"] == 3 <= persistence.FORMAT_VERSION
    assert names == {"header.json"} | {f"{n}.npy" for n in
                                       persistence._ARRAYS + persistence._ACCUM}
    got = mfsgd.load(path)._state
    for a, b in zip(got.accumulators(), m._state.accumulators(), strict=True):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_array_equal(a, b)


def _without_array(name):
    """A rewrite that drops array ``name`` and its header entry."""
    return lambda p, d: _rewrite(p, d, drop={f"{name}.npy"}, header=lambda h: {
        **h, "arrays": {k: v for k, v in h["arrays"].items() if k != name}})


def _as_format(version):
    """A rewrite that only relabels the file's format version."""
    return lambda p, d: _rewrite(p, d, header=lambda h: {**h, "format_version": version})


def _assert_refused(make, message, saved_path, tmp_path):
    bad = tmp_path / "bad.mfsgd"
    make(saved_path, bad)
    with pytest.raises(ModelFileError, match=message):
        mfsgd.load(bad)


BAD_ACCUMULATORS = {
    "below 1": (_with_array("user_accum", lambda a: a - a.max()), "not all >= 1"),
    "NaN": (_with_array("item_accum", lambda a: np.where(np.arange(a.size) == 1, np.nan, a)
                        .astype(a.dtype)), "not all >= 1"),
    "other dtype": (_with_array("item_accum", lambda a: a.astype(np.float64)),
                    "accumulators must have the factors' dtype"),
    "wrong length": (_with_array("user_accum", lambda a: a[:-1]), "shapes disagree"),
    "only one of the two": (_without_array("item_accum"), "must describe the arrays"),
    "in a format 2 file": (_as_format(2), "must describe the arrays"),
}


@pytest.mark.parametrize("case", list(BAD_ACCUMULATORS))
def test_damaged_accumulators_are_refused(adagrad_saved, tmp_path, case):
    _assert_refused(*BAD_ACCUMULATORS[case], adagrad_saved[1], tmp_path)


@pytest.fixture(scope="module")
def counts_saved(tmp_path_factory):
    """A min_rating model with a user known only from low rows, saved."""
    rng = np.random.default_rng(3)
    u, i = rng.integers(0, 30, 600), rng.integers(0, 20, 600)
    r = rng.integers(1, 6, 600).astype(float)
    u, i, r = np.r_[u, 99, 99], np.r_[i, 0, 1], np.r_[r, 1.0, 2.0]
    m = MatrixFactorization(loss="bpr", min_rating=4, n_factors=3, n_epochs=2,
                            adagrad=True, random_state=0).fit((u, i, r))
    path = tmp_path_factory.mktemp("counts") / "m.mfsgd"
    m.save(path)
    return m, path


def test_min_rating_counts_are_saved_in_format_5(counts_saved):
    """A min_rating model keeps its interactions per user and item, and the rows below
    min_rating, apart from its seen record; its file (format 5) carries them with the
    accumulators, and the loaded model has the same counts and rows and serves its user
    without interactions the same list."""
    m, path = counts_saved
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        header = json.loads(zf.read("header.json"))
    assert header["format_version"] == 5 == persistence.FORMAT_VERSION
    assert names == {"header.json"} | {f"{n}.npy" for n in persistence._ARRAYS
                                       + persistence._ACCUM + persistence._COUNTS
                                       + persistence._LOW}
    got = mfsgd.load(path)
    assert got.user_counts_[list(got.user_ids_).index(99)] == 0
    np.testing.assert_array_equal(got.user_counts_, m.user_counts_)
    np.testing.assert_array_equal(got.item_counts_, m.item_counts_)
    for a, b in zip(got._state.low(), m._state.low(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert m._state.low()[1].size > 0
    for a, b in zip(got.recommend(99, n=5), m.recommend(99, n=5), strict=True):
        np.testing.assert_array_equal(a, b)


BAD_COUNTS = {
    "negative": (_with_array("user_counts", lambda a: a - a.max() - 1), "not all >= 0"),
    "float": (_with_array("item_counts", lambda a: a.astype(np.float64)), "must be int64"),
    "wrong length": (_with_array("item_counts", lambda a: a[:-1]), "shapes disagree"),
    "only one of the two": (_without_array("user_counts"), "must describe the arrays"),
    "in a format 3 file": (_as_format(3), "must describe the arrays"),
}


@pytest.mark.parametrize("case", list(BAD_COUNTS))
def test_damaged_counts_are_refused(counts_saved, tmp_path, case):
    _assert_refused(*BAD_COUNTS[case], counts_saved[1], tmp_path)


def _drop_both(names):
    def make(p, d):
        _rewrite(p, d, drop={f"{n}.npy" for n in names}, header=lambda h: {
            **h, "arrays": {k: v for k, v in h["arrays"].items() if k not in names}})
    return make


BAD_LOW = {
    "indptr not from 0": (_with_array("low_indptr", lambda a: a + 1), "low-rows index"),
    "indptr decreasing": (_with_array("low_indptr", lambda a: a[::-1].copy()),
                          "low-rows index"),
    "item out of range": (_with_array("low_items", lambda a: a + 10**6), "low-rows index"),
    "wrong length": (_with_array("low_indptr", lambda a: a[:-1]), "shapes disagree"),
    "int32 indptr": (_with_array("low_indptr", lambda a: a.astype(np.int32)),
                     "low-rows arrays must be int64 indptr"),
    "only one of the two": (_without_array("low_items"), "must describe the arrays"),
    "in a format 4 file": (_as_format(4), "must describe the arrays"),
    "without the counts": (_drop_both(persistence._COUNTS), "no interaction counts"),
}


@pytest.mark.parametrize("case", list(BAD_LOW))
def test_damaged_low_rows_are_refused(counts_saved, tmp_path, case):
    _assert_refused(*BAD_LOW[case], counts_saved[1], tmp_path)


def test_more_low_rows_than_seen_are_refused(tmp_path):
    """A user cannot have more rows below min_rating than seen rows (which hold them)."""
    m = MatrixFactorization(loss="bpr", min_rating=4, n_factors=2, n_epochs=1,
                            random_state=0).fit(([0, 0, 1, 1], [0, 1, 0, 1], [5., 1., 5., 5.]))
    assert [a.tolist() for a in m._state.low()] == [[0, 1, 1], [1]]
    path = tmp_path / "m.mfsgd"
    m.save(path)
    two = _with_arrays(path, tmp_path / "two.mfsgd", low_indptr=np.array([0, 2, 2]),
                       low_items=np.array([1, 0], np.int32))
    assert mfsgd.load(two)._state.low()[1].tolist() == [1, 0]  # no more than seen: loads
    three = _with_arrays(path, tmp_path / "three.mfsgd", low_indptr=np.array([0, 3, 3]),
                         low_items=np.array([1, 1, 1], np.int32))
    with pytest.raises(ModelFileError, match="more rows below min_rating than seen rows"):
        mfsgd.load(three)


def test_a_format_4_file_loads_and_counts_as_before(counts_saved, tmp_path):
    """A format 4 file (before the rows below min_rating were kept apart) loads: its
    model serves the same lists, is written in format 4 again (it cannot tell which seen
    rows were low), and a user known only from low rows, refolded from one of those
    pairs rated high, gains that interaction (the older rule, capped by the count)."""
    m, path = counts_saved
    old = tmp_path / "old.mfsgd"
    _drop_both(persistence._LOW)(path, old)
    _as_format(4)(old, old)
    got = mfsgd.load(old)
    assert got._state.low_indptr is None
    for a, b in zip(got.recommend(99, n=5), m.recommend(99, n=5), strict=True):
        np.testing.assert_array_equal(a, b)
    got.save(tmp_path / "again.mfsgd")  # written as format 4 again: nothing to add
    with zipfile.ZipFile(tmp_path / "again.mfsgd") as zf:
        assert json.loads(zf.read("header.json"))["format_version"] == 4
    row = list(got.user_ids_).index(99)
    got.fold_in(([99], [0], [5.0]))
    assert got.user_counts_[row] == 1 and got.item_counts_.sum() == m.item_counts_.sum() + 1


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_damaged_or_foreign_files_are_refused(saved, tmp_path, case):
    make, message = BAD_FILES[case]
    bad = tmp_path / "bad.mfsgd"
    make(saved, bad)
    with pytest.raises(ModelFileError, match=message):
        mfsgd.load(bad)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        mfsgd.load(tmp_path / "nope.mfsgd")


def test_failed_save_keeps_old_file_and_leaves_no_temp(fitted, saved, monkeypatch, small_data):
    before = saved.read_bytes()
    calls = {"n": 0}
    real = np.lib.format.write_array

    def fail_midway(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real(*a, **k)

    monkeypatch.setattr(np.lib.format, "write_array", fail_midway)
    other = MatrixFactorization(n_factors=2, n_epochs=1, random_state=1).fit(small_data)
    with pytest.raises(OSError, match="No space left"):
        other.save(saved)
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model.mfsgd"]


def test_save_into_missing_directory_fails_cleanly(fitted, tmp_path):
    with pytest.raises(FileNotFoundError):
        fitted.save(tmp_path / "no" / "such" / "dir.mfsgd")


def test_interrupted_save_keeps_old_file(fitted, saved, monkeypatch):
    before = saved.read_bytes()

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        fitted.save(saved)
    assert saved.read_bytes() == before
    assert len(list(saved.parent.iterdir())) == 1


def test_loaded_model_pickles(saved):
    m = mfsgd.load(saved)
    m2 = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(m.user_factors_, m2.user_factors_)


def test_any_real_parameter_and_a_bytes_path_round_trip(small_data, tmp_path):
    """fit takes any real number (a Fraction too): save stores it as the float fit used,
    not None (the loaded model would have fallen back to the default rate). A bytes
    path saves as load reads it."""
    from fractions import Fraction

    m = MatrixFactorization(n_factors=4, n_epochs=2, learning_rate=Fraction(1, 100),
                            random_state=0).fit(small_data)
    path = os.fsencode(tmp_path / "m.mfsgd")
    m.save(path)
    m2 = mfsgd.load(path)
    assert m2.learning_rate == 0.01
    np.testing.assert_array_equal(m2.user_factors_, m.user_factors_)


@pytest.mark.parametrize("kind", ["device", "fifo"])
def test_a_file_that_is_not_regular_is_refused_before_reading(tmp_path, kind):
    """/dev/zero used to be read to its (never reached) end by zipfile: gigabytes of
    memory in seconds. A FIFO without a writer must not block the open either."""
    if kind == "device":
        path = "/dev/zero"
        if not os.path.exists(path):
            pytest.skip("no /dev/zero")
    else:
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs")
        path = tmp_path / "pipe"
        os.mkfifo(path)
    with pytest.raises(ModelFileError, match="is not a regular file"):
        mfsgd.load(path)


def _with_arrays(src, dst, **arrays):
    """Copy a model file, replacing whole arrays and their header entries (shape, dtype,
    checksum) consistently, so only the check under test can refuse it."""
    import zlib

    def header(h):
        for name, a in arrays.items():
            h["arrays"][name] = {"dtype": a.dtype.str, "shape": list(a.shape),
                                 "crc32": zlib.crc32(np.ascontiguousarray(a).tobytes())}
        return h

    return _rewrite(src, dst, header=header,
                    arrays={f"{n}.npy": (lambda b, a=a: _npy(a)) for n, a in arrays.items()})


@pytest.mark.parametrize("side", ["user", "item"])
def test_a_model_without_users_or_items_is_refused(fitted, saved, tmp_path, side):
    """No fit makes such a file; loaded, its recommend failed with an IndexError."""
    m = fitted
    arrays = {f"{side}_factors": np.zeros((0, 5), m.user_factors_.dtype),
              f"{side}_bias": np.zeros(0, m.user_bias_.dtype),
              f"{side}_ids": getattr(m, f"{side}_ids_")[:0],
              "seen_indptr": np.zeros(len(m.user_ids_) + 1 if side == "item" else 1, np.int64),
              "seen_items": np.zeros(0, np.int32)}
    bad = _with_arrays(saved, tmp_path / "bad.mfsgd", **arrays)
    nu = 0 if side == "user" else len(m.user_ids_)
    ni = 0 if side == "item" else len(m.item_ids_)
    with pytest.raises(ModelFileError, match=f"it has {nu} users and {ni} items; a model has "
                                             "at least one of each"):
        mfsgd.load(bad)


def _alternating(shape, value, dtype):
    a = np.full(shape, value, dtype)
    a[:, 1::2] *= -1
    return a


@pytest.mark.parametrize("case", ["factors", "factor width", "biases"])
def test_finite_parameters_whose_predictions_overflow_are_refused(fitted, saved, tmp_path,
                                                                  case):
    """A checksum-valid file with finite factors of 1e20 loaded; its predictions were NaN
    even with clip=True and recommend returned nothing. Training refuses such parameters
    (all_finite_from), so must load."""
    m, dt = fitted, fitted.user_factors_.dtype
    P, Q = m.user_factors_, m.item_factors_
    if case == "factors":  # u . v = +-inf terms: inf - inf = NaN
        arrays = {"user_factors": np.full(P.shape, 1e20, dt),
                  "item_factors": _alternating(Q.shape, 1e20, dt)}
    elif case == "factor width":  # each product 2.25e38 is finite, their sum of 5 is not
        arrays = {"user_factors": np.full(P.shape, 1.5e19, dt),
                  "item_factors": np.full(Q.shape, 1.5e19, dt)}
    else:
        arrays = {"user_bias": np.full(m.user_bias_.shape, 3e38, dt),
                  "item_bias": np.full(m.item_bias_.shape, 3e38, dt)}
    bad = _with_arrays(saved, tmp_path / "overflow.mfsgd", **arrays)
    assert np.isfinite(np.concatenate([a.ravel() for a in arrays.values()])).all()
    with pytest.raises(ModelFileError, match=re.escape(
            f"{bad} is not a valid mfsgd model file: it holds parameters whose predictions "
            "overflow.")):
        mfsgd.load(bad)


@pytest.mark.parametrize("loss", ["bpr", "warp", "squared"])
def test_a_float64_ranking_model_file_beyond_float32_is_refused(tmp_path, loss):
    """Load refuses what training calls diverged: a float64 ranking file whose scores
    exceed float32's range (factors of 1e20, whose products float64 holds) is refused,
    as fit and partial_fit would raise DivergenceError on it; a squared float64 model
    keeps its own dtype's range (its ratings may be that large)."""
    rng = np.random.default_rng(0)
    X = (rng.integers(0, 100, 2000), rng.integers(0, 80, 2000))
    y = rng.integers(1, 6, 2000).astype(float) if loss == "squared" else None
    m = MatrixFactorization(loss=loss, dtype=np.float64, n_factors=4, n_epochs=1,
                            random_state=0).fit(X, y)
    m.save(tmp_path / "m.mfsgd")
    big = _with_arrays(tmp_path / "m.mfsgd", tmp_path / "big.mfsgd",
                       user_factors=np.full(m.user_factors_.shape, 1e20),
                       item_factors=np.full(m.item_factors_.shape, 1e20))
    if loss == "squared":
        assert mfsgd.load(big).user_factors_.max() == 1e20
        return
    with pytest.raises(ModelFileError, match=re.escape(
            f"{big} is not a valid mfsgd model file: it holds parameters whose scores exceed "
            f"float32's range, which for a ranking loss ({loss!r}) means training diverged.")):
        mfsgd.load(big)


def test_large_parameters_whose_predictions_stay_finite_load(fitted, saved, tmp_path,
                                                             small_data):
    m, dt = fitted, fitted.user_factors_.dtype
    ok = _with_arrays(saved, tmp_path / "large.mfsgd",
                      user_factors=np.full(m.user_factors_.shape, 1e18, dt),
                      item_factors=_alternating(m.item_factors_.shape, 1e18, dt))
    loaded = mfsgd.load(ok)
    u, i, _ = small_data
    loaded.clip = False
    assert np.isfinite(loaded.predict((np.array([f"u{x}" for x in u]), i))).all()


def test_a_huge_stored_integer_parameter_is_a_model_file_error(tmp_path, small_data):
    """float(10**400) raised OverflowError out of load."""
    MatrixFactorization(n_factors=2, n_epochs=1, loss="warp", min_rating=3,
                        random_state=0).fit(small_data).save(tmp_path / "m.mfsgd")
    bad = _rewrite(tmp_path / "m.mfsgd", tmp_path / "bad.mfsgd", header=lambda h: {
        **h, "params": {**h["params"], "min_rating": 10**400}})
    with pytest.raises(ModelFileError, match="stored parameters are invalid"):
        mfsgd.load(bad)
    # whatever the parameters' checks raise for it, read_model turns into ModelFileError
    with pytest.raises(ModelFileError, match=r"stored parameters are invalid \(int too large"):
        persistence.read_model(bad, lambda params: float(params["min_rating"]))


@pytest.mark.parametrize("stored", [None, 100])
def test_n_factors_of_a_loaded_model_is_that_of_its_arrays(fitted, saved, tmp_path, small_data,
                                                           stored):
    """Stored parameters without n_factors (or with another) used to give a model that
    claimed n_factors=100 while its arrays had 5; partial_fit then told the user to
    'call fit to start over'."""
    def edit(h):
        params = {k: v for k, v in h["params"].items() if k != "n_factors"}
        return {**h, "params": params if stored is None else {**params, "n_factors": stored}}

    m = mfsgd.load(_rewrite(saved, tmp_path / "k.mfsgd", header=edit))
    assert m.n_factors == 5 == m.user_factors_.shape[1]
    np.testing.assert_array_equal(m.user_factors_, fitted.user_factors_)
    u, i, r = small_data
    m.partial_fit((np.array([f"u{x}" for x in u[:100]]), i[:100], r[:100]))
    assert m.n_epochs_ == fitted.n_epochs_ + 1


@pytest.mark.parametrize("change, exc, message", [
    ({"verbose": 2}, TypeError, r"verbose must be True or False; got 2 \(int\)\."),
    ({"n_threads": 0}, ValueError,
     r"n_threads must be an int from 1 to \d+, or -1 \(every available CPU\); got 0\."),
    ({"learning_rate": 0.0}, ValueError, r"learning_rate must be a float > 0\.0; got 0\.0\."),
    ({"min_rating": 4.0}, ValueError, r"min_rating is only used with a ranking loss"),
    ({"random_state": -1}, ValueError, r"random_state must be a non-negative int; got -1\."),
], ids=["verbose", "n_threads", "learning_rate", "min_rating", "random_state"])
def test_save_refuses_parameters_that_load_would_refuse(fitted, saved, change, exc, message):
    """set_params is checked at the next fit, but save stored the parameters unchecked:
    after set_params(verbose=2) (say, for the next fit) save replaced a good model file
    with one that mfsgd.load refuses. save now runs load's checks first, and raises
    before the file is touched."""
    before = saved.read_bytes()
    m = pickle.loads(pickle.dumps(fitted)).set_params(**change)
    with pytest.raises(exc, match=rf"^save: {message}.* Nothing was written: mfsgd\.load "
                                  r"would refuse a file with this value; fix it with "
                                  r"set_params first\.$"):
        m.save(saved)
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model.mfsgd"]
    mfsgd.load(saved)


@pytest.mark.parametrize("change", [{"loss": "bpr"}, {"n_factors": 7}, {"biased": False}],
                         ids=["loss", "n_factors", "biased"])
def test_save_refuses_parameters_that_contradict_the_fitted_model(fitted, saved, small_data,
                                                                  change):
    """loss, n_factors and biased are part of the fitted model. After set_params(loss=...)
    the saved file was refused by load; after set_params(biased=False) it loaded, but
    every partial_fit of it raised. save refuses them as partial_fit does, saying how to
    save the model."""
    (name, value), = change.items()
    was = fitted.get_params()[name]
    before = saved.read_bytes()
    m = pickle.loads(pickle.dumps(fitted)).set_params(**change)
    with pytest.raises(ValueError, match=rf"^save: {name} is {value!r} but the fitted model was "
                                         rf"trained with {name}={was!r}; set_params\({name}="
                                         rf"{was!r}\) to save this model \(a changed {name} "
                                         r"needs a new fit\); nothing was written\.$"):
        m.save(saved)
    assert saved.read_bytes() == before
    m.set_params(**{name: was}).save(saved)
    u, i, r = small_data
    mfsgd.load(saved).partial_fit((np.array([f"u{x}" for x in u[:100]]), i[:100], r[:100]))


def test_save_stores_parameters_changed_since_the_fit_when_they_load(fitted, saved):
    """Valid changes are saved as they are (a Generator seed is stored as None; the fitted
    dtype wins at load, as in partial_fit)."""
    m = pickle.loads(pickle.dumps(fitted)).set_params(
        n_threads=4, verbose=True, random_state=np.random.default_rng(0), dtype=np.float64)
    m.save(saved)
    m2 = mfsgd.load(saved)
    assert (m2.n_threads, m2.verbose, m2.random_state) == (4, True, None)
    assert m2.dtype == np.float32 == m2.user_factors_.dtype
