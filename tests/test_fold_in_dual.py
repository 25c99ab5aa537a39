"""fold_in through the n x n dual: a row with n ratings (a ranking model with m items)
solves no system larger than n (m) when that is smaller than its k (+ 1) unknowns, and
gives the primal's answer. It built a (k+1) x (k+1) (k x k) matrix whatever n: 32 GiB
for one user with two ratings at n_factors=65536, seconds at 4096."""

import time
import tracemalloc

import numpy as np
import pytest

import mfsgd._recommend as R
from mfsgd import MatrixFactorization
from mfsgd.datasets import make_ratings

LOSSES = ["squared", "bpr", "warp", "softmax"]


@pytest.fixture
def solved(monkeypatch):
    """The orders of the systems np.linalg.solve is given (the list is cleared by tests)."""
    sizes: list[int] = []
    solve = np.linalg.solve

    def spy(a, b):
        sizes.append(a.shape[0])
        return solve(a, b)

    monkeypatch.setattr(np.linalg, "solve", spy)
    return sizes


def _kkt(Z, t, lam, x, n_constrained):
    """Relative violation of the optimality conditions of min |t - Z x|^2 + x' diag(lam)
    x under x[:n_constrained] >= 0, in O(n k) (no k x k matrix)."""
    g = Z.T @ (Z @ x - t) + lam * x
    at0 = np.zeros(x.size, dtype=bool)
    at0[:n_constrained] = x[:n_constrained] == 0
    scale = (Z * Z).sum(0).max() * max(1.0, np.abs(x).max()) + np.abs(Z.T @ t).max()
    return max(np.abs(g[~at0]).max(initial=0.0), (-g[at0]).max(initial=0.0)) / scale


@pytest.mark.parametrize("nonnegative", [False, True])
@pytest.mark.parametrize("with_bias", [True, False])
def test_ridge_rows_dual_equals_primal(with_bias, nonnegative, solved):
    rng = np.random.default_rng(0)
    n_constrained = 0
    for trial in range(80):
        k = int(rng.integers(2, 40))
        n = int(rng.integers(1, k + with_bias))  # fewer ratings than unknowns
        Z = rng.normal(size=(n, k)) * rng.uniform(0.1, 2.0)
        if nonnegative:
            Z = np.abs(Z)  # like the factors of a nonnegative model
        t = rng.normal(size=n) * 2 + rng.normal()
        reg_f, reg_b = [(0.02, 0.02), (0.5, 0.0), (1e-3, 2.0), (0.1, 1e-6)][trial % 4]
        xp, bp = R.ridge_rows([t], [Z], reg_f, reg_b, with_bias, nonnegative, dual=False)
        solved.clear()
        xd, bd = R.ridge_rows([t], [Z], reg_f, reg_b, with_bias, nonnegative, dual=True)
        assert max(solved) <= n  # n x n systems at most
        xa, ba = R.ridge_rows([t], [Z], reg_f, reg_b, with_bias, nonnegative)
        np.testing.assert_array_equal(xa, xd)  # the default takes the dual here
        np.testing.assert_array_equal(ba, bd)
        scale = max(np.abs(xp).max(), np.abs(bp).max())
        np.testing.assert_allclose(xd, xp, rtol=1e-8, atol=1e-10 * scale)
        np.testing.assert_allclose(bd, bp, rtol=1e-8, atol=1e-10 * scale)
        if nonnegative:
            assert (xd >= 0).all()
            n_constrained += bool((xp == 0).any())
    if nonnegative:
        assert n_constrained > 20  # the constrained path was exercised


@pytest.mark.parametrize("with_bias", [True, False])
def test_ridge_rows_dual_handles_zero_regularisation(with_bias):
    """reg 0 (the 1e-12 floor): with fewer ratings than unknowns the primal matrix is
    singular to rounding; the dual stays exact (the min-norm interpolant here)."""
    rng = np.random.default_rng(1)
    for _ in range(20):
        k = int(rng.integers(3, 30))
        n = int(rng.integers(1, k))
        Z = rng.normal(size=(n, k))
        t = rng.normal(size=n) + 3.0
        x, b = R.ridge_rows([t], [Z], 0.0, 0.0, with_bias, dual=True)
        Za = np.hstack([Z, np.ones((n, 1))]) if with_bias else Z
        lam = np.full(Za.shape[1], 1e-12)
        stacked = np.vstack([Za, np.diag(np.sqrt(lam))])  # a QR-stable reference
        want = np.linalg.lstsq(stacked, np.concatenate([t, np.zeros(lam.size)]),
                               rcond=None)[0]
        got = np.append(x[0], b[0]) if with_bias else x[0]
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-8 * np.abs(want).max())


