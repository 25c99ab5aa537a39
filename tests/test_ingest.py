"""The lean ingestion path: Parquet files (load_ratings, the command line), Arrow tables
and Arrow PyCapsule streams in fit, and id mapping without int64 copies."""

import sys
import tracemalloc

import numpy as np
import pytest

import mfsgd
from mfsgd import MatrixFactorization, _cli, _fileio
from mfsgd._idmap import Encoded, IdMap, id_array, normalize_ids
from mfsgd.datasets import load_csv, load_ratings, make_ratings

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture(scope="module")
def data():
    return make_ratings(300, 200, 6000, random_state=0, as_frame=False)


def fit(X, eval_set=None, **kw):
    return MatrixFactorization(n_factors=8, n_epochs=3, random_state=0, **kw).fit(
        X, eval_set=eval_set)


def same_model(a, b):
    for name in ("user_factors_", "item_factors_", "user_bias_", "item_bias_", "user_ids_",
                 "item_ids_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.global_mean_ == b.global_mean_


# ---------------------------------------------------------------------- Parquet files


@pytest.mark.parametrize("id_type", ["int32", "int64", "string"])
def test_parquet_round_trip(tmp_path, data, id_type):
    u, i, r = data
    ts = np.arange(u.size, dtype=np.int64) + 10**9
    if id_type == "string":
        uu, ii = np.char.add("u", u.astype(str)), np.char.add("i", i.astype(str))
    else:
        uu, ii = u.astype(id_type), i.astype(id_type)
    path = tmp_path / "r.parquet"
    # several row groups: the reader must join chunks (and unify string dictionaries)
    pq.write_table(pa.table({"userId": uu, "movieId": ii, "rating": r, "timestamp": ts}),
                   path, row_group_size=1000)
    users, items, ratings, extra = load_ratings(path, keep=["timestamp"], as_frame=False)
    assert users.tolist() == uu.tolist() and items.tolist() == ii.tolist()
    np.testing.assert_array_equal(ratings, r)
    assert ratings.dtype == np.float32
    np.testing.assert_array_equal(extra["timestamp"], ts)
    if id_type == "string":
        assert users.dtype == object and isinstance(users[0], str)
    else:  # an int32 column stays int32; int64 ids that fit come back as int32 too
        assert users.dtype == np.int32 and items.dtype == np.int32
    assert users.flags.writeable and ratings.flags.writeable
    # the same model as from the arrays
    same_model(fit((users, items, ratings)), fit((uu, ii, r)))


def test_parquet_as_frame_and_columns_by_name_and_position(tmp_path, data):
    pd = pytest.importorskip("pandas")
    u, i, r = data
    path = tmp_path / "r.pq"
    pq.write_table(pa.table({"a": u, "who": u, "what": i, "stars": r}), path)
    df = load_ratings(path, columns=["who", "what", "stars", "a"])
    assert isinstance(df, pd.DataFrame) and list(df.columns) == ["user", "item", "rating", "a"]
    assert df["user"].tolist() == u.tolist()
    by_pos = load_ratings(path, columns=[1, 2, 3], as_frame=False)
    assert by_pos[1].tolist() == i.tolist()


def test_parquet_batches_widen_ids_beyond_int32_and_count_rows(tmp_path, monkeypatch):
    from mfsgd import datasets

    monkeypatch.setattr(datasets, "_PARQUET_BATCH", 3)
    ids = [1, 2, 3, 4, 5, 2**40, 7]
    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"user": ids, "item": list(range(7)),
                             "rating": [1.0, 2, 3, 4, 5, float("nan"), 2]}), path)
    with pytest.raises(ValueError, match=r"row 5 has a missing or non-finite rating \(nan\)"):
        load_ratings(path)
    pq.write_table(pa.table({"user": ids, "item": list(range(7)), "rating": [1.0] * 7}), path)
    u, i, r = load_ratings(path, as_frame=False)
    assert u.dtype == np.int64 and u.tolist() == ids and i.dtype == np.int32
    assert r.tolist() == [1.0] * 7


