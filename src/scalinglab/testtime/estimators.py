"""Estimators for repeated sampling: pass@k, maj@k, weighted majority, best-of-n, coverage curves.

* pass@k: Chen et al. 2021, "Evaluating Large Language Models Trained on Code",
  https://arxiv.org/abs/2107.03374 -- unbiased ``1 - C(n-c, k) / C(n, k)`` by log-gamma, one
  vectorised expression for any mix of per-problem n; entries where log-gamma's cancellation would
  cost digits (large n) are redone as the product of their ``min(c, k)`` factors ``(1 - k/i)``.
* maj@k / best-of-n: resampling k of the n samples without replacement; ties are counted fairly
  (a tie among m answers that includes the correct one counts 1/m).
"""
from __future__ import annotations

import numpy as np


def pass_at_k(n, c, k, *, clamp: bool = False) -> np.ndarray:
    """Unbiased pass@k for problems with ``n`` samples of which ``c`` are correct (any mix of n).

    Args:
        n, c: arrays (P,) of samples and correct samples per problem.
        k: int or array (K,) of k values.
        clamp: treat k > n as k = n instead of raising.
    Returns:
        (P, K) array (or (P,) when k is a scalar), within 1e-10 of exact rational arithmetic.

    Raises:
        ValueError: c > n, negative counts, k < 1, or k > n for a problem with c > 0 (unless clamp).
    """
    from scipy.special import gammaln   # not at import time: the light commands never pay for scipy

    n = np.atleast_1d(np.asarray(n, dtype=np.int64))
    c = np.atleast_1d(np.asarray(c, dtype=np.int64))
    scalar_k = np.ndim(k) == 0
    ks = np.atleast_1d(np.asarray(k, dtype=np.int64))
    if n.shape != c.shape:
        raise ValueError(f"n and c must have the same shape, got {n.shape} and {c.shape}")
    if (c < 0).any() or (n < 1).any():
        raise ValueError("counts must satisfy n >= 1 and c >= 0")
    bad = np.flatnonzero(c > n)
    if bad.size:
        raise ValueError(f"c > n for problem(s) at index {bad[:10].tolist()}")
    if (ks < 1).any():
        raise ValueError(f"k must be >= 1, got {ks.tolist()}")
    over = (ks[None, :] > n[:, None]) & (c[:, None] > 0)
    if over.any() and not clamp:
        i = np.argwhere(over)[0]
        raise ValueError(f"k={ks[i[1]]} > n={n[i[0]]} samples for problem {i[0]} (pass clamp=True to use k=n)")
    kk = np.minimum(ks[None, :], n[:, None])                                # (P, K)
    fail = (n - c)[:, None]
    open_ = (fail >= kk) & (c[:, None] > 0)          # elsewhere pass@k is exactly 0 (c = 0) or 1 (n - c < k)
    nf, ff, kf = n.astype(float), (n - c).astype(float), kk.astype(float)
    g_n = gammaln(nf + 1)
    logfail = ((gammaln(ff + 1) - g_n)[:, None] - gammaln(np.maximum(ff[:, None] - kf, 0.0) + 1)
               + gammaln(nf[:, None] - kf + 1))
    out = np.where(open_, -np.expm1(logfail), (c > 0)[:, None].astype(float))
    # log-gamma loses digits to cancellation at large n (rounding ~ eps * lgamma(n + 1)); those entries
    # are redone as the product of their min(c, k) factors
    redo = open_ & (_LGAMMA_ULPS * np.finfo(float).eps * g_n[:, None] * np.exp(logfail) > _ATOL)
    if redo.any():
        p, j = np.nonzero(redo)
        out[p, j] = -np.expm1(_log_fail_by_product(n[p], c[p], kk[p, j]))
    return out[:, 0] if scalar_k else out


_ATOL = 1e-10
_LGAMMA_ULPS = 4.0            # rounding of the four log-gamma terms (about 2 ulps measured), with a margin
_PRODUCT_CHUNK = 1 << 22      # factors per chunk in the exact product


