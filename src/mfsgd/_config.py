"""Typed, validated hyper-parameters: ``FitConfig`` and the one function that builds it.

The estimator stores its constructor arguments unchanged (scikit-learn's contract); every
fit, partial_fit, load and Dask fit turns them into a ``FitConfig`` through
``make_config``, so each rule and message lives in one place and the training code reads
typed attributes instead of a dict.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import _sgd
from ._validation import (
    check_bool,
    check_dtype,
    check_float,
    check_int,
    check_random_state,
    check_real_or_none,
)

MAX_THREADS = 1024
MAX_BLOCKS = 255
_INIT_STD_MAX = float(np.sqrt(np.finfo(np.float32).max))

#: The public loss names, squared first (the default).
LOSSES = ("squared", "bpr", "warp", "softmax")
RANKING_LOSSES = LOSSES[1:]

#: Defaults of the parameters whose good value depends on the loss (``None`` in the
#: estimator means "the loss's default"). Squared: the values of every release before
#: the ranking losses (so a squared model is unchanged); ranking: the tuned defaults of
#: bench/RANKING.md (5 folds of MovieLens 100K, k = 64), then warp's epochs and softmax's
#: negatives, L2 and epochs checked on other splits of its ratings as well
#: (bench/ranking_splits.py, bench/RESULTS.md section 10g).
LOSS_DEFAULTS: dict[str, dict[str, Any]] = {
    "squared": {"learning_rate": 0.005, "reg_factors": 0.02, "reg_bias": 0.02,
                "init_std": 0.1, "lr_decay": 0.0, "n_epochs": 20},
    "bpr": {"learning_rate": 0.1, "reg_factors": 0.01, "reg_bias": 0.01, "init_std": 0.1,
            "lr_decay": 0.3, "n_epochs": 10, "n_negatives": 2},
    "warp": {"learning_rate": 0.005, "reg_factors": 0.01, "reg_bias": 0.01, "init_std": 0.01,
             "lr_decay": 0.3, "n_epochs": 20},
    "softmax": {"learning_rate": 0.1, "reg_factors": 0.02, "reg_bias": 0.01, "init_std": 0.01,
                "lr_decay": 0.3, "n_epochs": 20, "n_negatives": 5},
}
#: With ``adagrad=True`` a ranking loss takes these instead of its LOSS_DEFAULTS: the rate
#: falls per row by itself (no decay), the base rate is higher, and the factors want a much
#: stronger L2 over many more epochs (WARP applies it only on the steps it takes).
#: Measured on MovieLens 100K, k = 64 (bench/RESULTS.md, section 10). The squared loss
#: keeps its defaults (its AdaGrad models are unchanged).
ADAGRAD_DEFAULTS: dict[str, dict[str, Any]] = {
    "bpr": {"learning_rate": 0.05, "reg_factors": 0.03, "lr_decay": 0.0, "n_epochs": 60},
    "warp": {"learning_rate": 0.025, "reg_factors": 0.4, "lr_decay": 0.0, "n_epochs": 100},
    "softmax": {"learning_rate": 0.1, "reg_factors": 0.03, "lr_decay": 0.0, "n_epochs": 40},
}
AUTO_PARAMS = ("n_epochs", "learning_rate", "reg_factors", "reg_bias", "init_std", "lr_decay")
#: Ranking metrics ``eval_metric`` may name, as "<name>@<k>" (the names of mfsgd.metrics).
RANKING_METRICS = ("ndcg", "recall", "hit_rate")
#: Other spellings accepted for them.
METRIC_ALIASES = {"hr": "hit_rate"}
MAX_NEGATIVES = _sgd.MAX_NEG  # negatives per positive the kernel's softmax holds
MAX_SAMPLED = 2**31 - 1  # WARP's draws per positive: a C int in the kernel
MAX_FACTORS = 1 << 16  # far beyond any useful k; keeps row sizes well inside int64
#: Largest negative_exponent: popularity ** 10 already draws almost only the top items,
#: and (count / top count) ** 10 stays far from float64's underflow for any count.
MAX_NEGATIVE_EXPONENT = 10.0


def auto_text(name: str) -> str:
    """How ``None`` of a per-loss parameter reads in help texts: "auto: 0.005 for
    squared, 0.1 for bpr, ...; with adagrad: 0.05 for bpr, ..."."""
    parts = [f"{LOSS_DEFAULTS[loss][name]} for {loss}" for loss in LOSSES
             if name in LOSS_DEFAULTS[loss]]
    ada = [f"{d[name]} for {loss}" for loss, d in ADAGRAD_DEFAULTS.items() if name in d]
    return "auto: " + ", ".join(parts) + ("; with adagrad: " + ", ".join(ada) if ada else "")


