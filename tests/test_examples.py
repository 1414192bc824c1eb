"""The examples that reproduce the paper (examples/*.py, examples/*.ipynb).

Every example script runs in its quick mode as a subprocess, exactly as a user
would run it (``python examples/X.py --quick --out DIR``): it must exit with
status 0 (its claim holds) and write its figure. The hand-written NumPy
gradients the examples train with are checked against finite differences,
and the shared training loop against a plain-NumPy Adam loop, so that a
wrong gradient cannot hide behind a claim that happens to hold.
"""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reference import adam as ref_adam

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py")
                 if not p.name.startswith("_"))
sys.path.insert(0, str(EXAMPLES))


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["MPLBACKEND"] = "Agg"
    # one BLAS thread: on a busy 2-core machine threaded BLAS is ~20x slower
    # for these small matrices (threads spin against each other)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    return env


def test_examples_found():
    assert {"fig1_logreg_mnist.py", "fig1_sparse_bow.py", "fig2_mlp_mnist.py",
            "fig4_bias_correction.py", "adamax_averaging.py",
            "batched_image_stack.py", "curve_fit_1e6.py"} <= set(SCRIPTS)


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_example_quick_mode(script, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), "--quick", "--out",
         str(tmp_path)], cwd=ROOT, env=_env(), capture_output=True,
        text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "all claims hold" in proc.stdout, out[-4000:]
    assert "FAILS" not in proc.stdout
    figure = tmp_path / (Path(script).stem + ".png")
    assert figure.is_file() and figure.stat().st_size > 5000, out[-2000:]
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- the NumPy gradients the examples train with ------------------------------
def _fd_grad(f, theta, h=1e-6):
    g = np.empty_like(theta)
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = h
        g[i] = (f(theta + e) - f(theta - e)) / (2 * h)
    return g


@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
def test_mlp_gradient_matches_finite_differences(output):
    from _common import MLP, one_hot
    rng = np.random.default_rng(0)
    net = MLP((5, 4, 3, 6), output=output)
    theta = net.init(1) + 0.1 * rng.standard_normal(net.layout.flat.size)
    X = rng.random((7, 5))
    Y = (one_hot(rng.integers(0, 6, 7), 6) if output == "softmax"
         else rng.random((7, 6)))
    g = net.grad(theta, X, Y)
    num = _fd_grad(lambda t: net.loss(t, X, Y), theta)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)


def test_mlp_dropout_gradient_is_that_of_the_masked_network():
    # with a fixed mask, dropout is a fixed linear map: same rng -> the
    # gradient equals finite differences of the same masked loss
    from _common import MLP, one_hot
    rng = np.random.default_rng(1)
    net = MLP((6, 5, 4), dropout=0.5)
    theta = net.init(2)
    X, Y = rng.random((8, 6)), one_hot(rng.integers(0, 4, 8), 4)

    def masked_loss(t):
        p = net.layout.like(t)
        keep = np.random.default_rng(7).random((8, 5)) >= 0.5
        h = np.maximum(X @ p["W0"] + p["b0"], 0) * keep / 0.5
        return net._out_loss(h @ p["W1"] + p["b1"], Y)[0]

    g = net.grad(theta, X, Y, np.random.default_rng(7))
    np.testing.assert_allclose(g, _fd_grad(masked_loss, theta), rtol=1e-6,
                               atol=1e-8)
    assert not np.allclose(g, net.grad(theta, X, Y))   # dropout did act


def test_logreg_mnist_gradient():
    import fig1_logreg_mnist as ex
    rng = np.random.default_rng(3)
    X, y = rng.random((20, 6)), rng.integers(0, 10, 20)
    theta0, grad, full_loss = ex.problem(X, y, l2=0.1)
    theta = theta0 + 0.3 * rng.standard_normal(theta0.size)
    g = grad(theta, np.arange(20), rng)
    np.testing.assert_allclose(g, _fd_grad(full_loss, theta), rtol=1e-6,
                               atol=1e-9)


def test_sparse_bow_gradient_and_corpus():
    import scipy.sparse as sp
    import fig1_sparse_bow as ex
    X, y = ex.zipf_corpus(300, vocab=50, mean_len=20, stopwords=5, seed=1)
    assert sp.isspmatrix_csr(X) and X.shape == (300, 50)
    np.testing.assert_array_equal(X.sum(axis=1).A1 > 0, True)
    df = np.bincount(X.indices, minlength=50)
    assert df[0] > df[10] > df[-1]        # Zipf: frequent words first
    assert 0.3 < y.mean() < 0.7
    theta0, grad, full_loss = ex.problem(X, y, l2=0.01, dropout=0.0)
    rng = np.random.default_rng(4)
    theta = theta0 + 0.1 * rng.standard_normal(theta0.size)
    g = grad(theta, np.arange(300), rng)
    np.testing.assert_allclose(g, _fd_grad(full_loss, theta), rtol=1e-5,
                               atol=1e-9)
    # dropout noise is unbiased: the mean of many noisy gradients
    _, noisy, _ = ex.problem(X, y, l2=0.01, dropout=0.5)
    zero = np.zeros_like(theta)          # at 0 the gradient is linear in X
    mean = np.mean([noisy(zero, np.arange(300), rng) for _ in range(400)],
                   axis=0)
    np.testing.assert_allclose(mean, grad(zero, np.arange(300), rng),
                               atol=0.01)


