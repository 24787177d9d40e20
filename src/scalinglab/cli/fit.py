"""Fitting and using laws: ``fit``, ``backtest``, ``predict``, ``plan``, ``presets``."""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from .. import _names, importers
from .._names import FitError, PRESET_SOURCES
from ..cost import HARDWARE
from ..store import RunStore
from ._common import (MAX_FLOPS, MAX_PARAMS, MAX_TOKENS, BootstrapKindOpt, FamilyOpt, FlopConventionOpt, JsonOpt,
                      NConventionOpt, StoreOpt, Table, _check_bootstrap_kind, _choice, _conventions, _emit_json,
                      _existing_store, _fail, _finite, _iv, _Lazy, _q, _quantities, _quantity, app, console, np)

analysis = _Lazy("scalinglab.analysis")
planning = _Lazy("scalinglab.plan")


def get_preset(name: str):
    from ..laws import preset
    return preset(name)


def law_from_dict(payload: dict):
    from ..laws import law_from_dict as load
    return load(payload)


def _runs_from(file: Optional[Path], store: Path, family: Optional[str]):
    try:
        if file is not None:
            return importers.parse_runs(file).runs, str(file)
        _existing_store(store)
        with RunStore(store, readonly=True) as st:
            runs = st.runs(family=family)
            if family is not None and not runs:
                known = sorted({r.family for r in st.runs() if r.family})
                _fail(f"--family {family}: no runs of that family in {store} (families there: {', '.join(known) or 'none'})")
            return runs, f"store:{store}"
    except (importers.ImportFormatError, FileNotFoundError) as e:
        _fail(str(e))


@app.command("fit")
def fit_cmd(
    file: Optional[Path] = typer.Argument(None, help="Fit runs from this file instead of the store."),
    store: Path = StoreOpt,
    law: list[str] = typer.Option(list(_names.DEFAULT_LAWS), "--law",
                                  help=f"Law(s) to fit: {', '.join(_names.LAW_CHOICES)} (repeatable); 'auto' fits every "
                                       "(N, D) form and recommends one by rolling-origin backtests on the fitted runs."),
    n_convention: str = NConventionOpt,
    flop_convention: str = FlopConventionOpt,
    family: Optional[str] = FamilyOpt,
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples over runs (0 disables intervals)."),
    bootstrap_kind: str = BootstrapKindOpt,
    holdout: str = typer.Option("none", help="Runs to leave out and forecast: " + _names.HOLDOUT_HELP + "."),
    huber_delta: float = typer.Option(1e-3, help="Huber delta on log-loss residuals."),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("scalinglab-out/fit"), help="Directory for figures."),
    figures: bool = typer.Option(True, help="Write PNG and SVG figures."),
    save: bool = typer.Option(True, help="Record the fits in the store."),
    as_json: bool = JsonOpt,
):
    """Fit scaling laws with bootstrap intervals; optionally check extrapolation on held-out runs."""
    for name in law:
        if name not in analysis.LAW_CHOICES:
            _fail(f"unknown law {name!r}; choose from {', '.join(analysis.LAW_CHOICES)}")
    try:
        analysis.parse_holdout(holdout)
    except ValueError as e:
        _fail(f"--holdout: {e}")
    _check_bootstrap_kind(bootstrap_kind)
    _conventions(n_convention, flop_convention)
    _finite(huber_delta, "--huber-delta", lo=0, lo_open=True, hi=10)
    if bootstrap < 0:
        _fail(f"--bootstrap must be 0 (no intervals) or more, got {bootstrap}")
    runs, source = _runs_from(file, store, family)
    curves = None
    if file is None and "approach1" in law:
        with RunStore(store, readonly=True) as st:           # every curve in one query
            curves = {rid: {"flops": c["flops"], "loss": c["loss"]}
                      for rid, c in st.curves([r.run_id for r in runs]).items() if len(c["flops"])}
    selection = analysis.Selection(n_convention=n_convention, flop_convention=flop_convention, family=family,
                                   holdout=holdout)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            report = analysis.fit_runs(runs, law, selection=selection, n_bootstrap=bootstrap, seed=seed,
                                       huber_delta=huber_delta, curves=curves, bootstrap_kind=bootstrap_kind)
        except (FitError, ValueError) as e:
            _fail(str(e))
    report["warnings"] = [str(w.message) for w in caught]
    if save:
        with RunStore(store) as st:
            analysis.save_fits(st, report, source)
    if figures:
        _, N, D, C, L = analysis.run_arrays(runs, n_convention, flop_convention)
        report["figures"] = _figures(report, N, D, C, L, out)
    if as_json:
        return _emit_json(analysis.report_json(report))
    _print_fit_report(report, source)


