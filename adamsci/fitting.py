r"""Curve fitting with scipy's ``curve_fit`` interface, for data of any size.

:func:`curve_fit` fits ``ydata ~ f(xdata, *params)`` in two stages:

1. **Adam** (or a baseline of :mod:`adamsci.minimize`) on the weighted sum
   of the losses of the points, on minibatches of ``batch_size`` points
   (or all of them), from ``p0``;
2. a **polish**: Levenberg-Marquardt steps on all the data, each one
   streaming pass over the data (:mod:`adamsci.streaming`), from Adam's
   end point and from ``p0``; the lower cost wins. It makes the answer as
   exact as a Gauss-Newton fit's, and never worse than Levenberg-
   Marquardt's from ``p0``; ``pcov`` comes from the last pass's ``J^T W
   J``.

When the model compiles (:mod:`adamsci.compiler`: an elementwise body, the
usual case) both stages are compiled: the minibatch loop runs in Numba
(sampling, the batch's residuals and exact gradient, the optimizer's step,
the schedule, the history), the passes run in threads over chunks of the
data, and ``xdata``/``ydata`` may be dask arrays, xarray DataArrays or
arrays of a netCDF, HDF5 or zarr file, read chunk by chunk and never whole.
Other models run the same two stages with NumPy (finite differences or
``jac``), on data in memory.

Recommended settings
--------------------
The defaults are Adam with ``x_scale="auto"`` (steps in units of ``|p0|``, a
per-parameter learning rate), ``beta2=0.99``, a learning rate decaying
exponentially from 0.1, then the polish from both starts. From NIST's Start
2 they reach the certified values of all 27 StRD nonlinear regression
problems to 1e-5 relative (``scipy.optimize.curve_fit``: 22 of them; ``python
-m adamsci bench --suite curve_fit`` prints the table), the lower
difficulty ones to better than 1e-6 (``tests/test_fitting.py``). Either
start alone fails on some: problems such as Lanczos3 (a sum of three nearly
degenerate exponentials) determine their parameters only through tiny
differences of nearly parallel Jacobian columns, which Adam's diagonal
preconditioner cannot resolve (Adam's end point may merge two of the
exponentials, where Levenberg-Marquardt cannot part them again), while
Levenberg-Marquardt alone from Start 2 stops short on ENSO, MGH09, Thurber,
Rat43 and Bennett5. Adam is the tool for data too large for one Jacobian,
or noisy; the polish makes its answer exact.
"""
import inspect
import json
import numbers
import os
import warnings

import numpy as np
from scipy.linalg import cholesky, solve_triangular
from scipy.optimize import Bounds, OptimizeWarning

from . import minimize as _minimize
from . import schedules as _schedules
from . import streaming
from .kernels import stream

__all__ = ["curve_fit"]

_METHODS = ("adam", "adamax", "sgd", "adagrad", "rmsprop", "adadelta")
_FD = ("2-point", "3-point", "cs")


def _n_params(f):
    f = getattr(f, "py_func", f)
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError) as e:
        raise ValueError("Unable to determine number of fit parameters; "
                         "pass p0") from e
    params = [p for p in sig.parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values()) or \
            len(params) < 2:
        raise ValueError("Unable to determine number of fit parameters; "
                         "pass p0")
    return len(params) - 1


def _initialize_feasible(lb, ub):
    """scipy's starting point inside the bounds (ones where unbounded)."""
    p0 = np.ones_like(lb)
    lb_finite = np.isfinite(lb)
    ub_finite = np.isfinite(ub)
    mask = lb_finite & ub_finite
    p0[mask] = 0.5 * (lb[mask] + ub[mask])
    mask = lb_finite & ~ub_finite
    p0[mask] = lb[mask] + 1
    mask = ~lb_finite & ub_finite
    p0[mask] = ub[mask] - 1
    return p0


