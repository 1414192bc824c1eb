"""Sphinx configuration for adamsci (numpydoc, the scipy/xarray convention)."""
import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "adamsci"
author = "adamsci developers"
copyright = "2026, adamsci developers"
from adamsci import __version__ as release  # noqa: E402

version = release
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "numpydoc",
]
autosummary_generate = True
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()
intersphinx_mapping = {}
templates_path = []
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = ["_static"]
default_role = "literal"
nitpicky = False
suppress_warnings = ["autosummary.import_cycle"]


def _options_section(app, what, name, obj, options, lines):
    """scipy's ``minimize`` methods document their options in an ``Options``
    section, which numpydoc does not know: render it as "Other Parameters"."""
    for i in range(len(lines) - 1):
        if lines[i].strip() == "Options" and lines[i + 1].strip() and \
                set(lines[i + 1].strip()) == {"-"}:
            indent = lines[i][:len(lines[i]) - len(lines[i].lstrip())]
            lines[i] = indent + "Other Parameters"
            lines[i + 1] = indent + "-" * len("Other Parameters")


def setup(app):
    # before numpydoc (priority 500) parses the docstring
    app.connect("autodoc-process-docstring", _options_section, priority=100)
