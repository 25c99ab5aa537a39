"""Adapters that train and score each library the same way, for bench/run.py.

Every adapter takes plain arrays (users, items, ratings), trains with one generic
setting ``{"k", "epochs", "lr", "reg"}`` (plus library-specific extras) and returns
fit seconds and clipped predictions. Data preparation that a library does *outside*
its fit call (Surprise's trainset, Cornac's Dataset, LibMF's text files) is not timed;
mfsgd's fit includes its own id mapping and layout.

The PyPI ``libmf`` wrapper prints on import and leaks the C model, so it runs in a
child process (``python bench/libs.py pylibmf JOB.json``). Its ``fit`` reads the
``(n, 3)`` array row by row (C order) while ``predict`` reads the ``(n, 2)`` array
column by column (``X[i], X[i + n]``), so predictions need a Fortran-ordered array.
Its defaults are L1 regularisation 0.04 and L2 0: both are set explicitly here.

LibMF (CLI and PyPI) has no biases and no global mean in the model (it predicts
``p_u . q_v``; it standardises ratings internally) and uses per-coordinate adaptive
(AdaGrad-like) learning rates, so ``lr`` means its initial step ``eta``. An id it did
not see in training is predicted as the training mean (``model->b``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
LO, HI = 1.0, 5.0  # MovieLens rating range: every library's predictions are clipped to it


def scores(pred: np.ndarray, truth: np.ndarray, clip: bool = True) -> tuple[float, float]:
    p = np.asarray(pred, dtype=np.float64)
    if clip:
        p = np.clip(p, LO, HI)
    err = p - np.asarray(truth, dtype=np.float64)
    return float(np.sqrt(np.mean(err**2))), float(np.mean(np.abs(err)))


def available() -> dict[str, str | None]:
    """Installed anchor libraries -> version (None when missing)."""
    out: dict[str, str | None] = {}
    for mod, name in (("surprise", "Surprise"), ("cornac", "Cornac")):
        try:
            m = __import__(mod)
            out[name] = getattr(m, "__version__", "?")
        except Exception:  # noqa: BLE001 - any import failure means "not available"
            out[name] = None
    try:
        from importlib.metadata import version
        import importlib.util
        out["libmf (PyPI)"] = version("libmf") if importlib.util.find_spec("libmf") else None
    except Exception:  # noqa: BLE001
        out["libmf (PyPI)"] = None
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
    t = time.perf_counter()
    m.fit(train)
    fit_s = time.perf_counter() - t
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
    return [(h["epoch"], s - t0, h["val_rmse"]) for h, s in zip(m.history_, stamps)]


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
    t = time.perf_counter()
    algo.fit(data.trainset)
    return time.perf_counter() - t, algo


def surprise_predict(algo, test) -> np.ndarray:
    # Surprise's own predict: mu (+b_u if known) (+b_i if known) (+p.q if both), clipped
    return np.array([algo.predict(u, i).est for u, i in zip(test[0].tolist(), test[1].tolist())])


# ----------------------------------------------------------------------------- Cornac
class CornacData:
    def __init__(self, train):
        from cornac.data import Dataset
        self.train = Dataset.from_uir(list(zip(train[0].astype(str).tolist(),
                                               train[1].astype(str).tolist(),
                                               train[2].astype(float).tolist())), seed=0)


def cornac_fit(data: CornacData, p: dict):
    from cornac.models import MF
    # num_threads=0 (Cornac's default) means all cores with Hogwild updates: not
    # reproducible, so threads are always given; the CPU backend is Cython SGD.
    model = MF(k=p["k"], max_iter=p["epochs"], learning_rate=p["lr"], lambda_reg=p["reg"],
               use_bias=True, early_stop=False, num_threads=p.get("threads", 1), seed=0,
               backend="cpu", optimizer="sgd", verbose=False)
    t = time.perf_counter()
    model.fit(data.train)
    return time.perf_counter() - t, model


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
            lines = [f"{a} {b} {c:.4f}" for (a, b), c in zip(block.tolist(), rr.tolist())]
            f.write("\n".join(lines))
            f.write("\n")
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- LibMF CLI
ITER_RE = re.compile(r"^\s*(\d+)\s+([-\d.eE+]+)\s+([-\d.eE+]+)")


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
        t = time.perf_counter()
        subprocess.run(cli_cmd(cli, p, train_txt, model), check=True, capture_output=True)
        fit_s = time.perf_counter() - t
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
                m = ITER_RE.match(line)
                if m:
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
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(tasks, f)
        job = f.name
    try:
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "pylibmf", job],
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"PyPI libmf child failed ({out.returncode}): "
                               f"{out.stderr.strip()[-400:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        os.remove(job)


def _pylibmf_child(job: str) -> None:
    with contextlib.redirect_stdout(io.StringIO()):
        from libmf import mf as libmf_mf
    with open(job) as f:
        tasks = json.load(f)
    cache: dict[str, np.ndarray] = {}

    def load(path):
        if path not in cache:
            z = np.load(path)
            cache[path] = (z["u"], z["i"], z["r"])
        return cache[path]

    results = []
    for t in tasks:
        u, i, r = load(t["train"])
        X = np.ascontiguousarray(np.column_stack([u, i, r]).astype(np.float32))  # row-major
        fits, model = [], None
        for _ in range(t.get("repeats", 1)):
            model = libmf_mf.MF(k=t["k"], nr_iters=t["epochs"], nr_threads=t.get("threads", 1),
                                lambda_p1=0.0, lambda_q1=0.0, lambda_p2=t["reg"],
                                lambda_q2=t["reg"], eta=t["lr"], quiet=True)
            s = time.perf_counter()
            model.fit(X)
            fits.append(time.perf_counter() - s)
        res = {"fit_s": fits}
        if t.get("test"):
            tu, ti, _ = load(t["test"])
            Xt = np.asfortranarray(np.column_stack([tu, ti]).astype(np.float32))  # column-major
            res["pred"] = np.asarray(model.predict(Xt), dtype=np.float64).tolist()
        results.append(res)
    print(json.dumps(results))


# ----------------------------------------------------------------------------- mfsgd child
MFSGD_CHILD = r"""
import json, sys, time
sys.path.insert(0, {here!r})
import contextlib, io
from throughput import get_data
import mfsgd

