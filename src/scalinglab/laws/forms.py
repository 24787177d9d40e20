"""More parametric forms of L(N, D), for ranking against Chinchilla's by rolling-origin backtests.

* :class:`OvertrainLaw`: Gadre et al. 2024, "Language models scale reliably with over-training and on
  downstream tasks", https://arxiv.org/abs/2403.08540, Eq. 4:
  ``L(C, M) = E + (a M^eta + b M^-eta) C^-eta`` with ``M = D / N`` tokens per parameter and ``C = 6ND``.
  In (N, D) it is Chinchilla's form with one shared exponent ``alpha = beta = 2 eta``, so it is fitted
  by the same engine with the exponent tied; the compute-optimal ``M* = (b / a)^(1 / 2 eta)`` is constant.
* :class:`KaplanNDLaw`: Kaplan et al. 2020, https://arxiv.org/abs/2001.08361, Eq. 1.5:
  ``L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D`` (no irreducible term). Not a sum of
  power laws, but the engine only needs its batched log-prediction and Jacobian (:class:`KaplanNDSpec`).
* :class:`InteractionLaw`: ``L = E + A / N^alpha + B / D^beta + F / (N^alpha D^beta)``, an interaction
  term in the spirit of Farseer (Li et al. 2025, https://arxiv.org/abs/2506.10972), where the data term
  depends on model size: the effective ``B(N) = B + F N^-alpha``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from . import _engine
from ._base import PowerSumLaw, grid_product
from .parametric import ChinchillaLaw


class OvertrainLaw(PowerSumLaw):
    """Gadre et al. 2024: ``L(C, M) = E + (a M^eta + b M^-eta) C^-eta`` (``M`` tokens per parameter).

    Learned attributes: ``params_`` (E, a, b, eta) and derived ``tokens_per_param_opt`` (``M*``) with
    bootstrap intervals. ``fit``/``predict`` take N and D like the other (N, D) laws.
    """

    law_name = "overtrain"
    param_names = ("E", "a", "b", "eta")
    variables = ("N", "D")
    _spec = _engine.PowerSumSpec(k=2, constant=True, exponents=(((0, 0),), ((1, 0),)))

    def fit(self, N, D, L, groups=None) -> "OvertrainLaw":
        return self._fit_arrays([N, D], L, groups)

    def _default_grid(self):
        return grid_product(np.arange(0, 26, 5.0), np.arange(0, 26, 5.0), np.arange(0.0, 2.01, 0.25),
                            np.arange(-1, 1.01, 0.5))

    def _default_bounds(self):
        return np.array([[-20, 80], [-20, 80], [1e-3, 5.0], [-10.0, 5.0]])

    def _from_theta(self, theta):
        eta = theta[:, 2] / 2.0
        six = np.power(6.0, eta)
        return {"E": np.exp(theta[:, 3]), "a": np.exp(theta[:, 0]) * six, "b": np.exp(theta[:, 1]) * six, "eta": eta}

    def _to_theta(self, p):
        six = 6.0 ** p["eta"]
        return np.array([np.log(p["a"] / six), np.log(p["b"] / six), 2 * p["eta"], np.log(p["E"])])

    @staticmethod
    def _predict_from(p, N, D):
        C, M = 6.0 * N * D, D / N
        return p["E"] + (p["a"] * np.power(M, p["eta"]) + p["b"] * np.power(M, -p["eta"])) * np.power(C, -p["eta"])

    def _derived(self, p):
        return {"tokens_per_param_opt": np.power(p["b"] / p["a"], 1.0 / (2.0 * p["eta"]))}

    def compute_optimal(self, C):
        """``(N_opt, D_opt)`` at compute ``C``: the constant ``M*`` tokens per parameter."""
        self._check_fitted()
        m = self._derived(self.params_)["tokens_per_param_opt"]
        n = np.sqrt(np.asarray(C, float) / (6.0 * m))
        return n, m * n


class InteractionLaw(PowerSumLaw):
    """``L = E + A / N^alpha + B / D^beta + F / (N^alpha D^beta)``: the data term shrinks with model size.

    Learned attributes: ``params_`` (E, A, B, F, alpha, beta). ``F -> 0`` recovers Chinchilla's form.
    """

    law_name = "interaction"
    param_names = ("E", "A", "B", "F", "alpha", "beta")
    variables = ("N", "D")
    _spec = _engine.PowerSumSpec(k=3, constant=True, exponents=(((0, 0),), ((1, 1),), ((0, 0), (1, 1))))

    def fit(self, N, D, L, groups=None) -> "InteractionLaw":
        return self._fit_arrays([N, D], L, groups)

    def _default_grid(self):
        return grid_product(np.arange(0, 26, 5.0), np.arange(0, 26, 5.0), np.array([0.0, 10.0, 20.0]),
                            np.arange(0.0, 1.51, 0.5), np.arange(0.0, 1.51, 0.5), np.arange(-1, 1.01, 0.5))

    def _default_bounds(self):
        return np.array([[-20, 80], [-20, 80], [-40, 120], [1e-3, 5.0], [1e-3, 5.0], [-10.0, 5.0]])

    def _from_theta(self, theta):
        return {"E": np.exp(theta[:, 5]), "A": np.exp(theta[:, 0]), "B": np.exp(theta[:, 1]), "F": np.exp(theta[:, 2]),
                "alpha": theta[:, 3], "beta": theta[:, 4]}

    def _to_theta(self, p):
        return np.array([np.log(p["A"]), np.log(p["B"]), np.log(p["F"]), p["alpha"], p["beta"], np.log(p["E"])])

    @staticmethod
    def _predict_from(p, N, D):
        nN, dD = np.power(N, -p["alpha"]), np.power(D, -p["beta"])
        return p["E"] + p["A"] * nN + p["B"] * dD + p["F"] * nN * dD

    def _derived(self, p):
        return ChinchillaLaw._derived(self, p)


@dataclasses.dataclass(frozen=True)
class KaplanNDSpec:
    """Engine spec of Kaplan's L(N, D): theta = (log N_c, log D_c, alpha_N, alpha_D)."""

    n_params: int = 4

    def log_prediction(self, theta: np.ndarray, logX: np.ndarray, jac: bool):
        nc, dc, aN, aD = (theta[:, i:i + 1] for i in range(4))
        ratio = aN / aD
        dn = nc - logX[None, :, 0]
        t1, t2 = ratio * dn, dc - logX[None, :, 1]
        top = np.maximum(t1, t2)
        S = top + np.log(np.exp(t1 - top) + np.exp(t2 - top))
        logpred = aD * S
        if not jac:
            return logpred, None
        q1 = np.exp(t1 - S)
        J = np.stack([aN * q1, aD * (1.0 - q1), q1 * dn, S - q1 * t1], axis=2)
        return logpred, J


