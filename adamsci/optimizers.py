r"""Optimizers that update parameters in place: Adam, AdaMax and baselines.

Every optimizer follows one protocol::

    opt = adamsci.Adam(learning_rate=1e-3)
    state = opt.init(params)             # moments etc., same shape and dtype
    opt.step(params, grads, state)       # params and state updated in place

``params`` is a writable, C-contiguous float32 or float64 NumPy array of any
shape (or a CUDA device array, see :mod:`adamsci.kernels.cuda`); ``grads`` has
the same shape and dtype. The state is a small named tuple of arrays whose
first field ``step`` is the int64 step counter (an array of one element, so
kernels update it in place). ``state.to_dict()`` and
``opt.state_from_dict(d)`` convert it to and from a plain dict of NumPy
arrays for saving and exact restoring.

Non-finite gradients never corrupt a run: by default (``nonfinite="raise"``)
:meth:`adamsci.Optimizer.step` raises :class:`FloatingPointError` and leaves
the parameters and the state exactly as they were; ``nonfinite="skip"`` skips
the step (the step count does not advance) and returns False; ``"ignore"``
does not check (the fastest, for gradients known to be finite).
"""
import math
import os
import threading
from collections import namedtuple
from typing import NamedTuple

import numpy as np

from . import _rules


__all__ = ["Optimizer", "Adam", "AdaMax", "SGD", "AdaGrad", "RMSProp",
           "AdaDelta"]

#: Number of parameters from which a step runs the ``prange`` kernel (main
#: thread only). Measured with ``python -m adamsci bench`` on 2 cores: the
#: parallel kernel loses at 1e4 parameters (0.9x) and wins from about 2e4
#: (1.3x at 3e4, 1.6x at 1e5). Override with ADAMSCI_PARALLEL_THRESHOLD.
PARALLEL_THRESHOLD = int(os.environ.get("ADAMSCI_PARALLEL_THRESHOLD",
                                        "32768"))
_MAIN_THREAD = threading.main_thread()
_NONFINITE = ("raise", "skip", "ignore")


class _StateMixin:
    __slots__ = ()

    def to_dict(self):
        """A plain dict of NumPy arrays (copies; device arrays are fetched)."""
        out = {}
        for name, arr in zip(self._fields, self):
            if hasattr(arr, "copy_to_host"):
                arr = arr.copy_to_host()
            out[name] = np.array(arr, copy=True)
        return out

    def __repr__(self):
        parts = [f"step={int(np.asarray(_host(self.step))[0])}"]
        for name, arr in zip(self._fields[1:], self[1:]):
            if arr.size:
                parts.append(f"{name}=<{arr.dtype} {tuple(arr.shape)}>")
        return f"{type(self).__name__}({', '.join(parts)})"


def _host(arr):
    return arr.copy_to_host() if hasattr(arr, "copy_to_host") else arr


def _on_device(arr):
    """A CUDA array: ``__cuda_array_interface__`` (Numba, CuPy, torch) or a
    Numba device array without it (the CUDA simulator's)."""
    return hasattr(arr, "__cuda_array_interface__") or bool(
        getattr(arr, "__cuda_ndarray__", False))


def _same_layout(params, grads):
    """grads must have the shape and dtype of params (host or device)."""
    if grads.shape != params.shape:
        raise ValueError(f"grads has shape {grads.shape}, params has shape "
                         f"{params.shape}")
    if grads.dtype != params.dtype:
        raise TypeError(f"grads has dtype {grads.dtype}, params has dtype "
                        f"{params.dtype}; they must match")


def _state_class(name, fields):
    base = namedtuple(name, ("step",) + fields)
    return type(name, (_StateMixin, base), {"__slots__": (),
                                            "__module__": __name__})


def _real(name, value, lo=None, hi=None, lo_open=False, hi_open=True):
    """Validate a real hyperparameter: finite and inside [lo, hi)."""
    if type(value) is float and (lo is None or (value > lo if lo_open
                                                else value >= lo)) and (
            hi is None or (value < hi if hi_open else value <= hi)) and \
            math.isfinite(value):
        return value                                # the common case, fast
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    ok = math.isfinite(value)
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if not ok:
        lo_b = "(" if lo_open else "["
        hi_b = ")" if hi_open else "]"
        rng = f"{lo_b}{'-inf' if lo is None else lo}, " \
              f"{'inf' if hi is None else hi}{hi_b}"
        raise ValueError(f"{name} must be a finite number in {rng}, "
                         f"got {value!r}")
    return value


def _flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _float_array(name, arr):
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array (or a CUDA device "
                        f"array), got {type(arr).__name__}")
    if arr.dtype.char not in "fd":
        raise TypeError(f"{name} must have dtype float32 or float64, got "
                        f"{arr.dtype}")


