"""What a service holding fitted models relies on (review 28): telling personalised users
from cold ones, caches that stay with their state and never block other models, the
popularity list of unknown users kept rather than recounted per call."""

import threading

import numpy as np
import pytest

from mfsgd import MatrixFactorization, _cli
from mfsgd.datasets import make_ratings


@pytest.fixture(scope="module")
def data():
    return make_ratings(200, 80, 4000, rank=4, noise=0.2, random_state=7, as_frame=False)


def with_idle_user(data):
    """The data plus user 10**6, whose every rating is below 3 (min_rating=3 drops them)."""
    u, i, r = data
    return (np.r_[u, [10**6] * 3], np.r_[i, i[:3]], np.r_[r, [1.0, 2.0, 1.0]])


def test_known_users_tells_personalised_from_popular_lists(data):
    m = MatrixFactorization(loss="warp", n_factors=4, n_epochs=3, random_state=0,
                            min_rating=3).fit(with_idle_user(data))
    assert 10**6 in m.user_ids_ and m.user_counts_[m.user_ids_ == 10**6][0] == 0
    some = m.user_ids_[m.user_counts_ > 0][:3].tolist()
    got = m.known_users([*some, 10**6, 10**9])
    assert got.dtype == bool and got.tolist() == [True, True, True, False, False]
    assert m.known_users(some[0]) is True and m.known_users(10**9) is False
    assert m.known_users(np.int64(some[1])) is True
    # the idle and the unknown user are served what known_users says: the popular list
    popular = m.recommend(10**9, n=5, exclude_seen=False)[0]
    assert np.array_equal(m.recommend(10**6, n=5, exclude_seen=False)[0], popular)
    assert not np.array_equal(m.recommend(some[0], n=5, exclude_seen=False)[0], popular)
    assert m.known_items(m.item_ids_[:2].tolist() + [10**9]).tolist() == [True, True, False]
    assert m.known_users([]).shape == (0,)
    m.fold_in(([10**9] * 4, m.item_ids_[:4], [5.0] * 4))  # a fold-in makes a user known
    assert m.known_users(10**9) is True
    with pytest.raises(TypeError, match="ids are integers; got strings"):
        m.known_users("u1")
    with pytest.raises(ValueError, match="got a set"):
        m.known_users({1, 2})
    with pytest.raises(ValueError, match="got a generator"):
        m.known_items(x for x in [1])


def test_cli_refuses_a_user_without_interactions_as_known_users_says(data, tmp_path, capsys):
    m = MatrixFactorization(loss="warp", n_factors=4, n_epochs=3, random_state=0,
                            min_rating=3).fit(with_idle_user(data))
    path = str(tmp_path / "m.mfsgd")
    m.save(path)
    assert _cli.main(["recommend", path, str(10**6)]) == 2
    assert "has no training interaction (only rows below --min-rating)" in \
        capsys.readouterr().err
    assert _cli.main(["recommend", path, str(10**6), "--allow-unknown", "--json"]) == 0
    assert '"known": false' in capsys.readouterr().out
    users = tmp_path / "users.txt"
    users.write_text(f"{int(m.user_ids_[0])}\n{10**6}\n")
    assert _cli.main(["recommend-all", path, "--users", str(users)]) == 2
    assert "1 of the 2 users have no training interaction" in capsys.readouterr().err


def test_unknown_users_list_is_kept_with_the_state_and_follows_fold_in(data):
    m = MatrixFactorization(n_factors=4, n_epochs=3, random_state=0).fit(data)
    st = m._state
    assert st.item_counts is None  # counted from the seen record
    a = st.support("item")
    assert a is st.support("item") and not a.flags.writeable  # kept, not recounted
    item = m.item_ids_[np.argmin(m.item_counts_)]
    m.fold_in(([10**7 + k for k in range(50)], [item] * 50, [4.0] * 50))
    counts = m.item_counts_
    assert counts[m.item_ids_ == item][0] == a[m.item_ids_ == item][0] + 50
    want = m.item_ids_[np.argsort(-counts, kind="stable")[:5]]
    assert np.array_equal(m.recommend(10**9, n=5, exclude_seen=False)[0], want)


