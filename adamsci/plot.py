"""Matplotlib views of a run history (``res.history``).

matplotlib is an optional dependency (``pip install adamsci[plot]``); it is
imported when a function here is first called, not with this module. Each
function draws on ``ax`` (default: a new figure) and returns the Axes, so
views compose::

    ax = adamsci.plot.convergence(res.history)
    adamsci.plot.convergence(other.history, ax=ax, label="other run")

Examples
--------
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> import numpy as np, scipy.optimize, adamsci
>>> from adamsci import plot
>>> res = scipy.optimize.minimize(
...     scipy.optimize.rosen, [-1.0, 1.5], jac=scipy.optimize.rosen_der,
...     method=adamsci.adam,
...     options={"learning_rate": 0.05, "maxiter": 300, "record": True,
...              "param_names": ["a", "b"]})
>>> ax = plot.convergence(res.history)
>>> ax.get_yscale(), ax.get_xlabel()
('log', 'iteration')
>>> ax = plot.path2d(res.history, fun=scipy.optimize.rosen)
>>> ax.get_xlabel(), ax.get_ylabel()
('a', 'b')
"""
import numpy as np

__all__ = ["convergence", "trajectories", "path2d", "smooth"]


def _axes(ax):
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt
    _, ax = plt.subplots()
    return ax


def smooth(values, window):
    """Bias-corrected exponential moving average over ``window`` points.

    The weight of a point decays as ``(1 - 2 / (window + 1)) ** age``; NaNs
    are skipped (they do not enter the average). ``window <= 1`` returns a
    copy.

    Parameters
    ----------
    values : array_like, 1-D
        The series to smooth (a loss per iteration, say); converted to
        float64.
    window : float
        The span of the average in points, as pandas' ``ewm(span=...)``:
        decay ``1 - 2 / (window + 1)``. ``window <= 1``: no smoothing.

    Returns
    -------
    ndarray of float64
        The smoothed series, of the same length; NaN until the first
        point that is not NaN.

    Examples
    --------
    >>> from adamsci.plot import smooth
    >>> smooth([1.0, 1.0, 4.0], 3).tolist()
    [1.0, 1.0, 2.7142857142857144]
    """
    y = np.asarray(values, dtype=np.float64)
    if window <= 1:
        return y.copy()
    decay = 1.0 - 2.0 / (window + 1.0)
    out = np.empty_like(y)
    s = w = 0.0
    for i, v in enumerate(y):
        if v == v:
            s = decay * s + (1.0 - decay) * v
            w = decay * w + (1.0 - decay)
        out[i] = s / w if w else np.nan
    return out


def _xaxis(history, x):
    it = history["iteration"].values
    if x == "iteration":
        return it, "iteration"
    if x == "epoch":
        label = "epoch (passes over the data)"
        nb = history.attrs.get("objective_n_batches")
        if isinstance(nb, (int, np.integer)) and nb > 0:
            # one batch per iteration: a fractional epoch axis
            return it / float(nb), label
        if "epoch" in history.coords:
            return history["epoch"].values, label
        raise ValueError("x='epoch' needs the history of a "
                         "MinibatchObjective run (no epoch coordinate)")
    raise ValueError(f"x must be 'iteration' or 'epoch', got {x!r}")


def _method(history):
    m = history.attrs.get("method")
    return f"adamsci.{m}" if m else "adamsci"


def _var_label(var, default):
    """``long_name [units]`` of a variable (units left out when "1")."""
    name = var.attrs.get("long_name", default)
    units = var.attrs.get("units")
    return f"{name} [{units}]" if units and units != "1" else name


def _record_step(history):
    """Iterations between records (1 when every iteration is recorded)."""
    it = history["iteration"].values
    if it.size < 2:
        return 1
    return max(int(np.median(np.diff(it))), 1)


def _title(ax, title, default):
    """``title=None``: the default unless the Axes has one (composed views);
    a str: that; False or "": none."""
    if title is None:
        if not ax.get_title():
            ax.set_title(default)
    elif title:
        ax.set_title(str(title))


