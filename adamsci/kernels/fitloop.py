"""The per-fit loop of :func:`adamsci.fit_batch`, written once.

:func:`fit_one` fits one row of the data with a compiled model; every kernel
of :func:`adamsci.fit_batch` calls it: the CPU driver of each model
(``fit_cpu`` in the module :mod:`adamsci.compiler` generates for the model)
and the CUDA kernel (:mod:`adamsci.kernels.cuda_batch`), with the model's
per-point functions (``grad``, ``point``) as arguments. It is
``@njit(inline="always")``: Numba compiles it into the driver, where the
model's functions are the driver's globals, so the driver is cached on disk
(numba-cuda compiles the same dispatchers for the GPU).

Array layout: ``X (1 or n_fits, max(xdim, 1), n_points)``, ``Y (n_fits,
n_points)``, ``W (1 or n_fits, n_points)`` (weights ``1/sigma**2``; 0 masks
a point), ``P0, LO, HI, XS (1 or n_fits, n_params)``. Indexing is
``A[i, ..., k]`` whatever the memory order: the CPU passes C-ordered arrays
(one fit's points contiguous), the GPU Fortran-ordered ones (fit ``i`` next
to fit ``i + 1``, so that a warp's loads coalesce).

The algorithm of one fit
------------------------
1. ``n_valid`` = points with weight > 0; none, or fewer than ``n_params``:
   status 3 or 4, NaN results, no iteration.
2. ``chi2``, ``g = -J^T W r`` (half the gradient of ``chi2``) and ``A =
   J^T W J`` at ``p0``. The parameter scales are ``s_j = XS`` (``x_scale``
   given) or ``s_j = sqrt(chi2(p0) / A_jj)``: the change of ``p_j`` that
   alone would move the model by the whole initial misfit.
3. The optimizer (Adam or AdaMax: the type of ``method``) takes its step
   ``du`` in scaled coordinates with the per-array step of
   :func:`adamsci.kernels.cpu.update`, from ``u = 0`` each time: gradient
   ``s_j g_j / c``, step ``p_j += s_j du_j`` ("jac" or given scales), or,
   whitened (``scale_mode`` 2), gradient ``sqrt(chi2(p0)) L^-1 g / c`` and
   ``p += sqrt(chi2(p0)) L^-T du`` with ``A(p0) = L L^T`` (coordinates in
   which the parameters start decorrelated). ``c`` is the largest
   component of the first scaled gradient (so that it has magnitude 1 and
   ``eps`` a fixed meaning). The learning rate is the schedule's times a
   factor multiplied by ``lr_decay`` whenever ``chi2`` rises, and the first
   moment is then reset (a momentum restart). Steps are clipped into the
   bounds; a whitened fit whose step is clipped goes on with per-parameter
   scales (clipping is a projection only there), its optimizer restarted.
4. A step to a non-finite ``chi2`` or gradient is undone and the factor cut;
   after ``MAXBAD`` such steps in a row the fit stops (status 2).
5. Converged (status 0) when twice in a row ``|chi2 - chi2_prev| <= tol chi2
   + eps chi2(p0)`` and ``|p_j - p_prev_j| <= tol (|p_j| + s_j)``; status 1
   after ``maxiter`` steps.
6. Polish: from the lowest ``chi2`` point visited, up to ``polish``
   Levenberg-Marquardt steps on the fit's data (``(A + lambda diag A) d =
   -g``, accepted when ``chi2`` falls), which make the result as exact as a
   Gauss-Newton fit's; a fit stopped by ``maxiter`` whose polish reaches a
   step that changes ``chi2`` by at most ``tol chi2`` counts as converged.
7. The covariance is ``A^-1`` at the result (Cholesky), times ``chi2 /
   (n_valid - n_params)`` unless ``absolute_sigma`` (scipy's ``curve_fit``
   convention); ``inf`` when ``A`` is singular or ``n_valid == n_params``.
"""
import math
from typing import NamedTuple

import numpy as np
from numba import njit

from .. import _rules, optimizers
from .._jit import JIT, host_device
from . import cpu

CONVERGED = 0
MAXITER = 1
NONFINITE = 2
NO_DATA = 3
TOO_FEW = 4
MAXBAD = 20

_inline = dict(inline="always", nogil=True, error_model="numpy")


