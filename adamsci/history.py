r"""Run histories: recording, xarray Datasets, netCDF files and exact resume.

``minimize(..., method=adamsci.adam, options={"record": k})`` records every
``k``-th iteration (``True``: every one) and returns the run's history as
``res.history``, an ``xarray.Dataset``:

==================  ======================  ===================================
variable            dims                    meaning
==================  ======================  ===================================
``x``               (iteration, param)      the parameters after ``iteration``
                                            steps (``record_x=False``: off)
``fun``             (iteration)             the objective at ``x`` (for a
                                            :class:`~adamsci.MinibatchObjective`
                                            on that iteration's minibatch)
``grad_norm``       (iteration)             2-norm of the gradient at ``x``
``step_norm``       (iteration)             2-norm of the step that led to ``x``
``learning_rate``   (iteration)             learning rate of that step
``grad``            (iteration, param)      the gradient (``record_grad=True``)
``x_avg``           (iteration, param)      bias-corrected temporal average
                                            (with ``ema_decay``)
``state_*``         (), (state_param)       the final optimizer state, for
                                            resuming (see below)
==================  ======================  ===================================

Coordinates: ``iteration`` (int; the starting point is iteration 0, and a
resumed run continues the numbering), ``param`` (names from the
``param_names`` option, from :func:`adamsci.curve_fit`'s model signature,
else ``x0, x1, ...``), and ``epoch`` (the 0-based epoch of the minibatch)
when the objective is a :class:`~adamsci.MinibatchObjective`. At iteration
0, ``step_norm`` and ``learning_rate`` are NaN (no step led there), and so is
``x_avg`` (the average of no step); each variable's ``description``
attribute says so. The attributes hold the method, every hyperparameter and
option that is set, the adamsci, NumPy, SciPy, Numba and xarray versions,
the start time (UTC, ISO 8601) and the final ``status``, ``success`` and
``message``. All of them are numbers or strings, so
``res.history.to_netcdf(path)`` works with the default (scipy, netCDF3)
engine as well as with h5netcdf, and ``xr.open_dataset(path)`` gives back
an equal Dataset: booleans are the strings ``"true"`` and ``"false"``,
lists and dicts JSON strings, and options left unset (``None``, such as
``ema_decay``, ``tol`` or ``maxfev`` without a limit) are left out. (Older
files, with booleans as 0/1 and unset options as the string ``"null"``,
resume all the same.)

Memory: one float64 row per recorded iteration (7 numbers plus the recorded
parameter columns) in a preallocated array that doubles when full, so
recording costs amortised O(1) per row and makes no Python object per
iteration. For large parameter vectors record a subset
(``record_params=[...]``, names or indices) or none (``record_x=False``).

**Resume.** The history also holds everything needed to continue the run exactly: the
final ``x`` (``state_x``), the objective's value and gradient there
(``state_fun``, ``state_jac``), the optimizer's step count and state arrays
(``state_step``, ``state_m``, ``state_v``, ... for the arrays in use), the
running values of the ``ftol`` rule (``state_f_ema``, ``state_f_ema_weight``,
``state_f_best``, ``state_stall``; only when ``ftol`` is on), the total
iteration count
(``state_iteration``) and, for a :class:`~adamsci.MinibatchObjective`, its
shuffle state (attribute ``state_objective``, JSON). Pass the Dataset, or
the path of its netCDF file, as ``options={"resume": ...}``: the run goes on
from there as if it had never stopped (bitwise the same iterates as one
uninterrupted run) for ``maxiter`` more iterations, and its history holds the
new iterations only; :func:`concat` joins the pieces. Resuming with another
method, or with ``x0`` of another shape or dtype, or with options that
change the optimizer's state layout (``amsgrad``, ``ema_decay``, ...) raises
an error before anything is modified. The Dataset (or file) passed is never
written to.

**Options** that every :mod:`adamsci.minimize` method accepts (documented
in :data:`OPTIONS_DOC`): ``record``, ``record_params``, ``record_x``,
``record_grad``, ``param_names``, ``progress``, ``resume``.

Examples
--------
>>> import numpy as np, scipy.optimize, adamsci
>>> def f(x):
...     return float(np.sum((x - 1.0) ** 2)), 2.0 * (x - 1.0)
>>> res = scipy.optimize.minimize(
...     f, np.zeros(2), jac=True, method=adamsci.adam,
...     options={"learning_rate": 0.01, "maxiter": 100, "record": 10,
...              "param_names": ["a", "b"]})
>>> h = res.history
>>> h.x.sizes["iteration"], h.param.values.tolist(), int(h.iteration[-1])
(11, ['a', 'b'], 100)
>>> h.x.sel(param="b").values[[0, -1]].round(3)
array([0.   , 0.776])

Continue for 100 more iterations from where it stopped:

>>> res2 = scipy.optimize.minimize(
...     f, np.zeros(2), jac=True, method=adamsci.adam,
...     options={"learning_rate": 0.01, "maxiter": 100, "record": 10,
...              "resume": h})
>>> h2 = res2.history
>>> int(h2.iteration[0]), int(h2.iteration[-1]), int(h2.state_iteration)
(110, 200, 200)
"""
import datetime
import json
import math
import numbers
import os

import numpy as np
from scipy.optimize import OptimizeResult

from . import _record as R

__all__ = ["Recorder", "Result", "concat", "open_history", "netcdf_attr",
           "param_names_from_model", "OPTIONS", "OPTIONS_DOC"]

#: History options of every minimize method, with their defaults.
OPTIONS = {"record": False, "record_params": None, "record_x": True,
           "record_grad": False, "param_names": None, "progress": False,
           "resume": None}

