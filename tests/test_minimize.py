"""scipy.optimize.minimize methods (adamsci.minimize): protocol, options,
stopping rules, bounds, callbacks, the compiled loop, and the paper's tests.

Trajectories are checked against the plain-NumPy references of
tests/reference.py (independent code, written from the formulas).
"""
import inspect
import math
import warnings

import numpy as np
import pytest
import scipy.optimize as so
from numba import njit
from scipy.optimize import Bounds, LinearConstraint, OptimizeWarning

import adamsci
from adamsci import _loop, minimize as M, schedules
from adamsci.optimizers import OPTIMIZERS
from reference import REFERENCES, max_rel_err

METHODS = ("adam", "adamax", "sgd", "adagrad", "rmsprop", "adadelta")
# a learning rate that converges on the quadratic below within ~2000 steps
GOOD = {"adam": dict(learning_rate=0.05), "adamax": dict(learning_rate=0.05),
        "sgd": dict(learning_rate=0.1), "adagrad": dict(learning_rate=0.5),
        "rmsprop": dict(learning_rate=0.01),
        "adadelta": dict(learning_rate=1.0, eps=1e-4)}

A = np.array([[3.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 1.0]])
B = np.array([1.0, -2.0, 0.5])
XSTAR = np.linalg.solve(A, B)


def quad(x):
    """0.5 x'Ax - b'x and its gradient (minimum at XSTAR)."""
    return 0.5 * x @ A @ x - B @ x, A @ x - B


def quad_f(x):
    return quad(x)[0]


def quad_g(x):
    return quad(x)[1]


def grad_at(theta, t):
    return A @ theta - B


class Counter:
    """Wraps a function and counts its calls."""

    def __init__(self, fun):
        self.fun = fun
        self.calls = 0

    def __call__(self, x, *args):
        self.calls += 1
        return self.fun(x, *args)


def run(name, fun=quad, x0=(0.0, 0.0, 0.0), jac=True, **options):
    return getattr(adamsci, name)(fun, np.array(x0, dtype=float), jac=jac,
                                  **options)


# -- 1. the protocol ---------------------------------------------------------
@pytest.mark.parametrize("name", METHODS)
def test_methods_work_through_scipy_minimize(name):
    res = so.minimize(quad, np.zeros(3), jac=True,
                      method=getattr(adamsci, name),
                      options={**GOOD[name], "maxiter": 3000, "gtol": 1e-6})
    assert isinstance(res, so.OptimizeResult)
    for key in ("x", "fun", "jac", "nit", "nfev", "njev", "status",
                "success", "message", "optimizer", "state"):
        assert key in res, key
    assert isinstance(res.message, str) and res.message == \
        M.MESSAGES[res.status]
    assert res.status == 0 and res.success
    np.testing.assert_allclose(res.x, XSTAR, atol=1e-5)
    # fun and jac are those at x
    f, g = quad(res.x)
    assert res.fun == f
    np.testing.assert_array_equal(res.jac, g)
    assert res.nfev == res.nit + 1 == res.njev
    assert res.optimizer.name == name
    assert int(res.state.step[0]) == res.nit
    assert type(res.state) is res.optimizer.State


@pytest.mark.parametrize("name", METHODS)
def test_options_are_the_optimizers_hyperparameters(name):
    cls = OPTIMIZERS[name]
    ctor = inspect.signature(cls.__init__).parameters
    want = {k: p.default for k, p in ctor.items()
            if k not in ("self", "nonfinite", "parallel")}
    method = inspect.signature(getattr(adamsci, name)).parameters
    have = {k: p.default for k, p in method.items()
            if p.kind == p.KEYWORD_ONLY}
    assert set(have) == set(want)
    for k, v in want.items():
        if v is not inspect.Parameter.empty:
            assert have[k] == v, k
    doc = getattr(adamsci, name).__doc__
    assert "Other Parameters\n    ----------------" in doc
    for k in list(want) + list(M.LOOP_OPTIONS):
        if k != "tol":
            assert f"    {k}" in doc or f", {k}" in doc, k


