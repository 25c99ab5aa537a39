"""load_csv: every common separator (detected or given), ids in their natural type, extra
columns, line numbers of bad ratings, file errors -- with pandas and without it."""

import errno
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import warnings

import numpy as np
import pytest

from mfsgd import _fileio
from mfsgd.datasets import load_csv, load_ratings
from mfsgd.model_selection import temporal_split

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

ROWS = [(1, 10, 4.0, 881250949), (2, 10, 3.5, 891717742), (1, 20, 1.0, 878887116),
        (3, 30, 5.0, 5)]


@pytest.fixture(params=["pandas", "numpy"])
def engine(request, monkeypatch):
    """Run a test with pandas' parser and with the NumPy-only fallback."""
    if request.param == "pandas":
        pytest.importorskip("pandas")
    else:
        monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas -> ImportError
    return request.param


def write(tmp_path, text, name="r.txt", newline="\n"):
    p = tmp_path / name
    p.write_bytes(text.replace("\n", newline).encode("utf-8"))
    return p


def arrays(result):
    return [np.asarray(a) for a in result]


# ---------------------------------------------------------------------- separators

SEPARATED = {  # name: (text of ROWS, header, the separator load_csv should detect)
    "comma": ("{u},{i},{r},{t}\n", ","),
    "tab (u.data)": ("{u}\t{i}\t{r}\t{t}\n", "\t"),
    "semicolon": ("{u};{i};{r};{t}\n", ";"),
    "pipe": ("{u}|{i}|{r}|{t}\n", "|"),
    "double colon (ratings.dat)": ("{u}::{i}::{r}::{t}\n", "::"),
    "single spaces": ("{u} {i} {r} {t}\n", _fileio.WHITESPACE),
    "runs of blanks": ("  {u}   {i}\t\t{r} \t {t}  \n", _fileio.WHITESPACE),
    "tab padded with spaces": ("{u} \t {i}\t{r} \t{t}\n", _fileio.WHITESPACE),
}


def separated(fmt, header=None):
    body = "".join(fmt.format(u=u, i=i, r=f"{r:g}", t=t) for u, i, r, t in ROWS)
    return (header + "\n" if header else "") + body


@pytest.mark.parametrize("name", list(SEPARATED))
@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["LF", "CRLF"])
def test_every_separator_is_detected_and_read(tmp_path, engine, name, newline):
    fmt, sep = SEPARATED[name]
    p = write(tmp_path, separated(fmt), newline=newline)
    assert _fileio.sniff(str(p), None).dialect.sep == sep
    u, i, r, extra = load_csv(p, columns=[0, 1, 2, 3], as_frame=False)
    # ids that fit in int32 come back as int32 (half the memory; what fit maps without a copy)
    assert u.dtype == np.int32 and i.dtype == np.int32 and r.dtype == np.float32
    assert u.tolist() == [1, 2, 1, 3] and i.tolist() == [10, 10, 20, 30]
    assert r.tolist() == [4.0, 3.5, 1.0, 5.0]
    assert extra["col3"].tolist() == [t for *_, t in ROWS]
    assert extra["col3"].dtype == np.int64


@pytest.mark.parametrize("name", list(SEPARATED))
def test_separators_with_a_header_and_string_ids(tmp_path, engine, name):
    fmt, _ = SEPARATED[name]
    text = separated(fmt.replace("{u}", "u{u}").replace("{i}", "tt:{i}"),
                     fmt.format(u="userId", i="movieId", r="rating", t="timestamp").strip())
    p = write(tmp_path, text)
    u, i, r = load_csv(p, as_frame=False)
    assert u.dtype == object and u.tolist() == ["u1", "u2", "u1", "u3"]
    assert i.tolist() == ["tt:10", "tt:10", "tt:20", "tt:30"]
    assert all(type(x) is str for x in u)
    assert r.tolist() == [4.0, 3.5, 1.0, 5.0]


@pytest.mark.parametrize("sep,text", [
    ("::", "1::10::4\n2::10::3.5\n"),
    (" ", "1 10  4\n2\t10 3.5\n"),
    (r"\s+", "1 10  4\n2\t10 3.5\n"),
    ("\t", "1\t10\t4\n2\t10\t3.5\n"),
    (r"\t", "1\t10\t4\n2\t10\t3.5\n"),
    (",", "1,10,4\n2,10,3.5\n"),
])
def test_sep_given(tmp_path, engine, sep, text):
    u, i, r = load_csv(write(tmp_path, text), sep=sep, as_frame=False)
    assert u.tolist() == [1, 2] and i.tolist() == [10, 10] and r.tolist() == [4.0, 3.5]


def test_sep_given_overrides_detection(tmp_path, engine):
    # Read as comma-separated, the first field would be "1;10"; with sep=";" it is not.
    p = write(tmp_path, "1;10;4,5\n2;10;3,5\n")
    with pytest.raises(ValueError, match="line 1 has a missing or non-numeric rating"):
        load_csv(p, sep=";", header=False, as_frame=False)  # decimal commas are no numbers


@pytest.mark.parametrize("sep,exc,match", [
    ("ab", ValueError, "sep must be one character .*got 'ab'"),
    ("\n", ValueError, "sep must be one character"),
    (3, TypeError, "sep must be a string"),
])
def test_bad_sep(tmp_path, sep, exc, match):
    with pytest.raises(exc, match=match):
        load_csv(write(tmp_path, "1,2,3\n"), sep=sep)


