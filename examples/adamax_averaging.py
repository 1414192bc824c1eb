"""Sections 7.1-7.2 of Kingma & Ba (2015): AdaMax and temporal averaging.

AdaMax replaces Adam's second-moment estimate by an exponentially weighted
infinity norm ``u = max(beta2 * u, |g|)``; temporal averaging keeps an
exponential moving average of the parameters, ``avg = d * avg + (1 - d) *
theta``, read out bias-corrected as ``avg / (1 - d ** t)`` (the paper's
section 7.2). With a constant learning rate the last iterate of a stochastic
method keeps bouncing around the optimum, with an excess loss proportional to
the learning rate; the average cancels most of that noise.

The problem: noisy least squares, ``y = A theta* + noise`` with 10,000 rows,
20 ill-scaled columns (scales from 1 to 30) and noise of standard deviation
1, minibatches of 10, constant learning rates from a grid (AdaMax's grid is
twice Adam's, the paper's default ratio). Both optimizers run with
``ema_decay=0.999`` (adamsci fuses the average into the update kernel);
``opt.averaged(state)`` gives the averaged iterate. The figure of merit is
the excess loss ``L(theta) - L(theta_opt)`` averaged over the last quarter
of training and over seeds (data noise and minibatch order). To be fair to
the last iterate, each kind of iterate gets its own best learning rate of
the grid: a small rate makes the last iterate quiet but slow.

Claims checked: for both Adam and AdaMax the averaged iterate (at its best
rate) has a much lower excess loss than the last iterate (at its best rate):
below 0.5 x, and it fluctuates less (lower standard deviation over the last
quarter); AdaMax's best last iterate is comparable to Adam's (within 3 x).

Run ``python examples/adamax_averaging.py`` (full: 20 epochs, 5 seeds,
figure to docs/_static/adamax_averaging.png) or with ``--quick``.
"""
import sys

import numpy as np

from _common import Claims, Timer, parse_args, plot_curves, table, train

import adamsci

N, D, BATCH, EMA = 10_000, 20, 10, 0.999
GRID = [3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1]
LEARNING_RATES = {"Adam": GRID, "AdaMax": [2 * lr for lr in GRID]}


def problem(seed):
    """Noisy least squares: flat theta, minibatch gradient, excess loss."""
    rng = np.random.default_rng(seed)
    scales = np.logspace(0, np.log10(30), D)
    A = rng.standard_normal((N, D)) * scales
    theta_true = rng.standard_normal(D) / scales
    y = A @ theta_true + rng.standard_normal(N)
    H = A.T @ A / N                      # loss = 0.5 x'Hx - b'x + c
    b = A.T @ y / N
    theta_opt = np.linalg.solve(H, b)

    def excess(theta):                   # L(theta) - L(theta_opt)
        d = theta - theta_opt
        return 0.5 * float(d @ H @ d)

    def grad(theta, idx, rng):
        Ab = A[idx]
        return Ab.T @ (Ab @ theta - y[idx]) / len(idx)

    return np.zeros(D), grad, excess


def run(name, lr, seed, epochs, every=50):
    """One run: steps, excess loss of the last and the averaged iterate."""
    theta0, grad, excess = problem(seed)
    cls = adamsci.Adam if name == "Adam" else adamsci.AdaMax
    opt = cls(lr, ema_decay=EMA)
    steps, raw, avg = [], [], []

    def record(theta, state):
        t = int(state.step[0])
        if t % every == 0:
            steps.append(t)
            raw.append(excess(theta))
            avg.append(excess(opt.averaged(state)))

    train(opt, theta0, grad, excess, N, BATCH, epochs, seed=seed,
          evals_per_epoch=1, on_step=record)
    return np.array(steps), np.array(raw), np.array(avg)


def main(argv=None):
    args = parse_args(__doc__.splitlines()[0], argv)
    epochs, seeds = (3, 2) if args.quick else (20, 3)
    seeds = [args.seed + k for k in range(seeds)]
    results = {}
    with Timer() as t:
        for name, lrs in LEARNING_RATES.items():
            for lr in lrs:
                results[name, lr] = [run(name, lr, s, epochs) for s in seeds]
    n_steps = epochs * N // BATCH
    print(f"\nnoisy least squares ({N} x {D}), minibatch {BATCH}, {n_steps} "
          f"steps, ema_decay={EMA}, {len(seeds)} seeds ({t.seconds:.1f} s)")

    def tail(r, col):                    # the last quarter of a curve
        return r[col][len(r[col]) * 3 // 4:]

    stats = {}                           # (name, kind, lr) -> (mean, std)
    for (name, lr), runs in results.items():
        for kind, col in (("last iterate", 1), ("averaged", 2)):
            stats[name, kind, lr] = (
                float(np.mean([tail(r, col).mean() for r in runs])),
                float(np.mean([tail(r, col).std() for r in runs])))
    rows = []
    for name, lrs in LEARNING_RATES.items():
        for lr in lrs:
            raw, avg = (stats[name, k, lr][0] for k in ("last iterate",
                                                        "averaged"))
            rows.append([name, f"{lr:g}", raw, avg, f"{avg / raw:.3g}"])
    table(["optimizer", "lr", "last iterate", "averaged", "ratio"], rows,
          floatfmt=".3e",
          title="excess loss over the last quarter (mean over seeds)")

    summary, rows, curves = {}, [], {}
    for name, lrs in LEARNING_RATES.items():
        for kind, col in (("last iterate", 1), ("averaged", 2)):
            lr = min(lrs, key=lambda lr: stats[name, kind, lr][0])
            mean, std = stats[name, kind, lr]
            final = [float(r[col][-1]) for r in results[name, lr]]
            summary[name, kind] = (mean, std)
            rows.append([name, kind, f"{lr:g}", mean, std,
                         float(np.mean(final)), float(np.std(final))])
            steps = results[name, lr][0][0]
            curves[f"{name} {kind} (lr={lr:g})"] = (
                steps, results[name, lr][0][col])
    table(["optimizer", "iterate", "best lr", "excess (last 1/4)",
           "std (last 1/4)", "final excess", "std over seeds"], rows,
          floatfmt=".3e",
          title="each iterate at its best learning rate")
    plot_curves(args.out / "adamax_averaging.png", curves,
                f"Noisy least squares, seed {seeds[0]}: last iterate vs "
                f"temporal average (ema_decay={EMA}), best lr of each",
                xlabel="step", ylabel="excess loss")

    claims = Claims()
    for name in LEARNING_RATES:
        (m_raw, s_raw), (m_avg, s_avg) = (summary[name, "last iterate"],
                                          summary[name, "averaged"])
        claims.check(m_avg < 0.5 * m_raw,
                     f"{name}: averaged excess loss {m_avg:.2e} < 0.5 x the "
                     f"last iterate's {m_raw:.2e} ({m_avg / m_raw:.2f} x)")
        claims.check(s_avg < 0.5 * s_raw,
                     f"{name}: averaged iterate fluctuates less: std "
                     f"{s_avg:.2e} < 0.5 x {s_raw:.2e}")
    a, m = (summary[n, "last iterate"][0] for n in ("Adam", "AdaMax"))
    claims.check(max(a, m) / min(a, m) < 3,
                 f"AdaMax's last-iterate excess loss {m:.2e} within 3 x "
                 f"Adam's {a:.2e}")
    return claims.finish()


if __name__ == "__main__":
    sys.exit(main())
