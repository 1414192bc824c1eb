r"""Many independent small fits at once: :func:`adamsci.fit_batch`.

Thousands to millions of spectra, pixels or time series, each fitted by the
same small model with adamsci's Adam (or AdaMax) update rule, in one compiled
kernel: a ``prange`` loop over fits on the CPU, one GPU thread per fit with
``target="cuda"``. Each fit stops on its own.

Status codes (``status`` variable of the result; also as CF
``flag_values``/``flag_meanings`` attributes):

====  ===================  ==================================================
code  meaning              result
====  ===================  ==================================================
0     ``converged``        ``|d chi2| <= tol chi2`` and ``|d p_j| <= tol
                           (|p_j| + s_j)`` on two consecutive steps
1     ``max_iterations``   ``maxiter`` steps without converging; the lowest
                           ``chi2`` point visited is returned
2     ``nonfinite``        ``chi2`` or its gradient is not finite at ``p0``,
                           or after 20 undone steps in a row
3     ``no_valid_points``  every point masked (NaN): NaN results
4     ``too_few_points``   fewer valid points than parameters: NaN results
====  ===================  ==================================================
"""
import json
import math
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import _rules
from . import models as _models
from .history import netcdf_attr
from .kernels import fitloop

__all__ = ["fit_batch", "STATUS", "StatusCode"]


class StatusCode:
    """Integer status codes of :func:`adamsci.fit_batch` (see
    :data:`adamsci.batch.STATUS`).

    Attributes
    ----------
    CONVERGED : int
        0: the fit met its tolerance.
    MAX_ITERATIONS : int
        1: ``maxiter`` steps without converging (the lowest ``chi2``
        point visited is returned).
    NONFINITE : int
        2: ``chi2`` or its gradient is not finite at ``p0``, or after 20
        undone steps in a row.
    NO_VALID_POINTS : int
        3: every point is masked (NaN results).
    TOO_FEW_POINTS : int
        4: fewer valid points than parameters (NaN results).
    """

    CONVERGED = 0
    MAX_ITERATIONS = 1
    NONFINITE = 2
    NO_VALID_POINTS = 3
    TOO_FEW_POINTS = 4


#: status code -> meaning
STATUS = {0: "converged", 1: "max_iterations", 2: "nonfinite",
          3: "no_valid_points", 4: "too_few_points"}
_METHODS = ("adam", "adamax")
_SCALES = {"jac": 1, "whiten": 2}
_TARGETS = ("cpu", "cuda")
#: Fewer fits than this run on the serial kernel (a parallel region costs
#: more than it saves; measured with the batch benchmark).
PARALLEL_MIN_FITS = 64


def _as_float_array(name, value, dtype=None):
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be array-like of real numbers: "
                        f"{exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype "
                        f"{arr.dtype}")
    return arr


def _per_fit(name, value, n_fits, n_params, dtype, what="n_params"):
    """``value`` as (1 or n_fits, n_params), from a scalar, (n_params,) or
    (n_fits, n_params)."""
    arr = _as_float_array(name, value)
    if arr.ndim == 0:
        arr = np.full((1, n_params), arr)
    elif arr.ndim == 1:
        if arr.shape[0] != n_params:
            raise ValueError(f"{name} must have shape ({what},) = "
                             f"({n_params},) or (n_fits, {what}) = "
                             f"({n_fits}, {n_params}), got {arr.shape}")
        arr = arr[None, :]
    elif arr.ndim == 2:
        if arr.shape[1] != n_params or arr.shape[0] not in (1, n_fits):
            raise ValueError(f"{name} must have shape ({what},) = "
                             f"({n_params},) or (n_fits, {what}) = "
                             f"({n_fits}, {n_params}), got {arr.shape}")
    else:
        raise ValueError(f"{name} must be 1-D or 2-D, got shape "
                         f"{arr.shape}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _check_choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got "
                         f"{value!r}")
    return value


