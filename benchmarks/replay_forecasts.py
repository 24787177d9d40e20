"""Replay stored ladders' verification forecasts with the current fits and forecast rule, nothing retrained.

    python benchmarks/replay_forecasts.py DIR [DIR ...] [--grid-seeds 1,2,3,4] [--json]

Each DIR is a folder where ``scalinglab ladder`` ran (``scalinglab.db`` with a finished verification run).
For every K in ``--grid-seeds`` (default: the ladder's own), the (N, D) forms and the curve law are fitted on
the grid runs of the ladder's first K grid seeds only (run names without a suffix are seed 0, ``-s1`` seed 1,
...), exactly as the ladder fits them, and forecast the stored verification run's loss before it is compared.
The verification run itself is never fitted on. Each line gives the combined forecast's error (the ladder's
rule, :func:`scalinglab.experiments.ladder.combine_forecasts`), whether the actual loss is inside its 95%
interval, every law's error alone, and what two earlier rules would have stated: the narrowest interval of
the backtest-best form and the curve law ("previous rule"), and the one-stage combination, every law its own
source ("one stage").

With fewer grid seeds than the ladder trained, the ladder itself might have sized its verification run
differently (the backtest-best form's optimum); the replay forecasts the run that was trained.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import warnings
from pathlib import Path

import numpy as np


def _seed_of(name: str) -> int:
    m = re.search(r"-s(\d+)$", name)
    return int(m.group(1)) if m else 0


def replay(folder: Path, grid_seeds: int | None) -> dict:
    from scalinglab.experiments.ladder import (combine_forecasts, fit_curve_law, fit_ladder_forms, forecast_form,
                                               verification_forecast)
    from scalinglab.store import RunStore
    from scalinglab.train.config import RunConfig
    report = json.loads((folder / "ladder.json").read_text()) if (folder / "ladder.json").exists() else {}
    spec = report.get("spec", {})
    with RunStore(folder / "scalinglab.db", readonly=True) as store:
        runs = store.runs(family="dense")
        grid = [r for r in runs if (r.extra or {}).get("role") == "grid"]
        ver = [r for r in runs if (r.extra or {}).get("role") == "verify" and r.status == "finished"]
        if not grid or not ver:
            return {"folder": str(folder), "error": "no grid runs or no finished verification run"}
        k_max = 1 + max(_seed_of(r.name) for r in grid)
        k = k_max if grid_seeds is None else grid_seeds
        if k > k_max:
            return {"folder": str(folder), "grid_seeds": k, "error": f"the ladder trained {k_max} grid seeds"}
        grid = [r for r in grid if _seed_of(r.name) < k]
        seed, n_bootstrap = int(spec.get("seed", 0)), int(spec.get("n_bootstrap", 400))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fit_ladder_forms(grid, "dense", n_bootstrap=n_bootstrap, seed=seed)
            curve_law, _ = fit_curve_law(store, grid, n_bootstrap=n_bootstrap, seed=seed)
        chosen = forecast_form(fit)
        if chosen is None:
            return {"folder": str(folder), "grid_seeds": k, "error": "no (N, D) form could be fitted"}
        v = ver[0]
        fc = verification_forecast(fit, chosen, curve_law, RunConfig.from_dict(v.config), float(v.n_active))
    actual = float(v.final_loss)
    err = lambda p: p / actual - 1.0
    laws = {chosen: fc["form"], **fc["other_laws"], **({"curve law": fc["curve_law"]} if "curve_law" in fc else {})}
    sd = lambda m: math.log(m["interval"][1] / m["interval"][0]) if all(np.isfinite(m["interval"])) else math.inf
    previous = min([m for name, m in laws.items() if name in (chosen, "curve law")], key=sd)
    one_stage = combine_forecasts(laws)      # every law its own source, as the rule before the forms were grouped
    return {"folder": str(folder), "seed": seed, "grid_seeds": k, "n_grid_runs": len(grid), "actual_loss": actual,
            "forecast_by": fc["forecast_by"], "predicted_loss": fc["predicted_loss"], "interval": fc["interval"],
            "relative_error": err(fc["predicted_loss"]),
            "inside_interval": bool(fc["interval"][0] <= actual <= fc["interval"][1]),
            "weights": fc["selection"]["weights"], "duplicates": fc["selection"]["duplicates"],
            "laws": {name: {"relative_error": err(m["predicted_loss"]),
                            "inside_interval": bool(m["interval"][0] <= actual <= m["interval"][1])}
                     for name, m in laws.items()},
            "previous_rule_error": err(previous["predicted_loss"]),
            "previous_rule_inside": bool(previous["interval"][0] <= actual <= previous["interval"][1]),
            "one_stage_error": err(one_stage["predicted_loss"]),
            "one_stage_inside": bool(one_stage["interval"][0] <= actual <= one_stage["interval"][1])}


def summary(rows: list[dict]) -> dict:
    ok = [r for r in rows if "error" not in r]
    if not ok:
        return {}
    e = np.array([r["relative_error"] for r in ok]) * 100
    p = np.array([r["previous_rule_error"] for r in ok]) * 100
    o = np.array([r["one_stage_error"] for r in ok]) * 100
    return {"n": len(ok), "rms_pct": float(np.sqrt(np.mean(e ** 2))), "within_2pct": float(np.mean(np.abs(e) <= 2)),
            "inside": float(np.mean([r["inside_interval"] for r in ok])),
            "previous_rule_rms_pct": float(np.sqrt(np.mean(p ** 2))), "previous_rule_within_2pct": float(np.mean(np.abs(p) <= 2)),
            "previous_rule_inside": float(np.mean([r["previous_rule_inside"] for r in ok])),
            "one_stage_rms_pct": float(np.sqrt(np.mean(o ** 2))), "one_stage_within_2pct": float(np.mean(np.abs(o) <= 2)),
            "one_stage_inside": float(np.mean([r["one_stage_inside"] for r in ok]))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--grid-seeds", default="", help="comma-separated K values (default: each ladder's own)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    try:
        ks = [int(x) for x in a.grid_seeds.split(",") if x.strip()] or [None]
    except ValueError:
        print(f"error: --grid-seeds takes comma-separated integers, got {a.grid_seeds!r}", file=sys.stderr)
        return 2
    if any(k is not None and k < 1 for k in ks):
        print("error: --grid-seeds values must be >= 1", file=sys.stderr)
        return 2
    missing = [str(f) for f in a.folders if not (f / "scalinglab.db").is_file()]
    if missing:
        print(f"error: no scalinglab.db in {', '.join(missing)} (give folders where `scalinglab ladder` ran)", file=sys.stderr)
        return 2
    out = {}
    for k in ks:
        rows = []
        for f in a.folders:
            r = replay(f, k)
            rows.append(r)
            if not a.json:
                if "error" in r:
                    print(f"{f}: {r['error']}", flush=True)
                    continue
                alone = ", ".join(f"{n} {m['relative_error']:+.2%}" for n, m in r["laws"].items())
                print(f"{f} (seed {r['seed']}, {r['grid_seeds']} grid seeds): combined {r['relative_error']:+.2%} "
                      f"[{'inside' if r['inside_interval'] else 'OUTSIDE'}]; one stage {r['one_stage_error']:+.2%}; "
                      f"previous rule {r['previous_rule_error']:+.2%}; "
                      f"alone: {alone}", flush=True)
        key = "own" if k is None else str(k)
        out[key] = {"rows": rows, "summary": summary(rows)}
        if not a.json and out[key]["summary"]:
            s = out[key]["summary"]
            print(f"== grid seeds {key}: {s['n']} ladders; combined RMS {s['rms_pct']:.2f}%, within 2% {s['within_2pct']:.0%}, "
                  f"inside {s['inside']:.0%}; previous rule RMS {s['previous_rule_rms_pct']:.2f}%, within 2% "
                  f"{s['previous_rule_within_2pct']:.0%}, inside {s['previous_rule_inside']:.0%}; one stage RMS "
                  f"{s['one_stage_rms_pct']:.2f}%, within 2% {s['one_stage_within_2pct']:.0%}", flush=True)
    if a.json:
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