def test_train_is_the_plain_adam_loop():
    # the shared loop with opt.init/opt.step == a hand-written NumPy loop
    from _common import train, make_optimizer
    rng = np.random.default_rng(5)
    A, b = rng.standard_normal((64, 3)), rng.standard_normal(64)

    def grad(theta, idx, rng):
        return A[idx].T @ (A[idx] @ theta - b[idx]) / len(idx)

    def loss(theta):
        return 0.5 * float(np.mean((A @ theta - b) ** 2))

    h = train(make_optimizer("adam", 0.05), np.zeros(3), grad, loss, 64, 16,
              epochs=3, seed=9)
    order_rng = np.random.default_rng(9)   # train's shuffling, by hand
    batches = [order[16 * k:16 * (k + 1)] for order in
               (order_rng.permutation(64) for _ in range(3)) for k in range(4)]
    theta, _ = ref_adam(np.zeros(3), lambda th, t: grad(th, batches[t - 1],
                                                        None), 12, lr=0.05)
    np.testing.assert_allclose(h.theta, theta, rtol=1e-12, atol=1e-14)
    assert h.info["steps"] == 12 and len(h.loss) == 4 and not h.diverged


def test_train_records_divergence():
    from _common import train, make_optimizer

    def grad(theta, idx, rng):           # pushes theta up until it overflows
        return -np.exp(np.abs(theta)) * 1e200

    h = train(make_optimizer("sgd_nesterov", 10.0), np.ones(2), grad,
              lambda t: float(np.sum(t)), 10, 5, epochs=4)
    assert h.diverged and np.isinf(h.final)
    assert len(h.epoch) == len(h.loss) and h.epoch[-1] >= 4


@pytest.mark.parametrize("diverge", [False, True])
def test_fig4_marks_diverged_runs(diverge):
    # an "x" at the initial loss where a run diverged, named in the legend
    # only then; the panels' lines stop there
    pytest.importorskip("matplotlib")
    import itertools
    import fig4_bias_correction as ex
    from _common import History, pyplot
    lrs, initial = [1e-3, 1e-2, 1e-1], 140.0
    runs = {}
    for b1, b2, bc, lr in itertools.product(ex.BETA1, ex.BETA2,
                                            (True, False), lrs):
        loss = [initial, 40.0, 30.0]
        bad = diverge and not bc and b2 == 0.9999 and lr == 0.1
        if bad:
            loss[1:] = [np.inf, np.inf]
        runs[b1, b2, bc, lr] = History([0, 1, 2], loss, None, bad)
    plt = pyplot()
    fig = ex._draw(plt, runs, lrs, 1, 2, 100, initial, 50.0)
    try:
        texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
        assert any("diverged" in t for t in texts) == diverge
        assert "diverged" not in fig._suptitle.get_text()
        for ax in fig.axes:
            crosses = [ln for ln in ax.get_lines() if ln.get_marker() == "x"]
            last = ax is fig.axes[2] or ax is fig.axes[5]   # beta2 = 0.9999
            assert len(crosses) == (2 if diverge and last else 0)
            for ln in crosses:
                assert list(ln.get_xdata()) == [0.1]
                assert list(ln.get_ydata()) == [initial]
    finally:
        plt.close(fig)

def test_make_optimizer_schedules():
    from _common import make_optimizer
    opt = make_optimizer("adam", 0.4, decay=True)
    assert float(opt.learning_rate(4)) == pytest.approx(0.2)
    assert make_optimizer("adagrad_const", 0.3, decay=True).learning_rate \
        == 0.3
    sgd = make_optimizer("sgd_nesterov", 0.1)
    assert sgd.nesterov and sgd.momentum == 0.9


# -- the notebook ------------------------------------------------------------
# quickstart.ipynb is stored with its outputs (they show on GitHub and in the
# docs' links without running it). The test strips them, runs the notebook
# afresh and compares loosely: each code cell must give the same kinds of
# output (stream names and MIME types) as the stored ones, never the same
# numbers, figures or HTML, so that a change of a repr or a plot's style
# does not break it while a notebook saved without outputs, or stored from
# other code than its cells', does.
def _output_kinds(cell):
    kinds = set()
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            kinds.add(("stream", out.name))
        elif out.output_type == "error":
            kinds.add(("error", out.ename))
        else:
            kinds.update((out.output_type, mime) for mime in out.data)
    return kinds


def _read_quickstart():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    nbformat.validate(nb)
    return nb


def test_quickstart_notebook_is_stored_with_outputs():
    nb = _read_quickstart()
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code), \
        "run the notebook and save it with its outputs (examples/README.md)"
    kinds = set().union(*map(_output_kinds, code))
    assert not {k for k in kinds if k[0] == "error"}
    mimes = {k[1] for k in kinds}
    assert {"text/html", "image/png"} <= mimes
    images = sum(("image/png" in o.get("data", {})) for c in code
                 for o in c.outputs)
    assert images >= 2


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path, monkeypatch):
    nb = _read_quickstart()
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    stored = [_output_kinds(c) for c in nb.cells if c.cell_type == "code"]
    for cell in nb.cells:                 # strip: run from a clean state
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    for key, value in _env().items():   # the kernel inherits the environment
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MPLBACKEND")    # the kernel's inline backend
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    fresh = [_output_kinds(c) for c in nb.cells if c.cell_type == "code"]
    assert not [k for kinds in fresh for k in kinds if k[0] == "error"]
    assert fresh == stored, "the stored outputs are not those of its cells:" \
        " run the notebook again and save it (examples/README.md)"