def _real(name, value, lo, hi=math.inf, lo_open=False):
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    ok = math.isfinite(value) and (value > lo if lo_open else value >= lo) \
        and value <= hi
    if not ok:
        raise ValueError(f"{name} must be a finite number in "
                         f"{'(' if lo_open else '['}{lo}, {hi}], got "
                         f"{value!r}")
    return value


def _int(name, value, lo):
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, np.integer)) or value < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    return int(value)


def _prepare(model, xdata, ydata, p0, sigma, bounds, x_scale, dtype):
    """Validate the data and build the kernel arrays (never writes to the
    user's arrays). Returns (model, arrays, info)."""
    y_in = _as_float_array("ydata", ydata)
    if y_in.ndim == 1:
        y_in = y_in[None, :]
    if y_in.ndim != 2:
        raise ValueError(f"ydata must have shape (n_fits, n_points), got "
                         f"{np.shape(ydata)}")
    n_fits, n_points = y_in.shape
    p0_arr = None if p0 is None else _as_float_array("p0", p0)
    if p0_arr is not None and p0_arr.ndim not in (1, 2):
        raise ValueError(f"p0 must have shape (n_params,) or (n_fits, "
                         f"n_params), got {p0_arr.shape}")
    model = _models.as_model(model)
    npar, xdim = model.n_params, model.xdim
    if p0_arr is not None and p0_arr.shape[-1] != npar:
        raise ValueError(f"p0 has {p0_arr.shape[-1]} parameters but model "
                         f"{model.name!r} has {npar} "
                         f"({', '.join(model.param_names)})")
    x_in = _as_float_array("xdata", xdata)
    k = max(xdim, 1)
    if xdim == 0 and x_in.shape in ((n_points,), (n_fits, n_points)):
        x3 = x_in.reshape(-1, 1, n_points)
    elif xdim > 0 and x_in.shape in ((k, n_points), (n_fits, k, n_points)):
        x3 = x_in.reshape(-1, k, n_points)
    else:
        want = ((f"(n_points,) = ({n_points},) or (n_fits, n_points) = "
                 f"({n_fits}, {n_points})") if xdim == 0 else
                (f"({k}, n_points) = ({k}, {n_points}) or (n_fits, {k}, "
                 f"n_points) = ({n_fits}, {k}, {n_points})"))
        raise ValueError(f"xdata of model {model.name!r} ({k} "
                         f"coordinate{'s' if k > 1 else ''} per point, the "
                         f"points along the last axis) must have shape "
                         f"{want} to match ydata, got {x_in.shape}")
    if dtype is None:
        dtype = np.float32 if (y_in.dtype == np.float32 and x_in.dtype in (
            np.float32, np.float16)) else np.float64
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")

    # weights and mask: weight 0 marks a point that does not count
    valid = np.isfinite(y_in) & np.isfinite(x3).all(1)
    if sigma is None:
        w = np.ones((1, n_points))
    else:
        s = _as_float_array("sigma", sigma, np.float64)
        if s.ndim == 0:
            s = np.full((1, n_points), float(s))
        elif s.shape == (n_points,):
            s = s[None, :]
        elif s.shape != (n_fits, n_points):
            raise ValueError(f"sigma must be a scalar or have shape "
                             f"(n_points,) = ({n_points},) or (n_fits, "
                             f"n_points) = ({n_fits}, {n_points}), got "
                             f"{s.shape}")
        if np.any(s <= 0):
            raise ValueError("sigma must be > 0 (NaN masks a point)")
        with np.errstate(all="ignore"):
            w = 1.0 / (s * s)
        valid = valid & np.isfinite(w)
    if valid.all():
        W = np.ascontiguousarray(w, dtype=dtype)
        Y = np.ascontiguousarray(y_in, dtype=dtype)
    else:
        W = np.ascontiguousarray(np.where(valid, w, 0.0), dtype=dtype)
        Y = np.ascontiguousarray(np.where(valid, y_in, 0.0), dtype=dtype)
    X = np.ascontiguousarray(np.where(np.isfinite(x3), x3, 0.0), dtype=dtype)

    # bounds
    if bounds is None:
        LO = np.full((1, npar), -np.inf, dtype)
        HI = np.full((1, npar), np.inf, dtype)
    else:
        try:
            lo, hi = bounds
        except (TypeError, ValueError):
            raise ValueError("bounds must be a pair (lower, upper)") from None
        LO = _per_fit("bounds[0]", lo, n_fits, npar, dtype)
        HI = _per_fit("bounds[1]", hi, n_fits, npar, dtype)
        if np.isnan(LO).any() or np.isnan(HI).any():
            raise ValueError("bounds must not be NaN (use -inf/inf)")
        if np.any(LO >= HI):
            raise ValueError("each lower bound must be < its upper bound")

    # starting values
    guessed = p0_arr is None
    if guessed:
        if model.guess is None:
            raise TypeError(f"p0 is required: model {model.name!r} has no "
                            f"guess(xdata, ydata)")
        yg = np.where(valid, y_in, np.nan)
        P0 = np.asarray(model.guess(x_in, yg), dtype=np.float64)
        if P0.shape != (n_fits, npar):
            raise ValueError(f"model {model.name!r}: guess returned shape "
                             f"{P0.shape}, expected ({n_fits}, {npar})")
        P0 = np.where(np.isfinite(P0), P0, 1.0)
        P0 = np.ascontiguousarray(np.clip(P0, LO, HI), dtype=dtype)
    else:
        P0 = _per_fit("p0", p0_arr, n_fits, npar, dtype)
        if not np.isfinite(P0).all():
            raise ValueError("p0 must be finite")
        outside = (P0 < LO) | (P0 > HI)
        if outside.any():
            fi, pj = np.argwhere(outside)[0]
            raise ValueError(
                f"p0 is outside bounds: parameter "
                f"{model.param_names[pj]!r} = {P0[fi, pj]} of fit {fi} not "
                f"in [{LO[min(fi, LO.shape[0] - 1), pj]}, "
                f"{HI[min(fi, HI.shape[0] - 1), pj]}]")

    # parameter scales
    if x_scale is None:
        x_scale = model.x_scale
    if isinstance(x_scale, str):
        if x_scale not in _SCALES:
            raise ValueError(f"x_scale must be one of {tuple(_SCALES)} or "
                             f"positive numbers, got {x_scale!r}")
        XS = np.ones((1, npar), np.float64)
        scale_mode = _SCALES[x_scale]
    else:
        XS = _per_fit("x_scale", x_scale, n_fits, npar, np.float64)
        if not (np.isfinite(XS).all() and (XS > 0).all()):
            raise ValueError("x_scale must be finite and > 0")
        scale_mode = 0
    info = dict(n_fits=n_fits, n_points=n_points, dtype=dtype,
                guessed=guessed, scale_mode=scale_mode,
                x_scale=x_scale if isinstance(x_scale, str) else "given")
    return model, (X, Y, W, P0, LO, HI, XS), info


