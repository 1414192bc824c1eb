r"""``scipy.optimize.minimize`` methods: Adam, AdaMax and the baselines.

Each function here is a custom method for :func:`scipy.optimize.minimize`
(scipy >= 1.11)::

    res = scipy.optimize.minimize(fun, x0, jac=True, method=adamsci.adam,
                                  options={"learning_rate": 1e-2})

They share one loop: one objective evaluation per iteration (the value and
gradient at the current ``x``), then one optimizer step; the result's
``fun`` and ``jac`` are those at ``res.x``, so ``nfev = nit + 1`` with an
analytic gradient. The per-iteration work between two evaluations runs in
one compiled call (``adamsci._loop.iterate``); when ``fun`` (and ``jac``)
are Numba ``@njit`` functions the whole loop runs in Numba.

Each method's hyperparameters and loop controls are keyword-only parameters
(listed under *Other Parameters*) that are passed in ``options={...}`` of
``scipy.optimize.minimize``, as for scipy's own methods.

Status codes
------------
======  =====================================================  ========
status  meaning                                                success
======  =====================================================  ========
0       the largest component of the gradient (projected on    True
        the bounds) is <= ``gtol``
1       ``maxiter`` iterations done                            False
2       ``maxfev`` objective calls done                        False
3       the objective returned a non-finite value or           False
        gradient; it was not applied: ``x`` and ``state`` are
        those of the last step taken, ``fun`` and ``jac`` the
        non-finite values returned at ``x``
4       the smoothed objective did not improve by ``ftol``     True
        (relative) for ``patience`` iterations
5       the last step was <= ``xtol * (xtol + |x|)``           True
99      the callback raised ``StopIteration``                  False
======  =====================================================  ========

Messages are in :data:`MESSAGES`.
"""
import inspect
import math
import numbers
import warnings

import numpy as np
from numba.core.registry import CPUDispatcher as _CPUDispatcher
from scipy.optimize import Bounds, OptimizeResult, OptimizeWarning

from . import _loop as L
from . import _record
from . import history as _history
from . import optimizers as _optimizers
from . import schedules as _schedules
from .objectives import MinibatchObjective

__all__ = ["adam", "adamax", "sgd", "adagrad", "rmsprop", "adadelta",
           "MESSAGES"]

#: Message of each status code.
MESSAGES = {
    L.GTOL: "Optimization terminated successfully: the largest gradient "
            "component is <= gtol.",
    L.MAXITER: "Maximum number of iterations has been exceeded.",
    L.MAXFEV: "Maximum number of function evaluations has been exceeded.",
    L.NONFINITE: "The objective returned a non-finite value or gradient; it "
                 "was not applied: x and state are those of the last step "
                 "taken.",
    L.FTOL: "Optimization terminated successfully: the smoothed objective "
            "improved by less than ftol for patience iterations.",
    L.XTOL: "Optimization terminated successfully: the step is <= "
            "xtol * (xtol + |x|).",
    L.CALLBACK: "`callback` raised `StopIteration`.",
}
_SUCCESS = (L.GTOL, L.FTOL, L.XTOL)

#: Options of the loop shared by all methods, with their defaults.
LOOP_OPTIONS = {
    "maxiter": 10000, "maxfev": None, "tol": None, "gtol": 1e-5,
    "ftol": 0.0, "patience": 100, "f_smoothing": 0.9, "xtol": 0.0,
    "x_scale": None, "nonfinite": "stop", "disp": False, "compiled": None,
}
LOOP_OPTIONS.update(_history.OPTIONS)   # record, progress, resume, ...
_NONFINITE = ("stop", "skip", "raise")
_MAXSKIP = 10
_FG, _F_G, _FD = range(3)
_I64MAX = np.iinfo(np.int64).max

_LOOP_DOC = """
    maxiter : int, default 10000
        Maximum number of iterations (optimizer steps), >= 1.
    maxfev : int or None, default None
        Maximum number of objective calls (finite differences count
        every call); None: no limit.
    gtol : float, default 1e-5
        Stop (status 0) when the largest component of the gradient at
        ``x`` is <= gtol; components that point out of the bounds at an
        active bound do not count. ``tol`` (scipy's ``minimize(...,
        tol=)``) sets it when ``gtol`` is not given. 0 disables it.
    ftol : float, default 0 (off)
        For noisy objectives: stop (status 4) when an exponential moving
        average of f has not improved by more than ``ftol`` times its best
        value (relative) for ``patience`` iterations in a row.
    patience : int, default 100
        See ``ftol``.
    f_smoothing : float, default 0.9
        Decay of the moving average of f in [0, 1) (0: raw f); the
        average is bias-corrected as Adam's moments.
    xtol : float, default 0 (off)
        Stop (status 5) after a step with ``|dx| <= xtol * (xtol + |x|)``
        (2-norms); useful with a decaying learning rate.
    x_scale : array_like, "auto" or None, default None
        Per-parameter units: the optimizer runs on ``y = x / x_scale``
        (gradient ``g * x_scale``), and bounds are scaled alike. For Adam,
        AdaMax, RMSProp and AdaGrad this makes the step of parameter ``i``
        about ``learning_rate * x_scale[i]``, a per-parameter learning rate.
        ``"auto"`` uses ``|x0|`` (1 where ``x0`` is 0). ``res.state`` is
        then in y units.
    nonfinite : {"stop", "skip", "raise"}, default "stop"
        A NaN or infinite value or gradient is never applied. "stop" ends
        the run (status 3); "skip" evaluates again at the same ``x`` (a
        new batch of a stochastic objective; at most 10 times in a row,
        then status 3; ``res.nskipped`` counts them); "raise" raises
        FloatingPointError.
    disp : bool, default False
        Print a summary at the end.
    compiled : bool or None, default None
        Run the whole loop in Numba when ``fun`` (and ``jac``) are Numba
        ``@njit`` functions, no callback is given and the learning rate is
        a number or an :mod:`adamsci.schedules` schedule. None: when
        possible; True: required (ValueError otherwise); False: never.
"""

