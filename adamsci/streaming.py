r"""Data that need not fit in memory, and passes over all of it in chunks.

:func:`adamsci.curve_fit` works on a :class:`Data`: the points of ``xdata``,
``ydata`` and ``sigma`` in **chunks** of consecutive points, each read only
when it is needed -- NumPy arrays (one chunk: views, nothing copied), dask
arrays and the xarray DataArrays over them (the dask chunks), DataArrays of
a netCDF/HDF5 or zarr file opened lazily with :func:`xarray.open_dataset`,
``h5py`` and ``zarr`` arrays (their chunks along the points).

Two things read the data:

* a **full pass** (:meth:`Kernels.full_pass`): the cost, its gradient
  ``J^T W r`` and Gauss-Newton matrix ``J^T W J`` over every point, chunk
  by chunk, in threads (the compiled pass releases the GIL) or, for dask
  data, as one task per dask chunk (on the workers of a
  ``dask.distributed`` cluster when a client is active), summing the small
  results; memory: one chunk, independent of the number of points;
* the **minibatches** of the optimizer: in memory, straight from the arrays
  in the affine order of :mod:`adamsci.kernels.stream`; out of core, from a
  buffer of chunks read in a shuffled order (:class:`BufferedBatches`),
  their points then visited in a shuffled order.

:func:`polish` (Levenberg-Marquardt steps made of full passes) and
:func:`covariance` finish a fit from the passes alone.
"""
import concurrent.futures
import math
import threading
from typing import NamedTuple

import numpy as np

from .kernels import stream

__all__ = ["Data", "Kernels", "BufferedBatches", "Polished", "polish",
           "covariance"]

#: Default points per chunk of data that do not say (about 24 MB of x, y, w).
CHUNK = 1 << 20


def _is_dask(a):
    return type(a).__module__.split(".")[0] == "dask"


def _is_dataarray(a):
    return hasattr(a, "isel") and hasattr(a, "dims")


def _dask_of(a):
    """The dask array under ``a`` (a dask array, or a DataArray over one),
    or None. (A DataArray's ``.data`` would load a lazy file whole.)"""
    if a is None:
        return None
    if _is_dataarray(a):
        return a.data if a.chunks is not None else None
    return a if _is_dask(a) else None


def _lazy_chunks(a):
    """The chunk length along the points of a lazy array, or None."""
    if _is_dataarray(a):
        if a.chunks is not None:
            return None
        enc = a.encoding.get("chunksizes") or a.encoding.get(
            "preferred_chunks")
        if isinstance(enc, dict):
            enc = tuple(enc.values())
        return int(enc[-1]) if enc else None
    chunks = getattr(a, "chunks", None)
    if isinstance(chunks, tuple) and chunks and isinstance(chunks[-1], int):
        return int(chunks[-1])       # h5py, zarr
    return None


def is_lazy(a):
    """True for data read chunk by chunk (not a NumPy array or a list)."""
    if isinstance(a, np.ndarray) or a is None:
        return False
    if _is_dask(a):
        return True
    if _is_dataarray(a):
        return a.chunks is not None or not a.variable._in_memory
    return hasattr(a, "shape") and hasattr(a, "__getitem__") and \
        hasattr(a, "dtype") and not hasattr(a, "__array_function__")


def kernel_arrays(x, y, sigma):
    """The kernels' layout of points ``x`` (L,) or (k, L), ``y`` and
    ``sigma`` (or None): ``(X (1, max(k, 1), L), Y, W)`` with ``W = 1 /
    sigma**2``, or ``W (0,)`` when unweighted."""
    X = x.reshape(1, 1, -1) if x.ndim == 1 else x[None]
    if sigma is None:
        return X, y, np.empty(0)
    with np.errstate(divide="ignore"):
        return X, y, 1.0 / np.asarray(sigma, dtype=np.float64) ** 2


