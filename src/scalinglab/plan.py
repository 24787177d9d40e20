"""Turn fitted laws into plans: compute-optimal N and D, the data wall, target losses and
inference-aware allocation, with intervals whenever the law came from a bootstrap fit.

* compute-optimal: Hoffmann et al. 2022, https://arxiv.org/abs/2203.15556
* data-constrained: Muennighoff et al. 2023, https://arxiv.org/abs/2305.16264
* inference-aware: Sardana et al. 2024, "Beyond Chinchilla-Optimal", https://arxiv.org/abs/2401.00448
"""
from __future__ import annotations

import numpy as np

from .cost import HARDWARE, Hardware, hardware  # noqa: F401 - HARDWARE is public API here (scalinglab.HARDWARE)
from .laws import ChinchillaLaw, DataConstrainedLaw, percentile_interval


def gpu_hours_to_flops(gpu_hours: float, hw: str | Hardware = "H100", mfu: float = 0.4) -> float:
    """Training FLOPs delivered by ``gpu_hours`` at model-FLOPs utilisation ``mfu`` (bf16 peak)."""
    hw = hardware(hw) if isinstance(hw, str) else hw
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu}")
    return gpu_hours * 3600.0 * hw.peak_bf16 * mfu


def flops_to_gpu_hours(flops: float, hw: str | Hardware = "H100", mfu: float = 0.4) -> dict:
    """GPU-hours and dollars for ``flops`` of training at ``mfu``."""
    hw = hardware(hw) if isinstance(hw, str) else hw
    hours = flops / (hw.peak_bf16 * mfu * 3600.0)
    return {"hardware": hw.name, "mfu": mfu, "gpu_hours": hours, "usd": hours * hw.usd_per_hour}


def _interval(samples: np.ndarray, level: float) -> list[float]:
    lo, hi = percentile_interval(np.asarray(samples, float), level)
    return [float(lo), float(hi)]


def extrapolation(law, compute: float | None = None, n_params: float | None = None) -> dict:
    """What a prediction extrapolates from: the fitted data range and how far beyond it we are."""
    rng = getattr(law, "data_range_", {}) or {}
    out = {"fitted_on": rng, "from_data": bool(rng)}
    if compute is not None and rng.get("C_max"):
        out["compute_over_max_fitted"] = float(compute / rng["C_max"])
    if n_params is not None and rng.get("N_max"):
        out["params_over_max_fitted"] = float(n_params / rng["N_max"])
    return out


def plan_compute(law, compute: float, level: float = 0.95) -> dict:
    """Compute-optimal N, D, tokens per parameter and loss at ``compute`` FLOPs (``C = 6ND``)."""
    n, d = (float(x) for x in law.compute_optimal(compute))
    out = {"compute_flops": float(compute), "N_opt": n, "D_opt": d, "tokens_per_param": d / n,
           "loss": float(law.predict(n, d)) if hasattr(law, "predict") and not isinstance(law, DataConstrainedLaw) else None,
           "intervals": {}, "extrapolation": extrapolation(law, compute, n)}
    if isinstance(law, ChinchillaLaw) and law.has_intervals:
        ns, ds = law.compute_optimal_samples(compute)
        ns, ds = ns[:, 0], ds[:, 0]
        pb = law.bootstrap_params_
        losses = law._predict_from(pb, ns, ds)
        out["intervals"] = {"N_opt": _interval(ns, level), "D_opt": _interval(ds, level),
                            "tokens_per_param": _interval(ds / ns, level), "loss": _interval(losses, level)}
        lo, hi = law.predict_interval(n, d, kind="prediction", level=level)
        out["intervals"]["loss_prediction"] = [float(lo[0]), float(hi[0])]
    elif hasattr(law, "frontier_") and law.frontier_.samples:
        (nlo, nhi), (dlo, dhi) = law.frontier_.compute_optimal_interval(compute, level)
        out["intervals"] = {"N_opt": [float(nlo[0]), float(nhi[0])], "D_opt": [float(dlo[0]), float(dhi[0])]}
    return out


def plan_for_params(law: ChinchillaLaw, sizes, level: float = 0.95) -> list[dict]:
    """For each model size the compute-optimal tokens and compute under ``law`` (the layout of Hoffmann et
    al.'s Table 3; the numbers are this law's, not the paper's)."""
    rows = []
    for n in np.atleast_1d(np.asarray(sizes, float)):
        p = law.all_params()
        a = p["a"]
        c = 6.0 * np.power(n / p["G"], 1.0 / a)
        d = c / (6.0 * n)
        row = {"N": float(n), "D_opt": float(d), "tokens_per_param": float(d / n), "compute_flops": float(c),
               "loss": float(law.predict(n, d)), "intervals": {}}
        if law.has_intervals:
            pb = law.bootstrap_params_
            s = pb["alpha"] + pb["beta"]
            G = np.power(pb["alpha"] * pb["A"] / (pb["beta"] * pb["B"]), 1.0 / s)
            cb = 6.0 * np.power(n / G, s / pb["beta"])
            row["intervals"] = {"D_opt": _interval(cb / (6 * n), level), "compute_flops": _interval(cb, level)}
        rows.append(row)
    return rows


