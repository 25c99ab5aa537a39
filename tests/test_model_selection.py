"""mfsgd.model_selection: splitters keep the form, partition the rows and follow their rules;
cross_validate equals fitting and scoring each fold by hand."""

import math
from collections import Counter, defaultdict

import numpy as np
import pytest

from mfsgd import MatrixFactorization
from mfsgd import metrics as M
from mfsgd import model_selection as ms
from mfsgd.datasets import make_ratings


@pytest.fixture(scope="module")
def data():
    """(users, items, ratings, row) with row = original position, to trace rows."""
    u, i, r = make_ratings(300, 200, 6000, random_state=3, as_frame=False)
    return u, i, r, np.arange(u.size)


def rows_of(part):
    return np.asarray(part[3])


def assert_partition(train, test, n):
    a, b = rows_of(train), rows_of(test)
    assert np.intersect1d(a, b).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([a, b])), np.arange(n))
    assert (np.diff(a) > 0).all() and (np.diff(b) > 0).all()  # original order kept


# ---------------------------------------------------------------------- train_test_split
def test_train_test_split_sizes_partition_and_seed(data):
    n = data[0].size
    train, test = ms.train_test_split(data, test_size=0.2, random_state=0)
    assert isinstance(train, tuple) and len(train) == 4
    assert len(test[0]) == math.ceil(0.2 * n) and len(train[0]) == n - len(test[0])
    assert_partition(train, test, n)
    for part in (train, test):  # columns stay aligned
        np.testing.assert_array_equal(part[0], data[0][rows_of(part)])
        np.testing.assert_array_equal(part[2], data[2][rows_of(part)])
    again = ms.train_test_split(data, test_size=0.2, random_state=0)[1]
    other = ms.train_test_split(data, test_size=0.2, random_state=1)[1]
    np.testing.assert_array_equal(rows_of(again), rows_of(test))
    assert not np.array_equal(rows_of(other), rows_of(test))
    _, test7 = ms.train_test_split(data, test_size=7, random_state=0)
    assert len(test7[0]) == 7


def test_train_test_split_keeps_every_form(data):
    pd = pytest.importorskip("pandas")
    u, i, r, row = data
    df = pd.DataFrame({"user": u, "item": i, "rating": r, "row": row})
    tr, te = ms.train_test_split(df, random_state=0)
    assert isinstance(tr, pd.DataFrame) and list(tr.columns) == list(df.columns)
    np.testing.assert_array_equal(te.index.to_numpy(), te["row"].to_numpy())  # index kept
    ref = ms.train_test_split(data, random_state=0)[1]
    np.testing.assert_array_equal(te["row"].to_numpy(), rows_of(ref))  # same rows, any form
    d_tr, d_te = ms.train_test_split({"user": u, "item": i, "rating": r, "row": row},
                                     random_state=0)
    assert isinstance(d_te, dict) and set(d_te) == {"user", "item", "rating", "row"}
    np.testing.assert_array_equal(d_te["row"], rows_of(ref))
    l_tr, l_te = ms.train_test_split([u, i, r, row], random_state=0)
    assert isinstance(l_te, list)
    a_tr, a_te = ms.train_test_split(np.column_stack([u, i, row]), random_state=0)
    np.testing.assert_array_equal(a_te[:, 2], rows_of(ref))
    # the split parts are accepted by fit as they are
    MatrixFactorization(n_factors=2, n_epochs=1).fit(tr)


@pytest.mark.parametrize("kw,exc,msg", [
    (dict(test_size=0.0), ValueError, r"test_size must be a float > 0 and < 1; got 0.0"),
    (dict(test_size=1.0), ValueError, r"test_size must be a float > 0 and < 1"),
    (dict(test_size=0), ValueError, r"test_size as a count must be from 1 to 5"),
    (dict(test_size=6), ValueError, r"test_size as a count must be from 1 to 5"),
    (dict(test_size="0.2"), TypeError, r"test_size must be a float"),
    (dict(test_size=0.99), ValueError, r"would leave no training rating"),
    (dict(random_state=-1), ValueError, r"random_state must be a non-negative int"),
])
def test_train_test_split_errors(kw, exc, msg):
    d = (np.arange(6), np.arange(6), np.ones(6))
    with pytest.raises(exc, match=msg):
        ms.train_test_split(d, **kw)


@pytest.mark.parametrize("bad,exc,msg", [
    ((np.arange(3), np.arange(4)), ValueError, r"same length; column 0 has 3, column 1 has 4"),
    ((1, 2, 3.0), ValueError, r"tuple of 3 scalars"),
    ("ratings.csv", TypeError, r"data must be a DataFrame"),
    (np.arange(5), TypeError, r"data must be a DataFrame.*shape \(5,\)"),
    ((np.arange(1), np.arange(1)), ValueError, r"at least 2 ratings"),
])
def test_bad_data_forms(bad, exc, msg):
    with pytest.raises(exc, match=msg):
        ms.train_test_split(bad)


