"""One robust fitting engine for every law written as a sum of power laws plus a constant
(and any other law whose spec gives a batched log-prediction with its Jacobian).

A law of this family predicts, in log space::

    log L = logsumexp(a_1 - p_1 log X_1, ..., a_k - p_k log X_k [, e])

(Chinchilla's Approach 3 with k = 2, X = (N, D); a Kaplan power law with an irreducible term with
k = 1). The objective is the Huber loss of the log-residuals, **summed** over runs (as in Hoffmann et
al. 2022 and Besiroglu et al. 2024, https://arxiv.org/abs/2404.10102: a mean makes L-BFGS stop early).

Multi-start: every start of the grid is refined together in one batched, bounded
Levenberg-Marquardt iteration on the IRLS majoriser of the Huber loss (numpy, no per-start Python
loop); after ``prune_after`` iterations only the ``n_keep`` best starts go on (with more than
``prune_runs`` runs, this pruning sees a random subsample of that many runs: it only ranks starts,
and the survivors are refined on every run, so the objective is the full one); the distinct minima
that survive are polished with scipy's L-BFGS-B (analytic gradient) and the best is kept. Bootstrap
resamples are problems of the same batch (multinomial run weights, or resampled targets),
warm-started from the distinct minima of the full-data fit.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

_CHUNK_ELEMENTS = 2_000_000  # starts x runs per batch block (bounds memory at ~100 MB)


@dataclasses.dataclass(frozen=True)
class PowerSumSpec:
    """Layout of a law: ``k`` power-law terms, with or without a constant ``e = log E``.

    Parameter vector: ``[a_1..a_k, p_1..p_m, (e)]``. By default term ``i`` is ``a_i - p_i log X_i``
    (``m = k``). ``exponents`` generalises this: for each term, the ``(variable, exponent slot)`` pairs
    it contains, so exponents can be shared between terms (Gadre et al.'s single exponent) and a term
    can involve several variables (an interaction ``F / (N^alpha D^beta)``).
    """

    k: int
    constant: bool
    exponents: tuple[tuple[tuple[int, int], ...], ...] | None = None

    @property
    def terms(self) -> tuple[tuple[tuple[int, int], ...], ...]:
        return self.exponents if self.exponents is not None else tuple(((i, i),) for i in range(self.k))

    @property
    def n_slots(self) -> int:
        return 1 + max(slot for term in self.terms for _, slot in term)

    @property
    def n_params(self) -> int:
        return self.k + self.n_slots + int(self.constant)

    def log_prediction(self, theta: np.ndarray, logX: np.ndarray, jac: bool):
        """log-prediction (S, n) of each parameter row and, if asked, its Jacobian (S, n, P)."""
        k, m = self.k, self.n_slots
        a, p = theta[:, :k], theta[:, k:k + m]
        Z = None if self.exponents is None else self.design(logX)
        if Z is None:
            terms = a[:, None, :] - p[:, None, :] * logX[None, :, :]
        else:
            terms = a[:, None, :] - np.einsum("sm,tmn->snt", p, Z)
        if self.constant:
            e = np.broadcast_to(theta[:, None, k + m:k + m + 1], terms.shape[:2] + (1,))
            terms = np.concatenate([terms, e], axis=2)
        top = terms.max(axis=2, keepdims=True)
        ex = np.exp(terms - top)
        z = ex.sum(axis=2)
        logpred = top[..., 0] + np.log(z)
        if not jac:
            return logpred, None
        s = ex / z[..., None]           # softmax weight of each term
        J = np.empty(logpred.shape + (self.n_params,))
        J[..., :k] = s[..., :k]
        J[..., k:k + m] = -s[..., :k] * logX[None, :, :] if Z is None else -np.einsum("snt,tmn->snm", s[..., :k], Z)
        if self.constant:
            J[..., k + m] = s[..., k]
        return logpred, J

    def design(self, logX: np.ndarray) -> np.ndarray:
        """(k, m, n): how much of exponent slot m multiplies -log X in term t, per run."""
        Z = np.zeros((self.k, self.n_slots, logX.shape[0]))
        for t, term in enumerate(self.terms):
            for v, slot in term:
                Z[t, slot] += logX[:, v]
        return Z


def _rows(logL: np.ndarray) -> np.ndarray:
    """Targets as (1, n) shared by every problem, or (S, n) one row per problem."""
    return logL if logL.ndim == 2 else logL[None, :]


def _pick(arr, rows):
    """Rows of a per-problem array (weights or targets); shared arrays pass through."""
    return None if arr is None else (arr[rows] if arr.ndim == 2 else arr)


def _huber(r: np.ndarray, delta: float) -> np.ndarray:
    ar = np.abs(r)
    return np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))


def objective(theta: np.ndarray, logX: np.ndarray, logL: np.ndarray, spec: PowerSumSpec, delta: float,
              weights: np.ndarray | None = None) -> np.ndarray:
    """Summed Huber objective for each row of ``theta`` (S, P); ``weights`` (S, n) or None."""
    theta = np.atleast_2d(theta)
    logpred, _ = spec.log_prediction(theta, logX, jac=False)
    h = _huber(logpred - _rows(logL), delta)
    return (h if weights is None else h * weights).sum(axis=1)


def _derivatives(theta, logX, logL, spec, delta, weights, newton: bool = False):
    """Objective (S,), gradient (S, P) and Gauss-Newton matrix (S, P, P).

    The matrix is the IRLS majoriser's (runs beyond ``delta`` weighted ``delta / |r|``: every step
    descends, convergence is linear) or, with ``newton``, the Huber loss's own curvature (runs beyond
    ``delta`` weigh nothing: quadratic convergence once the set of runs inside ``delta`` settles, which
    needs many runs there).
    """
    logpred, jac = spec.log_prediction(theta, logX, jac=True)
    r = logpred - _rows(logL)
    ar = np.abs(r)
    w = np.ones_like(r) if weights is None else np.broadcast_to(weights, r.shape)
    f = (_huber(r, delta) * w).sum(axis=1)
    psi = np.clip(r, -delta, delta) * w
    grad = np.matmul(psi[:, None, :], jac)[:, 0, :]
    inside = ar <= delta
    omega = (inside if newton else np.where(inside, 1.0, delta / np.maximum(ar, 1e-300))) * w
    hess = np.matmul(jac.transpose(0, 2, 1) * omega[:, None, :], jac)
    return f, grad, hess


def batched_minimise(starts: np.ndarray, logX: np.ndarray, logL: np.ndarray, spec: PowerSumSpec, delta: float,
                     bounds: np.ndarray, weights: np.ndarray | None = None, max_iter: int = 200,
                     tol: float = 1e-10, newton: bool = False):
    """Bounded Levenberg-Marquardt on many independent problems at once.

    Args:
        starts: (S, P) initial parameter vectors.
        bounds: (P, 2) lower and upper bounds.
        weights: (S, n) per-problem run weights (bootstrap multiplicities) or None.
        logL: (n,) targets shared by every problem, or (S, n) one row per problem.
        newton: damp the Huber loss's own curvature instead of the IRLS majoriser (see
            :func:`_derivatives`).
    Returns:
        theta (S, P), objective (S,), converged (S,) bool.
    """
    lo, hi = bounds[:, 0], bounds[:, 1]
    theta = np.clip(np.array(starts, dtype=float), lo, hi)
    S, P = theta.shape
    f = np.empty(S)
    grad = np.empty((S, P))
    hess = np.empty((S, P, P))
    step_rows = max(1, _CHUNK_ELEMENTS // max(1, logL.shape[-1]))
    for i in range(0, S, step_rows):
        sl = slice(i, i + step_rows)
        f[sl], grad[sl], hess[sl] = _derivatives(theta[sl], logX, _pick(logL, sl), spec, delta, _pick(weights, sl),
                                                 newton)
    lam = np.full(S, 1e-3)
    active = np.ones(S, dtype=bool)
    converged = np.zeros(S, dtype=bool)
    eye = np.eye(P)
    for it in range(max_iter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        for j in range(0, idx.size, step_rows):
            sub = idx[j:j + step_rows]
            H, g = hess[sub], grad[sub]
            diag = np.einsum("spp->sp", H)
            damp = H + lam[sub, None, None] * (diag[:, :, None] * eye + 1e-9 * eye)
            try:
                step = np.linalg.solve(damp, -g[..., None])[..., 0]
            except np.linalg.LinAlgError:
                step = -g / (np.abs(diag) + lam[sub, None] + 1e-9)
            trial = np.clip(theta[sub] + step, lo, hi)
            f_new, g_new, h_new = _derivatives(trial, logX, _pick(logL, sub), spec, delta, _pick(weights, sub),
                                               newton)
            better = np.isfinite(f_new) & (f_new <= f[sub])
            gain = np.where(better, (f[sub] - f_new) / np.maximum(np.abs(f[sub]), 1e-300), 0.0)
            moved = np.abs(trial - theta[sub]).max(axis=1)
            acc = sub[better]
            theta[acc], f[acc], grad[acc], hess[acc] = trial[better], f_new[better], g_new[better], h_new[better]
            lam[sub] = np.where(better, np.maximum(lam[sub] / 3.0, 1e-12), lam[sub] * 4.0)
            done = (better & ((gain < tol) | (moved < 1e-12))) | (lam[sub] > 1e12)
            converged[sub[done & better]] = True
            converged[sub[done & ~better & (lam[sub] > 1e12)]] = True
            active[sub[done]] = False
    return theta, f, converged


def default_jobs() -> int:
    """Worker processes for batched work: the CPUs this process may use, at most 8."""
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, min(8, os.cpu_count() or 1))


def _minimise_rows(args):
    return batched_minimise(*args[0], **args[1])


def parallel_minimise(starts, logX, logL, spec, delta, bounds, weights=None, n_jobs: int | None = None,
                      min_rows_per_job: int = 256, **kwargs):
    """:func:`batched_minimise` with the problems split over ``n_jobs`` worker processes.

    Results do not depend on ``n_jobs``: the problems are independent and all randomness (bootstrap
    weights) is drawn by the caller.
    """
    n_jobs = default_jobs() if n_jobs is None else n_jobs
    S = starts.shape[0]
    jobs = max(1, min(n_jobs, S // min_rows_per_job))
    if jobs == 1:
        return batched_minimise(starts, logX, logL, spec, delta, bounds, weights=weights, **kwargs)
    from concurrent.futures import ProcessPoolExecutor

    cuts = np.array_split(np.arange(S), jobs)
    work = [((starts[c], logX, _pick(logL, c), spec, delta, bounds), dict(kwargs, weights=_pick(weights, c)))
            for c in cuts]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        parts = list(pool.map(_minimise_rows, work))
    return tuple(np.concatenate([part[i] for part in parts]) for i in range(3))


def polish(theta0: np.ndarray, logX, logL, spec: PowerSumSpec, delta: float, bounds: np.ndarray):
    """Refine one start with scipy's L-BFGS-B and the analytic gradient."""
    from scipy import optimize   # imported on use: scipy costs the light commands most of their start-up

    def fun(x):
        f, g, _ = _derivatives(x[None, :], logX, logL, spec, delta, None)
        return float(f[0]), g[0]

    res = optimize.minimize(fun, theta0, jac=True, method="L-BFGS-B", bounds=[tuple(b) for b in bounds],
                            options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-12})
    return res.x, float(res.fun), bool(res.success) or "ABNORMAL" in str(res.message)


