"""Public model tables, trends over time with a slowdown test, observational scaling laws and saturation.

Oracles: planted parameters of simulated tables, closed forms (OLS, C = 6 N D, ln 2 / slope), brute-force
frontiers, independent simulation of a test's power, and the published numbers of the bundled table.
"""
import json
import math

import numpy as np
import pytest
from scipy import stats
from typer.testing import CliRunner

from scalinglab.cli import app
from scalinglab.importers import ImportFormatError
from scalinglab.observe.tables import ModelTable, decimal_year, parse_model_table
from scalinglab.observe.trends import (fit_trend, frontier_mask, rolling_origin, slope_change_pvalues,
                                       slope_change_test)
from scalinglab.store import RunStore

runner = CliRunner()


# ------------------------------------------------------------------------------------------ tables
def test_example_table_has_sources_and_published_numbers():
    t = ModelTable.example()
    assert 40 <= len(t) <= 80 and len(set(t.family)) >= 10
    assert all(r.strip() for r in t.reference)
    assert np.nanmin(t.date) >= 2019 and np.nanmax(t.date) < 2026
    i = list(t.model).index("LLaMA 65B")
    assert t.score("mmlu")[i] == pytest.approx(0.634)               # Touvron et al. 2023, 5-shot
    assert t.C[i] == pytest.approx(6 * 65.2e9 * 1.4e12)
    j = list(t.model).index("Mixtral 8x7B")                         # no tokens published: no compute
    assert np.isnan(t.D[j]) and np.isnan(t.C[j]) and t.N_active[j] == pytest.approx(12.9e9)
    k = list(t.model).index("DeepSeek-V3")                          # MoE: C = 6 N_active D
    assert t.C[k] == pytest.approx(6 * 37e9 * 14.8e12)
    assert np.all((t.scores[np.isfinite(t.scores)] >= 0) & (t.scores[np.isfinite(t.scores)] <= 1))


def test_decimal_year():
    assert decimal_year("2024-01-01") == 2024.0
    assert decimal_year("2023-07") == pytest.approx(2023 + 195 / 365)
    assert decimal_year("2023") == 2023.5
    assert decimal_year("2023.25") == 2023.25
    with pytest.raises(ValueError):
        decimal_year("2023-13-01")
    with pytest.raises(ValueError):
        decimal_year("last spring")


def test_table_import_reports_every_problem_and_writes_nothing(tmp_path):
    bad = tmp_path / "models.csv"
    bad.write_text("model,params,tokens,date,mmlu,source\n"
                   "a,7B,1T,2023-02,35.1,x\n"
                   "b,seven,1T,2023-02,40,x\n"
                   "a,7B,1T,2023-02,41,x\n"
                   "c,7B,1T,someday,140,x\n")
    with pytest.raises(ImportFormatError) as e:
        parse_model_table(bad)
    msg = str(e.value)
    for needle in ("row 3, column params", "row 4: model 'a' already given in row 2", "row 5, column date",
                   "row 5, column mmlu: 140 is above 100%", "nothing imported"):
        assert needle in msg
    store = tmp_path / "s.db"
    res = runner.invoke(app, ["models", "import", str(bad), "--store", str(store)])
    assert res.exit_code == 2 and "row 3, column params" in res.output
    assert not store.exists()


def test_table_import_fractions_and_percent(tmp_path):
    f = tmp_path / "m.csv"
    f.write_text("name,N,D,date,acc,note_score\nx,1B,20B,2022,0.5,30\ny,2B,40B,2023,0.75,60\n")
    rows = parse_model_table(f)
    assert [r["scores"] for r in rows] == [{"acc": 0.5, "note_score": 0.3}, {"acc": 0.75, "note_score": 0.6}]
    assert rows[1]["c"] == pytest.approx(6 * 2e9 * 40e9)


def test_harness_files_import(tmp_path):
    from scalinglab.observe.tables import parse_harness_models
    for name, acc in (("m1", 0.41), ("m2", 0.52)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"model_name": name, "results": {
            "hellaswag": {"acc,none": acc - 0.05, "acc_norm,none": acc, "acc_norm_stderr,none": 0.01},
            "gsm8k": {"exact_match,strict-match": acc / 4, "exact_match,flexible-extract": acc / 3}}}))
    (tmp_path / "sizes.csv").write_text("model,family,params,tokens,date\nm1,f,1B,20B,2023-01\nm2,f,2B,40B,2023-06\n")
    rows = parse_harness_models([tmp_path / "m1.json", tmp_path / "m2.json"], tmp_path / "sizes.csv")
    assert rows[0]["scores"]["hellaswag"] == pytest.approx(0.41)           # acc_norm preferred over acc
    assert rows[1]["scores"]["gsm8k"] == pytest.approx(0.52 / 3)           # filters sorted: flexible-extract first
    assert rows[1]["c"] == pytest.approx(6 * 2e9 * 40e9)


