"""Fit laws to a set of runs: selection, conventions, hold-out checks, and what goes to the store.

This is what ``scalinglab fit`` calls; it is equally usable from Python::

    import scalinglab as sl
    runs = sl.parse_runs("runs.csv").runs
    report = sl.fit_runs(runs, laws=("chinchilla", "approach2"), holdout="largest")
"""
from __future__ import annotations

import dataclasses
import operator
import re
import warnings

import numpy as np

from ._units import parse_quantity
from .laws import (ChinchillaLaw, DataConstrainedLaw, EnvelopeApproach, FitError, InteractionLaw, IsoFLOPApproach,
                   KaplanNDLaw, OvertrainLaw, PowerLaw, group_budgets)
from ._names import BACKTEST_LAWS, DEFAULT_LAWS, HOLDOUT_HELP, LAW_CHOICES, ND_FORM_NAMES  # noqa: F401  (re-exported)
from .store import Run, RunStore

ND_FORMS = dict(zip(ND_FORM_NAMES, (ChinchillaLaw, OvertrainLaw, KaplanNDLaw, InteractionLaw)))


@dataclasses.dataclass
class Selection:
    """Which runs a fit uses and under which conventions."""

    n_convention: str = "n_total"
    flop_convention: str = "6ND"
    status: str = "finished"
    family: str | None = None
    holdout: str = "none"           # "none", "largest" or an expression (see holdout_mask_from)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def run_arrays(runs: list[Run], n_convention: str = "n_total", flop_convention: str = "6ND"):
    """N, D, C, loss arrays of usable runs (finished, with every quantity) and the runs themselves."""
    keep, skipped = [], 0
    for r in runs:
        if r.status != "finished":
            continue
        n, c = r.params(n_convention), r.flops(flop_convention)
        if n is None or r.tokens is None or r.final_loss is None:
            skipped += 1
            continue
        if c is None:
            c = 6.0 * n * r.tokens
        keep.append((r, n, r.tokens, c, r.final_loss))
    if skipped:
        warnings.warn(f"{skipped} finished run(s) lack {n_convention}, tokens or loss and were left out", RuntimeWarning,
                      stacklevel=2)
    if not keep:
        return [], *(np.array([]) for _ in range(4))
    rs, n, d, c, l = zip(*keep)
    return list(rs), np.array(n, float), np.array(d, float), np.array(c, float), np.array(l, float)


def holdout_mask(C: np.ndarray, budgets: np.ndarray | None = None) -> np.ndarray:
    """Runs of the largest compute budget (its IsoFLOP group), to be held out of the fit."""
    labels = group_budgets(C) if budgets is None else np.unique(budgets, return_inverse=True)[1]
    top = labels[np.argmax(C)]
    mask = labels == top
    if mask.all():
        raise FitError("hold-out: all runs share one compute budget; nothing left to fit on")
    return mask


_OPS = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt}
_FIELDS = {"N", "D", "C", "loss", "name", "family", "budget"}
_TERM = re.compile(r"^\s*(\w+)\s*(>=|<=|==|!=|>|<|~)\s*(.+?)\s*$")


def parse_holdout(expr: str):
    """Parse a hold-out expression into a function of (runs, N, D, C, L) -> boolean mask.

    Raises:
        ValueError: naming the part that could not be read and what is accepted.
    """
    text = (expr or "").strip()
    if text in ("", "none"):
        return lambda runs, N, D, C, L: np.zeros(len(runs), bool)
    if text == "largest":
        def largest(runs, N, D, C, L):
            budgets = np.array([r.budget if r.budget is not None else np.nan for r in runs])
            return holdout_mask(C, None if np.isnan(budgets).any() else budgets)
        return largest
    alternatives = []
    for alt in re.split(r"\s+or\s+", text):
        terms = []
        for part in re.split(r"\s+and\s+", alt):
            m = _TERM.match(part)
            if not m:
                raise ValueError(f"hold-out: cannot read {part.strip()!r}; accepted: {HOLDOUT_HELP}")
            field, op, value = m.groups()
            if field not in _FIELDS:
                raise ValueError(f"hold-out: unknown field {field!r} in {part.strip()!r}; fields: {', '.join(sorted(_FIELDS))}")
            value = value.strip().strip("'\"")
            if field in ("name", "family"):
                if op not in ("~", "==", "!="):
                    raise ValueError(f"hold-out: {field} takes ==, != or ~ (contains), not {op!r}")
                terms.append((field, op, value.lower()))
            else:
                if op == "~":
                    raise ValueError(f"hold-out: ~ (contains) applies to name and family, not {field}")
                try:
                    number = parse_quantity(value)
                except ValueError as e:
                    raise ValueError(f"hold-out: {part.strip()!r}: {e}") from None
                if not np.isfinite(number):
                    raise ValueError(f"hold-out: {part.strip()!r}: the number must be finite")
                terms.append((field, op, number))
        alternatives.append(terms)

    def mask(runs, N, D, C, L):
        cols = {"N": N, "D": D, "C": C, "loss": L,
                "budget": np.array([r.budget if r.budget is not None else np.nan for r in runs], float)}
        out = np.zeros(len(runs), bool)
        for terms in alternatives:
            m = np.ones(len(runs), bool)
            for field, op, value in terms:
                if field in ("name", "family"):
                    vals = [(getattr(r, field) or "").lower() for r in runs]
                    hit = np.array([value in v if op == "~" else (v == value) for v in vals], bool)
                    m &= ~hit if op == "!=" else hit
                else:
                    m &= _OPS[op](cols[field], value)
            out |= m
        return out
    return mask