#: Their documentation (appended to each method's ``Options`` section).
OPTIONS_DOC = """
    record : bool or int, default False
        Record every ``record``-th iteration (True: every one) into
        ``res.history``, an ``xarray.Dataset`` (:mod:`adamsci.history`).
    record_params : sequence of str or int, optional
        Record only these parameters (names or indices) in ``x``, ``grad``
        and ``x_avg``; the norms always cover all parameters.
    record_x : bool, default True
        False records no per-parameter values (for large ``x``).
    record_grad : bool, default False
        Also record the gradient (``grad``).
    param_names : sequence of str, optional
        Names of the parameters (the ``param`` coordinate); default
        ``x0, x1, ...``.
    progress : bool, default False
        Show a tqdm progress bar (``tqdm.auto``: a widget in Jupyter) with
        the iteration, a smoothed objective and the rate. The loop then
        runs from Python.
    resume : xarray.Dataset or path, optional
        Continue the run saved in this history (or netCDF file) for
        ``maxiter`` more iterations: state, step count, iteration numbers
        and the minibatch shuffle state go on exactly (so does the saved
        ``x_scale``, whatever this call's option says).
"""

_STATE = "state_"
_RESERVE = 1 << 28      # bytes of history buffer reserved up front at most
_LONG_NAMES = {
    "iteration": "iteration (optimizer steps taken)",
    "epoch": "epoch of the minibatch (0-based)",
    "param": "parameter",
    "state_param": "parameter",
    "x": "parameters",
    "fun": "objective function value",
    "grad_norm": "2-norm of the gradient",
    "step_norm": "2-norm of the step that led to x",
    "learning_rate": "learning rate of the step that led to x",
    "grad": "gradient of the objective",
    "x_avg": "temporal average of the parameters (bias-corrected)",
}
_UNITS = {"iteration": "1", "epoch": "1"}
_NO_STEP = ("NaN at iteration 0: no step led to the starting point.")
_DESCRIPTIONS = {
    "step_norm": "2-norm of x minus the previous iteration's x (the step "
                 "taken, in x units). " + _NO_STEP,
    "learning_rate": "learning rate (the schedule's value) of the step "
                     "that led to x. " + _NO_STEP,
    "x_avg": "bias-corrected exponential moving average of the iterates "
             "(ema_decay). NaN at iteration 0: the average of no step.",
}


# -----------------------------------------------------------------------------
# the recorder
# -----------------------------------------------------------------------------
def _default_names(n):
    return [f"x{i}" for i in range(n)]


def param_names_from_model(f, n=None):
    """Parameter names of a ``curve_fit`` model ``f(x, p1, p2, ...)``.

    The names of the positional parameters after the first (the
    independent variable), or None when they cannot be told (``*args``
    models, builtins) or do not number ``n``.

    Parameters
    ----------
    f : callable
        The model, ``f(x, p1, p2, ...)``: a Python function, a lambda or a
        Numba dispatcher (its ``py_func`` is read).
    n : int, optional
        The number of parameters expected (for example ``len(p0)``): names
        that do not number ``n`` give None. Default: any number.

    Returns
    -------
    list of str or None
        The names, or None when they cannot be told.

    Examples
    --------
    >>> from adamsci.history import param_names_from_model
    >>> def decay(t, amplitude, tau, offset=0.0):
    ...     return amplitude
    >>> param_names_from_model(decay)
    ['amplitude', 'tau', 'offset']
    >>> param_names_from_model(lambda x, *p: x) is None
    True
    """
    import inspect
    f = getattr(f, "py_func", f)            # a Numba dispatcher
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY,
             inspect.Parameter.POSITIONAL_OR_KEYWORD)
    params = list(sig.parameters.values())
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params):
        return None
    names = [p.name for p in params if p.kind in kinds][1:]
    if not names or (n is not None and len(names) != n):
        return None
    return names


def _check_names(names, n):
    if names is None:
        return _default_names(n)
    if isinstance(names, str):
        raise TypeError("param_names must be a sequence of strings, not a "
                        "single string")
    try:
        names = [str(s) if isinstance(s, (str, np.str_)) else s
                 for s in names]
    except TypeError as e:
        raise TypeError(f"param_names must be a sequence of {n} strings, got "
                        f"{names!r}") from e
    if len(names) != n or not all(isinstance(s, str) for s in names):
        raise ValueError(f"param_names must be {n} strings (one per "
                         f"parameter), got {names!r}")
    if len(set(names)) != n:
        raise ValueError(f"param_names must be unique, got {names!r}")
    return names


def _selection(params, names):
    """Indices of ``params`` (names or ints) in ``names``."""
    n = len(names)
    if params is None:
        return np.arange(n, dtype=np.int64)
    if isinstance(params, (str, numbers.Integral)):
        params = [params]
    sel = []
    for p in params:
        if isinstance(p, (str, np.str_)):
            if p not in names:
                raise ValueError(f"record_params: {p!r} is not a parameter "
                                 f"name; names are {names}")
            sel.append(names.index(p))
        elif isinstance(p, numbers.Integral) and not isinstance(
                p, (bool, np.bool_)):
            if not -n <= p < n:
                raise ValueError(f"record_params: index {p} is out of range "
                                 f"for {n} parameters")
            sel.append(int(p) % n)
        else:
            raise TypeError(f"record_params must hold parameter names or "
                            f"indices, got {p!r}")
    if len(set(sel)) != len(sel):
        raise ValueError(f"record_params has duplicates: {params!r}")
    if not sel:
        raise ValueError("record_params is empty (use record_x=False to "
                         "record no parameters)")
    return np.array(sel, dtype=np.int64)