#: The state of each optimizer: ``step`` (int64 array of one element), then
#: its per-parameter arrays (empty when the feature is off). Module-level
#: names, so that pickle and Numba's cache find them.
AdamState = _state_class("AdamState", ("m", "v", "vmax", "avg"))
AdaMaxState = _state_class("AdaMaxState", ("m", "u", "avg"))
SGDState = _state_class("SGDState", ("momentum_buffer",))
AdaGradState = _state_class("AdaGradState", ("sum",))
RMSPropState = _state_class("RMSPropState", ("square_avg", "grad_avg",
                                             "momentum_buffer"))
AdaDeltaState = _state_class("AdaDeltaState", ("square_avg", "acc_delta"))


class Optimizer:
    """Base class: hyperparameters, state layout and in-place stepping.

    Not used directly: the optimizers (:class:`Adam`, ...) derive from it.
    Subclasses set ``State`` (a named tuple whose fields after ``step`` are
    the per-parameter arrays) and, in ``__init__``, ``hyper``: the
    hyperparameters other than the learning rate as the optimizer's named
    tuple of ``adamsci._rules`` (``AdamHyper``, ...), which every kernel
    and loop reads by field name.

    Parameters
    ----------
    learning_rate : float or callable
        The step size (> 0), or a schedule ``t -> learning rate`` of the
        1-based step number (an :mod:`adamsci.schedules` schedule, or any
        callable).
    nonfinite : {"raise", "skip", "ignore"}, default "raise"
        What :meth:`step` does with a NaN or infinite gradient entry:
        "raise" raises FloatingPointError and changes nothing; "skip"
        leaves the parameters and the state as they were (the step count
        does not advance) and returns False; "ignore" does not check (the
        fastest, for gradients known to be finite).
    parallel : bool or None, default None
        Run the multi-threaded (``prange``) kernel: True or False, or None
        to choose by size (from ``PARALLEL_THRESHOLD`` parameters, and on
        the main thread only).
    """

    name = "optimizer"
    State = None
    hyper = None

    def __init__(self, learning_rate, nonfinite="raise", parallel=None):
        if callable(learning_rate):
            self._lr = None
            self._schedule = learning_rate
        else:
            self._lr = _real("learning_rate", learning_rate, 0.0, None,
                             lo_open=True)
            self._schedule = None
        self.learning_rate = learning_rate
        if nonfinite not in _NONFINITE:
            raise ValueError(f"nonfinite must be one of {_NONFINITE}, got "
                             f"{nonfinite!r}")
        self.nonfinite = nonfinite
        self._check = nonfinite != "ignore"
        if parallel not in (None, True, False):
            raise ValueError(f"parallel must be None (automatic), True or "
                             f"False, got {parallel!r}")
        self.parallel = parallel
        self._validated = None

    # -- description -------------------------------------------------------
    _public = ()

    @property
    def hyperparameters(self):
        """Dict of the constructor arguments (learning_rate included)."""
        out = {"learning_rate": self.learning_rate}
        out.update({k: getattr(self, k) for k in self._public})
        out["nonfinite"] = self.nonfinite
        return out

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters.items())
        return f"{type(self).__name__}({args})"

    def _active(self):
        """Which state arrays (after ``step``) this configuration uses."""
        return (True,) * (len(self.State._fields) - 1)

    # -- state -------------------------------------------------------------
    def init(self, params):
        """Allocate the state for ``params`` (zeros; same shape and dtype).

        Device arrays get their state on the same device.
        """
        if not isinstance(params, np.ndarray) and _on_device(params):
            from .kernels import cuda
            return cuda.init_state(self, params)
        _float_array("params", params)
        arrays = [self._initial(name, params.shape, params.dtype) if on
                  else np.empty(0, params.dtype)
                  for name, on in zip(self.State._fields[1:], self._active())]
        return self.State(np.zeros(1, np.int64), *arrays)

    def _initial(self, name, shape, dtype):
        return np.zeros(shape, dtype)

    def state_from_dict(self, d):
        """Rebuild a state from ``state.to_dict()`` output (arrays are
        copied)."""
        fields = self.State._fields
        missing = [f for f in fields if f not in d]
        extra = [k for k in d if k not in fields]
        if missing or extra:
            raise ValueError(f"state dict does not match {self.State.__name__}"
                             f": missing {missing}, unexpected {extra}")
        step = np.array(d["step"], dtype=np.int64, copy=True).reshape(1)
        arrays = [np.array(d[f], copy=True) for f in fields[1:]]
        state = self.State(step, *arrays)
        shapes = [a.shape for a, on in zip(arrays, self._active()) if on]
        if shapes:
            self._validate_state(state, shapes[0], arrays[0].dtype)
        return state

    def _validate_state(self, state, shape, dtype, host=True):
        if type(state) is not self.State:
            raise TypeError(f"state must be a {self.State.__name__} made by "
                            f"{type(self).__name__}.init, got "
                            f"{type(state).__name__}")
        step = state.step
        if host and not all(type(a) is np.ndarray for a in state):
            raise TypeError("state holds device arrays but params is a host "
                            "(NumPy) array: put params, grads and state on "
                            "the same device")
        if step.shape != (1,) or step.dtype != np.int64:
            raise ValueError("state.step must be an int64 array of shape (1,)")
        for name, arr, on in zip(state._fields[1:], state[1:],
                                 self._active()):
            want = shape if on else (0,)
            if arr.shape != want or arr.dtype != dtype:
                raise ValueError(
                    f"state.{name} has shape {arr.shape} and dtype "
                    f"{arr.dtype}; this {type(self).__name__} with these "
                    f"options needs shape {want} and dtype {dtype} for "
                    f"params of shape {shape} (was the state made for "
                    f"another optimizer, shape or dtype?)")

    # -- stepping ----------------------------------------------------------
    def _learning_rate(self, state):
        if self._schedule is None:
            return self._lr
        t = int(_host(state.step)[0]) + 1
        lr = self._schedule(t)
        try:
            lr = float(lr)
        except (TypeError, ValueError):
            lr = float("nan")
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"learning_rate schedule returned {lr!r} at step "
                             f"{t}; it must return a finite number > 0")
        return lr

    def step(self, params, grads, state):
        """Update ``params`` and ``state`` in place from ``grads``.

        Returns True when the step was taken, False when it was skipped
        (``nonfinite="skip"`` and a non-finite gradient entry).

        Raises
        ------
        FloatingPointError
            A gradient entry is NaN or infinite (``nonfinite="raise"``);
            params and state are unchanged.
        TypeError, ValueError
            Arrays of the wrong kind, shape or dtype, or a state made for
            another optimizer; nothing is modified.
        """
        # Fast path: the same state as last time and arrays that match it.
        # Everything else (first call, new state, any mismatch, device
        # arrays) goes through _prepare, which validates in full.
        c = self._validated
        if (c is None or c.state is not state or type(params) is not np.ndarray
                or type(grads) is not np.ndarray or params.shape != c.shape
                or grads.shape != c.shape or params.dtype != c.dtype
                or grads.dtype != c.dtype):
            c = self._prepare(params, grads, state)
            if c is None:  # device arrays: handled by the CUDA backend
                from .kernels import cuda
                return cuda.step_device(self, params, grads, state)
        flags = params.flags
        if not (flags.writeable and flags.c_contiguous):
            self._check_writable(flags)
        if not grads.flags.c_contiguous:
            grads = np.ascontiguousarray(grads)
        lr = self._lr if self._schedule is None else self._learning_rate(state)
        if c.flat:  # not 1-D: the kernels take flat views
            params = params.reshape(-1)
            grads = grads.reshape(-1)
        parallel, nchunks = self._parallelism(c.size)
        which = parallel + 2 * (not grads.flags.writeable)  # Numba's types
        kernel = c.kernels[which]
        if kernel is None:
            kernel = self._compile(c, params, grads, parallel, which)
        bad = kernel(params, grads, c.flat_state, self.hyper, lr, self._check,
                     nchunks)
        if bad:
            return self._nonfinite(bad, c.size)
        return True

    def _prepare(self, params, grads, state):
        """Validate in full; cache what the fast path of :meth:`step` needs.

        Returns None for device arrays (the CUDA backend validates those).
        """
        if type(params) is not np.ndarray:
            if _on_device(params):
                return None
            _float_array("params", params)
        if type(grads) is not np.ndarray:
            if _on_device(grads):
                raise TypeError("params is a host (NumPy) array but grads is "
                                "a device array: put both on the same device")
            _float_array("grads", grads)
        _float_array("params", params)
        self._validate_state(state, params.shape, params.dtype)
        _same_layout(params, grads)
        self._check_writable(params.flags)
        flat = params.ndim != 1
        flat_state = state
        if flat:
            flat_state = self.State(state.step,
                                    *(a.reshape(-1) for a in state[1:]))
        c = self._validated = _Validated(state, params.shape, params.dtype,
                                         flat_state, flat, params.size,
                                         [None] * 4)
        return c

    def _compile(self, c, params, grads, parallel, which):
        """The entry point of the kernel for these arrays' types.

        Numba's dispatcher types every argument on every call, which costs
        microseconds for named tuples; the entry point of the compiled
        specialisation (``Dispatcher.compile``, loaded from the disk cache
        when it is there) skips that.
        """
        from numba import typeof
        from .kernels import cpu
        kernel = cpu.step_parallel if parallel else cpu.step
        sig = (typeof(params), typeof(grads), typeof(c.flat_state),
               typeof(self.hyper), typeof(1.0), typeof(True), typeof(1))
        c.kernels[which] = kernel.compile(sig)
        return c.kernels[which]

    @staticmethod
    def _check_writable(flags):
        if not flags.writeable:
            raise ValueError("params is read-only; step updates it in place")
        if not flags.c_contiguous:
            raise ValueError(
                "params must be C-contiguous to be updated in place; pass "
                "np.ascontiguousarray(params) and copy the result back")

    def _nonfinite(self, bad, n):
        if self.nonfinite == "raise":
            raise FloatingPointError(
                f"{bad} of {n} gradient entries are NaN or infinite; params "
                f"and state are unchanged (nonfinite='skip' skips such steps)")
        return False

    def _parallelism(self, n):
        """``(parallel, nchunks)`` for ``n`` parameters: the ``prange``
        kernel from PARALLEL_THRESHOLD parameters, on the main thread only
        (numba's default workqueue layer aborts when parallel kernels run
        from several threads at once, numba#8563)."""
        par = self.parallel
        if par is False or (par is None and n < PARALLEL_THRESHOLD):
            return 0, 1
        if threading.current_thread() is not _MAIN_THREAD:
            return 0, 1
        from .kernels import cpu
        return 1, cpu.num_threads()


