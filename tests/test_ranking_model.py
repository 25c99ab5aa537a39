"""The ranking losses of the estimator (issue 14): input forms, training through the
one epoch loop, determinism, weights, early stopping on a ranking metric, the
downstream API (predict, recommend, fold_in, save/load) and the errors."""

import copy
import json
import os
import subprocess
import sys
import zipfile
from collections import Counter

import numpy as np
import pytest

from mfsgd import MatrixFactorization, load
from mfsgd.datasets import make_ratings
from mfsgd.metrics import ranking_scorer

try:
    import scipy.sparse as sp
except ImportError:  # scipy is optional
    sp = None

KW = dict(n_factors=16, random_state=0)


@pytest.fixture(scope="module")
def implicit():
    """Synthetic interactions with structure: the liked (rating >= 4) pairs of
    low-rank ratings, and held-out liked pairs of the same users."""
    u, i, r = make_ratings(300, 200, 30000, rank=2, noise=0.1, random_state=1, as_frame=False)
    liked = r >= 4
    u, i = u[liked], i[liked]
    rng = np.random.default_rng(0)
    test = rng.random(u.size) < 0.2
    return (u[~test], i[~test]), (u[test], i[test])


def ndcg(model, train, test, k=10):
    from mfsgd import _recommend as R
    from mfsgd._state import seen_csr

    st = model._state
    tu, ti = st.user_map.lookup("u", train[0]), st.item_map.lookup("i", train[1])
    vu, vi = st.user_map.lookup("u", test[0]), st.item_map.lookup("i", test[1])
    ok = (vu >= 0) & (vi >= 0)
    return R.rank_metric(st, vu[ok], vi[ok], seen_csr(tu, ti, len(st.user_map)), "ndcg", k)


# WARP's defaults are tuned on MovieLens 100K (80k interactions); on these 7k its rate
# is raised so that 30 epochs make enough updates.
@pytest.mark.parametrize("loss,extra", [("warp", {"learning_rate": 0.02, "n_epochs": 30}),
                                        ("bpr", {}), ("softmax", {}),
                                        ("warp", {"adagrad": True}),
                                        ("bpr", {"adagrad": True}),
                                        ("softmax", {"adagrad": True})])
def test_ranking_model_beats_popularity(implicit, loss, extra):
    train, test = implicit
    m = MatrixFactorization(loss=loss, **extra, **KW).fit(train)
    pop = MatrixFactorization(loss=loss, n_epochs=1, learning_rate=1e-9, **KW).fit(train)
    # a model that has not learnt: only its (near-zero) random factors rank; popularity
    # is what recommend serves unknown users: compare against that ranking directly
    counts = np.bincount(pop._state.item_map.lookup("i", train[1]),
                         minlength=len(pop.item_ids_)).astype(float)
    pst = pop._state
    from dataclasses import replace
    flat = replace(pst, user_factors=np.zeros_like(pst.user_factors),
                   item_bias=counts.astype(pst.item_bias.dtype))
    pop._state = flat
    assert ndcg(m, train, test) > 1.3 * ndcg(pop, train, test)
    assert "train_loss" in m.history_[-1] and "train_rmse" not in m.history_[-1]
    assert m.history_[-1]["train_loss"] < m.history_[0]["train_loss"]


def test_input_forms_give_the_same_model(implicit):
    pd = pytest.importorskip("pandas")
    (u, i), _ = implicit
    base = MatrixFactorization(loss="warp", n_epochs=3, **KW).fit((u, i))
    forms = [np.column_stack([u, i]),
             pd.DataFrame({"user": u, "item": i}),
             pd.DataFrame({"user": u, "item": i, "rating": np.full(u.size, 5.0)}),
             (u, i, np.arange(u.size))]  # a rating column is not a target
    for X in forms:
        m = MatrixFactorization(loss="warp", n_epochs=3, **KW).fit(X)
        np.testing.assert_array_equal(m.user_factors_, base.user_factors_)


@pytest.mark.skipif(sp is None, reason="scipy is not installed")
def test_scipy_sparse_input():
    rng = np.random.default_rng(0)
    u, i = rng.integers(0, 50, 800), rng.integers(0, 40, 800)
    key = np.unique(u * 40 + i)
    u, i = key // 40, key % 40
    X = sp.csr_matrix((np.ones(u.size), (u, i)), shape=(50, 40))
    a = MatrixFactorization(loss="bpr", n_epochs=2, **KW).fit(X)
    b = MatrixFactorization(loss="bpr", n_epochs=2, **KW).fit(X.tocoo())
    c = MatrixFactorization(loss="bpr", n_epochs=2, **KW).fit((u, i))
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    np.testing.assert_array_equal(a.user_factors_, c.user_factors_)
    # values are ratings: min_rating selects
    X2 = sp.csr_matrix((np.where(np.arange(u.size) % 2, 5.0, 1.0), (u, i)), shape=(50, 40))
    d = MatrixFactorization(loss="bpr", n_epochs=2, min_rating=4, **KW).fit(X2)
    e = MatrixFactorization(loss="bpr", n_epochs=2, **KW).fit(
        (u[1::2], i[1::2]))
    np.testing.assert_array_equal(d.item_ids_, e.item_ids_)


@pytest.mark.skipif(sp is None, reason="scipy is not installed")
def test_scipy_sparse_input_is_read_as_its_values():
    """Stored entries were read one by one: duplicates of a cell (which scipy sums) were
    filtered by min_rating and trained apart, and explicit zeros were interactions."""
    # cell (0, 1) is stored twice, 2 + 3 = 5; the input is not modified
    X = sp.csr_matrix((np.array([2., 3., 5., 1., 4.]), np.array([1, 1, 2, 0, 2]),
                       np.array([0, 3, 5])), shape=(2, 3))
    m = MatrixFactorization(loss="bpr", n_epochs=1, min_rating=4, **KW).fit(X)
    assert m.item_ids_.tolist() == [1, 2] and m.recommend(0, n=3)[0].tolist() == []
    assert X.nnz == 5 and not X.has_canonical_format
    s = MatrixFactorization(n_epochs=1, **KW).fit(X)
    assert s.global_mean_ == pytest.approx(15 / 4)  # 5, 5, 1, 4: one rating per cell
    # explicit zeros are no interactions
    Y = sp.csr_matrix(np.array([[5., 1., 2.], [1., 4., 5.]]))
    Y.data[Y.data < 4] = 0
    with pytest.warns(UserWarning, match="does not use the values of the sparse matrix"):
        b = MatrixFactorization(loss="bpr", n_epochs=1, **KW).fit(Y)
    assert sorted(b.recommend(0, n=3)[0].tolist()) == [1, 2] and Y.nnz == 6


