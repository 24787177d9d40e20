"""Post-training weight quantization: symmetric round-to-nearest, one scale per output channel.

``q = clamp(round(w / s), -(2^(b-1) - 1), 2^(b-1) - 1)`` with ``s = max|w_row| / (2^(b-1) - 1)``, so the
error of every weight is at most ``s / 2``. Weights are quantized then dequantized ("fake quant"), which
gives the loss of the quantized model exactly; the memory is counted as packed b-bit integers plus one
fp16 scale per channel. The tied embedding/head is kept in full precision (said in the report).
"""
from __future__ import annotations

import copy

import torch

from .model import GPT


def quantize_dequantize(w: torch.Tensor, bits: int, dim: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel RTN along ``dim`` (the reduction axis); returns (dequantized weight, scales)."""
    if not 2 <= bits <= 16:
        raise ValueError(f"bits must be in [2, 16], got {bits}")
    qmax = 2 ** (bits - 1) - 1
    scale = w.abs().amax(dim=dim, keepdim=True).clamp_min(1e-12) / qmax
    q = torch.clamp(torch.round(w / scale), -qmax, qmax)
    return q * scale, scale


def quantized_targets(model: GPT) -> list[tuple[str, torch.nn.Parameter, int]]:
    """(name, parameter, reduction dim) of every matrix quantized: linear layers and experts."""
    out = []
    for name, p in model.named_parameters():
        if name.startswith("embed") or p.ndim < 2:
            continue
        # nn.Linear weights are (out, in): reduce over in (-1). Expert banks are (E, in, out): reduce over in (1).
        out.append((name, p, 1 if p.ndim == 3 else -1))
    return out


@torch.no_grad()
def quantize_model(model: GPT, bits: int) -> tuple[GPT, dict]:
    """A copy of ``model`` with its matrices quantized to ``bits``; and the memory accounting."""
    q = copy.deepcopy(model)
    params = dict(q.named_parameters())
    n_quant, n_scales = 0, 0
    for name, p, dim in quantized_targets(model):
        deq, scale = quantize_dequantize(p.data, bits, dim)
        params[name].data.copy_(deq)
        n_quant += p.numel()
        n_scales += scale.numel()
    total = sum(p.numel() for p in model.parameters())
    full = total * 4.0
    quant = (total - n_quant) * 4.0 + n_quant * bits / 8.0 + n_scales * 2.0
    return q, {"bits": bits, "quantized_params": n_quant, "kept_params": total - n_quant,
               "bytes_fp32": full, "bytes_quantized": quant, "memory_saved_fraction": 1 - quant / full}
