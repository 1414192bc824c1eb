r"""Benchmark of :func:`adamsci.curve_fit` next to scipy's ``curve_fit``.

The problem: ``y = a * exp(-x / tau) + c`` (:func:`model`, a plain ``def``
here, compiled by :mod:`adamsci.compiler` as any user's model), ``x``
uniform on [0, 10], Gaussian noise of standard deviation 0.5, true ``(a,
tau, c) = (2, 3, 0.5)``, start ``p0 = [1, 1, 0]``; fitted by

* ``adamsci``: ``adamsci.curve_fit(model, x, y, p0=p0, batch_size=1024,
  seed=0)`` (Adam on minibatches in the compiled engine, then the polish);
* ``scipy LM``: ``scipy.optimize.curve_fit(model, x, y, p0=p0)``;
* ``scipy TRF``: the same with ``method="trf"``.

For each number of points (1e6 and 1e7; 1e5 with ``quick``), measured side
by side in one run (timings on a shared machine drift; read the ratios):

* **first call / warm**: the first and the second call in this run
  (the first call at the first size finds Numba's cache as it is), then
  two more; the methods take turns, round by round (``ROUNDS``), and the
  best of the calls after the first is printed too;
* **cold**: the first call in a new process whose ``NUMBA_CACHE_DIR`` and
  ``ADAMSCI_CACHE_DIR`` are new empty folders; the data are made and the
  modules imported before the clock starts (the same for scipy);
* **extra memory**: each method in a new process of its own (after a
  warm-up call on 10,000 points, so compiling is not counted): the peak
  RSS during the call minus the RSS before it (``/proc/self/clear_refs``
  resets the high-water mark, ``VmHWM`` and ``VmRSS`` of
  ``/proc/self/status`` are read), next to the bytes of ``x`` and ``y``;
* **accuracy**: the largest distance of a parameter from LM's optimum, in
  LM's standard errors.

**Out of core** (not with ``quick``): 1e8 points of the same problem written
chunk by chunk (``2**20`` points a chunk, never the whole array in memory)
to a netCDF file, opened with ``xr.open_dataset(path, engine="h5netcdf")``
in a new process and fitted from ``ds.x, ds.y`` (read chunk by chunk); its
time, the process's peak RSS, the distance from the truth in its own
standard errors and from an in-memory fit of the same points (another
process, ``np.asarray``).

**NIST StRD**: the 27 nonlinear regression problems (4 with ``quick``)
from Start 2, ``adamsci.curve_fit`` (defaults) and
``scipy.optimize.curve_fit``; solved means every parameter within 1e-5
relative of the certified value (an exception counts as unsolved).

Targets (printed with ✓/✗ from the measurements): at 1e7 points adamsci's
warm call >= 5x faster than LM's, every parameter within 0.3 LM standard
errors of LM's, extra memory <= 0.5x the input's bytes, the cold first call
faster than LM's cold one; at 1e6 points >= 3x and the same accuracy; out
of core a peak RSS <= 1 GB, within 3 SE of the truth and 0.1 SE of the
in-memory fit.

Run with ``python -m adamsci bench --suite curve_fit [--quick]`` or
``python -m adamsci.benchmarks.curve_fit [--quick]``.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

TRUE = (2.0, 3.0, 0.5)
NAMES = ("a", "tau", "c")
NOISE = 0.5
P0 = [1.0, 1.0, 0.0]
SEED = 0
BATCH = 1024
ROUNDS = 4          # calls per method and size, interleaved
OOC_POINTS = 100_000_000
OOC_CHUNK = 1 << 20
NIST_QUICK = ("Misra1a", "Chwirut2", "MGH09", "BoxBOD")
METHODS = ("adamsci", "scipy LM", "scipy TRF")
#: (speed-up vs LM's warm call, accuracy in LM SE, extra/input, cold < LM)
TARGETS = {1_000_000: (3.0, 0.3, None, False),
           10_000_000: (5.0, 0.3, 0.5, True)}
OOC_TARGETS = {"rss_mb": 1000.0, "truth_se": 3.0, "memory_se": 0.1}
SOLVED = 1e-5


def model(x, a, tau, c):
    """``a * exp(-x / tau) + c``."""
    return a * np.exp(-x / tau) + c


def make_data(points, seed=SEED):
    """``(x, y)``: ``points`` samples of the problem (float64)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 10.0, points)
    y = model(x, *TRUE) + rng.normal(0.0, NOISE, points)
    return x, y


