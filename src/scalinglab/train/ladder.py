"""Ladder design: an IsoFLOP grid of small transformers (dense, MoE or both) with hyperparameters that
follow a rule across sizes, and the driver loop that trains a list of runs through an executor and
records each in the store. Fitting and verification live in :mod:`scalinglab.experiments.ladder`.

Conventions: budgets are ``C = 6 * N_active * D`` FLOPs (N_active = all parameters for a dense model,
tied embeddings included: the tied head is a real matmul); ``D = C / (6 N_active)``.

Hyperparameters by size (Porian et al. 2024, https://arxiv.org/abs/2406.19146): the peak learning rate
follows ``lr(N) = lr * (N / lr_ref_params) ** -lr_exponent``, or, with ``lr_knots`` (the optimum LR
measured at a few sizes by a short sweep when ``lr_sweep`` is on), the straight line through the knots
in log N and log LR, constant beyond the outermost knots; warmup lasts ``warmup_tokens_per_param * N``
tokens.

WSD ladders (Hägele et al. 2024, https://arxiv.org/abs/2405.18392): with ``schedule="wsd"`` the sizes
sit on one geometric lattice shared by all budgets, so each size trains once at constant LR and
branches into a short cooldown at every budget that uses it; every branch is its own run (its key
includes its horizon, hence its branch point) and the shared prefix is trained once.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..store import Run, RunStore
from .config import MIXERS, ModelConfig, RunConfig, branch_step_of, param_counts, resolve_horizon
from .executors import Executor, Task
from .run import run_id_of, to_store_record, trunk_id_of


@dataclasses.dataclass(frozen=True, kw_only=True)
class LadderSpec:
    """What to train: compute budgets, sizes per budget, families, and the run template."""

    budgets: tuple[float, ...] = (2e11, 6e11, 1.8e12)
    sizes_per_budget: int = 5
    families: tuple[str, ...] = ("dense",)
    tokens_per_param_guess: float = 20.0   # centre of the size grid: N ~ sqrt(C / (6 * guess))
    size_span: float = 3.5                 # the grid spans guess / span .. guess * span in N
    verify_multiplier: float = 10.0        # verification run at this x the largest budget
    n_experts: int = 4
    top_k: int = 2
    mixer: str = "attention"               # attention | ssm | hybrid (the sequence mixer of every shape)
    optimizer: str = "adamw"               # adamw | muon
    seq_len: int = 128
    batch_size: int = 16
    lr: float = 3e-3                       # peak LR at lr_ref_params (the rule's anchor)
    lr_ref_params: float = 1e5
    lr_exponent: float = 0.0               # lr(N) = lr * (N / lr_ref_params) ** -lr_exponent
    lr_knots: tuple[tuple[float, float], ...] = ()   # (N, lr) optima: log-log interpolation, overrides the above
    lr_sweep: bool = False                 # fit lr and lr_exponent by a short sweep first
    lr_sweep_factors: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    warmup_tokens_per_param: float = 1.0   # warmup of N tokens (Porian et al. 2024)
    schedule: str = "cosine"               # cosine | wsd (constant LR with cooldown branches)
    cooldown_frac: float = 0.2
    corpus: str = "stdlib"
    tokenizer: str = "byte"
    device: str = "cpu"
    dtype: str = "fp32"
    compile: bool = False
    keep_eval_checkpoints: bool = False    # save each run's weights at its evaluation steps (for `evaluate`)
    seed: int = 0
    grid_seeds: int = 1                    # independent trainings of every grid run (seeds: replica_seed)
    eval_tokens: int = 65536
    n_evals: int = 8
    n_bootstrap: int = 1000

    def __post_init__(self):
        if not self.budgets or not all(0 < b <= 1e21 for b in self.budgets):
            raise ValueError(f"budgets must be positive FLOP counts up to 1e21 (a ladder, not its target), got {self.budgets}")
        if self.sizes_per_budget < 3:
            raise ValueError("an IsoFLOP profile needs at least 3 sizes per budget")
        if not (isinstance(self.grid_seeds, int) and 1 <= self.grid_seeds <= 16):
            raise ValueError(f"grid seeds must be a whole number from 1 to 16, got {self.grid_seeds}")
        bad = set(self.families) - {"dense", "moe"}
        if bad:
            raise ValueError(f"unknown families {sorted(bad)}; choose dense and/or moe")
        if self.optimizer not in ("adamw", "muon"):
            raise ValueError(f"optimizer must be 'adamw' or 'muon', not {self.optimizer!r}")
        if self.mixer not in MIXERS:
            raise ValueError(f"mixer must be one of {', '.join(MIXERS)}, not {self.mixer!r}")
        if self.schedule not in ("cosine", "wsd"):
            raise ValueError(f"schedule must be 'cosine' or 'wsd', not {self.schedule!r}")
        if not self.verify_multiplier > 0 or not math.isfinite(self.verify_multiplier):
            raise ValueError(f"verify multiplier must be a positive number, got {self.verify_multiplier}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if any(not (n > 0 and lr > 0 and math.isfinite(n) and math.isfinite(lr)) for n, lr in self.lr_knots):
            raise ValueError(f"LR knots must be positive (N, lr) pairs, got {self.lr_knots}")

    def lr_for(self, n_active: float) -> float:
        """The peak learning rate of a model with ``n_active`` parameters under the spec's rule."""
        if self.lr_knots:
            knots = sorted(self.lr_knots)
            logn = [math.log(n) for n, _ in knots]
            loglr = [math.log(lr) for _, lr in knots]
            return float(math.exp(np.interp(math.log(n_active), logn, loglr)))
        return float(self.lr * (n_active / self.lr_ref_params) ** -self.lr_exponent)

    def warmup_steps_for(self, n_active: float) -> int:
        return max(8, math.ceil(self.warmup_tokens_per_param * n_active / (self.batch_size * self.seq_len)))

    def hp_rule(self) -> dict:
        """The hyperparameter rule, as recorded with every run."""
        if self.lr_knots:
            knots = sorted(self.lr_knots)
            rule = ("log-log line through (N, lr) = " + ", ".join(f"({n:.3g}, {lr:.3g})" for n, lr in knots)
                    + "; constant beyond")
        else:
            rule = f"{self.lr:.4g} * (N / {self.lr_ref_params:.3g}) ** -{self.lr_exponent:.3g}"
        return {"lr": rule, "lr_knots": [list(k) for k in sorted(self.lr_knots)] or None,
                "lr_ref": self.lr, "lr_ref_params": self.lr_ref_params, "lr_exponent": self.lr_exponent,
                "warmup": f"{self.warmup_tokens_per_param:g} * N tokens", "batch_tokens": self.batch_size * self.seq_len,
                "schedule": self.schedule, "cooldown_frac": self.cooldown_frac if self.schedule == "wsd" else None}


