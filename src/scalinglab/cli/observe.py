"""Public model tables, no training: the ``models`` group (import, list), ``trends``, the ``observe`` group (law,
backtest, saturation).

Heavy modules (numpy's analyses, scipy, matplotlib) are imported inside the command bodies.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..importers import ImportFormatError
from ..store import RunStore, StoreError
from ._common import JsonOpt, StoreOpt, Table, _App, _check_on_duplicate, _emit_json, _fail, _q, app, console

models_app = _App(help="Public model tables (parameters, tokens, dates, benchmark scores).", no_args_is_help=True)
observe_app = _App(help="Observational scaling laws from public model tables (no training).", no_args_is_help=True)

TableOpt = typer.Option(None, "--table", help="Read this model table (CSV/TSV/JSONL/Parquet) instead of the store.")
ExampleOpt = typer.Option(False, "--example", help="Use the bundled example table of public models.")
CollectionOpt = typer.Option(None, "--collection", help="Only this collection of the store (default: all).")
BootOpt = typer.Option(1000, "--bootstrap", help="Bootstrap resamples.")
LevelOpt = typer.Option(0.95, "--level", help="Interval level.")


def _load(table: Optional[Path], example: bool, store: Path, collection: Optional[str]):
    """The model table asked for: a file, the bundled example, or the store (refused when there is none)."""
    from ..observe.tables import ModelTable, parse_model_table
    if table is not None and example:
        _fail("give --table or --example, not both")
    try:
        if example:
            return ModelTable.example()
        if table is not None:
            return ModelTable.from_rows(parse_model_table(table))
    except ImportFormatError as e:
        _fail(str(e))
    if not store.is_file():
        _fail(f"no run store at {store}: import a model table first (scalinglab models import FILE, or "
              "scalinglab models import --example), or give --table FILE or --example")
    with RunStore(store, readonly=True) as st:
        rows = st.public_models(collection)
    if not rows:
        _fail(f"no public models in {store}" + (f" under collection {collection!r}" if collection else "")
              + ": import a table with scalinglab models import FILE (or --example)")
    return ModelTable.from_rows(rows)


def _value(value: Optional[str], option: str, parse=None):
    """``value`` read by ``parse`` (default: a quantity such as 1e24 or 3.2T), refused with the option named."""
    if value is None:
        return None
    if parse is None:
        from .._units import parse_quantity as parse
    try:
        return parse(value)
    except ValueError as e:
        _fail(f"{option}: {e}")


def _level(level: float) -> None:
    if not 0.5 <= level < 1:
        _fail(f"--level must be in [0.5, 1), not {level}")


# ---------------------------------------------------------------------------------------------- models
@models_app.command("import")
def models_import_cmd(files: list[Path] = typer.Argument(None, help="A model table, or lm-evaluation-harness JSON files with --sizes."),
                      example: bool = typer.Option(False, "--example", help="Import the bundled example table."),
                      sizes: Optional[Path] = typer.Option(None, help="Side table for harness files: file or model, family, params, tokens, date, source."),
                      collection: Optional[str] = typer.Option(None, help="Collection name in the store (default: the file's stem; 'example')."),
                      scale: str = typer.Option("auto", help="Benchmark columns: auto (percent when a value exceeds 1), percent or fraction."),
                      on_duplicate: str = typer.Option("error", help="Models already in the collection: error, skip or replace."),
                      store: Path = StoreOpt, as_json: bool = JsonOpt):
    """Import a table of public models into the store (checked whole first; nothing is written on a problem).

    One row per model: model, family, params, active_params, tokens, flops,
    date (2023, 2023-07 or 2023-07-18), source, and one column per benchmark
    (percent or fraction). C = 6 * N_active * D where flops is empty.

      model,family,params,tokens,date,mmlu,gsm8k,source
      LLaMA 7B,llama,6.7B,1.0T,2023-02-24,35.1,11.0,Touvron et al. 2023
    """
    from ..observe.tables import SCALES, example_path, parse_harness_models, parse_model_table
    _check_on_duplicate(on_duplicate)
    if scale not in SCALES:
        _fail(f"--scale must be one of {', '.join(SCALES)}, not {scale!r}")
    files = list(files or [])
    try:
        if example:
            if files or sizes:
                _fail("--example imports the bundled table; give no files or --sizes with it")
            rows = parse_model_table(example_path(), collection=collection or "example", scale=scale)
        elif sizes is not None:
            if not files:
                _fail("--sizes goes with lm-evaluation-harness result files; give the files")
            rows = parse_harness_models(files, sizes, collection=collection or "lm-eval-harness")
        elif len(files) != 1:
            _fail(f"give one table (got {len(files)} files), or --example; several files are lm-evaluation-harness "
                  "results and need --sizes")
        else:
            rows = parse_model_table(files[0], collection=collection, scale=scale)
        with RunStore(store) as st:
            written = st.add_public_models(rows, on_duplicate=on_duplicate)
    except (ImportFormatError, StoreError) as e:
        _fail(str(e))
    out = {"collection": rows[0]["collection"], "written": written, "models": len(rows),
           "families": sorted({r["family"] or r["model"] for r in rows}),
           "benchmarks": sorted({b for r in rows for b in r["scores"]}),
           "with_compute": sum(r["c"] is not None for r in rows), "with_date": sum(r["date"] is not None for r in rows)}
    if as_json:
        return _emit_json(out)
    console.print(f"imported {out['models']} models of {len(out['families'])} families into collection "
                  f"{out['collection']!r} ({out['with_compute']} with compute, {out['with_date']} with a date; "
                  f"benchmarks: {', '.join(out['benchmarks']) or 'none'})", markup=False)


@models_app.command("list")
def models_list_cmd(table: Optional[Path] = TableOpt, example: bool = ExampleOpt, store: Path = StoreOpt,
                    collection: Optional[str] = CollectionOpt, as_json: bool = JsonOpt):
    """The models of a table: family, N, D, C, date, scores and source."""
    import numpy as np
    t = _load(table, example, store, collection)
    num = lambda x: None if not np.isfinite(x) else float(x)  # noqa: E731
    rows = [{"model": t.model[i], "family": t.family[i], "N": num(t.N[i]), "N_active": num(t.N_active[i]),
             "D": num(t.D[i]), "C": num(t.C[i]), "date": num(t.date[i]), "source": t.reference[i],
             "scores": {b: num(t.scores[i, j]) for j, b in enumerate(t.benchmarks) if np.isfinite(t.scores[i, j])}}
            for i in range(len(t))]
    if as_json:
        return _emit_json({"benchmarks": list(t.benchmarks), "models": rows})
    tab = Table(title=f"{len(t)} models")
    for h in ("model", "family", "N", "D", "C", "date", *t.benchmarks):
        tab.add_column(h, justify="left" if h in ("model", "family") else "right")
    for r in rows:
        tab.add_row(r["model"], r["family"], _q(r["N"]), _q(r["D"]), "-" if r["C"] is None else f"{r['C']:.2e}",
                    "-" if r["date"] is None else f"{r['date']:.2f}",
                    *("-" if b not in r["scores"] else f"{r['scores'][b]:.3f}" for b in t.benchmarks))
    console.print(tab, markup=False)


# ---------------------------------------------------------------------------------------------- trends
@app.command("trends")
def trends_cmd(metric: str = typer.Option("compute", help="compute, params, tokens, ability (one latent trait across benchmarks), or a benchmark."),
               frontier: str = typer.Option("all", help="all, or top (the top --k by date)."),
               k: int = typer.Option(3, "--k", help="With --frontier top: models among the top k at their release."),
               transform: Optional[str] = typer.Option(None, help="log (default for compute/params/tokens), logit (default for benchmarks: above chance) or none."),
               chance: Optional[float] = typer.Option(None, help="Chance score of the benchmark (default by name: 0.25 for mmlu, arc, hellaswag; else 0)."),
               breakpoint: Optional[str] = typer.Option(None, "--break", help="Date of the slope change to test (2023-01); default: searched."),
               margin: Optional[float] = typer.Option(None, help="Slowdown that matters, per year in transformed units (default: half the slope)."),
               level: float = LevelOpt, bootstrap: int = BootOpt,
               power_sims: int = typer.Option(300, "--power-sims", help="Simulated tables per change size for the minimum detectable change."),
               seed: int = typer.Option(0),
               table: Optional[Path] = TableOpt, example: bool = ExampleOpt, store: Path = StoreOpt,
               collection: Optional[str] = CollectionOpt,
               out: Optional[Path] = typer.Option(None, help="Folder for the figure (PNG + SVG)."), as_json: bool = JsonOpt):
    """A metric's trend over release dates: growth rate and doubling time with bootstrap intervals,
    rolling-origin backtest (fit up to year t, forecast t+1 and t+2), and a slowdown/acceleration test
    (piecewise fit, interval on the slope change, smallest change the data could detect)."""
    _level(level)
    if frontier not in ("all", "top"):
        _fail(f"--frontier must be all or top, not {frontier!r}")
    if k < 1:
        _fail("--k must be at least 1")
    if transform is not None and transform not in ("log", "logit", "none"):
        _fail(f"--transform must be log, logit or none, not {transform!r}")
    if bootstrap < 0 or power_sims < 0:
        _fail("--bootstrap and --power-sims must be non-negative")
    from ..observe.tables import decimal_year
    br = _value(breakpoint, "--break", decimal_year)
    t = _load(table, example, store, collection)
    if metric == "ability":                      # the latent ability across benchmarks (observe saturation)
        from ..observe.saturation import ability
        try:
            value = ability(t)
        except ValueError as e:
            _fail(f"ability: {e}")
        transform = transform or "none"
    else:
        try:
            value = t.metric(metric)
        except KeyError as e:
            _fail(str(e.args[0]))
    import numpy as np

    from ..forecast.tasklaws import chance_level
    from ..observe.trends import trend_report
    is_score = metric in t.benchmarks
    transform = transform or ("logit" if is_score else "log")
    chance = (chance_level(metric) if is_score else 0.0) if chance is None else chance
    if transform == "logit" and not (0 <= chance < 1):
        _fail(f"--chance must be in [0, 1), not {chance}")
    if transform == "log" and np.any(value[np.isfinite(value)] <= 0):
        _fail(f"{metric} has zero or negative values; use --transform logit or none")
    try:
        rep = trend_report(t.date, value, metric=metric, transform=transform, frontier=frontier, k=k, chance=chance,
                           names=t.model, breakpoint=br, margin=margin, level=level, n_bootstrap=bootstrap,
                           n_power=power_sims, seed=seed)
    except ValueError as e:
        _fail(f"{metric}: {e}")
    rep["figures"] = []
    if out is not None:
        from ..report.observe_figures import trend_figure
        rep["figures"] = trend_figure(rep, t.date, value, out)
    if as_json:
        return _emit_json(rep)
    _print_trend(rep)


def _print_trend(rep: dict) -> None:
    f, fr = rep["fit"], rep["frontier"]
    unit = {"log": f"ln {rep['metric']}", "logit": f"logit {rep['metric']}", "none": rep["metric"]}[rep["transform"]]
    p = lambda s: console.print(s, markup=False, highlight=False)  # noqa: E731
    p(f"{rep['metric']} over time: {fr['n_models']} models on the frontier ({fr['kind']}"
      + (f", top {fr['k']})" if fr["k"] else ")") + f", {f['date_range'][0]:.2f}-{f['date_range'][1]:.2f}")
    p(f"  slope {f['slope_per_year']:+.3g} {unit} per year, {f['level']:.0%} interval "
      f"[{f['slope_interval'][0]:+.3g}, {f['slope_interval'][1]:+.3g}] ({f['n_bootstrap']} bootstrap resamples)")
    if "doubling_time_years" in f:
        d, di = f["doubling_time_years"], f["doubling_interval"]
        p(f"  growth x{f['growth_factor_per_year']:.3g} per year [{f['growth_interval'][0]:.3g}, {f['growth_interval'][1]:.3g}];"
          f" doubling time {d * 12:.3g} months [{di[0] * 12:.3g}, {di[1] * 12:.3g}]")
    for h, s in rep["backtest"]["by_horizon"].items():
        if s["n"]:
            p(f"  backtest, forecast {h} year(s) ahead: {s['n']} forecasts, mean |error| {s['mean_abs_error']:.3g} "
              f"({unit}), bias {s['bias']:+.3g}, interval coverage {s['coverage']:.2f} (nominal {s['nominal']:.2f})")
    sc = rep["slope_change"]
    if "error" in sc:
        p(f"  slope change: not tested ({sc['error']})")
    else:
        p(f"  slope change at {sc['breakpoint']:.2f}" + (" (searched)" if sc["breakpoint_searched"] else "")
          + f": {sc['change']:+.3g}/yr [{sc['change_interval'][0]:+.3g}, {sc['change_interval'][1]:+.3g}], "
          f"p = {sc['p_value']:.3g}; minimum detectable change "
          + ("-" if sc["minimum_detectable_change"] is None else f"{sc['minimum_detectable_change']:.3g}/yr")
          + f" ({sc['power']:.0%} power)")
        p(f"  verdict: {sc['message']}")
    for fig in rep.get("figures", []):
        p(f"  figure: {fig}")


# ---------------------------------------------------------------------------------------------- observe
def _target(t, target: str, components: int) -> None:
    if target not in t.benchmarks:
        _fail(f"no benchmark {target!r} in the table; it has: {', '.join(t.benchmarks) or 'none'}")
    if len(t.benchmarks) < 2:
        _fail("an observational law needs the target and at least one other benchmark")
    if components < 1:
        _fail("--components must be at least 1")


@observe_app.command("law")
def observe_law_cmd(target: str = typer.Option(..., help="Benchmark to forecast from the others (e.g. gsm8k)."),
                    components: int = typer.Option(2, help="Principal components of the capability space."),
                    compute: Optional[str] = typer.Option(None, help="Forecast a model trained with this many FLOPs (needs --family)."),
                    family: Optional[str] = typer.Option(None, help="Family whose compute-efficiency the forecast uses."),
                    fit_ceiling: bool = typer.Option(False, "--fit-ceiling", help="Fit the target's ceiling (else 1)."),
                    bootstrap: int = typer.Option(200, "--bootstrap"), level: float = LevelOpt, seed: int = typer.Option(0),
                    table: Optional[Path] = TableOpt, example: bool = ExampleOpt, store: Path = StoreOpt,
                    collection: Optional[str] = CollectionOpt, as_json: bool = JsonOpt):
    """Fit the observational law (Ruan et al. 2024): capability space, per-family compute-efficiency,
    sigmoid map to the target; optionally forecast the target at a compute for a family."""
    _level(level)
    C = _value(compute, "--compute")
    if C is not None:
        if not (C > 0) or family is None:
            _fail("--compute must be positive and goes with --family")
    t = _load(table, example, store, collection)
    _target(t, target, components)
    from ..observe.obslaws import ObservationalLaw, forecast_at_compute
    try:
        law = ObservationalLaw(target=target, n_components=components, fit_ceiling=fit_ceiling).fit(t)
    except ValueError as e:
        _fail(str(e))
    out = {"law": law.to_dict(), "fitted_models": [str(m) for m in law.fitted_models_], "forecast": None}
    if C is not None:
        if family not in law.families_:
            _fail(f"--family {family!r} has no model with compute; families: {', '.join(law.families_)}")
        out["forecast"] = forecast_at_compute(t, law, C, family, n_bootstrap=bootstrap, level=level, seed=seed)
    if as_json:
        return _emit_json(out)
    d = out["law"]
    p = lambda s: console.print(s, markup=False, highlight=False)  # noqa: E731
    p(f"{target} = {d['floor']:g} + ({d['ceiling']:.3g} - {d['floor']:g}) * sigmoid(w . PC + b) over "
      f"{d['n_components']} components of {', '.join(d['predictors'])}; {d['n_fitted']} models fitted, "
      f"residual sd {d['residual_sd']:.3f}")
    p("compute-efficiency by family (log10 FLOPs saved vs the median family on PC1; + is more efficient):")
    for f, e in sorted(d["compute_efficiency_log10_flops"].items(), key=lambda kv: -(kv[1] or 0)):
        p(f"  {f:<16} {e:+.2f}" if e is not None else f"  {f:<16} -")
    if out["forecast"]:
        f = out["forecast"]
        iv = f["prediction_interval"]
        p(f"forecast for {family} at C = {C:.3g}: {target} {f['score']:.3f}"
          + (f", {level:.0%} prediction interval [{iv[0]:.3f}, {iv[1]:.3f}]" if iv else "")
          + (f" ({f['extrapolation_factor']:.3g}x the family's largest compute)" if f["extrapolation_factor"] else ""))


@observe_app.command("backtest")
def observe_backtest_cmd(target: str = typer.Option(..., help="Benchmark to forecast from the others."),
                         kind: str = typer.Option("lofo", help="lofo (leave one family out) or cutoff (fit below a compute, predict above)."),
                         cutoff: Optional[str] = typer.Option(None, help="With --kind cutoff: FLOPs (default: the 75th percentile)."),
                         components: int = typer.Option(2, help="Principal components of the capability space."),
                         fit_ceiling: bool = typer.Option(False, "--fit-ceiling"),
                         bootstrap: int = typer.Option(200, "--bootstrap"), level: float = LevelOpt, seed: int = typer.Option(0),
                         table: Optional[Path] = TableOpt, example: bool = ExampleOpt, store: Path = StoreOpt,
                         collection: Optional[str] = CollectionOpt,
                         out: Optional[Path] = typer.Option(None, help="Folder for the figure (PNG + SVG)."), as_json: bool = JsonOpt):
    """Backtest the observational law: error and prediction-interval coverage on held-out families or
    on the models above a compute cut-off, and which fitted models the forecasts lean on."""
    _level(level)
    if kind not in ("lofo", "cutoff"):
        _fail(f"--kind must be lofo or cutoff, not {kind!r}")
    if bootstrap < 1:
        _fail("--bootstrap must be at least 1")
    if cutoff is not None and kind != "cutoff":
        _fail("--cutoff goes with --kind cutoff")
    cut = _value(cutoff, "--cutoff")
    t = _load(table, example, store, collection)
    _target(t, target, components)
    from ..observe.obslaws import backtest
    res = backtest(t, target=target, kind=kind, n_components=components, cutoff=cut, n_bootstrap=bootstrap,
                   level=level, seed=seed, fit_ceiling=fit_ceiling)
    res["figures"] = []
    if out is not None:
        from ..report.observe_figures import backtest_figure
        res["figures"] = backtest_figure(res, out, stem=f"observe_{kind}_{target}")
    if as_json:
        return _emit_json(res)
    p = lambda s: console.print(s, markup=False, highlight=False)  # noqa: E731
    s = res["summary"]
    what = "leave-one-family-out" if kind == "lofo" else f"compute cut-off at {res['cutoff']:.3g} FLOPs"
    if not s["n"]:
        p(f"{what}: nothing could be predicted" + "".join(f"\n  {f['split']}: {f['reason']}" for f in res["failed"]))
        return
    p(f"{what} backtest of {target}: {s['n']} held-out models, mean |error| {s['mean_abs_error']:.3f} "
      f"(median {s['median_abs_error']:.3f}, bias {s['bias']:+.3f}); {level:.0%} prediction-interval coverage "
      f"{s['coverage']:.2f}, confidence-interval coverage {s['confidence_coverage']:.2f} ({res['n_bootstrap']} bootstrap resamples)")
    for r in res["predictions"]:
        p(f"  {r['model']:<18} {r['family']:<12} actual {r['actual']:.3f}  predicted {r['predicted']:.3f} "
          f"[{r['interval'][0]:.3f}, {r['interval'][1]:.3f}]" + ("" if r["inside"] else "  outside"))
    if res.get("leaning"):
        p("forecasts lean most on: " + ", ".join(f"{r['model']} ({r['influence']:+.3f})" for r in res["leaning"]))
    for f in res["failed"]:
        p(f"  not predicted: {f['split']}: {f['reason']}")
    for fig in res["figures"]:
        p(f"  figure: {fig}")


@observe_app.command("saturation")
def observe_saturation_cmd(bootstrap: int = typer.Option(100, "--bootstrap"), level: float = LevelOpt,
                           seed: int = typer.Option(0),
                           table: Optional[Path] = TableOpt, example: bool = ExampleOpt, store: Path = StoreOpt,
                           collection: Optional[str] = CollectionOpt,
                           out: Optional[Path] = typer.Option(None, help="Folder for the figure (PNG + SVG)."), as_json: bool = JsonOpt):
    """Each benchmark's ceiling and headroom from one logistic (IRT) model across benchmarks, so a
    saturating benchmark is not read as slowing progress (see trends --metric ability)."""
    _level(level)
    if bootstrap < 0:
        _fail("--bootstrap must be non-negative")
    t = _load(table, example, store, collection)
    from ..observe.saturation import saturation
    try:
        res = saturation(t, n_bootstrap=bootstrap, level=level, seed=seed)
    except ValueError as e:
        _fail(str(e))
    res["figures"] = []
    if out is not None:
        from ..report.observe_figures import saturation_figure
        res["figures"] = saturation_figure(res, out)
    if as_json:
        return _emit_json(res)
    p = lambda s: console.print(s, markup=False, highlight=False)  # noqa: E731
    p(f"{len(res['ability']['models'])} models, one ability each; residual sd {res['residual_sd']:.3f}")
    for b in res["benchmarks"]:
        iv = b["ceiling_interval"]
        p(f"  {b['benchmark']:<14} chance {b['chance']:.2f}  ceiling {b['ceiling']:.3f} [{iv[0]:.3f}, {iv[1]:.3f}]  "
          f"best {b['best']:.3f} ({b['best_model']})  headroom {b['headroom']:.3f}  "
          f"{b['saturated_fraction']:.0%} of the range above chance used")
    for fig in res["figures"]:
        p(f"  figure: {fig}")
