"""Run histories (issue #4): recording, netCDF round trips, exact resume,
compiled recording, result reprs (golden files), progress bar."""
import json
import math
import os
import pathlib

import numpy as np
import pytest
import scipy.optimize as so
import xarray as xr
from numba import njit

import adamsci
from adamsci import history, schedules
from adamsci.history import Recorder, concat, open_history
import reference

GOLDEN = pathlib.Path(__file__).parent / "golden"
N = 5
_rng = np.random.default_rng(42)
A = _rng.standard_normal((40, N))
B = A @ np.linspace(-1.0, 1.0, N) + 0.3 * _rng.standard_normal(40)


def lsq(x):
    """0.5 |A x - b|^2 and its gradient (NumPy)."""
    r = A @ x - B
    return 0.5 * float(r @ r), A.T @ r


@njit(cache=True)
def lsq_jit(x):
    r = A @ x - B
    return 0.5 * (r @ r), A.T @ r


def mb_fun(x, a, b):
    r = a @ x - b
    return 0.5 * float(r @ r) / len(b), (a.T @ r) / len(b)


def minibatch(seed=7):
    return adamsci.MinibatchObjective(mb_fun, (A, B), batch_size=6,
                                      seed=seed)


def minimize(fun, method=adamsci.adam, x0=None, **options):
    options.setdefault("gtol", 0.0)
    x0 = np.zeros(N) if x0 is None else x0
    callback = options.pop("callback", None)
    return so.minimize(fun, x0, jac=True, method=method, options=options,
                       callback=callback)


def hist_vars(ds):
    return [v for v in ds.data_vars if "iteration" in ds[v].dims]


def assert_bitwise(a, b):
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), \
        f"not bitwise equal: max diff {np.max(np.abs(a - b))}"


# -----------------------------------------------------------------------------
# the Recorder on its own, against a list of rows
# -----------------------------------------------------------------------------
@pytest.mark.parametrize("every", [1, 3])
def test_recorder_matches_naive_rows_and_grows_geometrically(every):
    rng = np.random.default_rng(0)
    rec = Recorder(4, every=every, params=[3, "x1"], record_grad=True,
                   capacity=1)
    rows, caps = [], set()
    for it in range(200):
        x, g = rng.standard_normal(4), rng.standard_normal(4)
        f, sn, lr = rng.standard_normal(3)
        rec.append(it, x, f, g, step_norm=sn, learning_rate=lr)
        caps.add(rec.B.shape[0])
        if it % every == 0:
            rows.append((it, x[[3, 1]], f, np.linalg.norm(g), sn, lr,
                         g[[3, 1]]))
    ds = rec.to_dataset()
    assert ds.iteration.values.tolist() == [r[0] for r in rows]
    assert ds.param.values.tolist() == ["x3", "x1"]
    np.testing.assert_array_equal(ds.x.values, [r[1] for r in rows])
    np.testing.assert_array_equal(ds.fun.values, [r[2] for r in rows])
    np.testing.assert_allclose(ds.grad_norm.values, [r[3] for r in rows],
                               rtol=1e-14)
    np.testing.assert_array_equal(ds.step_norm.values, [r[4] for r in rows])
    np.testing.assert_array_equal(ds.learning_rate.values,
                                  [r[5] for r in rows])
    np.testing.assert_array_equal(ds.grad.values, [r[6] for r in rows])
    # doubling: few distinct capacities, never more than twice the rows
    assert len(caps) <= math.ceil(math.log2(len(rows))) + 2
    assert rec.B.shape[0] <= max(2 * len(rows), 16)


def test_recorder_validates_its_arguments():
    with pytest.raises(ValueError, match="record_params.*'z'"):
        Recorder(2, params=["z"])
    with pytest.raises(ValueError, match="record_params: index 5"):
        Recorder(2, params=[5])
    with pytest.raises(ValueError, match="param_names must be 2 strings"):
        Recorder(2, param_names=["a"])
    with pytest.raises(ValueError, match="unique"):
        Recorder(2, param_names=["a", "a"])
    with pytest.raises(ValueError, match="every"):
        Recorder(2, every=0)
    with pytest.raises(TypeError, match="dtype"):
        Recorder(2, dtype=np.int32)


