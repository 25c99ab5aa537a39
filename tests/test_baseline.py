"""mfsgd.Popularity: hand-computed lists, exclusions, unknown users, weights, min_rating,
the input forms, bad inputs, the parameter protocol, and evaluation through the metrics."""

import doctest
import pickle

import numpy as np
import pytest

import mfsgd
from mfsgd import NotFittedError, Popularity, _baseline
from mfsgd import metrics as M
from mfsgd.datasets import make_ratings
from mfsgd.model_selection import train_test_split

# Toy set: u1 A B | u2 B C | u3 B C E | u4 A D.  Counts A 2, B 3, C 2, D 1, E 1.
# Popularity order (ties by item order): B A C D E.
U = np.array(["u1", "u1", "u2", "u2", "u3", "u3", "u3", "u4", "u4"])
I = np.array(["A", "B", "B", "C", "B", "C", "E", "A", "D"])  # noqa: E741
R = np.array([5.0, 3.0, 4.0, 2.0, 5.0, 4.5, 1.0, 4.0, 3.0])


@pytest.fixture(scope="module")
def toy():
    return Popularity().fit((U, I))


def test_counts_and_ids(toy):
    assert toy.item_ids_.tolist() == list("ABCDE")
    assert toy.user_ids_.tolist() == ["u1", "u2", "u3", "u4"]
    assert toy.item_counts_.tolist() == [2, 3, 2, 1, 1]
    assert toy.item_counts_.dtype == np.int64


def test_hand_computed_lists(toy):
    ids, scores = toy.recommend("nobody", n=10)  # unknown user: the plain list
    assert ids.tolist() == list("BACDE") and scores.tolist() == [3, 2, 2, 1, 1]
    assert toy.recommend("u1", n=10)[0].tolist() == list("CDE")  # A, B seen
    assert toy.recommend("u1", n=10, exclude_seen=False)[0].tolist() == list("BACDE")
    assert toy.recommend("u3", n=1)[0].tolist() == ["A"]
    ids, scores = toy.recommend("u3", n=5)  # only A and D are left
    assert ids.tolist() == ["A", "D"] and scores.tolist() == [2.0, 1.0]
    assert toy.recommend("u4", n=2)[0].tolist() == ["B", "C"]


def test_ties_follow_item_order_or_the_candidates_order(toy):
    # A and C tie (2), D and E tie (1): item order decides ...
    assert toy.recommend("x", n=5, items=["E", "C", "D", "A"])[0].tolist() == list("CAED")
    # ... which with a whitelist is the order of the candidates given
    assert toy.recommend("x", n=5, items=["C", "A"])[0].tolist() == ["C", "A"]
    assert toy.recommend("x", n=5, items=["A", "C"])[0].tolist() == ["A", "C"]


@pytest.mark.parametrize("n", [64, 65, 100, 299])
def test_long_lists_keep_the_tie_rule(n):
    """Lists longer than the compiled scan's 64 slots follow the same rule: equal counts
    in item order, and the earliest of the items tied at the cut (review 21)."""
    rng = np.random.default_rng(0)
    u, i = rng.integers(0, 50, 2000), rng.integers(0, 300, 2000)
    pop = Popularity().fit((u, i))
    ids, scores = pop.recommend(10**9, n=n)
    want = np.argsort(-pop.item_counts_, kind="stable")[:n]
    np.testing.assert_array_equal(ids, pop.item_ids_[want])
    np.testing.assert_array_equal(scores, pop.item_counts_[want])


def test_exclude_items_and_unknown_candidates(toy):
    ids, _ = toy.recommend("nobody", n=3, exclude_items=["B", "zzz"])
    assert ids.tolist() == ["A", "C", "D"]
    ids, _ = toy.recommend("u2", n=5, exclude_items=["A"])  # B, C seen; A banned
    assert ids.tolist() == ["D", "E"]
    with pytest.raises(ValueError, match=r"items holds 1 id\(s\) the model does not know "
                                         r"\('Q'\)"):
        toy.recommend("u1", items=["A", "Q"])


def test_recommend_all(toy):
    ids, scores = toy.recommend_all(["u3", "new"], n=3)
    assert ids.shape == scores.shape == (2, 3)
    assert ids[1].tolist() == list("BAC") and scores[1].tolist() == [3, 2, 2]
    assert ids[0, :2].tolist() == ["A", "D"] and np.isneginf(scores[0, 2])
    ids, _ = toy.recommend_all(n=1)  # every user, in user_ids_ order
    assert ids[:, 0].tolist() == ["C", "A", "A", "B"]