# ---------------------------------------------------------------------- per-user splits
def per_user_counts(part):
    return Counter(np.asarray(part[0]).tolist())


def test_leave_k_out_rules(data):
    n = data[0].size
    total = per_user_counts(data)
    for k in (1, 3):
        train, test = ms.leave_k_out(data, k=k, random_state=0)
        assert_partition(train, test, n)
        held = per_user_counts(test)
        for user, count in total.items():
            assert held.get(user, 0) == (k if count > k else 0)
        assert set(held) <= set(per_user_counts(train))  # every test user is in train
    a = ms.leave_k_out(data, k=1, random_state=5)[1]
    b = ms.leave_k_out(data, k=1, random_state=5)[1]
    c = ms.leave_k_out(data, k=1, random_state=6)[1]
    np.testing.assert_array_equal(rows_of(a), rows_of(b))
    assert not np.array_equal(rows_of(a), rows_of(c))


def test_leave_k_out_picks_uniformly_within_each_user():
    """2000 users x 5 ratings: the held-out rating's position among the user's rows is
    uniform (a splitter always taking the first or last row fails)."""
    users = np.repeat(np.arange(2000), 5)
    rng = np.random.default_rng(0)
    users = users[rng.permutation(users.size)]  # users interleaved, not contiguous
    d = (users, np.arange(users.size), np.ones(users.size), np.arange(users.size))
    _, test = ms.leave_k_out(d, k=1, random_state=0)
    pos = []
    for user, row in zip(test[0].tolist(), test[3].tolist(), strict=True):
        pos.append(int(np.flatnonzero(users == user).tolist().index(row)))
    counts = np.bincount(pos, minlength=5)
    assert counts.sum() == 2000 and counts.min() > 320 and counts.max() < 480


@pytest.mark.parametrize("frac,min_train", [(0.2, 1), (0.5, 2), (0.3, 0)])
def test_per_user_split_counts_follow_the_rule(data, frac, min_train):
    n = data[0].size
    train, test = ms.per_user_split(data, test_fraction=frac, min_train=min_train,
                                    random_state=1)
    assert_partition(train, test, n)
    held, kept = per_user_counts(test), per_user_counts(train)
    for user, count in per_user_counts(data).items():
        want = max(0, min(math.floor(frac * count + 0.5), count - min_train))
        assert held.get(user, 0) == want
        assert kept.get(user, 0) == count - want >= min(min_train, count)


@pytest.mark.parametrize("frac", [0.1, 0.3, 0.35, 0.7, 0.9, np.float32(0.7), "fraction",
                                  "decimal"])
def test_per_user_halves_round_up_exactly(frac):
    """round(frac x n), halves up, as the decimal written: 0.7 x 45 = 31.5 holds out 32
    rows (floating point makes it 31.4999... and held out 31; review 21), per_user_split
    and temporal_split(per_user=True) alike."""
    from decimal import Decimal
    from fractions import Fraction

    if frac == "fraction":
        frac = Fraction(7, 10)
    elif frac == "decimal":
        frac = Decimal("0.7")
    sizes = np.arange(1, 61)
    users = np.repeat(sizes, sizes)
    d = (users, np.arange(users.size), np.ones(users.size))
    exact = Fraction(str(frac)) if not isinstance(frac, Fraction) else frac  # as written
    want = {int(n): min(math.floor(exact * int(n) + Fraction(1, 2)), n - 1) for n in sizes}
    _, test = ms.per_user_split(d, test_fraction=frac, random_state=0)
    _, test_t = ms.temporal_split(d, np.arange(users.size), test_size=frac, per_user=True)
    for part in (test, test_t):
        held = per_user_counts(part)
        assert {n: held.get(n, 0) for n in want} == want


@pytest.mark.parametrize("huge", [6000, 6001, 2**63 - 1, 2**63, 2**64, 10**30,
                                  np.uint64(2**64 - 1)])
def test_per_user_split_huge_min_train_is_as_large_as_a_count(data, huge):
    """min_train=2**63 raised NumPy's OverflowError from counts - min_train; any
    min_train >= every user's count puts every rating in training, as 2**62 does."""
    want = ms.per_user_split(data, min_train=2**62, random_state=1)
    got = ms.per_user_split(data, min_train=huge, random_state=1)
    assert rows_of(want[1]).size == 0
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(rows_of(a), rows_of(b))