def holdout_mask_from(expr: str, runs: list[Run], N, D, C, L) -> np.ndarray:
    """Boolean mask of the runs a hold-out expression selects (:func:`parse_holdout`)."""
    held = parse_holdout(expr)(runs, N, D, C, L)
    if held.all():
        raise FitError(f"hold-out {expr!r} selects all {len(runs)} runs; nothing left to fit on")
    return held


def _fit_one(name: str, N, D, C, L, runs, curves, n_bootstrap, seed, huber_delta, allow_bounds=False,
             bootstrap_kind: str = "residual"):
    if name in ND_FORMS:
        return ND_FORMS[name](n_bootstrap=n_bootstrap, seed=seed, huber_delta=huber_delta, bootstrap=bootstrap_kind,
                              allow_bounds=allow_bounds).fit(N, D, L)
    if name == "approach2":
        budgets = np.array([r.budget if r.budget is not None else np.nan for r in runs])
        budgets = None if np.isnan(budgets).any() else budgets
        return IsoFLOPApproach(n_bootstrap=n_bootstrap, seed=seed).fit(N, D, L, C=C, budgets=budgets)
    if name == "approach1":
        if not curves:
            raise FitError("Approach 1 needs training curves; these runs have none in the store")
        return EnvelopeApproach(n_bootstrap=n_bootstrap, seed=seed).fit(curves)
    if name.startswith("kaplan-"):
        var = name.split("-")[1].upper()
        X = {"N": N, "D": D, "C": C}[var]
        return PowerLaw(var, n_bootstrap=n_bootstrap, seed=seed, huber_delta=huber_delta, bootstrap=bootstrap_kind,
                        allow_bounds=allow_bounds).fit(X, L)
    if name == "data-constrained":
        U = np.array([r.unique_tokens if r.unique_tokens else np.nan for r in runs])
        if np.isnan(U).any():
            raise FitError("the data-constrained law needs unique_tokens for every run")
        return DataConstrainedLaw(n_bootstrap=n_bootstrap, seed=seed, huber_delta=huber_delta).fit(N, D, U, L)
    raise ValueError(f"unknown law {name!r}; choose from {', '.join(LAW_CHOICES)}")


def _predict_heldout(name, law, N, D, C, runs, level):
    if name in ND_FORMS:
        pred = law.predict(N, D)
        lo, hi = law.predict_interval(N, D, kind="prediction", level=level) if law.has_intervals else (pred * np.nan, pred * np.nan)
    elif name.startswith("kaplan-"):
        X = {"N": N, "D": D, "C": C}[law.variable]
        pred = law.predict(X)
        lo, hi = law.predict_interval(X, kind="prediction", level=level) if law.has_intervals else (pred * np.nan, pred * np.nan)
    elif name == "data-constrained":
        U = np.array([r.unique_tokens for r in runs], float)
        pred = law.predict(N, D, U)
        lo = hi = pred * np.nan
    else:
        return None
    return pred, lo, hi


def _extrapolation_summary(law) -> dict | None:
    ex = getattr(law, "extrapolation_", None)
    if not ex:
        return None
    return {k: v for k, v in ex.items() if k not in ("predictions", "skipped")}