def test_detection_prefers_the_separator_with_consistent_fields(tmp_path):
    cases = {
        '"Smith, J";10;4\n"Doe, A";11;3\n': ";",  # commas inside quotes
        "1,10,4.0,2020-01-01 10:00:00\n2,11,3.0,2020-01-02 11:00:00\n": ",",
        "1\tThe Matrix\t4\n2\tHeat\t3\n": "\t",  # blanks inside tab-separated fields
        "1::10::5::978300760\n": "::",
        "1 10 5\n": _fileio.WHITESPACE,
    }
    for text, sep in cases.items():
        p = write(tmp_path, text)
        assert _fileio.sniff(str(p), None).dialect.sep == sep, text


def test_quoted_fields_in_a_blank_separated_file(tmp_path, engine):
    p = write(tmp_path, '"user a" 10 4\n"user b"   11 3\n')
    u, i, r = load_csv(p, as_frame=False)
    assert u.tolist() == ["user a", "user b"] and i.tolist() == [10, 11]


def test_many_lines_across_read_chunks(tmp_path, engine):
    """Long enough for several of the parser's reads: the rewrite of "::" and of blank
    runs must not split a separator or a line between chunks."""
    rng = np.random.default_rng(0)
    n = 60_000
    u = rng.integers(0, 10**6, n)
    i = rng.integers(0, 10**4, n)
    r = rng.integers(1, 11, n) / 2
    blanks = np.array([" ", "  ", "\t", " \t ", "   "])
    pad = blanks[rng.integers(0, 5, (n, 3))]
    lines = [f"{a}{p0}{b}{p1}{c:g}{p2}" for a, b, c, p0, p1, p2 in
             zip(u, i, r, pad[:, 0], pad[:, 1], pad[:, 2], strict=True)]
    for name, text in (("ws", "\n".join(lines) + "\n"),
                       ("dc", "".join(f"{a}::{b}::{c:g}\n" for a, b, c in
                                      zip(u, i, r, strict=True)))):
        uu, ii, rr = load_csv(write(tmp_path, text, name), as_frame=False)
        np.testing.assert_array_equal(uu, u)
        np.testing.assert_array_equal(ii, i)
        np.testing.assert_array_equal(rr, r.astype(np.float32))


# ---------------------------------------------------------------------- ids and ratings

def test_ids_keep_their_natural_type(tmp_path, engine):
    p = write(tmp_path, "user,item,rating\n007,NA,4\n010,null,3\n7,None,2\n")
    u, i, r = load_csv(p, as_frame=False)
    assert u.tolist() == ["007", "010", "7"]  # leading zeros: labels, not numbers
    assert i.tolist() == ["NA", "null", "None"]  # not missing values
    assert r.dtype == np.float32


@pytest.mark.parametrize("text", ["1 10 4\n2 11 3\n", "1::10::4\n2::11::3\n",
                                  "userId,movieId,rating\n1,10,4\n2,11,3\n"])
def test_byte_order_mark_is_not_part_of_the_first_id(tmp_path, engine, text):
    p = tmp_path / "bom.txt"
    p.write_bytes(b"\xef\xbb\xbf" + text.encode())
    u, i, r = load_csv(p, as_frame=False)
    assert u.dtype == np.int32 and u.tolist() == [1, 2] and i.tolist() == [10, 11]


def test_arrays_are_writable(tmp_path, engine):
    u, i, r = load_csv(write(tmp_path, "1,10,4\n2,11,3\n"), as_frame=False)
    for a in (u, i, r):
        a[0] = a[1]


@pytest.mark.parametrize("text,line,shown", [
    ("1,2,3\n1,3,x\n", 2, "'x'"),
    ("user,item,rating\n1,2,3\n\n\n1,3,\n", 5, "''"),  # header and blank lines counted
    ("1,2,3\n1,3,nan\n", 2, "'nan'"),
    ("1,2,3\n1,3,inf\n", 2, "'inf'"),
    ("1,2,3\n1,3\n", 2, ""),  # a short line
    ("1 2 3\n\n  1 3  zz  \n", 3, "'zz'"),
    ("1::2::3\n1::3::?\n", 2, "'?'"),
])
def test_bad_rating_names_its_line(tmp_path, engine, text, line, shown):
    with pytest.raises(ValueError, match=f"line {line} has a missing or non-numeric rating "
                                         rf"\({shown}"):
        load_csv(write(tmp_path, text), as_frame=False)


def test_header_only_and_empty_files(tmp_path, engine):
    u, i, r = load_csv(write(tmp_path, "user,item,rating\n"), as_frame=False)
    assert len(u) == len(i) == len(r) == 0 and r.dtype == np.float32
    with pytest.raises(ValueError, match="is empty"):
        load_csv(write(tmp_path, "\n\n", "empty.csv"))


def test_header_inference(tmp_path):
    # rating field not a number -> header; the CLI's positions as strings do not force one
    p = write(tmp_path, "a,b,stars\n1,2,3\n")
    assert load_csv(p, columns=["0", "1", "2"], as_frame=False)[0].tolist() == [1]
    p = write(tmp_path, "1,2,3\n4,5,6\n")
    assert load_csv(p, columns=["0", "1", "2"], as_frame=False)[0].tolist() == [1, 4]
    assert load_csv(p, columns=[0, 1, 2], header=True, as_frame=False)[0].tolist() == [4]
    p = write(tmp_path, "\n\nuser,item,rating\n1,2,3\n")  # blank lines before the header
    assert load_csv(p, as_frame=False)[0].tolist() == [1]


# ---------------------------------------------------------------------- columns