def _bounds(bounds, n):
    if isinstance(bounds, Bounds):
        lb, ub = bounds.lb, bounds.ub
    else:
        try:
            lb, ub = bounds
        except (TypeError, ValueError) as e:
            raise ValueError("bounds must be a 2-tuple (lb, ub) of scalars "
                             "or arrays, or a scipy.optimize.Bounds") from e
    try:
        lb = np.broadcast_to(np.asarray(lb, dtype=float), (n,)).copy()
        ub = np.broadcast_to(np.asarray(ub, dtype=float), (n,)).copy()
    except ValueError as e:
        raise ValueError(f"bounds: lb and ub must be scalars or have "
                         f"shape ({n},)") from e
    if (lb >= ub).any():
        raise ValueError("bounds: each lower bound must be strictly less "
                         "than the upper bound")
    return lb, ub


_POLISH_PASSES = 300
_AUTO_BATCH = 1024      # batch_size='auto': minibatches of above this
_SUBSAMPLE = 1 << 16    # the polish from p0 tries this many points first


class _NumpyModel:
    """The passes of a model that does not compile: ``f(x, *p)`` and its
    Jacobian (``jac`` or finite differences) with NumPy, on a chunk of
    points. ``chol``: the lower Cholesky factor of a covariance ``sigma``
    (whitens all the points together)."""

    def __init__(self, f, jac, k, loss, f_scale, chol=None):
        self.f = f
        self.jac = jac
        self.k = k
        self.loss = stream.LOSSES.index(loss)
        self.f_scale = float(f_scale)
        self.chol = chol

    def __call__(self, p, X, Y, W, want_a):
        x = X[0, 0] if self.k == 0 else X[0]
        model = np.asarray(self.f(x, *p))
        if model.shape != Y.shape:
            try:
                model = np.broadcast_to(model, Y.shape)
            except ValueError as e:
                raise ValueError(f"f returned shape {model.shape}; the data "
                                 f"have shape {Y.shape}") from e
        if callable(self.jac):
            J = np.asarray(self.jac(x, *p), dtype=float).reshape(Y.size,
                                                                 p.size)
        else:
            from scipy.optimize._numdiff import approx_derivative

            def fm(q):
                # complex steps ("cs") need the model's complex values
                return np.asarray(self.f(x, *q)).reshape(-1)
            J = approx_derivative(fm, p, method=self.jac or "2-point",
                                  f0=model.reshape(-1))
            J = J.reshape(Y.size, p.size)
        model = model.astype(float)
        y = np.asarray(Y, dtype=float)
        if self.chol is not None:
            model = solve_triangular(self.chol, model, lower=True)
            y = solve_triangular(self.chol, y, lower=True)
            J = solve_triangular(self.chol, J, lower=True)
        ok = np.isfinite(model) & np.isfinite(y)
        count = int(ok.sum())
        if count < y.size:
            model, y, J = model[ok], y[ok], J[ok]
            W = W[ok] if W.size else W
        cost, df, d2 = stream.loss_arrays(model, y, np.asarray(W, float),
                                          self.loss, self.f_scale)
        A = (J * d2[:, None]).T @ J if want_a else None
        return float(cost.sum()), J.T @ df, A, count


def _compile(f, n, k, jac):
    """The compiled model of ``f`` for ``n`` parameters and ``k``
    coordinates, or ``(None, why)``."""
    from .compiler import ModelCompileError, compile_model
    from .models import Model
    if jac is not None:
        return None, "jac was given"
    func, names = (f.func, f.param_names) if isinstance(f, Model) else \
        (f, None)
    try:
        sig = inspect.signature(getattr(func, "py_func", func))
        if any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values()):
            names = tuple(f"p{j}" for j in range(n))
    except (TypeError, ValueError):
        pass
    try:
        cm = compile_model(func, names)
    except ModelCompileError as e:
        return None, str(e)
    if cm.n_params != n:
        return None, (f"the model has {cm.n_params} parameters, p0 has {n}")
    if (cm.xdim == 0) != (k == 0) or cm.xdim > max(k, 1):
        return None, (f"the model reads {cm.xdim or 1} coordinates of x; "
                      f"xdata has {k or 1}")
    return cm, None