@pytest.mark.skipif(sp is None, reason="scipy is not installed")
def test_sparse_confidences_are_weights_in_the_order_of_their_data():
    """implicit's input, a matrix of confidences: its values were dropped without a word,
    and sample_weight=X.data followed the rows only for a sorted, duplicate-free CSR (an
    unsorted one weighted other entries). The weights now follow X.data in any order,
    duplicates' weights add up like their values, and ignoring the values warns."""
    import warnings

    rng = np.random.default_rng(0)
    X = sp.random(60, 40, density=0.2, random_state=0, format="csr")
    X.data = np.ceil(X.data * 4)  # confidences 1..4
    kw = dict(loss="bpr", n_epochs=3, **KW)
    with pytest.warns(UserWarning, match=r"loss='bpr' does not use the values of the sparse "
                                         r"matrix X: .* pass sample_weight=X\.data; .* "
                                         r"pass min_rating="):
        plain = MatrixFactorization(**kw).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # weighted, or selecting rows: nothing to say
        want = MatrixFactorization(**kw).fit(X, sample_weight=X.data)
        MatrixFactorization(**kw, min_rating=2).fit(X)
        MatrixFactorization(**kw).fit(X.astype(bool).astype(float))  # all values equal
    assert not np.array_equal(plain.user_factors_, want.user_factors_)
    # each row's entries reversed: the same matrix, stored in another order
    Y = X.copy()
    for r in range(Y.shape[0]):
        s, e = Y.indptr[r], Y.indptr[r + 1]
        Y.indices[s:e], Y.data[s:e] = Y.indices[s:e][::-1].copy(), Y.data[s:e][::-1].copy()
    Y.has_sorted_indices = False
    C = X.tocoo()
    p = rng.permutation(C.nnz)
    shuffled = sp.coo_matrix((C.data[p], (C.row[p], C.col[p])), shape=C.shape)
    # every entry stored as two halves, weights halved too: the same cells and weights
    halves = sp.coo_matrix((np.r_[C.data, C.data] / 2, (np.r_[C.row, C.row],
                                                        np.r_[C.col, C.col])), shape=C.shape)
    for Z in (Y, shuffled, halves, X.tocsc()):
        got = MatrixFactorization(**kw).fit(Z, sample_weight=Z.data)
        np.testing.assert_array_equal(got.user_factors_, want.user_factors_)
    # review 11: a boolean matrix (the usual clicks) crashed the warning's check
    # (np.ptp refuses bool); duplicates of equal values summed are no varied values
    ones = sp.coo_matrix((np.ones(3), ([0, 0, 1], [1, 1, 2])), shape=(2, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MatrixFactorization(**kw).fit(X.astype(bool)).partial_fit(X.astype(bool))
        MatrixFactorization(**kw).fit(ones)
    # a negative weight is refused before duplicates add up (-1 + 2 is no weight of 1)
    with pytest.raises(ValueError, match=r"sample_weight must be >= 0; got -1\.0 \(first at "
                                         r"position 0\)"):
        MatrixFactorization(**kw).fit(ones, sample_weight=[-1.0, 2.0, 1.0])
    with pytest.raises(TypeError, match=r"a dok_matrix has no such order: pass X\.tocsr\(\)"):
        MatrixFactorization(**kw).fit(X.todok(), sample_weight=X.data)
    with pytest.raises(ValueError, match=r"sample_weight has 479 values but X stores 480 "
                                         r"entries; pass one weight per stored entry"):
        MatrixFactorization(**kw).fit(X, sample_weight=X.data[:-1])


@pytest.mark.skipif(sp is None, reason="scipy is not installed")
def test_a_dok_matrix_is_sparse_input_not_a_dict():
    """A DOK matrix is a dict of (row, column) keys: it was taken for a dict of columns
    ("X as a dict needs keys 'user' and 'item'")."""
    from mfsgd.model_selection import train_test_split

    X = sp.random(30, 20, density=0.3, format="csr", random_state=0)
    with pytest.warns(UserWarning, match="does not use the values"):
        a = MatrixFactorization(loss="bpr", n_epochs=2, **KW).fit(X)
    with pytest.warns(UserWarning, match="does not use the values"):
        b = MatrixFactorization(loss="bpr", n_epochs=2, **KW).fit(X.todok())
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    m = MatrixFactorization(n_epochs=2, **KW).fit(X.todok())  # ratings: the values
    assert m.rating_range_ == pytest.approx((X.data.min(), X.data.max()))
    # the splitters take no sparse matrix; a DOK one is refused alike, not read as a dict
    for Y in (X, X.todok()):
        with pytest.raises(TypeError, match=f"got {type(Y).__name__}"):
            train_test_split(Y)


def test_min_rating_keeps_liked_rows():
    u, i, r = make_ratings(100, 80, 3000, random_state=0, as_frame=False)
    a = MatrixFactorization(loss="warp", n_epochs=2, min_rating=4, **KW).fit((u, i, r))
    b = MatrixFactorization(loss="warp", n_epochs=2, **KW).fit((u[r >= 4], i[r >= 4]))
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    with pytest.raises(ValueError, match="min_rating=4.0 needs ratings"):
        MatrixFactorization(loss="warp", min_rating=4).fit((u, i))


def test_min_rating_still_counts_the_dropped_rows_as_seen():
    """The rows below min_rating are not trained on, but they are the user's training
    items: recommend offered them back, and ranking_scorer / score / val_* disagreed with
    ranking_metrics(train=all training rows)."""
    from mfsgd.metrics import ranking_metrics

    u, i, r = make_ratings(60, 50, 3000, random_state=0, as_frame=False)
    tr = np.arange(u.size) < 2400
    train, test = (u[tr], i[tr], r[tr]), (u[~tr], i[~tr], r[~tr])
    m = MatrixFactorization(loss="bpr", n_epochs=3, min_rating=4, dtype=np.float64, **KW)
    m.fit(train)
    for user in np.unique(u[tr]):
        rated = set(i[tr][u[tr] == user].tolist())
        assert not rated & set(m.recommend(user, n=50)[0].tolist())
    want = ranking_metrics(m, test, k=10, threshold=4, train=train[:2])["ndcg"]
    assert ranking_scorer("ndcg@10", threshold=4)(m, test) == pytest.approx(want, abs=1e-12)
    # partial_fit records its own dropped rows as seen too
    extra = (np.array([u[0], u[0], u[1]]), np.array([i[0], i[1], i[2]]),
             np.array([1.0, 2.0, 5.0]))
    m.partial_fit(extra, n_epochs=1)
    assert not {int(i[0]), int(i[1])} & set(m.recommend(u[0], n=50)[0].tolist())
    # the per-epoch metric on an eval_set excludes them as ranking_metrics does
    es = MatrixFactorization(loss="bpr", n_epochs=2, min_rating=4, dtype=np.float64,
                             **KW).fit(train, eval_set=test)
    val = ranking_metrics(es, test, k=10, threshold=4, train=train[:2])["ndcg"]
    assert es.history_[-1]["val_ndcg@10"] == pytest.approx(val, abs=1e-12)
    # a dropped row without an id is still ignored, as before, not refused
    ids = np.array(["a", "a", None], dtype=object)
    m = MatrixFactorization(loss="bpr", n_epochs=1, min_rating=4, **KW).fit(
        (ids, np.array(["x", "y", "y"], dtype=object), np.array([5.0, 1.0, 1.0])))
    assert m.recommend("a", n=5)[0].tolist() == []


@pytest.mark.parametrize("n_blocks", [1, 2])
def test_min_rating_users_of_only_low_rows_join_user_ids_in_sorted_order(n_blocks):
    """user_ids_ is sorted after fit (the guide's np.searchsorted recipe) also when users
    known only from rows below min_rating join: they were appended (audit 17). Renumbering
    the rows changes no trained user's parameters: the same data with that user's id
    sorting last (where the rows were appended) gives the same model, id by id."""
    u, i, r = make_ratings(60, 50, 3000, random_state=0, as_frame=False)
    kw = dict(loss="warp", n_epochs=3, min_rating=4, n_blocks=n_blocks, random_state=0)
    first = MatrixFactorization(**kw).fit((np.append(u, [-5, -5]), np.append(i, [0, 1]),
                                           np.append(r, [1.0, 2.0])))
    last = MatrixFactorization(**kw).fit((np.append(u, [999, 999]), np.append(i, [0, 1]),
                                          np.append(r, [1.0, 2.0])))
    ids = first.user_ids_
    assert ids[0] == -5 and (np.diff(ids) > 0).all() and last.user_ids_[-1] == 999
    rows = np.searchsorted(ids, [-5, int(u[0])])
    assert first.user_counts_[rows[0]] == 0 and not first.user_factors_[rows[0]].any()
    assert first.user_counts_[rows[1]] == np.count_nonzero((u == u[0]) & (r >= 4))
    np.testing.assert_array_equal(first.user_factors_[1:], last.user_factors_[:-1])
    np.testing.assert_array_equal(first.user_bias_[1:], last.user_bias_[:-1])
    np.testing.assert_array_equal(first.item_factors_, last.item_factors_)
    assert first.recommend(-5, n=10)[0].tolist() == last.recommend(999, n=10)[0].tolist()
    assert 0 not in first.recommend(-5, n=50)[0].tolist()
    np.testing.assert_array_equal(first.recommend_all(n=5, users=ids[1:])[0],
                                  last.recommend_all(n=5, users=ids[1:])[0])


def _popular_order(model, exclude=()):
    """The items by ``item_counts_`` (most first, ties in item order), less ``exclude``."""
    order = model.item_ids_[np.argsort(-model.item_counts_, kind="stable")]
    return [x for x in order.tolist() if x not in set(exclude)]


def test_min_rating_counts_interactions_and_keeps_users_of_low_rows():
    """With min_rating the interactions are the rows kept: item_counts_ and
    user_counts_ count those (as Popularity(min_rating) does), a user whose rows are all
    low is known with no interaction (zero factors) and is served the popularity list
    without the items they rated, by recommend and by the metrics alike; a partial_fit
    batch of only low rows records them and runs no epoch."""
    from mfsgd import Popularity
    from mfsgd.metrics import ranking_metrics

    u, i, r = make_ratings(60, 50, 3000, random_state=0, as_frame=False)
    low_items = [int(x) for x in np.unique(i)[:3]]
    u = np.concatenate([u, [1000] * 3])
    i = np.concatenate([i, low_items])
    r = np.concatenate([r, [1.0, 2.0, 1.0]])
    m = MatrixFactorization(loss="warp", n_epochs=3, min_rating=4, adagrad=True, **KW)
    m.fit((u, i, r))
    keep = r >= 4
    pop = Popularity(min_rating=4).fit((u, i, r))
    at = {x: k for k, x in enumerate(pop.item_ids_.tolist())}
    np.testing.assert_array_equal(m.item_counts_,
                                  pop.item_counts_[[at[x] for x in m.item_ids_.tolist()]])
    row = m.user_ids_.tolist().index(1000)
    assert m.user_counts_[row] == 0 and m.user_counts_.sum() == keep.sum()
    assert not m.user_factors_[row].any() and m.user_bias_[row] == 0
    want = _popular_order(m, low_items)[:10]
    assert m.recommend(1000, n=10)[0].tolist() == want
    assert m.recommend_all(n=10, users=[1000])[0][0].tolist() == want
    assert m.recommend(10**6, n=10)[0].tolist() == _popular_order(m)[:10]  # unknown
    with pytest.raises(ValueError, match="1000 has no training interaction"):
        m.similar_users(1000)
    assert 1000 not in m.similar_users(int(u[0]), n=100, min_support=0)[0].tolist()
    # the metrics read the counts too: user 1000's liked test item is scored on that list
    test = (np.array([1000]), np.array([want[0]]), np.array([5.0]))
    assert ranking_metrics(m, test, k=10, threshold=4, train=(u, i))["ndcg"] == 1.0
    # a batch of only low rows: recorded, no epoch; a new user of it joins with count 0
    before = (len(m.history_), m.item_factors_.copy())
    m.partial_fit((np.array([2000, 2000, int(u[0])]), np.array(low_items[1:] + [0]),
                   np.array([1.0, 2.0, 3.0])))
    assert len(m.history_) == before[0]
    np.testing.assert_array_equal(m.item_factors_, before[1])
    assert m.user_counts_[-1] == 0 and m.user_ids_[-1] == 2000
    assert m.recommend(2000, n=10)[0].tolist() == _popular_order(m, low_items[1:])[:10]
    assert 0 not in m.recommend(int(u[0]), n=50)[0].tolist()
    # a liked row later makes user 1000 an ordinary, trained one
    counts = m.item_counts_.copy()
    m.partial_fit((np.array([1000]), np.array([low_items[0] + 10]), np.array([5.0])))
    assert m.user_counts_[row] == 1 and m.user_factors_[row].any()
    assert m.item_counts_.sum() == counts.sum() + 1
    assert not set(low_items) & set(m.recommend(1000, n=50)[0].tolist())
    # fold_in counts what it solves on
    m.fold_in((np.array([3000, 3000, 3000]), np.array(low_items), np.array([5.0, 4.0, 1.0])))
    assert m.user_counts_[-1] == 2 and m.item_counts_.sum() == counts.sum() + 3
    # a model with no min_rating keeps no counts of its own: its seen record's
    plain = MatrixFactorization(loss="warp", n_epochs=1, **KW).fit((u[keep], i[keep]))
    assert plain._state.user_counts is None
    np.testing.assert_array_equal(plain.user_counts_, np.diff(plain._state.seen_indptr))


@pytest.mark.parametrize("adagrad", [False, True])
@pytest.mark.parametrize("loss", ["warp", "bpr", "softmax"])
def test_same_model_for_any_thread_count(implicit, loss, adagrad):
    train, _ = implicit
    kw = dict(loss=loss, n_epochs=3, n_blocks=4, adagrad=adagrad, **KW)
    a = MatrixFactorization(n_threads=1, **kw).fit(train)
    # several fits: a difference in the last bits can hide in one comparison (the
    # kernel's items were once in a copy that was not cache-line aligned, and its
    # unaligned variant differed from run to run in about one fit of three)
    for n_threads in (1, 2, 2, 2):
        b = MatrixFactorization(n_threads=n_threads, **kw).fit(train)
        np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
        np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
        np.testing.assert_array_equal(a.item_bias_, b.item_bias_)
        assert a.history_[-1]["train_loss"] == b.history_[-1]["train_loss"]


@pytest.mark.parametrize("loss", ["warp", "bpr", "softmax"])
def test_adagrad_has_its_own_defaults_and_changes_the_model(implicit, loss):
    """adagrad=True with a ranking loss takes ADAGRAD_DEFAULTS where a parameter is None
    (no decay, its own rate, L2 and epochs), an explicit value still wins, the squared
    loss keeps its defaults, and the fit differs from the constant-rate one."""
    from mfsgd._config import ADAGRAD_DEFAULTS, LOSS_DEFAULTS, make_config

    cfg = make_config(MatrixFactorization(loss=loss, adagrad=True).get_params())
    for name, value in ADAGRAD_DEFAULTS[loss].items():
        assert getattr(cfg, name) == value
    assert cfg.lr_decay == 0.0 and cfg.adagrad
    assert make_config(MatrixFactorization(loss=loss, adagrad=True, learning_rate=0.3,
                                           n_epochs=2).get_params()).learning_rate == 0.3
    sq = make_config(MatrixFactorization(adagrad=True).get_params())
    assert sq.learning_rate == LOSS_DEFAULTS["squared"]["learning_rate"]
    train, _ = implicit
    kw = dict(loss=loss, n_epochs=2, learning_rate=0.05, lr_decay=0.0, **KW)
    a = MatrixFactorization(adagrad=True, **kw).fit(train)
    b = MatrixFactorization(adagrad=False, **kw).fit(train)
    assert not np.allclose(a.item_factors_, b.item_factors_)
    # the accumulators start at 1: the first steps are the constant rate's, later smaller
    assert np.abs(a.item_factors_).mean() < np.abs(b.item_factors_).mean()


def _by_popularity(pairs):
    """The same interactions with item ids renumbered from the most interacted item down
    (as MovieLens numbers its films), so that contiguous id ranges differ in popularity."""
    u, i = pairs
    items, counts = np.unique(i, return_counts=True)
    rank = np.empty(items.size, np.int64)
    rank[np.argsort(-counts, kind="stable")] = np.arange(items.size)
    return u, rank[np.searchsorted(items, i)]


@pytest.mark.parametrize("loss", ["bpr", "softmax"])
def test_blocks_keep_quality_when_ids_follow_popularity(implicit, loss):
    """Negatives come from the positive's block column; were the columns contiguous id
    ranges, a popular item would only meet popular negatives (NDCG@10 on MovieLens 100K
    fell from 0.35 to 0.17 with 4 blocks). The kernel sees the items in a random order."""
    train, test = (_by_popularity(p) for p in _joint(implicit))
    one = MatrixFactorization(loss=loss, n_blocks=1, **KW).fit(train)
    four = MatrixFactorization(loss=loss, n_blocks=4, **KW).fit(train)
    assert ndcg(four, train, test) > 0.9 * ndcg(one, train, test)
    # the natural order comes back: every row belongs to its id
    st = four._state
    np.testing.assert_array_equal(four.item_ids_, np.unique(train[1]))
    ids, _ = four.recommend(train[0][0], n=len(four.item_ids_))
    assert not set(ids) & set(train[1][train[0] == train[0][0]])
    assert st.item_factors.shape[0] == len(four.item_ids_)


def _joint(implicit):
    """Train and test relabelled together (one popularity order for both)."""
    (u, i), (tu, ti) = implicit
    uu, ii = _by_popularity((np.concatenate([u, tu]), np.concatenate([i, ti])))
    return (uu[:u.size], ii[:u.size]), (uu[u.size:], ii[u.size:])


def test_blocks_early_stopping_and_partial_fit_in_the_natural_item_order(implicit):
    train, test = implicit
    m = MatrixFactorization(loss="bpr", n_epochs=6, n_blocks=3, early_stopping=True,
                            n_iter_no_change=2, **KW).fit(train, eval_set=test)
    vals = [h["val_ndcg@10"] for h in m.history_]
    assert ndcg(m, train, test) == pytest.approx(vals[m.best_epoch_ - 1], rel=1e-9)
    seen = set(train[1][train[0] == train[0][0]])
    m.partial_fit((test[0][:50], test[1][:50]), n_epochs=1)
    ids, _ = m.recommend(train[0][0], n=len(m.item_ids_))
    assert not set(ids) & seen  # the first fit's interactions are still excluded


@pytest.mark.parametrize("n_blocks", [1, 4])
def test_adagrad_accumulators_are_kept_in_the_natural_item_order(implicit, n_blocks):
    """With blocks the kernel sees the items in a shuffled order; the accumulators it
    leaves are stored in the model's own item order (each positive updates its item, so
    an item's accumulator grows with its interactions), and partial_fit continues them:
    none falls back to 1."""
    train, _ = implicit
    m = MatrixFactorization(loss="bpr", adagrad=True, n_epochs=3, n_blocks=n_blocks, **KW)
    m.fit(train)
    gu, gi = m._state.accumulators()
    counts = np.bincount(m._state.item_map.lookup("i", train[1]), minlength=gi.size)
    ranks = [np.argsort(np.argsort(x)) for x in (gi, counts)]
    assert np.corrcoef(*ranks)[0, 1] > 0.9
    m.partial_fit(train, n_epochs=1)
    hu, hi = m._state.accumulators()
    assert np.all(hu > gu) and np.all(hi > gi)


@pytest.mark.parametrize("loss", ["bpr", "warp"])
def test_the_sorted_seen_record_gives_the_bitmap_model(implicit, loss, monkeypatch):
    """Past SEEN_BITMAP_BYTES the sampler keeps the seen pairs as a sorted CSR (built by
    make_sampler from every training pair, duplicates and the earlier fit's pairs
    included) instead of a bitmap: the same set, so the same model, for fit and for
    partial_fit."""
    from mfsgd import _training as T

    train, _ = implicit
    u, i = np.concatenate([train[0], train[0][:50]]), np.concatenate([train[1], train[1][:50]])
    kw = dict(loss=loss, n_epochs=3, n_blocks=2, **KW)
    models = []
    for limit in (T.SEEN_BITMAP_BYTES, 0):
        monkeypatch.setattr(T, "SEEN_BITMAP_BYTES", limit)
        m = MatrixFactorization(**kw).fit((u[:-500], i[:-500]))
        models.append(m.partial_fit((u[-500:], i[-500:])))
    for a in ("user_factors_", "item_factors_", "item_bias_"):
        np.testing.assert_array_equal(getattr(models[0], a), getattr(models[1], a))


def test_sample_weight(implicit):
    (u, i), _ = implicit
    kw = dict(loss="bpr", n_epochs=2, **KW)
    a = MatrixFactorization(**kw).fit((u, i))
    b = MatrixFactorization(**kw).fit((u, i), sample_weight=np.ones(u.size))
    np.testing.assert_allclose(a.user_factors_, b.user_factors_, rtol=1e-5, atol=1e-7)
    w = np.where(np.arange(u.size) % 3 == 0, 5.0, 0.5)
    c = MatrixFactorization(**kw).fit((u, i), sample_weight=w)
    assert not np.allclose(a.user_factors_, c.user_factors_)


def test_sample_weight_squared():
    u, i, r = make_ratings(200, 100, 5000, random_state=0, as_frame=False)
    a = MatrixFactorization(n_epochs=3, **KW).fit((u, i, r))
    b = MatrixFactorization(n_epochs=3, **KW).fit((u, i, r), sample_weight=np.ones(u.size))
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    c = MatrixFactorization(n_epochs=3, **KW).fit((u, i, r),
                                                 sample_weight=np.linspace(0.1, 2, u.size))
    assert not np.allclose(a.user_factors_, c.user_factors_)
    m = MatrixFactorization(n_epochs=1, **KW).fit((u, i, r))
    m.partial_fit((u, i, r), sample_weight=np.ones(u.size))
    # mu is the weighted mean (the documented rule), as a weight of 2 counts a row twice
    w = np.linspace(0.1, 2, u.size)
    assert c.global_mean_ == pytest.approx(float(np.sum(w * r) / np.sum(w)), rel=1e-9)


def test_hold_out_rows_count_as_the_rows_they_are():
    """The early-stopping hold-out of a ranking fit draws whole pairs; each held-out row
    still counts, so a pair of three plays counts three (review 23: the record kept
    each held-out pair once, so item_counts_ undercounted repeated plays, unlike the
    same data with min_rating=0)."""
    rng = np.random.default_rng(2)
    u, i = rng.integers(0, 80, 3000), rng.integers(0, 60, 3000)
    u, i = np.r_[u, u[:1500]], np.r_[i, i[:1500]]  # 1,500 repeated plays
    kw = dict(loss="bpr", n_factors=4, n_epochs=2, early_stopping=True, random_state=0)
    a = MatrixFactorization(**kw).fit((u, i))
    b = MatrixFactorization(min_rating=0.0, **kw).fit((u, i, np.ones(u.size)))
    want = np.bincount(np.searchsorted(a.item_ids_, i), minlength=len(a.item_ids_))
    np.testing.assert_array_equal(a.item_counts_, want)
    np.testing.assert_array_equal(b.item_counts_, want)


def test_early_stopping_maximises_the_metric_and_restores_the_best_epoch(implicit):
    train, test = implicit
    m = MatrixFactorization(loss="warp", n_epochs=12, learning_rate=0.05, lr_decay=0.0,
                            early_stopping=True, n_iter_no_change=2, **KW)
    m.fit(train, eval_set=test)
    vals = [h["val_ndcg@10"] for h in m.history_]
    best = int(np.argmax(vals)) + 1
    assert m.best_epoch_ == best
    assert ndcg(m, train, test) == pytest.approx(vals[best - 1], rel=1e-9)
    r = MatrixFactorization(loss="warp", n_epochs=2, eval_metric="recall@5", **KW)
    assert "val_recall@5" in r.fit(train, eval_set=test).history_[-1]


def test_early_stopping_holds_out_whole_pairs(implicit):
    """Repeated rows (plays, clicks): the hold-out drew rows, so most held-out rows kept a
    copy in training, were left out of their user's ranking, and val_ndcg was 0 in
    every epoch (the model kept epoch 1). It draws distinct pairs, all copies together."""
    train, _ = implicit
    rep = (np.tile(train[0], 4), np.tile(train[1], 4))
    m = MatrixFactorization(loss="bpr", n_epochs=5, early_stopping=True, **KW).fit(rep)
    assert max(h["val_ndcg@10"] for h in m.history_) > 0.1


def test_hit_rate_has_one_name_everywhere_and_hr_is_its_alias(implicit):
    """eval_metric, ranking_scorer and cross_validate's names are mfsgd.metrics' names;
    "hr@K" means "hit_rate@K" in each of them."""
    train, test = implicit
    X = np.column_stack(test)
    vals, scored = {}, {}
    for name in ("hit_rate@10", "hr@10"):
        m = MatrixFactorization(loss="warp", n_epochs=2, eval_metric=name, **KW)
        h = m.fit(train, eval_set=test).history_[-1]
        assert "val_hr@10" not in h
        vals[name] = h["val_hit_rate@10"]
        scored[name] = ranking_scorer(name)(m, X)
    assert vals["hr@10"] == vals["hit_rate@10"]
    assert 0.0 < vals["hr@10"] <= 1.0
    assert scored["hr@10"] == scored["hit_rate@10"]
    assert scored["hr@10"] != ranking_scorer("ndcg@10")(m, X)


def test_predict_recommend_similar_partial_fit(implicit):
    (u, i), _ = implicit
    m = MatrixFactorization(loss="warp", **KW).fit((u, i))
    s = m.predict((u[:5], i[:5]))
    st = m._state
    ur, ir = st.user_map.lookup("u", u[:5]), st.item_map.lookup("i", i[:5])
    want = (m.user_factors_[ur].astype(float) * m.item_factors_[ir]).sum(1) + m.item_bias_[ir]
    np.testing.assert_allclose(s, want, rtol=1e-5)  # scores: no mu, no clipping
    assert m.global_mean_ == 0 and not m.user_bias_.any()
    ids, scores = m.recommend(u[0], n=10)
    assert not set(ids) & set(i[u == u[0]]) and np.all(np.diff(scores) <= 0)
    assert m.recommend_all(n=3)[0].shape == (len(m.user_ids_), 3)
    assert len(m.similar_items(i[0], n=3)[0]) == 3
    before = m.n_epochs_
    m.partial_fit((np.array([10_000, 10_000]), i[:2]), n_epochs=2)
    assert m.n_epochs_ == before + 2 and 10_000 in m.user_ids_


def test_unknown_user_gets_the_most_popular_items(implicit):
    (u, i), _ = implicit
    for loss in ("warp", "squared"):
        r = np.arange(u.size) % 5 + 1.0
        m = MatrixFactorization(loss=loss, n_epochs=2, **KW).fit((u, i, r))
        ids, scores = m.recommend(-12345, n=5)
        counts = np.bincount(m._state.item_map.lookup("i", i), minlength=len(m.item_ids_))
        order = np.argsort(-counts, kind="stable")[:5]
        np.testing.assert_array_equal(ids, m.item_ids_[order])
        np.testing.assert_array_equal(scores, counts[order])


def test_fold_in_clone_ranks_alike(implicit):
    (u, i), _ = implicit
    m = MatrixFactorization(loss="warp", **KW).fit((u, i))
    overlaps = []
    for user in np.unique(u)[:20]:
        mine = i[u == user]
        m.fold_in((np.full(mine.size, -1 - user), mine))
        a, _ = m.recommend(user, n=20)
        b, _ = m.recommend(-1 - user, n=20)
        overlaps.append(len(set(a) & set(b)) / 20)
    assert np.mean(overlaps) >= 0.5, overlaps


@pytest.mark.parametrize("loss,extra", [("warp", {"learning_rate": 0.02, "n_epochs": 30}),
                                        ("bpr", {}), ("softmax", {})])
def test_fold_in_rows_rank_as_well_as_fitted_ones(implicit, loss, extra):
    """Every user (then every item) refolded from their own training interactions ranks
    the held-out items about as well as the fitted rows. The implicit-ALS solve used
    before pulled every score toward 0, against the item biases: refolded users scored
    0.56-0.63 of the fitted rows' NDCG@10 here (and below the most popular items on
    MovieLens 100K), refolded items 0.82-0.90."""
    train, test = implicit
    fitted = ndcg(MatrixFactorization(loss=loss, **extra, **KW).fit(train), train, test)
    for side in ("user", "item"):
        m = MatrixFactorization(loss=loss, **extra, **KW).fit(train).fold_in(train, side=side)
        assert ndcg(m, train, test) >= 0.92 * fitted, side


def test_fold_in_reg_and_empty_ids(implicit):
    """reg= sets a ranking model's fold-in penalty (larger: shorter vectors), and a
    squared model's factor penalty per rating in place of reg_factors; an empty id is
    refused at its row of X before any solve (it was reported at position 0, after
    solving every row)."""
    train, _ = implicit
    m = MatrixFactorization(loss="bpr", **KW).fit(train)
    items = train[1][train[0] == train[0][0]]
    norms = []
    for reg in (0.01, 0.3):
        m.fold_in((np.full(items.size, -7), items), reg=reg)
        norms.append(np.linalg.norm(m.user_factors_[-1]))
    assert norms[1] < 0.5 * norms[0]
    for bad, exc in ((-1.0, ValueError), (float("nan"), TypeError), ("0.1", TypeError)):
        with pytest.raises(exc, match="reg must be a finite number >= 0 or None"):
            m.fold_in((np.full(items.size, -7), items), reg=bad)
    sq = MatrixFactorization(**KW).fit((train[0], train[1], np.ones(train[0].size) * 3 +
                                        (train[1] % 3)))
    one = ([-7, -7, -7], items[:3], [4.0, 2.0, 5.0])
    want = copy.deepcopy(sq).set_params(reg_factors=0.7).fold_in(one)
    got = copy.deepcopy(sq).fold_in(one, reg=0.7)
    np.testing.assert_array_equal(got.user_factors_, want.user_factors_)
    np.testing.assert_array_equal(got.user_bias_, want.user_bias_)
    base = copy.deepcopy(sq).fold_in(one)
    assert np.linalg.norm(got.user_factors_[-1]) < np.linalg.norm(base.user_factors_[-1])
    s = MatrixFactorization(loss="bpr", **KW).fit(([f"u{x}" for x in train[0]], train[1]))
    with pytest.raises(ValueError, match=r"users has an empty id '' \(first at position 2\)"):
        s.fold_in((["new", "new", ""], items[:3]))
    with pytest.raises(ValueError, match=r"users has a blank id ' ' \(first at position 1\)"):
        s.fold_in((["new", " ", "new"], items[:3]))


def test_fold_in_applies_min_rating():
    """With min_rating, fold_in solves only on the rows rated at or above it, as fit and
    partial_fit train (the 1-star rows were folded in as positives), and records the
    others as seen, as fit and partial_fit do (they were recommended back)."""
    u, i, r = make_ratings(100, 80, 3000, random_state=0, as_frame=False)
    m = MatrixFactorization(loss="warp", n_epochs=2, min_rating=4, **KW).fit((u, i, r))
    a = m.fold_in(([9000] * 4, [5, 7, 19, 10], [5.0, 1.0, 1.0, 1.0]))
    row_a = a.user_factors_[-1].copy()
    b = m.fold_in(([9001], [5], [5.0]))
    np.testing.assert_array_equal(row_a, b.user_factors_[-1])
    assert m.user_counts_[-2:].tolist() == [1, 1]
    ids, _ = m.recommend(9000, n=80)
    assert not {5, 7, 19, 10} & set(ids.tolist())
    with pytest.raises(ValueError, match="min_rating=4.0 needs ratings, but X has none"):
        m.fold_in(([9002], [5]))
    # only low rows: a new user joins without interactions, served popularity less them
    counts = m.item_counts_.copy()
    m.fold_in(([9002, 9002], [5, 7], [1.0, 3.0]))
    assert m.user_ids_[-1] == 9002 and m.user_counts_[-1] == 0
    assert not m.user_factors_[-1].any()
    np.testing.assert_array_equal(m.item_counts_, counts)
    assert m.recommend(9002, n=10)[0].tolist() == _popular_order(m, [5, 7])[:10]
    with pytest.raises(ValueError, match="fold_in needs at least one interaction; got none "
                                         "at or above min_rating"):
        m.fold_in(([9003, 9003], [10**6, 10**6 + 1], [1.0, 3.0]))  # unknown items
    assert 9003 not in m.user_ids_
    # an item folded in from a user without interactions leaves that user without any:
    # nothing solved their zero row, so they keep the popularity list, and their row is
    # no interaction of the item either (every interaction counts on both sides)
    m.fold_in(([9002, int(u[0])], [777, 777], [5.0, 5.0]), side="item")
    assert m.user_counts_[-1] == 0 and m.item_counts_[-1] == 1
    assert m.item_counts_.sum() == m.user_counts_.sum()
    assert m.recommend(9002, n=10)[0].tolist() == _popular_order(m, [5, 7, 777])[:10]
    with pytest.raises(ValueError, match="9002 has no training interaction"):
        m.similar_users(9002)
    # refolding the user from that row counts it, on both sides, once
    for _ in range(2):
        m.fold_in(([9002], [777], [5.0]))
        assert m.user_counts_[-1] == 1 and m.item_counts_[-1] == 2
        assert m.item_counts_.sum() == m.user_counts_.sum()


def test_fold_in_ignores_a_low_row_without_an_id_as_fit_does():
    """A row below min_rating whose id is missing is ignored by fit; fold_in refused it
    when the ids were a pandas Categorical (they were decoded, and the missing id
    checked, before the low rows were split off). A kept row without an id is still
    refused, by both."""
    pd = pytest.importorskip("pandas")
    u, i, r = make_ratings(100, 80, 3000, random_state=0, as_frame=False)
    m = MatrixFactorization(loss="warp", n_epochs=2, min_rating=4, **KW).fit((u, i, r))
    items = pd.Categorical([5, 7, None, 19], categories=[5, 7, 19])
    low = pd.DataFrame({"user": pd.Categorical([9000] * 4), "item": items,
                        "rating": [5.0, 4.0, 1.0, 2.0]})
    m.fold_in(low)
    assert m.user_ids_[-1] == 9000 and m.user_counts_[-1] == 2
    assert 19 not in m.recommend(9000, n=80)[0].tolist()  # the low row is seen
    kept = low.assign(user=pd.Categorical([9001] * 4), rating=[5.0, 4.0, 5.0, 2.0])
    for call in (m.fold_in, MatrixFactorization(loss="warp", min_rating=4, **KW).fit):
        with pytest.raises(ValueError, match="items has 1 missing ids"):
            call(kept)
    fitted = MatrixFactorization(loss="warp", n_epochs=1, min_rating=4, **KW).fit(low)
    assert fitted.user_counts_.tolist() == [2]


@pytest.mark.parametrize("null", ["index", "dictionary value"])
def test_a_low_row_with_a_null_arrow_id_is_ignored(null):
    """A low row whose Arrow dictionary id is null is ignored by fit, partial_fit and
    fold_in alike, whether the null is its index or the value it points at (the latter
    was refused: "items has 1 missing ids")."""
    pa = pytest.importorskip("pyarrow")
    codes = [0, 1, None] if null == "index" else [0, 1, 2]
    values = [5, 7] if null == "index" else [5, 7, None]
    items = pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()),
                                           pa.array(values, pa.int64()))
    table = pa.table({"user": pa.array([9000] * 3), "item": items,
                      "rating": pa.array([5.0, 4.0, 1.0])})
    u, i, r = make_ratings(100, 80, 3000, random_state=0, as_frame=False)
    kw = dict(loss="warp", min_rating=4, **KW)
    fitted = MatrixFactorization(n_epochs=1, **kw).fit(table)
    assert fitted.user_counts_.tolist() == [2] and fitted.item_ids_.tolist() == [5, 7]
    base = MatrixFactorization(n_epochs=2, **kw).fit((u, i, r))
    for m in (MatrixFactorization(n_epochs=2, **kw).fit((u, i, r)).partial_fit(table),
              base.fold_in(table)):
        assert m.user_ids_[-1] == 9000 and m.user_counts_[-1] == 2


