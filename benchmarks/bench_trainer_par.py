"""The trainer against a nanoGPT-style eager baseline of the same shape, in one process.

Both train on the same token array with batch x seq tokens per step, clip gradients at 1.0 and take an
AdamW step, as their training loops do: ours is :func:`scalinglab.train.run.train_step` itself (RMSNorm,
rotary, SwiGLU, tied head; the fused AdamW kernel); the baseline is written after nanoGPT's
``model.py`` and ``train.py`` (LayerNorm and Linear biases, learned positions, GELU MLP of 4 d_model,
tied head, flash attention; AdamW with decay groups, fused only on CUDA, so the for-loop kernel on
CPU). Same d_model, layers, heads, vocabulary, sequence and batch; SwiGLU's 8/3 d_model width makes
the two models' matmul FLOPs per token agree within 2%.

Timings are interleaved (ours, baseline, ours, ...) in rounds of a few steps; each round gives one
ratio, and the median over rounds is reported with its spread, so a noisy neighbour moves both sides.
Also measured: bf16 autocast against fp32, ``torch.compile`` of the model and of the optimizer step
(``--compile``; compilation itself is excluded).

Target: ours / baseline tokens/s >= 1.0 (fp32) at 0.1M, 1M and 3M non-embedding parameters.

    python benchmarks/bench_trainer_par.py [--json] [--rounds 9] [--compile]
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from scalinglab.train.config import ModelConfig, RunConfig, param_counts
from scalinglab.train.model import GPT
from scalinglab.train.run import make_optimizers, train_step

SHAPES = {
    "dense-0.1M": dict(d_model=64, n_layers=2, n_heads=4),
    "dense-1M": dict(d_model=128, n_layers=5, n_heads=8),
    "dense-3M": dict(d_model=256, n_layers=4, n_heads=8),
}
TARGET = 1.0


# -- the nanoGPT-style baseline ------------------------------------------------------------------------
class LayerNorm(nn.Module):
    def __init__(self, ndim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim))

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, d: int, h: int):
        super().__init__()
        self.c_attn, self.c_proj, self.n_head = nn.Linear(d, 3 * d), nn.Linear(d, d), h

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class NanoBlock(nn.Module):
    def __init__(self, d: int, h: int):
        super().__init__()
        self.ln_1, self.attn, self.ln_2 = LayerNorm(d), CausalSelfAttention(d, h), LayerNorm(d)
        self.c_fc, self.c_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x))))


class NanoGPT(nn.Module):
    def __init__(self, vocab: int, block: int, d: int, n_layer: int, n_head: int):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(block, d)
        self.h = nn.ModuleList(NanoBlock(d, n_head) for _ in range(n_layer))
        self.ln_f = LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.wte.weight = self.lm_head.weight
        for name, p in self.named_parameters():
            if p.ndim >= 2:
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else 0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1)))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def nanogpt_step(shape: dict, tokens: np.ndarray, batch: int, seq: int, dtype: str):
    torch.manual_seed(0)
    model = NanoGPT(256, seq, shape["d_model"], shape["n_layers"], shape["n_heads"])
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.95))
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if dtype == "bf16" else (
        lambda: torch.autocast("cpu", enabled=False))
    rng = np.random.default_rng(0)

    def step():
        ix = rng.integers(0, len(tokens) - seq - 1, batch)
        x = torch.stack([torch.from_numpy(tokens[i:i + seq].astype(np.int64)) for i in ix])
        y = torch.stack([torch.from_numpy(tokens[i + 1:i + 1 + seq].astype(np.int64)) for i in ix])
        for g in opt.param_groups:
            g["lr"] = 1e-3
        with ctx():
            _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()
    return step, sum(p.numel() for p in model.parameters())


def ours_step(shape: dict, tokens: np.ndarray, batch: int, seq: int, dtype: str, compile_model=False,
              compile_opt=False):
    torch.manual_seed(0)
    cfg = RunConfig(model=ModelConfig(seq_len=seq, **shape), batch_size=batch, dtype=dtype)
    model = GPT(cfg.model)
    optims = make_optimizers(model, cfg)
    stepper = torch.compile(model) if compile_model else model
    if compile_opt:
        for opt in optims:
            opt.step = torch.compile(opt.step)   # the recipe for a compiled optimizer step
    state = {"step": 0}

    def step():
        loss, _ = train_step(model, stepper, optims, cfg, tokens, state["step"], 1e-3)
        state["step"] += 1
        return float(loss.detach())
    return step, param_counts(cfg.model)["active_nonembedding"]


def _time(fn, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return time.perf_counter() - t0


def paired(a, b, rounds: int, steps: int, warmup: int = 3) -> dict:
    """Median over interleaved rounds of time(b) / time(a): a's speed relative to b's."""
    for _ in range(warmup):
        a()
        b()
    ratios, ta, tb = [], [], []
    for _ in range(rounds):
        x, y = _time(a, steps), _time(b, steps)
        ta.append(x)
        tb.append(y)
        ratios.append(y / x)
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {"ratio": statistics.median(ratios), "q25": q[0], "q75": q[2],
            "a_step_s": statistics.median(ta) / steps, "b_step_s": statistics.median(tb) / steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the model and the optimizer step")
    ap.add_argument("--shapes", default=",".join(SHAPES))
    args = ap.parse_args()
    tokens = np.random.default_rng(0).integers(0, 256, 2_000_000).astype(np.uint16)
    rows = []
    for name in args.shapes.split(","):
        shape = SHAPES[name]
        tokens_per_step = args.batch * args.seq
        steps = max(2, int(60_000 / tokens_per_step * 64 / shape["d_model"] / shape["n_layers"] * 2))
        ours32, n_ne = ours_step(shape, tokens, args.batch, args.seq, "fp32")
        nano32, _ = nanogpt_step(shape, tokens, args.batch, args.seq, "fp32")
        fp32 = paired(ours32, nano32, args.rounds, steps)
        ours16, _ = ours_step(shape, tokens, args.batch, args.seq, "bf16")
        nano16, _ = nanogpt_step(shape, tokens, args.batch, args.seq, "bf16")
        bf16 = paired(ours16, nano16, args.rounds, steps)
        bf16_vs_fp32 = paired(ours16, ours32, args.rounds, steps)
        row = {"model": name, "nonembedding_params": n_ne, "batch": args.batch, "seq_len": args.seq,
               "steps_per_round": steps, "rounds": args.rounds,
               "fp32_tokens_per_s": tokens_per_step / fp32["a_step_s"],
               "baseline_fp32_tokens_per_s": tokens_per_step / fp32["b_step_s"],
               "fp32_ratio": fp32["ratio"], "fp32_ratio_iqr": [fp32["q25"], fp32["q75"]],
               "bf16_ratio": bf16["ratio"], "bf16_ratio_iqr": [bf16["q25"], bf16["q75"]],
               "bf16_over_fp32": bf16_vs_fp32["ratio"]}
        if args.compile:
            comp, _ = ours_step(shape, tokens, args.batch, args.seq, "fp32", compile_model=True)
            t0 = time.perf_counter()
            comp()
            row["compile_s"] = time.perf_counter() - t0
            row["compiled_model_over_eager"] = paired(comp, ours32, args.rounds, steps)["ratio"]
            copt, _ = ours_step(shape, tokens, args.batch, args.seq, "fp32", compile_opt=True)
            copt()
            row["compiled_optimizer_over_eager"] = paired(copt, ours32, args.rounds, steps)["ratio"]
        rows.append(row)
        if not args.json:
            extra = ""
            if args.compile:
                extra = (f"  compiled model {row['compiled_model_over_eager']:.2f}x eager (compile {row['compile_s']:.0f} s),"
                         f" compiled optimizer step {row['compiled_optimizer_over_eager']:.2f}x")
            print(f"{name:11s} {n_ne / 1e6:5.2f}M  fp32 {row['fp32_tokens_per_s']:8.0f} tok/s = {row['fp32_ratio']:.3f}x baseline "
                  f"(IQR {row['fp32_ratio_iqr'][0]:.2f}-{row['fp32_ratio_iqr'][1]:.2f})  bf16 {row['bf16_ratio']:.3f}x baseline bf16, "
                  f"{row['bf16_over_fp32']:.2f}x our fp32{extra}", flush=True)
    met = all(r["fp32_ratio"] >= TARGET for r in rows)
    summary = {"rows": rows, "target_fp32_ratio": TARGET, "target_met": met, "threads": torch.get_num_threads()}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"target: fp32 tokens/s >= {TARGET:.1f}x the baseline at every shape: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
