"""Forecasts from the scores in a run store, and the evidence a release gate weighs.

A task whose stored models all have N and D and make a ladder (at least 6 final checkpoints whose tokens
per parameter vary at least 2x) gets the task-ladder forecast (:class:`~.tasklaws.TaskLadderForecast`);
any other task gets the compute-only two-step forecast (:class:`~.twostep.TwoStepForecast`).
"""
from __future__ import annotations

import warnings

import numpy as np

from .._names import FitError
from ..store import RunStore
from .metrics import BOUNDED
from .tasklaws import LadderPoints, TaskLadderForecast, chance_level, holdout_forecast
from .twostep import TwoStepForecast


def score_table(store: RunStore, task: str, metric: str) -> tuple[list[str], dict]:
    """The models of ``task`` with both ``task_loss`` and ``metric``, smallest compute first, and for each
    model its ``c``, ``n``, ``d``, ``loss`` and metric values. One point per model: its final checkpoint
    (``RUN@CKPT`` rows are not).

    Raises:
        ValueError: no model has both.
    """
    rows = [r for r in store.scores(task=task) if r["c"] and "@" not in r["model"]]
    by_model: dict = {}
    for r in rows:
        by_model.setdefault(r["model"], {"c": r["c"], "n": r["n"], "d": r["d"], "loss": r["loss"]})[r["metric"]] = r["value"]
    models = [m for m, v in by_model.items() if metric in v and "task_loss" in v]
    if not models:
        raise ValueError(f"no models with both task_loss and {metric} for task {task!r} in {store.path} (run "
                         "`scalinglab evaluate` or import scores)")
    models.sort(key=lambda m: by_model[m]["c"])
    return models, by_model


def two_step_forecast(store: RunStore, task: str, metric: str, n_bootstrap: int) -> tuple:
    """The compute-only two-step forecast of ``metric`` on ``task``, not yet fitted, and what to fit it on:
    ``(forecast, C, task_loss, score, N, D)``, with N and D None unless every model has both."""
    models, by_model = score_table(store, task, metric)
    cols = {k: [by_model[m][k] for m in models] for k in ("c", "task_loss", metric, "n", "d")}
    nd = all(cols["n"]) and all(cols["d"])
    return (TwoStepForecast(n_bootstrap=n_bootstrap, score_bounds=BOUNDED.get(metric)), cols["c"], cols["task_loss"],
            cols[metric], cols["n"] if nd else None, cols["d"] if nd else None)


def task_ladder_forecast(store: RunStore, task: str, metric: str, n_bootstrap: int, *, chance: float | None = None,
                         variant: str = "auto", n_origins: int = 3, holdout: int = 0) -> TaskLadderForecast | None:
    """The task-ladder forecast, fitted, when the stored models of ``task`` make a ladder (see the module
    docstring); None otherwise. With ``holdout``, ``holdout_`` holds the forecast of the ``holdout`` largest
    runs from the others (:func:`~.tasklaws.holdout_forecast`).

    Raises:
        ValueError: the ladder cannot be fitted (the message names the task and metric).
    """
    rows = store.scores(task=task)
    if not rows or not all(r["n"] and r["d"] for r in rows):
        return None
    try:
        pts = LadderPoints.from_score_rows(rows, metric)
        span = np.ptp(np.log(pts.D[pts.final] / pts.N[pts.final])) if pts.final.any() else 0.0
        if pts.final.sum() < 6 or span < np.log(2):    # one tokens-per-parameter ratio cannot separate N from D
            return None
        kw = dict(chance=chance_level(task) if chance is None else chance, n_bootstrap=n_bootstrap,
                  variant=variant, n_origins=n_origins)
        # bootstrap refits probe exponents where exp() overflows; those refits are counted as unconverged
        # and reported, so numpy's per-element warnings are not shown
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            fc = TaskLadderForecast(**kw).fit(pts)
            if holdout:
                fc.holdout_ = holdout_forecast(pts, holdout, **kw)
        return fc
    except (FitError, ValueError) as e:
        raise ValueError(f"{task} {metric}: {e}") from e


def ladder_evidence(fc: TaskLadderForecast, C: float, metric: str, N: float | None = None,
                    D: float | None = None) -> dict:
    """Gate evidence from a task-ladder forecast at ``N`` parameters and ``D`` tokens (else the compute-optimal
    ones of ``C``), naming the forecast. A task too noisy to forecast gives an interval over the whole score
    range, so the rule's on_uncertain applies."""
    p = fc.predict(N=N, D=D) if N is not None else fc.predict(C=C)
    used = {"method": "task-ladder", "variant": p["variant"], "N": p["N"], "D": p["D"], "status": p["status"],
            "predictability": p["predictability"], "backtest_mean_abs_error": p["backtest"]["mean_abs_error"]}
    if metric == "task_loss":
        return {"value": p["task_loss"], "interval": p["intervals"].get("task_loss"), "kind": "forecast", "forecast": used}
    if p["status"] == "too_noisy":
        return {"value": p["withheld"]["score"], "interval": [fc.chance, 1.0], "kind": "forecast (too noisy)", "forecast": used}
    return {"value": p["score"], "interval": p["intervals"].get("score"), "kind": "forecast", "forecast": used}


def gate_evidence(store: RunStore, rules, *, run: str | None = None, compute: float | None = None,
                  params: float | None = None, tokens: float | None = None, n_bootstrap: int = 1000) -> dict:
    """The evidence :func:`~.gates.decide` weighs, keyed by (task, metric): the scores measured for ``run`` (a
    run id or model name), or else forecasts for a planned run of ``compute`` FLOPs, from each rule's task
    ladder (at ``params`` and ``tokens`` where given) or its two-step forecast.

    Raises:
        ValueError, FitError: a forecast that cannot be made.
    """
    evidence = {}
    if run is not None:
        for r in store.scores():
            if r["run_id"] == run or r["model"] == run:
                evidence[(r["task"], r["metric"])] = {"value": r["value"], "interval": None, "kind": "measured"}
        return evidence
    for rule in rules:
        score_metric = rule.metric if rule.metric != "task_loss" else "exact_match"
        ladder = task_ladder_forecast(store, rule.task, score_metric, n_bootstrap)
        if ladder is not None:
            evidence[(rule.task, rule.metric)] = ladder_evidence(ladder, compute, rule.metric, params, tokens)
            continue
        fc, Cs, TL, S, Ns, Ds = two_step_forecast(store, rule.task, score_metric, n_bootstrap)
        fc.fit(Cs, TL, S, N=Ns, D=Ds)
        p = fc.predict(compute)
        if rule.metric == "task_loss":
            evidence[(rule.task, rule.metric)] = {"value": p["task_loss"], "interval": p["intervals"].get("task_loss"),
                                                  "kind": "forecast"}
        else:
            evidence[(rule.task, rule.metric)] = {"value": p["score"], "interval": p["intervals"].get("score"),
                                                  "kind": "forecast"}
    return evidence
