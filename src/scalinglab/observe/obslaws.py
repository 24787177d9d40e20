"""Observational scaling laws: forecast a target benchmark from standard benchmarks of public models.

The method of Ruan, Maddison and Hashimoto 2024, "Observational Scaling Laws and the Predictability of
Language Model Performance" (https://arxiv.org/abs/2405.10938):

* **capability space** -- a few principal components of the standard benchmarks (standardized on the
  fitted models); missing scores are imputed by iterative low-rank PCA (fill, reconstruct, refill until
  the fill stops moving), and a new model is placed by least squares on the benchmarks it has;
* **compute efficiency** -- each component is linear in log10 compute with a per-family intercept
  (``PC_j = beta_j log10 C + alpha_{family, j}``); a family's offset on the first component, divided by
  ``beta_1``, is its compute-efficiency in log10 FLOPs (``10^offset`` times the compute of the reference
  family buys the same capability);
* **sigmoid map** -- ``target = floor + (ceiling - floor) * sigmoid(w . PC + b)``, the floor at the target's
  chance level, the ceiling 1 unless fitted.

Backtests (:func:`backtest`): leave-one-family-out and a compute cut-off (fit below, predict above), each
refitted on bootstrap resamples of the fitted models (pairs) for a confidence interval and, with the
residual noise added, a prediction interval whose coverage is reported. :func:`leaning` says which fitted
models a forecast leans on (the change in the forecast when each one is left out). :func:`forecast_at_compute`
forecasts the target for a planned model of a family, with a prediction interval of the same kind.
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from scipy import optimize

from ..forecast.tasklaws import chance_level
from .tables import ModelTable


def impute_pca(Z: np.ndarray, k: int, *, max_iter: int = 1000, tol: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Missing entries (NaN) of a standardized matrix filled by iterative rank-``k`` reconstruction.

    Returns:
        the filled matrix and the components (``k`` x columns, orthonormal rows).
    """
    miss = np.isnan(Z)
    X = np.where(miss, 0.0, Z)
    for _ in range(max_iter):
        U, s, Vt = np.linalg.svd(X, full_matrices=False)
        R = (U[:, :k] * s[:k]) @ Vt[:k]
        delta = float(np.max(np.abs(X[miss] - R[miss]), initial=0.0))
        X[miss] = R[miss]
        if delta <= tol:                                    # the fill has stopped moving
            break
    Vt = np.linalg.svd(X, full_matrices=False)[2][:k]
    return X, Vt


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))


