"""Curve fitting on a million noisy points: Adam on minibatches, then the polish.

``y = amplitude * exp(-x / tau) + offset`` plus Gaussian noise (sd 0.5) on
1,000,000 points, fitted by :func:`adamsci.curve_fit` with its defaults:
the model compiled with exact derivatives, 1,000 Adam steps on minibatches
of 1024 points, then Levenberg-Marquardt passes over all the points. The
same fit by :func:`scipy.optimize.curve_fit` (Levenberg-Marquardt on all
points at every iteration) is the reference: both solve the same
least-squares problem.

Claims checked: every adamsci estimate lies within 3 standard errors of the
truth; adamsci's estimates agree with scipy's to a thousandth of a standard
error (the polish makes them exact); the standard errors agree (same
covariance recipe) to 1e-4.

Run ``python examples/curve_fit_1e6.py`` (full: 1e6 points, figure to
docs/_static/curve_fit_1e6.png) or with ``--quick`` (2e5 points).
"""
import sys

import numpy as np
from scipy import optimize

from _common import Claims, Timer, parse_args, table

import adamsci
from adamsci import demo


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], argv)
    points = 200_000 if args.quick else 1_000_000
    batch = 512 if args.quick else 1024
    x, y = demo.data(points, seed=args.seed)
    p0 = [1.0, 1.0, 0.0]
    adamsci.curve_fit(demo.model, x[:5000], y[:5000], p0=p0)   # compile
    with Timer() as t_adam:
        popt, pcov, info, mesg, ier = adamsci.curve_fit(
            demo.model, x, y, p0=p0, batch_size=batch, full_output=True,
            seed=args.seed, record=5)
    with Timer() as t_scipy:
        sopt, scov = optimize.curve_fit(demo.model, x, y, p0=p0)
    perr, serr = np.sqrt(np.diag(pcov)), np.sqrt(np.diag(scov))
    truth = np.array(list(demo.TRUE.values()))
    rows = [[name, truth[i], popt[i], perr[i], sopt[i], serr[i],
             (popt[i] - sopt[i]) / serr[i]]
            for i, name in enumerate(demo.TRUE)]
    table(["parameter", "true", "adamsci", "std err", "scipy LM",
           "std err", "(adamsci-scipy)/se"], rows, floatfmt=".6g",
          title=f"{points:,} points: {info['nit']:,} Adam steps on "
                f"minibatches of {batch}, then {info['npass']} passes over "
                f"all of them, {t_adam.seconds:.2f} s; scipy LM: "
                f"{t_scipy.seconds:.2f} s")
    claims = Claims()
    claims.check(np.all(np.abs(popt - truth) < 3 * perr),
                 "adamsci's estimates are within 3 standard errors of the "
                 "truth")
    tol = 1e-3
    claims.check(np.all(np.abs(popt - sopt) < tol * serr),
                 f"adamsci agrees with scipy's least squares to {tol} "
                 f"standard errors")
    claims.check(np.allclose(perr, serr, rtol=1e-4),
                 "the standard errors agree with scipy's to 1e-4")
    from adamsci import plot
    ax = plot.convergence(info["result"].history)
    ax.axhline(info["cost"], color="k", ls="--", lw=1,
               label="after the polish (all points)")
    ax.legend()
    ax.set_title(f"Adam on minibatches of {batch}, {points:,} noisy points")
    path = args.out / "curve_fit_1e6.png"
    ax.figure.savefig(path, dpi=110, bbox_inches="tight")
    print(f"figure: {path}")
    return claims.finish()


if __name__ == "__main__":
    sys.exit(main())