def rank_forms(fits: dict) -> list[dict]:
    """Rank fitted (N, D) forms by their rolling-origin backtest error on the fitted runs.

    Only the cuts every complete form (one that fitted the most cuts) could fit are compared; a form
    that fails a cut the others fit ranks last and does not shrink the comparison of the others. The
    score is the mean absolute log-error of the backtest predictions. The recommended form
    (first) is the one with the fewest parameters among those within one standard error of the best
    (the paired difference per cut, cuts being the independent units): extra terms must earn their
    place in the backtest, not merely tie.
    """
    preds, sizes = {}, {}
    for name, entry in fits.items():
        law = entry.get("law")
        ex = getattr(law, "extrapolation_", None)
        if ex and ex.get("predictions"):
            preds[name] = ex["predictions"]
            sizes[name] = law.min_runs - 1
    if not preds:
        return []
    cut_sets = {name: {(p["axis"], p["fitted_max"]) for p in rows} for name, rows in preds.items()}
    most = max(len(c) for c in cut_sets.values())
    common_set = set.intersection(*(c for c in cut_sets.values() if len(c) == most))
    common = sorted(common_set)
    per_cut = {name: np.array([np.mean([abs(p["log_residual"]) for p in rows if (p["axis"], p["fitted_max"]) == c])
                               for c in common]) for name, rows in preds.items() if len(cut_sets[name]) == most}
    ranking = []
    for name, rows in preds.items():
        chosen = [p for p in rows if (p["axis"], p["fitted_max"]) in common_set]
        err = float(np.mean([abs(p["log_residual"]) for p in chosen])) if chosen else float("inf")
        ranking.append({"law": name, "backtest_mean_abs_log_error": err, "n_predictions": len(chosen),
                        "n_cuts_compared": len(common), "n_cuts_fitted": len(cut_sets[name]),
                        "complete": len(cut_sets[name]) == most, "n_params": sizes[name]})
    ranking.sort(key=lambda r: (not r["complete"], r["backtest_mean_abs_log_error"]))
    best = ranking[0]
    for r in ranking:
        if r["law"] not in per_cut:     # incomplete: ranked last, not compared
            r["excess_over_best"], r["excess_se"], r["within_one_se"] = None, None, False
            continue
        d = per_cut[r["law"]] - per_cut[best["law"]]
        se = float(np.std(d, ddof=1) / np.sqrt(d.size)) if d.size > 1 else 0.0
        r["excess_over_best"] = float(d.mean()) if d.size else None
        r["excess_se"] = se
        r["within_one_se"] = bool(r["complete"] and d.size and d.mean() <= se)
    pick = min((r for r in ranking if r["within_one_se"]), key=lambda r: (r["n_params"], r["backtest_mean_abs_log_error"]),
               default=best)
    ranking.remove(pick)
    return [pick] + ranking