@pytest.mark.parametrize("huge", [6000, 2**63, 10**30, np.uint64(2**64 - 1)])
def test_leave_k_out_huge_k_holds_nobody_out(data, huge):
    want = ms.leave_k_out(data, k=2**62, random_state=1)
    got = ms.leave_k_out(data, k=huge, random_state=1)
    assert rows_of(want[1]).size == 0
    for a, b in zip(want, got, strict=True):
        np.testing.assert_array_equal(rows_of(a), rows_of(b))


def test_per_user_split_with_string_users_and_dataframe():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"who": list("aaaabbbbbbbbbbc"), "item": range(15), "rating": 4.0})
    tr, te = ms.per_user_split(df, test_fraction=0.5, user_col="who", random_state=0)
    assert te["who"].value_counts().to_dict() == {"b": 5, "a": 2}
    assert tr["who"].value_counts().to_dict() == {"b": 5, "a": 2, "c": 1}
    with pytest.raises(ValueError, match=r"no user column 'user'.*user_col="):
        ms.per_user_split(df)


# ---------------------------------------------------------------------- temporal
def test_temporal_split_global(data):
    n = data[0].size
    ts = np.random.default_rng(0).integers(0, 500, n)  # many ties
    train, test = ms.temporal_split(data, ts, test_size=0.25)
    assert_partition(train, test, n)
    assert len(test[0]) == math.ceil(0.25 * n)
    assert ts[rows_of(train)].max() <= ts[rows_of(test)].min()
    # ties at the border: of equal times, the later rows are in test
    border = ts[rows_of(test)].min()
    tied_train = rows_of(train)[ts[rows_of(train)] == border]
    tied_test = rows_of(test)[ts[rows_of(test)] == border]
    if tied_train.size and tied_test.size:
        assert tied_train.max() < tied_test.min()
    dt = ts.astype("datetime64[s]")
    np.testing.assert_array_equal(rows_of(ms.temporal_split(data, dt, test_size=0.25)[1]),
                                  rows_of(test))


def test_temporal_split_per_user(data):
    n = data[0].size
    ts = np.random.default_rng(1).random(n)
    train, test = ms.temporal_split(data, ts, test_size=0.3, per_user=True)
    assert_partition(train, test, n)
    last_train, first_test = defaultdict(lambda: -1.0), defaultdict(lambda: 2.0)
    for u, t in zip(train[0].tolist(), ts[rows_of(train)].tolist(), strict=True):
        last_train[u] = max(last_train[u], t)
    for u, t in zip(test[0].tolist(), ts[rows_of(test)].tolist(), strict=True):
        first_test[u] = min(first_test[u], t)
    held = per_user_counts(test)
    for user, count in per_user_counts(data).items():
        assert held.get(user, 0) == min(math.floor(0.3 * count + 0.5), count - 1)
        assert last_train[user] >= 0  # every user keeps a training rating
        if user in first_test:
            assert last_train[user] < first_test[user]


def test_temporal_split_column_name_and_errors():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"user": [1, 1, 2, 2], "item": [1, 2, 1, 2], "rating": 3.0,
                       "timestamp": [4, 1, 3, 2]})
    tr, te = ms.temporal_split(df, "timestamp", test_size=2)
    assert te["timestamp"].tolist() == [4, 3]
    d = (np.arange(4), np.arange(4), np.ones(4))
    with pytest.raises(TypeError, match=r"names a column, which needs a DataFrame"):
        ms.temporal_split(d, "timestamp")
    with pytest.raises(ValueError, match=r"one value per rating; got 3 for 4"):
        ms.temporal_split(d, [1, 2, 3])
    with pytest.raises(ValueError, match=r"timestamps has 1 non-finite"):
        ms.temporal_split(d, [1.0, np.nan, 2.0, 3.0])
    with pytest.raises(TypeError, match=r"timestamps must be numbers or datetime64"):
        ms.temporal_split(d, ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match=r"no timestamp column 'ts'"):
        ms.temporal_split(df, "ts")


def test_temporal_split_refuses_time_zone_aware_timestamps():
    pd = pytest.importorskip("pandas")
    import datetime

    df = pd.DataFrame({"user": [1, 1, 2, 2], "item": [1, 2, 1, 2], "rating": 3.0,
                       "ts": pd.date_range("2020", periods=4, freq="h", tz="UTC")})
    d = (np.arange(4), np.arange(4), np.ones(4))
    utc = datetime.timezone.utc
    for data, ts in [(df, "ts"), (d, df["ts"]),
                     (d, [datetime.datetime(2020, 1, n, tzinfo=utc) for n in range(1, 5)])]:
        with pytest.raises(TypeError, match=r"timestamps are time-zone-aware datetimes, which "
                                            r"are not supported; convert them to naive UTC "
                                            r"datetime64 first \(pandas: s.dt.tz_convert\(None\)"):
            ms.temporal_split(data, ts)
    # the conversion the message names works
    tr, te = ms.temporal_split(df, df["ts"].dt.tz_convert(None), test_size=1)
    assert te["item"].tolist() == [2]