def test_save_load_round_trip(tmp_path, implicit):
    (u, i), _ = implicit
    m = MatrixFactorization(loss="softmax", n_epochs=2, n_negatives=5, **KW).fit((u, i))
    m.save(tmp_path / "m.mfsgd")
    b = load(tmp_path / "m.mfsgd")
    assert b.loss == "softmax" and b.n_negatives == 5 and b._state.loss == "softmax"
    np.testing.assert_array_equal(b.user_factors_, m.user_factors_)
    np.testing.assert_array_equal(b.predict((u[:9], i[:9])), m.predict((u[:9], i[:9])))
    np.testing.assert_array_equal(b.recommend(u[0])[0], m.recommend(u[0])[0])
    b.partial_fit((u[:50], i[:50]))


def test_previous_format_still_loads(tmp_path):
    """A file of format 1 (before the ranking losses: no loss in its header or params)
    loads as a squared model."""
    u, i, r = make_ratings(60, 40, 900, random_state=0, as_frame=False)
    m = MatrixFactorization(n_epochs=2, **KW).fit((u, i, r))
    m.save(tmp_path / "new.mfsgd")
    with zipfile.ZipFile(tmp_path / "new.mfsgd") as zf, \
            zipfile.ZipFile(tmp_path / "old.mfsgd", "w") as out:
        for name in zf.namelist():
            data = zf.read(name)
            if name == "header.json":
                h = json.loads(data)
                assert h["format_version"] == 2  # no AdaGrad accumulators: format 2
                h["format_version"] = 1
                h.pop("loss")
                for p in ("loss", "n_negatives", "max_sampled", "margin", "negative_exponent",
                          "eval_metric", "min_rating"):
                    h["params"].pop(p)
                h["params"].update(learning_rate=0.005, n_epochs=20, reg_factors=0.02,
                                   reg_bias=0.02, init_std=0.1, lr_decay=0.0)
                data = json.dumps(h).encode()
            out.writestr(name, data)
    old = load(tmp_path / "old.mfsgd")
    assert old.loss == "squared" and old._state.loss == "squared"
    np.testing.assert_array_equal(old.predict((u[:9], i[:9])), m.predict((u[:9], i[:9])))


