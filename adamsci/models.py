r"""Models for the fitters: built-ins, and :class:`.Model` for your own.

A model is a function ``f(x, *params)`` as :func:`scipy.optimize.curve_fit`
takes it: vectorised over the points (the last axis of ``x``), parameter
names from its signature. :func:`adamsci.curve_fit`, :func:`adamsci.fit_batch`
and ``DataArray.adamsci.curvefit`` take such a function unchanged and compile
it with :mod:`adamsci.compiler` (exact derivatives, CPU and CUDA). A
:class:`Model` adds what a function cannot carry: a ``guess`` of starting
values from the data, a default parameter scaling, a name.

Built-in models (``Model`` instances, callable as functions; each has a
vectorised ``guess(xdata, ydata)``):

* ``gaussian(x, amplitude, center, sigma, offset)``:
  ``amplitude * exp(-(x - center)**2 / (2 sigma**2)) + offset``
* ``gaussian2d(x, amplitude, center_x, center_y, sigma, offset)`` (Gpufit's
  ``GAUSS_2D``; ``x`` holds the coordinates ``(x, y)`` of the points, shape
  ``(2, n_points)``: see :func:`pixel_grid`)
* ``lorentzian(x, amplitude, center, gamma, offset)``:
  ``amplitude / (1 + ((x - center) / gamma)**2) + offset`` (``gamma`` = half
  width at half maximum)
* ``exponential(x, amplitude, tau, offset)``: ``amplitude * exp(-x / tau) +
  offset``
* ``double_exponential(x, amplitude1, tau1, amplitude2, tau2, offset)``
* ``logistic(x, amplitude, center, width, offset)``: ``amplitude / (1 +
  exp(-(x - center) / width)) + offset``
* ``power_law(x, amplitude, exponent)``: ``amplitude * x**exponent`` (``x >
  0``)
* ``polynomial(degree)``: ``c0 + c1 x + ... + c_degree x**degree``
* ``linear(x, slope, intercept)``

Examples
--------
>>> import numpy as np
>>> from adamsci import models
>>> models.gaussian
Model('gaussian', param_names=('amplitude', 'center', 'sigma', 'offset'))
>>> float(models.gaussian(1.0, 2.0, 0.0, 1.0, 0.5))     # a function too
1.7130613194252668
>>> models.polynomial(2).param_names
('c0', 'c1', 'c2')
"""
import inspect
import linecache
import math

import numpy as np

__all__ = ["Model", "ModelCompileError", "gaussian", "gaussian2d",
           "lorentzian", "exponential", "double_exponential", "logistic",
           "power_law", "polynomial", "linear", "pixel_grid", "BUILTIN",
           "as_model"]

from .compiler import ModelCompileError  # noqa: E402


# --------------------------------------------------------------------------
# The built-in models: plain functions f(x, *params), NumPy-vectorised
# --------------------------------------------------------------------------
def _gaussian(x, amplitude, center, sigma, offset):
    return amplitude * np.exp(-0.5 * ((x - center) / sigma) ** 2) + offset


def _gaussian2d(x, amplitude, center_x, center_y, sigma, offset):
    u, v = x
    r2 = ((u - center_x) / sigma) ** 2 + ((v - center_y) / sigma) ** 2
    return amplitude * np.exp(-0.5 * r2) + offset


def _lorentzian(x, amplitude, center, gamma, offset):
    return amplitude / (1.0 + ((x - center) / gamma) ** 2) + offset


def _exponential(x, amplitude, tau, offset):
    return amplitude * np.exp(-x / tau) + offset


def _double_exponential(x, amplitude1, tau1, amplitude2, tau2, offset):
    return amplitude1 * np.exp(-x / tau1) + amplitude2 * np.exp(-x / tau2) \
        + offset


def _logistic(x, amplitude, center, width, offset):
    return amplitude / (1.0 + np.exp(-(x - center) / width)) + offset


def _power_law(x, amplitude, exponent):
    return amplitude * x ** exponent


