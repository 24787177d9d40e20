"""Fit laws to a set of runs: selection, conventions, hold-out checks, and what goes to the store.

This is what ``scalinglab fit`` calls; it is equally usable from Python::

    import scalinglab as sl
    runs = sl.parse_runs("runs.csv").runs
    report = sl.fit_runs(runs, laws=("chinchilla", "approach2"), holdout="largest")
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from .laws import (ChinchillaLaw, DataConstrainedLaw, EnvelopeApproach, FitError, IsoFLOPApproach, PowerLaw,
                   group_budgets)
from .store import Run, RunStore

LAW_CHOICES = ("chinchilla", "approach1", "approach2", "kaplan-n", "kaplan-d", "kaplan-c", "data-constrained")
DEFAULT_LAWS = ("chinchilla", "approach2")


@dataclasses.dataclass
class Selection:
    """Which runs a fit uses and under which conventions."""

    n_convention: str = "n_total"
    flop_convention: str = "6ND"
    status: str = "finished"
    family: str | None = None
    holdout: str = "none"           # "none" or "largest"

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


def _fit_one(name: str, N, D, C, L, runs, curves, n_bootstrap, seed, huber_delta, allow_bounds=False):
    if name == "chinchilla":
        return ChinchillaLaw(n_bootstrap=n_bootstrap, seed=seed, huber_delta=huber_delta,
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
        return PowerLaw(var, n_bootstrap=n_bootstrap, seed=seed, huber_delta=huber_delta,
                        allow_bounds=allow_bounds).fit(X, L)
    if name == "data-constrained":
        U = np.array([r.unique_tokens if r.unique_tokens else np.nan for r in runs])
        if np.isnan(U).any():
            raise FitError("the data-constrained law needs unique_tokens for every run")
        return DataConstrainedLaw(n_bootstrap=n_bootstrap, seed=seed, huber_delta=huber_delta).fit(N, D, U, L)
    raise ValueError(f"unknown law {name!r}; choose from {', '.join(LAW_CHOICES)}")


def _predict_heldout(name, law, N, D, C, runs, level):
    if name == "chinchilla":
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


def fit_runs(runs: list[Run], laws=DEFAULT_LAWS, *, selection: Selection | None = None, n_bootstrap: int = 1000,
             seed: int = 0, huber_delta: float = 1e-3, level: float = 0.95, curves: dict | None = None,
             allow_bounds: bool = False) -> dict:
    """Fit each named law to ``runs``; returns ``{"selection", "n_runs", "fits": {name: {...}}, "holdout"}``.

    A law that cannot be fitted appears with ``"error"`` and its diagnostics instead of numbers
    (``allow_bounds=True`` keeps fits whose parameters end on a bound, flagged in ``at_bounds``).
    Each successful entry holds the fitted object under ``"law"`` (not JSON) and its summary.
    """
    selection = selection or Selection()
    runs, N, D, C, L = run_arrays(runs, selection.n_convention, selection.flop_convention)
    report = {"selection": selection.to_dict(), "n_runs": len(runs), "fits": {}, "holdout": None}
    if not runs:
        raise FitError("no finished runs with N, D and loss to fit")
    fit_mask = np.ones(len(runs), bool)
    if selection.holdout == "largest":
        budgets = np.array([r.budget if r.budget is not None else np.nan for r in runs])
        held = holdout_mask(C, None if np.isnan(budgets).any() else budgets)
        fit_mask = ~held
        report["holdout"] = {"n_held_out": int(held.sum()), "C_held_out": float(np.exp(np.log(C[held]).mean())),
                             "C_max_fitted": float(C[fit_mask].max()), "results": {}}
    elif selection.holdout != "none":
        raise ValueError(f"holdout must be 'none' or 'largest', not {selection.holdout!r}")
    fit_runs_ = [r for r, m in zip(runs, fit_mask) if m]
    fit_curves = None
    if curves:
        fit_curves = [dict(curves[r.run_id], N=n) for r, n, m in zip(runs, N, fit_mask) if m and r.run_id in curves]
    for name in laws:
        try:
            law = _fit_one(name, N[fit_mask], D[fit_mask], C[fit_mask], L[fit_mask], fit_runs_, fit_curves,
                           n_bootstrap, seed, huber_delta, allow_bounds)
        except FitError as e:
            report["fits"][name] = {"error": str(e), "diagnostics": e.diagnostics}
            continue
        entry = {"law": law, "params": law.all_params(), "intervals": law.intervals(level),
                 "objective": getattr(law, "objective_", None), "data_range": getattr(law, "data_range_", {}),
                 "n_bootstrap": n_bootstrap}
        if getattr(law, "diagnostics_", {}).get("at_bounds"):
            entry["at_bounds"] = law.diagnostics_["at_bounds"]
        if hasattr(law, "budgets_"):
            entry["budgets"] = [{k: v for k, v in b.items() if k not in ("N", "loss", "coef")} for b in law.budgets_]
            edges = [b["C"] for b in law.budgets_ if b["edge"]]
            if edges:
                entry["warnings"] = [f"IsoFLOP minimum at the grid edge for budget(s) {', '.join(f'{c:.3g}' for c in edges)}"]
        report["fits"][name] = entry
        if report["holdout"] is not None:
            held = ~fit_mask
            out = _predict_heldout(name, law, N[held], D[held], C[held], [r for r, m in zip(runs, held) if m], level)
            if out is not None:
                pred, lo, hi = out
                actual = L[held]
                rel = pred / actual - 1
                report["holdout"]["results"][name] = {
                    "runs": [{"run_id": r.run_id, "name": r.name, "N": float(n), "D": float(d), "actual": float(a),
                              "predicted": float(p), "interval": [float(x), float(y)],
                              "inside": bool(x <= a <= y) if np.isfinite(x) else None}
                             for r, n, d, a, p, x, y in zip([r for r, m in zip(runs, held) if m], N[held], D[held],
                                                            actual, pred, lo, hi)],
                    "mean_abs_rel_error": float(np.mean(np.abs(rel))), "max_abs_rel_error": float(np.max(np.abs(rel)))}
    return report


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
        selection = dict(report["selection"], source=source, n_runs=report["n_runs"])
        ids[name] = store.add_fit(name, selection, entry["params"], entry["intervals"], entry["objective"], payload)
        entry["fit_id"] = ids[name]
    return ids


def report_json(report: dict) -> dict:
    """The JSON-safe part of a :func:`fit_runs` report (drops the law objects)."""
    out = {k: v for k, v in report.items() if k != "fits"}
    out["fits"] = {name: {k: v for k, v in entry.items() if k != "law"} for name, entry in report["fits"].items()}
    return out