def fit_runs(runs: list[Run], laws=DEFAULT_LAWS, *, selection: Selection | None = None, n_bootstrap: int = 1000,
             seed: int = 0, huber_delta: float = 1e-3, level: float = 0.95, curves: dict | None = None,
             allow_bounds: bool = False, bootstrap_kind: str = "residual") -> dict:
    """Fit each named law to ``runs``; returns ``{"selection", "n_runs", "fits": {name: {...}}, "holdout"}``.

    ``"auto"`` among ``laws`` fits every (N, D) form and names the one with the smallest rolling-origin
    backtest error on the fitted runs as ``recommended`` (held-out runs never enter the choice).
    A law that cannot be fitted appears with ``"error"`` and its diagnostics instead of numbers
    (``allow_bounds=True`` keeps fits whose parameters end on a bound, flagged in ``at_bounds``).
    Each successful entry holds the fitted object under ``"law"`` (not JSON) and its summary.
    """
    selection = selection or Selection()
    laws = list(laws)
    auto = "auto" in laws
    if auto:
        laws = [x for x in laws if x != "auto"]
        laws = list(ND_FORMS) + [x for x in laws if x not in ND_FORMS]
    runs, N, D, C, L = run_arrays(runs, selection.n_convention, selection.flop_convention)
    report = {"selection": selection.to_dict(), "n_runs": len(runs), "fits": {}, "holdout": None}
    if not runs:
        raise FitError("no finished runs with N, D and loss to fit")
    held = holdout_mask_from(selection.holdout, runs, N, D, C, L)
    fit_mask = ~held
    if held.any():
        report["holdout"] = {"expression": selection.holdout, "n_held_out": int(held.sum()),
                             "C_held_out": float(np.exp(np.log(C[held]).mean())),
                             "C_max_fitted": float(C[fit_mask].max()), "results": {}}
    elif selection.holdout not in ("none", ""):
        raise FitError(f"hold-out {selection.holdout!r} selects no runs")
    report["n_fitted"] = int(fit_mask.sum())
    fit_runs_ = [r for r, m in zip(runs, fit_mask) if m]
    fit_curves = None
    if curves:
        fit_curves = [dict(curves[r.run_id], N=n) for r, n, m in zip(runs, N, fit_mask) if m and r.run_id in curves]
    for name in laws:
        try:
            law = _fit_one(name, N[fit_mask], D[fit_mask], C[fit_mask], L[fit_mask], fit_runs_, fit_curves,
                           n_bootstrap, seed, huber_delta, allow_bounds, bootstrap_kind)
        except FitError as e:
            report["fits"][name] = {"error": str(e), "diagnostics": e.diagnostics}
            continue
        entry = {"law": law, "params": law.all_params(), "intervals": law.intervals(level),
                 "objective": getattr(law, "objective_", None), "data_range": getattr(law, "data_range_", {}),
                 "n_bootstrap": n_bootstrap}
        if getattr(law, "bootstrap_params_", None) is not None and hasattr(law, "bootstrap_dropped_"):
            entry["bootstrap_dropped"] = law.bootstrap_dropped_
            if law.bootstrap_dropped_ > 0.1 * n_bootstrap:
                entry.setdefault("warnings", []).append(
                    f"{law.bootstrap_dropped_} of {n_bootstrap} bootstrap refits did not converge and were dropped: "
                    "some parameter (often E) is barely determined by these runs; the intervals use the rest")
        ex = _extrapolation_summary(law)
        if ex is not None:
            entry["extrapolation"] = ex
            if ex.get("misspecified"):
                entry.setdefault("warnings", []).append(
                    f"rolling-origin backtests on the fitted runs miss by more than parameter and noise uncertainty "
                    f"explain (kappa = {ex['kappa']:.3g} per decade, p = {ex['p_value']:.2g}): the law is likely "
                    "misspecified; prediction intervals are widened by kappa * log10(extrapolation factor)")
        if getattr(law, "diagnostics_", {}).get("at_bounds"):
            entry["at_bounds"] = law.diagnostics_["at_bounds"]
        if hasattr(law, "budgets_"):
            entry["budgets"] = [{k: v for k, v in b.items() if k not in ("N", "loss", "coef")} for b in law.budgets_]
            entry["dropped_budgets"] = getattr(law, "dropped_budgets_", [])
            for b in entry["dropped_budgets"]:
                entry.setdefault("warnings", []).append(f"IsoFLOP budget C={b['C']:.3g} dropped: {b['reason']}")
        report["fits"][name] = entry
        if report["holdout"] is not None:
            out = _predict_heldout(name, law, N[held], D[held], C[held], [r for r, m in zip(runs, held) if m], level)
            if out is not None:
                pred, lo, hi = out
                actual = L[held]
                rel = pred / actual - 1
                factors = _factors(law, N[held], D[held], C[held])
                report["holdout"]["results"][name] = {
                    "runs": [{"run_id": r.run_id, "name": r.name, "N": float(n), "D": float(d), "C": float(c),
                              "extrapolation_factor": f, "actual": float(a), "predicted": float(p),
                              "relative_error": float(e), "interval": [float(x), float(y)],
                              "inside": bool(x <= a <= y) if np.isfinite(x) else None}
                             for r, n, d, c, f, a, p, e, x, y in zip([r for r, m in zip(runs, held) if m], N[held], D[held],
                                                                     C[held], factors, actual, pred, rel, lo, hi)],
                    "mean_abs_rel_error": float(np.mean(np.abs(rel))), "max_abs_rel_error": float(np.max(np.abs(rel))),
                    "coverage": _coverage(lo, hi, actual)}
    if auto:
        ranking = rank_forms({k: v for k, v in report["fits"].items() if k in ND_FORMS})
        report["ranking"] = ranking
        report["recommended"] = ranking[0]["law"] if ranking else None
    return report


def _factors(law, N, D, C) -> list[float | None]:
    if hasattr(law, "extrapolation_distance") and getattr(law, "data_range_", None):
        X = {"N": N, "D": D, "C": C}
        u = law.extrapolation_distance(*[X[v] for v in law.variables])
        return [float(10 ** x) for x in u]
    return [None] * len(N)


