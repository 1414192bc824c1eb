"""The xarray accessor ``.adamsci.curvefit``: xarray's layout, Dask, a real
distributed cluster."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import xarray as xr

import adamsci.accessor  # noqa: F401  (registers DataArray.adamsci)
from adamsci import models


def _gauss_np(x, a, c, s, b):
    return a * np.exp(-0.5 * ((x - c) / s) ** 2) + b


def _cube(ny=2, nx=3, nt=30, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(-4, 4, nt)
    a = rng.uniform(1, 3, (ny, nx))
    c = rng.uniform(-1, 1, (ny, nx))
    s = rng.uniform(0.6, 1.4, (ny, nx))
    b = rng.uniform(-0.5, 0.5, (ny, nx))
    y = _gauss_np(t, a[..., None], c[..., None], s[..., None], b[..., None])
    y = y + rng.normal(0, noise, y.shape)
    return xr.DataArray(y, dims=("y", "x", "t"),
                        coords={"t": t, "y": np.arange(ny),
                                "x": 10 + np.arange(nx)},
                        name="signal", attrs={"units": "counts"})


def _xarray_reference(da, p0_da, **kw):
    names = ("amplitude", "center", "sigma", "offset")
    guess = {n: p0_da.sel(param=n, drop=True) for n in names}

    def f(x, amplitude, center, sigma, offset):
        return _gauss_np(x, amplitude, center, sigma, offset)
    return da.curvefit("t", f, p0=guess, **kw)


def _guess_da(da):
    g = models.gaussian.guess(da.t.values,
                              da.values.reshape(-1, da.sizes["t"]))
    return xr.DataArray(g.reshape(da.shape[:-1] + (4,)),
                        dims=da.dims[:-1] + ("param",),
                        coords={"param": list(models.gaussian.param_names)})


def test_layout_and_values_match_xarray_curvefit():
    da = _cube()
    ours = da.adamsci.curvefit("t", models.gaussian, tol=1e-10, maxiter=5000)
    ref = _xarray_reference(da, _guess_da(da))
    assert set(ours.data_vars) == set(ref.data_vars) == {
        "curvefit_coefficients", "curvefit_covariance"}
    for name in ref.data_vars:
        assert ours[name].dims == ref[name].dims
    assert list(ours.param.values) == list(models.gaussian.param_names)
    assert list(ours.cov_i.values) == list(ours.cov_j.values) == \
        list(ours.param.values)
    xr.testing.assert_equal(ours.x, ref.x)
    assert ours.attrs == ref.attrs
    np.testing.assert_allclose(ours.curvefit_coefficients.values,
                               ref.curvefit_coefficients.values, rtol=2e-5,
                               atol=2e-6)
    np.testing.assert_allclose(ours.curvefit_covariance.values,
                               ref.curvefit_covariance.values, rtol=5e-3,
                               atol=1e-8)


def test_reduce_dims_fits_all_pixels_together():
    da = _cube(noise=0.0)
    one = da.isel(y=0, x=0)
    cube = one.expand_dims(x=np.arange(4)).transpose("x", "t").copy()
    res = cube.adamsci.curvefit("t", models.gaussian, reduce_dims="x",
                                tol=1e-10, maxiter=5000)
    assert res.curvefit_coefficients.dims == ("param",)
    single = one.adamsci.curvefit("t", models.gaussian, tol=1e-10,
                                  maxiter=5000)
    np.testing.assert_allclose(res.curvefit_coefficients.values,
                               single.curvefit_coefficients.values,
                               rtol=1e-6, atol=1e-8)


def test_p0_dataarray_bounds_and_errors():
    da = _cube()
    center0 = xr.DataArray(np.zeros(da.sizes["x"]), dims="x")
    res = da.adamsci.curvefit("t", models.gaussian,
                              p0={"center": center0},
                              bounds={"sigma": (0.1, 0.9)})
    sig = res.curvefit_coefficients.sel(param="sigma")
    assert float(sig.max()) <= 0.9
    with pytest.raises(ValueError, match="unknown parameter"):
        da.adamsci.curvefit("t", models.gaussian, p0={"width": 1.0})
    with pytest.raises(ValueError, match="unexpected dimensions"):
        da.adamsci.curvefit("t", models.gaussian,
                            p0={"center": xr.DataArray([0.0], dims="z")})
    with pytest.raises(ValueError, match="errors must be"):
        da.adamsci.curvefit("t", models.gaussian, errors="warn")
    with pytest.raises(ValueError, match="No arguments to `coords`"):
        da.adamsci.curvefit(xr.DataArray(np.arange(3.0), dims="q"),
                            models.gaussian)
    # a fit that does not converge: raise, or NaN with errors="ignore"
    with pytest.raises(RuntimeError, match="max_iterations"):
        da.adamsci.curvefit("t", models.gaussian, maxiter=2, polish=0)
    bad = da.copy()
    bad[0, 0] = np.nan                       # all-NaN curve: NaN, no error
    res = bad.adamsci.curvefit("t", models.gaussian, maxiter=2, polish=0,
                               errors="ignore")
    assert np.isnan(res.curvefit_coefficients.values).all()
    res = bad.adamsci.curvefit("t", models.gaussian)
    assert np.isnan(res.curvefit_coefficients[0, 0]).all()
    assert np.isfinite(res.curvefit_coefficients[1]).all()


def _plane(x, a, b, c):
    return a * x[0] + b * x[1] + c


def test_two_coordinates_and_plain_function():
    u = np.linspace(0, 1, 5)
    v = np.linspace(-1, 1, 4)
    coef = xr.DataArray([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]],
                        dims=("band", "k"))
    U = xr.DataArray(u, dims="u", coords={"u": u})
    V = xr.DataArray(v, dims="v", coords={"v": v})
    da = coef.isel(k=0) * U + coef.isel(k=1) * V + coef.isel(k=2)
    res = da.adamsci.curvefit(("u", "v"), _plane, tol=1e-12, maxiter=20000)
    np.testing.assert_allclose(res.curvefit_coefficients.values,
                               coef.values, atol=1e-8)
    ref = da.curvefit(("u", "v"), _plane)
    assert res.curvefit_coefficients.dims == ref.curvefit_coefficients.dims
    np.testing.assert_allclose(res.curvefit_coefficients.values,
                               ref.curvefit_coefficients.values, rtol=1e-6,
                               atol=1e-8)
    # the same function again: the same Model and kernel
    assert models.as_model(_plane) is models.as_model(_plane)
    res2 = da.adamsci.curvefit(("u", "v"), _plane, tol=1e-12, maxiter=20000)
    xr.testing.assert_identical(res2, res)
    with pytest.raises(ValueError, match="takes 2 coordinate"):
        da.adamsci.curvefit("u", _plane, reduce_dims="v")
    with pytest.raises(ValueError, match="param_names must be provided"):
        da.adamsci.curvefit(("u", "v"), lambda x, *p: p[0] * x[0])


def decay(t, a, k):
    return a * np.exp(-k * t)


def test_drop_in_for_xarray_curvefit():
    """The call that works with xarray works here, unchanged, with the same
    coefficients (1e-6 relative) and layout."""
    rng = np.random.default_rng(4)
    t = np.linspace(0, 5, 40)
    a = xr.DataArray(rng.uniform(1, 3, (3, 4)), dims=("y", "x"))
    k = xr.DataArray(rng.uniform(0.3, 1.5, (3, 4)), dims=("y", "x"))
    time = xr.DataArray(t, dims="time", coords={"time": t})
    da = a * np.exp(-k * time) + 0.02 * xr.DataArray(
        rng.normal(size=(3, 4, 40)), dims=("y", "x", "time"))
    kws = [{}, dict(p0={"a": 2.0, "k": 1.0}, bounds={"k": (0.0, 2.0)})]
    for kw in kws:       # p0 and bounds by parameter name, as xarray
        ours = da.adamsci.curvefit("time", decay, **kw)
        ref = da.curvefit("time", decay, **kw)
        for name in ref.variables:
            assert ours[name].dims == ref[name].dims, name
        xr.testing.assert_allclose(ours.curvefit_coefficients,
                                   ref.curvefit_coefficients, rtol=1e-6,
                                   atol=0)
        # the covariance at the (equal to 1e-6) optimum
        xr.testing.assert_allclose(ours.curvefit_covariance,
                                   ref.curvefit_covariance, rtol=1e-4,
                                   atol=0)


def test_dask_chunks_equal_in_memory():
    pytest.importorskip("dask")
    da = _cube(ny=4, nx=3)
    mem = da.adamsci.curvefit("t", models.gaussian)
    lazy = da.chunk({"y": 2, "t": 10}).adamsci.curvefit("t", models.gaussian)
    assert lazy.curvefit_coefficients.chunks is not None
    out = lazy.compute(scheduler="threads")
    xr.testing.assert_allclose(out, mem, rtol=0, atol=0)


def test_distributed_cluster_equals_in_memory():
    distributed = pytest.importorskip("distributed")
    da = _cube(ny=4, nx=5, nt=40)
    mem = da.adamsci.curvefit("t", models.gaussian)
    lazy = da.chunk({"y": 1}).adamsci.curvefit("t", models.gaussian)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with distributed.LocalCluster(n_workers=2, threads_per_worker=2,
                                      processes=True,
                                      dashboard_address=None) as cluster, \
                distributed.Client(cluster) as client:
            out = client.compute(lazy).result()
            pids = client.run(os.getpid)
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
    xr.testing.assert_allclose(out, mem, rtol=0, atol=0)


def test_import_adamsci_does_not_register_the_accessor():
    code = ("import adamsci, xarray as xr, sys\n"
            "assert not hasattr(xr.DataArray, 'adamsci')\n"
            "assert 'numba' not in sys.modules\n"
            "import adamsci.accessor\n"
            "assert hasattr(xr.DataArray, 'adamsci')\n")
    subprocess.run([sys.executable, "-c", code], check=True,
                   cwd=os.path.dirname(os.path.dirname(__file__)))
