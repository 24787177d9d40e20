"""pass@k from the distribution of per-problem success probabilities.

Schaeffer et al. 2025, "How Do Large Language Monkeys Get Their Power (Laws)?",
https://arxiv.org/abs/2502.17578: each problem i has its own single-sample success probability
``p_i ~ D``; of ``n_i`` samples ``c_i ~ Binomial(n_i, p_i)`` are correct. Fitting D to the counts by
maximum likelihood and integrating gives ``pass@k = E_D[1 - (1 - p)^k]`` at any k, far beyond the
samples drawn; the power law of ``-log pass@k`` in k is the left tail of D near p = 0.

* ``beta``: the beta-binomial likelihood and ``pass@k = 1 - B(a, b + k) / B(a, b)`` in closed form.
* ``kumaraswamy``: density ``a b p^(a-1) (1 - p^a)^(b-1)``; likelihood and pass@k by quadrature on a
  logit grid, the mass beyond the grid's ends added in closed form from the CDF.
* ``logitnormal``: ``logit(p) ~ Normal(mu, sigma)``, the item-response (Rasch) model of difficulty. A
  sampled answer's probability is a product of per-token probabilities, so its log is a sum over tokens
  and spreads across problems close to a normal; its left tail thins faster than any power of p, where a
  beta's density near zero goes as ``p^(a-1)``. Likelihood and pass@k by the same quadrature.
* ``auto``: every family above is fitted to the counts; the beta (the reference family, whose tail
  gives the power law) is kept unless another family's AIC is lower by more than 2 (substantial support
  in Burnham & Anderson's convention), and then the lowest AIC is kept. The choice uses the fitted
  counts only; the other families' forecasts are reported beside it as the spread over families.
  Without the margin, a Kumaraswamy fit that ties the beta on beta-distributed counts (its AIC 0.4-0.7
  lower) was picked and extrapolated worse (``docs/experiments.md``).
* a point mass ``pi0`` at p = 0 (problems the model never solves): ``pass@k = (1 - pi0) E_D[...]`` and
  ``pass@inf = 1 - pi0``. ``zero_mass="auto"`` keeps it only when a likelihood-ratio test at 5% wants it
  (the null sits on the boundary: the critical value is chi-square(1)'s 90% point, 2.71).

Intervals come from a bootstrap over problems (refits on resampled problems).
"""
from __future__ import annotations

import numpy as np

from ..laws import FitError, percentile_interval

FAMILIES = ("beta", "kumaraswamy", "logitnormal")
CHOICES = FAMILIES + ("auto",)
_LOG_BOUNDS = (-9.0, 9.0)      # log of each shape parameter
_MU_BOUNDS = (-25.0, 25.0)     # logit-normal: mean of logit(p)
_LOG_SIGMA_BOUNDS = (np.log(0.05), np.log(20.0))
_LOGIT_PI_BOUNDS = (-12.0, 12.0)
_LR_CRITICAL = 2.706           # 0.5 chi2(0) + 0.5 chi2(1) at 5%
_AIC_MARGIN = 2.0              # auto: another family replaces the beta only with an AIC lower by more than this
_T_MAX = 30.0                  # logit grid half-width: p from 1e-13 to 1 - 1e-13


def _counts(n, c) -> tuple[np.ndarray, np.ndarray]:
    n = np.atleast_1d(np.asarray(n))
    c = np.atleast_1d(np.asarray(c))
    if n.shape != c.shape or n.ndim != 1:
        raise ValueError(f"n and c must be 1-D arrays of the same length, got shapes {n.shape} and {c.shape}")
    if n.size < 3:
        raise ValueError(f"a distribution over problems needs at least 3 problems, got {n.size}")
    if not (np.all(n == np.round(n)) and np.all(c == np.round(c))):
        raise ValueError("counts n and c must be whole numbers")
    n, c = n.astype(np.int64), c.astype(np.int64)
    if (n < 1).any() or (c < 0).any() or (c > n).any():
        bad = np.flatnonzero((n < 1) | (c < 0) | (c > n))[:10].tolist()
        raise ValueError(f"counts must satisfy 0 <= c <= n and n >= 1 (problem(s) at index {bad})")
    return n, c


