"""One training run: horizon resolved up front, warmup + cosine/WSD schedule, AdamW or Muon,
log-spaced evaluation on fixed held-out tokens, divergence detection, exact checkpoint/resume."""
from __future__ import annotations

import dataclasses
import math
import signal
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..store import Run, config_hash
from .checkpoint import is_url, join, load_latest, save_checkpoint
from .config import RunConfig, branch_step_of, resolve_horizon, warmup_steps_of
from .data import TokenData, eval_windows, get_batch, load_tokens
from .model import GPT


@dataclasses.dataclass
class RunResult:
    run_id: str
    status: str                    # finished | diverged | interrupted
    final_loss: float | None
    curve: list[dict]
    param_counts: dict
    flops_per_token: dict
    horizon: dict
    seconds: float
    tokens_per_s: float
    achieved_flops_per_s: float
    data: dict
    resumed_from_step: int = 0
    expert_load: list | None = None
    reason: str | None = None
    checkpoint_problems: list = dataclasses.field(default_factory=list)
    step_seconds: float = 0.0         # wall time inside training steps (batch, forward, backward, update)
    threads: int = 0                  # torch threads the steps ran with (core-seconds = step_seconds * threads)
    eval_seconds: float = 0.0
    shared_prefix_steps: int = 0      # steps taken from a WSD trunk checkpoint (trained by an earlier branch)
    trunk_id: str | None = None
    branch_step: int | None = None    # WSD: where this run's cooldown starts


def run_id_of(cfg: RunConfig) -> str:
    return config_hash(cfg.key_dict())


def trunk_id_of(cfg: RunConfig) -> str:
    """Key of the constant-LR prefix a WSD run shares with the other branches of its trunk."""
    return config_hash(cfg.trunk_key_dict())


def lr_at(cfg: RunConfig, step: int, total: int) -> float:
    """Learning rate at ``step`` (0-based) of ``total``: linear warmup, then cosine decay or WSD
    (constant, then a 1-sqrt cooldown over the last ``cooldown_frac`` of the steps; Hägele et al. 2024,
    https://arxiv.org/abs/2405.18392)."""
    warmup = warmup_steps_of(cfg, total)
    lo = cfg.lr * cfg.min_lr_frac
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    if cfg.schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return lo + 0.5 * (1 + math.cos(math.pi * progress)) * (cfg.lr - lo)
    start = branch_step_of(cfg, total)
    if step < start:
        return cfg.lr
    return lo + (cfg.lr - lo) * (1.0 - math.sqrt((step - start + 1) / (total - start)))


def lr_schedule(cfg: RunConfig, total: int) -> np.ndarray:
    """The learning rate of every step of a run, as an array (for loss-curve laws)."""
    return np.array([lr_at(cfg, s, total) for s in range(total)])


def eval_steps(total: int, n: int) -> list[int]:
    """Log-spaced steps (1-based counts of finished steps) at which to evaluate, ending at ``total``."""
    pts = np.unique(np.round(np.geomspace(max(1, total / 64), total, n)).astype(int))
    return sorted(set(pts.tolist()) | {total})


def kept_steps(evals: list[int], total: int, tail: int = 4, tail_frac: float = 0.1) -> set[int]:
    """Steps before ``total`` whose weights a run keeps with ``keep_eval_checkpoints`` (the final weights are
    the run's own checkpoint): its evaluation steps (log-spaced: the score's rise along the run) and
    ``tail`` more spread evenly over the last ``tail_frac`` of the run, so that the final checkpoint and the
    ``tail`` before it measure checkpoint-to-checkpoint noise where the score has nearly stopped moving (the
    log-spaced ones would measure mostly learning)."""
    gap = max(1, round(total * tail_frac / tail))
    return {s for s in evals if s < total} | {total - k * gap for k in range(1, tail + 1) if total - k * gap > 0}


TRUNK_EVAL_FIRST = 32
TRUNK_KEEP = 8      # trunk checkpoints kept (branch points are re-used by later branches)
EVAL_CHECKPOINTS = "evals"   # sub-folder of a run's checkpoints with its evaluation-step weights


