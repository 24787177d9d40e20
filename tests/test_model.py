import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from scalinglab.train.config import ModelConfig, derived_sizes
from scalinglab.train.model import GPT, Attention
from scalinglab.train.ssm import SelectiveSSM

SHAPES = [
    dict(d_model=32, n_layers=2, n_heads=2, mlp="swiglu", tied_embeddings=True),
    dict(d_model=48, n_layers=1, n_heads=3, mlp="gelu", tied_embeddings=False),
    dict(d_model=32, n_layers=2, n_heads=2, n_experts=4, top_k=2),
    dict(d_model=48, n_layers=2, n_heads=3, n_experts=3, top_k=1, mlp="gelu"),
    dict(d_model=32, n_layers=2, n_heads=2, mixer="ssm"),
    dict(d_model=48, n_layers=3, n_heads=3, mixer="hybrid", n_experts=4, top_k=2),
]


@pytest.mark.parametrize("kw", SHAPES)
def test_param_counts_sum_to_real_total(kw):
    m = GPT(ModelConfig(seq_len=16, **kw))
    c = m.param_counts()
    parts = ("embedding", "head", "attention", "ssm", "norms", "mlp", "router", "experts_total")
    assert sum(c[p] for p in parts) == c["total"] == sum(p.numel() for p in m.parameters())
    assert c["nonembedding"] == c["total"] - c["embedding"] - c["head"]
    if kw.get("n_experts"):
        assert c["active"] < c["total"] and c["experts_active"] * kw["n_experts"] == c["experts_total"] * kw["top_k"]
    else:
        assert c["active"] == c["total"]


@pytest.mark.parametrize("kw", SHAPES)
def test_flops_per_token_matches_flop_counter(kw):
    torch.manual_seed(0)
    T, B = 16, 3
    m = GPT(ModelConfig(seq_len=T, attn_impl="math", **kw))
    x = torch.randint(0, 256, (B, T))
    with FlopCounterMode(display=False) as fwd:
        m(x)
    expected = m.flops_per_token(T)
    assert fwd.get_total_flops() / (B * T) == pytest.approx(expected["forward"], rel=1e-12)
    with FlopCounterMode(display=False) as train:
        _, loss, aux = m(x, x)
        m.training_loss(loss, aux).backward()
    assert train.get_total_flops() / (B * T) == pytest.approx(expected["training"], rel=1e-12)
    assert m.flops_per_token(T, attention="causal")["attention_scores"] == expected["attention_scores"] / 2


def test_sdpa_and_math_attention_agree():
    torch.manual_seed(0)
    a = GPT(ModelConfig(seq_len=16, attn_impl="sdpa"))
    b = GPT(ModelConfig(seq_len=16, attn_impl="math"))
    b.load_state_dict(a.state_dict())
    x = torch.randint(0, 256, (2, 16))
    torch.testing.assert_close(a(x)[0], b(x)[0], rtol=1e-5, atol=1e-5)


def test_iso_active_moe_matches_dense_active_params():
    dense = GPT(ModelConfig(d_model=48, n_heads=3, seq_len=8)).param_counts()
    moe = GPT(ModelConfig(d_model=48, n_heads=3, seq_len=8, n_experts=4, top_k=2)).param_counts()
    assert derived_sizes(ModelConfig(d_model=48, n_heads=3, n_experts=4, top_k=2))["expert_d_ff"] * 2 == 128
    assert moe["active"] == dense["active"] + moe["router"]
    assert moe["total"] > dense["total"]


def test_router_losses_closed_form_at_uniform_routing():
    torch.manual_seed(0)
    m = GPT(ModelConfig(d_model=32, n_heads=2, seq_len=8, n_experts=4, top_k=2))
    for b in m.blocks:
        torch.nn.init.zeros_(b.mlp.router.weight)
    with torch.no_grad():
        _, loss, aux = m(torch.randint(0, 256, (2, 8)), torch.randint(0, 256, (2, 8)))
    assert float(aux["load_balance"]) == pytest.approx(1.0)          # E * sum_e f_e / E
    assert float(aux["z_loss"]) == pytest.approx(math.log(4) ** 2)
    assert aux["expert_load"].sum(-1).tolist() == pytest.approx([1.0, 1.0])


