"""One iteration of the minimize loop, defined once, and the two loops that
call it.

The path of one iteration
-------------------------
``scipy.optimize.minimize(fun, x0, jac=True, method=adamsci.adam)`` calls
:func:`adamsci.minimize.adam`; :func:`adamsci.minimize._minimize` checks the
options, ``x0`` and the bounds, makes the optimizer (which checks its
hyperparameters), the history session (:class:`adamsci.history.Session`,
when recording or resuming) and the run (:func:`new_run`: the
:class:`Arrays`, :class:`Settings` and :data:`COUNTERS` of a :class:`Run`).
Then one of two loops evaluates the objective and calls :func:`iterate`
after every evaluation:

* :func:`python_loop`, for any Python callable: ``fun`` is called from
  Python, :func:`iterate` through the entry point of its compiled
  specialisation (:meth:`Run.iterate_entry`);
* :func:`compiled_loop`, when ``fun`` (and ``jac``) are Numba ``@njit``
  functions: :func:`_drive`, the same loop compiled, with the objective and
  :func:`iterate` passed as first-class functions (so that it is compiled
  once per signature, not per objective).

:func:`iterate` is everything between two evaluations, four phases in this
order, each a function of its own:

1. :func:`_record_evaluation`: the history row of the evaluation
   (:func:`adamsci._record.record_row`), when the run is recorded and the
   row is due;
2. :func:`_check_finite`: a NaN or inf value or gradient ends the run
   (status 3) or, with ``nonfinite="skip"``, asks for another evaluation at
   the same ``x``; nothing is modified either way;
3. :func:`_stop_test`: ``xtol`` (decided by the previous step), ``gtol`` on
   the projected gradient, ``ftol`` on a moving average of f, ``maxiter``,
   ``maxfev``;
4. :func:`_take_step`: the learning rate of the schedule
   (:data:`adamsci.kernels.cpu.schedule_at`), the optimizer's per-array step
   (:func:`adamsci.kernels.cpu.update`, which runs
   ``adamsci.kernels.cpu._adam_update``, ...: the per-step scalars of
   :func:`adamsci._rules.adam_scalars` and the rule
   :func:`adamsci._rules.adam` on every element -- the code of
   :meth:`adamsci.Optimizer.step` too), the projection onto the bounds,
   ``x = y * x_scale``, the step norm.

The loop ends on a status code (>= 0); :func:`adamsci.minimize._minimize`
builds the :class:`scipy.optimize.OptimizeResult` and the history from the
run's arrays, counters and state.

Everything a run keeps between iterations is named: the optimizer's
hyperparameters (its ``_rules.*Hyper`` named tuple), its state (the
``State`` named tuple of :class:`adamsci.Optimizer`), the run's settings
(:class:`Settings`), its arrays (:class:`Arrays`) and its counters (a Numba
record, :data:`COUNTERS`). Numba compiles :func:`iterate` once per
optimizer (the type of the hyperparameters selects the update), dtype and
gradient type, and caches it on disk.
"""
import math
from typing import NamedTuple

import numpy as np
from numba import njit, typeof, types
from numba.core.errors import NumbaError
from numba.extending import overload

from . import _record
from ._jit import JIT
from .kernels import cpu


# -- status codes (>= 0 end the run) --------------------------------------
CONTINUE = -1       # a step was taken; evaluate the objective at the new x
SKIP = -2           # non-finite value skipped (nonfinite="skip"): again
BADGRAD = -3        # the gradient does not have n entries
FULL = -4           # the history buffer must grow first (nothing was done)
GTOL = 0
MAXITER = 1
MAXFEV = 2
NONFINITE = 3
FTOL = 4
XTOL = 5
CALLBACK = 99

#: ``Settings.schedule`` of a learning rate that is a Python callable: the
#: Python loop evaluates it and stores it in the counters' ``next_lr``.
PYTHON_SCHEDULE = -1


