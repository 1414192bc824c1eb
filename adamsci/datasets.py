"""Reference problems: the NIST StRD nonlinear regression datasets.

:func:`nist_strd` reads one of the 27 problems of the NIST/ITL Statistical
Reference Datasets "Nonlinear Regression" collection (public domain) from
its ``<Name>.dat`` file and returns the data, the model function (with an
exact Jacobian by complex-step differentiation), both NIST starting points
and the certified values.

The files are not shipped with adamsci. The directory is, in this order,
the ``path`` argument, the environment variable ``ADAMSCI_NIST_DIR``, or
``../shared/data/nist_strd`` next to the repository checkout.
"""
import os
import re
from collections import namedtuple
from pathlib import Path

import numpy as np

__all__ = ["nist_strd", "NIST_PROBLEMS", "NistProblem", "nist_dir"]

#: Problem names by NIST's level of difficulty.
NIST_PROBLEMS = {
    "lower": ("Misra1a", "Chwirut2", "Chwirut1", "Lanczos3", "Gauss1",
              "Gauss2", "DanWood", "Misra1b"),
    "average": ("Kirby2", "Hahn1", "Nelson", "MGH17", "Lanczos1", "Lanczos2",
                "Gauss3", "Misra1c", "Misra1d", "Roszman1", "ENSO"),
    "higher": ("MGH09", "Thurber", "BoxBOD", "Rat42", "MGH10", "Eckerle4",
               "Rat43", "Bennett5"),
}
_ALL = {name: level for level, names in NIST_PROBLEMS.items()
        for name in names}


def _exp_sum(x, b1, b2, b3, b4, b5, b6):
    return b1 * np.exp(-b2 * x) + b3 * np.exp(-b4 * x) + b5 * np.exp(-b6 * x)


def _gauss(x, b1, b2, b3, b4, b5, b6, b7, b8):
    return (b1 * np.exp(-b2 * x) + b3 * np.exp(-(x - b4) ** 2 / b5 ** 2)
            + b6 * np.exp(-(x - b7) ** 2 / b8 ** 2))


def _rational_cubic(x, b1, b2, b3, b4, b5, b6, b7):
    return ((b1 + b2 * x + b3 * x ** 2 + b4 * x ** 3)
            / (1 + b5 * x + b6 * x ** 2 + b7 * x ** 3))


def _exp_sum_jac(x, b1, b2, b3, b4, b5, b6):
    e2, e4, e6 = np.exp(-b2 * x), np.exp(-b4 * x), np.exp(-b6 * x)
    return np.stack([e2, -b1 * x * e2, e4, -b3 * x * e4, e6, -b5 * x * e6],
                    axis=-1)


def _gauss_jac(x, b1, b2, b3, b4, b5, b6, b7, b8):
    e1 = np.exp(-b2 * x)
    e2 = np.exp(-(x - b4) ** 2 / b5 ** 2)
    e3 = np.exp(-(x - b7) ** 2 / b8 ** 2)
    return np.stack([e1, -b1 * x * e1,
                     e2, b3 * e2 * 2 * (x - b4) / b5 ** 2,
                     b3 * e2 * 2 * (x - b4) ** 2 / b5 ** 3,
                     e3, b6 * e3 * 2 * (x - b7) / b8 ** 2,
                     b6 * e3 * 2 * (x - b7) ** 2 / b8 ** 3], axis=-1)


# analytic Jacobians where they are cheaper than complex steps
_JACS = {"Lanczos1": _exp_sum_jac, "Lanczos2": _exp_sum_jac,
         "Lanczos3": _exp_sum_jac, "Gauss1": _gauss_jac,
         "Gauss2": _gauss_jac, "Gauss3": _gauss_jac}

