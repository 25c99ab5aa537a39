"""What every bench script shares: data, measurement, output and command-line options.

The scripts run as ``python bench/<name>.py``; Python puts the script's folder first on
``sys.path``, so ``import _common`` works from each of them, and ``run_child`` gives its
child processes the same folder. Nothing here imports an anchor library.

- Data: MovieLens 100K folds (``read_fold``, ``movielens_fold``) and the cache of
  synthetic sets from ``mfsgd.datasets.make_ratings`` (``get_data``, ``size_dims``).
- Measurement: ``timed``, ``median_of``, ``rss_kib`` (peak or current resident memory),
  ``run_child`` (a function in a fresh interpreter, for per-process peak memory).
- Output: ``header`` (machine and versions, atop every run), ``md_table``, ``Report``
  (prints and collects the markdown, writes ``--out``), ``progress`` (stderr), and the
  plots' ``figure_path``, ``pyplot``, ``save_figure``, ``figure``.
- Options: ``parse_params`` (``key=value`` words as estimator parameters), ``Parser``
  with ``--data``, ``--repeats``, ``--threads``, ``--out``, ``--cache`` and
  ``--quick``-dependent defaults; ``run_alone`` is a section's ``main``.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
# MovieLens 100K is not shipped (GroupLens research licence): an unpacked ml-100k folder
# next to the repository is the default.
DEFAULT_DATA = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "ml-100k"))
DEFAULT_CACHE = os.environ.get("MFSGD_BENCH_CACHE", "/tmp/mfsgd-bench")

Triples = tuple[np.ndarray, np.ndarray, np.ndarray]


# ============================================================================ data
def read_fold(path: str) -> Triples:
    """One MovieLens 100K file (``uN.base``, ``uN.test``: tab-separated user, item, rating,
    timestamp) as int64 users, int64 items, float32 ratings."""
    a = np.loadtxt(path, dtype=np.int64, usecols=(0, 1, 2))
    return a[:, 0], a[:, 1], a[:, 2].astype(np.float32)


def check_movielens(data: str) -> None:
    """Exit with a message naming --data unless it holds the official folds."""
    if not os.path.exists(os.path.join(data, "u1.base")):
        sys.exit(f"--data {data}: no u1.base there (an unpacked MovieLens 100K folder is "
                 "expected; see bench/README.md)")


def movielens_fold(data: str, k: int) -> tuple[Triples, Triples]:
    """(train, test) of official fold k (1..5): ``u{k}.base`` and ``u{k}.test``."""
    check_movielens(data)
    return (read_fold(os.path.join(data, f"u{k}.base")),
            read_fold(os.path.join(data, f"u{k}.test")))


def size_dims(n: int) -> tuple[int, int]:
    """Users x items of the synthetic set of n ratings. Every script uses this rule, so
    they share one cached file per size (20 M: 200,000 x 20,000)."""
    if n == 20_000_000:
        return 200_000, 20_000
    return n // 100, max(n // 1000, 1000)


def synthetic_dims(args: argparse.Namespace) -> tuple[int, int]:
    """Users x items from --users/--items (Parser.add_synthetic), else ``size_dims``."""
    users, items = size_dims(args.ratings)
    return args.users or users, args.items or items


def synthetic_path(n_users: int, n_items: int, n_ratings: int, cache: str) -> str:
    return os.path.join(cache, f"synth_{n_users}_{n_items}_{n_ratings}.npz")


def get_data(n_users: int, n_items: int, n_ratings: int, cache: str | None) -> Triples:
    """``make_ratings(n_users, n_items, n_ratings, random_state=0)`` as int32 users,
    int32 items, float32 ratings, kept as an uncompressed .npz in ``cache`` (None: not
    kept). Generating the 20 M set takes about a minute; loading it, a second."""
    from mfsgd.datasets import make_ratings

    path = None
    if cache:
        os.makedirs(cache, exist_ok=True)
        path = synthetic_path(n_users, n_items, n_ratings, cache)
        if os.path.exists(path):
            z = np.load(path)
            return z["u"], z["i"], z["r"]
    secs, (u, i, r) = timed(make_ratings, n_users, n_items, n_ratings, random_state=0,
                            as_frame=False)
    progress(f"generated {n_ratings:,} ratings in {secs:.1f} s")
    if path:
        # written under a temporary name, then renamed: other scripts (and other people's
        # runs) share the cache folder and must never load a half-written file
        tmp = f"{path}.{os.getpid()}.part"
        with open(tmp, "wb") as f:
            np.savez(f, u=u, i=i, r=r)
        os.replace(tmp, path)
    return u, i, r


# ============================================================================ measurement
def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """(wall seconds, result) of one call."""
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def median_of(fn: Callable[[], tuple[float, Any]], repeats: int) -> tuple[float, Any]:
    """Median of the seconds that ``fn()`` reports over ``repeats`` calls, and the last
    call's result. ``fn`` times itself (usually with ``timed``) so that it can leave out
    what is not measured, such as building a library's input or predicting."""
    secs, out = [], None
    for _ in range(repeats):
        s, out = fn()
        secs.append(s)
    return statistics.median(secs), out