def _every(record):
    if record is None or record is False:
        return 0
    if record is True:
        return 1
    if isinstance(record, (bool, np.bool_)) or not isinstance(
            record, numbers.Integral) or record < 0:
        raise ValueError(f"record must be True, False or an integer >= 1 "
                         f"(every record-th iteration), got {record!r}")
    return int(record)


class Recorder:
    """Rows of a run's history in a preallocated array that doubles.

    The minimize loop appends with the compiled ``record_row`` of the
    private module ``adamsci._record`` (no Python object per row);
    :meth:`append` is the same from Python, for loops of your own.
    :meth:`to_dataset` builds the Dataset.

    Parameters
    ----------
    n : int
        Number of parameters.
    dtype : float32 or float64
        Dtype of the parameters (``x``, ``grad`` and ``x_avg`` keep it).
    every : int, default 1
        Record iterations that are multiples of ``every``.
    params : sequence of str or int, optional
        The recorded subset (names or indices); default all.
    param_names : sequence of str, optional
        Names of all ``n`` parameters; default ``x0, x1, ...``.
    record_x, record_grad : bool
        Record the parameters / the gradient.
    ema_decay : float, optional
        Record the temporal average (``x_avg``) with this decay.
    epoch : bool, default False
        Add the ``epoch`` coordinate.
    offset : int, default 0
        Iterations done before (a resumed run).
    capacity : int, default 64
        Rows allocated at first.
    scale : array_like of shape (n,), optional
        The run's ``x_scale``, when the optimizer works on ``y = x /
        x_scale``: the raw temporal average it keeps is then in those
        units, and ``x_avg`` is recorded multiplied by ``scale`` (in the
        units of ``x``). The parameters and gradients appended are
        recorded as given. Default None: no scaling.

    Examples
    --------
    >>> import numpy as np
    >>> from adamsci.history import Recorder
    >>> rec = Recorder(2, every=2, param_names=["a", "b"])
    >>> x = np.array([1.0, 2.0])
    >>> for it in range(5):
    ...     rec.append(it, x, float(it), -x, step_norm=0.5, learning_rate=0.1)
    ...     x = x + 1.0
    >>> ds = rec.to_dataset()
    >>> ds.iteration.values.tolist(), ds.x.sel(param="b").values.tolist()
    ([0, 2, 4], [2.0, 4.0, 6.0])
    """

    def __init__(self, n, dtype=np.float64, *, every=1, params=None,
                 param_names=None, record_x=True, record_grad=False,
                 ema_decay=None, epoch=False, offset=0, capacity=64,
                 scale=None):
        n = int(n)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.dtype = np.dtype(dtype)
        if self.dtype.char not in "fd":
            raise TypeError(f"dtype must be float32 or float64, got "
                            f"{self.dtype}")
        if isinstance(every, (bool, np.bool_)) or not isinstance(
                every, numbers.Integral) or every < 1:
            raise ValueError(f"every must be an integer >= 1, got {every!r}")
        self.n = n
        self.every = int(every)
        self.names = _check_names(param_names, n)
        self.sel = _selection(params, self.names)
        self.record_x = bool(record_x)
        self.record_grad = bool(record_grad)
        self.ema_decay = None if ema_decay is None else float(ema_decay)
        self.epoch = bool(epoch)
        self.offset = int(offset)
        self.scale = None if scale is None else np.asarray(scale, np.float64)
        nsel = self.sel.size
        meta = np.zeros(R.NMETA + nsel, np.int64)
        col = R.NCOL
        for slot, on in ((R.XOFF, self.record_x), (R.GOFF, self.record_grad),
                         (R.AOFF, self.record_x and self.ema_decay is not None)):
            if on:
                meta[slot] = col
                col += nsel
            else:
                meta[slot] = -1
        meta[R.EVERY] = self.every
        meta[R.OFFSET] = self.offset
        meta[R.NSEL] = nsel
        # a fresh run records its starting point, a resumed one does not
        # (it is the last row of the history it continues)
        meta[R.PENDING] = 1 if self.offset == 0 else 0
        meta[R.SEL0:] = self.sel
        self.meta = meta
        self.ncol = col
        self.B = np.empty((max(int(capacity), 1), col))

    # -- appending --------------------------------------------------------
    @property
    def rows(self):
        """Number of rows recorded."""
        return int(self.meta[R.ROWS])

    def grow(self):
        """Double the capacity; returns the new buffer."""
        self.B = R.grow(self.B)
        return self.B

    def reserve(self, rows):
        """Make room for ``rows`` rows in all (no shrinking)."""
        if rows > self.B.shape[0]:
            B = np.empty((int(rows), self.ncol))
            B[:self.rows] = self.B[:self.rows]
            self.B = B

    def append(self, iteration, x, fun, grad, *, step_norm=np.nan,
               learning_rate=np.nan, avg=None, step=None, epoch=np.nan):
        """Record one iteration from Python (skipped unless it is due).

        ``iteration`` counts from the start of the whole run (resumes
        included); ``avg`` is the optimizer's raw (uncorrected) average and
        ``step`` the step count it belongs to (default ``iteration``).
        """
        x = np.ascontiguousarray(x, self.dtype)
        g = np.ascontiguousarray(grad, self.dtype)
        if x.shape != (self.n,) or g.shape != (self.n,):
            raise ValueError(f"x and grad must have shape ({self.n},), got "
                             f"{x.shape} and {g.shape}")
        if avg is None:
            avg = np.zeros(self.n, self.dtype)
        avg = np.ascontiguousarray(avg, self.dtype).reshape(self.n)
        args = (self.meta, int(iteration) - self.offset, x, g, float(fun),
                float(step_norm), float(learning_rate),
                int(iteration if step is None else step), avg, float(epoch))
        if R.append_row(self.B, *args):
            R.append_row(self.grow(), *args)

    # -- the Dataset --------------------------------------------------------
    def to_dataset(self, copy=True, data=None, coords=None):
        """The recorded rows as an ``xarray.Dataset``.

        ``copy=False`` gives float64 variables that are views of the buffer
        (no new memory; the buffer must then not be reused). ``data`` and
        ``coords`` add variables (as for ``xarray.Dataset``).
        """
        import xarray as xr
        r = self.rows
        B = self.B[:r]
        nsel = self.sel.size
        names = [self.names[i] for i in self.sel]
        dt = self.dtype

        def col(c, k=None):
            a = B[:, c] if k is None else B[:, c:c + k]
            if a.dtype != dt and k is not None:
                return a.astype(dt)
            return a.copy() if copy else a
        crd = {"iteration": ("iteration", B[:, R.IT].astype(np.int64)),
               "param": ("param", np.array(names, dtype=str))}
        if self.epoch:
            crd["epoch"] = ("iteration", B[:, R.EPOCH].astype(np.int64))
        crd.update(coords or {})
        var = {}
        meta = self.meta
        if meta[R.XOFF] >= 0:
            var["x"] = (("iteration", "param"), col(meta[R.XOFF], nsel))
        var["fun"] = ("iteration", col(R.FUN))
        var["grad_norm"] = ("iteration", col(R.GNORM))
        var["step_norm"] = ("iteration", col(R.SNORM))
        var["learning_rate"] = ("iteration", col(R.LR))
        if meta[R.GOFF] >= 0:
            var["grad"] = (("iteration", "param"), col(meta[R.GOFF], nsel))
        if meta[R.AOFF] >= 0:
            c = meta[R.AOFF]
            var["x_avg"] = (("iteration", "param"), self._averaged(
                B[:, c:c + nsel].astype(dt), B[:, R.STEP]))
        var.update(data or {})
        ds = xr.Dataset(var, coords=crd)
        for name, v in ds.variables.items():
            if name in _LONG_NAMES:
                v.attrs["long_name"] = _LONG_NAMES[name]
            elif name.startswith(_STATE):
                v.attrs["long_name"] = _STATE_LONG.get(
                    name[len(_STATE):],
                    f"optimizer state: {name[len(_STATE):]}")
            if name in _DESCRIPTIONS:
                v.attrs["description"] = _DESCRIPTIONS[name]
            if name in _UNITS:
                v.attrs["units"] = _UNITS[name]
        return ds

    def _averaged(self, raw, steps):
        """``raw / (1 - d**t) * scale`` as ``Adam.averaged`` computes it.

        The denominators are Python floats (the same ``pow`` as the
        optimizer's), cast to the parameters' dtype like a Python scalar in
        NumPy arithmetic, so the values equal ``res.x_avg`` bitwise.
        """
        d = self.ema_decay
        t = steps.astype(np.int64)
        den = np.array([1.0 - d ** int(k) for k in t], np.float64)
        den = den.astype(raw.dtype)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = raw / den[:, None]
        out[t == 0] = np.nan
        if self.scale is not None:
            out = (out * self.scale[self.sel]).astype(raw.dtype)
        return out


