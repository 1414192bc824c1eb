"""The history recorder's compiled part: one row per recorded iteration.

A run's history lives in one float64 array ``B`` of shape ``(capacity,
NCOL + k * nsel)``: the scalar columns below, then the recorded parameters,
gradient entries and raw temporal averages (``nsel`` columns each, for the
ones that are on). :func:`record_row` appends one row in place; a full
``B`` is replaced by a copy with twice the rows (:func:`grow`, also called
from compiled loops), so appending is amortised O(1) and no Python object is
made per iteration. float32 parameters are stored exactly in float64
columns.

``meta`` (int64) holds the layout and the counters of the buffer (slots
below). This module imports only NumPy and Numba: the minimize iteration
(:func:`adamsci._loop.iterate`) calls :func:`record_row` itself.
"""
import math

import numpy as np
from numba import njit

from ._jit import JIT

# -- scalar columns of B ------------------------------------------------------
IT = 0          # iteration (total, resumes included)
EPOCH = 1       # epoch of the minibatch (NaN when not a MinibatchObjective)
FUN = 2         # objective value at x
GNORM = 3       # 2-norm of the gradient at x
SNORM = 4       # 2-norm of the step that led to x (NaN at iteration 0)
LR = 5          # learning rate of that step (NaN at iteration 0)
STEP = 6        # optimizer step count at x (for the temporal average)
NCOL = 7

# -- slots of meta -------------------------------------------------------------
ROWS = 0        # rows filled
EVERY = 1       # record every k-th iteration
OFFSET = 2      # iterations done before this call (resume)
XOFF = 3        # first column of x in B, -1 when x is not recorded
GOFF = 4        # first column of grad, -1 when off
AOFF = 5        # first column of the raw temporal average, -1 when off
NSEL = 6        # number of recorded parameters
PENDING = 7     # 1: the next evaluation's row is still to be recorded
SEL0 = 8        # meta[SEL0:SEL0 + nsel]: indices of the recorded parameters
NMETA = SEL0

#: A buffer and layout that record nothing (``meta`` empty).
NO_B = np.empty((0, NCOL))
NO_META = np.zeros(0, np.int64)


@njit(inline="always", **JIT)
def _due(meta, nit):
    return (nit + meta[OFFSET]) % meta[EVERY] == 0


@njit(inline="always", **JIT)
def is_full(B, meta, nit):
    """True when the row of iteration ``nit`` is due and ``B`` has no room."""
    return _due(meta, nit) and meta[ROWS] >= B.shape[0]


@njit(**JIT)
def record_row(B, meta, nit, x, g, f, step_norm, learning_rate, step, avg,
               epoch):
    """Append the row of iteration ``nit`` (of this call) if it is due.

    ``x`` and ``g`` (array or tuple) are the parameters and gradient at
    this iteration (x units), ``f`` the objective there, ``step_norm`` and
    ``learning_rate`` those of the step that led there, ``step`` the
    optimizer's step count, ``avg`` its raw temporal average (read only when
    recorded), ``epoch`` the minibatch's epoch (NaN for other objectives).
    The caller makes sure ``B`` has room (:func:`is_full`).
    """
    if not _due(meta, nit):
        return
    r = meta[ROWS]
    B[r, IT] = nit + meta[OFFSET]
    B[r, EPOCH] = epoch
    B[r, FUN] = f
    s = 0.0
    for i in range(len(g)):
        gi = np.float64(g[i])
        s += gi * gi
    B[r, GNORM] = math.sqrt(s)
    B[r, SNORM] = step_norm
    B[r, LR] = learning_rate
    B[r, STEP] = step
    nsel = meta[NSEL]
    c = meta[XOFF]
    if c >= 0:
        for j in range(nsel):
            B[r, c + j] = x[meta[SEL0 + j]]
    c = meta[GOFF]
    if c >= 0:
        for j in range(nsel):
            B[r, c + j] = g[meta[SEL0 + j]]
    c = meta[AOFF]
    if c >= 0:
        for j in range(nsel):
            B[r, c + j] = avg[meta[SEL0 + j]]
    meta[ROWS] = r + 1


@njit(**JIT)
def append_row(B, meta, nit, x, g, f, step_norm, learning_rate, step, avg,
               epoch):
    """:func:`record_row` from Python (:meth:`adamsci.history.Recorder.
    append`); returns 1, nothing written, when ``B`` must grow first."""
    if is_full(B, meta, nit):
        return 1
    record_row(B, meta, nit, x, g, f, step_norm, learning_rate, step, avg,
               epoch)
    return 0


@njit(**JIT)
def grow(B):
    """A copy of ``B`` with twice the rows (at least 16)."""
    rows = max(2 * B.shape[0], 16)
    out = np.empty((rows, B.shape[1]), B.dtype)
    # element by element: a slice assignment would compile Numba's
    # shape-mismatch error message (string formatting, ~5 s on a new cache)
    for r in range(B.shape[0]):
        for c in range(B.shape[1]):
            out[r, c] = B[r, c]
    return out
