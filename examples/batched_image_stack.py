"""Batched fits of an image stack through the xarray accessor and Dask.

A fluorescence-lifetime-like image stack: frames at times ``t``, and in every
pixel a decay ``A(y, x) * exp(-t / tau(y, x)) + offset`` with Gaussian noise.
``da.adamsci.curvefit("time", "exponential")`` fits every pixel's curve; on
a Dask-backed DataArray it runs chunk by chunk, each chunk one compiled
:func:`adamsci.fit_batch` call over all of its pixels (instead of one
``scipy.optimize.curve_fit`` call per pixel as ``DataArray.curvefit`` does).
The output has xarray's ``curvefit`` layout: ``curvefit_coefficients`` over
``param`` and ``curvefit_covariance`` over ``cov_i``, ``cov_j``.

Claims checked: (a) the lifetimes agree with xarray's own
``DataArray.curvefit`` (scipy's least squares, pixel by pixel) on the same
pixels (median relative difference < 1e-4); (b) they recover the true
lifetimes and the standard errors from the covariance are calibrated: about
68% of the pixels have ``|tau - tau_true| < sigma_tau`` (between 60% and
76%); (c) the Dask result equals the in-memory one. The run times of the
batched fit and of scipy's per-pixel loop are printed side by side (a ratio,
not a claim: the machine may be busy).

Run ``python examples/batched_image_stack.py`` (full: 256 x 256 pixels, 40
frames; scipy on 2,000 of them; figure to
docs/_static/batched_image_stack.png) or with ``--quick`` (48 x 48).
"""
import sys

import numpy as np

from _common import Claims, Timer, parse_args, pyplot, table

import xarray as xr

import adamsci.accessor  # noqa: F401  (registers DataArray.adamsci)

FRAMES = 40
NOISE = 0.05


def image_stack(size, seed=0):
    """(y, x, time) DataArray and the true amplitude, lifetime, offset."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 10.0, FRAMES)
    yy, xx = np.mgrid[0:size, 0:size] / size
    tau = 1.0 + 2.0 * (0.5 + 0.5 * np.sin(2 * np.pi * xx)
                       * np.cos(np.pi * yy))
    amp = 1.0 + 4.0 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / 0.1)
    offset = 0.5
    data = (amp[..., None] * np.exp(-t / tau[..., None]) + offset
            + NOISE * rng.standard_normal((size, size, FRAMES)))
    da = xr.DataArray(data, dims=("y", "x", "time"),
                      coords={"time": t}, name="intensity")
    return da, amp, tau, offset


def _decay(x, amplitude, tau, offset):
    return amplitude * np.exp(-x / tau) + offset


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], argv)
    size, n_scipy, chunk = (48, 300, 16) if args.quick else (256, 2000, 64)
    da, amp, tau, offset = image_stack(size, args.seed)
    lazy = da.chunk({"y": chunk, "x": chunk, "time": -1})
    # compile (or load from Numba's cache) the kernels before timing
    da.adamsci.curvefit("time", "exponential")
    lazy.isel(y=slice(0, 2), x=slice(0, 2)).adamsci.curvefit(
        "time", "exponential").compute()

    with Timer() as t_mem:
        fit = da.adamsci.curvefit("time", "exponential")
    with Timer() as t_dask:
        fit_dask = lazy.adamsci.curvefit("time", "exponential").compute()
    tau_fit = fit.curvefit_coefficients.sel(param="tau").values
    sigma = np.sqrt(fit.curvefit_covariance.sel(cov_i="tau",
                                                cov_j="tau").values)

    # xarray's own curvefit (scipy, one pixel at a time) on a subset
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(size * size, n_scipy, replace=False)
    iy, ix = np.unravel_index(pick, (size, size))
    sub = da.isel(y=xr.DataArray(iy, dims="pixel"),
                  x=xr.DataArray(ix, dims="pixel"))
    p0 = {"amplitude": 1.0, "tau": 1.0, "offset": 0.0}
    with Timer() as t_scipy:
        ref = sub.curvefit("time", _decay, p0=p0)
    tau_ref = ref.curvefit_coefficients.sel(param="tau").values
    rel_ref = np.abs(tau_fit[iy, ix] - tau_ref) / tau_ref
    z = (tau_fit - tau) / sigma
    rel_true = np.abs(tau_fit - tau) / tau
    per_fit = {"adamsci (in memory)": t_mem.seconds / size ** 2,
               "adamsci (Dask)": t_dask.seconds / size ** 2,
               "xarray curvefit (scipy)": t_scipy.seconds / n_scipy}

    print(f"\nimage stack {size} x {size} pixels x {FRAMES} frames, noise "
          f"{NOISE}, Dask chunks {chunk} x {chunk}")
    table(["fit", "pixels", "seconds", "us per pixel", "vs scipy"],
          [[k, size ** 2 if "adamsci" in k else n_scipy,
            t_mem.seconds if "memory" in k else
            t_dask.seconds if "Dask" in k else t_scipy.seconds,
            1e6 * v, f"{per_fit['xarray curvefit (scipy)'] / v:.1f} x"]
           for k, v in per_fit.items()], floatfmt=".2f",
          title="run time (side by side, one run; a busy machine skews it)")
    table(["quantity", "median", "99th percentile"],
          [["|tau - tau_scipy| / tau_scipy", float(np.median(rel_ref)),
            float(np.percentile(rel_ref, 99))],
           ["|tau - tau_true| / tau_true", float(np.median(rel_true)),
            float(np.percentile(rel_true, 99))],
           ["|tau - tau_true| / sigma_tau", float(np.median(np.abs(z))),
            float(np.percentile(np.abs(z), 99))]], floatfmt=".2e",
          title="lifetimes")
    _figure(args.out / "batched_image_stack.png", tau, tau_fit, z)

    claims = Claims()
    claims.check(np.median(rel_ref) < 1e-4,
                 f"lifetimes agree with xarray's curvefit (scipy) on "
                 f"{n_scipy} pixels: median relative difference "
                 f"{np.median(rel_ref):.1e} < 1e-4")
    inside = float(np.mean(np.abs(z) < 1))
    claims.check(0.60 < inside < 0.76,
                 f"standard errors calibrated: {inside:.1%} of the pixels "
                 f"have |tau - tau_true| < sigma_tau (68% expected)")
    same = np.array_equal(fit_dask.curvefit_coefficients.values,
                          fit.curvefit_coefficients.values, equal_nan=True)
    claims.check(same, "the Dask result equals the in-memory result")
    return claims.finish()


def _figure(path, tau, tau_fit, z):
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4), layout="constrained")
    lo, hi = tau.min(), tau.max()
    for ax, img, title in ((axes[0], tau, "true lifetime"),
                           (axes[1], tau_fit, "fitted lifetime")):
        im = ax.imshow(img, vmin=lo, vmax=hi, cmap="viridis")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[:2], shrink=0.9, label="tau")
    grid = np.linspace(-4, 4, 161)
    axes[2].hist(np.clip(z.ravel(), -4, 4), bins=60, density=True,
                 color="tab:blue", alpha=0.7, label="pixels")
    axes[2].plot(grid, np.exp(-grid ** 2 / 2) / np.sqrt(2 * np.pi), "k-",
                 lw=1.2, label="N(0, 1)")
    axes[2].set_xlabel("(tau - tau_true) / sigma_tau")
    axes[2].set_title("errors in units of the standard error", fontsize=10)
    axes[2].legend(fontsize=8)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"figure: {path}")


if __name__ == "__main__":
    sys.exit(main())
