"""Synthetic-ladder benchmark of the task-ladder forecast (Bhagia et al. 2024): does the forecast of a
large target model's accuracy land inside its interval as often as it says?

Each draw is a ladder like the OLMo one: 4 sizes (190M-1.3B) x 4 token multipliers (20-200 tokens per
parameter), 8 checkpoints per run from half-way to the end. Task loss follows a known step-1 law
``E + A/N^alpha + B/D^beta`` at the final checkpoint; an intermediate checkpoint sits above it (its learning
rate has not decayed: +3% at half-way, shrinking linearly to 0 at the end), with 0.5% log-normal
checkpoint noise. Accuracy is the known step-2 sigmoid of task loss (chance 0.25, ceiling 0.9) plus
Gaussian checkpoint noise (sd 0.01). The target is a 6.9B model trained on 4T tokens (about 80x the
ladder's largest compute); its observed score carries the same checkpoint noise.

Counts how often the 95% prediction interval contains the target's observed score and the 95%
confidence interval its noise-free score, with binomial standard errors, the mean absolute error in
points, and the variants the rolling-origin backtest chose.

    python benchmarks/bench_task_ladder.py [--draws 100] [--bootstrap 200] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from scalinglab.forecast.tasklaws import LadderPoints, TaskLadderForecast, accuracy_of_loss

STEP1 = {"E": 0.55, "A": 120.0, "B": 900.0, "alpha": 0.28, "beta": 0.32}
STEP2 = {"ceiling": 0.9, "k": 6.0, "L0": 1.0}
CHANCE = 0.25
SIZES = (1.9e8, 3.7e8, 7.6e8, 1.3e9)
MULTIPLIERS = (1, 2, 5, 10)                # x 20 tokens per parameter
TARGET = (6.9e9, 4.0e12)
LOSS_NOISE, SCORE_NOISE = 0.005, 0.01


def task_loss(N, D):
    return STEP1["E"] + STEP1["A"] * N ** -STEP1["alpha"] + STEP1["B"] * D ** -STEP1["beta"]


def draw(seed: int) -> LadderPoints:
    rng = np.random.default_rng(seed)
    run, Ns, Ds, TL, S, F = [], [], [], [], [], []
    for N in SIZES:
        for m in MULTIPLIERS:
            for frac in np.linspace(0.5, 1.0, 8):
                D = 20 * m * N * frac
                tl = task_loss(N, D) * (1 + 0.06 * (1 - frac)) * np.exp(rng.normal(0, LOSS_NOISE))
                run.append(f"{N:.2g}-{m}x")
                Ns.append(N), Ds.append(D), TL.append(tl), F.append(frac == 1.0)
                S.append(accuracy_of_loss(tl, CHANCE, **STEP2) + rng.normal(0, SCORE_NOISE))
    return LadderPoints.from_arrays(run=run, N=Ns, D=Ds, task_loss=TL, score=S, final=F)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, default=100)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--json", default=None, help="write per-draw results here")
    args = ap.parse_args()
    truth = float(accuracy_of_loss(task_loss(*TARGET), CHANCE, **STEP2))
    rows, t0 = [], time.time()
    for seed in range(args.draws):
        pts = draw(seed)
        observed = truth + np.random.default_rng(10_000 + seed).normal(0, SCORE_NOISE)
        fc = TaskLadderForecast(chance=CHANCE, n_bootstrap=args.bootstrap, seed=seed).fit(pts)
        p = fc.predict(*TARGET, allow_noisy=True)
        pi, ci = p["intervals"]["score_prediction"], p["intervals"]["score"]
        rows.append({"seed": seed, "variant": p["variant"], "predicted": p["score"], "observed": float(observed),
                     "truth": truth, "prediction_interval": pi, "confidence_interval": ci,
                     "pi_covers": bool(pi[0] <= observed <= pi[1]), "ci_covers": bool(ci[0] <= truth <= ci[1]),
                     "task_loss": p["task_loss"], "task_loss_truth": float(task_loss(*TARGET)),
                     "too_noisy": p["predictability"]["too_noisy"]})
        print(f"draw {seed}: {p['variant']:<11} predicted {p['score']:.3f} PI [{pi[0]:.3f}, {pi[1]:.3f}] "
              f"observed {observed:.3f} {'in' if rows[-1]['pi_covers'] else 'OUT'} ({time.time() - t0:.0f}s)", flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f)
    n = len(rows)
    pi_cov = np.mean([r["pi_covers"] for r in rows])
    ci_cov = np.mean([r["ci_covers"] for r in rows])
    se = lambda p: np.sqrt(p * (1 - p) / n)  # noqa: E731
    err = np.array([r["predicted"] - r["observed"] for r in rows])
    width = np.median([r["prediction_interval"][1] - r["prediction_interval"][0] for r in rows])
    variants = {v: sum(r["variant"] == v for r in rows) for v in ("two_step", "single_step", "stacked")}
    tl_err = np.median([abs(r["task_loss"] / r["task_loss_truth"] - 1) for r in rows])
    print(f"\n{n} draws, target N={TARGET[0]:.2g} D={TARGET[1]:.2g}, true score {truth:.3f}")
    print(f"95% prediction interval covers the observed target: {pi_cov:.2f} ± {se(pi_cov):.2f}")
    print(f"95% confidence interval covers the noise-free target: {ci_cov:.2f} ± {se(ci_cov):.2f}")
    print(f"mean abs error {100 * np.abs(err).mean():.2f} points (bias {100 * err.mean():+.2f}); median PI width "
          f"{100 * width:.1f} points; median step-1 task-loss error {100 * tl_err:.2f}%")
    print(f"variants chosen by the ladder backtest: {variants}; flagged too noisy: "
          f"{sum(bool(r['too_noisy']) for r in rows)}; {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
