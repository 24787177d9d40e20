"""The self-contained HTML report: interactive plotly charts with plotly.js embedded, a sortable runs
table, and a section for everything the store holds (empty sections are left out).

Offline by construction: plotly.js is inlined, and a Content-Security-Policy forbids the page from
fetching anything. All text from the store (run names, configs, imported columns) is escaped.
"""
from __future__ import annotations

import html
import time
import warnings
from pathlib import Path

import numpy as np

from .._units import format_quantity
from ..store import RUN_STATUSES, RunStore

CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
       "img-src data: blob:; font-src data:; connect-src 'self'")
CONVENTIONS = ("N = {n}; C = 6·N·D (training FLOPs, N the stated parameter convention); loss in nats per token "
               "(per byte for byte-level tokenizers)")

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:0 auto;max-width:1180px;padding:16px;color:#222}
h1{margin-bottom:0} .sub{color:#666;margin-top:4px} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;font-size:13px;width:100%} th,td{border-bottom:1px solid #eee;padding:3px 6px;text-align:right}
th{cursor:pointer;background:#f6f6f6;position:sticky;top:0} td.l,th.l{text-align:left}
.note{color:#555;font-size:12px;margin:4px 0 10px} .diverged{color:#b45309} .failed{color:#b91c1c} .running{color:#1d4ed8} .queued{color:#6b7280}
.tag{display:inline-block;padding:0 6px;border-radius:8px;background:#eef}
"""

_SORT_JS = """
function sortTable(th){const t=th.closest('table');const i=[...th.parentNode.children].indexOf(th);
const asc=th.dataset.asc!=='1';th.dataset.asc=asc?'1':'0';const rows=[...t.tBodies[0].rows];
const key=r=>{const v=r.cells[i].dataset.v??r.cells[i].textContent;const f=parseFloat(v);return isNaN(f)?v:f};
rows.sort((a,b)=>{const x=key(a),y=key(b);return (x>y?1:x<y?-1:0)*(asc?1:-1)});rows.forEach(r=>t.tBodies[0].appendChild(r));}
"""


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _num(x, fmt="{:.4g}") -> str:
    return "–" if x is None else fmt.format(x)


def _fig_html(fig, div_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id, config={"displaylogo": False})


def _table(headers: list[str], rows: list[str]) -> str:
    """A table from header labels (a leading ``<`` marks a left-aligned column) and rendered ``<tr>`` rows."""
    head = "".join(f"<th class='l'>{_e(h[1:])}</th>" if h.startswith("<") else f"<th>{_e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _compute_order(r):
    """Runs by training compute (runs without one last), then name."""
    return (r.flops_6nd is None, r.flops_6nd or 0.0, r.name)


def runs_table(runs) -> str:
    """The runs, sorted by compute, counts in the project's quantity format (the raw value sorts the column)."""
    cols = [("name", "l"), ("status", "l"), ("family", "l"), ("N_total", ""), ("N_nonembedding", ""), ("N_active", ""),
            ("D (tokens)", ""), ("C = 6ND", ""), ("C with attention", ""), ("final loss", ""), ("source", "l"),
            ("progress", "l")]
    head = "".join(f'<th class="{c}" onclick="sortTable(this)">{_e(n)}</th>' for n, c in cols)
    body = []
    for r in sorted(runs, key=_compute_order):
        prog = r.extra.get("progress") or {}
        ptxt = (f"step {prog.get('step')}/{prog.get('steps')}, {prog.get('tokens_per_s', 0):,.0f} tok/s, "
                f"ETA {prog.get('eta_s', 0):.0f}s") if r.status == "running" and prog else ""
        cells = [(r.name, "l", r.name), (r.status, f"l {r.status}", r.status), (r.family or "", "l", r.family or "")]
        for v in (r.n_total, r.n_nonembedding, r.n_active, r.tokens, r.flops_6nd, r.flops_with_attention):
            cells.append(("–" if v is None else format_quantity(v), "", "" if v is None else repr(float(v))))
        cells.append((_num(r.final_loss, "{:.4f}"), "", "" if r.final_loss is None else repr(float(r.final_loss))))
        cells += [(r.source, "l", r.source), (ptxt, "l", ptxt)]
        body.append("<tr>" + "".join(f'<td class="{c}" data-v="{_e(v)}">{_e(t)}</td>' for t, c, v in cells) + "</tr>")
    return f'<table id="runs-table"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def fit_runs_note(selection: dict) -> str:
    """Which runs a stored fit used: fitted and held out (fits stored before the split was recorded give the total)."""
    n_runs = selection.get("n_runs")
    fitted, held = selection.get("n_fitted", n_runs), selection.get("n_held_out", 0)
    text = f"{fitted} runs fitted"
    if held:
        text += f", {held} held out ({selection.get('holdout')}) and forecast"
    return text


def budget_groups(runs, C) -> np.ndarray:
    """Each run's IsoFLOP budget: its ``budget`` when every run has one, else the geometric mean compute of its
    cluster in log C (:func:`scalinglab.laws.group_budgets`, as the Approach-2 fit groups runs)."""
    from ..laws import group_budgets
    if len(runs) and all(r.budget for r in runs):
        return np.array([float(r.budget) for r in runs])
    C = np.asarray(C, float)
    labels = group_budgets(C) if len(C) else np.array([], int)
    centres = {j: float(np.exp(np.log(C[labels == j]).mean())) for j in set(labels.tolist()) if j >= 0}
    return np.array([centres.get(j, np.nan) for j in labels.tolist()])


CURVE_POINTS_BUDGET = 200_000      # points drawn over all curves: keeps a 10,000-run page near 10 MB
CURVE_POINTS_PER_RUN = (16, 128)
RUNS_PER_TRACE_LIMIT = 50          # above this many runs, one trace per family (curves split by gaps)


def downsample_log(m: int, n: int) -> np.ndarray:
    """Indices of at most ``n`` of a curve's ``m`` points, log-spaced in position (dense early, where a
    training curve bends, sparse late), always with the first and the last point."""
    if m <= n:
        return np.arange(m)
    return np.unique(np.concatenate([[0], np.round(np.geomspace(1, m, n - 1)).astype(int) - 1, [m - 1]]))


def _curves_section(store: RunStore, runs) -> tuple[str, str, str] | None:
    """Loss curves read in one query, each down-sampled; WebGL traces, one per run for a few runs and one
    per family (curves separated by gaps) for many."""
    import plotly.graph_objects as go

    stored = store.curves([r.run_id for r in runs])
    with_curve = [r for r in runs if r.run_id in stored and stored[r.run_id]["step"].size]
    if not with_curve:
        return None
    lo, hi = CURVE_POINTS_PER_RUN
    per_run = int(np.clip(CURVE_POINTS_BUDGET // len(with_curve), lo, hi))
    thin = {}
    for r in with_curve:
        c = stored[r.run_id]
        keep = downsample_log(c["flops"].size, per_run)
        thin[r.run_id] = (c["flops"][keep], c["loss"][keep])
    fig = go.Figure()
    if len(with_curve) <= RUNS_PER_TRACE_LIMIT:
        for r in with_curve:
            x, y = thin[r.run_id]
            fig.add_trace(go.Scattergl(x=x, y=y, mode="lines+markers", name=r.name, hovertext=f"{r.name} ({r.status})"))
        note = f"{len(with_curve)} runs"
    else:
        families: dict[str, list] = {}
        for r in with_curve:
            families.setdefault(r.family or "runs", []).append(r)
        for fam, members in sorted(families.items()):
            xs = np.concatenate([np.append(thin[r.run_id][0], np.nan) for r in members]).astype(np.float32)
            ys = np.concatenate([np.append(thin[r.run_id][1], np.nan) for r in members]).astype(np.float32)
            fig.add_trace(go.Scattergl(x=xs, y=ys, mode="lines", name=f"{fam} ({len(members)} runs)",
                                       line=dict(width=0.6), opacity=0.5, connectgaps=False))
        note = (f"{len(with_curve)} runs, drawn as one trace per family (hover names the family; the runs table and "
                f"<code>/api/curves/RUN_ID</code> on the dashboard give single runs)")
    fig.update_layout(xaxis_type="log", xaxis_title="training compute C = 6·N_active·D so far [FLOPs]",
                      yaxis_title="validation loss [nats/token]", height=430, margin=dict(t=30))
    return ("curves", "Loss curves", f'<p class="note">Validation loss on fixed held-out tokens; {note}; each curve '
            f'down-sampled to at most {per_run} log-spaced points.</p>' + _fig_html(fig, "fig-curves"))


def _sections(store: RunStore) -> list[tuple[str, str, str]]:
    """(id, title, html) for every section with something to show."""
    import plotly.graph_objects as go

    from ..analysis import run_arrays
    from ..laws import FitError, IsoFLOPApproach, law_from_dict
    out = []
    runs = store.runs()
    if runs:
        counts = {s: sum(r.status == s for r in runs) for s in RUN_STATUSES}
        note = ", ".join(f"{v} {k}" for k, v in counts.items() if v)
        out.append(("runs", "Runs", f'<p class="note">{len(runs)} runs ({_e(note)}), by training compute; click a header to sort. '
                                    f'Parameter conventions: N_total (all), N_nonembedding (no token embedding / untied head), '
                                    f'N_active (top-k experts only). C = 6·N_active·D.</p>' + runs_table(runs)))
    # loss curves
    section = _curves_section(store, runs)
    if section:
        out.append(section)
    # fits
    fits = store.fits()
    chin = next((f for f in reversed(fits) if f["law"] == "chinchilla" and f["payload"].get("law") == "chinchilla"), None)
    if chin is not None:
        sel = chin["payload"].get("selection", {})
        nconv = sel.get("n_convention", "n_total")
        law = law_from_dict(chin["payload"])
        fam = sel.get("family")
        rs, N, D, C, L = run_arrays([r for r in runs if fam is None or r.family == fam], nconv, sel.get("flop_convention", "6ND"))
        fig = go.Figure()
        if len(C):
            fig.add_trace(go.Scatter(x=C, y=L, mode="markers", name="runs", text=[r.name for r in rs],
                                     marker=dict(color=np.log10(N), colorscale="Viridis", showscale=True,
                                                 colorbar=dict(title=f"log10 {nconv}"))))
            cg = np.geomspace(C.min() / 2, C.max() * 10, 100)
        else:
            cg = np.geomspace(law.data_range_.get("C_min", 1e18), law.data_range_.get("C_max", 1e22) * 10, 100)
        n_opt, d_opt = law.compute_optimal(cg)
        fig.add_trace(go.Scatter(x=cg, y=law.predict(n_opt, d_opt), mode="lines", name="fitted compute-optimal frontier"))
        if law.has_intervals:
            nb, db = law.compute_optimal_samples(cg)
            lb = law._predict_from({k: v[:, None] for k, v in law.bootstrap_params_.items()}, nb, db)
            lo, hi = np.percentile(lb, [2.5, 97.5], axis=0)
            fig.add_trace(go.Scatter(x=np.r_[cg, cg[::-1]], y=np.r_[hi, lo[::-1]], fill="toself", line=dict(width=0),
                                     name="95% bootstrap interval", opacity=0.3))
        fig.update_layout(xaxis_type="log", yaxis_type="log", height=460, margin=dict(t=60),
                          legend=dict(orientation="h", y=1.12), xaxis_title="training compute C = 6·N·D [FLOPs]",
                          yaxis_title="final loss [nats/token]")
        iv = chin["intervals"]
        rows = "".join(f"<tr><td class='l'>{_e(k)}</td><td>{v:.5g}</td><td>"
                       + (f"[{iv[k][0]:.5g}, {iv[k][1]:.5g}]" if k in iv else "–") + "</td></tr>"
                       for k, v in chin["params"].items())
        table = _table(["<parameter", "value", "95% interval"], [rows])
        out.append(("frontier", "Loss vs compute, with the fitted frontier",
                    f'<p class="note">Fit {chin["fit_id"]} (Chinchilla Approach 3, Huber on log-loss, bootstrap over runs). '
                    f'Data: {_e(chin["selection"].get("source", ""))}, {_e(fit_runs_note(chin["selection"]))}'
                    f'{", family " + _e(fam) if fam else ""}. {_e(CONVENTIONS.format(n=nconv))}.</p>'
                    + _fig_html(fig, "fig-frontier") + table))
        # allocation
        fig = go.Figure()
        for y, name in ((n_opt, "N_opt"), (d_opt, "D_opt")):
            fig.add_trace(go.Scatter(x=cg, y=y, mode="lines", name=f"{name} (Approach 3)"))
        if law.has_intervals:
            nb, db = law.compute_optimal_samples(cg)
            for arr, name in ((nb, "N_opt"), (db, "D_opt")):
                lo, hi = np.percentile(arr, [2.5, 97.5], axis=0)
                fig.add_trace(go.Scatter(x=np.r_[cg, cg[::-1]], y=np.r_[hi, lo[::-1]], fill="toself", line=dict(width=0),
                                         opacity=0.25, name=f"{name} 95% interval"))
        groups = budget_groups(rs, C)
        budgets = sorted({float(g) for g in groups if np.isfinite(g)})
        given = bool(len(rs)) and all(r.budget for r in rs)
        if len(budgets) >= 2 and len(C):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)   # dropped IsoFLOP budgets are listed in the fit report
                    iso = IsoFLOPApproach(n_bootstrap=0).fit(N, D, L, C=C, budgets=groups if given else None)
                fig.add_trace(go.Scatter(x=[b["C"] for b in iso.budgets_], y=[b["N_opt"] for b in iso.budgets_],
                                         mode="markers", name="N_opt per IsoFLOP budget (Approach 2)"))
            except FitError:
                pass  # fewer than two usable budgets: the Approach-3 lines stand alone
        a_iv = iv.get("a")
        fig.update_layout(xaxis_type="log", yaxis_type="log", height=400, margin=dict(t=30),
                          xaxis_title="training compute C = 6·N·D [FLOPs]", yaxis_title=f"N_opt [{nconv}] / D_opt [tokens]")
        out.append(("allocation", "Compute-optimal N and D",
                    f'<p class="note">N_opt ∝ C^a with a = {chin["params"]["a"]:.3f}'
                    + (f" [{a_iv[0]:.3f}, {a_iv[1]:.3f}]" if a_iv else "") + f'; {_e(CONVENTIONS.format(n=nconv))}.</p>'
                    + _fig_html(fig, "fig-allocation")))
        # IsoFLOP profiles
        if len(budgets) >= 2:
            fig = go.Figure()
            for b in budgets:
                grp = sorted((n, l) for g, n, l in zip(groups, N, L) if g == b)
                fig.add_trace(go.Scatter(x=[g[0] for g in grp], y=[g[1] for g in grp], mode="lines+markers",
                                         name=f"C = {b:.3g}"))
            fig.update_layout(xaxis_type="log", height=400, margin=dict(t=30), xaxis_title=f"N [{nconv}]",
                              yaxis_title="final loss [nats/token]")
            how = ("their compute budget" if given else
                   "compute (runs within 10% of each other's C share a budget, as the Approach-2 fit groups them)")
            out.append(("isoflops", "IsoFLOP profiles", f'<p class="note">Runs grouped by {how}; '
                        f'the minimum of each profile is the compute-optimal size. {_e(CONVENTIONS.format(n=nconv))}.</p>'
                        + _fig_html(fig, "fig-isoflops")))
    decisions = store.decisions()
    forecasts = [d for d in decisions if d["kind"] == "forecast"]
    if forecasts:
        rows = []
        for d in forecasts:
            p = d["payload"]
            run = store.run(d["subject"])
            actual = run.final_loss if run and run.status == "finished" else None
            err = "–" if actual is None else f"{p['predicted_loss'] / actual - 1:+.2%}"
            rows.append(f"<tr><td class='l'>{_e(run.name if run else d['subject'])}</td><td>{p['compute_flops']:.3g}</td>"
                        f"<td>{p['N']:.4g}</td><td>{p['D']:.4g}</td><td>{p['predicted_loss']:.4f}</td>"
                        f"<td>[{p['interval'][0]:.4f}, {p['interval'][1]:.4f}]</td><td>{_num(actual)}</td><td>{err}</td></tr>")
        out.append(("forecasts", "Forecasts and their verification",
                    '<p class="note">Each forecast was recorded before its run trained (95% prediction interval: bootstrap '
                    'parameters plus residual scatter).</p>'
                    + _table(["<run", "C", "N", "D", "forecast", "interval", "actual", "error"], rows)))
    plans = [d for d in decisions if d["kind"] == "plan"]
    if plans:
        rows = []
        for d in plans:
            for kind, p in d["payload"].get("plans", {}).items():
                items = p if isinstance(p, list) else [p]
                for q in items:
                    n = q.get("N_opt", q.get("N"))
                    dd = q.get("D_opt", q.get("D"))
                    iv = q.get("intervals", {})
                    niv = iv.get("N_opt")
                    rows.append(f"<tr><td class='l'>{_e(d['subject'])}</td><td class='l'>{_e(kind)}</td>"
                                f"<td>{_num(q.get('compute_flops'))}</td><td>{_num(n)}"
                                + (f" [{niv[0]:.3g}, {niv[1]:.3g}]" if niv else "") + f"</td><td>{_num(dd)}</td>"
                                f"<td>{_num(q.get('loss'))}</td></tr>")
        out.append(("plans", "Plans", '<p class="note">Plans made with <code>scalinglab plan</code> (C = 6·N·D; '
                    'intervals from the law\'s bootstrap when it has one).</p>'
                    + _table(["<law", "<plan", "C", "N", "D", "loss"], rows)))
    task_fc = [d for d in decisions if d["kind"] == "task-forecast"]
    if task_fc:
        rows = []
        for d in task_fc:
            p = d["payload"]
            for r in p.get("backtest", {}).get("held_out", []):
                iv = r["intervals"].get("score")
                rows.append(f"<tr><td class='l'>{_e(d['subject'])}</td><td class='l'>backtest</td><td>{r['compute_flops']:.3g}</td>"
                            f"<td>{r['predicted_score']:.3f}" + (f" [{iv[0]:.3f}, {iv[1]:.3f}]" if iv else "")
                            + f"</td><td>{r['actual_score']:.3f}</td></tr>")
            if "forecast" in p:
                f = p["forecast"]
                iv = f["intervals"].get("score")
                rows.append(f"<tr><td class='l'>{_e(d['subject'])}</td><td class='l'>forecast</td><td>{f['compute_flops']:.3g}</td>"
                            f"<td>{f['score']:.3f}" + (f" [{iv[0]:.3f}, {iv[1]:.3f}]" if iv else "") + "</td><td>–</td></tr>")
        out.append(("task-forecasts", "Downstream forecasts and backtests",
                    '<p class="note">Two-step forecasts (task loss law, then a sigmoid to the score) with 95% bootstrap '
                    'intervals through both steps.</p>'
                    + _table(["<task / metric", "<kind", "C", "predicted", "actual"], rows)))
    tt = _testtime_section(store)
    if tt:
        out.append(tt)
    em = _emergence_section(store)
    if em:
        out.append(em)
    from .observe_figures import observe_section
    obs = observe_section(store)
    if obs:
        out.append(obs)
    gates = [d for d in decisions if d["kind"] == "gate"]
    if gates:
        rows = [f"<tr><td class='l'>{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(d['created_at']))}</td>"
                       f"<td class='l'>{_e(d['subject'])}</td><td class='l'><span class='tag'>{_e(d['decision'])}</span></td>"
                       f"<td class='l'>{_e('; '.join(d['payload'].get('reasons', [])) or 'all rules pass')}</td>"
                       f"<td class='l'>{_e((d['policy_hash'] or '')[:12])}</td></tr>" for d in gates]
        out.append(("gates", "Release-gate decisions",
                    _table(["<when (UTC)", "<subject", "<decision", "<reasons", "<policy sha256"], rows)))
    return out


def _testtime_section(store):
    import plotly.graph_objects as go

    from ..testtime.estimators import coverage_curve
    from ..testtime.samples import group
    groups = group(store.samples(), store.problem_counts())
    if not groups:
        return None
    fig = go.Figure()
    for (task, model), g in sorted(groups.items()):
        nmin = int(g["n"].min())
        ks = sorted({int(k) for k in np.unique(np.geomspace(1, nmin, 8).astype(int))})
        cov = coverage_curve(g["n"], g["c"], ks, n_bootstrap=200)
        fig.add_trace(go.Scatter(x=ks, y=cov["coverage"], mode="lines+markers", name=f"{task} / {model}",
                                 error_y=dict(type="data", symmetric=False,
                                              array=np.array(cov["upper"]) - np.array(cov["coverage"]),
                                              arrayminus=np.array(cov["coverage"]) - np.array(cov["lower"]))))
    fig.update_layout(xaxis_type="log", height=420, margin=dict(t=30), xaxis_title="samples per problem k",
                      yaxis_title="coverage (unbiased pass@k)")
    return ("testtime", "Test-time scaling: coverage vs samples",
            f'<p class="note">{len(groups)} (task, model) groups; unbiased pass@k (Chen et al. 2021) with 95% bootstrap '
            'intervals over problems.</p>' + _fig_html(fig, "fig-testtime"))


def _emergence_section(store):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
    scores = [s for s in store.scores() if s["c"]]
    tasks = sorted({s["task"] for s in scores})
    if not tasks:
        return None
    fig = make_subplots(rows=1, cols=2, subplot_titles=("exact match (discontinuous)", "mean log-likelihood of the answer (continuous)"))
    for task in tasks:
        for col, metric in ((1, "exact_match"), (2, "log_likelihood")):
            pts = sorted((s["c"], s["value"]) for s in scores if s["task"] == task and s["metric"] == metric)
            if pts:
                fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="markers",
                                         name=f"{task} {metric}", legendgroup=task), row=1, col=col)
    fig.update_xaxes(type="log", title_text="training compute C = 6·N_active·D [FLOPs]")
    fig.update_layout(height=420, margin=dict(t=40))
    return ("emergence", "Capabilities across scale",
            f'<p class="note">The same models under a discontinuous and a continuous metric ({len(tasks)} tasks, greedy '
            'decoding on held-out problems).</p>' + _fig_html(fig, "fig-emergence"))


def render_report(store: RunStore, *, title: str = "scalinglab report", live: bool = False) -> str:
    """The whole report as one HTML string (``live`` adds the dashboard's refresh script)."""
    from plotly.offline import get_plotlyjs
    sections = _sections(store)
    nav = " · ".join(f'<a href="#{sid}">{_e(t)}</a>' for sid, t, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{_e(t)}</h2>{h}</section>' for sid, t, h in sections)
    if not sections:
        body = "<p>The store is empty: import runs (<code>scalinglab import</code>) or train a ladder (<code>scalinglab ladder</code>).</p>"
    live_js = _LIVE_JS if live else ""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{_e(title)}</title>'
            f"<style>{_STYLE}</style><script>{get_plotlyjs()}</script><script>{_SORT_JS}</script></head><body>"
            f'<h1>{_e(title)}</h1><p class="sub">store: {_e(store.path)} · generated '
            f'{time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}</p><nav>{nav}</nav>{body}{live_js}</body></html>')


_LIVE_JS = """<script>
async function refreshRuns(){try{const r=await fetch('/api/runs-table');if(!r.ok)return;
const html=await r.text();const old=document.getElementById('runs-table');if(old){old.outerHTML=html}}catch(e){}}
setInterval(refreshRuns,2000);</script>"""


def write_report(store_path: str | Path, out: str | Path, *, static_dir: str | Path | None = None) -> dict:
    """Write the HTML report (and, with ``static_dir``, the matplotlib PNG/SVG versions of its figures)."""
    with RunStore(store_path, readonly=True) as store:
        page = render_report(store)
        static = _static_figures(store, static_dir) if static_dir else []
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return {"report": str(out), "bytes": len(page.encode()), "static_figures": static}


def _static_figures(store: RunStore, out) -> list[str]:
    from ..analysis import fit_runs, run_arrays
    from ..laws import FitError
    from .figures import fit_figures
    paths = []
    fits = store.fits("chinchilla")
    if fits:
        sel = fits[-1]["payload"].get("selection", {})
        runs = [r for r in store.runs() if sel.get("family") in (None, r.family)]
        from ..analysis import Selection
        selection = Selection(n_convention=sel.get("n_convention", "n_total"), family=sel.get("family"))
        try:
            rep = fit_runs(runs, ("chinchilla", "approach2"), selection=selection, n_bootstrap=200)
        except FitError:
            return paths
        _, N, D, C, L = run_arrays(runs, selection.n_convention, "6ND")
        paths += fit_figures(rep, N, D, C, L, out)
    return paths


__all__ = ["render_report", "runs_table", "write_report"]
