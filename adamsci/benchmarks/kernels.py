"""Benchmark of the in-place CPU Adam step (issue #2, point 5).

Everything is measured side by side in one run, interleaved round by round,
and reported as ratios (absolute times on a shared machine drift by +-20 %):

* ``adamsci``: the whole ``opt.step(params, grads, state)`` call, non-finite
  check included (the default ``nonfinite="raise"``);
* ``ceiling``: a Numba kernel with Adam's memory traffic (reads p, g, m, v;
  writes p, m, v) and trivial arithmetic, dispatched like adamsci (serial
  below the parallel threshold, ``prange`` above) -- the bandwidth ceiling;
* ``checked ceiling``: the ceiling kernel preceded by adamsci's non-finite
  scan of g: the floor for any step that guarantees to write nothing when g
  holds a NaN, since it must read all of g before its first write (5 reads
  + 3 writes per element);
* ``numpy``: Adam in NumPy with preallocated ``out=`` buffers;
* ``torch``: ``torch.optim.Adam(fused=True)`` on the CPU, when importable
  (same number of threads as Numba).

Run with ``python -m adamsci bench`` (``--quick`` for a short smoke run).
"""
import os
import re
import subprocess
import sys
import time

import numpy as np

from .. import optimizers
from ..kernels import cpu

_PASSES = 7  # arrays touched per element by an Adam step: 4 reads + 3 writes


def _ceiling_driver(p, g, m, v, nchunks):
    n = p.size
    for c in cpu.prange(nchunks):
        lo, hi = cpu._chunk(n, nchunks, c)
        _ceiling_range(p[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi])


@cpu.njit(**cpu.JIT)
def _ceiling_range(p, g, m, v):
    for i in range(p.size):
        gi = g[i]
        m[i] = m[i] + gi
        v[i] = v[i] + gi
        p[i] = p[i] + gi


_ceiling, _ceiling_parallel = cpu._twins(_ceiling_driver)


def _check_driver(g, nchunks):
    # the non-finite scan of cpu.step, by itself
    bad = 0
    for c in cpu.prange(nchunks):
        lo, hi = cpu._chunk(g.size, nchunks, c)
        bad += cpu._any_bad(g[lo:hi])
    return bad


_check, _check_parallel = cpu._twins(_check_driver)


def _numpy_adam(p, g, m, v, t, buf, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    np.multiply(m, b1, out=m)
    np.multiply(g, 1 - b1, out=buf)
    np.add(m, buf, out=m)
    np.multiply(v, b2, out=v)
    np.multiply(g, g, out=buf)
    np.multiply(buf, 1 - b2, out=buf)
    np.add(v, buf, out=v)
    np.sqrt(v, out=buf)
    np.multiply(buf, 1 / np.sqrt(1 - b2 ** t), out=buf)
    np.add(buf, eps, out=buf)
    np.divide(m, buf, out=buf)
    np.multiply(buf, lr / (1 - b1 ** t), out=buf)
    np.subtract(p, buf, out=p)


def _time(fn, reps):
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def _interleaved(fns, reps, rounds):
    """Best-of-rounds seconds per call for each fn, measured round-robin."""
    best = {k: float("inf") for k in fns}
    for fn in fns.values():
        fn()  # warm-up (compilation, page faults)
    for _ in range(rounds):
        for k, fn in fns.items():
            best[k] = min(best[k], _time(fn, reps))
    return best


def _torch():
    try:
        import torch
    except Exception:  # noqa: BLE001 - any import failure means "absent"
        return None
    torch.set_num_threads(cpu.num_threads())
    return torch


def _case(n, dtype, torch, quick):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n).astype(dtype)
    g = (rng.standard_normal(n) * 1e-3).astype(dtype)
    opt = optimizers.Adam()
    state = opt.init(x)
    opt_ignore = optimizers.Adam(nonfinite="ignore")
    state_ignore = opt_ignore.init(x.copy())
    x_ignore = x.copy()
    parallel, nchunks = opt._parallelism(n)
    ceil = _ceiling_parallel if parallel else _ceiling
    check = _check_parallel if parallel else _check
    cp, cg, cm, cv = (x.copy(), g.copy(), np.zeros_like(x), np.zeros_like(x))
    npp, npm, npv, buf = x.copy(), np.zeros_like(x), np.zeros_like(x), \
        np.empty_like(x)
    fns = {
        "adamsci": lambda: opt.step(x, g, state),
        "no check": lambda: opt_ignore.step(x_ignore, g, state_ignore),
        "ceiling": lambda: ceil(cp, cg, cm, cv, nchunks),
        "checked ceiling": lambda: (check(cg, nchunks),
                                    ceil(cp, cg, cm, cv, nchunks)),
        "numpy": lambda: _numpy_adam(npp, g, npm, npv, 10, buf),
    }
    if torch is not None:
        tdt = torch.float32 if dtype == np.float32 else torch.float64
        tp = torch.nn.Parameter(torch.from_numpy(x.copy()).to(tdt))
        tp.grad = torch.from_numpy(g.copy()).to(tdt)
        topt = torch.optim.Adam([tp], lr=1e-3, fused=True)
        fns["torch fused"] = topt.step
    budget = 2e-2 if quick else 0.25  # seconds per measurement round
    per = max(n * 2e-9, 1e-6)
    reps = max(1, int(budget / per / 4))
    rounds = 3 if quick else 7
    return _interleaved(fns, reps, rounds)


