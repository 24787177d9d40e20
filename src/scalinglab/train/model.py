"""A small modern GPT in one file: pre-norm blocks, RMSNorm, rotary positions, SwiGLU/GELU MLP.

Shape suffixes: B batch, T time (sequence), D d_model, H heads, K head_dim, F d_ff, V vocab.
The model answers questions about itself: :meth:`GPT.param_counts` (by group, asserted to sum to
the real total) and :meth:`GPT.flops_per_token` (counted by structure; active experts only).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig, derived_sizes, layer_mixers, param_counts, ssm_matmul_params
from .moe import MoEMLP
from .norms import RMSNorm, scaled
from .ssm import SelectiveSSM

ATTENTION_CONVENTIONS = ("full", "causal")


def rotary_tables(seq_len: int, head_dim: int, base: float = 10000.0):
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    ang_TK = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv)
    return ang_TK.cos(), ang_TK.sin()


def apply_rotary(x_BTHK: torch.Tensor, cos_TK: torch.Tensor, sin_TK: torch.Tensor) -> torch.Tensor:
    """Rotate each (even, odd) pair of the last dimension by the position's angle; ``x`` is laid out
    (batch, time, ..., head_dim) with time on dimension 1.

    Eager: one complex multiplication, (x_even + i x_odd)(cos + i sin), in fp32 (bf16 has no complex
    type), about 4x faster than the written-out form with its strided slices; the result has the
    input's dtype. Under ``torch.compile``: the written-out form, which inductor fuses.
    """
    T, K = x_BTHK.shape[1], x_BTHK.shape[-1]
    lead = (1,) * (x_BTHK.dim() - 3)
    if torch.compiler.is_compiling():   # inductor generates no code for complex numbers; it fuses this
        c, s = (t[:T].view(T, *lead, K // 2).to(x_BTHK.dtype) for t in (cos_TK, sin_TK))
        x1, x2 = x_BTHK[..., 0::2], x_BTHK[..., 1::2]
        return torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1).flatten(-2)
    rot_TK = torch.complex(cos_TK[:T], sin_TK[:T]).view(T, *lead, K // 2)
    x = torch.view_as_complex(x_BTHK.float().reshape(*x_BTHK.shape[:-1], K // 2, 2))
    return torch.view_as_real(x * rot_TK).flatten(-2).to(x_BTHK.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads, self.impl = cfg.n_heads, cfg.attn_impl
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def forward(self, x_BTD, cos_TK, sin_TK, cache=None, gain_D=None):
        B, T, D = x_BTD.shape
        qkv_BT3HK = F.linear(x_BTD, scaled(self.qkv.weight, gain_D)).view(B, T, 3, self.n_heads, D // self.n_heads)
        offset = 0 if cache is None else cache["len"]
        # q and k rotated together, kept in (B, T, H, K) memory order: the fused attention kernel
        # reads and writes that layout fastest on CPU
        qk_BT2HK, v_BT1HK = qkv_BT3HK.split([2, 1], dim=2)   # split, not slices: no zero-filled gradients
        q, k = (t.transpose(1, 2) for t in apply_rotary(qk_BT2HK, cos_TK[offset:], sin_TK[offset:]).unbind(2))
        v = v_BT1HK.squeeze(2).transpose(1, 2)
        if cache is not None:
            if cache.get("k") is not None:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        causal = cache is None or offset == 0
        if self.impl == "sdpa" and (causal or T == 1):
            y_BHTK = F.scaled_dot_product_attention(q, k, v, is_causal=causal and T > 1)
        else:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
            S = k.shape[2]
            mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(diagonal=S - T)
            y_BHTK = att.masked_fill(~mask, float("-inf")).softmax(-1) @ v
        return self.proj(y_BHTK.transpose(1, 2).reshape(B, T, D))


class MLP(nn.Module):
    def __init__(self, d_model: int, d_ff: int, kind: str):
        super().__init__()
        self.kind = kind
        self.up = nn.Linear(d_model, (2 if kind == "swiglu" else 1) * d_ff, bias=False)
        self.down = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x_BTD, gain_D=None):
        w_up = scaled(self.up.weight, gain_D)
        if self.kind == "swiglu":
            # two products with the halves of one weight: contiguous gate and value, and no (B, T, 2F)
            # concatenation of their gradients in the backward pass
            w_gate, w_val = w_up.chunk(2, dim=0)
            h = F.silu(F.linear(x_BTD, w_gate)) * F.linear(x_BTD, w_val)
        else:
            h = F.gelu(F.linear(x_BTD, w_up))
        return self.down(h)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, mixer: str = "attention"):
        super().__init__()
        sizes = derived_sizes(cfg)
        self.norm1, self.norm2 = RMSNorm(cfg.d_model), RMSNorm(cfg.d_model)
        self.attn = Attention(cfg) if mixer == "attention" else SelectiveSSM(cfg)
        self.mlp = MoEMLP(cfg, sizes["expert_d_ff"]) if cfg.is_moe else MLP(cfg.d_model, sizes["d_ff"], cfg.mlp)

    def forward(self, x_BTD, cos_TK, sin_TK, cache=None):
        # the norms' gains are folded into the linear maps that read them (RMSNorm.unit); a Mixture of
        # Experts' router and experts read the gained norm
        x_BTD = x_BTD + self.attn(self.norm1.unit(x_BTD), cos_TK, sin_TK, cache, gain_D=self.norm1.weight)
        if isinstance(self.mlp, MLP):
            return x_BTD + self.mlp(self.norm2.unit(x_BTD), gain_D=self.norm2.weight)
        return x_BTD + self.mlp(self.norm2(x_BTD))


class GPT(nn.Module):
    """Decoder-only transformer (dense or MoE) over ``ModelConfig``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, mixer) for mixer in layer_mixers(cfg))
        self.norm = RMSNorm(cfg.d_model)
        self.head = None if cfg.tied_embeddings else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        cos, sin = rotary_tables(cfg.seq_len, cfg.d_model // cfg.n_heads)
        self.register_buffer("cos_TK", cos, persistent=False)
        self.register_buffer("sin_TK", sin, persistent=False)
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("down.weight") or name.endswith("w_down"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init(m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, idx_BT: torch.Tensor, targets_BT: torch.Tensor | None = None, caches=None):
        """Logits (B, T, V), the cross-entropy (nats/token, no auxiliary terms) and the router's
        auxiliary losses and per-expert load (empty for dense models)."""
        x = self.embed(idx_BT)
        for i, block in enumerate(self.blocks):
            x = block(x, self.cos_TK, self.sin_TK, None if caches is None else caches[i])
        x = self.norm.unit(x)
        logits_BTV = F.linear(x, scaled(self.embed.weight if self.head is None else self.head.weight, self.norm.weight))
        loss = None
        if targets_BT is not None:
            loss = F.cross_entropy(logits_BTV.float().flatten(0, 1), targets_BT.flatten())
        aux = {}
        if self.cfg.is_moe:
            stats = [b.mlp.last_stats for b in self.blocks]
            aux = {"load_balance": torch.stack([s["load_balance"] for s in stats]).mean(),
                   "z_loss": torch.stack([s["z_loss"] for s in stats]).mean(),
                   "expert_load": torch.stack([s["load"] for s in stats]).detach()}
        return logits_BTV, loss, aux

    def training_loss(self, loss: torch.Tensor, aux: dict) -> torch.Tensor:
        """Cross-entropy plus the router's weighted auxiliary losses (training only)."""
        if not aux:
            return loss
        return loss + self.cfg.router_aux_coef * aux["load_balance"] + self.cfg.router_z_coef * aux["z_loss"]

    # -- the model answers questions about itself ---------------------------------------------------
    def param_counts(self) -> dict[str, int]:
        """Parameters by group (:func:`~scalinglab.train.config.param_counts`, closed form); ``total`` is
        asserted equal to the real parameter count."""
        c = param_counts(self.cfg)
        real = sum(p.numel() for p in self.parameters())
        assert c["total"] == real, f"param_counts total {c['total']} != real {real}"
        return c

    def flops_per_token(self, seq_len: int | None = None, attention: str = "full") -> dict[str, float]:
        """Forward matmul FLOPs per token, by structure (active experts only).

        ``attention="full"`` counts QK^T and AV over the whole T x T matrix (4 T D per layer, what a
        matmul-level counter sees); ``"causal"`` counts the unmasked half. An SSM block's parallel (dual)
        form computes the same T x T products (``attention_scores`` covers both mixers); its projections
        are ``ssm_proj``. The embedding lookup is no matmul; a tied head is one (V x D). ``training`` =
        3 x ``forward`` (backward = 2 x forward).
        """
        if attention not in ATTENTION_CONVENTIONS:
            raise ValueError(f"attention convention must be one of {ATTENTION_CONVENTIONS}")
        cfg, sizes = self.cfg, derived_sizes(self.cfg)
        T = cfg.seq_len if seq_len is None else seq_len
        D, L = cfg.d_model, cfg.n_layers
        mult = 3 if cfg.mlp == "swiglu" else 2
        n_ssm = layer_mixers(cfg).count("ssm")
        dense = {"attention_proj": 2 * (L - n_ssm) * 4 * D * D, "ssm_proj": 2 * n_ssm * ssm_matmul_params(D, cfg.n_heads),
                 "attention_scores": 4 * L * T * D * (0.5 if attention == "causal" else 1.0),
                 "mlp": 2 * L * mult * D * (cfg.top_k * sizes["expert_d_ff"] if cfg.is_moe else sizes["d_ff"]),
                 "router": 2 * L * D * cfg.n_experts, "head": 2 * D * cfg.vocab_size}
        fwd = float(sum(dense.values()))
        return dict(dense, forward=fwd, training=3 * fwd, attention_convention=attention)