# -- 2. trajectories against the NumPy references ------------------------------
CASES = [
    ("adam", dict(learning_rate=0.05)),
    ("adam", dict(learning_rate=0.05, amsgrad=True, weight_decay=0.1,
                  decoupled_weight_decay=True)),
    ("adam", dict(learning_rate=0.05, weight_decay=0.1, beta1=0.8,
                  beta2=0.99, eps=1e-6)),
    ("adam", dict(learning_rate=0.05, bias_correction=False)),
    ("adam", dict(learning_rate=0.05, ema_decay=0.9)),
    ("adamax", dict(learning_rate=0.05, weight_decay=0.05)),
    ("adamax", dict(learning_rate=0.05, ema_decay=0.8)),
    ("sgd", dict(learning_rate=0.05, momentum=0.9, nesterov=True,
                 weight_decay=0.01)),
    ("sgd", dict(learning_rate=0.05, momentum=0.5, dampening=0.3)),
    ("sgd", dict(learning_rate=0.05)),
    ("adagrad", dict(learning_rate=0.3, lr_decay=0.01,
                     initial_accumulator_value=0.1, weight_decay=0.01)),
    ("rmsprop", dict(learning_rate=0.01, centered=True, momentum=0.5,
                     weight_decay=0.01)),
    ("rmsprop", dict(learning_rate=0.01, alpha=0.9)),
    ("adadelta", dict(learning_rate=1.0, rho=0.95, weight_decay=0.01)),
]
_REF_NAMES = {"learning_rate": "lr", "decoupled_weight_decay": "decoupled"}


@pytest.mark.parametrize("name,hyper", CASES)
def test_trajectory_matches_reference(name, hyper):
    steps = 40
    x0 = np.array([0.5, -0.3, 0.2])
    res = run(name, x0=x0, maxiter=steps, gtol=0, **hyper)
    assert res.nit == steps and res.status == 1 and not res.success
    ref_kw = {_REF_NAMES.get(k, k): v for k, v in hyper.items()}
    theta, state = REFERENCES[name](x0, grad_at, steps, **ref_kw)
    assert max_rel_err(res.x, theta) < 1e-12
    for field in res.state._fields[1:]:
        arr = getattr(res.state, field)
        if arr.size and field in state:
            assert max_rel_err(arr, state[field]) < 1e-12, field
    if hyper.get("ema_decay"):
        averaged = state["avg"] / (1 - hyper["ema_decay"] ** steps)
        assert max_rel_err(res.x_avg, averaged) < 1e-12


def test_maximize_ascends():
    def neg(x):
        f, g = quad(x)
        return -f, -g
    res = run("adam", fun=neg, learning_rate=0.05, maximize=True,
              maxiter=3000, gtol=1e-6)
    assert res.status == 0
    np.testing.assert_allclose(res.x, XSTAR, atol=1e-5)


@pytest.mark.parametrize("name", ["adam", "adamax", "sgd", "adagrad",
                                  "rmsprop", "adadelta"])
def test_same_arithmetic_as_optimizer_step(name):
    # minimize's iteration calls the kernels' own per-array step with the
    # same per-step scalars: bitwise the same iterates as Optimizer.step
    hyper = dict(CASES[[c[0] for c in CASES].index(name)][1])
    steps = 25
    x0 = np.array([0.5, -0.3, 0.2])
    res = run(name, x0=x0, maxiter=steps, gtol=0, **hyper)
    opt = OPTIMIZERS[name](**hyper)
    x = x0.copy()
    state = opt.init(x)
    for _ in range(steps):
        opt.step(x, grad_at(x, 0), state)
    np.testing.assert_array_equal(res.x, x)
    for a, b in zip(res.state, state):
        np.testing.assert_array_equal(a, b)


def test_float32_stays_float32():
    x0 = np.array([0.5, -0.3, 0.2], dtype=np.float32)

    def fg(x):
        return float(0.5 * x @ (A @ x) - B @ x), (A @ x - B).astype(x.dtype)
    res = adamsci.adam(fg, x0, jac=True, learning_rate=0.05, maxiter=30,
                       gtol=0)
    assert res.x.dtype == np.float32 and res.state.m.dtype == np.float32
    theta, _ = REFERENCES["adam"](x0, lambda th, t: (A @ th - B).astype(
        np.float32), 30, lr=0.05)
    assert max_rel_err(res.x, theta) < 1e-5


