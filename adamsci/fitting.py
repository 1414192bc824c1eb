r"""Stochastic curve fitting with scipy's ``curve_fit`` interface.

:func:`curve_fit` fits ``ydata ~ f(xdata, *params)`` by minimising the
(weighted) sum of squared residuals with an Adam-family optimizer from
:mod:`adamsci.minimize`, optionally on minibatches of the data points, and
returns what :func:`scipy.optimize.curve_fit` returns: ``(popt, pcov)`` or,
with ``full_output=True``, ``(popt, pcov, infodict, mesg, ier)``.

Recommended settings
--------------------
The defaults are the settings that reach the certified values of the NIST
StRD nonlinear regression problems of lower difficulty from NIST's Start 2
(Misra1a, Chwirut2, Chwirut1, DanWood, Misra1b, Gauss1, Gauss2) to better
than 1e-6 relative error (1e-8 to 1e-10 measured, see ``tests/
test_fitting.py``): Adam with ``x_scale="auto"`` (steps in units of
``|p0|``, a per-parameter learning rate), ``beta2=0.99`` (the valleys of
Misra1a/b need the faster-adapting second moment), and a learning rate
decaying exponentially from 0.1 to 1e-8 over ``maxiter=10000`` iterations. Lanczos3 (a sum of three nearly degenerate exponentials) does
not converge with these settings: its parameters are determined only through
tiny differences of nearly parallel Jacobian columns, which a diagonal
preconditioner such as Adam's cannot resolve; use a Gauss-Newton method
(``scipy.optimize.curve_fit``) for such problems. Adam is the tool for data
too large for one Jacobian, or noisy, or for models whose Jacobian is
expensive; for small smooth problems Levenberg-Marquardt is faster.
"""
import inspect
import numbers
import warnings

import numpy as np
from scipy.linalg import cholesky, solve_triangular, svd
from scipy.optimize import Bounds, OptimizeWarning

from . import minimize as _minimize
from . import schedules as _schedules
from .objectives import MinibatchObjective

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


def _points(a):
    """Move the data-point axis (the last) of xdata to the front (a view)."""
    return np.moveaxis(a, -1, 0) if a.ndim > 1 else a


class _LeastSquares:
    """``0.5 * sum(((f(x, *p) - y) / sigma)**2)`` and its gradient.

    ``__call__(p, xt, y, w)`` works on one batch (points first: ``xt`` is
    ``xdata`` with its last axis moved to the front) and scales the batch
    sums by ``M / batch size``, an unbiased estimate of the full sums.
    """

    def __init__(self, f, jac, m, n, chol=None):
        self.f = f
        self.jac = jac
        self.m = m
        self.n = n
        self.chol = chol          # lower Cholesky factor of a 2-D sigma

    def residuals(self, p, xt, y, w):
        """Whitened residuals and Jacobian of one batch."""
        x = xt if xt.ndim == 1 else np.moveaxis(xt, 0, -1)
        model = np.asarray(self.f(x, *p), dtype=float)
        if model.shape != y.shape:
            try:
                model = np.broadcast_to(model, y.shape)
            except ValueError as e:
                raise ValueError(f"f returned shape {model.shape}; the data "
                                 f"have shape {y.shape}") from e
        jac = self.jac
        if callable(jac):
            J = np.asarray(jac(x, *p), dtype=float).reshape(y.size, self.n)
        else:
            from scipy.optimize._numdiff import approx_derivative

            def fm(q):
                # complex steps ("cs") need the model's complex values
                return np.asarray(self.f(x, *q)).reshape(-1)
            J = approx_derivative(fm, p, method=jac or "2-point",
                                  f0=model.reshape(-1))
            J = J.reshape(y.size, self.n)
        r = model - y
        if self.chol is not None:
            r = solve_triangular(self.chol, r, lower=True)
            J = solve_triangular(self.chol, J, lower=True)
        elif w is not None:
            r = r * w
            J = J * w[:, None]
        return r, J

    def __call__(self, p, xt, y, w=None):
        r, J = self.residuals(p, xt, y, w)
        k = self.m / y.size
        return 0.5 * k * float(r @ r), k * (J.T @ r)