def test_store_roundtrip(tmp_path):
    from scalinglab.observe.tables import example_path
    rows = parse_model_table(example_path(), collection="example")
    with RunStore(tmp_path / "s.db") as st:
        assert st.add_public_models(rows) == len(rows)
        back = st.public_models("example")
    assert ModelTable.from_rows(back).scores.shape == ModelTable.from_rows(rows).scores.shape
    assert sorted(r["model"] for r in back) == sorted(r["model"] for r in rows)


# ------------------------------------------------------------------------------------------ trends
def test_frontier_top_k_matches_brute_force():
    rng = np.random.default_rng(0)
    d, v = rng.uniform(2020, 2025, 30), rng.normal(size=30)
    for k in (1, 3):
        mask = frontier_mask(d, v, "top", k)
        brute = [sum(1 for j in range(30) if d[j] <= d[i] and v[j] > v[i]) < k for i in range(30)]
        assert list(mask) == brute
    assert frontier_mask(d, v, "all").all()


def test_fit_trend_recovers_slope_and_doubling_time():
    t = np.linspace(2019, 2025, 25)
    y = 0.3 + math.log(2) / 0.5 * (t - 2019)                          # doubles every half year
    f = fit_trend(t, y + np.random.default_rng(1).normal(0, 0.01, 25), n_bootstrap=300)
    assert f["doubling_time_years"] == pytest.approx(0.5, rel=0.01)
    assert f["doubling_interval"][0] < 0.5 < f["doubling_interval"][1]
    assert f["growth_factor_per_year"] == pytest.approx(4.0, rel=0.02)


def test_rolling_origin_exact_on_a_line_and_calibrated_with_noise():
    t = np.linspace(2018, 2025, 40)
    r = rolling_origin(t, 2 * t)
    assert r["by_horizon"]["1"]["mean_abs_error"] < 1e-8
    rng = np.random.default_rng(2)
    cov = [rolling_origin(t, 2 * t + rng.normal(0, 1, 40))["by_horizon"]["1"]["coverage"] for _ in range(60)]
    assert 0.88 < np.mean(cov) < 0.99


def _planted(t, change, rng, sd=0.3, at=2022.5):
    return 1.0 * (t - t.min()) + change * np.maximum(t - at, 0) + rng.normal(0, sd, len(t))


def test_planted_slowdown_found_with_its_interval_on_a_synthetic_table():
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(2019, 2025, 50))
    y = _planted(t, -0.8, rng)
    r = slope_change_test(t, y, n_bootstrap=400, n_power=100)
    assert r["verdict"] == "slowdown" and r["p_value"] < 0.01
    assert r["change_interval"][0] < -0.8 < r["change_interval"][1]
    assert abs(r["breakpoint"] - 2022.5) < 1.0
    fixed = slope_change_test(t, y, breakpoint=2022.5, n_power=0)
    assert fixed["change_interval"][0] < -0.8 < fixed["change_interval"][1]


def test_planted_change_found_at_the_bundled_tables_dates():
    t = ModelTable.example().date
    rng = np.random.default_rng(4)
    y = 0.2 + 1.2 * (t - 2020) - 1.0 * np.maximum(t - 2023.5, 0) + rng.normal(0, 0.15, len(t))
    r = slope_change_test(t, y, n_bootstrap=400, n_power=0)
    assert r["verdict"] == "slowdown"
    assert r["change_interval"][0] < -1.0 < r["change_interval"][1]


def test_fixed_break_p_value_is_the_classical_f_test():
    rng = np.random.default_rng(5)
    t = np.sort(rng.uniform(2019, 2025, 20))
    y = _planted(t, -0.3, rng)
    X0 = np.column_stack([np.ones(20), t])
    X1 = np.column_stack([X0, np.maximum(t - 2022, 0)])
    sse = [np.sum((y - X @ np.linalg.lstsq(X, y, rcond=None)[0]) ** 2) for X in (X0, X1)]
    F = (sse[0] - sse[1]) / (sse[1] / 17)
    assert slope_change_pvalues(t, y, breakpoint=2022.0)[0] == pytest.approx(stats.f.sf(F, 1, 17), rel=1e-8)


def test_no_change_false_positive_rate_near_nominal_over_200_tables():
    rng = np.random.default_rng(6)
    t = np.sort(rng.uniform(2019, 2025, 40))
    verdicts = [slope_change_test(t, _planted(t, 0.0, rng), n_bootstrap=0, n_power=0)["verdict"] for _ in range(200)]
    fpr = np.mean([v in ("slowdown", "acceleration") for v in verdicts])
    assert 0.015 <= fpr <= 0.095, fpr                                  # nominal 0.05; binomial sd 0.015
    p = slope_change_pvalues(t, 1.0 * t[:, None] + rng.normal(0, 0.3, (40, 4000)))
    assert abs(np.mean(p < 0.05) - 0.05) < 0.012