@pytest.mark.parametrize("schedule", [
    schedules.inverse_sqrt(0.1), schedules.exponential(0.1, 0.5, 10),
    schedules.cosine(0.1, 30, 0.1), lambda t: 0.1 / (1 + t)])
def test_learning_rate_schedules(schedule):
    steps = 30
    x0 = np.array([0.5, -0.3, 0.2])
    res = run("adam", x0=x0, maxiter=steps, gtol=0, learning_rate=schedule)
    theta, _ = REFERENCES["adam"](x0, grad_at, steps, lr=schedule)
    assert max_rel_err(res.x, theta) < 1e-12


# -- jac handling --------------------------------------------------------------
def test_jac_true_is_one_call_per_iteration():
    counted = Counter(quad)
    res = so.minimize(counted, np.zeros(3), jac=True, method=adamsci.adam,
                      options={"learning_rate": 0.05, "maxiter": 150})
    assert res.nit == 150
    assert counted.calls == res.nfev == res.nit + 1 == res.njev


def test_callable_jac_is_one_call_each():
    f, g = Counter(quad_f), Counter(quad_g)
    res = so.minimize(f, np.zeros(3), jac=g, method=adamsci.adam,
                      options={"learning_rate": 0.05, "maxiter": 100})
    ref = run("adam", learning_rate=0.05, maxiter=100)
    assert f.calls == g.calls == res.nfev == res.njev == 101
    np.testing.assert_array_equal(res.x, ref.x)


@pytest.mark.parametrize("jac", [None, "2-point"])
def test_no_jac_uses_scipy_finite_differences(jac):
    f = Counter(quad_f)
    with pytest.warns(OptimizeWarning, match="finite differences"):
        res = so.minimize(f, np.zeros(3), jac=jac, method=adamsci.adam,
                          options={"learning_rate": 0.05, "maxiter": 400})
    assert f.calls == res.nfev == (3 + 1) * (res.nit + 1)
    ref = run("adam", learning_rate=0.05, maxiter=400)
    np.testing.assert_allclose(res.x, ref.x, atol=1e-5)


def test_hess_and_hessp_warn():
    with pytest.warns(RuntimeWarning, match="Hessian information"):
        so.minimize(quad, np.zeros(3), jac=True, method=adamsci.adam,
                    hess=lambda x: A, options={"maxiter": 2})
    with pytest.warns(RuntimeWarning, match="Hessian-vector"):
        so.minimize(quad, np.zeros(3), jac=True, method=adamsci.adam,
                    hessp=lambda x, p: A @ p, options={"maxiter": 2})


@pytest.mark.parametrize("constraints", [
    {"type": "eq", "fun": lambda x: x[0]},
    [LinearConstraint(np.ones((1, 3)), 0, 1)]])
def test_constraints_raise(constraints):
    with pytest.raises(ValueError, match="constraints"):
        so.minimize(quad, np.zeros(3), jac=True, method=adamsci.adam,
                    constraints=constraints)
    so.minimize(quad, np.zeros(3), jac=True, method=adamsci.adam,
                constraints=[], options={"maxiter": 2})


def test_unknown_options_warn_like_scipy():
    with pytest.warns(OptimizeWarning, match="Unknown solver options: "
                                             "foo, bar"):
        so.minimize(quad, np.zeros(3), jac=True, method=adamsci.sgd,
                    options={"foo": 1, "bar": 2, "maxiter": 2})


@pytest.mark.parametrize("bad", [
    dict(maxiter=0), dict(maxiter=1.5), dict(gtol=-1), dict(ftol=np.nan),
    dict(patience=0), dict(f_smoothing=1.0), dict(nonfinite="ignore"),
    dict(x_scale=[1.0, -1.0, 1.0]), dict(x_scale="jac"), dict(maxfev=0),
    dict(learning_rate=-1.0), dict(beta1=1.0), dict(compiled="yes")])
def test_bad_options_raise_valueerror(bad):
    x0 = np.zeros(3)
    with pytest.raises((ValueError, TypeError)):
        adamsci.adam(quad, x0, jac=True, **bad)
    assert not x0.any()


