"""Batched many-fits kernels for NVIDIA GPUs (``numba.cuda.jit``), one per
model: the twin of :mod:`adamsci.kernels.cpu_batch`.

One thread per fit runs :func:`adamsci.kernels._fitloop.fit_one`, the same
plain-Python loop the CPU compiles, with the model's ``grad``/``value`` and
the rules of :mod:`adamsci._rules` compiled as device functions (the math is
written once). The work arrays are ``cuda.local.array`` of the model's
``n_params`` (a compile-time constant of each specialised kernel), made
inside ``fit_one`` (``_work``).

Layout: the host hands the kernel Fortran-ordered arrays, so that element
``[i, k]`` of fit ``i`` sits next to that of fit ``i + 1``: the 32 threads of
a warp, which work on 32 consecutive fits in lock step, read 32 consecutive
addresses (coalesced loads) at every point ``k``.

:func:`fit_batch_kernel` has the CPU twin's arguments in the same order; the
last one, ``nchunks``, is ignored here (the grid plays its role: a grid-stride
loop over fits).

This module imports ``numba.cuda`` only when a kernel is first asked for.
Numba's simulator (``NUMBA_ENABLE_CUDASIM=1`` before Numba is imported) runs
the same code in Python threads: correct and very slow (keep it to a few fits
of a few points).
"""
import threading
import time
import warnings

import numpy as np

from .. import _rules, schedules
from . import _fitloop

_LOCK = threading.RLock()
_cuda = None
_DEVICE_RULES = None
#: wall time (s) of the last kernel launch of :func:`run` (synchronised)
LAST_KERNEL_SECONDS = float("nan")


def _load():
    """Import numba.cuda (once) and compile the rules as device functions."""
    global _cuda, _DEVICE_RULES
    if _cuda is not None:
        return _cuda
    with _LOCK:
        if _cuda is None:
            from . import cuda as kcuda
            mod = kcuda.require()    # ImportError / RuntimeError, explained
            dev = mod.jit(device=True)
            _DEVICE_RULES = dict(
                _adam=dev(_rules.adam), _adamax=dev(_rules.adamax),
                _adam_coefficients=dev(_rules.adam_coefficients),
                _is_bad=dev(_rules.is_bad), _sched=dev(schedules.evaluate))
            _cuda = mod
    return _cuda


def is_simulator():
    """True when numba.cuda is the simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    mod = _load()
    return bool(getattr(getattr(mod, "config", None), "ENABLE_CUDASIM",
                        False)) or type(mod).__module__.startswith(
        "numba.cuda.simulator") or "simulator" in getattr(mod, "__name__", "")


def _sim_local_array(shape, dtype):
    """The simulator's stand-in for ``cuda.local.array`` (plain NumPy)."""
    return np.empty(shape, dtype)


def _local_array(mod):
    """``cuda.local.array`` (the simulator only has it inside a kernel)."""
    local = getattr(mod, "local", None)
    return _sim_local_array if local is None else local.array


def fit_batch_kernel(X, Y, W, P0, LO, HI, XS, hyper, P, COV, CHI2, NIT,
                     STATUS, nchunks):
    """Fit every row of ``Y``, one thread per fit (grid-stride loop).
    Argument order shared with the CPU twin; ``nchunks`` is unused."""
    n = Y.shape[0]
    start = cuda.grid(1)    # noqa: F821 (globals: specialize)
    stride = cuda.gridsize(1)    # noqa: F821
    for i in range(start, n, stride):
        _fit_one(i, X, Y, W, P0, LO, HI, XS, hyper, P, COV, CHI2, NIT,  # noqa
                 STATUS)


