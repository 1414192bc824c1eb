"""adamsci.compiler: models f(x, *params) compiled point by point, with
exact derivatives; what does not compile is named with its line."""
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.special
from numba import njit

from adamsci.compiler import ModelCompileError, compile_model

SCALE = 2.5         # a numeric global: inlined as a constant


def _eval(f, x, p):
    """The model evaluated by Python: vectorised, or point by point for
    models written with the math module."""
    try:
        return np.broadcast_to(f(x, *p), np.shape(x)[-1:])
    except TypeError:
        return np.array([f(x[k] if np.ndim(x) == 1 else x[:, k], *p)
                         for k in range(np.shape(x)[-1])])


def _fd(f, x, p, h=1e-6):
    """Central differences of the Python model (an independent
    reference)."""
    out = np.empty((np.shape(x)[-1], len(p)))
    for j in range(len(p)):
        hj = h * max(abs(p[j]), 1.0)
        pp, pm = list(p), list(p)
        pp[j] += hj
        pm[j] -= hj
        out[:, j] = (_eval(f, x, pp) - _eval(f, x, pm)) / (2 * hj)
    return out


def _check(f, x, p, rtol=1e-6, **kw):
    """The compiled value equals the NumPy model; its derivatives equal
    central differences of it; Python and Numba agree."""
    m = compile_model(f, **kw)
    mod = m.module
    p = np.asarray(p, float)
    want = _eval(f, x, p)
    J = _fd(f, x, p)
    grad_nb = mod.grad
    grad_py = mod.grad.py_func
    value_nb = njit(lambda x, p: mod.value(x, p))
    for k in range(np.shape(x)[-1]):
        pt = x[k] if np.ndim(x) == 1 else tuple(x[:, k])
        out_py, out_nb = np.empty(len(p)), np.empty(len(p))
        f_py = grad_py(pt, p, out_py)
        f_nb = grad_nb(pt, p, out_nb)
        assert f_nb == pytest.approx(want[k], rel=1e-13, abs=1e-14)
        assert f_py == pytest.approx(want[k], rel=1e-13, abs=1e-14)
        assert value_nb(pt, p) == pytest.approx(want[k], rel=1e-13,
                                                abs=1e-14)
        np.testing.assert_allclose(out_nb, J[k], rtol=rtol, atol=1e-7)
        np.testing.assert_allclose(out_py, out_nb, rtol=1e-13, atol=1e-15)
    return m


# -- every operation and function, against NumPy and finite differences ----
def f_arith(x, a, b, c):
    u = (a * x - b) / (c + x * x)
    u += a ** 2 - b / 3.0
    return -u * SCALE + 1.0


def f_powers(x, a, k):
    return a * x ** k + np.power(x, 2.0) * a + x ** a + np.square(a * x)


def f_elementary(x, a, b):
    return (np.exp(a * x) + np.log(b + x) + np.sqrt(b + x) + np.sin(a * x)
            + np.cos(b * x) + np.tan(0.1 * a * x) + np.arctan(a * x)
            + np.tanh(b * x) + np.log10(b + x) + np.log2(b + x)
            + np.log1p(b * x) + np.expm1(0.1 * a * x) + np.sinh(0.3 * a)
            + np.cosh(0.2 * b * x) + np.arcsinh(a * x) + np.hypot(a, x)
            + np.arctan2(a, x + 3.0) + np.abs(a - x) + np.exp2(0.5 * b))


def f_math_module(x, a, b):
    return math.exp(-a * x) + math.sqrt(b) * math.erf(a * x) + math.pi * a


def f_special(x, a, b):
    return a * scipy.special.erf(b * x) + scipy.special.erfc(a * x)


def f_where(x, a, b):
    return np.where(x < b, a * x, a * b) + np.maximum(a, x) + \
        np.minimum(b * x, 1.0) + (a if a > 0.5 else b)


def f_coords(x, a, cx, cy):
    u, v = x
    return a * np.exp(-((u - cx) ** 2 + (v - cy) ** 2))


def f_indexed(x, a, b):
    return a * x[0] + b * x[1] ** 2


def f_varargs(x, *p):
    return p[0] * np.exp(-p[1] * x) + p[2]


def f_docstring(x, a):
    """A model with a docstring and an annotated local."""
    y: float = a * x
    return y + 1.0


