"""The minimize loop's per-iteration work, compiled, and the whole loop.

:func:`iterate` is everything the loop of :mod:`adamsci.minimize` does
between two objective evaluations: the non-finite check, the convergence
tests, the learning-rate schedule, the optimizer's update (the scalar rules of
:mod:`adamsci._rules`, applied as the kernels of :mod:`adamsci.kernels.cpu`
apply them), the projection onto the bounds and the step norm.
The Python loop calls it once per iteration (one dispatch of eight
arguments, about 1 us); :func:`run` calls it from a loop compiled around a
user's ``@njit`` objective. Both paths run the same compiled arithmetic, so
they give bitwise identical results.

Everything the loop keeps between iterations lives in four arrays, so that
the Python side reads and writes it without another dispatch:

``fp`` (float64)
    hyperparameters, tolerances, schedule, and the running scalars (EMA of f,
    best EMA, last gradient norm, last step norm, last learning rate);
``ip`` (int64)
    optimizer kind, flags, limits and counters; ``ip[STEP]`` is the
    optimizer's step counter (the state's ``step`` field is a view of it);
``S`` (parameters' dtype, shape ``(k, n)``)
    the optimizer state, one row per active state array;
``W`` (parameters' dtype, shape ``(5, n)``)
    lower and upper bounds, the scale of the parameters, the previous
    iterate and the scaled gradient.

The optimizer runs on ``y = x / scale``; the objective sees ``x``. Without
``x_scale`` the two are the same array.

:func:`run` runs the whole loop in Numba around a user's jitted objective,
in one of two forms:

* For an objective compiled with ``cache=True`` (and a run without bounds,
  ``x_scale``, ``ftol``, ``xtol``, skipping or recording), the loop is
  compiled around the objective, which LLVM inlines into it, with the
  optimizer's flags and the state's layout compiled in as constants
  (:func:`_inline_loop`). It is cached on disk under a name made from the
  objective's identity, as Numba's own cache sees it, so that it is compiled
  once per objective and set of flags (1.5-2.5 s), not once per process.
  When the objective returns its gradient as a tuple of at most
  ``MAX_REGS`` entries, the loop runs on stack copies of x and of the state
  (:func:`_to_registers`), which LLVM keeps in registers.
* Otherwise the loop receives the objective as a first-class function (its
  type is its signature, not the function), so each optimizer's loop is
  compiled once per signature and dtype and cached on disk; a new objective
  with the same signature costs no compilation of the loop, only its own.
  The price is an indirect call per evaluation.
"""
import functools
import hashlib
import math
import pickle

import numpy as np
from numba import njit, typeof, types
from numba.core.errors import NumbaError
from numba.extending import overload

from . import _record
from . import schedules as _schedules

JIT = dict(cache=True, nogil=True, error_model="numpy")

# -- status codes (>= 0 end the run) --------------------------------------
CONTINUE = -1       # a step was taken; evaluate the objective at the new x
SKIP = -2           # non-finite value skipped (nonfinite="skip"); evaluate again
BADGRAD = -3        # the gradient does not have n entries
GTOL = 0
MAXITER = 1
MAXFEV = 2
NONFINITE = 3
FTOL = 4
XTOL = 5
CALLBACK = 99

# -- optimizer kinds --------------------------------------------------------
ADAM, ADAMAX, SGD, ADAGRAD, RMSPROP, ADADELTA = range(6)
KINDS = {"adam": ADAM, "adamax": ADAMAX, "sgd": SGD, "adagrad": ADAGRAD,
         "rmsprop": RMSPROP, "adadelta": ADADELTA}
_KIND_NAMES = {k: name for name, k in KINDS.items()}

# -- slots of fp (float64) --------------------------------------------------
LR = 0              # constant learning rate, or this step's (Python schedule)
SCHED_LR = 1        # schedule parameters (schedules.Schedule.as_tuple)
SCHED_A = 2
SCHED_B = 3
GTOL_ = 4
XTOL_ = 5
FTOL_ = 6
FSMOOTH = 7         # decay of the EMA of f used by ftol
EMA = 8             # running EMA of f (uncorrected)
EMA_W = 9           # its bias-correction weight 1 - FSMOOTH**k
BEST = 10           # best bias-corrected EMA so far
GNORM = 11          # last (projected) gradient inf-norm
STEPNORM = 12       # last step's 2-norm in x units (when computed)
LR_USED = 13        # learning rate of the last step
FSIGN = 14          # +1 minimise, -1 maximise (for ftol)
B1T = 15            # running beta1**t (Adam, AdaMax)
H0 = 16             # optimizer hyperparameters (Optimizer._hyper), 9 slots
B2T = 25            # running beta2**t (Adam)
NFP = 32

# -- slots of ip (int64) ----------------------------------------------------
KIND = 0
SCHED_CODE = 1      # schedules code (0: constant fp[LR]); -1: Python
                    # callable, fp[LR] set before each step
SCHED_FLAG = 2
ROW0 = 3            # ROW0..ROW0+3: row of S of each state array, -1 if off
HAS_BOUNDS = 7
HAS_SCALE = 8
SKIP_MODE = 9       # 1: skip non-finite evaluations (up to MAXSKIP in a row)
MAXITER_ = 10
MAXFEV_ = 11
FPE = 12            # objective calls per evaluation (1, or n+1 with FD)
NIT = 13
NFEV = 14
NJEV = 15
PATIENCE = 16
STALL = 17
NSKIP = 18          # consecutive skipped evaluations
NSKIPPED = 19       # total skipped evaluations
XHIT = 20           # the last step satisfied xtol
MAXSKIP = 21
WANT_STEPNORM = 22  # compute fp[STEPNORM] even without xtol (recorders)
MAXIMIZE = 23
STEP = 24           # the optimizer's int64 step counter
NIP = 32