def test_candidates_are_a_set_and_may_be_empty(toy):
    # u1 has seen A and B: a repeated seen candidate stays excluded, none is listed twice
    assert toy.recommend("u1", items=["A", "A"])[0].tolist() == []
    assert toy.recommend("u1", items=["B", "C", "B", "C"])[0].tolist() == ["C"]
    ids, scores = toy.recommend("x", items=["C", "A", "C", "A"])
    assert ids.tolist() == ["C", "A"] and scores.tolist() == [2.0, 2.0]
    ids, scores = toy.recommend_all(["u1", "x"], n=5, items=["A", "A", "D"])
    assert ids.tolist() == [["D", "A"], ["A", "D"]] and np.isneginf(scores[0, 1])
    # no candidate left: empty lists, as with exclude_seen=False
    for exclude_seen in (True, False):
        for kw in ({"items": []}, {"items": ["C"], "exclude_items": ["C"]}):
            ids, scores = toy.recommend("u1", exclude_seen=exclude_seen, **kw)
            assert ids.shape == scores.shape == (0,) and ids.dtype == toy.item_ids_.dtype
            ids, scores = toy.recommend_all(["u1", "x"], exclude_seen=exclude_seen, **kw)
            assert ids.shape == scores.shape == (2, 0) and ids.dtype == toy.item_ids_.dtype


def test_predict(toy):
    X = np.array([["u1", "B"], ["nobody", "A"], ["u1", "Z"], ["u4", "E"]])
    np.testing.assert_array_equal(toy.predict(X), [3.0, 2.0, 0.0, 1.0])
    assert toy.predict(X).dtype == np.float64


def test_sample_weight():
    w = np.array([1, 1, 1, 1, 1, 1, 1, 0.5, 5.0])  # (u4, A) halves, (u4, D) five-fold
    pop = Popularity().fit((U, I), sample_weight=w)
    np.testing.assert_allclose(pop.item_counts_, [1.5, 3, 2, 5, 1])
    assert pop.item_counts_.dtype == np.float64
    assert pop.recommend("new", n=5)[0].tolist() == list("DBCAE")
    # a weight of zero keeps the row (it is still seen) but adds nothing
    zero = Popularity().fit((U, I), sample_weight=np.where(I == "E", 0.0, 1.0))
    assert zero.item_counts_[4] == 0 and "E" not in zero.recommend("u3", n=5)[0]


def test_sample_weight_sums_beyond_float64_raise():
    # B has three rows of 7e307 (2.1e308, beyond float64); A and C two (1.4e308)
    with pytest.raises(ValueError, match=r"sample_weight sums overflow float64: the weights "
                                         r"of 1 item\(s\) \(first: 'B'\) add up to more"):
        Popularity().fit((U, I), sample_weight=np.full(U.size, 7e307))
    pop = Popularity().fit((U, I), sample_weight=np.full(U.size, 1e307))
    assert pop.recommend("u1", n=5)[0].tolist() == list("CDE")


def test_min_rating_drops_rows_below():
    pop = Popularity(min_rating=4.0).fit((U, I, R))
    # kept: u1 A, u2 B, u3 B, u3 C, u4 A  -> A 2, B 2, C 1; D and E are gone, u1 keeps A only
    assert pop.item_ids_.tolist() == ["A", "B", "C"]
    assert pop.item_counts_.tolist() == [2, 2, 1]
    assert pop.user_ids_.tolist() == ["u1", "u2", "u3", "u4"]
    # u1's B row (3.0) is not counted but is seen: not recommended back, as by the model
    assert pop.recommend("u1", n=5)[0].tolist() == ["C"]
    assert pop.recommend("u1", n=5, exclude_seen=False)[0].tolist() == ["A", "B", "C"]
    np.testing.assert_array_equal(pop.predict((["u1", "u1"], ["D", "A"])), [0.0, 2.0])
    # a user whose rows are all below it is known, served the list less their items; a
    # row of an item no kept row has (u9's E) is dropped
    only_low = Popularity(min_rating=4.0).fit((np.append(U, ["u9", "u9"]),
                                               np.append(I, ["A", "E"]),
                                               np.append(R, [1.0, 2.0])))
    assert only_low.user_ids_.tolist() == ["u1", "u2", "u3", "u4", "u9"]
    assert only_low.recommend("u9", n=3)[0].tolist() == ["B", "C"]
    np.testing.assert_array_equal(only_low.item_counts_, pop.item_counts_)
    # each user's kept rows, as MatrixFactorization counts them: u9 has none (audit 17:
    # the seen record's counts, low rows included, were [2, 2, 3, 2, 2])
    assert only_low.user_counts_.tolist() == [1, 1, 2, 1, 0]
    assert Popularity().fit((U, I)).user_counts_.tolist() == [2, 2, 3, 2]
    mf = mfsgd.MatrixFactorization(loss="bpr", min_rating=4.0, n_epochs=1, random_state=0)
    mf.fit((np.append(U, ["u9", "u9"]), np.append(I, ["A", "E"]), np.append(R, [1.0, 2.0])))
    got = dict(zip(only_low.user_ids_.tolist(), only_low.user_counts_.tolist(), strict=True))
    assert got == dict(zip(mf.user_ids_.tolist(), mf.user_counts_.tolist(), strict=True))
    # the weights of dropped rows go with them
    w = np.arange(1.0, 10.0)
    weighted = Popularity(min_rating=4.0).fit((U, I, R), sample_weight=w)
    np.testing.assert_allclose(weighted.item_counts_, [1 + 8, 3 + 5, 6])


