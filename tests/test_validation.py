"""One table of bad inputs: each gets TypeError/ValueError with a message naming it."""

import numpy as np
import pytest

from mfsgd import MatrixFactorization

U = np.array([1, 2, 3, 1, 2, 3])
I = np.array([10, 10, 20, 20, 30, 30])  # noqa: E741  (U, I, R: users, items, ratings)
R = np.array([4.0, 3.0, 5.0, 1.0, 2.0, 3.5])


def fit(X=None, y=None, **params):
    m = MatrixFactorization(**{"n_factors": 2, "n_epochs": 2, "random_state": 0, **params})
    return m.fit((U, I, R) if X is None else X, y)


BAD_DATA = [
    ("nan rating", (U, I, np.where(np.arange(6) == 2, np.nan, R)), ValueError,
     r"ratings has 1 non-finite .*position 2"),
    ("inf rating", (U, I, np.where(np.arange(6) == 4, np.inf, R)), ValueError,
     r"ratings has 1 non-finite .*position 4"),
    ("-inf ratings", (U, I, np.where(np.arange(6) > 3, -np.inf, R)), ValueError,
     r"ratings has 2 non-finite"),
    ("overflowing float32", (U, I, np.where(np.arange(6) == 0, 1e300, R)), ValueError,
     r"too large for float32"),
    ("string ratings", (U, I, np.array(["a"] * 6)), TypeError, r"ratings must be numeric"),
    ("object ratings", (U, I, np.array([1.0, "x", 2, 3, 4, 5], dtype=object)), TypeError,
     r"ratings must be numeric.*'x'"),
    ("None rating", (U, I, [1.0, None, 2, 3, 4, 5]), ValueError, r"non-finite"),
    ("bool ratings", (U, I, np.ones(6, bool)), TypeError, r"got booleans"),
    ("empty", (U[:0], I[:0], R[:0]), ValueError, r"at least one rating"),
    ("lengths differ", (U, I[:5], R), ValueError, r"same length; users has 6, items has 5"),
    ("2-D ratings", (U, I, R.reshape(2, 3)), ValueError, r"ratings must be 1-D.*\(2, 3\)"),
    ("scalar users", (1, I, R), ValueError, r"users must be 1-D"),
    ("None user id", (np.array([1, None, 3, 1, 2, 3], dtype=object), I, R), ValueError,
     r"users has 1 missing ids \(None or NaN; first at position 1\)"),
    ("NaN user id", (np.array([1, np.nan, 3, 1, 2, 3]), I, R), ValueError,
     r"users has a missing or non-finite id"),
    ("mixed id types", (np.array([1, "a", 3, 1, 2, 3], dtype=object), I, R), TypeError,
     r"users mixes id types \(int, str\)"),
    # a plain list: np.asarray would make 1 and "1" one user
    ("mixed id types in a list", (["1", 1, 3, 1, 2, 3], I, R), TypeError,
     r"users mixes id types \(int, str\)"),
    # bytes too: np.asarray([b"1", 1]) is [b"1", b"1"], user 1 merged into user b"1"
    ("mixed bytes and int ids in a list", ([b"1", 1, 3, 1, 2, 3], I, R), TypeError,
     r"users mixes id types \(bytes, int\)"),
    ("mixed id types in row tuples", [("a", 10, 4.0), (1, 10, 3.0), ("1", 20, 5.0)], TypeError,
     r"users mixes id types \(int, str\)"),
    # "" is an empty field, as the file loaders say, not a user or an item to train
    ("empty string user id", (["a", "", "c", "a", "", "c"], I, R), ValueError,
     r"users has an empty id '' \(first at position 1\): a missing id"),
    ("empty bytes item id", (U, [b"x", b"x", b"y", b"", b"z", b"z"], R), ValueError,
     r"items has an empty id '' \(first at position 3\)"),
    # only whitespace is an empty field too, as the file loaders say (review 15 noticed
    # " " accepted as a user)
    ("blank user id", (["a", "b", "c", "a", " ", "c"], I, R), ValueError,
     r"users has a blank id ' ' \(first at position 4\): a missing id"),
    ("blank bytes item id", (U, [b"x", b"\t \n", b"y", b"y", b"z", b"z"], R), ValueError,
     r"items has a blank id '\\t \\n' \(first at position 1\)"),
    # review 19: rows as lists read as columns when there were 2 or 3 of them (users
    # [1, 5, 10], ratings up to 30), as rows from 4 on; not guessed now
    ("3 rows as lists", [[1, 2, 4.0], [5, 4, 3.0], [10, 20, 30.0]], ValueError,
     r"X is ambiguous: a list of 3 lists of 3 values is 3 \(user, item, rating\) rows or "
     r"the 3 columns \(users, items, ratings\)"),
    ("2 rows as arrays", [np.array([1, 10, 4.0]), np.array([2, 20, 5.0])], ValueError,
     r"a list of 2 lists of 3 values is 2 \(user, item, rating\) rows or the 2 columns "
     r"\(users, items\).*np\.array\(X\); columns as a tuple"),
    # review 19: (users,) was one rating, (user, item, rating) = its three values
    ("a tuple of one column", (np.array([1, 10, 4.0]),), ValueError,
     r"X is a tuple of one sequence; pass the columns as \(users, items, ratings\)"),
    # review 20: a list and a tuple were not "all tuples", and read as columns
    ("2 rows, a list and a tuple", [[1, 10], (2, 20)], ValueError,
     r"X is ambiguous: a list of 2 lists of 2 values"),
    ("fractional ids", (U + 0.5, I, R), TypeError, r"non-integral floats"),
    ("bool ids", (U > 1, I, R), TypeError, r"users must be integers or strings; got booleans"),
    ("no ratings", (U, I), ValueError, r"X has no ratings"),
    ("None X", None, TypeError, r"X is None"),
    # np.asarray dropped the mask: masked slots were trained on as data
    ("masked ratings", (U, I, np.ma.array(R, mask=[0, 1, 0, 1, 0, 0])), ValueError,
     r"ratings has 2 masked \(missing\) values \(first at position 1\); drop those rows"),
    ("masked user id", (np.ma.array(U, mask=[0, 0, 0, 0, 1, 0]), I, R), ValueError,
     r"users has 1 masked \(missing\) value \(first at position 4\)"),
    ("masked (n, 3) array", np.ma.array(np.column_stack([U, I, R]), mask=np.arange(18)
                                        .reshape(6, 3) == 10), ValueError,
     r"items has 1 masked \(missing\) value \(first at position 3\)"),
    ("3-D array", np.zeros((2, 2, 2)), ValueError, r"must be a DataFrame"),
]


