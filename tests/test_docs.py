"""The documentation builds with Sphinx, warnings as errors (issue #7).

Also checked on the built pages: numpydoc met no section it does not know
(it only warns, which ``-W`` does not catch), every public function and
class has a page of its own, and the code blocks of the getting-started,
examples and user-guide pages are no wider than the default theme (alabaster) shows
without cutting them (about 68 characters at its default font size).
"""
import html
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
CODE_WIDTH = 66          # characters of a code line that alabaster shows

pytest.importorskip("sphinx")
pytest.importorskip("numpydoc")


@pytest.mark.slow
def test_sphinx_build_without_warnings(tmp_path):
    out = tmp_path / "html"
    env = dict(os.environ, MPLBACKEND="Agg")
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b",
         "html", "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert (out / "index.html").exists()
    assert (out / "algorithms.html").exists()
    assert "Unknown section" not in proc.stderr, proc.stderr[-4000:]
    _check_api_pages(out)
    for page in ("getting_started.html", "examples.html",
                 "user_guide.html"):
        _check_code_width(out / page)


def _check_api_pages(out):
    """A page for every name of adamsci.__all__ and of the documented
    modules' __all__ (data such as MESSAGES is on its module's page)."""
    import adamsci
    names = [f"adamsci.{n}" for n in adamsci.__all__
             if n not in ("schedules", "__version__")]
    for modname in ("adamsci.plot", "adamsci.schedules", "adamsci.datasets",
                    "adamsci.models", "adamsci.compiler", "adamsci.history"):
        mod = importlib.import_module(modname)
        for n in mod.__all__:
            obj = getattr(mod, n)
            if callable(obj) and getattr(adamsci, n, None) is not obj:
                home = getattr(obj, "__module__", modname) \
                    if isinstance(obj, type) else modname
                names.append(f"{home}.{n}")  # re-exports: their module
    missing = [n for n in names if not (out / "generated" /
                                        f"{n}.html").exists()]
    assert not missing, missing


def _check_code_width(page):
    text = page.read_text()
    wide = []
    for block in re.findall(r"<pre>(.*?)</pre>", text, flags=re.S):
        for line in html.unescape(re.sub(r"<[^>]+>", "", block)).split("\n"):
            if len(line) > CODE_WIDTH:
                wide.append(line)
    assert not wide, f"{page.name}: code lines wider than {CODE_WIDTH}: {wide}"


def test_getting_started_doctest(tmp_path, monkeypatch):
    # the page writes its figures and a netCDF file to the current folder
    import doctest
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    failures, tests = doctest.testfile(
        str(DOCS / "getting_started.rst"), module_relative=False,
        optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tests > 0 and failures == 0
    for name in ("rosenbrock_convergence.png", "rosenbrock_path.png",
                 "rosenbrock.nc"):
        assert (tmp_path / name).stat().st_size > 1000, name