def test_dask_rejects_ranking_losses():
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    df = dd.from_pandas(pd.DataFrame({"user": [1, 2], "item": [1, 2], "rating": [1.0, 1.0]}),
                        npartitions=1)
    with pytest.raises(ValueError, match="loss='warp' is not supported with a Dask"):
        MatrixFactorization(loss="warp").fit(df, client=object())


def test_constant_ratings_with_squared_point_to_the_ranking_losses():
    with pytest.raises(ValueError, match=r"every rating is 1\.0.*loss='warp'"):
        MatrixFactorization().fit((np.arange(20), np.arange(20), np.ones(20)))
    # a few equal ratings (a toy sample) still fit
    MatrixFactorization(n_epochs=1).fit((np.arange(19), np.arange(19), np.ones(19)))


@pytest.mark.parametrize("params,fit_kw,exc,match", [
    ({"loss": "hinge"}, {}, ValueError, r"loss must be one of 'squared', 'bpr', 'warp', "
                                        r"'softmax'; got 'hinge'"),
    ({"loss": "bpr", "n_negatives": 0}, {}, ValueError, r"n_negatives must be an int >= 1"),
    ({"loss": "softmax", "n_negatives": 1000}, {}, ValueError,
     r"n_negatives must be an int from 1 to 256; got 1000"),
    ({"loss": "warp", "max_sampled": 0}, {}, ValueError, r"max_sampled must be an int from 1 to"),
    ({"loss": "warp", "margin": -1.0}, {}, ValueError, r"margin must be a float >= 0"),
    ({"loss": "warp", "negative_exponent": "x"}, {}, TypeError, r"negative_exponent must be"),
    ({"loss": "warp", "eval_metric": "rmse"}, {}, ValueError,
     r"eval_metric must be one of ndcg@K, recall@K, hit_rate@K \(hr@K for hit_rate@K"),
    ({"eval_metric": "ndcg@10"}, {}, ValueError, r"eval_metric must be 'rmse' with "
                                                r"loss='squared'"),
    ({"loss": "bpr", "nonnegative": True}, {}, ValueError, r"nonnegative=True is only"),
    ({"min_rating": 4}, {}, ValueError, r"min_rating is only used with a ranking loss"),
    ({"loss": "warp", "min_rating": "4"}, {}, TypeError, r"min_rating must be None or"),
    ({"loss": "warp"}, {"sample_weight": [1.0, 2.0]}, ValueError,
     r"sample_weight has 2 values but X has 3 rows"),
    ({"loss": "warp"}, {"sample_weight": [1.0, -2.0, 1.0]}, ValueError,
     r"sample_weight must be >= 0; got -2.0"),
    ({}, {"sample_weight": [1.0, np.nan, 1.0]}, ValueError, r"sample_weight has 1 non-finite"),
    ({"loss": "bpr"}, {"sample_weight": [0.0, 0.0, 0.0]}, ValueError,
     r"sample_weight is 0 for all 3 rows"),
    ({}, {"sample_weight": np.zeros(3, np.float32)}, ValueError,
     r"sample_weight is 0 for all 3 rows"),
    # a positive weight that float32 rounds to 0 would drop its row silently
    ({"loss": "warp"}, {"sample_weight": [1.0, 1e-300, 1.0]}, ValueError,
     r"sample_weight has 1 non-zero value too small for float32, which would become 0 "
     r"\(first at position 1: 1e-300\); rescale them or use dtype='float64'"),
    ({}, {"sample_weight": [1e-46, 1.0, 1e-300]}, ValueError,
     r"sample_weight has 2 non-zero values too small for float32"),
    ({"loss": "bpr", "max_sampled": 2**31}, {}, ValueError,
     r"max_sampled must be an int from 1 to 2147483647; got 2147483648"),
    ({"loss": "bpr", "negative_exponent": 11.0}, {}, ValueError,
     r"negative_exponent must be a float >= 0.0 and <= 10.0; got 11.0"),
    ({"loss": "bpr", "eval_metric": "ndcg@\u00b2"}, {}, ValueError, r"eval_metric must be one of"),
])
def test_bad_parameters(params, fit_kw, exc, match):
    X = ([1, 2, 3], [1, 2, 3], [1.0, 2.0, 3.0])
    with pytest.raises(exc, match=match):
        MatrixFactorization(**params).fit(X, **fit_kw)


