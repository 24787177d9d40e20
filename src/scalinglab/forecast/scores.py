"""Import per-model (or per-checkpoint) benchmark scores for task forecasts.

Three table shapes (CSV/TSV/JSONL/Parquet) and lm-evaluation-harness result files:

* **long, one row per metric**: ``model, task, metric, value`` plus ``C`` or ``N`` and ``D``; an optional
  ``loss`` column is the model's overall loss (not a task loss: give that as ``metric = task_loss``).
* **long, one row per task**: ``model, task`` plus ``N``/``D``/``C`` and one column per metric
  (``acc``, ``exact_match``, ...). Here a row is one task's measurements, so a ``bpb``, ``task_bpb``,
  ``task_loss`` or ``loss`` column is that task's loss and is stored as ``task_loss``; the model's overall
  loss goes in ``model_loss``.
* **wide, one row per model or checkpoint**: ``model`` plus ``N``/``D``/``C`` and any columns, with a
  mapping ``COLUMN -> TASK:METRIC`` (``hellaswag_bpb -> hellaswag:task_loss``); metric ``bpb`` or ``loss``
  in a mapping means ``task_loss``.
* **lm-evaluation-harness** result JSON files (one per model or checkpoint) with a side table giving each
  file's ``N`` and ``D`` (columns ``file`` or ``model``, ``N``, ``D``, optional ``checkpoint``, ``final``).

Checkpoints: a ``checkpoint`` (or ``step``) column names each row's checkpoint, and ``final`` (true/false)
marks each run's final one; without ``final`` the checkpoint with the most tokens (then the highest step)
is final. ``D`` is the tokens seen at the checkpoint. The store keeps a checkpoint as model
``RUN@CHECKPOINT`` and a final checkpoint under the run's own name: step 1 of a task forecast uses finals,
step 2 every checkpoint. Task loss: bits per byte of the correct answer (any per-answer loss works if a
task uses one unit throughout).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from .._units import parse_quantity
from ..importers import ImportFormatError, read_table

TASK_LOSS_NAMES = ("task_loss", "bpb", "task_bpb", "loss", "bits_per_byte")
ID_COLUMNS = {"model", "n", "d", "c", "checkpoint", "step", "final", "model_loss", "task", "file"}
FORMS = ("accepted forms: long (model, task, metric, value + C or N, D), long by task (model, task + N, D "
         "+ a column per metric, e.g. bpb, acc), wide (model + N, D + columns mapped with --map COLUMN=TASK:METRIC "
         "or --map-file), or lm-evaluation-harness JSON files with --sizes")
TRUE, FALSE = {"true", "1", "yes", "y", "t"}, {"false", "0", "no", "n", "f", ""}


def _metric_name(metric: str) -> str:
    return "task_loss" if metric.lower() in TASK_LOSS_NAMES else metric


def _lower(r: dict) -> dict:
    return {str(k).strip().lower(): v for k, v in r.items()}


def _flag(value, where: str, errors: list) -> bool | None:
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower() if value is not None else ""
    if s in TRUE:
        return True
    if s in FALSE:
        return False
    errors.append(f"{where}, column final: {value!r} is not true/false (accepted: true, false, 1, 0, yes, no)")
    return None


def _sizes(r: dict, where: str, errors: list) -> dict | None:
    vals = {}
    for k in ("n", "d", "c", "model_loss", "loss"):
        if r.get(k) not in (None, ""):
            try:
                vals[k] = parse_quantity(r[k])
            except ValueError as e:
                errors.append(f"{where}, column {k}: {e}")
                return None
    c = vals.get("c") or (6 * vals["n"] * vals["d"] if "n" in vals and "d" in vals else None)
    if c is None or c <= 0:
        errors.append(f"{where}: no positive compute (C, or N and D)")
        return None
    vals["c"] = c
    return vals


def _records(rows: list[dict], first: int, mapping: dict | None, path) -> list[dict]:
    """(model, checkpoint, final, sizes, task, metric, value, where) records of any table shape."""
    cols = set().union(*(r.keys() for r in rows)) if rows else set()
    long_metric = {"metric", "value"} <= cols
    by_task = "task" in cols and not long_metric
    if not long_metric and not by_task and not mapping:
        raise ImportFormatError(f"{path}: no task column and no column mapping; {FORMS}")
    if "model" not in cols:
        raise ImportFormatError(f"{path}: missing column 'model'; {FORMS}")
    if not ({"c"} & cols or {"n", "d"} <= cols):
        raise ImportFormatError(f"{path}: need C, or N and D, to place models on the compute axis; {FORMS}")
    if mapping:
        missing = sorted(set(mapping) - {c for c in cols})
        if missing:
            raise ImportFormatError(f"{path}: mapped column(s) {missing} not in the table; columns: {', '.join(sorted(cols))}")
    out, errors = [], []
    for i, r in enumerate(rows):
        where = f"row {i + first}"
        sizes = _sizes(r, where, errors)
        if sizes is None:
            continue
        if long_metric or mapping:
            if "model_loss" not in sizes and "loss" in sizes:
                sizes["model_loss"] = sizes["loss"]
        if long_metric:
            cells = [(str(r["task"]), _metric_name(str(r["metric"])), r["value"], "value")]
        elif mapping:
            cells = [(t, m, r.get(col), col) for col, (t, m) in mapping.items() if r.get(col) not in (None, "")]
        else:
            task_losses = [k for k in r if k in TASK_LOSS_NAMES and r[k] not in (None, "")]
            if len(task_losses) > 1:
                errors.append(f"{where}: more than one task-loss column ({', '.join(task_losses)}); keep one")
                continue
            cells = [(str(r["task"]), _metric_name(k), v, k) for k, v in r.items()
                     if k not in ID_COLUMNS and v not in (None, "")]
        sizes.pop("loss", None)
        ckpt = r.get("checkpoint", r.get("step"))
        final = _flag(r["final"], where, errors) if "final" in r else None
        model = str(r["model"])
        if "@" in model:
            errors.append(f"{where}, column model: {model!r} contains '@', which separates a run from its checkpoint")
            continue
        for task, metric, value, col in cells:
            try:
                v = parse_quantity(value)
            except ValueError as e:
                errors.append(f"{where}, column {col}: {e}")
                continue
            if not math.isfinite(v):
                errors.append(f"{where}, column {col}: {value!r} is not finite")
                continue
            out.append({"model": model, "checkpoint": None if ckpt in (None, "") else str(ckpt), "final": final,
                        "sizes": sizes, "task": task, "metric": metric, "value": v, "where": where})
    if errors:
        raise ImportFormatError(f"{path}: {len(errors)} problem(s), nothing imported:\n  " + "\n  ".join(errors[:25]))
    return out


def _store_rows(records: list[dict], source: str, path) -> list[dict]:
    """Resolve final checkpoints and name checkpoints ``RUN@CHECKPOINT``; one row per (model, task, metric)."""
    errors = []
    ckpts: dict = {}
    for rec in records:
        ckpts.setdefault(rec["model"], {}).setdefault(rec["checkpoint"], rec)
    final_of = {}
    for model, by_ckpt in ckpts.items():
        marked = [c for c, rec in by_ckpt.items() if rec["final"]]
        if len(marked) > 1:
            errors.append(f"model {model!r}: {len(marked)} checkpoints marked final ({', '.join(map(str, marked))})")
        elif marked:
            final_of[model] = marked[0]
        elif all(rec["final"] is None for rec in by_ckpt.values()):
            def order(c):
                rec = by_ckpt[c]
                try:
                    step = float(c)
                except (TypeError, ValueError):
                    step = 0.0
                return rec["sizes"].get("d") or 0.0, step
            final_of[model] = max(by_ckpt, key=order)
        if len(by_ckpt) > 1 and None in by_ckpt:
            errors.append(f"model {model!r}: some rows have a checkpoint and {by_ckpt[None]['where']} has none")
    out, seen = [], {}
    for rec in records:
        name = rec["model"] if rec["checkpoint"] == final_of.get(rec["model"], object()) else f"{rec['model']}@{rec['checkpoint']}"
        key = (name, rec["task"], rec["metric"])
        if key in seen:
            errors.append(f"{rec['where']}: duplicate of {seen[key]} {key}")
            continue
        seen[key] = rec["where"]
        s = rec["sizes"]
        out.append({"source": source, "model": name, "run_id": None, "n": s.get("n"), "d": s.get("d"), "c": s["c"],
                    "loss": s.get("model_loss"), "task": rec["task"], "metric": rec["metric"], "value": rec["value"]})
    if errors:
        raise ImportFormatError(f"{path}: {len(errors)} problem(s), nothing imported:\n  " + "\n  ".join(errors[:25]))
    return out


def parse_mapping(items: list[str] | None = None, map_file: str | Path | None = None) -> dict | None:
    """``COLUMN -> (task, metric)`` from ``COLUMN=TASK:METRIC`` options and/or a file with columns
    ``column, task, metric``. The metric is after the last ``:`` (tasks may contain one: ``addition:2``)."""
    mapping: dict = {}
    for item in items or []:
        col, sep, rhs = item.partition("=")
        task, sep2, metric = rhs.rpartition(":")
        if not (sep and sep2 and col.strip() and task.strip() and metric.strip()):
            raise ImportFormatError(f"--map {item!r}: expected COLUMN=TASK:METRIC, e.g. hellaswag_bpb=hellaswag:task_loss")
        mapping[col.strip().lower()] = (task.strip(), _metric_name(metric.strip()))
    if map_file is not None:
        cols, rows, fmt = read_table(map_file)
        need = {"column", "task", "metric"} - {c.lower() for c in cols}
        if need:
            raise ImportFormatError(f"{map_file}: missing column(s) {sorted(need)}; a mapping file has columns column, task, metric")
        first = 2 if fmt in ("csv", "tsv") else 1
        for i, r in enumerate(map(_lower, rows)):
            if any(r.get(k) in (None, "") for k in ("column", "task", "metric")):
                raise ImportFormatError(f"{map_file}, row {i + first}: empty column, task or metric")
            mapping[str(r["column"]).strip().lower()] = (str(r["task"]), _metric_name(str(r["metric"])))
    return mapping or None


def parse_scores(path: str | Path, *, mapping: dict | None = None) -> list[dict]:
    """Rows for the scores table from a long or wide table; every problem is reported with its row and
    column, and nothing is returned on error."""
    columns, rows, fmt = read_table(path)
    first = 2 if fmt in ("csv", "tsv") else 1
    records = _records([_lower(r) for r in rows], first, mapping, path)
    return _store_rows(records, f"import:{Path(path).name}", path)


def _harness_metrics(data: dict, path) -> list[tuple[str, str, float]]:
    results = data.get("results")
    if not isinstance(results, dict) or not results:
        raise ImportFormatError(f"{path}: no 'results' object; not an lm-evaluation-harness result file")
    out = []
    for task, metrics in results.items():
        if not isinstance(metrics, dict):
            continue
        for key, value in metrics.items():
            name, _, filt = key.partition(",")
            if name == "alias" or name.endswith("_stderr") or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            metric = _metric_name(name) if name in ("bits_per_byte", "bpb", "task_loss") else name
            out.append((task, metric if filt in ("", "none") else f"{metric}/{filt}", float(value)))
    return out


def load_harness_file(f: Path, side: list[dict], sizes, *, file_col: str | None = "file",
                      model_col: str | None = "model") -> tuple[dict, int, dict]:
    """An lm-evaluation-harness result file with its row of the side table (index and row): the row whose
    ``file_col`` is the file's path or name, else whose ``model_col`` is a model name the file gives
    (``model_name``, ``pretrained=``).

    Raises:
        ImportFormatError: no such file, not a JSON object, or not exactly one matching row.
    """
    try:
        data = json.loads(f.read_text())
    except FileNotFoundError:
        raise ImportFormatError(f"{f}: no such file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ImportFormatError(f"{f}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ImportFormatError(f"{f}: expected a JSON object")
    names = {str(data.get("model_name") or "")}
    args = (data.get("config") or {}).get("model_args") or ""
    if isinstance(args, str):
        names |= {a.split("=", 1)[1] for a in args.split(",") if a.startswith("pretrained=")}
    match = [(i, r) for i, r in enumerate(side)
             if (file_col and r.get(file_col) and str(r[file_col]) in (str(f), f.name))
             or (not (file_col and r.get(file_col)) and model_col and r.get(model_col) and str(r[model_col]) in names)]
    if len(match) != 1:
        raise ImportFormatError(f"{f}: {'no' if not match else len(match)} matching row(s) in {sizes} (matched by file "
                                f"name, else by model {sorted(n for n in names if n)})")
    return data, *match[0]


def parse_harness(files: list[str | Path], sizes: str | Path) -> list[dict]:
    """Rows for the scores table from lm-evaluation-harness result JSON files and a side table of sizes
    (columns ``file`` or ``model``, ``N``, ``D``; optional ``checkpoint``, ``final``). A file matches the side
    table's ``file`` (path or file name), else its ``model`` (the result's ``model_name`` or ``pretrained=``).
    ``bits_per_byte`` is taken as the task loss."""
    cols, side, fmt = read_table(sizes)
    side = [_lower(r) for r in side]
    first = 2 if fmt in ("csv", "tsv") else 1
    lc = {c.lower() for c in cols}
    if not ({"file", "model"} & lc) or not {"n", "d"} <= lc:
        raise ImportFormatError(f"{sizes}: a sizes table has columns file or model, N, D (optional checkpoint, final); "
                                f"found: {', '.join(cols)}")
    records, errors = [], []
    for f in files:
        f = Path(f)
        try:
            data, i, r = load_harness_file(f, side, sizes)
            metrics = _harness_metrics(data, f)
        except ImportFormatError as e:
            errors.append(str(e))
            continue
        row = {"model": r.get("model") or f.stem, "n": r["n"], "d": r["d"], "checkpoint": r.get("checkpoint"),
               **({"final": r["final"]} if "final" in r else {})}
        for task, metric, value in metrics:
            records.append({**row, "task": task, "metric": metric, "value": value, "_where": f"{f} (sizes row {i + first})"})
    if errors:
        raise ImportFormatError(f"{len(errors)} problem(s), nothing imported:\n  " + "\n  ".join(errors[:25]))
    recs = _records([{k: v for k, v in r.items() if k != "_where"} for r in records], 0, None, sizes) if records else []
    for rec, raw in zip(recs, records):
        rec["where"] = raw["_where"]
    return _store_rows(recs, "import:lm-eval-harness", sizes)
