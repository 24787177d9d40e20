import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from scalinglab.train.config import ModelConfig, derived_sizes
from scalinglab.train.model import GPT

SHAPES = [
    dict(d_model=32, n_layers=2, n_heads=2, mlp="swiglu", tied_embeddings=True),
    dict(d_model=48, n_layers=1, n_heads=3, mlp="gelu", tied_embeddings=False),
    dict(d_model=32, n_layers=2, n_heads=2, n_experts=4, top_k=2),
    dict(d_model=48, n_layers=2, n_heads=3, n_experts=3, top_k=1, mlp="gelu"),
]


@pytest.mark.parametrize("kw", SHAPES)
def test_param_counts_sum_to_real_total(kw):
    m = GPT(ModelConfig(seq_len=16, **kw))
    c = m.param_counts()
    parts = ("embedding", "head", "attention", "norms", "mlp", "router", "experts_total")
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


GRID = [dict(d_model=d, n_layers=L, n_heads=d // h, mlp=mlp, tied_embeddings=tied, n_experts=e, top_k=k, vocab_size=v)
        for d, h in ((8, 8), (24, 8), (48, 16), (96, 16)) for L in (1, 3) for mlp in ("swiglu", "gelu")
        for tied in (True, False) for e, k in ((0, 2), (4, 2), (3, 1)) for v in (256, 1000)]


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
                "attention": sum(p.numel() for n, p in named.items() if ".attn." in n),
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
