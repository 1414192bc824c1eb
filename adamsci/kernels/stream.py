r"""The kernels of :func:`adamsci.curve_fit`'s compiled engine: the loss of
one point, a pass over a range of points, and a minibatch objective.

Each takes the compiled model's per-point functions (``grad``, ``point``,
from the module :mod:`adamsci.compiler` generates) as arguments and is
``@njit(inline="always")``: the generated module binds them into its own
cached functions (``data_pass``, ``minibatch``), as it does for
:func:`adamsci.fit_batch`.

Data layout: ``X (1, max(xdim, 1), M)`` (a view of ``xdata``), ``Y (M,)``,
``W (M,)`` the weights ``1 / sigma**2`` or ``W (0,)`` when unweighted.

The losses
----------
For the least-squares losses (scipy's :func:`~scipy.optimize.least_squares`
names and ``f_scale``), with the whitened residual ``r = (f - y) sqrt(w)``
and ``z = (r / f_scale)**2``, a point costs ``0.5 f_scale**2 rho(z)``:

=========  ======================  ===========================
loss       rho(z)                  rho'(z)
=========  ======================  ===========================
linear     z                       1
soft_l1    2 (sqrt(1 + z) - 1)     1 / sqrt(1 + z)
huber      z, or 2 sqrt(z) - 1     1, or 1 / sqrt(z) (z > 1)
cauchy     log(1 + z)              1 / (1 + z)
arctan     arctan(z)               1 / (1 + z**2)
=========  ======================  ===========================

Its gradient is ``rho'(z) r J`` (``J = sqrt(w) df/dp``) and its
Gauss-Newton matrix ``rho'(z) J J^T`` (iteratively reweighted least
squares: the same minimum as the exact Hessian's, without its negative
curvature). ``poisson`` is half the Poisson deviance of counts ``y`` with
mean ``mu = f`` (clipped at ``MU_MIN``): ``mu - y + y log(y / mu)``,
gradient ``(1 - y / mu) df/dp`` and Fisher information ``J J^T / mu``
(Fisher scoring).

The minibatch order
-------------------
The points are taken in blocks of ``BLOCK`` consecutive points (the last
block may be short). Epoch ``e`` visits the blocks ``(a_e b + c_e) mod B``
for ``b = 0 .. B-1``, an affine bijection of the ``B`` blocks with ``a_e``
coprime with ``B``, both drawn from ``(seed, e)`` by the SplitMix64 hash,
and the points of each block in turn. It needs no memory (a permutation of
10**7 points would take 80 MB), spreads every batch over the whole data set,
sorted or not (a batch of 1024 points comes from 64 places), and reads
whole cache lines (points one by one at random cost 3 to 7 times as much). The position in the stream is four
integers (``SAMPLER``: seed, epoch, position, calls), as for
:class:`adamsci.MinibatchObjective`.
"""
import math

import numpy as np
from numba import njit

from .._jit import JIT

LOSSES = ("linear", "soft_l1", "huber", "cauchy", "arctan", "poisson")
LINEAR, SOFT_L1, HUBER, CAUCHY, ARCTAN, POISSON = range(len(LOSSES))

#: The smallest mean of the Poisson loss (a model at or below 0 is clipped).
MU_MIN = 1e-12

#: The sampler's state: seed, epoch, position in the epoch, batches served.
SAMPLER = ("seed", "epoch", "position", "calls")

#: Consecutive points drawn together (two cache lines of float64 x and y).
BLOCK = 16

_inline = dict(JIT, inline="always")
del _inline["cache"]


@njit(**_inline)
def loss_terms(f, y, w, loss, f_scale):
    """``(cost, dcost/df, d2)`` of one point: its cost, the derivative of
    the cost by the model value, and its Gauss-Newton weight (the factor of
    ``df/dp df/dp^T`` in the matrix)."""
    if loss == POISSON:
        mu = max(f, MU_MIN)
        cost = mu - y
        if y > 0.0:
            cost += y * math.log(y / mu)
        return cost, 1.0 - y / mu, 1.0 / mu
    r = (f - y)
    z = w * r * r / (f_scale * f_scale)
    if loss == LINEAR:
        d = 1.0
        rho = z
    elif loss == SOFT_L1:
        s = math.sqrt(1.0 + z)
        rho = 2.0 * (s - 1.0)
        d = 1.0 / s
    elif loss == HUBER:
        if z <= 1.0:
            rho = z
            d = 1.0
        else:
            s = math.sqrt(z)
            rho = 2.0 * s - 1.0
            d = 1.0 / s
    elif loss == CAUCHY:
        rho = math.log1p(z)
        d = 1.0 / (1.0 + z)
    else:                                # ARCTAN
        rho = math.atan(z)
        d = 1.0 / (1.0 + z * z)
    return 0.5 * f_scale * f_scale * rho, d * w * r, d * w


