"""Published scaling laws, usable with no data at all.

* ``chinchilla-2022``: Hoffmann et al. 2022, https://arxiv.org/abs/2203.15556, Approach 3
  (E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28; unrounded values as in the paper's code
  release quoted by Besiroglu et al. 2024).
* ``epoch-2024``: Besiroglu, Erdil, Barnett & You 2024, "Chinchilla Scaling: A replication attempt",
  https://arxiv.org/abs/2404.10102 (E=1.817, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658).
* ``kaplan-2020``: Kaplan et al. 2020, https://arxiv.org/abs/2001.08361: L(N) = (N_c/N)^0.076 with
  N_c = 8.8e13 non-embedding parameters; L(D) = (D_c/D)^0.095 with D_c = 5.4e13 tokens;
  L(C_min) = (C_c/C_min)^0.050 with C_c = 3.1e8 PF-days; compute-efficient frontier
  N_opt = 1.3e9 * C_min^0.73 (C_min in PF-days, Fig. 14 / Sec. 6.1).
* ``muennighoff-2023``: Muennighoff et al. 2023, "Scaling Data-Constrained Language Models",
  https://arxiv.org/abs/2305.16264: R_D* = 15.39, R_N* = 5.31 over their refitted base law
  (E=1.87, A=521, B=1488, alpha=beta=0.353).
"""
from __future__ import annotations

import numpy as np

from .._names import PRESET_SOURCES  # noqa: F401  (re-exported)
from ..accounting import PF_DAY
from .parametric import ChinchillaLaw, PowerLaw

CHINCHILLA_2022 = {"E": 1.69337, "A": 406.401, "B": 410.723, "alpha": 0.33917, "beta": 0.28491}
EPOCH_2024 = {"E": 1.817, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
KAPLAN_2020 = {"alpha_N": 0.076, "N_c": 8.8e13, "alpha_D": 0.095, "D_c": 5.4e13, "alpha_C": 0.050,
               "C_c_pf_days": 3.1e8, "N_opt_coef": 1.3e9, "N_opt_exp": 0.73}
MUENNIGHOFF_2023 = {"E": 1.87, "A": 521.0, "B": 1488.0, "alpha": 0.353, "beta": 0.353,
                    "R_D_star": 15.39, "R_N_star": 5.31}



class KaplanLaw:
    """Kaplan et al. 2020 as published: L(N), L(D), L(C) and the compute-efficient frontier.

    Kaplan's N counts non-embedding parameters; C is in FLOPs here (converted from PF-days).
    """

    law_name = "kaplan-2020"

    def __init__(self, **params: float):
        self.params_ = dict(KAPLAN_2020, **params)
        self.L_N = PowerLaw.from_params("N", X_c=self.params_["N_c"], alpha=self.params_["alpha_N"])
        self.L_D = PowerLaw.from_params("D", X_c=self.params_["D_c"], alpha=self.params_["alpha_D"])
        self.L_C = PowerLaw.from_params("C", X_c=self.params_["C_c_pf_days"] * PF_DAY, alpha=self.params_["alpha_C"])
        self.has_intervals = False
        self.data_range_ = {}

    def predict(self, N, D):
        """Kaplan's joint form L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D (Eq. 1.5)."""
        p = self.params_
        return np.power(np.power(p["N_c"] / np.asarray(N, float), p["alpha_N"] / p["alpha_D"]) + p["D_c"] / np.asarray(D, float),
                        p["alpha_D"])

    def compute_optimal(self, C):
        p = self.params_
        n_opt = p["N_opt_coef"] * np.power(np.asarray(C, float) / PF_DAY, p["N_opt_exp"])
        return n_opt, np.asarray(C, float) / (6.0 * n_opt)

    def all_params(self) -> dict:
        return dict(self.params_)

    def intervals(self, level=None) -> dict:
        return {}

    def __repr__(self) -> str:
        return "KaplanLaw(" + ", ".join(f"{k}={v:.4g}" for k, v in self.params_.items()) + ")"


def preset(name: str):
    """A published law by name: chinchilla-2022, epoch-2024, kaplan-2020, muennighoff-2023."""
    if name == "chinchilla-2022":
        return ChinchillaLaw.from_params(**CHINCHILLA_2022)
    if name == "epoch-2024":
        return ChinchillaLaw.from_params(**EPOCH_2024)
    if name == "kaplan-2020":
        return KaplanLaw()
    if name == "muennighoff-2023":
        from .data_constrained import DataConstrainedLaw
        return DataConstrainedLaw.from_params(**MUENNIGHOFF_2023)
    raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESET_SOURCES)}")