def test_parquet_with_an_extension_it_does_not_have(tmp_path, data):
    u, i, r = data
    path = tmp_path / "ratings.bin"
    pq.write_table(pa.table({"user": u, "item": i, "rating": r}), path)
    assert load_ratings(path, as_frame=False)[0].tolist() == u.tolist()  # magic bytes PAR1


BAD_PARQUET = [  # (id, table, load_ratings kwargs, message)
    ("no rating column", {"user": [1], "item": [2], "score_x": [3.0]}, {},
     r"no rating column among \['user', 'item', 'score_x'\]"),
    ("unknown column", {"user": [1], "item": [2], "rating": [3.0]},
     {"columns": ["user", "item", "stars"]}, r"no column 'stars'; columns are"),
    ("position out of range", {"user": [1], "item": [2], "rating": [3.0]},
     {"columns": [0, 1, 5]}, r"there is no rating column at position 5: its lines have 3 "
     "fields"),
    ("null rating", {"user": [1, 2], "item": [2, 3], "rating": [3.0, None]}, {},
     r"row 1 has a missing or non-finite rating \(None\)"),
    ("text rating", {"user": [1], "item": [2], "rating": ["good"]}, {},
     r"the rating column 'rating' holds string values, not numbers"),
    ("null id", {"user": ["a", None], "item": [2, 3], "rating": [3.0, 4.0]}, {},
     r"column 'user' has 1 missing ids \(first in row 1\)"),
    ("null int id", {"user": [1, 2], "item": [2, None], "rating": [3.0, 4.0]}, {},
     r"column 'item' has missing ids \(first in row 1\)"),
    ("sep for Parquet", {"user": [1], "item": [2], "rating": [3.0]}, {"sep": ","},
     r"is a Parquet file: sep= and header= are for text files"),
]


@pytest.mark.parametrize("table, kwargs, match", [b[1:] for b in BAD_PARQUET],
                         ids=[b[0] for b in BAD_PARQUET])
def test_parquet_mistakes_are_clear_value_errors(tmp_path, table, kwargs, match):
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table(table), path)
    with pytest.raises(ValueError, match=match):
        load_ratings(path, **kwargs)


def test_a_damaged_parquet_file_is_a_value_error(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(ValueError, match="is not a valid Parquet file"):
        load_ratings(path)


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"user": [1], "item": [2], "rating": [3.0]}), path)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError, match=r"pip install 'mfsgd\[parquet\]'"):
        load_ratings(path)


def test_load_ratings_reads_text_as_load_csv_does(tmp_path):
    path = tmp_path / "r.dat"
    path.write_text("1::10::4\n2::11::3.5\n")
    got, want = load_ratings(path, as_frame=False), load_csv(path, as_frame=False)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


def test_cli_trains_on_a_parquet_file(tmp_path, data):
    u, i, r = data
    pq.write_table(pa.table({"userId": u, "movieId": i, "rating": r}), tmp_path / "r.parquet")
    out = str(tmp_path / "m.mfsgd")
    assert _cli.main(["train", str(tmp_path / "r.parquet"), "-o", out, "-q", "--factors", "8",
                      "--epochs", "3"]) == 0
    same_model(mfsgd.load(out), fit((u, i, r)))


@pytest.mark.parametrize("ids", ["int", "string"])
def test_parquet_interactions_for_a_ranking_loss(tmp_path, data, ids):
    u, i, r = data
    if ids == "string":
        u, i = np.char.add("u", u.astype(str)).astype(object), np.char.add("i", i.astype(str))
    pq.write_table(pa.table({"user_id": u, "item_id": i, "rating": r}), tmp_path / "c.pq")
    got = load_ratings(tmp_path / "c.pq", ratings=False, keep=["rating"], as_frame=False)
    assert len(got) == 3 and got[0].tolist() == list(u) and got[1].tolist() == list(i)
    np.testing.assert_array_equal(got[2]["rating"], r)
    out = str(tmp_path / "m.mfsgd")
    assert _cli.main(["train", str(tmp_path / "c.pq"), "-o", out, "-q", "--loss", "bpr",
                      "--factors", "8", "--epochs", "3"]) == 0
    same_model(mfsgd.load(out), fit((u, i), loss="bpr"))
    with pytest.raises(TypeError, match="ratings must be True or False"):
        load_ratings(tmp_path / "c.pq", ratings=None)


