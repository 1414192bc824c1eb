"""adamsci: Adam-family stochastic optimization for scientific Python.

Numba kernels that update parameters in place (CPU ``@njit``, NVIDIA GPUs
``@cuda.jit``) for Adam and AdaMax (Kingma & Ba, ICLR 2015, arXiv:1412.6980)
and the optimizers the paper compares against, a
``scipy.optimize.minimize``-compatible interface, stochastic curve fitting,
batched fits and xarray run histories.

``import adamsci`` is cheap: it imports neither Numba nor xarray and compiles
nothing; each public name loads its module on first use.
"""
import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "Optimizer": "optimizers", "Adam": "optimizers", "AdaMax": "optimizers",
    "SGD": "optimizers", "AdaGrad": "optimizers", "RMSProp": "optimizers",
    "AdaDelta": "optimizers",
    "adam": "minimize", "adamax": "minimize", "sgd": "minimize",
    "adagrad": "minimize", "rmsprop": "minimize", "adadelta": "minimize",
    "MinibatchObjective": "objectives",
    "curve_fit": "fitting",
    "fit_batch": "batch",
}
_SUBMODULES = ("schedules", "optimizers", "minimize", "objectives", "fitting",
               "batch", "models", "history", "plot", "kernels", "datasets")

__all__ = sorted(_LAZY) + ["schedules", "__version__"]


def __getattr__(name):
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'adamsci' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