class Settings(NamedTuple):
    """The loop's settings (:func:`adamsci.fit_batch` builds them)."""
    scale_mode: int        # 0 given scales, 1 "jac", 2 "whiten"
    schedule: int          # adamsci.schedules code and parameters
    lr: float
    schedule_a: float
    schedule_b: float
    schedule_flag: bool
    lr_decay: float
    maxiter: int
    tol: float
    absolute_sigma: bool
    polish: int            # Levenberg-Marquardt steps after the optimizer


class Work(NamedTuple):
    """A fit's work arrays: ``p``, ``pbest``, ``pold`` (parameters), ``du``
    (the optimizer's step), ``m``, ``v`` (its state) in the parameters'
    dtype; ``g``, ``gu``, ``s``, ``out``, ``d`` (float64, ``n``); ``A``,
    ``L`` (float64, ``n * n``, row-major); ``step`` (int64, 1)."""
    p: np.ndarray
    pbest: np.ndarray
    pold: np.ndarray
    du: np.ndarray
    m: np.ndarray
    v: np.ndarray
    g: np.ndarray
    gu: np.ndarray
    s: np.ndarray
    out: np.ndarray
    d: np.ndarray
    A: np.ndarray
    L: np.ndarray
    step: np.ndarray


@njit(**_inline)
def cpu_work(n, nn, dtype):
    """The work arrays on the stack (``n`` and ``nn = n * n`` compile-time
    constants): LLVM keeps them in registers once the loops over the ``n``
    parameters are unrolled. Inlined into the CPU driver, whose frame holds
    them."""
    e = cpu.stack_empty
    return Work(e(n, dtype), e(n, dtype), e(n, dtype), e(n, dtype),
                e(n, dtype), e(n, dtype), e(n, np.float64),
                e(n, np.float64), e(n, np.float64), e(n, np.float64),
                e(n, np.float64), e(nn, np.float64), e(nn, np.float64),
                e(1, np.int64))


def _state_of(method, w):
    """The optimizer's state on the work arrays: AdaMax's for
    ``_rules.AdaMaxHyper``, else Adam's (a host-device function)."""
    if type(method) is _rules.AdaMaxHyper:
        return optimizers.AdaMaxState(w.step, w.m, w.v, w.m[:0])
    return optimizers.AdamState(w.step, w.m, w.v, w.m[:0], w.m[:0])


def _pick_state_of(method, w):
    if method.instance_class is _rules.AdaMaxHyper:
        return lambda method, w: optimizers.AdaMaxState(w.step, w.m, w.v,
                                                        w.m[:0])
    return lambda method, w: optimizers.AdamState(w.step, w.m, w.v, w.m[:0],
                                                  w.m[:0])


host_device(_state_of, typer=_pick_state_of)


@njit(**_inline)
def chi2_pass(grad, point, X, Y, W, i, ix, iw, p, out, g, A, want_a):
    """``chi2`` at ``p``; ``g = -J^T W r`` and, when ``want_a``, ``A =
    J^T W J`` (row-major), with the model's ``grad`` and ``point`` (the
    chi2 pass of models of many parameters: see
    :data:`adamsci.compiler.UNROLL_MAX`). Points of weight 0 are skipped."""
    n = g.size
    for j in range(n):
        g[j] = 0.0
    if want_a:
        for j in range(n * n):
            A[j] = 0.0
    chi2 = 0.0
    for k in range(Y.shape[1]):
        w = W[iw, k]
        if w > 0.0:
            f = grad(point(X, ix, k), p, out)
            r = Y[i, k] - f
            wr = w * r
            chi2 += wr * r
            for j in range(n):
                g[j] -= wr * out[j]
            if want_a:
                for j in range(n):
                    wj = w * out[j]
                    for m in range(j + 1):
                        A[j * n + m] += wj * out[m]
    if want_a:
        for j in range(n):
            for m in range(j):
                A[m * n + j] = A[j * n + m]
    return chi2


