import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from scalinglab.cli import app
from scalinglab.forecast import (PolicyError, SigmoidFit, TwoStepForecast, backtest, brier_score, decide, edit_distance,
                                 load_policy, mean_log_likelihood, sigmoid)
from scalinglab.forecast.evaluate import evaluate_task
from scalinglab.store import RunStore
from scalinglab.testtime.tasks import Task
from scalinglab.train.config import ModelConfig
from scalinglab.train.model import GPT

TRUE = dict(a=0.95, k=6.0, L0=1.9, b=0.02)


def task_loss_of(C):
    return 0.8 + (1e21 / C) ** 0.12


def test_continuous_metrics_by_hand():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([1, 2, 3], [1, 2, 3]) == 0 and edit_distance([], [5, 6]) == 2
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assert brier_score(probs, np.array([0, 2])) == pytest.approx(((0.09 + 0.04 + 0.01) + (0.01 + 0.01 + 0.04)) / 2)
    assert mean_log_likelihood(np.log(probs), np.array([1, 2])) == pytest.approx((np.log(0.2) + np.log(0.8)) / 2)


def test_sigmoid_fit_recovers_parameters():
    L = np.linspace(1.2, 3.0, 25)
    y = sigmoid(L, **TRUE) + np.random.default_rng(0).normal(0, 0.005, L.size)
    fit = SigmoidFit().fit(L, y)
    for k, v in TRUE.items():
        assert fit.params_[k] == pytest.approx(v, rel=0.08, abs=0.02), k
    assert fit.loss_for_score(0.5) == pytest.approx(TRUE["L0"] + np.log(0.95 / 0.48 - 1) / 6.0, abs=0.03)


def test_two_step_interval_covers_the_truth_in_repeated_trials():
    C = np.logspace(17.5, 21, 10)
    target = 3e21
    truth = sigmoid(task_loss_of(target), **TRUE)
    inside = 0
    trials = 10
    for seed in range(trials):
        rng = np.random.default_rng(seed)
        TL = task_loss_of(C) * np.exp(rng.normal(0, 0.01, C.size))
        S = np.clip(sigmoid(task_loss_of(C), **TRUE) + rng.normal(0, 0.02, C.size), 0, 1)
        fc = TwoStepForecast(n_bootstrap=200, seed=seed, score_bounds=(0, 1)).fit(C, TL, S)
        lo, hi = fc.predict(target)["intervals"]["score_prediction"]
        inside += lo <= truth <= hi
    assert inside / trials >= 0.7


def test_backtest_reports_errors_on_held_out_models():
    C = np.logspace(17.5, 21, 10)
    rng = np.random.default_rng(3)
    S = sigmoid(task_loss_of(C), **TRUE) + rng.normal(0, 0.01, C.size)
    bt = backtest(C, task_loss_of(C), S, n_holdout=2, n_bootstrap=100)
    assert bt["n_fitted"] == 8 and len(bt["held_out"]) == 2
    assert bt["mean_abs_score_error"] < 0.15


def test_evaluate_task_metrics_are_consistent():
    torch.manual_seed(0)
    m = GPT(ModelConfig(d_model=32, n_heads=2, seq_len=32)).eval()
    res = evaluate_task(m, Task.parse("addition:2"), n_problems=5)
    assert res["exact_match"] == 0.0 and res["token_edit_distance"] > 0       # an untrained model
    assert res["log_likelihood"] == pytest.approx(-res["task_loss"]) and res["log_likelihood"] < -4.0   # ~ -ln 256
    assert 0 < res["brier"] <= 2


POLICY = """
[[rule]]
name = "addition-review"
task = "addition:2"
metric = "exact_match"
op = ">="
threshold = 0.5
action = "review"
on_uncertain = "hold"
rationale = "adds two-digit numbers reliably"
"""