def resolved(name: str, value: Any, loss: str, adagrad: bool = False) -> Any:
    """``value``, or the default of ``loss`` (with or without AdaGrad) when it is None."""
    if value is not None:
        return value
    if adagrad and name in ADAGRAD_DEFAULTS.get(loss, {}):
        return ADAGRAD_DEFAULTS[loss][name]
    return LOSS_DEFAULTS[loss][name]


def check_eval_metric(value: Any, loss: str) -> tuple[str, int]:
    """``eval_metric`` as (name, k): ("rmse", 0) for squared, e.g. ("ndcg", 10) for the
    ranking losses (default "ndcg@10")."""
    if value is None:
        value = "rmse" if loss == "squared" else "ndcg@10"
    if not isinstance(value, str):
        raise TypeError(f"eval_metric must be a string such as 'rmse' or 'ndcg@10'; "
                        f"got {value!r}.")
    if loss == "squared":
        if value != "rmse":
            raise ValueError(f"eval_metric must be 'rmse' with loss='squared'; got {value!r}.")
        return "rmse", 0
    name, _, k = value.partition("@")
    name = METRIC_ALIASES.get(name, name)
    if name not in RANKING_METRICS or not (k.isascii() and k.isdigit()) or int(k) < 1:
        names = ", ".join(m + "@K" for m in RANKING_METRICS)
        aliases = ", ".join(f"{a}@K for {m}@K" for a, m in METRIC_ALIASES.items())
        raise ValueError(f"eval_metric must be one of {names} ({aliases}; K an int >= 1) with "
                         f"loss={loss!r}; got {value!r}.")
    return name, int(k)


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """The estimator's hyper-parameters after validation (see MatrixFactorization)."""

    n_factors: int
    n_epochs: int
    learning_rate: float
    reg_factors: float
    reg_bias: float
    init_std: float
    shuffle: bool
    dtype: np.dtype
    early_stopping: bool
    validation_fraction: float
    n_iter_no_change: int
    tol: float
    clip: bool
    verbose: bool
    n_threads: int
    n_blocks: int | None
    lr_decay: float
    adagrad: bool
    biased: bool
    nonnegative: bool
    columns: tuple[Any, Any, Any]  # user_col, item_col, rating_col
    loss: str = "squared"
    n_negatives: int = 1  # bpr, softmax
    max_sampled: int = 10  # warp
    margin: float = 1.0  # warp
    negative_exponent: float = 0.0  # negatives drawn in proportion to popularity ** this
    eval_metric: tuple[str, int] = ("rmse", 0)
    min_rating: float | None = None

    @property
    def ranking(self) -> bool:
        return self.loss != "squared"

    def lr_at(self, epoch: int) -> float:
        """Learning rate of epoch ``epoch`` (from 0): ``learning_rate / (1 + lr_decay e)``."""
        return self.learning_rate / (1.0 + self.lr_decay * epoch)

    def replace(self, **changes: Any) -> FitConfig:
        return dataclasses.replace(self, **changes)


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_threads(value: Any) -> int:
    """``n_threads`` as an int from 1 to MAX_THREADS; -1 means every CPU this process
    may use (at most MAX_THREADS), as scikit-learn's ``n_jobs=-1``."""
    rule = f"n_threads must be an int from 1 to {MAX_THREADS}, or -1 (every available CPU)"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{rule}; got {value!r} ({type(value).__name__}).")
    if value == -1:
        return min(available_cpus(), MAX_THREADS)
    if not 1 <= value <= MAX_THREADS:
        raise ValueError(f"{rule}; got {value!r}.")
    return int(value)


