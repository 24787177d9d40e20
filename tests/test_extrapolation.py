"""Forecasts far out: law forms, extrapolation error in prediction intervals, hold-outs, backtests, predict."""
import json

import numpy as np
import pytest
from scipy import optimize
from typer.testing import CliRunner

from conftest import isoflop_runs
from scalinglab import analysis
from scalinglab.cli import app
from scalinglab.laws import (ChinchillaLaw, DataConstrainedLaw, FitError, InteractionLaw, KaplanNDLaw, OvertrainLaw,
                             law_from_dict, preset)
from scalinglab.laws._extrapolation import cluster_log, extrapolation_distance, fit_model_error
from scalinglab.laws.presets import CHINCHILLA_2022, KAPLAN_2020

TRUE = CHINCHILLA_2022


def _grid(budgets=np.logspace(17, 20, 5), sizes=7, span=1.0):
    N = np.concatenate([ChinchillaLaw._frontier(TRUE, c)[0] * np.logspace(-span, span, sizes) for c in budgets])
    return N, np.repeat(budgets, sizes) / (6 * N)


def test_overtrain_law_recovers_gadre_parameters_and_its_constant_tokens_per_param():
    N, D = _grid()
    true = {"E": 1.8, "a": 30.0, "b": 400.0, "eta": 0.15}
    L = OvertrainLaw._predict_from(true, N, D)
    law = OvertrainLaw(n_bootstrap=0).fit(N, D, L)
    for k, v in true.items():
        assert law.params_[k] == pytest.approx(v, rel=1e-3), k
    # Gadre et al.: at fixed C the loss is minimised at M* = (b/a)^(1/(2 eta)), whatever C is
    for C in (1e20, 1e24):
        res = optimize.minimize_scalar(lambda x: law.predict(np.exp(x), C / (6 * np.exp(x))), bounds=(5, 35),
                                       method="bounded", options={"xatol": 1e-10})
        n, d = law.compute_optimal(C)
        assert n == pytest.approx(np.exp(res.x), rel=1e-4)
        assert d / n == pytest.approx((400.0 / 30.0) ** (1 / 0.3), rel=1e-3)


def test_kaplan_nd_law_recovers_the_published_kaplan_form():
    N, D = _grid(budgets=np.logspace(17, 21, 5))
    oracle = preset("kaplan-2020")            # the published L(N, D), Kaplan et al. Eq. 1.5
    L = oracle.predict(N, D)
    law = KaplanNDLaw(n_bootstrap=0).fit(N, D, L)
    for k in ("N_c", "D_c", "alpha_N", "alpha_D"):
        assert law.params_[k] == pytest.approx(KAPLAN_2020[k], rel=2e-3), k
    assert law.predict(7e9, 1.4e11) == pytest.approx(oracle.predict(7e9, 1.4e11), rel=1e-6)


def test_interaction_law_recovers_its_interaction_term():
    N, D = _grid()
    true = dict(TRUE, F=4.0e4)
    law = InteractionLaw(n_bootstrap=0).fit(N, D, InteractionLaw._predict_from(true, N, D))
    for k, v in true.items():
        assert law.params_[k] == pytest.approx(v, rel=5e-3), k


def test_laws_round_trip_through_the_store_format():
    N, D, L = isoflop_runs(noise=0.01, sizes=7)
    for cls in (OvertrainLaw, InteractionLaw, KaplanNDLaw):
        law = cls(n_bootstrap=60).fit(N, D, L)
        back = law_from_dict(json.loads(json.dumps(law.to_dict())))
        assert type(back) is cls
        assert back.predict(1e11, 2e12) == pytest.approx(law.predict(1e11, 2e12))
        np.testing.assert_allclose(back.predict_interval(1e11, 2e12, kind="prediction"),
                                   law.predict_interval(1e11, 2e12, kind="prediction"))


