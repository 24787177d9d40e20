"""Chinchilla's Approaches 1 and 2: compute-optimal frontiers without a parametric loss law.

Hoffmann et al. 2022, https://arxiv.org/abs/2203.15556, Sec. 3.1 (Approach 1: lower envelope of
training curves) and Sec. 3.2 (Approach 2: IsoFLOP profiles). Both give ``N_opt = k_N C^a`` and
``D_opt = k_D C^b`` with bootstrap intervals over runs.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ._base import FitError, check_positive, percentile_interval
from ._extrapolation import cluster_log
from ._engine import multinomial_weights


def group_budgets(C: np.ndarray, rtol: float = 0.1) -> np.ndarray:
    """IsoFLOP budget labels (0 = smallest) by clustering ``log C``: runs within a factor ``1 + rtol`` of a
    neighbour share a budget; a group spanning more than 3x (continuous, noisy C) is split at its
    widest gaps (:func:`scalinglab.laws._extrapolation.cluster_log`)."""
    return cluster_log(np.asarray(C, float), rtol=rtol)


def _loglog_line(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None):
    """Weighted least squares of log y on log x, batched over rows of w: (slope, intercept)."""
    lx, ly = np.log(x), np.log(y)
    if w is None:
        w = np.ones_like(lx)
    w = np.atleast_2d(w)
    sw = w.sum(1)
    mx, my = (w * lx).sum(1) / sw, (w * ly).sum(1) / sw
    cov = (w * (lx - mx[:, None]) * (ly - my[:, None])).sum(1)
    var = (w * (lx - mx[:, None]) ** 2).sum(1)
    slope = cov / np.where(var > 0, var, np.nan)
    return slope, my - slope * mx


@dataclass
class FrontierFit:
    """``N_opt = k_N C^a``, ``D_opt = k_D C^b`` with bootstrap samples of (a, k_N, b, k_D)."""

    a: float
    k_N: float
    b: float
    k_D: float
    samples: dict | None = None
    level: float = 0.95

    def compute_optimal(self, C):
        C = np.asarray(C, float)
        return self.k_N * np.power(C, self.a), self.k_D * np.power(C, self.b)

    def intervals(self, level: float | None = None) -> dict:
        if not self.samples:
            return {}
        level = self.level if level is None else level
        return {k: [float(x) for x in percentile_interval(np.asarray(v), level)] for k, v in self.samples.items()}

    def compute_optimal_interval(self, C, level: float | None = None):
        level = self.level if level is None else level
        C = np.atleast_1d(np.asarray(C, float))[None, :]
        s = {k: np.asarray(v)[:, None] for k, v in self.samples.items()}
        return (percentile_interval(s["k_N"] * C ** s["a"], level), percentile_interval(s["k_D"] * C ** s["b"], level))


class _FrontierApproach:
    """Shared by Approaches 1 and 2: a fitted :class:`FrontierFit` answers every question."""

    def _set_frontier(self, Cs, Ns, boot, data_range: dict) -> None:
        self.frontier_ = _frontier_from(Cs, Ns, boot, self.level)
        self.params_ = {"a": self.frontier_.a, "b": self.frontier_.b, "k_N": self.frontier_.k_N, "k_D": self.frontier_.k_D}
        self.data_range_ = data_range

    def compute_optimal(self, C):
        return self.frontier_.compute_optimal(C)

    def intervals(self, level=None):
        return self.frontier_.intervals(level)

    def all_params(self):
        return dict(self.params_)

    def __repr__(self):
        if not hasattr(self, "params_"):
            return f"{type(self).__name__}(n_bootstrap={self.n_bootstrap})"
        return f"{type(self).__name__}(a={self.params_['a']:.4f}, b={self.params_['b']:.4f})"


class IsoFLOPApproach(_FrontierApproach):
    """Approach 2: for each compute budget fit a parabola of loss against log N; its minimum is N_opt(C).

    Learned attributes: ``budgets_`` (list of dicts: C, N_opt, D_opt, loss_min, n_runs, edge),
    ``dropped_budgets_`` (budgets without an interior minimum, with the reason; each also warns),
    ``frontier_`` (:class:`FrontierFit`), ``params_`` (a, b, k_N, k_D).

    Without budget labels the runs are grouped by clustering ``log C`` (:func:`group_budgets`).

    Args:
        budget_rtol: runs whose C agree within this fraction form one IsoFLOP budget (when no labels
            are given).
        min_runs_per_budget: a budget needs at least this many distinct sizes (>= 3 for a parabola).
    """

    law_name = "approach2"

    def __init__(self, *, n_bootstrap: int = 1000, level: float = 0.95, seed: int = 0, budget_rtol: float = 0.1,
                 min_runs_per_budget: int = 3):
        self.n_bootstrap = n_bootstrap
        self.level = level
        self.seed = seed
        self.budget_rtol = budget_rtol
        self.min_runs_per_budget = min_runs_per_budget

    def fit(self, N, D, L, C=None, budgets=None) -> "IsoFLOPApproach":
        N, D, L = check_positive("N", N), check_positive("D", D), check_positive("loss", L)
        C = 6.0 * N * D if C is None else check_positive("C", C)
        labels = group_budgets(C, self.budget_rtol) if budgets is None else np.unique(np.asarray(budgets), return_inverse=True)[1]
        groups = [np.flatnonzero(labels == g) for g in np.unique(labels)]
        groups = [g for g in groups if np.unique(N[g]).size >= self.min_runs_per_budget]
        if len(groups) < 2:
            raise FitError(f"Approach 2 needs at least 2 compute budgets with >= {self.min_runs_per_budget} model sizes "
                           f"each; found {len(groups)}", {"n_runs": int(N.size)})
        self.budgets_, self.dropped_budgets_, kept = [], [], []
        for g in groups:
            x, y = np.log(N[g]), L[g]
            Cg = float(np.exp(np.log(C[g]).mean()))
            coef = _parabola(x, y, np.ones((1, x.size)))[0]
            if not coef[2] > 0:
                reason = "loss vs log N is not convex (no minimum)"
            else:
                logn = -coef[1] / (2 * coef[2])
                reason = None if x.min() < logn < x.max() else (
                    f"the fitted minimum N={np.exp(logn):.3g} lies outside the sizes trained "
                    f"({np.exp(x.min()):.3g}..{np.exp(x.max()):.3g})")
            if reason is not None:
                self.dropped_budgets_.append({"C": Cg, "n_runs": int(g.size), "reason": reason})
                warnings.warn(f"IsoFLOP budget C={Cg:.3g} dropped: {reason}; widen its grid of sizes to use it",
                              RuntimeWarning, stacklevel=2)
                continue
            kept.append(g)
            n_opt = float(np.exp(logn))
            self.budgets_.append({"C": Cg, "N_opt": n_opt, "D_opt": Cg / (6 * n_opt),
                                  "loss_min": float(coef[0] + coef[1] * logn + coef[2] * logn ** 2),
                                  "n_runs": int(g.size), "edge": False, "coef": coef.tolist(),
                                  "N": N[g].tolist(), "loss": y.tolist()})
        if len(kept) < 2:
            raise FitError(f"Approach 2 needs at least 2 IsoFLOP budgets with an interior minimum; {len(kept)} of "
                           f"{len(groups)} have one", {"n_runs": int(N.size), "dropped_budgets": self.dropped_budgets_})
        rng = np.random.default_rng(self.seed)
        R = self.n_bootstrap
        boot_logn = np.full((R, len(kept)), np.nan) if R else None
        for j, g in enumerate(kept):
            if R:
                x, y = np.log(N[g]), L[g]
                w = multinomial_weights(x.size, R, rng)
                cb = _parabola(x, y, w)
                ok = cb[:, 2] > 0
                # a resample whose minimum leaves the sizes trained is held at the grid's edge
                boot_logn[ok, j] = np.clip(-cb[ok, 1] / (2 * cb[ok, 2]), x.min(), x.max())
        Cs = np.array([b["C"] for b in self.budgets_])
        Ns = np.array([b["N_opt"] for b in self.budgets_])
        self._set_frontier(Cs, Ns, None if not R else np.exp(boot_logn),
                           {"C_min": float(Cs.min()), "C_max": float(Cs.max()), "n_budgets": len(kept),
                            "n_runs": int(sum(g.size for g in kept)), "N_min": float(N.min()), "N_max": float(N.max())})
        return self


def _parabola(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted quadratic fits y ~ c0 + c1 x + c2 x^2, one per row of w: (R, 3)."""
    xc = x.mean()
    X = np.stack([np.ones_like(x), x - xc, (x - xc) ** 2], axis=1)
    XtW = X.T[None, :, :] * w[:, None, :]
    A = XtW @ X + 1e-12 * np.eye(3)
    rhs = XtW @ y
    c = np.linalg.solve(A, rhs[..., None])[..., 0]
    # back to the uncentred basis
    return np.stack([c[:, 0] - c[:, 1] * xc + c[:, 2] * xc ** 2, c[:, 1] - 2 * c[:, 2] * xc, c[:, 2]], axis=1)