@pytest.mark.parametrize("name,X,exc,msg", BAD_DATA, ids=[b[0] for b in BAD_DATA])
def test_bad_data(name, X, exc, msg):
    m = MatrixFactorization(n_factors=2, n_epochs=2)
    with pytest.raises(exc, match=msg):
        m.fit(X)


def test_one_long_string_id_refused_before_widening():
    """NumPy stores string ids at the longest one's width: one id of 1,000 characters
    among 300,000 short ones made a 1.1 GiB array (3.7 TiB for a million of each). Such
    input is refused before that array exists, naming the id; ids that are all long are
    not padding, and pass."""
    n = 300_000
    users = [f"u{k}" for k in range(n - 1)] + ["x" * 1000]
    items, ratings = np.arange(n) % 7, np.arange(n) % 5 + 1.0
    with pytest.raises(ValueError, match=r"users has an id of 1,000 characters \(first at "
                                         r"position 299999\); NumPy stores every id at the "
                                         r"longest one's width, which would take 1\.1 GiB"):
        MatrixFactorization(n_factors=2, n_epochs=1).fit((users, items, ratings))


@pytest.mark.parametrize("container", ["list", "object array", "bytes list", "Series"])
def test_long_string_id_refused_in_every_container(monkeypatch, container):
    import mfsgd._idmap as idmap

    monkeypatch.setattr(idmap, "_WIDE_BYTES", 1000)  # the rule, on a small input
    ids = [f"u{k % 30}" for k in range(100)] + ["x" * 500]
    if container == "object array":
        ids = np.array(ids, dtype=object)
    elif container == "bytes list":
        ids = [i.encode() for i in ids]
    elif container == "Series":
        ids = pytest.importorskip("pandas").Series(ids)
    X = (ids, np.arange(101) % 7, np.arange(101) % 5 + 1.0)
    with pytest.raises(ValueError, match=r"users has an id of 500 characters \(first at "
                                         r"position 100\)"):
        MatrixFactorization(n_factors=2, n_epochs=1).fit(X)
    # ids all of that length: no padding to speak of, so accepted
    same = [f"{k % 30:0500d}" for k in range(101)]
    m = MatrixFactorization(n_factors=2, n_epochs=1).fit((same, X[1], X[2]))
    assert m.user_ids_.size == 30


