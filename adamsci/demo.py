"""The main job: ``python -m adamsci demo``.

Fits an exponential decay ``y = amplitude * exp(-x / tau) + offset`` to ten
million noisy synthetic points (sd 0.5), side by side:

* :func:`adamsci.curve_fit`: Adam on minibatches of 1024 points in the
  compiled engine, then the polish on all the points (its first call in a
  process compiles; both calls are timed);
* :func:`scipy.optimize.curve_fit` (Levenberg-Marquardt) on the same data;

then prints both fits, their times, and how far apart they are in standard
errors; writes the run's history (an :class:`xarray.Dataset`) to
``history.nc`` and, when matplotlib is installed, a convergence plot
``convergence.png``.

Examples
--------
>>> from adamsci import demo
>>> out = demo.main(points=20_000, plot=False, out=None, quiet=True)
>>> out["within_3_se"], out["agree_with_scipy"]
(True, True)
"""
import os
import time

import numpy as np

TRUE = {"amplitude": 5.0, "tau": 2.0, "offset": 1.0}
NOISE = 0.5
P0 = [1.0, 1.0, 0.0]


def model(x, amplitude, tau, offset):
    """``amplitude * exp(-x / tau) + offset``."""
    return amplitude * np.exp(-x / tau) + offset


def data(points, seed=0):
    """Synthetic ``(x, y)``: the true curve plus Gaussian noise (sd 0.5)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 10.0, points)
    y = model(x, *TRUE.values()) + rng.normal(0.0, NOISE, points)
    return x, y


def _table(names, popt, perr, sp_popt, sp_perr):
    lines = [f"{'parameter':>10} {'true':>7} | {'adamsci':>10} {'std err':>9}"
             f" | {'scipy LM':>10} {'std err':>9} | {'apart (SE)':>10}"]
    for j, name in enumerate(names):
        lines.append(
            f"{name:>10} {TRUE[name]:7.3f} | {popt[j]:10.6f} {perr[j]:9.2e} |"
            f" {sp_popt[j]:10.6f} {sp_perr[j]:9.2e} | "
            f"{abs(popt[j] - sp_popt[j]) / sp_perr[j]:10.2e}")
    return "\n".join(lines)


def main(points=10_000_000, batch_size=1024, seed=0, out="adamsci-demo",
         scipy=True, plot=True, quiet=False, progress=False):
    """Run the demo; returns a dict with the fits, times and paths."""
    import scipy.optimize as so

    from . import fitting

    say = (lambda *a: None) if quiet else print
    say(f"adamsci demo: y = amplitude*exp(-x/tau) + offset, {points:,} points"
        f" (noise sd {NOISE}), start {P0}")
    x, y = data(points, seed)
    say(f"data: {(x.nbytes + y.nbytes) / 1e6:,.0f} MB")
    kw = dict(p0=P0, batch_size=batch_size, seed=seed, full_output=True)
    times = []
    for call in ("first", "second"):
        t0 = time.perf_counter()
        popt, pcov, info, mesg, ier = fitting.curve_fit(
            model, x, y, record=10, progress=progress, **kw)
        times.append(time.perf_counter() - t0)
        say(f"adamsci.curve_fit, {call} call: {times[-1]:6.2f} s "
            f"({'compiles the model and the loop' if call == 'first' else 'compiled'})")
    res = info["result"]
    say(f"  {res.nit:,} Adam steps on minibatches of {batch_size}, then "
        f"{info['npass']} passes over all the points ({mesg})")
    perr = np.sqrt(np.diag(pcov))
    names = list(TRUE)
    result = {"popt": popt, "perr": perr, "seconds": times[-1],
              "first_call_seconds": times[0], "history": res.history,
              "paths": []}
    sp_popt, sp_perr = popt, perr
    if scipy:
        t0 = time.perf_counter()
        sp_popt, sp_pcov = so.curve_fit(model, x, y, p0=P0)
        sp_seconds = time.perf_counter() - t0
        sp_perr = np.sqrt(np.diag(sp_pcov))
        say(f"scipy.optimize.curve_fit (LM):  {sp_seconds:6.2f} s  -> adamsci"
            f" is {sp_seconds / times[-1]:.1f}x faster (second call)")
        result.update(scipy_popt=sp_popt, scipy_perr=sp_perr,
                      scipy_seconds=sp_seconds)
    say("")
    say(_table(names, popt, perr, sp_popt, sp_perr))
    truth = np.array(list(TRUE.values()))
    result["within_3_se"] = bool(np.all(np.abs(popt - truth) < 3 * perr))
    result["agree_with_scipy"] = bool(np.all(np.abs(popt - sp_popt) <
                                             0.01 * sp_perr))
    if out is not None:
        os.makedirs(out, exist_ok=True)
        nc = os.path.join(out, "history.nc")
        res.history.to_netcdf(nc)
        result["paths"].append(nc)
        say(f"\nhistory of the Adam steps ({res.history.sizes['iteration']:,} "
            f"recorded iterations) -> {nc}")
        if plot:
            try:
                import matplotlib
                matplotlib.use("Agg")
            except ImportError:
                say("(matplotlib is not installed: no plot; "
                    "pip install 'adamsci[plot]')")
            else:
                from . import plot as _plot
                ax = _plot.convergence(res.history)
                ax.axhline(info["cost"], color="k", ls="--", lw=1,
                           label=f"after the polish ({info['npass']} "
                                 f"passes over all the points)")
                ax.legend()
                ax.set_ylabel("cost: half the sum of squared residuals\n"
                              "(Adam: estimated from its minibatch)")
                ax.set_title(f"adamsci demo: Adam on minibatches of "
                             f"{batch_size}, {points:,} points")
                png = os.path.join(out, "convergence.png")
                ax.figure.savefig(png, dpi=110, bbox_inches="tight")
                result["paths"].append(png)
                say(f"convergence plot -> {png}")
    say("\nall estimates within 3 standard errors of the truth: "
        f"{result['within_3_se']}; within 0.01 SE of scipy's: "
        f"{result['agree_with_scipy']}")
    return result