# model functions f(x, *b), written from the formulas in the .dat files
_MODELS = {
    "Misra1a": lambda x, b1, b2: b1 * (1 - np.exp(-b2 * x)),
    "Chwirut2": lambda x, b1, b2, b3: np.exp(-b1 * x) / (b2 + b3 * x),
    "Chwirut1": lambda x, b1, b2, b3: np.exp(-b1 * x) / (b2 + b3 * x),
    "Lanczos3": _exp_sum,
    "Gauss1": _gauss,
    "Gauss2": _gauss,
    "DanWood": lambda x, b1, b2: b1 * x ** b2,
    "Misra1b": lambda x, b1, b2: b1 * (1 - (1 + b2 * x / 2) ** (-2)),
    "Kirby2": lambda x, b1, b2, b3, b4, b5: (
        (b1 + b2 * x + b3 * x ** 2) / (1 + b4 * x + b5 * x ** 2)),
    "Hahn1": _rational_cubic,
    "Nelson": lambda x, b1, b2, b3: b1 - b2 * x[0] * np.exp(-b3 * x[1]),
    "MGH17": lambda x, b1, b2, b3, b4, b5: (
        b1 + b2 * np.exp(-x * b4) + b3 * np.exp(-x * b5)),
    "Lanczos1": _exp_sum,
    "Lanczos2": _exp_sum,
    "Gauss3": _gauss,
    "Misra1c": lambda x, b1, b2: b1 * (1 - (1 + 2 * b2 * x) ** (-0.5)),
    "Misra1d": lambda x, b1, b2: b1 * b2 * x * (1 + b2 * x) ** (-1),
    "Roszman1": lambda x, b1, b2, b3, b4: (
        b1 - b2 * x - np.arctan(b3 / (x - b4)) / np.pi),
    "ENSO": lambda x, b1, b2, b3, b4, b5, b6, b7, b8, b9: (
        b1 + b2 * np.cos(2 * np.pi * x / 12) + b3 * np.sin(2 * np.pi * x / 12)
        + b5 * np.cos(2 * np.pi * x / b4) + b6 * np.sin(2 * np.pi * x / b4)
        + b8 * np.cos(2 * np.pi * x / b7) + b9 * np.sin(2 * np.pi * x / b7)),
    "MGH09": lambda x, b1, b2, b3, b4: (
        b1 * (x ** 2 + x * b2) / (x ** 2 + x * b3 + b4)),
    "Thurber": _rational_cubic,
    "BoxBOD": lambda x, b1, b2: b1 * (1 - np.exp(-b2 * x)),
    "Rat42": lambda x, b1, b2, b3: b1 / (1 + np.exp(b2 - b3 * x)),
    "MGH10": lambda x, b1, b2, b3: b1 * np.exp(b2 / (x + b3)),
    "Eckerle4": lambda x, b1, b2, b3: (
        (b1 / b2) * np.exp(-0.5 * ((x - b3) / b2) ** 2)),
    "Rat43": lambda x, b1, b2, b3, b4: (
        b1 / ((1 + np.exp(b2 - b3 * x)) ** (1 / b4))),
    "Bennett5": lambda x, b1, b2, b3: b1 * (b2 + x) ** (-1 / b3),
}

NistProblem = namedtuple("NistProblem", [
    "name", "difficulty", "x", "y", "model", "jac", "start1", "start2",
    "certified", "certified_sd", "rss", "formula"])
NistProblem.__doc__ = """A NIST StRD nonlinear regression problem.

A named tuple, as :func:`nist_strd` returns it.

Attributes
----------
name, difficulty : str
    Problem name and NIST's level ("lower", "average", "higher").
x : ndarray, shape (M,) or (k, M)
    Predictor(s) (Nelson has two: ``x[0]`` time, ``x[1]`` temperature).
y : ndarray, shape (M,)
    Response the model describes (for Nelson ``log(y)`` of the file).
model : callable
    ``model(x, *b) -> y``, vectorised NumPy (``scipy.optimize.curve_fit``
    convention).
jac : callable
    ``jac(x, *b) -> (M, N)`` Jacobian of the model with respect to ``b``,
    exact to rounding (analytic for the Gauss and Lanczos problems,
    complex-step differentiation for the others).
start1, start2 : ndarray, shape (N,)
    NIST's starting points (Start 1 far, Start 2 closer).
certified, certified_sd : ndarray, shape (N,)
    Certified parameter values and standard deviations.
rss : float
    Certified residual sum of squares.
formula : str
    The model formula as printed in the file.
"""


