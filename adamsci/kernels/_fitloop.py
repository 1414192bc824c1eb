"""The per-fit loop of :func:`adamsci.fit_batch`, written once.

Plain Python, compiled for each model and target by
:mod:`adamsci.kernels.cpu_batch` (``numba.njit``) and
:mod:`adamsci.kernels.cuda_batch` (``numba.cuda.jit(device=True)``). The
functions here read a few names from their globals, which the compiling module
fills per model (see :func:`specialize`):

``_grad(x, p, out) -> f``    the model's value and gradient (analytic, or
                             :func:`fd_grad` for finite differences)
``_value(x, p) -> f``        the model's value (used by :func:`fd_grad`)
``_xget(X, ix, k)``          point ``k``'s coordinate: a float, or a row
``_chi2``                    :func:`chi2_pass` specialised for the model
``_adam``, ``_adamax``, ``_adam_coefficients``, ``_is_bad``, ``_sched``
                             the update rules of :mod:`adamsci._rules` and
                             :func:`adamsci.schedules.evaluate`
``_T``                       the parameters' Numba float type (a cast)
``_DT``, ``_F8``             the parameters' NumPy dtype, and float64
``_NP``, ``_NP2``            the number of parameters and its square
``_H``                       finite-difference step factor, eps**(1/3)
``_work(n, dtype)``          a work array of constant size: on the stack
                             (CPU) or ``cuda.local.array`` (GPU)

Array layout: ``X (1 or n_fits, n_points, xdim)``, ``Y (n_fits, n_points)``,
``W (1 or n_fits, n_points)`` (weights ``1/sigma**2``, 0 masks a point),
``P0, LO, HI, XS (1 or n_fits, n_params)``. Indexing is ``A[i, k]``
whatever the memory order: the CPU passes C-ordered arrays (one fit's points
contiguous, for the per-fit loop), the GPU Fortran-ordered ones (fit ``i`` and
``i + 1`` adjacent, so that a warp's loads coalesce).

The algorithm of one fit
------------------------
1. ``n_valid`` = points with weight > 0; fewer than one point or than
   ``n_params`` points: status 3 or 4, NaN results, no iteration.
2. ``chi2``, its gradient and ``J^T W J`` at ``p0``. The parameter scales
   ``s_j`` are ``XS`` (``x_scale`` given) or ``s_j = sqrt(chi2(p0) /
   (J^T W J)_jj)``: the change of ``p_j`` that alone would move the model by
   the whole initial misfit.
3. ``scale_mode`` 0 or 1 (``x_scale`` given, or "jac"): Adam (or AdaMax) in
   the coordinates ``u_j = p_j / s_j``; the rule is called with the gradient
   ``g_j s_j / c`` (``c`` the largest ``|g_j s_j|`` at ``p0``, so the first
   gradient has magnitude 1 and ``eps`` keeps a fixed meaning) and the step
   size ``lr_t s_j``. ``scale_mode`` 2 ("whiten"): Adam in ``u = L^T p /
   sqrt(chi2(p0))`` with ``J^T W J = L L^T`` at ``p0``, in which the
   parameters start decorrelated: the gradient is ``sqrt(chi2(p0)) L^-1 g``
   (over ``c``), the rule steps ``u`` from 0, and the step is mapped back by
   ``sqrt(chi2(p0)) L^-T``. ``lr_t`` is the learning-rate schedule times a
   per-fit factor multiplied by ``lr_decay`` whenever ``chi2`` rises; the
   first moment ``m`` is then reset to zero (a momentum restart: without it
   the momentum keeps pushing uphill for several steps, each cutting the
   learning rate again). Parameters are clipped into their bounds after each
   step; clipping is a projection only in per-parameter coordinates, so a
   whitened fit whose step gets clipped continues with "jac" scaling (Adam's
   state and bias corrections restarted).
4. A step to a non-finite ``chi2`` or gradient is undone and the factor cut by
   ``lr_decay``; after ``_MAXBAD`` such steps in a row the fit stops with
   status 2.
5. Converged (status 0) when twice in a row ``|chi2 - chi2_prev| <= tol chi2
   + eps chi2(p0)`` and ``|p_j - p_prev_j| <= tol (|p_j| + s_j)`` for every
   ``j``. Otherwise status 1 after ``maxiter`` steps.
6. The result is the lowest-``chi2`` point visited; its covariance is
   ``(J^T W J)^-1`` (Cholesky), times ``chi2 / (n_valid - n_params)`` unless
   ``absolute_sigma`` (scipy's ``curve_fit`` convention); ``inf`` when the
   matrix is singular or ``n_valid == n_params`` (as ``curve_fit``).
"""
import math
import types

