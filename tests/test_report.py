import os
import re
import shutil
import socket
import threading
import time

import numpy as np
import pytest

from conftest import isoflop_runs
from scalinglab.analysis import fit_runs, save_fits
from scalinglab.report.html import render_report, write_report
from scalinglab.store import Run, RunStore, config_hash

EVIL = "<script>alert(1)</script>"


@pytest.fixture
def fixture_store(tmp_path):
    """A small store with runs (one with a hostile name), curves, a fit, samples, scores and a gate decision."""
    N, D, L = isoflop_runs(budgets=np.logspace(17, 19, 3), sizes=5)
    budgets = np.repeat(np.logspace(17, 19, 3), 5)
    runs = []
    for i, (n, d, l, b) in enumerate(zip(N, D, L, budgets)):
        runs.append(Run(run_id=config_hash({"i": i}), name=EVIL if i == 0 else f"run-{i}", source="fixture",
                        n_total=n, n_active=n, tokens=d, flops_6nd=6 * n * d, final_loss=l, budget=b,
                        config={"note": "<b>bold?</b>"}))
    runs.append(Run(run_id="div", name="exploded", source="fixture", status="diverged", n_total=1e6, tokens=1e9))
    path = tmp_path / "s.db"
    with RunStore(path) as st:
        st.add_runs(runs, curves={runs[1].run_id: [{"step": s, "tokens": s * 1e6, "flops": 6 * N[1] * s * 1e6,
                                                    "loss": 5.0 / s ** 0.2} for s in (1, 2, 4, 8)]})
        save_fits(st, fit_runs(runs, ("chinchilla",), n_bootstrap=50), "fixture")
        st.add_samples([{"source": "t", "task": "addition:2", "model": "m", "problem": f"p{p}", "sample_id": str(s),
                         "answer": "1", "correct": int((p + s) % 3 == 0), "score": None, "verdict": None, "tokens": 4.0,
                         "flops": 1e6} for p in range(6) for s in range(8)])
        st.add_scores([{"source": "t", "model": f"m{i}", "run_id": None, "n": None, "d": None, "c": 10.0 ** (17 + i),
                        "loss": None, "task": "addition:2", "metric": m, "value": v}
                       for i in range(4) for m, v in (("exact_match", i / 4), ("log_likelihood", -2 + i / 3))])
        st.add_decision("gate", "run-3", "review", {"reasons": ["addition-review: review"]}, "ab" * 32)
    return path


def test_report_is_self_contained_and_escapes_untrusted_text(fixture_store, tmp_path):
    with RunStore(fixture_store, readonly=True) as st:
        page = render_report(st)
    assert EVIL not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>bold?</b>" not in page
    # nothing is fetched: no external src/href, and a CSP forbids it anyway
    markup = re.sub(r"<script>.*?</script>", "<script></script>", page, flags=re.S)   # inline code is not markup
    assert not re.findall(r'(?:src|href)\s*=\s*["\']?(?:https?:)?//', markup)
    assert not re.findall(r"<(?:script|link|img|iframe)[^>]*\s(?:src|href)=", markup)
    assert "default-src 'none'" in page
    for section in ("runs", "curves", "frontier", "allocation", "isoflops", "testtime", "emergence", "gates"):
        assert f'<section id="{section}">' in page
    assert '<section id="forecasts">' not in page        # nothing to show: left out
    out = write_report(fixture_store, tmp_path / "r.html", static_dir=tmp_path / "static")
    assert (tmp_path / "r.html").stat().st_size > 1e6 and any(p.endswith("loss_vs_compute.svg") for p in out["static_figures"])


def _driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,2000"):
        opts.add_argument(a)
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)


def _need_browser():
    if not (shutil.which("chromedriver") and (shutil.which("chromium") or shutil.which("chromium-browser"))):
        if os.environ.get("CI"):
            pytest.fail("CI must provide chromium and chromium-driver (.ci/run installs them)")
        pytest.skip("chromium / chromedriver not installed")


def _check_page(driver, shot):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, 30).until(EC.presence_of_all_elements_located((By.CSS_SELECTOR, ".js-plotly-plot .main-svg")))
    plots = driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot")
    assert len(plots) >= 5
    assert driver.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .scatterlayer .trace")
    names = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#runs-table tbody tr td:first-child")]
    assert EVIL in names and "run-7" in names and "exploded" in names      # the hostile name shows as text
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
    driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


