"""Typed, validated hyper-parameters: ``FitConfig`` and the one function that builds it.

The estimator stores its constructor arguments unchanged (scikit-learn's contract); every
fit, partial_fit, load and Dask fit turns them into a ``FitConfig`` through
``make_config``, so each rule and message lives in one place and the training code reads
typed attributes instead of a dict.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._validation import check_bool, check_dtype, check_float, check_int, check_random_state

MAX_THREADS = 1024
MAX_BLOCKS = 255
_INIT_STD_MAX = float(np.sqrt(np.finfo(np.float32).max))


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

    def lr_at(self, epoch: int) -> float:
        """Learning rate of epoch ``epoch`` (from 0): ``learning_rate / (1 + lr_decay e)``."""
        return self.learning_rate / (1.0 + self.lr_decay * epoch)

    def replace(self, **changes: Any) -> FitConfig:
        return dataclasses.replace(self, **changes)


def make_config(params: Mapping[str, Any]) -> FitConfig:
    """Validate the estimator's parameters (``get_params()``) into a FitConfig; raises
    TypeError or ValueError naming the parameter, the rule and the value received."""
    nb = params["n_blocks"]
    if nb is not None:
        nb = check_int("n_blocks", nb)
        if nb > MAX_BLOCKS:
            raise ValueError(f"n_blocks must be an int from 1 to {MAX_BLOCKS}; got {nb}.")
    n_threads = check_int("n_threads", params["n_threads"])
    if n_threads > MAX_THREADS:
        raise ValueError(f"n_threads must be an int from 1 to {MAX_THREADS}; "
                         f"got {params['n_threads']!r}.")
    columns = tuple(params[name] for name in ("user_col", "item_col", "rating_col"))
    for name, v in zip(("user_col", "item_col", "rating_col"), columns, strict=True):
        if not isinstance(v, (str, numbers.Integral)):
            raise TypeError(f"{name} must be a column name; got {v!r}.")
    return FitConfig(
        n_factors=check_int("n_factors", params["n_factors"]),
        n_epochs=check_int("n_epochs", params["n_epochs"]),
        learning_rate=check_float("learning_rate", params["learning_rate"], strict=True),
        reg_factors=check_float("reg_factors", params["reg_factors"]),
        reg_bias=check_float("reg_bias", params["reg_bias"]),
        init_std=check_float("init_std", params["init_std"], high=_INIT_STD_MAX),
        shuffle=check_bool("shuffle", params["shuffle"]),
        dtype=check_dtype(params["dtype"]),
        early_stopping=check_bool("early_stopping", params["early_stopping"]),
        validation_fraction=check_float("validation_fraction", params["validation_fraction"],
                                        strict=True, high=1.0, high_strict=True),
        n_iter_no_change=check_int("n_iter_no_change", params["n_iter_no_change"]),
        tol=check_float("tol", params["tol"]),
        clip=check_bool("clip", params["clip"]),
        verbose=check_bool("verbose", params["verbose"]),
        n_threads=n_threads,
        n_blocks=nb,
        lr_decay=check_float("lr_decay", params["lr_decay"]),
        adagrad=check_bool("adagrad", params["adagrad"]),
        biased=check_bool("biased", params["biased"]),
        nonnegative=check_bool("nonnegative", params["nonnegative"]),
        columns=columns,  # type: ignore[arg-type]
    )


def fit_rng(random_state: Any) -> np.random.Generator:
    """The generator of a fit: every random draw of ``fit`` comes from it."""
    return check_random_state(random_state)


def continuation_rng(random_state: Any, epochs_done: int) -> np.random.Generator:
    """The generator of a ``partial_fit`` after ``epochs_done`` epochs: an int seed gives
    a stream of its own per continuation point, so continued fits are reproducible."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return np.random.default_rng([int(random_state), epochs_done])
    return check_random_state(random_state)