def _fit(method, x, y):
    """``(popt, pcov)`` of one of :data:`METHODS`."""
    if method == "adamsci":
        from .. import curve_fit
        return curve_fit(model, x, y, p0=P0, batch_size=BATCH, seed=SEED)
    from scipy.optimize import curve_fit
    kw = {"method": "trf"} if method == "scipy TRF" else {}
    return curve_fit(model, x, y, p0=P0, **kw)


# -- memory of this process (Linux) -------------------------------------------
def _proc_status():
    """``{"VmHWM": kB, "VmRSS": kB}`` of this process."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, val = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(val.split()[0])
    return out


def _reset_hwm():
    """Reset the peak RSS (VmHWM) to the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


# -- what runs in the new processes -------------------------------------------
def _worker(argv):
    """One measurement in this (new) process; prints a JSON line.

    ``cold METHOD N``: the first call's seconds; ``memory METHOD N``: a
    warm-up call on 10,000 points, then the call's peak RSS above the RSS
    before it (kB); ``ooc PATH``: fit the netCDF file's ``x, y`` read chunk
    by chunk; ``inmem PATH``: the same arrays loaded with ``np.asarray``.
    """
    task = argv[0]
    out = {}
    if task in ("cold", "memory"):
        method, n = argv[1], int(argv[2])
        if method == "adamsci":
            import adamsci  # noqa: F401   (compiles nothing)
        else:
            import scipy.optimize  # noqa: F401
        if task == "memory":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _fit(method, *make_data(10_000, seed=1))
        x, y = make_data(n)
        _reset_hwm()
        before = _proc_status()
        t = time.perf_counter()
        popt, _ = _fit(method, x, y)
        out["seconds"] = time.perf_counter() - t
        after = _proc_status()
        out.update(rss_before_kb=before["VmRSS"], hwm_kb=after["VmHWM"],
                   extra_kb=after["VmHWM"] - before["VmRSS"],
                   popt=[float(v) for v in popt])
    elif task in ("ooc", "inmem"):
        import xarray as xr
        import adamsci
        path = argv[1]
        ds = xr.open_dataset(path, engine="h5netcdf")
        if task == "ooc":
            # compile the out-of-core path on 200,000 of the file's points
            small = ds.isel(point=slice(0, 200_000))
            t = time.perf_counter()
            adamsci.curve_fit(model, small.x, small.y, p0=P0, seed=SEED)
            out["warmup_seconds"] = time.perf_counter() - t
            x, y = ds.x, ds.y
        else:
            t = time.perf_counter()
            x, y = np.asarray(ds.x), np.asarray(ds.y)
            out["load_seconds"] = time.perf_counter() - t
            adamsci.curve_fit(model, x[:200_000], y[:200_000], p0=P0,
                              seed=SEED)
        t = time.perf_counter()
        popt, pcov, info, mesg, _ = adamsci.curve_fit(
            model, x, y, p0=P0, seed=SEED, full_output=True)
        out["seconds"] = time.perf_counter() - t
        out.update(popt=[float(v) for v in popt],
                   perr=[float(v) for v in np.sqrt(np.diag(pcov))],
                   npass=int(info["npass"]), mesg=mesg,
                   hwm_kb=_proc_status()["VmHWM"])
    else:
        raise ValueError(f"unknown task {task!r}")
    print(json.dumps(out), flush=True)