# -- rows of W ----------------------------------------------------------------
LO, HI, SCALE, YPREV, GY = range(5)
NW = 5

# the rules, compiled once (in kernels.cpu) for every CPU loop
from .kernels.cpu import (_inline, _adam, _adamax, _sgd, _adagrad,  # noqa: E402
                          _rmsprop, _adadelta, _ema, _renamed, stack_empty,
                          stack_empty_2d)

_evaluate_schedule = _inline(_schedules.evaluate)

# The element loops below apply the rules of adamsci._rules exactly as the
# kernels of adamsci.kernels.cpu do, but index the 2-D state S and work W
# arrays directly: creating array views (and calling the kernels, which
# takes views) costs more than the whole update for a few parameters.
# Rows of features that are off (-1) are never read. The loops run over
# len(g) (the caller makes sure it is y.size): for a gradient returned as a
# tuple it is a constant and LLVM unrolls them.


@njit(inline="always", **JIT)
def _adam_loop(y, g, S, r0, r1, r2, r3, step_size, inv_sqrt_bc2, beta1, c1,
               beta2, c2, eps, weight_decay, decay, decoupled, amsgrad,
               maximize, ema_decay, c_ema):
    T = y.dtype.type
    if amsgrad:
        for i in range(len(g)):
            p, m, v, vmax = _adam(y[i], T(g[i]), S[r0, i], S[r1, i],
                                  S[r2, i], step_size, inv_sqrt_bc2, beta1, c1,
                                  beta2, c2, eps, weight_decay, decay,
                                  decoupled, True, maximize)
            y[i] = p
            S[r0, i] = m
            S[r1, i] = v
            S[r2, i] = vmax
            if ema_decay > 0.0:
                S[r3, i] = _ema(S[r3, i], p, ema_decay, c_ema)
    else:
        for i in range(len(g)):
            v = S[r1, i]
            p, m, v, _unused = _adam(y[i], T(g[i]), S[r0, i], v, v,
                                     step_size, inv_sqrt_bc2, beta1, c1, beta2,
                                     c2, eps, weight_decay, decay, decoupled,
                                     False, maximize)
            y[i] = p
            S[r0, i] = m
            S[r1, i] = v
            if ema_decay > 0.0:
                S[r3, i] = _ema(S[r3, i], p, ema_decay, c_ema)


@njit(inline="always", **JIT)
def _adamax_loop(y, g, S, r0, r1, r2, step_size, beta1, c1, beta2, eps,
                 weight_decay, maximize, ema_decay, c_ema):
    T = y.dtype.type
    for i in range(len(g)):
        p, m, u = _adamax(y[i], T(g[i]), S[r0, i], S[r1, i], step_size,
                          beta1, c1, beta2, eps, weight_decay, maximize)
        y[i] = p
        S[r0, i] = m
        S[r1, i] = u
        if ema_decay > 0.0:
            S[r2, i] = _ema(S[r2, i], p, ema_decay, c_ema)


@njit(inline="always", **JIT)
def _sgd_loop(y, g, S, r0, lr, momentum, undamped, nesterov, weight_decay,
              first, maximize):
    T = y.dtype.type
    for i in range(len(g)):
        gi = T(g[i])
        b = S[r0, i] if momentum != 0.0 else gi
        p, b = _sgd(y[i], gi, b, lr, momentum, undamped, nesterov,
                    weight_decay, first, maximize)
        y[i] = p
        if momentum != 0.0:
            S[r0, i] = b


@njit(inline="always", **JIT)
def _adagrad_loop(y, g, S, r0, clr, eps, weight_decay, maximize):
    T = y.dtype.type
    for i in range(len(g)):
        p, s = _adagrad(y[i], T(g[i]), S[r0, i], clr, eps, weight_decay,
                        maximize)
        y[i] = p
        S[r0, i] = s


@njit(inline="always", **JIT)
def _rmsprop_loop(y, g, S, r0, r1, r2, lr, alpha, c_alpha, eps, momentum,
                  centered, weight_decay, maximize):
    T = y.dtype.type
    for i in range(len(g)):
        gi = T(g[i])
        ga = S[r1, i] if centered else gi
        b = S[r2, i] if momentum > 0.0 else gi
        p, sq, ga, b = _rmsprop(y[i], gi, S[r0, i], ga, b, lr, alpha, c_alpha,
                                eps, momentum, centered, weight_decay,
                                maximize)
        y[i] = p
        S[r0, i] = sq
        if centered:
            S[r1, i] = ga
        if momentum > 0.0:
            S[r2, i] = b


@njit(inline="always", **JIT)
def _adadelta_loop(y, g, S, r0, r1, lr, rho, c_rho, eps, weight_decay,
                   maximize):
    T = y.dtype.type
    for i in range(len(g)):
        p, sq, acc = _adadelta(y[i], T(g[i]), S[r0, i], S[r1, i], lr, rho,
                               c_rho, eps, weight_decay, maximize)
        y[i] = p
        S[r0, i] = sq
        S[r1, i] = acc


@njit(inline="always", **JIT)
def _step_adam(y, g, S, h, r0, r1, r2, r3, lr, t, b1t, b2t):
    T = y.dtype.type
    beta1, beta2, eps, wd = h[0], h[1], h[2], h[3]
    ema = h[8]
    b1t = b1t * beta1
    b2t = b2t * beta2
    if h[6] != 0.0:
        step_size = lr / (1.0 - b1t)
        inv_sqrt_bc2 = 1.0 / math.sqrt(1.0 - b2t)
    else:
        step_size = lr
        inv_sqrt_bc2 = 1.0
    _adam_loop(y, g, S, r0, r1, r2, r3, T(step_size), T(inv_sqrt_bc2),
               T(beta1), T(1.0 - beta1), T(beta2), T(1.0 - beta2), T(eps),
               T(wd), T(1.0 - lr * wd), h[4] != 0.0, h[5] != 0.0,
               h[7] != 0.0, T(ema), T(1.0 - ema))
    return b1t, b2t


