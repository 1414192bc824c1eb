"""Every optimizer and flag against the plain-NumPy references of
tests/reference.py, plus the bad-input contract of issue #2."""
import numpy as np
import pytest

import adamsci
from adamsci import schedules
from reference import REFERENCES, max_rel_err

STEPS = 1000
N = 37  # not a multiple of any SIMD width: vector tails run
TOL = {np.float64: 1e-12, np.float32: 1e-5}

# (optimizer name, constructor kwargs) -- every flag at least once
CASES = [
    ("adam", {}),
    ("adam", {"learning_rate": 1e-2, "amsgrad": True}),
    ("adam", {"weight_decay": 0.1}),
    ("adam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("adam", {"bias_correction": False, "eps": 1e-6}),
    ("adam", {"ema_decay": 0.99, "amsgrad": True}),
    ("adam", {"maximize": True, "beta1": 0.5, "beta2": 0.99}),
    ("adam", {"learning_rate": schedules.inverse_sqrt(0.05)}),
    ("adamax", {}),
    ("adamax", {"weight_decay": 0.05, "ema_decay": 0.9, "maximize": True}),
    ("adamax", {"eps": 0.0, "learning_rate": schedules.exponential(0.01, 0.5, 300)}),
    ("sgd", {"learning_rate": 1e-3}),
    ("sgd", {"learning_rate": 1e-3, "momentum": 0.9, "dampening": 0.1}),
    ("sgd", {"learning_rate": 1e-3, "momentum": 0.9, "nesterov": True,
             "weight_decay": 0.01}),
    ("sgd", {"learning_rate": 1e-3, "maximize": True}),
    ("adagrad", {}),
    ("adagrad", {"lr_decay": 0.01, "initial_accumulator_value": 0.1,
                 "weight_decay": 0.01}),
    ("rmsprop", {}),
    ("rmsprop", {"centered": True, "momentum": 0.5}),
    ("rmsprop", {"momentum": 0.9, "weight_decay": 0.01, "maximize": True}),
    ("adadelta", {}),
    ("adadelta", {"rho": 0.95, "weight_decay": 0.01,
                  "learning_rate": schedules.cosine(0.5, 800, 0.1)}),
]

# reference keyword names that differ from the optimizers' names
RENAME = {"learning_rate": "lr", "decoupled_weight_decay": "decoupled"}


def _problem(dtype, seed=0):
    rng = np.random.default_rng(seed)
    theta0 = rng.standard_normal(N).astype(dtype)
    # random gradients with a drift so that the moments do not average out
    grads = (rng.standard_normal((STEPS, N)) + 0.3).astype(dtype)
    return theta0, grads


def _ids(case):
    name, kw = case
    return name + "-" + "-".join(f"{k}" for k in kw) if kw else name


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_matches_reference(case, dtype):
    name, kw = case
    theta0, grads = _problem(dtype)
    opt = adamsci.optimizers.OPTIMIZERS[name](**kw)
    x = theta0.copy()
    state = opt.init(x)
    for g in grads:
        assert opt.step(x, g, state) is True
    ref_kw = {RENAME.get(k, k): v for k, v in kw.items()}
    if name == "sgd":
        ref_kw.setdefault("lr", kw["learning_rate"])
    want, want_state = REFERENCES[name](theta0, grads, STEPS, **ref_kw)
    assert x.dtype == dtype
    assert int(state.step[0]) == STEPS
    tol = TOL[dtype]
    assert max_rel_err(x, want) <= tol
    got_state = state._asdict()
    for key, ref in want_state.items():
        if key == "averaged":
            assert max_rel_err(opt.averaged(state), ref) <= tol
            continue
        if ref is None:
            continue
        assert got_state[key].dtype == dtype
        assert max_rel_err(got_state[key], ref) <= tol, key


def test_reference_is_not_trivially_satisfied():
    # the comparison above can fail: a different beta1 is far outside tolerance
    theta0, grads = _problem(np.float64)
    opt = adamsci.Adam(beta1=0.8)
    x = theta0.copy()
    s = opt.init(x)
    for g in grads:
        opt.step(x, g, s)
    want, _ = REFERENCES["adam"](theta0, grads, STEPS)
    assert max_rel_err(x, want) > 1e-6


@pytest.mark.parametrize("shape", [(), (3, 4), (2, 3, 5)])
def test_any_shape(shape):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape)
    g = rng.standard_normal(shape)
    flat = x.reshape(-1).copy()
    opt = adamsci.Adam(learning_rate=0.1, amsgrad=True)
    s, s_flat = opt.init(x), opt.init(flat)
    for _ in range(3):
        opt.step(x, g, s)
        opt.step(flat, g.reshape(-1), s_flat)
    assert s.m.shape == np.shape(x)
    np.testing.assert_array_equal(x.reshape(-1), flat)
    np.testing.assert_array_equal(s.vmax.reshape(-1), s_flat.vmax)