def test_minimum_detectable_change_has_the_power_it_claims():
    rng = np.random.default_rng(7)
    t = np.sort(rng.uniform(2019, 2025, 30))
    y = _planted(t, 0.0, rng)
    r = slope_change_test(t, y, n_bootstrap=0, n_power=400)
    mdc = r["minimum_detectable_change"]
    assert mdc is not None and mdc > 0
    # independent simulation at the noise the data show (power depends on change / noise only)
    sims = np.column_stack([_planted(t, -mdc, rng, sd=r["residual_sd"], at=r["breakpoint"]) for _ in range(800)])
    power = np.mean(slope_change_pvalues(t, sims) < 0.05)
    assert 0.7 < power < 0.9
    # too little data to see a change of that size: the verdict says so rather than "no slowdown"
    assert r["verdict"] in ("inconclusive", "no_slowdown")
    few = slope_change_test(t[::3], y[::3], n_bootstrap=0, n_power=100, margin=0.05)
    assert few["verdict"] == "inconclusive"


def test_trends_cli_json_and_refusals(tmp_path):
    store = tmp_path / "s.db"
    assert runner.invoke(app, ["models", "import", "--example", "--store", str(store)]).exit_code == 0
    res = runner.invoke(app, ["trends", "--metric", "mmlu", "--frontier", "top", "--k", "3", "--bootstrap", "100",
                              "--power-sims", "50", "--store", str(store), "--json", "--out", str(tmp_path / "f")])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out) >= {"metric", "transform", "frontier", "fit", "backtest", "slope_change", "figures"}
    assert out["transform"] == "logit" and out["chance"] == 0.25
    assert out["slope_change"]["verdict"] in ("slowdown", "acceleration", "no_slowdown", "inconclusive")
    assert any(f.endswith(".png") for f in out["figures"])
    for args, needle in ((["--metric", "nope"], "no metric 'nope'"), (["--break", "soon"], "--break"),
                         (["--frontier", "best"], "--frontier"), (["--level", "2"], "--level")):
        res = runner.invoke(app, ["trends", "--store", str(store), *args])
        assert res.exit_code == 2 and needle in res.output, res.output
    res = runner.invoke(app, ["trends", "--store", str(tmp_path / "none.db")])
    assert res.exit_code == 2 and not (tmp_path / "none.db").exists()


# ------------------------------------------------------------------------------ observational laws
from scalinglab.observe.obslaws import ObservationalLaw, backtest, impute_pca  # noqa: E402
from scalinglab.observe.saturation import saturation  # noqa: E402


def test_impute_pca_recovers_missing_entries_of_a_low_rank_matrix():
    rng = np.random.default_rng(8)
    Z = rng.normal(size=(30, 2)) @ rng.normal(size=(2, 6))
    M = Z.copy()
    M[rng.random(Z.shape) < 0.2] = np.nan
    filled, comps = impute_pca(M, 2, tol=1e-10, max_iter=100_000)
    assert np.allclose(filled, Z, atol=1e-3)
    assert np.allclose(comps @ comps.T, np.eye(2), atol=1e-10)


def _synthetic_models(rng, n_fam=6, per=5, missing=0.15, offsets=None):
    """Families of models whose benchmarks are noisy linear readouts of one capability
    ``0.8 log10 C + offset[family]``, and a target that is a sigmoid of it."""
    offsets = rng.normal(0, 0.5, n_fam) if offsets is None else offsets
    rows = []
    for f in range(n_fam):
        for i, logc in enumerate(np.linspace(21, 24, per) + rng.uniform(-0.2, 0.2)):
            cap = 0.8 * (logc - 22.5) + offsets[f]
            scores = {f"b{j}": float(np.clip(0.5 + 0.12 * (1 + 0.2 * j) * cap + rng.normal(0, 0.01), 0, 1)) for j in range(4)}
            scores = {k: v for k, v in scores.items() if rng.random() > missing or k == "b0"}
            scores["target"] = float(np.clip(1 / (1 + np.exp(-(2.0 * cap - 0.5))) + rng.normal(0, 0.02), 0, 1))
            rows.append({"model": f"f{f}-{i}", "family": f"f{f}", "c": 10 ** logc, "date": f"{2020 + i}", "scores": scores})
    return ModelTable.from_rows(rows), offsets


