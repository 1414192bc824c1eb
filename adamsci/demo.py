"""The main job: ``python -m adamsci demo``.

Fits an exponential decay ``y = amplitude * exp(-x / tau) + offset`` to about
a million noisy synthetic points with :func:`adamsci.curve_fit` on minibatches
(Adam), with a progress bar, then

* prints a table: parameter, estimate, standard error, true value, and the
  deviation in standard errors;
* writes the run history (an :class:`xarray.Dataset`) to ``history.nc`` and,
  when matplotlib is installed, a convergence plot ``convergence.png``.

Examples
--------
>>> from adamsci import demo
>>> out = demo.main(points=20_000, batch_size=128, epochs=20, progress=False,
...                 plot=False, out=None, quiet=True)
>>> out["within_3_se"]
True
"""
import math
import os
import time

import numpy as np

TRUE = {"amplitude": 5.0, "tau": 2.0, "offset": 1.0}
NOISE = 0.5


def model(x, amplitude, tau, offset):
    """``amplitude * exp(-x / tau) + offset``."""
    return amplitude * np.exp(-x / tau) + offset


def jacobian(x, amplitude, tau, offset):
    """Analytic Jacobian of :func:`model`, shape ``(len(x), 3)``."""
    e = np.exp(-x / tau)
    return np.stack([e, amplitude * x * e / tau ** 2, np.ones_like(x)],
                    axis=-1)


def data(points, seed=0):
    """Synthetic ``(x, y)``: the true curve plus Gaussian noise (sd 0.5)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 10.0, points)
    y = model(x, *TRUE.values()) + rng.normal(0.0, NOISE, points)
    return x, y


def _table(names, popt, perr):
    lines = [f"{'parameter':>10} {'estimate':>11} {'std error':>11} "
             f"{'true':>8} {'(est-true)/se':>14}"]
    for name, p, e in zip(names, popt, perr):
        t = TRUE[name]
        lines.append(f"{name:>10} {p:11.6f} {e:11.2e} {t:8.3f} "
                     f"{(p - t) / e:14.2f}")
    return "\n".join(lines)


def main(points=1_000_000, batch_size=1024, epochs=None, seed=0,
         out="adamsci-demo", progress=True, plot=True, quiet=False):
    """Run the demo; returns a dict with the fit and the paths written."""
    from . import fitting

    say = (lambda *a: None) if quiet else print
    epochs = 12.0 if epochs is None else float(epochs)
    maxiter = max(1, int(math.ceil(epochs * points / batch_size)))
    say(f"adamsci demo: y = amplitude*exp(-x/tau) + offset, {points:,} points"
        f" (noise sd {NOISE}), minibatches of {batch_size}, {maxiter:,} Adam "
        f"steps ({epochs:g} epochs)")
    x, y = data(points, seed)
    if progress:
        try:
            import tqdm  # noqa: F401
        except ImportError:
            say("(tqdm is not installed: no progress bar; "
                "pip install 'adamsci[progress]')")
            progress = False
    t0 = time.perf_counter()
    popt, pcov, info, mesg, ier = fitting.curve_fit(
        model, x, y, p0=[1.0, 1.0, 0.0], jac=jacobian, batch_size=batch_size,
        full_output=True, seed=seed, maxiter=maxiter,
        record=max(1, maxiter // 2000), progress=progress)
    seconds = time.perf_counter() - t0
    perr = np.sqrt(np.diag(pcov))
    names = list(TRUE)
    res = info["result"]
    say(f"\ndone in {seconds:.1f} s: {res.nit:,} iterations, "
        f"{info['nfev']:,} minibatches (status {ier}: {mesg})\n")
    say(_table(names, popt, perr))
    dev = np.abs((popt - np.array(list(TRUE.values()))) / perr)
    result = {"popt": popt, "perr": perr, "seconds": seconds,
              "within_3_se": bool(np.all(dev < 3)), "history": res.history,
              "paths": []}
    if out is not None:
        os.makedirs(out, exist_ok=True)
        nc = os.path.join(out, "history.nc")
        res.history.to_netcdf(nc)
        result["paths"].append(nc)
        say(f"\nhistory ({res.history.sizes['iteration']:,} recorded "
            f"iterations) -> {nc}")
        if plot:
            try:
                import matplotlib
                matplotlib.use("Agg")
            except ImportError:
                say("(matplotlib is not installed: no plot; "
                    "pip install 'adamsci[plot]')")
            else:
                from . import plot as _plot
                ax = _plot.convergence(res.history, x="epoch")
                ax.set_title("adamsci demo: minibatch Adam on 1e6 points")
                png = os.path.join(out, "convergence.png")
                ax.figure.savefig(png, dpi=110, bbox_inches="tight")
                result["paths"].append(png)
                say(f"convergence plot -> {png}")
    say("\nall estimates within 3 standard errors of the truth: "
        f"{result['within_3_se']}")
    return result
