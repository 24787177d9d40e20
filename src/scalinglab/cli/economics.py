"""What training and serving cost: the ``cost`` group; ``quantize`` and ``distill`` on the lab's checkpoints."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from ..store import RunStore
from ._common import (MAX_CPU_RUN_FLOPS, MAX_PARAMS, MAX_TOKENS, JsonOpt, StoreOpt, Table, _App, _choice, _emit_json,
                      _existing_store, _fail, _finite, _log, _q, _quantity, _require, _whole, app, console)


cost_app = _App(help="What it costs to train and to serve.", no_args_is_help=True)


UsdPerHourOpt = typer.Option(None, "--usd-per-hour", help="Price of one accelerator-hour in USD (overrides the profile's; "
                                                          "the measured cpu profile has none).")


def _hw(name: str, hardware_file: Optional[Path], usd_per_hour: Optional[float] = None):
    import dataclasses as dc

    from .. import cost
    if usd_per_hour is not None and not (math.isfinite(usd_per_hour) and usd_per_hour >= 0):
        _fail(f"--usd-per-hour must be a finite number >= 0, got {usd_per_hour}")
    if name in ("cpu", "this-cpu"):
        _require("train", "--hardware cpu (measured with torch)", "torch")
    try:
        extra = cost.load_hardware(hardware_file) if hardware_file else None
        hw = cost.hardware(name, extra)
    except (ValueError, OSError) as e:
        _fail(str(e))
    return hw if usd_per_hour is None else dc.replace(hw, usd_per_hour=usd_per_hour)


def _usd(x: Optional[float], fmt: str = "{:,.3f}") -> str:
    return "no price" if x is None else "$" + fmt.format(x)


def _rate(x: float) -> str:
    """A rate with three significant digits below 100 (0.976, 12.3) and whole units above (1,234)."""
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


@cost_app.command("train")
def cost_train_cmd(params: str = typer.Option(..., "--params", help="Parameters (active, for MoE)."),
                   tokens: str = typer.Option(..., "--tokens", help="Training tokens."),
                   hardware: str = typer.Option("H100", help="H100, A100, L4, cpu (measured now), or one from --hardware-file."),
                   hardware_file: Optional[Path] = typer.Option(None, help="TOML/JSON with more hardware profiles."),
                   mfu: float = typer.Option(0.4), gpus: int = typer.Option(1, help="Accelerators in parallel."),
                   usd_per_hour: Optional[float] = UsdPerHourOpt, as_json: bool = JsonOpt):
    """Training FLOPs (6ND), GPU-hours, days on K GPUs and dollars."""
    from .. import cost
    n, d = _quantity(params, "--params", hi=MAX_PARAMS), _quantity(tokens, "--tokens", hi=MAX_TOKENS)
    _finite(mfu, "--mfu", lo=0, lo_open=True, hi=1)
    _whole(gpus, "--gpus", 1, 10_000_000)
    try:
        out = cost.train_cost(n, d, _hw(hardware, hardware_file, usd_per_hour), mfu, gpus)
    except ValueError as e:
        _fail(str(e))
    if as_json:
        return _emit_json(out)
    console.print(f"{_q(out['params'])} params × {_q(out['tokens'])} tokens = {out['flops']:.3g} FLOPs ({out['convention']})")
    console.print(f"{out['hardware']} at MFU {mfu:.0%}: {out['gpu_hours']:,.0f} GPU-hours = {out['days']:.1f} days on "
                  f"{gpus} GPU(s), {_usd(out['usd'], '{:,.0f}')}", markup=False)


@cost_app.command("serve")
def cost_serve_cmd(params: str = typer.Option(..., "--params", help="Total parameters (memory)."),
                   active_params: Optional[str] = typer.Option(None, "--active-params", help="Active parameters per token (MoE)."),
                   precision: str = typer.Option("bf16", help="Weights: fp32, bf16, fp16, fp8, int8, int4."),
                   kv_precision: str = typer.Option("bf16", help="KV cache precision."),
                   context: int = typer.Option(8192), batch: int = typer.Option(1),
                   layers: Optional[int] = typer.Option(None, help="Layers (else estimated from N)."),
                   kv_heads: Optional[int] = typer.Option(None), head_dim: Optional[int] = typer.Option(None),
                   experts: Optional[int] = typer.Option(None, help="Experts per MoE layer (with --top-k)."),
                   top_k: Optional[int] = typer.Option(None),
                   hardware: str = typer.Option("H100"), hardware_file: Optional[Path] = typer.Option(None),
                   mfu: float = typer.Option(0.5), gpus: int = typer.Option(1), usd_per_hour: Optional[float] = UsdPerHourOpt,
                   as_json: bool = JsonOpt):
    """Weight and KV-cache memory, whether it fits, and cost per million input and output tokens."""
    from .. import cost
    from ..accounting import BYTES_PER_PARAM
    n = _quantity(params, "--params", hi=MAX_PARAMS)
    active = _quantity(active_params, "--active-params", hi=n) if active_params is not None else None
    _choice(precision, "--precision", tuple(BYTES_PER_PARAM))
    _choice(kv_precision, "--kv-precision", tuple(BYTES_PER_PARAM))
    _whole(context, "--context", 1, 100_000_000)
    _whole(batch, "--batch", 1, 10_000_000)
    for value, option in ((layers, "--layers"), (kv_heads, "--kv-heads"), (head_dim, "--head-dim"), (experts, "--experts"),
                          (top_k, "--top-k")):
        _whole(value, option, 1, 1_000_000)
    if top_k is not None and experts is not None and top_k > experts:
        _fail(f"--top-k ({top_k}) cannot exceed --experts ({experts})")
    if (top_k is None) != (experts is None):
        _fail("give --experts and --top-k together (an MoE layer's experts and how many each token uses)")
    _finite(mfu, "--mfu", lo=0, lo_open=True, hi=1)
    _whole(gpus, "--gpus", 1, 10_000_000)
    try:
        out = cost.serve_cost(n, _hw(hardware, hardware_file, usd_per_hour),
                              active_params=active, precision=precision,
                              context=context, batch=batch, layers=layers, kv_heads=kv_heads, head_dim=head_dim,
                              kv_precision=kv_precision, mfu=mfu, n_gpus=gpus, n_experts=experts, top_k=top_k)
    except ValueError as e:
        _fail(str(e))
    if as_json:
        return _emit_json(out)
    m, d, p = out["memory"], out["decode"], out["prefill"]
    console.print(f"{_q(out['params_total'])} total / {_q(out['params_active'])} active params, {precision} weights, "
                  f"context {context}, batch {batch}, {gpus}× {out['hardware']}")
    console.print(f"  memory: weights {m['weights_bytes'] / 1e9:.2f} GB + KV {m['kv_cache_bytes_per_sequence'] / 1e9:.3f} GB/seq "
                  f"= {m['total_bytes'] / 1e9:.2f} GB of {m['capacity_bytes'] / 1e9:.0f} GB: "
                  + ("[green]fits[/]" if m["fits"] else "[red]does not fit[/]") + f" (max batch {m['max_batch_that_fits']})")
    console.print(f"  decode: {_rate(d['tokens_per_s'])} tokens/s, {d['bound']}-bound; "
                  f"{_usd(d['usd_per_million_output_tokens'])} per million output tokens", markup=False)
    console.print(f"  prefill: {_rate(p['tokens_per_s'])} tokens/s; {_usd(p['usd_per_million_input_tokens'], '{:,.4f}')} per "
                  "million input tokens", markup=False)
    if out["notes"]:
        console.print(f"  note: {out['notes']}", markup=False)


@app.command("quantize")
def quantize_cmd(store: Path = StoreOpt, checkpoints: Path = typer.Option(Path("scalinglab-out/checkpoints")),
                 bits: str = typer.Option("8,4", help="Bit widths."), family: Optional[str] = None,
                 as_json: bool = JsonOpt):
    """Post-training int8/int4 quantization of the store's trained runs: loss increase and memory saved."""
    _require("train", "scalinglab quantize", "torch")
    try:
        widths = [int(b) for b in bits.split(",")]
    except ValueError:
        widths = []
    if not widths or any(b not in (4, 8) for b in widths):
        _fail(f"--bits takes 8 and/or 4, comma-separated, not {bits!r}")
    _existing_store(store)
    from ..experiments.quantize import quantization_study
    with RunStore(store) as st:
        out = quantization_study(st, checkpoints, bits=widths, family=family)
        if not out["runs"]:
            _fail(f"nothing to quantize: no finished lab runs in {store} with a checkpoint under {checkpoints} "
                  "(train a ladder first, or give --checkpoints)")
        st.add_decision("quantization", "ladder", "measured", out)
    if as_json:
        return _emit_json(out)
    table = Table(title=f"post-training quantization ({out['method']})")
    for col in ("run", "N_total", "fp32 loss") + tuple(f"int{b} Δloss" for b in bits.split(",")) + ("memory saved (int4)",):
        table.add_column(col, justify="right")
    for r in out["runs"]:
        cells = [r["name"], _q(r["n_total"]), f"{r['loss_fp32']:.4f}"]
        cells += [f"{r['by_bits'][b]['loss_increase']:+.4f}" for b in bits.split(",")]
        cells.append(f"{r['by_bits'].get('4', {}).get('memory_saved_fraction', float('nan')):.0%}")
        table.add_row(*cells)
    console.print(table)