def test_cli_names_the_extra_without_pyarrow(tmp_path, monkeypatch, capsys):
    pq.write_table(pa.table({"user": [1], "item": [2], "rating": [3.0]}), tmp_path / "r.pq")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert _cli.main(["train", str(tmp_path / "r.pq"), "-o", str(tmp_path / "m")]) == 2
    assert "mfsgd[parquet]" in capsys.readouterr().err


# ---------------------------------------------------------------------- Arrow tables in fit


class CapsuleOnly:
    """A table that speaks only the Arrow PyCapsule stream interface (as polars does)."""

    def __init__(self, table):
        self._table = table

    def __arrow_c_stream__(self, requested_schema=None):
        return self._table.__arrow_c_stream__(requested_schema)


def arrow_forms(u, i, r):
    table = pa.table({"user": u, "item": i, "rating": r})
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=1000))
    forms = {"pyarrow Table": table, "Table of several chunks": chunked,
             "PyCapsule stream": CapsuleOnly(chunked)}
    try:
        import polars as pl
    except ImportError:
        pass
    else:
        forms["polars DataFrame"] = pl.DataFrame({"user": u, "item": i, "rating": r})
    try:
        import pandas as pd
    except ImportError:
        pass
    else:
        forms["pandas Categorical"] = pd.DataFrame(
            {"user": pd.Categorical(u), "item": pd.Categorical(i), "rating": r})
    return forms


@pytest.mark.parametrize("ids", ["int", "str"])
def test_arrow_inputs_give_the_model_of_the_arrays(data, ids):
    u, i, r = data
    if ids == "str":
        u, i = np.char.add("u", u.astype(str)), np.char.add("i", i.astype(str))
    want = fit((u, i, r))
    for name, X in arrow_forms(u, i, r).items():
        got = fit(X)
        same_model(got, want)
        np.testing.assert_array_equal(got.predict(X), want.predict((u, i)), err_msg=name)


def test_arrow_table_with_other_column_names_and_eval_set(data):
    u, i, r = data
    t = pa.table({"uid": u, "iid": i, "stars": r})
    got = fit(t[:5000], user_col="uid", item_col="iid", rating_col="stars", eval_set=t[5000:])
    want = fit((u[:5000], i[:5000], r[:5000]), user_col="uid", item_col="iid",
               rating_col="stars", eval_set=(u[5000:], i[5000:], r[5000:]))
    same_model(got, want)
    assert got.history_ == [{**h, "seconds": g["seconds"]} for h, g in
                            zip(want.history_, got.history_, strict=True)]


def test_arrow_table_mistakes(data):
    u, i, r = data
    with pytest.raises(ValueError, match=r"X has no column 'user' \(columns: \['a', 'item', "):
        fit(pa.table({"a": u, "item": i, "rating": r}))
    with pytest.raises(ValueError, match="users has 1 missing ids"):
        fit(pa.table({"user": pa.array(["a", None, "b"]), "item": [1, 2, 3],
                      "rating": [1.0, 2.0, 3.0]}))
    with pytest.raises(ValueError, match=r"ratings has 1 non-finite"):
        fit(pa.table({"user": [1, 2, 3], "item": [1, 2, 3], "rating": [1.0, None, 3.0]}))


def test_partial_fit_and_predict_take_arrow_string_ids(data):
    u, i, r = data
    su = np.char.add("u", u.astype(str))
    t = pa.table({"user": su, "item": i, "rating": r})
    m, ref = fit(t[:4000]), fit((su[:4000], i[:4000], r[:4000]))
    m.partial_fit(t[4000:])
    ref.partial_fit((su[4000:], i[4000:], r[4000:]))
    same_model(m, ref)
    np.testing.assert_array_equal(m.predict(t), ref.predict((su, i)))


