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
    assert ax.get_title() == "Convergence of adamsci.adam"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["adam, raw", "adam, moving average of 10 iterations"]
    assert ax.get_legend().get_frame().get_alpha() >= 0.8


def test_convergence_window_in_iterations_and_titles_compose():
    h = _run(record=4).history
    ax = plot.convergence(h, window=10, label="run 1")
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    # 10 records, one every 4 iterations
    assert labels == ["run 1, raw", "run 1, moving average of 40 iterations"]
    # a second run on the same Axes keeps the title; both are in the legend
    ax.set_title("two runs")
    plot.convergence(_run(learning_rate=0.1).history, ax=ax, window=1,
                     label="run 2")
    assert ax.get_title() == "two runs"
    assert [t.get_text() for t in ax.get_legend().get_texts()][-1] == "run 2"
    assert plot.convergence(h, title=False).get_title() == ""
    assert plot.convergence(h, title="mine").get_title() == "mine"
    with pytest.raises(ValueError, match="window"):
        plot.convergence(h, window=0)


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
    assert ax.get_xlabel() == "epoch (passes over the data)"
    assert ax.get_ylabel() == "objective function value (on the minibatch)"
    assert ax.get_yscale() == "linear"          # f < 0 at the end
    with pytest.raises(ValueError, match="epoch"):
        plot.convergence(_run().history, x="epoch")


def test_trajectories_one_line_per_parameter_and_average():
    h = _run(ema_decay=0.9).history
    ax = plot.trajectories(h, params=["c", "a"])
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == [
        "c", "c, temporal average", "a", "a, temporal average"]
    np.testing.assert_array_equal(lines[0].get_ydata(),
                                  h.x.sel(param="c").values)
    np.testing.assert_array_equal(lines[3].get_ydata(),
                                  h.x_avg.sel(param="a").values)
    assert lines[1].get_linestyle() == "--"
    assert lines[0].get_color() == lines[1].get_color()
    assert ax.get_xlabel() == "iteration"
    assert ax.get_ylabel() == "parameter value"
    assert ax.get_title() == "Parameters of adamsci.adam"
    # the legend names the run's parameters, and says once what dashed is
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [
        "c", "a", "temporal average (dashed)"]
    assert legend.get_lines()[-1].get_linestyle() == "--"
    with pytest.raises(ValueError, match="not recorded"):
        plot.trajectories(h, params=["zz"])
    ax = plot.trajectories(h, average=False)
    assert len(ax.get_lines()) == 3
    assert [t.get_text() for t in ax.get_legend().get_texts()] == \
        ["a", "b", "c"]
    assert plot.trajectories(h, params="b").get_ylabel() == "b"


def test_trajectories_long_legend_goes_outside_the_axes():
    names = [f"p{i}" for i in range(12)]
    res = so.minimize(lambda x: (float(x @ x), 2 * x), np.ones(12),
                      jac=True, method=adamsci.adam,
                      options={"maxiter": 20, "record": True,
                               "param_names": names})
    ax = plot.trajectories(res.history)
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == names
    ax.figure.canvas.draw()
    box = legend.get_window_extent()
    assert box.x0 > ax.get_window_extent().x1        # right of the axes


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
    # log-spaced levels on a log colour bar, labelled
    np.testing.assert_allclose(np.diff(np.log(cs[0].levels)),
                               np.log(zmax / zmin) / 24)
    assert isinstance(cs[0].norm, matplotlib.colors.LogNorm)
    cbar = cs[0].colorbar
    assert cbar is not None and cbar.ax in fig.axes and len(fig.axes) == 2
    assert cbar.ax.get_ylabel() == "objective function value"
    assert ax.get_title() == ("Path of adamsci.adam on f\n"
                              "(b at the final values)")
    path, start, end = ax.get_lines()
    np.testing.assert_array_equal(path.get_xdata(), h.x.sel(param="a"))
    np.testing.assert_array_equal(path.get_ydata(), h.x.sel(param="c"))
    assert (start.get_xdata()[0], start.get_ydata()[0]) == (0.0, 0.0)
    assert end.get_xdata()[0] == h.x.sel(param="a").values[-1]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("a", "c")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "path", "start", "end"]
    # the legend covers none of the path's points (nor the end star)
    fig.canvas.draw()
    box = ax.get_legend().get_window_extent()
    pts = ax.transData.transform(np.column_stack([path.get_xdata(),
                                                  path.get_ydata()]))
    inside = ((pts[:, 0] > box.x0) & (pts[:, 0] < box.x1) &
              (pts[:, 1] > box.y0) & (pts[:, 1] < box.y1))
    assert not inside.any()
    star = end.get_window_extent(fig.canvas.get_renderer())
    assert not box.overlaps(star)
    # the mesh covers the path
    xs = np.array([c[0] for c in calls])
    assert xs.min() < path.get_xdata().min() and \
        xs.max() > path.get_xdata().max()
    _assert_inside(ax, end)


