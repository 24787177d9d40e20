"""Calibration benchmark: do the intervals of a Chinchilla fit cover the truth as often as they say?

Draws ``--ladders`` synthetic IsoFLOP ladders from a known law with log-normal noise, fits each with
``ChinchillaLaw`` (bootstrap + rolling-origin extrapolation error, the defaults of ``scalinglab fit``)
and counts how often the 80% and 95% intervals contain:

* each true parameter (E, A, B, alpha, beta) and the frontier exponent a (confidence intervals);
* the true loss at the compute-optimal point of 10x the largest budget (confidence interval);
* a new noisy run at that point (prediction interval).

Coverage is printed with its binomial standard error; the target is within 0.05 of nominal. The
width columns compare the median interval width with the "ideal" one: the same quantile range of the
estimates across the replicated ladders.

``--truth interaction`` draws from a law outside the fitted family (an N-dependent data term,
``F / (N^alpha D^beta)``), where only the prediction interval at 10x is scored (parameters have no
true value in the fitted family).

    python benchmarks/bench_calibration.py [--ladders 100] [--bootstrap 1000] [--truth chinchilla] [--json]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from scalinglab.laws import ChinchillaLaw, FitError, InteractionLaw

TRUE = {"E": 1.69337, "A": 406.401, "B": 410.723, "alpha": 0.33917, "beta": 0.28491}
TRUE_INTERACTION = dict(TRUE, F=4.0e4)
LEVELS = (0.8, 0.95)


def ladder(seed: int, truth: str, noise: float, budgets: np.ndarray, sizes: int):
    """One synthetic IsoFLOP ladder: ``sizes`` models per budget spanning 1/4..4x the true N_opt."""
    rng = np.random.default_rng(seed)
    N = np.concatenate([ChinchillaLaw._frontier(TRUE, c)[0] * np.geomspace(0.25, 4.0, sizes) for c in budgets])
    C = np.repeat(budgets, sizes)
    D = C / (6 * N)
    return N, D, true_loss(truth, N, D) * np.exp(rng.normal(0, noise, N.size))


def true_loss(truth, N, D):
    if truth == "interaction":
        return InteractionLaw._predict_from(TRUE_INTERACTION, N, D)
    return ChinchillaLaw._predict_from(TRUE, N, D)


def target_point(truth: str, C: float):
    """The true law's compute-optimal (N, D) at C (numerically for the interaction law)."""
    logn = np.linspace(np.log(1e6), np.log(1e13), 4000)
    n = np.exp(logn)
    loss = true_loss(truth, n, C / (6 * n))
    i = int(np.argmin(loss))
    return float(n[i]), float(C / (6 * n[i]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ladders", type=int, default=100)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--bootstrap-kind", default="pairs", choices=["pairs", "residual"])
    ap.add_argument("--truth", default="chinchilla", choices=["chinchilla", "interaction"])
    ap.add_argument("--noise", type=float, default=0.015)
    ap.add_argument("--budgets", type=int, default=5, help="IsoFLOP budgets, log-spaced over 1e18..1e20")
    ap.add_argument("--sizes", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    budgets = np.logspace(18, 20, args.budgets)
    n10, d10 = target_point(args.truth, 10 * budgets[-1])
    l10 = float(true_loss(args.truth, n10, d10))
    a_true = TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"])
    truth = dict(TRUE, a=a_true, loss_10x=l10)
    keys = (list(truth) if args.truth == "chinchilla" else []) + ["loss_10x_new_run"]
    hits = {k: {lv: [] for lv in LEVELS} for k in keys}
    widths = {k: {lv: [] for lv in LEVELS} for k in keys}
    estimates = {k: [] for k in keys}
    kappas, dropped, refused = [], [], 0
    t0 = time.perf_counter()
    for s in range(args.ladders):
        N, D, L = ladder(s, args.truth, args.noise, budgets, args.sizes)
        try:
            law = ChinchillaLaw(n_bootstrap=args.bootstrap, seed=s, bootstrap=args.bootstrap_kind).fit(N, D, L)
        except FitError:
            refused += 1
            continue
        kappas.append(law.extrapolation_["kappa"] or 0.0)
        dropped.append(law.bootstrap_dropped_)
        new_run = l10 * float(np.exp(np.random.default_rng(10_000 + s).normal(0, args.noise)))
        p = law.all_params()
        for lv in LEVELS:
            iv = law.intervals(lv)
            ci = [float(x[0]) for x in law.predict_interval(n10, d10, kind="confidence", level=lv)]
            pi = [float(x[0]) for x in law.predict_interval(n10, d10, kind="prediction", level=lv)]
            for k in keys:
                lo, hi = {"loss_10x": ci, "loss_10x_new_run": pi}.get(k, iv.get(k, [np.nan, np.nan]))
                value = new_run if k == "loss_10x_new_run" else truth[k]
                hits[k][lv].append(lo <= value <= hi)
                widths[k][lv].append(hi - lo)
        for k in keys:
            estimates[k].append(float(law.predict(n10, d10)) if k.startswith("loss") else p[k])
    elapsed = time.perf_counter() - t0
    rows = []
    for k in keys:
        for lv in LEVELS:
            h = np.array(hits[k][lv], bool)
            cov = float(h.mean())
            est = np.array(estimates[k])
            if k == "loss_10x_new_run":   # a new run's spread: the estimate's plus the noise
                est = est * np.exp(np.random.default_rng(1).normal(0, args.noise, est.size))
            tail = 50 * (1 - lv)
            ideal = float(np.diff(np.percentile(est, [tail, 100 - tail]))[0])
            rows.append({"quantity": k, "level": lv, "coverage": cov, "se": float(np.sqrt(cov * (1 - cov) / h.size)),
                         "within_target": bool(abs(cov - lv) <= 0.05), "median_width": float(np.median(widths[k][lv])),
                         "ideal_width": ideal, "width_ratio": float(np.median(widths[k][lv]) / ideal)})
    out = {"truth": args.truth, "ladders": args.ladders, "fitted": args.ladders - refused, "refused": refused,
           "bootstrap": args.bootstrap, "bootstrap_kind": args.bootstrap_kind, "noise": args.noise,
           "budgets": budgets.tolist(), "sizes": args.sizes, "target": {"N": n10, "D": d10, "loss": l10, "C": 10 * budgets[-1]},
           "kappa_median": float(np.median(kappas)), "kappa_nonzero_share": float(np.mean(np.array(kappas) > 0)),
           "bootstrap_dropped_mean": float(np.mean(dropped)), "seconds": elapsed, "rows": rows}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{out['fitted']} of {args.ladders} ladders fitted ({refused} refused), truth {args.truth}, {args.bootstrap} "
          f"{args.bootstrap_kind} bootstrap, noise {args.noise}, {elapsed:.0f} s")
    print(f"kappa: median {out['kappa_median']:.3g}, nonzero in {out['kappa_nonzero_share']:.0%}; "
          f"non-converged refits dropped per fit: {out['bootstrap_dropped_mean']:.1f}")
    print(f"{'quantity':<18}{'level':>6}{'coverage':>10}{'± se':>7}{'target':>8}{'width/ideal':>13}")
    for r in rows:
        print(f"{r['quantity']:<18}{r['level']:>6.2f}{r['coverage']:>10.3f}{r['se']:>7.3f}"
              f"{'ok' if r['within_target'] else 'MISS':>8}{r['width_ratio']:>13.2f}")


if __name__ == "__main__":
    main()
