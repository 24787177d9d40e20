"""Ladders: an IsoFLOP grid of small transformers (dense, MoE or both), trained through an executor,
recorded in the store, fitted (Approaches 2 and 3 with bootstrap intervals) and checked by
forecasting a larger verification run before training it.

Conventions: budgets are ``C = 6 * N_active * D`` FLOPs (N_active = all parameters for a dense model,
tied embeddings included: the tied head is a real matmul); ``D = C / (6 N_active)``.
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from ..analysis import Selection, fit_runs, report_json, run_arrays, save_fits
from ..laws import FitError
from ..store import Run, RunStore
from .config import ModelConfig, RunConfig
from .executors import Executor, InlineExecutor, Task
from .model import GPT
from .run import run_id_of, to_store_record


@dataclasses.dataclass(frozen=True, kw_only=True)
class LadderSpec:
    """What to train: compute budgets, sizes per budget, families, and the run template."""

    budgets: tuple[float, ...] = (2e11, 6e11, 1.8e12)
    sizes_per_budget: int = 5
    families: tuple[str, ...] = ("dense",)
    tokens_per_param_guess: float = 20.0   # centre of the size grid: N ~ sqrt(C / (6 * guess))
    size_span: float = 3.5                 # the grid spans guess / span .. guess * span in N
    verify_multiplier: float = 4.0         # verification run at this x the largest budget
    n_experts: int = 4
    top_k: int = 2
    seq_len: int = 128
    batch_size: int = 16
    lr: float = 3e-3
    corpus: str = "stdlib"
    tokenizer: str = "byte"
    device: str = "cpu"
    dtype: str = "fp32"
    compile: bool = False
    seed: int = 0
    eval_tokens: int = 65536
    n_evals: int = 8
    n_bootstrap: int = 1000

    def __post_init__(self):
        if not self.budgets or any(b <= 0 for b in self.budgets):
            raise ValueError(f"budgets must be positive FLOP counts, got {self.budgets}")
        if self.sizes_per_budget < 3:
            raise ValueError("an IsoFLOP profile needs at least 3 sizes per budget")
        bad = set(self.families) - {"dense", "moe"}
        if bad:
            raise ValueError(f"unknown families {sorted(bad)}; choose dense and/or moe")


PRESETS = {
    # a tiny ladder to check an install (and for CI): well under a minute on 2 cores
    "smoke": LadderSpec(budgets=(1.5e10, 4.5e10), sizes_per_budget=3, eval_tokens=8192, n_evals=4, n_bootstrap=200,
                        batch_size=8, seq_len=64),
    # the default: ~10-15 minutes on 2 CPU cores
    "quick": LadderSpec(),
    "standard": LadderSpec(budgets=(3e11, 1e12, 3e12, 1e13), sizes_per_budget=6),
    "large": LadderSpec(budgets=(1e13, 3e13, 1e14, 3e14, 1e15), sizes_per_budget=7, batch_size=64, seq_len=256),
}


def shape_family(spec: LadderSpec, vocab_size: int, family: str) -> list[ModelConfig]:
    """Candidate shapes, smallest first: d_model a multiple of 16, head_dim 16, depth ~ d_model / 32."""
    shapes = []
    for d in range(16, 2049, 16):
        layers = max(1, min(48, int(math.floor(d / 32 + 0.5))))
        kw = dict(vocab_size=vocab_size, d_model=d, n_layers=layers, n_heads=d // 16, seq_len=spec.seq_len)
        if family == "moe":
            kw.update(n_experts=spec.n_experts, top_k=spec.top_k, iso_active=True)
        shapes.append(ModelConfig(**kw))
    return shapes


def active_params(cfg: ModelConfig) -> int:
    """Active parameters of a shape, counted on the meta device (no memory, no initialisation)."""
    import torch
    with torch.device("meta"):
        return GPT(cfg).param_counts()["active"]


def candidate_shapes(spec: LadderSpec, vocab_size: int, family: str) -> tuple[list[ModelConfig], list[int]]:
    """The shapes a ladder may use (d_model <= 1024) and their active parameter counts."""
    shapes = [s for s in shape_family(spec, vocab_size, family) if s.d_model <= 1024]
    return shapes, [active_params(s) for s in shapes]


@dataclasses.dataclass
class LadderEntry:
    name: str
    family: str
    budget: float
    config: RunConfig
    role: str = "grid"     # grid | verify

    @property
    def run_id(self) -> str:
        return run_id_of(self.config)


def _run_config(spec: LadderSpec, model: ModelConfig, flops: float) -> RunConfig:
    return RunConfig(model=model, corpus=spec.corpus, tokenizer=spec.tokenizer, horizon="flops", horizon_value=flops,
                     batch_size=spec.batch_size, lr=spec.lr, seed=spec.seed, n_evals=spec.n_evals,
                     eval_tokens=spec.eval_tokens, device=spec.device, dtype=spec.dtype, compile=spec.compile)


def nearest_shape(counts: list[int], target: float, exclude=()) -> int:
    """Index of the count nearest ``target`` in log space, skipping indices in ``exclude``."""
    order = np.argsort([abs(math.log(c / target)) for c in counts])
    return next(int(j) for j in order if int(j) not in exclude)


def design_ladder(spec: LadderSpec, vocab_size: int = 256) -> list[LadderEntry]:
    """The IsoFLOP grid: for each family and budget, ``sizes_per_budget`` distinct shapes log-spaced
    around the guessed optimum; tokens follow from the budget."""
    entries = []
    for family in spec.families:
        shapes, counts = candidate_shapes(spec, vocab_size, family)
        for budget in spec.budgets:
            guess = math.sqrt(budget / (6.0 * spec.tokens_per_param_guess))
            targets = np.geomspace(guess / spec.size_span, guess * spec.size_span, spec.sizes_per_budget)
            picked: list[int] = []
            for t in targets:
                picked.append(nearest_shape(counts, t, exclude=picked))
            for i in sorted(set(picked)):
                name = f"{family}-C{budget:.2g}-d{shapes[i].d_model}L{shapes[i].n_layers}"
                entries.append(LadderEntry(name, family, budget, _run_config(spec, shapes[i], budget)))
    return entries


class _Progress:
    """Rich progress: one bar for the ladder (FLOPs done / total, ETA) and one for the current run."""

    def __init__(self, enabled: bool, total_flops: float, log: Callable[[str], None] = print):
        self.enabled = enabled
        self.log = log
        if not enabled:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        self.p = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
                          TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"), transient=False)
        self.overall = self.p.add_task("ladder", total=total_flops, info="")
        self.runs: dict = {}
        self.done_flops = 0.0
        self.p.start()

    def start(self, key: str, name: str, steps: int, flops: float):
        if self.enabled:
            self.runs[key] = (self.p.add_task(f"  {name}", total=steps, info=""), flops, steps)

    def update(self, key: str, info: dict):
        if not self.enabled or key not in self.runs:
            return
        tid, flops, steps = self.runs[key]
        self.p.update(tid, completed=info["step"], info=f"loss {info['loss']:.3f}  {info['tokens_per_s']:,.0f} tok/s  "
                                                         f"{info['flops_per_s'] / 1e9:.1f} GFLOP/s")
        self.p.update(self.overall, completed=self.done_flops + flops * info["step"] / steps)

    def finish(self, key: str):
        if self.enabled and key in self.runs:
            tid, flops, steps = self.runs.pop(key)
            self.done_flops += flops
            self.p.update(tid, completed=steps, visible=False)
            self.p.update(self.overall, completed=self.done_flops)

    def note(self, text: str):
        if self.enabled:
            self.p.console.print(text)
        else:
            import re
            self.log(re.sub(r"\[/?[a-z]+\]", "", text))

    def stop(self):
        if self.enabled:
            self.p.stop()


def train_entries(entries: list[LadderEntry], store: RunStore, executor: Executor, checkpoint_dir: str | Path,
                  *, show_progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Train the entries not yet finished (or diverged) in the store; the driver writes every result."""
    todo, skipped = [], 0
    for e in entries:
        found = store.run(e.run_id)
        if found is not None and found.status in ("finished", "diverged"):
            skipped += 1
            continue
        todo.append(e)
    if skipped:
        log(f"{skipped} run(s) already in the store: skipped")
    by_key = {e.run_id: e for e in todo}
    for e in todo:
        placeholder = Run(run_id=e.run_id, name=e.name, source="ladder", status="running", family=e.family,
                          budget=e.budget, config=e.config.to_dict(), extra={"role": e.role})
        store.upsert_run(placeholder)
    prog = _Progress(show_progress, sum(e.config.horizon_value for e in todo), log)
    outcome = {"trained": 0, "diverged": 0, "failed": 0, "skipped": skipped}

    last_write: dict = {}

    def on_progress(key, info):
        if prog.enabled and key not in prog.runs:
            e = by_key[key]
            prog.start(key, e.name, info["steps"], e.config.horizon_value)
        prog.update(key, info)
        now = time.time()
        if now - last_write.get(key, 0.0) > 2.0:     # a heartbeat for live views (the dashboard)
            store.set_progress(key, dict(info, updated=now))
            last_write[key] = now

    def on_result(task, result, error):
        e = by_key[task.key]
        prog.finish(task.key)
        if result is None:
            run = Run(run_id=e.run_id, name=e.name, source="ladder", status="failed", family=e.family, budget=e.budget,
                      config=e.config.to_dict(), extra={"error": error, "role": e.role})
            store.upsert_run(run)
            outcome["failed"] += 1
            prog.note(f"[red]failed[/] {e.name}: {error}")
            return
        run, curve = to_store_record(e.config, result, name=e.name, family=e.family, budget=e.budget)
        run.extra["role"] = e.role
        store.upsert_run(run)
        store.add_curve(run.run_id, curve)
        if result.status == "diverged":
            outcome["diverged"] += 1
            prog.note(f"[yellow]diverged[/] {e.name}: {result.reason} (kept in the store, excluded from fits)")
        else:
            outcome["trained"] += 1
            prog.note(f"done {e.name}: N={run.n_total:,} D={run.tokens:,.0f} loss {run.final_loss:.4f} "
                      f"({result.seconds:.1f}s, {result.achieved_flops_per_s / 1e9:.1f} GFLOP/s)")

    tasks = [Task(key=e.run_id, config=e.config.to_dict(), checkpoint_dir=str(checkpoint_dir)) for e in todo]
    try:
        executor.run(tasks, on_progress, on_result)
    finally:
        prog.stop()
    return outcome


