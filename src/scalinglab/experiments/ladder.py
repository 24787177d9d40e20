"""The main job: tune the learning-rate rule, train an IsoFLOP ladder, fit, forecast a run well beyond it,
train that run and compare.

Steps (each recorded in the store, each skipped on a re-run when already done):

1. **LR rule** (``spec.lr_sweep``): a short sweep at the compute-optimal guesses of the two smallest
   budgets fits ``log lr*(N) = a + b log N`` (Porian et al. 2024, https://arxiv.org/abs/2406.19146);
   every later run takes its peak LR from the rule, which is stored with it.
2. **Grid**: the IsoFLOP runs (WSD branches share their constant-LR trunk).
3. **Fits**: every (N, D) form and Approach 2; the form that backtests best on the ladder itself (rolling
   origin, never on the verification run) sizes the verification run; fits with a parameter on a bound
   are refused and reported.
4. **Curve law**: :class:`~scalinglab.laws.curve.AnnealingCurveLaw` on the stored curves, an independent
   forecast of the same run.
5. **Verification**: every law's forecast (with its prediction interval, extrapolation error included) and
   their combination (:func:`combine_forecasts`) are stored before the run at ``verify_multiplier`` x the
   largest budget is trained.
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import optimize, special

from ..analysis import Selection, fit_runs, report_json, run_arrays, save_fits
from ..cost import matmul_peak
from ..laws import FitError
from ..laws.curve import AnnealingCurveLaw, annealing_terms, forward_area
from ..store import RunStore
from ..train.config import ModelConfig, RunConfig, param_counts, resolve_horizon
from ..train.executors import Executor, InlineExecutor, thread_budget
from ..train.ladder import (LadderEntry, LadderSpec, budget_targets, candidate_shapes, design_ladder, driver_id,
                            ladder_compute, nearest_shape, run_config, train_entries)
from ..train.run import lr_schedule

FLAT_TOLERANCE = 0.01   # an LR is in the flat region when its fitted loss is within 1% of the optimum
CHECK_FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)   # lr_check's LRs around the rule, whatever the ladder's own sweep tries


# ------------------------------------------------------------------------------------ learning rate
def sweep_entries(spec: LadderSpec, vocab_size: int, family: str, points: list[tuple[int, float]],
                  label: str | None = None) -> list[LadderEntry]:
    """LR-sweep runs: for each (shape index, budget), the rule's LR times each of ``lr_sweep_factors``; ``label``
    (default ``family``) names the runs and is stored as their family (a compared recipe's name)."""
    shapes, _ = candidate_shapes(spec, vocab_size, family)
    return [_lr_entry(spec, shapes[i], budget, f, label or family) for i, budget in points for f in spec.lr_sweep_factors]


def _lr_entry(spec: LadderSpec, shape, budget: float, factor: float, label: str) -> LadderEntry:
    """One LR-sweep run: ``shape`` at ``budget`` with ``factor`` x the spec's rule LR."""
    base = run_config(spec, shape, budget)
    cfg = dataclasses.replace(base, lr=base.lr * factor)
    return LadderEntry(f"{label}-lr{cfg.lr:.2e}-C{budget:.2g}-d{shape.d_model}L{shape.n_layers}", label, budget, cfg,
                       role="lr-sweep", hp_rule={"lr_factor": factor, "rule": spec.hp_rule()})


def fit_lr_optimum(n: np.ndarray, lr: np.ndarray, loss: np.ndarray, tolerance: float = FLAT_TOLERANCE,
                   window: int | None = None) -> dict:
    """Joint fit of ``loss = c_size + k (log lr - a - b log(N / N_0))^2`` over sweeps at one or more sizes.

    Args:
        window: fit only the ``window`` LRs around each size's best one (a local parabola; loss against
            log LR is asymmetric over a wide sweep), or all points (None).

    Returns the optimum per size, the flat region (LRs whose fitted loss is within ``tolerance`` of the
    optimum) and, with two or more sizes, the rule ``lr*(N) = exp(a) (N / N_0)^b``.
    """
    n, lr, loss = (np.asarray(x, float) for x in (n, lr, loss))
    if window is not None:
        keep = np.zeros(n.size, bool)
        for size in np.unique(n):
            at = np.flatnonzero(n == size)
            at = at[np.argsort(lr[at])]
            best = int(np.argmin(loss[at]))
            lo = min(max(0, best - window // 2), max(0, at.size - window))
            keep[at[lo:lo + window]] = True
        n, lr, loss = n[keep], lr[keep], loss[keep]
    sizes = np.unique(n)
    n0 = float(sizes[0])
    z = np.log(n / n0)
    x = np.log(lr)
    idx = np.searchsorted(sizes, n)
    slope = sizes.size > 1

    def resid(p):
        k, a, b = p[0], p[1], (p[2] if slope else 0.0)
        c = p[3 if slope else 2:]
        return (c[idx] + k * (x - a - b * z) ** 2) / loss - 1.0

    start = np.r_[0.05, x[np.argmin(loss)], [0.0] if slope else [], [loss[idx == j].min() for j in range(sizes.size)]]
    lo = np.r_[1e-6, -20, [-3.0] if slope else [], np.zeros(sizes.size)]
    hi = np.r_[10.0, 5, [3.0] if slope else [], np.full(sizes.size, np.inf)]
    res = optimize.least_squares(resid, start, bounds=(lo, hi))
    k, a = res.x[0], res.x[1]
    b = res.x[2] if slope else 0.0
    c = res.x[3 if slope else 2:]
    # standard errors from the Jacobian (Gauss-Newton), for the rule's exponent
    dof = max(1, loss.size - res.x.size)
    s2 = float(np.sum(res.fun ** 2)) / dof
    try:
        cov = np.linalg.inv(res.jac.T @ res.jac) * s2
        se_b = float(np.sqrt(cov[2, 2])) if slope else None
    except np.linalg.LinAlgError:
        se_b = None
    per_size = []
    for j, size in enumerate(sizes):
        opt = a + b * math.log(size / n0)
        half = math.sqrt(tolerance * c[j] / k)
        tried = np.sort(lr[idx == j])
        losses_j = loss[idx == j][np.argsort(lr[idx == j])]
        per_size.append({"N": float(size), "lr_opt": float(math.exp(opt)), "loss_opt": float(c[j]),
                         "flat_region": [float(math.exp(opt - half)), float(math.exp(opt + half))],
                         "optimum_inside_sweep": bool(tried[0] < math.exp(opt) < tried[-1]),
                         "best_tried_interior": bool(0 < int(np.argmin(losses_j)) < tried.size - 1),
                         "tried": tried.tolist(), "losses": losses_j.tolist()})
    return {"curvature": float(k), "per_size": per_size, "tolerance": tolerance,
            "rule": {"lr_ref": float(math.exp(a)), "lr_ref_params": n0, "lr_exponent": float(-b),
                     "lr_exponent_se": se_b} if slope else None,
            "rms_rel_residual": float(np.sqrt(np.mean(res.fun ** 2)))}


def _finished(store: RunStore, entries: list[LadderEntry]):
    out = []
    for e in entries:
        r = store.run(e.run_id)
        if r is not None and r.status == "finished" and r.final_loss is not None:
            out.append((e, r))
    return out


def sweep_points(spec: LadderSpec, vocab_size: int) -> list[tuple[int, float]]:
    """The LR sweep's (shape index into :func:`candidate_shapes`, budget) pairs: the grid's smallest size at the
    smallest budget, then the compute-optimal guesses of the two smallest budgets."""
    shapes, counts = candidate_shapes(spec, vocab_size, spec.families[0])
    budgets = sorted(spec.budgets)[:2]
    points: list[tuple[int, float]] = []
    smallest = nearest_shape(counts, float(budget_targets(spec, budgets[0])[0]), shapes=shapes)
    for b in budgets:
        target = float(budget_targets(spec, b)[spec.sizes_per_budget // 2])
        if len(budgets) == 1 or (points and counts[points[0][0]] >= target):
            target *= math.sqrt(spec.size_span)     # one budget, or both centres on one shape: a larger one
        points.append((nearest_shape(counts, target, exclude=[i for i, _ in points] + [smallest], shapes=shapes), b))
    return [(smallest, budgets[0])] + points


def tune_lr(spec: LadderSpec, store: RunStore, executor: Executor, checkpoint_dir, vocab_size: int, *,
            show_progress: bool, log: Callable[[str], None], label: str | None = None) -> tuple[LadderSpec, dict]:
    """Measure the optimum LR at three sizes and return the spec with those optima as its LR rule.

    The sizes: the grid's smallest (at the smallest budget) and the compute-optimal guesses of the two
    smallest budgets. Each is swept over ``lr_sweep_factors`` x the starting rule's LR; a size whose best
    LR is the largest (or smallest) tried is swept two factors of 2 further that way. Each size's optimum
    comes from a local parabola through the 3 LRs around its best one; sizes without an interior optimum
    are left out (with a warning). The rule (``lr_knots``) is the straight line through the optima in
    log N and log LR, constant beyond the outermost: the optimum LR of these tiny models falls steeply
    below ~40k parameters and hardly at all above, which a single power law fitted at two sizes cannot
    follow (it handicapped the smallest sizes by 2-4% of loss, or the largest when extrapolated).
    ``label`` names the sweep's runs (:func:`sweep_entries`).
    """
    family = spec.families[0]
    shapes, counts = candidate_shapes(spec, vocab_size, family)
    points = sweep_points(spec, vocab_size)
    entries = sweep_entries(spec, vocab_size, family, points, label)
    log(f"learning-rate sweep: {len(entries)} runs at N = "
        f"{', '.join(f'{counts[i]:,}' for i, _ in points)} (x {', '.join(f'{f:g}' for f in spec.lr_sweep_factors)} "
        f"the starting rule's LR)")
    train_entries(entries, store, executor, checkpoint_dir, show_progress=show_progress, log=log)
    more = _edge_entries(spec, shapes, points, _finished(store, entries), label or family)
    if more:
        log(f"learning-rate sweep: {len(more)} more runs past the edge of the sweep at "
            f"{len({e.config.model for e in more})} size(s)")
        train_entries(more, store, executor, checkpoint_dir, show_progress=show_progress, log=log)
        entries = entries + more
    done = _finished(store, entries)
    sizes = np.array([r.n_active for _, r in done], float)
    lrs = np.array([e.config.lr for e, _ in done])
    losses = np.array([r.final_loss for _, r in done])
    if len(done) < 3:
        return spec, {"error": "too few finished sweep runs to fit an LR rule; the preset's rule is kept",
                      "rule": spec.hp_rule()}
    per_size = []
    for size in np.unique(sizes):
        at = sizes == size
        if at.sum() >= 3:
            one = fit_lr_optimum(sizes[at], lrs[at], losses[at], window=3)
            per_size += [dict(s, curvature=one["curvature"]) for s in one["per_size"]]
    for s in per_size:
        if not s["best_tried_interior"]:
            log(f"warning: at N={s['N']:,.0f} the best LR tried ({s['tried'][int(np.argmin(s['losses']))]:.3g}) is at the "
                f"edge of the sweep; this size does not enter the LR rule")
    knots = tuple((s["N"], s["lr_opt"]) for s in per_size if s["best_tried_interior"])
    fit = {"per_size": per_size, "tolerance": FLAT_TOLERANCE, "run_ids": [e.run_id for e, _ in done],
           "excluded_sizes": [s["N"] for s in per_size if not s["best_tried_interior"]]}
    if not knots:
        return spec, dict(fit, error="no size has its best LR inside the sweep; the preset's rule is kept",
                          used=spec.hp_rule())
    tuned = dataclasses.replace(spec, lr_knots=knots, lr=knots[-1][1], lr_ref_params=knots[-1][0], lr_exponent=0.0)
    fit["rule"] = {"lr_knots": [list(k) for k in knots],
                   "note": "one size with an interior optimum: a constant LR" if len(knots) == 1 else
                           "log-log interpolation between the sizes' optima, constant beyond"}
    fit["used"] = tuned.hp_rule()
    log(f"learning-rate rule: {fit['used']['lr']}")
    store.add_decision("lr-rule", label or "ladder", "fitted", fit)
    return tuned, fit


def _edge_entries(spec: LadderSpec, shapes: list[ModelConfig], points, done, label: str) -> list[LadderEntry]:
    """Two more LRs (x2, x4 beyond the edge) at each swept size whose best LR is the largest or smallest tried
    (``points`` index ``shapes``, the ladder's :func:`candidate_shapes`)."""
    out = []
    for i, budget in points:
        runs = sorted(((e.config.lr, r.final_loss) for e, r in done if e.config.model == shapes[i]))
        if len(runs) < 3:
            continue
        best = int(np.argmin([loss for _, loss in runs]))
        if 0 < best < len(runs) - 1:
            continue
        edge = runs[best][0] / spec.lr_for(param_counts(shapes[i])["active"])     # as a factor of the rule's LR
        for f in ((2.0, 4.0) if best == len(runs) - 1 else (0.5, 0.25)):
            out.append(_lr_entry(spec, shapes[i], budget, edge * f, label))
    return out


def lr_check(spec: LadderSpec, store: RunStore, executor: Executor | None = None, *,
             checkpoint_dir="scalinglab-out/checkpoints", at=("smallest", "largest"), show_progress: bool = True,
             log: Callable[[str], None] = print) -> dict:
    """Sweep the LR around the rule at the ladder's smallest and largest sizes (each at the budget where the
    ladder trains it) and say whether the rule's LR lies in the flat region of the optimum there."""
    from ..train.data import load_tokens
    data = load_tokens(spec.corpus, spec.tokenizer)
    executor = executor or InlineExecutor()
    if spec.lr_sweep:
        spec, _ = tune_lr(spec, store, executor, checkpoint_dir, data.vocab_size, show_progress=show_progress, log=log)
    grid = [e for e in design_ladder(spec, data.vocab_size) if e.family == spec.families[0]]
    shapes, counts = candidate_shapes(spec, data.vocab_size, spec.families[0])
    n_of = {e.run_id: param_counts(e.config.model)["active"] for e in grid}
    picks = {}
    if "smallest" in at:
        e = min(grid, key=lambda e: (n_of[e.run_id], e.budget))
        picks["smallest"] = e
    if "largest" in at:
        e = max(grid, key=lambda e: (n_of[e.run_id], e.budget))
        picks["largest"] = e
    out = {"rule": spec.hp_rule(), "sizes": {}}
    for label, e in picks.items():
        i = next(j for j, s in enumerate(shapes) if s == e.config.model)
        entries = sweep_entries(dataclasses.replace(spec, lr_sweep_factors=CHECK_FACTORS), data.vocab_size,
                                spec.families[0], [(i, e.budget)])
        train_entries(entries, store, executor, checkpoint_dir, show_progress=show_progress, log=log)
        done = _finished(store, entries)
        if len(done) < 3:
            out["sizes"][label] = {"error": "fewer than 3 finished sweep runs"}
            continue
        fit = fit_lr_optimum(np.array([r.n_active for _, r in done]), np.array([x.config.lr for x, _ in done]),
                             np.array([r.final_loss for _, r in done]), window=3)
        s = fit["per_size"][0]
        rule_lr = spec.lr_for(counts[i])
        s.update(sweep=sorted((x.config.lr, r.final_loss) for x, r in done), fitted_on="the 3 LRs around the best",
                 budget=e.budget, rule_lr=rule_lr, rule_inside_flat_region=bool(s["flat_region"][0] <= rule_lr <= s["flat_region"][1]),
                 rule_loss_excess=float(fit["curvature"] * math.log(rule_lr / s["lr_opt"]) ** 2 / s["loss_opt"]))
        out["sizes"][label] = s
        log(f"{label} ladder size N={counts[i]:,} at C={e.budget:.3g}: optimum lr {s['lr_opt']:.3g}, flat region "
            f"[{s['flat_region'][0]:.3g}, {s['flat_region'][1]:.3g}] (loss within {FLAT_TOLERANCE:.0%}); rule lr {rule_lr:.3g}: "
            f"{'inside' if s['rule_inside_flat_region'] else 'OUTSIDE'} (+{s['rule_loss_excess']:.2%} loss)")
    store.add_decision("lr-check", "ladder", "measured", out)
    return out


# ------------------------------------------------------------------------------------------- ladder
def run_ladder(spec: LadderSpec, store: RunStore, *, executor: Executor | None = None,
               checkpoint_dir: str | Path = "scalinglab-out/checkpoints", out: str | Path = "scalinglab-out/ladder",
               verify: bool = True, show_progress: bool = True, figures: bool = True,
               log: Callable[[str], None] = print) -> dict:
    """Tune, design, train, fit and verify a ladder; returns a JSON-ready report (see the README for keys)."""
    from ..train.data import load_tokens
    t0, started = time.perf_counter(), time.time()
    timings: dict = {}
    data = load_tokens(spec.corpus, spec.tokenizer)
    executor = executor or InlineExecutor()
    peak = matmul_peak(device=spec.device)
    report: dict = {"data": data.describe(), "machine": {"fp32_matmul_peak_flops": peak,
                                                         "thread_budget": thread_budget(executor)}}
    if spec.lr_sweep:
        t = time.perf_counter()
        spec, report["lr_sweep"] = tune_lr(spec, store, executor, checkpoint_dir, data.vocab_size,
                                           show_progress=show_progress, log=log)
        timings["lr_sweep_s"] = time.perf_counter() - t
    t = time.perf_counter()
    entries = design_ladder(spec, data.vocab_size)
    for e in entries:
        e.hp_rule = spec.hp_rule()
    timings["design_s"] = time.perf_counter() - t
    compute = ladder_compute(entries)
    log(f"ladder: {len(entries)} runs over budgets {', '.join(f'{b:.2g}' for b in spec.budgets)} FLOPs "
        f"(C = 6 N_active D), families {', '.join(spec.families)}, {spec.schedule} schedule"
        + (f" ({compute['trunks']} trunks; {compute['saved_fraction']:.0%} of the grid's compute shared)"
           if spec.schedule == "wsd" else "")
        + f"; corpus {data.corpus} ({data.corpus_hash}, {data.tokenizer}, {data.train.size:,} train tokens)")
    t = time.perf_counter()
    outcome = train_entries(entries, store, executor, checkpoint_dir, show_progress=show_progress, log=log)
    timings["grid_s"] = time.perf_counter() - t
    report.update({"spec": dataclasses.asdict(spec), "hp_rule": spec.hp_rule(), "n_runs": len(entries),
                   "training": outcome, "compute": compute, "families": {}})
    for family in spec.families:
        report["families"][family] = _fit_and_verify(spec, family, entries, store, executor, checkpoint_dir, out, verify,
                                                     show_progress, figures, log, data, timings)
    if len(spec.families) == 2 and all("chinchilla" in report["families"][f].get("fits", {}) and
                                       "error" not in report["families"][f]["fits"]["chinchilla"] for f in spec.families):
        report["moe_vs_dense"] = _moe_multiplier(store, spec, report)
    report["seconds"] = time.perf_counter() - t0
    report["timings"] = timings
    report["efficiency"] = ladder_efficiency(trained_here(store, started), report["seconds"], peak,
                                             report["machine"]["thread_budget"])
    return report


def trained_here(store: RunStore, since: float) -> list:
    """The ladder runs this driver process finished since ``since`` (a Unix time): its own results only
    (``extra.driver``), so that another driver training the same store at the same time is not counted."""
    me = driver_id()
    return [r for r in store.runs(source="ladder") if r.status == "finished" and r.updated_at >= since
            and (r.extra or {}).get("driver") == me and "step_seconds" in r.extra]


def ladder_efficiency(runs, wall_s: float, peak_flops: float, threads_total: int | None) -> dict:
    """How well a ladder used the machine, from the runs it trained (``extra`` as :func:`to_store_record`
    writes it):

    * ``achieved_flops_per_s``: the compute trained (``6 N_active D`` over the steps each run trained; a WSD
      trunk's shared prefix once) over the ladder's wall time, and ``fraction_of_peak`` against the fp32
      matmul peak measured when it started;
    * ``outside_steps_share``: the share of the machine's thread-time (``threads_total`` threads x wall
      time) spent outside training steps (design, evaluation, checkpoints, fits, figures, idle workers).
      Each run's step time counts once per thread it trained with, so runs trained side by side by
      several workers are neither counted twice nor missed; with one worker it is the share of wall time
      outside steps. None when the runs did not record their threads (older stores) and their step times
      overlap, or when the runs trained elsewhere (no thread budget here). ``eval_share`` is the part of
      it spent evaluating, counted the same way.
    """
    trained = sum(6.0 * r.n_active * r.config["batch_size"] * r.config["model"]["seq_len"]
                  * (r.extra.get("steps_trained") or 0) for r in runs)
    threads = [r.extra.get("threads") or 0 for r in runs]

    def total(key: str, per_thread: bool = False) -> float:
        return sum(r.extra.get(key, 0.0) * (k if per_thread else 1) for r, k in zip(runs, threads))

    step_s, eval_s = total("step_seconds"), total("eval_seconds")
    core_step_s = eval_share = outside = None
    if threads_total and runs and all(threads):
        core_step_s = total("step_seconds", per_thread=True)
        outside = 1.0 - core_step_s / (threads_total * wall_s)
        eval_share = total("eval_seconds", per_thread=True) / (threads_total * wall_s)
    elif not all(threads) and step_s <= wall_s:    # runs without threads recorded, one at a time: wall time
        outside, eval_share = 1.0 - step_s / wall_s, eval_s / wall_s
    return {"wall_s": wall_s, "runs": len(runs), "trained_flops": trained, "achieved_flops_per_s": trained / wall_s,
            "fp32_matmul_peak_flops": peak_flops, "fraction_of_peak": trained / wall_s / peak_flops,
            "step_seconds": step_s, "eval_seconds": eval_s, "thread_budget": threads_total,
            "core_step_seconds": core_step_s, "outside_steps_share": outside, "eval_share": eval_share,
            "target_outside_steps_share": 0.10}


def _fit_and_verify(spec, family, entries, store, executor, checkpoint_dir, out, verify, show_progress, figures, log,
                    data, timings):
    ids = {e.run_id for e in entries if e.family == family}
    runs = [r for r in store.runs(family=family) if r.run_id in ids]
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = fit_ladder_forms(runs, family, n_bootstrap=spec.n_bootstrap, seed=spec.seed)
        except FitError as e:
            return {"error": str(e), "diverged": [r.name for r in runs if r.status == "diverged"]}
    timings[f"{family}_fit_s"] = time.perf_counter() - t
    save_fits(store, fit, source=f"ladder:{family}")
    result = report_json(fit)
    result["warnings"] = [str(w.message) for w in caught]
    for name, entry in fit["fits"].items():
        if "error" in entry:
            result["warnings"].append(f"{name} not used: {entry['error']}")
    result["diverged"] = [r.name for r in runs if r.status == "diverged"]
    for w in result["warnings"]:
        log(f"warning: {w}")
    out_dir = Path(out) / family
    if figures:
        from ..report.figures import fit_figures
        _, N, D, C, L = run_arrays(runs, "n_active", "6ND")
        result["figures"] = fit_figures(fit, N, D, C, L, out_dir, title=f"{family} ladder, {spec.corpus} bytes")
    chosen = forecast_form(fit)
    result["forecast_law"] = chosen
    t = time.perf_counter()
    curve_law, result["curve_law"] = fit_curve_law(store, runs, n_bootstrap=spec.n_bootstrap, seed=spec.seed)
    if curve_law is not None:   # the curve law's own rolling-origin error, on the cuts the forms were ranked on
        for w in curve_law.bound_warnings():
            result["warnings"].append(w)
            log(f"warning: {w}")
        bt = curve_law_backtest(store, runs, seed=spec.seed)
        if bt:
            result["curve_law"]["backtest"] = {
                "mean_abs_log_error": float(np.mean([abs(r["log_residual"]) for r in bt])), "n_predictions": len(bt),
                "n_cuts": len({(r["axis"], r["fitted_max"]) for r in bt})}
    timings[f"{family}_curve_law_s"] = time.perf_counter() - t
    if verify and chosen is not None:
        log(f"(N, D) form: {chosen} (the smallest rolling-origin backtest error on the ladder; it sizes the verification run)"
            if chosen == fit.get("recommended") else f"(N, D) form: {chosen} (no form could be ranked by backtests)")
        t = time.perf_counter()
        result["verification"] = _verify(spec, family, fit, chosen, curve_law, store, executor, checkpoint_dir,
                                         show_progress, log, out_dir if figures else None, data)
        timings[f"{family}_verify_s"] = time.perf_counter() - t
    elif verify:
        result["verification"] = {"error": "no (N, D) law could be fitted without a parameter on a bound: "
                                           + "; ".join(f"{k}: {v['error']}" for k, v in fit["fits"].items() if "error" in v)}
    return result


def fit_ladder_forms(runs, family: str, *, n_bootstrap: int, seed: int) -> dict:
    """Every (N, D) form and Approach 2 on a ladder's runs, as the ladder fits them (N = active parameters,
    C = 6 N D; the forms ranked by rolling-origin backtests on these runs)."""
    return fit_runs(runs, ("auto", "approach2"), selection=Selection(n_convention="n_active", flop_convention="6ND",
                                                                     family=family),
                    n_bootstrap=n_bootstrap, seed=seed)


def forecast_form(fit: dict) -> str | None:
    """The (N, D) form that sizes the verification run: the one that backtests best on the ladder, or, when no
    form could be ranked by backtests, the first (N, D) form that fitted (None when none did)."""
    chosen = fit.get("recommended")
    if chosen is None:
        chosen = next((k for k, v in fit["fits"].items() if "law" in v and getattr(v["law"], "variables", None) == ("N", "D")),
                      None)
    return chosen


def curve_points(store: RunStore, runs, skip: float = 0.0) -> dict:
    """Validation-curve points of finished runs with their schedule terms (forward area, LR drops and the
    area since each), from ``skip`` of each run's steps on (after twice the warmup and 8 steps in any case);
    the constant-LR prefix a WSD branch shares with its trunk is counted once.

    The ladder fits the whole curves. Leaving out each curve's first quarter (``skip=0.25``) lowers the curve
    law's rolling-origin error at the backtests' 2-8x (0.053 to 0.034 on 13 quick-ladder grids) and
    identifies its E, but its forecasts at 10x were further off on 10 of those 13 seeds
    (docs/experiments.md, 2026-12-07)."""
    N, S1, drops, areas, L, group, final, seen = [], [], [], [], [], [], [], set()
    runs = [r for r in runs if r.status == "finished" and r.config]
    curves = store.curves([r.run_id for r in runs])      # one query for every curve
    for r in runs:
        cfg = RunConfig.from_dict(r.config)
        total = resolve_horizon(cfg, r.n_active)["steps"]
        trunk = (r.extra or {}).get("trunk_id")
        branch = (r.extra or {}).get("branch_step")
        warm = cfg.warmup_steps or 0
        pts = []
        cols = curves.get(r.run_id, {"step": np.zeros(0), "loss": np.zeros(0)})
        for step, loss in zip(cols["step"].tolist(), cols["loss"].tolist()):
            step = int(step)
            if loss != loss or step < 2 * warm or step < 8 or step < skip * total:   # NaN: a missing loss
                continue
            shared = trunk is not None and branch is not None and step <= branch
            key = (trunk, step) if shared else (r.run_id, step)
            if key not in seen:
                seen.add(key)
                pts.append((step, loss))
        if not pts:
            continue
        s1, d, a = schedule_terms(cfg, total, [st for st, _ in pts])
        for (step, loss), s, di, ai in zip(pts, s1, d, a):
            N.append(r.n_active)
            S1.append(s)
            drops.append(di)
            areas.append(ai)
            L.append(loss)
            group.append(trunk or r.run_id)
            final.append(step == total)
    out = {k: np.array(v) for k, v in dict(N=N, S1=S1, L=L, group=group, final=final).items()}
    out["drops"], out["areas"] = (np.array(drops), np.array(areas)) if drops else (np.zeros((0, 1)), np.zeros((0, 1)))
    return out


def schedule_terms(cfg: RunConfig, total: int, steps: list[int]):
    """The curve law's inputs at ``steps`` of a run of ``total`` steps: forward area, LR drops and the LR
    area since each (:mod:`scalinglab.laws.curve`)."""
    lr = lr_schedule(cfg, total)
    drops, areas = annealing_terms(lr, steps)
    return forward_area(lr, cfg.tokens_per_step)[np.asarray(steps) - 1], drops, areas


def fit_curve_law(store, runs, *, n_bootstrap: int, seed: int):
    """The curve law on the runs' stored curves (at most 100 cluster-bootstrap refits): ``(law, its JSON)``,
    or ``(None, {"error": ...})``."""
    pts = curve_points(store, runs)
    if pts["L"].size == 0:
        return None, {"error": "no stored curves"}
    try:
        law = AnnealingCurveLaw(n_bootstrap=min(100, n_bootstrap), seed=seed).fit(
            pts["N"], pts["S1"], pts["drops"], pts["areas"], pts["L"], pts["group"], pts["final"])
    except FitError as e:
        return None, {"error": str(e)}
    return law, law.to_json()


def curve_law_backtest(store: RunStore, runs, seed: int = 0) -> list[dict]:
    """Rolling-origin backtests of the curve law on the cuts the (N, D) forms use (along C and along N):
    fit on the curves of the runs up to a cut, forecast the final loss of every run beyond it.

    Returns rows in the forms' format (``axis``, ``fitted_max``, ``log_residual``), so its error reads
    beside theirs; the curve law does not enter the forms' ranking (:func:`scalinglab.analysis.rank_forms`).
    """
    from ..laws._extrapolation import origin_cuts
    finished = [r for r in runs if r.status == "finished" and r.config and r.final_loss is not None and r.tokens]
    if len(finished) < 6:
        return []
    N = np.array([r.n_active for r in finished], float)
    C = 6.0 * N * np.array([r.tokens for r in finished], float)
    rows = []
    for cut in origin_cuts({"C": C, "N": N}, min_fit_runs=6):
        fit_runs_ = [r for r, m in zip(finished, cut.fit) if m]
        pts = curve_points(store, fit_runs_)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                law = AnnealingCurveLaw(n_bootstrap=0, seed=seed).fit(pts["N"], pts["S1"], pts["drops"], pts["areas"],
                                                                      pts["L"], pts["group"], pts["final"])
        except (FitError, ValueError):
            continue
        for r, m in zip(finished, cut.test):
            if not m:
                continue
            cfg = RunConfig.from_dict(r.config)
            total = resolve_horizon(cfg, r.n_active)["steps"]
            s1, d, a = schedule_terms(cfg, total, [total])
            pred = float(law.predict([r.n_active], s1, d, a)[0])
            if pred > 0:
                rows.append({"axis": cut.axis, "fitted_max": cut.fitted_max, "log_residual": float(np.log(r.final_loss / pred))})
    return rows


def optimal_size(law, C: float) -> float:
    """The loss-minimising N at compute ``C = 6 N D`` under an (N, D) law (closed form where the law has one)."""
    if hasattr(law, "compute_optimal"):
        return float(np.ravel(law.compute_optimal(C)[0])[0])
    lo, hi = math.log(law.data_range_["N_min"] / 1e3), math.log(law.data_range_["N_max"] * 1e3)
    res = optimize.minimize_scalar(lambda x: float(np.ravel(law.predict([math.exp(x)], [C / (6 * math.exp(x))]))[0]),
                                   bounds=(lo, hi), method="bounded")
    return float(math.exp(res.x))


def _forecast_with(law, name, n, D):
    pred = float(np.ravel(law.predict([n], [D]))[0])
    lo, hi = (float(x[0]) for x in law.predict_interval([n], [D], kind="prediction"))
    return {"law": name, "predicted_loss": pred, "interval": [lo, hi]}


Z95 = 1.959964   # the 97.5% standard normal quantile


FORMS_GROUP = "(N, D) forms"


def combine_forecasts(members: dict, groups: dict | None = None, duplicate_tol: float = 1e-3) -> dict:
    """One forecast of a loss from several, each ``{"predicted_loss", "interval"}`` (95%, in loss units):
    a precision-weighted combination in log space (Bates & Granger 1969), in two stages when the members
    come in groups of laws fitted on the same data, with the model-averaging interval.

    Each member's interval already holds its own rolling-origin extrapolation error at its own distance from
    its data (the (N, D) forms extrapolate the ladder's compute by the verification multiplier, their error
    per decade measured on cuts along C and N; the curve law the same compute factor in its ``N * S1``, its
    error measured by holding out the largest sizes), so its log-space sd ``s_k = log(hi/lo) / (2 * 1.96)``
    is its calibrated error there.

    ``groups`` maps a member's name to its group (by default every member is its own group). Laws of one
    group share their data (the (N, D) forms are all fitted on the same final losses), so their errors are
    not independent and they count as one source: within group ``G`` member ``k`` gets ``v_k = s_k^-2 /
    sum_{j in G} s_j^-2``, the group's forecast is ``m_G = sum v_k log L_k`` and its sd is that of its
    mixture, ``s_G^2 = sum v_k (s_k^2 + (log L_k - m_G)^2)`` (its laws' errors plus their disagreement);
    the groups then get ``W_G = s_G^-2 / sum_H s_H^-2``, and member ``k`` the weight ``w_k = W_G v_k``.
    The forecast is ``exp(sum_k w_k log L_k)``; the interval is the 2.5% and 97.5% quantiles of the mixture
    ``sum_k w_k Normal(log L_k, s_k^2)``: each law's own error plus the spread between the laws. With every
    member its own group this is the one-stage precision weighting ``w_k = s_k^-2 / sum_j s_j^-2``.

    A member whose forecast equals an earlier member's of the same group (of any member, without ``groups``) to
    ``duplicate_tol`` in log is the same forecast twice (a form whose extra term fitted to zero, whatever its
    interval) and enters once; laws of different groups that happen to agree are two sources. Members without a
    finite, positive interval are left out; with none usable, the first member is returned unchanged.
    """
    groups = groups or {}
    usable, duplicates = {}, {}
    for name, m in members.items():
        iv = m.get("interval") or []
        if not (len(iv) == 2 and np.all(np.isfinite(iv)) and 0 < iv[0] < iv[1] and m.get("predicted_loss", 0) > 0):
            continue
        same = next((k for k, u in usable.items() if (not groups or groups.get(k, k) == groups.get(name, name))
                     and abs(math.log(m["predicted_loss"] / u["predicted_loss"])) < duplicate_tol), None)
        if same is not None:
            duplicates[name] = same
        else:
            usable[name] = m
    rule = ("precision-weighted combination in log space (weights 1/sd^2 from each law's calibrated 95% interval), "
            "in two stages: the laws fitted on the same data combined first, as one source with their mixture's sd; "
            "interval: the quantiles of the laws' mixture (each law's error plus their spread)")
    if not usable:
        name = next(iter(members))
        return {"members": [name], "weights": {name: 1.0}, "sd_log": {}, "duplicates": duplicates, "groups": {},
                "predicted_loss": members[name]["predicted_loss"], "interval": list(members[name]["interval"]),
                "forecast_by": name, "rule": rule}
    names = list(usable)
    mu = np.array([math.log(usable[k]["predicted_loss"]) for k in names])
    sd = np.array([math.log(usable[k]["interval"][1] / usable[k]["interval"][0]) / (2 * Z95) for k in names])
    label = [groups.get(k, k) for k in names]
    w, summary, index = np.zeros(len(names)), {}, {}
    for g in dict.fromkeys(label):
        idx = index[g] = np.array([i for i, lab in enumerate(label) if lab == g])
        v = sd[idx] ** -2 / np.sum(sd[idx] ** -2)
        m_g = float(v @ mu[idx])
        s_g = math.sqrt(float(v @ (sd[idx] ** 2 + (mu[idx] - m_g) ** 2)))
        w[idx] = v
        summary[g] = {"members": [names[i] for i in idx], "predicted_loss": math.exp(m_g), "sd_log": s_g}
    big = np.array([summary[g]["sd_log"] ** -2 for g in summary])
    for g, W in zip(summary, big / big.sum()):
        summary[g]["weight"] = float(W)
        w[index[g]] *= W

    def quantile(q):
        f = lambda x: float(w @ special.ndtr((x - mu) / sd)) - q
        return optimize.brentq(f, float(np.min(mu - 10 * sd)), float(np.max(mu + 10 * sd)), xtol=1e-12)

    return {"members": names, "weights": dict(zip(names, w.tolist())), "sd_log": dict(zip(names, sd.tolist())),
            "duplicates": duplicates, "groups": summary, "predicted_loss": float(math.exp(w @ mu)),
            "interval": [float(math.exp(quantile(0.025))), float(math.exp(quantile(0.975)))],
            "forecast_by": names[0] if len(names) == 1 else "combination of " + ", ".join(names), "rule": rule}


def verification_forecast(fit: dict, chosen: str, curve_law, cfg: RunConfig, n: float, C: float | None = None) -> dict:
    """The forecast of one run (``cfg``, ``n`` active parameters, compute ``C``, by default 6 n D) from a
    ladder's fits: every (N, D) form (``chosen`` first) and the curve law, combined by
    :func:`combine_forecasts`. Nothing is trained."""
    law = fit["fits"][chosen]["law"]
    h = resolve_horizon(cfg, n)
    D = float(h["tokens"])
    C = 6.0 * n * D if C is None else C
    main = _forecast_with(law, chosen, n, D)
    others = {name: _forecast_with(e["law"], name, n, D) for name, e in fit["fits"].items()
              if "law" in e and name != chosen and getattr(e["law"], "variables", None) == ("N", "D")}
    extrapolation = {"compute_over_max_fitted": C / law.data_range_["C_max"],
                     "factor": float(10 ** law.extrapolation_distance([n], [D])[0]),
                     "fitted_on": law.data_range_,
                     "model_error": {k: v for k, v in (law.extrapolation_ or {}).items() if k not in ("predictions", "skipped")}}
    members, factors, curve = {chosen: main, **others}, {chosen: extrapolation["factor"]}, None
    for name in others:
        factors[name] = float(10 ** fit["fits"][name]["law"].extrapolation_distance([n], [D])[0])
    if curve_law is not None:
        s1, d, a = schedule_terms(cfg, h["steps"], [h["steps"]])
        cl = float(curve_law.predict([n], s1, d, a)[0])
        clo, chi = (float(x[0]) for x in curve_law.predict_interval([n], s1, d, a))
        curve = {"predicted_loss": cl, "interval": [clo, chi], "S1": float(s1[0]),
                 "extrapolation_factor": float(10 ** curve_law.extrapolation_distance([n], s1)[0])}
        members["curve law"], factors["curve law"] = curve, curve["extrapolation_factor"]
    groups = {name: FORMS_GROUP for name in members if name != "curve law"}
    selection = combine_forecasts(members, groups) | {"extrapolation_factor": factors}
    return {"compute_flops": C, "N": n, "D": D, "lr": cfg.lr, "law": chosen,
            "predicted_loss": selection["predicted_loss"], "interval": selection["interval"],
            "interval_kind": "95% prediction (bootstrap parameters + residuals + rolling-origin extrapolation error; "
                             "combined over the laws with their spread)",
            "form": main, "other_laws": others, "extrapolation": extrapolation,
            **({"curve_law": curve} if curve is not None else {}),
            "selection": selection, "forecast_by": selection["forecast_by"]}


def _verify(spec, family, fit, chosen, curve_law, store, executor, checkpoint_dir, show_progress, log, out_dir, data):
    """Forecast the loss of a run at ``verify_multiplier`` x the largest budget, then train it. A run that
    needs more tokens than the corpus holds repeats it (``epochs``), which no law here models: warned."""
    C = spec.verify_multiplier * max(spec.budgets)
    law = fit["fits"][chosen]["law"]
    n_opt = optimal_size(law, C)
    shapes, counts = candidate_shapes(spec, data.vocab_size, family)
    i = nearest_shape(counts, float(n_opt), shapes=shapes)
    model = shapes[i]
    cfg = run_config(spec, model, C)
    n = float(counts[i])
    forecast = verification_forecast(fit, chosen, curve_law, cfg, n, C) | {"N_opt_fit": float(n_opt)}
    main, others, D = forecast["form"], forecast["other_laws"], forecast["D"]
    pred, (lo, hi) = forecast["predicted_loss"], forecast["interval"]
    train_tokens = int(data.train.size)
    forecast["epochs"] = D / train_tokens
    if D > train_tokens:
        forecast["warnings"] = [
            f"the verification run trains {D:,.0f} tokens, {D / train_tokens:.2f} epochs of the corpus's "
            f"{train_tokens:,} training tokens; the laws were fitted on runs that each saw the data at most "
            f"{law.data_range_['D_max'] / train_tokens:.2f} times and do not "
            "model repetition (a few epochs cost little, Muennighoff et al. 2023; more make this forecast optimistic)"]
        for w in forecast["warnings"]:
            log(f"warning: {w}")
    log(f"forecast before training (by the {forecast['forecast_by']}"
        + "".join(f"; {k} sd {v:.3f}, weight {forecast['selection']['weights'][k]:.2f}"
                  for k, v in forecast["selection"]["sd_log"].items()) + "): "
        f"{family} d{model.d_model}L{model.n_layers} (N={n:,.0f}, D={D:,.0f}, "
        f"C={C:.3g}, {forecast['extrapolation']['compute_over_max_fitted']:.1f}x the largest fitted C, lr {cfg.lr:.3g}): "
        f"loss {pred:.4f} [{lo:.4f}, {hi:.4f}]; alone: " + ", ".join(
            f"{k} {m['predicted_loss']:.4f}" for k, m in [(chosen, main), *others.items(), ("curve law", forecast.get("curve_law"))] if m))
    entry = LadderEntry(f"{family}-verify-C{C:.2g}-d{model.d_model}L{model.n_layers}", family, C, cfg, role="verify",
                        hp_rule=spec.hp_rule())
    store.add_decision("forecast", entry.run_id, "forecast", forecast)
    train_entries([entry], store, executor, checkpoint_dir, show_progress=show_progress, log=log)
    run = store.run(entry.run_id)
    forecast["run_id"] = entry.run_id
    forecast["status"] = run.status
    if run.status == "finished":
        actual = run.final_loss
        forecast["actual_loss"] = actual
        forecast["relative_error"] = pred / actual - 1.0
        forecast["inside_interval"] = bool(lo <= actual <= hi)
        for f in [main] + list(others.values()) + ([forecast["curve_law"]] if "curve_law" in forecast else []):
            f["relative_error"] = f["predicted_loss"] / actual - 1.0
            f["inside_interval"] = bool(f["interval"][0] <= actual <= f["interval"][1])
        log(f"verification: actual {actual:.4f} vs forecast {pred:.4f} ({forecast['relative_error']:+.2%}); inside the "
            f"interval: {forecast['inside_interval']}"
            + "; alone: " + ", ".join(f"{k} {m['relative_error']:+.2%}" for k, m in
                                      [(chosen, main), *others.items(), ("curve law", forecast.get("curve_law"))] if m))
        if out_dir is not None:
            forecast["figure"] = _verification_figure(store, run, forecast, out_dir)
    return forecast


def _verification_figure(store, run, forecast, out_dir) -> list[str]:
    from ..report.figures import _plt, _save
    plt = _plt()
    curve = store.curve(run.run_id)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot([p["flops"] for p in curve], [p["loss"] for p in curve], "o-", ms=3, label=f"{run.name} (validation)")
    C = forecast["compute_flops"]
    ax.errorbar([C], [forecast["predicted_loss"]],
                yerr=[[forecast["predicted_loss"] - forecast["interval"][0]], [forecast["interval"][1] - forecast["predicted_loss"]]],
                fmt="s", color="C3", capsize=4,
                label=f"forecast before training, by the {forecast['forecast_by']} (95% prediction interval)")
    if "curve_law" in forecast:
        c = forecast["curve_law"]
        ax.errorbar([C * 1.04], [c["predicted_loss"]], yerr=[[c["predicted_loss"] - c["interval"][0]], [c["interval"][1] - c["predicted_loss"]]],
                    fmt="D", color="C2", capsize=4, label="curve law forecast (95%)")
    ax.set_xscale("log")
    ax.set_xlabel("training compute C = 6·N_active·D [FLOPs]")
    ax.set_ylabel("validation loss [nats/byte]")
    ax.set_title(f"Verification at {forecast['extrapolation']['compute_over_max_fitted']:.1f}x the largest fitted budget: "
                 f"error {forecast['relative_error']:+.2%}", fontsize=9)
    ax.legend(fontsize=7)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return _save(fig, Path(out_dir), "verification")


def _moe_multiplier(store, spec, report) -> dict:
    """Compute multiplier of MoE over dense at equal active compute, with bootstrap intervals."""
    from ..comparison import moe_multiplier_intervals
    from ..laws import law_from_dict
    laws = {f: law_from_dict(store.fit(report["families"][f]["fits"]["chinchilla"]["fit_id"])["payload"])
            for f in ("dense", "moe")}
    return {"convention": "N = active parameters; C = 6 N_active D; multiplier = dense compute reaching the MoE "
                          "frontier loss / MoE compute",
            "budgets": moe_multiplier_intervals(laws["dense"], laws["moe"], spec.budgets)}
