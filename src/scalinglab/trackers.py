"""Import runs from the trackers where researchers keep them: MLflow, TensorBoard, Weights & Biases.

Each importer maps N, D (or C) and the loss from named parameters/metrics, reads whole metric
histories (MLflow ``get_metric_history``; TensorBoard with no sampling limit; W&B ``scan_history``,
not the 500-row sampled ``history``), and says exactly what is missing where. Nothing is written to
the store unless every run maps cleanly. The tracker libraries are optional extras, imported lazily.
"""
from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

from ._units import parse_quantity
from .importers import ImportFormatError, ImportResult, param_counts_for
from .store import Run, config_hash


@dataclasses.dataclass
class Mapping:
    """Where N, D, C and the loss live in the tracker's records."""

    n: str | None = None
    d: str | None = None
    c: str | None = None
    loss: str = "loss"
    n_convention: str = "n_total"


def _value(source: dict, key: str | None, what: str, where: str, errors: list) -> float | None:
    if key is None:
        return None
    if key not in source:
        errors.append(f"{where}: no {what} {key!r} (found: {', '.join(sorted(map(str, source))[:15]) or 'none'})")
        return None
    try:
        v = parse_quantity(source[key])
    except ValueError as e:
        errors.append(f"{where}: {what} {key!r} = {source[key]!r}: {e}")
        return None
    if not (math.isfinite(v) and v > 0):
        errors.append(f"{where}: {what} {key!r} = {v} must be finite and positive")
        return None
    return v


def _make_run(name: str, source: str, values: dict, history: list[tuple[int, float]], m: Mapping, where: str,
              errors: list, extra: dict) -> tuple[Run, list[dict]] | None:
    n, d, c = values.get("n"), values.get("d"), values.get("c")
    have = [x for x in (n, d, c) if x is not None]
    if len(have) < 2:
        errors.append(f"{where}: need two of N, D, C (map them with the n/d/c options)")
        return None
    if c is None:
        c = 6 * n * d
    elif d is None:
        d = c / (6 * n)
    elif n is None:
        n = c / (6 * d)
    pts = [(s, v) for s, v in history if v is not None and math.isfinite(v)]
    if not pts:
        errors.append(f"{where}: metric {m.loss!r} has no finite values")
        return None
    final = pts[-1][1]
    last_step = max(s for s, _ in pts) or 1
    counts = param_counts_for(n, m.n_convention)
    run = Run(run_id=config_hash({"source": source, "name": name}), name=name, source=source, tokens=d, flops_6nd=c,
              final_loss=final, config={"n_convention": m.n_convention}, extra=extra, **counts)
    curve = [{"split": "val", "step": int(s), "tokens": d * s / last_step, "flops": c * s / last_step, "loss": v}
             for s, v in pts]
    return run, curve


def _finish(source: str, built: list, errors: list, n_points: int) -> ImportResult:
    if errors:
        raise ImportFormatError(f"{source}: {len(errors)} problem(s), nothing imported:\n  " + "\n  ".join(errors[:25]))
    return ImportResult(source=source, runs=[b[0] for b in built], derived=["curve tokens = D x step / last step"],
                        dropped=[], columns={"points": n_points}, curves={b[0].run_id: b[1] for b in built})


