"""The loss-curve law over the LR schedule: areas against a direct double sum, and parameter recovery."""
import numpy as np
import pytest

from scalinglab.laws.curve import AnnealingCurveLaw, annealing_terms, schedule_areas


def test_schedule_areas_against_the_double_sum():
    lr = np.r_[np.linspace(0.1, 1.0, 10), np.ones(50), np.linspace(1.0, 0.1, 40)] * 3e-3
    s1, s2 = schedule_areas(lr, tokens_per_step=64, decay=0.99)
    e = lr / lr.max()
    assert s1[-1] == pytest.approx(64 * e.sum())
    drops = np.maximum(0, np.r_[0, e[:-1] - e[1:]])
    direct = [sum(sum(drops[k] * 0.99 ** (i - k) for k in range(i + 1)) for i in range(s + 1)) for s in range(len(e))]
    np.testing.assert_allclose(s2, direct, rtol=1e-12)
    assert np.all(s2[:60] == 0)       # warmup and the constant phase anneal nothing


def test_constant_then_long_cooldown_saturates():
    lr = np.r_[np.ones(100), np.linspace(1, 0, 20000)]
    _, s2 = schedule_areas(lr, 1, decay=0.999)
    # the annealing area of a cooldown much longer than the momentum window tends to drop / (1 - lambda)
    assert 0.95 * 1000 < s2[-1] <= 1000 + 1e-6


def test_annealing_terms_against_a_direct_sum():
    lr = np.r_[np.ones(30), np.linspace(1.0, 0.1, 20)]
    drops, areas = annealing_terms(lr, [25, 40, 50], bins=1000)
    e = lr / lr.max()
    d = np.maximum(0, np.r_[0, e[:-1] - e[1:]])
    for row, t in enumerate((25, 40, 50)):
        c, gamma = 0.3, 0.7
        direct = sum(d[k] * (1 - (1 + c * e[k:t].sum()) ** -gamma) for k in range(1, t))
        got = np.sum(drops[row] * (1 - (1 + c * areas[row]) ** -gamma))
        assert got == pytest.approx(direct, rel=1e-12, abs=1e-15)
    assert drops[0].sum() == 0 and drops[2].sum() == pytest.approx(0.9)


TRUTH = dict(E=0.8, A=40.0, alpha=0.35, B=60.0, beta=0.3, D=0.3, c=0.02, gamma=1.0)


def _wsd(total, warm=20, frac=0.2):
    start = total - int(frac * total)
    return np.array([min((s + 1) / warm, 1.0) if s < start else 1 - 0.9 * np.sqrt((s - start + 1) / (total - start))
                     for s in range(total)])


def _truth(n, s1, drops, areas, t=TRUTH):
    sat = np.sum(drops * (1 - (1 + t["c"] * areas) ** -t["gamma"]), axis=-1)
    return t["E"] + t["A"] * n ** -t["alpha"] + t["B"] * s1 ** -t["beta"] - t["D"] * sat


def _synthetic(sizes, seed=0, noise=0.002, truth=TRUTH):
    rng = np.random.default_rng(seed)
    cols = [[] for _ in range(7)]
    for g, n in enumerate(sizes):
        for total in (400, 1200):
            lr = _wsd(total)
            s1, _ = schedule_areas(lr, 256)
            steps = list(range(40, total + 1, 40))
            d, a = annealing_terms(lr, steps)
            for step, di, ai in zip(steps, d, a):
                L = _truth(n, s1[step - 1], di[None], ai[None], truth)[0] * np.exp(noise * rng.standard_normal())
                for c, v in zip(cols, (n, s1[step - 1], di, ai, L, f"{g}-{total}", step == total)):
                    c.append(v)
    return [np.array(c) for c in cols]


def test_curve_law_recovers_its_parameters_and_forecasts_a_bigger_model():
    N, S1, d, a, L, g, fin = _synthetic([1e4, 2e4, 4e4, 8e4, 1.6e5])
    law = AnnealingCurveLaw(n_bootstrap=30).fit(N, S1, d, a, L, g, fin)
    p = law.params_
    assert p["alpha"] == pytest.approx(0.35, abs=0.1) and p["beta"] == pytest.approx(0.3, abs=0.05)
    # a 4x bigger model on a 3x longer schedule (a longer cooldown than any fitted)
    lr = _wsd(3750)
    s1, _ = schedule_areas(lr, 256)
    dv, av = annealing_terms(lr, [3750])
    actual = _truth(6.4e5, s1[-1], dv, av)[0]
    pred = law.predict([6.4e5], [s1[-1]], dv, av)[0]
    lo, hi = law.predict_interval([6.4e5], [s1[-1]], dv, av)
    assert abs(pred / actual - 1) < 0.02 and lo[0] <= actual <= hi[0]
    assert law.extrapolation_["n_forecasts"] > 0
    assert law.at_bounds_ == [] and law.bound_warnings() == []


def test_a_floor_the_curves_do_not_show_is_reported_not_hidden():
    # curves without a floor (E below zero, where the law's non-negative E cannot follow): E ends at its
    # bound 0, and the warning says so with E's bootstrap interval
    N, S1, d, a, L, g, fin = _synthetic([1e4, 2e4, 4e4, 8e4], truth=dict(TRUTH, E=-0.2, A=60.0))
    law = AnnealingCurveLaw(n_bootstrap=10).fit(N, S1, d, a, L, g, fin)
    assert law.params_["E"] == 0.0 and "E" in law.at_bounds_
    notes = law.bound_warnings()
    assert len(notes) == len(law.at_bounds_)
    assert any(n.startswith("curve law: E (the irreducible loss) ended at 0") and "bootstrap E in [0, " in n for n in notes)


def test_extrapolation_distance_counts_compute_beyond_every_curve():
    # a ladder's shape: the largest size only has the short schedule, the smaller ones the long one too.
    # The largest size trained as long as the longest curve lies inside the fitted N and the fitted S1
    # separately, but 2x beyond the fitted points in N * S1, the law's compute axis
    N, S1, d, a, L, g, fin = _synthetic([1e4, 2e4, 4e4])
    keep = g != "2-1200"
    law = AnnealingCurveLaw(n_bootstrap=0).fit(N[keep], S1[keep], d[keep], a[keep], L[keep], g[keep], fin[keep])
    s1_long, s1_short = S1.max(), S1[keep & fin & (N == 4e4)][0]
    assert law.data_range_["NS1_max"] == pytest.approx(max(2e4 * s1_long, 4e4 * s1_short))
    assert s1_long / s1_short > 2
    u = law.extrapolation_distance([4e4, 1e4, 4e4, 8e4], [s1_short, s1_long, s1_long, s1_short])
    assert u == pytest.approx([0.0, 0.0, np.log10(2.0), np.log10(2.0)])
