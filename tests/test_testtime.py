import itertools
import json
from fractions import Fraction
from math import comb

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from scalinglab.cli import app
from scalinglab.importers import ImportFormatError
from scalinglab.store import RunStore
from scalinglab.testtime import (CoverageLaw, Task, accuracy_ceiling, accuracy_vs_attempts, best_of_n, majority_at_k,
                                 optimal_attempts, pass_at_k, simulate)
from scalinglab.testtime.samples import import_samples, parse_samples
from scalinglab.testtime.sampling import generate
from scalinglab.train.config import ModelConfig
from scalinglab.train.model import GPT


def exact_pass_at_k(n, c, k):
    return 1 - Fraction(comb(n - c, k), comb(n, k))


def test_pass_at_k_matches_exact_combinatorics():
    for n in range(1, 13):
        for c in range(0, n + 1):
            ks = list(range(1, n + 1))
            got = pass_at_k([n], [c], ks)[0]
            want = [float(exact_pass_at_k(n, c, k)) for k in ks]
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_pass_at_k_vectorised_over_mixed_n_and_edge_cases():
    n, c = np.array([10, 20, 5, 7]), np.array([3, 0, 5, 1])
    got = pass_at_k(n, c, [1, 5])
    for i in range(4):
        for j, k in enumerate([1, 5]):
            assert got[i, j] == pytest.approx(float(exact_pass_at_k(n[i], c[i], k)))
    assert pass_at_k([5], [0], 50)[0] == 0.0                          # c = 0: zero even for k > n
    with pytest.raises(ValueError, match="k=50 > n=5"):
        pass_at_k([5], [2], 50)
    assert pass_at_k([5], [2], 50, clamp=True)[0] == 1.0
    with pytest.raises(ValueError, match="c > n"):
        pass_at_k([5], [6], 1)


@pytest.mark.parametrize("n_max", [300, 20_000, 3_000_000])
def test_pass_at_k_any_mix_of_n_exact_to_1e10(n_max):
    """Unequal n from tiny to millions (where plain log-gamma loses digits) against big-integer arithmetic."""
    rng = np.random.default_rng(n_max)
    n = rng.integers(1, n_max, 40)
    c = rng.binomial(n, rng.beta(0.3, 2.0, n.size))
    c[:3] = [1, 0, n[2]]                                   # one correct, none, all
    ks = np.array([1, 2, 7, 50, 300])
    got = pass_at_k(n, c, ks, clamp=True)
    for i in range(n.size):
        for j, k in enumerate(ks):
            kk = min(int(k), int(n[i]))
            assert abs(got[i, j] - float(exact_pass_at_k(int(n[i]), int(c[i]), kk))) <= 1e-10, (n[i], c[i], kk)


def brute_majority(answers, correct, k, scores=None):
    """Exact maj@k: average over all k-subsets, fair ties."""
    truth = {a for a, c in zip(answers, correct) if c}
    total = Fraction(0)
    subsets = list(itertools.combinations(range(len(answers)), k))
    for sub in subsets:
        tally = {}
        for i in sub:
            tally[answers[i]] = tally.get(answers[i], 0) + (1 if scores is None else scores[i])
        top = max(tally.values())
        winners = [a for a, v in tally.items() if v == top]
        if truth & set(winners):
            total += Fraction(1, len(winners))
    return float(total / len(subsets))


def brute_best_of(correct, scores, k):
    subsets = list(itertools.combinations(range(len(scores)), k))
    total = 0.0
    for sub in subsets:
        top = max(scores[i] for i in sub)
        best = [i for i in sub if scores[i] == top]
        total += sum(correct[i] for i in best) / len(best)
    return total / len(subsets)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_majority_and_best_of_n_against_enumeration(k):
    answers = ["7", "7", "3", "3", "3", "9", "7"]
    correct = [a == "7" for a in answers]
    scores = [0.9, 0.2, 0.5, 0.4, 0.3, 0.95, 0.6]
    rng = np.random.default_rng(1)
    assert majority_at_k(answers, correct, k, n_resamples=40000, rng=rng) == pytest.approx(brute_majority(answers, correct, k), abs=0.01)
    assert majority_at_k(answers, correct, k, scores=scores, n_resamples=40000, rng=rng) == pytest.approx(
        brute_majority(answers, correct, k, scores), abs=0.01)
    assert best_of_n(correct, scores, k, n_resamples=40000, rng=rng) == pytest.approx(brute_best_of(correct, scores, k), abs=0.01)


def test_coverage_law_recovers_parameters_and_extrapolates():
    k = np.array([1, 2, 4, 8, 16, 32, 64])
    cov = np.exp(-1.3 * k ** -0.4)
    law = CoverageLaw().fit(k, cov)
    assert law.params_["a"] == pytest.approx(-1.3) and law.params_["b"] == pytest.approx(-0.4)
    need = law.samples_for(0.9)["k"]
    assert np.exp(-1.3 * need ** -0.4) == pytest.approx(0.9)


def test_imperfect_verifier_closed_form_agrees_with_simulation():
    p = np.array([0.05, 0.2, 0.5, 0.0, 0.9])
    ks = [1, 2, 5, 20]
    for tpr, fpr in ((1.0, 0.0), (0.9, 0.1), (0.7, 0.3)):
        closed = accuracy_vs_attempts(p, ks, tpr, fpr)
        sim = simulate(p, ks, tpr, fpr, n_trials=20000, seed=2)
        np.testing.assert_allclose(sim["correct"], closed, atol=0.01)
    assert accuracy_vs_attempts(p, [10_000], 0.9, 0.1)[0] == pytest.approx(accuracy_ceiling(p, 0.9, 0.1), abs=1e-6)
    # a perfect verifier converges to coverage; an unsound one is capped below it
    assert accuracy_ceiling(p, 1.0, 0.0) == pytest.approx(np.mean(p > 0))
    assert accuracy_ceiling(p, 1.0, 0.2) < accuracy_ceiling(p, 1.0, 0.0)