@njit(**_inline)
def _accumulate(grad, point, X, Y, W, p, k, loss, f_scale, omit, d, g, A,
                want_a):
    """One point's cost into the sums (returns (cost, counted))."""
    y = Y[k]
    w = W[k] if W.size else 1.0
    x = point(X, 0, k)
    f = grad(x, p, d)
    if omit and not (f - f == 0.0 and y - y == 0.0):
        return 0.0, 0
    cost, df, d2 = loss_terms(f, y, w, loss, f_scale)
    n = p.size
    for j in range(n):
        g[j] += df * d[j]
    if want_a:
        for j in range(n):
            dj = d2 * d[j]
            for m in range(j + 1):
                A[j, m] += dj * d[m]
    return cost, 1


@njit(**_inline)
def data_pass(grad, point, X, Y, W, p, lo, hi, loss, f_scale, omit, g, A):
    """The cost of points ``lo:hi`` at ``p``; adds its gradient to ``g`` and
    its Gauss-Newton matrix to ``A`` (both zeroed by the caller; ``A``
    symmetric on return). Returns ``(cost, points counted)``: with
    ``omit``, points whose data or model value are NaN or inf are left
    out."""
    d = np.empty(p.size)
    cost = 0.0
    count = 0
    for k in range(lo, hi):
        c, used = _accumulate(grad, point, X, Y, W, p, k, loss, f_scale,
                              omit, d, g, A, True)
        cost += c
        count += used
    n = p.size
    for j in range(n):
        for m in range(j):
            A[m, j] = A[j, m]
    return cost, count


@njit(**_inline)
def _mix(z):
    """SplitMix64's finaliser (uint64 -> well mixed uint64)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(**_inline)
def epoch_order(seed, epoch, m):
    """``(a, c)`` of epoch ``epoch``: ``a`` coprime with ``m``."""
    if m <= 1:
        return 1, 0
    h = _mix(np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) +
             np.uint64(epoch))
    c = np.int64(h % np.uint64(m))
    a = np.int64(_mix(h + np.uint64(1)) % np.uint64(m - 1)) + 1
    while _gcd(a, m) != 1:
        a = a % (m - 1) + 1
    return a, c


@njit(**_inline)
def _gcd(a, b):
    """Euclid's greatest common divisor of two integers >= 0."""
    while b:
        a, b = b, a % b
    return a


@njit(**JIT)
def batch_points(sampler, m, batch, shuffle, out):
    """The next ``batch`` points of ``range(m)`` into ``out`` (see the
    module docs; unshuffled, in order); advances ``sampler``."""
    nb = (m + BLOCK - 1) // BLOCK        # blocks, the last one maybe short
    a, c = epoch_order(sampler[0], sampler[1], nb) if shuffle else (1, 0)
    drawn = 0
    while True:
        i = sampler[2]
        k = ((a * (i // BLOCK) + c) % nb) * BLOCK + i % BLOCK
        if k < m:                        # else past the end of a short block
            if drawn == batch:
                break                    # the next batch starts here
            out[drawn] = k
            drawn += 1
        sampler[2] = i + 1
        if sampler[2] >= nb * BLOCK:
            sampler[1] += 1
            sampler[2] = 0
            if shuffle:
                a, c = epoch_order(sampler[0], sampler[1], nb)
    sampler[3] += 1


@njit(**_inline)
def minibatch(grad, point, x, X, Y, W, sampler, batch, loss, f_scale, omit,
              shuffle, total):
    """``(f, g)`` of the next ``batch`` points of ``Y``, scaled by ``total /
    batch`` (with ``total`` the points of all the data: an unbiased
    estimate of the sums over them); advances ``sampler`` (see
    :data:`SAMPLER`)."""
    idx = np.empty(batch, np.int64)
    batch_points(sampler, Y.size, batch, shuffle, idx)
    p = np.empty(x.size)
    for j in range(x.size):
        p[j] = x[j]
    d = np.empty(x.size)
    g = np.zeros(x.size)
    A = np.empty((0, 0))
    cost = 0.0
    count = 0
    for j in range(batch):
        cc, used = _accumulate(grad, point, X, Y, W, p, idx[j], loss,
                               f_scale, omit, d, g, A, False)
        cost += cc
        count += used
    scale = total / max(count, 1)
    for j in range(x.size):
        g[j] *= scale
    return cost * scale, g


@njit(**JIT)
def loss_arrays(f, y, w, loss, f_scale):
    """:func:`loss_terms` of every point (arrays ``f``, ``y``; ``w`` empty
    when unweighted): the losses of models that do not compile."""
    cost = np.empty(f.size)
    df = np.empty(f.size)
    d2 = np.empty(f.size)
    for k in range(f.size):
        cost[k], df[k], d2[k] = loss_terms(f[k], y[k], w[k] if w.size else
                                           1.0, loss, f_scale)
    return cost, df, d2
