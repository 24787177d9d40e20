"""Training throughput on this machine: tokens/s and achieved FLOP/s (forward + backward + AdamW) of
dense models of ~0.1M, ~1M, ~3M and ~6M non-embedding parameters and one MoE model, each as a
fraction of the fp32 and bf16 matmul peaks measured in the same process.

FLOPs are counted by structure (``GPT.flops_per_token``, full attention, head included; training =
3 x forward). Targets (at >= 3M parameters): >= 60% of the fp32 peak in fp32; bf16 >= 1.5x the fp32
throughput.

    python benchmarks/bench_train.py [--json] [--steps 15]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from scalinglab.cost import matmul_peak
from scalinglab.train.config import ModelConfig, RunConfig
from scalinglab.train.model import GPT
from scalinglab.train.run import _autocast, make_optimizers

MODELS = {
    "dense-0.1M": dict(d_model=64, n_layers=2, n_heads=4),
    "dense-1M": dict(d_model=128, n_layers=5, n_heads=8),
    "dense-3M": dict(d_model=256, n_layers=4, n_heads=8),
    "dense-6M": dict(d_model=256, n_layers=8, n_heads=8),
    "moe-1M-active": dict(d_model=128, n_layers=5, n_heads=8, n_experts=4, top_k=2),
}


def train_throughput(shape: dict, dtype: str, batch: int, seq: int, steps: int) -> dict:
    torch.manual_seed(0)
    cfg = RunConfig(model=ModelConfig(seq_len=seq, **shape), dtype=dtype, batch_size=batch)
    model = GPT(cfg.model)
    opts = make_optimizers(model, cfg)
    x = torch.randint(0, 256, (batch, seq))

    def step():
        with _autocast(cfg):
            _, loss, aux = model(x, x)
            obj = model.training_loss(loss, aux)
        for o in opts:
            o.zero_grad(set_to_none=True)
        obj.backward()
        for o in opts:
            o.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    el = time.perf_counter() - t0
    tps = steps * batch * seq / el
    counts = model.param_counts()
    return {"nonembedding_params": counts["active_nonembedding"], "total_params": counts["total"],
            "tokens_per_s": tps, "flops_per_s": tps * model.flops_per_token(seq)["training"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=256)
    args = ap.parse_args()
    peaks = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    rows = []
    for name, shape in MODELS.items():
        row = {"model": name}
        for dtype in ("fp32", "bf16"):
            r = train_throughput(shape, dtype, args.batch, args.seq, args.steps)
            row.update({"nonembedding_params": r["nonembedding_params"], f"{dtype}_tokens_per_s": r["tokens_per_s"],
                        f"{dtype}_flops_per_s": r["flops_per_s"], f"{dtype}_frac_of_{dtype}_peak": r["flops_per_s"] / peaks[dtype],
                        f"{dtype}_frac_of_fp32_peak": r["flops_per_s"] / peaks["fp32"]})
        row["bf16_speedup"] = row["bf16_tokens_per_s"] / row["fp32_tokens_per_s"]
        rows.append(row)
    big = [r for r in rows if r["model"].startswith("dense") and r["nonembedding_params"] >= 3e6]
    result = {"threads": torch.get_num_threads(), "batch": args.batch, "seq_len": args.seq, "peak_flops_per_s": peaks,
              "models": rows,
              "targets": {"fp32_at_least_60pct_of_fp32_peak": all(r["fp32_frac_of_fp32_peak"] >= 0.6 for r in big),
                          "bf16_at_least_1.5x_fp32": all(r["bf16_speedup"] >= 1.5 for r in big)}}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"threads={result['threads']} batch={args.batch} seq={args.seq}  matmul peak: fp32 {peaks['fp32'] / 1e9:.0f} "
          f"GFLOP/s, bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")
    print(f"{'model':16s} {'N_nonemb':>9s} {'fp32 tok/s':>11s} {'fp32 GF/s':>9s} {'%peak32':>7s} {'bf16 tok/s':>11s} "
          f"{'bf16 GF/s':>9s} {'%peak16':>7s} {'bf16/fp32':>9s}")
    for r in rows:
        print(f"{r['model']:16s} {r['nonembedding_params']:9,d} {r['fp32_tokens_per_s']:11,.0f} {r['fp32_flops_per_s'] / 1e9:9.1f} "
              f"{r['fp32_frac_of_fp32_peak']:7.1%} {r['bf16_tokens_per_s']:11,.0f} {r['bf16_flops_per_s'] / 1e9:9.1f} "
              f"{r['bf16_frac_of_bf16_peak']:7.1%} {r['bf16_speedup']:9.2f}")
    print(f"targets: {result['targets']}")


if __name__ == "__main__":
    main()