CONVERGED = 0
MAXITER = 1
NONFINITE = 2
NO_DATA = 3
TOO_FEW = 4
_MAXBAD = 20


def specialize(func, name, namespace):
    """A copy of ``func`` whose globals are updated by ``namespace``.

    The copy gets ``name`` as ``__name__`` and ``__qualname__``: Numba's
    on-disk cache is keyed by qualified name, so each model, target and dtype
    must have its own.
    """
    g = dict(func.__globals__)
    g.update(namespace)
    f = types.FunctionType(func.__code__, g, name, func.__defaults__,
                           func.__closure__)
    f.__qualname__ = name
    f.__module__ = func.__module__
    f.__doc__ = func.__doc__
    return f


def x_scalar(X, ix, k):
    """Coordinate of point ``k`` of a one-coordinate model."""
    return X[ix, k, 0]


def x_row(X, ix, k):
    """Coordinates of point ``k`` (a row) of a several-coordinate model."""
    return X[ix, k]


def fd_grad(x, p, out):
    """Central finite differences of ``_value``; returns the value."""
    f0 = _value(x, p)    # noqa: F821  (filled in by specialize)
    for j in range(_NP):    # noqa: F821
        pj = p[j]
        h = _H * max(abs(pj), 1.0)    # noqa: F821
        p[j] = pj + h
        hi = p[j]
        fp = _value(x, p)    # noqa: F821
        p[j] = pj - h
        lo = p[j]
        fm = _value(x, p)    # noqa: F821
        p[j] = pj
        out[j] = (fp - fm) / (hi - lo)
    return f0


def chi2_pass(X, Y, W, i, ix, iw, p, out, g, A, want_a):
    """``chi2`` at ``p``; ``g = -J^T W r`` (half the gradient of chi2) and,
    when ``want_a``, ``A = J^T W J`` (row-major, flat: ``A[j * _NP + l]``).
    Points of weight 0 are skipped."""
    for j in range(_NP):    # noqa: F821
        g[j] = 0.0
        if want_a:
            for l in range(_NP):    # noqa: F821
                A[j * _NP + l] = 0.0    # noqa: F821
    chi2 = 0.0
    for k in range(Y.shape[1]):
        w = W[iw, k]
        if w > 0.0:
            f = _grad(_xget(X, ix, k), p, out)    # noqa: F821
            r = Y[i, k] - f
            wr = w * r
            chi2 += wr * r
            for j in range(_NP):    # noqa: F821
                g[j] -= wr * out[j]
            if want_a:
                for j in range(_NP):    # noqa: F821
                    wj = w * out[j]
                    for l in range(j + 1):
                        A[j * _NP + l] += wj * out[l]    # noqa: F821
    if want_a:
        for j in range(_NP):    # noqa: F821
            for l in range(j):
                A[l * _NP + j] = A[j * _NP + l]    # noqa: F821
    return chi2


def grad_bad(g):
    for j in range(_NP):    # noqa: F821
        if _is_bad(g[j]):    # noqa: F821
            return True
    return False


def cholesky(A, n):
    """``A = L L^T`` in place (``L`` in the lower triangle of the flat,
    row-major ``n x n`` ``A``). False when a pivot is not positive (a
    singular or indefinite matrix)."""
    big = 0.0
    for j in range(n):
        big = max(big, abs(A[j * n + j]))
    tiny = big * 1e-14
    for j in range(n):
        d = A[j * n + j]
        for k in range(j):
            d -= A[j * n + k] * A[j * n + k]
        if not d > tiny:
            return False
        d = math.sqrt(d)
        A[j * n + j] = d
        for r in range(j + 1, n):
            t = A[r * n + j]
            for k in range(j):
                t -= A[r * n + k] * A[j * n + k]
            A[r * n + j] = t / d
    return True


