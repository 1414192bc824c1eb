"""Benchmark of the CUDA kernels (issue 5): correctness and Adam throughput.

Two tables, measured in one run on the current GPU:

1. **correctness** -- every CUDA twin (every flag of Adam, AdaMax, SGD,
   AdaGrad, RMSProp, AdaDelta) against its CPU twin, 20 steps over an n that
   is not a multiple of the block size, float64 and float32: the norm-wise
   relative error ``max|gpu - cpu| / max|cpu|`` of parameters and state
   (targets 1e-12 and 1e-5).
2. **throughput** of one Adam step for n = 1e6 and 1e8, float32 and float64,
   timed with CUDA events, interleaved round by round, median of the rounds:

   * ``copy``: a device-to-device copy moving the same bytes as an Adam step
     (Adam reads p, g, m, v and writes p, m, v: 7 passes over n elements;
     the copy reads and writes 3.5 n elements) -- the bandwidth reference;
   * ``adamsci kernel``: the ``step`` kernel launched by itself (no
     non-finite check), the pure kernel;
   * ``adamsci step``: ``Adam(nonfinite="ignore").step(p, g, state)``,
     Python dispatch included;
   * ``adamsci step+check``: the default ``Adam().step`` -- the extra
     non-finite count kernel (one more read of g) and the 8-byte
     device-to-host copy of the count that waits for the step;
   * ``torch fused``: ``torch.optim.Adam(fused=True)`` on the same GPU, when
     torch with CUDA is importable.

   GB/s counts Adam's 7 passes for every Adam variant (``8 n`` bytes really
   move with the check). Ratios: ``% copy`` (bandwidth efficiency; target >=
   85 % at n = 1e8 for the kernel) and ``x torch`` (torch's time / ours;
   target >= 1.0).

Run ``python -m adamsci.benchmarks.cuda`` (``--quick`` for a smoke run); the
whole real-GPU check is ``tools/gpu_check.sh``. Under the CUDA simulator the
quick path runs (timings are meaningless there and are printed as ``n/a``).
"""
import argparse
import gc
import statistics
import time

import numpy as np

from .. import optimizers
from ..kernels import cuda as kc

_PASSES = 7      # arrays an Adam step touches per element: 4 reads, 3 writes