@pytest.mark.parametrize("x0", [[np.nan, 0, 0], [0, np.inf, 0]])
def test_nonfinite_x0_raises(x0):
    with pytest.raises(ValueError, match="x0 must be finite"):
        so.minimize(quad, x0, jac=True, method=adamsci.adam)


# -- bounds --------------------------------------------------------------------
def _bounds_forms():
    lo, hi = [-np.inf, -0.5, 0.6], [0.2, np.inf, 2.0]
    return [
        Bounds(lo, hi),
        Bounds(np.array(lo), np.array(hi), keep_feasible=True),
        [(None, 0.2), (-0.5, None), (0.6, 2.0)],
        ((None, 0.2), (-0.5, None), (0.6, 2.0)),
        np.array([lo, hi]).T,
        [(-np.inf, 0.2), (-0.5, np.inf), (0.6, 2)],
    ]


def test_every_form_of_bounds_gives_the_same_run():
    results = [so.minimize(quad, np.array([0.0, 0.0, 1.0]), jac=True,
                           method=adamsci.adam, bounds=b,
                           options={"learning_rate": 0.02, "maxiter": 3000})
               for b in _bounds_forms()]
    for r in results[1:]:
        np.testing.assert_array_equal(r.x, results[0].x)
    x = results[0].x
    assert x[0] <= 0.2 and x[1] >= -0.5 and 0.6 <= x[2] <= 2.0
    # the box optimum (checked with L-BFGS-B)
    lb = so.minimize(quad, np.array([0.0, 0.0, 1.0]), jac=True,
                     method="L-BFGS-B", bounds=_bounds_forms()[0])
    np.testing.assert_allclose(x, lb.x, atol=1e-5)
    assert results[0].status == 0      # projected gradient below gtol


def test_scalar_bounds_and_projection_every_step():
    seen = []
    res = so.minimize(quad, np.zeros(3), jac=True, method=adamsci.sgd,
                      bounds=Bounds(-0.1, 0.1),
                      callback=lambda xk: seen.append(xk),
                      options={"learning_rate": 0.3, "maxiter": 50})
    seen = np.array(seen)
    assert (seen >= -0.1).all() and (seen <= 0.1).all()
    np.testing.assert_allclose(res.x, np.clip(XSTAR, -0.1, 0.1), atol=1e-6)


def test_x0_outside_bounds_is_clipped_with_warning():
    x0 = np.array([5.0, 0.0, 0.0])
    with pytest.warns(OptimizeWarning, match="clipped"):
        res = so.minimize(quad, x0, jac=True, method=adamsci.adam,
                          bounds=[(-1, 1)] * 3, options={"maxiter": 1})
    assert x0[0] == 5.0                      # the caller's array untouched
    assert abs(res.x[0] - 1.0) < 1e-2


@pytest.mark.parametrize("bounds", [[(1, 0)] * 3, [(0, 1)] * 2,
                                    [(0, np.nan)] * 3, Bounds([0, 0], 1)])
def test_bad_bounds_raise(bounds):
    with pytest.raises(ValueError, match="bounds"):
        so.minimize(quad, np.zeros(3), jac=True, method=adamsci.adam,
                    bounds=bounds)


# -- callback ------------------------------------------------------------------
def test_callback_forms_receive_copies():
    base = run("adam", learning_rate=0.05, maxiter=60)
    got = []

    def new_style(intermediate_result):
        assert isinstance(intermediate_result, so.OptimizeResult)
        got.append((intermediate_result.nit, intermediate_result.fun))
        intermediate_result.x[:] = 1e6            # must change nothing
        intermediate_result.jac[:] = 1e6

    res = so.minimize(quad, np.zeros(3), jac=True, method=adamsci.adam,
                      callback=new_style,
                      options={"learning_rate": 0.05, "maxiter": 60})
    np.testing.assert_array_equal(res.x, base.x)
    assert [g[0] for g in got] == list(range(1, 61))
    assert got[-1][1] == res.fun

    xs = []

    def old_style(xk):
        assert isinstance(xk, np.ndarray)
        xs.append(xk)
        xk[:] = -1e6
    res = so.minimize(quad, np.zeros(3), jac=True, method=adamsci.adam,
                      callback=old_style,
                      options={"learning_rate": 0.05, "maxiter": 60})
    np.testing.assert_array_equal(res.x, base.x)
    assert len(xs) == 60 and len({id(x) for x in xs}) == 60