def run_ladder(spec: LadderSpec, store: RunStore, *, executor: Executor | None = None,
               checkpoint_dir: str | Path = "scalinglab-out/checkpoints", out: str | Path = "scalinglab-out/ladder",
               verify: bool = True, show_progress: bool = True, figures: bool = True,
               log: Callable[[str], None] = print) -> dict:
    """Design, train, fit and verify a ladder; returns a JSON-ready report (see the README for keys)."""
    from .data import load_tokens
    t0 = time.perf_counter()
    data = load_tokens(spec.corpus, spec.tokenizer)
    entries = design_ladder(spec, data.vocab_size)
    executor = executor or InlineExecutor()
    log(f"ladder: {len(entries)} runs over budgets {', '.join(f'{b:.2g}' for b in spec.budgets)} FLOPs "
        f"(C = 6 N_active D), families {', '.join(spec.families)}; corpus {data.corpus} ({data.corpus_hash}, "
        f"{data.tokenizer}, {data.train.size:,} train tokens)")
    outcome = train_entries(entries, store, executor, checkpoint_dir, show_progress=show_progress, log=log)
    report = {"spec": dataclasses.asdict(spec), "data": data.describe(), "n_runs": len(entries), "training": outcome,
              "families": {}}
    for family in spec.families:
        report["families"][family] = _fit_and_verify(spec, family, entries, store, executor, checkpoint_dir, out, verify,
                                                     show_progress, figures, log, data.vocab_size)
    if len(spec.families) == 2 and all("chinchilla" in report["families"][f].get("fits", {}) and
                                       "error" not in report["families"][f]["fits"]["chinchilla"] for f in spec.families):
        report["moe_vs_dense"] = _moe_multiplier(store, spec, report)
    report["seconds"] = time.perf_counter() - t0
    return report


