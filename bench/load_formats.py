"""Load time and peak memory of ``mfsgd.datasets.load_csv`` for each common separator.

    python bench/load_formats.py [--n 20000000 [N ...]] [--dir DIR] [--repeats 3]
                                 [--formats csv tsv ssv ...] [--parquet] [--pyarrow]
                                 [--reference]

Writes the same N ratings (``make_ratings``, ratings rounded to half stars, one line
``user<sep>item<sep>rating`` each) as comma-, tab-, semicolon-, single-space- and
"::"-separated files, plus a file whose fields are separated by runs of spaces and tabs of
varying length (with blanks at some line starts and ends), into --dir (default: a
temporary folder, deleted afterwards). Each file is then loaded by
``load_csv(path, columns=[0, 1, 2], as_frame=False)`` -- separator detected -- in a fresh
Python process per repeat, so that the peak resident memory (the child's VmHWM, else its
``ru_maxrss``) belongs to that format alone; repeats go round robin over the formats.
Prints a markdown table of medians: file size, load seconds (wall), ratio to the CSV time,
CPU seconds (user + system, less sensitive to a busy machine) and their ratio, peak RSS;
the header line names the machine and the versions. The children check that every format
gives the same arrays.

``--reference`` adds a row for the CSV read the way load_csv did before (pandas'
``read_csv(engine="pyarrow")``), for comparison in the same run. ``--pyarrow`` adds a row
per comma-, tab- and single-space-separated file read by ``pyarrow.csv.read_csv`` itself
(int32/float32 column types, its default threads): the engine load_csv would use if it
were leaner or faster here. ``--parquet`` writes the ratings as Parquet too (int32,
int32, float32 columns) and adds a row for ``load_ratings`` on it. Several ``--n`` give
one table each and then a table of how the peak grows with the number of ratings
(bytes per rating above the interpreter's own memory).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile

import numpy as np

FORMATS = [  # (name, file name, how the fields are separated); --formats picks by extension
    ("CSV ','", "ratings.csv", ","),
    ("TSV '\\t'", "ratings.tsv", "\t"),
    ("semicolon ';'", "ratings.scsv", ";"),
    ("single spaces ' '", "ratings.ssv", " "),
    ("runs of spaces/tabs", "ratings.ws", None),
    ("'::' (MovieLens 1M/10M)", "ratings.dat", "::"),
]
_RUN_SEPS = [b" ", b"  ", b"\t", b" \t", b"   ", b"\t\t"]  # between fields
_RUN_ENDS = [b"\n", b"\n", b" \n", b"\n  ", b"\t\n", b"\n\t"]  # blanks around line ends
CHUNK = 1 << 20  # rows written at a time

# Peak memory: VmHWM of the child's own address space. ru_maxrss would do on a plain fork,
# but Linux carries the parent's high-water mark into a child started with vfork + exec
# (as subprocess does), so the generator's memory showed up in every row.
CHILD = r"""
import json, resource, sys, time
import numpy as np
import pandas  # imported before timing: a first load_csv call pays it once
import mfsgd.datasets as D

def peak_kib():
    try:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

path, how = sys.argv[1], sys.argv[2]
base = peak_kib()
c0 = time.process_time()
t0 = time.perf_counter()
if how == "load_csv":
    u, i, r = D.load_csv(path, columns=[0, 1, 2], as_frame=False)
elif how == "parquet":
    u, i, r = D.load_ratings(path, as_frame=False)
elif how.startswith("pyarrow"):  # pyarrow's own CSV reader, straight to the kernel's dtypes
    import pyarrow as pa, pyarrow.csv as pc
    t = pc.read_csv(path, read_options=pc.ReadOptions(autogenerate_column_names=True),
                    parse_options=pc.ParseOptions(delimiter=how.split(":", 1)[1]),
                    convert_options=pc.ConvertOptions(column_types={
                        "f0": pa.int32(), "f1": pa.int32(), "f2": pa.float32()}))
    u, i, r = (t.column(k).to_numpy() for k in range(3))
    del t
else:  # the previous load_csv: pandas with pyarrow's parser
    df = pandas.read_csv(path, engine="pyarrow", sep=",", header=None, usecols=[0, 1, 2])
    u, i = df[0].to_numpy(), df[1].to_numpy()
    r = df[2].to_numpy(dtype=np.float64).astype(np.float32)
secs = time.perf_counter() - t0
cpu = time.process_time() - c0
peak = peak_kib()
print(json.dumps({"seconds": secs, "cpu": cpu, "peak_kib": peak, "base_kib": base, "n": int(len(r)),
                  "check": [int(u.sum()), int(i.sum()), float(r.astype(np.float64).sum())],
                  "dtypes": [str(u.dtype), str(i.dtype), str(r.dtype)]}))