class Settings(NamedTuple):
    """What a run is asked to do: fixed from its start to its end."""
    gtol: float
    ftol: float
    f_smoothing: float     # decay of the moving average of f (ftol)
    patience: int
    xtol: float
    maxiter: int
    maxfev: int
    fev_per_eval: int      # objective calls per evaluation (1, or FD's)
    skip_nonfinite: bool   # nonfinite="skip"
    max_skip: int          # skipped evaluations in a row before status 3
    bounded: bool
    scaled: bool           # x_scale: the optimizer runs on y = x / scale
    sign: float            # +1 minimise, -1 maximise (for ftol)
    want_step_norm: bool   # measure the step norm without xtol (recording)
    schedule: int          # adamsci.schedules code, or PYTHON_SCHEDULE
    lr: float              # the schedule's parameters (Schedule.as_tuple)
    schedule_a: float
    schedule_b: float
    schedule_flag: bool


#: The counters and running values of a run, one Numba record (a NumPy
#: structured array of one element: ``counters["nit"][0]`` from Python).
COUNTERS = np.dtype([
    ("nit", np.int64), ("nfev", np.int64), ("njev", np.int64),
    ("nskip", np.int64),          # skipped evaluations in a row
    ("nskipped", np.int64),       # skipped evaluations in all
    ("stall", np.int64),          # iterations without ftol improvement
    ("xtol_hit", np.int64),       # the last step satisfied xtol
    ("f_ema", np.float64),        # moving average of sign * f (raw)
    ("f_ema_weight", np.float64),  # its bias-correction weight
    ("f_best", np.float64),       # best bias-corrected average so far
    ("grad_norm", np.float64),    # last projected gradient inf-norm
    ("step_norm", np.float64),    # last step's 2-norm (x units)
    ("learning_rate", np.float64),  # learning rate of the last step
    ("next_lr", np.float64),      # the next step's (Python schedules)
])


class Arrays(NamedTuple):
    """The arrays of a run (``y`` is ``x`` itself without ``x_scale``)."""
    x: np.ndarray          # the parameters the objective sees
    y: np.ndarray          # the parameters the optimizer steps
    lo: np.ndarray         # bounds in y units (empty: unbounded)
    hi: np.ndarray
    scale: np.ndarray      # x = y * scale (empty: not scaled)
    gy: np.ndarray         # work: the gradient in y units, y's dtype
    yprev: np.ndarray      # work: y before the step (step norm)


def new_counters():
    """Counters of a new run."""
    c = np.zeros(1, COUNTERS)
    c["f_best"] = np.inf
    for name in ("grad_norm", "step_norm", "learning_rate"):
        c[name] = np.nan
    return c


def _average_of(state):
    """The state's temporal average (``avg``), or an empty array."""
    return getattr(state, "avg", state[1][:0])


@overload(_average_of, jit_options=JIT)
def _average_of_overload(state):
    if "avg" in state.fields:
        return lambda state: state.avg
    return lambda state: state[1][:0]


@njit(inline="always", **JIT)
def _record_evaluation(f, g, a, state, c, B, meta, epoch):
    """Phase 1: the history row of the first evaluation at this ``x``
    (when recorded and due). :data:`FULL`, nothing written, when ``B`` has
    no room."""
    if meta is not None and meta[_record.PENDING] != 0:
        if _record.is_full(B, meta, c.nit):
            return FULL
        _record.record_row(B, meta, c.nit, a.x, g, f, c.step_norm,
                           c.learning_rate, state.step[0],
                           _average_of(state), epoch)
        meta[_record.PENDING] = 0
    return CONTINUE


@njit(inline="always", **JIT)
def _check_finite(f, g, s, c):
    """Phase 2: a NaN or inf value or gradient ends the run, or (``nonfinite
    ="skip"``) asks for another evaluation; nothing else is touched."""
    bad = not (f - f == 0.0)
    for i in range(g.size):
        if not (g[i] - g[i] == 0.0):
            bad = True
    if not bad:
        c.nskip = 0
        return CONTINUE
    if not (s.skip_nonfinite and c.nskip < s.max_skip):
        return NONFINITE
    if c.nfev + s.fev_per_eval > s.maxfev:
        return MAXFEV
    c.nskip += 1
    c.nskipped += 1
    c.nfev += s.fev_per_eval
    c.njev += 1
    return SKIP


