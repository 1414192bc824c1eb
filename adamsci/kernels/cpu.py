"""In-place CPU kernels (Numba ``@njit``) for every optimizer.

One kernel, :func:`step` (and its ``prange`` twin :func:`step_parallel`,
the same source compiled with ``parallel=True``), steps every optimizer:

1. when ``check`` is true it counts the non-finite gradient entries first and
   returns that count, touching nothing, if it is not zero;
2. it applies the optimizer's *per-array step* (:func:`update`) to every
   element, over ``nchunks`` contiguous chunks (1 for the serial kernel);
3. it increments ``state.step[0]`` and returns 0.

:func:`update` runs the one per-array step of each optimizer
(:func:`_adam_update`, ...): the per-step scalars
(``adamsci._rules.*_scalars``), then the scalar rule of :mod:`adamsci._rules`
on every element of a range. It picks the optimizer from the type of its
hyperparameters (``_rules.AdamHyper``, ...), so a kernel or loop compiled for
Adam holds Adam's code only. :meth:`adamsci.Optimizer.step` calls
:func:`step`; the minimize iteration (:mod:`adamsci._loop`) and the per-fit
loop of :func:`adamsci.fit_batch` (:mod:`adamsci.kernels.fitloop`) call
:func:`update`; the CUDA step kernel (:mod:`adamsci.kernels.cuda`) runs the
same per-array steps with the grid's stride. The rules and the per-array
steps are ``@njit(inline="always")`` functions, compiled into whichever
kernel calls them (numba-cuda compiles a CPU dispatcher that a CUDA kernel
calls as a device function); :func:`update` is a host-device function
(:func:`adamsci._jit.host_device`), which picks one of them by type.

Arrays are 1-D and C-contiguous; ``state`` is the optimizer's ``State``
named tuple (``step``, an int64 array of one element, then the per-parameter
arrays), with arrays of features that are off (AMSGrad's running max, the
temporal average, ...) empty, so that one compiled specialisation serves
every flag combination.
"""
import numba
from numba import njit, prange
from numba import types as nbtypes
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import make_array, populate_array

from .. import _rules, schedules
from .._jit import JIT, host_device, renamed

# The update rules, their per-step scalars and the learning-rate schedules,
# compiled into the kernels that call them (numba-cuda compiles these CPU
# dispatchers as device functions when a CUDA kernel calls them).
_inline = njit(inline="always", error_model="numpy")
_adam = _inline(_rules.adam)
_adamax = _inline(_rules.adamax)
_sgd = _inline(_rules.sgd)
_adagrad = _inline(_rules.adagrad)
_rmsprop = _inline(_rules.rmsprop)
_adadelta = _inline(_rules.adadelta)
_ema = _inline(_rules.ema)
is_bad = _inline(_rules.is_bad)
_adam_scalars = _inline(_rules.adam_scalars)
_adamax_scalars = _inline(_rules.adamax_scalars)
_sgd_scalars = _inline(_rules.sgd_scalars)
_adagrad_scalars = _inline(_rules.adagrad_scalars)
_rmsprop_scalars = _inline(_rules.rmsprop_scalars)
_adadelta_scalars = _inline(_rules.adadelta_scalars)
#: the learning rate of an adamsci.schedules schedule at step t
schedule_at = _inline(schedules.evaluate)


def _twins(py_func):
    """Compile ``py_func`` as a serial and as a ``parallel=True`` kernel.

    The parallel build gets the name ``<name>_parallel``, so that Numba's
    on-disk cache (keyed by name, not by flags) keeps the two apart.
    """
    name = py_func.__name__
    return (njit(**JIT)(py_func),
            njit(parallel=True, **JIT)(renamed(py_func, name + "_parallel")))


def _stack_array(shape, dtype):
    """The signature and code generator of an array of constant ``shape``
    allocated on the stack."""
    arrty = nbtypes.Array(dtype.dtype, len(shape), "C")

    def codegen(context, builder, sig, args):
        lty = context.get_data_type(arrty.dtype)
        size = 1
        for d in shape:
            size *= d
        ptr = cgutils.alloca_once(builder, lty, size=size)
        ary = make_array(arrty)(context, builder)
        itemsize = context.get_abi_sizeof(lty)
        intp = context.get_value_type(nbtypes.intp)
        strides = [itemsize]
        for d in reversed(shape[1:]):
            strides.insert(0, strides[0] * d)
        populate_array(ary, data=ptr, shape=[intp(d) for d in shape],
                       strides=[intp(st) for st in strides],
                       itemsize=intp(itemsize), meminfo=None)
        return ary._getvalue()

    return codegen


@intrinsic
def stack_empty(typingctx, n, dtype):
    """``np.empty(n, dtype)`` on the stack (``n`` a compile-time constant).

    Small work arrays live on the stack so that, once the fixed-length
    loops over them are unrolled, LLVM keeps them in registers: stores to
    heap arrays it must assume may alias each other. Used by the batched
    fits (the loop over points ~1.6x faster, measured on the Gaussian). The
    array must not outlive the function that made it (it has no owner).
    """
    if not isinstance(n, nbtypes.IntegerLiteral):
        return None
    codegen = _stack_array((n.literal_value,), dtype)
    return nbtypes.Array(dtype.dtype, 1, "C")(n, dtype), codegen