@app.command("distill")
def distill_cmd(teacher: str = typer.Option(..., help="Run id of the teacher (its checkpoint must exist)."),
                d_model: int = typer.Option(32, help="Student width."), layers: int = typer.Option(1, help="Student depth."),
                heads: int = typer.Option(2), compute: str = typer.Option(..., "--compute", help="Student training FLOPs (6 N_active D)."),
                alpha: float = typer.Option(0.5), temperature: float = typer.Option(2.0),
                store: Path = StoreOpt, checkpoints: Path = typer.Option(Path("scalinglab-out/checkpoints")),
                as_json: bool = JsonOpt):
    """Distil a small student from a larger lab model and compare with training from scratch at equal compute."""
    flops = _quantity(compute, "--compute", hi=MAX_CPU_RUN_FLOPS)
    _finite(alpha, "--alpha", lo=0, hi=1)
    _finite(temperature, "--temperature", lo=0, lo_open=True, hi=100)
    for value, option in ((d_model, "--d-model"), (layers, "--layers"), (heads, "--heads")):
        _whole(value, option, 1, 65_536)
    _require("train", "scalinglab distill", "torch")
    _existing_store(store)
    from ..experiments.distill import distillation_study
    log = _log(as_json)
    try:
        with RunStore(store) as st:
            out = distillation_study(st, checkpoints, teacher=teacher, student=dict(d_model=d_model, n_layers=layers,
                                                                                      n_heads=heads),
                                     flops=flops, alpha=alpha, temperature=temperature, log=log)
            st.add_decision("distillation", teacher, "measured", out)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    if as_json:
        return _emit_json(out)
    console.print(f"student from scratch: {out['scratch']['final_loss']:.4f}; distilled: {out['distilled']['final_loss']:.4f} "
                  f"(gain {out['gain']:+.4f} nats) at {out['student_training_flops']:.3g} training FLOPs "
                  f"(+{out['teacher_forward_flops']:.3g} teacher forward FLOPs)")
    if "best_from_scratch_at_same_budget" in out:
        b = out["best_from_scratch_at_same_budget"]
        console.print(f"best model trained from scratch at this budget: {b['name']} (N_active={b['n_active']:,.0f}) "
                      f"loss {b['loss']:.4f}; distilled student beats it: {out['distilled_beats_best_from_scratch']}")
