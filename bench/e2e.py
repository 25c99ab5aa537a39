"""End to end: a ratings file to a saved model, mfsgd against LibMF's command line.

    python bench/e2e.py --libmf-cli PATH/mf-train [--sizes 1M 20M 100M]
                        [--formats csv tsv space] [--k 64] [--epochs 20] [--threads 1 2]
                        [--repeat N] [--data-dir /tmp/mfsgd-e2e] [--quick]

Data: synthetic ratings written by this script into --data-dir (default /tmp/mfsgd-e2e,
never the repository), one set per size with the users x items of every bench script
(``_common.size_dims``: 20 M = 200,000 x 20,000, 100 M = 1,000,000 x 100,000), in three
formats with the same lines in the same order: ``csv`` (``user,item,rating`` header, commas),
``tsv`` (tabs, no header, like MovieLens 100K's u.data) and ``space`` (``user item rating``,
0-based ids: LibMF's text format). Generation is deterministic (seed 0) and lean: users are
taken in blocks of about a million ratings, each user's number of ratings follows a power
law (capped at a quarter of the items) and its items are distinct, drawn from a Zipf-like
popularity; the rating is ``3.5 + b_u + b_i + p_u . q_i`` (rank 10) + N(0, 0.5) noise,
rounded to half stars in [1, 5] and written as ``4.5`` / ``3.0``. Lines are grouped by
block of users (like a file sorted by user) and shuffled inside each block. Each block is
formatted with NumPy and appended to the files, so generation holds one block at a time. A
file that exists is reused.

Runs, each command under ``/usr/bin/time -v`` (wall clock and maximum resident set size of
the process; the file is read once beforehand, so every run starts from the page cache):

- ``LibMF``: ``mf-train -k K -t EPOCHS -r 0.1 -l2 0.02 -s THREADS FILE MODEL`` on the space
  file (verbose, for its last ``tr_rmse``). LibMF has no biases and adapts its step per
  coordinate; eta 0.1 is its default, L2 0.02 is mfsgd's default reg (its own default, 0.1,
  is not used).
- ``mfsgd CLI``: ``mfsgd train FILE -o MODEL --factors K --epochs EPOCHS --threads THREADS
  --json`` on each format (mfsgd's defaults otherwise: lr 0.005, reg 0.02, biased; the
  separator and header are detected), train RMSE and fit seconds from its JSON line.
- ``Python``: a fresh interpreter running ``load_csv(FILE, as_frame=False)``, then
  ``MatrixFactorization(n_factors=K, n_epochs=EPOCHS, n_threads=THREADS,
  random_state=0).fit`` and ``save``; it also reports each stage's seconds and its
  resident memory (VmRSS, VmHWM) after each stage (second table). On the formats of
  ``--python-formats`` (default csv).

Every (size, threads) group runs its commands round robin, ``--repeat`` times (default 3,
1 for sets of 100 M ratings or more); a row shows the fastest wall time, and the largest
peak RSS, of its runs. Ratios are to LibMF's row of the same size and thread count. The
default thread count is 1, plus 2 for sets of 100 M ratings or more.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from _common import Parser, Report, header, md_table, progress, size_dims
from libs import ITER_RE, cli_version

from mfsgd.datasets import _cap_weights  # the weights make_ratings caps too

SEED = 0
RANK, NOISE = 10, 0.5
BLOCK = 1 << 20  # ratings generated, formatted and written at a time
FORMATS = {"csv": (".csv", b",", b"user,item,rating\n"), "tsv": (".tsv", b"\t", b""),
           "space": (".txt", b" ", b"")}
LIBMF, CLI, PY = "LibMF mf-train", "mfsgd train (CLI)", "Python load_csv+fit+save"
TIME = "/usr/bin/time"
GIB = 2**30

# The Python path, in a fresh interpreter: argv = file, model, k, epochs, threads.
PY_PATH = r"""
import json, sys, time
t0 = time.perf_counter()

def mem():
    with open("/proc/self/status") as f:
        d = {ln.split(":")[0]: int(ln.split()[1]) for ln in f if ln.startswith(("VmRSS", "VmHWM"))}
    return d["VmRSS"], d["VmHWM"]

import mfsgd
from mfsgd.datasets import load_csv

