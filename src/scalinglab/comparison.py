"""Does a recipe change keep paying as compute grows? Paired IsoFLOP ladders of a baseline and candidates.

Each recipe's runs are fitted with the Chinchilla law ``L(N, D) = E + A/N^alpha + B/D^beta`` (N = active
parameters, ``C = 6 N D``), whose compute-optimal frontier is ``L*(C) = E + k C^-a`` with
``a = alpha beta / (alpha + beta)`` (Hoffmann et al. 2022, https://arxiv.org/abs/2203.15556, Eq. 4).
The **compute-equivalent multiplier** of a candidate at compute ``C`` is the baseline compute that reaches the
candidate's frontier loss, over ``C``: ``m(C) = C_base(L*_cand(C)) / C`` (> 1: the candidate is better).

* A constant gain is a flat ``m(C)``; a change of exponent bends it. The verdict comes from the interval
  on the slope ``s = d log m / d log C`` over the ladder's budgets (the secant from the smallest to the
  largest budget): ``growing gain`` (interval above 0), ``shrinking gain`` (below 0), ``constant gain``
  (covers 0 while the interval of the mean log-multiplier over the budgets excludes 0), otherwise
  ``not distinguishable at this range``.
* Intervals: a bootstrap that resamples runs **jointly** -- within each budget, one multinomial draw
  over ladder positions (size rank within the budget) is applied to every recipe, so what the paired
  ladders share (budgets, data order, seeds) stays paired; each resample refits every law, warm-started
  at its point estimate (:meth:`~scalinglab.laws.ChinchillaLaw.refit_resamples`).
* A second, law-free estimate: the baseline's frontier as a power law through its IsoFLOP minima (lowest
  loss per budget), read at each candidate minimum. It carries the verdict where a law cannot be fitted
  (a ladder with fewer runs than the law has parameters to spare).
* Losses must be in one unit: pass ``loss_scale`` per recipe (bits per byte where tokenizers differ).
"""
from __future__ import annotations

import math

import numpy as np

from .analysis import run_arrays
from .laws import ChinchillaLaw, FitError, group_budgets, percentile_interval
from .store import Run

MULTIPLIER_CAP = 1e6     # a candidate below the baseline's fitted floor E: the baseline never gets there
VERDICTS = ("constant gain", "growing gain", "shrinking gain", "not distinguishable at this range")


# ------------------------------------------------------------------------------------------- frontier
def frontier_params(p: dict) -> dict:
    """``(E, k, a)`` of the compute-optimal frontier ``L*(C) = E + k C^-a`` of Chinchilla parameters ``p``
    (scalars or arrays): ``a = alpha beta / (alpha + beta)``, ``k = (A G^-alpha + B G^beta) 6^a``."""
    alpha, beta = np.asarray(p["alpha"], float), np.asarray(p["beta"], float)
    s = alpha + beta
    G = np.power(alpha * p["A"] / (beta * p["B"]), 1.0 / s)
    a = alpha * beta / s
    k = (p["A"] * np.power(G, -alpha) + p["B"] * np.power(G, beta)) * np.power(6.0, a)
    return {"E": np.asarray(p["E"], float), "k": k, "a": a}


def frontier_loss(f: dict, C) -> np.ndarray:
    """``L*(C) = E + k C^-a`` for frontier parameters ``f`` (:func:`frontier_params`)."""
    return f["E"] + f["k"] * np.power(np.asarray(C, float), -f["a"])


def compute_multiplier(base: dict, cand: dict, C) -> np.ndarray:
    """Baseline compute reaching the candidate's frontier loss at ``C``, over ``C`` (Chinchilla parameters
    of each; broadcasts). A candidate loss at or below the baseline's ``E`` gives :data:`MULTIPLIER_CAP`; NaN
    parameters (a failed bootstrap refit) give NaN."""
    fb, fc = frontier_params(base), frontier_params(cand)
    C = np.asarray(C, float)
    gap = frontier_loss(fc, C) - fb["E"]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        log_cb = np.log(fb["k"] / np.where(gap > 0, gap, np.nan)) / fb["a"]
        m = np.exp(np.minimum(log_cb - np.log(C), math.log(MULTIPLIER_CAP)))
    return np.where(gap > 0, m, np.where(np.isnan(gap), np.nan, MULTIPLIER_CAP))