def test_validation_loss_is_plain_cross_entropy():
    torch.manual_seed(0)
    m = GPT(ModelConfig(d_model=32, n_heads=2, seq_len=8, n_experts=4))
    x, y = torch.randint(0, 256, (2, 8)), torch.randint(0, 256, (2, 8))
    with torch.no_grad():
        logits, loss, aux = m(x, y)
    assert float(loss) == pytest.approx(float(F.cross_entropy(logits.flatten(0, 1), y.flatten())))
    assert float(m.training_loss(loss, aux)) > float(loss)


def test_kv_cache_incremental_equals_full_forward():
    torch.manual_seed(0)
    m = GPT(ModelConfig(d_model=32, n_heads=2, n_layers=2, seq_len=16)).eval()
    x = torch.randint(0, 256, (2, 12))
    full, _, _ = m(x)
    caches = [{"len": 0} for _ in m.blocks]
    outs = []
    with torch.no_grad():
        prefix, _, _ = m(x[:, :5], caches=caches)
        outs.append(prefix)
        for c in caches:
            c["len"] = 5
        for t in range(5, 12):
            o, _, _ = m(x[:, t:t + 1], caches=caches)
            outs.append(o)
            for c in caches:
                c["len"] += 1
    torch.testing.assert_close(torch.cat(outs, 1), full, rtol=1e-5, atol=1e-5)


def test_config_errors_are_specific():
    with pytest.raises(ValueError, match="not divisible"):
        ModelConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="top_k"):
        ModelConfig(n_experts=2, top_k=3)


GRID = [dict(d_model=d, n_layers=L, n_heads=d // h, mlp=mlp, tied_embeddings=tied, n_experts=e, top_k=k, vocab_size=v,
             mixer=mixer)
        for d, h in ((8, 8), (24, 8), (48, 16), (96, 16)) for L in (1, 3) for mlp in ("swiglu", "gelu")
        for tied in (True, False) for e, k in ((0, 2), (4, 2), (3, 1)) for v in (256, 1000)
        for mixer in ("attention", "ssm", "hybrid")]


def test_closed_form_param_counts_equal_the_built_models():
    """The closed form (no model built) against the real parameters of the built model, group by group."""
    from scalinglab.train.config import param_counts
    for kw in GRID:
        cfg = ModelConfig(seq_len=8, **kw)
        with torch.device("meta"):
            m = GPT(cfg)
        c = param_counts(cfg)
        named = dict(m.named_parameters())
        real = {"embedding": m.embed.weight.numel(), "head": 0 if m.head is None else m.head.weight.numel(),
                "attention": sum(p.numel() for n, p in named.items() if ".attn." in n
                                 and isinstance(m.blocks[int(n.split(".")[1])].attn, Attention)),
                "ssm": sum(p.numel() for n, p in named.items() if ".attn." in n
                           and isinstance(m.blocks[int(n.split(".")[1])].attn, SelectiveSSM)),
                "norms": sum(p.numel() for n, p in named.items() if "norm" in n),
                "router": sum(p.numel() for n, p in named.items() if "router" in n),
                "experts_total": sum(p.numel() for n, p in named.items() if n.endswith(("w_up", "w_down"))),
                "mlp": sum(p.numel() for n, p in named.items() if ".mlp.up." in n or ".mlp.down." in n)}
        for k, v in real.items():
            assert c[k] == v, (kw, k)
        assert c["total"] == sum(p.numel() for p in m.parameters()) == m.param_counts()["total"]
        active = c["total"] - real["experts_total"] + real["experts_total"] * kw["top_k"] // max(1, kw["n_experts"]) \
            if kw["n_experts"] else c["total"]
        assert c["active"] == active, kw


def test_rmsnorm_backward_equals_autograd_through_the_reference():
    from scalinglab.train.norms import RMSNorm
    torch.manual_seed(0)
    norm = RMSNorm(24)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 7, 24, requires_grad=True)
    g = torch.randn(3, 7, 24)
    norm(x).backward(g)
    got_x, got_w = x.grad.clone(), norm.weight.grad.clone()
    x.grad, w = None, norm.weight.detach().clone().requires_grad_()
    ref = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.eps) * w    # the definition
    ref.backward(g)
    torch.testing.assert_close(norm(x), ref, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got_x, x.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_w, w.grad, rtol=1e-5, atol=1e-5)
    x64 = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    w64 = torch.rand(8, dtype=torch.float64, requires_grad=True)
    from scalinglab.train.norms import _RMSNormFn
    assert torch.autograd.gradcheck(_RMSNormFn.apply, (x64, w64, 1e-6))


