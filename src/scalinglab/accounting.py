"""Parameter, FLOP and memory accounting with named conventions.

Conventions (each stored per run, and named in every figure):

* ``N_total``: every trainable parameter, embeddings and output head included.
* ``N_nonembedding``: ``N_total`` minus token embeddings and an untied output head
  (Kaplan et al. 2020, https://arxiv.org/abs/2001.08361, Sec. 2.1).
* ``N_active``: parameters that touch one token (MoE: only the top-k experts).
* ``C_6ND``: training FLOPs ``6 * N * D`` (Kaplan 2020; Hoffmann et al. 2022,
  https://arxiv.org/abs/2203.15556), with ``N`` the parameter convention named alongside.
* ``C_with_attention``: ``6 * N * D`` plus the attention score/value matmuls,
  ``6 * n_layers * seq_len * d_model * D`` (Kaplan's ``2 n_layer n_ctx d_attn`` forward term,
  no causal discount) -- the convention named ``"kaplan-attention"``.
"""
from __future__ import annotations

PF_DAY = 1e15 * 86400.0  # FLOPs in one petaflop/s-day

FLOP_CONVENTIONS = {
    "6ND": "training FLOPs = 6 x N x D",
    "6ND+attn": "training FLOPs = 6 x N x D + 6 x n_layers x seq_len x d_model x D (attention, no causal discount)",
}

PARAM_CONVENTIONS = {
    "N_total": "all trainable parameters",
    "N_nonembedding": "parameters excluding token embeddings and untied output head",
    "N_active": "parameters used per token (MoE: top-k experts only)",
}

BYTES_PER_PARAM = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}


def training_flops(n_params: float, tokens: float) -> float:
    """Training FLOPs under the ``6ND`` convention (forward 2ND + backward 4ND)."""
    return 6.0 * float(n_params) * float(tokens)


def attention_flops_per_token(n_layers: int, seq_len: int, d_model: int, *, causal: bool = False) -> float:
    """Forward FLOPs per token of the attention matmuls (QK^T and AV).

    Kaplan's convention counts ``2 * n_layers * seq_len * d_model`` per token; with ``causal=True``
    only the unmasked half of the score matrix is counted on average.
    """
    flops = 2.0 * n_layers * seq_len * d_model
    return flops / 2.0 if causal else flops


def training_flops_with_attention(n_params: float, tokens: float, n_layers: int, seq_len: int, d_model: int) -> float:
    """Training FLOPs: ``6ND`` plus three times the forward attention FLOPs (convention ``6ND+attn``)."""
    return 6.0 * float(n_params) * float(tokens) + 3.0 * attention_flops_per_token(n_layers, seq_len, d_model) * float(tokens)


def inference_flops_per_token(n_active: float, n_layers: int = 0, context: int = 0, d_model: int = 0) -> float:
    """Forward FLOPs to process one token: ``2 * N_active`` plus attention over ``context`` tokens."""
    return 2.0 * float(n_active) + attention_flops_per_token(n_layers, context, d_model)


def weight_bytes(n_params: float, precision: str = "bf16") -> float:
    """Bytes to hold ``n_params`` weights at ``precision`` (fp32, bf16, fp16, fp8, int8, int4)."""
    try:
        return float(n_params) * BYTES_PER_PARAM[precision]
    except KeyError:
        raise ValueError(f"unknown precision {precision!r}; accepted: {', '.join(BYTES_PER_PARAM)}") from None


def kv_cache_bytes(n_layers: int, n_kv_heads: int, head_dim: int, context: int, batch: int = 1, precision: str = "bf16") -> float:
    """Bytes of the key/value cache: ``2 (K and V) * layers * kv_heads * head_dim * context * batch``."""
    return 2.0 * n_layers * n_kv_heads * head_dim * context * batch * BYTES_PER_PARAM[precision]
