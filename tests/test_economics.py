import json

import pytest
import torch
from typer.testing import CliRunner

from scalinglab import cost
from scalinglab.accounting import kv_cache_bytes
from scalinglab.cli import app
from scalinglab.comparison import moe_multiplier_intervals
from scalinglab.laws import preset
from scalinglab.train.config import ModelConfig
from scalinglab.train.model import GPT
from scalinglab.train.quantize import quantize_dequantize, quantize_model
from scalinglab.train.run import distillation_loss


def test_train_cost_by_hand():
    out = cost.train_cost(70e9, 1.4e12, cost.HARDWARE["H100"], mfu=0.4, n_gpus=1024)
    assert out["flops"] == 5.88e23
    hours = 5.88e23 / (989e12 * 0.4) / 3600
    assert out["gpu_hours"] == pytest.approx(hours) and out["days"] == pytest.approx(hours / 1024 / 24)
    assert out["usd"] == pytest.approx(hours * 2.50)


def test_serve_cost_by_hand_dense():
    hw = cost.HARDWARE["H100"]
    out = cost.serve_cost(7e9, hw, precision="bf16", context=8192, batch=1, layers=32, kv_heads=8, head_dim=128, mfu=0.5)
    kv = 2 * 32 * 8 * 128 * 8192 * 2
    assert out["memory"]["weights_bytes"] == 14e9 and out["memory"]["kv_cache_bytes_per_sequence"] == kv
    t_mem = (14e9 + kv) / 3.35e12
    t_cmp = (2 * 7e9 + 4 * 32 * 8192 * 8 * 128) / (989e12 * 0.5)
    assert out["decode"]["bandwidth_bound_s_per_step"] == pytest.approx(t_mem)
    assert out["decode"]["compute_bound_s_per_step"] == pytest.approx(t_cmp)
    assert out["decode"]["bound"] == "memory bandwidth"
    assert out["decode"]["usd_per_million_output_tokens"] == pytest.approx(t_mem * 1e6 * 2.5 / 3600)
    assert out["memory"]["fits"] and out["memory"]["max_batch_that_fits"] == int((80e9 - 14e9) // kv)


def test_moe_memory_from_total_compute_from_active():
    hw = cost.HARDWARE["H100"]
    moe = cost.serve_cost(46.7e9, hw, active_params=12.9e9, n_experts=8, top_k=2, layers=32, kv_heads=8, head_dim=128)
    dense_small = cost.serve_cost(12.9e9, hw, layers=32, kv_heads=8, head_dim=128)
    assert moe["memory"]["weights_bytes"] == pytest.approx(46.7e9 * 2)
    assert moe["decode"]["compute_bound_s_per_step"] == pytest.approx(dense_small["decode"]["compute_bound_s_per_step"])
    assert not moe["memory"]["fits"]          # 93 GB of weights on one 80 GB card


def test_kv_cache_size_equals_the_tensors_a_forward_pass_allocates():
    cfg = ModelConfig(d_model=48, n_heads=3, n_layers=3, seq_len=32)
    m = GPT(cfg).eval()
    caches = [{"len": 0} for _ in m.blocks]
    with torch.no_grad():
        m(torch.randint(0, 256, (5, 20)), caches=caches)
    allocated = sum(c["k"].numel() * c["k"].element_size() + c["v"].numel() * c["v"].element_size() for c in caches)
    assert allocated == kv_cache_bytes(3, 3, 16, 20, batch=5, precision="fp32")


@pytest.mark.parametrize("bits", [8, 4, 3])
def test_quantize_dequantize_error_bound(bits):
    torch.manual_seed(0)
    w = torch.randn(64, 96) * torch.logspace(-2, 1, 64)[:, None]
    deq, scale = quantize_dequantize(w, bits, dim=-1)
    assert torch.all((w - deq).abs() <= scale / 2 + 1e-7 * w.abs().amax(dim=-1, keepdim=True))
    levels = 2 ** (bits - 1) - 1
    assert torch.all((deq / scale).round().abs() <= levels)
    assert torch.allclose(scale[:, 0], w.abs().amax(dim=-1) / levels)


def test_quantized_model_memory_and_closeness():
    torch.manual_seed(0)
    m = GPT(ModelConfig(d_model=64, n_heads=4, n_layers=2, seq_len=16, n_experts=2, top_k=1))
    q8, mem8 = quantize_model(m, 8)
    q4, mem4 = quantize_model(m, 4)
    assert mem4["bytes_quantized"] < mem8["bytes_quantized"] < mem8["bytes_fp32"]
    assert torch.equal(q8.embed.weight, m.embed.weight)                  # tied embedding kept
    x = torch.randint(0, 256, (2, 16))
    with torch.no_grad():
        base, d8, d4 = (mod(x)[0] for mod in (m, q8, q4))
    assert (d8 - base).abs().max() < (d4 - base).abs().max()


def test_distillation_loss_equals_cross_entropy_for_one_hot_teacher():
    torch.manual_seed(0)
    s = torch.randn(4, 7, 11)
    y = torch.randint(0, 11, (4, 7))
    teacher = torch.nn.functional.one_hot(y, 11).float() * 1e4
    ce = torch.nn.functional.cross_entropy(s.reshape(-1, 11), y.reshape(-1))
    assert float(distillation_loss(s, teacher, y, alpha=1.0, temperature=1.0)) == pytest.approx(float(ce), rel=1e-6)
    assert float(distillation_loss(s, teacher, y, alpha=0.3, temperature=1.0)) == pytest.approx(float(ce), rel=1e-6)


def test_moe_multiplier_is_one_for_identical_laws_and_above_one_for_a_better_law():
    law = preset("chinchilla-2022")
    rows = moe_multiplier_intervals(law, law, [1e20, 1e22])
    assert all(r["multiplier"] == pytest.approx(1.0) for r in rows)
    better = preset("chinchilla-2022")
    better.params_ = dict(better.params_, A=better.params_["A"] * 0.8)
    assert all(r["multiplier"] > 1 for r in moe_multiplier_intervals(law, better, [1e20, 1e22]))


def test_cost_cli_json():
    r = CliRunner().invoke(app, ["cost", "serve", "--params", "7B", "--precision", "int4", "--json", "--layers", "32"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["memory"]["weights_bytes"] == 3.5e9
    r = CliRunner().invoke(app, ["cost", "serve", "--params", "7B", "--precision", "int3"])
    assert r.exit_code == 2 and "accepted" in r.output
