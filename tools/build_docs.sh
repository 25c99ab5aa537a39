#!/usr/bin/env bash
# Build the HTML documentation into docs/_build/html; any Sphinx warning fails the build.
#
# Usage: tools/build_docs.sh [--no-install] [extra sphinx-build options]
#   default       create (or reuse) a virtual environment, $MFSGD_DOCS_VENV or
#                 build/docs-venv, and install this checkout with the docs extra into it
#                 (pip install ".[docs]": compiles the extension, autodoc imports it)
#   --no-install  use the current `python`, which must already have mfsgd (e.g. an
#                 editable install) and the docs extra installed
# MFSGD_DOCS_INTERSPHINX=1 links Python and NumPy names to their docs (needs network).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

install=1
if [ "${1:-}" = "--no-install" ]; then install=0; shift; fi

if [ "$install" -eq 1 ]; then
    venv=${MFSGD_DOCS_VENV:-$ROOT/build/docs-venv}
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install -q --upgrade pip
    fi
    echo "+ pip install .[docs] into $venv"
    "$venv/bin/python" -m pip install -q ".[docs]"
    PY=$venv/bin/python
else
    PY=python
fi

# Import from the installed package, not from a source tree that has no compiled extension.
"$PY" -c 'import mfsgd, sys; print("documenting mfsgd", mfsgd.__version__, "from", mfsgd.__file__)'
rm -rf docs/_build/html docs/_build/doctrees
echo "+ sphinx-build -W --keep-going -b html docs docs/_build/html $*"
"$PY" -m sphinx -W --keep-going -b html "$@" docs docs/_build/html
echo "docs: file://$ROOT/docs/_build/html/index.html"