@pytest.mark.parametrize("style", ["new", "old"])
def test_callback_stopiteration_ends_with_status_99(style):
    def stop_new(intermediate_result):
        if intermediate_result.nit == 5:
            raise StopIteration

    calls = []

    def stop_old(xk):
        calls.append(1)
        if len(calls) == 5:
            raise StopIteration
    res = so.minimize(quad, np.zeros(3), jac=True, method=adamsci.adam,
                      callback=stop_new if style == "new" else stop_old,
                      options={"maxiter": 100})
    assert res.status == 99 and not res.success and res.nit == 5
    assert res.message.startswith("`callback` raised `StopIteration`")


# -- stopping rules and status codes --------------------------------------------
def test_every_status_has_a_message():
    assert set(M.MESSAGES) == {0, 1, 2, 3, 4, 5, 99}
    assert all(isinstance(m, str) and m for m in M.MESSAGES.values())
    assert "status" in M.__doc__ and "99" in M.__doc__


def test_tol_sets_gtol():
    res = so.minimize(quad, np.zeros(3), jac=True, method=adamsci.adam,
                      tol=1e-3, options={"learning_rate": 0.05})
    assert res.status == 0 and np.abs(res.jac).max() <= 1e-3
    assert np.abs(quad(res.x)[1]).max() <= 1e-3


def test_maxfev():
    res = run("adam", learning_rate=0.05, maxfev=10)
    assert res.status == 2 and res.nfev == 10 and res.nit == 9
    assert not res.success


def test_ftol_with_patience_on_a_noisy_objective():
    rng = np.random.default_rng(0)

    def noisy(x):
        f, g = quad(x)
        return f + 0.01 * rng.normal(), g + 0.01 * rng.normal(size=3)
    res = run("adam", fun=noisy, learning_rate=0.05, maxiter=20000,
              ftol=1e-3, patience=200, f_smoothing=0.95)
    assert res.status == 4 and res.success and res.nit < 5000
    np.testing.assert_allclose(res.x, XSTAR, atol=0.05)


@pytest.mark.parametrize("compiled", [False, True])
def test_ftol_waits_while_f_improves(compiled):
    # f falls steadily (by far more than ftol per iteration) for hundreds
    # of iterations: ftol must not stop the run after `patience` of them
    @njit(cache=True)
    def bowl(x):
        return x @ x + 1.0, 2.0 * x
    res = so.minimize(bowl, np.full(3, 5.0), jac=True, method=adamsci.adam,
                   options=dict(learning_rate=0.01, maxiter=5000, ftol=1e-6,
                                patience=20, compiled=compiled))
    assert res.status == 4 and res.nit > 400, (res.status, res.nit)
    assert res.fun < 1.01


def test_xtol_with_a_decaying_learning_rate():
    res = run("adam", learning_rate=schedules.exponential(0.05, 0.5, 20),
              maxiter=5000, gtol=0, xtol=1e-8)
    assert res.status == 5 and res.success
    assert res.nit < 5000


def test_disp_prints(capsys):
    run("adam", maxiter=3, disp=True)
    out = capsys.readouterr().out
    assert "Maximum number of iterations" in out and "Iterations: 3" in out


# -- non-finite values ---------------------------------------------------------
def _nan_after(k):
    calls = [0]

    def fg(x):
        calls[0] += 1
        f, g = quad(x)
        if calls[0] > k:
            return np.nan, g
        return f, g
    return fg


def test_nonfinite_mid_run_keeps_the_last_step():
    res = run("adam", fun=_nan_after(20), learning_rate=0.05, maxiter=100)
    assert res.status == 3 and not res.success
    assert "non-finite" in res.message
    clean = run("adam", learning_rate=0.05, maxiter=20, gtol=0)
    assert res.nit == 20 and np.isfinite(res.x).all()
    np.testing.assert_array_equal(res.x, clean.x)
    for a, b in zip(res.state, clean.state):
        np.testing.assert_array_equal(a, b)


def test_nonfinite_gradient_first_evaluation():
    res = run("sgd", fun=lambda x: (1.0, np.array([np.inf, 0, 0])))
    assert res.status == 3 and res.nit == 0
    np.testing.assert_array_equal(res.x, np.zeros(3))


