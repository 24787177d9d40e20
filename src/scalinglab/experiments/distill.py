"""The distillation study: a small student trained from scratch and one distilled from a larger lab model,
at equal training compute, compared with every model the store trained from scratch at that budget."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..store import RunStore


def distillation_study(store: RunStore, checkpoint_dir: str | Path, *, teacher: str, student: dict, flops: float,
                       alpha: float = 0.5, temperature: float = 2.0, log=print) -> dict:
    """Train one student from scratch and one distilled from ``teacher`` at equal training compute
    (C = 6 N_active D for the student), and compare both with every finished run of the store at the
    same compute budget (larger models trained from scratch).

    Args:
        student: ModelConfig fields of the student (vocab and sequence length follow the teacher).
    """
    from ..train.config import ModelConfig
    from ..train.run import load_model_state, train_run
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
