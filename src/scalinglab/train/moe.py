"""Mixture-of-Experts MLP: a learned top-k router over E experts.

* Shazeer et al. 2017 (sparsely-gated MoE), https://arxiv.org/abs/1701.06538
* Fedus et al. 2021, Switch Transformers (load-balancing loss, coefficient 0.01),
  https://arxiv.org/abs/2101.03961
* Zoph et al. 2022, ST-MoE (router z-loss, coefficient 1e-3), https://arxiv.org/abs/2202.08906

Shape suffixes: N tokens (B*T flattened), D d_model, E experts, F expert d_ff.
"""
from __future__ import annotations


import torch
import torch.nn as nn
import torch.nn.functional as F


class MoEMLP(nn.Module):
    def __init__(self, cfg, expert_d_ff: int):
        super().__init__()
        self.n_experts, self.top_k, self.kind = cfg.n_experts, cfg.top_k, cfg.mlp
        D, E, Fh = cfg.d_model, cfg.n_experts, expert_d_ff
        up = 2 * Fh if cfg.mlp == "swiglu" else Fh
        self.router = nn.Linear(D, E, bias=False)
        self.w_up = nn.Parameter(torch.randn(E, D, up) * 0.02)
        self.w_down = nn.Parameter(torch.randn(E, Fh, D) * 0.02)
        self.last_stats: dict = {}

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        B, T, D = x_BTD.shape
        x_ND = x_BTD.reshape(-1, D)
        logits_NE = self.router(x_ND).float()
        probs_NE = logits_NE.softmax(-1)
        weights_NK, experts_NK = probs_NE.topk(self.top_k, dim=-1)
        weights_NK = (weights_NK / weights_NK.sum(-1, keepdim=True)).to(x_ND.dtype)
        out_ND = torch.zeros_like(x_ND)
        counts = torch.bincount(experts_NK.flatten(), minlength=self.n_experts)
        for e in range(self.n_experts):
            if counts[e] == 0:
                continue
            tok, slot = (experts_NK == e).nonzero(as_tuple=True)
            h = x_ND[tok] @ self.w_up[e]
            if self.kind == "swiglu":
                gate, val = h.chunk(2, dim=-1)
                h = F.silu(gate) * val
            else:
                h = F.gelu(h)
            out_ND.index_add_(0, tok, (h @ self.w_down[e]) * weights_NK[tok, slot, None])
        load_E = counts.float() / experts_NK.numel()
        self.last_stats = {
            # Switch: E * sum_e (fraction of assignments to e) * (mean router probability of e)
            "load_balance": self.n_experts * (load_E * probs_NE.mean(0)).sum(),
            "z_loss": torch.logsumexp(logits_NE, dim=-1).pow(2).mean(),
            "load": load_E,
        }
        return out_ND.view(B, T, D)

    def extra_repr(self) -> str:
        return f"experts={self.n_experts}, top_k={self.top_k}"


