"""A loss-curve law over the learning-rate schedule, fitted on whole training curves.

Tissue et al. 2024, "Scaling Law with Learning Rate Annealing", https://arxiv.org/abs/2408.11029::

    L(s) = L0 + A * S1(s)^-alpha - C * S2(s)

``S1`` is the forward area (the sum of the learning rate over the steps so far) and ``S2`` the annealing
area (:func:`schedule_areas`). On this project's ladders the linear ``- C * S2`` term, fitted on short
cooldowns, over-predicted the gain of the longer cooldown of a 10x run (forecasts 5.9% and 18.6% low on
two ladders; see ``docs/experiments.md``), so the annealing gain here is the saturating loss drop of the multi-power law
(Luo et al. 2025, https://arxiv.org/abs/2503.12811): each LR drop ``d_k`` buys up to ``D * d_k``, reached
as LR area ``a_k(s)`` accumulates after it. With the model size as a second variable::

    L(N, s) = E + A * N^-alpha + B * S1(s)^-beta - D * sum_k d_k * (1 - (1 + c * a_k(s))^-gamma)

with the learning rate taken relative to each run's peak (each size has its own peak LR), ``S1`` in tokens
at the peak rate and ``a_k`` in steps at the peak rate. The law is linear in (E, A, B, D) for fixed
(alpha, beta, c, gamma), so it is fitted by variable projection: non-negative least squares of the relative
residuals for the linear part, a bounded search over the rest. Intervals come from a cluster bootstrap over
training runs (the points of one curve are not independent); prediction intervals add the residual
scatter of final losses and a model-error term ``kappa * u`` calibrated by holding out the largest model
sizes (rolling origin along N). The distance ``u`` of a forecast is log10 of the largest factor beyond the
fitted points in N, in S1 and in the law's compute axis ``N * S1`` (parameters times tokens at the peak
rate, 6 N S1 ~ C): a run 10x beyond the ladder's compute is 10x out even where its N and its S1 each lie
inside the fitted range, as a large model trained as long as the small models' curves does.
"""
from __future__ import annotations

import numpy as np
from scipy import optimize

from ._base import FitError, percentile_interval
from ._extrapolation import cluster_log, extrapolation_distance, fit_model_error


