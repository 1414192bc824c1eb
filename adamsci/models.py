r"""Models for :func:`adamsci.fit_batch`, built-ins with analytic gradients.

A model is two plain-Python scalar functions, written once and compiled for
both targets (``numba.njit`` for the CPU, ``numba.cuda.jit(device=True)`` for
the GPU):

``value(x, p) -> f``
    the model at one point ``x`` (a float, or for models of several
    coordinates a 1-D array such as ``(x, y)``) for the parameters ``p`` (a
    1-D array);
``grad(x, p, out) -> f``
    writes ``out[j] = df/dp[j]`` and returns the model value ``f`` (value and
    gradient share most of the work: one ``exp`` for a Gaussian).

The functions use only scalar arithmetic, ``math`` functions, indexing and
``range`` loops, so that the same source compiles on both targets.

Built-in models (``Model`` instances; each has ``param_names``, an analytic
gradient and a vectorised ``guess(xdata, ydata)`` of starting values):

* ``gaussian``: ``amplitude * exp(-(x - center)**2 / (2 sigma**2)) + offset``
* ``gaussian2d``: ``amplitude * exp(-((x - center_x)**2 + (y - center_y)**2)
  / (2 sigma**2)) + offset`` (Gpufit's ``GAUSS_2D``; ``x`` is a point
  ``(x, y)``, see :func:`pixel_grid`)
* ``lorentzian``: ``amplitude / (1 + ((x - center) / gamma)**2) + offset``
  (``gamma`` = half width at half maximum)
* ``exponential``: ``amplitude * exp(-x / tau) + offset``
* ``double_exponential``: ``amplitude1 * exp(-x / tau1) + amplitude2 *
  exp(-x / tau2) + offset``
* ``logistic``: ``amplitude / (1 + exp(-(x - center) / width)) + offset``
* ``power_law``: ``amplitude * x**exponent`` (``x > 0``)
* ``polynomial(degree)``: ``c0 + c1 x + ... + c_degree x**degree``
* ``linear``: ``slope * x + intercept``

User models
-----------
Any plain Python function ``model(x, p)`` that Numba can compile (scalar
arithmetic and ``math``) is a model: pass it to :func:`adamsci.fit_batch`
directly, or wrap it in :class:`Model` to give it parameter names, a gradient
``grad(x, p, out) -> f`` and a ``guess``. Without a gradient the fit uses
central finite differences inside the compiled kernel (``2 n_params + 1``
model evaluations per point instead of one). Kernels of built-in models are
cached on disk by Numba; kernels of user models are compiled once per process
(Numba cannot tell when a user function changes).

Examples
--------
>>> import numpy as np
>>> from adamsci import models
>>> models.gaussian  # doctest: +NORMALIZE_WHITESPACE
Model('gaussian', param_names=('amplitude', 'center', 'sigma', 'offset'),
      grad=analytic)
>>> p = np.array([2.0, 0.0, 1.0, 0.5])
>>> out = np.empty(4)
>>> float(models.gaussian.value(1.0, p))
1.7130613194252668
>>> float(models.gaussian.grad(1.0, p, out)), out.round(4).tolist()
(1.7130613194252668, [0.6065, 1.2131, 1.2131, 1.0])
>>> models.polynomial(2).param_names
('c0', 'c1', 'c2')
"""
import hashlib
import marshal
import math
import weakref

import numpy as np

__all__ = ["Model", "ModelCompileError", "gaussian", "gaussian2d",
           "lorentzian", "exponential", "double_exponential", "logistic",
           "power_law", "polynomial", "linear", "pixel_grid", "BUILTIN"]


class ModelCompileError(TypeError):
    """A model function that Numba cannot compile (the message says which
    model, for which target, and carries Numba's own message)."""


# --------------------------------------------------------------------------
# The math of the built-in models, once (plain Python, scalar).
# --------------------------------------------------------------------------

def gaussian_value(x, p):
    d = (x - p[1]) / p[2]
    return p[0] * math.exp(-0.5 * (d * d)) + p[3]


def gaussian_grad(x, p, out):
    inv = 1.0 / p[2]
    d = (x - p[1]) * inv
    e = math.exp(-0.5 * (d * d))
    ae = p[0] * e
    q = ae * d * inv
    out[0] = e
    out[1] = q
    out[2] = q * d
    out[3] = 1.0
    return ae + p[3]


