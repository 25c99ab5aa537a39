"""mfsgd against the installed anchor libraries, side by side in one run.

    python bench/run.py [--data ../shared/data/ml-100k] [--libmf-cli PATH/mf-train]
                        [--sizes 1000000 20000000] [--k 32 64 128] [--threads 1 2]
                        [--repeats 3] [--out bench/RESULTS.md] [--plot bench/rmse_vs_time.png]
                        [--quick] [--wait-for-load 1.0]

1. MovieLens 100K, five official folds u1..u5: RMSE, MAE, fit seconds of each library
   (a) at Surprise's SVD defaults and (b) at each library's best setting from a small grid
   chosen on a validation split carved out of u1.base.
2. Synthetic ratings (mfsgd.datasets.make_ratings): seconds per epoch, M rating-updates/s,
   peak RSS of mfsgd, % of a roofline bound measured on this machine.
3. Test RMSE against wall-clock seconds on u1 (PNG plot), time to reach RMSE thresholds.

Prints markdown tables and writes them to --out with a header describing the machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import libs  # noqa: E402
from throughput import get_data  # noqa: E402

import mfsgd  # noqa: E402
from mfsgd.model_selection import train_test_split  # noqa: E402

CACHE = os.environ.get("MFSGD_BENCH_CACHE", "/tmp/mfsgd-bench")
MFSGD, SURPRISE, CORNAC, CLI, PYLIBMF = "mfsgd", "Surprise", "Cornac", "LibMF CLI", "libmf (PyPI)"
LIBMF_FAMILY = (CLI, PYLIBMF)

# Surprise's SVD defaults; LibMF's closest: same k, iterations and L2, its own default eta
# (0.1), because its per-coordinate adaptive step makes 0.005 a different, much smaller rate.
SURPRISE_DEFAULTS = {"k": 100, "epochs": 20, "lr": 0.005, "reg": 0.02}
LIBMF_DEFAULTS = {"k": 100, "epochs": 20, "lr": 0.1, "reg": 0.02}
GRID = {"k": [16, 64, 100], "epochs": [10, 20, 40], "lr": [0.005, 0.01], "reg": [0.02, 0.05, 0.1]}
LIBMF_GRID = dict(GRID, lr=[0.05, 0.1])
QUICK_GRID = {"k": [16], "epochs": [10], "lr": [0.01], "reg": [0.02, 0.1]}
QUICK_LIBMF_GRID = dict(QUICK_GRID, lr=[0.1])
MFSGD_FAST = {"k": 16, "epochs": 10, "lr": 0.01, "reg": 0.02}
# Found on u1 by hand (README's parameters: lr_decay, init_std as small as Cornac's 0.01):
# indicative only, since it was picked looking at u1.test.
MFSGD_TUNED = {"k": 64, "epochs": 40, "lr": 0.015, "reg": 0.06, "reg_bias": 0.02,
               "lr_decay": 0.02, "init_std": 0.01}
SHARED = {"k": 64, "epochs": 60, "lr": 0.01, "reg": 0.1}  # same model & hyper-parameters
CURVE_EPOCHS = [1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 35, 40, 50, 60]
THRESHOLDS = [0.95, 0.94, 0.93, 0.92]


# ============================================================================ helpers
def md_table(headers: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def fmt_p(p: dict, lib: str) -> str:
    lr = "eta" if lib in LIBMF_FAMILY else "lr"
    s = f"k={p['k']}, {p['epochs']} ep, {lr} {p['lr']}, reg {p['reg']}"
    for key in ("reg_bias", "lr_decay", "init_std"):
        if key in p:
            s += f", {key} {p[key]}"
    if p.get("adagrad"):
        s += ", AdaGrad"
    return s


def grid_configs(grid: dict) -> list[dict]:
    import itertools
    keys = list(grid)
    return [dict(zip(keys, v)) for v in itertools.product(*(grid[k] for k in keys))]


class Report:
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


def cpuinfo() -> dict:
    info = {"model": platform.processor() or platform.machine(), "mhz": None, "flags": set()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                key, val = key.strip(), val.strip()
                generic = ("", platform.machine(), platform.processor())
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


def libmf_cli_version(cli: str) -> str:
    d = os.path.dirname(os.path.abspath(cli))
    head = os.path.join(d, ".git", "HEAD")
    try:
        with open(head) as f:
            ref = f.read().strip()
        if ref.startswith("ref:"):
            with open(os.path.join(d, ".git", ref.split()[1])) as f:
                ref = f.read().strip()
        return f"git {ref[:12]}"
    except OSError:
        with open(cli, "rb") as f:
            return "sha256 " + hashlib.sha256(f.read()).hexdigest()[:12]


# ============================================================================ data
def read_ml(path: str):
    a = np.loadtxt(path, dtype=np.int64, usecols=(0, 1, 2))
    return a[:, 0], a[:, 1], a[:, 2].astype(np.float32)


class Split:
    """A train/test pair, with each library's own input prepared once (not timed)."""

    def __init__(self, name: str, train, test, work: str):
        self.name, self.train, self.test, self.work = name, train, test, work
        self._cache: dict = {}

    def surprise(self):
        if "s" not in self._cache:
            self._cache["s"] = libs.SurpriseData(self.train)
        return self._cache["s"]

    def cornac(self):
        if "c" not in self._cache:
            self._cache["c"] = libs.CornacData(self.train)
        return self._cache["c"]

    def _libmf(self):
        if "l" not in self._cache:
            tr, te = libs.libmf_index(self.train, self.test)
            paths = {}
            for part, (u, i, r) in (("train", tr), ("test", te)):
                base = os.path.join(self.work, f"{self.name}.{part}")
                np.savez(base + ".npz", u=u, i=i, r=r)
                libs.write_libmf_text(base + ".txt", u, i, r)
                paths[part] = base
            self._cache["l"] = paths
        return self._cache["l"]

    def libmf_txt(self):
        p = self._libmf()
        return p["train"] + ".txt", p["test"] + ".txt"

    def libmf_npz(self):
        p = self._libmf()
        return p["train"] + ".npz", p["test"] + ".npz"