@njit(inline="always", **JIT)
def _step_adamax(y, g, S, h, r0, r1, r2, r3, lr, t, b1t, b2t):
    T = y.dtype.type
    beta1, beta2, eps, wd = h[0], h[1], h[2], h[3]
    ema = h[5]
    b1t = b1t * beta1
    step_size = lr / (1.0 - b1t)
    _adamax_loop(y, g, S, r0, r1, r2, T(step_size), T(beta1), T(1.0 - beta1),
                 T(beta2), T(eps), T(wd), h[4] != 0.0, T(ema),
                 T(1.0 - ema))
    return b1t, b2t


@njit(inline="always", **JIT)
def _step_sgd(y, g, S, h, r0, r1, r2, r3, lr, t, b1t, b2t):
    T = y.dtype.type
    _sgd_loop(y, g, S, r0, T(lr), T(h[0]), T(1.0 - h[1]),
              h[2] != 0.0, T(h[3]), t == 1, h[4] != 0.0)
    return b1t, b2t


@njit(inline="always", **JIT)
def _step_adagrad(y, g, S, h, r0, r1, r2, r3, lr, t, b1t, b2t):
    T = y.dtype.type
    clr = lr / (1.0 + (t - 1) * h[0])
    _adagrad_loop(y, g, S, r0, T(clr), T(h[1]), T(h[2]),
                  h[3] != 0.0)
    return b1t, b2t


@njit(inline="always", **JIT)
def _step_rmsprop(y, g, S, h, r0, r1, r2, r3, lr, t, b1t, b2t):
    T = y.dtype.type
    alpha = h[0]
    _rmsprop_loop(y, g, S, r0, r1, r2, T(lr), T(alpha), T(1.0 - alpha),
                  T(h[1]), T(h[2]), h[3] != 0.0,
                  T(h[4]), h[5] != 0.0)
    return b1t, b2t


@njit(inline="always", **JIT)
def _step_adadelta(y, g, S, h, r0, r1, r2, r3, lr, t, b1t, b2t):
    T = y.dtype.type
    rho = h[0]
    _adadelta_loop(y, g, S, r0, r1, T(lr), T(rho), T(1.0 - rho),
                   T(h[1]), T(h[2]), h[3] != 0.0)
    return b1t, b2t


def _step(kind, y, g, S, h, r0, r1, r2, r3, lr, t, b1t, b2t):
    """Step ``t`` of optimizer ``kind``; returns the running products.

    Typed by Numba (overload below): a literal ``kind`` compiles only that
    optimizer's step (the compiled loop); a runtime ``kind`` switches.

    The per-step scalars are computed in float64 as the kernels' drivers do
    (:mod:`adamsci.kernels.cpu`) and cast to the parameters' dtype, except
    that Adam's and AdaMax's bias corrections use the running products
    ``b1t = beta1**t`` and ``b2t = beta2**t`` (one multiplication per step
    instead of two ``pow`` calls; reproducible from ``t`` alone, see
    :func:`powers`).
    """
    raise NotImplementedError("compiled only")


_STEPS = (_step_adam, _step_adamax, _step_sgd, _step_adagrad, _step_rmsprop,
          _step_adadelta)

# The same steps as separately compiled (and cached) functions, for iterate():
# one call per step costs nothing next to the Python loop's overhead, and
# compiling six small functions is much quicker than inlining six steps.


_step_adam_f, _step_adamax_f, _step_sgd_f, _step_adagrad_f, \
    _step_rmsprop_f, _step_adadelta_f = (
        njit(**JIT)(_renamed(f.py_func, f.__name__ + "_f")) for f in _STEPS)


@njit(**JIT)
def _step_any(kind, y, g, S, h, r0, r1, r2, r3, lr, t, b1t, b2t):
    if kind == ADAM:
        return _step_adam_f(y, g, S, h, r0, r1, r2, r3, lr, t, b1t, b2t)
    elif kind == ADAMAX:
        return _step_adamax_f(y, g, S, h, r0, r1, r2, r3, lr, t, b1t, b2t)
    elif kind == SGD:
        return _step_sgd_f(y, g, S, h, r0, r1, r2, r3, lr, t, b1t, b2t)
    elif kind == ADAGRAD:
        return _step_adagrad_f(y, g, S, h, r0, r1, r2, r3, lr, t, b1t, b2t)
    elif kind == RMSPROP:
        return _step_rmsprop_f(y, g, S, h, r0, r1, r2, r3, lr, t, b1t, b2t)
    return _step_adadelta_f(y, g, S, h, r0, r1, r2, r3, lr, t, b1t, b2t)


@overload(_step, inline="always", jit_options=dict(JIT))
def _step_overload(kind, y, g, S, h, r0, r1, r2, r3, lr, t, b1t, b2t):
    if isinstance(kind, types.IntegerLiteral):
        return _STEPS[kind.literal_value].py_func

    def impl(kind, y, g, S, h, r0, r1, r2, r3, lr, t, b1t, b2t):
        if kind == ADAM:
            return _step_adam(y, g, S, h, r0, r1, r2, r3, lr, t, b1t, b2t)
        elif kind == ADAMAX:
            return _step_adamax(y, g, S, h, r0, r1, r2, r3, lr, t, b1t,
                                b2t)
        elif kind == SGD:
            return _step_sgd(y, g, S, h, r0, r1, r2, r3, lr, t, b1t, b2t)
        elif kind == ADAGRAD:
            return _step_adagrad(y, g, S, h, r0, r1, r2, r3, lr, t, b1t,
                                 b2t)
        elif kind == RMSPROP:
            return _step_rmsprop(y, g, S, h, r0, r1, r2, r3, lr, t, b1t,
                                 b2t)
        return _step_adadelta(y, g, S, h, r0, r1, r2, r3, lr, t, b1t, b2t)
    return impl


