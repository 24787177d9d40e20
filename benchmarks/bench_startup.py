"""Start-up cost of the light commands: CPU seconds per call and which heavy modules they import.

Each command runs in a fresh interpreter (bytecode caches written by a warm-up call, as in an installed
package), several times; the median CPU time (user + system, from ``getrusage``) is reported beside the
floor set by the interpreter with typer, rich and numpy alone. Target: <= 0.3 s CPU each, and no
scipy, torch, plotly or matplotlib (from ``python -X importtime``).

    python benchmarks/bench_startup.py [--repeats 7] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys

TARGET_CPU_S = 0.3
HEAVY = ("scipy", "torch", "plotly", "matplotlib")
COMMANDS = {
    "scalinglab --help": ["-m", "scalinglab.cli", "--help"],
    "scalinglab plan --preset chinchilla-2022 --compute 1e23 --json":
        ["-m", "scalinglab.cli", "plan", "--preset", "chinchilla-2022", "--compute", "1e23", "--json"],
    "floor: import typer, rich.console, numpy": ["-c", "import typer, rich.console, rich.table, numpy"],
}


def cpu_seconds(args: list[str], env: dict) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, *args], env=env, stdout=subprocess.DEVNULL, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def heavy_imports(args: list[str], env: dict) -> list[str]:
    res = subprocess.run([sys.executable, "-X", "importtime", *args], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, check=True)
    names = {line.split("|")[-1].strip().split(".")[0] for line in res.stderr.splitlines() if "|" in line}
    return sorted(names & set(HEAVY))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out = {}
    for name, argv in COMMANDS.items():
        cpu_seconds(argv, env)                                   # warm-up: writes the bytecode caches
        times = [cpu_seconds(argv, env) for _ in range(args.repeats)]
        out[name] = {"cpu_s_median": statistics.median(times), "cpu_s_min": min(times),
                     "heavy_modules": heavy_imports(argv, env)}
        if not name.startswith("floor"):
            out[name]["meets_target"] = out[name]["cpu_s_median"] <= TARGET_CPU_S and not out[name]["heavy_modules"]
    if args.json:
        print(json.dumps(out, indent=2))
        return
    for name, r in out.items():
        verdict = "" if "meets_target" not in r else (" OK" if r["meets_target"] else " MISSED")
        print(f"{name}: {r['cpu_s_median']:.3f} s CPU median ({r['cpu_s_min']:.3f} min; target <= {TARGET_CPU_S} s); "
              f"heavy modules: {', '.join(r['heavy_modules']) or 'none'}{verdict}")


if __name__ == "__main__":
    main()