def _linear(x, slope, intercept):
    return slope * x + intercept


# --------------------------------------------------------------------------
# Starting values from the data (NumPy, vectorised over fits, NaN-aware).
# xdata: (n_points,) or (n_fits, n_points) (2-D models: (2, n_points) or
# (n_fits, 2, n_points)); ydata: (n_fits, n_points), NaN where masked.
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
    xc = np.moveaxis(np.asarray(xdata, dtype=float), -2, -1)  # (..., M, 2)
    x = np.broadcast_to(xc, y.shape + (2,))
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
            u = np.unique(xc[..., d])
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


class Model:
    """A model ``f(x, *params)`` with what a function cannot carry.

    Parameters
    ----------
    func : callable
        ``func(x, *params)``, vectorised over the points (the last axis of
        ``x``), as for :func:`scipy.optimize.curve_fit`; its body must be
        elementwise for the compiled fitters (see :mod:`adamsci.compiler`).
        A ``numba.njit`` function is accepted (its ``py_func`` is used).
    param_names : sequence of str, optional
        Default: the names of ``func``'s parameters after ``x``; required
        when ``func`` takes ``*params``.
    name : str, optional
        Default: the function's ``__name__``.
    guess : callable, optional
        ``guess(xdata, ydata) -> (n_fits, n_params)`` starting values, used
        by :func:`adamsci.fit_batch` with ``p0=None``.
    x_scale : {"whiten", "jac"}, default "whiten"
        The parameter scaling :func:`adamsci.fit_batch` uses by default.
    jac : callable, optional
        ``jac(x, *params) -> (n_points, n_params)``, scipy's form: used by
        :func:`adamsci.curve_fit`'s NumPy path; the compiled fitters use the
        compiler's exact derivatives (and check ``jac`` against them).

    Examples
    --------
    >>> import numpy as np
    >>> from adamsci.models import Model
    >>> def decay(t, amplitude, rate):
    ...     return amplitude * np.exp(-rate * t)
    >>> m = Model(decay)
    >>> m
    Model('decay', param_names=('amplitude', 'rate'))
    >>> m.n_params, m.xdim
    (2, 0)
    """

    def __init__(self, func, *, param_names=None, name=None, guess=None,
                 x_scale="whiten", jac=None):
        if isinstance(func, Model):
            func = func.func
        if not callable(func):
            raise TypeError(f"func must be a callable func(x, *params), got "
                            f"{func!r}")
        for what, f in (("guess", guess), ("jac", jac)):
            if f is not None and not callable(f):
                raise TypeError(f"{what} must be callable or None, got "
                                f"{f!r}")
        if x_scale not in ("whiten", "jac"):
            raise ValueError(f"x_scale must be 'whiten' or 'jac', got "
                             f"{x_scale!r}")
        self.func = _py(func)
        self.jac = None if jac is None else _py(jac)
        self.param_names = _param_names(self.func, param_names)
        self._given_names = None if param_names is None else \
            self.param_names
        self.name = str(name if name is not None
                        else getattr(self.func, "__name__", "model"))
        self.guess = guess
        self.x_scale = x_scale
        self._builtin = None        # (factory, args) for built-in models
        self._compiled = None
        self.__signature__ = _signature(self.func, self.param_names)

    @property
    def n_params(self):
        """The number of parameters, ``len(param_names)``."""
        return len(self.param_names)

    @property
    def compiled(self):
        """The :class:`adamsci.compiler.CompiledModel` (compiled on first
        use; :class:`adamsci.compiler.ModelCompileError` when the body does
        not compile)."""
        if self._compiled is None:
            from .compiler import compile_model
            self._compiled = compile_model(self.func, self._given_names)
        return self._compiled

    @property
    def xdim(self):
        """Coordinates of a point: 0 when ``x`` is one coordinate, ``k``
        when the model reads ``x[0] ... x[k-1]``."""
        return self.compiled.xdim

    @property
    def builtin(self):
        """True for the models defined in this module."""
        return self._builtin is not None

    def __call__(self, x, *params):
        return self.func(x, *params)

    def __repr__(self):
        return f"Model({self.name!r}, param_names={self.param_names!r})"

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_compiled"] = None
        state.pop("__signature__", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__signature__ = _signature(self.func, self.param_names)

    def __reduce_ex__(self, protocol):
        if self._builtin is not None:       # built-ins pickle by name
            return self._builtin
        return super().__reduce_ex__(protocol)


def _param_names(func, given):
    """``func``'s parameter names after ``x`` (xarray's rule), or ``given``
    (required for ``*params``, checked otherwise)."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        sig = None
    names = None
    if sig is not None:
        params = list(sig.parameters.values())
        if not any(p.kind == p.VAR_POSITIONAL for p in params):
            names = [p.name for p in params if p.kind in (
                p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][1:]
    if given is not None:
        given = tuple(str(n) for n in given)
        if len(set(given)) != len(given):
            raise ValueError(f"param_names must be unique, got {given}")
        if names is not None and len(names) != len(given):
            raise ValueError(f"param_names has {len(given)} names but the "
                             f"model takes {len(names)} parameters "
                             f"{tuple(names)}")
        return given
    if names is None:
        raise ValueError(
            f"param_names must be provided because the model "
            f"{getattr(func, '__name__', func)!r} takes variable length "
            f"arguments (*params)")
    if not names:
        raise ValueError(f"the model {getattr(func, '__name__', func)!r} "
                         f"has no parameters after x")
    return tuple(names)


def _signature(func, names):
    """``(x, name1, name2, ...)``: what ``inspect.signature`` reports for a
    Model (curve_fit counts the parameters from it)."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    try:
        x = next(iter(inspect.signature(func).parameters))
    except (TypeError, ValueError, StopIteration):
        x = "x"
    return inspect.Signature([inspect.Parameter(n, kind)
                              for n in (x,) + tuple(names)])


def _builtin(name, func, guess, x_scale="whiten"):
    m = Model(func, name=name, guess=guess, x_scale=x_scale)
    m._builtin = (_get_builtin, (name,))
    return m


def _get_builtin(name):
    return BUILTIN[name]


#: Gaussian peak,
#: ``amplitude * exp(-(x - center)**2 / (2 sigma**2)) + offset``.
#:
#: A built-in :class:`Model` (callable as a function; ``.guess(xdata,
#: ydata)`` gives starting values from the data).
#:
#: Parameters
#: ----------
#: x : array_like
#:     The points (any shape: the model is elementwise).
#: amplitude : float
#:     Height of the peak above ``offset`` (negative: a dip).
#: center : float
#:     Position of the maximum.
#: sigma : float
#:     Standard deviation (width); FWHM = 2.3548 sigma.
#: offset : float
#:     Constant background.
gaussian = _builtin("gaussian", _gaussian, gaussian_guess)
#: Round 2-D Gaussian spot (Gpufit's ``GAUSS_2D``).
#:
#: A built-in :class:`Model` (callable as a function; ``.guess(xdata,
#: ydata)`` gives starting values from the data).
#:
#: Parameters
#: ----------
#: x : array_like, shape (2, n_points)
#:     The coordinates ``(x, y)`` of the points: see :func:`pixel_grid`.
#: amplitude : float
#:     Height of the spot above ``offset``.
#: center_x, center_y : float
#:     Position of the maximum.
#: sigma : float
#:     Standard deviation, the same along both axes.
#: offset : float
#:     Constant background.
gaussian2d = _builtin("gaussian2d", _gaussian2d, gaussian2d_guess)
#: Lorentzian (Cauchy) peak,
#: ``amplitude / (1 + ((x - center) / gamma)**2) + offset``.
#:
#: A built-in :class:`Model` (callable as a function; ``.guess(xdata,
#: ydata)`` gives starting values from the data).
#:
#: Parameters
#: ----------
#: x : array_like
#:     The points (any shape: the model is elementwise).
#: amplitude : float
#:     Height of the peak above ``offset``.
#: center : float
#:     Position of the maximum.
#: gamma : float
#:     Half width at half maximum.
#: offset : float
#:     Constant background.
lorentzian = _builtin("lorentzian", _lorentzian, lorentzian_guess)
#: Exponential decay, ``amplitude * exp(-x / tau) + offset``.
#:
#: A built-in :class:`Model` (callable as a function; ``.guess(xdata,
#: ydata)`` gives starting values from the data).
#:
#: Parameters
#: ----------
#: x : array_like
#:     The points (any shape: the model is elementwise).
#: amplitude : float
#:     Value above ``offset`` at ``x = 0``.
#: tau : float
#:     Decay constant (1/e time), in the units of ``x``.
#: offset : float
#:     Constant background (the value as ``x -> inf``).
exponential = _builtin("exponential", _exponential, exponential_guess)
#: Two exponential decays, ``amplitude1 * exp(-x / tau1) +
#: amplitude2 * exp(-x / tau2) + offset``.
#:
#: A built-in :class:`Model` (callable as a function; ``.guess(xdata,
#: ydata)`` gives starting values from the data).
#:
#: Parameters
#: ----------
#: x : array_like
#:     The points (any shape: the model is elementwise).
#: amplitude1, amplitude2 : float
#:     Values of the two components at ``x = 0``.
#: tau1, tau2 : float
#:     Their decay constants (the guess puts the faster one first).
#: offset : float
#:     Constant background.
double_exponential = _builtin("double_exponential", _double_exponential,
                              double_exponential_guess, x_scale="jac")
#: Logistic step, ``amplitude / (1 + exp(-(x - center) / width)) + offset``.
#:
#: A built-in :class:`Model` (callable as a function; ``.guess(xdata,
#: ydata)`` gives starting values from the data).
#:
#: Parameters
#: ----------
#: x : array_like
#:     The points (any shape: the model is elementwise).
#: amplitude : float
#:     Height of the step.
#: center : float
#:     Position of the half-way point.
#: width : float
#:     Width of the step (negative: a falling step).
#: offset : float
#:     Value far below ``center`` (for ``width > 0``).
logistic = _builtin("logistic", _logistic, logistic_guess)
#: Power law, ``amplitude * x**exponent``.
#:
#: A built-in :class:`Model` (callable as a function; ``.guess(xdata,
#: ydata)`` gives starting values from the data).
#:
#: Parameters
#: ----------
#: x : array_like
#:     The points, ``x > 0``.
#: amplitude : float
#:     Value at ``x = 1``.
#: exponent : float
#:     The power.
power_law = _builtin("power_law", _power_law, power_law_guess)
#: Straight line, ``slope * x + intercept``.
#:
#: A built-in :class:`Model` (callable as a function; ``.guess(xdata,
#: ydata)`` gives starting values from the data).
#:
#: Parameters
#: ----------
#: x : array_like
#:     The points (any shape: the model is elementwise).
#: slope : float
#:     Change of the value per unit of ``x``.
#: intercept : float
#:     Value at ``x = 0``.
linear = _builtin("linear", _linear, linear_guess)

#: The built-in models by name (``polynomial`` is made per degree).
BUILTIN = {m.name: m for m in (gaussian, gaussian2d, lorentzian, exponential,
                               double_exponential, logistic, power_law,
                               linear)}
_POLYNOMIALS = {}


def _polynomial_function(degree):
    """``polynomial<degree>(x, c0, ..., c_degree)`` in Horner form, with its
    source registered in :mod:`linecache` (the compiler reads it there)."""
    names = [f"c{j}" for j in range(degree + 1)]
    body = names[-1]
    for c in reversed(names[:-1]):
        body = f"{c} + x * ({body})"
    name = f"polynomial{degree}"
    filename = f"<adamsci.models.{name}>"
    src = f"def {name}(x, {', '.join(names)}):\n    return {body}\n"
    linecache.cache[filename] = (len(src), None, src.splitlines(True),
                                 filename)
    namespace = {}
    exec(compile(src, filename, "exec"), namespace)
    return namespace[name]


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
    >>> float(models.polynomial(2)(2.0, 1.0, 0.0, 3.0))      # 1 + 3 x**2
    13.0
    """
    if isinstance(degree, bool) or not isinstance(
            degree, (int, np.integer)) or not 0 <= degree <= 32:
        raise ValueError(f"degree must be an int in [0, 32], got {degree!r}")
    degree = int(degree)
    if degree not in _POLYNOMIALS:
        m = Model(_polynomial_function(degree), name=f"polynomial{degree}",
                  guess=_polynomial_guess(degree))
        m._builtin = (polynomial, (degree,))
        _POLYNOMIALS[degree] = m
    return _POLYNOMIALS[degree]


def pixel_grid(nx, ny=None, dtype=np.float64):
    """Pixel-centre coordinates of an ``ny x nx`` image, row-major.

    Returns an array of shape ``(2, ny * nx)``: row 0 holds ``x = k % nx``,
    row 1 ``y = k // nx`` for point ``k`` (Gpufit's convention), the
    ``xdata`` of :data:`gaussian2d` for images flattened with
    ``image.reshape(n_fits, -1)`` (scipy's convention: coordinates first,
    points last).

    Parameters
    ----------
    nx : int
        Width of the image (pixels per row).
    ny : int, optional
        Height of the image (rows); default ``nx`` (a square image).
    dtype : dtype, default numpy.float64
        Dtype of the coordinates.

    Returns
    -------
    ndarray, shape (2, ny * nx)
        The ``x`` (column) and ``y`` (row) coordinate of every pixel.

    Examples
    --------
    >>> from adamsci.models import pixel_grid
    >>> pixel_grid(3, 2).tolist()
    [[0.0, 1.0, 2.0, 0.0, 1.0, 2.0], [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]]
    """
    ny = nx if ny is None else ny
    yy, xx = np.meshgrid(np.arange(ny, dtype=dtype),
                         np.arange(nx, dtype=dtype), indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()])


def as_model(model, param_names=None):
    """``model`` as a :class:`Model`.

    Parameters
    ----------
    model : Model, str or callable
        A Model (returned as it is), a built-in's name (``"gaussian"``,
        ``"polynomial3"``) or a function ``f(x, *params)`` (wrapped once
        per function and ``param_names``, so that its compiled kernels are
        reused).
    param_names : sequence of str, optional
        The parameters' names; default: from the function's signature.
        Required for a function that takes ``*params``; for a Model they
        must be its own.

    Returns
    -------
    Model

    Raises
    ------
    ValueError
        An unknown built-in name, or ``param_names`` that do not fit.
    TypeError
        ``model`` is none of the above.

    Examples
    --------
    >>> from adamsci import models
    >>> models.as_model("gaussian") is models.gaussian
    True
    >>> models.as_model(lambda t, a, k: a * t ** k).param_names
    ('a', 'k')
    """
    if isinstance(model, Model):
        if param_names is not None and tuple(param_names) != \
                model.param_names:
            raise ValueError(f"param_names {tuple(param_names)} differ from "
                             f"model {model.name!r}'s {model.param_names}")
        return model
    if isinstance(model, str):
        if model in BUILTIN:
            return BUILTIN[model]
        if model.startswith("polynomial") and model[10:].isdigit():
            return polynomial(int(model[10:]))
        raise ValueError(f"model {model!r} is not a built-in model; choose "
                         f"from {sorted(BUILTIN)} or 'polynomialN'")
    if callable(model):
        func = _py(model)
        key = None if param_names is None else tuple(param_names)
        cache = getattr(func, "__adamsci_models__", None)
        if cache is None:
            cache = {}
            try:
                func.__adamsci_models__ = cache
            except (AttributeError, TypeError):
                pass
        if key not in cache:
            cache[key] = Model(func, param_names=key)
        return cache[key]
    raise TypeError(f"model must be a Model, a built-in model name or a "
                    f"function f(x, *params), got {model!r}")
