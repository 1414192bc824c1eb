"""CUDA twins (adamsci.kernels.cuda) against their CPU twins.

Run on Numba's simulator (``NUMBA_ENABLE_CUDASIM=1 python -m pytest -m cuda
tests/test_cuda.py``) or on a GPU (``tools/gpu_check.sh``). Sizes and grids
are tiny -- the simulator runs one Python thread per CUDA thread -- and the
launch geometry is set to 4 threads per block so that tails (n not a multiple
of the block, n smaller than a block, n = 0), several blocks and the
grid-stride loops all run.

Agreement is norm-wise relative (``max|cuda - cpu| / max|cpu|``): on a GPU the
compiler fuses multiply-adds, so single elements that pass through zero (a
momentum changing sign) can differ by more than 1e-12 of *their own* size.
"""
import contextlib
import inspect
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import adamsci
from adamsci import schedules
from adamsci.kernels import cpu
from adamsci.kernels import cuda as kc
from adamsci.optimizers import OPTIMIZERS
import reference

pytestmark = pytest.mark.cuda

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# name, optimizer, keyword arguments: every flag of every optimizer
CONFIGS = [
    ("adam", "adam", {"learning_rate": 0.05}),
    ("adam-amsgrad-ema", "adam", {"learning_rate": 0.05, "amsgrad": True,
                                  "ema_decay": 0.9}),
    ("adam-l2-maximize", "adam", {"learning_rate": 0.05, "weight_decay": 0.1,
                                  "maximize": True}),
    ("adamw", "adam", {"learning_rate": 0.05, "weight_decay": 0.1,
                       "decoupled_weight_decay": True}),
    ("adam-no-bias-correction", "adam", {"learning_rate": 0.05,
                                         "bias_correction": False}),
    ("adamax-ema-l2", "adamax", {"ema_decay": 0.9, "weight_decay": 0.01}),
    ("sgd", "sgd", {"learning_rate": 0.01}),
    ("sgd-momentum", "sgd", {"learning_rate": 0.01, "momentum": 0.9,
                             "dampening": 0.1, "weight_decay": 0.01}),
    ("sgd-nesterov-maximize", "sgd", {"learning_rate": 0.01, "momentum": 0.9,
                                      "nesterov": True, "maximize": True}),
    ("adagrad", "adagrad", {"lr_decay": 0.01, "initial_accumulator_value":
                            0.1, "weight_decay": 0.01}),
    ("rmsprop", "rmsprop", {}),
    ("rmsprop-centered-momentum", "rmsprop", {"centered": True,
                                              "momentum": 0.5,
                                              "weight_decay": 0.01}),
    ("rmsprop-momentum", "rmsprop", {"momentum": 0.9}),
    ("adadelta", "adadelta", {"weight_decay": 0.01, "maximize": True}),
]
IDS = [c[0] for c in CONFIGS]


@pytest.fixture(scope="module", autouse=True)
def _fast_simulator():
    # The simulator's threads hand the GIL over at every switch interval;
    # 0.1 ms instead of 5 ms makes its barriers ~5x faster.
    old = sys.getswitchinterval()
    if SIM:
        sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(old)


@pytest.fixture(scope="module")
def cu():
    return kc.require()


@contextlib.contextmanager
def geometry(threads_per_block=4, max_blocks=None):
    old = kc.configure(threads_per_block=threads_per_block,
                       max_blocks=max_blocks)
    try:
        yield
    finally:
        kc.configure(**old)


def run_twins(cu, name, kw, dtype, shape, steps, seed=0, nonfinite="raise"):
    """The same run on the host (CPU twin) and on the device (CUDA twin)."""
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal(shape).astype(dtype)
    grads = rng.standard_normal((steps,) + tuple(shape)).astype(dtype)
    host_opt = OPTIMIZERS[name](nonfinite=nonfinite, **kw)
    dev_opt = OPTIMIZERS[name](nonfinite=nonfinite, **kw)
    x = x0.copy()
    state = host_opt.init(x)
    dx = cu.to_device(x0)
    dstate = dev_opt.init(dx)
    dgrads = cu.to_device(grads)
    for k in range(steps):
        assert host_opt.step(x, grads[k], state) is True
        assert dev_opt.step(dx, dgrads[k], dstate) is True
    return x0, grads, (host_opt, x, state), (dev_opt, dx, dstate)


