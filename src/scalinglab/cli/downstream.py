"""Capabilities across scale: the ``scores`` group, ``evaluate``, ``emergence``, ``forecast``, ``gate``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from .. import importers
from .._names import FitError
from .._units import parse_quantity
from ..store import RunStore, StoreError
from ._common import (MAX_FLOPS, MAX_PARAMS, MAX_TOKENS, JsonOpt, StoreOpt, Table, _App, _check_on_duplicate, _choice,
                      _emit_json, _existing_store, _fail, _finite, _log, _quantity, _require, _task, _whole, app, console)


scores_app = _App(help="Downstream task scores across scale.", no_args_is_help=True)


@scores_app.command("import")
def scores_import_cmd(files: list[Path] = typer.Argument(..., help="A table (CSV/TSV/JSONL/Parquet), or lm-evaluation-harness result JSON files with --sizes."),
                      map_: Optional[list[str]] = typer.Option(None, "--map", help="Wide tables: COLUMN=TASK:METRIC (repeat), e.g. hellaswag_bpb=hellaswag:task_loss."),
                      map_file: Optional[Path] = typer.Option(None, "--map-file", help="Wide tables: a table with columns column, task, metric."),
                      sizes: Optional[Path] = typer.Option(None, "--sizes", help="Harness JSON files: a table with columns file or model, N, D (optional checkpoint, final)."),
                      store: Path = StoreOpt,
                      on_duplicate: str = typer.Option("error", help="Scores already in the store: error, skip or replace."),
                      as_json: bool = JsonOpt):
    """Import per-model or per-checkpoint benchmark scores (e.g. a published model ladder).

    Every table places models by C (training FLOPs) or N (parameters) and
    D (tokens; at a checkpoint, the tokens seen so far). Shapes:

      long:        model,N,D,task,metric,value   (loss = the model's overall loss)
      long by task: model,N,D,task,bpb,acc      (bpb/loss/task_loss = that task's loss)
      wide:        model,N,D,hellaswag_bpb,hellaswag_acc,... with --map or --map-file
      harness:     results_*.json --sizes sizes.csv

    task_loss (also read from bpb, task_bpb, bits_per_byte) is the loss of the
    correct answer, e.g. bits per byte; forecast and gate need it beside the
    score. Optional columns checkpoint (or step) and final (true/false) mark
    checkpoints of a run: forecasts fit task loss on final checkpoints and the
    loss-to-score curve on all; without final, the checkpoint with the most
    tokens is final. Example (CSV):

      model,N,D,checkpoint,task,bpb,acc
      m-1B,1e9,1e10,5000,hellaswag,0.95,0.41
      m-1B,1e9,2e10,10000,hellaswag,0.91,0.44
    """
    _check_on_duplicate(on_duplicate)
    from ..forecast.scores import parse_harness, parse_mapping, parse_scores
    try:
        if sizes is not None:
            if map_ or map_file:
                _fail("--map and --map-file are for wide tables; harness files take --sizes only")
            rows = parse_harness(files, sizes)
        elif len(files) != 1:
            _fail(f"give one table (got {len(files)} files); several files are lm-evaluation-harness results and need --sizes")
        else:
            rows = parse_scores(files[0], mapping=parse_mapping(map_, map_file))
        with RunStore(store) as st:
            st.add_scores(rows, on_duplicate=on_duplicate)
    except (importers.ImportFormatError, StoreError) as e:
        _fail(str(e))
    runs = {r["model"].rsplit("@", 1)[0] for r in rows}
    out = {"written": len(rows), "models": len(runs), "checkpoints": len({r["model"] for r in rows}),
           "tasks": sorted({r["task"] for r in rows})}
    if as_json:
        return _emit_json(out)
    ckpts = f" ({out['checkpoints']} checkpoints)" if out["checkpoints"] != out["models"] else ""
    console.print(f"imported {out['written']} scores of {out['models']} models{ckpts} on {', '.join(out['tasks'])}",
                  markup=False)


@app.command("evaluate")
def evaluate_cmd(tasks: str = typer.Option("addition:2,multiplication:2,reverse:2", help="Comma-separated KIND:DIGITS."),
                 problems: int = typer.Option(100, help="Held-out problems per task."),
                 family: Optional[str] = None, store: Path = StoreOpt,
                 checkpoints: Path = typer.Option(Path("scalinglab-out/checkpoints")), as_json: bool = JsonOpt):
    """Evaluate every trained checkpoint on procedural tasks under exact match and continuous metrics."""
    for t in tasks.split(","):
        _task(t, "--tasks")
    _whole(problems, "--problems", 1, 1_000_000)
    _require("train", "scalinglab evaluate", "torch")
    _existing_store(store)
    from ..forecast.evaluate import evaluate_runs
    log = _log(as_json, markup=False)
    try:
        with RunStore(store) as st:
            rows = evaluate_runs(st, checkpoints, tasks.split(","), n_problems=problems, family=family, log=log)
            if not rows:
                _fail(f"nothing to evaluate: no finished byte-tokenizer lab runs in {store} with a checkpoint under "
                      f"{checkpoints} (train a ladder first, or give --checkpoints)")
            st.add_scores(rows)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    if as_json:
        return _emit_json({"scores": rows})
    console.print(f"{len(rows)} scores written to {store}", markup=False)


def _read(store: Path, analysis, *args, **kwargs):
    """``analysis(the store, *args, **kwargs)`` on the store opened read-only (refused when there is none); its
    ValueError reaches the user as one line."""
    _existing_store(store)
    try:
        with RunStore(store, readonly=True) as st:
            return analysis(st, *args, **kwargs)
    except ValueError as e:
        _fail(str(e))


@app.command("emergence")
def emergence_cmd(task: str = typer.Option(..., help="Task, e.g. addition:2."), store: Path = StoreOpt,
                  out: Path = typer.Option(Path("scalinglab-out/emergence")), as_json: bool = JsonOpt):
    """The same models under a discontinuous and continuous metrics, against compute and loss."""
    from ..forecast.stored import score_table
    from ..report.figures import emergence_figure
    models, by_model = _read(store, score_table, task, "exact_match")
    table = [{"model": m, **by_model[m]} for m in models]
    paths = emergence_figure(table, task, out)
    res = {"task": task, "models": table, "figures": paths}
    if as_json:
        return _emit_json(res)
    t = Table(title=f"{task}: discontinuous vs continuous metrics across scale")
    for col in ("model", "C", "val loss", "exact match", "log-lik", "task loss", "edit dist", "Brier"):
        t.add_column(col, justify="right")
    def cell(r, key, fmt):
        return "-" if r.get(key) is None else fmt.format(r[key])

    for r in table:
        t.add_row(escape(r["model"]), f"{r['c']:.3g}", cell(r, "loss", "{:.4f}"), cell(r, "exact_match", "{:.3f}"),
                  cell(r, "log_likelihood", "{:.3f}"), cell(r, "task_loss", "{:.3f}"), cell(r, "token_edit_distance", "{:.2f}"),
                  cell(r, "brier", "{:.3f}"))
    console.print(t)
    for p in paths:
        if p.endswith(".png"):
            console.print(f"figure: {p}", markup=False)


def _forecast_and_record(out: dict, fc, crossing, store: Path, compute, params, tokens, threshold) -> None:
    """Add to ``out`` the fitted forecast ``fc`` at --params and --tokens (else at --compute) and the compute where
    the score crosses --threshold (``crossing``), then record ``out`` as a decision in the store."""
    try:
        if params or tokens:
            if not (params and tokens):
                _fail("give both --params and --tokens (or --compute)")
            out["forecast"] = fc.predict(N=parse_quantity(params), D=parse_quantity(tokens))
        elif compute:
            out["forecast"] = fc.predict(C=parse_quantity(compute))
        if threshold is not None:
            out["threshold"] = crossing(threshold)
    except (FitError, ValueError) as e:
        _fail(str(e))
    with RunStore(store) as st:
        out["decision_id"] = st.add_decision("task-forecast", f"{out['task']}/{out['metric']}", "forecast", out)


def _print_ladder_forecast(fc, store, task, metric, compute, params, tokens, threshold, as_json):
    from ..forecast.tasklaws import compute_for_score, param_intervals
    out: dict = {"task": task, "metric": metric, "method": "task-ladder", "variant": fc.variant_,
                 "step1": {"params": fc.step1_.params_}, "step2": {"params": fc.step2_, "chance": fc.chance},
                 "single_step": {"params": fc.single_}, "intervals": param_intervals(fc),
                 "backtest": fc.backtest_, "predictability": fc.predictability_, "fitted_on": fc.data_range_}
    if getattr(fc, "holdout_", None) is not None:
        out["holdout"] = fc.holdout_
    _forecast_and_record(out, fc, lambda value: compute_for_score(fc, value), store, compute, params, tokens, threshold)
    if as_json:
        return _emit_json(out)
    pr, dr = fc.predictability_, fc.data_range_
    iv = lambda v: f"[{v[0]:.4g}, {v[1]:.4g}]" if v else ""  # noqa: E731
    console.print(f"{task} {metric}: task-ladder forecast, variant {fc.variant_} (chosen by backtest), "
                  f"{dr['runs']} runs, {dr['checkpoints']} checkpoints, chance {fc.chance:g}", markup=False)
    for o in fc.backtest_["origins"]:
        console.print(f"  backtest {o['run']}: actual {o['actual_score']:.4f}; " + ", ".join(
            f"{k} {v:.4f}" for k, v in o["predicted"].items()), markup=False)
    if "holdout" in out:
        h = out["holdout"]
        console.print(f"  hold-out: the {len(h['held_out'])} largest runs forecast from the other {h['fitted_runs']} "
                      f"(variant {h['variant']}); mean absolute error {h['mean_abs_error_points']:.1f} points", markup=False)
        for r in h["held_out"]:
            inside = "" if r["inside"] is None else (", inside" if r["inside"] else ", OUTSIDE")
            console.print(f"    {r['run']} (N={r['N']:.3g}, D={r['D']:.3g}, {r['compute_over_max_fitted']:.2g}x the fitted "
                          f"compute): predicted {r['predicted_score']:.3f} {iv(r['score_prediction_interval'])}, actual "
                          f"{r['actual_score']:.3f}, error {r['error_points']:+.1f} points{inside}", markup=False)
    if pr.get("score_noise") is None:
        console.print(f"  predictability: {pr['note']}", markup=False)
    else:
        console.print(f"  predictability: checkpoint noise {100 * pr['score_noise']:.2f} points of score, "
                      f"{100 * pr['task_loss_rel_noise']:.2f}% of task loss (last {pr['last_checkpoints']} checkpoints); "
                      f"{pr['noise_fraction']:.2f} of the ladder's score spread"
                      + (" -- TOO NOISY to forecast" if pr["too_noisy"] else ""), markup=False)
    if "forecast" in out:
        f = out["forecast"]
        head = f"  at N={f['N']:.3g}, D={f['D']:.3g} (C={f['compute_flops']:.3g}, {f['extrapolation']['compute_over_max']:.2g}x the largest run):"
        if f["status"] == "too_noisy":
            console.print(f"{head} not forecast (too noisy; --json has the withheld numbers)", markup=False)
        else:
            i = f["intervals"]
            console.print(f"{head} task loss {f['task_loss']:.4f} {iv(i.get('task_loss'))}, {metric} {f['score']:.4f} "
                          f"{iv(i.get('score'))} (prediction {iv(i.get('score_prediction'))})", markup=False)
    if "threshold" in out:
        t = out["threshold"]
        console.print(f"  {metric} reaches {threshold} at C ≈ {t['compute_flops']:.3g} {iv(t['intervals'].get('compute_flops'))}",
                      markup=False)


@app.command("forecast")
def forecast_cmd(task: str = typer.Option(..., help="Task, e.g. addition:2."),
                 metric: str = typer.Option("exact_match"),
                 compute: Optional[str] = typer.Option(None, "--compute", help="Training FLOPs of the planned run."),
                 params: Optional[str] = typer.Option(None, "--params"), tokens: Optional[str] = typer.Option(None, "--tokens"),
                 threshold: Optional[float] = typer.Option(None, help="Compute at which the score crosses this value."),
                 backtest_n: int = typer.Option(0, "--backtest", help="Leave out the N largest models and forecast them "
                                                "(with a ladder: fitted on the rest, intervals, inside or not)."),
                 chance: Optional[float] = typer.Option(None, help="Score floor (chance level); default by task name, else 0."),
                 variant: str = typer.Option("auto", help="Ladder forecasts: auto (backtest picks), two_step, single_step or stacked."),
                 bootstrap: int = typer.Option(1000), store: Path = StoreOpt, as_json: bool = JsonOpt):
    """Two-step forecast: size -> task loss (power law) -> score (sigmoid), with bootstrap intervals.

    When every model has N and D (a model ladder, Bhagia et al. 2024):
    task loss = E + A/N^alpha + B/D^beta on final checkpoints, score =
    sigmoid of task loss from the chance level to a fitted ceiling on all
    checkpoints, a joint bootstrap over runs, the variant (two_step,
    single_step, stacked) chosen by a rolling-origin backtest on the ladder,
    and the task's checkpoint noise; a task too noisy to forecast is
    flagged and its score withheld. Otherwise: task loss = E + (C_c/C)^alpha.
    """
    from ..forecast import backtest
    from ..forecast.stored import task_ladder_forecast, two_step_forecast
    for text, option, hi in ((compute, "--compute", MAX_FLOPS), (params, "--params", MAX_PARAMS), (tokens, "--tokens", MAX_TOKENS)):
        if text is not None:
            _quantity(text, option, hi=hi)
    _finite(threshold, "--threshold", lo=0, hi=1) if metric != "task_loss" else _finite(threshold, "--threshold", lo=0)
    _finite(chance, "--chance", lo=0, hi=1, hi_open=True)
    _whole(backtest_n, "--backtest", 0, 1000)
    _whole(bootstrap, "--bootstrap", 0, 100_000)
    _choice(variant, "--variant", ("auto", "two_step", "single_step", "stacked"))
    ladder = _read(store, task_ladder_forecast, task, metric, bootstrap, chance=chance, variant=variant,
                   n_origins=max(3, backtest_n), holdout=backtest_n)
    if ladder is not None:
        return _print_ladder_forecast(ladder, store, task, metric, compute, params, tokens, threshold, as_json)
    fc, C, TL, S, N, D = _read(store, two_step_forecast, task, metric, bootstrap)
    out: dict = {"task": task, "metric": metric}
    try:
        if backtest_n:
            out["backtest"] = backtest(C, TL, S, n_holdout=backtest_n, N=N, D=D, n_bootstrap=bootstrap,
                                       score_bounds=fc.score_bounds)
        fc.fit(C, TL, S, N=N, D=D)
        out["method"] = ("task loss = E + A/N^alpha + B/D^beta (compute forecasts at the law's compute-optimal N, D)"
                         if fc.by_nd_ else "task loss = E + (C_c/C)^alpha") + "; score = sigmoid(task loss)"
        out["step1"] = {"params": fc.step1_.params_, "intervals": fc.step1_.intervals()}
        out["step2"] = {"params": fc.step2_.params_}
    except (FitError, ValueError) as e:
        _fail(str(e))
    _forecast_and_record(out, fc, fc.compute_for_score, store, compute, params, tokens, threshold)
    if as_json:
        return _emit_json(out)
    console.print(f"[bold]{escape(task)} {escape(metric)}[/]: {out['method']} ({len(C)} models)")
    fmt_iv = lambda v: f"[{v[0]:.4g}, {v[1]:.4g}]" if v else ""  # noqa: E731
    if "forecast" in out:
        f = out["forecast"]
        iv = f["intervals"]
        console.print(f"  at C={f['compute_flops']:.3g}: task loss {f['task_loss']:.4f} {fmt_iv(iv.get('task_loss'))}, "
                      f"{metric} {f['score']:.4f} {fmt_iv(iv.get('score'))} (prediction {fmt_iv(iv.get('score_prediction'))}); "
                      f"{f['extrapolation']['compute_over_max_fitted']:.2g}x the largest model's compute")
    if "threshold" in out:
        t = out["threshold"]
        console.print(f"  {metric} crosses {threshold} at C ≈ {t['compute_flops']:.3g} {fmt_iv(t['intervals'].get('compute_flops'))}")
    if "backtest" in out:
        for r in out["backtest"]["held_out"]:
            console.print(f"  backtest at C={r['compute_flops']:.3g}: predicted {r['predicted_score']:.4f} "
                          f"{fmt_iv(r['intervals'].get('score'))}, actual {r['actual_score']:.4f}; task loss predicted "
                          f"{r['predicted_task_loss']:.4f} vs actual {r['actual_task_loss']:.4f}")


@app.command("gate")
def gate_cmd(policy: Path = typer.Option(..., help="TOML policy of capability thresholds."),
             run: Optional[str] = typer.Option(None, "--run", help="Run id or name of a trained run (measured evidence)."),
             plan_compute: Optional[str] = typer.Option(None, "--plan-compute", help="Compute of a planned run (forecast evidence)."),
             plan_params: Optional[str] = typer.Option(None, "--plan-params", help="Parameters of a planned run (with "
                                                       "--plan-tokens; a ladder forecast in N and D, not only C)."),
             plan_tokens: Optional[str] = typer.Option(None, "--plan-tokens", help="Training tokens of a planned run."),
             bootstrap: int = typer.Option(1000, min=0, max=100_000), store: Path = StoreOpt, as_json: bool = JsonOpt):
    """Evaluate a run or a planned run against a release policy: pass (exit 0), review (10) or hold (20).

    The policy is a TOML file of \\[\\[rule]] tables. A rule fires its action when
    its condition holds for the evidence: a measured score (--run), or a
    two-step forecast (--plan-compute) whose whole 95% interval satisfies it;
    an interval straddling the threshold gives on_uncertain. The decision is
    the most severe outcome; a rule without evidence holds.
    Fields: name, task (e.g. addition:2), metric (exact_match, log_likelihood,
    task_loss, token_edit_distance, brier), op (>=, >, <=, <), threshold,
    action (review or hold), on_uncertain (pass, review or hold; default
    hold), rationale (optional). Example:

      \\[\\[rule]]
      name = "addition-review"
      task = "addition:2"
      metric = "exact_match"
      op = ">="
      threshold = 0.9
      action = "review"
      rationale = "arithmetic at this level needs a human look"
    """
    from ..forecast import decide, load_policy
    from ..forecast.gates import PolicyError
    from ..forecast.stored import gate_evidence
    if (plan_params is None) != (plan_tokens is None):
        _fail("give --plan-params and --plan-tokens together (a planned run's N and D)")
    if plan_compute is not None and plan_params is not None:
        _fail("give --plan-compute, or --plan-params with --plan-tokens, not both")
    planned = plan_compute is not None or plan_params is not None
    if (run is None) == (not planned):
        _fail("give exactly one of --run, --plan-compute, or --plan-params with --plan-tokens")
    N_plan = D_plan = None
    if plan_compute is not None:
        C = _quantity(plan_compute, "--plan-compute", hi=MAX_FLOPS)
    elif plan_params is not None:
        N_plan, D_plan = _quantity(plan_params, "--plan-params", hi=MAX_PARAMS), _quantity(plan_tokens, "--plan-tokens", hi=MAX_TOKENS)
        C = 6.0 * N_plan * D_plan
    _existing_store(store)
    try:
        with RunStore(store, readonly=True) as st:
            known = {r["task"] for r in st.scores()}
            rules, policy_hash = load_policy(policy, known_tasks=known)
            if run is not None:
                subject = run
                evidence = gate_evidence(st, rules, run=run)
            else:
                subject = f"plan:C={C:.3g}" if N_plan is None else f"plan:N={N_plan:.3g},D={D_plan:.3g}"
                evidence = gate_evidence(st, rules, compute=C, params=N_plan, tokens=D_plan, n_bootstrap=bootstrap)
    except PolicyError as e:
        _fail(str(e))
    except (FitError, ValueError, FileNotFoundError) as e:
        _fail(str(e))
    result = decide(rules, evidence)
    result.update({"subject": subject, "policy": str(policy), "policy_hash": policy_hash})
    with RunStore(store) as st:
        result["decision_id"] = st.add_decision("gate", subject, result["decision"], result, policy_hash)
    if as_json:
        _emit_json(result)
    else:
        colour = {"pass": "green", "review": "yellow", "hold": "red"}[result["decision"]]
        console.print(f"[bold {colour}]{result['decision'].upper()}[/] for {escape(str(subject))} (policy {escape(str(policy))}, sha256 {policy_hash[:12]})")
        for r in result["rules"]:
            console.print(f"  {r['rule']}: {r['outcome']} — {r['reason']}", markup=False)
    raise typer.Exit(result["exit_code"])
