"""Sphinx configuration for the mfsgd documentation.

Build with ``tools/build_docs.sh`` (installs mfsgd and the ``docs`` extra into a venv and
runs ``sphinx-build -W``), or, in an environment where mfsgd is installed (the compiled
extension is needed: autodoc imports the package)::

    sphinx-build -W -b html docs docs/_build/html
"""

from __future__ import annotations

import argparse
import os

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

import mfsgd
from mfsgd import _cli

project = "mfsgd"
author = "the mfsgd developers"
copyright = f"2026, {author}"
release = mfsgd.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
]

exclude_patterns = ["_build", "*-snippet.md", "Thumbs.db", ".DS_Store"]
nitpicky = False
default_role = "literal"

# autodoc / numpydoc
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the numpydoc "Parameters" sections say it better
autodoc_default_options = {"members": True}
autodoc_preserve_defaults = True  # dtype=np.float32, not <class ...>
numpydoc_show_class_members = False  # autodoc's :members: lists them
numpydoc_attributes_as_param_list = True  # no duplicate entries for fitted attributes
numpydoc_xref_param_type = False

intersphinx_mapping = {
    "python": ("https://docs.python.org/3", None),
    "numpy": ("https://numpy.org/doc/stable/", None),
}
# Offline builds (CI without network, this project's machines) must not fail or warn:
# intersphinx is only used when MFSGD_DOCS_INTERSPHINX=1.
if os.environ.get("MFSGD_DOCS_INTERSPHINX") != "1":
    intersphinx_mapping = {}

html_theme = "pydata_sphinx_theme"
html_title = f"mfsgd {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_sidebars = {"**": []}  # short site: the top bar and the page TOC are enough
html_static_path: list[str] = []
html_show_sourcelink = False


class CliHelp(SphinxDirective):
    """``.. mfsgd-cli-help:: [SUBCOMMAND | *]``: the current ``--help`` text of the CLI (of
    one subcommand; ``*``: of every subcommand, each under a rubric), taken from the parser
    itself so that the page cannot drift from the code."""

    optional_arguments = 1
    has_content = False

    @staticmethod
    def _block(parser: argparse.ArgumentParser) -> nodes.literal_block:
        text = parser.format_help()
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return block

    def run(self) -> list[nodes.Node]:
        os.environ["COLUMNS"] = "88"  # stable wrapping whatever the terminal
        parser = _cli.build_parser()
        if not self.arguments:
            return [self._block(parser)]
        subcommands = next(a for a in parser._actions
                           if isinstance(a, argparse._SubParsersAction)).choices
        name = self.arguments[0]
        if name == "*":
            out: list[nodes.Node] = []
            for sub, sub_parser in subcommands.items():
                out.append(nodes.rubric(text=f"mfsgd {sub}"))
                out.append(self._block(sub_parser))
            return out
        if name not in subcommands:
            raise self.error(f"mfsgd has no subcommand {name!r}")
        return [self._block(subcommands[name])]


def setup(app):
    app.add_directive("mfsgd-cli-help", CliHelp)
    return {"parallel_read_safe": True}