# ------------------------------------------------------------------------------------------- resampling
def _fit(N, D, L) -> dict:
    """The point fit (raises :class:`FitError`)."""
    law = ChinchillaLaw(n_bootstrap=0, extrapolation_error=False).fit(N, D, L)
    return {"law": law, "params": dict(law.params_)}


def _ranks(labels: np.ndarray, N: np.ndarray) -> np.ndarray:
    """Each run's size rank within its budget (0 = smallest): its ladder position."""
    out = np.zeros(labels.size, int)
    for b in np.unique(labels):
        at = np.flatnonzero(labels == b)
        out[at[np.argsort(N[at], kind="stable")]] = np.arange(at.size)
    return out


def _joint_weights(data: dict, rng: np.random.Generator) -> dict:
    """One joint resample: multiplicities per run of every recipe, drawn once per (budget, position)."""
    out = {name: np.zeros(d["L"].size, int) for name, d in data.items()}
    for b in np.unique(np.concatenate([d["label"] for d in data.values()])):
        n_pos = max(int((d["label"] == b).sum()) for d in data.values())
        w = rng.multinomial(n_pos, np.full(n_pos, 1.0 / n_pos))
        for name, d in data.items():
            at = np.flatnonzero(d["label"] == b)
            out[name][at] = w[d["rank"][at]]
    return out


def _interval(samples: np.ndarray, level: float) -> list[float] | None:
    ok = np.isfinite(samples)
    if ok.sum() < 10:
        return None
    lo, hi = percentile_interval(samples[ok], level)
    return [float(lo), float(hi)]


