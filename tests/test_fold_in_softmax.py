"""A ranking model's user fold-in (softmax_rows): L-BFGS from the Hessian at x = 0,
shared by the rows and kept with the model, in blocks of rows advancing together. It
finds the minimum an independent Newton solve finds, whatever the blocks, the dtype of
the Hessian or the conditioning, and the model keeps what it reuses only while the
items stay as they were."""

import copy

import numpy as np
import pytest
from scipy.special import logsumexp

import mfsgd._recommend as R
from mfsgd import MatrixFactorization
from mfsgd.datasets import make_ratings


def _plain_newton(F, ob, j, reg):
    """The documented objective's minimiser by textbook damped Newton, float64, with
    the gradient and Hessian written out here."""
    m, k = F.shape
    x = np.zeros(k)

    def f(x):
        s = F @ x + ob
        return logsumexp(s) - s[j].mean() + reg * x @ x

    for _ in range(200):
        s = F @ x + ob
        p = np.exp(s - logsumexp(s))
        mv = F.T @ p
        g = mv - F[j].mean(0) + 2 * reg * x
        H = (F * p[:, None]).T @ F - np.outer(mv, mv) + 2 * reg * np.eye(k)
        d = np.linalg.solve(H, g)
        if g @ d < 1e-28:
            return x - d
        t = 1.0
        while f(x - t * d) > f(x) - 1e-4 * t * (g @ d) and t > 1e-12:
            t /= 2
        x = x - t * d
    return x


def _problem(seed, m=400, k=12, users=9, spread=0.5):
    rng = np.random.default_rng(seed)
    F = rng.normal(size=(m, k)) * spread
    ob = rng.normal(size=m) * (seed % 2)
    pos = [rng.choice(m, int(rng.integers(1, 40)), replace=True) for _ in range(users)]
    reg = 0.03 * float(np.mean(np.sum(F * F, axis=1)))
    return F, ob, pos, reg


@pytest.mark.parametrize("hess", [np.float64, np.float32])
@pytest.mark.parametrize("seed", range(4))
def test_softmax_rows_find_the_independent_newton_minimum(seed, hess):
    F, ob, pos, reg = _problem(seed, spread=[0.3, 1.0, 2.0, 0.5][seed])
    got = R.softmax_rows(pos, F, ob, reg, hess_dtype=hess)
    for x, j in zip(got, pos, strict=True):
        want = _plain_newton(F, ob, j, reg)
        np.testing.assert_allclose(x, want, rtol=1e-9, atol=1e-11 * np.abs(want).max())


def test_softmax_rows_in_blocks_equal_the_rows_one_by_one(monkeypatch):
    """Rows solved together, in blocks of any size (the last one short), give each row
    what a call with that row alone gives."""
    F, ob, pos, reg = _problem(5, users=11)
    alone = np.vstack([R.softmax_rows([j], F, ob, reg) for j in pos])
    for rows in (1, 3, 4, 11, 50):
        monkeypatch.setattr(R, "SOFTMAX_BLOCK", rows * F.shape[0])
        got = R.softmax_rows(pos, F, ob, reg)
        np.testing.assert_allclose(got, alone, rtol=1e-10, atol=1e-13)
    assert R.softmax_rows([], F, ob, reg).shape == (0, F.shape[1])


@pytest.mark.parametrize("reg_share", [1e-6, 1e-10])
def test_softmax_rows_ill_conditioned_and_finished_by_newton(reg_share, monkeypatch):
    """A tiny penalty and item factors spanning four orders of magnitude: the Hessian at
    the minimum is far from the one at 0. L-BFGS still finds the exact solve's minimum;
    rows it leaves unsolved after SOFTMAX_QN_STEPS steps (forced here: 0 or 3) are
    finished by Newton's method from where they stand, to the same minimum."""
    rng = np.random.default_rng(0)
    m, k = 400, 16
    U, _ = np.linalg.qr(rng.normal(size=(m, k)))
    V, _ = np.linalg.qr(rng.normal(size=(k, k)))
    F = U @ np.diag(np.logspace(0, -4, k)) @ V * 20
    ob = rng.normal(size=m) * 0.5
    pos = [rng.choice(m, 5, replace=False) for _ in range(4)]
    reg = reg_share * float(np.mean(np.sum(F * F, axis=1)))
    got = R.softmax_rows(pos, F, ob, reg)
    for x, j in zip(got, pos, strict=True):
        want = _plain_newton(F, ob, j, reg)
        np.testing.assert_allclose(x, want, rtol=1e-6, atol=1e-8 * np.abs(want).max())
    finished = []
    newton = R._softmax_newton
    monkeypatch.setattr(R, "_softmax_newton", lambda *a: finished.append(1) or newton(*a))
    for steps in (0, 3):
        monkeypatch.setattr(R, "SOFTMAX_QN_STEPS", steps)
        finished.clear()
        np.testing.assert_allclose(R.softmax_rows(pos, F, ob, reg), got, rtol=1e-6,
                                   atol=1e-8 * np.abs(got).max())
        assert len(finished) == len(pos)


def test_softmax_rows_with_fewer_items_than_factors_and_no_signal():
    """The row space (fewer items than factors) and items all zero (no unknowns)."""
    F, ob, pos, reg = _problem(1, m=5, k=12)
    got = R.softmax_rows(pos, F, ob, reg, dual=True)
    for x, j in zip(got, pos, strict=True):
        want = _plain_newton(F, ob, j, reg)
        np.testing.assert_allclose(x, want, rtol=1e-8, atol=1e-10 * np.abs(want).max())
    zero = R.softmax_rows(pos, np.zeros((5, 12)), ob, 0.0, dual=True)
    assert zero.shape == (len(pos), 12) and not zero.any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_user_fold_in_keeps_the_items_part_across_calls(dtype, monkeypatch):
    """One new user per call: the Hessian at 0 and the items' float64 rows are built
    once and carried to the states user fold-ins make (the items are unchanged), with
    the rows a fresh model would give; an item fold-in, partial_fit or another penalty
    builds them anew, and copies hold none."""
    u, i, _ = make_ratings(60, 80, 1500, random_state=0, as_frame=False)
    m = MatrixFactorization(loss="bpr", n_factors=8, n_epochs=3, random_state=0,
                            dtype=dtype).fit((u, i))
    builds = []
    start = R.softmax_start
    monkeypatch.setattr(R, "softmax_start", lambda *a, **kw: builds.append(1) or start(*a, **kw))
    fresh = copy.deepcopy(m)
    for user, items in ((1000, [1, 2, 3]), (1001, [4, 5]), (1002, [6, 7, 8, 9])):
        m.fold_in(([user] * len(items), items))
        one = copy.deepcopy(fresh).fold_in(([user] * len(items), items))
        np.testing.assert_array_equal(m.user_factors_[-1], one.user_factors_[-1])
    assert len(builds) == 1 + 3  # one for the model's chain, one per fresh copy
    assert "_derived" not in copy.deepcopy(m)._state.__dict__
    builds.clear()
    m.fold_in(([0, 1], [2000, 2000]), side="item")
    m.fold_in(([1003] * 2, [1, 2000]))
    assert len(builds) == 1  # the items changed
    m.partial_fit((u[:50], i[:50]), n_epochs=1)
    m.fold_in(([1004] * 2, [1, 2]))
    m.fold_in(([1005] * 2, [1, 2]))
    assert len(builds) == 2
    monkeypatch.setattr(R, "FOLD_IN_RANKING_REG", 0.1)
    m.fold_in(([1006] * 2, [1, 2]))
    assert len(builds) == 3