@njit(inline="always", **JIT)
def _stop_test(f, g, a, s, c):
    """Phase 3: the stop tests, in order: ``xtol`` (decided by the previous
    step), ``gtol`` on the gradient the bounds do not block, ``ftol`` on the
    moving average of f, ``maxiter``, ``maxfev``."""
    if c.xtol_hit != 0:
        return XTOL
    y = a.y
    gnorm = 0.0
    for i in range(g.size):
        gi = g[i]
        if s.bounded:
            d = gi if s.sign < 0.0 else -gi      # where a step moves y
            if (d < 0.0 and y[i] <= a.lo[i]) or (d > 0.0 and y[i] >= a.hi[i]):
                continue
        gnorm = max(gnorm, abs(gi))
    c.grad_norm = gnorm
    if gnorm <= s.gtol:
        return GTOL
    if s.ftol > 0.0:
        w = s.f_smoothing
        c.f_ema = w * c.f_ema + (1.0 - w) * (s.sign * f)
        c.f_ema_weight = w * c.f_ema_weight + (1.0 - w)
        ema = c.f_ema / c.f_ema_weight
        if c.f_best == math.inf or ema < c.f_best - s.ftol * abs(c.f_best):
            c.f_best = ema
            c.stall = 0
        else:
            c.stall += 1
            if c.stall >= s.patience:
                return FTOL
    if c.nit >= s.maxiter:
        return MAXITER
    if c.nfev + s.fev_per_eval > s.maxfev:
        return MAXFEV
    return CONTINUE


@njit(inline="always", **JIT)
def _take_step(g, a, state, h, s, c):
    """Phase 4: the learning rate of the schedule, the optimizer's per-array
    step, the projection onto the bounds, ``x = y * scale``, the step norm
    (and whether it satisfies ``xtol``)."""
    y = a.y
    n = y.size
    t = state.step[0] + 1
    if s.schedule == PYTHON_SCHEDULE:
        lr = c.next_lr
    else:
        lr = cpu.schedule_at(s.schedule, s.lr, s.schedule_a, s.schedule_b,
                             s.schedule_flag, t)
    c.learning_rate = lr
    for i in range(n):
        a.gy[i] = g[i] * a.scale[i] if s.scaled else g[i]
    want_step = s.xtol > 0.0 or s.want_step_norm
    if want_step:
        for i in range(n):
            a.yprev[i] = y[i]
    cpu.update(h, state, t, lr, y, a.gy, 0, n)   # the kernels' own step
    state.step[0] = t
    if s.bounded:
        for i in range(n):
            y[i] = min(max(y[i], a.lo[i]), a.hi[i])
    if s.scaled:
        for i in range(n):
            a.x[i] = y[i] * a.scale[i]
    if want_step:
        dn = 0.0
        xn = 0.0
        for i in range(n):
            d = y[i] - a.yprev[i]
            if s.scaled:
                d *= a.scale[i]
            dn += d * d
            xn += a.x[i] * a.x[i]
        c.step_norm = math.sqrt(dn)
        if s.xtol > 0.0 and c.step_norm <= s.xtol * (s.xtol + math.sqrt(xn)):
            c.xtol_hit = 1
    c.nit += 1
    c.nfev += s.fev_per_eval
    c.njev += 1


def iterate(f, g, a, state, h, s, counters, B, meta, epoch):
    """Everything between two evaluations; returns a status code.

    ``f`` and ``g`` (a 1-D array) are the objective's value and gradient at
    ``a.x``; ``h`` the optimizer's hyperparameters, ``state`` its state,
    ``s`` the :class:`Settings`, ``counters`` the :data:`COUNTERS` record;
    ``B`` and ``meta`` the history recorder's buffer and layout (``meta``
    empty: not recorded), ``epoch`` the minibatch's epoch (NaN for other
    objectives).

    Returns :data:`CONTINUE` after a step (evaluate at the new ``x``),
    :data:`SKIP` (evaluate again at the same ``x``), :data:`FULL` (grow
    ``B`` and call again), :data:`BADGRAD`, or a final status (>= 0) that
    leaves ``x``, ``y`` and the state untouched. The four phases are the
    functions above; each returns :data:`CONTINUE` to go on (one exit here
    keeps the compiled function small).
    """
    c = counters[0]
    status = CONTINUE if len(g) == a.y.size else BADGRAD
    if status == CONTINUE:
        status = _record_evaluation(f, g, a, state, c, B, meta, epoch)
    if status == CONTINUE:
        status = _check_finite(f, g, s, c)
    if status == CONTINUE:
        status = _stop_test(f, g, a, s, c)
    if status == CONTINUE:
        _take_step(g, a, state, h, s, c)
        if meta is not None:
            meta[_record.PENDING] = 1
    return status


