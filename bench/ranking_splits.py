"""Section 10g: the ranking defaults on other splits of MovieLens 100K, beside the anchors.

Issue 14's defaults target is checked on a held-out set we do not have. This measures
whether the defaults' lead over implicit ALS and LightFM WARP (at the issue's settings)
is a property of the five official folds or holds on other data cut from the same
ratings (``u.data``), with section 10's protocol and code (``ranking.py``):

- ``official``: the folds u1..u5 as GroupLens made them (section 10a again);
- ``ua-like``: 10 random ratings of each user held out (the scheme of GroupLens' ua/ub
  folds), five seeds;
- ``half``: a random half of the ratings, then 20% of that half held out, five seeds:
  sparser data (about 42 interactions per user instead of 85);
- ``temporal``: each user's latest 20% of ratings (by timestamp) held out, one split:
  predicting what comes next rather than what is missing.

    python bench/ranking_splits.py --anchors ../venv-anchors/bin/python [--out FILE.md]
    python bench/ranking_splits.py --mfsgd "loss=softmax n_negatives=10"   # extra rows

``--mfsgd`` (repeatable) adds a row of mfsgd with those ``MatrixFactorization``
parameters (``key=value``, space-separated), e.g. a candidate default beside the current
one.

The splits are written as ``uN.base`` / ``uN.test`` files under ``--cache`` (they are
derived from MovieLens, so they stay outside the repository).
"""

from __future__ import annotations

import os

import numpy as np
from _common import (
    DEFAULT_CACHE,
    Parser,
    Report,
    header,
    md_table,
    parse_params,
    progress,
    run_child,
)
from ranking import (
    Jobs,
    K,
    add_anchors,
    add_defaults,
    is_anchor,
    popularity,
    summary,
    targets,
)

SPLITS = ("official", "ua-like", "half", "temporal")


def describe_all(params: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


def _write(folder: str, fold: int, rows: np.ndarray, test: np.ndarray) -> None:
    os.makedirs(folder, exist_ok=True)
    for name, part in ((f"u{fold}.base", rows[~test]), (f"u{fold}.test", rows[test])):
        np.savetxt(os.path.join(folder, name), part, fmt="%d", delimiter="\t")


def _rank_within_user(users: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Each row's 0-based position among its user's rows, ordered by ``key``."""
    order = np.lexsort((key, users))
    starts = np.flatnonzero(np.r_[True, np.diff(users[order]) != 0])
    counts = np.diff(np.r_[starts, len(users)])
    pos = np.empty(len(users), np.int64)
    pos[order] = np.arange(len(users)) - np.repeat(starts, counts)
    return pos


def make_splits(data: str, cache: str) -> dict[str, tuple[str, list[int]]]:
    """{split: (folder, folds)}; the official folds are ``data`` itself."""
    path = os.path.join(data, "u.data")
    if not os.path.exists(path):
        raise SystemExit(f"--data {data}: no u.data there (an unpacked MovieLens 100K "
                         "folder is expected; see bench/README.md)")
    rows = np.loadtxt(path, dtype=np.int64)  # user, item, rating, timestamp
    users = rows[:, 0]
    out = {"official": (data, [1, 2, 3, 4, 5])}
    root = os.path.join(cache, "ml-100k-splits")
    folds = [1, 2, 3, 4, 5]
    for f in folds:
        rng = np.random.default_rng(f)
        _write(os.path.join(root, "ua-like"), f, rows,
               _rank_within_user(users, rng.random(len(rows))) < 10)
        kept = rows[np.random.default_rng(100 + f).random(len(rows)) < 0.5]
        _write(os.path.join(root, "half"), f, kept, rng.random(len(kept)) < 0.2)
    pos = _rank_within_user(users, rows[:, 3])
    n = np.bincount(users)[users]
    _write(os.path.join(root, "temporal"), 1, rows, pos >= np.ceil(0.8 * n))
    out |= {"ua-like": (os.path.join(root, "ua-like"), folds),
            "half": (os.path.join(root, "half"), folds),
            "temporal": (os.path.join(root, "temporal"), [1])}
    return out


def main() -> None:
    ap = Parser(__doc__)
    ap.add_data()
    add_anchors(ap)
    ap.add_argument("--splits", nargs="+", choices=SPLITS, default=list(SPLITS))
    ap.add_argument("--cache", default=DEFAULT_CACHE, metavar="DIR",
                    help="where the splits are written (default %(default)s)")
    ap.add_argument("--mfsgd", action="append", default=[], metavar="'KEY=VALUE ...'",
                    help="an extra mfsgd row with these MatrixFactorization parameters "
                         "(repeatable)")
    ap.add_out()
    args = ap.parse_args()
    splits = make_splits(os.path.abspath(args.data), args.cache)
    versions = run_child("ranking:anchor_versions", python=args.anchors) if args.anchors else {}
    rep = Report(args.out)
    rep.add(header(versions))
    rep.add("## 10g. The ranking defaults on other splits of MovieLens 100K\n")
    cols, rows, secs, goals = [], {}, {}, []
    for name in args.splits:
        folder, folds = splits[name]
        progress(f"{name}: {len(folds)} fold(s) in {folder}")
        jobs = Jobs(folder, K, args.anchors)
        at = add_defaults(jobs, folds)
        more = {}
        for extra in args.mfsgd:
            params = parse_params(extra.split())
            more[f"mfsgd {describe_all(params)}"] = jobs.add("mfsgd", params, folds, "test")
        res = jobs.run()
        table = {label: summary(res[s]) for label, s in at.items()}
        ref = max((s["ndcg"] for label, s in table.items() if is_anchor(label)), default=None)
        cols.append(f"{name} ({len(folds)} fold{'s' * (len(folds) > 1)})")
        for label, s in {"most popular (training counts)": popularity(folder, folds),
                         **table, **{lb: summary(res[s]) for lb, s in more.items()}}.items():
            cell = f"{s['ndcg']:.3f}" + (f" ({s['ndcg'] / ref:.2f})" if ref else "")
            rows.setdefault(label, {})[name] = cell
            if not label.startswith("most popular"):
                secs.setdefault(label, {})[name] = f"{s['sec']:.2f}"
        goals += [[name, *row] for row in targets({"table": table, "tuned": {}})]
    rep.add("NDCG@10 at the defaults (mfsgd) and the issue's settings (anchors), mean over "
            "the folds; in brackets, the ratio to the better of the anchors on that split.\n")
    for title, cells in (("NDCG@10 (ratio to the better anchor)", rows),
                         ("fit CPU s per fold (median)", secs)):
        rep.add(md_table([f"model: {title}", *cols],
                         [[label, *(r.get(n, "-") for n in args.splits)]
                          for label, r in cells.items()]))
        rep.add("")
    if goals:
        rep.add("The defaults targets of section 10d on each split:\n")
        rep.add(md_table(["split", "target", "measured", "goal"], goals))
        rep.add("")
    rep.write()


if __name__ == "__main__":
    main()