def test_implicit_rows_dual_equals_primal(solved):
    rng = np.random.default_rng(2)
    for trial in range(40):
        k = int(rng.integers(2, 40))
        m = int(rng.integers(1, k))  # fewer items than factors
        F = rng.normal(size=(m, k)) * 0.3
        ob = rng.normal(size=m) * (trial % 2)  # item biases or none
        pos = [np.unique(rng.integers(0, m, size=int(rng.integers(1, m + 1))))
               for _ in range(3)]
        reg = [0.01, 0.3, 2.0][trial % 3]
        want = R.implicit_rows(pos, F, ob, reg, dual=False)
        solved.clear()
        got = R.implicit_rows(pos, F, ob, reg, dual=True)
        assert max(solved) <= m
        np.testing.assert_array_equal(R.implicit_rows(pos, F, ob, reg), got)
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-10 * np.abs(want).max())


@pytest.mark.parametrize("biased", [True, False])
@pytest.mark.parametrize("loss", LOSSES + ["nonnegative"])
def test_fold_in_dual_equals_primal(loss, biased, monkeypatch, solved):
    """Through fold_in, users and items, every loss: the dual (the default with fewer
    ratings, or items, than factors) and the primal give the same rows."""
    nonneg = loss == "nonnegative"
    loss = "squared" if nonneg else loss
    u, i, r = make_ratings(15, 20, 200, rank=3, random_state=0, as_frame=False)
    m = MatrixFactorization(n_factors=24, n_epochs=3, random_state=0, loss=loss,
                            biased=biased, nonnegative=nonneg, dtype=np.float64)
    m.fit((u, i, r) if loss == "squared" else (u, i))
    st = m._state
    rows = {}
    for mode in (False, True, None):
        monkeypatch.setattr(R, "FOLD_IN_DUAL", mode)
        m._state = st
        solved.clear()
        m.fold_in(([900] * 4 + [901] * 2, [0, 3, 5, 7, 1, 2], [5.0, 1.0, 3.0, 2.0, 4.0, 1.0]))
        m.fold_in(([0, 1, 2, 3], [700] * 4, [5.0, 1.0, 4.0, 2.0]), side="item")
        if mode is not False:
            # at most the ratings of a row (squared), or the 20 items / 17 users (ranking)
            assert max(solved) <= (4 if loss == "squared" else 20)
        rows[mode] = (m.user_factors_[-2:], m.user_bias_[-2:], m.item_factors_[-1],
                      m.item_bias_[-1])
    for want, got, auto in zip(rows[False], rows[True], rows[None], strict=True):
        np.testing.assert_array_equal(auto, got)
        np.testing.assert_allclose(got, want, rtol=1e-8,
                                   atol=1e-10 * max(np.abs(want).max(), 1e-300))
    if nonneg:
        assert (rows[True][0] >= 0).all() and (rows[True][0] == 0).any()


@pytest.mark.parametrize("loss", ["squared", "nonnegative", "warp"])
def test_fold_in_with_large_n_factors_takes_memory_in_proportion(loss):
    """One user with two ratings at n_factors=8192: a (k+1) x (k+1) matrix is 512 MiB;
    the dual needs O(n k)."""
    k = 8192
    nonneg = loss == "nonnegative"
    loss = "squared" if nonneg else loss
    users = np.repeat(np.arange(20), 5)
    items = np.tile(np.arange(5), 20)
    r = users % 5 + 1.0
    m = MatrixFactorization(n_factors=k, n_epochs=1, learning_rate=1e-5, random_state=0,
                            loss=loss, nonnegative=nonneg)
    m.fit((users, items, r) if loss == "squared" else (users, items))
    tracemalloc.start()
    try:
        t0 = time.perf_counter()
        m.fold_in(([999, 999], [0, 1], [5.0, 1.0]))
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < k * k * 8 // 16, peak  # 32 MiB; one k x k float64 matrix is 512 MiB
    assert elapsed < 5.0
    x = m.user_factors_[-1].astype(np.float64)
    assert np.isfinite(x).all()
    if loss != "squared":
        return
    # the optimality conditions of the row's ridge problem, checked in O(n k)
    Z = np.hstack([m.item_factors_[[0, 1]].astype(np.float64), np.ones((2, 1))])
    t = np.array([5.0, 1.0]) - m.global_mean_ - m.item_bias_[[0, 1]]
    cfg = m._config()
    lam = np.append(np.full(k, 2 * cfg.reg_factors), 2 * cfg.reg_bias)
    sol = np.append(x, m.user_bias_[-1])
    assert _kkt(Z, t, lam, sol, k if nonneg else 0) < 1e-6  # float32 storage
    if nonneg:
        assert (x >= 0).all() and (x == 0).any()  # the constraint is active