@dataclasses.dataclass
class ObservationalLaw:
    """A target benchmark as a sigmoid of the capability space of the other benchmarks.

    Args:
        target: the benchmark to forecast.
        predictors: the benchmarks spanning the capability space (default: all others).
        n_components: principal components kept.
        chance: the target's floor (default: its chance level by name, else 0).
        fit_ceiling: fit the ceiling (else 1).
    """

    target: str
    predictors: tuple | None = None
    n_components: int = 2
    chance: float | None = None
    fit_ceiling: bool = False

    def fit(self, table: ModelTable) -> "ObservationalLaw":
        preds = [b for b in (self.predictors or table.benchmarks) if b != self.target and b in table.benchmarks]
        X = table.scores[:, [table.benchmarks.index(b) for b in preds]]
        keep = np.sum(np.isfinite(X), axis=0) >= 3
        preds, X = [p for p, ok in zip(preds, keep) if ok], X[:, keep]
        sd = np.nanstd(X, axis=0)
        preds, X, sd = [p for p, ok in zip(preds, sd > 0) if ok], X[:, sd > 0], sd[sd > 0]
        k = min(self.n_components, len(preds))
        if k < 1:
            raise ValueError(f"no predictor benchmark with 3 or more scores (besides {self.target!r})")
        self.predictors_, self.floor_ = tuple(preds), chance_level(self.target) if self.chance is None else self.chance
        self.mean_, self.scale_ = np.nanmean(X, axis=0), sd
        Zf, self.components_ = impute_pca((X - self.mean_) / self.scale_, k)
        pcs = Zf @ self.components_.T
        sign = np.sign(np.sum(self.components_, axis=1))              # PC1 grows with the scores
        sign[sign == 0] = 1
        self.components_ *= sign[:, None]
        pcs *= sign[None, :]
        y = table.score(self.target) if self.target in table.benchmarks else np.full(len(table), np.nan)
        fit = np.isfinite(y) & (np.sum(np.isfinite(X), axis=1) > 0)
        if fit.sum() < k + 2:
            raise ValueError(f"{fit.sum()} models have {self.target!r} and a predictor; need at least {k + 2}")
        self._fit_sigmoid(pcs[fit], y[fit])
        self.n_fitted_ = int(fit.sum())
        self.fitted_models_ = table.model[fit]
        self.residual_sd_ = float(np.std(y[fit] - self._map(pcs[fit]), ddof=min(k + 1, int(fit.sum()) - 1)))
        self._fit_efficiency(table, pcs)
        return self

    def _fit_sigmoid(self, S, y):
        floor = self.floor_
        top = 1.0
        p = np.clip((y - floor) / (top - floor), 0.02, 0.98)
        A = np.column_stack([S, np.ones(len(S))])
        w0 = np.linalg.lstsq(A, np.log(p / (1 - p)), rcond=None)[0]
        x0 = np.append(w0, 1.0) if self.fit_ceiling else w0

        def resid(x):
            ceil = x[-1] if self.fit_ceiling else top
            return floor + (ceil - floor) * _sigmoid(A @ x[:A.shape[1]]) - y

        lo = np.full(len(x0), -np.inf)
        hi = np.full(len(x0), np.inf)
        if self.fit_ceiling:
            lo[-1], hi[-1] = max(floor + 1e-3, float(np.max(y))), 1.0
            x0[-1] = min(1.0, max(x0[-1], lo[-1]))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            x = optimize.least_squares(resid, x0, bounds=(lo, hi)).x
        self.weights_, self.bias_ = x[:S.shape[1]], float(x[S.shape[1]])
        self.ceiling_ = float(x[-1]) if self.fit_ceiling else top

    def _map(self, S):
        return self.floor_ + (self.ceiling_ - self.floor_) * _sigmoid(S @ self.weights_ + self.bias_)

    def _fit_efficiency(self, table: ModelTable, pcs):
        """Each component linear in log10 C with a per-family intercept (families with a model with compute)."""
        has = np.isfinite(table.C)
        self.families_, self.efficiency_ = (), {}
        if has.sum() < 3:
            self.slope_log_compute_ = None
            return
        fams = sorted(set(table.family[has]))
        F = (table.family[has][:, None] == np.array(fams, dtype=object)[None, :]).astype(float)
        A = np.column_stack([np.log10(table.C[has]), F])
        coef = np.linalg.lstsq(A, pcs[has], rcond=None)[0]          # (1 + families) x k
        self.families_, self.slope_log_compute_, self.family_intercepts_ = tuple(fams), coef[0], coef[1:]
        ref = float(np.median(coef[1:, 0]))
        b1 = float(coef[0, 0])
        self.efficiency_ = {f: (float(a) - ref) / b1 if b1 != 0 else None for f, a in zip(fams, coef[1:, 0])}

    def capabilities(self, table: ModelTable) -> np.ndarray:
        """Each model's place in the capability space, by least squares on the benchmarks it has (NaN when
        it has none)."""
        X = np.full((len(table), len(self.predictors_)), np.nan)
        for j, b in enumerate(self.predictors_):
            if b in table.benchmarks:
                X[:, j] = table.score(b)
        Z = (X - self.mean_) / self.scale_
        out = np.full((len(table), self.components_.shape[0]), np.nan)
        for i, z in enumerate(Z):
            ok = np.isfinite(z)
            if ok.any():
                out[i] = np.linalg.lstsq(self.components_[:, ok].T, z[ok], rcond=None)[0]
        return out

    def predict(self, table: ModelTable) -> np.ndarray:
        """The target predicted from each model's measured standard benchmarks."""
        return self._map(self.capabilities(table))

    def predict_at_compute(self, compute, family: str) -> np.ndarray:
        """The target for a model of ``family`` trained with ``compute`` FLOPs (through the family's
        compute-efficiency)."""
        if family not in self.families_:
            raise KeyError(f"family {family!r} has no model with compute; families: {', '.join(self.families_)}")
        f = self.families_.index(family)
        S = np.log10(np.atleast_1d(np.asarray(compute, float)))[:, None] * self.slope_log_compute_[None, :] \
            + self.family_intercepts_[f][None, :]
        return self._map(S)

    def to_dict(self) -> dict:
        return {"target": self.target, "predictors": list(self.predictors_), "n_components": int(self.components_.shape[0]),
                "components": self.components_.tolist(), "floor": self.floor_, "ceiling": self.ceiling_,
                "weights": self.weights_.tolist(), "bias": self.bias_, "residual_sd": self.residual_sd_,
                "n_fitted": self.n_fitted_, "compute_efficiency_log10_flops": self.efficiency_}