def test_cluster_log_splits_budgets_and_breaks_long_chains():
    C = np.array([1e18, 1.1e18, 0.95e18, 1e19, 1.05e19, 1e20])
    assert cluster_log(C).tolist() == [0, 0, 0, 1, 1, 2]
    chain = np.geomspace(1, 100, 60)                # continuous: no gap above 25%, but spans 100x
    labels = cluster_log(chain)
    spans = [chain[labels == g].max() / chain[labels == g].min() for g in np.unique(labels)]
    assert max(spans) <= 3.0 and len(spans) >= 5


def test_extrapolation_distance_is_the_largest_log_factor_outside_the_range():
    rng = {"N_min": 1e6, "N_max": 1e8, "D_min": 1e9, "D_max": 1e10, "C_min": 1e17, "C_max": 1e19}
    u = extrapolation_distance({"N": np.array([1e7, 1e9]), "D": np.array([5e9, 1e10]), "C": np.array([3e17, 6e19])}, rng)
    np.testing.assert_allclose(u, [0.0, 1.0])       # the second is 10x beyond N_max (6x beyond C_max)
    # a range with only maxima counts beyond them and nothing below
    u = extrapolation_distance({"N": np.array([1e3, 1e7, 3e8])}, {"N_max": 1e8})
    np.testing.assert_allclose(u, [0.0, 0.0, np.log10(3.0)])


def test_model_error_mle_recovers_a_known_kappa():
    rng = np.random.default_rng(0)
    u = rng.uniform(0.1, 1.5, 4000)
    s2 = np.full(u.size, 0.01 ** 2)
    for kappa in (0.0, 0.02, 0.05):
        r = rng.normal(0, np.sqrt(s2 + (kappa * u) ** 2))
        fit = fit_model_error(r, u, s2)
        assert fit["kappa"] == pytest.approx(kappa, abs=0.004)
        assert (fit["p_value"] < 1e-3) == (kappa > 0)


def test_misspecified_law_gets_a_model_error_term_and_a_warning():
    """Runs from a law with an interaction term, fitted with Chinchilla's form: the bootstrap alone is
    overconfident far out; the rolling-origin term widens the prediction interval and flags it."""
    N, D = _grid(sizes=9)
    true = dict(TRUE, F=4.0e4)
    L = InteractionLaw._predict_from(true, N, D) * np.exp(np.random.default_rng(0).normal(0, 0.003, N.size))
    law = ChinchillaLaw(n_bootstrap=200).fit(N, D, L)
    ex = law.extrapolation_
    assert ex["kappa"] > 0 and ex["misspecified"]
    n, d = ChinchillaLaw._frontier(TRUE, 1e22)
    plain = law.predict_distribution(n, d, include_extrapolation_error=False)
    full = law.predict_distribution(n, d)
    assert np.ptp(np.percentile(full, [2.5, 97.5])) > 1.5 * np.ptp(np.percentile(plain, [2.5, 97.5]))
    lo, hi = law.predict_interval(n, d, kind="prediction")
    assert lo[0] <= InteractionLaw._predict_from(true, n, d) <= hi[0]
    rep = analysis.fit_runs(_runs(N, D, L), ["chinchilla"], n_bootstrap=100)
    assert any("misspecified" in w for w in rep["fits"]["chinchilla"]["warnings"])


def test_confidence_interval_is_the_parameter_part_of_the_distribution():
    N, D, L = isoflop_runs(noise=0.01, sizes=7)
    law = ChinchillaLaw(n_bootstrap=100).fit(N, D, L)
    samples = law.predict_distribution(1e11, 2e12, include_observation_noise=False, include_extrapolation_error=False)
    lo, hi = law.predict_interval(1e11, 2e12, kind="confidence")
    assert (lo[0], hi[0]) == pytest.approx(tuple(np.percentile(samples[:, 0], [2.5, 97.5])))
    assert len(law.bootstrap_params_["E"]) == 100 - law.bootstrap_dropped_


def test_fit_refuses_runs_that_share_one_model_size():
    N, D, L = isoflop_runs(noise=0.01)
    N = np.full_like(N, 1e8)
    with pytest.raises(FitError, match="only 1 distinct value"):
        ChinchillaLaw(n_bootstrap=0).fit(N, D, L)


