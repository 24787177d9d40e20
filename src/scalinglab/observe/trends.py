"""Trends over time from a model table: growth rates, doubling times, backtests, and a test for a slowdown.

* :func:`frontier_mask` -- which models define "progress": all of them, or the top ``k`` by date (a model
  counts when fewer than ``k`` models released up to its date score higher; ``k = 1`` is the record-setters).
* :func:`fit_trend` -- ordinary least squares of ``y = transform(metric)`` on the date in years; a pairs
  bootstrap gives intervals on the slope, the growth factor per year and the doubling time ``ln 2 / slope``
  (``transform="log"``, natural log).
* :func:`rolling_origin` -- fit on models released before year ``t``, forecast those of ``(t, t+1]`` and
  ``(t+1, t+2]``: error in transformed units and the coverage of the OLS prediction interval.
* :func:`slope_change_test` -- a continuous piecewise-linear (hinge) fit ``y = a + b t + c (t - t_b)_+``;
  the change in slope ``c`` gets a p-value (an F test at a given break; at a break searched over the dates,
  the sup-F statistic against its null distribution by simulation, Andrews 1993), an interval (t interval
  at a given break, residual bootstrap with the break re-searched otherwise), and the **minimum detectable
  change**: the smallest ``|c|`` the test would find with 80% power at these dates and this noise, by
  simulation. "No evidence of a slowdown" (the test does not reject and the data could not have seen one of
  the size asked about) is told apart from "evidence of no slowdown" (the interval on ``c`` rules out a
  slowdown of that size).

The F statistic is invariant to the line's parameters and to the noise scale, so its null distribution
depends only on the dates: it is simulated once per set of dates from standard normal noise.
"""
from __future__ import annotations

import functools
import math

import numpy as np
from scipy import stats

TRANSFORMS = ("log", "logit", "none")
FRONTIERS = ("all", "top")


def transform_values(v, transform: str, chance: float = 0.0) -> np.ndarray:
    """``log``: ln v (v > 0); ``logit``: logit of the score above chance, ``(v - chance) / (1 - chance)``
    clipped to [0.001, 0.999]; ``none``: v."""
    v = np.asarray(v, float)
    if transform == "log":
        if np.any(v[np.isfinite(v)] <= 0):
            raise ValueError("log transform needs positive values (use --transform logit or none for scores)")
        return np.log(v)
    if transform == "logit":
        p = np.clip((v - chance) / (1.0 - chance), 1e-3, 1 - 1e-3)
        return np.log(p / (1 - p))
    if transform == "none":
        return v
    raise ValueError(f"transform must be one of {', '.join(TRANSFORMS)}, not {transform!r}")


def frontier_mask(date, value, kind: str = "all", k: int = 1) -> np.ndarray:
    """Models on the frontier: ``all`` (every model with a date and a value) or ``top`` (fewer than ``k``
    models released up to its date have a higher value)."""
    date, value = np.asarray(date, float), np.asarray(value, float)
    ok = np.isfinite(date) & np.isfinite(value)
    if kind == "all":
        return ok
    if kind != "top":
        raise ValueError(f"frontier must be one of {', '.join(FRONTIERS)}, not {kind!r}")
    if k < 1:
        raise ValueError("k must be at least 1")
    earlier = (date[None, :] <= date[:, None]) & ok[None, :]
    higher = (value[None, :] > value[:, None]) & earlier
    return ok & (higher.sum(axis=1) < k)


def _ols(t, y):
    X = np.column_stack([np.ones_like(t), t])
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    dof = max(len(t) - 2, 1)
    s2 = float(resid @ resid) / dof
    cov = s2 * np.linalg.inv(X.T @ X)
    return beta, cov, math.sqrt(s2), dof


def _doubling(slope: float) -> float:
    return math.log(2) / slope if slope > 0 else math.inf


