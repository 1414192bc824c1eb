"""Benchmark: the cost of recording the history (issue #4, point 4).

Adam on a 10-parameter least-squares problem (64 data points), every
iteration recorded (``record=True``: x, fun, grad_norm, step_norm,
learning_rate) against no recording, on both loops of
:func:`scipy.optimize.minimize` with ``method=adamsci.adam``:

* ``python``: a NumPy objective called from the Python loop;
* ``compiled``: the same objective as a Numba ``@njit`` function, the whole
  loop in Numba (recording into the preallocated buffer inside Numba).

The variants run interleaved, round by round, in one process; the table
gives the median CPU time (``time.process_time``: other processes' load does
not count) per iteration of each and the median of the per-round ratios
(timings on a shared machine drift, ratios measured side by side do not). Targets: <= 10 % overhead on the Python path, <= 20 % compiled.

Fresh memory: a recorded row is 136 bytes (7 scalars and 10 parameters, in
float64), written once. Where the history buffer lands on memory the
process has never touched, the first write to each 4 KiB page costs a page
fault: about 0.25 us on bare-metal Linux (0.01 us per row), but 10-20 us in
virtual machines whose guests hand freed memory back to the host (measured
here on a Firecracker VM with free page reporting: 0.3-0.5 us per row, as
much as a whole compiled iteration). The sizes below keep the buffer at a
few MB, which the allocator recycles from round to round, so the figures
are the steady state of repeated runs in one process.

Run with ``python -m adamsci bench --suite history`` (``--quick``: short).
"""
import statistics
import time

import numpy as np

N_PARAMS = 10
N_POINTS = 64

#: CPU time of this process (user + system, page faults included): on a
#: shared machine it does not count the time other processes hold the CPU.
_clock = time.process_time


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((N_POINTS, N_PARAMS))
    b = A @ rng.standard_normal(N_PARAMS) + 0.1 * rng.standard_normal(
        N_POINTS)
    return A, b


def _python_objective(A, b):
    At = np.ascontiguousarray(A.T)

    def fg(x):
        r = A @ x - b
        return 0.5 * float(r @ r), At @ r
    return fg


def _compiled_objective(A, b):
    from numba import njit

    @njit(cache=False, nogil=True, error_model="numpy")
    def fg(x):
        m, n = A.shape
        g = np.zeros(n)
        f = 0.0
        for i in range(m):
            r = -b[i]
            for j in range(n):
                r += A[i, j] * x[j]
            f += r * r
            for j in range(n):
                g[j] += r * A[i, j]
        return 0.5 * f, g
    return fg


def _time(fun, iters, record, compiled):
    from scipy.optimize import minimize
    from .. import minimize as methods
    opts = {"learning_rate": 1e-3, "maxiter": iters, "gtol": 0.0,
            "compiled": compiled}
    if record:
        opts["record"] = True
    t = _clock()
    res = minimize(fun, np.zeros(N_PARAMS), jac=True, method=methods.adam,
                   options=opts)
    dt = _clock() - t
    assert res.nit == iters
    if record:
        assert res.history.sizes["iteration"] == iters + 1
    return dt / iters


def _first_touch(rows, cols=7 + N_PARAMS):
    """Seconds to fault in a fresh buffer the size of the history."""
    t = _clock()
    buf = np.empty((rows, cols))
    buf.reshape(-1)[::512] = 0.0            # one write per 4 KiB page
    return _clock() - t


def _measure(fun, iters, rounds, compiled):
    _time(fun, min(iters, 100), False, compiled)    # compile, warm caches
    _time(fun, min(iters, 100), True, compiled)
    off, on, ratios, touch = [], [], [], []
    for r in range(rounds):
        # alternate the order so that neither variant always goes first
        if r % 2:
            a = _time(fun, iters, True, compiled)
            b = _time(fun, iters, False, compiled)
        else:
            b = _time(fun, iters, False, compiled)
            a = _time(fun, iters, True, compiled)
        touch.append(_first_touch(iters + 1) / iters)
        on.append(a)
        off.append(b)
        ratios.append(a / b)
    return (statistics.median(off), statistics.median(on),
            statistics.median(ratios), statistics.median(touch))


def run(quick=False):
    """Run the benchmark; print and return the table."""
    A, b = _problem()
    rows = []
    py_iters, c_iters, rounds = (5000, 20000, 3) if quick else \
        (20000, 100000, 15)
    for name, fun, iters, compiled, target in (
            ("python", _python_objective(A, b), py_iters, False, 0.10),
            ("compiled", _compiled_objective(A, b), c_iters, True, 0.20)):
        off, on, ratio, touch = _measure(fun, iters, rounds, compiled)
        rows.append((name, iters, off * 1e6, on * 1e6, ratio - 1.0,
                     touch * 1e6, target))
    head = (f"{'loop':<9} {'iters':>7} {'no record':>10} {'record':>10} "
            f"{'overhead':>9} {'target':>7} {'fresh mem':>10}")
    lines = [f"Adam, {N_PARAMS} parameters, {N_POINTS} points; record=True "
             f"(every iteration) vs no record; medians of {rounds} "
             f"interleaved rounds, CPU us per iteration of a whole minimize "
             f"call ('fresh mem': first touch of a new buffer of the "
             f"history's size, per iteration, for reference)", head]
    for name, iters, off, on, over, touch, target in rows:
        ok = "ok" if over <= target else "OVER"
        lines.append(f"{name:<9} {iters:>7} {off:>10.3f} {on:>10.3f} "
                     f"{over:>8.1%} {target:>6.0%} {touch:>10.3f}  {ok}")
    table = "\n".join(lines)
    print(table)
    return table


if __name__ == "__main__":
    run()
