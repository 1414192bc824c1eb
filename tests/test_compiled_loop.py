"""The compiled minimize loop (adamsci._compiled): its three forms agree.

* the loop compiled around an objective declared ``cache=True`` (the
  objective inlined into it, cached on disk under the objective's identity);
* the loop compiled once per signature, calling any jitted objective
  through its address (objectives without a disk cache);
* the Python loop (``compiled=False``).

They run the same arithmetic, so every result must be bitwise identical,
whichever way the run ends.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit

import adamsci
from adamsci import _compiled, schedules

A = np.array([[3.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 1.0]])
B = np.array([1.0, -2.0, 0.5])


@njit(cache=True)
def quad_tuple(x):
    """0.5 x'Ax - b'x with its gradient as a tuple (no allocation)."""
    g0 = 3.0 * x[0] + 0.5 * x[1] - 1.0
    g1 = 0.5 * x[0] + 2.0 * x[1] + 0.3 * x[2] + 2.0
    g2 = 0.3 * x[1] + 1.0 * x[2] - 0.5
    f = 0.5 * (x[0] * (g0 + 1.0) + x[1] * (g1 - 2.0) + x[2] * (g2 + 0.5)) \
        - (x[0] - 2.0 * x[1] + 0.5 * x[2])
    return f, (g0, g1, g2)


@njit(cache=True)
def quad_array(x, A, b):
    return 0.5 * x @ (A @ x) - b @ x, A @ x - b


@njit(cache=True)
def poisoned(x):
    """Finite until x[0] passes 0.3, then a nan gradient component."""
    g0 = 3.0 * x[0] + 0.5 * x[1] - 1.0
    g1 = 0.5 * x[0] + 2.0 * x[1] + 2.0
    if x[0] > 0.3:
        g1 = np.nan
    return x[0] * x[0] + x[1] * x[1], (g0, g1)


@njit(cache=True)
def short_gradient(x):
    return x[0] * x[0], (2.0 * x[0],)       # one entry for two parameters


def _uncached(fun):
    """The same objective, compiled without a disk cache."""
    return njit(fun.py_func)


def _runs(fun, x0, args=(), method="adam", first_class=False, **options):
    """Results of the inlined loop, the Python loop and, with
    ``first_class``, the loop calling the objective through its address
    (compiling that loop takes half a minute per optimizer and dtype, so
    only the first test exercises it)."""
    method = getattr(adamsci, method)
    loops = [(fun, True), (fun, False)]
    if first_class:
        loops.append((_uncached(fun), True))
    return [method(f, x0, args=args, jac=True, compiled=c, **options)
            for f, c in loops]


def _assert_same(results):
    first = results[0]
    for r in results[1:]:
        np.testing.assert_array_equal(r.x, first.x)
        np.testing.assert_array_equal(r.jac, first.jac)
        assert (r.fun, r.nit, r.nfev, r.njev, r.status, r.message) == \
            (first.fun, first.nit, first.nfev, first.njev, first.status,
             first.message)
        for a, b in zip(r.state, first.state):
            np.testing.assert_array_equal(a, b)
        if "x_avg" in first:
            np.testing.assert_array_equal(r.x_avg, first.x_avg)


X0 = np.array([0.1, 0.2, 0.7])


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["maxiter", "gtol", "maxfev"])
def test_every_loop_stops_alike(stop):
    options = {"maxiter": dict(maxiter=300, gtol=0.0),
               "gtol": dict(maxiter=5000, gtol=1e-3),
               "maxfev": dict(maxiter=5000, gtol=0.0, maxfev=123)}[stop]
    res = _runs(quad_tuple, X0, learning_rate=0.05, first_class=True,
                **options)
    _assert_same(res)
    assert res[0].status == {"maxiter": 1, "gtol": 0, "maxfev": 2}[stop]
    assert res[0].nfev == {"maxiter": 301, "maxfev": 123}.get(stop,
                                                               res[0].nfev)
    # the inlined loop was compiled around quad_tuple, not the others
    assert any("lean_adam" in name for name in _compiled._INLINE)


@pytest.mark.slow
def test_nonfinite_gradient_mid_run_keeps_the_last_finite_step():
    res = _runs(poisoned, np.array([0.0, 0.0]), learning_rate=0.05,
                 maxiter=500, gtol=0.0)
    _assert_same(res)
    r = res[0]
    assert r.status == 3 and 0 < r.nit < 500
    # x is where the gradient stopped being finite, reached by nit finite
    # steps: a run one step shorter ends one step before it
    assert r.x[0] > 0.3 and np.isfinite(r.x).all() and np.isnan(r.jac[1])
    short = adamsci.adam(poisoned, np.array([0.0, 0.0]), jac=True,
                         learning_rate=0.05, maxiter=r.nit - 1, gtol=0.0)
    assert short.status == 1 and short.x[0] <= 0.3
    np.testing.assert_array_equal(r.state.step, short.state.step + 1)


@pytest.mark.slow
@pytest.mark.parametrize("form", ["array", "tuple"])
@pytest.mark.parametrize("options", [
    dict(method="adam", learning_rate=schedules.inverse_sqrt(0.2),
         amsgrad=True, ema_decay=0.9, weight_decay=0.01),
    dict(method="adam", learning_rate=0.05, weight_decay=0.1,
         decoupled_weight_decay=True, bias_correction=False),
    dict(method="adamax", learning_rate=0.05),
    dict(method="sgd", learning_rate=0.1, momentum=0.9, nesterov=True),
    dict(method="rmsprop", learning_rate=0.01, centered=True, momentum=0.5),
])
def test_flags_compiled_into_the_loop_change_nothing(options, form):
    # the inlined loop compiles the 0/1 hyperparameters in as constants;
    # with a tuple gradient it runs on copies of x and of every state row
    # (up to four: AMSGrad with averaging) kept in registers
    fun, args = (quad_array, (A, B)) if form == "array" else (quad_tuple, ())
    _assert_same(_runs(fun, X0, args=args, maxiter=200, gtol=0.0,
                        **options))
    if form == "tuple":
        assert any(name.startswith(f"lean_{options['method']}_k3_")
                   for name in _compiled._INLINE)


def test_tuple_gradients_get_the_loop_in_registers():
    adamsci.adam(quad_tuple, X0, jac=True, maxiter=3)
    assert any(name.startswith("lean_adam_k3_") for name in _compiled._INLINE)
    # an array gradient: the loop on x and the state in place
    adamsci.adam(quad_array, X0, args=(A, B), jac=True, maxiter=3)
    assert any(name.startswith("lean_adam_") and "_k" not in name
               for name in _compiled._INLINE)


def test_stack_arrays_have_constant_shapes_and_strides():
    from adamsci.kernels.cpu import stack_empty, stack_empty_2d

    @njit
    def fill():
        a = stack_empty(3, np.float32)
        b = stack_empty_2d(4, 3, np.float64)
        for i in range(3):
            a[i] = i
            for r in range(4):
                b[r, i] = 10 * r + i
        return a.copy(), b.copy(), b.strides
    a, b, strides = fill()
    np.testing.assert_array_equal(a, np.arange(3, dtype=np.float32))
    np.testing.assert_array_equal(b, 10 * np.arange(4)[:, None] + np.arange(3))
    assert strides == (24, 8) and a.dtype == np.float32


def test_float32_parameters_and_float64_gradient():
    res = _runs(quad_tuple, X0.astype(np.float32), learning_rate=0.05,
                 maxiter=200, gtol=0.0)
    _assert_same(res)
    assert res[0].x.dtype == np.float32


def test_gradient_of_the_wrong_length_is_refused_by_every_loop():
    for compiled in (True, False):
        with pytest.raises(ValueError, match="gradient has shape"):
            adamsci.adam(short_gradient, np.ones(2), jac=True,
                         compiled=compiled)


def test_identity_only_for_objectives_with_a_disk_cache():
    assert _compiled._identity(quad_tuple) is not None
    assert _compiled._identity(_uncached(quad_tuple)) is None
    # what the identity depends on: the code, not the object
    assert _compiled._identity(quad_tuple) != _compiled._identity(poisoned)


_SCRIPT = """
import sys, numpy as np
sys.path.insert(0, {here!r})
import adamsci
from adamsci import _compiled
from objective_mod import fg
res = adamsci.adam(fg, np.array([1.0, -1.0]), jac=True, learning_rate=0.1,
                   maxiter=50, gtol=0.0)
