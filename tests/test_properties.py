"""Property tests of the public API: whatever the arrays and parameters, ``fit``,
``partial_fit``, ``predict`` and ``save``/``load`` either raise a clean ``TypeError`` or
``ValueError`` (mfsgd's own errors subclass ValueError) whose message names the problem,
or leave a finite model whose predictions are finite. A failed call never changes a
fitted model, and a saved model continues exactly like the one it was saved from.
"""

import math
import os
import tempfile
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import mfsgd
from mfsgd import MatrixFactorization
from mfsgd._config import AUTO_PARAMS

# MFSGD_FUZZ_SCALE=20 multiplies the examples for a longer local run (default: ~10 s).
# At the default scale the examples are derandomized (drawn from a hash of each test),
# so a run of the suite, in CI or after a clone, tests the same cases every time; a
# scaled run draws fresh ones, to explore.
SCALE = max(1, int(os.environ.get("MFSGD_FUZZ_SCALE", "1")))
FAST = settings(derandomize=SCALE == 1, max_examples=80 * SCALE, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

PARAM_NAMES = set(MatrixFactorization()._get_param_names())
# Words one of which every message of a rejected call must contain: the argument at fault.
ARGUMENT_WORDS = PARAM_NAMES | {"users", "items", "ratings", "X", "y", "eval_set", "fit",
                                "partial_fit"}


# ----------------------------------------------------------------------------- strategies
def _int_ids(n):
    dtypes = st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                              np.uint32, np.uint64, np.dtype(">i8"), np.dtype(">u4")])
    return dtypes.flatmap(lambda dt: hnp.arrays(dt, n))


def _float_ids(n):
    dtypes = st.sampled_from([np.float16, np.float32, np.float64])
    return st.one_of(
        # integral floats (valid ids), then anything at all: NaN, inf, fractions, 1e300
        st.lists(st.integers(-(2**53), 2**53), min_size=n, max_size=n).map(
            lambda v: np.array(v, dtype=np.float64)),
        dtypes.flatmap(lambda dt: hnp.arrays(dt, n)),
    )


def _str_ids(n):
    text = st.text(max_size=6)
    return st.one_of(
        st.lists(text, min_size=n, max_size=n).map(lambda v: np.array(v, dtype=str)),
        st.lists(st.binary(max_size=4), min_size=n, max_size=n).map(
            lambda v: np.array(v, dtype=bytes)),
    )


_SCALARS = st.one_of(
    st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=3), st.none(), st.booleans(),
    st.binary(max_size=3), st.just(np.int64(3)), st.just(np.float32(2.0)),
    st.just(np.uint64(2**64 - 1)), st.just(complex(1, 2)), st.just((1, 2)), st.just([1]),
)


def _object_ids(n):
    return st.one_of(
        st.lists(_SCALARS, min_size=n, max_size=n).map(_object_array),
        # one Python type throughout (valid for int and str), possibly out of int64 range
        st.lists(st.integers(-(2**64), 2**64), min_size=n, max_size=n).map(_object_array),
        st.lists(st.text(max_size=4), min_size=n, max_size=n).map(_object_array),
        st.lists(st.integers(-5, 2**63 + 5), min_size=n, max_size=n),  # a plain list
    )


def _object_array(values):
    a = np.empty(len(values), dtype=object)
    a[:] = values
    return a


def often(common, rare):
    """``common`` half of the time, else ``rare`` (st.one_of would weight each of the
    alternatives nested in ``rare`` like ``common``)."""
    return st.booleans().flatmap(lambda c: common if c else rare)


def ids(n):
    """Any kind of id array of length n: int, float, str, bytes, object, bool, datetime;
    half of the time the common, valid case (small non-negative ints with repeats)."""
    return often(
        st.lists(st.integers(0, 5), min_size=n, max_size=n).map(np.array),
        st.one_of(_int_ids(n), _float_ids(n), _str_ids(n), _object_ids(n),
                  hnp.arrays(np.bool_, n), hnp.arrays(np.dtype("M8[D]"), n),
                  hnp.arrays(np.complex64, n)),
    )


