"""Batched many-fits kernels for the CPU (``numba.njit``), one per model.

:func:`get_kernel` compiles :func:`adamsci.kernels._fitloop.fit_one` for a
model into two drivers, a serial one and a ``prange`` one (over chunks of
fits; the parallel one is only for the main thread), both with the signature
of :func:`fit_batch_kernel`. The model's ``grad``/``value`` and the update
rules of :mod:`adamsci._rules` are inlined into the loop over points.

Kernels of built-in models are cached on disk by Numba under names that hold a
digest of the model and rules code (so an edited model is recompiled); kernels
of user models are compiled once per process and model object.

Why one fit per loop iteration rather than SIMD lanes across fits: each fit
stops on its own (a lane-wise loop runs every lane as long as the slowest),
and without Intel SVML (``numba -s``: "SVML Operational: False" here) LLVM
cannot vectorise a loop that calls ``exp``, which dominates most models. The
data layout is therefore one fit's points contiguous (C order) so that the
per-point loop streams through memory; the GPU twin uses the transposed
(Fortran) layout, where adjacent threads (fits) read adjacent addresses.
"""
import hashlib
import threading

import numba
import numpy as np
from numba import njit, prange, types

from .. import _rules, schedules
from . import _fitloop
from .cpu import stack_empty

_NOCACHE = dict(nogil=True, error_model="numpy")
_inline = njit(inline="always", error_model="numpy")
# Small helpers are left to LLVM's inliner: Numba's own inlining copies the
# callee's IR at every call site, which made compiling a model's kernel take
# tens of seconds. Only the model and the loop over points are inlined by
# Numba (the stack work arrays must be visible in one function for LLVM to
# keep them in registers).
_call = njit(error_model="numpy")

_RULES = dict(
    _adam=_call(_rules.adam),
    _adamax=_call(_rules.adamax),
    _adam_coefficients=_call(_rules.adam_coefficients),
    _is_bad=_call(_rules.is_bad),
    _sched=_call(schedules.evaluate),
)
_LOCK = threading.RLock()


def _source_digest():
    """Digest of the code the kernels are built from (models, rules, loop)."""
    from .. import models
    h = hashlib.sha1()
    for mod in (_rules, schedules, _fitloop, models):
        with open(mod.__file__, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:10]


_DIGEST = None


def fit_batch_kernel(X, Y, W, P0, LO, HI, XS, hyper, P, COV, CHI2, NIT,
                     STATUS, nchunks):
    """Fit every row of ``Y``: a driver over chunks of fits (``prange`` in
    the parallel build). Argument order shared with the CUDA twin; see
    :func:`adamsci.kernels._fitloop.fit_one` for their meaning."""
    n = Y.shape[0]
    for c in prange(nchunks):
        lo = c * n // nchunks
        hi = (c + 1) * n // nchunks
        for i in range(lo, hi):
            _fit_one(i, X, Y, W, P0, LO, HI, XS, hyper, P, COV, CHI2,  # noqa
                     NIT, STATUS)


def _compile_probe(model):
    """Compile the model functions alone, so a failure names the model and
    carries Numba's message (rather than failing deep inside the kernel)."""
    from ..models import ModelCompileError
    x = np.zeros(model.xdim) if model.xdim > 1 else 0.5
    p = np.full(model.n_params, 0.5)
    out = np.zeros(model.n_params)
    funcs = [("func", model.value, (x, p))]
    if model.has_grad:
        funcs.append(("grad", model.grad, (x, p, out)))
    for what, f, args in funcs:
        disp = njit(error_model="numpy")(f)
        try:
            with np.errstate(all="ignore"):
                disp.compile(tuple(numba.typeof(a) for a in args))
        except Exception as exc:    # numba.core.errors.NumbaError and others
            raise ModelCompileError(
                f"model {model.name!r}: its {what} "
                f"{getattr(f, '__name__', f)!r} could not be compiled by "
                f"Numba for target 'cpu':\n{exc}") from exc
        restype = disp.nopython_signatures[-1].return_type
        if not isinstance(restype, (numba.types.Float, numba.types.Integer)):
            raise ModelCompileError(
                f"model {model.name!r}: its {what} must return a real "
                f"number, Numba infers {restype}")