class Runner:
    def __init__(self, cli: str | None):
        self.cli = cli

    def fit_predict(self, lib: str, s: Split, p: dict):
        if lib == MFSGD:
            return libs.mfsgd_fit_predict(s.train, s.test, p)
        if lib == SURPRISE:
            fit_s, algo = libs.surprise_fit(s.surprise(), p)
            return fit_s, libs.surprise_predict(algo, s.test)
        if lib == CORNAC:
            fit_s, model = libs.cornac_fit(s.cornac(), p)
            return fit_s, libs.cornac_predict(model, s.cornac(), s.test)
        if lib == CLI:
            return libs.cli_fit_predict(self.cli, p, *s.libmf_txt())
        raise ValueError(lib)

    def evaluate(self, lib: str, splits: list[Split], configs: list[dict], repeats: int):
        """For every config and split: rmse, mae, fit_s (median of repeats)."""
        out = []
        if lib == PYLIBMF:
            tasks = [dict(p, train=s.libmf_npz()[0], test=s.libmf_npz()[1], repeats=repeats)
                     for p in configs for s in splits]
            res = iter(libs.pylibmf_run(tasks))
            for p in configs:
                rows = []
                for s in splits:
                    r = next(res)
                    rmse, mae = libs.scores(r["pred"], s.test[2])
                    rows.append({"rmse": rmse, "mae": mae, "fit_s": statistics.median(r["fit_s"])})
                out.append(rows)
            return out
        for p in configs:
            rows = []
            for s in splits:
                fits = []
                for _ in range(repeats):
                    fit_s, pred = self.fit_predict(lib, s, p)
                    fits.append(fit_s)
                rmse, mae = libs.scores(pred, s.test[2])
                rows.append({"rmse": rmse, "mae": mae, "fit_s": statistics.median(fits)})
            out.append(rows)
        return out

    def curve(self, lib: str, s: Split, p: dict, epochs: list[int], repeats: int = 1):
        """[(epoch, seconds, test RMSE)] — see section 3's notes for how each is timed."""
        emax = max(epochs)
        if lib in (MFSGD, CLI):  # one run gives the whole curve: median time per epoch
            runs = []
            for _ in range(repeats):
                if lib == MFSGD:
                    runs.append(libs.mfsgd_curve(s.train, s.test, dict(p, epochs=emax)))
                else:
                    rows, _ = libs.cli_log(self.cli, dict(p, epochs=emax), s.libmf_txt()[0],
                                           valid=s.libmf_txt()[1])
                    runs.append([(it, t, va) for it, t, _, va in rows])
            return [(pt[0], statistics.median(r[j][1] for r in runs), pt[2])
                    for j, pt in enumerate(runs[0])]
        if lib == PYLIBMF:
            tasks = [dict(p, epochs=e, train=s.libmf_npz()[0], test=s.libmf_npz()[1],
                          repeats=repeats) for e in epochs]
            pts = [(e, statistics.median(r["fit_s"]), libs.scores(r["pred"], s.test[2])[0])
                   for e, r in zip(epochs, libs.pylibmf_run(tasks))]
        else:
            pts = []
            for e in epochs:
                fits = []
                for _ in range(repeats):
                    fit_s, pred = self.fit_predict(lib, s, dict(p, epochs=e))
                    fits.append(fit_s)
                pts.append((e, statistics.median(fits), libs.scores(pred, s.test[2])[0]))
        # a fit of more epochs cannot take less time: keep timer noise from reordering them
        out, tmax = [], 0.0
        for e, t, r in pts:
            tmax = max(tmax, t)
            out.append((e, tmax, r))
        return out


# ============================================================================ section 1
def summarize(rows: list[dict]) -> dict:
    r = [x["rmse"] for x in rows]
    return {"rmse": statistics.mean(r), "sd": statistics.stdev(r) if len(r) > 1 else 0.0,
            "mae": statistics.mean(x["mae"] for x in rows),
            "fit_s": statistics.mean(x["fit_s"] for x in rows), "folds": r}


def section_movielens(rep: Report, run: Runner, libs_on: list[str], folds: list[Split],
                      val: Split, args, quick: bool) -> dict:
    R = args.repeats
    res: dict = {"defaults": {}, "best": {}, "grid": {}, "extra": {}}
    rep.add(f"## 1. MovieLens 100K, official folds {folds[0].name}..{folds[-1].name}\n")
    rep.add(f"Load average when this section started: {os.getloadavg()[0]:.2f}.\n")
    rep.add("Train on `uN.base`, score on `uN.test`; every library's predictions are clipped "
            "to [1, 5]; unknown users/items get the library's own fallback (biases / global "
            "mean; LibMF: training mean). Fit seconds = median of "
            f"{R} repeat(s) per fold, then the mean over folds; one thread everywhere. "
            "Timed: mfsgd `fit` from raw ids (includes its id mapping and data layout); "
            "Surprise `SVD.fit` (trainset built beforehand, not timed); Cornac `MF.fit` "
            "(Dataset built beforehand); LibMF CLI: wall time of the `mf-train --quiet` "
            "process (includes parsing its text file and writing the model file); PyPI "
            "libmf: `MF.fit` (includes its conversion of the array).\n")

    # (a) defaults
    rows = []
    for lib in libs_on:
        p = LIBMF_DEFAULTS if lib in LIBMF_FAMILY else SURPRISE_DEFAULTS
        try:
            sm = summarize(run.evaluate(lib, folds, [p], R)[0])
        except Exception as e:  # noqa: BLE001 - a failing anchor must not stop the run
            rows.append([lib, fmt_p(p, lib), f"failed: {e}", "", "", ""])
            continue
        res["defaults"][lib] = dict(sm, p=p)
        rows.append([lib, fmt_p(p, lib), f"{sm['rmse']:.4f} (sd {sm['sd']:.4f})",
                     f"{sm['mae']:.4f}",
                     f"{sm['fit_s']:.3f}", " / ".join(f"{x:.4f}" for x in sm["folds"])])
    rep.add("### 1a. Surprise's SVD defaults in every library\n")
    rep.add("k=100, 20 epochs, lr 0.005, reg 0.02 (factors and biases). LibMF has no bias terms "
            "and adaptive per-coordinate step sizes: closest setting is k=100, 20 iterations, "
            "L2 0.02 on P and Q, L1 0, and its own default initial rate eta 0.1 (a plain 0.005 "
            "would be a far smaller effective step).\n")
    rep.add(md_table(["library", "setting", "mean RMSE", "mean MAE", "fit s/fold",
                      "RMSE per fold"], rows))
    rep.add("")
    ratio_lines(rep, res["defaults"], "defaults")

    # (b) small grid on a validation split of u1.base
    rep.add("### 1b. Each library's best setting from a small grid\n")
    g, lg = (QUICK_GRID, QUICK_LIBMF_GRID) if quick else (GRID, LIBMF_GRID)
    rep.add(f"Grid (every combination, {len(grid_configs(g))} settings per library): "
            f"k {g['k']}, epochs {g['epochs']}, lr {g['lr']}, reg {g['reg']} "
            f"(LibMF: eta {lg['lr']} instead of lr). Each setting is fitted once on 90% of "
            f"u1.base and scored on the other 10% (split with "
            f"`mfsgd.model_selection.train_test_split(test_size=0.1, random_state=0)`); the "
            f"setting with the lowest validation RMSE is then run on the five folds. The "
            f"official test folds are never used for the choice.\n")
    rows, top = [], []
    for lib in libs_on:
        cfgs = grid_configs(lg if lib in LIBMF_FAMILY else g)
        try:
            t = time.perf_counter()
            scored = [(r[0]["rmse"], r[0]["fit_s"], p)
                      for r, p in zip(run.evaluate(lib, [val], cfgs, 1), cfgs)]
            grid_s = time.perf_counter() - t
        except Exception as e:  # noqa: BLE001
            rows.append([lib, f"grid failed: {e}", "", "", "", "", ""])
            continue
        scored.sort(key=lambda x: (round(x[0], 4), x[1]))
        res["grid"][lib] = scored
        for v, fs, p in scored[:3]:
            top.append([lib, fmt_p(p, lib), f"{v:.4f}", f"{fs:.3f}"])
        best = scored[0][2]
        try:
            sm = summarize(run.evaluate(lib, folds, [best], R)[0])
        except Exception as e:  # noqa: BLE001
            rows.append([lib, fmt_p(best, lib), f"failed: {e}", "", "", "", ""])
            continue
        res["best"][lib] = dict(sm, p=best, val=scored[0][0], grid_s=grid_s)
        rows.append([lib, fmt_p(best, lib), f"{scored[0][0]:.4f}",
                     f"{sm['rmse']:.4f} (sd {sm['sd']:.4f})", f"{sm['mae']:.4f}",
                     f"{sm['fit_s']:.3f}", " / ".join(f"{x:.4f}" for x in sm["folds"])])
    # mfsgd extra rows: the README-style fast setting and the u1-tuned setting
    extra = [("mfsgd fast", MFSGD_FAST), ("mfsgd tuned on u1 (see 3)", MFSGD_TUNED)]
    for name, p in extra:
        sm = summarize(run.evaluate(MFSGD, folds, [p], R)[0])
        res["extra"][name] = dict(sm, p=p)
        rows.append([name, fmt_p(p, MFSGD), "", f"{sm['rmse']:.4f} (sd {sm['sd']:.4f})",
                     f"{sm['mae']:.4f}", f"{sm['fit_s']:.3f}",
                     " / ".join(f"{x:.4f}" for x in sm["folds"])])
    rep.add(md_table(["library", "chosen setting", "val RMSE", "mean RMSE (5 folds)",
                      "mean MAE", "fit s/fold", "RMSE per fold"], rows))
    rep.add("")
    ratio_lines(rep, res["best"], "best settings")
    if MFSGD in res["defaults"] and "mfsgd fast" in res["extra"]:
        f = res["extra"]["mfsgd fast"]
        rep.add(f"- mfsgd fast setting (k=16, 10 epochs, lr 0.01): mean RMSE {f['rmse']:.4f}, "
                f"{f['fit_s']:.3f} s/fold.")
        for lib in (SURPRISE, CORNAC):
            if lib in res["defaults"]:
                d = res["defaults"][lib]
                rep.add(f"- mfsgd fast vs {lib} defaults: RMSE {f['rmse']:.4f} vs {d['rmse']:.4f}, "
                        f"fit time ratio mfsgd/{lib} = {f['fit_s'] / d['fit_s']:.3f} "
                        f"({d['fit_s'] / f['fit_s']:.1f}x faster).")
    rep.add("")
    rep.add("Top 3 of each grid (validation RMSE on the 10% split of u1.base, fit s):\n")
    rep.add(md_table(["library", "setting", "val RMSE", "fit s"], top))
    rep.add("")
    return res


