"""Distributional pass@k: closed forms against quadrature, recovery of known distributions, the CLI."""
import json

import numpy as np
import pytest
from scipy import integrate, stats
from typer.testing import CliRunner

from scalinglab.cli import app
from scalinglab.laws import FitError
from scalinglab.testtime import SuccessDistribution, forecast_backtest, subsample_counts
from scalinglab.testtime.distribution import (_fail_prob_beta, _fail_prob_grid, _Grid,
                                               _Kumaraswamy, _LogitNormal)


def quad_pass_at_k(pdf, k):
    """E[1 - (1 - p)^k] by adaptive quadrature, split where the integrand changes fastest."""
    f = lambda p: (-np.expm1(k * np.log1p(-p))) * pdf(p)  # noqa: E731
    return sum(integrate.quad(f, lo, hi, limit=200)[0] for lo, hi in [(0, 1e-6), (1e-6, 1e-3), (1e-3, 0.1), (0.1, 1)])


@pytest.mark.parametrize("a,b", [(0.3, 3.0), (1.5, 0.7), (0.8, 20.0)])
def test_pass_at_k_closed_form_and_grid_match_quadrature(a, b):
    ks = np.array([1.0, 10.0, 1000.0, 1e5])
    beta_want = [quad_pass_at_k(stats.beta(a, b).pdf, k) for k in ks]
    np.testing.assert_allclose(1 - _fail_prob_beta(a, b, ks), beta_want, rtol=1e-6, atol=1e-8)
    kuma_pdf = lambda p: a * b * p ** (a - 1) * (1 - p ** a) ** (b - 1)  # noqa: E731
    kuma_want = [quad_pass_at_k(kuma_pdf, k) for k in ks]
    np.testing.assert_allclose(1 - _fail_prob_grid("kumaraswamy", a, b, ks), kuma_want, rtol=1e-5, atol=2e-6)


def test_kumaraswamy_likelihood_on_grid_equals_beta_binomial_at_a_one():
    # Kumaraswamy(1, b) is Beta(1, b): the quadrature likelihood must equal the closed form
    n = np.array([1, 10, 100, 100, 100, 500])
    c = np.array([0, 3, 0, 1, 100, 250])
    for b in (0.4, 1.0, 7.0):
        want = stats.betabinom(n, 1.0, b).logpmf(c)
        np.testing.assert_allclose(_Grid(n, c).loglik(_Kumaraswamy, 1.0, b), want, rtol=1e-6, atol=1e-8)


def logitnormal_pass_at_k(mu, sigma, k):
    """E[1 - (1 - sigmoid(t))^k] for t ~ Normal(mu, sigma), by adaptive quadrature over t."""
    f = lambda t: -np.expm1(-k * np.logaddexp(0.0, t)) * stats.norm.pdf(t, mu, sigma)  # noqa: E731
    return integrate.quad(f, mu - 12 * sigma, mu + 12 * sigma, limit=400, points=[mu, -np.log(k)])[0]


@pytest.mark.parametrize("mu,sigma", [(-4.0, 1.5), (-8.0, 2.5), (1.0, 0.3)])
def test_logitnormal_pass_at_k_and_likelihood_match_quadrature(mu, sigma):
    ks = np.array([1.0, 10.0, 1000.0, 1e5])
    want = [logitnormal_pass_at_k(mu, sigma, k) for k in ks]
    np.testing.assert_allclose(1 - _fail_prob_grid("logitnormal", mu, sigma, ks), want, rtol=1e-6, atol=1e-9)
    n = np.array([1, 10, 100, 100, 100, 500])
    c = np.array([0, 3, 0, 1, 100, 250])
    got = _Grid(n, c).loglik(_LogitNormal, mu, sigma)
    t = np.linspace(-60.0, 60.0, 400_001)               # scipy's binomial pmf on a finer, wider grid
    for ni, ci, g in zip(n, c, got):
        want_ll = np.log(np.trapezoid(stats.binom.pmf(ci, ni, 1 / (1 + np.exp(-t))) * stats.norm.pdf(t, mu, sigma), t))
        assert g == pytest.approx(want_ll, rel=1e-6, abs=1e-8)