def fit_batch(model, xdata, ydata, p0=None, *, sigma=None, bounds=None,
              target="cpu", method="adam", maxiter=1000, tol=1e-6,
              learning_rate=0.3, beta1=0.3, beta2=0.999, eps=1e-8,
              lr_decay=0.5, x_scale=None, absolute_sigma=False, dtype=None,
              parallel=None, threads_per_block=128, polish=5):
    r"""Fit ``model`` independently to every row of ``ydata``.

    Parameters
    ----------
    model : callable, Model or str
        ``f(x, *params)`` as for :func:`scipy.optimize.curve_fit`, vectorised
        over the points, with an elementwise body (see "Writing a model" in
        the docs and :mod:`adamsci.compiler`: it is compiled once, with its
        exact derivatives); a :class:`adamsci.models.Model`; or a built-in
        model (``models.gaussian``, or its name ``"gaussian"``).
    xdata : array_like
        Shared ``(n_points,)`` or per fit ``(n_fits, n_points)``; for a
        model of ``k`` coordinates (it reads ``x[0] ... x[k-1]``) ``(k,
        n_points)`` or ``(n_fits, k, n_points)``: scipy's convention, the
        points along the last axis.
    ydata : array_like, shape (n_fits, n_points)
        One fit per row (a 1-D array is one fit). NaN points (and points
        whose ``x`` or ``sigma`` is NaN) are masked.
    p0 : array_like, optional
        Starting values, shared ``(n_params,)`` or per fit ``(n_fits,
        n_params)``; must lie inside ``bounds``. Default: the model's
        ``guess`` from the data (built-in models), clipped into the bounds.
    sigma : array_like, optional
        Standard deviations of ``ydata``: scalar, ``(n_points,)`` or
        ``(n_fits, n_points)``; ``chi2 = sum(((y - f) / sigma)**2)``.
    bounds : (lower, upper), optional
        Each a scalar, ``(n_params,)`` or ``(n_fits, n_params)``; ``+-inf``
        for none. Steps are clipped into the box (projected Adam).
    target : {"cpu", "cuda"}
        ``"cuda"``: one GPU thread per fit (needs ``numba-cuda`` and a GPU,
        or ``NUMBA_ENABLE_CUDASIM=1``).
    method : {"adam", "adamax"}
        The update rule of ``adamsci._rules``.
    maxiter : int, default 1000
        Maximum number of steps per fit.
    tol : float, default 1e-6
        Relative tolerance of the stopping rule (see Notes).
    learning_rate : float or adamsci.schedules.Schedule, default 0.3
        In the scaled coordinates (see ``x_scale``), where 1 is a step that
        changes the model by about the whole initial misfit.
    beta1, beta2, eps : float, default 0.3, 0.999, 1e-8
        Adam's hyperparameters. ``beta1`` is 0.3 rather than the paper's 0.9:
        a fit's ``chi2`` is deterministic (no minibatch noise for the
        momentum to average) and less momentum overshoots less; measured
        over the built-in models, 0.3 took 1.3-3x fewer steps than 0.9 at
        equal or better accuracy.
    lr_decay : float in (0, 1], default 0.5
        Per fit, the learning rate is multiplied by ``lr_decay`` (and the
        momentum restarted) whenever ``chi2`` rises. 1 disables this.
    x_scale : {"whiten", "jac"} or array_like, optional
        How Adam's coordinates are scaled (default: the model's
        ``x_scale``, "whiten" for every built-in model but
        ``double_exponential``). ``"jac"``: Adam runs in ``p_j / s_j`` with
        ``s_j = sqrt(chi2(p0) / (J^T W J)_jj)`` per fit, the change of ``p_j``
        that alone moves the model by the whole initial misfit (the idea of
        ``scipy.optimize.least_squares(x_scale="jac")``). ``"whiten"``:
        Adam runs in ``u = L^T p / sqrt(chi2(p0))`` where ``J^T W J = L L^T``
        at ``p0`` (Cholesky), coordinates in which the parameters are
        decorrelated at the start; a fixed linear change of variables, made
        once per fit (falls back to "jac" when ``J^T W J`` is singular).
        An array: fixed scales ``s_j``, ``(n_params,)`` or ``(n_fits,
        n_params)``.
    absolute_sigma : bool, default False
        As in ``scipy.optimize.curve_fit``: False scales the covariance by
        ``chi2 / (n_valid - n_params)``.
    dtype : {None, "float32", "float64"}
        Arithmetic of the parameters and optimizer state; default float32
        when ``xdata`` and ``ydata`` are float32, else float64. Sums over
        points are accumulated in float64.
    parallel : bool, optional
        CPU only: fit chunks of fits on a pool of threads (as many as
        ``NUMBA_NUM_THREADS`` or the CPUs this process may use), all running
        the one compiled kernel, which releases the GIL. Default: on the main
        thread and from 64 fits; off the main thread (Dask workers, thread
        pools, which already run in parallel) one thread unless
        ``parallel=True``.
    threads_per_block : int, default 128
        CUDA only.
    polish : int, default 5
        Levenberg-Marquardt steps on the fit's data from the optimizer's
        best point (0: none). They make the result as exact as
        ``curve_fit``'s; a fit stopped by ``maxiter`` whose polish converges
        has status 0.

    Returns
    -------
    xarray.Dataset
        Dims ``fit`` and ``param`` (coordinate: the parameter names), and
        ``cov_i``/``cov_j`` for the covariance. Variables: ``params``,
        ``params_err`` (``sqrt(diag(covariance))``), ``covariance``,
        ``p0`` (the starting values used), ``chi2``, ``nit`` (steps taken),
        ``status`` (see :data:`adamsci.batch.STATUS`). ``attrs`` describe
        the run with netCDF-safe values (strings, ints, floats; ``options``
        is a JSON string).

    Raises
    ------
    ValueError
        Shapes that do not match, ``p0`` outside ``bounds``, bad options.
    TypeError
        Non-numeric data, a plain function without ``p0``.
    adamsci.models.ModelCompileError
        The model's body uses a construct the compiler does not take (the
        message names it and its line), or Numba cannot compile it (the
        message includes Numba's).

    Warns
    -----
    RuntimeWarning
        A model's ``jac`` disagrees with its exact derivatives at ``p0``
        (the fits use the exact ones).

    Notes
    -----
    The algorithm (:mod:`adamsci.kernels.fitloop`) is Adam on ``chi2`` in
    scaled coordinates (``x_scale``), starting from ``p0``, with a
    reduce-on-overshoot learning rate and a momentum restart, then a
    Levenberg-Marquardt polish of the lowest-``chi2`` point visited. A fit has converged when on two
    consecutive steps ``|chi2 - chi2_prev| <= tol chi2`` and ``|p_j -
    p_prev_j| <= tol (|p_j| + s_j)``. Strongly correlated models converge
    slowly: ``double_exponential`` typically needs a few thousand steps
    (raise ``maxiter``; check ``status``).

    ``params_err`` and ``covariance`` follow ``scipy.optimize.curve_fit``:
    ``(J^T W J)^-1`` from the model's exact Jacobian at the solution, scaled by ``chi2 / (n_valid - n_params)`` unless
    ``absolute_sigma``; ``inf`` when ``J^T W J`` is singular or ``n_valid ==
    n_params``. (curve_fit takes a pseudo-inverse of a rank-deficient
    Jacobian; here a singular matrix gives ``inf``.)

    Examples
    --------
    >>> import numpy as np
    >>> from adamsci import fit_batch, models
    >>> x = np.linspace(-5, 5, 41)
    >>> truth = np.array([[2.0, 0.3, 1.2, 0.5], [1.0, -1.0, 0.8, 0.2]])
    >>> a, c, w, b = truth.T[:, :, None]
    >>> y = a * np.exp(-0.5 * ((x - c) / w) ** 2) + b
    >>> ds = fit_batch(models.gaussian, x, y)
    >>> ds.params.values.round(3)
    array([[ 2. ,  0.3,  1.2,  0.5],
           [ 1. , -1. ,  0.8,  0.2]])
    >>> ds.status.values
    array([0, 0], dtype=int8)
    """
    target = _check_choice("target", target, _TARGETS)
    method = _check_choice("method", method, _METHODS)
    maxiter = _int("maxiter", maxiter, 0)
    tol = _real("tol", tol, 0.0)
    beta1 = _real("beta1", beta1, 0.0, 1.0)
    beta2 = _real("beta2", beta2, 0.0, 1.0)
    if beta1 >= 1.0 or beta2 >= 1.0:
        raise ValueError("beta1 and beta2 must be < 1")
    eps = _real("eps", eps, 0.0)
    lr_decay = _real("lr_decay", lr_decay, 0.0, 1.0, lo_open=True)
    if not isinstance(absolute_sigma, (bool, np.bool_)):
        raise TypeError(f"absolute_sigma must be True or False, got "
                        f"{absolute_sigma!r}")
    from . import schedules
    if isinstance(learning_rate, schedules.Schedule):
        sched = learning_rate.as_tuple()
        lr_desc = repr(learning_rate)
    elif callable(learning_rate):
        raise TypeError("learning_rate must be a number or an "
                        "adamsci.schedules.Schedule (evaluated inside the "
                        "compiled kernel), not an arbitrary callable")
    else:
        lr = _real("learning_rate", learning_rate, 0.0, lo_open=True)
        sched = (0, lr, 0.0, 0.0, False)
        lr_desc = repr(lr)
    threads_per_block = _int("threads_per_block", threads_per_block, 1)

    polish = _int("polish", polish, 0)
    model, arrays, info = _prepare(model, xdata, ydata, p0, sigma, bounds,
                                   x_scale, dtype)
    n_fits = info["n_fits"]
    code, lr0, sa, sb, sflag = sched
    settings = fitloop.Settings(
        scale_mode=info["scale_mode"], schedule=int(code), lr=float(lr0),
        schedule_a=float(sa), schedule_b=float(sb),
        schedule_flag=bool(sflag), lr_decay=lr_decay, maxiter=maxiter,
        tol=tol, absolute_sigma=bool(absolute_sigma), polish=polish)
    if method == "adam":
        rule = _rules.AdamHyper(beta1, beta2, eps, 0.0, False, False, True,
                                False, 0.0)
    else:
        rule = _rules.AdaMaxHyper(beta1, beta2, eps, 0.0, False, 0.0)
    on_main = threading.current_thread() is threading.main_thread()
    if parallel is None:
        use_parallel = on_main and n_fits >= PARALLEL_MIN_FITS
    else:
        if not isinstance(parallel, (bool, np.bool_)):
            raise TypeError(f"parallel must be None, True or False, got "
                            f"{parallel!r}")
        use_parallel = bool(parallel)
    if model.jac is not None and n_fits:
        _check_jac(model, arrays)
    if n_fits == 0:
        npar = model.n_params
        dt = info["dtype"]
        out = (np.empty((0, npar), dt), np.empty((0, npar, npar), dt),
               np.empty(0), np.empty(0, np.int64), np.empty(0, np.int8))
    elif target == "cpu":
        out = _run_cpu(model, arrays, rule, settings, use_parallel)
    else:
        from .kernels import cuda_batch
        out = cuda_batch.run(model, arrays, rule, settings,
                             threads_per_block)
    options = dict(learning_rate=lr_desc, beta1=beta1, beta2=beta2, eps=eps,
                   lr_decay=lr_decay, polish=polish,
                   x_scale=info["x_scale"],
                   p0="guess" if info["guessed"] else "given")
    attrs = dict(
        model=model.name, method=method, target=target, maxiter=maxiter,
        tol=tol, absolute_sigma=netcdf_attr(bool(absolute_sigma)),
        dtype=str(np.dtype(info["dtype"])), n_points=info["n_points"],
        parallel=netcdf_attr(bool(use_parallel) and target == "cpu"),
        covariance_scaling=("absolute_sigma" if absolute_sigma
                            else "chi2/(n_valid-n_params)"),
        options=json.dumps(options, sort_keys=True),
        status_meanings=json.dumps({str(k): v for k, v in STATUS.items()}),
    )
    return _dataset(model, arrays[3], out, attrs)


