"""What every command module of the ``scalinglab`` command line shares: the one typer app, running a command
(failures as one line, exit codes), printing (rich, markup off for data; ``--json``), the common options,
and the one validation layer for the user's quantities. Nothing heavy is imported here."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table as _RichTable

from .._units import format_quantity, parse_quantity
from ..store import DEFAULT_STORE, StoreError


class _Lazy:
    """A module imported on first use: numpy and the numerical layers load only for commands that compute,
    so ``scalinglab --help`` and the listing commands start fast."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr):
        import importlib
        return getattr(importlib.import_module(self._name), attr)


np = _Lazy("numpy")


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
    from ..importers import N_CONVENTIONS
    _choice(n_convention, "--n-convention", N_CONVENTIONS)
    if flop_convention is not None:
        _choice(flop_convention, "--flop-convention", ("6ND", "6ND+attn"))


def _check_bootstrap_kind(kind: str) -> None:
    if kind not in ("residual", "pairs"):
        _fail(f"--bootstrap-kind must be residual or pairs, not {kind!r}")


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _log(as_json: bool, **print_kw):
    """Progress lines of a long command: on stdout, or on stderr when stdout carries the ``--json`` document."""
    return lambda m: (err if as_json else console).print(m, **print_kw)


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
    from ..testtime.tasks import Task
    try:
        Task.parse(text)
    except ValueError as e:
        _fail(f"{option} {text}: {e}")
    return text


def _choice(value: str, option: str, choices) -> str:
    if value not in choices:
        _fail(f"{option} {value!r} is not one of those accepted: {', '.join(choices)}")
    return value


def _check_on_duplicate(on_duplicate: str) -> None:
    if on_duplicate not in ("error", "skip", "replace"):
        _fail(f"--on-duplicate must be error, skip or replace, not {on_duplicate!r}")


def _require(extra: str, what: str, *modules: str) -> None:
    """Refuse up front, with the install command, when ``what`` needs an optional extra that is not installed."""
    import importlib.util
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        _fail(f"{what} needs {', '.join(missing)}, which is not installed: pip install 'scalinglab[{extra}]'")


def _corpus(corpus: str, option: str = "--corpus") -> None:
    """A training corpus: ``stdlib``, a task, an existing file or folder, each optionally with a curation suffix
    (``+dedup``, ``+filtered``, ``+curated``, which needs the ``curate`` extra)."""
    from ..train.curation import DATA_FILTERS, split_corpus_filter
    base, how = split_corpus_filter(corpus)
    if not base.startswith("task:") and base != "stdlib" and "://" not in base and not Path(base).exists():
        _fail(f"{option} {corpus}: no such file or folder (accepted: stdlib, a folder/file/JSONL of text, or "
              f"task:KIND:DIGITS[:FORMAT], each optionally with +{', +'.join(DATA_FILTERS)})")
    if how:
        _require("curate", f"a curated corpus ({corpus})", "datasketch")


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
