"""adamsci.fit_batch: against scipy.optimize.curve_fit, masks, status codes,
bad input, CPU vs CUDA (simulator)."""
import inspect
import json
import threading
import warnings

import numpy as np
import pytest
from scipy.optimize import curve_fit

from adamsci import fit_batch, models, schedules
from adamsci.batch import STATUS
from adamsci.models import Model, ModelCompileError


def _gauss_np(x, a, c, s, b):
    return a * np.exp(-0.5 * ((x - c) / s) ** 2) + b


def _problem(n=12, m=40, noise=0.02, seed=0):
    rng = np.random.default_rng(seed)
    x = np.linspace(-5, 5, m)
    truth = np.c_[rng.uniform(1, 3, n), rng.uniform(-1, 1, n),
                  rng.uniform(0.6, 1.5, n), rng.uniform(-0.5, 0.5, n)]
    y = _gauss_np(x, *truth.T[:, :, None]) + rng.normal(0, noise, (n, m))
    return x, y, truth


@pytest.fixture(scope="module")
def problem():
    return _problem()


def _curve_fit_all(x, y, p0, **kw):
    out, cov = [], []
    for i in range(y.shape[0]):
        xi = x if x.ndim == 1 else x[i]
        popt, pcov = curve_fit(_gauss_np, xi, y[i], p0=p0[i], **kw)
        out.append(popt)
        cov.append(pcov)
    return np.array(out), np.array(cov)


def test_matches_curve_fit(problem):
    x, y, truth = problem
    ds = fit_batch(models.gaussian, x, y, tol=1e-10, maxiter=5000)
    popt, pcov = _curve_fit_all(x, y, ds.p0.values)
    assert (ds.status.values == 0).all()
    np.testing.assert_allclose(ds.params.values, popt, rtol=2e-5, atol=2e-6)
    # errors from the Jacobian at the solution, scaled by chi2/(M-N)
    np.testing.assert_allclose(ds.params_err.values,
                               np.sqrt(np.diagonal(pcov, 0, 1, 2)),
                               rtol=1e-3)
    np.testing.assert_allclose(ds.covariance.values, pcov, rtol=2e-3,
                               atol=1e-3 * np.abs(pcov).max())
    chi2 = ((y - _gauss_np(x, *popt.T[:, :, None])) ** 2).sum(1)
    np.testing.assert_allclose(ds.chi2.values, chi2, rtol=1e-6)
    assert ds.params.dims == ("fit", "param")
    assert list(ds.param.values) == ["amplitude", "center", "sigma",
                                     "offset"]
    assert ds.covariance.dims == ("fit", "cov_i", "cov_j")


def test_default_tolerance_is_accurate(problem):
    x, y, truth = problem
    ds = fit_batch(models.gaussian, x, y)
    popt, _ = _curve_fit_all(x, y, ds.p0.values)
    np.testing.assert_allclose(ds.params.values, popt, rtol=1e-3, atol=1e-4)
    assert (ds.nit.values < 200).all()


def test_x_scale_modes(problem):
    x, y, _ = problem
    ref = fit_batch(models.gaussian, x, y, tol=1e-10, maxiter=5000)
    assert ref.attrs["options"].count('"x_scale": "whiten"') == 1
    for xs in ("jac", [1.0, 0.1, 0.1, 0.1], np.full((y.shape[0], 4), 0.5)):
        ds = fit_batch(models.gaussian, x, y, tol=1e-10, maxiter=5000,
                       x_scale=xs)
        assert (ds.status.values == 0).all()
        np.testing.assert_allclose(ds.params.values, ref.params.values,
                                   rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="x_scale must be one of"):
        fit_batch(models.gaussian, x, y, x_scale="auto")


def test_sigma_and_absolute_sigma(problem):
    x, y, _ = problem
    sigma = np.linspace(0.01, 0.05, x.size)
    for absolute in (False, True):
        ds = fit_batch(models.gaussian, x, y[:4], sigma=sigma, tol=1e-10,
                       maxiter=5000, absolute_sigma=absolute)
        popt, pcov = _curve_fit_all(x, y[:4], ds.p0.values, sigma=sigma,
                                    absolute_sigma=absolute)
        np.testing.assert_allclose(ds.params.values, popt, rtol=2e-5,
                                   atol=2e-6)
        np.testing.assert_allclose(ds.params_err.values,
                                   np.sqrt(np.diagonal(pcov, 0, 1, 2)),
                                   rtol=1e-3)
        assert ds.attrs["absolute_sigma"] == ("true" if absolute else "false")