def invert_spd(A, n):
    """Invert the symmetric positive definite ``n x n`` matrix ``A`` (flat,
    row-major) in place: Cholesky, then ``L^-T L^-1``. Returns False, ``A``
    undefined, when a pivot is not positive (singular or indefinite)."""
    if not cholesky(A, n):
        return False
    # L^-1 in place (lower triangle)
    for j in range(n):
        A[j * n + j] = 1.0 / A[j * n + j]
        for r in range(j + 1, n):
            t = 0.0
            for k in range(j, r):
                t -= A[r * n + k] * A[k * n + j]
            A[r * n + j] = t / A[r * n + r]
    # A^-1 = L^-T L^-1: upper triangle first (reads only L^-1), then mirror
    for j in range(n):
        for r in range(j, n):
            t = 0.0
            for k in range(r, n):
                t += A[k * n + j] * A[k * n + r]
            A[j * n + r] = t
    for j in range(n):
        for r in range(j + 1, n):
            A[r * n + j] = A[j * n + r]
    return True


def whiten_grad(L, g, out, root0):
    """``out = root0 * L^-1 g``: the gradient in ``u = L^T p / root0``."""
    for j in range(_NP):    # noqa: F821
        t = g[j]
        for k in range(j):
            t -= L[j * _NP + k] * out[k]    # noqa: F821
        out[j] = t / L[j * _NP + j]    # noqa: F821
    for j in range(_NP):    # noqa: F821
        out[j] *= root0


def unwhiten_step(L, du, root0):
    """``du <- root0 * L^-T du`` in place: a step in ``u`` as one in ``p``."""
    for j in range(_NP - 1, -1, -1):    # noqa: F821
        t = du[j]
        for k in range(j + 1, _NP):    # noqa: F821
            t -= L[k * _NP + j] * du[k]    # noqa: F821
        du[j] = t / L[j * _NP + j]    # noqa: F821
    for j in range(_NP):    # noqa: F821
        du[j] *= root0