def ratings(n):
    """Ratings of length n: finite, NaN/inf, float32-overflowing, ints, strings, objects."""
    floats = st.sampled_from([np.float16, np.float32, np.float64]).flatmap(
        lambda dt: hnp.arrays(dt, n, elements=st.floats(allow_nan=True, allow_infinity=True,
                                                        width=np.dtype(dt).itemsize * 8)))
    return often(st.lists(st.floats(-5, 5), min_size=n, max_size=n).map(np.array), st.one_of(
        floats,
        st.lists(st.floats(-1e300, 1e300), min_size=n, max_size=n).map(np.array),
        st.sampled_from([np.int8, np.int64, np.uint64]).flatmap(lambda dt: hnp.arrays(dt, n)),
        st.lists(st.one_of(st.floats(0, 5), st.integers(0, 5), st.none(), st.text(max_size=2)),
                 min_size=n, max_size=n).map(_object_array),
        hnp.arrays(np.bool_, n), hnp.arrays(np.complex128, n),
        st.lists(st.text(max_size=3), min_size=n, max_size=n).map(np.array),
        st.lists(st.integers(-(2**1100), 2**1100), min_size=n, max_size=n),  # beyond float64
        st.lists(st.one_of(st.floats(0, 5), st.lists(st.floats(0, 5), max_size=2)),
                 min_size=n, max_size=n),  # ragged
    ))


@st.composite
def triples(draw, max_n=12):
    """(users, items, ratings): one length n (0 and 1 included), sometimes one array longer
    or shorter than the others, sometimes a 2-D or scalar array."""
    n = draw(st.integers(0, max_n))
    lens = [n, n, n]
    if draw(st.integers(0, 9)) == 0:
        lens[draw(st.integers(0, 2))] = draw(st.integers(0, max_n + 1))
    u, i, r = draw(ids(lens[0])), draw(ids(lens[1])), draw(ratings(lens[2]))
    shape_bug = draw(st.integers(0, 19))
    if shape_bug == 0 and isinstance(r, np.ndarray):
        r = r.reshape(1, -1)
    elif shape_bug == 1 and isinstance(u, np.ndarray):
        u = u[:1].reshape(()) if len(u) else np.int64(3)
    return u, i, r


@st.composite
def valid_triples(draw, id_kind=None, min_n=1, max_n=15):
    """Valid training data: finite ratings, ids of one kind (ints of any range or strings)."""
    n = draw(st.integers(min_n, max_n))
    kind = id_kind or draw(st.sampled_from(["small", "wide", "uint64", "str"]))

    def one_side():
        if kind == "small":
            return np.array(draw(st.lists(st.integers(0, 6), min_size=n, max_size=n)))
        if kind == "wide":
            return np.array(draw(st.lists(st.integers(-(2**63), 2**63 - 1),
                                          min_size=n, max_size=n)), dtype=np.int64)
        if kind == "uint64":
            return np.array(draw(st.lists(st.integers(2**63, 2**64 - 1), min_size=n,
                                          max_size=n)), dtype=np.uint64)
        # "" and " " are missing ids (refused); a trailing NUL would be dropped by NumPy
        # (refused)
        pool = draw(st.lists(st.text(min_size=1, max_size=5).filter(
                                 lambda s: not s.endswith("\0") and not s.isspace()),
                             min_size=1, max_size=6))
        return np.array([pool[j] for j in draw(st.lists(st.integers(0, len(pool) - 1),
                                                        min_size=n, max_size=n))], dtype=str)

    r = np.array(draw(st.lists(st.floats(-10, 10, width=32), min_size=n, max_size=n)))
    return one_side(), one_side(), r