iterate = njit(**JIT)(iterate)


class Run(NamedTuple):
    """Everything :func:`iterate` needs, built by :func:`new_run`."""
    a: Arrays
    state: tuple           # the optimizer's State
    hyper: tuple           # the optimizer's hyperparameters
    settings: Settings
    counters: np.ndarray   # COUNTERS, one element

    def iterate_entry(self, g, B, meta):
        """The compiled :func:`iterate` for this run's types, called
        through its entry point: Numba's dispatcher would type the named
        tuples on every call (microseconds), the entry point does not."""
        args = (1.0, g, self.a, self.state, self.hyper, self.settings,
                self.counters, B, meta, 1.0)
        return iterate.compile(tuple(typeof(v) for v in args))


def new_run(x0, state, hyper, settings, bounds=None, scale=None):
    """A :class:`Run` from ``x0`` (copied) and the optimizer's ``state`` (its
    arrays in y units; used as they are). ``bounds`` (lo, hi) and
    ``scale`` are float64 arrays in x units, or None."""
    dtype = x0.dtype
    empty = np.empty(0, dtype)
    if scale is not None:
        y = (x0 / scale).astype(dtype)
        x = (y * scale.astype(dtype)).astype(dtype)
        scale = scale.astype(dtype)
    else:
        y = x = x0.copy()
        scale = empty
    if bounds is not None:
        lo, hi = bounds
        if scale.size:
            lo, hi = lo / scale, hi / scale
        lo, hi = lo.astype(dtype), hi.astype(dtype)
    else:
        lo = hi = empty
    a = Arrays(x, y, lo, hi, scale, np.zeros_like(y), np.zeros_like(y))
    return Run(a, state, hyper, settings, new_counters())


# -----------------------------------------------------------------------------
# the loop for Python objectives
# -----------------------------------------------------------------------------
def python_loop(run, evaluate, start, recorder, on_step, learning_rate,
                epoch):
    """Evaluate with ``evaluate()`` (Python), then :func:`iterate`, until
    the run ends; returns ``(status, f, g)`` at the final ``x``.

    ``start`` is the ``(f, g)`` at ``x`` (a resumed run's saved evaluation)
    or None (evaluate first); ``recorder`` the history's
    :class:`~adamsci.history.Recorder` or None; ``on_step(f, g)`` is called
    after each evaluation that follows a step (progress bar, callback; its
    ``StopIteration`` ends the run with :data:`CALLBACK`), or None;
    ``learning_rate()`` gives the next step's learning rate when it is a
    Python callable (else None); ``epoch()`` the minibatch's epoch (or None).
    """
    counters = run.counters
    next_lr = counters["next_lr"]
    if start is None:
        f, g = evaluate()
    else:
        f, g = start
    B, meta = (recorder.B, recorder.meta) if recorder is not None else \
        (None, None)
    step = run.iterate_entry(g, B, meta)
    a, state, h, s = run.a, run.state, run.hyper, run.settings
    ep = math.nan
    while True:
        if learning_rate is not None:
            next_lr[0] = learning_rate()
        if epoch is not None:
            ep = epoch()
        status = step(f, g, a, state, h, s, counters, B, meta, ep)
        if status == FULL:
            B = recorder.grow()
            continue
        if status >= 0 or status == BADGRAD:
            return status, f, g
        f, g = evaluate()
        if on_step is not None and status == CONTINUE:
            try:
                on_step(f, g)
            except StopIteration:
                return CALLBACK, f, g


