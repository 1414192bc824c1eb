"""Stochastic objectives: a new minibatch of the data at every call.

:class:`MinibatchObjective` turns ``fun(x, *batch) -> (f, g)`` over data
arrays into ``obj(x) -> (f, g)`` that draws the next minibatch at every
call, for ``scipy.optimize.minimize(obj, x0, jac=True,
method=adamsci.adam)``.

Batches are reproducible: the order of epoch ``e`` is a permutation drawn
from ``numpy.random.default_rng([seed, e])``, so the whole position in the
data stream is three integers (:meth:`MinibatchObjective.get_state
<adamsci.MinibatchObjective.get_state>`) and a run can be resumed exactly
with :meth:`MinibatchObjective.set_state
<adamsci.MinibatchObjective.set_state>`.
"""
import numbers
import operator

import numpy as np

__all__ = ["MinibatchObjective"]


def _is_sparse(a):
    return hasattr(a, "tocsr") and hasattr(a, "nnz")


class MinibatchObjective:
    """An objective over data arrays that uses a new minibatch at each call.

    Parameters
    ----------
    fun : callable
        ``fun(x, *batch, *args) -> (f, g)``: the objective and its gradient
        over one batch; ``batch`` holds one slice of each data array, in
        the order of ``data``; ``args`` are the extra arguments the caller
        passes (``minimize(..., args=...)``).
    data : array_like or sparse matrix, or a tuple of them
        Arrays sharing their first axis (the data points): NumPy arrays or
        scipy.sparse matrices/arrays (other sparse formats are converted to
        CSR, a copy). Batches are taken along the first axis.
    batch_size : int, default 128
        Points per batch (the last batch of an epoch may be smaller); at
        most the number of points.
    shuffle : bool, default True
        Draw a new random order of the points every epoch. False serves the
        points in their order (batches are then views of NumPy data).
    seed : int or None, default None
        Seed of the shuffles (an int >= 0). None draws one from fresh OS
        entropy; it is then available as the attribute ``seed``, so every
        run can be replayed.
    reduction : {"mean", "sum"}, default "mean"
        How ``fun`` reduces over a batch; it tells :meth:`full` how to
        combine batches (size-weighted mean, or plain sum).

    Attributes
    ----------
    n_points, n_batches : int
        Data points, and batches per epoch.
    epoch : int
        0-based epoch of the batch served last (0 before the first call).
    calls : int
        Batches served so far.
    seed : int

    Notes
    -----
    ``scipy.optimize.minimize(obj, x0, jac=True, ...)`` wraps ``obj`` in
    scipy's ``MemoizeJac``; adamsci's methods look through that wrapper and
    call ``obj`` exactly once per iteration. Other scipy methods (BFGS, ...)
    call it several times per iteration with different batches, which makes
    their line searches meaningless.

    Examples
    --------
    Least squares on 1000 points, batches of 100:

    >>> import numpy as np, scipy.optimize, adamsci
    >>> rng = np.random.default_rng(0)
    >>> A = rng.normal(size=(1000, 3))
    >>> b = A @ np.array([1.0, -2.0, 0.5])
    >>> def fg(x, A, b):
    ...     r = A @ x - b
    ...     return 0.5 * np.mean(r * r), A.T @ r / len(b)
    >>> obj = adamsci.MinibatchObjective(fg, (A, b), batch_size=100, seed=1)
    >>> res = scipy.optimize.minimize(obj, np.zeros(3), jac=True,
    ...                               method=adamsci.adam,
    ...                               options={"learning_rate": 0.05,
    ...                                        "maxiter": 2000})
    >>> np.round(res.x, 3)
    array([ 1. , -2. ,  0.5])
    >>> res.nit, obj.calls, obj.epoch, obj.n_batches
    (225, 226, 22, 10)
    """

    def __init__(self, fun, data, batch_size=128, shuffle=True, seed=None,
                 reduction="mean"):
        if not callable(fun):
            raise TypeError(f"fun must be callable, got {type(fun).__name__}")
        if not isinstance(data, tuple):
            data = (data,)
        if len(data) == 0:
            raise ValueError("data must hold at least one array")
        arrays = []
        for k, a in enumerate(data):
            if _is_sparse(a):
                if getattr(a, "format", None) != "csr":
                    a = a.tocsr()
            else:
                a = np.asarray(a)
                if a.ndim == 0:
                    raise ValueError(f"data[{k}] is a scalar; data arrays "
                                     f"need a first axis of data points")
            arrays.append(a)
        n = arrays[0].shape[0]
        for k, a in enumerate(arrays):
            if a.shape[0] != n:
                raise ValueError(
                    f"data arrays must share their first axis: data[0] has "
                    f"{n} points, data[{k}] has {a.shape[0]}")
        if n == 0:
            raise ValueError("data has no points")
        if isinstance(batch_size, (bool, np.bool_)) or not isinstance(
                batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got "
                             f"{batch_size!r}")
        if not isinstance(shuffle, (bool, np.bool_)):
            raise TypeError(f"shuffle must be True or False, got {shuffle!r}")
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got "
                             f"{reduction!r}")
        if seed is None:
            seed = int(np.random.default_rng().integers(2 ** 63 - 1))
        elif isinstance(seed, (bool, np.bool_)) or not isinstance(
                seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be None or an integer >= 0, got "
                             f"{seed!r}")
        self.fun = fun
        self.data = tuple(arrays)
        self.n_points = int(n)
        self.batch_size = int(min(operator.index(batch_size), n))
        self.n_batches = -(-self.n_points // self.batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.reduction = reduction
        self.epoch = 0
        self._set(0, 0, 0)

    # -- the data stream ------------------------------------------------------
    def _order(self, epoch):
        if not self.shuffle:
            return None
        return np.random.default_rng([self.seed, epoch]).permutation(
            self.n_points)

    def _set(self, epoch, position, calls):
        self._epoch = epoch          # epoch the next batch comes from
        self._position = position    # index of its first point in the order
        self._calls = calls
        self._perm = self._order(epoch)

    def next_batch(self):
        """The next batch: a tuple of slices of the data arrays."""
        if self._position >= self.n_points:
            self._set(self._epoch + 1, 0, self._calls)
        lo = self._position
        hi = min(lo + self.batch_size, self.n_points)
        self._position = hi
        self._calls += 1
        self.epoch = self._epoch
        if self._perm is None:
            return tuple(a[lo:hi] for a in self.data)
        idx = self._perm[lo:hi]
        return tuple(a[idx] for a in self.data)

    @property
    def calls(self):
        return self._calls

    def __call__(self, x, *args):
        """``fun(x, *next_batch, *args)``: value and gradient on one batch."""
        return self.fun(x, *self.next_batch(), *args)

    def full(self, x, *args):
        """Value and gradient over all the data, in batches, in data order.

        Batches are combined as ``reduction`` says (size-weighted mean or
        sum). The shuffle state is not touched.
        """
        f_tot = 0.0
        g_tot = None
        n = self.n_points
        for lo in range(0, n, self.batch_size):
            hi = min(lo + self.batch_size, n)
            f, g = self.fun(x, *(a[lo:hi] for a in self.data), *args)
            w = (hi - lo) / n if self.reduction == "mean" else 1.0
            g = np.asarray(g, dtype=np.result_type(np.asarray(g).dtype,
                                                   np.float64))
            f_tot += w * float(f)
            g_tot = w * g if g_tot is None else g_tot + w * g
        return f_tot, g_tot

    # -- exact resume -----------------------------------------------------
    def get_state(self):
        """The position in the data stream: a dict of four plain ints.

        ``{"seed", "epoch", "position", "calls"}``: the epoch and the point
        the next batch starts at, and the batches served so far.
        """
        return {"seed": self.seed, "epoch": int(self._epoch),
                "position": int(self._position), "calls": int(self._calls)}

    def set_state(self, state):
        """Continue from a :meth:`get_state` dict (same data and batch_size).

        Raises ValueError, leaving the objective unchanged, when a key is
        missing or a value is out of range.
        """
        try:
            seed = operator.index(state["seed"])
            epoch = operator.index(state["epoch"])
            position = operator.index(state["position"])
            calls = operator.index(state["calls"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"state must be a dict of ints with keys seed, "
                             f"epoch, position, calls (from get_state); "
                             f"got {state!r}") from e
        if seed < 0 or epoch < 0 or calls < 0 or not \
                0 <= position <= self.n_points:
            raise ValueError(f"state out of range for {self.n_points} "
                             f"points: {state!r}")
        self.seed = int(seed)
        self._set(int(epoch), int(position), int(calls))
        self.epoch = int(epoch)

    def __repr__(self):
        return (f"MinibatchObjective({getattr(self.fun, '__name__', 'fun')}, "
                f"n_points={self.n_points}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, seed={self.seed}, "
                f"epoch={self.epoch}, calls={self.calls})")