def gaussian2d_value(x, p):
    dx = (x[0] - p[1]) / p[3]
    dy = (x[1] - p[2]) / p[3]
    return p[0] * math.exp(-0.5 * (dx * dx + dy * dy)) + p[4]


def gaussian2d_grad(x, p, out):
    inv = 1.0 / p[3]
    dx = (x[0] - p[1]) * inv
    dy = (x[1] - p[2]) * inv
    r2 = dx * dx + dy * dy
    e = math.exp(-0.5 * r2)
    ae = p[0] * e
    q = ae * inv
    out[0] = e
    out[1] = q * dx
    out[2] = q * dy
    out[3] = q * r2
    out[4] = 1.0
    return ae + p[4]


def lorentzian_value(x, p):
    u = (x - p[1]) / p[2]
    return p[0] / (1.0 + u * u) + p[3]


def lorentzian_grad(x, p, out):
    inv = 1.0 / p[2]
    u = (x - p[1]) * inv
    d = 1.0 / (1.0 + u * u)
    q = 2.0 * p[0] * (d * d) * u * inv     # -(d f / d u) / gamma
    out[0] = d
    out[1] = q
    out[2] = q * u
    out[3] = 1.0
    return p[0] * d + p[3]


def exponential_value(x, p):
    return p[0] * math.exp(-x / p[1]) + p[2]


def exponential_grad(x, p, out):
    inv = 1.0 / p[1]
    e = math.exp(-x * inv)
    ae = p[0] * e
    out[0] = e
    out[1] = ae * x * (inv * inv)
    out[2] = 1.0
    return ae + p[2]


def double_exponential_value(x, p):
    return p[0] * math.exp(-x / p[1]) + p[2] * math.exp(-x / p[3]) + p[4]


def double_exponential_grad(x, p, out):
    inv1 = 1.0 / p[1]
    inv2 = 1.0 / p[3]
    e1 = math.exp(-x * inv1)
    e2 = math.exp(-x * inv2)
    a1 = p[0] * e1
    a2 = p[2] * e2
    out[0] = e1
    out[1] = a1 * x * (inv1 * inv1)
    out[2] = e2
    out[3] = a2 * x * (inv2 * inv2)
    out[4] = 1.0
    return a1 + a2 + p[4]


def logistic_value(x, p):
    return p[0] / (1.0 + math.exp(-(x - p[1]) / p[2])) + p[3]


def logistic_grad(x, p, out):
    inv = 1.0 / p[2]
    z = (x - p[1]) * inv
    s = 1.0 / (1.0 + math.exp(-z))
    q = p[0] * s * (1.0 - s) * inv         # (d f / d z) / width
    out[0] = s
    out[1] = -q
    out[2] = -q * z
    out[3] = 1.0
    return p[0] * s + p[3]


def power_law_value(x, p):
    return p[0] * x ** p[1]


def power_law_grad(x, p, out):
    xk = x ** p[1]
    out[0] = xk
    out[1] = p[0] * xk * math.log(x)
    return p[0] * xk


def polynomial_value(x, p):
    n = len(p)
    f = p[n - 1]
    for j in range(n - 2, -1, -1):
        f = f * x + p[j]
    return f


def polynomial_grad(x, p, out):
    n = len(p)
    xj = 1.0
    f = 0.0
    for j in range(n):
        out[j] = xj
        f += p[j] * xj
        xj *= x
    return f


def linear_value(x, p):
    return p[0] * x + p[1]


def linear_grad(x, p, out):
    out[0] = x
    out[1] = 1.0
    return p[0] * x + p[1]


# --------------------------------------------------------------------------
# Starting values from the data (NumPy, vectorised over fits, NaN-aware).
# xdata: (n_points,) or (n_fits, n_points) (2-D models: (..., n_points, 2));
# ydata: (n_fits, n_points) with NaN where a point is masked.
# --------------------------------------------------------------------------

def _sorted_1d(xdata, ydata):
    """Broadcast x to y's shape and sort every row by x (NaNs of x last)."""
    x = np.asarray(xdata, dtype=float)
    y = np.asarray(ydata, dtype=float)
    if x.ndim == 1:                     # shared x: sort once
        if not np.all(x[1:] >= x[:-1]):
            order = np.argsort(x, kind="stable")
            x, y = x[order], y[:, order]
        x = np.broadcast_to(x, y.shape)
    else:
        x = np.broadcast_to(x, y.shape)
        if not np.all(x[:, 1:] >= x[:, :-1]):
            order = np.argsort(x, axis=-1, kind="stable")
            x = np.take_along_axis(x, order, -1)
            y = np.take_along_axis(y, order, -1)
    bad = ~(np.isfinite(x) & np.isfinite(y))
    if bad.any():
        return np.where(bad, np.nan, x), np.where(bad, np.nan, y)
    return x, y