(name, loop), = _compiled._INLINE.items()
print(name, sum(loop.stats.cache_hits.values()), res.x[0], res.x[1])
"""

_OBJECTIVE = """
from numba import njit


@njit(cache=True)
def fg(x):
    return x[0] ** 2 + {c} * x[1] ** 2, (2.0 * x[0], 2.0 * {c} * x[1])
"""


@pytest.mark.slow
def test_inlined_loop_is_cached_on_disk_and_follows_edits(tmp_path):
    root = os.path.dirname(os.path.dirname(adamsci.__file__))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join(
                   [root] + os.environ.get("PYTHONPATH", "").split(
                       os.pathsep)).rstrip(os.pathsep))
    script = tmp_path / "run.py"
    script.write_text(_SCRIPT.format(here=str(tmp_path)))

    def run(c):
        (tmp_path / "objective_mod.py").write_text(_OBJECTIVE.format(c=c))
        out = subprocess.run([sys.executable, str(script)], env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        name, hits, x0, x1 = out.stdout.split()
        return name, int(hits), float(x0), float(x1)

    first = run("3.0")
    again = run("3.0")
    assert first[1] == 0 and again[1] == 1          # compiled, then loaded
    assert again[0] == first[0] and again[2:] == first[2:]
    # an edited objective gets its own loop, compiled for it
    edited = run("30.0")
    assert edited[0] != first[0] and edited[1] == 0
    assert edited[3] != first[3]

