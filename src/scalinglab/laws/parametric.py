"""Parametric laws: Chinchilla's L(N, D) and Kaplan's single-variable power laws.

* Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models",
  https://arxiv.org/abs/2203.15556 (Approach 3: ``L = E + A/N^alpha + B/D^beta``).
* Besiroglu et al. 2024, "Chinchilla Scaling: A replication attempt", https://arxiv.org/abs/2404.10102
* Kaplan et al. 2020, "Scaling Laws for Neural Language Models", https://arxiv.org/abs/2001.08361
"""
from __future__ import annotations

import numpy as np

from . import _engine
from ._base import PowerSumLaw, grid_product, percentile_interval


def chinchilla_grid() -> np.ndarray:
    """Hoffmann et al.'s 4,500-start grid over (log A, log B, alpha, beta, log E)."""
    return grid_product(np.arange(0, 26, 5.0), np.arange(0, 26, 5.0), np.arange(0, 2.01, 0.5),
                        np.arange(0, 2.01, 0.5), np.arange(-1, 1.01, 0.5))


class ChinchillaLaw(PowerSumLaw):
    """``L(N, D) = E + A / N**alpha + B / D**beta`` (Approach 3), fitted with Huber on log-loss.

    Learned attributes: ``params_`` (E, A, B, alpha, beta), ``objective_``, ``residuals_``,
    ``data_range_``, ``bootstrap_params_`` and, through :meth:`intervals`, percentile intervals for
    every parameter and for the frontier exponents ``a = beta/(alpha+beta)`` (``N_opt ~ C^a``) and
    ``b = alpha/(alpha+beta)`` (``D_opt ~ C^b``).
    """

    law_name = "chinchilla"
    param_names = ("E", "A", "B", "alpha", "beta")
    variables = ("N", "D")
    _spec = _engine.PowerSumSpec(k=2, constant=True)

    def fit(self, N, D, L, groups=None) -> "ChinchillaLaw":
        """Fit to runs with ``N`` parameters trained on ``D`` tokens reaching loss ``L``."""
        return self._fit_arrays([N, D], L, groups)

    def _default_grid(self) -> np.ndarray:
        return chinchilla_grid()

    def _default_bounds(self) -> np.ndarray:
        return np.array([[-20, 80], [-20, 80], [1e-3, 5.0], [1e-3, 5.0], [-10.0, 5.0]])

    def _from_theta(self, theta):
        return {"E": np.exp(theta[:, 4]), "A": np.exp(theta[:, 0]), "B": np.exp(theta[:, 1]),
                "alpha": theta[:, 2], "beta": theta[:, 3]}

    def _to_theta(self, p):
        return np.array([np.log(p["A"]), np.log(p["B"]), p["alpha"], p["beta"], np.log(p["E"])])

    @staticmethod
    def _predict_from(p, N, D):
        return p["E"] + p["A"] * np.power(N, -p["alpha"]) + p["B"] * np.power(D, -p["beta"])

    def _derived(self, p):
        s = p["alpha"] + p["beta"]
        return {"a": p["beta"] / s, "b": p["alpha"] / s,
                "G": np.power(p["alpha"] * p["A"] / (p["beta"] * p["B"]), 1.0 / s)}

    @staticmethod
    def _frontier(p, C):
        """Closed-form compute-optimal allocation under ``C = 6ND`` (Hoffmann et al. 2022, Eq. 4)."""
        s = p["alpha"] + p["beta"]
        G = np.power(p["alpha"] * p["A"] / (p["beta"] * p["B"]), 1.0 / s)
        n_opt = G * np.power(C / 6.0, p["beta"] / s)
        return n_opt, C / (6.0 * n_opt)

    def compute_optimal(self, C):
        """``(N_opt, D_opt)`` minimising the loss at compute ``C`` (FLOPs, ``C = 6ND``)."""
        self._check_fitted()
        return self._frontier(self.params_, np.asarray(C, float))

    def compute_optimal_samples(self, C):
        """Bootstrap samples (R, m) of ``N_opt`` and ``D_opt`` at compute ``C``."""
        if not self.has_intervals:
            raise RuntimeError("no bootstrap samples")
        pb = {k: v[:, None] for k, v in self.bootstrap_params_.items()}
        return self._frontier(pb, np.atleast_1d(np.asarray(C, float))[None, :])

    def compute_optimal_interval(self, C, level: float | None = None):
        """Percentile intervals of ``N_opt`` and ``D_opt``: ((N_lo, N_hi), (D_lo, D_hi))."""
        n, d = self.compute_optimal_samples(C)
        level = self.level if level is None else level
        return percentile_interval(n, level), percentile_interval(d, level)


def power_law_grid(constant: bool) -> np.ndarray:
    a = np.arange(0, 31, 2.5)
    p = np.array([0.03, 0.06, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5])
    return grid_product(a, p, np.arange(-1, 1.01, 0.5)) if constant else grid_product(a, p)


class PowerLaw(PowerSumLaw):
    """Kaplan-style ``L(X) = E + (X_c / X)**alpha`` for one variable X (N, D or C); ``irreducible=False``
    drops ``E``.

    Learned attributes: ``params_`` (``E`` if irreducible, ``X_c``, ``alpha``) and the usual
    bootstrap intervals.
    """

    law_name = "power-law"
    variables = ("X",)
    _init_extra = ("variable", "irreducible")

    def __init__(self, variable: str = "N", *, irreducible: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.variable = variable
        self.irreducible = irreducible
        self._spec = _engine.PowerSumSpec(k=1, constant=irreducible)
        self.param_names = ("E", "X_c", "alpha") if irreducible else ("X_c", "alpha")
        self.variables = (variable,)

    def fit(self, X, L) -> "PowerLaw":
        return self._fit_arrays([X], L)

    def _default_grid(self):
        return power_law_grid(self.irreducible)

    def _default_bounds(self):
        rows = [[-50, 200], [1e-4, 5.0]] + ([[-10.0, 5.0]] if self.irreducible else [])
        return np.array(rows)

    def _from_theta(self, theta):
        out = {"X_c": np.exp(theta[:, 0] / theta[:, 1]), "alpha": theta[:, 1]}
        if self.irreducible:
            out["E"] = np.exp(theta[:, 2])
        return out

    def _predict_from(self, p, X):
        E = p.get("E", 0.0)
        return E + np.power(p["X_c"] / X, p["alpha"])

    def to_dict(self) -> dict:
        state = super().to_dict()
        state["settings"].update({"variable": self.variable, "irreducible": self.irreducible})
        return state

    @classmethod
    def from_params(cls, variable: str = "N", **params) -> "PowerLaw":
        law = cls(variable, irreducible="E" in params, n_bootstrap=0)
        law.params_ = {k: float(params[k]) for k in law.param_names}
        law.bootstrap_params_ = None
        law.data_range_ = {}
        return law

    @classmethod
    def from_dict(cls, state: dict) -> "PowerLaw":
        settings = dict(state.get("settings", {}))
        law = cls(settings.pop("variable", "N"), irreducible=settings.pop("irreducible", True), **settings)
        return law._restore(state)

    def __repr__(self) -> str:
        base = super().__repr__()
        return base if hasattr(self, "params_") else f"PowerLaw(variable={self.variable!r}, irreducible={self.irreducible})"
