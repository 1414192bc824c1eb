import math

import numpy as np
import pytest

from adamsci import schedules


def test_formulas():
    assert schedules.constant(0.3)(1000) == 0.3
    s = schedules.inverse_sqrt(0.2)
    assert [s(t) for t in (1, 4, 100)] == pytest.approx([0.2, 0.1, 0.02])
    e = schedules.exponential(1.0, 0.5, decay_steps=10)
    assert e(1) == 1.0 and e(11) == pytest.approx(0.5)
    assert e(6) == pytest.approx(0.5 ** 0.5)
    st = schedules.exponential(1.0, 0.5, decay_steps=10, staircase=True)
    assert st(10) == 1.0 and st(11) == 0.5
    c = schedules.cosine(2.0, decay_steps=100, alpha=0.1)
    assert c(1) == pytest.approx(2.0)
    assert c(51) == pytest.approx(2.0 * (0.9 * 0.5 + 0.1))
    assert c(101) == pytest.approx(0.2) and c(5000) == pytest.approx(0.2)


@pytest.mark.parametrize("sched", [
    schedules.constant(0.1), schedules.inverse_sqrt(0.1),
    schedules.exponential(0.1, 0.9, 7, True), schedules.cosine(0.1, 50, 0.2)])
def test_evaluate_matches_call_and_compiles(sched):
    import numba
    ev = numba.njit(cache=True)(schedules.evaluate)
    args = sched.as_tuple()
    for t in (1, 2, 10, 49, 100):
        assert ev(*args, t) == pytest.approx(sched(t), rel=1e-15)
        assert schedules.evaluate(*args, t) == sched(t)


def test_validation_and_repr():
    with pytest.raises(ValueError, match="learning_rate"):
        schedules.inverse_sqrt(0.0)
    with pytest.raises(ValueError, match="decay_rate"):
        schedules.exponential(0.1, -1.0)
    with pytest.raises(ValueError, match="alpha"):
        schedules.cosine(0.1, 10, alpha=2.0)
    assert repr(schedules.cosine(0.1, 10)) == \
        "cosine(learning_rate=0.1, decay_steps=10.0, alpha=0.0)"
    assert schedules.cosine(0.1, 10) == schedules.cosine(0.1, 10.0)
    assert math.isfinite(schedules.inverse_sqrt(1.0)(10 ** 9))
