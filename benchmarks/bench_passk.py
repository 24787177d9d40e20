"""Vectorised pass@k: 1e4 problems x 1e4 samples x 100 values of k (target: about a second), checked
against the exact formula on a random subset.

    python benchmarks/bench_passk.py [--json]
"""
from __future__ import annotations

import argparse
import json
import time
from fractions import Fraction
from math import comb

import numpy as np

from scalinglab.testtime import pass_at_k


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--problems", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=10_000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = np.full(args.problems, args.samples)
    c = rng.binomial(args.samples, rng.beta(0.3, 3.0, args.problems))
    ks = np.unique(np.round(np.geomspace(1, args.samples, 100)).astype(int))
    while ks.size < 100:   # top up to exactly 100 distinct k
        ks = np.unique(np.concatenate([ks, rng.integers(1, args.samples, 100 - ks.size)]))
    t0 = time.perf_counter()
    res = pass_at_k(n, c, ks)
    seconds = time.perf_counter() - t0
    check = rng.choice(args.problems, 20, replace=False)
    worst = 0.0
    for i in check:
        for j in rng.choice(ks.size, 5, replace=False):
            k = int(ks[j])
            exact = float(1 - Fraction(comb(int(n[i] - c[i]), k), comb(int(n[i]), k)))
            worst = max(worst, abs(exact - res[i, j]))
    out = {"problems": args.problems, "samples": args.samples, "k_values": int(ks.size), "seconds": seconds,
           "max_abs_error_vs_exact": worst}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"pass@k for {args.problems:,} problems x {args.samples:,} samples x {ks.size} k: {seconds:.3f} s; "
              f"max |error| vs exact fractions on 100 spot checks: {worst:.2e}")


if __name__ == "__main__":
    main()