# -----------------------------------------------------------------------------
# netCDF-safe attributes
# -----------------------------------------------------------------------------
_I32 = (-2 ** 31, 2 ** 31 - 1)


def _json_default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return repr(obj)


def netcdf_attr(value):
    """A netCDF-safe attribute value: an int, float or str (or None).

    Booleans become the strings ``"true"`` and ``"false"``; ints outside
    int32 (netCDF3), sequences and dicts become JSON strings; other objects
    (schedules, callables) their ``repr``. None (an option left unset)
    stays None: such an attribute is left out, not written.

    Parameters
    ----------
    value : object
        An option's or a result's value: None, a bool, a number, a str, a
        list, tuple, dict or ndarray (JSON-encoded), or any other object.

    Returns
    -------
    int, float, str or None
        The value to store as a netCDF attribute (None: store none).

    Examples
    --------
    >>> from adamsci.history import netcdf_attr
    >>> netcdf_attr(True), netcdf_attr([1, 2]), netcdf_attr(0.5)
    ('true', '[1, 2]', 0.5)
    >>> netcdf_attr(None) is None
    True
    """
    if value is None:
        return None
    if isinstance(value, (str, np.str_)):
        return str(value)
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, (int, np.integer, numbers.Integral)):
        v = int(value)
        return v if _I32[0] <= v <= _I32[1] else str(v)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (list, tuple, dict, np.ndarray)):
        return json.dumps(value, default=_json_default)
    return repr(value)


def _set_attr(attrs, key, value):
    """``attrs[key] = netcdf_attr(value)``, or nothing when that is None."""
    v = netcdf_attr(value)
    if v is not None:
        attrs[key] = v


def _versions():
    import numba
    import scipy
    import xarray
    from . import __version__
    return {"adamsci_version": __version__, "numba_version": numba.__version__,
            "numpy_version": np.__version__, "scipy_version": scipy.__version__,
            "xarray_version": xarray.__version__}


# -----------------------------------------------------------------------------
# resume
# -----------------------------------------------------------------------------
def open_history(path, **kwargs):
    """Read a history saved with ``to_netcdf`` fully into memory.

    The file is closed on return (so it can be overwritten later).

    Parameters
    ----------
    path : str or os.PathLike
        The netCDF file (written by ``res.history.to_netcdf(path)``).
    **kwargs
        Passed on to ``xarray.open_dataset`` (``engine=``, ``group=``,
        ...).

    Returns
    -------
    xarray.Dataset
        The history, loaded into memory.
    """
    import xarray as xr
    with xr.open_dataset(path, **kwargs) as ds:
        return ds.load()