INVALID = st.one_of(st.none(), st.booleans(), st.integers(-(2**65), 0), st.floats(),
                    st.text(max_size=3), st.just([1]), st.just({"a": 1}), st.just(np.int8(-1)),
                    st.just(np.float32("nan")), st.just(complex(1, 1)), st.just(10**400))

VALID_PARAMS = {
    "n_factors": st.integers(1, 4),
    "n_epochs": st.integers(1, 3),
    "learning_rate": st.floats(1e-6, 0.1),
    "reg_factors": st.floats(0, 1),
    "reg_bias": st.floats(0, 1),
    "init_std": st.floats(0, 1),
    "shuffle": st.booleans(),
    "random_state": st.one_of(st.none(), st.integers(0, 2**64)),
    "dtype": st.sampled_from([np.float32, np.float64, "float32", "f8", np.dtype("float64")]),
    "early_stopping": st.booleans(),
    "validation_fraction": st.floats(0.01, 0.99),
    "n_iter_no_change": st.integers(1, 3),
    "tol": st.floats(0, 1),
    "clip": st.booleans(),
    "n_threads": st.integers(1, 3),  # see the report: a huge n_threads is not bounded
    "n_blocks": st.one_of(st.none(), st.integers(1, 255)),
    "lr_decay": st.floats(0, 1e6),
    "biased": st.booleans(),
    "nonnegative": st.booleans(),
}


@st.composite
def params(draw, invalid=True):
    """Small, fast hyper-parameters; with invalid=True one or two are usually replaced by
    an invalid value of any type (None, bool, negative, NaN, inf, str, list, dict...)."""
    p = {k: draw(s) for k, s in VALID_PARAMS.items() if draw(st.integers(0, 2)) == 0}
    p.setdefault("n_factors", 2)
    p.setdefault("n_epochs", 2)
    if invalid:
        for _ in range(draw(st.integers(0, 2))):
            name = draw(st.sampled_from(sorted(VALID_PARAMS)))
            value = draw(INVALID)
            if name in ("n_factors", "n_epochs", "n_threads") and isinstance(value, int) \
                    and value > 0:
                # valid but huge: a long run (n_threads is not bounded, see the report)
                continue
            # None is valid for these: random_state and n_blocks choose, and the others
            # take their loss's default (n_epochs=None trains 20 epochs, which the
            # checks below would compare with None)
            if value is None and name in ("random_state", "n_blocks", *AUTO_PARAMS):
                continue
            p[name] = value
    return p


# ----------------------------------------------------------------------------- checks
def assert_clean_error(exc):
    """A rejected call raises TypeError/ValueError with a sentence naming the argument."""
    assert isinstance(exc, (TypeError, ValueError)), repr(exc)
    msg = str(exc)
    assert msg.endswith("."), f"message is not a sentence: {msg!r}"
    words = set(msg.replace(",", " ").replace(":", " ").replace("(", " ").split())
    assert words & ARGUMENT_WORDS, f"message names no argument: {msg!r}"


def assert_finite_model(m):
    st_ = m._state
    assert st_ is not None
    for a in (m.user_factors_, m.item_factors_, m.user_bias_, m.item_bias_):
        assert np.isfinite(a).all()
    assert len(m.user_ids_) == len(m.user_factors_) == len(m.user_bias_)
    assert len(m.item_ids_) == len(m.item_factors_) == len(m.item_bias_)
    assert math.isfinite(m.global_mean_)
    lo, hi = m.rating_range_
    assert math.isfinite(lo) and math.isfinite(hi) and lo <= hi


def assert_finite_predictions(m, users, items):
    pred = m.predict((users, items))
    assert pred.dtype == np.float64 and pred.shape == (len(users),)
    assert np.isfinite(pred).all(), pred
    if m.clip:
        lo, hi = m.rating_range_
        assert ((pred >= lo) & (pred <= hi)).all()
    return pred