def test_rotary_rotates_interleaved_pairs_by_position():
    from scalinglab.train.model import apply_rotary, rotary_tables
    torch.manual_seed(0)
    B, T, H, K = 2, 9, 3, 8
    cos, sin = rotary_tables(T, K)
    x = torch.randn(B, T, H, K)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    ref = torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1).flatten(-2)   # the written-out rotation
    torch.testing.assert_close(apply_rotary(x, cos, sin), ref, rtol=1e-6, atol=1e-6)
    # rotations keep norms, and the score between positions m and n depends on m - n only
    torch.testing.assert_close(apply_rotary(x, cos, sin).norm(dim=-1), x.norm(dim=-1), rtol=1e-5, atol=1e-5)
    q = torch.randn(K).expand(B, T, H, K)
    rq = apply_rotary(q, cos, sin)
    torch.testing.assert_close((rq[:, 3] * rq[:, 1]).sum(-1), (rq[:, 7] * rq[:, 5]).sum(-1), rtol=1e-5, atol=1e-5)
    assert apply_rotary(x.bfloat16(), cos, sin).dtype == torch.bfloat16


def test_swiglu_equals_gate_times_value_of_one_projection():
    from scalinglab.train.model import MLP
    torch.manual_seed(0)
    mlp = MLP(16, 40, "swiglu")
    x = torch.randn(2, 5, 16)
    gate, val = (x @ mlp.up.weight.t()).chunk(2, dim=-1)
    torch.testing.assert_close(mlp(x), (F.silu(gate) * val) @ mlp.down.weight.t(), rtol=1e-5, atol=1e-6)


def test_fused_adamw_takes_the_reference_step():
    from scalinglab.train.config import RunConfig
    from scalinglab.train.run import make_optimizers
    torch.manual_seed(0)
    cfg = RunConfig(model=ModelConfig(d_model=16, n_layers=1, n_heads=2, seq_len=8), lr=1e-2)
    a = GPT(cfg.model)
    b = GPT(cfg.model)
    b.load_state_dict(a.state_dict())
    (opt_a,) = make_optimizers(a, cfg)
    assert opt_a.defaults["fused"]
    groups = [{"params": [p for n, p in b.named_parameters() if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for n, p in b.named_parameters() if p.ndim < 2], "weight_decay": 0.0}]
    opt_b = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8, foreach=False)
    x = torch.randint(0, 256, (2, 8))
    for _ in range(3):
        for m, o in ((a, opt_a), (b, opt_b)):
            o.zero_grad()
            m(x, x)[1].backward()
            o.step()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=n)


def test_norm_gains_folded_into_the_linear_maps_give_the_gained_norms_function_and_gradients():
    """Blocks read ``RMSNorm.unit`` and fold the gain into the next weight; the reference applies each
    norm with its gain and the maps unscaled, as written in the definition."""
    import torch.nn.functional as F
    from scalinglab.train.config import ModelConfig
    from scalinglab.train.model import GPT
    from scalinglab.train.norms import _UnitRMSNormFn
    torch.manual_seed(0)
    for mlp in ("swiglu", "gelu"):
        model = GPT(ModelConfig(d_model=32, n_layers=2, n_heads=4, seq_len=16, mlp=mlp)).double()
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" in name:
                    p.uniform_(0.5, 1.5)
        idx, tgt = torch.randint(0, 256, (3, 16)), torch.randint(0, 256, (3, 16))
        _, loss, _ = model(idx, tgt)
        loss.backward()
        got = {n: p.grad.clone() for n, p in model.named_parameters()}
        model.zero_grad()

        def reference():
            x = model.embed(idx)
            for b in model.blocks:
                x = x + b.attn(b.norm1(x), model.cos_TK, model.sin_TK)
                x = x + b.mlp(b.norm2(x))
            logits = model.norm(x) @ model.embed.weight.t()
            return F.cross_entropy(logits.float().flatten(0, 1), tgt.flatten())   # as the model: fp32 loss

        ref = reference()
        ref.backward()
        torch.testing.assert_close(loss, ref, rtol=1e-6, atol=1e-7)
        for n, p in model.named_parameters():
            torch.testing.assert_close(got[n], p.grad, rtol=1e-5, atol=1e-8, msg=n)
    x64 = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_UnitRMSNormFn.apply, (x64, 1e-6))