class _Validated(NamedTuple):
    """What :meth:`Optimizer.step` checked last time (its fast path)."""
    state: tuple
    shape: tuple
    dtype: np.dtype
    flat_state: tuple      # the state with 1-D views of its arrays
    flat: bool             # params are not 1-D: step flat views
    size: int
    kernels: list          # entry points, None until used: serial,
                           # parallel, and both for read-only grads


class Adam(Optimizer):
    r"""Adam (Kingma & Ba 2015, Algorithm 1) with AMSGrad, AdamW and averaging.

    .. math::

        g_t &\leftarrow \nabla f(\theta_{t-1}) \;(+\, \lambda\theta_{t-1}
              \text{ if coupled weight decay})\\
        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t \\
        v_t &= \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        \hat v_t &= \max(\hat v_{t-1}, v_t) \text{ (AMSGrad) else } v_t\\
        \theta_t &= \theta_{t-1} - \alpha_t \frac{m_t/(1-\beta_1^t)}
                    {\sqrt{\hat v_t/(1-\beta_2^t)} + \epsilon}

    With ``decoupled_weight_decay=True`` (AdamW) :math:`\theta` is first
    multiplied by :math:`1 - \alpha_t\lambda` and the gradient is left alone.

    Parameters
    ----------
    learning_rate : float or callable, default 1e-3
        :math:`\alpha`, or a schedule ``t -> alpha_t``
        (:mod:`adamsci.schedules`).
    beta1, beta2 : float, default 0.9, 0.999
        Decay rates of the moment estimates, in [0, 1).
    eps : float, default 1e-8
        Added to the bias-corrected :math:`\sqrt{\hat v}` (torch convention).
    weight_decay : float, default 0
        :math:`\lambda \ge 0`: L2 regularisation (:math:`\lambda\theta`
        added to the gradient) or, with ``decoupled_weight_decay``, AdamW's
        decay.
    decoupled_weight_decay : bool, default False
        AdamW (Loshchilov & Hutter 2019) instead of L2 on the gradient:
        :math:`\theta` is multiplied by :math:`1 - \alpha_t\lambda`
        before each step.
    amsgrad : bool, default False
        Keep the running max of the raw second moment (torch's variant of
        Reddi et al. 2018; their paper takes the max of the bias-corrected
        moment).
    bias_correction : bool, default True
        Divide :math:`m_t` by :math:`1-\beta_1^t` and :math:`v_t` by
        :math:`1-\beta_2^t`, which removes their bias towards the zero
        they start from. False drops both corrections (RMSProp with
        momentum); the first step is then
        :math:`(1-\beta_1)/\sqrt{1-\beta_2}` (3.2 with the defaults)
        times larger (paper section 6.4).
    ema_decay : float or None, default None
        Temporal averaging of the parameters (paper section 7.2), in (0, 1);
        read the average with :meth:`averaged`.
    maximize : bool, default False
        Ascend instead of descend (the gradient is negated first).
    nonfinite : {"raise", "skip", "ignore"}, default "raise"
        What :meth:`step` does with a NaN or infinite gradient entry:
        raise FloatingPointError, skip the step (and return False), or not
        check; in every case but "ignore" nothing is modified
        (:class:`Optimizer`).
    parallel : bool or None, default None
        Force the multi-threaded ``prange`` kernel on or off; None chooses
        by size (:class:`Optimizer`).

    Notes
    -----
    Libraries differ: torch and adamsci add eps to the *bias-corrected*
    :math:`\sqrt{\hat v}` (the paper's Algorithm 1); optax adds it the same
    way; TensorFlow/Keras adds an "epsilon hat" to the uncorrected one. The
    arithmetic runs in the parameters' dtype; bias corrections are computed in
    float64.

    References
    ----------
    .. [1] D. P. Kingma, J. Ba, "Adam: A Method for Stochastic Optimization",
       ICLR 2015, arXiv:1412.6980.
    .. [2] S. J. Reddi, S. Kale, S. Kumar, "On the Convergence of Adam and
       Beyond", ICLR 2018.

    Examples
    --------
    >>> import numpy as np, adamsci
    >>> x = np.array([1.0, -2.0])
    >>> opt = adamsci.Adam(learning_rate=0.1)
    >>> state = opt.init(x)
    >>> for _ in range(200):
    ...     _ = opt.step(x, 2 * x, state)      # gradient of |x|^2
    >>> bool(np.all(np.abs(x) < 1e-2)), int(state.step[0])
    (True, 200)
    """

    name = "adam"
    State = AdamState
    _public = ("beta1", "beta2", "eps", "weight_decay",
               "decoupled_weight_decay", "amsgrad", "bias_correction",
               "ema_decay", "maximize")

    def __init__(self, learning_rate=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                 weight_decay=0.0, decoupled_weight_decay=False,
                 amsgrad=False, bias_correction=True, ema_decay=None,
                 maximize=False, nonfinite="raise", parallel=None):
        super().__init__(learning_rate, nonfinite, parallel)
        self.beta1 = _real("beta1", beta1, 0.0, 1.0)
        self.beta2 = _real("beta2", beta2, 0.0, 1.0)
        self.eps = _real("eps", eps, 0.0)
        self.weight_decay = _real("weight_decay", weight_decay, 0.0)
        self.decoupled_weight_decay = _flag("decoupled_weight_decay",
                                            decoupled_weight_decay)
        self.amsgrad = _flag("amsgrad", amsgrad)
        self.bias_correction = _flag("bias_correction", bias_correction)
        self.ema_decay = None if ema_decay is None else _real(
            "ema_decay", ema_decay, 0.0, 1.0, lo_open=True)
        self.maximize = _flag("maximize", maximize)
        self.hyper = _rules.AdamHyper(
            beta1=self.beta1, beta2=self.beta2, eps=self.eps,
            weight_decay=self.weight_decay,
            decoupled_weight_decay=self.decoupled_weight_decay,
            amsgrad=self.amsgrad, bias_correction=self.bias_correction,
            maximize=self.maximize, ema_decay=self.ema_decay or 0.0)

    def _active(self):
        return (True, True, self.amsgrad, self.ema_decay is not None)

    def averaged(self, state):
        """The bias-corrected temporal average ``avg / (1 - d**t)``."""
        return _averaged(self, state)