def _coverage(lo, hi, actual) -> float | None:
    ok = np.isfinite(lo) & np.isfinite(hi)
    return float(np.mean((lo[ok] <= actual[ok]) & (actual[ok] <= hi[ok]))) if ok.any() else None


FACTOR_BINS = (1.0, 2.0, 4.0, 10.0, 30.0, 100.0, np.inf)


def _factor_bin(f: float) -> str:
    for lo, hi in zip(FACTOR_BINS[:-1], FACTOR_BINS[1:]):
        if f < hi:
            return f"{lo:g}-{hi:g}x" if np.isfinite(hi) else f">={lo:g}x"
    return f">={FACTOR_BINS[-2]:g}x"


def summarise_predictions(rows: list[dict], level: float) -> dict:
    """Error, interval coverage (with its binomial standard error) and median half-width, overall and
    by extrapolation-factor bin."""
    def stats(sel):
        rel = np.array([r["relative_error"] for r in sel])
        inside = np.array([r["inside"] for r in sel if r["inside"] is not None], bool)
        half = np.array([(r["interval"][1] - r["interval"][0]) / 2 / r["predicted"] for r in sel
                         if r["inside"] is not None])
        cov = float(inside.mean()) if inside.size else None
        return {"n": len(sel), "mean_abs_rel_error": float(np.mean(np.abs(rel))),
                "max_abs_rel_error": float(np.max(np.abs(rel))), "coverage": cov,
                "coverage_se": None if cov is None else float(np.sqrt(cov * (1 - cov) / inside.size)),
                "nominal": level, "median_rel_half_width": float(np.median(half)) if half.size else None}
    if not rows:
        return {"overall": None, "by_factor": []}
    by = []
    for lo, hi in zip(FACTOR_BINS[:-1], FACTOR_BINS[1:]):
        sel = [r for r in rows if lo <= r["extrapolation_factor"] < hi]
        if sel:
            by.append(dict(stats(sel), bin=_factor_bin(lo), factor_min=lo, factor_max=None if not np.isfinite(hi) else hi))
    return {"overall": stats(rows), "by_factor": by}


def backtest_runs(runs: list[Run], laws=("chinchilla",), *, selection: Selection | None = None, axis: str = "C",
                  n_bootstrap: int = 200, seed: int = 0, huber_delta: float = 1e-3, level: float = 0.95,
                  max_cuts: int = 6, bootstrap_kind: str = "residual") -> dict:
    """Rolling-origin backtest: for each cut along ``axis`` (``C``, ``N`` or ``both``), fit each law on the
    runs up to the cut exactly as ``fit`` would (bootstrap and its own extrapolation calibration, which
    sees only those runs) and predict every run beyond it.

    Returns:
        ``{"selection", "n_runs", "axis", "level", "cuts", "results": {law: {"predictions", "summary",
        "failed_cuts"}}}``; each prediction has the cut, the run, ``extrapolation_factor``, ``predicted``,
        ``actual``, ``relative_error``, ``interval`` and ``inside``.
    """
    from .laws._extrapolation import origin_cuts
    selection = selection or Selection()
    if axis not in ("C", "N", "both"):
        raise ValueError(f"axis must be C, N or both, not {axis!r}")
    bad = [x for x in laws if x not in BACKTEST_LAWS]
    if bad:
        raise ValueError(f"backtest supports {', '.join(BACKTEST_LAWS)}; not {', '.join(bad)}")
    runs, N, D, C, L = run_arrays(runs, selection.n_convention, selection.flop_convention)
    if not runs:
        raise FitError("no finished runs with N, D and loss to backtest")
    cols = {"C": C, "N": N}
    chosen = cols if axis == "both" else {axis: cols[axis]}
    min_fit = min(_fit_one_min_runs(name) for name in laws) + 2
    cuts = origin_cuts(chosen, min_fit_runs=min_fit, max_cuts=max_cuts)
    if not cuts:
        raise FitError(f"backtest: the runs form too few groups along {axis} for a rolling origin (need at least 2 "
                       f"groups, the first with >= {min_fit} runs)", {"n_runs": len(runs)})
    out = {"selection": selection.to_dict(), "n_runs": len(runs), "axis": axis, "level": level,
           "cuts": [{"axis": c.axis, "fitted_max": c.fitted_max, "n_fit": int(c.fit.sum()), "n_test": int(c.test.sum())}
                    for c in cuts], "results": {}}
    for name in laws:
        rows, failed = [], []
        for cut in cuts:
            sub = [r for r, m in zip(runs, cut.fit) if m]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    law = _fit_one(name, N[cut.fit], D[cut.fit], C[cut.fit], L[cut.fit], sub, None, n_bootstrap, seed,
                                   huber_delta, bootstrap_kind=bootstrap_kind)
                except FitError as e:
                    failed.append({"axis": cut.axis, "fitted_max": cut.fitted_max, "error": str(e)})
                    continue
            t = cut.test
            pred, lo, hi = _predict_heldout(name, law, N[t], D[t], C[t], [r for r, m in zip(runs, t) if m], level)
            factors = _factors(law, N[t], D[t], C[t])
            for r, n, d, c, f, a, p, x, y in zip([r for r, m in zip(runs, t) if m], N[t], D[t], C[t], factors, L[t],
                                                 pred, lo, hi):
                rows.append({"cut_axis": cut.axis, "fitted_max": cut.fitted_max, "run_id": r.run_id, "name": r.name,
                             "N": float(n), "D": float(d), "C": float(c), "extrapolation_factor": f,
                             "actual": float(a), "predicted": float(p), "relative_error": float(p / a - 1),
                             "interval": [float(x), float(y)], "inside": bool(x <= a <= y) if np.isfinite(x) else None})
        out["results"][name] = {"predictions": rows, "summary": summarise_predictions(rows, level), "failed_cuts": failed}
    return out