@pytest.mark.parametrize("text,kw", [
    ("userId,movieId,rating,timestamp\n1,10,4.0,5\n2,10,3.5,6\n1,20,1,7\n", {}),
    ("user\titem\trating\n1\t10\t4.0\n2\t10\t3.5\n1\t20\t1\n", {}),
    ("1\t10\t4\t99\n2\t10\t3.5\t98\n1\t20\t1\t97\n", {}),
    ("ts;who;what;stars\n5;1;10;4\n6;2;10;3.5\n7;1;20;1\n", {"columns": ("who", "what", "stars")}),
    ("5|1|10|4\n6|2|10|3.5\n7|1|20|1\n", {"columns": (1, 2, 3)}),
])
def test_load_csv_forms(tmp_path, engine, text, kw):
    p = tmp_path / "r.csv"
    p.write_text(text)
    u, i, r = load_csv(p, as_frame=False, **kw)
    assert list(np.asarray(u).astype(int)) == [1, 2, 1]
    assert list(np.asarray(i).astype(int)) == [10, 10, 20]
    np.testing.assert_allclose(r, [4, 3.5, 1])


def test_load_csv_errors(tmp_path):
    p = tmp_path / "r.csv"
    p.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="no user column"):
        load_csv(p)
    with pytest.raises(ValueError, match="no column 'zz'"):
        load_csv(p, columns=("a", "b", "zz"))
    p.write_text("1,2,3\n1,3,x\n")
    with pytest.raises(ValueError, match="line 2 has a missing or non-numeric rating"):
        load_csv(p, header=False)
    with pytest.raises(FileNotFoundError):
        load_csv(tmp_path / "missing.csv")


BAD_COLUMNS = [
    (["userId", "movieId"], ValueError,
     r"columns must list the user, item and rating columns in that order \(names or 0-based "
     r"positions\), optionally followed by extra columns to keep; got \['userId', 'movieId'\] "
     r"\(2 entries\)\. Add the missing rating column, e\.g\. columns=\['userId', 'movieId', "
     r"'rating'\] \(a file of interactions without ratings: ratings=False\)\."),
    ([0], ValueError, r"got \[0\] \(1 entry\)\. Add the missing item and rating column"),
    ([], ValueError, r"got \[\] \(0 entries\)"),
    ("userId,movieId,rating", TypeError, "columns must be a list of column names or 0-based "
                                         "positions; got 'userId,movieId,rating'"),
    (3, TypeError, "columns must be a list"),
    ([0, 1, -2], TypeError, r"positions \(ints >= 0\); got -2"),
    ([0, 1, None], TypeError, "got None"),
    ([0, 1, True], TypeError, "got True"),
    ([0, 1, ""], TypeError, "got ''"),
    ([0, 1, 1], ValueError, r"column 'movieId' is asked for twice \(as item and as rating\)"),
    (["userId", "movieId", "rating", "userId"], ValueError, "'userId' is asked for twice"),
    ([0, 1, 7], ValueError, "there is no rating column at position 7: its lines have 4 "
                            r"fields\.$"),
    (["userId", "movieId", "stars"], ValueError,
     r"no column 'stars'; columns are \['userId', 'movieId', 'rating', 'timestamp'\]"),
]


@pytest.mark.parametrize("columns,exc,match", BAD_COLUMNS)
def test_bad_columns(tmp_path, columns, exc, match):
    p = write(tmp_path, "userId,movieId,rating,timestamp\n1,10,4,5\n")
    with pytest.raises(exc, match=match):
        load_csv(p, columns=columns)


def test_column_names_match_the_header_whatever_their_case(tmp_path, engine):
    """The usual names are recognised in any case ("User,Item,Rating"), but columns=
    (the CLI's --columns) had to match the header's case exactly (review 17). One
    match in another case is taken; two are refused, naming them."""
    p = write(tmp_path, "User,Item,Stars\n1,10,4\n2,20,5\n")
    u, i, r = load_csv(p, columns=["user", "ITEM", "stars"], as_frame=False)
    assert u.tolist() == [1, 2] and i.tolist() == [10, 20] and r.tolist() == [4, 5]
    p = write(tmp_path, "id,ID,item,rating\n1,7,10,4\n", "two.txt")
    with pytest.raises(ValueError, match=r"column 'Id' matches 2 columns that differ only"):
        load_csv(p, columns=["Id", "item", "rating"])
    assert load_csv(p, columns=["ID", "item", "rating"], as_frame=False)[0].tolist() == [7]


def test_a_wrong_separator_is_suggested(tmp_path):
    p = write(tmp_path, "user,item,rating\n1,10,4\n")
    with pytest.raises(ValueError, match=r"there is no item column at position 1: its lines "
                                         r"have 1 field \(is the separator right\?\)"):
        load_csv(p, sep=";")


def test_names_without_a_header(tmp_path):
    p = write(tmp_path, "1,10,4,5\n")
    with pytest.raises(ValueError, match="header=False; pass 0-based positions"):
        load_csv(p, columns=["a", "b", "c"], header=False)
    with pytest.raises(TypeError, match="header must be 'infer', True or False"):
        load_csv(p, header="yes")


# ---------------------------------------------------------------------- extra columns

ML = "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in ROWS)


def test_extra_columns_as_frame(tmp_path):
    pd = pytest.importorskip("pandas")
    p = write(tmp_path, ML)
    for kw in ({"columns": ["userId", "movieId", "rating", "timestamp"]},
               {"keep": ["timestamp"]}, {"keep": "timestamp"}, {"keep": 3},
               {"columns": [0, 1, 2], "keep": ["timestamp"]}):
        df = load_csv(p, as_frame=True, **kw)
        assert isinstance(df, pd.DataFrame)
        assert list(df.columns) == ["user", "item", "rating", "timestamp"], kw
        assert df["timestamp"].tolist() == [t for *_, t in ROWS]
    assert list(load_csv(p).columns) == ["user", "item", "rating"]  # nothing extra unasked