def test_tiny_weights_kept_in_float64():
    """The float32 refusal of a weight that would round to 0 is about the cast: a float64
    model keeps 1e-300 as it is (its row weighs almost nothing, but it is not dropped)."""
    X = ([1, 2, 3], [1, 2, 3], [1.0, 2.0, 3.0])
    m = MatrixFactorization(dtype=np.float64, n_epochs=1, **KW)
    m.fit(X, sample_weight=[1.0, 1e-300, 1.0])
    assert np.isfinite(m.predict(([1], [1]))).all()


@pytest.mark.parametrize("loss", ["warp", "bpr", "softmax"])
def test_block_columns_too_small_for_negatives(loss):
    """Negatives come from the positive's block column: one of a few items gives none
    (the model would stay at its initialisation). n_blocks=None lowers the count, a set
    n_blocks that leaves fewer than 16 items per column is refused."""
    rng = np.random.default_rng(0)
    # enough interactions for n_blocks=None to give 3 blocks (of 2,048 or more) first
    u, i = rng.integers(0, 1000, 20_000), rng.integers(0, 40, 20_000)
    m = MatrixFactorization(loss=loss, n_threads=64, n_epochs=3, **KW).fit((u, i))
    assert m.n_blocks_ == 2  # 40 items: two columns of about 20
    losses = [h["train_loss"] for h in m.history_]
    assert losses[0] > 0 and losses[-1] < losses[0]  # it trained
    with pytest.raises(ValueError, match=r"n_blocks=30 cuts the 40 items into block columns "
                                         r"of as few as \d item\(s\).*Use n_blocks <= 2"):
        MatrixFactorization(loss=loss, n_blocks=30, **KW).fit((u, i))
    # a set n_blocks that leaves enough items is kept as it is
    two = MatrixFactorization(loss=loss, n_blocks=2, n_epochs=1, **KW).fit((u, i))
    assert two.n_blocks_ == 2
    # Review 19: partial_fit cut the columns by its batch's counts and refused small
    # batches at random, where the fit with the same n_blocks had worked. A batch that
    # cannot fill the columns is trained on fewer blocks, and says so in n_blocks_.
    before = two.user_factors_.copy()
    two.partial_fit(([0, 1], [3, 4]))  # 2 items: no column of 16
    assert two.n_blocks_ == 1 and two.n_epochs_ == 2
    assert not np.array_equal(two.user_factors_[:2], before[:2])  # trained
    np.testing.assert_array_equal(two.user_factors_[2:], before[2:])  # others untouched
    two.partial_fit((u[:5000], i[:5000]))  # a batch that fills them keeps n_blocks
    assert two.n_blocks_ == 2


def test_eval_metric_k_beyond_the_catalogue_is_the_whole_list(implicit):
    """K is clamped to the number of items: ndcg@10**12 is ndcg@n_items (it tried to
    allocate terabytes of discounts after a full epoch)."""
    train, test = implicit
    kw = dict(loss="bpr", n_epochs=2, **KW)
    big = MatrixFactorization(eval_metric="ndcg@1000000000000", **kw).fit(train, eval_set=test)
    whole = MatrixFactorization(eval_metric=f"ndcg@{len(big.item_ids_)}", **kw).fit(
        train, eval_set=test)
    assert big.history_[-1]["val_ndcg@1000000000000"] == \
        whole.history_[-1][f"val_ndcg@{len(big.item_ids_)}"] > 0


