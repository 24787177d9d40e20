"""The main job's efficiency: a whole ladder (LR sweep, grid, fits, verification) run in this process, with

* achieved FLOP/s = the compute actually trained (C = 6 N_active D per step trained; a WSD trunk's shared
  prefix once) over the ladder's wall time, as a fraction of the fp32 matmul peak measured in the same
  process just before;
* the share of the machine's thread-time (threads x wall time) outside training steps (design, evaluation,
  checkpoints, fits, figures, idle workers): each run's step time counted once per thread it trained with,
  so runs trained side by side by several workers count right; target < 10%;
* the time spent designing shapes (target well under 1 s).

    python benchmarks/bench_ladder.py [--preset quick|smoke] [--seed 0] [--json]
    python benchmarks/bench_ladder.py --from DIR     # a finished `scalinglab ladder --json > report.json` (or ladder.json) in DIR

The first form trains in a fresh temporary store (nothing is reused), so it takes as long as the ladder
itself; the second reads the report of a ladder already run (its ``efficiency``, which every ladder report
carries; for older reports the same accounting from the store, with the peak the report measured at the
ladder's start, if it has one, else now).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

from scalinglab.cost import matmul_peak
from scalinglab.experiments.ladder import ladder_efficiency, run_ladder
from scalinglab.store import RunStore
from scalinglab.train.executors import InlineExecutor
from scalinglab.train.ladder import PRESETS


def _from_store(folder: Path, report: dict) -> dict:
    """The efficiency of a ladder whose report predates its ``efficiency`` key, from its store: the runs
    finished within its wall time before its verification run ended (a later lr-check or ladder in the same
    store trained after it)."""
    wall = report["seconds"]
    peak = report.get("machine", {}).get("fp32_matmul_peak_flops") or matmul_peak()
    with RunStore(folder / "scalinglab.db") as st:
        runs = [r for r in st.runs(source="ladder") if r.status == "finished"]
    end = max(r.updated_at for r in runs if "verify" in r.name) if any("verify" in r.name for r in runs) else None
    if end is not None:
        runs = [r for r in runs if r.created_at >= end - wall - 5 and r.updated_at <= end + 1]
    return ladder_efficiency(runs, wall, peak, report.get("machine", {}).get("thread_budget"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="quick", choices=sorted(PRESETS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--from", dest="source", type=Path, default=None,
                    help="folder with scalinglab.db and the --json output (report.json or ladder.json) of a finished ladder")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.source is not None:
        found = [args.source / n for n in ("report.json", "ladder.json") if (args.source / n).is_file()]
        if not found or not (args.source / "scalinglab.db").is_file():
            ap.error(f"--from {args.source}: needs scalinglab.db and report.json or ladder.json "
                     "(the output of `scalinglab ladder --json`) in that folder")
        report = json.loads(found[0].read_text())
        args.preset, args.seed = "as run", report["spec"]["seed"]
        eff = report.get("efficiency") or {}
        if "eval_share" not in eff:          # a report older than its efficiency key (or one of its keys)
            eff = _from_store(args.source, report)
    else:
        spec = dataclasses.replace(PRESETS[args.preset], seed=args.seed)
        with tempfile.TemporaryDirectory() as tmp:
            with RunStore(Path(tmp) / "s.db") as st:
                report = run_ladder(spec, st, executor=InlineExecutor(), checkpoint_dir=Path(tmp) / "ck",
                                    out=Path(tmp) / "out", show_progress=False, figures=False, log=lambda m: None)
        eff = report["efficiency"]
    wall, peak, threads = eff["wall_s"], eff["fp32_matmul_peak_flops"], eff["thread_budget"]
    ver = report["families"]["dense"].get("verification", {})
    out = {"preset": args.preset, "seed": args.seed, **eff, "timings": report["timings"], "compute": report["compute"],
           "verification": {k: ver.get(k) for k in ("compute_flops", "predicted_loss", "interval", "actual_loss",
                                                    "relative_error", "inside_interval", "law")}}
    if args.json:
        print(json.dumps(out, indent=2, default=float))
        return
    print(f"{args.preset} ladder, seed {args.seed}: {wall:.0f} s wall; trained {eff['trained_flops']:.3g} FLOPs in "
          f"{eff['runs']} runs ({report['compute']['saved_fraction']:.0%} of the grid shared by WSD trunks)")
    print(f"achieved {eff['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s = {eff['fraction_of_peak']:.1%} of the fp32 matmul peak "
          f"({peak / 1e9:.0f} GFLOP/s, same process)")
    if eff["outside_steps_share"] is None:
        print(f"time outside training steps: not measured (the runs recorded no thread counts and trained side by "
              f"side: their step times sum to {eff['step_seconds']:.0f} s over {wall:.0f} s of wall time)")
    else:
        print(f"time outside training steps: {eff['outside_steps_share']:.1%} of {threads} thread(s) x wall time "
              f"(evaluation {eff['eval_share']:.1%}; target < 10%)")
    print("stages: " + ", ".join(f"{k} {v:.1f}s" for k, v in report["timings"].items()))
    if "actual_loss" in ver:
        print(f"verification at {ver['compute_flops']:.3g} FLOPs (by the {ver.get('forecast_by', ver['law'])}): forecast {ver['predicted_loss']:.4f} "
              f"[{ver['interval'][0]:.4f}, {ver['interval'][1]:.4f}], actual {ver['actual_loss']:.4f} "
              f"({ver['relative_error']:+.2%})")


if __name__ == "__main__":
    main()