# ------------------------------------------------------------------------------------------- comparison
def compare_recipes(recipes: dict[str, list[Run]], baseline: str, *, n_convention: str = "n_active",
                    flop_convention: str = "6ND", loss_scale: dict[str, float] | None = None,
                    loss_units: str = "nats/token", n_bootstrap: int = 400, seed: int = 0,
                    level: float = 0.95) -> dict:
    """Compare each candidate recipe with ``baseline`` (see the module docstring for the method).

    Args:
        recipes: recipe name -> its runs (an IsoFLOP ladder; the same budgets for every recipe).
        loss_scale: per recipe, a factor turning its losses into ``loss_units`` (default 1).

    Returns:
        JSON-ready ``{"baseline", "loss_units", "convention", "method", "level", "n_bootstrap", "budgets", "warnings",
        "recipes": {name: {"n_runs", "points", "params", "frontier", "intervals"} or {"n_runs", "points",
        "error"}}, "candidates": {name: {"budgets": [{"budget", "multiplier", "interval", "baseline_loss",
        "candidate_loss", "observed_min_loss"}], "mean_multiplier", "slope", "exponents": {"alpha", "beta",
        "a"}, "verdict", "evidence", "verdict_from", "curve", "isoflop_minima"}}}``. Where a law cannot be
        fitted (too few runs), the candidate's numbers and verdict come from the IsoFLOP minima
        (``verdict_from: "isoflop minima"``, ``exponents: null``, ``error`` says why).
    """
    if baseline not in recipes:
        raise ValueError(f"baseline {baseline!r} is not among the recipes: {', '.join(recipes)}")
    if len(recipes) < 2:
        raise ValueError("a comparison needs a baseline and at least one candidate")
    scale = {name: 1.0 for name in recipes} | dict(loss_scale or {})
    data = {}
    for name, runs in recipes.items():
        rs, N, D, C, L = run_arrays(runs, n_convention, flop_convention)
        budget = np.array([r.budget if r.budget is not None else c for r, c in zip(rs, C)], float)
        data[name] = {"N": N, "D": D, "C": C, "L": L * scale[name], "budget": budget}
    sizes = [d["L"].size for d in data.values()]
    if min(sizes) == 0:
        empty = [n for n, d in data.items() if d["L"].size == 0]
        raise FitError(f"no finished runs with N, tokens and loss for {', '.join(empty)}")
    labels = group_budgets(np.concatenate([d["budget"] for d in data.values()]))
    start = 0
    for d in data.values():
        d["label"] = labels[start:start + d["L"].size]
        start += d["L"].size
        d["rank"] = _ranks(d["label"], d["N"])
    allC = np.concatenate([d["C"] for d in data.values()])
    budgets = np.array([float(np.exp(np.log(allC[labels == b]).mean())) for b in np.unique(labels)])
    out = {"baseline": baseline, "loss_units": loss_units, "level": level, "n_bootstrap": n_bootstrap,
           "convention": f"N = {n_convention}; C = 6 N D ({flop_convention}); multiplier = baseline compute reaching "
                         "the candidate's frontier loss / candidate compute (> 1: the candidate is better)",
           "method": "Chinchilla law per recipe; frontier L*(C) = E + k C^-a, a = alpha beta / (alpha + beta); "
                     "bootstrap resamples runs jointly (one draw per budget and size rank, shared by all recipes) "
                     "and refits every law",
           "budgets": budgets.tolist(), "recipes": {}, "candidates": {}, "warnings": []}
    fits, errors = {}, {}
    for name, d in data.items():
        out["recipes"][name] = {"n_runs": int(d["L"].size),
                                "points": {"C": d["C"].tolist(), "loss": d["L"].tolist(), "budget_label": d["label"].tolist()}}
        try:
            fits[name] = _fit(d["N"], d["D"], d["L"])
        except FitError as e:
            errors[name] = out["recipes"][name]["error"] = str(e)
            continue
        if d["L"].size < 3 * len(ChinchillaLaw.param_names):
            out["warnings"].append(f"{name}: {d['L'].size} runs for a {len(ChinchillaLaw.param_names)}-parameter law; its "
                                   "exponents and their intervals are barely determined (a check of the method, not "
                                   "evidence about the recipe)")
        out["recipes"][name].update(params=fits[name]["params"],
                                    frontier={k: float(v) for k, v in frontier_params(fits[name]["params"]).items()})
    # joint bootstrap: every recipe's IsoFLOP minima and law from the same draws
    rng = np.random.default_rng(seed)
    draws = [_joint_weights(data, rng) for _ in range(n_bootstrap)]
    minima = {name: np.array([_minima(d, budgets.size, w[name]) for w in draws]) for name, d in data.items()}
    samples = {}
    for name, fit in fits.items():
        d = data[name]
        samples[name] = fit["law"].refit_resamples([d["N"], d["D"]], d["L"], np.array([w[name] for w in draws]))
        f = frontier_params(samples[name])
        out["recipes"][name]["intervals"] = {k: _interval(v, level) for k, v in {**samples[name], **f}.items()}
        out["recipes"][name]["bootstrap_failed"] = int(np.isnan(samples[name]["E"]).sum())
    for name in data:
        if name == baseline:
            continue
        obs = _minima_summary(_minima(data[baseline], budgets.size), _minima(data[name], budgets.size),
                              minima[baseline], minima[name], budgets, level)
        if baseline in fits and name in fits:
            entry = _candidate(fits[baseline]["params"], fits[name]["params"], samples[baseline], samples[name], budgets,
                               level)
            for row, o in zip(entry["budgets"], obs["budgets"]):
                row["observed_min_loss"] = {"baseline": o["baseline_min_loss"], "candidate": o["candidate_min_loss"]}
            entry["verdict_from"] = "chinchilla law"
        else:
            failed = "; ".join(f"{n}: {errors[n]}" for n in (baseline, name) if n in errors)
            entry = {k: obs[k] for k in ("budgets", "mean_multiplier", "slope")}
            entry.update(error=f"law not fitted ({failed})", exponents=None, verdict_from="isoflop minima",
                         verdict=obs["verdict"], evidence=f"Chinchilla law not fitted ({failed}); from the IsoFLOP "
                                                          f"minima instead: {obs['evidence']}")
        entry["isoflop_minima"] = obs
        out["candidates"][name] = entry
    return out