def rss_kib(field: str = "VmHWM") -> int:
    """This process's resident memory in KiB: ``VmHWM`` (the peak) or ``VmRSS`` (now),
    from /proc/self/status. Not ``ru_maxrss``: on Linux a child's ``ru_maxrss`` starts
    from its parent's high-water mark, so a big parent inflates a small child. Elsewhere
    ``ru_maxrss`` (the peak) is all there is."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
    except (OSError, StopIteration):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak // 1024 if sys.platform == "darwin" else peak  # macOS counts bytes


def run_child(target: str, *args: Any, timeout: float | None = None,
              python: str | None = None) -> Any:
    """Call ``module:function(*args)`` of a bench module in a fresh interpreter and
    return its result; arguments and result travel as JSON (stdin, last stdout line).

    A fresh process gives each measurement its own peak memory and keeps a library that
    prints or leaks (PyPI libmf) out of this one; ``python`` runs it in another
    interpreter (a venv holding anchor libraries). Raises RuntimeError with the child's
    last stderr line when it fails."""
    module, func = target.split(":")
    code = (f"import json, sys\nsys.path.insert(0, {HERE!r})\nfrom {module} import {func}\n"
            f"print(json.dumps({func}(*json.load(sys.stdin))))")
    out = subprocess.run([python or sys.executable, "-c", code], input=json.dumps(args),
                         capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        why = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[-1]
        raise RuntimeError(f"{target} failed in a child process: {why}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def rmse_mae(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    err = np.asarray(pred, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    return float(np.sqrt(np.mean(err**2))), float(np.mean(np.abs(err)))


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` words as estimator parameters: a Python literal where the value is one
    (``0.02``, ``True``, ``None``), else the string (``loss=warp``)."""
    params: dict[str, Any] = {}
    for kv in pairs:
        key, sep, value = kv.partition("=")
        if not sep or not key:
            raise SystemExit(f"{kv!r}: expected key=value")
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):  # a bare word: a string parameter
            params[key] = value
    return params


# ============================================================================ output
def progress(msg: str) -> None:
    """A progress line on stderr, so that stdout carries only the markdown."""
    print(msg, file=sys.stderr, flush=True)


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


class Report:
    """Markdown printed as it is produced and, with a path, written there as a whole
    after each section (atomically), so a run that dies keeps what it measured."""

    def __init__(self, path: str | None):
        self.path, self.parts = path, []

    def add(self, text: str = "") -> None:
        print(text, flush=True)
        self.parts.append(text)

    def write(self) -> None:
        if self.path:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            tmp = self.path + ".part"
            with open(tmp, "w") as f:
                f.write("\n".join(self.parts).rstrip() + "\n")
            os.replace(tmp, self.path)