"""


def _ascii_ints(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative ints as right-aligned ASCII digits: an (n, width) uint8 matrix with 0
    for the unused leading positions, and the lengths."""
    width = max(1, len(str(int(x.max())))) if x.size else 1
    out = np.zeros((x.size, width), dtype=np.uint8)
    v = x.astype(np.int64).copy()
    lens = np.ones(x.size, dtype=np.int64)
    for k in range(width - 1, -1, -1):
        out[:, k] = 48 + v % 10
        v //= 10
        if k:
            lens += v > 0
    mask = np.arange(width) >= (width - lens)[:, None]
    out[~mask] = 0
    return out, lens


def _csv_lines(u: np.ndarray, i: np.ndarray, r: np.ndarray) -> bytes:
    """``user,item,rating\\n`` lines as bytes, built without a Python loop per row."""
    ud, _ = _ascii_ints(u)
    idg, _ = _ascii_ints(i)
    halves = np.clip(np.rint(r * 2), 1, 10).astype(np.int64)  # 0.5 .. 5.0 stars
    rd = np.zeros((r.size, 3), dtype=np.uint8)
    rd[:, 0] = 48 + halves // 2
    rd[:, 1] = ord(".")
    rd[:, 2] = 48 + 5 * (halves % 2)
    comma = np.full((r.size, 1), ord(","), dtype=np.uint8)
    nl = np.full((r.size, 1), ord("\n"), dtype=np.uint8)
    mat = np.hstack([ud, comma, idg, comma, rd, nl])
    return mat[mat != 0].tobytes()


def _expand(chunk: bytes, byte: int, choices: list[bytes], rng: np.random.Generator) -> bytes:
    """Replace every ``byte`` in chunk by one of ``choices``, drawn at random."""
    a = np.frombuffer(chunk, dtype=np.uint8)
    where = np.flatnonzero(a == byte)
    pick = rng.integers(0, len(choices), size=where.size)
    lens = np.array([len(c) for c in choices])[pick]
    counts = np.ones(a.size, dtype=np.int64)
    counts[where] = lens
    out = np.repeat(a, counts)
    start = (np.cumsum(counts) - counts)[where]
    width = max(len(c) for c in choices)
    table = np.zeros((len(choices), width), dtype=np.uint8)
    for k, c in enumerate(choices):
        table[k, :len(c)] = np.frombuffer(c, dtype=np.uint8)
    for j in range(width):
        ok = lens > j
        out[start[ok] + j] = table[pick[ok], j]
    return out.tobytes()