class AdaMax(Optimizer):
    r"""AdaMax (Kingma & Ba 2015, Algorithm 2): Adam with the infinity norm.

    .. math::

        m_t &= \beta_1 m_{t-1} + (1-\beta_1) g_t \\
        u_t &= \max(\beta_2 u_{t-1}, |g_t| + \epsilon) \\
        \theta_t &= \theta_{t-1} - \frac{\alpha_t}{1-\beta_1^t}\,
                    \frac{m_t}{u_t}

    Parameters
    ----------
    learning_rate : float or callable, default 2e-3
        :math:`\alpha` (the paper's default for AdaMax), or a schedule
        ``t -> alpha_t`` (:mod:`adamsci.schedules`).
    beta1, beta2 : float, default 0.9, 0.999
        Decay rates, in [0, 1), of the first moment :math:`m` and of the
        exponentially weighted infinity norm :math:`u`.
    eps : float, default 1e-8
        Added to :math:`|g|` inside the max (torch/optax convention);
        ``eps=0`` is the paper exactly (then a zero gradient on the first
        step gives 0/0).
    weight_decay : float, default 0
        :math:`\lambda \ge 0`: L2 regularisation, :math:`\lambda\theta`
        is added to the gradient.
    ema_decay : float or None, default None
        Temporal averaging of the parameters (paper section 7.2), in
        (0, 1); read the average with :meth:`averaged`.
    maximize : bool, default False
        Ascend instead of descend (the gradient is negated first).
    nonfinite, parallel
        As for :class:`Adam`.

    References
    ----------
    .. [1] D. P. Kingma, J. Ba, "Adam: A Method for Stochastic Optimization",
       ICLR 2015, arXiv:1412.6980, section 7.1.

    Examples
    --------
    >>> import numpy as np, adamsci
    >>> x = np.array([3.0])
    >>> opt = adamsci.AdaMax(learning_rate=0.5)
    >>> s = opt.init(x)
    >>> for _ in range(300):
    ...     _ = opt.step(x, 2 * (x - 1.0), s)
    >>> bool(abs(x[0] - 1.0) < 1e-2)
    True
    """

    name = "adamax"
    State = AdaMaxState
    _public = ("beta1", "beta2", "eps", "weight_decay", "ema_decay",
               "maximize")

    def __init__(self, learning_rate=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
                 weight_decay=0.0, ema_decay=None, maximize=False,
                 nonfinite="raise", parallel=None):
        super().__init__(learning_rate, nonfinite, parallel)
        self.beta1 = _real("beta1", beta1, 0.0, 1.0)
        self.beta2 = _real("beta2", beta2, 0.0, 1.0)
        self.eps = _real("eps", eps, 0.0)
        self.weight_decay = _real("weight_decay", weight_decay, 0.0)
        self.ema_decay = None if ema_decay is None else _real(
            "ema_decay", ema_decay, 0.0, 1.0, lo_open=True)
        self.maximize = _flag("maximize", maximize)
        self.hyper = _rules.AdaMaxHyper(
            beta1=self.beta1, beta2=self.beta2, eps=self.eps,
            weight_decay=self.weight_decay, maximize=self.maximize,
            ema_decay=self.ema_decay or 0.0)

    def _active(self):
        return (True, True, self.ema_decay is not None)

    def averaged(self, state):
        """The bias-corrected temporal average ``avg / (1 - d**t)``."""
        return _averaged(self, state)