def _subprocess(args, fresh_cache=False, timeout=900):
    """Run :func:`_worker` with ``args`` in a new Python process."""
    env = dict(os.environ)
    tmp = None
    if fresh_cache:
        tmp = tempfile.mkdtemp(prefix="adamsci-bench-cold-")
        env["NUMBA_CACHE_DIR"] = os.path.join(tmp, "numba")
        env["ADAMSCI_CACHE_DIR"] = os.path.join(tmp, "models")
    code = ("import sys; from adamsci.benchmarks.curve_fit import _worker; "
            "_worker(sys.argv[1:])")
    try:
        r = subprocess.run([sys.executable, "-c", code, *map(str, args)],
                           capture_output=True, text=True, env=env,
                           timeout=timeout)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


# -- the in-memory comparison -------------------------------------------------
def _timed(method, x, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        popt, pcov = _fit(method, x, y)
        return time.perf_counter() - t, popt, pcov


def measure(n):
    """Every figure of ``n`` points: ``{method: {...}}``."""
    x, y = make_data(n)
    res = {m: {"seconds": []} for m in METHODS}
    for _ in range(ROUNDS):         # round by round: drifts hit all alike
        for method in METHODS:
            t, popt, pcov = _timed(method, x, y)
            res[method]["seconds"].append(t)
            res[method].update(popt=popt, perr=np.sqrt(np.diag(pcov)))
    for method in METHODS:
        r = res[method]
        r.update(first=r["seconds"][0], warm=r["seconds"][1],
                 best=min(r["seconds"][1:]))
    del x, y
    for method in METHODS:
        cold = _subprocess(["cold", method, n], fresh_cache=True)
        mem = _subprocess(["memory", method, n])
        res[method]["cold"] = cold.get("seconds", np.nan)
        res[method]["extra_mb"] = mem.get("extra_kb", np.nan) * 1024 / 1e6
        res[method]["errors"] = [d["error"] for d in (cold, mem)
                                 if "error" in d]
    lm = res["scipy LM"]
    for method in METHODS:
        r = res[method]
        r["apart_se"] = float(np.max(np.abs(r["popt"] - lm["popt"]) /
                                     lm["perr"]))
        r["speedup"] = lm["warm"] / r["warm"]
        r["speedup_best"] = lm["best"] / r["best"]
    return res


def _mark(ok):
    return "✓" if ok else "✗"


def _size_table(n, res):
    input_mb = 2 * n * 8 / 1e6
    a, lm, trf = (res[m] for m in METHODS)
    speed_t, se_t, mem_t, cold_t = TARGETS.get(n, (None, None, None, False))
    w = 38
    lines = [f"N = {n:,} points (x and y: {input_mb:,.1f} MB)",
             f"{'':{w}s} {'adamsci':>10s} {'scipy LM':>10s} "
             f"{'scipy TRF':>10s}  target"]
    lines.append("-" * len(lines[-1]) + "-" * 14)

    def row(label, key, fmt, target=""):
        vals = " ".join(format(r[key], fmt) if np.isfinite(r[key]) else
                        f"{'nan':>10s}" for r in (a, lm, trf))
        lines.append(f"{label:{w}s} {vals}  {target}".rstrip())
    row("first call at this N in this run (s)", "first", "10.3f")
    row("warm call: the second (s)", "warm", "10.3f")
    row("speed-up vs LM, warm (x)", "speedup", "10.2f",
        f">= {speed_t:g}x {_mark(a['speedup'] >= speed_t)}" if speed_t
        else "")
    row(f"best of calls 2-{ROUNDS} (s)", "best", "10.3f")
    row(f"speed-up vs LM, best of 2-{ROUNDS} (x)", "speedup_best", "10.2f")
    row("cold first call, fresh process (s)", "cold", "10.3f",
        f"< LM's {_mark(a['cold'] < lm['cold'])}" if cold_t else "")
    row("extra memory during the call (MB)", "extra_mb", "10.1f")
    for r in (a, lm, trf):
        r["extra_ratio"] = r["extra_mb"] / input_mb
    row("extra memory / input bytes (x)", "extra_ratio", "10.3f",
        f"<= {mem_t:g}x {_mark(a['extra_ratio'] <= mem_t)}" if mem_t else "")
    row("max |p - p_LM| (LM standard errors)", "apart_se", "10.2e",
        f"<= {se_t:g} {_mark(a['apart_se'] <= se_t)}" if se_t else "")
    lines.append("LM's fit: " + ", ".join(
        f"{name} = {v:.5f} ± {s:.1e}" for name, v, s in
        zip(NAMES, lm["popt"], lm["perr"])) + f" (true {TRUE})")
    for m in METHODS:
        for e in res[m]["errors"]:
            lines.append(f"  {m}: a subprocess failed: {e}")
    return lines


# -- out of core --------------------------------------------------------------
def write_netcdf(path, points=OOC_POINTS, chunk=OOC_CHUNK, seed=SEED):
    """Write ``points`` of the problem to a netCDF-4 file ``path`` (``x``,
    ``y`` along ``point``, chunks of ``chunk`` points), one chunk at a time
    from one seeded generator; returns the seconds it took."""
    import h5netcdf
    t = time.perf_counter()
    rng = np.random.default_rng(seed)
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"point": points}
        vx = f.create_variable("x", ("point",), np.float64, chunks=(chunk,))
        vy = f.create_variable("y", ("point",), np.float64, chunks=(chunk,))
        for lo in range(0, points, chunk):
            hi = min(lo + chunk, points)
            x = rng.uniform(0.0, 10.0, hi - lo)
            vx[lo:hi] = x
            vy[lo:hi] = model(x, *TRUE) + rng.normal(0.0, NOISE, hi - lo)
    return time.perf_counter() - t


