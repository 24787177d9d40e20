"""The data-constrained law of Muennighoff et al. 2023, https://arxiv.org/abs/2305.16264.

Repeated data is worth less than fresh data and excess parameters are worth less than
compute-optimal ones, with exponential decay constants ``R_D*`` and ``R_N*`` (Eq. 5-7)::

    D' = U_D + U_D R_D* (1 - exp(-R_D / R_D*)),   R_D = D / U_D - 1   (repeated epochs)
    N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*)),   R_N = N / U_N - 1,  U_N = min(N, N_opt(U_D))
    L  = E + A / N'^alpha + B / D'^beta

``N_opt(U_D)`` is the compute-optimal size for ``U_D`` tokens under the base Chinchilla law.
"""
from __future__ import annotations

import numpy as np

from ._base import FitError, check_positive, percentile_interval
from ._engine import multinomial_weights
from .parametric import ChinchillaLaw

_BASE = ("E", "A", "B", "alpha", "beta")


def _n_opt_for_tokens(p, tokens):
    s = p["alpha"] + p["beta"]
    G = np.power(p["alpha"] * p["A"] / (p["beta"] * p["B"]), 1.0 / s)
    a, b = p["beta"] / s, p["alpha"] / s
    return G * np.power(G * tokens, a / b)


def effective_data(D, U, R_D_star):
    """``D'``: tokens ``D`` drawn from ``U`` unique tokens are worth this many fresh ones."""
    D, U = np.asarray(D, float), np.asarray(U, float)
    R = np.maximum(D / U - 1.0, 0.0)
    return np.where(D > U, U + U * R_D_star * (1.0 - np.exp(-R / R_D_star)), D)


def effective_params(N, U_N, R_N_star):
    """``N'``: parameters beyond ``U_N`` decay in value with constant ``R_N*``."""
    N, U_N = np.asarray(N, float), np.asarray(U_N, float)
    R = np.maximum(N / U_N - 1.0, 0.0)
    return np.where(N > U_N, U_N + U_N * R_N_star * (1.0 - np.exp(-R / R_N_star)), N)


