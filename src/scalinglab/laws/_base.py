"""Shared machinery of the fitted laws: estimator contract, bootstrap intervals, (de)serialisation."""
from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from . import _engine


class FitError(RuntimeError):
    """A fit that cannot be trusted: too few runs, no convergence, parameters at their bounds.

    Attributes:
        diagnostics: what was found (counts, objective, which parameters hit which bound...).
    """

    def __init__(self, message: str, diagnostics: dict | None = None):
        super().__init__(message)
        self.diagnostics = diagnostics or {}


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
    ``_default_bounds``, ``_to_theta``/``_from_theta`` and ``_predict_from``.
    """

    law_name = "power-sum"
    param_names: tuple[str, ...] = ()
    variables: tuple[str, ...] = ()
    _spec: _engine.PowerSumSpec

    def __init__(self, *, huber_delta: float = 1e-3, n_bootstrap: int = 1000, level: float = 0.95,
                 grid: np.ndarray | None = None, bounds: np.ndarray | None = None, seed: int = 0,
                 n_keep: int = 64, allow_bounds: bool = False, n_jobs: int | None = None):
        self.huber_delta = huber_delta
        self.n_bootstrap = n_bootstrap
        self.level = level
        self.grid = grid
        self.bounds = bounds
        self.seed = seed
        self.n_keep = n_keep
        self.allow_bounds = allow_bounds
        self.n_jobs = n_jobs

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

    # -- estimator contract ------------------------------------------------------------------------
    @property
    def min_runs(self) -> int:
        return self._spec.n_params + 1

    def _fit_arrays(self, X: list[np.ndarray], L: np.ndarray, groups: np.ndarray | None = None):
        L = check_positive("loss", L)
        X = [check_positive(name, x) for name, x in zip(self.variables, X)]
        if any(x.size != L.size for x in X):
            raise ValueError(f"{', '.join(self.variables)} and loss must have the same length")
        if L.size < self.min_runs:
            raise FitError(f"{type(self).__name__} has {self._spec.n_params} parameters and needs at least "
                           f"{self.min_runs} runs; got {L.size}", {"n_runs": int(L.size), "min_runs": self.min_runs})
        logX = np.log(np.column_stack(X))
        logL = np.log(L)
        bounds = self._default_bounds() if self.bounds is None else np.asarray(self.bounds, float)
        grid = self._default_grid() if self.grid is None else np.asarray(self.grid, float)
        res = _engine.fit_power_sum(logX, logL, self._spec, grid, bounds, self.huber_delta, n_keep=self.n_keep,
                                    n_jobs=self.n_jobs)
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
        self.data_range_ = {f"{name}_min": float(np.exp(logX[:, i].min())) for i, name in enumerate(self.variables)}
        self.data_range_.update({f"{name}_max": float(np.exp(logX[:, i].max())) for i, name in enumerate(self.variables)})
        self.data_range_["n_runs"] = int(L.size)
        if self.variables == ("N", "D"):
            C = 6.0 * np.exp(logX[:, 0] + logX[:, 1])
            self.data_range_.update({"C_min": float(C.min()), "C_max": float(C.max())})
        self.diagnostics_ = diagnostics
        self.bootstrap_params_ = None
        if self.n_bootstrap:
            rng = np.random.default_rng(self.seed)
            good = res.minima[res.minima_objective <= 2.0 * res.objective + 1e-12][:3]
            thetas, conv = _engine.bootstrap_power_sum(logX, logL, self._spec, good, bounds, self.huber_delta,
                                                       self.n_bootstrap, rng, groups, n_jobs=self.n_jobs)
            self.bootstrap_params_ = {k: np.asarray(v, float) for k, v in self._from_theta(thetas).items()}
            self.bootstrap_converged_ = float(conv.mean())
        return self

    def _theta_names(self) -> list[str]:
        k = self._spec.k
        names = [f"a{i}" for i in range(k)] + [f"p{i}" for i in range(k)]
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

    def predict_interval(self, *X, kind: str = "confidence", level: float | None = None, seed: int = 0):
        """Interval of the predicted loss: ``confidence`` (parameter uncertainty, from the bootstrap) or
        ``prediction`` (parameters plus the residual scatter of a single new run).

        Returns:
            (lower, upper) arrays.
        """
        self._check_fitted()
        if not self.has_intervals:
            raise RuntimeError("this law has no bootstrap; fit with n_bootstrap > 0 for intervals")
        if kind not in {"confidence", "prediction"}:
            raise ValueError(f"kind must be 'confidence' or 'prediction', not {kind!r}")
        level = self.level if level is None else level
        Xb = [np.atleast_1d(np.asarray(x, float))[None, :] for x in X]
        pb = {k: v[:, None] for k, v in self.bootstrap_params_.items()}
        preds = self._predict_from(pb, *Xb)
        if kind == "prediction":
            rng = np.random.default_rng(seed)
            preds = preds * np.exp(rng.choice(self.residuals_, size=preds.shape))
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
        return law

    def to_dict(self) -> dict:
        """JSON-ready state: law, settings, parameters, bootstrap samples, residuals, data range."""
        self._check_fitted()
        return {
            "law": self.law_name,
            "settings": {"huber_delta": self.huber_delta, "n_bootstrap": self.n_bootstrap, "level": self.level,
                         "seed": self.seed},
            "params": self.all_params(),
            "intervals": self.intervals(),
            "objective": getattr(self, "objective_", None),
            "data_range": getattr(self, "data_range_", {}),
            "bootstrap": None if not self.has_intervals else {k: v.tolist() for k, v in self.bootstrap_params_.items()},
            "residuals": getattr(self, "residuals_", np.array([])).tolist(),
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
        return self

    def __repr__(self) -> str:
        if not hasattr(self, "params_"):
            return f"{type(self).__name__}(huber_delta={self.huber_delta}, n_bootstrap={self.n_bootstrap})"
        body = ", ".join(f"{k}={v:.5g}" for k, v in self.params_.items())
        return f"{type(self).__name__}({body})"