# ---------------------------------------------------------------------- KFold, PredefinedSplit
@pytest.mark.parametrize("n,k", [(10, 3), (6000, 5), (7, 7)])
def test_kfold_partitions(n, k):
    d = (np.arange(n), np.arange(n), np.ones(n))
    folds = list(ms.KFold(k, random_state=0).split(d))
    assert len(folds) == k == ms.KFold(k).get_n_splits()
    tests = [t for _, t in folds]
    np.testing.assert_array_equal(np.sort(np.concatenate(tests)), np.arange(n))
    sizes = [t.size for t in tests]
    assert max(sizes) - min(sizes) <= 1
    for tr, te in folds:
        assert tr.dtype == np.int64 and np.intersect1d(tr, te).size == 0
        assert tr.size + te.size == n
    again = [t for _, t in ms.KFold(k, random_state=0).split(d)]
    assert all(np.array_equal(a, b) for a, b in zip(tests, again, strict=True))


def test_kfold_shuffle_false_is_contiguous_and_errors():
    d = (np.arange(7), np.arange(7))
    tests = [t.tolist() for _, t in ms.KFold(3, shuffle=False).split(d)]
    assert tests == [[0, 1, 2], [3, 4], [5, 6]]
    shuffled = [t.tolist() for _, t in ms.KFold(3, random_state=0).split(d)]
    assert shuffled != tests
    with pytest.raises(ValueError, match=r"n_splits must be an int >= 2; got 1"):
        list(ms.KFold(1).split(d))
    with pytest.raises(ValueError, match=r"n_splits=8 is more than the number of ratings \(7\)"):
        list(ms.KFold(8).split(d))
    assert "KFold(n_splits=3" in repr(ms.KFold(3))


def test_predefined_split():
    a, b = (np.arange(3), np.arange(3), np.ones(3)), (np.arange(2), np.arange(2), np.ones(2))
    cv = ms.PredefinedSplit([(a, b), [b, a]])
    pairs = list(cv.split())
    assert cv.get_n_splits() == 2 and pairs[0][0] is a and pairs[1][1] is a
    with pytest.raises(ValueError, match=r"fold 0 is a tuple of length 3"):
        ms.PredefinedSplit([(a, b, a)])
    with pytest.raises(ValueError, match=r"folds is empty"):
        ms.PredefinedSplit([])


def test_a_pandas_index_as_a_fold_says_what_to_pass():
    """df.index[...] (or a RangeIndex) as a fold's part reached fit, whose "X must be a
    DataFrame ... got RangeIndex" did not say what to pass. An Index holds row labels, so
    it is refused (not read as positions: after a filter or a sort they are other rows),
    with the two conversions; the positions it names then give the folds wanted."""
    pd = pytest.importorskip("pandas")
    df = make_ratings(100, 50, 1000, random_state=0).sample(frac=1.0, random_state=0)
    tr, te = df.index[:800], df.index[800:]  # labels, no longer row positions
    msg = (r"fold 0: train is a pandas {}, which holds row labels, not row positions; .*"
           r"pass data\.index\.get_indexer\(labels\) \(their positions\) or "
           r"data\.loc\[labels\] \(the rows\); np\.asarray\(labels\) is the same only "
           r"while the data has its default RangeIndex")
    with pytest.raises(TypeError, match="PredefinedSplit " + msg.format("Index")):
        ms.PredefinedSplit([(tr, te)])
    with pytest.raises(TypeError, match="PredefinedSplit " + msg.format("RangeIndex")):
        ms.PredefinedSplit([(pd.RangeIndex(800), pd.RangeIndex(800, 1000))])
    model = MatrixFactorization(**PARAMS)
    with pytest.raises(TypeError, match="cv " + msg.format("Index")):
        ms.cross_validate(model, df, cv=[(tr, te)])
    # the suggested conversion selects the rows of those labels
    pos = ms.PredefinedSplit([(df.index.get_indexer(tr), df.index.get_indexer(te))])
    rows = ms.PredefinedSplit([(df.loc[tr], df.loc[te])])
    a = ms.cross_validate(model, df, cv=pos)
    b = ms.cross_validate(model, None, cv=rows)
    np.testing.assert_array_equal(a["test_rmse"], b["test_rmse"])


# ---------------------------------------------------------------------- cross_validate
PARAMS = dict(n_factors=4, n_epochs=4, learning_rate=0.01, random_state=0)


