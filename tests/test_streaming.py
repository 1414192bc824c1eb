"""curve_fit's engine: losses, the minibatch order, both engines, data read
chunk by chunk (netCDF, zarr, dask, a dask.distributed cluster) and bad
input. References are scipy and plain NumPy, written independently."""
import os

import numpy as np
import pytest
import scipy.optimize as so

import adamsci
from adamsci import streaming
from adamsci.fitting import curve_fit
from adamsci.kernels import stream


def decay(x, a, tau, c):
    return a * np.exp(-x / tau) + c


P0 = [1.0, 1.0, 0.0]


@pytest.fixture(scope="module")
def big():
    rng = np.random.default_rng(7)
    m = 60_000
    x = rng.uniform(0, 10, m)
    y = decay(x, 2.0, 3.0, 0.5) + 0.5 * rng.normal(size=m)
    return x, y


@pytest.fixture(scope="module")
def reference(big):
    x, y = big
    popt, pcov = so.curve_fit(decay, x, y, p0=P0)
    return popt, np.sqrt(np.diag(pcov)), pcov


# -- the minibatch order -------------------------------------------------------
@pytest.mark.parametrize("m", [1, 15, 16, 17, 1000, 4099])
def test_each_epoch_visits_every_point_once(m):
    s = np.array([3, 0, 0, 0], np.int64)
    out = np.empty(m, np.int64)
    stream.batch_points(s, m, m, True, out)
    assert sorted(out.tolist()) == list(range(m))
    assert s[1] == 1 and s[2] == 0 and s[3] == 1          # one epoch done
    again = np.empty(m, np.int64)
    stream.batch_points(s, m, m, True, again)
    assert sorted(again.tolist()) == list(range(m))
    if m > 64:
        assert not np.array_equal(out, again)          # a new order
        # blocks of 16 consecutive points, spread over the data
        assert np.all(np.diff(out[:16]) == 1)
        assert np.ptp(out[:64]) > m // 4


def test_order_is_reproducible_and_resumable():
    m, b = 1000, 64
    a = np.array([5, 0, 0, 0], np.int64)
    first = np.empty(30 * b, np.int64)
    stream.batch_points(a, m, 30 * b, True, first)
    s = np.array([5, 0, 0, 0], np.int64)
    parts = []
    for _ in range(30):
        out = np.empty(b, np.int64)
        stream.batch_points(s, m, b, True, out)
        parts.append(out)
        if len(parts) == 12:                     # stop and resume
            s = np.array(s.copy())
    np.testing.assert_array_equal(np.concatenate(parts), first)


# -- the engines ---------------------------------------------------------------
def test_compiled_and_numpy_engines_agree(big, reference):
    x, y = big
    popt, se, pcov = reference
    out = {}
    for compiled in (True, False):
        p, c, info, _, _ = curve_fit(decay, x, y, p0=P0, seed=1,
                                     compiled=compiled, full_output=True)
        out[compiled] = p, c
        assert info["engine"] == ("compiled" if compiled else "numpy")
        assert np.all(np.abs(p - popt) < 1e-3 * se)
        np.testing.assert_allclose(c, pcov, rtol=1e-4)
    np.testing.assert_allclose(out[True][0], out[False][0], rtol=1e-9)


def test_minibatch_answer_is_lms(big, reference):
    x, y = big
    popt, se, _ = reference
    p, _, info, mesg, _ = curve_fit(decay, x, y, p0=P0, batch_size=512,
                                    seed=2, full_output=True)
    assert np.all(np.abs(p - popt) < 1e-3 * se)
    assert info["result"].nit == 1000 and "Polish: converged" in mesg
    # without the polish, Adam's answer is near but not LM's
    q, _ = curve_fit(decay, x, y, p0=P0, batch_size=512, seed=2,
                     polish=False)
    assert np.all(np.abs(q - popt) < 50 * se)
    assert np.any(np.abs(q - popt) > 1e-2 * se)


def test_batch_size_larger_than_the_data(big):
    x, y = big
    small_x, small_y = x[:300], y[:300]
    p1, c1 = curve_fit(decay, small_x, small_y, p0=P0, batch_size=10_000)
    p2, c2 = curve_fit(decay, small_x, small_y, p0=P0, batch_size=None)
    np.testing.assert_allclose(p1, p2, rtol=1e-9)


