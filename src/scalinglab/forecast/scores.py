"""Import per-model benchmark scores (model, N, D or C, task, metric, value)."""
from __future__ import annotations

import math
from pathlib import Path

from .._units import parse_quantity
from ..importers import ImportFormatError, read_table


def parse_scores(path: str | Path) -> list[dict]:
    """Rows for the scores table; every problem is reported with its row, and nothing is returned on error."""
    columns, rows, fmt = read_table(path)
    need = {"model", "task", "metric", "value"}
    missing = need - set(columns)
    if missing:
        raise ImportFormatError(f"{path}: missing column(s) {sorted(missing)}; columns found: {', '.join(columns)}")
    if not ({"C", "c"} & set(columns) or ({"N", "n"} & set(columns) and {"D", "d"} & set(columns))):
        raise ImportFormatError(f"{path}: need C, or N and D, to place models on the compute axis")
    first = 2 if fmt in ("csv", "tsv") else 1
    out, errors, seen = [], [], {}
    for i, r in enumerate(rows):
        where = f"row {i + first}"
        try:
            vals = {k: parse_quantity(r[col]) for k, col in (("n", "N"), ("d", "D"), ("c", "C"), ("loss", "loss"),
                                                              ("n", "n"), ("d", "d"), ("c", "c"))
                    if col in r and r[col] not in (None, "")}
            value = parse_quantity(r["value"])
        except ValueError as e:
            errors.append(f"{where}: {e}")
            continue
        if not math.isfinite(value):
            errors.append(f"{where}: value {r['value']!r} is not finite")
            continue
        c = vals.get("c") or (6 * vals["n"] * vals["d"] if "n" in vals and "d" in vals else None)
        if c is None or c <= 0:
            errors.append(f"{where}: no positive compute (C, or N and D)")
            continue
        key = (str(r["model"]), str(r["task"]), str(r["metric"]))
        if key in seen:
            errors.append(f"{where}: duplicate of {seen[key]} {key}")
            continue
        seen[key] = where
        out.append({"source": f"import:{Path(path).name}", "model": key[0], "run_id": None, "n": vals.get("n"),
                    "d": vals.get("d"), "c": c, "loss": vals.get("loss"), "task": key[1], "metric": key[2], "value": value})
    if errors:
        raise ImportFormatError(f"{path}: {len(errors)} problem(s), nothing imported:\n  " + "\n  ".join(errors[:25]))
    return out
