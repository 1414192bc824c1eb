"""How adamsci compiles: one set of options, and host-device functions.

adamsci's numerical code (the update rules of :mod:`adamsci._rules`, the
optimizers' per-array steps, the per-fit loop of :func:`adamsci.fit_batch`,
the compiled models) is written once, as plain Python functions. Decorated
with :func:`host_device` (CUDA C's ``__host__ __device__``) such a function
stays a plain Python function -- callable from Python, so testable without a
compiler, and what Numba's CUDA simulator runs -- and becomes callable from
``@njit`` code (the CPU) and from ``@cuda.jit`` code (NVIDIA GPUs), where
Numba compiles it into its caller (``inline="always"``).

The CPU registration is made when the function is decorated; the CUDA one
when the CUDA target is first used (:func:`enable_cuda`, called by
:mod:`adamsci.kernels.cuda`), so that nothing here imports ``numba.cuda``.
"""
import inspect
import os
import types

from numba.extending import overload

#: Options of every adamsci kernel (numba-stats' habit): cached on disk,
#: the GIL released, and NumPy's error model -- Python's adds a division
#: check that keeps LLVM from vectorising elementwise loops.
JIT = dict(cache=True, nogil=True, error_model="numpy")

_HOST_DEVICE = []           # (function, typer, inline) registered so far
_cuda_overload = None       # numba.cuda.extending.overload, once enabled


def _typer(fn):
    """The overload typing function of ``fn``: ``fn`` itself is the
    implementation, for any argument types."""
    def typer(*args):
        return fn
    typer.__signature__ = inspect.signature(fn)
    return typer


def host_device(fn=None, *, typer=None, inline=False):
    """Make the plain-Python ``fn`` callable from CPU and CUDA kernels.

    Returns ``fn`` unchanged. Calls to it from ``@njit`` and ``@cuda.jit``
    code compile its source for that target (inlined into the caller, or
    with ``inline=False`` as a function of its own, compiled once per
    argument types); calls from Python run it as Python. The functions it
    calls must be host-device functions too (or ``math`` functions, NumPy
    scalar functions Numba knows, ...).

    ``typer`` replaces the source by another implementation chosen from the
    argument types: ``typer(*numba_types) -> implementation`` (Numba's
    ``overload`` protocol), for a function that dispatches on its
    arguments' types (:func:`adamsci.kernels.cpu.update`).

    Examples
    --------
    >>> from numba import njit
    >>> from adamsci._jit import host_device
    >>> @host_device
    ... def halve(a):
    ...     return 0.5 * a
    >>> halve(3.0), njit(lambda a: halve(a) + 1.0)(3.0)
    (1.5, 2.5)
    """
    if fn is None:
        return lambda f: host_device(f, typer=typer, inline=inline)
    typer = typer or _typer(fn)
    how = "always" if inline else "never"
    # Numba caches what it compiles from a file, not from a notebook cell
    # or a doctest
    options = dict(JIT, cache=os.path.isfile(fn.__code__.co_filename))
    overload(fn, inline=how, jit_options=options)(typer)
    if _cuda_overload is not None:
        _cuda_overload(fn, inline=how)(typer)
    _HOST_DEVICE.append((fn, typer, how))
    return fn


def enable_cuda(cuda_overload):
    """Register every host-device function, and those decorated later, with
    numba-cuda's ``overload`` (called once, when the CUDA target loads)."""
    global _cuda_overload
    if _cuda_overload is not None:
        return
    for fn, typer, how in _HOST_DEVICE:
        cuda_overload(fn, inline=how)(typer)
    _cuda_overload = cuda_overload


def renamed(py_func, name):
    """A copy of ``py_func`` under another name (its name in profilers and
    in Numba's cache index). The one helper for the places where Numba's
    cache needs two builds of one source to have distinct names."""
    f = types.FunctionType(py_func.__code__, py_func.__globals__, name,
                           py_func.__defaults__, py_func.__closure__)
    f.__qualname__ = name
    f.__doc__ = py_func.__doc__
    f.__module__ = py_func.__module__
    return f