def test_a_state_building_a_cache_does_not_block_other_models(data):
    a = MatrixFactorization(n_factors=4, n_epochs=2, random_state=0).fit(data)._state
    b = MatrixFactorization(n_factors=4, n_epochs=2, random_state=1).fit(data)._state
    inside, release = threading.Event(), threading.Event()

    def slow():
        inside.set()
        assert release.wait(20)
        return 1

    t = threading.Thread(target=a.derived, args=("slow", slow))
    t.start()
    try:
        assert inside.wait(20)
        done = []
        other = threading.Thread(target=lambda: done.append(b.derived("quick", lambda: 2)))
        other.start()
        other.join(10)
        assert done == [2]  # served while the first model's build still runs
    finally:
        release.set()
        t.join(20)
    assert a.derived("slow", lambda: 3) == 1


def test_item_fold_in_with_a_user_without_interactions_keeps_similarity_right(data):
    """Review 29: an item fold-in listing a user known only from low rows carried support
    counts that counted that pair, so similar_users compared the user's zero factors and
    min_support let rarer items through. The support is now the state's counts."""
    import copy

    m = MatrixFactorization(loss="bpr", n_factors=4, n_epochs=3, random_state=0,
                            min_rating=3).fit(with_idle_user(data))
    oracle = copy.deepcopy(m)  # keeps no derived arrays
    m.similar_users(m.user_ids_[0], n=5)
    m.similar_items(m.item_ids_[0], n=5, min_support=2)
    new = ([10**6, m.user_ids_[0], m.user_ids_[1]], [10**7] * 3, [5.0] * 3)
    for x in (m, oracle):
        x.fold_in(new, side="item")
    with pytest.raises(ValueError, match="has no training interaction"):
        m.similar_users(10**6, n=5)
    assert np.array_equal(m.similar_users(m.user_ids_[0], n=50)[0],
                          oracle.similar_users(m.user_ids_[0], n=50)[0])
    for item, k in ((10**7, 2), (m.item_ids_[0], 3)):
        assert np.array_equal(m.similar_items(item, n=50, min_support=k)[0],
                              oracle.similar_items(item, n=50, min_support=k)[0])


def test_a_ranking_fold_in_keeps_one_start_whatever_the_reg(data):
    """The items' part of a ranking user fold-in is kept per reg; a service varying reg
    per call must not grow the model's memory without bound (review 29)."""
    u, i, _ = data
    m = MatrixFactorization(loss="bpr", n_factors=4, n_epochs=2, random_state=0).fit((u, i))
    for t, reg in enumerate([0.01, 0.02, 0.03, 0.01, 0.05]):
        m.fold_in(([10**6 + t] * 3, i[:3]), reg=reg)
        starts = m._state.derived_where(lambda key: key[0] == "softmax_start")
        assert len(starts) == 1 and next(iter(starts))[1] == reg


def test_recommend_all_serves_every_user_of_the_model_and_opens_json_only_when_ranked(
        data, tmp_path, capsys, monkeypatch):
    m = MatrixFactorization(loss="warp", n_factors=4, n_epochs=3, random_state=0,
                            min_rating=3).fit(with_idle_user(data))
    path = str(tmp_path / "m.mfsgd")
    m.save(path)
    assert _cli.main(["recommend-all", path, "-n", "2", "--json"]) == 0  # no --users
    import json

    out = json.loads(capsys.readouterr().out)["recommendations"]
    assert len(out) == len(m.user_ids_)
    assert [r["user"] for r in out if not r["known"]] == [10**6]

    def failing(*a, **k):
        raise ValueError("boom")

    monkeypatch.setattr(MatrixFactorization, "recommend_all", failing)
    assert _cli.main(["recommend-all", path, "--json"]) != 0
    assert capsys.readouterr().out == ""  # no half-opened document