@pytest.fixture(scope="module")
def ratings():
    return make_ratings(300, 200, 6000, rank=3, noise=0.3, random_state=9, as_frame=False)


def test_cross_validate_equals_folds_done_by_hand(ratings):
    model = MatrixFactorization(**PARAMS)
    res = ms.cross_validate(model, ratings, cv=ms.KFold(3, random_state=4),
                            metrics=("rmse", "mae", "ndcg@5", "recall@10"), return_models=True)
    assert set(res) == {"test_rmse", "test_mae", "test_ndcg@5", "test_recall@10", "fit_time",
                        "test_time", "models"}
    assert all(res[key].shape == (3,) for key in res if key != "models")
    assert (res["fit_time"] > 0).all() and (res["test_time"] > 0).all()
    assert not model.__sklearn_is_fitted__()  # the given model is never fitted
    for f, (tr, te) in enumerate(ms.KFold(3, random_state=4).split(ratings)):
        train = tuple(c[tr] for c in ratings)
        test = tuple(c[te] for c in ratings)
        m = MatrixFactorization(**PARAMS).fit(train)
        pred = m.predict(test)
        assert res["test_rmse"][f] == M.rmse(test[2], pred)
        assert res["test_mae"][f] == M.mae(test[2], pred)
        assert res["test_ndcg@5"][f] == M.ndcg_at_k(m, test, k=5, train=train)
        assert res["test_recall@10"][f] == M.recall_at_k(m, test, k=10, train=train)
        np.testing.assert_array_equal(res["models"][f].user_factors_, m.user_factors_)
    auc = ms.cross_validate(model, ratings, cv=ms.KFold(3, random_state=4), metrics=["auc"],
                            return_models=True)
    for f, (tr, te) in enumerate(ms.KFold(3, random_state=4).split(ratings)):
        train = tuple(c[tr] for c in ratings)
        test = tuple(c[te] for c in ratings)
        assert auc["test_auc"][f] == M.auc_score(auc["models"][f], test, train=train)
    assert 0.2 < res["test_rmse"].mean() < 1.0


def test_cross_validate_int_cv_predefined_callable_and_sklearn(ratings):
    model = MatrixFactorization(**PARAMS)
    a = ms.cross_validate(model, ratings, cv=3, random_state=7)
    b = ms.cross_validate(model, ratings, cv=ms.KFold(3, random_state=7))
    np.testing.assert_array_equal(a["test_rmse"], b["test_rmse"])
    assert set(a) == {"test_rmse", "test_mae", "fit_time", "test_time"}

    folds = [(tuple(c[tr] for c in ratings), tuple(c[te] for c in ratings))
             for tr, te in ms.KFold(2, random_state=1).split(ratings)]

    def max_error(y_true, y_pred):
        return float(np.max(np.abs(y_true - y_pred)))

    c = ms.cross_validate(model, None, cv=ms.PredefinedSplit(folds),
                          metrics=["rmse", max_error, "coverage@10"])
    d = ms.cross_validate(model, ratings, cv=ms.KFold(2, random_state=1),
                          metrics=["rmse", max_error, "coverage@10"])
    for key in ("test_rmse", "test_max_error", "test_coverage@10"):
        np.testing.assert_array_equal(c[key], d[key])
    assert (c["test_max_error"] >= c["test_rmse"]).all()
    assert ((0 < c["test_coverage@10"]) & (c["test_coverage@10"] <= 1)).all()

    sk = pytest.importorskip("sklearn.model_selection")
    e = ms.cross_validate(model, ratings, cv=sk.KFold(3, shuffle=True, random_state=0))
    assert e["test_rmse"].shape == (3,)


def test_cross_validate_dataframe(ratings):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"user": ratings[0], "item": ratings[1], "rating": ratings[2]})
    model = MatrixFactorization(**PARAMS)
    a = ms.cross_validate(model, df, cv=ms.KFold(3, random_state=2))
    b = ms.cross_validate(model, ratings, cv=ms.KFold(3, random_state=2))
    np.testing.assert_array_equal(a["test_mae"], b["test_mae"])


@pytest.mark.parametrize("kw,exc,msg", [
    (dict(metrics=("rmse", "gini")), ValueError, r"unknown metric 'gini'; .*'auc'"),
    (dict(metrics=("ndcg@0",)), ValueError, r"k must be >= 1"),
    (dict(metrics=("rmse", "rmse")), ValueError, r"duplicate names \['rmse'\]"),
    (dict(metrics=()), ValueError, r"metrics is empty"),
    (dict(metrics=5), TypeError, r"metrics must be a metric name, a callable or a "
                                 r"sequence of them, e.g. \('rmse', 'mae'\) .*; got 5"),
    (dict(metrics=("ndcg@5",), threshold=10**400), ValueError,
     r"threshold must be a finite number .*; got an int too large for float64"),
    (dict(cv=1), ValueError, r"cv must be an int >= 2; got 1"),
    (dict(cv="5"), TypeError, r"cv must be an int >= 2, a splitter"),
    (dict(return_models=1), TypeError, r"return_models must be True or False"),
])
def test_cross_validate_errors(ratings, kw, exc, msg):
    with pytest.raises(exc, match=msg):
        ms.cross_validate(MatrixFactorization(**PARAMS), ratings, **kw)