def _averaged(opt, state):
    if opt.ema_decay is None:
        raise ValueError(f"{type(opt).__name__} was made without ema_decay; "
                         f"there is no temporal average")
    t = int(_host(state.step)[0])
    if t == 0:
        raise ValueError("no step taken yet: the temporal average is "
                         "undefined")
    return _host(state.avg) / (1.0 - opt.ema_decay ** t)


class SGD(Optimizer):
    r"""Stochastic gradient descent with momentum and Nesterov momentum.

    torch.optim.SGD semantics:

    .. math::

        g_t &\leftarrow g_t + \lambda\theta_{t-1} \\
        b_t &= g_t \text{ if } t = 1 \text{ else } \mu b_{t-1} + (1-\tau) g_t\\
        \theta_t &= \theta_{t-1} - \alpha_t\,(g_t + \mu b_t
                    \text{ if Nesterov else } b_t)

    Parameters
    ----------
    learning_rate : float or callable
        Required (no default, as in torch).
    momentum : float, default 0
        :math:`\mu \ge 0`, the weight of the previous momentum buffer
        :math:`b`; 0: plain gradient steps.
    dampening : float, default 0
        :math:`\tau` in [0, 1]: the gradient enters the buffer with weight
        :math:`1-\tau`; must be 0 with Nesterov.
    nesterov : bool, default False
        Nesterov momentum (step along :math:`g_t + \mu b_t`); needs
        ``momentum > 0``.
    weight_decay : float, default 0
        :math:`\lambda \ge 0`: L2 regularisation, :math:`\lambda\theta`
        is added to the gradient.
    maximize : bool, default False
        Ascend instead of descend (the gradient is negated first).
    nonfinite, parallel
        As for :class:`Adam`.

    Examples
    --------
    >>> import numpy as np, adamsci
    >>> x = np.array([1.0])
    >>> opt = adamsci.SGD(0.1, momentum=0.9, nesterov=True)
    >>> s = opt.init(x)
    >>> for _ in range(100):
    ...     _ = opt.step(x, 2 * x, s)
    >>> bool(abs(x[0]) < 1e-3)
    True
    """

    name = "sgd"
    State = SGDState
    _public = ("momentum", "dampening", "nesterov", "weight_decay", "maximize")

    def __init__(self, learning_rate, momentum=0.0, dampening=0.0,
                 nesterov=False, weight_decay=0.0, maximize=False,
                 nonfinite="raise", parallel=None):
        super().__init__(learning_rate, nonfinite, parallel)
        self.momentum = _real("momentum", momentum, 0.0)
        self.dampening = _real("dampening", dampening, 0.0, 1.0,
                               hi_open=False)
        self.nesterov = _flag("nesterov", nesterov)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov=True needs momentum > 0 and "
                             "dampening = 0")
        self.weight_decay = _real("weight_decay", weight_decay, 0.0)
        self.maximize = _flag("maximize", maximize)
        self.hyper = _rules.SGDHyper(
            momentum=self.momentum, dampening=self.dampening,
            nesterov=self.nesterov, weight_decay=self.weight_decay,
            maximize=self.maximize)

    def _active(self):
        return (self.momentum != 0.0,)