@njit(inline="always", **JIT)
def _hyper(fp):
    """The optimizer's hyperparameters as a tuple (kept in registers)."""
    return (fp[H0], fp[H0 + 1], fp[H0 + 2], fp[H0 + 3], fp[H0 + 4],
            fp[H0 + 5], fp[H0 + 6], fp[H0 + 7], fp[H0 + 8])


@njit(inline="always", **JIT)
def _update(y, W, S, fp, ip, lr):
    """One optimizer step on ``y`` with the gradient in ``W[GY]`` (y units)."""
    t = ip[STEP] + 1
    b1t, b2t = _step_any(ip[KIND], y, W[GY], S, _hyper(fp), ip[ROW0],
                         ip[ROW0 + 1], ip[ROW0 + 2], ip[ROW0 + 3], lr, t,
                         fp[B1T], fp[B2T])
    fp[B1T] = b1t
    fp[B2T] = b2t
    ip[STEP] = t


def powers(beta, t):
    """``beta**t`` as the loop computes it: ``t`` multiplications from 1.

    Running products are not bitwise equal to ``pow``; recomputing them
    this way from the step count continues a run exactly.
    """
    p = 1.0
    beta = float(beta)
    for _ in range(int(t)):
        p *= beta
    return p


@njit(inline="always", **JIT)
def _iterate(x, y, g, f, S, fp, ip, W):
    # the body of iterate(), inlined into run()
    n = y.size
    if g.size != n:
        return BADGRAD
    # 1. the evaluation must be finite; nothing is modified otherwise
    bad = not (f - f == 0.0)
    if not bad:
        for i in range(n):
            if not (g[i] - g[i] == 0.0):
                bad = True
                break
    if bad:
        if ip[SKIP_MODE] != 0 and ip[NSKIP] < ip[MAXSKIP]:
            if ip[NFEV] + ip[FPE] > ip[MAXFEV_]:
                return MAXFEV
            ip[NSKIP] += 1
            ip[NSKIPPED] += 1
            ip[NFEV] += ip[FPE]
            ip[NJEV] += 1
            return SKIP
        return NONFINITE
    ip[NSKIP] = 0
    if ip[XHIT] != 0:
        return XTOL
    # 2. gradient test, on the components the bounds do not block
    has_bounds = ip[HAS_BOUNDS] != 0
    maximize = ip[MAXIMIZE] != 0
    gnorm = 0.0
    for i in range(n):
        gi = g[i]
        if has_bounds:
            d = gi if maximize else -gi      # the direction a step moves y
            if (d < 0.0 and y[i] <= W[LO, i]) or (d > 0.0 and
                                                  y[i] >= W[HI, i]):
                continue
        a = abs(gi)
        if a > gnorm:
            gnorm = a
    fp[GNORM] = gnorm
    if gnorm <= fp[GTOL_]:
        return GTOL
    # 3. smoothed-objective test (patience)
    ftol = fp[FTOL_]
    if ftol > 0.0:
        s = fp[FSMOOTH]
        fp[EMA] = s * fp[EMA] + (1.0 - s) * (fp[FSIGN] * f)
        fp[EMA_W] = s * fp[EMA_W] + (1.0 - s)
        ema = fp[EMA] / fp[EMA_W]
        best = fp[BEST]
        if ema < best - ftol * abs(best):
            fp[BEST] = ema
            ip[STALL] = 0
        else:
            ip[STALL] += 1
            if ip[STALL] >= ip[PATIENCE]:
                return FTOL
    # 4. limits
    if ip[NIT] >= ip[MAXITER_]:
        return MAXITER
    if ip[NFEV] + ip[FPE] > ip[MAXFEV_]:
        return MAXFEV
    # 5. the step
    code = ip[SCHED_CODE]
    if code > 0:
        lr = _evaluate_schedule(code, fp[SCHED_LR], fp[SCHED_A], fp[SCHED_B],
                                ip[SCHED_FLAG] != 0, ip[STEP] + 1)
    else:
        lr = fp[LR]
    fp[LR_USED] = lr
    scaled = ip[HAS_SCALE] != 0
    if scaled:
        for i in range(n):
            W[GY, i] = g[i] * W[SCALE, i]
    else:
        for i in range(n):
            W[GY, i] = g[i]
    want_step = fp[XTOL_] > 0.0 or ip[WANT_STEPNORM] != 0
    if want_step:
        for i in range(n):
            W[YPREV, i] = y[i]
    _update(y, W, S, fp, ip, lr)
    if has_bounds:
        for i in range(n):
            if y[i] < W[LO, i]:
                y[i] = W[LO, i]
            elif y[i] > W[HI, i]:
                y[i] = W[HI, i]
    if scaled:
        for i in range(n):
            x[i] = y[i] * W[SCALE, i]
    if want_step:
        dn = 0.0
        xn = 0.0
        for i in range(n):
            d = y[i] - W[YPREV, i]
            if scaled:
                d = d * W[SCALE, i]
            dn += d * d
            xn += x[i] * x[i]
        dn = math.sqrt(dn)
        fp[STEPNORM] = dn
        xtol = fp[XTOL_]
        if xtol > 0.0 and dn <= xtol * (xtol + math.sqrt(xn)):
            ip[XHIT] = 1
    ip[NIT] += 1
    ip[NFEV] += ip[FPE]
    ip[NJEV] += 1
    return CONTINUE


@njit(**JIT)
def iterate(x, y, g, f, S, fp, ip, W):
    """Everything between two evaluations; returns a status code.

    ``f`` and ``g`` are the objective's value and gradient (x units) at the
    current ``x``. Returns :data:`CONTINUE` after a step (the caller then
    evaluates the objective at the new ``x``), :data:`SKIP` when a non-finite
    evaluation was skipped (evaluate again at the same ``x``), or a final
    status code (>= 0) leaving ``x``, ``y`` and the state untouched.
    """
    return _iterate(x, y, g, f, S, fp, ip, W)