@pytest.fixture
def synthetic_ladder(tmp_path):
    """Scores of a synthetic ladder whose exact match crosses 0.5 at a known compute."""
    C = np.logspace(17.5, 21, 10)
    rng = np.random.default_rng(0)
    rows = []
    for i, c in enumerate(C):
        tl = task_loss_of(c)
        for metric, value in (("task_loss", tl), ("exact_match", float(np.clip(sigmoid(tl, **TRUE) + rng.normal(0, 0.01), 0, 1)))):
            rows.append({"source": "synthetic", "model": f"m{i}", "run_id": f"id{i}", "n": None, "d": None, "c": float(c),
                         "loss": None, "task": "addition:2", "metric": metric, "value": value})
    db = tmp_path / "s.db"
    with RunStore(db) as st:
        st.add_scores(rows)
    pol = tmp_path / "policy.toml"
    pol.write_text(POLICY)
    # crossing: sigmoid = 0.5 at task loss L*, then C* from the task-loss law
    Ls = TRUE["L0"] + np.log(TRUE["a"] / (0.5 - TRUE["b"]) - 1) / TRUE["k"]
    C_star = 1e21 * (Ls - 0.8) ** (-1 / 0.12)
    return db, pol, C_star


def test_gate_decisions_around_a_known_crossing(synthetic_ladder):
    db, pol, C_star = synthetic_ladder
    runner = CliRunner()
    far_below = runner.invoke(app, ["gate", "--policy", str(pol), "--plan-compute", f"{C_star / 300:.4g}", "--store",
                                    str(db), "--bootstrap", "200", "--json"])
    assert far_below.exit_code == 0, far_below.output
    assert json.loads(far_below.stdout)["decision"] == "pass"
    far_above = runner.invoke(app, ["gate", "--policy", str(pol), "--plan-compute", f"{C_star * 100:.4g}", "--store",
                                    str(db), "--bootstrap", "200", "--json"])
    assert far_above.exit_code == 10 and json.loads(far_above.stdout)["decision"] == "review"
    near = runner.invoke(app, ["gate", "--policy", str(pol), "--plan-compute", f"{C_star:.4g}", "--store", str(db),
                               "--bootstrap", "200", "--json"])
    assert near.exit_code == 20 and "straddles" in json.loads(near.stdout)["reasons"][0]
    measured = runner.invoke(app, ["gate", "--policy", str(pol), "--run", "m9", "--store", str(db), "--json"])
    assert json.loads(measured.stdout)["decision"] == "review"          # the largest model is past the crossing
    with RunStore(db) as st:
        decisions = st.decisions()
    assert len(decisions) == 4 and all(d["policy_hash"] and d["created_at"] > 0 for d in decisions)


@pytest.mark.parametrize("edit,message", [
    (('task = "addition:2"', 'task = "chess:9"'), "unknown task"),
    (('metric = "exact_match"', 'metric = "accuracy_ish"'), "unknown metric"),
    (('op = ">="', 'op = "=>"'), "unknown operator"),
    (("threshold = 0.5", "threshold = 1.5"), "out of range"),
])
def test_malformed_policy_rejected_with_line_and_nothing_recorded(synthetic_ladder, edit, message):
    db, pol, _ = synthetic_ladder
    pol.write_text(POLICY.replace(*edit))
    r = CliRunner().invoke(app, ["gate", "--policy", str(pol), "--run", "m9", "--store", str(db)])
    assert r.exit_code == 2 and message in r.output and "line 2" in r.output
    with RunStore(db) as st:
        assert st.decisions() == []


def test_duplicate_rule_names(tmp_path):
    pol = tmp_path / "p.toml"
    pol.write_text(POLICY + POLICY)
    with pytest.raises(PolicyError, match="duplicate rule name 'addition-review' \\(first at line 2\\)"):
        load_policy(pol)


def test_decide_without_evidence_holds():
    rules, _ = load_policy_from_text(POLICY)
    assert decide(rules, {})["decision"] == "hold"


def load_policy_from_text(text, tmp=None):
    import pathlib
    import tempfile
    d = pathlib.Path(tempfile.mkdtemp())
    (d / "p.toml").write_text(text)
    return load_policy(d / "p.toml")
