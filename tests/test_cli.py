"""The ``mfsgd`` command line: options, output, and one-line errors with status 2.

Error paths run the real command (``python -m mfsgd``) in a subprocess, so stderr is
exactly what a user sees; the rest calls ``_cli.main`` in-process (faster, and lets a
test look at what was plotted or saved).
"""

import errno
import io
import json
import os
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest

from mfsgd import (
    MatrixFactorization,
    TrainingInterrupted,
    _cli,
    _config,
    _fileio,
    load,
    plot_history,
)
from mfsgd.datasets import load_csv, make_ratings

# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A directory with a MovieLens-style CSV (plus an epoch-seconds column and a column
    of huge values), a model trained on it, and a model with string ids."""
    d = tmp_path_factory.mktemp("cli")
    u, i, r = make_ratings(100, 50, 2000, random_state=0, as_frame=False)
    ts = 874_965_478 + np.arange(len(r))
    big = 2.5e6 + np.arange(len(r)) + 0.5
    np.savetxt(d / "r.csv", np.column_stack([u, i, r, ts, big]),
               fmt=["%d", "%d", "%.3f", "%d", "%.1f"], delimiter=",",
               header="userId,movieId,rating,timestamp,amount", comments="")
    MatrixFactorization(n_factors=4, n_epochs=2, random_state=0).fit((u, i, r)).save(d / "m.mfsgd")
    su, si = np.char.add("u", u.astype(str)), np.char.add("i", i.astype(str))
    MatrixFactorization(n_factors=4, n_epochs=2, random_state=0).fit((su, si, r)).save(
        d / "s.mfsgd")
    (d / "adir").mkdir()
    # interactions only: a header that names the user and item columns, no ratings
    np.savetxt(d / "pairs.csv", np.column_stack([u, i]), fmt="%d", delimiter=",",
               header="user_id,item_id", comments="")
    (d / "header.csv").write_text("userId,movieId,rating\n")
    (d / "bad.csv").write_text("userId,movieId,rating\n1,2,abc\n2,3,4\n")
    (d / "latin1.csv").write_bytes("userId,movieId,rating\n\xe9t\xe9,1,4\n".encode("latin-1"))
    # malformed files of the seventh review
    pair_lines = "".join(f"{a},{b}\n" for a, b in zip(u, i, strict=True))
    (d / "cust.csv").write_text("CustomerID,ProductID\n" + pair_lines)
    (d / "title.csv").write_text("# exported interactions\nuser_id,item_id\n" + pair_lines)
    (d / "emptyuser.csv").write_text("userId,movieId,rating\n1,2,3\n,5,3\n4,5,3\n")
    (d / "wide.csv").write_text("userId,movieId,rating\n1,2,3\n4,5,3\n4,5,3" + ",9" * 2000
                                + "\n7,8,4\n")
    (d / "r16.csv").write_bytes((d / "r.csv").read_text().encode("utf-16"))
    return {"dir": d, "u": u, "i": i, "r": r}


def run(args, cwd):
    return subprocess.run([sys.executable, "-m", "mfsgd", *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def assert_one_line_error(res, command):
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert res.stderr.count("\n") == 1 and res.stderr.endswith("\n"), res.stderr
    assert res.stderr.startswith(f"mfsgd {command}: error: "), res.stderr
    assert "Traceback" not in res.stderr and "\r" not in res.stderr
    assert res.stdout == ""


TRAIN = ["train", "r.csv", "-o", "out.mfsgd", "--factors", "4", "--epochs", "2"]

# ---------------------------------------------------------------- the table of mistakes

MISTAKES = [
    # (id, argv, the whole line after "mfsgd COMMAND: error: ", or parts of it)
    ("missing data file", ["train", "missing.csv", "-o", "x.mfsgd"],
     "missing.csv: no such file or directory"),
    ("directory as data file", ["train", "adir", "-o", "x.mfsgd"], "adir: is a directory"),
    ("missing model file", ["info", "missing.mfsgd"], "missing.mfsgd: no such file or directory"),
    ("directory as model file", ["predict", "adir", "1", "2"], "adir: is a directory"),
    ("missing validation file", TRAIN + ["--validation", "val.csv"],
     "val.csv: no such file or directory"),
    ("CSV as model file", ["recommend", "r.csv", "1"], "r.csv is not a valid mfsgd model file"),
    ("wrong column names", TRAIN + ["--columns", "user,item,stars"], "r.csv: no column 'user'"),
    ("two columns", TRAIN + ["--columns", "userId,movieId"],
     "--columns userId,movieId names no rating column, which the squared loss predicts; add "
     "it (USER,ITEM,RATING), or rank items from these interactions with --loss bpr, warp or "
     "softmax\n"),
    ("one column", TRAIN + ["--columns", "userId"],
     "argument --columns: needs USER,ITEM,RATING (or USER,ITEM for interactions with a "
     "ranking --loss): comma-separated column names or 0-based positions; got 'userId' "
     "(1 column); see 'mfsgd train --help'"),
    ("pairs file without --loss", ["train", "pairs.csv", "-o", "out.mfsgd"],
     "pairs.csv: lines have 2 fields, so there is no rating column; read interactions"),
    ("min-rating on a pairs file", ["train", "pairs.csv", "-o", "out.mfsgd", "--loss", "bpr",
                                    "--columns", "user_id,item_id", "--min-rating", "4"],
     "--columns user_id,item_id names no rating column, which --min-rating needs"),
    # not load_ratings' advice to use a ranking loss (--loss bpr) with ratings=False
    ("min-rating on a 2-field file", ["train", "pairs.csv", "-o", "out.mfsgd", "--loss",
                                      "bpr", "--min-rating", "4"],
     "pairs.csv has no rating column, which --min-rating needs; drop --min-rating or name "
     "the column with --columns\n"),
    ("min-rating on a 2-field validation file", TRAIN + ["--loss", "bpr", "--min-rating", "4",
                                                         "--validation", "pairs.csv"],
     "pairs.csv has no rating column, which --min-rating needs; drop --min-rating or name "
     "the column with --columns\n"),
    ("threshold on a file without ratings", ["evaluate", "pairs.csv", "--loss", "bpr",
                                             "--threshold", "4"],
     "--threshold 4.0: pairs.csv has no rating column, so every held-out interaction is "
     "relevant; drop --threshold, or name the rating column with --columns "
     "USER,ITEM,RATING\n"),
    ("unknown loss", TRAIN + ["--loss", "hinge"],
     "argument --loss: invalid choice: 'hinge' (choose from"),
    ("eval metric of a ranking loss", ["train", "pairs.csv", "-o", "out.mfsgd", "--loss",
                                       "warp", "--eval-metric", "rmse"],
     "--eval-metric must be one of ndcg@K, recall@K, hit_rate@K (hr@K for hit_rate@K; K an "
     "int >= 1) with --loss warp; "
     "got 'rmse'."),
    ("a parameter in the options' words", TRAIN + ["--loss", "bpr", "--min-rating", "nan"],
     "--min-rating must be None or a finite number; got nan."),
    ("a rating column in the options' words", ["train", "bad.csv", "-o", "out.mfsgd"],
     "line 2 has a missing or non-numeric rating ('abc'); fix or remove that line, or "
     "choose the rating column with --columns."),
    ("rmse of a ranking loss", ["evaluate", "pairs.csv", "--loss", "bpr", "--metrics",
                                "ndcg@10,rmse"],
     "--metrics ndcg@10,rmse: a ranking loss predicts scores, not ratings"),
    ("zero negatives", TRAIN + ["--loss", "bpr", "--negatives", "0"],
     "argument --negatives: must be an integer >= 1; got '0'"),
    ("four columns", ["evaluate", "r.csv", "--columns", "userId,movieId,rating,timestamp"],
     "argument --columns: needs USER,ITEM,RATING"),
    ("timestamp as rating", TRAIN + ["--columns", "userId,movieId,timestamp"],
     ("r.csv: the rating column 'timestamp' holds values from 8.7496",  # float32 digits
      "e+08, which look like Unix timestamps, not ratings; choose the rating column with "
      "--columns USER,ITEM,RATING\n")),
    ("huge ratings", TRAIN + ["--columns", "userId,movieId,amount"],
     "the rating column 'amount' holds values from 2.5e+06 to 2.502e+06, beyond any "
     "rating scale"),
    ("predict unknown user", ["predict", "m.mfsgd", "999999", "1"],
     "user 999999 is not in the model (pass --allow-unknown to predict from the item's bias)"),
    ("predict unknown item", ["predict", "m.mfsgd", "1", "999999"],
     "item 999999 is not in the model (pass --allow-unknown to predict from the user's bias)"),
    ("predict non-integer id", ["predict", "m.mfsgd", "abc", "1"],
     "user 'abc' is not in the model: its user ids are integers"),
    ("predict unknown string id", ["predict", "s.mfsgd", "u1", "nope"],
     "item 'nope' is not in the model"),
    ("recommend unknown user", ["recommend", "m.mfsgd", "999999"],
     "user 999999 is not in the model (pass --allow-unknown to serve the most popular items)"),
    ("n = 0", ["recommend", "m.mfsgd", "1", "-n", "0"],
     "argument -n: must be an integer >= 1; got '0'; see 'mfsgd recommend --help'"),
    ("factors = 0", TRAIN[:4] + ["--factors", "0"], "argument --factors: must be an integer >= 1"),
    ("epochs = 0", TRAIN[:4] + ["--epochs", "0"], "argument --epochs: must be an integer >= 1"),
    ("demo factors = 0", ["demo", "--factors", "0"], "argument --factors: must be an integer"),
    ("negative lr", TRAIN + ["--lr", "-0.1"], "argument --lr: must be a number > 0; got '-0.1'"),
    ("validation fraction 1", TRAIN + ["--early-stopping", "--validation-fraction", "1"],
     "argument --validation-fraction: must be a number > 0 and < 1; got '1'"),
    ("blocks 256", TRAIN + ["--blocks", "256"], "argument --blocks: must be an integer >= 1 and "
     "<= 255"),
    ("patience without early stopping", TRAIN + ["--patience", "2"],
     "--patience only applies with --early-stopping; add --early-stopping"),
    ("cv 1", ["evaluate", "r.csv", "--cv", "1"], "argument --cv: must be an integer >= 2"),
    ("output is a directory", ["train", "r.csv", "-o", "adir"], "adir: is a directory"),
    ("output in a missing directory", ["train", "r.csv", "-o", "nodir/m.mfsgd"],
     "nodir/m.mfsgd: directory nodir does not exist"),
    ("plot in a missing directory", TRAIN + ["--plot", "nodir/c.png"],
     "nodir/c.png: directory nodir does not exist"),
    ("no output option", ["train", "r.csv"],
     "the following arguments are required: -o/--output; see 'mfsgd train --help'"),
    ("empty output path", ["train", "r.csv", "-o", ""], "the output path is empty\n"),
    ("empty plot path", TRAIN + ["--plot", ""], "the --plot path is empty\n"),
    ("evaluate a header-only file", ["evaluate", "header.csv"],
     "header.csv has no ratings, only a header\n"),
    ("header-only validation file", TRAIN + ["--validation", "header.csv"],
     "header.csv has no ratings, only a header\n"),
    ("header-only file of interactions", ["train", "header.csv", "-o", "out.mfsgd", "--loss",
                                          "bpr"], "header.csv has no interactions, only a header"),
    ("Latin-1 file", ["train", "latin1.csv", "-o", "out.mfsgd"],
     "latin1.csv: line 2 is not UTF-8 text (byte 0xe9); re-encode the file as UTF-8"),
    # an unknown header above interactions was trained as one (ids turned into strings)
    ("interactions under an unknown header", ["train", "cust.csv", "-o", "out.mfsgd",
                                              "--loss", "bpr"],
     "cust.csv: no user column among ['CustomerID', 'ProductID']; pass columns=[user, item] "
     "names or positions (on the command line --columns USER,ITEM).\n"),
    # a title line made blanks the separator: 2001 "users" and items '' / 'interactions'
    ("title above interactions", ["train", "title.csv", "-o", "out.mfsgd", "--loss", "bpr"],
     "title.csv: line 1 ('# exported interactions') is not split into fields by ',', as 19 "
     "of the first 20 lines are. If it is a title or a comment, remove it"),
    ("title above interactions, evaluate", ["evaluate", "title.csv", "--loss", "bpr"],
     "title.csv: line 1 ('# exported interactions') is not split into fields by ','"),
    ("empty user id", ["train", "emptyuser.csv", "-o", "out.mfsgd"],
     "emptyuser.csv: line 3 has an empty user id; fix or remove that line"),
    ("a line with too many fields", ["train", "wide.csv", "-o", "out.mfsgd"],
     "wide.csv: line 4 has 2003 fields, more than the 3 of the file's lines ('4,5,3,9,9,"),
    ("UTF-16 file", ["train", "r16.csv", "-o", "out.mfsgd"],
     "r16.csv is not UTF-8 text: it looks like UTF-16 (it starts with the UTF-16 byte-order "
     "mark). Re-encode the file as UTF-8, e.g. with iconv -f UTF-16 -t UTF-8"),
    ("UTF-16 file, columns by position", ["train", "r16.csv", "-o", "out.mfsgd", "--columns",
                                          "0,1,2"], "r16.csv is not UTF-8 text"),
    ("UTF-16 file of interactions", ["train", "r16.csv", "-o", "out.mfsgd", "--loss", "bpr",
                                     "--columns", "0,1"], "r16.csv is not UTF-8 text"),
    ("demo of fewer than 10 ratings", ["demo", "--users", "3", "--items", "3", "--ratings", "9"],
     "argument --ratings: must be an integer >= 10; got '9'"),
]


@pytest.mark.parametrize("argv,expected", [m[1:] for m in MISTAKES],
                         ids=[m[0] for m in MISTAKES])
def test_mistakes_print_one_line_and_exit_2(work, argv, expected):
    res = run(argv, work["dir"])
    assert_one_line_error(res, argv[0])
    for part in (expected,) if isinstance(expected, str) else expected:
        assert part in res.stderr, res.stderr
    assert not (work["dir"] / "out.mfsgd").exists()  # no mistake trains and saves


def test_file_errors_have_one_style(work):
    """Data, model and output paths: ``mfsgd CMD: error: PATH: reason``, the user's path."""
    lines = [run(a, work["dir"]).stderr for a in (
        ["train", "missing.csv", "-o", "x.mfsgd"], ["info", "missing.mfsgd"],
        ["info", "adir"], ["train", "r.csv", "-o", "adir"])]
    assert lines == ["mfsgd train: error: missing.csv: no such file or directory\n",
                     "mfsgd info: error: missing.mfsgd: no such file or directory\n",
                     "mfsgd info: error: adir: is a directory\n",
                     "mfsgd train: error: adir: is a directory\n"]