_PARAMS_DOC = """
    Parameters
    ----------
    fun : callable
        ``fun(x, *args) -> float``, or ``-> (float, ndarray)`` with
        ``jac=True`` (for example a :class:`adamsci.MinibatchObjective`).
    x0 : ndarray, shape (n,)
        Starting point: finite, float64 or float32 (the state and the
        arithmetic follow its dtype).
    args : tuple
        Extra arguments of ``fun`` and ``jac``.
    jac : callable, True or None
        ``jac(x, *args) -> ndarray (n,)`` (one call per iteration), True
        when ``fun`` returns the value and gradient together (exactly one
        call per iteration), or None (also what ``"2-point"``,
        ``"3-point"`` and ``"cs"`` arrive as): finite differences by
        :mod:`scipy.optimize`, ``n + 1`` calls per iteration (a warning
        says so).
    hess, hessp
        Unused (a warning says so when given).
    bounds : scipy.optimize.Bounds or sequence of (min, max), optional
        Box constraints; ``None`` or infinite entries mean no bound. Every
        step is followed by a projection onto the box; ``x0`` outside it is
        clipped with a warning.
    constraints
        Not supported: anything but an empty sequence raises ValueError.
    callback : callable, optional
        ``callback(intermediate_result)`` (when that is its only parameter:
        an OptimizeResult with ``x``, ``fun``, ``jac``, ``nit``) or
        ``callback(xk)``, after every iteration, with copies. Raising
        ``StopIteration`` ends the run (status 99).
"""

_RETURNS_DOC = """
    Returns
    -------
    res : scipy.optimize.OptimizeResult
        ``x``, ``fun`` and ``jac`` (at ``x``), ``nit``, ``nfev``, ``njev``,
        ``status`` and ``message`` (see :data:`adamsci.minimize.MESSAGES`
        and the status codes of :mod:`adamsci.minimize`), ``success``;
        ``optimizer`` (the :class:`adamsci.Optimizer` with these
        hyperparameters) and ``state`` (its state after the last step, for
        resuming); ``history`` with ``record`` (an :class:`xarray.Dataset`,
        :mod:`adamsci.history`); ``x_avg`` with ``ema_decay`` (the
        bias-corrected temporal average of ``x``); ``x_scale`` with
        ``x_scale``; ``nskipped`` with ``nonfinite="skip"``; ``epoch`` when
        ``fun`` is a :class:`adamsci.MinibatchObjective`.

    Raises
    ------
    ValueError
        Non-finite or non-1-D ``x0``, ``maxiter < 1``, constraints, bad
        bounds or options (nothing is modified).
    FloatingPointError
        With ``nonfinite="raise"``.
"""


def _doc(text):
    return (text.replace("%(params)s", _PARAMS_DOC.strip("\n"))
            .replace("%(loop)s", (_LOOP_DOC + _history.OPTIONS_DOC).strip("\n"))
            .replace("%(returns)s", _RETURNS_DOC.strip("\n")))


# -- option parsing -----------------------------------------------------------
def _is_dispatcher(obj):
    return isinstance(obj, _CPUDispatcher)


def _look_through(fun):
    """The user's objective behind scipy's ``MemoizeJac`` wrapper."""
    if type(fun).__name__ == "MemoizeJac" and hasattr(fun, "fun") and \
            hasattr(fun, "derivative"):
        return fun.fun
    return fun


def _positive_int(name, value, lo=1):
    if type(value) is int and value >= lo:          # the common case, fast
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, numbers.Integral) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


def _nonneg(name, value, hi=None):
    if type(value) is float and 0.0 <= value < (math.inf if hi is None
                                                else hi):
        return value                                # the common case, fast
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if isinstance(value, (bool, np.bool_)) or not (math.isfinite(v) and
                                                   v >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got "
                         f"{value!r}")
    if hi is not None and not v < hi:
        raise ValueError(f"{name} must be in [0, {hi}), got {value!r}")
    return v


def _bounds_arrays(bounds, n):
    """(lo, hi) float64 arrays of shape (n,) from any form scipy accepts."""
    if bounds is None:
        return None
    if isinstance(bounds, Bounds):
        lo, hi = bounds.lb, bounds.ub
        try:
            lo = np.broadcast_to(np.asarray(lo, dtype=float), (n,)).copy()
            hi = np.broadcast_to(np.asarray(hi, dtype=float), (n,)).copy()
        except ValueError as e:
            raise ValueError(f"bounds: Bounds lb and ub must be scalars or "
                             f"have shape ({n},)") from e
    else:
        try:
            pairs = list(bounds)
        except TypeError as e:
            raise ValueError(f"bounds must be a scipy.optimize.Bounds or a "
                             f"sequence of n = {n} (min, max) pairs, got "
                             f"{bounds!r}") from e
        if len(pairs) != n:
            raise ValueError(f"bounds must have one (min, max) pair per "
                             f"parameter: got {len(pairs)} pairs for "
                             f"n = {n} parameters")
        lo = np.empty(n)
        hi = np.empty(n)
        for i, pair in enumerate(pairs):
            try:
                a, b = pair
                lo[i] = -np.inf if a is None else float(a)
                hi[i] = np.inf if b is None else float(b)
            except (TypeError, ValueError) as e:
                raise ValueError(f"bounds[{i}] must be a (min, max) pair of "
                                 f"numbers or None, got {pair!r}") from e
    if np.isnan(lo).any() or np.isnan(hi).any():
        raise ValueError("bounds contain NaN")
    if (lo > hi).any():
        i = int(np.argmax(lo > hi))
        raise ValueError(f"bounds: lower bound {lo[i]} > upper bound {hi[i]} "
                         f"for parameter {i}")
    if np.isneginf(lo).all() and np.isposinf(hi).all():
        return None
    return lo, hi


