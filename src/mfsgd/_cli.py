"""The ``mfsgd`` command (also ``python -m mfsgd``).

Every user mistake (missing file, bad option, unknown id, bad output path) prints one
line to stderr, ``mfsgd COMMAND: error: ...``, and exits with status 2; no traceback.
File errors read ``PATH: no such file or directory`` / ``is a directory`` /
``permission denied`` and always name the path the user gave. Ctrl-C exits with 130.

Checks run before any work: options by their argparse types, file paths (input
readable, output directory writable, a --plot type matplotlib writes) before loading and
training, and the rating column's scale before training. The model is saved before the
plot is drawn, so that a failed plot loses no training.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import inspect
import json
import math
import os
import re
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from . import __version__
from ._config import LOSS_DEFAULTS, LOSSES, MAX_THREADS, auto_text, make_config, resolved
from ._data import Handoff
from ._fileio import check_writable
from ._training import MAX_BLOCKS, epoch_line
from .exceptions import TrainingInterrupted
from .model import MatrixFactorization
from .model_selection import RANKING_METRICS

# ------------------------------------------------------------------ errors


class UserError(Exception):
    """A mistake of the user's, reported as one line and status 2."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what the command knows of it: ``detail`` ends the line
    ``mfsgd COMMAND: interrupted``, e.g. " in epoch 3; nothing saved (m.mfsgd unchanged)"."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail)
        self.detail = detail


def _one_line(text: str) -> str:
    return " ".join(text.split())


def error_message(e: BaseException, keep: Sequence[str] = ()) -> str:
    """One line for any error; the one place where messages are formatted. Never raises.

    An OSError that names a file becomes ``PATH: reason`` (``strerror`` with a lower-case
    first letter), whatever raised it; anything else is its text on one line, in the
    command line's words (:func:`cli_words`; the strings ``keep``, the paths given, left
    as they are)."""
    try:
        if isinstance(e, OSError) and e.filename is not None and e.strerror:
            text = f"{os.fsdecode(e.filename)}: {e.strerror[:1].lower()}{e.strerror[1:]}"
        else:
            text = cli_words(str(e) or type(e).__name__, keep)
    except Exception:  # a __str__ that raises: the type is still worth saying
        text = type(e).__name__
    return _one_line(text)


# A parameter's name in a message, not a piece of a path or a longer word ("eval_set.csv",
# "learning_rate/r.csv", "n_epochs_"): not after a word character, "/", "." or "-", and not
# before a word character, "/", "-" or "." followed by one.
_NAME = r"(?<![\w/.\\-]){}(?![\w/\\-]|\.\w)"


def cli_words(text: str, keep: Sequence[str] = ()) -> str:
    """A library message in the command line's words: a parameter that must be
    something is its option (``min_rating must be`` -> ``--min-rating must be``), so is
    a parameter set to a value (``loss='bpr'`` -> ``--loss bpr``; ``min_rating=None``
    -> "leave out --min-rating") and any parameter whose name has an underscore
    (``n_epochs`` -> ``--epochs``); ``columns=`` is ``--columns`` and ``eval_set`` is
    ``--validation FILE``. The strings ``keep`` (the paths the command was given) and
    names inside paths or longer words are left as they are."""
    held = sorted({k for k in keep if k}, key=len, reverse=True)
    for n, k in enumerate(held):
        text = text.replace(k, f"\x00{n}\x00")
    for opt, name, _, _ in _MODEL_OPTIONS + _EARLY_STOPPING_OPTIONS:
        text = re.sub(r"(?:\b([Ss]et|[Pp]ass) )?" + _NAME.format(name) + "=None\\b",
                      lambda m, opt=opt: ("Leave out " if (m[1] or "")[:1].isupper()
                                          else "leave out ") + opt, text)
        text = re.sub(_NAME.format(name) + r"='?([^\s,;)'\x00]+)'?", rf"{opt} \1", text)
        # a name with an underscore is the parameter wherever it stands; others
        # ("loss", "tol") only where they must be something
        text = re.sub(_NAME.format(name) if "_" in name else
                      _NAME.format(name) + r"(?= must\b)", opt, text)
    text = re.sub(_NAME.format("columns") + r"=(?=[.)]|$)", "--columns", text)
    text = re.sub(_NAME.format("eval_set"), "--validation FILE", text)
    for n, k in enumerate(held):
        text = text.replace(f"\x00{n}\x00", k)
    return text


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors in the same style as the commands' own, and no
    abbreviated options: with them, ``evaluate --validation FILE`` (an option of
    ``train``) was taken for ``--validation-fraction FILE``, and a typo for another
    option; the subcommands' parsers are of this class too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {_one_line(message)}; "
                     f"see '{self.prog} --help'\n")


# ------------------------------------------------------------------ option types
# argparse reports a bad value as "argument --factors: must be an integer >= 1; got '0'",
# before anything is loaded or drawn.


def _number(kind: type, low: float, *, strict: bool = False,
            high: float | None = None) -> Callable[[str], Any]:
    rule = f"{'an integer' if kind is int else 'a number'} {'>' if strict else '>='} {low}"
    if high is not None:
        rule += f" and < {high}" if kind is float else f" and <= {high}"

    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            v = None
        ok = v is not None and math.isfinite(v) and (v > low if strict else v >= low)
        if ok and high is not None:
            ok = v < high if kind is float else v <= high
        if not ok:
            raise argparse.ArgumentTypeError(f"must be {rule}; got {text!r}")
        return v

    parse.__name__ = rule  # argparse names the type in some messages
    return parse


_positive_int = _number(int, 1)
_nonneg_int = _number(int, 0)
_positive_float = _number(float, 0, strict=True)
_nonneg_float = _number(float, 0)
_fraction = _number(float, 0, strict=True, high=1)
_threads_range = _number(int, 1, high=MAX_THREADS)


def _threads(text: str) -> int:
    """--threads: 1 to MAX_THREADS, or -1 (every available CPU, as n_threads=-1)."""
    if text.strip() == "-1":
        return -1
    try:
        return _threads_range(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be an integer from 1 to {MAX_THREADS}, or -1 "
                                         f"(every available CPU); got {text!r}") from None


_threads.__name__ = "an integer from 1 to MAX_THREADS, or -1"
_blocks = _number(int, 1, high=MAX_BLOCKS)


