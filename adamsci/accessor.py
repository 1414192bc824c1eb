"""xarray accessor ``.adamsci``: batched curve fitting of DataArrays.

Importing this module registers the accessor (``import adamsci`` alone does
not, to keep that import cheap)::

    import adamsci.accessor  # noqa: F401  (registers DataArray.adamsci)
    fit = da.adamsci.curvefit("time", decay)   # as da.curvefit("time", decay)

:meth:`AdamsciAccessor.curvefit` is a drop-in for
:meth:`xarray.DataArray.curvefit`: the same arguments, the same model
``func(x, *params)`` (parameter names from its signature), the same output
(``curvefit_coefficients`` over ``param``, ``curvefit_covariance`` over
``cov_i``, ``cov_j``), but it fits all the curves of a chunk with one call
of :func:`adamsci.fit_batch` (the model compiled by :mod:`adamsci.compiler`,
a compiled loop over fits) instead of one ``scipy.optimize.curve_fit`` call
per curve.

Dask-backed arrays are fitted chunk by chunk through
``xarray.apply_ufunc(dask="parallelized")``: the fitted dimensions are
rechunked to a single chunk, every other dimension keeps its chunks, and each
chunk is one ``fit_batch`` call. On a ``dask.distributed`` cluster the tasks
run in worker threads, where ``fit_batch`` uses its serial kernel (Numba's
default threading layer must not be entered from two threads); the kernel
of a built-in model is compiled (or loaded from Numba's cache) in the calling
process before the graph is built, so workers load it from the on-disk cache
rather than all compiling it at once.
"""
import numpy as np
import xarray as xr

from . import models as _models
from .batch import fit_batch

__all__ = ["AdamsciAccessor"]

_FAILED = (1, 2, 4)     # max_iterations, nonfinite, too_few_points


def _as_list(value):
    if value is None:
        return []
    if isinstance(value, str) or not np.iterable(value):
        return [value]
    return list(value)


def _fit_block(y, *args, model, n_coords, n_params, n_core, has_p0,
               errors, skipna, fit_kwargs):
    """One chunk: ``y`` (..., core...) -> params (..., P), cov (..., P, P)."""
    coords = args[:n_coords]
    p0s = args[n_coords:n_coords + n_params]
    los = args[n_coords + n_params:n_coords + 2 * n_params]
    his = args[n_coords + 2 * n_params:]
    lead = y.shape[:y.ndim - n_core]
    n_fits = int(np.prod(lead, dtype=np.int64))
    n_points = int(np.prod(y.shape[y.ndim - n_core:], dtype=np.int64))
    Y = np.asarray(y, dtype=np.float64).reshape(n_fits, n_points)
    # coordinates: shared when they do not vary over the fitted-over dims
    xs = []
    shared = True
    for c in coords:
        c = np.asarray(c, dtype=np.float64)
        c_lead = c.shape[:c.ndim - n_core]
        if any(s != 1 for s in c_lead):
            shared = False
        xs.append(c)
    if shared:
        X = [c.reshape(-1) for c in xs]
    else:
        X = [np.broadcast_to(c, y.shape).reshape(n_fits, n_points)
             for c in xs]
    # scipy's convention: the coordinates first, the points last
    X = X[0] if model.xdim == 0 else np.stack(X, axis=-2)
    if not skipna:
        bad = ~np.isfinite(Y).all(axis=1)
    else:
        bad = np.zeros(n_fits, bool)

    def per_fit(vals):
        return np.stack([np.broadcast_to(np.asarray(v, np.float64), lead)
                         .reshape(n_fits) for v in vals], axis=1)

    lo = per_fit(los)
    hi = per_fit(his)
    p0 = per_fit(p0s)
    if not all(has_p0):
        if model.guess is not None:     # a Model's guess from the data
            start = np.asarray(model.guess(X, Y), dtype=np.float64)
        else:                           # scipy's start inside the bounds
            start = _initialize_feasible(lo, hi)
        p0 = np.where(np.asarray(has_p0)[None, :], p0, start)
    p0 = np.where(np.isfinite(p0), p0, 1.0)
    p0 = np.clip(p0, lo, hi)
    bounds = None if (np.isinf(lo).all() and np.isinf(hi).all()) \
        else (lo, hi)
    ds = fit_batch(model, X, Y, p0, bounds=bounds, **fit_kwargs)
    params = ds.params.values.astype(np.float64)
    cov = ds.covariance.values.astype(np.float64)
    status = ds.status.values
    failed = np.isin(status, _FAILED) | bad
    if failed.any():
        if errors == "raise":
            counts = {_STATUS_NAME[s]: int((status[failed] == s).sum())
                      for s in np.unique(status[failed])}
            raise RuntimeError(
                f"adamsci curvefit: {int(failed.sum())} of {n_fits} fits "
                f"failed ({counts}; NaN input with skipna=False counts as "
                f"failed). Pass errors='ignore' to get NaN for them, or "
                f"raise maxiter.")
        params[failed] = np.nan
        cov[failed] = np.nan
    return (params.reshape(lead + (n_params,)),
            cov.reshape(lead + (n_params, n_params)))


