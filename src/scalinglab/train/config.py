"""Frozen, keyword-only configs: the only inputs to a model and to a run. Derived sizes live in
:func:`derived_sizes`."""
from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """A decoder-only transformer: pre-norm, RMSNorm, rotary positions, SwiGLU or GELU MLP.

    ``n_experts > 0`` makes every MLP a Mixture of Experts with a learned top-``top_k`` router.
    With ``iso_active=True`` each expert's hidden width is ``d_ff / top_k``, so the MoE model has
    the same active parameters as the dense model of the same shape; its granularity (Krajewski et al.
    2024) is ``d_ff / expert_d_ff``.

    ``mixer`` is the sequence mixer of every block: ``attention`` (causal self-attention with rotary
    positions), ``ssm`` (a selective state-space mixer in the Mamba-2 style, :mod:`.ssm`) or ``hybrid``
    (SSM blocks with attention at every second block, :func:`layer_mixers`).
    """

    vocab_size: int = 256
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int | None = None          # default: 8/3 d_model (SwiGLU) or 4 d_model (GELU), rounded to 8
    mlp: str = "swiglu"              # "swiglu" | "gelu"
    tied_embeddings: bool = True
    seq_len: int = 128
    n_experts: int = 0
    top_k: int = 2
    iso_active: bool = True
    expert_d_ff: int | None = None   # overrides the iso-active width
    router_aux_coef: float = 0.01    # Switch-Transformer load-balancing loss weight
    router_z_coef: float = 1e-3      # router z-loss weight (0 disables)
    attn_impl: str = "sdpa"          # "sdpa" (fused) | "math" (explicit matmuls)
    mixer: str = "attention"         # "attention" | "ssm" | "hybrid"

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError("head dimension must be even for rotary embeddings")
        if self.mlp not in ("swiglu", "gelu"):
            raise ValueError(f"mlp must be 'swiglu' or 'gelu', not {self.mlp!r}")
        if self.n_experts and not 1 <= self.top_k <= self.n_experts:
            raise ValueError(f"top_k={self.top_k} must be in [1, n_experts={self.n_experts}]")
        if self.attn_impl not in ("sdpa", "math"):
            raise ValueError(f"attn_impl must be 'sdpa' or 'math', not {self.attn_impl!r}")
        if self.mixer not in MIXERS:
            raise ValueError(f"mixer must be one of {', '.join(MIXERS)}, not {self.mixer!r}")

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 0


MIXERS = ("attention", "ssm", "hybrid")


def layer_mixers(cfg: ModelConfig) -> list[str]:
    """The sequence mixer of each block: a hybrid puts attention at every second block (a one-block hybrid
    is an SSM)."""
    if cfg.mixer == "hybrid":
        return ["attention" if i % 2 else "ssm" for i in range(cfg.n_layers)]
    return [cfg.mixer] * cfg.n_layers


def ssm_matmul_params(d_model: int, n_heads: int) -> int:
    """Weights of one SSM mixer (:mod:`.ssm`) that take part in matmuls: the in-projection (q, k, v and one step
    per head) and the output projection."""
    return d_model * (3 * d_model + n_heads) + d_model * d_model


def ssm_projection_params(d_model: int, n_heads: int) -> int:
    """Parameters of one SSM mixer: :func:`ssm_matmul_params` and the per-head step bias and decay rate."""
    return ssm_matmul_params(d_model, n_heads) + 2 * n_heads