# -----------------------------------------------------------------------------
# the loop compiled around a Numba objective
# -----------------------------------------------------------------------------
class CompileError(RuntimeError):
    """The loop could not be compiled around these functions (nothing was
    run; :mod:`adamsci.minimize` falls back to :func:`python_loop`)."""


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
def _drive(fun, jac, it, args, a, state, h, s, counters, B, meta, f0, g0):
    # fun, jac and it (iterate) arrive as first-class functions: their type
    # is their signature, not their identity, so this loop is compiled once
    # per optimizer, dtype and objective signature and cached on disk, and
    # its compiled module holds neither the objective nor iterate (Numba
    # would link their code into it and optimise it all again). A resumed
    # run starts from its saved evaluation (f0, g0; g0 empty otherwise).
    gc = np.empty(a.y.size, a.y.dtype)     # the gradient as the Python
    resumed = g0.size == gc.size           # loop passes it (same rounding)
    while True:
        if resumed:
            ff = f0
            for i in range(gc.size):
                gc[i] = g0[i]
            resumed = False
        else:
            f, g = _evaluate(fun, jac, a.x, args)
            ff = np.float64(f)
            if len(g) != gc.size:
                status = BADGRAD
                break
            for i in range(gc.size):
                gc[i] = g[i]
        status = it(ff, gc, a, state, h, s, counters, B, meta, np.nan)
        if meta is not None:        # recorded (else compiled without this)
            while status == FULL:
                B = _record.grow(B)
                status = it(ff, gc, a, state, h, s, counters, B, meta,
                            np.nan)
        if status >= 0:
            break
    out = np.empty(gc.size, a.y.dtype)
    for i in range(gc.size):
        out[i] = gc[i]
    return status, ff, out, B


def _vector(t):
    """An array or tuple type the loop can read a gradient from."""
    number = (types.Float, types.Integer)
    if isinstance(t, types.Array):
        return t.ndim == 1 and isinstance(t.dtype, number)
    return isinstance(t, types.UniTuple) and isinstance(t.dtype, number)


def _function_type(fun, argtypes):
    """The first-class function type of the jitted ``fun`` for
    ``argtypes`` (compiles ``fun`` for them)."""
    fun.compile(argtypes)
    for sig in fun.nopython_signatures:
        if tuple(sig.args) == tuple(argtypes):
            return types.FunctionType(sig)
    raise CompileError(f"{fun} did not compile for {argtypes}")


def _check_objective(ftype, jtype):
    """Refuse, before compiling the loop, objectives it cannot take."""
    number = (types.Float, types.Integer)
    ret = ftype.signature.return_type
    if jtype is types.none:
        ok = (isinstance(ret, types.BaseTuple) and len(ret) == 2
              and isinstance(ret[0], number) and _vector(ret[1]))
        want = "(float, 1-D array or tuple of floats)"
    else:
        ok = isinstance(ret, number) and _vector(jtype.signature.return_type)
        want = "a float, and jac a 1-D array or tuple of floats"
    if not ok:
        raise CompileError(f"the objective returns {ret}; the compiled loop "
                           f"needs {want}")


_ENTRIES = {}


def compiled_loop(fun, jac, args, run, B, meta, start=None):
    """The loop compiled around ``fun`` (and ``jac``), Numba dispatchers:
    ``fun(x, *args)`` returns ``(f, g)`` when ``jac`` is None, else ``f``,
    and ``jac(x, *args)`` returns ``g``. Evaluates at ``x`` first, unless
    ``start`` is the ``(f, g)`` there (a resumed run's saved evaluation).
    Returns ``(status, f, g, B)`` at the final ``x`` (``B``: the history
    buffer, replaced by a larger copy when it filled up)."""
    if start is None:
        f0, g0 = 0.0, np.empty(0, run.a.y.dtype)
    else:
        f0 = float(start[0])
        g0 = np.ascontiguousarray(start[1], run.a.y.dtype).reshape(-1)
    loop_args = (run.a, run.state, run.hyper, run.settings, run.counters, B,
                 meta)
    try:
        key = (fun, jac, typeof(args)) + tuple(typeof(v) for v in loop_args)
    except ValueError as e:          # an argument Numba cannot type
        raise CompileError(str(e)) from e
    entry = _ENTRIES.get(key)
    if entry is None:
        argtypes = (typeof(run.a.x),) + tuple(key[2])
        try:
            ftype = _function_type(fun, argtypes)
            jtype = types.none if jac is None else _function_type(jac,
                                                                  argtypes)
            _check_objective(ftype, jtype)
            itypes = (types.float64, typeof(run.a.y)) + key[3:] + (
                types.float64,)
            entry = _drive.compile((ftype, jtype, _function_type(
                iterate, itypes)) + key[2:] + (types.float64,
                                               typeof(g0)))
        except NumbaError as e:
            raise CompileError(str(e)) from e
        _ENTRIES[key] = entry
    return entry(fun, jac, iterate, args, *loop_args, f0, g0)