def _evaluate(fun, jac, x, args):
    """``(f, g)`` of a jitted objective (overloaded for Numba below)."""
    if jac is None:
        return fun(x, *args)
    return fun(x, *args), jac(x, *args)


@overload(_evaluate)
def _evaluate_overload(fun, jac, x, args):
    if isinstance(jac, (types.NoneType, types.Omitted)):
        def impl(fun, jac, x, args):
            f, g = fun(x, *args)
            return f, g
    else:
        def impl(fun, jac, x, args):
            return fun(x, *args), jac(x, *args)
    return impl


@njit(**JIT)
def _fast_ok(ip, fp):
    """True when the run needs none of the features the fast loop lacks."""
    return (ip[HAS_BOUNDS] == 0 and ip[HAS_SCALE] == 0 and ip[SKIP_MODE] == 0
            and ip[XHIT] == 0 and fp[FTOL_] == 0.0 and fp[XTOL_] == 0.0)


def _run_template(fun, jac, it, args, x, y, S, fp, ip, W, B, meta):
    # compiled once per optimizer, with _KIND a constant (see _RUNS); ``it``
    # is iterate() as a first-class function: calling it through its
    # address keeps its code out of this module (Numba would otherwise link
    # and re-optimise all six optimizers' steps in every compiled loop).
    if _fast_ok(ip, fp):
        return _run_fast(fun, jac, args, x, y, S, fp, ip, W, B, meta, _KIND)
    return _run_generic(fun, jac, it, args, x, y, S, fp, ip, W, B, meta)


def _with_kind(kind, name):
    return njit(**JIT)(_renamed(_run_template, name, _KIND=kind))


_FTYPES = {}


def _function_type(fun, argtypes):
    """The first-class function type of a jitted ``fun`` for ``argtypes``."""
    key = (fun, argtypes)
    ftype = _FTYPES.get(key)
    if ftype is None:
        fun.compile(argtypes)
        ret = fun.overloads[argtypes].signature.return_type
        ftype = _FTYPES[key] = types.FunctionType(ret(*argtypes))
    return ftype


_ENTRIES = {}


def _is_vector(t):
    if isinstance(t, types.Array):
        return t.ndim == 1 and isinstance(t.dtype, (types.Float,
                                                    types.Integer))
    return isinstance(t, types.BaseTuple) and all(
        isinstance(e, (types.Float, types.Integer)) for e in t)


def _check_returns(ftype, jtype):
    """Refuse, before compiling, objectives the loop cannot take."""
    ret = ftype.signature.return_type
    number = (types.Float, types.Integer)
    if jtype is types.none:
        ok = (isinstance(ret, types.BaseTuple) and len(ret) == 2
              and isinstance(ret[0], number) and _is_vector(ret[1]))
        want = "(float, 1-D array or tuple of floats)"
    else:
        ok = isinstance(ret, number) and _is_vector(
            jtype.signature.return_type)
        want = "a float, and jac a 1-D array or tuple of floats"
    if not ok:
        raise CompileError(f"the objective returns {ret}; the compiled loop "
                           f"needs {want}")


class CompileError(RuntimeError):
    """The compiled loop could not be compiled for these functions (nothing
    was run; :mod:`adamsci.minimize` falls back to its Python loop)."""


def run(fun, jac, args, x, y, S, fp, ip, W, B, meta, kind):
    """The whole loop in Numba: returns ``(status, f, g, B)`` at the final x.

    ``fun`` (and ``jac``) are Numba ``@njit`` dispatchers: ``fun(x, *args)``
    returns ``(f, g)`` when ``jac`` is None, else ``f``, and ``jac(x,
    *args)`` returns ``g``. The first evaluation (at x0) is done here too
    and counted by the caller in ``ip[NFEV]``. ``kind`` is ``ip[KIND]``.

    Without bounds, ``x_scale``, ``ftol``, ``xtol`` and
    ``nonfinite="skip"``, an objective with a disk cache gets
    :func:`_run_lean` compiled around it (:func:`_inline_loop`: counters in
    local variables, the gradient read where the objective returned it,
    every reason to stop tested in one branch) unless the run is recorded;
    other objectives, and recorded runs, get :func:`_run_fast` with the
    objective as a first-class function (``_RUNS``, compiled once per
    signature and dtype). The other runs call :func:`iterate` from
    :func:`_run_generic`. All give the same results as the Python loop,
    bit for bit.

    ``B`` and ``meta`` are the history recorder's buffer and layout
    (:mod:`adamsci._record`; ``meta`` empty: no recording): every evaluation
    after a step (and the first one unless resumed) appends a row when it is
    due; a full ``B`` is replaced by a larger copy, returned as ``B``.
    """
    # the loop's signature depends only on these (x, y, S, fp, ip, W and
    # meta are C-contiguous arrays of fixed dimensions allocated by
    # adamsci.minimize); types are looked up only to compile
    inline = _spec(ip, fp) if _fast_ok(ip, fp) and _lean_ok(ip, meta) \
        else None
    try:
        key = (kind, fun, jac, y.dtype.char, B.ndim,
               typeof(args) if args else (), inline)
    except ValueError as e:          # an argument Numba cannot type
        raise CompileError(str(e)) from e
    entry = _ENTRIES.get(key)
    if entry is None:
        entry = _ENTRIES[key] = _compile(kind, fun, jac, inline, args, x, y,
                                         S, fp, ip, W, B, meta)
    return entry(fun, jac, args, x, y, S, fp, ip, W, B, meta)


