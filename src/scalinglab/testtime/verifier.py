"""Resampling against an imperfect verifier (Stroebl, Kapoor & Narayanan 2024, "Inference Scaling
fLaws", https://arxiv.org/abs/2411.17501).

A verifier with completeness ``tpr`` (accepts a correct answer) and soundness ``1 - fpr`` (rejects a
wrong one). Each attempt on a problem with per-sample success probability p: accept-correct with
``p tpr``, accept-wrong with ``(1-p) fpr``, reject with ``r = 1 - p tpr - (1-p) fpr``. Resampling
until the verifier accepts or ``k`` attempts are spent returns a correct answer with probability
``p tpr (1 - r^k) / (1 - r)``; the ceiling as ``k -> inf`` is ``p tpr / (p tpr + (1-p) fpr)``.
"""
from __future__ import annotations

import numpy as np


def _rates(p, tpr, fpr):
    """Per-problem acceptance rates; ``tpr`` and ``fpr`` are scalars or per-problem arrays (P,)."""
    p = np.asarray(p, float)
    tpr, fpr = np.asarray(tpr, float), np.asarray(fpr, float)
    if not (np.all((0 <= tpr) & (tpr <= 1)) and np.all((0 <= fpr) & (fpr <= 1))):
        raise ValueError("tpr and fpr must be in [0, 1]")
    acc_c, acc_w = p * tpr, (1 - p) * fpr
    return acc_c, acc_w, 1.0 - acc_c - acc_w


