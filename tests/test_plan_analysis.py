import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import isoflop_runs
from scalinglab import plan
from scalinglab.analysis import Selection, fit_runs
from scalinglab.cli import app
from scalinglab.importers import parse_runs
from scalinglab.laws import preset
from scalinglab.laws.presets import CHINCHILLA_2022


def test_inference_aware_with_no_inference_is_chinchilla_optimal():
    law = preset("chinchilla-2022")
    p = plan.plan_inference_aware(law, 2.0, inference_tokens=0.0)
    assert p["N"] == pytest.approx(p["chinchilla_optimal"]["N"], rel=1e-3)
    heavy = plan.plan_inference_aware(law, 2.0, inference_tokens=1e13)
    assert heavy["N"] < p["N"] and heavy["tokens_per_param"] > p["tokens_per_param"]
    assert heavy["total_flops"] <= heavy["chinchilla_optimal"]["total_flops"]
    assert law.predict(heavy["N"], heavy["D"]) == pytest.approx(2.0, rel=1e-9)


def test_target_loss_plan_is_consistent_with_compute_plan():
    law = preset("epoch-2024")
    t = plan.plan_target_loss(law, 2.1)
    c = plan.plan_compute(law, t["compute_flops"])
    assert c["loss"] == pytest.approx(2.1, rel=1e-8)
    with pytest.raises(ValueError, match="irreducible"):
        plan.plan_target_loss(law, 1.5)


def test_plan_for_params_inverts_the_frontier():
    law = preset("chinchilla-2022")
    row = plan.plan_for_params(law, [70e9])[0]
    n, d = law.compute_optimal(row["compute_flops"])
    assert n == pytest.approx(70e9, rel=1e-9) and d == pytest.approx(row["D_opt"], rel=1e-9)


def test_data_constrained_plan_loses_loss_only_when_repeating():
    law = preset("muennighoff-2023")
    plenty = plan.plan_data_constrained(law, 1e22, 1e13)
    assert plenty["epochs"] < 1 and plenty["loss_lost_to_repetition"] == pytest.approx(0, abs=1e-12)
    scarce = plan.plan_data_constrained(law, 1e22, 1e10)
    assert scarce["epochs"] > 4 and scarce["loss_lost_to_repetition"] > 0
    assert scarce["loss"] > plenty["loss"]


def test_gpu_hours_roundtrip():
    f = plan.gpu_hours_to_flops(1000, "H100", 0.5)
    assert f == pytest.approx(1000 * 3600 * 989e12 * 0.5)
    assert plan.flops_to_gpu_hours(f, "H100", 0.5)["gpu_hours"] == pytest.approx(1000)


def test_fit_with_holdout_predicts_the_largest_budget(runs_csv):
    runs = parse_runs(runs_csv).runs
    rep = fit_runs(runs, ("chinchilla", "approach2"), selection=Selection(holdout="largest"), n_bootstrap=200)
    ho = rep["holdout"]
    assert ho["n_held_out"] == 9 and ho["C_held_out"] > ho["C_max_fitted"]
    res = ho["results"]["chinchilla"]
    assert res["mean_abs_rel_error"] < 0.02
    assert np.mean([r["inside"] for r in res["runs"]]) >= 0.7


