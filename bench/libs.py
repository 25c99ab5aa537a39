"""How each library is called, timed and scored, for the comparison sections.

Every adapter takes plain arrays (users, items, ratings), trains with one generic
setting ``{"k", "epochs", "lr", "reg"}`` (plus library-specific extras) and returns
fit seconds and clipped predictions. Data preparation that a library does *outside*
its fit call (Surprise's trainset, Cornac's Dataset, LibMF's text files) is not timed;
mfsgd's fit includes its own id mapping and layout. ``Split`` prepares each library's
input of a train/test pair once; ``Anchors`` is what the sections of one run share (the
libraries found, LibMF's command line, the MovieLens splits, earlier sections' results).

The PyPI ``libmf`` wrapper prints on import and leaks the C model, so it runs in a
child process. Its ``fit`` reads the ``(n, 3)`` array row by row (C order) while
``predict`` reads the ``(n, 2)`` array column by column (``X[i], X[i + n]``), so
predictions need a Fortran-ordered array. Its defaults are L1 regularisation 0.04 and
L2 0: both are set explicitly here.

LibMF (CLI and PyPI) has no biases and no global mean in the model (it predicts
``p_u . q_v``; it standardises ratings internally) and uses per-coordinate adaptive
(AdaGrad-like) learning rates, so ``lr`` means its initial step ``eta``. An id it did
not see in training is predicted as the training mean (``model->b``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _common import (
    Report,
    get_data,
    header,
    median_of,
    movielens_fold,
    progress,
    rmse_mae,
    rss_kib,
    run_child,
    timed,
)

LO, HI = 1.0, 5.0  # MovieLens rating range: every library's predictions are clipped to it
MFSGD, SURPRISE, CORNAC, CLI, PYLIBMF = "mfsgd", "Surprise", "Cornac", "LibMF CLI", "libmf (PyPI)"
LIBMF_FAMILY = (CLI, PYLIBMF)


def scores(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """RMSE and MAE of predictions clipped to the rating range."""
    return rmse_mae(np.clip(np.asarray(pred, dtype=np.float64), LO, HI), truth)


def fmt_p(p: dict, lib: str) -> str:
    """A setting as the tables show it (LibMF's rate is its initial step eta)."""
    lr = "eta" if lib in LIBMF_FAMILY else "lr"
    s = f"k={p['k']}, {p['epochs']} ep, {lr} {p['lr']}, reg {p['reg']}"
    for key in ("reg_bias", "lr_decay", "init_std"):
        if key in p:
            s += f", {key} {p[key]}"
    if p.get("adagrad"):
        s += ", AdaGrad"
    return s


def available() -> dict[str, str | None]:
    """Installed anchor libraries -> version (None when missing)."""
    import importlib.util
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for mod, name in (("surprise", SURPRISE), ("cornac", CORNAC)):
        try:
            out[name] = getattr(__import__(mod), "__version__", "?")
        except Exception:  # noqa: BLE001 - any import failure means "not available"
            out[name] = None
    # imported only in a child (it prints on import), so only looked up here
    out[PYLIBMF] = None
    if importlib.util.find_spec("libmf"):
        try:
            out[PYLIBMF] = version("libmf")
        except PackageNotFoundError:  # importable without metadata: a source checkout
            out[PYLIBMF] = "?"
    return out


# ----------------------------------------------------------------------------- mfsgd
def mfsgd_params(p: dict) -> dict:
    q = {"n_factors": p["k"], "n_epochs": p["epochs"], "learning_rate": p["lr"],
         "reg_factors": p["reg"], "reg_bias": p.get("reg_bias", p["reg"]),
         "random_state": 0, "n_threads": p.get("threads", 1)}
    for extra in ("lr_decay", "init_std", "adagrad"):
        if extra in p:
            q[extra] = p[extra]
    return q


def mfsgd_fit_predict(train, test, p: dict):
    import mfsgd

    m = mfsgd.MatrixFactorization(**mfsgd_params(p))
    fit_s, _ = timed(m.fit, train)
    return fit_s, m.predict(test[:2])


def mfsgd_curve(train, test, p: dict) -> list[tuple[int, float, float]]:
    """(epoch, seconds since fit start, test RMSE) from one fit with eval_set.

    The clock is read in fit's per-epoch callback, so it includes mfsgd's setup and its
    own per-epoch validation pass (a vectorised RMSE over the test ratings).
    """
    import mfsgd

    stamps: list[float] = []
    m = mfsgd.MatrixFactorization(**mfsgd_params(p))
    t0 = time.perf_counter()
    m.fit(train, eval_set=test, callback=lambda row: stamps.append(time.perf_counter()))
    return [(h["epoch"], s - t0, h["val_rmse"]) for h, s in zip(m.history_, stamps, strict=True)]


def mfsgd_synth(n: int, users: int, items: int, k: int, threads: int, epochs: int,
                cache: str, timeout: float = 1800) -> dict:
    """One mfsgd fit on a synthetic set in a fresh process: epoch seconds, fit wall
    seconds, blocks, resident memory once the data are loaded (``rss_data_kib``), the
    process's peak (``peak_kib``) and the arrays' bytes. Call ``get_data`` first: then
    the child only loads the set from the cache, and its peak is the fit's, not that of
    generating the set."""
    return run_child("libs:mfsgd_synth_child", n, users, items, k, threads, epochs, cache,
                     timeout=timeout)


def mfsgd_synth_child(n, users, items, k, threads, epochs, cache) -> dict:
    import mfsgd

    u, i, r = get_data(users, items, n, cache)
    before = rss_kib("VmRSS")
    m = mfsgd.MatrixFactorization(n_factors=k, n_epochs=epochs, n_threads=threads,
                                  random_state=0, learning_rate=0.002)
    fit_s, _ = timed(m.fit, (u, i, r))
    return {"epoch_s": [h["seconds"] for h in m.history_], "fit_s": fit_s,
            "n_blocks": m.n_blocks_, "rss_data_kib": before, "peak_kib": rss_kib("VmHWM"),
            "data_bytes": u.nbytes + i.nbytes + r.nbytes}


# ----------------------------------------------------------------------------- Surprise
class SurpriseData:
    def __init__(self, train):
        import pandas as pd
        from surprise import Dataset, Reader

        lo, hi = float(np.min(train[2])), float(np.max(train[2]))
        df = pd.DataFrame({"u": train[0], "i": train[1], "r": train[2]})
        ds = Dataset.load_from_df(df, Reader(rating_scale=(lo, hi)))
        self.trainset = ds.build_full_trainset()


def surprise_fit(data: SurpriseData, p: dict):
    from surprise import SVD

    algo = SVD(n_factors=p["k"], n_epochs=p["epochs"], lr_all=p["lr"], reg_all=p["reg"],
               random_state=0)
    fit_s, _ = timed(algo.fit, data.trainset)
    return fit_s, algo


def surprise_predict(algo, test) -> np.ndarray:
    # Surprise's own predict: mu (+b_u if known) (+b_i if known) (+p.q if both), clipped
    return np.array([algo.predict(u, i).est
                     for u, i in zip(test[0].tolist(), test[1].tolist(), strict=True)])


# ----------------------------------------------------------------------------- Cornac
class CornacData:
    def __init__(self, train):
        from cornac.data import Dataset

        self.train = Dataset.from_uir(list(zip(train[0].astype(str).tolist(),
                                               train[1].astype(str).tolist(),
                                               train[2].astype(float).tolist(), strict=True)),
                                      seed=0)


def cornac_fit(data: CornacData, p: dict):
    from cornac.models import MF

    # num_threads=0 (Cornac's default) means all cores with Hogwild updates: not
    # reproducible, so threads are always given; the CPU backend is Cython SGD.
    model = MF(k=p["k"], max_iter=p["epochs"], learning_rate=p["lr"], lambda_reg=p["reg"],
               use_bias=True, early_stop=False, num_threads=p.get("threads", 1), seed=0,
               backend="cpu", optimizer="sgd", verbose=False)
    fit_s, _ = timed(model.fit, data.train)
    return fit_s, model


def cornac_predict(model, data: CornacData, test) -> np.ndarray:
    umap, imap = data.train.uid_map, data.train.iid_map
    ui = np.array([umap.get(u, -1) for u in test[0].astype(str).tolist()])
    ii = np.array([imap.get(i, -1) for i in test[1].astype(str).tolist()])
    ku, ki = ui >= 0, ii >= 0
    pred = np.full(len(ui), float(model.global_mean))
    pred[ku] += model.u_biases[ui[ku]]
    pred[ki] += model.i_biases[ii[ki]]
    both = ku & ki
    pred[both] += np.einsum("ij,ij->i", model.u_factors[ui[both]], model.i_factors[ii[both]])
    return pred


# ----------------------------------------------------------------------------- LibMF common
def libmf_index(train, test):
    """0-based contiguous ids from the training set; unseen test ids map past the end
    (LibMF returns its training mean for them)."""
    uids, uinv = np.unique(train[0], return_inverse=True)
    iids, iinv = np.unique(train[1], return_inverse=True)

    def look(ids, x):
        pos = np.minimum(np.searchsorted(ids, x), len(ids) - 1)
        return np.where(ids[pos] == x, pos, len(ids)).astype(np.int32)

    tr = (uinv.astype(np.int32), iinv.astype(np.int32), train[2].astype(np.float32))
    te = (look(uids, test[0]), look(iids, test[1]), test[2].astype(np.float32))
    return tr, te


def write_libmf_text(path: str, u, i, r) -> str:
    """'user item rating' lines (LibMF's text format); written atomically, once."""
    if os.path.exists(path):
        return path
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".part"
    step = 2_000_000
    with open(tmp, "w") as f:
        for s in range(0, len(r), step):
            block = np.column_stack([u[s:s + step], i[s:s + step]]).astype(np.int64)
            rr = np.asarray(r[s:s + step], dtype=np.float64)
            lines = [f"{a} {b} {c:.4f}"
                     for (a, b), c in zip(block.tolist(), rr.tolist(), strict=True)]
            f.write("\n".join(lines))
            f.write("\n")
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- LibMF CLI
ITER_RE = re.compile(r"^\s*(\d+)\s+([-\d.eE+]+)\s+([-\d.eE+]+)")


def cli_version(cli: str) -> str:
    """The git commit of the checkout the binary sits in, else a hash of the binary."""
    d = os.path.dirname(os.path.abspath(cli))
    try:
        with open(os.path.join(d, ".git", "HEAD")) as f:
            ref = f.read().strip()
        if ref.startswith("ref:"):
            with open(os.path.join(d, ".git", ref.split()[1])) as f:
                ref = f.read().strip()
        return f"git {ref[:12]}"
    except OSError:
        with open(cli, "rb") as f:
            return "sha256 " + hashlib.sha256(f.read()).hexdigest()[:12]


def cli_cmd(cli: str, p: dict, train_txt: str, model_path: str, quiet=True, valid=None):
    cmd = [cli, "-k", str(p["k"]), "-t", str(p["epochs"]), "-r", str(p["lr"]),
           "-l2", str(p["reg"]), "-s", str(p.get("threads", 1))]
    if valid:
        cmd += ["-p", valid]
    if quiet:
        cmd.append("--quiet")
    return cmd + [train_txt, model_path]


def cli_fit_predict(cli: str, p: dict, train_txt: str, test_txt: str):
    """Wall seconds of `mf-train --quiet` (includes reading the text file and writing the
    model file) and the predictions of `mf-predict` for the test file."""
    with tempfile.TemporaryDirectory(prefix="mfsgd-bench-cli-") as d:
        model = os.path.join(d, "model.txt")
        out = os.path.join(d, "pred.txt")
        fit_s, _ = timed(subprocess.run, cli_cmd(cli, p, train_txt, model), check=True,
                         capture_output=True)
        subprocess.run([cli.replace("mf-train", "mf-predict"), test_txt, model, out],
                       check=True, capture_output=True)
        return fit_s, np.loadtxt(out, dtype=np.float64, ndmin=1)


def cli_log(cli: str, p: dict, train_txt: str, valid: str | None = None, timeout=3600):
    """Run verbose `mf-train`, timestamping each per-iteration line as it is printed
    (LibMF flushes after every iteration). Returns (rows, total wall seconds) where a row
    is (iteration 1-based, seconds since start, tr_rmse, va_rmse or None)."""
    with tempfile.TemporaryDirectory(prefix="mfsgd-bench-cli-") as d:
        cmd = cli_cmd(cli, p, train_txt, os.path.join(d, "model.txt"), quiet=False, valid=valid)
        rows = []
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        try:
            for line in proc.stdout:
                now = time.perf_counter()
                if ITER_RE.match(line):
                    parts = line.split()
                    va = float(parts[2]) if valid else None
                    rows.append((int(parts[0]) + 1, now - t0, float(parts[1]), va))
            proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
        total = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}")
        return rows, total