def _figures(report, N, D, C, L, out):
    from ..report.figures import fit_figures
    return fit_figures(report, N, D, C, L, out)


def _print_fit_report(report: dict, source: str) -> None:
    sel = report["selection"]
    ho = report.get("holdout")
    split = f" ({report['n_fitted']} fitted, {ho['n_held_out']} held out)" if ho else ""
    console.print(f"[bold]{report['n_runs']} runs[/] from {escape(source)}{split}; N = {sel['n_convention']}, "
                  f"C = {sel['flop_convention']}")
    for w in report.get("warnings", []):
        console.print(f"[yellow]warning:[/] {w}")
    for name, entry in report["fits"].items():
        if "error" in entry:
            console.print(f"[red]{name}: fit failed[/] — {escape(entry['error'])}")
            continue
        table = Table(title=f"{name}" + (f" (fit id {entry['fit_id']})" if "fit_id" in entry else ""))
        table.add_column("parameter")
        table.add_column("value", justify="right")
        table.add_column(f"95% interval ({entry['n_bootstrap']} bootstrap)", justify="right")
        for k, v in entry["params"].items():
            iv = entry["intervals"].get(k)
            table.add_row(k, f"{v:.5g}", f"[{iv[0]:.5g}, {iv[1]:.5g}]" if iv else "")
        console.print(table)
        dr = entry.get("data_range", {})
        if dr:
            console.print("  fitted on: " + ", ".join(f"{k}={_q(v)}" for k, v in dr.items()), markup=False)
        if entry.get("bootstrap_dropped"):
            console.print(f"  {entry['bootstrap_dropped']} of {entry['n_bootstrap']} bootstrap refits did not converge "
                          "and were dropped")
        ex = entry.get("extrapolation")
        if ex and ex.get("kappa") is not None:
            console.print(f"  extrapolation error (rolling origin, {ex['n_predictions']} predictions from {ex['n_cuts']} "
                          f"cuts): kappa = {ex['kappa']:.3g} per decade beyond the fitted range (p = {ex['p_value']:.2g} "
                          f"against none), calibrated to {ex['calibrated_to_factor']:.3g}x")
        elif ex:
            console.print(f"  extrapolation error: {ex.get('note')}")
        for w in entry.get("warnings", []):
            console.print(f"  [yellow]warning:[/] {escape(w)}")
    if report.get("ranking"):
        table = Table(title="forms ranked by rolling-origin backtest error on the fitted runs")
        for col in ("law", "params", "mean |log error|", "excess over best ± se", "cuts"):
            table.add_column(col, justify="right")
        for r in report["ranking"]:
            table.add_row(r["law"] + (" (recommended)" if r["law"] == report.get("recommended") else ""),
                          str(r["n_params"]), f"{r['backtest_mean_abs_log_error']:.4f}",
                          "not compared (fewer cuts fitted)" if r["excess_over_best"] is None else
                          f"{r['excess_over_best']:+.4f} ± {r['excess_se']:.4f}", f"{r['n_cuts_compared']}/{r['n_cuts_fitted']}")
        console.print(table)
    ho = report.get("holdout")
    if ho:
        console.print(f"[bold]hold-out[/] ({escape(ho['expression'])}): {ho['n_held_out']} runs at C≈{ho['C_held_out']:.3g} "
                      f"({ho['C_held_out'] / ho['C_max_fitted']:.2g}× the largest fitted C)")
        for name, res in ho["results"].items():
            table = Table(title=f"{name}: predicted vs actual on held-out runs")
            for col in ("run", "N", "D", "factor", "actual", "predicted", "error", "95% prediction interval", "inside"):
                table.add_column(col)
            for r in res["runs"]:
                f = r.get("extrapolation_factor")
                table.add_row(escape(str(r["name"])), _q(r["N"]), _q(r["D"]), "-" if f is None else f"{f:.3g}x",
                              f"{r['actual']:.4f}", f"{r['predicted']:.4f}", f"{r['relative_error']:+.2%}",
                              f"[{r['interval'][0]:.4f}, {r['interval'][1]:.4f}]", str(r["inside"]))
            console.print(table)
            cov = res.get("coverage")
            console.print(f"  mean |rel. error| {res['mean_abs_rel_error']:.2%}, max {res['max_abs_rel_error']:.2%}"
                          + ("" if cov is None else f"; {cov:.0%} inside the prediction interval"))
    for p in report.get("figures", []):
        if p.endswith(".png"):
            console.print(f"figure: {p}", markup=False)