# -- losses ------------------------------------------------------------------
@pytest.mark.parametrize("loss", ["soft_l1", "huber", "cauchy", "arctan"])
def test_robust_losses_match_least_squares(big, loss):
    x, y = big
    x, y = x[:3000], y[:3000].copy()
    y[::50] += 20.0                                  # outliers
    ref = so.least_squares(lambda p: decay(x, *p) - y, P0, loss=loss,
                           f_scale=0.7, x_scale="jac", xtol=1e-14,
                           ftol=1e-14, gtol=1e-14)
    for compiled in (True, False):
        p, _ = curve_fit(decay, x, y, p0=P0, loss=loss, f_scale=0.7,
                         compiled=compiled)
        np.testing.assert_allclose(p, ref.x, rtol=1e-6)
    lin, _ = curve_fit(decay, x, y, p0=P0)
    assert abs(lin[2] - 0.5) > abs(p[2] - 0.5)       # robust to outliers


def test_poisson_deviance_matches_a_likelihood_fit():
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 10, 5000)
    counts = rng.poisson(decay(x, 20.0, 3.0, 2.0)).astype(float)

    def nll(p):            # negative log-likelihood up to a constant
        mu = decay(x, *p)
        return np.sum(mu - counts * np.log(mu))
    ref = so.minimize(nll, [10.0, 2.0, 1.0], method="Nelder-Mead",
                      options=dict(xatol=1e-10, fatol=1e-12, maxiter=20000,
                                   maxfev=40000))
    p, pcov, info, _, _ = curve_fit(decay, x, counts, p0=[10.0, 2.0, 1.0],
                                    loss="poisson", absolute_sigma=True,
                                    full_output=True)
    np.testing.assert_allclose(p, ref.x, rtol=1e-5)
    # pcov = inverse Fisher information: sum J J^T / mu
    mu = decay(x, *p)
    e = np.exp(-x / p[1])
    J = np.stack([e, p[0] * x * e / p[1] ** 2, np.ones_like(x)], axis=1)
    np.testing.assert_allclose(pcov, np.linalg.inv((J / mu[:, None]).T @ J),
                               rtol=1e-6)
    # half the deviance
    d = mu - counts + np.where(counts > 0, counts * np.log(
        np.where(counts > 0, counts, 1) / mu), 0.0)
    assert info["cost"] == pytest.approx(d.sum(), rel=1e-10)
    with pytest.raises(ValueError, match="poisson"):
        curve_fit(decay, x, counts, sigma=np.ones_like(x), loss="poisson")


def test_unknown_loss_and_bad_arguments(big):
    x, y = big
    with pytest.raises(ValueError, match="loss must be one of"):
        curve_fit(decay, x, y, p0=P0, loss="l1")
    with pytest.raises(ValueError, match="f_scale"):
        curve_fit(decay, x, y, p0=P0, f_scale=0.0)
    with pytest.raises(ValueError, match="polish"):
        curve_fit(decay, x, y, p0=P0, polish="lm")
    with pytest.raises(ValueError, match="batch_size"):
        curve_fit(decay, x, y, p0=P0, batch_size=0)
    with pytest.raises(ValueError, match="compiled=True"):
        curve_fit(lambda x, a, b, c: a * np.sum(x) + b + c, x, y, p0=P0,
                  compiled=True)


# -- data read chunk by chunk ----------------------------------------------------
class Recorded:
    """An h5py-like array that records the slices read (and can vanish)."""

    def __init__(self, a, fail_after=None):
        self.a = a
        self.shape = a.shape
        self.dtype = a.dtype
        self.chunks = (4096,)
        self.reads = []
        self.fail_after = fail_after

    def __getitem__(self, key):
        if self.fail_after is not None and len(self.reads) >= \
                self.fail_after:
            raise FileNotFoundError("data.h5: No such file or directory")
        out = self.a[key]
        self.reads.append(out.size)
        return out