def test_nonfinite_skip_and_raise():
    calls = [0]

    def flaky(x):
        calls[0] += 1
        f, g = quad(x)
        return (np.nan, g) if calls[0] % 4 == 0 else (f, g)
    res = run("adam", fun=flaky, learning_rate=0.05, maxiter=2000,
              gtol=1e-6, nonfinite="skip")
    assert res.status == 0 and res.nskipped > 20
    np.testing.assert_allclose(res.x, XSTAR, atol=1e-5)
    assert res.nfev == res.nit + 1 + res.nskipped
    # a deterministic NaN: at most 10 skips in a row, then status 3
    res = run("adam", fun=_nan_after(5), nonfinite="skip", maxiter=100)
    assert res.status == 3 and res.nskipped == 10 and res.nit == 5
    with pytest.raises(FloatingPointError):
        run("adam", fun=_nan_after(5), nonfinite="raise")


# -- x_scale -------------------------------------------------------------------
def test_x_scale_is_a_change_of_units():
    s = np.array([1.0, 10.0, 0.1])
    x0 = np.array([0.5, -3.0, 0.02])
    res = run("adam", x0=x0, learning_rate=0.01, maxiter=50, gtol=0,
              x_scale=s)

    def in_y(y):
        f, g = quad(y * s)
        return f, g * s
    ref = run("adam", fun=in_y, x0=x0 / s, learning_rate=0.01, maxiter=50,
              gtol=0)
    np.testing.assert_allclose(res.x, ref.x * s, rtol=1e-13)
    np.testing.assert_array_equal(res.x_scale, s)


def test_x_scale_auto_steps_relative_to_x0():
    # Adam's first step is lr in every coordinate; in units of |x0|
    x0 = np.array([1e-3, 2.0, -50.0])
    res = run("adam", x0=x0, learning_rate=0.01, maxiter=1, gtol=0,
              x_scale="auto", eps=0.0)
    np.testing.assert_allclose(np.abs(res.x - x0), 0.01 * np.abs(x0),
                               rtol=1e-6)
    res = run("adam", x0=np.array([0.0, 4.0, 1.0]), maxiter=1, gtol=0,
              x_scale="auto", learning_rate=0.01, eps=0.0)
    np.testing.assert_allclose(np.abs(res.x - [0.0, 4.0, 1.0]),
                               [0.01, 0.04, 0.01], rtol=1e-6)


# -- stochastic objectives ----------------------------------------------------
def test_minibatch_objective_through_memoizejac():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 3))
    y = X @ np.array([1.0, -1.0, 2.0]) + 0.1 * rng.normal(size=500)

    def fg(w, X, y):
        r = X @ w - y
        return 0.5 * np.mean(r * r), X.T @ r / len(y)
    obj = adamsci.MinibatchObjective(fg, (X, y), batch_size=50, seed=3)
    res = so.minimize(obj, np.zeros(3), jac=True, method=adamsci.adam,
                      options={"learning_rate": 0.02, "maxiter": 400})
    assert obj.calls == res.nfev == res.nit + 1
    assert res.epoch == obj.epoch == 40
    w_ls = np.linalg.lstsq(X, y, rcond=None)[0]
    np.testing.assert_allclose(res.x, w_ls, atol=0.05)
    with pytest.raises(ValueError, match="jac=True"):
        adamsci.adam(obj, np.zeros(3))


# -- the compiled loop -------------------------------------------------------
@njit(cache=True)
def quad_nb(x, A, b):
    return 0.5 * x @ (A @ x) - b @ x, A @ x - b


@njit(cache=True)
def quad_nb_f(x, A, b):
    return 0.5 * x @ (A @ x) - b @ x


@njit(cache=True)
def quad_nb_g(x, A, b):
    return A @ x - b


