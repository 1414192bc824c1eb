"""The compiled minimize loop (adamsci._loop.compiled_loop) and the Python
loop run the one iteration (adamsci._loop.iterate), so every result must be
bitwise identical, whichever way the run ends: with an objective compiled
with or without ``cache=True``, returning its gradient as an array or a
tuple, and the Python loop (``compiled=False``).
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit

import adamsci
from adamsci import _loop, schedules

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


def _runs(fun, x0, args=(), method="adam", uncached=False, **options):
    """Results of the compiled loop, the Python loop and, with
    ``uncached``, the compiled loop around the same objective compiled
    without a disk cache."""
    method = getattr(adamsci, method)
    loops = [(fun, True), (fun, False)]
    if uncached:
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
    res = _runs(quad_tuple, X0, learning_rate=0.05, uncached=True,
                **options)
    _assert_same(res)
    assert res[0].status == {"maxiter": 1, "gtol": 0, "maxfev": 2}[stop]
    assert res[0].nfev == {"maxiter": 301, "maxfev": 123}.get(stop,
                                                               res[0].nfev)


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
    fun, args = (quad_array, (A, B)) if form == "array" else (quad_tuple, ())
    _assert_same(_runs(fun, X0, args=args, maxiter=200, gtol=0.0,
                        **options))


def test_one_loop_per_signature_serves_every_objective():
    """The compiled loop takes the objective as a first-class function: a
    second objective of the same signature reuses the loop compiled for the
    first (only the objective itself compiles)."""
    adamsci.adam(quad_tuple, X0, jac=True, maxiter=3)
    before = len(_loop._drive.signatures)
    other = njit(lambda x: (float(x @ x), (2 * x[0], 2 * x[1], 2 * x[2])))
    res = adamsci.adam(other, X0, jac=True, maxiter=3, compiled=True)
    assert res.nit == 3 and len(_loop._drive.signatures) == before


def test_stack_arrays_have_constant_shapes():
    from adamsci.kernels.cpu import stack_empty

    @njit
    def fill():
        a = stack_empty(3, np.float32)
        for i in range(3):
            a[i] = i
        return a.copy(), a.strides
    a, strides = fill()
    np.testing.assert_array_equal(a, np.arange(3, dtype=np.float32))
    assert strides == (4,) and a.dtype == np.float32


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


_SCRIPT = """
import sys, numpy as np
sys.path.insert(0, {here!r})
import adamsci
from adamsci import _loop
from objective_mod import fg
res = adamsci.adam(fg, np.array([1.0, -1.0]), jac=True, learning_rate=0.1,
                   maxiter=50, gtol=0.0)
hits = sum(_loop._drive.stats.cache_hits.values()) + sum(
    _loop.iterate.stats.cache_hits.values())
print(hits, res.x[0], res.x[1])
"""

_OBJECTIVE = """
from numba import njit


@njit(cache=True)
def fg(x):
    return x[0] ** 2 + {c} * x[1] ** 2, (2.0 * x[0], 2.0 * {c} * x[1])
"""


@pytest.mark.slow
def test_compiled_loop_is_cached_on_disk_and_follows_edits(tmp_path):
    """A new process loads the loop and the iteration from the disk cache;
    an edited objective (Numba recompiles it) gives the edited results."""
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
        hits, x0, x1 = out.stdout.split()
        return int(hits), float(x0), float(x1)

    first = run("3.0")
    again = run("3.0")
    assert first[0] == 0 and again[0] == 2          # compiled, then loaded
    assert again[1:] == first[1:]
    edited = run("30.0")
    assert edited[0] == 2 and edited[2] != first[2]
