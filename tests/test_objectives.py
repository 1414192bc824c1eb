"""MinibatchObjective: batches, epochs, reproducibility, sparse data, full(),
and the shuffle state used to resume a run exactly."""
import numpy as np
import pytest
import scipy.sparse as sp

import adamsci
from adamsci import MinibatchObjective


def _indices(x, idx, *args):
    """An objective whose 'gradient' is the batch itself (for inspection)."""
    return float(idx.size), idx.astype(float)


def _draw(obj, k):
    return [obj(np.zeros(1))[1].astype(int) for _ in range(k)]


def test_each_epoch_covers_every_point_once_and_reshuffles():
    n, b = 103, 10
    obj = MinibatchObjective(_indices, np.arange(n), batch_size=b, seed=5)
    assert obj.n_points == n and obj.n_batches == 11
    epochs = []
    for e in range(3):
        batches = _draw(obj, obj.n_batches)
        assert [len(x) for x in batches] == [10] * 10 + [3]
        order = np.concatenate(batches)
        np.testing.assert_array_equal(np.sort(order), np.arange(n))
        assert obj.epoch == e
        epochs.append(order)
    assert not np.array_equal(epochs[0], epochs[1])
    assert not np.array_equal(epochs[1], epochs[2])
    _draw(obj, 1)
    assert obj.epoch == 3 and obj.calls == 34


def test_reproducible_from_seed():
    a = _draw(MinibatchObjective(_indices, np.arange(50), 7, seed=1), 20)
    b = _draw(MinibatchObjective(_indices, np.arange(50), 7, seed=1), 20)
    c = _draw(MinibatchObjective(_indices, np.arange(50), 7, seed=2), 20)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    fresh = MinibatchObjective(_indices, np.arange(50), 7)
    assert isinstance(fresh.seed, int) and fresh.seed >= 0
    replay = MinibatchObjective(_indices, np.arange(50), 7, seed=fresh.seed)
    for x, y in zip(_draw(fresh, 12), _draw(replay, 12)):
        np.testing.assert_array_equal(x, y)


def test_no_shuffle_serves_views_in_order():
    data = np.arange(20.0)
    seen = []

    def fun(x, batch):
        seen.append(batch)
        return 0.0, x
    obj = MinibatchObjective(fun, data, batch_size=8, shuffle=False)
    for _ in range(4):
        obj(np.zeros(1))
    np.testing.assert_array_equal(np.concatenate(seen[:3]), data)
    np.testing.assert_array_equal(seen[3], data[:8])
    assert np.shares_memory(seen[0], data)


def test_several_arrays_and_extra_args_stay_aligned():
    X = np.arange(40.0).reshape(20, 2)
    y = np.arange(20.0) * 10

    def fun(w, Xb, yb, scale):
        np.testing.assert_array_equal(Xb[:, 0] * 5 * scale, yb * scale)
        return 0.0, w
    obj = MinibatchObjective(fun, (X, y), batch_size=6, seed=0)
    for _ in range(8):
        obj(np.zeros(2), 3.0)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_data(fmt):
    rng = np.random.default_rng(0)
    dense = rng.random((30, 5)) * (rng.random((30, 5)) < 0.3)
    X = sp.csr_matrix(dense).asformat(fmt)
    seen = []

    def fun(w, Xb, rows):
        assert sp.issparse(Xb) and Xb.format == "csr"
        np.testing.assert_array_equal(Xb.toarray(), dense[rows.astype(int)])
        seen.append(rows)
        return 0.0, Xb.T @ (Xb @ w)
    obj = MinibatchObjective(fun, (X, np.arange(30)), batch_size=8, seed=4)
    for _ in range(8):
        obj(np.ones(5))
    assert X.format == fmt                   # the caller's matrix untouched
    obj.full(np.ones(5))