def test_a_fold_without_a_relevant_rating_is_nan_and_named():
    """One fold without a held-out rating >= threshold made the whole cross-validation
    fail, every fold's RMSE lost, with "no test rating is >= threshold" though the data
    had some (review 17). Its ranking metrics are NaN now, with a warning naming it; the
    other folds are computed as before; no relevant rating anywhere still raises."""
    from mfsgd.exceptions import UndefinedMetricWarning

    u, i, r = make_ratings(100, 60, 2000, random_state=0, as_frame=False)
    r = np.minimum(r, 3.0)  # nothing liked...
    r[[3, 900]] = 5.0  # ...but two rows  # two liked rows: at most two folds have a relevant item
    model = MatrixFactorization(n_factors=4, n_epochs=2, random_state=0)
    folds = list(ms.KFold(5, shuffle=True, random_state=0).split((u, i, r)))
    empty = [f for f, (_, te) in enumerate(folds) if not (r[te] >= 4).any()]
    assert 3 <= len(empty) <= 4
    with pytest.warns(UndefinedMetricWarning) as w:
        res = ms.cross_validate(model, (u, i, r), cv=folds, metrics=("rmse", "ndcg@10",
                                                                      "auc"))
    assert sorted(int(x.message.args[0].split()[1]) for x in w) == empty
    assert "(ndcg@10, auc)" in str(w[0].message)
    assert np.isfinite(res["test_rmse"]).all()
    assert np.flatnonzero(np.isnan(res["test_ndcg@10"])).tolist() == empty
    assert np.flatnonzero(np.isnan(res["test_auc"])).tolist() == empty
    for f in set(range(5)) - set(empty):  # the others as a fold done by hand
        tr, te = folds[f]
        m = MatrixFactorization(n_factors=4, n_epochs=2, random_state=0).fit(
            (u[tr], i[tr], r[tr]))
        want = M.ranking_metrics(m, (u[te], i[te], r[te]), k=10, train=(u[tr], i[tr]))
        assert res["test_ndcg@10"][f] == pytest.approx(want["ndcg"], abs=1e-12)
    with pytest.raises(ValueError, match="no rating is >= threshold 4.0, so no user has a "
                                         "relevant item to find in any fold"):
        ms.cross_validate(model, (u, i, np.minimum(r, 3.0)), cv=2, metrics=("ndcg@10",))


def test_an_undefined_auc_is_nan_for_its_fold_and_data_unused_by_the_folds_is_not_read():
    """A fold whose one relevant item no training row has leaves AUC undefined: it
    raised and aborted every fold (review 18); it is NaN with the warning now. Folds given
    as pairs (PredefinedSplit) do not use ``data``: its ratings decide nothing."""
    from mfsgd.exceptions import UndefinedMetricWarning

    u, i, r = make_ratings(40, 30, 600, random_state=0, as_frame=False)
    r = np.minimum(r, 3.0)
    u, i, r = np.append(u, 3), np.append(i, 999), np.append(r, 5.0)  # 999: only here
    model = MatrixFactorization(n_factors=4, n_epochs=2, random_state=0)
    with pytest.warns(UndefinedMetricWarning, match="so AUC is undefined. It is NaN"):
        res = ms.cross_validate(model, (u, i, r), cv=3, metrics=("rmse", "auc"),
                                random_state=1)
    assert np.isnan(res["test_auc"]).all() and np.isfinite(res["test_rmse"]).all()
    tr, te = (u[:400], i[:400], r[:400] + 2), (u[400:], i[400:], r[400:] + 2)
    got = ms.cross_validate(model, (u, i, r * 0 + 1), cv=ms.PredefinedSplit([(tr, te)]),
                            metrics=("ndcg@5",))
    assert np.isfinite(got["test_ndcg@5"]).all()


def test_cross_validate_refuses_rating_metrics_for_a_ranking_loss(ratings):
    model = MatrixFactorization(loss="bpr", **PARAMS)
    for metrics in (["rmse"], ("ndcg@5", "mae"), ("ndcg@5", M.rmse)):
        with pytest.raises(ValueError, match=r"a ranking loss \(loss='bpr'\) predicts scores, "
                                             r"not ratings; use ranking metrics such as"):
            ms.cross_validate(model, ratings, cv=2, metrics=metrics)
    res = ms.cross_validate(model, ratings, cv=2, metrics=("ndcg@5",))  # ranking: fine
    assert res["test_ndcg@5"].shape == (2,)


