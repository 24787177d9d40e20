"""Shared machinery of the fitted laws: estimator contract, bootstrap intervals, (de)serialisation."""
from __future__ import annotations

import itertools
import warnings
from typing import Any

import numpy as np

from . import _engine, _extrapolation
from .._names import FitError  # noqa: F401  (defined where the command line can import it cheaply)


def percentile_interval(samples: np.ndarray, level: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided percentile interval of bootstrap ``samples`` at confidence ``level``."""
    tail = 50.0 * (1.0 - level)
    lo, hi = np.nanpercentile(samples, [tail, 100.0 - tail], axis=axis)
    return lo, hi


def grid_product(*axes: np.ndarray) -> np.ndarray:
    """Cartesian product of 1-D axes as an (S, P) array of starts."""
    return np.array(list(itertools.product(*axes)), dtype=float)


def check_positive(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    bad = np.flatnonzero(~np.isfinite(arr) | (arr <= 0))
    if bad.size:
        raise ValueError(f"{name} must be finite and positive; bad value(s) at index {bad[:10].tolist()}: "
                         f"{arr[bad[:10]].tolist()}")
    return arr


class PowerSumLaw:
    """Base of the laws fitted by the one engine (see :mod:`scalinglab.laws._engine`).

    Subclasses define ``law_name``, ``param_names``, ``variables``, ``_spec``, ``_default_grid``,
    ``_default_bounds``, ``_to_theta``/``_from_theta`` and ``_predict_from``; a law outside the
    engine's family also overrides ``_solve`` and ``_refit_many``.

    Args:
        huber_delta: Huber delta on log-loss residuals.
        n_bootstrap: bootstrap refits for the intervals (0: none).
        bootstrap: ``"residual"`` (default) keeps the design (a ladder's sizes and budgets are chosen,
            not sampled) and refits the fitted log-losses plus smoothed resampled residuals;
            ``"pairs"`` resamples runs (over-covers on designed ladders: 80% intervals cover ~0.89,
            ``benchmarks/bench_calibration.py``; it also takes resampling ``groups``).
        extrapolation_error: calibrate the model-error term of prediction intervals by rolling-origin
            backtests on the fitted runs (see :mod:`scalinglab.laws._extrapolation`).
        allow_bounds: keep a fit whose parameters end on a bound (flagged) instead of refusing it.
    """

    law_name = "power-sum"
    param_names: tuple[str, ...] = ()
    variables: tuple[str, ...] = ()
    _spec: _engine.PowerSumSpec
    _calibration_bootstrap = 100
    _init_extra: tuple[str, ...] = ()    # constructor arguments of a subclass, for _clone

    def __init__(self, *, huber_delta: float = 1e-3, n_bootstrap: int = 1000, level: float = 0.95,
                 grid: np.ndarray | None = None, bounds: np.ndarray | None = None, seed: int = 0,
                 n_keep: int = 64, allow_bounds: bool = False, n_jobs: int | None = None,
                 bootstrap: str = "residual", extrapolation_error: bool = True):
        self.huber_delta = huber_delta
        self.n_bootstrap = n_bootstrap
        self.level = level
        self.grid = grid
        self.bounds = bounds
        self.seed = seed
        self.n_keep = n_keep
        self.allow_bounds = allow_bounds
        self.n_jobs = n_jobs
        self.bootstrap = bootstrap
        self.extrapolation_error = extrapolation_error

    # -- subclass hooks ----------------------------------------------------------------------------
    def _default_grid(self) -> np.ndarray:
        raise NotImplementedError

    def _default_bounds(self) -> np.ndarray:
        raise NotImplementedError

    def _from_theta(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _to_theta(self, params: dict[str, float]) -> np.ndarray:
        raise NotImplementedError

    def _derived(self, p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {}

    def _solve(self, logX, logL, grid, bounds) -> _engine.EngineResult:
        """Multi-start fit of one data set."""
        return _engine.fit_power_sum(logX, logL, self._spec, grid, bounds, self.huber_delta, n_keep=self.n_keep,
                                     n_jobs=self.n_jobs, seed=self.seed)

    def _refit_many(self, logX, logL, weights, warm, bounds):
        """Refit many problems at once (rows of ``weights`` or of a 2-D ``logL``), each from every ``warm`` start.

        Returns:
            theta (R, P) of each problem's best start, converged (R,).
        """
        return _engine.refit_problems(logX, logL, self._spec, warm, bounds, self.huber_delta, weights,
                                      n_jobs=self.n_jobs)

    def _clone(self, **changes) -> "PowerSumLaw":
        """An unfitted copy with the same settings (and ``changes``)."""
        names = ("huber_delta", "n_bootstrap", "level", "grid", "bounds", "seed", "n_keep", "allow_bounds", "n_jobs",
                 "bootstrap", "extrapolation_error") + self._init_extra
        kw = {k: getattr(self, k) for k in names}
        kw.update(changes)
        return type(self)(**kw)

    @property
    def _n_theta(self) -> int:
        return self._spec.n_params

    # -- estimator contract ------------------------------------------------------------------------
    @property
    def min_runs(self) -> int:
        return self._n_theta + 1

    def _axes(self, X: list[np.ndarray]) -> dict[str, np.ndarray]:
        """The variables a prediction can extrapolate along, by name (C added for (N, D) laws)."""
        axes = dict(zip(self.variables, X))
        if self.variables == ("N", "D"):
            axes["C"] = 6.0 * X[0] * X[1]
        return axes

    def _check_identifiable(self, X: list[np.ndarray]) -> None:
        """Refuse data that cannot determine a power law in each variable (fewer than 3 distinct values)."""
        for name, x in zip(self.variables, X):
            distinct = np.unique(np.round(np.log(x), 9))
            if distinct.size < 3:
                shown = ", ".join(f"{v:.4g}" for v in np.exp(distinct))
                raise FitError(f"{type(self).__name__}: the runs have only {distinct.size} distinct value(s) of "
                               f"{name} ({shown}); a power law in {name} needs at least 3 to identify its scale "
                               "and exponent", {"variable": name, "distinct_values": np.exp(distinct).tolist(),
                                                 "n_runs": int(x.size)})

    def _fit_arrays(self, X: list[np.ndarray], L: np.ndarray, groups: np.ndarray | None = None):
        L = check_positive("loss", L)
        X = [check_positive(name, x) for name, x in zip(self.variables, X)]
        if any(x.size != L.size for x in X):
            raise ValueError(f"{', '.join(self.variables)} and loss must have the same length")
        if self.bootstrap not in ("pairs", "residual"):
            raise ValueError(f"bootstrap must be 'pairs' or 'residual', not {self.bootstrap!r}")
        if groups is not None and self.bootstrap != "pairs":
            raise ValueError("resampling groups apply to the pairs bootstrap; pass bootstrap='pairs'")
        if L.size < self.min_runs:
            raise FitError(f"{type(self).__name__} has {self._n_theta} parameters and needs at least "
                           f"{self.min_runs} runs; got {L.size}", {"n_runs": int(L.size), "min_runs": self.min_runs})
        self._check_identifiable(X)
        logX = np.log(np.column_stack(X))
        logL = np.log(L)
        bounds = self._default_bounds() if self.bounds is None else np.asarray(self.bounds, float)
        grid = self._default_grid() if self.grid is None else np.asarray(self.grid, float)
        res = self._solve(logX, logL, grid, bounds)
        hit = _engine.at_bounds(res.theta, bounds)
        diagnostics = {"objective": res.objective, "n_starts": res.n_starts, "converged": res.converged,
                       "theta": res.theta.tolist(), "at_bounds": [n for n, h in zip(self._theta_names(), hit) if h]}
        if not res.converged:
            raise FitError(f"{type(self).__name__} did not converge (objective {res.objective:.4g})", diagnostics)
        if hit.any() and not self.allow_bounds:
            raise FitError(f"{type(self).__name__}: parameter(s) {diagnostics['at_bounds']} ended at their bounds "
                           f"{bounds[hit].tolist()}; the data do not determine them (widen the bounds, add runs, "
                           "or pass allow_bounds=True)", diagnostics)
        self.theta_ = res.theta
        self.objective_ = res.objective
        self.converged_ = res.converged
        self.n_runs_ = int(L.size)
        self.minima_ = res.minima
        self.params_ = {k: float(v[0]) for k, v in self._from_theta(res.theta[None, :]).items()}
        logpred = np.log(self._predict_from(self.params_, *np.exp(logX.T)))
        self.residuals_ = logL - logpred
        dof = max(1, L.size - self._n_theta)
        self.noise_inflation_ = float(np.sqrt(L.size / dof))
        self.noise_scale_ = float(np.sqrt(np.mean(self.residuals_ ** 2)) * self.noise_inflation_)
        axes = self._axes(X)
        self.data_range_ = {f"{name}_min": float(np.min(v)) for name, v in axes.items()}
        self.data_range_.update({f"{name}_max": float(np.max(v)) for name, v in axes.items()})
        self.data_range_["n_runs"] = int(L.size)
        self.diagnostics_ = diagnostics
        self.bootstrap_params_ = None
        self.extrapolation_ = None
        if self.n_bootstrap:
            rng = np.random.default_rng(self.seed)
            good = res.minima[res.minima_objective <= 2.0 * res.objective + 1e-12][:3]
            if self.bootstrap == "pairs":
                weights, targets = _engine.multinomial_weights(L.size, self.n_bootstrap, rng, groups), logL
            else:
                weights, targets = None, logpred[None, :] + self._smoothed_residuals(rng, (self.n_bootstrap, L.size))
            thetas, conv = self._refit_many(logX, targets, weights, good, bounds)
            self.bootstrap_dropped_ = int((~conv).sum())
            self.bootstrap_converged_ = float(conv.mean())
            if conv.sum() < max(10, self.n_bootstrap // 5):
                raise FitError(f"{type(self).__name__}: only {int(conv.sum())} of {self.n_bootstrap} bootstrap refits "
                               "converged; the intervals cannot be trusted", dict(diagnostics, bootstrap_converged=int(conv.sum())))
            self.bootstrap_params_ = {k: np.asarray(v, float) for k, v in self._from_theta(thetas[conv]).items()}
            self._check_inside_own_intervals(diagnostics)
            if self.extrapolation_error:
                self.extrapolation_ = self._calibrate_extrapolation(X, L)
        return self

    def refit_resamples(self, X: list, L, weights) -> dict[str, np.ndarray]:
        """Parameters refitted on resamples of the runs this law was fitted to, given as run multiplicities
        ``weights`` (R, n), each warm-started at this fit (a bootstrap whose draws the caller controls, e.g.
        one draw shared by several laws). Refits that do not converge are NaN.

        Args:
            X: the fitted runs' variables (as passed to ``fit``); L: their losses.
        """
        self._check_fitted()
        L = check_positive("loss", L)
        logX = np.log(np.column_stack([check_positive(name, x) for name, x in zip(self.variables, X)]))
        bounds = self._default_bounds() if self.bounds is None else np.asarray(self.bounds, float)
        thetas, conv = self._refit_many(logX, np.log(L), np.asarray(weights, float), self.theta_[None, :], bounds)
        thetas = np.where(conv[:, None], thetas, np.nan)
        return {k: np.asarray(v, float) for k, v in self._from_theta(thetas).items()}

    def _smoothed_residuals(self, rng: np.random.Generator, size) -> np.ndarray:
        """Residual draws for the residual bootstrap: the smoothed bootstrap (Silverman 1986, Sec. 6.4).

        A robust (near-L1) fit passes exactly through about as many runs as it has parameters; plain
        resampling would give those zero residuals a point mass that makes every refit too stable.
        Each draw is a resampled centred residual plus Gaussian kernel noise (Silverman's bandwidth),
        rescaled to keep the residual variance, times the degrees-of-freedom inflation.
        """
        r = self.residuals_ - np.median(self.residuals_)
        sd = float(np.std(r)) or 1e-12
        h = 1.06 * sd * r.size ** -0.2
        draws = (rng.choice(r, size=size) + h * rng.standard_normal(size)) / np.sqrt(1.0 + (h / sd) ** 2)
        return draws * self.noise_inflation_

    def _check_inside_own_intervals(self, diagnostics: dict) -> None:
        iv = self.intervals()
        values = self.all_params()
        outside = {k: [values[k], iv[k]] for k in iv if k in values
                   and not (iv[k][0] - 1e-9 * abs(iv[k][0]) <= values[k] <= iv[k][1] + 1e-9 * abs(iv[k][1]))}
        if outside:
            shown = "; ".join(f"{k}={v:.4g} outside [{lo:.4g}, {hi:.4g}]" for k, (v, (lo, hi)) in outside.items())
            raise FitError(f"{type(self).__name__}: the estimate lies outside its own {self.level:.0%} bootstrap "
                           f"interval ({shown}); the fit is unstable under resampling (add runs or budgets)",
                           dict(diagnostics, outside_interval=outside))

    def _calibrate_extrapolation(self, X: list[np.ndarray], L: np.ndarray) -> dict:
        """Rolling-origin backtests on the fitted runs; calibrates ``kappa`` (module docstring of
        :mod:`scalinglab.laws._extrapolation`)."""
        axes = self._axes(X)
        cut_axes = {k: v for k, v in axes.items() if k in ("C", "N")} if "C" in axes else axes
        cuts = _extrapolation.origin_cuts(cut_axes, min_fit_runs=self.min_runs + 2)
        rows, skipped = [], []
        for cut in cuts:
            sub = self._clone(n_bootstrap=min(self.n_bootstrap, self._calibration_bootstrap), extrapolation_error=False,
                              allow_bounds=False)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    sub._fit_arrays([x[cut.fit] for x in X], L[cut.fit])
            except (FitError, ValueError) as e:
                skipped.append({"axis": cut.axis, "fitted_max": cut.fitted_max, "reason": str(e)})
                continue
            Xt = [x[cut.test] for x in X]
            logpred = np.log(sub.predict(*Xt))
            pb = {k: v[:, None] for k, v in sub.bootstrap_params_.items()}
            var_par = np.var(np.log(sub._predict_from(pb, *[x[None, :] for x in Xt])), axis=0)
            u = sub.extrapolation_distance(*Xt)
            for i, (lp, v, ui) in enumerate(zip(logpred, var_par, u)):
                rows.append({"axis": cut.axis, "fitted_max": cut.fitted_max, "u": float(ui), "log_residual":
                             float(np.log(L[cut.test][i]) - lp), "var_params": float(v)})
        out = {"method": "rolling-origin", "n_cuts": len(cuts) - len(skipped), "n_cuts_skipped": len(skipped),
               "skipped": skipped, "n_predictions": len(rows), "noise_scale": self.noise_scale_}
        if not rows:
            out.update({"kappa": None, "calibrated_to_factor": 1.0, "misspecified": None,
                        "note": "no rolling-origin cut could be fitted; prediction intervals carry no model-error term"})
            return out
        r = np.array([x["log_residual"] for x in rows])
        u = np.array([x["u"] for x in rows])
        s2 = self.noise_scale_ ** 2 + np.array([x["var_params"] for x in rows])
        model = _extrapolation.fit_model_error(r, u, s2)
        out.update(model)
        out["calibrated_to_factor"] = float(10 ** u.max())
        out["misspecified"] = bool(model["p_value"] < 0.05 and model["kappa"] > 0)
        out["predictions"] = rows
        return out

    def _theta_names(self) -> list[str]:
        k, m = self._spec.k, self._spec.n_slots
        names = [f"a{i}" for i in range(k)] + [f"p{i}" for i in range(m)]
        return names + (["e"] if self._spec.constant else [])

    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() or from_params() first")

    @property
    def has_intervals(self) -> bool:
        return getattr(self, "bootstrap_params_", None) is not None

    def all_params(self) -> dict[str, float]:
        """Fitted parameters plus derived quantities (e.g. exponents a and b)."""
        self._check_fitted()
        p = {k: np.asarray(v) for k, v in self.params_.items()}
        out = dict(self.params_)
        out.update({k: float(v) for k, v in self._derived(p).items()})
        return out

    def intervals(self, level: float | None = None) -> dict[str, list[float]]:
        """Percentile bootstrap intervals for every parameter and derived quantity (empty without bootstrap)."""
        self._check_fitted()
        if not self.has_intervals:
            return {}
        level = self.level if level is None else level
        samples = dict(self.bootstrap_params_)
        samples.update(self._derived(self.bootstrap_params_))
        return {k: [float(x) for x in percentile_interval(v, level)] for k, v in samples.items()}

    def predict(self, *X) -> np.ndarray:
        """Point prediction of the loss."""
        self._check_fitted()
        return self._predict_from(self.params_, *[np.asarray(x, float) for x in X])

    def extrapolation_distance(self, *X) -> np.ndarray:
        """``u = log10`` of how far each point lies beyond the fitted runs (0 inside; see
        :func:`scalinglab.laws._extrapolation.extrapolation_distance`)."""
        self._check_fitted()
        X = [np.atleast_1d(np.asarray(x, float)) for x in X]
        return _extrapolation.extrapolation_distance(self._axes(X), getattr(self, "data_range_", {}) or {})

    def predict_distribution(self, *X, include_observation_noise: bool = True,
                             include_extrapolation_error: bool = True, seed: int = 0) -> np.ndarray:
        """Samples of the loss at each point, (draws, m): bootstrap parameters, optionally times a resampled
        residual (observation noise) and a model-error draw growing with extrapolation distance (then each
        bootstrap fit is repeated to give at least 4,000 draws).

        With both options off this is the distribution behind the confidence interval; with both on,
        behind the prediction interval of a new run.
        """
        self._check_fitted()
        if not self.has_intervals:
            raise RuntimeError("this law has no bootstrap; fit with n_bootstrap > 0 for intervals")
        Xb = [np.atleast_1d(np.asarray(x, float))[None, :] for x in X]
        pb = {k: v[:, None] for k, v in self.bootstrap_params_.items()}
        preds = self._predict_from(pb, *Xb)
        preds = np.broadcast_to(preds, (preds.shape[0], max(x.shape[1] for x in Xb)))
        if include_observation_noise or include_extrapolation_error:
            # each bootstrap fit is repeated so that the added noise is sampled finely (>= 4,000 draws)
            preds = np.repeat(preds, max(1, -(-4000 // preds.shape[0])), axis=0)
        preds = preds.copy()
        rng = np.random.default_rng(seed)
        if include_observation_noise and getattr(self, "residuals_", np.array([])).size:
            centred = self.residuals_ - np.median(self.residuals_)
            inflation = getattr(self, "noise_inflation_", 1.0)
            preds *= np.exp(rng.choice(centred * inflation, size=preds.shape))
        kappa = (getattr(self, "extrapolation_", None) or {}).get("kappa")
        if include_extrapolation_error and kappa:
            u = self.extrapolation_distance(*X)
            preds *= np.exp(rng.normal(0.0, 1.0, preds.shape) * kappa * u[None, :])
        return preds

    def predict_interval(self, *X, kind: str = "confidence", level: float | None = None, seed: int = 0):
        """Interval of the predicted loss: ``confidence`` (parameter uncertainty, from the bootstrap) or
        ``prediction`` (a new run: parameters, observation noise and extrapolation error).

        Returns:
            (lower, upper) arrays.
        """
        if kind not in {"confidence", "prediction"}:
            raise ValueError(f"kind must be 'confidence' or 'prediction', not {kind!r}")
        level = self.level if level is None else level
        full = kind == "prediction"
        preds = self.predict_distribution(*X, include_observation_noise=full, include_extrapolation_error=full,
                                          seed=seed)
        lo, hi = percentile_interval(preds, level)
        return lo, hi

    @classmethod
    def from_params(cls, **params: float) -> "PowerSumLaw":
        """A law with given parameters and no data (published presets)."""
        missing = set(cls.param_names) - set(params)
        if missing:
            raise ValueError(f"{cls.__name__}.from_params is missing {sorted(missing)}")
        law = cls(n_bootstrap=0)
        law.params_ = {k: float(params[k]) for k in cls.param_names}
        law.bootstrap_params_ = None
        law.data_range_ = {}
        law.extrapolation_ = None
        return law

    def to_dict(self) -> dict:
        """JSON-ready state: law, settings, parameters, bootstrap samples, residuals, data range."""
        self._check_fitted()
        return {
            "law": self.law_name,
            "settings": {"huber_delta": self.huber_delta, "n_bootstrap": self.n_bootstrap, "level": self.level,
                         "seed": self.seed, "bootstrap": self.bootstrap, "extrapolation_error": self.extrapolation_error},
            "params": self.all_params(),
            "intervals": self.intervals(),
            "objective": getattr(self, "objective_", None),
            "data_range": getattr(self, "data_range_", {}),
            "bootstrap": None if not self.has_intervals else {k: v.tolist() for k, v in self.bootstrap_params_.items()},
            "bootstrap_dropped": getattr(self, "bootstrap_dropped_", 0),
            "residuals": getattr(self, "residuals_", np.array([])).tolist(),
            "noise_inflation": getattr(self, "noise_inflation_", 1.0),
            "extrapolation": getattr(self, "extrapolation_", None),
        }

    @classmethod
    def from_dict(cls, state: dict) -> "PowerSumLaw":
        return cls(**state.get("settings", {}))._restore(state)

    def _restore(self, state: dict) -> "PowerSumLaw":
        """Set the learned attributes from :meth:`to_dict` output."""
        self.params_ = {k: float(state["params"][k]) for k in self.param_names}
        self.objective_ = state.get("objective")
        self.data_range_ = state.get("data_range", {})
        boot = state.get("bootstrap")
        self.bootstrap_params_ = None if boot is None else {k: np.asarray(v, float) for k, v in boot.items()}
        self.residuals_ = np.asarray(state.get("residuals", []), float)
        self.noise_inflation_ = float(state.get("noise_inflation", 1.0))
        self.bootstrap_dropped_ = int(state.get("bootstrap_dropped", 0))
        self.extrapolation_ = state.get("extrapolation")
        return self

    def __repr__(self) -> str:
        if not hasattr(self, "params_"):
            return f"{type(self).__name__}(huber_delta={self.huber_delta}, n_bootstrap={self.n_bootstrap})"
        body = ", ".join(f"{k}={v:.5g}" for k, v in self.params_.items())
        return f"{type(self).__name__}({body})"
