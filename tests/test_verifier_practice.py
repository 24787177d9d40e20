"""Verifiers as used: per-problem false-positive rates, abstaining, the flat region, and majority vote vs
verifier vs best-of-n at equal samples, each checked against an independent Monte Carlo."""
import numpy as np
import pytest
from scipy.special import ndtri

from scalinglab.testtime.verifier import (best_of_n_accuracy, expected_reward, false_positive_rates, optimal_attempts,
                                          outcome_probabilities, strategies_at_equal_samples)

P_TRUE = np.array([0.02, 0.1, 0.3, 0.6, 0.9, 0.0])
KS = [1, 3, 10]
TPR = 0.9


def monte_carlo(p, ks, tpr, fpr, *, trials=40000, seed=0):
    """Draw samples, verdicts (Bernoulli tpr / fpr) and Gaussian scores directly; play each strategy."""
    rng = np.random.default_rng(seed)
    kmax = max(ks)
    fpr = np.broadcast_to(fpr, p.shape)
    correct = rng.random((trials, p.size, kmax)) < p[None, :, None]
    accept = np.where(correct, rng.random(correct.shape) < tpr, rng.random(correct.shape) < fpr[None, :, None])
    d = ndtri(tpr) - ndtri(np.clip(fpr, 1e-9, 1))
    score = rng.standard_normal(correct.shape) + correct * d[None, :, None]
    out = {"verifier_correct": [], "verifier_wrong": [], "best_of_n": []}
    for k in ks:
        acc = accept[:, :, :k]
        first = np.where(acc.any(axis=2), acc.argmax(axis=2), -1)
        got = np.take_along_axis(correct[:, :, :k], np.maximum(first, 0)[..., None], axis=2)[..., 0]
        out["verifier_correct"].append(((first >= 0) & got).mean(axis=0))
        out["verifier_wrong"].append(((first >= 0) & ~got).mean(axis=0))
        top = score[:, :, :k].argmax(axis=2)
        out["best_of_n"].append(np.take_along_axis(correct[:, :, :k], top[..., None], axis=2)[..., 0].mean(axis=0))
    return {key: np.array(v).T for key, v in out.items()}     # (P, K)


def test_per_problem_false_positive_rates_match_monte_carlo():
    fpr = false_positive_rates(P_TRUE, solved=0.02, unsolved=0.4)
    assert fpr[-1] == pytest.approx(0.4) and fpr[4] == pytest.approx(0.4 - 0.38 * 0.9)
    o = outcome_probabilities(P_TRUE, KS, TPR, fpr)
    mc = monte_carlo(P_TRUE, KS, TPR, fpr)
    se = np.sqrt(0.25 / 40000)
    assert np.abs(o["correct"] - mc["verifier_correct"]).max() < 5 * se
    assert np.abs(o["wrong"] - mc["verifier_wrong"]).max() < 5 * se


def test_best_of_n_by_score_matches_monte_carlo():
    for fpr in (0.05, false_positive_rates(P_TRUE, solved=0.01, unsolved=0.3)):
        want = monte_carlo(P_TRUE, KS, TPR, fpr, seed=1)["best_of_n"]
        got = best_of_n_accuracy(P_TRUE, KS, TPR, fpr)
        assert np.abs(got - want).max() < 5 * np.sqrt(0.25 / 40000)
    np.testing.assert_allclose(best_of_n_accuracy(P_TRUE, [1], TPR, 0.05)[:, 0], P_TRUE, atol=1e-6)   # one sample: p


def test_abstains_instead_of_a_losing_budget():
    p = np.full(20, 0.02)                 # hard task, false positives cost 5
    best = optimal_attempts(p, 0.9, 0.2, 5.0, k_max=100)
    assert best["abstain"] and best["k"] == 0 and best["reward"] == 0.0 and best["flat_region"] is None
    assert best["best_answering"]["reward"] < 0
    forced = optimal_attempts(p, 0.9, 0.2, 5.0, k_max=100, abstain=False)
    assert forced["k"] >= 1 and forced["reward"] < 0


def test_flat_region_is_the_contiguous_range_within_tolerance():
    p = np.random.default_rng(0).beta(0.5, 3.0, 300)
    best = optimal_attempts(p, 0.95, 0.0, 1.0, k_max=600)
    r = expected_reward(p, np.arange(1, 601), 0.95, 0.0, 1.0)
    lo, hi = best["flat_region"]
    assert lo < hi == 600
    assert (r[lo - 1:hi] >= best["reward"] * 0.99).all() and r[lo - 2] < best["reward"] * 0.99
    sharp = optimal_attempts(p, 0.95, 0.05, 1.0, k_max=600)
    assert sharp["flat_region"][0] <= sharp["k"] <= sharp["flat_region"][1]


def test_strategies_at_equal_samples():
    maj = np.tile(P_TRUE[:, None], (1, 3))      # a stand-in per-problem majority accuracy
    r = strategies_at_equal_samples(P_TRUE, KS, TPR, 0.05, 2.0, majority=maj)
    assert set(r) == {"k", "verifier", "best_of_n", "oracle", "majority"}
    for name in ("best_of_n", "oracle", "majority"):       # these always answer
        np.testing.assert_allclose(np.add(r[name]["accuracy"], r[name]["wrong"]), 1.0)
    # pass@k bounds every strategy; one sample is the same for all that always answer
    assert all((np.array(r[s]["accuracy"]) <= np.array(r["oracle"]["accuracy"]) + 1e-9).all() for s in ("verifier", "best_of_n"))
    assert r["best_of_n"]["accuracy"][0] == pytest.approx(P_TRUE.mean(), abs=1e-6)
    np.testing.assert_allclose(r["verifier"]["reward"], np.array(r["verifier"]["accuracy"]) - 2.0 * np.array(r["verifier"]["wrong"]))


def test_cli_verifier_abstains_reports_the_flat_region_and_compares(tmp_path):
    import json

    from typer.testing import CliRunner

    from scalinglab.cli import app
    rng = np.random.default_rng(5)
    lines = []
    for q, p in enumerate([0.05, 0.2, 0.5, 0.8]):
        for j in range(16):
            ok = rng.random() < p
            lines.append({"problem": f"q{q}", "sample_id": j, "answer": "42" if ok else str(rng.integers(0, 3)), "correct": int(ok)})
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    base = ["verifier", str(path), "--task", "t", "--model", "m", "--k-max", "16", "--no-figures"]
    res = CliRunner().invoke(app, base + ["--fpr", "0.01,0.3", "--fpr-unsolved", "0.5", "--cost", "4", "--compare", "--json"])
    assert res.exit_code == 0, res.output
    g = json.loads(res.stdout)["groups"]["t/m"]
    assert g["by_fpr"]["0.3"]["optimal"]["abstain"] and g["by_fpr"]["0.3"]["optimal"]["k"] == 0
    st = g["by_fpr"]["0.01"]["strategies"]
    assert st["k"] == [1, 2, 4, 8, 16] and set(st) >= {"verifier", "best_of_n", "majority", "oracle"}
    res = CliRunner().invoke(app, base + ["--fpr", "0,0.3", "--cost", "4"])
    assert res.exit_code == 0 and "do not answer" in res.output and "within 1% of the best" in res.output
    res = CliRunner().invoke(app, base + ["--fpr-unsolved", "1.5"])
    assert res.exit_code == 2 and "--fpr-unsolved" in res.output and "Traceback" not in res.output
