"""Behaviour of the MatrixFactorization estimator."""

import pickle
import signal
import threading
import warnings

import numpy as np
import pytest
from reference import sgd_epoch_reference

import mfsgd
from mfsgd import (
    DivergenceError,
    MatrixFactorization,
    NotFittedError,
    TrainingInterrupted,
    _training,
)
from mfsgd.datasets import make_ratings


def rmse(model, data):
    u, i, r = data
    return float(np.sqrt(np.mean((model.predict((u, i)) - r) ** 2)))


def test_learns_low_rank_data_to_noise_level(lowrank):
    train, test, _ = lowrank
    m = MatrixFactorization(n_factors=10, n_epochs=60, learning_rate=0.02, reg_factors=0.05,
                            random_state=0).fit(train)
    hist = [h["train_rmse"] for h in m.history_]
    assert len(hist) == 60 and m.n_epochs_ == 60
    assert hist[0] > hist[10] > hist[20] > hist[-1] - 0.005  # falls, then plateaus
    assert hist[-1] < 0.3
    # noise is 0.25: a test RMSE near it means the low-rank structure was found
    baseline = MatrixFactorization(n_factors=1, n_epochs=1, learning_rate=1e-9,
                                   random_state=0).fit(train)
    assert rmse(m, test) < 0.30
    assert rmse(baseline, test) > 0.6


def test_float64_and_float32_agree(lowrank):
    train, test, _ = lowrank
    kw = dict(n_factors=5, n_epochs=10, learning_rate=0.01, random_state=1)
    m32 = MatrixFactorization(**kw).fit(train)
    m64 = MatrixFactorization(dtype=np.float64, **kw).fit(train)
    assert m32.user_factors_.dtype == np.float32 and m64.user_factors_.dtype == np.float64
    assert abs(rmse(m32, test) - rmse(m64, test)) < 1e-3


def test_same_seed_is_bit_identical_and_other_seed_differs(small_data):
    kw = dict(n_factors=8, n_epochs=5, random_state=42)
    a = MatrixFactorization(**kw).fit(small_data)
    b = MatrixFactorization(**kw).fit(small_data)
    c = MatrixFactorization(**{**kw, "random_state": 43}).fit(small_data)
    for name in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.user_factors_, c.user_factors_)


def test_threads_do_not_change_a_bit(small_data):
    kw = dict(n_factors=8, n_epochs=4, random_state=5, n_blocks=6)
    one = MatrixFactorization(n_threads=1, **kw).fit(small_data)
    two = MatrixFactorization(n_threads=2, **kw).fit(small_data)
    three = MatrixFactorization(n_threads=3, **kw).fit(small_data)
    for m in (two, three):
        np.testing.assert_array_equal(one.user_factors_, m.user_factors_)
        np.testing.assert_array_equal(one.item_bias_, m.item_bias_)
        assert [h["train_rmse"] for h in one.history_] == [h["train_rmse"] for h in m.history_]
    assert one.n_blocks_ == 6


def test_n_threads_minus_one_is_every_available_cpu(small_data, monkeypatch):
    """n_threads=-1 runs one thread per CPU the process may use (scikit-learn's n_jobs=-1
    habit), counted when the fit starts; with n_blocks fixed the model is the same as
    at any thread count. Other values below 1 are refused, naming -1."""
    from mfsgd import _config

    monkeypatch.setattr(_config, "available_cpus", lambda: 3)
    assert _config.make_config(MatrixFactorization(n_threads=-1).get_params()).n_threads == 3
    monkeypatch.setattr(_config, "available_cpus", lambda: 10**6)
    assert _config.make_config(MatrixFactorization(n_threads=-1).get_params()).n_threads \
        == _config.MAX_THREADS
    monkeypatch.undo()
    kw = dict(n_factors=8, n_epochs=3, random_state=5, n_blocks=4)
    every = MatrixFactorization(n_threads=-1, **kw).fit(small_data)
    one = MatrixFactorization(n_threads=1, **kw).fit(small_data)
    np.testing.assert_array_equal(every.user_factors_, one.user_factors_)
    assert every.get_params()["n_threads"] == -1
    for bad in (0, -2):
        with pytest.raises(ValueError, match=r"n_threads must be an int from 1 to \d+, or -1 "
                                             r"\(every available CPU\); got " + str(bad)):
            MatrixFactorization(n_threads=bad).fit(small_data)
    assert _config.available_cpus() >= 1