def out_of_core(points=OOC_POINTS):
    """The out-of-core figures (a list of lines)."""
    tmp = tempfile.mkdtemp(prefix="adamsci-bench-ooc-", dir="/tmp")
    path = os.path.join(tmp, "points.nc")
    try:
        t_write = write_netcdf(path, points)
        size = os.path.getsize(path)
        ooc = _subprocess(["ooc", path])
        mem = _subprocess(["inmem", path])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = [f"out of core: {points:,} points in a netCDF file "
             f"({size / 1e9:.2f} GB, chunks of {OOC_CHUNK:,} points, "
             f"written chunk by chunk in {t_write:.1f} s)"]
    for name, d in (("file", ooc), ("in memory", mem)):
        if "error" in d:
            lines.append(f"  {name}: the subprocess failed: {d['error']}")
    if "error" in ooc or "error" in mem:
        return lines
    p, s = np.array(ooc["popt"]), np.array(ooc["perr"])
    q, sq = np.array(mem["popt"]), np.array(mem["perr"])
    truth_se = float(np.max(np.abs(p - np.array(TRUE)) / s))
    mem_se = float(np.max(np.abs(p - q) / sq))
    rss = ooc["hwm_kb"] * 1024 / 1e6
    t = OOC_TARGETS
    w = 50
    lines += [
        f"  {'curve_fit(model, ds.x, ds.y) from the file (s)':{w}s} "
        f"{ooc['seconds']:10.2f}   ({ooc['npass']} passes; a first call on "
        f"200,000 of its points before it: {ooc['warmup_seconds']:.2f} s)",
        f"  {'peak RSS of that process, VmHWM (MB)':{w}s} {rss:10.1f}   "
        f"target <= {t['rss_mb']:g} MB {_mark(rss <= t['rss_mb'])}",
        f"  {'max |p - truth| (its standard errors)':{w}s} {truth_se:10.2f}"
        f"   target <= {t['truth_se']:g} {_mark(truth_se <= t['truth_se'])}",
        f"  {'max |p - p_in-memory| (in-memory SE)':{w}s} {mem_se:10.2e}"
        f"   target <= {t['memory_se']:g} "
        f"{_mark(mem_se <= t['memory_se'])}",
        f"  {'in memory (np.asarray): fit (s)':{w}s} {mem['seconds']:10.2f}"
        f"   (loading: {mem['load_seconds']:.1f} s; {mem['npass']} passes; "
        f"VmHWM {mem['hwm_kb'] * 1024 / 1e6:,.0f} MB)",
        "  file fit: " + ", ".join(f"{nm} = {v:.5f} ± {e:.1e}" for nm, v, e
                                   in zip(NAMES, p, s))]
    return lines