def _columns(text: str) -> list[str]:
    cols = [c.strip() for c in text.split(",")]
    if len(cols) not in (2, 3) or not all(cols):
        raise argparse.ArgumentTypeError(
            f"needs USER,ITEM,RATING (or USER,ITEM for interactions with a ranking --loss): "
            f"comma-separated column names or 0-based positions; got {text!r} ({len(cols)} "
            f"{'column' if len(cols) == 1 else 'columns'})")
    return cols


def _sep(text: str) -> str:
    return {"\\t": "\t", "tab": "\t", "space": " "}.get(text, text)


def _threshold(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a number or 'none'; got {text!r}")
    return v


# ------------------------------------------------------------------ model options
# (option, MatrixFactorization parameter, argparse keywords, help). Every option defaults
# to None, meaning "not given": only the options given reach the estimator, and --help
# shows the estimator's own default, read from MatrixFactorization().get_params().
_MODEL_OPTIONS: list[tuple[str, str, dict[str, Any], str]] = [
    ("--factors", "n_factors", {"type": _positive_int, "metavar": "K"},
     "latent factors per user and item"),
    ("--epochs", "n_epochs", {"type": _positive_int, "metavar": "N"},
     "passes over the ratings"),
    ("--lr", "learning_rate", {"type": _positive_float, "metavar": "RATE"}, "SGD learning rate"),
    ("--lr-decay", "lr_decay", {"type": _nonneg_float, "metavar": "D"},
     "epoch e (from 0) uses lr / (1 + D * e)"),
    ("--adagrad", "adagrad", {"action": "store_true"},
     "AdaGrad rates per user and item row (squared: wants a larger --lr, e.g. 0.05; "
     "a ranking loss takes its own AdaGrad defaults)"),
    ("--reg-factors", "reg_factors", {"type": _nonneg_float, "metavar": "L2"},
     "L2 regularisation of the factors"),
    ("--reg-bias", "reg_bias", {"type": _nonneg_float, "metavar": "L2"},
     "L2 regularisation of the biases"),
    ("--loss", "loss", {"choices": list(LOSSES)},
     "squared: predict ratings; bpr, warp, softmax: rank items from interactions (a file "
     "of user,item pairs; see the README, 'Ratings or interactions?')"),
    ("--negatives", "n_negatives", {"type": _positive_int, "metavar": "N"},
     "sampled negatives per interaction (bpr, softmax)"),
    ("--max-sampled", "max_sampled", {"type": _positive_int, "metavar": "N"},
     "warp: negatives drawn at most per interaction while looking for a violation"),
    ("--margin", "margin", {"type": _nonneg_float, "metavar": "M"},
     "warp: the score margin a negative must violate"),
    ("--negative-exponent", "negative_exponent", {"type": _nonneg_float, "metavar": "BETA"},
     "negatives are drawn with probability ~ popularity^BETA (0: uniform)"),
    ("--min-rating", "min_rating", {"type": float, "metavar": "R"},
     "ranking losses: read the file's rating column and keep only rows rated >= R as "
     "interactions"),
    ("--init-std", "init_std", {"type": _nonneg_float, "metavar": "SD"},
     "standard deviation of the initial factors"),
    ("--biased", "biased", {"action": argparse.BooleanOptionalAction},
     "fit the global mean and user and item biases (--no-biased: factors only)"),
    ("--nonnegative", "nonnegative", {"action": "store_true"}, "keep every factor >= 0"),
    ("--dtype", "dtype", {"choices": ["float32", "float64"]}, "precision of the parameters"),
    ("--threads", "n_threads", {"type": _threads, "metavar": "T"},
     "threads running the kernel (-1: one per available CPU)"),
    ("--blocks", "n_blocks", {"type": _blocks, "metavar": "B"},
     "blocks per side of the parallel grid; fix it to get the same model for any --threads"),
    ("--seed", "random_state", {"type": _nonneg_int, "metavar": "SEED"},
     "seed of initialisation, shuffling and hold-out (same seed, same model)"),
]
_EARLY_STOPPING_OPTIONS: list[tuple[str, str, dict[str, Any], str]] = [
    ("--early-stopping", "early_stopping", {"action": "store_true"},
     "stop when the validation metric (RMSE, or --eval-metric of a ranking loss) stops "
     "improving and keep the best epoch"),
    ("--eval-metric", "eval_metric", {"metavar": "METRIC"},
     "validation metric of a ranking loss: ndcg@K, recall@K or hit_rate@K"),
    ("--validation-fraction", "validation_fraction", {"type": _fraction, "metavar": "F"},
     "share of the ratings held out as validation set for --early-stopping"),
    ("--patience", "n_iter_no_change", {"type": _positive_int, "metavar": "N"},
     "epochs without improvement before --early-stopping stops"),
    ("--tol", "tol", {"type": _nonneg_float, "metavar": "TOL"},
     "smallest improvement of the validation metric that counts for --early-stopping"),
]
_NEEDS_EARLY_STOPPING = ("validation_fraction", "n_iter_no_change", "tol")
_RANKING_METRICS_DEFAULT = ",".join(RANKING_METRICS)

# The command line seeds by default, so that the same command gives the same model.
CLI_DEFAULTS = {"random_state": 0}
DEMO_DEFAULTS = {"n_factors": 32, "n_epochs": 20, "learning_rate": 0.02, "reg_factors": 0.05,
                 "random_state": 0}
#: The demo's own values of these suit the squared loss (a fast RMSE curve); with a
#: ranking --loss they give way to that loss's defaults (with or without --adagrad), so
#: that `demo --loss warp` shows the loss as the library's defaults train it.
DEMO_SQUARED_ONLY = ("n_epochs", "learning_rate", "reg_factors")


def _shown(name: str, value: Any, defaults: dict[str, Any] | None = None) -> str:
    if defaults is DEMO_DEFAULTS and name in DEMO_SQUARED_ONLY:
        return f"{value} for squared; a ranking loss's own otherwise"
    if name == "dtype":
        return np.dtype(value).name
    if name == "n_blocks" and value is None:
        return "1 for one thread, else 2 x threads, fewer on small data"
    if name == "eval_metric" and value is None:
        return "rmse for squared, ndcg@10 for the ranking losses"
    if value is None and any(name in d for d in LOSS_DEFAULTS.values()):
        return auto_text(name)
    return str(value)


def _add_model_options(p: argparse.ArgumentParser, defaults: dict[str, Any],
                       early_stopping: bool = True) -> None:
    """The estimator's options; ``defaults`` are the command's own, shown in --help."""
    shown = {**MatrixFactorization().get_params(), **defaults}
    g = p.add_argument_group("model options")
    table = _MODEL_OPTIONS + (_EARLY_STOPPING_OPTIONS if early_stopping else [])
    for opt, name, kw, text in table:
        g.add_argument(opt, dest=name, default=None, **kw,
                       help=f"{text} (default: {_shown(name, shown[name], defaults)})")
    p.set_defaults(model_defaults=defaults)


def _model_params(args: argparse.Namespace) -> dict[str, Any]:
    """The estimator parameters: the command's defaults, then the options given."""
    names = [name for _, name, _, _ in _MODEL_OPTIONS + _EARLY_STOPPING_OPTIONS]
    given = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    defaults = args.model_defaults
    if defaults is DEMO_DEFAULTS and given.get("loss", "squared") != "squared":
        defaults = {k: v for k, v in defaults.items() if k not in DEMO_SQUARED_ONLY}
    return {**defaults, **given}


def _check_option_combinations(args: argparse.Namespace) -> None:
    if getattr(args, "early_stopping", None):
        if args.validation is not None and args.validation_fraction is not None:
            raise UserError("--validation FILE and --validation-fraction both choose the "
                            "validation ratings; give one of them")
        return
    for opt, name, _, _ in _EARLY_STOPPING_OPTIONS:
        if name in _NEEDS_EARLY_STOPPING and getattr(args, name, None) is not None:
            raise UserError(f"{opt} only applies with --early-stopping; add --early-stopping")


# ------------------------------------------------------------------ files


def _check_input(path: str) -> None:
    """A file to read: it exists, is a file and is readable (else an OSError naming it)."""
    for bad, code in ((not os.path.exists(path), errno.ENOENT),
                      (os.path.isdir(path), errno.EISDIR),
                      (not os.access(path, os.R_OK), errno.EACCES)):
        if bad:
            raise OSError(code, os.strerror(code), path)


def _check_output(path: str, option: str = "output") -> None:
    """A file to write, checked before any work so that a bad path fails at once: not
    empty, not a directory, in an existing and writable directory (else an OSError naming
    it). ``option`` names the path in the message for an empty one."""
    if not path:
        raise UserError(f"the {option} path is empty")
    if os.path.isdir(path):
        raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    parent = os.path.dirname(path) or "."
    if not os.path.exists(parent):
        raise OSError(errno.ENOENT, f"directory {parent} does not exist", path)
    if not os.path.isdir(parent):
        raise OSError(errno.ENOTDIR, f"{parent} is not a directory", path)
    if not os.access(parent, os.W_OK) or (os.path.exists(path) and
                                          not os.access(path, os.W_OK)):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), path)
    # what the write itself will do (a file made in the folder, then renamed), tried and
    # undone: os.access says yes to root for /proc, where no file can be made
    check_writable(path)


