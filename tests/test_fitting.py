"""curve_fit: scipy's interface and covariance, minibatches, the NIST StRD
certified values, and a million-point noisy fit."""
import warnings

import numpy as np
import pytest
import scipy.optimize as so
from scipy.optimize import Bounds, OptimizeWarning

import adamsci
from adamsci import datasets
from adamsci.fitting import curve_fit


def decay(t, a, k):
    return a * np.exp(-k * t)


def decay_jac(t, a, k):
    e = np.exp(-k * t)
    return np.stack([e, -a * t * e], axis=-1)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 4, 120)
    sigma = 0.02 + 0.02 * rng.random(t.size)
    y = decay(t, 2.5, 1.3) + sigma * rng.normal(size=t.size)
    return t, y, sigma


def _pcov_reference(J, r, m, n, absolute_sigma=False):
    """Textbook covariance: inv(J'J) * (r'r / (m - n))."""
    cov = np.linalg.inv(J.T @ J)
    return cov if absolute_sigma else cov * (r @ r) / (m - n)


# -- scipy's interface --------------------------------------------------------
def test_returns_like_scipy(data):
    t, y, _ = data
    out = curve_fit(decay, t, y, p0=[2.0, 1.0], maxiter=3000)
    assert len(out) == 2
    popt, pcov = out
    assert popt.shape == (2,) and pcov.shape == (2, 2)
    popt2, pcov2, info, mesg, ier = curve_fit(decay, t, y, p0=[2.0, 1.0],
                                              maxiter=3000, full_output=True)
    np.testing.assert_array_equal(popt, popt2)
    np.testing.assert_array_equal(pcov, pcov2)
    assert set(info) >= {"nfev", "fvec", "nit", "njev", "result"}
    assert info["result"].nfev == info["nit"] + 1 == 3001
    assert info["nfev"] == 3001 + info["npass"]        # + the polish's passes
    assert info["engine"] == "compiled" and 1 <= info["npass"] <= 31
    assert isinstance(mesg, str) and ier == info["result"].status == 1
    np.testing.assert_allclose(info["fvec"], decay(t, *popt) - y)
    sp_popt, sp_pcov = so.curve_fit(decay, t, y, p0=[2.0, 1.0])
    np.testing.assert_allclose(popt, sp_popt, rtol=1e-7)
    np.testing.assert_allclose(pcov, sp_pcov, rtol=1e-5)


def test_pcov_by_scipys_recipe(data):
    t, y, sigma = data
    for absolute in (False, True):
        popt, pcov = curve_fit(decay, t, y, p0=[2.0, 1.0], sigma=sigma,
                               absolute_sigma=absolute, jac=decay_jac,
                               maxiter=3000)
        J = decay_jac(t, *popt) / sigma[:, None]
        r = (decay(t, *popt) - y) / sigma
        ref = _pcov_reference(J, r, t.size, 2, absolute)
        np.testing.assert_allclose(pcov, ref, rtol=1e-9)
        sp_popt, sp_pcov = so.curve_fit(decay, t, y, p0=[2.0, 1.0],
                                        sigma=sigma, absolute_sigma=absolute)
        np.testing.assert_allclose(popt, sp_popt, rtol=1e-7)
        np.testing.assert_allclose(pcov, sp_pcov, rtol=1e-5)


def test_covariance_sigma_matrix_and_its_diagonal_agree(data):
    t, y, sigma = data
    p1, c1 = curve_fit(decay, t, y, p0=[2.0, 1.0], sigma=sigma,
                       jac=decay_jac, maxiter=3000)
    p2, c2 = curve_fit(decay, t, y, p0=[2.0, 1.0], sigma=np.diag(sigma ** 2),
                       jac=decay_jac, maxiter=3000)
    np.testing.assert_allclose(p1, p2, rtol=1e-9)
    np.testing.assert_allclose(c1, c2, rtol=1e-7)
    with pytest.raises(ValueError, match="batch_size"):
        curve_fit(decay, t, y, p0=[2.0, 1.0], sigma=np.diag(sigma ** 2),
                  batch_size=10)


def test_covariance_not_estimable_warns():
    t = np.array([0.0, 1.0])
    with pytest.warns(OptimizeWarning, match="Covariance"):
        popt, pcov = curve_fit(decay, t, decay(t, 1.0, 0.5), p0=[1.0, 1.0],
                               maxiter=200)
    assert np.isinf(pcov).all()


def test_p0_from_signature_and_feasible_start():
    t = np.linspace(0, 1, 30)
    y = decay(t, 1.2, 0.9)
    popt, _ = curve_fit(decay, t, y, maxiter=2000)
    np.testing.assert_allclose(popt, [1.2, 0.9], rtol=1e-6)
    # inside finite bounds the start is scipy's: the midpoint
    res = curve_fit(decay, t, y, bounds=([0, 0], [4, 2]), maxiter=1,
                    full_output=True, learning_rate=1e-12)[2]["result"]
    np.testing.assert_allclose(res.x, [2.0, 1.0], rtol=1e-9)
    with pytest.raises(ValueError, match="number of fit parameters"):
        curve_fit(lambda x, *p: p[0] * x, t, y)