def derived_sizes(cfg: ModelConfig) -> dict:
    """Every size computed from a config, in one place: head_dim, d_ff, expert_d_ff."""
    if cfg.d_ff is not None:
        d_ff = cfg.d_ff
    elif cfg.mlp == "swiglu":
        d_ff = 8 * math.ceil(8 * cfg.d_model / 3 / 8)
    else:
        d_ff = 4 * cfg.d_model
    expert_d_ff = cfg.expert_d_ff or (max(1, d_ff // cfg.top_k) if cfg.iso_active else d_ff)
    return {"head_dim": cfg.d_model // cfg.n_heads, "d_ff": d_ff, "expert_d_ff": expert_d_ff if cfg.is_moe else 0}


def param_counts(cfg: ModelConfig) -> dict[str, int]:
    """Parameters by group, in closed form from the config (no model is built).

    ``nonembedding`` excludes the token embedding and an untied output head (Kaplan et al. 2020);
    ``active`` counts the top-k experts only. :meth:`GPT.param_counts` asserts that ``total`` equals
    the real parameter count of the built model.
    """
    sizes = derived_sizes(cfg)
    D, L = cfg.d_model, cfg.n_layers
    n_ssm = layer_mixers(cfg).count("ssm")
    c = {"embedding": cfg.vocab_size * D, "head": 0 if cfg.tied_embeddings else cfg.vocab_size * D,
         "attention": (L - n_ssm) * 4 * D * D, "ssm": n_ssm * ssm_projection_params(D, cfg.n_heads),
         "norms": (2 * L + 1) * D, "mlp": 0, "router": 0, "experts_total": 0, "experts_active": 0}
    mult = 3 if cfg.mlp == "swiglu" else 2
    if cfg.is_moe:
        per_expert = mult * D * sizes["expert_d_ff"]
        c["router"] = L * D * cfg.n_experts
        c["experts_total"] = L * cfg.n_experts * per_expert
        c["experts_active"] = L * cfg.top_k * per_expert
    else:
        c["mlp"] = L * mult * D * sizes["d_ff"]
    c["total"] = (c["embedding"] + c["head"] + c["attention"] + c["ssm"] + c["norms"] + c["mlp"] + c["router"]
                  + c["experts_total"])
    c["nonembedding"] = c["total"] - c["embedding"] - c["head"]
    c["active"] = c["total"] - c["experts_total"] + c["experts_active"]
    c["active_nonembedding"] = c["active"] - c["embedding"] - c["head"]
    return c


HORIZON_KINDS = ("steps", "tokens", "flops", "tokens_per_param")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything that defines one training run (and so its key in the store).

    The horizon is exactly one of ``steps``, ``tokens``, ``flops`` (C = 6 N D, N = active
    parameters) or ``tokens_per_param``; it is resolved to a step count by :func:`resolve_horizon`.
    """

    model: ModelConfig
    corpus: str = "stdlib"
    tokenizer: str = "byte"
    horizon: str = "tokens"
    horizon_value: float = 1e6
    batch_size: int = 16
    lr: float = 3e-3
    min_lr_frac: float = 0.1
    warmup_frac: float = 0.05
    warmup_steps: int | None = None  # absolute warmup (overrides warmup_frac; WSD branches share it)
    schedule: str = "cosine"         # "cosine" | "wsd" (warmup, constant, 1-sqrt cooldown)
    cooldown_frac: float = 0.2       # WSD: the last this fraction of steps decays to min_lr
    optimizer: str = "adamw"         # "adamw" | "muon"
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    n_evals: int = 8
    eval_tokens: int = 32768
    device: str = "cpu"
    dtype: str = "fp32"              # "fp32" | "bf16" (autocast)
    compile: bool = False
    diverge_factor: float = 1.5      # loss above this x the initial loss after warmup = diverged
    distill_teacher: str | None = None   # run id of a teacher checkpoint (in the same checkpoint dir)
    distill_alpha: float = 0.5           # weight of the KL term (1 - alpha on the hard labels)
    distill_temperature: float = 2.0
    keep_eval_checkpoints: bool = False  # also save the weights at every evaluation step (changes no result)

    def __post_init__(self):
        if self.horizon not in HORIZON_KINDS:
            raise ValueError(f"horizon must be one of {', '.join(HORIZON_KINDS)}, not {self.horizon!r}")
        if not self.horizon_value > 0:
            raise ValueError(f"horizon value must be positive, got {self.horizon_value}")
        if self.schedule not in ("cosine", "wsd"):
            raise ValueError(f"schedule must be 'cosine' or 'wsd', not {self.schedule!r}")
        if not 0.0 < self.cooldown_frac <= 1.0:
            raise ValueError(f"cooldown_frac must be in (0, 1], got {self.cooldown_frac}")
        if self.warmup_steps is not None and self.warmup_steps < 1:
            raise ValueError(f"warmup_steps must be at least 1, got {self.warmup_steps}")
        if self.optimizer not in ("adamw", "muon"):
            raise ValueError(f"optimizer must be 'adamw' or 'muon', not {self.optimizer!r}")
        if self.dtype not in ("fp32", "bf16"):
            raise ValueError(f"dtype must be 'fp32' or 'bf16', not {self.dtype!r}")

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.model.seq_len

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def key_dict(self) -> dict:
        """The fields that change results (device/compile/dtype of execution included; nothing cosmetic).

        Fields added after the first release are left out while at their defaults, so runs keyed before
        keep their keys."""
        d = self.to_dict()
        for name, default in _LATER_FIELDS.items():
            if d.get(name) == default:
                d.pop(name, None)
        for name, default in _LATER_MODEL_FIELDS.items():
            if d["model"].get(name) == default:
                d["model"].pop(name, None)
        d.pop("keep_eval_checkpoints", None)    # what is saved, not what is trained
        return d

    def trunk_key_dict(self) -> dict:
        """What fixes a WSD run's constant-LR prefix: everything but the horizon and the cooldown. Branches
        of one trunk (same model, data, seed, warmup, peak LR) share the prefix up to their branch point."""
        d = self.key_dict()
        for name in ("horizon", "horizon_value", "cooldown_frac", "n_evals", "min_lr_frac"):
            d.pop(name, None)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        d = dict(d)
        d["model"] = ModelConfig(**d["model"])
        return cls(**d)


_LATER_FIELDS = {"warmup_steps": None, "cooldown_frac": 0.2}
_LATER_MODEL_FIELDS = {"mixer": "attention"}


def warmup_steps_of(cfg: RunConfig, total: int) -> int:
    """Warmup length in steps: ``warmup_steps`` if given, else ``warmup_frac`` of the run."""
    if cfg.warmup_steps is not None:
        return min(cfg.warmup_steps, total)
    return max(1, round(cfg.warmup_frac * total))


def branch_step_of(cfg: RunConfig, total: int) -> int:
    """WSD: the step where the cooldown starts (the end of the shared constant-LR prefix)."""
    return max(warmup_steps_of(cfg, total), total - max(1, round(cfg.cooldown_frac * total)))


def resolve_horizon(cfg: RunConfig, n_active: float) -> dict:
    """Turn the one horizon given into steps, tokens, FLOPs (6 N_active D) and tokens per parameter."""
    tps = cfg.tokens_per_step
    if cfg.horizon == "steps":
        steps = int(cfg.horizon_value)
    elif cfg.horizon == "tokens":
        steps = math.ceil(cfg.horizon_value / tps)
    elif cfg.horizon == "flops":
        steps = math.ceil(cfg.horizon_value / (6.0 * n_active) / tps)
    else:
        steps = math.ceil(cfg.horizon_value * n_active / tps)
    steps = max(steps, 1)
    tokens = steps * tps
    return {"steps": steps, "tokens": tokens, "flops_6nd": 6.0 * n_active * tokens,
            "tokens_per_param": tokens / n_active, "given": f"{cfg.horizon}={cfg.horizon_value:g}"}


def decode_costs(cfg: ModelConfig, context: int, precision: str = "bf16") -> dict:
    """What one generated token costs a model whose new token attends over ``context`` tokens (itself
    included): forward matmul FLOPs as a matmul-level counter sees them (``FlopCounterMode``; the weights'
    ``2 N`` with the head's one V x D product, plus each mixer's own term: attention reads the key/value
    cache, ``4 context d_model`` per block; an SSM block updates and reads its K x K state per head,
    ``4 d_model head_dim``, whatever the context) and the bytes held per sequence (key/value cache or SSM
    state) at ``precision``."""
    from ..accounting import BYTES_PER_PARAM, kv_cache_bytes
    mixers = layer_mixers(cfg)
    n_attn, n_ssm = mixers.count("attention"), mixers.count("ssm")
    K = cfg.d_model // cfg.n_heads
    c = param_counts(cfg)
    matmul_weights = c["active_nonembedding"] - c["norms"] - c["ssm"] + n_ssm * ssm_matmul_params(cfg.d_model, cfg.n_heads)
    weights = 2.0 * matmul_weights + 2.0 * cfg.vocab_size * cfg.d_model
    mixer_flops = 4.0 * n_attn * context * cfg.d_model + 4.0 * n_ssm * cfg.d_model * K
    cache = kv_cache_bytes(n_attn, cfg.n_heads, K, context, precision=precision) if n_attn else 0.0
    state = n_ssm * cfg.n_heads * K * K * BYTES_PER_PARAM[precision]
    return {"decode_flops_per_token": weights + mixer_flops, "sequence_state_bytes": cache + state,
            "kv_cache_bytes": cache, "ssm_state_bytes": state, "context": context, "precision": precision}