def test_eval_set_without_a_known_pair_is_refused(implicit):
    """Unknown users and items are left out of the validation metric: with nothing
    left, every epoch's metric was NaN and early stopping stopped blindly."""
    with pytest.raises(ValueError, match=r"eval_set has 2 interaction\(s\), but none of a "
                                         r"user and an item both in the training data"):
        MatrixFactorization(loss="bpr", early_stopping=True, **KW).fit(
            implicit[0], eval_set=([10**6, 10**6 + 1], [10**6, 10**6 + 2]))


def test_eval_set_of_training_pairs_only_is_refused(implicit):
    """A training pair is left out of its user's ranking and can never be a hit:
    eval_set=X scored 0 in every epoch and early stopping kept epoch 1 without a word.
    An eval_set of training pairs only is refused; mixed with others, they are kept
    (they count as ranking_metrics(train=...) counts them: relevant, never found)."""
    train, test = implicit
    with pytest.raises(ValueError, match=r"eval_set has \d+ interaction\(s\), but all of "
                                         r"known users and items are training pairs"):
        MatrixFactorization(loss="bpr", early_stopping=True, **KW).fit(train, eval_set=train)
    both = (np.concatenate([test[0], train[0][:50]]), np.concatenate([test[1], train[1][:50]]))
    a = MatrixFactorization(loss="bpr", n_epochs=2, **KW).fit(train, eval_set=test)
    b = MatrixFactorization(loss="bpr", n_epochs=2, **KW).fit(train, eval_set=both)
    # the 50 training pairs add relevant items no list can hold: the NDCG can only fall
    assert 0 < b.history_[-1]["val_ndcg@10"] < a.history_[-1]["val_ndcg@10"]


def test_score_of_a_ranking_model_is_its_eval_metric(implicit):
    """score() (GridSearchCV's default) was R^2 of scores against ratings; a ranking
    model is scored by its eval_metric, as ranking_scorer does."""
    train, test = implicit
    X = np.column_stack(test)
    m = MatrixFactorization(loss="bpr", n_epochs=3, **KW).fit(train)
    assert m.score(X) == ranking_scorer("ndcg@10")(m, X) > 0.1
    m.set_params(eval_metric="recall@20")
    assert m.score(X) == ranking_scorer("recall@20")(m, X)


def test_partial_fit_failing_in_its_first_epoch_leaves_the_model_unchanged(implicit):
    """A partial_fit that completes no epoch keeps the model's ids, rows and seen
    items, as its error message says."""
    from mfsgd.exceptions import DivergenceError

    m = MatrixFactorization(loss="bpr", n_epochs=2, **KW).fit(implicit[0])
    before = (m.user_ids_.copy(), m.item_ids_.copy(), m.user_factors_.copy(),
              m._state.seen()[1].copy(), m.n_epochs_)
    m.set_params(learning_rate=1e30)
    with pytest.raises(DivergenceError, match="no epoch completed, so the model is unchanged"):
        m.partial_fit(([10**6, 0], [10**6, 10**6 + 1]))
    after = (m.user_ids_, m.item_ids_, m.user_factors_, m._state.seen()[1], m.n_epochs_)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)


F32_MAX = float(np.finfo(np.float32).max)


def _score_bound(m):
    """The largest |score| the parameters allow: training's divergence bound."""
    a = [float(np.abs(x).max()) for x in (m.user_factors_, m.item_factors_, m.user_bias_,
                                           m.item_bias_)]
    return a[0] * a[1] * m.user_factors_.shape[1] + a[2] + a[3]


@pytest.mark.parametrize("loss", ["warp", "bpr", "softmax"])
def test_a_float64_ranking_model_diverges_where_float32_does(loss):
    """A float64 ranking fit at a runaway rate trained on with losses of 1e47 and factors
    of 1e29 (only float64's own overflow counted as divergence), where float32 raised.
    A ranking score beyond float32's range is divergence whatever the dtype."""
    from mfsgd.exceptions import DivergenceError

    rng = np.random.default_rng(0)
    X = (rng.integers(0, 100, 2000), rng.integers(0, 80, 2000))
    kw = dict(loss=loss, adagrad=True, n_factors=8, n_epochs=5, random_state=0)
    for dtype in (np.float32, np.float64):
        m = MatrixFactorization(dtype=dtype, learning_rate=1000, **kw)
        with pytest.raises(DivergenceError, match=r"diverged in epoch 1 .*learning_rate "
                                                  r"\(now 1000\.0\); no epoch completed"):
            m.fit(X)
        assert not m.__sklearn_is_fitted__()
    # A partial_fit that runs away keeps the fitted model, as in float32.
    m = MatrixFactorization(dtype=np.float64, **kw).fit(X)
    before = (m.user_factors_.copy(), m.item_factors_.copy(), m.n_epochs_, len(m.history_))
    m.set_params(learning_rate=1e4)
    with pytest.raises(DivergenceError, match="no epoch completed, so the model is unchanged"):
        m.partial_fit(X)
    np.testing.assert_array_equal(m.user_factors_, before[0])
    np.testing.assert_array_equal(m.item_factors_, before[1])
    assert (m.n_epochs_, len(m.history_)) == before[2:]


def test_a_float64_ranking_fit_diverging_late_keeps_its_last_good_epoch():
    """Plain SGD at rate 100: the float64 BPR fit kept an epoch whose factors were 1e124
    (loss 1e240) and raised only when float64 overflowed. Whatever epoch it diverges in,
    what it keeps has scores within float32's range (and losses to match)."""
    from mfsgd.exceptions import DivergenceError

    rng = np.random.default_rng(0)
    X = (rng.integers(0, 100, 2000), rng.integers(0, 80, 2000))
    m = MatrixFactorization(loss="bpr", dtype=np.float64, learning_rate=100, n_factors=8,
                            n_epochs=8, random_state=0)
    with pytest.raises(DivergenceError):
        m.fit(X)
    if m.__sklearn_is_fitted__():
        assert m.n_epochs_ == len(m.history_) >= 1
        assert _score_bound(m) < F32_MAX
        assert all(h["train_loss"] < F32_MAX for h in m.history_)


def test_large_negative_exponent_draws_the_popular_items():
    """The popularity weights are relative to the top count: (count / top) ** beta
    cannot overflow (count ** 134 did, and every negative became one rare item)."""
    rng = np.random.default_rng(0)
    u = np.r_[np.arange(200), rng.integers(0, 200, 600)]
    i = np.r_[np.zeros(200, int), rng.integers(1, 60, 600)]
    biases = {}
    for beta in (0.0, 10.0):
        m = MatrixFactorization(loss="bpr", n_factors=4, n_epochs=5, negative_exponent=beta,
                                biased=True, random_state=0).fit((u, i))
        biases[beta] = m.item_bias_
    # Item 0 (seen by every user) is never a negative; with beta = 10 the next most
    # popular items are, so their bias falls below what uniform draws give them.
    counts = np.bincount(i, minlength=60)[1:]
    top = 1 + np.argsort(-counts)[:5]
    assert np.all(np.isfinite(biases[10.0]))
    assert biases[10.0][top].mean() < biases[0.0][top].mean()


def test_ranking_model_in_cross_validate_and_grid_search(implicit):
    """Model selection on interaction pairs: cross_validate scores a ranking model by a
    ranking metric, and GridSearchCV takes ranking_scorer (issue 14 item 4)."""
    pytest.importorskip("sklearn")
    from sklearn.model_selection import GridSearchCV
    from sklearn.model_selection import KFold as SkKFold

    from mfsgd.metrics import ranking_scorer
    from mfsgd.model_selection import KFold, cross_validate

    (u, i), _ = implicit
    m = MatrixFactorization(loss="bpr", n_factors=8, n_epochs=5, random_state=0)
    res = cross_validate(m, (u, i), cv=KFold(3, shuffle=True, random_state=0),
                         metrics=("ndcg@10",))
    assert len(res["test_ndcg@10"]) == 3 and all(0.0 < v <= 1.0 for v in res["test_ndcg@10"])
    gs = GridSearchCV(m, {"n_factors": [2, 8]}, scoring=ranking_scorer("ndcg@10"),
                      cv=SkKFold(2, shuffle=True, random_state=0))
    gs.fit(np.column_stack([u, i]))
    assert gs.best_params_["n_factors"] in (2, 8) and 0.0 < gs.best_score_ <= 1.0


def _doc_table(text, title):
    """{parameter: [values]} of the plain-text table after ``title`` in a docstring."""
    lines = text.split(title, 1)[1].split("\n")
    rows = [ln.split() for ln in lines[2:] if ln.strip()]
    head = rows[0]
    out = {}
    for r in rows[1:]:
        if len(r) != len(head):
            break
        out[r[0]] = r[1:]
    return head[1:], out


def test_docstring_tables_are_the_defaults():
    """The estimator's two tables of per-loss defaults are the values make_config uses."""
    from mfsgd._config import ADAGRAD_DEFAULTS, LOSS_DEFAULTS

    doc = MatrixFactorization.__doc__
    for title, table in (("Per-loss defaults", LOSS_DEFAULTS),
                         ("With ``adagrad=True``", ADAGRAD_DEFAULTS)):
        losses, rows = _doc_table(doc, title)
        assert set(losses) == set(table)
        names = {n for d in table.values() for n in d}
        assert set(rows) == names
        for name, values in rows.items():
            for loss, v in zip(losses, values, strict=True):
                want = table[loss].get(name)
                assert (v == "-") if want is None else float(v) == want, (title, name, loss)


CTRL_C_SCRIPT = """
import os, signal, sys, threading, time, warnings
import numpy as np
import mfsgd
# Python installs no SIGINT handler when it starts with SIGINT ignored, as a shell's
# background job (`.ci/run &`) does: install it, as Ctrl-C in a terminal would find it.
signal.signal(signal.SIGINT, signal.default_int_handler)
# a catalogue of 2**20 items: a positive draws at most N - 1 negatives, about a second
N = 2**20
users = np.r_[np.arange(2000), np.full(N - 1, 5000)]
items = np.r_[np.zeros(2000, int), np.arange(1, N)]
m = mfsgd.MatrixFactorization(n_factors=8, loss="warp", margin=0.0, max_sampled=2**31 - 1,
                              n_threads=int(sys.argv[1]), n_epochs=5, random_state=0)
sent = []
def kick():
    time.sleep(1.0)
    sent.append(time.monotonic())
    os.kill(os.getpid(), signal.SIGINT)
threading.Thread(target=kick, daemon=True).start()
warnings.simplefilter("ignore")
try:
    m.fit((users, items))
    print("finished")
except KeyboardInterrupt:
    print("interrupted %.3f" % (time.monotonic() - sent[0]))
"""


