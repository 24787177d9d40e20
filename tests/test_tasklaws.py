"""Task-ladder forecasts (Bhagia et al. 2024) and the score importers, against closed forms."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from scalinglab.cli import app
from scalinglab.forecast.scores import parse_harness, parse_mapping, parse_scores
from scalinglab.forecast.tasklaws import (LadderPoints, TaskLadderForecast, accuracy_of_loss, chance_level,
                                          predictability)
from scalinglab.importers import ImportFormatError
from scalinglab.store import RunStore

STEP1 = {"E": 0.55, "A": 120.0, "B": 900.0, "alpha": 0.28, "beta": 0.32}
STEP2 = {"ceiling": 0.9, "k": 6.0, "L0": 1.0}


def task_loss(N, D):
    return STEP1["E"] + STEP1["A"] * N ** -STEP1["alpha"] + STEP1["B"] * D ** -STEP1["beta"]


def ladder(score_noise=0.0, seed=0, chance=0.25):
    """4 sizes x 3 multipliers, 5 checkpoints per run; intermediate checkpoints sit above the law."""
    rng = np.random.default_rng(seed)
    rows = []
    for N in (1.9e8, 3.7e8, 7.6e8, 1.3e9):
        for m in (1, 3, 10):
            for frac in np.linspace(0.6, 1.0, 5):
                D = 20 * m * N * frac
                tl = task_loss(N, D) * (1 + 0.05 * (1 - frac))
                rows.append((f"{N:.2g}-{m}x", N, D, tl, accuracy_of_loss(tl, chance, **STEP2) + rng.normal(0, score_noise),
                             frac == 1.0))
    return LadderPoints.from_arrays(**dict(zip(("run", "N", "D", "task_loss", "score", "final"), map(list, zip(*rows)))))


def test_step2_closed_form():
    assert accuracy_of_loss(STEP2["L0"], 0.25, **STEP2) == pytest.approx((0.25 + 0.9) / 2)
    assert accuracy_of_loss(50.0, 0.25, **STEP2) == pytest.approx(0.25)
    assert accuracy_of_loss(-50.0, 0.25, **STEP2) == pytest.approx(0.9)
    assert chance_level("arc_easy") == 0.25 and chance_level("PIQA") == 0.5 and chance_level("addition:2") == 0.0


def test_noise_free_ladder_recovers_both_steps_and_the_target():
    fc = TaskLadderForecast(chance=0.25, n_bootstrap=0, variant="two_step").fit(ladder())
    for k, v in STEP1.items():
        assert fc.step1_.params_[k] == pytest.approx(v, rel=1e-3), k
    for k, v in STEP2.items():
        assert fc.step2_[k] == pytest.approx(v, rel=1e-3), k
    N, D = 6.9e9, 4e12
    p = fc.predict(N, D)
    assert p["task_loss"] == pytest.approx(task_loss(N, D), rel=1e-4)
    assert p["score"] == pytest.approx(accuracy_of_loss(task_loss(N, D), 0.25, **STEP2), abs=1e-3)
    assert p["extrapolation"]["N_over_max"] == pytest.approx(6.9e9 / 1.3e9)
    # the backtest ran on the ladder only: each origin forecasts a run from the runs of smaller compute
    origins = fc.backtest_["origins"]
    assert len(origins) == 3 and all(o["n_runs_fitted"] >= 9 for o in origins)
    assert fc.backtest_["mean_abs_error"]["two_step"] < 2e-3


def test_predictability_is_the_von_neumann_noise_of_the_last_checkpoints():
    e = 0.02
    run, D, score, final = [], [], [], []
    for r in range(3):
        for j in range(6):
            run.append(f"r{r}"), D.append(1e9 * (j + 1)), score.append(0.3 + 0.2 * r + e * (j % 2)), final.append(j == 5)
    pts = LadderPoints.from_arrays(run=run, N=[1e8] * 18, D=D, task_loss=[1.0] * 18, score=score, final=final)
    out = predictability(pts, last=5)
    assert out["score_noise"] == pytest.approx(e / np.sqrt(2))      # successive differences are all +-e
    assert out["score_spread"] == pytest.approx(0.4) and out["too_noisy"] is False
    assert predictability(pts, last=5, max_noise_fraction=0.01)["too_noisy"] is True


def test_a_too_noisy_task_is_flagged_and_not_forecast():
    fc = TaskLadderForecast(chance=0.25, n_bootstrap=30, max_noise_fraction=0.01).fit(ladder(score_noise=0.01))
    p = fc.predict(6.9e9, 4e12)
    assert p["status"] == "too_noisy" and p["score"] is None and p["withheld"]["intervals"]["score_prediction"]
    q = fc.predict(6.9e9, 4e12, allow_noisy=True)
    assert q["status"] == "forecast" and q["intervals"]["score"][0] <= q["score"] <= q["intervals"]["score"][1]
    assert q["intervals"]["score_prediction"][1] - q["intervals"]["score_prediction"][0] >= \
        q["intervals"]["score"][1] - q["intervals"]["score"][0] - 1e-9


def _write(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")
    return path


def test_long_by_task_table_reads_bpb_as_task_loss_and_marks_finals(tmp_path):
    f = _write(tmp_path / "s.csv", ["model", "N", "D", "step", "task", "bpb", "acc"],
               [["m1", 1e8, 1e9, 100, "hellaswag", 1.2, 0.3], ["m1", 1e8, 2e9, 200, "hellaswag", 1.1, 0.32],
                ["m2", 2e8, 4e9, 400, "hellaswag", 1.0, 0.35]])
    rows = parse_scores(f)
    got = {(r["model"], r["metric"]): r["value"] for r in rows}
    assert got[("m1@100", "task_loss")] == 1.2 and got[("m1", "task_loss")] == 1.1 and got[("m2", "acc")] == 0.35
    assert {r["d"] for r in rows if r["model"] == "m1@100"} == {1e9}


def test_wide_table_with_a_mapping_and_explicit_final(tmp_path):
    f = _write(tmp_path / "w.csv", ["model", "N", "D", "checkpoint", "final", "loss", "hs_bpb", "hs_acc", "piqa_acc"],
               [["m1", 1e8, 1e9, "a", "false", 3.1, 1.2, 0.3, 0.6], ["m1", 1e8, 2e9, "b", "true", 3.0, 1.1, 0.31, 0.61]])
    mapping = parse_mapping(["hs_bpb=hellaswag:bpb", "hs_acc=hellaswag:acc"])
    m = tmp_path / "map.csv"
    _write(m, ["column", "task", "metric"], [["piqa_acc", "piqa", "acc"]])
    mapping.update(parse_mapping(None, m))
    rows = parse_scores(f, mapping=mapping)
    got = {(r["model"], r["task"], r["metric"]): r for r in rows}
    assert got[("m1", "hellaswag", "task_loss")]["value"] == 1.1 and got[("m1@a", "piqa", "acc")]["value"] == 0.6
    assert got[("m1", "hellaswag", "acc")]["loss"] == 3.0            # the overall loss column stays the model's loss
    with pytest.raises(ImportFormatError, match="expected COLUMN=TASK:METRIC"):
        parse_mapping(["hs_bpb"])


@pytest.mark.parametrize("header,row,message", [
    (["model", "N", "D", "hs"], ["m", 1e8, 1e9, 0.3], "no task column and no column mapping"),
    (["model", "N", "D", "task", "acc"], ["m", "big", 1e9, "hs", 0.3], "row 2, column n"),
    (["model", "N", "D", "task", "acc"], ["m@1", 1e8, 1e9, "hs", 0.3], "contains '@'"),
    (["model", "N", "D", "task", "bpb", "loss"], ["m", 1e8, 1e9, "hs", 1.0, 1.1], "more than one task-loss column"),
    (["model", "N", "D", "final", "task", "acc"], ["m", 1e8, 1e9, "maybe", "hs", 0.3], "column final"),
])
def test_import_errors_name_the_row_and_column_and_write_nothing(tmp_path, header, row, message):
    f = _write(tmp_path / "bad.csv", header, [row])
    db = tmp_path / "s.db"
    res = CliRunner().invoke(app, ["scores", "import", str(f), "--store", str(db)])
    assert res.exit_code == 2 and message in res.output.replace("\n", " ")
    assert not db.exists() or RunStore(db, readonly=True).scores() == []


def test_harness_json_with_a_sizes_table(tmp_path):
    for name, acc, bpb in (("a", 0.3, 1.2), ("b", 0.4, 1.0)):
        (tmp_path / f"results_{name}.json").write_text(json.dumps({
            "results": {"hellaswag": {"alias": "hellaswag", "acc,none": acc, "acc_stderr,none": 0.01,
                                      "bits_per_byte,none": bpb}},
            "config": {"model_args": f"pretrained=org/model-{name}"}}))
    sizes = _write(tmp_path / "sizes.csv", ["model", "N", "D"], [["org/model-a", 1e8, 2e9], ["org/model-b", 3e8, 6e9]])
    rows = parse_harness([tmp_path / "results_a.json", tmp_path / "results_b.json"], sizes)
    got = {(r["model"], r["metric"]): r for r in rows}
    assert got[("org/model-b", "task_loss")]["value"] == 1.0 and got[("org/model-a", "acc")]["n"] == 1e8
    assert not any("stderr" in r["metric"] for r in rows)
    (tmp_path / "results_c.json").write_text(json.dumps({"results": {"x": {"acc,none": 0.1}}, "model_name": "zzz"}))
    with pytest.raises(ImportFormatError, match="no matching row"):
        parse_harness([tmp_path / "results_c.json"], sizes)


def test_cli_imports_a_ladder_and_forecasts_with_predictability_and_gates(tmp_path):
    pts = ladder(score_noise=0.005)
    rows = [["model", "N", "D", "checkpoint", "final", "task", "bpb", "acc"]]
    for i in range(pts.run.size):
        rows.append([pts.run[i], pts.N[i], pts.D[i], f"{pts.D[i]:.0f}", str(bool(pts.final[i])).lower(), "arc_easy",
                     pts.task_loss[i], pts.score[i]])
    f = _write(tmp_path / "ladder.csv", rows[0], rows[1:])
    db = tmp_path / "s.db"
    runner = CliRunner()
    res = runner.invoke(app, ["scores", "import", str(f), "--store", str(db), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["models"] == 12 and json.loads(res.stdout)["checkpoints"] == 60
    res = runner.invoke(app, ["forecast", "--task", "arc_easy", "--metric", "acc", "--params", "6.9e9", "--tokens", "4e12",
                              "--bootstrap", "40", "--store", str(db), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    f = out["forecast"]
    truth = accuracy_of_loss(task_loss(6.9e9, 4e12), 0.25, **STEP2)
    assert out["method"] == "task-ladder" and out["step2"]["chance"] == 0.25 and out["variant"] in f["by_variant"]
    assert f["predictability"]["score_noise"] > 0 and f["status"] == "forecast"
    assert abs(f["score"] - truth) < 0.1 and f["intervals"]["score_prediction"][0] < truth < f["intervals"]["score_prediction"][1]
    pol = tmp_path / "p.toml"
    pol.write_text('[[rule]]\nname = "arc"\ntask = "arc_easy"\nmetric = "acc"\nop = ">="\nthreshold = 0.3\naction = "review"\n')
    res = runner.invoke(app, ["gate", "--policy", str(pol), "--plan-compute", "1.7e23", "--store", str(db),
                              "--bootstrap", "40", "--json"])
    g = json.loads(res.stdout)
    assert res.exit_code == 10 and g["rules"][0]["evidence"]["forecast"]["method"] == "task-ladder"
    # a planned run given by its own N and D (not the compute-optimal split of its C) is forecast there
    res = runner.invoke(app, ["gate", "--policy", str(pol), "--plan-params", "6.9e9", "--plan-tokens", "4e12",
                              "--store", str(db), "--bootstrap", "40", "--json"])
    g = json.loads(res.stdout)
    used = g["rules"][0]["evidence"]["forecast"]
    assert res.exit_code in (0, 10) and (used["N"], used["D"]) == (6.9e9, 4e12) and g["subject"] == "plan:N=6.9e+09,D=4e+12"
    assert g["rules"][0]["evidence"]["value"] == pytest.approx(f["score"], abs=0.02)
    # --backtest 2: the two largest runs forecast from the other ten, with intervals
    res = runner.invoke(app, ["forecast", "--task", "arc_easy", "--metric", "acc", "--backtest", "2",
                              "--bootstrap", "20", "--store", str(db), "--json"])
    h = json.loads(res.stdout)["holdout"]
    assert res.exit_code == 0 and h["fitted_runs"] == 10 and len(h["held_out"]) == 2
    assert all(abs(r["error_points"]) < 10 and r["inside"] is not None for r in h["held_out"])


def test_emergence_shows_each_model_once_at_its_final_checkpoint(tmp_path):
    pts = ladder()
    rows = [["model", "N", "D", "checkpoint", "final", "task", "bpb", "acc"]]
    for i in range(pts.run.size):
        rows.append([pts.run[i], pts.N[i], pts.D[i], f"{pts.D[i]:.0f}", str(bool(pts.final[i])).lower(), "arc_easy",
                     pts.task_loss[i], pts.score[i]])
    db = tmp_path / "s.db"
    runner = CliRunner()
    assert runner.invoke(app, ["scores", "import", str(_write(tmp_path / "l.csv", rows[0], rows[1:])), "--store", str(db)]).exit_code == 0
    res = runner.invoke(app, ["emergence", "--task", "arc_easy", "--store", str(db), "--out", str(tmp_path / "o"), "--json"])
    # emergence reads exact_match by default; this ladder's score is acc: it says so rather than listing checkpoints
    assert res.exit_code == 2 and "exact_match" in res.output
    rows[0][-1] = "exact_match"                   # the same scores under the metric emergence reads
    assert runner.invoke(app, ["scores", "import", str(_write(tmp_path / "m.csv", rows[0], rows[1:])), "--store", str(db),
                               "--on-duplicate", "replace"]).exit_code == 0
    res = runner.invoke(app, ["emergence", "--task", "arc_easy", "--store", str(db), "--out", str(tmp_path / "o"), "--json"])
    assert res.exit_code == 0, res.output
    models = [m["model"] for m in json.loads(res.stdout)["models"]]
    assert len(models) == len(set(pts.run)) and not any("@" in m for m in models)


def test_holdout_forecasts_the_largest_runs_from_the_others_only():
    from scalinglab.forecast.tasklaws import holdout_forecast
    pts = ladder()
    h = holdout_forecast(pts, 3, chance=0.25, n_bootstrap=0, variant="two_step")
    held = [r["run"] for r in h["held_out"]]
    assert held == list(pts.runs[-3:]) and h["fitted_runs"] == 9
    for r in h["held_out"]:
        truth = accuracy_of_loss(task_loss(r["N"], r["D"]), 0.25, **STEP2)
        assert r["actual_score"] == pytest.approx(truth)
        assert r["predicted_score"] == pytest.approx(truth, abs=2e-3)     # the law is exact: only the fit's error
        assert r["error_points"] == pytest.approx(100 * (r["predicted_score"] - r["actual_score"]))
        assert r["compute_over_max_fitted"] > 1 and r["inside"] is None   # no bootstrap, no interval
    # the fit never saw the held-out runs: a ladder whose largest runs are corrupted forecasts the same
    bad = LadderPoints.from_arrays(run=pts.run, N=pts.N, D=pts.D, task_loss=pts.task_loss,
                                   score=np.where(np.isin(pts.run, held), 0.0, pts.score), final=pts.final)
    h2 = holdout_forecast(bad, 3, chance=0.25, n_bootstrap=0, variant="two_step")
    assert [r["predicted_score"] for r in h2["held_out"]] == [r["predicted_score"] for r in h["held_out"]]
    assert all(r["actual_score"] == 0.0 for r in h2["held_out"])
    with pytest.raises(ValueError, match="needs at least 6"):
        holdout_forecast(pts, 7, chance=0.25, n_bootstrap=0)
    h3 = holdout_forecast(ladder(score_noise=0.005), 2, chance=0.25, n_bootstrap=30, variant="two_step")
    assert all(r["inside"] is not None and len(r["score_prediction_interval"]) == 2 for r in h3["held_out"])
