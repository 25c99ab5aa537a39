"""mfsgd: biased matrix factorization (Funk SVD) trained by fast, deterministic SGD."""

from ._version import __version__
from .exceptions import (
    ConvergenceWarning,
    DivergenceError,
    ModelFileError,
    NotFittedError,
    TrainingInterrupted,
)
from .model import MatrixFactorization
from .persistence import load


def show_config() -> dict:
    """Print and return the build: version, SIMD variant in use and those available."""
    from . import _sgd

    mask = _sgd.isa_available()
    cfg = {
        "version": __version__,
        "kernel": _sgd.isa_name(_sgd.isa_current()),
        "available": [_sgd.isa_name(i) for i in range(3) if mask & (1 << i)],
    }
    for k, v in cfg.items():
        print(f"{k}: {v}")
    return cfg


__all__ = [
    "MatrixFactorization",
    "load",
    "show_config",
    "NotFittedError",
    "ModelFileError",
    "DivergenceError",
    "TrainingInterrupted",
    "ConvergenceWarning",
    "__version__",
]