def test_state_dict_roundtrip_is_exact():
    rng = np.random.default_rng(2)
    opt = adamsci.Adam(learning_rate=0.01, amsgrad=True, ema_decay=0.9)
    x = rng.standard_normal(10)
    s = opt.init(x)
    for _ in range(5):
        opt.step(x, rng.standard_normal(10), s)
    d = s.to_dict()
    assert set(d) == {"step", "m", "v", "vmax", "avg"}
    assert all(isinstance(a, np.ndarray) for a in d.values())
    s2 = opt.state_from_dict(d)
    x2 = x.copy()
    g = rng.standard_normal(10)
    opt.step(x, g, s)
    opt.step(x2, g, s2)
    np.testing.assert_array_equal(x, x2)
    for a, b in zip(s, s2):
        np.testing.assert_array_equal(a, b)
    assert d["step"][0] == 5  # the dict is a copy, not a view
    with pytest.raises(ValueError, match="missing"):
        opt.state_from_dict({"step": d["step"]})


def test_repr_and_hyperparameters():
    opt = adamsci.Adam(learning_rate=0.01, amsgrad=True)
    assert repr(opt).startswith("Adam(learning_rate=0.01, beta1=0.9")
    assert opt.hyperparameters["amsgrad"] is True
    s = opt.init(np.zeros(3, np.float32))
    assert repr(s) == ("AdamState(step=0, m=<float32 (3,)>, v=<float32 (3,)>, "
                       "vmax=<float32 (3,)>)")


# ---------------------------------------------------------------- non-finite
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_nonfinite_gradient_raises_and_changes_nothing(name, bad):
    kw = {"learning_rate": 0.1} if name == "sgd" else {}
    kw["momentum"] = 0.9 if name in ("sgd", "rmsprop") else None
    kw = {k: v for k, v in kw.items() if v is not None}
    opt = adamsci.optimizers.OPTIMIZERS[name](**kw)
    rng = np.random.default_rng(3)
    x = rng.standard_normal(300_000 if name == "adam" else 50)
    s = opt.init(x)
    opt.step(x, rng.standard_normal(x.shape), s)
    x_before = x.copy()
    s_before = [a.copy() for a in s]
    g = rng.standard_normal(x.shape)
    g[[3, -1]] = bad
    with pytest.raises(FloatingPointError, match="2 of"):
        opt.step(x, g, s)
    np.testing.assert_array_equal(x, x_before)
    for a, b in zip(s, s_before):
        np.testing.assert_array_equal(a, b)


def test_nonfinite_skip_and_ignore():
    x = np.ones(5)
    g = np.array([1.0, np.nan, 1.0, 1.0, 1.0])
    opt = adamsci.Adam(nonfinite="skip")
    s = opt.init(x)
    assert opt.step(x, g, s) is False
    assert int(s.step[0]) == 0 and np.all(x == 1.0)
    assert opt.step(x, np.ones(5), s) is True and int(s.step[0]) == 1
    opt = adamsci.Adam(nonfinite="ignore")
    s = opt.init(x)
    opt.step(x, g, s)
    assert np.isnan(x[1]) and np.all(np.isfinite(x[[0, 2, 3, 4]]))


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kw, match", [
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"learning_rate": -1e-3}, "learning_rate"),
    ({"learning_rate": np.nan}, "learning_rate"),
    ({"learning_rate": np.inf}, "learning_rate"),
    ({"beta1": 1.0}, "beta1"),
    ({"beta1": -0.1}, "beta1"),
    ({"beta2": 1.0}, "beta2"),
    ({"eps": -1e-8}, "eps"),
    ({"weight_decay": -0.1}, "weight_decay"),
    ({"ema_decay": 0.0}, "ema_decay"),
    ({"ema_decay": 1.0}, "ema_decay"),
    ({"nonfinite": "warn"}, "nonfinite"),
])
def test_bad_hyperparameters_adam(kw, match):
    with pytest.raises(ValueError, match=match):
        adamsci.Adam(**kw)


@pytest.mark.parametrize("cls, kw, match", [
    (adamsci.SGD, {"learning_rate": 0.1, "momentum": -0.5}, "momentum"),
    (adamsci.SGD, {"learning_rate": 0.1, "nesterov": True}, "nesterov"),
    (adamsci.SGD, {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True,
                   "dampening": 0.1}, "nesterov"),
    (adamsci.RMSProp, {"momentum": -1.0}, "momentum"),
    (adamsci.RMSProp, {"alpha": 1.0}, "alpha"),
    (adamsci.AdaDelta, {"rho": 1.5}, "rho"),
    (adamsci.AdaGrad, {"lr_decay": -1.0}, "lr_decay"),
    (adamsci.AdaGrad, {"initial_accumulator_value": -1.0},
     "initial_accumulator_value"),
    (adamsci.AdaMax, {"beta2": 1.0}, "beta2"),
    (adamsci.AdaMax, {"ema_decay": 2.0}, "ema_decay"),
])
def test_bad_hyperparameters_others(cls, kw, match):
    with pytest.raises(ValueError, match=match):
        cls(**kw)


@pytest.mark.parametrize("kw, match", [
    ({"beta1": "0.9"}, "beta1"), ({"amsgrad": 1}, "amsgrad"),
    ({"learning_rate": None}, "learning_rate")])