def _minima(d: dict, n_budgets: int, weights: np.ndarray | None = None) -> np.ndarray:
    """The lowest loss per budget among the runs drawn (``weights`` > 0; all runs by default); NaN where none."""
    keep = np.ones(d["L"].size, bool) if weights is None else weights > 0
    return np.array([d["L"][keep & (d["label"] == j)].min() if (keep & (d["label"] == j)).any() else np.nan
                     for j in range(n_budgets)])


def _minima_multiplier(base_min: np.ndarray, cand_min: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    """log multiplier per budget against the power law ``L = k C^-a`` through the baseline's IsoFLOP minima
    (least squares in log-log; no irreducible term)."""
    ok = np.isfinite(base_min)
    if ok.sum() < 2:
        return np.full(budgets.size, np.nan)
    slope, c0 = np.polyfit(np.log(budgets[ok]), np.log(base_min[ok]), 1)
    if slope >= 0:
        return np.full(budgets.size, np.nan)
    return (np.log(cand_min) - c0) / slope - np.log(budgets)


def _summary(log_m: np.ndarray, log_ms: np.ndarray, budgets: np.ndarray, level: float) -> dict:
    """Multiplier per budget, its geometric mean and its slope in log C, each with a bootstrap interval, and
    the verdict."""
    rows = []
    for j, C in enumerate(budgets):
        iv = _interval(log_ms[:, j], level)
        rows.append({"budget": float(C), "multiplier": float(np.exp(log_m[j])),
                     "interval": None if iv is None else [float(np.exp(x)) for x in iv]})
    mean_iv = _interval(log_ms.mean(axis=1), level)
    out = {"budgets": rows, "mean_multiplier": {"value": float(np.exp(log_m.mean())),
                                                "interval": None if mean_iv is None else [math.exp(x) for x in mean_iv],
                                                "over": "the geometric mean of the multiplier over the budgets"}}
    slope, slope_iv = None, None
    if budgets.size >= 2 and np.isfinite(log_m[[0, -1]]).all():
        span = math.log(budgets[-1] / budgets[0])
        slope = float((log_m[-1] - log_m[0]) / span)
        slope_iv = _interval((log_ms[:, -1] - log_ms[:, 0]) / span, level)
    out["slope"] = {"value": slope, "interval": slope_iv,
                    "definition": "d log(multiplier) / d log C, secant from the smallest to the largest budget"}
    out["verdict"], out["evidence"] = _verdict(slope, slope_iv, out["mean_multiplier"], level)
    return out


def _minima_summary(base_min, cand_min, base_s, cand_s, budgets, level) -> dict:
    log_m = _minima_multiplier(base_min, cand_min, budgets)
    log_ms = np.array([_minima_multiplier(b, c, budgets) for b, c in zip(base_s, cand_s)])
    out = _summary(log_m, log_ms, budgets, level)
    for row, b, c in zip(out["budgets"], base_min, cand_min):
        row.update(baseline_min_loss=None if np.isnan(b) else float(b), candidate_min_loss=None if np.isnan(c) else float(c))
    out["method"] = ("the lowest loss per budget of each recipe; baseline frontier L = k C^-a fitted through its minima "
                     "(log-log least squares, no irreducible term); same joint bootstrap")
    return out


def _candidate(pb, pc, sb, sc, budgets, level) -> dict:
    def log_multiplier(C):
        return (np.log(compute_multiplier(pb, pc, C)),
                np.log(compute_multiplier({k: v[:, None] for k, v in sb.items()}, {k: v[:, None] for k, v in sc.items()},
                                          np.asarray(C)[None, :])))
    log_m, log_ms = log_multiplier(budgets)
    out = _summary(log_m, log_ms, budgets, level)
    fb, fc = frontier_params(pb), frontier_params(pc)
    for row in out["budgets"]:
        row.update(baseline_loss=float(frontier_loss(fb, row["budget"])), candidate_loss=float(frontier_loss(fc, row["budget"])))
    fbs, fcs = frontier_params(sb), frontier_params(sc)
    exps = {}
    for k, point, draws in (("alpha", pc["alpha"] - pb["alpha"], sc["alpha"] - sb["alpha"]),
                            ("beta", pc["beta"] - pb["beta"], sc["beta"] - sb["beta"]),
                            ("a", float(fc["a"] - fb["a"]), fcs["a"] - fbs["a"])):
        iv = _interval(draws, level)
        exps[k] = {"baseline": float(fb["a"]) if k == "a" else pb[k], "candidate": float(fc["a"]) if k == "a" else pc[k],
                   "difference": float(point), "interval": iv,
                   "excludes_zero": None if iv is None else bool(iv[0] > 0 or iv[1] < 0)}
    out["exponents"] = exps
    grid = np.geomspace(budgets[0] / 1.5, budgets[-1] * 1.5, 40)
    m, ms = log_multiplier(grid)
    ok = np.isfinite(ms).all(axis=1)
    band = percentile_interval(ms[ok], level) if ok.sum() >= 10 else (np.full(grid.size, np.nan),) * 2
    out["curve"] = {"C": grid.tolist(), "multiplier": np.exp(m).tolist(), "lower": np.exp(band[0]).tolist(),
                    "upper": np.exp(band[1]).tolist()}
    out["capped_share"] = float(np.mean(log_ms >= math.log(MULTIPLIER_CAP)))
    return out


def _verdict(slope, slope_iv, mean, level) -> tuple[str, str]:
    pct = f"{level:.0%}"
    m_iv = mean["interval"]
    m_text = f"mean multiplier {mean['value']:.3g}x" + (f" [{m_iv[0]:.3g}, {m_iv[1]:.3g}]" if m_iv else " (no interval)")
    if slope is None or slope_iv is None:
        return VERDICTS[3], f"one budget or too few bootstrap fits: the slope in log C cannot be measured; {m_text}"
    s_text = f"slope d log m / d log C = {slope:+.3f} [{slope_iv[0]:+.3f}, {slope_iv[1]:+.3f}] ({pct})"
    if slope_iv[0] > 0:
        return VERDICTS[1], f"{s_text} lies above 0: the multiplier grows with compute; {m_text}"
    if slope_iv[1] < 0:
        return VERDICTS[2], f"{s_text} lies below 0: the multiplier shrinks with compute; {m_text}"
    if m_iv and (m_iv[0] > 1 or m_iv[1] < 1):
        side = "better" if m_iv[0] > 1 else "worse"
        return VERDICTS[0], f"{s_text} covers 0 and the {m_text} excludes 1 (the candidate is {side} by a steady factor)"
    return VERDICTS[3], f"{s_text} covers 0 and the {m_text} covers 1"


def moe_multiplier_intervals(dense, moe, budgets, level: float = 0.95) -> list[dict]:
    """Compute multiplier of MoE over dense at each budget with bootstrap intervals: the dense compute
    reaching the MoE frontier's loss, divided by the budget (both laws over active parameters; the two
    laws' own bootstrap samples, paired by index; :mod:`scalinglab.comparison` resamples runs jointly)."""

    budgets = np.asarray(budgets, float)
    point = compute_multiplier(dense.params_, moe.params_, budgets)
    moe_loss = frontier_loss(frontier_params(moe.params_), budgets)
    R = 0
    if dense.has_intervals and moe.has_intervals:
        R = min(len(dense.bootstrap_params_["E"]), len(moe.bootstrap_params_["E"]), 300)
    samples = compute_multiplier({k: v[:R, None] for k, v in dense.bootstrap_params_.items()},
                                 {k: v[:R, None] for k, v in moe.bootstrap_params_.items()}, budgets[None, :]) if R else None
    rows = []
    for j, C in enumerate(budgets):
        row = {"budget": float(C), "multiplier": float(point[j]), "moe_loss": float(moe_loss[j])}
        if R and np.isfinite(samples[:, j]).sum() > 10:
            row["interval"] = [float(x) for x in percentile_interval(samples[np.isfinite(samples[:, j]), j], level)]
        rows.append(row)
    return rows
