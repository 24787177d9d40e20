"""The analyses behind ``scalinglab passk``, ``majk``, ``verifier`` and ``sample``: per (task, model)
group of samples, from a file or the store."""
from __future__ import annotations

import numpy as np

from ..laws import FitError
from .estimators import best_of_n, coverage_curve, majority_at_k, pass_at_k
from .laws import CoverageLaw
from .verifier import (accuracy_ceiling, accuracy_vs_attempts, false_positive_rates, optimal_attempts, simulate,
                       strategies_at_equal_samples)


def passk_report(groups: dict, ks, *, n_bootstrap: int = 1000, clamp: bool = False, target: float | None = None,
                 level: float = 0.95) -> dict:
    """Coverage (mean pass@k) with bootstrap intervals over problems, and the fitted coverage law."""
    out = {}
    for (task, model), g in sorted(groups.items()):
        cov = coverage_curve(g["n"], g["c"], ks, n_bootstrap=n_bootstrap, level=level, clamp=clamp)
        boot = cov.pop("bootstrap", None)
        entry = {"task": task, "model": model, **cov}
        try:
            law = CoverageLaw(level=level).fit(cov["k"], cov["coverage"], boot)
            entry["coverage_law"] = {"params": law.params_, "intervals": law.intervals(), "form": "coverage = exp(a k^b)"}
            if target is not None:
                entry["coverage_law"]["samples_for_target"] = law.samples_for(target)
        except FitError as e:
            entry["coverage_law"] = {"error": str(e)}
        flops = _mean_flops(g)
        if flops is not None:
            entry["inference_flops_per_sample"] = flops
            entry["inference_flops"] = [k * flops for k in cov["k"]]
        out[f"{task}/{model}"] = entry
    return {"groups": out}


def _mean_flops(g) -> float | None:
    vals = [r["flops"] for rs in g["samples"].values() for r in rs if r.get("flops") is not None]
    return float(np.mean(vals)) if vals else None


def vote_report(groups: dict, ks, *, n_resamples: int = 2000, seed: int = 0) -> dict:
    """maj@k, score-weighted majority and best-of-k by score, beside pass@k."""
    out = {}
    rng = np.random.default_rng(seed)
    for (task, model), g in sorted(groups.items()):
        if not g["samples"]:
            out[f"{task}/{model}"] = {"error": "per-sample rows (answers) are needed for majority voting; got counts only"}
            continue
        res = {"task": task, "model": model, "k": list(ks), "pass_at_k": [], "maj_at_k": []}
        has_scores = all(r["score"] is not None for rs in g["samples"].values() for r in rs)
        if has_scores:
            res["weighted_maj_at_k"], res["best_of_k"] = [], []
        probs = [p for p in g["problems"] if p in g["samples"]]
        for k in ks:
            usable = [p for p in probs if len(g["samples"][p]) >= k]
            if not usable:
                raise ValueError(f"k={k} exceeds the samples of every problem in {task}/{model}")
            maj, wmaj, bon = [], [], []
            pk = pass_at_k([len(g["samples"][p]) for p in usable],
                           [sum(bool(r["correct"]) for r in g["samples"][p]) for p in usable], k)
            for p in usable:
                rs = g["samples"][p]
                ans = [r["answer"] if r["answer"] is not None else f"<none:{r['sample_id']}>" for r in rs]
                cor = [bool(r["correct"]) for r in rs]
                maj.append(majority_at_k(ans, cor, k, n_resamples=n_resamples, rng=rng))
                if has_scores:
                    sc = [r["score"] for r in rs]
                    wmaj.append(majority_at_k(ans, cor, k, scores=sc, n_resamples=n_resamples, rng=rng))
                    bon.append(best_of_n(cor, sc, k, n_resamples=n_resamples, rng=rng))
            res["pass_at_k"].append(float(np.mean(pk)))
            res["maj_at_k"].append(float(np.mean(maj)))
            if has_scores:
                res["weighted_maj_at_k"].append(float(np.mean(wmaj)))
                res["best_of_k"].append(float(np.mean(bon)))
        out[f"{task}/{model}"] = res
    return {"groups": out}