def ratio_lines(rep: Report, d: dict, what: str) -> None:
    if MFSGD not in d:
        return
    m = d[MFSGD]
    for lib in (SURPRISE, CORNAC, CLI, PYLIBMF):
        if lib in d:
            o = d[lib]
            rep.add(f"- {what}: fit time ratio mfsgd/{lib} = {m['fit_s'] / o['fit_s']:.3f} "
                    f"({m['fit_s']:.3f} s vs {o['fit_s']:.3f} s per fold; mean RMSE "
                    f"{m['rmse']:.4f} vs {o['rmse']:.4f}).")
    rep.add("")


# ============================================================================ section 2
def size_dims(n: int) -> tuple[int, int]:
    """Same users x items as bench/memory.py, so the .npz caches are shared."""
    if n == 20_000_000:
        return 200_000, 20_000
    return n // 100, max(n // 1000, 1000)


def machine_bounds() -> dict:
    """Single-core memory bandwidth (numpy copy of a 1 GiB float32 array: 2 GiB moved per
    copy, best of 3) and float32 matmul GFLOP/s with one BLAS thread."""
    a = np.ones(2**28, dtype=np.float32)
    b = np.empty_like(a)
    np.copyto(b, a)
    best = min(_timed(lambda: np.copyto(b, a)) for _ in range(3))
    bw = 2 * a.nbytes / best
    del a, b
    code = ("import numpy as np, time\nn=2048\nx=np.random.rand(n,n).astype(np.float32)\n"
            "y=np.random.rand(n,n).astype(np.float32)\nx@y\nb=9e9\nfor _ in range(3):\n"
            " t=time.perf_counter(); x@y; b=min(b,time.perf_counter()-t)\nprint(2*n**3/b)")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    mm = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env, check=True).stdout.strip())
    return {"bw": bw, "matmul": mm}


def failed(n: int, k, t, lib: str, e: Exception) -> list:
    return [f"{n / 1e6:g}M", k, t, lib, "failed", str(e)[-200:], "", "", ""]


def _spin(seconds: float, q) -> None:
    t, c0, x = time.perf_counter(), time.process_time(), 0
    while time.perf_counter() - t < seconds:
        x += 1
    q.put(time.process_time() - c0)


def cpu_capacity(n: int = 2, seconds: float = 1.0) -> float:
    """CPUs this machine delivers right now: CPU seconds that n spinning processes get
    together, over the wall time. A VM whose vCPUs are throttled by its host shows
    fewer than n."""
    import multiprocessing as mp
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_spin, args=(seconds, q)) for _ in range(n)]
    for p in procs:
        p.start()
    cpu = sum(q.get() for _ in procs)
    for p in procs:
        p.join()
    return cpu / seconds


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def roofline(k: int, mach: dict) -> dict:
    flops = 8 * k            # dot 2k + the two row updates ~6k
    bytes_ = 16 * k + 12     # read + write two float32 rows from DRAM, + the rating record
    mem = mach["bw"] / bytes_
    fma = mach["fma_peak"] / flops
    mm = mach["matmul"] / flops
    return {"flops": flops, "bytes": bytes_, "mem": mem, "fma": fma, "mm": mm,
            "bound": min(mem, fma)}