def _fit_one_min_runs(name: str) -> int:
    if name in ND_FORMS:
        return ND_FORMS[name](n_bootstrap=0).min_runs
    return PowerLaw(name.split("-")[1].upper(), n_bootstrap=0).min_runs


def predict_loss(law, N, D, *, level: float = 0.95) -> dict:
    """Point prediction, confidence and prediction intervals of the loss at (N, D), with what it
    extrapolates from. ``law`` is a fitted (N, D) law or a preset (point only, no intervals)."""
    N, D = np.atleast_1d(np.asarray(N, float)), np.atleast_1d(np.asarray(D, float))
    point = np.asarray(law.predict(N, D), float) * np.ones_like(N)
    has = getattr(law, "has_intervals", False)
    ci = law.predict_interval(N, D, kind="confidence", level=level) if has else None
    pi = law.predict_interval(N, D, kind="prediction", level=level) if has else None
    dr = getattr(law, "data_range_", {}) or {}
    ex = getattr(law, "extrapolation_", None) or {}
    factors = _factors(law, N, D, 6.0 * N * D)
    rows = []
    for i in range(N.size):
        f = factors[i]
        row = {"N": float(N[i]), "D": float(D[i]), "C": float(6 * N[i] * D[i]), "tokens_per_param": float(D[i] / N[i]),
               "loss": float(point[i]),
               "confidence_interval": None if ci is None else [float(ci[0][i]), float(ci[1][i])],
               "prediction_interval": None if pi is None else [float(pi[0][i]), float(pi[1][i])],
               "extrapolation_factor": f,
               "beyond_calibration": bool(f is not None and ex.get("calibrated_to_factor") is not None
                                          and f > ex["calibrated_to_factor"] * (1 + 1e-9))}
        rows.append(row)
    return {"level": level, "predictions": rows, "fitted_on": dr,
            "extrapolation_error": {k: v for k, v in ex.items() if k not in ("predictions", "skipped")} or None,
            "from_data": bool(dr)}


def save_fits(store: RunStore, report: dict, source: str) -> dict[str, int]:
    """Write every successful fit of a :func:`fit_runs` report to the store; returns law -> fit_id."""
    ids = {}
    for name, entry in report["fits"].items():
        if "error" in entry:
            continue
        law = entry["law"]
        payload = law.to_dict() if hasattr(law, "to_dict") else {"law": name, "params": entry["params"]}
        payload["selection"] = report["selection"]
        payload["fit_name"] = name
        ho = report.get("holdout") or {}
        selection = dict(report["selection"], source=source, n_runs=report["n_runs"],
                         n_fitted=report.get("n_fitted", report["n_runs"]), n_held_out=ho.get("n_held_out", 0))
        ids[name] = store.add_fit(name, selection, entry["params"], entry["intervals"], entry["objective"], payload)
        entry["fit_id"] = ids[name]
    return ids


def report_json(report: dict) -> dict:
    """The JSON-safe part of a :func:`fit_runs` report (drops the law objects)."""
    out = {k: v for k, v in report.items() if k != "fits"}
    out["fits"] = {name: {k: v for k, v in entry.items() if k != "law"} for name, entry in report["fits"].items()}
    return out
