"""The ``mfsgd`` command (also ``python -m mfsgd``).

User mistakes (missing file, bad option, unknown id) print one line to stderr and
exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Sequence

import numpy as np

from . import __version__
from .model import MatrixFactorization

HYPER = {  # option -> (MatrixFactorization parameter, type)
    "--factors": ("n_factors", int),
    "--epochs": ("n_epochs", int),
    "--lr": ("learning_rate", float),
    "--reg-factors": ("reg_factors", float),
    "--reg-bias": ("reg_bias", float),
    "--threads": ("n_threads", int),
    "--seed": ("random_state", int),
}


DEMO_DEFAULTS = {"n_factors": 32, "n_epochs": 20, "learning_rate": 0.02, "reg_factors": 0.05,
                 "random_state": 0}


class UserError(Exception):
    pass


def _add_hyper(p: argparse.ArgumentParser, defaults: dict[str, Any] | None = None) -> None:
    """Hyper-parameter options; ``defaults`` documents a command's own defaults."""
    defaults = defaults or {}
    for opt, (name, typ) in HYPER.items():
        p.add_argument(opt, dest=name, type=typ, default=None,
                       help=f"{name} (default: {defaults.get(name, 'the model default')})")


def _hyper(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name, _ in HYPER.values()
            if getattr(args, name) is not None}


def _emit(args: argparse.Namespace, obj: dict[str, Any], text: str) -> None:
    print(json.dumps(obj) if getattr(args, "json", False) else text)


class Progress:
    """Epoch progress: a tqdm bar when tqdm is installed, else one plain line per epoch;
    nothing with --quiet or --json."""

    def __init__(self, args: argparse.Namespace, total: int) -> None:
        self.on = not (args.quiet or args.json)
        self.bar = None
        if self.on:
            from ._compat import optional_tqdm

            tqdm = optional_tqdm()
            if tqdm is not None:
                self.bar = tqdm(total=total, unit="epoch", file=sys.stderr, leave=False)

    def __call__(self, row: dict[str, Any]) -> None:
        if not self.on:
            return
        fields = {"train": f"{row['train_rmse']:.4f}"}
        if "val_rmse" in row:
            fields["val"] = f"{row['val_rmse']:.4f}"
        if self.bar is not None:
            self.bar.set_postfix(fields, refresh=False)
            self.bar.update(1)
        else:
            extra = f"  val_rmse {fields['val']}" if "val" in fields else ""
            print(f"epoch {row['epoch']:>3}  train_rmse {fields['train']}{extra}  "
                  f"{row['seconds']:.3f}s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _fit(model: MatrixFactorization, args: argparse.Namespace, data: Any, **kw: Any) -> float:
    prog = Progress(args, model.n_epochs)
    t0 = time.perf_counter()
    try:
        model.fit(data, callback=prog, **kw)
    finally:
        prog.close()
    if getattr(args, "plot", None):
        from .plotting import plot_history

        plot_history(model, path=args.plot)
    return time.perf_counter() - t0


def cmd_demo(args: argparse.Namespace) -> None:
    from .datasets import load_movielens, make_ratings

    t0 = time.perf_counter()
    seed = args.random_state if args.random_state is not None else 0
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
              "10% held out.")
    params = {**DEMO_DEFAULTS, **_hyper(args)}
    model = MatrixFactorization(**params)
    fit_s = _fit(model, args, train, eval_set=test)
    rmse = float(np.sqrt(np.mean((model.predict(test[:2]) - test[2]) ** 2)))
    updates = len(train[2]) * model.n_epochs_ / sum(h["seconds"] for h in model.history_)
    floor = "" if args.movielens else f" (noise floor {args.noise})"
    _emit(args, {"test_rmse": rmse, "noise": None if args.movielens else args.noise,
                 "fit_seconds": fit_s, "updates_per_second": updates,
                 "history": model.history_},
          f"test RMSE {rmse:.4f}{floor}; fit {fit_s:.2f}s, "
          f"{updates / 1e6:.1f} M rating-updates/s")


def _read_ratings(args: argparse.Namespace) -> tuple:
    """The DATA file of train / evaluate, read by load_csv with the --columns given."""
    from .datasets import load_csv

    cols = args.columns.split(",") if args.columns else None
    return load_csv(args.data, columns=cols, as_frame=False)


