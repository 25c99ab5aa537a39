"""Growing a model a few rows at a time (``fold_in`` of new users, one per call): the
arrays grow in place past the rows that older states hold (``_state.appended``), and
that must be invisible: every state sees exactly the arrays it would see had each
fold-in copied them, whatever other states grew from the same one."""

import copy
import gc
import threading

import numpy as np
import pytest

import mfsgd._recommend as R
import mfsgd._state as S
from mfsgd import MatrixFactorization, load
from mfsgd.datasets import make_ratings

ARRAYS = ("user_factors", "user_bias", "seen_indptr", "seen_items", "user_counts",
          "item_counts", "user_accum", "low_indptr", "low_items")


def state_arrays(m):
    st = m._state
    return {k: np.array(getattr(st, k)) for k in ARRAYS if getattr(st, k) is not None}


def assert_same_arrays(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def test_appended_shares_only_at_the_frontier_and_never_writes_held_rows():
    base = np.arange(12, dtype=np.float32).reshape(6, 2)
    a = S.appended(base, np.full((2, 2), -1, np.float32))  # base is not grown: a copy
    assert not np.shares_memory(a, base) and a.ctypes.data % 64 == 0
    a_before = a.copy()
    b = S.appended(a, np.full((3, 2), -2, np.float32))  # a is the frontier: in place
    assert np.shares_memory(a, b) and np.array_equal(b[:8], a_before)
    c = S.appended(a, np.full((1, 2), -3, np.float32))  # a again: b holds those rows
    assert not np.shares_memory(c, b)
    assert np.array_equal(a, a_before)
    assert np.array_equal(b, np.concatenate([a_before, np.full((3, 2), -2, np.float32)]))
    assert np.array_equal(c, np.concatenate([a_before, np.full((1, 2), -3, np.float32)]))
    d = S.appended(b, np.empty((0, 2), np.float32))
    assert np.array_equal(d, b)


def test_appended_matches_concatenate_through_many_growths():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(5, 3))
    got = ref.copy()
    copies = 0
    for _ in range(400):
        extra = rng.normal(size=(int(rng.integers(0, 7)), 3))
        new = S.appended(got, extra)
        copies += not np.shares_memory(new, got)
        ref, got = np.concatenate([ref, extra]), new
        assert got.flags.c_contiguous and got.ctypes.data % 64 == 0
    assert np.array_equal(got, ref)
    assert copies < 40  # grown by an eighth at a time, not copied per call