@njit(**JIT)
def cholesky(A, L, n, damping):
    """``L L^T = A + damping diag(A)`` (``L`` lower, flat row-major ``n x
    n``); False when a pivot is not positive (singular or indefinite)."""
    big = 0.0
    for j in range(n):
        big = max(big, abs(A[j * n + j]))
    tiny = big * 1e-14
    for j in range(n * n):
        L[j] = A[j]
    for j in range(n):
        L[j * n + j] *= 1.0 + damping
    for j in range(n):
        dj = L[j * n + j]
        for k in range(j):
            dj -= L[j * n + k] * L[j * n + k]
        if not dj > tiny:
            return False
        dj = math.sqrt(dj)
        L[j * n + j] = dj
        for r in range(j + 1, n):
            t = L[r * n + j]
            for k in range(j):
                t -= L[r * n + k] * L[j * n + k]
            L[r * n + j] = t / dj
        for r in range(j):
            L[r * n + j] = 0.0
    return True


@njit(**JIT)
def solve_lower(L, b, out, n, scale):
    """``out = scale L^-1 b`` (forward substitution)."""
    for j in range(n):
        t = b[j]
        for k in range(j):
            t -= L[j * n + k] * out[k]
        out[j] = t / L[j * n + j]
    for j in range(n):
        out[j] *= scale


@njit(**JIT)
def solve_upper(L, b, n, scale):
    """``b <- scale L^-T b`` in place (back substitution)."""
    for j in range(n - 1, -1, -1):
        t = b[j]
        for k in range(j + 1, n):
            t -= L[k * n + j] * b[k]
        b[j] = t / L[j * n + j]
    for j in range(n):
        b[j] *= scale


@njit(**JIT)
def invert_spd(A, L, n):
    """``A <- A^-1`` for symmetric positive definite ``A`` (via ``L``);
    False, ``A`` unchanged, when it is singular."""
    if not cholesky(A, L, n, 0.0):
        return False
    for c in range(n):          # column c of A^-1: L L^T x = e_c
        for j in range(n):
            t = 1.0 if j == c else 0.0
            for k in range(j):
                t -= L[j * n + k] * A[k * n + c]
            A[j * n + c] = t / L[j * n + j]
        for j in range(n - 1, -1, -1):
            t = A[j * n + c]
            for k in range(j + 1, n):
                t -= L[k * n + j] * A[k * n + c]
            A[j * n + c] = t / L[j * n + j]
    return True


# The stages of one fit: what the next evaluation is for
START = 0           # p0 (with A, for the scales)
STEP = 1            # the point a step reached
REDO = 2            # the previous point again, after an undone step
POLISH = 3          # the polish's point (with A)
TRIAL = 4           # a polish step's trial point
FINAL = 5           # the result (with A, for the covariance)
DONE = 6            # nothing: the fit is over


class FitState(NamedTuple):
    """The scalars of one fit between two evaluations (see
    :func:`advance`); its arrays are the :class:`Work` arrays."""
    stage: int          # what the next evaluation is for
    status: int
    n_valid: int
    t: int              # steps taken (the optimizer's and the polish's)
    tb: int             # steps since the optimizer's state was reset
    chi2: float         # at the last evaluation
    chi2_0: float       # at p0
    best: float         # the lowest so far (at w.pbest)
    chi2_prev: float    # at the previous step
    root0: float        # sqrt(chi2_0)
    c: float            # the optimizer's gradient normalisation
    c_diag: float       # ... with per-parameter scales
    factor: float       # of the learning rate (cut on overshoots)
    calm: int           # small steps in a row
    nbad: int           # undone steps in a row
    npolish: int
    damping: float      # Levenberg-Marquardt's
    whiten: bool


@njit(**JIT)
def wants_a(stage):
    """Whether the evaluation for ``stage`` computes ``A = J^T W J``."""
    return stage == START or stage == POLISH or stage == FINAL


@njit(**JIT)
def begin(i, W, P0, w):
    """The state of fit ``i`` before its first evaluation, ``w.p = p0``;
    :data:`DONE` (status 3 or 4) when it has too few valid points."""
    n = w.p.size
    iw = i if W.shape[0] > 1 else 0
    ip = i if P0.shape[0] > 1 else 0
    n_valid = 0
    for k in range(W.shape[1]):
        if W[iw, k] > 0.0:
            n_valid += 1
    for j in range(n):
        w.p[j] = P0[ip, j]
        w.pbest[j] = w.p[j]
        w.pold[j] = w.p[j]
        w.m[j] = 0.0
        w.v[j] = 0.0
    w.step[0] = 0
    stage, status = START, MAXITER
    if n_valid == 0 or n_valid < n:
        stage, status = DONE, NO_DATA if n_valid == 0 else TOO_FEW
    return FitState(stage, status, n_valid, 0, 0, math.nan, 0.0, 0.0, 0.0,
                    0.0, 1.0, 1.0, 1.0, 0, 0, 0, 1e-3, False)


