"""The ``scalinglab`` command line: parses, calls the library, prints with rich (or JSON)."""
from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table as _RichTable

from . import _names, importers
from ._names import FitError, PRESET_SOURCES
from ._units import format_quantity, parse_quantity
from .cost import HARDWARE
from .store import DEFAULT_STORE, RunStore, StoreError


class _Lazy:
    """A module imported on first use: numpy and the numerical layers load only for commands that compute,
    so ``scalinglab --help`` and the listing commands start fast."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr):
        import importlib
        return getattr(importlib.import_module(self._name), attr)


np = _Lazy("numpy")
analysis = _Lazy("scalinglab.analysis")
planning = _Lazy("scalinglab.plan")


def get_preset(name: str):
    from .laws import preset
    return preset(name)


def law_from_dict(payload: dict):
    from .laws import law_from_dict as load
    return load(payload)


_PARSING_ENV = "PYDANTIC_DISABLE_PLUGINS"
_parsing_env_set = False


def _parsing():
    """While typer parses a command line, pydantic skips its plugin discovery (a scan of every installed
    package's entry points, ~9 ms; typer's parameter validators need no plugins)."""
    global _parsing_env_set
    import os
    if _PARSING_ENV not in os.environ:
        os.environ[_PARSING_ENV] = "__all__"
        _parsing_env_set = True


def _parsed():
    """Parsing is over (a command starts): the environment is the user's again."""
    global _parsing_env_set
    if _parsing_env_set:
        import os
        os.environ.pop(_PARSING_ENV, None)
        _parsing_env_set = False


def _guarded(f):
    """A command whose failures reach the user as one line: a store or file problem exits 2 with what and where,
    anything unforeseen exits 1 with its kind and message (``SCALINGLAB_DEBUG=1`` shows the traceback)."""
    import functools

    @functools.wraps(f)
    def run(*args, **kwargs):
        import os
        import sqlite3
        _parsed()
        try:
            return f(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit, KeyboardInterrupt):
            raise
        except Exception as e:       # the last line of defence: no traceback reaches a user
            if os.environ.get("SCALINGLAB_DEBUG"):
                raise
            if isinstance(e, StoreError):
                _fail(str(e))
            if isinstance(e, sqlite3.DatabaseError):
                _fail(f"the run store could not be read or written: {e} (is it a scalinglab store, and intact?)")
            if isinstance(e, (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)):
                _fail(f"{e.strerror or e}: {e.filename}" if getattr(e, "filename", None) else str(e))
            if isinstance(e, MemoryError):
                _fail("out of memory: the inputs are too large for this machine", 1)
            _fail(f"unexpected {type(e).__name__}: {e} (set SCALINGLAB_DEBUG=1 for the traceback)", 1)
    return run


class _App(typer.Typer):
    """typer.Typer whose commands are all :func:`_guarded`."""

    def command(self, *args, **kwargs):
        register = super().command(*args, **kwargs)
        return lambda f: (register(_guarded(f)), f)[1]

    def __call__(self, *args, **kwargs):
        """Run the command line; from a shell, build only the command (or group) it names.

        typer reads every command's signature and type hints before it parses anything (~40 ms for this
        command line, a seventh of a light command's start-up); a command line that names one command
        needs only that one. Help, completion and unknown names get the whole set."""
        if self is not app or args or "args" in kwargs:
            return super().__call__(*args, **kwargs)
        _parsing()
        try:
            only = self._only(sys.argv[1:2])
            return only() if only is not None else super().__call__()
        finally:
            _parsed()

    def _only(self, first: list[str]) -> "typer.Typer | None":
        if not first or first[0].startswith("-"):
            return None
        name = first[0]
        from typer.main import get_command_name     # typer's own naming of a command without an explicit name
        cmds = [c for c in self.registered_commands if (c.name or get_command_name(c.callback.__name__)) == name]
        groups = [g for g in self.registered_groups if g.name == name]
        if len(cmds) + len(groups) != 1:
            return None
        only = typer.Typer(add_completion=False, no_args_is_help=True, help=self.info.help)
        only.registered_commands, only.registered_groups = cmds, groups
        only.callback()(lambda: None)       # stays a group: the command is named as a subcommand
        return only


app = _App(add_completion=False, no_args_is_help=True,
           help="Measure, fit and forecast scaling laws; plan compute; train model ladders.")
console = Console()
err = Console(stderr=True)

StoreOpt = typer.Option(DEFAULT_STORE, "--store", help="SQLite run store file.")
JsonOpt = typer.Option(False, "--json", help="Print one JSON document on stdout (stable keys, see README).")
NConventionOpt = typer.Option("n_total", help="Parameter convention: n_total, n_nonembedding, n_active.")
FlopConventionOpt = typer.Option("6ND", help="FLOP convention: 6ND or 6ND+attn.")
FamilyOpt = typer.Option(None, help="Only runs of this family (e.g. dense, moe).")
BootstrapKindOpt = typer.Option("residual", "--bootstrap-kind",
                                help="residual (keeps the ladder's design; calibrated) or pairs (resamples runs).")


class Table(_RichTable):
    """A rich table whose cells are data: text in them is shown as written, never read as markup."""

    def add_row(self, *cells, **kwargs):
        super().add_row(*(escape(c) if isinstance(c, str) else c for c in cells), **kwargs)


def _emit_json(obj) -> None:
    def default(o):
        if isinstance(o, (np.floating, np.integer)):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        return str(o)

    def clean(o):
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        return o

    sys.stdout.write(json.dumps(clean(json.loads(json.dumps(obj, default=default))), indent=2) + "\n")


def _conventions(n_convention: str, flop_convention: str | None = None) -> None:
    from .importers import N_CONVENTIONS
    _choice(n_convention, "--n-convention", N_CONVENTIONS)
    if flop_convention is not None:
        _choice(flop_convention, "--flop-convention", ("6ND", "6ND+attn"))


def _check_bootstrap_kind(kind: str) -> None:
    if kind not in ("residual", "pairs"):
        _fail(f"--bootstrap-kind must be residual or pairs, not {kind!r}")


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


# ---- one validation layer for the command line's quantities: each refusal says what, where and what is accepted
MAX_LADDER_FLOPS = 1e21          # a training budget beyond any ladder (a ladder's largest run is ~1% of its target)
MAX_CPU_RUN_FLOPS = 1e17         # ~12 days at 100 GFLOP/s: beyond it a CPU ladder is refused, a GPU one is not
MAX_FLOPS = 1e35                 # ~10^10 times the largest training run to date: beyond it a number is a typo
MAX_PARAMS = 1e16
MAX_TOKENS = 1e18


def _range_text(lo, hi, lo_open: bool, hi_open: bool) -> str:
    parts = []
    if lo is not None:
        parts.append(f"{'>' if lo_open else '>='} {lo:g}")
    if hi is not None:
        parts.append(f"{'<' if hi_open else '<='} {hi:g}")
    return " and ".join(parts)


def _finite(value, option: str, *, lo=None, hi=None, lo_open: bool = False, hi_open: bool = False):
    """A float option: finite and within [lo, hi] (open ends where asked); None passes (an unset option)."""
    if value is None:
        return None
    bad = not math.isfinite(value) or (lo is not None and (value <= lo if lo_open else value < lo)) or \
        (hi is not None and (value >= hi if hi_open else value > hi))
    if bad:
        _fail(f"{option} must be a finite number {_range_text(lo, hi, lo_open, hi_open)}, got {value}")
    return value


def _quantity(text, option: str, *, lo: float = 0, hi: float | None = None, lo_open: bool = True) -> float:
    """A quantity such as 7B, 1.4e12 or 70,000: a finite number in range (positive by default)."""
    try:
        x = parse_quantity(text)
    except ValueError as e:
        _fail(f"{option}: {e}")
    if not math.isfinite(x):
        _fail(f"{option} must be a finite number (e.g. 7B, 1.4e12), got {text!r}")
    if (x <= lo if lo_open else x < lo) or (hi is not None and x > hi):
        if lo == 0 and lo_open:
            _fail(f"{option} must be a finite and positive number" + (f" up to {hi:g}" if hi is not None else "") +
                  f", got {text!r}")
        _fail(f"{option} must be a number {_range_text(lo, hi, lo_open, False)}, got {text!r}")
    return x


def _quantities(text: str, option: str, **kw) -> list[float]:
    """A comma-separated list of quantities, each checked as :func:`_quantity`."""
    items = [t for t in str(text).split(",")] if text is not None else []
    if not items or any(not t.strip() for t in items):
        _fail(f"{option} takes comma-separated numbers (e.g. 1e12,3e12), got {text!r}")
    return [_quantity(t, option, **kw) for t in items]


def _whole(value, option: str, lo: int, hi: int):
    """A whole-number option within [lo, hi]; None passes (an unset option)."""
    if value is not None and not lo <= value <= hi:
        _fail(f"{option} must be a whole number from {lo:,} to {hi:,}, got {value}")
    return value


def _task(text: str, option: str = "--task") -> str:
    """A procedural task KIND:DIGITS (addition:2, multiplication:3, ...)."""
    from .testtime.tasks import Task
    try:
        Task.parse(text)
    except ValueError as e:
        _fail(f"{option} {text}: {e}")
    return text


def _choice(value: str, option: str, choices) -> str:
    if value not in choices:
        _fail(f"{option} {value!r} is not one of those accepted: {', '.join(choices)}")
    return value


def _require(extra: str, what: str, *modules: str) -> None:
    """Refuse up front, with the install command, when ``what`` needs an optional extra that is not installed."""
    import importlib.util
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        _fail(f"{what} needs {', '.join(missing)}, which is not installed: pip install 'scalinglab[{extra}]'")


def _existing_store(store: Path) -> None:
    """Refuse (never create an empty store to say there is nothing) when there is no run store."""
    if store.is_dir():
        _fail(f"{store} is a directory, not a run store file (give --store a file such as scalinglab.db)")
    if not store.is_file():
        _fail(f"no run store at {store}: train a ladder (scalinglab ladder) or import runs (scalinglab import) "
              "first, or point --store at an existing store")


def _check_device(device: str) -> None:
    """Refuse a device this torch cannot use before anything is trained or written."""
    if device == "cpu":
        return
    import torch
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            _fail(f"--device {device}: this torch ({torch.__version__}) has no usable CUDA device; install a CUDA build "
                  "of torch (https://pytorch.org/get-started/locally/) or use --device cpu")
        idx = int(device.split(":", 1)[1]) if ":" in device and device.split(":", 1)[1].isdigit() else 0
        if idx >= torch.cuda.device_count():
            _fail(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) visible")
    elif device == "mps":
        if not torch.backends.mps.is_available():
            _fail("--device mps: MPS is not available in this torch build or on this machine")
    else:
        _fail(f"--device must be cpu, cuda, cuda:N or mps, not {device!r}")


def _q(x) -> str:
    return "-" if x is None else format_quantity(float(x))


def _iv(entry: dict, key: str) -> str:
    iv = entry.get("intervals", {}).get(key)
    return f"[{_q(iv[0])}, {_q(iv[1])}]" if iv else ""


# --------------------------------------------------------------------------------------------- import
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


def _check_on_duplicate(on_duplicate: str) -> None:
    if on_duplicate not in ("error", "skip", "replace"):
        _fail(f"--on-duplicate must be error, skip or replace, not {on_duplicate!r}")


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
    from . import trackers
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


# --------------------------------------------------------------------------------------------- runs
@app.command("runs")
def runs_cmd(store: Path = StoreOpt, status: Optional[str] = typer.Option(None, help="Filter by status."),
             limit: int = typer.Option(100, min=0, help="Show at most this many runs, the largest compute first "
                                                       "(0: all; --json always lists every run)."),
             as_json: bool = JsonOpt):
    """List the runs in the store."""
    from .store import RUN_STATUSES
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


# --------------------------------------------------------------------------------------------- fit
def _runs_from(file: Optional[Path], store: Path, family: Optional[str]):
    try:
        if file is not None:
            return importers.parse_runs(file).runs, str(file)
        _existing_store(store)
        with RunStore(store, readonly=True) as st:
            runs = st.runs(family=family)
            if family is not None and not runs:
                known = sorted({r.family for r in st.runs() if r.family})
                _fail(f"--family {family}: no runs of that family in {store} (families there: {', '.join(known) or 'none'})")
            return runs, f"store:{store}"
    except (importers.ImportFormatError, FileNotFoundError) as e:
        _fail(str(e))


