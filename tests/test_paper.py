"""The paper's claims (Kingma & Ba 2015) as hypothesis property tests.

Section 2.1 bounds the effective step: ``|Delta_t| <= alpha (1-beta1) /
sqrt(1-beta2)`` when ``(1-beta1) > sqrt(1-beta2)`` and ``|Delta_t| <= alpha``
otherwise. The paper calls these bounds approximate, and they are: they hold
in the scenarios it argues from (a gradient that is zero except at the current
step; gradients of constant magnitude; beta1 = 0), while the exact worst case
over all gradient sequences follows from Cauchy-Schwarz,
``|mhat| <= sqrt(sum_i w_i^2/u_i) sqrt(vhat)`` with ``w``/``u`` the
bias-corrected EMA weights. Both are tested, and so is an explicit gradient
sequence that exceeds the paper's bound by exactly the predicted amount.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

import adamsci
from reference import max_rel_err, adam as ref_adam

SETTINGS = settings(max_examples=40, deadline=None)
betas = st.tuples(st.floats(0.0, 0.99), st.floats(0.5, 0.9999))
# magnitudes whose squares neither underflow nor overflow (eps = 0 below)
finite = st.one_of(st.just(0.0), st.floats(1e-50, 1e3), st.floats(-1e3, -1e-50))


def _steps(grads, lr, beta1, beta2, **kw):
    """Run Adam (eps=0) over grads (T, n); return the steps Delta_t (T, n)."""
    T, n = grads.shape
    x = np.zeros(n)
    opt = adamsci.Adam(learning_rate=lr, beta1=beta1, beta2=beta2, eps=0.0,
                       nonfinite="ignore", **kw)
    s = opt.init(x)
    out = np.empty((T, n))
    for t in range(T):
        before = x.copy()
        opt.step(x, grads[t], s)
        out[t] = x - before
    return out


def _paper_bound(beta1, beta2):
    c = (1 - beta1) / np.sqrt(1 - beta2)
    return c if (1 - beta1) > np.sqrt(1 - beta2) else 1.0


def _tight_bound(beta1, beta2, t):
    k = np.arange(t)
    w = (1 - beta1) * beta1 ** k / (1 - beta1 ** t)
    u = (1 - beta2) * beta2 ** k / (1 - beta2 ** t)
    return np.sqrt(np.sum(w * w / u))


def _nonzero_first(grads):
    # eps = 0: a coordinate whose gradients are all zero so far gives 0/0
    grads = grads.copy()
    grads[0][grads[0] == 0] = 1.0
    return grads


@SETTINGS
@given(betas, arrays(np.float64, (30, 3), elements=finite))
def test_step_never_exceeds_the_exact_worst_case(b, grads):
    beta1, beta2 = b
    grads = _nonzero_first(grads)
    steps = _steps(grads, 0.01, beta1, beta2)
    for t in range(1, len(grads) + 1):
        bound = 0.01 * _tight_bound(beta1, beta2, t)
        assert np.all(np.abs(steps[t - 1]) <= bound * (1 + 1e-12))


@SETTINGS
@given(st.floats(0.5, 0.9999), arrays(np.float64, (30, 3), elements=finite))
def test_paper_bound_holds_for_beta1_zero(beta2, grads):
    grads = _nonzero_first(grads)
    steps = _steps(grads, 0.01, 0.0, beta2)
    assert np.all(np.abs(steps) <= 0.01 * _paper_bound(0.0, beta2) * (1 + 1e-12))


@SETTINGS
@given(betas, st.integers(1, 60), st.floats(1e-3, 1e3))
def test_paper_bound_in_the_sparse_case(b, t_spike, size):
    """Zero gradient at all steps but the current one (after a first step,
    which fixes 0/0): the scenario behind the paper's first bound."""
    beta1, beta2 = b
    grads = np.zeros((t_spike + 1, 1))
    grads[0] = 1.0
    grads[t_spike] = size
    steps = _steps(grads, 0.01, beta1, beta2)
    assert abs(steps[-1, 0]) <= 0.01 * _paper_bound(beta1, beta2) * (1 + 1e-12)


@SETTINGS
@given(betas, arrays(np.int8, (40, 4), elements=st.sampled_from([-1, 1])),
       st.floats(1e-3, 1e3))
