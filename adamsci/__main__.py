"""Command line: ``python -m adamsci demo`` and ``python -m adamsci bench``.

``demo`` runs the main job (a curve fit of ten million noisy points, next
to scipy's; see :mod:`adamsci.demo`); ``bench`` runs the benchmarks, each of
which prints ratios measured side by side in one run.
"""
import argparse
import importlib
import sys

SUITES = {
    "kernels": "adamsci.benchmarks.kernels",
    "minimize": "adamsci.benchmarks.minimize",
    "history": "adamsci.benchmarks.history",
    "batch": "adamsci.benchmarks.batch",
    "cuda": "adamsci.benchmarks.cuda",
    "curve_fit": "adamsci.benchmarks.curve_fit",
}


def _parser():
    p = argparse.ArgumentParser(
        prog="python -m adamsci",
        description="adamsci: Adam-family stochastic optimization "
                    "(Kingma & Ba 2015) with Numba kernels.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser(
        "demo", help="fit a noisy exponential decay to 1e7 points with "
                     "adamsci.curve_fit and scipy's, side by side; write "
                     "the history (netCDF) and a convergence plot",
        description="Fit y = a*exp(-x/tau) + c to synthetic noisy data with "
                    "adamsci.curve_fit (minibatch Adam, then a polish on all "
                    "the points) and scipy.optimize.curve_fit, print both "
                    "fits and times, save the run history to netCDF and a "
                    "convergence plot (PNG, when matplotlib is installed).")
    d.add_argument("--points", type=int, default=10_000_000,
                   help="number of data points (default 1e7)")
    d.add_argument("--batch-size", type=int, default=1024,
                   help="minibatch size (default 1024)")
    d.add_argument("--no-scipy", action="store_true",
                   help="skip scipy's fit")
    d.add_argument("--seed", type=int, default=0, help="random seed")
    d.add_argument("--out", default="adamsci-demo",
                   help="output folder for history.nc and convergence.png "
                        "(default ./adamsci-demo)")
    d.add_argument("--progress", action="store_true",
                   help="a progress bar (runs the Python loop)")
    d.add_argument("--no-plot", action="store_true", help="no PNG")
    b = sub.add_parser("bench", help="run benchmarks (ratios measured side "
                                     "by side)")
    b.add_argument("--suite", choices=sorted(SUITES) + ["all"],
                   default="kernels", help="which benchmark (default kernels)")
    b.add_argument("--quick", action="store_true",
                   help="short run with small sizes (smoke test)")
    b.add_argument("--target", choices=["cpu", "cuda"], default="cpu",
                   help="cuda runs the GPU suite (same as --suite cuda)")
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from . import demo
        demo.main(points=args.points, batch_size=args.batch_size,
                  seed=args.seed, out=args.out, scipy=not args.no_scipy,
                  progress=args.progress, plot=not args.no_plot)
        return 0
    suites = [args.suite] if args.suite != "all" else sorted(SUITES)
    if args.target == "cuda":
        suites = ["cuda"]
    for name in suites:
        try:
            module = importlib.import_module(SUITES[name])
        except ImportError as err:
            print(f"[{name}] not available: {err}")
            continue
        print(f"== {name} ==", flush=True)
        try:
            module.run(quick=args.quick)   # prints its table (and returns it)
        except RuntimeError as err:   # e.g. the CUDA suite without a GPU
            print(f"[{name}] not available: {err}")
        print(flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