def _log_fail_by_product(n, c, k) -> np.ndarray:
    """log C(n-c, k) / C(n, k) as a sum of min(c, k) log1p terms: ``sum_{j<c} log(1 - k/(n-j))`` when
    c <= k, else ``sum_{j<k} log(1 - c/(n-j))``."""
    m = np.minimum(c, k).astype(np.int64)
    num = np.maximum(c, k)
    ends = np.cumsum(m)
    out = np.empty(m.size)
    start = 0
    while start < m.size:   # chunks of about _PRODUCT_CHUNK factors bound the memory
        done = ends[start - 1] if start else 0
        stop = max(int(np.searchsorted(ends, done + _PRODUCT_CHUNK, side="right")), start + 1)
        mm = m[start:stop]
        seg = np.repeat(np.arange(mm.size), mm)
        j = np.arange(seg.size) - np.repeat(np.cumsum(mm) - mm, mm)
        out[start:stop] = np.bincount(seg, weights=np.log1p(-num[start:stop][seg] / (n[start:stop][seg] - j)),
                                      minlength=mm.size)
        start = stop
    return out


def _fair_vote_credit(answers_RK: np.ndarray, weights_RK: np.ndarray, correct_code: int, n_codes: int) -> np.ndarray:
    """Credit per resample: 1/m if the correct answer is among the m answers with the top (weighted) vote."""
    R, K = answers_RK.shape
    tally = np.zeros((R, n_codes))
    np.add.at(tally, (np.repeat(np.arange(R), K), answers_RK.ravel()), weights_RK.ravel())
    top = tally.max(axis=1, keepdims=True)
    winners = np.isclose(tally, top, rtol=1e-12, atol=1e-12) & (tally > 0)
    return np.where(winners[:, correct_code], 1.0 / winners.sum(axis=1), 0.0)


def _encode(answers, correct):
    """Integer codes for the answers; the correct answer's code (or -1 if no sample gave it)."""
    uniq, codes = np.unique(np.asarray(answers, dtype=object).astype(str), return_inverse=True)
    corr = np.asarray(correct, dtype=bool)
    correct_codes = np.unique(codes[corr])
    return codes, (int(correct_codes[0]) if correct_codes.size else -1), uniq.size


def majority_at_k(answers, correct, k: int, *, scores=None, n_resamples: int = 2000, rng=None) -> float:
    """maj@k (or score-weighted majority when ``scores`` is given) for one problem.

    Args:
        answers: final answers of the n samples (any hashable, compared as strings).
        correct: whether each sample is correct (all correct samples share one answer).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    codes, correct_code, n_codes = _encode(answers, correct)
    n = codes.size
    if k > n:
        raise ValueError(f"k={k} > n={n} samples")
    if correct_code < 0:
        return 0.0
    w = np.ones(n) if scores is None else np.asarray(scores, float)
    pick = np.argsort(rng.random((n_resamples, n)), axis=1)[:, :k]
    return float(_fair_vote_credit(codes[pick], w[pick], correct_code, n_codes).mean())


def best_of_n(correct, scores, k: int, *, n_resamples: int = 2000, rng=None) -> float:
    """best-of-k by verifier score for one problem: the top-scored of k samples (ties shared fairly)."""
    rng = np.random.default_rng(0) if rng is None else rng
    corr = np.asarray(correct, bool)
    s = np.asarray(scores, float)
    n = s.size
    if k > n:
        raise ValueError(f"k={k} > n={n} samples")
    pick = np.argsort(rng.random((n_resamples, n)), axis=1)[:, :k]
    sp, cp = s[pick], corr[pick]
    top = sp == sp.max(axis=1, keepdims=True)
    return float(((top & cp).sum(axis=1) / top.sum(axis=1)).mean())


def coverage_curve(n, c, ks, *, n_bootstrap: int = 1000, level: float = 0.95, seed: int = 0, clamp: bool = False) -> dict:
    """Mean pass@k over problems for each k, with a bootstrap interval over problems."""
    per = pass_at_k(n, c, np.asarray(ks), clamp=clamp)            # (P, K)
    mean = per.mean(axis=0)
    out = {"k": [int(k) for k in ks], "coverage": mean.tolist(), "n_problems": int(per.shape[0])}
    if n_bootstrap:
        rng = np.random.default_rng(seed)
        P = per.shape[0]
        w = rng.multinomial(P, np.full(P, 1.0 / P), size=n_bootstrap) / P   # (R, P)
        boot = w @ per                                                       # (R, K)
        tail = 50 * (1 - level)
        lo, hi = np.percentile(boot, [tail, 100 - tail], axis=0)
        out.update({"lower": lo.tolist(), "upper": hi.tolist(), "bootstrap": boot})
    return out
