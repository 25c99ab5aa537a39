"""Section 2: synthetic ratings: throughput, memory and roofline, mfsgd beside the anchors.

    python bench/synthetic.py [--libmf-cli PATH/mf-train] [--sizes 1000000 20000000]
                              [--k 32 64 128] [--threads 1 2] [--repeats 3] [--quick]

Sets from mfsgd.datasets.make_ratings (cached, see --cache). Seconds per epoch and M
rating-updates/s of mfsgd (each fit in a fresh process, also giving its peak RSS), the
LibMF CLI, PyPI libmf, Surprise and Cornac (the last three on sets up to 1M only), a
roofline measured on this machine, and a CPU probe before every 2-thread pair. The 100 M
set is opt-in (--sizes ... 100000000: about 1.2 GiB of arrays, plus LibMF's 2 GB text
file).
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time

import numpy as np
from _common import (
    Parser,
    Report,
    cpuinfo,
    get_data,
    load_line,
    md_table,
    progress,
    size_dims,
    synthetic_path,
    timed,
)
from libs import (
    CLI,
    CORNAC,
    MFSGD,
    PYLIBMF,
    SURPRISE,
    Anchors,
    Split,
    add_options,
    cli_log,
    mfsgd_synth,
    pylibmf_run,
    run_alone,
    write_libmf_text,
)


def machine_bounds() -> dict:
    """Single-core memory bandwidth (numpy copy of a 1 GiB float32 array: 2 GiB moved per
    copy, best of 3) and float32 matmul FLOP/s with one BLAS thread."""
    src = np.ones(2**28, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # first touch: page faults are not bandwidth
    bw = 2 * src.nbytes / min(timed(np.copyto, dst, src)[0] for _ in range(3))
    del src, dst
    # in a child, so that the BLAS thread count can be pinned before numpy loads it
    code = ("import numpy as np, time\nn=2048\nx=np.random.rand(n,n).astype(np.float32)\n"
            "y=np.random.rand(n,n).astype(np.float32)\nx@y\nb=9e9\nfor _ in range(3):\n"
            " t=time.perf_counter(); x@y; b=min(b,time.perf_counter()-t)\nprint(2*n**3/b)")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    mm = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env, check=True).stdout.strip())
    return {"bw": bw, "matmul": mm}


def _spin(seconds: float, q) -> None:
    t, c0, x = time.perf_counter(), time.process_time(), 0
    while time.perf_counter() - t < seconds:
        x += 1
    q.put(time.process_time() - c0)


def cpu_capacity(n: int = 2, seconds: float = 1.0) -> float:
    """CPUs this machine delivers right now: CPU seconds that n spinning processes get
    together, over the wall time. A VM whose vCPUs are throttled by its host shows
    fewer than n."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_spin, args=(seconds, q)) for _ in range(n)]
    for p in procs:
        p.start()
    cpu = sum(q.get() for _ in procs)
    for p in procs:
        p.join()
    return cpu / seconds


def roofline(k: int, mach: dict) -> dict:
    flops = 8 * k            # dot 2k + the two row updates ~6k
    bytes_ = 16 * k + 12     # read + write two float32 rows from DRAM, + the rating record
    mem = mach["bw"] / bytes_
    fma = mach["fma_peak"] / flops
    mm = mach["matmul"] / flops
    return {"flops": flops, "bytes": bytes_, "mem": mem, "fma": fma, "mm": mm,
            "bound": min(mem, fma)}


def failed(n: int, k, t, lib: str, e: Exception) -> list:
    return [f"{n / 1e6:g}M", k, t, lib, "failed", str(e)[-200:], "", "", ""]


