"""History attributes as netCDF and a reader want them (issue #15): booleans
as "true"/"false", unset options left out, no state of a stopping rule that
is off, iteration 0's NaNs explained; old-style files still resume."""
import numpy as np
import pytest
import scipy.optimize as so
import xarray as xr

import adamsci
from adamsci.history import concat, netcdf_attr, open_history

N = 4
_rng = np.random.default_rng(3)
A = _rng.standard_normal((30, N))
B = A @ np.linspace(-1.0, 1.0, N) + 0.2 * _rng.standard_normal(30)
LOOP_STATE = ("state_f_ema", "state_f_ema_weight", "state_f_best",
              "state_stall")


def lsq(x):
    r = A @ x - B
    return 0.5 * float(r @ r), A.T @ r


def mb_fun(x, a, b):
    r = a @ x - b
    return 0.5 * float(r @ r) / len(b), (a.T @ r) / len(b)


def minibatch():
    return adamsci.MinibatchObjective(mb_fun, (A, B), batch_size=7, seed=5)


def minimize(fun, **options):
    options = {"learning_rate": 0.02, "gtol": 0.0, "record": True,
               **options}
    return so.minimize(fun, np.zeros(N), jac=True, method=adamsci.adam,
                       options=options)


def assert_bitwise(a, b):
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert np.array_equal(a.view(np.uint8), b.view(np.uint8))


def test_netcdf_attr_values():
    assert netcdf_attr(True) == "true" and netcdf_attr(np.bool_(False)) == \
        "false"
    assert netcdf_attr(None) is None
    assert netcdf_attr(3) == 3 and type(netcdf_attr(np.int64(3))) is int
    assert netcdf_attr(2 ** 40) == str(2 ** 40)
    assert netcdf_attr((1, None)) == "[1, null]"      # JSON inside lists


def test_booleans_are_strings_and_unset_options_left_out():
    res = minimize(lsq, maxiter=20, amsgrad=True)
    a = res.history.attrs
    opt = res.optimizer
    bools = {k: v for k, v in opt.hyperparameters.items()
             if isinstance(v, (bool, np.bool_))}
    assert "amsgrad" in bools and "maximize" in bools
    for k, v in bools.items():
        assert a[k] == ("true" if v else "false"), k
    assert a["amsgrad"] == "true" and a["maximize"] == "false"
    assert a["record"] == "true" and a["record_x"] == "true" and \
        a["progress"] == "false"
    assert a["success"] == "false" and a["status"] == res.status == 1
    # unset: left out, never the string "null"
    for k in ("ema_decay", "tol", "maxfev", "x_scale", "compiled",
              "record_params", "param_names", "resumed_from"):
        assert k not in a, k
    assert "null" not in [v for v in a.values() if isinstance(v, str)]
    for k, v in a.items():
        assert type(v) in (int, float, str), (k, v)
    # set, they are there
    res = minimize(lsq, maxiter=5, ema_decay=0.9, maxfev=1000, record=2,
                   param_names=list("abcd"))
    a = res.history.attrs
    assert a["ema_decay"] == 0.9 and a["maxfev"] == 1000 and a["record"] == 2
    assert a["param_names"] == '["a", "b", "c", "d"]'
    # a converged run
    res = so.minimize(lsq, np.zeros(N), jac=True, method=adamsci.adam,
                      options={"learning_rate": 0.05, "gtol": 1e3,
                               "record": True})
    assert res.success and res.history.attrs["success"] == "true"


def test_attrs_survive_netcdf_as_strings(tmp_path):
    res = minimize(lsq, maxiter=5, amsgrad=True)
    path = tmp_path / "h.nc"
    res.history.to_netcdf(path, engine="scipy")
    back = open_history(path, engine="scipy")
    xr.testing.assert_identical(back, res.history)
    assert back.attrs["amsgrad"] == "true" and \
        back.attrs["success"] == "false"


def test_state_of_the_ftol_rule_only_when_it_is_on():
    off = minimize(lsq, maxiter=30).history
    assert not [v for v in LOOP_STATE if v in off]
    on = minimize(lsq, maxiter=30, ftol=1e-12, patience=1000).history
    assert all(v in on for v in LOOP_STATE)
    assert 0.0 < float(on.state_f_ema_weight) <= 1.0     # the rule ran
    assert float(on.state_f_ema) != 0.0


def test_nan_at_iteration_0_is_described():
    h = minimize(lsq, maxiter=10, ema_decay=0.9).history
    for v in ("step_norm", "learning_rate", "x_avg"):
        assert np.isnan(h[v].sel(iteration=0)).all(), v
        assert np.isfinite(h[v].sel(iteration=10)).all(), v
        d = h[v].attrs["description"]
        assert "NaN at iteration 0" in d, v
    for v in ("fun", "grad_norm", "x"):
        assert np.isfinite(h[v].sel(iteration=0)).all()
        assert "NaN" not in h[v].attrs.get("description", "")


def _old_style(ds, ftol_on):
    """``ds`` as adamsci wrote it before issue #15: booleans 0/1, unset
    options as "null", resumed_from "" and the ftol rule's values always."""
    old = ds.copy()
    attrs = {}
    for k, v in ds.attrs.items():
        attrs[k] = {"true": 1, "false": 0}.get(v, v) if isinstance(
            v, str) else v
    for k in ("ema_decay", "tol", "x_scale", "compiled", "record_params",
              "param_names"):
        attrs.setdefault(k, "null")
    attrs.setdefault("maxfev", str(np.iinfo(np.int64).max))
    attrs.setdefault("resumed_from", "")
    old.attrs = attrs
    if not ftol_on:
        for name, value in (("state_f_ema", 0.0), ("state_f_ema_weight", 0.0),
                            ("state_f_best", np.inf), ("state_stall", 0)):
            old[name] = ((), np.array(value))
    assert all(v in old for v in LOOP_STATE)
    assert old.attrs["amsgrad"] in (0, 1) and old.attrs["success"] == 0
    return old


@pytest.mark.parametrize("make_fun, opts", [
    (lambda: lsq, {}),
    (minibatch, {"ftol": 1e-12, "patience": 10_000, "amsgrad": True}),
], ids=["lsq", "minibatch-ftol"])
def test_resume_from_old_style_file(tmp_path, make_fun, opts):
    full = minimize(make_fun(), maxiter=120, **opts)
    first = minimize(make_fun(), maxiter=60, **opts)
    path = tmp_path / "old.nc"
    _old_style(first.history, "ftol" in opts).to_netcdf(path, engine="scipy")
    with xr.open_dataset(path, engine="scipy") as raw:     # really old-style
        assert raw.attrs["amsgrad"] in (0, 1) and raw.attrs["tol"] == "null"
    second = minimize(make_fun(), maxiter=60, resume=path, **opts)
    assert_bitwise(second.x, full.x)
    assert second.fun == full.fun
    for a, b in zip(second.state, full.state):
        assert_bitwise(a, b)
    h = second.history
    assert h.attrs["resumed_from"] == str(path)
    assert h.attrs["amsgrad"] in ("true", "false") and "tol" not in h.attrs
    joined = concat([open_history(path, engine="scipy"), h])
    assert joined.iteration.values.tolist() == list(range(121))
    assert_bitwise(joined.x.values, full.history.x.values)
