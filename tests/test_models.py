"""adamsci.models: the built-ins as functions f(x, *params), their guesses,
Model objects."""
import math
import pickle

import numpy as np
import pytest

from adamsci import models
from adamsci.models import Model


# the built-in models' formulas, written independently (scalar Python)
def _ref(name, x, p):
    if name == "gaussian":
        a, c, s, b = p
        return a * math.exp(-(x - c) ** 2 / (2 * s * s)) + b
    if name == "lorentzian":
        a, c, g, b = p
        return a / (1 + ((x - c) / g) ** 2) + b
    if name == "exponential":
        a, t, b = p
        return a * math.exp(-x / t) + b
    if name == "double_exponential":
        a1, t1, a2, t2, b = p
        return a1 * math.exp(-x / t1) + a2 * math.exp(-x / t2) + b
    if name == "logistic":
        a, c, w, b = p
        return a / (1 + math.exp(-(x - c) / w)) + b
    if name == "power_law":
        a, k = p
        return a * x ** k
    if name == "linear":
        return p[0] * x + p[1]
    raise KeyError(name)


_CASES = [
    ("gaussian", [2.0, 0.3, 1.2, 0.5], np.linspace(-3, 4, 9)),
    ("lorentzian", [2.0, 0.3, 1.2, 0.5], np.linspace(-3, 4, 9)),
    ("exponential", [2.0, 1.3, 0.5], np.linspace(0, 4, 9)),
    ("double_exponential", [2.0, 0.3, 1.0, 2.5, 0.1], np.linspace(0, 4, 9)),
    ("logistic", [2.0, 0.3, 0.7, 0.5], np.linspace(-3, 4, 9)),
    ("power_law", [2.0, 1.5], np.linspace(0.2, 5, 9)),
    ("linear", [2.0, -1.0], np.linspace(-2, 2, 9)),
]


@pytest.mark.parametrize("name,p,xs", _CASES, ids=[c[0] for c in _CASES])
def test_builtins_are_their_formulas(name, p, xs):
    m = models.BUILTIN[name]
    want = [_ref(name, x, p) for x in xs]
    np.testing.assert_allclose(m(xs, *p), want, rtol=1e-14)
    # and the compiled per-point value agrees
    value = m.compiled.module.value
    np.testing.assert_allclose([value(x, np.array(p)) for x in xs], want,
                               rtol=1e-14)


def test_gaussian2d_is_gpufits_gauss_2d():
    xy = models.pixel_grid(4, 3)
    p = [3.0, 1.7, 2.2, 0.9, 0.4]
    want = [3.0 * math.exp(-((u - 1.7) ** 2 + (v - 2.2) ** 2) / (2 * 0.81))
            + 0.4 for u, v in xy.T]
    np.testing.assert_allclose(models.gaussian2d(xy, *p), want, rtol=1e-14)
    assert models.gaussian2d.xdim == 2 and models.gaussian.xdim == 0


def test_polynomial():
    for degree in (0, 1, 3):
        m = models.polynomial(degree)
        c = np.arange(1.0, degree + 2)
        x = np.linspace(-2, 2, 7)
        np.testing.assert_allclose(m(x, *c), np.polyval(c[::-1], x),
                                   rtol=1e-14)
        assert m.param_names == tuple(f"c{j}" for j in range(degree + 1))
    assert models.polynomial(2) is models.polynomial(2)
    with pytest.raises(ValueError, match="degree"):
        models.polynomial(-1)


def _truth_and_data(name, rng, n=5):
    x = np.linspace(0.2, 10, 60)
    if name == "gaussian":
        truth = np.c_[rng.uniform(1, 3, n), rng.uniform(3, 7, n),
                      rng.uniform(0.5, 1.5, n), rng.uniform(-1, 1, n)]
    elif name == "lorentzian":
        truth = np.c_[rng.uniform(1, 3, n), rng.uniform(3, 7, n),
                      rng.uniform(0.3, 1.0, n), rng.uniform(-1, 1, n)]
    elif name == "exponential":
        truth = np.c_[rng.uniform(1, 3, n), rng.uniform(1, 3, n),
                      rng.uniform(-1, 1, n)]
    elif name == "logistic":
        truth = np.c_[rng.uniform(1, 3, n), rng.uniform(3, 7, n),
                      rng.uniform(0.3, 1.0, n), rng.uniform(-1, 1, n)]
    elif name == "power_law":
        truth = np.c_[rng.uniform(1, 3, n), rng.uniform(-2, 2, n)]
    else:    # linear / polynomial: exact
        m = models.as_model(name)
        truth = rng.uniform(-2, 2, (n, m.n_params))
    m = models.as_model(name)
    y = np.array([m(x, *p) for p in truth])
    return x, y, truth


@pytest.mark.parametrize("name,rtol", [
    ("gaussian", 0.1), ("lorentzian", 0.3), ("exponential", 0.5),
    ("logistic", 0.8), ("power_law", 1e-6), ("linear", 1e-8),
    ("polynomial3", 1e-6)])
