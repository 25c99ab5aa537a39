"""Which SIMD variant of the compiled kernel runs, and the build report.

The variant ids are defined once, in ``_kernel.h``; ``_sgd`` exports them (ISA_AUTO,
ISA_BASELINE, ISA_AVX2, ISA_AVX512). ``MFSGD_KERNEL`` forces a variant at import;
``show_config`` reports the rule in force.
"""

from __future__ import annotations

import os
import warnings

from . import _sgd
from ._version import __version__

#: Selectable names -> variant ids ("auto": per row width, see show_config).
SELECTABLE = {"auto": _sgd.ISA_AUTO, "baseline": _sgd.ISA_BASELINE, "avx2": _sgd.ISA_AVX2,
              "avx512": _sgd.ISA_AVX512}
VARIANTS = (_sgd.ISA_BASELINE, _sgd.ISA_AVX2, _sgd.ISA_AVX512)


def available() -> list[int]:
    """The variants this build contains and this CPU runs, best last."""
    mask = _sgd.isa_available()
    return [v for v in VARIANTS if mask & (1 << v)]


def select_from_env() -> None:
    """MFSGD_KERNEL=baseline|avx2|avx512 forces a SIMD variant (clamped to what the CPU
    runs); auto (the default) chooses per row width."""
    want = os.environ.get("MFSGD_KERNEL", "").strip().lower()
    if not want:
        return
    if want not in SELECTABLE:
        warnings.warn(f"MFSGD_KERNEL must be one of {sorted(SELECTABLE)}; got {want!r}. "
                      "Ignored.", RuntimeWarning, stacklevel=3)
        return
    got = _sgd.isa_select(SELECTABLE[want])
    if got != SELECTABLE[want]:
        warnings.warn(f"MFSGD_KERNEL={want} is not supported by this CPU; using "
                      f"{_sgd.isa_name(got)}.", RuntimeWarning, stacklevel=3)


def show_config() -> dict:
    """Print and return the build: version, SIMD variant in use and those available."""
    sel = _sgd.isa_current()
    if sel == _sgd.ISA_AUTO:
        lim = _sgd.AVX512_MIN_ROW_BYTES
        narrow, wide = _sgd.isa_name(_sgd.isa_for(lim - 64)), _sgd.isa_name(_sgd.isa_for(lim))
        kernel = f"auto: {narrow}" if narrow == wide else \
            f"auto: {narrow} for rows under {lim} bytes (float32 k <= {(lim - 64) // 4}), " \
            f"{wide} from {lim} bytes"
        w, b = _sgd.RANK_AVX2_MAX_ROW_BYTES_WARP, _sgd.RANK_AVX2_MAX_ROW_BYTES_BPR
        warp = _sgd.isa_name(_sgd.rank_isa_f32(w, _sgd.LOSS_WARP))
        if warp != wide:
            kernel += (f"; warp and bpr in float32: {warp} for rows up to {w} and {b} "
                       "bytes")
    else:
        kernel = _sgd.isa_name(sel)
    cfg = {
        "version": __version__,
        "kernel": kernel,
        "available": [_sgd.isa_name(i) for i in available()],
    }
    for k, v in cfg.items():
        print(f"{k}: {v}")
    return cfg