@app.command("fit")
def fit_cmd(
    file: Optional[Path] = typer.Argument(None, help="Fit runs from this file instead of the store."),
    store: Path = StoreOpt,
    law: list[str] = typer.Option(list(_names.DEFAULT_LAWS), "--law",
                                  help=f"Law(s) to fit: {', '.join(_names.LAW_CHOICES)} (repeatable); 'auto' fits every "
                                       "(N, D) form and recommends one by rolling-origin backtests on the fitted runs."),
    n_convention: str = NConventionOpt,
    flop_convention: str = FlopConventionOpt,
    family: Optional[str] = FamilyOpt,
    bootstrap: int = typer.Option(1000, help="Bootstrap resamples over runs (0 disables intervals)."),
    bootstrap_kind: str = BootstrapKindOpt,
    holdout: str = typer.Option("none", help="Runs to leave out and forecast: " + _names.HOLDOUT_HELP + "."),
    huber_delta: float = typer.Option(1e-3, help="Huber delta on log-loss residuals."),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("scalinglab-out/fit"), help="Directory for figures."),
    figures: bool = typer.Option(True, help="Write PNG and SVG figures."),
    save: bool = typer.Option(True, help="Record the fits in the store."),
    as_json: bool = JsonOpt,
):
    """Fit scaling laws with bootstrap intervals; optionally check extrapolation on held-out runs."""
    for name in law:
        if name not in analysis.LAW_CHOICES:
            _fail(f"unknown law {name!r}; choose from {', '.join(analysis.LAW_CHOICES)}")
    try:
        analysis.parse_holdout(holdout)
    except ValueError as e:
        _fail(f"--holdout: {e}")
    _check_bootstrap_kind(bootstrap_kind)
    _conventions(n_convention, flop_convention)
    _finite(huber_delta, "--huber-delta", lo=0, lo_open=True, hi=10)
    if bootstrap < 0:
        _fail(f"--bootstrap must be 0 (no intervals) or more, got {bootstrap}")
    runs, source = _runs_from(file, store, family)
    curves = None
    if file is None and "approach1" in law:
        with RunStore(store, readonly=True) as st:           # every curve in one query
            curves = {rid: {"flops": c["flops"], "loss": c["loss"]}
                      for rid, c in st.curves([r.run_id for r in runs]).items() if len(c["flops"])}
    selection = analysis.Selection(n_convention=n_convention, flop_convention=flop_convention, family=family,
                                   holdout=holdout)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            report = analysis.fit_runs(runs, law, selection=selection, n_bootstrap=bootstrap, seed=seed,
                                       huber_delta=huber_delta, curves=curves, bootstrap_kind=bootstrap_kind)
        except (FitError, ValueError) as e:
            _fail(str(e))
    report["warnings"] = [str(w.message) for w in caught]
    if save:
        with RunStore(store) as st:
            analysis.save_fits(st, report, source)
    if figures:
        _, N, D, C, L = analysis.run_arrays(runs, n_convention, flop_convention)
        report["figures"] = _figures(report, N, D, C, L, out)
    if as_json:
        return _emit_json(analysis.report_json(report))
    _print_fit_report(report, source)


def _figures(report, N, D, C, L, out):
    from .report.figures import fit_figures
    return fit_figures(report, N, D, C, L, out)


def _print_fit_report(report: dict, source: str) -> None:
    sel = report["selection"]
    ho = report.get("holdout")
    split = f" ({report['n_fitted']} fitted, {ho['n_held_out']} held out)" if ho else ""
    console.print(f"[bold]{report['n_runs']} runs[/] from {escape(source)}{split}; N = {sel['n_convention']}, "
                  f"C = {sel['flop_convention']}")
    for w in report.get("warnings", []):
        console.print(f"[yellow]warning:[/] {w}")
    for name, entry in report["fits"].items():
        if "error" in entry:
            console.print(f"[red]{name}: fit failed[/] — {escape(entry['error'])}")
            continue
        table = Table(title=f"{name}" + (f" (fit id {entry['fit_id']})" if "fit_id" in entry else ""))
        table.add_column("parameter")
        table.add_column("value", justify="right")
        table.add_column(f"95% interval ({entry['n_bootstrap']} bootstrap)", justify="right")
        for k, v in entry["params"].items():
            iv = entry["intervals"].get(k)
            table.add_row(k, f"{v:.5g}", f"[{iv[0]:.5g}, {iv[1]:.5g}]" if iv else "")
        console.print(table)
        dr = entry.get("data_range", {})
        if dr:
            console.print("  fitted on: " + ", ".join(f"{k}={_q(v)}" for k, v in dr.items()), markup=False)
        if entry.get("bootstrap_dropped"):
            console.print(f"  {entry['bootstrap_dropped']} of {entry['n_bootstrap']} bootstrap refits did not converge "
                          "and were dropped")
        ex = entry.get("extrapolation")
        if ex and ex.get("kappa") is not None:
            console.print(f"  extrapolation error (rolling origin, {ex['n_predictions']} predictions from {ex['n_cuts']} "
                          f"cuts): kappa = {ex['kappa']:.3g} per decade beyond the fitted range (p = {ex['p_value']:.2g} "
                          f"against none), calibrated to {ex['calibrated_to_factor']:.3g}x")
        elif ex:
            console.print(f"  extrapolation error: {ex.get('note')}")
        for w in entry.get("warnings", []):
            console.print(f"  [yellow]warning:[/] {escape(w)}")
    if report.get("ranking"):
        table = Table(title="forms ranked by rolling-origin backtest error on the fitted runs")
        for col in ("law", "params", "mean |log error|", "excess over best ± se", "cuts"):
            table.add_column(col, justify="right")
        for r in report["ranking"]:
            table.add_row(r["law"] + (" (recommended)" if r["law"] == report.get("recommended") else ""),
                          str(r["n_params"]), f"{r['backtest_mean_abs_log_error']:.4f}",
                          "not compared (fewer cuts fitted)" if r["excess_over_best"] is None else
                          f"{r['excess_over_best']:+.4f} ± {r['excess_se']:.4f}", f"{r['n_cuts_compared']}/{r['n_cuts_fitted']}")
        console.print(table)
    ho = report.get("holdout")
    if ho:
        console.print(f"[bold]hold-out[/] ({escape(ho['expression'])}): {ho['n_held_out']} runs at C≈{ho['C_held_out']:.3g} "
                      f"({ho['C_held_out'] / ho['C_max_fitted']:.2g}× the largest fitted C)")
        for name, res in ho["results"].items():
            table = Table(title=f"{name}: predicted vs actual on held-out runs")
            for col in ("run", "N", "D", "factor", "actual", "predicted", "error", "95% prediction interval", "inside"):
                table.add_column(col)
            for r in res["runs"]:
                f = r.get("extrapolation_factor")
                table.add_row(escape(str(r["name"])), _q(r["N"]), _q(r["D"]), "-" if f is None else f"{f:.3g}x",
                              f"{r['actual']:.4f}", f"{r['predicted']:.4f}", f"{r['relative_error']:+.2%}",
                              f"[{r['interval'][0]:.4f}, {r['interval'][1]:.4f}]", str(r["inside"]))
            console.print(table)
            cov = res.get("coverage")
            console.print(f"  mean |rel. error| {res['mean_abs_rel_error']:.2%}, max {res['max_abs_rel_error']:.2%}"
                          + ("" if cov is None else f"; {cov:.0%} inside the prediction interval"))
    for p in report.get("figures", []):
        if p.endswith(".png"):
            console.print(f"figure: {p}", markup=False)


# --------------------------------------------------------------------------------------------- backtest
@app.command("backtest")
def backtest_cmd(
    file: Optional[Path] = typer.Argument(None, help="Backtest runs from this file instead of the store."),
    store: Path = StoreOpt,
    law: list[str] = typer.Option(["chinchilla"], "--law", help=f"Law(s): {', '.join(_names.BACKTEST_LAWS)} (repeatable)."),
    axis: str = typer.Option("C", help="Rolling origin along compute (C), model size (N) or both."),
    n_convention: str = NConventionOpt,
    flop_convention: str = FlopConventionOpt,
    family: Optional[str] = FamilyOpt,
    bootstrap: int = typer.Option(200, help="Bootstrap resamples per cut fit (>= 20: coverage needs intervals)."),
    bootstrap_kind: str = BootstrapKindOpt,
    level: float = typer.Option(0.95, help="Prediction-interval level whose coverage is checked."),
    max_cuts: int = typer.Option(6, help="At most this many cuts per axis (the ones fitted on the most runs)."),
    seed: int = typer.Option(0),
    out: Path = typer.Option(Path("scalinglab-out/backtest"), help="Directory for the figure."),
    figures: bool = typer.Option(True, help="Write PNG and SVG figures."),
    as_json: bool = JsonOpt,
):
    """Rolling-origin backtest: fit on the runs up to each cut, forecast the runs beyond it; error and
    prediction-interval coverage against extrapolation factor."""
    bad = [x for x in law if x not in analysis.BACKTEST_LAWS]
    if bad:
        _fail(f"unknown law(s) {', '.join(map(repr, bad))} for backtest; choose from {', '.join(analysis.BACKTEST_LAWS)}")
    if axis not in ("C", "N", "both"):
        _fail(f"--axis must be C, N or both, not {axis!r}")
    _conventions(n_convention, flop_convention)
    if not 0 < level < 1:
        _fail(f"--level must lie strictly between 0 and 1, got {level}")
    if bootstrap < 20:
        _fail(f"--bootstrap must be at least 20 (intervals are what a backtest checks), got {bootstrap}")
    if max_cuts < 1:
        _fail(f"--max-cuts must be at least 1, got {max_cuts}")
    _check_bootstrap_kind(bootstrap_kind)
    runs, source = _runs_from(file, store, family)
    selection = analysis.Selection(n_convention=n_convention, flop_convention=flop_convention, family=family)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = analysis.backtest_runs(runs, law, selection=selection, axis=axis, n_bootstrap=bootstrap, seed=seed,
                                         level=level, max_cuts=max_cuts, bootstrap_kind=bootstrap_kind)
        except (FitError, ValueError) as e:
            _fail(str(e))
    res["source"] = source
    res["warnings"] = sorted({str(w.message) for w in caught})
    if figures:
        from .report.figures import backtest_figure
        res["figures"] = backtest_figure(res, out)
    if as_json:
        return _emit_json(res)
    console.print(f"[bold]rolling-origin backtest[/] of {res['n_runs']} runs from {escape(source)}: "
                  f"{len(res['cuts'])} cuts along {axis}")
    for name, r in res["results"].items():
        table = Table(title=f"{name}: error and {level:.0%} prediction-interval coverage by extrapolation factor")
        for col in ("factor", "predictions", "mean |error|", "max |error|", "coverage ± se", "median half-width"):
            table.add_column(col, justify="right")
        for b in r["summary"]["by_factor"] + ([dict(r["summary"]["overall"], bin="all")] if r["summary"]["overall"] else []):
            cov = "-" if b["coverage"] is None else f"{b['coverage']:.0%} ± {b['coverage_se']:.0%}"
            hw = "-" if b["median_rel_half_width"] is None else f"{b['median_rel_half_width']:.2%}"
            table.add_row(b["bin"], str(b["n"]), f"{b['mean_abs_rel_error']:.2%}", f"{b['max_abs_rel_error']:.2%}", cov, hw)
        console.print(table)
        for f in r["failed_cuts"]:
            console.print(f"  cut at {f['axis']} <= {f['fitted_max']:.3g} not fitted: {escape(f['error'])}")
    for p in res.get("figures", []):
        if p.endswith(".png"):
            console.print(f"figure: {escape(p)}")


