"""mfsgd.metrics: RMSE/MAE, ranking metrics at k (hand-computed and brute-force), coverage."""

import math
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import pytest

from mfsgd import MatrixFactorization, NotFittedError
from mfsgd import metrics as M
from mfsgd.datasets import make_ratings
from mfsgd.model_selection import train_test_split

LOG2 = math.log2


# ---------------------------------------------------------------------- rmse / mae
def test_rmse_mae_values():
    t = np.array([4.0, 3.0, 5.0, 1.0])
    p = np.array([3.5, 3.0, 4.0, 2.0])
    assert M.rmse(t, p) == pytest.approx(math.sqrt((0.25 + 0 + 1 + 1) / 4))
    assert M.mae(t, p) == pytest.approx((0.5 + 0 + 1 + 1) / 4)
    assert M.rmse(t, t) == 0.0 and M.mae([1, 2], [2, 4]) == 1.5
    assert isinstance(M.rmse(t.astype(np.float32), p), float)


def test_rmse_mae_match_model_errors(small_data):
    u, i, r = small_data
    m = MatrixFactorization(n_factors=4, n_epochs=3, random_state=0).fit((u, i, r))
    pred = m.predict((u, i))
    err = pred - r.astype(np.float64)
    assert M.rmse(r, pred) == pytest.approx(np.sqrt(np.mean(err ** 2)), rel=1e-12)
    assert M.mae(r, pred) == pytest.approx(np.mean(np.abs(err)), rel=1e-12)


@pytest.mark.parametrize("t,p,exc,msg", [
    ([1, 2], [1], ValueError, r"same length; y_true has 2, y_pred has 1"),
    ([], [], ValueError, r"empty"),
    ([1, np.nan], [1, 2], ValueError, r"y_true has 1 non-finite values \(first at position 1"),
    ([1, 2], [1, np.inf], ValueError, r"y_pred has 1 non-finite"),
    (["a", "b"], [1, 2], TypeError, r"y_true must be numeric"),
    ([True, False], [1, 2], TypeError, r"got booleans"),
    (np.ones((2, 2)), [1, 2], ValueError, r"y_true must be 1-D"),
])
def test_rmse_mae_errors(t, p, exc, msg):
    for f in (M.rmse, M.mae):
        with pytest.raises(exc, match=msg):
            f(t, p)


# ---------------------------------------------------------------------- hand-computed
def toy_model():
    """Five items A..E with item biases 0.5 .. 0.1 and zero factors: every known user ranks
    A > B > C > D > E."""
    return SimpleNamespace(
        global_mean_=3.0, user_bias_=np.zeros(3), item_bias_=np.array([.5, .4, .3, .2, .1]),
        user_factors_=np.zeros((3, 1)), item_factors_=np.zeros((5, 1)),
        user_ids_=np.array(["u1", "u2", "u3"]), item_ids_=np.array(list("ABCDE")))


TOY_TEST = (np.array(["u1", "u1", "u1", "u2", "u3"]), np.array(["A", "C", "D", "E", "B"]),
            np.array([5.0, 4.0, 2.0, 4.5, 3.0]))


