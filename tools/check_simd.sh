#!/usr/bin/env bash
# Checks the disassembly of the installed (or given) mfsgd._sgd extension: the AVX2 and
# AVX-512 variants of the SGD loop must use FMA instructions on ymm / zmm registers and
# the baseline variant no 256-bit registers. Guards against a build flag change (e.g.
# -std=c99 without -ffp-contract=fast, which silently turned every FMA into a multiply
# and an add, 15-20% slower) that no numerical test would notice.
#   tools/check_simd.sh [path/to/_sgd.so]      (the release build: a -march=native build's
#   baseline variant may use wide registers)
set -euo pipefail
so=${1:-$(python -c "import mfsgd._sgd as s; print(s.__file__)")}
if [ "$(uname -m)" != "x86_64" ] || ! command -v objdump >/dev/null; then
    echo "check_simd: skipped (needs x86-64 and objdump)"; exit 0
fi
count() { objdump -d --no-show-raw-insn --disassemble="$1" "$so" | grep -cE "$2" || true; }
fail=0
for t in f32 f64; do
    for isa in avx2 avx512; do
        f=mf_sgd_run_${t}_${isa}
        reg=$([ $isa = avx2 ] && echo ymm || echo zmm)
        fma=$(count "$f" "vf(n)?m(add|sub)[0-9]+[ps][sd].*$reg")
        echo "check_simd: $f: $fma FMA instructions on $reg"
        [ "$fma" -gt 0 ] || { echo "check_simd: FAIL: no FMA on $reg in $f" >&2; fail=1; }
    done
    f=mf_sgd_run_${t}_base
    wide=$(count "$f" "ymm|zmm")
    echo "check_simd: $f: $wide instructions on ymm/zmm"
    [ "$wide" -eq 0 ] || { echo "check_simd: FAIL: $f uses 256/512-bit registers" >&2; fail=1; }
done
exit $fail
