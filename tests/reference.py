"""Plain-NumPy reference optimizers, written from the published formulas.

Independent of adamsci's kernels: no shared code, whole-array NumPy
arithmetic, one function per optimizer that runs a whole sequence of gradients
and returns the final parameters and state. Gradients can be a sequence of
arrays or a callable ``grad(theta, t)``. Arithmetic follows NumPy's promotion
rules, so float32 arrays stay float32 (Python scalars are "weak").

Sources: Kingma & Ba 2015 (Algorithms 1 and 2, section 7.2 for temporal
averaging), Loshchilov & Hutter 2019 (AdamW), Reddi et al. 2018 (AMSGrad, in
torch's variant: max of the raw second moment), and the documented update
rules of torch.optim (SGD, Adagrad, RMSprop, Adadelta).
"""
import numpy as np


def _lr(lr, t):
    return lr(t) if callable(lr) else lr


def _grads(grads, theta, t):
    return grads(theta, t) if callable(grads) else grads[t - 1]


def adam(theta0, grads, steps, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
         weight_decay=0.0, decoupled=False, amsgrad=False,
         bias_correction=True, ema_decay=None, maximize=False):
    theta = theta0.copy()
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    vmax = np.zeros_like(theta)
    avg = np.zeros_like(theta)
    for t in range(1, steps + 1):
        a = _lr(lr, t)
        g = _grads(grads, theta, t)
        if maximize:
            g = -g
        if weight_decay and decoupled:
            theta = theta * (1 - a * weight_decay)
        elif weight_decay:
            g = g + weight_decay * theta
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        vmax = np.maximum(vmax, v)
        second = vmax if amsgrad else v
        if bias_correction:
            mhat = m / (1 - beta1 ** t)
            vhat = second / (1 - beta2 ** t)
        else:
            mhat, vhat = m, second
        theta = theta - a * mhat / (np.sqrt(vhat) + eps)
        if ema_decay is not None:
            avg = ema_decay * avg + (1 - ema_decay) * theta
    state = {"m": m, "v": v}
    if amsgrad:
        state["vmax"] = vmax
    if ema_decay is not None:
        state["avg"] = avg
        state["averaged"] = avg / (1 - ema_decay ** steps)
    return theta, state


def adamax(theta0, grads, steps, lr=2e-3, beta1=0.9, beta2=0.999, eps=1e-8,
           weight_decay=0.0, ema_decay=None, maximize=False):
    theta = theta0.copy()
    m = np.zeros_like(theta)
    u = np.zeros_like(theta)
    avg = np.zeros_like(theta)
    for t in range(1, steps + 1):
        g = _grads(grads, theta, t)
        if maximize:
            g = -g
        if weight_decay:
            g = g + weight_decay * theta
        m = beta1 * m + (1 - beta1) * g
        u = np.maximum(beta2 * u, np.abs(g) + eps)
        theta = theta - (_lr(lr, t) / (1 - beta1 ** t)) * m / u
        if ema_decay is not None:
            avg = ema_decay * avg + (1 - ema_decay) * theta
    state = {"m": m, "u": u}
    if ema_decay is not None:
        state["avg"] = avg
    return theta, state


def sgd(theta0, grads, steps, lr, momentum=0.0, dampening=0.0,
        nesterov=False, weight_decay=0.0, maximize=False):
    theta = theta0.copy()
    buf = None
    for t in range(1, steps + 1):
        g = _grads(grads, theta, t)
        if maximize:
            g = -g
        if weight_decay:
            g = g + weight_decay * theta
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (
                1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        theta = theta - _lr(lr, t) * g
    return theta, {"momentum_buffer": buf}


def adagrad(theta0, grads, steps, lr=1e-2, lr_decay=0.0, eps=1e-10,
            initial_accumulator_value=0.0, weight_decay=0.0, maximize=False):
    theta = theta0.copy()
    s = np.full_like(theta, initial_accumulator_value)
    for t in range(1, steps + 1):
        g = _grads(grads, theta, t)
        if maximize:
            g = -g
        if weight_decay:
            g = g + weight_decay * theta
        clr = _lr(lr, t) / (1 + (t - 1) * lr_decay)
        s = s + g * g
        theta = theta - clr * g / (np.sqrt(s) + eps)
    return theta, {"sum": s}


def rmsprop(theta0, grads, steps, lr=1e-2, alpha=0.99, eps=1e-8,
            momentum=0.0, centered=False, weight_decay=0.0, maximize=False):
    theta = theta0.copy()
    sq = np.zeros_like(theta)
    gavg = np.zeros_like(theta)
    buf = np.zeros_like(theta)
    for t in range(1, steps + 1):
        g = _grads(grads, theta, t)
        if maximize:
            g = -g
        if weight_decay:
            g = g + weight_decay * theta
        sq = alpha * sq + (1 - alpha) * g * g
        if centered:
            gavg = alpha * gavg + (1 - alpha) * g
            denom = np.sqrt(sq - gavg * gavg) + eps
        else:
            denom = np.sqrt(sq) + eps
        if momentum > 0:
            buf = momentum * buf + g / denom
            theta = theta - _lr(lr, t) * buf
        else:
            theta = theta - _lr(lr, t) * g / denom
    state = {"square_avg": sq}
    if centered:
        state["grad_avg"] = gavg
    if momentum > 0:
        state["momentum_buffer"] = buf
    return theta, state


def adadelta(theta0, grads, steps, lr=1.0, rho=0.9, eps=1e-6,
             weight_decay=0.0, maximize=False):
    theta = theta0.copy()
    sq = np.zeros_like(theta)
    acc = np.zeros_like(theta)
    for t in range(1, steps + 1):
        g = _grads(grads, theta, t)
        if maximize:
            g = -g
        if weight_decay:
            g = g + weight_decay * theta
        sq = rho * sq + (1 - rho) * g * g
        delta = np.sqrt(acc + eps) / np.sqrt(sq + eps) * g
        acc = rho * acc + (1 - rho) * delta * delta
        theta = theta - _lr(lr, t) * delta
    return theta, {"square_avg": sq, "acc_delta": acc}


REFERENCES = {"adam": adam, "adamax": adamax, "sgd": sgd, "adagrad": adagrad,
              "rmsprop": rmsprop, "adadelta": adadelta}


def max_rel_err(a, b):
    """``max|a - b| / max|b|`` (norm-wise relative error, 0 for equal)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = np.max(np.abs(b)) if b.size else 0.0
    if scale == 0:
        return float(np.max(np.abs(a - b))) if a.size else 0.0
    return float(np.max(np.abs(a - b)) / scale)