#: (label, optimizer name, keyword arguments): every kernel and every flag
CORRECTNESS = [
    ("adam", "adam", {"learning_rate": 0.05}),
    ("amsgrad+ema", "adam", {"learning_rate": 0.05, "amsgrad": True,
                             "ema_decay": 0.9}),
    ("L2+maximize", "adam", {"weight_decay": 0.1, "maximize": True}),
    ("adamw", "adam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("no bias corr.", "adam", {"bias_correction": False}),
    ("ema+L2", "adamax", {"ema_decay": 0.9, "weight_decay": 0.01}),
    ("plain", "sgd", {"learning_rate": 0.01}),
    ("momentum+damp", "sgd", {"learning_rate": 0.01, "momentum": 0.9,
                              "dampening": 0.1, "weight_decay": 0.01}),
    ("nesterov+max.", "sgd", {"learning_rate": 0.01, "momentum": 0.9,
                              "nesterov": True, "maximize": True}),
    ("lr_decay+acc0", "adagrad", {"lr_decay": 0.01,
                                  "initial_accumulator_value": 0.1}),
    ("plain", "rmsprop", {}),
    ("centered+mom.", "rmsprop", {"centered": True, "momentum": 0.5}),
    ("L2+maximize", "adadelta", {"weight_decay": 0.01, "maximize": True}),
]


def _rel_err(a, b):
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    diff = float(np.max(np.abs(a.astype(np.float64) - b))) if b.size else 0.0
    return diff / scale if scale else diff


def _correctness(cu, n, steps):
    rows = []
    rng = np.random.default_rng(0)
    for label, name, kw in CORRECTNESS:
        errs = {}
        for dtype in (np.float64, np.float32):
            x0 = rng.standard_normal(n).astype(dtype)
            grads = rng.standard_normal((steps, n)).astype(dtype)
            host_opt, dev_opt = (optimizers.OPTIMIZERS[name](**kw)
                                 for _ in range(2))
            x = x0.copy()
            state = host_opt.init(x)
            dx = cu.to_device(x0)
            dstate = dev_opt.init(dx)
            dgrads = cu.to_device(grads)
            for k in range(steps):
                host_opt.step(x, grads[k], state)
                dev_opt.step(dx, dgrads[k], dstate)
            got = dstate.to_dict()
            err = _rel_err(dx.copy_to_host(), x)
            for field in state._fields[1:]:
                err = max(err, _rel_err(got[field], getattr(state, field)))
            if got["step"][0] != state.step[0]:
                err = float("inf")
            errs[np.dtype(dtype).name] = err
        ok = errs["float64"] <= 1e-12 and errs["float32"] <= 1e-5
        rows.append((dev_opt.name, label, errs["float64"],
                     errs["float32"], "ok" if ok else "FAIL"))
    return rows


class _Timer:
    """CUDA-event timing of ``fn`` repeated ``reps`` times (ms per call)."""

    def __init__(self, cu):
        self.cu = cu
        try:
            self.start = cu.event(timing=True)
            self.end = cu.event(timing=True)
        except TypeError:                      # the simulator's events
            self.start, self.end = cu.event(), cu.event()

    def __call__(self, fn, reps):
        fn()
        self.cu.synchronize()
        self.start.record()
        for _ in range(reps):
            fn()
        self.end.record()
        self.end.synchronize()
        return self.start.elapsed_time(self.end) / reps


def _fill(a, value):
    blocks, tpb = kc.launch_config(a.size)
    kc._launcher("fill", blocks, tpb)(a, float(value))


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None, "torch not installed"
    if not torch.cuda.is_available():
        return None, "torch has no CUDA"
    return torch, ""


def _throughput(cu, n, dtype, rounds, reps, torch):
    """Median ms per call of each variant, measured round-robin."""
    itemsize = np.dtype(dtype).itemsize
    arrays = [cu.device_array(n, dtype) for _ in range(4)]
    p, g, m, v = arrays
    for a, value in zip(arrays, (1.0, 0.5, 0.0, 0.0)):
        _fill(a, value)
    empty = cu.device_array(0, dtype)
    opt = optimizers.Adam()
    state = opt.State(cu.to_device(np.zeros(1, np.int64)), m, v, empty,
                      empty)
    scratch = kc.new_scratch()
    blocks, tpb = kc.launch_config(n)
    kernel = kc._launcher("step", blocks, tpb)
    copy_bytes = _PASSES * n * itemsize // 2
    src = cu.device_array(copy_bytes, np.uint8)
    dst = cu.device_array(copy_bytes, np.uint8)
    fast = optimizers.Adam(nonfinite="ignore")
    checked = optimizers.Adam()
    s_fast, s_checked = fast.init(p), checked.init(p)
    variants = {
        "copy": lambda: dst.copy_to_device(src),
        "adamsci kernel": lambda: kernel(p, g, state, opt.hyper, 1e-3,
                                         False, scratch),
        "adamsci step": lambda: fast.step(p, g, s_fast),
        "adamsci step+check": lambda: checked.step(p, g, s_checked),
    }
    if torch is not None:
        tdtype = torch.float32 if itemsize == 4 else torch.float64
        tp = torch.ones(n, dtype=tdtype, device="cuda", requires_grad=True)
        tp.grad = torch.full((n,), 0.5, dtype=tdtype, device="cuda")
        topt = torch.optim.Adam([tp], lr=1e-3, fused=True)
        variants["torch fused"] = topt.step
    timer = _Timer(cu)
    times = {k: [] for k in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            times[name].append(timer(fn, reps))
    out = {k: statistics.median(t) for k, t in times.items()}
    del variants, p, g, m, v, arrays, src, dst
    gc.collect()
    if torch is not None:
        torch.cuda.empty_cache()
    return out, copy_bytes


def _fmt_err(e):
    return f"{e:9.1e}"


def _fmt_n(n):
    exp = len(str(n)) - 1
    return f"1e{exp}" if n >= 10 ** 5 and n == 10 ** exp else str(n)


def run(quick=False, sizes=None, threads_per_block=None):
    """Run both tables on the current GPU; print and return the report.

    Parameters
    ----------
    quick : bool
        A smoke run: small sizes, one round, few repetitions.
    sizes : sequence of int, optional
        Override the throughput sizes (default ``(10**6, 10**8)``, quick
        ``(10**5,)``; under the simulator use a few dozen at most).
    threads_per_block : int, optional
        Launch geometry for this run (see
        :func:`adamsci.kernels.cuda.configure`).
    """
    cu = kc.require()
    old = kc.configure(threads_per_block=threads_per_block)
    try:
        return _run(cu, quick, sizes)
    finally:
        kc.configure(**old)


def _run(cu, quick, sizes):
    sim = kc._SIMULATOR
    if sizes is None:
        sizes = (10 ** 5,) if quick else (10 ** 6, 10 ** 8)
    dev = cu.get_current_device()
    name = getattr(dev, "name", "simulator")
    if isinstance(name, bytes):
        name = name.decode()
    lines = [f"adamsci CUDA benchmark on {name}"
             + (" (simulator: timings are meaningless)" if sim else ""),
             f"launch: {kc.launch_config(max(sizes))[1]} threads per block"]

    n_check = (7 if sim else 1000) if quick else 100_003
    steps = (2 if sim else 3) if quick else 20
    t0 = time.perf_counter()
    rows = _correctness(cu, n_check, steps)
    lines += ["", f"correctness: CUDA twin vs CPU twin, n={n_check}, "
              f"{steps} steps, max rel err ({time.perf_counter() - t0:.1f} s)",
              f"{'kernel':<14} {'flags':<15} {'float64':>9} {'float32':>9}",
              "-" * 52]
    for kernel, label, e64, e32, verdict in rows:
        lines.append(f"{kernel:<14} {label:<15} {_fmt_err(e64)} "
                     f"{_fmt_err(e32)}  {verdict}")

    torch, why = _torch_cuda()
    rounds = 1 if quick else 5
    lines += ["", "throughput of one Adam step (median of "
              f"{rounds} rounds, CUDA events)"
              + ("" if torch else f"; torch fused: n/a ({why})"),
              f"{'n':>11} {'dtype':<8} {'variant':<19} {'us/step':>9} "
              f"{'GB/s':>7} {'% copy':>7} {'x torch':>8}",
              "-" * 74]
    targets = []
    for n in sizes:
        for dtype in (np.float32, np.float64):
            itemsize = np.dtype(dtype).itemsize
            adam_bytes = _PASSES * n * itemsize
            reps = ((1 if sim else 5) if quick
                    else int(np.clip(3e10 / adam_bytes, 10, 300)))
            ms, copy_bytes = _throughput(cu, n, dtype, rounds, reps, torch)
            gbs = {}
            for variant, t in ms.items():
                moved = 2 * copy_bytes if variant == "copy" else adam_bytes
                gbs[variant] = moved / (t * 1e-3) / 1e9 if t > 0 else None
            for variant, t in ms.items():
                bw = gbs[variant]
                pct = (100 * bw / gbs["copy"]
                       if bw and gbs["copy"] and variant != "copy" else None)
                vs = (ms["torch fused"] / t if "torch fused" in ms and t > 0
                      and ms["torch fused"] > 0 and variant.startswith(
                          "adamsci") else None)
                lines.append((
                    f"{_fmt_n(n):>11} {np.dtype(dtype).name:<8} {variant:<19} "
                    + (f"{1e3 * t:>9.1f} " if t > 0 else f"{'n/a':>9} ")
                    + (f"{bw:>7.0f} " if bw else f"{'n/a':>7} ")
                    + (f"{pct:>6.1f}% " if pct is not None else f"{'':>7} ")
                    + (f"{vs:>7.2f}x" if vs is not None else "")).rstrip())
                if n >= 10 ** 8 and variant == "adamsci kernel" and pct:
                    targets.append(("kernel >= 85% of copy", n, dtype,
                                    pct >= 85, f"{pct:.1f}%"))
                if variant == "adamsci step" and vs is not None:
                    targets.append(("step >= 1.0x torch fused", n, dtype,
                                    vs >= 1.0, f"{vs:.2f}x"))
    if targets:
        lines += ["", "targets:"]
        for what, n, dtype, ok, value in targets:
            lines.append(f"  {what:<26} n={_fmt_n(n):<6} "
                         f"{np.dtype(dtype).name:<8} {value:>7}  "
                         f"{'PASS' if ok else 'MISS'}")
    report = "\n".join(lines)
    print(report)
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m adamsci.benchmarks.cuda",
        description="CUDA kernels: correctness vs the CPU twins and Adam "
                    "throughput vs a device copy and torch's fused Adam.")
    parser.add_argument("--quick", action="store_true",
                        help="small sizes, one round (a smoke run)")
    parser.add_argument("--sizes", type=float, nargs="+",
                        help="throughput sizes (default 1e6 1e8)")
    parser.add_argument("--threads-per-block", type=int, default=None)
    args = parser.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes) if args.sizes else None
    run(quick=args.quick, sizes=sizes,
        threads_per_block=args.threads_per_block)


if __name__ == "__main__":
    main()
