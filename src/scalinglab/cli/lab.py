"""Training studies: ``ladder``, ``lr-check``, ``compare``."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from .._names import FitError
from ..store import RunStore
from ._common import (MAX_CPU_RUN_FLOPS, MAX_LADDER_FLOPS, JsonOpt, StoreOpt, Table, _check_device, _choice, _corpus,
                      _emit_json, _existing_store, _fail, _finite, _log, _q, _quantities, _require, _whole, app, console,
                      err)
from .fit import _print_fit_report


EXECUTOR_MODULES = {"ray": "ray", "slurm": "submitit"}
# wall times of the presets as measured and logged in docs/experiments.md (2 CPU cores); the README quotes
# these same words, and tests/test_docs.py holds the three together
PRESET_WALL_TIMES = {"smoke": "about a minute", "quick": "~12 minutes on 2 CPU cores"}


@app.command("ladder")
def ladder_cmd(
    preset: str = typer.Option("quick", help=f"smoke ({PRESET_WALL_TIMES['smoke']}: checks an install), quick "
                                            f"({PRESET_WALL_TIMES['quick']}), standard, large."),
    moe: bool = typer.Option(False, "--moe", help="Train an iso-active Mixture-of-Experts ladder beside the dense one."),
    moe_only: bool = typer.Option(False, "--moe-only", help="Train only the MoE ladder."),
    budgets: Optional[str] = typer.Option(None, help="Comma-separated compute budgets in FLOPs (C = 6 N_active D)."),
    sizes_per_budget: Optional[int] = typer.Option(None, min=3, max=64, help="Model sizes per IsoFLOP budget (>= 3)."),
    grid_seeds: Optional[int] = typer.Option(None, min=1, max=16, help="Independent trainings (seeds) of every grid run "
                                                                     "(preset default: 2 for quick, else 1)."),
    corpus: str = typer.Option("stdlib", help="'stdlib' (the running Python's standard library), a folder/file/JSONL of "
                                              "text, or a procedural task task:KIND:DIGITS[:FORMAT] (KIND addition, "
                                              "multiplication, reverse or mix; FORMAT direct, scratchpad or mixed), "
                                              "e.g. task:addition:2:mixed; +curated (or +dedup, +filtered) "
                                              "curates the training split."),
    tokenizer: str = typer.Option("byte", help="byte or bpe (trained on the corpus with `tokenizers`)."),
    mixer: str = typer.Option("attention", help="Sequence mixer of every shape: attention, ssm (a selective "
                                                "state-space mixer, Mamba-2 style) or hybrid (attention every "
                                                "second block)."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1, ..."),
    dtype: str = typer.Option("fp32", help="fp32 or bf16 (autocast)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile each model."),
    keep_checkpoints: bool = typer.Option(False, "--keep-checkpoints",
                                          help="Keep each run's weights at its evaluation steps (`evaluate` scores "
                                               "them; task forecasts then measure checkpoint noise)."),
    executor: str = typer.Option("local", help="local (worker processes), inline (this process), ray or slurm (submitit)."),
    workers: Optional[int] = typer.Option(None, min=1, max=1024, help="Runs at a time (local executor; default: "
                                          "on a CPU one single-thread worker per core, else 1)."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address: auto or HOST:PORT (default: start one here)."),
    gpus_per_run: float = typer.Option(0, min=0, max=64, help="GPUs each run asks Ray for."),
    threads: Optional[int] = typer.Option(None, min=1, max=1024, help="Torch threads per worker."),
    bootstrap: Optional[int] = typer.Option(None, min=0, max=100_000, help="Bootstrap resamples for the fits."),
    verify: bool = typer.Option(True, help="Forecast, then train, a run at --verify-multiplier x the largest budget."),
    verify_multiplier: Optional[float] = typer.Option(None, help="Verification compute over the largest budget "
                                                      "(preset default: 10 for quick, 30 for standard and large)."),
    schedule: Optional[str] = typer.Option(None, help="wsd (one constant-LR run per size with cooldown branches; "
                                                      "the presets' default) or cosine (every run from scratch)."),
    lr_sweep: Optional[bool] = typer.Option(None, "--lr-sweep/--no-lr-sweep",
                                            help="Fit the LR rule lr(N) by a short sweep at the two smallest budgets first."),
    lr: Optional[float] = typer.Option(None, help="Peak LR at --lr-ref-params (with --no-lr-sweep: the rule's anchor)."),
    lr_exponent: Optional[float] = typer.Option(None, help="lr(N) = lr * (N / lr_ref_params)^-lr_exponent (no sweep)."),
    seed: int = typer.Option(0, help="Seed of every run (initialisation and data order)."),
    store: Path = StoreOpt,
    out: Path = typer.Option(Path("scalinglab-out/ladder"), help="Directory for figures."),
    checkpoints: str = typer.Option("scalinglab-out/checkpoints",
                                    help="Checkpoint directory or fsspec URL (s3://...) every worker can reach."),
    as_json: bool = JsonOpt,
):
    """Train a ladder of small transformers, fit scaling laws, forecast a bigger run, then verify it.

    Re-running skips finished runs, so a killed ladder resumes where it stopped.
    """
    import dataclasses as dc

    _choice(tokenizer, "--tokenizer", ("byte", "bpe"))
    _choice(dtype, "--dtype", ("fp32", "bf16"))
    _choice(executor, "--executor", ("local", "inline", "ray", "slurm"))
    if schedule is not None:
        _choice(schedule, "--schedule", ("wsd", "cosine"))
    if moe and moe_only:
        _fail("give --moe (dense and MoE ladders) or --moe-only, not both")
    budget_values = _quantities(budgets, "--budgets", lo=1e6, hi=MAX_LADDER_FLOPS) if budgets else None
    _finite(lr, "--lr", lo=0, lo_open=True, hi=10)
    _finite(lr_exponent, "--lr-exponent", lo=-2, hi=2)
    _finite(verify_multiplier, "--verify-multiplier", lo=1, hi=1e4)
    _corpus(corpus)
    from ..train.config import MIXERS
    _choice(mixer, "--mixer", MIXERS)
    _require("train", "scalinglab ladder", "torch")
    if tokenizer == "bpe":
        _require("bpe", "--tokenizer bpe", "tokenizers")
    if executor in EXECUTOR_MODULES:
        _require(executor, f"--executor {executor}", EXECUTOR_MODULES[executor])
    from ..experiments.ladder import run_ladder
    from ..train.executors import make_executor
    from ..train.ladder import PRESETS
    if preset not in PRESETS:
        _fail(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    changes: dict = {"corpus": corpus, "tokenizer": tokenizer, "device": device, "dtype": dtype, "compile": compile,
                     "keep_eval_checkpoints": keep_checkpoints, "seed": seed, "mixer": mixer}
    if moe or moe_only:
        changes["families"] = ("moe",) if moe_only else ("dense", "moe")
    try:
        if budget_values:
            changes["budgets"] = tuple(budget_values)
        if sizes_per_budget:
            changes["sizes_per_budget"] = sizes_per_budget
        if grid_seeds:
            changes["grid_seeds"] = grid_seeds
        if bootstrap is not None:
            changes["n_bootstrap"] = bootstrap
        for key, value in (("verify_multiplier", verify_multiplier), ("schedule", schedule), ("lr_sweep", lr_sweep),
                           ("lr", lr), ("lr_exponent", lr_exponent)):
            if value is not None:
                changes[key] = value
        if lr is not None or lr_exponent is not None:
            changes["lr_knots"] = ()      # the rule given replaces the preset's starting knots
        _check_device(device)
        spec = dc.replace(PRESETS[preset], **changes)
        largest = max(spec.budgets) * (spec.verify_multiplier if verify else 1)
        if device == "cpu" and largest > MAX_CPU_RUN_FLOPS:
            _fail(f"--budgets: the largest run would take {largest:.3g} FLOPs, about {largest / 1e11 / 86400:.0f} days on a "
                  f"CPU at 100 GFLOP/s; CPU ladders are refused above {MAX_CPU_RUN_FLOPS:.0e} FLOPs per run (use "
                  "--device cuda, or smaller --budgets)")
        if workers is None:
            workers, threads = _default_workers(device, executor, threads)
        ex = make_executor(executor, workers=workers, threads=threads, address=address, gpus_per_run=gpus_per_run)
    except ValueError as e:
        _fail(str(e))
    log = _log(as_json, highlight=False, markup=False)
    try:
        with RunStore(store) as st:
            report = run_ladder(spec, st, executor=ex, checkpoint_dir=checkpoints, out=out, verify=verify,
                                show_progress=not as_json, log=log)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    finally:
        ex.close()
    if as_json:
        _emit_json(report)
    else:
        _print_ladder(report)
    t = report.get("training", {})
    if t.get("failed") and not (t.get("trained") or t.get("diverged") or t.get("skipped") or t.get("by_other_drivers")):
        err.print(f"error: all {t['failed']} run(s) of the ladder failed; their errors are in the store "
                  f"(scalinglab runs --status failed)", markup=False, highlight=False)
        raise typer.Exit(1)


@app.command("lr-check")
def lr_check_cmd(
    preset: str = typer.Option("quick", help="The ladder preset whose LR rule and sizes to check."),
    at: str = typer.Option("smallest,largest", help="Comma-separated ladder sizes to sweep at: smallest, largest."),
    seed: int = typer.Option(0, help="Seed of the runs (the ladder's)."),
    store: Path = StoreOpt,
    checkpoints: str = typer.Option("scalinglab-out/checkpoints", help="Checkpoint directory."),
    as_json: bool = JsonOpt,
):
    """Sweep the learning rate around the preset's rule at its smallest and largest ladder sizes and say whether
    the rule's LR lies in the flat region of the optimum (fitted loss within 1% of the best).

    The LR rule itself is first fitted as the ladder does (a short sweep at the two smallest budgets); runs
    already in the store are reused.
    """
    import dataclasses as dc

    _require("train", "scalinglab lr-check", "torch")
    from ..experiments.ladder import lr_check
    from ..train.ladder import PRESETS
    if preset not in PRESETS:
        _fail(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    where = tuple(x.strip() for x in at.split(",") if x.strip())
    bad = [x for x in where if x not in ("smallest", "largest")]
    if bad or not where:
        _fail(f"--at takes smallest and/or largest, not {at!r}")
    spec = dc.replace(PRESETS[preset], seed=seed)
    log = _log(as_json, highlight=False, markup=False)
    with RunStore(store) as st:
        out = lr_check(spec, st, checkpoint_dir=checkpoints, at=where, show_progress=not as_json, log=log)
    if as_json:
        return _emit_json(out)
    table = Table(title=f"learning rate around the rule lr(N) = {out['rule']['lr']}")
    for col in ("ladder size", "N", "budget", "optimum lr", "flat region (loss within 1%)", "rule lr", "inside", "loss cost"):
        table.add_column(col, justify="right")
    for label, s in out["sizes"].items():
        if "error" in s:
            table.add_row(label, "-", "-", "-", s["error"], "-", "-", "-")
            continue
        table.add_row(label, _q(s["N"]), f"{s['budget']:.3g}", f"{s['lr_opt']:.3g}",
                      f"[{s['flat_region'][0]:.3g}, {s['flat_region'][1]:.3g}]", f"{s['rule_lr']:.3g}",
                      "yes" if s["rule_inside_flat_region"] else "NO", f"+{s['rule_loss_excess']:.2%}")
    console.print(table)


def _print_ladder(report: dict) -> None:
    tr = report["training"]
    console.print(f"[bold]ladder[/]: {report['n_runs']} runs; trained {tr['trained']}, skipped {tr['skipped']}, "
                  f"diverged {tr['diverged']}, failed {tr['failed']} ({report['seconds']:.0f}s)")
    rule = report.get("hp_rule", {})
    if rule:
        console.print(f"learning rate lr(N) = {rule['lr']}; warmup {rule['warmup']}; {rule['schedule']} schedule", markup=False)
    comp = report.get("compute")
    if comp and comp["saved_fraction"] > 0:
        console.print(f"grid compute {comp['trained_flops']:.3g} FLOPs trained for {comp['nominal_flops']:.3g} nominal "
                      f"({comp['saved_fraction']:.0%} saved by {comp['trunks']} shared WSD trunks)")
    for family, res in report["families"].items():
        if "error" in res:
            console.print(f"[red]{family}: {res['error']}[/]")
            continue
        _print_fit_report(res, f"the {family} ladder")
        v = res.get("verification")
        if v and "actual_loss" in v:
            console.print(f"[bold]{family} verification[/] at C={v['compute_flops']:.3g} "
                          f"({v['extrapolation']['compute_over_max_fitted']:.1f}x the largest fitted budget), N={_q(v['N'])}, "
                          f"D={_q(v['D'])}: forecast {v['predicted_loss']:.4f} [{v['interval'][0]:.4f}, {v['interval'][1]:.4f}], "
                          f"actual {v['actual_loss']:.4f} ({v['relative_error']:+.2%}; inside: {v['inside_interval']}; "
                          f"by the {v.get('forecast_by', v['law'])})")
            weights, same = v.get("selection", {}).get("weights", {}), v.get("selection", {}).get("duplicates", {})
            for name, c in [(v["law"], v.get("form")), *v.get("other_laws", {}).items(), ("curve law", v.get("curve_law"))]:
                if c and "relative_error" in c:
                    console.print(f"  {name}: forecast {c['predicted_loss']:.4f} [{c['interval'][0]:.4f}, "
                                  f"{c['interval'][1]:.4f}] ({c['relative_error']:+.2%}; inside: {c['inside_interval']}; "
                                  + (f"weight {weights[name]:.2f})" if name in weights else
                                     f"the same forecast as {same[name]})" if name in same else "not combined)"), markup=False)
            groups = v.get("selection", {}).get("groups", {})
            if len(groups) > 1:
                console.print("  sources: " + "; ".join(
                    f"{g} {gr['predicted_loss']:.4f} (sd {gr['sd_log']:.3f} in log, weight {gr['weight']:.2f})"
                    for g, gr in groups.items()), markup=False)
        elif v:
            console.print(f"[yellow]{family} verification[/]: {v.get('error') or v.get('status')}")
    eff = report.get("efficiency")
    if eff and eff["runs"]:
        share = eff["outside_steps_share"]
        console.print(f"efficiency: {eff['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s trained over the wall time = "
                      f"{eff['fraction_of_peak']:.1%} of the fp32 matmul peak ({eff['fp32_matmul_peak_flops'] / 1e9:.0f} GFLOP/s); "
                      + ("time outside training steps not measured" if share is None else
                         f"{share:.1%} of {eff['thread_budget']} thread(s) x wall time outside training steps"), markup=False)
    if "moe_vs_dense" in report:
        table = Table(title="MoE compute multiplier (dense compute reaching the MoE loss / MoE compute)")
        for col in ("budget", "MoE loss", "multiplier"):
            table.add_column(col, justify="right")
        for r in report["moe_vs_dense"]["budgets"]:
            table.add_row(f"{r['budget']:.3g}", f"{r['moe_loss']:.4f}", "-" if r["multiplier"] is None else f"{r['multiplier']:.2f}x")
        console.print(table)


def _default_workers(device: str, executor: str, threads: int | None) -> tuple[int, int | None]:
    """A CPU ladder on the local executor: one worker per usable core, each single-threaded (small models
    use extra threads poorly; a run left alone gets the idle workers' threads). Otherwise one worker."""
    if device != "cpu" or executor != "local":
        return 1, threads
    import os
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per = threads or 1
    return max(1, cores // per), per


@app.command("compare")
def compare_cmd(
    baseline: str = typer.Option(..., "--baseline", help="Baseline recipe. Stored mode: a family or recipe name in the "
                                                         "store (e.g. dense); training mode (--preset): a recipe."),
    candidate: list[str] = typer.Option(..., "--candidate", help="A candidate recipe (repeat). Training mode: NAME or "
                                                                 "NAME:KEY=VALUE,... (dense, moe, muon, bpe; keys arch, "
                                                                 "n_experts, top_k, optimizer, tokenizer, lr)."),
    preset: Optional[str] = typer.Option(None, help="Train the recipes' ladders with this ladder preset (smoke, quick, "
                                                    "standard, large) before comparing; without it, compare stored runs."),
    budgets: Optional[str] = typer.Option(None, help="Training mode: comma-separated compute budgets in FLOPs."),
    sizes_per_budget: Optional[int] = typer.Option(None, help="Training mode: model sizes per IsoFLOP budget (>= 3)."),
    grid_seeds: Optional[int] = typer.Option(None, help="Training mode: independent trainings (seeds) of every grid run "
                                                        "(default: the preset's, 2 for quick)."),
    corpus: str = typer.Option("stdlib", help="Training mode: the corpus (as for scalinglab ladder)."),
    seed: int = typer.Option(0, help="Seed of every run (initialisation and data order) and of the bootstrap."),
    bootstrap: Optional[int] = typer.Option(None, help="Joint bootstrap resamples (default: the preset's, else 400)."),
    executor: str = typer.Option("local", help="Training mode: local (worker processes) or inline (this process)."),
    threads: Optional[int] = typer.Option(None, help="Training mode: torch threads per worker (default: one single-thread worker per core)."),
    store: Path = StoreOpt,
    out: Path = typer.Option(Path("scalinglab-out/compare"), help="Directory for the figure."),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Write the comparison figure (PNG and SVG)."),
    checkpoints: str = typer.Option("scalinglab-out/checkpoints", help="Training mode: checkpoint directory."),
    as_json: bool = JsonOpt,
):
    """Does a recipe change keep paying as compute grows? Compare IsoFLOP ladders of a baseline and candidates.

    Per budget: the compute-equivalent multiplier (baseline compute reaching the candidate's frontier loss /
    candidate compute) with a bootstrap interval (runs resampled jointly), the exponent differences, and a
    verdict from the interval on d log(multiplier) / d log C: constant gain, growing gain, shrinking gain or
    not distinguishable at this range. Losses in bits per byte when tokenizers differ.
    """
    import dataclasses as dc

    _whole(bootstrap, "--bootstrap", 20, 100_000)
    _whole(sizes_per_budget, "--sizes-per-budget", 3, 64)
    _whole(grid_seeds, "--grid-seeds", 1, 16)
    _whole(threads, "--threads", 1, 1024)
    _choice(executor, "--executor", ("local", "inline"))
    from ..experiments.compare import RECIPE_HELP, parse_recipe
    names = [baseline, *candidate]
    if len(set(names)) != len(names):
        _fail(f"--baseline and --candidate must name distinct recipes, got {', '.join(names)}")
    if preset is None:
        for opt, value in (("--budgets", budgets), ("--sizes-per-budget", sizes_per_budget), ("--grid-seeds", grid_seeds)):
            if value is not None:
                _fail(f"{opt} applies to training mode (give --preset), not to stored runs")
        _existing_store(store)
        from ..experiments.compare import compare_stored
        with RunStore(store) as st:
            missing = [n for n in names if not _stored_recipe(st, n)]
            if missing:
                families = sorted({r.family for r in st.runs(status="finished") if r.family})
                _fail(f"no finished runs of {', '.join(missing)} in {store} (families there: "
                      f"{', '.join(families) or 'none'}); give --preset to train them")
            try:
                result = compare_stored(st, baseline, list(candidate), n_bootstrap=bootstrap or 400, seed=seed, out=out,
                                        figures=figures)
            except (FitError, ValueError) as e:
                _fail(str(e))
    else:
        from ..train.ladder import PRESETS
        _choice(preset, "--preset", tuple(PRESETS))
        try:
            recipes = [parse_recipe(n) for n in names]
        except ValueError as e:
            _fail(f"--baseline/--candidate: {e}")
        budget_values = _quantities(budgets, "--budgets", lo=1e6, hi=MAX_CPU_RUN_FLOPS) if budgets else None
        _corpus(corpus)
        if any(dict(r.options).get("data", "raw") != "raw" for r in recipes):
            _require("curate", "a recipe with curated data", "datasketch")
        _require("train", "scalinglab compare --preset", "torch")
        if any(dict(r.options).get("tokenizer") == "bpe" for r in recipes):
            _require("bpe", "a bpe recipe", "tokenizers")
        from ..experiments.compare import run_compare
        from ..train.executors import make_executor
        changes: dict = {"corpus": corpus, "seed": seed}
        for key, value in (("budgets", tuple(budget_values) if budget_values else None),
                           ("sizes_per_budget", sizes_per_budget), ("grid_seeds", grid_seeds), ("n_bootstrap", bootstrap)):
            if value is not None:
                changes[key] = value
        try:
            spec = dc.replace(PRESETS[preset], **changes)
            for r in recipes:
                r.apply(spec)
            n_workers, threads = _default_workers(spec.device, executor, threads)
            ex = make_executor(executor, workers=n_workers, threads=threads)
        except ValueError as e:
            _fail(f"{e} (recipes: {RECIPE_HELP})")
        log = _log(as_json, highlight=False, markup=False)
        with RunStore(store) as st:
            try:
                result = run_compare(spec, recipes[0], recipes[1:], st, executor=ex, checkpoint_dir=checkpoints, out=out,
                                     figures=figures, show_progress=not as_json, log=log)
            except (FitError, ValueError) as e:
                _fail(str(e))
            finally:
                ex.close()
    if as_json:
        return _emit_json(result)
    _print_compare(result)


def _nearest_serving(rows: list[dict], budget: float) -> dict | None:
    rows = [r for r in rows if r["budget"] and r["decode_flops_per_token"]]
    return min(rows, key=lambda r: abs(math.log(r["budget"] / budget)), default=None)


def _stored_recipe(st, name: str) -> bool:
    from ..experiments.compare import stored_recipe_runs
    return bool(stored_recipe_runs(st, name))


def _print_compare(result: dict) -> None:
    for name, r in result["recipes"].items():
        if "error" in r:
            console.print(f"[red]{escape(name)}: {escape(r['error'])}[/]")
            continue
        f = r["frontier"]
        console.print(f"{name}: {r['n_runs']} runs; frontier L*(C) = {f['E']:.4g} + {f['k']:.4g} C^-{f['a']:.4f} "
                      f"({result['loss_units']})", markup=False, highlight=False)
    serving = result.get("serving", {})
    for name, c in result["candidates"].items():
        if "error" in c:
            console.print(f"{name}: {c['verdict']} ({c['evidence']})", markup=False, highlight=False)
            continue
        base = result["baseline"]
        table = Table(title=f"{name} vs {base}: compute-equivalent multiplier ({result['level']:.0%} interval; "
                            f"{c['verdict_from']}) and the best run's serving side")
        for col in ("budget", f"{base} loss", f"{name} loss", "multiplier", "interval", "params total / active",
                    "decode FLOPs/token"):
            table.add_column(col, justify="right")
        for row in c["budgets"]:
            iv = row["interval"]
            sides = [_nearest_serving(serving.get(n, []), row["budget"]) for n in (base, name)]
            table.add_row(f"{row['budget']:.3g}", f"{row.get('baseline_loss', row.get('baseline_min_loss')):.4f}",
                          f"{row.get('candidate_loss', row.get('candidate_min_loss')):.4f}",
                          f"{row['multiplier']:.3g}x", f"[{iv[0]:.3g}, {iv[1]:.3g}]" if iv else "-",
                          " vs ".join(f"{_q(x['n_total'])} / {_q(x['n_active'])}" if x else "-" for x in sides),
                          " vs ".join(_q(x["decode_flops_per_token"]) if x else "-" for x in sides))
        console.print(table)
        e = c["exponents"]
        console.print("exponent differences (candidate - baseline): " + "; ".join(
            f"{k} {v['difference']:+.3f}" + (f" [{v['interval'][0]:+.3f}, {v['interval'][1]:+.3f}]" if v["interval"] else "")
            for k, v in e.items()), markup=False, highlight=False)
        console.print(f"verdict: {c['verdict']} -- {c['evidence']}", markup=False, highlight=False)
    for w in result.get("warnings", []):
        console.print(f"warning: {w}", markup=False, highlight=False)
    for p in result.get("figures", []):
        console.print(f"figure: {p}", markup=False, highlight=False)
