"""Static figures (matplotlib, PNG + SVG) of fits: loss vs compute with the fitted frontier,
IsoFLOP profiles with their minima, N_opt and D_opt vs C with intervals, and residuals.

Every axis names its convention (which parameters N counts, C = 6ND) and every figure its data.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

N_LABEL = {"n_total": "N (all parameters)", "n_nonembedding": "N (non-embedding parameters)",
           "n_active": "N (active parameters)"}
C_LABEL = {"6ND": "training compute C = 6·N·D [FLOPs]", "6ND+attn": "training compute C = 6·N·D + attention [FLOPs]"}


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _out_dir(out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _save(fig, out: Path, stem: str) -> list[str]:
    paths = []
    for ext in ("png", "svg"):
        p = out / f"{stem}.{ext}"
        fig.savefig(p, dpi=130, bbox_inches="tight")
        paths.append(str(p))
    _plt().close(fig)
    return paths


def fit_figures(report: dict, N, D, C, L, out: str | Path, *, title: str = "") -> list[str]:
    """Write the fit figures for a :func:`scalinglab.analysis.fit_runs` report; returns the paths."""
    plt = _plt()
    out = _out_dir(out)
    sel = report["selection"]
    nlab, clab = N_LABEL.get(sel["n_convention"], "N"), C_LABEL.get(sel["flop_convention"], "C")
    N, D, C, L = (np.asarray(x, float) for x in (N, D, C, L))
    paths: list[str] = []
    fits = report["fits"]
    chin = fits.get("chinchilla", {}).get("law")
    iso = fits.get("approach2", {}).get("law")
    note = f"{len(L)} runs; {sel['n_convention']}, C={sel['flop_convention']}" + (f"; {title}" if title else "")

    # loss vs compute with the fitted frontier
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    sc = ax.scatter(C, L, c=np.log10(N), cmap="viridis", s=18, zorder=3)
    fig.colorbar(sc, ax=ax, label=f"log10 {nlab}")
    if chin is not None:
        cgrid = np.logspace(np.log10(C.min()) - 0.3, np.log10(C.max()) + 1.0, 120)
        n_opt, d_opt = chin.compute_optimal(cgrid)
        ax.plot(cgrid, chin.predict(n_opt, d_opt), color="C3", lw=1.6, label="Chinchilla fit: compute-optimal frontier")
        if chin.has_intervals:
            pb = chin.bootstrap_params_
            nb, db = chin.compute_optimal_samples(cgrid)
            lb = chin._predict_from({k: v[:, None] for k, v in pb.items()}, nb, db)
            lo, hi = np.percentile(lb, [2.5, 97.5], axis=0)
            ax.fill_between(cgrid, lo, hi, color="C3", alpha=0.2, label="95% bootstrap interval")
        ax.axvline(C.max(), color="grey", ls=":", lw=1, label="largest fitted C (extrapolation beyond)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(clab)
    ax.set_ylabel("final loss [nats/token]")
    ax.set_title(f"Loss vs compute ({note})", fontsize=9)
    if chin is not None:
        ax.legend(fontsize=7)
    paths += _save(fig, out, "loss_vs_compute")

    from ..laws import group_budgets
    labels = group_budgets(C)
    if labels.max() >= 0 and len(L):
        # the runs themselves, grouped by budget as the fit groups them; a fitted parabola where Approach 2 kept it
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        cmap = plt.get_cmap("plasma")
        fitted = {} if iso is None else {round(np.log(b["C"]), 1): b for b in iso.budgets_}
        n_groups = labels.max() + 1
        for j in range(n_groups):
            g = labels == j
            col = cmap(j / max(1, n_groups - 1) * 0.85)
            cg = float(np.exp(np.log(C[g]).mean()))
            b = fitted.get(round(np.log(cg), 1))
            ax.scatter(N[g], L[g], color=col, s=16, zorder=3, label=f"C={cg:.2g}" + ("" if b else " (no fitted minimum)"))
            if b:
                x = np.linspace(np.log(N[g].min()) - 0.2, np.log(N[g].max()) + 0.2, 60)
                c0, c1, c2 = b["coef"]
                ax.plot(np.exp(x), c0 + c1 * x + c2 * x ** 2, color=col, lw=1.2)
                ax.scatter([b["N_opt"]], [b["loss_min"]], marker="*", s=90, color=col, edgecolor="k", zorder=4)
        ax.set_xscale("log")
        ax.set_xlabel(nlab)
        ax.set_ylabel("final loss [nats/token]")
        ax.set_title(f"IsoFLOP profiles, parabola in log N; ★ = minimum ({note})", fontsize=8)
        ax.legend(fontsize=7, ncol=2)
        paths += _save(fig, out, "isoflops")

    frontiers = {k: fits[k]["law"] for k in ("approach1", "approach2", "chinchilla") if "law" in fits.get(k, {})}
    if frontiers:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
        cgrid = np.logspace(np.log10(C.min()) - 0.3, np.log10(C.max()) + 1.0, 80)
        for i, (name, law) in enumerate(frontiers.items()):
            n_opt, d_opt = law.compute_optimal(cgrid)
            iv = law.intervals()
            for ax, y, key in ((axes[0], n_opt, "a"), (axes[1], d_opt, "b")):
                lab = f"{name}: {key}={law.all_params()[key]:.3f}"
                if key in iv:
                    lab += f" [{iv[key][0]:.3f}, {iv[key][1]:.3f}]"
                ax.plot(cgrid, y, color=f"C{i}", label=lab)
            bands = None
            if hasattr(law, "compute_optimal_interval") and law.has_intervals:
                bands = law.compute_optimal_interval(cgrid)
            elif hasattr(law, "frontier_") and law.frontier_.samples:
                bands = law.frontier_.compute_optimal_interval(cgrid)
            if bands is not None:
                (nlo, nhi), (dlo, dhi) = bands
                axes[0].fill_between(cgrid, nlo, nhi, color=f"C{i}", alpha=0.15)
                axes[1].fill_between(cgrid, dlo, dhi, color=f"C{i}", alpha=0.15)
            if name == "approach2":
                axes[0].scatter([b["C"] for b in law.budgets_], [b["N_opt"] for b in law.budgets_], color=f"C{i}", s=20)
                axes[1].scatter([b["C"] for b in law.budgets_], [b["D_opt"] for b in law.budgets_], color=f"C{i}", s=20)
        for ax, ylab in ((axes[0], f"N_opt: {nlab}"), (axes[1], "D_opt [tokens]")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel(clab)
            ax.set_ylabel(ylab)
            ax.legend(fontsize=7)
        fig.suptitle(f"Compute-optimal allocation, 95% bootstrap bands ({note})", fontsize=9)
        paths += _save(fig, out, "optimal_allocation")

    if chin is not None:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        res = np.log(L) - np.log(chin.predict(N, D))
        ax.scatter(C, res, s=14, c=np.log10(N), cmap="viridis")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel(clab)
        ax.set_ylabel("log(actual / predicted loss)")
        ax.set_title(f"Chinchilla-law residuals ({note})", fontsize=9)
        paths += _save(fig, out, "residuals")
    return paths


def coverage_figures(passk: dict, out: str | Path) -> list[str]:
    """Coverage (pass@k) vs k with the fitted coverage law, and coverage vs inference FLOPs."""
    plt = _plt()
    out = _out_dir(out)
    paths = []
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (name, g) in enumerate(passk["groups"].items()):
        k = np.array(g["k"])
        ax.plot(k, g["coverage"], "o", color=f"C{i % 10}", ms=4, label=f"{name} (n={g['n_problems']} problems)")
        if "lower" in g:
            ax.fill_between(k, g["lower"], g["upper"], color=f"C{i % 10}", alpha=0.15)
        law = g.get("coverage_law", {})
        if "params" in law:
            kk = np.geomspace(1, k.max() * 10, 100)
            ax.plot(kk, np.exp(law["params"]["a"] * kk ** law["params"]["b"]), "-", color=f"C{i % 10}", lw=1,
                    label=f"exp(a k^b): a={law['params']['a']:.3f}, b={law['params']['b']:.3f}")
    ax.set_xscale("log")
    ax.set_xlabel("samples per problem k")
    ax.set_ylabel("coverage (mean unbiased pass@k)")
    ax.set_title("Repeated sampling: coverage vs k, 95% bootstrap band over problems", fontsize=9)
    ax.legend(fontsize=6)
    paths += _save(fig, out, "coverage")
    with_flops = {n: g for n, g in passk["groups"].items() if "inference_flops" in g}
    if with_flops:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for i, (name, g) in enumerate(with_flops.items()):
            ax.plot(g["inference_flops"], g["coverage"], "o-", ms=3, color=f"C{i % 10}", label=name)
        ax.set_xscale("log")
        ax.set_xlabel("inference FLOPs per problem (2·N_active + attention per token, × tokens × k)")
        ax.set_ylabel("coverage (oracle verifier)")
        ax.set_title("Smaller model + more samples vs bigger model, at equal inference compute", fontsize=9)
        ax.legend(fontsize=6)
        paths += _save(fig, out, "coverage_vs_inference_flops")
    return paths


def verifier_figure(report: dict, out: str | Path) -> list[str]:
    """Accuracy vs attempts for several verifier false-positive rates (closed form and simulation)."""
    plt = _plt()
    out = _out_dir(out)
    name, g = next(iter(report["groups"].items()))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (fpr, r) in enumerate(g["by_fpr"].items()):
        ax.plot(g["k"], r["accuracy"], "-", color=f"C{i}", label=f"FPR {fpr}: closed form (ceiling {r['ceiling']:.3f})")
        ax.plot(g["k"], r["simulated_accuracy"], "x", color=f"C{i}", ms=4)
        ax.axhline(r["ceiling"], color=f"C{i}", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("attempts k (resample until the verifier accepts)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Imperfect verifier, TPR {g['tpr']} ({name}); x = simulation", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, out, "verifier_accuracy")


def emergence_figure(table: list[dict], task: str, out: str | Path) -> list[str]:
    """One task under exact match (discontinuous) and log-likelihood / Brier (continuous), against
    training compute and against validation loss."""
    plt = _plt()
    out = _out_dir(out)
    C = np.array([r["c"] for r in table])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    axes[0].plot(C, [r["exact_match"] for r in table], "o", color="C3")
    axes[0].set_ylabel("exact match (discontinuous)")
    # imported scores may carry only task_loss, which is the negative mean log-likelihood by convention
    axes[1].plot(C, [r.get("log_likelihood", -r["task_loss"]) for r in table], "o", color="C0")
    axes[1].set_ylabel("mean log-likelihood of the answer (continuous)")
    shown = list(axes[:2])
    if any(r.get(k) is not None for r in table for k in ("brier", "token_edit_distance")):   # lab evaluations have them
        axes[2].plot(C, [r.get("brier", np.nan) for r in table], "o", color="C2", label="Brier")
        ax2 = axes[2].twinx()
        ax2.plot(C, [r.get("token_edit_distance", np.nan) for r in table], "s", color="C4", label="token edit distance")
        axes[2].set_ylabel("Brier score (continuous, lower is better)")
        ax2.set_ylabel("token edit distance")
        shown.append(axes[2])
    else:
        axes[2].set_visible(False)
    for ax in shown:
        ax.set_xscale("log")
        ax.set_xlabel("training compute C = 6·N_active·D [FLOPs]")
    fig.suptitle(f"{task}: the same models, 'emergent' under exact match, smooth under continuous metrics "
                 f"({len(table)} models, greedy decoding, held-out problems)", fontsize=9)
    fig.tight_layout()
    return _save(fig, out, f"emergence_{task.replace(':', '_')}")


def backtest_figure(result: dict, out: str | Path) -> list[str]:
    """Rolling-origin backtest: |relative error| against extrapolation factor (one point per forecast,
    filled inside its prediction interval) and interval coverage per factor bin with the nominal level."""
    plt = _plt()
    out = _out_dir(out)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.5, 4.2))
    for i, (name, r) in enumerate(result["results"].items()):
        rows = [p for p in r["predictions"] if p["extrapolation_factor"] is not None]
        if not rows:
            continue
        f = np.array([p["extrapolation_factor"] for p in rows])
        e = np.abs([p["relative_error"] for p in rows])
        inside = np.array([bool(p["inside"]) for p in rows])
        col = f"C{i}"
        ax1.scatter(f[inside], e[inside], s=16, color=col, label=f"{name} (inside interval)")
        ax1.scatter(f[~inside], e[~inside], s=22, facecolors="none", edgecolors=col, label=f"{name} (outside)")
        bins = [b for b in r["summary"]["by_factor"] if b["coverage"] is not None]
        if bins:
            x = np.array([np.sqrt(b["factor_min"] * (b["factor_max"] or b["factor_min"] * 3)) for b in bins])
            ax2.errorbar(x * (1 + 0.04 * i), [b["coverage"] for b in bins], yerr=[b["coverage_se"] for b in bins],
                         fmt="o-", color=col, capsize=3, label=name)
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    ax1.set_xlabel("extrapolation factor beyond the fitted runs (max over N, D, C)")
    ax1.set_ylabel("|predicted / actual − 1|")
    ax1.legend(fontsize=7)
    ax2.axhline(result["level"], color="k", ls="--", lw=1, label=f"nominal {result['level']:.0%}")
    ax2.set_xscale("log")
    ax2.set_ylim(0, 1.05)
    ax2.set_xlabel("extrapolation factor (bin centre)")
    ax2.set_ylabel("prediction-interval coverage (± binomial se)")
    ax2.legend(fontsize=7)
    fig.suptitle(f"rolling-origin backtest: {result['n_runs']} runs, {len(result['cuts'])} cuts along {result['axis']}",
                 fontsize=9)
    return _save(fig, out, "backtest")


def compare_figure(result: dict, out: str | Path) -> list[str]:
    """Recipe comparison (:func:`scalinglab.comparison.compare_recipes`): every recipe's runs and fitted frontier
    ``L*(C)``, and each candidate's compute-equivalent multiplier against compute with its bootstrap band."""
    plt = _plt()
    out = _out_dir(out)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10.5, 4.2))
    C = np.geomspace(min(result["budgets"]) / 1.5, max(result["budgets"]) * 1.5, 60)
    for i, (name, r) in enumerate(result["recipes"].items()):
        col = f"C{i}"
        ax1.scatter(r["points"]["C"], r["points"]["loss"], s=12, color=col, alpha=0.6)
        if "frontier" in r:
            f = r["frontier"]
            ax1.plot(C, f["E"] + f["k"] * C ** -f["a"], color=col,
                     label=f"{name}: L*(C) = {f['E']:.3g} + {f['k']:.3g} C^-{f['a']:.3f}")
        else:
            ax1.plot([], [], color=col, label=f"{name}: no fit")
    ax1.set_xscale("log")
    ax1.set_xlabel("training compute C = 6·N_active·D [FLOPs]")
    ax1.set_ylabel(f"validation loss [{result['loss_units']}]")
    ax1.legend(fontsize=7)
    ax1.set_title(f"runs and compute-optimal frontiers (baseline {result['baseline']})", fontsize=9)
    for i, (name, c) in enumerate(result["candidates"].items(), start=1):
        if "budgets" not in c:
            continue
        col = f"C{i}"
        label = f"{name}: {c['verdict']} ({c['verdict_from']})"
        if "curve" in c:
            cv = c["curve"]
            ax2.plot(cv["C"], cv["multiplier"], color=col, label=label)
            ax2.fill_between(cv["C"], cv["lower"], cv["upper"], color=col, alpha=0.2)
            label = None
        rows = [b for b in c["budgets"] if b["interval"] and np.isfinite(b["multiplier"])]
        ax2.errorbar([b["budget"] for b in rows], [b["multiplier"] for b in rows],
                     yerr=[[b["multiplier"] - b["interval"][0] for b in rows], [b["interval"][1] - b["multiplier"] for b in rows]],
                     fmt="o", color=col, capsize=3, label=label)
    ax2.axhline(1.0, color="k", ls="--", lw=1)
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("compute C [FLOPs]")
    ax2.set_ylabel(f"compute-equivalent multiplier over {result['baseline']}")
    ax2.legend(fontsize=7)
    ax2.set_title(f"multiplier ({result['level']:.0%} bootstrap band, runs resampled jointly)", fontsize=9)
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter
    for axis in (ax1.xaxis, ax2.xaxis, ax2.yaxis):
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0) if axis is not ax2.yaxis else (1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 7.0)))
        axis.set_minor_formatter(NullFormatter())
    ax2.yaxis.set_major_formatter(ScalarFormatter())
    return _save(fig, out, "compare")