def figure_path(given: str | None, out: str | None, name: str) -> str | None:
    """Where a section's plot goes: the path given, else ``name`` next to the report
    (``--out``), else nowhere: a run that only prints must not overwrite the committed
    figures in bench/."""
    if given:
        path = given
    elif out:
        path = os.path.join(os.path.dirname(os.path.abspath(out)), name)
    else:
        return None
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return path


def pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend, or None (said on stderr) when
    matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        progress("no plot: matplotlib is not installed (pip install 'mfsgd[plot]')")
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(plt: Any, fig: Any, path: str, dpi: int) -> bool:
    """Lay out, write and close ``fig``; True, for the caller to return."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return True


def figure(drawn: bool, path: str, out: str | None, alt: str) -> str:
    """The report's line for a plot: an image link relative to the report's folder (to
    the plot's own without --out), or why there is none."""
    if not drawn:
        return "(No plot: matplotlib is not installed.)\n"
    rel = os.path.relpath(path, os.path.dirname(os.path.abspath(out or path)))
    return f"![{alt}]({rel})\n"


def cpuinfo() -> dict:
    """Model, clock, flags, family/model and cache size of the first CPU in /proc/cpuinfo
    (platform's generic names elsewhere)."""
    info: dict = {"model": platform.processor() or platform.machine(), "mhz": None,
                  "flags": set()}
    generic = ("", platform.machine(), platform.processor())
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                key, val = key.strip(), val.strip()
                if key == "model name" and info["model"] in generic:
                    info["model"] = val
                elif key == "cpu MHz" and info["mhz"] is None:
                    info["mhz"] = float(val)
                elif key == "flags" and not info["flags"]:
                    info["flags"] = set(val.split())
                elif key == "cpu family":
                    info.setdefault("family", val)
                elif key == "model":
                    info.setdefault("cpu_model", val)
                elif key == "cache size":
                    info.setdefault("cache", val)
    except OSError:
        pass
    return info


def command_line() -> str:
    """The command as typed from the repository root, for the header."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), REPO)
    return " ".join(["python3", script, shlex.join(sys.argv[1:])]).strip()


def header(versions: dict[str, str | None] | None = None, lines: list[str] | None = None,
           load_note: str = "") -> str:
    """The block atop every output: date, command, CPU, load, Python/NumPy/mfsgd (and
    the kernel variants), ``versions`` of other libraries, then ``lines``."""
    import mfsgd
    from mfsgd import _kernels, _sgd

    cpu = cpuinfo()
    flags = cpu["flags"]
    load = os.getloadavg()
    variants = [_sgd.isa_name(i) for i in _kernels.available()]
    out = [
        "# mfsgd benchmark results",
        "",
        f"- Date: {dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- Command (from the repository root): `{command_line()}`",
        f"- CPU: {cpu['model']} (family {cpu.get('family', '?')} model "
        f"{cpu.get('cpu_model', '?')}), {cpu.get('mhz') or 0:.0f} MHz, {os.cpu_count()} "
        f"logical CPUs; avx2: {'yes' if 'avx2' in flags else 'no'}, fma: "
        f"{'yes' if 'fma' in flags else 'no'}, avx512f: {'yes' if 'avx512f' in flags else 'no'}; "
        f"L2 {cpu.get('cache', '?')} per core (cpuinfo)",
        f"- Load average at start (1/5/15 min): {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}"
        + (f" ({load_note})" if load_note else ""),
        f"- Python {platform.python_version()}, NumPy {np.__version__}, mfsgd {mfsgd.__version__} "
        f"(kernel {_sgd.isa_name(_sgd.isa_current())}; variants {', '.join(variants)})"
        + "".join(f", {k} {v}" for k, v in (versions or {}).items() if v),
        *(lines or []),
        "",
    ]
    return "\n".join(out)


def load_line() -> str:
    """First line of each section: the machine is shared, so its load is part of the result."""
    return f"Load average when this section started: {os.getloadavg()[0]:.2f}."


# ============================================================================ options
class Parser(argparse.ArgumentParser):
    """argparse with the options the bench scripts share, and options whose default
    depends on ``--quick`` (a smoke run: the smallest sizes and one repeat).

    The whole module docstring is the help text. Abbreviations are off: run.py hands one
    namespace to several sections, and ``--plot`` must never be read as
    ``--plot-convergence``."""

    def __init__(self, doc: str):
        super().__init__(description=doc, allow_abbrev=False,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
        self._sized: dict[str, tuple[Any, Any]] = {}

    def add_sized(self, *flags: str, full: Any, quick: Any, help: str, **kw: Any) -> None:
        """An option whose default is ``full``, or ``quick`` under --quick."""
        action = self.add_argument(
            *flags, default=None, help=f"{help} (default {_show(full)}; {_show(quick)} with "
                                       "--quick)", **kw)
        self._sized[action.dest] = (full, quick)

    def add_synthetic(self, full: int = 20_000_000, quick: int = 100_000) -> None:
        """--ratings, --users, --items of one synthetic set (see ``synthetic_dims``)."""
        self.add_sized("--ratings", type=int, full=full, quick=quick, metavar="N",
                       help="ratings in the synthetic set")
        for flag, n in (("--users", 200_000), ("--items", 20_000)):
            self.add_argument(flag, type=int, default=None, metavar="N",
                              help=f"{flag[2:]} (default: the shared rule, {n:,} for 20 M "
                                   "ratings; see size_dims)")

    def add_quick(self, what: str) -> None:
        self.add_argument("--quick", action="store_true", help=f"smoke run: {what}")

    def add_data(self) -> None:
        self.add_argument("--data", default=DEFAULT_DATA, metavar="DIR",
                          help="unpacked MovieLens 100K folder with u1.base .. u5.test "
                               "(default %(default)s)")

    def add_repeats(self, full: int, quick: int | None = None, what: str = "timed runs") -> None:
        if quick is None:
            self.add_argument("--repeats", type=int, default=full, metavar="N",
                              help=f"{what}; the median is reported (default %(default)s)")
        else:
            self.add_sized("--repeats", type=int, full=full, quick=quick, metavar="N",
                           help=f"{what}; the median is reported")

    def add_threads(self, default: int | list[int]) -> None:
        """One thread count (an int default) or several (a list default: one row each)."""
        if isinstance(default, list):
            self.add_argument("--threads", type=int, nargs="+", default=default, metavar="N",
                              help=f"thread counts, one row each (default {_show(default)})")
        else:
            self.add_argument("--threads", type=int, default=default, metavar="N",
                              help="n_threads of the fits (default %(default)s)")

    def add_plot(self, flag: str, name: str) -> None:
        """Where a section's PNG goes (see ``figure_path``)."""
        self.add_argument(flag, default=None, metavar="FILE.png",
                          help=f"where the plot goes (default: {name} next to --out; no plot "
                               "without either)")

    def add_out(self, note: str = "") -> None:
        """--out FILE.md, None when not given; ``note`` goes into the help."""
        self.add_argument("--out", default=None, metavar="FILE.md",
                          help="also write the markdown there" + (f" ({note})" if note else ""))

    def add_cache(self) -> None:
        self.add_argument("--cache", default=DEFAULT_CACHE, metavar="DIR",
                          help="folder of the cached synthetic sets and LibMF text files "
                               "(default $MFSGD_BENCH_CACHE or %(default)s)")

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:
        ns = super().parse_args(args, namespace)
        for dest, (full, quick) in self._sized.items():
            if getattr(ns, dest) is None:
                setattr(ns, dest, quick if getattr(ns, "quick", False) else full)
        return ns


def _show(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def run_alone(ap: Parser, section: Callable[[Report, argparse.Namespace], Any]) -> None:
    """``main`` of a section without anchor libraries: header, the section, --out."""
    args = ap.parse_args()
    rep = Report(args.out)
    rep.add(header())
    section(rep, args)
    rep.write()
