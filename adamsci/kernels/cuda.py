r"""In-place CUDA kernels (``@cuda.jit``): twins of :mod:`adamsci.kernels.cpu`.

The CPU has one kernel for every optimizer, :func:`adamsci.kernels.cpu.step`;
its CUDA twin :data:`step` has the same name and the same arguments but the
last, and runs the same per-array step of each optimizer
(``adamsci.kernels.cpu._adam_update``, ...: the rules of :mod:`adamsci._rules`
and their per-step scalars), here with each thread taking every
``gridsize``-th element (a grid-stride loop):

* ``step(p, g, state, h, lr, check, scratch)``: ``state`` is the optimizer's
  ``State`` named tuple of device arrays, ``h`` its hyperparameters
  (``_rules.AdamHyper``, ...), whose type picks the optimizer when the kernel
  is compiled;
* ``count_nonfinite(g, scratch)``.

Numba compiles the per-array steps, plain ``@njit`` functions, for the GPU
when a kernel calls them (numba-cuda turns a CPU dispatcher into a device
function); the math is written once. The optimizers (:mod:`adamsci.optimizers`)
call :func:`init_state` and :func:`step_device` when ``params`` is a CUDA
device array: a Numba device array or any object with
``__cuda_array_interface__`` (CuPy arrays, PyTorch CUDA tensors). Parameters,
gradients and state stay on the device and are updated in place.

This is the only module of adamsci that imports ``numba.cuda``, and it does so
lazily: importing it (or :mod:`adamsci`, or :mod:`adamsci.optimizers`) imports
nothing of ``numba.cuda``; the kernels are built on first use (``numba-cuda``
is the optional extra ``adamsci[cuda]``). Without numba-cuda the CUDA path
raises :class:`ImportError`; with numba-cuda but no usable GPU it raises
:class:`RuntimeError`; each message says which is missing. Numba's simulator
(``NUMBA_ENABLE_CUDASIM=1`` set before Numba is imported) counts as a GPU; it
runs the kernels in Python, and the per-array steps from their Python source
(:func:`adamsci.kernels.cpu.update` run from Python does the same).

Differences from the CPU twins
------------------------------
A kernel cannot return a value, and a grid has no cheap global barrier, so
the last argument differs (the rest of the signature is identical; a test
compares them):

* CPU ``(..., check, nchunks) -> n_bad``; CUDA ``(..., check, scratch)``:
  ``scratch`` is the int64 device array of shape (3,) made by
  :func:`new_scratch`, and the grid replaces ``nchunks``.
* CPU ``count_nonfinite(g) -> n``; CUDA ``count_nonfinite(g, scratch)``: the
  count is added to ``scratch[0]``.

``scratch`` holds ``[count, blocks_done, last_count]``:

1. with ``check``, :func:`step_device` first launches ``count_nonfinite`` (a
   grid-stride reduction: one atomic add per thread that saw a NaN/inf, none
   otherwise) into ``scratch[0]``;
2. the step kernel, queued right behind it on the same stream, reads that
   count; if it is not zero no thread touches anything (the CPU's "return
   n_bad without modifying anything"), else every element is updated;
3. the last block to finish (a ticket taken with one atomic add per block on
   ``scratch[1]``, after a ``syncthreads``) advances the step counter
   ``state.step[0]``, publishes the count in ``scratch[2]`` and resets
   ``scratch[0]`` and ``scratch[1]`` to zero, so the next step needs no
   memset;
4. the host copies ``scratch[2]`` (8 bytes, into pinned memory) back: the one
   device-to-host copy per step, which also waits for the step to finish,
   then raises :class:`FloatingPointError` or returns False exactly as the CPU
   path does. With ``nonfinite="ignore"`` there is no count kernel and no copy:
   a step is one asynchronous kernel launch.

The step counter stays on the device (the int64 array ``state.step``): every
thread reads ``t = step[0] + 1`` when it starts and computes the per-step
scalars from it in float64 (``adamsci._rules.adam_scalars``, ...) before
casting them to the parameters' dtype; the increment is race-free because it
is written by the last block only after every block has passed its barrier,
that is after every thread has read ``step[0]``. So the kernel launched by
itself behaves like its CPU twin (one launch, step advanced), without a second
launch or a host-side mirror. A learning-rate *schedule* needs ``t`` on the
host: :meth:`adamsci.Optimizer.step` reads ``state.step`` from the device (one
more 8-byte copy, only when ``learning_rate`` is a callable) rather than
keeping a host mirror that could drift from the device counter when a state
is restored or edited.

Arithmetic: float32 parameters are updated in float32 and float64 in float64,
as on the CPU; division and square root are IEEE-rounded (no fastmath). The
CUDA compiler contracts ``a*b + c`` into fused multiply-adds (NVVM's
default), so results agree with the CPU twins to rounding, not bitwise (the
tests ask for 1e-12 norm-wise relative in float64 after 100 steps).

Kernels run on Numba's default stream; arrays imported through
``__cuda_array_interface__`` are synchronised with the stream they advertise
(Numba's default), so PyTorch/CuPy producers need no manual synchronisation.
Arrays must live on Numba's current device (``numba.cuda.select_device`` or
``with numba.cuda.gpus[i]:``).

Examples
--------
The launch geometry is plain arithmetic (no GPU needed):

>>> from adamsci.kernels import cuda as kc
>>> kc.launch_config(1000, threads_per_block=128, max_blocks=4)
(4, 128)
>>> kc.launch_config(0, threads_per_block=128, max_blocks=4)  # one block
(1, 128)

On a GPU (or the simulator) an optimizer steps device arrays in place:

>>> import numpy as np, adamsci
>>> if kc.is_available():
...     from numba import cuda
...     x = cuda.to_device(np.array([1.0, -2.0]))
...     opt = adamsci.Adam(learning_rate=0.1)
...     state = opt.init(x)                 # moments on the device
...     for _ in range(3):
...         g = cuda.to_device(2 * x.copy_to_host())   # gradient of |x|^2
...         _ = opt.step(x, g, state)
...     steps = int(state.to_dict()["step"][0])
... else:
...     steps = 3
>>> steps
3
"""
import os
import threading
import warnings