@app.command("backtest")
def backtest_cmd(
    file: Optional[Path] = typer.Argument(None, help="Backtest runs from this file instead of the store."),
    store: Path = StoreOpt,
    law: list[str] = typer.Option(["chinchilla"], "--law", help=f"Law(s): {', '.join(_names.BACKTEST_LAWS)} (repeatable)."),
    axis: str = typer.Option("C", help="Rolling origin along compute (C), model size (N) or both."),
    n_convention: str = NConventionOpt,
    flop_convention: str = FlopConventionOpt,
    family: Optional[str] = FamilyOpt,
    bootstrap: int = typer.Option(200, help="Bootstrap resamples per cut fit (>= 20: coverage needs intervals)."),
    bootstrap_kind: str = BootstrapKindOpt,
    level: float = typer.Option(0.95, help="Prediction-interval level whose coverage is checked."),
    max_cuts: int = typer.Option(6, help="At most this many cuts per axis (the ones fitted on the most runs)."),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("scalinglab-out/backtest"), help="Directory for the figure."),
    figures: bool = typer.Option(True, help="Write PNG and SVG figures."),
    as_json: bool = JsonOpt,
):
    """Rolling-origin backtest: fit on the runs up to each cut, forecast the runs beyond it; error and
    prediction-interval coverage against extrapolation factor."""
    bad = [x for x in law if x not in analysis.BACKTEST_LAWS]
    if bad:
        _fail(f"unknown law(s) {', '.join(map(repr, bad))} for backtest; choose from {', '.join(analysis.BACKTEST_LAWS)}")
    if axis not in ("C", "N", "both"):
        _fail(f"--axis must be C, N or both, not {axis!r}")
    _conventions(n_convention, flop_convention)
    if not 0 < level < 1:
        _fail(f"--level must lie strictly between 0 and 1, got {level}")
    if bootstrap < 20:
        _fail(f"--bootstrap must be at least 20 (intervals are what a backtest checks), got {bootstrap}")
    if max_cuts < 1:
        _fail(f"--max-cuts must be at least 1, got {max_cuts}")
    _check_bootstrap_kind(bootstrap_kind)
    runs, source = _runs_from(file, store, family)
    selection = analysis.Selection(n_convention=n_convention, flop_convention=flop_convention, family=family)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = analysis.backtest_runs(runs, law, selection=selection, axis=axis, n_bootstrap=bootstrap, seed=seed,
                                         level=level, max_cuts=max_cuts, bootstrap_kind=bootstrap_kind)
        except (FitError, ValueError) as e:
            _fail(str(e))
    res["source"] = source
    res["warnings"] = sorted({str(w.message) for w in caught})
    if figures:
        from ..report.figures import backtest_figure
        res["figures"] = backtest_figure(res, out)
    if as_json:
        return _emit_json(res)
    console.print(f"[bold]rolling-origin backtest[/] of {res['n_runs']} runs from {escape(source)}: "
                  f"{len(res['cuts'])} cuts along {axis}")
    for name, r in res["results"].items():
        table = Table(title=f"{name}: error and {level:.0%} prediction-interval coverage by extrapolation factor")
        for col in ("factor", "predictions", "mean |error|", "max |error|", "coverage ± se", "median half-width"):
            table.add_column(col, justify="right")
        for b in r["summary"]["by_factor"] + ([dict(r["summary"]["overall"], bin="all")] if r["summary"]["overall"] else []):
            cov = "-" if b["coverage"] is None else f"{b['coverage']:.0%} ± {b['coverage_se']:.0%}"
            hw = "-" if b["median_rel_half_width"] is None else f"{b['median_rel_half_width']:.2%}"
            table.add_row(b["bin"], str(b["n"]), f"{b['mean_abs_rel_error']:.2%}", f"{b['max_abs_rel_error']:.2%}", cov, hw)
        console.print(table)
        for f in r["failed_cuts"]:
            console.print(f"  cut at {f['axis']} <= {f['fitted_max']:.3g} not fitted: {escape(f['error'])}")
    for p in res.get("figures", []):
        if p.endswith(".png"):
            console.print(f"figure: {escape(p)}")


