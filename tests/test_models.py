"""adamsci.models: analytic gradients, guesses, compilation on both targets."""
import math
import pickle

import numpy as np
import pytest

from adamsci import models
from adamsci.models import Model

# (model, parameter points to check, x values); x > 0 where a model needs it
_CASES = [
    (models.gaussian, [[2.0, 0.3, 1.2, 0.5], [-1.0, 2.0, 0.4, 3.0]],
     np.linspace(-3, 4, 9)),
    (models.lorentzian, [[2.0, 0.3, 1.2, 0.5], [-1.0, 2.0, 0.4, 3.0]],
     np.linspace(-3, 4, 9)),
    (models.exponential, [[2.0, 1.3, 0.5], [-1.0, 0.4, 3.0]],
     np.linspace(0, 4, 9)),
    (models.double_exponential, [[2.0, 0.3, 1.0, 2.5, 0.1],
                                 [1.0, 1.0, -0.5, 4.0, 0.0]],
     np.linspace(0, 4, 9)),
    (models.logistic, [[2.0, 0.3, 0.7, 0.5], [-1.0, 2.0, -1.5, 3.0]],
     np.linspace(-3, 4, 9)),
    (models.power_law, [[2.0, 1.5], [0.5, -0.7]], np.linspace(0.2, 5, 9)),
    (models.polynomial(3), [[1.0, -2.0, 0.5, 0.1], [0.0, 1.0, 0.0, -1.0]],
     np.linspace(-2, 2, 9)),
    (models.linear, [[2.0, -1.0], [-0.5, 3.0]], np.linspace(-2, 2, 9)),
]


def _fd(value, x, p, h=1e-6):
    out = np.empty(len(p))
    for j in range(len(p)):
        hj = h * max(abs(p[j]), 1.0)
        pp, pm = p.copy(), p.copy()
        pp[j] += hj
        pm[j] -= hj
        out[j] = (value(x, pp) - value(x, pm)) / (2 * hj)
    return out


@pytest.mark.parametrize("model,points,xs", _CASES,
                         ids=[c[0].name for c in _CASES])
def test_analytic_gradient_matches_finite_differences(model, points, xs):
    for p in points:
        p = np.array(p, dtype=float)
        for x in xs:
            out = np.full(model.n_params, np.nan)
            f = model.grad(x, p, out)
            assert f == pytest.approx(model.value(x, p), rel=1e-13, abs=1e-13)
            np.testing.assert_allclose(out, _fd(model.value, x, p),
                                       rtol=1e-6, atol=1e-8)


def test_gaussian2d_gradient_on_pixels():
    m = models.gaussian2d
    p = np.array([3.0, 1.7, 2.2, 0.9, 0.4])
    for x in models.pixel_grid(4, 3):
        out = np.empty(5)
        f = m.grad(x, p, out)
        assert f == pytest.approx(m.value(x, p), rel=1e-14)
        np.testing.assert_allclose(out, _fd(m.value, x, p), rtol=1e-6,
                                   atol=1e-9)
    # Gpufit's GAUSS_2D formula, written independently
    x = np.array([2.0, 1.0])
    ref = 3.0 * math.exp(-((2 - 1.7) ** 2 + (1 - 2.2) ** 2) / (2 * 0.81)) \
        + 0.4
    assert m.value(x, p) == pytest.approx(ref, rel=1e-14)


def test_known_values():
    p = np.array([2.0, 1.0, 0.5, 0.25])
    assert models.gaussian.value(1.5, p) == pytest.approx(
        2 * math.exp(-0.5) + 0.25)
    assert models.lorentzian.value(1.5, p) == pytest.approx(2 / 2 + 0.25)
    assert models.logistic.value(1.0, p) == pytest.approx(1.0 + 0.25)
    assert models.exponential.value(2.0, np.array([3.0, 2.0, 1.0])) == \
        pytest.approx(3 * math.exp(-1) + 1)
    assert models.power_law.value(4.0, np.array([3.0, 0.5])) == \
        pytest.approx(6.0)
    assert models.polynomial(2).value(2.0, np.array([1.0, 2.0, 3.0])) == \
        pytest.approx(1 + 4 + 12)
    assert models.linear.value(2.0, np.array([3.0, 1.0])) == 7.0


def test_models_compile_with_njit_and_agree():
    from numba import njit
    for model, points, xs in _CASES + [(models.gaussian2d,
                                        [[3.0, 1.7, 2.2, 0.9, 0.4]],
                                        models.pixel_grid(3))]:
        value = njit(model.value)
        grad = njit(model.grad)
        p = np.array(points[0])
        for x in xs[:3]:
            out_py, out_nb = np.empty(len(p)), np.empty(len(p))
            f_py = model.grad(x, p, out_py)
            f_nb = grad(x, p, out_nb)
            assert f_nb == pytest.approx(f_py, rel=1e-14, abs=1e-15)
            assert value(x, p) == pytest.approx(model.value(x, p), rel=1e-14,
                                                abs=1e-15)
            np.testing.assert_allclose(out_nb, out_py, rtol=1e-14,
                                       atol=1e-15)


cuda = None    # numba.cuda, imported by the CUDA tests only (a module global,
# so that the simulator can swap it inside kernels)


