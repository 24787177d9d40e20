"""Two-step downstream forecasts: compute -> task loss via a fitted power law, then task loss ->
task score via a fitted sigmoid, with bootstrap intervals carried through both steps.

The method of the OLMo 2 ladder (Bhagia et al. 2024, "Establishing Task Scaling Laws via
Compute-Efficient Model Ladders", https://arxiv.org/abs/2412.04403) and Llama 3 (Dubey et al. 2024,
https://arxiv.org/abs/2407.21783, Sec. 3.2.1).
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import optimize

from ..laws import ChinchillaLaw, FitError, PowerLaw, percentile_interval


def sigmoid(L, a, k, L0, b):
    """Score as a function of task loss: ``b + a / (1 + exp(k (L - L0)))`` (k > 0: falls with loss)."""
    return b + a / (1.0 + np.exp(np.clip(k * (np.asarray(L, float) - L0), -60, 60)))


class SigmoidFit:
    """Least-squares sigmoid of score vs task loss, multi-start, bounded. Learned: ``params_``."""

    param_names = ("a", "k", "L0", "b")

    def fit(self, L, y, start: dict | None = None) -> "SigmoidFit":
        """Fit; ``start`` (parameters of an earlier fit) replaces the multi-start grid (bootstrap)."""
        L, y = np.asarray(L, float), np.asarray(y, float)
        if L.size < 4:
            raise FitError(f"the sigmoid has 4 parameters and needs at least 4 models; got {L.size}")
        span = max(L.max() - L.min(), 1e-3)
        lo = [0.0, 1e-3, L.min() - 2 * span, -0.5]
        hi = [1.5, 1e3, L.max() + 2 * span, 1.0]
        if start is not None:
            starts = [[float(np.clip(start[k], a + 1e-9, b - 1e-9)) for k, a, b in zip(self.param_names, lo, hi)]]
        else:
            starts = [[max(y.max() - y.min(), 0.1), k0 / span, L00, max(y.min(), 0.0)]
                      for k0 in (1.0, 5.0, 25.0) for L00 in np.linspace(L.min(), L.max(), 4)]
        best = None
        for p0 in starts:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    p, _ = optimize.curve_fit(sigmoid, L, y, p0=p0, bounds=(lo, hi), maxfev=2000)
            except (RuntimeError, ValueError):
                continue
            sse = float(((sigmoid(L, *p) - y) ** 2).sum())
            if best is None or sse < best[1]:
                best = (p, sse)
        if best is None:
            raise FitError("the sigmoid fit did not converge from any start")
        self.params_ = dict(zip(self.param_names, (float(v) for v in best[0])))
        self.sse_ = best[1]
        self.residuals_ = y - sigmoid(L, *best[0])
        return self

    def predict(self, L):
        return sigmoid(L, *(self.params_[k] for k in self.param_names))

    def loss_for_score(self, value: float) -> float:
        """Task loss at which the fitted sigmoid reaches ``value`` (NaN if it never does)."""
        a, k, L0, b = (self.params_[n] for n in self.param_names)
        frac = (value - b) / a if a > 0 else np.nan
        if not 0 < frac < 1:
            return float("nan")
        return float(L0 + np.log(1.0 / frac - 1.0) / k)


class TwoStepForecast:
    """(N, D) or compute -> task loss -> score (sigmoid), bootstrapped over models.

    Step 1 is ``L(N, D) = E + A/N^alpha + B/D^beta`` on task loss when N and D are known for at least
    6 models (as in the OLMo ladder; a compute forecast then uses the law's compute-optimal N and D),
    else ``L(C) = E + (C_c / C)^alpha``. Learned: ``step1_``, ``step2_`` (:class:`SigmoidFit`), and
    per-resample parameters of both steps for intervals.
    """

    def __init__(self, *, n_bootstrap: int = 1000, level: float = 0.95, seed: int = 0,
                 score_bounds: tuple[float, float] | None = None):
        self.n_bootstrap = n_bootstrap
        self.level = level
        self.seed = seed
        self.score_bounds = score_bounds

    def fit(self, C, task_loss, score, N=None, D=None) -> "TwoStepForecast":
        C, TL, S = (np.asarray(x, float) for x in (C, task_loss, score))
        if C.size < 4:
            raise FitError(f"a two-step forecast needs at least 4 models; got {C.size}")
        self.by_nd_ = N is not None and D is not None and len(N) >= 6 and all(x for x in N) and all(x for x in D)
        if self.by_nd_:
            self.step1_ = ChinchillaLaw(n_bootstrap=self.n_bootstrap, seed=self.seed, allow_bounds=True,
                                        huber_delta=1e-2).fit(np.asarray(N, float), np.asarray(D, float), TL)
        else:
            self.step1_ = PowerLaw("C", n_bootstrap=self.n_bootstrap, seed=self.seed, allow_bounds=True,
                                   huber_delta=1e-2).fit(C, TL)
        self.step2_ = SigmoidFit().fit(TL, S)
        self.data_range_ = {"C_min": float(C.min()), "C_max": float(C.max()), "n_models": int(C.size),
                            "task_loss_min": float(TL.min()), "task_loss_max": float(TL.max())}
        self.boot2_ = None
        if self.n_bootstrap:
            rng = np.random.default_rng(self.seed + 1)
            rows = []
            for _ in range(self.n_bootstrap):
                idx = rng.integers(0, S.size, S.size)
                try:
                    rows.append([SigmoidFit().fit(TL[idx], S[idx], start=self.step2_.params_).params_[k]
                                 for k in SigmoidFit.param_names])
                except FitError:
                    rows.append([np.nan] * 4)
            self.boot2_ = np.array(rows)
        return self

    def _paired(self):
        b1 = self.step1_.bootstrap_params_
        R = min(len(b1["alpha"]), len(self.boot2_))
        ok = np.isfinite(self.boot2_[:R]).all(axis=1)
        p1 = {k: v[:R][ok] for k, v in b1.items()}
        return p1, self.boot2_[:R][ok]

    def _task_loss(self, p1: dict, C=None, N=None, D=None):
        """Task loss under step-1 parameters ``p1`` (arrays allowed) at (N, D), or at the
        compute-optimal (N, D) of compute C for a step 1 over (N, D)."""
        if not self.by_nd_:
            return self.step1_._predict_from(p1, C)
        if N is None:
            N, D = ChinchillaLaw._frontier(p1, C)
        return ChinchillaLaw._predict_from(p1, N, D)

    def predict(self, C=None, *, N=None, D=None) -> dict:
        """Task loss and score at compute ``C`` (or at ``N`` parameters and ``D`` tokens) with confidence
        intervals through both steps and a prediction interval for the score (plus the sigmoid's
        residual scatter)."""
        if N is not None and D is not None:
            C = 6.0 * float(N) * float(D)
            if not self.by_nd_:
                N = D = None
        C = float(C)
        clip = (lambda x: np.clip(x, *self.score_bounds)) if self.score_bounds else (lambda x: x)
        tl = float(self._task_loss(self.step1_.params_, C, N, D))
        sc = float(clip(self.step2_.predict(tl)))
        out = {"compute_flops": C, "task_loss": tl, "score": sc, "intervals": {},
               "extrapolation": {"compute_over_max_fitted": C / self.data_range_["C_max"], "fitted_on": self.data_range_}}
        if self.boot2_ is not None and self.step1_.has_intervals:
            p1, p2 = self._paired()
            tls = self._task_loss(p1, C, N, D)
            scs = clip(sigmoid(tls, *p2.T))
            rng = np.random.default_rng(self.seed + 2)
            noisy = clip(scs + rng.choice(self.step2_.residuals_, size=scs.shape))
            out["intervals"] = {"task_loss": [float(x) for x in percentile_interval(tls, self.level)],
                                "score": [float(x) for x in percentile_interval(scs, self.level)],
                                "score_prediction": [float(x) for x in percentile_interval(noisy, self.level)]}
        return out

    def compute_for_score(self, value: float) -> dict:
        """Compute at which the score is forecast to cross ``value``, with an interval."""
        def invert(p1, p2):
            target = SigmoidFit.__new__(SigmoidFit)
            target.params_ = dict(zip(SigmoidFit.param_names, p2))
            Lstar = target.loss_for_score(value)
            E = p1.get("E", 0.0)
            if not np.isfinite(Lstar) or Lstar <= E:
                return np.nan
            if not self.by_nd_:
                return p1["X_c"] * (Lstar - E) ** (-1.0 / p1["alpha"])
            f = lambda x: float(self._task_loss(p1, np.exp(x))) - Lstar  # noqa: E731
            lo, hi = np.log(1e3), np.log(1e40)
            if f(lo) < 0 or f(hi) > 0:
                return np.nan
            return float(np.exp(optimize.brentq(f, lo, hi)))

        point = invert(self.step1_.params_, [self.step2_.params_[k] for k in SigmoidFit.param_names])
        out = {"score": value, "compute_flops": float(point), "intervals": {}}
        if self.boot2_ is not None and self.step1_.has_intervals:
            p1, p2 = self._paired()
            cs = np.array([invert({k: v[r] for k, v in p1.items()}, p2[r]) for r in range(len(p2))])
            ok = np.isfinite(cs)
            out["reachable_fraction"] = float(ok.mean())
            if ok.sum() > 10:
                out["intervals"]["compute_flops"] = [float(x) for x in percentile_interval(cs[ok], self.level)]
        return out


def backtest(C, task_loss, score, *, n_holdout: int = 1, N=None, D=None, **kwargs) -> dict:
    """Fit on all but the ``n_holdout`` largest-compute models and forecast them (at their own N and D
    when known)."""
    C, TL, S = (np.asarray(x, float) for x in (C, task_loss, score))
    order = np.argsort(C, kind="stable")
    fit_idx, held = order[:-n_holdout], order[-n_holdout:]
    Nf = None if N is None else np.asarray(N, float)[fit_idx]
    Df = None if D is None else np.asarray(D, float)[fit_idx]
    fc = TwoStepForecast(**kwargs).fit(C[fit_idx], TL[fit_idx], S[fit_idx], N=Nf, D=Df)
    rows = []
    for i in held:
        p = fc.predict(C[i]) if N is None else fc.predict(N=float(N[i]), D=float(D[i]))
        rows.append({"compute_flops": float(C[i]), "actual_score": float(S[i]), "predicted_score": p["score"],
                     "actual_task_loss": float(TL[i]), "predicted_task_loss": p["task_loss"],
                     "intervals": p["intervals"], "score_error": p["score"] - float(S[i]),
                     "task_loss_rel_error": p["task_loss"] / float(TL[i]) - 1})
    return {"n_fitted": int(fit_idx.size), "held_out": rows,
            "mean_abs_score_error": float(np.mean([abs(r["score_error"]) for r in rows]))}