def test_cli_words_leave_paths_and_longer_words_alone(tmp_path):
    """Messages speak options, but a parameter's name inside a path stays as given: a
    validation file named eval_set.csv was reported as "--validation FILE.csv", a folder
    learning_rate/ as "--lr/" (review 18). Advice to set a parameter to None reads
    "leave out" the option, which the command line can follow."""
    w = _cli.cli_words
    assert w("/data/n_epochs/r.csv: min_rating must be 1") == \
        "/data/n_epochs/r.csv: --min-rating must be 1"
    assert w("learning_rate/r.csv: bad; eval_set.csv; min_rating.csv") == \
        "learning_rate/r.csv: bad; eval_set.csv; min_rating.csv"
    assert w("Set min_rating=None or pass eval_set.") == \
        "Leave out --min-rating or pass --validation FILE."
    assert w("a b_c eval_set file: eval_set has none", keep=["a b_c eval_set file"]) == \
        "a b_c eval_set file: --validation FILE has none"
    d = tmp_path / "learning_rate"
    d.mkdir()
    (d / "eval_set.csv").write_text("user,item,rating\n1,2,abc\n")
    r = run(["train", str(d / "eval_set.csv"), "-o", str(tmp_path / "m.mfsgd")], tmp_path)
    assert r.stderr.startswith(f"mfsgd train: error: {d / 'eval_set.csv'}: line 2 has")

    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("no")

    assert _cli.error_message(Unprintable()) == "Unprintable"  # never raises


def test_error_message_formats_every_oserror_alike():
    fmt = _cli.error_message
    assert fmt(FileNotFoundError(2, "No such file or directory", "a.csv")) == \
        "a.csv: no such file or directory"
    assert fmt(PermissionError(13, "Permission denied", "b.mfsgd")) == "b.mfsgd: permission denied"
    assert fmt(OSError("<urlopen error refused>")) == "<urlopen error refused>"
    assert fmt(ValueError("two\nlines")) == "two lines"


def test_unwritable_output_directory_fails_before_training(work, monkeypatch, capsys):
    # As root every directory is writable, so the refusal is simulated.
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if mode == os.W_OK
                        else real(p, mode))
    monkeypatch.setattr(MatrixFactorization, "fit", lambda *a, **k: pytest.fail("trained"))
    out = str(work["dir"] / "ro" / "m.mfsgd")
    (work["dir"] / "ro").mkdir()
    assert _cli.main(["train", str(work["dir"] / "r.csv"), "-o", out]) == 2
    assert capsys.readouterr().err == f"mfsgd train: error: {out}: permission denied\n"


@pytest.mark.skipif(not os.path.isfile("/proc/version"), reason="needs Linux's /proc")
def test_output_in_a_folder_that_makes_no_files_fails_before_training(work, monkeypatch,
                                                                      capsys):
    """-o /proc/version passed the access checks as root (and as a user whose file is
    writable): the model was trained, then could not be saved. The write's own first
    step, a new file in that folder, is now tried (and undone) before training."""
    monkeypatch.setattr(MatrixFactorization, "fit", lambda *a, **k: pytest.fail("trained"))
    assert _cli.main(["train", str(work["dir"] / "r.csv"), "-o", "/proc/version"]) == 2
    assert capsys.readouterr().err == (
        "mfsgd train: error: /proc/version: cannot create a file in /proc (No such file or "
        "directory); the file is written as a new file there, then renamed\n")
    # in a folder that does take files, the probe leaves nothing behind
    before = sorted(work["dir"].iterdir())
    _fileio.check_writable(str(work["dir"] / "m2.mfsgd"))
    assert sorted(work["dir"].iterdir()) == before


def test_failed_save_names_the_users_path(work, monkeypatch, capsys):
    def save(self, path):
        raise IsADirectoryError(21, "Is a directory", ".x.mfsgd.5wi64tyc.tmp", str(path))

    monkeypatch.setattr(MatrixFactorization, "save", save)
    out = str(work["dir"] / "x.mfsgd")
    assert _cli.main(["train", str(work["dir"] / "r.csv"), "-o", out, "-q", "--factors", "2",
                      "--epochs", "1"]) == 2
    assert capsys.readouterr().err == f"mfsgd train: error: {out}: is a directory\n"


@pytest.mark.parametrize("args", [["recommend", "m.mfsgd", "1", "-n", "40"],
                                  ["recommend", "m.mfsgd", "1", "-n", "40", "--json"],
                                  ["info", "m.mfsgd"]])
