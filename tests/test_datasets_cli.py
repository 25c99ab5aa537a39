"""make_ratings and the fit callback (load_csv: test_load_csv.py; the command line:
test_cli.py)."""

import numpy as np
import pytest

from mfsgd.datasets import make_ratings


def test_make_ratings_shape_and_distinct_pairs():
    u, i, r = make_ratings(500, 300, 20_000, random_state=0, as_frame=False)
    assert len(u) == len(i) == len(r) == 20_000
    assert u.dtype == np.int32 and r.dtype == np.float32
    assert u.min() >= 0 and u.max() < 500 and i.max() < 300
    assert len(np.unique(u.astype(np.int64) * 300 + i)) == 20_000


def test_make_ratings_is_heavy_tailed_and_reproducible():
    u, i, r = make_ratings(5000, 2000, 200_000, random_state=1, as_frame=False)
    per_user = np.bincount(u, minlength=5000)
    per_item = np.bincount(i, minlength=2000)
    assert per_user.max() > 8 * np.median(per_user)
    assert per_item.max() > 20 * np.median(per_item)
    u2, i2, r2 = make_ratings(5000, 2000, 200_000, random_state=1, as_frame=False)
    np.testing.assert_array_equal(r, r2)


def test_make_ratings_truth_reproduces_ratings_up_to_noise():
    (u, i, r), t = make_ratings(200, 100, 5000, noise=0.0, random_state=2, as_frame=False,
                                return_truth=True)
    pred = t["mu"] + t["user_bias"][u] + t["item_bias"][i] + np.einsum(
        "ij,ij->i", t["user_factors"][u], t["item_factors"][i])
    np.testing.assert_allclose(pred, r, rtol=1e-5)


def test_make_ratings_dense_and_errors():
    u, i, r = make_ratings(10, 10, 100, random_state=0, as_frame=False)
    assert len(np.unique(u * 10 + i)) == 100
    with pytest.raises(ValueError, match="n_ratings must be at most"):
        make_ratings(10, 10, 101)


def test_make_ratings_frame():
    pd = pytest.importorskip("pandas")
    df = make_ratings(50, 40, 300, random_state=0)
    assert isinstance(df, pd.DataFrame) and list(df.columns) == ["user", "item", "rating"]


def test_fit_callback_sees_each_epoch_and_can_stop(small_data):
    from mfsgd import MatrixFactorization

    rows = []
    MatrixFactorization(n_factors=2, n_epochs=4, random_state=0).fit(small_data,
                                                                     callback=rows.append)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]

    def stop_after_two(row):
        if row["epoch"] == 2:
            raise RuntimeError("enough")

    m = MatrixFactorization(n_factors=2, n_epochs=9, random_state=0)
    with pytest.raises(RuntimeError, match="enough"):
        m.fit(small_data, callback=stop_after_two)
    assert m.n_epochs_ == 2


def test_make_ratings_refuses_a_noise_that_overflows():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning on the way
        with pytest.raises(ValueError, match=r"noise=1e\+300 makes ratings overflow float32"):
            make_ratings(10, 10, 20, noise=1e300, random_state=0)
        assert np.isfinite(make_ratings(10, 10, 20, noise=1e30, random_state=0,
                                        as_frame=False)[2]).all()


@pytest.mark.parametrize("kw,match", [
    ({"as_frame": "x"}, "as_frame must be True, False or 'auto'; got 'x'"),
    ({"as_frame": "no"}, "as_frame must be True, False or 'auto'; got 'no'"),
    ({"as_frame": None}, "as_frame must be True, False or 'auto'; got None"),
    ({"return_truth": "no"}, "return_truth must be True or False; got 'no'"),
    ({"return_truth": 1}, "return_truth must be True or False; got 1"),
])
def test_make_ratings_flags_must_be_booleans(kw, match):
    with pytest.raises(TypeError, match=match):
        make_ratings(10, 10, 20, **kw)


def test_make_ratings_refuses_more_unrated_users_or_items_than_the_bound(monkeypatch):
    """Every user and item costs memory, rated or not: n_users and n_items may exceed
    n_ratings only up to a bound (2**20; 100 here), checked before allocating."""
    import mfsgd.datasets as D

    monkeypatch.setattr(D, "_MAX_UNRATED", 100)
    assert len(make_ratings(100, 5, 10, random_state=0, as_frame=False)[0]) == 10
    assert len(make_ratings(5, 100, 10, random_state=0, as_frame=False)[0]) == 10
    assert len(make_ratings(300, 2, 300, random_state=0, as_frame=False)[0]) == 300
    with pytest.raises(ValueError, match=r"n_users must be at most max\(n_ratings, 100\) = 100:"
                                         r" .*; got 101\."):
        make_ratings(101, 5, 10)
    with pytest.raises(ValueError, match=r"n_items must be at most max\(n_ratings, 100\) = 300"):
        make_ratings(2, 301, 300)
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"n_users must be at most max\(n_ratings, 1048576\)"):
        make_ratings(2**31 - 1, 1, 5)  # refused before allocating anything


def test_make_ratings_bounds_rank_before_allocating():
    """The true factors are rank * (n_users + n_items) values: rank is bounded, alone and
    with the counts, before anything is drawn."""
    with pytest.raises(ValueError, match=r"rank must be an int from 1 to 65536; got 1000000000"):
        make_ratings(10, 10, 20, rank=10**9)
    with pytest.raises(ValueError, match=r"rank must be an int from 1 to 65536; got 4611686"):
        make_ratings(10, 10, 20, rank=2**62)
    with pytest.raises(ValueError, match=r"rank \* \(n_users \+ n_items\) must be at most "
                                         r"2147483648: .*; got rank=65536 with 40000 users and "
                                         r"items\. Lower rank\."):
        make_ratings(20000, 20000, 100, rank=65536)
    u, i, r = make_ratings(3, 4, 12, rank=65536, random_state=0, as_frame=False)
    assert len(r) == 12 and np.isfinite(r).all()