# ---------------------------------------------------------------------- lean id mapping


def test_int32_codes_are_their_own_index():
    codes = np.random.default_rng(0).permutation(np.arange(50_000, dtype=np.int32))
    idmap, idx = IdMap.fit("users", codes)
    assert idx is codes  # no copy at all
    assert idmap.ids.dtype == np.int64 and idmap.ids.tolist() == list(range(50_000))


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.uint16, np.uint32])
def test_narrow_ids_map_as_int64_ids_do(dtype):
    rng = np.random.default_rng(1)
    info = np.iinfo(dtype)
    lo = max(info.min, -1000)
    raw = rng.integers(lo, min(info.max, lo + 3000), size=20_000).astype(dtype)
    m1, idx1 = IdMap.fit("users", raw)
    m2, idx2 = IdMap.fit("users", raw.astype(np.int64))
    np.testing.assert_array_equal(idx1, idx2)
    np.testing.assert_array_equal(m1.ids, m2.ids)
    assert m1.ids.dtype == np.int64 and idx1.dtype == np.int32


def test_int32_ids_are_not_copied_to_int64():
    n = 2_000_000
    ids = (np.random.default_rng(0).integers(0, 100_000, size=n) + 10**6).astype(np.int32)
    tracemalloc.start()
    try:
        _, idx = IdMap.fit("users", ids)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the int32 result (4 bytes per id) plus chunk-sized temporaries; one int64 copy of
    # the ids would add 8 bytes per id
    assert peak < 4 * n + 12 * (1 << 20), peak / n
    assert idx.dtype == np.int32 and int(idx.max()) < 100_000


@pytest.mark.parametrize("raw", [
    np.array([2**63 + 10, 2**63 + 12, 2**63 + 10], dtype=np.uint64),  # dense, above int64
    np.array([-(2**63), -(2**63) + 5, -(2**63)], dtype=np.int64),  # dense, at the bottom
    np.array([2**64 - 1, 2**63 + 3, 2**64 - 1], dtype=np.uint64),  # sparse: the sort path
])
def test_extreme_64_bit_ids_in_the_chunked_mapping(raw):
    idmap, idx = IdMap.fit("users", raw)
    assert idmap.ids.dtype == raw.dtype
    assert idmap.ids[idx].tolist() == raw.tolist() and idx.dtype == np.int32


@pytest.mark.parametrize("ids, want", [
    ([2**64 - 1, 5], np.array([2**64 - 1, 5], dtype=np.uint64)),
    ((np.uint64(2**63), 5), np.array([2**63, 5], dtype=np.uint64)),
    ([-1, 2**63], "integer ids outside the 64-bit range"),
    ([1.0, 2**63], "float ids outside the int64 range"),
])
def test_a_list_of_integers_beyond_int64_keeps_them_exact(ids, want):
    """NumPy reads a Python list mixing integers beyond int64 with others as float64; it
    was refused as "float ids outside the int64 range", though it held no float, where
    the same ids as a uint64 array are taken."""
    if isinstance(want, str):
        with pytest.raises(ValueError, match=want):
            normalize_ids("users", id_array("users", ids))
        return
    got = normalize_ids("users", id_array("users", ids))
    assert got.dtype == want.dtype and got.tolist() == want.tolist()
    m = MatrixFactorization(loss="bpr", n_factors=2, n_epochs=1, random_state=0)
    assert m.fit((ids, [1, 2])).user_ids_.tolist() == sorted(want.tolist())


