"""pass@k at scale, checked against exact rational arithmetic (``fractions`` + ``math.comb``).

* equal n: 1e4 problems x 1e4 samples x 100 values of k (target: about a second);
* any n: 1,000 problems with 900 distinct sample counts (up to 1e4, and up to 1e6) x 100 values of k,
  timed against a plain log-gamma reference in the same process (target: within 2x of it at n up to
  1e4; beyond that plain log-gamma loses digits and the exact product it falls back to costs more)
  and checked against the exact value (target: |error| <= 1e-10).

    python benchmarks/bench_passk.py [--json]
"""
from __future__ import annotations

import argparse
import json
import time
from fractions import Fraction
from math import comb

import numpy as np
from scipy.special import gammaln

from scalinglab.testtime import pass_at_k

TARGET_RATIO_TO_LGAMMA = 2.0
TARGET_ERROR = 1e-10


def lgamma_reference(n, c, ks) -> np.ndarray:
    """The textbook closed form: 1 - exp(lnC(n-c, k) - lnC(n, k)) by log-gamma, no precision care."""
    n, c, k = n[:, None].astype(float), c[:, None].astype(float), ks[None, :].astype(float)
    with np.errstate(invalid="ignore"):
        logfail = gammaln(n - c + 1) - gammaln(n - c - k + 1) - gammaln(n + 1) + gammaln(n - k + 1)
    return np.where(c == 0, 0.0, np.where(n - c < k, 1.0, -np.expm1(logfail)))


def worst_errors(n, c, ks, res, rng, n_checks: int) -> tuple[float, float]:
    """Largest absolute and relative error against exact fractions on random (problem, k) pairs."""
    worst_abs = worst_rel = 0.0
    for i in rng.choice(n.size, n_checks, replace=False):
        for j in rng.choice(ks.size, 5, replace=False):
            k = int(ks[j])
            exact = 1 - Fraction(comb(int(n[i] - c[i]), k), comb(int(n[i]), k))
            err = abs(float(exact) - res[i, j])
            worst_abs = max(worst_abs, err)
            if exact:
                worst_rel = max(worst_rel, err / float(exact))
    return worst_abs, worst_rel


def best_of(f, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times)


def hundred_ks(n_max: int, rng) -> np.ndarray:
    ks = np.unique(np.round(np.geomspace(1, n_max, 100)).astype(int))
    while ks.size < 100:   # top up to exactly 100 distinct k
        ks = np.unique(np.concatenate([ks, rng.integers(1, n_max, 100 - ks.size)]))
    return ks


def equal_n(args, rng) -> dict:
    n = np.full(args.problems, args.samples)
    c = rng.binomial(args.samples, rng.beta(0.3, 3.0, args.problems))
    ks = hundred_ks(args.samples, rng)
    t0 = time.perf_counter()
    res = pass_at_k(n, c, ks)
    seconds = time.perf_counter() - t0
    err_abs, err_rel = worst_errors(n, c, ks, res, rng, 20)
    return {"problems": args.problems, "samples": args.samples, "k_values": int(ks.size), "seconds": seconds,
            "max_abs_error_vs_exact": err_abs, "max_rel_error_vs_exact": err_rel}


def any_n(n_max: int, rng, repeats: int) -> dict:
    n = np.concatenate([rng.choice(np.arange(100, n_max + 1), 900, replace=False), np.zeros(100, int)])
    n[900:] = rng.choice(n[:900], 100)                       # 1,000 problems, 900 distinct n
    c = rng.binomial(n, rng.beta(0.3, 3.0, n.size))
    ks = np.arange(1, 101)
    res = pass_at_k(n, c, ks)
    ours = best_of(lambda: pass_at_k(n, c, ks), repeats)
    ref = best_of(lambda: lgamma_reference(n, c, ks), repeats)
    err_abs, err_rel = worst_errors(n, c, ks, res, rng, 60)
    ref_abs, ref_rel = worst_errors(n, c, ks, lgamma_reference(n, c, ks), np.random.default_rng(7), 60)
    return {"problems": int(n.size), "distinct_n": int(np.unique(n).size), "n_max": n_max, "k_values": int(ks.size),
            "seconds": ours, "lgamma_reference_seconds": ref, "ratio_to_lgamma": ours / ref,
            "max_abs_error_vs_exact": err_abs, "max_rel_error_vs_exact": err_rel,
            "lgamma_reference_max_abs_error": ref_abs, "lgamma_reference_max_rel_error": ref_rel,
            "meets_targets": bool((n_max > 10_000 or ours / ref <= TARGET_RATIO_TO_LGAMMA) and err_abs <= TARGET_ERROR)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--problems", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    out = {"equal_n": equal_n(args, rng), "any_n": [any_n(m, rng, args.repeats) for m in (10_000, 1_000_000)]}
    if args.json:
        print(json.dumps(out, indent=2))
        return
    e = out["equal_n"]
    print(f"equal n: {e['problems']:,} problems x {e['samples']:,} samples x {e['k_values']} k: {e['seconds']:.3f} s; "
          f"max |error| vs exact fractions: {e['max_abs_error_vs_exact']:.1e} (relative {e['max_rel_error_vs_exact']:.1e})")
    for a in out["any_n"]:
        print(f"any n ({a['problems']:,} problems, {a['distinct_n']} distinct n up to {a['n_max']:,}, {a['k_values']} k): "
              f"{a['seconds'] * 1e3:.1f} ms, {a['ratio_to_lgamma']:.2f}x the plain log-gamma form (target <= "
              f"{TARGET_RATIO_TO_LGAMMA:g}x at n <= 1e4); max error vs exact {a['max_abs_error_vs_exact']:.1e} abs, "
              f"{a['max_rel_error_vs_exact']:.1e} rel (plain log-gamma: {a['lgamma_reference_max_abs_error']:.1e} abs, "
              f"{a['lgamma_reference_max_rel_error']:.1e} rel; target <= {TARGET_ERROR:g}) "
              f"{'OK' if a['meets_targets'] else 'MISSED'}")


if __name__ == "__main__":
    main()