# --------------------------------------------------------------------------------------------- predict
@app.command("predict")
def predict_cmd(
    law: Optional[int] = typer.Option(None, "--law", help="Fit id from the store (any (N, D) law)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Published law: chinchilla-2022, epoch-2024, kaplan-2020."),
    params: Optional[str] = typer.Option(None, "--params", help="Model size(s), comma-separated (e.g. 7B or 1B,7B)."),
    tokens: Optional[str] = typer.Option(None, "--tokens", help="Training tokens, one or one per size (e.g. 140B)."),
    compute: Optional[str] = typer.Option(None, "--compute", help="Training compute in FLOPs (C = 6ND), comma-separated."),
    tokens_per_param: Optional[float] = typer.Option(None, "--tokens-per-param",
                                                     help="With --compute: N = sqrt(C / (6 M)), D = M N (else compute-optimal)."),
    level: float = typer.Option(0.95, help="Interval level."),
    store: Path = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Predict the loss at given (N, D), or at a compute budget: point, confidence and prediction interval."""
    if not 0 < level < 1:
        _fail(f"--level must lie strictly between 0 and 1, got {level}")
    if compute is not None and (params is not None or tokens is not None):
        _fail("give --params with --tokens, or --compute (optionally with --tokens-per-param), not both")
    if compute is None and (params is None or tokens is None):
        _fail("give --params and --tokens (e.g. --params 7B --tokens 140B), or --compute")
    if tokens_per_param is not None and (compute is None or not math.isfinite(tokens_per_param) or tokens_per_param <= 0):
        _fail("--tokens-per-param needs --compute and must be a positive number")

    if compute is not None:
        C = np.array(_quantities(compute, "--compute", hi=MAX_FLOPS))
    else:
        N, D = np.array(_quantities(params, "--params", hi=MAX_PARAMS)), np.array(_quantities(tokens, "--tokens", hi=MAX_TOKENS))
        if N.size != D.size and 1 not in (N.size, D.size):
            _fail(f"--params has {N.size} values and --tokens {D.size}: give one of each, or one to pair with all")
        N, D = np.broadcast_arrays(N, D)
    if (law is None) == (preset is None):
        _fail("give exactly one of --law FIT_ID or --preset NAME")
    if preset is not None and preset not in ("chinchilla-2022", "epoch-2024", "kaplan-2020"):
        _fail(f"--preset must be chinchilla-2022, epoch-2024 or kaplan-2020 for predict, not {preset!r}")
    if law is not None:
        if not store.exists():
            _fail(f"store {store} does not exist; fit first (scalinglab fit) or give --store")
        lawobj, source = _stored_law(store, law, tuple(analysis.ND_FORMS),
                                     f"predict needs one of: {', '.join(analysis.ND_FORMS)}")
    else:
        lawobj, source = get_preset(preset), f"preset {preset} ({PRESET_SOURCES[preset]})"
    if compute is not None:
        if tokens_per_param is not None:
            N = np.sqrt(C / (6.0 * tokens_per_param))
            D = tokens_per_param * N
        elif hasattr(lawobj, "compute_optimal"):
            N, D = (np.asarray(x, float) for x in lawobj.compute_optimal(C))
        else:
            _fail(f"{source} has no compute-optimal allocation; give --tokens-per-param")
    out = analysis.predict_loss(lawobj, N, D, level=level)
    out["law"] = source
    if as_json:
        return _emit_json(out)
    console.print(f"law: {escape(source)}")
    table = Table(title=f"predicted loss ({level:.0%} intervals)")
    for col in ("N", "D", "tokens/param", "C [FLOPs]", "loss", "confidence", "prediction", "beyond fitted"):
        table.add_column(col, justify="right")
    for r in out["predictions"]:
        ci, pi = r["confidence_interval"], r["prediction_interval"]
        f = r["extrapolation_factor"]
        table.add_row(_q(r["N"]), _q(r["D"]), f"{r['tokens_per_param']:.3g}", f"{r['C']:.3g}", f"{r['loss']:.4f}",
                      "-" if ci is None else f"[{ci[0]:.4f}, {ci[1]:.4f}]", "-" if pi is None else f"[{pi[0]:.4f}, {pi[1]:.4f}]",
                      "-" if f is None else (f"{f:.3g}x" + (" (past calibration)" if r["beyond_calibration"] else "")))
    console.print(table)
    if not out["from_data"]:
        console.print("  (published law: no fitted runs, so no intervals and no extrapolation distance)")
    else:
        ex = out.get("extrapolation_error") or {}
        console.print(f"  fitted on {out['fitted_on'].get('n_runs')} runs up to C = {out['fitted_on'].get('C_max', float('nan')):.3g} "
                      f"FLOPs, N = {_q(out['fitted_on'].get('N_max'))}; prediction interval = parameters + observation noise"
                      + (f" + extrapolation error (kappa {ex['kappa']:.3g} per decade, calibrated to "
                         f"{ex['calibrated_to_factor']:.3g}x)" if ex.get("kappa") is not None else ""))


def _stored_law(store: Path, law_id: int, kinds: tuple[str, ...], needs: str):
    """A fitted law from the store, refusing other kinds of fit with what is accepted (``needs``)."""
    try:
        with RunStore(store, readonly=True) as st:
            fit = st.fit(law_id)
    except (FileNotFoundError, KeyError) as e:
        _fail(str(e))
    payload = fit["payload"]
    if payload.get("law") not in kinds:
        _fail(f"fit {law_id} is a {fit['law']} fit; {needs}")
    try:
        sel = fit["selection"]
        return law_from_dict(payload), f"fit {law_id} ({fit['law']}, {sel.get('n_fitted', sel.get('n_runs'))} runs fitted)"
    except (KeyError, ValueError) as e:
        _fail(f"fit {law_id} cannot be read back: {e}")


# --------------------------------------------------------------------------------------------- plan
def _load_law(store: Path, law_id: Optional[int], preset: Optional[str]):
    if (law_id is None) == (preset is None):
        _fail("give exactly one of --law FIT_ID or --preset NAME "
              f"(presets: {', '.join(PRESET_SOURCES)})")
    if preset is not None:
        try:
            return get_preset(preset), f"preset {preset} ({PRESET_SOURCES[preset]})"
        except ValueError as e:
            _fail(str(e))
    return _stored_law(store, law_id, ("chinchilla", "data-constrained"),
                       "planning needs a chinchilla or data-constrained law")


@app.command("plan")
def plan_cmd(
    compute: Optional[str] = typer.Option(None, "--compute", help="Training compute in FLOPs (e.g. 1e23)."),
    gpu_hours: Optional[str] = typer.Option(None, "--gpu-hours", help="Compute as GPU-hours (with --hardware, --mfu)."),
    hardware: str = typer.Option("H100", help=f"Hardware profile: {', '.join(HARDWARE)}."),
    mfu: float = typer.Option(0.4, help="Model FLOPs utilisation for GPU-hour conversions."),
    law: Optional[int] = typer.Option(None, "--law", help="Fit id from the store."),
    preset: Optional[str] = typer.Option(None, "--preset", help=f"Published law: {', '.join(PRESET_SOURCES)}."),
    params: Optional[str] = typer.Option(None, "--params", help="Model size(s), comma-separated: compute-optimal tokens for each."),
    unique_tokens: Optional[str] = typer.Option(None, "--unique-tokens", help="Unique tokens available (data-constrained plan)."),
    target_loss: Optional[float] = typer.Option(None, "--target-loss", help="Cheapest N, D reaching this loss."),
    inference_tokens: Optional[str] = typer.Option(None, "--inference-tokens", help="Lifetime inference tokens (inference-aware plan)."),
    total_per_active: Optional[float] = typer.Option(None, "--total-per-active",
                                                     help="MoE: total/active parameter ratio (e.g. 3.6 for 8x7B-style) to show memory."),
    store: Path = StoreOpt,
    as_json: bool = JsonOpt,
):
    """Plan a run: compute-optimal N and D, data-constrained, target-loss and inference-aware plans."""
    C = _quantity(compute, "--compute", hi=MAX_FLOPS) if compute is not None else None
    hours = _quantity(gpu_hours, "--gpu-hours", hi=1e12) if gpu_hours is not None else None
    _choice(hardware, "--hardware", tuple(HARDWARE))
    _finite(mfu, "--mfu", lo=0, lo_open=True, hi=1)
    sizes = _quantities(params, "--params", hi=MAX_PARAMS) if params is not None else None
    unique = _quantity(unique_tokens, "--unique-tokens", hi=MAX_TOKENS) if unique_tokens is not None else None
    _finite(target_loss, "--target-loss", lo=0, lo_open=True, hi=100)
    inference = _quantity(inference_tokens, "--inference-tokens", hi=1e30) if inference_tokens is not None else None
    _finite(total_per_active, "--total-per-active", lo=1, hi=1e4)
    lawobj, source = _load_law(store, law, preset)
    try:
        if hours is not None:
            if C is not None:
                _fail("give --compute or --gpu-hours, not both")
            C = planning.gpu_hours_to_flops(hours, hardware, mfu)
        out: dict = {"law": source, "plans": {}}
        if params:
            if not hasattr(lawobj, "all_params") or "G" not in lawobj.all_params():
                _fail("--params needs a Chinchilla-form law (fit or preset chinchilla-2022 / epoch-2024)")
            out["plans"]["by_params"] = planning.plan_for_params(lawobj, sizes)
        if unique_tokens:
            from .laws import DataConstrainedLaw
            if C is None:
                _fail("--unique-tokens needs --compute or --gpu-hours")
            dcl = lawobj if isinstance(lawobj, DataConstrainedLaw) else get_preset("muennighoff-2023")
            if not isinstance(lawobj, DataConstrainedLaw):
                p = dict(dcl.params_)
                p.update({k: lawobj.params_[k] for k in ("E", "A", "B", "alpha", "beta")})
                dcl = DataConstrainedLaw.from_params(**p)
                out["note"] = "data-constrained plan: base law from " + source + ", R_D*/R_N* from muennighoff-2023"
            out["plans"]["data_constrained"] = planning.plan_data_constrained(dcl, C, unique)
        if target_loss is not None:
            out["plans"]["target_loss"] = planning.plan_target_loss(lawobj, target_loss)
        if inference_tokens:
            tgt = target_loss
            if tgt is None:
                if C is None:
                    _fail("--inference-tokens needs --target-loss or --compute (the loss of the compute-optimal model)")
                n0, d0 = lawobj.compute_optimal(C)
                tgt = float(lawobj.predict(n0, d0))
            out["plans"]["inference_aware"] = planning.plan_inference_aware(lawobj, tgt, inference)
        if C is not None and not unique_tokens:
            out["plans"]["compute_optimal"] = planning.plan_compute(lawobj, C)
            out["plans"]["compute_optimal"]["cost"] = planning.flops_to_gpu_hours(C, hardware, mfu)
        if not out["plans"]:
            _fail("nothing to plan: give --compute/--gpu-hours, --params, --target-loss or --inference-tokens")
        if total_per_active:
            for key in ("compute_optimal", "inference_aware"):
                if key in out["plans"]:
                    p = out["plans"][key]
                    n_act = p.get("N_opt", p.get("N"))
                    p["moe"] = {"N_active": n_act, "N_total": n_act * total_per_active,
                                "weight_bytes_bf16": 2.0 * n_act * total_per_active,
                                "note": "the law is over active parameters: compute follows N_active, memory N_total"}
    except ValueError as e:
        _fail(str(e))
    if store.exists():
        with RunStore(store) as st:
            out["decision_id"] = st.add_decision("plan", source, "planned", out)
    if as_json:
        return _emit_json(out)
    _print_plans(out)


def _print_plans(out: dict) -> None:
    console.print(f"law: {out['law']}")
    if "note" in out:
        console.print(out["note"])
    plans = out["plans"]
    if "compute_optimal" in plans:
        p = plans["compute_optimal"]
        cost = p["cost"]
        console.print(f"[bold]compute-optimal at C = {p['compute_flops']:.3g} FLOPs[/] "
                      f"(= {cost['gpu_hours']:.3g} {cost['hardware']} GPU-hours at MFU {cost['mfu']:.0%}, ${cost['usd']:.3g})")
        console.print(f"  N_opt = {_q(p['N_opt'])} {_iv(p, 'N_opt')}   D_opt = {_q(p['D_opt'])} {_iv(p, 'D_opt')}   "
                      f"tokens/param = {p['tokens_per_param']:.1f}")
        if p["loss"] is not None:
            console.print(f"  predicted loss = {p['loss']:.4f} {_iv(p, 'loss')}"
                          + (f" (prediction interval {_iv(p, 'loss_prediction')})" if "loss_prediction" in p["intervals"] else ""))
        if "moe" in p:
            console.print(f"  MoE: {_q(p['moe']['N_active'])} active → {_q(p['moe']['N_total'])} total parameters, "
                          f"{p['moe']['weight_bytes_bf16'] / 1e9:.1f} GB of bf16 weights")
        _print_extrapolation(p)
    if "by_params" in plans:
        table = Table(title="compute-optimal tokens per model size")
        for col in ("N", "D_opt", "tokens/param", "C [FLOPs]", "loss", "C 95% interval"):
            table.add_column(col, justify="right")
        for r in plans["by_params"]:
            table.add_row(_q(r["N"]), _q(r["D_opt"]), f"{r['tokens_per_param']:.1f}", f"{r['compute_flops']:.3g}",
                          f"{r['loss']:.4f}", _iv(r, "compute_flops"))
        console.print(table)
    if "data_constrained" in plans:
        p = plans["data_constrained"]
        console.print(f"[bold]data-constrained at C = {p['compute_flops']:.3g}, U = {_q(p['unique_tokens'])} unique tokens[/]")
        console.print(f"  N = {_q(p['N'])}, D = {_q(p['D'])} ({p['epochs']:.2f} epochs; effective data {_q(p['effective_data'])})")
        console.print(f"  loss = {p['loss']:.4f}; with unlimited unique data {p['loss_if_data_were_unique']:.4f}; "
                      f"lost to repetition {p['loss_lost_to_repetition']:.4f}")
        u = p["unconstrained"]
        console.print(f"  unconstrained optimum: N = {_q(u['N_opt'])}, D = {_q(u['D_opt'])}, loss {u['loss']:.4f}")
        if p.get("plateau"):
            console.print(f"  {p['plateau']['note']}" + (" (this budget is already there)" if p["plateau"]["beyond"] else ""))
    if "target_loss" in plans:
        p = plans["target_loss"]
        console.print(f"[bold]cheapest run reaching loss {p['target_loss']}[/]: C = {p['compute_flops']:.3g} {_iv(p, 'compute_flops')}, "
                      f"N = {_q(p['N_opt'])}, D = {_q(p['D_opt'])}")
        _print_extrapolation(p)
    if "inference_aware" in plans:
        p = plans["inference_aware"]
        c = p["chinchilla_optimal"]
        console.print(f"[bold]inference-aware for loss {p['target_loss']:.4f} and {_q(p['inference_tokens'])} inference tokens[/]")
        console.print(f"  N = {_q(p['N'])}, D = {_q(p['D'])} ({p['tokens_per_param']:.0f} tokens/param); total "
                      f"{p['total_flops']:.3g} FLOPs vs {c['total_flops']:.3g} for the Chinchilla-optimal N = {_q(c['N'])} "
                      f"({p['flops_saved_fraction']:.1%} saved)")


def _print_extrapolation(p: dict) -> None:
    ex = p.get("extrapolation", {})
    if ex.get("from_data") and "compute_over_max_fitted" in ex:
        console.print(f"  extrapolates {ex['compute_over_max_fitted']:.3g}× beyond the largest fitted compute "
                      f"({ex['fitted_on'].get('C_max', float('nan')):.3g} FLOPs, {ex['fitted_on'].get('n_runs')} runs)")
    elif not ex.get("from_data"):
        console.print("  (published law: no fitted data range to compare against)")


@app.command("presets")
def presets_cmd(as_json: bool = JsonOpt):
    """List the published laws available as presets, with their sources and parameters."""
    out = {name: {"source": src, "params": get_preset(name).all_params()} for name, src in PRESET_SOURCES.items()}
    if as_json:
        return _emit_json(out)
    for name, v in out.items():
        console.print(f"[bold]{name}[/]: {v['source']}")
        console.print("   " + ", ".join(f"{k}={x:.5g}" for k, x in v["params"].items()))


# --------------------------------------------------------------------------------------------- ladder
EXECUTOR_MODULES = {"ray": "ray", "slurm": "submitit"}
# wall times of the presets as measured and logged in docs/experiments.md (2 CPU cores); the README quotes
# these same words, and tests/test_docs.py holds the three together
PRESET_WALL_TIMES = {"smoke": "about a minute", "quick": "~7 minutes on 2 CPU cores"}


@app.command("ladder")
def ladder_cmd(
    preset: str = typer.Option("quick", help=f"smoke ({PRESET_WALL_TIMES['smoke']}: checks an install), quick "
                                            f"({PRESET_WALL_TIMES['quick']}), standard, large."),
    moe: bool = typer.Option(False, "--moe", help="Train an iso-active Mixture-of-Experts ladder beside the dense one."),
    moe_only: bool = typer.Option(False, "--moe-only", help="Train only the MoE ladder."),
    budgets: Optional[str] = typer.Option(None, help="Comma-separated compute budgets in FLOPs (C = 6 N_active D)."),
    sizes_per_budget: Optional[int] = typer.Option(None, min=3, max=64, help="Model sizes per IsoFLOP budget (>= 3)."),
    corpus: str = typer.Option("stdlib", help="'stdlib' (the running Python's standard library), a folder/file/JSONL of "
                                              "text, or a procedural task task:KIND:DIGITS[:FORMAT] (KIND addition, "
                                              "multiplication, reverse or mix; FORMAT direct, scratchpad or mixed), "
                                              "e.g. task:addition:2:mixed."),
    tokenizer: str = typer.Option("byte", help="byte or bpe (trained on the corpus with `tokenizers`)."),
    device: str = typer.Option("cpu", help="cpu, cuda, cuda:1, ..."),
    dtype: str = typer.Option("fp32", help="fp32 or bf16 (autocast)."),
    compile: bool = typer.Option(False, "--compile", help="torch.compile each model."),
    keep_checkpoints: bool = typer.Option(False, "--keep-checkpoints",
                                          help="Keep each run's weights at its evaluation steps (`evaluate` scores "
                                               "them; task forecasts then measure checkpoint noise)."),
    executor: str = typer.Option("local", help="local (worker processes), inline (this process), ray or slurm (submitit)."),
    workers: int = typer.Option(1, min=1, max=1024, help="Runs at a time (local executor)."),
    address: Optional[str] = typer.Option(None, help="Ray cluster address: auto or HOST:PORT (default: start one here)."),
    gpus_per_run: float = typer.Option(0, min=0, max=64, help="GPUs each run asks Ray for."),
    threads: Optional[int] = typer.Option(None, min=1, max=1024, help="Torch threads per worker."),
    bootstrap: Optional[int] = typer.Option(None, min=0, max=100_000, help="Bootstrap resamples for the fits."),
    verify: bool = typer.Option(True, help="Forecast, then train, a run at --verify-multiplier x the largest budget."),
    verify_multiplier: Optional[float] = typer.Option(None, help="Verification compute over the largest budget "
                                                      "(preset default: 10 for quick, 30 for standard and large)."),
    schedule: Optional[str] = typer.Option(None, help="wsd (one constant-LR run per size with cooldown branches; "
                                                      "the presets' default) or cosine (every run from scratch)."),
    lr_sweep: Optional[bool] = typer.Option(None, "--lr-sweep/--no-lr-sweep",
                                            help="Fit the LR rule lr(N) by a short sweep at the two smallest budgets first."),
    lr: Optional[float] = typer.Option(None, help="Peak LR at --lr-ref-params (with --no-lr-sweep: the rule's anchor)."),
    lr_exponent: Optional[float] = typer.Option(None, help="lr(N) = lr * (N / lr_ref_params)^-lr_exponent (no sweep)."),
    seed: int = typer.Option(0, help="Seed of every run (initialisation and data order)."),
    store: Path = StoreOpt,
    out: Path = typer.Option(Path("scalinglab-out/ladder"), help="Directory for figures."),
    checkpoints: str = typer.Option("scalinglab-out/checkpoints",
                                    help="Checkpoint directory or fsspec URL (s3://...) every worker can reach."),
    as_json: bool = JsonOpt,
):
    """Train a ladder of small transformers, fit scaling laws, forecast a bigger run, then verify it.

    Re-running skips finished runs, so a killed ladder resumes where it stopped.
    """
    import dataclasses as dc

    _choice(tokenizer, "--tokenizer", ("byte", "bpe"))
    _choice(dtype, "--dtype", ("fp32", "bf16"))
    _choice(executor, "--executor", ("local", "inline", "ray", "slurm"))
    if schedule is not None:
        _choice(schedule, "--schedule", ("wsd", "cosine"))
    if moe and moe_only:
        _fail("give --moe (dense and MoE ladders) or --moe-only, not both")
    budget_values = _quantities(budgets, "--budgets", lo=1e6, hi=MAX_LADDER_FLOPS) if budgets else None
    _finite(lr, "--lr", lo=0, lo_open=True, hi=10)
    _finite(lr_exponent, "--lr-exponent", lo=-2, hi=2)
    _finite(verify_multiplier, "--verify-multiplier", lo=1, hi=1e4)
    if not corpus.startswith("task:") and corpus != "stdlib" and "://" not in corpus and not Path(corpus).exists():
        _fail(f"--corpus {corpus}: no such file or folder (accepted: stdlib, a folder/file/JSONL of text, "
              "or task:KIND:DIGITS[:FORMAT])")
    _require("train", "scalinglab ladder", "torch")
    if tokenizer == "bpe":
        _require("bpe", "--tokenizer bpe", "tokenizers")
    if executor in EXECUTOR_MODULES:
        _require(executor, f"--executor {executor}", EXECUTOR_MODULES[executor])
    from .experiments.ladder import run_ladder
    from .train.executors import make_executor
    from .train.ladder import PRESETS
    if preset not in PRESETS:
        _fail(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    changes: dict = {"corpus": corpus, "tokenizer": tokenizer, "device": device, "dtype": dtype, "compile": compile,
                     "keep_eval_checkpoints": keep_checkpoints, "seed": seed}
    if moe or moe_only:
        changes["families"] = ("moe",) if moe_only else ("dense", "moe")
    try:
        if budget_values:
            changes["budgets"] = tuple(budget_values)
        if sizes_per_budget:
            changes["sizes_per_budget"] = sizes_per_budget
        if bootstrap is not None:
            changes["n_bootstrap"] = bootstrap
        for key, value in (("verify_multiplier", verify_multiplier), ("schedule", schedule), ("lr_sweep", lr_sweep),
                           ("lr", lr), ("lr_exponent", lr_exponent)):
            if value is not None:
                changes[key] = value
        _check_device(device)
        spec = dc.replace(PRESETS[preset], **changes)
        largest = max(spec.budgets) * (spec.verify_multiplier if verify else 1)
        if device == "cpu" and largest > MAX_CPU_RUN_FLOPS:
            _fail(f"--budgets: the largest run would take {largest:.3g} FLOPs, about {largest / 1e11 / 86400:.0f} days on a "
                  f"CPU at 100 GFLOP/s; CPU ladders are refused above {MAX_CPU_RUN_FLOPS:.0e} FLOPs per run (use "
                  "--device cuda, or smaller --budgets)")
        ex = make_executor(executor, workers=workers, threads=threads, address=address, gpus_per_run=gpus_per_run)
    except ValueError as e:
        _fail(str(e))
    log = (lambda m: err.print(m, highlight=False, markup=False)) if as_json else (lambda m: console.print(m, highlight=False, markup=False))
    try:
        with RunStore(store) as st:
            report = run_ladder(spec, st, executor=ex, checkpoint_dir=checkpoints, out=out, verify=verify,
                                show_progress=not as_json, log=log)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    if as_json:
        _emit_json(report)
    else:
        _print_ladder(report)
    t = report.get("training", {})
    if t.get("failed") and not (t.get("trained") or t.get("diverged") or t.get("skipped") or t.get("by_other_drivers")):
        err.print(f"error: all {t['failed']} run(s) of the ladder failed; their errors are in the store "
                  f"(scalinglab runs --status failed)", markup=False, highlight=False)
        raise typer.Exit(1)


@app.command("lr-check")
def lr_check_cmd(
    preset: str = typer.Option("quick", help="The ladder preset whose LR rule and sizes to check."),
    at: str = typer.Option("smallest,largest", help="Comma-separated ladder sizes to sweep at: smallest, largest."),
    seed: int = typer.Option(0, help="Seed of the runs (the ladder's)."),
    store: Path = StoreOpt,
    checkpoints: str = typer.Option("scalinglab-out/checkpoints", help="Checkpoint directory."),
    as_json: bool = JsonOpt,
):
    """Sweep the learning rate around the preset's rule at its smallest and largest ladder sizes and say whether
    the rule's LR lies in the flat region of the optimum (fitted loss within 1% of the best).

    The LR rule itself is first fitted as the ladder does (a short sweep at the two smallest budgets); runs
    already in the store are reused.
    """
    import dataclasses as dc

    _require("train", "scalinglab lr-check", "torch")
    from .experiments.ladder import lr_check
    from .train.ladder import PRESETS
    if preset not in PRESETS:
        _fail(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    where = tuple(x.strip() for x in at.split(",") if x.strip())
    bad = [x for x in where if x not in ("smallest", "largest")]
    if bad or not where:
        _fail(f"--at takes smallest and/or largest, not {at!r}")
    spec = dc.replace(PRESETS[preset], seed=seed)
    log = (lambda m: err.print(m, highlight=False, markup=False)) if as_json else (lambda m: console.print(m, highlight=False, markup=False))
    with RunStore(store) as st:
        out = lr_check(spec, st, checkpoint_dir=checkpoints, at=where, show_progress=not as_json, log=log)
    if as_json:
        return _emit_json(out)
    table = Table(title=f"learning rate around the rule lr(N) = {out['rule']['lr']}")
    for col in ("ladder size", "N", "budget", "optimum lr", "flat region (loss within 1%)", "rule lr", "inside", "loss cost"):
        table.add_column(col, justify="right")
    for label, s in out["sizes"].items():
        if "error" in s:
            table.add_row(label, "-", "-", "-", s["error"], "-", "-", "-")
            continue
        table.add_row(label, _q(s["N"]), f"{s['budget']:.3g}", f"{s['lr_opt']:.3g}",
                      f"[{s['flat_region'][0]:.3g}, {s['flat_region'][1]:.3g}]", f"{s['rule_lr']:.3g}",
                      "yes" if s["rule_inside_flat_region"] else "NO", f"+{s['rule_loss_excess']:.2%}")
    console.print(table)


def _print_ladder(report: dict) -> None:
    tr = report["training"]
    console.print(f"[bold]ladder[/]: {report['n_runs']} runs; trained {tr['trained']}, skipped {tr['skipped']}, "
                  f"diverged {tr['diverged']}, failed {tr['failed']} ({report['seconds']:.0f}s)")
    rule = report.get("hp_rule", {})
    if rule:
        console.print(f"learning rate lr(N) = {rule['lr']}; warmup {rule['warmup']}; {rule['schedule']} schedule", markup=False)
    comp = report.get("compute")
    if comp and comp["saved_fraction"] > 0:
        console.print(f"grid compute {comp['trained_flops']:.3g} FLOPs trained for {comp['nominal_flops']:.3g} nominal "
                      f"({comp['saved_fraction']:.0%} saved by {comp['trunks']} shared WSD trunks)")
    for family, res in report["families"].items():
        if "error" in res:
            console.print(f"[red]{family}: {res['error']}[/]")
            continue
        _print_fit_report(res, f"the {family} ladder")
        v = res.get("verification")
        if v and "actual_loss" in v:
            console.print(f"[bold]{family} verification[/] at C={v['compute_flops']:.3g} "
                          f"({v['extrapolation']['compute_over_max_fitted']:.1f}x the largest fitted budget), N={_q(v['N'])}, "
                          f"D={_q(v['D'])}: forecast {v['predicted_loss']:.4f} [{v['interval'][0]:.4f}, {v['interval'][1]:.4f}], "
                          f"actual {v['actual_loss']:.4f} ({v['relative_error']:+.2%}; inside: {v['inside_interval']}; "
                          f"law: {v['law']})")
            c = v.get("curve_law")
            if c and "relative_error" in c:
                console.print(f"  curve law (independent): forecast {c['predicted_loss']:.4f} [{c['interval'][0]:.4f}, "
                              f"{c['interval'][1]:.4f}] ({c['relative_error']:+.2%}; inside: {c['inside_interval']})")
        elif v:
            console.print(f"[yellow]{family} verification[/]: {v.get('error') or v.get('status')}")
    if "moe_vs_dense" in report:
        table = Table(title="MoE compute multiplier (dense compute reaching the MoE loss / MoE compute)")
        for col in ("budget", "MoE loss", "multiplier"):
            table.add_column(col, justify="right")
        for r in report["moe_vs_dense"]["budgets"]:
            table.add_row(f"{r['budget']:.3g}", f"{r['moe_loss']:.4f}", "-" if r["multiplier"] is None else f"{r['multiplier']:.2f}x")
        console.print(table)


@app.command("compare")
def compare_cmd(
    baseline: str = typer.Option(..., "--baseline", help="Baseline recipe. Stored mode: a family or recipe name in the "
                                                         "store (e.g. dense); training mode (--preset): a recipe."),
    candidate: list[str] = typer.Option(..., "--candidate", help="A candidate recipe (repeat). Training mode: NAME or "
                                                                 "NAME:KEY=VALUE,... (dense, moe, muon, bpe; keys arch, "
                                                                 "n_experts, top_k, optimizer, tokenizer, lr)."),
    preset: Optional[str] = typer.Option(None, help="Train the recipes' ladders with this ladder preset (smoke, quick, "
                                                    "standard, large) before comparing; without it, compare stored runs."),
    budgets: Optional[str] = typer.Option(None, help="Training mode: comma-separated compute budgets in FLOPs."),
    sizes_per_budget: Optional[int] = typer.Option(None, help="Training mode: model sizes per IsoFLOP budget (>= 3)."),
    corpus: str = typer.Option("stdlib", help="Training mode: the corpus (as for scalinglab ladder)."),
    seed: int = typer.Option(0, help="Seed of every run (initialisation and data order) and of the bootstrap."),
    bootstrap: Optional[int] = typer.Option(None, help="Joint bootstrap resamples (default: the preset's, else 400)."),
    executor: str = typer.Option("local", help="Training mode: local (worker processes) or inline (this process)."),
    threads: Optional[int] = typer.Option(None, help="Training mode: torch threads per worker."),
    store: Path = StoreOpt,
    out: Path = typer.Option(Path("scalinglab-out/compare"), help="Directory for the figure."),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Write the comparison figure (PNG and SVG)."),
    checkpoints: str = typer.Option("scalinglab-out/checkpoints", help="Training mode: checkpoint directory."),
    as_json: bool = JsonOpt,
):
    """Does a recipe change keep paying as compute grows? Compare IsoFLOP ladders of a baseline and candidates.

    Per budget: the compute-equivalent multiplier (baseline compute reaching the candidate's frontier loss /
    candidate compute) with a bootstrap interval (runs resampled jointly), the exponent differences, and a
    verdict from the interval on d log(multiplier) / d log C: constant gain, growing gain, shrinking gain or
    not distinguishable at this range. Losses in bits per byte when tokenizers differ.
    """
    import dataclasses as dc

    _whole(bootstrap, "--bootstrap", 20, 100_000)
    _whole(sizes_per_budget, "--sizes-per-budget", 3, 64)
    _whole(threads, "--threads", 1, 1024)
    _choice(executor, "--executor", ("local", "inline"))
    from .experiments.compare import RECIPE_HELP, parse_recipe
    names = [baseline, *candidate]
    if len(set(names)) != len(names):
        _fail(f"--baseline and --candidate must name distinct recipes, got {', '.join(names)}")
    if preset is None:
        for opt, value in (("--budgets", budgets), ("--sizes-per-budget", sizes_per_budget)):
            if value is not None:
                _fail(f"{opt} applies to training mode (give --preset), not to stored runs")
        _existing_store(store)
        from .experiments.compare import compare_stored
        with RunStore(store) as st:
            missing = [n for n in names if not _stored_recipe(st, n)]
            if missing:
                families = sorted({r.family for r in st.runs(status="finished") if r.family})
                _fail(f"no finished runs of {', '.join(missing)} in {store} (families there: "
                      f"{', '.join(families) or 'none'}); give --preset to train them")
            try:
                result = compare_stored(st, baseline, list(candidate), n_bootstrap=bootstrap or 400, seed=seed, out=out,
                                        figures=figures)
            except (FitError, ValueError) as e:
                _fail(str(e))
    else:
        from .train.ladder import PRESETS
        _choice(preset, "--preset", tuple(PRESETS))
        try:
            recipes = [parse_recipe(n) for n in names]
        except ValueError as e:
            _fail(f"--baseline/--candidate: {e}")
        budget_values = _quantities(budgets, "--budgets", lo=1e6, hi=MAX_CPU_RUN_FLOPS) if budgets else None
        if not corpus.startswith("task:") and corpus != "stdlib" and not Path(corpus).exists():
            _fail(f"--corpus {corpus}: no such file or folder (accepted: stdlib, a folder/file/JSONL of text, "
                  "or task:KIND:DIGITS[:FORMAT])")
        _require("train", "scalinglab compare --preset", "torch")
        if any(dict(r.options).get("tokenizer") == "bpe" for r in recipes):
            _require("bpe", "a bpe recipe", "tokenizers")
        from .experiments.compare import run_compare
        from .train.executors import make_executor
        changes: dict = {"corpus": corpus, "seed": seed}
        for key, value in (("budgets", tuple(budget_values) if budget_values else None),
                           ("sizes_per_budget", sizes_per_budget), ("n_bootstrap", bootstrap)):
            if value is not None:
                changes[key] = value
        try:
            spec = dc.replace(PRESETS[preset], **changes)
            for r in recipes:
                r.apply(spec)
            ex = make_executor(executor, workers=1, threads=threads)
        except ValueError as e:
            _fail(f"{e} (recipes: {RECIPE_HELP})")
        log = (lambda m: err.print(m, highlight=False, markup=False)) if as_json else (lambda m: console.print(m, highlight=False, markup=False))
        with RunStore(store) as st:
            try:
                result = run_compare(spec, recipes[0], recipes[1:], st, executor=ex, checkpoint_dir=checkpoints, out=out,
                                     figures=figures, show_progress=not as_json, log=log)
            except (FitError, ValueError) as e:
                _fail(str(e))
    if as_json:
        return _emit_json(result)
    _print_compare(result)


def _nearest_serving(rows: list[dict], budget: float) -> dict | None:
    rows = [r for r in rows if r["budget"] and r["decode_flops_per_token"]]
    return min(rows, key=lambda r: abs(math.log(r["budget"] / budget)), default=None)


def _stored_recipe(st, name: str) -> bool:
    from .experiments.compare import stored_recipe_runs
    return bool(stored_recipe_runs(st, name))


def _print_compare(result: dict) -> None:
    for name, r in result["recipes"].items():
        if "error" in r:
            console.print(f"[red]{escape(name)}: {escape(r['error'])}[/]")
            continue
        f = r["frontier"]
        console.print(f"{name}: {r['n_runs']} runs; frontier L*(C) = {f['E']:.4g} + {f['k']:.4g} C^-{f['a']:.4f} "
                      f"({result['loss_units']})", markup=False, highlight=False)
    serving = result.get("serving", {})
    for name, c in result["candidates"].items():
        if "error" in c:
            console.print(f"{name}: {c['verdict']} ({c['evidence']})", markup=False, highlight=False)
            continue
        base = result["baseline"]
        table = Table(title=f"{name} vs {base}: compute-equivalent multiplier ({result['level']:.0%} interval; "
                            f"{c['verdict_from']}) and the best run's serving side")
        for col in ("budget", f"{base} loss", f"{name} loss", "multiplier", "interval", "params total / active",
                    "decode FLOPs/token"):
            table.add_column(col, justify="right")
        for row in c["budgets"]:
            iv = row["interval"]
            sides = [_nearest_serving(serving.get(n, []), row["budget"]) for n in (base, name)]
            table.add_row(f"{row['budget']:.3g}", f"{row.get('baseline_loss', row.get('baseline_min_loss')):.4f}",
                          f"{row.get('candidate_loss', row.get('candidate_min_loss')):.4f}",
                          f"{row['multiplier']:.3g}x", f"[{iv[0]:.3g}, {iv[1]:.3g}]" if iv else "-",
                          " vs ".join(f"{_q(x['n_total'])} / {_q(x['n_active'])}" if x else "-" for x in sides),
                          " vs ".join(_q(x["decode_flops_per_token"]) if x else "-" for x in sides))
        console.print(table)
        e = c["exponents"]
        console.print("exponent differences (candidate - baseline): " + "; ".join(
            f"{k} {v['difference']:+.3f}" + (f" [{v['interval'][0]:+.3f}, {v['interval'][1]:+.3f}]" if v["interval"] else "")
            for k, v in e.items()), markup=False, highlight=False)
        console.print(f"verdict: {c['verdict']} -- {c['evidence']}", markup=False, highlight=False)
    for w in result.get("warnings", []):
        console.print(f"warning: {w}", markup=False, highlight=False)
    for p in result.get("figures", []):
        console.print(f"figure: {p}", markup=False, highlight=False)


# --------------------------------------------------------------------------------------------- test-time
samples_app = _App(help="Samples for test-time analyses.", no_args_is_help=True)
app.add_typer(samples_app, name="samples")


@samples_app.command("import")
def samples_import_cmd(file: Path = typer.Argument(..., help="JSONL/CSV/Parquet: per-problem (problem, n, c) or per-sample rows."),
                       store: Path = StoreOpt, task: Optional[str] = typer.Option(None, help="Task name if the file has none."),
                       model: Optional[str] = typer.Option(None, help="Model name if the file has none."),
                       on_duplicate: str = typer.Option("error", help="error, skip or replace."), as_json: bool = JsonOpt):
    """Import samples (validated; nothing written on any error)."""
    _check_on_duplicate(on_duplicate)
    from .testtime.samples import parse_samples, summary
    if file.is_dir():
        _fail(f"{file} is a directory; give a samples file (JSONL/CSV/Parquet)")
    try:       # the whole file is checked before the store is opened (a refused import creates no store)
        parsed = parse_samples(file, task=task, model=model)
        with RunStore(store) as st:
            st.add_samples(parsed["rows"], parsed["counts"], on_duplicate=on_duplicate)
        res = summary(parsed)
    except (importers.ImportFormatError, StoreError) as e:
        _fail(str(e))
    if as_json:
        return _emit_json(res)
    console.print(f"imported {res['samples']} samples / {res['problems']} problems ({res['mode']}) into {store}: "
                  f"{', '.join(res['groups'])}", markup=False)


def _groups(file, store, task, model):
    from .testtime.samples import load_groups
    if file is not None and file.is_dir():
        _fail(f"{file} is a directory; give a samples file (JSONL/CSV/Parquet)")
    if file is None:
        _existing_store(store)
    try:
        if file is not None:
            groups = load_groups(file, task=task, model=model)
        else:
            with RunStore(store, readonly=True) as st:
                groups = load_groups(None, st, task=task, model=model)
    except (importers.ImportFormatError, FileNotFoundError) as e:
        _fail(str(e))
    if not groups and (task is not None or model is not None):
        everything = load_groups(file, task=None, model=None) if file is not None else None
        if everything is None:
            with RunStore(store, readonly=True) as st:
                everything = load_groups(None, st)
        have = ", ".join(f"{t}/{m}" for t, m in sorted(everything)) or "none"
        _fail(f"no samples for --task {task or '(any)'} --model {model or '(any)'} in {file or store} (task/model there: {have})")
    return groups


def _ks(text: str) -> list[int]:
    ks = _quantities(text, "--k", lo=1, lo_open=False, hi=1e12)
    if any(k != int(k) for k in ks):
        _fail(f"--k takes whole numbers of samples (e.g. 1,10,100), got {text!r}")
    return sorted({int(k) for k in ks})


@app.command("passk")
def passk_cmd(file: Optional[Path] = typer.Argument(None, help="Samples file (else the store)."), store: Path = StoreOpt,
              k: str = typer.Option("1,2,4,8,16,32,64", "--k", help="Comma-separated k values."),
              task: Optional[str] = None, model: Optional[str] = None,
              clamp: bool = typer.Option(False, help="Use k = n where k exceeds a problem's samples."),
              bootstrap: int = typer.Option(1000, min=0, max=100_000, help="Bootstrap resamples over problems."),
              target: Optional[float] = typer.Option(None, help="Coverage to reach: samples needed, from the fitted law."),
              out: Path = typer.Option(Path("scalinglab-out/testtime"), help="Directory for figures."),
              figures: bool = typer.Option(True), as_json: bool = JsonOpt):
    """Unbiased pass@k (coverage) with bootstrap intervals and the coverage law exp(a k^b)."""
    from .testtime.analysis import compute_frontier, passk_report
    ks = _ks(k)
    _finite(target, "--target", lo=0, hi=1, lo_open=True, hi_open=True)
    groups = _groups(file, store, task, model)
    if not groups:
        _fail("no samples found")
    try:
        rep = passk_report(groups, ks, n_bootstrap=bootstrap, clamp=clamp, target=target)
    except ValueError as e:
        _fail(str(e).replace("pass clamp=True", "give --k up to the samples drawn, or --clamp"))
    rep["frontier"] = compute_frontier(list(rep["groups"].values()))
    if figures:
        from .report.figures import coverage_figures
        rep["figures"] = coverage_figures(rep, out)
    if as_json:
        return _emit_json(rep)
    for name, g in rep["groups"].items():
        table = Table(title=f"{escape(name)}: coverage over {g['n_problems']} problems")
        for col in ("k", "pass@k", "95% interval") + (("inference FLOPs",) if "inference_flops" in g else ()):
            table.add_column(col, justify="right")
        for i, kk in enumerate(g["k"]):
            row = [str(kk), f"{g['coverage'][i]:.4f}", f"[{g['lower'][i]:.4f}, {g['upper'][i]:.4f}]" if "lower" in g else ""]
            if "inference_flops" in g:
                row.append(f"{g['inference_flops'][i]:.3g}")
            table.add_row(*row)
        console.print(table)
        law = g.get("coverage_law", {})
        if "params" in law:
            iv = law["intervals"]
            fmt_iv = lambda v: f"[{v[0]:.3g}, {v[1]:.3g}]" if v else ""  # noqa: E731
            console.print(f"  coverage law exp(a k^b): a={law['params']['a']:.4f} {fmt_iv(iv.get('a'))}, "
                          f"b={law['params']['b']:.4f} {fmt_iv(iv.get('b'))}")
            if "samples_for_target" in law:
                s = law["samples_for_target"]
                how = ("extrapolated beyond" if s["k"] > s["fitted_k_max"] else "interpolated within") \
                    + f" the measured k ≤ {s['fitted_k_max']:.0f}"
                console.print(f"  samples for coverage {s['target']}: k ≈ {s['k']:.3g} {fmt_iv(s.get('interval'))} ({how})")
        else:
            console.print(f"  coverage law: {law.get('error')}")


@app.command("passk-forecast")
def passk_forecast_cmd(file: Optional[Path] = typer.Argument(None, help="Samples file (else the store)."), store: Path = StoreOpt,
                       k: str = typer.Option("100,1000,10000", "--k", help="Comma-separated k values to forecast."),
                       distribution: str = typer.Option("beta", "--distribution", help="beta or kumaraswamy."),
                       zero_mass: str = typer.Option("auto", help="A share of never-solvable problems: auto, yes or no."),
                       bootstrap: int = typer.Option(200, help="Refits on resampled problems, for the intervals."),
                       backtest: Optional[int] = typer.Option(None, help="Keep this many samples per problem, forecast "
                                                              "from them, and score against all the samples."),
                       task: Optional[str] = None, model: Optional[str] = None, as_json: bool = JsonOpt):
    """pass@k at any k from the fitted distribution of per-problem success (beta or Kumaraswamy)."""
    if distribution not in ("beta", "kumaraswamy"):
        _fail(f"--distribution must be beta or kumaraswamy, not {distribution!r}")
    if zero_mass not in ("auto", "yes", "no"):
        _fail(f"--zero-mass must be auto, yes or no, not {zero_mass!r}")
    if not 0 <= bootstrap <= 100_000:
        _fail(f"--bootstrap must be from 0 to 100,000, got {bootstrap}")
    if backtest is not None and backtest < 1:
        _fail(f"--backtest must be at least 1 sample per problem, got {backtest}")
    ks = _ks(k)
    groups = _groups(file, store, task, model)        # refuses a missing store
    if not groups:
        _fail("no samples found")
    from .testtime.distribution import passk_forecast_report
    try:
        rep = passk_forecast_report(groups, ks, family=distribution, zero_mass={"yes": True, "no": False}.get(zero_mass, "auto"),
                                    n_bootstrap=bootstrap, backtest=backtest)
    except ValueError as e:
        _fail(str(e))
    if as_json:
        return _emit_json(rep)
    for name, g in rep["groups"].items():
        if "error" in g:
            console.print(f"{escape(name)}: {escape(g['error'])}", highlight=False)
            continue
        d, f = g["distribution"], g["forecast"]
        iv = d["intervals"]
        fmt = lambda key: f"{d['params'][key]:.3g}" + (f" [{iv[key][0]:.3g}, {iv[key][1]:.3g}]" if key in iv else "")  # noqa: E731
        ns = d["never_solvable"]
        console.print(f"{escape(name)}: {d['family']} fit to {d['n_problems']} problems ({d['n_samples']['min']}-"
                      f"{d['n_samples']['max']} samples each): a={fmt('a')}, b={fmt('b')}; never-solvable share "
                      + (f"{ns['share']:.3f}" + (f" [{ns['interval'][0]:.3f}, {ns['interval'][1]:.3f}]" if "interval" in ns else "")
                         if ns["fitted"] else f"0 (not kept: likelihood-ratio {d['lr_statistic'] or 0:.2f} < 2.71)")
                      + f"; fit vs measured pass@k up to k={g['fit_check']['k'][-1]}: max |error| {g['fit_check']['max_abs_error']:.4f}",
                      highlight=False)
        table = Table(title=f"{escape(name)}: pass@k forecast")
        for col in ("k", "distribution", "95% interval", "coverage law exp(a k^b)", "measured"):
            table.add_column(col, justify="right")
        agg = g["aggregate"]
        measured = dict(zip(g["measured"]["k"], g["measured"]["pass_at_k"]))
        for i, kk in enumerate(f["k"]):
            table.add_row(f"{kk:,.0f}", f"{f['pass_at_k'][i]:.4f}",
                          f"[{f['lower'][i]:.4f}, {f['upper'][i]:.4f}]" if "lower" in f else "",
                          f"{agg['pass_at_k'][i]:.4f}" if "pass_at_k" in agg else "-",
                          f"{measured[int(kk)]:.4f}" if int(kk) in measured else "")
        console.print(table)
        if "backtest" in g:
            b = g["backtest"]
            for i, kk in enumerate(b["k"]):
                a_err = b["aggregate"]["abs_error"][i] if "abs_error" in b["aggregate"] else float("nan")
                console.print(f"  backtest from {b['kept_per_problem']} samples per problem, k={kk:,}: all samples "
                              f"{b['actual'][i]:.4f}; distribution {b['distribution']['forecast']['pass_at_k'][i]:.4f} "
                              f"(|error| {b['distribution']['abs_error'][i]:.4f}); coverage law "
                              f"|error| {a_err:.4f}", highlight=False)


@app.command("majk")
def majk_cmd(file: Optional[Path] = typer.Argument(None), store: Path = StoreOpt,
             k: str = typer.Option("1,2,4,8,16", "--k"), task: Optional[str] = None, model: Optional[str] = None,
             resamples: int = typer.Option(2000, min=1, max=1_000_000, help="Resamples without replacement per problem and k."),
             as_json: bool = JsonOpt):
    """maj@k, verifier-weighted majority and best-of-k, beside pass@k."""
    from .testtime.analysis import vote_report
    ks = _ks(k)
    try:
        rep = vote_report(_groups(file, store, task, model), ks, n_resamples=resamples)
    except ValueError as e:
        _fail(str(e))
    if as_json:
        return _emit_json(rep)
    for name, g in rep["groups"].items():
        if "error" in g:
            console.print(f"[yellow]{escape(name)}[/]: {escape(g['error'])}")
            continue
        table = Table(title=escape(name))
        cols = ["k", "pass@k", "maj@k"] + (["weighted maj@k", "best-of-k"] if "best_of_k" in g else [])
        for col in cols:
            table.add_column(col, justify="right")
        for i, kk in enumerate(g["k"]):
            row = [str(kk), f"{g['pass_at_k'][i]:.4f}", f"{g['maj_at_k'][i]:.4f}"]
            if "best_of_k" in g:
                row += [f"{g['weighted_maj_at_k'][i]:.4f}", f"{g['best_of_k'][i]:.4f}"]
            table.add_row(*row)
        console.print(table)


@app.command("verifier")
def verifier_cmd(file: Optional[Path] = typer.Argument(None), store: Path = StoreOpt,
                 tpr: float = typer.Option(0.95, help="Verifier completeness (true-positive rate)."),
                 fpr: str = typer.Option("0,0.05,0.2", help="False-positive rates (1 - soundness), comma-separated."),
                 cost: float = typer.Option(1.0, help="Cost of a wrong accepted answer, relative to a correct one."),
                 k_max: int = typer.Option(256, help="Largest attempt budget."),
                 fpr_unsolved: Optional[float] = typer.Option(None, help="Per-problem FPR: each --fpr is the rate where the "
                                                              "model always succeeds, this where it never does (linear)."),
                 abstain: bool = typer.Option(True, help="Allow not answering (reward 0) when every budget loses."),
                 compare: bool = typer.Option(False, help="Verifier vs best-of-n vs majority vote at equal samples."),
                 task: Optional[str] = None, model: Optional[str] = None,
                 out: Path = typer.Option(Path("scalinglab-out/testtime")), figures: bool = typer.Option(True),
                 as_json: bool = JsonOpt):
    """Resampling against an imperfect verifier: accuracy vs attempts, its ceiling, the best budget."""
    from .testtime.analysis import verifier_report
    if k_max < 1 or k_max > 1_000_000:
        _fail(f"--k-max must be a whole number from 1 to 1,000,000, got {k_max}")
    _finite(tpr, "--tpr", lo=0, hi=1)
    _finite(fpr_unsolved, "--fpr-unsolved", lo=0, hi=1)
    _finite(cost, "--cost", lo=0, hi=1e6)
    fprs = _quantities(fpr, "--fpr", lo=0, lo_open=False, hi=1)
    try:
        rep = verifier_report(_groups(file, store, task, model), tpr=tpr, fprs=fprs,
                              cost=cost, k_max=k_max, fpr_unsolved=fpr_unsolved, abstain=abstain, compare=compare)
    except ValueError as e:
        _fail(str(e))
    if figures and rep["groups"]:
        from .report.figures import verifier_figure
        rep["figures"] = verifier_figure(rep, out)
    if as_json:
        return _emit_json(rep)
    for name, g in rep["groups"].items():
        table = Table(title=f"{escape(name)}: TPR {tpr}, false-positive cost {cost}")
        for col in ("FPR", "acc@1", f"acc@{g['k'][-1]}", "ceiling", "best k", "reward at best k"):
            table.add_column(col, justify="right")
        for f, r in g["by_fpr"].items():
            table.add_row(f, f"{r['accuracy'][0]:.4f}", f"{r['accuracy'][-1]:.4f}", f"{r['ceiling']:.4f}",
                          "abstain" if r["optimal"]["abstain"] else str(r["optimal"]["k"]), f"{r['optimal']['reward']:.4f}")
        console.print(table)
        for f, r in g["by_fpr"].items():
            o = r["optimal"]
            console.print(f"  FPR {f}: " + (f"do not answer: the best budget (k={o['best_answering']['k']}) loses "
                                            f"{-o['best_answering']['reward']:.4f} per problem" if o["abstain"] else
                                            f"any k from {o['flat_region'][0]} to {o['flat_region'][1]} is within "
                                            f"{o['flat_tolerance']:.0%} of the best reward"), highlight=False)
            if "strategies" in r:
                st = r["strategies"]
                names = [x for x in ("verifier", "best_of_n", "majority", "oracle") if x in st]
                console.print("    at equal samples k=" + ",".join(map(str, st["k"])) + ": " + "; ".join(
                    f"{x} " + "/".join(f"{v:.3f}" for v in st[x]["accuracy"]) for x in names) + " (accuracy)", highlight=False)


@app.command("sample")
def sample_cmd(checkpoint: Optional[Path] = typer.Argument(None, help="Checkpoint folder or file (else --ladder)."),
               task: str = typer.Option("addition:3", help="KIND:DIGITS, e.g. addition:3, multiplication:2."),
               fmt: str = typer.Option("direct", "--format", help="direct or scratchpad (chain of thought)."),
               n: int = typer.Option(64, help="Samples per problem."),
               problems: int = typer.Option(50, help="Held-out problems."),
               temperature: float = typer.Option(0.8),
               ladder: bool = typer.Option(False, "--ladder", help="Sample from every finished run in the store trained on this task."),
               checkpoints: Path = typer.Option(Path("scalinglab-out/checkpoints")),
               seed: int = typer.Option(0), store: Path = StoreOpt, as_json: bool = JsonOpt):
    """Draw samples with a KV cache from lab checkpoints, verify them exactly, write them to the store."""
    _whole(n, "--n", 1, 1_000_000)
    _whole(problems, "--problems", 1, 1_000_000)
    _finite(temperature, "--temperature", lo=0, hi=100)
    _choice(fmt, "--format", ("direct", "scratchpad"))
    _task(task)
    if checkpoint is not None and not checkpoint.exists():
        _fail(f"no checkpoint at {checkpoint} (give a checkpoint folder or file, or --ladder)")
    _require("train", "scalinglab sample", "torch")
    from .testtime.sampling import sample_task
    targets = []
    if ladder:
        _existing_store(store)
        with RunStore(store, readonly=True) as st:
            targets = [(checkpoints / r.run_id, f"{r.name} (N={r.n_active:,.0f})") for r in st.runs(status="finished")
                       if str(r.config.get("corpus", "")).startswith(f"task:{task}")]
        if not targets:
            _fail(f"no finished runs in {store} trained on a task:{task} corpus")
    elif checkpoint is None:
        _fail("give a CHECKPOINT or --ladder")
    else:
        targets = [(checkpoint, None)]
    results = []
    try:
        for t, name in targets:
            res = sample_task(t, task, n=n, n_problems=problems, temperature=temperature, fmt=fmt, seed=seed,
                              model_name=name)
            with RunStore(store) as st:
                st.add_samples(res["rows"], on_duplicate="replace")
            results.append({k: res[k] for k in ("run_id", "n_active", "pass_at_1", "flops_per_sample", "tokens_per_sample")}
                           | {"samples": len(res["rows"]), "task": f"{task}:{fmt}"})
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    if as_json:
        return _emit_json({"results": results})
    for r in results:
        console.print(f"{r['run_id']}: N_active={r['n_active']:,}, {r['samples']} samples of {r['task']}, pass@1 "
                      f"{r['pass_at_1']:.4f}, {r['tokens_per_sample']:.1f} tokens and {r['flops_per_sample']:.3g} FLOPs per sample", markup=False)
    console.print(f"analyse with: scalinglab passk --store {store} --task {task}:{fmt}", markup=False)


# --------------------------------------------------------------------------------------------- economics
cost_app = _App(help="What it costs to train and to serve.", no_args_is_help=True)
app.add_typer(cost_app, name="cost")


UsdPerHourOpt = typer.Option(None, "--usd-per-hour", help="Price of one accelerator-hour in USD (overrides the profile's; "
                                                          "the measured cpu profile has none).")


def _hw(name: str, hardware_file: Optional[Path], usd_per_hour: Optional[float] = None):
    import dataclasses as dc

    from . import cost
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
    from . import cost
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
    from . import cost
    from .accounting import BYTES_PER_PARAM
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
    from .economics import quantization_study
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
    from .economics import distillation_study
    log = (lambda m: err.print(m)) if as_json else console.print
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


# --------------------------------------------------------------------------------------------- capabilities
scores_app = _App(help="Downstream task scores across scale.", no_args_is_help=True)
app.add_typer(scores_app, name="scores")

if __name__ not in ("__main__", "__mp_main__"):     # run as a script (or its spawned workers): the package's module registers
    from .cli_observe import register as _register_observe  # noqa: E402  (public model tables: models, trends, observe)
    _register_observe(app)


@scores_app.command("import")
def scores_import_cmd(files: list[Path] = typer.Argument(..., help="A table (CSV/TSV/JSONL/Parquet), or lm-evaluation-harness result JSON files with --sizes."),
                      map_: Optional[list[str]] = typer.Option(None, "--map", help="Wide tables: COLUMN=TASK:METRIC (repeat), e.g. hellaswag_bpb=hellaswag:task_loss."),
                      map_file: Optional[Path] = typer.Option(None, "--map-file", help="Wide tables: a table with columns column, task, metric."),
                      sizes: Optional[Path] = typer.Option(None, "--sizes", help="Harness JSON files: a table with columns file or model, N, D (optional checkpoint, final)."),
                      store: Path = StoreOpt,
                      on_duplicate: str = typer.Option("error", help="Scores already in the store: error, skip or replace."),
                      as_json: bool = JsonOpt):
    """Import per-model or per-checkpoint benchmark scores (e.g. a published model ladder).

    Every table places models by C (training FLOPs) or N (parameters) and
    D (tokens; at a checkpoint, the tokens seen so far). Shapes:

      long:        model,N,D,task,metric,value   (loss = the model's overall loss)
      long by task: model,N,D,task,bpb,acc      (bpb/loss/task_loss = that task's loss)
      wide:        model,N,D,hellaswag_bpb,hellaswag_acc,... with --map or --map-file
      harness:     results_*.json --sizes sizes.csv

    task_loss (also read from bpb, task_bpb, bits_per_byte) is the loss of the
    correct answer, e.g. bits per byte; forecast and gate need it beside the
    score. Optional columns checkpoint (or step) and final (true/false) mark
    checkpoints of a run: forecasts fit task loss on final checkpoints and the
    loss-to-score curve on all; without final, the checkpoint with the most
    tokens is final. Example (CSV):

      model,N,D,checkpoint,task,bpb,acc
      m-1B,1e9,1e10,5000,hellaswag,0.95,0.41
      m-1B,1e9,2e10,10000,hellaswag,0.91,0.44
    """
    _check_on_duplicate(on_duplicate)
    from .forecast.scores import parse_harness, parse_mapping, parse_scores
    try:
        if sizes is not None:
            if map_ or map_file:
                _fail("--map and --map-file are for wide tables; harness files take --sizes only")
            rows = parse_harness(files, sizes)
        elif len(files) != 1:
            _fail(f"give one table (got {len(files)} files); several files are lm-evaluation-harness results and need --sizes")
        else:
            rows = parse_scores(files[0], mapping=parse_mapping(map_, map_file))
        with RunStore(store) as st:
            st.add_scores(rows, on_duplicate=on_duplicate)
    except (importers.ImportFormatError, StoreError) as e:
        _fail(str(e))
    runs = {r["model"].rsplit("@", 1)[0] for r in rows}
    out = {"written": len(rows), "models": len(runs), "checkpoints": len({r["model"] for r in rows}),
           "tasks": sorted({r["task"] for r in rows})}
    if as_json:
        return _emit_json(out)
    ckpts = f" ({out['checkpoints']} checkpoints)" if out["checkpoints"] != out["models"] else ""
    console.print(f"imported {out['written']} scores of {out['models']} models{ckpts} on {', '.join(out['tasks'])}",
                  markup=False)


@app.command("evaluate")
def evaluate_cmd(tasks: str = typer.Option("addition:2,multiplication:2,reverse:2", help="Comma-separated KIND:DIGITS."),
                 problems: int = typer.Option(100, help="Held-out problems per task."),
                 family: Optional[str] = None, store: Path = StoreOpt,
                 checkpoints: Path = typer.Option(Path("scalinglab-out/checkpoints")), as_json: bool = JsonOpt):
    """Evaluate every trained checkpoint on procedural tasks under exact match and continuous metrics."""
    for t in tasks.split(","):
        _task(t, "--tasks")
    _whole(problems, "--problems", 1, 1_000_000)
    _require("train", "scalinglab evaluate", "torch")
    _existing_store(store)
    from .forecast.evaluate import evaluate_runs
    log = (lambda m: err.print(m, markup=False)) if as_json else (lambda m: console.print(m, markup=False))
    try:
        with RunStore(store) as st:
            rows = evaluate_runs(st, checkpoints, tasks.split(","), n_problems=problems, family=family, log=log)
            if not rows:
                _fail(f"nothing to evaluate: no finished byte-tokenizer lab runs in {store} with a checkpoint under "
                      f"{checkpoints} (train a ladder first, or give --checkpoints)")
            st.add_scores(rows)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    if as_json:
        return _emit_json({"scores": rows})
    console.print(f"{len(rows)} scores written to {store}", markup=False)


def _score_table(store: Path, task: str, metric: str):
    _existing_store(store)
    with RunStore(store, readonly=True) as st:         # one point per model: its final checkpoint (RUN@CKPT rows are not)
        rows = [r for r in st.scores(task=task) if r["c"] and "@" not in r["model"]]
    by_model: dict = {}
    for r in rows:
        by_model.setdefault(r["model"], {"c": r["c"], "n": r["n"], "d": r["d"], "loss": r["loss"]})[r["metric"]] = r["value"]
    models = [m for m, v in by_model.items() if metric in v and "task_loss" in v]
    if not models:
        _fail(f"no models with both task_loss and {metric} for task {task!r} in {store} (run `scalinglab evaluate` "
              "or import scores)")
    models.sort(key=lambda m: by_model[m]["c"])
    return models, by_model


@app.command("emergence")
def emergence_cmd(task: str = typer.Option(..., help="Task, e.g. addition:2."), store: Path = StoreOpt,
                  out: Path = typer.Option(Path("scalinglab-out/emergence")), as_json: bool = JsonOpt):
    """The same models under a discontinuous and continuous metrics, against compute and loss."""
    from .report.figures import emergence_figure
    models, by_model = _score_table(store, task, "exact_match")
    table = [{"model": m, **by_model[m]} for m in models]
    paths = emergence_figure(table, task, out)
    res = {"task": task, "models": table, "figures": paths}
    if as_json:
        return _emit_json(res)
    t = Table(title=f"{task}: discontinuous vs continuous metrics across scale")
    for col in ("model", "C", "val loss", "exact match", "log-lik", "task loss", "edit dist", "Brier"):
        t.add_column(col, justify="right")
    def cell(r, key, fmt):
        return "-" if r.get(key) is None else fmt.format(r[key])

    for r in table:
        t.add_row(escape(r["model"]), f"{r['c']:.3g}", cell(r, "loss", "{:.4f}"), cell(r, "exact_match", "{:.3f}"),
                  cell(r, "log_likelihood", "{:.3f}"), cell(r, "task_loss", "{:.3f}"), cell(r, "token_edit_distance", "{:.2f}"),
                  cell(r, "brier", "{:.3f}"))
    console.print(t)
    for p in paths:
        if p.endswith(".png"):
            console.print(f"figure: {p}", markup=False)


def _two_step(store, task, metric, bootstrap):
    from .forecast import TwoStepForecast
    from .forecast.metrics import BOUNDED
    models, by_model = _score_table(store, task, metric)
    cols = {k: [by_model[m][k] for m in models] for k in ("c", "task_loss", metric, "n", "d")}
    nd = all(cols["n"]) and all(cols["d"])
    return (TwoStepForecast(n_bootstrap=bootstrap, score_bounds=BOUNDED.get(metric)), cols["c"], cols["task_loss"],
            cols[metric], cols["n"] if nd else None, cols["d"] if nd else None)


def _task_ladder(store, task, metric, bootstrap, chance=None, variant="auto", n_origins=3, holdout=0):
    """The task-ladder forecast, fitted, when every stored model of ``task`` has N and D, at least 6 runs
    have a final checkpoint and their tokens per parameter vary at least 2x; None otherwise (the
    compute-only two-step forecast applies). With ``holdout``, ``holdout_`` holds the forecast of the
    ``holdout`` largest runs from the others (:func:`~scalinglab.forecast.tasklaws.holdout_forecast`)."""
    from .forecast.tasklaws import LadderPoints, TaskLadderForecast, chance_level
    _existing_store(store)
    with RunStore(store, readonly=True) as st:
        rows = st.scores(task=task)
    if not rows or not all(r["n"] and r["d"] for r in rows):
        return None
    try:
        pts = LadderPoints.from_score_rows(rows, metric)
        span = np.ptp(np.log(pts.D[pts.final] / pts.N[pts.final])) if pts.final.any() else 0.0
        if pts.final.sum() < 6 or span < np.log(2):    # one tokens-per-parameter ratio cannot separate N from D
            return None
        kw = dict(chance=chance_level(task) if chance is None else chance, n_bootstrap=bootstrap,
                  variant=variant, n_origins=n_origins)
        # bootstrap refits probe exponents where exp() overflows; those refits are counted as unconverged
        # and reported, so numpy's per-element warnings are not shown
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            fc = TaskLadderForecast(**kw).fit(pts)
            if holdout:
                from .forecast.tasklaws import holdout_forecast
                fc.holdout_ = holdout_forecast(pts, holdout, **kw)
        return fc
    except (FitError, ValueError) as e:
        _fail(f"{task} {metric}: {e}")


def _print_ladder_forecast(fc, store, task, metric, compute, params, tokens, threshold, as_json):
    from .forecast.tasklaws import compute_for_score, param_intervals
    out: dict = {"task": task, "metric": metric, "method": "task-ladder", "variant": fc.variant_,
                 "step1": {"params": fc.step1_.params_}, "step2": {"params": fc.step2_, "chance": fc.chance},
                 "single_step": {"params": fc.single_}, "intervals": param_intervals(fc),
                 "backtest": fc.backtest_, "predictability": fc.predictability_, "fitted_on": fc.data_range_}
    if getattr(fc, "holdout_", None) is not None:
        out["holdout"] = fc.holdout_
    try:
        if params or tokens:
            if not (params and tokens):
                _fail("give both --params and --tokens (or --compute)")
            out["forecast"] = fc.predict(parse_quantity(params), parse_quantity(tokens))
        elif compute:
            out["forecast"] = fc.predict(C=parse_quantity(compute))
        if threshold is not None:
            out["threshold"] = compute_for_score(fc, threshold)
    except (FitError, ValueError) as e:
        _fail(str(e))
    with RunStore(store) as st:
        out["decision_id"] = st.add_decision("task-forecast", f"{task}/{metric}", "forecast", out)
    if as_json:
        return _emit_json(out)
    pr, dr = fc.predictability_, fc.data_range_
    iv = lambda v: f"[{v[0]:.4g}, {v[1]:.4g}]" if v else ""  # noqa: E731
    console.print(f"{task} {metric}: task-ladder forecast, variant {fc.variant_} (chosen by backtest), "
                  f"{dr['runs']} runs, {dr['checkpoints']} checkpoints, chance {fc.chance:g}", markup=False)
    for o in fc.backtest_["origins"]:
        console.print(f"  backtest {o['run']}: actual {o['actual_score']:.4f}; " + ", ".join(
            f"{k} {v:.4f}" for k, v in o["predicted"].items()), markup=False)
    if "holdout" in out:
        h = out["holdout"]
        console.print(f"  hold-out: the {len(h['held_out'])} largest runs forecast from the other {h['fitted_runs']} "
                      f"(variant {h['variant']}); mean absolute error {h['mean_abs_error_points']:.1f} points", markup=False)
        for r in h["held_out"]:
            inside = "" if r["inside"] is None else (", inside" if r["inside"] else ", OUTSIDE")
            console.print(f"    {r['run']} (N={r['N']:.3g}, D={r['D']:.3g}, {r['compute_over_max_fitted']:.2g}x the fitted "
                          f"compute): predicted {r['predicted_score']:.3f} {iv(r['score_prediction_interval'])}, actual "
                          f"{r['actual_score']:.3f}, error {r['error_points']:+.1f} points{inside}", markup=False)
    if pr.get("score_noise") is None:
        console.print(f"  predictability: {pr['note']}", markup=False)
    else:
        console.print(f"  predictability: checkpoint noise {100 * pr['score_noise']:.2f} points of score, "
                      f"{100 * pr['task_loss_rel_noise']:.2f}% of task loss (last {pr['last_checkpoints']} checkpoints); "
                      f"{pr['noise_fraction']:.2f} of the ladder's score spread"
                      + (" -- TOO NOISY to forecast" if pr["too_noisy"] else ""), markup=False)
    if "forecast" in out:
        f = out["forecast"]
        head = f"  at N={f['N']:.3g}, D={f['D']:.3g} (C={f['compute_flops']:.3g}, {f['extrapolation']['compute_over_max']:.2g}x the largest run):"
        if f["status"] == "too_noisy":
            console.print(f"{head} not forecast (too noisy; --json has the withheld numbers)", markup=False)
        else:
            i = f["intervals"]
            console.print(f"{head} task loss {f['task_loss']:.4f} {iv(i.get('task_loss'))}, {metric} {f['score']:.4f} "
                          f"{iv(i.get('score'))} (prediction {iv(i.get('score_prediction'))})", markup=False)
    if "threshold" in out:
        t = out["threshold"]
        console.print(f"  {metric} reaches {threshold} at C ≈ {t['compute_flops']:.3g} {iv(t['intervals'].get('compute_flops'))}",
                      markup=False)


@app.command("forecast")
def forecast_cmd(task: str = typer.Option(..., help="Task, e.g. addition:2."),
                 metric: str = typer.Option("exact_match"),
                 compute: Optional[str] = typer.Option(None, "--compute", help="Training FLOPs of the planned run."),
                 params: Optional[str] = typer.Option(None, "--params"), tokens: Optional[str] = typer.Option(None, "--tokens"),
                 threshold: Optional[float] = typer.Option(None, help="Compute at which the score crosses this value."),
                 backtest_n: int = typer.Option(0, "--backtest", help="Leave out the N largest models and forecast them "
                                                "(with a ladder: fitted on the rest, intervals, inside or not)."),
                 chance: Optional[float] = typer.Option(None, help="Score floor (chance level); default by task name, else 0."),
                 variant: str = typer.Option("auto", help="Ladder forecasts: auto (backtest picks), two_step, single_step or stacked."),
                 bootstrap: int = typer.Option(1000), store: Path = StoreOpt, as_json: bool = JsonOpt):
    """Two-step forecast: size -> task loss (power law) -> score (sigmoid), with bootstrap intervals.

    When every model has N and D (a model ladder, Bhagia et al. 2024):
    task loss = E + A/N^alpha + B/D^beta on final checkpoints, score =
    sigmoid of task loss from the chance level to a fitted ceiling on all
    checkpoints, a joint bootstrap over runs, the variant (two_step,
    single_step, stacked) chosen by a rolling-origin backtest on the ladder,
    and the task's checkpoint noise; a task too noisy to forecast is
    flagged and its score withheld. Otherwise: task loss = E + (C_c/C)^alpha.
    """
    from .forecast import backtest
    for text, option, hi in ((compute, "--compute", MAX_FLOPS), (params, "--params", MAX_PARAMS), (tokens, "--tokens", MAX_TOKENS)):
        if text is not None:
            _quantity(text, option, hi=hi)
    _finite(threshold, "--threshold", lo=0, hi=1) if metric != "task_loss" else _finite(threshold, "--threshold", lo=0)
    _finite(chance, "--chance", lo=0, hi=1, hi_open=True)
    _whole(backtest_n, "--backtest", 0, 1000)
    _whole(bootstrap, "--bootstrap", 0, 100_000)
    _choice(variant, "--variant", ("auto", "two_step", "single_step", "stacked"))
    ladder = _task_ladder(store, task, metric, bootstrap, chance, variant, max(3, backtest_n), backtest_n)
    if ladder is not None:
        return _print_ladder_forecast(ladder, store, task, metric, compute, params, tokens, threshold, as_json)
    fc, C, TL, S, N, D = _two_step(store, task, metric, bootstrap)
    out: dict = {"task": task, "metric": metric}
    try:
        if backtest_n:
            out["backtest"] = backtest(C, TL, S, n_holdout=backtest_n, N=N, D=D, n_bootstrap=bootstrap,
                                       score_bounds=fc.score_bounds)
        fc.fit(C, TL, S, N=N, D=D)
        out["method"] = ("task loss = E + A/N^alpha + B/D^beta (compute forecasts at the law's compute-optimal N, D)"
                         if fc.by_nd_ else "task loss = E + (C_c/C)^alpha") + "; score = sigmoid(task loss)"
        out["step1"] = {"params": fc.step1_.params_, "intervals": fc.step1_.intervals()}
        out["step2"] = {"params": fc.step2_.params_}
        if params or tokens:
            if not (params and tokens):
                _fail("give both --params and --tokens (or --compute)")
            out["forecast"] = fc.predict(N=parse_quantity(params), D=parse_quantity(tokens))
        elif compute:
            out["forecast"] = fc.predict(parse_quantity(compute))
        if threshold is not None:
            out["threshold"] = fc.compute_for_score(threshold)
    except (FitError, ValueError) as e:
        _fail(str(e))
    with RunStore(store) as st:
        out["decision_id"] = st.add_decision("task-forecast", f"{task}/{metric}", "forecast", out)
    if as_json:
        return _emit_json(out)
    console.print(f"[bold]{escape(task)} {escape(metric)}[/]: {out['method']} ({len(C)} models)")
    fmt_iv = lambda v: f"[{v[0]:.4g}, {v[1]:.4g}]" if v else ""  # noqa: E731
    if "forecast" in out:
        f = out["forecast"]
        iv = f["intervals"]
        console.print(f"  at C={f['compute_flops']:.3g}: task loss {f['task_loss']:.4f} {fmt_iv(iv.get('task_loss'))}, "
                      f"{metric} {f['score']:.4f} {fmt_iv(iv.get('score'))} (prediction {fmt_iv(iv.get('score_prediction'))}); "
                      f"{f['extrapolation']['compute_over_max_fitted']:.2g}x the largest model's compute")
    if "threshold" in out:
        t = out["threshold"]
        console.print(f"  {metric} crosses {threshold} at C ≈ {t['compute_flops']:.3g} {fmt_iv(t['intervals'].get('compute_flops'))}")
    if "backtest" in out:
        for r in out["backtest"]["held_out"]:
            console.print(f"  backtest at C={r['compute_flops']:.3g}: predicted {r['predicted_score']:.4f} "
                          f"{fmt_iv(r['intervals'].get('score'))}, actual {r['actual_score']:.4f}; task loss predicted "
                          f"{r['predicted_task_loss']:.4f} vs actual {r['actual_task_loss']:.4f}")


def _ladder_evidence(fc, C, metric, N=None, D=None):
    """Gate evidence from a task-ladder forecast at ``N`` parameters and ``D`` tokens (else the compute-optimal
    ones of ``C``), naming the forecast. A task too noisy to forecast gives an interval over the whole score
    range, so the rule's on_uncertain applies."""
    p = fc.predict(N=N, D=D) if N is not None else fc.predict(C=C)
    used = {"method": "task-ladder", "variant": p["variant"], "N": p["N"], "D": p["D"], "status": p["status"],
            "predictability": p["predictability"], "backtest_mean_abs_error": p["backtest"]["mean_abs_error"]}
    if metric == "task_loss":
        return {"value": p["task_loss"], "interval": p["intervals"].get("task_loss"), "kind": "forecast", "forecast": used}
    if p["status"] == "too_noisy":
        return {"value": p["withheld"]["score"], "interval": [fc.chance, 1.0], "kind": "forecast (too noisy)", "forecast": used}
    return {"value": p["score"], "interval": p["intervals"].get("score"), "kind": "forecast", "forecast": used}


@app.command("gate")
def gate_cmd(policy: Path = typer.Option(..., help="TOML policy of capability thresholds."),
             run: Optional[str] = typer.Option(None, "--run", help="Run id or name of a trained run (measured evidence)."),
             plan_compute: Optional[str] = typer.Option(None, "--plan-compute", help="Compute of a planned run (forecast evidence)."),
             plan_params: Optional[str] = typer.Option(None, "--plan-params", help="Parameters of a planned run (with "
                                                       "--plan-tokens; a ladder forecast in N and D, not only C)."),
             plan_tokens: Optional[str] = typer.Option(None, "--plan-tokens", help="Training tokens of a planned run."),
             bootstrap: int = typer.Option(1000, min=0, max=100_000), store: Path = StoreOpt, as_json: bool = JsonOpt):
    """Evaluate a run or a planned run against a release policy: pass (exit 0), review (10) or hold (20).

    The policy is a TOML file of \\[\\[rule]] tables. A rule fires its action when
    its condition holds for the evidence: a measured score (--run), or a
    two-step forecast (--plan-compute) whose whole 95% interval satisfies it;
    an interval straddling the threshold gives on_uncertain. The decision is
    the most severe outcome; a rule without evidence holds.
    Fields: name, task (e.g. addition:2), metric (exact_match, log_likelihood,
    task_loss, token_edit_distance, brier), op (>=, >, <=, <), threshold,
    action (review or hold), on_uncertain (pass, review or hold; default
    hold), rationale (optional). Example:

      \\[\\[rule]]
      name = "addition-review"
      task = "addition:2"
      metric = "exact_match"
      op = ">="
      threshold = 0.9
      action = "review"
      rationale = "arithmetic at this level needs a human look"
    """
    from .forecast import decide, load_policy
    from .forecast.gates import PolicyError
    if (plan_params is None) != (plan_tokens is None):
        _fail("give --plan-params and --plan-tokens together (a planned run's N and D)")
    if plan_compute is not None and plan_params is not None:
        _fail("give --plan-compute, or --plan-params with --plan-tokens, not both")
    planned = plan_compute is not None or plan_params is not None
    if (run is None) == (not planned):
        _fail("give exactly one of --run, --plan-compute, or --plan-params with --plan-tokens")
    N_plan = D_plan = None
    if plan_compute is not None:
        C = _quantity(plan_compute, "--plan-compute", hi=MAX_FLOPS)
    elif plan_params is not None:
        N_plan, D_plan = _quantity(plan_params, "--plan-params", hi=MAX_PARAMS), _quantity(plan_tokens, "--plan-tokens", hi=MAX_TOKENS)
        C = 6.0 * N_plan * D_plan
    _existing_store(store)
    try:
        with RunStore(store, readonly=True) as st:
            known = {r["task"] for r in st.scores()}
            rules, policy_hash = load_policy(policy, known_tasks=known)
            evidence = {}
            if run is not None:
                for r in st.scores():
                    if r["run_id"] == run or r["model"] == run:
                        evidence[(r["task"], r["metric"])] = {"value": r["value"], "interval": None, "kind": "measured"}
                subject = run
            else:
                subject = f"plan:C={C:.3g}" if N_plan is None else f"plan:N={N_plan:.3g},D={D_plan:.3g}"
                for rule in rules:
                    score_metric = rule.metric if rule.metric != "task_loss" else "exact_match"
                    ladder = _task_ladder(store, rule.task, score_metric, bootstrap)
                    if ladder is not None:
                        evidence[(rule.task, rule.metric)] = _ladder_evidence(ladder, C, rule.metric, N_plan, D_plan)
                        continue
                    fc, Cs, TL, S, Ns, Ds = _two_step(store, rule.task, score_metric, bootstrap)
                    fc.fit(Cs, TL, S, N=Ns, D=Ds)
                    p = fc.predict(C)
                    if rule.metric == "task_loss":
                        evidence[(rule.task, rule.metric)] = {"value": p["task_loss"], "interval": p["intervals"].get("task_loss"),
                                                              "kind": "forecast"}
                    else:
                        evidence[(rule.task, rule.metric)] = {"value": p["score"], "interval": p["intervals"].get("score"),
                                                              "kind": "forecast"}
    except PolicyError as e:
        _fail(str(e))
    except (FitError, ValueError, FileNotFoundError) as e:
        _fail(str(e))
    result = decide(rules, evidence)
    result.update({"subject": subject, "policy": str(policy), "policy_hash": policy_hash})
    with RunStore(store) as st:
        result["decision_id"] = st.add_decision("gate", subject, result["decision"], result, policy_hash)
    if as_json:
        _emit_json(result)
    else:
        colour = {"pass": "green", "review": "yellow", "hold": "red"}[result["decision"]]
        console.print(f"[bold {colour}]{result['decision'].upper()}[/] for {escape(str(subject))} (policy {escape(str(policy))}, sha256 {policy_hash[:12]})")
        for r in result["rules"]:
            console.print(f"  {r['rule']}: {r['outcome']} — {r['reason']}", markup=False)
    raise typer.Exit(result["exit_code"])


# --------------------------------------------------------------------------------------------- report
@app.command("report")
def report_cmd(out: Path = typer.Option(Path("report.html"), "--out", help="The HTML file to write."),
               static: Optional[Path] = typer.Option(None, "--static", help="Also write matplotlib PNG/SVG figures here."),
               store: Path = StoreOpt, as_json: bool = JsonOpt):
    """Write a single offline HTML report of everything in the store."""
    if out.is_dir():
        _fail(f"--out {out} is a directory; give the HTML file to write (e.g. {out / 'report.html'})")
    _require("report", "scalinglab report", "plotly")
    _existing_store(store)
    from .report.html import write_report
    res = write_report(store, out, static_dir=static)
    if as_json:
        return _emit_json(res)
    console.print(f"wrote {res['report']} ({res['bytes'] / 1e6:.1f} MB, offline)", markup=False)
    for p in res["static_figures"]:
        if p.endswith(".png"):
            console.print(f"figure: {p}", markup=False)


@app.command("serve")
def serve_cmd(store: Path = StoreOpt, host: str = typer.Option("127.0.0.1", help="Address to bind (default: this machine only)."),
              port: int = typer.Option(8765, min=1, max=65535),
              allowed_hosts: str = typer.Option("localhost,127.0.0.1,::1", "--allowed-hosts",
                                                help="Host names the dashboard answers to, comma-separated: requests with "
                                                     "any other Host header are refused (DNS rebinding). Add the name "
                                                     "you serve it under, or * for any.")):
    """Serve a live dashboard of the store (read-only; safe while a ladder writes)."""
    _require("serve", "scalinglab serve", "plotly", "starlette", "uvicorn")
    _existing_store(store)
    from .report.dashboard import serve
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]warning:[/] binding {host}: the dashboard has no authentication")
    hosts = [h.strip() for h in allowed_hosts.split(",") if h.strip()]
    if not hosts:
        _fail("--allowed-hosts needs at least one host name (or * for any)")
    if host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::") and host not in hosts:
        hosts.append(host)
    console.print(f"dashboard on http://{host}:{port}/ (Ctrl-C to stop; answers to Host: {', '.join(hosts)})", markup=False)
    try:
        serve(store, host, port, tuple(hosts))
    except FileNotFoundError as e:
        _fail(str(e))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover  (python -m scalinglab.cli: the commands of the imported module)
    from scalinglab.cli import main as _main
    _main()