def _initialize_feasible(lo, hi):
    """scipy's starting point (``curve_fit`` without ``p0``): ones, the
    middle of two finite bounds, one inside a single one."""
    p0 = np.ones_like(lo)
    both = np.isfinite(lo) & np.isfinite(hi)
    p0[both] = 0.5 * (lo[both] + hi[both])
    only_lo = np.isfinite(lo) & ~np.isfinite(hi)
    p0[only_lo] = lo[only_lo] + 1
    only_hi = ~np.isfinite(lo) & np.isfinite(hi)
    p0[only_hi] = hi[only_hi] - 1
    return p0


def _status_names():
    from .batch import STATUS
    return STATUS


_STATUS_NAME = _status_names()


def _warm(model, dtype):
    """Compile (or load from Numba's cache) the model's kernel in this
    process before Dask's workers ask for it: they then load it from the
    cache rather than all compile it at once."""
    npt = model.n_params + 1
    x = np.linspace(1.0, 2.0, npt)
    if model.xdim > 0:
        x = np.stack([x] * model.xdim)
    y = np.ones((1, npt), dtype)
    with np.errstate(all="ignore"):
        fit_batch(model, x.astype(dtype), y, np.ones(model.n_params),
                  maxiter=1, parallel=False, dtype=dtype)