def _quantiles(y, *qs):
    """Row quantiles of ``y`` ignoring NaNs (nearest rank; fast, unlike
    ``np.nanpercentile`` which loops over rows when NaNs are present)."""
    ys = np.sort(y, axis=-1)            # NaNs sort last
    n = np.isfinite(y).sum(-1)
    out = []
    for q in qs:
        k = np.clip(np.rint(q * (n - 1)).astype(np.intp), 0, None)
        v = np.take_along_axis(ys, np.minimum(k, y.shape[-1] - 1)[..., None],
                               -1)[..., 0]
        out.append(np.where(n > 0, v, np.nan))
    return out


def _masked_trapezoid(x, y):
    """Trapezoid integral along the last axis; masked (NaN) points count as
    zero and NaN coordinates are bridged by the previous finite one."""
    if not np.isfinite(x).all():
        ok = np.isfinite(x)
        idx = np.where(ok, np.arange(x.shape[-1]), 0)
        np.maximum.accumulate(idx, axis=-1, out=idx)
        x = np.take_along_axis(np.where(ok, x, 0.0), idx, -1)
    y = np.where(np.isfinite(y), y, 0.0)
    return (0.5 * (y[..., 1:] + y[..., :-1]) * np.diff(x, axis=-1)).sum(-1)


def _peak_guess(xdata, ydata, shape):
    """amplitude, center, width, offset of a single peak (or dip)."""
    x, y = _sorted_1d(xdata, ydata)
    with np.errstate(all="ignore"), _quiet():
        lo, med, hi = _quantiles(y, 0.1, 0.5, 0.9)
        has_nan = np.isnan(y).any()
        kmax = np.argmax(np.where(np.isnan(y), -np.inf, y) if has_nan else y,
                         -1)[:, None]
        kmin = np.argmin(np.where(np.isnan(y), np.inf, y) if has_nan else y,
                         -1)[:, None]
        ymax = np.take_along_axis(y, kmax, -1)[:, 0]
        ymin = np.take_along_axis(y, kmin, -1)[:, 0]
        dip = (med - ymin) > (ymax - med)
        offset = np.where(dip, hi, lo)
        amp = np.where(dip, ymin, ymax) - offset
        k = np.where(dip[:, None], kmin, kmax)
        center = np.take_along_axis(x, k, -1)[:, 0]
        area = _masked_trapezoid(x, y - offset[:, None])
        width = area / (amp * shape)
        xs = x[0] if x.strides[0] == 0 else x
        span = np.nanmax(xs, -1) - np.nanmin(xs, -1)
        width = np.where(np.isfinite(width) & (width > 0), width, span / 10)
        width = np.clip(width, span / (10 * max(x.shape[-1], 1)), span)
    return _stack_guess(amp, center, width, offset)


class _quiet:
    """Silence NumPy's all-NaN RuntimeWarnings inside a guess."""

    def __enter__(self):
        import warnings
        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def _stack_guess(*cols):
    out = np.stack([np.asarray(c, dtype=float) for c in cols], axis=-1)
    return np.where(np.isfinite(out), out, 1.0)


def gaussian_guess(xdata, ydata):
    """Offset from the 10th percentile, amplitude from the extremum, center
    at the extremum, sigma from the area (``area = amplitude sigma
    sqrt(2 pi)``)."""
    return _peak_guess(xdata, ydata, math.sqrt(2 * math.pi))


def lorentzian_guess(xdata, ydata):
    """As :func:`gaussian_guess`; ``gamma`` from ``area = pi amplitude
    gamma``."""
    return _peak_guess(xdata, ydata, math.pi)