class _Checkpoint:
    """The end of a saved run, validated against the run that resumes it."""

    def __init__(self, resume, opt, x0):
        import xarray as xr
        if isinstance(resume, (str, os.PathLike)):
            source = os.fspath(resume)
            ds = open_history(resume)
        elif isinstance(resume, xr.Dataset):
            source = "the Dataset"
            ds = resume
        else:
            raise TypeError(f"resume must be a history Dataset or the path "
                            f"of its netCDF file, got {type(resume).__name__}")
        self.source = source
        need = ["state_x", "state_step", "state_iteration", "state_fun",
                "state_jac"]
        missing = [v for v in need if v not in ds.variables]
        if missing or "method" not in ds.attrs:
            raise ValueError(f"resume: {source} is not an adamsci history "
                             f"with a saved state (missing "
                             f"{missing or ['method attribute']})")
        method = str(ds.attrs["method"])
        if method != opt.name:
            raise ValueError(f"resume: {source} was made by method "
                             f"{method!r}; it cannot be resumed with "
                             f"{opt.name!r}")
        x = np.array(ds["state_x"].values, copy=True)
        if x.shape != x0.shape:
            raise ValueError(f"resume: {source} holds {x.size} parameters "
                             f"(shape {x.shape}); x0 has shape {x0.shape}")
        if x.dtype != x0.dtype:
            raise TypeError(f"resume: {source} holds parameters of dtype "
                            f"{x.dtype}; x0 has dtype {x0.dtype} (pass x0 "
                            f"with dtype {x.dtype})")
        fields = opt.State._fields
        d = {"step": np.array([int(ds["state_step"].values)], np.int64)}
        for name in fields[1:]:
            var = _STATE + name
            if var in ds.variables:
                d[name] = np.array(ds[var].values, copy=True)
            else:
                d[name] = np.empty(0, x.dtype)
        extra = [v for v in ds.data_vars if v.startswith(_STATE) and
                 v[len(_STATE):] not in fields and v not in _RUN_VARS]
        if extra:
            raise ValueError(f"resume: {source} holds state arrays {extra} "
                             f"that {type(opt).__name__} does not have")
        try:
            self.state = opt.state_from_dict(d)
        except (TypeError, ValueError) as e:
            raise ValueError(f"resume: the optimizer state in {source} does "
                             f"not fit {opt!r}: {e}") from e
        self.x = x
        self.y = (np.array(ds["state_y"].values, copy=True)
                  if "state_y" in ds.variables else None)
        self.scale = (np.array(ds["state_x_scale"].values, np.float64)
                      if "state_x_scale" in ds.variables else None)
        self.fun = float(ds["state_fun"].values)
        self.jac = np.ascontiguousarray(ds["state_jac"].values, x.dtype)
        self.iteration = int(ds["state_iteration"].values)
        self.loop = {k: ds[_STATE + k].values.item() for k in _LOOP
                     if _STATE + k in ds.variables}
        obj = ds.attrs.get("state_objective")
        self.objective = None if obj in (None, "", "null") else json.loads(obj)
        names = ds["state_param"].values if "state_param" in ds.coords \
            else None
        self.param_names = None if names is None else [str(s) for s in names]


# loop values saved with the state (fields of the run's counters,
# adamsci._loop.COUNTERS)
_LOOP = ("f_ema", "f_ema_weight", "f_best", "stall")
_NO_LIMIT = np.iinfo(np.int64).max
_RUN_VARS = {_STATE + v for v in ("x", "y", "x_scale", "fun", "jac",
                                  "iteration", *_LOOP)}