def forecast_at_compute(table: ModelTable, law: ObservationalLaw, compute: float, family: str, *,
                        n_bootstrap: int = 200, level: float = 0.95, seed: int = 0) -> dict:
    """The target for a model of ``family`` trained with ``compute`` FLOPs under ``law`` (fitted on ``table``),
    with a prediction interval: refits on bootstrap resamples of the models (pairs), each with its residual
    noise added; and how far beyond the family's largest compute the forecast reaches.

    Raises:
        KeyError: ``family`` has no model with compute.
    """
    rng = np.random.default_rng(seed)
    point = float(law.predict_at_compute(compute, family)[0])
    draws = []
    for _ in range(n_bootstrap):
        try:
            b = dataclasses.replace(law).fit(table.subset(rng.integers(0, len(table), len(table))))
            draws.append(float(b.predict_at_compute(compute, family)[0]) + rng.standard_normal() * b.residual_sd_)
        except (ValueError, KeyError, np.linalg.LinAlgError):
            continue
    a = (1 - level) / 2
    iv = [float(np.clip(v, 0, 1)) for v in np.quantile(draws, [a, 1 - a])] if draws else None
    fam_c = table.C[(table.family == family) & np.isfinite(table.C)]
    return {"compute_flops": compute, "family": family, "score": point, "prediction_interval": iv,
            "n_bootstrap": len(draws), "extrapolation_factor": float(compute / fam_c.max()) if len(fam_c) else None}


def _bootstrap_predictions(train: ModelTable, test: ModelTable, law_kw: dict, n_bootstrap: int, rng) -> tuple:
    """(point predictions, bootstrap predictions B x test, bootstrap residual sds) of ``test``."""
    point = ObservationalLaw(**law_kw).fit(train).predict(test)
    draws, sds = [], []
    for _ in range(n_bootstrap):
        idx = rng.integers(0, len(train), len(train))
        try:
            law = ObservationalLaw(**law_kw).fit(train.subset(idx))
        except (ValueError, np.linalg.LinAlgError):
            continue
        draws.append(law.predict(test))
        sds.append(law.residual_sd_)
    return point, np.array(draws).reshape(len(draws), len(test)), np.array(sds)


def _intervals(point, draws, sds, level, rng):
    a = (1 - level) / 2
    if len(draws) == 0:
        nan = np.full((len(point), 2), np.nan)
        return nan, nan
    ci = np.nanquantile(draws, [a, 1 - a], axis=0).T
    noisy = np.clip(draws + rng.standard_normal(draws.shape) * sds[:, None], 0, 1)
    return ci, np.nanquantile(noisy, [a, 1 - a], axis=0).T


