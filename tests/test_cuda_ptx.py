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