@njit(**JIT)
def _chunk(n, nchunks, c):
    return c * n // nchunks, (c + 1) * n // nchunks


@njit(**JIT)
def _count_bad(g):
    bad = 0
    for i in range(g.size):
        if is_bad(g[i]):
            bad += 1
    return bad


@njit(**JIT)
def _any_bad(g):
    """1 if ``g`` holds a NaN or inf, else 0.

    An OR-reduction (LLVM vectorises it at full width; the exact count is
    taken only when it is 1) over four quarters of ``g`` at once: four
    independent memory streams read ~1.5x faster than one (measured 16.6 ->
    26.6 GB/s on one core, 27 -> 39 GB/s on two, arrays beyond cache).
    """
    q = g.size // 4
    a, b, c, d = g[:q], g[q:2 * q], g[2 * q:3 * q], g[3 * q:4 * q]
    bad = False
    for i in range(q):
        bad |= is_bad(a[i]) | is_bad(b[i]) | is_bad(c[i]) | is_bad(d[i])
    for i in range(4 * q, g.size):
        bad |= is_bad(g[i])
    return 1 if bad else 0


@njit(**JIT)
def count_nonfinite(g):
    """Number of NaN or infinite entries of the 1-D array ``g``."""
    return _count_bad(g)


# -- the per-array step of each optimizer ---------------------------------
# update(h, state, t, lr, p, g, lo, hi, stride): step ``t`` (1-based) with
# learning rate ``lr`` on elements lo, lo + stride, ... < hi of ``p`` and of
# the state arrays, gradient ``g`` (cast to p's dtype). The step counter is
# not touched (the caller advances it once for all chunks). The CPU calls it
# (through update) with ``stride`` 1 on one chunk per thread, a CUDA thread
# with the grid's stride (adamsci.kernels.cuda); it is compiled into its
# caller, so that with the constant stride 1 LLVM vectorises the loop (the
# arrays are sliced to lo:hi first: LLVM does not vectorise the same loop
# over lo:hi of whole arrays).


@njit(inline="always", **JIT)
def _adam_update(h, state, t, lr, p, g, lo, hi, stride):
    T = p.dtype.type
    (step_size, inv_sqrt_bc2, beta1, c1, beta2, c2, eps, weight_decay, decay,
     ema_decay, c_ema) = _adam_scalars(h, t, lr, T)
    p, g = p[lo:hi], g[lo:hi]
    m, v = state.m[lo:hi], state.v[lo:hi]
    vmax, avg = state.vmax[lo:hi], state.avg[lo:hi]
    decoupled, maximize = h.decoupled_weight_decay, h.maximize
    # Two loops rather than a conditional load of vmax[i]: LLVM vectorises
    # each of them, but not a loop whose load address depends on a flag.
    if h.amsgrad:
        for i in range(0, p.size, stride):
            pi, m[i], v[i], vmax[i] = _adam(
                p[i], T(g[i]), m[i], v[i], vmax[i], step_size, inv_sqrt_bc2,
                beta1, c1, beta2, c2, eps, weight_decay, decay, decoupled,
                True, maximize)
            p[i] = pi
            if ema_decay > 0.0:
                avg[i] = _ema(avg[i], pi, ema_decay, c_ema)
    else:
        for i in range(0, p.size, stride):
            pi, m[i], v[i], _unused = _adam(
                p[i], T(g[i]), m[i], v[i], v[i], step_size, inv_sqrt_bc2,
                beta1, c1, beta2, c2, eps, weight_decay, decay, decoupled,
                False, maximize)
            p[i] = pi
            if ema_decay > 0.0:
                avg[i] = _ema(avg[i], pi, ema_decay, c_ema)


@njit(inline="always", **JIT)
def _adamax_update(h, state, t, lr, p, g, lo, hi, stride):
    T = p.dtype.type
    (step_size, beta1, c1, beta2, eps, weight_decay, ema_decay,
     c_ema) = _adamax_scalars(h, t, lr, T)
    p, g = p[lo:hi], g[lo:hi]
    m, u, avg = state.m[lo:hi], state.u[lo:hi], state.avg[lo:hi]
    for i in range(0, p.size, stride):
        pi, m[i], u[i] = _adamax(p[i], T(g[i]), m[i], u[i], step_size,
                                       beta1, c1, beta2, eps, weight_decay,
                                       h.maximize)
        p[i] = pi
        if ema_decay > 0.0:
            avg[i] = _ema(avg[i], pi, ema_decay, c_ema)