# The quick preset's starting LR rule: at each of its three sweep sizes (7,472, 20,832 and 40,080 parameters
# on stdlib bytes), the median of the optima nine earlier quick ladders measured (seeds 38-46, their LR
# sweeps only; docs/experiments.md). Centred on it, three LRs a factor of 2 apart bracket the optimum
# where the earlier sweep's five, centred on 3e-3, needed a second round past the edge at the two smallest.
QUICK_LR_PRIOR = ((7472.0, 0.022), (20832.0, 0.010), (40080.0, 0.006))

PRESETS = {
    # a tiny ladder to check an install (and for CI): well under a minute on 2 cores
    "smoke": LadderSpec(budgets=(1.5e10, 4.5e10), sizes_per_budget=3, eval_tokens=8192, n_evals=4, n_bootstrap=200,
                        batch_size=8, seq_len=64, verify_multiplier=4.0),
    # the default: 4 budgets, WSD branches trained with two seeds, LR rule from a short sweep, verified at 10x.
    # The sweep starts from QUICK_LR_PRIOR and tries x0.5, x1, x2 of it at each size (two more past an edge).
    "quick": LadderSpec(budgets=(1.5e11, 3e11, 6e11, 1.2e12), tokens_per_param_guess=60.0, schedule="wsd",
                        lr_sweep=True, n_bootstrap=400, grid_seeds=2, lr_knots=QUICK_LR_PRIOR,
                        lr_sweep_factors=(0.5, 1.0, 2.0)),
    "standard": LadderSpec(budgets=(1e11, 3e11, 1e12, 3e12, 1e13), sizes_per_budget=6, schedule="wsd", lr_sweep=True,
                           verify_multiplier=30.0),
    "large": LadderSpec(budgets=(1e13, 3e13, 1e14, 3e14, 1e15), sizes_per_budget=7, batch_size=64, seq_len=256,
                        schedule="wsd", lr_sweep=True, verify_multiplier=30.0),
}