def test_optimal_attempts_shrink_when_false_positives_are_costly():
    p = np.full(50, 0.1)
    assert optimal_attempts(p, 0.95, 0.0, 1.0, k_max=200)["k"] == 200
    assert optimal_attempts(p, 0.95, 0.2, 5.0, k_max=200)["k"] < 5


def test_sampling_with_kv_cache_equals_without():
    torch.manual_seed(0)
    m = GPT(ModelConfig(d_model=32, n_heads=2, n_layers=2, seq_len=32)).eval()
    prompt = list(b"123+045=")
    a = generate(m, prompt, 6, 12, temperature=1.0, generator=torch.Generator().manual_seed(5))
    b = generate(m, prompt, 6, 12, temperature=1.0, use_cache=False, generator=torch.Generator().manual_seed(5))
    assert a == b


def test_tasks_verify_and_split():
    t = Task.parse("multiplication:2")
    for fmt in ("direct", "scratchpad"):
        assert t.verify(12, 34, t.completion(12, 34, fmt)) == (True, "0408")
    assert t.verify(12, 34, "0407\n")[0] is False and t.verify(12, 34, "garbage")[0] is False
    test = set(t.problems(50))
    assert all(t.is_test(a, b) for a, b in test)
    assert not test & set(t.problems(50, split="train"))
    with pytest.raises(ValueError, match="KIND:DIGITS"):
        Task.parse("addition")


def test_samples_import_validates_and_writes_nothing_on_error(tmp_path):
    bad = tmp_path / "s.jsonl"
    bad.write_text("\n".join(json.dumps(r) for r in [
        {"problem": "p1", "sample_id": 0, "correct": "yes"}, {"problem": "p1", "sample_id": 0, "correct": True},
        {"problem": "p2", "sample_id": 1, "correct": "maybe"}, {"problem": "", "sample_id": 2, "correct": 1}]))
    with RunStore(tmp_path / "db") as st:
        with pytest.raises(ImportFormatError) as e:
            import_samples(bad, st)
        assert st.samples() == []
    msg = str(e.value)
    assert "duplicate sample" in msg and "'maybe' is not a boolean" in msg and "missing problem id" in msg
    counts = tmp_path / "c.csv"
    counts.write_text("problem,n,c\na,10,3\nb,5,7\n")
    with pytest.raises(ImportFormatError, match="row 3: c=7 > n=5"):
        parse_samples(counts)


def test_cli_passk_majk_verifier_on_a_file(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for prob in range(30):
        p = rng.uniform(0, 0.6)
        for s in range(16):
            ok = rng.random() < p
            rows.append({"problem": f"q{prob}", "sample_id": s, "answer": "42" if ok else str(rng.integers(0, 5)),
                         "correct": bool(ok), "score": float(rng.random() + ok * 0.5), "model": "m"})
    f = tmp_path / "s.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows))
    r = CliRunner().invoke(app, ["passk", str(f), "--k", "1,4,16", "--json", "--out", str(tmp_path / "fig"), "--target", "0.9"])
    assert r.exit_code == 0, r.output
    g = json.loads(r.stdout)["groups"]["default/m"]
    assert g["coverage"][0] <= g["coverage"][1] <= g["coverage"][2] and g["lower"][0] <= g["coverage"][0] <= g["upper"][0]
    assert (tmp_path / "fig" / "coverage.png").exists()
    r = CliRunner().invoke(app, ["majk", str(f), "--k", "1,3", "--json", "--resamples", "500"])
    assert r.exit_code == 0, r.output
    g = json.loads(r.stdout)["groups"]["default/m"]
    assert g["maj_at_k"][0] == pytest.approx(g["pass_at_k"][0], abs=0.03)   # maj@1 = pass@1
    r = CliRunner().invoke(app, ["verifier", str(f), "--json", "--no-figures", "--k-max", "32"])
    assert r.exit_code == 0, r.output
    v = json.loads(r.stdout)["groups"]["default/m"]["by_fpr"]
    assert v["0.0"]["ceiling"] >= v["0.2"]["ceiling"]
    r = CliRunner().invoke(app, ["passk", str(f), "--k", "100"])
    assert r.exit_code == 2 and "clamp" in r.output


@pytest.mark.slow
def test_train_on_a_task_then_sample_and_analyse(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALINGLAB_CACHE", str(tmp_path / "cache"))
    from scalinglab.train.config import RunConfig
    from scalinglab.train.run import train_run
    cfg = RunConfig(model=ModelConfig(d_model=64, n_layers=2, n_heads=4, seq_len=32), corpus="task:addition:1:direct",
                    horizon="steps", horizon_value=400, batch_size=16, lr=3e-3, eval_tokens=2048, n_evals=3)
    res = train_run(cfg, checkpoint_dir=tmp_path / "ck")
    assert res.status == "finished"
    db = str(tmp_path / "s.db")
    r = CliRunner().invoke(app, ["sample", str(tmp_path / "ck" / res.run_id), "--task", "addition:1", "--n", "8",
                                 "--problems", "5", "--store", db, "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)["results"][0]
    assert out["samples"] == 40 and out["pass_at_1"] > 0.3 and out["flops_per_sample"] > 0
    r = CliRunner().invoke(app, ["passk", "--store", db, "--k", "1,2,8", "--json", "--no-figures"])
    g = json.loads(r.stdout)["groups"][f"addition:1:direct/{res.run_id}"]
    assert g["inference_flops"][2] == pytest.approx(8 * g["inference_flops_per_sample"])
