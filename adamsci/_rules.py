"""The update math of every optimizer, written once.

Each function updates ONE scalar parameter and its state and returns the new
values as a tuple. They are plain Python (testable without a JIT) and are
compiled twice: ``numba.njit(inline="always")`` for the CPU kernels in
:mod:`adamsci.kernels.cpu` and ``numba.cuda.jit(device=True)`` for the CUDA
kernels in :mod:`adamsci.kernels.cuda`.

Conventions shared by all rules
-------------------------------
* Scalars that depend only on the step count (bias corrections, the
  AdaGrad-decayed learning rate) are computed once per step in float64 by the
  optimizer's ``*_scalars`` function and passed in; see
  :func:`adam_scalars`.
* ``maximize`` negates the gradient first; coupled weight decay (L2) then adds
  ``weight_decay * p`` to it (torch.optim semantics).
* The rules contain no float literals: every constant, complements such as
  ``1 - beta1`` included, is an argument. The kernels compute those scalars in
  float64 once per step and cast them to the parameters' dtype, so float32
  parameters are updated in float32 arithmetic (as torch.optim does) and the
  loops vectorise at full SIMD width.

Hyperparameters and per-step scalars
------------------------------------
Each optimizer's hyperparameters (all but the learning rate) travel as one
:class:`typing.NamedTuple` (``AdamHyper``, ...): the optimizers build them,
every kernel and loop reads them by field name, and Numba types each class
apart, so that a loop compiled for Adam contains Adam's update only. The
per-step scalars (bias corrections, complements such as ``1 - beta1``) of
each optimizer are computed once, by its ``*_scalars`` function below, in
float64 and then cast to the parameters' scalar type ``T``.
"""
import math
from typing import NamedTuple


class AdamHyper(NamedTuple):
    """Adam's hyperparameters (:class:`adamsci.Adam`); ``ema_decay`` 0: off."""
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    decoupled_weight_decay: bool
    amsgrad: bool
    bias_correction: bool
    maximize: bool
    ema_decay: float


class AdaMaxHyper(NamedTuple):
    """AdaMax's hyperparameters (:class:`adamsci.AdaMax`)."""
    beta1: float
    beta2: float
    eps: float
    weight_decay: float
    maximize: bool
    ema_decay: float


class SGDHyper(NamedTuple):
    """SGD's hyperparameters (:class:`adamsci.SGD`)."""
    momentum: float
    dampening: float
    nesterov: bool
    weight_decay: float
    maximize: bool


class AdaGradHyper(NamedTuple):
    """AdaGrad's hyperparameters (:class:`adamsci.AdaGrad`)."""
    lr_decay: float
    eps: float
    weight_decay: float
    maximize: bool


class RMSPropHyper(NamedTuple):
    """RMSProp's hyperparameters (:class:`adamsci.RMSProp`)."""
    alpha: float
    eps: float
    momentum: float
    centered: bool
    weight_decay: float
    maximize: bool


class AdaDeltaHyper(NamedTuple):
    """AdaDelta's hyperparameters (:class:`adamsci.AdaDelta`)."""
    rho: float
    eps: float
    weight_decay: float
    maximize: bool


def adam_scalars(h, t, lr, T):
    """Adam's per-step scalars for step ``t``, cast to ``T``: ``(step_size,
    inv_sqrt_bc2, beta1, 1 - beta1, beta2, 1 - beta2, eps, weight_decay,
    1 - lr * weight_decay, ema_decay, 1 - ema_decay)``.

    ``step_size = lr / (1 - beta1**t)`` and ``inv_sqrt_bc2 = 1 / sqrt(1 -
    beta2**t)`` (``lr`` and 1 without bias correction).
    """
    if h.bias_correction:
        step_size = lr / (1.0 - h.beta1 ** t)
        inv_sqrt_bc2 = 1.0 / math.sqrt(1.0 - h.beta2 ** t)
    else:
        step_size, inv_sqrt_bc2 = lr, 1.0
    return (T(step_size), T(inv_sqrt_bc2), T(h.beta1), T(1.0 - h.beta1),
            T(h.beta2), T(1.0 - h.beta2), T(h.eps), T(h.weight_decay),
            T(1.0 - lr * h.weight_decay), T(h.ema_decay),
            T(1.0 - h.ema_decay))


def adamax_scalars(h, t, lr, T):
    """AdaMax's per-step scalars, cast to ``T``: ``(lr / (1 - beta1**t),
    beta1, 1 - beta1, beta2, eps, weight_decay, ema_decay, 1 - ema_decay)``.
    """
    return (T(lr / (1.0 - h.beta1 ** t)), T(h.beta1), T(1.0 - h.beta1),
            T(h.beta2), T(h.eps), T(h.weight_decay), T(h.ema_decay),
            T(1.0 - h.ema_decay))


def sgd_scalars(h, t, lr, T):
    """SGD's per-step scalars: ``(lr, momentum, 1 - dampening,
    weight_decay)``."""
    return T(lr), T(h.momentum), T(1.0 - h.dampening), T(h.weight_decay)


def adagrad_scalars(h, t, lr, T):
    """AdaGrad's: ``(lr / (1 + (t - 1) lr_decay), eps, weight_decay)``."""
    return T(lr / (1.0 + (t - 1) * h.lr_decay)), T(h.eps), T(h.weight_decay)