def shape_family(spec: LadderSpec, vocab_size: int, family: str) -> list[ModelConfig]:
    """Candidate shapes, smallest first: d_model a multiple of 16 (of 8 below 64, with head_dim 8), head_dim
    16, depth within a factor of ~1.5 of d_model / 32 (so the sizes between two widths are covered too)."""
    shapes = []
    for d in [8, 16, 24, 32, 40, 48, 56] + list(range(64, 2049, 16)):
        base = d / 32
        head = 8 if d < 64 else 16
        for layers in sorted({max(1, min(48, round(base * f))) for f in (0.67, 1.0, 1.5)}):
            kw = dict(vocab_size=vocab_size, d_model=d, n_layers=layers, n_heads=d // head, seq_len=spec.seq_len,
                      mixer=spec.mixer)
            if family == "moe":
                kw.update(n_experts=spec.n_experts, top_k=spec.top_k, iso_active=True)
            shapes.append(ModelConfig(**kw))
    return shapes


def candidate_shapes(spec: LadderSpec, vocab_size: int, family: str) -> tuple[list[ModelConfig], list[int]]:
    """The shapes a ladder may use (d_model <= 1024) and their active parameter counts (closed form)."""
    shapes = [s for s in shape_family(spec, vocab_size, family) if s.d_model <= 1024]
    return shapes, [param_counts(s)["active"] for s in shapes]


@dataclasses.dataclass
class LadderEntry:
    name: str
    family: str
    budget: float
    config: RunConfig
    role: str = "grid"     # grid | verify | lr-sweep
    hp_rule: dict | None = None
    recipe: dict | None = None   # the named recipe of a comparison (recorded with the run)

    @property
    def run_id(self) -> str:
        return run_id_of(self.config)


def run_config(spec: LadderSpec, model: ModelConfig, flops: float) -> RunConfig:
    """The run template of a ladder for one shape and budget; LR and warmup follow the spec's rule."""
    n = param_counts(model)["active"]
    return RunConfig(model=model, corpus=spec.corpus, tokenizer=spec.tokenizer, horizon="flops", horizon_value=flops,
                     batch_size=spec.batch_size, lr=spec.lr_for(n), optimizer=spec.optimizer,
                     warmup_steps=spec.warmup_steps_for(n), schedule=spec.schedule, cooldown_frac=spec.cooldown_frac,
                     seed=spec.seed, n_evals=spec.n_evals, eval_tokens=spec.eval_tokens, device=spec.device,
                     dtype=spec.dtype, compile=spec.compile, keep_eval_checkpoints=spec.keep_eval_checkpoints)


def nearest_shape(counts: list[int], target: float, exclude=(), shapes: list[ModelConfig] | None = None) -> int:
    """Index of the count nearest ``target`` in log space, skipping indices in ``exclude``; among counts
    within 5% of each other, the shape whose depth is nearest d_model / 32 wins."""
    dist = np.array([abs(math.log(c / target)) for c in counts])
    if shapes is not None:
        aspect = np.array([abs(math.log(max(1.0, s.d_model / 32) / s.n_layers)) for s in shapes])
        dist = np.round(dist / 0.05) + 0.01 * aspect
    order = np.argsort(dist, kind="stable")
    return next(int(j) for j in order if int(j) not in exclude)