def test_observational_law_recovers_planted_family_efficiency():
    rng = np.random.default_rng(9)
    offsets = np.array([0.0, 0.4, -0.4, 0.8, -0.2, 0.2])
    t, _ = _synthetic_models(rng, offsets=offsets)
    law = ObservationalLaw(target="target", n_components=1).fit(t)
    eff = np.array([law.efficiency_[f"f{f}"] for f in range(6)])
    # capability offset / slope in log10 C = the compute a family saves (relative: the median family is 0)
    planted = offsets / 0.8
    assert np.allclose(eff - eff.mean(), planted - planted.mean(), atol=0.08)
    assert law.residual_sd_ < 0.04
    assert float(law.predict_at_compute(10 ** 23.5, "f3")[0]) == pytest.approx(
        1 / (1 + np.exp(-(2.0 * (0.8 * 1.0 + 0.8) - 0.5))), abs=0.05)


def test_leave_one_family_out_backtest_is_accurate_and_calibrated_on_a_planted_table():
    t, _ = _synthetic_models(np.random.default_rng(10))
    res = backtest(t, target="target", kind="lofo", n_components=1, n_bootstrap=100)
    s = res["summary"]
    assert s["n"] == 30 and s["mean_abs_error"] < 0.04
    assert s["coverage"] >= 0.8
    cut = backtest(t, target="target", kind="cutoff", n_components=1, n_bootstrap=20)
    assert cut["summary"]["n"] > 0 and cut["summary"]["mean_abs_error"] < 0.06
    assert len(cut["leaning"]) == 5 and all(r["model"] in set(t.model) for r in cut["leaning"])


def test_saturation_recovers_planted_ceilings():
    rng = np.random.default_rng(11)
    th = rng.normal(0, 1.5, 80)
    ceil, a, loc, ch = np.array([0.9, 0.7, 1.0]), np.array([1.5, 2.0, 1.0]), np.array([-0.5, 0.5, 1.0]), np.array([0.25, 0, 0])
    S = ch + (ceil - ch) / (1 + np.exp(-a * (th[:, None] - loc))) + rng.normal(0, 0.005, (80, 3))
    t = ModelTable.from_rows([{"model": f"m{i}", "scores": {"mmlu": S[i, 0], "x": S[i, 1], "y": S[i, 2]}} for i in range(80)])
    res = saturation(t, n_bootstrap=30)
    got = {b["benchmark"]: b for b in res["benchmarks"]}
    for name, c in (("mmlu", 0.9), ("x", 0.7), ("y", 1.0)):    # y's best is 0.94: its ceiling is loosely known
        assert got[name]["ceiling"] == pytest.approx(c, abs=0.02 if name != "y" else 0.1)
        assert got[name]["ceiling_interval"][0] - 0.005 <= c <= got[name]["ceiling_interval"][1] + 0.005
        assert got[name]["headroom"] == pytest.approx(got[name]["ceiling"] - S[:, list(got).index(name)].max(), abs=1e-9)
    assert abs(np.corrcoef(res["ability"]["values"], th)[0, 1]) > 0.97


def test_observe_cli_json_and_refusals(tmp_path):
    t, _ = _synthetic_models(np.random.default_rng(12))
    f = tmp_path / "models.csv"
    f.write_text("model,family,flops,date,b0,b1,b2,b3,target\n" + "\n".join(
        f"{m},{fam},{c:.4g},{d:.3f}," + ",".join("" if np.isnan(v) else f"{v:.4f}" for v in row)
        for m, fam, c, d, row in zip(t.model, t.family, t.C, t.date, t.scores)) + "\n")
    res = runner.invoke(app, ["observe", "backtest", "--table", str(f), "--target", "target", "--components", "1",
                              "--bootstrap", "10", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert set(out) >= {"kind", "target", "predictions", "summary", "by_family", "failed", "figures"}
    res = runner.invoke(app, ["observe", "law", "--table", str(f), "--target", "target", "--compute", "1e24",
                              "--family", "f1", "--bootstrap", "10", "--json"])
    assert res.exit_code == 0, res.output
    law = json.loads(res.stdout)
    assert set(law) == {"law", "fitted_models", "forecast"} and 0 <= law["forecast"]["score"] <= 1
    for args, needle in ((["law", "--target", "nope"], "no benchmark 'nope'"),
                         (["law", "--target", "target", "--compute", "1e24"], "--family"),
                         (["backtest", "--target", "target", "--kind", "loo"], "--kind"),
                         (["backtest", "--target", "target", "--cutoff", "1e22"], "--kind cutoff")):
        res = runner.invoke(app, ["observe", *args, "--table", str(f)])
        assert res.exit_code == 2 and needle in res.output, (args, res.output)


def test_report_has_a_public_models_section(tmp_path):
    pytest.importorskip("plotly")
    from scalinglab.report.html import render_report
    store = tmp_path / "s.db"
    with RunStore(store) as st:
        assert "Public models" not in render_report(st)
    assert runner.invoke(app, ["models", "import", "--example", "--store", str(store)]).exit_code == 0
    with RunStore(store, readonly=True) as st:
        page = render_report(st)
    assert "Public models: scores over time" in page and "Touvron et al. 2023 (LLaMA)" in page