@pytest.mark.cuda
def test_models_compile_as_cuda_device_functions():
    global cuda
    from numba import cuda
    for model, points, xs in _CASES[:2] + _CASES[-2:]:
        grad = cuda.jit(device=True)(model.grad)
        npar = model.n_params

        @cuda.jit
        def kern(xs_, p, out, f):
            i = cuda.grid(1)
            if i < xs_.shape[0]:
                f[i] = grad(xs_[i], p, out[i])

        xs3 = np.ascontiguousarray(xs[:3])
        p = np.array(points[0])
        out = np.zeros((3, npar))
        f = np.zeros(3)
        kern[1, 4](xs3, p, out, f)
        for i, x in enumerate(xs3):
            ref = np.empty(npar)
            assert f[i] == pytest.approx(model.grad(x, p, ref), rel=1e-14)
            np.testing.assert_allclose(out[i], ref, rtol=1e-14)


def _truth_and_data(model, rng, n=5):
    x = np.linspace(0.2, 10, 60)
    if model is models.gaussian:
        truth = np.c_[rng.uniform(1, 3, n), rng.uniform(3, 7, n),
                      rng.uniform(0.5, 1.5, n), rng.uniform(-1, 1, n)]
    elif model is models.lorentzian:
        truth = np.c_[rng.uniform(1, 3, n), rng.uniform(3, 7, n),
                      rng.uniform(0.3, 1.0, n), rng.uniform(-1, 1, n)]
    elif model is models.exponential:
        truth = np.c_[rng.uniform(1, 3, n), rng.uniform(1, 3, n),
                      rng.uniform(-1, 1, n)]
    elif model is models.logistic:
        truth = np.c_[rng.uniform(1, 3, n), rng.uniform(3, 7, n),
                      rng.uniform(0.3, 1.0, n), rng.uniform(-1, 1, n)]
    elif model is models.power_law:
        truth = np.c_[rng.uniform(1, 3, n), rng.uniform(-2, 2, n)]
    else:    # linear / polynomial: exact
        truth = rng.uniform(-2, 2, (n, model.n_params))
    y = np.array([[model.value(xx, p) for xx in x] for p in truth])
    return x, y, truth


@pytest.mark.parametrize("model,rtol", [
    (models.gaussian, 0.1), (models.lorentzian, 0.3), (models.exponential,
                                                        0.5),
    (models.logistic, 0.8), (models.power_law, 1e-6), (models.linear, 1e-8),
    (models.polynomial(3), 1e-6)], ids=lambda v: getattr(v, "name", ""))
def test_guess_is_close_on_noiseless_data(model, rtol):
    rng = np.random.default_rng(3)
    x, y, truth = _truth_and_data(model, rng)
    g = model.guess(x, y)
    assert g.shape == truth.shape and np.isfinite(g).all()
    scale = np.abs(truth).max(axis=1, keepdims=True)
    assert np.all(np.abs(g - truth) <= rtol * scale + 1e-9)
    # per-fit x gives the same guess
    g2 = model.guess(np.broadcast_to(x, y.shape), y)
    np.testing.assert_allclose(g2, g)


def test_gaussian2d_guess():
    xy = models.pixel_grid(7)
    truth = np.array([[5.0, 3.2, 2.7, 1.1, 0.5], [2.0, 2.0, 4.0, 0.8, 1.0]])
    y = np.array([[models.gaussian2d.value(x, p) for x in xy] for p in truth])
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


def test_model_validation_messages():
    def f(x, p):
        return p[0] * x
    with pytest.raises(TypeError, match="func must be a callable"):
        Model(3, n_params=1)
    with pytest.raises(TypeError, match="n_params or param_names"):
        Model(f)
    with pytest.raises(ValueError, match="n_params must be an int"):
        Model(f, n_params=0)
    with pytest.raises(ValueError, match="unique"):
        Model(f, param_names=("a", "a"))
    with pytest.raises(ValueError, match="param_names has 2 names"):
        Model(f, n_params=3, param_names=("a", "b"))
    with pytest.raises(TypeError, match="grad must be"):
        Model(f, grad=1, n_params=1)
    with pytest.raises(ValueError, match="not a built-in"):
        models.as_model("nope")
    with pytest.raises(ValueError, match="p0 has 3 parameters"):
        models.as_model(models.gaussian, 3)
    with pytest.raises(TypeError, match="p0 is required"):
        models.as_model(f)
    with pytest.raises(ValueError, match="degree"):
        models.polynomial(-1)


def test_names_repr_and_lookup():
    assert models.as_model("gaussian") is models.gaussian
    assert models.as_model("polynomial2") is models.polynomial(2)
    assert models.polynomial(2) is models.polynomial(2)
    assert models.gaussian.builtin and models.gaussian.has_grad
    m = Model(lambda x, p: p[0] * x, n_params=1)
    assert not m.builtin and not m.has_grad
    assert m.param_names == ("p0",)
    assert "finite differences" in repr(m)
    assert set(models.BUILTIN) == {
        "gaussian", "gaussian2d", "lorentzian", "exponential",
        "double_exponential", "logistic", "power_law", "linear"}


def _module_level_model(x, p):
    return p[0] + p[1] * x


def test_pickle():
    for m in (models.gaussian, models.polynomial(4)):
        assert pickle.loads(pickle.dumps(m)) is m
    m = Model(_module_level_model, param_names=("a", "b"))
    m._compiled["junk"] = object()
    m2 = pickle.loads(pickle.dumps(m))
    assert m2.param_names == ("a", "b") and m2._compiled == {}
    assert m2.value(2.0, np.array([1.0, 3.0])) == 7.0


def test_pixel_grid_layout():
    g = models.pixel_grid(3, 2)
    assert g.shape == (6, 2)
    img = np.arange(6).reshape(2, 3)      # rows = y, columns = x
    for k, (x, y) in enumerate(g):
        assert img.reshape(-1)[k] == img[int(y), int(x)]