import numpy as np

from . import cpu
from .. import optimizers as _optimizers
from .._jit import enable_cuda, host_device, renamed

__all__ = ["step", "count_nonfinite", "is_available", "require",
           "init_state", "step_device", "to_device", "new_scratch",
           "configure", "launch_config", "TWINS", "SIGNATURE_DIFFERENCES"]

#: The CUDA twins of the CPU kernels, by name (the CPU kernels' names).
TWINS = ("step", "count_nonfinite")

#: The intended differences between a CPU kernel's parameters and its CUDA
#: twin's: CPU parameter name -> CUDA parameter name (see the module notes).
SIGNATURE_DIFFERENCES = {"nchunks": "scratch"}

#: ``numba.cuda``, bound on first use by :func:`_load` (the kernel sources
#: below read it when they are compiled, which is after that).
cuda = None
#: The compiled kernels (``step``, ``count_nonfinite``, ``fill``), made by
#: :func:`_load` from the sources below.
_kernels = None

_SCRATCH_SIZE = 3          # [count, blocks_done, last_count]
_DEFAULT_TPB = 256         # threads per block on a GPU
_SIM_TPB = 8               # ... and in the simulator (one Python thread each)
_WAVES = 4                 # default grid: this many waves of resident blocks
_lock = threading.RLock()
_local = threading.local()
_settings = {"threads_per_block": None, "max_blocks": None}
_max_blocks_cache = {}
_launchers = {}
_SIMULATOR = False