# -- NIST StRD ----------------------------------------------------------------
def _nist_one(fit, p):
    """``(max relative error, note)``; an exception gives ``(nan, why)``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with np.errstate(all="ignore"):
                popt = fit(p.model, p.x, p.y, p0=p.start2)[0]
        except Exception as e:    # a failure is unsolved
            return np.nan, f"{type(e).__name__}"
    err = float(np.max(np.abs(popt - p.certified) / np.abs(p.certified)))
    note = "warned" if any(issubclass(w.category, Warning) for w in caught
                           ) else ""
    return (err if np.isfinite(err) else np.nan), note


def nist(names):
    """The NIST table (a list of lines)."""
    from scipy.optimize import curve_fit as scipy_curve_fit

    from .. import curve_fit
    from ..datasets import nist_strd
    head = (f"{'problem':10s} {'level':8s} {'adamsci rel err':>16s} "
            f"{'':6s} {'scipy LM rel err':>16s} {'':6s} {'adamsci s':>9s}")
    lines = [f"NIST StRD from Start 2: solved = max relative error vs the "
             f"certified values <= {SOLVED:g}", head, "-" * len(head)]
    solved = {"adamsci": 0, "scipy": 0}
    try:
        nist_strd(names[0])
    except FileNotFoundError as e:
        return [f"NIST StRD: not measured ({e})"]
    for name in names:
        p = nist_strd(name)
        t = time.perf_counter()
        ea, na = _nist_one(curve_fit, p)
        ta = time.perf_counter() - t
        es, ns = _nist_one(scipy_curve_fit, p)
        ok_a, ok_s = bool(ea <= SOLVED), bool(es <= SOLVED)
        solved["adamsci"] += ok_a
        solved["scipy"] += ok_s

        def cell(e, ok, note):
            mark = "solved" if ok else "no"
            return f"{e:16.2e} {mark:6s}" if np.isfinite(e) else \
                f"{'nan':>16s} {(note or 'no')[:6]:6s}"
        lines.append(f"{p.name:10s} {p.difficulty:8s} {cell(ea, ok_a, na)} "
                     f"{cell(es, ok_s, ns)} {ta:9.2f}")
    k = len(names)
    lines.append("adamsci s: the first call with the problem's model in "
                 "this process (compiling it, unless Numba's cache has it)")
    lines.append(f"solved: adamsci {solved['adamsci']} of {k}, scipy LM "
                 f"{solved['scipy']} of {k}")
    return lines


def run(quick=False):
    """Run the benchmark; print and return the table (a str)."""
    import numba
    sizes = (100_000,) if quick else (1_000_000, 10_000_000)
    lines = [f"curve_fit benchmark: y = a*exp(-x/tau) + c, x ~ U(0, 10), "
             f"noise sd {NOISE}, true (a, tau, c) = {TRUE}, p0 = {P0}; "
             f"adamsci batch_size={BATCH}, seed={SEED}; "
             f"{numba.get_num_threads()} Numba threads, {os.cpu_count()} "
             f"CPUs", ""]
    for n in sizes:
        lines += _size_table(n, measure(n)) + [""]
    if not quick:
        lines += out_of_core() + [""]
    from ..datasets import NIST_PROBLEMS
    names = NIST_QUICK if quick else tuple(
        nm for level in NIST_PROBLEMS.values() for nm in level)
    lines += nist(names)
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":    # pragma: no cover
    run(quick="--quick" in sys.argv[1:])
