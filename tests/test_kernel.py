"""The compiled kernel against the NumPy reference and against finite differences."""

import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from reference import adagrad_epoch_reference, rating_loss, sgd_epoch_reference

from mfsgd import _sgd
from mfsgd._training import aligned_concat


def _misaligned(a):
    """A copy of ``a`` whose data starts 16 bytes past a cache line."""
    buf = np.empty(a.nbytes + 80, np.uint8)
    off = (-buf.ctypes.data) % 64 + 16
    out = buf[off:off + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def random_problem(seed, n=400, nu=30, ni=20, k=7, dtype=np.float64, aligned=False):
    """Factor arrays start on a cache line with ``aligned`` (with k one of the kernel's
    fixed widths, 16, 32, ..., 128, that selects its unrolled variant) and 16 bytes off
    one otherwise (its general variant)."""
    rng = np.random.default_rng(seed)
    u = rng.integers(0, nu, n).astype(np.int32)
    i = rng.integers(0, ni, n).astype(np.int32)
    r = rng.uniform(1, 5, n).astype(dtype)
    P = rng.normal(0, 0.3, (nu, k)).astype(dtype)
    Q = rng.normal(0, 0.3, (ni, k)).astype(dtype)
    P, Q = (aligned_concat([P]), aligned_concat([Q])) if aligned else \
        (_misaligned(P), _misaligned(Q))
    bu = rng.normal(0, 0.2, nu).astype(dtype)
    bi = rng.normal(0, 0.2, ni).astype(dtype)
    return u, i, r, P, Q, bu, bi


HYPER = dict(mu=3.1, lr=0.03, reg_f=0.05, reg_b=0.02)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("k", [1, 7, 16, 33, 64, 100, 128])
@pytest.mark.parametrize("use_bias,nonneg", [(True, False), (False, False), (True, True)])
def test_epoch_matches_reference_float64(isa, k, use_bias, nonneg, aligned):
    u, i, r, P, Q, bu, bi = random_problem(k, k=k, aligned=aligned)
    if nonneg:
        P, Q = np.abs(P), np.abs(Q)
    mu = HYPER["mu"] if use_bias else 0.0
    ref = sgd_epoch_reference(u, i, r, P, Q, bu, bi, mu, HYPER["lr"], HYPER["reg_f"],
                              HYPER["reg_b"], use_bias=use_bias, nonneg=nonneg)
    sse = _sgd.sgd_epoch(u, i, r, P, Q, bu, bi, mu, HYPER["lr"], HYPER["reg_f"], HYPER["reg_b"],
                         use_bias, nonneg)
    for got, want in zip((P, Q, bu, bi), ref[:4], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert sse == pytest.approx(ref[4], rel=1e-12)
    if nonneg:
        assert P.min() >= 0 and Q.min() >= 0


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("k", [8, 32, 64, 100, 112])
def test_epoch_matches_reference_float32(isa, k, aligned):
    u, i, r, P, Q, bu, bi = random_problem(100 + k, k=k, dtype=np.float32, aligned=aligned)
    ref = sgd_epoch_reference(u, i, r, P, Q, bu, bi, **_pos(HYPER), dtype=np.float32)
    _sgd.sgd_epoch(u, i, r, P, Q, bu, bi, *_pos(HYPER).values())
    for got, want in zip((P, Q, bu, bi), ref[:4], strict=True):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("k", [5, 16, 64])
@pytest.mark.parametrize("use_bias", [True, False])
def test_adagrad_matches_reference(isa, k, use_bias, aligned):
    u, i, r, P, Q, bu, bi = random_problem(200 + k, k=k, aligned=aligned)
    rng = np.random.default_rng(k)
    Gu, Gi = rng.uniform(1, 3, len(bu)), rng.uniform(1, 3, len(bi))
    mu = 3.0 if use_bias else 0.0
    if not use_bias:
        bu[:] = 0
        bi[:] = 0
    ref = adagrad_epoch_reference(u, i, r, P, Q, bu, bi, Gu, Gi, mu, 0.05, 0.03, 0.02,
                                  use_bias=use_bias)
    _sgd.sgd_epoch(u, i, r, P, Q, bu, bi, mu, 0.05, 0.03, 0.02, use_bias, False, Gu, Gi)
    for got, want in zip((P, Q, bu, bi, Gu, Gi), ref, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("use_bias", [True, False])
def test_adagrad_means_exclude_the_zero_padding(isa, use_bias, weighted):
    """Models store factor rows padded with zero columns to an aligned width. Given the
    true ``n_factors``, AdaGrad's accumulators grow by the mean squared gradient over the
    row's values only: a padded epoch equals the reference on the unpadded rows, and the
    padding stays zero (review 21: the mean was over the padded width, so float32 and
    float64 models, padded differently, trained at different rates)."""
    k, width = 5, 16
    u, i, r, P, Q, bu, bi = random_problem(41, k=k)
    rng = np.random.default_rng(3)
    Gu, Gi = rng.uniform(1, 3, len(bu)), rng.uniform(1, 3, len(bi))
    wts = rng.uniform(0.5, 2.0, len(r)) if weighted else None
    mu = 3.0 if use_bias else 0.0
    if not use_bias:
        bu[:] = 0
        bi[:] = 0
    ref = adagrad_epoch_reference(u, i, r, P, Q, bu, bi, Gu, Gi, mu, 0.05, 0.03, 0.02,
                                  use_bias=use_bias, weights=wts)
    Pp, Qp = (aligned_concat([np.pad(a, ((0, 0), (0, width - k)))]) for a in (P, Q))
    if weighted:
        ptr = np.array([0, len(r)], np.int64)
        _sgd.sgd_segments_weighted(u, i, r, wts, ptr, np.array([0], np.int64), None, Pp, Qp,
                                   bu, bi, mu, 0.05, 0.03, 0.02, use_bias, False, np.zeros(1),
                                   Gu, Gi, k)
    else:
        _sgd.sgd_epoch(u, i, r, Pp, Qp, bu, bi, mu, 0.05, 0.03, 0.02, use_bias, False, Gu, Gi,
                       n_factors=k)
    assert not Pp[:, k:].any() and not Qp[:, k:].any()
    for got, want in zip((Pp[:, :k], Qp[:, :k], bu, bi, Gu, Gi), ref, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def _pos(h):
    return {"mu": h["mu"], "lr": h["lr"], "reg_f": h["reg_f"], "reg_b": h["reg_b"]}


def test_updates_are_minus_half_gradient_times_lr():
    """For one rating, the kernel moves each parameter by -lr * (1/2) dL/dtheta, with the
    gradient of that rating's loss term taken by central finite differences."""
    u, i, r, P, Q, bu, bi = random_problem(5, n=1, nu=2, ni=3, k=6)
    lr, reg_f, reg_b, mu = 1e-3, 0.07, 0.03, 3.0
    uu, ii, rr = int(u[0]), int(i[0]), float(r[0])
    theta = np.concatenate([P[uu], Q[ii], [bu[uu], bi[ii]]])
    k = P.shape[1]

    def loss(th):
        return rating_loss(rr, mu, th[:k], th[k:2 * k], th[2 * k], th[2 * k + 1], reg_f, reg_b)

    h = 1e-6
    grad = np.array([(loss(theta + h * e) - loss(theta - h * e)) / (2 * h)
                     for e in np.eye(theta.size)])
    P2, Q2, bu2, bi2 = P.copy(), Q.copy(), bu.copy(), bi.copy()
    _sgd.sgd_epoch(u, i, r, P2, Q2, bu2, bi2, mu, lr, reg_f, reg_b)
    after = np.concatenate([P2[uu], Q2[ii], [bu2[uu], bi2[ii]]])
    np.testing.assert_allclose(after - theta, -lr * 0.5 * grad, rtol=1e-6, atol=1e-12)
    # Descent: the rating's loss went down.
    assert loss(after) < loss(theta)
    # Rows not involved did not move.
    others = [x for x in range(P.shape[0]) if x != uu]
    np.testing.assert_array_equal(P2[others], P[others])


def test_sse_is_error_before_each_update():
    u, i, r, P, Q, bu, bi = random_problem(9, n=1)
    pred = HYPER["mu"] + bu[u[0]] + bi[i[0]] + P[u[0]] @ Q[i[0]]
    sse = _sgd.sgd_epoch(u, i, r, P, Q, bu, bi, *_pos(HYPER).values())
    assert sse == pytest.approx((r[0] - pred) ** 2, rel=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_segment_shuffle_is_the_published_permutation(isa, dtype):
    u, i, r, P, Q, bu, bi = random_problem(11, n=500, dtype=dtype)
    perm = _sgd.permutation(len(r), 12345)
    assert perm.dtype == np.uint32
    np.testing.assert_array_equal(np.sort(perm), np.arange(len(r)))
    assert not np.array_equal(perm, np.arange(len(r)))
    # sgd_segments with that seed visits the segment in that order, through a copy: the
    # stored triples are never written (read-only arrays are accepted).
    ku, ki, kr = u.copy(), i.copy(), r.copy()
    for a in (ku, ki, kr):
        a.setflags(write=False)
    P1, Q1, bu1, bi1 = P.copy(), Q.copy(), bu.copy(), bi.copy()
    sse = np.zeros(1)
    _sgd.sgd_segments(ku, ki, kr, np.array([0, len(r)], np.int64), np.array([0], np.int64),
                      np.array([12345], np.uint64), P1, Q1, bu1, bi1, *_pos(HYPER).values(),
                      True, False, sse, np.empty(0, dtype), np.empty(0, dtype))
    np.testing.assert_array_equal(ku, u)
    np.testing.assert_array_equal(kr, r)
    P2, Q2, bu2, bi2 = P.copy(), Q.copy(), bu.copy(), bi.copy()
    sse2 = _sgd.sgd_epoch(u[perm], i[perm], r[perm], P2, Q2, bu2, bi2, *_pos(HYPER).values())
    np.testing.assert_array_equal(P1, P2)
    np.testing.assert_array_equal(bi1, bi2)
    assert sse[0] == sse2


def test_shuffled_segments_of_several_lengths_use_their_own_seeds():
    # Segments of different lengths in one call share the scratch sized for the longest.
    u, i, r, P, Q, bu, bi = random_problem(12, n=700)
    seg_ptr = np.array([0, 50, 600, 700], np.int64)
    segments = np.array([1, 2, 0], np.int64)
    seeds = np.array([7, 0, 9], np.uint64)  # 0: the stored order
    P1, Q1, bu1, bi1 = P.copy(), Q.copy(), bu.copy(), bi.copy()
    _sgd.sgd_segments(u, i, r, seg_ptr, segments, seeds, P1, Q1, bu1, bi1,
                      *_pos(HYPER).values(), True, False, np.zeros(3), np.empty(0), np.empty(0))
    pos = np.concatenate([50 + _sgd.permutation(550, 7).astype(np.int64),
                          np.arange(600, 700), _sgd.permutation(50, 9)])
    ref = sgd_epoch_reference(u[pos], i[pos], r[pos], P, Q, bu, bi, **_pos(HYPER))
    np.testing.assert_allclose(P1, ref[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bi1, ref[3], rtol=1e-12, atol=1e-12)


def test_permutation_depends_only_on_seed_and_is_uniform():
    np.testing.assert_array_equal(_sgd.permutation(1000, 1), _sgd.permutation(1000, 1))
    assert not np.array_equal(_sgd.permutation(1000, 1), _sgd.permutation(1000, 2))
    assert _sgd.permutation(0, 3).size == 0
    np.testing.assert_array_equal(_sgd.permutation(1, 3), [0])
    # All 24 orders of 4 elements, over 24,000 seeds: chi-square with 23 degrees of
    # freedom; 60 is far in the tail (p < 1e-4) for a uniform shuffle, and the seeds are
    # fixed, so this cannot flake.
    counts = {}
    for seed in range(1, 24001):
        key = tuple(_sgd.permutation(4, seed))
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 24
    chi2 = sum((c - 1000) ** 2 / 1000 for c in counts.values())
    assert chi2 < 60, chi2
    with pytest.raises(ValueError, match="2\\*\\*32"):
        _sgd.permutation(1 << 32, 1)


def test_segments_run_in_listed_order_with_their_sse():
    u, i, r, P, Q, bu, bi = random_problem(13, n=300)
    seg_ptr = np.array([0, 100, 250, 300], np.int64)
    segments = np.array([2, 0, 1], np.int64)
    sse = np.zeros(3)
    P1, Q1, bu1, bi1 = P.copy(), Q.copy(), bu.copy(), bi.copy()
    _sgd.sgd_segments(u.copy(), i.copy(), r.copy(), seg_ptr, segments, None, P1, Q1, bu1, bi1,
                      *_pos(HYPER).values(), True, False, sse, np.empty(0), np.empty(0))
    perm = np.concatenate([np.arange(250, 300), np.arange(0, 100), np.arange(100, 250)])
    ref = sgd_epoch_reference(u[perm], i[perm], r[perm], P, Q, bu, bi, **_pos(HYPER))
    np.testing.assert_allclose(P1, ref[0], rtol=1e-12, atol=1e-12)
    assert sse.sum() == pytest.approx(ref[4], rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_predict_pairs_with_unknowns(dtype):
    u, i, r, P, Q, bu, bi = random_problem(17, dtype=dtype)
    uu = np.array([0, -1, 3, -1], np.int32)
    ii = np.array([1, 2, -1, -1], np.int32)
    out = np.empty(4)
    _sgd.predict_pairs(uu, ii, P, Q, bu, bi, 3.0, out)
    want = [3.0 + bu[0] + bi[1] + P[0] @ Q[1], 3.0 + bi[2], 3.0 + bu[3], 3.0]
    np.testing.assert_allclose(out, want, rtol=1e-6 if dtype == np.float32 else 1e-13)


def test_read_only_inputs_are_accepted():
    u, i, r, P, Q, bu, bi = random_problem(19)
    for a in (u, i, r):
        a.setflags(write=False)
    _sgd.sgd_epoch(u, i, r, P, Q, bu, bi, *_pos(HYPER).values())
    out = np.empty(len(u))
    P.setflags(write=False)
    _sgd.predict_pairs(u, i, P, Q, bu, bi, 3.0, out)


def test_kernel_releases_the_gil():
    """While the kernel runs one long call in a thread, this thread keeps running and
    sees the shared parameters change many times. With the GIL held it could observe at
    most the values before and after the call."""
    rng = np.random.default_rng(0)
    n, nu, ni, k = 3_000_000, 50, 50, 64
    u = rng.integers(0, nu, n).astype(np.int32)
    i = rng.integers(0, ni, n).astype(np.int32)
    r = rng.uniform(1, 5, n)
    P = rng.normal(0, 0.1, (nu, k))
    Q = rng.normal(0, 0.1, (ni, k))
    bu, bi = np.zeros(nu), np.zeros(ni)
    started = threading.Event()

    def work():
        started.set()
        _sgd.sgd_epoch(u, i, r, P, Q, bu, bi, 3.0, 1e-4, 0.02, 0.02)

    t = threading.Thread(target=work)
    seen = set()
    iterations = 0
    t.start()
    started.wait()
    while t.is_alive():
        seen.add(float(bu[0]))
        iterations += 1
    t.join()
    assert iterations > 100
    assert len(seen) > 10


@pytest.mark.parametrize("kernel", ["baseline", "avx2", "avx512"])
def test_kernel_env_var_selects_variant(kernel):
    code = "import mfsgd, mfsgd._sgd as s; print(s.isa_name(s.isa_current()))"
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True,
                         text=True, env={**os.environ, "MFSGD_KERNEL": kernel}, timeout=120)
    assert out.returncode == 0, out.stderr
    from mfsgd import _sgd

    want = {"baseline": 0, "avx2": 1, "avx512": 2}[kernel]
    assert out.stdout.strip() == _sgd.isa_name(_best_at_most(want))


def _best_at_most(want):
    from mfsgd import _sgd

    mask = _sgd.isa_available()
    while want > 0 and not mask & (1 << want):
        want -= 1
    return want