# -----------------------------------------------------------------------------
# the session: what minimize calls
# -----------------------------------------------------------------------------
class Session:
    """History, progress bar and resume of one minimize run.

    The minimize loop uses it in four places:

    1. ``Session.create(opts, opt, x0, objective)`` after the options and
       ``x0`` are validated (None when no history option is set). With
       ``resume`` it loads and validates the checkpoint: ``session.x0``,
       ``session.state0``, ``session.scale`` (None: keep the loop's) and
       ``session.start`` (the saved ``(f, g)`` at ``x0``: the first
       evaluation is not repeated) replace the loop's.
    2. ``session.attach(run)`` once the loop's :class:`adamsci._loop.Run`
       exists: restores the loop values and the objective's shuffle state.
    3. The loops record through ``session.recorder`` (None: not
       recorded), whose buffer :func:`adamsci._loop.iterate` writes, and
       call ``session.on_step(f, g)`` (None: no progress bar) after each
       evaluation that follows a step.
    4. ``session.finish(res, run)`` builds ``res.history``.
    """

    @classmethod
    def create(cls, opts, opt, x0, objective):
        every = _every(opts.get("record", False))
        progress = opts.get("progress", False)
        if not isinstance(progress, (bool, np.bool_)):
            raise TypeError(f"progress must be True or False, got "
                            f"{progress!r}")
        resume = opts.get("resume")
        if not every and not progress and resume is None:
            for k in ("record_params", "record_grad", "param_names"):
                if opts.get(k) not in (None, False):
                    # names and subsets without recording: still validated
                    break
            else:
                return None
        return cls(every, bool(progress), resume, opts, opt, x0, objective)

    def __init__(self, every, progress, resume, opts, opt, x0, objective):
        from .objectives import MinibatchObjective
        self.start_time = datetime.datetime.now(datetime.timezone.utc)
        self.opts = dict(opts)
        self.opt = opt
        self.objective = objective
        self.minibatch = isinstance(objective, MinibatchObjective)
        self.every = every
        self.progress = progress
        n = x0.size
        self.ckpt = None
        self.x0, self.state0, self.scale, self.start = x0, None, None, None
        offset = 0
        if resume is not None:
            ck = self.ckpt = _Checkpoint(resume, opt, x0)
            if ck.objective is not None and not hasattr(objective,
                                                        "set_state"):
                raise ValueError(
                    f"resume: {ck.source} holds the shuffle state of a "
                    f"MinibatchObjective; fun is a "
                    f"{type(objective).__name__} that has no set_state")
            self.x0, self.state0, self.scale = ck.x, ck.state, ck.scale
            self.start = (ck.fun, ck.jac)
            offset = ck.iteration
        self.offset = offset
        names = opts.get("param_names")
        if names is None and self.ckpt is not None:
            names = self.ckpt.param_names
        self.names = _check_names(names, n)
        record_x = opts.get("record_x", True)
        record_grad = opts.get("record_grad", False)
        for k, v in (("record_x", record_x), ("record_grad", record_grad)):
            if not isinstance(v, (bool, np.bool_)):
                raise TypeError(f"{k} must be True or False, got {v!r}")
        self.rec = Recorder(
            n, x0.dtype, every=max(every, 1),
            params=opts.get("record_params"), param_names=self.names,
            record_x=record_x, record_grad=record_grad,
            ema_decay=getattr(opt, "ema_decay", None), epoch=self.minibatch,
            offset=offset)
        maxiter = opts.get("maxiter")
        if every and isinstance(maxiter, numbers.Integral):
            # all the rows the run can need, up to _RESERVE bytes: pages
            # are only touched (made resident) as rows are written
            self.rec.reserve(min(int(maxiter) // every + 2,
                                 _RESERVE // (8 * self.rec.ncol)))
        self.bar = None
        self.on_step = None
        self.run = None

    @property
    def recorder(self):
        """The :class:`Recorder` the loop writes to, or None."""
        return self.rec if self.every else None

    # -- before the loop ----------------------------------------------------
    def attach(self, run):
        """Restore the loop values and the objective; make the bar."""
        self.scale = run.a.scale if run.settings.scaled else None
        self.rec.scale = self.scale
        ck = self.ckpt
        if ck is not None:
            if ck.y is not None and run.settings.scaled:
                run.a.y[...] = ck.y
                run.a.x[...] = ck.x
            for k in _LOOP:
                if k in ck.loop:
                    run.counters[k] = ck.loop[k]
            if ck.objective is not None:
                self.objective.set_state(ck.objective)
        if self.progress:
            bar = self.bar = _Progress(int(self.opts.get("maxiter") or 0),
                                       self.offset,
                                       f"adamsci.{self.opt.name}")
            self.on_step = lambda f, g: bar.update(f)
        self.run = run
        return self

    # -- after the loop -------------------------------------------------------
    def finish(self, res, run=None, B=None):
        """Set ``res.history`` (when recording or resuming); close the bar."""
        run = self.run if run is None else run
        if B is not None:
            self.rec.B = B
        if self.bar is not None:
            self.bar.close(res)
        if self.opts.get("param_names") is not None:
            res.param_names = list(self.names)
        if not self.every and self.ckpt is None:
            return res
        dims = ("state_param",)
        state = {"state_x": (dims, np.array(res.x, copy=True))}
        if self.scale is not None:
            state["state_y"] = (dims, run.a.y.copy())
            state["state_x_scale"] = (dims, np.asarray(self.scale,
                                                       np.float64))
        state["state_fun"] = ((), float(res.fun))
        state["state_jac"] = (dims, np.array(res.jac, copy=True))
        st = run.state.to_dict()
        state["state_step"] = ((), np.int64(st.pop("step")[0]))
        state["state_iteration"] = ((), np.int64(self.offset +
                                                 int(run.counters["nit"][0])))
        for name, arr in st.items():
            if arr.size:
                state[_STATE + name] = (dims, arr)
        if run.settings.ftol > 0.0:
            # the ftol rule's running values (left out when the rule is off:
            # they would be its untouched start values, inf and 0)
            for k in _LOOP:
                state[_STATE + k] = ((), run.counters[k][0].item())
        # views of the buffer, unless the run stopped early and most of the
        # reservation is unused (copies then free it)
        rec = self.rec
        ds = rec.to_dataset(
            copy=rec.rows < rec.B.shape[0] // 2, data=state,
            coords={"state_param": (dims, np.array(self.names, dtype=str))})
        ds.attrs = self._attrs(res)
        res.history = ds
        return res

    def interrupted(self, error):
        """The rows recorded before ``error`` (an exception raised by the
        objective) ended the run, as a history Dataset without the saved
        state (so it cannot be resumed); None when not recording."""
        if not self.every:
            return None
        ds = self.rec.to_dataset(copy=True)
        ds.attrs = self._run_attrs()
        ds.attrs["message"] = (f"interrupted by {type(error).__name__}: "
                               f"{error}")
        return ds

    def _run_attrs(self):
        """The attributes that do not depend on how the run ended."""
        attrs = {"title": "adamsci optimization history",
                 "method": self.opt.name}
        for k, v in self.opt.hyperparameters.items():
            _set_attr(attrs, k, v)
        for k, v in self.opts.items():
            if k == "resume" or (k == "maxfev" and v == _NO_LIMIT):
                continue                # maxfev=None arrives as "no limit"
            _set_attr(attrs, k, v)
        if self.ckpt is not None:
            attrs["resumed_from"] = self.ckpt.source
        attrs["first_iteration"] = netcdf_attr(self.offset)
        attrs.update(_versions())
        attrs["start_time"] = self.start_time.isoformat(timespec="seconds")
        return attrs

    def _attrs(self, res):
        attrs = self._run_attrs()
        attrs["status"] = int(res.status)
        attrs["success"] = netcdf_attr(bool(res.success))
        attrs["message"] = str(res.message)
        for k in ("nit", "nfev", "njev"):
            if k in res:
                _set_attr(attrs, k, res[k])
        obj = self.objective
        if hasattr(obj, "get_state") and hasattr(obj, "set_state"):
            attrs["state_objective"] = json.dumps(obj.get_state(),
                                                  default=_json_default)
            for k in ("n_points", "batch_size", "n_batches"):
                if hasattr(obj, k):
                    _set_attr(attrs, "objective_" + k, getattr(obj, k))
        return attrs


_STATE_LONG = {
    "x": "final parameters", "y": "final parameters in x_scale units",
    "x_scale": "scale of the parameters (x_scale)",
    "fun": "objective value at the final parameters",
    "jac": "gradient at the final parameters",
    "step": "optimizer step count", "iteration": "iterations done in all",
    "m": "first moment estimate", "v": "second moment estimate",
    "vmax": "running maximum of the second moment (AMSGrad)",
    "avg": "temporal average of the parameters (raw)",
    "u": "exponentially weighted infinity norm",
    "f_ema": "stopping rule: moving average of f (raw)",
    "f_ema_weight": "stopping rule: weight of that average",
    "f_best": "stopping rule: best smoothed f",
    "stall": "stopping rule: iterations without improvement",
}


# -----------------------------------------------------------------------------
# progress bar
# -----------------------------------------------------------------------------
class _Progress:
    """A tqdm bar: iteration, smoothed objective, rate (tqdm.auto)."""

    def __init__(self, total, offset, desc, smoothing=0.9, every=64):
        from tqdm.auto import tqdm
        self.bar = tqdm(total=(offset + total) if total else None,
                        initial=offset, desc=desc, unit="it",
                        dynamic_ncols=True, leave=True)
        self.every = every
        self.count = 0
        self.pending = 0
        self.s = smoothing
        self.ema = 0.0
        self.w = 0.0
        self.offset = offset

    def update(self, f):
        if f == f:
            self.ema = self.s * self.ema + (1.0 - self.s) * f
            self.w = self.s * self.w + (1.0 - self.s)
        self.pending += 1
        if self.pending >= self.every:
            self._flush()

    def _flush(self):
        if self.pending > 0:
            self.bar.update(self.pending)
            self.count += self.pending
            self.pending = 0
        if self.w:
            self.bar.set_postfix_str(f"fun~{self.ema / self.w:.6g}",
                                     refresh=False)

    def close(self, res=None):
        self._flush()
        self.bar.close()


# -----------------------------------------------------------------------------
# joining histories
# -----------------------------------------------------------------------------
def concat(histories):
    """Join a run's history with those of its resumptions.

    The iteration variables are concatenated along ``iteration``; the state
    and the attributes are those of the last piece (which ended the run).

    Parameters
    ----------
    histories : sequence of xarray.Dataset
        In order; each must continue the previous one.

    Returns
    -------
    xarray.Dataset
    """
    import xarray as xr
    histories = list(histories)
    if not histories:
        raise ValueError("concat needs at least one history")
    last = histories[-1]
    for a, b in zip(histories[:-1], histories[1:]):
        if a.attrs.get("method") != b.attrs.get("method"):
            raise ValueError("concat: the histories come from different "
                             "methods")
        if "state_iteration" in a and "first_iteration" in b.attrs and \
                int(a["state_iteration"]) != int(b.attrs["first_iteration"]):
            raise ValueError(
                f"concat: a history ends at iteration "
                f"{int(a['state_iteration'])} but the next starts after "
                f"iteration {int(b.attrs['first_iteration'])}")

    def part(ds):
        keep = [v for v in ds.data_vars if "iteration" in ds[v].dims]
        return ds[keep]

    joined = xr.concat([part(h) for h in histories], dim="iteration",
                       data_vars="all", coords="minimal",
                       compat="override", join="exact",
                       combine_attrs="drop")
    state = last[[v for v in last.data_vars if v.startswith(_STATE)]]
    out = xr.merge([joined, state], compat="no_conflicts", join="outer",
                   combine_attrs="drop")
    out.attrs = dict(last.attrs)
    out.attrs["first_iteration"] = histories[0].attrs.get("first_iteration",
                                                          0)
    return out


# -----------------------------------------------------------------------------
# the result and its reprs
# -----------------------------------------------------------------------------
class Result(OptimizeResult):
    """``scipy.optimize.OptimizeResult`` with readable text and HTML reprs.

    Everything else is OptimizeResult's: a dict whose keys are also
    attributes.
    """

    def _names(self):
        n = np.size(self.get("x", ()))
        names = self.get("param_names")
        h = self.get("history")
        if names is None and h is not None and "state_param" in h.coords:
            names = [str(s) for s in h["state_param"].values]
        if names is None or len(names) != n:
            names = _default_names(n)
        return names

    def _summary(self):
        """(title, [(key, value str)], table header, rows, history line)."""
        opt = self.get("optimizer")
        method = getattr(opt, "name", None)
        title = f"adamsci.{method}" if method else "adamsci result"
        fields = []
        for k in ("success", "status", "message", "fun", "nit", "nfev",
                  "njev", "nskipped", "epoch"):
            if k in self:
                v = self[k]
                if k == "fun":
                    v = _num(v)
                fields.append((k, str(v)))
        cols = ["x", "jac", "x_avg"]
        cols = [c for c in cols if c in self and np.size(self[c]) ==
                np.size(self.get("x", ()))]
        names = self._names()
        n = len(names)
        idx = list(range(n)) if n <= 20 else list(range(10)) + [None] + \
            list(range(n - 3, n))
        rows = []
        for i in idx:
            if i is None:
                rows.append(["..."] * (len(cols) + 1))
            else:
                rows.append([names[i]] + [_num(np.ravel(self[c])[i])
                                          for c in cols])
        return title, fields, ["parameter"] + cols, rows, _history_line(
            self.get("history"))

    def __repr__(self):
        title, fields, head, rows, hist = self._summary()
        lines = [title]
        w = max(len(k) for k, _ in fields) if fields else 0
        lines += [f"  {k.rjust(w)}: {v}" for k, v in fields]
        table = [head] + rows
        widths = [max(len(r[j]) for r in table) for j in range(len(head))]
        for r in table:
            cells = [r[0].ljust(widths[0])] + [c.rjust(widths[j + 1]) for j, c
                                               in enumerate(r[1:])]
            lines.append("  " + "  ".join(cells).rstrip())
        if hist:
            lines.append(f"  history: {hist}")
        return "\n".join(lines)

    __str__ = __repr__

    def _repr_html_(self):
        import html
        title, fields, head, rows, hist = self._summary()
        e = html.escape
        ok = bool(self.get("success"))
        # the badge's colours are also inline: they stay where a notebook
        # viewer strips <style> elements
        kind, colour, words = (("ok", _GREEN, "&#10003; converged") if ok
                               else ("fail", _RED, "&#10007; not converged"))
        badge = (f'<span class="adamsci-badge adamsci-badge-{kind}" '
                 f'style="background-color:{colour};color:#ffffff">'
                 f'{words}</span>')
        parts = [f'<div class="adamsci-result adamsci-{"ok" if ok else "warn"}'
                 f'">', _HTML_STYLE,
                 f'<div class="adamsci-title"><strong>{e(title)}</strong> '
                 f'{badge}</div>',
                 '<table class="adamsci-fields">']
        for k, v in fields:
            parts.append(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>")
        parts.append("</table>")
        parts.append('<table class="adamsci-params">')
        parts.append("<thead><tr>" + "".join(
            f'<th class="adamsci-{"name" if j == 0 else "num"}">{e(h)}</th>'
            for j, h in enumerate(head)) + "</tr></thead>")
        parts.append("<tbody>")
        for r in rows:
            parts.append(f'<tr><td class="adamsci-name">{e(r[0])}</td>'
                         + "".join(f'<td class="adamsci-num">{e(c)}</td>'
                                   for c in r[1:]) + "</tr>")
        parts.append("</tbody>")
        parts.append("</table>")
        if hist:
            parts.append(f'<p class="adamsci-history">history: {e(hist)}</p>')
        parts.append("</div>")
        return "\n".join(parts)


#: The result's inline style. Text keeps the notebook's colour (``inherit``)
#: and shading is semi-transparent grey, so light and dark themes both read;
#: the badges are white on a green / red that contrasts with white by more
#: than 4.5:1 (WCAG AA) and stand out on white and on black alike.
_GREEN, _RED = "#1a7f37", "#c62828"
_HTML_STYLE = """<style>
.adamsci-result {color: inherit; line-height: 1.45;
  padding: 0.2em 0 0.2em 0.7em; border-left: 4px solid %(green)s;}
.adamsci-result.adamsci-warn {border-left-color: %(red)s;}
.adamsci-result .adamsci-badge {display: inline-block; margin-left: 0.5em;
  padding: 0.05em 0.6em; border-radius: 0.8em; font-size: 0.85em;
  font-weight: 600; color: #ffffff;}
.adamsci-result .adamsci-badge-ok {background-color: %(green)s;}
.adamsci-result .adamsci-badge-fail {background-color: %(red)s;}
.adamsci-result table {border-collapse: collapse; margin: 0.4em 0;
  color: inherit; background: transparent; border: none;}
.adamsci-result th, .adamsci-result td {color: inherit;
  background: transparent; border: none; padding: 0.1em 0.8em 0.1em 0;
  text-align: left;}
.adamsci-result .adamsci-params th {
  border-bottom: 1px solid rgba(128, 128, 128, 0.6);}
.adamsci-result .adamsci-params tbody tr:nth-child(even) td {
  background: rgba(128, 128, 128, 0.14);}
.adamsci-result .adamsci-params .adamsci-num {text-align: right;
  font-variant-numeric: tabular-nums; padding-left: 1.2em;}
.adamsci-result .adamsci-history {margin: 0.3em 0; opacity: 0.8;}
</style>""" % {"green": _GREEN, "red": _RED}


def _num(v):
    try:
        return f"{float(v):.6g}"
    except (TypeError, ValueError):
        return str(v)


def _history_line(h):
    if h is None:
        return ""
    n = h.sizes.get("iteration", 0)
    names = [v for v in h.data_vars if "iteration" in h[v].dims]
    if n:
        it = h["iteration"].values
        span = f"iterations {int(it[0])}..{int(it[-1])}"
        every = h.attrs.get("record")
        if isinstance(every, (int, np.integer)) and every > 1:
            span += f" every {int(every)}"
        span = f"{n} records, {span}"
    else:
        span = "no records"
    return f"{span}; variables {', '.join(names)}; {h.sizes.get('param', 0)}"\
           f" params recorded"