@pytest.mark.parametrize("ids, limit", [
    (np.array([2.0**60 + 1, 2.0**60, 5.0]), 53),  # 2**60 + 1 is 2**60 already
    (np.array([2.0**53, 3.0]), 53),
    (np.array([-(2.0**53), 3.0]), 53),
    (np.array([2**24 + 1, 3], dtype=np.float32), 24),
])
def test_float_ids_beyond_exact_integers_are_refused(ids, limit):
    """From 2**53 (2**24 in float32) a float cannot hold every integer: neighbouring
    ids may have been rounded into one already, and fit pooled them into one user
    without a word (review 17: 2**60 + 1 and 2**60 made one user)."""
    m = MatrixFactorization(n_factors=2, n_epochs=1, random_state=0)
    with pytest.raises(ValueError, match=rf"users has float ids of magnitude 2\*\*{limit} or "
                                         r"more \(first at position 0.*pass the ids as "
                                         "integers or strings"):
        m.fit((ids, np.arange(ids.size), np.ones(ids.size)))
    below = np.array([2.0**53 - 1, 3.0])  # still exact: taken, as integers
    assert m.fit((below, [1, 2], [1.0, 2.0])).user_ids_.tolist() == [3, 2**53 - 1]


@pytest.mark.parametrize("ids", [[5, True], (np.bool_(False), 3), [1, 2, False]])
def test_a_list_of_ids_holding_a_boolean_is_refused(ids):
    """NumPy reads [5, True] as the ints [5, 1]: user True became user 1, where a
    boolean array is refused."""
    with pytest.raises(TypeError, match="got booleans"):
        MatrixFactorization(loss="bpr", n_factors=2, n_epochs=1).fit((ids, [1] * len(ids)))


def test_encoded_ids_map_through_their_table():
    values = np.array(["c", "a", "b", "unused", "a2"], dtype=object)
    codes = np.array([0, 1, 2, 1, 4, 0], dtype=np.int32)
    idmap, idx = IdMap.fit("users", Encoded(codes, values))
    assert idmap.ids.tolist() == ["a", "a2", "b", "c"]  # only the values in use, sorted
    assert idmap.ids[idx].tolist() == values[codes].tolist()
    sorted_codes = np.array([0, 1, 1, 2], dtype=np.int32)
    _, same = IdMap.fit("users", Encoded(sorted_codes, np.array(["x", "y", "z"])))
    assert same is sorted_codes


def test_dictionary_ids_are_checked_where_rows_use_them():
    """A null in an Arrow dictionary was reported by its place in the dictionary, not by
    the row using it, and one that no row used refused the whole column."""
    dict_ids = pa.DictionaryArray.from_arrays
    items, ratings = [0, 1, 2, 0, 1, 2], [5.0, 4.0, 3.0, 2.0, 1.0, 3.0]

    def table(indices, values):
        return pa.table({"user": dict_ids(pa.array(indices, pa.int32()), pa.array(values)),
                         "item": items, "rating": ratings})

    with pytest.raises(ValueError,
                       match=r"users has 2 missing ids \(None or NaN; first at position 4\)"):
        fit(table([0, 0, 0, 1, 2, 2], ["a", "b", None]))
    # a null index (row 3) and an index of the dictionary's null (row 1) count alike
    with pytest.raises(ValueError,
                       match=r"users has 2 missing ids \(None or NaN; first at position 1\)"):
        fit(table([0, 2, 0, None, 1, 0], ["a", "b", None]))
    # the null at index 2, a NUL id and a non-integral float that no row uses are fine
    for values in (["a", "b", None], ["a", "b", "c\x00"]):
        m = fit(table([0, 1, 0, 1, 0, 1], values))
        assert m.user_ids_.tolist() == ["a", "b"]
        assert np.isfinite(m.predict(table([1, 0, 1, 0, 1, 0], values))).all()
    assert fit(table([1, 1, 1, 0, 1, 0], [3.0, 7.0, 2.5])).user_ids_.tolist() == [3, 7]
    # the first row using a bad id is named, whatever its place in the dictionary
    with pytest.raises(ValueError, match=r"NUL character \\x00 \(first at position 2: 'c\\x00'"):
        fit(table([0, 0, 2, 0, 1, 0], ["a", "b\x00", "c\x00"]))
    with pytest.raises(ValueError, match=r"non-finite id \(first at position 5: "):
        fit(table([1, 1, 1, 1, 1, 0], [float("inf"), 2.0]))
    m = fit(table([0, 1, 0, 1, 0, 1], ["a", "b", None]))
    with pytest.raises(ValueError,
                       match=r"users has 1 missing ids \(None or NaN; first at position 3\)"):
        m.predict(table([0, 1, 0, 2, 0, 1], ["a", "b", None]))