# -----------------------------------------------------------------------------
# recording through minimize
# -----------------------------------------------------------------------------
def test_history_layout_values_and_attrs():
    sched = schedules.inverse_sqrt(0.05)
    res = minimize(lsq, maxiter=30, record=True, learning_rate=sched,
                   param_names=list("abcde"), record_grad=True)
    h = res.history
    assert dict(h.sizes) == {"iteration": 31, "param": N, "state_param": N}
    assert h.iteration.dtype == np.int64
    assert h.iteration.values.tolist() == list(range(31))
    assert h.param.values.tolist() == list("abcde")
    for v in ("x", "fun", "grad_norm", "step_norm", "learning_rate", "grad"):
        assert h[v].attrs["long_name"]
    assert h.x.dims == ("iteration", "param")
    # the iterates are Adam's, from the paper's formulas (tests/reference.py)
    xs = []

    def grad(theta, t):
        xs.append(theta.copy())
        return lsq(theta)[1]
    x_ref, _ = reference.adam(np.zeros(N), grad, 30, lr=sched)
    xs.append(x_ref)
    np.testing.assert_allclose(h.x.values, xs, rtol=1e-12, atol=1e-15)
    # the other variables are what they say, at each recorded x
    f_g = [lsq(x) for x in h.x.values]
    np.testing.assert_array_equal(h.fun.values, [f for f, _ in f_g])
    np.testing.assert_array_equal(h.grad.values, [g for _, g in f_g])
    np.testing.assert_allclose(h.grad_norm.values,
                               [np.linalg.norm(g) for _, g in f_g],
                               rtol=1e-13)
    assert np.isnan(h.step_norm[0]) and np.isnan(h.learning_rate[0])
    np.testing.assert_allclose(h.step_norm.values[1:], np.linalg.norm(
        np.diff(h.x.values, axis=0), axis=1), rtol=1e-12)
    np.testing.assert_allclose(h.learning_rate.values[1:],
                               [sched(t) for t in range(1, 31)], rtol=1e-15)
    # the end of the history is the result
    assert_bitwise(h.x.values[-1], res.x)
    assert h.fun.values[-1] == res.fun
    assert_bitwise(h.state_x.values, res.x)
    # attributes: method, every hyperparameter and option, versions, ...
    a = h.attrs
    assert a["method"] == "adam"
    for k in ("beta1", "beta2", "eps", "amsgrad", "maxiter", "gtol",
              "record", "param_names", "progress"):
        assert k in a, k
    # booleans as "true"/"false", unset options left out (tests/
    # test_history_attrs.py has the rest)
    assert a["amsgrad"] == "false" and "ema_decay" not in a
    assert json.loads(a["param_names"]) == list("abcde")
    assert a["learning_rate"] == repr(sched)
    for k in ("adamsci_version", "numba_version", "numpy_version",
              "scipy_version", "start_time", "message"):
        assert isinstance(a[k], str) and a[k]
    assert a["status"] == res.status and a["message"] == res.message
    for k, v in a.items():
        assert type(v) in (int, float, str), (k, v)
    for name, var in h.variables.items():
        for k, v in var.attrs.items():
            assert type(v) in (int, float, str), (name, k, v)


def test_every_kth_subset_and_no_x():
    full = minimize(lsq, maxiter=50, record=True, learning_rate=0.02)
    sub = minimize(lsq, maxiter=50, record=7, learning_rate=0.02,
                   record_params=["x4", 1])
    assert sub.history.iteration.values.tolist() == list(range(0, 50, 7))
    assert sub.history.param.values.tolist() == ["x4", "x1"]
    ref = full.history.sel(iteration=sub.history.iteration,
                           param=["x4", "x1"])
    for v in ("x", "fun", "grad_norm", "step_norm", "learning_rate"):
        xr.testing.assert_equal(sub.history[v], ref[v])
    assert "state_m" in sub.history and sub.history.state_m.size == N
    nox = minimize(lsq, maxiter=50, record=10, learning_rate=0.02,
                   record_x=False)
    assert "x" not in nox.history
    np.testing.assert_array_equal(nox.history.fun,
                                  full.history.fun[::10])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_temporal_average_is_recorded_and_matches_result(dtype):
    res = minimize(lsq, x0=np.zeros(N, dtype), maxiter=40, record=True,
                   learning_rate=0.05, ema_decay=0.9, amsgrad=True)
    h = res.history
    assert h.x.dtype == dtype and h.x_avg.dtype == dtype
    assert np.isnan(h.x_avg.values[0]).all()
    assert_bitwise(h.x_avg.values[-1], res.x_avg)
    # the average of the recorded iterates, from the definition
    d = 0.9
    avg = np.zeros(N)
    for t in range(1, 41):
        avg = d * avg + (1 - d) * h.x.values[t].astype(np.float64)
        np.testing.assert_allclose(h.x_avg.values[t], avg / (1 - d ** t),
                                   rtol=1e-5 if dtype == np.float32 else
                                   1e-12)


