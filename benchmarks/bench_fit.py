"""Approach-3 fit benchmark: scalinglab vs the PyPI package ``chinchilla`` (the peer).

240 synthetic runs drawn from the Chinchilla-2022 law (8 IsoFLOP budgets x 30 sizes, 1% log-normal
noise). Both fit Huber(delta=1e-3) on log-loss from the same 4,500-start grid; scalinglab's time
includes 1,000 bootstrap resamples, the peer's is one fit (the rolling-origin extrapolation-error
calibration, on by default in ``scalinglab fit``, is timed separately). Both solutions are scored with the same
summed objective. Target: scalinglab >= 10x faster at an equal or lower objective.

    pip install -e ".[bench]"   # adds chinchilla==0.2.0
    python benchmarks/bench_fit.py [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

from scalinglab.laws import ChinchillaLaw, _engine
from scalinglab.laws.presets import CHINCHILLA_2022

TRUE = CHINCHILLA_2022


def synthetic_runs(seed: int = 0, noise: float = 0.01):
    rng = np.random.default_rng(seed)
    budgets = np.logspace(18, 22, 8)
    N = np.concatenate([np.logspace(7.3, 10.2, 30) * (c / 1e20) ** 0.1 for c in budgets])
    C = np.repeat(budgets, 30)
    D = C / (6 * N)
    L = ChinchillaLaw._predict_from(TRUE, N, D) * np.exp(rng.normal(0, noise, N.size))
    return N, D, L


def summed_objective(params: dict, N, D, L, delta=1e-3) -> float:
    theta = np.array([[np.log(params["A"]), np.log(params["B"]), params["alpha"], params["beta"], np.log(params["E"])]])
    return float(_engine.objective(theta, np.log(np.column_stack([N, D])), np.log(L), ChinchillaLaw._spec, delta)[0])


def run_ours(N, D, L, n_bootstrap=1000, extrapolation_error=False):
    t0 = time.perf_counter()
    law = ChinchillaLaw(n_bootstrap=n_bootstrap, extrapolation_error=extrapolation_error).fit(N, D, L)
    return law, time.perf_counter() - t0


def run_peer(N, D, L):
    import pandas as pd
    from chinchilla import Chinchilla
    from chinchilla._metrics import log_huber

    with tempfile.TemporaryDirectory() as tmp:
        pd.DataFrame({"C": 6 * N * D, "N": N, "D": D, "loss": L}).to_csv(os.path.join(tmp, "df.csv"), index=False)
        grid = {"e": np.arange(-1, 1.01, 0.5), "a": np.arange(0, 26, 5.0), "b": np.arange(0, 26, 5.0),
                "alpha": np.arange(0, 2.01, 0.5), "beta": np.arange(0, 2.01, 0.5)}
        cc = Chinchilla(tmp, param_grid=grid, loss_fn=lambda y, p: log_huber(y, p, delta=1e-3), log_level=40)
        t0 = time.perf_counter()
        cc.fit(parallel=True)
        elapsed = time.perf_counter() - t0
        return {k: float(v) for k, v in cc.get_params().items()}, elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--no-peer", action="store_true")
    args = ap.parse_args()
    N, D, L = synthetic_runs()
    law, ours_s = run_ours(N, D, L, args.bootstrap)
    _, full_s = run_ours(N, D, L, args.bootstrap, extrapolation_error=True)
    ci = law.intervals()
    result = {
        "n_runs": int(N.size), "n_starts": 4500, "n_bootstrap": args.bootstrap,
        "ours_seconds": ours_s, "ours_with_extrapolation_error_seconds": full_s, "ours_objective": summed_objective(law.params_, N, D, L),
        "ours_params": law.params_, "true_params": TRUE,
        "true_inside_95ci": {k: bool(ci[k][0] <= TRUE[k] <= ci[k][1]) for k in TRUE},
    }
    if not args.no_peer:
        peer_params, peer_s = run_peer(N, D, L)
        result.update({"peer": "chinchilla==0.2.0 (BFGS, 4,500 starts, 2 processes, no bootstrap)",
                       "peer_seconds": peer_s, "peer_objective": summed_objective(peer_params, N, D, L),
                       "peer_params": peer_params, "speedup": peer_s / ours_s})
        result["target_met"] = bool(result["speedup"] >= 10 and result["ours_objective"] <= result["peer_objective"] * (1 + 1e-9))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"runs={result['n_runs']} starts=4500 bootstrap={args.bootstrap}")
    print(f"scalinglab: {ours_s:8.2f} s  objective {result['ours_objective']:.6g}  params {law}")
    print(f"scalinglab with the rolling-origin extrapolation-error calibration (the default of fit): {full_s:.2f} s")
    for k in TRUE:
        print(f"   {k:6s} true {TRUE[k]:10.5g}  fit {law.params_[k]:10.5g}  95% CI [{ci[k][0]:.5g}, {ci[k][1]:.5g}]")
    if not args.no_peer:
        print(f"peer      : {result['peer_seconds']:8.2f} s  objective {result['peer_objective']:.6g}  params {peer_params}")
        print(f"speed-up {result['speedup']:.1f}x  target (>=10x, objective <= peer) met: {result['target_met']}")


if __name__ == "__main__":
    main()
