#!/usr/bin/env bash
# Run every ```bash block of CONTRIBUTING.md, in the order written, as a new contributor
# would: in a fresh clone carrying the work tree's files (tracked and untracked-but-not-
# ignored, no build outputs, no .venv), in one shell, so that the first block's
# `python -m venv .venv && . .venv/bin/activate` is the environment of all later blocks.
# The copy sits beside a link to the real ../shared (benchmark data), so relative paths
# such as ../shared/data/ml-100k mean what they mean in a checkout.
#
# Usage: tools/check_contributing.sh        (KEEP=1 keeps the copy; TMPDIR chooses where)
# Exit status: that of the first failing command (set -e), 0 when every block passed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

work=$(mktemp -d "${TMPDIR:-/tmp}/mfsgd-contributing.XXXXXX")
cleanup() { if [ "${KEEP:-0}" = 1 ]; then echo "kept: $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT

# A git clone (some commands, e.g. tools/check_wheel.sh, ask git which files are the
# project's), with the work tree's uncommitted state laid over it.
git clone -q "$root" "$work/mfsgd"
git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
    tar --null -T - -cf - | tar -xf - -C "$work/mfsgd"
if [ -d "$root/../shared" ]; then ln -s "$(cd "$root/../shared" && pwd)" "$work/shared"; fi

# The blocks, concatenated, each command echoed before it runs.
script="$work/contributing.sh"
{
    echo 'set -euxo pipefail'
    awk '/^```bash[[:space:]]*$/{f=1; next} f && /^```/{f=0; print ""; next} f{print}' \
        CONTRIBUTING.md
} > "$script"
n=$(grep -c '^```bash' CONTRIBUTING.md || true)
if [ "$n" -eq 0 ]; then echo "no bash blocks in CONTRIBUTING.md" >&2; exit 1; fi
echo "+ running the $n bash blocks of CONTRIBUTING.md in $work/mfsgd"

start=$(date +%s)
# A clean environment for the new contributor: no venv of the caller's stays active.
(cd "$work/mfsgd" && env -u VIRTUAL_ENV PATH="$(echo "$PATH" | tr ':' '\n' |
    grep -v "^${VIRTUAL_ENV:-/nonexistent}/bin\$" | paste -sd:)" bash "$script")
echo "CONTRIBUTING.md: all $n blocks passed in $(( $(date +%s) - start )) s"
