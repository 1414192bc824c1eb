"""Kernel-level guarantees: serial == parallel bitwise, thread safety, no
recompilation, the scalar rules run uncompiled, dispatch thresholds."""
import inspect
import threading

import numpy as np
import pytest

import adamsci
from adamsci import _rules
from adamsci.kernels import cpu
from adamsci.optimizers import OPTIMIZERS
import reference

CONFIGS = {
    "adam": {"amsgrad": True, "ema_decay": 0.9, "weight_decay": 0.01},
    "adamax": {"ema_decay": 0.9},
    "sgd": {"learning_rate": 0.01, "momentum": 0.9, "nesterov": True},
    "adagrad": {"lr_decay": 0.1},
    "rmsprop": {"centered": True, "momentum": 0.5},
    "adadelta": {},
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_serial_and_parallel_kernels_agree_bitwise(name):
    rng = np.random.default_rng(0)
    n = 10_007
    serial = OPTIMIZERS[name](parallel=False, **CONFIGS[name])
    par = OPTIMIZERS[name](parallel=True, **CONFIGS[name])
    x1 = rng.standard_normal(n)
    x2 = x1.copy()
    s1, s2 = serial.init(x1), par.init(x2)
    for _ in range(20):
        g = rng.standard_normal(n)
        serial.step(x1, g, s1)
        par.step(x2, g, s2)
    assert x1.tobytes() == x2.tobytes()
    for a, b in zip(s1, s2):
        assert a.tobytes() == b.tobytes()


def test_parallel_kernel_is_used_above_threshold(monkeypatch):
    opt = adamsci.Adam()
    monkeypatch.setattr(adamsci.optimizers, "PARALLEL_THRESHOLD", 100)
    assert opt._parallelism(1000) == (1, cpu.num_threads())
    assert opt._parallelism(99) == (0, 1)


def test_worker_threads_use_serial_kernel_and_match(monkeypatch):
    """Four threads stepping independent problems at once give the serial
    results (and never enter a parallel region off the main thread)."""
    monkeypatch.setattr(adamsci.optimizers, "PARALLEL_THRESHOLD", 1)
    rng = np.random.default_rng(1)
    n, steps = 5000, 30
    starts = [rng.standard_normal(n) for _ in range(4)]
    grads = [rng.standard_normal((steps, n)) for _ in range(4)]
    opt = adamsci.Adam(learning_rate=0.01)
    results, picked = [None] * 4, [None] * 4

    def work(i):
        x = starts[i].copy()
        s = opt.init(x)
        picked[i] = opt._parallelism(n)
        for g in grads[i]:
            opt.step(x, g, s)
        results[i] = x

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(k == (0, 1) for k in picked)
    for i in range(4):
        want, _ = reference.adam(starts[i], grads[i], steps, lr=0.01)
        assert reference.max_rel_err(results[i], want) <= 1e-12
        x = starts[i].copy()
        s = adamsci.Adam(learning_rate=0.01, parallel=False).init(x)
        for g in grads[i]:
            adamsci.Adam(learning_rate=0.01, parallel=False).step(x, g, s)
        assert x.tobytes() == results[i].tobytes()


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_no_recompilation(name):
    """The kernel's specialisations for an optimizer (one per dtype) stop
    growing after the first calls, whatever the flags and whether the
    learning rate is a float or a schedule."""
    rng = np.random.default_rng(2)
    hyper = type(OPTIMIZERS[name](**{"learning_rate": 0.1, **CONFIGS[name]})
                 .hyper)

    def signatures():
        return [s for s in cpu.step.signatures
                if getattr(s[3], "instance_class", None) is hyper]
    for dtype in (np.float64, np.float32):
        x = rng.standard_normal(8).astype(dtype)
        opt = OPTIMIZERS[name](**CONFIGS[name])
        opt.step(x, np.ones(8, dtype), opt.init(x))
    before = len(signatures())
    variants = [CONFIGS[name], {"learning_rate": 0.5}, {"maximize": True},
                {"learning_rate": adamsci.schedules.inverse_sqrt(0.1)}]
    for kw in variants:
        for dtype in (np.float64, np.float32):
            x = rng.standard_normal((3, 5)).astype(dtype)
            opt = OPTIMIZERS[name](**kw) if name != "sgd" else OPTIMIZERS[
                name](**{"learning_rate": 0.1, **kw})
            s = opt.init(x)
            for _ in range(2):
                opt.step(x, np.ones_like(x), s)
    assert len(signatures()) == before <= 2


def test_rules_run_as_plain_python():
    """The scalar rules are ordinary Python: one Adam step by hand."""
    step_size, inv = _rules.adam_scalars(adamsci.Adam().hyper, 1, 0.1,
                                         float)[:2]
    p, m, v, _ = _rules.adam(1.0, 2.0, 0.0, 0.0, 0.0, step_size, inv, 0.9,
                             0.1, 0.999, 0.001, 0.0, 0.0, 1.0, False, False,
                             False)
    # first Adam step: mhat = g, vhat = g^2 -> p - lr * g/|g|
    assert p == pytest.approx(0.9, rel=1e-15)
    assert (m, v) == pytest.approx((0.2, 0.004), rel=1e-15)
    assert _rules.is_bad(float("nan")) and _rules.is_bad(float("-inf"))
    assert not _rules.is_bad(1e308)


def test_rules_have_no_float_literals():
    """Constants are arguments so float32 stays float32 inside kernels (the
    per-step scalars are computed in float64 on purpose, then cast)."""
    import ast
    tree = ast.parse(inspect.getsource(_rules))
    for fn in tree.body:
        if isinstance(fn, ast.FunctionDef) and not fn.name.endswith(
                ("_scalars", "_coefficients")):
            for node in ast.walk(fn):
                if isinstance(node, ast.Constant) and isinstance(
                        node.value, float):
                    parent_ok = node.value == 0.0  # only in comparisons
                    assert parent_ok, (fn.name, node.value)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_per_step_scalars_are_cast_to_the_parameters_dtype(name):
    opt = OPTIMIZERS[name](**CONFIGS[name])
    scalars = getattr(_rules, f"{name}_scalars")
    for T in (np.float32, np.float64):
        values = scalars(opt.hyper, 7, 0.01, T)
        assert all(type(v) is T for v in values), name
    # in float64 they are the float64 formulas (Adam's bias corrections)
    if name == "adam":
        h = opt.hyper
        step_size, inv_sqrt_bc2 = scalars(h, 7, 0.01, np.float64)[:2]
        assert step_size == 0.01 / (1 - h.beta1 ** 7)
        assert inv_sqrt_bc2 == 1 / np.sqrt(1 - h.beta2 ** 7)


def test_count_nonfinite():
    g = np.zeros(1000)
    assert cpu.count_nonfinite(g) == 0
    g[[0, 10, 999]] = [np.nan, np.inf, -np.inf]
    assert cpu.count_nonfinite(g) == 3


@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 17, 1000])
def test_nonfinite_detected_anywhere(n):
    """The four-stream check sees a bad entry in every quarter and tail."""
    opt = adamsci.Adam()
    for pos in range(n):
        x = np.ones(n)
        g = np.ones(n)
        g[pos] = np.nan
        s = opt.init(x)
        with pytest.raises(FloatingPointError, match=f"1 of {n}"):
            opt.step(x, g, s)
        assert np.all(x == 1.0) and int(s.step[0]) == 0
        if n > 100:
            break
    assert cpu._any_bad(np.ones(n)) == 0
    for pos in range(n):
        g = np.zeros(n, np.float32)
        g[pos] = np.inf
        assert cpu._any_bad(g) == 1
