"""Test-time scaling laws.

* Coverage law of Brown et al. 2024, "Large Language Monkeys", https://arxiv.org/abs/2407.21787:
  ``coverage(k) ~ exp(a * k^b)`` with a < 0, fitted as a line in ``log(-log coverage)`` vs ``log k``.
"""
from __future__ import annotations

import numpy as np

from ..laws import FitError, percentile_interval


class CoverageLaw:
    """``coverage(k) = exp(a k^b)``. Learned: ``params_`` (a, b), bootstrap ``samples_`` over problems."""

    law_name = "coverage"

    def __init__(self, *, level: float = 0.95):
        self.level = level

    @staticmethod
    def _line(k, cov):
        ok = (cov > 0) & (cov < 1)
        if ok.sum() < 2:
            return np.nan, np.nan
        x, y = np.log(k[ok]), np.log(-np.log(cov[ok]))
        b, loga = np.polyfit(x, y, 1)
        return -np.exp(loga), b

    def fit(self, ks, coverage, bootstrap_coverage=None) -> "CoverageLaw":
        """Fit to a coverage curve; ``bootstrap_coverage`` (R, K) gives intervals."""
        ks, cov = np.asarray(ks, float), np.asarray(coverage, float)
        if ((cov > 0) & (cov < 1)).sum() < 2:
            raise FitError("the coverage law needs at least 2 values of k with coverage strictly between 0 and 1")
        a, b = self._line(ks, cov)
        self.params_ = {"a": float(a), "b": float(b)}
        self.data_range_ = {"k_min": float(ks.min()), "k_max": float(ks.max())}
        self.samples_ = None
        if bootstrap_coverage is not None:
            s = np.array([self._line(ks, row) for row in np.asarray(bootstrap_coverage)])
            s = s[np.isfinite(s).all(axis=1)]
            self.samples_ = {"a": s[:, 0], "b": s[:, 1]}
        return self

    def predict(self, k):
        return np.exp(self.params_["a"] * np.power(np.asarray(k, float), self.params_["b"]))

    def intervals(self, level=None) -> dict:
        if not self.samples_:
            return {}
        level = self.level if level is None else level
        return {k: [float(x) for x in percentile_interval(v, level)] for k, v in self.samples_.items()}

    def samples_for(self, target: float) -> dict:
        """Samples k needed to reach ``target`` coverage, with an interval (extrapolation beyond k_max)."""
        if not 0 < target < 1:
            raise ValueError("target coverage must be in (0, 1)")
        k = lambda a, b: np.power(np.log(target) / a, 1.0 / b)  # noqa: E731
        out = {"target": target, "k": float(k(self.params_["a"], self.params_["b"])), "fitted_k_max": self.data_range_["k_max"]}
        if self.samples_:
            lo, hi = percentile_interval(k(self.samples_["a"], self.samples_["b"]), self.level)
            out["interval"] = [float(lo), float(hi)]
        return out

    def __repr__(self):
        return f"CoverageLaw(a={self.params_['a']:.4g}, b={self.params_['b']:.4g})" if hasattr(self, "params_") else "CoverageLaw()"
