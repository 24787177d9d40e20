"""Figures of public model tables: a metric's trend over time with its piecewise fit, the observational
law's backtest (predicted vs actual with intervals), and benchmark saturation curves (matplotlib, PNG + SVG);
and the HTML report's section when the store holds model tables (plotly)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .figures import _out_dir, _plt, _save


def trend_figure(report: dict, date, value, out: str | Path) -> list[str]:
    """Every model's metric against its date, the frontier, the linear trend and the piecewise fit."""
    from ..observe.trends import transform_values
    plt = _plt()
    out = _out_dir(out)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    tr, chance = report["transform"], report["chance"]
    date, value = np.asarray(date, float), np.asarray(value, float)
    ok = np.isfinite(date) & np.isfinite(value) & ((value > 0) if tr == "log" else True)
    ax.scatter(date[ok], transform_values(value[ok], tr, chance), s=14, c="0.7", label="all models")
    pts = report["frontier"]["models"]
    t = np.array([p["date"] for p in pts])
    y = transform_values([p["value"] for p in pts], tr, chance)
    ax.scatter(t, y, s=22, c="C0", label=f"frontier ({report['frontier']['kind']}"
               + (f", k={report['frontier']['k']})" if report["frontier"]["k"] else ")"))
    f = report["fit"]
    tt = np.linspace(t.min(), t.max(), 100)
    ax.plot(tt, f["intercept"] + f["slope_per_year"] * (tt - f["date_center"]), "C0-", lw=1,
            label=f"trend: {f['slope_per_year']:+.3g}/yr [{f['slope_interval'][0]:+.3g}, {f['slope_interval'][1]:+.3g}]")
    sc = report.get("slope_change", {})
    if "change" in sc:
        X = np.column_stack([np.ones_like(t), t - t.mean(), np.maximum(t - sc["breakpoint"], 0)])
        beta = np.linalg.lstsq(X, y, rcond=None)[0]
        Xt = np.column_stack([np.ones_like(tt), tt - t.mean(), np.maximum(tt - sc["breakpoint"], 0)])
        ax.plot(tt, Xt @ beta, "C3--", lw=1, label=f"piecewise: change {sc['change']:+.3g}/yr, p = {sc['p_value']:.2g}")
        ax.axvline(sc["breakpoint"], c="C3", lw=0.5)
    ax.set_xlabel("release date [year]")
    ax.set_ylabel({"log": f"ln {report['metric']}", "logit": f"logit of {report['metric']} above chance {chance:g}",
                   "none": report["metric"]}[tr])
    ax.legend(fontsize=7)
    ax.set_title(sc.get("verdict", ""), fontsize=9)
    return _save(fig, out, f"trend_{report['metric']}")


def backtest_figure(result: dict, out: str | Path, stem: str = "observe_backtest") -> list[str]:
    """Predicted against actual target score of held-out models, with the prediction intervals."""
    plt = _plt()
    out = _out_dir(out)
    fig, ax = plt.subplots(figsize=(5, 5))
    p = result["predictions"]
    if p:
        a = np.array([r["actual"] for r in p])
        m = np.array([r["predicted"] for r in p])
        lo = np.array([r["interval"][0] for r in p])
        hi = np.array([r["interval"][1] for r in p])
        ax.errorbar(a, m, yerr=[m - lo, hi - m], fmt="o", ms=4, lw=0.8, capsize=2)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel(f"actual {result['target']}")
    ax.set_ylabel(f"predicted {result['target']}")
    s = result["summary"]
    ax.set_title(f"{result['kind']}: MAE {s['mean_abs_error']:.3f}, coverage {s['coverage']:.2f} "
                 f"(nominal {s['nominal']:.2f})" if s["n"] else result["kind"], fontsize=9)
    return _save(fig, out, stem)


def saturation_figure(result: dict, out: str | Path) -> list[str]:
    """Each benchmark's score against the models' common ability, with its fitted logistic and ceiling."""
    plt = _plt()
    out = _out_dir(out)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    theta = np.array(result["ability"]["values"])
    grid = np.linspace(theta.min() - 1, theta.max() + 1, 200)
    for i, b in enumerate(result["benchmarks"]):
        ax.scatter(theta, b["scores"], s=10, c=f"C{i}")
        y = b["chance"] + (b["ceiling"] - b["chance"]) / (1 + np.exp(-b["slope"] * (grid - b["location"])))
        ax.plot(grid, y, c=f"C{i}", lw=1, label=f"{b['benchmark']}: ceiling {b['ceiling']:.2f}, headroom {b['headroom']:.2f}")
    ax.set_xlabel("ability (one latent trait across benchmarks)")
    ax.set_ylabel("score")
    ax.legend(fontsize=7)
    return _save(fig, out, "saturation")


def observe_section(store) -> tuple[str, str, str] | None:
    """The report's section for the store's public model tables: the MMLU-or-first-benchmark and compute
    trends over time, and the table itself."""
    import html

    import plotly.graph_objects as go

    from ..observe.tables import ModelTable
    rows = store.public_models()
    if not rows:
        return None
    t = ModelTable.from_rows(rows)
    fig = go.Figure()
    for fam in sorted(set(t.family)):
        sel = t.family == fam
        metric = "mmlu" if "mmlu" in t.benchmarks else (t.benchmarks[0] if t.benchmarks else None)
        if metric is None:
            break
        fig.add_trace(go.Scatter(x=t.date[sel], y=t.score(metric)[sel], mode="markers", name=str(fam),
                                 text=list(t.model[sel]), hovertemplate="%{text}: %{y:.3f}<extra></extra>"))
    fig.update_layout(height=420, margin=dict(t=30), xaxis_title="release date [year]",
                      yaxis_title="mmlu" if "mmlu" in t.benchmarks else "score")
    e = lambda x: html.escape(str(x), quote=True)  # noqa: E731
    body = "".join(f"<tr><td class='l'>{e(m)}</td><td class='l'>{e(f)}</td><td>{d:.2f}</td><td>{c:.3g}</td>"
                   + "".join(f"<td>{'–' if np.isnan(s) else f'{s:.3f}'}</td>" for s in sc)
                   + f"<td class='l'>{e(r)}</td></tr>"
                   for m, f, d, c, sc, r in zip(t.model, t.family, t.date, t.C, t.scores, t.reference))
    head = "".join(f"<th>{e(h)}</th>" for h in ("model", "family", "date", "C", *t.benchmarks, "source"))
    return ("public-models", "Public models: scores over time",
            f'<p class="note">{len(t)} models from {len(set(t.family))} families (store collections: '
            f'{e(", ".join(sorted({r["collection"] for r in rows})))}); C = 6·N_active·D where the table gives no '
            'compute. Trends, observational laws and saturation: <code>scalinglab trends</code>, '
            '<code>scalinglab observe</code>.</p>'
            + fig.to_html(full_html=False, include_plotlyjs=False, div_id="fig-public-models")
            + f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