def rmsprop_scalars(h, t, lr, T):
    """RMSProp's: ``(lr, alpha, 1 - alpha, eps, momentum, weight_decay)``."""
    return (T(lr), T(h.alpha), T(1.0 - h.alpha), T(h.eps), T(h.momentum),
            T(h.weight_decay))


def adadelta_scalars(h, t, lr, T):
    """AdaDelta's: ``(lr, rho, 1 - rho, eps, weight_decay)``."""
    return T(lr), T(h.rho), T(1.0 - h.rho), T(h.eps), T(h.weight_decay)


def adam(p, g, m, v, vmax, step_size, inv_sqrt_bc2, beta1, c1, beta2, c2,
         eps, weight_decay, decay, decoupled, amsgrad, maximize):
    """Adam (Kingma & Ba 2015, Algorithm 1), eps added after bias correction.

    ``m = b1 m + c1 g``; ``v = b2 v + c2 g^2`` (``c = 1 - b``);
    ``vmax = max(vmax, v)`` (AMSGrad only);
    ``p -= lr/bc1 * m / (sqrt(v or vmax)/sqrt(bc2) + eps)``.
    Decoupled weight decay (AdamW) multiplies ``p`` by ``decay = 1 - lr*wd``
    first; coupled weight decay adds ``weight_decay * p`` to the gradient.
    """
    if maximize:
        g = -g
    if weight_decay != 0.0:
        if decoupled:
            p = p * decay
        else:
            g = g + weight_decay * p
    m = beta1 * m + c1 * g
    v = beta2 * v + c2 * (g * g)
    if amsgrad:
        vmax = max(vmax, v)
        denom = math.sqrt(vmax) * inv_sqrt_bc2 + eps
    else:
        denom = math.sqrt(v) * inv_sqrt_bc2 + eps
    # (step_size * m) is ready before the square root: the update waits for
    # one division and one subtraction after it, not a multiplication too.
    # A few parameters' step is one chain of latencies, and this order makes
    # the compiled minimize loop ~12 % faster (the same in every kernel,
    # so all paths stay bitwise identical)
    p = p - (step_size * m) / denom
    return p, m, v, vmax


def adamax(p, g, m, u, step_size, beta1, c1, beta2, eps, weight_decay,
           maximize):
    """AdaMax (Algorithm 2): ``u = max(b2 u, |g| + eps)``; ``p -= lr/bc1 * m/u``."""
    if maximize:
        g = -g
    if weight_decay != 0.0:
        g = g + weight_decay * p
    m = beta1 * m + c1 * g
    u = max(beta2 * u, abs(g) + eps)
    p = p - (step_size * m) / u
    return p, m, u


def sgd(p, g, buf, lr, momentum, undamped, nesterov, weight_decay, first,
        maximize):
    """SGD with (Nesterov) momentum, torch.optim.SGD semantics.

    ``buf = g`` on the first step, else ``buf = mu buf + undamped g`` with
    ``undamped = 1 - dampening``;
    ``p -= lr * (g + mu buf if nesterov else buf)``.
    """
    if maximize:
        g = -g
    if weight_decay != 0.0:
        g = g + weight_decay * p
    if momentum != 0.0:
        if first:
            buf = g
        else:
            buf = momentum * buf + undamped * g
        if nesterov:
            g = g + momentum * buf
        else:
            g = buf
    p = p - lr * g
    return p, buf


def adagrad(p, g, s, clr, eps, weight_decay, maximize):
    """AdaGrad: ``s += g^2``; ``p -= clr * g / (sqrt(s) + eps)``.

    ``clr = lr / (1 + (t-1) lr_decay)`` is computed by the caller.
    """
    if maximize:
        g = -g
    if weight_decay != 0.0:
        g = g + weight_decay * p
    s = s + g * g
    p = p - (clr * g) / (math.sqrt(s) + eps)
    return p, s


def rmsprop(p, g, sq, gavg, buf, lr, alpha, c_alpha, eps, momentum, centered,
            weight_decay, maximize):
    """RMSProp, torch.optim.RMSprop semantics (optionally centred, momentum)."""
    if maximize:
        g = -g
    if weight_decay != 0.0:
        g = g + weight_decay * p
    sq = alpha * sq + c_alpha * (g * g)
    if centered:
        gavg = alpha * gavg + c_alpha * g
        denom = math.sqrt(sq - gavg * gavg) + eps
    else:
        denom = math.sqrt(sq) + eps
    if momentum > 0.0:
        buf = momentum * buf + g / denom
        p = p - lr * buf
    else:
        p = p - (lr * g) / denom
    return p, sq, gavg, buf


def adadelta(p, g, sq, acc, lr, rho, c_rho, eps, weight_decay, maximize):
    """AdaDelta (Zeiler 2012), torch.optim.Adadelta semantics."""
    if maximize:
        g = -g
    if weight_decay != 0.0:
        g = g + weight_decay * p
    sq = rho * sq + c_rho * (g * g)
    delta = math.sqrt(acc + eps) / math.sqrt(sq + eps) * g
    acc = rho * acc + c_rho * (delta * delta)
    p = p - lr * delta
    return p, sq, acc


def ema(avg, p, decay, c_decay):
    """Temporal averaging (paper section 7.2): ``avg = d avg + (1-d) p``."""
    return decay * avg + c_decay * p


def is_bad(g):
    """True when ``g`` is NaN or +-inf: ``g - g`` is NaN exactly then.

    (No float literal: comparing with ``0.0`` would promote float32 to
    float64 and halve the SIMD width of the check.)
    """
    d = g - g
    return d != d
