"""What it costs to train and to serve: hardware profiles, training cost, and serving cost with a
roofline (compute-bound vs memory-bandwidth-bound) per million input and output tokens.

Serving model (per decode step of a batch of B sequences at context T):
  compute   = B * (2 N_active + 4 L T d_kv)                       FLOPs (weights + attention over the cache)
  traffic   = weight bytes read + B * KV-cache bytes at context T  (MoE: all experts once B is large enough
              that every expert is hit, else only the touched ones)
  time/step = max(compute / (peak * mfu), traffic / bandwidth);    B output tokens per step.
Prefill (input tokens) is one forward pass over all prompt tokens, compute-bound in practice.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import tomllib
from pathlib import Path

from .accounting import BYTES_PER_PARAM, kv_cache_bytes


@dataclasses.dataclass(frozen=True)
class Hardware:
    """An accelerator profile. Peaks are vendor dense (no sparsity) numbers; prices are editable
    assumptions, not quotes."""

    name: str
    peak_bf16: float           # FLOP/s
    peak_fp8: float | None     # FLOP/s (None: no fp8 units)
    memory_bytes: float
    bandwidth: float           # bytes/s
    usd_per_hour: float
    measured: bool = False

    def peak(self, precision: str) -> float:
        if precision in ("fp8", "int8", "int4") and self.peak_fp8:
            return self.peak_fp8
        return self.peak_bf16


HARDWARE = {
    "H100": Hardware("H100 SXM", 989e12, 1979e12, 80e9, 3.35e12, 2.50),
    "A100": Hardware("A100 SXM 80GB", 312e12, None, 80e9, 2.0e12, 1.50),
    "L4": Hardware("L4", 121e12, 242e12, 24e9, 0.3e12, 0.80),
}


def matmul_peak(dtype=None, device: str = "cpu", n: int = 1024, reps: int = 20, bursts: int = 5) -> float:
    """Square-matmul FLOP/s measured now on ``device`` (``dtype`` a torch dtype; default float32): the
    reference that achieved training FLOP/s are reported against. ``reps`` products in ``bursts`` timed
    bursts; the fastest burst is the peak (a neighbour's load or a frequency dip slows a burst, never
    speeds one up)."""
    import torch
    a, b = torch.randn(n, n, dtype=dtype or torch.float32, device=device), torch.randn(n, n, dtype=dtype or torch.float32,
                                                                                       device=device)
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    bursts = max(1, bursts)
    per = max(1, reps // bursts)
    best = math.inf
    for _ in range(bursts):
        t0 = time.perf_counter()
        for _ in range(per):
            a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 * per / best


def measure_this_cpu(usd_per_hour: float = 0.0) -> Hardware:
    """Profile this machine on the spot: bf16 matmul peak, memory-copy bandwidth, total memory."""
    import numpy as np
    import torch
    peak = matmul_peak(torch.bfloat16)
    buf = np.ones(64 * 2 ** 20 // 8)
    dst = np.empty_like(buf)
    np.copyto(dst, buf)
    t0 = time.perf_counter()
    for _ in range(10):
        np.copyto(dst, buf)
    bw = 2 * buf.nbytes * 10 / (time.perf_counter() - t0)   # read + write
    mem = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return Hardware("this CPU (measured)", peak, None, mem, bw, usd_per_hour, measured=True)


def load_hardware(path: str | Path) -> dict[str, Hardware]:
    """Extra profiles from TOML/JSON: ``[NAME] peak_bf16=..., memory_bytes=..., bandwidth=..., usd_per_hour=...``."""
    path = Path(path)
    if path.suffix not in (".toml", ".json"):
        raise ValueError(f"{path}: a hardware file is .toml or .json")
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except FileNotFoundError:
        raise ValueError(f"no hardware file at {path}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, json.JSONDecodeError, IsADirectoryError) as e:
        raise ValueError(f"{path}: not a readable {path.suffix[1:].upper()} file ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected tables of hardware profiles ([NAME] with peak_bf16, memory_bytes, bandwidth, "
                         "usd_per_hour)")
    out = {}
    for name, fields in data.items():
        if not isinstance(fields, dict):
            raise ValueError(f"{path}: hardware {name!r} must be a table of fields, not {fields!r}")
        missing = {"peak_bf16", "memory_bytes", "bandwidth", "usd_per_hour"} - set(fields)
        if missing:
            raise ValueError(f"{path}: hardware {name!r} is missing {sorted(missing)}")
        try:
            values = [float(fields[k]) for k in ("peak_bf16", "memory_bytes", "bandwidth", "usd_per_hour")]
        except (TypeError, ValueError):
            raise ValueError(f"{path}: hardware {name!r}: peak_bf16, memory_bytes, bandwidth and usd_per_hour must be "
                             "numbers") from None
        if not all(math.isfinite(v) and v >= 0 for v in values) or not all(values[:3]):
            raise ValueError(f"{path}: hardware {name!r}: peak_bf16, memory_bytes and bandwidth must be positive and "
                             "usd_per_hour >= 0")
        out[name] = Hardware(fields.get("name", name), values[0], fields.get("peak_fp8"), *values[1:])
    return out


def hardware(name: str, extra: dict[str, Hardware] | None = None) -> Hardware:
    table = dict(HARDWARE, **(extra or {}))
    if name in ("cpu", "this-cpu"):
        return measure_this_cpu()
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown hardware {name!r}; known: {', '.join(table)}, cpu (measured now)") from None


NO_PRICE = "no price for this hardware: give --usd-per-hour (or usd_per_hour in a --hardware-file profile)"


def train_cost(n_params: float, tokens: float, hw: Hardware, mfu: float = 0.4, n_gpus: int = 1) -> dict:
    """FLOPs (6ND), GPU-hours, wall-clock days on ``n_gpus`` and dollars."""
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu}")
    flops = 6.0 * n_params * tokens
    gpu_hours = flops / (hw.peak_bf16 * mfu) / 3600.0
    return {"params": n_params, "tokens": tokens, "flops": flops, "hardware": hw.name, "mfu": mfu, "gpus": n_gpus,
            "gpu_hours": gpu_hours, "days": gpu_hours / n_gpus / 24.0,
            "usd": gpu_hours * hw.usd_per_hour if hw.usd_per_hour > 0 else None,
            "convention": "C = 6 N D (N = active parameters)"}


def default_shape(n_params: float) -> dict:
    """A Llama-like shape for a parameter count when none is given (an estimate, said so):
    d_model from N ~ 12 L d^2 with L ~ d / 128, grouped-query attention with 8 KV heads of 128."""
    d = (n_params * 128 / 12) ** (1 / 3)
    layers = max(1, round(d / 128))
    return {"layers": layers, "kv_heads": 8, "head_dim": 128, "estimated": True}


def serve_cost(n_params: float, hw: Hardware, *, active_params: float | None = None, precision: str = "bf16",
               context: int = 8192, batch: int = 1, layers: int | None = None, kv_heads: int | None = None,
               head_dim: int | None = None, kv_precision: str = "bf16", mfu: float = 0.5, n_gpus: int = 1,
               n_experts: int | None = None, top_k: int | None = None) -> dict:
    """Memory and the roofline cost per million output (decode) and input (prefill) tokens."""
    if precision not in BYTES_PER_PARAM:
        raise ValueError(f"unknown precision {precision!r}; accepted: {', '.join(BYTES_PER_PARAM)}")
    na = float(active_params or n_params)
    if na > n_params:
        raise ValueError(f"active parameters ({na:.3g}) exceed total parameters ({n_params:.3g})")
    shape = default_shape(n_params) if layers is None else {"layers": layers, "kv_heads": kv_heads or 8,
                                                            "head_dim": head_dim or 128, "estimated": False}
    L, H, K = shape["layers"], shape["kv_heads"], shape["head_dim"]
    weights = n_params * BYTES_PER_PARAM[precision]
    kv_seq = kv_cache_bytes(L, H, K, context, 1, kv_precision)
    need = weights + batch * kv_seq
    capacity = hw.memory_bytes * n_gpus
    # weight bytes one decode step reads: with MoE, the expected distinct experts a batch touches
    if n_experts and top_k and na < n_params:
        touched = 1 - (1 - top_k / n_experts) ** batch
        expert_share = (n_params - na) / (1 - top_k / n_experts) if top_k < n_experts else 0.0
        dense_part = n_params - expert_share
        read = (dense_part + expert_share * touched) * BYTES_PER_PARAM[precision]
    else:
        read = (n_params if na == n_params else na + (n_params - na) * min(1.0, batch * na / n_params)) * BYTES_PER_PARAM[precision]
    peak = hw.peak(precision) * mfu * n_gpus
    bw = hw.bandwidth * n_gpus
    attn = 4.0 * L * context * H * K       # QK^T and AV over the cache, per token (KV dim = H*K)
    step_compute = batch * (2 * na + attn)
    step_bytes = read + batch * kv_seq
    t_compute, t_memory = step_compute / peak, step_bytes / bw
    t_step = max(t_compute, t_memory)
    usd_per_s = hw.usd_per_hour * n_gpus / 3600.0 if hw.usd_per_hour > 0 else None    # None: no price known
    decode_per_m = t_step / batch * 1e6
    prefill_compute = 2 * na + attn / 2                     # causal prompt: average context T/2
    prefill_per_m = max(prefill_compute * 1e6 / peak, read / bw)
    return {
        "hardware": hw.name, "gpus": n_gpus, "precision": precision, "kv_precision": kv_precision, "mfu": mfu,
        "params_total": n_params, "params_active": na, "shape": shape, "context": context, "batch": batch,
        "memory": {"weights_bytes": weights, "kv_cache_bytes_per_sequence": kv_seq, "total_bytes": need,
                   "capacity_bytes": capacity, "fits": bool(need <= capacity),
                   "max_batch_that_fits": max(0, math.floor((capacity - weights) / kv_seq)) if kv_seq else None},
        "decode": {"compute_bound_s_per_step": t_compute, "bandwidth_bound_s_per_step": t_memory,
                   "bound": "compute" if t_compute >= t_memory else "memory bandwidth",
                   "tokens_per_s": batch / t_step,
                   "usd_per_million_output_tokens": None if usd_per_s is None else decode_per_m * usd_per_s},
        "prefill": {"usd_per_million_input_tokens": None if usd_per_s is None else prefill_per_m * usd_per_s,
                    "tokens_per_s": 1e6 / prefill_per_m},
        "notes": "; ".join(n for n in ("layers/KV heads/head dim estimated from N (Llama-like shape)" if shape["estimated"]
                                       else "", "" if usd_per_s else NO_PRICE) if n),
    }