def test_categorical_ids_are_checked_where_rows_use_them():
    """The same for a pandas Categorical: its categories no row uses are not checked."""
    pd = pytest.importorskip("pandas")

    def frame(users, categories):
        return pd.DataFrame({"user": pd.Categorical(users, categories=categories),
                             "item": [1, 2, 3, 4], "rating": [1.0, 2.0, 3.0, 4.0]})

    assert fit(frame([1.0, 1.0, 3.0, 1.0], [2.5, 1.0, 3.0])).user_ids_.tolist() == [1, 3]
    with pytest.raises(TypeError, match=r"non-integral floats \(for example .*2\.5"):
        fit(frame([1.0, 1.0, 2.5, 1.0], [2.5, 1.0]))
    with pytest.raises(ValueError, match=r"NUL character \\x00 \(first at position 3: "):
        fit(frame(["a", "b", "a", "c\x00"], ["c\x00", "a", "b"]))
    with pytest.raises(ValueError,
                       match=r"users has 1 missing ids \(None or NaN; first at position 1\)"):
        fit(frame(["a", None, "a", "b"], ["a", "b"]))


def test_a_bad_dictionary_id_is_found_at_its_first_row_in_any_chunk(monkeypatch):
    """The first row using a bad value is found across chunks, in one pass per chunk."""
    import mfsgd._idmap as idmap_module

    monkeypatch.setattr(idmap_module, "_CHUNK", 7)
    rng = np.random.default_rng(3)
    values = np.array([f"u{k}" for k in range(30)], dtype=object)
    values[[4, 20]] = "bad\x00", "worse\x00"
    codes = rng.integers(0, 30, 200).astype(np.int32)
    codes[codes == 4] = 5
    codes[[150, 180]] = 4
    codes[codes == 20] = 6
    codes[[97, 199]] = 20
    with pytest.raises(ValueError, match=r"first at position 97: 'worse\\x00'"):
        IdMap.fit("users", Encoded(codes, values))


# ---------------------------------------------------------------------- chunked text reading


@pytest.fixture
def small_chunks(monkeypatch):
    pytest.importorskip("pandas")
    monkeypatch.setattr(_fileio, "_CHUNK_ROWS", 3)


def test_chunks_and_a_short_row_estimate(tmp_path, small_chunks, monkeypatch):
    monkeypatch.setattr(_fileio, "_estimate_rows", lambda path, skip: 2)  # grows twice+
    rows = [(k, 100 + k % 7, 0.5 + k % 10 / 2) for k in range(40)]
    p = tmp_path / "r.csv"
    p.write_text("".join(f"{u},{i},{r}\n" for u, i, r in rows))
    u, i, r = load_csv(p, as_frame=False)
    assert u.tolist() == [x[0] for x in rows] and i.tolist() == [x[1] for x in rows]
    assert r.tolist() == [x[2] for x in rows] and u.dtype == np.int32


def test_an_id_beyond_int32_in_a_later_chunk_widens_the_column(tmp_path, small_chunks):
    ids = [1, 2, 3, 4, 5, 6, 2**40, 8]
    p = tmp_path / "r.csv"
    p.write_text("".join(f"{u},{k},3\n" for k, u in enumerate(ids)))
    u, i, _ = load_csv(p, as_frame=False)
    assert u.dtype == np.int64 and u.tolist() == ids and i.dtype == np.int32


def test_a_column_whose_type_changes_between_chunks(tmp_path, small_chunks):
    users = ["1", "2", "3", "4", "x5", "6", "7"]
    p = tmp_path / "r.csv"
    p.write_text("".join(f"{u}\t{k}\t4.5\n" for k, u in enumerate(users)))
    u, i, r = load_csv(p, as_frame=False)
    assert [str(x) for x in u] == users and r.tolist() == [4.5] * 7
    bad = tmp_path / "bad.csv"
    bad.write_text("".join(f"{k},{k},{'oops' if k == 5 else 3}\n" for k in range(8)))
    with pytest.raises(ValueError, match=r"line 6 has a missing or non-numeric rating"):
        load_csv(bad, as_frame=False)