class AdaGrad(Optimizer):
    r"""AdaGrad (Duchi et al. 2011), torch.optim.Adagrad semantics.

    .. math::

        \tilde\alpha_t &= \alpha_t / (1 + (t-1)\,\eta) \\
        s_t &= s_{t-1} + g_t^2 \\
        \theta_t &= \theta_{t-1} - \tilde\alpha_t\, g_t / (\sqrt{s_t}
                    + \epsilon)

    Parameters
    ----------
    learning_rate : float or callable, default 1e-2
        :math:`\alpha`, or a schedule ``t -> alpha_t``
        (:mod:`adamsci.schedules`).
    lr_decay : float, default 0
        :math:`\eta \ge 0`, the decay of :math:`\tilde\alpha_t`.
    eps : float, default 1e-10
        :math:`\epsilon \ge 0` added to :math:`\sqrt{s_t}`.
    initial_accumulator_value : float, default 0
        Starting value of :math:`s`, >= 0; larger values make the first
        steps smaller.
    weight_decay : float, default 0
        :math:`\lambda \ge 0`: L2 regularisation, :math:`\lambda\theta`
        is added to the gradient.
    maximize : bool, default False
        Ascend instead of descend (the gradient is negated first).
    nonfinite, parallel
        As for :class:`Adam`.

    Examples
    --------
    >>> import numpy as np, adamsci
    >>> x = np.array([1.0])
    >>> opt = adamsci.AdaGrad(0.5)
    >>> s = opt.init(x)
    >>> for _ in range(200):
    ...     _ = opt.step(x, 2 * x, s)
    >>> bool(abs(x[0]) < 1e-3)
    True
    """

    name = "adagrad"
    State = AdaGradState
    _public = ("lr_decay", "eps", "initial_accumulator_value",
               "weight_decay", "maximize")

    def __init__(self, learning_rate=1e-2, lr_decay=0.0, eps=1e-10,
                 initial_accumulator_value=0.0, weight_decay=0.0,
                 maximize=False, nonfinite="raise", parallel=None):
        super().__init__(learning_rate, nonfinite, parallel)
        self.lr_decay = _real("lr_decay", lr_decay, 0.0)
        self.eps = _real("eps", eps, 0.0)
        self.initial_accumulator_value = _real(
            "initial_accumulator_value", initial_accumulator_value, 0.0)
        self.weight_decay = _real("weight_decay", weight_decay, 0.0)
        self.maximize = _flag("maximize", maximize)
        self.hyper = _rules.AdaGradHyper(
            lr_decay=self.lr_decay, eps=self.eps,
            weight_decay=self.weight_decay, maximize=self.maximize)

    def _initial(self, name, shape, dtype):
        return np.full(shape, self.initial_accumulator_value, dtype)