def _log_choose(n, c):
    from scipy.special import gammaln
    return gammaln(n + 1.0) - gammaln(c + 1.0) - gammaln(n - c + 1.0)


class _Grid:
    """Logit grid for the Kumaraswamy integrals. The binomial kernel of each distinct (n, c), scaled by
    its row maximum, is computed once per fit, so each likelihood evaluation (and every bootstrap
    refit) is one matrix-vector product."""

    def __init__(self, n_u, c_u):
        step = min(0.05, 0.5 / np.sqrt(max(float(n_u.max()), 4.0)))   # several points per binomial width
        self.t = np.arange(-_T_MAX, _T_MAX + step / 2, step)
        self.step = step
        self.logp = -np.logaddexp(0.0, -self.t)
        self.log1mp = -np.logaddexp(0.0, self.t)
        # log C(n,c) p^c (1-p)^(n-c) times the Jacobian dp/dt = p (1-p)
        kernel = (_log_choose(n_u, c_u)[:, None] + c_u[:, None] * self.logp + (n_u - c_u)[:, None] * self.log1mp
                  + self.logp + self.log1mp)
        self.row_max = kernel.max(axis=1)
        self.kernel = np.exp(kernel - self.row_max[:, None])
        self.zero = c_u == 0
        self.full = c_u == n_u

    def loglik(self, shape, u, v):
        """Log marginal likelihood of each distinct (n, c) under ``shape`` (``_Kumaraswamy`` or
        ``_LogitNormal``) with parameters (u, v): its density per unit p on the grid, plus its masses
        below the grid's smallest p and above its largest."""
        logw = shape.log_density(u, v, self.t, self.logp, self.log1mp)
        lo, hi = shape.tails(u, v)
        top = logw.max()
        with np.errstate(divide="ignore"):
            ll = np.log(self.kernel @ np.exp(logw - top)) + top + np.log(self.step) + self.row_max
            # outside the grid the binomial kernel is 1 for c = 0 (p ~ 0) and for c = n (p ~ 1), ~0 otherwise
            ll = np.where(self.zero, np.logaddexp(ll, np.log(lo)), ll)
            return np.where(self.full, np.logaddexp(ll, np.log(hi)), ll)


class _Kumaraswamy:
    @staticmethod
    def log_density(a, b, t, logp, log1mp):
        """Log density per unit p: ``a b p^(a-1) (1 - p^a)^(b-1)``."""
        log_pa = a * logp
        return np.log(a) + np.log(b) + (a - 1) * logp + (b - 1) * np.log(-np.expm1(np.minimum(log_pa, -1e-300)))

    @staticmethod
    def tails(a, b):
        """Mass below the grid's smallest p and above its largest (CDF ``1 - (1 - p^a)^b``)."""
        lo = -np.expm1(b * np.log1p(-np.exp(a * -np.logaddexp(0.0, _T_MAX))))
        hi = np.exp(b * np.log(-np.expm1(a * -np.logaddexp(0.0, -_T_MAX))))
        return lo, hi