def backtest(table: ModelTable, *, target: str, kind: str = "lofo", n_components: int = 2, cutoff: float | None = None,
             n_bootstrap: int = 200, level: float = 0.95, seed: int = 0, fit_ceiling: bool = False) -> dict:
    """Leave-one-family-out (``kind="lofo"``) or compute cut-off (``kind="cutoff"``: fit on models below
    ``cutoff`` FLOPs, default the 75th percentile of the compute of models with the target; predict those
    above) backtest of the observational law.

    Returns:
        ``kind``, ``target``, ``level``, ``cutoff``, ``predictions`` (``model``, ``family``, ``C``, ``actual``,
        ``predicted``, ``confidence_interval``, ``interval`` (prediction), ``error``, ``inside``), ``summary``
        (``n``, ``mean_abs_error``, ``median_abs_error``, ``bias``, ``coverage``, ``confidence_coverage``,
        ``nominal``), ``by_family`` (lofo), ``failed`` (splits that could not be fitted, with the reason),
        ``leaning`` (cutoff: the fitted models the held-out forecasts lean on most).
    """
    if kind not in ("lofo", "cutoff"):
        raise ValueError(f"kind must be lofo or cutoff, not {kind!r}")
    y = table.score(target)
    rng = np.random.default_rng(seed)
    law_kw = {"target": target, "n_components": n_components, "fit_ceiling": fit_ceiling}
    splits = []
    if kind == "lofo":
        for fam in sorted(set(table.family[np.isfinite(y)])):
            splits.append((fam, table.family != fam, (table.family == fam) & np.isfinite(y)))
    else:
        has = np.isfinite(table.C)
        if cutoff is None:
            cutoff = float(np.quantile(table.C[has & np.isfinite(y)], 0.75))
        splits.append((f"C > {cutoff:.3g}", has & (table.C <= cutoff), has & (table.C > cutoff) & np.isfinite(y)))
    preds, failed = [], []
    for name, tr, te in splits:
        if not te.any():
            continue
        train, test = table.subset(tr), table.subset(te)
        try:
            point, draws, sds = _bootstrap_predictions(train, test, law_kw, n_bootstrap, rng)
        except (ValueError, np.linalg.LinAlgError) as e:
            failed.append({"split": name, "reason": str(e)})
            continue
        ci, pi = _intervals(point, draws, sds, level, rng)
        for i in range(len(test)):
            if not np.isfinite(point[i]):
                failed.append({"split": name, "reason": f"{test.model[i]} has no predictor benchmark"})
                continue
            actual = float(test.score(target)[i])
            preds.append({"model": str(test.model[i]), "family": str(test.family[i]), "split": name,
                          "C": None if not np.isfinite(test.C[i]) else float(test.C[i]), "actual": actual,
                          "predicted": float(point[i]), "confidence_interval": [float(v) for v in ci[i]],
                          "interval": [float(v) for v in pi[i]], "error": float(point[i]) - actual,
                          "inside": bool(pi[i, 0] <= actual <= pi[i, 1])})
    out = {"kind": kind, "target": target, "level": level, "cutoff": cutoff, "n_bootstrap": n_bootstrap,
           "n_components": n_components, "predictions": preds, "summary": _summary(preds, level), "failed": failed}
    if kind == "lofo":
        out["by_family"] = {f: _summary([p for p in preds if p["family"] == f], level)
                            for f in sorted({p["family"] for p in preds})}
    elif preds:
        tr = splits[0][1]
        out["leaning"] = leaning(table.subset(tr), table.subset(splits[0][2]), law_kw)
    return out


def _summary(preds: list[dict], level: float) -> dict:
    if not preds:
        return {"n": 0, "mean_abs_error": None, "median_abs_error": None, "bias": None, "coverage": None,
                "confidence_coverage": None, "nominal": level}
    e = np.array([p["error"] for p in preds])
    return {"n": len(preds), "mean_abs_error": float(np.mean(np.abs(e))), "median_abs_error": float(np.median(np.abs(e))),
            "bias": float(np.mean(e)), "coverage": float(np.mean([p["inside"] for p in preds])),
            "confidence_coverage": float(np.mean([p["confidence_interval"][0] <= p["actual"] <= p["confidence_interval"][1]
                                                  for p in preds])), "nominal": level}


def leaning(train: ModelTable, query: ModelTable, law_kw: dict, top: int = 5) -> list[dict]:
    """The fitted models a forecast leans on: the mean change in the query models' forecasts when each
    fitted model is left out (jackknife influence), largest first."""
    base = ObservationalLaw(**law_kw).fit(train).predict(query)
    out = []
    for i in range(len(train)):
        keep = np.arange(len(train)) != i
        try:
            p = ObservationalLaw(**law_kw).fit(train.subset(keep)).predict(query)
        except (ValueError, np.linalg.LinAlgError):
            continue
        out.append({"model": str(train.model[i]), "family": str(train.family[i]),
                    "influence": float(np.nanmean(base - p))})
    out.sort(key=lambda r: -abs(r["influence"]))
    return out[:top]
