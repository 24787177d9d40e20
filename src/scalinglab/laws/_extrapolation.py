"""Extrapolation error: how far a law's forecasts drift as they reach beyond the fitted runs.

A run-resampling bootstrap measures how much the fitted parameters move when the runs are resampled;
it cannot see that the law itself is slightly wrong (misspecified), which is what dominates a forecast
10-100x beyond the largest run. The prediction interval of a fitted law therefore has three parts:

1. **parameter uncertainty**: the bootstrap refits (the confidence interval);
2. **observation noise**: a residual of the fit, resampled (inflated by ``sqrt(n / (n - p))`` for the
   degrees of freedom the fit used), as OLMo-core's ``predict_loss_distribution(include_observation_noise=True)``;
3. **model error** growing with extrapolation distance, ``N(0, (kappa u)^2)`` on the log-loss, where
   ``u = log10`` of how far a point lies beyond the fitted range (the largest factor over N, D and C, see
   :func:`extrapolation_distance`) and ``kappa`` is calibrated on the fitted runs themselves.

Calibration by rolling origin (Tashman 2000; as in forecast evaluation of time series): the runs are
grouped along compute (budgets, clustered in log C) and along size (clustered in log N); for each
cut the law is refitted on the groups up to the cut (with a small bootstrap) and predicts every run
beyond it. Each prediction gives a log-residual ``r_i``, its distance ``u_i`` and the variance the
law already accounts for, ``s_i^2 = sigma_noise^2 + var_bootstrap(log prediction_i)``. ``kappa`` is the
maximum-likelihood value under ``r_i ~ N(0, s_i^2 + kappa^2 u_i^2)`` (zero when the backtests miss by
no more than parameters and noise explain), and a likelihood-ratio test against ``kappa = 0`` flags
misspecification. Runs that are held out of the fit by the user are never seen here.

``kappa u`` extrapolates linearly in ``u`` beyond the largest distance the backtests reached; the fit
reports that distance (``calibrated_to_factor``) so a forecast further out says so.
"""
from __future__ import annotations

import dataclasses

import numpy as np


def cluster_log(values: np.ndarray, rtol: float = 0.25, max_span: float = 3.0) -> np.ndarray:
    """Integer group labels (0 = smallest) from single-linkage clustering of ``log(values)``.

    Neighbours closer than a factor ``1 + rtol`` join one group; a group spanning more than a factor
    ``max_span`` (continuous, noisy values chain together) is split at its widest gaps until none does.
    """
    x = np.log(np.asarray(values, float))
    order = np.argsort(x, kind="stable")
    xs = x[order]
    gaps = np.diff(xs)
    cut = gaps > np.log1p(rtol)
    segments = np.split(np.arange(xs.size), np.flatnonzero(cut) + 1)
    final: list[np.ndarray] = []
    while segments:
        seg = segments.pop(0)
        if seg.size > 1 and xs[seg[-1]] - xs[seg[0]] > np.log(max_span):
            j = int(np.argmax(np.diff(xs[seg])))
            segments[:0] = [seg[:j + 1], seg[j + 1:]]
            continue
        final.append(seg)
    labels = np.empty(xs.size, dtype=int)
    for g, seg in enumerate(final):
        labels[order[seg]] = g
    return labels


def extrapolation_distance(points: dict[str, np.ndarray], data_range: dict) -> np.ndarray:
    """``u = log10`` of the largest factor by which each point lies outside the fitted range.

    ``points`` maps a variable name (``N``, ``D``, ``C``, ``X``...) to values; a name counts on each side
    ``data_range`` bounds it, ``<name>_min`` below and ``<name>_max`` above (a range with only maxima measures
    how far beyond them). Inside the range in every variable, ``u = 0``.
    """
    u = None
    for name, vals in points.items():
        lo, hi = data_range.get(f"{name}_min"), data_range.get(f"{name}_max")
        if lo is None and hi is None:
            continue
        v = np.asarray(vals, float)
        d = np.zeros_like(v)
        if hi is not None:
            d = np.maximum(d, np.log10(v / hi))
        if lo is not None:
            d = np.maximum(d, np.log10(lo / v))
        u = d if u is None else np.maximum(u, d)
    if u is None:
        raise ValueError("no fitted range to measure extrapolation against")
    return u


@dataclasses.dataclass
class Cut:
    """One rolling origin: fit on ``fit``, predict ``test`` (boolean masks over runs)."""

    axis: str
    fitted_max: float
    fit: np.ndarray
    test: np.ndarray


def origin_cuts(axes: dict[str, np.ndarray], min_fit_runs: int, min_test_runs: int = 1, max_cuts: int = 4) -> list[Cut]:
    """Rolling origins along each axis: fit on groups up to a cut, test on all groups beyond it.

    The groups come from :func:`cluster_log`; at most ``max_cuts`` per axis, the ones with the most
    fitted runs (their fits resemble the real one most).
    """
    cuts: list[Cut] = []
    for axis, values in axes.items():
        values = np.asarray(values, float)
        labels = cluster_log(values)
        n_groups = labels.max() + 1
        mine = []
        for k in range(n_groups - 1, 0, -1):
            fit, test = labels < k, labels >= k
            if fit.sum() < min_fit_runs or test.sum() < min_test_runs or np.unique(labels[fit]).size < 2:
                continue
            mine.append(Cut(axis, float(values[fit].max()), fit, test))
            if len(mine) == max_cuts:
                break
        cuts.extend(mine)
    return cuts


def fit_model_error(r: np.ndarray, u: np.ndarray, s2: np.ndarray) -> dict:
    """Maximum-likelihood ``kappa`` in ``r ~ N(0, s2 + kappa^2 u^2)`` and the test of ``kappa = 0``."""
    from scipy import optimize, stats

    r, u, s2 = (np.asarray(a, float) for a in (r, u, s2))

    def nll(kappa):
        v = s2 + (kappa * u) ** 2
        return 0.5 * float(np.sum(np.log(v) + r * r / v))

    hi = max(1.0, 10.0 * float(np.max(np.abs(r) / np.maximum(u, 1e-6))))
    res = optimize.minimize_scalar(nll, bounds=(0.0, hi), method="bounded", options={"xatol": 1e-7})
    kappa = float(res.x) if nll(res.x) < nll(0.0) else 0.0
    lr = max(0.0, 2.0 * (nll(0.0) - nll(kappa)))
    # kappa >= 0 sits on the boundary: the LR statistic is a 50:50 mixture of chi2_0 and chi2_1
    p_value = 1.0 if lr <= 0 else 0.5 * float(stats.chi2.sf(lr, 1))
    z = r / np.sqrt(s2)
    return {"kappa": kappa, "lr_statistic": lr, "p_value": p_value,
            "z_rms_without_model_error": float(np.sqrt(np.mean(z * z)))}