def fit_trend(date, y, *, level: float = 0.95, n_bootstrap: int = 1000, seed: int = 0, transform: str = "log") -> dict:
    """Slope of ``y`` (transformed metric) per year, with bootstrap intervals (pairs, percentile).

    Returns:
        ``slope_per_year``, ``slope_interval``, ``intercept`` (at ``date_center``), ``residual_sd``, ``n``,
        ``date_range``; for ``transform="log"`` also ``growth_factor_per_year`` (``e^slope``), its interval,
        and ``doubling_time_years`` with its interval (infinite where the slope may be 0 or negative).
    """
    t, y = np.asarray(date, float), np.asarray(y, float)
    if len(t) < 3 or np.ptp(t) == 0:
        raise ValueError(f"a trend needs at least 3 models at 2 or more dates (got {len(t)})")
    t0 = float(np.mean(t))
    beta, cov, sd, dof = _ols(t - t0, y)
    rng = np.random.default_rng(seed)
    slopes = []
    for _ in range(n_bootstrap):
        idx = rng.integers(0, len(t), len(t))
        if np.ptp(t[idx]) == 0:
            continue
        tt = t[idx] - t[idx].mean()
        slopes.append(float(tt @ (y[idx] - y[idx].mean()) / (tt @ tt)))
    a = (1 - level) / 2
    lo, hi = (np.quantile(slopes, [a, 1 - a]) if slopes else
              beta[1] + np.array([-1, 1]) * stats.t.ppf(1 - a, dof) * math.sqrt(cov[1, 1]))
    out = {"slope_per_year": float(beta[1]), "slope_interval": [float(lo), float(hi)], "intercept": float(beta[0]),
           "date_center": t0, "residual_sd": sd, "n": int(len(t)), "date_range": [float(t.min()), float(t.max())],
           "level": level, "n_bootstrap": len(slopes)}
    if transform == "log":
        out.update(growth_factor_per_year=math.exp(beta[1]), growth_interval=[math.exp(lo), math.exp(hi)],
                   doubling_time_years=_doubling(float(beta[1])),
                   doubling_interval=[_doubling(float(hi)), _doubling(float(lo))])
    return out


def rolling_origin(date, y, *, origins=None, horizons=(1, 2), level: float = 0.95, min_fit: int = 4) -> dict:
    """Fit on models released up to each origin, forecast those released 0-1 and 1-2 years after it.

    Returns:
        ``origins``, ``predictions`` (``origin``, ``horizon``, ``date``, ``actual``, ``predicted``, ``interval``,
        ``error``, ``inside``) and ``by_horizon`` -> horizon -> ``n``, ``mean_abs_error``, ``bias``,
        ``coverage``, ``nominal``.
    """
    t, y = np.asarray(date, float), np.asarray(y, float)
    if origins is None:
        origins = [float(o) for o in np.arange(math.floor(t.min()) + 1, math.ceil(t.max()))]
    preds = []
    used = []
    for o in origins:
        fit = t <= o
        if fit.sum() < min_fit or np.ptp(t[fit]) == 0:
            continue
        used.append(o)
        t0 = t[fit].mean()
        beta, cov, sd, dof = _ols(t[fit] - t0, y[fit])
        q = stats.t.ppf(0.5 + level / 2, dof)
        for h in horizons:
            sel = (t > o + h - 1) & (t <= o + h)
            for i in np.flatnonzero(sel):
                x = np.array([1.0, t[i] - t0])
                mu = float(x @ beta)
                half = q * math.sqrt(sd ** 2 + float(x @ cov @ x))
                preds.append({"origin": o, "horizon": h, "date": float(t[i]), "actual": float(y[i]), "predicted": mu,
                              "interval": [mu - half, mu + half], "error": float(y[i]) - mu,
                              "inside": bool(abs(float(y[i]) - mu) <= half)})
    by = {}
    for h in horizons:
        p = [r for r in preds if r["horizon"] == h]
        by[str(h)] = {"n": len(p), "nominal": level,
                      "mean_abs_error": float(np.mean([abs(r["error"]) for r in p])) if p else None,
                      "bias": float(np.mean([r["error"] for r in p])) if p else None,
                      "coverage": float(np.mean([r["inside"] for r in p])) if p else None}
    return {"origins": used, "predictions": preds, "by_horizon": by}


# ------------------------------------------------------------------------------------------ slope change
def _bases(t: np.ndarray, breaks: np.ndarray):
    """Orthonormal bases of the null design [1, t] and of the hinge designs [1, t, (t - b)_+], and the
    hinge coefficient's row of each design's pseudo-inverse."""
    n = len(t)
    X0 = np.column_stack([np.ones(n), t])
    Q0 = np.linalg.qr(X0)[0]
    X = np.stack([np.column_stack([np.ones(n), t, np.maximum(t - b, 0.0)]) for b in breaks])
    Q = np.linalg.qr(X)[0]                                       # G x n x 3
    pinv = np.linalg.pinv(X)                                     # G x 3 x n
    return X, Q0, Q, pinv