def test_threads_growing_one_array_each_get_their_own_rows():
    a = S.appended(np.zeros((100, 4)), np.zeros((1, 4)))  # a buffer with room
    a_before = a.copy()
    out = [None] * 8
    go = threading.Barrier(8)

    def grow(t):
        go.wait()
        out[t] = S.appended(a, np.full((3, 4), float(t)))

    threads = [threading.Thread(target=grow, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert np.array_equal(a, a_before)
    for t in range(8):
        assert np.array_equal(out[t], np.concatenate([a_before, np.full((3, 4), float(t))]))
    assert sum(np.shares_memory(a, o) for o in out) == 1  # one claimed the room


def test_the_record_of_grown_arrays_goes_with_them():
    gc.collect()
    before = len(S._ROOMS)
    a = S.appended(np.zeros((10, 2)), np.ones((2, 2)))
    b = S.appended(a, np.ones((2, 2)))
    assert len(S._ROOMS) == before + 2
    del a, b
    gc.collect()
    assert len(S._ROOMS) == before


@pytest.fixture(scope="module")
def data():
    return make_ratings(300, 120, 6000, rank=4, noise=0.2, random_state=5, as_frame=False)


def new_users(data, n=12, seed=1):
    """Rows of n new users (ids 10**6 + t), 4-9 items each, ratings in the data's range."""
    u, i, r = data
    rng = np.random.default_rng(seed)
    rows = []
    for t in range(n):
        items = rng.choice(np.unique(i), int(rng.integers(4, 10)), replace=False)
        rows.append((np.full(items.size, 10**6 + t), items,
                     rng.uniform(r.min(), r.max(), items.size)))
    return rows


def copying(monkeypatch):
    """Every growth a copy, as before arrays grew in place."""
    copy_all = lambda arr, extra: S.aligned_concat([arr, extra])  # noqa: E731
    monkeypatch.setattr(S, "appended", copy_all)
    monkeypatch.setattr(R, "appended", copy_all)


@pytest.mark.parametrize("kw", [dict(), dict(loss="bpr", adagrad=True),
                                dict(loss="warp", min_rating=3.0)])
def test_streamed_fold_ins_equal_copying_ones_and_leave_older_models_unchanged(
        data, kw, monkeypatch, tmp_path):
    m0 = MatrixFactorization(n_factors=6, n_epochs=4, random_state=0, **kw).fit(data)
    rows = new_users(data)

    def stream(m, keep):
        for t, part in enumerate(rows):
            m.fold_in(part)
            if t % 4 == 0:  # older models, sharing the state of that moment
                keep.append((copy.copy(m), state_arrays(m)))
            if t == 6:  # a new item and a refolded user grow by copying, between
                users = np.unique(data[0])[:20]
                m.fold_in((users, np.full(20, 10**7), np.full(20, data[2].max())),
                          side="item")
                m.fold_in((np.full(3, 10**6 + 2), rows[2][1][:3], rows[2][2][:3]))
        return m

    kept = []
    grown = stream(copy.copy(m0), kept)
    with monkeypatch.context() as mp:
        copying(mp)
        copied = stream(copy.copy(m0), [])
    assert_same_arrays(state_arrays(grown), state_arrays(copied))
    assert np.array_equal(grown.item_factors_, copied.item_factors_)
    for old, arrays in kept:  # each older model still holds what it held
        assert_same_arrays(state_arrays(old), arrays)
    # the older models grow apart from the newer one without touching it
    final = state_arrays(grown)
    for t, (old, _) in enumerate(kept):
        old.fold_in((np.full(4, 7 * 10**6 + t), rows[5][1][:4], rows[5][2][:4]))
        assert 7 * 10**6 + t in old.user_ids_
    assert_same_arrays(state_arrays(grown), final)
    # saved and loaded: the model's rows only, not the room beyond them
    grown.save(tmp_path / "m.mfsgd")
    back = load(tmp_path / "m.mfsgd")
    assert back.user_factors_.shape == grown.user_factors_.shape
    assert np.array_equal(back.user_factors_, grown.user_factors_)
    assert np.array_equal(back.predict((rows[3][0], rows[3][1])),
                          grown.predict((rows[3][0], rows[3][1])))


def test_streamed_fold_ins_equal_one_batch_fold_in(data):
    m = MatrixFactorization(n_factors=6, n_epochs=4, random_state=0).fit(data)
    rows = new_users(data)
    one = copy.copy(m)
    for part in rows:
        one.fold_in(part)
    batch = copy.copy(m)
    batch.fold_in(tuple(np.concatenate(c) for c in zip(*rows, strict=True)))
    assert np.array_equal(one.user_ids_, batch.user_ids_)
    np.testing.assert_allclose(one.user_factors_, batch.user_factors_, rtol=1e-4, atol=1e-6)
    assert np.array_equal(one.user_counts_, batch.user_counts_)
    for part in rows[:3]:
        a, _ = one.recommend(part[0][0], n=200)
        assert not set(a) & set(part[1])


@pytest.mark.parametrize("loss", ["bpr", "softmax"])
def test_item_fold_ins_carry_the_users_log_partition_exactly(data, loss, monkeypatch):
    """An item fold-in of a ranking model needs every user's log partition over the
    items (O(users x items x k)); the model keeps it and carries it through fold-ins of
    new items and users, so a stream of new items computes it once. Each step must give
    what a model computing it afresh gives."""
    u, i, _ = data
    m = MatrixFactorization(loss=loss, n_factors=6, n_epochs=4, random_state=0).fit((u, i))
    full = []
    real = R.log_partition

    def counting(U, V, b):
        full.append(U.shape[0])
        return real(U, V, b)

    monkeypatch.setattr(R, "log_partition", counting)
    rng = np.random.default_rng(3)
    users, items = np.unique(u), np.unique(i)
    steps = ["item", "item", "user", "item", "user", "user", "item", "refold user",
             "item", "refold item", "item"]
    for t, what in enumerate(steps):
        if what == "item":
            args = ((rng.choice(users, 8, replace=False), np.full(8, 10**7 + t)),)
            kw = dict(side="item")
        elif what == "user":
            args = ((np.full(5, 10**8 + t), rng.choice(items, 5, replace=False)),)
            kw = {}
        elif what == "refold user":
            args = ((np.full(5, users[0]), rng.choice(items, 5, replace=False)),)
            kw = {}
        else:  # a known item refolded: its old term leaves the partition
            args = ((rng.choice(users, 8, replace=False), np.full(8, items[0])),)
            kw = dict(side="item")
        fresh = copy.deepcopy(m)  # keeps no derived arrays: computes afresh
        m.fold_in(*args, **kw)
        fresh.fold_in(*args, **kw)
        np.testing.assert_allclose(m.item_factors_, fresh.item_factors_, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(m.user_factors_, fresh.user_factors_, rtol=1e-5, atol=1e-6)
        kept = m._state.derived_where(lambda key: key == R.LOG_Z).get(R.LOG_Z)
        if kept is not None:  # exactly the partition of the model's arrays
            st = m._state
            want = real(st.factors("user_factors").astype(np.float64),
                        st.factors("item_factors").astype(np.float64),
                        st.item_bias.astype(np.float64))
            np.testing.assert_allclose(kept, want, rtol=1e-12, atol=1e-12)
    n_users = [len(np.unique(u))]
    # computed over every user: by the first item fold-in, by the deep copies, and
    # after the known item's refold; never again by the model itself in between
    n_full = sum(1 for x in full if x >= n_users[0])
    n_fresh_items = sum(1 for w in steps if "item" in w)
    assert n_full == n_fresh_items + 2


@pytest.mark.parametrize("loss, low", [("squared", None), ("warp", None), ("warp", 3.0)])
def test_fold_ins_carry_similarity_rows_and_support_counts_exactly(data, loss, low):
    """similar_* rows and norms and the support counts (an unknown user's list) are
    carried through fold-ins, appended or counted on, instead of rebuilt from the whole
    model: each carried array must equal the one a fresh model builds, bit for bit."""
    u, i, r = data
    m = MatrixFactorization(loss=loss, n_factors=6, n_epochs=3, random_state=0,
                            min_rating=low).fit(data)
    stars = np.full(5, 4.0) if low is None else np.array([5.0, 1.0, 5.0, 1.0, 5.0])
    rng = np.random.default_rng(4)
    users, items = np.unique(u), np.unique(i)

    def touch(model):  # what a service asks between fold-ins: builds the derived arrays
        model.similar_users(model.user_ids_[0], n=3)
        model.similar_items(model.item_ids_[0], n=3)
        model.recommend(10**12, n=3)

    touch(m)
    for t, side in enumerate(["user", "user", "item", "user", "refold", "item", "user"]):
        if side == "item":
            m.fold_in((rng.choice(users, 6, replace=False), np.full(6, 10**7 + t),
                       np.full(6, 4.0)), side="item")
        else:
            who = users[1] if side == "refold" else 10**8 + t
            m.fold_in((np.full(5, who), rng.choice(items, 5, replace=False), stars))
        carried = m._state.derived_where(lambda key: key[0] in ("similarity", "support"))
        fresh = copy.deepcopy(m)
        touch(fresh)
        built = fresh._state.derived_where(lambda key: key[0] in ("similarity", "support"))
        for key, value in carried.items():
            want = built[key]
            for a, b in zip(value if isinstance(value, tuple) else [value],
                            want if isinstance(want, tuple) else [want], strict=True):
                assert a.dtype == b.dtype and np.array_equal(a, b), (t, side, key)
        if side == "user":  # a new user's fold-in carries the rows (and counts)
            assert ("similarity", "user") in carried
            assert ("support", "item") in carried or loss != "squared"
        touch(m)


def test_a_stream_of_users_with_low_rows_does_not_copy_the_factors(data):
    """With min_rating, a new user's rows below it are recorded after the fold-in
    (record_low): that step adds no row, so it keeps the factor matrix as it is rather
    than copying it, and keeps what was derived from the model (it did neither, per
    call; bench/fold_in.py --latency times it)."""
    last_start = None
    u, i, r = data
    m = MatrixFactorization(loss="warp", n_factors=6, n_epochs=2, random_state=0,
                            min_rating=3.0, adagrad=True).fit(data)
    m.fold_in(([10**6] * 4, i[:4], [5.0, 5.0, 1.0, 1.0]))  # the first grows with room
    for t in range(1, 6):
        before = m._state
        m.fold_in(([10**6 + t] * 4, i[4 * t:4 * t + 4], [5.0, 5.0, 1.0, 1.0]))
        after = m._state
        for name in ("user_factors", "user_bias", "user_accum", "user_counts"):
            assert np.shares_memory(getattr(before, name), getattr(after, name)), name
        # and what the next user's solve needs of the unchanged items is kept, not rebuilt
        start = [v for k, v in after.derived_where(lambda key: key[0] == "softmax_start")
                 .items()]
        assert len(start) == 1 and (t == 1 or start[0] is last_start)
        last_start = start[0]
        assert m.user_counts_[-1] == 2 and m.known_users(10**6 + t)
        ids, _ = m.recommend(10**6 + t, n=len(m.item_ids_))
        assert not set(ids) & set(i[4 * t:4 * t + 4])  # the low rows are seen too