def curve_fit(f, xdata, ydata, p0=None, sigma=None, absolute_sigma=False,
              bounds=(-np.inf, np.inf), jac=None, *, batch_size=None,
              method="adam", full_output=False, nan_policy=None, seed=None,
              **options):
    r"""Fit ``f(xdata, *params)`` to ``ydata`` with Adam (or a baseline).

    The interface and the return values of
    :func:`scipy.optimize.curve_fit`; the minimisation of the weighted sum
    of squares :math:`\tfrac12\sum_i ((f(x_i, p) - y_i)/\sigma_i)^2` is done
    by a method of :mod:`adamsci.minimize`, on minibatches of the data
    points when ``batch_size`` is set (each batch's sums scaled by
    ``M / batch_size``).

    Parameters
    ----------
    f : callable
        ``f(x, *params) -> array of ydata's shape``, vectorised over the
        points (the last axis of ``x``).
    xdata : array_like, shape (M,) or (k, M)
        Independent variable(s): data points along the last axis.
    ydata : array_like, shape (M,)
        Observations.
    p0 : array_like, shape (N,), optional
        Starting point; default ones (inside finite bounds: scipy's rule),
        with N from the signature of ``f``.
    sigma : array_like, shape (M,) or (M, M), optional
        Standard deviations of ``ydata`` (residuals are divided by them) or
        their covariance matrix (whitened by its Cholesky factor; not with
        ``batch_size``).
    absolute_sigma : bool, default False
        False scales ``pcov`` by the reduced chi-square ``cost / (M - N)``.
    bounds : 2-tuple of array_like or scipy.optimize.Bounds
        ``(lb, ub)``, scalars or shape (N,); the optimizer projects onto the
        box after every step.
    jac : callable, "2-point", "3-point", "cs" or None
        ``jac(x, *params) -> (M, N)`` Jacobian of the model; otherwise
        finite differences of the model on each batch
        (:mod:`scipy.optimize`; None means "2-point").
    batch_size : int, optional
        Points per minibatch; None uses all points at every iteration.
    method : str or callable, default "adam"
        "adam", "adamax", "sgd", "adagrad", "rmsprop", "adadelta", or one of
        the :mod:`adamsci.minimize` functions.
    full_output : bool, default False
        Also return ``infodict, mesg, ier``.
    nan_policy : {None, "raise", "omit"}, default None
        None and "raise": ValueError when ``xdata`` or ``ydata`` hold NaN
        (None also rejects infinities, scipy's ``check_finite``); "omit":
        points with NaN are dropped.
    seed : int, optional
        Seed of the minibatch order (see :class:`adamsci.MinibatchObjective`).
    **options
        Options of the method (hyperparameters, ``maxiter``, ``x_scale``,
        ``record``, ...). Defaults here (the recommended settings, see
        :mod:`adamsci.fitting`): ``maxiter=10000``, ``x_scale="auto"``,
        ``gtol=0``, ``beta2=0.99`` (Adam, AdaMax), and ``learning_rate =
        schedules.exponential(0.1, 1e-7, maxiter)`` (from 0.1 down to 1e-8
        at the last iteration; with ``x_scale="auto"`` these are relative
        steps).

    Returns
    -------
    popt : ndarray, shape (N,)
        Parameters that minimise the weighted sum of squares (the iterate
        at the end; its bias-corrected temporal average ``res.x_avg`` when
        ``ema_decay`` is given).
    pcov : ndarray, shape (N, N)
        scipy's estimate of the covariance of ``popt``: the pseudo-inverse
        of :math:`J^TJ` from the SVD of the whitened Jacobian over all the
        data at ``popt`` (singular values below ``eps * max(J.shape) *
        s[0]`` dropped), times ``cost / (M - N)`` unless ``absolute_sigma``;
        ``inf`` with an OptimizeWarning when it cannot be estimated
        (``M <= N``, indeterminate).
    infodict : dict
        With ``full_output``: ``nfev`` (objective evaluations, each on one
        batch), ``njev``, ``nit``, ``fvec`` (whitened residuals over all the
        data at ``popt``), ``result`` (the method's OptimizeResult).
    mesg : str
        With ``full_output``: the method's message.
    ier : int
        With ``full_output``: the method's status (see
        :mod:`adamsci.minimize`).

    Raises
    ------
    ValueError
        Bad shapes or values, NaN data, ``M < 1``.
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
    decaying learning rate (the default) it is the normal end of a fit.
    ``ier`` and ``mesg`` tell how the method stopped.

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
    # -- data ----------------------------------------------------------------
    xdata = np.asarray(xdata)
    ydata = np.asarray(ydata)
    if xdata.dtype.kind not in "fiub":
        xdata = xdata.astype(float)
    if ydata.dtype.kind not in "fiub":
        raise TypeError(f"ydata must be real numbers, got dtype "
                        f"{ydata.dtype}")
    ydata = ydata.astype(float).reshape(-1) if ydata.ndim != 1 else \
        ydata.astype(float)
    m = ydata.size
    if xdata.ndim == 0 or xdata.shape[-1] != m:
        raise ValueError(f"xdata must have the data points along its last "
                         f"axis ({m} points in ydata), got shape "
                         f"{xdata.shape}")
    if nan_policy not in (None, "raise", "omit"):
        raise ValueError(f"nan_policy must be None, 'raise' or 'omit', got "
                         f"{nan_policy!r}")
    bad = np.isnan(ydata) | np.isnan(xdata.reshape(-1, m)).any(axis=0)
    if nan_policy == "omit":
        if bad.any():
            keep = ~bad
            xdata = xdata[..., keep]
            ydata = ydata[keep]
            if sigma is not None:
                sigma = np.asarray(sigma)
                sigma = sigma[keep] if sigma.ndim == 1 else \
                    sigma[np.ix_(keep, keep)]
            m = ydata.size
    elif nan_policy == "raise":
        if bad.any():
            raise ValueError("xdata or ydata contain NaN (nan_policy='raise')")
    elif not (np.isfinite(ydata).all() and np.isfinite(xdata).all()):
        raise ValueError("xdata and ydata must be finite (nan_policy='omit' "
                         "drops NaN points)")
    if m == 0:
        raise ValueError("no data points")
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
    # -- sigma -----------------------------------------------------------------
    w = None
    chol = None
    if sigma is not None:
        sigma = np.asarray(sigma, dtype=float)
        if sigma.shape == (m,):
            if not (np.isfinite(sigma).all() and (sigma > 0).all()):
                raise ValueError("sigma must be finite and > 0")
            w = 1.0 / sigma
        elif sigma.shape == (m, m):
            if batch_size is not None:
                raise ValueError("a covariance matrix sigma (M, M) needs all "
                                 "points together: batch_size must be None")
            try:
                chol = cholesky(sigma, lower=True)
            except np.linalg.LinAlgError as e:
                raise ValueError("sigma (M, M) must be positive "
                                 "definite") from e
        else:
            raise ValueError(f"sigma must have shape ({m},) or ({m}, {m}), "
                             f"got {sigma.shape}")
    if not (jac is None or callable(jac) or jac in _FD):
        raise ValueError(f"jac must be a callable, None or one of {_FD}, got "
                         f"{jac!r}")
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
    maxiter = opts.setdefault("maxiter", 10000)
    if isinstance(maxiter, (bool, np.bool_)) or not isinstance(
            maxiter, numbers.Integral) or maxiter < 1:
        raise ValueError(f"maxiter must be an integer >= 1, got {maxiter!r}")
    opts.setdefault("x_scale", "auto")
    opts.setdefault("gtol", 0.0)
    if name in ("adam", "adamax"):
        opts.setdefault("beta2", 0.99)
    if "learning_rate" not in opts:
        opts["learning_rate"] = _schedules.exponential(0.1, 1e-7, maxiter)
    if "param_names" not in opts:
        from .history import param_names_from_model
        names = param_names_from_model(f, n)
        if names is not None:
            opts["param_names"] = names
    # -- the objective ---------------------------------------------------------
    xt = _points(xdata)
    ls = _LeastSquares(f, jac, m, n, chol)
    data = (xt, ydata) if w is None else (xt, ydata, w)
    if batch_size is None:
        def fun(p):
            return ls(p, *data)
    else:
        fun = MinibatchObjective(ls, data, batch_size=batch_size,
                                 shuffle=True, seed=seed)
    box = None
    if np.isfinite(lb).any() or np.isfinite(ub).any():
        box = Bounds(lb, ub)
    res = meth(fun, p0, jac=True, bounds=box, **opts)
    if res.status == 3:
        raise RuntimeError(f"Optimal parameters not found: {res.message}")
    popt = res.x_avg if getattr(res, "x_avg", None) is not None else res.x
    popt = np.asarray(popt, dtype=float)
    # -- covariance (scipy's recipe) -------------------------------------------
    r, J = _full_residuals(ls, popt, xt, ydata, w)
    cost = float(r @ r)
    warn_cov = False
    pcov = None
    if np.isfinite(J).all():
        _, s, VT = svd(J, full_matrices=False)
        threshold = np.finfo(float).eps * max(J.shape) * s[0]
        s = s[s > threshold]
        VT = VT[:s.size]
        pcov = np.dot(VT.T / s ** 2, VT)
    if pcov is None or np.isnan(pcov).any():
        pcov = np.full((n, n), np.inf)
        warn_cov = True
    elif not absolute_sigma:
        if m > n:
            pcov = pcov * (cost / (m - n))
        else:
            pcov = np.full((n, n), np.inf)
            warn_cov = True
    if warn_cov:
        warnings.warn("Covariance of the parameters could not be estimated",
                      category=OptimizeWarning, stacklevel=2)
    if full_output:
        infodict = {"nfev": res.nfev, "njev": res.njev, "nit": res.nit,
                    "fvec": r, "result": res}
        return popt, pcov, infodict, res.message, res.status
    return popt, pcov


def _full_residuals(ls, p, xt, y, w, chunk=1 << 16):
    """Whitened residuals and Jacobian over all points, in chunks."""
    if ls.chol is not None or y.size <= chunk:
        return ls.residuals(p, xt, y, w)
    rs, Js = [], []
    for lo in range(0, y.size, chunk):
        sl = slice(lo, lo + chunk)
        r, J = ls.residuals(p, xt[sl], y[sl], None if w is None else w[sl])
        rs.append(r)
        Js.append(J)
    return np.concatenate(rs), np.concatenate(Js)