@app.command("predict")
def predict_cmd(
    law: Optional[int] = typer.Option(None, "--law", help="Fit id from the store (any (N, D) law)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Published law: chinchilla-2022, epoch-2024, kaplan-2020."),
    params: Optional[str] = typer.Option(None, "--params", help="Model size(s), comma-separated (e.g. 7B or 1B,7B)."),
    tokens: Optional[str] = typer.Option(None, "--tokens", help="Training tokens, one or one per size (e.g. 140B)."),
    compute: Optional[str] = typer.Option(None, "--compute", help="Training compute in FLOPs (C = 6ND), comma-separated."),
    tokens_per_param: Optional[float] = typer.Option(None, "--tokens-per-param",
                                                     help="With --compute: N = sqrt(C / (6 M)), D = M N (else compute-optimal)."),
    level: float = typer.Option(0.95, help="Interval level."),
    store: Path = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Predict the loss at given (N, D), or at a compute budget: point, confidence and prediction interval."""
    if not 0 < level < 1:
        _fail(f"--level must lie strictly between 0 and 1, got {level}")
    if compute is not None and (params is not None or tokens is not None):
        _fail("give --params with --tokens, or --compute (optionally with --tokens-per-param), not both")
    if compute is None and (params is None or tokens is None):
        _fail("give --params and --tokens (e.g. --params 7B --tokens 140B), or --compute")
    if tokens_per_param is not None and (compute is None or not math.isfinite(tokens_per_param) or tokens_per_param <= 0):
        _fail("--tokens-per-param needs --compute and must be a positive number")

    if compute is not None:
        C = np.array(_quantities(compute, "--compute", hi=MAX_FLOPS))
    else:
        N, D = np.array(_quantities(params, "--params", hi=MAX_PARAMS)), np.array(_quantities(tokens, "--tokens", hi=MAX_TOKENS))
        if N.size != D.size and 1 not in (N.size, D.size):
            _fail(f"--params has {N.size} values and --tokens {D.size}: give one of each, or one to pair with all")
        N, D = np.broadcast_arrays(N, D)
    if (law is None) == (preset is None):
        _fail("give exactly one of --law FIT_ID or --preset NAME")
    if preset is not None and preset not in ("chinchilla-2022", "epoch-2024", "kaplan-2020"):
        _fail(f"--preset must be chinchilla-2022, epoch-2024 or kaplan-2020 for predict, not {preset!r}")
    if law is not None:
        if not store.exists():
            _fail(f"store {store} does not exist; fit first (scalinglab fit) or give --store")
        lawobj, source = _stored_law(store, law, tuple(analysis.ND_FORMS),
                                     f"predict needs one of: {', '.join(analysis.ND_FORMS)}")
    else:
        lawobj, source = get_preset(preset), f"preset {preset} ({PRESET_SOURCES[preset]})"
    if compute is not None:
        if tokens_per_param is not None:
            N = np.sqrt(C / (6.0 * tokens_per_param))
            D = tokens_per_param * N
        elif hasattr(lawobj, "compute_optimal"):
            N, D = (np.asarray(x, float) for x in lawobj.compute_optimal(C))
        else:
            _fail(f"{source} has no compute-optimal allocation; give --tokens-per-param")
    out = analysis.predict_loss(lawobj, N, D, level=level)
    out["law"] = source
    if as_json:
        return _emit_json(out)
    console.print(f"law: {escape(source)}")
    table = Table(title=f"predicted loss ({level:.0%} intervals)")
    for col in ("N", "D", "tokens/param", "C [FLOPs]", "loss", "confidence", "prediction", "beyond fitted"):
        table.add_column(col, justify="right")
    for r in out["predictions"]:
        ci, pi = r["confidence_interval"], r["prediction_interval"]
        f = r["extrapolation_factor"]
        table.add_row(_q(r["N"]), _q(r["D"]), f"{r['tokens_per_param']:.3g}", f"{r['C']:.3g}", f"{r['loss']:.4f}",
                      "-" if ci is None else f"[{ci[0]:.4f}, {ci[1]:.4f}]", "-" if pi is None else f"[{pi[0]:.4f}, {pi[1]:.4f}]",
                      "-" if f is None else (f"{f:.3g}x" + (" (past calibration)" if r["beyond_calibration"] else "")))
    console.print(table)
    if not out["from_data"]:
        console.print("  (published law: no fitted runs, so no intervals and no extrapolation distance)")
    else:
        ex = out.get("extrapolation_error") or {}
        console.print(f"  fitted on {out['fitted_on'].get('n_runs')} runs up to C = {out['fitted_on'].get('C_max', float('nan')):.3g} "
                      f"FLOPs, N = {_q(out['fitted_on'].get('N_max'))}; prediction interval = parameters + observation noise"
                      + (f" + extrapolation error (kappa {ex['kappa']:.3g} per decade, calibrated to "
                         f"{ex['calibrated_to_factor']:.3g}x)" if ex.get("kappa") is not None else ""))


def _stored_law(store: Path, law_id: int, kinds: tuple[str, ...], needs: str):
    """A fitted law from the store, refusing other kinds of fit with what is accepted (``needs``)."""
    try:
        with RunStore(store, readonly=True) as st:
            fit = st.fit(law_id)
    except (FileNotFoundError, KeyError) as e:
        _fail(str(e))
    payload = fit["payload"]
    if payload.get("law") not in kinds:
        _fail(f"fit {law_id} is a {fit['law']} fit; {needs}")
    try:
        sel = fit["selection"]
        return law_from_dict(payload), f"fit {law_id} ({fit['law']}, {sel.get('n_fitted', sel.get('n_runs'))} runs fitted)"
    except (KeyError, ValueError) as e:
        _fail(f"fit {law_id} cannot be read back: {e}")


def _load_law(store: Path, law_id: Optional[int], preset: Optional[str]):
    if (law_id is None) == (preset is None):
        _fail("give exactly one of --law FIT_ID or --preset NAME "
              f"(presets: {', '.join(PRESET_SOURCES)})")
    if preset is not None:
        try:
            return get_preset(preset), f"preset {preset} ({PRESET_SOURCES[preset]})"
        except ValueError as e:
            _fail(str(e))
    return _stored_law(store, law_id, ("chinchilla", "data-constrained"),
                       "planning needs a chinchilla or data-constrained law")


@app.command("plan")
def plan_cmd(
    compute: Optional[str] = typer.Option(None, "--compute", help="Training compute in FLOPs (e.g. 1e23)."),
    gpu_hours: Optional[str] = typer.Option(None, "--gpu-hours", help="Compute as GPU-hours (with --hardware, --mfu)."),
    hardware: str = typer.Option("H100", help=f"Hardware profile: {', '.join(HARDWARE)}."),
    mfu: float = typer.Option(0.4, help="Model FLOPs utilisation for GPU-hour conversions."),
    law: Optional[int] = typer.Option(None, "--law", help="Fit id from the store."),
    preset: Optional[str] = typer.Option(None, "--preset", help=f"Published law: {', '.join(PRESET_SOURCES)}."),
    params: Optional[str] = typer.Option(None, "--params", help="Model size(s), comma-separated: compute-optimal tokens for each."),
    unique_tokens: Optional[str] = typer.Option(None, "--unique-tokens", help="Unique tokens available (data-constrained plan)."),
    target_loss: Optional[float] = typer.Option(None, "--target-loss", help="Cheapest N, D reaching this loss."),
    inference_tokens: Optional[str] = typer.Option(None, "--inference-tokens", help="Lifetime inference tokens (inference-aware plan)."),
    total_per_active: Optional[float] = typer.Option(None, "--total-per-active",
                                                     help="MoE: total/active parameter ratio (e.g. 3.6 for 8x7B-style) to show memory."),
    store: Path = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Plan a run: compute-optimal N and D, data-constrained, target-loss and inference-aware plans."""
    C = _quantity(compute, "--compute", hi=MAX_FLOPS) if compute is not None else None
    hours = _quantity(gpu_hours, "--gpu-hours", hi=1e12) if gpu_hours is not None else None
    _choice(hardware, "--hardware", tuple(HARDWARE))
    _finite(mfu, "--mfu", lo=0, lo_open=True, hi=1)
    sizes = _quantities(params, "--params", hi=MAX_PARAMS) if params is not None else None
    unique = _quantity(unique_tokens, "--unique-tokens", hi=MAX_TOKENS) if unique_tokens is not None else None
    _finite(target_loss, "--target-loss", lo=0, lo_open=True, hi=100)
    inference = _quantity(inference_tokens, "--inference-tokens", hi=1e30) if inference_tokens is not None else None
    _finite(total_per_active, "--total-per-active", lo=1, hi=1e4)
    lawobj, source = _load_law(store, law, preset)
    if hours is not None:
        if C is not None:
            _fail("give --compute or --gpu-hours, not both")
        C = planning.gpu_hours_to_flops(hours, hardware, mfu)
    if sizes is not None and (not hasattr(lawobj, "all_params") or "G" not in lawobj.all_params()):
        _fail("--params needs a Chinchilla-form law (fit or preset chinchilla-2022 / epoch-2024)")
    if unique is not None and C is None:
        _fail("--unique-tokens needs --compute or --gpu-hours")
    if inference is not None and target_loss is None and C is None:
        _fail("--inference-tokens needs --target-loss or --compute (the loss of the compute-optimal model)")
    if C is None and sizes is None and target_loss is None and inference is None:
        _fail("nothing to plan: give --compute/--gpu-hours, --params, --target-loss or --inference-tokens")
    try:
        out = planning.make_plans(lawobj, source, compute=C, params=sizes, unique_tokens=unique, target_loss=target_loss,
                                  inference_tokens=inference, total_per_active=total_per_active, hardware=hardware,
                                  mfu=mfu)
    except ValueError as e:
        _fail(str(e))
    if store.exists():
        with RunStore(store) as st:
            out["decision_id"] = st.add_decision("plan", source, "planned", out)
    if as_json:
        return _emit_json(out)
    _print_plans(out)


def _print_plans(out: dict) -> None:
    console.print(f"law: {out['law']}")
    if "note" in out:
        console.print(out["note"])
    plans = out["plans"]
    if "compute_optimal" in plans:
        p = plans["compute_optimal"]
        cost = p["cost"]
        console.print(f"[bold]compute-optimal at C = {p['compute_flops']:.3g} FLOPs[/] "
                      f"(= {cost['gpu_hours']:.3g} {cost['hardware']} GPU-hours at MFU {cost['mfu']:.0%}, ${cost['usd']:.3g})")
        console.print(f"  N_opt = {_q(p['N_opt'])} {_iv(p, 'N_opt')}   D_opt = {_q(p['D_opt'])} {_iv(p, 'D_opt')}   "
                      f"tokens/param = {p['tokens_per_param']:.1f}")
        if p["loss"] is not None:
            console.print(f"  predicted loss = {p['loss']:.4f} {_iv(p, 'loss')}"
                          + (f" (prediction interval {_iv(p, 'loss_prediction')})" if "loss_prediction" in p["intervals"] else ""))
        if "moe" in p:
            console.print(f"  MoE: {_q(p['moe']['N_active'])} active → {_q(p['moe']['N_total'])} total parameters, "
                          f"{p['moe']['weight_bytes_bf16'] / 1e9:.1f} GB of bf16 weights")
        _print_extrapolation(p)
    if "by_params" in plans:
        table = Table(title="compute-optimal tokens per model size")
        for col in ("N", "D_opt", "tokens/param", "C [FLOPs]", "loss", "C 95% interval"):
            table.add_column(col, justify="right")
        for r in plans["by_params"]:
            table.add_row(_q(r["N"]), _q(r["D_opt"]), f"{r['tokens_per_param']:.1f}", f"{r['compute_flops']:.3g}",
                          f"{r['loss']:.4f}", _iv(r, "compute_flops"))
        console.print(table)
    if "data_constrained" in plans:
        p = plans["data_constrained"]
        console.print(f"[bold]data-constrained at C = {p['compute_flops']:.3g}, U = {_q(p['unique_tokens'])} unique tokens[/]")
        console.print(f"  N = {_q(p['N'])}, D = {_q(p['D'])} ({p['epochs']:.2f} epochs; effective data {_q(p['effective_data'])})")
        console.print(f"  loss = {p['loss']:.4f}; with unlimited unique data {p['loss_if_data_were_unique']:.4f}; "
                      f"lost to repetition {p['loss_lost_to_repetition']:.4f}")
        u = p["unconstrained"]
        console.print(f"  unconstrained optimum: N = {_q(u['N_opt'])}, D = {_q(u['D_opt'])}, loss {u['loss']:.4f}")
        if p.get("plateau"):
            console.print(f"  {p['plateau']['note']}" + (" (this budget is already there)" if p["plateau"]["beyond"] else ""))
    if "target_loss" in plans:
        p = plans["target_loss"]
        console.print(f"[bold]cheapest run reaching loss {p['target_loss']}[/]: C = {p['compute_flops']:.3g} {_iv(p, 'compute_flops')}, "
                      f"N = {_q(p['N_opt'])}, D = {_q(p['D_opt'])}")
        _print_extrapolation(p)
    if "inference_aware" in plans:
        p = plans["inference_aware"]
        c = p["chinchilla_optimal"]
        console.print(f"[bold]inference-aware for loss {p['target_loss']:.4f} and {_q(p['inference_tokens'])} inference tokens[/]")
        console.print(f"  N = {_q(p['N'])}, D = {_q(p['D'])} ({p['tokens_per_param']:.0f} tokens/param); total "
                      f"{p['total_flops']:.3g} FLOPs vs {c['total_flops']:.3g} for the Chinchilla-optimal N = {_q(c['N'])} "
                      f"({p['flops_saved_fraction']:.1%} saved)")


def _print_extrapolation(p: dict) -> None:
    ex = p.get("extrapolation", {})
    if ex.get("from_data") and "compute_over_max_fitted" in ex:
        console.print(f"  extrapolates {ex['compute_over_max_fitted']:.3g}× beyond the largest fitted compute "
                      f"({ex['fitted_on'].get('C_max', float('nan')):.3g} FLOPs, {ex['fitted_on'].get('n_runs')} runs)")
    elif not ex.get("from_data"):
        console.print("  (published law: no fitted data range to compare against)")


@app.command("presets")
def presets_cmd(as_json: bool = JsonOpt):
    """List the published laws available as presets, with their sources and parameters."""
    out = {name: {"source": src, "params": get_preset(name).all_params()} for name, src in PRESET_SOURCES.items()}
    if as_json:
        return _emit_json(out)
    for name, v in out.items():
        console.print(f"[bold]{name}[/]: {v['source']}")
        console.print("   " + ", ".join(f"{k}={x:.5g}" for k, x in v["params"].items()))