# ----------------------------------------------------------------------------- PyPI libmf
def pylibmf_run(tasks: list[dict], timeout: float = 1800) -> list[dict]:
    """Run tasks in a child process; each task: train/test .npz paths (0-based int32 u, i,
    float32 r), k, epochs, lr, reg, threads, repeats. Returns fit_s list (+ predictions
    as a list when a test set is given)."""
    return run_child("libs:pylibmf_child", tasks, timeout=timeout)


def pylibmf_child(tasks: list[dict]) -> list[dict]:
    with contextlib.redirect_stdout(io.StringIO()):
        from libmf import mf as libmf_mf

    @functools.cache
    def load(path):
        z = np.load(path)
        return z["u"], z["i"], z["r"]

    results = []
    for t in tasks:
        u, i, r = load(t["train"])
        X = np.ascontiguousarray(np.column_stack([u, i, r]).astype(np.float32))  # row-major
        fits, model = [], None
        for _ in range(t.get("repeats", 1)):
            model = libmf_mf.MF(k=t["k"], nr_iters=t["epochs"], nr_threads=t.get("threads", 1),
                                lambda_p1=0.0, lambda_q1=0.0, lambda_p2=t["reg"],
                                lambda_q2=t["reg"], eta=t["lr"], quiet=True)
            fits.append(timed(model.fit, X)[0])
        res: dict[str, Any] = {"fit_s": fits}
        if t.get("test"):
            tu, ti, _ = load(t["test"])
            Xt = np.asfortranarray(np.column_stack([tu, ti]).astype(np.float32))  # column-major
            res["pred"] = np.asarray(model.predict(Xt), dtype=np.float64).tolist()
        results.append(res)
    return results


