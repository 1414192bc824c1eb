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
        nb = history.attrs.get("objective_n_batches")
        if isinstance(nb, (int, np.integer)) and nb > 0:
            # one batch per iteration: a fractional epoch axis
            return it / float(nb), "epoch"
        if "epoch" in history.coords:
            return history["epoch"].values, "epoch"
        raise ValueError("x='epoch' needs the history of a "
                         "MinibatchObjective run (no epoch coordinate)")
    raise ValueError(f"x must be 'iteration' or 'epoch', got {x!r}")


def convergence(history, ax=None, *, x="iteration", window=None, label=None,
                log=None):
    """The objective against iteration (or epoch), raw and smoothed.

    Parameters
    ----------
    history : xarray.Dataset
        A run history (``res.history``).
    ax : matplotlib Axes, optional
    x : {"iteration", "epoch"}
        The horizontal axis; ``"epoch"`` (a MinibatchObjective run) counts
        fractional passes over the data.
    window : int, optional
        Smoothing window in records (default: 1/50 of them, at least 1);
        the smoothed line (:func:`smooth`) is drawn over the raw one, which
        is thin and faint.
    label : str, optional
        Legend label (default: the method).
    log : bool, optional
        Log scale for f; default when every value is > 0.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = _axes(ax)
    xs, xlabel = _xaxis(history, x)
    f = history["fun"].values.astype(np.float64)
    n = f.size
    if window is None:
        window = max(1, n // 50)
    label = label or history.attrs.get("method", "fun")
    finite = f[np.isfinite(f)]
    if log is None:
        log = finite.size > 0 and bool(np.all(finite > 0))
    if window > 1:
        raw, = ax.plot(xs, f, lw=0.7, alpha=0.35, label=f"{label} (raw)")
        ax.plot(xs, smooth(f, window), lw=1.6, color=raw.get_color(),
                label=f"{label} (EMA over {window})")
    else:
        ax.plot(xs, f, lw=1.4, label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(history["fun"].attrs.get("long_name", "fun"))
    ax.legend(loc="best")
    return ax


def trajectories(history, params=None, ax=None, *, average=True):
    """Each parameter against the iteration (its average dashed).

    Parameters
    ----------
    history : xarray.Dataset
    params : sequence of str, optional
        Recorded parameters to draw (default all).
    ax : matplotlib Axes, optional
    average : bool, default True
        Also draw ``x_avg`` (temporal averaging), dashed, when recorded.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if "x" not in history:
        raise ValueError("the history has no parameters (record_x=False)")
    ax = _axes(ax)
    names = [str(p) for p in history["param"].values]
    params = names if params is None else [str(p) for p in params]
    unknown = [p for p in params if p not in names]
    if unknown:
        raise ValueError(f"params {unknown} were not recorded; recorded: "
                         f"{names}")
    it = history["iteration"].values
    has_avg = average and "x_avg" in history
    for p in params:
        line, = ax.plot(it, history["x"].sel(param=p).values, label=p)
        if has_avg:
            ax.plot(it, history["x_avg"].sel(param=p).values, ls="--",
                    color=line.get_color(), label=f"{p} (average)")
    ax.set_xlabel("iteration")
    ax.set_ylabel(history["x"].attrs.get("long_name", "x"))
    ax.legend(loc="best")
    return ax


def _full_x(history):
    if "state_x" in history and "state_param" in history.coords:
        names = [str(p) for p in history["state_param"].values]
        return names, np.asarray(history["state_x"].values, np.float64)
    names = [str(p) for p in history["param"].values]
    return names, np.asarray(history["x"].values[-1], np.float64)


def path2d(history, fun=None, params=None, ax=None, *, grid=60, levels=25,
           margin=0.15, args=()):
    """The path of two parameters over a contour plot of ``fun``.

    Parameters
    ----------
    history : xarray.Dataset
    fun : callable, optional
        ``fun(x, *args)`` -> f or (f, g), evaluated on a ``grid x grid``
        mesh of the two parameters with the others at their final values.
        None draws the path only. (For a MinibatchObjective pass its
        ``full`` method: calling the objective itself draws batches.)
    params : (str, str), optional
        Default: the first two recorded parameters.
    ax : matplotlib Axes, optional
    grid, levels : int
        Mesh points per axis and contour levels (log-spaced when f > 0).
    margin : float
        Extra room around the path, as a fraction of its extent.

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
    a, b = (str(p) for p in params)
    for p in (a, b):
        if p not in names:
            raise ValueError(f"{p!r} was not recorded; recorded: {names}")
    ax = _axes(ax)
    px = history["x"].sel(param=a).values.astype(np.float64)
    py = history["x"].sel(param=b).values.astype(np.float64)
    if fun is not None:
        full_names, x_end = _full_x(history)
        ia, ib = full_names.index(a), full_names.index(b)

        def lims(v):
            lo, hi = np.nanmin(v), np.nanmax(v)
            pad = margin * (hi - lo) if hi > lo else max(abs(lo), 1.0) * 0.5
            return lo - pad, hi + pad
        gx = np.linspace(*lims(px), grid)
        gy = np.linspace(*lims(py), grid)
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
        if finite.size and np.all(finite > 0) and \
                finite.max() > 10 * finite.min():
            lv = np.geomspace(finite.min(), finite.max(), levels)
        else:
            lv = levels
        ax.contour(gx, gy, Z, levels=lv, cmap="viridis", linewidths=0.8)
    ax.plot(px, py, "-", color="C3", lw=1.2, marker=".", ms=3,
            label="path")
    ax.plot(px[:1], py[:1], "o", color="C3", label="start")
    ax.plot(px[-1:], py[-1:], "*", color="k", ms=10, label="end")
    ax.set_xlabel(a)
    ax.set_ylabel(b)
    ax.legend(loc="best")
    return ax