def matched_compute_figure(result: dict, out: str | Path) -> list[str]:
    """Accuracy against inference FLOPs per query, one panel per difficulty level (and all problems): each
    model and format (colour) with each way to spend samples (line style), k marked along each line."""
    plt = _plt()
    out = _out_dir(out)
    n_levels = len(result["levels"])
    fig, axes = plt.subplots(1, n_levels + 1, figsize=(3.6 * (n_levels + 1), 3.6), sharey=True)
    styles = {"majority": "-", "verifier": "--", "exact": ":"}
    colours = {}
    sizes = result.get("n_active") or {}
    for c in result["curves"]:
        key = (c["model"], c["format"])
        colours.setdefault(key, f"C{len(colours)}")
        role = "small" if c["model"] == result["small"] else "large"
        n = f", N={sizes[c['model']]:,.0f}" if sizes.get(c["model"]) else ""
        for i, ax in enumerate(axes):
            acc = c["accuracy"] if i == 0 else c["by_level"][i - 1]
            label = f"{role} ({c['model'][:12]}{n}) {c['format']}, {c['strategy']}" if i == 0 else None
            ax.plot(c["flops"], acc, styles[c["strategy"]], marker=".", ms=3, color=colours[key], label=label, lw=1)
    for i, ax in enumerate(axes):
        ax.set_xscale("log")
        ax.set_xlabel("inference FLOPs per query")
        if i == 0:
            ax.set_title(f"{result['task']}: all {result['problems']} problems", fontsize=8)
        else:
            lv = result["levels"][i - 1]
            lo, hi = lv["small_success_range"]
            ax.set_title(f"level {lv['level']} ({lv['problems']} problems; small model {lo:.0%}-{hi:.0%})", fontsize=8)
    axes[0].set_ylabel("accuracy")
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=6, loc="upper center", ncol=4, bbox_to_anchor=(0.5, -0.06))
    fig.suptitle(f"Thinking longer (scratchpad) vs sampling more (k = {result['k'][0]}..{result['k'][-1]}) vs a larger model; "
                 f"verifier TPR {result['tpr']}, FPR {result['fpr']}", fontsize=8)
    return _save(fig, out, "matched_compute")