def _fit_and_verify(spec, family, entries, store, executor, checkpoint_dir, out, verify, show_progress, figures, log,
                    vocab_size):
    ids = {e.run_id for e in entries if e.family == family}
    runs = [r for r in store.runs(family=family) if r.run_id in ids]
    selection = Selection(n_convention="n_active", flop_convention="6ND", family=family)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = fit_runs(runs, ("chinchilla", "approach2"), selection=selection, n_bootstrap=spec.n_bootstrap,
                           seed=spec.seed)
        except FitError as e:
            return {"error": str(e), "diverged": [r.name for r in runs if r.status == "diverged"]}
    save_fits(store, fit, source=f"ladder:{family}")
    result = report_json(fit)
    result["warnings"] = [str(w.message) for w in caught]
    result["diverged"] = [r.name for r in runs if r.status == "diverged"]
    for w in result["warnings"]:
        log(f"warning: {w}")
    out_dir = Path(out) / family
    if figures:
        from ..report.figures import fit_figures
        _, N, D, C, L = run_arrays(runs, "n_active", "6ND")
        result["figures"] = fit_figures(fit, N, D, C, L, out_dir, title=f"{family} ladder, {spec.corpus} bytes")
    chin = fit["fits"].get("chinchilla", {}).get("law")
    if verify and chin is not None:
        result["verification"] = _verify(spec, family, chin, store, executor, checkpoint_dir, show_progress, log,
                                         out_dir if figures else None, vocab_size)
    elif verify:
        result["verification"] = {"error": "no Chinchilla fit to forecast from: " + fit["fits"]["chinchilla"].get("error", "")}
    return result