_POOL = None
_POOL_LOCK = threading.Lock()


def _threads():
    """Threads for a parallel fit_batch: NUMBA_NUM_THREADS, else the CPUs
    this process may use."""
    env = os.environ.get("NUMBA_NUM_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:          # not on Linux
        return max(1, os.cpu_count() or 1)


def _pool():
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(_threads(),
                                       thread_name_prefix="adamsci-fit")
        return _POOL


def _run_cpu(model, arrays, rule, settings, parallel):
    """The model's CPU driver over all fits: one call, or (``parallel``)
    chunks of fits in a thread pool. The driver releases the GIL and has no
    Numba parallel region, so the same compiled kernel serves both, and any
    thread (Dask workers included) may call it."""
    X, Y, W, P0, LO, HI, XS = arrays
    n, npar = Y.shape[0], model.n_params
    dtype = P0.dtype
    P = np.empty((n, npar), dtype)
    COV = np.empty((n, npar, npar), dtype)
    CHI2 = np.empty(n, np.float64)
    NIT = np.empty(n, np.int64)
    STATUS = np.empty(n, np.int8)
    fit = model.compiled.module.fit_cpu
    args = (X, Y, W, P0, LO, HI, XS, rule, settings, P, COV, CHI2, NIT,
            STATUS)
    from numba.core.errors import NumbaError
    try:
        threads = _threads() if parallel else 1
        chunks = min(n, 8 * threads) if threads > 1 else 1
        if chunks <= 1:
            fit(*args, 0, n)
        else:
            fit(*args, 0, 1)       # compiles (or loads) once, in this thread
            bounds = [1 + c * (n - 1) // chunks for c in range(chunks + 1)]
            list(_pool().map(lambda c: fit(*args, bounds[c], bounds[c + 1]),
                             range(chunks)))
    except NumbaError as exc:
        raise _models.ModelCompileError(
            f"model {model.name!r} could not be compiled into the batched "
            f"CPU kernel:\n{exc}") from exc
    return P, COV, CHI2, NIT, STATUS


def _check_jac(model, arrays):
    """Warn when a model's ``jac`` disagrees with the compiler's exact
    derivatives at the first fit's ``p0`` (the compiled fitters use the
    latter)."""
    X, Y, W, P0 = arrays[:4]
    x = X[0, 0] if model.xdim == 0 else X[0]
    p = np.asarray(P0[0], np.float64)
    try:
        J = np.asarray(model.jac(x, *p), np.float64).reshape(
            x.shape[-1], model.n_params)
    except Exception as exc:    # noqa: BLE001 - the user's function
        raise ValueError(f"model {model.name!r}: jac(x, *p0) failed: "
                         f"{exc}") from exc
    grad = model.compiled.module.grad.py_func
    out = np.empty(model.n_params)
    exact = np.empty_like(J)
    for k in range(J.shape[0]):
        pt = x[k] if model.xdim == 0 else tuple(x[:, k])
        grad(pt, p, out)
        exact[k] = out
    scale = np.abs(exact).max(axis=0) + 1e-300
    err = float(np.nanmax(np.abs(J - exact) / scale))
    if not err <= 1e-4:
        warnings.warn(f"model {model.name!r}: jac differs from the exact "
                      f"derivatives of the model at p0 (relative {err:.2e}); "
                      f"fit_batch uses the exact ones", RuntimeWarning,
                      stacklevel=3)


def _dataset(model, P0, out, attrs):
    import xarray as xr
    from . import __version__
    P, COV, CHI2, NIT, STATUS_ = out
    n = P.shape[0]
    names = list(model.param_names)
    with np.errstate(invalid="ignore"):
        diag = np.diagonal(COV, axis1=1, axis2=2)
        err = np.sqrt(np.where(diag >= 0, diag, np.nan))
    p0 = np.broadcast_to(P0, P.shape)
    ds = xr.Dataset(
        {
            "params": (("fit", "param"), P),
            "params_err": (("fit", "param"), err.astype(P.dtype)),
            "covariance": (("fit", "cov_i", "cov_j"), COV),
            "p0": (("fit", "param"), np.array(p0)),
            "chi2": (("fit",), CHI2),
            "nit": (("fit",), NIT),
            "status": (("fit",), STATUS_),
        },
        coords={"fit": np.arange(n), "param": names, "cov_i": names,
                "cov_j": names},
        attrs=dict(attrs, adamsci_version=__version__),
    )
    ds.params.attrs["long_name"] = "best-fit parameters"
    ds.params_err.attrs["long_name"] = "standard errors, sqrt(diag(cov))"
    ds.covariance.attrs["long_name"] = "parameter covariance"
    ds.chi2.attrs["long_name"] = "weighted sum of squared residuals"
    ds.nit.attrs["long_name"] = "optimizer steps taken"
    ds.status.attrs.update(
        long_name="fit status",
        flag_values=np.array(sorted(STATUS), dtype=np.int8),
        flag_meanings=" ".join(STATUS[k] for k in sorted(STATUS)))
    return ds