def get_kernel(model):
    """The CUDA kernels of ``model``: a dict ``{"f8": ..., "f4": ...}`` by
    parameter dtype (compiled by Numba on first launch)."""
    import numba
    mod = _load()
    with _LOCK:
        kern = model._compiled.get("cuda")
        if kern is not None:
            return kern
        from . import cpu_batch
        if not model.builtin:
            cpu_batch._compile_probe(model)    # clear error for bad models
        dev = mod.jit(device=True)
        digest = cpu_batch._source_digest()
        base = f"{cpu_batch._safe(model.name)}_{model.n_params}_" \
               f"{model.xdim}_" + (digest if model.builtin
                                   else f"u{id(model):x}")
        kern = {}
        for dname, T, npt in cpu_batch._DTYPES:
            tag = f"cuda_{base}_{dname}"
            ns = dict(_DEVICE_RULES)
            ns.update(_NP=model.n_params, _NP2=model.n_params ** 2, _T=T,
                      _DT=npt, _F8=np.float64, _work=_local_array(mod),
                      _H=float(np.finfo(npt).eps ** (1 / 3)))
            ns["_xget"] = dev(_fitloop.x_row if model.xdim > 1
                              else _fitloop.x_scalar)
            ns["_value"] = dev(model.value)
            if model.has_grad:
                ns["_grad"] = dev(model.grad)
            else:
                ns["_grad"] = dev(_fitloop.specialize(
                    _fitloop.fd_grad, f"fd_grad_{tag}", ns))
            for name in ("chi2_pass", "grad_bad"):
                ns[name] = dev(_fitloop.specialize(
                    getattr(_fitloop, name), f"{name}_{tag}", ns))
            for name in ("cholesky", "whiten_grad", "unwhiten_step"):
                ns[name] = dev(_fitloop.specialize(
                    getattr(_fitloop, name), f"{name}_{tag}", ns))
            ns["invert_spd"] = dev(_fitloop.specialize(
                _fitloop.invert_spd, f"invert_spd_{tag}", ns))
            fit_one = dev(_fitloop.specialize(_fitloop.fit_one,
                                              f"fit_one_{tag}", ns))
            f = _fitloop.specialize(fit_batch_kernel, f"fit_batch_{tag}",
                                    {"_fit_one": fit_one, "cuda": mod})
            kern[dname] = mod.jit(cache=model.builtin)(f)
        model._compiled["cuda"] = kern
        del numba
        return kern


def _launch_geometry(n, threads_per_block):
    tpb = max(1, min(int(threads_per_block), 1024))
    blocks = max(1, (n + tpb - 1) // tpb)
    return blocks, tpb


def run(model, arrays, hyper, threads_per_block=128):
    """Transfer ``arrays`` = (X, Y, W, P0, LO, HI, XS) to the device in
    Fortran order, launch one thread per fit, return P, COV, CHI2, NIT,
    STATUS as C-ordered host arrays."""
    global LAST_KERNEL_SECONDS
    mod = _load()
    kern = get_kernel(model)
    X, Y, W, P0, LO, HI, XS = arrays
    n, npar = Y.shape[0], model.n_params
    dtype = P0.dtype
    k = kern["f4" if dtype == np.float32 else "f8"]
    d_in = [mod.to_device(np.asfortranarray(a)) for a in arrays]
    d_P = mod.device_array((n, npar), dtype, order="F")
    d_COV = mod.device_array((n, npar, npar), dtype, order="F")
    d_CHI2 = mod.device_array(n, np.float64)
    d_NIT = mod.device_array(n, np.int64)
    d_ST = mod.device_array(n, np.int8)
    blocks, tpb = _launch_geometry(n, threads_per_block)
    from numba.core.errors import NumbaError, NumbaPerformanceWarning
    from ..models import ModelCompileError
    t = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # small batches leave the GPU under-occupied: that is expected
            warnings.simplefilter("ignore", NumbaPerformanceWarning)
            k[blocks, tpb](*d_in[:7], tuple(hyper), d_P, d_COV, d_CHI2,
                           d_NIT, d_ST, 1)
        mod.synchronize()
    except NumbaError as exc:
        raise ModelCompileError(
            f"model {model.name!r} could not be compiled into the batched "
            f"CUDA kernel:\n{exc}") from exc
    LAST_KERNEL_SECONDS = time.perf_counter() - t
    return (np.ascontiguousarray(d_P.copy_to_host()),
            np.ascontiguousarray(d_COV.copy_to_host()),
            d_CHI2.copy_to_host(), d_NIT.copy_to_host(), d_ST.copy_to_host())


__all__ = ["fit_batch_kernel", "get_kernel", "run", "is_simulator",
           "LAST_KERNEL_SECONDS"]