class DataConstrainedLaw:
    """Loss under data repetition: a Chinchilla base law plus decay constants ``R_D*`` and ``R_N*``.

    Fitting: the base law is fitted on the single-epoch runs that are no larger than compute-optimal
    for their data (or given), then ``(R_D*, R_N*)`` by the
    same summed Huber objective on log-loss over all runs; the bootstrap resamples the runs and
    refits both steps, so the intervals carry the base law's uncertainty too.

    Args:
        base: a fitted or preset :class:`ChinchillaLaw`; None fits one on the single-epoch runs.
        fit_repetition: fit ``R_D*``, ``R_N*`` (else keep the given values).
    """

    law_name = "data-constrained"
    param_names = _BASE + ("R_D_star", "R_N_star")

    def __init__(self, base: ChinchillaLaw | None = None, *, fit_repetition: bool = True, R_D_star: float = 15.39,
                 R_N_star: float = 5.31, huber_delta: float = 1e-3, n_bootstrap: int = 1000, level: float = 0.95,
                 seed: int = 0):
        self.base = base
        self.fit_repetition = fit_repetition
        self.R_D_star = R_D_star
        self.R_N_star = R_N_star
        self.huber_delta = huber_delta
        self.n_bootstrap = n_bootstrap
        self.level = level
        self.seed = seed

    @staticmethod
    def _predict_from(p, N, D, U):
        U = np.minimum(U, D)            # the unique tokens actually seen: a run shorter than U sees only D
        U_N = np.minimum(N, _n_opt_for_tokens(p, U))
        Np = effective_params(N, U_N, p["R_N_star"])
        Dp = effective_data(D, U, p["R_D_star"])
        return p["E"] + p["A"] * np.power(Np, -p["alpha"]) + p["B"] * np.power(Dp, -p["beta"])

    def predict(self, N, D, U):
        """Loss of ``N`` parameters trained on ``D`` tokens drawn from ``U`` unique tokens."""
        return self._predict_from(self.params_, np.asarray(N, float), np.asarray(D, float), np.asarray(U, float))

    def _fit_decay(self, base: dict, N, D, U, L, w, start):
        from scipy import optimize

        logL = np.log(L)

        def fun(x):
            p = dict(base, R_D_star=np.exp(x[0]), R_N_star=np.exp(x[1]))
            r = np.log(self._predict_from(p, N, D, U)) - logL
            ar = np.abs(r)
            return float((w * np.where(ar <= self.huber_delta, 0.5 * r * r, self.huber_delta * (ar - 0.5 * self.huber_delta))).sum())

        grid = [(np.log(rd), np.log(rn)) for rd in (1.0, 5.0, 15.0, 50.0) for rn in (1.0, 5.0, 15.0)]
        x0 = min([start] + grid, key=fun) if start is not None else min(grid, key=fun)
        res = optimize.minimize(fun, x0, method="L-BFGS-B", bounds=[(np.log(0.05), np.log(1e4))] * 2)
        return np.exp(res.x), float(res.fun)

    def fit(self, N, D, U, L) -> "DataConstrainedLaw":
        """Fit to runs of ``N`` params trained on ``D`` tokens from ``U`` unique tokens with loss ``L``."""
        N, D, U, L = (check_positive(n, x) for n, x in (("N", N), ("D", D), ("unique tokens", U), ("loss", L)))
        repeated = D > U * (1 + 1e-9)
        if self.fit_repetition and repeated.sum() < 3:
            raise FitError(f"fitting R_D*, R_N* needs at least 3 runs with repeated data (D > unique tokens); got {int(repeated.sum())}")
        base = self.base
        if base is None:
            base = self._fit_base(N, D, L, ~repeated)
        bp = {k: base.params_[k] for k in _BASE}
        if self.fit_repetition:
            (rd, rn), obj = self._fit_decay(bp, N, D, U, L, np.ones_like(L), None)
        else:
            rd, rn, obj = self.R_D_star, self.R_N_star, float("nan")
        self.params_ = dict(bp, R_D_star=float(rd), R_N_star=float(rn))
        self.objective_ = obj
        self.base_ = base
        self.data_range_ = {"n_runs": int(L.size), "n_repeated": int(repeated.sum()), "N_min": float(N.min()),
                            "N_max": float(N.max()), "epochs_max": float((D / U).max())}
        self.bootstrap_params_ = None
        if self.n_bootstrap and base.has_intervals and self.fit_repetition:
            rng = np.random.default_rng(self.seed + 1)
            W = multinomial_weights(L.size, self.n_bootstrap, rng)
            R = min(self.n_bootstrap, len(next(iter(base.bootstrap_params_.values()))))
            out = {k: np.empty(R) for k in self.param_names}
            for r in range(R):
                bpr = {k: float(base.bootstrap_params_[k][r]) for k in _BASE}
                (rd_r, rn_r), _ = self._fit_decay(bpr, N, D, U, L, W[r], (np.log(rd), np.log(rn)))
                for k in _BASE:
                    out[k][r] = bpr[k]
                out["R_D_star"][r], out["R_N_star"][r] = rd_r, rn_r
            self.bootstrap_params_ = out
        return self

    def _fit_base(self, N, D, L, single):
        """Fit the base law on runs untouched by either decay: one epoch and ``N <= N_opt(U)``.

        Which runs are oversized depends on the base law itself, so the selection is iterated
        until it no longer changes.
        """
        chosen = single.copy()
        for _ in range(6):
            probe = ChinchillaLaw(huber_delta=self.huber_delta, n_bootstrap=0)
            if chosen.sum() < probe.min_runs:
                raise FitError(f"the base law is fitted on single-epoch runs no larger than compute-optimal for their "
                               f"data and needs {probe.min_runs}; got {int(chosen.sum())} (or pass a fitted/preset base law)")
            probe.fit(N[chosen], D[chosen], L[chosen])
            nxt = single & (N <= _n_opt_for_tokens(probe.params_, D) * (1 + 1e-6))
            if np.array_equal(nxt, chosen):
                break
            chosen = nxt
        self.base_runs_ = int(chosen.sum())
        return ChinchillaLaw(huber_delta=self.huber_delta, n_bootstrap=self.n_bootstrap,
                             seed=self.seed).fit(N[chosen], D[chosen], L[chosen])

    @property
    def has_intervals(self) -> bool:
        return getattr(self, "bootstrap_params_", None) is not None

    def all_params(self) -> dict:
        return dict(self.params_)

    def intervals(self, level=None) -> dict:
        if not self.has_intervals:
            return {}
        level = self.level if level is None else level
        return {k: [float(x) for x in percentile_interval(v, level)] for k, v in self.bootstrap_params_.items()}

    def compute_optimal(self, C, U):
        """``(N, D)`` minimising the loss at compute ``C = 6ND`` with ``U`` unique tokens available."""
        from scipy import optimize

        base = ChinchillaLaw._frontier(self.params_, float(C))[0]

        def loss(logn):
            n = np.exp(logn)
            return float(self.predict(n, C / (6 * n), U))

        res = optimize.minimize_scalar(loss, bounds=(np.log(base) - 7, np.log(base) + 7), method="bounded",
                                       options={"xatol": 1e-6})
        n = float(np.exp(res.x))
        return n, C / (6 * n)

    @classmethod
    def from_params(cls, **params) -> "DataConstrainedLaw":
        missing = set(cls.param_names) - set(params)
        if missing:
            raise ValueError(f"DataConstrainedLaw.from_params is missing {sorted(missing)}")
        law = cls(fit_repetition=False, n_bootstrap=0, R_D_star=params["R_D_star"], R_N_star=params["R_N_star"])
        law.params_ = {k: float(params[k]) for k in cls.param_names}
        law.bootstrap_params_ = None
        law.data_range_ = {}
        return law

    def to_dict(self) -> dict:
        return {"law": self.law_name, "params": self.all_params(), "intervals": self.intervals(),
                "objective": getattr(self, "objective_", None), "data_range": getattr(self, "data_range_", {}),
                "bootstrap": None if not self.has_intervals else {k: v.tolist() for k, v in self.bootstrap_params_.items()},
                "settings": {"huber_delta": self.huber_delta, "level": self.level}}

    @classmethod
    def from_dict(cls, state: dict) -> "DataConstrainedLaw":
        law = cls.from_params(**state["params"])
        boot = state.get("bootstrap")
        law.bootstrap_params_ = None if boot is None else {k: np.asarray(v, float) for k, v in boot.items()}
        law.data_range_ = state.get("data_range", {})
        law.level = state.get("settings", {}).get("level", 0.95)
        return law

    def __repr__(self) -> str:
        if not hasattr(self, "params_"):
            return f"DataConstrainedLaw(fit_repetition={self.fit_repetition})"
        return "DataConstrainedLaw(" + ", ".join(f"{k}={v:.5g}" for k, v in self.params_.items()) + ")"