class RMSProp(Optimizer):
    r"""RMSProp (Tieleman & Hinton 2012), torch.optim.RMSprop semantics.

    .. math::

        s_t &= \alpha s_{t-1} + (1-\alpha) g_t^2 \\
        \bar g_t &= \alpha \bar g_{t-1} + (1-\alpha) g_t
                    \quad\text{(centered only)}\\
        d_t &= \sqrt{s_t - \bar g_t^2} + \epsilon \text{ (centered) else }
               \sqrt{s_t} + \epsilon \\
        b_t &= \mu b_{t-1} + g_t/d_t,\;
        \theta_t = \theta_{t-1} - \alpha_t b_t \text{ if } \mu > 0
        \text{ else } \theta_{t-1} - \alpha_t g_t/d_t

    Parameters
    ----------
    learning_rate : float or callable, default 1e-2
        :math:`\alpha_t`, or a schedule ``t -> alpha_t``
        (:mod:`adamsci.schedules`).
    alpha : float, default 0.99
        Smoothing constant in [0, 1) of the moving averages :math:`s` and
        :math:`\bar g` (torch's name; not the step size).
    eps : float, default 1e-8
        :math:`\epsilon \ge 0` added to the root mean square.
    momentum : float, default 0
        :math:`\mu \ge 0`, the weight of the previous buffer :math:`b`;
        0: no buffer.
    centered : bool, default False
        Divide by :math:`\sqrt{s_t - \bar g_t^2}`, an estimate of the
        gradient's standard deviation, instead of its root mean square.
    weight_decay : float, default 0
        :math:`\lambda \ge 0`: L2 regularisation, :math:`\lambda\theta`
        is added to the gradient.
    maximize : bool, default False
        Ascend instead of descend (the gradient is negated first).
    nonfinite, parallel
        As for :class:`Adam`.

    Examples
    --------
    >>> import numpy as np, adamsci
    >>> x = np.array([1.0])
    >>> opt = adamsci.RMSProp(0.01)
    >>> s = opt.init(x)
    >>> for _ in range(300):
    ...     _ = opt.step(x, 2 * x, s)
    >>> bool(abs(x[0]) < 2e-2)
    True
    """

    name = "rmsprop"
    State = RMSPropState
    _public = ("alpha", "eps", "momentum", "centered", "weight_decay",
               "maximize")

    def __init__(self, learning_rate=1e-2, alpha=0.99, eps=1e-8,
                 momentum=0.0, centered=False, weight_decay=0.0,
                 maximize=False, nonfinite="raise", parallel=None):
        super().__init__(learning_rate, nonfinite, parallel)
        self.alpha = _real("alpha", alpha, 0.0, 1.0)
        self.eps = _real("eps", eps, 0.0)
        self.momentum = _real("momentum", momentum, 0.0)
        self.centered = _flag("centered", centered)
        self.weight_decay = _real("weight_decay", weight_decay, 0.0)
        self.maximize = _flag("maximize", maximize)
        self.hyper = _rules.RMSPropHyper(
            alpha=self.alpha, eps=self.eps, momentum=self.momentum,
            centered=self.centered, weight_decay=self.weight_decay,
            maximize=self.maximize)

    def _active(self):
        return (True, self.centered, self.momentum > 0.0)