# ============================================================================ one run
class Split:
    """A train/test pair, with each library's own input prepared once (not timed)."""

    def __init__(self, name: str, train, test, work: str):
        self.name, self.train, self.test, self.work = name, train, test, work

    @functools.cached_property
    def surprise(self) -> SurpriseData:
        return SurpriseData(self.train)

    @functools.cached_property
    def cornac(self) -> CornacData:
        return CornacData(self.train)

    @functools.cached_property
    def _libmf(self) -> dict[str, str]:
        tr, te = libmf_index(self.train, self.test)
        paths = {}
        for part, (u, i, r) in (("train", tr), ("test", te)):
            base = os.path.join(self.work, f"{self.name}.{part}")
            np.savez(base + ".npz", u=u, i=i, r=r)
            write_libmf_text(base + ".txt", u, i, r)
            paths[part] = base
        return paths

    def libmf_txt(self) -> tuple[str, str]:
        return self._libmf["train"] + ".txt", self._libmf["test"] + ".txt"

    def libmf_npz(self) -> tuple[str, str]:
        return self._libmf["train"] + ".npz", self._libmf["test"] + ".npz"


class Anchors:
    """What the comparison sections of one run share: the libraries to run (mfsgd and
    every anchor found), the LibMF command line, the MovieLens folds and the validation
    split carved out of u1.base, and ``results`` of earlier sections (section 3 plots
    section 1's grid-best settings). A context manager: it owns a scratch folder."""

    def __init__(self, cli: str | None, data: str | None, quick: bool, cache: str):
        self.cli, self.data, self.quick = cli, data, quick
        if self.cli and not os.access(self.cli, os.X_OK):
            sys.exit(f"--libmf-cli {self.cli}: not an executable file")
        self.versions = available()
        self.names = [MFSGD] + [k for k in (SURPRISE, CORNAC) if self.versions[k]]
        if self.cli:
            self.names.append(CLI)
        if self.versions[PYLIBMF]:
            self.names.append(PYLIBMF)
        self.missing = [k for k, v in self.versions.items() if not v]
        if self.missing:
            progress(f"not installed, their rows are skipped: {', '.join(self.missing)} "
                     "(bench/README.md says how to install them)")
        os.makedirs(cache, exist_ok=True)
        self.work = tempfile.mkdtemp(prefix="ml100k-", dir=cache)  # LibMF inputs
        self.results: dict[str, Any] = {}

    def __enter__(self) -> Anchors:
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.work, ignore_errors=True)

    def header_lines(self, args: argparse.Namespace) -> list[str]:
        run = f"- Libraries run: {', '.join(self.names)}; repeats {args.repeats}"
        if hasattr(args, "sizes"):  # the synthetic section's options
            run += (f"; synthetic sizes {', '.join(f'{n:,}' for n in args.sizes)}; k {args.k}; "
                    f"threads {args.threads}")
        lines = [f"- LibMF CLI: {self.cli} ({cli_version(self.cli)})" if self.cli
                 else "- LibMF CLI: not given (--libmf-cli)", run]
        if self.missing:
            lines.append(f"- Not installed, their rows are skipped: {', '.join(self.missing)}")
        return lines

    @functools.cached_property
    def folds(self) -> list[Split]:
        """u1..u5 (u1 only with --quick)."""
        return [Split(f"u{k}", *movielens_fold(self.data, k), self.work)
                for k in ([1] if self.quick else [1, 2, 3, 4, 5])]

    @functools.cached_property
    def val(self) -> Split:
        """90/10 split of u1.base: settings are chosen on it, never on the test folds."""
        from mfsgd.model_selection import train_test_split

        vtr, vte = train_test_split(self.folds[0].train, test_size=0.1, random_state=0)
        return Split("u1val", vtr, vte, self.work)

    def fit_predict(self, lib: str, s: Split, p: dict):
        if lib == MFSGD:
            return mfsgd_fit_predict(s.train, s.test, p)
        if lib == SURPRISE:
            fit_s, algo = surprise_fit(s.surprise, p)
            return fit_s, surprise_predict(algo, s.test)
        if lib == CORNAC:
            fit_s, model = cornac_fit(s.cornac, p)
            return fit_s, cornac_predict(model, s.cornac, s.test)
        if lib == CLI:
            return cli_fit_predict(self.cli, p, *s.libmf_txt())
        raise ValueError(lib)

    def evaluate(self, lib: str, splits: list[Split], configs: list[dict], repeats: int):
        """For every config and split: rmse, mae, fit_s (median of repeats)."""
        out = []
        if lib == PYLIBMF:
            tasks = [dict(p, train=s.libmf_npz()[0], test=s.libmf_npz()[1], repeats=repeats)
                     for p in configs for s in splits]
            res = iter(pylibmf_run(tasks))
            for _ in configs:
                rows = []
                for s in splits:
                    r = next(res)
                    rmse, mae = scores(r["pred"], s.test[2])
                    rows.append({"rmse": rmse, "mae": mae, "fit_s": statistics.median(r["fit_s"])})
                out.append(rows)
            return out
        for p in configs:
            rows = []
            for s in splits:
                fit_s, pred = median_of(lambda s=s, p=p: self.fit_predict(lib, s, p), repeats)
                rmse, mae = scores(pred, s.test[2])
                rows.append({"rmse": rmse, "mae": mae, "fit_s": fit_s})
            out.append(rows)
        return out

    def curve(self, lib: str, s: Split, p: dict, epochs: list[int], repeats: int = 1):
        """[(epoch, seconds, test RMSE)]: section 3's notes say how each is timed."""
        emax = max(epochs)
        if lib in (MFSGD, CLI):  # one run gives the whole curve: median time per epoch
            runs = []
            for _ in range(repeats):
                if lib == MFSGD:
                    runs.append(mfsgd_curve(s.train, s.test, dict(p, epochs=emax)))
                else:
                    rows, _ = cli_log(self.cli, dict(p, epochs=emax), s.libmf_txt()[0],
                                      valid=s.libmf_txt()[1])
                    runs.append([(it, t, va) for it, t, _, va in rows])
            return [(pt[0], statistics.median(r[j][1] for r in runs), pt[2])
                    for j, pt in enumerate(runs[0])]
        if lib == PYLIBMF:
            tasks = [dict(p, epochs=e, train=s.libmf_npz()[0], test=s.libmf_npz()[1],
                          repeats=repeats) for e in epochs]
            pts = [(e, statistics.median(r["fit_s"]), scores(r["pred"], s.test[2])[0])
                   for e, r in zip(epochs, pylibmf_run(tasks), strict=True)]
        else:
            pts = []
            for e in epochs:
                fit_s, pred = median_of(lambda e=e: self.fit_predict(lib, s, dict(p, epochs=e)),
                                        repeats)
                pts.append((e, fit_s, scores(pred, s.test[2])[0]))
        # a fit of more epochs cannot take less time: keep timer noise from reordering them
        out, tmax = [], 0.0
        for e, t, r in pts:
            tmax = max(tmax, t)
            out.append((e, tmax, r))
        return out


def add_options(ap, data: bool = True, out: bool = True) -> None:
    """The options of the comparison sections (``--data`` where MovieLens is used;
    ``--out`` unless the caller describes its own)."""
    if data:
        ap.add_data()
    ap.add_argument("--libmf-cli", default=None, metavar="PATH/mf-train",
                    help="LibMF's mf-train (mf-predict next to it); without it the LibMF CLI "
                         "rows are skipped")
    ap.add_repeats(3, quick=1)
    ap.add_cache()
    if out:
        ap.add_out()


def run_alone(ap, section: Callable[[Report, argparse.Namespace, Anchors], Any]) -> None:
    """``main`` of a comparison section: header with the libraries found, the section."""
    args = ap.parse_args()
    with Anchors(args.libmf_cli, getattr(args, "data", None), args.quick, args.cache) as anchors:
        rep = Report(args.out)
        rep.add(header(anchors.versions, anchors.header_lines(args)))
        section(rep, args, anchors)
        rep.write()
