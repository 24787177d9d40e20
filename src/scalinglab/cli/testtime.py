"""Test-time compute: the ``samples`` group, ``passk``, ``passk-forecast``, ``majk``, ``verifier``, ``sample``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from .. import importers
from ..store import RunStore, StoreError
from ._common import (JsonOpt, StoreOpt, Table, _App, _check_on_duplicate, _choice, _emit_json, _existing_store, _fail,
                      _finite, _quantities, _require, _task, _whole, app, console)


samples_app = _App(help="Samples for test-time analyses.", no_args_is_help=True)


@samples_app.command("import")
def samples_import_cmd(file: Path = typer.Argument(..., help="JSONL/CSV/Parquet: per-problem (problem, n, c) or per-sample rows."),
                       store: Path = StoreOpt, task: Optional[str] = typer.Option(None, help="Task name if the file has none."),
                       model: Optional[str] = typer.Option(None, help="Model name if the file has none."),
                       on_duplicate: str = typer.Option("error", help="error, skip or replace."), as_json: bool = JsonOpt):
    """Import samples (validated; nothing written on any error)."""
    _check_on_duplicate(on_duplicate)
    from ..testtime.samples import parse_samples, summary
    if file.is_dir():
        _fail(f"{file} is a directory; give a samples file (JSONL/CSV/Parquet)")
    try:       # the whole file is checked before the store is opened (a refused import creates no store)
        parsed = parse_samples(file, task=task, model=model)
        with RunStore(store) as st:
            st.add_samples(parsed["rows"], parsed["counts"], on_duplicate=on_duplicate)
        res = summary(parsed)
    except (importers.ImportFormatError, StoreError) as e:
        _fail(str(e))
    if as_json:
        return _emit_json(res)
    console.print(f"imported {res['samples']} samples / {res['problems']} problems ({res['mode']}) into {store}: "
                  f"{', '.join(res['groups'])}", markup=False)


def _groups(file, store, task, model):
    from ..testtime.samples import load_groups
    if file is not None and file.is_dir():
        _fail(f"{file} is a directory; give a samples file (JSONL/CSV/Parquet)")
    if file is None:
        _existing_store(store)
    try:
        if file is not None:
            groups = load_groups(file, task=task, model=model)
        else:
            with RunStore(store, readonly=True) as st:
                groups = load_groups(None, st, task=task, model=model)
    except (importers.ImportFormatError, FileNotFoundError) as e:
        _fail(str(e))
    if not groups and (task is not None or model is not None):
        everything = load_groups(file, task=None, model=None) if file is not None else None
        if everything is None:
            with RunStore(store, readonly=True) as st:
                everything = load_groups(None, st)
        have = ", ".join(f"{t}/{m}" for t, m in sorted(everything)) or "none"
        _fail(f"no samples for --task {task or '(any)'} --model {model or '(any)'} in {file or store} (task/model there: {have})")
    return groups


def _ks(text: str, hi: float = 1e12) -> list[int]:
    ks = _quantities(text, "--k", lo=1, lo_open=False, hi=hi)
    if any(k != int(k) for k in ks):
        _fail(f"--k takes whole numbers of samples (e.g. 1,10,100), got {text!r}")
    return sorted({int(k) for k in ks})


@app.command("passk")
def passk_cmd(file: Optional[Path] = typer.Argument(None, help="Samples file (else the store)."), store: Path = StoreOpt,
              k: str = typer.Option("1,2,4,8,16,32,64", "--k", help="Comma-separated k values."),
              task: Optional[str] = None, model: Optional[str] = None,
              clamp: bool = typer.Option(False, help="Use k = n where k exceeds a problem's samples."),
              bootstrap: int = typer.Option(1000, min=0, max=100_000, help="Bootstrap resamples over problems."),
              target: Optional[float] = typer.Option(None, help="Coverage to reach: samples needed, from the fitted law."),
              out: Path = typer.Option(Path("scalinglab-out/testtime"), help="Directory for figures."),
              figures: bool = typer.Option(True), as_json: bool = JsonOpt):
    """Unbiased pass@k (coverage) with bootstrap intervals and the coverage law exp(a k^b)."""
    from ..testtime.analysis import compute_frontier, passk_report
    ks = _ks(k)
    _finite(target, "--target", lo=0, hi=1, lo_open=True, hi_open=True)
    groups = _groups(file, store, task, model)
    if not groups:
        _fail("no samples found")
    try:
        rep = passk_report(groups, ks, n_bootstrap=bootstrap, clamp=clamp, target=target)
    except ValueError as e:
        _fail(str(e).replace("pass clamp=True", "give --k up to the samples drawn, or --clamp"))
    rep["frontier"] = compute_frontier(list(rep["groups"].values()))
    if figures:
        from ..report.figures import coverage_figures
        rep["figures"] = coverage_figures(rep, out)
    if as_json:
        return _emit_json(rep)
    for name, g in rep["groups"].items():
        table = Table(title=f"{escape(name)}: coverage over {g['n_problems']} problems")
        for col in ("k", "pass@k", "95% interval") + (("inference FLOPs",) if "inference_flops" in g else ()):
            table.add_column(col, justify="right")
        for i, kk in enumerate(g["k"]):
            row = [str(kk), f"{g['coverage'][i]:.4f}", f"[{g['lower'][i]:.4f}, {g['upper'][i]:.4f}]" if "lower" in g else ""]
            if "inference_flops" in g:
                row.append(f"{g['inference_flops'][i]:.3g}")
            table.add_row(*row)
        console.print(table)
        law = g.get("coverage_law", {})
        if "params" in law:
            iv = law["intervals"]
            fmt_iv = lambda v: f"[{v[0]:.3g}, {v[1]:.3g}]" if v else ""  # noqa: E731
            console.print(f"  coverage law exp(a k^b): a={law['params']['a']:.4f} {fmt_iv(iv.get('a'))}, "
                          f"b={law['params']['b']:.4f} {fmt_iv(iv.get('b'))}")
            if "samples_for_target" in law:
                s = law["samples_for_target"]
                how = ("extrapolated beyond" if s["k"] > s["fitted_k_max"] else "interpolated within") \
                    + f" the measured k ≤ {s['fitted_k_max']:.0f}"
                console.print(f"  samples for coverage {s['target']}: k ≈ {s['k']:.3g} {fmt_iv(s.get('interval'))} ({how})")
        else:
            console.print(f"  coverage law: {law.get('error')}")


@app.command("passk-forecast")
def passk_forecast_cmd(file: Optional[Path] = typer.Argument(None, help="Samples file (else the store)."), store: Path = StoreOpt,
                       k: str = typer.Option("100,1000,10000", "--k", help="Comma-separated k values to forecast."),
                       distribution: str = typer.Option("auto", "--distribution", help="beta, kumaraswamy, logitnormal, or "
                                                        "auto (all three fitted; the beta kept unless another's AIC is lower by more than 2)."),
                       zero_mass: str = typer.Option("auto", help="A share of never-solvable problems: auto, yes or no."),
                       bootstrap: int = typer.Option(200, help="Refits on resampled problems, for the intervals."),
                       backtest: Optional[int] = typer.Option(None, help="Keep this many samples per problem, forecast "
                                                              "from them, and score against all the samples."),
                       task: Optional[str] = None, model: Optional[str] = None, as_json: bool = JsonOpt):
    """pass@k at any k from the fitted distribution of per-problem success (beta, Kumaraswamy or logit-normal)."""
    if distribution not in ("beta", "kumaraswamy", "logitnormal", "auto"):
        _fail(f"--distribution must be beta, kumaraswamy, logitnormal or auto, not {distribution!r}")
    if zero_mass not in ("auto", "yes", "no"):
        _fail(f"--zero-mass must be auto, yes or no, not {zero_mass!r}")
    if not 0 <= bootstrap <= 100_000:
        _fail(f"--bootstrap must be from 0 to 100,000, got {bootstrap}")
    if backtest is not None and backtest < 1:
        _fail(f"--backtest must be at least 1 sample per problem, got {backtest}")
    ks = _ks(k)
    groups = _groups(file, store, task, model)        # refuses a missing store
    if not groups:
        _fail("no samples found")
    from ..testtime.distribution import passk_forecast_report
    try:
        rep = passk_forecast_report(groups, ks, family=distribution, zero_mass={"yes": True, "no": False}.get(zero_mass, "auto"),
                                    n_bootstrap=bootstrap, backtest=backtest)
    except ValueError as e:
        _fail(str(e))
    if as_json:
        return _emit_json(rep)
    for name, g in rep["groups"].items():
        if "error" in g:
            console.print(f"{escape(name)}: {escape(g['error'])}", highlight=False)
            continue
        d, f = g["distribution"], g["forecast"]
        iv = d["intervals"]
        fmt = lambda key: f"{key}={d['params'][key]:.3g}" + (f" [{iv[key][0]:.3g}, {iv[key][1]:.3g}]" if key in iv else "")  # noqa: E731
        ns = d["never_solvable"]
        chosen = ""
        if "selection" in d:
            chosen = " (AIC " + ", ".join(f"{f} {v['aic']:.1f}" for f, v in d["selection"]["families"].items()) + ")"
        console.print(f"{escape(name)}: {d['family']} fit{chosen} to {d['n_problems']} problems ({d['n_samples']['min']}-"
                      f"{d['n_samples']['max']} samples each): {', '.join(fmt(key) for key in d['params'] if key != 'pi0')}; "
                      "never-solvable share "
                      + (f"{ns['share']:.3f}" + (f" [{ns['interval'][0]:.3f}, {ns['interval'][1]:.3f}]" if "interval" in ns else "")
                         if ns["fitted"] else f"0 (not kept: likelihood-ratio {d['lr_statistic'] or 0:.2f} < 2.71)")
                      + f"; fit vs measured pass@k up to k={g['fit_check']['k'][-1]}: max |error| {g['fit_check']['max_abs_error']:.4f}",
                      highlight=False)
        table = Table(title=f"{escape(name)}: pass@k forecast")
        spread = f.get("by_family")
        for col in ("k", "distribution", "95% interval") + (("all families (min-max)",) if spread else ()) + (
                "coverage law exp(a k^b)", "measured"):
            table.add_column(col, justify="right")
        agg = g["aggregate"]
        measured = dict(zip(g["measured"]["k"], g["measured"]["pass_at_k"]))
        for i, kk in enumerate(f["k"]):
            by = [v[i] for v in spread.values()] if spread else []
            table.add_row(f"{kk:,.0f}", f"{f['pass_at_k'][i]:.4f}",
                          f"[{f['lower'][i]:.4f}, {f['upper'][i]:.4f}]" if "lower" in f else "",
                          *([f"{min(by):.4f}-{max(by):.4f}"] if spread else []),
                          f"{agg['pass_at_k'][i]:.4f}" if "pass_at_k" in agg else "-",
                          f"{measured[int(kk)]:.4f}" if int(kk) in measured else "")
        console.print(table)
        if "backtest" in g:
            b = g["backtest"]
            for i, kk in enumerate(b["k"]):
                a_err = b["aggregate"]["abs_error"][i] if "abs_error" in b["aggregate"] else float("nan")
                console.print(f"  backtest from {b['kept_per_problem']} samples per problem, k={kk:,}: all samples "
                              f"{b['actual'][i]:.4f}; distribution {b['distribution']['forecast']['pass_at_k'][i]:.4f} "
                              f"(|error| {b['distribution']['abs_error'][i]:.4f}); coverage law "
                              f"|error| {a_err:.4f}", highlight=False)


@app.command("majk")
def majk_cmd(file: Optional[Path] = typer.Argument(None), store: Path = StoreOpt,
             k: str = typer.Option("1,2,4,8,16", "--k"), task: Optional[str] = None, model: Optional[str] = None,
             resamples: int = typer.Option(2000, min=1, max=1_000_000, help="Resamples without replacement per problem and k."),
             as_json: bool = JsonOpt):
    """maj@k, verifier-weighted majority and best-of-k, beside pass@k."""
    from ..testtime.analysis import vote_report
    ks = _ks(k)
    try:
        rep = vote_report(_groups(file, store, task, model), ks, n_resamples=resamples)
    except ValueError as e:
        _fail(str(e))
    if as_json:
        return _emit_json(rep)
    for name, g in rep["groups"].items():
        if "error" in g:
            console.print(f"[yellow]{escape(name)}[/]: {escape(g['error'])}")
            continue
        table = Table(title=escape(name))
        cols = ["k", "pass@k", "maj@k"] + (["weighted maj@k", "best-of-k"] if "best_of_k" in g else [])
        for col in cols:
            table.add_column(col, justify="right")
        for i, kk in enumerate(g["k"]):
            row = [str(kk), f"{g['pass_at_k'][i]:.4f}", f"{g['maj_at_k'][i]:.4f}"]
            if "best_of_k" in g:
                row += [f"{g['weighted_maj_at_k'][i]:.4f}", f"{g['best_of_k'][i]:.4f}"]
            table.add_row(*row)
        console.print(table)


@app.command("verifier")
def verifier_cmd(file: Optional[Path] = typer.Argument(None), store: Path = StoreOpt,
                 tpr: float = typer.Option(0.95, help="Verifier completeness (true-positive rate)."),
                 fpr: str = typer.Option("0,0.05,0.2", help="False-positive rates (1 - soundness), comma-separated."),
                 cost: float = typer.Option(1.0, help="Cost of a wrong accepted answer, relative to a correct one."),
                 k_max: int = typer.Option(256, help="Largest attempt budget."),
                 fpr_unsolved: Optional[float] = typer.Option(None, help="Per-problem FPR: each --fpr is the rate where the "
                                                              "model always succeeds, this where it never does (linear)."),
                 abstain: bool = typer.Option(True, help="Allow not answering (reward 0) when every budget loses."),
                 compare: bool = typer.Option(False, help="Verifier vs best-of-n vs majority vote at equal samples."),
                 task: Optional[str] = None, model: Optional[str] = None,
                 out: Path = typer.Option(Path("scalinglab-out/testtime")), figures: bool = typer.Option(True),
                 as_json: bool = JsonOpt):
    """Resampling against an imperfect verifier: accuracy vs attempts, its ceiling, the best budget."""
    from ..testtime.analysis import verifier_report
    if k_max < 1 or k_max > 1_000_000:
        _fail(f"--k-max must be a whole number from 1 to 1,000,000, got {k_max}")
    _finite(tpr, "--tpr", lo=0, hi=1)
    _finite(fpr_unsolved, "--fpr-unsolved", lo=0, hi=1)
    _finite(cost, "--cost", lo=0, hi=1e6)
    fprs = _quantities(fpr, "--fpr", lo=0, lo_open=False, hi=1)
    try:
        rep = verifier_report(_groups(file, store, task, model), tpr=tpr, fprs=fprs,
                              cost=cost, k_max=k_max, fpr_unsolved=fpr_unsolved, abstain=abstain, compare=compare)
    except ValueError as e:
        _fail(str(e))
    if figures and rep["groups"]:
        from ..report.figures import verifier_figure
        rep["figures"] = verifier_figure(rep, out)
    if as_json:
        return _emit_json(rep)
    for name, g in rep["groups"].items():
        table = Table(title=f"{escape(name)}: TPR {tpr}, false-positive cost {cost}")
        for col in ("FPR", "acc@1", f"acc@{g['k'][-1]}", "ceiling", "best k", "reward at best k"):
            table.add_column(col, justify="right")
        for f, r in g["by_fpr"].items():
            table.add_row(f, f"{r['accuracy'][0]:.4f}", f"{r['accuracy'][-1]:.4f}", f"{r['ceiling']:.4f}",
                          "abstain" if r["optimal"]["abstain"] else str(r["optimal"]["k"]), f"{r['optimal']['reward']:.4f}")
        console.print(table)
        for f, r in g["by_fpr"].items():
            o = r["optimal"]
            console.print(f"  FPR {f}: " + (f"do not answer: the best budget (k={o['best_answering']['k']}) loses "
                                            f"{-o['best_answering']['reward']:.4f} per problem" if o["abstain"] else
                                            f"any k from {o['flat_region'][0]} to {o['flat_region'][1]} is within "
                                            f"{o['flat_tolerance']:.0%} of the best reward"), highlight=False)
            if "strategies" in r:
                st = r["strategies"]
                names = [x for x in ("verifier", "best_of_n", "majority", "oracle") if x in st]
                console.print("    at equal samples k=" + ",".join(map(str, st["k"])) + ": " + "; ".join(
                    f"{x} " + "/".join(f"{v:.3f}" for v in st[x]["accuracy"]) for x in names) + " (accuracy)", highlight=False)


@app.command("sample")
def sample_cmd(checkpoint: Optional[Path] = typer.Argument(None, help="Checkpoint folder or file (else --ladder)."),
               task: str = typer.Option("addition:3", help="KIND:DIGITS, e.g. addition:3, multiplication:2."),
               fmt: str = typer.Option("direct", "--format", help="direct or scratchpad (chain of thought)."),
               n: int = typer.Option(64, help="Samples per problem."),
               problems: int = typer.Option(50, help="Held-out problems."),
               temperature: float = typer.Option(0.8),
               ladder: bool = typer.Option(False, "--ladder", help="Sample from every finished run in the store trained on this task."),
               checkpoints: Path = typer.Option(Path("scalinglab-out/checkpoints")),
               seed: int = typer.Option(0), store: Path = StoreOpt, as_json: bool = JsonOpt):
    """Draw samples with a KV cache from lab checkpoints, verify them exactly, write them to the store."""
    _whole(n, "--n", 1, 1_000_000)
    _whole(problems, "--problems", 1, 1_000_000)
    _finite(temperature, "--temperature", lo=0, hi=100)
    _choice(fmt, "--format", ("direct", "scratchpad"))
    _task(task)
    if checkpoint is not None and not checkpoint.exists():
        _fail(f"no checkpoint at {checkpoint} (give a checkpoint folder or file, or --ladder)")
    _require("train", "scalinglab sample", "torch")
    from ..testtime.sampling import sample_task
    targets = []
    if ladder:
        _existing_store(store)
        with RunStore(store, readonly=True) as st:
            targets = [(checkpoints / r.run_id, f"{r.name} (N={r.n_active:,.0f})") for r in st.runs(status="finished")
                       if str(r.config.get("corpus", "")).startswith(f"task:{task}")]
        if not targets:
            _fail(f"no finished runs in {store} trained on a task:{task} corpus")
    elif checkpoint is None:
        _fail("give a CHECKPOINT or --ladder")
    else:
        targets = [(checkpoint, None)]
    results = []
    try:
        for t, name in targets:
            res = sample_task(t, task, n=n, n_problems=problems, temperature=temperature, fmt=fmt, seed=seed,
                              model_name=name)
            with RunStore(store) as st:
                st.add_samples(res["rows"], on_duplicate="replace")
            results.append({k: res[k] for k in ("run_id", "n_active", "pass_at_1", "flops_per_sample", "tokens_per_sample")}
                           | {"samples": len(res["rows"]), "task": f"{task}:{fmt}"})
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    if as_json:
        return _emit_json({"results": results})
    for r in results:
        console.print(f"{r['run_id']}: N_active={r['n_active']:,}, {r['samples']} samples of {r['task']}, pass@1 "
                      f"{r['pass_at_1']:.4f}, {r['tokens_per_sample']:.1f} tokens and {r['flops_per_sample']:.3g} FLOPs per sample", markup=False)
    console.print(f"analyse with: scalinglab passk --store {store} --task {task}:{fmt}", markup=False)


@app.command("matched-compute")
def matched_compute_cmd(task: str = typer.Option(..., help="KIND:DIGITS sampled in both formats, e.g. multiplication:2."),
                        small: Optional[str] = typer.Option(None, help="The smaller model, as its samples name it "
                                                            "(default: the fewest active parameters sampled in both formats)."),
                        large: Optional[str] = typer.Option(None, help="The larger model, as its samples name it "
                                                            "(default: the most active parameters)."),
                        k: str = typer.Option("1,2,4,8,16,32", help="Samples per query, comma-separated."),
                        tpr: float = typer.Option(0.9, help="The imperfect verifier's true-positive rate."),
                        fpr: float = typer.Option(0.1, help="The imperfect verifier's false-positive rate."),
                        levels: int = typer.Option(3, min=1, max=10, help="Difficulty levels (bins of the smaller model's success)."),
                        queries: str = typer.Option("1e3,1e6,1e9", help="Query counts for the total-cost view."),
                        store: Path = StoreOpt, out: Path = typer.Option(Path("scalinglab-out/testtime")),
                        figures: bool = typer.Option(True), as_json: bool = JsonOpt):
    """Thinking longer (scratchpad) vs sampling more (majority, verifiers) vs a larger model, at matched inference FLOPs.

    Reads the samples `scalinglab sample` wrote for both formats of both models: accuracy against inference FLOPs
    per query, per difficulty level the compute-optimal choice, the exchange rate (the smaller model's FLOPs per
    query that reach the larger model's one-sample accuracy) and training plus serving cost at --queries."""
    ks = _ks(k, hi=1_000_000)
    qs = _quantities(queries, "--queries", lo=1, lo_open=False, hi=1e18)
    _finite(tpr, "--tpr", lo=0, hi=1)
    _finite(fpr, "--fpr", lo=0, hi=1)
    _task(task)
    _existing_store(store)
    from ..testtime.matched import matched_compute_from_store
    try:
        with RunStore(store, readonly=True) as st:
            rep = matched_compute_from_store(st, task, small, large, ks=ks, tpr=tpr, fpr=fpr,
                                             n_bins=levels, queries=qs)
    except ValueError as e:
        _fail(str(e))
    if figures:
        from ..report.figures import matched_compute_figure
        rep["figures"] = matched_compute_figure(rep, out)
    if as_json:
        return _emit_json(rep)
    ratio = f", {rep['size_ratio']:.2g}x the active parameters" if "size_ratio" in rep else ""
    console.print(f"{task}: {rep['problems']} problems, {rep['evaluation_samples']} evaluation samples per problem and "
                  f"group; small {rep['small']}, large {rep['large']}{ratio}", markup=False)
    table = Table(title="accuracy at k samples per query (all problems)")
    for col in ("model", "format", "strategy", "FLOPs/sample") + tuple(f"k={x}" for x in rep["k"]):
        table.add_column(col, justify="right")
    for c in rep["curves"]:
        table.add_row(c["model"], c["format"], c["strategy"], f"{c['flops_per_sample']:.3g}",
                      *(f"{a:.3f}" for a in c["accuracy"]))
    console.print(table)
    table = Table(title="compute-optimal choice at the largest budget, by difficulty level")
    for col in ("verifier", "level", "budget FLOPs", "model", "format", "strategy", "k", "accuracy"):
        table.add_column(col, justify="right")
    for o in rep["compute_optimal"]:
        c = o["choices"][-1]
        table.add_row(o["verifier"], str(o["level"]), f"{c['budget_flops']:.3g}", c["model"], c["format"],
                      c["strategy"], str(c["k"]), f"{c['accuracy']:.3f}")
    console.print(table)
    table = Table(title="exchange rate: the small model's inference FLOPs for the large model's one-sample accuracy")
    for col in ("level", "large format", "large acc", "small strategy", "small FLOPs/query", "x large's"):
        table.add_column(col, justify="right")
    for e in rep["exchange"]:
        table.add_row(str(e["level"]), e["large_format"], f"{e['large_accuracy']:.3f}", e["small_strategy"],
                      f"{e['small_flops_per_query']:.3g}" if e["small_flops_per_query"] else
                      f"not reached (best {e['small_best_accuracy']:.3f})",
                      f"{e['exchange_rate']:.2f}" if e["exchange_rate"] else "-")
    console.print(table)
    for t in rep.get("total_cost", []):
        cross = t["crossover_queries"]
        console.print(f"  total cost at the large model's {t['large_format']} accuracy ({t['accuracy']:.3f}), small with "
                      f"{t['small_strategy']}: " + ("; ".join(
                          f"{q['queries']:.0e} queries: small {q['small']:.3g} / large {q['large']:.3g} FLOPs"
                          if q["small"] else f"{q['queries']:.0e} queries: small n/a / large {q['large']:.3g} FLOPs"
                          for q in t["by_queries"]))
                      + (f"; the large model is cheaper beyond {cross:.3g} queries" if cross else f"; {t.get('note', '')}"),
                      highlight=False)