def test_extra_columns_as_arrays(tmp_path, engine):
    p = write(tmp_path, ML)
    out = load_csv(p, keep=["timestamp"], as_frame=False)
    assert len(out) == 4 and list(out[3]) == ["timestamp"]
    assert out[3]["timestamp"].dtype == np.int64
    assert len(load_csv(p, as_frame=False)) == 3  # no extras asked: the usual triple
    # without a header the extra columns are named by position
    p = write(tmp_path, "1\t10\t4\t99\tx\n2\t11\t3\t98\ty\n", "u.data")
    u, i, r, extra = load_csv(p, columns=[0, 1, 2, 4, 3], as_frame=False)
    assert list(extra) == ["col4", "col3"]
    assert extra["col4"].tolist() == ["x", "y"] and extra["col3"].tolist() == [99, 98]


def test_extra_column_cannot_take_an_output_name(tmp_path):
    p = write(tmp_path, "uid,iid,stars,rating\n1,2,3,4\n")
    with pytest.raises(ValueError, match="extra column 'rating' would clash"):
        load_csv(p, columns=["uid", "iid", "stars"], keep=["rating"])


def test_temporal_split_on_the_result(tmp_path, engine):
    p = write(tmp_path, ML)
    u, i, r, extra = load_csv(p, keep=["timestamp"], as_frame=False)
    train, test = temporal_split((u, i, r), extra["timestamp"], test_size=1)
    assert test[0].tolist() == [2] and test[1].tolist() == [10]  # the latest rating
    assert len(train[0]) == 3
    if engine == "pandas":
        df = load_csv(p, keep=["timestamp"])
        train, test = temporal_split(df, "timestamp", test_size=2)
        assert sorted(test["timestamp"].tolist()) == [881250949, 891717742]


# ---------------------------------------------------------------------- file errors

def check_os_error(info, cls, code, path):
    e = info.value
    assert type(e) is cls and e.errno == code
    assert e.strerror == os.strerror(code) and e.filename == str(path)


def test_missing_file_and_folder(tmp_path, engine):
    with pytest.raises(FileNotFoundError) as info:
        load_csv(tmp_path / "missing.csv")
    check_os_error(info, FileNotFoundError, errno.ENOENT, tmp_path / "missing.csv")
    with pytest.raises(IsADirectoryError) as info:
        load_csv(tmp_path)
    check_os_error(info, IsADirectoryError, errno.EISDIR, tmp_path)


@pytest.mark.skipif(ROOT or os.name != "posix", reason="root reads any file")
def test_unreadable_file(tmp_path):
    p = write(tmp_path, "1,2,3\n")
    os.chmod(p, 0)
    try:
        with pytest.raises(PermissionError) as info:
            load_csv(p)
        check_os_error(info, PermissionError, errno.EACCES, p)
    finally:
        os.chmod(p, 0o644)


# ---------------------------------------------------------------- interactions (ratings=False)


@pytest.mark.parametrize("text,kw", [
    ("user_id,item_id\n1,10\n2,10\n1,20\n", {}),                      # header by known names
    ("1\t10\n2\t10\n1\t20\n", {}),                                   # no header: 0 and 1
    ("visitor;product\n1;10\n2;10\n1;20\n", {"columns": ["visitor", "product"]}),
    ("ts,uid,iid\n5,1,10\n6,2,10\n7,1,20\n", {"columns": [1, 2], "header": True}),
])
def test_interactions_without_ratings(tmp_path, engine, text, kw):
    u, i = arrays(load_csv(write(tmp_path, text), ratings=False, as_frame=False, **kw))
    assert u.tolist() == [1, 2, 1] and i.tolist() == [10, 10, 20]


def test_interactions_with_words_as_ids_and_extra_columns(tmp_path, engine):
    p = write(tmp_path, "alice bob 4\ncarol dave 2\n")  # no header: ids are words
    u, i, extra = load_csv(p, ratings=False, keep=[2], as_frame=False)
    assert list(u) == ["alice", "carol"] and list(i) == ["bob", "dave"]
    assert extra["col2"].tolist() == [4, 2]


def test_interactions_as_a_frame(tmp_path):
    pd = pytest.importorskip("pandas")
    df = load_csv(write(tmp_path, "userId,movieId,rating\n1,10,4\n2,20,5\n"), ratings=False)
    assert isinstance(df, pd.DataFrame) and list(df.columns) == ["user", "item"]
    assert df["item"].tolist() == [10, 20]


def test_a_file_without_a_rating_column_points_to_the_ranking_losses(tmp_path):
    p = write(tmp_path, "user_id,item_id\n1,10\n2,10\n")
    with pytest.raises(ValueError, match="lines have 2 fields, so there is no rating column; "
                                         "read interactions .* with ratings=False"):
        load_csv(p)
    with pytest.raises(ValueError, match=r"Add the missing rating column.*ratings=False"):
        load_csv(p, columns=["user_id", "item_id"])
    with pytest.raises(TypeError, match="ratings must be True or False; got 'no'"):
        load_csv(p, ratings="no")
    with pytest.raises(ValueError, match=r"no item column among \['user', 'x'\]"):
        load_csv(write(tmp_path, "user,x\n1,2\n", "h.csv"), ratings=False)


# ---------------------------------------------------------------- pipes and other streams


def big_ratings_file(tmp_path):
    """A ratings file of 20,000 lines (~190 KB): several times the 64 KiB that sniffing
    reads, so reading a pipe more than once loses lines."""
    rng = np.random.default_rng(3)
    n = 20_000
    text = "user,item,rating\n" + "".join(
        f"u{a},{b},{c:g}\n" for a, b, c in zip(rng.integers(0, 500, n), rng.integers(0, 300, n),
                                               rng.integers(1, 11, n) / 2, strict=True))
    p = write(tmp_path, text, "big.csv")
    assert p.stat().st_size > 2 * 65536
    return p, n