def assert_twins_agree(host, dev, rtol):
    host_opt, x, state = host
    dev_opt, dx, dstate = dev
    got = dstate.to_dict()
    assert got["step"].tolist() == state.step.tolist()
    p = dx.copy_to_host()
    assert p.dtype == x.dtype and p.shape == x.shape
    assert reference.max_rel_err(p, x) <= rtol, "params"
    for field in state._fields[1:]:
        want = getattr(state, field)
        assert got[field].shape == want.shape, field
        assert got[field].dtype == want.dtype, field
        assert reference.max_rel_err(got[field], want) <= rtol, field
    if getattr(host_opt, "ema_decay", None) is not None:
        assert reference.max_rel_err(dev_opt.averaged(dstate),
                                     host_opt.averaged(state)) <= rtol


# -- every kernel against its CPU twin ----------------------------------------
@pytest.mark.parametrize("label,name,kw", CONFIGS, ids=IDS)
def test_float64_twins_agree_over_100_steps(cu, label, name, kw):
    # one block of 4 threads over 13 elements: 4 grid-stride rounds, the last
    # one a tail of a single element
    with geometry(threads_per_block=4, max_blocks=1):
        x0, grads, host, dev = run_twins(cu, name, kw, np.float64, (13,),
                                         steps=100)
    assert_twins_agree(host, dev, rtol=1e-12)
    # and both against the independent plain-NumPy reference
    ref_kw = {{"learning_rate": "lr", "decoupled_weight_decay":
               "decoupled"}.get(k, k): v for k, v in kw.items()}
    theta, _ = reference.REFERENCES[name](x0, grads, 100, **ref_kw)
    assert reference.max_rel_err(dev[1].copy_to_host(), theta) <= 1e-10


@pytest.mark.parametrize("label,name,kw", CONFIGS, ids=IDS)
def test_float32_twins_agree_over_100_steps(cu, label, name, kw):
    # float32 arithmetic on both sides; a GPU's fused multiply-adds round
    # differently, so the bound is a few hundred float32 ulps. (No
    # non-finite check here: one launch per step; the float64 runs check.)
    with geometry(threads_per_block=4, max_blocks=1):
        _, _, host, dev = run_twins(cu, name, kw, np.float32, (13,),
                                    steps=100, seed=1, nonfinite="ignore")
    assert_twins_agree(host, dev, rtol=1e-5)


@pytest.mark.parametrize("n,max_blocks", [
    (0, None),      # empty: one block, the step still advances
    (3, None),      # smaller than a block
    (8, None),      # exactly two full blocks
    (13, None),     # four blocks, the last one with a single element
    (50, 3),        # 12 threads stride over 50 elements: grid-stride + tail
], ids=["n0", "n3-lt-block", "n8-full-blocks", "n13-tail", "n50-stride"])
@pytest.mark.parametrize("label", ["adam-amsgrad-ema", "sgd-momentum",
                                   "rmsprop-centered-momentum"])
def test_tails(cu, label, n, max_blocks):
    _, name, kw = CONFIGS[IDS.index(label)]
    with geometry(threads_per_block=4, max_blocks=max_blocks):
        _, _, host, dev = run_twins(cu, name, kw, np.float64, (n,), steps=3,
                                    seed=n)
    assert_twins_agree(host, dev, rtol=1e-12)
    assert int(dev[2].step.copy_to_host()[0]) == 3


def test_multidimensional_params(cu):
    with geometry(threads_per_block=4, max_blocks=2):
        _, _, host, dev = run_twins(cu, "adam", {"amsgrad": True},
                                    np.float64, (3, 5), steps=3)
    assert dev[1].shape == (3, 5) and dev[2].m.shape == (3, 5)
    assert_twins_agree(host, dev, rtol=1e-12)


def test_learning_rate_schedule_reads_the_device_step(cu):
    kw = {"learning_rate": schedules.cosine(0.1, decay_steps=8, alpha=0.1)}
    with geometry(threads_per_block=4, max_blocks=2):
        _, _, host, dev = run_twins(cu, "adam", kw, np.float64, (7,),
                                    steps=10)
    assert_twins_agree(host, dev, rtol=1e-12)
    kw = {"learning_rate": lambda t: 0.1 / t, "momentum": 0.9}
    with geometry(threads_per_block=4, max_blocks=2):
        _, _, host, dev = run_twins(cu, "sgd", kw, np.float64, (7,),
                                    steps=5)
    assert_twins_agree(host, dev, rtol=1e-12)