# ---------------------------------------------------------------------------
# kernel sources: plain Python, compiled by _load() with numba.cuda.jit
# ---------------------------------------------------------------------------
def _strided_update(h, state, t, lr, p, g, start, stride):
    """The optimizer's per-array step (``adamsci.kernels.cpu.UPDATES``, by
    the type of ``h``) on elements ``start, start + stride, ...``."""
    cpu.UPDATES[type(h)].py_func(h, state, t, lr, p, g, start, p.size,
                                 stride)


def _pick_strided_update(h, state, t, lr, p, g, start, stride):
    fn = cpu.UPDATES[h.instance_class]

    def impl(h, state, t, lr, p, g, start, stride):
        fn(h, state, t, lr, p, g, start, p.size, stride)
    return impl


host_device(_strided_update, typer=_pick_strided_update)


def _step(p, g, state, h, lr, check, scratch):
    """One in-place step of ``p`` and ``state`` by the optimizer of ``h``;
    with ``check``, nothing when ``count_nonfinite`` left a count."""
    bad = scratch[0] if check else 0
    t = state.step[0] + 1
    if bad == 0:
        _strided_update(h, state, t, lr, p, g, cuda.grid(1),
                        cuda.gridsize(1))
    # the last block to finish advances the step (see the module notes)
    cuda.syncthreads()          # every thread of this block has read step[0]
    if cuda.threadIdx.x == 0:
        cuda.threadfence()
        ticket = cuda.atomic.add(scratch, 1, 1)
        if ticket == cuda.gridDim.x - 1:     # every other block is done
            cuda.threadfence()
            if bad == 0:
                state.step[0] = t
            if check:
                scratch[2] = bad
                scratch[0] = 0
            scratch[1] = 0


def _count_nonfinite(g, scratch):
    """Add the number of NaN or infinite entries of ``g`` to
    ``scratch[0]``."""
    bad = 0
    for i in range(cuda.grid(1), g.size, cuda.gridsize(1)):
        if cpu.is_bad(g[i]):
            bad += 1
    if bad > 0:
        cuda.atomic.add(scratch, 0, bad)


def _fill(a, value):
    """``a[:] = value`` (the state's initial values, on the device)."""
    x = a.dtype.type(value)
    for i in range(cuda.grid(1), a.size, cuda.gridsize(1)):
        a[i] = x


#: kernel name -> source (the names of the CPU twins)
_SOURCES = {"step": _step, "count_nonfinite": _count_nonfinite, "fill": _fill}


# ---------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------
def _import_numba_cuda():
    try:
        import numba_cuda  # noqa: F401  (the NVIDIA-maintained CUDA target)
    except ImportError as exc:
        raise ImportError(
            "adamsci's CUDA path needs the numba-cuda package, which is not "
            "installed: pip install 'adamsci[cuda]' (or numba-cuda)") from exc
    from numba import cuda as numba_cuda_module
    return numba_cuda_module


def _load():
    """Import numba.cuda and build the kernels (once); return numba.cuda."""
    global cuda, _kernels, _SIMULATOR
    if cuda is not None:
        return cuda
    with _lock:
        if cuda is not None:
            return cuda
        mod = _import_numba_cuda()
        _SIMULATOR = bool(getattr(getattr(mod, "config", None),
                                  "ENABLE_CUDASIM", False))
        if not _SIMULATOR:
            # the host-device functions become callable from CUDA kernels
            # (the simulator runs them as Python)
            from numba.cuda.extending import overload
            enable_cuda(overload)
        cuda = mod
        _kernels = {name: mod.jit(cache=True)(renamed(source, name))
                    for name, source in _SOURCES.items()}
    return cuda