@pytest.mark.parametrize("bounds", [
    ([0.0, 1.0], [2.0, 5.0]), (0.0, [2.0, 5.0]),
    Bounds([0.0, 1.0], [2.0, 5.0])])
def test_bounds(data, bounds):
    t, y, _ = data
    popt, _ = curve_fit(decay, t, y, p0=[1.0, 2.0], bounds=bounds,
                        jac=decay_jac, maxiter=3000)
    sp_popt, _ = so.curve_fit(decay, t, y, p0=[1.0, 2.0],
                              bounds=([0.0, 1.0], [2.0, 5.0]))
    assert popt[0] == 2.0                 # the bound is active
    np.testing.assert_allclose(popt, sp_popt, rtol=1e-6)


def test_bad_bounds():
    t = np.linspace(0, 1, 10)
    with pytest.raises(ValueError, match="bounds"):
        curve_fit(decay, t, t, p0=[1, 1], bounds=(1.0, 0.0))
    with pytest.raises(ValueError, match="bounds"):
        curve_fit(decay, t, t, p0=[1, 1], bounds=([0, 0, 0], 1))


@pytest.mark.parametrize("jac", [None, "2-point", "3-point", "cs",
                                 decay_jac])
def test_jacobian_options(data, jac):
    t, y, _ = data
    popt, pcov = curve_fit(decay, t, y, p0=[2.0, 1.0], jac=jac,
                           maxiter=3000)
    ref, ref_cov = curve_fit(decay, t, y, p0=[2.0, 1.0], jac=decay_jac,
                             maxiter=3000)
    np.testing.assert_allclose(popt, ref, rtol=1e-6)
    np.testing.assert_allclose(pcov, ref_cov, rtol=1e-4)


def test_nan_policy(data):
    t, y, _ = data
    y_nan = y.copy()
    y_nan[[3, 50]] = np.nan
    t_nan = t.copy()
    t_nan[70] = np.nan
    for policy in (None, "raise"):
        with pytest.raises(ValueError):
            curve_fit(decay, t_nan, y_nan, p0=[2.0, 1.0], nan_policy=policy)
    keep = np.ones(t.size, bool)
    keep[[3, 50, 70]] = False
    p_omit, c_omit = curve_fit(decay, t_nan, y_nan, p0=[2.0, 1.0],
                               nan_policy="omit", maxiter=2000)
    p_ref, c_ref = curve_fit(decay, t[keep], y[keep], p0=[2.0, 1.0],
                             maxiter=2000)
    np.testing.assert_array_equal(p_omit, p_ref)
    np.testing.assert_array_equal(c_omit, c_ref)
    with pytest.raises(ValueError, match="nan_policy"):
        curve_fit(decay, t, y, nan_policy="propagate")
    with pytest.raises(ValueError, match="finite"):
        curve_fit(decay, t, np.where(t > 1, np.inf, y), p0=[2.0, 1.0])


def test_two_predictors():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 2, size=(2, 200))

    def plane(x, a, b, c):
        return a * x[0] + b * np.exp(-c * x[1])
    y = plane(x, 1.5, 2.0, 0.7) + 0.01 * rng.normal(size=200)
    popt, pcov = curve_fit(plane, x, y, p0=[1.0, 1.0, 1.0], maxiter=4000)
    sp_popt, sp_pcov = so.curve_fit(plane, x, y, p0=[1.0, 1.0, 1.0])
    np.testing.assert_allclose(popt, sp_popt, rtol=1e-6)
    np.testing.assert_allclose(pcov, sp_pcov, rtol=1e-4)


@pytest.mark.parametrize("method", ["adamax", "rmsprop", adamsci.adam])
def test_other_methods(data, method):
    t, y, _ = data
    popt, _ = curve_fit(decay, t, y, p0=[2.0, 1.0], method=method,
                        maxiter=4000)
    np.testing.assert_allclose(popt, [2.5, 1.3], rtol=0.02)
    with pytest.raises(ValueError, match="method"):
        curve_fit(decay, t, y, p0=[2.0, 1.0], method="lm")


def test_minibatches_are_reproducible(data):
    t, y, sigma = data
    kw = dict(p0=[2.0, 1.0], sigma=sigma, batch_size=16, maxiter=1500)
    p1, c1 = curve_fit(decay, t, y, seed=3, **kw)
    p2, c2 = curve_fit(decay, t, y, seed=3, **kw)
    p3, _ = curve_fit(decay, t, y, seed=4, **kw)
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(c1, c2)
    assert not np.array_equal(p1, p3)
    full, full_cov = curve_fit(decay, t, y, p0=[2.0, 1.0], sigma=sigma,
                               maxiter=3000)
    assert np.all(np.abs(p1 - full) < 0.5 * np.sqrt(np.diag(full_cov)))