def test_full_combines_batches_and_keeps_the_stream():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(57, 3))
    y = rng.normal(size=57)
    w = np.array([0.3, -0.2, 0.1])

    def mean_fg(w, X, y):
        r = X @ w - y
        return 0.5 * np.mean(r * r), X.T @ r / len(y)

    def sum_fg(w, X, y):
        r = X @ w - y
        return 0.5 * r @ r, X.T @ r
    obj = MinibatchObjective(mean_fg, (X, y), batch_size=10, seed=0)
    _draw_state = obj.get_state()
    f, g = obj.full(w)
    f0, g0 = mean_fg(w, X, y)
    assert abs(f - f0) < 1e-14 and np.allclose(g, g0, atol=1e-14)
    assert obj.get_state() == _draw_state
    obj = MinibatchObjective(sum_fg, (X, y), batch_size=10, reduction="sum")
    f, g = obj.full(w)
    f0, g0 = sum_fg(w, X, y)
    assert abs(f - f0) < 1e-12 and np.allclose(g, g0, atol=1e-12)


def test_get_and_set_state_resume_the_same_batches():
    data = np.arange(37)
    one = MinibatchObjective(_indices, data, batch_size=5, seed=11)
    _draw(one, 13)
    state = one.get_state()
    epoch = one.epoch
    assert set(state) == {"seed", "epoch", "position", "calls"}
    assert all(type(v) is int for v in state.values())
    rest = _draw(one, 25)
    two = MinibatchObjective(_indices, data, batch_size=5, seed=99)
    two.set_state(state)
    assert two.seed == 11 and two.calls == 13 and two.epoch == epoch == 1
    for a, b in zip(rest, _draw(two, 25)):
        np.testing.assert_array_equal(a, b)
    assert two.get_state() == one.get_state()


@pytest.mark.parametrize("bad", [{}, {"seed": 1, "epoch": 0, "position": 0},
                                 {"seed": 1, "epoch": 0, "position": 99,
                                  "calls": 0},
                                 {"seed": -1, "epoch": 0, "position": 0,
                                  "calls": 0},
                                 {"seed": "a", "epoch": 0, "position": 0,
                                  "calls": 0}])
def test_bad_state_raises_and_changes_nothing(bad):
    obj = MinibatchObjective(_indices, np.arange(10), batch_size=3, seed=2)
    _draw(obj, 2)
    before = obj.get_state()
    with pytest.raises(ValueError):
        obj.set_state(bad)
    assert obj.get_state() == before


@pytest.mark.parametrize("kwargs,err", [
    (dict(data=(np.zeros(5), np.zeros(6))), ValueError),
    (dict(data=np.zeros(5), batch_size=0), ValueError),
    (dict(data=np.zeros(5), batch_size=2.5), ValueError),
    (dict(data=np.zeros(5), seed=-3), ValueError),
    (dict(data=np.zeros(5), shuffle="yes"), TypeError),
    (dict(data=np.zeros(5), reduction="max"), ValueError),
    (dict(data=np.zeros(0)), ValueError),
    (dict(data=np.float64(1.0)), ValueError),
])
def test_bad_arguments(kwargs, err):
    with pytest.raises(err):
        MinibatchObjective(_indices, **kwargs)
    with pytest.raises(TypeError):
        MinibatchObjective(None, np.zeros(3))


def test_data_is_not_modified_and_batch_size_is_clipped():
    data = np.arange(7.0)
    copy = data.copy()
    obj = MinibatchObjective(_indices, data, batch_size=100, seed=0)
    assert obj.batch_size == 7 and obj.n_batches == 1
    _draw(obj, 3)
    np.testing.assert_array_equal(data, copy)
    assert "MinibatchObjective" in repr(obj)


def test_stochastic_least_squares_converges():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 4))
    w_true = np.array([1.0, -2.0, 0.5, 3.0])
    y = X @ w_true + 0.1 * rng.normal(size=2000)

    def fg(w, X, y):
        r = X @ w - y
        return 0.5 * np.mean(r * r), X.T @ r / len(y)
    obj = MinibatchObjective(fg, (X, y), batch_size=64, seed=0)
    res = adamsci.adam(obj, np.zeros(4), jac=True, learning_rate=
                       adamsci.schedules.exponential(0.05, 0.01, 1500),
                       maxiter=1500, gtol=0)
    w_ls = np.linalg.lstsq(X, y, rcond=None)[0]
    np.testing.assert_allclose(res.x, w_ls, atol=0.01)
    f_full, _ = obj.full(res.x)
    assert f_full < 1.01 * fg(w_ls, X, y)[0]
