"""Rolling-origin backtests on synthetic ladders drawn from a law *outside* the fitted family.

Each ladder has ``--budgets`` IsoFLOP budgets over 1e17..1e21 FLOPs (``--sizes`` models each) drawn from
one of two laws Chinchilla's form cannot express, with log-normal noise:

* ``interaction``: ``E + A/N^alpha + B/D^beta + F/(N^alpha D^beta)`` (the data term shrinks with size);
* ``curving``: ``E + A/N^alpha + B/D^beta(N)`` with ``beta(N) = beta + 0.02 log10(N / 1e8)`` (an exponent
  that drifts with scale, in the spirit of Farseer).

``scalinglab.analysis.backtest_runs`` fits the chosen law at every cut (bootstrap and its own
rolling-origin extrapolation error, exactly as ``scalinglab fit`` does, seeing only the runs up to
the cut) and predicts the runs beyond it. Printed: error and 95% prediction-interval coverage (with
binomial standard error) by extrapolation factor, pooled over ladders, and the median half-width.

    python benchmarks/bench_backtest.py [--truth interaction] [--ladders 20] [--law chinchilla] [--json]
"""
from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

from scalinglab import analysis
from scalinglab.laws import ChinchillaLaw, InteractionLaw
from scalinglab.store import Run

BASE = {"E": 1.69337, "A": 406.401, "B": 410.723, "alpha": 0.33917, "beta": 0.28491}


def true_loss(truth: str, N, D):
    if truth == "interaction":
        return InteractionLaw._predict_from(dict(BASE, F=4.0e4), N, D)
    if truth == "curving":
        beta = BASE["beta"] + 0.02 * np.log10(N / 1e8)
        return BASE["E"] + BASE["A"] * N ** -BASE["alpha"] + BASE["B"] * D ** -beta
    return ChinchillaLaw._predict_from(BASE, N, D)


def ladder_runs(seed: int, truth: str, budgets: np.ndarray, sizes: int, noise: float) -> list[Run]:
    rng = np.random.default_rng(seed)
    N = np.concatenate([ChinchillaLaw._frontier(BASE, c)[0] * np.geomspace(0.25, 4.0, sizes) for c in budgets])
    D = np.repeat(budgets, sizes) / (6 * N)
    L = true_loss(truth, N, D) * np.exp(rng.normal(0, noise, N.size))
    return [Run(run_id=f"{seed}-{i}", name=f"r{i}", source="synthetic", n_total=float(n), tokens=float(d),
                final_loss=float(l)) for i, (n, d, l) in enumerate(zip(N, D, L))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--truth", default="interaction", choices=["interaction", "curving", "chinchilla"])
    ap.add_argument("--law", default="chinchilla", choices=list(analysis.ND_FORMS))
    ap.add_argument("--ladders", type=int, default=20)
    ap.add_argument("--budgets", type=int, default=9)
    ap.add_argument("--sizes", type=int, default=7)
    ap.add_argument("--noise", type=float, default=0.01)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--axis", default="C", choices=["C", "N", "both"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    budgets = np.logspace(17, 21, args.budgets)
    rows, failed = [], 0
    t0 = time.perf_counter()
    for s in range(args.ladders):
        runs = ladder_runs(s, args.truth, budgets, args.sizes, args.noise)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = analysis.backtest_runs(runs, [args.law], axis=args.axis, n_bootstrap=args.bootstrap, seed=s)
        r = res["results"][args.law]
        rows += r["predictions"]
        failed += len(r["failed_cuts"])
    summary = analysis.summarise_predictions(rows, 0.95)
    out = {"truth": args.truth, "law": args.law, "ladders": args.ladders, "budgets": budgets.tolist(),
           "sizes": args.sizes, "noise": args.noise, "bootstrap": args.bootstrap, "axis": args.axis,
           "failed_cuts": failed, "seconds": time.perf_counter() - t0, **summary}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"truth {args.truth}, law {args.law}: {args.ladders} ladders, {len(rows)} forecasts, {failed} cut fits refused, "
          f"{out['seconds']:.0f} s")
    print(f"{'factor':>10}{'n':>6}{'mean |err|':>12}{'coverage':>10}{'± se':>7}{'median half-width':>19}")
    for b in summary["by_factor"] + [dict(summary["overall"], bin="all")]:
        print(f"{b['bin']:>10}{b['n']:>6}{b['mean_abs_rel_error']:>12.2%}{b['coverage']:>10.3f}{b['coverage_se']:>7.3f}"
              f"{b['median_rel_half_width']:>19.2%}")


if __name__ == "__main__":
    main()
