"""Runs in and out of the store: ``import``, ``import-tracker``, ``runs``, ``export``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from .. import importers
from ..store import RunStore, StoreError
from ._common import (JsonOpt, StoreOpt, Table, _check_on_duplicate, _choice, _conventions, _emit_json, _existing_store,
                      _fail, _q, _require, app, console)


@app.command("import")
def import_cmd(
    file: Path = typer.Argument(..., help="CSV/TSV, JSONL or Parquet file of runs."),
    store: Path = StoreOpt,
    n_col: Optional[str] = typer.Option(None, "--n-col", help="Column with parameter counts."),
    d_col: Optional[str] = typer.Option(None, "--d-col", help="Column with training tokens."),
    c_col: Optional[str] = typer.Option(None, "--c-col", help="Column with training FLOPs."),
    loss_col: Optional[str] = typer.Option(None, "--loss-col", help="Column with the final loss."),
    name_col: Optional[str] = typer.Option(None, "--name-col", help="Column with run names (the duplicate key)."),
    unique_col: Optional[str] = typer.Option(None, "--unique-tokens-col", help="Column with unique tokens (data-constrained)."),
    mapping: Optional[Path] = typer.Option(None, "--mapping", help="JSON/TOML file mapping fields to columns."),
    n_convention: str = typer.Option("n_total", help="What the N column counts: n_total, n_nonembedding, n_active."),
    drop_invalid: bool = typer.Option(False, "--drop-invalid", help="Skip rows whose loss is NaN/inf/non-positive."),
    on_duplicate: str = typer.Option("error", help="Runs already in the store: error, skip or replace."),
    trust_flops: bool = typer.Option(False, "--trust-flops", help="The file's C is authoritative even where it is far "
                                     "from 6ND (else such rows are refused); it becomes every fit's compute axis."),
    as_json: bool = JsonOpt,
):
    """Import runs from a table into the run store (all or nothing)."""
    _check_on_duplicate(on_duplicate)
    _conventions(n_convention)
    if file.is_dir():
        _fail(f"{file} is a directory; give a CSV/TSV, JSONL or Parquet file of runs")
    try:       # the whole file is checked before the store is opened (a refused import creates no store)
        cols = importers.load_mapping(mapping) if mapping else {}
        cols.update({k: v for k, v in dict(n=n_col, d=d_col, c=c_col, loss=loss_col, name=name_col,
                                           unique_tokens=unique_col).items() if v})
        result = importers.parse_runs(file, cols, drop_invalid=drop_invalid, n_convention=n_convention,
                                      trust_flops=trust_flops)
        with RunStore(store) as st:
            result.written = st.add_runs(result.runs, on_duplicate=on_duplicate)
    except (importers.ImportFormatError, StoreError, ValueError) as e:
        _fail(str(e))
    if as_json:
        return _emit_json(result.to_dict())
    console.print(f"imported [bold]{result.written}[/] of {len(result.runs)} runs from {escape(str(file))} into {escape(str(store))}")
    console.print(f"columns: {result.columns}", markup=False)
    for d in result.derived:
        console.print(f"derived: {d} (stated convention)", markup=False)
    for d in result.dropped:
        console.print(f"[yellow]dropped[/] {escape(str(d['where']))}: {escape(str(d['reason']))}")


TRACKER_MODULES = {"mlflow": "mlflow", "tensorboard": "tensorboard", "wandb": "wandb"}


@app.command("import-tracker")
def import_tracker_cmd(
    kind: str = typer.Argument(..., help="mlflow, tensorboard or wandb."),
    source: str = typer.Argument(..., help="MLflow tracking URI or mlruns folder; TensorBoard log dir; W&B ENTITY/PROJECT."),
    n: Optional[str] = typer.Option(None, "--n", help="Param/tag/config key holding N."),
    d: Optional[str] = typer.Option(None, "--d", help="Key holding D (tokens)."),
    c: Optional[str] = typer.Option(None, "--c", help="Key holding C (FLOPs)."),
    loss: str = typer.Option("loss", "--loss", help="Metric/tag with the loss (its whole history becomes the curve)."),
    experiment: Optional[str] = typer.Option(None, help="MLflow experiment name (default: all)."),
    n_convention: str = typer.Option("n_total", help="What the N key counts: n_total, n_nonembedding, n_active."),
    on_duplicate: str = typer.Option("error", help="Runs already in the store: error, skip or replace."),
    store: Path = StoreOpt, as_json: bool = JsonOpt,
):
    """Import runs and loss histories from MLflow, TensorBoard or Weights & Biases (all or nothing)."""
    from .. import trackers
    if kind not in TRACKER_MODULES:
        _fail(f"unknown tracker {kind!r}; choose mlflow, tensorboard or wandb")
    if n_convention not in importers.N_CONVENTIONS:
        _fail(f"--n-convention must be one of {', '.join(importers.N_CONVENTIONS)}, not {n_convention!r}")
    _check_on_duplicate(on_duplicate)
    _require(kind, f"import-tracker {kind}", TRACKER_MODULES[kind])
    m = trackers.Mapping(n=n, d=d, c=c, loss=loss, n_convention=n_convention)
    try:
        if kind == "mlflow":
            res = trackers.read_mlflow(source, m, experiment=experiment)
        elif kind == "tensorboard":
            res = trackers.read_tensorboard(source, m)
        else:
            res = trackers.read_wandb(source, m)
        with RunStore(store) as st:
            trackers.write(res, st, on_duplicate)
    except (importers.ImportFormatError, StoreError) as e:
        _fail(str(e))
    if as_json:
        return _emit_json(res.to_dict())
    console.print(f"imported {res.written} runs ({res.columns['points']} metric points) from {kind} {source} into {store}", markup=False)


@app.command("runs")
def runs_cmd(store: Path = StoreOpt, status: Optional[str] = typer.Option(None, help="Filter by status."),
             limit: int = typer.Option(100, min=0, help="Show at most this many runs, the largest compute first "
                                                       "(0: all; --json always lists every run)."),
             as_json: bool = JsonOpt):
    """List the runs in the store."""
    from ..store import RUN_STATUSES
    if status is not None:
        _choice(status, "--status", RUN_STATUSES)
    try:
        with RunStore(store, readonly=True) as st:
            runs = st.runs(status=status)
    except FileNotFoundError as e:
        _fail(str(e))
    if as_json:
        return _emit_json({"runs": [{k: getattr(r, k) for k in ("run_id", "name", "source", "status", "family", "n_total",
                                                                 "n_nonembedding", "n_active", "tokens", "unique_tokens",
                                                                 "flops_6nd", "flops_with_attention", "final_loss", "budget")}
                                    for r in runs]})
    table = Table(title=f"{len(runs)} runs in {escape(str(store))}")
    for col in ("run_id", "name", "status", "N_total", "N_nonemb", "N_active", "D", "C=6ND", "loss", "source"):
        table.add_column(col, justify="right" if col not in ("run_id", "name", "status", "source") else "left")
    shown = sorted(runs, key=lambda r: (-(r.flops_6nd or 0.0), r.name or ""))[:limit or None]
    if len(shown) < len(runs):
        table.caption = f"the {len(shown)} largest by compute of {len(runs)}: --limit 0 shows all, --json lists every run"
    for r in shown:
        table.add_row(r.run_id, r.name, r.status, _q(r.n_total), _q(r.n_nonembedding), _q(r.n_active), _q(r.tokens),
                      _q(r.flops_6nd), "-" if r.final_loss is None else f"{r.final_loss:.4f}", r.source)
    console.print(table)


@app.command("export")
def export_cmd(out: Path = typer.Argument(..., help="Output .csv, .tsv or .parquet"), store: Path = StoreOpt):
    """Export the store's runs to CSV or Parquet."""
    if out.suffix.lower() not in (".csv", ".tsv", ".parquet"):
        _fail(f"{out}: export writes .csv, .tsv or .parquet")
    if out.suffix.lower() == ".parquet":
        _require("parquet", "export to Parquet", "pyarrow")
    _existing_store(store)
    with RunStore(store, readonly=True) as st:
        n = importers.export_runs(st.runs(), out)
    console.print(f"wrote {n} runs to {out}", markup=False)