def test_hand_example_without_exclusion():
    # k=3, threshold 4: u1 relevant {A, C}, u2 {E}, u3 has none (not evaluated).
    # u1's list A B C: hits 1 0 1. u2's list A B C: no hit.
    m = M.ranking_metrics(toy_model(), TOY_TEST, k=3, threshold=4.0, exclude_train=False)
    ndcg_u1 = (1 + 1 / LOG2(4)) / (1 + 1 / LOG2(3))
    assert m["n_users"] == 2
    assert m["precision"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["recall"] == pytest.approx((1 + 0) / 2)
    assert m["hit_rate"] == pytest.approx(0.5)
    assert m["ndcg"] == pytest.approx(ndcg_u1 / 2)
    assert m["map"] == pytest.approx(((1 + 2 / 3) / 2) / 2)
    assert m["coverage"] == pytest.approx(3 / 5)


def test_hand_example_with_training_items_excluded():
    train = (np.array(["u2", "u2", "u1"]), np.array(["A", "B", "B"]))
    # u1's candidates A C D E -> list A C D: hits 1 1 0. u2's: C D E -> list C D E: hit at 3.
    m = M.ranking_metrics(toy_model(), TOY_TEST, k=3, train=train)
    assert m["precision"] == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert m["recall"] == pytest.approx(1.0)
    assert m["hit_rate"] == pytest.approx(1.0)
    assert m["ndcg"] == pytest.approx((1.0 + (1 / LOG2(4)) / 1) / 2)
    assert m["map"] == pytest.approx((1.0 + 1 / 3) / 2)
    assert m["coverage"] == pytest.approx(4 / 5)
    for name, f in [("precision", M.precision_at_k), ("recall", M.recall_at_k),
                    ("ndcg", M.ndcg_at_k), ("map", M.map_at_k), ("hit_rate", M.hit_rate_at_k)]:
        assert f(toy_model(), TOY_TEST, k=3, train=train) == pytest.approx(m[name])


def test_hand_example_k_beyond_catalogue_unknown_items_and_cold_users():
    users, items, ratings = TOY_TEST
    test = (np.append(users, ["u2", "new"]), np.append(items, ["Z", "A"]),
            np.append(ratings, [5.0, 4.0]))
    # k=10 > 5 items. u1: hits at ranks 1, 3 of {A, C}. u2: {E, Z}, Z unknown: hit at rank 5.
    # "new" (not in the model) is ranked by item bias: A first -> hit at rank 1.
    m = M.ranking_metrics(toy_model(), test, k=10, exclude_train=False)
    assert m["n_users"] == 3
    assert m["precision"] == pytest.approx((2 / 10 + 1 / 10 + 1 / 10) / 3)
    assert m["recall"] == pytest.approx((1 + 1 / 2 + 1) / 3)
    ndcg = [(1 + 1 / LOG2(4)) / (1 + 1 / LOG2(3)), (1 / LOG2(6)) / (1 + 1 / LOG2(3)), 1.0]
    assert m["ndcg"] == pytest.approx(np.mean(ndcg))
    ap = [(1 + 2 / 3) / 2, (1 / 5) / 2, 1.0]
    assert m["map"] == pytest.approx(np.mean(ap))


def test_hand_example_threshold_none_counts_every_held_out_item():
    m = M.ranking_metrics(toy_model(), TOY_TEST[:2], k=3, threshold=None, exclude_train=False)
    assert m["n_users"] == 3
    # u1 {A, C, D}: hits 1 0 1; u2 {E}: none; u3 {B}: hit at 2.
    assert m["recall"] == pytest.approx((2 / 3 + 0 + 1) / 3)
    assert m["map"] == pytest.approx(((1 + 2 / 3) / 3 + 0 + 1 / 2) / 3)


# ---------------------------------------------------------------------- brute force
def brute_force(model, test, train, k, threshold, exclude):
    """Per-user metrics with plain Python loops, written from the definitions."""
    P = np.asarray(model.user_factors_, dtype=np.float64)
    Q = np.asarray(model.item_factors_, dtype=np.float64)
    bi = np.asarray(model.item_bias_, dtype=np.float64)
    row = {u: j for j, u in enumerate(model.user_ids_.tolist())}
    item_ids = model.item_ids_.tolist()
    rel = defaultdict(set)
    for u, i, r in zip(*[np.asarray(c).tolist() for c in test], strict=True):
        if threshold is None or r >= threshold:
            rel[u].add(i)
    seen = defaultdict(set)
    if exclude:
        for u, i in zip(np.asarray(train[0]).tolist(), np.asarray(train[1]).tolist(), strict=True):
            seen[u].add(i)
    out = defaultdict(list)
    recommended = set()
    counts = np.asarray(model.item_counts_, dtype=np.float64)
    for u in sorted(rel):
        # an unknown user is served the most popular items (training interactions)
        s = bi + Q @ P[row[u]] if u in row else counts
        cands = [j for j in range(len(item_ids)) if item_ids[j] not in seen[u]]
        ranked = sorted(cands, key=lambda j: (-s[j], j))[:k]
        recommended.update(ranked)
        h = [1.0 if item_ids[j] in rel[u] else 0.0 for j in ranked]
        n_rel = len(rel[u])
        out["precision"].append(sum(h) / k)
        out["recall"].append(sum(h) / n_rel)
        out["hit_rate"].append(1.0 if sum(h) > 0 else 0.0)
        dcg = sum(x / LOG2(j + 2) for j, x in enumerate(h))
        idcg = sum(1 / LOG2(j + 2) for j in range(min(k, n_rel)))
        out["ndcg"].append(dcg / idcg)
        ap = sum(h[j] * sum(h[:j + 1]) / (j + 1) for j in range(len(h)))
        out["map"].append(ap / min(k, n_rel))
    out = {name: np.array(v) for name, v in out.items()}
    out["coverage"] = len(recommended) / len(item_ids)
    out["users"] = sorted(rel)
    return out


@pytest.fixture(scope="module")
def fitted_split():
    data = make_ratings(200, 120, 5000, rank=4, noise=0.3, random_state=11, as_frame=False)
    train, test = train_test_split(data, test_size=0.25, random_state=1)
    model = MatrixFactorization(n_factors=6, n_epochs=8, learning_rate=0.02,
                                random_state=0).fit(train)
    u, i, r = test
    # a user the model never saw (ids go 0..199) and an item it never saw
    test = (np.append(u, [999, 999, 5]), np.append(i, [3, 7, 555]),
            np.append(r, [5.0, 4.5, 5.0]).astype(np.float32))
    return model, train, test


@pytest.mark.parametrize("k", [1, 5, 17, 500])
@pytest.mark.parametrize("exclude", [True, False])
@pytest.mark.parametrize("threshold", [3.5, None])
def test_matches_brute_force_per_user(fitted_split, k, exclude, threshold):
    model, train, test = fitted_split
    want = brute_force(model, test, train, k, threshold, exclude)
    got = M.ranking_arrays(model, test, k, threshold, exclude, train)
    assert got["users"].tolist() == want["users"]
    for name in ("precision", "recall", "hit_rate", "ndcg", "map"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=1e-15, err_msg=name)
    assert got["coverage"] == pytest.approx(want["coverage"])
    public = M.ranking_metrics(model, test, k=k, threshold=threshold, exclude_train=exclude,
                               train=train)
    for name in ("precision", "recall", "hit_rate", "ndcg", "map"):
        assert public[name] == pytest.approx(want[name].mean(), rel=1e-12)
    assert public["n_users"] == len(want["users"])
    assert 0.0 < public["ndcg"] <= 1.0


def test_small_blocks_give_the_same_result(fitted_split):
    """Blocks of 7 users (exclusions crossing block borders) equal one big block."""
    model, train, test = fitted_split
    big = M.ranking_arrays(model, test, 10, 3.5, True, train)
    small = M.ranking_arrays(model, test, 10, 3.5, True, train,
                             block_elements=7 * model.item_factors_.shape[0])
    for name in ("precision", "recall", "hit_rate", "ndcg", "map"):
        np.testing.assert_array_equal(big[name], small[name])


def test_exclusion_matters_and_a_trained_model_beats_random(fitted_split):
    model, train, test = fitted_split
    with_ex = M.ranking_metrics(model, test, k=10, train=train)
    without = M.ranking_metrics(model, test, k=10, exclude_train=False)
    assert with_ex["recall"] > without["recall"]
    # A random ranking: same model shape with random factors and biases.
    rng = np.random.default_rng(0)
    rand = SimpleNamespace(global_mean_=3.5, user_bias_=np.zeros(len(model.user_ids_)),
                           item_bias_=rng.normal(size=len(model.item_ids_)),
                           user_factors_=rng.normal(size=model.user_factors_.shape),
                           item_factors_=rng.normal(size=model.item_factors_.shape),
                           user_ids_=model.user_ids_, item_ids_=model.item_ids_)
    assert with_ex["ndcg"] > M.ranking_metrics(rand, test, k=10, train=train)["ndcg"]


def test_dataframe_input_and_custom_columns(fitted_split):
    pd = pytest.importorskip("pandas")
    model, train, test = fitted_split
    cols = dict(user_col="who", item_col="what", rating_col="stars")
    m2 = MatrixFactorization(**{**model.get_params(), **cols}).fit(
        pd.DataFrame({"who": train[0], "what": train[1], "stars": train[2]}))
    df_test = pd.DataFrame({"who": test[0], "what": test[1], "stars": test[2]})
    df_train = pd.DataFrame({"who": train[0], "what": train[1], "stars": train[2]})
    a = M.ranking_metrics(m2, df_test, k=5, train=df_train)
    b = M.ranking_metrics(model, test, k=5, train=train)
    assert a == b  # same seed and data: bit-identical model, identical metrics


# ---------------------------------------------------------------------- top_k_items
def test_top_k_items_matches_brute_force_and_scores_are_predictions(fitted_split):
    model, train, _ = fitted_split
    users = np.array([3, 0, 3, 999])  # repeat and an unknown user
    items, scores = M.top_k_items(model, users, k=6, train=train)
    assert items.shape == scores.shape == (4, 6)
    np.testing.assert_array_equal(items[0], items[2])
    seen = defaultdict(set)
    for u, i in zip(train[0].tolist(), train[1].tolist(), strict=True):
        seen[u].add(i)
    P, Q = model.user_factors_.astype(float), model.item_factors_.astype(float)
    for row, u in enumerate(users.tolist()):
        # an unknown user is served the most popular items (training interactions)
        s = (model.item_bias_ + Q @ P[list(model.user_ids_).index(u)] if u in
             model.user_ids_ else model.item_counts_.astype(float))
        order = [j for j in np.argsort(-s, kind="stable")
                 if model.item_ids_[j] not in seen[u]][:6]
        assert items[row].tolist() == model.item_ids_[order].tolist()
    # scores are the unclipped predictions mu + b_u + b'_j + u . v (the interaction
    # counts for an unknown user)
    uid, iid = model.user_ids_.tolist(), model.item_ids_.tolist()
    for row, u in enumerate(users.tolist()):
        for j, item in enumerate(items[row].tolist()):
            c = iid.index(item)
            want = model.global_mean_ + model.item_bias_[c]
            if u not in uid:
                want = float(model.item_counts_[c])
            if u in uid:
                r = uid.index(u)
                want += model.user_bias_[r] + float(P[r] @ Q[c])
            assert scores[row, j] == pytest.approx(want, rel=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all()


def test_top_k_items_pads_with_minus_inf_when_candidates_run_out():
    model = toy_model()
    train = (np.array(["u1"] * 4), np.array(list("ABCD")))
    items, scores = M.top_k_items(model, ["u1", "u2"], k=3, train=train)
    assert items[0, 0] == "E" and np.isinf(scores[0, 1:]).all() and np.isfinite(scores[0, 0])
    assert items[1].tolist() == ["A", "B", "C"] and np.isfinite(scores[1]).all()
    assert scores[1, 0] == pytest.approx(3.5)  # mu + b_u + b'_A
    assert M.coverage(items[np.isfinite(scores)], model) == pytest.approx(4 / 5)


def test_hand_example_k_beyond_int64_is_the_whole_catalogue():
    """A K NumPy cannot hold (2**63 and beyond) ranks every item, as k=5 does here;
    only precision, hits / K, differs."""
    users, items, ratings = TOY_TEST
    test = (np.append(users, "u2"), np.append(items, "Z"), np.append(ratings, 5.0))
    whole = M.ranking_metrics(toy_model(), test, k=5, exclude_train=False)
    for k in (2**63, 10**20, 10**400):
        m = M.ranking_metrics(toy_model(), test, k=k, exclude_train=False)
        for name in ("recall", "ndcg", "map", "hit_rate", "coverage", "n_users"):
            assert m[name] == pytest.approx(whole[name]), (k, name)
        assert m["precision"] == pytest.approx((2 / k + 1 / k) / 2, abs=1e-300)
        assert M.ndcg_at_k(toy_model(), test, k=k, exclude_train=False) == pytest.approx(
            whole["ndcg"])


def test_ranking_scorer_k_beyond_int64():
    from mfsgd import Popularity

    pop = Popularity().fit((np.array(["u1", "u2"]), np.array(["A", "B"])))
    X = np.array([["u1", "B"], ["u2", "A"], ["u3", "B"]])
    for kind in ("ndcg", "map", "recall", "coverage"):
        huge = M.ranking_scorer(f"{kind}@{'9' * 20}")(pop, X)
        assert huge == pytest.approx(M.ranking_scorer(f"{kind}@2")(pop, X)), kind
    assert M.ranking_scorer(f"precision@{2**64}")(pop, X) == pytest.approx(1 / 2**64)


def test_score_of_a_ranking_model_whose_eval_metric_has_k_beyond_int64(fitted_split):
    _, train, test = fitted_split
    model = MatrixFactorization(loss="bpr", n_factors=4, n_epochs=2, random_state=0,
                                eval_metric="ndcg@" + "9" * 20).fit(train[:2])
    huge = model.score(test[:2])
    assert huge == model.set_params(eval_metric="ndcg@1000000").score(test[:2]) and huge > 0


# ---------------------------------------------------------------------- coverage
def test_coverage_scores_drop_the_empty_slots():
    # u1 has rated A..D: its list at k=3 is E and two -inf slots holding placeholder ids.
    model = toy_model()
    items, scores = M.top_k_items(model, ["u1"], k=3, train=(["u1"] * 4, list("ABCD")))
    assert items[0, 0] == "E" and np.isinf(scores[0, 1:]).all()
    assert M.coverage(items, model, scores=scores) == pytest.approx(1 / 5)
    assert M.coverage(items[np.isfinite(scores)], model) == pytest.approx(1 / 5)
    assert M.coverage([[1, 2], [2, 3]], 10, scores=[[0.9, 0.5], [0.7, -np.inf]]) == \
        pytest.approx(0.2)
    assert M.coverage(np.array([[1, 2]]), [1, 2], scores=np.array([[np.nan, 1]])) == 0.5


def test_coverage_scores_errors():
    with pytest.raises(ValueError, match=r"scores must have the shape of recommended_item_ids, "
                                         r"\(2, 2\); got \(4,\)"):
        M.coverage([[1, 2], [2, 3]], 10, scores=[1.0, 2.0, 3.0, 4.0])
    with pytest.raises(TypeError, match=r"scores must be numeric \(int or float\); got booleans"):
        M.coverage([[1, 2]], 10, scores=[[True, False]])
    with pytest.raises(ValueError, match=r"with scores=, recommended_item_ids must be one array"):
        M.coverage([[1, 2], [3]], 10, scores=[[1.0, 2.0], [3.0]])


def test_coverage_forms():
    assert M.coverage(np.array([[1, 2, 3], [3, 2, 1]]), 10) == pytest.approx(0.3)
    assert M.coverage([[1, 2], [2]], [1, 2, 3, 4]) == pytest.approx(0.5)
    assert M.coverage([["a"], ["z", "b", "a"]], ["a", "b", "c", "d"]) == pytest.approx(0.5)
    assert M.coverage([], 5) == 0.0
    assert M.coverage([4], np.arange(5)) == pytest.approx(0.2)


def test_coverage_takes_sets_and_generators_of_ids():
    # Review 7 finding 10: only which items occur counts, so any iterable of ids is taken.
    assert M.coverage({1, 2}, {1, 2, 3, 4}) == pytest.approx(0.5)
    assert M.coverage((j for j in [1, 2, 2]), 10) == pytest.approx(0.2)
    assert M.coverage([[1, 2], [3]], frozenset(range(6))) == pytest.approx(0.5)
    assert M.coverage(["a"], {"a": 0, "b": 1}.keys()) == pytest.approx(0.5)
    with pytest.raises(ValueError, match=r"^catalogue must be item ids; got a dict: pass "
                                         r"list\(d\) for its keys"):
        M.coverage([1], {1: "x", 2: "y"})
    with pytest.raises(ValueError, match=r"^with scores=, recommended_item_ids must be an array "
                                         r"of the scores' shape .*; got a set\.$"):
        M.coverage({1, 2}, 10, scores=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"^catalogue must be item ids \(a list, a set, an array "
                                         r"or a list of lists\); got a scalar"):
        M.coverage([1], "abc")


def test_top_k_items_users_must_be_a_list_or_an_array(fitted_split):
    # Row k of the result belongs to users[k]: a set or a generator has no positions.
    model, train, _ = fitted_split
    for users, kind in (({0, 1}, "set"), ((x for x in [0, 1]), "generator")):
        with pytest.raises(ValueError, match=r"^users must be a list or a 1-D array of ids, as "
                                             rf"row k of the result belongs to users\[k\]; got "
                                             rf"a {kind}, which is not a sequence\."):
            M.top_k_items(model, users, train=train)
    with pytest.raises(ValueError, match=r"^users must be a list or a 1-D array of ids, not one "
                                         r"id; got 0\. Pass \[0\]\.$"):
        M.top_k_items(model, 0)


def test_coverage_errors():
    with pytest.raises(ValueError, match=r"3 distinct items, more than the catalogue size 2"):
        M.coverage([1, 2, 3], 2)
    with pytest.raises(ValueError, match=r"catalogue must be an int >= 1; got 0"):
        M.coverage([1], 0)
    with pytest.raises(ValueError, match=r"catalogue is empty"):
        M.coverage([1], [])
    with pytest.raises(NotFittedError):
        M.coverage([1], MatrixFactorization())


# ---------------------------------------------------------------------- errors
def test_ranking_errors(fitted_split):
    model, train, test = fitted_split
    with pytest.raises(ValueError, match=r"exclude_train=True needs the training ratings: pass "
                                         r"train="):
        M.ranking_metrics(model, test)
    with pytest.raises(ValueError, match=r"k must be an int >= 1; got 0"):
        M.ranking_metrics(model, test, k=0, train=train)
    with pytest.raises(TypeError, match=r"threshold must be a finite number"):
        M.ranking_metrics(model, test, threshold="4", train=train)
    with pytest.raises(ValueError, match=r"threshold must be a finite number .*; got an int "
                                         r"too large for float64"):
        M.ranking_metrics(model, test, threshold=10**400, train=train)
    with pytest.raises(ValueError, match=r"no test rating is >= threshold 9.0"):
        M.ranking_metrics(model, test, threshold=9.0, train=train)
    with pytest.raises(ValueError, match=r"test has no ratings"):
        M.ranking_metrics(model, test[:2], train=train)
    with pytest.raises(TypeError, match=r"exclude_train must be True or False"):
        M.ranking_metrics(model, test, exclude_train="yes", train=train)
    with pytest.raises(NotFittedError, match=r"not fitted yet"):
        M.ndcg_at_k(MatrixFactorization(), test, train=train)
    with pytest.raises(TypeError, match=r"model's ids are integers; got str"):
        M.ranking_metrics(model, (np.array(["a"]), np.array([1]), np.array([5.0])),
                          exclude_train=False)


def test_test_ids_of_the_wrong_type_are_blamed_on_test_not_train(fitted_split):
    # Review 7 finding 5: with train=, str test users on an int model were reported as
    # "train users: this model's ids are strings; got int64 ids": the train users were
    # checked against the test users before the test users against the model.
    model, train, test = fitted_split
    bad_test = (test[0].astype(str), test[1], test[2])
    for kwargs in ({"train": train}, {"exclude_train": False}):
        with pytest.raises(TypeError, match=r"^test users: this model's ids are integers; "
                                            r"got str"):
            M.ranking_metrics(model, bad_test, **kwargs)
    with pytest.raises(TypeError, match=r"^users: this model's ids are integers; got str"):
        M.top_k_items(model, ["0", "1"], train=train)
    # Train ids of the wrong type are still train's fault, and the model's type is right.
    bad_train = (train[0].astype(str), train[1], train[2])
    with pytest.raises(TypeError, match=r"^train users: this model's ids are integers; "
                                        r"got str"):
        M.ranking_metrics(model, test, train=bad_train)
    with pytest.raises(TypeError, match=r"^train users: this model's ids are integers; "
                                        r"got str"):
        M.top_k_items(model, [0, 1], train=bad_train)


def test_a_model_without_the_fitted_attributes_is_a_type_error(fitted_split):
    model, train, test = fitted_split
    with pytest.raises(TypeError, match=r"model must be a fitted mfsgd model "
                                        r"\(MatrixFactorization or Popularity\) or an object "
                                        r"with global_mean_, .*; got object, which has no "
                                        r"global_mean_, user_bias_"):
        M.ranking_metrics(object(), test, train=train)
    partial = SimpleNamespace(**{a: getattr(model, a) for a in (
        "global_mean_", "user_bias_", "item_bias_", "user_factors_", "item_factors_",
        "user_ids_")})
    with pytest.raises(TypeError, match=r"got SimpleNamespace, which has no item_ids_\.$"):
        M.ndcg_at_k(partial, test, train=train)
    with pytest.raises(TypeError, match=r"model must be a fitted mfsgd model"):
        M.top_k_items(object(), [1, 2])
    with pytest.raises(TypeError, match=r"estimator must be a fitted mfsgd model .* got "
                                        r"object, which has no item_ids_, recommend_all"):
        M.ranking_scorer("ndcg@5")(object(), np.column_stack(test[:2]))
    partial.item_ids_ = model.item_ids_  # with every attribute it is evaluated
    assert M.ndcg_at_k(partial, test, train=train) == M.ndcg_at_k(model, test, train=train)


# ---------------------------------------------------------------------- ranking_scorer
def test_ranking_scorer_equals_ranking_metrics(fitted_split):
    """On a float64 model the scorer's lists (from recommend_all, excluding the model's
    seen record) give exactly ranking_metrics with train= the training data."""
    _, train, test = fitted_split
    model = MatrixFactorization(n_factors=6, n_epochs=8, learning_rate=0.02, dtype=np.float64,
                                random_state=0).fit(train)
    X_test, y_test = np.column_stack(test[:2]), test[2]
    for threshold in (3.5, None):
        for k in (1, 10, 500):
            want = M.ranking_metrics(model, test, k=k, threshold=threshold, train=train)
            for name in ("precision", "recall", "ndcg", "map", "hit_rate", "coverage"):
                scorer = M.ranking_scorer(f"{name}@{k}", threshold=threshold)
                assert scorer(model, X_test, y_test) == want[name], (name, k, threshold)
    # exclusions matter: without them the seen items crowd the lists
    with_ex = M.ranking_scorer("recall@10")(model, X_test)
    without = M.ranking_scorer("recall@10", exclude_train=False)(model, X_test)
    assert with_ex == M.ranking_metrics(model, test, k=10, threshold=None, train=train)[
        "recall"] and without < with_ex


def test_ranking_scorer_hand_computed_on_popularity():
    from mfsgd import Popularity

    train = (np.array(["u1", "u1", "u2", "u3"]), np.array(["A", "B", "B", "C"]))
    pop = Popularity().fit(train)  # B 2, A 1, C 1: order B A C
    X = np.array([["u1", "C"], ["u2", "A"], ["u2", "C"], ["new", "C"]])
    y = np.array([5.0, 2.0, 4.0, 4.0])
    # threshold 4: u1 {C}, u2 {C}, new {C}. Lists at k=1: u1 C (A, B seen), u2 A, new B.
    scorer = M.ranking_scorer("hit_rate@1", threshold=4.0)
    assert scorer(pop, X, y) == pytest.approx(1 / 3)
    # k=2: u1 C, u2 A C (hit at 2), new B A. ndcg: 1, 1/log2(3), 0
    assert M.ranking_scorer("ndcg@2", threshold=4.0)(pop, X, y) == pytest.approx(
        (1 + 1 / LOG2(3)) / 3)
    # without threshold u2 has {A, C}: list A C -> ndcg 1
    assert M.ranking_scorer("ndcg@2")(pop, X) == pytest.approx(2 / 3)


@pytest.mark.parametrize("args,exc,msg", [
    (("ndcg",), ValueError, r"metric must be '<name>@<k>' with name in \['precision'"),
    (("auc@10",), ValueError, r"got 'auc@10'"),
    ((10,), ValueError, r"got 10"),
    (("ndcg@0",), ValueError, r"metric 'ndcg@0': k must be >= 1"),
    # a trailing newline (which a "$" anchor lets through), non-ASCII digits, and more
    # digits than int() reads: the name error, not an int() message or a silent "ndcg@5"
    (("ndcg@5\n",), ValueError, r"got 'ndcg@5\\n'"),
    (("ndcg@\u0665",), ValueError, r"metric must be '<name>@<k>'"),
    ((f"ndcg@{'9' * 5000}",), ValueError, r"metric must be '<name>@<k>'"),
    (("ndcg@5", "4"), TypeError, r"threshold must be a finite number"),
    (("ndcg@5", 10**400), ValueError, r"threshold must be a finite number .*; got an int too "
                                      r"large for float64"),
    (("ndcg@5", None, "yes"), TypeError, r"exclude_train must be True or False"),
])
def test_ranking_scorer_errors(args, exc, msg):
    with pytest.raises(exc, match=msg):
        M.ranking_scorer(*args)


def test_ranking_scorer_call_errors_repr_and_pickle(fitted_split):
    import pickle

    model, _, test = fitted_split
    scorer = M.ranking_scorer("map@5", threshold=4.0)
    assert repr(scorer) == "ranking_scorer('map@5', threshold=4.0, exclude_train=True)"
    X = np.column_stack(test[:2])
    with pytest.raises(ValueError, match=r"X has no ratings, so threshold=4.0 cannot select "
                                         r"the relevant items; .* or pass y to the search's"):
        scorer(model, X)
    with pytest.raises(ValueError, match=r"no test rating is >= threshold 9.0"):
        M.ranking_scorer("map@5", threshold=9.0)(model, X, test[2])
    with pytest.raises(NotFittedError):
        scorer(MatrixFactorization(), X, test[2])
    back = pickle.loads(pickle.dumps(scorer))
    assert back(model, X, test[2]) == scorer(model, X, test[2])


def test_ranking_scorer_in_grid_search_selects_a_learning_model():
    """GridSearchCV with the scorer: a learning rate too small to move the random start
    ranks at chance and loses to a working one; each split's score equals the metric
    computed by hand on that split."""
    pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, KFold

    u, i, r = make_ratings(300, 150, 9000, rank=3, noise=0.3, random_state=4, as_frame=False)
    X = np.column_stack([u, i])
    base = MatrixFactorization(n_factors=4, n_epochs=10, dtype=np.float64, random_state=0)
    grid = {"learning_rate": [1e-6, 0.02]}
    cv = KFold(3, shuffle=True, random_state=0)
    scorer = M.ranking_scorer("ndcg@10", threshold=4.0)
    search = GridSearchCV(base, grid, scoring=scorer, cv=cv, refit=False).fit(X, r)
    assert search.best_params_ == {"learning_rate": 0.02}
    scores = search.cv_results_["mean_test_score"]
    assert scores[1] > 1.5 * scores[0]
    tr, te = next(cv.split(X))
    for j, lr in enumerate(grid["learning_rate"]):
        m = clone(base).set_params(learning_rate=lr).fit(X[tr], r[tr])
        want = M.ndcg_at_k(m, (u[te], i[te], r[te]), k=10, threshold=4.0,
                           train=(u[tr], i[tr]))
        assert search.cv_results_["split0_test_score"][j] == want


def test_ranking_scorer_with_popularity_and_a_dataframe():
    pd = pytest.importorskip("pandas")
    pytest.importorskip("sklearn")
    from sklearn.model_selection import KFold, cross_val_score

    from mfsgd import Popularity

    u, i, r = make_ratings(200, 100, 4000, random_state=6, as_frame=False)
    X = pd.DataFrame({"userId": u, "movieId": i})
    cv = KFold(3, shuffle=True, random_state=1)
    got = cross_val_score(Popularity(), X, r, cv=cv, scoring=M.ranking_scorer("recall@10"))
    for f, (tr, te) in enumerate(cv.split(X)):
        pop = Popularity().fit((u[tr], i[tr]))
        assert got[f] == M.recall_at_k(pop, (u[te], i[te]), k=10, threshold=None,
                                       train=(u[tr], i[tr]))


def _brute_auc(model, test, train, threshold):
    """AUC_u by its definition, pair by pair, in float64 (unknown users: the popular
    items' training counts, as recommend serves them)."""
    U, V = model.user_factors_.astype(float), model.item_factors_.astype(float)
    b = model.item_bias_.astype(float)
    col = {x: j for j, x in enumerate(model.item_ids_)}
    row = {x: k for k, x in enumerate(model.user_ids_)}
    counts = np.bincount([col[x] for x in train[1]], minlength=len(V)).astype(float)
    out = []
    u, i, r = test
    for user in np.unique(u[r >= threshold]):
        seen = {col[x] for x in train[1][train[0] == user] if x in col}
        liked = {col[x] for x, y in zip(i[u == user], r[u == user], strict=True)
                 if y >= threshold and x in col} - seen
        s = U[row[user]] @ V.T + b if user in row else counts
        pos = np.array([s[j] for j in liked])
        neg = np.array([s[j] for j in range(len(V)) if j not in seen and j not in liked])
        if pos.size and neg.size:
            out.append(sum((p > neg).sum() + 0.5 * (p == neg).sum() for p in pos)
                       / (pos.size * neg.size))
    return np.mean(out)


def test_auc_score_is_its_definition(fitted_split):
    """auc_score against the pairwise definition on a float64 model, with a user and an
    item the model never saw; a perfect and a reversed ranking give 1 and 0; random
    factors land near 0.5."""
    _, train, test = fitted_split
    m = MatrixFactorization(n_factors=6, n_epochs=8, learning_rate=0.02, random_state=0,
                            dtype=np.float64).fit(train)
    for threshold in (4.0, 3.0):
        assert M.auc_score(m, test, threshold, train=train) == pytest.approx(
            _brute_auc(m, test, train, threshold), rel=1e-12)
    # every item relevant but one per user -> pairs only against that one
    u = np.repeat(np.arange(5), 2)
    toy = MatrixFactorization(n_factors=1, n_epochs=1, random_state=0,
                              dtype=np.float64).fit((u, np.tile([0, 1], 5), np.ones(10) * 3))
    st = toy._state
    from dataclasses import replace
    for sign, want in ((1, 1.0), (-1, 0.0)):
        toy._state = replace(st, user_factors=np.ones_like(st.user_factors),
                             item_factors=sign * np.array([[2.0], [1.0]]),
                             item_bias=np.zeros(2))
        assert M.auc_score(toy, (u[::2], np.zeros(5, int), np.full(5, 5.0)),
                           exclude_train=False) == want
    noise = MatrixFactorization(n_factors=6, n_epochs=1, learning_rate=1e-12, init_std=1.0,
                                biased=False, random_state=0).fit(train)
    assert abs(M.auc_score(noise, test, train=train) - 0.5) < 0.05
    with pytest.raises(ValueError, match="needs the training ratings"):
        M.auc_score(m, test)
    with pytest.raises(ValueError, match="no test rating is >= threshold"):
        M.auc_score(m, test, 99.0, train=train)


def test_auc_scorer_equals_auc_score(fitted_split):
    """ranking_scorer("auc") ranks the estimator's whole lists (recommend_all): on a float64
    model it is auc_score with train= the training data, unknown user and item included,
    for a model and for Popularity; it serves GridSearchCV."""
    from mfsgd import Popularity

    _, train, test = fitted_split
    m = MatrixFactorization(n_factors=6, n_epochs=8, learning_rate=0.02, random_state=0,
                            dtype=np.float64).fit(train)
    X_test, y_test = np.column_stack(test[:2]), test[2]
    for model in (m, Popularity().fit(train)):
        for threshold in (4.0, None):
            want = M.auc_score(model, test, threshold, train=train)
            got = M.ranking_scorer("auc", threshold=threshold)(model, X_test, y_test)
            assert got == pytest.approx(want, rel=1e-12), (model, threshold)
    without = M.auc_score(m, test, exclude_train=False)
    assert M.ranking_scorer("auc", threshold=4.0, exclude_train=False)(
        m, X_test, y_test) == pytest.approx(without, rel=1e-12)
    assert "auc" in repr(M.ranking_scorer("auc"))
    with pytest.raises(ValueError, match="or 'auc'"):
        M.ranking_scorer("auc@10")
    pytest.importorskip("sklearn")
    from sklearn.model_selection import GridSearchCV, KFold

    u, i, r = train
    search = GridSearchCV(MatrixFactorization(n_epochs=8, learning_rate=0.02, random_state=0),
                          {"n_factors": [2, 6]}, scoring=M.ranking_scorer("auc", threshold=4.0),
                          cv=KFold(2, shuffle=True, random_state=0))
    search.fit(np.column_stack([u, i]), r)
    assert 0.5 < search.best_score_ <= 1.0


def test_ranking_metrics_per_user_are_each_users_values():
    """per_user=True returns each evaluated user's values (review 26: only means, where
    significance tests and segments need the users' own), in the order of ``users``;
    their means are the default's values, and each user's equals its top-k list as
    ``recommend`` makes it, scored by the documented definitions."""
    from mfsgd.model_selection import train_test_split

    data = make_ratings(120, 80, 3000, random_state=3, as_frame=False)
    train, test = train_test_split(data, random_state=0)
    m = MatrixFactorization(n_factors=6, n_epochs=4, random_state=0).fit(train)
    means = M.ranking_metrics(m, test, k=5, train=train)
    each = M.ranking_metrics(m, test, k=5, train=train, per_user=True)
    assert each["n_users"] == means["n_users"] == each["users"].size
    assert each["coverage"] == means["coverage"]
    for name in ("precision", "recall", "ndcg", "map", "hit_rate"):
        assert each[name].shape == each["users"].shape
        assert float(np.mean(each[name])) == means[name]
    tu, ti, tr = test
    for pos in range(0, each["users"].size, 7):
        u = each["users"][pos]
        rel = set(ti[(tu == u) & (tr >= 4)].tolist())
        top = m.recommend(u, n=5)[0].tolist()
        hits = [j in rel for j in top]
        assert each["n_relevant"][pos] == len(rel)
        assert each["precision"][pos] == pytest.approx(sum(hits) / 5)
        assert each["recall"][pos] == pytest.approx(sum(hits) / len(rel))
        assert each["hit_rate"][pos] == float(any(hits))
        dcg = sum(h / np.log2(j + 2) for j, h in enumerate(hits))
        idcg = sum(1 / np.log2(j + 2) for j in range(min(5, len(rel))))
        assert each["ndcg"][pos] == pytest.approx(dcg / idcg)
    with pytest.raises(TypeError, match="per_user must be True or False"):
        M.ranking_metrics(m, test, train=train, per_user="yes")
