"""Recipe-comparison calibration: how often do the multiplier's intervals cover a planted truth, and how
often does the verdict name the planted trend?

Draws ``--pairs`` synthetic paired ladders (baseline and candidate, 5 budgets 1e18-1e20 x 7 sizes, log-normal
noise) from two known Chinchilla laws, runs :func:`scalinglab.comparison.compare_recipes` on each and
counts, per planted case:

* ``constant``: the candidate reaches the baseline's loss with 2x less compute at every scale (runs at
  (N, D) score what the baseline scores at (sqrt2 N, sqrt2 D));
* ``growing`` / ``shrinking``: alpha and beta larger / smaller by 0.02, A and B scaled so the multiplier is
  1.5 at 1e19 (it grows / shrinks with compute, slope about +-0.065 per e-fold of C);
* ``same``: the same law (multiplier 1).

Reported: the share of budgets whose 95% interval covers the true multiplier, the coverage of the true
slope d log m / d log C, and the share of each verdict.

    python benchmarks/bench_compare.py [--pairs 40] [--bootstrap 200] [--noise 0.005] [--cases same,...] [--json]
"""
from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np

from scalinglab.comparison import compare_recipes, compute_multiplier
from scalinglab.laws import ChinchillaLaw
from scalinglab.store import Run

BASE = {"E": 1.69337, "A": 406.401, "B": 410.723, "alpha": 0.33917, "beta": 0.28491}
BUDGETS = np.logspace(18, 20, 5)


def exponents_changed(delta: float, at_middle: float = 1.5) -> dict:
    """alpha and beta changed by ``delta``, A and B scaled together so the multiplier is ``at_middle`` at 1e19."""
    cand = dict(BASE, alpha=BASE["alpha"] + delta, beta=BASE["beta"] + delta)
    m1 = compute_multiplier(BASE, cand, 1e19)
    m2 = compute_multiplier(BASE, dict(cand, A=2 * cand["A"], B=2 * cand["B"]), 1e19)
    f = math.exp(math.log(m1 / at_middle) / (math.log(m1 / m2) / math.log(2)))
    return dict(cand, A=f * cand["A"], B=f * cand["B"])


CASES = {"constant": dict(BASE, A=BASE["A"] * 2 ** (-BASE["alpha"] / 2), B=BASE["B"] * 2 ** (-BASE["beta"] / 2)),
         "growing": exponents_changed(0.02), "shrinking": exponents_changed(-0.02), "same": dict(BASE)}


def ladder(name: str, law: dict, seed: int, noise: float, sizes: int = 7) -> list[Run]:
    rng = np.random.default_rng(seed)
    runs = []
    for c in BUDGETS:
        for n in ChinchillaLaw._frontier(law, c)[0] * np.geomspace(0.25, 4.0, sizes):
            d = c / (6 * n)
            loss = float(ChinchillaLaw._predict_from(law, n, d) * math.exp(rng.normal(0, noise)))
            runs.append(Run(run_id=f"{name}{len(runs)}", name=name, source="bench", family=name, n_active=n, tokens=d,
                            flops_6nd=c, final_loss=loss, budget=c))
    return runs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=40)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--noise", type=float, default=0.005)
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated planted cases")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    if not cases or set(cases) - set(CASES):
        ap.error(f"--cases takes {', '.join(CASES)}")
    out = {"pairs": args.pairs, "bootstrap": args.bootstrap, "noise": args.noise, "cases": {}}
    t0 = time.perf_counter()
    for case in cases:
        cand = CASES[case]
        true_m = np.log(compute_multiplier(BASE, cand, BUDGETS))
        true_slope = (true_m[-1] - true_m[0]) / math.log(BUDGETS[-1] / BUDGETS[0])
        covered, slope_covered, verdicts = [], [], {}
        for i in range(args.pairs):
            res = compare_recipes({"base": ladder("base", BASE, 2 * i, args.noise),
                                   "cand": ladder("cand", cand, 2 * i + 1, args.noise)},
                                  "base", n_bootstrap=args.bootstrap, seed=i)
            c = res["candidates"]["cand"]
            verdicts[c["verdict"]] = verdicts.get(c["verdict"], 0) + 1
            covered += [r["interval"] is not None and r["interval"][0] <= math.exp(t) <= r["interval"][1]
                        for r, t in zip(c["budgets"], true_m)]
            iv = c["slope"]["interval"]
            slope_covered.append(iv is not None and iv[0] <= true_slope <= iv[1])
        out["cases"][case] = {"true_multiplier": np.exp(true_m).round(3).tolist(), "true_slope": true_slope,
                              "multiplier_coverage": float(np.mean(covered)), "slope_coverage": float(np.mean(slope_covered)),
                              "verdicts": {k: v / args.pairs for k, v in verdicts.items()}}
    out["seconds"] = time.perf_counter() - t0
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for case, r in out["cases"].items():
        print(f"{case:9s} true m {r['true_multiplier']} slope {r['true_slope']:+.3f}: multiplier coverage "
              f"{r['multiplier_coverage']:.2f}, slope coverage {r['slope_coverage']:.2f}, verdicts {r['verdicts']}")
    print(f"{out['seconds']:.0f} s")


if __name__ == "__main__":
    main()
