"""Report and dashboard on a tracker-sized store: 10,000 runs x 1,000 curve points (synthetic, as in
``bench_store.py``) with a stored Chinchilla fit.

Measures the HTML report's size and build time (``write_report``, what ``scalinglab report`` runs) and the
dashboard's page cache (the index view's render path): the first page, the next from cache, and the
rebuild after a write to the store. Targets: report <= 15 MB and <= 30 s; dashboard page from cache <= 1 s.

    python benchmarks/bench_report.py [--runs 10000] [--points 1000] [--store PATH] [--json]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench_store import synthetic_batches

from scalinglab.laws import preset
from scalinglab.report.dashboard import PageCache
from scalinglab.report.html import render_report, write_report
from scalinglab.store import Run, RunStore

TARGETS = {"report_mb": 15.0, "report_s": 30.0, "dashboard_cached_s": 1.0}


def timed(f):
    t0, c0 = time.perf_counter(), time.process_time()
    out = f()
    return out, time.perf_counter() - t0, time.process_time() - c0


def build_store(path: Path, n_runs: int, n_points: int) -> None:
    with RunStore(path) as st:
        for runs, curves in synthetic_batches(n_runs, n_points, 500):
            st.add_runs(runs, curves=curves)
        law = preset("chinchilla-2022")
        st.add_fit("chinchilla", {"source": "bench", "n_runs": n_runs}, law.all_params(), {}, None, law.to_dict())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--points", type=int, default=1_000)
    ap.add_argument("--store", type=Path, default=None, help="an existing store to report on (else built here)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.store or Path(tmp) / "bench.db"
        if args.store is None:
            build_store(path, args.runs, args.points)
        with RunStore(path, readonly=True) as st:
            n_runs = len(st.runs())
        res, wall, cpu = timed(lambda: write_report(path, Path(tmp) / "report.html"))
        out = {"runs": n_runs, "report_mb": res["bytes"] / 1e6, "report_s": cpu, "report_wall_s": wall}
        cache = PageCache(path)

        def index():
            with RunStore(path, readonly=True) as st:
                return render_report(st, title="scalinglab dashboard", live=True)

        _, out["dashboard_first_wall_s"], out["dashboard_first_s"] = timed(lambda: cache.get("index", index))
        _, out["dashboard_cached_wall_s"], out["dashboard_cached_s"] = timed(lambda: cache.get("index", index))
        with RunStore(path) as st:
            st.upsert_run(Run(run_id="bench-new", name="new", source="bench", status="running"))
        page, out["dashboard_after_write_wall_s"], out["dashboard_after_write_s"] = timed(lambda: cache.get("index", index))
        out["refreshed_after_write"] = ">new<" in page
        out["meets_targets"] = all(out[k] <= v for k, v in TARGETS.items()) and out["refreshed_after_write"]
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"report on {n_runs:,} runs: {out['report_mb']:.1f} MB (target <= {TARGETS['report_mb']:g}), {out['report_s']:.1f} s CPU "
          f"({out['report_wall_s']:.1f} s wall; target <= {TARGETS['report_s']:g})")
    print(f"dashboard: first page {out['dashboard_first_s']:.2f} s CPU, from cache {out['dashboard_cached_s'] * 1e3:.2f} ms "
          f"(target <= {TARGETS['dashboard_cached_s']:g} s), after a store write {out['dashboard_after_write_s']:.2f} s "
          f"(refreshed: {out['refreshed_after_write']}) {'OK' if out['meets_targets'] else 'MISSED'}")


if __name__ == "__main__":
    main()
