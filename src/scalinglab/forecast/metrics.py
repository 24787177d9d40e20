"""Per-problem metrics of a model's answer, discontinuous and continuous (Schaeffer, Miranda &
Koyejo 2023, "Are Emergent Abilities of Large Language Models a Mirage?",
https://arxiv.org/abs/2304.15004).

* ``exact_match``: 1 if the greedy answer equals the reference, else 0 (discontinuous);
* ``log_likelihood``: mean per-token log-probability of the reference answer under teacher forcing;
* ``token_edit_distance``: Levenshtein distance between greedy and reference answer tokens;
* ``brier``: mean over answer tokens of sum_v (p_v - 1[v = y])^2 under teacher forcing.
"""
from __future__ import annotations

import numpy as np

METRICS = {"exact_match": "higher", "log_likelihood": "higher", "token_edit_distance": "lower", "brier": "lower",
           "task_loss": "lower", "acc": "higher", "acc_norm": "higher"}   # acc, acc_norm: multiple-choice accuracy
BOUNDED = {"exact_match": (0.0, 1.0), "brier": (0.0, 2.0), "acc": (0.0, 1.0), "acc_norm": (0.0, 1.0)}


def edit_distance(a, b) -> int:
    """Levenshtein distance between two token sequences."""
    a, b = list(a), list(b)
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def brier_score(probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean multiclass Brier score of next-token distributions (T, V) against targets (T,)."""
    probs = np.asarray(probs, float)
    onehot = np.zeros_like(probs)
    onehot[np.arange(len(targets)), targets] = 1.0
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


def mean_log_likelihood(log_probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean log-probability of the target tokens: log_probs (T, V), targets (T,)."""
    return float(np.asarray(log_probs)[np.arange(len(targets)), targets].mean())