def _sup_f(Y: np.ndarray, Q0, Q, dof: int):
    """F statistic of the hinge term at every break (G x S) for the columns of ``Y`` (n x S)."""
    tot = np.einsum("ns,ns->s", Y, Y)
    sse0 = tot - np.sum((Q0.T @ Y) ** 2, axis=0)
    proj = np.einsum("gnk,ns->gks", Q, Y)
    sse = np.maximum(tot[None, :] - np.sum(proj ** 2, axis=1), 1e-300)
    return (sse0[None, :] - sse) / (sse / dof)


@functools.lru_cache(maxsize=32)
def _null_sup_f(key: bytes, n_sim: int, seed: int) -> np.ndarray:
    t_breaks = np.frombuffer(key, float)
    n = int(t_breaks[0])
    t, breaks = t_breaks[1:n + 1], t_breaks[n + 1:]
    _, Q0, Q, _ = _bases(t, breaks)
    Y = np.random.default_rng(seed).standard_normal((n, n_sim))
    return np.sort(_sup_f(Y, Q0, Q, n - 3).max(axis=0))


def candidate_breaks(date, *, trim: float = 0.15, min_side: int = 3, n_grid: int = 25) -> np.ndarray:
    """Breaks searched: ``n_grid`` dates between the ``trim`` and ``1 - trim`` quantiles of the dates that
    leave at least ``min_side`` models on each side."""
    t = np.sort(np.asarray(date, float))
    grid = np.linspace(np.quantile(t, trim), np.quantile(t, 1 - trim), n_grid)
    ok = [b for b in grid if (t < b).sum() >= min_side and (t > b).sum() >= min_side]
    return np.unique(np.array(ok, float))


def slope_change_pvalues(date, Y, *, breakpoint: float | None = None, n_null: int = 5000, seed: int = 0,
                         trim: float = 0.15, min_side: int = 3) -> np.ndarray:
    """P-values of "no change in slope" for each column of ``Y`` (models x tables) at these dates: the F test
    at ``breakpoint``, else the sup-F over :func:`candidate_breaks` against its simulated null."""
    t = np.asarray(date, float)
    Y = np.asarray(Y, float).reshape(len(t), -1)
    tc = t - t.mean()
    n = len(t)
    if breakpoint is not None:
        _, Q0, Q, _ = _bases(tc, np.array([breakpoint - t.mean()]))
        return stats.f.sf(_sup_f(Y, Q0, Q, n - 3)[0], 1, n - 3)
    breaks = candidate_breaks(tc, trim=trim, min_side=min_side)
    if len(breaks) == 0:
        raise ValueError(f"too few models ({n}) to search for a break with {min_side} on each side")
    _, Q0, Q, _ = _bases(tc, breaks)
    obs = _sup_f(Y, Q0, Q, n - 3).max(axis=0)
    null = _null_sup_f(np.concatenate([[n], tc, breaks]).astype(float).tobytes(), n_null, seed)
    return (1 + n_null - np.searchsorted(null, obs, side="left")) / (n_null + 1)