def _compile(kind, fun, jac, inline, args, x, y, S, fp, ip, W, B, meta):
    """The entry point of the loop for these arguments' types."""
    argtypes = (typeof(x),) + tuple(typeof(a) for a in args)
    try:
        ftype = _function_type(fun, argtypes)
        jtype = types.none if jac is None else _function_type(jac, argtypes)
    except NumbaError as e:
        raise CompileError(str(e)) from e
    _check_returns(ftype, jtype)
    if inline:
        gtype = (ftype.signature.return_type[1] if jac is None
                 else jtype.signature.return_type)
        inline = inline + (_tuple_length(gtype),)
    loop = _inline_loop(kind, fun, jac, inline) if inline else None
    if loop is not None:
        sig = (typeof(args), typeof(x), typeof(y), typeof(S), typeof(fp),
               typeof(ip), typeof(W), typeof(B))
        caller = _call_inline
    else:
        gtype = typeof(np.empty(0, y.dtype))
        itype = _function_type(iterate, (typeof(x), typeof(y), gtype,
                                         types.float64, typeof(S), typeof(fp),
                                         typeof(ip), typeof(W)))
        sig = (ftype, jtype, itype, typeof(args), typeof(x), typeof(y),
               typeof(S), typeof(fp), typeof(ip), typeof(W), typeof(B),
               typeof(meta))
        loop = _RUNS[kind]
        caller = _call_first_class
    try:
        loop.compile(sig)
    except NumbaError as e:
        raise CompileError(str(e)) from e
    return functools.partial(caller, loop.overloads[sig].entry_point)


def _call_first_class(entry, fun, jac, args, x, y, S, fp, ip, W, B, meta):
    return entry(fun, jac, iterate, args, x, y, S, fp, ip, W, B, meta)


def _call_inline(entry, fun, jac, args, x, y, S, fp, ip, W, B, meta):
    return entry(args, x, y, S, fp, ip, W, B)


def _inline_template(args, x, y, S, fp, ip, W, B):
    # renamed per optimizer and objective by _inline_loop, with _LEAN bound
    # (a copy of _run_lean that calls the objective directly)
    return _LEAN(None, None, args, x, y, S, fp, ip, W, B)


def _evaluate_fg(fun, jac, x, args):
    return _FUN(x, *args)


def _evaluate_f_jac(fun, jac, x, args):
    return _FUN(x, *args), _JAC(x, *args)


_INLINE = {}


def _inline_loop(kind, fun, jac, spec):
    """The lean loop compiled around ``fun`` (and ``jac``), or None.

    Only for objectives compiled with ``cache=True``: the loop is then
    cached on disk next to adamsci's other kernels, under a name made from
    the objective's identity as Numba's own cache sees it (source file and
    its time stamp, qualified name, bytecode, closure and options), so a
    new process loads it instead of compiling it again, and an edited
    objective gets a new loop. Objectives without a disk cache use the
    first-class loop (compiled once for all objectives of a signature).
    """
    tags = [_identity(f) for f in (fun, jac) if f is not None]
    if None in tags:
        return None
    # lean_adam_<hash>, or lean_adam_k<K>_<hash> with x and the state in
    # registers (a gradient returned as a tuple of K entries)
    digest = hashlib.sha256("|".join(tags + [repr(spec)]).encode())
    name = "lean_%s_%s%s" % (_KIND_NAMES[kind],
                             "k%d_" % spec[-1] if spec[-1] else "",
                             digest.hexdigest()[:20])
    loop = _INLINE.get(name)
    if loop is None:
        # a dispatcher passed as a value is a pointer to a Python object
        # (not cacheable): the copies below call the objective by name
        ev = _evaluate_fg if jac is None else _evaluate_f_jac
        ev = njit(inline="always", **JIT)(_renamed(ev, name + "_evaluate",
                                                   _FUN=fun, _JAC=jac))
        loop = _INLINE[name] = njit(**JIT)(_renamed(
            _inline_template, name,
            _LEAN=_lean_loop(kind, name + "_loop", ev, spec)))
    return loop


def _identity(fun):
    """What the compiled code of a cached ``@njit`` function depends on
    (as Numba's cache invalidation sees it), or None."""
    cache = getattr(fun, "_cache", None)
    impl = getattr(cache, "_impl", None)
    if impl is None:                  # NullCache: not compiled with cache=True
        return None
    py = fun.py_func
    try:
        cells = pickle.dumps([c.cell_contents for c in py.__closure__ or ()])
        stamp = impl.locator.get_source_stamp()
    except Exception:                 # unpicklable closure, no source file
        return None
    return "|".join(map(repr, (
        py.__module__, py.__qualname__, impl.filename_base, stamp,
        py.__code__.co_code, py.__code__.co_consts,
        hashlib.sha256(cells).hexdigest(),
        sorted(fun.targetoptions.items()))))


@njit(**JIT)
def _run_generic(fun, jac, it, args, x, y, S, fp, ip, W, B, meta):
    f, g = _evaluate(fun, jac, x, args)
    gc = np.empty(y.size, y.dtype)
    record = meta.size > 0
    due = record and meta[_record.FIRST] != 0
    while True:
        ff = np.float64(f)
        if len(g) != gc.size:
            return BADGRAD, ff, gc, B
        for i in range(gc.size):
            gc[i] = g[i]
        if due:
            if _record.record_row(B, meta, x, gc, ff, fp, ip, S, np.nan):
                B = _record.grow(B)
        status = it(x, y, gc, ff, S, fp, ip, W)
        if status >= 0:
            return status, ff, gc, B
        due = record and status == CONTINUE
        f, g = _evaluate(fun, jac, x, args)