def vectorised():
    """Packed SIMD instructions in a fresh (uncached) build of the Adam loop."""
    from numba import njit
    f = njit(cache=False, nogil=True, error_model="numpy")(cpu.step.py_func)
    out = {}
    for dtype in (np.float64, np.float32):
        a = np.zeros(8, dtype)
        opt = optimizers.Adam()
        f(a, a.copy(), opt.init(a), opt.hyper, 1e-3, True, 1)
        asm = f.inspect_asm(f.signatures[-1])
        out[np.dtype(dtype).name] = len(re.findall(
            r"\bv(?:sqrt|div|mul|fmadd\w*)p[sd]\s+[^\n]*[xyz]mm", asm))
    return out


def _subprocess_seconds(code):
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, env=env, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def startup():
    """(import adamsci seconds, first Adam step with a warm cache seconds)."""
    imp = _subprocess_seconds(
        "import time; t=time.perf_counter(); import adamsci; "
        "print(time.perf_counter()-t)")
    first = _subprocess_seconds(
        "import numpy as np, time, adamsci; x=np.ones(1000); "
        "o=adamsci.Adam(); s=o.init(x); t=time.perf_counter(); "
        "o.step(x, x, s); print(time.perf_counter()-t)")
    return imp, first


def threshold(quick=False):
    """Serial vs parallel kernel time (us) for sizes around the threshold."""
    rows = []
    for n in (10_000, 30_000, 100_000, 300_000, 1_000_000):
        x = np.ones(n)
        g = np.full(n, 1e-3)
        ser, par = optimizers.Adam(parallel=False), optimizers.Adam(
            parallel=True)
        s1, s2 = ser.init(x), par.init(x.copy())
        x2 = x.copy()
        reps = max(1, int(2e5 / n)) if quick else max(1, int(2e6 / n))
        t = _interleaved({"serial": lambda: ser.step(x, g, s1),
                          "parallel": lambda: par.step(x2, g, s2)},
                         reps, 3 if quick else 5)
        rows.append((n, t["serial"] * 1e6, t["parallel"] * 1e6))
    return rows


def run(quick=False, sizes=None):
    """Run the benchmark; print the report and return it as a string."""
    torch = _torch()
    sizes = sizes or ((1_000, 100_000, 1_000_000) if quick else
                      (1_000, 100_000, 10_000_000))
    lines = [f"In-place Adam step, {cpu.num_threads()} threads, parallel "
             f"threshold {optimizers.PARALLEL_THRESHOLD:,} params; "
             f"torch {'%s' % torch.__version__ if torch else 'not installed'}",
             "(ratios are side by side in one run: >1 means adamsci is faster;"
             " GB/s counts 4 reads + 3 writes per parameter)", ""]
    head = (f"{'n':>10} {'dtype':>7} | {'us/step':>9} {'ns/param':>8} "
            f"{'GB/s':>6} | {'vs ceiling':>10} {'vs numpy':>8} "
            f"{'vs torch':>8} | {'check cost':>10} {'vs checked':>10} | "
            f"{'no check:':>9} {'vs ceil':>7} {'vs torch':>8}")
    lines += [head, "-" * len(head)]
    for n in sizes:
        for dtype in (np.float32, np.float64):
            t = _case(n, dtype, torch, quick)
            a = t["adamsci"]
            gbs = _PASSES * np.dtype(dtype).itemsize * n / a / 1e9
            nc = t["no check"]
            vs_t = f"{t['torch fused'] / a:8.2f}" if torch else f"{'-':>8}"
            nc_t = f"{t['torch fused'] / nc:8.2f}" if torch else f"{'-':>8}"
            lines.append(
                f"{n:>10,} {np.dtype(dtype).name:>7} | {a * 1e6:9.2f} "
                f"{a / n * 1e9:8.3f} {gbs:6.1f} | {t['ceiling'] / a:10.3f} "
                f"{t['numpy'] / a:8.2f} {vs_t} | "
                f"{(a / nc - 1) * 100:+9.1f}% "
                f"{t['checked ceiling'] / a:10.3f} | {'':>9} "
                f"{t['ceiling'] / nc:7.3f} {nc_t}")
    lines.append("")
    lines.append("vs ceiling = ceiling time / adamsci time (1.00 = at the "
                 "bandwidth ceiling); check cost = time with the non-finite "
                 "check (the default, nonfinite='raise') / without - 1; "
                 "vs checked = checked ceiling time / adamsci time (the "
                 "ceiling for a step that reads all of g before writing); "
                 "'no check' = nonfinite='ignore'.")
    vec = vectorised()
    lines.append("vectorised serial loop (packed SIMD sqrt/div/mul/fma "
                 f"instructions): {vec}")
    imp, first = startup()
    lines.append(f"import adamsci: {imp * 1e3:.1f} ms; first Adam step in a "
                 f"new process, warm cache: {first * 1e3:.1f} ms")
    lines.append("")
    lines.append("serial vs parallel kernel (us per step; the threshold is "
                 "where parallel starts to win):")
    for n, s, p in threshold(quick):
        lines.append(f"{n:>10,}: serial {s:9.1f}  parallel {p:9.1f}  "
                     f"ratio {s / p:5.2f}")
    text = "\n".join(lines)
    print(text, flush=True)
    return text


if __name__ == "__main__":
    run(quick="--quick" in sys.argv)