@pytest.mark.slow
def test_report_renders_in_headless_chromium(fixture_store, tmp_path):
    _need_browser()
    write_report(fixture_store, tmp_path / "r.html")
    driver = _driver()
    try:
        driver.get((tmp_path / "r.html").as_uri())
        _check_page(driver, tmp_path / "report.png")
        resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert resources == []                                            # no network request at all
        header = driver.find_element("css selector", "#runs-table th:nth-child(10)")
        header.click()                                                    # sort by final loss
        losses = [td.get_attribute("data-v") for td in driver.find_elements("css selector", "#runs-table tbody td:nth-child(10)")]
        vals = [float(v) for v in losses if v]
        assert vals == sorted(vals)
    finally:
        driver.quit()


@pytest.mark.slow
def test_dashboard_serves_live_views_while_the_store_is_written(fixture_store, tmp_path):
    _need_browser()
    import uvicorn

    from scalinglab.report.dashboard import create_app
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(fixture_store), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    driver = _driver()
    try:
        driver.get(f"http://127.0.0.1:{port}/")
        _check_page(driver, tmp_path / "dashboard.png")
        # a ladder writes while the dashboard reads: a new running run appears on the next refresh
        with RunStore(fixture_store) as st:
            st.upsert_run(Run(run_id="live", name="live-run", source="ladder", status="running"))
            st.set_progress("live", {"step": 5, "steps": 50, "tokens_per_s": 1234.0, "eta_s": 9.0, "loss": 3.2})
        from selenium.webdriver.support.ui import WebDriverWait
        WebDriverWait(driver, 10).until(lambda d: "live-run" in d.find_element("id", "runs-table").text)
        assert "step 5/50" in driver.find_element("id", "runs-table").text
    finally:
        driver.quit()
        server.should_exit = True
        thread.join(timeout=10)


def test_dashboard_binds_locally_by_default_and_warns_otherwise(tmp_path, monkeypatch):
    import uvicorn

    from scalinglab.report import dashboard
    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, log_level: calls.append(host))
    (tmp_path / "s.db").write_bytes(b"")
    dashboard.serve(tmp_path / "s.db")
    assert calls == ["127.0.0.1"]
    with pytest.warns(RuntimeWarning, match="no authentication"):
        dashboard.serve(tmp_path / "s.db", host="0.0.0.0")


def test_downsample_log_keeps_ends_and_is_dense_early():
    from scalinglab.report.html import downsample_log
    idx = downsample_log(1000, 32)
    assert idx[0] == 0 and idx[-1] == 999 and idx.size <= 32 and (np.diff(idx) > 0).all()
    assert (idx < 100).sum() > (idx >= 500).sum()          # log-spaced: most points where the curve bends
    np.testing.assert_array_equal(downsample_log(5, 32), np.arange(5))


def test_many_curves_drawn_per_family_with_webgl_and_down_sampled(tmp_path):
    from scalinglab.report.html import CURVE_POINTS_PER_RUN, RUNS_PER_TRACE_LIMIT, _curves_section
    steps = np.arange(1, 2001)
    runs = [Run(run_id=f"r{i}", name=f"r{i}", source="t", family=("dense", "moe")[i % 2], n_total=1e6, tokens=1e9)
            for i in range(RUNS_PER_TRACE_LIMIT + 10)]
    with RunStore(tmp_path / "s.db") as st:
        st.add_runs(runs, curves={r.run_id: {"step": steps, "tokens": steps * 1e3, "flops": steps * 6e9,
                                             "loss": 3 + 1 / steps} for r in runs})
        _, _, page = _curves_section(st, st.runs())
    assert page.count('"connectgaps":false') == 2 and '"type":"scattergl"' in page    # two WebGL traces
    assert "dense (30 runs)" in page and "moe (30 runs)" in page
    assert f"at most {CURVE_POINTS_PER_RUN[1]} log-spaced points" in page


def test_dashboard_cache_refreshes_when_the_store_changes(tmp_path):
    from scalinglab.report.dashboard import PageCache
    path = tmp_path / "s.db"
    with RunStore(path) as st:
        st.add_runs([Run(run_id="a", name="a", source="t")])
    cache, renders = PageCache(path), []

    def render():
        with RunStore(path, readonly=True) as ro:
            renders.append(len(ro.runs()))
        return str(renders[-1])

    assert cache.get("index", render) == "1" and cache.get("index", render) == "1" and renders == [1]
    with RunStore(path) as st:
        st.add_runs([Run(run_id="b", name="b", source="t")])
    assert cache.get("index", render) == "2" and renders == [1, 2]