def test_closed_pipe_ends_quietly(work, args):
    """`mfsgd recommend ... | head -1`: when the reader has gone, the command stops with
    the status of a process killed by SIGPIPE (141, as coreutils' commands report) and
    prints nothing, rather than "error: [Errno 32] Broken pipe" with status 2. The read
    end is closed before the command starts, so every write fails, whatever its size."""
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run([sys.executable, "-m", "mfsgd", *args], stdout=w,
                              stderr=subprocess.PIPE, text=True, timeout=120,
                              cwd=work["dir"])
    finally:
        os.close(w)
    assert proc.stderr == ""
    assert proc.returncode == _cli.EXIT_BROKEN_PIPE == 141


def test_keyboard_interrupt_exits_130(work, monkeypatch, capsys):
    def fit(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(MatrixFactorization, "fit", fit)
    out = work["dir"] / "k.mfsgd"
    assert _cli.main(["train", str(work["dir"] / "r.csv"), "-o", str(out)]) == 130
    assert capsys.readouterr().err == f"mfsgd train: interrupted; nothing saved ({out} not " \
                                      "created)\n"
    assert not out.exists()


def _stderr_warnings():
    """Warnings printed on stderr, as a command run from a shell shows them (pytest
    records them instead)."""
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("default")
    warnings.showwarning = lambda m, c, f, n, file=None, line=None: sys.stderr.write(
        warnings.formatwarning(m, c, f, n, line))
    return ctx


@pytest.mark.parametrize("existing", [True, False])
@pytest.mark.parametrize("where,at", [("kernel", 3), ("kernel", 1), ("progress line", 3)])
def test_train_interrupted_in_an_epoch_says_nothing_was_saved(work, tmp_path, monkeypatch,
                                                              capsys, existing, where, at):
    """Ctrl-C in epoch 3 printed fit's warning "...: TrainingInterrupted: Training
    interrupted in epoch 3; the model keeps epoch 2." and "mfsgd train: interrupted", then
    saved nothing: the command line does not keep epoch 2."""
    import mfsgd._training

    calls = []
    if where == "kernel":  # as a Ctrl-C inside an epoch's kernel call
        run_epoch = mfsgd._training.LocalExecutor.run_epoch

        def patched(self, *a, **k):
            calls.append(1)
            if len(calls) == at:
                raise KeyboardInterrupt
            return run_epoch(self, *a, **k)

        monkeypatch.setattr(mfsgd._training.LocalExecutor, "run_epoch", patched)
    else:  # while the progress line of epoch at - 1 is written: epoch at - 1 is done
        def progress(self, row):
            if row["epoch"] == at - 1:
                raise KeyboardInterrupt

        monkeypatch.setattr(_cli.Progress, "__call__", progress)
    out = tmp_path / "m.mfsgd"
    if existing:
        out.write_bytes(b"the old model")
    ctx = _stderr_warnings()
    try:
        status = _cli.main(["train", str(work["dir"] / "r.csv"), "-o", str(out), "--factors",
                            "2", "--epochs", "5", "-q"])
    finally:
        ctx.__exit__(None, None, None)
    assert status == 130
    left = "unchanged" if existing else "not created"
    assert capsys.readouterr().err == (f"mfsgd train: interrupted in epoch {at}; nothing saved "
                                       f"({out} {left})\n")
    assert out.read_bytes() == b"the old model" if existing else not out.exists()
    assert os.listdir(tmp_path) == (["m.mfsgd"] if existing else [])


@pytest.mark.parametrize("when", ["before", "after"])
def test_train_interrupted_outside_the_epochs_says_when(work, tmp_path, monkeypatch, capsys,
                                                        when):
    """Ctrl-C while the data were laid out, or after the last epoch, was reported as "in
    epoch 1" / "in epoch 4" (of 3): the command took every TrainingInterrupted for one in
    an epoch."""
    import signal

    import mfsgd._training as T

    if when == "before":
        def build(*a, **k):
            raise KeyboardInterrupt

        monkeypatch.setattr(T.Layout, "build", build)
    else:
        real = T.seen_csr

        def seen_csr(*a, **k):
            signal.raise_signal(signal.SIGINT)
            return real(*a, **k)

        monkeypatch.setattr(T, "seen_csr", seen_csr)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        out = tmp_path / "m.mfsgd"
        status = _cli.main(["train", str(work["dir"] / "r.csv"), "-o", str(out), "--factors",
                            "2", "--epochs", "3", "-q"])
    finally:
        signal.signal(signal.SIGINT, old)
    assert status == 130
    said = " before the first epoch" if when == "before" else " after the last epoch (3)"
    assert capsys.readouterr().err == (f"mfsgd train: interrupted{said}; nothing saved "
                                       f"({out} not created)\n")
    assert not out.exists()


def test_fit_interrupted_in_the_cli_still_warns_outside_it(work, tmp_path, monkeypatch, capsys):
    """The CLI hides TrainingInterrupted only while it runs: filters and showwarning are
    restored, and the library still warns its own callers."""
    def progress(self, row):
        raise KeyboardInterrupt

    monkeypatch.setattr(_cli.Progress, "__call__", progress)
    before = (warnings.showwarning, list(warnings.filters))
    assert _cli.main(["demo", "--ratings", "500", "--users", "50", "--items", "40",
                      "--epochs", "3", "-q"]) == 130
    assert capsys.readouterr().err == "mfsgd demo: interrupted in epoch 2\n"
    assert (warnings.showwarning, list(warnings.filters)) == before
    m = MatrixFactorization(n_factors=2, n_epochs=3, random_state=0)
    with pytest.warns(TrainingInterrupted, match="in epoch 2; the model keeps epoch 1"), \
            pytest.raises(KeyboardInterrupt):
        m.fit((work["u"], work["i"], work["r"]), callback=lambda row: progress(None, row))



@pytest.mark.parametrize("where", ["stderr on a closed pipe", "stdout and stderr on a closed pipe",
                                   "stderr on a full disk"])
def test_train_saves_the_model_when_progress_cannot_be_written(work, tmp_path, where):
    """Progress lines are cosmetic: when stderr fails (`mfsgd train ... 2>&1 | head -1`, or
    `2>/dev/full`), the fit runs to the end and the model is saved. The status says what
    happened to the output that matters: 0, or 141 when stdout's reader went away too."""
    out = tmp_path / "m.mfsgd"
    argv = [sys.executable, "-m", "mfsgd", "train", "r.csv", "-o", str(out), "--factors", "2",
            "--epochs", "5"]
    if where == "stderr on a full disk":
        if not os.path.exists("/dev/full"):
            pytest.skip("no /dev/full")
        with open("/dev/full", "w") as full:
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=full, text=True,
                                  timeout=120, cwd=work["dir"])
    else:
        r, w = os.pipe()
        os.close(r)
        try:
            proc = subprocess.run(argv, stdout=w if where.startswith("stdout") else
                                  subprocess.PIPE, stderr=w, text=True, timeout=120,
                                  cwd=work["dir"])
        finally:
            os.close(w)
    if where.startswith("stdout"):
        assert proc.returncode == _cli.EXIT_BROKEN_PIPE
    else:
        assert proc.returncode == 0
        assert proc.stdout.startswith(f"saved {out}: ") and proc.stdout.count("\n") == 1
    assert load(out).n_epochs_ == 5  # all the epochs, saved


class _FailingStderr(io.StringIO):
    """A stderr (a terminal when ``tty``, so that tqdm draws its bar) whose writes fail with
    ``error`` from the second epoch's progress on; no file descriptor."""

    def __init__(self, error, tty):
        super().__init__()
        self.error, self.tty, self.failures = error, tty, 0

    def isatty(self):
        return self.tty

    def write(self, s):
        if "epoch   1 " in self.getvalue():
            self.failures += 1
            raise self.error
        return super().write(s)


@pytest.mark.parametrize("error", [BrokenPipeError(errno.EPIPE, "Broken pipe"),
                                   OSError(errno.ENOSPC, "No space left on device")],
                         ids=["EPIPE", "ENOSPC"])
@pytest.mark.parametrize("tty", [False, True], ids=["print", "tqdm"])
def test_a_failing_progress_line_stops_the_progress_not_the_fit(work, tmp_path, capsys,
                                                                 monkeypatch, error, tty):
    if tty:
        pytest.importorskip("tqdm")
    err = _FailingStderr(error, tty)
    monkeypatch.setattr(sys, "stderr", err)
    out = tmp_path / "m.mfsgd"
    assert _cli.main(["train", str(work["dir"] / "r.csv"), "-o", str(out), "--factors", "2",
                      "--epochs", "4"]) == 0
    assert err.failures >= 1  # the second line failed; no further line was tried
    assert ("%|" in err.getvalue()) == tty  # tqdm drew its bar on the terminal
    assert [ln.split()[:2] for ln in err.getvalue().replace("\r", "\n").splitlines()
            if ln.startswith("epoch")] == [["epoch", "1"]]
    assert load(out).n_epochs_ == 4
    assert capsys.readouterr().out.startswith(f"saved {out}: ")