def section_synthetic(rep: Report, run: Runner, libs_on: list[str], args, cpu: dict) -> dict:
    R = args.repeats
    rep.add("## 2. Synthetic ratings: throughput, memory, roofline\n")
    rep.add(f"Load average when this section started: {os.getloadavg()[0]:.2f}.\n")
    mach = machine_bounds()
    mhz = cpu.get("mhz") or 0.0
    mach["fma_peak"] = mhz * 1e6 * 2 * 8 * 2
    mach["cap1"], mach["cap2"] = cpu_capacity(1), cpu_capacity(2)
    rep.add("Machine bounds, measured now: single-core memory bandwidth "
            f"**{mach['bw'] / 1e9:.1f} GB/s** (numpy copy of a 1 GiB float32 array, 2 GiB "
            f"moved, best of 3); FMA peak **{mach['fma_peak'] / 1e9:.0f} GFLOP/s** per core "
            f"({mhz:.0f} MHz from /proc/cpuinfo x 2 FMA units x 8 float32 lanes x 2 flops, "
            f"AVX2); practical ceiling: float32 matmul 2048^3 with one BLAS thread "
            f"**{mach['matmul'] / 1e9:.0f} GFLOP/s**. CPU probe (CPU seconds per second that "
            f"spinning processes obtain together): 1 process {mach['cap1']:.2f}, 2 processes "
            f"{mach['cap2']:.2f}.\n")
    rep.add("Per-update model (float32, k factors): 8k flops (dot 2k + the two row updates "
            "~6k) and, when neither row is cached, 16k+12 bytes of DRAM traffic (both rows "
            "read and written, 4k bytes each way per row, + the 12-byte rating). Arithmetic "
            "intensity ~0.5 flop/byte: the kernel is memory-bound unless the rows come from "
            "cache. The bound is min(bandwidth / bytes, FMA peak / flops), for ONE core; "
            "more than 100% of it means the rows are served from cache (blocking), not DRAM.\n")
    rows = []
    for k in args.k:
        b = roofline(k, mach)
        rows.append([k, b["flops"], b["bytes"], f"{b['mem'] / 1e6:.1f}", f"{b['fma'] / 1e6:.0f}",
                     f"{b['mm'] / 1e6:.0f}", f"{b['bound'] / 1e6:.1f}"])
    rep.add(md_table(["k", "flops/update", "DRAM bytes/update", "DRAM bound M upd/s",
                      "FMA-peak bound M upd/s", "matmul-ceiling M upd/s",
                      "roofline bound M upd/s"], rows))
    rep.add("")

    res: dict = {"mach": mach, "tp": [], "mem": [], "probes": []}
    tp_rows, mem_rows = [], []

    def add(size, k, t, lib, s_epoch, note=""):
        ups = size / s_epoch
        b = roofline(k, mach)
        res["tp"].append({"n": size, "k": k, "threads": t, "lib": lib, "s": s_epoch, "ups": ups})
        tp_rows.append([f"{size / 1e6:g}M", k, t, lib, f"{s_epoch:.3f}", f"{ups / 1e6:.1f}",
                        f"{100 * ups / b['mem']:.0f}%", f"{100 * ups / b['fma']:.0f}%", note])
        print(f"  {size:,} k={k} threads={t} {lib}: {s_epoch:.3f} s/epoch, "
              f"{ups / 1e6:.1f} M upd/s {note}", flush=True)

    for n in args.sizes:
        users, items = size_dims(n)
        u, i, r = get_data(users, items, n, CACHE)  # generate + cache before any child runs
        npz = os.path.join(CACHE, f"synth_{users}_{items}_{n}.npz")
        txt = None
        if CLI in libs_on:
            txt = libs.write_libmf_text(
                os.path.join(CACHE, f"libmf_{users}_{items}_{n}.txt"), u, i, r)
        # mfsgd and the LibMF CLI back to back for each (k, threads): same machine state
        for k in args.k:
            for t in args.threads:
                probe = ""
                if t > 1:
                    cap = cpu_capacity(t)
                    res["probes"].append(cap)
                    probe = f"; probe {cap:.2f} CPUs"
                try:
                    m = libs.mfsgd_synth(n, users, items, k, t, R, CACHE)
                    add(n, k, t, MFSGD, statistics.median(m["epoch_s"]),
                        f"{m['n_blocks']} blocks{probe}")
                    model_gib = (users + items) * (k + 1) * 4 / 2**30
                    mem_rows.append([f"{n / 1e6:g}M", f"{users:,} x {items:,}", k, t,
                                     f"{m['data_bytes'] / 2**30:.3f}", f"{model_gib:.3f}",
                                     f"{m['rss_data_kib'] / 2**20:.3f}",
                                     f"{m['peak_kib'] / 2**20:.3f}",
                                     f"{(m['peak_kib'] - m['rss_data_kib']) / 2**20:.3f}",
                                     f"{m['fit_s']:.2f}", f"{m['fit_s'] - sum(m['epoch_s']):.2f}"])
                    res["mem"].append(dict(m, n=n, k=k, threads=t))
                except Exception as e:  # noqa: BLE001
                    tp_rows.append(failed(n, k, t, MFSGD, e))
                if txt is None:
                    continue
                p = {"k": k, "epochs": R + 1, "lr": 0.1, "reg": 0.02, "threads": t}
                try:
                    log, total = libs.cli_log(run.cli, p, txt)
                except Exception as e:  # noqa: BLE001
                    tp_rows.append(failed(n, k, t, CLI, e))
                    continue
                s_it = statistics.median(b[1] - a[1] for a, b in zip(log, log[1:]))
                add(n, k, t, CLI, s_it, f"wall {total:.1f} s for {R + 1} iters; load+init+save "
                                        f"~{total - (R + 1) * s_it:.1f} s{probe}")
        if n <= 1_000_000:
            if PYLIBMF in libs_on:
                tasks = [{"k": k, "epochs": e, "lr": 0.1, "reg": 0.02, "threads": t, "train": npz}
                         for k in args.k for t in args.threads for e in (1, 1 + R)]
                try:
                    out = iter(libs.pylibmf_run(tasks))
                    for k in args.k:
                        for t in args.threads:
                            t1, tn = next(out)["fit_s"][0], next(out)["fit_s"][0]
                            if tn > t1:
                                add(n, k, t, PYLIBMF, (tn - t1) / R,
                                    f"(fit {1 + R} iters - fit 1)/{R}")
                except Exception as e:  # noqa: BLE001
                    tp_rows.append(failed(n, "", "", PYLIBMF, e))
            for lib, ths in ((SURPRISE, [1]), (CORNAC, args.threads)):
                if lib not in libs_on:
                    continue
                try:
                    sp = Split(f"synth{n}", (u, i, r), (u[:1], i[:1], r[:1]), CACHE)
                    for k in args.k:
                        for t in ths:
                            p = {"k": k, "lr": 0.002, "reg": 0.02, "threads": t}
                            t1 = run.fit_predict(lib, sp, dict(p, epochs=1))[0]
                            tn = run.fit_predict(lib, sp, dict(p, epochs=1 + R))[0]
                            if tn > t1:
                                add(n, k, t, lib, (tn - t1) / R,
                                    f"(fit {1 + R} epochs - fit 1)/{R}")
                except Exception as e:  # noqa: BLE001
                    tp_rows.append(failed(n, "", "", lib, e))
        del u, i, r

    rep.add("### Throughput\n")
    rep.add("M upd/s = ratings / (seconds per epoch). mfsgd: median of the per-epoch "
            f"`history_[e]['seconds']` of one {R}-epoch fit (kernel pass + per-epoch "
            "bookkeeping). LibMF CLI: `mf-train -t N` (N = repeats + 1) in verbose mode, every "
            "per-iteration line timestamped as it is printed (LibMF flushes each line; the "
            "training loss it prints is accumulated during the pass, so no extra pass); the "
            f"median gap between consecutive lines is one iteration. eta 0.1, L2 0.02. PyPI "
            "libmf, Surprise, Cornac (1M set only): (fit with 1+N epochs - fit with 1 epoch)/N, "
            "which removes their data conversion. % columns: achieved updates/s over the "
            "one-core DRAM bound and over the one-core FMA-peak bound of the table above "
            "(2-thread rows too). Each 2-thread mfsgd / LibMF CLI pair is preceded by a probe "
            "(`probe` in the notes): the CPUs that 2 spinning processes obtained together for "
            "1 s just before; about 1 means the host gave this VM one core's worth, about 2 "
            "means both vCPUs were really available. On the 1M set "
            "the whole model fits in L2/L3, so the DRAM bound does not apply there.\n")
    rep.add(md_table(["set", "k", "threads", "library", "s/epoch", "M upd/s",
                      "% of DRAM bound", "% of FMA peak", "notes"], tp_rows))
    rep.add("")
    rep.add("### mfsgd memory (one fit per row, fresh process, peak = `VmHWM`)\n")
    rep.add(md_table(["set", "users x items", "k", "threads", "input arrays GiB",
                      "model params GiB", "RSS with data GiB", "peak RSS GiB",
                      "peak - data GiB", "fit wall s", "setup s (fit - epochs)"], mem_rows))
    rep.add("")
    headline_synth(rep, res)
    return res