def nist_dir(path=None):
    """The directory that holds the NIST StRD ``.dat`` files.

    Parameters
    ----------
    path : str or path-like, optional
        The directory, if given. Otherwise the environment variable
        ``ADAMSCI_NIST_DIR``, or else ``../shared/data/nist_strd`` next to
        the repository checkout (:mod:`adamsci.datasets`).

    Returns
    -------
    pathlib.Path
        The directory (not checked for existence).
    """
    if path is not None:
        return Path(path)
    env = os.environ.get("ADAMSCI_NIST_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data" / \
        "nist_strd"


def _complex_step_jac(model):
    def jac(x, *b):
        b = np.asarray(b, dtype=float)
        h = 1e-30
        cols = []
        for k in range(b.size):
            bc = b.astype(complex)
            bc[k] += 1j * h
            cols.append(np.imag(model(x, *bc)) / h)
        return np.stack(cols, axis=-1)
    return jac


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[EeDd][-+]?\d+)?"


def nist_strd(name, path=None):
    """Read the NIST StRD nonlinear regression problem ``name``.

    Parameters
    ----------
    name : str
        One of :data:`NIST_PROBLEMS` (case-insensitive), e.g. "Misra1a".
    path : str or path-like, optional
        Directory of the ``.dat`` files (default: :func:`nist_dir`).

    Returns
    -------
    NistProblem
        Named tuple ``(name, difficulty, x, y, model, jac, start1, start2,
        certified, certified_sd, rss, formula)``.

    Raises
    ------
    ValueError
        Unknown problem name.
    FileNotFoundError
        The file is not in the directory (the message says where it looked
        and how to point elsewhere).

    Examples
    --------
    >>> from adamsci.datasets import nist_strd
    >>> p = nist_strd("Misra1a")                      # doctest: +SKIP
    >>> p.x.shape, p.start2, p.certified              # doctest: +SKIP
    ((14,), array([2.5e+02, 5.0e-04]), array([2.38942129e+02, 5.50156432e-04]))
    """
    lookup = {k.lower(): k for k in _ALL}
    key = lookup.get(str(name).lower())
    if key is None:
        raise ValueError(f"name must be one of the NIST StRD nonlinear "
                         f"problems {sorted(_ALL)}, got {name!r}")
    file = nist_dir(path) / f"{key}.dat"
    if not file.is_file():
        raise FileNotFoundError(
            f"{file} not found: pass path=, or set ADAMSCI_NIST_DIR to the "
            f"directory of the NIST StRD .dat files")
    lines = file.read_text().splitlines()
    head = "\n".join(lines[:60])
    m = re.search(r"Data\s+\(lines\s+(\d+)\s+to\s+(\d+)\)", head)
    if m is None:
        raise ValueError(f"{file}: no 'Data (lines a to b)' in the header")
    d0, d1 = int(m.group(1)), int(m.group(2))
    data = np.array([[float(v.replace("D", "E").replace("d", "e"))
                      for v in line.split()] for line in lines[d0 - 1:d1]])
    params = []
    for line in lines[:d0]:
        pm = re.match(rf"\s*b(\d+)\s*=\s*({_NUM})\s+({_NUM})\s+({_NUM})\s+"
                      rf"({_NUM})", line)
        if pm:
            params.append([float(pm.group(i)) for i in range(2, 6)])
    params = np.array(params)
    rm = re.search(rf"Residual Sum of Squares:\s+({_NUM})", head +
                   "\n".join(lines[60:d0]))
    rss = float(rm.group(1)) if rm else float("nan")
    formula = ""
    for i, line in enumerate(lines[:d0]):
        if line.startswith("Model:"):
            body = []
            for ln in lines[i + 2:d0]:      # after the class, the count
                if "Starting" in ln:
                    break
                if ln.strip():
                    body.append(ln.strip())
            formula = " ".join(body)
            break
    y = data[:, 0]
    x = data[:, 1] if data.shape[1] == 2 else data[:, 1:].T.copy()
    if key == "Nelson":
        y = np.log(y)
    model = _MODELS[key]
    return NistProblem(
        name=key, difficulty=_ALL[key], x=x, y=y, model=model,
        jac=_JACS.get(key) or _complex_step_jac(model), start1=params[:, 0].copy(),
        start2=params[:, 1].copy(), certified=params[:, 2].copy(),
        certified_sd=params[:, 3].copy(), rss=rss, formula=formula)