def _check_plot(args: argparse.Namespace) -> None:
    """--plot, before any work: matplotlib is installed and writes that file type, and
    the path is writable and not the model's. The path becomes the file written
    (plotting.figure_file: ".png" added where matplotlib would add it; a folder
    refused), so that the check and the messages name the real file."""
    if getattr(args, "plot", None) is None:
        return
    if not args.plot:
        raise UserError("the --plot path is empty")
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise UserError("--plot needs matplotlib: pip install 'mfsgd[plot]'")
    from matplotlib.figure import Figure

    from .plotting import figure_file

    formats = Figure().canvas.get_supported_filetypes()
    args.plot = figure_file(args.plot)  # the file written: ".png" added if it has no extension
    ext = os.path.splitext(args.plot)[1][1:]
    if ext.lower() not in formats:
        raise UserError(f"--plot {args.plot}: matplotlib cannot write .{ext} files; use one "
                        f"of {', '.join('.' + f for f in sorted(formats))} (e.g. curve.png)")
    _check_output(args.plot)
    output = getattr(args, "output", None)
    if output and os.path.realpath(output) == os.path.realpath(args.plot):
        raise UserError(f"--plot {args.plot} is also the model file (-o); the plot would "
                        "overwrite the model: choose another name")


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name one existing file, also through symlinks, hard links or
    /dev/stdin redirected from it. A missing file holds nothing to lose (and a missing
    input is reported as such when it is read)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_outputs_spare_inputs(args: argparse.Namespace) -> None:
    """-o and --plot name neither the data nor the --validation file: train reads them,
    then the save would replace them, and the user's data would be lost."""
    inputs = [("the input data file", args.data)]
    if getattr(args, "validation", None) is not None:
        inputs.append(("the --validation file", args.validation))
    for option, path in (("-o", args.output), ("--plot", getattr(args, "plot", None))):
        for what, source in inputs:
            if path and _same_file(path, source):
                raise UserError(f"{option} {path} is {what}; writing there would overwrite "
                                "it: choose another name")


def _plot(model: MatrixFactorization, args: argparse.Namespace,
          saved: str | None = None) -> dict[str, str]:
    """Draw --plot once the model is trained (and ``saved``: a failed plot then says the
    model is safe); {"plot": path} for the output, {} without --plot."""
    if getattr(args, "plot", None) is None:
        return {}
    from .plotting import plot_history

    try:
        plot_history(model, path=args.plot)
    except (ValueError, TypeError, OSError, ImportError) as e:
        if saved is None:
            raise
        raise UserError(f"{error_message(e)} (the model was saved to {saved}; only the plot "
                        "failed)") from None
    return {"plot": args.plot}


# Ratings beyond this magnitude are no rating scale; integers beyond EPOCH_SECONDS look
# like Unix timestamps (1973 onwards), the usual wrong column of MovieLens-style files.
MAX_RATING = 1e6
EPOCH_SECONDS = 1e8


def _check_rating_scale(ratings: np.ndarray, column: str) -> None:
    lo, hi = float(ratings.min()), float(ratings.max())
    if max(abs(lo), abs(hi)) <= MAX_RATING:
        return
    if lo > EPOCH_SECONDS and np.array_equal(ratings, np.round(ratings)):
        why = "which look like Unix timestamps, not ratings"
    else:
        why = f"beyond any rating scale (|rating| <= {MAX_RATING:g} expected)"
    raise UserError(f"{column} holds values from {lo:.6g} to {hi:.6g}, {why}; choose the "
                    "rating column with --columns USER,ITEM,RATING")