def plan_data_constrained(law: DataConstrainedLaw, compute: float, unique_tokens: float, level: float = 0.95) -> dict:
    """Best N, D at ``compute`` when only ``unique_tokens`` exist: epochs, effective data, loss lost."""
    from .laws import effective_data
    n, d = law.compute_optimal(compute, unique_tokens)
    p = law.params_
    loss = float(law.predict(n, d, unique_tokens))
    loss_fresh = float(ChinchillaLaw._predict_from(p, n, d))
    n_free, d_free = ChinchillaLaw._frontier(p, compute)
    out = {"compute_flops": float(compute), "unique_tokens": float(unique_tokens), "N": n, "D": d,
           "epochs": d / unique_tokens, "effective_data": float(effective_data(d, unique_tokens, p["R_D_star"])),
           "loss": loss, "loss_if_data_were_unique": loss_fresh, "loss_lost_to_repetition": loss - loss_fresh,
           "unconstrained": {"N_opt": float(n_free), "D_opt": float(d_free),
                             "loss": float(ChinchillaLaw._predict_from(p, n_free, d_free))},
           "intervals": {}, "extrapolation": extrapolation(law, compute, n)}
    if law.has_intervals:
        pb = law.bootstrap_params_
        out["intervals"]["loss"] = _interval(law._predict_from(pb, n, d, unique_tokens), level)
    out["plateau"] = data_plateau(law, unique_tokens, compute)
    return out


def data_plateau(law: DataConstrainedLaw, unique_tokens: float, compute: float, rel_gain: float = 1e-3) -> dict:
    """Where extra compute stops buying loss with ``unique_tokens`` of data: the smallest compute at
    which 10x more compute (optimally spent) lowers the loss by less than ``rel_gain`` (relative)."""
    exps = np.arange(-3.0, 9.01, 0.25)
    grid = compute * 10 ** exps
    losses = np.array([float(law.predict(*law.compute_optimal(c, unique_tokens), unique_tokens)) for c in grid])
    gain = losses[:-4] - losses[4:]                 # 4 steps of 0.25 decades = 10x compute
    flat = np.flatnonzero(gain < rel_gain * losses[:-4])
    c_flat = float(grid[flat[0]]) if flat.size else None
    return {"compute_flops": c_flat, "criterion": f"10x more compute lowers the loss by < {rel_gain:.1%}",
            "loss_at_plateau": None if c_flat is None else float(losses[flat[0]]),
            "loss_floor_searched": float(losses.min()),
            "beyond": bool(c_flat is not None and compute >= c_flat),
            "note": (f"beyond C ~ {c_flat:.3g} FLOPs the plan sits on a plateau: more compute buys almost no loss "
                     f"without more unique data" if c_flat is not None else
                     f"no plateau up to {grid[-1]:.3g} FLOPs")}


def _frontier_loss(law: ChinchillaLaw, params: dict, C: float) -> float:
    n, d = ChinchillaLaw._frontier(params, C)
    return float(ChinchillaLaw._predict_from(params, n, d))


def plan_target_loss(law: ChinchillaLaw, target: float, level: float = 0.95) -> dict:
    """Cheapest (N, D) reaching loss ``target``: the compute where the optimal frontier reaches it."""
    from scipy import optimize   # imported on use: the light commands never pay for scipy

    p = law.params_
    if target <= p["E"]:
        raise ValueError(f"target loss {target} is at or below the law's irreducible loss E={p['E']:.4g}: unreachable")

    def solve(params):
        if target <= params["E"]:
            return np.nan
        f = lambda logc: _frontier_loss(law, params, np.exp(logc)) - target  # noqa: E731
        lo, hi = np.log(1e6), np.log(1e40)
        if f(hi) > 0:
            return np.nan
        if f(lo) < 0:
            return float(np.exp(lo))
        return float(np.exp(optimize.brentq(f, lo, hi, xtol=1e-10)))

    c = solve(p)
    n, d = ChinchillaLaw._frontier(p, c)
    out = {"target_loss": target, "compute_flops": c, "N_opt": float(n), "D_opt": float(d),
           "tokens_per_param": float(d / n), "intervals": {}, "extrapolation": extrapolation(law, c, float(n))}
    if law.has_intervals:
        pb = law.bootstrap_params_
        cs = np.array([solve({k: float(v[r]) for k, v in pb.items()}) for r in range(len(pb["E"]))])
        reachable = np.isfinite(cs)
        out["bootstrap_reachable_fraction"] = float(reachable.mean())
        if reachable.sum() > 10:
            out["intervals"]["compute_flops"] = _interval(cs[reachable], level)
    return out