def test_min_rating_none_ignores_ratings():
    a = Popularity().fit((U, I, R))
    b = Popularity().fit((U, I))
    np.testing.assert_array_equal(a.item_counts_, b.item_counts_)


def test_input_forms_agree():
    pd = pytest.importorskip("pandas")
    codes_u = np.unique(U, return_inverse=True)[1] + 100
    codes_i = np.unique(I, return_inverse=True)[1] + 10
    want = Popularity(min_rating=3.0).fit((codes_u, codes_i, R))
    forms = [
        ((codes_u, codes_i, R), None),
        (np.column_stack([codes_u, codes_i]), R),
        (np.column_stack([codes_u, codes_i, R]), None),
        ({"user": codes_u, "item": codes_i, "rating": R}, None),
        (pd.DataFrame({"user": codes_u, "item": codes_i, "rating": R}), None),
        (pd.DataFrame({"userId": codes_u, "movieId": codes_i}), R),  # two columns, y
    ]
    for X, y in forms:
        got = Popularity(min_rating=3.0).fit(X, y)
        np.testing.assert_array_equal(got.item_ids_, want.item_ids_)
        np.testing.assert_array_equal(got.item_counts_, want.item_counts_)
        np.testing.assert_array_equal(got.recommend_all(n=3)[0], want.recommend_all(n=3)[0])
    named = Popularity(user_col="who", item_col="what", rating_col="stars", min_rating=3.0)
    named.fit(pd.DataFrame({"who": codes_u, "what": codes_i, "stars": R}))
    np.testing.assert_array_equal(named.item_counts_, want.item_counts_)
    # pairs without ratings: (users, items) and an (n, 2) array
    pairs = Popularity().fit(np.column_stack([codes_u, codes_i]))
    np.testing.assert_array_equal(pairs.item_counts_, Popularity().fit((codes_u,
                                                                        codes_i)).item_counts_)