@njit(inline="always", **JIT)
def _sgd_update(h, state, t, lr, p, g, lo, hi, stride):
    T = p.dtype.type
    lr, momentum, undamped, weight_decay = _sgd_scalars(h, t, lr, T)
    p, g = p[lo:hi], g[lo:hi]
    buf = state.momentum_buffer[lo:hi]
    first = t == 1
    for i in range(0, p.size, stride):
        gi = T(g[i])
        b = buf[i] if momentum != 0.0 else gi
        p[i], b = _sgd(p[i], gi, b, lr, momentum, undamped, h.nesterov,
                       weight_decay, first, h.maximize)
        if momentum != 0.0:
            buf[i] = b


@njit(inline="always", **JIT)
def _adagrad_update(h, state, t, lr, p, g, lo, hi, stride):
    T = p.dtype.type
    clr, eps, weight_decay = _adagrad_scalars(h, t, lr, T)
    p, g = p[lo:hi], g[lo:hi]
    s = state.sum[lo:hi]
    for i in range(0, p.size, stride):
        p[i], s[i] = _adagrad(p[i], T(g[i]), s[i], clr, eps,
                                    weight_decay, h.maximize)


@njit(inline="always", **JIT)
def _rmsprop_update(h, state, t, lr, p, g, lo, hi, stride):
    T = p.dtype.type
    lr, alpha, c_alpha, eps, momentum, weight_decay = _rmsprop_scalars(
        h, t, lr, T)
    p, g = p[lo:hi], g[lo:hi]
    sq, gavg = state.square_avg[lo:hi], state.grad_avg[lo:hi]
    buf = state.momentum_buffer[lo:hi]
    centered = h.centered
    for i in range(0, p.size, stride):
        gi = T(g[i])
        ga = gavg[i] if centered else gi
        b = buf[i] if momentum > 0.0 else gi
        p[i], sq[i], ga, b = _rmsprop(p[i], gi, sq[i], ga, b, lr, alpha,
                                      c_alpha, eps, momentum, centered,
                                      weight_decay, h.maximize)
        if centered:
            gavg[i] = ga
        if momentum > 0.0:
            buf[i] = b


@njit(inline="always", **JIT)
def _adadelta_update(h, state, t, lr, p, g, lo, hi, stride):
    T = p.dtype.type
    lr, rho, c_rho, eps, weight_decay = _adadelta_scalars(h, t, lr, T)
    p, g = p[lo:hi], g[lo:hi]
    sq, acc = state.square_avg[lo:hi], state.acc_delta[lo:hi]
    for i in range(0, p.size, stride):
        p[i], sq[i], acc[i] = _adadelta(p[i], T(g[i]), sq[i], acc[i], lr,
                                        rho, c_rho, eps, weight_decay,
                                        h.maximize)


#: the per-array step of each optimizer, by the class of its hyperparameters
UPDATES = {_rules.AdamHyper: _adam_update, _rules.AdaMaxHyper: _adamax_update,
           _rules.SGDHyper: _sgd_update, _rules.AdaGradHyper: _adagrad_update,
           _rules.RMSPropHyper: _rmsprop_update,
           _rules.AdaDeltaHyper: _adadelta_update}


def update(h, state, t, lr, p, g, lo, hi):
    """Step ``t`` of the optimizer whose hyperparameters are ``h`` on the
    elements ``lo:hi``: the optimizer's function of :data:`UPDATES`
    (``type(h)`` selects it) with stride 1.

    A host-device function (:func:`adamsci._jit.host_device`): CPU and CUDA
    code pick the function when they are compiled (:func:`_pick_update`)
    and compile it once per argument types; from Python (and in Numba's CUDA
    simulator) this runs its Python source.
    """
    UPDATES[type(h)].py_func(h, state, t, lr, p, g, lo, hi, 1)


def _pick_update(h, state, t, lr, p, g, lo, hi):
    fn = UPDATES[h.instance_class]

    def impl(h, state, t, lr, p, g, lo, hi):
        # the constant stride 1, inlined: LLVM vectorises the loop
        fn(h, state, t, lr, p, g, lo, hi, 1)
    return impl


host_device(update, typer=_pick_update, inline=False)


def step(p, g, state, h, lr, check, nchunks):
    """One in-place step of ``p`` and ``state`` (the optimizer of ``h``).

    Returns 0, or (``check`` true) the number of NaN/inf entries of ``g``
    when there are any, nothing modified then. ``nchunks`` chunks, run by
    ``prange`` in :func:`step_parallel`.
    """
    n = p.size
    if check:
        bad = 0
        for c in prange(nchunks):
            lo, hi = _chunk(n, nchunks, c)
            bad += _any_bad(g[lo:hi])
        if bad > 0:
            return _count_bad(g)
    t = state.step[0] + 1
    for c in prange(nchunks):
        lo, hi = _chunk(n, nchunks, c)
        update(h, state, t, lr, p, g, lo, hi)
    state.step[0] = t
    return 0


step, step_parallel = _twins(step)


def num_threads():
    """Threads a parallel kernel uses (``numba.get_num_threads()``)."""
    return numba.get_num_threads()
