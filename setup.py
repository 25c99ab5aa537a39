"""Extension build for mfsgd. Metadata lives in pyproject.toml.

MFSGD_BUILD selects the flags (read at build time):
  release (default)  -O3, portable: every SIMD variant is compiled and chosen at import.
  native             release plus -march=native (for your own machine only; never wheels).
  debug              -O1 -g, Cython bounds/wraparound checks on, and AddressSanitizer +
                     UBSan where the compiler has them (run Python with the ASan runtime
                     preloaded: see README, "Development").
"""
import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

mode = os.environ.get("MFSGD_BUILD", "release").strip().lower()
if mode not in {"release", "native", "debug"}:
    raise SystemExit(f"MFSGD_BUILD must be release, native or debug; got {mode!r}.")

msvc = sys.platform == "win32"
directives = {
    "language_level": 3,
    "boundscheck": mode == "debug",
    "wraparound": mode == "debug",
    "initializedcheck": mode == "debug",
    "cdivision": True,
    "embedsignature": True,
}
if msvc:
    compile_args = (["/O2", "/openmp:experimental", "/fp:contract"] if mode != "debug"
                    else ["/Od", "/Zi"])
    link_args = []
else:
    # -fopenmp-simd honours `#pragma omp simd` (vectorised reductions) without the
    # OpenMP runtime and without -ffast-math, which would break isfinite checks.
    # -ffp-contract=fast: the ISO mode -std=c99 turns GCC's default contraction off, and
    # without it `a + b * c` stays a multiply and an add (no FMA even in the AVX2 and
    # AVX-512 variants). Contraction only removes an intermediate rounding.
    compile_args = ["-fopenmp-simd", "-std=c99", "-ffp-contract=fast"]
    link_args = []
    if mode == "debug":
        compile_args += ["-O1", "-g", "-fno-omit-frame-pointer",
                         "-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
        link_args += ["-fsanitize=address,undefined"]
    else:
        compile_args += ["-O3"]
        if mode == "native":
            compile_args += ["-march=native"]

ext = Extension(
    "mfsgd._sgd",
    sources=["src/mfsgd/_sgd.pyx", "src/mfsgd/_kernel.c"],
    include_dirs=["src/mfsgd"],
    extra_compile_args=compile_args,
    extra_link_args=link_args,
    define_macros=[("CYTHON_TRACE", "0")] + ([("MFSGD_NATIVE", "1")] if mode == "native" else []),
)

setup(ext_modules=cythonize([ext], compiler_directives=directives))