def make_config(params: Mapping[str, Any]) -> FitConfig:
    """Validate the estimator's parameters (``get_params()``) into a FitConfig; raises
    TypeError or ValueError naming the parameter, the rule and the value received."""
    nb = params["n_blocks"]
    if nb is not None:
        nb = check_int("n_blocks", nb)
        if nb > MAX_BLOCKS:
            raise ValueError(f"n_blocks must be an int from 1 to {MAX_BLOCKS}; got {nb}.")
    n_threads = resolve_threads(params["n_threads"])
    loss = params.get("loss", "squared")
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))}; got {loss!r}.")
    adagrad = check_bool("adagrad", params["adagrad"])
    auto = {name: resolved(name, params[name], loss, adagrad) for name in AUTO_PARAMS}
    ranking = loss != "squared"
    if ranking:
        if check_bool("nonnegative", params["nonnegative"]):
            raise ValueError(f"nonnegative=True is only supported with loss='squared'; got "
                             f"loss={loss!r}. Set nonnegative=False.")
    n_neg = params.get("n_negatives")
    if n_neg is None:
        n_neg = LOSS_DEFAULTS[loss].get("n_negatives", 1)
    n_neg = check_int("n_negatives", n_neg)
    if n_neg > MAX_NEGATIVES:
        raise ValueError(f"n_negatives must be an int from 1 to {MAX_NEGATIVES}; got {n_neg}.")
    raw_min = params.get("min_rating")
    min_rating = check_real_or_none(raw_min, "min_rating must be None or a finite number")
    if min_rating is not None and not ranking:
        raise ValueError("min_rating is only used with a ranking loss (it turns ratings "
                         f"into interactions); got min_rating={raw_min!r} with "
                         "loss='squared'. Set min_rating=None or choose a ranking loss.")
    columns = check_columns(params["user_col"], params["item_col"], params["rating_col"])
    lr = check_float("learning_rate", auto["learning_rate"], strict=True)
    dtype = check_dtype(params["dtype"])
    if dtype.type(lr) == 0:  # the kernel steps in the model's dtype: nothing would train
        raise ValueError(f"learning_rate must be positive in the model's dtype; got {lr!r}, "
                         f"which is 0 in {dtype.name}.")
    return FitConfig(
        n_factors=check_int("n_factors", params["n_factors"], high=MAX_FACTORS),
        n_epochs=check_int("n_epochs", auto["n_epochs"]),
        learning_rate=lr,
        reg_factors=check_float("reg_factors", auto["reg_factors"]),
        reg_bias=check_float("reg_bias", auto["reg_bias"]),
        init_std=check_float("init_std", auto["init_std"], high=_INIT_STD_MAX),
        shuffle=check_bool("shuffle", params["shuffle"]),
        dtype=dtype,
        early_stopping=check_bool("early_stopping", params["early_stopping"]),
        validation_fraction=check_float("validation_fraction", params["validation_fraction"],
                                        strict=True, high=1.0, high_strict=True),
        n_iter_no_change=check_int("n_iter_no_change", params["n_iter_no_change"]),
        tol=check_float("tol", params["tol"]),
        clip=check_bool("clip", params["clip"]),
        verbose=check_bool("verbose", params["verbose"]),
        n_threads=n_threads,
        n_blocks=nb,
        lr_decay=check_float("lr_decay", auto["lr_decay"]),
        adagrad=adagrad,
        biased=check_bool("biased", params["biased"]),
        nonnegative=check_bool("nonnegative", params["nonnegative"]),
        columns=columns,  # type: ignore[arg-type]
        loss=loss,
        n_negatives=n_neg,
        max_sampled=check_int("max_sampled", params.get("max_sampled", 10), high=MAX_SAMPLED),
        margin=check_float("margin", params.get("margin", 1.0)),
        negative_exponent=check_float("negative_exponent", params.get("negative_exponent", 0.0),
                                      high=MAX_NEGATIVE_EXPONENT),
        eval_metric=check_eval_metric(params.get("eval_metric"), loss),
        min_rating=min_rating,
    )


def check_columns(user_col: Any, item_col: Any, rating_col: Any) -> tuple[Any, Any, Any]:
    """The three column names, each a str or an int (a DataFrame's label) and all
    different: a shared name would silently read one column as two (e.g. the users as
    the items, or the item ids as ratings)."""
    columns = (user_col, item_col, rating_col)
    for name, v in zip(("user_col", "item_col", "rating_col"), columns, strict=True):
        # bool is an int to Python, but True would quietly read a column labelled 1.
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (str, numbers.Integral)):
            raise TypeError(f"{name} must be a column name (a str or an int); got {v!r}.")
    if len(set(columns)) < 3:
        raise ValueError(f"user_col, item_col and rating_col must be three different names; "
                         f"got user_col={user_col!r}, item_col={item_col!r}, "
                         f"rating_col={rating_col!r}.")
    return columns


def fit_rng(random_state: Any) -> np.random.Generator:
    """The generator of a fit: every random draw of ``fit`` comes from it."""
    return check_random_state(random_state)


def continuation_rng(random_state: Any, epochs_done: int) -> np.random.Generator:
    """The generator of a ``partial_fit`` after ``epochs_done`` epochs: an int seed gives
    a stream of its own per continuation point, so continued fits are reproducible."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return np.random.default_rng([int(random_state), epochs_done])
    return check_random_state(random_state)