COMPILED_CASES = [
    dict(learning_rate=0.05),
    dict(learning_rate=schedules.inverse_sqrt(0.1), amsgrad=True,
         ema_decay=0.9, weight_decay=0.01),
    dict(learning_rate=0.05, bounds=[(None, 0.2), (-0.5, None), (0.6, 2)],
         x_scale=[1.0, 2.0, 0.5], ftol=1e-12, patience=5),
    dict(learning_rate=0.05, xtol=1e-12),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", COMPILED_CASES)
def test_compiled_loop_is_bitwise_the_python_loop(case):
    case = dict(case)
    bounds = case.pop("bounds", None)
    x0 = np.array([0.1, 0.2, 0.7])
    before = len(_loop._ENTRIES)
    out = []
    for compiled in (True, False):
        out.append(adamsci.adam(quad_nb, x0, args=(A, B), jac=True,
                                bounds=bounds, maxiter=500,
                                compiled=compiled, **case))
    assert len(_loop._ENTRIES) >= min(before + 1, 1)
    c, p = out
    np.testing.assert_array_equal(c.x, p.x)
    assert (c.fun, c.nit, c.nfev, c.njev, c.status) == \
        (p.fun, p.nit, p.nfev, p.njev, p.status)
    np.testing.assert_array_equal(c.jac, p.jac)
    for a, b in zip(c.state, p.state):
        np.testing.assert_array_equal(a, b)
    if "ema_decay" in case:
        np.testing.assert_array_equal(c.x_avg, p.x_avg)


@pytest.mark.slow
def test_compiled_loop_with_separate_jac_and_nonfinite():
    x0 = np.array([0.1, 0.2, 0.7])
    c = adamsci.adam(quad_nb_f, x0, args=(A, B), jac=quad_nb_g,
                     learning_rate=0.05, maxiter=300, gtol=0, compiled=True)
    p = so.minimize(quad_nb_f, x0, args=(A, B), jac=quad_nb_g,
                    method=adamsci.adam, options=dict(
                        learning_rate=0.05, maxiter=300, gtol=0,
                        compiled=False))
    np.testing.assert_array_equal(c.x, p.x)
    assert c.nfev == c.njev == 301
    # a non-finite start ends the compiled run like the Python one
    bad = adamsci.adam(quad_nb_f, x0, args=(A, B * np.nan), jac=quad_nb_g,
                       compiled=True)
    assert bad.status == 3 and bad.nit == 0


def test_compiled_true_needs_jitted_functions():
    with pytest.raises(ValueError, match="compiled=True"):
        adamsci.adam(quad, np.zeros(3), jac=True, compiled=True)


# -- 5. the paper and beyond ----------------------------------------------------
class _Reddi:
    """f_t(x) = 3x if t mod 3 == 1 else -x (Reddi et al. 2018, Theorem 1)."""

    def __init__(self):
        self.t = 0

    def __call__(self, x):
        self.t += 1
        c = 3.0 if self.t % 3 == 1 else -1.0
        return c * x[0], np.array([c])


@pytest.mark.parametrize("amsgrad", [False, True])
def test_amsgrad_counterexample(amsgrad):
    # the average gradient is +1/3: the minimiser over [-1, 1] is -1
    res = so.minimize(_Reddi(), [0.0], jac=True, method=adamsci.adam,
                      bounds=[(-1, 1)],
                      options=dict(beta1=0.0, beta2=1 / (1 + 3 ** 2),
                                   learning_rate=schedules.inverse_sqrt(0.5),
                                   amsgrad=amsgrad, maxiter=1000, gtol=0))
    assert res.nit == 1000
    if amsgrad:
        assert res.x[0] < -0.99
    else:
        assert res.x[0] > 0.9


def test_rosenbrock_from_scipy_start():
    res = so.minimize(so.rosen, [-1.2, 1.0], jac=so.rosen_der,
                      method=adamsci.adam,
                      options={"learning_rate": 0.02, "maxiter": 20000})
    assert res.success
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-4)


@njit(cache=True)
def _column_gradient(x):
    return x @ x, (2 * x).reshape(-1, 1)     # a (n, 1) gradient


def test_compiled_loop_falls_back_when_it_cannot_compile():
    with pytest.warns(OptimizeWarning, match="Python loop"):
        res = adamsci.adam(_column_gradient, np.ones(2), jac=True,
                           learning_rate=0.1, maxiter=2000)
    assert res.status == 0 and np.abs(res.x).max() < 1e-4
    with pytest.raises(ValueError, match="compiled=True"):
        adamsci.adam(_column_gradient, np.ones(2), jac=True, compiled=True)