@njit(**JIT)
def _run_fast(fun, jac, args, x, y, S, fp, ip, W, B, meta, kind):
    # The arithmetic and the order of the tests are those of _iterate; the
    # counters and running products live in local variables and are
    # written back before recording and at the end.
    n = y.size
    gc = W[GY]           # the gradient, cast to the parameters' dtype
    record = meta.size > 0
    due = record and meta[_record.FIRST] != 0
    r0, r1, r2, r3 = ip[ROW0], ip[ROW0 + 1], ip[ROW0 + 2], ip[ROW0 + 3]
    h = _hyper(fp)
    nit, t = ip[NIT], ip[STEP]
    nfev, njev, fpe = ip[NFEV], ip[NJEV], ip[FPE]
    maxiter, maxfev = ip[MAXITER_], ip[MAXFEV_]
    b1t, b2t = fp[B1T], fp[B2T]
    gtol = fp[GTOL_]
    code, sflag = ip[SCHED_CODE], ip[SCHED_FLAG] != 0
    slr, sa, sb, lr0 = fp[SCHED_LR], fp[SCHED_A], fp[SCHED_B], fp[LR]
    want_step = ip[WANT_STEPNORM] != 0
    lr = fp[LR_USED]
    dn = fp[STEPNORM]
    gnorm = fp[GNORM]
    f, g = _evaluate(fun, jac, x, args)
    while True:
        ff = np.float64(f)
        if len(g) != n:
            status = BADGRAD
            break
        # copy (cast), finiteness and largest component in one pass
        bad = not (ff - ff == 0.0)
        gn = 0.0
        for i in range(n):
            gc[i] = g[i]
            gi = gc[i]
            if not (gi - gi == 0.0):
                bad = True
            a = abs(gi)
            if a > gn:
                gn = a
        if due:
            ip[NIT] = nit
            ip[STEP] = t
            fp[LR_USED] = lr
            fp[STEPNORM] = dn
            if _record.record_row(B, meta, x, gc, ff, fp, ip, S, np.nan):
                B = _record.grow(B)
        if bad:
            status = NONFINITE
            break
        gnorm = gn
        if gnorm <= gtol:
            status = GTOL
            break
        if nit >= maxiter:
            status = MAXITER
            break
        if nfev + fpe > maxfev:
            status = MAXFEV
            break
        if code > 0:
            lr = _evaluate_schedule(code, slr, sa, sb, sflag, t + 1)
        else:
            lr = lr0
        if want_step:
            for i in range(n):
                W[YPREV, i] = y[i]
        t += 1
        b1t, b2t = _step(kind, y, gc, S, h, r0, r1, r2, r3, lr, t, b1t, b2t)
        if want_step:
            dn = 0.0
            for i in range(n):
                d = y[i] - W[YPREV, i]
                dn += d * d
            dn = math.sqrt(dn)
        nit += 1
        nfev += fpe
        njev += 1
        due = record
        f, g = _evaluate(fun, jac, x, args)
    ip[NIT] = nit
    ip[STEP] = t
    ip[NFEV] = nfev
    ip[NJEV] = njev
    fp[B1T] = b1t
    fp[B2T] = b2t
    fp[LR_USED] = lr
    fp[STEPNORM] = dn
    fp[GNORM] = gnorm
    return status, ff, gc.copy(), B


def _lean_ok(ip, meta):
    """True when the fast loop need not record nor measure steps."""
    return meta.size == 0 and ip[WANT_STEPNORM] == 0