def read_mlflow(tracking_uri: str, m: Mapping, *, experiment: str | None = None) -> ImportResult:
    """Runs of an MLflow tracking store (``sqlite:///mlflow.db`` or a local ``mlruns`` folder)."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:  # pragma: no cover
        raise ImportFormatError("reading MLflow needs mlflow: pip install 'scalinglab[mlflow]'") from None
    if "://" not in tracking_uri or tracking_uri.startswith("file:"):
        path = Path(tracking_uri.removeprefix("file://"))
        if not path.exists():
            raise ImportFormatError(f"{tracking_uri}: no such MLflow folder")
        tracking_uri = path.resolve().as_uri()
        # MLflow 3 keeps folder stores read-only behind this switch; reading existing runs needs it
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    elif tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))      # sqlite:////abs.db keeps its leading slash
        if not path.is_file():   # MLflow would create an empty tracking database there just to find no runs
            raise ImportFormatError(f"{tracking_uri}: no such MLflow database ({path} does not exist)")
    client = MlflowClient(tracking_uri=tracking_uri)
    exps = client.search_experiments()
    if experiment is not None:
        exps = [e for e in exps if e.name == experiment]
        if not exps:
            raise ImportFormatError(f"{tracking_uri}: no experiment named {experiment!r}")
    built, errors, points = [], [], 0
    for exp in exps:
        for r in client.search_runs([exp.experiment_id], max_results=50_000):
            name = r.info.run_name or r.info.run_id
            where = f"MLflow run {name!r} ({r.info.run_id[:8]})"
            source = {**r.data.params, **{k: v for k, v in r.data.metrics.items()}}
            vals = {k: _value(source, getattr(m, k), "param/metric", where, errors) for k in ("n", "d", "c")}
            if m.loss not in r.data.metrics:
                errors.append(f"{where}: no metric {m.loss!r} (metrics: {', '.join(sorted(r.data.metrics)) or 'none'})")
                continue
            hist = client.get_metric_history(r.info.run_id, m.loss)       # every logged point
            points += len(hist)
            b = _make_run(name, f"mlflow:{exp.name}", vals, [(h.step, h.value) for h in sorted(hist, key=lambda h: h.step)],
                          m, where, errors, {"mlflow_run_id": r.info.run_id, "params": dict(r.data.params)})
            if b:
                built.append(b)
    return _finish(tracking_uri, built, errors, points)


def read_tensorboard(logdir: str | Path, m: Mapping) -> ImportResult:
    """One run per folder of event files under ``logdir``; N/D/C from scalar tags (last value)."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator
    except ImportError:  # pragma: no cover
        raise ImportFormatError("reading TensorBoard logs needs tensorboard: pip install 'scalinglab[tensorboard]'") from None
    logdir = Path(logdir)
    if not logdir.exists():
        raise ImportFormatError(f"{logdir}: no such folder")
    folders = sorted({p.parent for p in logdir.rglob("events.out.tfevents.*")})
    if not folders:
        raise ImportFormatError(f"{logdir}: no TensorBoard event files found")
    built, errors, points = [], [], 0
    for folder in folders:
        acc = EventAccumulator(str(folder), size_guidance={SCALARS: 0})   # 0 = keep every point, not 10,000
        acc.Reload()
        tags = acc.Tags()["scalars"]
        name = str(folder.relative_to(logdir)) if folder != logdir else folder.name
        where = f"TensorBoard run {name!r}"
        last = {t: acc.Scalars(t)[-1].value for t in tags}
        vals = {k: _value(last, getattr(m, k), "scalar tag", where, errors) for k in ("n", "d", "c")}
        if m.loss not in tags:
            errors.append(f"{where}: no scalar tag {m.loss!r} (tags: {', '.join(tags) or 'none'})")
            continue
        events = acc.Scalars(m.loss)
        points += len(events)
        b = _make_run(name, f"tensorboard:{logdir.name}", vals, [(e.step, e.value) for e in events], m, where, errors,
                      {"logdir": str(folder)})
        if b:
            built.append(b)
    return _finish(str(logdir), built, errors, points)


def read_wandb(path: str, m: Mapping, *, api=None) -> ImportResult:
    """Runs of a W&B project ``ENTITY/PROJECT`` via the public API; N/D/C from run config (or summary),
    the loss history from ``scan_history`` (every row)."""
    if api is None:
        try:
            import wandb
        except ImportError:  # pragma: no cover
            raise ImportFormatError("reading W&B needs wandb: pip install 'scalinglab[wandb]'") from None
        api = wandb.Api()
    built, errors, points = [], [], 0
    for r in api.runs(path):
        where = f"W&B run {r.name!r} ({r.id})"
        source = {**dict(r.summary), **dict(r.config)}
        vals = {k: _value(source, getattr(m, k), "config key", where, errors) for k in ("n", "d", "c")}
        rows = list(r.scan_history(keys=[m.loss, "_step"]))
        points += len(rows)
        if not rows:
            errors.append(f"{where}: no history rows with {m.loss!r}")
            continue
        hist = [(int(row.get("_step", i)), float(row[m.loss])) for i, row in enumerate(rows) if row.get(m.loss) is not None]
        b = _make_run(r.name, f"wandb:{path}", vals, hist, m, where, errors, {"wandb_id": r.id})
        if b:
            built.append(b)
    return _finish(path, built, errors, points)


def write(result: ImportResult, store, on_duplicate: str = "error") -> ImportResult:
    result.written = store.add_runs(result.runs, curves=result.curves, on_duplicate=on_duplicate)
    return result