def _reads_ratings(args: argparse.Namespace, params: dict[str, Any]) -> bool:
    """Whether train / evaluate read a rating column. The squared loss needs one. A
    ranking loss reads (user, item) interactions, and their ratings only when it filters
    them (--min-rating) or --columns names a rating column."""
    loss = params.get("loss", "squared")
    if loss == "squared":
        if args.columns is not None and len(args.columns) == 2:
            raise UserError(f"--columns {','.join(args.columns)} names no rating column, "
                            "which the squared loss predicts; add it (USER,ITEM,RATING), or "
                            "rank items from these interactions with --loss bpr, warp or "
                            "softmax")
        return True
    return params.get("min_rating") is not None or (args.columns is not None
                                                    and len(args.columns) == 3)


def _read_ratings(args: argparse.Namespace, path: str, ratings: bool = True) -> tuple:
    """A file of train / evaluate (Parquet or delimited text), read by load_ratings with
    --columns and --sep: (users, items, ratings), or (users, items) with ``ratings=False``."""
    from .datasets import load_ratings

    _check_input(path)
    if not ratings:
        pairs = load_ratings(path, columns=args.columns, sep=args.sep, as_frame=False,
                             ratings=False)
        if not len(pairs[0]):
            raise UserError(f"{path} has no interactions, only a header")
        return pairs
    if args.columns is not None and len(args.columns) == 2:
        raise UserError(f"--columns {','.join(args.columns)} names no rating column, which "
                        "--min-rating needs; add it (USER,ITEM,RATING)")
    try:
        u, i, r = load_ratings(path, columns=args.columns, sep=args.sep, as_frame=False)
    except ValueError as e:
        # load_ratings words a missing rating column for Python callers (ratings=False,
        # a ranking loss); the user of --min-rating already has a ranking loss.
        if getattr(args, "min_rating", None) is None or not _no_rating_column(e):
            raise
        raise UserError(f"{path} has no rating column, which --min-rating needs; drop "
                        "--min-rating or name the column with --columns") from None
    if not len(r):
        raise UserError(f"{path} has no ratings, only a header")
    where = f"the rating column {args.columns[2]!r}" if args.columns else "the rating column"
    _check_rating_scale(r, f"{path}: {where}")
    return u, i, r


def _no_rating_column(e: ValueError) -> bool:
    """Whether load_ratings refused a file for having no rating column (2 fields, or a
    header or Parquet schema without one), rather than for its contents."""
    return "no rating column" in str(e)


def _read_evaluated(args: argparse.Namespace, params: dict[str, Any],
                    threshold_given: bool) -> tuple:
    """The file of evaluate. A ranking loss reads the ratings whenever the file has a
    rating column: without them cross_validate counts every held-out pair relevant and
    --threshold would be silently ignored. Only a file without one is read as (user,
    item) interactions, and then a --threshold the user gave is refused."""
    ratings = _reads_ratings(args, params)
    if not ratings and args.columns is None:
        try:
            return _read_ratings(args, args.data)
        except ValueError as e:
            if not _no_rating_column(e):
                raise
    if not ratings and threshold_given and args.threshold is not None:
        raise UserError(f"--threshold {args.threshold}: {args.data} has no rating column, "
                        "so every held-out interaction is relevant; drop --threshold, or "
                        "name the rating column with --columns USER,ITEM,RATING")
    return _read_ratings(args, args.data, ratings)


def _load(path: str) -> MatrixFactorization:
    _check_input(path)
    return MatrixFactorization.load(path)


# ------------------------------------------------------------------ ids


_ASCII_INT = re.compile(r"[+-]?[0-9]+")


def _model_id(ids: np.ndarray, raw: str, what: str) -> Any:
    """The command line's ``raw`` id as the model's id type (str or int). An integer is
    written in ASCII digits, as the training file's ids were read: Python's int() also
    takes "1_0" (10) and other scripts' digits ("１"), which name no id of the file."""
    if ids.dtype.kind not in "iu":
        return raw
    if not _ASCII_INT.fullmatch(raw.strip()):
        raise UserError(f"{what} {raw!r} is not in the model: its {what} ids are "
                        "integers")
    return int(raw)


def _is_known(ids: np.ndarray, v: Any) -> bool:
    if ids.dtype.kind in "iu":
        info = np.iinfo(ids.dtype)
        if not info.min <= v <= info.max:
            return False
    return bool(np.any(ids == v))


def _require_known(known: bool, what: str, v: Any, fallback: str) -> None:
    if not known:
        raise UserError(f"{what} {v!r} is not in the model (pass --allow-unknown to "
                        f"{fallback})")


def _json_id(v: Any) -> Any:
    """An id as JSON keeps it: int ids as numbers, string ids as strings."""
    return v.item() if isinstance(v, np.generic) else v


# ------------------------------------------------------------------ progress and output


def _json_safe(obj: Any) -> Any:
    """``obj`` with every NaN or infinity as None: JSON has no such numbers (Python's
    ``NaN`` is no JSON and breaks strict readers)."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def _to_devnull(stream: Any) -> None:
    """Point ``stream``'s file descriptor at /dev/null once a write to it has failed, so
    that later writes, and the interpreter's flush at exit of what the failed write left
    in the buffer, do not fail again (the recipe of Python's signal module documentation
    for a closed pipe). A stream without a descriptor (replaced by a test) is left alone."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _print_stderr(text: str) -> None:
    """A line on stderr. If stderr cannot take it (a closed pipe, a full disk), the line
    is dropped: the exit status still says what happened, where a failed print would end
    the command with a traceback and status 1."""
    try:
        print(text, file=sys.stderr, flush=True)
    except OSError:
        _to_devnull(sys.stderr)


def _emit(args: argparse.Namespace, obj: dict[str, Any], text: str,
          stream: Any = None) -> None:
    """The command's result on stdout: `text`, or with --json `obj` as one JSON object,
    with the warnings given so far (``"warnings"``: the lines stderr showed, without their
    ``mfsgd CMD: warning:`` prefix), so that a JSON reader learns why a value is null."""
    if getattr(args, "json", False):
        obj = {**obj, "warnings": list(getattr(args, "warned", []))}
        text = json.dumps(_json_safe(obj), allow_nan=False)
    print(text, file=stream or sys.stdout)


