"""The documentation builds with Sphinx, warnings as errors (issue #7)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"

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


def test_getting_started_doctest():
    import doctest
    failures, tests = doctest.testfile(str(DOCS / "getting_started.rst"),
                                       module_relative=False,
                                       optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tests > 0 and failures == 0