def test_cross_validate_picks_its_default_metrics_by_model(ratings):
    """Without ``metrics``, a model of ratings is scored by RMSE and MAE, a ranking loss
    and Popularity by their top-10 lists, as ``mfsgd evaluate`` does (a ranking model
    raised with the default ("rmse", "mae")). The lists equal the named metrics'."""
    from mfsgd import Popularity
    from mfsgd._cli import _RANKING_METRICS_DEFAULT

    top10 = ("ndcg@10", "hit_rate@10", "recall@10")
    assert _RANKING_METRICS_DEFAULT == ",".join(top10) and ms.RANKING_METRICS == top10
    for model, names in ((MatrixFactorization(**PARAMS), ("rmse", "mae")),
                         (MatrixFactorization(loss="bpr", **PARAMS), top10),
                         (Popularity(), top10)):
        got = ms.cross_validate(model, ratings, cv=2, random_state=0)
        assert sorted(got) == sorted([f"test_{n}" for n in names] + ["fit_time", "test_time"])
        named = ms.cross_validate(model, ratings, cv=2, random_state=0, metrics=names)
        for n in names:
            np.testing.assert_array_equal(got[f"test_{n}"], named[f"test_{n}"])


def test_cross_validate_checks_fold_indices(ratings):
    """Row positions beyond the data raise naming the fold; boolean masks are row
    selections like their np.flatnonzero."""
    model = MatrixFactorization(**PARAMS)
    n = ratings[0].size
    for bad, first in ((np.arange(n - 5, n + 5), n), (np.array([0, -1]), -1)):
        cv = ms.PredefinedSplit([(np.arange(10, n), np.arange(10)),
                                 (np.arange(10), bad)])
        with pytest.raises(ValueError, match=rf"cv fold 1: test index {first} is out of "
                                             rf"range for data of {n} rows \(row positions "
                                             rf"are 0 to {n - 1}\)"):
            ms.cross_validate(model, ratings, cv=cv)
    folds = list(ms.KFold(2, random_state=1).split(ratings))
    masks = []
    for tr, te in folds:
        mt, me = np.zeros(n, bool), np.zeros(n, bool)
        mt[tr], me[te] = True, True
        masks.append((mt, me))
    a = ms.cross_validate(model, ratings, cv=masks)
    b = ms.cross_validate(model, ratings, cv=folds)
    np.testing.assert_array_equal(a["test_rmse"], b["test_rmse"])
    with pytest.raises(ValueError, match=r"cv fold 0: the train mask has 10 entries but the "
                                         r"data has 6000 rows"):
        ms.cross_validate(model, ratings, cv=[(np.ones(10, bool), masks[0][1])])
    with pytest.raises(TypeError, match=r"cv fold 0: test is an array of row positions but "
                                        r"train is not"):
        ms.cross_validate(model, ratings, cv=[(ratings, folds[0][1])])
    # lists of ints are row positions too (no data form is a list of scalars)
    lists = [(tr.tolist(), te.tolist()) for tr, te in folds]
    c = ms.cross_validate(model, ratings, cv=lists)
    np.testing.assert_array_equal(c["test_rmse"], b["test_rmse"])
    with pytest.raises(ValueError, match=r"cv fold 0 must be a \(train, test\) pair; got "
                                         r"tuple of 3 items"):
        ms.cross_validate(model, ratings, cv=[(*folds[0], folds[0][0])])


def test_cross_validate_needs_an_estimator(ratings):
    with pytest.raises(TypeError, match=r"model must be an mfsgd estimator "
                                        r"\(MatrixFactorization or Popularity\) or an object "
                                        r"with the methods get_params, fit, predict; got "
                                        r"object, which has no get_params, fit, predict\."):
        ms.cross_validate(object(), ratings)
    with pytest.raises(TypeError, match=r"methods get_params, fit; got object"):
        ms.cross_validate(object(), ratings, metrics=("ndcg@5",))
    with pytest.raises(TypeError, match=r"got the class MatrixFactorization \(pass "
                                        r"MatrixFactorization\(\.\.\.\)\)"):
        ms.cross_validate(MatrixFactorization, ratings)