def headline_synth(rep: Report, res: dict) -> None:
    tp = res["tp"]

    def get(n, k, t, lib):
        for x in tp:
            if (x["n"], x["k"], x["threads"], x["lib"]) == (n, k, t, lib):
                return x["ups"]
        return None

    lines = []
    for n in sorted({x["n"] for x in tp}):
        for k in sorted({x["k"] for x in tp}):
            m1, m2 = get(n, k, 1, MFSGD), get(n, k, 2, MFSGD)
            c1, c2 = get(n, k, 1, CLI), get(n, k, 2, CLI)
            bits = []
            if m1 and c1:
                bits.append(f"mfsgd/LibMF CLI 1 thread = {m1 / c1:.2f}")
            if m2 and c2:
                bits.append(f"2 threads = {m2 / c2:.2f}")
            if m1 and m2:
                bits.append(f"mfsgd 2t/1t = {m2 / m1:.2f}")
            if c1 and c2:
                bits.append(f"LibMF 2t/1t = {c2 / c1:.2f}")
            p1 = get(n, k, 1, PYLIBMF)
            if m1 and p1:
                bits.append(f"mfsgd/PyPI libmf 1t = {m1 / p1:.1f}")
            if bits:
                lines.append(f"- {n / 1e6:g}M, k={k}: " + "; ".join(bits) + ".")
    if lines:
        rep.add("Ratios of updates/s (same run):\n")
        rep.add("\n".join(lines))
        rep.add("")


# ============================================================================ section 3
def section_curves(rep: Report, run: Runner, libs_on: list[str], u1: Split, s1: dict,
                   args, quick: bool) -> dict:
    epochs = [1, 2, 5, 10] if quick else CURVE_EPOCHS
    emax = max(epochs)
    rep.add(f"## 3. Test RMSE against wall-clock seconds on u1 (up to {emax} epochs)\n")
    rep.add(f"Load average when this section started: {os.getloadavg()[0]:.2f}.\n")
    curves = []  # (label, lib, panel, points)

    def add(label, lib, panel, p):
        try:
            pts = run.curve(lib, u1, p, epochs, args.repeats)
        except Exception as e:  # noqa: BLE001
            print(f"  curve {label} failed: {e}", flush=True)
            return
        curves.append((label, lib, panel, p, pts))
        print(f"  curve {label}: best {min(x[2] for x in pts):.4f}", flush=True)

    for lib in libs_on:
        d = LIBMF_DEFAULTS if lib in LIBMF_FAMILY else SURPRISE_DEFAULTS
        add(f"{lib} defaults", lib, 0, d)
    for lib in libs_on:
        if lib in s1.get("best", {}):
            add(f"{lib} grid best", lib, 1, s1["best"][lib]["p"])
    for lib in (MFSGD, SURPRISE, CORNAC):
        if lib in libs_on:
            add(f"{lib} shared k64 lr.01 reg.1", lib, 1, SHARED)
    add("mfsgd fast (k16 lr.01)", MFSGD, 0, MFSGD_FAST)
    add("mfsgd tuned (init_std .01, lr_decay)", MFSGD, 1, MFSGD_TUNED)

    plot(curves, args.plot)
    rel = os.path.relpath(args.plot, os.path.dirname(os.path.abspath(args.out or args.plot)))
    rep.add(f"![test RMSE vs seconds]({rel})\n")
    rep.add(f"How each point is timed (median of {args.repeats} runs). mfsgd: one fit with "
            "`eval_set=u1.test`, clock read in "
            "fit's per-epoch callback (includes setup and mfsgd's own per-epoch validation "
            "pass). Surprise, Cornac, PyPI libmf: no per-epoch hook that reports test RMSE, so "
            f"each point is a fresh fit with n_epochs = {epochs} (deterministic seeds: the "
            "model after e epochs of a longer run is the same), timed like section 1 (median "
            f"of {args.repeats}; then made non-decreasing in e, so that timer noise cannot "
            "make a longer fit look faster). LibMF "
            "CLI: one verbose `mf-train -p u1.test` run, each iteration line timestamped "
            "from process start (includes reading the text files); its RMSE is LibMF's own "
            "`va_rmse` (predictions not clipped to [1, 5]). Left panel: Surprise-default "
            "hyper-parameters (mfsgd fast too); right: each library's grid-best setting run "
            f"for {emax} epochs, the same setting (k=64, lr 0.01, reg 0.1) in the three "
            "biased-SGD libraries, and mfsgd with init_std 0.01 (Cornac's init) and lr_decay "
            "(chosen looking at u1.test: indicative).\n")
    rows = []
    for label, lib, _, p, pts in curves:
        row = [label, fmt_p(dict(p, epochs=emax), lib)]
        for thr in THRESHOLDS:
            hit = next((x for x in pts if x[2] <= thr), None)
            row.append(f"{hit[1]:.3f} s (ep {hit[0]})" if hit else "not reached")
        b = min(pts, key=lambda x: x[2])
        row.append(f"{b[2]:.4f} at {b[1]:.3f} s (ep {b[0]})")
        rows.append(row)
    rep.add(md_table(["curve", "setting", *[f"to {t}" for t in THRESHOLDS], "best RMSE"], rows))
    rep.add("")
    fastest = {}
    for thr in THRESHOLDS:
        for label, lib, _, p, pts in curves:
            hit = next((x for x in pts if x[2] <= thr), None)
            if hit and (fastest.get((lib, thr)) is None or hit[1] < fastest[(lib, thr)][0]):
                fastest[(lib, thr)] = (hit[1], label)
    lines = []
    for thr in THRESHOLDS:
        m = fastest.get((MFSGD, thr))
        for lib in (SURPRISE, CORNAC, CLI, PYLIBMF):
            o = fastest.get((lib, thr))
            if m and o:
                lines.append(f"- RMSE {thr}: fastest mfsgd curve {m[0]:.3f} s ({m[1]}) vs "
                             f"fastest {lib} curve {o[0]:.3f} s ({o[1]}): ratio "
                             f"{m[0] / o[0]:.3f}.")
            elif m and lib in libs_on:
                lines.append(f"- RMSE {thr}: mfsgd {m[0]:.3f} s ({m[1]}); {lib} not reached.")
    same = [c for c in curves if "shared" in c[0]]
    for thr in THRESHOLDS:
        hits = {c[1]: next((x for x in c[4] if x[2] <= thr), None) for c in same}
        if hits.get(MFSGD) and hits.get(SURPRISE):
            lines.append(f"- Same hyper-parameters, RMSE {thr}: mfsgd {hits[MFSGD][1]:.3f} s vs "
                         f"Surprise {hits[SURPRISE][1]:.3f} s (ratio "
                         f"{hits[MFSGD][1] / hits[SURPRISE][1]:.3f}).")
    if lines:
        rep.add("Time-to-RMSE ratios (same run):\n")
        rep.add("\n".join(lines))
        rep.add("")
    return {"curves": curves}