def test_per_fit_xdata_and_p0(problem):
    x, y, truth = problem
    xs = np.stack([x + 0.1 * i for i in range(y.shape[0])])
    ys = _gauss_np(xs, *truth.T[:, :, None])
    ds = fit_batch(models.gaussian, xs, ys, truth * 1.05, tol=1e-10,
                   maxiter=5000)
    np.testing.assert_allclose(ds.params.values, truth, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(ds.p0.values, truth * 1.05)
    shared = fit_batch(models.gaussian, x, y, truth[0] * 1.05)
    np.testing.assert_allclose(shared.p0.values,
                               np.tile(truth[0] * 1.05, (y.shape[0], 1)))


def test_nan_points_are_masked_and_inputs_untouched(problem):
    x, y, _ = problem
    y = y[:5].copy()
    y[1, 3:9] = np.nan
    y[2, ::3] = np.nan
    y_before = y.copy()
    p0 = models.gaussian.guess(x, y)
    ds = fit_batch(models.gaussian, x, y, p0, tol=1e-10, maxiter=5000)
    np.testing.assert_array_equal(y, y_before)      # not written to
    for i in (1, 2):
        keep = np.isfinite(y[i])
        ref = fit_batch(models.gaussian, x[keep], y[i:i + 1, keep],
                        p0[i], tol=1e-10, maxiter=5000)
        np.testing.assert_allclose(ds.params.values[i], ref.params.values[0],
                                   rtol=1e-10)
        popt, _ = curve_fit(_gauss_np, x[keep], y[i, keep], p0=p0[i])
        np.testing.assert_allclose(ds.params.values[i], popt, rtol=2e-5,
                                   atol=2e-6)
    # a NaN x masks that point for every fit
    xn = x.copy()
    xn[0] = np.nan
    a = fit_batch(models.gaussian, xn, y[:1], p0[0])
    b = fit_batch(models.gaussian, x[1:], y[:1, 1:], p0[0])
    np.testing.assert_allclose(a.params.values, b.params.values, rtol=1e-12)


def test_status_codes(problem):
    x, y, _ = problem
    y = y[:6].copy()
    y[0] = np.nan                      # no valid point
    y[1, 3:] = np.nan                  # 3 points < 4 parameters
    p0 = np.tile([2.0, 0.0, 1.0, 0.0], (6, 1))
    p0[2, 2] = 0.0                     # sigma = 0: chi2 is NaN at p0
    ds = fit_batch(models.gaussian, x, y, p0, maxiter=500)
    st = ds.status.values
    assert st[0] == 3 and st[1] == 4 and st[2] == 2
    assert (st[3:] == 0).all()
    assert np.isnan(ds.params.values[:2]).all()
    assert np.isnan(ds.covariance.values[:2]).all()
    assert np.isnan(ds.chi2.values[0]) and ds.nit.values[0] == 0
    np.testing.assert_array_equal(ds.params.values[2], p0[2])
    assert np.isfinite(ds.params.values[3:]).all()
    few = fit_batch(models.gaussian, x, y[3:], maxiter=3, polish=0)
    assert (few.status.values == 1).all() and (few.nit.values == 3).all()
    # the polish (Levenberg-Marquardt steps from Adam's best point) ends
    # them at the optimum: converged, a few steps more
    polished = fit_batch(models.gaussian, x, y[3:], maxiter=3)
    assert (polished.status.values == 0).all()
    assert ((polished.nit.values > 3) & (polished.nit.values <= 8)).all()
    popt, _ = _curve_fit_all(x, y[3:], polished.p0.values)
    np.testing.assert_allclose(polished.params.values, popt, rtol=1e-6,
                               atol=1e-7)
    # documented as CF flags
    assert ds.status.attrs["flag_meanings"].split() == [
        STATUS[k] for k in sorted(STATUS)]
    assert json.loads(ds.attrs["status_meanings"])["0"] == "converged"


def test_exactly_n_params_points_gives_inf_covariance():
    x = np.array([-1.0, 0.0, 1.0, 2.0])
    y = _gauss_np(x, 2.0, 0.2, 1.0, 0.1)[None]
    ds = fit_batch(models.gaussian, x, y, [1.9, 0.1, 1.1, 0.0], tol=1e-12,
                   maxiter=20000)
    assert np.isinf(ds.covariance.values).all()
    np.testing.assert_allclose(ds.params.values[0], [2.0, 0.2, 1.0, 0.1],
                               rtol=1e-4)


def test_bounds(problem):
    x, y, truth = problem
    lo = [0.0, -np.inf, 0.1, -np.inf]
    hi = [np.inf, np.inf, 1.0, np.inf]
    ds = fit_batch(models.gaussian, x, y, bounds=(lo, hi))
    assert (ds.params.values[:, 2] <= 1.0).all()
    wide = truth[:, 2] > 1.05
    assert np.allclose(ds.params.values[wide, 2], 1.0)
    popt = [curve_fit(_gauss_np, x, y[i], p0=ds.p0.values[i],
                      bounds=(lo, hi))[0] for i in np.nonzero(wide)[0]]
    np.testing.assert_allclose(ds.params.values[wide], popt, rtol=1e-3,
                               atol=1e-4)
    with pytest.raises(ValueError, match="p0 is outside bounds.*'sigma'"):
        fit_batch(models.gaussian, x, y, [2.0, 0.0, 1.5, 0.0],
                  bounds=(lo, hi))
    with pytest.raises(ValueError, match="lower bound must be < its upper"):
        fit_batch(models.gaussian, x, y, bounds=(hi, lo))
    with pytest.raises(ValueError, match="bounds must be a pair"):
        fit_batch(models.gaussian, x, y, bounds=3)
    with pytest.raises(ValueError, match=r"bounds\[0\] must have shape"):
        fit_batch(models.gaussian, x, y, bounds=([0, 0], hi))


def test_bad_input_messages(problem):
    x, y, _ = problem
    with pytest.raises(ValueError, match=r"xdata of model 'gaussian' .*"
                                         r"must have shape \(n_points"):
        fit_batch(models.gaussian, x[:-1], y)
    with pytest.raises(ValueError, match="ydata must have shape"):
        fit_batch(models.gaussian, x, y[None])
    with pytest.raises(ValueError, match="p0 has 3 parameters"):
        fit_batch(models.gaussian, x, y, [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"p0 must have shape"):
        fit_batch(models.gaussian, x, y, np.ones((3, 4)))
    with pytest.raises(ValueError, match="p0 must be finite"):
        fit_batch(models.gaussian, x, y, [1.0, np.nan, 1.0, 0.0])
    with pytest.raises(ValueError, match="sigma must be a scalar or have"):
        fit_batch(models.gaussian, x, y, sigma=np.ones(3))
    with pytest.raises(ValueError, match="sigma must be > 0"):
        fit_batch(models.gaussian, x, y, sigma=np.zeros(x.size))
    with pytest.raises(TypeError, match="ydata must hold real numbers"):
        fit_batch(models.gaussian, x, np.array([["a"] * x.size]))
    with pytest.raises(ValueError, match="target must be one of"):
        fit_batch(models.gaussian, x, y, target="tpu")
    with pytest.raises(ValueError, match="method must be one of"):
        fit_batch(models.gaussian, x, y, method="lbfgs")
    with pytest.raises(ValueError, match="maxiter must be an int"):
        fit_batch(models.gaussian, x, y, maxiter=-1)
    with pytest.raises(ValueError, match="lr_decay"):
        fit_batch(models.gaussian, x, y, lr_decay=0.0)
    with pytest.raises(ValueError, match="x_scale"):
        fit_batch(models.gaussian, x, y, x_scale=[1.0, 1.0, 0.0, 1.0])
    with pytest.raises(TypeError, match="learning_rate must be a number"):
        fit_batch(models.gaussian, x, y, learning_rate=lambda t: 0.1)
    with pytest.raises(TypeError, match="p0 is required"):
        fit_batch(lambda x, a: a * x, x, y)
    with pytest.raises(ValueError, match="param_names must be provided"):
        fit_batch(lambda x, *p: p[0] * x, x, y, [1.0])
    with pytest.raises(ValueError, match=r"xdata of model 'gaussian2d'"):
        fit_batch(models.gaussian2d, x, y)


def test_model_that_fails_to_compile(problem):
    x, y, _ = problem

    def summed(x, a, b):
        return a * x + b * np.sum(x)

    with pytest.raises(ModelCompileError) as info:
        fit_batch(summed, x, y, [1.0, 0.0])
    msg = str(info.value)
    assert "'summed'" in msg and "np.sum" in msg and "line" in msg

    def wrong_shape(x, a):
        return a                 # a number, not a value per point: compiles

    ds = fit_batch(wrong_shape, x, y[:2], [1.0])     # a constant model
    np.testing.assert_allclose(ds.params.values[:, 0], y[:2].mean(1),
                               rtol=1e-8)


def _gauss_user(x, a, c, s, b):
    return a * np.exp(-0.5 * ((x - c) / s) ** 2) + b


def test_user_model_is_the_built_in(problem):
    """A user's model written as the built-in is compiled to the same code:
    the same results, bit for bit, and its own parameter names."""
    x, y, _ = problem
    p0 = models.gaussian.guess(x, y)
    a = fit_batch(models.gaussian, x, y, p0)
    b = fit_batch(_gauss_user, x, y, p0)
    np.testing.assert_array_equal(b.params.values, a.params.values)
    np.testing.assert_array_equal(b.covariance.values, a.covariance.values)
    assert list(b.param.values) == ["a", "c", "s", "b"]
    assert b.attrs["model"] == "_gauss_user"


def test_model_with_nan_for_some_fits(problem):
    """A model that is NaN for some fits' parameters: status per fit, the
    other fits unaffected."""
    x, y, _ = problem

    def sqrt_width(x, a, c, s, b):
        return a * np.exp(-0.5 * ((x - c) / np.sqrt(s)) ** 2) + b

    p0 = np.tile([2.0, 0.0, 1.0, 0.0], (4, 1))
    p0[1, 2] = -1.0                       # sqrt(-1): NaN at p0
    ds = fit_batch(sqrt_width, x, y[:4], p0)
    assert ds.status.values[1] == 2
    assert (ds.status.values[[0, 2, 3]] == 0).all()
    one = fit_batch(sqrt_width, x, y[:1], p0[:1])
    np.testing.assert_array_equal(one.params.values[0], ds.params.values[0])


def test_parallel_serial_and_thread_agree(problem):
    x, y, _ = problem
    y = np.tile(y, (6, 1))                     # 72 fits: parallel by default
    par = fit_batch(models.gaussian, x, y)
    assert par.attrs["parallel"] == "true"
    ser = fit_batch(models.gaussian, x, y, parallel=False)
    assert ser.attrs["parallel"] == "false"
    np.testing.assert_array_equal(par.params.values, ser.params.values)
    box = {}

    def work():
        box["ds"] = fit_batch(models.gaussian, x, y, parallel=True)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    # threads of the same serial kernel: allowed off the main thread too
    assert box["ds"].attrs["parallel"] == "true"
    np.testing.assert_array_equal(box["ds"].params.values, par.params.values)
    box.clear()
    t = threading.Thread(target=lambda: box.setdefault(
        "ds", fit_batch(models.gaussian, x, y)))
    t.start()
    t.join()
    assert box["ds"].attrs["parallel"] == "false"    # by default: serial


def test_no_recompilation(problem):
    """One kernel per model, dtype and optimizer: the number of fits, the
    data, p0, sigma, per-fit x and serial/parallel reuse it."""
    x, y, _ = problem
    fit_batch(models.gaussian, x, y[:2], parallel=False)
    kern = models.gaussian.compiled.module.fit_cpu
    n = len(kern.signatures)
    for _ in range(2):
        fit_batch(models.gaussian, x, y[:3], parallel=False, maxiter=7,
                  learning_rate=schedules.cosine(0.3, 50))
        fit_batch(models.gaussian, x.reshape(1, -1).repeat(3, 0), y[:3],
                  parallel=False, sigma=np.ones((3, x.size)))
        fit_batch(models.gaussian, x, np.tile(y, (8, 1)), parallel=True,
                  p0=[2.0, 0.0, 1.0, 0.0])
    assert len(kern.signatures) == n


def test_adamax_and_schedule(problem):
    x, y, _ = problem
    ds = fit_batch(models.gaussian, x, y, method="adamax", maxiter=3000)
    ref = fit_batch(models.gaussian, x, y)
    assert (ds.status.values == 0).all()
    np.testing.assert_allclose(ds.params.values, ref.params.values,
                               rtol=1e-3, atol=1e-3)
    sch = fit_batch(models.gaussian, x, y,
                    learning_rate=schedules.exponential(0.3, 0.99))
    assert "exponential" in json.loads(sch.attrs["options"])["learning_rate"]
    np.testing.assert_allclose(sch.params.values, ref.params.values,
                               rtol=1e-3, atol=1e-3)


def test_attrs_are_netcdf_safe(problem, tmp_path):
    import xarray as xr
    x, y, _ = problem
    ds = fit_batch(models.gaussian, x, y[:3])
    for v in ds.attrs.values():
        assert isinstance(v, (str, int, float)) and not isinstance(v, bool)
    path = tmp_path / "fits.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    back = xr.load_dataset(path, engine="h5netcdf")
    xr.testing.assert_identical(back.drop_vars(["param", "cov_i", "cov_j"]),
                                ds.drop_vars(["param", "cov_i", "cov_j"]))
    assert list(back.param.values) == list(ds.param.values)


def test_empty_batch_and_single_row(problem):
    x, y, _ = problem
    empty = fit_batch(models.gaussian, x, y[:0], [1.0, 0.0, 1.0, 0.0])
    assert empty.sizes["fit"] == 0
    one = fit_batch(models.gaussian, x, y[0])
    assert one.sizes["fit"] == 1 and one.status.values[0] == 0


def test_gaussian2d_on_pixels_in_float32():
    """Gpufit's configuration: 2-D Gaussian on pixels, float32 data."""
    xy = models.pixel_grid(6).astype(np.float32)
    truth = np.array([[5.0, 2.3, 2.7, 1.1, 0.5], [2.0, 3.0, 1.5, 0.8, 1.0]])
    y = np.array([models.gaussian2d(xy.astype(float), *t) for t in truth],
                 dtype=np.float32)
    ds = fit_batch(models.gaussian2d, xy, y, tol=1e-8, maxiter=5000)
    assert ds.params.dtype == np.float32 and ds.attrs["dtype"] == "float32"
    assert (ds.status.values == 0).all()
    np.testing.assert_allclose(ds.params.values, truth, rtol=2e-4,
                               atol=2e-4)


# --------------------------------------------------------------------------
# CUDA (the simulator in CI: tiny sizes)
# --------------------------------------------------------------------------

def _tiny():
    x = np.linspace(-3, 3, 8)
    truth = np.array([[2.0, 0.3, 1.2, 0.5], [1.0, -1.0, 0.8, 0.2],
                      [1.5, 0.0, 1.0, 0.1]])
    rng = np.random.default_rng(0)
    y = _gauss_np(x, *truth.T[:, :, None]) + 0.01 * rng.normal(size=(3, 8))
    y[2, 1] = np.nan
    return x, y


def test_kernel_twins_have_the_same_signature():
    """The CUDA kernel takes the CPU driver's arguments but the range of
    fits (the grid's)."""
    from adamsci.kernels import cuda_batch
    cpu = inspect.signature(models.gaussian.compiled.module.fit_cpu.py_func)
    text = cuda_batch.TEMPLATE.split("def fit_cuda(")[1].split(")")[0]
    cuda_params = [p.strip() for p in text.replace("\n", " ").split(",")]
    assert list(cpu.parameters)[:-2] == cuda_params
    assert list(cpu.parameters)[-2:] == ["lo", "hi"]


@pytest.mark.cuda
def test_cuda_matches_cpu():
    x, y = _tiny()
    kw = dict(maxiter=25, tol=1e-3)
    cpu = fit_batch(models.gaussian, x, y, parallel=False, **kw)
    gpu = fit_batch(models.gaussian, x, y, target="cuda",
                    threads_per_block=2, **kw)    # 2 blocks, a partial one
    assert gpu.attrs["target"] == "cuda"
    np.testing.assert_array_equal(gpu.status.values, cpu.status.values)
    np.testing.assert_array_equal(gpu.nit.values, cpu.nit.values)
    np.testing.assert_allclose(gpu.params.values, cpu.params.values,
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gpu.covariance.values, cpu.covariance.values,
                               rtol=1e-9, atol=1e-12)


@pytest.mark.cuda
def test_cuda_user_model_float32_and_masks():
    x, y = _tiny()
    y = y.copy()
    y[0] = np.nan
    user = Model(_gauss_user)
    kw = dict(maxiter=10, dtype="float32")
    p0 = [1.5, 0.0, 1.0, 0.2]
    cpu = fit_batch(user, x, y, p0, parallel=False, **kw)
    gpu = fit_batch(user, x, y, p0, target="cuda", **kw)
    assert gpu.params.dtype == np.float32
    np.testing.assert_array_equal(gpu.status.values, cpu.status.values)
    assert gpu.status.values[0] == 3
    np.testing.assert_allclose(gpu.params.values[1:], cpu.params.values[1:],
                               rtol=1e-5, atol=1e-5)


def test_cuda_unavailable_message(monkeypatch):
    import os
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or os.path.exists(
            "/dev/nvidiactl"):
        pytest.skip("a CUDA target is available here")
    x, y = _tiny()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises((RuntimeError, ImportError), match="CUDA"):
            fit_batch(models.gaussian, x, y, target="cuda")