def __getattr__(name):
    # the kernels exist once numba.cuda is imported: built on first use
    if name in _SOURCES:
        _load()
        return _kernels[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_available():
    """True when numba-cuda is installed and a GPU (or simulator) is usable.

    Never raises; importing numba.cuda is the only side effect.
    """
    try:
        require()
    except (ImportError, RuntimeError):
        return False
    return True


def require():
    """Return ``numba.cuda`` with the kernels built, or say what is missing.

    Raises
    ------
    ImportError
        numba-cuda is not installed.
    RuntimeError
        numba-cuda is installed but ``numba.cuda.is_available()`` is False (no
        NVIDIA GPU or driver, and the simulator is off).
    """
    mod = _load()
    if not mod.is_available():
        raise RuntimeError(
            "adamsci's CUDA path found numba-cuda but no usable CUDA GPU "
            "(numba.cuda.is_available() is False: no NVIDIA GPU or driver). "
            "Without a GPU, set NUMBA_ENABLE_CUDASIM=1 before numba is "
            "imported to run the kernels on Numba's CUDA simulator.")
    return mod


# ---------------------------------------------------------------------------
# launching
# ---------------------------------------------------------------------------
def configure(threads_per_block=None, max_blocks=None):
    """Set the launch geometry of every kernel; return the previous settings.

    Parameters
    ----------
    threads_per_block : int or None
        In [1, 1024]; None restores the default (256 on a GPU, 8 in the
        simulator, or ``ADAMSCI_CUDA_THREADS_PER_BLOCK``).
    max_blocks : int or None
        Largest grid; the kernels loop over the rest (grid-stride loops).
        None restores the default: four waves of the blocks the device can
        hold at once (``multiprocessors * max_threads_per_multiprocessor /
        threads_per_block * 4``).

    Returns
    -------
    dict
        The previous settings, so that ``configure(**old)`` restores them.

    Examples
    --------
    >>> from adamsci.kernels import cuda as kc
    >>> old = kc.configure(threads_per_block=64, max_blocks=2)
    >>> kc.launch_config(1000)
    (2, 64)
    >>> kc.configure(**old)
    {'threads_per_block': 64, 'max_blocks': 2}
    """
    for name, value in (("threads_per_block", threads_per_block),
                        ("max_blocks", max_blocks)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int,
                                                             np.integer)):
            raise TypeError(f"{name} must be an int or None, got {value!r}")
        hi = 1024 if name == "threads_per_block" else 2 ** 31 - 1
        if not 1 <= value <= hi:
            raise ValueError(f"{name} must be in [1, {hi}], got {value!r}")
    old = dict(_settings)
    _settings["threads_per_block"] = (None if threads_per_block is None
                                      else int(threads_per_block))
    _settings["max_blocks"] = None if max_blocks is None else int(max_blocks)
    return old


def _default_tpb():
    _load()
    env = os.environ.get("ADAMSCI_CUDA_THREADS_PER_BLOCK")
    if env:
        return int(env)
    return _SIM_TPB if _SIMULATOR else _DEFAULT_TPB


