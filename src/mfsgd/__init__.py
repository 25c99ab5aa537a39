"""mfsgd: biased matrix factorization (Funk SVD) trained by fast, deterministic SGD."""

from . import datasets, metrics, model_selection  # noqa: F401  (public submodules)
from ._version import __version__
from .exceptions import (
    DistributedTrainingError,
    DivergenceError,
    ModelFileError,
    NotFittedError,
    TrainingInterrupted,
)
from .model import MatrixFactorization
from .plotting import plot_history

load = MatrixFactorization.load


def _select_kernel_from_env() -> None:
    """MFSGD_KERNEL=baseline|avx2|avx512 forces a SIMD variant (clamped to what the CPU
    runs); auto (the default) chooses per row width."""
    import os
    import warnings

    from . import _sgd

    want = os.environ.get("MFSGD_KERNEL", "").strip().lower()
    names = {"auto": _sgd.ISA_AUTO, "baseline": _sgd.ISA_BASELINE, "avx2": _sgd.ISA_AVX2,
             "avx512": _sgd.ISA_AVX512}
    if not want:
        return
    if want not in names:
        warnings.warn(f"MFSGD_KERNEL must be one of {sorted(names)}; got {want!r}. Ignored.",
                      RuntimeWarning, stacklevel=2)
        return
    got = _sgd.isa_select(names[want])
    if got != names[want]:
        warnings.warn(f"MFSGD_KERNEL={want} is not supported by this CPU; using "
                      f"{_sgd.isa_name(got)}.", RuntimeWarning, stacklevel=2)


_select_kernel_from_env()


def show_config() -> dict:
    """Print and return the build: version, SIMD variant in use and those available."""
    from . import _sgd

    mask = _sgd.isa_available()
    sel = _sgd.isa_current()
    if sel == _sgd.ISA_AUTO:
        lim = _sgd.AVX512_MIN_ROW_BYTES
        narrow, wide = _sgd.isa_name(_sgd.isa_for(lim - 64)), _sgd.isa_name(_sgd.isa_for(lim))
        kernel = f"auto: {narrow}" if narrow == wide else \
            f"auto: {narrow} for rows under {lim} bytes (float32 k <= {(lim - 64) // 4}), " \
            f"{wide} from {lim} bytes"
    else:
        kernel = _sgd.isa_name(sel)
    cfg = {
        "version": __version__,
        "kernel": kernel,
        "available": [_sgd.isa_name(i) for i in range(3) if mask & (1 << i)],
    }
    for k, v in cfg.items():
        print(f"{k}: {v}")
    return cfg


__all__ = [
    "MatrixFactorization",
    "load",
    "plot_history",
    "show_config",
    "NotFittedError",
    "ModelFileError",
    "DivergenceError",
    "DistributedTrainingError",
    "TrainingInterrupted",
    "__version__",
]