def _x_scale(x_scale, x0):
    n = x0.size
    if x_scale is None:
        return None
    if isinstance(x_scale, str):
        if x_scale != "auto":
            raise ValueError(f"x_scale must be an array, 'auto' or None, got "
                             f"{x_scale!r}")
        s = np.abs(x0.astype(np.float64))
        s[s == 0] = 1.0
        return s
    try:
        s = np.broadcast_to(np.asarray(x_scale, dtype=float), (n,)).copy()
    except (TypeError, ValueError) as e:
        raise ValueError(f"x_scale must be 'auto' or positive numbers "
                         f"broadcastable to shape ({n},)") from e
    if not (np.isfinite(s).all() and (s > 0).all()):
        raise ValueError("x_scale must be finite and > 0")
    return s


def _callback_caller(callback):
    if callback is None:
        return None
    if not callable(callback):
        raise TypeError(f"callback must be callable, got "
                        f"{type(callback).__name__}")
    try:
        params = set(inspect.signature(callback).parameters)
    except (TypeError, ValueError):
        params = set()
    if params == {"intermediate_result"}:
        def call(x, f, g, nit):
            callback(intermediate_result=OptimizeResult(
                x=x.copy(), fun=f, jac=g.copy(), nit=nit))
    else:
        def call(x, f, g, nit):
            callback(x.copy())
    return call


def _scalar(f):
    """The objective's value as a Python float (size-1 arrays accepted)."""
    if isinstance(f, float):
        return float(f)
    a = np.asarray(f)
    if a.size != 1:
        raise ValueError(f"the objective must return a scalar, got an array "
                         f"of shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise TypeError(f"the objective must return a real number, got "
                        f"{f!r}")
    return float(a.reshape(()))