def state_arrays(m):
    st_ = m._state
    return None if st_ is None else (
        st_.user_factors.copy(), st_.item_factors.copy(), st_.user_bias.copy(),
        st_.item_bias.copy(), st_.user_map.ids.copy(), st_.item_map.ids.copy(),
        st_.global_mean, st_.rating_range, st_.n_epochs, len(st_.history))


def assert_same_state(before, m):
    after = state_arrays(m)
    if before is None:
        assert after is None
        return
    for a, b in zip(before, after, strict=True):
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b


def new_ids_like(model_ids):
    """A few ids unseen by the model, of the model's id kind."""
    if model_ids.dtype.kind == "U":
        return np.array(["\x00?unseen", "zz-new"])
    if model_ids.dtype == np.uint64:
        return np.array([2**64 - 1, 2**64 - 2], dtype=np.uint64)
    return np.array([-(2**63), 2**63 - 1], dtype=np.int64)


def _fit_or_error(m, X, **kw):
    """fit; on error check it is clean and return None. NumPy warnings are errors here:
    a clean rejection must not come with a RuntimeWarning from a bad cast."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        try:
            out = m.fit(X, **kw)
        except (TypeError, ValueError) as e:
            assert_clean_error(e)
            event(f"fit raised {type(e).__name__}")
            return e
    event("fit succeeded")
    return out


# ----------------------------------------------------------------------------- properties
A6 = np.arange(6)
R6 = np.linspace(1.0, 5.0, 6)


@FAST
@given(data=triples())
# Found by this test (each leaked a NumPy error or warning instead of mfsgd's message):
@example(data=(np.array([b"\xff"] * 6), A6, R6))  # UnicodeDecodeError from NumPy
@example(data=(np.full(6, 1e30), A6, R6))  # RuntimeWarning: invalid value in cast
@example(data=(A6.astype(np.float16), A6, R6))  # RuntimeWarning: overflow (2.0**63 in f16)
@example(data=(A6, A6, [2**1100] * 6))  # OverflowError: int too large to convert to float
@example(data=(A6, A6, [1.0, [2.0, 3.0], 3, 4, 5, 6]))  # NumPy's "inhomogeneous shape"
@example(data=(A6, np.array([1.0, 2.0] * 3, dtype=object), R6))  # "mixes id types (float)"
def test_fit_on_any_arrays_is_clean_error_or_finite_model(data):
    users, items, r = data
    m = MatrixFactorization(n_factors=2, n_epochs=2, random_state=0)
    out = _fit_or_error(m, (users, items, r))
    if isinstance(out, Exception):
        if isinstance(out, mfsgd.DivergenceError) and m._state is not None:
            assert_finite_model(m)  # diverged but kept the last finite epoch
        else:
            assert m._state is None
        return
    assert_finite_model(m)
    assert_finite_predictions(m, users, items)
    new = new_ids_like(m.user_ids_), new_ids_like(m.item_ids_)
    assert_finite_predictions(m, new[0], np.asarray(items)[:2] if len(items) >= 2 else new[1])
    assert_finite_predictions(m, *new)


@FAST
@given(data=valid_triples(), p=params())
# Found by this test: check_dtype accepted any value NumPy cannot read as a dtype (its
# result, None, compared equal to float64) and training ran with dtype=None.
@example(data=(A6, A6, R6), p={"n_factors": 2, "n_epochs": 1, "dtype": {"a": 1}})
@example(data=(A6, A6, R6), p={"n_factors": 2, "n_epochs": 1, "dtype": "U99999999999"})
# Found by test_fuzz_load (a stored parameter): float(10**400) raised OverflowError.
@example(data=(A6, A6, R6), p={"n_factors": 2, "n_epochs": 1, "learning_rate": 10**400})
def test_fit_with_any_parameters_is_clean_error_or_finite_model(data, p):
    users, items, r = data
    m = MatrixFactorization(**p)
    with warnings.catch_warnings():
        out = _fit_or_error(m, (users, items, r))
    if isinstance(out, Exception):
        if m._state is not None:
            assert isinstance(out, mfsgd.DivergenceError)
            assert_finite_model(m)
        return
    assert_finite_model(m)
    assert m.user_factors_.shape[1] == p["n_factors"]
    assert m.user_factors_.dtype == np.dtype(p.get("dtype", np.float32))
    assert 1 <= m.n_epochs_ <= p["n_epochs"] and len(m.history_) == m.n_epochs_
    assert_finite_predictions(m, users, items)


@FAST
@given(base=valid_triples(min_n=3), p=params(invalid=False), bad=triples(),
       eval_set=st.none() | triples(max_n=4))
def test_failed_fit_keeps_the_previous_model(base, p, bad, eval_set):
    m = MatrixFactorization(**{**p, "early_stopping": False})
    try:
        m.fit(base)
    except mfsgd.DivergenceError:
        pass
    before = state_arrays(m)
    out = _fit_or_error(m, bad, eval_set=eval_set)
    if isinstance(out, Exception) and not isinstance(out, mfsgd.DivergenceError):
        assert_same_state(before, m)
    elif m._state is not None:
        assert_finite_model(m)


U64 = np.array([2**64 - 1, 2**63], dtype=np.uint64)
I64 = np.array([-1, 5])
F = np.array([1.0, 2.0])


def _kind_of(ids_):
    return {"U": "str", "u": "uint64"}.get(ids_.dtype.kind, "wide")


@pytest.mark.filterwarnings("ignore:partial_fit widened:UserWarning")  # random ranges
@FAST
@given(base=valid_triples(), more=often(st.just("valid"), triples()), data=st.data(),
       n_epochs=often(st.integers(1, 2), INVALID.filter(lambda v: not (
           isinstance(v, int) and v > 0))))  # 10**400 epochs would be valid, and endless
# Found by this test: new ids of the other 64-bit signedness were wrapped by astype
# (2**64-1 became -1), became kernel index -1, and corrupted the heap (abort in free()).
@example(base=(I64, I64, F), more=(U64, I64, F), data=None, n_epochs=1)
@example(base=(U64, I64, F), more=(I64, I64, F), data=None, n_epochs=1)
@example(base=(U64, I64, F), more=(np.array([7, 9]), I64, F), data=None, n_epochs=1)
# Found by this test: new string ids longer than every old one were truncated to the old
# width ("u1" model, new "u10" -> "u1"), then not found: index -1, heap corruption again.
@example(base=(np.array(["u1", "u2"]), np.array(["i"] * 2), F),
         more=(np.array(["u1", "u10"]), np.array(["i", "item-22"]), F), data=None, n_epochs=1)
def test_partial_fit_is_clean_error_or_grows_a_finite_model(base, more, data, n_epochs):
    if isinstance(more, str):  # valid new ratings: ids of the base's kind, old and new mixed
        mu, mi, mr = data.draw(valid_triples(id_kind=_kind_of(base[0])))
        half = len(mr) // 2  # the first half rates known users and items
        mu = np.concatenate([np.resize(base[0], half), mu[half:]])
        mi = np.concatenate([np.resize(base[1], half), mi[half:]])
        more = (mu, mi, mr)
    m = MatrixFactorization(n_factors=2, n_epochs=1, random_state=1).fit(base)
    before = state_arrays(m)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        try:
            m.partial_fit(more, n_epochs=n_epochs)
        except (TypeError, ValueError) as e:
            assert_clean_error(e)
            event(f"partial_fit raised {type(e).__name__}")
            if not isinstance(e, mfsgd.DivergenceError):
                assert_same_state(before, m)
            assert_finite_model(m)
            return
    event("partial_fit succeeded")
    assert_finite_model(m)
    # nothing is lost: old ids keep their rows and their rows only changed by training
    n_old = len(before[4])
    np.testing.assert_array_equal(m.user_ids_[:n_old], before[4])
    np.testing.assert_array_equal(m.item_ids_[:len(before[5])], before[5])
    assert m.n_epochs_ == before[8] + n_epochs
    assert_finite_predictions(m, more[0], more[1])
    assert_finite_predictions(m, base[0], base[1])


@FAST
@given(base=valid_triples(), query=triples())
def test_predict_on_any_input_is_clean_error_or_finite(base, query):
    m = MatrixFactorization(n_factors=3, n_epochs=1, random_state=2).fit(base)
    users, items, _ = query
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        try:
            pred = m.predict((users, items))
        except (TypeError, ValueError) as e:
            assert_clean_error(e)
            return
    # one id beside a sequence is broadcast over it (predict((user, items)))
    n = len(items) if np.ndim(users) == 0 else len(users)
    assert pred.shape == (n,) and np.isfinite(pred).all()


# Found by test_fit_on_any_arrays_is_clean_error_or_finite_model: after two epochs on
# ratings up to 3.2e11 the float32 factors are ~1e21, all finite, so neither the kernel's
# SSE nor the parameter check saw divergence; u . v overflows float32 in predict (to inf,
# and inf - inf = NaN). Needs a change outside this helper's files (see the report).
KNOWN_OVERFLOW = (np.array([0, 1, 2]), np.array([0, -1, 1]), np.array([0, 0, 324058628097]))


def test_fit_never_keeps_parameters_whose_predictions_overflow():
    m = MatrixFactorization(n_factors=2, n_epochs=2, random_state=0)
    try:
        m.fit(KNOWN_OVERFLOW)
    except mfsgd.DivergenceError:
        return  # the fix may well report divergence: fine
    assert np.isfinite(m.predict(KNOWN_OVERFLOW[:2])).all()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.mark.filterwarnings("ignore:partial_fit widened:UserWarning")  # random ranges
@FAST
@given(data=valid_triples(), p=params(invalid=False), more=valid_triples(max_n=5))
def test_save_load_roundtrip_is_exact_and_continues_identically(model_dir, data, p, more):
    p = {**p, "random_state": 11}
    m = MatrixFactorization(**p)
    try:
        m.fit(data)
    except (TypeError, ValueError):  # e.g. validation_fraction leaves no training rating
        assume(m._state is not None)  # a DivergenceError keeps a model: save that one
    fd, path = tempfile.mkstemp(dir=model_dir, suffix=".mfsgd")
    os.close(fd)
    try:
        m.save(path)
        m2 = mfsgd.load(path)
    finally:
        os.unlink(path)
    assert_same_state(state_arrays(m), m2)
    assert m2.get_params() == {**m.get_params(), "dtype": m2.dtype}
    assert np.dtype(m2.dtype) == m.user_factors_.dtype
    assert m2.history_ == m.history_ and m2.best_epoch_ == m.best_epoch_
    assert m2.n_blocks_ == m.n_blocks_
    users, items, _ = data
    np.testing.assert_array_equal(m2.predict((users, items)), m.predict((users, items)))
    # a loaded model continues training bit for bit like the original
    mu, mi, mr = more
    if mu.dtype.kind == "U" or users.dtype.kind == "U":
        mu = users[:1].repeat(len(mr))
    if mi.dtype.kind == "U" or items.dtype.kind == "U":
        mi = items[:1].repeat(len(mr))
    results = []
    for model in (m, m2):
        try:
            model.partial_fit((mu, mi, mr))
            results.append(state_arrays(model))
        except (TypeError, ValueError) as e:  # e.g. negative ids into a uint64 model
            assert_clean_error(e)
            results.append((type(e), str(e).replace(path, "")))
    if isinstance(results[0], tuple) and isinstance(results[0][0], type):
        assert results[0] == results[1]
    else:
        assert_same_state(results[0], m2)