def test_lazy_arrays_are_read_in_chunks(big, reference):
    x, y = big
    popt, se, _ = reference
    rx, ry = Recorded(x), Recorded(y)
    p, c, info, _, _ = curve_fit(decay, rx, ry, p0=P0, seed=0,
                                 chunk_size=8192, full_output=True)
    assert np.all(np.abs(p - popt) < 1e-3 * se)
    assert max(rx.reads) <= 8192 and max(ry.reads) <= 8192
    assert sum(ry.reads) >= info["npass"] * y.size      # every pass read all
    assert info["fvec"] is None


def test_netcdf_zarr_and_dask_sources(tmp_path, big, reference):
    xr = pytest.importorskip("xarray")
    da = pytest.importorskip("dask.array")
    x, y = big
    popt, se, _ = reference
    ds = xr.Dataset({"x": ("point", x), "y": ("point", y)})
    nc = tmp_path / "d.nc"
    ds.to_netcdf(nc, engine="h5netcdf",
                 encoding={v: {"chunksizes": (10_000,)} for v in "xy"})
    fits = {}
    with xr.open_dataset(nc, engine="h5netcdf") as lazy:
        assert not lazy.y.variable._in_memory
        fits["netcdf"] = curve_fit(decay, lazy.x, lazy.y, p0=P0, seed=0)[0]
        assert not lazy.y.variable._in_memory           # never loaded
    with xr.open_dataset(nc, engine="h5netcdf", chunks={"point": 10_000}) \
            as chunked:
        fits["netcdf+dask"] = curve_fit(decay, chunked.x, chunked.y, p0=P0,
                                        seed=0)[0]
    if pytest.importorskip("zarr"):
        ds.to_zarr(tmp_path / "d.zarr", mode="w", consolidated=False,
                   encoding={v: {"chunks": (10_000,)} for v in "xy"})
        with xr.open_zarr(tmp_path / "d.zarr", consolidated=False) as z:
            fits["zarr"] = curve_fit(decay, z.x, z.y, p0=P0, seed=0)[0]
    fits["dask"] = curve_fit(decay, da.from_array(x, chunks=10_000),
                             da.from_array(y, chunks=10_000), p0=P0,
                             seed=0)[0]
    for name, p in fits.items():
        assert np.all(np.abs(p - popt) < 1e-3 * se), name