def through_a_pipe(data, read):
    """``read(path)`` of a real pipe (``/dev/fd/N``, as a shell's ``<(...)`` gives) that a
    thread fills with ``data``."""
    r, w = os.pipe()

    def feed():
        try:
            with os.fdopen(w, "wb") as f:
                f.write(data)
        except BrokenPipeError:  # the reader stopped early: its error is the test's
            pass

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    try:
        return read(f"/dev/fd/{r}")
    finally:
        os.close(r)
        thread.join(10)


needs_dev_fd = pytest.mark.skipif(not os.path.isdir("/dev/fd"), reason="no /dev/fd")


@needs_dev_fd
@pytest.mark.parametrize("reader", [load_csv, load_ratings])
def test_a_pipe_is_read_whole(tmp_path, engine, reader, monkeypatch):
    """The file is opened several times (magic bytes, sniffing, parsing): a pipe is read
    once, into a temporary file that is removed afterwards."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    p, n = big_ratings_file(tmp_path)
    expected = arrays(reader(p, as_frame=False))
    got = arrays(through_a_pipe(p.read_bytes(), lambda path: reader(path, as_frame=False)))
    assert len(got[0]) == n
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a, b)
    assert os.listdir(tmp_path / "tmp") == []


@needs_dev_fd
def test_errors_in_a_pipe_name_the_pipe_and_the_line(tmp_path):
    p, n = big_ratings_file(tmp_path)
    data = p.read_bytes() + b"u1,2,bad\n"

    def read(path):
        with pytest.raises(ValueError) as info:
            load_csv(path)
        return path, str(info.value)

    path, msg = through_a_pipe(data, read)
    assert msg.startswith(f"{path}: line {n + 2} has a missing or non-numeric rating ('bad')")


@needs_dev_fd
def test_a_parquet_file_through_a_pipe(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    p = tmp_path / "r.parquet"
    pq.write_table(pa.table({"userId": [1, 2], "movieId": [10, 10], "rating": [4.0, 3.5]}), p)
    u, i, r = through_a_pipe(p.read_bytes(), lambda path: load_ratings(path, as_frame=False))
    assert u.tolist() == [1, 2] and i.tolist() == [10, 10] and r.tolist() == [4.0, 3.5]


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize("columns", [{"userId", "movieId", "rating"}, frozenset([0, 1, 2]),
                                     {"userId": 0, "movieId": 1, "rating": 2}])
@pytest.mark.parametrize("reader", [load_csv, load_ratings])
def test_columns_must_be_ordered(tmp_path, columns, reader):
    """A set's order changes with PYTHONHASHSEED: which column would be the rating?"""
    p = write(tmp_path, "userId,movieId,rating\n1,10,4\n")
    with pytest.raises(TypeError, match=r"columns must be an ordered sequence \(a list or "
                                        r"tuple\) .*; got a (set|frozenset|dict)"):
        reader(p, columns=columns)
    with pytest.raises(TypeError, match=r"keep must be an ordered sequence"):
        reader(p, keep=columns)
    # a dict's keys keep their order
    u, i, r = reader(p, columns={"userId": 0, "movieId": 0, "rating": 0}.keys(), as_frame=False)
    assert (u.tolist(), i.tolist(), r.tolist()) == ([1], [10], [4.0])


@pytest.mark.parametrize("kw,match", [
    ({"as_frame": "x"}, "as_frame must be True, False or 'auto'; got 'x'"),
    ({"as_frame": "no"}, "as_frame must be True, False or 'auto'; got 'no'"),
    ({"as_frame": None}, "as_frame must be True, False or 'auto'; got None"),
    ({"as_frame": 1}, "as_frame must be True, False or 'auto'; got 1"),
    ({"header": "yes"}, "header must be 'infer', True or False; got 'yes'"),
    ({"header": np.array([1, 2])}, "header must be 'infer', True or False"),
])
@pytest.mark.parametrize("reader", [load_csv, load_ratings])
def test_flags_must_be_booleans(tmp_path, kw, match, reader):
    with pytest.raises(TypeError, match=re.escape(match)):
        reader(write(tmp_path, "1,10,4\n"), **kw)