BAD_PARAMS = [
    ({"n_factors": 0}, ValueError, r"n_factors must be an int from 1 to 65536; got 0"),
    ({"n_factors": -3}, ValueError, r"n_factors must be an int from 1 to 65536; got -3"),
    ({"n_factors": 2**63}, ValueError, r"n_factors must be an int from 1 to 65536; got 9223"),
    ({"n_factors": 2.5}, TypeError, r"n_factors must be an int"),
    ({"n_factors": True}, TypeError, r"n_factors must be an int"),
    ({"n_epochs": 0}, ValueError, r"n_epochs must be an int >= 1"),
    ({"learning_rate": 0}, ValueError, r"learning_rate must be a float > 0.0; got 0"),
    ({"learning_rate": -0.1}, ValueError, r"learning_rate must be a float > 0.0; got -0.1"),
    ({"learning_rate": float("nan")}, ValueError, r"learning_rate must be a float"),
    # review 19: positive, but 0 in float32, where the kernel steps: nothing trained
    ({"learning_rate": 1e-320, "dtype": np.float32}, ValueError,
     r"learning_rate must be positive in the model's dtype; got 1e-320, which is 0 in "
     r"float32"),
    ({"learning_rate": "fast"}, TypeError, r"learning_rate must be a float"),
    ({"reg_factors": -1}, ValueError, r"reg_factors must be a float >= 0.0"),
    ({"reg_bias": -1e-9}, ValueError, r"reg_bias must be a float >= 0.0"),
    ({"init_std": -1}, ValueError, r"init_std must be a float >= 0.0"),
    ({"dtype": np.int32}, TypeError, r"dtype must be numpy.float32 or numpy.float64"),
    ({"dtype": np.float16}, TypeError, r"dtype must be numpy.float32 or numpy.float64"),
    ({"dtype": "complex"}, TypeError, r"dtype must be"),
    ({"validation_fraction": 1.0, "early_stopping": True}, ValueError,
     r"validation_fraction must be a float > 0.0 and < 1.0"),
    ({"validation_fraction": 0.0}, ValueError, r"validation_fraction must be"),
    ({"n_iter_no_change": 0}, ValueError, r"n_iter_no_change must be an int >= 1"),
    ({"tol": -1}, ValueError, r"tol must be a float >= 0.0"),
    ({"shuffle": "yes"}, TypeError, r"shuffle must be True or False"),
    ({"n_threads": 0}, ValueError, r"n_threads must be an int from 1 to \d+, or -1"),
    ({"n_blocks": 0}, ValueError, r"n_blocks must be an int >= 1"),
    ({"n_blocks": 256}, ValueError, r"n_blocks must be an int from 1 to 255; got 256"),
    ({"random_state": -1}, ValueError, r"random_state must be a non-negative int"),
    ({"random_state": "seed"}, TypeError, r"random_state must be None, an int"),
    ({"lr_decay": -1}, ValueError, r"lr_decay must be a float >= 0.0"),
    ({"item_col": "user"}, ValueError, r"user_col, item_col and rating_col must be three "
     r"different names; got user_col='user', item_col='user', rating_col='rating'"),
    ({"rating_col": "item"}, ValueError, r"must be three different names"),
    ({"user_col": 0, "item_col": np.int64(0)}, ValueError, r"must be three different names"),
    ({"user_col": True}, TypeError, r"user_col must be a column name \(a str or an int\); "
                                    r"got True"),
    ({"rating_col": 1.5}, TypeError, r"rating_col must be a column name"),
    ({"loss": "warp", "min_rating": 10**400}, ValueError,
     r"min_rating must be None or a finite number; got an int too large for float64"),
]


@pytest.mark.parametrize("params,exc,msg", BAD_PARAMS, ids=[str(p[0]) for p in BAD_PARAMS])
def test_bad_params(params, exc, msg):
    with pytest.raises(exc, match=msg):
        fit(**params)


def test_bad_eval_set():
    with pytest.raises(ValueError, match=r"eval_set has no ratings"):
        fit(X=(U, I, R)) .fit((U, I, R), eval_set=(U, I))
    with pytest.raises(ValueError, match=r"eval_set must be a DataFrame"):
        fit().fit((U, I, R), eval_set=np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"same length"):
        fit().fit((U, I, R), eval_set=(U, I, R[:2]))
    # an empty one gave NaN for every epoch's metric
    with pytest.raises(ValueError, match=r"eval_set has no ratings; pass validation ratings"):
        fit().fit((U, I, R), eval_set=(U[:0], I[:0], R[:0]))
    with pytest.raises(ValueError, match=r"eval_set has no interactions at or above "
                                         r"min_rating"):
        fit(loss="bpr", min_rating=3).fit((U, I, R), eval_set=(U, I, np.ones(6)))