def test_cli_import_fit_plan_json(tmp_path, runs_csv):
    runner = CliRunner()
    db = str(tmp_path / "s.db")
    r = runner.invoke(app, ["import", str(runs_csv), "--store", db, "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["written"] == 45
    r = runner.invoke(app, ["fit", "--store", db, "--bootstrap", "100", "--json", "--out", str(tmp_path / "fig")])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    fit_id = out["fits"]["chinchilla"]["fit_id"]
    assert out["fits"]["chinchilla"]["params"]["alpha"] == pytest.approx(CHINCHILLA_2022["alpha"], rel=0.1)
    assert (tmp_path / "fig" / "isoflops.png").exists() and (tmp_path / "fig" / "loss_vs_compute.svg").exists()
    r = runner.invoke(app, ["plan", "--store", db, "--law", str(fit_id), "--compute", "1e21", "--json"])
    assert r.exit_code == 0, r.output
    p = json.loads(r.stdout)["plans"]["compute_optimal"]
    lo, hi = p["intervals"]["N_opt"]
    assert lo <= p["N_opt"] <= hi and p["extrapolation"]["compute_over_max_fitted"] > 1
    r = runner.invoke(app, ["runs", "--store", db, "--json"])
    assert len(json.loads(r.stdout)["runs"]) == 45


def test_cli_bad_import_fails_cleanly_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("name,N,D,loss\na,1M,1B,3\nb,xx,1B,3\n")
    db = tmp_path / "s.db"
    r = CliRunner().invoke(app, ["import", str(bad), "--store", str(db)])
    assert r.exit_code == 2 and "row 3" in r.output
    from scalinglab.store import RunStore
    with RunStore(db) as st:
        assert st.runs() == []


def test_cli_fit_file_directly_and_presets(tmp_path, runs_csv):
    r = CliRunner().invoke(app, ["fit", str(runs_csv), "--store", str(tmp_path / "s.db"), "--law", "kaplan-n",
                                 "--bootstrap", "0", "--no-figures", "--json"])
    assert r.exit_code == 0, r.output
    assert "alpha" in json.loads(r.stdout)["fits"]["kaplan-n"]["params"]
    r = CliRunner().invoke(app, ["presets", "--json"])
    assert json.loads(r.stdout)["chinchilla-2022"]["params"]["E"] == pytest.approx(1.69337)
    r = CliRunner().invoke(app, ["plan", "--preset", "nope", "--compute", "1e20"])
    assert r.exit_code == 2 and "known:" in r.output


def test_allow_bounds_keeps_a_flagged_fit_instead_of_an_error():
    from scalinglab.store import Run
    rng = np.random.default_rng(0)
    N = np.logspace(6, 9, 20)
    D = rng.permutation(np.logspace(8, 11, 20))
    runs = [Run(run_id=str(i), name=str(i), source="t", n_total=n, tokens=d, final_loss=1.8 + 300 * n ** -0.3)
            for i, (n, d) in enumerate(zip(N, D))]
    strict = fit_runs(runs, ("chinchilla",), n_bootstrap=0)["fits"]["chinchilla"]
    assert "bounds" in strict["error"] and strict["diagnostics"]["at_bounds"]
    lenient = fit_runs(runs, ("chinchilla",), n_bootstrap=0, allow_bounds=True)["fits"]["chinchilla"]
    assert lenient["at_bounds"] == strict["diagnostics"]["at_bounds"] and lenient["params"]["E"] > 0


def test_fit_approach1_reads_every_curve_from_the_store(tmp_path, monkeypatch):
    """The envelope fit gets each stored curve (read in one query) and recovers a planted N_opt ~ C^0.5."""
    from typer.testing import CliRunner

    from scalinglab.cli import app
    from scalinglab.laws import ChinchillaLaw
    from scalinglab.laws.presets import CHINCHILLA_2022
    from scalinglab.store import Run, RunStore
    true = dict(CHINCHILLA_2022, alpha=0.3, beta=0.3)
    runs, curves = [], {}
    for i, n in enumerate(np.geomspace(1e7, 1e9, 9)):
        d = np.geomspace(1e8, 2e11, 60)
        loss = ChinchillaLaw._predict_from(true, n, d)
        runs.append(Run(run_id=f"r{i}", name=f"r{i}", source="test", status="finished", n_total=n, n_nonembedding=n,
                        n_active=n, tokens=float(d[-1]), flops_6nd=6 * n * d[-1], final_loss=float(loss[-1])))
        curves[f"r{i}"] = {"split": "val", "step": np.arange(d.size), "tokens": d, "flops": 6 * n * d, "loss": loss}
    with RunStore(tmp_path / "s.db") as st:
        st.add_runs(runs, curves)
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["fit", "--store", "s.db", "--law", "approach1", "--bootstrap", "0", "--no-figures",
                                 "--no-save", "--json"])
    assert r.exit_code == 0, r.output
    fit = json.loads(r.stdout)["fits"]["approach1"]
    from scalinglab.laws import EnvelopeApproach
    direct = EnvelopeApproach(n_bootstrap=0).fit([{"N": run.n_total, "flops": curves[run.run_id]["flops"],
                                                   "loss": curves[run.run_id]["loss"]} for run in runs])
    assert fit["params"]["a"] == pytest.approx(direct.params_["a"], rel=1e-9)    # the same curves, all of them
    assert 0.25 < fit["params"]["a"] < 0.6             # a staircase of 9 sizes: near, not at, the true 0.5