# -- the kernels themselves, launched directly --------------------------------
@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # the simulator's NaN
@pytest.mark.filterwarnings("ignore:Grid size")          # tiny grids on a GPU
def test_twin_kernel_launched_directly_matches_cpu_driver(cu):
    """The step kernel alone does what its CPU twin does: one launch, step
    advanced; with check, a count left by count_nonfinite makes it a
    no-op."""
    rng = np.random.default_rng(3)
    n = 11
    p, g = rng.standard_normal(n), rng.standard_normal(n)
    opt = adamsci.Adam(learning_rate=0.1, weight_decay=0.01,
                       decoupled_weight_decay=True, amsgrad=True)
    state = opt.init(p)
    dp, dg = cu.to_device(p), cu.to_device(g)
    dstate = opt.State(*(cu.to_device(a) for a in state))
    scratch = kc.new_scratch()
    blocks, tpb = kc.launch_config(n, threads_per_block=4, max_blocks=2)
    for _ in range(3):
        assert cpu.step(p, g, state, opt.hyper, opt._lr, True, 1) == 0
        kc.count_nonfinite[blocks, tpb](dg, scratch)
        kc.step[blocks, tpb](dp, dg, dstate, opt.hyper, opt._lr, True,
                             scratch)
    assert reference.max_rel_err(dp.copy_to_host(), p) <= 1e-12
    for want, got in zip(state, dstate):
        assert reference.max_rel_err(got.copy_to_host(), want) <= 1e-12
    assert scratch.copy_to_host().tolist() == [0, 0, 0]
    # two non-finite entries: counted across blocks, nothing touched
    g[[1, 9]] = [np.nan, -np.inf]
    dg = cu.to_device(g)
    devs = [dp, *dstate]
    before = [a.copy_to_host() for a in devs]
    assert cpu.step(p, g, state, opt.hyper, opt._lr, True, 1) == 2
    kc.count_nonfinite[blocks, tpb](dg, scratch)
    kc.step[blocks, tpb](dp, dg, dstate, opt.hyper, opt._lr, True, scratch)
    assert scratch.copy_to_host().tolist() == [0, 0, 2]
    for a, b in zip(before, devs):
        assert a.tobytes() == b.copy_to_host().tobytes()
    # check=False: the count is not consulted, the step is taken
    kc.step[blocks, tpb](dp, dg, dstate, opt.hyper, opt._lr, False, scratch)
    assert dstate.step.copy_to_host().tolist() == [4]
    assert np.isnan(dp.copy_to_host()[1])


def test_signatures_match_the_cpu_kernel():
    """Twins look alike: the CUDA kernels have the CPU kernels' names and
    parameters, but for ``scratch`` (a kernel cannot return a count)."""
    assert kc.TWINS == ("step", "count_nonfinite")
    assert kc.SIGNATURE_DIFFERENCES == {"nchunks": "scratch"}
    for name in kc.TWINS:
        want = [kc.SIGNATURE_DIFFERENCES.get(p, p) for p in
                inspect.signature(getattr(cpu, name).py_func).parameters]
        if name == "count_nonfinite":
            want.append("scratch")      # the counter's output array
        kernel = getattr(kc, name)
        assert kernel.py_func.__name__ == name
        assert list(inspect.signature(kernel.py_func).parameters) == want
    assert list(inspect.signature(cpu.step.py_func).parameters) == [
        "p", "g", "state", "h", "lr", "check", "nchunks"]


# -- the non-finite policy on the device --------------------------------------
def _snapshot(dx, dstate):
    return [dx.copy_to_host().tobytes()] + [
        a.tobytes() for a in dstate.to_dict().values()]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # the simulator's NaN
@pytest.mark.parametrize("nonfinite", ["raise", "skip"])
def test_nonfinite_gradients_leave_everything_unchanged(cu, nonfinite):
    rng = np.random.default_rng(4)
    n = 13
    grads = rng.standard_normal((4, n))
    bad = grads[1].copy()
    bad[[2, 7]] = [np.nan, np.inf]
    kw = {"amsgrad": True, "ema_decay": 0.9}
    host_opt = adamsci.Adam(nonfinite=nonfinite, **kw)
    dev_opt = adamsci.Adam(nonfinite=nonfinite, **kw)
    x = rng.standard_normal(n)
    dx = cu.to_device(x)
    state, dstate = host_opt.init(x), dev_opt.init(dx)
    with geometry(threads_per_block=4, max_blocks=3):
        for k in range(4):
            assert dev_opt.step(dx, cu.to_device(grads[k]), dstate)
            assert host_opt.step(x, grads[k], state)
            if k == 1:
                before = _snapshot(dx, dstate)
                dbad = cu.to_device(bad)
                if nonfinite == "raise":
                    with pytest.raises(FloatingPointError,
                                       match=f"2 of {n} gradient"):
                        dev_opt.step(dx, dbad, dstate)
                else:
                    assert dev_opt.step(dx, dbad, dstate) is False
                assert _snapshot(dx, dstate) == before
    assert int(dstate.step.copy_to_host()[0]) == 4
    assert_twins_agree((host_opt, x, state), (dev_opt, dx, dstate), 1e-12)