@pytest.mark.parametrize("reader", [load_csv, load_ratings])
def test_a_bytes_path_is_read_like_a_str(tmp_path, reader):
    p = write(tmp_path, "userId,movieId,rating\n1,10,4\n2,20,3.5\n")
    expected = arrays(reader(str(p), as_frame=False))
    for a, b in zip(arrays(reader(os.fsencode(p), as_frame=False)), expected, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(FileNotFoundError) as info:
        reader(os.fsencode(tmp_path / "missing.csv"))
    assert info.value.filename == str(tmp_path / "missing.csv")


def test_a_file_that_is_not_utf8_names_its_line(tmp_path, engine):
    text = "user,item,rating\n1,10,4\n\xe9t\xe9,20,3\n".encode("latin-1")
    (tmp_path / "latin1.csv").write_bytes(text)
    with pytest.raises(ValueError, match=re.escape(
            f"{tmp_path / 'latin1.csv'}: line 3 is not UTF-8 text (byte 0xe9); re-encode the "
            "file as UTF-8")):
        load_csv(tmp_path / "latin1.csv")


def test_the_line_that_is_not_utf8_is_found_beyond_the_first_read(tmp_path):
    """The line is counted over the whole file, across its 1 MiB reads, even with a
    character cut in two at a read's end."""
    # 23 bytes of header, then lines of 8 bytes ("ü" is 2): byte 2**20 is a second byte
    first = "user_id,item_id,rating\n" + "ü1,2,3\n" * 200_000
    assert (2**20 - 23) % 8 == 1
    (tmp_path / "r.csv").write_bytes(first.encode() + b"u,\xff,3\n")
    with pytest.raises(ValueError, match=r"r\.csv: line 200002 is not UTF-8 text \(byte 0xff\)"):
        load_csv(tmp_path / "r.csv")


@pytest.mark.parametrize("text,line", [
    (b"user,item,rating\r1,2,3\r3,4,5\r", 1),  # old Mac line ends
    (b"user,item,rating\n1,2,3\n3,4\r5,6\n", 3),  # a stray carriage return
    (b"PK\x03\x04\x14\x00\n\x00\x08\x00\x08\x00\r\x91\x12\x00\xff\n", 2),  # binary, a zip
])
def test_a_carriage_return_inside_a_line_names_the_file_and_line(tmp_path, engine, text,
                                                                 line):
    """The csv module raised its own _csv.Error ("new-line character seen in unquoted
    field") from sniffing; a model file given as data did the same on the command line."""
    p = tmp_path / "r.csv"
    p.write_bytes(text)
    want = re.escape(f"{p}: line {line} holds a carriage return (\\r) that does not end the "
                     "line")
    for reader in (load_csv, load_ratings):
        with pytest.raises(_fileio.TextFormatError, match=want):
            reader(p)
    with pytest.raises(ValueError, match=want):  # the sep given: the same check
        load_csv(p, sep=",")
    # CRLF line ends stay fine
    p.write_bytes(b"user,item,rating\r\n1,2,3\r\n3,4,5\r\n")
    assert load_csv(p, as_frame=False)[0].tolist() == [1, 3]


# ------------------------------------------- malformed lines (the seventh adversarial review)

PAIRS = "24,41\n12,52\n77,42\n71,5\n"


@pytest.mark.parametrize("text,kw", [
    ("CustomerID,ProductID\n" + PAIRS, {}),
    ("Customer ID,Product ID\n" + PAIRS, {}),
    ("customer,sku\n24,AB-1\n12,CD-2\n", {}),  # one id column of numbers is enough
    ("ts,CustomerID,ProductID\n5,24,41\n6,12,52\n", {"columns": [1, 2]}),
])
def test_an_unknown_header_of_interactions_is_not_trained_as_one(tmp_path, engine, text, kw):
    """A first line of words above lines of numbers is a header, whatever its names: it was
    read as an interaction, and turned every id into a string."""
    p = write(tmp_path, text)
    names = text.splitlines()[0].split(",")
    if "columns" in kw:  # positions chosen: the header is skipped
        u, i = arrays(load_csv(p, ratings=False, as_frame=False, **kw))
        assert u.tolist() == [24, 12] and i.tolist() == [41, 52]
        return
    with pytest.raises(ValueError, match=re.escape(
            f"{p}: no user column among {names}; pass columns=[user, item] names or positions "
            "(on the command line --columns USER,ITEM).")):
        load_csv(p, ratings=False)
    u, i = arrays(load_csv(p, ratings=False, as_frame=False, columns=names[:2]))
    assert u.tolist()[:2] == [24, 12] and u.dtype == np.int32


@pytest.mark.parametrize("text,users", [
    ("alice,bob\ncarol,dave\n", ["alice", "carol"]),  # words throughout: data
    ("1,034545104X\n2,0345\n3,12\n", [1, 2, 3]),  # an odd id, not a header
    ("user_id,item_id\n1,10\n", [1]),  # known names
])
def test_what_stays_data_and_what_is_a_header(tmp_path, engine, text, users):
    u = load_csv(write(tmp_path, text), ratings=False, as_frame=False)[0]
    assert u.tolist() == users


@pytest.mark.parametrize("first", ["# exported interactions", "#comment", "My export"])
@pytest.mark.parametrize("ratings", [True, False])
def test_a_title_or_comment_line_above_the_data_is_refused_naming_it(tmp_path, engine, first,
                                                                    ratings):
    """Without a separator that splits every first line, blanks were taken as the
    separator: each line became one user with the item "" (exit 0 on the command line), or
    pandas said "Usecols do not match columns", naming neither the file nor the line."""
    text = f"{first}\nuser,item,rating\n" + "".join(f"{k},{k + 1},3\n" for k in range(30))
    p = write(tmp_path, text if ratings else text.replace(",3\n", "\n").replace(",rating", ""))
    want = re.escape(f"{p}: line 1 ({first!r}) is not split into fields by ',', as 19 of the "
                     "first 20 lines are. If it is a title or a comment, remove it (lines "
                     "starting with '#' are not skipped")
    for reader in (load_csv, load_ratings):
        with pytest.raises(_fileio.TextFormatError, match=want):
            reader(p, ratings=ratings)
    with pytest.raises(_fileio.TextFormatError, match=want):
        load_csv(p, ratings=ratings, sep=",")  # the separator given: the same check
    with pytest.raises(_fileio.TextFormatError, match="line 3 .'1'. is not split into fields"):
        load_csv(write(tmp_path, "1,2\n3,4\n1\n5,6\n", "short.csv"), ratings=False)


def test_a_header_below_the_first_line_is_refused(tmp_path, engine):
    """A title that the separator splits, then the header: the header was data."""
    p = write(tmp_path, "Report, 2024\nuser,item\n1,2\n3,4\n")
    with pytest.raises(ValueError, match=re.escape(
            f"{p}: line 2 ('user,item') names the user and item columns as a header does, but "
            "it is not the file's first line")):
        load_csv(p, ratings=False)
    p = write(tmp_path, "user,item,rating\n1,2,3\nuser,item,rating\n4,5,6\n", "joined.csv")
    with pytest.raises(ValueError, match="line 3 .'user,item,rating'. names the user and item"):
        load_csv(p)
    header = "user,item,rating," + ",".join(f"extra_column_{n}" for n in range(5))
    row = "1,2,3," + ",".join("x" * 5)
    p = write(tmp_path, f"{header}\n{row}\n{header}\n{row}\n", "long.csv")
    with pytest.raises(ValueError, match=re.escape(
            f"line 3 ({header[:57] + '...'!r}) names the user and item columns")):
        load_csv(p)  # a long line is cut as in the other line messages


@pytest.mark.parametrize("text,line,role,ratings", [
    ("user,item,rating\n1,2,3\n,5,3\n", 3, "user", True),
    ("user,item,rating\n1,2,3\n4,,3\n", 3, "item", True),
    ("user,item,rating\n1,2,3\n  ,5,3\n", 3, "user", True),  # blanks only
    ("1,2\n3,4\n\n \t\n5,\n", 5, "item", False),  # blank lines skipped and counted
    ("1\t2\t3\n\t\t\n4\t5\t6\n", 2, "user", True),  # a line of tabs: a row of a TSV file
    ("a,b,3\n,c,4\n", 2, "user", True),  # string ids
])
def test_an_empty_id_names_its_line(tmp_path, engine, text, line, role, ratings):
    """An empty field was the id "" and turned a column of integers into strings."""
    p = write(tmp_path, text)
    with pytest.raises(ValueError, match=re.escape(
            f"{p}: line {line} has an empty {role} id; fix or remove that line, or choose the "
            f"{role} column with columns=.")):
        load_csv(p, ratings=ratings)


def test_a_blank_line_does_not_shift_the_line_of_a_bad_rating(tmp_path, engine):
    """A line of blanks is skipped by the parser; the line number counted it as a row."""
    with pytest.raises(ValueError, match="line 4 has a missing or non-numeric rating .'x'"):
        load_csv(write(tmp_path, "user,item,rating\n1,2,3\n  \t \n1,3,x\n"))


@pytest.mark.parametrize("text,line,fields,shown", [
    ("user,item,rating\n1,2,3\n4,5,6\n7,8,9,10\n", 4, 4, "7,8,9,10"),
    ("1,2,3,4\n1,2,3\n5,6,7\n", 1, 4, "1,2,3,4"),  # the first line: no header to go by
    ("1\t2\t3\n4\t5\t6\t7\t8\n", 2, 5, "4\t5\t6\t7\t8"),
    ("1::2::3\n4::5::6::7\n4::5::6\n", 2, 4, "4::5::6::7"),
    ("1 2 3  \n4 5\t6\t\n7 8 9  \t 10 \n", 3, 4, "7 8 9  \t 10 "),  # blanks at ends: no field
    ('1,"a,b",3\n2,"c",4\n5,d,6,7\n', 3, 4, "5,d,6,7"),  # quoted separators do not count
    ("1,2,3\n4,5,6\n7,8,9" + "," * 5000 + "\n", 3, 5003, "7,8,9,,,,,"),
])
def test_a_line_with_more_fields_names_it(tmp_path, engine, text, line, fields, shown):
    """A line with more fields than the file's others was read, its extra fields dropped,
    and pandas' parser sized every line of the chunk to it (2.6 GB for one line of 10**5
    commas among 3,000 ratings; killed for lack of memory at 10**6)."""
    p = write(tmp_path, text)
    line_text = text.splitlines()[line - 1]
    assert line_text.startswith(shown)
    shown = line_text if len(line_text) <= 60 else line_text[:57] + "..."
    with pytest.raises(_fileio.TextFormatError, match=re.escape(
            f"{p}: line {line} has {fields} fields, more than the 3 of the file's lines "
            f"({shown!r}). A separator inside a field that is not quoted, or lines run "
            "together? Fix or remove that line.")):
        load_csv(p, as_frame=False)


def test_lines_wider_than_the_header_are_fine_when_most_are(tmp_path, engine):
    """The file's width is that of most of its first data lines: a trailing separator on
    every data line (not on the header) is no error."""
    u, i, r = load_csv(write(tmp_path, "user,item,rating\n1,2,3,\n4,5,6,\n"), as_frame=False)
    assert u.tolist() == [1, 4] and r.tolist() == [3, 6]


def test_a_float_written_id_keeps_large_integer_ids_apart(tmp_path, engine):
    """One id written "5.0" made the column float64, which rounded 19-digit ids into one
    another: a model of 2 users from 3, saved with status 0 (review 17). Such a column is
    read again as text: the ids are labels, all kept apart."""
    p = write(tmp_path, "user,item,rating\n1152921504606846977,1,1\n"
                        "1152921504606846976,2,5\n5.0,3,3\n")
    u, i, r = load_csv(p, as_frame=False)
    assert u.tolist() == ["1152921504606846977", "1152921504606846976", "5.0"]
    # ids a float holds exactly stay numbers, as before
    u, _, _ = load_csv(write(tmp_path, "user,item,rating\n1.0,1,1\n2,2,5\n", "s.txt"),
                       as_frame=False)
    assert u.dtype.kind in "if" and u.tolist() == [1, 2]


def test_exact_ids_and_a_bad_rating_name_the_line_and_uint64_in_either_reader(tmp_path,
                                                                               engine):
    """The exact re-read of large ids kept the rating column's first dtype, so a bad
    rating gave pandas' bare "could not convert string to float"; ids beyond int64 came
    back as strings without pandas, uint64 with it (review 18). A rating written beyond
    float32 (1e309) is named as such."""
    p = write(tmp_path, "user,item,rating\n1152921504606846977,1,abc\n5.0,2,3\n")
    with pytest.raises(ValueError, match=r"line 2 has a missing or non-numeric rating "
                                         r"\('abc'\)"):
        load_csv(p)
    u, _, _ = load_csv(write(tmp_path, "user,item,rating\n1,1,1\n18446744073709551615,2,3\n",
                             "u.txt"), as_frame=False)
    assert u.dtype == np.uint64 and u.tolist() == [1, 2**64 - 1]
    with pytest.raises(ValueError, match=r"line 3 has a rating beyond float32's range "
                                         r"\('1e309'"):
        load_csv(write(tmp_path, "user,item,rating\n1,1,1\n2,2,1e309\n", "big.txt"))


def test_a_name_that_matches_columns_of_two_cases_is_refused(tmp_path):
    p = write(tmp_path, "user,User,item,rating\n1,2,3,4\n")
    with pytest.raises(ValueError, match=r"column 'USER' matches 2 columns that differ only "
                                         r"in case \(\['user', 'User'\]\); name one exactly"):
        load_csv(p, columns=["USER", "item", "rating"])


@pytest.mark.parametrize("chunk", [None, 1000])
def test_id_types_do_not_depend_on_where_in_a_long_file_a_value_is(tmp_path, monkeypatch,
                                                                   chunk):
    """The same ids give the same column whether an odd one is in the first lines or
    300,000 lines down (review 17): pandas parsed a chunk in pieces of 262,144 lines and
    reconciled them into a column mixing ints and strings (an ISBN ending in X among
    digits), and its whole-file fallback read int64 beside uint64 as float64, which merged
    ids. chunk=1000 takes the fallback (a type changing between chunks)."""
    pytest.importorskip("pandas")
    if chunk:
        monkeypatch.setattr(_fileio, "_CHUNK_ROWS", chunk)
    n = 300_000
    body = "".join(f"{k},{k % 97},4\n" for k in range(n))
    p = write(tmp_path, "user,item,rating\n" + body + "1,034541762X,3\n", "isbn.txt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no pandas DtypeWarning either
        _, items, _ = load_csv(p, as_frame=False)
    assert {type(x) for x in items.tolist()} == {str} and items[-1] == "034541762X"
    assert items[5] == "5" and len(set(items.tolist())) == 98
    big = 2**62
    body = "".join(f"{big + k},{k % 97},4\n" for k in range(n))
    p = write(tmp_path, "user,item,rating\n" + body + f"{2**63 + 7},1,3\n", "u64.txt")
    users, _, _ = load_csv(p, as_frame=False)
    assert users.dtype == np.uint64 and np.unique(users).size == n + 1
    assert int(users[-1]) == 2**63 + 7 and int(users[12345]) == big + 12345


def test_a_wide_line_in_a_later_chunk_names_its_line(tmp_path, monkeypatch):
    pytest.importorskip("pandas")
    monkeypatch.setattr(_fileio, "_CHUNK_ROWS", 4)
    rows = "".join(f"{k},{k % 7},3\n" for k in range(40))
    p = write(tmp_path, "user,item,rating\n" + rows + "\n1,2,3,4,5\n" + rows)
    with pytest.raises(_fileio.TextFormatError, match="line 43 has 5 fields, more than the 3"):
        load_csv(p)


def test_a_very_wide_line_is_refused_without_memory(tmp_path):
    """3,000 ratings and one line of 100,000 commas: pandas sized the 2,950 lines after it
    to 100,003 fields each, a peak of 2.6 GB for a 143 KB file. The child process reports
    how much its peak resident memory grew during load_csv."""
    pytest.importorskip("pandas")
    if not os.path.isfile("/proc/self/status"):
        pytest.skip("needs Linux's /proc/self/status")
    lines = [f"{k % 100},{k % 60},{k % 5 + 1}" for k in range(3000)]
    p = write(tmp_path, "\n".join(["user,item,rating", *lines[:50], "1,2,3" + "," * 100_000,
                                   *lines[50:]]) + "\n")
    # pandas is imported before the first reading: its import alone grows the peak by
    # 75 MB, 160 MB under the sanitizer build's allocator (tools/sanitize.sh).
    child = textwrap.dedent("""
        import sys
        import pandas
        from mfsgd.datasets import load_csv

        def peak():
            with open("/proc/self/status") as f:
                return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:"))

        before = peak()
        try:
            load_csv(sys.argv[1])
            message = "loaded"
        except ValueError as e:
            message = str(e)
        print(peak() - before, message)
    """)
    out = subprocess.run([sys.executable, "-c", child, str(p)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    grew_kib, message = out.stdout.split(" ", 1)
    assert message.startswith(f"{p}: line 52 has 100003 fields"), out.stdout
    assert int(grew_kib) < 100 * 1024, out.stdout  # was 2.5 GB


@pytest.mark.parametrize("encoding,named", [
    ("utf-16", "UTF-16 (it starts with the UTF-16 byte-order mark)"),
    ("utf-16-le", "UTF-16LE (its first bytes have NULs between the characters"),
    ("utf-16-be", "UTF-16BE (its first bytes have NULs between the characters"),
    ("utf-32", "UTF-32 (it starts with the UTF-32 byte-order mark)"),
    ("utf-32-be", "UTF-32BE (its first bytes have NULs between the characters"),
])
@pytest.mark.parametrize("kw", [{}, {"columns": [0, 1, 2]}, {"ratings": False},
                                {"ratings": False, "columns": [0, 1]}])
def test_utf16_and_utf32_files_are_named_not_utf8(tmp_path, engine, encoding, named, kw):
    """Only one path said "not UTF-8"; the others showed the header's names with NULs
    ('\\x00i\\x00t\\x00e\\x00m') or a "non-numeric rating" of NULs."""
    p = tmp_path / "r16.csv"
    p.write_bytes(separated("{u},{i},{r},{t}\n", "user,item,rating,ts").encode(encoding))
    for reader in (load_csv, load_ratings):
        with pytest.raises(ValueError, match=re.escape(
                f"{p} is not UTF-8 text: it looks like {named}")):
            reader(p, **kw)


def test_a_nul_inside_an_id_is_not_taken_for_utf16(tmp_path, engine):
    p = tmp_path / "r.csv"
    p.write_bytes(b"user,item,rating\na\x00b,1,3\nc,2,4\n")
    assert list(load_csv(p, as_frame=False)[0]) == ["a\x00b", "c"]