def gaussian2d_guess(xdata, ydata):
    """Offset from the 10th percentile, amplitude from the maximum, center
    from the centroid of the excess, sigma from its volume
    (``volume = 2 pi amplitude sigma**2``, pixel area from the grid)."""
    y = np.asarray(ydata, dtype=float)
    x = np.broadcast_to(np.asarray(xdata, dtype=float), y.shape + (2,))
    ok = np.isfinite(y) & np.isfinite(x).all(-1)
    y = np.where(ok, y, np.nan)
    with np.errstate(all="ignore"), _quiet():
        offset, = _quantiles(y, 0.1)
        amp = np.nanmax(y, axis=-1) - offset
        ex = np.where(ok, np.clip(y - offset[:, None], 0, None), 0.0)
        tot = ex.sum(-1)
        xs = np.where(ok[..., None], x, 0.0)
        cx = (ex * xs[..., 0]).sum(-1) / tot
        cy = (ex * xs[..., 1]).sum(-1) / tot
        # pixel area: product of the smallest non-zero coordinate spacings
        px = []
        for d in range(2):
            u = np.unique(np.asarray(xdata, dtype=float)[..., d])
            u = u[np.isfinite(u)]
            step = np.diff(u)
            step = step[step > 0]
            px.append(step.min() if step.size else 1.0)
        sigma = np.sqrt(tot * px[0] * px[1] / (2 * np.pi * amp))
        k = np.nanargmax(np.where(ok, y, -np.inf), -1)
        xk = np.take_along_axis(x, k[:, None, None], -2)[:, 0, :]
        cx = np.where(np.isfinite(cx), cx, xk[:, 0])
        cy = np.where(np.isfinite(cy), cy, xk[:, 1])
        sigma = np.where(np.isfinite(sigma) & (sigma > 0), sigma, px[0])
    return _stack_guess(amp, cx, cy, sigma, offset)