def _namespace(model, tag, T, npt):
    """Globals of the specialised loop: rules, model functions, constants."""
    ns = dict(_RULES)
    ns.update(_NP=model.n_params, _NP2=model.n_params ** 2, _T=T, _DT=npt,
              _F8=np.float64, _work=stack_empty,
              _H=float(np.finfo(npt).eps ** (1 / 3)))
    # Built-in models (kernels cached on disk) inline the model and the loop
    # over points into fit_one: ~1.2-1.4x faster fits, ~2x longer compile.
    # User models (compiled in every process) take the faster compile.
    deep = _inline if model.builtin else _call
    ns["_xget"] = _inline(_fitloop.x_row if model.xdim > 1
                          else _fitloop.x_scalar)
    ns["_value"] = deep(model.value)
    if model.has_grad:
        ns["_grad"] = deep(model.grad)
    else:
        ns["_grad"] = deep(_fitloop.specialize(_fitloop.fd_grad,
                                               f"fd_grad_{tag}", ns))
    ns["grad_bad"] = _call(_fitloop.specialize(_fitloop.grad_bad,
                                               f"grad_bad_{tag}", ns))
    ns["chi2_pass"] = deep(_fitloop.specialize(_fitloop.chi2_pass,
                                               f"chi2_pass_{tag}", ns))
    for name in ("cholesky", "whiten_grad", "unwhiten_step"):
        ns[name] = _call(_fitloop.specialize(getattr(_fitloop, name),
                                             f"{name}_{tag}", ns))
    ns["invert_spd"] = _call(_fitloop.specialize(_fitloop.invert_spd,
                                                 f"invert_spd_{tag}", ns))
    return ns


_DTYPES = (("f8", numba.float64, np.float64),
           ("f4", numba.float32, np.float32))


def get_kernel(model, parallel):
    """The serial or parallel CPU kernels of ``model``: a dict ``{"f8": ...,
    "f4": ...}`` by parameter dtype (compiled lazily by Numba on first call;
    kept per model object, and on disk for built-in models)."""
    global _DIGEST
    key = ("cpu", bool(parallel))
    with _LOCK:
        kern = model._compiled.get(key)
        if kern is not None:
            return kern
        if _DIGEST is None:
            _DIGEST = _source_digest()
        base = f"{_safe(model.name)}_{model.n_params}_{model.xdim}_" + (
            _DIGEST if model.builtin else f"u{id(model):x}")
        core = model._compiled.get("cpu_core")
        if core is None:
            if not model.builtin:
                _compile_probe(model)
            core = {}
            for dname, T, npt in _DTYPES:
                tag = f"{base}_{dname}"
                ns = _namespace(model, tag, T, npt)
                core[dname] = njit(cache=model.builtin, **_NOCACHE)(
                    _fitloop.specialize(_fitloop.fit_one, f"fit_one_{tag}",
                                        ns))
            model._compiled["cpu_core"] = core
        drivers = {}
        for dname, fit_one in core.items():
            name = f"fit_batch_{'parallel_' if parallel else ''}{base}_{dname}"
            f = _fitloop.specialize(fit_batch_kernel, name,
                                    {"_fit_one": fit_one})
            drivers[dname] = njit(parallel=bool(parallel),
                                  cache=model.builtin, **_NOCACHE)(f)
        model._compiled[key] = drivers
        return drivers


def _safe(name):
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)


def default_chunks(n_fits, parallel):
    """Chunks of fits for the driver: 1 serial, else 8 per thread (fits do
    not all take the same number of iterations)."""
    if not parallel:
        return 1
    return max(1, min(n_fits, 8 * numba.get_num_threads()))


def run(model, arrays, hyper, parallel):
    """Call the kernel: ``arrays`` = (X, Y, W, P0, LO, HI, XS), ``hyper`` =
    the scalar arguments up to ``absolute_sigma``. Returns P, COV, CHI2, NIT,
    STATUS (C-ordered host arrays)."""
    X, Y, W, P0, LO, HI, XS = arrays
    n, npar = Y.shape[0], model.n_params
    dtype = P0.dtype
    P = np.empty((n, npar), dtype)
    COV = np.empty((n, npar, npar), dtype)
    CHI2 = np.empty(n, np.float64)
    NIT = np.empty(n, np.int64)
    STATUS = np.empty(n, np.int8)
    kern = get_kernel(model, parallel)["f4" if dtype == np.float32 else "f8"]
    from ..models import ModelCompileError
    try:
        kern(X, Y, W, P0, LO, HI, XS, tuple(hyper), P, COV, CHI2, NIT,
             STATUS, default_chunks(n, parallel))
    except numba.core.errors.NumbaError as exc:
        raise ModelCompileError(
            f"model {model.name!r} could not be compiled into the batched "
            f"CPU kernel:\n{exc}") from exc
    return P, COV, CHI2, NIT, STATUS


__all__ = ["fit_batch_kernel", "get_kernel", "run", "default_chunks"]