def wsd_eval_steps(total: int, branch: int) -> list[int]:
    """WSD evaluation points: a fixed lattice (32, 64, 128, ... steps) on the shared constant-LR prefix, so
    every branch of a trunk sees the same prefix curve, then the middle and the end of the cooldown."""
    pts, s = set(), TRUNK_EVAL_FIRST
    while s <= branch:
        pts.add(s)
        s *= 2
    return sorted(pts | {branch + (total - branch + 1) // 2, total})


def make_optimizers(model: GPT, cfg: RunConfig) -> list[torch.optim.Optimizer]:
    named = list(model.named_parameters())
    embed = [p for n, p in named if n.startswith(("embed", "head"))]
    matrices = [p for n, p in named if p.ndim >= 2 and not n.startswith(("embed", "head"))]
    rest = [p for n, p in named if p.ndim < 2 and not n.startswith(("embed", "head"))]   # norms: no decay
    # the fused AdamW kernel: one pass per tensor instead of a dozen element-wise ops (2-3x less time
    # in the optimizer step on CPU at ladder sizes; benchmarks/bench_train.py)
    fused = torch.device(cfg.device).type in ("cpu", "cuda") or None
    if cfg.optimizer == "adamw":
        return [torch.optim.AdamW([{"params": matrices + embed, "weight_decay": cfg.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8,
                                  fused=fused)]
    muon_params = [p for p in matrices if p.ndim == 2]
    adam_params = [p for p in matrices if p.ndim != 2]
    return [torch.optim.Muon(muon_params, lr=cfg.lr, weight_decay=cfg.weight_decay, adjust_lr_fn="match_rms_adamw"),
            torch.optim.AdamW([{"params": embed + adam_params, "weight_decay": cfg.weight_decay},
                               {"params": rest, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95), fused=fused)]


@torch.no_grad()
def evaluate(model: GPT, windows: np.ndarray, cfg: RunConfig, batch: int = 32) -> float:
    """Mean cross-entropy (nats/token, no auxiliary losses) on the fixed held-out windows."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(windows), batch):
        w = torch.from_numpy(windows[i:i + batch]).to(cfg.device)
        with _autocast(cfg):
            _, loss, _ = model(w[:, :-1], w[:, 1:])
        n = w[:, 1:].numel()
        total += float(loss) * n
        count += n
    model.train()
    return total / count


def _autocast(cfg: RunConfig):
    if cfg.dtype == "bf16":
        return torch.autocast(device_type=torch.device(cfg.device).type, dtype=torch.bfloat16)
    return torch.autocast(device_type=torch.device(cfg.device).type, enabled=False)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
                      alpha: float, temperature: float) -> torch.Tensor:
    """``alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, targets)``
    (Hinton et al. 2015, https://arxiv.org/abs/1503.02531). With a one-hot teacher, T = 1 and
    alpha = 1 it equals the cross-entropy."""
    V = student_logits.shape[-1]
    s = torch.log_softmax(student_logits.float().reshape(-1, V) / temperature, -1)
    t = torch.log_softmax(teacher_logits.float().reshape(-1, V) / temperature, -1)
    kl = torch.nn.functional.kl_div(s, t, log_target=True, reduction="batchmean") * temperature ** 2
    if alpha >= 1.0:
        return kl
    ce = torch.nn.functional.cross_entropy(student_logits.float().reshape(-1, V), targets.reshape(-1))
    return alpha * kl + (1 - alpha) * ce


def load_model_state(checkpoint: str | Path) -> tuple[GPT, RunConfig, str]:
    """A model (eval mode), its config and run id from a checkpoint file, or from the newest valid
    checkpoint in a run's folder; loaded as weights only."""
    path = Path(checkpoint)
    if not is_url(checkpoint) and path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
    else:
        state, problems = load_latest(checkpoint)
        if state is None:
            raise FileNotFoundError(f"no valid checkpoint in {checkpoint}" + (f" ({'; '.join(problems)})" if problems else ""))
    cfg = RunConfig.from_dict(state["config"])
    model = GPT(cfg.model)
    model.load_state_dict(state["model"])
    return model.eval(), cfg, state["run_id"]


def load_teacher(cfg: RunConfig, checkpoint_dir: str | Path | None) -> GPT | None:
    if cfg.distill_teacher is None:
        return None
    if checkpoint_dir is None:
        raise ValueError("distillation needs checkpoint_dir (the teacher's checkpoint lives there)")
    teacher, tcfg, _ = load_model_state(join(checkpoint_dir, cfg.distill_teacher))
    if tcfg.model.vocab_size != cfg.model.vocab_size or tcfg.tokenizer != cfg.tokenizer:
        raise ValueError("teacher and student must share the tokenizer")
    return teacher.to(cfg.device)


def train_step(model: GPT, stepper, optims: list[torch.optim.Optimizer], cfg: RunConfig, tokens: np.ndarray,
               step: int, lr: float, teacher: GPT | None = None) -> tuple[torch.Tensor, dict]:
    """One optimizer step of :func:`train_run` on ``step``'s batch: forward (through ``stepper``, the
    model or its compiled form), backward, gradient clipping, AdamW/Muon. Returns the batch's
    cross-entropy and the router's auxiliary outputs."""
    x, y = get_batch(tokens, cfg.model.seq_len, cfg.batch_size, cfg.seed, step)
    x, y = torch.from_numpy(x).to(cfg.device), torch.from_numpy(y).to(cfg.device)
    for opt in optims:
        for g in opt.param_groups:
            g["lr"] = lr
    with _autocast(cfg):
        logits, loss, aux = stepper(x, y)
        objective = model.training_loss(loss, aux)
        if teacher is not None:
            with torch.no_grad():
                t_logits, _, _ = teacher(x)
            objective = objective - loss + distillation_loss(logits, t_logits, y, cfg.distill_alpha,
                                                             cfg.distill_temperature)
    for opt in optims:
        opt.zero_grad(set_to_none=True)
    objective.backward()
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    for opt in optims:
        opt.step()
    return loss, aux


class _DeferredInterrupt:
    """SIGINT (Ctrl-C) during a training loop stops it between steps, never inside one: the handler
    only records the request and the loop raises ``KeyboardInterrupt`` at the end of the step, so the
    checkpoint it writes holds the parameters, optimizer state, step count and curve of one moment.
    (Raised mid-step, after the optimizer had updated the weights but before the step was counted, the
    resumed run would repeat that step.) A second Ctrl-C stops at once without a checkpoint (the last
    periodic one stays). Installed only in the main thread and only over Python's default handler."""

    def __init__(self):
        self.requested = self.hard = False
        self._previous = None
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self._previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        if self.requested:
            self.hard = True
            raise KeyboardInterrupt
        self.requested = True

    def restore(self):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def train_run(cfg: RunConfig, *, checkpoint_dir: str | Path | None = None, data: TokenData | None = None,
              progress: Callable[[dict], None] | None = None, stop_after_steps: int | None = None,
              checkpoint_every_s: float = 60.0, threads: int | None = None) -> RunResult:
    """Train one model as ``cfg`` says, resuming from the newest valid checkpoint in ``checkpoint_dir``.

    With ``cfg.distill_teacher`` set, the student learns from that run's checkpoint (in
    ``checkpoint_dir``) through :func:`distillation_loss`; the teacher's forward FLOPs are not counted
    in the student's training compute (reported separately by the distillation study).

    Args:
        stop_after_steps: stop (with a checkpoint) once this many steps are done in total; the run
            is then ``interrupted`` and a later call resumes it.
        progress: called about twice a second with step, loss, tokens/s, FLOP/s and ETA.
    """
    if threads:
        torch.set_num_threads(threads)
    run_id = run_id_of(cfg)
    data = data or load_tokens(cfg.corpus, cfg.tokenizer)
    if data.vocab_size != cfg.model.vocab_size:
        raise ValueError(f"model vocab_size {cfg.model.vocab_size} != tokenizer vocab {data.vocab_size}")
    torch.manual_seed(cfg.seed)
    model = GPT(cfg.model).to(cfg.device)
    counts = model.param_counts()
    fpt = model.flops_per_token()
    horizon = resolve_horizon(cfg, counts["active"])
    total = horizon["steps"]
    optims = make_optimizers(model, cfg)
    branch = branch_step_of(cfg, total) if cfg.schedule == "wsd" else None
    evals = eval_steps(total, cfg.n_evals) if branch is None else wsd_eval_steps(total, branch)
    windows = eval_windows(data.val, cfg.model.seq_len, cfg.eval_tokens)
    step, curve, init_loss, problems, smoothed = 0, [], None, [], None
    ckpt_dir = join(checkpoint_dir, run_id) if checkpoint_dir else None
    # a WSD run with a fixed warmup shares its constant-LR prefix with every other branch of its trunk
    trunk_id = (trunk_id_of(cfg)
                if checkpoint_dir and branch is not None and cfg.warmup_steps is not None else None)
    trunk_dir = join(checkpoint_dir, "trunk-" + trunk_id) if trunk_id else None
    shared_from = 0
    if ckpt_dir is not None:
        state, problems = load_latest(ckpt_dir)
        if state is None and trunk_dir is not None:
            state, trunk_problems = load_latest(trunk_dir, max_step=branch)
            problems += trunk_problems
            shared_from = int(state["step"]) if state is not None else 0
        if state is not None:
            if state["run_id"] not in (run_id, trunk_id):
                raise RuntimeError(f"checkpoint in {ckpt_dir} belongs to run {state['run_id']}, not {run_id}")
            model.load_state_dict(state["model"])
            for opt, s in zip(optims, state["optimizers"]):
                opt.load_state_dict(s)
            torch.set_rng_state(state["torch_rng"])
            step, curve, init_loss = int(state["step"]), list(state["curve"]), state["init_loss"]
            smoothed = state.get("smoothed_train_loss")     # the running mean goes on as if never stopped
    resumed_from = step
    teacher = load_teacher(cfg, checkpoint_dir)
    stepper = torch.compile(model) if cfg.compile else model

    def checkpoint():
        if ckpt_dir is None:
            return
        if trunk_dir is not None and step <= branch:
            # still on the shared prefix: the state belongs to the trunk (a later branch resumes from it)
            save_checkpoint(trunk_dir, step, {"run_id": trunk_id, "config": cfg.to_dict(), "step": step,
                                              "model": model.state_dict(), "optimizers": [o.state_dict() for o in optims],
                                              "torch_rng": torch.get_rng_state(),
                                              "curve": [p for p in curve if p["step"] <= step],
                                              "init_loss": init_loss, "smoothed_train_loss": smoothed,
                                              "data_position": {"seed": cfg.seed, "step": step}},
                            keep=TRUNK_KEEP)
            return
        save_checkpoint(ckpt_dir, step, {"run_id": run_id, "config": cfg.to_dict(), "step": step,
                                         "model": model.state_dict(),
                                         "optimizers": [o.state_dict() for o in optims],
                                         "torch_rng": torch.get_rng_state(), "curve": curve,
                                         "init_loss": init_loss, "smoothed_train_loss": smoothed,
                                         "data_position": {"seed": cfg.seed, "step": step}})

    kept = kept_steps(evals, total) if cfg.keep_eval_checkpoints and ckpt_dir is not None else set()
    t0 = time.perf_counter()
    last_ckpt = last_report = t0
    status, reason, load = "finished", None, None
    tokens_per_step = cfg.tokens_per_step
    warmup = warmup_steps_of(cfg, total)
    step_s = eval_s = 0.0
    stop = _DeferredInterrupt()
    try:
        while step < total:
            ts = time.perf_counter()
            loss, aux = train_step(model, stepper, optims, cfg, data.train, step, lr_at(cfg, step, total), teacher)
            step += 1
            lv = float(loss.detach())
            step_s += time.perf_counter() - ts
            if init_loss is None:
                init_loss = lv
            smoothed = lv if smoothed is None else 0.9 * smoothed + 0.1 * lv
            if aux:
                load = aux["expert_load"].mean(0).tolist()
            if not math.isfinite(lv):
                status, reason = "diverged", f"non-finite training loss at step {step}"
            elif step > warmup and smoothed > cfg.diverge_factor * init_loss:
                status, reason = "diverged", f"training loss {smoothed:.3f} exceeded {cfg.diverge_factor}x the initial {init_loss:.3f} at step {step}"
            if status == "diverged":
                curve.append({"split": "train", "step": step, "tokens": step * tokens_per_step,
                              "flops": 6.0 * counts["active"] * step * tokens_per_step, "loss": lv if math.isfinite(lv) else None})
                break
            if step in kept:
                # weights only, beside the run's own checkpoints: `evaluate` scores them as RUN@STEP
                save_checkpoint(join(ckpt_dir, EVAL_CHECKPOINTS), step, {"run_id": run_id, "config": cfg.to_dict(),
                                                                         "step": step, "model": model.state_dict()},
                                keep=len(kept))
            if step in evals:
                te = time.perf_counter()
                vl = evaluate(model, windows, cfg)
                eval_s += time.perf_counter() - te
                curve.append({"split": "val", "step": step, "tokens": step * tokens_per_step,
                              "flops": 6.0 * counts["active"] * step * tokens_per_step, "loss": vl})
                curve.append({"split": "train", "step": step, "tokens": step * tokens_per_step,
                              "flops": 6.0 * counts["active"] * step * tokens_per_step, "loss": smoothed})
                if not math.isfinite(vl):
                    status, reason = "diverged", f"non-finite validation loss at step {step}"
                    break
            now = time.perf_counter()
            if progress is not None and (now - last_report > 0.5 or step == total):
                done = step - resumed_from
                el = now - t0
                tps = done * tokens_per_step / el
                progress({"run_id": run_id, "step": step, "steps": total, "loss": smoothed, "tokens_per_s": tps,
                          "flops_per_s": tps * fpt["training"], "eta_s": (total - step) * el / max(done, 1)})
                last_report = now
            if trunk_dir is not None and step == branch and step > shared_from:
                checkpoint()
            if stop_after_steps is not None and step >= stop_after_steps and step < total:
                checkpoint()
                status, reason = "interrupted", f"stopped after {step} steps"
                break
            if ckpt_dir is not None and (now - last_ckpt > checkpoint_every_s):
                checkpoint()
                last_ckpt = now
            if stop.requested:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        if not stop.hard:
            checkpoint()  # SIGINT: a clean stop between steps that keeps the work done so far
        raise
    finally:
        stop.restore()
    elapsed = time.perf_counter() - t0
    done = step - resumed_from
    if status == "finished":
        checkpoint()
    vals = [p["loss"] for p in curve if p["split"] == "val"]
    tps = done * tokens_per_step / elapsed if elapsed > 0 else 0.0
    return RunResult(run_id=run_id, status=status, final_loss=vals[-1] if status == "finished" and vals else None,
                     curve=curve, param_counts=counts, flops_per_token=fpt, horizon=horizon, seconds=elapsed,
                     tokens_per_s=tps, achieved_flops_per_s=tps * fpt["training"], data=data.describe(),
                     resumed_from_step=resumed_from, expert_load=load, reason=reason, checkpoint_problems=problems,
                     step_seconds=step_s, eval_seconds=eval_s, shared_prefix_steps=shared_from,
                     threads=torch.get_num_threads(), trunk_id=trunk_id,
                     branch_step=branch)


def to_store_record(cfg: RunConfig, result: RunResult, *, name: str, family: str, budget: float | None = None,
                    source: str = "ladder") -> tuple[Run, list[dict]]:
    """The store's view of a finished (or diverged) run and its loss curve."""
    c, h = result.param_counts, result.horizon
    run = Run(run_id=result.run_id, name=name, source=source,
              status={"finished": "finished", "diverged": "diverged"}.get(result.status, "queued"),  # interrupted: resumes later
              family=family, n_total=c["total"], n_nonembedding=c["nonembedding"], n_active=c["active"],
              tokens=h["tokens"], unique_tokens=result.data["train_tokens"], flops_6nd=6.0 * c["active"] * h["tokens"],
              flops_with_attention=result.flops_per_token["training"] * h["tokens"], final_loss=result.final_loss,
              budget=budget, config=cfg.to_dict(),
              extra={"param_counts": c, "flops_per_token": result.flops_per_token, "horizon": h, "data": result.data,
                     "seconds": result.seconds, "tokens_per_s": result.tokens_per_s,
                     "achieved_flops_per_s": result.achieved_flops_per_s, "expert_load": result.expert_load,
                     "reason": result.reason, "resumed_from_step": result.resumed_from_step,
                     "step_seconds": result.step_seconds, "eval_seconds": result.eval_seconds,
                     "threads": result.threads,
                     "steps_trained": result.horizon["steps"] - result.resumed_from_step if result.status == "finished" else None,
                     "shared_prefix_steps": result.shared_prefix_steps, "trunk_id": result.trunk_id,
                     "branch_step": result.branch_step,
                     "flop_convention": "flops_6nd = 6 * N_active * D; flops_with_attention = 3 * structure-counted "
                                        "forward matmul FLOPs (head and full attention included) * D"})
    return run, result.curve