def _legend(ax, n, handles=None, loc="best"):
    """A legend that keeps off the data: inside at ``loc`` (``best``: where
    matplotlib finds room) on a nearly opaque frame, outside on the right
    when it is long."""
    kw = {} if handles is None else {"handles": handles}
    if n > 8:
        return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0),
                         borderaxespad=0.0, ncol=1 + (n - 1) // 20,
                         fontsize="small", **kw)
    return ax.legend(loc=loc, framealpha=0.9, **kw)


def _emptiest_corner(ax, x, y):
    """The corner of ``ax`` farthest from the points ``(x, y)`` (in axes
    fractions): where a legend covers none of them."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    u = (np.asarray(x, float) - x0) / (x1 - x0)
    v = (np.asarray(y, float) - y0) / (y1 - y0)
    corners = {"upper right": (1, 1), "upper left": (0, 1),
               "lower left": (0, 0), "lower right": (1, 0)}
    return max(corners, key=lambda k: np.min(np.hypot(
        u - corners[k][0], v - corners[k][1])))


def _fun_name(fun):
    """``rosen``, ``MinibatchObjective.full``; "" for a lambda."""
    name = getattr(fun, "__name__", "")
    owner = getattr(fun, "__self__", None)
    if owner is not None and not isinstance(owner, type(np)):
        name = f"{type(owner).__name__}.{name}"
    return name if name.replace(".", "").isidentifier() else ""


def _int_arg(name, value, least):
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, np.integer)) or value < least:
        raise ValueError(f"{name} must be an integer >= {least}, got "
                         f"{value!r}")
    return int(value)


def convergence(history, ax=None, *, x="iteration", window=None, label=None,
                log=None, title=None):
    """The objective against iteration (or epoch), raw and smoothed.

    Parameters
    ----------
    history : xarray.Dataset
        A run history (``res.history``).
    ax : matplotlib.axes.Axes, optional
        The Axes to draw on (default: a new figure's).
    x : {"iteration", "epoch"}
        The horizontal axis; ``"epoch"`` (a MinibatchObjective run) counts
        fractional passes over the data.
    window : int, optional
        Smoothing window in records (default: 1/50 of them, at least 1);
        the smoothed line (:func:`smooth`, an exponential moving average)
        is drawn over the raw one, which is thin and faint. Its legend
        gives the window in iterations (records times the recording
        interval).
    label : str, optional
        Legend label (default: the method, e.g. ``adam``); the legend reads
        ``adam, raw`` and ``adam, moving average of 60 iterations``.
    log : bool, optional
        Log scale for f; default when every value is > 0.
    title : str or False, optional
        Default ``Convergence of adamsci.<method>``, unless ``ax`` already
        has a title (another run drawn first); False: none.

    Returns
    -------
    matplotlib.axes.Axes
    """
    xs, xlabel = _xaxis(history, x)
    f = history["fun"].values.astype(np.float64)
    n = f.size
    window = max(1, n // 50) if window is None else _int_arg(
        "window", window, 1)
    ax = _axes(ax)
    label = label or history.attrs.get("method", "fun")
    finite = f[np.isfinite(f)]
    if log is None:
        log = finite.size > 0 and bool(np.all(finite > 0))
    if window > 1:
        # the window spans window * k iterations when every k-th is recorded
        span = window * _record_step(history)
        raw, = ax.plot(xs, f, lw=0.7, alpha=0.35, label=f"{label}, raw")
        ax.plot(xs, smooth(f, window), lw=1.6, color=raw.get_color(),
                label=f"{label}, moving average of {span} iterations")
    else:
        ax.plot(xs, f, lw=1.4, label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ylabel = _var_label(history["fun"], "objective function value")
    if "epoch" in history.coords:
        ylabel += " (on the minibatch)"
    ax.set_ylabel(ylabel)
    _title(ax, title, f"Convergence of {_method(history)}")
    _legend(ax, len(ax.get_legend_handles_labels()[1]))
    return ax


def trajectories(history, params=None, ax=None, *, average=True,
                 title=None):
    """Each parameter against the iteration (its average dashed).

    Parameters
    ----------
    history : xarray.Dataset
        A run history (``res.history``).
    params : sequence of str, optional
        Recorded parameters to draw (default all); the legend names them.
    ax : matplotlib.axes.Axes, optional
        The Axes to draw on (default: a new figure's).
    average : bool, default True
        Also draw ``x_avg`` (temporal averaging), dashed, when recorded.
    title : str or False, optional
        Default ``Parameters of adamsci.<method>``; False: none.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if "x" not in history:
        raise ValueError("the history has no parameters (record_x=False)")
    names = [str(p) for p in history["param"].values]
    if isinstance(params, str):
        params = [params]
    params = names if params is None else [str(p) for p in params]
    unknown = [p for p in params if p not in names]
    if unknown:
        raise ValueError(f"params {unknown} were not recorded; recorded: "
                         f"{names}")
    ax = _axes(ax)
    it = history["iteration"].values
    has_avg = average and "x_avg" in history
    handles = []
    for p in params:
        line, = ax.plot(it, history["x"].sel(param=p).values, label=p)
        handles.append(line)
        if has_avg:
            ax.plot(it, history["x_avg"].sel(param=p).values, ls="--",
                    color=line.get_color(), label=f"{p}, temporal average")
    if has_avg:
        # one legend entry says what dashed means (not one per parameter)
        from matplotlib.lines import Line2D
        handles.append(Line2D([], [], ls="--", color="0.4",
                              label="temporal average (dashed)"))
    ax.set_xlabel("iteration")
    ax.set_ylabel(params[0] if len(params) == 1 else "parameter value")
    _title(ax, title, f"Parameters of {_method(history)}")
    _legend(ax, len(handles), handles)
    return ax


def _full_x(history):
    if "state_x" in history and "state_param" in history.coords:
        names = [str(p) for p in history["state_param"].values]
        return names, np.asarray(history["state_x"].values, np.float64)
    names = [str(p) for p in history["param"].values]
    return names, np.asarray(history["x"].values[-1], np.float64)


def _thinned(n, most):
    """At most ``most`` indices of ``range(n)``, evenly spread, both ends
    included (all of them when ``most`` is None or ``n <= most``)."""
    if most is None or n <= most:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, most).round().astype(np.int64))