def cmd_train(args: argparse.Namespace) -> None:
    data = _read_ratings(args)
    model = MatrixFactorization(**_hyper(args))
    secs = _fit(model, args, data)
    model.save(args.output)
    _emit(args, {"output": args.output, "ratings": len(data[2]), "users": len(model.user_ids_),
                 "items": len(model.item_ids_), "train_rmse": model.history_[-1]["train_rmse"],
                 "seconds": secs},
          f"saved {args.output}: {len(model.user_ids_)} users, {len(model.item_ids_)} items, "
          f"train RMSE {model.history_[-1]['train_rmse']:.4f}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .model_selection import cross_validate

    data = _read_ratings(args)
    model = MatrixFactorization(**_hyper(args))
    metrics = tuple(args.metrics.split(","))
    res = cross_validate(model, data, cv=args.cv, metrics=metrics,
                         random_state=args.random_state)
    out = {k: [float(x) for x in v] for k, v in res.items() if k != "models"}
    summary = {k: float(np.mean(v)) for k, v in out.items()}
    lines = [f"{k:<14} mean {np.mean(v):.4f}  sd {np.std(v):.4f}" for k, v in out.items()]
    _emit(args, {"folds": out, "mean": summary}, "\n".join(lines))


def _load(path: str) -> MatrixFactorization:
    from .persistence import load_model

    return load_model(path)


def _id(model_ids: np.ndarray, raw: str) -> Any:
    return raw if model_ids.dtype.kind == "U" else int(raw)


def cmd_predict(args: argparse.Namespace) -> None:
    m = _load(args.model)
    try:
        u, i = _id(m.user_ids_, args.user), _id(m.item_ids_, args.item)
    except ValueError:
        raise UserError("this model's ids are integers; got a non-integer id") from None
    pred = float(m.predict(([u], [i]))[0])
    known = {"user_known": bool(m._state.user_map.lookup("u", [u])[0] >= 0),
             "item_known": bool(m._state.item_map.lookup("i", [i])[0] >= 0)}
    _emit(args, {"user": args.user, "item": args.item, "prediction": pred, **known},
          f"{pred:.4f}")


def cmd_recommend(args: argparse.Namespace) -> None:
    m = _load(args.model)
    try:
        user = _id(m.user_ids_, args.user)
    except ValueError:
        raise UserError("this model's ids are integers; got a non-integer user id") from None
    known = bool(m._state.user_map.lookup("u", [user])[0] >= 0)
    if not known and not args.allow_unknown:
        raise UserError(f"user {args.user!r} is not in the model (pass --allow-unknown for "
                        "the popularity fallback)")
    ids, scores = m.recommend(user, n=args.n, exclude_seen=not args.include_seen)
    rows = [{"item": v.item() if hasattr(v, "item") else v, "score": float(s)}
            for v, s in zip(ids, scores)]
    _emit(args, {"user": args.user, "known": known, "recommendations": rows},
          "\n".join(f"{r['item']}\t{r['score']:.4f}" for r in rows))


def cmd_info(args: argparse.Namespace) -> None:
    m = _load(args.model)
    info = {"users": len(m.user_ids_), "items": len(m.item_ids_),
            "n_factors": int(m.user_factors_.shape[1]), "dtype": m.user_factors_.dtype.name,
            "global_mean": m.global_mean_, "epochs": m.n_epochs_,
            "final_train_rmse": m.history_[-1]["train_rmse"] if m.history_ else None,
            "params": {k: v for k, v in m.get_params().items() if k != "dtype"}}
    _emit(args, info, "\n".join(f"{k}: {v}" for k, v in info.items()))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mfsgd", description="Biased matrix factorization by SGD.")
    p.add_argument("--version", action="version", version=f"mfsgd {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="train on generated data and print RMSE per epoch")
    d.add_argument("--users", type=int, default=20_000)
    d.add_argument("--items", type=int, default=5_000)
    d.add_argument("--ratings", type=int, default=1_000_000)
    d.add_argument("--noise", type=float, default=0.5)
    d.add_argument("--movielens", choices=["100k", "1m", "10m", "20m", "25m", "32m",
                                           "latest-small"],
                   help="train on a MovieLens set (downloaded once into the cache)")
    _add_hyper(d, DEMO_DEFAULTS)
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("train", help="train on a ratings file and save the model")
    t.add_argument("data", help="delimited file of user, item, rating")
    t.add_argument("-o", "--output", required=True, help="model file to write")
    t.add_argument("--columns", help="USER,ITEM,RATING column names or 0-based positions")
    _add_hyper(t)
    t.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="cross-validate on a ratings file")
    ev.add_argument("data")
    ev.add_argument("--cv", type=int, default=5, help="number of folds (default 5)")
    ev.add_argument("--metrics", default="rmse,mae",
                    help="comma-separated: rmse, mae, ndcg@10, precision@10, ...")
    ev.add_argument("--columns", help="USER,ITEM,RATING column names or 0-based positions")
    _add_hyper(ev)
    ev.set_defaults(func=cmd_evaluate)

    pr = sub.add_parser("predict", help="predict one rating")
    pr.add_argument("model")
    pr.add_argument("user")
    pr.add_argument("item")
    pr.set_defaults(func=cmd_predict)

    rc = sub.add_parser("recommend", help="top-N items for a user")
    rc.add_argument("model")
    rc.add_argument("user")
    rc.add_argument("-n", type=int, default=10)
    rc.add_argument("--include-seen", action="store_true", help="keep items rated in training")
    rc.add_argument("--allow-unknown", action="store_true",
                    help="serve an unknown user by item popularity instead of failing")
    rc.set_defaults(func=cmd_recommend)

    i = sub.add_parser("info", help="describe a saved model")
    i.add_argument("model")
    i.set_defaults(func=cmd_info)

    for sp in (d, t):
        sp.add_argument("--plot", metavar="PNG", help="save the RMSE-per-epoch curve here")
    for sp in (d, t, ev, pr, rc, i):
        sp.add_argument("--json", action="store_true", help="machine-readable output")
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (UserError, ValueError, TypeError, OSError, ImportError) as e:
        print(f"mfsgd {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mfsgd {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0