@xr.register_dataarray_accessor("adamsci")
class AdamsciAccessor:
    """``DataArray.adamsci``: batched fitting with :func:`adamsci.fit_batch`.

    Registered on :class:`xarray.DataArray` by ``import adamsci.accessor``;
    xarray makes it on first use of ``da.adamsci``: not built directly.

    Parameters
    ----------
    obj : xarray.DataArray
        The array the accessor belongs to (xarray passes it).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> import adamsci.accessor  # registers the accessor
    >>> from adamsci import models
    >>> t = np.linspace(-3, 3, 31)
    >>> center = xr.DataArray([-0.5, 0.2, 0.7], dims="pixel")
    >>> time = xr.DataArray(t, dims="time", coords={"time": t})
    >>> da = 2.0 * np.exp(-0.5 * ((time - center) / 0.8) ** 2) + 0.1
    >>> fit = da.adamsci.curvefit("time", models.gaussian)
    >>> fit.curvefit_coefficients.sel(param="center").values.round(4)
    array([-0.5,  0.2,  0.7])
    >>> fit.curvefit_covariance.dims
    ('pixel', 'cov_i', 'cov_j')
    """

    def __init__(self, obj):
        self._obj = obj

    def curvefit(self, coords, func, reduce_dims=None, skipna=True, p0=None,
                 bounds=None, param_names=None, errors="raise", kwargs=None,
                 **fit_kwargs):
        """Fit ``func`` along ``coords`` for every other index of the array.

        The arguments and the result of :meth:`xarray.DataArray.curvefit`;
        the fits run in :func:`adamsci.fit_batch`'s compiled kernel.

        Parameters
        ----------
        coords : hashable, DataArray, or sequence of them
            Independent coordinate(s) of the fit, as for
            :meth:`xarray.DataArray.curvefit`. Several coordinates reach
            ``func`` as ``x[0], x[1], ...`` (scipy's convention), e.g.
            :data:`adamsci.models.gaussian2d` over ``("x", "y")``.
        func : callable, Model or str
            ``func(x, *params)`` as for xarray and scipy (its body must be
            elementwise: see :mod:`adamsci.compiler`), a
            :class:`adamsci.models.Model`, or a built-in model's name.
        reduce_dims : hashable or sequence, optional
            More dimensions to aggregate over (as xarray).
        skipna : bool, default True
            Mask NaN points. False: a curve with any NaN fails (see
            ``errors``).
        p0 : dict, optional
            ``{param_name: value or DataArray}`` starting values, broadcast
            against the fitted-over dimensions. Missing parameters start
            from a Model's ``guess`` (built-in models) or, as with xarray,
            from scipy's default (1, or inside finite bounds).
        bounds : dict, optional
            ``{param_name: (lower, upper)}``, scalars or DataArrays.
        param_names : sequence of str, optional
            Needed when ``func`` takes ``*params``; otherwise the names of
            its signature (as xarray).
        errors : {"raise", "ignore"}, default "raise"
            A fit that stops at ``maxiter``, meets non-finite values, or has
            fewer valid points than parameters raises ``RuntimeError``
            ("raise") or gives NaN ("ignore"). All-NaN curves give NaN in
            both cases (as xarray).
        kwargs : dict, optional
            Passed to :func:`adamsci.fit_batch` (as are extra keyword
            arguments): ``maxiter``, ``tol``, ``method``, ``target``,
            ``learning_rate``, ...

        Returns
        -------
        xarray.Dataset
            ``curvefit_coefficients`` (dims: the others, ``param``) and
            ``curvefit_covariance`` (``cov_i``, ``cov_j``); coordinates
            ``param``, ``cov_i``, ``cov_j`` hold the parameter names; no
            attrs (as xarray's).
        """
        obj = self._obj
        if errors not in ("raise", "ignore"):
            raise ValueError('errors must be either "raise" or "ignore"')
        fit_kwargs = dict(fit_kwargs)
        fit_kwargs.update(kwargs or {})
        for bad in ("p0", "bounds", "parallel"):
            if bad in fit_kwargs:
                raise TypeError(f"{bad!r} cannot be passed through kwargs "
                                f"here")
        if not (callable(func) or isinstance(func, str)):
            raise TypeError(f"func must be a callable f(x, *params), a "
                            f"Model or a built-in model name, got {func!r}")
        model = _models.as_model(func, param_names)
        names = list(model.param_names)
        n_params = len(names)
        p0 = {} if p0 is None else dict(p0)
        bounds = {} if bounds is None else dict(bounds)
        for what, d in (("p0", p0), ("bounds", bounds)):
            unknown = set(d) - set(names)
            if unknown:
                raise ValueError(f"{what} has unknown parameter(s) "
                                 f"{sorted(unknown)}; the model's are "
                                 f"{names}")

        # coordinates and the dims they reduce (as xarray.curvefit)
        reduce = [d for d in _as_list(reduce_dims)]
        coord_list = _as_list(coords)
        coords_ = [obj[c] if isinstance(c, str) else c for c in coord_list]
        for c in coords_:
            if not isinstance(c, xr.DataArray):
                raise TypeError(f"coords must be names or DataArrays, got "
                                f"{type(c).__name__}")
            reduce += [d for d in obj.dims if c.equals(obj[d])]
        reduce = list(dict.fromkeys(reduce))
        preserved = [d for d in obj.dims if d not in reduce]
        if not reduce:
            raise ValueError(
                "No arguments to `coords` were identified as a dimension on "
                "the calling object, and no dims were supplied to "
                "`reduce_dims`. This would result in fitting on scalar data.")
        if len(coords_) != max(model.xdim, 1):
            raise ValueError(f"model {model.name!r} takes "
                             f"{max(model.xdim, 1)} coordinate(s), got "
                             f"{len(coords_)}")
        for what, d in (("p0", p0), ("bounds", bounds)):
            for name, val in d.items():
                vals = val if what == "bounds" else (val,)
                if what == "bounds" and len(vals) != 2:
                    raise ValueError(f"bounds[{name!r}] must be (lower, "
                                     f"upper)")
                for v in vals:
                    if isinstance(v, xr.DataArray):
                        unexpected = set(v.dims) - set(preserved)
                        if unexpected:
                            raise ValueError(
                                f"{what} for {name!r} has unexpected "
                                f"dimensions {tuple(unexpected)}. It should "
                                f"only have dimensions that are in data "
                                f"dimensions {preserved}.")
        coords_ = list(xr.broadcast(*coords_))
        coords_ = [c.broadcast_like(obj, exclude=preserved) for c in coords_]

        has_p0 = [n in p0 for n in names]
        p0_args = [p0.get(n, 1.0) for n in names]
        lo_args = [bounds[n][0] if n in bounds else -np.inf for n in names]
        hi_args = [bounds[n][1] if n in bounds else np.inf for n in names]

        data = obj
        is_dask = obj.chunks is not None
        if is_dask:
            data = obj.chunk({d: -1 for d in reduce})
            coords_ = [c.chunk({d: -1 for d in reduce if d in c.dims})
                       if c.chunks is not None else c for c in coords_]
            _warm(model, np.float32 if fit_kwargs.get("dtype") in (
                np.float32, "float32") else np.float64)

        kw = dict(model=model, n_coords=len(coords_), n_params=n_params,
                  n_core=len(reduce), has_p0=tuple(has_p0), errors=errors,
                  skipna=bool(skipna), fit_kwargs=fit_kwargs)
        popt, pcov = xr.apply_ufunc(
            _fit_block, data, *coords_, *p0_args, *lo_args, *hi_args,
            kwargs=kw,
            input_core_dims=[reduce] * (1 + len(coords_))
            + [[]] * (3 * n_params),
            output_core_dims=[["param"], ["cov_i", "cov_j"]],
            exclude_dims=set(reduce),
            dask="parallelized",
            output_dtypes=[np.float64, np.float64],
            dask_gufunc_kwargs={"output_sizes": {"param": n_params,
                                                 "cov_i": n_params,
                                                 "cov_j": n_params}},
        )
        result = xr.Dataset({"curvefit_coefficients": popt,
                             "curvefit_covariance": pcov})
        result = result.assign_coords({"param": names, "cov_i": names,
                                       "cov_j": names})
        # xarray copies the attrs of the (temporary) Dataset, which are empty
        # for a DataArray: so do we
        result.attrs = obj._to_temp_dataset().attrs.copy()
        return result