def test_paper_bound_for_constant_magnitude(b, signs, size):
    beta1, beta2 = b
    steps = _steps(signs * size, 0.01, beta1, beta2)
    assert np.all(np.abs(steps) <= 0.01 * min(1.0, _paper_bound(beta1, beta2))
                  * (1 + 1e-12))


def test_paper_bound_is_approximate_counterexample():
    """g_i proportional to w_i/u_i makes Cauchy-Schwarz tight: with the
    default betas the step reaches 7.09 alpha > 3.16 alpha."""
    beta1, beta2, T = 0.9, 0.999, 3000
    k = np.arange(T)[::-1]                  # age of gradient i at step T
    grads = ((beta1 / beta2) ** k)[:, None]
    steps = _steps(grads, 1.0, beta1, beta2)
    assert abs(steps[-1, 0]) == pytest.approx(_tight_bound(beta1, beta2, T),
                                              rel=1e-12)
    assert abs(steps[-1, 0]) > 2 * _paper_bound(beta1, beta2)


@SETTINGS
@given(arrays(np.float64, (20, 5), elements=finite), st.floats(1e-6, 1e6),
       betas)
def test_update_is_invariant_to_gradient_scale(grads, c, b):
    grads = _nonzero_first(grads)
    a = _steps(grads, 0.01, *b)
    s = _steps(grads * c, 0.01, *b)
    np.testing.assert_allclose(s, a, rtol=1e-12, atol=1e-300)


@SETTINGS
@given(arrays(np.float64, (25, 4), elements=finite), st.floats(0.5, 0.999),
       st.floats(1e-8, 1e-2))
def test_no_bias_correction_with_beta1_zero_is_rmsprop(grads, beta2, eps):
    x, y = np.ones(4), np.ones(4)
    adam = adamsci.Adam(learning_rate=0.01, beta1=0.0, beta2=beta2, eps=eps,
                        bias_correction=False)
    rms = adamsci.RMSProp(learning_rate=0.01, alpha=beta2, eps=eps)
    sa, sr = adam.init(x), rms.init(y)
    for g in grads:
        adam.step(x, g, sa)
        rms.step(y, g, sr)
    np.testing.assert_allclose(x, y, rtol=1e-13)
    np.testing.assert_allclose(sa.v, sr.square_avg, rtol=1e-13)


@SETTINGS
@given(arrays(np.float64, (25, 4), elements=finite), betas)
def test_no_bias_correction_is_momentum_on_the_raw_gradient(grads, b):
    """bias_correction=False: ``theta -= lr m / (sqrt(v) + eps)`` -- RMSProp
    with momentum applied to the raw gradient (paper section 5)."""
    beta1, beta2 = b
    x = np.ones(4)
    opt = adamsci.Adam(learning_rate=0.01, beta1=beta1, beta2=beta2,
                       bias_correction=False)
    s = opt.init(x)
    m, v, want = np.zeros(4), np.zeros(4), np.ones(4)
    for g in grads:
        opt.step(x, g, s)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        want = want - 0.01 * m / (np.sqrt(v) + 1e-8)
    assert max_rel_err(x, want) <= 1e-12


@SETTINGS
@given(arrays(np.float64, (30, 4), elements=finite), betas)
def test_amsgrad_running_max_never_decreases(grads, b):
    x = np.zeros(4)
    opt = adamsci.Adam(learning_rate=0.01, beta1=b[0], beta2=b[1],
                       amsgrad=True)
    s = opt.init(x)
    prev = s.vmax.copy()
    for g in grads:
        opt.step(x, g, s)
        assert np.all(s.vmax >= prev)
        assert np.all(s.vmax >= s.v)
        prev = s.vmax.copy()


@SETTINGS
@given(arrays(np.float64, (30, 3), elements=finite), st.floats(0.01, 0.999))
def test_averaged_parameters_match_reference_ema(grads, decay):
    theta0 = np.linspace(-1, 1, 3)
    opt = adamsci.Adam(learning_rate=0.01, ema_decay=decay)
    x = theta0.copy()
    s = opt.init(x)
    for g in grads:
        opt.step(x, g, s)
    want, ref = ref_adam(theta0, grads, len(grads), lr=0.01, ema_decay=decay)
    assert max_rel_err(opt.averaged(s), ref["averaged"]) <= 1e-12