def _frontier_from(Cs, Ns, boot_N, level) -> FrontierFit:
    a, logk = _loglog_line(Cs, Ns)
    Ds = Cs / (6 * Ns)
    b, logkd = _loglog_line(Cs, Ds)
    samples = None
    if boot_N is not None:
        valid = np.isfinite(boot_N).all(axis=1)
        bn = boot_N[valid]
        sa, sk = _loglog_line(np.broadcast_to(Cs, bn.shape), bn)
        sb, skd = _loglog_line(np.broadcast_to(Cs, bn.shape), Cs[None, :] / (6 * bn))
        samples = {"a": sa, "k_N": np.exp(sk), "b": sb, "k_D": np.exp(skd)}
    return FrontierFit(a=float(a[0]), k_N=float(np.exp(logk[0])), b=float(b[0]), k_D=float(np.exp(logkd[0])),
                       samples=samples, level=level)


class EnvelopeApproach(_FrontierApproach):
    """Approach 1: the lower envelope of all training curves over FLOPs gives N_opt(C).

    Each curve is interpolated in log-log space on a common log-spaced FLOP grid; at each grid point
    the run with the lowest loss is the compute-optimal one. Bootstrap: resample runs.

    Learned attributes: ``envelope_`` (C, N, loss of the envelope points), ``frontier_``, ``params_``.
    """

    law_name = "approach1"

    def __init__(self, *, n_points: int = 40, n_bootstrap: int = 1000, level: float = 0.95, seed: int = 0,
                 min_runs: int = 3):
        self.n_points = n_points
        self.n_bootstrap = n_bootstrap
        self.level = level
        self.seed = seed
        self.min_runs = min_runs

    def fit(self, curves: list[dict]) -> "EnvelopeApproach":
        """Args:
            curves: one dict per run with ``N`` (float), ``flops`` and ``loss`` (arrays along training).
        """
        curves = [c for c in curves if len(c["flops"]) >= 2]
        if len(curves) < self.min_runs:
            raise FitError(f"Approach 1 needs training curves of at least {self.min_runs} runs; got {len(curves)}")
        lo = max(np.min([np.min(c["flops"]) for c in curves]), 1e-300)
        hi = np.max([np.max(c["flops"]) for c in curves])
        grid = np.logspace(np.log10(lo), np.log10(hi), self.n_points)
        Ns = np.array([float(c["N"]) for c in curves])
        table = np.full((len(curves), grid.size), np.inf)
        for i, c in enumerate(curves):
            f, l = np.asarray(c["flops"], float), np.asarray(c["loss"], float)
            ok = np.isfinite(l) & (f > 0) & (l > 0)
            f, l = f[ok], l[ok]
            inside = (grid >= f.min()) & (grid <= f.max())
            table[i, inside] = np.exp(np.interp(np.log(grid[inside]), np.log(f), np.log(l)))
        best = np.argmin(table, axis=0)
        covered = np.isfinite(table[best, np.arange(grid.size)])
        # The envelope only carries information where more than one run competes.
        competing = (np.isfinite(table).sum(axis=0) >= 2) & covered
        if competing.sum() < 3:
            raise FitError("Approach 1: the training curves overlap at fewer than 3 FLOP levels")
        Cs, Nenv = grid[competing], Ns[best[competing]]
        self.envelope_ = {"C": Cs.tolist(), "N": Nenv.tolist(), "loss": table[best[competing], np.flatnonzero(competing)].tolist()}
        boot = None
        if self.n_bootstrap:
            rng = np.random.default_rng(self.seed)
            w = multinomial_weights(len(curves), self.n_bootstrap, rng) > 0
            masked = np.where(w[:, :, None], table[None, :, :], np.inf)[:, :, competing]
            pick = np.argmin(masked, axis=1)
            boot = Ns[pick].astype(float)
            boot[~np.isfinite(np.min(masked, axis=1))] = np.nan
        self._set_frontier(Cs, Nenv, boot, {"C_min": float(Cs.min()), "C_max": float(Cs.max()), "n_runs": len(curves)})
        return self
