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
    for row in ("gradient array: compiled", "gradient tuple: compiled",
                "1,000-point least squares: compiled", "Python loop",
                "Python-loop overhead", "first Adam().step",
                "first minimize, Python objective",
                "first minimize, @njit objective",
                "cache=True objective, 2nd process"):
        assert row in table
    # the compiled and the Python loop end at the same x, bit for bit
    assert "compiled == Python loop (bitwise): True" in table
    # every compile-time row was measured (a number of seconds)
    for m in re.finditer(r"^(first .*?|cache=True .*?)\s+(\d+\.\d+)",
                         table, re.M):
        assert float(m.group(2)) > 0
    # what the @njit case compiled is named: the one iteration among it
    assert "iterate" in table


@pytest.mark.slow
def test_kernels_benchmark_quick_path():
    from adamsci.benchmarks import kernels
    table = kernels.run(quick=True, sizes=(1000,))
    assert re.search(r"1,000\s+float32 \|", table)
    assert re.search(r"1,000\s+float64 \|", table)
    # the serial Adam loop vectorises in both dtypes
    vec = kernels.vectorised()
    assert vec["float32"] > 0 and vec["float64"] > 0


@pytest.mark.slow
def test_curve_fit_benchmark_quick_path():
    from adamsci.benchmarks import curve_fit
    table = curve_fit.run(quick=True)
    assert "N = 100,000 points" in table
    rows = ("first call at this N in this run (s)",
            "warm call: the second (s)", "speed-up vs LM, warm (x)",
            "best of calls 2-4 (s)", "speed-up vs LM, best of 2-4 (x)",
            "cold first call, fresh process (s)",
            "extra memory during the call (MB)",
            "extra memory / input bytes (x)",
            "max |p - p_LM| (LM standard errors)")
    for row in rows:
        line = next(ln for ln in table.splitlines() if ln.startswith(row))
        # three numbers (adamsci, scipy LM, scipy TRF), every one measured
        values = [float(v) for v in line[len(row):].split()[:3]]
        assert len(values) == 3 and all(v == v for v in values), line
    assert "subprocess failed" not in table
    # the NIST table: one row per problem, each error a number, the counts
    # (when the NIST files are where adamsci.datasets looks for them)
    from adamsci import datasets
    try:
        datasets.nist_strd(curve_fit.NIST_QUICK[0])
    except FileNotFoundError:
        assert "NIST StRD: not measured" in table
        return
    for name in curve_fit.NIST_QUICK:
        line = next(ln for ln in table.splitlines() if ln.startswith(name))
        cells = line.split()
        # relative errors ("nan" when the fit raised) and adamsci's seconds
        float(cells[2]), float(cells[4])
        assert float(cells[-1]) > 0, line
    assert re.search(r"solved: adamsci \d of 4, scipy LM \d of 4", table)