def slope_change_test(date, y, *, breakpoint: float | None = None, level: float = 0.95, margin: float | None = None,
                      n_null: int = 5000, n_bootstrap: int = 1000, n_power: int = 300, power: float = 0.8,
                      seed: int = 0, trim: float = 0.15, min_side: int = 3) -> dict:
    """Is the trend of ``y`` over ``date`` slowing down or speeding up? (see the module docstring)

    Args:
        breakpoint: date of the change (decimal year); ``None`` searches it over the dates.
        margin: the slowdown that matters, in slope units (default: half the slope before the break, i.e. a
            halving of the growth rate); "evidence of no slowdown" needs the interval to exclude it.
        n_power: simulated tables per change size for the minimum detectable change (0 skips it).

    Returns:
        ``breakpoint``, ``breakpoint_searched``, ``breakpoint_interval``, ``slope_before``, ``slope_after``,
        ``change`` (after minus before, per year), ``change_interval`` (bootstrap, the break re-searched; a t
        interval at a given break), ``change_interval_at_break`` (t interval given the break), ``p_value``,
        ``level``, ``largest_slowdown_not_excluded`` (at every break searched, one-sided at ``1 - level``),
        ``verdict`` (``slowdown``, ``acceleration``, ``no_slowdown``: a slowdown of ``margin`` is ruled out at
        every break, or ``inconclusive``), ``margin``, ``minimum_detectable_change`` (80% power),
        ``power_curve``, ``message``.
    """
    t, y = np.asarray(date, float), np.asarray(y, float)
    n = len(t)
    if n < 2 * min_side + 1:
        raise ValueError(f"a slope-change test needs at least {2 * min_side + 1} models (got {n})")
    mean_t = t.mean()
    tc = t - mean_t
    alpha = 1 - level
    searched = breakpoint is None
    breaks = candidate_breaks(tc, trim=trim, min_side=min_side) if searched else np.array([breakpoint - mean_t])
    if len(breaks) == 0:
        raise ValueError(f"too few models ({n}) to search for a break with {min_side} on each side")
    if not searched and ((tc < breaks[0]).sum() < 2 or (tc > breaks[0]).sum() < 2):
        raise ValueError(f"the break {breakpoint:g} leaves fewer than 2 models on one side")
    X, Q0, Q, pinv = _bases(tc, breaks)
    F = _sup_f(y[:, None], Q0, Q, n - 3)[:, 0]
    g = int(np.argmax(F))
    coef = pinv[g] @ y
    resid = y - X[g] @ coef
    s = math.sqrt(float(resid @ resid) / (n - 3))
    p = float(slope_change_pvalues(t, y, breakpoint=breakpoint, n_null=n_null, seed=seed, trim=trim, min_side=min_side)[0])
    rng = np.random.default_rng(seed + 1)
    a = alpha / 2
    if searched and n_bootstrap > 0:
        Yb = (X[g] @ coef)[:, None] + rng.choice(resid * math.sqrt(n / (n - 3)), size=(n, n_bootstrap))
        gb = np.argmax(_sup_f(Yb, Q0, Q, n - 3), axis=0)
        cb = np.einsum("sn,ns->s", pinv[gb, 2, :], Yb)
        change_iv = [float(v) for v in np.quantile(cb, [a, 1 - a])]
        break_iv = [float(v) for v in np.quantile(breaks[gb] + mean_t, [a, 1 - a])]
    else:                                                        # t interval at the (given or found) break
        se = s * math.sqrt(float(np.linalg.inv(X[g].T @ X[g])[2, 2]))
        q = stats.t.ppf(1 - a, n - 3)
        change_iv = [float(coef[2] - q * se), float(coef[2] + q * se)]
        break_iv = [float(breaks[g] + mean_t)] * 2
    slope_before, change = float(coef[1]), float(coef[2])
    margin = abs(slope_before) / 2 if margin is None else abs(margin)
    # "no slowdown of margin or more" must hold at every break searched (an intersection-union test, valid
    # without a multiplicity correction): the one-sided lower bound of the change at each break
    cb_all = pinv[:, 2, :] @ y
    sse_b = np.sum((y[None, :] - np.einsum("gnk,gk->gn", X, pinv @ y)) ** 2, axis=1)
    se_b = np.sqrt(sse_b / (n - 3) * np.linalg.inv(np.transpose(X, (0, 2, 1)) @ X)[:, 2, 2])
    lower_b = cb_all - stats.t.ppf(1 - alpha, n - 3) * se_b
    not_excluded = float(max(0.0, -lower_b.min()))
    q2 = stats.t.ppf(1 - a, n - 3)
    at_break = [float(cb_all[g] - q2 * se_b[g]), float(cb_all[g] + q2 * se_b[g])]
    mdc, curve = None, []
    if n_power > 0:
        mdc, curve = _minimum_detectable(tc, breaks, g, coef, s, alpha, power, n_power, n_null, seed, searched, Q0, Q)
    if p < alpha:
        verdict = "slowdown" if change < 0 else "acceleration"
        msg = (f"{verdict}: the slope changes by {change:+.3g}/yr [{change_iv[0]:+.3g}, {change_iv[1]:+.3g}] "
               f"at {breaks[g] + mean_t:.2f} (p = {p:.3g})")
    elif not_excluded < margin:
        verdict = "no_slowdown"
        msg = (f"evidence of no slowdown: no change found (p = {p:.3g}), and a slowdown of more than "
               f"{not_excluded:.3g}/yr is ruled out at every break (the margin asked about: {margin:.3g}/yr)")
    else:
        verdict = "inconclusive"
        msg = (f"no evidence of a change (p = {p:.3g}), but no evidence of its absence either: a slowdown of up to "
               f"{not_excluded:.3g}/yr is not ruled out (the margin asked about: {margin:.3g}/yr)"
               + (f", and only a change of {mdc:.3g}/yr or more would be found {power:.0%} of the time" if mdc else ""))
    return {"breakpoint": float(breaks[g] + mean_t), "breakpoint_searched": searched, "breakpoint_interval": break_iv,
            "slope_before": slope_before, "slope_after": slope_before + change, "change": change,
            "change_interval": change_iv, "change_interval_at_break": at_break,
            "largest_slowdown_not_excluded": not_excluded, "p_value": p, "level": level, "verdict": verdict, "margin": margin,
            "minimum_detectable_change": mdc, "power": power, "power_curve": curve, "residual_sd": s, "n": n,
            "message": msg}