class _LogitNormal:
    @staticmethod
    def log_density(mu, sigma, t, logp, log1mp):
        """Log density per unit p: the normal density of logit(p) over the Jacobian p (1 - p)."""
        return -0.5 * ((t - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi) - logp - log1mp

    @staticmethod
    def tails(mu, sigma):
        from scipy.special import ndtr
        return ndtr((-_T_MAX - mu) / sigma), ndtr((mu - _T_MAX) / sigma)


_QUADRATURE = {"kumaraswamy": _Kumaraswamy, "logitnormal": _LogitNormal}


def _fail_prob_beta(a, b, ks):
    """E[(1 - p)^k] under Beta(a, b): B(a, b + k) / B(a, b)."""
    from scipy.special import betaln
    return np.exp(betaln(a, b + ks) - betaln(a, b))


def _fail_prob_grid(family, a, b, ks):
    """E[(1 - p)^k] by quadrature on a fine logit grid (Kumaraswamy or logit-normal)."""
    from scipy.special import logsumexp
    shape = _QUADRATURE[family]
    t = np.arange(-_T_MAX, _T_MAX + 0.005, 0.01)
    logp, log1mp = -np.logaddexp(0.0, -t), -np.logaddexp(0.0, t)
    w = shape.log_density(a, b, t, logp, log1mp) + logp + log1mp + np.log(0.01)
    lo, _ = shape.tails(a, b)          # below the grid (1 - p)^k = 1 for every k used; above it 0
    return np.exp(logsumexp(w[None, :] + ks[:, None] * log1mp[None, :], axis=1)) + lo


_PARAMS = {"beta": ("a", "b"), "kumaraswamy": ("a", "b"), "logitnormal": ("mu", "sigma")}
_BOUNDS = {"beta": [_LOG_BOUNDS, _LOG_BOUNDS], "kumaraswamy": [_LOG_BOUNDS, _LOG_BOUNDS],
           "logitnormal": [_MU_BOUNDS, _LOG_SIGMA_BOUNDS]}


class SuccessDistribution:
    """The distribution of per-problem success probability, fitted to per-problem (n, c) counts.

    Args:
        family: ``beta``, ``kumaraswamy``, ``logitnormal``, or ``auto`` (all three fitted; the beta
            kept unless another's AIC is lower by more than 2).
        zero_mass: ``True`` fits a share ``pi0`` of never-solvable problems (p = 0), ``False`` does
            not, ``"auto"`` keeps it when a likelihood-ratio test at 5% asks for it.
        n_bootstrap: refits on problems resampled with replacement, for the intervals (0: none).
        level: confidence level of the intervals.

    Learned: ``family_`` (the family fitted; with ``auto``, the one chosen), ``params_`` (``a`` and
    ``b``, or ``mu`` and ``sigma`` for the logit-normal, and ``pi0``), ``loglik_``, ``aic_``,
    ``zero_mass_`` (whether the point mass was kept), ``lr_statistic_``, ``samples_`` (bootstrap
    parameters), ``candidates_`` (with ``auto``: every family's fit), ``n_problems_``, ``n_samples_``
    (per-problem sample counts: min, max).
    """

    def __init__(self, *, family: str = "auto", zero_mass="auto", n_bootstrap: int = 200, level: float = 0.95,
                 seed: int = 0):
        self.family = family
        self.zero_mass = zero_mass
        self.n_bootstrap = n_bootstrap
        self.level = level
        self.seed = seed

    # ---------------------------------------------------------------- likelihood
    def _setup(self, n, c):
        pairs, inverse = np.unique(np.stack([n, c], axis=1), axis=0, return_inverse=True)
        self._n_u, self._c_u = pairs[:, 0], pairs[:, 1]
        self._inverse = inverse.ravel()
        self._grid = _Grid(self._n_u, self._c_u) if self.family_ in _QUADRATURE else None
        if self.family_ == "beta":
            self._logc = _log_choose(self._n_u, self._c_u)

    def _shape(self, x):
        """The two shape parameters from the optimiser's coordinates."""
        return (x[0], np.exp(x[1])) if self.family_ == "logitnormal" else (np.exp(x[0]), np.exp(x[1]))

    def _loglik_u(self, u, v):
        if self._grid is not None:
            return self._grid.loglik(_QUADRATURE[self.family_], u, v)
        from scipy.special import betaln
        return self._logc + betaln(self._c_u + u, self._n_u - self._c_u + v) - betaln(u, v)

    def _negloglik(self, x, w, with_pi):
        ll = self._loglik_u(*self._shape(x))
        if with_pi:
            lp = -np.logaddexp(0.0, -x[2])          # log pi0
            l1p = -np.logaddexp(0.0, x[2])          # log (1 - pi0)
            ll = np.where(self._c_u == 0, np.logaddexp(lp, l1p + ll), l1p + ll)
        v = -float(np.dot(w, ll))
        return v if np.isfinite(v) else 1e300

    def _bounds(self, with_pi):
        return _BOUNDS[self.family_] + ([_LOGIT_PI_BOUNDS] if with_pi else [])

    def _optimize(self, w, with_pi, starts):
        from scipy.optimize import minimize
        bounds = self._bounds(with_pi)
        best = None
        for x0 in starts:
            x0 = np.clip(np.asarray(x0, float)[:len(bounds)], [lo for lo, _ in bounds], [hi for _, hi in bounds])
            r = minimize(self._negloglik, x0, args=(w, with_pi), method="Powell", bounds=bounds,
                         options={"xtol": 1e-4, "ftol": 1e-9})
            if best is None or r.fun < best.fun:
                best = r
        return best

    def _starts(self, n, c, with_pi):
        p = (c + 0.5) / (n + 1.0)
        zero = max(np.mean(c == 0), 0.01)
        pis = [np.log(zero / (1 - zero + 1e-9)) - 1.0, 0.0] if with_pi else [0.0]
        if self.family_ == "logitnormal":
            t = np.log(p / (1 - p))
            mom = [float(t.mean()), float(np.log(max(t.std(), 0.1)))]
            return [mom + [q] for q in pis] + [[mom[0] - 3.0, np.log(2.0), pis[0]], [0.0, 0.0, pis[-1]]]
        m, v = p.mean(), max(p.var(), 1e-6)
        s = max(m * (1 - m) / v - 1, 0.05)               # method of moments for the beta
        mom = [np.log(m * s), np.log((1 - m) * s)]
        return [mom + [q] for q in pis] + [[np.log(0.3), np.log(3.0), pis[0]], [np.log(0.1), np.log(1.0), pis[-1]]]

    # ---------------------------------------------------------------- fit
    def fit(self, n, c) -> "SuccessDistribution":
        """Maximum likelihood on the counts, then the bootstrap. Raises FitError when no problem was
        ever solved (nothing to fit) and ValueError on invalid counts."""
        if self.family not in CHOICES:
            raise ValueError(f"family must be one of {', '.join(CHOICES)}, not {self.family!r}")
        if self.zero_mass not in (True, False, "auto"):
            raise ValueError(f"zero_mass must be True, False or 'auto', not {self.zero_mass!r}")
        n, c = _counts(n, c)
        if not (c > 0).any():
            raise FitError("no problem was ever solved: the counts say nothing about the distribution's shape")
        if self.family == "auto":
            return self._fit_auto(n, c)
        self.family_ = self.family
        self.candidates_ = None
        self._setup(n, c)
        w = np.bincount(self._inverse, minlength=self._n_u.size).astype(float)
        fits = {}
        for with_pi in ((False, True) if self.zero_mass == "auto" else (bool(self.zero_mass),)):
            fits[with_pi] = self._optimize(w, with_pi, self._starts(n, c, with_pi))
        if self.zero_mass == "auto":
            self.lr_statistic_ = float(max(2 * (fits[False].fun - fits[True].fun), 0.0))
            self.zero_mass_ = self.lr_statistic_ > _LR_CRITICAL
        else:
            self.lr_statistic_ = None
            self.zero_mass_ = bool(self.zero_mass)
        r = fits[self.zero_mass_]
        self._x = r.x
        self.params_ = self._to_params(r.x)
        self.loglik_ = float(-r.fun)
        self.aic_ = float(2 * r.x.size + 2 * r.fun)
        names = _PARAMS[self.family_] + ("pi0",)
        self.at_bounds_ = [name for name, v, (lo, hi) in zip(names, r.x, self._bounds(r.x.size > 2)) if min(v - lo, hi - v) < 1e-3]
        self.n_problems_ = int(n.size)
        self.n_samples_ = {"min": int(n.min()), "max": int(n.max())}
        self.samples_ = self._bootstrap(n.size) if self.n_bootstrap else None
        return self

    def _fit_auto(self, n, c) -> "SuccessDistribution":
        """Fit every family without the bootstrap, keep the beta unless another family's AIC is lower by
        more than ``_AIC_MARGIN`` (then the lowest), then bootstrap the one kept (its fit reused)."""
        kw = {"zero_mass": self.zero_mass, "level": self.level, "seed": self.seed}
        fits = {f: SuccessDistribution(family=f, n_bootstrap=0, **kw).fit(n, c) for f in FAMILIES}
        best = min(FAMILIES, key=lambda f: fits[f].aic_)
        if fits[best].aic_ > fits["beta"].aic_ - _AIC_MARGIN:
            best = "beta"
        chosen = fits[best]
        if self.n_bootstrap:
            chosen.n_bootstrap = self.n_bootstrap
            chosen.samples_ = chosen._bootstrap(chosen.n_problems_)
        self.__dict__.update({k: v for k, v in chosen.__dict__.items() if k not in ("family", "n_bootstrap")})
        self.candidates_ = fits
        return self

    def _to_params(self, x) -> dict:
        pi0 = float(1.0 / (1.0 + np.exp(-x[2]))) if x.size > 2 else 0.0
        u, v = self._shape(x)
        return dict(zip(_PARAMS[self.family_], (float(u), float(v)))) | {"pi0": pi0}

    def _bootstrap(self, n_problems) -> dict:
        rng = np.random.default_rng(self.seed)
        rows = []
        for _ in range(self.n_bootstrap):
            w = np.bincount(self._inverse[rng.integers(0, n_problems, n_problems)], minlength=self._n_u.size).astype(float)
            if not (w[self._c_u > 0] > 0).any():
                continue
            r = self._optimize(w, self.zero_mass_, [self._x])
            rows.append(self._to_params(r.x))
        return {k: np.array([row[k] for row in rows]) for k in _PARAMS[self.family_] + ("pi0",)}

    # ---------------------------------------------------------------- predictions
    def _pass(self, u, v, pi0, ks):
        fail = _fail_prob_beta(u, v, ks) if self.family_ == "beta" else _fail_prob_grid(self.family_, u, v, ks)
        return (1.0 - pi0) * (1.0 - np.clip(fail, 0.0, 1.0))

    def _ks(self, k):
        ks = np.atleast_1d(np.asarray(k, float))
        if (ks < 1).any():
            raise ValueError(f"k must be >= 1, got {ks.tolist()}")
        return ks

    def _n_boot(self) -> int:
        return 0 if self.samples_ is None else int(len(self.samples_["pi0"]))

    def pass_at_k(self, k) -> np.ndarray:
        """Expected pass@k over problems, ``(1 - pi0) E[1 - (1 - p)^k]``, for each k."""
        u, v = _PARAMS[self.family_]
        p = self.params_
        return self._pass(p[u], p[v], p["pi0"], self._ks(k))

    def pass_at_k_samples(self, k) -> np.ndarray:
        """pass@k under each bootstrap refit, (R, K)."""
        ks = self._ks(k)
        u, v = (self.samples_[name] for name in _PARAMS[self.family_])
        return np.array([self._pass(a, b, q, ks) for a, b, q in zip(u, v, self.samples_["pi0"])])

    def forecast(self, k) -> dict:
        """pass@k at each k with its bootstrap interval, and whether k extrapolates beyond the samples;
        with ``auto``, every family's forecast too (``by_family``)."""
        ks = self._ks(k)
        out = {"k": ks.tolist(), "pass_at_k": self.pass_at_k(ks).tolist(), "level": self.level, "family": self.family_,
               "extrapolation_factor": (ks / self.n_samples_["min"]).tolist()}
        if self._n_boot():
            lo, hi = percentile_interval(self.pass_at_k_samples(ks), self.level)
            out["lower"], out["upper"] = lo.tolist(), hi.tolist()
        if self.candidates_:
            out["by_family"] = {f: d.pass_at_k(ks).tolist() for f, d in self.candidates_.items()}
        return out

    def never_solvable(self) -> dict:
        """The share of problems with p = 0 (``pi0``) with its interval, and pass@k's limit ``1 - pi0``."""
        out = {"share": self.params_["pi0"], "fitted": self.zero_mass_, "pass_at_infinity": 1.0 - self.params_["pi0"]}
        if self._n_boot():
            out["interval"] = [float(v) for v in percentile_interval(self.samples_["pi0"], self.level)]
        return out

    def intervals(self, level=None) -> dict:
        if not self._n_boot():
            return {}
        level = self.level if level is None else level
        return {k: [float(x) for x in percentile_interval(v, level)] for k, v in self.samples_.items()}

    def to_dict(self) -> dict:
        out = {"family": self.family_, "params": self.params_, "intervals": self.intervals(), "loglik": self.loglik_,
               "aic": self.aic_, "zero_mass": self.zero_mass_, "lr_statistic": self.lr_statistic_,
               "at_bounds": self.at_bounds_, "never_solvable": self.never_solvable(), "n_problems": self.n_problems_,
               "n_samples": self.n_samples_, "n_bootstrap": self._n_boot()}
        if self.candidates_:
            out["selection"] = {"rule": f"beta unless another family's AIC is lower by more than {_AIC_MARGIN:g}, then the lowest AIC",
                                "families": {f: {"aic": d.aic_, "loglik": d.loglik_, "params": d.params_}
                                             for f, d in self.candidates_.items()}}
        return out

    def __repr__(self):
        if not hasattr(self, "params_"):
            return f"SuccessDistribution(family={self.family!r}, zero_mass={self.zero_mass!r})"
        shape = ", ".join(f"{k}={self.params_[k]:.4g}" for k in _PARAMS[self.family_])
        return f"SuccessDistribution({self.family_}: {shape}, pi0={self.params_['pi0']:.3g})"


def subsample_counts(n, c, m: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Keep ``m`` of each problem's ``n`` samples, drawn without replacement (the correct ones among
    them are hypergeometric): what a smaller sampling run would have seen."""
    n, c = _counts(n, c)
    if m < 1 or m > n.min():
        raise ValueError(f"can keep between 1 and {n.min()} samples per problem (the fewest any problem has), not {m}")
    rng = np.random.default_rng(seed)
    return np.full_like(n, m), rng.hypergeometric(c, n - c, m)


def aggregate_forecast(n, c, k, *, n_bootstrap: int = 200, level: float = 0.95, seed: int = 0) -> dict:
    """The aggregate alternative: the coverage law ``exp(a k^b)`` fitted to the unbiased pass@k at
    k = 1, 2, 4, ... up to the fewest samples any problem has, extrapolated to ``k``."""
    from .estimators import coverage_curve
    from .laws import CoverageLaw
    n, c = _counts(n, c)
    k_fit = np.unique(np.r_[2 ** np.arange(int(np.log2(n.min())) + 1), n.min()])
    cov = coverage_curve(n, c, k_fit, n_bootstrap=n_bootstrap, level=level, seed=seed)
    law = CoverageLaw(level=level).fit(cov["k"], cov["coverage"], cov.get("bootstrap"))
    ks = np.atleast_1d(np.asarray(k, float))
    out = {"k": ks.tolist(), "pass_at_k": law.predict(ks).tolist(), "params": law.params_, "fitted_k": [int(x) for x in k_fit]}
    if law.samples_:
        pred = np.exp(law.samples_["a"][:, None] * np.power(ks[None, :], law.samples_["b"][:, None]))
        lo, hi = percentile_interval(pred, level)
        out["lower"], out["upper"] = lo.tolist(), hi.tolist()
    return out


def forecast_backtest(n, c, m: int, k, *, family: str = "auto", zero_mass="auto", n_bootstrap: int = 200,
                      level: float = 0.95, seed: int = 0) -> dict:
    """Keep ``m`` samples per problem, forecast pass@k from them (distribution and aggregate law), and
    score both against the unbiased pass@k of all the samples (every k must be at most the fewest n)."""
    from .estimators import pass_at_k
    n, c = _counts(n, c)
    ks = np.atleast_1d(np.asarray(k, int))
    if ks.max() > n.min():
        raise ValueError(f"the full-data pass@k needs k <= {n.min()} (the fewest samples any problem has), got k={ks.max()}")
    actual = pass_at_k(n, c, ks).mean(axis=0)
    nm, cm = subsample_counts(n, c, m, seed=seed)
    dist = SuccessDistribution(family=family, zero_mass=zero_mass, n_bootstrap=n_bootstrap, level=level, seed=seed).fit(nm, cm)
    fd = dist.forecast(ks)
    out = {"kept_per_problem": m, "k": ks.tolist(), "actual": actual.tolist(), "distribution": dist.to_dict() | {"forecast": fd}}
    out["distribution"]["abs_error"] = np.abs(np.array(fd["pass_at_k"]) - actual).tolist()
    try:
        agg = aggregate_forecast(nm, cm, ks, n_bootstrap=n_bootstrap, level=level, seed=seed)
        agg["abs_error"] = np.abs(np.array(agg["pass_at_k"]) - actual).tolist()
    except FitError as e:
        agg = {"error": str(e)}
    out["aggregate"] = agg
    return out


def passk_forecast_report(groups: dict, ks, *, family: str = "auto", zero_mass="auto", n_bootstrap: int = 200,
                          level: float = 0.95, backtest: int | None = None, seed: int = 0) -> dict:
    """Per (task, model) group: the fitted distribution, pass@k forecasts with intervals, the
    never-solvable share, the aggregate coverage law's forecast beside it, the unbiased pass@k where
    k is within the samples, and (with ``backtest=m``) both forecasts from ``m`` samples per problem
    scored against all of them."""
    from .estimators import pass_at_k
    ks = np.atleast_1d(np.asarray(ks, int))
    out = {}
    for (task, model), g in sorted(groups.items()):
        name = f"{task}/{model}"
        n, c = np.asarray(g["n"]), np.asarray(g["c"])
        entry: dict = {"task": task, "model": model, "n_problems": int(n.size)}
        try:
            dist = SuccessDistribution(family=family, zero_mass=zero_mass, n_bootstrap=n_bootstrap, level=level,
                                       seed=seed).fit(n, c)
        except FitError as e:
            out[name] = entry | {"error": str(e)}
            continue
        entry["distribution"] = dist.to_dict()
        entry["forecast"] = dist.forecast(ks)
        within = ks[ks <= n.min()]
        entry["measured"] = {"k": within.tolist(), "pass_at_k": pass_at_k(n, c, within).mean(axis=0).tolist() if within.size else []}
        k_check = np.unique(np.r_[2 ** np.arange(int(np.log2(n.min())) + 1), n.min()])
        entry["fit_check"] = {"k": k_check.tolist(), "max_abs_error": float(np.max(np.abs(
            dist.pass_at_k(k_check) - pass_at_k(n, c, k_check).mean(axis=0))))}
        try:
            entry["aggregate"] = aggregate_forecast(n, c, ks, n_bootstrap=n_bootstrap, level=level, seed=seed)
        except FitError as e:
            entry["aggregate"] = {"error": str(e)}
        if backtest is not None:
            if backtest >= n.min():
                raise ValueError(f"--backtest {backtest} keeps too many samples: it must be fewer than {n.min()} "
                                 f"(the fewest samples any problem of {name} has), so that there is something to forecast")
            # scored where all the samples measure pass@k: the asked k within them, else a grid from M up to them
            scored = within if within.size else np.unique(np.geomspace(backtest, n.min(), 4).round().astype(int))
            entry["backtest"] = forecast_backtest(n, c, backtest, scored, family=family, zero_mass=zero_mass,
                                                  n_bootstrap=n_bootstrap, level=level, seed=seed)
        out[name] = entry
    return {"groups": out}
