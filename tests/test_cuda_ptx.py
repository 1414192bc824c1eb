"""The CUDA kernels compile for a real GPU: PTX for compute capability 9.0
(the H200), without a GPU.

Numba's simulator runs the kernels' Python source, so it cannot tell whether
Numba can compile that source for a device (types, device functions, the
per-array steps of :mod:`adamsci.kernels.cpu` turned into device functions).
``numba.cuda.compile_ptx`` does the whole compilation with NVRTC and NVVM
(the ``cuda-toolkit[nvrtc,nvvm]`` wheels of the ``test`` extra), no driver
needed; these tests skip where those are missing or under the simulator.
"""
import os

import numpy as np
import pytest

pytestmark = pytest.mark.ptx

CC = (9, 0)


@pytest.fixture(scope="module")
def compile_ptx():
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("the simulator does not compile")
    cuda = pytest.importorskip("numba.cuda")
    try:
        from numba.cuda.cudadrv import nvrtc
        nvrtc.get_supported_ccs()
    except Exception as exc:   # noqa: BLE001 - no NVRTC/NVVM: nothing to test
        pytest.skip(f"NVRTC/NVVM not installed ({type(exc).__name__})")
    import types
    import numba.cuda.dispatcher as dispatcher
    from adamsci.kernels import cuda as kc
    kc._load()
    # numba-cuda asks the current device for its compute capability when it
    # compiles a device function; without a GPU this answers CC
    real = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: types.SimpleNamespace(
        compute_capability=CC)

    def compile_(func, sig):
        ptx, _ = cuda.compile_ptx(func, sig, cc=CC)
        assert f".target sm_{CC[0]}{CC[1]}" in ptx
        return ptx
    yield compile_
    dispatcher.get_current_device = real


CONFIGS = [
    ("adam", {}), ("adam", {"amsgrad": True, "ema_decay": 0.9,
                            "weight_decay": 0.1,
                            "decoupled_weight_decay": True}),
    ("adamax", {"ema_decay": 0.9}), ("sgd", {"momentum": 0.9,
                                             "nesterov": True}),
    ("adagrad", {}), ("rmsprop", {"centered": True, "momentum": 0.5}),
    ("adadelta", {}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kw", CONFIGS,
                         ids=[f"{n}-{i}" for i, (n, _) in
                              enumerate(CONFIGS)])
def test_step_kernel_compiles_for_every_optimizer(compile_ptx, name, kw,
                                                  dtype):
    from numba import typeof, types
    from adamsci.kernels import cuda as kc
    from adamsci.optimizers import OPTIMIZERS
    opt = OPTIMIZERS[name](learning_rate=0.1, **kw)
    x = np.zeros(4, dtype)
    sig = (typeof(x), typeof(x), typeof(opt.init(x)), typeof(opt.hyper),
           types.float64, types.boolean, typeof(np.zeros(3, np.int64)))
    ptx = compile_ptx(kc._step, sig)
    # the per-array step was compiled in: its arithmetic is in the kernel
    want = "sqrt" if name not in ("sgd", "adamax") else "fma"
    assert want in ptx


def test_count_and_fill_kernels_compile(compile_ptx):
    from numba import typeof, types
    from adamsci.kernels import cuda as kc
    for dtype in (np.float32, np.float64):
        g = np.zeros(4, dtype)
        compile_ptx(kc._count_nonfinite, (typeof(g),
                                          typeof(np.zeros(3, np.int64))))
        compile_ptx(kc._fill, (typeof(g), types.float64))


@pytest.mark.parametrize("method", ["adam", "adamax"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", ["gaussian", "gaussian2d"])
def test_batch_kernel_compiles(compile_ptx, name, dtype, method):
    """fit_batch's CUDA kernel: the per-fit loop, the model's chi2 pass and
    the optimizer's per-array step, compiled for the GPU."""
    from numba import typeof
    from adamsci import _rules, models
    from adamsci.kernels import cuda_batch, fitloop
    model = models.BUILTIN[name]
    mod = cuda_batch.kernel_module(model, simulator=False)
    n, k = model.n_params, max(model.xdim, 1)
    F = dict(order="F")
    X = np.zeros((1, k, 8), dtype, **F)
    Y = np.zeros((3, 8), dtype, **F)
    P = np.zeros((3, n), dtype, **F)
    rule = (_rules.AdamHyper(0.3, 0.999, 1e-8, 0.0, False, False, True,
                             False, 0.0) if method == "adam" else
            _rules.AdaMaxHyper(0.3, 0.999, 1e-8, 0.0, False, 0.0))
    settings = fitloop.Settings(2, 0, 0.3, 0.0, 0.0, False, 0.5, 100, 1e-6,
                                False, 5)
    args = (X, Y, Y[:1], P, P[:1], P[:1], P[:1].astype(np.float64), rule,
            settings, P, np.zeros((3, n, n), dtype, **F), np.zeros(3),
            np.zeros(3, np.int64), np.zeros(3, np.int8))
    ptx = compile_ptx(mod.fit_cuda.py_func, tuple(typeof(a) for a in args))
    assert "ex2.approx" in ptx or "exp" in ptx or "fma" in ptx