def test_chunked_bad_input(big):
    da = pytest.importorskip("dask.array")
    x, y = big
    with pytest.raises(ValueError, match="points"):
        curve_fit(decay, da.from_array(x[:-1], chunks=10_000),
                  da.from_array(y, chunks=10_000), p0=P0)
    with pytest.raises(ValueError, match="chunked alike"):
        curve_fit(decay, da.from_array(x, chunks=10_000),
                  da.from_array(y, chunks=7_000), p0=P0)
    y_nan = y.copy()
    y_nan[[123, 40_000]] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        curve_fit(decay, Recorded(x), Recorded(y_nan), p0=P0,
                  chunk_size=8192)
    keep = np.isfinite(y_nan)
    p_omit, c_omit = curve_fit(decay, Recorded(x), Recorded(y_nan), p0=P0,
                               chunk_size=8192, nan_policy="omit", seed=0)
    p_ref, c_ref = so.curve_fit(decay, x[keep], y[keep], p0=P0)
    assert np.all(np.abs(p_omit - p_ref) < 1e-3 * np.sqrt(np.diag(c_ref)))
    # the file disappears during the polish: a clear error, Adam's result
    # and history kept
    ry = Recorded(y)
    npass = curve_fit(decay, Recorded(x), ry, p0=P0, chunk_size=8192,
                      seed=0, full_output=True)[2]["npass"]
    chunks = -(-y.size // 8192)
    adam_reads = len(ry.reads) - npass * chunks
    with pytest.raises(OSError, match="ydata.*failed") as err:
        curve_fit(decay, Recorded(x), Recorded(
            y, fail_after=adam_reads + chunks + 3), p0=P0, chunk_size=8192,
            seed=0, record=10)
    res = getattr(err.value, "result", None)
    assert res is not None and res.nit == 1000
    assert res.history.sizes["iteration"] >= 100
    # during the Adam stage: the rows recorded so far
    with pytest.raises(OSError, match="ydata.*failed") as err:
        curve_fit(decay, Recorded(x), Recorded(y, fail_after=adam_reads // 2),
                  p0=P0, chunk_size=8192, seed=0, record=10)
    rows = err.value.history.sizes["iteration"]
    assert 10 <= rows < 100


@pytest.mark.slow
def test_passes_run_on_a_dask_distributed_cluster(big, reference):
    distributed = pytest.importorskip("distributed")
    da = pytest.importorskip("dask.array")
    x, y = big
    popt, se, _ = reference
    xd, yd = da.from_array(x, chunks=15_000), da.from_array(y, chunks=15_000)
    local = curve_fit(decay, xd, yd, p0=P0, seed=0)
    with distributed.LocalCluster(n_workers=2, processes=True,
                                  threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        remote = curve_fit(decay, xd, yd, p0=P0, seed=0)
        # the passes ran as tasks on both workers
        done = client.run(lambda: __import__("sys").modules.get(
            "adamsci.streaming") is not None)
        assert len(done) == 2 and all(done.values())
    np.testing.assert_allclose(remote[0], local[0], rtol=1e-12)
    np.testing.assert_allclose(remote[1], local[1], rtol=1e-9)
    assert np.all(np.abs(remote[0] - popt) < 1e-3 * se)


def test_data_chunking():
    x = np.arange(10.0)
    d = streaming.Data(x, x, chunk_size=4)
    assert d.bounds == [(0, 4), (4, 8), (8, 10)]
    X, Y, W = d.read(2)
    assert X.shape == (1, 1, 2) and W.size == 0
    np.testing.assert_array_equal(Y, [8.0, 9.0])
    assert os.path.basename(streaming.__file__) == "streaming.py"


@pytest.mark.parametrize("lazy", [False, True])
def test_resume_continues_the_same_minibatches(big, lazy, tmp_path):
    from adamsci import schedules
    x, y = big
    if lazy:
        x, y = Recorded(x), Recorded(y)
    kw = dict(p0=P0, batch_size=256, seed=4, polish=False, record=True,
              learning_rate=schedules.exponential(0.05, 1e-3, 400),
              full_output=True, chunk_size=8192)
    full = curve_fit(decay, x, y, maxiter=400, **kw)[2]["result"]
    first = curve_fit(decay, x, y, maxiter=200, **kw)[2]["result"]
    path = tmp_path / "first.nc"
    first.history.to_netcdf(path)
    second = curve_fit(decay, x, y, maxiter=200, resume=path,
                       **kw)[2]["result"]
    np.testing.assert_array_equal(second.x, full.x)
    assert second.epoch == full.epoch


def test_temporal_average_is_the_answer_without_polish(big):
    x, y = big
    p, _, info, _, _ = curve_fit(decay, x, y, p0=P0, batch_size=256, seed=0,
                                 polish=False, ema_decay=0.999,
                                 full_output=True)
    res = info["result"]
    np.testing.assert_array_equal(p, res.x_avg)
    assert not np.array_equal(res.x_avg, res.x)


def test_polish_from_p0_tries_a_subsample_first(big, reference):
    from adamsci import fitting
    from adamsci.compiler import compile_model
    x, y = big
    x, y = np.tile(x, 2), np.tile(y, 2)          # more than the subsample
    popt, se, _ = reference
    kern = streaming.Kernels(3, "linear", 1.0, False,
                             module=compile_model(decay).module)
    data = streaming.Data(x, y)
    data.finite = True
    passes = []

    def full_pass(p):
        passes.append(1)
        return kern.full_pass(p, data, None)
    sub = data.subsample(fitting._SUBSAMPLE, 0)
    assert sub is not data

    def sub_pass(p):
        return kern.full_pass(p, sub, None)
    lb, ub = np.full(3, -np.inf), np.full(3, np.inf)
    # the optimizer ended at the minimum: nothing to do on all the data
    assert fitting._polish_from_p0(full_pass, sub_pass, False, np.array(P0),
                                   popt, lb, ub, 300) is None
    assert passes == []
    # it ended elsewhere: the subsample's answer is polished on all the data
    wrong = popt + np.array([1.0, -1.0, 0.3])
    q, cur, n, converged, _ = fitting._polish_from_p0(
        full_pass, sub_pass, False, np.array(P0), wrong, lb, ub, 300)
    assert converged and 1 <= n == len(passes) <= 5
    assert np.all(np.abs(q - popt) < 1e-3 * se)
