"""The ranking kernel (BPR, WARP, sampled softmax) against the NumPy reference, finite
differences, its own generator, and thread/segment determinism."""

import concurrent.futures as cf
import threading

import numpy as np
import pytest
from reference import draw_base, draw_bits, draw_item, harmonic, rank_epoch_reference

from mfsgd import _sgd
from mfsgd._training import Layout, aligned_concat, counts_of, split_by_counts

LOSSES = ["bpr", "warp", "softmax"]
HYPER = dict(lr=0.05, reg_f=0.02, reg_b=0.01)


def _misaligned(a):
    buf = np.empty(a.nbytes + 80, np.uint8)
    off = (-buf.ctypes.data) % 64 + 16
    out = buf[off:off + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def problem(seed, n=300, nu=25, ni=40, k=7, dtype=np.float64, aligned=False):
    rng = np.random.default_rng(seed)
    u = rng.integers(0, nu, n).astype(np.int32)
    i = rng.integers(0, ni, n).astype(np.int32)
    w = rng.uniform(0.5, 2.0, n).astype(dtype)
    P = rng.normal(0, 0.3, (nu, k)).astype(dtype)
    Q = rng.normal(0, 0.3, (ni, k)).astype(dtype)
    P, Q = (aligned_concat([P]), aligned_concat([Q])) if aligned else \
        (_misaligned(P), _misaligned(Q))
    bi = rng.normal(0, 0.2, ni).astype(dtype)
    return u, i, w, P, Q, bi


def popularity_cdf(items, n_items, beta=0.75):
    wts = (np.bincount(items, minlength=n_items) + 1.0) ** beta
    return np.concatenate([[0.0], np.cumsum(wts)])


def seen_csr(u, i, nu):
    pairs = np.unique(np.stack([u, i], 1), axis=0)
    ptr = np.concatenate([[0], np.cumsum(np.bincount(pairs[:, 0], minlength=nu))]).astype(np.int64)
    return ptr, pairs[:, 1].astype(np.int32), {a: set(pairs[pairs[:, 0] == a, 1].tolist())
                                               for a in range(nu)}


def run_kernel(u, i, w, P, Q, bi, loss, seed, lo, hi, *, use_bias=True, n_neg=1,
               max_sampled=10, margin=1.0, logq=False, cdf=None, seen=None, shuffle=0,
               hyper=HYPER, accum=(None, None), n_factors=0):
    out = np.zeros(1)
    ptr = np.array([0, len(u)], np.int64)
    _sgd.rank_segments(u, i, w if w is not None else np.empty(0, P.dtype), ptr,
                       np.array([lo], np.int32), np.array([hi], np.int32),
                       np.array([0], np.int64),
                       None if not shuffle else np.array([shuffle], np.uint64),
                       np.array([seed], np.uint64), cdf,
                       None if seen is None else seen[0], None if seen is None else seen[1],
                       P, Q, bi, _sgd.LOSSES[loss], hyper["lr"], hyper["reg_f"],
                       hyper["reg_b"], use_bias, n_neg, max_sampled, margin, logq, out,
                       seen[3] if seen is not None and len(seen) > 3 else None, *accum,
                       n_factors=n_factors)
    return out[0]


# ---- the generator ----------------------------------------------------------------------

@pytest.mark.parametrize("weighted", [False, True])
def test_draws_match_the_reference_generator(weighted):
    rng = np.random.default_rng(1)
    cdf = popularity_cdf(rng.integers(0, 50, 2000), 50) if weighted else None
    got = _sgd.draw_candidates(987654321, 40, 6, 7, 45, cdf)
    want = [[draw_item(draw_bits(draw_base(987654321, t), d), 7, 45, cdf) for d in range(6)]
            for t in range(40)]
    np.testing.assert_array_equal(got, want)
    assert got.min() >= 7 and got.max() < 45


def test_uniform_draws_are_uniform_and_weighted_draws_follow_the_weights():
    # chi-square, 19 degrees of freedom; fixed seeds, so this cannot flake
    g = _sgd.draw_candidates(5, 20000, 5, 100, 120).ravel()
    c = np.bincount(g - 100, minlength=20)
    assert ((c - 5000) ** 2 / 5000).sum() < 50
    wts = np.arange(1, 21, dtype=np.float64)
    cdf = np.concatenate([[0.0] * 101, 100 * 0 + np.cumsum(wts)])  # items 100..119
    cdf = np.concatenate([cdf, [cdf[-1]] * 5])
    g = _sgd.draw_candidates(6, 20000, 5, 100, 120, cdf).ravel()
    c = np.bincount(g - 100, minlength=20)
    expect = 100000 * wts / wts.sum()
    assert ((c - expect) ** 2 / expect).sum() < 50
    # a zero-weight item is never drawn
    wts[3] = 0
    cdf[101:121] = np.cumsum(wts)
    g = _sgd.draw_candidates(7, 5000, 4, 100, 120, cdf)
    assert not (g == 103).any()


def test_draws_depend_on_seed_step_and_draw_index():
    a = _sgd.draw_candidates(1, 100, 3, 0, 1 << 20)
    assert len(np.unique(a)) > 290
    assert not np.array_equal(a, _sgd.draw_candidates(2, 100, 3, 0, 1 << 20))


@pytest.mark.parametrize("m", [0, 1, 2, 10, 64, 65, 100, 1681, 10**6])
def test_harmonic(m):
    assert _sgd.harmonic(m) == pytest.approx(harmonic(m), rel=1e-14, abs=1e-15)


# ---- kernel vs reference ------------------------------------------------------------------

CASES = [  # (loss, options)
    ("bpr", {}),
    ("bpr", dict(n_neg=3, use_bias=False)),
    ("bpr", dict(cdf=True, seen=True)),
    ("bpr", dict(seen="bits")),
    ("warp", dict(seen="bits", cdf=True)),
    ("softmax", dict(n_neg=6, seen="bits")),
    ("warp", {}),
    ("warp", dict(margin=0.3, max_sampled=5, cdf=True)),
    ("warp", dict(seen=True, use_bias=False, max_sampled=70)),
    ("softmax", dict(n_neg=5)),
    ("softmax", dict(n_neg=8, cdf=True, logq=True, seen=True)),
    ("softmax", dict(n_neg=1, use_bias=False, cdf=True)),
]


def _options(opts, u, i, ni):
    o = dict(opts)
    cdf = popularity_cdf(i, ni) if o.pop("cdf", False) else None
    kind = o.pop("seen", False)
    seen = seen_csr(u, i, u.max() + 1) if kind else None
    if kind == "bits":  # the bitmap record instead of the CSR one (same set)
        seen = (None, None, seen[2], _sgd.seen_bitmap(u, i, u.max() + 1, ni))
    return o, cdf, seen


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("k", [3, 16, 64, 100])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_rank_epoch_matches_reference_float64(isa, case, k, aligned):
    loss, opts = CASES[case]
    u, i, w, P, Q, bi = problem(case * 100 + k, k=k, aligned=aligned)
    lo, hi = 3, 37
    keep = (i >= lo) & (i < hi)  # positives lie in the segment's item range
    u, i, w = u[keep], i[keep], w[keep]
    o, cdf, seen = _options(opts, u, i, Q.shape[0])
    ref = rank_epoch_reference(u, i, w, P, Q, bi, loss=loss, seed=42, lo=lo, hi=hi, **HYPER,
                               cdf=cdf, seen=None if seen is None else seen[2], **o)
    got = run_kernel(u, i, w, P, Q, bi, loss, 42, lo, hi, cdf=cdf, seen=seen, **o)
    for a, b in zip((P, Q, bi), ref[:3], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert got == pytest.approx(ref[3], rel=1e-12)


@pytest.mark.parametrize("k", [8, 32, 64])
@pytest.mark.parametrize("case", [0, 3, 4, 5, 6, 9, 10])
def test_rank_epoch_matches_reference_float32(isa, case, k):
    loss, opts = CASES[case]
    u, i, w, P, Q, bi = problem(case * 7 + k, k=k, dtype=np.float32, aligned=True)
    o, cdf, seen = _options(opts, u, i, Q.shape[0])
    ref = rank_epoch_reference(u, i, w, P, Q, bi, loss=loss, seed=3, lo=0, hi=Q.shape[0],
                               **HYPER, cdf=cdf, seen=None if seen is None else seen[2],
                               dtype=np.float32, **o)
    run_kernel(u, i, w, P, Q, bi, loss, 3, 0, Q.shape[0], cdf=cdf, seen=seen, **o)
    for a, b in zip((P, Q, bi), ref[:3], strict=True):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


# AdaGrad (one accumulator per row), every loss, weighted, biased or not, seen rejection
ADA_CASES = [("bpr", dict(n_neg=3)), ("bpr", dict(use_bias=False, seen="bits")),
             ("warp", {}), ("warp", dict(use_bias=False, seen=True, max_sampled=70)),
             ("softmax", dict(n_neg=6)), ("softmax", dict(n_neg=3, use_bias=False, cdf=True))]


def _accumulators(seed, P, Q):
    rng = np.random.default_rng(seed)  # not all 1: the rate must use each row's own G
    return (rng.uniform(1, 3, P.shape[0]).astype(P.dtype),
            rng.uniform(1, 3, Q.shape[0]).astype(Q.dtype))


def _adagrad_case(case, seed, k, dtype, aligned=False):
    """An AdaGrad problem of ADA_CASES[case] and the reference epoch on it: (loss,
    problem arrays, run_kernel's options, the kernel's accumulators, the reference's
    parameters and accumulators)."""
    loss, opts = ADA_CASES[case]
    u, i, w, P, Q, bi = problem(seed, k=k, dtype=dtype, aligned=aligned)
    o, cdf, seen = _options(opts, u, i, Q.shape[0])
    Gu, Gi = _accumulators(case, P, Q)
    rGu, rGi = Gu.copy(), Gi.copy()
    hyper = dict(HYPER, lr=0.2)
    ref = rank_epoch_reference(u, i, w, P, Q, bi, loss=loss, seed=5, lo=0, hi=Q.shape[0],
                               **hyper, cdf=cdf, seen=None if seen is None else seen[2],
                               dtype=dtype, Gu=rGu, Gi=rGi, **o)
    return (loss, (u, i, w, P, Q, bi), dict(cdf=cdf, seen=seen, hyper=hyper, **o), (Gu, Gi),
            (*ref, rGu, rGi))


def _ada_tol(dtype):
    return dict(rtol=1e-12, atol=1e-12) if dtype == np.float64 else dict(rtol=3e-5, atol=3e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("k", [5, 16, 64])
@pytest.mark.parametrize("case", range(len(ADA_CASES)))
def test_adagrad_rank_epoch_matches_reference(isa, case, k, aligned, dtype):
    loss, (u, i, w, P, Q, bi), kw, (Gu, Gi), ref = _adagrad_case(
        case, case * 31 + k, k, dtype, aligned or dtype == np.float32)
    got = run_kernel(u, i, w, P, Q, bi, loss, 5, 0, Q.shape[0], accum=(Gu, Gi), **kw)
    for a, b in zip((P, Q, bi, Gu, Gi), (*ref[:3], *ref[4:]), strict=True):
        np.testing.assert_allclose(a, b, **_ada_tol(dtype))
    assert got == pytest.approx(ref[3], rel=1e-12 if dtype == np.float64 else 1e-4)
    G0u, G0i = _accumulators(case, P, Q)
    assert (Gu >= G0u).all() and (Gi >= G0i).all() and (Gi > G0i).any()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", range(len(ADA_CASES)))
def test_adagrad_rank_means_exclude_the_zero_padding(case, dtype):
    """As for the squared loss: rows padded with zero columns, given the true
    ``n_factors``, train as the reference on the unpadded rows (review 21)."""
    k, width = 5, 16
    loss, (u, i, w, P, Q, bi), kw, (Gu, Gi), ref = _adagrad_case(case, case * 17 + 2, k, dtype)
    Pp, Qp = (aligned_concat([np.pad(a, ((0, 0), (0, width - k)))]) for a in (P, Q))
    run_kernel(u, i, w, Pp, Qp, bi, loss, 5, 0, Q.shape[0], accum=(Gu, Gi), n_factors=k, **kw)
    assert not Pp[:, k:].any() and not Qp[:, k:].any()
    for a, b in zip((Pp[:, :k], Qp[:, :k], bi, Gu, Gi), (*ref[:3], *ref[4:]), strict=True):
        np.testing.assert_allclose(a, b, **_ada_tol(dtype))


def test_adagrad_rate_falls_with_each_rows_updates():
    """Under AdaGrad a row that has moved a lot takes smaller steps: the same epoch from
    larger accumulators moves every row less, and every accumulator only grows."""
    u, i, w, P, Q, bi = problem(12)
    moves = []
    for start in (1.0, 100.0):
        P1, Q1, b1 = P.copy(), Q.copy(), bi.copy()
        Gu, Gi = np.full(P.shape[0], start), np.full(Q.shape[0], start)
        run_kernel(u, i, w, P1, Q1, b1, "warp", 3, 0, Q.shape[0], accum=(Gu, Gi))
        assert (Gu >= start).all() and (Gi >= start).all() and (Gi > start).any()
        moves.append(np.abs(Q1 - Q).sum())
    assert moves[1] < 0.5 * moves[0]


def test_adagrad_accumulators_are_checked():
    u, i, w, P, Q, bi = problem(13)
    with pytest.raises(ValueError, match="together"):
        run_kernel(u, i, w, P, Q, bi, "bpr", 1, 0, Q.shape[0], accum=(np.ones(P.shape[0]), None))
    with pytest.raises(ValueError, match="one value per user and item row"):
        run_kernel(u, i, w, P, Q, bi, "bpr", 1, 0, Q.shape[0],
                   accum=(np.ones(P.shape[0]), np.ones(Q.shape[0] - 1)))


@pytest.mark.parametrize("loss", LOSSES)
def test_no_weights_means_weight_one(loss):
    u, i, w, P, Q, bi = problem(3)
    P2, Q2, bi2 = P.copy(), Q.copy(), bi.copy()
    run_kernel(u, i, None, P, Q, bi, loss, 9, 0, Q.shape[0], n_neg=2)
    run_kernel(u, i, np.ones_like(w), P2, Q2, bi2, loss, 9, 0, Q.shape[0], n_neg=2)
    np.testing.assert_array_equal(P, P2)
    np.testing.assert_array_equal(Q, Q2)
    np.testing.assert_array_equal(bi, bi2)


def test_items_outside_the_range_never_move():
    u, i, w, P, Q, bi = problem(4, ni=60)
    keep = (i >= 10) & (i < 30)
    Q0, b0 = Q.copy(), bi.copy()
    for loss in LOSSES:
        run_kernel(u[keep], i[keep], w[keep], P, Q, bi, loss, 1, 10, 30, n_neg=4)
    np.testing.assert_array_equal(Q[:10], Q0[:10])
    np.testing.assert_array_equal(Q[30:], Q0[30:])
    np.testing.assert_array_equal(bi[30:], b0[30:])
    assert not np.array_equal(Q[10:30], Q0[10:30])


@pytest.mark.parametrize("loss", LOSSES)
def test_shuffled_segments_match_the_reference_in_permuted_order(loss):
    u, i, w, P, Q, bi = problem(8, n=500)
    P1, Q1, bi1 = P.copy(), Q.copy(), bi.copy()
    ku, ki, kw = u.copy(), i.copy(), w.copy()
    for a in (ku, ki, kw):
        a.setflags(write=False)  # the stored triples are only read
    run_kernel(ku, ki, kw, P1, Q1, bi1, loss, 77, 0, Q.shape[0], n_neg=3, shuffle=12345)
    perm = _sgd.permutation(len(u), 12345)
    ref = rank_epoch_reference(u[perm], i[perm], w[perm], P, Q, bi, loss=loss, seed=77, lo=0,
                               hi=Q.shape[0], **HYPER, n_neg=3)
    np.testing.assert_allclose(P1, ref[0], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Q1, ref[1], rtol=1e-12, atol=1e-12)


# ---- finite differences -------------------------------------------------------------------

def _fd(loss_fn, theta, h=1e-6):
    return np.array([(loss_fn(theta + h * e) - loss_fn(theta - h * e)) / (2 * h)
                     for e in np.eye(theta.size)])


def _sigma_loss(x):
    return np.logaddexp(0.0, -x)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("use_bias", [True, False])
def test_updates_are_minus_half_gradient_times_lr(loss, use_bias):
    """For one interaction with weight w and its drawn negatives, the kernel moves each
    parameter by -lr * (1/2) dL/dtheta with L = 2 w l + lambda1 sum |rows|^2 + lambda2 sum
    b'^2 over the rows and biases the step touches (the squared loss's convention),
    gradient by central differences."""
    k, ni, lr, reg_f, reg_b = 5, 1000, 1e-3, 0.07, 0.03
    rng = np.random.default_rng(11)
    P = rng.normal(0, 0.5, (2, k))
    Q = rng.normal(0, 0.5, (ni, k))
    bi = rng.normal(0, 0.3, ni)
    u, i, w = np.array([1], np.int32), np.array([17], np.int32), np.array([1.7])
    seed, n_neg = 2024, (4 if loss == "softmax" else 1)
    cand = _sgd.draw_candidates(seed, 1, 64, 0, ni)[0]
    if loss == "warp":
        # make the third candidate the first violator: the rank weight is H((N-1)//3)
        s_i = P[1] @ Q[17] + bi[17] * use_bias
        for j in cand[:2]:
            Q[j] = P[1] / (P[1] @ P[1]) * (s_i - 5.0 - bi[j] * use_bias)
        Q[cand[2]] = P[1] / (P[1] @ P[1]) * (s_i + 0.2 - bi[cand[2]] * use_bias)
        negs, phi = [int(cand[2])], harmonic((ni - 1) // 3)
    else:
        negs, phi = [int(j) for j in cand[:n_neg]], None
    assert len(set(negs)) == len(negs) and 17 not in negs
    rows = [17, *negs]
    nr = len(rows)

    def unpack(th):
        return th[:k], th[k:k + nr * k].reshape(nr, k), th[k + nr * k:]

    def L(th):
        p, q, b = unpack(th)
        s = q @ p + (b if use_bias else 0)
        if loss == "bpr":
            data = _sigma_loss(s[0] - s[1])
        elif loss == "warp":
            data = phi * (1.0 - s[0] + s[1])
        else:
            data = np.logaddexp.reduce(s) - s[0]
        reg = reg_f * (p @ p + (q * q).sum()) + (reg_b * (b @ b) if use_bias else 0)
        return 2 * w[0] * data + reg

    theta = np.concatenate([P[1], Q[rows].ravel(), bi[rows]])
    grad = _fd(L, theta)
    if not use_bias:
        grad[k + nr * k:] = 0
    P2, Q2, b2 = P.copy(), Q.copy(), bi.copy()
    run_kernel(u, i, w, P2, Q2, b2, loss, seed, 0, ni, use_bias=use_bias, n_neg=n_neg,
               hyper=dict(lr=lr, reg_f=reg_f, reg_b=reg_b))
    after = np.concatenate([P2[1], Q2[rows].ravel(), b2[rows]])
    np.testing.assert_allclose(after - theta, -lr * 0.5 * grad, rtol=1e-6, atol=1e-11)
    assert L(after) < L(theta)  # a descent step
    others = np.setdiff1d(np.arange(ni), rows)
    np.testing.assert_array_equal(Q2[others], Q[others])
    np.testing.assert_array_equal(P2[0], P[0])


# ---- determinism over threads and segment calls -------------------------------------------

def _grid(seed, p, s=1, k=16, loss="warp"):
    rng = np.random.default_rng(seed)
    nu, ni, n = 300, 200, 20000
    u = (rng.pareto(1.5, n) * 20).astype(np.int64) % nu
    i = (rng.pareto(1.2, n) * 10).astype(np.int64) % ni
    u, i = u.astype(np.int32), i.astype(np.int32)
    fi = split_by_counts(counts_of(i, ni), p * s)
    lay = Layout.build([u.copy(), i.copy(), np.ones(n, np.float64)], nu, ni, p, s)
    # A segment's item range: that of its block's item column (the layout's item parts are
    # contiguous and increasing in the item index).
    col = (lay.seg_block % p)
    part = fi // s
    lo = np.searchsorted(part, col, side="left").astype(np.int32)
    hi = np.searchsorted(part, col, side="right").astype(np.int32)
    P = aligned_concat([rng.normal(0, 0.1, (nu, k))])
    Q = aligned_concat([rng.normal(0, 0.1, (ni, k))])
    return lay, lo, hi, P, Q, np.zeros(ni)


def _epoch(lay, lo, hi, P, Q, bi, rng, n_threads, per_segment_calls=False, loss="warp"):
    from mfsgd._training import epoch_plan
    pool = cf.ThreadPoolExecutor(n_threads) if n_threads > 1 else None
    try:
        for st in epoch_plan(lay, rng):
            dseeds = rng.integers(1, 2**63, size=st.segments.size, dtype=np.int64).view(np.uint64)

            def run(idx, st=st, dseeds=dseeds):
                chunks = [idx[a:a + 1] for a in range(idx.size)] if per_segment_calls else [idx]
                for c in chunks:
                    if c.size:
                        _sgd.rank_segments(lay.users, lay.items, np.empty(0), lay.seg_ptr, lo,
                                           hi, st.segments[c], st.seeds[c], dseeds[c], None,
                                           None, None, P, Q, bi, _sgd.LOSSES[loss], 0.05, 0.01,
                                           0.01, True, 2, 10, 1.0, False, None)

            b = st.block_bounds
            groups = [np.arange(b[j], b[j + 1]) for j in range(len(b) - 1)]
            if pool is None:
                run(np.concatenate(groups))
            else:
                list(pool.map(run, groups))
    finally:
        if pool is not None:
            pool.shutdown()


@pytest.mark.parametrize("loss", LOSSES)
def test_model_is_identical_for_any_thread_count_and_call_split(loss):
    results = []
    for n_threads, split in ((1, False), (2, False), (3, True)):
        lay, lo, hi, P, Q, bi = _grid(5, p=3, s=2)
        rng = np.random.default_rng(99)
        for _ in range(2):
            _epoch(lay, lo, hi, P, Q, bi, rng, n_threads, split, loss)
        results.append((P, Q, bi))
    for P, Q, bi in results[1:]:
        np.testing.assert_array_equal(P, results[0][0])
        np.testing.assert_array_equal(Q, results[0][1])
        np.testing.assert_array_equal(bi, results[0][2])
    assert not np.array_equal(results[0][0], _grid(5, p=3, s=2)[3])


def test_segment_item_ranges_are_those_of_the_block():
    lay, lo, hi, *_ = _grid(6, p=3, s=2)
    for g in range(lay.n_segments):
        it = lay.items[lay.seg_ptr[g]:lay.seg_ptr[g + 1]]
        assert it.size == 0 or (it.min() >= lo[g] and it.max() < hi[g])
    # the three item columns tile the item range
    assert sorted(set(zip(lo.tolist(), hi.tolist(), strict=True)))[0][0] == 0


# ---- sample_weight for the squared loss ------------------------------------------------------

from reference import adagrad_epoch_reference, rating_loss, sgd_epoch_reference  # noqa: E402


def _squared_problem(seed, k, dtype=np.float64, aligned=False, n=400):
    rng = np.random.default_rng(seed)
    u, i, _, P, Q, bi = problem(seed, n=n, k=k, dtype=dtype, aligned=aligned)
    r = rng.uniform(1, 5, n).astype(dtype)
    w = rng.uniform(0.1, 3.0, n).astype(dtype)
    bu = rng.normal(0, 0.2, P.shape[0]).astype(dtype)
    return u, i, r, w, P, Q, bu, bi


def _weighted(u, i, r, w, P, Q, bu, bi, *, seed=0, accum=None, hyper=(3.0, 0.03, 0.05, 0.02)):
    sse = np.zeros(1)
    dt = P.dtype
    Gu, Gi = accum if accum is not None else (np.empty(0, dt), np.empty(0, dt))
    _sgd.sgd_segments_weighted(u, i, r, w, np.array([0, len(r)], np.int64),
                               np.array([0], np.int64), np.array([seed], np.uint64), P, Q, bu,
                               bi, *hyper, True, False, sse, Gu, Gi)
    return sse[0]


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("k", [7, 16, 64, 100])
def test_weighted_squared_matches_reference(isa, k, aligned):
    u, i, r, w, P, Q, bu, bi = _squared_problem(k, k, aligned=aligned)
    ref = sgd_epoch_reference(u, i, r, P, Q, bu, bi, 3.0, 0.03, 0.05, 0.02, weights=w)
    sse = _weighted(u, i, r, w, P, Q, bu, bi)
    for got, want in zip((P, Q, bu, bi), ref[:4], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert sse == pytest.approx(ref[4], rel=1e-12)


def test_weighted_squared_float32_and_adagrad_and_shuffle(isa):
    u, i, r, w, P, Q, bu, bi = _squared_problem(3, 32, dtype=np.float32, aligned=True)
    ref = sgd_epoch_reference(u, i, r, P, Q, bu, bi, 3.0, 0.03, 0.05, 0.02, weights=w,
                              dtype=np.float32)
    _weighted(u, i, r, w, P, Q, bu, bi)
    for got, want in zip((P, Q, bu, bi), ref[:4], strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-6)
    u, i, r, w, P, Q, bu, bi = _squared_problem(4, 16, aligned=True)
    rng = np.random.default_rng(0)
    Gu, Gi = rng.uniform(1, 3, len(bu)), rng.uniform(1, 3, len(bi))
    ref = adagrad_epoch_reference(u, i, r, P, Q, bu, bi, Gu, Gi, 3.0, 0.03, 0.05, 0.02,
                                  weights=w)
    _weighted(u, i, r, w, P, Q, bu, bi, accum=(Gu, Gi))
    for got, want in zip((P, Q, bu, bi, Gu, Gi), ref, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # a shuffled segment gathers its weights with the triples
    u, i, r, w, P, Q, bu, bi = _squared_problem(5, 16)
    perm = _sgd.permutation(len(r), 4321)
    ref = sgd_epoch_reference(u[perm], i[perm], r[perm], P, Q, bu, bi, 3.0, 0.03, 0.05, 0.02,
                              weights=w[perm])
    sse = _weighted(u, i, r, w, P, Q, bu, bi, seed=4321)
    np.testing.assert_allclose(P, ref[0], rtol=1e-12, atol=1e-12)
    assert sse == pytest.approx(ref[4], rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unit_weights_give_the_unweighted_model(isa, dtype):
    """Equal to rounding, not bit for bit: with FMA contraction the compiler may fuse a
    different product of e * v - lambda1 * u in the weighted instance of the loop."""
    u, i, r, w, P, Q, bu, bi = _squared_problem(6, 64, dtype=dtype, aligned=True)
    P2, Q2, bu2, bi2 = P.copy(), Q.copy(), bu.copy(), bi.copy()
    sse1 = _weighted(u, i, r, np.ones_like(w), P, Q, bu, bi, seed=99)
    sse2 = np.zeros(1)
    _sgd.sgd_segments(u, i, r, np.array([0, len(r)], np.int64), np.array([0], np.int64),
                      np.array([99], np.uint64), P2, Q2, bu2, bi2, 3.0, 0.03, 0.05, 0.02, True,
                      False, sse2, np.empty(0, dtype), np.empty(0, dtype))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)
    for a, b in ((P, P2), (Q, Q2), (bu, bu2), (bi, bi2)):
        np.testing.assert_allclose(a, b, **tol)
    assert sse1 == pytest.approx(sse2[0], rel=tol["rtol"])


def test_weighted_update_is_minus_half_gradient_of_weighted_term():
    """L = w (r - r^)^2 + lambda1 (|u|^2 + |v|^2) + lambda2 (b^2 + b'^2): the step is
    -lr * (1/2) dL/dtheta, as for the unweighted loss."""
    u, i, r, w, P, Q, bu, bi = _squared_problem(7, 6, n=1)
    w[:] = 2.5
    lr, reg_f, reg_b, mu = 1e-3, 0.07, 0.03, 3.0
    uu, ii, k = int(u[0]), int(i[0]), 6
    theta = np.concatenate([P[uu], Q[ii], [bu[uu], bi[ii]]])

    def L(th):
        e_only = rating_loss(r[0], mu, th[:k], th[k:2 * k], th[2 * k], th[2 * k + 1], 0, 0)
        reg = rating_loss(mu, mu, th[:k], th[k:2 * k] * 0, th[2 * k], th[2 * k + 1], reg_f,
                          reg_b) - (th[2 * k] + th[2 * k + 1]) ** 2
        return w[0] * e_only + reg + reg_f * th[k:2 * k] @ th[k:2 * k]

    grad = _fd(L, theta)
    _weighted(u, i, r, w, P, Q, bu, bi, hyper=(mu, lr, reg_f, reg_b))
    after = np.concatenate([P[uu], Q[ii], [bu[uu], bi[ii]]])
    np.testing.assert_allclose(after - theta, -lr * 0.5 * grad, rtol=1e-6, atol=1e-12)


def test_seen_bitmap_marks_exactly_the_pairs():
    rng = np.random.default_rng(2)
    u = rng.integers(0, 30, 500).astype(np.int32)
    i = rng.integers(0, 130, 500).astype(np.int32)
    bits = _sgd.seen_bitmap(u, i, 30, 130)
    assert bits.shape == (30, 3)
    dense = np.unpackbits(bits.view(np.uint8), axis=1, bitorder="little")[:, :130]
    want = np.zeros((30, 130), np.uint8)
    want[u, i] = 1
    np.testing.assert_array_equal(dense, want)


def test_rank_kernel_releases_the_gil():
    """While one long rank_segments call runs in a thread, this thread keeps running and sees
    the shared parameters change many times (with the GIL held it could see two values)."""
    import threading

    rng = np.random.default_rng(0)
    n, nu, ni, k = 1_000_000, 50, 400, 64
    u = rng.integers(0, nu, n).astype(np.int32)
    i = rng.integers(0, ni, n).astype(np.int32)
    P = rng.normal(0, 0.1, (nu, k))
    Q = rng.normal(0, 0.1, (ni, k))
    bi = np.zeros(ni)
    started = threading.Event()

    def work():
        started.set()
        run_kernel(u, i, None, P, Q, bi, "bpr", 5, 0, ni, hyper=dict(lr=1e-4, reg_f=0.01,
                                                                      reg_b=0.01))

    t = threading.Thread(target=work)
    seen, iterations = set(), 0
    t.start()
    started.wait()
    while t.is_alive():
        seen.add(float(bi[0]))
        iterations += 1
    t.join()
    assert iterations > 100
    assert len(seen) > 10


@pytest.mark.parametrize("loss", ["bpr", "warp", "softmax"])
def test_stop_flag_ends_a_call(loss):
    """``stop``: set before the call, nothing moves; set by another thread during a call
    whose work is unbounded by its rows (WARP at max_sampled=2**31-1 once no negative
    violates the margin: N - 1 draws per positive, 600 x 2**21 here, minutes), the call
    returns within moments; never set, the call is the call without it, bit for bit."""
    rng = np.random.default_rng(0)
    u = rng.integers(0, 30, 600).astype(np.int32)
    i = rng.integers(0, 40, 600).astype(np.int32)
    P0 = rng.normal(0, 0.1, (30, 8)).astype(np.float32)
    Q0 = rng.normal(0, 0.1, (40, 8)).astype(np.float32)
    b0 = np.zeros(40, np.float32)

    def call(stop, max_sampled=10, P=None, Q=None, bi=None, u=u, i=i, hi=40):
        P, Q, bi = (P0.copy() if P is None else P, Q0.copy() if Q is None else Q,
                    b0.copy() if bi is None else bi)
        ptr = np.array([0, len(u)], np.int64)
        _sgd.rank_segments(u, i, np.empty(0, np.float32), ptr, np.array([0], np.int32),
                           np.array([hi], np.int32), np.array([0], np.int64), None,
                           np.array([7], np.uint64), None, None, None, P, Q, bi,
                           _sgd.LOSSES[loss], 0.05, 0.01, 0.01, True, 3, max_sampled, 1.0,
                           False, None, stop=stop)
        return P, Q, bi

    P, Q, bi = call(np.ones(1, np.int32))
    assert np.array_equal(P, P0) and np.array_equal(Q, Q0) and np.array_equal(bi, b0)
    for a, b in zip(call(np.zeros(1, np.int32)), call(None), strict=True):
        assert np.array_equal(a, b)
    if loss != "warp":
        return
    # item 0 scores far above every other item for every user: no negative violates, so
    # each positive draws N - 1 candidates, max_sampled = 2**31 - 1 being more
    n = 2**21
    Q = np.zeros((n, 8), np.float32)
    Q[0] = 10.0
    P = np.ones((30, 8), np.float32)
    stop = np.zeros(1, np.int32)
    worker = threading.Thread(target=call, args=(stop, 2**31 - 1, P, Q, np.zeros(n, np.float32)),
                              kwargs={"u": u, "i": np.zeros(600, np.int32), "hi": n},
                              daemon=True)
    worker.start()
    worker.join(0.3)
    assert worker.is_alive()  # the long call is under way
    stop[0] = 1
    worker.join(30)  # without the polling, 2**21 draws per positive (the rows are polled
    assert not worker.is_alive()  # every 256 positives): minutes