class AdaDelta(Optimizer):
    r"""AdaDelta (Zeiler 2012), torch.optim.Adadelta semantics.

    .. math::

        s_t &= \rho s_{t-1} + (1-\rho) g_t^2 \\
        \Delta_t &= \frac{\sqrt{a_{t-1} + \epsilon}}{\sqrt{s_t + \epsilon}}
                    g_t \\
        a_t &= \rho a_{t-1} + (1-\rho)\Delta_t^2 \\
        \theta_t &= \theta_{t-1} - \alpha_t \Delta_t

    Parameters
    ----------
    learning_rate : float or callable, default 1.0
        A factor :math:`\alpha_t` on :math:`\Delta_t`, or a schedule
        ``t -> alpha_t``; 1 is Zeiler's method, which has no learning rate.
    rho : float, default 0.9
        Decay rate in [0, 1) of both moving averages, :math:`s` and
        :math:`a`.
    eps : float, default 1e-6
        :math:`\epsilon \ge 0` inside both square roots; it sets the size
        of the first steps.
    weight_decay : float, default 0
        :math:`\lambda \ge 0`: L2 regularisation, :math:`\lambda\theta`
        is added to the gradient.
    maximize : bool, default False
        Ascend instead of descend (the gradient is negated first).
    nonfinite, parallel
        As for :class:`Adam`.

    Examples
    --------
    >>> import numpy as np, adamsci
    >>> x = np.array([1.0])
    >>> opt = adamsci.AdaDelta(1.0)
    >>> s = opt.init(x)
    >>> for _ in range(2000):
    ...     _ = opt.step(x, 2 * x, s)
    >>> bool(abs(x[0]) < 0.1)
    True
    """

    name = "adadelta"
    State = AdaDeltaState
    _public = ("rho", "eps", "weight_decay", "maximize")

    def __init__(self, learning_rate=1.0, rho=0.9, eps=1e-6, weight_decay=0.0,
                 maximize=False, nonfinite="raise", parallel=None):
        super().__init__(learning_rate, nonfinite, parallel)
        self.rho = _real("rho", rho, 0.0, 1.0)
        self.eps = _real("eps", eps, 0.0)
        self.weight_decay = _real("weight_decay", weight_decay, 0.0)
        self.maximize = _flag("maximize", maximize)
        self.hyper = _rules.AdaDeltaHyper(
            rho=self.rho, eps=self.eps, weight_decay=self.weight_decay,
            maximize=self.maximize)


#: Optimizer classes by ``name`` (the names of the scipy methods).
OPTIMIZERS = {cls.name: cls for cls in (Adam, AdaMax, SGD, AdaGrad, RMSProp,
                                        AdaDelta)}
