"""A tracker-sized project in the run store: 10,000 runs x 1,000 curve points, generated synthetically.

Measures, in one process: the import (runs and curves written by ``add_runs`` in batches, as an
importer streams them), the store's size on disk, reading every curve back in one query, and the
``scalinglab runs`` command (JSON and table) on the result. For the ratio, the same runs are also
written one SQLite row per point (the schema-3 layout) at a tenth of the size.
Targets: import <= 30 s, store <= 150 MB, ``runs`` <= 1 s.

    python benchmarks/bench_store.py [--runs 10000] [--points 1000] [--out DIR] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from scalinglab.store import Run, RunStore, config_hash

TARGETS = {"import_s": 30.0, "store_mb": 150.0, "runs_s": 1.0}


def synthetic_batches(n_runs: int, n_points: int, batch: int, seed: int = 0):
    """(runs, curves) batches: a Chinchilla-like ladder, float64 noisy losses at log-spaced steps."""
    rng = np.random.default_rng(seed)
    steps = np.unique(np.geomspace(1, 200_000, n_points * 3).astype(np.int64))[:n_points]
    steps = np.concatenate([steps, steps[-1] + np.arange(1, n_points - steps.size + 1)])
    for start in range(0, n_runs, batch):
        runs, curves = [], {}
        for i in range(start, min(start + batch, n_runs)):
            n = float(10 ** rng.uniform(6, 9))
            tokens_per_step = float(2 ** rng.integers(15, 20))
            tokens = steps * tokens_per_step
            loss = 1.7 + 400 / n ** 0.34 + 410 / tokens ** 0.28 + rng.normal(0, 0.01, steps.size)
            run = Run(run_id=config_hash({"bench": i}), name=f"run-{i:05d}", source="import:bench", family="dense",
                      n_total=n, n_active=n, tokens=float(tokens[-1]), flops_6nd=6 * n * float(tokens[-1]),
                      final_loss=float(loss[-1]), config={"lr": float(rng.uniform(1e-4, 1e-2))})
            runs.append(run)
            curves[run.run_id] = {"step": steps, "tokens": tokens, "flops": 6 * n * tokens, "loss": loss}
        yield runs, curves


def import_arrays(path: Path, n_runs: int, n_points: int, batch: int) -> tuple[float, float]:
    """Wall and CPU seconds (the machine may be shared: CPU is the steadier number)."""
    t0, c0 = time.perf_counter(), time.process_time()
    with RunStore(path) as st:
        for runs, curves in synthetic_batches(n_runs, n_points, batch):
            st.add_runs(runs, curves=curves)
    return time.perf_counter() - t0, time.process_time() - c0


def import_point_rows(path: Path, n_runs: int, n_points: int, batch: int) -> float:
    """The schema-3 layout: one row per point, written with executemany in the same batches."""
    t0 = time.perf_counter()
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE curves (run_id TEXT NOT NULL, split TEXT NOT NULL, step INTEGER NOT NULL, "
               "tokens REAL NOT NULL, flops REAL NOT NULL, loss REAL, PRIMARY KEY (run_id, split, step))")
    for runs, curves in synthetic_batches(n_runs, n_points, batch):
        with db:
            for run_id, c in curves.items():
                db.executemany("INSERT INTO curves VALUES (?, 'val', ?, ?, ?, ?)",
                               zip([run_id] * c["step"].size, c["step"].tolist(), c["tokens"].tolist(),
                                   c["flops"].tolist(), c["loss"].tolist()))
    db.close()
    return time.perf_counter() - t0


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1e6


def timed_cli(args: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one CLI call in a fresh interpreter."""
    before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run([sys.executable, "-m", "scalinglab.cli", *args], stdout=subprocess.DEVNULL, check=True,
                   env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - t0, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=1_000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--out", type=Path, default=None, help="keep the store here (for the report benchmark)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.out or Path(tmp) / "bench.db"
        if path.exists():
            sys.exit(f"{path} exists; remove it first")
        out = {"runs": args.runs, "points_per_run": args.points}
        out["import_wall_s"], out["import_s"] = import_arrays(path, args.runs, args.points, args.batch)
        out["store_mb"] = size_mb(path)
        c0 = time.process_time()
        with RunStore(path, readonly=True) as st:
            curves = st.curves()
        out["read_all_curves_s"] = time.process_time() - c0
        assert len(curves) == args.runs and all(c["loss"].size == args.points for c in curves.values())
        timed_cli(["runs", "--store", str(path), "--json"])          # warm-up: bytecode and page cache
        out["runs_json_wall_s"], out["runs_json_s"] = timed_cli(["runs", "--store", str(path), "--json"])
        out["runs_table_wall_s"], out["runs_table_s"] = timed_cli(["runs", "--store", str(path)])
        small = max(args.runs // 10, 1)
        out["ratio_sample_runs"] = small
        out["point_rows_import_s"] = import_point_rows(Path(tmp) / "rows.db", small, args.points, args.batch)
        out["point_rows_store_mb"] = size_mb(Path(tmp) / "rows.db")
        t_small = import_arrays(Path(tmp) / "small.db", small, args.points, args.batch)[0]
        out["arrays_import_s_same_sample"] = t_small
        out["import_speedup_vs_point_rows"] = out["point_rows_import_s"] / t_small
        out["size_ratio_vs_point_rows"] = out["point_rows_store_mb"] / size_mb(Path(tmp) / "small.db")
        out["runs_s"] = out["runs_json_s"]
        out["meets_targets"] = all(out[k] <= v for k, v in TARGETS.items())
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{args.runs:,} runs x {args.points:,} points: import {out['import_s']:.1f} s CPU ({out['import_wall_s']:.1f} s wall; "
          f"target <= {TARGETS['import_s']:g}), store {out['store_mb']:.0f} MB (target <= {TARGETS['store_mb']:g}), "
          f"all curves read in one query in {out['read_all_curves_s']:.2f} s CPU; `runs --json` {out['runs_json_s']:.2f} s CPU "
          f"({out['runs_json_wall_s']:.2f} s wall; target <= {TARGETS['runs_s']:g}); `runs` as a table "
          f"{out['runs_table_s']:.2f} s CPU {'OK' if out['meets_targets'] else 'MISSED'}")
    print(f"on {small:,} runs against one row per point: import {out['import_speedup_vs_point_rows']:.1f}x faster "
          f"({out['point_rows_import_s']:.1f} s vs {t_small:.1f} s), store {out['size_ratio_vs_point_rows']:.1f}x smaller")


if __name__ == "__main__":
    main()
