"""The CPU benchmarks' quick paths run and report what they claim to.

Timings are never asserted (this machine is shared and noisy); what is
checked is that every row is produced and that the properties the tables
state alongside the timings hold.
"""
import re

import pytest


@pytest.mark.slow
def test_minimize_benchmark_quick_path():
    from adamsci.benchmarks import minimize
    table = minimize.run(quick=True)
    for row in ("adamsci compiled", "loop only", "gradient as a new array",
                "hand-written loop, same objective",
                "objective without cache=True", "hand-written numba loop",
                "Python-loop overhead", "new processes"):
        assert row in table
    # the compiled and the Python loop end at the same x, bit for bit
    assert "compiled == Python loop (bitwise): True" in table
    # the innermost loop was found in the assembly: a two-parameter Adam
    # step with its checks is tens of instructions, not zero nor thousands
    m = re.search(r"innermost loop: (\d+) instructions, (\d+) loads from "
                  r"and (\d+) stores", table)
    assert m and 30 < int(m.group(1)) < 400
    assert int(m.group(3)) <= int(m.group(1))


@pytest.mark.slow
def test_kernels_benchmark_quick_path():
    from adamsci.benchmarks import kernels
    table = kernels.run(quick=True, sizes=(1000,))
    assert re.search(r"1,000\s+float32 \|", table)
    assert re.search(r"1,000\s+float64 \|", table)
    # the serial Adam loop vectorises in both dtypes
    vec = kernels.vectorised()
    assert vec["float32"] > 0 and vec["float64"] > 0
