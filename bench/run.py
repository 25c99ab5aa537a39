"""Every benchmark section in one run, written to bench/RESULTS.md.

    python bench/run.py [--sections accuracy,synthetic,...] [--skip NAME,...] [--quick]
                        [--out bench/RESULTS.md] [--wait-for-load 1.0] [--data DIR]
                        [--libmf-cli PATH/mf-train] [--repeats 3] [--cache DIR]
                        [--sizes 1000000 20000000] [--k 32 64 128] [--threads 1 2]
                        [--plot FILE.png] [--plot-convergence FILE.png]

Sections, in RESULTS.md's order; each is also a script of its own (python bench/NAME.py,
same options, one header):

  accuracy      1. MovieLens 100K: accuracy and fit time of mfsgd and the anchors
  synthetic     2. synthetic sets: throughput, memory, roofline (--sizes, --k, --threads)
  curves        3. test RMSE against seconds on u1 (--plot)
  convergence   4. learning-rate schedules and cache blocking (--plot-convergence)
  dask_scaling  5. Dask LocalCluster beside the single-machine fit
  recommend     6. recommend_all against a NumPy baseline
  throughput    8. kernel variants by row width

Sections 1-4 take the options above; 5, 6 and 8 run at their own defaults (their smallest
settings under --quick): run them alone for other settings. Section 7 (the portable
build against -march=native) needs a second build: see bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import accuracy
import convergence
import curves
import dask_scaling
import recommend
import synthetic
import throughput
from _common import HERE, Parser, Report, check_movielens, header, progress
from libs import Anchors, add_options

SECTIONS = {"accuracy": accuracy, "synthetic": synthetic, "curves": curves,
            "convergence": convergence, "dask_scaling": dask_scaling, "recommend": recommend,
            "throughput": throughput}
COMPARISON = ("accuracy", "synthetic", "curves", "convergence")  # run(rep, args, anchors)
USES_MOVIELENS = ("accuracy", "curves", "convergence")
RESULTS = os.path.join(HERE, "RESULTS.md")
CAVEAT = ("- Caveat: 2 vCPUs (KVM guest, shared with other developers' jobs) whose combined "
          "capacity varies with the host: often ~1.1-1.2 cores together, sometimes nearly 2. "
          "Read the 2-thread rows with the CPU probe printed next to them (section 2).")


def section_list(text: str) -> list[str]:
    names = [s for s in text.split(",") if s]
    unknown = [s for s in names if s not in SECTIONS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown section(s) {', '.join(unknown)}; choose "
                                         f"from {', '.join(SECTIONS)}")
    return names


def own_args(name: str, args: argparse.Namespace) -> argparse.Namespace:
    """A section outside the comparison at its RESULTS.md settings (``--quick`` carried
    over), reading the same cache as the rest of the run."""
    mod = SECTIONS[name]
    ns = mod.parser().parse_args(getattr(mod, "RESULTS_ARGV", []) + ["--quick"] * args.quick)
    if hasattr(ns, "cache"):
        ns.cache = args.cache
    return ns


def wait_for_load(limit: float | None, max_wait: float = 900) -> str:
    """Sleep in 60 s steps until the 1-minute load is at most ``limit``; the wait, for
    the header."""
    if limit is None:
        return ""
    t0 = time.time()
    while os.getloadavg()[0] > limit and time.time() - t0 < max_wait:
        progress(f"load average {os.getloadavg()[0]:.2f} > {limit}: waiting 60 s")
        time.sleep(60)
    waited = time.time() - t0
    return f"waited {waited:.0f} s for the 1-min load to drop below {limit}" if waited > 1 else ""


def parser() -> Parser:
    ap = Parser(__doc__)
    ap.add_argument("--sections", type=section_list, default=list(SECTIONS), metavar="A,B",
                    help="sections to run, in RESULTS.md's order whatever the order given "
                         "(default: all)")
    ap.add_argument("--skip", type=section_list, default=[], metavar="A,B",
                    help="sections to leave out")
    ap.add_quick("fold u1 only, tiny grids, a 100K synthetic set, k 32, 1 repeat; sections "
                 "5, 6 and 8 at their smallest")
    ap.add_argument("--wait-for-load", type=float, default=None, metavar="LOAD",
                    help="before starting, wait (60 s steps, up to 15 min) until the 1-minute "
                         "load average is at most LOAD")
    add_options(ap, out=False)
    ap.add_out(f"default: {RESULTS} for a full run, all sections without --quick; a smoke or "
               "partial run only prints unless given --out")
    for section in (synthetic, curves, convergence):
        section.add_section_options(ap)
    return ap


def main() -> None:
    args = parser().parse_args()
    names = [s for s in SECTIONS if s in args.sections and s not in args.skip]
    if any(s in USES_MOVIELENS for s in names):
        check_movielens(args.data)  # before an hour of other sections, not after
    if args.out is None and names == list(SECTIONS) and not args.quick:
        # only a full run may replace RESULTS.md (and its figures): a smoke or partial run
        # would wipe the other sections' measurements
        args.out = RESULTS
    waited = wait_for_load(args.wait_for_load)
    rep = Report(args.out)
    t_start = time.perf_counter()
    # the anchors (and their imports) only when a comparison section runs
    with (Anchors(args.libmf_cli, args.data, args.quick, args.cache)
          if any(s in COMPARISON for s in names) else contextlib.nullcontext()) as anchors:
        rep.add(header(anchors.versions if anchors else None,
                       (anchors.header_lines(args) if anchors else []) + [CAVEAT], waited))
        for name in names:
            if name in COMPARISON:  # a result only where a later section reads it
                anchors.results[name] = SECTIONS[name].run(rep, args, anchors)
            else:
                SECTIONS[name].run(rep, own_args(name, args))
            rep.write()
    load1 = os.getloadavg()
    rep.add(f"Total run time {time.perf_counter() - t_start:.0f} s; load average at the end "
            f"(1/5/15 min): {load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f}.")
    rep.write()


if __name__ == "__main__":
    main()