def _gradient(g, n, dtype):
    try:
        a = np.asarray(g, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise TypeError(f"the gradient must be an array of {n} real numbers, "
                        f"got {type(g).__name__}") from e
    if a.size != n or a.ndim > 1 and a.squeeze().ndim > 1:
        raise ValueError(f"the gradient has shape {a.shape}; x0 has "
                         f"shape ({n},)")
    return np.ascontiguousarray(a.reshape(n))


def _normalizer(n, dtype):
    """``normalize(f, g) -> (float, C-contiguous 1-D array of dtype)``."""
    ndarray = np.ndarray
    float64 = np.float64

    def normalize(f, g):
        if type(f) is not float and type(f) is not float64:
            f = _scalar(f)
        if (type(g) is not ndarray or g.dtype is not dtype or g.ndim != 1
                or not g.flags.c_contiguous):
            g = _gradient(g, n, dtype)
        return f, g
    return normalize


def _evaluator(mode, objective, jac_fun, args, x, fd_method, box):
    """``evaluate() -> (f, g)`` at ``x`` as the objective gives them."""
    # the objective sees a read-only view: it cannot corrupt the iterate
    xv = x.view()
    xv.flags.writeable = False
    if mode == _FG:
        if not args:
            return lambda: objective(xv)
        return lambda: objective(xv, *args)
    if mode == _F_G:
        return lambda: (objective(xv, *args), jac_fun(xv, *args))
    from scipy.optimize._numdiff import approx_derivative
    fd_bounds = (-np.inf, np.inf) if box is None else box
    n = x.size

    def evaluate():
        f = _scalar(objective(xv, *args))
        if math.isfinite(f):
            g = approx_derivative(objective, x.copy(), method=fd_method, f0=f,
                                  args=args, bounds=fd_bounds)
        else:
            g = np.full(n, np.nan)
        return f, g
    return evaluate


def _settings(opt, opts, n_calls, bounded, scaled, recorded):
    """The run's :class:`adamsci._loop.Settings` from checked options."""
    sched = opt._schedule
    if sched is None:
        code, lr, a, b, flag = 0, opt._lr, 0.0, 0.0, False
    elif isinstance(sched, _schedules.Schedule):
        code, lr, a, b, flag = sched.as_tuple()
    else:
        code, lr, a, b, flag = L.PYTHON_SCHEDULE, math.nan, 0.0, 0.0, False
    return L.Settings(
        gtol=opts["gtol"], ftol=opts["ftol"], f_smoothing=opts["f_smoothing"],
        patience=opts["patience"], xtol=opts["xtol"],
        maxiter=opts["maxiter"], maxfev=opts["maxfev"],
        fev_per_eval=n_calls, skip_nonfinite=opts["nonfinite"] == "skip",
        max_skip=_MAXSKIP, bounded=bounded, scaled=scaled,
        sign=-1.0 if getattr(opt, "maximize", False) else 1.0,
        want_step_norm=recorded, schedule=int(code), lr=float(lr),
        schedule_a=float(a), schedule_b=float(b), schedule_flag=bool(flag))


def _initial_state(opt, y, state0):
    """The optimizer's state for ``y``: ``state0`` (resumed or given, as
    arrays of its own) or a new one."""
    if state0 is None:
        return opt.init(y)
    return opt.State(*(np.array(a, copy=True) for a in state0))


def _minimize(cls, hyper, fun, x0, args, jac, hess, hessp, bounds,
              constraints, callback, options):
    # -- options -----------------------------------------------------------
    opts = dict(LOOP_OPTIONS)
    unknown = {}
    given = set()
    for k, v in options.items():
        if k in opts:
            opts[k] = v
            given.add(k)
        else:
            unknown[k] = v
    if unknown:
        warnings.warn(f"Unknown solver options: {', '.join(map(str, unknown))}",
                      OptimizeWarning, stacklevel=4)
    if opts["tol"] is not None and "gtol" not in given:
        opts["gtol"] = opts["tol"]
    opts["maxiter"] = _positive_int("maxiter", opts["maxiter"])
    opts["maxfev"] = _I64MAX if opts["maxfev"] is None else _positive_int(
        "maxfev", opts["maxfev"])
    for k in ("gtol", "ftol", "xtol"):
        opts[k] = _nonneg(k, opts[k])
    opts["patience"] = _positive_int("patience", opts["patience"])
    opts["f_smoothing"] = _nonneg("f_smoothing", opts["f_smoothing"], hi=1.0)
    nonfinite = opts["nonfinite"]
    if nonfinite not in _NONFINITE:
        raise ValueError(f"nonfinite must be one of {_NONFINITE}, got "
                         f"{nonfinite!r}")
    compiled = opts["compiled"]
    if compiled not in (None, True, False):
        raise ValueError(f"compiled must be None, True or False, got "
                         f"{compiled!r}")
    disp = bool(opts["disp"])
    # -- the optimizer (validates the hyperparameters) ----------------------
    opt = cls(**hyper)
    # -- x0 -----------------------------------------------------------------
    x0 = np.asarray(x0)
    if x0.ndim == 0:
        x0 = x0.reshape(1)
    if x0.ndim != 1:
        raise ValueError(f"x0 must be 1-D, got shape {x0.shape}")
    if x0.size == 0:
        raise ValueError("x0 is empty")
    if x0.dtype.kind not in "iuf":        # bool, complex, object, ...
        raise TypeError(f"x0 must be real, got dtype {x0.dtype}")
    if x0.dtype.char not in "fd":
        x0 = x0.astype(np.float64)
    x0 = np.array(x0, copy=True, order="C")
    if not np.isfinite(x0).all():
        raise ValueError("x0 must be finite")
    n = x0.size
    # -- protocol --------------------------------------------------------------
    if not (constraints is None or (isinstance(constraints, (list, tuple))
                                    and len(constraints) == 0)):
        raise ValueError(f"method {opt.name} does not support constraints; "
                         f"pass constraints=() (use bounds for a box)")
    if hess is not None:
        warnings.warn(f"Method {opt.name} does not use Hessian information "
                      f"(hess).", RuntimeWarning, stacklevel=4)
    if hessp is not None:
        warnings.warn(f"Method {opt.name} does not use Hessian-vector "
                      f"product information (hessp).", RuntimeWarning,
                      stacklevel=4)
    if not isinstance(args, tuple):
        args = (args,)
    objective = _look_through(fun)
    fd_method = "2-point"
    if jac is True or (callable(jac) and getattr(jac, "__self__", None)
                       is fun and objective is not fun):
        mode = _FG
        jac_fun = None
    elif callable(jac):
        mode = _F_G
        jac_fun = jac
    elif jac is None or jac is False or jac in ("2-point", "3-point", "cs"):
        mode = _FD
        jac_fun = None
        if isinstance(jac, str):
            fd_method = jac
        if isinstance(objective, MinibatchObjective):
            raise ValueError("a MinibatchObjective returns (f, g): pass "
                             "jac=True")
        warnings.warn(f"jac is None: gradients by finite differences "
                      f"({fd_method}) through scipy cost "
                      f"{n + 1 if fd_method != '3-point' else 2 * n + 1} "
                      f"objective calls per iteration; pass jac=True or a "
                      f"callable", OptimizeWarning, stacklevel=4)
    else:
        raise TypeError(f"jac must be a callable, True, None or one of "
                        f"'2-point', '3-point', 'cs'; got {jac!r}")
    if not callable(objective):
        raise TypeError(f"fun must be callable, got "
                        f"{type(objective).__name__}")
    box = _bounds_arrays(bounds, n)
    if box is not None:
        lo, hi = box
        if ((x0 < lo) | (x0 > hi)).any():
            warnings.warn("x0 is outside the bounds; it is clipped onto "
                          "them", OptimizeWarning, stacklevel=4)
            x0 = np.clip(x0, lo, hi).astype(x0.dtype)
    session = _history.Session.create(opts, opt, x0, objective)
    state0 = None
    if session is not None and session.ckpt is not None:    # resume
        x0, state0 = session.x0, session.state0
    scale = _x_scale(opts["x_scale"], x0)
    if session is not None and session.scale is not None:
        scale = session.scale
    call_back = _callback_caller(callback)
    n_calls = 1 if mode != _FD else (2 * n + 1 if fd_method == "3-point"
                                     else n + 1)
    if n_calls > opts["maxfev"]:
        raise ValueError(f"maxfev={opts['maxfev']} is less than one "
                         f"evaluation ({n_calls} objective calls)")
    # -- the run -------------------------------------------------------------
    recorder = None if session is None else session.recorder
    settings = _settings(opt, opts, n_calls, box is not None,
                         scale is not None, recorder is not None)
    y0 = x0 if scale is None else (x0 / scale).astype(x0.dtype)
    run = L.new_run(x0, _initial_state(opt, y0, state0), opt.hyper,
                    settings, box, scale)
    if session is not None:
        session.attach(run)
    status = None
    can_compile = (call_back is None
                   and (session is None or not session.progress)
                   and settings.schedule != L.PYTHON_SCHEDULE
                   and mode != _FD and _is_dispatcher(objective)
                   and (mode == _FG or _is_dispatcher(jac_fun)))
    if compiled is True and not can_compile:
        raise ValueError(
            "compiled=True needs fun (and jac) to be Numba @njit functions, "
            "jac=True or a jitted jac, no callback, and a numeric or "
            "adamsci.schedules learning rate")
    counters = run.counters
    try:
        if can_compile and compiled is not False:
            start = None if session is None else session.start
            if start is None:
                counters["nfev"] = n_calls
                counters["njev"] = 1
            B, meta = ((None, None) if recorder is None
                       else (recorder.B, recorder.meta))
            try:
                status, f, g, B = L.compiled_loop(objective, jac_fun, args,
                                                  run, B, meta, start)
            except L.CompileError as e:
                if compiled:
                    raise ValueError(f"compiled=True: the loop could not "
                                     f"be compiled for this objective: "
                                     f"{e}") from e
                warnings.warn(f"the objective is a Numba function but the "
                              f"loop could not be compiled around it; "
                              f"running the Python loop "
                              f"({str(e).splitlines()[0]})",
                              OptimizeWarning, stacklevel=4)
                counters["nfev"] = counters["njev"] = 0
            else:
                if recorder is not None:
                    recorder.B = B
        if status is None:
            status, f, g = _python_loop(run, mode, objective, jac_fun,
                                        args, fd_method, box, call_back,
                                        session, opt)
    except Exception as e:      # from the objective: keep the rows so far
        _keep_history(e, session)
        raise
    if status == L.BADGRAD:
        raise ValueError(f"the gradient has shape {np.shape(g)}; x0 has "
                         f"shape ({n},)")
    nit = int(counters["nit"][0])
    if status == L.NONFINITE and nonfinite == "raise":
        raise FloatingPointError(
            f"the objective returned a non-finite value or gradient at "
            f"iteration {nit} (nonfinite='raise')")
    # -- result ----------------------------------------------------------------
    x = run.a.x.copy()
    res = _history.Result(
        x=x, fun=float(f), jac=np.array(g, copy=True), nit=nit,
        nfev=int(counters["nfev"][0]), njev=int(counters["njev"][0]),
        status=int(status), success=status in _SUCCESS,
        message=MESSAGES[status], optimizer=opt, state=run.state)
    if getattr(opt, "ema_decay", None) is not None:
        if run.state.step[0] > 0:
            avg = opt.averaged(run.state)
            res.x_avg = (avg * scale).astype(x.dtype) if scale is not None \
                else avg
        else:
            res.x_avg = x.copy()
    if scale is not None:
        res.x_scale = scale
    if nonfinite == "skip":
        res.nskipped = int(counters["nskipped"][0])
    if isinstance(objective, MinibatchObjective):
        res.epoch = objective.epoch
    if disp:
        print(res.message)
        print(f"         Current function value: {res.fun:.6g}")
        print(f"         Iterations: {res.nit}")
        print(f"         Function evaluations: {res.nfev}")
        print(f"         Gradient evaluations: {res.njev}")
    if session is not None:
        session.finish(res, run)
    return res


def _keep_history(error, session):
    """Give ``error`` (raised during the run) the history recorded so far,
    as ``error.history`` (see :meth:`adamsci.history.Session.interrupted`),
    unless it has one."""
    if session is None or getattr(error, "history", None) is not None:
        return
    try:
        error.history = session.interrupted(error)
    except AttributeError:      # an exception type that takes no attributes
        pass


def _python_loop(run, mode, objective, jac_fun, args, fd_method, box,
                 call_back, session, opt):
    """:func:`adamsci._loop.python_loop` with the objective, the callback,
    the progress bar and a Python learning-rate schedule wired in."""
    normalize = _normalizer(run.a.x.size, run.a.x.dtype)
    raw = _evaluator(mode, objective, jac_fun, args, run.a.x, fd_method, box)

    def evaluate():
        f, g = raw()
        return normalize(f, g)

    counters = run.counters
    start = None if session is None else session.start
    if start is None:
        counters["nfev"] = run.settings.fev_per_eval
        counters["njev"] = 1
    else:   # resumed (adamsci.history): the saved value and gradient at x
        start = normalize(*start)
    bar = None if session is None else session.on_step
    on_step = bar
    if call_back is not None:
        x, nit = run.a.x, counters["nit"]

        def on_step(f, g):
            if bar is not None:
                bar(f, g)
            call_back(x, f, g, int(nit[0]))
    learning_rate = None
    if run.settings.schedule == L.PYTHON_SCHEDULE:
        def learning_rate():
            return opt._learning_rate(run.state)
    epoch = None
    if isinstance(objective, MinibatchObjective) and session is not None \
            and session.recorder is not None:
        def epoch():
            return objective.epoch
    return L.python_loop(run, evaluate, start,
                         None if session is None else session.recorder,
                         on_step, learning_rate, epoch)


# -- the methods ----------------------------------------------------------
def adam(fun, x0, args=(), jac=None, hess=None, hessp=None, bounds=None,
         constraints=(), callback=None, *, learning_rate=1e-3, beta1=0.9,
         beta2=0.999, eps=1e-8, weight_decay=0.0,
         decoupled_weight_decay=False, amsgrad=False, bias_correction=True,
         ema_decay=None, maximize=False, **options):
    r"""Adam (Kingma & Ba 2015) as a ``scipy.optimize.minimize`` method.

    Use as ``minimize(fun, x0, method=adamsci.adam, options={...})``: the
    parameters under *Other Parameters* are the keys of ``options``. The
    update is :class:`adamsci.Adam`'s:

    .. math::

        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        x_t &= x_{t-1} - \alpha_t \frac{m_t/(1-\beta_1^t)}
               {\sqrt{v_t/(1-\beta_2^t)} + \epsilon}

%(params)s

    Other Parameters
    ----------------
    learning_rate : float or callable, default 1e-3
        The step size :math:`\alpha`, or a schedule ``t -> alpha_t`` of
        the 1-based step number (an :mod:`adamsci.schedules` schedule
        keeps the loop compiled; any other callable runs it in Python).
    beta1 : float, default 0.9
        :math:`\beta_1` in [0, 1): decay rate of the moving average
        :math:`m` of the gradient (the first moment estimate).
    beta2 : float, default 0.999
        :math:`\beta_2` in [0, 1): decay rate of the moving average
        :math:`v` of the squared gradient (the second raw moment
        estimate), which scales each parameter's step; it averages over
        about :math:`1/(1-\beta_2)` steps (1000 with the default).
    eps : float, default 1e-8
        :math:`\epsilon \ge 0` added to :math:`\sqrt{\hat v_t}` after bias
        correction (torch's and optax's placement; Keras adds it before):
        it bounds the step where the gradient is about 0.
    weight_decay : float, default 0
        :math:`\lambda \ge 0`. Coupled (default): L2 regularisation,
        :math:`\lambda x` is added to the gradient before the moments;
        decoupled: see ``decoupled_weight_decay``.
    decoupled_weight_decay : bool, default False
        AdamW (Loshchilov & Hutter 2019): :math:`x` is multiplied by
        :math:`1 - \alpha_t \lambda` before each step and the gradient
        is left alone, so the decay is not rescaled by :math:`\sqrt{v}`.
    amsgrad : bool, default False
        AMSGrad (Reddi et al. 2018): divide by the running maximum of
        :math:`v` (torch's variant: the maximum of the raw :math:`v`), so
        that a parameter's effective step size never grows.
    bias_correction : bool, default True
        Divide :math:`m_t` by :math:`1-\beta_1^t` and :math:`v_t` by
        :math:`1-\beta_2^t` (Algorithm 1): both start at 0 and are biased
        towards 0 in the first steps. False drops both corrections; the
        first step is then :math:`(1-\beta_1)/\sqrt{1-\beta_2}` (3.2 with
        the defaults) times larger (paper section 6.4).
    ema_decay : float or None, default None
        Temporal averaging of the iterates (paper section 7.2), with decay
        in (0, 1), e.g. 0.999: ``res.x_avg`` is the bias-corrected
        exponential moving average of ``x`` (``res.x`` stays the last
        iterate). None: off.
    maximize : bool, default False
        Maximise ``fun``: step along the gradient instead of against it
        (``res.fun`` is still ``fun`` at ``res.x``).
%(loop)s

%(returns)s

    See Also
    --------
    adamsci.Adam : the optimizer (hyperparameters, conventions).

    References
    ----------
    .. [1] D. P. Kingma, J. Ba, "Adam: A Method for Stochastic
       Optimization", ICLR 2015, arXiv:1412.6980.

    Examples
    --------
    >>> import numpy as np, scipy.optimize, adamsci
    >>> from scipy.optimize import rosen, rosen_der
    >>> res = scipy.optimize.minimize(
    ...     rosen, [-1.2, 1.0], jac=rosen_der, method=adamsci.adam,
    ...     options={"learning_rate": 0.02, "maxiter": 20000})
    >>> res.status, np.round(res.x, 4)
    (0, array([1., 1.]))
    """
    hyper = dict(learning_rate=learning_rate, beta1=beta1, beta2=beta2,
                 eps=eps, weight_decay=weight_decay,
                 decoupled_weight_decay=decoupled_weight_decay,
                 amsgrad=amsgrad, bias_correction=bias_correction,
                 ema_decay=ema_decay, maximize=maximize)
    return _minimize(_optimizers.Adam, hyper, fun, x0, args, jac, hess,
                     hessp, bounds, constraints, callback, options)


def adamax(fun, x0, args=(), jac=None, hess=None, hessp=None, bounds=None,
           constraints=(), callback=None, *, learning_rate=2e-3, beta1=0.9,
           beta2=0.999, eps=1e-8, weight_decay=0.0, ema_decay=None,
           maximize=False, **options):
    r"""AdaMax (Kingma & Ba 2015, Algorithm 2) as a ``minimize`` method.

    Use as ``minimize(fun, x0, method=adamsci.adamax, options={...})``;
    the update is :class:`adamsci.AdaMax`'s:

    .. math::

        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\quad
        u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon),\quad
        x_t = x_{t-1} - \frac{\alpha_t}{1-\beta_1^t}\frac{m_t}{u_t}

%(params)s

    Other Parameters
    ----------------
    learning_rate : float or callable, default 2e-3
        The step size :math:`\alpha` (the paper's default for AdaMax), or
        a schedule ``t -> alpha_t`` (see :func:`adamsci.adam`).
    beta1 : float, default 0.9
        :math:`\beta_1` in [0, 1): decay rate of the moving average
        :math:`m` of the gradient.
    beta2 : float, default 0.999
        :math:`\beta_2` in [0, 1): decay rate of the exponentially
        weighted infinity norm :math:`u` of past gradients.
    eps : float, default 1e-8
        :math:`\epsilon \ge 0` added to :math:`|g_t|` inside the maximum
        (torch/optax convention), so that :math:`u > 0`; 0 is the paper's
        rule exactly.
    weight_decay : float, default 0
        :math:`\lambda \ge 0`: L2 regularisation, :math:`\lambda x` is
        added to the gradient.
    ema_decay : float or None, default None
        Temporal averaging of the iterates (paper section 7.2):
        ``res.x_avg``, as for :func:`adamsci.adam`. None: off.
    maximize : bool, default False
        Maximise ``fun`` (step along the gradient).
%(loop)s

%(returns)s

    See Also
    --------
    adamsci.AdaMax

    References
    ----------
    .. [1] D. P. Kingma, J. Ba, "Adam: A Method for Stochastic
       Optimization", ICLR 2015, arXiv:1412.6980, section 7.1.

    Examples
    --------
    >>> import numpy as np, scipy.optimize, adamsci
    >>> res = scipy.optimize.minimize(
    ...     lambda x: (np.sum((x - 3) ** 2), 2 * (x - 3)), np.zeros(2),
    ...     jac=True, method=adamsci.adamax,
    ...     options={"learning_rate": 0.1, "maxiter": 3000})
    >>> np.round(res.x, 3)
    array([3., 3.])
    """
    hyper = dict(learning_rate=learning_rate, beta1=beta1, beta2=beta2,
                 eps=eps, weight_decay=weight_decay, ema_decay=ema_decay,
                 maximize=maximize)
    return _minimize(_optimizers.AdaMax, hyper, fun, x0, args, jac, hess,
                     hessp, bounds, constraints, callback, options)


def sgd(fun, x0, args=(), jac=None, hess=None, hessp=None, bounds=None,
        constraints=(), callback=None, *, learning_rate=1e-2, momentum=0.0,
        dampening=0.0, nesterov=False, weight_decay=0.0, maximize=False,
        **options):
    r"""Stochastic gradient descent (momentum, Nesterov) as a method.

    Use as ``minimize(fun, x0, method=adamsci.sgd, options={...})``;
    torch.optim.SGD semantics (:class:`adamsci.SGD`):
    :math:`b_t = \mu b_{t-1} + (1-\tau) g_t`,
    :math:`x_t = x_{t-1} - \alpha_t (g_t + \mu b_t \text{ if Nesterov else }
    b_t)`.

%(params)s

    Other Parameters
    ----------------
    learning_rate : float or callable, default 1e-2
        The step size :math:`\alpha`, or a schedule ``t -> alpha_t``
        (:class:`adamsci.SGD` has no default; this method uses 1e-2).
    momentum : float, default 0
        :math:`\mu \ge 0`: weight of the previous buffer :math:`b` in the
        momentum update; 0: plain gradient steps.
    dampening : float, default 0
        :math:`\tau` in [0, 1]: the gradient enters the buffer with
        weight :math:`1-\tau` (from the second step on); must be 0 with
        ``nesterov``.
    nesterov : bool, default False
        Nesterov momentum: step along :math:`g_t + \mu b_t` instead of
        :math:`b_t`; needs ``momentum > 0``.
    weight_decay : float, default 0
        :math:`\lambda \ge 0`: L2 regularisation, :math:`\lambda x` is
        added to the gradient.
    maximize : bool, default False
        Maximise ``fun`` (step along the gradient).
%(loop)s

%(returns)s

    See Also
    --------
    adamsci.SGD

    Examples
    --------
    >>> import numpy as np, scipy.optimize, adamsci
    >>> res = scipy.optimize.minimize(
    ...     lambda x: (np.sum(x ** 2), 2 * x), [1.0, -1.0], jac=True,
    ...     method=adamsci.sgd,
    ...     options={"learning_rate": 0.1, "momentum": 0.9})
    >>> res.status, bool(np.abs(res.x).max() < 1e-5)
    (0, True)
    """
    hyper = dict(learning_rate=learning_rate, momentum=momentum,
                 dampening=dampening, nesterov=nesterov,
                 weight_decay=weight_decay, maximize=maximize)
    return _minimize(_optimizers.SGD, hyper, fun, x0, args, jac, hess,
                     hessp, bounds, constraints, callback, options)


def adagrad(fun, x0, args=(), jac=None, hess=None, hessp=None, bounds=None,
            constraints=(), callback=None, *, learning_rate=1e-2,
            lr_decay=0.0, eps=1e-10, initial_accumulator_value=0.0,
            weight_decay=0.0, maximize=False, **options):
    r"""AdaGrad (Duchi et al. 2011) as a ``minimize`` method.

    Use as ``minimize(fun, x0, method=adamsci.adagrad, options={...})``.
    The update: :math:`s_t = s_{t-1} + g_t^2`,
    :math:`x_t = x_{t-1} - \tilde\alpha_t g_t/(\sqrt{s_t} + \epsilon)`
    (:class:`adamsci.AdaGrad`).

%(params)s

    Other Parameters
    ----------------
    learning_rate : float or callable, default 1e-2
        The step size :math:`\alpha`, or a schedule ``t -> alpha_t``.
    lr_decay : float, default 0
        :math:`\eta \ge 0`: the step size of step :math:`t` is
        :math:`\tilde\alpha_t = \alpha_t / (1 + (t-1)\eta)`.
    eps : float, default 1e-10
        :math:`\epsilon \ge 0` added to :math:`\sqrt{s_t}`.
    initial_accumulator_value : float, default 0
        :math:`s_0 \ge 0`, the starting sum of squared gradients; larger
        values make the first steps smaller.
    weight_decay : float, default 0
        :math:`\lambda \ge 0`: L2 regularisation, :math:`\lambda x` is
        added to the gradient.
    maximize : bool, default False
        Maximise ``fun`` (step along the gradient).
%(loop)s

%(returns)s

    See Also
    --------
    adamsci.AdaGrad

    Examples
    --------
    >>> import numpy as np, scipy.optimize, adamsci
    >>> res = scipy.optimize.minimize(
    ...     lambda x: (np.sum((x - 1) ** 2), 2 * (x - 1)), np.zeros(3),
    ...     jac=True, method=adamsci.adagrad,
    ...     options={"learning_rate": 0.5, "maxiter": 2000})
    >>> np.round(res.x, 4)
    array([1., 1., 1.])
    """
    hyper = dict(learning_rate=learning_rate, lr_decay=lr_decay, eps=eps,
                 initial_accumulator_value=initial_accumulator_value,
                 weight_decay=weight_decay, maximize=maximize)
    return _minimize(_optimizers.AdaGrad, hyper, fun, x0, args, jac, hess,
                     hessp, bounds, constraints, callback, options)


def rmsprop(fun, x0, args=(), jac=None, hess=None, hessp=None, bounds=None,
            constraints=(), callback=None, *, learning_rate=1e-2, alpha=0.99,
            eps=1e-8, momentum=0.0, centered=False, weight_decay=0.0,
            maximize=False, **options):
    r"""RMSProp (Tieleman & Hinton 2012) as a ``minimize`` method.

    Use as ``minimize(fun, x0, method=adamsci.rmsprop, options={...})``.
    The update: :math:`s_t = \alpha s_{t-1} + (1-\alpha) g_t^2`,
    :math:`x_t = x_{t-1} - \alpha_t g_t/(\sqrt{s_t} + \epsilon)`
    (centred and momentum variants: :class:`adamsci.RMSProp`).

%(params)s

    Other Parameters
    ----------------
    learning_rate : float or callable, default 1e-2
        The step size :math:`\alpha_t`, or a schedule ``t -> alpha_t``.
    alpha : float, default 0.99
        Smoothing constant in [0, 1) of the moving average :math:`s` of
        the squared gradient (torch's name; not the step size).
    eps : float, default 1e-8
        :math:`\epsilon \ge 0` added to the root mean square.
    momentum : float, default 0
        :math:`\mu \ge 0`: accumulate the scaled gradients in a buffer
        :math:`b_t = \mu b_{t-1} + g_t/d_t` and step along it; 0: off.
    centered : bool, default False
        Divide by an estimate of the standard deviation of the gradient,
        :math:`\sqrt{s_t - \bar g_t^2}`, instead of its root mean square.
    weight_decay : float, default 0
        :math:`\lambda \ge 0`: L2 regularisation, :math:`\lambda x` is
        added to the gradient.
    maximize : bool, default False
        Maximise ``fun`` (step along the gradient).
%(loop)s

%(returns)s

    See Also
    --------
    adamsci.RMSProp

    Examples
    --------
    >>> import numpy as np, scipy.optimize, adamsci
    >>> res = scipy.optimize.minimize(
    ...     lambda x: (np.sum((x - 1) ** 2), 2 * (x - 1)), np.zeros(2),
    ...     jac=True, method=adamsci.rmsprop,
    ...     options={"learning_rate": adamsci.schedules.exponential(
    ...         0.05, 0.5, 200), "maxiter": 3000})
    >>> np.round(res.x, 4)
    array([1., 1.])
    """
    hyper = dict(learning_rate=learning_rate, alpha=alpha, eps=eps,
                 momentum=momentum, centered=centered,
                 weight_decay=weight_decay, maximize=maximize)
    return _minimize(_optimizers.RMSProp, hyper, fun, x0, args, jac, hess,
                     hessp, bounds, constraints, callback, options)


def adadelta(fun, x0, args=(), jac=None, hess=None, hessp=None, bounds=None,
             constraints=(), callback=None, *, learning_rate=1.0, rho=0.9,
             eps=1e-6, weight_decay=0.0, maximize=False, **options):
    r"""AdaDelta (Zeiler 2012) as a ``minimize`` method.

    Use as ``minimize(fun, x0, method=adamsci.adadelta, options={...})``.
    The update: :math:`s_t = \rho s_{t-1} + (1-\rho) g_t^2`,
    :math:`\Delta_t = \sqrt{a_{t-1}+\epsilon}/\sqrt{s_t+\epsilon}\, g_t`,
    :math:`a_t = \rho a_{t-1} + (1-\rho)\Delta_t^2`,
    :math:`x_t = x_{t-1} - \alpha_t\Delta_t` (:class:`adamsci.AdaDelta`).

%(params)s

    Other Parameters
    ----------------
    learning_rate : float or callable, default 1.0
        A factor :math:`\alpha_t` on the step :math:`\Delta_t` (or a
        schedule ``t -> alpha_t``); 1 is Zeiler's method, which has no
        learning rate.
    rho : float, default 0.9
        :math:`\rho` in [0, 1): decay rate of both moving averages (of
        :math:`g^2` and of :math:`\Delta^2`).
    eps : float, default 1e-6
        :math:`\epsilon \ge 0` inside both square roots; it sets the size
        of the first steps, about :math:`\sqrt{\epsilon/(1-\rho)}` for
        gradients much larger than :math:`\sqrt{\epsilon}`.
    weight_decay : float, default 0
        :math:`\lambda \ge 0`: L2 regularisation, :math:`\lambda x` is
        added to the gradient.
    maximize : bool, default False
        Maximise ``fun`` (step along the gradient).
%(loop)s

%(returns)s

    See Also
    --------
    adamsci.AdaDelta

    Examples
    --------
    >>> import numpy as np, scipy.optimize, adamsci
    >>> res = scipy.optimize.minimize(
    ...     lambda x: (np.sum((x - 1) ** 2), 2 * (x - 1)), np.zeros(2),
    ...     jac=True, method=adamsci.adadelta,
    ...     options={"maxiter": 5000, "gtol": 1e-3})
    >>> res.status, np.round(res.x, 2)
    (0, array([1., 1.]))
    """
    hyper = dict(learning_rate=learning_rate, rho=rho, eps=eps,
                 weight_decay=weight_decay, maximize=maximize)
    return _minimize(_optimizers.AdaDelta, hyper, fun, x0, args, jac, hess,
                     hessp, bounds, constraints, callback, options)


for _f in (adam, adamax, sgd, adagrad, rmsprop, adadelta):
    _f.__doc__ = _doc(_f.__doc__)
del _f