@pytest.mark.parametrize("n_threads", [1, 2])
def test_ctrl_c_stops_a_warp_fit_whose_calls_never_end(n_threads):
    """WARP at max_sampled=2**31-1 once no negative violates the margin: each positive
    draws N - 1 candidates (2**31 before review 19), a kernel call takes minutes, and
    Ctrl-C (checked between calls) went unanswered. The kernels now poll a flag that the
    waiting caller sets on Ctrl-C.
    (A real SIGINT in a child process: the caller must wake from its wait.)"""
    proc = subprocess.run([sys.executable, "-c", CTRL_C_SCRIPT, str(n_threads)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("interrupted"), proc.stdout
    assert float(proc.stdout.split()[1]) < 20  # without the polling: minutes


def test_item_fold_in_weighs_users_by_interactions_not_low_rows():
    """An item's fold-in weighs each user by their interactions; rows below min_rating
    are only seen, so recording some must not change the item solved (it did: the
    weights were the seen record's sizes)."""
    u, i, r = make_ratings(60, 40, 2000, random_state=0, as_frame=False)
    a = MatrixFactorization(loss="bpr", n_epochs=2, min_rating=4, **KW).fit((u, i, r))
    b = copy.deepcopy(a)
    users = np.unique(u)[:20]
    b.fold_in((np.repeat(users, 3), np.tile([0, 1, 2], users.size),
               np.ones(3 * users.size)))  # only low rows: recorded as seen
    np.testing.assert_array_equal(a.user_counts_, b.user_counts_)
    new = (users[:5], np.full(5, 999), np.full(5, 5.0))
    a.fold_in(new, side="item")
    b.fold_in(new, side="item")
    np.testing.assert_array_equal(a.item_factors_[-1], b.item_factors_[-1])
    assert a.item_bias_[-1] == b.item_bias_[-1]


@pytest.mark.parametrize("side", ["user", "item"])
def test_fold_in_counts_a_repeated_interaction_twice(side):
    """A repeated interaction is a second draw from the softmax fold_in maximises, as a
    repeated row is a second positive in fit (review 21: fold_in kept distinct items, so
    (3, 3, 7) solved as (3, 7)). Checked against the objective's gradient at the
    solution, written out here for the user side."""
    rng = np.random.default_rng(26)
    u, i = rng.integers(0, 100, 3000), rng.integers(0, 120, 3000)
    m = MatrixFactorization(loss="softmax", n_factors=8, n_epochs=5, random_state=0,
                            dtype="float64").fit((u, i))
    if side == "user":
        new, other = 10**6, [3, 3, 7]
        pairs = lambda o: ([new] * len(o), o)  # noqa: E731
    else:
        new, other = 10**6, [5, 5, 9, 11]
        pairs = lambda o: (o, [new] * len(o))  # noqa: E731
    rows = lambda mm: (mm.user_factors_ if side == "user" else mm.item_factors_)[-1]  # noqa: E731
    twice = rows(copy.deepcopy(m).fold_in(pairs(other), side=side))
    once = rows(copy.deepcopy(m).fold_in(pairs(sorted(set(other))), side=side))
    assert not np.allclose(twice, once, atol=1e-6)
    if side == "user":
        V, b = np.asarray(m.item_factors_, float), np.asarray(m.item_bias_, float)
        reg = 0.03 * np.mean(np.sum(V ** 2, axis=1))
        s = V @ twice + b
        p = np.exp(s - s.max())
        p /= p.sum()
        cols = [int(np.flatnonzero(m.item_ids_ == x)[0]) for x in other]
        grad = -V[cols].mean(axis=0) + p @ V + 2 * reg * twice
        assert np.linalg.norm(grad) < 1e-8


@pytest.mark.parametrize("loss,extra", [("squared", {}), ("bpr", {}), ("softmax", {}),
                                         ("bpr", {"min_rating": 2})])
@pytest.mark.parametrize("side", ["user", "item"])
def test_refolding_a_known_id_from_its_rows_counts_them_once(loss, extra, side):
    """fold_in of a known user (or item) from all of their rows, as the docs ask,
    recomputes the row but adds nothing to the record: the counts (the popularity unknown
    users get) and the seen items stay as they were (review 22: they doubled). Rows
    beyond the recorded ones count, once each."""
    rng = np.random.default_rng(0)
    u, i = rng.integers(0, 50, 2000), rng.integers(0, 80, 2000)
    _, first = np.unique(u * 1000 + i, return_index=True)
    u, i = u[first], i[first]
    r = rng.integers(1, 6, u.size).astype(float)
    m = MatrixFactorization(loss=loss, n_factors=4, n_epochs=2, random_state=0, **extra)
    m.fit((u, i, r))
    who = 7 if side == "user" else 3
    sel = (u if side == "user" else i) == who
    before = (m.user_counts_.copy(), m.item_counts_.copy(), m.recommend(10**9, n=20)[0])
    seen_before = m._state.seen()[1].size
    a = copy.deepcopy(m).fold_in((u[sel], i[sel], r[sel]), side=side)
    np.testing.assert_array_equal(a.user_counts_, before[0])
    np.testing.assert_array_equal(a.item_counts_, before[1])
    np.testing.assert_array_equal(a.recommend(10**9, n=20)[0], before[2])
    assert a._state.seen()[1].size == seen_before
    # one row more (a pair not recorded before), and a second copy of a recorded one:
    # each counts once
    mine = set((i if side == "user" else u)[sel].tolist())
    other = max(set(range(80 if side == "user" else 50)) - mine)
    pair = (who, other) if side == "user" else (other, who)
    uu = np.r_[u[sel], pair[0], u[sel][0]]
    ii = np.r_[i[sel], pair[1], i[sel][0]]
    rr = np.r_[r[sel], 5.0, 5.0]
    b = copy.deepcopy(m).fold_in((uu, ii, rr), side=side)
    # (with min_rating, also when the pair was first recorded from a row below it: the
    # model keeps those rows apart, so the pair held no interaction yet)
    kept_extra = 2
    assert b.item_counts_.sum() == before[1].sum() + kept_extra
    assert b._state.seen()[1].size == seen_before + kept_extra


@pytest.mark.parametrize("side", ["user", "item"])
def test_refolding_an_id_known_only_from_low_rows_counts_its_interactions(side):
    """With min_rating the seen record also holds the rows below it, which are no
    interactions. A user known only from such rows, folded in from the same pairs now
    rated above it, gains those interactions (review 23: the pairs were taken for
    recorded interactions, so the count stayed 0 and the user was still served the
    popularity list)."""
    rng = np.random.default_rng(0)
    u, i = rng.integers(0, 60, 3000), rng.integers(0, 50, 3000)
    _, first = np.unique(u * 1000 + i, return_index=True)
    u, i = u[first], i[first]
    r = np.full(u.size, 5.0)
    # user 100 is known from two 1-star rows only, of items 1 and 2
    u, i, r = np.r_[u, 100, 100], np.r_[i, 1, 2], np.r_[r, 1.0, 1.0]
    m = MatrixFactorization(loss="bpr", n_factors=4, n_epochs=2, min_rating=3,
                            random_state=0).fit((u, i, r))
    urow = int(np.flatnonzero(m.user_ids_ == 100)[0])
    assert m.user_counts_[urow] == 0
    item_total, item1 = m.item_counts_.sum(), m.item_counts_[1]
    if side == "user":
        m.fold_in((np.array([100, 100]), np.array([1, 2]), np.array([5.0, 5.0])))
        assert m.user_counts_[urow] == 2 and m.item_counts_.sum() == item_total + 2
        scores = m.predict((np.full(len(m.item_ids_), 100), m.item_ids_))
        want = [j for j in m.item_ids_[np.argsort(-scores, kind="stable")] if j not in (1, 2)]
        assert m.recommend(100, n=5)[0].tolist() == want[:5]  # its own row, not popularity
    else:
        # Item 1 refolded from its users, user 100 now among them: an item fold-in
        # solves no user, so user 100 keeps a zero row and no interaction, and their row
        # is recorded as seen but no interaction (of the item either), and refolding
        # again changes nothing (review 24: the item's count grew by one at every
        # refold). Refolding the user counts it on both sides, once.
        users = np.r_[u[(i == 1) & (r >= 3)], 100]
        for _ in range(3):
            m.fold_in((users, np.ones(users.size, int), np.full(users.size, 5.0)),
                      side="item")
            assert m.item_counts_[1] == item1 and m.user_counts_[urow] == 0
        m.fold_in((np.array([100]), np.array([1]), np.array([5.0])))
        assert m.item_counts_[1] == item1 + 1 and m.user_counts_[urow] == 1
        m.fold_in((np.array([100]), np.array([1]), np.array([5.0])))
        assert m.item_counts_[1] == item1 + 1 and m.user_counts_[urow] == 1


def test_warp_draws_at_most_the_items_of_its_range_but_one():
    """A violation found after N - 1 draws weighs Phi(floor((N - 1) / s)) = Phi(0) = 0, so
    WARP stops drawing there: max_sampled=2**31-1 with margin 0 cost about a second per
    million draws per epoch for nothing (review 19; 40 minutes per epoch at its maximum).
    Any max_sampled from N - 1 on gives the model of N - 1, bit for bit, as fast."""
    rng = np.random.default_rng(3)
    u, i = rng.integers(0, 200, 3000), rng.integers(0, 80, 3000)
    kw = dict(loss="warp", margin=0.0, n_epochs=3, n_blocks=1, n_factors=4, random_state=0)
    n = len(np.unique(i))
    a = MatrixFactorization(max_sampled=n - 1, **kw).fit((u, i))
    b = MatrixFactorization(max_sampled=2**31 - 1, **kw).fit((u, i))
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    c = MatrixFactorization(max_sampled=n - 2, **kw).fit((u, i))
    assert not np.array_equal(a.item_factors_, c.item_factors_)  # below N - 1 it counts


def _pairs_of(csr, user_ids, item_ids):
    """The multiset of (user id, item id) pairs of a per-user CSR of item rows."""
    indptr, items = csr
    users = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    return Counter(zip(user_ids[users].tolist(), item_ids[items].tolist(), strict=True))


@pytest.mark.parametrize("seed", range(4))
def test_min_rating_bookkeeping_is_exact_through_fold_in_and_partial_fit(seed, tmp_path):
    """With min_rating the seen record holds the interactions and the rows below it, kept
    apart, so the counts are exact through any mix of fit, partial_fit and fold_in
    (reviews 23-25: the record kept pairs, not ratings, and a pair re-rated from below
    min_rating to above it went uncounted). Checked against a plain bookkeeping of the
    documented rules: a refold adds the copies of a pair beyond those recorded (an
    interaction beyond the interactions, a low row beyond the low rows); an item fold-in
    records a user without interactions' rows as no interaction; partial_fit records
    every row. A save and load on the way keeps it all."""
    rng = np.random.default_rng(seed)
    H, L = Counter(), Counter()  # interaction copies and low copies per (user, item)
    known_u, known_i = set(), set()

    def rows(n, users, items):
        return (rng.choice(users, n), rng.choice(items, n),
                rng.integers(1, 6, n).astype(float))

    def refold(counter, given):
        for pair, c in Counter(given).items():
            counter[pair] += max(0, c - counter[pair])

    u, i, r = rows(60, np.arange(8), np.arange(6))
    m = MatrixFactorization(loss="bpr", n_factors=2, n_epochs=1, min_rating=3,
                            random_state=seed).fit((u, i, r))
    hi = r >= 3
    known_i |= set(i[hi].tolist())
    H.update(zip(u[hi].tolist(), i[hi].tolist(), strict=True))
    low = [(a, b) for a, b in zip(u[~hi].tolist(), i[~hi].tolist(), strict=True)
           if b in known_i]
    L.update(low)
    known_u |= set(u[hi].tolist()) | {a for a, _ in low}
    for step in range(12):
        kind = rng.choice(["user", "item", "partial_fit"])
        n = int(rng.integers(1, 7))
        if kind == "user":
            u, i, r = rows(n, rng.choice(np.r_[np.arange(8), 50 + step], 2), np.arange(7))
        elif kind == "item":
            u, i, r = rows(n, np.arange(9), rng.choice(np.r_[np.arange(6), 80 + step], 2))
        else:
            u, i, r = rows(n, np.arange(10), np.arange(8))
        hi = r >= 3
        uc = Counter()
        for (a, _), c in H.items():
            uc[a] += c
        try:
            if kind == "partial_fit":
                m.partial_fit((u, i, r))
            else:
                m.fold_in((u, i, r), side=kind)
        except ValueError:
            continue  # refused: nothing changed (checked below against the bookkeeping)
        kept = list(zip(u[hi].tolist(), i[hi].tolist(), strict=True))
        lows = list(zip(u[~hi].tolist(), i[~hi].tolist(), strict=True))
        if kind == "partial_fit":
            H.update(kept)
            known_u |= set(u[hi].tolist())
            known_i |= set(i[hi].tolist())
            lows = [p for p in lows if p[1] in known_i]
            L.update(lows)
            known_u |= {a for a, _ in lows}
        elif kind == "user":
            kept = [p for p in kept if p[1] in known_i]
            refold(H, kept)
            lows = [p for p in lows if p[1] in known_i]
            refold(L, lows)
            known_u |= {a for a, _ in kept + lows}
        else:
            kept = [p for p in kept if p[0] in known_u]
            refold(H, [p for p in kept if uc[p[0]] > 0])
            refold(L, [p for p in kept if uc[p[0]] == 0])
            known_i |= {b for _, b in kept}
            refold(L, [p for p in lows if p[0] in known_u and p[1] in known_i])
        if step == 6:
            m.save(tmp_path / "m.mfsgd")
            m = load(tmp_path / "m.mfsgd")
        uid, iid = m.user_ids_, m.item_ids_
        assert set(uid.tolist()) == known_u and set(iid.tolist()) == known_i
        want_u, want_i = Counter(), Counter()
        for (a, b), c in H.items():
            want_u[a] += c
            want_i[b] += c
        assert m.user_counts_.tolist() == [want_u[a] for a in uid.tolist()]
        assert m.item_counts_.tolist() == [want_i[b] for b in iid.tolist()]
        assert _pairs_of(m._state.seen(), uid, iid) == H + L
        assert _pairs_of(m._state.low(), uid, iid) == +L


def test_partial_fit_draws_negatives_as_fit_does_under_min_rating(monkeypatch):
    """partial_fit's sampler blocks the user's interactions only, as fit's does: an item
    a user rated below min_rating is a fair negative of theirs in both (partial_fit
    blocked every recorded item, low ones included, and weighed items by every recorded
    row under negative_exponent)."""
    import mfsgd._training as T
    captured = []
    real = T.make_sampler

    def spy(layout, n_items, n_users, beta, seen, *args, **kwargs):
        captured.append((seen[0].copy(), seen[1].copy()))
        return real(layout, n_items, n_users, beta, seen, *args, **kwargs)

    monkeypatch.setattr(T, "make_sampler", spy)
    u, i, r = make_ratings(60, 40, 1500, random_state=1, as_frame=False)
    m = MatrixFactorization(loss="bpr", n_factors=4, n_epochs=1, min_rating=4,
                            negative_exponent=0.5, n_blocks=1, random_state=0)
    m.fit((u, i, r))
    low = m._state.low()
    assert low[1].size > 0
    counts_before = m.item_counts_.copy()
    batch = (u[:50], i[:50], r[:50])
    m.partial_fit(batch)
    (fu, fi), (pu, pi) = captured
    n_items = len(m.item_ids_)
    low_keys = set((np.repeat(np.arange(len(low[0]) - 1), np.diff(low[0])) * n_items
                    + low[1]).tolist())
    kept_keys = set((fu.astype(np.int64) * n_items + fi).tolist())
    # the pairs rated only below min_rating: no negative is blocked for them in fit...
    only_low = low_keys - kept_keys
    assert only_low and not only_low & kept_keys
    # ... nor in partial_fit (its item indices are natural with one block)
    assert not only_low & set((pu.astype(np.int64) * n_items + pi).tolist())
    # and the items' sampling weights count the interactions: the model's counts before
    # the batch plus the batch's kept rows
    rows = m.item_ids_.searchsorted(batch[1][batch[2] >= 4])
    np.testing.assert_array_equal(np.bincount(pi, minlength=n_items),
                                  counts_before + np.bincount(rows, minlength=n_items))


def test_sample_weight_by_column_name_or_as_a_sparse_matrix_like_x():
    """sample_weight may name a column of X (pandas or Arrow), and for a sparse X be a
    sparse matrix of X's shape with a weight in each stored cell (LightFM's form), read
    cell by cell whatever its entry order (review 26: both were refused, the second with
    'must be 1-D ... got a scalar array(<COOrdinate sparse matrix ...>)')."""
    pd = pytest.importorskip("pandas")
    sp = pytest.importorskip("scipy.sparse")
    from mfsgd import Popularity

    u, i, r = make_ratings(50, 30, 600, random_state=0, as_frame=False)
    kw = dict(loss="bpr", n_factors=4, n_epochs=2, random_state=0)
    want = MatrixFactorization(**kw).fit((u, i), sample_weight=r)
    df = pd.DataFrame({"user": u, "item": i, "plays": r})
    forms = [df]
    try:
        import pyarrow as pa
        forms.append(pa.table(df))
    except ImportError:
        pass
    for X in forms:
        got = MatrixFactorization(**kw).fit(X, sample_weight="plays")
        np.testing.assert_array_equal(got.item_factors_, want.item_factors_)
    np.testing.assert_array_equal(Popularity().fit(df, sample_weight="plays").item_counts_,
                                  Popularity().fit((u, i), sample_weight=r).item_counts_)
    X = sp.csr_matrix((np.ones(u.size), (u, i)))
    order = np.random.default_rng(0).permutation(u.size)
    half = r / 2  # each cell's weight split over two COO entries, in another order
    W = sp.coo_matrix((np.r_[half, half][np.r_[order, order]],
                       (np.r_[u[order], u[order]], np.r_[i[order], i[order]])), shape=X.shape)
    got = MatrixFactorization(**kw).fit(X, sample_weight=W)
    # X's entries are read row-major: the weights in the order of X.data, cell by cell
    in_order = sp.csr_matrix((r, (u, i)), shape=X.shape)
    assert np.array_equal(in_order.indices, X.indices)
    ref = MatrixFactorization(**kw).fit(X, sample_weight=in_order.data)
    np.testing.assert_allclose(got.item_factors_, ref.item_factors_, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"sample_weight='count': X has no such column"):
        MatrixFactorization(**kw).fit(df, sample_weight="count")
    with pytest.raises(ValueError, match=r"sample_weight='item' is X's user or item column"):
        MatrixFactorization(**kw).fit(df, sample_weight="item")
    with pytest.raises(TypeError, match=r"sample_weight='plays' names a column, but X has no "
                                        r"columns \(tuple\)"):
        MatrixFactorization(**kw).fit((u, i), sample_weight="plays")
    with pytest.raises(ValueError, match=r"sample_weight has no entry for 1 stored cells of X "
                                         r"\(the first: row"):
        MatrixFactorization(**kw).fit(X, sample_weight=sp.csr_matrix(
            (r[1:], (u[1:], i[1:])), shape=X.shape))
    with pytest.raises(ValueError, match=r"sample_weight is a 3 x 3 matrix but X is"):
        MatrixFactorization(**kw).fit(X, sample_weight=sp.eye(3, format="csr"))
    with pytest.raises(TypeError, match=r"with this X pass one weight per row"):
        MatrixFactorization(**kw).fit((u, i), sample_weight=W)
    # a cell X stores twice: entry for entry (W built on X's coordinates) the entries'
    # weights add up as the entries do; a W of other layout gives the cell its weight
    # once, however X stores it (review 27: the cell weighed 8 as COO, 6 as CSC)
    Xd = sp.coo_matrix(([1.0, 1.0, 1.0, 1.0], ([0, 0, 1, 1], [0, 0, 1, 2])), shape=(2, 3))
    per_entry = sp.coo_matrix(([2.0, 4.0, 2.0, 3.0], (Xd.row, Xd.col)), shape=(2, 3))
    counts = Popularity().fit(Xd, sample_weight=per_entry).item_counts_
    assert counts.tolist() == [6.0, 2.0, 3.0]
    per_cell = sp.csr_matrix(([6.0, 2.0, 3.0], ([0, 1, 1], [0, 1, 2])), shape=(2, 3))
    for form in (Xd, Xd.tocsc(), Xd.tocsr(), Xd.tolil()):
        assert Popularity().fit(form, sample_weight=per_cell).item_counts_.tolist() == \
            [6.0, 2.0, 3.0]
    # a negative entry is refused before entries add up; an explicit zero of X (dropped as
    # X is read) needs no weight
    with pytest.raises(ValueError, match=r"sample_weight must be >= 0; got -1.0"):
        Popularity().fit(Xd, sample_weight=sp.coo_matrix(
            ([-1.0, 7.0, 2.0, 3.0], (Xd.row, Xd.col)), shape=(2, 3)))
    Xz = sp.csr_matrix(([1.0, 0.0, 1.0], ([0, 1, 1], [0, 1, 2])), shape=(2, 3))
    Wz = sp.csr_matrix(([5.0, 3.0], ([0, 1], [0, 2])), shape=(2, 3))
    assert Popularity().fit(Xz, sample_weight=Wz).item_counts_.tolist() == [5.0, 3.0]