def test_python_schedule_and_callback_record_the_same_history():
    # a plain callable schedule and a callback take the general loop (the
    # hook after each evaluation); the fused hot loop must agree with it
    sched = schedules.cosine(0.05, 60, 0.1)
    seen = []
    slow = minimize(lsq, maxiter=60, record=3, learning_rate=lambda t:
                    sched(t), ema_decay=0.8, callback=lambda xk: seen.append(
                        xk[0]))
    fast = minimize(lsq, maxiter=60, record=3, learning_rate=sched,
                    ema_decay=0.8)
    assert len(seen) == 60
    for v in hist_vars(fast.history):
        assert_bitwise(slow.history[v].values, fast.history[v].values)
    np.testing.assert_allclose(fast.history.learning_rate.values[1:],
                               [sched(t) for t in range(3, 61, 3)],
                               rtol=1e-15)


def test_nonfinite_skip_rows_keep_iteration_numbers():
    calls = [0]

    def flaky(x):
        calls[0] += 1
        f, g = lsq(x)
        return (np.nan, g) if calls[0] % 5 == 0 else (f, g)
    res = minimize(flaky, maxiter=40, record=True, nonfinite="skip",
                   learning_rate=0.01)
    h = res.history
    assert h.iteration.values.tolist() == list(range(41))
    assert res.nskipped > 0
    good = np.isfinite(h.fun.values)
    np.testing.assert_array_equal(h.fun.values[good],
                                  [lsq(x)[0] for x in h.x.values[good]])