def annealing_terms(lr: np.ndarray, steps, bins: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """The inputs of the saturating loss drop: for each of ``steps`` (1-based counts of finished steps),
    the LR drops so far (relative to the peak) and the LR area (in steps at the peak rate) trained since
    each drop. Consecutive drops are pooled into at most ``bins`` blocks (area at the block's mean).

    Returns:
        drops, areas: arrays (len(steps), bins), zero-padded.
    """
    e = np.asarray(lr, float) / float(np.max(lr))
    drop = np.maximum(0.0, np.concatenate([[0.0], e[:-1] - e[1:]]))
    cum = np.cumsum(e)
    where = np.flatnonzero(drop > 0)
    drops, areas = np.zeros((len(steps), bins)), np.zeros((len(steps), bins))
    for row, t in enumerate(steps):
        k = where[where < t]
        if not k.size:
            continue
        a = cum[t - 1] - cum[k - 1]
        for j, block in enumerate(np.array_split(np.arange(k.size), min(bins, k.size))):
            w = drop[k[block]]
            drops[row, j] = w.sum()
            areas[row, j] = float(np.average(a[block], weights=w))
    return drops, areas


def forward_area(lr: np.ndarray, tokens_per_step: float) -> np.ndarray:
    """``S1`` after each step of a schedule ``lr``: the LR relative to its peak, summed, in tokens."""
    lr = np.asarray(lr, float)
    return np.cumsum(lr / float(np.max(lr))) * float(tokens_per_step)


def schedule_areas(lr: np.ndarray, tokens_per_step: float, decay: float = 0.999) -> tuple[np.ndarray, np.ndarray]:
    """``S1`` (tokens at the peak rate) and ``S2`` (annealing area, in steps at the peak rate) after each
    step of a schedule ``lr`` (one value per step). Warmup (rising LR) adds no annealing area."""
    e = np.asarray(lr, float) / float(np.max(lr))
    s1 = forward_area(lr, tokens_per_step)
    drop = np.maximum(0.0, np.concatenate([[0.0], e[:-1] - e[1:]]))
    m = np.empty_like(e)
    acc = 0.0
    for i, d in enumerate(drop):
        acc = decay * acc + d
        m[i] = acc
    return s1, np.cumsum(m)


class AnnealingCurveLaw:
    """``L(N, s) = E + A N^-alpha + B S1^-beta - D sum_k d_k (1 - (1 + c a_k)^-gamma)`` over curve points.

    Learned attributes: ``params_``, ``bootstrap_params_`` (cluster bootstrap over runs), ``noise_``
    (relative scatter of the final losses), ``extrapolation_`` (kappa per decade beyond the fitted points,
    from held-out largest sizes), ``at_bounds_``, ``data_range_`` (with ``NS1_max``, the largest ``N * S1``).
    """

    law_name = "annealing-curve"
    param_names = ("E", "A", "alpha", "B", "beta", "D", "c", "gamma")
    _nonlinear_names = ("alpha", "beta", "c", "gamma")
    _bounds = ((0.02, 2.0), (0.02, 2.0), (-9.0, 2.0), (0.05, 10.0))   # alpha, beta, log10 c, gamma

    def __init__(self, *, n_bootstrap: int = 100, level: float = 0.95, seed: int = 0):
        self.n_bootstrap = n_bootstrap
        self.level = level
        self.seed = seed

    # -- fitting ------------------------------------------------------------------------------------
    @staticmethod
    def _drop(nl, drops, areas):
        return np.sum(drops * (1.0 - (1.0 + 10.0 ** nl[2] * areas) ** -nl[3]), axis=-1)

    def _columns(self, nl, N, S1, drops, areas):
        return np.stack([np.ones_like(N), N ** -nl[0], S1 ** -nl[1], -self._drop(nl, drops, areas)], axis=1)

    def _linear(self, nl, X):
        N, S1, drops, areas, L = X
        coef, rnorm = optimize.nnls(self._columns(nl, N, S1, drops, areas) / L[:, None], np.ones_like(L))
        return coef, rnorm

    def _solve(self, X, starts=None):
        best = None
        if starts is None:
            starts = [(a, b, c, 0.5) for a in (0.2, 0.5) for b in (0.2, 0.5) for c in (-3.0, -1.5)]
        for x0 in starts:
            res = optimize.minimize(lambda nl: self._linear(nl, X)[1] ** 2, x0, method="L-BFGS-B", bounds=self._bounds)
            if best is None or res.fun < best.fun:
                best = res
        coef, _ = self._linear(best.x, X)
        return np.array([coef[0], coef[1], best.x[0], coef[2], best.x[1], coef[3], 10.0 ** best.x[2], best.x[3]])

    @staticmethod
    def _nonlinear(theta):
        return (theta[2], theta[4], np.log10(theta[6]), theta[7])

    def fit(self, N, S1, drops, areas, L, groups, final) -> "AnnealingCurveLaw":
        """Fit on curve points.

        Args:
            N, S1, L: one value per curve point (parameters, forward area in tokens, loss).
            drops, areas: per point, the LR drops and the LR area since each (:func:`annealing_terms`).
            groups: the run (or shared trunk) each point belongs to (bootstrap clusters).
            final: True for the last point of each run (used for the noise and the held-out checks).
        """
        N, S1, L = (np.asarray(a, float) for a in (N, S1, L))
        drops, areas = np.asarray(drops, float), np.asarray(areas, float)
        groups, final = np.asarray(groups), np.asarray(final, bool)
        if np.unique(N).size < 3:
            raise FitError(f"a curve law over model size needs curves of at least 3 sizes, got {np.unique(N).size}")
        X = (N, S1, drops, areas, L)
        theta = self._solve(X)
        self.params_ = dict(zip(self.param_names, theta))
        nl = self._nonlinear(theta)
        self.at_bounds_ = [name for name, v, (lo, hi) in zip(self._nonlinear_names, nl, self._bounds)
                           if min(v - lo, hi - v) < 1e-4] + [k for k in ("E", "A", "B", "D") if self.params_[k] == 0.0]
        rel = np.log(L / self.predict(N, S1, drops, areas))
        self.noise_ = float(np.sqrt(np.mean(rel[final] ** 2) * final.sum() / max(1, final.sum() - 4)))
        self.data_range_ = {"N_min": float(N.min()), **self._maxima(N, S1),
                            "n_points": int(L.size), "n_runs": int(np.unique(groups).size)}
        rng = np.random.default_rng(self.seed)
        ids = np.unique(groups)
        index = {g: np.flatnonzero(groups == g) for g in ids}
        boot = []
        for _ in range(self.n_bootstrap):
            pick = np.concatenate([index[g] for g in rng.choice(ids, ids.size)])
            if np.unique(N[pick]).size < 3:
                continue
            boot.append(self._solve(tuple(a[pick] for a in X), starts=[nl]))
        self.bootstrap_params_ = np.array(boot) if boot else None
        self.extrapolation_ = self._calibrate(X, final, nl)
        return self

    def _calibrate(self, X, final, nl) -> dict:
        """Hold out the largest one or two size clusters, refit, forecast their final losses."""
        N, S1, drops, areas, L = X
        labels = cluster_log(N)
        order = sorted(set(labels.tolist()), key=lambda c: N[labels == c].min())
        r, u = [], []
        for k in (1, 2):
            if len(order) - k < 3:
                continue
            keep = np.isin(labels, order[:-k])
            test = ~keep & final
            theta = self._solve(tuple(a[keep] for a in X), starts=[nl])
            pred = self._predict_theta(theta[None], N[test], S1[test], drops[test], areas[test])[0]
            r.extend(np.log(L[test] / pred).tolist())
            u.extend(extrapolation_distance(self._axes(N[test], S1[test]), self._maxima(N[keep], S1[keep]))
                     .clip(min=1e-3).tolist())
        if not r:
            return {"kappa": 0.0, "n_forecasts": 0}
        out = fit_model_error(np.array(r), np.array(u), np.full(len(r), self.noise_ ** 2))
        out["n_forecasts"] = len(r)
        out["mean_abs_rel_error"] = float(np.mean(np.abs(np.expm1(r))))
        return out

    def bound_warnings(self) -> list[str]:
        """One sentence per parameter that ended on a bound of the search (``at_bounds_``): what it means
        for the forecast."""
        out, bounds = [], dict(zip(self._nonlinear_names, self._bounds))
        for name in self.at_bounds_:
            if name == "E":
                lo, hi = self.intervals().get("E", [0.0, float("nan")])
                out.append(f"curve law: E (the irreducible loss) ended at 0, its lower bound: the curves do not identify a "
                           f"floor, so the law extrapolates as a pure power law (bootstrap E in [{lo:.3g}, {hi:.3g}])")
            elif name in ("A", "B", "D"):
                term = {"A": "model-size", "B": "data", "D": "annealing"}[name]
                out.append(f"curve law: {name} ended at 0: the fit dropped the {term} term")
            elif name == "gamma" and self.params_["gamma"] >= bounds["gamma"][1] - 1e-4:
                out.append(f"curve law: gamma (the annealing drop's shape) ended at its upper bound "
                           f"{bounds['gamma'][1]:g}: the cooldowns do not tell the power-law saturation from its "
                           f"exponential limit, (1 + c a)^-gamma -> exp(-gamma c a)")
            else:
                value = self.params_[name]
                shown = [10.0 ** b for b in bounds[name]] if name == "c" else bounds[name]
                out.append(f"curve law: {name} = {value:.3g} ended on its search bound [{shown[0]:g}, {shown[1]:g}]: "
                           "the curves do not determine it")
        return out

    # -- prediction ---------------------------------------------------------------------------------
    def _predict_theta(self, theta, N, S1, drops, areas):
        N, S1 = np.asarray(N, float), np.asarray(S1, float)
        drops, areas = np.atleast_2d(np.asarray(drops, float)), np.atleast_2d(np.asarray(areas, float))
        out = []
        for t in np.atleast_2d(theta):
            nl = self._nonlinear(t)
            out.append(t[0] + t[1] * N ** -t[2] + t[3] * S1 ** -t[4] - t[5] * self._drop(nl, drops, areas))
        return np.array(out)

    def predict(self, N, S1, drops, areas) -> np.ndarray:
        theta = np.array([self.params_[k] for k in self.param_names])
        return self._predict_theta(theta, N, S1, drops, areas)[0]

    @staticmethod
    def _axes(N, S1) -> dict[str, np.ndarray]:
        """The variables a forecast can extrapolate along: N, S1 and the law's compute axis ``N * S1``."""
        N, S1 = np.asarray(N, float), np.asarray(S1, float)
        return {"N": N, "S1": S1, "NS1": N * S1}

    @classmethod
    def _maxima(cls, N, S1) -> dict[str, float]:
        return {f"{name}_max": float(v.max()) for name, v in cls._axes(N, S1).items()}

    def extrapolation_distance(self, N, S1) -> np.ndarray:
        """log10 of the largest factor beyond the fitted N, S1 and ``N * S1`` (the law's compute axis; 0 inside;
        smaller sizes than fitted do not count)."""
        return extrapolation_distance(self._axes(N, S1), {k: v for k, v in self.data_range_.items() if k.endswith("_max")})

    def predict_interval(self, N, S1, drops, areas, kind: str = "prediction") -> tuple[np.ndarray, np.ndarray]:
        """Confidence (bootstrap) or prediction interval (plus final-loss scatter and model error)."""
        if self.bootstrap_params_ is None:
            nan = np.full(np.size(N), np.nan)
            return nan, nan
        samples = self._predict_theta(self.bootstrap_params_, N, S1, drops, areas)
        if kind == "prediction":
            rng = np.random.default_rng(self.seed + 1)
            u = self.extrapolation_distance(N, S1)
            sd = np.sqrt(self.noise_ ** 2 + (self.extrapolation_.get("kappa", 0.0) * u) ** 2)
            samples = samples * np.exp(rng.normal(size=samples.shape) * sd)
        return percentile_interval(samples, self.level)

    def intervals(self) -> dict:
        if self.bootstrap_params_ is None:
            return {}
        lo, hi = percentile_interval(self.bootstrap_params_, self.level)
        return {k: [float(a), float(b)] for k, a, b in zip(self.param_names, lo, hi)}

    def to_json(self) -> dict:
        return {"law": self.law_name, "form": "L = E + A N^-alpha + B S1^-beta - D sum_k d_k (1 - (1 + c a_k)^-gamma)",
                "params": {k: float(v) for k, v in self.params_.items()}, "intervals": self.intervals(),
                "at_bounds": self.at_bounds_, "noise_rel": self.noise_, "data_range": self.data_range_,
                "extrapolation": self.extrapolation_,
                "n_bootstrap": 0 if self.bootstrap_params_ is None else len(self.bootstrap_params_)}