class KaplanNDLaw(PowerSumLaw):
    """Kaplan et al. 2020: ``L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D``.

    Learned attributes: ``params_`` (N_c, D_c, alpha_N, alpha_D), fitted by the one engine.
    """

    law_name = "kaplan-nd"
    param_names = ("N_c", "D_c", "alpha_N", "alpha_D")
    variables = ("N", "D")
    _spec = KaplanNDSpec()

    def fit(self, N, D, L, groups=None) -> "KaplanNDLaw":
        return self._fit_arrays([N, D], L, groups)

    def _default_grid(self):
        return grid_product(np.array([15.0, 25.0, 35.0, 45.0]), np.array([15.0, 25.0, 35.0, 45.0]),
                            np.array([0.05, 0.1, 0.3, 0.6]), np.array([0.05, 0.1, 0.3, 0.6]))

    def _default_bounds(self):
        return np.array([[0.0, 200.0], [0.0, 200.0], [1e-3, 3.0], [1e-3, 3.0]])

    def _theta_names(self):
        return ["log_N_c", "log_D_c", "alpha_N", "alpha_D"]

    def _from_theta(self, theta):
        return {"N_c": np.exp(theta[:, 0]), "D_c": np.exp(theta[:, 1]), "alpha_N": theta[:, 2], "alpha_D": theta[:, 3]}

    def _to_theta(self, p):
        return np.array([np.log(p["N_c"]), np.log(p["D_c"]), p["alpha_N"], p["alpha_D"]])

    @staticmethod
    def _predict_from(p, N, D):
        inner = np.power(p["N_c"] / N, p["alpha_N"] / p["alpha_D"]) + p["D_c"] / D
        return np.power(inner, p["alpha_D"])