def _minimum_detectable(tc, breaks, g, coef, s, alpha, power, n_power, n_null, seed, searched, Q0, Q):
    """Smallest |change| detected with probability ``power`` at the estimated break, by simulation (the
    test's power depends on |change| / noise only; a slowdown is simulated)."""
    n = len(tc)
    Xg = np.column_stack([np.ones(n), tc, np.maximum(tc - breaks[g], 0.0)])
    key = np.concatenate([[n], tc, breaks]).astype(float).tobytes()
    crit = (np.quantile(_null_sup_f(key, n_null, seed), 1 - alpha) if searched else stats.f.isf(alpha, 1, n - 3))
    se = s * math.sqrt(float(np.linalg.inv(Xg.T @ Xg)[2, 2]))
    sizes = se * np.linspace(0, 8, 33)
    rng = np.random.default_rng(seed + 2)
    E = rng.standard_normal((n, n_power)) * s
    base = Xg[:, :2] @ coef[:2]
    curve = []
    for d in sizes:
        Y = (base - d * Xg[:, 2])[:, None] + E
        curve.append(float(np.mean(_sup_f(Y, Q0, Q, n - 3).max(axis=0) > crit)))
    curve_pts = [{"change": float(-d), "power": pw} for d, pw in zip(sizes, curve)]
    hit = np.flatnonzero(np.array(curve) >= power)
    if len(hit) == 0:
        return None, curve_pts
    i = int(hit[0])
    if i == 0:
        return 0.0, curve_pts
    d0, d1, p0, p1 = sizes[i - 1], sizes[i], curve[i - 1], curve[i]
    return float(d0 + (power - p0) * (d1 - d0) / max(p1 - p0, 1e-12)), curve_pts


def trend_report(date, value, *, metric: str, transform: str = "log", frontier: str = "all", k: int = 1,
                 chance: float = 0.0, names=None, breakpoint: float | None = None, margin: float | None = None,
                 level: float = 0.95, n_bootstrap: int = 1000, n_power: int = 300, seed: int = 0) -> dict:
    """Everything about one metric's trend: the frontier, the fit, the rolling-origin backtest and the
    slope-change test (see the functions above)."""
    date, value = np.asarray(date, float), np.asarray(value, float)
    keep = frontier_mask(date, value, frontier, k)
    if transform == "log":
        keep &= value > 0
    t, v = date[keep], value[keep]
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    y = transform_values(v, transform, chance)
    models = list(np.asarray(names, dtype=object)[keep][order]) if names is not None else []
    out = {"metric": metric, "transform": transform, "chance": chance,
           "frontier": {"kind": frontier, "k": k if frontier == "top" else None, "n_models": int(len(t)),
                        "models": [{"model": m, "date": float(a), "value": float(b)} for m, a, b in zip(models, t, v)]},
           "fit": fit_trend(t, y, level=level, n_bootstrap=n_bootstrap, seed=seed, transform=transform),
           "backtest": rolling_origin(t, y, level=level)}
    try:
        out["slope_change"] = slope_change_test(t, y, breakpoint=breakpoint, level=level, margin=margin,
                                                n_bootstrap=n_bootstrap, n_power=n_power, seed=seed)
    except ValueError as e:
        out["slope_change"] = {"error": str(e)}
    return out