def plot(curves, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colors = {MFSGD: "C0", SURPRISE: "C1", CORNAC: "C2", CLI: "C3", PYLIBMF: "C4"}
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2), sharey=True)
    styles: dict = {}
    for label, lib, panel, _, pts in curves:
        ax = axes[panel]
        n = styles.setdefault((panel, lib), [0])
        ls = ["-", "--", ":", "-."][n[0] % 4]
        n[0] += 1
        ax.plot([x[1] for x in pts], [x[2] for x in pts], ls, marker=".", ms=4, color=colors[lib],
                label=label)
    for ax, title in zip(axes, ["Surprise-default hyper-parameters", "tuned settings"]):
        ax.set_xscale("log")
        ax.set_xlabel("wall-clock seconds (log)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        for thr in THRESHOLDS:
            ax.axhline(thr, color="grey", lw=0.6, alpha=0.5)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("test RMSE on MovieLens 100K u1")
    axes[0].set_ylim(0.905, 1.06)
    fig.suptitle("MovieLens 100K u1: test RMSE vs training time (one thread)")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ============================================================================ section 4
SCHEDULES = {  # name -> grid of the schedule's own knobs (k=64, reg 0.1 for all, on u1)
    "constant": [{"lr": lr} for lr in (0.005, 0.01, 0.02)],
    "lr_decay": [{"lr": lr, "lr_decay": d} for lr in (0.01, 0.02) for d in (0.02, 0.1)],
    "AdaGrad": [{"lr": lr, "adagrad": True} for lr in (0.02, 0.05, 0.1)],
}
# 20 M set (noise floor 0.5): settings from a 12-epoch sweep on the same split (indicative)
SCHEDULES_20M = {"constant": {"lr": 0.02}, "lr_decay": {"lr": 0.02, "lr_decay": 0.1},
                 "AdaGrad": {"lr": 0.1, "adagrad": True}}
THRESHOLDS_20M = [0.60, 0.57, 0.56, 0.55]


def _hits(pts, thresholds) -> list[str]:
    out = []
    for thr in thresholds:
        hit = next((x for x in pts if x[2] <= thr), None)
        out.append(f"{hit[1]:.3f} s (ep {hit[0]})" if hit else "not reached")
    b = min(pts, key=lambda x: x[2])
    return out + [f"{b[2]:.4f} at {b[1]:.3f} s (ep {b[0]})"]


def blocking_curves(train, val, k: int, lr: float, reg: float, epochs: int) -> dict:
    """Validation RMSE per epoch and seconds per epoch, one thread, the same initial
    parameters, for: the default layout (cells, per-epoch random cell order and in-cell
    permutations), a full shuffle (a global permutation of all ratings every epoch, then
    the kernel in that order: the textbook schedule), and no shuffle (stored order)."""
    from mfsgd import _sgd
    from mfsgd import _training as T
    u, i, r = (np.ascontiguousarray(train[0], np.int32), np.ascontiguousarray(train[1], np.int32),
               np.ascontiguousarray(train[2], np.float32))
    vu, vi, vr = (np.asarray(val[0], np.int32), np.asarray(val[1], np.int32),
                  np.asarray(val[2], np.float64))
    nu, ni = int(max(u.max(), vu.max())) + 1, int(max(i.max(), vi.max())) + 1
    mu = float(r.mean(dtype=np.float64))
    rng0 = np.random.default_rng(0)
    P0 = (rng0.standard_normal((nu, k)) * 0.1).astype(np.float32)
    Q0 = (rng0.standard_normal((ni, k)) * 0.1).astype(np.float32)
    hyper = T.Hyper(lr=lr, reg_f=reg, reg_b=reg, mu=mu, use_bias=True, nonneg=False)
    out = {}
    for name in ("cells", "full shuffle", "no shuffle"):
        params = T.Params(T.aligned_concat([P0]), T.aligned_concat([Q0]),
                          np.zeros(nu, np.float32), np.zeros(ni, np.float32))
        rng = np.random.default_rng(1)
        s = T.default_n_cells(nu, ni, len(r), k * 4, 1) if name == "cells" else 1
        layout = T.Layout.build([u, i, r], nu, ni, 1, s)  # reads them, never writes
        runner = T.EpochRunner(layout, params, hyper, 1)
        rows = []
        for _ in range(epochs):
            t0 = time.perf_counter()
            if name == "full shuffle":
                perm = rng.permutation(len(r))
                su, si, sr = u[perm], i[perm], r[perm]
                t1 = time.perf_counter()
                _sgd.sgd_epoch(su, si, sr, params.P, params.Q, params.bu, params.bi, mu, lr,
                               reg, reg)
                del su, si, sr, perm
            else:
                t1 = t0
                runner.run_epoch(rng if name == "cells" else None)
            t2 = time.perf_counter()
            rows.append((t2 - t0, t1 - t0, T.rmse_of(params, mu, vu, vi, vr)))
        runner.close()
        out[name] = {"rows": rows, "cells": s}
        print(f"  blocking {name}: val {rows[-1][2]:.4f}, "
              f"{statistics.median(x[0] for x in rows):.3f} s/epoch", flush=True)
    return out


def section_convergence(rep: Report, run: Runner, libs_on: list[str], u1: Split, val: Split,
                        args, quick: bool) -> None:
    epochs = [1, 2, 5, 10] if quick else CURVE_EPOCHS
    rep.add("## 4. Learning-rate schedules and cache blocking: accuracy per epoch and per "
            "second\n")
    rep.add(f"Load average when this section started: {os.getloadavg()[0]:.2f}. One thread "
            "everywhere.\n")
    # --- 4a: schedules on u1
    base = {"k": 64, "reg": 0.1, "epochs": max(epochs)}
    chosen, curves_u1 = {}, []
    for name, grid in SCHEDULES.items():
        best = None
        for g in grid[:1] if quick else grid:
            p = dict(base, **g)
            pts = libs.mfsgd_curve(val.train, val.test, p)
            v = min(x[2] for x in pts)
            if best is None or v < best[0]:
                best = (v, p)
        chosen[name] = best[1]
        pts = run.curve(MFSGD, u1, best[1], epochs, args.repeats)
        curves_u1.append((name, best[1], pts))
        print(f"  schedule {name}: {fmt_p(best[1], MFSGD)} best {min(x[2] for x in pts):.4f}",
              flush=True)
    rep.add("### 4a. MovieLens 100K u1: constant rate, per-epoch decay, AdaGrad\n")
    rep.add("Same model (k=64, reg 0.1, init_std 0.1) with each schedule; each schedule's "
            "rate (and decay) chosen from a small grid by the best validation RMSE on the 10% "
            "split of u1.base (section 1b's split), then run on u1.base and scored on "
            f"u1.test after every epoch (median of {args.repeats} runs; clock as in section 3). "
            f"Grids: {'; '.join(f'{n}: {g}' for n, g in SCHEDULES.items())}.\n")
    rows = [[n, fmt_p(p, MFSGD), *_hits(pts, THRESHOLDS)] for n, p, pts in curves_u1]
    rep.add(md_table(["schedule", "setting", *[f"to {t}" for t in THRESHOLDS], "best RMSE"],
                     rows))
    rep.add("")
    # --- 4b/4c: the 20 M set
    n20 = 100_000 if quick else 20_000_000
    nu, ni = size_dims(n20)
    u, i, r = get_data(nu, ni, n20, CACHE)
    mask = np.random.default_rng(0).random(len(r)) < 0.01
    tr = (u[~mask], i[~mask], r[~mask])
    te = (u[mask], i[mask], r[mask])
    del u, i, r
    e20 = 3 if quick else 20
    curves_20 = []
    s20 = Split(f"synth{n20}", tr, te, tempfile.mkdtemp(prefix="synth-", dir=CACHE))
    try:
        for name, g in SCHEDULES_20M.items():
            p = dict({"k": 64, "reg": 0.02, "epochs": e20}, **g)
            pts = run.curve(MFSGD, s20, p, list(range(1, e20 + 1)), 1)
            curves_20.append((f"mfsgd {name}", MFSGD, p, pts))
            print(f"  20M mfsgd {name}: best {min(x[2] for x in pts):.4f}", flush=True)
        other_epochs = [1, 2, 3] if quick else [1, 2, 4, 6, 8, 12, 16, 20]
        for lib, p in ((CLI, {"k": 64, "lr": 0.1, "reg": 0.02, "epochs": e20}),
                       (CORNAC, {"k": 64, "lr": 0.02, "reg": 0.02, "epochs": e20})):
            if lib not in libs_on:
                continue
            try:
                pts = run.curve(lib, s20, p, other_epochs, 1)
            except Exception as e:  # noqa: BLE001
                print(f"  20M {lib} failed: {e}", flush=True)
                continue
            curves_20.append((lib, lib, p, pts))
            print(f"  20M {lib}: best {min(x[2] for x in pts):.4f}", flush=True)
    finally:
        shutil.rmtree(s20.work, ignore_errors=True)
    rep.add(f"### 4b. {n20:,} synthetic ratings: validation RMSE against seconds\n")
    rep.add(f"`make_ratings({nu}, {ni}, {n20}, random_state=0)` (noise sd 0.5, the best "
            "achievable RMSE), 1% held out at random (seed 0) for validation. mfsgd: one fit "
            "per schedule with eval_set (clock includes setup: id mapping and layout, and the "
            "per-epoch validation pass); settings from a 12-epoch sweep on this split "
            "(indicative). LibMF CLI: one verbose run with `-p` (clock includes parsing its "
            "text file); Cornac: a fresh fit per point, its Dataset built "
            "beforehand. Surprise is left out here: at its ~2 M updates/s (section 2) each "
            "point would take minutes.\n")
    rows = [[label, fmt_p(p, lib), *_hits(pts, THRESHOLDS_20M)] for label, lib, p, pts in curves_20]
    rep.add(md_table(["curve", "setting", *[f"to {t}" for t in THRESHOLDS_20M], "best RMSE"],
                     rows))
    rep.add("")
    # --- 4c: blocking
    blk = blocking_curves(tr, te, 64, 0.02, 0.02, 4 if quick else 12)
    rep.add("### 4c. Cache blocking vs a full shuffle, same data and initial parameters\n")
    rep.add("k=64, constant lr 0.02, reg 0.02, float32, one thread. *cells*: the default "
            f"layout ({blk['cells']['cells']}x{blk['cells']['cells']} cells; each epoch a random "
            "cell order and a fresh permutation inside each cell); *full shuffle*: a global "
            "`numpy` permutation of all ratings every epoch, gathered, then the kernel in that "
            "order (its seconds include the permutation and gather, shown apart); *no "
            "shuffle*: the stored order every epoch.\n")
    ep = [e for e in (1, 2, 4, 8, 12) if e <= len(blk["cells"]["rows"])]
    rows = []
    for name, d in blk.items():
        rr = d["rows"]
        med = statistics.median(x[0] for x in rr)
        shuf = statistics.median(x[1] for x in rr)
        rows.append([name, *[f"{rr[e - 1][2]:.4f}" for e in ep], f"{med:.3f}",
                     f"{shuf:.3f}", f"{len(tr[2]) / med / 1e6:.1f}"])
    rep.add(md_table(["schedule", *[f"val RMSE ep {e}" for e in ep], "s/epoch",
                      "of which numpy shuffle s", "M upd/s"], rows))
    c, f = blk["cells"]["rows"], blk["full shuffle"]["rows"]
    rep.add(f"\n- cells vs full shuffle: val RMSE after epoch {len(c)} {c[-1][2]:.4f} vs "
            f"{f[-1][2]:.4f}; seconds per epoch ratio full/cells = "
            f"{statistics.median(x[0] for x in f) / statistics.median(x[0] for x in c):.1f}.\n")
    plot_convergence(curves_u1, curves_20, blk, args.plot_convergence)
    rel = os.path.relpath(args.plot_convergence, os.path.dirname(os.path.abspath(args.out)))
    rep.add(f"![schedules and blocking]({rel})\n")


def plot_convergence(curves_u1, curves_20, blk, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter
    fig, ax = plt.subplots(1, 3, figsize=(17, 5))
    sched_color = {"constant": "C0", "lr_decay": "C1", "AdaGrad": "C4"}
    for name, _, pts in curves_u1:
        ax[0].plot([x[1] for x in pts], [x[2] for x in pts], marker=".", ms=4, label=name,
                   color=sched_color.get(name))
    ax[0].set(xscale="log", xlabel="seconds (log)", ylabel="test RMSE",
              title="MovieLens 100K u1: schedules (mfsgd, k=64)", ylim=(0.905, 1.0))
    colors = {CLI: "C3", CORNAC: "C2"}
    for label, lib, _, pts in curves_20:
        c = colors.get(lib) or sched_color.get(label.replace("mfsgd ", ""))
        ax[1].plot([x[1] for x in pts], [x[2] for x in pts], marker=".", ms=4, label=label,
                   color=c, ls="-" if lib == MFSGD else "--")
    ax[1].set(xscale="log", xlabel="seconds (log)", ylabel="validation RMSE",
              title="20 M synthetic ratings, k=64, one thread", ylim=(0.53, 0.85))
    for name, d in blk.items():
        rr = d["rows"]
        ax[2].plot(range(1, len(rr) + 1), [x[2] for x in rr], marker="o", ms=3, label=name)
    ax[2].set(xlabel="epoch", ylabel="validation RMSE", ylim=(0.53, 0.85),
              title="20 M: cache blocking vs full shuffle (per epoch)")
    for a in ax:
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=8)
        a.xaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ============================================================================ main
def header(args, argv, cpu: dict, libs_on: list[str], versions: dict, load0, waited: str) -> str:
    from mfsgd import _sgd
    flags = cpu["flags"]
    lines = [
        "# mfsgd benchmark results",
        "",
        f"- Date: {dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"- Command (from the repository root): `{argv}`",
        f"- CPU: {cpu['model']} (family {cpu.get('family', '?')} model "
        f"{cpu.get('cpu_model', '?')}), {cpu.get('mhz') or 0:.0f} MHz, {os.cpu_count()} "
        f"logical CPUs; avx2: {'yes' if 'avx2' in flags else 'no'}, fma: "
        f"{'yes' if 'fma' in flags else 'no'}, avx512f: {'yes' if 'avx512f' in flags else 'no'}; "
        f"L2 {cpu.get('cache', '?')} per core (cpuinfo)",
        f"- Load average at start (1/5/15 min): {load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f}"
        + (f" ({waited})" if waited else ""),
        f"- Python {platform.python_version()}, NumPy {np.__version__}, mfsgd {mfsgd.__version__} "
        f"(kernel {_sgd.isa_name(_sgd.isa_current())})"
        + "".join(f", {k} {v}" for k, v in versions.items() if v),
        f"- LibMF CLI: {args.libmf_cli} ({libmf_cli_version(args.libmf_cli)})"
        if args.libmf_cli else "- LibMF CLI: not given (--libmf-cli)",
        f"- Libraries run: {', '.join(libs_on)}; repeats {args.repeats}; synthetic sizes "
        f"{', '.join(f'{n:,}' for n in args.sizes)}; k {args.k}; threads {args.threads}",
        "- Caveat: 2 vCPUs (KVM guest, shared with other developers' jobs) whose combined "
        "capacity varies with the host: often ~1.1-1.2 cores together, sometimes nearly 2. "
        "Read the 2-thread rows with the CPU probe printed next to them (section 2).",
        "",
    ]
    return "\n".join(lines)


def wait_for_load(limit: float | None, max_wait: float = 900) -> str:
    if limit is None:
        return ""
    t0 = time.time()
    while os.getloadavg()[0] > limit and time.time() - t0 < max_wait:
        print(f"load average {os.getloadavg()[0]:.2f} > {limit}: waiting 60 s", flush=True)
        time.sleep(60)
    waited = time.time() - t0
    return f"waited {waited:.0f} s for the 1-min load to drop below {limit}" if waited > 1 else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.normpath(
        os.path.join(REPO, "..", "shared", "data", "ml-100k")))
    ap.add_argument("--libmf-cli", default=None, help="path to LibMF's mf-train (optional)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 20_000_000],
                    help="synthetic set sizes (100000000 is opt-in: ~1.2 GiB arrays)")
    ap.add_argument("--k", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--plot", default=os.path.join(HERE, "rmse_vs_time.png"))
    ap.add_argument("--plot-convergence", default=os.path.join(HERE, "convergence.png"))
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: fold u1 only, tiny grid, 100K synthetic set, k 32, 1 repeat")
    ap.add_argument("--skip", nargs="*", default=[], choices=["movielens", "synthetic", "curves",
                                                         "convergence"])
    ap.add_argument("--wait-for-load", type=float, default=None, metavar="LOAD",
                    help="before starting, wait (60 s steps, up to 15 min) until the 1-minute "
                         "load average is at most LOAD")
    args = ap.parse_args()
    argv = " ".join(["python3 bench/run.py", shlex.join(sys.argv[1:])]).strip()
    if args.quick:
        if "--sizes" not in sys.argv:
            args.sizes = [100_000]
        if "--k" not in sys.argv:
            args.k = [32]
        if "--repeats" not in sys.argv:
            args.repeats = 1
    if args.libmf_cli and not os.access(args.libmf_cli, os.X_OK):
        sys.exit(f"--libmf-cli {args.libmf_cli}: not an executable file")
    if not os.path.exists(os.path.join(args.data, "u1.base")):
        sys.exit(f"--data {args.data}: no u1.base there (MovieLens 100K folder expected)")

    waited = wait_for_load(args.wait_for_load)
    load0 = os.getloadavg()
    cpu = cpuinfo()
    versions = libs.available()
    libs_on = [MFSGD] + [k for k in (SURPRISE, CORNAC) if versions.get(k)]
    if args.libmf_cli:
        libs_on.append(CLI)
    if versions.get(PYLIBMF):
        libs_on.append(PYLIBMF)
    rep = Report(args.out)
    rep.add(header(args, argv, cpu, libs_on, versions, load0, waited))
    t_start = time.perf_counter()
    os.makedirs(CACHE, exist_ok=True)
    work = tempfile.mkdtemp(prefix="ml100k-", dir=CACHE)  # LibMF inputs of the folds
    run = Runner(args.libmf_cli)
    try:
        fold_ids = [1] if args.quick else [1, 2, 3, 4, 5]
        folds = [Split(f"u{f}", read_ml(os.path.join(args.data, f"u{f}.base")),
                       read_ml(os.path.join(args.data, f"u{f}.test")), work) for f in fold_ids]
        vtr, vte = train_test_split(folds[0].train, test_size=0.1, random_state=0)
        val = Split("u1val", vtr, vte, work)
        s1: dict = {}
        if "movielens" not in args.skip:
            s1 = section_movielens(rep, run, libs_on, folds, val, args, args.quick)
            rep.write()
        if "synthetic" not in args.skip:
            section_synthetic(rep, run, libs_on, args, cpu)
            rep.write()
        if "curves" not in args.skip:
            section_curves(rep, run, libs_on, folds[0], s1, args, args.quick)
            rep.write()
        if "convergence" not in args.skip:
            section_convergence(rep, run, libs_on, folds[0], val, args, args.quick)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load1 = os.getloadavg()
    rep.add(f"Total run time {time.perf_counter() - t_start:.0f} s; load average at the end "
            f"(1/5/15 min): {load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f}.")
    rep.write()


if __name__ == "__main__":
    main()