def write_files(folder: str, n: int, seed: int = 0, formats: list | None = None,
                parquet: bool = False) -> dict[str, str]:
    from mfsgd.datasets import make_ratings

    n_users, n_items = (200_000, 20_000) if n == 20_000_000 else (max(n // 100, 100),
                                                                    max(n // 1000, 1000))
    u, i, r = make_ratings(n_users, n_items, n, random_state=seed, as_frame=False)
    rng = np.random.default_rng(seed)
    chosen = [f for f in FORMATS if formats is None or f[1].rsplit(".", 1)[1] in formats]
    paths = {name: os.path.join(folder, fname) for name, fname, _ in chosen}
    files = {name: open(paths[name], "wb") for name in paths}  # noqa: SIM115
    try:
        for s in range(0, n, CHUNK):
            text = _csv_lines(u[s:s + CHUNK], i[s:s + CHUNK], r[s:s + CHUNK])
            for name, _, sep in chosen:
                if sep is None:
                    out = _expand(_expand(text, ord(","), _RUN_SEPS, rng), ord("\n"),
                                  _RUN_ENDS, rng)
                    if s == 0:
                        out = b"  " + out  # the very first line is indented too
                elif sep == ",":
                    out = text
                else:
                    out = text.replace(b",", sep.encode())
                files[name].write(out)
    finally:
        for f in files.values():
            f.close()
    if parquet:
        import pyarrow as pa
        import pyarrow.parquet as pq

        halves = np.clip(np.rint(r * 2), 1, 10).astype(np.float32) / 2  # as the text has it
        paths[PARQUET] = os.path.join(folder, "ratings.parquet")
        pq.write_table(pa.table({"user": u, "item": i, "rating": halves}), paths[PARQUET])
    return paths


PARQUET = "Parquet (load_ratings)"


def load_once(path: str, how: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, path, how], capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"loading {path} failed:\n{out.stderr}")
    return json.loads(out.stdout)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    versions = []
    for mod in ("numpy", "pandas", "pyarrow", "mfsgd"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except ImportError:
            versions.append(f"{mod} not installed")
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"Machine: {cpu}, {os.cpu_count()} cores ({usable} usable), load average {load}; "
            f"Python {platform.python_version()}, {', '.join(versions)}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[20_000_000],
                    help="ratings (default 20 M); several sizes: one table each")
    ap.add_argument("--dir", help="folder for the files (kept); default: a temporary one")
    ap.add_argument("--repeats", type=int, default=3, help="loads per format (median)")
    ap.add_argument("--formats", nargs="+", metavar="EXT",
                    help="only these text formats, by extension: csv tsv scsv ssv ws dat")
    ap.add_argument("--parquet", action="store_true", help="also a Parquet file")
    ap.add_argument("--pyarrow", action="store_true",
                    help="also pyarrow.csv.read_csv on the comma, tab and single-space files")
    ap.add_argument("--reference", action="store_true",
                    help="also time the previous CSV reader (pandas engine='pyarrow')")
    args = ap.parse_args(argv)
    print(machine(), flush=True)
    growth: dict[str, dict[int, tuple[float, float]]] = {}
    for n in args.n:
        folder = os.path.join(args.dir, f"n{n}") if args.dir else tempfile.mkdtemp(
            prefix="mfsgd-load-formats-")
        os.makedirs(folder, exist_ok=True)
        try:
            rows = run_size(args, n, folder)
        finally:
            if not args.dir:
                shutil.rmtree(folder, ignore_errors=True)
        for name, _, _, _, peak, base, _ in rows:
            growth.setdefault(name, {})[n] = (peak, base)
    if len(args.n) > 1:
        print("\nPeak RSS (GiB) by number of ratings, and bytes per rating above the "
              "interpreter's own (the peak minus the RSS before loading, over n).\n")
        print("| format | " + " | ".join(f"{n:,}" for n in args.n) + " | "
              + " | ".join(f"B/rating at {n:,}" for n in args.n) + " |")
        print("|---|" + "---:|" * (2 * len(args.n)))
        for name, by_n in growth.items():
            peaks = [f"{by_n[n][0]:.2f}" if n in by_n else "" for n in args.n]
            per = [f"{(by_n[n][0] - by_n[n][1]) * 2**30 / n:.1f}" if n in by_n else ""
                   for n in args.n]
            print(f"| {name} | " + " | ".join(peaks + per) + " |")


def run_size(args: argparse.Namespace, n: int, folder: str) -> list[tuple]:
    print(f"Writing {n:,} ratings to {folder} ...", file=sys.stderr, flush=True)
    paths = write_files(folder, n, formats=args.formats, parquet=args.parquet)
    runs = [(name, paths[name], "load_csv") for name, _, _ in FORMATS if name in paths]
    if args.pyarrow:
        runs += [(f"{name}, pyarrow.csv.read_csv", paths[name], f"pyarrow:{sep}")
                 for name, _, sep in FORMATS if name in paths and sep in (",", "\t", " ")]
    if args.parquet:
        runs.append((PARQUET, paths[PARQUET], "parquet"))
    if args.reference and FORMATS[0][0] in paths:
        runs.append(("CSV, previous reader (pandas engine='pyarrow')",
                     paths[FORMATS[0][0]], "reference"))
    # Round robin: each repeat loads every format once, so that a change in the
    # machine's load (it is shared) hits all formats alike.
    results: dict[str, list[dict]] = {name: [] for name, _, _ in runs}
    for rep in range(args.repeats):
        for name, path, how in runs:
            results[name].append(load_once(path, how))
            print(f"  repeat {rep + 1}, {name}: {results[name][-1]['seconds']:.2f} s",
                  file=sys.stderr, flush=True)
    rows, check = [], None
    for name, path, _ in runs:
        res = results[name]
        first = res[0]
        if first["n"] != n or (check is not None and first["check"] != check):
            raise RuntimeError(f"{name}: got other data ({first}) than {runs[0][0]} ({check})")
        check = check or first["check"]
        rows.append((name, os.path.getsize(path),
                     statistics.median(x["seconds"] for x in res),
                     statistics.median(x["cpu"] for x in res),
                     statistics.median(x["peak_kib"] for x in res) / 2**20,
                     first["base_kib"] / 2**20, "/".join(first["dtypes"])))
    csv_s, csv_cpu = rows[0][2], rows[0][3]
    print(f"\n{n:,} ratings; load_csv(path, columns=[0, 1, 2], as_frame=False), "
          f"separator detected; median of {args.repeats} fresh processes.\n")
    print(f"| format | file size | load s | ratio to {rows[0][0]} | CPU s | CPU ratio | "
          "peak RSS GiB | dtypes |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, size, secs, cpu, peak, _, dtypes in rows:
        print(f"| {name} | {size / 2**20:,.0f} MiB | {secs:.2f} | {secs / csv_s:.2f} | "
              f"{cpu:.2f} | {cpu / csv_cpu:.2f} | {peak:.2f} | {dtypes} |")
    print(f"\nPeak RSS includes the interpreter with numpy, pandas and mfsgd imported "
          f"({rows[0][5]:.2f} GiB before loading). All formats gave the same arrays.")
    return rows


if __name__ == "__main__":
    main()