@njit(**JIT)
def advance(st, chi2, i, LO, HI, XS, method, s, w):
    """After an evaluation at ``w.p`` (``chi2``, ``w.g`` and, when
    :func:`wants_a`, ``w.A``): the next point to evaluate, in ``w.p``, and
    the new state (:data:`DONE` after the final evaluation)."""
    n = w.p.size
    p, pbest, pold, du, g, sc = w.p, w.pbest, w.pold, w.du, w.g, w.s
    A, L = w.A, w.L
    T = p.dtype.type
    ib = i if LO.shape[0] > 1 else 0
    js = i if XS.shape[0] > 1 else 0
    (stage, status, n_valid, t, tb, _, chi2_0, best, chi2_prev, root0, c,
     c_diag, factor, calm, nbad, npolish, damping, whiten) = st
    bad = cpu.is_bad(chi2)
    for j in range(n):
        bad = bad or cpu.is_bad(g[j])
    nxt = STEP        # after this: an optimizer step, unless set otherwise
    if stage == FINAL:
        nxt = DONE
    elif stage == START:
        if bad:
            status, nxt = NONFINITE, FINAL
        else:
            chi2_0 = best = chi2_prev = chi2
            root0 = math.sqrt(chi2)
            c = 0.0
            for j in range(n):
                if s.scale_mode >= 1:
                    a = A[j * n + j]
                    sj = math.sqrt(chi2 / a) if a > 0.0 else 0.0
                    if cpu.is_bad(sj) or not sj > 0.0:
                        sj = max(abs(p[j]), 1.0)
                else:
                    sj = XS[js, j]
                sc[j] = sj
                c = max(c, abs(g[j] * sj))
            c = c if c > 0.0 else 1.0
            c_diag = c
            whiten = s.scale_mode == 2 and root0 > 0.0 and cholesky(
                A, L, n, 0.0)
            if whiten:
                solve_lower(L, g, w.gu, n, root0)
                c = 0.0
                for j in range(n):
                    c = max(c, abs(w.gu[j]))
                c = c if c > 0.0 else 1.0
    elif stage == STEP:
        if bad:     # undo the step, shrink the learning rate
            nbad += 1
            for j in range(n):
                p[j] = pold[j]
            factor *= s.lr_decay if s.lr_decay < 1.0 else 0.5
            nxt = REDO
            if nbad >= MAXBAD:
                status, nxt = NONFINITE, FINAL
                for j in range(n):
                    p[j] = pbest[j]
        else:
            nbad = 0
            if chi2 < best:
                best = chi2
                for j in range(n):
                    pbest[j] = p[j]
            if chi2 > chi2_prev:
                # overshoot: smaller steps, and restart the momentum
                factor *= s.lr_decay
                for j in range(n):
                    w.m[j] = 0.0
            small = abs(chi2_prev - chi2) <= s.tol * chi2 + 2.2e-16 * chi2_0
            for j in range(n):
                if abs(p[j] - pold[j]) > s.tol * (abs(p[j]) + sc[j]):
                    small = False
            chi2_prev = chi2
            calm = calm + 1 if small else 0
            if calm >= 2:
                status = CONVERGED
    elif stage == TRIAL:
        if not bad and chi2 < best:     # accept the polish step
            converged = best - chi2 <= s.tol * best
            best = chi2
            for j in range(n):
                pbest[j] = p[j]
            damping *= 0.1
            if converged and status == MAXITER:
                status = CONVERGED
            nxt = FINAL if converged or npolish >= s.polish else POLISH
        else:
            damping *= 10.0
            for j in range(n):
                p[j] = pbest[j]
            nxt = FINAL if npolish >= s.polish or damping > 1e10 else POLISH
    elif stage == POLISH:
        # at pbest, with A and g: a Levenberg-Marquardt step
        nxt = TRIAL
        if bad:
            nxt = FINAL
        else:
            while damping <= 1e10 and not cholesky(A, L, n, damping):
                damping *= 10.0
            if damping > 1e10:
                nxt = FINAL
            else:
                solve_lower(L, g, w.d, n, -1.0)
                solve_upper(L, w.d, n, 1.0)
                for j in range(n):
                    p[j] = min(max(T(pbest[j] + w.d[j]), LO[ib, j]),
                               HI[ib, j])
                npolish += 1
                t += 1
    if nxt == STEP and (status == CONVERGED or t >= s.maxiter):
        # the optimizer is done: polish its best point, or finish there
        for j in range(n):
            p[j] = pbest[j]
        nxt = POLISH if s.polish > 0 else FINAL
    if nxt == STEP:
        # one optimizer step in the scaled coordinates
        t += 1
        tb += 1
        lr_t = cpu.schedule_at(s.schedule, s.lr, s.schedule_a, s.schedule_b,
                               s.schedule_flag, t) * factor
        if whiten:
            solve_lower(L, g, w.gu, n, root0 / c)
        else:
            for j in range(n):
                w.gu[j] = g[j] * sc[j] / c
        for j in range(n):
            pold[j] = p[j]
            du[j] = 0.0
        cpu.update(method, _state_of(method, w), tb, lr_t, du, w.gu, 0, n)
        for j in range(n):
            w.d[j] = du[j]
        if whiten:
            solve_upper(L, w.d, n, root0)
        else:
            for j in range(n):
                w.d[j] *= sc[j]
        clipped = False
        for j in range(n):
            pj = T(pold[j] + w.d[j])
            lo, hi = LO[ib, j], HI[ib, j]
            if pj < lo or pj > hi:
                pj = min(max(pj, lo), hi)
                clipped = True
            p[j] = pj
        if whiten and clipped:
            # a bound is active: go on with per-parameter scales, the
            # optimizer restarted
            whiten = False
            c = c_diag
            tb = 0
            for j in range(n):
                w.m[j] = 0.0
                w.v[j] = 0.0
    return FitState(nxt, status, n_valid, t, tb, chi2, chi2_0, best,
                    chi2_prev, root0, c, c_diag, factor, calm, nbad, npolish,
                    damping, whiten)