def size_lattice(spec: LadderSpec) -> tuple[float, float]:
    """The geometric lattice of target sizes shared by every budget: (anchor N, ratio between sizes)."""
    ratio = (spec.size_span ** 2) ** (1.0 / (spec.sizes_per_budget - 1))
    anchor = math.sqrt(min(spec.budgets) / (6.0 * spec.tokens_per_param_guess))
    return anchor, ratio


def budget_targets(spec: LadderSpec, budget: float) -> np.ndarray:
    """``sizes_per_budget`` target sizes around the guessed optimum of ``budget``, on the shared lattice
    (so budgets share sizes and a WSD trunk serves several budgets)."""
    anchor, ratio = size_lattice(spec)
    guess = math.sqrt(budget / (6.0 * spec.tokens_per_param_guess))
    centre = round(math.log(guess / anchor) / math.log(ratio))
    half = (spec.sizes_per_budget - 1) / 2.0
    return anchor * ratio ** (centre + np.arange(spec.sizes_per_budget) - half)


def replica_seed(seed: int, k: int) -> int:
    """The training seed of the ``k``-th independent training of a grid run (``k = 0``: the ladder's own)."""
    return seed + 1_000_003 * k


def design_ladder(spec: LadderSpec, vocab_size: int = 256) -> list[LadderEntry]:
    """The IsoFLOP grid: for each family and budget, ``sizes_per_budget`` distinct shapes log-spaced
    around the guessed optimum; tokens follow from the budget. With ``grid_seeds`` > 1 every grid run is
    trained that many times with independent seeds (:func:`replica_seed`; names end in ``-s<k>``), so a
    WSD ladder has that many trunks per size. Entries come ordered by shape, seed, then budget, so the
    branches of a WSD trunk run in the order of their branch points."""
    entries = []
    for family in spec.families:
        shapes, counts = candidate_shapes(spec, vocab_size, family)
        for budget in spec.budgets:
            picked: list[int] = []
            for t in budget_targets(spec, budget):
                picked.append(nearest_shape(counts, t, exclude=picked, shapes=shapes))
            for i in sorted(set(picked)):
                name = f"{family}-C{budget:.2g}-d{shapes[i].d_model}L{shapes[i].n_layers}"
                cfg = run_config(spec, shapes[i], budget)
                for k in range(spec.grid_seeds):
                    entries.append(LadderEntry(name + (f"-s{k}" if k else ""), family, budget,
                                               dataclasses.replace(cfg, seed=replica_seed(spec.seed, k))))
    entries.sort(key=lambda e: (e.family, param_counts(e.config.model)["active"], e.config.seed, e.budget))
    # warmup: the rule's N tokens, but at most a quarter of the shortest run of that shape (all branches of a
    # WSD trunk share it)
    shortest: dict = {}
    for e in entries:
        steps = resolve_horizon(e.config, param_counts(e.config.model)["active"])["steps"]
        shortest[e.config.model] = min(shortest.get(e.config.model, steps), steps)
    for e in entries:
        cap = max(1, shortest[e.config.model] // 4)
        if e.config.warmup_steps > cap:
            e.config = dataclasses.replace(e.config, warmup_steps=cap)
    return entries


def ladder_compute(entries: list[LadderEntry]) -> dict:
    """Nominal compute (the sum of every run's own C = 6 N D) and the compute actually trained when WSD
    branches share their trunk's constant-LR prefix (counted once per trunk)."""
    nominal, trained, trunks = 0.0, 0.0, {}
    for e in entries:
        n = param_counts(e.config.model)["active"]
        h = resolve_horizon(e.config, n)
        nominal += h["flops_6nd"]
        per_step = 6.0 * n * e.config.tokens_per_step
        if e.config.schedule == "wsd" and e.config.warmup_steps is not None:
            branch = branch_step_of(e.config, h["steps"])
            key = trunk_id_of(e.config)
            trunks[key] = max(trunks.get(key, 0.0), branch * per_step)
            trained += (h["steps"] - branch) * per_step
        else:
            trained += h["flops_6nd"]
    trained += sum(trunks.values())
    return {"nominal_flops": nominal, "trained_flops": trained, "saved_fraction": 1.0 - trained / nominal if nominal else 0.0,
            "trunks": len(trunks), "convention": "C = 6 N_active D per run; WSD prefixes shared by branches counted once"}


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

    def note(self, text: str, label: str | None = None, style: str | None = None):
        """One line about a run; ``text`` is data (names, error messages) and is never read as markup."""
        if self.enabled:
            from rich.text import Text
            self.p.console.print(Text.assemble((label + " ", style or "") if label else "", text))
        else:
            self.log(f"{label} {text}" if label else text)

    def stop(self):
        if self.enabled:
            self.p.stop()


def lease_key(cfg: RunConfig) -> str:
    """What a driver claims before training a run: the run, or for a WSD branch its whole trunk (the branches
    of one trunk share its constant-LR prefix, so one driver trains them all)."""
    if cfg.schedule == "wsd" and cfg.warmup_steps is not None:
        return "trunk-" + trunk_id_of(cfg)
    return run_id_of(cfg)


def _accepts_claim(executor) -> bool:
    import inspect
    try:
        return "claim" in inspect.signature(executor.run).parameters
    except (TypeError, ValueError):
        return False


def driver_id() -> str:
    """This driver process (host and pid), recorded with every result it writes (``extra.driver``): a ladder's
    efficiency counts the runs its own process trained, not those of another driver on the same store."""
    import os
    import socket
    return f"{socket.gethostname()}:{os.getpid()}"


def _entry_extra(e: LadderEntry) -> dict:
    return {"role": e.role, "hp_rule": e.hp_rule, **({"recipe": e.recipe} if e.recipe else {})}


def train_entries(entries: list[LadderEntry], store: RunStore, executor: Executor, checkpoint_dir: str | Path,
                  *, show_progress: bool = True, log: Callable[[str], None] = print, poll_s: float = 2.0) -> dict:
    """Train the entries not yet finished (or diverged) in the store; the driver writes every result.

    Runs to train are written ``queued``; the first progress report of a run marks it ``running``
    (:meth:`RunStore.set_progress`), its result ``finished``, ``diverged`` or ``failed``.

    Several drivers may share one store: each claims a run (a WSD trunk) just before training it
    (:meth:`RunStore.claim`, renewed while it trains), so they split the work and no run is trained twice;
    a driver whose remaining runs are all held by others waits for them, and takes over the runs of a
    driver that stopped renewing its leases."""
    import socket
    import uuid

    from ..store import LEASE_STALE_S
    from .checkpoint import process_alive

    def settled(e) -> bool:
        found = store.run(e.run_id)
        return found is not None and found.status in ("finished", "diverged")

    def placeholder(e) -> Run:
        return Run(run_id=e.run_id, name=e.name, source="ladder", status="queued", family=e.family,
                   budget=e.budget, config=e.config.to_dict(), extra=_entry_extra(e))

    todo = [e for e in entries if not settled(e)]
    skipped = len(entries) - len(todo)
    if skipped:
        log(f"{skipped} run(s) already in the store: skipped")
    by_key = {e.run_id: e for e in todo}
    store.add_queued([placeholder(e) for e in todo])
    owner = f"{driver_id()}:{uuid.uuid4().hex[:8]}"    # host:pid:nonce (held_by_other reads host and pid back)
    keys = {e.run_id: lease_key(e.config) for e in todo}
    prog = _Progress(show_progress, sum(e.config.horizon_value for e in todo), log)
    outcome = {"trained": 0, "diverged": 0, "failed": 0, "skipped": skipped, "by_other_drivers": 0}
    started: set[str] = set()
    last_write: dict = {}

    host = socket.gethostname()

    def held_by_other(key) -> bool:
        """Another live driver holds ``key``; the lease of a driver on this host whose process is gone (a
        killed ladder restarted at once) is dropped rather than waited out."""
        held = store.lease(key)
        if held is None or held["owner"] == owner:
            return False
        o_host, _, rest = held["owner"].rpartition(":")[0].partition(":")
        if o_host == host and rest.isdigit() and not process_alive(int(rest)):
            store.break_lease(key, held["owner"])
            return False
        return held["age_s"] <= LEASE_STALE_S

    def claim(task) -> bool:
        e = by_key[task.key]
        if held_by_other(keys[e.run_id]) or not store.claim(keys[e.run_id], owner):
            return False
        if settled(e):      # trained by another driver since this one looked
            return False
        store.upsert_run(placeholder(e))     # ours now (a stale "running" from a stopped driver is reset)
        started.add(e.run_id)
        return True

    def on_progress(key, info):
        if prog.enabled and key not in prog.runs:
            e = by_key[key]
            prog.start(key, e.name, info["steps"], e.config.horizon_value)
        prog.update(key, info)
        now = time.time()
        if now - last_write.get(key, 0.0) > 2.0:     # a heartbeat for live views (the dashboard) and the leases
            store.set_progress(key, dict(info, updated=now))
            store.renew_leases(owner)
            last_write[key] = now

    def on_result(task, result, error):
        e = by_key[task.key]
        prog.finish(task.key)
        if result is None:
            run = Run(run_id=e.run_id, name=e.name, source="ladder", status="failed", family=e.family, budget=e.budget,
                      config=e.config.to_dict(), extra={"error": error, "role": e.role, "driver": driver_id()})
            store.upsert_run(run)
            outcome["failed"] += 1
            prog.note(f"{e.name}: {error}", label="failed", style="red")
            return
        run, curve = to_store_record(e.config, result, name=e.name, family=e.family, budget=e.budget)
        run.extra.update(_entry_extra(e), driver=driver_id())
        store.upsert_run(run)
        store.add_curve(run.run_id, curve)
        if result.status == "diverged":
            outcome["diverged"] += 1
            prog.note(f"{e.name}: {result.reason} (kept in the store, excluded from fits)", label="diverged",
                      style="yellow")
        else:
            outcome["trained"] += 1
            prog.note(f"{e.name}: N={run.n_total:,} D={run.tokens:,.0f} loss {run.final_loss:.4f} "
                      f"({result.seconds:.1f}s, {result.achieved_flops_per_s / 1e9:.1f} GFLOP/s)", label="done")

    lazy = _accepts_claim(executor)
    waiting_logged = False
    try:
        while True:
            pending = [e for e in todo if e.run_id not in started and not settled(e)]
            runnable = [e for e in pending if not held_by_other(keys[e.run_id])]
            if not pending:
                break
            if runnable:
                tasks = [Task(key=e.run_id, config=e.config.to_dict(), checkpoint_dir=str(checkpoint_dir),
                              group=keys[e.run_id]) for e in runnable]
                if lazy:
                    executor.run(tasks, on_progress, on_result, claim=claim)
                else:       # an executor without claims: claim its whole list up front
                    executor.run([t for t in tasks if claim(t)], on_progress, on_result)
                continue
            if not waiting_logged:
                log(f"waiting for {len(pending)} run(s) that another driver on this store is training")
                waiting_logged = True
            store.renew_leases(owner)
            time.sleep(poll_s)
    finally:
        prog.stop()
        store.release_leases(owner)
    outcome["by_other_drivers"] = sum(1 for e in todo if e.run_id not in started and settled(e))
    return outcome


