"""adamsci.plot, headless (Agg): what is drawn, with which data and labels."""
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import scipy.optimize as so

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import adamsci  # noqa: E402
from adamsci import plot  # noqa: E402


def quad(x):
    d = x - np.array([1.0, -2.0, 0.5])
    return float(d @ d) + 0.1, 2.0 * d


def _run(fun=quad, **options):
    options = {"learning_rate": 0.05, "maxiter": 200, "record": True,
               "gtol": 0.0, "param_names": ["a", "b", "c"], **options}
    return so.minimize(fun, np.zeros(3), jac=True, method=adamsci.adam,
                       options=options)


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _ema(y, window):
    """The smoothing from its definition: weights (1-a)^age, normalised."""
    a = 2.0 / (window + 1.0)
    out = []
    for i in range(len(y)):
        w = (1 - a) ** np.arange(i, -1, -1)
        out.append(np.sum(w * y[:i + 1]) / np.sum(w))
    return np.array(out)


def test_import_is_lazy():
    code = ("import sys, adamsci.plot; "
            "assert 'matplotlib' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True,
                   cwd=pathlib.Path(__file__).resolve().parents[1])


def test_convergence_draws_raw_and_smoothed_lines_on_log_scale():
    h = _run().history
    ax = plot.convergence(h, window=10)
    raw, sm = ax.get_lines()
    it = h.iteration.values
    np.testing.assert_array_equal(raw.get_xdata(), it)
    np.testing.assert_array_equal(raw.get_ydata(), h.fun.values)
    np.testing.assert_allclose(sm.get_ydata(), _ema(h.fun.values, 10),
                               rtol=1e-12)
    assert raw.get_alpha() < 1 and sm.get_linewidth() > raw.get_linewidth()
    assert ax.get_yscale() == "log"
    assert ax.get_xlabel() == "iteration"
    assert ax.get_ylabel() == "objective function value"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["adam (raw)", "adam (EMA over 10)"]


def test_convergence_against_epoch_and_linear_when_negative():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(50, 3))
    y = A @ np.array([1.0, 2.0, 3.0])

    def fg(x, a, b):
        r = a @ x - b
        return float(r @ r) / len(b) - 5.0, 2 * a.T @ r / len(b)
    obj = adamsci.MinibatchObjective(fg, (A, y), batch_size=10, seed=1)
    h = _run(obj, param_names=None).history
    ax = plot.convergence(h, x="epoch")
    xs = ax.get_lines()[0].get_xdata()
    np.testing.assert_allclose(xs, h.iteration.values / 5.0)
    assert ax.get_xlabel() == "epoch"
    assert ax.get_yscale() == "linear"          # f < 0 at the end
    with pytest.raises(ValueError, match="epoch"):
        plot.convergence(_run().history, x="epoch")


def test_trajectories_one_line_per_parameter_and_average():
    h = _run(ema_decay=0.9).history
    ax = plot.trajectories(h, params=["c", "a"])
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == ["c", "c (average)", "a",
                                                "a (average)"]
    np.testing.assert_array_equal(lines[0].get_ydata(),
                                  h.x.sel(param="c").values)
    np.testing.assert_array_equal(lines[3].get_ydata(),
                                  h.x_avg.sel(param="a").values)
    assert lines[1].get_linestyle() == "--"
    assert lines[0].get_color() == lines[1].get_color()
    assert ax.get_xlabel() == "iteration"
    with pytest.raises(ValueError, match="not recorded"):
        plot.trajectories(h, params=["zz"])
    assert len(plot.trajectories(h, average=False).get_lines()) == 3


def test_path2d_contours_the_function_around_the_path():
    h = _run().history
    calls = []

    def f(x):
        calls.append(x.copy())
        return quad(x)
    fig, ax0 = plt.subplots()
    ax = plot.path2d(h, fun=f, params=("a", "c"), ax=ax0, grid=20)
    assert ax is ax0
    assert len(calls) == 400
    # the other parameter sits at its final value
    assert all(c[1] == h.state_x.values[1] for c in calls)
    cs = [c for c in ax.collections if hasattr(c, "levels")]
    assert len(cs) == 1
    zmin = min(quad(c)[0] for c in calls)
    zmax = max(quad(c)[0] for c in calls)
    np.testing.assert_allclose(cs[0].levels[[0, -1]], [zmin, zmax])
    path, start, end = ax.get_lines()
    np.testing.assert_array_equal(path.get_xdata(), h.x.sel(param="a"))
    np.testing.assert_array_equal(path.get_ydata(), h.x.sel(param="c"))
    assert (start.get_xdata()[0], start.get_ydata()[0]) == (0.0, 0.0)
    assert end.get_xdata()[0] == h.x.sel(param="a").values[-1]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("a", "c")
    # the mesh covers the path
    xs = np.array([c[0] for c in calls])
    assert xs.min() < path.get_xdata().min() and \
        xs.max() > path.get_xdata().max()


def test_path2d_without_function_and_errors():
    h = _run(record_params=["b", "c"]).history
    ax = plot.path2d(h)
    assert ax.get_xlabel() == "b" and not ax.collections
    with pytest.raises(ValueError, match="two recorded"):
        plot.path2d(_run(record_params=["a"]).history)
    with pytest.raises(ValueError, match="record_x"):
        plot.path2d(_run(record_x=False).history)