def _in_memory(xdata, ydata, sigma, nan_policy):
    """xdata, ydata, sigma as NumPy arrays, checked (scipy's rules)."""
    xdata = np.asarray(xdata)
    ydata = np.asarray(ydata)
    if xdata.dtype.kind not in "fiub":
        xdata = xdata.astype(float)
    if ydata.dtype.kind not in "fiub":
        raise TypeError(f"ydata must be real numbers, got dtype "
                        f"{ydata.dtype}")
    if ydata.dtype.char not in "fd":
        ydata = ydata.astype(float)
    ydata = ydata.reshape(-1)
    m = ydata.size
    if xdata.ndim == 0 or xdata.ndim > 2 or xdata.shape[-1] != m:
        raise ValueError(f"xdata must have the data points along its last "
                         f"axis ({m} points in ydata), got shape "
                         f"{xdata.shape}")
    if xdata.dtype.char not in "fd":
        xdata = xdata.astype(float)
    bad = None
    if nan_policy == "omit":
        bad = np.isnan(ydata) | np.isnan(xdata.reshape(-1, m)).any(axis=0)
        if bad.any():
            keep = ~bad
            xdata = xdata[..., keep]
            ydata = ydata[keep]
            if sigma is not None:
                sigma = np.asarray(sigma)
                sigma = sigma[keep] if sigma.ndim == 1 else \
                    sigma[np.ix_(keep, keep)]
    elif nan_policy == "raise":
        if np.isnan(ydata).any() or np.isnan(xdata).any():
            raise ValueError("xdata or ydata contain NaN (nan_policy='raise')")
    elif not (np.isfinite(ydata).all() and np.isfinite(xdata).all()):
        raise ValueError("xdata and ydata must be finite (nan_policy='omit' "
                         "drops NaN points)")
    return xdata, ydata, sigma


