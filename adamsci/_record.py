"""The history recorder's compiled part: one row per recorded iteration.

A run's history lives in one float64 array ``B`` of shape ``(capacity,
NCOL + k * nsel)``: the scalar columns below, then the recorded parameters,
gradient entries and raw temporal averages (``nsel`` columns each, for the
ones that are on). :func:`record_row` appends one row in place; the Python
side doubles ``B`` when it is full (:func:`grow`, also callable from
compiled loops), so appending is amortised O(1) and no Python object is made
per iteration. float32 parameters are stored exactly in float64 columns.

``meta`` (int64) holds the layout, the counters and the indices of the slots
of the minimize loop's ``fp``/``ip`` arrays (:mod:`adamsci._compiled`) that
the recorder reads, so that this module does not depend on that layout.
Every slot index is an argument, never a global (globals are frozen into the
compiled code and cached).

This module imports only NumPy and Numba: :mod:`adamsci._compiled` calls
:func:`record_row` and :func:`grow` from its compiled loop.
"""
import math

import numpy as np
from numba import njit

JIT = dict(cache=True, nogil=True, error_model="numpy")

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
AROW = 6        # row of the loop's S that holds the average
NSEL = 7        # number of recorded parameters
FIRST = 8       # 1: record the starting point (a fresh run), 0: resumed
FP_SNORM = 9    # fp slot of the last step's norm
FP_LR = 10      # fp slot of the last step's learning rate
IP_NIT = 11     # ip slot of the iteration counter
IP_STEP = 12    # ip slot of the optimizer's step count
PENDING = 13    # 1: the next evaluation's row is still to be recorded
SEL0 = 16       # meta[SEL0:SEL0 + nsel]: indices of the recorded parameters
NMETA = SEL0

#: Status of :func:`adamsci.history.iterate_record` when ``B`` must grow
#: before the due row can be written (nothing else was done).
FULL = -100


@njit(inline="always", **JIT)
def record_row(B, meta, x, g, f, fp, ip, S, epoch):
    """Append the row of the current iteration if it is due.

    Parameters
    ----------
    B : float64 array, shape (capacity, ncol)
        The history buffer; a row is written at ``meta[ROWS]``.
    meta : int64 array
        Layout and counters (slots above).
    x, g : 1-D arrays
        Parameters and gradient at this iteration (x units).
    f : float
        Objective value at ``x``.
    fp, ip, S : arrays
        The minimize loop's float slots, int slots and optimizer state rows.
    epoch : float
        Epoch of the minibatch (NaN for other objectives).

    Returns
    -------
    full : int
        1 when ``B`` has no free row left (grow it before the next call).
    """
    it = ip[meta[IP_NIT]] + meta[OFFSET]
    if it % meta[EVERY] != 0:
        return 0
    r = meta[ROWS]
    if r >= B.shape[0]:
        return 1
    B[r, IT] = it
    B[r, EPOCH] = epoch
    B[r, FUN] = f
    s = 0.0
    for i in range(g.size):
        gi = np.float64(g[i])
        s += gi * gi
    B[r, GNORM] = math.sqrt(s)
    B[r, SNORM] = fp[meta[FP_SNORM]]
    B[r, LR] = fp[meta[FP_LR]]
    B[r, STEP] = ip[meta[IP_STEP]]
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
        a = meta[AROW]
        for j in range(nsel):
            B[r, c + j] = S[a, meta[SEL0 + j]]
    meta[ROWS] = r + 1
    return 1 if r + 1 >= B.shape[0] else 0


@njit(**JIT)
def grow(B):
    """A copy of ``B`` with twice the rows (at least 16)."""
    rows = max(2 * B.shape[0], 16)
    out = np.empty((rows, B.shape[1]), B.dtype)
    out[:B.shape[0]] = B
    return out