def fit_one(i, X, Y, W, P0, LO, HI, XS, hyper, P, COV, CHI2, NIT, STATUS):
    """Fit number ``i``; results into row ``i`` of ``P, COV, CHI2, NIT,
    STATUS``. ``hyper`` is the tuple ``(scale_mode, method, sched_code, lr,
    sched_a, sched_b, sched_flag, lr_decay, beta1, beta2, eps, maxiter, tol,
    absolute_sigma)``.

    The work arrays come from ``_work(n, dtype)``: ``stack_empty`` on the CPU
    (stack memory that LLVM keeps in registers once the loops over the
    ``_NP`` parameters are unrolled), ``cuda.local.array`` on the GPU."""
    p = _work(_NP, _DT)    # noqa: F821
    pbest = _work(_NP, _DT)    # noqa: F821
    pold = _work(_NP, _DT)    # noqa: F821
    m = _work(_NP, _DT)    # noqa: F821
    v = _work(_NP, _DT)    # noqa: F821
    g = _work(_NP, _F8)    # noqa: F821
    s = _work(_NP, _F8)    # noqa: F821
    out = _work(_NP, _F8)    # noqa: F821
    A = _work(_NP2, _F8)    # noqa: F821
    L = _work(_NP2, _F8)    # noqa: F821
    (scale_mode, method, sched_code, lr, sched_a, sched_b, sched_flag,
     lr_decay, beta1, beta2, eps, maxiter, tol, absolute_sigma) = hyper
    ix = i if X.shape[0] > 1 else 0
    iw = i if W.shape[0] > 1 else 0
    ip = i if P0.shape[0] > 1 else 0
    ib = i if LO.shape[0] > 1 else 0
    js = i if XS.shape[0] > 1 else 0
    nan = math.nan
    n_valid = 0
    for k in range(Y.shape[1]):
        if W[iw, k] > 0.0:
            n_valid += 1
    if n_valid < _NP or n_valid == 0:    # noqa: F821
        for j in range(_NP):    # noqa: F821
            P[i, j] = nan
            for l in range(_NP):    # noqa: F821
                COV[i, j, l] = nan
        CHI2[i] = nan
        NIT[i] = 0
        STATUS[i] = NO_DATA if n_valid == 0 else TOO_FEW
        return
    for j in range(_NP):    # noqa: F821
        p[j] = P0[ip, j]
        pbest[j] = p[j]
        pold[j] = p[j]
        m[j] = 0.0
        v[j] = 0.0
    # One call site of chi2_pass (the model is inlined once: compile time),
    # driven by ``stage``: START evaluates p0 (with J^T W J for the scales),
    # STEP evaluates the point a step reached, REDO re-evaluates the previous
    # point after a non-finite step was undone, FINAL evaluates the result
    # (with J^T W J for the covariance).
    START = 0
    STEP = 1
    REDO = 2
    FINAL = 3
    stage = START
    status = MAXITER
    t = 0
    chi2_0 = 0.0
    root0 = 0.0
    whiten = False
    c = 1.0
    c_diag = 1.0
    tb = 0                    # steps since Adam's state was last reset
    best = 0.0
    chi2_prev = 0.0
    factor = 1.0
    calm = 0
    nbad = 0
    b1 = _T(beta1)    # noqa: F821
    c1 = _T(1.0 - beta1)    # noqa: F821
    b2 = _T(beta2)    # noqa: F821
    c2 = _T(1.0 - beta2)    # noqa: F821
    e = _T(eps)    # noqa: F821
    zero = _T(0.0)    # noqa: F821
    one = _T(1.0)    # noqa: F821
    while True:
        chi2 = chi2_pass(X, Y, W, i, ix, iw, p, out, g, A,
                         stage == START or stage == FINAL)
        if stage == FINAL:
            break
        bad = _is_bad(chi2) or grad_bad(g)    # noqa: F821
        if stage == START:
            if bad:
                status = NONFINITE
                stage = FINAL
                continue
            chi2_0 = chi2
            root0 = math.sqrt(chi2)
            c = 0.0
            for j in range(_NP):    # noqa: F821
                if scale_mode >= 1:
                    d = A[j * _NP + j]    # noqa: F821
                    sj = math.sqrt(chi2 / d) if d > 0.0 else 0.0
                    if _is_bad(sj) or not sj > 0.0:    # noqa: F821
                        sj = max(abs(p[j]), 1.0)
                else:
                    sj = XS[js, j]
                s[j] = sj
                c = max(c, abs(g[j] * sj))
            if not c > 0.0:
                c = 1.0
            c_diag = c
            whiten = False
            if scale_mode == 2 and root0 > 0.0:
                # u = L^T p / sqrt(chi2(p0)), J^T W J = L L^T at p0
                for j in range(_NP2):    # noqa: F821
                    L[j] = A[j]
                whiten = cholesky(L, _NP)    # noqa: F821
                if whiten:
                    whiten_grad(L, g, out, root0)
                    c = 0.0
                    for j in range(_NP):    # noqa: F821
                        c = max(c, abs(out[j]))
                    if not c > 0.0:
                        c = 1.0
            best = chi2
            chi2_prev = chi2
        elif stage == STEP:
            if bad:
                # undo the step, shrink the learning rate, re-evaluate
                nbad += 1
                for j in range(_NP):    # noqa: F821
                    p[j] = pold[j]
                factor *= lr_decay if lr_decay < 1.0 else 0.5
                if nbad >= _MAXBAD:
                    status = NONFINITE
                    for j in range(_NP):    # noqa: F821
                        p[j] = pbest[j]
                    stage = FINAL
                else:
                    stage = REDO
                continue
            nbad = 0
            if chi2 < best:
                best = chi2
                for j in range(_NP):    # noqa: F821
                    pbest[j] = p[j]
            if chi2 > chi2_prev:
                # overshoot: smaller steps, and restart the momentum
                factor *= lr_decay
                for j in range(_NP):    # noqa: F821
                    m[j] = 0.0
            small = abs(chi2_prev - chi2) <= tol * chi2 + 2.2e-16 * chi2_0
            if small:
                for j in range(_NP):    # noqa: F821
                    if abs(p[j] - pold[j]) > tol * (abs(p[j]) + s[j]):
                        small = False
            chi2_prev = chi2
            if small:
                calm += 1
                if calm >= 2:
                    status = CONVERGED
                    for j in range(_NP):    # noqa: F821
                        p[j] = pbest[j]
                    stage = FINAL
                    continue
            else:
                calm = 0
        stage = STEP
        if t >= maxiter:
            for j in range(_NP):    # noqa: F821
                p[j] = pbest[j]
            stage = FINAL
            continue
        # one Adam (AdaMax) step in the scaled coordinates
        t += 1
        tb += 1
        lr_t = _sched(sched_code, lr, sched_a, sched_b, sched_flag,    # noqa
                      t) * factor
        step_size, inv_sqrt_bc2 = _adam_coefficients(    # noqa: F821
            tb, lr_t, beta1, beta2, True)
        ib2 = _T(inv_sqrt_bc2)    # noqa: F821
        if whiten:
            # Adam on u (the rule steps from u = 0), mapped back to p
            whiten_grad(L, g, out, root0)
            for j in range(_NP):    # noqa: F821
                pold[j] = p[j]
                gj = _T(out[j] / c)    # noqa: F821
                ss = _T(step_size)    # noqa: F821
                if method == 1:
                    du, m[j], v[j] = _adamax(    # noqa: F821
                        zero, gj, m[j], v[j], ss, b1, c1, b2, e, zero, False)
                else:
                    du, m[j], v[j], vmax = _adam(    # noqa: F821
                        zero, gj, m[j], v[j], v[j], ss, ib2, b1, c1, b2, c2,
                        e, zero, one, False, False, False)
                out[j] = du
            unwhiten_step(L, out, root0)
        clipped = False
        for j in range(_NP):    # noqa: F821
            if whiten:
                pj = pold[j] + out[j]
            else:
                pold[j] = p[j]
                gj = _T(g[j] * s[j] / c)    # noqa: F821
                ss = _T(step_size * s[j])    # noqa: F821
                if method == 1:
                    pj, m[j], v[j] = _adamax(    # noqa: F821
                        p[j], gj, m[j], v[j], ss, b1, c1, b2, e, zero, False)
                else:
                    pj, m[j], v[j], vmax = _adam(    # noqa: F821
                        p[j], gj, m[j], v[j], v[j], ss, ib2, b1, c1, b2, c2,
                        e, zero, one, False, False, False)
            lo = LO[ib, j]
            hi = HI[ib, j]
            if pj < lo:
                pj = lo
                clipped = True
            if pj > hi:
                pj = hi
                clipped = True
            p[j] = pj
        if whiten and clipped:
            # A bound is active: clipping is a projection only in the
            # per-parameter coordinates. Continue there, Adam restarted.
            whiten = False
            c = c_diag
            tb = 0
            for j in range(_NP):    # noqa: F821
                m[j] = 0.0
                v[j] = 0.0
    for j in range(_NP):    # noqa: F821
        P[i, j] = p[j]
    CHI2[i] = chi2
    NIT[i] = t
    STATUS[i] = status
    ok = invert_spd(A, _NP)    # noqa: F821
    dof = n_valid - _NP    # noqa: F821
    if absolute_sigma:
        scale = 1.0
    elif dof > 0:
        scale = chi2 / dof
    else:
        scale = math.inf
    for j in range(_NP):    # noqa: F821
        for l in range(_NP):    # noqa: F821
            if _is_bad(chi2):    # noqa: F821
                COV[i, j, l] = nan
            elif ok and not _is_bad(scale):    # noqa: F821
                COV[i, j, l] = A[j * _NP + l] * scale    # noqa: F821
            else:
                COV[i, j, l] = math.inf