class Progress:
    """One line per epoch on stderr, with a tqdm bar below them when tqdm is installed
    and stderr is a terminal (a bar in a log file is carriage-return junk); nothing with
    --quiet or --json. Create it only once the settings are checked. A line that cannot
    be written ends the progress output, never the fit."""

    def __init__(self, args: argparse.Namespace, total: int) -> None:
        self.on = not (args.quiet or args.json)
        self.bar = None
        if self.on and sys.stderr.isatty():
            from ._compat import optional_tqdm

            tqdm = optional_tqdm()
            if tqdm is not None:
                self.bar = tqdm(total=total, unit="epoch", file=sys.stderr, leave=False)

    def __call__(self, row: dict[str, Any]) -> None:
        if not self.on:
            return
        try:
            if self.bar is not None:
                self.bar.update(1)
                self.bar.write(epoch_line(row), file=sys.stderr)  # above the bar, which stays
            else:
                print(epoch_line(row), file=sys.stderr, flush=True)
        except OSError:
            # Progress lines are cosmetic. When stderr cannot take them (its reader went
            # away, as in `mfsgd train ... 2>&1 | head -1`, or it is a full disk), stop
            # writing them and let the fit run on: an exception here would end the fit
            # and the model would never be saved.
            self.on = False
            _to_devnull(sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            try:
                self.bar.close()  # clears the bar: a write, which may fail as above
            except OSError:
                _to_devnull(sys.stderr)


@contextlib.contextmanager
def _unshown_training_interrupted() -> Iterator[list[Warning]]:
    """Within: fit's TrainingInterrupted warnings ("Training interrupted in epoch N; the
    model keeps epoch N - 1") go to the yielded list instead of stderr. They speak of
    the Python object, which a command drops on Ctrl-C; main says what happened instead.
    Other warnings are shown as usual."""
    warned: list[Warning] = []
    show = warnings.showwarning

    def showwarning(message: Any, category: type, *a: Any, **k: Any) -> None:
        if issubclass(category, TrainingInterrupted):
            warned.append(message)
        else:
            show(message, category, *a, **k)

    with warnings.catch_warnings():  # restores the filters and showwarning
        # "always": no filter ("error", "once") may turn it into an exception or keep it
        # from showwarning, which records it
        warnings.filterwarnings("always", category=TrainingInterrupted)
        warnings.showwarning = showwarning
        yield warned


def _fit(model: MatrixFactorization, args: argparse.Namespace, data: Any, **kw: Any) -> float:
    """``model.fit`` with progress lines; its seconds. Ctrl-C raises ``Interrupted``
    saying when it came (fit's TrainingInterrupted warning says it of the Python object,
    which the command drops: it saves nothing on Ctrl-C)."""
    prog = Progress(args, make_config(model.get_params()).n_epochs)
    t0 = time.perf_counter()
    try:
        with _unshown_training_interrupted() as warned:
            model.fit(data, callback=prog, **kw)
    except KeyboardInterrupt:
        if not warned:  # not from fit's handling (it warns for every Ctrl-C it sees)
            raise
        when = getattr(warned[-1], "when", "during")
        if when == "before":  # reading and laying out the data
            raise Interrupted(" before the first epoch") from None
        # fit keeps the epochs done: n_epochs_ of them
        if when == "after":
            raise Interrupted(f" after the last epoch ({model.n_epochs_})") from None
        raise Interrupted(f" in epoch {getattr(model, 'n_epochs_', 0) + 1}") from None
    finally:
        prog.close()
    return time.perf_counter() - t0


def _last(model: MatrixFactorization, key: str) -> float | None:
    """``key`` of the epoch the model kept (the best one after early stopping)."""
    hist = model.history_
    if not hist:
        return None
    best = model.best_epoch_
    row = next((h for h in hist if h["epoch"] == best), hist[-1]) if best else hist[-1]
    return row.get(key)


# ------------------------------------------------------------------ commands


def cmd_demo(args: argparse.Namespace) -> None:
    from .datasets import load_movielens, make_ratings

    _check_plot(args)
    params = _model_params(args)
    seed = params["random_state"]
    t0 = time.perf_counter()
    if args.movielens:
        u, i, r, _ = load_movielens(args.movielens, as_frame=False)
        perm = np.random.default_rng(seed).permutation(len(r))
        u, i, r = u[perm], i[perm], r[perm]
        what = f"MovieLens {args.movielens}: {len(r):,} ratings"
    else:
        u, i, r = make_ratings(args.users, args.items, args.ratings, rank=10, noise=args.noise,
                               random_state=seed, as_frame=False)
        what = (f"{len(r):,} synthetic ratings ({args.users:,} users x {args.items:,} items, "
                f"rank 10, noise sd {args.noise})")
    n_test = len(r) // 10
    train, test = (u[n_test:], i[n_test:], r[n_test:]), (u[:n_test], i[:n_test], r[:n_test])
    if not args.quiet and not args.json:
        print(f"mfsgd {__version__} demo: {what}, loaded in {time.perf_counter() - t0:.1f}s; "
              f"10% held out; seed {seed}.")
    model = MatrixFactorization(**params)
    fit_s = _fit(model, args, train, eval_set=test)
    plot = _plot(model, args)
    updates = len(train[2]) * model.n_epochs_ / sum(h["seconds"] for h in model.history_)
    speed = (f"fit {fit_s:.2f}s, {updates / 1e6:.1f} M "
             f"{'rating' if model.loss == 'squared' else 'interaction'}-updates/s")
    common = {"seed": seed, "fit_seconds": fit_s, "updates_per_second": updates,
              "history": model.history_, **plot}
    if model.loss == "squared":
        rmse = float(np.sqrt(np.mean((model.predict(test[:2]) - test[2]) ** 2)))
        floor = "" if args.movielens else f" (noise floor {args.noise})"
        out = {"test_rmse": rmse, "noise": None if args.movielens else args.noise}
        text = f"test RMSE {rmse:.4f}{floor}; {speed}"
    else:
        # A ranking model's scores are no ratings: the metrics evaluate prints, of the
        # held-out pairs the model would train on (rated >= --min-rating; all without it),
        # as score() and the per-epoch validation metric count them.
        from .metrics import ranking_metrics

        k = 10
        res = ranking_metrics(model, test, k=k, threshold=model.min_rating, train=train)
        scores = {f"test_{m}@{k}": res[m] for m in ("ndcg", "hit_rate", "recall")}
        out = {**scores, "threshold": model.min_rating}
        text = ", ".join(f"{n} {v:.4f}" for n, v in scores.items()) + f"; {speed}"
    text += f"\nplot saved to {args.plot}" if plot else ""
    _emit(args, {**out, **common}, text)


def _checked_params(args: argparse.Namespace) -> dict[str, Any]:
    """The estimator parameters, checked by the estimator itself before any reading."""
    params = _model_params(args)
    make_config(MatrixFactorization(**params).get_params())
    return params


def _read_and_fit(args: argparse.Namespace) -> tuple[MatrixFactorization, dict, int, float]:
    """train's checks, reading and fit: the model, its parameters, the rows it trains
    on, and fit's seconds."""
    _check_option_combinations(args)
    _check_output(args.output)
    _check_plot(args)
    _check_outputs_spare_inputs(args)
    params = _checked_params(args)
    model = MatrixFactorization(**params)
    ratings = _reads_ratings(args, params)
    data = _read_ratings(args, args.data, ratings)
    fit_kw = {}
    if args.validation is not None:
        fit_kw["eval_set"] = _read_ratings(args, args.validation, ratings)
    rows = len(data[0])
    if model.loss != "squared" and model.min_rating is not None:  # the rows the model keeps
        rows = int(np.count_nonzero(data[2] >= model.min_rating))
    # fit empties the hand-off once it has the columns: the loaded arrays are then freed
    # while training copies them, instead of living beside that copy until the end.
    names = (model.user_col, model.item_col, model.rating_col)[:len(data)]  # pairs: 2
    data = Handoff(zip(names, data, strict=True))
    return model, params, rows, _fit(model, args, data, **fit_kw)


def _writes_to(path: str, stream: Any) -> bool:
    """``path`` is the file ``stream`` writes to (``-o /dev/stdout``, a pipe or a file)."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(stream.fileno()))
    except (OSError, ValueError, AttributeError):  # no such file yet, or no real stream
        return False


def cmd_train(args: argparse.Namespace) -> None:
    if _writes_to(args.output, sys.stderr):
        raise UserError(f"-o {args.output} is where the progress lines and warnings go "
                        "(stderr), which would mix with the model's bytes; use -o "
                        "/dev/stdout (the summary then goes to stderr)")
    existed = os.path.exists(args.output)
    # the model goes to stdout: the summary goes to stderr, not after the model's bytes
    summary_stream = sys.stderr if _writes_to(args.output, sys.stdout) else sys.stdout
    try:
        model, params, rows, secs = _read_and_fit(args)
    except KeyboardInterrupt as e:  # the output is only written once training is done
        detail = e.detail if isinstance(e, Interrupted) else ""
        left = "unchanged" if existed else "not created"
        raise Interrupted(f"{detail}; nothing saved ({args.output} {left})") from None
    try:
        model.save(args.output)
    except OSError as e:  # name the user's path, not save's temporary file
        raise OSError(e.errno, e.strerror, args.output) from None
    plot = _plot(model, args, saved=args.output)  # after saving: a failed plot loses nothing
    ranking = model.loss != "squared"
    train_key = "train_loss" if ranking else "train_rmse"
    train = _last(model, train_key)
    val_key = next((k for k in (model.history_[-1] if model.history_ else {})
                    if k.startswith("val_")), None)
    val = _last(model, val_key) if val_key else None
    seed = params["random_state"]
    what = f"train loss ({model.loss}) {train:.4f}" if ranking else f"train RMSE {train:.4f}"
    text = (f"saved {args.output}: {len(model.user_ids_)} users, {len(model.item_ids_)} items, "
            f"{model.n_epochs_} epochs, {what}")
    if val is not None:
        text += f", validation {val_key[4:] if ranking else 'RMSE'} {val:.4f}"
    if model.best_epoch_:
        text += f" (kept epoch {model.best_epoch_})"
    out = {"output": args.output, "loss": model.loss,
           "ratings" if not ranking else "interactions": rows,
           "users": len(model.user_ids_), "items": len(model.item_ids_),
           "epochs": model.n_epochs_, "best_epoch": model.best_epoch_, train_key: train}
    if val_key or not ranking:  # squared: val_rmse always, None without a validation set
        out[val_key or "val_rmse"] = val
    text += f"; seed {seed}" + (f"\nplot saved to {args.plot}" if plot else "")
    _emit(args, {**out, "seed": seed, "seconds": secs, **plot}, text, summary_stream)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .model_selection import cross_validate, default_metrics

    _check_option_combinations(args)
    params = _checked_params(args)
    model = MatrixFactorization(**params)
    # --threshold is absent unless given (argparse.SUPPRESS): a file without ratings
    # refuses it then, and takes cross_validate's default otherwise.
    threshold_given = hasattr(args, "threshold")
    threshold = args.threshold if threshold_given else args.threshold_default
    data = _read_evaluated(args, params, threshold_given)
    if len(data) == 2:  # interactions: cross_validate counts all held-out pairs relevant
        threshold = None
    ranking = params.get("loss", "squared") != "squared"
    metrics = default_metrics(model) if not args.metrics else \
        tuple(m.strip() for m in args.metrics.split(","))
    if ranking and {"rmse", "mae"} & set(metrics):
        raise UserError(f"--metrics {args.metrics}: a ranking loss predicts scores, not "
                        f"ratings; use ranking metrics such as {_RANKING_METRICS_DEFAULT}")
    with _unshown_training_interrupted():  # Ctrl-C: "mfsgd evaluate: interrupted" only
        res = cross_validate(model, data, cv=args.cv, metrics=metrics,
                             random_state=params["random_state"], threshold=threshold)
    out = {k: [float(x) for x in v] for k, v in res.items() if k != "models"}
    # A fold without a relevant rating has its ranking metrics NaN (cross_validate warns,
    # naming it): the summary is over the folds where the metric is defined.
    summary, lines = {}, []
    for k, v in out.items():
        ok = [x for x in v if not math.isnan(x)]
        summary[k] = float(np.mean(ok)) if ok else math.nan
        if not ok:
            lines.append(f"{k:<14} undefined in every fold")
            continue
        part = "" if len(ok) == len(v) else f"  ({len(ok)} of {len(v)} folds)"
        lines.append(f"{k:<14} mean {np.mean(ok):.4f}  sd {np.std(ok):.4f}{part}")
    lines.append(f"{'seed':<14} {params['random_state']}")
    _emit(args, {"folds": out, "mean": summary, "seed": params["random_state"],
                 "threshold": threshold}, "\n".join(lines))


def cmd_predict(args: argparse.Namespace) -> None:
    m = _load(args.model)
    u = _model_id(m.user_ids_, args.user, "user")
    i = _model_id(m.item_ids_, args.item, "item")
    known_u, known_i = _is_known(m.user_ids_, u), _is_known(m.item_ids_, i)
    if not args.allow_unknown:
        _require_known(known_u, "user", u, "predict from the item's bias")
        _require_known(known_i, "item", i, "predict from the user's bias")
    pred = float(m.predict(([u], [i]))[0])
    _emit(args, {"user": u, "item": i, "prediction": pred, "user_known": known_u,
                 "item_known": known_i}, f"{pred:.4f}")


def cmd_recommend(args: argparse.Namespace) -> None:
    m = _load(args.model)
    user = _model_id(m.user_ids_, args.user, "user")
    # known: personalised (model.known_users), as recommend-all's "known"; a user known
    # only from rows below min_rating is served the most popular items too
    in_model = _is_known(m.user_ids_, user)
    known = in_model and bool(m.known_users(user))
    if not args.allow_unknown:
        _require_known(in_model, "user", user, "serve the most popular items")
        if not known:
            raise UserError(f"user {user!r} has no training interaction (only rows below "
                            "min_rating); pass --allow-unknown to serve the most popular "
                            "items")
    ids, scores = m.recommend(user, n=args.n, exclude_seen=not args.include_seen)
    rows = [{"item": _json_id(v), "score": float(s)} for v, s in zip(ids, scores, strict=True)]
    _emit(args, {"user": user, "known": known, "recommendations": rows},
          "\n".join(f"{r['item']}\t{r['score']:.4f}" for r in rows))


#: Users per pass of ``recommend-all``: its memory is that of one pass (the lists and
#: their output lines), whatever the number of users.
RECOMMEND_ALL_CHUNK = 1 << 16


def cmd_recommend_all(args: argparse.Namespace) -> None:
    """Top-n for many users in blocked passes (``recommend_all``): one line per user
    and item, ``user<TAB>item<TAB>score``, best first per user in the order given (or
    with --json one object whose ``recommendations`` lists each user's). The users are
    served and written a chunk at a time, so memory stays bounded and the first lines
    come out while the rest are ranked (a run that fails or is interrupted part way has
    written the lists before it, and exits non-zero)."""
    m = _load(args.model)
    if args.users is None:
        users = m.user_ids_
    else:
        try:
            with open(args.users, encoding="utf-8-sig") as f:  # a BOM is no id
                given = [line.strip() for line in f if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"--users {args.users}: cannot read it ({e})") from None
        if not given:
            raise UserError(f"--users {args.users} holds no user id (one per line)")
        users = [_model_id(m.user_ids_, v, "user") for v in given]
    known = m.known_users(users)  # personalised: as recommend's "known"
    # the model's own users are all served (those without interactions their popular
    # list, "known": false); ids given in a file must be personalised, or allowed
    if args.users is not None and not args.allow_unknown and not known.all():
        in_model = m._state.user_map.lookup("users", users) >= 0
        bad, why = (~in_model, "are not in the model") if not in_model.all() else \
            (~known, "have no training interaction (only rows below min_rating)")
        first = users[int(np.argmax(bad))]
        raise UserError(f"{int(np.count_nonzero(bad))} of the {len(users)} users {why} (the "
                        f"first: {_json_id(first)!r}); pass --allow-unknown to serve them the "
                        "most popular items")
    as_json = getattr(args, "json", False)
    out = sys.stdout
    step = max(1, min(RECOMMEND_ALL_CHUNK, (1 << 22) // max(args.n, 1)))
    for s0 in range(0, len(users), step):
        part = users[s0:s0 + step]
        ids, scores = m.recommend_all(part, n=args.n, exclude_seen=not args.include_seen)
        ok = np.isfinite(scores)  # fewer unseen candidates than n: -inf slots
        per_row = ok.sum(1)
        part_ids = part.tolist() if isinstance(part, np.ndarray) else part
        items, vals = ids[ok].tolist(), scores[ok].tolist()
        if as_json:  # the document opens once the first chunk is ranked
            at = np.r_[0, np.cumsum(per_row)].tolist()
            out.write((", " if s0 else '{"recommendations": [') + ", ".join(
                json.dumps({"user": u, "known": bool(k), "recommendations": [
                    {"item": v, "score": x} for v, x in zip(items[a:b], vals[a:b], strict=True)]},
                    allow_nan=False)
                for u, k, a, b in zip(part_ids, known[s0:s0 + step].tolist(), at[:-1], at[1:],
                                      strict=True)))
        else:
            who = np.repeat(np.arange(len(part_ids)), per_row).tolist()
            out.write("".join(f"{part_ids[w]}\t{v}\t{x:.4f}\n"
                              for w, v, x in zip(who, items, vals, strict=True)))
        out.flush()
    if as_json:
        warned = json.dumps(list(getattr(args, "warned", [])))
        out.write(f'], "warnings": {warned}}}\n')


def cmd_info(args: argparse.Namespace) -> None:
    m = _load(args.model)
    # The epoch whose parameters the model holds: early stopping keeps its best one, not
    # the last one trained (whose training loss would describe parameters thrown away).
    hist = m.history_
    kept = m.best_epoch_ if m.best_epoch_ is not None else \
        (hist[-1]["epoch"] if hist else None)
    row = next((h for h in hist if h.get("epoch") == kept), hist[-1] if hist else {})
    info = {"users": len(m.user_ids_), "items": len(m.item_ids_),
            "n_factors": int(m.user_factors_.shape[1]), "dtype": m.user_factors_.dtype.name,
            "global_mean": m.global_mean_, "epochs": m.n_epochs_, "kept_epoch": kept,
            "loss": m.loss,
            **({"final_train_loss": row.get("train_loss")} if m.loss != "squared" else
               {"final_train_rmse": row.get("train_rmse")}),
            # the values in effect: None (the loss's default) shown as the value it took
            "params": {k: resolved(k, v, m.loss, m.adagrad) if k in LOSS_DEFAULTS[m.loss]
                       else v
                       for k, v in m.get_params().items() if k != "dtype"}}
    _emit(args, info, "\n".join(f"{k}: {v}" for k, v in info.items()))


# ------------------------------------------------------------------ parser


def _dflt(text: str) -> str:
    return f"{text} (default: %(default)s)"


def _add_list_options(p: argparse.ArgumentParser, who: str, unknown: str) -> None:
    """-n, --include-seen and --allow-unknown of recommend and recommend-all."""
    p.add_argument("-n", type=_positive_int, default=10, help=_dflt("number of items"))
    p.add_argument("--include-seen", action="store_true",
                   help=f"keep items {who} rated in training")
    p.add_argument("--allow-unknown", action="store_true",
                   help=f"serve {unknown} by item popularity instead of failing")


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="delimited ratings file, or interactions (user,item) with a "
                                "ranking --loss (header optional; separator sniffed); "
                                "/dev/stdin reads a pipe")
    p.add_argument("--columns", type=_columns, metavar="USER,ITEM,RATING",
                   help="the user, item and rating columns: header names or 0-based positions "
                        "(default: recognised from the header, e.g. userId,movieId,rating)")
    p.add_argument("--sep", type=_sep,
                   help="field separator, e.g. ',' ';' '|' or 'tab' (default: sniffed)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="mfsgd", description="Biased matrix factorization by SGD.")
    p.add_argument("--version", action="version", version=f"mfsgd {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    d = sub.add_parser("demo", help="train on generated data and print RMSE per epoch")
    d.add_argument("--users", type=_positive_int, default=20_000, help=_dflt("synthetic users"))
    d.add_argument("--items", type=_positive_int, default=5_000, help=_dflt("synthetic items"))
    d.add_argument("--ratings", type=_number(int, 10), default=1_000_000,
                   help=_dflt("synthetic ratings (at least 10: 10%% are held out as the "
                              "test set)"))
    d.add_argument("--noise", type=_nonneg_float, default=0.5,
                   help=_dflt("standard deviation of the rating noise"))
    d.add_argument("--movielens", choices=["100k", "1m", "10m", "20m", "25m", "32m",
                                           "latest-small"],
                   help="train on a MovieLens set (downloaded once into the cache)")
    _add_model_options(d, DEMO_DEFAULTS, early_stopping=False)
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("train", help="train on a ratings file and save the model")
    _add_data_options(t)
    t.add_argument("-o", "--output", required=True, metavar="MODEL",
                   help="model file to write (checked before training)")
    t.add_argument("--validation", metavar="FILE",
                   help="validation ratings or interactions (same --columns and --sep): "
                        "their RMSE (or --eval-metric) is shown per epoch and drives "
                        "--early-stopping")
    _add_model_options(t, CLI_DEFAULTS)
    t.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="cross-validate on a ratings file")
    _add_data_options(ev)
    ev.add_argument("--cv", type=_number(int, 2), default=5, help=_dflt("number of folds"))
    ev.add_argument("--metrics",
                    help="comma-separated: rmse, mae, ndcg@10, precision@10, hit_rate@10, auc, "
                         "... "
                         f"(default: rmse,mae; with a ranking --loss {_RANKING_METRICS_DEFAULT})")
    from .model_selection import cross_validate

    # No default: args.threshold exists only when given (see cmd_evaluate)
    threshold = inspect.signature(cross_validate).parameters["threshold"].default
    ev.add_argument("--threshold", type=_threshold, default=argparse.SUPPRESS,
                    help="ranking metrics count a held-out rating >= this as relevant "
                         "('none': all are; held-out interactions without ratings are all "
                         f"relevant; default: {threshold})")
    _add_model_options(ev, CLI_DEFAULTS)
    ev.set_defaults(func=cmd_evaluate, validation=None, threshold_default=threshold)

    pr = sub.add_parser("predict", help="predict one rating (a score for a ranking model)")
    pr.add_argument("model", help="model file written by 'mfsgd train'")
    pr.add_argument("user", help="user id as in the training file")
    pr.add_argument("item", help="item id as in the training file")
    pr.add_argument("--allow-unknown", action="store_true",
                    help="predict for an unknown user or item from the known biases "
                         "instead of failing")
    pr.set_defaults(func=cmd_predict)

    rc = sub.add_parser("recommend", help="top-N items for a user")
    rc.add_argument("model", help="model file written by 'mfsgd train'")
    rc.add_argument("user", help="user id as in the training file")
    _add_list_options(rc, "the user", "an unknown user")
    rc.set_defaults(func=cmd_recommend)

    ra = sub.add_parser("recommend-all", help="top-N items for every user, or those of a file, "
                                              "in one pass")
    ra.add_argument("model", help="model file written by 'mfsgd train'")
    ra.add_argument("--users", metavar="FILE",
                    help="the user ids to serve, one per line (/dev/stdin reads a pipe); "
                         "default: every user of the model")
    _add_list_options(ra, "the users", "unknown users")
    ra.set_defaults(func=cmd_recommend_all)

    i = sub.add_parser("info", help="describe a saved model")
    i.add_argument("model", help="model file written by 'mfsgd train'")
    i.set_defaults(func=cmd_info)

    for sp in (d, t):
        sp.add_argument("--plot", metavar="PNG",
                        help="save the RMSE-per-epoch curve here (with validation RMSE when "
                             "there is a validation set; a ranking loss: its loss and "
                             "validation metric); the type follows the extension (.png, "
                             ".svg, .pdf...), none means PNG and adds .png")
    for sp in (d, t, ev, pr, rc, ra, i):
        sp.set_defaults(parser=sp)
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return p


#: Exit status when the reader of stdout went away: a shell's for a process killed by
#: SIGPIPE (128 + 13), what ``seq 100000 | head -1`` reports for seq.
EXIT_BROKEN_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = build_parser().parse_known_args(argv)
    if extra:  # in the subcommand's words, as its own option errors are
        args.parser.error(f"unrecognized arguments: {' '.join(extra)}")
    # the paths given, which messages quote as they are (cli_words leaves them alone)
    paths = [v for k in ("data", "output", "validation", "model", "plot")
             if isinstance(v := getattr(args, k, None), str)]
    args.warned = []  # the warnings' lines, also put in the --json output by _emit

    def show(message: Any, *a: Any, **k: Any) -> None:
        # a warning is one line, in the commands' style
        args.warned.append(_one_line(cli_words(str(message), paths)))
        _print_stderr(f"mfsgd {args.command}: warning: {args.warned[-1]}")

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            args.func(args)
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
    except BrokenPipeError:
        # `mfsgd recommend ... | head -1`: the reader closed the pipe. Stop quietly, as
        # command-line tools do, instead of reporting "Broken pipe" as an error; stdout
        # goes to /dev/null so that the interpreter's own flush at exit does not fail
        # again.
        _to_devnull(sys.stdout)
        return EXIT_BROKEN_PIPE
    except (UserError, ValueError, TypeError, OSError, ImportError) as e:
        _print_stderr(f"mfsgd {args.command}: error: {error_message(e, paths)}")
        return 2
    except KeyboardInterrupt as e:
        detail = e.detail if isinstance(e, Interrupted) else ""
        _print_stderr(f"mfsgd {args.command}: interrupted{detail}")
        return 130
    return 0