def test_every_entry_nonfinite_is_counted_across_blocks(cu):
    opt = adamsci.SGD(0.1, momentum=0.9)
    dx = cu.to_device(np.ones(50))
    dstate = opt.init(dx)
    with geometry(threads_per_block=4, max_blocks=3):
        with pytest.raises(FloatingPointError, match="50 of 50"):
            opt.step(dx, cu.to_device(np.full(50, np.nan)), dstate)
        assert opt.step(dx, cu.to_device(np.ones(50)), dstate)
    assert dx.copy_to_host().tolist() == [0.9] * 50
    assert int(dstate.step.copy_to_host()[0]) == 1


def test_nonfinite_ignore_takes_the_step(cu):
    opt = adamsci.Adam(nonfinite="ignore")
    dx = cu.to_device(np.ones(6))
    dstate = opt.init(dx)
    g = np.ones(6)
    g[4] = np.nan
    with geometry(threads_per_block=4, max_blocks=2):
        assert opt.step(dx, cu.to_device(g), dstate) is True
    x = dx.copy_to_host()
    assert np.isnan(x[4]) and np.isfinite(np.delete(x, 4)).all()
    assert int(dstate.step.copy_to_host()[0]) == 1


# -- dispatch, validation, state handling -------------------------------------
def test_host_and_device_arrays_mixed_raise_type_error(cu):
    opt = adamsci.Adam()
    x = np.ones(5)
    dx = cu.to_device(x)
    dstate = opt.init(dx)
    with pytest.raises(TypeError, match="host"):
        opt.step(dx, np.ones(5), dstate)
    with pytest.raises(TypeError, match="device"):
        opt.step(x, cu.to_device(np.ones(5)), opt.init(x))
    with pytest.raises(TypeError, match="to_device"):
        opt.step(dx, cu.to_device(np.ones(5)), opt.init(x))
    assert dx.copy_to_host().tolist() == [1.0] * 5
    assert int(dstate.step.copy_to_host()[0]) == 0


def test_bad_device_input_is_rejected_before_any_launch(cu):
    opt = adamsci.Adam()
    dx = cu.to_device(np.ones(6))
    dstate = opt.init(dx)
    with pytest.raises(TypeError, match="dtype"):
        opt.step(dx, cu.to_device(np.ones(6, np.float32)), dstate)
    with pytest.raises(ValueError, match="shape"):
        opt.step(dx, cu.to_device(np.ones(5)), dstate)
    with pytest.raises(TypeError, match="AdamState"):
        opt.step(dx, cu.to_device(np.ones(6)), adamsci.SGD(0.1).init(dx))
    with pytest.raises(ValueError, match="shape"):
        opt.step(cu.to_device(np.ones(7)), cu.to_device(np.ones(7)), dstate)
    strided = cu.to_device(np.ones((4, 6)))[:, ::2]
    with pytest.raises(ValueError, match="C-contiguous"):
        opt.step(strided, cu.to_device(np.ones((4, 3))),
                 opt.init(cu.to_device(np.ones((4, 3)))))
    with pytest.raises(TypeError, match="float32 or float64"):
        opt.init(cu.to_device(np.ones(3, np.int64)))
    assert dx.copy_to_host().tolist() == [1.0] * 6
    assert int(dstate.step.copy_to_host()[0]) == 0


def test_init_allocates_the_state_on_the_device(cu):
    dx = cu.to_device(np.ones((2, 3), np.float32))
    with geometry(threads_per_block=4, max_blocks=1):
        state = adamsci.AdaGrad(initial_accumulator_value=0.5).init(dx)
        adam_state = adamsci.Adam(ema_decay=0.9).init(dx)
    for arr in state:
        assert hasattr(arr, "copy_to_host")
    assert state.step.copy_to_host().tolist() == [0]
    assert state.step.dtype == np.int64
    got = state.sum.copy_to_host()
    assert got.dtype == np.float32 and got.shape == (2, 3)
    assert (got == np.float32(0.5)).all()
    assert adam_state.vmax.shape == (0,) and adam_state.avg.shape == (2, 3)
    assert (adam_state.m.copy_to_host() == 0).all()
    assert "AdamState(step=0" in repr(adam_state)