def _point(name, value):
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (a, b) of numbers, got "
                         f"{value!r}") from None
    if not (np.isfinite(a) and np.isfinite(b)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return a, b


def path2d(history, fun=None, params=None, ax=None, *, grid=200, levels=25,
           margin=0.15, args=(), minimum=None, max_markers=150,
           colorbar=True, title=None):
    """The path of two parameters over a contour plot of ``fun``.

    Parameters
    ----------
    history : xarray.Dataset
        A run history (``res.history``) with ``x`` recorded.
    fun : callable, optional
        ``fun(x, *args)`` -> f or (f, g), evaluated on a ``grid x grid``
        mesh of the two parameters with the others at their final values.
        None draws the path only. (For a MinibatchObjective pass its
        ``full`` method: calling the objective itself draws batches.)
    params : (str, str), optional
        Default: the first two recorded parameters.
    ax : matplotlib.axes.Axes, optional
        The Axes to draw on (default: a new figure's).
    grid : int, default 200
        Mesh points per axis (``grid**2`` calls of ``fun``: lower it for an
        expensive objective).
    levels : int, default 25
        Contour levels (log-spaced, with a log colour scale, when f > 0
        spans more than a decade).
    margin : float
        Extra room around the path (and ``minimum``), as a fraction of its
        extent.
    args : tuple
        Extra arguments of ``fun``.
    minimum : (float, float), optional
        A known minimum, drawn as a ring (and kept inside the mesh).
    max_markers : int or None, default 150
        The path is drawn through every recorded point, with a marker on at
        most this many of them (evenly spread; None: on all).
    colorbar : bool, default True
        A colour bar for the contour levels (with ``fun``).
    title : str or False, optional
        Default ``Path of adamsci.<method>`` (and the function's name);
        False: none.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if "x" not in history:
        raise ValueError("the history has no parameters (record_x=False)")
    names = [str(p) for p in history["param"].values]
    if params is None:
        if len(names) < 2:
            raise ValueError("path2d needs two recorded parameters")
        params = names[:2]
    if isinstance(params, str) or len(params) != 2:
        raise ValueError(f"params must be two parameter names, got "
                         f"{params!r}")
    a, b = (str(p) for p in params)
    for p in (a, b):
        if p not in names:
            raise ValueError(f"{p!r} was not recorded; recorded: {names}")
    grid = _int_arg("grid", grid, 2)
    if max_markers is not None:
        max_markers = _int_arg("max_markers", max_markers, 2)
    if not (isinstance(margin, (int, float, np.number)) and margin >= 0):
        raise ValueError(f"margin must be a number >= 0, got {margin!r}")
    if minimum is not None:
        minimum = _point("minimum", minimum)
    ax = _axes(ax)
    px = history["x"].sel(param=a).values.astype(np.float64)
    py = history["x"].sel(param=b).values.astype(np.float64)
    others = []
    if fun is not None:
        full_names, x_end = _full_x(history)
        ia, ib = full_names.index(a), full_names.index(b)
        others = [p for p in full_names if p not in (a, b)]

        def lims(v, m):
            v = v if m is None else np.append(v, m)
            lo, hi = np.nanmin(v), np.nanmax(v)
            pad = margin * (hi - lo) if hi > lo else max(abs(lo), 1.0) * 0.5
            return lo - pad, hi + pad
        gx = np.linspace(*lims(px, None if minimum is None else minimum[0]),
                         grid)
        gy = np.linspace(*lims(py, None if minimum is None else minimum[1]),
                         grid)
        Z = np.empty((grid, grid))
        dtype = np.asarray(history["x"].values).dtype
        x = x_end.astype(dtype)
        for j, yv in enumerate(gy):
            for i, xv in enumerate(gx):
                x[ia], x[ib] = xv, yv
                v = fun(x.copy(), *args)
                if isinstance(v, tuple):
                    v = v[0]
                Z[j, i] = float(v)
        finite = Z[np.isfinite(Z)]
        norm = None
        if finite.size and np.all(finite > 0) and \
                finite.max() > 10 * finite.min():
            from matplotlib.colors import LogNorm
            lv = np.geomspace(finite.min(), finite.max(), levels)
            norm = LogNorm(lv[0], lv[-1])
        else:
            lv = levels
        cs = ax.contour(gx, gy, Z, levels=lv, cmap="viridis", norm=norm,
                        linewidths=0.8)
        if colorbar:
            cb = ax.figure.colorbar(cs, ax=ax, label=_var_label(
                history["fun"], "objective function value"))
            if norm is not None:
                # decades as ticks (the levels themselves are not round)
                from matplotlib.ticker import (LogFormatterSciNotation,
                                               LogLocator)
                cb.locator = LogLocator()
                cb.formatter = LogFormatterSciNotation()
                cb.update_ticks()
    else:
        ax.margins(0.08)
    n = px.size
    ax.plot(px, py, "-", color="C3", lw=1.1, marker=".", ms=4,
            markevery=list(_thinned(n, max_markers)), label="path", zorder=3)
    ax.plot(px[:1], py[:1], "o", color="C3", mec="white", ms=8,
            label="start", zorder=4)
    ax.plot(px[-1:], py[-1:], "*", color="k", mec="white", ms=13,
            label="end", zorder=5)
    if minimum is not None:
        ax.plot([minimum[0]], [minimum[1]], "o", mfc="none", mec="C1",
                mew=2.0, ms=16, label=f"minimum ({minimum[0]:g}, "
                f"{minimum[1]:g})", zorder=4)
    ax.set_xlabel(a)
    ax.set_ylabel(b)
    name = "" if fun is None else _fun_name(fun)
    default = f"Path of {_method(history)}"
    if name:
        default += f" on {name}"
    if others:
        shown = ", ".join(others[:4]) + (", ..." if len(others) > 4 else "")
        default += f"\n({shown} at the final values)"
    _title(ax, title, default)
    # in the corner farthest from the path: "best" counts neither the
    # contours nor the markers' size, and put it over the end star
    corner = _emptiest_corner(ax, px, py)
    _legend(ax, len(ax.get_legend_handles_labels()[1]), loc=corner)
    return ax
