"""Sphinx configuration for adamsci (numpydoc, the scipy/xarray convention).

The API reference (``api.rst``) gives every public function and class of
the documented modules its own page: ``_templates/autosummary/module.rst``
lists a module's ``__all__`` with ``:toctree:``, from the tables that
:func:`_api_tables` builds below, and ``class.rst`` documents a class once
(its signature in the heading line, no ``__init__`` entry) with its
methods and properties on the same page.

No intersphinx: the build runs without a network and no object inventory
of numpy, scipy, xarray or Python is available offline, so references to
them stay written out in full (``scipy.optimize.minimize``). Math is
rendered by MathJax (Sphinx's default, loaded from a CDN by the reader's
browser); there is no LaTeX here for ``sphinx.ext.imgmath``.
"""
import importlib
import inspect
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
    "numpydoc",
]
autosummary_generate = True
autosummary_ignore_module_all = False
autodoc_default_options = {}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = set()
templates_path = ["_templates"]
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = ["_static"]
default_role = "literal"
nitpicky = False
suppress_warnings = ["autosummary.import_cycle"]

# modules whose __all__ is documented name by name (api.rst lists them)
API_MODULES = [
    "adamsci.optimizers", "adamsci.schedules", "adamsci.minimize",
    "adamsci.objectives", "adamsci.fitting", "adamsci.streaming",
    "adamsci.batch",
    "adamsci.models", "adamsci.compiler", "adamsci.history", "adamsci.plot",
    "adamsci.accessor", "adamsci.datasets",
]


def _api_tables():
    """What each API module's page lists, from its ``__all__``.

    ``{module: {"functions", "classes", "exceptions", "data",
    "elsewhere"}}``: names with a page of their own under this module;
    ``data`` documented on the module page itself; ``elsewhere`` the full
    names of objects whose page is another's (a top-level ``adamsci.X``,
    or the module that defines them), linked from the module page.
    Also ``{class fullname: {"methods", "properties"}}`` for the class
    template: public members defined by adamsci classes (not by ``object``,
    ``tuple``, ``dict``, ...), so that nothing inherited from a builtin is
    listed.
    """
    import adamsci
    top = {name: getattr(adamsci, name) for name in adamsci.__all__
           if name not in ("schedules", "__version__")}
    home = {id(obj): f"adamsci.{name}" for name, obj in top.items()}
    tables, classes = {}, {}

    def class_members(cls):
        methods, props = [], []
        for name in sorted(dir(cls)):
            if name.startswith("_"):
                continue
            owner = next((c for c in cls.__mro__ if name in vars(c)), None)
            if owner is None or not owner.__module__.startswith("adamsci"):
                continue
            raw = vars(owner)[name]
            if isinstance(raw, property):
                props.append(name)
            elif inspect.isfunction(raw) or isinstance(
                    raw, (classmethod, staticmethod)):
                methods.append(name)
        return {"methods": methods, "properties": props}

    for modname in API_MODULES:
        mod = importlib.import_module(modname)
        t = {k: [] for k in ("functions", "classes", "exceptions", "data",
                             "elsewhere")}
        for name in mod.__all__:
            obj = getattr(mod, name)
            where = home.get(id(obj))
            defined = getattr(obj, "__module__", modname) \
                if inspect.isclass(obj) or inspect.isfunction(obj) \
                else modname
            if where is None and defined != modname and \
                    defined in API_MODULES:
                where = f"{defined}.{name}"
            if where is not None:
                t["elsewhere"].append(where)
            elif inspect.isclass(obj) and issubclass(obj, BaseException):
                t["exceptions"].append(name)
            elif inspect.isclass(obj):
                t["classes"].append(name)
            elif callable(obj):          # functions, built-in Model objects
                t["functions"].append(name)
            else:
                t["data"].append(name)
            if inspect.isclass(obj) and where is None:
                classes[f"{modname}.{name}"] = class_members(obj)
        tables[modname] = t
    for name, obj in top.items():
        if inspect.isclass(obj):
            classes[f"adamsci.{name}"] = class_members(obj)
    return tables, classes


_TABLES, _CLASSES = _api_tables()
autosummary_context = {"api_tables": _TABLES, "api_classes": _CLASSES}