def _default_max_blocks(tpb):
    mod = _load()
    dev = mod.get_current_device()
    key = (getattr(dev, "id", 0), tpb)
    mb = _max_blocks_cache.get(key)
    if mb is None:
        if _SIMULATOR:          # one Python thread per CUDA thread
            mb = 2
        else:
            sms = dev.MULTIPROCESSOR_COUNT
            threads = dev.MAX_THREADS_PER_MULTIPROCESSOR
            mb = max(1, sms * max(1, threads // tpb) * _WAVES)
        _max_blocks_cache[key] = mb
    return mb


def launch_config(n, threads_per_block=None, max_blocks=None):
    """``(blocks, threads_per_block)`` of a launch over ``n`` elements.

    Enough blocks to give every thread one element, capped at ``max_blocks``
    (the grid-stride loops cover the rest); at least one block, so that the
    step counter advances when ``n`` is 0. Arguments left at None come from
    :func:`configure` (their defaults need the device's properties).
    """
    tpb = threads_per_block or _settings["threads_per_block"] or \
        _default_tpb()
    mb = max_blocks or _settings["max_blocks"] or _default_max_blocks(tpb)
    return max(1, min(-(-int(n) // tpb), mb)), tpb


def _launcher(name, blocks, tpb):
    """The configured launch ``kernel[blocks, tpb]``, cached."""
    _load()
    kernel = _kernels[name]
    if _SIMULATOR:      # the simulator's kernel objects keep one geometry
        return kernel[blocks, tpb]
    key = (name, blocks, tpb)
    launch = _launchers.get(key)
    if launch is None:
        with warnings.catch_warnings():
            # small grids are deliberate here (small n): no occupancy warning
            warnings.filterwarnings("ignore", message=r"Grid size \d+ will")
            launch = kernel[blocks, tpb]
        _launchers[key] = launch
    return launch


def new_scratch():
    """A zeroed int64 device array of shape (3,): the kernels' ``scratch``.

    ``[count, blocks_done, last_count]`` (see the module notes). One scratch
    serves any number of kernels launched one after another on one stream.
    """
    mod = require()
    return mod.to_device(np.zeros(_SCRATCH_SIZE, np.int64))


def _scratch(mod):
    """This thread's scratch on the current device, its result view, a
    pinned host buffer for that view."""
    per_thread = getattr(_local, "scratch", None)
    if per_thread is None:
        per_thread = _local.scratch = {}
    key = getattr(mod.get_current_device(), "id", 0)
    entry = per_thread.get(key)
    if entry is None:
        s = new_scratch()
        entry = per_thread[key] = (s, s[2:3], mod.pinned_array(1, np.int64))
    return entry


# ---------------------------------------------------------------------------
# the optimizers' entry points
# ---------------------------------------------------------------------------
def _is_device(x):
    return (not isinstance(x, np.ndarray)) and (
        getattr(x, "__cuda_ndarray__", False)
        or hasattr(x, "__cuda_array_interface__"))


def _device_view(mod, x, name):
    """A Numba device array viewing ``x`` (no copy)."""
    if getattr(x, "__cuda_ndarray__", False):        # Numba's (or simulated)
        return x
    if hasattr(x, "__cuda_array_interface__"):
        if not hasattr(mod, "as_cuda_array"):
            raise TypeError(
                f"{name}: Numba's CUDA simulator only handles Numba device "
                f"arrays (numba.cuda.to_device), not "
                f"{type(x).__name__} objects")
        desc = x.__cuda_array_interface__
        if desc.get("data", (0, False))[1]:
            raise ValueError(f"{name} is read-only; step updates it in place")
        return mod.as_cuda_array(x)
    if isinstance(x, np.ndarray):
        raise TypeError(f"{name} is a host (NumPy) array but params is a "
                        f"device array: put both on the same device")
    raise TypeError(f"{name} must be a CUDA device array (a Numba device "
                    f"array or an object with __cuda_array_interface__), got "
                    f"{type(x).__name__}")


def _float_device(mod, x, name):
    view = _device_view(mod, x, name)
    if np.dtype(view.dtype).char not in "fd":
        raise TypeError(f"{name} must have dtype float32 or float64, got "
                        f"{view.dtype}")
    if not view.is_c_contiguous():
        raise ValueError(f"{name} must be C-contiguous to be updated in "
                         f"place on the device")
    return view


def _flat(a):
    return a if a.ndim == 1 else a.reshape(a.size)


def init_state(opt, params):
    """``opt.init(params)`` for device ``params``: the state on the device.

    The arrays are allocated with ``numba.cuda.device_array`` and filled on
    the device (no host copy of their contents); disabled ones have shape
    (0,); ``step`` is a device int64 array of shape (1,).
    """
    mod = require()
    p = _float_device(mod, params, "params")
    arrays = []
    for name, on in zip(opt.State._fields[1:], opt._active()):
        if not on:
            arrays.append(mod.device_array(0, p.dtype))
            continue
        a = mod.device_array(p.shape, p.dtype)
        if a.size:
            # the constant the host state would start from (0, or AdaGrad's
            # initial_accumulator_value)
            value = float(opt._initial(name, (1,), p.dtype)[0])
            blocks, tpb = launch_config(a.size)
            _launcher("fill", blocks, tpb)(_flat(a), value)
        arrays.append(a)
    return opt.State(mod.to_device(np.zeros(1, np.int64)), *arrays)


def to_device(state):
    """Copy a host state (``opt.state_from_dict(d)``) to the device.

    Arrays already on the device are kept as they are.

    Examples
    --------
    >>> import numpy as np, adamsci
    >>> from adamsci.kernels import cuda as kc
    >>> opt = adamsci.Adam()
    >>> host = opt.state_from_dict(opt.init(np.zeros(3)).to_dict())
    >>> if kc.is_available():
    ...     dev = kc.to_device(host)
    ...     back = opt.state_from_dict(dev.to_dict())   # and back to the host
    ... else:
    ...     back = host
    >>> type(back).__name__, back.m.shape
    ('AdamState', (3,))
    """
    mod = require()
    return type(state)(*(a if _is_device(a) else
                         mod.to_device(np.require(a, requirements="C"))
                         for a in state))


def _flat_state(opt, mod, state, shape, dtype):
    """Validate a device state once: the state of flat device views."""
    if type(state) is not opt.State:
        opt._validate_state(state, shape, dtype, host=False)  # TypeError
    views = []
    for name, arr in zip(state._fields, state):
        if not _is_device(arr):
            raise TypeError(
                f"state.{name} is a host array but params is a device array: "
                f"move the state with adamsci.kernels.cuda.to_device(state)")
        views.append(_device_view(mod, arr, f"state.{name}"))
    view_state = opt.State(*views)
    opt._validate_state(view_state, shape, dtype, host=False)
    for name, arr in zip(state._fields, views):
        if not arr.is_c_contiguous():
            raise ValueError(f"state.{name} must be C-contiguous")
    return opt.State(*(_flat(a) for a in views))


def step_device(opt, params, grads, state):
    """``opt.step(params, grads, state)`` for device arrays, in place.

    Launches ``count_nonfinite`` (unless ``nonfinite="ignore"``) and the
    :data:`step` kernel on Numba's default stream, then copies the 8-byte
    count back (the only device-to-host copy of a step; none with
    ``nonfinite="ignore"``, plus one to read the step count when
    ``learning_rate`` is a schedule).
    """
    mod = require()
    p = _float_device(mod, params, "params")
    g = _device_view(mod, grads, "grads")
    _optimizers._same_layout(p, g)
    if not g.is_c_contiguous():
        raise ValueError("grads must be C-contiguous (device arrays are not "
                         "copied)")
    cached = getattr(opt, "_cuda_validated", None)
    if cached is None or cached[0] is not state or cached[1] != p.shape or \
            cached[2] != p.dtype:
        cached = opt._cuda_validated = (
            state, p.shape, p.dtype,
            _flat_state(opt, mod, state, p.shape, p.dtype))
    flat_state = cached[3]
    lr = opt._learning_rate(state)
    n = p.size
    p = _flat(p)
    g = _flat(g)
    blocks, tpb = launch_config(n)
    scratch, last_count, pinned = _scratch(mod)
    check = opt._check
    if check:
        _launcher("count_nonfinite", blocks, tpb)(g, scratch)
    try:
        _launcher("step", blocks, tpb)(p, g, flat_state, opt.hyper, float(lr),
                                       check, scratch)
    except BaseException:
        # the step never ran: clear the count it would have consumed
        scratch.copy_to_device(np.zeros(_SCRATCH_SIZE, np.int64))
        raise
    if check:
        last_count.copy_to_host(pinned)
        bad = int(pinned[0])
        if bad:
            return opt._nonfinite(bad, n)
    return True