def test_hyperparameter_types(kw, match):
    with pytest.raises(TypeError, match=match):
        adamsci.Adam(**kw)


def _ready(opt=None, n=4, dtype=np.float64):
    opt = opt or adamsci.Adam(amsgrad=True)
    x = np.linspace(-1, 1, n).astype(dtype)
    s = opt.init(x)
    opt.step(x, np.ones(n, dtype), s)
    return opt, x, s


def _unchanged(x, s, x0, s0):
    np.testing.assert_array_equal(x, x0)
    for a, b in zip(s, s0):
        np.testing.assert_array_equal(a, b)


def _bad_calls():
    f32 = np.ones(4, np.float32)
    ro = np.zeros(4)
    ro.flags.writeable = False
    wide = np.zeros(8)
    return [
        ("grads shape", lambda o, x, s: o.step(x, np.ones(5), s), ValueError,
         "grads has shape"),
        ("grads dtype", lambda o, x, s: o.step(x, f32, s), TypeError,
         "grads has dtype"),
        ("int grads", lambda o, x, s: o.step(x, np.ones(4, int), s),
         TypeError, "grads"),
        ("bool grads", lambda o, x, s: o.step(x, np.ones(4, bool), s),
         TypeError, "grads"),
        ("complex grads", lambda o, x, s: o.step(x, np.ones(4, complex), s),
         TypeError, "grads"),
        ("list grads", lambda o, x, s: o.step(x, [1.0] * 4, s), TypeError,
         "grads must be a NumPy array"),
        ("other optimizer's state",
         lambda o, x, s: o.step(x, np.ones(4), adamsci.AdaMax().init(x)),
         TypeError, "AdamState"),
        ("state without amsgrad",
         lambda o, x, s: o.step(x, np.ones(4), adamsci.Adam().init(x)),
         ValueError, "state.vmax"),
        ("state for another shape",
         lambda o, x, s: o.step(x, np.ones(4), o.init(np.zeros(5))),
         ValueError, "state.m has shape"),
        ("state for another dtype",
         lambda o, x, s: o.step(x, np.ones(4), o.init(f32)),
         ValueError, "dtype"),
        ("read-only params", lambda o, x, s: o.step(ro, np.ones(4), o.init(ro)),
         ValueError, "read-only"),
        ("non-contiguous params",
         lambda o, x, s: o.step(wide[::2], np.ones(4), o.init(np.zeros(4))),
         ValueError, "C-contiguous"),
    ]


@pytest.mark.parametrize("label, call, exc, match", _bad_calls(),
                         ids=[c[0] for c in _bad_calls()])
def test_bad_step_input_changes_nothing(label, call, exc, match):
    opt, x, s = _ready()
    x0, s0 = x.copy(), [a.copy() for a in s]
    with pytest.raises(exc, match=match):
        call(opt, x, s)
    _unchanged(x, s, x0, s0)
    opt.step(x, np.ones(4), s)  # still usable afterwards
    assert int(s.step[0]) == 2


@pytest.mark.parametrize("arr, exc", [
    (np.ones(3, int), TypeError), (np.ones(3, bool), TypeError),
    (np.ones(3, complex), TypeError), (np.ones(3, np.float16), TypeError),
    ([1.0, 2.0], TypeError)])
def test_bad_init_input(arr, exc):
    with pytest.raises(exc, match="params"):
        adamsci.Adam().init(arr)


def test_params_of_integer_dtype_in_step():
    opt = adamsci.Adam()
    with pytest.raises(TypeError, match="params must have dtype float32"):
        opt.step(np.ones(3, int), np.ones(3), opt.init(np.ones(3)))


def test_non_contiguous_grads_are_fine():
    opt, x, s = _ready()
    y, t = x.copy(), opt.state_from_dict(s.to_dict())
    g = np.arange(8.0)[::2]
    opt.step(x, g, s)
    opt.step(y, g.copy(), t)
    np.testing.assert_array_equal(x, y)


def test_schedule_returning_garbage():
    opt = adamsci.Adam(learning_rate=lambda t: -1.0 if t > 1 else 0.1)
    _, x, s = _ready(opt)
    x0, s0 = x.copy(), [a.copy() for a in s]
    with pytest.raises(ValueError, match="schedule returned -1.0 at step 2"):
        opt.step(x, np.ones(4), s)
    _unchanged(x, s, x0, s0)


def test_averaged_errors():
    with pytest.raises(ValueError, match="ema_decay"):
        adamsci.Adam().averaged(adamsci.Adam().init(np.zeros(2)))
    opt = adamsci.AdaMax(ema_decay=0.5)
    with pytest.raises(ValueError, match="no step"):
        opt.averaged(opt.init(np.zeros(2)))


def test_state_of_foreign_array_type_is_a_type_error():
    opt, x, s = _ready()
    odd = s._replace(m=list(s.m))
    x0 = x.copy()
    with pytest.raises(TypeError, match="same device"):
        opt.step(x, np.ones(4), opt.State(*odd))
    np.testing.assert_array_equal(x, x0)