def test_state_round_trip_through_the_host(cu):
    """to_dict -> state_from_dict -> to_device resumes exactly."""
    rng = np.random.default_rng(5)
    grads = rng.standard_normal((6, 9))
    kw = {"learning_rate": 0.05, "amsgrad": True, "ema_decay": 0.9}
    host_opt, dev_opt = adamsci.Adam(**kw), adamsci.Adam(**kw)
    x = rng.standard_normal(9)
    dx = cu.to_device(x)
    state, dstate = host_opt.init(x), dev_opt.init(dx)
    with geometry(threads_per_block=4, max_blocks=2):
        for k in range(3):
            host_opt.step(x, grads[k], state)
            dev_opt.step(dx, cu.to_device(grads[k]), dstate)
        saved = dstate.to_dict()
        restored = kc.to_device(dev_opt.state_from_dict(saved))
        assert all(hasattr(a, "copy_to_host") for a in restored)
        assert kc.to_device(restored).m is restored.m     # already there
        for k in range(3, 6):
            host_opt.step(x, grads[k], state)
            dev_opt.step(dx, cu.to_device(grads[k]), restored)
    assert_twins_agree((host_opt, x, state), (dev_opt, dx, restored), 1e-12)
    assert saved["step"].tolist() == [3]     # the saved copy is independent


def test_launch_configuration():
    assert kc.launch_config(1000, threads_per_block=128, max_blocks=4) == \
        (4, 128)
    assert kc.launch_config(300, threads_per_block=128, max_blocks=4) == \
        (3, 128)
    assert kc.launch_config(0, threads_per_block=32, max_blocks=4) == (1, 32)
    with geometry(threads_per_block=16, max_blocks=5):
        assert kc.launch_config(33) == (3, 16)
        assert kc.launch_config(10 ** 6) == (5, 16)
    with pytest.raises(ValueError, match="threads_per_block"):
        kc.configure(threads_per_block=2048)
    with pytest.raises(TypeError, match="max_blocks"):
        kc.configure(max_blocks=2.5)
    with pytest.raises(ValueError, match="max_blocks"):
        kc.configure(max_blocks=0)


# -- import and availability --------------------------------------------------
def _python(*parts, env=None):
    code = "\n".join(textwrap.dedent(part) for part in parts)
    return subprocess.run([sys.executable, "-c", code],
                          capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=300)


_FAKE = """
class FakeDeviceArray:      # anything with the CUDA array interface
    __cuda_array_interface__ = {"shape": (3,), "typestr": "<f8",
                                "data": (0, False), "version": 3}
"""


def test_import_does_not_import_numba_cuda():
    out = _python("""
        import sys
        import numpy as np
        import adamsci, adamsci.optimizers, adamsci.kernels.cuda
        opt = adamsci.Adam()
        x = np.zeros(3)
        opt.step(x, np.ones(3), opt.init(x))     # the CPU path
        loaded = sorted(m for m in sys.modules if m == "numba.cuda" or
                        m.startswith(("numba.cuda.", "numba_cuda")))
        print("loaded:", loaded)
    """)
    assert out.returncode == 0, out.stderr
    assert "loaded: []" in out.stdout


def test_missing_numba_cuda_is_named():
    out = _python("""
        import sys
        sys.modules["numba_cuda"] = None            # as if not installed
        import adamsci
        from adamsci.kernels import cuda as kc
        """, _FAKE, """
        assert not kc.is_available()
        try:
            adamsci.Adam().init(FakeDeviceArray())
        except ImportError as e:
            print("ImportError:", e)
    """)
    assert out.returncode == 0, out.stderr
    assert "ImportError:" in out.stdout
    assert "numba-cuda" in out.stdout and "adamsci[cuda]" in out.stdout


