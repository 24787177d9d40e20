"""Matched inference compute: thinking longer vs sampling more vs a larger model, on planted per-problem success
rates whose strategies have closed forms."""
import numpy as np
import pytest

from scalinglab.testtime.matched import flops_to_reach, matched_compute
from scalinglab.testtime.samples import group

SPEC = {("small", "direct"): (0.5, 1000.0), ("small", "scratchpad"): (0.8, 3000.0),
        ("large", "direct"): (0.75, 2000.0), ("large", "scratchpad"): (0.9, 6000.0)}


def _rows(P=60, n=64, seed=0):
    rng = np.random.default_rng(seed)
    diff = rng.uniform(0, 1, P)
    rows, truth = [], {}
    for (m, f), (skill, fl) in SPEC.items():
        p = skill * (1 - diff)
        truth[(m, f)] = p
        for i in range(P):
            for j in range(n):
                ok = rng.random() < p[i]
                rows.append({"task": f"addition:3:{f}", "model": m, "problem": f"p{i:03d}", "sample_id": str(j),
                             "answer": "A" if ok else f"w{rng.integers(0, 3)}", "correct": int(ok), "flops": fl,
                             "tokens": fl / 100})
    return rows, truth, diff


def test_flops_to_reach_interpolates_in_log_flops_over_the_running_best():
    pts = [(1.0, 0.2), (4.0, 0.6), (2.0, 0.1), (16.0, 0.9)]
    assert flops_to_reach(pts, 0.1) == 1.0
    assert flops_to_reach(pts, 0.4) == pytest.approx(2.0)     # halfway from 0.2 (F=1) to 0.6 (F=4) in log F
    assert flops_to_reach(pts, 0.95) is None


def test_strategies_match_their_closed_forms_and_levels_order_difficulty():
    rows, truth, diff = _rows()
    out = matched_compute(group(rows, []), "addition:3", "small", "large", ks=(1, 4, 16),
                          train_flops={"small": 1e12, "large": 4e12}, n_active={"small": 1e4, "large": 2e4})
    assert out["evaluation_samples"] == 32 and out["k"] == [1, 4, 16] and out["size_ratio"] == 2.0
    probs = sorted({r["problem"] for r in rows})
    for c in out["curves"]:
        p = truth[(c["model"], c["format"])]
        assert c["flops"] == [SPEC[(c["model"], c["format"])][1] * k for k in (1, 4, 16)]
        if c["strategy"] == "exact":         # pass@k against 1 - (1 - p)^k, averaged over problems
            expect = [np.mean(1 - (1 - p) ** k) for k in (1, 4, 16)]
            assert c["accuracy"] == pytest.approx(expect, abs=0.03)
        if c["strategy"] == "majority":       # k = 1: the success rate itself
            assert c["accuracy"][0] == pytest.approx(p.mean(), abs=0.03)
    # level 1 is the easiest: the smaller model's success falls level by level, for every curve
    for c in out["curves"]:
        assert c["by_level"][0][0] > c["by_level"][1][0] > c["by_level"][2][0]
    assert [lv["problems"] for lv in out["levels"]] == [20, 20, 20] and len(probs) == 60
    # the exchange rate: FLOPs the small model needs for the large model's one-sample accuracy
    e = next(x for x in out["exchange"] if x["level"] == "all" and x["large_format"] == "direct"
             and x["small_strategy"] == "exact")
    assert e["large_accuracy"] == pytest.approx(truth[("large", "direct")].mean(), abs=0.03)
    assert 1000.0 <= e["small_flops_per_query"] <= 4000.0 and e["exchange_rate"] == e["small_flops_per_query"] / 2000.0
    t = next(x for x in out["total_cost"] if x["large_format"] == "direct" and x["small_strategy"] == "exact")
    if e["small_flops_per_query"] > 2000.0:
        assert t["crossover_queries"] == pytest.approx(3e12 / (e["small_flops_per_query"] - 2000.0))
    # compute-optimal choices never lose accuracy as the budget grows, and an exact verifier does at least as well
    for o in out["compute_optimal"]:
        accs = [c["accuracy"] for c in o["choices"]]
        assert accs == sorted(accs)
    best = {o["verifier"]: o["choices"][-1]["accuracy"] for o in out["compute_optimal"] if o["level"] == "all"}
    assert best["exact"] >= best["none"] and best["imperfect"] >= best["none"]


def test_missing_groups_are_named():
    rows, _, _ = _rows(P=6, n=4)
    rows = [r for r in rows if not (r["model"] == "large" and r["task"].endswith("scratchpad"))]
    with pytest.raises(ValueError, match="addition:3:scratchpad/large"):
        matched_compute(group(rows, []), "addition:3", "small", "large")


def test_the_figure_is_drawn(tmp_path):
    from scalinglab.report.figures import matched_compute_figure
    rows, _, _ = _rows(P=9, n=8)
    out = matched_compute(group(rows, []), "addition:3", "small", "large", ks=(1, 2, 4))
    paths = matched_compute_figure(out, tmp_path)
    assert all((tmp_path / f"matched_compute.{e}").stat().st_size > 0 for e in ("png", "svg")) and len(paths) == 2


def test_cli_reads_the_store_and_refuses_bad_input(tmp_path):
    import json

    from typer.testing import CliRunner

    from scalinglab.cli import app
    from scalinglab.store import RunStore
    rows, _, _ = _rows(P=12, n=8)
    db = tmp_path / "s.db"
    with RunStore(db) as st:
        st.add_samples([dict(r, source="test", score=None, verdict=None) for r in rows])
    base = ["matched-compute", "--task", "addition:3", "--small", "small", "--large", "large", "--store", str(db),
            "--out", str(tmp_path / "fig")]
    r = CliRunner().invoke(app, base + ["--k", "1,2,4", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["k"] == [1, 2, 4] and {"curves", "compute_optimal", "exchange", "levels"} <= set(out)
    text = CliRunner().invoke(app, base + ["--k", "1,2,4", "--no-figures"])
    assert text.exit_code == 0 and "exchange rate" in text.output, text.output
    for bad, msg in ((["--k", "1.5"], "whole"), (["--fpr", "2"], "--fpr"), (["--levels", "0"], "levels"),
                     (["--large", "nobody"], "nobody")):
        r = CliRunner().invoke(app, base + bad)
        assert r.exit_code == 2 and msg in r.output, (bad, r.output)
    missing = CliRunner().invoke(app, ["matched-compute", "--task", "addition:3", "--small", "a", "--large", "b",
                                       "--store", str(tmp_path / "none.db")])
    assert missing.exit_code == 2 and not (tmp_path / "none.db").exists()