# ---------------------------------------------------------------------- implicit pairs
def test_cross_validate_on_pairs_counts_every_held_out_pair(ratings):
    """Data without ratings: the ranking metrics take every held-out pair as relevant
    (threshold is not applied), fold by fold equal to ranking_metrics by hand."""
    from mfsgd import Popularity

    pairs = ratings[:2]
    res = ms.cross_validate(Popularity(), pairs, cv=ms.KFold(3, random_state=5),
                            metrics=("ndcg@10", "recall@5", "coverage@10"))
    folds = list(ms.KFold(3, random_state=5).split(pairs))
    for f, (tr, te) in enumerate(folds):
        train, test = (pairs[0][tr], pairs[1][tr]), (pairs[0][te], pairs[1][te])
        pop = Popularity().fit(train)
        want = M.ranking_metrics(pop, test, k=10, threshold=None, train=train)
        assert res["test_ndcg@10"][f] == want["ndcg"]
        assert res["test_coverage@10"][f] == want["coverage"]
        assert res["test_recall@5"][f] == M.recall_at_k(pop, test, k=5, threshold=None,
                                                        train=train)
    assert (res["test_ndcg@10"] > 0).all()
    # an (n, 2) array gives the same folds and scores
    arr = ms.cross_validate(Popularity(), np.column_stack(pairs),
                            cv=ms.KFold(3, random_state=5), metrics=("ndcg@10",))
    np.testing.assert_array_equal(arr["test_ndcg@10"], res["test_ndcg@10"])
    # with ratings the threshold still applies: a different, smaller relevant set
    rated = ms.cross_validate(Popularity(), ratings, cv=ms.KFold(3, random_state=5),
                              metrics=("recall@5",))
    tr, te = folds[0]
    train = tuple(c[tr] for c in ratings)
    test = tuple(c[te] for c in ratings)
    assert rated["test_recall@5"][0] == M.recall_at_k(Popularity().fit(train), test, k=5,
                                                      threshold=4.0, train=train)
    assert rated["test_recall@5"][0] != res["test_recall@5"][0]


def test_cross_validate_ranking_k_beyond_int64(ratings):
    """A K NumPy cannot hold ranks every item, as any K beyond the catalogue does."""
    from mfsgd import Popularity

    huge, big = "9" * 20, "1000000"
    names = [f"{m}@{k}" for m in ("ndcg", "map", "recall") for k in (huge, big)]
    res = ms.cross_validate(Popularity(), ratings, cv=ms.KFold(2, random_state=3),
                            metrics=names)
    for m in ("ndcg", "map", "recall"):
        np.testing.assert_array_equal(res[f"test_{m}@{huge}"], res[f"test_{m}@{big}"])
    assert (res[f"test_ndcg@{huge}"] > 0).all()


def test_cross_validate_on_a_dataframe_without_ratings(ratings):
    pd = pytest.importorskip("pandas")
    from mfsgd import Popularity

    df = pd.DataFrame({"user": ratings[0], "item": ratings[1]})
    a = ms.cross_validate(Popularity(), df, cv=ms.KFold(3, random_state=2),
                          metrics=("map@10",))
    b = ms.cross_validate(Popularity(), ratings[:2], cv=ms.KFold(3, random_state=2),
                          metrics=("map@10",))
    np.testing.assert_array_equal(a["test_map@10"], b["test_map@10"])


def test_cross_validate_on_pairs_point_metrics_need_ratings(ratings):
    from mfsgd import Popularity

    def my_metric(y_true, y_pred):
        return float(np.mean(y_pred))

    with pytest.raises(ValueError, match=r"the test fold has no ratings; rmse, mae and "
                                         r"callables need them"):
        ms.cross_validate(Popularity(), ratings[:2], cv=2, metrics=("ndcg@5", my_metric))
    # with ratings, rmse would compare interaction counts with them
    with pytest.raises(ValueError, match=r"metrics \['rmse'\]: Popularity predicts "
                                         r"interaction counts, not ratings"):
        ms.cross_validate(Popularity(), ratings, cv=2, metrics=("ndcg@5", "rmse"))


def test_a_list_of_rows_as_lists_is_split_as_rows():
    """Review 20: the splitters read a list of rows given as lists as a list of columns
    (fit reads it as rows), cutting each row's three values apart; three such rows, which
    fit refuses as ambiguous, were split without a word."""
    rows = [[1, 10, 4.0], [2, 20, 3.0], [3, 30, 5.0], [4, 40, 1.0], [5, 50, 2.0]]
    train, test = ms.train_test_split(rows, test_size=1, random_state=0)
    assert len(train) == 4 and len(test) == 1
    assert sorted(map(list, train + test)) == rows  # whole rows, as tuples
    m = MatrixFactorization(n_factors=2, n_epochs=1).fit(train)
    assert len(m.user_ids_) == 4 and len(m.predict(test)) == 1
    with pytest.raises(ValueError, match=r"data is ambiguous: a list of 3 lists of 3 values"):
        ms.train_test_split(rows[:3], test_size=1, random_state=0)