def test_predict_input_errors():
    m = fit()
    with pytest.raises(ValueError, match="same length"):
        m.predict((U, I[:3]))
    # the value, not NumPy's dtype name ("got str96 ids" for Surprise's ids "196")
    with pytest.raises(TypeError, match=r"this model's ids are integers; got strings such "
                                        r"as '196'\.$"):
        m.predict((np.array(["196"]), np.array([10])))
    s = fit((np.array(["a", "b", "c", "a", "b", "c"]), I, R))
    with pytest.raises(TypeError, match=r"^users: this model's ids are strings; got "
                                        r"integers such as 7\.$"):
        s.predict(([7], ["x"]))


def test_failed_fit_keeps_previous_model():
    m = fit()
    before = m.user_factors_.copy()
    with pytest.raises(ValueError):
        m.fit((U, I, np.full(6, np.nan)))
    with pytest.raises(ValueError):
        m.set_params(n_factors=0).fit((U, I, R))
    with pytest.raises(ValueError, match="masked"):
        m.set_params(n_factors=2).fit((U, I, np.ma.masked_greater(R, 4.5)))
    np.testing.assert_array_equal(m.user_factors_, before)


@pytest.mark.parametrize("blank,what", [("", "an empty id ''"), (" \t", r"a blank id ' \\t'")])
def test_an_empty_string_id_is_refused_in_every_way_ids_arrive(blank, what):
    """A DataFrame's Categorical and string columns, partial_fit's new ids and the
    counting baseline refuse "" (and an id of only whitespace) as fit's lists do; an
    empty id the model already holds (a model from before this rule) is looked up, not
    refused."""
    pd = pytest.importorskip("pandas")
    from mfsgd import Popularity

    users = ["a", "b", blank, "a", "b", "c"]
    msg = what + r" \(first at position 2\)"
    df = pd.DataFrame({"user": users, "item": I, "rating": R})
    for col in (df.user.astype("category"), df.user.astype("string")):
        with pytest.raises(ValueError, match=msg):
            MatrixFactorization(n_factors=2, n_epochs=1).fit(df.assign(user=col))
    with pytest.raises(ValueError, match=msg):
        Popularity().fit((users, I))
    m = MatrixFactorization(n_factors=2, n_epochs=1, random_state=0)
    m.fit((["a", "b", "c", "a", "b", "c"], I, R))
    before = m.user_factors_.copy()
    with pytest.raises(ValueError, match=what + r" \(first at position 1\)"):
        m.partial_fit((["a", blank], [10, 20], [4.0, 3.0]))
    np.testing.assert_array_equal(m.user_factors_, before)
    assert list(m.user_ids_) == ["a", "b", "c"]
    import dataclasses

    from mfsgd._idmap import IdMap

    # a model from before this rule, holding "" (renames user "c")
    m._state = dataclasses.replace(m._state, user_map=IdMap(np.array([blank, "a", "b"])))
    m.partial_fit(([blank, "a"], [10, 20], [4.0, 3.0]))  # known: no new id, trained
    assert m.n_epochs_ == 2


def test_masked_arrays_are_refused_wherever_columns_are_read():
    """Every column goes through as_1d: the counting baseline, the metrics and the
    (n, 2) array with y were as blind to the mask as fit."""
    from mfsgd import Popularity, metrics
    from mfsgd._validation import as_1d

    masked = np.ma.array(U, mask=U == 3)
    with pytest.raises(ValueError, match=r"users has 2 masked \(missing\) values \(first at "
                                         r"position 2\)"):
        Popularity().fit((masked, I))
    with pytest.raises(ValueError, match=r"y_pred has 1 masked"):
        metrics.rmse(R, np.ma.masked_equal(R, 5.0))
    with pytest.raises(ValueError, match=r"users has 2 masked"):
        fit(np.ma.column_stack([masked, I]), R)
    plain = as_1d("x", np.ma.array(R))  # nothing masked: the data, as a plain array
    assert type(plain) is np.ndarray and np.shares_memory(plain, R)
    fit(np.ma.column_stack([np.ma.array(U), I]), R)


GOOD_ODD_INPUTS = [
    ("non-contiguous", lambda: (U[::1].repeat(2)[::2], I.repeat(2)[::2], R.repeat(2)[::2])),
    ("reversed strides", lambda: (U[::-1], I[::-1], R[::-1])),
    ("read-only", lambda: tuple(_ro(a) for a in (U, I, R))),
    ("big-endian", lambda: (U.astype(">i8"), I.astype(">i4"), R.astype(">f8"))),
    ("int ratings", lambda: (U, I, R.astype(int))),
    ("single rating", lambda: (U[:1], I[:1], R[:1])),
    ("negative and huge ids", lambda: (U * -(10**17), I + 2**62, R)),
    ("uint64 ids above int64", lambda: (U.astype(np.uint64) + np.uint64(2**63), I, R)),
    ("lists", lambda: (U.tolist(), I.tolist(), R.tolist())),
    ("masked arrays with nothing masked", lambda: (np.ma.array(U), I, np.ma.array(R, mask=0))),
]