def _ssm_by_recurrence(mix: SelectiveSSM, x_BTD: torch.Tensor) -> torch.Tensor:
    """The SSM written as its recurrence, token by token (the definition the dual form must equal)."""
    B, T, D = x_BTD.shape
    H = mix.n_heads
    K = D // H
    q, k, v, dt = F.linear(x_BTD, mix.qkv_dt.weight).split([D, D, D, H], dim=-1)
    dt = F.softplus(dt + mix.dt_bias)
    a = torch.exp(-dt * mix.A_log.exp())
    h = torch.zeros(B, H, K, K, dtype=x_BTD.dtype)
    ys = []
    for t in range(T):
        qt, kt, vt = (z[:, t].view(B, H, K) for z in (q, k, v))
        h = a[:, t, :, None, None] * h + kt[..., :, None] * (dt[:, t, :, None] * vt)[..., None, :]
        y = (qt[..., None, :] @ h).squeeze(-2) / math.sqrt(K)
        ys.append(y / y.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt())
    return mix.proj(torch.stack(ys, dim=1).reshape(B, T, D))


def test_ssm_dual_form_equals_its_recurrence():
    torch.manual_seed(0)
    m = GPT(ModelConfig(d_model=32, n_heads=4, n_layers=1, seq_len=24, mixer="ssm")).double()
    mix = m.blocks[0].attn
    with torch.no_grad():       # steps and decays far from their initial values, so the decay matters
        mix.dt_bias.uniform_(-1.0, 1.0)
        mix.A_log.uniform_(-1.0, 1.0)
    x = torch.randn(2, 24, 32, dtype=torch.float64)
    torch.testing.assert_close(mix(x), _ssm_by_recurrence(mix, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mixer", ["ssm", "hybrid"])
def test_ssm_decoding_with_its_state_equals_the_whole_sequence(mixer):
    """Prefill then one token at a time through the carried state: the same logits as the full forward."""
    torch.manual_seed(0)
    m = GPT(ModelConfig(d_model=32, n_heads=2, n_layers=2, seq_len=20, mixer=mixer)).double().eval()
    x = torch.randint(0, 256, (2, 20))
    full, _, _ = m(x)
    caches = [{"len": 0} for _ in m.blocks]
    parts = [m(x[:, :7], caches=caches)[0]]
    for c in caches:
        c["len"] = 7
    for t in range(7, 20):
        parts.append(m(x[:, t:t + 1], caches=caches)[0])
        for c in caches:
            c["len"] += 1
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-9, atol=1e-9)


def test_hybrid_places_attention_at_every_second_block():
    from scalinglab.train.config import layer_mixers
    assert layer_mixers(ModelConfig(n_layers=4, mixer="hybrid")) == ["ssm", "attention", "ssm", "attention"]
    assert layer_mixers(ModelConfig(n_layers=1, mixer="hybrid")) == ["ssm"]
    with pytest.raises(ValueError, match="mixer"):
        ModelConfig(mixer="mamba")


@pytest.mark.parametrize("kw", SHAPES)
def test_decode_costs_match_the_flop_counter_on_one_cached_token(kw):
    """decode_costs against FlopCounterMode on the step that generates token ``context`` from the cache."""
    from scalinglab.train.config import decode_costs
    torch.manual_seed(0)
    ctx = 12
    m = GPT(ModelConfig(seq_len=16, attn_impl="math", **kw)).eval()     # the counter reads explicit matmuls
    x = torch.randint(0, 256, (1, ctx))
    caches = [{"len": 0} for _ in m.blocks]
    with torch.no_grad():
        m(x[:, :ctx - 1], caches=caches)
        for c in caches:
            c["len"] = ctx - 1
        with FlopCounterMode(display=False) as step:
            m(x[:, ctx - 1:], caches=caches)
    assert step.get_total_flops() == pytest.approx(decode_costs(m.cfg, ctx)["decode_flops_per_token"], rel=1e-12)
