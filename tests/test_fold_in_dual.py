"""fold_in through the n x n dual: a row with n ratings (a ranking model with m items)
solves no system larger than n (m) when that is smaller than its k (+ 1) unknowns, and
gives the primal's answer. It built a (k+1) x (k+1) (k x k) matrix whatever n: 32 GiB
for one user with two ratings at n_factors=65536, seconds at 4096."""

import time
import tracemalloc
from functools import partial

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


def _row_objective(x, F, ob, j, reg):
    """The documented objective of softmax_rows, written out independently."""
    s = F @ x + ob
    return np.log(np.exp(s - s.max()).sum()) + s.max() - s[j].mean() + reg * x @ x


def _column_objective(x, U, lz, w, P, reg, with_bias):
    v, c = (x[:-1], x[-1]) if with_bias else (x, 0.0)
    t = U @ v + c
    return w @ np.logaddexp(lz, t) / len(P) - t[P].mean() + reg * v @ v


def _fd_gradient(f, x, h=1e-6):
    e = np.eye(x.size) * h
    return np.array([(f(x + e[q]) - f(x - e[q])) / (2 * h) for q in range(x.size)])


def test_softmax_rows_minimise_their_objective_in_both_forms(solved):
    """A ranking model's user fold-in: the result is where the documented objective's
    gradient (by central differences, not the solver's own formula) vanishes, and the
    row-space form (fewer items than factors: systems of at most m) equals the primal."""
    rng = np.random.default_rng(2)
    for trial in range(30):
        k = int(rng.integers(2, 30))
        m = int(rng.integers(1, k)) if trial % 2 else int(rng.integers(k, 3 * k))
        F = rng.normal(size=(m, k)) * 0.5
        ob = rng.normal(size=m) * (trial % 3 > 0)  # item biases or none
        pos = [np.unique(rng.integers(0, m, size=int(rng.integers(1, m + 1))))
               for _ in range(3)]
        reg = [0.01, 0.1, 1.0][trial % 3]
        want = R.softmax_rows(pos, F, ob, reg, dual=False)
        solved.clear()
        got = R.softmax_rows(pos, F, ob, reg, dual=True)
        assert max(solved) <= min(m, k)
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9)
        for x, j in zip(want, pos, strict=True):
            g = _fd_gradient(partial(_row_objective, F=F, ob=ob, j=j, reg=reg), x)
            assert np.abs(g).max() < 1e-6, (trial, np.abs(g).max())


def test_fold_in_hessians_in_float32_find_the_same_minimum(monkeypatch):
    """A float32 model's user fold-in sums its Newton Hessians in float32 (half the time
    of float64; the gradients stay float64) and computes the Hessian at x = 0, the same
    for every user, once: the rows found are the float64 solver's, and the gradient of
    the documented objective vanishes at them."""
    rng = np.random.default_rng(4)
    grams = []
    gram = R._weighted_gram
    monkeypatch.setattr(R, "_weighted_gram",
                        lambda A, w, center=None: grams.append((A.dtype, w))
                        or gram(A, w, center))
    for trial in range(6):
        m, k = 300, 12
        F = (rng.normal(size=(m, k)) * 0.5).astype(np.float32).astype(np.float64)
        ob = rng.normal(size=m) * (trial % 2)
        pos = [np.unique(rng.integers(0, m, size=int(rng.integers(1, 30))))
               for _ in range(4)]
        want = R.softmax_rows(pos, F, ob, 0.05)
        grams.clear()
        got = R.softmax_rows(pos, F, ob, 0.05, hess_dtype=np.float32)
        assert {dt for dt, _ in grams} == {np.dtype(np.float32)}
        at_zero = np.exp(ob - ob.max()) / np.exp(ob - ob.max()).sum()
        assert sum(np.array_equal(w, at_zero) for _, w in grams) == 1, trial
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
        for x, j in zip(got, pos, strict=True):
            g = _fd_gradient(partial(_row_objective, F=F, ob=ob, j=j, reg=0.05), x)
            assert np.abs(g).max() < 1e-6, (trial, np.abs(g).max())


@pytest.mark.parametrize("case", ["ill-conditioned, reg 1e-8", "ill-conditioned, reg 0",
                                  "rows of 1e-22", "rows of 1e19"])
