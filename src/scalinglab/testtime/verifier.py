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
    p = np.asarray(p, float)
    if not (0 <= tpr <= 1 and 0 <= fpr <= 1):
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


def optimal_attempts(p, tpr: float, fpr: float, false_positive_cost: float, k_max: int = 1000) -> dict:
    """The attempt budget k in 1..k_max maximising expected reward."""
    ks = np.arange(1, k_max + 1)
    r = expected_reward(p, ks, tpr, fpr, false_positive_cost)
    i = int(np.argmax(r))
    return {"k": int(ks[i]), "reward": float(r[i]), "reward_at_1": float(r[0]), "reward_at_k_max": float(r[-1])}


def simulate(p, ks, tpr: float, fpr: float, *, n_trials: int = 2000, seed: int = 0) -> dict:
    """Monte Carlo of the resampling loop; agrees with :func:`outcome_probabilities` in expectation."""
    rng = np.random.default_rng(seed)
    p = np.asarray(p, float)
    ks = np.atleast_1d(np.asarray(ks, int))
    kmax = int(ks.max())
    P = p.size
    correct = rng.random((n_trials, P, kmax)) < p[None, :, None]
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