@pytest.mark.parametrize("f,p", [
    (f_arith, [1.3, -0.4, 2.0]), (f_powers, [1.3, 1.7]),
    (f_elementary, [0.7, 1.5]), (f_math_module, [0.7, 1.5]),
    (f_special, [0.7, 1.5]), (f_where, [0.8, 1.1]), (f_docstring, [2.0]),
], ids=lambda v: getattr(v, "__name__", ""))
def test_derivatives_are_exact(f, p):
    x = np.linspace(0.1, 2.0, 7)
    _check(f, x, p)


def test_several_coordinates():
    xy = np.array([[0.0, 0.5, 1.0, 1.5], [1.0, 0.2, -0.3, 0.8]])
    m = _check(f_coords, xy, [2.0, 0.4, 0.1])
    assert m.xdim == 2
    assert _check(f_indexed, xy, [2.0, 0.4]).xdim == 2
    assert compile_model(f_arith).xdim == 0


def test_varargs_need_param_names():
    with pytest.raises(ModelCompileError, match="param_names must be"):
        compile_model(f_varargs)
    m = _check(f_varargs, np.linspace(0, 2, 5), [2.0, 1.3, 0.1],
               param_names=("a", "k", "c"))
    assert m.param_names == ("a", "k", "c")


def test_lambda_and_closure():
    k0 = 1.5
    f = lambda x, a, b: a * np.exp(-k0 * x) + b   # noqa: E731
    _check(f, np.linspace(0, 2, 5), [2.0, 0.3])
    g, h = (lambda x, a: a * x), (lambda x, b: b - x)   # noqa: E731
    assert compile_model(g).param_names == ("a",)
    assert compile_model(h).param_names == ("b",)


def test_memoised_and_cached_on_disk():
    a = compile_model(f_arith)
    assert compile_model(f_arith) is a
    assert os.path.isfile(a.module.__file__)
    assert "def grad(x, p, out):" in a.source
    assert a.module.PARAM_NAMES == ("a", "b", "c")


def test_edited_model_is_recompiled_and_cached(tmp_path):
    """A model in a file: the second process loads the compiled kernel
    from the cache; editing the model makes a new module."""
    src = tmp_path / "mymodel.py"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=str(tmp_path))
    script = textwrap.dedent("""
        import numpy as np, adamsci, mymodel
        x = np.linspace(0, 3, 20)
        y = (2.0 * np.exp(-1.3 * x))[None]
        ds = adamsci.fit_batch(mymodel.decay, x, y, [1.0, 1.0])
        m = adamsci.models.as_model(mymodel.decay).compiled
        fit = m.module.fit_cpu
        print(m.digest, sum(fit.stats.cache_hits.values()),
              round(float(ds.params.values[0, 1]), 6))
    """)

    def run():
        out = subprocess.run([sys.executable, "-c", script], env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    src.write_text("import numpy as np\n\ndef decay(t, a, k):\n"
                   "    return a * np.exp(-k * t)\n")
    d1, hits1, k1 = run()
    d2, hits2, k2 = run()
    assert d1 == d2 and hits1 == "0" and int(hits2) >= 1
    assert float(k1) == pytest.approx(1.3, abs=1e-6)
    src.write_text("import numpy as np\n\ndef decay(t, a, k):\n"
                   "    return a * np.exp(-k * t) + 0.0 * a\n")
    d3, hits3, _ = run()
    assert d3 != d1 and hits3 == "0"


# -- what does not compile: the construct and the line ----------------------
def m_if(x, a):
    if a > 0:
        return a * x
    return x


def m_loop(x, a):
    y = 0.0
    for k in range(3):
        y = y + a * x
    return y


def m_sum(x, a):
    return a * np.sum(x)


def m_call(x, a):
    return a * helper(x)        # noqa: F821


def m_array_global(x, a):
    return a * TABLE * x


TABLE = np.arange(3.0)


def m_mixed(x, a):
    return a * x + x[0]


@pytest.mark.parametrize("f,construct", [
    (m_if, "'if' statement"), (m_loop, "'for' loop"), (m_sum, "np.sum"),
    (m_call, "helper"), (m_array_global, "TABLE"),
    (m_mixed, "one coordinate and as several"),
], ids=lambda v: getattr(v, "__name__", ""))
def test_unsupported_constructs_are_named_with_their_line(f, construct):
    with pytest.raises(ModelCompileError) as info:
        compile_model(f)
    msg = str(info.value)
    assert construct in msg and f"'{f.__name__}'" in msg
    assert "line" in msg and "test_compiler.py" in msg


def test_bad_models():
    with pytest.raises(ModelCompileError, match="no parameters"):
        compile_model(lambda x: x)
    with pytest.raises(ModelCompileError, match="Python function"):
        compile_model(np.exp)