class Data:
    """The points of a fit: ``x`` (M,) or (k, M), ``y`` (M,), ``sigma``
    (M,) or None; every argument a NumPy array or a lazy array.

    ``bounds`` lists the chunks' ``(start, stop)``; :meth:`read` returns
    chunk ``i`` as ``(X (1, max(k, 1), L), Y (L,), W (L,) or (0,))``
    NumPy arrays, ``W = 1 / sigma**2``. ``finite`` says whether the points
    are known to be finite (checked when read otherwise).
    """

    def __init__(self, x, y, sigma=None, chunk_size=None):
        self.x, self.y, self.sigma = x, y, sigma
        shape_x = tuple(x.shape)
        if len(y.shape) != 1:
            raise ValueError(f"ydata must be 1-D, got shape {tuple(y.shape)}")
        m = int(y.shape[0])
        if len(shape_x) not in (1, 2) or shape_x[-1] != m:
            raise ValueError(f"xdata must have the data points along its "
                             f"last axis ({m} points in ydata), got shape "
                             f"{shape_x}")
        if sigma is not None and tuple(sigma.shape) != (m,):
            raise ValueError(f"sigma must have shape ({m},) for chunked "
                             f"data, got {tuple(sigma.shape)}")
        self.m = m
        self.k = 0 if len(shape_x) == 1 else shape_x[0]
        self.lazy = any(is_lazy(a) for a in (x, y, sigma))
        self.dask = any(_dask_of(a) is not None for a in (x, y, sigma))
        self.bounds = self._chunking(chunk_size)
        self.finite = False

    # -- chunks ----------------------------------------------------------
    def _dask_points_chunks(self):
        found = {}
        for name, a in (("xdata", self.x), ("ydata", self.y),
                        ("sigma", self.sigma)):
            a = _dask_of(a)
            if a is not None:
                found[name] = tuple(a.chunks[-1])
        if len(set(found.values())) > 1:
            raise ValueError(
                "xdata, ydata and sigma must be chunked alike along the "
                "points; got " + ", ".join(f"{k} {v[:4]}{'...' * (len(v) > 4)}"
                                           for k, v in found.items()) +
                " (rechunk one of them, e.g. x.rechunk({-1: y.chunks[-1]}))")
        return next(iter(found.values()), None)

    def _chunking(self, chunk_size):
        m = self.m
        if not self.lazy:
            size = m if chunk_size is None else chunk_size
        else:
            dask_chunks = self._dask_points_chunks()
            if dask_chunks is not None and chunk_size is None:
                edges = np.concatenate([[0], np.cumsum(dask_chunks)])
                return [(int(a), int(b)) for a, b in zip(edges[:-1],
                                                         edges[1:])]
            size = chunk_size
            if size is None:
                native = [c for c in (_lazy_chunks(a) for a in
                                      (self.x, self.y, self.sigma)
                                      if a is not None) if c]
                size = CHUNK
                if native:
                    c = max(native)
                    size = c * max(1, CHUNK // c)
        size = max(1, int(size))
        return [(lo, min(lo + size, m)) for lo in range(0, m, size)]

    def _read_one(self, a, lo, hi, name):
        try:
            if isinstance(a, np.ndarray):
                out = a[..., lo:hi]
            elif _is_dataarray(a):
                out = a.isel({a.dims[-1]: slice(lo, hi)}).values
            elif _is_dask(a):
                out = a[..., lo:hi].compute()
            else:
                out = np.asarray(a[..., lo:hi])
        except (OSError, RuntimeError, KeyError) as e:
            raise OSError(f"reading {name}[..., {lo}:{hi}] failed: "
                          f"{type(e).__name__}: {e}") from e
        out = np.asarray(out)
        if out.dtype.kind not in "fiub":
            raise TypeError(f"{name} must hold real numbers, got dtype "
                            f"{out.dtype}")
        if out.dtype.char not in "fd":
            out = out.astype(np.float64)
        return out

    def read(self, i):
        lo, hi = self.bounds[i]
        x = self._read_one(self.x, lo, hi, "xdata")
        y = self._read_one(self.y, lo, hi, "ydata")
        s = None if self.sigma is None else self._read_one(self.sigma, lo,
                                                           hi, "sigma")
        return kernel_arrays(x, y, s)

    def subsample(self, n, seed):
        """A :class:`Data` in memory of ``n`` points drawn without
        replacement (self when it has no more than ``n``): for a lazy
        source, from chunks read in a shuffled order."""
        if self.m <= n:
            return self
        if self.lazy:
            order = np.random.default_rng([seed, 1]).permutation(
                len(self.bounds))
            parts, size = [], 0
            for i in order:
                parts.append(self.read(int(i)))
                size += parts[-1][1].size
                if size >= n:
                    break
            X = np.concatenate([q[0] for q in parts], axis=-1)
            Y = np.concatenate([q[1] for q in parts])
            W = np.concatenate([q[2] for q in parts])
        else:
            X, Y, W = self.read(0)
        rows = np.empty(n, np.int64)
        stream.batch_points(np.array([seed, 0, 0, 0], np.int64), Y.size, n,
                            True, rows)
        x = X[0, 0, rows] if self.k == 0 else X[0][:, rows]
        sigma = None if W.size == 0 else 1.0 / np.sqrt(W[rows])
        sub = Data(x, Y[rows], sigma)
        sub.finite = self.finite
        return sub

    def check_finite(self, X, Y, W, i, nan_policy):
        """Raise for non-finite points of chunk ``i`` (not for "omit")."""
        if nan_policy == "omit" or self.finite:
            return
        ok = np.isfinite(Y).all() and np.isfinite(X).all() and \
            (W.size == 0 or (np.isfinite(W).all() and (W > 0).all()))
        if not ok:
            lo, hi = self.bounds[i]
            raise ValueError(f"the data points {lo}:{hi} (chunk {i}) hold "
                             f"NaN or inf (or a sigma <= 0); "
                             f"nan_policy='omit' leaves such points out")


# -- the kernels: compiled, or NumPy for models that do not compile ----------
def _batch_indices(sampler, batch, m, shuffle):
    """The points of the next batch in the order of
    :func:`adamsci.kernels.stream.minibatch` (advances ``sampler``)."""
    idx = np.empty(batch, np.int64)
    stream.batch_points(sampler, m, batch, shuffle, idx)
    return idx


_POOL = None
_POOL_LOCK = threading.Lock()


def threads():
    """Threads of the full passes (Numba's thread count)."""
    from numba import config
    return max(1, int(config.NUMBA_NUM_THREADS))


def _pool():
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = concurrent.futures.ThreadPoolExecutor(
                threads(), thread_name_prefix="adamsci-pass")
        return _POOL


class Kernels:
    """The per-batch and per-chunk functions of one fit.

    ``module`` is a compiled model's generated module (its ``minibatch``
    and ``data_pass``), or None with ``numpy`` a callable ``numpy(p, X, Y,
    W, want_a) -> (cost, g, A, count)`` for models that do not compile.
    """

    def __init__(self, n, loss, f_scale, omit, module=None, numpy=None,
                 source=None):
        self.n = n
        self.loss = stream.LOSSES.index(loss)
        self.f_scale = float(f_scale)
        self.omit = bool(omit)
        self.module = module
        self.numpy = numpy
        self.source = source      # (text, digest) of module: dask workers

    # -- one minibatch -----------------------------------------------------
    def batch(self, x, X, Y, W, sampler, batch, shuffle, total):
        """``(f, g)`` of the next minibatch of ``(X, Y, W)`` (see
        :func:`adamsci.kernels.stream.minibatch`)."""
        if self.module is not None:
            return self.module.minibatch(x, X, Y, W, sampler, batch,
                                         self.loss, self.f_scale, self.omit,
                                         shuffle, total)
        idx = _batch_indices(sampler, batch, Y.size, shuffle)
        cost, g, _, count = self.numpy(x, X[..., idx], Y[idx],
                                       W[idx] if W.size else W, False)
        scale = total / max(count, 1)
        return cost * scale, g * scale

    # -- one chunk ---------------------------------------------------------
    def chunk_pass(self, p, X, Y, W, lo=0, hi=None, parallel=True):
        """``(cost, g, A, count)`` over points ``lo:hi`` of one chunk."""
        hi = Y.size if hi is None else hi
        n = self.n
        if self.module is None:
            return self.numpy(p, X[..., lo:hi], Y[lo:hi],
                              W[lo:hi] if W.size else W, True)
        parts = 1
        if parallel and hi - lo >= 1 << 15:
            parts = threads()

        def run(a, b):
            g = np.zeros(n)
            A = np.zeros((n, n))
            cost, count = self.module.data_pass(
                X, Y, W, p, a, b, self.loss, self.f_scale, self.omit, g, A)
            return cost, g, A, count
        if parts == 1:
            return run(lo, hi)
        edges = np.linspace(lo, hi, parts + 1).astype(np.int64)
        out = list(_pool().map(run, edges[:-1], edges[1:]))
        return _sum(out, n)

    def full_pass(self, p, data, nan_policy):
        """``(cost, g, A, count)`` over all the data at ``p``."""
        p = np.ascontiguousarray(p, dtype=np.float64)
        if data.dask and self.module is not None:
            return _dask_pass(self, p, data)
        if len(data.bounds) == 1:
            X, Y, W = data.read(0)
            data.check_finite(X, Y, W, 0, nan_policy)
            return self.chunk_pass(p, X, Y, W)
        # read chunk i + 1 while chunk i is summed
        results = []
        reader = concurrent.futures.ThreadPoolExecutor(1)
        try:
            nxt = reader.submit(data.read, 0)
            for i in range(len(data.bounds)):
                X, Y, W = nxt.result()
                if i + 1 < len(data.bounds):
                    nxt = reader.submit(data.read, i + 1)
                data.check_finite(X, Y, W, i, nan_policy)
                results.append(self.chunk_pass(p, X, Y, W))
        finally:
            reader.shutdown(wait=True, cancel_futures=True)
        return _sum(results, self.n)


def _sum(results, n):
    cost = math.fsum(r[0] for r in results)
    g = np.zeros(n)
    A = np.zeros((n, n))
    count = 0
    for r in results:
        g += r[1]
        A += r[2]
        count += r[3]
    return cost, g, A, count


def _block_pass(text, digest, X, Y, sigma, p, loss, f_scale, omit, check):
    """One dask chunk's pass (runs on a dask worker)."""
    from .compiler import import_generated
    mod = import_generated(text, digest)
    X, Y, W = kernel_arrays(np.asarray(X, dtype=np.float64),
                            np.asarray(Y, dtype=np.float64), sigma)
    n = p.size
    g = np.zeros(n)
    A = np.zeros((n, n))
    cost, count = mod.data_pass(X, Y, W, p, 0, Y.size, loss, f_scale, True,
                                g, A)
    if check and count < Y.size:
        raise ValueError("a chunk of the data holds NaN or inf (or a "
                         "sigma <= 0); nan_policy='omit' leaves such points "
                         "out")
    return cost, g, A, count


def _dask_blocks(a, data):
    """The delayed blocks of ``a`` along the points."""
    if a is None:
        return [None] * len(data.bounds)
    a = _dask_of(a) if _dask_of(a) is not None else a
    if not _is_dask(a):
        import dask.array as da
        a = da.from_array(np.asarray(a), chunks=(-1,) * (np.ndim(a) - 1) +
                          (tuple(b - a0 for a0, b in data.bounds),))
    if a.ndim == 2:
        a = a.rechunk({0: -1})
    blocks = a.to_delayed()
    return list(blocks.reshape(-1))


def _dask_pass(kern, p, data):
    import dask
    text, digest = kern.source
    check = not kern.omit
    tasks = [dask.delayed(_block_pass, pure=True)(
        text, digest, xb, yb, wb, p, kern.loss, kern.f_scale, kern.omit,
        check)
        for xb, yb, wb in zip(_dask_blocks(data.x, data),
                              _dask_blocks(data.y, data),
                              _dask_blocks(data.sigma, data))]
    return _sum(dask.compute(*tasks), kern.n)


# -- minibatches of data out of core ----------------------------------------
class BufferedBatches:
    """Minibatches of chunked data: ``obj(x) -> (f, g)`` for minimize.

    Chunks are read in a shuffled order (a permutation drawn from
    ``numpy.random.default_rng([seed, epoch])``) into a buffer of at least
    ``buffer_points`` points; the buffer's points are visited once in the
    affine order of :mod:`adamsci.kernels.stream`, ``batch_size`` at a time,
    then the next chunks are read. Each batch's sums are scaled by ``M /
    batch`` (unbiased). ``get_state()``/``set_state()`` give and restore
    the position (epoch, chunk, the buffer's sampler) exactly.
    """

    def __init__(self, kernels, data, batch_size, seed, nan_policy,
                 buffer_points=1 << 20):
        self.kernels = kernels
        self.data = data
        self.batch = int(batch_size)
        self.seed = int(seed)
        self.nan_policy = nan_policy
        self.buffer_points = max(int(buffer_points), self.batch)
        self.epoch = 0
        self._next_chunk = 0           # position in the epoch's chunk order
        self._buffer = None
        self._sampler = np.zeros(4, np.int64)

    def _order(self, epoch):
        return np.random.default_rng([self.seed, epoch]).permutation(
            len(self.data.bounds))

    def _fill(self):
        order = self._order(self.epoch)
        parts = []
        size = 0
        while size < self.buffer_points:
            if self._next_chunk >= order.size:
                if parts:
                    break
                self.epoch += 1
                self._next_chunk = 0
                order = self._order(self.epoch)
            i = int(order[self._next_chunk])
            self._next_chunk += 1
            X, Y, W = self.data.read(i)
            self.data.check_finite(X, Y, W, i, self.nan_policy)
            parts.append((X, Y, W))
            size += Y.size
        X = np.concatenate([p[0] for p in parts], axis=-1)
        Y = np.concatenate([p[1] for p in parts])
        W = np.concatenate([p[2] for p in parts])
        self._buffer = (X, Y, W)
        self._sampler[:] = (self.seed + 7919 * self.epoch +
                            self._next_chunk, 0, 0, 0)

    def __call__(self, x):
        if self._buffer is None or self._sampler[1] > 0:
            self._fill()
        X, Y, W = self._buffer
        batch = min(self.batch, Y.size)
        k = self.kernels
        f, g = k.batch(np.asarray(x, dtype=np.float64), X, Y, W,
                       self._sampler, batch, True, self.data.m)
        return f, g

    def get_state(self):
        """``{"seed", "epoch", "chunk", "position", "buffered"}`` of the
        next batch."""
        return {"seed": self.seed, "epoch": self.epoch,
                "chunk": self._next_chunk,
                "position": int(self._sampler[2]),
                "buffered": self._buffer is not None}

    def set_state(self, state):
        """Restore a :meth:`get_state` (re-reads the buffer)."""
        self.seed = int(state.get("seed", self.seed))
        self.epoch = int(state["epoch"])
        chunk = int(state["chunk"])
        self._buffer = None
        if state.get("buffered"):
            # re-read the buffer that ended at ``chunk``
            order = self._order(self.epoch)
            start, size = chunk, 0
            while start > 0 and size < self.buffer_points:
                start -= 1
                lo, hi = self.data.bounds[int(order[start])]
                size += hi - lo
            self._next_chunk = start
            self._fill()
            self._sampler[2] = int(state["position"])
        else:
            self._next_chunk = chunk


# -- the end of a fit: polish and covariance ------------------------------
def _solve(A, g, lam):
    """``(A + lam diag(A)) d = -g``, solved scaled to a unit diagonal
    (``A`` of parameters of different magnitudes is then well conditioned),
    by Cholesky, or by least squares when that fails."""
    D = np.diag(A).copy()
    D[~(D > 0)] = 1.0
    s = 1.0 / np.sqrt(D)
    M = A * np.outer(s, s)
    M[np.diag_indices_from(M)] += lam
    b = -g * s
    try:
        L = np.linalg.cholesky(M)
        z = np.linalg.solve(L, b)
        d = np.linalg.solve(L.T, z)
    except np.linalg.LinAlgError:
        d = np.linalg.lstsq(M, b, rcond=None)[0]
    return d * s


class Polished(NamedTuple):
    """What :func:`polish` returns."""
    p: np.ndarray          # the parameters at the end
    pass_: tuple           # full_pass at p: (cost, g, A, count)
    passes: int            # passes made
    converged: bool
    lam: float             # the damping at the end (to go on from)


def polish(full_pass, p, lb, ub, maxiter=100, setol=1e-4, xtol=1e-12,
           start=None, lam=1e-3):
    """Levenberg-Marquardt steps on all the data from ``p``.

    ``full_pass(p) -> (cost, g, A, count)``; ``start`` is that at ``p``
    when known. Each step solves ``(A + lam diag A) d = -g`` and is
    clipped into ``[lb, ub]``; it is accepted when the cost does not rise
    by more than the rounding of its sum, and ``lam`` follows Nielsen's
    rule (shrinks by up to 3x as the gain ratio, actual over predicted
    decrease, approaches 1; doubles its growth at each rejection).
    Converged when the step would move ``p`` by less than ``setol``
    standard errors (``d^T A d <= setol**2 s**2``, ``s**2 = 2 cost / (M -
    n)``) or by at most ``xtol (xtol + |p|)``: that step is taken without
    another pass (the pass returned is the one before it: its cost, ``g``
    and ``A`` differ from those at ``p`` by far less than their rounding's
    consequences); or when no step lowers the cost. At most ``maxiter`` passes; ``lam`` is
    the first damping (relative to the diagonal). Returns a
    :class:`Polished`.
    """
    cur = full_pass(p) if start is None else start
    passes = 0 if start is not None else 1
    grow = 2.0
    converged = False
    while True:
        cost, g, A, count = cur
        d = _solve(A, g, lam)
        q = np.clip(p + d, lb, ub)
        step = q - p
        s2 = 2.0 * cost / (count - p.size) if count > p.size else 0.0
        if (step @ A @ step <= setol ** 2 * s2 or np.linalg.norm(step) <=
                xtol * (xtol + np.linalg.norm(p))):
            converged = True
            if np.isfinite(q).all():
                p = q          # the last, tiny step: taken without a pass
            break
        if passes >= maxiter or not np.isfinite(q).all():
            break
        new = full_pass(q)
        passes += 1
        rounding = 8 * np.finfo(float).eps * math.sqrt(max(count, 1)) * cost
        predicted = -(g @ step) - 0.5 * (step @ A @ step)
        if np.isfinite(new[0]) and new[0] <= cost + rounding:
            rho = (cost - new[0]) / predicted if predicted > 0 else 1.0
            p, cur = q, new
            lam *= max(1.0 / 3.0, 1.0 - (2.0 * min(rho, 1.0) - 1.0) ** 3)
            lam = max(lam, 1e-15)
            grow = 2.0
        else:
            lam *= grow
            grow *= 2.0
            if lam > 1e16:
                converged = True       # no step lowers the cost
                break
    return Polished(p, cur, passes, converged, lam)


def covariance(A, cost, count, n, absolute_sigma):
    """scipy's covariance from ``A = J^T W J``: its pseudo-inverse
    (eigenvalues below ``(eps max(M, n))**2`` of the largest dropped,
    scipy's threshold on the singular values of ``J``), times ``2 cost /
    (M - n)`` unless ``absolute_sigma``. None when it cannot be
    estimated. ``A`` is scaled to unit diagonal first (the eigenvalues
    of a matrix of parameters of different magnitudes are then exact)."""
    if not np.isfinite(A).all():
        return None
    d = np.sqrt(np.diag(A))
    if not (d > 0).all():
        return None
    w, V = np.linalg.eigh(A / np.outer(d, d))    # scaled: better conditioned
    if w.size == 0 or w[-1] <= 0:
        return None
    keep = w > (np.finfo(float).eps * max(count, n)) ** 2 * w[-1]
    pcov = (V[:, keep] / w[keep]) @ V[:, keep].T / np.outer(d, d)
    if not absolute_sigma:
        if count <= n:
            return None
        pcov = pcov * (2.0 * cost / (count - n))
    return pcov