def test_minibatch_history_has_epochs():
    obj = minibatch()
    res = minimize(obj, maxiter=25, record=True, learning_rate=0.01)
    h = res.history
    # 40 points, batches of 6: 7 batches per epoch; the first is at x0
    assert h.epoch.values.tolist() == [i // 7 for i in range(26)]
    assert h.attrs["objective_n_batches"] == 7
    assert json.loads(h.attrs["state_objective"]) == obj.get_state()


def test_options_are_validated():
    with pytest.raises(ValueError, match="record must be"):
        minimize(lsq, maxiter=5, record=-2)
    with pytest.raises(ValueError, match="param_names must be 5"):
        minimize(lsq, maxiter=5, record=True, param_names=["a"])
    with pytest.raises(ValueError, match="record_params"):
        minimize(lsq, maxiter=5, record=True, record_params=["nope"])
    with pytest.raises(TypeError, match="progress"):
        minimize(lsq, maxiter=5, progress="yes")


def test_no_history_without_options():
    res = minimize(lsq, maxiter=5)
    assert "history" not in res
    opts = dict(adamsci.minimize.LOOP_OPTIONS)
    opt = adamsci.Adam()
    assert history.Session.create(opts, opt, np.zeros(3), lsq) is None


# -----------------------------------------------------------------------------
# netCDF
# -----------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["scipy", "h5netcdf"])
def test_netcdf_round_trip(tmp_path, engine):
    if engine == "h5netcdf":
        pytest.importorskip("h5netcdf")
        pytest.importorskip("h5py")
    obj = minibatch()
    res = minimize(obj, maxiter=20, record=3, learning_rate=0.01,
                   ema_decay=0.9, amsgrad=True, record_grad=True,
                   param_names=["a", "b", "c", "d", "e"])
    path = tmp_path / f"h.{engine}.nc"
    res.history.to_netcdf(path, engine=engine)
    back = open_history(path, engine=engine)
    xr.testing.assert_identical(back, res.history)
    with xr.open_dataset(path, engine=engine) as lazy:
        assert lazy.equals(res.history)


# -----------------------------------------------------------------------------
# exact resume
# -----------------------------------------------------------------------------
def _resume_case(method, opts, make_fun, tmp_path, every=1, steps=1000):
    half = steps // 2
    opts = dict(opts, record=every)
    full = minimize(make_fun(), method=method, maxiter=steps, **opts)
    first = minimize(make_fun(), method=method, maxiter=half, **opts)
    path = tmp_path / "first.nc"
    first.history.to_netcdf(path)
    second = minimize(make_fun(), method=method, maxiter=steps - half,
                      resume=path, **opts)
    assert_bitwise(second.x, full.x)
    assert second.fun == full.fun
    for a, b in zip(second.state, full.state):
        assert_bitwise(a, b)
    joined = concat([open_history(path), second.history])
    assert joined.iteration.values.tolist() == \
        full.history.iteration.values.tolist()
    for v in hist_vars(full.history) + ["state_x", "state_m",
                                        "state_step", "state_iteration"]:
        if v in full.history:
            assert_bitwise(joined[v].values, full.history[v].values)
    return full, second


@pytest.mark.parametrize("every", [1, 7])
def test_resume_adam_amsgrad_averaging_is_bitwise(tmp_path, every):
    full, second = _resume_case(
        adamsci.adam, dict(learning_rate=0.01, amsgrad=True, ema_decay=0.99),
        lambda: lsq, tmp_path, every=every)
    assert int(second.history.state_step) == 1000
    assert_bitwise(second.history.state_vmax.values, full.state.vmax)
    assert_bitwise(second.history.state_avg.values, full.state.avg)
    assert_bitwise(second.x_avg, full.x_avg)


def test_resume_adamax_is_bitwise(tmp_path):
    full, _ = _resume_case(adamsci.adamax, dict(learning_rate=0.01),
                           lambda: lsq, tmp_path)
    assert full.history.attrs["method"] == "adamax"


def test_resume_minibatch_is_bitwise_same_batches(tmp_path):
    full, second = _resume_case(adamsci.adam, dict(learning_rate=0.01),
                                minibatch, tmp_path)
    assert second.epoch == full.epoch
    assert json.loads(second.history.attrs["state_objective"]) == \
        json.loads(full.history.attrs["state_objective"])


def test_resume_with_x_scale_and_ftol_state(tmp_path):
    opts = dict(learning_rate=0.01, x_scale="auto", ftol=1e-9, patience=50)
    x0 = np.linspace(1.0, 2.0, N)
    full = minimize(lsq, x0=x0, maxiter=400, record=True, **opts)
    first = minimize(lsq, x0=x0, maxiter=200, record=True, **opts)
    second = minimize(lsq, x0=x0, maxiter=200, record=True,
                      resume=first.history, **opts)
    assert_bitwise(second.x, full.x)
    assert second.status == full.status


def test_resume_compiled_loop_is_bitwise(tmp_path):
    full, second = _resume_case(
        adamsci.adam, dict(learning_rate=0.01, compiled=True), lambda:
        lsq_jit, tmp_path, every=3, steps=200)
    assert second.history.iteration.values[0] == 102


def test_resume_without_recording_continues():
    first = minimize(lsq, maxiter=30, record=True, learning_rate=0.01)
    full = minimize(lsq, maxiter=60, learning_rate=0.01)
    second = minimize(lsq, maxiter=30, learning_rate=0.01,
                      resume=first.history)
    assert_bitwise(second.x, full.x)
    assert second.history.sizes["iteration"] == 0
    assert int(second.history.state_iteration) == 60


def test_resume_errors_leave_everything_untouched(tmp_path):
    obj = minibatch()
    first = minimize(obj, maxiter=20, record=True, learning_rate=0.01)
    path = tmp_path / "h.nc"
    first.history.to_netcdf(path)
    before = path.read_bytes()
    ds = first.history.copy(deep=True)
    fresh = minibatch()
    state = fresh.get_state()
    x0 = np.zeros(N)
    cases = [
        (dict(method=adamsci.adamax), ValueError, "made by method 'adam'"),
        (dict(x0=np.zeros(N + 1)), ValueError, "shape"),
        (dict(x0=np.zeros(N, np.float32)), TypeError, "dtype float64"),
        (dict(amsgrad=True), ValueError, "does not fit"),
    ]
    for resume in (path, first.history):
        for kw, exc, msg in cases:
            kw = dict(kw)
            method = kw.pop("method", adamsci.adam)
            with pytest.raises(exc, match=msg):
                minimize(fresh, method=method, x0=kw.pop("x0", x0),
                         maxiter=5, resume=resume, **kw)
            assert fresh.get_state() == state
    assert path.read_bytes() == before
    xr.testing.assert_identical(first.history, ds)
    assert_bitwise(x0, np.zeros(N))
    with pytest.raises(ValueError, match="not an adamsci history"):
        minimize(lsq, maxiter=5, resume=xr.Dataset())
    with pytest.raises(TypeError, match="resume must be"):
        minimize(lsq, maxiter=5, resume=42)
    with pytest.raises(ValueError, match="shuffle state"):
        minimize(lsq, maxiter=5, resume=path)


def test_concat_checks_continuity():
    a = minimize(lsq, maxiter=10, record=True)
    b = minimize(lsq, maxiter=10, record=True, resume=a.history)
    with pytest.raises(ValueError, match="ends at iteration"):
        concat([b.history, b.history])
    j = concat([a.history, b.history])
    assert j.iteration.values.tolist() == list(range(21))


# -----------------------------------------------------------------------------
# the compiled loop records inside Numba
# -----------------------------------------------------------------------------
def test_compiled_loop_records_same_history_as_python_loop(monkeypatch):
    opts = dict(maxiter=300, record=4, learning_rate=0.02, ema_decay=0.9,
                record_grad=True)
    c = minimize(lsq_jit, compiled=True, **opts)
    p = minimize(lsq_jit, compiled=False, **opts)
    assert c.history.sizes["iteration"] == 76
    for v in hist_vars(p.history):
        assert_bitwise(c.history[v].values, p.history[v].values)
    # a reservation of 3 rows: the buffer grows inside Numba (and in the
    # fused Python loop) and every row is still recorded
    monkeypatch.setattr(history, "_RESERVE", 3 * 8 * (7 + 2 * N))
    d = minimize(lsq_jit, compiled=True, **dict(opts, record=1))
    e = minimize(lsq_jit, compiled=False, **dict(opts, record=1))
    assert d.history.sizes["iteration"] == 301
    for v in hist_vars(p.history):
        assert_bitwise(d.history[v].values[::4], p.history[v].values)
        assert_bitwise(e.history[v].values, d.history[v].values)


# -----------------------------------------------------------------------------
# reprs (golden files) and the progress bar
# -----------------------------------------------------------------------------
def _golden_result():
    return minimize(lsq, maxiter=200, record=50, learning_rate=0.05,
                    ema_decay=0.9, param_names=["slope", "b", "c", "d",
                                                "offset"])


def _check_golden(name, text):
    path = GOLDEN / name
    if os.environ.get("ADAMSCI_REGEN_GOLDEN"):
        path.write_text(text + "\n")
    assert text + "\n" == path.read_text()


def test_text_repr_golden():
    res = _golden_result()
    _check_golden("result.txt", repr(res))
    assert str(res) == repr(res)


def test_html_repr_golden(monkeypatch):
    res = _golden_result()
    html = res._repr_html_()
    _check_golden("result.html", html)
    assert "slope" in html and '<table class="adamsci-params">' in html
    # the golden check does fail on a change
    monkeypatch.delenv("ADAMSCI_REGEN_GOLDEN", raising=False)
    with pytest.raises(AssertionError):
        _check_golden("result.html", html.replace("not converged",
                                                  "converged"))


def _luminance(hex_colour):
    """WCAG 2 relative luminance of #rrggbb."""
    c = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255
    c = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return float(c @ [0.2126, 0.7152, 0.0722])


def _contrast(a, b):
    hi, lo = sorted([_luminance(a), _luminance(b)], reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_html_repr_shows_success_at_a_glance():
    import re
    failed = _golden_result()._repr_html_()
    done = minimize(lsq, maxiter=200, learning_rate=0.05, gtol=1e3)
    assert done.success and not _golden_result().success
    ok = done._repr_html_()
    badge = re.compile(r'<span class="adamsci-badge adamsci-badge-(\w+)" '
                       r'style="background-color:(#[0-9a-f]{6});'
                       r'color:(#[0-9a-f]{6})">([^<]*)</span>')
    (kind_f, bg_f, fg_f, words_f), = badge.findall(failed)
    (kind_o, bg_o, fg_o, words_o), = badge.findall(ok)
    # words and colour both differ
    assert (kind_f, kind_o) == ("fail", "ok")
    assert words_f.endswith("not converged") and \
        words_o.endswith(" converged") and "not" not in words_o
    assert bg_f != bg_o
    r, g, b = (int(bg_f[i:i + 2], 16) for i in (1, 3, 5))
    assert r > g and r > b                              # red
    r, g, b = (int(bg_o[i:i + 2], 16) for i in (1, 3, 5))
    assert g > r and g > b                              # green
    for bg, fg in ((bg_f, fg_f), (bg_o, fg_o)):
        assert _contrast(bg, fg) >= 4.5                 # WCAG AA text
    assert 'class="adamsci-result adamsci-warn"' in failed
    assert 'class="adamsci-result adamsci-ok"' in ok
    # the style: the same badge colours; text keeps the theme's colour and
    # shading is semi-transparent, so light and dark themes both read
    style, = re.findall(r"<style>(.*?)</style>", failed, re.S)
    assert style == re.findall(r"<style>(.*?)</style>", ok, re.S)[0]
    assert f"adamsci-badge-fail {{background-color: {bg_f};}}" in style
    assert f"adamsci-badge-ok {{background-color: {bg_o};}}" in style
    colours = re.findall(r"(?<![-\w])color:\s*([^;]+);", style)
    assert colours and set(colours) == {"inherit", fg_f}
    for bg in re.findall(r"(?<![-\w])background:\s*([^;]+);", style):
        alpha = re.fullmatch(r"rgba\([\d\s,]+,\s*([\d.]+)\)", bg)
        assert bg == "transparent" or (alpha and float(alpha[1]) < 0.5), bg
    # every row of the parameter table, with its name
    params = re.findall(r'<td class="adamsci-name">([^<]*)</td>', failed)
    assert params == ["slope", "b", "c", "d", "offset"]


def test_repr_of_long_vectors_is_truncated():
    res = so.minimize(lambda x: (float(x @ x), 2 * x), np.ones(50), jac=True,
                      method=adamsci.adam, options={"maxiter": 3})
    text = repr(res)
    assert "x9 " in text and "x47" in text and "x20" not in text
    assert "..." in text


def test_progress_bar(capsys):
    quiet = minimize(lsq, maxiter=300, learning_rate=0.01)
    loud = minimize(lsq, maxiter=300, learning_rate=0.01, progress=True)
    assert_bitwise(loud.x, quiet.x)
    err = capsys.readouterr().err
    assert "adamsci.adam" in err and "300/300" in err and "fun~" in err
    assert "it/s" in err
    first = minimize(lsq, maxiter=100, learning_rate=0.01, record=True)
    capsys.readouterr()
    minimize(lsq, maxiter=200, learning_rate=0.01, progress=True,
             resume=first.history)
    assert "300/300" in capsys.readouterr().err


def test_an_objective_that_raises_keeps_the_rows_recorded():
    calls = []

    def failing(x):
        calls.append(1)
        if len(calls) == 42:
            raise OSError("the data file went away")
        return lsq(x)
    with pytest.raises(OSError, match="went away") as err:
        minimize(failing, maxiter=100, record=5, learning_rate=0.01)
    h = err.value.history
    # evaluations 1..41 were iterations 0..40: rows 0, 5, ..., 40
    assert h.iteration.values.tolist() == list(range(0, 41, 5))
    assert "interrupted by OSError" in h.attrs["message"]
    assert "state_x" not in h            # no saved state: not resumable
    full = minimize(lsq, maxiter=100, record=5, learning_rate=0.01)
    np.testing.assert_array_equal(h.x.values,
                                  full.history.x.values[:h.sizes["iteration"]])