def test_history_gets_the_models_parameter_names(data):
    t, y, _ = data
    res = curve_fit(decay, t, y, p0=[2.0, 1.0], maxiter=20, record=5,
                    full_output=True)[2]["result"]
    assert list(res.history["param"].values) == ["a", "k"]


@pytest.mark.slow
def test_million_noisy_points_in_minibatches():
    rng = np.random.default_rng(42)
    m = 1_000_000
    t = rng.uniform(0, 5, m)
    true = np.array([2.0, 0.7, 0.3])

    def model(t, a, k, c):
        return a * np.exp(-k * t) + c

    def jac(t, a, k, c):
        e = np.exp(-k * t)
        return np.stack([e, -a * t * e, np.ones_like(t)], axis=-1)
    y = model(t, *true) + 0.5 * rng.normal(size=m)
    popt, pcov, info, _, _ = curve_fit(model, t, y, p0=[1.0, 1.0, 1.0],
                                       jac=jac, batch_size=1024, seed=0,
                                       maxiter=5000, full_output=True)
    se = np.sqrt(np.diag(pcov))
    assert np.all(np.abs(popt - true) < 3 * se), (popt - true) / se
    assert info["result"].epoch >= 4                  # about 5 epochs
    assert se.max() < 0.01


# -- NIST StRD --------------------------------------------------------------------
NIST = ["Misra1a", "Chwirut2", "Chwirut1", "DanWood", "Misra1b", "Gauss1",
        "Gauss2"]


def _nist(name):
    try:
        return datasets.nist_strd(name)
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.mark.slow
@pytest.mark.parametrize("name", NIST)
def test_nist_certified_values_from_start2(name):
    p = _nist(name)
    popt, pcov = curve_fit(p.model, p.x, p.y, p0=p.start2, jac=p.jac)
    rel = np.abs(popt - p.certified) / np.abs(p.certified)
    assert rel.max() <= 1e-6, rel
    sd = np.sqrt(np.diag(pcov))
    np.testing.assert_allclose(sd, p.certified_sd, rtol=1e-5)


@pytest.mark.slow
def test_nist_all_problems_with_defaults_beat_scipy():
    names = [n for level in datasets.NIST_PROBLEMS.values() for n in level]
    ours, lm = [], []
    for name in names:
        p = _nist(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            popt, _, info, _, _ = curve_fit(p.model, p.x, p.y, p0=p.start2,
                                            full_output=True)
            try:
                sp_popt, _ = so.curve_fit(p.model, p.x, p.y, p0=p.start2)
            except RuntimeError:
                sp_popt = np.full_like(popt, np.nan)
        assert info["engine"] == "compiled", (name, info.get("why"))
        rel = np.max(np.abs(popt - p.certified) / np.abs(p.certified))
        if p.difficulty == "lower":
            assert rel <= 1e-6, (name, rel)
        ours.append(rel <= 1e-5)
        lm.append(np.max(np.abs(sp_popt - p.certified) /
                         np.abs(p.certified)) <= 1e-5)
    assert sum(ours) > sum(lm), (sum(ours), sum(lm))
    assert sum(ours) == len(names), [n for n, ok in zip(names, ours)
                                     if not ok]


def test_nist_reader():
    p = _nist("Misra1a")
    assert p.x.shape == p.y.shape == (14,)
    np.testing.assert_array_equal(p.start1, [500, 1e-4])
    np.testing.assert_array_equal(p.start2, [250, 5e-4])
    np.testing.assert_array_equal(p.certified,
                                  [2.3894212918e2, 5.5015643181e-4])
    r = p.y - p.model(p.x, *p.certified)
    assert abs(r @ r - p.rss) < 1e-9 * p.rss
    assert p.formula.startswith("y = b1*(1-exp[-b2*x])")
    nelson = _nist("nelson")
    assert nelson.x.shape == (2, 128) and nelson.difficulty == "average"
    for name in ("Gauss1", "Lanczos3", "Rat43"):
        q = _nist(name)
        J = q.jac(q.x, *q.certified)
        h = 1e-6 * np.abs(q.certified)
        fd = np.stack([(q.model(q.x, *(q.certified + h[k] * np.eye(
            len(h))[k])) - q.model(q.x, *(q.certified - h[k] * np.eye(
                len(h))[k]))) / (2 * h[k]) for k in range(len(h))], axis=-1)
        np.testing.assert_allclose(J, fd, rtol=1e-5, atol=1e-8 * np.abs(
            J).max())
    with pytest.raises(ValueError, match="NIST"):
        datasets.nist_strd("NoSuchProblem")
    with pytest.raises(FileNotFoundError, match="ADAMSCI_NIST_DIR"):
        datasets.nist_strd("Misra1a", path="/nonexistent")


def test_docs_say_lanczos3_may_fail():
    import adamsci.fitting as fitting
    assert "Lanczos3" in fitting.__doc__