def test_guess_is_close_on_noiseless_data(name, rtol):
    rng = np.random.default_rng(3)
    x, y, truth = _truth_and_data(name, rng)
    m = models.as_model(name)
    g = m.guess(x, y)
    assert g.shape == truth.shape and np.isfinite(g).all()
    scale = np.abs(truth).max(axis=1, keepdims=True)
    assert np.all(np.abs(g - truth) <= rtol * scale + 1e-9)
    # per-fit x gives the same guess
    g2 = m.guess(np.broadcast_to(x, y.shape), y)
    np.testing.assert_allclose(g2, g)


def test_gaussian2d_guess():
    xy = models.pixel_grid(7)
    truth = np.array([[5.0, 3.2, 2.7, 1.1, 0.5], [2.0, 2.0, 4.0, 0.8, 1.0]])
    y = np.array([models.gaussian2d(xy, *p) for p in truth])
    g = models.gaussian2d.guess(xy, y)
    assert np.all(np.abs(g[:, 1:3] - truth[:, 1:3]) < 0.3)
    assert np.all(np.abs(g[:, 3] / truth[:, 3] - 1) < 0.3)


def test_guess_survives_nan_rows_and_points():
    x = np.linspace(0, 10, 30)
    y = np.exp(-0.5 * (x - 4) ** 2)[None].repeat(3, 0)
    y[0] = np.nan
    y[1, ::2] = np.nan
    with np.errstate(all="raise"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for m in (models.gaussian, models.lorentzian, models.exponential,
                      models.double_exponential, models.logistic,
                      models.power_law, models.linear):
                g = m.guess(x, y)
                assert g.shape == (3, m.n_params)
                assert np.isfinite(g).all(), m.name
    assert models.gaussian.guess(x, y)[1, 1] == pytest.approx(4.0, abs=0.5)


def test_names_from_the_signature_as_xarray():
    def decay(t, amplitude, rate, offset=0.0):
        return amplitude * np.exp(-rate * t) + offset
    m = Model(decay)
    assert m.param_names == ("amplitude", "rate", "offset")
    assert m.name == "decay" and m.n_params == 3
    # the signature scipy's curve_fit counts parameters from
    import inspect
    assert list(inspect.signature(m).parameters) == [
        "t", "amplitude", "rate", "offset"]
    assert list(inspect.signature(models.gaussian).parameters) == [
        "x", "amplitude", "center", "sigma", "offset"]
    renamed = Model(decay, param_names=("A", "k", "c"))
    assert renamed.param_names == ("A", "k", "c")


def test_model_validation_messages():
    def f(x, a):
        return a * x
    with pytest.raises(TypeError, match="func must be a callable"):
        Model(3)
    with pytest.raises(ValueError, match="unique"):
        Model(lambda x, *p: x, param_names=("a", "a"))
    with pytest.raises(ValueError, match="param_names has 2 names"):
        Model(f, param_names=("a", "b"))
    with pytest.raises(ValueError, match="param_names must be provided"):
        Model(lambda x, *p: x)
    with pytest.raises(ValueError, match="no parameters"):
        Model(lambda x: x)
    with pytest.raises(TypeError, match="guess must be callable"):
        Model(f, guess=1)
    with pytest.raises(ValueError, match="x_scale"):
        Model(f, x_scale="auto")
    with pytest.raises(ValueError, match="not a built-in"):
        models.as_model("nope")
    with pytest.raises(TypeError, match="must be a Model"):
        models.as_model(3)


def test_names_repr_and_lookup():
    assert models.as_model("gaussian") is models.gaussian
    assert models.as_model("polynomial2") is models.polynomial(2)
    assert models.gaussian.builtin
    m = Model(lambda x, a: a * x)
    assert not m.builtin and m.param_names == ("a",)
    assert repr(models.gaussian) == (
        "Model('gaussian', param_names=('amplitude', 'center', 'sigma', "
        "'offset'))")
    assert set(models.BUILTIN) == {
        "gaussian", "gaussian2d", "lorentzian", "exponential",
        "double_exponential", "logistic", "power_law", "linear"}
    # a function is wrapped once (its compiled kernels are reused)
    def g(x, a):
        return a * x
    assert models.as_model(g) is models.as_model(g)


def _module_level_model(x, a, b):
    return a + b * x


def test_pickle():
    for m in (models.gaussian, models.polynomial(4)):
        assert pickle.loads(pickle.dumps(m)) is m
    m = Model(_module_level_model)
    m.compiled            # not pickled
    m2 = pickle.loads(pickle.dumps(m))
    assert m2.param_names == ("a", "b") and m2._compiled is None
    assert m2(2.0, 1.0, 3.0) == 7.0
    assert m2.compiled.module.value(2.0, np.array([1.0, 3.0])) == 7.0


def test_pixel_grid_layout():
    g = models.pixel_grid(3, 2)
    assert g.shape == (2, 6)
    img = np.arange(6).reshape(2, 3)      # rows = y, columns = x
    for k, (x, y) in enumerate(g.T):
        assert img.reshape(-1)[k] == img[int(y), int(x)]
