"""Sampling from the lab's checkpoints: batched, with a KV cache, verified, written to the store."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..train.model import GPT
from ..train.run import load_model_state
from .tasks import Task


@torch.no_grad()
def generate(model: GPT, prompt: list[int], n: int, max_new_tokens: int, *, temperature: float = 1.0,
             stop_token: int | None = None, use_cache: bool = True, generator: torch.Generator | None = None) -> list[list[int]]:
    """``n`` continuations of one prompt (the batch shares the prompt), stopping at ``stop_token``.

    With ``use_cache=False`` every step re-runs the whole sequence; results are identical.
    """
    limit = model.cfg.seq_len - len(prompt)
    if limit < 1:
        raise ValueError(f"prompt of {len(prompt)} tokens does not fit the model's context {model.cfg.seq_len}")
    max_new_tokens = min(max_new_tokens, limit)
    x = torch.tensor(prompt, dtype=torch.long).repeat(n, 1)
    caches = [{"len": 0} for _ in model.blocks] if use_cache else None
    out = torch.empty(n, 0, dtype=torch.long)
    done = torch.zeros(n, dtype=torch.bool)
    inp = x
    for _ in range(max_new_tokens):
        logits, _, _ = model(inp, caches=caches)
        if caches is not None:
            for c in caches:
                c["len"] += inp.shape[1]
        last = logits[:, -1, :].float()
        if temperature <= 0:
            nxt = last.argmax(-1)
        else:
            nxt = torch.multinomial(torch.softmax(last / temperature, -1), 1, generator=generator)[:, 0]
        nxt = torch.where(done, torch.full_like(nxt, stop_token if stop_token is not None else 0), nxt)
        out = torch.cat([out, nxt[:, None]], dim=1)
        if stop_token is not None:
            done |= nxt == stop_token
            if bool(done.all()):
                break
        inp = nxt[:, None] if caches is not None else torch.cat([x, out], dim=1)
    result = []
    for row in out.tolist():
        if stop_token is not None and stop_token in row:
            row = row[:row.index(stop_token) + 1]
        result.append(row)
    return result


def sample_task(checkpoint: str | Path, task: str, *, n: int = 64, n_problems: int = 50, temperature: float = 0.8,
                fmt: str = "direct", seed: int = 0, max_new_tokens: int | None = None, model_name: str | None = None) -> dict:
    """Draw ``n`` samples for each of ``n_problems`` held-out problems, verify each exactly, and count
    the inference FLOPs (``2 N_active`` per token plus attention over the context so far)."""
    model, cfg, run_id = load_model_state(checkpoint)
    if cfg.tokenizer != "byte":
        raise ValueError("sampling tasks needs a byte-level model")
    t = Task.parse(task)
    counts = model.param_counts()
    L, D = cfg.model.n_layers, cfg.model.d_model
    gen = torch.Generator().manual_seed(seed)
    width = len(t.completion(10 ** t.digits - 1, 10 ** t.digits - 1, fmt)) + 4
    max_new = max_new_tokens or width
    rows = []
    for a, b in t.problems(n_problems, seed=seed):
        prompt = list(t.prompt(a, b, fmt).encode())
        outs = generate(model, prompt, n, max_new, temperature=temperature, stop_token=ord("\n"), generator=gen)
        for j, toks in enumerate(outs):
            text = bytes(toks).decode("utf-8", errors="replace")
            ok, final = t.verify(a, b, text)
            P, G = len(prompt), len(toks)
            flops = (P + G) * 2.0 * counts["active"] + sum(4.0 * L * D * (P + i) for i in range(G))
            rows.append({"source": f"sample:{run_id}", "task": f"{t.name}:{fmt}", "model": model_name or run_id,
                         "problem": f"{a}{'+' if t.kind == 'addition' else '*'}{b}", "sample_id": str(j), "answer": final,
                         "correct": int(ok), "score": None, "verdict": None, "tokens": float(G), "flops": flops})
    return {"run_id": run_id, "n_active": counts["active"], "config": cfg, "rows": rows,
            "pass_at_1": float(np.mean([r["correct"] for r in rows])),
            "flops_per_sample": float(np.mean([r["flops"] for r in rows])),
            "tokens_per_sample": float(np.mean([r["tokens"] for r in rows])) if rows else math.nan}