def _run_lean(fun, jac, args, x, y, S, fp, ip, W, B):
    # _run_fast without the recorder and the step norm, and without copying
    # the gradient: the optimizer reads it where the objective returned it
    # (array or tuple), cast to the parameters' dtype as the copy would be.
    # A template: _lean_loop compiles a copy per objective (_evaluate),
    # optimizer (_STEP, inlined by Numba) and _spec (compiled in: the rows
    # of the state, the schedule's code, the 0/1 hyperparameters, and the
    # length of a gradient returned as a tuple); not cached itself, its
    # caller (_inline_loop) is.
    n = y.size
    T = y.dtype.type
    r0, r1, r2, r3 = _SPEC_ROWS
    code = _SPEC_CODE
    h = _fixed(_hyper(fp), _SPEC_H)
    nit, t = ip[NIT], ip[STEP]
    nfev, njev, fpe = ip[NFEV], ip[NJEV], ip[FPE]
    maxiter, maxfev = ip[MAXITER_], ip[MAXFEV_]
    b1t, b2t = fp[B1T], fp[B2T]
    gtol = fp[GTOL_]
    sflag = ip[SCHED_FLAG] != 0
    slr, sa, sb, lr0 = fp[SCHED_LR], fp[SCHED_A], fp[SCHED_B], fp[LR]
    lr = fp[LR_USED]
    # fp[GNORM] is updated only if the run ends on a finite gradient (the
    # others, unlike _iterate, leave the previous one there; nothing reads
    # it after a run that is not recorded)
    gnorm = fp[GNORM]
    # the two limits as one: the iterations left before either is reached
    lim = min(maxiter, nit + (maxfev - nfev) // fpe)
    f, g = _evaluate(fun, jac, x, args)
    # a gradient returned as a tuple: the loop runs on copies of x and the
    # state in registers (_to_registers); otherwise on x, y and S themselves
    xh, Sh = x, S
    x, y, S = _LOCAL(x, y, S, g, r0, r1, r2, r3)
    while True:
        ff = np.float64(f)
        # finiteness (z, a sum of g - g: 0 unless some entry is inf or nan),
        # the largest component and the limits. Every reason to stop is
        # tested in one branch, on one float comparison (gn + z is nan
        # unless all is finite) and an integer sum, which LLVM does not
        # split into branches again (each branch more costs a tenth of a
        # two-parameter step); which reason it was is found out after the
        # loop, in the order of _iterate
        z = ff - ff
        gn = 0.0
        for i in range(len(g)):     # a tuple's length is a constant
            gi = T(g[i])
            z += gi - gi
            a = abs(gi)
            gn = a if a > gn else gn
        stop = (np.int64(len(g) != n) + np.int64(not (gn + z > gtol))
                + np.int64(nit >= lim))
        if stop != 0:
            break
        # (the learning rate and the gradient's norm are not carried from
        # one iteration to the next: every value carried costs a register,
        # and a spilled one costs more than the two-parameter step)
        if code > 0:
            lrs = _LR_AT(code, slr, sa, sb, sflag, t + 1)
        else:
            lrs = lr0
        t += 1
        b1t, b2t = _STEP(y, g, S, h, r0, r1, r2, r3, lrs, t, b1t, b2t)
        nit += 1
        nfev += fpe
        njev += 1
        f, g = _evaluate(fun, jac, x, args)
    _BACK(xh, Sh, x, S, g, r0, r1, r2, r3)
    if t > ip[STEP]:                # the last step's learning rate
        lr = _LR_AT(code, slr, sa, sb, sflag, t) if code > 0 else lr0
    if len(g) != n:
        status = BADGRAD
    elif not (z == 0.0):
        status = NONFINITE
    else:
        gnorm = gn
        if gn <= gtol:
            status = GTOL
        elif nit >= maxiter:
            status = MAXITER
        else:
            status = MAXFEV
    ip[NIT] = nit
    ip[STEP] = t
    ip[NFEV] = nfev
    ip[NJEV] = njev
    fp[B1T] = b1t
    fp[B2T] = b2t
    fp[LR_USED] = lr
    fp[GNORM] = gnorm
    gc = W[GY]
    if status != BADGRAD:
        for i in range(n):
            gc[i] = g[i]
    return status, ff, gc.copy(), B


def _to_registers(x, y, S, g, r0, r1, r2, r3):
    # copies of x and of the state rows on the stack, for a gradient that is
    # a tuple of _K entries. Indexed by constants once the loops over the
    # tuple are unrolled, they live in registers, and no store to the state
    # can alias x, so x is not reloaded from memory between the update and
    # the next evaluation (2-D Rosenbrock: 0.035-0.040 us/step against
    # 0.043-0.053 with x and the state in memory, side by side). Filled only
    # when the gradient has x's length (else the loop stops at once).
    # The two copy loops are written out here and in _from_registers on
    # purpose: one helper shared by both (or the rows copied in a loop of
    # their own) changes LLVM's register allocation of the whole loop -- six
    # carried values spilled to the stack instead of three, 0.044 instead of
    # 0.038-0.040 us/step in the machine's slow state.
    xs = _stack(_K, y.dtype)
    Ss = _stack_2d(4, _K, y.dtype)
    if len(g) == x.size:
        for i in range(len(g)):
            xs[i] = x[i]
            for r in (r0, r1, r2, r3):
                if r >= 0:
                    Ss[r, i] = S[r, i]
    return xs, xs, Ss


def _from_registers(x, S, xs, Ss, g, r0, r1, r2, r3):
    if len(g) == x.size:
        for i in range(len(g)):
            x[i] = xs[i]
            for r in (r0, r1, r2, r3):
                if r >= 0:
                    S[r, i] = Ss[r, i]


@njit(inline="always", **JIT)
def _in_place(x, y, S, g, r0, r1, r2, r3):
    return x, y, S


@njit(inline="always", **JIT)
def _nothing_back(x, S, xs, Ss, g, r0, r1, r2, r3):
    pass


_LR_AT = njit(**JIT)(_renamed(_schedules.evaluate, "_lr_at"))


@njit(inline="always", **JIT)
def _fixed(h, c):
    # h with the entries of c that are not nan (constants: LLVM folds them)
    return (c[0] if c[0] == c[0] else h[0], c[1] if c[1] == c[1] else h[1],
            c[2] if c[2] == c[2] else h[2], c[3] if c[3] == c[3] else h[3],
            c[4] if c[4] == c[4] else h[4], c[5] if c[5] == c[5] else h[5],
            c[6] if c[6] == c[6] else h[6], c[7] if c[7] == c[7] else h[7],
            c[8] if c[8] == c[8] else h[8])


def _spec(ip, fp):
    """What an inlined loop compiles in: the rows of the state arrays, the
    schedule's code and the hyperparameters that are 0 or 1 (the flags, and
    off features such as weight decay), nan for the others. (:func:`_compile`
    adds the length of a gradient returned as a tuple.)"""
    h = fp[H0:H0 + 9].tolist()
    return (tuple(ip[ROW0:ROW0 + 4].tolist()), int(ip[SCHED_CODE]),
            tuple(v if v in (0.0, 1.0) else math.nan for v in h))


#: gradients returned as tuples of at most this many entries get the loop
#: with x and the state in registers (see _run_lean)
MAX_REGS = 16


def _tuple_length(gtype):
    """The length of a gradient type that is a short tuple, else 0."""
    if isinstance(gtype, types.BaseTuple) and 0 < len(gtype) <= MAX_REGS:
        return len(gtype)
    return 0


def _lean_loop(kind, name, evaluate, spec):
    """:func:`_run_lean` compiled for optimizer ``kind``, ``evaluate`` (a
    function calling the objective by name) and the :func:`_spec`
    ``spec``, with the step inlined."""
    rows, code, hc, k = spec
    local, back = _in_place, _nothing_back
    if k:
        inline = njit(inline="always", error_model="numpy")
        local, back = (inline(_renamed(f, f"{name}{f.__name__}", _K=k,
                                       _stack=stack_empty,
                                       _stack_2d=stack_empty_2d))
                       for f in (_to_registers, _from_registers))
    return njit(nogil=True, error_model="numpy")(_renamed(
        _run_lean, name, _STEP=_STEPS[kind], _evaluate=evaluate,
        _SPEC_ROWS=rows, _SPEC_CODE=code, _SPEC_H=hc, _LOCAL=local,
        _BACK=back))


#: The compiled loop of each optimizer kind (module-level dispatchers).
_RUNS = tuple(_with_kind(k, f"run_{name}") for name, k in KINDS.items())
