"""A selective state-space sequence mixer in the Mamba-2 style (state-space duality), in plain PyTorch.

* Gu and Dao 2023, Mamba: linear-time sequence modeling with selective state spaces,
  https://arxiv.org/abs/2312.00752 (input-dependent step size: the "selective" part)
* Dao and Gu 2024, Transformers are SSMs (Mamba-2, SSD: a scalar decay per head, the recurrence and its
  quadratic "attention-like" dual form), https://arxiv.org/abs/2405.21060

Per head, with state ``h`` (K x K), input-dependent step ``dt_t = softplus(w_dt . x_t + b)`` and decay
``a_t = exp(-dt_t * A)``::

    h_t = a_t h_{t-1} + k_t (dt_t v_t)^T          y_t = q_t h_t / sqrt(K)

(q, k, v play Mamba's C, B and x). Training uses the dual form ``Y = (L * (Q K^T / sqrt(K))) (dt V)`` with
``L[t, s] = prod_{r=s+1..t} a_r`` (s <= t), the same T x T products as attention, and so the same
matmul FLOPs; decoding uses the recurrence: a fixed-size state instead of a growing key/value cache.
The head outputs are RMS-normalised (no gain) before the output projection, as Mamba-2's gated norm
and gated linear attention's group norm do. No positional encoding: the decay orders the tokens.

Shape suffixes: B batch, T time, D d_model, H heads, K head_dim.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .norms import _UnitRMSNormFn, scaled


class SelectiveSSM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D, H = cfg.d_model, cfg.n_heads
        self.n_heads = H
        self.qkv_dt = nn.Linear(D, 3 * D + H, bias=False)
        self.proj = nn.Linear(D, D, bias=False)
        # Mamba's initialisation: steps log-uniform in [1e-3, 1e-1] (through the inverse softplus), decay
        # rates A spread over [1, 16] across heads
        dt = torch.exp(torch.linspace(math.log(1e-3), math.log(1e-1), H))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.linspace(1.0, 16.0, H)))

    def forward(self, x_BTD, cos_TK=None, sin_TK=None, cache=None, gain_D=None):
        B, T, D = x_BTD.shape
        H = self.n_heads
        K = D // H
        z_BTE = F.linear(x_BTD, scaled(self.qkv_dt.weight, gain_D))
        qkv_BTD3, dt_BTH = z_BTE.split([3 * D, H], dim=-1)
        q, k, v = (t.transpose(1, 2) for t in qkv_BTD3.view(B, T, 3, H, K).unbind(2))     # (B, H, T, K)
        dt_BHT = F.softplus(dt_BTH.to(torch.promote_types(dt_BTH.dtype, torch.float32)) + self.dt_bias).transpose(1, 2)
        cum_BHT = (-dt_BHT * self.A_log.exp()[:, None]).cumsum(-1)                           # log prod a
        v = v * dt_BHT[..., None].to(v.dtype)
        h0 = None if cache is None else cache.get("state")
        if h0 is not None and T == 1:       # decoding: the recurrence itself, a fixed cost per token
            h = h0 * cum_BHT[..., None].exp().to(h0.dtype) + k.transpose(-2, -1) @ v
            cache["state"] = h
            y_BHTK = (q @ h) / math.sqrt(K)
        else:
            seg_BHTT = cum_BHT[..., :, None] - cum_BHT[..., None, :]
            causal = torch.ones(T, T, dtype=torch.bool, device=x_BTD.device).tril()
            decay_BHTT = seg_BHTT.masked_fill(~causal, float("-inf")).exp().to(q.dtype)
            y_BHTK = ((q @ k.transpose(-2, -1)) * (decay_BHTT / math.sqrt(K))) @ v
            if cache is not None:
                if h0 is not None:      # the state carried from earlier tokens, decayed to each position
                    y_BHTK = y_BHTK + (q @ h0) * (cum_BHT.exp()[..., None] / math.sqrt(K)).to(q.dtype)
                w_BHT = (cum_BHT[..., -1:] - cum_BHT).exp().to(k.dtype)
                h = (k * w_BHT[..., None]).transpose(-2, -1) @ v
                cache["state"] = h if h0 is None else h + h0 * cum_BHT[..., -1, None, None].exp().to(h.dtype)
        y_BHTK = _UnitRMSNormFn.apply(y_BHTK, 1e-6)
        return self.proj(y_BHTK.transpose(1, 2).reshape(B, T, D))

    def extra_repr(self) -> str:
        return f"heads={self.n_heads}, state=head_dim x head_dim"
