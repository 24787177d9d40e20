"""Distributional pass@k forecasts from 100 samples per problem, scored against 10,000.

* synthetic: per-problem p ~ Beta(0.3, 3) (300 problems), 10,000 samples each, kept 100 (without
  replacement), pass@10,000 forecast by the fitted distribution (``--family``, default ``auto``: beta,
  Kumaraswamy and logit-normal fitted, the lowest AIC on the 100-sample counts kept) and by the
  aggregate coverage law exp(a k^b), over several seeds (target: |error| <= 0.05 and below the
  aggregate fit's);
* lab: the same from a lab checkpoint's own samples on a procedural task (``--checkpoint``; the
  per-problem counts are written to ``--counts`` and reused from there).

    python benchmarks/bench_passk_distribution.py [--seeds 10] [--checkpoint DIR --task multiplication:2]
        [--counts FILE ...] [--json]

``--counts`` names the file the lab counts are written to (with ``--checkpoint``) or read from; several
files score several checkpoints.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from scalinglab.testtime.distribution import forecast_backtest

TARGET = 0.05


def lab_counts(checkpoint: str, task: str, n: int, problems: int, temperature: float) -> dict:
    """``n`` samples for each of ``problems`` held-out problems, verified exactly; counts only."""
    import torch

    from scalinglab.testtime.sampling import generate
    from scalinglab.testtime.tasks import Task
    from scalinglab.train.run import load_model_state
    model, cfg, run_id = load_model_state(checkpoint)
    t = Task.parse(task)
    gen = torch.Generator().manual_seed(0)
    width = len(t.completion(10 ** t.digits - 1, 10 ** t.digits - 1)) + 4
    cs = []
    for a, b in t.problems(problems, seed=0):
        prompt, c = list(t.prompt(a, b).encode()), 0
        for start in range(0, n, 5000):
            outs = generate(model, prompt, min(5000, n - start), width, temperature=temperature, stop_token=ord("\n"),
                            generator=gen)
            c += sum(t.verify(a, b, bytes(o).decode("utf-8", "replace"))[0] for o in outs)
        cs.append(c)
    return {"run_id": run_id, "task": task, "temperature": temperature, "n": n, "c": cs}


def score(n, c, keep, k, family, zero_mass, seed, n_bootstrap) -> dict:
    r = forecast_backtest(n, c, keep, [k], family=family, zero_mass=zero_mass, n_bootstrap=n_bootstrap, seed=seed)
    d = r["distribution"]
    return {"seed": seed, "actual": r["actual"][0], "family": d["family"], "distribution": d["forecast"]["pass_at_k"][0],
            "by_family": {f: v[0] for f, v in d["forecast"].get("by_family", {}).items()},
            "interval": [d["forecast"].get("lower", [None])[0], d["forecast"].get("upper", [None])[0]],
            "never_solvable": d["never_solvable"], "aggregate": r["aggregate"].get("pass_at_k", [np.nan])[0],
            "distribution_error": d["abs_error"][0], "aggregate_error": r["aggregate"].get("abs_error", [np.nan])[0]}


def summary(rows) -> dict:
    de, ae = np.array([r["distribution_error"] for r in rows]), np.array([r["aggregate_error"] for r in rows])
    chosen = [r["family"] for r in rows]
    return {"families_chosen": {f: chosen.count(f) for f in sorted(set(chosen))}, "mean_abs_error_distribution": float(de.mean()), "mean_abs_error_aggregate": float(np.nanmean(ae)),
            "max_abs_error_distribution": float(de.max()), "within_target": float(np.mean(de <= TARGET)),
            "distribution_beats_aggregate": float(np.mean(de < ae)), "n": len(rows)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--keep", type=int, default=100)
    ap.add_argument("--family", default="auto")
    ap.add_argument("--zero-mass", default="auto")
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--checkpoint")
    ap.add_argument("--task", default="multiplication:2")
    ap.add_argument("--problems", type=int, default=200)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--counts", nargs="+", default=["lab_counts.json"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    zero_mass = {"yes": True, "no": False}.get(args.zero_mass, "auto")
    K = 10_000
    out = {"target": TARGET, "k": K, "keep": args.keep, "family": args.family, "zero_mass": args.zero_mass}
    t0 = time.time()
    rows = []
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        p = rng.beta(0.3, 3.0, 300)
        n = np.full(p.size, K)
        rows.append(score(n, rng.binomial(n, p), args.keep, K, args.family, zero_mass, seed, args.bootstrap if seed == 0 else 0))
    out["synthetic"] = {"truth": "Beta(0.3, 3), 300 problems", "runs": rows, "summary": summary(rows), "seconds": time.time() - t0}
    if args.checkpoint and not Path(args.counts[0]).exists():
        Path(args.counts[0]).write_text(json.dumps(lab_counts(args.checkpoint, args.task, K, args.problems, args.temperature)))
    for i, counts_path in enumerate(Path(f) for f in args.counts):
        if not counts_path.exists():
            continue
        lab = json.loads(counts_path.read_text())
        n, c = np.full(len(lab["c"]), lab["n"]), np.array(lab["c"])
        rows = [score(n, c, args.keep, K, args.family, zero_mass, seed, args.bootstrap if seed == 0 else 0)
                for seed in range(args.seeds)]
        out["lab" if i == 0 else f"lab{i + 1}"] = {
            "source": {k: lab.get(k) for k in ("run_id", "task", "temperature", "n")}, "n_problems": int(n.size),
            "mean_p": float(c.mean() / lab["n"]), "runs": rows, "summary": summary(rows)}
    if args.json:
        print(json.dumps(out, indent=2, default=float))
        return
    for part in [p for p in out if p == "synthetic" or p.startswith("lab")]:
        if isinstance(out[part], dict) and "summary" in out[part]:
            s, r0 = out[part]["summary"], out[part]["runs"][0]
            src = out[part].get("source", {}).get("run_id")
            print(f"{part}{' ' + src if src else ''} (chosen: {s['families_chosen']}): pass@{K:,} from {args.keep} samples/problem over {s['n']} subsamples: mean |error| distribution "
                  f"{s['mean_abs_error_distribution']:.4f} (max {s['max_abs_error_distribution']:.4f}, within {TARGET}: "
                  f"{s['within_target']:.0%}) vs coverage law {s['mean_abs_error_aggregate']:.4f}; distribution better in "
                  f"{s['distribution_beats_aggregate']:.0%}. Seed 0: all samples {r0['actual']:.4f}, distribution "
                  f"{r0['distribution']:.4f} {r0['interval']}, coverage law {r0['aggregate']:.4f}, never-solvable "
                  f"{r0['never_solvable']['share']:.3f}")


if __name__ == "__main__":
    main()