def curve_fit(f, xdata, ydata, p0=None, sigma=None, absolute_sigma=False,
              bounds=(-np.inf, np.inf), jac=None, *, batch_size="auto",
              method="adam", full_output=False, nan_policy=None, seed=None,
              loss="linear", f_scale=1.0, polish=True, chunk_size=None,
              compiled=None, **options):
    r"""Fit ``f(xdata, *params)`` to ``ydata``: Adam, then a polish.

    The interface and the return values of
    :func:`scipy.optimize.curve_fit`. Minimises :math:`\sum_i \rho_i`, the
    losses of the points (:math:`\tfrac12 ((f(x_i, p) - y_i)/\sigma_i)^2`
    for ``loss="linear"``), with a method of :mod:`adamsci.minimize` on
    minibatches (each batch's sum scaled by ``M / batch_size``), then
    polishes the result with Levenberg-Marquardt steps on all the data
    (see :mod:`adamsci.fitting`).

    Parameters
    ----------
    f : callable
        ``f(x, *params) -> array of ydata's shape``, vectorised over the
        points (the last axis of ``x``), or an :class:`adamsci.models.Model`.
        Compiled by :mod:`adamsci.compiler` when its body is elementwise
        (exact derivatives; the fast path, and the only one for data read
        chunk by chunk).
    xdata : array_like, shape (M,) or (k, M)
        Independent variable(s): data points along the last axis. A NumPy
        array, or -- read chunk by chunk, never whole -- a dask array, an
        xarray DataArray (over dask, or of a file opened with
        :func:`xarray.open_dataset`), an h5py or zarr array.
    ydata : array_like, shape (M,)
        Observations (NumPy or lazy, as ``xdata``).
    p0 : array_like, shape (N,), optional
        Starting point; default ones (inside finite bounds: scipy's rule),
        with N from the signature of ``f``.
    sigma : array_like, shape (M,) or (M, M), optional
        Standard deviations of ``ydata`` (residuals are divided by them) or
        their covariance matrix (whitened by its Cholesky factor; data in
        memory, all points at once, a model run with NumPy).
    absolute_sigma : bool, default False
        False scales ``pcov`` by the reduced cost ``2 cost / (M - N)``
        (scipy's reduced chi-square; for ``loss="poisson"``, the deviance
        per degree of freedom: the dispersion).
    bounds : 2-tuple of array_like or scipy.optimize.Bounds
        ``(lb, ub)``, scalars or shape (N,); steps are projected onto the
        box.
    jac : callable, "2-point", "3-point", "cs" or None
        ``jac(x, *params) -> (M, N)``: the model is then run with NumPy and
        this Jacobian (so are models that do not compile, with finite
        differences: None means "2-point"). A compiled model uses its exact
        derivatives.
    batch_size : int, "auto" or None, default "auto"
        Points per minibatch. None: all points at every iteration (data in
        memory); "auto": all points up to 1024 of them, else minibatches of
        1024 (and always 1024 for data read chunk by chunk).
    method : str or callable, default "adam"
        "adam", "adamax", "sgd", "adagrad", "rmsprop", "adadelta", or one of
        the :mod:`adamsci.minimize` functions.
    full_output : bool, default False
        Also return ``infodict, mesg, ier``.
    nan_policy : {None, "raise", "omit"}, default None
        None and "raise": ValueError when the data hold NaN (None also
        rejects infinities, scipy's ``check_finite``); "omit": such points
        are left out. Data read chunk by chunk are checked as they are read.
    seed : int, optional
        Seed of the minibatch order; None draws one (``infodict["seed"]``).
    loss : {"linear", "soft_l1", "huber", "cauchy", "arctan", "poisson"}
        The loss of a point, as :func:`scipy.optimize.least_squares` names
        them (a function of the squared whitened residual divided by
        ``f_scale**2``, see :mod:`adamsci.kernels.stream`), or
        ``"poisson"``: half the Poisson deviance of counts ``ydata`` with
        mean ``f`` (``sigma`` must then be None).
    f_scale : float, default 1.0
        The residual where the robust losses turn from quadratic to
        robust (scipy's ``f_scale``).
    polish : bool or "optimizer", default True
        Levenberg-Marquardt steps on all the data after the optimizer, one
        pass over the data each (at most 300), from the optimizer's end
        point and from ``p0``, the lower cost winning (so the answer is
        never worse than Levenberg-Marquardt's from ``p0``; the NIST
        problems need both starts). From ``p0`` the steps run on a random
        subsample of 65,536 points first, and on all the data only when
        they end elsewhere than the first polish (3 of the subsample's
        standard errors per parameter). "optimizer": from its end point
        only. False: none (one pass still gives ``pcov``).
    chunk_size : int, optional
        Points read per chunk (default: the data's own chunks, at least
        about a million points; all of them for NumPy arrays).
    compiled : bool, optional
        None: compile the model when it can be; True: raise when it cannot;
        False: run it with NumPy.
    **options
        Options of the method (hyperparameters, ``maxiter``, ``x_scale``,
        ``record``, ...). Defaults here: ``x_scale="auto"``, ``gtol=0``,
        ``beta2=0.99`` (Adam, AdaMax), and ``learning_rate =
        schedules.exponential(0.1, end, maxiter)`` (relative steps, with
        ``x_scale="auto"``); on all the points ``maxiter=10000`` and ``end
        = 1e-7`` (down to 1e-8 at the last iteration), on minibatches
        followed by the polish ``maxiter=1000`` and ``end=1e-2`` (the
        optimizer only needs to bring the parameters within reach of the
        polish, which makes them exact).

    Returns
    -------
    popt : ndarray, shape (N,)
        The parameters at the end of the polish (without it: the
        optimizer's iterate, or its bias-corrected temporal average
        ``res.x_avg`` when ``ema_decay`` is given).
    pcov : ndarray, shape (N, N)
        scipy's estimate of the covariance of ``popt``: the pseudo-inverse
        of :math:`J^T W J` over all the data at ``popt`` (scipy's threshold
        on its singular values), times ``2 cost / (M - N)`` unless
        ``absolute_sigma``; ``inf`` with an OptimizeWarning when it cannot
        be estimated (``M <= N``, indeterminate). For a robust loss, the
        matrix is weighted by the loss's ``rho'`` (as in iteratively
        reweighted least squares).
    infodict : dict
        With ``full_output``: ``nfev`` (the optimizer's evaluations, each on
        one batch, plus the polish's passes), ``njev``, ``nit``, ``npass``
        (passes over all the data), ``cost`` (the sum of the losses at
        ``popt``), ``fvec`` (whitened residuals at ``popt``; None for data
        read chunk by chunk), ``engine`` ("compiled" or "numpy", and
        ``why`` not compiled), ``seed``, ``result`` (the method's
        OptimizeResult, with its history when recorded).
    mesg : str
        With ``full_output``: the method's message, and the polish's.
    ier : int
        With ``full_output``: the method's status (see
        :mod:`adamsci.minimize`).

    Raises
    ------
    ValueError
        Bad shapes or values, NaN data, ``M < 1``, an unknown loss.
    OSError
        Data read chunk by chunk could not be read (a file that
        disappeared). The exception keeps what was done: during the
        optimizer's steps, ``history`` holds the rows recorded so far (with
        ``record``); during the polish, ``result`` is the optimizer's
        OptimizeResult, with its history.
    RuntimeError
        The objective became non-finite (status 3), as scipy raises when no
        optimum is found.

    Warns
    -----
    OptimizeWarning
        The covariance could not be estimated.

    Notes
    -----
    Unlike scipy, reaching ``maxiter`` neither raises nor warns: with a
    decaying learning rate (the default) it is the normal end of the first
    stage. ``ier`` and ``mesg`` tell how the method stopped.

    Examples
    --------
    >>> import numpy as np, adamsci
    >>> rng = np.random.default_rng(0)
    >>> t = np.linspace(0, 4, 200)
    >>> y = 2.5 * np.exp(-1.3 * t) + 0.01 * rng.normal(size=t.size)
    >>> def decay(t, a, k):
    ...     return a * np.exp(-k * t)
    >>> popt, pcov = adamsci.curve_fit(decay, t, y, p0=[1.0, 1.0],
    ...                                maxiter=3000)
    >>> np.round(popt, 2), bool(np.all(np.sqrt(np.diag(pcov)) < 0.01))
    (array([2.5, 1.3]), True)
    """
    # -- arguments that need no data -------------------------------------------
    if nan_policy not in (None, "raise", "omit"):
        raise ValueError(f"nan_policy must be None, 'raise' or 'omit', got "
                         f"{nan_policy!r}")
    if loss not in stream.LOSSES:
        raise ValueError(f"loss must be one of {stream.LOSSES}, got "
                         f"{loss!r}")
    if not (isinstance(f_scale, numbers.Real) and np.isfinite(f_scale)
            and f_scale > 0):
        raise ValueError(f"f_scale must be a number > 0, got {f_scale!r}")
    if not (isinstance(polish, (bool, np.bool_)) or polish == "optimizer"):
        raise ValueError(f"polish must be True, False or 'optimizer', got "
                         f"{polish!r}")
    passes = _POLISH_PASSES if polish is not False else 0
    polish_p0 = polish is True
    if compiled not in (None, True, False):
        raise ValueError(f"compiled must be None, True or False, got "
                         f"{compiled!r}")
    if not (jac is None or callable(jac) or jac in _FD):
        raise ValueError(f"jac must be a callable, None or one of {_FD}, got "
                         f"{jac!r}")
    batch_given = not (batch_size is None or (isinstance(batch_size, str)
                                              and batch_size == "auto"))
    if batch_given and (isinstance(batch_size, (bool, np.bool_)) or not
                        isinstance(batch_size, numbers.Integral) or
                        batch_size < 1):
        raise ValueError(f"batch_size must be an integer >= 1, 'auto' or "
                         f"None, got {batch_size!r}")
    # -- data ----------------------------------------------------------------
    lazy = any(streaming.is_lazy(a) for a in (xdata, ydata, sigma))
    if not lazy:
        xdata, ydata, sigma = _in_memory(xdata, ydata, sigma, nan_policy)
    m = int(np.shape(ydata)[-1]) if np.ndim(ydata) else 1
    if m == 0:
        raise ValueError("no data points")
    chol = None
    if sigma is not None and not lazy:
        sigma = np.asarray(sigma, dtype=float)
        if sigma.shape == (m, m):
            if batch_given:
                raise ValueError("a covariance matrix sigma (M, M) needs all "
                                 "points together: batch_size must be None")
            try:
                chol = cholesky(sigma, lower=True)
            except np.linalg.LinAlgError as e:
                raise ValueError("sigma (M, M) must be positive "
                                 "definite") from e
            sigma = None
        elif sigma.shape != (m,):
            raise ValueError(f"sigma must have shape ({m},) or ({m}, {m}), "
                             f"got {sigma.shape}")
        elif not (np.isfinite(sigma).all() and (sigma > 0).all()):
            raise ValueError("sigma must be finite and > 0")
    if loss == "poisson" and (sigma is not None or chol is not None):
        raise ValueError("loss='poisson' takes no sigma: the variance of a "
                         "count is its mean")
    data = streaming.Data(xdata, ydata, sigma, chunk_size)
    data.finite = not lazy
    # -- parameters ------------------------------------------------------------
    if p0 is None:
        n = _n_params(f)
        lb, ub = _bounds(bounds, n)
        p0 = _initialize_feasible(lb, ub)
    else:
        p0 = np.atleast_1d(np.asarray(p0, dtype=float)).copy()
        if p0.ndim != 1:
            raise ValueError(f"p0 must be 1-D, got shape {p0.shape}")
        n = p0.size
        lb, ub = _bounds(bounds, n)
    # -- the kernels -------------------------------------------------------------
    why = "compiled=False"
    cm = None
    if compiled is not False and chol is None:
        cm, why = _compile(f, n, data.k, jac)
    elif chol is not None:
        why = "sigma is a covariance matrix"
    if cm is None and (compiled or lazy):
        what = "compiled=True" if compiled else "data read chunk by chunk"
        raise ValueError(f"{what} needs a model adamsci.compiler compiles "
                         f"and no jac; not compiled: {why}")
    omit = nan_policy == "omit"
    if cm is not None:
        kern = streaming.Kernels(n, loss, f_scale, omit, module=cm.module,
                                 source=(cm.source, cm.digest))
    else:
        kern = streaming.Kernels(n, loss, f_scale, omit, numpy=_NumpyModel(
            f, jac, data.k, loss, f_scale, chol))
    # -- method and its options ------------------------------------------------
    if callable(method):
        name = getattr(method, "__name__", "")
        meth = method
    elif method in _METHODS:
        name = method
        meth = getattr(_minimize, method)
    else:
        raise ValueError(f"method must be one of {_METHODS} or an adamsci "
                         f"minimize method, got {method!r}")
    opts = dict(options)
    if not batch_given and batch_size is not None:        # "auto"
        small = data.m <= _AUTO_BATCH or chol is not None
        batch_size = None if small and not lazy else _AUTO_BATCH
    minibatches = batch_size is not None and batch_size < data.m or lazy
    short = minibatches and passes > 0      # the polish finishes the fit
    maxiter = opts.setdefault("maxiter", 1000 if short else 10000)
    if isinstance(maxiter, (bool, np.bool_)) or not isinstance(
            maxiter, numbers.Integral) or maxiter < 1:
        raise ValueError(f"maxiter must be an integer >= 1, got {maxiter!r}")
    opts.setdefault("x_scale", "auto")
    opts.setdefault("gtol", 0.0)
    if name in ("adam", "adamax"):
        opts.setdefault("beta2", 0.99)
    if "learning_rate" not in opts:
        opts["learning_rate"] = _schedules.exponential(
            0.1, 1e-2 if short else 1e-7, maxiter)
    if "param_names" not in opts:
        from .history import param_names_from_model
        names = cm.param_names if cm is not None else \
            param_names_from_model(f, n)
        if names is not None:
            opts["param_names"] = list(names)
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0] >> 1)
    elif isinstance(seed, (bool, np.bool_)) or not isinstance(
            seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0 or None, got "
                         f"{seed!r}")
    seed = int(seed)
    # -- stage 1: the optimizer on minibatches ---------------------------------
    box = None
    if np.isfinite(lb).any() or np.isfinite(ub).any():
        box = Bounds(lb, ub)
    fun, args, sampler = _objective(kern, data, batch_size, seed,
                                    nan_policy)
    if sampler is not None and opts.get("resume") is not None:
        opts["resume"] = _resume_sampler(opts["resume"], sampler)
    res = meth(fun, p0, args=args, jac=True, bounds=box, **opts)
    if sampler is not None:
        state = dict(zip(stream.SAMPLER, (int(v) for v in sampler)))
        res.epoch = state["epoch"]
        history = getattr(res, "history", None)
        if history is not None and batch_size is not None:
            # the minibatch order, as MinibatchObjective's runs save it
            # (resume), and what the plots need to draw against epochs
            history.attrs.update(
                state_objective=json.dumps(state), objective_n_points=data.m,
                objective_batch_size=int(batch_size),
                objective_n_batches=-(-data.m // batch_size))
    else:
        res.epoch = getattr(fun, "epoch", 0)
    if res.status == 3:
        raise RuntimeError(f"Optimal parameters not found: {res.message}")
    p1 = res.x_avg if getattr(res, "x_avg", None) is not None else res.x
    p1 = np.asarray(p1, dtype=float)
    # -- stage 2: the polish, and the covariance -------------------------------
    try:
        popt, (cost, _, A, count), npass, converged, from_p0 = _polish(
            kern, data, p1, p0, lb, ub, passes, polish_p0, seed, nan_policy)
    except OSError as e:       # the data could not be read: keep Adam's run
        e.result = res
        raise
    mesg = f"{name or 'the optimizer'}: {res.message}"
    if passes:
        mesg += (f" Polish: {'converged' if converged else 'not converged'}"
                 f" after {npass} passes over all the data.")
    if from_p0:
        mesg += " The polish from p0 reached a lower cost: its result."
    pcov = streaming.covariance(A, cost, count, n, absolute_sigma)
    if pcov is None or np.isnan(pcov).any():
        pcov = np.full((n, n), np.inf)
        warnings.warn("Covariance of the parameters could not be estimated",
                      category=OptimizeWarning, stacklevel=2)
    if full_output:
        fvec = None
        if not lazy:
            fvec = _residuals(f, popt, data, chol, sigma)
        infodict = {"nfev": res.nfev + npass, "njev": res.njev + npass,
                    "nit": res.nit, "npass": npass, "cost": cost,
                    "fvec": fvec, "engine": "numpy" if cm is None
                    else "compiled", "seed": seed, "result": res}
        if cm is None:
            infodict["why"] = why
        return popt, pcov, infodict, mesg, res.status
    return popt, pcov


def _polish(kern, data, p1, p0, lb, ub, passes, polish_p0, seed,
            nan_policy):
    """Stage 2 from the optimizer's end point ``p1``: ``(p, pass at p,
    passes over all the data, converged, won from p0)``.

    Levenberg-Marquardt from ``p1``, its first steps on a subsample of
    ``_SUBSAMPLE`` points; then, with ``polish_p0``, from ``p0``: on the
    subsample first, on all the data only when it ends outside 3 of the
    subsample's standard errors per parameter from the first answer
    (another minimum); the lower cost wins. No polish (``passes`` 0): one
    pass at ``p1``."""
    def on(d):
        return lambda p: kern.full_pass(p, d, nan_policy)
    full = on(data)
    if not passes:
        return p1, full(p1), 1, False, False
    sub = data.subsample(_SUBSAMPLE, seed)
    lam = 1e-3
    if sub is not data:        # the first steps are as good on a subsample
        first = streaming.polish(on(sub), p1, lb, ub, maxiter=passes)
        p1, lam = first.p, first.lam
    best = streaming.polish(full, p1, lb, ub, maxiter=passes, lam=lam)
    npass = best.passes
    if not polish_p0:
        return best.p, best.pass_, npass, best.converged, False
    other = _polish_from_p0(full, on(sub), sub is data, np.clip(p0, lb, ub),
                            best.p, lb, ub, passes)
    if other is None:
        return best.p, best.pass_, npass, best.converged, False
    npass += other.passes
    if other.pass_[0] < best.pass_[0]:
        return other.p, other.pass_, npass, other.converged, True
    return best.p, best.pass_, npass, best.converged, False


def _polish_from_p0(full, on_sub, all_points, start, popt, lb, ub, passes):
    """Levenberg-Marquardt from ``start``: with ``on_sub``, the pass over
    a subsample (``all_points``: the subsample is all the data), first;
    on all the data (``full``) only when it ends outside 3 of the
    subsample's standard errors per parameter from ``popt`` (another
    minimum). Returns the :class:`~adamsci.streaming.Polished` on all the
    data, or None (the same minimum as ``popt``)."""
    if all_points:
        return streaming.polish(full, start, lb, ub, maxiter=passes)
    q, (cost, _, A, count), _, _, lam = streaming.polish(
        on_sub, start, lb, ub, maxiter=passes)
    d = q - popt
    n = d.size
    s2 = 2.0 * cost / (count - n) if count > n else np.inf
    if np.isfinite(d).all() and d @ A @ d <= 9.0 * n * s2:
        return None
    return streaming.polish(full, q, lb, ub, maxiter=passes, lam=lam)


def _objective(kern, data, batch_size, seed, nan_policy):
    """``(fun, args, sampler)`` of the first stage: a compiled minibatch
    objective with its arrays (the loop is then compiled) or a Python one,
    and the sampler's state (:data:`adamsci.kernels.stream.SAMPLER`; None
    when ``fun`` keeps its own, as :class:`adamsci.streaming.BufferedBatches`
    does)."""
    if data.lazy:
        obj = streaming.BufferedBatches(kern, data, batch_size or 1024, seed,
                                        nan_policy)
        return obj, (), None
    X, Y, W = data.read(0)
    batch = min(batch_size or data.m, data.m)
    shuffle = batch_size is not None and batch_size < data.m
    sampler = np.array([seed, 0, 0, 0], np.int64)
    if kern.module is not None:
        return kern.module.minibatch, (X, Y, W, sampler, batch, kern.loss,
                                       kern.f_scale, kern.omit, shuffle,
                                       float(data.m)), sampler
    if not shuffle:
        def fun(p):
            cost, g, _, _ = kern.numpy(p, X, Y, W, False)
            return cost, g
        return fun, (), sampler

    def fun(p):
        return kern.batch(p, X, Y, W, sampler, batch, True, data.m)
    return fun, (), sampler


def _resume_sampler(resume, sampler):
    """Restore ``sampler`` from the history ``resume`` continues; returns
    the history for minimize (without the sampler's state, which its
    objective does not keep)."""
    import xarray as xr

    from .history import open_history
    ds = open_history(resume) if isinstance(resume, (str, os.PathLike)) \
        else resume
    if not isinstance(ds, xr.Dataset):
        return resume               # minimize says what it must be
    state = ds.attrs.get("state_objective")
    if not state:
        return ds
    try:
        state = json.loads(state)
        values = [int(state[k]) for k in stream.SAMPLER]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"resume: the minibatch state {state!r} is not "
                         f"curve_fit's ({', '.join(stream.SAMPLER)})") from e
    sampler[:] = values
    ds = ds.copy()
    del ds.attrs["state_objective"]
    return ds


def _residuals(f, p, data, chol, sigma):
    """Whitened residuals at ``p`` (data in memory)."""
    x = data.x
    r = np.asarray(f(x, *p), dtype=float) - np.asarray(data.y, dtype=float)
    if chol is not None:
        return solve_triangular(chol, r, lower=True)
    return r if sigma is None else r / sigma