def status(key):  # kB; VmHWM is this process's own peak (ru_maxrss can carry the parent's)
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(key + ":"))

n, users, items, k, threads, epochs, cache = {args}
with contextlib.redirect_stdout(io.StringIO()):
    u, i, r = get_data(users, items, n, cache)
before = status("VmRSS")
t = time.perf_counter()
m = mfsgd.MatrixFactorization(n_factors=k, n_epochs=epochs, n_threads=threads, random_state=0,
                              learning_rate=0.002).fit((u, i, r))
fit_s = time.perf_counter() - t
print(json.dumps({{"epoch_s": [h["seconds"] for h in m.history_], "fit_s": fit_s,
                  "n_blocks": m.n_blocks_, "rss_data_kib": before, "peak_kib": status("VmHWM"),
                  "data_bytes": u.nbytes + i.nbytes + r.nbytes}}))
"""


def mfsgd_synth(n, users, items, k, threads, epochs, cache, timeout=1800) -> dict:
    """One mfsgd fit on a cached synthetic set in a fresh process: epoch seconds, fit wall
    seconds, RSS once the data are loaded and the process's peak RSS (VmHWM). Not
    ru_maxrss: on Linux a child's ru_maxrss starts from the parent's high-water mark, so
    a big parent would inflate it."""
    code = MFSGD_CHILD.format(here=HERE, args=(n, users, items, k, threads, epochs, cache))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip()[-400:])
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "pylibmf":
        _pylibmf_child(sys.argv[2])
    else:
        sys.exit("internal helper of bench/run.py")