def _runs(N, D, L, names=None):
    import scalinglab as sl
    return [sl.Run(run_id=f"r{i}", name=(names[i] if names else f"r{i}"), source="test", n_total=float(n), tokens=float(d),
                   final_loss=float(l), status="finished") for i, (n, d, l) in enumerate(zip(N, D, L))]


def test_holdout_expressions_select_the_runs_they_say():
    N, D, L = isoflop_runs(noise=0.0, sizes=5)
    runs = _runs(N, D, L, names=[f"m-{i}b" if i % 7 == 0 else f"m{i}" for i in range(N.size)])
    C = 6 * N * D
    mask = analysis.holdout_mask_from("C > 1e19 and N >= 3e8", runs, N, D, C, L)
    np.testing.assert_array_equal(mask, (C > 1e19) & (N >= 3e8))
    mask = analysis.holdout_mask_from("name ~ 7B or C >= 1e20", runs, N, D, C, L)
    np.testing.assert_array_equal(mask, np.array(["7b" in r.name for r in runs]) | (C >= 1e20))
    np.testing.assert_array_equal(analysis.holdout_mask_from("largest", runs, N, D, C, L), C > 5e19)
    for bad, msg in (("C 1e21", "cannot read"), ("C >> 1e21", "not a number"), ("P > 3", "unknown field"), ("N ~ 7", "applies to name"),
                     ("N > abc", "not a number"), ("name > x", "takes ==")):
        with pytest.raises(ValueError, match=msg):
            analysis.parse_holdout(bad)
    with pytest.raises(FitError, match="selects all"):
        analysis.holdout_mask_from("C > 0", runs, N, D, C, L)


def test_auto_choice_never_sees_the_held_out_runs():
    N, D, L = isoflop_runs(noise=0.01, sizes=6, budgets=np.logspace(17, 20, 4))
    runs = _runs(N, D, L)
    rep = analysis.fit_runs(runs, ["auto"], selection=analysis.Selection(holdout="C > 3e19"), n_bootstrap=60)
    assert rep["recommended"] in analysis.ND_FORMS
    fitted = {k for k in analysis.ND_FORMS if "error" not in rep["fits"][k]}
    assert set(rep["fits"]) == set(analysis.ND_FORMS) and len(fitted) >= 2
    assert set(rep["holdout"]["results"]) == fitted                      # every form's hold-out stays visible
    L2 = L.copy()
    L2[6 * N * D > 3e19] *= 1.5                                            # wreck the held-out runs
    rep2 = analysis.fit_runs(_runs(N, D, L2), ["auto"], selection=analysis.Selection(holdout="C > 3e19"), n_bootstrap=60)
    assert [r["law"] for r in rep2["ranking"]] == [r["law"] for r in rep["ranking"]]
    assert rep2["ranking"][0]["backtest_mean_abs_log_error"] == rep["ranking"][0]["backtest_mean_abs_log_error"]


def test_data_constrained_uses_unique_tokens_seen_and_finds_the_plateau():
    from scalinglab.plan import data_plateau
    law = preset("muennighoff-2023")
    assert isinstance(law, DataConstrainedLaw)
    # a run shorter than the unique data sees only D unique tokens: more unseen data changes nothing
    assert law.predict(1e9, 2e10, 4e10) == pytest.approx(law.predict(1e9, 2e10, 4e12))
    U = 1e11
    p = data_plateau(law, U, 1e22)
    c = p["compute_flops"]
    loss = lambda C: float(law.predict(*law.compute_optimal(C, U), U))
    assert loss(c) - loss(10 * c) < 1e-3 * loss(c)                      # flat from there on
    assert loss(c / 10) - loss(c) >= 1e-3 * loss(c / 10) * 0.5           # and not much earlier


@pytest.fixture
def csv_runs(tmp_path):
    N, D, L = isoflop_runs(noise=0.01, sizes=6, budgets=np.logspace(17, 20, 4))
    path = tmp_path / "runs.csv"
    path.write_text("name,params,tokens,loss\n" + "".join(f"r{i},{n:.6e},{d:.6e},{l:.6f}\n"
                                                         for i, (n, d, l) in enumerate(zip(N, D, L))))
    return path