@pytest.mark.parametrize("kwargs,X,y,fit_kw,exc,msg", [
    ({}, None, None, {}, TypeError, r"X is None"),
    ({}, np.zeros((3, 4)), None, {}, ValueError, r"X must be a DataFrame .* got ndarray of "
                                                 r"shape \(3, 4\)"),
    ({}, ([1, 2], [1]), None, {}, ValueError, r"users has 2, items has 1"),
    ({}, ([], []), None, {}, ValueError, r"at least one \(user, item\) row"),
    ({}, ([1.5, 2], [1, 2]), None, {}, TypeError, r"users must be integers or strings"),
    ({}, ([1, 2], [1, 2], [3.0, 4.0]), [3.0, 4.0], {}, ValueError, r"ratings given twice"),
    ({"min_rating": 4.0}, ([1, 2], [1, 2]), None, {}, ValueError,
     r"min_rating=4.0 keeps the rows rated >= it, but X has no ratings"),
    ({"min_rating": 9.0}, ([1, 2], [1, 2], [3.0, 4.0]), None, {}, ValueError,
     r"no row of X is rated >= min_rating=9.0"),
    ({"min_rating": "4"}, ([1, 2], [1, 2], [3.0, 4.0]), None, {}, TypeError,
     r"min_rating must be a finite number \(or None: keep every row\); got '4'"),
    ({"min_rating": np.nan}, ([1, 2], [1, 2], [3.0, 4.0]), None, {}, TypeError,
     r"min_rating must be a finite number"),
    ({"min_rating": 3.0}, ([1, 2], [1, 2], [3.0, np.nan]), None, {}, ValueError,
     r"ratings has 1 non-finite"),
    ({}, ([1, 2], [1, 2]), None, {"sample_weight": [1.0]}, ValueError,
     r"sample_weight must have one value per row of X; got 1 for 2 rows"),
    ({}, ([1, 2], [1, 2]), None, {"sample_weight": [1.0, -2.0]}, ValueError,
     r"sample_weight must be >= 0; got -2.0 at position 1"),
    ({}, ([1, 2], [1, 2]), None, {"sample_weight": [1.0, np.inf]}, ValueError,
     r"sample_weight has 1 non-finite"),
    ({}, ([1, 2], [1, 2]), None, {"sample_weight": ["a", "b"]}, TypeError,
     r"sample_weight must be numeric"),
    ({}, ([1, 2], [1, 2]), None, {"sample_weight": [0.0, 0.0]}, ValueError,
     r"sample_weight is 0 for all 2 rows, so every item's count is 0"),
    ({"min_rating": 4.0}, ([1, 2], [1, 2], [3.0, 4.0]), None, {"sample_weight": [1.0, 0.0]},
     ValueError, r"sample_weight is 0 for all 1 rows rated >= min_rating"),
    ({"min_rating": 10**400}, ([1, 2], [1, 2], [3.0, 4.0]), None, {}, ValueError,
     r"min_rating must be a finite number \(or None: keep every row\); got an int too large"),
    ({"item_col": "user"}, {"user": [1, 2], "item": [3, 4]}, None, {}, ValueError,
     r"user_col, item_col and rating_col must be three different names; got user_col='user', "
     r"item_col='user', rating_col='rating'"),
    ({"rating_col": "item"}, {"user": [1, 2], "item": [3, 4]}, None, {}, ValueError,
     r"must be three different names"),
    ({"user_col": True}, {True: [1, 2], "item": [3, 4]}, None, {}, TypeError,
     r"user_col must be a column name \(a str or an int\); got True"),
])
def test_bad_inputs(kwargs, X, y, fit_kw, exc, msg):
    with pytest.raises(exc, match=msg):
        Popularity(**kwargs).fit(X, y, **fit_kw)


def test_bad_call_arguments(toy):
    with pytest.raises(ValueError, match=r"n must be an int >= 1; got 0"):
        toy.recommend("u1", n=0)
    with pytest.raises(TypeError, match=r"exclude_seen must be True or False"):
        toy.recommend_all(exclude_seen="no")
    with pytest.raises(TypeError, match=r"this model's ids are strings; got integers such as"):
        toy.recommend(5)


def test_not_fitted():
    pop = Popularity()
    for call, what in [(lambda: pop.recommend(1), "recommend"),
                       (lambda: pop.recommend_all(), "recommend_all"),
                       (lambda: pop.predict(np.array([[1, 2]])), "predict")]:
        with pytest.raises(NotFittedError, match=rf"This Popularity instance is not fitted "
                                                 rf"yet; call fit before {what}\."):
            call()
    with pytest.raises(NotFittedError, match=r"so it has no item_counts_"):
        pop.item_counts_  # noqa: B018
    assert not hasattr(pop, "item_ids_") and not pop.__sklearn_is_fitted__()


def test_sgd_only_attributes_are_absent(toy):
    with pytest.raises(AttributeError, match=r"Popularity has no history_: it counts"):
        toy.history_  # noqa: B018
    for name in ("n_epochs_", "best_epoch_", "rating_range_", "n_blocks_"):
        assert not hasattr(toy, name)
    # what the metrics read: the biased model with no factors whose item bias is the count
    assert toy.global_mean_ == 0.0 and not toy.user_bias_.any()
    np.testing.assert_array_equal(toy.item_bias_, [2, 3, 2, 1, 1])
    assert toy.user_factors_.shape == (4, 0) and toy.item_factors_.shape == (5, 0)


