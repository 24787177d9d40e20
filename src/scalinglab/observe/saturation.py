"""Benchmark saturation: one latent ability per model, a logistic curve per benchmark (an IRT view).

``score_ij = chance_j + (ceiling_j - chance_j) * sigmoid(slope_j (ability_i - location_j))``, fitted jointly
by least squares over the observed scores (missing ones left out), the chance level of each benchmark
fixed by name (``forecast.tasklaws.chance_level``), the ceiling fitted in [best observed, 1]; abilities
standardized to mean 0 and sd 1. A benchmark near its ceiling flattens even while ability keeps rising,
so a trend in ability (``trends --metric ability``) is not read as slowing when a benchmark saturates.
Each benchmark reports its ceiling (with a bootstrap interval over models), its best score so far, the
headroom left (ceiling - best) and the share of its range above chance already used.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import optimize

from ..forecast.tasklaws import chance_level
from .obslaws import _sigmoid, impute_pca
from .tables import ModelTable


def _fit(S: np.ndarray, chance: np.ndarray, x0: np.ndarray | None = None) -> np.ndarray:
    m, b = S.shape
    obs = np.isfinite(S)
    best = np.nanmax(S, axis=0)
    if x0 is None:
        Z = (S - np.nanmean(S, axis=0)) / np.where(np.nanstd(S, axis=0) > 0, np.nanstd(S, axis=0), 1.0)
        Zf, Vt = impute_pca(Z, 1)
        theta = Zf @ Vt[0] * np.sign(Vt[0].sum() or 1.0)
        theta = (theta - theta.mean()) / (theta.std() or 1.0)
        x0 = np.concatenate([theta, np.full(b, 1.5), np.zeros(b), np.minimum(1.0, best + 0.05)])
    lo = np.concatenate([np.full(m, -10.0), np.full(b, 0.05), np.full(b, -10.0), best])
    hi = np.concatenate([np.full(m, 10.0), np.full(b, 20.0), np.full(b, 10.0), np.ones(b)])
    x0 = np.clip(x0, lo + 1e-9, hi - 1e-9)

    ii, jj = np.nonzero(obs)
    target = S[ii, jj]
    rows = np.arange(len(ii))

    def parts(x):
        th, a, loc, ceil = x[:m], x[m:m + b], x[m + b:m + 2 * b], x[m + 2 * b:]
        sig = _sigmoid(a[jj] * (th[ii] - loc[jj]))
        return th, a, loc, ceil, sig

    def resid(x):
        th, a, loc, ceil, sig = parts(x)
        return chance[jj] + (ceil[jj] - chance[jj]) * sig - target

    def jac(x):
        th, a, loc, ceil, sig = parts(x)
        g = (ceil[jj] - chance[jj]) * sig * (1 - sig)
        J = np.zeros((len(ii), m + 3 * b))
        J[rows, ii] = g * a[jj]
        J[rows, m + jj] = g * (th[ii] - loc[jj])
        J[rows, m + b + jj] = -g * a[jj]
        J[rows, m + 2 * b + jj] = sig
        return J

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return optimize.least_squares(resid, x0, jac=jac, bounds=(lo, hi), max_nfev=5000).x


def saturation(table: ModelTable, *, benchmarks=None, n_bootstrap: int = 100, level: float = 0.95, seed: int = 0) -> dict:
    """Fit the joint logistic model and report each benchmark's ceiling and headroom (see the module docstring).

    Returns:
        ``ability`` (``models``, ``values``, ``dates``), ``benchmarks`` (per benchmark: ``benchmark``, ``chance``,
        ``ceiling``, ``ceiling_interval``, ``slope``, ``location``, ``best``, ``best_model``, ``headroom``,
        ``saturated_fraction``, ``scores``), ``residual_sd``, ``level``, ``n_bootstrap``.
    """
    names = [b for b in (benchmarks or table.benchmarks)]
    missing = [b for b in names if b not in table.benchmarks]
    if missing:
        raise KeyError(f"no benchmark {missing}; the table has: {', '.join(table.benchmarks)}")
    S_all = table.scores[:, [table.benchmarks.index(b) for b in names]]
    keep = np.sum(np.isfinite(S_all), axis=1) >= 1
    S, sub = S_all[keep], table.subset(keep)
    if len(names) < 2 or len(S) < 5:
        raise ValueError("saturation needs at least 2 benchmarks and 5 models with a score")
    chance = np.array([chance_level(b) for b in names])
    m, b = S.shape
    x = _fit(S, chance)
    theta = x[:m]
    mu, sd = theta.mean(), theta.std() or 1.0
    a, loc, ceil = x[m:m + b] * sd, (x[m + b:m + 2 * b] - mu) / sd, x[m + 2 * b:]
    theta = (theta - mu) / sd
    P = chance + (ceil - chance) * _sigmoid(a * (theta[:, None] - loc))
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_bootstrap):
        idx = rng.integers(0, m, m)
        Sb = S[idx]
        if np.any(np.sum(np.isfinite(Sb), axis=0) < 3):
            continue
        boots.append(_fit(Sb, chance, np.concatenate([x[:m][idx], x[m:]]))[m + 2 * b:])
    q = (1 - level) / 2
    civ = np.quantile(np.array(boots), [q, 1 - q], axis=0).T if boots else np.full((b, 2), np.nan)
    best = np.nanmax(S, axis=0)
    out = []
    for j, name in enumerate(names):
        i = int(np.nanargmax(S[:, j]))
        out.append({"benchmark": name, "chance": float(chance[j]), "ceiling": float(ceil[j]),
                    "ceiling_interval": [float(v) for v in civ[j]], "slope": float(a[j]), "location": float(loc[j]),
                    "best": float(best[j]), "best_model": str(sub.model[i]), "headroom": float(ceil[j] - best[j]),
                    "saturated_fraction": float((best[j] - chance[j]) / (ceil[j] - chance[j])),
                    "scores": [None if not np.isfinite(v) else float(v) for v in S[:, j]]})
    return {"ability": {"models": [str(v) for v in sub.model], "values": theta.tolist(),
                        "dates": [None if not np.isfinite(v) else float(v) for v in sub.date]},
            "benchmarks": out, "residual_sd": float(np.sqrt(np.nanmean((P - S) ** 2))), "level": level,
            "n_bootstrap": len(boots)}


def ability(table: ModelTable) -> np.ndarray:
    """Each model's latent ability across the benchmarks (the :func:`saturation` model, no bootstrap); NaN for a
    model with no score."""
    sat = saturation(table, n_bootstrap=0)
    value = np.full(len(table), np.nan)
    value[np.isin(table.model, sat["ability"]["models"])] = sat["ability"]["values"]
    return value