def test_missing_gpu_is_named():
    env = {k: v for k, v in os.environ.items()
           if k != "NUMBA_ENABLE_CUDASIM"}
    out = _python("""
        import sys
        from numba import cuda
        if cuda.is_available():
            print("HAS_GPU")
            sys.exit(0)
        import adamsci
        from adamsci.kernels import cuda as kc
        """, _FAKE, """
        assert not kc.is_available()
        try:
            adamsci.Adam().init(FakeDeviceArray())
        except RuntimeError as e:
            print("RuntimeError:", e)
    """, env=env)
    assert out.returncode == 0, out.stderr
    if "HAS_GPU" in out.stdout:
        pytest.skip("this machine has a GPU")
    assert "RuntimeError:" in out.stdout
    assert "no usable CUDA GPU" in out.stdout
    assert "NUMBA_ENABLE_CUDASIM=1" in out.stdout


# -- real GPU only ------------------------------------------------------------
class CudaArrayInterface:
    """A foreign device array: only __cuda_array_interface__ (as CuPy's)."""

    def __init__(self, arr):
        self._arr = arr
        self.__cuda_array_interface__ = arr.__cuda_array_interface__


@pytest.mark.gpu
@pytest.mark.skipif(SIM, reason="needs a real GPU")
def test_objects_with_cuda_array_interface(cu):
    """Foreign device arrays are stepped in place, exactly like Numba's."""
    rng = np.random.default_rng(6)
    x0 = rng.standard_normal(100).astype(np.float32)
    grads = rng.standard_normal((3, 100)).astype(np.float32)
    host_opt, numba_opt, cai_opt = (adamsci.Adam(amsgrad=True)
                                    for _ in range(3))
    x = x0.copy()
    state = host_opt.init(x)
    d_numba, d_cai = cu.to_device(x0), cu.to_device(x0)
    s_numba = numba_opt.init(d_numba)
    s_cai = cai_opt.init(CudaArrayInterface(d_cai))
    with geometry(threads_per_block=32, max_blocks=2):
        for k in range(3):
            host_opt.step(x, grads[k], state)
            numba_opt.step(d_numba, cu.to_device(grads[k]), s_numba)
            assert cai_opt.step(CudaArrayInterface(d_cai),
                                CudaArrayInterface(cu.to_device(grads[k])),
                                s_cai)
    assert d_cai.copy_to_host().tobytes() == d_numba.copy_to_host().tobytes()
    assert_twins_agree((host_opt, x, state), (cai_opt, d_cai, s_cai), 1e-5)


@pytest.mark.skipif(not SIM, reason="simulator only")
def test_simulator_rejects_foreign_arrays_clearly(cu):
    dx = cu.to_device(np.ones(3))
    foreign = CudaArrayInterface.__new__(CudaArrayInterface)
    foreign.__cuda_array_interface__ = {"shape": (3,), "typestr": "<f8",
                                        "data": (0, False), "version": 3}
    with pytest.raises(TypeError, match="simulator"):
        adamsci.Adam().step(dx, foreign, adamsci.Adam().init(dx))


@pytest.mark.gpu
@pytest.mark.skipif(SIM, reason="needs a real GPU")
def test_torch_cuda_tensors(cu):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    x = torch.ones(1000, device="cuda", dtype=torch.float64)
    g = torch.full_like(x, 2.0)
    opt = adamsci.Adam(learning_rate=0.1)
    state = opt.init(x)
    assert opt.step(x, g, state)
    torch.cuda.synchronize()
    assert torch.allclose(x, torch.full_like(x, 0.9))


@pytest.mark.gpu
@pytest.mark.skipif(SIM, reason="the simulator does not compile")
def test_no_recompilation(cu):
    opt = adamsci.Adam(learning_rate=0.1, amsgrad=True)
    dx = cu.to_device(np.ones(64))
    dstate = opt.init(dx)
    g = cu.to_device(np.ones(64))
    opt.step(dx, g, dstate)
    counts = [len(kc.step.overloads), len(kc.count_nonfinite.overloads)]
    for lr in (0.5, 1, 2.0):       # an int learning rate is made a float
        other = adamsci.Adam(learning_rate=lr, ema_decay=0.5,
                             nonfinite="skip")
        other.step(dx, g, other.init(dx))
    assert [len(kc.step.overloads),
            len(kc.count_nonfinite.overloads)] == counts


# -- the benchmark's quick path -----------------------------------------------
def test_benchmark_quick_path_runs(cu):
    from adamsci.benchmarks import cuda as bench
    out = bench.run(quick=True, sizes=(16,), threads_per_block=4)
    assert "copy" in out and "adamsci" in out
    assert "max rel err" in out
    for name in OPTIMIZERS:
        assert name in out