def test_params_clone_repr_pickle(toy):
    pop = Popularity(min_rating=4.0, user_col="who")
    assert pop.get_params() == {"min_rating": 4.0, "user_col": "who", "item_col": "item",
                                "rating_col": "rating"}
    assert repr(pop) == "Popularity(min_rating=4.0, user_col='who')"
    assert pop.set_params(min_rating=None) is pop and pop.min_rating is None
    with pytest.raises(ValueError, match=r"Invalid parameter 'k' for Popularity"):
        pop.set_params(k=3)
    back = pickle.loads(pickle.dumps(toy))
    np.testing.assert_array_equal(back.recommend_all(n=3)[0], toy.recommend_all(n=3)[0])
    back.fit((U[:2], I[:2]))  # the lock was recreated
    base = pytest.importorskip("sklearn.base")
    c = base.clone(Popularity(min_rating=2.5))
    assert c.min_rating == 2.5 and not c.__sklearn_is_fitted__()
    assert "Popularity" in mfsgd.__all__


def test_matches_brute_force_on_random_data(isa):
    u, i, r = make_ratings(150, 90, 2500, random_state=5, as_frame=False)
    rng = np.random.default_rng(1)
    w = rng.integers(0, 4, u.size).astype(np.float64)
    pop = Popularity().fit((u, i, r), sample_weight=w)
    counts = np.zeros(pop.item_ids_.size)
    np.add.at(counts, np.searchsorted(pop.item_ids_, i), w)
    np.testing.assert_array_equal(pop.item_counts_, counts)
    users = np.append(pop.user_ids_[::7], [-1, 10**6])
    ids, scores = pop.recommend_all(users, n=12)
    for row, user in enumerate(users.tolist()):
        seen = set(i[u == user].tolist())
        order = [j for j in np.lexsort((np.arange(counts.size), -counts))
                 if pop.item_ids_[j] not in seen][:12]
        assert ids[row].tolist() == pop.item_ids_[order].tolist()
        np.testing.assert_array_equal(scores[row], counts[order])


def test_ranking_metrics_evaluate_it(toy):
    # held out: u1 C (relevant), u2 A, new user "n" E. k=2, training items excluded.
    test = (np.array(["u1", "u2", "n"]), np.array(["C", "A", "E"]))
    m = M.ranking_metrics(toy, test, k=2, threshold=None, train=(U, I))
    # lists: u1 C D (hit at 1), u2 A D (hit at 1), n B A (no hit)
    assert m["n_users"] == 3
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["precision"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert m["ndcg"] == pytest.approx(2 / 3)
    assert m["coverage"] == pytest.approx(4 / 5)  # A B C D
    items, scores = M.top_k_items(toy, ["u1", "n"], k=3, train=(U, I))
    np.testing.assert_array_equal(items, toy.recommend_all(["u1", "n"], n=3)[0])
    np.testing.assert_array_equal(scores, toy.recommend_all(["u1", "n"], n=3)[1])


def test_it_beats_a_random_ranking_on_skewed_data():
    """Item popularity in make_ratings is Zipf-like, as in real data: the held-out pairs
    favour popular items, so the baseline must beat a random ranking by far."""
    data = make_ratings(300, 200, 6000, random_state=2, as_frame=False)
    train, test = train_test_split(data, test_size=0.2, random_state=0)
    pop = Popularity().fit(train)
    got = M.ranking_metrics(pop, test, k=10, threshold=None, train=train)
    rng = np.random.default_rng(0)
    rand = Popularity().fit(train)
    rand._state = type(rand._state)(**{**vars(rand._state),
                                       "item_bias": rng.random(rand.item_ids_.size)})
    chance = M.ranking_metrics(rand, test, k=10, threshold=None, train=train)
    assert got["ndcg"] > 2 * chance["ndcg"] and got["recall"] > 2 * chance["recall"]


def test_docstring_example_runs():
    failures, tried = doctest.testmod(_baseline, verbose=False)
    assert tried >= 5 and failures == 0


def test_metrics_rank_by_fractional_weighted_counts():
    """Weights below 1 make fractional counts; the metrics rank an unknown user by them
    as recommend does (they were once cast to integers: all 0, ranked in id order)."""
    pop = Popularity().fit((np.array(["a", "b", "c"]), np.array(["X", "Y", "Z"])),
                           sample_weight=[0.2, 0.6, 0.1])
    assert pop.recommend("new", n=1)[0].tolist() == ["Y"]
    test = (np.array(["new"]), np.array(["Y"]))
    assert M.ranking_metrics(pop, test, k=1, threshold=None, exclude_train=False)["ndcg"] == 1.0
    ids, _ = M.top_k_items(pop, ["new"], k=3)
    assert ids.tolist() == [["Y", "X", "Z"]]