def distinct_minima(theta: np.ndarray, f: np.ndarray, n: int, rtol: float = 1e-3) -> np.ndarray:
    """Indices of up to ``n`` best rows of ``theta`` that differ from each other."""
    chosen: list[int] = []
    for i in np.argsort(f):
        if not np.isfinite(f[i]):
            continue
        if all(np.max(np.abs(theta[i] - theta[j]) / (np.abs(theta[j]) + 1e-2)) > rtol for j in chosen):
            chosen.append(int(i))
        if len(chosen) == n:
            break
    return np.array(chosen, dtype=int)


@dataclasses.dataclass
class EngineResult:
    theta: np.ndarray            # best parameter vector (P,)
    objective: float
    converged: bool
    minima: np.ndarray           # distinct local minima (M, P), best first
    minima_objective: np.ndarray
    n_starts: int


def fit_power_sum(logX: np.ndarray, logL: np.ndarray, spec: PowerSumSpec, starts: np.ndarray, bounds: np.ndarray,
                  delta: float, n_keep: int = 64, prune_after: int = 6, n_polish: int = 4,
                  n_jobs: int | None = None, prune_runs: int | None = 2000, seed: int = 0) -> EngineResult:
    """Multi-start fit of one data set (see module docstring); ``prune_runs=None`` prunes on every run."""
    sub = np.arange(logL.size)
    if prune_runs is not None and logL.size > prune_runs:
        sub = np.sort(np.random.default_rng(seed).choice(logL.size, prune_runs, replace=False))
    theta, f, conv = parallel_minimise(starts, logX[sub], logL[sub], spec, delta, bounds, n_jobs=n_jobs,
                                       max_iter=prune_after)
    keep = np.argsort(np.where(np.isfinite(f), f, np.inf))[:n_keep]
    if sub.size < logL.size:   # objectives on the subsample do not compare with full ones: only survivors count
        f = np.full_like(f, np.inf)
    newton = newton_pays(theta[keep[0]], logX, logL, spec, delta)
    theta_k, f_k, conv_k = batched_minimise(theta[keep], logX, logL, spec, delta, bounds, newton=newton)
    if newton and not conv_k.all():   # Newton stalled far from a minimum: go on with the majoriser
        slow = np.flatnonzero(~conv_k)
        theta_k[slow], f_k[slow], conv_k[slow] = batched_minimise(theta_k[slow], logX, logL, spec, delta, bounds)
    theta[keep], f[keep], conv[keep] = theta_k, f_k, conv_k
    conv[np.setdiff1d(np.arange(len(f)), keep)] = False
    cand = distinct_minima(theta, f, n_polish)
    polished = [polish(theta[i], logX, logL, spec, delta, bounds) for i in cand]
    thetas = np.array([p[0] for p in polished])
    objs = np.array([p[1] for p in polished])
    order = np.argsort(objs)
    best = order[0]
    ok = polished[best][1] <= f[cand[best]] + 1e-12 and (polished[best][2] or conv[cand[best]])
    return EngineResult(theta=thetas[best], objective=float(objs[best]), converged=bool(ok),
                        minima=thetas[order], minima_objective=objs[order], n_starts=len(starts))