def outcome_probabilities(p, k, tpr: float, fpr: float) -> dict:
    """Per-problem probabilities (P, K) of returning a correct answer, a wrong one, or none."""
    acc_c, acc_w, r = _rates(p, tpr, fpr)
    ks = np.atleast_1d(np.asarray(k, float))
    rk = np.power(r[:, None], ks[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        geom = np.where(r[:, None] < 1, (1 - rk) / (1 - r[:, None]), ks[None, :])
    return {"correct": acc_c[:, None] * geom, "wrong": acc_w[:, None] * geom, "none": rk}


def accuracy_vs_attempts(p, ks, tpr: float, fpr: float) -> np.ndarray:
    """Mean probability of returning a correct answer within k attempts (K,)."""
    return outcome_probabilities(p, ks, tpr, fpr)["correct"].mean(axis=0)


def accuracy_ceiling(p, tpr: float, fpr: float) -> float:
    """Accuracy as attempts grow without bound (problems the verifier never accepts count 0)."""
    acc_c, acc_w, _ = _rates(p, tpr, fpr)
    tot = acc_c + acc_w
    return float(np.where(tot > 0, acc_c / np.where(tot > 0, tot, 1), 0.0).mean())


def expected_reward(p, ks, tpr: float, fpr: float, false_positive_cost: float) -> np.ndarray:
    """Mean reward per problem: +1 for a correct answer, ``-cost`` for a wrong accepted one, 0 for none."""
    o = outcome_probabilities(p, ks, tpr, fpr)
    return (o["correct"] - false_positive_cost * o["wrong"]).mean(axis=0)


def optimal_attempts(p, tpr, fpr, false_positive_cost: float, k_max: int = 1000, *, abstain: bool = True,
                     flat_tolerance: float = 0.01) -> dict:
    """The attempt budget k in 1..k_max maximising expected reward, or k = 0 (do not answer, reward 0)
    when ``abstain`` and every budget loses in expectation; with the flat region around the best: the
    contiguous range of k whose reward is within ``flat_tolerance`` (relative) of the best.

    Returns:
        ``k``, ``reward``, ``abstain`` (True when not answering is best), ``reward_at_1``,
        ``reward_at_k_max``, ``best_answering`` (k, reward of the best k >= 1), ``flat_region``
        ([k_lo, k_hi] or None when abstaining), ``flat_tolerance``.
    """
    ks = np.arange(1, k_max + 1)
    r = expected_reward(p, ks, tpr, fpr, false_positive_cost)
    i = int(np.argmax(r))
    best = float(r[i])
    out = {"k": int(ks[i]), "reward": best, "abstain": False, "reward_at_1": float(r[0]), "reward_at_k_max": float(r[-1]),
           "best_answering": {"k": int(ks[i]), "reward": best}, "flat_tolerance": flat_tolerance}
    if abstain and best <= 0:
        return out | {"k": 0, "reward": 0.0, "abstain": True, "flat_region": None}
    near = r >= best - flat_tolerance * abs(best)
    lo = i - int(np.argmin(near[i::-1])) + 1 if not near[:i + 1].all() else 0
    hi = i + int(np.argmin(near[i:])) - 1 if not near[i:].all() else ks.size - 1
    return out | {"flat_region": [int(ks[lo]), int(ks[hi])]}


def simulate(p, ks, tpr, fpr, *, n_trials: int = 2000, seed: int = 0) -> dict:
    """Monte Carlo of the resampling loop; agrees with :func:`outcome_probabilities` in expectation."""
    rng = np.random.default_rng(seed)
    p = np.asarray(p, float)
    ks = np.atleast_1d(np.asarray(ks, int))
    kmax = int(ks.max())
    P = p.size
    correct = rng.random((n_trials, P, kmax)) < p[None, :, None]
    tpr, fpr = (np.asarray(x, float)[:, None] if np.ndim(x) else x for x in (tpr, fpr))   # per problem: (P, 1)
    accept = np.where(correct, rng.random(correct.shape) < tpr, rng.random(correct.shape) < fpr)
    first = np.where(accept.any(axis=2), accept.argmax(axis=2), kmax)          # index of first acceptance
    got = np.take_along_axis(correct, np.minimum(first, kmax - 1)[..., None], axis=2)[..., 0]
    out = {"correct": [], "wrong": [], "none": []}
    for k in ks:
        within = first < k
        out["correct"].append(float((within & got).mean()))
        out["wrong"].append(float((within & ~got).mean()))
        out["none"].append(float((~within).mean()))
    return {key: np.array(v) for key, v in out.items()}


def false_positive_rates(p, *, solved: float, unsolved: float) -> np.ndarray:
    """Per-problem false-positive rates modelled on the model's per-problem success p: ``unsolved`` where
    the model never succeeds (p = 0), ``solved`` where it always does, linear in between -- the
    pattern of the "Inference Scaling fLaws" analysis, where verifiers pass more wrong answers on the
    problems a model finds hard."""
    p = np.asarray(p, float)
    if not (0 <= solved <= 1 and 0 <= unsolved <= 1):
        raise ValueError("false-positive rates must be in [0, 1]")
    return unsolved + (solved - unsolved) * np.clip(p, 0.0, 1.0)


def score_separation(tpr, fpr) -> np.ndarray:
    """d' of the equal-variance Gaussian scorer behind a verifier with (tpr, fpr) at its threshold:
    scores ~ N(d', 1) for correct samples and N(0, 1) for wrong ones, ``d' = z(tpr) - z(fpr)``
    (rates clipped to [1e-9, 1 - 1e-9] so a perfect verifier stays finite)."""
    from scipy.special import ndtri
    tpr, fpr = np.clip(np.asarray(tpr, float), 1e-9, 1 - 1e-9), np.clip(np.asarray(fpr, float), 1e-9, 1 - 1e-9)
    return ndtri(tpr) - ndtri(fpr)


def best_of_n_accuracy(p, ks, tpr, fpr) -> np.ndarray:
    """Per-problem probability (P, K) that the highest-scored of k samples is correct, when the
    verifier's score (not its verdict) ranks them: ``int k p phi(s - d) [p Phi(s - d) + (1 - p) Phi(s)]^(k-1) ds``
    by quadrature, with d from :func:`score_separation`."""
    from scipy.special import log_ndtr
    p = np.atleast_1d(np.asarray(p, float))
    d = np.broadcast_to(score_separation(tpr, fpr), p.shape)
    s = np.linspace(-12.0, float(d.max()) + 12.0, 4001)
    ds = s[1] - s[0]
    with np.errstate(divide="ignore"):
        log_top_c = np.log(p)[:, None] - 0.5 * (s[None, :] - d[:, None]) ** 2 - 0.5 * np.log(2 * np.pi)
        log_below = np.logaddexp(np.log(p)[:, None] + log_ndtr(s[None, :] - d[:, None]),
                                 np.log1p(-p)[:, None] + log_ndtr(s)[None, :])
    out = []
    for k in np.atleast_1d(ks):
        out.append(np.exp(np.log(k) + log_top_c + (k - 1) * log_below).sum(axis=1) * ds)
    return np.clip(np.stack(out, axis=1), 0.0, 1.0)


def strategies_at_equal_samples(p, ks, tpr, fpr, false_positive_cost: float, majority=None) -> dict:
    """Accuracy and expected reward (+1 correct, ``-cost`` wrong, 0 no answer) of the ways to spend k
    samples per problem: ``verifier`` (resample until the verifier accepts, at most k; no answer if it
    never does), ``best_of_n`` (answer with the top-scored of k), ``majority`` (plurality answer of k,
    given as per-problem accuracies (P, K) from the sampled answers) and ``oracle`` (pass@k: any correct
    sample is found). Every strategy but ``verifier`` always answers."""
    p = np.asarray(p, float)
    ks = np.atleast_1d(np.asarray(ks, int))
    o = outcome_probabilities(p, ks, tpr, fpr)
    out = {"k": ks.tolist(), "verifier": {"accuracy": o["correct"].mean(axis=0), "wrong": o["wrong"].mean(axis=0)}}
    bon = best_of_n_accuracy(p, ks, tpr, fpr)
    out["best_of_n"] = {"accuracy": bon.mean(axis=0), "wrong": 1 - bon.mean(axis=0)}
    oracle = 1 - np.power(1 - p[:, None], ks[None, :])
    out["oracle"] = {"accuracy": oracle.mean(axis=0), "wrong": 1 - oracle.mean(axis=0)}
    if majority is not None:
        m = np.asarray(majority, float).mean(axis=0)
        out["majority"] = {"accuracy": m, "wrong": 1 - m}
    for name in ("verifier", "best_of_n", "oracle", "majority"):
        if name in out:
            v = out[name]
            v["reward"] = v["accuracy"] - false_positive_cost * v["wrong"]
            out[name] = {key: val.tolist() for key, val in v.items()}
    return out