def test_an_error_on_a_failing_stderr_keeps_its_status(work, tmp_path, monkeypatch, capsys):
    """A plot that fails once the model is saved exits 2 even when stderr cannot take the
    error line, rather than with a traceback and status 1; the model stays saved. Ctrl-C
    keeps 130, and a missing file 2."""
    pytest.importorskip("matplotlib")
    import mfsgd.plotting

    def plot_history(model, path):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(mfsgd.plotting, "plot_history", plot_history)
    monkeypatch.setattr(sys, "stderr", _FailingStderr(OSError(errno.EPIPE, "Broken pipe"),
                                                      False))
    sys.stderr.write("epoch   1 \n")  # every later write fails
    out = tmp_path / "m.mfsgd"
    assert _cli.main(["train", str(work["dir"] / "r.csv"), "-o", str(out), "--factors", "2",
                      "--epochs", "2", "--plot", str(tmp_path / "c.png")]) == 2
    assert load(out).n_epochs_ == 2

    def fit(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(MatrixFactorization, "fit", fit)
    assert _cli.main(["train", str(work["dir"] / "r.csv"), "-o", str(out)]) == 130
    r, w = os.pipe()  # the real command, its stderr a closed pipe
    os.close(r)
    try:
        proc = subprocess.run([sys.executable, "-m", "mfsgd", "info", "missing.mfsgd"],
                              stderr=w, timeout=120, cwd=work["dir"])
    finally:
        os.close(w)
    assert proc.returncode == 2


# ---------------------------------------------------------------- ids: unknown and JSON types


def test_predict_and_recommend_serve_unknown_ids_when_allowed(work, capsys):
    m, item = str(work["dir"] / "m.mfsgd"), int(work["i"][0])
    assert _cli.main(["predict", m, "999999", str(item), "--allow-unknown", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["user_known"] is False and out["item_known"] is True
    assert out["prediction"] == pytest.approx(load(m).predict(([999999], [item]))[0])
    assert _cli.main(["predict", m, str(work["u"][0]), "999999", "--allow-unknown",
                      "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["user_known"] is True and out["item_known"] is False
    assert _cli.main(["recommend", m, "999999", "--allow-unknown", "-n", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["known"] is False and len(out["recommendations"]) == 2
    assert out["warnings"] == []  # always there, so a JSON reader need not test for it


@pytest.mark.parametrize("name,prefix", [("m.mfsgd", ""), ("s.mfsgd", "x")])
def test_json_ids_keep_their_type(work, capsys, name, prefix):
    u0, i0 = int(work["u"][0]), int(work["i"][0])
    user, item = (f"u{u0}", f"i{i0}") if prefix else (u0, i0)
    m = str(work["dir"] / name)
    assert _cli.main(["predict", m, str(user), str(item), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["user"], out["item"]) == (user, item)  # 1 != "1": the type is checked too
    assert type(out["user"]) is type(user) and type(out["item"]) is type(item)
    assert _cli.main(["recommend", m, str(user), "-n", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["user"] == user and type(out["user"]) is type(user)
    items = [r["item"] for r in out["recommendations"]]
    assert len(items) == 3 and all(type(x) is type(item) for x in items)
    assert set(items) <= set(load(m).item_ids_.tolist())


def test_recommend_excludes_seen_items(work, capsys):
    u, i = work["u"], work["i"]
    m = str(work["dir"] / "m.mfsgd")
    assert _cli.main(["recommend", m, str(u[0]), "-n", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["recommendations"]) == 4 and out["known"]
    assert not {x["item"] for x in out["recommendations"]} & set(i[u == u[0]].tolist())
    assert _cli.main(["recommend", m, str(u[0]), "-n", "2"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


# ---------------------------------------------------------------- train


def _train(work, tmp_path, *extra):
    out = str(tmp_path / "m.mfsgd")
    code = _cli.main(["train", str(work["dir"] / "r.csv"), "-o", out, *extra])
    return code, out


def test_train_info_predict(work, tmp_path, capsys):
    data, out = tmp_path / "r.tsv", str(tmp_path / "m.mfsgd")  # no header, tab-separated
    np.savetxt(data, np.column_stack([work["u"], work["i"], work["r"]]),
               fmt=["%d", "%d", "%.3f"], delimiter="\t")
    assert _cli.main(["train", str(data), "-o", out, "--factors", "4", "--epochs", "3", "-q",
                      "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["ratings"] == 2000 and res["users"] == 100 and res["epochs"] == 3
    assert _cli.main(["info", out, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_factors"] == 4 and info["epochs"] == 3
    assert _cli.main(["predict", out, str(work["u"][0]), str(work["i"][0]), "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert pred["user_known"] and np.isfinite(pred["prediction"])


def test_interactions_under_an_unknown_header_train_with_columns(work, tmp_path, capsys):
    """The header is not trained as an interaction: its names choose the columns, and the
    ids stay integers."""
    out = str(tmp_path / "m.mfsgd")
    assert _cli.main(["train", str(work["dir"] / "cust.csv"), "-o", out, "--loss", "bpr",
                      "--columns", "CustomerID,ProductID", "--factors", "4", "--epochs", "1",
                      "-q"]) == 0
    model = load(out)
    assert model.user_ids_.dtype.kind == "i" and model.item_ids_.dtype.kind == "i"
    assert len(model.user_ids_) == len(np.unique(work["u"]))


def test_train_is_seeded_by_default_and_says_so(work, tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert _train(work, tmp_path / "a", "--factors", "4", "--epochs", "2")[0] == 0
    assert capsys.readouterr().out.rstrip().endswith("; seed 0")
    assert _train(work, tmp_path / "b", "--factors", "4", "--epochs", "2", "--json")[0] == 0
    assert json.loads(capsys.readouterr().out)["seed"] == 0
    a, b = load(tmp_path / "a" / "m.mfsgd"), load(tmp_path / "b" / "m.mfsgd")
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    np.testing.assert_array_equal(a.item_bias_, b.item_bias_)
    assert a.get_params()["random_state"] == 0
    assert _train(work, tmp_path, "--factors", "4", "--epochs", "2", "--seed", "5", "--json",
                  "-q")[0] == 0
    assert json.loads(capsys.readouterr().out)["seed"] == 5
    assert load(tmp_path / "m.mfsgd").get_params()["random_state"] == 5


def test_train_options_reach_the_model(work, tmp_path, capsys):
    code, out = _train(work, tmp_path, "--factors", "3", "--epochs", "2", "--lr", "0.05",
                       "--lr-decay", "0.1", "--adagrad", "--reg-factors", "0.03",
                       "--reg-bias", "0.04", "--init-std", "0.05", "--no-biased",
                       "--nonnegative", "--dtype", "float64", "--threads", "2", "--blocks", "3",
                       "--seed", "7", "--sep", ",", "--columns", "userId,movieId,rating", "-q")
    assert code == 0, capsys.readouterr().err
    m = load(out)
    want = {"n_factors": 3, "n_epochs": 2, "learning_rate": 0.05, "lr_decay": 0.1,
            "adagrad": True, "reg_factors": 0.03, "reg_bias": 0.04, "init_std": 0.05,
            "biased": False, "nonnegative": True, "n_threads": 2, "n_blocks": 3,
            "random_state": 7}
    p = m.get_params()
    assert {k: p[k] for k in want} == want
    assert m.user_factors_.dtype == np.float64 and m.user_factors_.min() >= 0
    assert not m.user_bias_.any()


def test_train_early_stopping_on_a_held_out_fraction(work, tmp_path, capsys):
    code, out = _train(work, tmp_path, "--factors", "2", "--epochs", "40", "--early-stopping",
                       "--validation-fraction", "0.2", "--patience", "1", "--tol", "0.01",
                       "--json", "-q")
    assert code == 0
    res = json.loads(capsys.readouterr().out)
    assert res["epochs"] < 40 and res["best_epoch"] is not None and res["val_rmse"] > 0
    p = load(out).get_params()
    assert (p["early_stopping"], p["validation_fraction"], p["n_iter_no_change"], p["tol"]) == \
        (True, 0.2, 1, 0.01)


def test_train_with_a_validation_file_plots_both_curves(work, tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    import mfsgd.plotting

    drawn = []
    real = mfsgd.plotting.plot_history
    monkeypatch.setattr(mfsgd.plotting, "plot_history",
                        lambda model, **kw: drawn.append(real(model, **kw)) or drawn[-1])
    lines = (work["dir"] / "r.csv").read_text().splitlines()
    val = tmp_path / "val.csv"
    val.write_text("\n".join(lines[:1] + lines[1:301]) + "\n")
    png = tmp_path / "curve.png"
    code, out = _train(work, tmp_path, "--validation", str(val), "--plot", str(png),
                       "--columns", "userId,movieId,rating", "--factors", "2", "--epochs", "3",
                       "--json")
    assert code == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["val_rmse"] > 0
    assert [ln.get_label() for ln in drawn[0].lines] == ["training RMSE", "validation RMSE"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert all("val_rmse" in h for h in load(out).history_)


# ---------------------------------------------------------------- evaluate


def test_evaluate(work, capsys):
    data = str(work["dir"] / "r.csv")
    assert _cli.main(["evaluate", data, "--cv", "3", "--factors", "4", "--epochs", "3",
                      "--metrics", "rmse,mae,ndcg@5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["folds"]["test_rmse"]) == 3 and 0 < out["mean"]["test_rmse"] < 2
    assert "test_ndcg@5" in out["folds"] and out["seed"] == 0


def test_evaluate_passes_the_threshold_to_the_ranking_metrics(work, capsys):
    base = ["evaluate", str(work["dir"] / "r.csv"), "--cv", "2", "--factors", "2", "--epochs",
            "2", "--metrics", "precision@5", "--json"]
    assert _cli.main(base + ["--threshold", "none"]) == 0
    every = json.loads(capsys.readouterr().out)
    assert every["threshold"] is None
    assert _cli.main(base + ["--threshold", "4.5"]) == 0
    high = json.loads(capsys.readouterr().out)
    assert high["mean"]["test_precision@5"] < every["mean"]["test_precision@5"]
    assert _cli.main(base + ["--threshold", "100"]) == 2
    assert "threshold 100" in capsys.readouterr().err


def test_evaluate_summarises_the_folds_where_a_metric_is_defined(tmp_path, capsys):
    """A fold without a relevant rating has its ranking metrics undefined: evaluate warns
    in one line in its own style (not a Python warning with a source line), and averages
    over the other folds, saying how many (review 17: it failed, every RMSE lost)."""
    u, i, r = make_ratings(100, 60, 2000, random_state=0, as_frame=False)
    r = np.minimum(r, 3.0)  # nothing liked...
    r[[3, 900]] = 5.0  # ...but two rows
    data = tmp_path / "few.csv"
    np.savetxt(data, np.column_stack([u, i, r]), fmt=["%d", "%d", "%.1f"], delimiter=",",
               header="user,item,rating", comments="")
    args = ["evaluate", str(data), "--cv", "5", "--factors", "2", "--epochs", "2",
            "--metrics", "rmse,ndcg@10"]
    assert _cli.main(args) == 0
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert lines and all(x.startswith("mfsgd evaluate: warning: fold ") for x in lines)
    ndcg = next(x for x in out.splitlines() if x.startswith("test_ndcg@10"))
    assert ndcg.endswith(f"({5 - len(lines)} of 5 folds)")
    assert _cli.main(args + ["--json"]) == 0
    out, err = capsys.readouterr()
    res = json.loads(out)
    folds = res["folds"]["test_ndcg@10"]
    assert folds.count(None) == len(lines) and all(x is not None for x in
                                                    res["folds"]["test_rmse"])
    assert res["mean"]["test_ndcg@10"] == pytest.approx(
        np.mean([x for x in folds if x is not None]))
    # the JSON says why those folds are null: the lines stderr showed, unprefixed
    prefix = "mfsgd evaluate: warning: "
    assert res["warnings"] == [x[len(prefix):] for x in err.splitlines()]
    assert len(res["warnings"]) == len(lines)


def test_evaluate_a_ranking_loss_applies_the_threshold_to_a_rated_file(work, capsys):
    """Without --min-rating a ranking loss trains on (user, item) pairs, but evaluate still
    reads the ratings of a file that has them: --threshold (given or its default) decides
    which held-out rows are relevant, as in cross_validate. A file of pairs has every
    held-out pair relevant, and says so (threshold null)."""
    from mfsgd.model_selection import cross_validate

    common = ["--loss", "bpr", "--cv", "2", "--factors", "2", "--epochs", "2", "--metrics",
              "ndcg@10", "--json"]
    got = {}
    for t in ("none", "4.5", None):
        extra = [] if t is None else ["--threshold", t]
        assert _cli.main(["evaluate", str(work["dir"] / "r.csv"), *common, *extra]) == 0
        got[t] = json.loads(capsys.readouterr().out)
    assert got["none"]["threshold"] is None and got["4.5"]["threshold"] == 4.5
    assert got["4.5"]["mean"]["test_ndcg@10"] != got["none"]["mean"]["test_ndcg@10"]
    ref = cross_validate(MatrixFactorization(loss="bpr", n_factors=2, n_epochs=2,
                                             random_state=0),
                         load_csv(work["dir"] / "r.csv", as_frame=False), cv=2,
                         metrics=["ndcg@10"],
                         threshold=4.0, random_state=0)
    assert got[None]["threshold"] == 4.0
    assert got[None]["mean"]["test_ndcg@10"] == pytest.approx(ref["test_ndcg@10"].mean())
    assert _cli.main(["evaluate", str(work["dir"] / "pairs.csv"), *common]) == 0
    assert json.loads(capsys.readouterr().out)["threshold"] is None


# ---------------------------------------------------------------- help


def _subparser(name):
    import argparse

    parser = _cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize("command,own", [("train", _cli.CLI_DEFAULTS),
                                         ("evaluate", _cli.CLI_DEFAULTS),
                                         ("demo", _cli.DEMO_DEFAULTS)])
def test_help_shows_the_real_defaults(command, own):
    defaults = {**MatrixFactorization().get_params(), **own}
    shown = {a.dest: a.help for a in _subparser(command)._actions}
    for name in ("n_factors", "n_epochs", "learning_rate", "reg_factors", "reg_bias",
                 "init_std", "lr_decay", "adagrad", "biased", "nonnegative", "n_threads",
                 "random_state"):
        # None of a per-loss parameter reads "auto: 0.005 for squared, ..." (issue 14)
        want = _cli._shown(name, defaults[name], own)
        assert shown[name].endswith(f"(default: {want})"), (name, shown[name])
    assert shown["dtype"].endswith("(default: float32)")
    if command != "demo":
        assert shown["n_iter_no_change"].endswith(f"(default: {defaults['n_iter_no_change']})")
        assert shown["validation_fraction"].endswith(
            f"(default: {defaults['validation_fraction']})")


def test_help_explains_every_argument(capsys):
    for command in ("demo", "train", "evaluate", "predict", "recommend", "info"):
        for action in _subparser(command)._actions:
            assert action.help, (command, action.dest)
    with pytest.raises(SystemExit) as e:
        _cli.main(["train", "--help"])
    assert e.value.code == 0
    assert "(default: 100)" in capsys.readouterr().out  # n_factors, rendered


# ---------------------------------------------------------------- demo and progress

DEMO = ["demo", "--ratings", "3000", "--users", "100", "--items", "60", "--epochs", "3",
        "--factors", "4"]


def test_demo_prints_epoch_lines_and_no_bar_without_a_terminal(tmp_path):
    res = run(DEMO, tmp_path)
    assert res.returncode == 0, res.stderr
    assert "test RMSE" in res.stdout and "seed 0" in res.stdout
    assert "\r" not in res.stderr
    assert [ln.split()[:2] for ln in res.stderr.splitlines()] == \
        [["epoch", "1"], ["epoch", "2"], ["epoch", "3"]]
    assert "val_rmse" in res.stderr


def _run_on_terminal(args, cwd):
    """Run the command with stderr on a pseudo-terminal 100 columns wide; return its status
    and what reached the terminal."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "mfsgd", *args], stderr=slave,
                            stdout=subprocess.DEVNULL, cwd=cwd)
    os.close(slave)
    out = b""
    try:
        while select.select([master], [], [], 120)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
    return proc.wait(timeout=120), out.decode()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pseudo-terminal test")
def test_demo_on_a_terminal_shows_the_bar_and_the_epoch_lines(tmp_path):
    pytest.importorskip("tqdm")
    code, out = _run_on_terminal(DEMO, tmp_path)
    assert code == 0
    assert "%|" in out  # the bar was drawn
    assert [ln.split()[1] for ln in out.replace("\r", "\n").splitlines()
            if ln.startswith("epoch ")] == ["1", "2", "3"]
    code, out = _run_on_terminal(["demo", "--factors", "0"], tmp_path)
    assert code == 2 and "%|" not in out and out.count("\n") == 1


@pytest.mark.skipif(not os.path.exists("/dev/stdout"), reason="no /dev/stdout")
def test_train_writes_the_model_to_stdout_and_its_summary_to_stderr(work, tmp_path):
    """`mfsgd train r.csv -o /dev/stdout | ...`: the model was refused (review 19: taken
    for a new file in /proc/PID/fd), and the summary line would have followed its bytes.
    The bytes on the pipe are the model alone; the summary goes to stderr."""
    res = subprocess.run([sys.executable, "-m", "mfsgd", "train", str(work["dir"] / "r.csv"),
                          "-o", "/dev/stdout", "--epochs", "2", "-q"], capture_output=True,
                         timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stderr.decode().startswith("saved /dev/stdout: ")
    (tmp_path / "m.mfsgd").write_bytes(res.stdout)
    with zipfile.ZipFile(tmp_path / "m.mfsgd") as zf:  # nothing after the archive's end
        assert zf.comment == b"" and zf.testzip() is None
    assert load(tmp_path / "m.mfsgd").n_epochs_ == 2
    res = run(["train", str(work["dir"] / "r.csv"), "-o", "/dev/null", "--epochs", "1"],
              tmp_path)
    assert res.returncode == 0 and res.stdout.startswith("saved /dev/null: "), res.stderr
    # stderr carries the progress lines and warnings: refused, before training (review 20)
    res = run(["train", str(work["dir"] / "r.csv"), "-o", "/dev/stderr", "--epochs", "1"],
              tmp_path)
    assert_one_line_error(res, "train")
    assert "use -o /dev/stdout" in res.stderr and "epoch" not in res.stderr


def test_demo_runs_as_a_module(tmp_path):
    out = run(["demo", "--ratings", "20000", "--users", "500", "--items", "200", "--json"],
              tmp_path)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["test_rmse"] < 1.0 and len(res["history"]) == 20 and res["seed"] == 0


def test_demo_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curve.png"
    assert _cli.main(DEMO + ["--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "test RMSE" in capsys.readouterr().out


def test_demo_movielens_offline_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MFSGD_DATA", str(tmp_path))
    monkeypatch.setenv("MFSGD_MOVIELENS_URL", "http://127.0.0.1:9/")  # nothing listens
    assert _cli.main(["demo", "--movielens", "100k"]) == 2
    err = capsys.readouterr().err.splitlines()  # the download notice, then the error
    assert err[-1].startswith("mfsgd demo: error:") and "127.0.0.1:9" in err[-1]
    assert not any("Traceback" in line for line in err)


# ---------------------------------------------------------------- plot_history


@pytest.fixture(scope="module")
def fitted(small_data):
    u, i, r = small_data
    return MatrixFactorization(n_factors=2, n_epochs=3, random_state=0).fit(
        (u[:5000], i[:5000], r[:5000]), eval_set=(u[5000:], i[5000:], r[5000:]))


def test_plot_history_draws_both_curves(fitted, tmp_path):
    pytest.importorskip("matplotlib")
    ax = plot_history(fitted, path=tmp_path / "h.png")
    assert [ln.get_label() for ln in ax.lines] == ["training RMSE", "validation RMSE"]
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("as_str", [True, False])
def test_plot_history_takes_a_path_second(fitted, tmp_path, as_str):
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    path = tmp_path / "curve.png"
    before = plt.get_fignums()
    ax = plot_history(fitted, str(path) if as_str else path)
    assert len(ax.lines) == 2 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == before  # saved without opening a pyplot figure


def test_plot_history_rejects_what_is_not_an_axes(fitted):
    pytest.importorskip("matplotlib")
    with pytest.raises(TypeError, match=r"ax must be a matplotlib Axes or a path .*got int"):
        plot_history(fitted, 3)
    with pytest.raises(TypeError, match="two paths"):
        plot_history(fitted, "a.png", path="b.png")


@pytest.mark.parametrize("matplotlib", ["installed", "absent"])
def test_plot_history_names_a_wrong_model_or_path(fitted, tmp_path, monkeypatch, matplotlib):
    """A wrong model or path is a TypeError naming it, before matplotlib is imported (so
    also without it), not an AttributeError from history_ or from savefig."""
    if matplotlib == "absent":
        monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    else:
        pytest.importorskip("matplotlib")
    from mfsgd import Popularity

    for model, name in [("curve.png", "str"), (None, "NoneType"), (Popularity(), "Popularity")]:
        with pytest.raises(TypeError, match=f"^model must be a fitted MatrixFactorization "
                                            rf"\(its history_ is drawn\); got {name}\.$"):
            plot_history(model, path=tmp_path / "c.png")
    for path in (3, 2.5, ["c.png"]):
        with pytest.raises(TypeError, match=r"^path must be a str or PathLike \(or a binary "
                                            rf"file object\) to save the figure to; got "
                                            rf"{type(path).__name__}\.$"):
            plot_history(fitted, path=path)
    assert not (tmp_path / "c.png").exists()
    if matplotlib == "absent":  # a right call still says what to install
        with pytest.raises(ImportError, match=r"pip install 'mfsgd\[plot\]'"):
            plot_history(fitted, path=tmp_path / "c.png")
    else:  # what savefig takes besides paths still works: a binary file object
        buf = io.BytesIO()
        plot_history(fitted, path=buf)
        assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- ranking losses


def test_train_a_ranking_loss_on_a_file_of_interactions(work, tmp_path, capsys):
    out = str(tmp_path / "bpr.mfsgd")
    assert _cli.main(["train", str(work["dir"] / "pairs.csv"), "-o", out, "--loss", "bpr",
                      "--factors", "4", "--epochs", "3", "--negatives", "3",
                      "--negative-exponent", "0.5", "--json", "-q"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["loss"] == "bpr" and res["interactions"] == 2000 and res["epochs"] == 3
    assert res["train_loss"] > 0 and "train_rmse" not in res and "ratings" not in res
    m = load(out)
    p = m.get_params()
    assert (p["loss"], p["n_negatives"], p["negative_exponent"]) == ("bpr", 3, 0.5)
    # the same interactions through the Python API give the same model
    ref = MatrixFactorization(loss="bpr", n_factors=4, n_epochs=3, n_negatives=3,
                              negative_exponent=0.5, random_state=0).fit((work["u"], work["i"]))
    np.testing.assert_array_equal(m.item_factors_, ref.item_factors_)
    # info and predict say what the model is
    assert _cli.main(["info", out, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["loss"] == "bpr" and info["final_train_loss"] == res["train_loss"]
    assert "final_train_rmse" not in info
    u0, i0 = int(work["u"][0]), int(work["i"][0])
    assert _cli.main(["predict", out, str(u0), str(i0), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["prediction"] == pytest.approx(
        float(ref.predict(([u0], [i0]))[0]))


def test_train_a_ranking_loss_with_adagrad(work, tmp_path, capsys):
    """--adagrad with a ranking loss trains the model the Python API gives (its AdaGrad
    defaults where no option is given)."""
    out = str(tmp_path / "warp.mfsgd")
    assert _cli.main(["train", str(work["dir"] / "pairs.csv"), "-o", out, "--loss", "warp",
                      "--adagrad", "--factors", "4", "--epochs", "3", "-q"]) == 0
    m = load(out)
    assert m.get_params()["adagrad"] is True
    ref = MatrixFactorization(loss="warp", adagrad=True, n_factors=4, n_epochs=3,
                              random_state=0).fit((work["u"], work["i"]))
    np.testing.assert_array_equal(m.item_factors_, ref.item_factors_)
    assert m.history_[0]["learning_rate"] == 0.025  # ADAGRAD_DEFAULTS["warp"], no decay
    assert m.history_[-1]["learning_rate"] == 0.025


def test_train_a_ranking_loss_keeps_liked_rows_with_min_rating(work, tmp_path, capsys):
    out = str(tmp_path / "warp.mfsgd")
    assert _cli.main(["train", str(work["dir"] / "r.csv"), "-o", out, "--loss", "warp",
                      "--min-rating", "4", "--max-sampled", "5", "--margin", "0.5",
                      "--factors", "4", "--epochs", "2", "-q", "--json"]) == 0
    u, i, r = load_csv(work["dir"] / "r.csv", as_frame=False)  # ratings as the file has them
    assert json.loads(capsys.readouterr().out)["interactions"] == np.count_nonzero(r >= 4)
    m = load(out)
    ref = MatrixFactorization(loss="warp", min_rating=4.0, max_sampled=5, margin=0.5,
                              n_factors=4, n_epochs=2, random_state=0).fit((u, i, r))
    np.testing.assert_array_equal(m.user_factors_, ref.user_factors_)
    # the users with a liked row are trained; the others are known, without interactions
    assert np.count_nonzero(m.user_counts_) == len(np.unique(u[r >= 4]))
    assert m.user_counts_.sum() == np.count_nonzero(r >= 4)


def test_train_a_ranking_loss_with_early_stopping_prints_the_metric(work, tmp_path, capsys):
    lines = (work["dir"] / "pairs.csv").read_text().splitlines()
    train, val = tmp_path / "train.csv", tmp_path / "val.csv"  # header, then disjoint rows
    train.write_text("\n".join(lines[:1] + lines[301:]) + "\n")
    val.write_text("\n".join(lines[:1] + lines[1:301]) + "\n")
    code = _cli.main(["train", str(train), "-o", str(tmp_path / "m.mfsgd"),
                      "--loss", "softmax", "--validation", str(val), "--early-stopping",
                      "--eval-metric", "recall@5", "--patience", "1", "--factors", "4",
                      "--epochs", "6"])
    assert code == 0
    captured = capsys.readouterr()
    epoch_lines = captured.err.splitlines()
    assert epoch_lines and all("train_loss" in ln and "val_recall@5" in ln for ln in epoch_lines)
    assert "train loss (softmax)" in captured.out and "validation recall@5" in captured.out


def test_evaluate_a_ranking_loss_prints_ranking_metrics(work, capsys):
    assert _cli.main(["evaluate", str(work["dir"] / "pairs.csv"), "--loss", "bpr", "--cv", "3",
                      "--factors", "4", "--epochs", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["folds"]) >= {"test_ndcg@10", "test_hit_rate@10", "test_recall@10"}
    assert "test_rmse" not in out["folds"]
    assert all(0 <= v <= 1 for v in out["folds"]["test_hit_rate@10"])
    # --metrics auc: cross_validate's auc (auc_score of each fold)
    args = ["evaluate", str(work["dir"] / "pairs.csv"), "--loss", "bpr", "--cv", "3",
            "--factors", "4", "--epochs", "2", "--json"]
    assert _cli.main([*args, "--metrics", "auc,ndcg@10"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert list(got["folds"]) == ["test_auc", "test_ndcg@10", "fit_time", "test_time"]
    assert got["folds"]["test_ndcg@10"] == out["folds"]["test_ndcg@10"]
    assert all(0 <= v <= 1 for v in got["folds"]["test_auc"])  # random pairs: near 0.5


def test_plot_history_of_a_ranking_model(work, tmp_path):
    pytest.importorskip("matplotlib")
    u, i = work["u"], work["i"]
    m = MatrixFactorization(loss="bpr", n_factors=2, n_epochs=3, random_state=0).fit(
        (u[300:], i[300:]), eval_set=(u[:300], i[:300]))
    ax = plot_history(m, path=tmp_path / "r.png")
    assert [ln.get_label() for ln in ax.lines] == ["training loss (bpr)"]
    twin = [a for a in ax.figure.axes if a is not ax]
    assert [ln.get_label() for ln in twin[0].lines] == ["validation ndcg@10"]
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_hands_the_loaded_arrays_to_fit(work, tmp_path, monkeypatch):
    """The command line keeps no reference to the loaded columns during fit (fit empties
    the private hand-off), so the layout's copy does not sit beside them; a user's dict
    passed to fit is left as it was."""
    import weakref

    from mfsgd._data import Handoff

    refs = []
    real_read, real_fit = _cli._read_ratings, MatrixFactorization.fit

    def read(*a, **k):
        out = real_read(*a, **k)
        refs.extend(weakref.ref(x) for x in out)
        return out

    alive = []

    def fit(self, X, *a, **k):
        assert isinstance(X, Handoff)
        res = real_fit(self, X, *a, **k)
        alive.append([r() is not None for r in refs])
        assert len(X) == 0
        return res

    monkeypatch.setattr(_cli, "_read_ratings", read)
    monkeypatch.setattr(MatrixFactorization, "fit", fit)
    assert _train(work, tmp_path, "--factors", "2", "--epochs", "1", "-q")[0] == 0
    assert alive == [[False, False, False]]  # freed before fit returned
    d = {"user": work["u"], "item": work["i"], "rating": work["r"]}
    real_fit(MatrixFactorization(n_factors=2, n_epochs=1), d)
    assert set(d) == {"user", "item", "rating"}


# ---------------------------------------------------------------- pipes, plots, JSON


def test_train_reads_a_pipe_like_the_file(tmp_path):
    """`cat r.csv | mfsgd train /dev/stdin`: the whole stream, though the file is opened
    several times (the first opens used to eat the start of the pipe)."""
    u, i, r = make_ratings(500, 300, 20_000, random_state=1, as_frame=False)
    np.savetxt(tmp_path / "big.csv", np.column_stack([u, i, r]), fmt=["%d", "%d", "%.3f"],
               delimiter=",", header="user,item,rating", comments="")
    data = (tmp_path / "big.csv").read_bytes()
    assert len(data) > 2 * 65536
    opts = ["--factors", "4", "--epochs", "2", "--threads", "1", "--json", "-q"]
    res = {}
    for name, path, stdin in (("file", "big.csv", None), ("pipe", "/dev/stdin", data)):
        proc = subprocess.run([sys.executable, "-m", "mfsgd", "train", path, "-o",
                               f"{name}.mfsgd", *opts], input=stdin, capture_output=True,
                              timeout=120, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        res[name] = json.loads(proc.stdout)
    assert res["pipe"]["ratings"] == res["file"]["ratings"] == 20_000
    a, b = load(tmp_path / "file.mfsgd"), load(tmp_path / "pipe.mfsgd")
    np.testing.assert_array_equal(a.user_ids_, b.user_ids_)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)


@pytest.mark.parametrize("plot", ["c.xyz", "m2.npz"])
def test_a_plot_format_matplotlib_cannot_write_fails_before_training(work, tmp_path,
                                                                      monkeypatch, capsys, plot):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(MatrixFactorization, "fit", lambda *a, **k: pytest.fail("trained"))
    out, png = str(tmp_path / "m.mfsgd"), str(tmp_path / plot)
    assert _cli.main(["train", str(work["dir"] / "r.csv"), "-o", out, "--plot", png]) == 2
    ext = plot.rsplit(".", 1)[1]
    err = capsys.readouterr().err
    assert err.startswith(f"mfsgd train: error: --plot {png}: matplotlib cannot write .{ext} "
                          "files; use one of ") and ".png" in err and ".svg" in err
    assert not os.path.exists(out)


def test_plot_history_refuses_a_folder_and_writes_the_file_it_names(fitted, tmp_path,
                                                                     monkeypatch):
    """A folder as the figure's path: matplotlib took "." for a name without extension
    and wrote "..png" beside it (plot_history(m, "d/") wrote "d/.png"). Refused now. A
    name without extension gets ".png", as savefig gives it."""
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    for path in (".", "..", "d", "d/", tmp_path / "d"):
        with pytest.raises(IsADirectoryError, match="is a directory: the figure needs a "
                                                    "file name such as curve.png"):
            plot_history(fitted, path=path)
    with pytest.raises(ValueError, match="path is empty"):
        plot_history(fitted, path="")
    assert sorted(os.listdir(tmp_path)) == ["d"] and os.listdir(tmp_path / "d") == []
    for path, written in (("curve", "curve.png"), ("curve.", "curve.png"),
                          ("d/c.svg", "d/c.svg")):
        plot_history(fitted, path=path)
        assert os.path.isfile(written), path
    assert sorted(os.listdir(tmp_path)) == ["curve.png", "d"]


@pytest.mark.parametrize("plot", [".", "sub/"])
def test_plot_option_refuses_a_folder_before_training(work, tmp_path, monkeypatch, capsys, plot):
    """`--plot .` printed "plot saved to ..png" and wrote "..png.png"."""
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    monkeypatch.setattr(MatrixFactorization, "fit", lambda *a, **k: pytest.fail("trained"))
    assert _cli.main(["train", str(work["dir"] / "r.csv"), "-o", "m.mfsgd", "--plot",
                      plot]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mfsgd train: error: {plot}: is a directory"), err
    assert sorted(os.listdir(tmp_path)) == ["sub"] and os.listdir(tmp_path / "sub") == []


def test_plot_option_reports_the_file_written(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    assert _cli.main(DEMO + ["--plot", "curve."]) == 0
    assert "plot saved to curve.png" in capsys.readouterr().out
    assert os.listdir(tmp_path) == ["curve.png"]


def test_plot_and_model_cannot_be_one_file(work, tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    monkeypatch.setattr(MatrixFactorization, "fit", lambda *a, **k: pytest.fail("trained"))
    out = str(tmp_path / "m.png")
    assert _cli.main(["train", str(work["dir"] / "r.csv"), "-o", out, "--plot", out]) == 2
    assert "is also the model file (-o)" in capsys.readouterr().err


@pytest.mark.parametrize("output,what", [("r.csv", "the input data file"),
                                         ("link.csv", "the input data file"),
                                         ("v.csv", "the --validation file")])
def test_the_model_cannot_overwrite_the_data_or_validation_file(work, tmp_path, monkeypatch,
                                                                 capsys, output, what):
    """-o naming the data (also through a hard link) or the validation file used to replace
    it with the model once trained: the data was lost."""
    monkeypatch.setattr(MatrixFactorization, "fit", lambda *a, **k: pytest.fail("trained"))
    monkeypatch.chdir(tmp_path)
    original = (work["dir"] / "r.csv").read_bytes()
    for name in ("r.csv", "v.csv"):
        (tmp_path / name).write_bytes(original)
    os.link("r.csv", "link.csv")
    assert _cli.main(["train", "r.csv", "--validation", "v.csv", "-o", output]) == 2
    assert capsys.readouterr().err == (f"mfsgd train: error: -o {output} is {what}; writing "
                                       "there would overwrite it: choose another name\n")
    assert all((tmp_path / n).read_bytes() == original for n in ("r.csv", "v.csv"))


def test_a_failed_plot_keeps_the_saved_model(work, tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    import errno

    import mfsgd.plotting

    def plot_history(model, path):
        assert os.path.exists(out)  # saved first
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(mfsgd.plotting, "plot_history", plot_history)
    out, png = str(tmp_path / "m.mfsgd"), str(tmp_path / "c.png")
    assert _cli.main(["train", str(work["dir"] / "r.csv"), "-o", out, "--plot", png, "-q",
                      "--factors", "2", "--epochs", "1"]) == 2
    assert capsys.readouterr().err == (f"mfsgd train: error: {png}: no space left on device "
                                       f"(the model was saved to {out}; only the plot failed)\n")
    assert load(out).n_epochs_ == 1


def test_a_plot_without_extension_is_a_png_and_says_so(work, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    base, png = str(tmp_path / "curve"), str(tmp_path / "curve.png")
    code, _ = _train(work, tmp_path, "--plot", base, "--factors", "2", "--epochs", "2", "-q")
    assert code == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"plot saved to {png}"
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    code, _ = _train(work, tmp_path, "--plot", base, "--factors", "2", "--epochs", "2",
                     "--json")
    assert code == 0 and json.loads(capsys.readouterr().out)["plot"] == png


def _strict_json(text):
    def refuse(name):
        raise AssertionError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_validation_file_with_nothing_to_score_is_refused(work, tmp_path, capsys):
    """No validation row rated >= --min-rating: every epoch's metric would be NaN (which
    --json printed, and which is no JSON); the fit refuses such an eval_set."""
    val = tmp_path / "val.csv"
    val.write_text("userId,movieId,rating\n1,1,1\n2,2,2\n")
    assert _cli.main(["train", str(work["dir"] / "r.csv"), "-o", str(tmp_path / "m.mfsgd"),
                      "--loss", "bpr", "--min-rating", "4", "--validation", str(val),
                      "--columns", "userId,movieId,rating", "--factors", "2", "--epochs", "2",
                      "--json", "-q"]) == 2
    # in the command line's words (review 17): the option, not the Python parameter
    assert ("--validation FILE has no interactions at or above --min-rating"
            in capsys.readouterr().err)
    assert not (tmp_path / "m.mfsgd").exists()


def test_emit_writes_non_finite_numbers_as_null(capsys):
    class Args:
        json = True

    _cli._emit(Args(), {"a": float("nan"), "b": [float("inf"), np.float32("nan"), 1.5],
                        "c": {"d": -np.inf, "e": np.int64(3), "f": (np.float64(2.0),)}}, "")
    assert _strict_json(capsys.readouterr().out) == {
        "a": None, "b": [None, None, 1.5], "c": {"d": None, "e": 3, "f": [2.0]},
        "warnings": []}


def test_demo_with_a_ranking_loss_prints_ranking_metrics(tmp_path, capsys):
    """Scores of a ranking loss are no ratings: the demo prints the ranking metrics that
    evaluate prints by default, not an RMSE."""
    assert _cli.main(DEMO + ["--loss", "bpr", "--json", "-q"]) == 0
    res = _strict_json(capsys.readouterr().out)
    names = {f"test_{m}" for m in _cli._RANKING_METRICS_DEFAULT.split(",")}
    assert names <= set(res) and "test_rmse" not in res and "noise" not in res
    assert all(0 <= res[n] <= 1 for n in names) and res["threshold"] is None
    assert _cli.main(DEMO + ["--loss", "bpr", "-q"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("test_ndcg@10 ") and "hit_rate@10" in line and "RMSE" not in line


@pytest.mark.parametrize("extra", [[], ["--adagrad"]])
@pytest.mark.parametrize("loss", ["bpr", "warp", "softmax"])
def test_demo_trains_a_ranking_loss_at_its_own_defaults(loss, extra, capsys):
    """The demo's rate, L2 and epochs suit the squared loss; with a ranking loss they gave
    bpr a fifth of its rate and warp four times its own (audit 17): that loss's defaults
    apply instead, unless given."""
    small = ["--users", "200", "--items", "100", "--ratings", "3000"]
    assert _cli.main(["demo", *small, "--loss", loss, *extra, "--json", "-q"]) == 0
    hist = _strict_json(capsys.readouterr().out)["history"]
    ref = MatrixFactorization(loss=loss, adagrad=bool(extra))
    p = _config.make_config(ref.get_params())
    assert len(hist) == p.n_epochs
    assert hist[0]["learning_rate"] == pytest.approx(p.learning_rate)
    assert _cli.main(["demo", *small, "--loss", loss, "--lr", "0.003", "--epochs", "2",
                      "--json", "-q"]) == 0
    hist = _strict_json(capsys.readouterr().out)["history"]
    assert len(hist) == 2 and hist[0]["learning_rate"] == pytest.approx(0.003)
    assert _cli.main(["demo", *small, "--json", "-q"]) == 0  # squared: the demo's own
    hist = _strict_json(capsys.readouterr().out)["history"]
    assert len(hist) == _cli.DEMO_DEFAULTS["n_epochs"]
    assert hist[0]["learning_rate"] == pytest.approx(_cli.DEMO_DEFAULTS["learning_rate"])


def test_info_shows_the_values_the_model_was_trained_with(tmp_path, capsys):
    """A parameter left to the loss's default is stored as None; info shows the value it
    took (audit 17: it printed None for the rate, L2 and init)."""
    u = np.repeat(np.arange(30), 5)
    i = (np.arange(150) * 7) % 40
    out = str(tmp_path / "w.mfsgd")
    MatrixFactorization(loss="warp", adagrad=True, n_epochs=2, random_state=0).fit(
        (u, i)).save(out)
    assert _cli.main(["info", out, "--json"]) == 0
    params = json.loads(capsys.readouterr().out)["params"]
    want = _config.ADAGRAD_DEFAULTS["warp"]
    assert params["learning_rate"] == want["learning_rate"]
    assert params["reg_factors"] == want["reg_factors"]
    assert params["init_std"] == _config.LOSS_DEFAULTS["warp"]["init_std"]
    assert params["n_epochs"] == 2


def test_info_describes_the_epoch_the_model_keeps(tmp_path, capsys):
    """Under early stopping the model holds its best epoch: info names it and gives its
    training RMSE, not the last epoch's (review 25: it showed the discarded epoch's)."""
    from mfsgd.datasets import make_ratings

    u, i, r = make_ratings(300, 200, 8000, random_state=0, as_frame=False)
    val = make_ratings(300, 200, 1000, random_state=1, as_frame=False)
    m = MatrixFactorization(n_factors=8, n_epochs=40, learning_rate=0.05, early_stopping=True,
                            n_iter_no_change=2, random_state=0).fit((u, i, r), eval_set=val)
    assert m.best_epoch_ < m.history_[-1]["epoch"]  # it stopped after a worse epoch
    out = str(tmp_path / "es.mfsgd")
    m.save(out)
    assert _cli.main(["info", out, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    best = next(h for h in m.history_ if h["epoch"] == m.best_epoch_)
    assert info["kept_epoch"] == m.best_epoch_
    assert info["final_train_rmse"] == best["train_rmse"]


def test_options_are_never_abbreviated(work, capsys):
    # evaluate has --validation-fraction but no --validation (train's option): with
    # argparse's abbreviations the file was taken for the fraction.
    path = str(work["dir"] / "r.csv")
    with pytest.raises(SystemExit) as e:
        _cli.main(["evaluate", path, "--validation", path])
    assert e.value.code == 2
    # in the subcommand's words, as its other option errors (audit 17: "mfsgd: error:
    # ...; see 'mfsgd --help'")
    assert capsys.readouterr().err == ("mfsgd evaluate: error: unrecognized arguments: "
                                       f"--validation {path}; see 'mfsgd evaluate --help'\n")
    with pytest.raises(SystemExit):  # a prefix of --factors
        _cli.main(["train", path, "-o", str(work["dir"] / "abbrev.mfsgd"), "--fact", "4"])
    assert "unrecognized arguments: --fact" in capsys.readouterr().err
    assert not (work["dir"] / "abbrev.mfsgd").exists()


def test_threads_minus_one_means_every_cpu(capsys):
    """--threads -1 is n_threads=-1 (one thread per available CPU); 0 and -2 are refused
    with the rule."""
    from mfsgd import _cli

    argv = ["train", "r.csv", "-o", "m.mfsgd", "--threads"]
    assert _cli.build_parser().parse_args([*argv, "-1"]).n_threads == -1
    for bad in ("0", "-2"):
        with pytest.raises(SystemExit):
            _cli.build_parser().parse_args([*argv, bad])
        assert f"must be an integer from 1 to {_cli.MAX_THREADS}, or -1 (every available " \
            f"CPU); got '{bad}'" in capsys.readouterr().err


def test_recommend_all_serves_many_users_in_one_pass(work, tmp_path, capsys):
    """recommend-all serves every user, or those of --users FILE, in one recommend_all
    pass: user<TAB>item<TAB>score lines, each user's list the one-user command's (a
    process per user cost 0.3 s of start-up: review 26)."""
    m = str(work["dir"] / "m.mfsgd")
    model = load(m)
    users = [int(x) for x in work["u"][:3]]
    f = tmp_path / "users.txt"
    f.write_text("".join(f"{u}\n" for u in users) + "\n")
    assert _cli.main(["recommend-all", m, "--users", str(f), "-n", "4"]) == 0
    lines = [ln.split("\t") for ln in capsys.readouterr().out.splitlines()]
    ids, scores = model.recommend_all(users, n=4)
    assert [(int(a), int(b)) for a, b, _ in lines] == \
        [(u, int(v)) for u, row in zip(users, ids, strict=True) for v in row]
    np.testing.assert_allclose([float(s) for *_, s in lines], scores.ravel(), atol=5e-5)
    for u in users:  # each user's list is the one-user command's
        assert _cli.main(["recommend", m, str(u), "-n", "4"]) == 0
        one = [ln.split("\t")[0] for ln in capsys.readouterr().out.splitlines()]
        assert one == [b for a, b, _ in lines if int(a) == u]
    assert _cli.main(["recommend-all", m, "--users", str(f), "-n", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["user"] for r in out["recommendations"]] == users
    assert [[x["item"] for x in r["recommendations"]] for r in out["recommendations"]] == \
        ids.tolist()
    assert _cli.main(["recommend-all", m, "-n", "2"]) == 0
    got = [ln.split("\t") for ln in capsys.readouterr().out.splitlines()]
    assert len(got) == 2 * len(model.user_ids_)
    assert [int(a) for a, *_ in got[::2]] == model.user_ids_.tolist()
    f.write_text(f"{users[0]}\n999999\n")
    assert _cli.main(["recommend-all", m, "--users", str(f)]) == 2
    assert "1 of the 2 users are not in the model (the first: 999999)" in \
        capsys.readouterr().err
    assert _cli.main(["recommend-all", m, "--users", str(f), "--allow-unknown", "-n", "3",
                      "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["recommendations"]
    assert [r["known"] for r in out] == [True, False]
    assert [x["item"] for x in out[1]["recommendations"]] == \
        model.recommend(999999, n=3)[0].tolist()
    # a file saved with a byte-order mark; ids Python's int() reads but no file writes
    f.write_bytes(("\ufeff" + "".join(f"{u}\n" for u in users)).encode("utf-8"))
    assert _cli.main(["recommend-all", m, "--users", str(f), "-n", "1"]) == 0
    assert [int(ln.split("\t")[0]) for ln in capsys.readouterr().out.splitlines()] == users
    for odd in ("1_0", "\uff11"):
        f.write_text(f"{odd}\n")
        assert _cli.main(["recommend-all", m, "--users", str(f)]) == 2
        assert f"user {odd!r} is not in the model: its user ids are integers" in \
            capsys.readouterr().err
    (tmp_path / "none.txt").write_text("\n")
    assert _cli.main(["recommend-all", m, "--users", str(tmp_path / "none.txt")]) == 2
    assert "holds no user id" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", [[], ["--json"]])
def test_recommend_all_writes_chunk_by_chunk_the_same_output(work, tmp_path, capsys,
                                                              monkeypatch, fmt):
    """recommend-all serves and writes a chunk of users at a time (review 28: 800k users
    held 3.3 GB before the first line); the output is the same whatever the chunk,
    including users with fewer candidates than n and unknown ones."""
    m = str(work["dir"] / "m.mfsgd")
    users = [int(x) for x in np.unique(work["u"])[:10]] + [999999]
    f = tmp_path / "users.txt"
    f.write_text("".join(f"{u}\n" for u in users))
    argv = ["recommend-all", m, "--users", str(f), "--allow-unknown", "-n", "5", *fmt]
    assert _cli.main(argv) == 0
    whole = capsys.readouterr().out
    assert _cli.main(["recommend-all", m, "-n", "3", *fmt]) == 0
    every = capsys.readouterr().out
    monkeypatch.setattr(_cli, "RECOMMEND_ALL_CHUNK", 3)
    assert _cli.main(argv) == 0
    assert capsys.readouterr().out == whole
    assert _cli.main(["recommend-all", m, "-n", "3", *fmt]) == 0
    assert capsys.readouterr().out == every
    if fmt:
        out = json.loads(whole)
        assert [r["user"] for r in out["recommendations"]] == users
        assert out["recommendations"][-1]["known"] is False and out["warnings"] == []