def test_backtest_command_reports_error_and_coverage_by_factor(csv_runs, tmp_path):
    r = CliRunner().invoke(app, ["backtest", str(csv_runs), "--bootstrap", "40", "--out", str(tmp_path / "bt"), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert {"selection", "n_runs", "axis", "level", "cuts", "results", "figures"} <= set(out)
    res = out["results"]["chinchilla"]
    assert len(out["cuts"]) == 2 and res["summary"]["overall"]["n"] == len(res["predictions"]) == 6 + 12
    for p in res["predictions"]:
        assert p["relative_error"] == pytest.approx(p["predicted"] / p["actual"] - 1)
        assert p["extrapolation_factor"] > 1
        assert p["inside"] == (p["interval"][0] <= p["actual"] <= p["interval"][1])
    assert any(f.endswith("backtest.png") for f in out["figures"])
    r = CliRunner().invoke(app, ["backtest", str(csv_runs), "--axis", "X"])
    assert r.exit_code == 2 and "--axis must be C, N or both" in r.output


def test_fit_holdout_expression_and_predict_from_the_stored_fit(csv_runs, tmp_path):
    db = tmp_path / "s.db"
    r = CliRunner().invoke(app, ["fit", str(csv_runs), "--store", str(db), "--law", "chinchilla", "--bootstrap", "60",
                                 "--holdout", "C > 3e19", "--no-figures", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    ho = out["holdout"]
    assert ho["expression"] == "C > 3e19" and ho["n_held_out"] == 6
    run = ho["results"]["chinchilla"]["runs"][0]
    assert {"predicted", "actual", "relative_error", "interval", "inside", "extrapolation_factor"} <= set(run)
    ex = out["fits"]["chinchilla"]["extrapolation"]
    assert {"kappa", "p_value", "calibrated_to_factor", "n_predictions", "misspecified"} <= set(ex)
    fit_id = out["fits"]["chinchilla"]["fit_id"]
    r = CliRunner().invoke(app, ["predict", "--law", str(fit_id), "--store", str(db), "--params", "7B",
                                 "--tokens", "140B", "--json"])
    assert r.exit_code == 0, r.output
    p = json.loads(r.stdout)["predictions"][0]
    law = ChinchillaLaw._predict_from
    assert p["loss"] == pytest.approx(law(out["fits"]["chinchilla"]["params"], 7e9, 1.4e11), rel=1e-9)
    assert p["confidence_interval"][0] <= p["loss"] <= p["confidence_interval"][1]
    assert p["prediction_interval"][0] <= p["confidence_interval"][0]
    assert p["extrapolation_factor"] > 10
    r = CliRunner().invoke(app, ["fit", str(csv_runs), "--store", str(db), "--holdout", "C 3"])
    assert r.exit_code == 2 and "cannot read" in r.output


def test_predict_with_a_preset_and_compute_with_tokens_per_param(tmp_path):
    r = CliRunner().invoke(app, ["predict", "--preset", "chinchilla-2022", "--compute", "5.76e23",
                                 "--tokens-per-param", "20", "--json", "--store", str(tmp_path / "none.db")])
    assert r.exit_code == 0, r.output
    p = json.loads(r.stdout)["predictions"][0]
    n = np.sqrt(5.76e23 / 120)
    assert p["N"] == pytest.approx(n) and p["D"] == pytest.approx(20 * n)
    assert p["loss"] == pytest.approx(ChinchillaLaw._predict_from(TRUE, n, 20 * n))
    assert p["prediction_interval"] is None and not (tmp_path / "none.db").exists()
    for args, msg in ((["--preset", "chinchilla-2022", "--params", "-7B", "--tokens", "1T"], "finite and positive"),
                      (["--preset", "chinchilla-2022", "--params", "7B"], "give --params and --tokens"),
                      (["--preset", "muennighoff-2023", "--compute", "1e23"], "--preset must be"),
                      (["--law", "3", "--compute", "1e23", "--store", str(tmp_path / "none.db")], "does not exist")):
        r = CliRunner().invoke(app, ["predict", *args])
        assert r.exit_code == 2 and msg in r.output, (args, r.output)