def _assert_inside(ax, line, room=0.03):
    """The line's points lie inside the axes, clear of the edges."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    u = (np.asarray(line.get_xdata()) - x0) / (x1 - x0)
    v = (np.asarray(line.get_ydata()) - y0) / (y1 - y0)
    assert np.all((u > room) & (u < 1 - room) & (v > room) & (v < 1 - room))


def test_path2d_thins_markers_of_long_runs_draws_the_whole_line():
    h = _run(maxiter=1000, learning_rate=0.002).history
    n = h.sizes["iteration"]
    assert n == 1001
    for most in (150, 37):
        ax = plot.path2d(h, max_markers=most)
        path = ax.get_lines()[0]
        assert len(path.get_xdata()) == n             # the line: all points
        marks = np.asarray(path.get_markevery())
        assert 0.9 * most <= marks.size <= most
        assert marks[0] == 0 and marks[-1] == n - 1
        gaps = np.diff(marks)
        assert gaps.min() >= 1 and gaps.max() - gaps.min() <= 1   # even
        plt.close("all")
    short = _run(maxiter=40).history
    marks = plot.path2d(short).get_lines()[0].get_markevery()
    assert list(marks) == list(range(41))
    assert len(plot.path2d(h, max_markers=None).get_lines()[0]
               .get_markevery()) == n


def test_path2d_known_minimum_colorbar_off_and_errors():
    h = _run().history
    calls = []

    def f(x):
        calls.append(x.copy())
        return quad(x)
    fig, ax = plt.subplots()
    plot.path2d(h, fun=f, params=("a", "c"), ax=ax, grid=10,
                minimum=(3.0, 0.5), colorbar=False, title=False)
    assert len(fig.axes) == 1 and ax.get_title() == ""
    mini = ax.get_lines()[3]
    assert (mini.get_xdata()[0], mini.get_ydata()[0]) == (3.0, 0.5)
    assert [t.get_text() for t in ax.get_legend().get_texts()][-1] == \
        "minimum (3, 0.5)"
    # the mesh reaches out to the minimum (the path stops short of a=3)
    assert h.x.sel(param="a").max() < 1.5
    assert max(c[0] for c in calls) > 3.0
    _assert_inside(ax, mini)
    for kw, match in [(dict(minimum=(1.0,)), "minimum"),
                      (dict(minimum=(np.nan, 1.0)), "minimum"),
                      (dict(minimum="ab"), "minimum"),
                      (dict(grid=1), "grid"),
                      (dict(grid=2.5), "grid"),
                      (dict(max_markers=1), "max_markers"),
                      (dict(margin=-0.1), "margin"),
                      (dict(params=("a",)), "params")]:
        with pytest.raises(ValueError, match=match):
            plot.path2d(h, **kw)


def test_path2d_without_function_and_errors():
    h = _run(record_params=["b", "c"]).history
    ax = plot.path2d(h)
    assert ax.get_xlabel() == "b" and not ax.collections
    assert ax.get_title() == "Path of adamsci.adam"
    _assert_inside(ax, ax.get_lines()[2])               # the end star
    with pytest.raises(ValueError, match="two recorded"):
        plot.path2d(_run(record_params=["a"]).history)
    with pytest.raises(ValueError, match="record_x"):
        plot.path2d(_run(record_x=False).history)
