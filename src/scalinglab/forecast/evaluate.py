"""Evaluate checkpoints on the procedural tasks under every metric of :mod:`.metrics`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..testtime.tasks import Task
from .metrics import brier_score, edit_distance, mean_log_likelihood


@torch.no_grad()
def evaluate_task(model, task: Task, n_problems: int = 100, seed: int = 0) -> dict:
    """Greedy answers and teacher-forced probabilities on ``n_problems`` held-out problems.

    Returns the mean of each metric, plus ``task_loss`` = -log_likelihood (nats per answer token).
    """
    from ..testtime.sampling import generate
    em, ll, ed, br = [], [], [], []
    for a, b in task.problems(n_problems, seed=seed):
        prompt = list(task.prompt(a, b).encode())
        ref = list(task.completion(a, b).encode())           # answer digits + newline
        out = generate(model, prompt, 1, len(ref) + 2, temperature=0.0, stop_token=ord("\n"))[0]
        em.append(float(out == ref))
        ed.append(float(edit_distance(out, ref)))
        x = torch.tensor([prompt + ref[:-1]])
        logits, _, _ = model(x)
        lp = torch.log_softmax(logits[0, len(prompt) - 1:].float(), -1).numpy()
        tgt = np.array(ref)
        ll.append(mean_log_likelihood(lp, tgt))
        br.append(brier_score(np.exp(lp), tgt))
    return {"exact_match": float(np.mean(em)), "log_likelihood": float(np.mean(ll)),
            "task_loss": -float(np.mean(ll)), "token_edit_distance": float(np.mean(ed)), "brier": float(np.mean(br)),
            "n_problems": n_problems}


def evaluate_runs(store, checkpoint_dir: str | Path, tasks: list[str], *, n_problems: int = 100,
                  family: str | None = None, log=print) -> list[dict]:
    """Evaluate every finished run with a checkpoint on ``tasks``; rows for the scores table."""
    from ..train.checkpoint import step_of
    from ..train.run import EVAL_CHECKPOINTS, load_model_state
    parsed = [(spec, Task.parse(spec)) for spec in tasks]
    rows = []
    for run in store.runs(status="finished", family=family):
        folder = Path(checkpoint_dir) / run.run_id
        if not folder.exists():
            continue
        model, cfg, _ = load_model_state(folder)
        if cfg.tokenizer != "byte":
            continue
        # the final checkpoint as RUN, and the evaluation-step weights a run kept (keep_eval_checkpoints) as
        # RUN@STEP at the tokens seen by then: the task-ladder forecast fits its step 2 on all of them and
        # measures each task's checkpoint-to-checkpoint noise over the last few
        points = [(run.name, model, run.tokens, run.flops_6nd, run.final_loss)]
        for path in sorted((folder / EVAL_CHECKPOINTS).glob("step_*.pt")):
            tokens = step_of(path.name) * cfg.tokens_per_step
            points.append((f"{run.name}@{step_of(path.name)}", path, tokens, 6.0 * run.n_active * tokens, None))
        for name, weights, tokens, flops, loss in points:
            m = load_model_state(weights)[0] if isinstance(weights, Path) else weights   # one model in memory at a time
            for spec, task in parsed:
                res = evaluate_task(m, task, n_problems)
                log(f"{name}: {spec} exact match {res['exact_match']:.3f}, log-likelihood {res['log_likelihood']:.3f}")
                for metric in ("exact_match", "log_likelihood", "task_loss", "token_edit_distance", "brier"):
                    rows.append({"source": "evaluate", "model": name, "run_id": run.run_id, "n": run.n_active,
                                 "d": tokens, "c": flops, "loss": loss, "task": spec,
                                 "metric": metric, "value": res[metric]})
    return rows