def _ro(a):
    a = a.copy()
    a.setflags(write=False)
    return a


@pytest.mark.parametrize("name,make", GOOD_ODD_INPUTS, ids=[g[0] for g in GOOD_ODD_INPUTS])
def test_odd_but_valid_inputs_work(name, make):
    X = make()
    m = fit(X)
    assert np.isfinite(m.user_factors_).all()
    assert np.isfinite(m.predict(X[:2])).all()


@pytest.mark.parametrize("n", [2, 3, 6])
def test_a_list_of_row_tuples_is_rows_however_few(n):
    """[(u, i, r), ...] is read as rows: with two or three of them it was read as two or
    three columns (users (1, 10, 4.0), ...), silently another model."""
    rows = list(zip(U[:n].tolist(), I[:n].tolist(), R[:n].tolist(), strict=True))
    a, b = fit(rows), fit((U[:n], I[:n], R[:n]))
    np.testing.assert_array_equal(a.user_ids_, b.user_ids_)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    pairs = [(u, i) for u, i, _ in rows]
    np.testing.assert_array_equal(a.predict(pairs), b.predict((U[:n], I[:n])))
    # string ids and float ratings keep their types (np.asarray would make all strings)
    named = [(f"u{u}", f"i{i}", r) for u, i, r in rows]
    assert fit(named).user_ids_.tolist() == sorted({f"u{u}" for u in U[:n].tolist()})
    with pytest.raises(ValueError, match="ratings given twice"):
        fit(rows, R[:n])


@pytest.mark.parametrize("loss", ["squared", "bpr"])
def test_hold_out_taking_every_weighted_row_is_refused(loss):
    """All-zero sample_weight is refused before the early-stopping hold-out; when the
    hold-out then took every positive-weight row, a ranking fit trained on weight 0
    (train_loss NaN) and a squared fit raised a misleading DivergenceError."""
    rng = np.random.default_rng(0)
    n = 2000
    u, i = np.arange(n) % 40, np.arange(n) // 40  # distinct pairs
    r = rng.integers(1, 6, n).astype(float)
    w = np.zeros(n)
    w[-1] = 1.0  # the last row of its user and item: not one the hold-out gives back
    m = MatrixFactorization(loss=loss, n_factors=2, n_epochs=2, random_state=0,
                            early_stopping=True, validation_fraction=0.999)
    # (the hold-out leaves 2 rows, plus the first held-out row of each of the 40 users and
    # 50 items it took entirely)
    with pytest.raises(ValueError, match=r"sample_weight is 0 for all \d+ rows left for "
                                         r"training by the validation_fraction hold-out.*"
                                         r"lower validation_fraction"):
        m.fit((u, i, r), sample_weight=w)


def test_lists_of_rows_read_alike_at_any_length_or_are_refused():
    """Review 19: predict([[u1, i1], [u2, i2]]) scored (u1, u2) x (i1, i2), the columns,
    while 4 such rows were rows. Two or three rows given as lists are refused as
    ambiguous, naming both readings; tuples, arrays and a tuple of columns say which
    they are, and are read so."""
    m = MatrixFactorization(n_factors=2, n_epochs=2, random_state=0).fit((U, I, R))
    pairs = [(1, 10), (2, 20)]
    want = m.predict(np.array(pairs))
    np.testing.assert_array_equal(m.predict(pairs), want)  # tuples: rows
    np.testing.assert_array_equal(m.predict(([1, 2], [10, 20])), want)  # tuple: columns
    with pytest.raises(ValueError, match=r"X is ambiguous: a list of 2 lists of 2 values "
                                         r"is 2 \(user, item\) rows or the 2 columns"):
        m.predict([list(p) for p in pairs])
    four = [[1, 10], [2, 20], [3, 10], [1, 20]]  # unambiguous: only rows have 4 of them
    np.testing.assert_array_equal(m.predict(four), m.predict(np.array(four)))
    cols = [[1, 2, 3, 1], [10, 20, 10, 20]]  # 2 lists of 4: columns, as documented
    np.testing.assert_array_equal(m.predict(cols), m.predict(np.array(four)))