def plan_inference_aware(law: ChinchillaLaw, target: float, inference_tokens: float) -> dict:
    """Minimise lifetime FLOPs ``6ND + 2NT`` subject to ``L(N, D) = target`` (Sardana et al. 2024).

    With many inference tokens T the optimum moves to a smaller model trained on more tokens.
    """
    from scipy import optimize

    p = law.params_
    if target <= p["E"]:
        raise ValueError(f"target loss {target} is at or below the irreducible loss E={p['E']:.4g}")

    def tokens_for(n):
        gap = target - p["E"] - p["A"] * n ** (-p["alpha"])
        return (p["B"] / gap) ** (1.0 / p["beta"]) if gap > 0 else np.inf

    n_min = (p["A"] / (target - p["E"])) ** (1.0 / p["alpha"]) * (1 + 1e-9)
    total = lambda logn: 6 * np.exp(logn) * tokens_for(np.exp(logn)) + 2 * np.exp(logn) * inference_tokens  # noqa: E731
    res = optimize.minimize_scalar(lambda x: np.log(total(x)), bounds=(np.log(n_min) + 1e-9, np.log(n_min) + 12),
                                   method="bounded", options={"xatol": 1e-8})
    n = float(np.exp(res.x))
    d = float(tokens_for(n))
    chin = plan_target_loss(law, target)
    n_c, d_c = chin["N_opt"], chin["D_opt"]
    total_c = 6 * n_c * d_c + 2 * n_c * inference_tokens
    return {"target_loss": target, "inference_tokens": float(inference_tokens), "N": n, "D": d,
            "tokens_per_param": d / n, "training_flops": 6 * n * d, "inference_flops": 2 * n * inference_tokens,
            "total_flops": 6 * n * d + 2 * n * inference_tokens,
            "chinchilla_optimal": {"N": n_c, "D": d_c, "total_flops": total_c},
            "flops_saved_fraction": 1.0 - (6 * n * d + 2 * n * inference_tokens) / total_c,
            "extrapolation": extrapolation(law, 6 * n * d, n)}


def make_plans(law, source: str, *, compute: float | None = None, params=None, unique_tokens: float | None = None,
               target_loss: float | None = None, inference_tokens: float | None = None,
               total_per_active: float | None = None, hardware: str | Hardware = "H100", mfu: float = 0.4) -> dict:
    """Every plan the given quantities ask for under ``law`` (named ``source``), as ``scalinglab plan`` shows them.

    Args:
        compute: FLOPs: the compute-optimal plan with its cost on ``hardware`` at ``mfu`` (the data-constrained
            plan instead, with ``unique_tokens``).
        params: model sizes: compute-optimal tokens for each (a Chinchilla-form law).
        unique_tokens: unique tokens available, with ``compute``: the data-constrained plan; a law that is not
            data-constrained takes R_D*/R_N* from the muennighoff-2023 preset.
        target_loss: the cheapest N, D reaching it.
        inference_tokens: lifetime inference tokens: the inference-aware plan for ``target_loss`` (else for the
            loss of the compute-optimal model at ``compute``).
        total_per_active: MoE total/active parameter ratio: adds the memory of the compute-optimal and
            inference-aware plans (the law is over active parameters).

    Returns:
        ``{"law": source, "plans": {...}}`` with ``note`` where the data-constrained law was assembled.
    """
    out: dict = {"law": source, "plans": {}}
    plans = out["plans"]
    if params is not None:
        plans["by_params"] = plan_for_params(law, params)
    if unique_tokens is not None:
        dcl = law
        if not isinstance(law, DataConstrainedLaw):
            from .laws import preset
            p = dict(preset("muennighoff-2023").params_)
            p.update({k: law.params_[k] for k in ("E", "A", "B", "alpha", "beta")})
            dcl = DataConstrainedLaw.from_params(**p)
            out["note"] = "data-constrained plan: base law from " + source + ", R_D*/R_N* from muennighoff-2023"
        plans["data_constrained"] = plan_data_constrained(dcl, compute, unique_tokens)
    if target_loss is not None:
        plans["target_loss"] = plan_target_loss(law, target_loss)
    if inference_tokens is not None:
        target = target_loss if target_loss is not None else float(law.predict(*law.compute_optimal(compute)))
        plans["inference_aware"] = plan_inference_aware(law, target, inference_tokens)
    if compute is not None and unique_tokens is None:
        plans["compute_optimal"] = plan_compute(law, compute)
        plans["compute_optimal"]["cost"] = flops_to_gpu_hours(compute, hardware, mfu)
    if total_per_active:
        for key in ("compute_optimal", "inference_aware"):
            if key in plans:
                n_act = plans[key].get("N_opt", plans[key].get("N"))
                plans[key]["moe"] = {"N_active": n_act, "N_total": n_act * total_per_active,
                                     "weight_bytes_bf16": 2.0 * n_act * total_per_active,
                                     "note": "the law is over active parameters: compute follows N_active, memory N_total"}
    return out