def test_shuffle_false_single_block_keeps_the_given_order(small_data):
    """One epoch without shuffling equals the NumPy reference over the given order,
    starting from the documented initialisation (factors N(0, init_std) drawn users
    first, then items, from default_rng(random_state); biases 0)."""
    u, i, r = small_data
    m = MatrixFactorization(n_factors=4, n_epochs=1, shuffle=False, n_blocks=1,
                            dtype=np.float64, random_state=3).fit((u, i, r))
    rng = np.random.default_rng(3)
    uid, uidx = np.unique(u, return_inverse=True)
    iid, iidx = np.unique(i, return_inverse=True)
    P = rng.normal(0, 0.1, (len(uid), 4))
    Q = rng.normal(0, 0.1, (len(iid), 4))
    ref = sgd_epoch_reference(uidx, iidx, r.astype(np.float64), P, Q, np.zeros(len(uid)),
                              np.zeros(len(iid)), float(np.mean(r, dtype=np.float64)), 0.005,
                              0.02, 0.02)
    np.testing.assert_allclose(m.user_factors_, ref[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(m.item_bias_, ref[3], rtol=1e-12, atol=1e-14)
    assert m.history_[0]["train_rmse"] == pytest.approx(np.sqrt(ref[4] / len(r)), rel=1e-12)


def test_blocked_schedule_learns_like_full_shuffle(lowrank):
    train, test, _ = lowrank
    kw = dict(n_factors=10, n_epochs=30, learning_rate=0.02, reg_factors=0.05, random_state=0)
    full = rmse(MatrixFactorization(n_blocks=1, **kw).fit(train), test)
    blocked = rmse(MatrixFactorization(n_blocks=8, **kw).fit(train), test)
    assert abs(full - blocked) < 0.02


def test_input_forms_agree(small_data):
    pd = pytest.importorskip("pandas")
    u, i, r = small_data
    kw = dict(n_factors=4, n_epochs=2, random_state=0)
    ref = MatrixFactorization(**kw).fit((u, i, r)).user_factors_
    forms = [
        pd.DataFrame({"user": u, "item": i, "rating": r}),
        {"user": u, "item": i, "rating": r},
        (list(u), list(i), list(r)),
    ]
    for X in forms:
        np.testing.assert_array_equal(MatrixFactorization(**kw).fit(X).user_factors_, ref)
    np.testing.assert_array_equal(
        MatrixFactorization(**kw).fit(np.column_stack([u, i]), r).user_factors_, ref)
    df = pd.DataFrame({"uid": u, "iid": i, "stars": r})
    m = MatrixFactorization(user_col="uid", item_col="iid", rating_col="stars", **kw).fit(df)
    np.testing.assert_array_equal(m.user_factors_, ref)
    np.testing.assert_array_equal(m.predict(df), m.predict((u, i)))


def test_string_and_label_ids(small_data):
    u, i, r = small_data
    su = np.array([f"user-{x:06d}" for x in u])  # sorts like the ints: same rows, same model
    big = u.astype(np.int64) * 10**15 - 7 * 10**17  # negative and huge ids are labels
    kw = dict(n_factors=4, n_epochs=3, random_state=0)
    a = MatrixFactorization(**kw).fit((u, i, r))
    b = MatrixFactorization(**kw).fit((su, i, r))
    c = MatrixFactorization(**kw).fit((big, i, r))
    assert b.user_ids_.dtype.kind == "U"
    np.testing.assert_array_equal(a.predict((u, i)), b.predict((su, i)))
    np.testing.assert_array_equal(a.predict((u, i)), c.predict((big, i)))
    assert b.predict((["user-000000", "nobody"], [i[0], i[0]])).shape == (2,)


def test_unknown_users_and_items_fall_back_to_biases(small_data):
    u, i, r = small_data
    m = MatrixFactorization(n_factors=4, n_epochs=3, random_state=0, clip=False).fit((u, i, r))
    k_user, k_item = m.user_ids_[0], m.item_ids_[0]
    pred = m.predict(([k_user, 10**9, k_user, 10**9], [k_item, k_item, 10**9, 10**9]))
    mu, bu, bi = m.global_mean_, m.user_bias_[0], m.item_bias_[0]
    full = mu + bu + bi + m.user_factors_[0] @ m.item_factors_[0]
    np.testing.assert_allclose(pred, [full, mu + bi, mu + bu, mu], rtol=1e-6)


def test_clip_to_training_range(small_data):
    u, i, r = small_data
    m = MatrixFactorization(n_factors=4, n_epochs=3, random_state=0).fit((u, i, r))
    p = m.predict((u, i))
    assert p.min() >= r.min() and p.max() <= r.max()
    assert m.rating_range_ == (float(r.min()), float(r.max()))


def test_history_with_eval_set(lowrank):
    train, test, _ = lowrank
    m = MatrixFactorization(n_factors=5, n_epochs=4, random_state=0).fit(train, eval_set=test)
    assert [h["epoch"] for h in m.history_] == [1, 2, 3, 4]
    assert m.history_[-1]["val_rmse"] == pytest.approx(rmse(m, test), rel=1e-9)
    assert all(h["seconds"] >= 0 and h["learning_rate"] == 0.005 for h in m.history_)
    # sklearn-style (X_val, y_val) with X_val an (n, 2) array
    Xv = np.column_stack(test[:2])
    m2 = MatrixFactorization(n_factors=5, n_epochs=4, random_state=0).fit(
        train, eval_set=(Xv, test[2]))
    assert m2.history_[-1]["val_rmse"] == m.history_[-1]["val_rmse"]


@pytest.mark.parametrize("biased", [True, False])
def test_val_rmse_predicts_unknown_ids_as_predict_does(lowrank, biased):
    """Validation pairs of users or items the fit never saw are scored as ``predict``
    scores them: the known terms, or the global mean in a model without biases (review
    22: history_ predicted 0 there, 3.64 against predict's 0.96)."""
    train, test, _ = lowrank
    u, i, r = (np.array(a, copy=True) for a in test)
    u[:300] += 10**6
    i[300:600] += 10**6
    m = MatrixFactorization(n_factors=5, n_epochs=3, biased=biased, random_state=0)
    m.fit(train, eval_set=(u, i, r))
    got = m.history_[-1]["val_rmse"]
    assert got == pytest.approx(float(np.sqrt(np.mean((m.predict((u, i)) - r) ** 2))),
                                rel=1e-9)


def test_early_stopping_restores_best_epoch(lowrank):
    train, test, _ = lowrank
    # Big factors, no regularisation and a high rate overfit: validation RMSE turns up.
    m = MatrixFactorization(n_factors=60, n_epochs=80, learning_rate=0.05, reg_factors=0.0,
                            reg_bias=0.0, early_stopping=True, n_iter_no_change=3,
                            random_state=0).fit(train, eval_set=test)
    vals = [h["val_rmse"] for h in m.history_]
    assert m.n_epochs_ < 80
    assert m.best_epoch_ == int(np.argmin(vals)) + 1
    assert m.n_epochs_ == m.best_epoch_ + 3
    assert rmse(m, test) == pytest.approx(min(vals), rel=1e-9)


def test_early_stopping_holds_out_validation_fraction(lowrank):
    train, _, _ = lowrank
    m = MatrixFactorization(n_factors=5, n_epochs=5, early_stopping=True,
                            validation_fraction=0.2, random_state=0).fit(train)
    assert all("val_rmse" in h for h in m.history_)
    assert m.global_mean_ != pytest.approx(float(np.mean(train[2], dtype=np.float64)), abs=0)


@pytest.mark.parametrize("loss", ["squared", "bpr"])
def test_early_stopping_hold_out_leaves_every_user_and_item_a_training_row(lowrank, loss):
    """A user (or item) whose every row the validation_fraction hold-out took kept its
    random initial row, untrained, while counting as known (review 22). The hold-out now
    gives the first such row back: every user and item trains, and the rest still
    validates."""
    from mfsgd import _training as T

    (u, i, r), _, _ = lowrank
    rng = np.random.default_rng(5)
    lone_u = np.arange(10**6, 10**6 + 300)  # 300 users of one rating each
    lone_i = 10**6 + np.arange(300)  # and 300 items of one rating each
    uu = np.r_[u, lone_u, rng.choice(u, 300)]
    ii = np.r_[i, rng.choice(i, 300), lone_i]
    rr = np.r_[r, rng.uniform(1, 5, 600)]
    seen = {}
    real = T.keep_one_each

    def spy(in_va, users, items, n_users, n_items, what):
        out = real(in_va, users, items, n_users, n_items, what)
        seen["users"] = np.bincount(users[~out], minlength=n_users)
        seen["items"] = np.bincount(items[~out], minlength=n_items)
        seen["held"] = int(out.sum())
        return out

    T.keep_one_each = spy
    try:
        X = (uu, ii, rr) if loss == "squared" else (uu, ii)
        m = MatrixFactorization(loss=loss, n_factors=4, n_epochs=2, early_stopping=True,
                                validation_fraction=0.2, random_state=0).fit(X)
    finally:
        T.keep_one_each = real
    assert (seen["users"] > 0).all() and (seen["items"] > 0).all()
    assert seen["held"] > 0.15 * (len(np.unique(uu * 10**7 + ii)) if loss != "squared"
                                  else uu.size)
    if loss == "squared":  # every user's bias moved: each was trained
        assert (m.user_bias_ != 0).all() and (m.item_bias_ != 0).all()


def test_early_stopping_refuses_a_hold_out_of_only_last_rows():
    """Every rating is its user's and its item's only one: giving each back leaves no
    validation rating, which is refused with what to do instead."""
    n = 2000
    X = (np.arange(n), np.arange(n), np.linspace(1, 5, n))
    with pytest.raises(ValueError, match="nothing is left to validate on; pass eval_set"):
        MatrixFactorization(n_epochs=2, early_stopping=True).fit(X)


def test_lr_decay_schedule(small_data):
    m = MatrixFactorization(n_factors=4, n_epochs=3, learning_rate=0.01, lr_decay=1.0,
                            random_state=0).fit(small_data)
    assert [h["learning_rate"] for h in m.history_] == pytest.approx([0.01, 0.005, 0.01 / 3])


def test_divergence_restores_last_finite_epoch(small_data):
    u, i, r = small_data
    rr = r * 1e18  # finite data whose squared errors overflow float32 from epoch 1
    m = MatrixFactorization(n_factors=4, n_epochs=5, random_state=0).fit(small_data)
    before = m.user_factors_.copy()
    with pytest.raises(DivergenceError, match=r"learning_rate .*model is unchanged"):
        m.fit((u, i, rr))
    np.testing.assert_array_equal(m.user_factors_, before)  # last good model kept
    # A rate that explodes after a few epochs keeps the last finite epoch.
    m2 = MatrixFactorization(n_factors=30, n_epochs=50, learning_rate=1.5, init_std=1.0,
                             random_state=0)
    with pytest.raises(DivergenceError, match=r"diverged in epoch \d+.*learning_rate \(now 1.5\)"):
        m2.fit(small_data)
    if m2.__sklearn_is_fitted__():
        assert np.isfinite(m2.user_factors_).all() and m2.n_epochs_ == len(m2.history_)


def test_partial_fit_continues_and_grows(small_data):
    u, i, r = small_data
    m = MatrixFactorization(n_factors=4, n_epochs=3, random_state=0).fit((u, i, r))
    nu, ni = len(m.user_ids_), len(m.item_ids_)
    m.partial_fit((u, i, r), n_epochs=2)
    assert m.n_epochs_ == 5 and [h["epoch"] for h in m.history_] == [1, 2, 3, 4, 5]
    m.partial_fit(([10**6, u[0]], ["x" and 10**6 + 1, i[0]], [4.0, 3.0]))
    assert len(m.user_ids_) == nu + 1 and len(m.item_ids_) == ni + 1
    assert m.user_factors_.shape == (nu + 1, 4)
    p = m.predict(([10**6], [10**6 + 1]))
    assert np.isfinite(p).all()
    # unfitted: partial_fit fits
    m2 = MatrixFactorization(n_factors=4, random_state=0).partial_fit((u, i, r), n_epochs=2)
    assert m2.n_epochs_ == 2 and m2.n_epochs is None  # unchanged: None = the loss default


@pytest.mark.parametrize("biased", [False, True])
def test_partial_fit_refuses_a_changed_biased(small_data, biased):
    # biased is part of the fitted model: switching it between fit and partial_fit used
    # to train the biases without mu, or freeze them while predict still added them
    m = MatrixFactorization(n_factors=4, n_epochs=2, biased=biased, random_state=0)
    m.fit(small_data)
    before = {a: np.copy(getattr(m, a)) for a in
              ("user_factors_", "item_factors_", "user_bias_", "item_bias_")}
    mu, n_epochs, pred = m.global_mean_, m.n_epochs_, m.predict(small_data)
    m.set_params(biased=not biased)
    with pytest.raises(ValueError, match=rf"biased is {not biased} but the fitted model was "
                       rf"trained with biased={biased}; call fit to start over"):
        m.partial_fit(small_data, n_epochs=2)
    for a, v in before.items():
        np.testing.assert_array_equal(getattr(m, a), v)
    assert m.global_mean_ == mu and m.n_epochs_ == n_epochs
    np.testing.assert_array_equal(m.predict(small_data), pred)
    # fit starts over with the new setting; a training-only setting such as
    # nonnegative may change between fits and applies to the epochs that follow
    m.fit(small_data)
    m.set_params(nonnegative=True).partial_fit(small_data)
    assert m.user_factors_.min() >= 0 and m.item_factors_.min() >= 0


def test_partial_fit_warns_when_ratings_widen_the_rating_range(small_data):
    """One rating off the scale widens the clipping range for good: said, at the caller's
    line, once the update is kept; ratings inside the range, or an update that is not
    kept, say nothing."""
    u, i, r = small_data
    m = MatrixFactorization(n_factors=4, n_epochs=2, random_state=0).fit(small_data)
    lo, hi = m.rating_range_
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.partial_fit((u[:5], i[:5], np.clip(r[:5], lo, hi)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DivergenceError):  # diverges in its first epoch: nothing kept
            m.set_params(learning_rate=1e30).partial_fit((u[:3], i[:3], [lo, 50.0, hi]))
    assert m.rating_range_ == (lo, hi)
    m.set_params(learning_rate=None)
    with pytest.warns(UserWarning, match=rf"partial_fit widened the model's rating range from "
                      rf"\({lo:g}, {hi:g}\) to \({lo:g}, 50\)") as rec:
        m.partial_fit((u[:3], i[:3], [lo, 50.0, hi]))
    assert rec[0].filename == __file__
    assert m.rating_range_ == (lo, 50.0)


def test_partial_fit_is_deterministic(small_data):
    a = MatrixFactorization(n_factors=4, n_epochs=2, random_state=9).fit(small_data)
    b = MatrixFactorization(n_factors=4, n_epochs=2, random_state=9).fit(small_data)
    a.partial_fit(small_data, n_epochs=2)
    b.partial_fit(small_data, n_epochs=2)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_partial_fit_continues_adagrad_where_fit_left_it(small_data, tmp_path, dtype):
    """With adagrad, partial_fit takes up each row's accumulator where the fit left it
    (it used to restart them at 1: every step back at the base rate). In the given order
    (shuffle=False, one block), 2 epochs of fit then 1 of partial_fit are 3 epochs of
    fit, to the bit; also when the model was saved and loaded in between."""
    kw = dict(n_factors=4, shuffle=False, n_blocks=1, learning_rate=0.05, adagrad=True,
              random_state=0, dtype=dtype)
    whole = MatrixFactorization(n_epochs=3, **kw).fit(small_data)
    first = MatrixFactorization(n_epochs=2, **kw).fit(small_data)
    first.save(tmp_path / "m")
    loaded = mfsgd.load(tmp_path / "m")
    for m in (first, loaded):
        m.partial_fit(small_data, n_epochs=1)
        for a in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
            np.testing.assert_array_equal(getattr(m, a), getattr(whole, a))
    # without adagrad nothing is kept, and the same holds
    plain = dict(kw, adagrad=False)
    a = MatrixFactorization(n_epochs=3, **plain).fit(small_data)
    b = MatrixFactorization(n_epochs=2, **plain).fit(small_data).partial_fit(small_data)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    assert b._state.user_accum is None


def test_adagrad_rows_added_later_start_at_one(small_data, tmp_path):
    """Rows that fold_in or partial_fit add, and rows that fold_in recomputes, get the
    accumulator of a new row (1); the others keep theirs, through save and load."""
    u, i, r = small_data
    m = MatrixFactorization(n_factors=4, n_epochs=2, adagrad=True, random_state=0)
    m.fit(small_data)
    gu, gi = m._state.accumulators()
    assert gu.min() > 1 and gi.min() > 1  # every row was updated
    m.fold_in(([10**6, 10**6], [i[0], i[1]], [4.0, 2.0]))
    known = int(np.flatnonzero(m.user_ids_ == u[0])[0])
    m.fold_in(([u[0]], [i[0]], [3.0]))  # a known user, solved afresh
    gu[known] = 1
    m.fold_in(([u[0]], [10**7], [3.0]), side="item")  # a new item
    m.save(tmp_path / "m")
    loaded = mfsgd.load(tmp_path / "m")
    for st in (m._state, loaded._state):
        lu, li = st.accumulators()
        np.testing.assert_array_equal(lu, np.append(gu, 1))
        np.testing.assert_array_equal(li, np.append(gi, 1))
    gi = np.append(gi, 1)
    m.partial_fit(([10**6 + 1], [10**6 + 2], [3.0]), n_epochs=1)
    lu, li = m._state.accumulators()
    assert lu.shape == (len(gu) + 2,) and li.shape == (len(gi) + 1,)
    np.testing.assert_array_equal(lu[:len(gu)], gu)  # rows without ratings here: untouched
    assert lu[-1] > 1 and li[-1] > 1 and lu[-2] == 1  # the new rows started at 1


def test_unbiased_and_nonnegative_variants(small_data):
    u, i, r = small_data
    pmf = MatrixFactorization(n_factors=6, n_epochs=10, biased=False, learning_rate=0.01,
                              init_std=0.5, random_state=0).fit(small_data)
    assert np.all(pmf.user_bias_ == 0) and np.all(pmf.item_bias_ == 0)
    assert pmf.predict(([10**9], [i[0]]))[0] == pytest.approx(float(np.mean(r)), rel=1e-6)
    nmf = MatrixFactorization(n_factors=6, n_epochs=10, nonnegative=True,
                              random_state=0).fit(small_data)
    assert nmf.user_factors_.min() >= 0 and nmf.item_factors_.min() >= 0


def test_get_set_params_roundtrip():
    m = MatrixFactorization(n_factors=7, learning_rate=0.1)
    params = m.get_params()
    assert params["n_factors"] == 7 and params["dtype"] is np.float32
    clone = MatrixFactorization(**params)
    assert clone.get_params() == params
    assert m.set_params(n_epochs=3) is m and m.n_epochs == 3
    with pytest.raises(ValueError, match="Invalid parameter 'n_factor'"):
        m.set_params(n_factor=3)
    assert "n_factors=7" in repr(m) and "n_epochs=3" in repr(m)


def test_sklearn_clone_and_grid_search(small_data):
    sklearn = pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV

    u, i, r = small_data
    m = MatrixFactorization(n_factors=3, n_epochs=2, random_state=0)
    c = clone(m)
    assert c.get_params() == m.get_params() and c is not m
    X = np.column_stack([u, i])
    gs = GridSearchCV(m, {"n_factors": [2, 4]}, scoring="neg_root_mean_squared_error", cv=3)
    gs.fit(X, r)
    assert gs.best_params_["n_factors"] in (2, 4)
    assert sklearn.__version__


def test_grid_search_on_a_two_column_dataframe_with_shuffled_folds():
    """The guide's GridSearchCV recipe: X = df[["userId", "movieId"]] (names other than
    user_col/item_col) is read as (user, item); on a user-sorted frame, shuffled KFold
    gives warm-start folds where the unshuffled default gives cold-start ones."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("sklearn")
    from sklearn.model_selection import GridSearchCV, KFold

    u, i, r = make_ratings(300, 200, 9000, rank=3, noise=0.3, random_state=5, as_frame=False)
    df = pd.DataFrame({"userId": u, "movieId": i, "rating": r}).sort_values("userId")
    X, y = df[["userId", "movieId"]], df["rating"]
    grid = {"n_factors": [4], "n_epochs": [15], "learning_rate": [0.02], "random_state": [0]}
    shuffled = GridSearchCV(MatrixFactorization(), grid, scoring="neg_root_mean_squared_error",
                            cv=KFold(3, shuffle=True, random_state=0)).fit(X, y)
    unshuffled = GridSearchCV(MatrixFactorization(), grid,
                              scoring="neg_root_mean_squared_error", cv=3).fit(X, y)
    assert np.isfinite(shuffled.best_score_)
    assert -shuffled.best_score_ < -unshuffled.best_score_ - 0.02  # cold start is worse
    m = MatrixFactorization(n_factors=2, n_epochs=1).fit(X, y)
    assert set(m.user_ids_) == set(u) and set(m.item_ids_) == set(i)
    # userId and movieId are recognised (the usual names), a rating column named "r" is
    # not guessed at
    with pytest.raises(ValueError, match="X has no ratings: pass a 'rating' column"):
        MatrixFactorization(n_epochs=1).fit(df.rename(columns={"rating": "r"}))
    with pytest.raises(ValueError, match="has no column 'user'"):
        MatrixFactorization(n_epochs=1).fit(df.rename(columns={"userId": "a", "rating": "r"}))


def test_not_fitted_errors():
    m = MatrixFactorization()
    with pytest.raises(NotFittedError, match="not fitted yet; call fit before predict"):
        m.predict(([1], [2]))
    with pytest.raises(NotFittedError, match="not fitted yet; call fit before save"):
        m.save("never.mfsgd")
    with pytest.raises(NotFittedError, match="no user_factors_"):
        m.user_factors_  # noqa: B018
    assert not hasattr(m, "history_")


def test_pickle_roundtrip(small_data):
    m = MatrixFactorization(n_factors=4, n_epochs=2, random_state=0).fit(small_data)
    m2 = pickle.loads(pickle.dumps(m))
    u, i, _ = small_data
    np.testing.assert_array_equal(m.predict((u, i)), m2.predict((u, i)))
    m2.fit(small_data)  # the lock was recreated


def test_interrupt_keeps_last_completed_epoch(small_data, monkeypatch):
    calls = {"n": 0}
    real = _training.EpochRunner.run_epoch

    def flaky(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(_training.EpochRunner, "run_epoch", flaky)
    m = MatrixFactorization(n_factors=4, n_epochs=10, random_state=0)
    with pytest.warns(TrainingInterrupted, match="keeps epoch 2"):
        with pytest.raises(KeyboardInterrupt):
            m.fit(small_data)
    assert m.n_epochs_ == 2 and len(m.history_) == 2
    # the kept state is epoch 2 exactly: same as a 2-epoch fit
    monkeypatch.setattr(_training.EpochRunner, "run_epoch", real)
    ref = MatrixFactorization(n_factors=4, n_epochs=2, random_state=0).fit(small_data)
    np.testing.assert_array_equal(m.user_factors_, ref.user_factors_)


def test_real_ctrl_c_during_fit(tmp_path, monkeypatch):
    """A real SIGINT (interrupt_main) while the kernel runs in worker threads."""
    import _thread

    from mfsgd.datasets import make_ratings

    data = make_ratings(20_000, 5_000, 2_000_000, random_state=0, as_frame=False)
    m = MatrixFactorization(n_factors=64, n_epochs=1000, n_threads=2, random_state=0)
    # interrupt_main does nothing unless Python's own SIGINT handler is installed, and
    # Python does not install it when it starts with SIGINT ignored, as a shell does for
    # a background job (`.ci/run &`): the test failed that way once. Install it here.
    old_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    # The clock starts with the first epoch. A timer started before fit once fired while
    # the 2 M ratings were still being laid out (0.3-0.6 s, over 1.5 s on a loaded
    # machine): 1 failure in 5 runs of the suite, as the warning then said "before its
    # first epoch" (and before that change, nothing).
    timer = threading.Timer(0.5, _thread.interrupt_main)
    real = _training.EpochRunner.run_epoch

    def run_epoch(self, *a, **k):
        if timer.ident is None:  # not started yet
            timer.start()
        return real(self, *a, **k)

    monkeypatch.setattr(_training.EpochRunner, "run_epoch", run_epoch)
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            with pytest.raises(KeyboardInterrupt):
                m.fit(data)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, old_handler)
    assert m.n_epochs_ < 1000 if m.__sklearn_is_fitted__() else True
    assert any(issubclass(x.category, TrainingInterrupted) for x in w)
    if m.__sklearn_is_fitted__():
        assert np.isfinite(m.user_factors_).all()
        m.save(tmp_path / "after-interrupt.mfsgd")
        assert mfsgd.load(tmp_path / "after-interrupt.mfsgd").n_epochs_ == m.n_epochs_


def test_concurrent_fits_on_one_model_are_serialised(small_data):
    m = MatrixFactorization(n_factors=4, n_epochs=3, random_state=0)
    errors = []

    def go():
        try:
            m.fit(small_data)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=go) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors
    ref = MatrixFactorization(n_factors=4, n_epochs=3, random_state=0).fit(small_data)
    np.testing.assert_array_equal(m.user_factors_, ref.user_factors_)


def test_models_in_parallel_threads_match_sequential(small_data):
    seeds = range(6)
    seq = [MatrixFactorization(n_factors=4, n_epochs=3, random_state=s).fit(small_data)
           for s in seeds]
    par = [MatrixFactorization(n_factors=4, n_epochs=3, random_state=s) for s in seeds]
    ts = [threading.Thread(target=m.fit, args=(small_data,)) for m in par]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for a, b in zip(seq, par, strict=True):
        np.testing.assert_array_equal(a.user_factors_, b.user_factors_)


def test_show_config(capsys):
    from mfsgd import _sgd

    cfg = mfsgd.show_config()
    assert "kernel:" in capsys.readouterr().out
    before = _sgd.isa_current()
    try:
        # Automatic choice: every variant it names is one this CPU runs.
        _sgd.isa_select(_sgd.ISA_AUTO)
        cfg = mfsgd.show_config()
        assert cfg["kernel"].startswith("auto: ")
        for w in (16, 64, 256, 512):
            assert _sgd.isa_name(_sgd.isa_for(w)) in cfg["available"]
        assert _sgd.isa_for(_sgd.AVX512_MIN_ROW_BYTES) >= _sgd.isa_for(64)
        # A forced variant is reported as such and used for every width.
        _sgd.isa_select(_sgd.ISA_BASELINE)
        assert mfsgd.show_config()["kernel"] == cfg["available"][0]
        assert {_sgd.isa_for(w) for w in (64, 256, 512)} == {_sgd.ISA_BASELINE}
    finally:
        _sgd.isa_select(before)


def test_ranking_kernels_in_float32_take_avx2_up_to_their_widths():
    """Under the automatic choice the float32 ranking kernel runs AVX2 (when the CPU has
    it) for rows up to 512 bytes with WARP and 256 with bpr, the width rule beyond and
    for softmax; a forced variant wins. The model is then the one AVX2 gives, bit for
    bit."""
    from mfsgd import _sgd

    before = _sgd.isa_current()
    L = _sgd.LOSSES
    try:
        _sgd.isa_select(_sgd.ISA_AUTO)
        has_avx2 = _sgd.ISA_AVX2 in mfsgd._kernels.available()
        for loss, lim in (("warp", _sgd.RANK_AVX2_MAX_ROW_BYTES_WARP),
                          ("bpr", _sgd.RANK_AVX2_MAX_ROW_BYTES_BPR), ("softmax", 0)):
            for w in (64, 128, 256, 512, 1024, 4096):
                want = _sgd.ISA_AVX2 if has_avx2 and w <= lim else _sgd.isa_for(w)
                assert _sgd.rank_isa_f32(w, L[loss]) == want, (loss, w)
        assert (_sgd.RANK_AVX2_MAX_ROW_BYTES_WARP, _sgd.RANK_AVX2_MAX_ROW_BYTES_BPR) == (512, 256)
        u, i, _ = make_ratings(200, 150, 5000, random_state=0, as_frame=False)
        kw = dict(loss="warp", n_factors=100, n_epochs=2, random_state=0)  # 400-byte rows
        auto = MatrixFactorization(**kw).fit((u, i))
        _sgd.isa_select(_sgd.ISA_BASELINE)
        assert {_sgd.rank_isa_f32(w, L["warp"]) for w in (64, 512)} == {_sgd.ISA_BASELINE}
        if has_avx2:
            _sgd.isa_select(_sgd.ISA_AVX2)
            forced = MatrixFactorization(**kw).fit((u, i))
            np.testing.assert_array_equal(auto.item_factors_, forced.item_factors_)
    finally:
        _sgd.isa_select(before)


def test_adagrad_learns_and_is_deterministic(lowrank):
    train, test, _ = lowrank
    kw = dict(n_factors=10, n_epochs=20, learning_rate=0.1, adagrad=True, reg_factors=0.05,
              random_state=0)
    a = MatrixFactorization(**kw).fit(train)
    b = MatrixFactorization(n_threads=2, n_blocks=1, **kw).fit(train)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    assert rmse(a, test) < 0.35
    constant = MatrixFactorization(**{**kw, "adagrad": False}).fit(train)
    assert not np.array_equal(a.user_factors_, constant.user_factors_)


@pytest.mark.parametrize("loss", ["squared", "bpr", "warp", "softmax"])
def test_adagrad_float32_and_float64_train_alike_whatever_their_padding(small_data, loss):
    """float32 rows are padded to 16 values and float64 rows to 8, so at n_factors=3 the
    two models store rows of different widths. AdaGrad's rate must not see that: the two
    fits agree to float32 rounding (review 21: they differed by 0.09-0.55, because each
    accumulator grew by the mean over the padded width)."""
    u, i, r = small_data
    X = (u, i, r) if loss == "squared" else (u, i)
    kw = dict(loss=loss, n_factors=3, n_epochs=5, adagrad=True, shuffle=False, n_blocks=1,
              random_state=0)
    a, b = (MatrixFactorization(dtype=dt, **kw).fit(X) for dt in ("float32", "float64"))
    assert a._state.user_factors.shape[1] != b._state.user_factors.shape[1]
    pairs = (u[:500], i[:500])
    np.testing.assert_allclose(a.predict(pairs), b.predict(pairs), rtol=0, atol=2e-4)


@pytest.mark.parametrize("k", [5, 16, 64])
def test_trained_factor_rows_start_on_cache_lines(small_data, k):
    """fit and partial_fit train on 64-byte-aligned arrays with rows padded to whole
    lines (the kernel's fixed-width variant); the padding stays zero, and fitting from the
    same seed gives the same model as before the layout and init were reordered (the
    init is drawn after the layout copy, in chunks, with the same numbers)."""
    u, i, r = small_data
    m = MatrixFactorization(n_factors=k, n_epochs=2, random_state=3).fit((u, i, r))
    for a in (m._state.user_factors, m._state.item_factors):
        assert a.ctypes.data % 64 == 0 and (a.shape[1] * a.itemsize) % 64 == 0
        assert not a[:, k:].any()
    m.partial_fit((np.array([10_000, 10_001]), np.array([0, 10_002]), np.array([3.0, 4.0])))
    for a in (m._state.user_factors, m._state.item_factors):
        assert a.ctypes.data % 64 == 0
        assert not a[:, k:].any()
    # The initial rows are those of one n x k draw from the seeded generator.
    m0 = MatrixFactorization(n_factors=k, n_epochs=1, learning_rate=1e-30, reg_factors=0.0,
                             reg_bias=0.0, random_state=3, shuffle=False).fit((u, i, r))
    rng = np.random.default_rng(m0.random_state)
    want = rng.normal(0.0, m0._config().init_std, size=(len(m0._state.user_map), k))
    np.testing.assert_allclose(m0.user_factors_, want.astype(np.float32), rtol=1e-6)


@pytest.mark.parametrize("loss", ["squared", "warp"])
def test_loaded_and_ranking_models_train_on_aligned_rows(small_data, loss, tmp_path):
    """The kernel's fixed-width and general instances can differ in the last bits (FMA
    contraction, see sgd_run in _kernel_impl.h), so a model must always run the same one:
    its arrays start on a cache line after fit, load and partial_fit, for every loss.
    Checked by result too: a saved model trained on after loading gives the same bits as
    the model trained on in memory."""
    u, i, r = small_data
    data = (u, i, r) if loss == "squared" else (u, i)
    m = MatrixFactorization(loss=loss, n_factors=16, n_epochs=2, random_state=3).fit(data)
    m.save(tmp_path / "m.mfsgd")
    loaded = mfsgd.load(tmp_path / "m.mfsgd")
    more = tuple(a[:500] for a in data)
    for model in (m, loaded):
        for a in (model._state.user_factors, model._state.item_factors):
            assert a.ctypes.data % 64 == 0 and (a.shape[1] * a.itemsize) % 64 == 0
        model.partial_fit(more, n_epochs=2)
        for a in (model._state.user_factors, model._state.item_factors):
            assert a.ctypes.data % 64 == 0
    np.testing.assert_array_equal(m.user_factors_, loaded.user_factors_)
    np.testing.assert_array_equal(m.item_factors_, loaded.item_factors_)


def test_callback_gets_a_copy_of_the_epoch_record(small_data):
    """A callback that edits its row used to edit history_ itself (a file saved then
    failed to load: 'header field history is invalid')."""
    m = MatrixFactorization(n_factors=2, n_epochs=3, random_state=0)
    m.fit(small_data, callback=lambda row: row.pop("train_rmse"))
    assert all("train_rmse" in row for row in m.history_)


@pytest.mark.parametrize("call", ["fit", "partial_fit", "predict", "save", "user_factors_",
                                  "fold_in", "recommend"])
def test_the_callback_cannot_use_the_model_being_fitted(small_data, tmp_path, call):
    """The model changes only when fit returns: inside the callback a read would see the
    previous model, and a fit or fold_in would be overwritten by the outer fit (an inner
    refit with n_factors=7 left a model of 4 factors that claimed 7)."""
    m = MatrixFactorization(n_factors=2, n_epochs=2, random_state=0).fit(small_data)
    before = m.user_factors_.copy()
    u, i, r = small_data
    use = {"fit": lambda: m.fit(small_data), "partial_fit": lambda: m.partial_fit(small_data),
           "predict": lambda: m.predict((u[:2], i[:2])),
           "save": lambda: m.save(tmp_path / "m.mfsgd"),
           "user_factors_": lambda: m.user_factors_,
           "fold_in": lambda: m.fold_in(([10**9], i[:1], r[:1])),
           "recommend": lambda: m.recommend(u[0])}[call]
    verb = "was read" if call.endswith("_") else "was called"
    with pytest.raises(RuntimeError, match=rf"{call} {verb} during this model's own fit"):
        m.set_params(n_epochs=3).fit(small_data, callback=lambda row: use())
    # the callback's error stopped the refit after its first epoch, which the model keeps
    assert m.n_epochs_ == 1 and not np.array_equal(m.user_factors_, before)
    assert not (tmp_path / "m.mfsgd").exists()
    use()  # after fit returns, the same call works


class _FakeDaskFrame:
    """Looks like a Dask collection to fit (which tests ``__dask_graph__``)."""

    def __dask_graph__(self):
        return {}


@pytest.mark.parametrize("call", ["fit", "partial_fit", "partial_fit unfitted", "fit dask"])
def test_a_callback_that_is_not_callable_is_refused_before_training(small_data, call):
    """A non-callable callback failed when first called, after epoch 1: that stopped the
    fit like a raising callback, and the fitted model was replaced by the one epoch."""
    fitted = call != "partial_fit unfitted"
    m = MatrixFactorization(n_factors=2, n_epochs=3, random_state=0)
    if fitted:
        m.fit(small_data)
    before = m.user_factors_.copy() if fitted else None
    u, i, r = small_data
    half = (u[:3000], i[:3000], r[:3000])
    do = {"fit": lambda: m.fit(half, callback="print"),
          "partial_fit": lambda: m.partial_fit(half, callback="print"),
          "partial_fit unfitted": lambda: m.partial_fit(half, callback="print"),
          "fit dask": lambda: m.fit(_FakeDaskFrame(), client=object(), callback="print")}[call]
    with pytest.raises(TypeError, match="callback must be None or a callable .* got str"):
        do()
    if fitted:
        assert m.n_epochs_ == 3 and len(m.user_ids_) == 300
        np.testing.assert_array_equal(m.user_factors_, before)
    else:
        assert not hasattr(m, "user_factors_")  # still unfitted


def test_score_of_no_ratings_is_a_value_error(small_data):
    """It returned NaN with NumPy's 'Mean of empty slice' warnings, where metrics.rmse
    refuses empty input."""
    m = MatrixFactorization(n_factors=2, n_epochs=1, random_state=0).fit(small_data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning on the way
        with pytest.raises(ValueError, match="X is empty; score needs at least one rating"):
            m.score(([], [], []))


@pytest.mark.parametrize("kwargs,exc,msg", [
    ({"checkpoint": "ck"}, ValueError, r"checkpoint= and resume= are only for Dask collections"),
    ({"checkpoint": "ck", "resume": True}, ValueError, r"only for Dask collections"),
    ({"resume": True}, ValueError, r"only for Dask collections"),
    ({"resume": "definitely"}, TypeError, r"resume must be True or False; got 'definitely'"),
], ids=["checkpoint", "checkpoint and resume", "resume", "resume not a bool"])
def test_checkpoint_and_resume_with_local_data_are_refused(small_data, tmp_path, kwargs, exc,
                                                            msg):
    """They were silently ignored: no checkpoint was written (the user believed the
    progress saved) and resume=True started over; resume was not type-checked."""
    m = MatrixFactorization(n_factors=2, n_epochs=2, random_state=0).fit(small_data)
    before = m.user_factors_.copy()
    kwargs = {k: str(tmp_path / v) if k == "checkpoint" else v for k, v in kwargs.items()}
    with pytest.raises(exc, match=msg):
        m.fit(small_data, **kwargs)
    assert m.n_epochs_ == 2 and not list(tmp_path.iterdir())
    np.testing.assert_array_equal(m.user_factors_, before)


def test_history_is_a_copy(small_data, tmp_path):
    """history_ was the fitted state's own list: an edit made save fail with json's
    TypeError (a NumPy float32) and carried into partial_fit's history."""
    m = MatrixFactorization(n_factors=2, n_epochs=2, random_state=0).fit(small_data)
    trained = m.history_[-1]["train_rmse"]
    m.history_[-1]["train_rmse"] = np.float32(0.9)
    m.history_.append({"epoch": 99})
    assert len(m.history_) == 2 and m.history_[-1]["train_rmse"] == trained
    m.save(tmp_path / "m.mfsgd")
    assert mfsgd.load(tmp_path / "m.mfsgd").history_ == m.history_
    m.partial_fit(small_data)
    assert [h["epoch"] for h in m.history_] == [1, 2, 3]
    assert m.history_[1]["train_rmse"] == trained


def test_n_blocks_none_leaves_blocks_of_2048_ratings_or_more(small_data):
    """n_blocks=None gave 2 x n_threads blocks (up to 255) whatever the data: 3 ratings
    with n_threads=256 made a 255 x 255 grid and took seconds per epoch. The grid is now
    at most sqrt(ratings / 2048) per side (the rule of default_n_blocks), and a fit of
    32,768 ratings or more still gets 2 x n_threads on two threads."""
    tiny = ([1, 2, 3], [1, 2, 3], [1.0, 2.0, 3.0])
    assert MatrixFactorization(n_factors=4, n_epochs=2, n_threads=256,
                               random_state=0).fit(tiny).n_blocks_ == 1
    kw = dict(n_factors=4, n_epochs=1, random_state=0)
    for n_threads in (2, 64):  # 6,000 ratings: one block of them all
        assert MatrixFactorization(n_threads=n_threads, **kw).fit(small_data).n_blocks_ == 1
    big = make_ratings(3000, 1500, 40_000, random_state=0, as_frame=False)
    assert MatrixFactorization(n_threads=1, **kw).fit(big).n_blocks_ == 1
    assert MatrixFactorization(n_threads=2, **kw).fit(big).n_blocks_ == 4  # as before
    assert MatrixFactorization(n_threads=64, **kw).fit(big).n_blocks_ == 4  # sqrt(40000/2048)
    # a set n_blocks is kept whatever the data
    assert MatrixFactorization(n_threads=2, n_blocks=9, **kw).fit(small_data).n_blocks_ == 9
    assert [_training.default_n_blocks(t, 10**8) for t in (1, 2, 8, 200)] == [1, 4, 16, 220]
    assert _training.default_n_blocks(256, 10**9) == 255


def test_threads_are_handed_only_blocks_with_ratings(monkeypatch):
    """With n_blocks fixed at 255 and 256 threads, each sub-epoch handed all 255 blocks of
    its stratum to the threads (254 hand-offs), although 3 ratings fill at most 3 blocks:
    seconds per epoch. Only blocks holding ratings are handed out now, and the model is
    that of one thread, bit for bit."""
    import concurrent.futures as cf

    calls = []
    submit = cf.ThreadPoolExecutor.submit
    monkeypatch.setattr(cf.ThreadPoolExecutor, "submit",
                        lambda self, *a, **k: calls.append(1) or submit(self, *a, **k))
    tiny = ([1, 2, 3], [1, 2, 3], [1.0, 2.0, 3.0])
    kw = dict(n_factors=4, n_epochs=2, n_blocks=255, random_state=0)
    many = MatrixFactorization(n_threads=256, **kw).fit(tiny)
    assert len(calls) <= 2 * 2  # at most 3 blocks per epoch, one run by the caller
    one = MatrixFactorization(n_threads=1, **kw).fit(tiny)
    for name in ("user_factors_", "item_factors_", "user_bias_", "item_bias_"):
        np.testing.assert_array_equal(getattr(one, name), getattr(many, name))
    assert many.history_[-1]["train_rmse"] == one.history_[-1]["train_rmse"]


@pytest.mark.parametrize("params, fit_kw, scale, named", [
    ({"init_std": 1e15}, {}, 1.0, r"init_std=1e\+15 \(learning_rate x init_std\^2 x n_factors "
                                  r"is 2\.5e\+28; SGD is stable below about 1\)"),
    ({"reg_factors": 1e30}, {}, 1.0, r"reg_factors=1e\+30 \(learning_rate x reg_factors is "
                                     r"5e\+27; above 1, a step shrinks a parameter past zero\)"),
    ({"reg_bias": 1e30}, {}, 1.0, r"reg_bias=1e\+30 \("),
    ({}, {"sample_weight": 1e30}, 1.0, r"sample_weight up to 1e\+30 \(it multiplies the "
                                       r"learning_rate of its row: steps of up to 5e\+27\)"),
    ({}, {}, 1e18, r"the ratings' scale \(they span 6\.4e\+18; learning_rate x span is 3\.2e\+16"),
], ids=["init_std", "reg_factors", "reg_bias", "sample_weight", "ratings_scale"])
def test_divergence_names_what_is_unusually_large(small_data, params, fit_kw, scale, named):
    """A huge init_std, reg_factors or sample_weight diverges whatever the learning rate,
    yet the error said only "Try a smaller learning_rate (now 0.005)". It now names the
    value that is too large for the fit (as it would be at the default rate), and keeps
    the learning rate as the other lever."""
    u, i, r = small_data
    if "sample_weight" in fit_kw:
        fit_kw = {"sample_weight": np.full(len(u), fit_kw["sample_weight"])}
    m = MatrixFactorization(n_factors=5, n_epochs=2, random_state=0, **params)
    with pytest.raises(DivergenceError, match=rf"diverged in epoch 1 .*range\)\. Unusually "
                                              rf"large for this fit: {named}.*\. Lower it or "
                                              rf"the learning_rate \(now 0\.005\); no epoch"):
        m.fit((u, i, r * scale), **fit_kw)
    assert not m.__sklearn_is_fitted__()


def test_divergence_from_the_learning_rate_alone_names_only_it(small_data):
    """A normal init_std, weight or rating range is not blamed when the rate is what is far
    above its default (here 300 times): those would train at the default rate."""
    u, i, r = small_data
    m = MatrixFactorization(n_factors=30, n_epochs=5, learning_rate=1.5, init_std=1.0,
                            reg_factors=0.5, random_state=0)
    with pytest.raises(DivergenceError) as e:
        m.fit((u, i, r), sample_weight=np.full(len(u), 3.0))
    assert "Try a smaller learning_rate (now 1.5)" in str(e.value)
    assert "Unusually large" not in str(e.value)
    # a ranking loss: its reg_factors at 30 x the rate shrinks past zero; init_std is not
    # blamed (bounded gradients), only an init_std near float32's range would be
    m = MatrixFactorization(loss="bpr", n_factors=8, n_epochs=2, reg_factors=30,
                            init_std=100.0, random_state=0)
    with pytest.raises(DivergenceError, match=r"Unusually large for this fit: reg_factors=30 "
                                              r"\(learning_rate x reg_factors is 3;[^)]*\)\. "
                                              r"Lower it or the learning_rate \(now 0\.1\)"):
        m.fit((u, i))


def test_divergence_from_scores_near_float32s_range_does_not_advise_the_rate(small_data):
    """A ranking model whose first scores are near float32's range diverges at any
    learning rate (its gradients are bounded): the error names init_std and said "Lower it
    or the learning_rate", advice that could not help. It now says only "Lower it"."""
    u, i, _ = small_data
    m = MatrixFactorization(loss="bpr", n_factors=8, n_epochs=2, init_std=3e18, random_state=0)
    with pytest.raises(DivergenceError, match=r"Unusually large for this fit: init_std=3e\+18 "
                                              r"\(init_std\^2 x n_factors is 7\.2e\+37: scores "
                                              r"near float32's range from the start\)\. Lower "
                                              r"it; no epoch completed"):
        m.fit((u, i))


@pytest.mark.parametrize("loss, data, unit", [("squared", (0, 1, 2), "ratings"),
                                              ("bpr", (0, 1), "user-item pairs")])
def test_a_tiny_early_stopping_hold_out_warns(loss, data, unit):
    """validation_fraction=1e-5 held out one rating (or pair), and early stopping kept
    whatever epoch that one value favoured, silently (epoch 1 of 6). Fewer than 100 held
    out, or more held out than trained on, now warn where fit was called."""
    full = make_ratings(200, 100, 8000, random_state=0, as_frame=False)
    X = tuple(full[k] for k in data)
    kw = dict(n_factors=4, n_epochs=3, random_state=0, loss=loss, early_stopping=True)
    with pytest.warns(UserWarning, match=rf"validation_fraction=1e-05 holds out only 1 of "
                                         rf"the 8000 {unit} for early stopping: too few to "
                                         rf"tell the epochs apart.*Raise it to 0\.0125 or "
                                         rf"more \(100 {unit}\), or pass eval_set\.") as w:
        MatrixFactorization(validation_fraction=1e-5, **kw).fit(X)
    assert w[0].filename == __file__  # it points at the caller's fit
    with pytest.warns(UserWarning, match=rf"validation_fraction=0\.9999 leaves only 1 of the "
                                         rf"8000 {unit} for training and holds out 7999"):
        MatrixFactorization(validation_fraction=0.9999, **kw).fit(X)
    few = tuple(a[:150] for a in X)
    with pytest.warns(UserWarning, match=rf"only 15 of the 150 {unit}.*With 150 {unit} in all, "
                                         r"train a fixed n_epochs without early_stopping"):
        MatrixFactorization(**kw).fit(few)
    with warnings.catch_warnings():  # 800 held out: no warning; none without early stopping
        warnings.simplefilter("error")
        MatrixFactorization(**kw).fit(X)
        MatrixFactorization(**{**kw, "early_stopping": False}).fit(few)


def test_a_dataframe_with_the_usual_column_names_is_read_as_load_csv_reads_them():
    """A frame read from MovieLens' ratings.csv (userId, movieId, rating, timestamp) was
    refused by fit ("X has no column 'user'") although load_csv recognises those names
    (review 26). With the default column names, fit, predict and Popularity recognise
    the usual ones (any case), each role apart; names set by the user are kept as given."""
    pd = pytest.importorskip("pandas")
    from mfsgd import Popularity

    u, i, r = make_ratings(60, 40, 1200, random_state=0, as_frame=False)
    kw = dict(n_factors=4, n_epochs=2, random_state=0)
    want = MatrixFactorization(**kw).fit((u, i, r))
    frames = [pd.DataFrame({"userId": u, "movieId": i, "rating": r, "timestamp": 0}),
              pd.DataFrame({"ts": 0, "UserID": u, "Item_Id": i, "Stars": r}),
              pd.DataFrame({"user": u, "movieId": i, "Rating": r})]
    for df in frames:
        got = MatrixFactorization(**kw).fit(df)
        np.testing.assert_array_equal(got.user_factors_, want.user_factors_)
        np.testing.assert_array_equal(got.item_ids_, want.item_ids_)
        np.testing.assert_array_equal(got.predict(df.iloc[:50]), want.predict((u[:50], i[:50])))
        assert Popularity().fit(df).item_counts_.tolist() == \
            Popularity().fit((u, i)).item_counts_.tolist()
    bpr = MatrixFactorization(loss="bpr", **kw)
    np.testing.assert_array_equal(bpr.fit(frames[0][["timestamp", "userId", "movieId"]])
                                  .item_factors_,
                                  MatrixFactorization(loss="bpr", **kw).fit((u, i)).item_factors_)
    # a frame's "score" or "value" is as often a price as a rating: not guessed at
    with pytest.raises(ValueError, match="X has no ratings: pass a 'rating' column"):
        MatrixFactorization(**kw).fit(pd.DataFrame({"userId": u, "movieId": i, "score": r}))
    # two columns are read by their names when they are the usual ones, else in order
    got = MatrixFactorization(**kw).fit(pd.DataFrame({"movieId": i, "userId": u}), r)
    np.testing.assert_array_equal(got.user_factors_, want.user_factors_)
    got = MatrixFactorization(**kw).fit(pd.DataFrame({"x": i, "userId": u}), r)
    np.testing.assert_array_equal(got.user_factors_, want.user_factors_)
    # the default name wins over a usual one
    both = pd.DataFrame({"userId": u + 1000, "user": u, "item": i, "rating": r})
    np.testing.assert_array_equal(MatrixFactorization(**kw).fit(both).user_ids_,
                                  want.user_ids_)
    # names the user set are read as given: no guessing then
    with pytest.raises(ValueError, match=r"X has no column 'uid' \(columns: \['userId'"):
        MatrixFactorization(user_col="uid", **kw).fit(frames[0])
    with pytest.raises(ValueError, match=r"X has no column 'user' \(columns: \['who', 'what', "):
        MatrixFactorization(**kw).fit(pd.DataFrame({"who": u, "what": i, "r": r}))


@pytest.mark.parametrize("loss", ["squared", "bpr"])
def test_a_callback_stops_training_cleanly_with_stop_training(small_data, loss):
    """A callback raising StopTraining ends training after that epoch: fit (and
    partial_fit) return normally, without a warning, and the model is the one of the
    epochs completed, as a fit of that many epochs (review 26: a callback could stop
    training only by an exception that fit re-raised)."""
    import warnings

    from mfsgd import StopTraining

    def stop_at(n):
        def callback(row):
            if row["epoch"] == n:
                raise StopTraining
        return callback

    X = small_data if loss == "squared" else small_data[:2]
    kw = dict(loss=loss, n_factors=4, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = MatrixFactorization(n_epochs=10, **kw)
        assert m.fit(X, callback=stop_at(3)) is m
        assert m.n_epochs_ == 3 and [h["epoch"] for h in m.history_] == [1, 2, 3]
        ref = MatrixFactorization(n_epochs=3, **kw).fit(X)
        np.testing.assert_array_equal(m.user_factors_, ref.user_factors_)
        np.testing.assert_array_equal(m.item_factors_, ref.item_factors_)
        assert m.partial_fit(X, n_epochs=5, callback=stop_at(5)) is m
        assert m.n_epochs_ == 5
    with pytest.raises(ZeroDivisionError):  # any other exception is re-raised, as before
        MatrixFactorization(n_epochs=10, **kw).fit(X, callback=lambda row: 1 / 0)