def test_float32_hessians_only_where_they_find_the_float64_minimum(case):
    """float32's rounding of a Hessian (about 1e-7 of the largest squared row norm) made
    it indefinite when the penalty was far below that, on item factors spanning four
    orders of magnitude: Newton stopped with the gradient at 3e-2 and rows 70-130% off.
    Rows of 1e-22 underflowed to a zero Hessian. Such problems are now solved as in
    float64 (found by review 16)."""
    rng = np.random.default_rng(0)
    m, k = 400, 16
    U, _ = np.linalg.qr(rng.normal(size=(m, k)))
    V, _ = np.linalg.qr(rng.normal(size=(k, k)))
    ill = "ill" in case
    F = U @ np.diag(np.logspace(0, -4, k)) @ V * 20 if ill else rng.normal(size=(m, k)) * 0.3
    F = (F * (1.0 if ill else float(case.split()[-1]))).astype(np.float32).astype(np.float64)
    ob = rng.normal(size=m) * 0.5
    pos = [rng.choice(m, 5, replace=False) for _ in range(10)]
    c = {"ill-conditioned, reg 1e-8": 1e-8, "ill-conditioned, reg 0": 0.0}.get(case, 0.03)
    reg = c * float(np.mean(np.sum(F * F, axis=1)))
    want = R.softmax_rows(pos, F, ob, reg)
    got = R.softmax_rows(pos, F, ob, reg, hess_dtype=np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9 * np.abs(want).max())


def test_softmax_columns_minimise_their_objective_in_both_forms(solved):
    """A ranking model's item fold-in: (v, c) zero the gradient of the documented
    multinomial objective (each user's softmax over the other items plus this one), an
    item's own old score is left out of Z, and the forms agree."""
    rng = np.random.default_rng(3)
    for trial in range(20):
        k = int(rng.integers(2, 20))
        n = int(rng.integers(1, k)) if trial % 2 else int(rng.integers(k, 3 * k))
        U = rng.normal(size=(n, k)) * 0.5
        V = rng.normal(size=(6, k)) * 0.5
        b = rng.normal(size=6)
        w = rng.integers(0, 5, size=n).astype(float)
        pos = [np.unique(rng.integers(0, n, size=int(rng.integers(1, n + 1))))
               for _ in range(2)]
        replaced = np.array([-1, 2])  # a new item, and item 2 refolded
        # the new item's users all draw it once more; of the refolded item's, every
        # other one is new to it (the counts hold the others' draws already)
        added = [pos[0], pos[1][::2]]
        reg, with_bias = [0.01, 0.3][trial % 2], trial % 4 < 2
        want = R.softmax_columns(pos, U, V, b, w, replaced, reg, with_bias, dual=False,
                                 added=added)
        solved.clear()
        got = R.softmax_columns(pos, U, V, b, w, replaced, reg, with_bias, dual=True,
                                added=added)
        assert max(solved) <= min(n, k) + with_bias
        np.testing.assert_allclose(got[0], want[0], rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-7, atol=1e-9)
        if not with_bias:
            assert (want[1] == 0).all()
        for col, P in enumerate(pos):
            keep = np.arange(6) != replaced[col]
            S = U @ V[keep].T + b[keep]
            lz = np.log(np.exp(S).sum(1))
            # each user's draws after the fold-in: the counts plus the rows added
            wc = w.copy()
            wc[added[col]] += 1
            x = np.append(want[0][col], want[1][col]) if with_bias else want[0][col]
            g = _fd_gradient(partial(_column_objective, U=U, lz=lz, w=wc, P=P, reg=reg,
                                     with_bias=with_bias), x)
            assert np.abs(g).max() < 1e-6, (trial, np.abs(g).max())


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


def test_softmax_columns_when_the_refolded_item_dominates_a_softmax():
    """Review 11: log(Z - e^old) lost its digits when the item held nearly all of a
    user's Z (log 0 = -inf), the bias term became linear and unbounded, and the item got
    a bias of -1e13 to -7e14. Such users' Z is now summed directly; in a model of one
    item no user has another item, and no term pulls the bias anywhere."""
    rng = np.random.default_rng(5)
    U = rng.normal(size=(40, 4)) * 10
    V = rng.normal(size=(6, 4)) * 10
    b = rng.normal(size=6)
    w = np.full(40, 3.0)
    S = U @ V.T + b
    top = S.argmax(1)
    j = int(np.bincount(top).argmax())  # an item on top of many users' lists, by far
    assert ((S[:, j] - np.sort(S, 1)[:, -2] > 40) & (top == j)).sum() >= 1
    P = np.flatnonzero(top != j)[:5]  # interacted by users who do not favour it
    v, c = R.softmax_columns([P], U, V, b, w, np.array([j]), 0.1)
    assert abs(c[0]) < 1e3, c
    keep = np.arange(6) != j
    So = U @ V[keep].T + b[keep]
    lz = np.log(np.exp(So - So.max(1, keepdims=True)).sum(1)) + So.max(1)
    wc = np.maximum(w, 1)
    g = _fd_gradient(partial(_column_objective, U=U, lz=lz, w=wc, P=P, reg=0.1,
                             with_bias=True), np.append(v[0], c[0]), h=1e-5)
    assert np.abs(g).max() < 1e-5
    one = R.softmax_columns([np.array([1, 3])], U[:6], V[:1], b[:1], w[:6], np.array([0]),
                            0.1)
    assert np.isfinite(one[0]).all() and one[1][0] == 0.0