def test_fit_recovers_a_known_logitnormal_and_auto_tells_it_from_a_beta():
    rng = np.random.default_rng(5)
    n = np.full(2000, 100)
    c = rng.binomial(n, 1 / (1 + np.exp(-rng.normal(-4.0, 1.5, n.size))))
    d = SuccessDistribution(n_bootstrap=30).fit(n, c)             # auto
    assert d.family_ == "logitnormal" and set(d.candidates_) == {"beta", "kumaraswamy", "logitnormal"}
    assert d.params_["mu"] == pytest.approx(-4.0, abs=0.15) and d.params_["sigma"] == pytest.approx(1.5, rel=0.1)
    f = d.forecast([10_000])
    truth = logitnormal_pass_at_k(-4.0, 1.5, 10_000)
    assert abs(f["pass_at_k"][0] - truth) < 0.01 and f["lower"][0] < truth < f["upper"][0]
    assert set(f["by_family"]) == {"beta", "kumaraswamy", "logitnormal"} and f["by_family"]["logitnormal"] == f["pass_at_k"]
    sel = d.to_dict()["selection"]["families"]
    assert sel["logitnormal"]["aic"] < min(sel["beta"]["aic"], sel["kumaraswamy"]["aic"]) - 2 and d.aic_ == sel["logitnormal"]["aic"]
    assert d.samples_ is not None and set(d.samples_) == {"mu", "sigma", "pi0"} and repr(d).startswith("SuccessDistribution(logitnormal: mu=")
    cb = rng.binomial(n, rng.beta(0.3, 3.0, n.size))
    assert SuccessDistribution(n_bootstrap=0).fit(n, cb).family_ == "beta"


def test_auto_keeps_the_beta_when_another_family_is_ahead_by_less_than_two_aic():
    rng = np.random.default_rng(0)                  # the benchmark's first synthetic draw: Beta(0.3, 3)
    p = rng.beta(0.3, 3.0, 300)
    n = np.full(p.size, 10_000)
    nm, cm = subsample_counts(n, rng.binomial(n, p), 100, seed=0)
    d = SuccessDistribution(n_bootstrap=0).fit(nm, cm)
    aic = {f: v["aic"] for f, v in d.to_dict()["selection"]["families"].items()}
    assert aic["beta"] - 2 < aic["kumaraswamy"] < aic["beta"]       # Kumaraswamy ahead, by less than 2
    assert d.family_ == "beta" and d.aic_ == aic["beta"]


def test_fit_recovers_a_known_beta_and_its_pass_at_k():
    rng = np.random.default_rng(0)
    p = rng.beta(0.5, 3.0, 3000)
    n = np.full(p.size, 50)
    c = rng.binomial(n, p)
    d = SuccessDistribution(family="beta", zero_mass=False, n_bootstrap=30).fit(n, c)
    assert d.params_["a"] == pytest.approx(0.5, rel=0.12)
    assert d.params_["b"] == pytest.approx(3.0, rel=0.2)
    truth = 1 - _fail_prob_beta(0.5, 3.0, np.array([5000.0]))[0]
    f = d.forecast([5000])
    assert abs(f["pass_at_k"][0] - truth) < 0.02
    assert f["lower"][0] < f["pass_at_k"][0] < f["upper"][0]
    assert f["extrapolation_factor"] == [100.0]
    assert "a" in d.intervals() and repr(d).startswith("SuccessDistribution(beta")


@pytest.mark.parametrize("family", ["beta", "kumaraswamy", "logitnormal"])
def test_never_solvable_share_found_when_present_and_not_when_absent(family):
    rng = np.random.default_rng(1)
    p = rng.beta(3.0, 3.0, 600)
    n = np.full(p.size, 40)
    with_zero = p.copy()
    with_zero[:180] = 0.0
    d = SuccessDistribution(family=family, n_bootstrap=20).fit(n, rng.binomial(n, with_zero))
    ns = d.never_solvable()
    assert ns["fitted"] and ns["share"] == pytest.approx(0.3, abs=0.05)
    assert ns["interval"][0] < 0.3 < ns["interval"][1]
    assert d.pass_at_k([1e9])[0] == pytest.approx(1 - ns["share"], abs=1e-6)
    d0 = SuccessDistribution(family=family, n_bootstrap=0).fit(n, rng.binomial(n, p))
    assert not d0.zero_mass_ and d0.params_["pi0"] == 0.0