def refit_problems(logX: np.ndarray, logL: np.ndarray, spec: PowerSumSpec, warm: np.ndarray, bounds: np.ndarray,
                   delta: float, weights: np.ndarray | None = None,
                   n_jobs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Refit R related problems (bootstrap resamples), each from every warm start, in one batch.

    Args:
        logL: (n,) shared targets with ``weights`` (R, n) run multiplicities (pairs bootstrap), or
            (R, n) targets, one row per problem (residual bootstrap) with ``weights`` None.
        warm: (M, P) starts for every problem (the distinct minima of the full fit).
    Returns:
        theta (R, P) of the best start of each problem, and its converged flag (R,).
    """
    R = weights.shape[0] if weights is not None else logL.shape[0]
    M = warm.shape[0]
    starts = np.repeat(warm[None, :, :], R, axis=0).reshape(-1, warm.shape[1])
    w = None if weights is None else np.repeat(weights, M, axis=0)
    targets = np.repeat(logL, M, axis=0) if logL.ndim == 2 else logL
    newton = newton_pays(warm[0], logX, _rows(logL)[0], spec, delta)
    theta, f, conv = parallel_minimise(starts, logX, targets, spec, delta, bounds, weights=w, n_jobs=n_jobs,
                                       newton=newton)
    slow = np.flatnonzero(~conv)
    if slow.size:   # refits in a flat valley (or where Newton stalled): continue them with the majoriser
        theta[slow], f[slow], conv[slow] = parallel_minimise(theta[slow], logX, _pick(targets, slow), spec, delta, bounds,
                                                             weights=_pick(w, slow), n_jobs=n_jobs, max_iter=2000)
    f = f.reshape(R, M)
    pick = np.argmin(np.where(np.isfinite(f), f, np.inf), axis=1)
    theta = theta.reshape(R, M, -1)[np.arange(R), pick]
    conv = conv.reshape(R, M)[np.arange(R), pick]
    return theta, conv


NEWTON_RUNS_PER_PARAM = 20


def newton_pays(theta: np.ndarray, logX: np.ndarray, logL: np.ndarray, spec: PowerSumSpec, delta: float) -> bool:
    """Whether warm-started refits near ``theta`` should take Newton steps on the Huber loss.

    Newton's matrix counts only runs whose residual lies within ``delta``; with at least
    ``NEWTON_RUNS_PER_PARAM`` such runs per parameter it is well determined and converges in a few
    steps where the IRLS majoriser crawls (the Huber delta sits well below the noise at scale: 24,000
    runs with 1% noise converge 3-4x faster to objectives lower by ~1e-10 relative). Small ladders keep
    the majoriser, whose every step descends.
    """
    logpred, _ = spec.log_prediction(theta[None, :], logX, jac=False)
    inside = int(np.count_nonzero(np.abs(logpred[0] - logL) <= delta))
    return inside >= NEWTON_RUNS_PER_PARAM * theta.size


def multinomial_weights(n: int, n_resamples: int, rng: np.random.Generator, groups: np.ndarray | None = None) -> np.ndarray:
    """Bootstrap multiplicities (R, n): how often each run appears in each resample."""
    if groups is None:
        return rng.multinomial(n, np.full(n, 1.0 / n), size=n_resamples).astype(float)
    weights = np.zeros((n_resamples, n))
    for g in np.unique(groups):
        members = np.flatnonzero(groups == g)
        weights[:, members] = rng.multinomial(members.size, np.full(members.size, 1.0 / members.size), size=n_resamples)
    return weights


def at_bounds(theta: np.ndarray, bounds: np.ndarray, rtol: float = 1e-6) -> np.ndarray:
    """Boolean mask of parameters sitting on a bound."""
    span = bounds[:, 1] - bounds[:, 0]
    return (np.abs(theta - bounds[:, 0]) <= rtol * span) | (np.abs(theta - bounds[:, 1]) <= rtol * span)