def _decay_guess(xdata, ydata):
    x, y = _sorted_1d(xdata, ydata)
    n = x.shape[-1]
    q = max(n // 8, 1)
    with np.errstate(all="ignore"), _quiet():
        offset = np.nanmean(y[:, n - q:], -1)
        start = np.nanmean(y[:, :q], -1)
        x0 = np.nanmean(x[:, :q], -1)
        amp0 = start - offset
        # time at which the excess has fallen to 1/e of its start
        excess = (y - offset[:, None]) / amp0[:, None]
        below = np.where(np.isfinite(excess), excess < math.exp(-1.0), False)
        k = np.argmax(below, -1)
        k = np.where(below.any(-1), k, n - 1)
        xe = np.take_along_axis(x, k[:, None], -1)[:, 0]
        span = np.nanmax(x, -1) - np.nanmin(x, -1)
        tau = xe - x0
        tau = np.where(np.isfinite(tau) & (tau > 0), tau, span / 3)
        amp = amp0 * np.exp(x0 / tau)       # referred back to x = 0
        amp = np.where(np.isfinite(amp), amp, amp0)
    return amp, tau, offset


def exponential_guess(xdata, ydata):
    """Offset from the last eighth of the points, tau from the 1/e crossing
    of the excess, amplitude extrapolated to ``x = 0``."""
    amp, tau, offset = _decay_guess(xdata, ydata)
    return _stack_guess(amp, tau, offset)


def double_exponential_guess(xdata, ydata):
    """The single-exponential guess split into a fast (``tau/3``) and a slow
    (``3 tau``) component of half the amplitude each. (An exponential-peeling
    guess was tried: closer in ``chi2``, but Adam then converged more often
    to a worse local minimum.)"""
    amp, tau, offset = _decay_guess(xdata, ydata)
    return _stack_guess(amp / 2, tau / 3, amp / 2, tau * 3, offset)


def logistic_guess(xdata, ydata):
    """Offset and amplitude from the first and last eighths, center at the
    half-way crossing, width a tenth of the x span (signed)."""
    x, y = _sorted_1d(xdata, ydata)
    n = x.shape[-1]
    q = max(n // 8, 1)
    with np.errstate(all="ignore"), _quiet():
        first = np.nanmean(y[:, :q], -1)
        last = np.nanmean(y[:, n - q:], -1)
        offset = np.minimum(first, last)
        amp = np.abs(last - first)
        rising = last >= first
        width = (np.nanmax(x, -1) - np.nanmin(x, -1)) / 10
        width = np.where(rising, width, -width)
        half = offset + amp / 2
        above = (y > half[:, None]) == rising[:, None]
        cross = np.where(np.isfinite(y), above, False)
        k = np.argmax(cross, -1)
        center = np.take_along_axis(x, k[:, None], -1)[:, 0]
    return _stack_guess(amp, center, width, offset)


def _weighted_lstsq(basis, y):
    """Least squares of every row of y (NaN masked) on basis (..., n, k):
    batched normal equations on unit-norm columns (a tiny ridge keeps
    rank-deficient rows finite)."""
    ok = np.isfinite(y) & np.isfinite(basis).all(-1)
    b = np.where(ok[..., None], basis, 0.0)
    yy = np.where(ok, y, 0.0)
    norm = np.sqrt((b * b).sum(-2))
    norm = np.where(norm > 0, norm, 1.0)
    b = b / norm[..., None, :]
    k = basis.shape[-1]
    ata = np.einsum("...nk,...nl->...kl", b, b) + 1e-13 * np.eye(k)
    aty = np.einsum("...nk,...n->...k", b, yy)
    with np.errstate(all="ignore"):
        sol = np.linalg.solve(ata, aty[..., None])[..., 0]
    return sol / norm


def _polynomial_guess(degree):
    def guess(xdata, ydata):
        y = np.asarray(ydata, dtype=float)
        x = np.broadcast_to(np.asarray(xdata, dtype=float), y.shape)
        basis = x[..., None] ** np.arange(degree + 1)
        return _stack_guess(*np.moveaxis(_weighted_lstsq(basis, y), -1, 0))
    guess.__doc__ = "Linear least squares (the exact solution)."
    return guess


def linear_guess(xdata, ydata):
    """Linear least squares (the exact solution)."""
    c = _polynomial_guess(1)(xdata, ydata)
    return c[..., ::-1].copy()


def power_law_guess(xdata, ydata):
    """Straight-line fit of ``log|y|`` against ``log x`` (points with
    ``x > 0`` and ``y != 0``); the sign of the amplitude from the data."""
    y = np.asarray(ydata, dtype=float)
    x = np.broadcast_to(np.asarray(xdata, dtype=float), y.shape)
    with np.errstate(all="ignore"), _quiet():
        ok = (x > 0) & np.isfinite(y) & (y != 0)
        lx = np.where(ok, np.log(np.where(ok, x, 1.0)), np.nan)
        ly = np.where(ok, np.log(np.abs(np.where(ok, y, 1.0))), np.nan)
        slope, intercept = np.moveaxis(
            _weighted_lstsq(np.stack([lx, np.ones_like(lx)], -1), ly), -1, 0)
        sign = np.sign(_quantiles(np.where(ok, y, np.nan), 0.5)[0])
        sign = np.where(sign == 0, 1.0, sign)
    return _stack_guess(sign * np.exp(intercept), slope)


# --------------------------------------------------------------------------
# Model objects
# --------------------------------------------------------------------------

def _py(func):
    """The plain Python function behind a Numba dispatcher, or func itself."""
    return getattr(func, "py_func", func)


def _code_digest(*funcs):
    h = hashlib.sha1()
    for f in funcs:
        if f is None:
            continue
        code = _py(f).__code__
        h.update(marshal.dumps(code))
    return h.hexdigest()[:12]


class Model:
    """A model for :func:`adamsci.fit_batch`: value, gradient and names.

    Parameters
    ----------
    func : callable
        ``func(x, p) -> float``: plain Python that Numba can compile for one
        point ``x`` (a float; for ``xdim > 1`` a 1-D array of coordinates)
        and the parameter array ``p``. A ``numba.njit`` function is accepted
        (its ``py_func`` is recompiled for each target).
    grad : callable, optional
        ``grad(x, p, out) -> float``: writes ``df/dp[j]`` into ``out[j]`` and
        returns the model value. Without it the kernels use central finite
        differences, step ``h_j = eps**(1/3) * max(|p_j|, 1)``.
    n_params : int, optional
        Number of parameters (default: ``len(param_names)``).
    param_names : sequence of str, optional
        Default ``("p0", "p1", ...)``.
    name : str, optional
        Default: the function's ``__name__``.
    guess : callable, optional
        ``guess(xdata, ydata) -> (n_fits, n_params)`` starting values used
        when :func:`adamsci.fit_batch` gets ``p0=None``.
    xdim : int, default 1
        Number of coordinates of a point (2 for images: ``xdata`` then has
        shape ``(..., n_points, 2)``).
    x_scale : {"whiten", "jac"}, default "whiten"
        The parameter scaling :func:`adamsci.fit_batch` uses for this model
        when its ``x_scale`` is not given.

    Examples
    --------
    >>> import math
    >>> from adamsci.models import Model
    >>> def decay(x, p):
    ...     return p[0] * math.exp(-p[1] * x)
    >>> m = Model(decay, param_names=("amplitude", "rate"))
    >>> m
    Model('decay', param_names=('amplitude', 'rate'), grad=finite differences)
    >>> m.n_params
    2
    """

    def __init__(self, func, grad=None, *, n_params=None, param_names=None,
                 name=None, guess=None, xdim=1, x_scale="whiten"):
        if not callable(func):
            raise TypeError(f"func must be a callable func(x, p), got "
                            f"{func!r}")
        if grad is not None and not callable(grad):
            raise TypeError(f"grad must be a callable grad(x, p, out) or "
                            f"None, got {grad!r}")
        if guess is not None and not callable(guess):
            raise TypeError(f"guess must be a callable guess(xdata, ydata) "
                            f"or None, got {guess!r}")
        if param_names is not None:
            param_names = tuple(str(n) for n in param_names)
            if len(set(param_names)) != len(param_names):
                raise ValueError(f"param_names must be unique, got "
                                 f"{param_names}")
        if n_params is None:
            if param_names is None:
                raise TypeError("give n_params or param_names")
            n_params = len(param_names)
        if isinstance(n_params, bool) or not isinstance(
                n_params, (int, np.integer)) or n_params < 1:
            raise ValueError(f"n_params must be an int >= 1, got "
                             f"{n_params!r}")
        n_params = int(n_params)
        if param_names is None:
            param_names = tuple(f"p{j}" for j in range(n_params))
        if len(param_names) != n_params:
            raise ValueError(f"param_names has {len(param_names)} names but "
                             f"n_params is {n_params}")
        if isinstance(xdim, bool) or not isinstance(
                xdim, (int, np.integer)) or xdim < 1:
            raise ValueError(f"xdim must be an int >= 1, got {xdim!r}")
        if x_scale not in ("whiten", "jac"):
            raise ValueError(f"x_scale must be 'whiten' or 'jac', got "
                             f"{x_scale!r}")
        self.value = _py(func)
        self.grad = None if grad is None else _py(grad)
        self.n_params = n_params
        self.param_names = param_names
        self.name = str(name if name is not None
                        else getattr(self.value, "__name__", "model"))
        self.guess = guess
        self.xdim = int(xdim)
        self.x_scale = x_scale
        self._builtin = None        # (factory, args) for built-in models
        self._compiled = {}         # per-process kernels, never pickled

    @property
    def has_grad(self):
        """True when the model has an analytic gradient."""
        return self.grad is not None

    @property
    def builtin(self):
        """True for the models defined in this module (kernels cached on
        disk)."""
        return self._builtin is not None

    def digest(self):
        """A short hash of the model's code (part of the kernel names)."""
        return _code_digest(self.value, self.grad)

    def __repr__(self):
        kind = "analytic" if self.has_grad else "finite differences"
        return (f"Model({self.name!r}, param_names={self.param_names!r}, "
                f"grad={kind})")

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_compiled"] = {}
        return state

    def __reduce_ex__(self, protocol):
        if self._builtin is not None:       # built-ins pickle by name
            return self._builtin
        return super().__reduce_ex__(protocol)


def _builtin(name, value, grad, param_names, guess, xdim=1,
             x_scale="whiten"):
    m = Model(value, grad, param_names=param_names, name=name, guess=guess,
              xdim=xdim, x_scale=x_scale)
    m._builtin = (_get_builtin, (name,))
    return m


def _get_builtin(name):
    return BUILTIN[name]


gaussian = _builtin("gaussian", gaussian_value, gaussian_grad,
                    ("amplitude", "center", "sigma", "offset"),
                    gaussian_guess)
gaussian2d = _builtin("gaussian2d", gaussian2d_value, gaussian2d_grad,
                      ("amplitude", "center_x", "center_y", "sigma",
                       "offset"), gaussian2d_guess, xdim=2)
lorentzian = _builtin("lorentzian", lorentzian_value, lorentzian_grad,
                      ("amplitude", "center", "gamma", "offset"),
                      lorentzian_guess)
exponential = _builtin("exponential", exponential_value, exponential_grad,
                       ("amplitude", "tau", "offset"), exponential_guess)
double_exponential = _builtin(
    "double_exponential", double_exponential_value, double_exponential_grad,
    ("amplitude1", "tau1", "amplitude2", "tau2", "offset"),
    double_exponential_guess, x_scale="jac")
logistic = _builtin("logistic", logistic_value, logistic_grad,
                    ("amplitude", "center", "width", "offset"),
                    logistic_guess)
power_law = _builtin("power_law", power_law_value, power_law_grad,
                     ("amplitude", "exponent"), power_law_guess)
linear = _builtin("linear", linear_value, linear_grad,
                  ("slope", "intercept"), linear_guess)

#: The built-in models by name (``polynomial`` is made per degree).
BUILTIN = {m.name: m for m in (gaussian, gaussian2d, lorentzian, exponential,
                               double_exponential, logistic, power_law,
                               linear)}
_POLYNOMIALS = {}


def polynomial(degree):
    """A polynomial of the given degree, ``c0 + c1 x + c2 x**2 + ...``

    Parameters
    ----------
    degree : int
        ``>= 0``; the model has ``degree + 1`` parameters ``c0 ... c_degree``.

    Returns
    -------
    Model
        The same object for the same degree.

    Examples
    --------
    >>> from adamsci import models
    >>> models.polynomial(3).name
    'polynomial3'
    """
    if isinstance(degree, bool) or not isinstance(
            degree, (int, np.integer)) or not 0 <= degree <= 32:
        raise ValueError(f"degree must be an int in [0, 32], got {degree!r}")
    degree = int(degree)
    if degree not in _POLYNOMIALS:
        m = Model(polynomial_value, polynomial_grad,
                  param_names=tuple(f"c{j}" for j in range(degree + 1)),
                  name=f"polynomial{degree}",
                  guess=_polynomial_guess(degree))
        m._builtin = (polynomial, (degree,))
        _POLYNOMIALS[degree] = m
    return _POLYNOMIALS[degree]


def pixel_grid(nx, ny=None, dtype=np.float64):
    """Pixel-centre coordinates of an ``ny x nx`` image, row-major.

    Returns an array of shape ``(ny * nx, 2)`` holding ``(x, y)`` with
    ``x = k % nx`` and ``y = k // nx`` for point ``k`` (Gpufit's convention):
    the ``xdata`` of :data:`gaussian2d` for images flattened with
    ``image.reshape(n_fits, -1)``.

    Examples
    --------
    >>> from adamsci.models import pixel_grid
    >>> pixel_grid(3, 2).tolist()
    [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]
    """
    ny = nx if ny is None else ny
    yy, xx = np.meshgrid(np.arange(ny, dtype=dtype),
                         np.arange(nx, dtype=dtype), indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=-1)


_PLAIN = weakref.WeakKeyDictionary()


def as_model(model, n_params=None, xdim=1, param_names=None):
    """``model`` as a :class:`Model`.

    A plain function is wrapped once per ``(n_params, xdim, param_names)``
    and the wrapper reused, so that its compiled kernels are too. ``n_params``
    (from ``p0``) or ``param_names`` is needed for a plain function.
    """
    if isinstance(model, Model):
        if n_params is not None and n_params != model.n_params:
            raise ValueError(f"p0 has {n_params} parameters but model "
                             f"{model.name!r} has {model.n_params} "
                             f"({', '.join(model.param_names)})")
        return model
    if isinstance(model, str):
        if model in BUILTIN:
            return BUILTIN[model]
        if model.startswith("polynomial") and model[10:].isdigit():
            return polynomial(int(model[10:]))
        raise ValueError(f"model {model!r} is not a built-in model; choose "
                         f"from {sorted(BUILTIN)} or 'polynomialN'")
    if callable(model):
        if n_params is None and param_names is None:
            raise TypeError(f"p0 is required for a plain function model "
                            f"({getattr(model, '__name__', model)!r}): it "
                            f"gives the number of parameters")
        names = None if param_names is None else tuple(param_names)
        key = (n_params if names is None else len(names), int(xdim), names)
        func = _py(model)
        try:
            cache = _PLAIN.setdefault(func, {})
        except TypeError:        # not weak-referenceable: no reuse
            cache = {}
        if key not in cache:
            cache[key] = Model(func, n_params=key[0], param_names=names,
                               xdim=xdim)
        return cache[key]
    raise TypeError(f"model must be a Model, a built-in model name or a "
                    f"callable model(x, p), got {model!r}")