def test_subsample_keeps_m_of_n_without_replacement():
    n, c = np.full(2000, 1000), np.full(2000, 100)
    nm, cm = subsample_counts(n, c, 100, seed=3)
    assert (nm == 100).all() and (cm <= 100).all()
    assert cm.mean() == pytest.approx(10, abs=0.3)           # hypergeometric mean m c / n
    with pytest.raises(ValueError, match="between 1 and 1000"):
        subsample_counts(n, c, 1001)


def test_backtest_reports_both_forecasts_against_all_samples():
    rng = np.random.default_rng(2)
    p = rng.beta(0.4, 3.0, 200)
    n = np.full(p.size, 2000)
    c = rng.binomial(n, p)
    r = forecast_backtest(n, c, 50, [2000], n_bootstrap=0)
    assert r["actual"][0] == pytest.approx(np.mean(c > 0))
    assert r["distribution"]["abs_error"][0] < 0.05
    assert "abs_error" in r["aggregate"]
    with pytest.raises(ValueError, match="k <= 2000"):
        forecast_backtest(n, c, 50, [4000])


def test_invalid_counts_and_unsolved_sets_are_refused():
    with pytest.raises(ValueError, match="0 <= c <= n"):
        SuccessDistribution().fit([10, 10, 10], [3, 11, 0])
    with pytest.raises(ValueError, match="at least 3 problems"):
        SuccessDistribution().fit([10, 10], [3, 1])
    with pytest.raises(FitError, match="ever solved"):
        SuccessDistribution().fit([10, 10, 10], [0, 0, 0])
    with pytest.raises(ValueError, match="family"):
        SuccessDistribution(family="gamma").fit([10, 10, 10], [1, 2, 3])


@pytest.fixture
def counts_file(tmp_path):
    rng = np.random.default_rng(4)
    c = rng.binomial(400, rng.beta(0.5, 2.0, 60))
    path = tmp_path / "counts.jsonl"
    path.write_text("".join(json.dumps({"problem": f"q{i}", "n": 400, "c": int(x)}) + "\n" for i, x in enumerate(c)))
    return path


def test_cli_passk_forecast_json_and_table(counts_file, tmp_path):
    runner = CliRunner()
    args = ["passk-forecast", str(counts_file), "--task", "t", "--model", "m", "--k", "10,400,1e4", "--bootstrap", "20"]
    res = runner.invoke(app, args + ["--backtest", "40", "--json"])
    assert res.exit_code == 0, res.output
    g = json.loads(res.stdout)["groups"]["t/m"]
    assert g["forecast"]["k"] == [10, 400, 10000] and len(g["forecast"]["lower"]) == 3
    assert g["measured"]["k"] == [10, 400] and "never_solvable" in g["distribution"]
    assert g["backtest"]["kept_per_problem"] == 40 and g["backtest"]["k"] == [10, 400] and "pass_at_k" in g["aggregate"]
    assert g["distribution"]["family"] in g["distribution"]["selection"]["families"]
    assert len(g["forecast"]["by_family"]["kumaraswamy"]) == 3
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "(AIC beta" in res.output and "families" in res.output
    res = runner.invoke(app, args + ["--distribution", "kumaraswamy", "--zero-mass", "no"])
    assert res.exit_code == 0, res.output
    assert "pass@k forecast" in res.output and "kumaraswamy fit to" in res.output
    res = runner.invoke(app, args + ["--distribution", "logitnormal", "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)["groups"]["t/m"]["distribution"]
    assert d["family"] == "logitnormal" and set(d["params"]) == {"mu", "sigma", "pi0"} and "selection" not in d


@pytest.mark.parametrize("extra,message", [(["--distribution", "gamma"], "beta, kumaraswamy, logitnormal or auto"),
                                           (["--zero-mass", "maybe"], "auto, yes or no"),
                                           (["--backtest", "0"], "--backtest"),
                                           (["--k", "0"], ">= 1"),
                                           (["--backtest", "400"], "fewer than 400")])
def test_cli_passk_forecast_bad_input_exits_2(counts_file, extra, message):
    res = CliRunner().invoke(app, ["passk-forecast", str(counts_file), "--task", "t", "--model", "m", "--bootstrap", "0"] + extra)
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output