def verifier_report(groups: dict, *, tpr: float, fprs, cost: float, k_max: int, simulate_trials: int = 2000,
                    seed: int = 0, fpr_unsolved: float | None = None, abstain: bool = True, flat_tolerance: float = 0.01,
                    compare: bool = False, n_resamples: int = 500) -> dict:
    """Accuracy vs attempts with an imperfect verifier: closed form, simulation, ceiling, best budget
    (or abstaining) with its flat region. With ``fpr_unsolved`` each listed FPR is the rate on problems
    the model always solves and ``fpr_unsolved`` the rate where it never does (linear in between,
    per problem). With ``compare``: verifier vs best-of-n vs majority vote (from the sampled answers)
    vs pass@k at equal samples."""
    ks = np.unique(np.geomspace(1, k_max, 24).astype(int))
    out = {}
    rng = np.random.default_rng(seed)
    for (task, model), g in sorted(groups.items()):
        p = g["c"] / g["n"]
        entry = {"task": task, "model": model, "k": ks.tolist(), "tpr": tpr, "false_positive_cost": cost,
                 "fpr_unsolved": fpr_unsolved, "by_fpr": {}}
        if compare:
            kc = [int(k) for k in 2 ** np.arange(int(np.log2(min(k_max, g["n"].min()))) + 1)]
            entry["compare_k"] = kc
            maj = None
            if g["samples"] and all(len(g["samples"].get(q, ())) for q in g["problems"]):
                maj = np.array([[majority_at_k([r["answer"] if r["answer"] is not None else f"<none:{r['sample_id']}>"
                                                for r in g["samples"][q]], [bool(r["correct"]) for r in g["samples"][q]],
                                               k, n_resamples=n_resamples, rng=rng) for k in kc] for q in g["problems"]])
        for fpr in fprs:
            f = false_positive_rates(p, solved=fpr, unsolved=fpr_unsolved) if fpr_unsolved is not None else fpr
            acc = accuracy_vs_attempts(p, ks, tpr, f)
            sim = simulate(p, ks, tpr, f, n_trials=simulate_trials, seed=seed)
            entry["by_fpr"][str(fpr)] = {"accuracy": acc.tolist(), "simulated_accuracy": sim["correct"].tolist(),
                                         "ceiling": accuracy_ceiling(p, tpr, f),
                                         "optimal": optimal_attempts(p, tpr, f, cost, k_max, abstain=abstain,
                                                                     flat_tolerance=flat_tolerance)}
            if compare:
                entry["by_fpr"][str(fpr)]["strategies"] = strategies_at_equal_samples(p, kc, tpr, f, cost, majority=maj)
        out[f"{task}/{model}"] = entry
    return {"groups": out}


def compute_frontier(entries: list[dict], budgets=None) -> list[dict]:
    """Best (model, samples) at each inference-FLOP budget, from per-model coverage curves with
    ``inference_flops_per_sample`` (an oracle verifier picks a correct sample when one exists)."""
    entries = [e for e in entries if e.get("inference_flops_per_sample")]
    if not entries:
        return []
    lo = min(e["inference_flops_per_sample"] for e in entries)
    hi = max(e["inference_flops"][-1] for e in entries)
    budgets = np.geomspace(lo, hi, 16) if budgets is None else budgets
    out = []
    for B in budgets:
        best = None
        for e in entries:
            ks, cov = np.array(e["k"]), np.array(e["coverage"])
            affordable = ks * e["inference_flops_per_sample"] <= B * (1 + 1e-9)
            if not affordable.any():
                continue
            i = np.flatnonzero(affordable)[-1]
            if best is None or cov[i] > best["coverage"]:
                best = {"budget_flops": float(B), "model": e["model"], "samples": int(ks[i]), "coverage": float(cov[i])}
        if best:
            out.append(best)
    return out
