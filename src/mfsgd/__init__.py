"""mfsgd: biased matrix factorization (Funk SVD) trained by fast, deterministic SGD."""

from . import _kernels, datasets, metrics, model_selection  # noqa: F401  (public submodules)
from ._baseline import Popularity
from ._version import __version__
from .exceptions import (
    DistributedTrainingError,
    DivergenceError,
    ModelFileError,
    NotFittedError,
    StopTraining,
    TrainingInterrupted,
)
from .model import MatrixFactorization
from .plotting import plot_history

load = MatrixFactorization.load


_kernels.select_from_env()
show_config = _kernels.show_config

__all__ = [
    "MatrixFactorization",
    "Popularity",
    "load",
    "plot_history",
    "show_config",
    "NotFittedError",
    "ModelFileError",
    "DivergenceError",
    "DistributedTrainingError",
    "StopTraining",
    "TrainingInterrupted",
    "__version__",
]