def _verify(spec, family, law, store, executor, checkpoint_dir, show_progress, log, out_dir, vocab_size):
    """Forecast the loss of a run at ``verify_multiplier`` x the largest budget, then train it."""
    C = spec.verify_multiplier * max(spec.budgets)
    n_opt, _ = law.compute_optimal(C)
    shapes, counts = candidate_shapes(spec, vocab_size, family)
    i = nearest_shape(counts, float(n_opt))
    model = shapes[i]
    cfg = _run_config(spec, model, C)
    n = float(counts[i])
    steps = math.ceil(C / (6.0 * n) / cfg.tokens_per_step)
    D = steps * cfg.tokens_per_step
    pred = float(law.predict(n, D))
    lo, hi = (x[0] for x in law.predict_interval([n], [D], kind="prediction"))
    forecast = {"compute_flops": C, "N": n, "D": float(D), "N_opt_fit": float(n_opt), "predicted_loss": pred,
                "interval": [float(lo), float(hi)],
                "interval_kind": "95% prediction (bootstrap parameters + residuals + rolling-origin extrapolation error)",
                "extrapolation": {"compute_over_max_fitted": C / law.data_range_["C_max"],
                                  "factor": float(10 ** law.extrapolation_distance([n], [D])[0]),
                                  "fitted_on": law.data_range_,
                                  "model_error": {k: v for k, v in (law.extrapolation_ or {}).items()
                                                  if k not in ("predictions", "skipped")}}}
    log(f"forecast before training: {family} d{model.d_model}L{model.n_layers} (N={n:,.0f}, D={D:,.0f}, "
        f"C={C:.3g}, {forecast['extrapolation']['compute_over_max_fitted']:.1f}x the largest fitted C): "
        f"loss {pred:.4f} [{lo:.4f}, {hi:.4f}]")
    entry = LadderEntry(f"{family}-verify-C{C:.2g}-d{model.d_model}L{model.n_layers}", family, C, cfg, role="verify")
    store.add_decision("forecast", entry.run_id, "forecast", forecast)
    train_entries([entry], store, executor, checkpoint_dir, show_progress=show_progress, log=log)
    run = store.run(entry.run_id)
    forecast["run_id"] = entry.run_id
    forecast["status"] = run.status
    if run.status == "finished":
        forecast["actual_loss"] = run.final_loss
        forecast["relative_error"] = pred / run.final_loss - 1.0
        forecast["inside_interval"] = bool(lo <= run.final_loss <= hi)
        log(f"verification: actual {run.final_loss:.4f} vs forecast {pred:.4f} "
            f"({forecast['relative_error']:+.2%}); inside the interval: {forecast['inside_interval']}")
        if out_dir is not None:
            forecast["figure"] = _verification_figure(store, run, forecast, out_dir)
    return forecast


def _verification_figure(store, run, forecast, out_dir) -> list[str]:
    from ..report.figures import _plt, _save
    plt = _plt()
    curve = store.curve(run.run_id)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot([p["flops"] for p in curve], [p["loss"] for p in curve], "o-", ms=3, label=f"{run.name} (validation)")
    ax.errorbar([forecast["compute_flops"]], [forecast["predicted_loss"]],
                yerr=[[forecast["predicted_loss"] - forecast["interval"][0]], [forecast["interval"][1] - forecast["predicted_loss"]]],
                fmt="s", color="C3", capsize=4, label="forecast before training (95% prediction interval)")
    ax.set_xscale("log")
    ax.set_xlabel("training compute C = 6·N_active·D [FLOPs]")
    ax.set_ylabel("validation loss [nats/byte]")
    ax.set_title(f"Verification at {forecast['extrapolation']['compute_over_max_fitted']:.1f}x the largest fitted budget: "
                 f"error {forecast['relative_error']:+.2%}", fontsize=9)
    ax.legend(fontsize=7)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return _save(fig, Path(out_dir), "verification")


def _moe_multiplier(store, spec, report) -> dict:
    """Compute multiplier of MoE over dense at equal active compute, with bootstrap intervals."""
    from ..economics import moe_multiplier_intervals
    from ..laws import law_from_dict
    laws = {f: law_from_dict(store.fit(report["families"][f]["fits"]["chinchilla"]["fit_id"])["payload"])
            for f in ("dense", "moe")}
    return {"convention": "N = active parameters; C = 6 N_active D; multiplier = dense compute reaching the MoE "
                          "frontier loss / MoE compute",
            "budgets": moe_multiplier_intervals(laws["dense"], laws["moe"], spec.budgets)}