def run(rep: Report, args, anchors: Anchors) -> None:
    R, cache, names = args.repeats, args.cache, anchors.names
    rep.add("## 2. Synthetic ratings: throughput, memory, roofline\n")
    rep.add(load_line() + "\n")
    mach = machine_bounds()
    mhz = cpuinfo().get("mhz") or 0.0
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

    tp: list[dict] = []  # every throughput row, for the ratios
    tp_rows, mem_rows = [], []

    def add(size, k, t, lib, s_epoch, note=""):
        ups = size / s_epoch
        b = roofline(k, mach)
        tp.append({"n": size, "k": k, "threads": t, "lib": lib, "ups": ups})
        tp_rows.append([f"{size / 1e6:g}M", k, t, lib, f"{s_epoch:.3f}", f"{ups / 1e6:.1f}",
                        f"{100 * ups / b['mem']:.0f}%", f"{100 * ups / b['fma']:.0f}%", note])
        progress(f"  {size:,} k={k} threads={t} {lib}: {s_epoch:.3f} s/epoch, "
                 f"{ups / 1e6:.1f} M upd/s {note}")

    for n in args.sizes:
        users, items = size_dims(n)
        u, i, r = get_data(users, items, n, cache)  # generate + cache before any child runs
        txt = None
        if CLI in names:
            txt = write_libmf_text(os.path.join(cache, f"libmf_{users}_{items}_{n}.txt"), u, i, r)
        # mfsgd and the LibMF CLI back to back for each (k, threads): same machine state
        for k in args.k:
            for t in args.threads:
                probe = ""
                if t > 1:
                    probe = f"; probe {cpu_capacity(t):.2f} CPUs"
                try:
                    m = mfsgd_synth(n, users, items, k, t, R, cache)
                    add(n, k, t, MFSGD, statistics.median(m["epoch_s"]),
                        f"{m['n_blocks']} blocks{probe}")
                    model_gib = (users + items) * (k + 1) * 4 / 2**30
                    mem_rows.append([f"{n / 1e6:g}M", f"{users:,} x {items:,}", k, t,
                                     f"{m['data_bytes'] / 2**30:.3f}", f"{model_gib:.3f}",
                                     f"{m['rss_data_kib'] / 2**20:.3f}",
                                     f"{m['peak_kib'] / 2**20:.3f}",
                                     f"{(m['peak_kib'] - m['rss_data_kib']) / 2**20:.3f}",
                                     f"{m['fit_s']:.2f}", f"{m['fit_s'] - sum(m['epoch_s']):.2f}"])
                except Exception as e:  # noqa: BLE001
                    tp_rows.append(failed(n, k, t, MFSGD, e))
                if txt is None:
                    continue
                p = {"k": k, "epochs": R + 1, "lr": 0.1, "reg": 0.02, "threads": t}
                try:
                    log, total = cli_log(anchors.cli, p, txt)
                except Exception as e:  # noqa: BLE001
                    tp_rows.append(failed(n, k, t, CLI, e))
                    continue
                s_it = statistics.median(b[1] - a[1] for a, b in itertools.pairwise(log))
                add(n, k, t, CLI, s_it, f"wall {total:.1f} s for {R + 1} iters; load+init+save "
                                        f"~{total - (R + 1) * s_it:.1f} s{probe}")
        if n <= 1_000_000:
            if PYLIBMF in names:
                npz = synthetic_path(users, items, n, cache)
                tasks = [{"k": k, "epochs": e, "lr": 0.1, "reg": 0.02, "threads": t, "train": npz}
                         for k in args.k for t in args.threads for e in (1, 1 + R)]
                try:
                    out = iter(pylibmf_run(tasks))
                    for k in args.k:
                        for t in args.threads:
                            t1, tn = next(out)["fit_s"][0], next(out)["fit_s"][0]
                            if tn > t1:
                                add(n, k, t, PYLIBMF, (tn - t1) / R,
                                    f"(fit {1 + R} iters - fit 1)/{R}")
                except Exception as e:  # noqa: BLE001
                    tp_rows.append(failed(n, "", "", PYLIBMF, e))
            for lib, thread_counts in ((SURPRISE, [1]), (CORNAC, args.threads)):
                if lib not in names:
                    continue
                try:
                    sp = Split(f"synth{n}", (u, i, r), (u[:1], i[:1], r[:1]), cache)
                    for k in args.k:
                        for t in thread_counts:
                            p = {"k": k, "lr": 0.002, "reg": 0.02, "threads": t}
                            t1 = anchors.fit_predict(lib, sp, dict(p, epochs=1))[0]
                            tn = anchors.fit_predict(lib, sp, dict(p, epochs=1 + R))[0]
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
            "median gap between consecutive lines is one iteration. eta 0.1, L2 0.02. PyPI "
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
    headline(rep, tp)


def headline(rep: Report, tp: list[dict]) -> None:
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


def add_section_options(ap: Parser) -> None:
    """This section's own options (run.py takes them too)."""
    ap.add_sized("--sizes", type=int, nargs="+", full=[1_000_000, 20_000_000], quick=[100_000],
                 metavar="N", help="synthetic set sizes (100000000 is opt-in: ~1.2 GiB arrays)")
    ap.add_sized("--k", type=int, nargs="+", full=[32, 64, 128], quick=[32], metavar="K",
                 help="factor counts")
    ap.add_threads([1, 2])


def parser() -> Parser:
    ap = Parser(__doc__)
    ap.add_quick("a 100K set, k 32, 1 repeat")
    add_options(ap, data=False)
    add_section_options(ap)
    return ap


if __name__ == "__main__":
    run_alone(parser(), run)
