"""Intelligence per dollar, measured on the lab's own models: post-training quantization and
distillation studies over the checkpoints of a ladder."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .store import RunStore


def quantization_study(store: RunStore, checkpoint_dir: str | Path, *, bits=(8, 4), family: str | None = None,
                       eval_tokens: int | None = None) -> dict:
    """Validation-loss increase and memory saved by int8/int4 per-channel RTN, for every finished run
    with a checkpoint. The loss is measured on the run's own fixed held-out windows."""
    from .train.data import eval_windows, load_tokens
    from .train.quantize import quantize_model
    from .train.run import evaluate, load_model_state
    rows = []
    for run in store.runs(status="finished", family=family):
        folder = Path(checkpoint_dir) / run.run_id
        if not folder.exists() or not run.config.get("model"):
            continue
        model, cfg, _ = load_model_state(folder)
        data = load_tokens(cfg.corpus, cfg.tokenizer)
        windows = eval_windows(data.val, cfg.model.seq_len, eval_tokens or cfg.eval_tokens)
        base = evaluate(model, windows, cfg)
        row = {"run_id": run.run_id, "name": run.name, "family": run.family, "n_total": run.n_total,
               "n_active": run.n_active, "loss_fp32": base, "by_bits": {}}
        for b in bits:
            q, mem = quantize_model(model, b)
            ql = evaluate(q, windows, cfg)
            row["by_bits"][str(b)] = {"loss": ql, "loss_increase": ql - base, "relative_increase": ql / base - 1, **mem}
        rows.append(row)
    rows.sort(key=lambda r: r["n_total"])
    return {"method": "symmetric per-output-channel round-to-nearest; tied embedding/head kept in fp32",
            "runs": rows}


def distillation_study(store: RunStore, checkpoint_dir: str | Path, *, teacher: str, student: dict, flops: float,
                       alpha: float = 0.5, temperature: float = 2.0, log=print) -> dict:
    """Train one student from scratch and one distilled from ``teacher`` at equal training compute
    (C = 6 N_active D for the student), and compare both with every finished run of the store at the
    same compute budget (larger models trained from scratch).

    Args:
        student: ModelConfig fields of the student (vocab and sequence length follow the teacher).
    """
    from .train.config import ModelConfig
    from .train.run import load_model_state, train_run
    t_model, t_cfg, t_id = load_model_state(Path(checkpoint_dir) / teacher)
    mc = ModelConfig(**{**dataclasses.asdict(t_cfg.model), **student, "n_experts": student.get("n_experts", 0)})
    base = dataclasses.replace(t_cfg, model=mc, horizon="flops", horizon_value=flops)
    results = {}
    for label, cfg in (("scratch", base),
                       ("distilled", dataclasses.replace(base, distill_teacher=t_id, distill_alpha=alpha,
                                                         distill_temperature=temperature))):
        log(f"training the {label} student ({mc.d_model}d x {mc.n_layers}L) for {flops:.3g} FLOPs")
        res = train_run(cfg, checkpoint_dir=checkpoint_dir)
        results[label] = {"run_id": res.run_id, "final_loss": res.final_loss, "n_active": res.param_counts["active"],
                          "tokens": res.horizon["tokens"], "status": res.status}
    teacher_flops = 2.0 * t_model.param_counts()["active"] * results["distilled"]["tokens"]
    peers = [r for r in store.runs(status="finished") if r.flops_6nd and abs(r.flops_6nd / flops - 1) < 0.1
             and r.config.get("corpus") == t_cfg.corpus and not r.config.get("distill_teacher")]
    best_peer = min(peers, key=lambda r: r.final_loss) if peers else None
    out = {"teacher": {"run_id": t_id, "n_active": t_model.param_counts()["active"]},
           "student_training_flops": flops, "teacher_forward_flops": teacher_flops, "alpha": alpha,
           "temperature": temperature, **results,
           "gain": None if results["scratch"]["final_loss"] is None or results["distilled"]["final_loss"] is None
           else results["scratch"]["final_loss"] - results["distilled"]["final_loss"],
           "same_budget_from_scratch": [{"name": r.name, "n_active": r.n_active, "loss": r.final_loss} for r in
                                        sorted(peers, key=lambda r: r.n_active)]}
    if best_peer is not None and results["distilled"]["final_loss"] is not None:
        out["best_from_scratch_at_same_budget"] = {"name": best_peer.name, "n_active": best_peer.n_active,
                                                   "loss": best_peer.final_loss}
        out["distilled_beats_best_from_scratch"] = bool(results["distilled"]["final_loss"] < best_peer.final_loss)
    return out


def moe_multiplier_intervals(dense, moe, budgets, level: float = 0.95) -> list[dict]:
    """Compute multiplier of MoE over dense at each budget with bootstrap intervals: the dense compute
    reaching the MoE frontier's loss, divided by the budget (both laws over active parameters; the two
    laws' own bootstrap samples, paired by index; :mod:`scalinglab.comparison` resamples runs jointly)."""
    from .comparison import compute_multiplier, frontier_loss, frontier_params
    from .laws import percentile_interval

    budgets = np.asarray(budgets, float)
    point = compute_multiplier(dense.params_, moe.params_, budgets)
    moe_loss = frontier_loss(frontier_params(moe.params_), budgets)
    R = 0
    if dense.has_intervals and moe.has_intervals:
        R = min(len(dense.bootstrap_params_["E"]), len(moe.bootstrap_params_["E"]), 300)
    samples = compute_multiplier({k: v[:R, None] for k, v in dense.bootstrap_params_.items()},
                                 {k: v[:R, None] for k, v in moe.bootstrap_params_.items()}, budgets[None, :]) if R else None
    rows = []
    for j, C in enumerate(budgets):
        row = {"budget": float(C), "multiplier": float(point[j]), "moe_loss": float(moe_loss[j])}
        if R and np.isfinite(samples[:, j]).sum() > 10:
            row["interval"] = [float(x) for x in percentile_interval(samples[np.isfinite(samples[:, j]), j], level)]
        rows.append(row)
    return rows