@njit(**JIT)
def finish(st, s, i, P, COV, CHI2, NIT, STATUS, w):
    """Row ``i`` of the results from the final state (``w.p`` and ``w.A``
    at the result; ``s`` the :class:`Settings`)."""
    n = w.p.size
    failed = st.status >= NO_DATA       # no data: NaN results
    for j in range(n):
        P[i, j] = math.nan if failed else w.p[j]
    CHI2[i] = math.nan if failed else st.chi2
    NIT[i] = st.t
    STATUS[i] = st.status
    cov = math.nan
    if not (failed or cpu.is_bad(st.chi2)):
        dof = st.n_valid - n
        scale = 1.0 if s.absolute_sigma else (st.chi2 / dof if dof > 0 else
                                              math.inf)
        cov = math.inf
        if not cpu.is_bad(scale) and invert_spd(w.A, w.L, n):
            cov = scale
    for j in range(n):
        for m in range(n):
            COV[i, j, m] = w.A[j * n + m] * cov if 0.0 < cov < math.inf \
                else cov


@njit(**_inline)
def fit_one(chi2_pass, i, X, Y, W, P0, LO, HI, XS, method, s, P, COV, CHI2,
            NIT, STATUS, w):
    """Fit number ``i``: :func:`begin`, then evaluations (the model's
    ``chi2_pass``, see :mod:`adamsci.compiler`) and :func:`advance` until
    the fit is done, then :func:`finish`. ``method`` is the optimizer's
    hyperparameters (``_rules.AdamHyper`` or ``AdaMaxHyper``), ``s`` the
    :class:`Settings`, ``w`` the :class:`Work` arrays.

    Inlined into each model's driver, with the model's chi2 pass: the rest
    -- :func:`begin`, :func:`advance`, :func:`finish` -- does not depend on
    the model and is compiled once (per dtype and optimizer) for all
    models."""
    ix = i if X.shape[0] > 1 else 0
    iw = i if W.shape[0] > 1 else 0
    st = begin(i, W, P0, w)
    while st.stage != DONE:
        chi2 = chi2_pass(X, Y, W, i, ix, iw, w.p, w.out, w.g, w.A,
                         wants_a(st.stage))
        st = advance(st, chi2, i, LO, HI, XS, method, s, w)
    finish(st, s, i, P, COV, CHI2, NIT, STATUS, w)