def _searched(idmap, raw):
    """IdMap.lookup by its binary search alone (the table disabled)."""
    plain = IdMap(idmap.ids)
    plain._dense = False
    return plain.lookup("users", raw)


@pytest.mark.parametrize("case", ["dense from 0", "dense from 1", "gaps", "negative",
                                  "near int64 limits", "uint64 top", "sparse"])
def test_lookup_by_table_equals_the_binary_search(case):
    """Integer ids of a small range are looked up through a table (a gather instead of a
    binary search); it must give the binary search's indices for every query: known
    ids, ids outside the range on either side, extremes whose difference from the lowest
    id wraps, other integer dtypes, and ids that do not fit the map's dtype."""
    rng = np.random.default_rng(7)
    big = np.iinfo(np.int64)
    ids = {
        "dense from 0": np.arange(1000),
        "dense from 1": np.arange(1, 1001),
        "gaps": np.sort(rng.choice(3000, 1000, replace=False)),
        "negative": np.arange(-500, 500),
        "near int64 limits": np.arange(big.max - 999, big.max + 1, dtype=np.int64),
        "uint64 top": np.arange(2**64 - 1000, 2**64, dtype=np.uint64),
        "sparse": np.sort(rng.choice(10**9, 1000, replace=False)),
    }[case]
    idmap, _ = IdMap.fit("users", ids)
    assert (idmap._table() is not None) == (case != "sparse")
    lo, hi = int(idmap.ids[0]), int(idmap.ids[-1])
    near = [lo - 2, lo - 1, lo, lo + 1, hi - 1, hi, hi + 1, hi + 2]
    queries = [
        idmap.ids[rng.integers(0, idmap.ids.size, 5000)],
        np.array([x for x in near if -2**63 <= x < 2**63], dtype=np.int64),
        np.array([x for x in near if 0 <= x < 2**64], dtype=np.uint64),
        np.array([big.min, big.max, -1, 0], dtype=np.int64),
        np.array([0, 2**63, 2**64 - 1], dtype=np.uint64),
        rng.integers(-10, 3000, 500).astype(np.int32),
    ]
    for q in queries:
        got = idmap.lookup("users", q)
        np.testing.assert_array_equal(got, _searched(idmap, q))
        assert got.dtype == np.int32
    # an appended (unsorted) map looks up through its sorted copy, table and all
    top = np.iinfo(ids.dtype).max
    new = np.array([hi + 1 if hi < top else lo - 1], dtype=ids.dtype)
    grown, _ = idmap.extended("users", new)
    q = np.concatenate([ids, new])
    np.testing.assert_array_equal(grown.lookup("users", q), np.arange(q.size))


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32,
                                   np.uint32])
def test_lookup_in_a_map_of_narrow_ids(dtype):
    """A duck-typed model handed to mfsgd.metrics may carry narrow integer ids. Look-ups
    must match a plain dictionary: ids beyond the dtype's range are unknown (they once
    wrapped onto known ones: 256 found 0 in uint8), and the table (built only for 64-bit
    ids, where id - lowest cannot wrap) is not used."""
    info = np.iinfo(dtype)
    ids = np.unique(np.linspace(info.min, info.max, 200).astype(dtype))
    idmap = IdMap(ids)
    assert idmap._table() is None
    where = {int(x): k for k, x in enumerate(ids.tolist())}
    lo, hi = int(info.min), int(info.max)
    for q in (np.array([lo - 1, lo, 0, 27, hi, hi + 1, hi + 256, lo - 256, 2**40, -2**40],
                       dtype=np.int64),
              np.array([0, 27, hi, hi + 1, 2**63, 2**64 - 1], dtype=np.uint64),
              ids):
        want = [where.get(int(x), -1) for x in q.tolist()]
        assert idmap.lookup("users", q).tolist() == want