path, model_path, k, epochs, threads = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
out = {"import_s": time.perf_counter() - t0, "import_kib": mem()}
t = time.perf_counter()
u, i, r = load_csv(path, as_frame=False)
out["load_s"], out["load_kib"] = time.perf_counter() - t, mem()
out["dtypes"] = [str(a.dtype) for a in (u, i, r)]
model = mfsgd.MatrixFactorization(n_factors=k, n_epochs=epochs, n_threads=threads,
                                  random_state=0)
t = time.perf_counter()
model.fit((u, i, r))
out["fit_s"], out["fit_kib"] = time.perf_counter() - t, mem()
t = time.perf_counter()
model.save(model_path)
out["save_s"], out["save_kib"] = time.perf_counter() - t, mem()
out["train_rmse"] = model.history_[-1]["train_rmse"]
print(json.dumps(out))
"""


# ============================================================================ data
def parse_size(text: str) -> int:
    """'1M', '20m', '500k', '2.5M' or a plain count."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([kKmMgG]?)\s*", text)
    if not m:
        raise ValueError(f"not a size: {text!r}")
    mult = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}[m.group(2).lower()]
    return int(round(float(m.group(1)) * mult))


def size_label(n: int) -> str:
    for mult, suffix in ((10**9, "G"), (10**6, "M"), (10**3, "k")):
        if n >= mult and n % (mult // 10) == 0:
            return f"{n / mult:g}{suffix}"
    return str(n)


def data_path(data_dir: str, n: int, fmt: str) -> str:
    users, items = size_dims(n)
    return os.path.join(data_dir, f"ratings_{size_label(n)}_{users}x{items}_seed{SEED}"
                                  f"{FORMATS[fmt][0]}")


def _power_weights(n: int, exponent: float, offset: float, rng: np.random.Generator):
    w = 1.0 / (np.arange(n, dtype=np.float64) + offset) ** exponent
    rng.shuffle(w)
    return w / w.sum()


def _degrees(w: np.ndarray, n: int) -> np.ndarray:
    """Integer counts summing to n, proportional to w (largest remainders)."""
    x = w * n
    d = np.floor(x).astype(np.int64)
    rest = n - int(d.sum())
    if rest > 0:
        d[np.argpartition(-(x - d), rest - 1)[:rest]] += 1
    return d


def _block_keys(lo: int, du: np.ndarray, n_items: int, item_cdf: np.ndarray,
                rng: np.random.Generator) -> np.ndarray:
    """Keys user * n_items + item of users lo .. lo + len(du) - 1, du[j] distinct items
    each; items drawn from item_cdf (uniformly once that stalls). Each round draws the
    missing items of the users still short of their count, and only theirs."""
    ids = np.arange(lo, lo + len(du), dtype=np.int64)[du > 0]
    want = du[du > 0].astype(np.int64)
    need = want.copy()
    have = np.empty(0, dtype=np.int64)  # keys of the users in ids, grouped by user
    done: list[np.ndarray] = []
    for rnd in range(200):
        if not ids.size:
            break
        m = need + need // 4 + 1
        users = np.repeat(ids, m)
        if rnd < 30:
            items = np.minimum(np.searchsorted(item_cdf, rng.random(users.size)), n_items - 1)
        else:  # the heaviest users of a very skewed set: top up uniformly
            items = rng.integers(0, n_items, size=users.size)
        cand = np.concatenate([have, users * n_items + items])
        _, first = np.unique(cand, return_index=True)
        distinct = cand[np.sort(first)]  # in order of first appearance: kept ones first
        pos = np.searchsorted(ids, distinct // n_items)
        order = np.argsort(pos, kind="stable")
        pos = pos[order]
        counts = np.bincount(pos, minlength=ids.size)
        start = np.concatenate([[0], np.cumsum(counts)[:-1]])
        keep = np.arange(pos.size) - start[pos] < want[pos]
        have, pos = distinct[order][keep], pos[keep]
        need = want - np.minimum(counts, want)
        full = need == 0
        done.append(have[full[pos]])
        have = have[~full[pos]]
        ids, want, need = ids[~full], want[~full], need[~full]
    if ids.size:
        raise RuntimeError("could not draw enough distinct items")
    return np.concatenate(done)


def _encode(cols: list[np.ndarray], widths: list[int], seps: list[bytes]) -> tuple:
    """Rows of non-negative integer columns as text: a (rows, width) byte matrix and the
    mask of its characters (leading zeros dropped). ``seps[j]`` follows column j; a column
    whose width is negative is a rating in tenths, written ``d.d``."""
    n = cols[0].size
    total = sum(abs(w) + (2 if w < 0 else 0) for w in widths) + len(seps)
    buf = np.empty((n, total), dtype=np.uint8)
    keep = np.ones((n, total), dtype=bool)
    sep_cols, c = [], 0
    for v, w in zip(cols, widths, strict=True):
        if w < 0:  # tenths 10 .. 50 -> "1.0" .. "5.0"
            buf[:, c] = 48 + v // 10
            buf[:, c + 1] = ord(".")
            buf[:, c + 2] = 48 + v % 10
            c += 3
        else:
            for p in range(w):
                pw = 10 ** (w - 1 - p)
                buf[:, c] = 48 + (v // pw) % 10
                if pw > 1:
                    keep[:, c] = v >= pw
                c += 1
        sep_cols.append(c)
        c += 1
    for col, s in zip(sep_cols, seps, strict=True):
        buf[:, col] = s[0]
    return buf, keep, sep_cols


def write_files(n: int, fmts: list[str], data_dir: str) -> None:
    """Write the set of n ratings in the formats of ``fmts`` that are not on disk yet."""
    paths = {f: data_path(data_dir, n, f) for f in fmts}
    todo = [f for f, p in paths.items() if not os.path.exists(p)]
    if not todo:
        return
    os.makedirs(data_dir, exist_ok=True)
    n_users, n_items = size_dims(n)
    t0 = time.perf_counter()
    rng = np.random.default_rng(SEED)
    du = _degrees(_cap_weights(_power_weights(n_users, 0.8, 5.0, rng), n, 0.25 * n_items), n)
    item_cdf = np.cumsum(_cap_weights(_power_weights(n_items, 1.0, 1.0, rng), n, 0.25 * n_users))
    scale = 0.8 / RANK**0.25
    P = rng.normal(0.0, scale, size=(n_users, RANK)).astype(np.float32)
    Q = rng.normal(0.0, scale, size=(n_items, RANK)).astype(np.float32)
    bu = rng.normal(0.0, 0.3, size=n_users).astype(np.float32)
    bi = rng.normal(0.0, 0.5, size=n_items).astype(np.float32)
    widths = [len(str(n_users - 1)), len(str(n_items - 1)), -1]
    # user blocks of about BLOCK ratings
    ends = np.searchsorted(np.cumsum(du), np.arange(BLOCK, n, BLOCK), side="left") + 1
    bounds = np.unique(np.concatenate([[0], ends, [n_users]]))
    files = {f: open(paths[f] + ".part", "wb") for f in todo}
    try:
        for f in todo:
            files[f].write(FORMATS[f][2])
        for b, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            brng = np.random.default_rng([SEED, b])
            keys = _block_keys(int(lo), du[lo:hi], n_items, item_cdf, brng)
            keys = keys[brng.permutation(keys.size)]
            u = (keys // n_items).astype(np.int32)
            i = (keys % n_items).astype(np.int32)
            del keys
            r = (3.5 + bu[u] + bi[i] + np.einsum("ij,ij->i", P[u], Q[i])
                 + brng.normal(0.0, NOISE, size=u.size).astype(np.float32))
            tenths = (np.clip(np.round(r * 2.0), 2, 10) * 5).astype(np.int32)
            buf, keep, sep_cols = _encode([u, i, tenths], widths, [b",", b",", b"\n"])
            for f in todo:
                s = FORMATS[f][1][0]
                buf[:, sep_cols[0]] = s
                buf[:, sep_cols[1]] = s
                files[f].write(buf[keep].tobytes())
        for f in todo:
            files[f].close()
            os.replace(paths[f] + ".part", paths[f])
    finally:
        for fh in files.values():
            fh.close()
        for f in todo:
            if os.path.exists(paths[f] + ".part"):
                os.remove(paths[f] + ".part")
    progress(f"wrote {n:,} ratings ({n_users:,} users x {n_items:,} items) as "
             f"{', '.join(todo)} in {time.perf_counter() - t0:.1f} s")


def warm(path: str) -> None:
    """Read the file once, so that every run finds it in the page cache."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


# ============================================================================ runs
def _field(text: str, name: str) -> str:
    m = re.search(rf"^\s*{re.escape(name)}: (.*)$", text, re.M)
    if not m:
        raise RuntimeError(f"/usr/bin/time -v printed no {name!r}")
    return m.group(1).strip()


def _clock(text: str) -> float:
    secs = 0.0
    for part in text.split(":"):
        secs = secs * 60 + float(part)
    return secs


def timed_cmd(cmd: list[str]) -> dict:
    """Run cmd under /usr/bin/time -v: wall s, CPU s, peak RSS KiB, exit status, stdout."""
    with tempfile.NamedTemporaryFile("r", prefix="e2e-time-", suffix=".txt") as tf:
        p = subprocess.run([TIME, "-v", "-o", tf.name, *cmd], capture_output=True, text=True)
        rep = tf.read()
    if p.returncode != 0:
        why = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
        return {"error": why[:200]}
    return {"wall": _clock(_field(rep, "Elapsed (wall clock) time (h:mm:ss or m:ss)")),
            "cpu": float(_field(rep, "User time (seconds)"))
            + float(_field(rep, "System time (seconds)")),
            "rss_kib": int(_field(rep, "Maximum resident set size (kbytes)")),
            "stdout": p.stdout}


def mfsgd_command(given: str | None) -> list[str]:
    if given:
        return given.split()
    exe = shutil.which("mfsgd", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "mfsgd"]


def run_one(tool: str, path: str, model: str, args, threads: int) -> dict:
    k, ep = str(args.k), str(args.epochs)
    if tool == LIBMF:
        cmd = [args.libmf_cli, "-k", k, "-t", ep, "-r", "0.1", "-l2", "0.02", "-s",
               str(threads), path, model]
    elif tool == CLI:
        cmd = [*mfsgd_command(args.mfsgd), "train", path, "-o", model, "--factors", k,
               "--epochs", ep, "--threads", str(threads), "--json"]
    else:
        cmd = [sys.executable, "-c", PY_PATH, path, model, k, ep, str(threads)]
    res = timed_cmd(cmd)
    if os.path.exists(model):
        res["model_bytes"] = os.path.getsize(model)
        os.remove(model)
    if "error" in res:
        return res
    out = res.pop("stdout")
    if tool == LIBMF:
        its = [ln.split() for ln in out.splitlines() if ITER_RE.match(ln)]
        res["rmse"] = float(its[-1][1]) if its else None
    else:
        info = json.loads(out.strip().splitlines()[-1])
        res["rmse"] = info.get("train_rmse")
        res["fit"] = info.get("seconds", info.get("fit_s"))
        if tool == PY:
            res["stages"] = info
    return res


def best(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[-1]
    out = dict(min(ok, key=lambda r: r["wall"]))
    out["rss_kib"] = max(r["rss_kib"] for r in ok)
    out["n"] = len(ok)
    return out


def run_group(n: int, threads: int, args, jobs: list[tuple[str, str]], work: str) -> dict:
    """Round robin over jobs (tool, format), args.repeat times; best per job."""
    repeat = args.repeat or (1 if n >= 100_000_000 else 3)
    runs: dict[tuple[str, str], list[dict]] = {j: [] for j in jobs}
    for rep in range(repeat):
        for tool, fmt in jobs:
            model = os.path.join(work, "model.txt" if tool == LIBMF else "model.mfsgd")
            res = run_one(tool, data_path(args.data_dir, n, fmt), model, args, threads)
            runs[(tool, fmt)].append(res)
            what = (f"error: {res['error']}" if "error" in res else
                    f"{res['wall']:.1f} s, {res['rss_kib'] / 2**20:.2f} GiB, "
                    f"rmse {res.get('rmse')}")
            progress(f"  [{rep + 1}/{repeat}] {size_label(n)} {fmt} {tool} {threads}t "
                     f"(load {os.getloadavg()[0]:.2f}): {what}")
    return {j: best(r) for j, r in runs.items()}


# ============================================================================ report
def _f(x, fmt: str) -> str:
    return "" if x is None else format(x, fmt)


def main() -> None:
    ap = parser()
    args = ap.parse_args()
    if args.quick:
        args.sizes = args.sizes or ["1M"]
        args.epochs = args.epochs or 2
        args.repeat = args.repeat or 1
    args.sizes = [parse_size(s) for s in (args.sizes or ["1M", "20M", "100M"])]
    args.epochs = args.epochs or 20
    if args.libmf_cli and not os.access(args.libmf_cli, os.X_OK):
        sys.exit(f"--libmf-cli {args.libmf_cli}: not an executable file")
    if not os.access(TIME, os.X_OK):
        sys.exit(f"{TIME} is missing (Debian/Ubuntu: apt-get install time)")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.abspath(args.data_dir).startswith(repo + os.sep):
        sys.exit(f"--data-dir {args.data_dir}: inside the repository; use a scratch folder")
    fmts = list(dict.fromkeys(args.formats))
    need = set(fmts) | set(args.python_formats) | ({"space"} if args.libmf_cli else set())

    rep = Report(args.out)
    libmf = (f"- LibMF CLI: {args.libmf_cli} ({cli_version(args.libmf_cli)})" if args.libmf_cli
             else "- LibMF CLI: not given (--libmf-cli), its rows are skipped")
    rep.add(header(lines=[
        libmf,
        f"- mfsgd CLI: `{' '.join(mfsgd_command(args.mfsgd))}`; data in {args.data_dir}",
        f"- k {args.k}, {args.epochs} epochs; sizes "
        f"{', '.join(size_label(n) for n in args.sizes)}; formats {', '.join(fmts)}; "
        f"Python path on {', '.join(args.python_formats) or 'none'}"]))
    rep.add("## End to end: ratings file to saved model\n")
    rep.add("Wall time and peak RSS (maximum resident set size) from `/usr/bin/time -v`, "
            "fastest wall of the repeats and the largest RSS; the file is in the page cache. "
            "LibMF: `mf-train -k K -t EPOCHS -r 0.1 -l2 0.02 -s T` on its space-separated "
            "text file (no biases, adaptive steps); mfsgd: its defaults (lr 0.005, reg 0.02, "
            "biased). Own fit s: the fit time mfsgd reports (its JSON `seconds`, the Python "
            "path's `fit`); wall - fit is start-up, load and save. Train RMSE: the last "
            "epoch's, as each tool prints it (accumulated during the pass). CPU s (user + system) "
            "is less sensitive than wall time to other jobs on a shared machine.\n")
    rows, stages, results = [], [], {}
    with tempfile.TemporaryDirectory(prefix="work-", dir=_mkdir(args.data_dir)) as work:
        for n in args.sizes:
            write_files(n, sorted(need), args.data_dir)
            for f in sorted(need):
                warm(data_path(args.data_dir, n, f))
            thread_list = args.threads or ([1, 2] if n >= 100_000_000 else [1])
            for t in thread_list:
                jobs = [(CLI, f) for f in fmts] + [(PY, f) for f in args.python_formats]
                if args.libmf_cli:
                    jobs.insert(0, (LIBMF, "space"))
                load = os.getloadavg()[0]
                progress(f"{size_label(n)}, {t} thread(s), load {load:.2f}")
                res = run_group(n, t, args, jobs, work)
                results[(n, t)] = res
                ref = res.get((LIBMF, "space"))
                if ref is not None and "error" in ref:
                    ref = None
                for (tool, fmt), r in res.items():
                    if "error" in r:
                        rows.append([size_label(n), fmt, tool, t, f"failed: {r['error']}",
                                     *[""] * 8])
                        continue
                    wr = cr = rr = ""
                    if ref is not None:
                        wr = f"{r['wall'] / ref['wall']:.2f}"
                        cr = f"{r['cpu'] / ref['cpu']:.2f}"
                        rr = f"{r['rss_kib'] / ref['rss_kib']:.2f}"
                    rows.append([size_label(n), fmt, tool, t, f"{r['wall']:.1f}",
                                 f"{r['cpu']:.1f}", f"{r['rss_kib'] / 2**20:.2f}", wr, cr, rr,
                                 _f(r.get("fit"), ".2f"), _f(r.get("rmse"), ".4f"),
                                 f"{r['n']}; load {load:.2f}"])
                    if tool == PY:
                        s = r["stages"]
                        stages.append([size_label(n), fmt, t, f"{s['import_s']:.1f}",
                                       f"{s['load_s']:.1f}", f"{s['fit_s']:.1f}",
                                       f"{s['save_s']:.1f}",
                                       *(f"{s[k][0] / 2**20:.2f} / {s[k][1] / 2**20:.2f}"
                                         for k in ("import_kib", "load_kib", "fit_kib",
                                                   "save_kib")),
                                       "/".join(d.replace("int", "i").replace("float", "f")
                                                for d in s["dtypes"])])
                rep.add(md_table(["size", "format", "tool", "threads", "wall s", "CPU s",
                                  "peak RSS GiB", "wall / LibMF", "CPU / LibMF", "RSS / LibMF",
                                  "own fit s", "train RMSE", "runs; load"], rows))
                rep.add("")
                rows = []
    targets(rep, results, args)
    if stages:
        rep.add("Python path stage by stage (same process as its row above; memory is "
                "VmRSS / VmHWM after the stage, GiB):\n")
        rep.add(md_table(["size", "format", "threads", "import s", "load_csv s", "fit s",
                          "save s", "after import", "after load", "after fit", "after save",
                          "dtypes u/i/r"], stages))
        rep.add("")
    rep.write()


def targets(rep: Report, results: dict, args) -> None:
    """Issue 15's targets, for the groups this run measured: mfsgd's CLI at most 0.5x
    LibMF's wall time on the space file and on CSV, at most 2x its peak RSS (20 M, k=64,
    20 epochs, 1 thread), and below 2.5 GiB from CSV at 100 M on 2 threads."""
    lines = []
    for (n, t), res in results.items():
        ref = res.get((LIBMF, "space"))
        if n != 20_000_000 or t != 1 or ref is None or "error" in ref:
            continue
        parts = []
        for fmt in ("space", "csv", "tsv"):
            r = res.get((CLI, fmt))
            if r is None or "error" in r:
                continue
            w, c, m = (r["wall"] / ref["wall"], r["cpu"] / ref["cpu"],
                       r["rss_kib"] / ref["rss_kib"])
            parts.append(f"{fmt}: wall {w:.2f}x ({'met' if w <= 0.5 else 'not met'}), CPU "
                         f"{c:.2f}x, RSS {m:.2f}x ({'met' if m <= 2 else 'not met'})")
        if parts:
            lines.append(f"- {size_label(n)}, {t} thread(s), mfsgd train / LibMF: "
                         + "; ".join(parts))
    for (n, t), res in results.items():
        r = res.get((CLI, "csv"))
        if n >= 100_000_000 and t == 2 and r is not None and "error" not in r:
            g = r["rss_kib"] / 2**20
            lines.append(f"- {size_label(n)} from CSV on 2 threads: peak RSS {g:.2f} GiB "
                         f"({'met' if g < 2.5 else 'not met'}: < 2.5 GiB)")
    if lines:
        setting = "" if (args.k, args.epochs) == (64, 20) else (
            f" (this run: k={args.k}, {args.epochs} epochs; the targets are for k=64, 20)")
        rep.add("Targets (wall <= 0.5x and RSS <= 2x LibMF's at 20 M, k=64, 20 epochs, 1 "
                f"thread; < 2.5 GiB at 100 M from CSV on 2 threads){setting}:\n")
        rep.add("\n".join(lines) + "\n")


def _mkdir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def parser() -> Parser:
    ap = Parser(__doc__)
    ap.add_argument("--sizes", nargs="+", default=None, metavar="N",
                    help="numbers of ratings, e.g. 1M 20M 100M (default; 1M with --quick)")
    ap.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS),
                    help="formats mfsgd's CLI reads, one row each (default: all)")
    ap.add_argument("--python-formats", nargs="*", default=["csv"], choices=list(FORMATS),
                    help="formats of the Python path rows (default csv; none: no row)")
    ap.add_argument("--libmf-cli", "--libmf", dest="libmf_cli", default=None,
                    metavar="PATH/mf-train",
                    help="LibMF's mf-train; without it the LibMF rows and ratios are skipped")
    ap.add_argument("--mfsgd", default=None, metavar="CMD",
                    help="mfsgd's command line (default: the mfsgd script next to this "
                         "Python, else python -m mfsgd)")
    ap.add_argument("--k", type=int, default=64, help="factors (default %(default)s)")
    ap.add_argument("--epochs", type=int, default=None,
                    help="epochs (default 20; 2 with --quick)")
    ap.add_argument("--threads", type=int, nargs="+", default=None, metavar="N",
                    help="thread counts, a row group each (default 1, and 2 for 100 M or more)")
    ap.add_argument("--repeat", type=int, default=None, metavar="N",
                    help="runs of each command, round robin; the fastest is shown (default 3, "
                         "1 for 100 M or more; 1 with --quick)")
    ap.add_argument("--data-dir", default="/tmp/mfsgd-e2e", metavar="DIR",
                    help="where the rating files are written and reused (default %(default)s)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1M, 2 epochs, 1 repeat")
    ap.add_out()
    return ap


if __name__ == "__main__":
    main()
