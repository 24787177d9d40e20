"""Public model tables: models with parameters, training tokens or compute, release dates and benchmark scores.

Two inputs, one validation:

* a **table** (CSV/TSV/JSONL/Parquet), one row per model: ``model`` (or ``name``), optional ``family``,
  ``params`` (``N``), ``active_params`` (``n_active``, for mixtures of experts), ``tokens`` (``D``), ``flops``
  (``C``), ``date`` (``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD`` or a decimal year), ``source`` (where the numbers
  come from); **every other column is a benchmark score**;
* **lm-evaluation-harness** result JSON files, one per model, with a side table of the same columns but no
  scores (matched by ``file``, else by ``model``).

Scores are stored as fractions in [0, 1]. ``scale="auto"`` reads a benchmark column as percent when any of
its values exceeds 1. Compute, when missing, is ``C = 6 * N_active * D`` (``N_active = N`` for a dense model).
A date names the middle of the period it gives: ``2023`` is mid-2023, ``2023-07`` the 15th of July.
Every problem is collected with its row and column and raised together; nothing is returned on error.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import re
from importlib import resources
from pathlib import Path

import numpy as np

from .._units import parse_quantity
from ..importers import ImportFormatError, read_table

EXAMPLE = "public_models.csv"
ALIASES = {
    "model": ("model", "name", "model_name"),
    "family": ("family", "group", "org", "organization"),
    "n": ("params", "n", "n_params", "parameters", "n_total", "num_params"),
    "n_active": ("active_params", "n_active", "active_parameters"),
    "d": ("tokens", "d", "train_tokens", "training_tokens", "n_tokens"),
    "c": ("flops", "c", "compute", "train_flops", "training_flops"),
    "date": ("date", "release_date", "released", "publication_date"),
    "reference": ("source", "reference", "ref", "citation", "url"),
}
SCALES = ("auto", "percent", "fraction")
FORMS = ("accepted: one row per model with columns model, family, params (N), active_params, tokens (D), "
         "flops (C), date (YYYY, YYYY-MM, YYYY-MM-DD or a decimal year), source, and one numeric column per "
         "benchmark (percent or fraction); or lm-evaluation-harness result JSON files with --sizes")
# the metric read from an lm-evaluation-harness task, in order of preference
HARNESS_METRICS = ("acc_norm", "acc", "exact_match", "pass@1", "em", "f1", "mc2")
_DATE = re.compile(r"^\s*(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?\s*$")


def example_path() -> Path:
    """The bundled example table (public models compiled from papers and model cards, each row with its source)."""
    return Path(str(resources.files("scalinglab.observe") / "data" / EXAMPLE))


def decimal_year(text: str) -> float:
    """``2023-07-18`` -> 2023.54; ``2023-07`` -> the 15th of July; ``2023`` -> mid-2023; ``2023.4`` as is.

    Raises:
        ValueError: not a date in an accepted form.
    """
    s = str(text).strip()
    m = _DATE.match(s)
    if m is None:
        try:
            y = float(s)
        except ValueError:
            raise ValueError(f"{s!r} is not a date (accepted: 2023, 2023-07, 2023-07-18, 2023.54)") from None
        if not (1900 < y < 2200):
            raise ValueError(f"{s!r} is not a plausible year")
        return y
    year, month, day = int(m[1]), m[2], m[3]
    if month is None:
        return year + 0.5
    try:
        d = _dt.date(year, int(month), int(day) if day else 15)
    except ValueError as e:
        raise ValueError(f"{s!r}: {e}") from None
    start = _dt.date(year, 1, 1)
    days = (_dt.date(year + 1, 1, 1) - start).days
    return year + (d - start).days / days


def _resolve(columns: list[str]) -> tuple[dict, list[str]]:
    """Field -> column, and the benchmark columns (all the others)."""
    lower = {c.strip().lower(): c for c in columns}
    found = {}
    for field, names in ALIASES.items():
        for n in names:
            if n in lower:
                found[field] = lower[n]
                break
    taken = set(found.values())
    return found, [c for c in columns if c not in taken]


def validate_rows(raw: list[dict], cols: dict, benches: list[str], *, source: str, collection: str,
                  where=lambda i: f"row {i + 2}", scale: str = "auto") -> list[dict]:
    """Rows for the store from raw table rows: every problem collected with its row and column.

    Raises:
        ImportFormatError: listing every problem; nothing is returned.
    """
    if scale not in SCALES:
        raise ImportFormatError(f"scale must be one of {', '.join(SCALES)}, not {scale!r}")
    if "model" not in cols:
        raise ImportFormatError(f"{source}: no model column (looked for {', '.join(ALIASES['model'])}); {FORMS}")
    if "date" not in cols and not benches:
        raise ImportFormatError(f"{source}: neither a date column nor any benchmark column; {FORMS}")
    errors, out, seen = [], [], {}
    values: dict = {b: [] for b in benches}
    for i, r in enumerate(raw):
        w = where(i)
        name = r.get(cols["model"])
        if name in (None, "") or not str(name).strip():
            errors.append(f"{w}, column {cols['model']}: empty model name")
            continue
        name = str(name).strip()
        if name in seen:
            errors.append(f"{w}: model {name!r} already given in {seen[name]}")
            continue
        seen[name] = w
        row = {"collection": collection, "model": name, "family": None, "n": None, "n_active": None, "d": None,
               "c": None, "date": None, "reference": None, "scores": {}}
        if "family" in cols and r.get(cols["family"]) not in (None, ""):
            row["family"] = str(r[cols["family"]]).strip()
        if "reference" in cols and r.get(cols["reference"]) not in (None, ""):
            row["reference"] = str(r[cols["reference"]]).strip()
        for field in ("n", "n_active", "d", "c"):
            v = r.get(cols[field]) if field in cols else None
            if v in (None, "") or (isinstance(v, float) and math.isnan(v)):
                continue
            try:
                q = parse_quantity(v)
            except ValueError as e:
                errors.append(f"{w}, column {cols[field]}: {e}")
                continue
            if not (math.isfinite(q) and q > 0):
                errors.append(f"{w}, column {cols[field]}: {v!r} must be finite and positive")
                continue
            row[field] = q
        if row["n"] and row["n_active"] and row["n_active"] > row["n"]:
            errors.append(f"{w}: active parameters {row['n_active']:.4g} exceed the total {row['n']:.4g}")
        if row["c"] is None and row["d"] and (row["n_active"] or row["n"]):
            row["c"] = 6.0 * (row["n_active"] or row["n"]) * row["d"]
        if "date" in cols and r.get(cols["date"]) not in (None, ""):
            try:
                decimal_year(r[cols["date"]])
                row["date"] = str(r[cols["date"]]).strip()
            except ValueError as e:
                errors.append(f"{w}, column {cols['date']}: {e}")
        for b in benches:
            v = r.get(b)
            if v in (None, "") or (isinstance(v, float) and math.isnan(v)):
                continue
            try:
                q = parse_quantity(str(v).strip().rstrip("%")) if isinstance(v, str) else parse_quantity(v)
            except ValueError:
                errors.append(f"{w}, column {b}: {v!r} is not a score (benchmark columns hold numbers, percent or "
                              "fraction; a column that is not a benchmark must be one of: "
                              + ", ".join(n for names in ALIASES.values() for n in names) + ")")
                continue
            if not math.isfinite(q) or q < 0:
                errors.append(f"{w}, column {b}: {v!r} must be a finite, non-negative score")
                continue
            values[b].append((w, q))
            row["scores"][b] = q
        out.append(row)
    factor = {}
    for b, vals in values.items():
        pct = scale == "percent" or (scale == "auto" and any(q > 1.0 for _, q in vals))
        factor[b] = 0.01 if pct else 1.0
        for w, q in vals:
            if q * factor[b] > 1.0:
                errors.append(f"{w}, column {b}: {q:g} is above 100%")
    if errors:
        shown = "\n  ".join(errors[:25])
        more = f"\n  ... and {len(errors) - 25} more" if len(errors) > 25 else ""
        raise ImportFormatError(f"{source}: {len(errors)} problem(s), nothing imported:\n  {shown}{more}")
    if not out:
        raise ImportFormatError(f"{source}: no data rows")
    for row in out:
        row["scores"] = {b: round(q * factor[b], 10) for b, q in row["scores"].items()}
    return out


def parse_model_table(path: str | Path, *, collection: str | None = None, scale: str = "auto") -> list[dict]:
    """Rows for the store's ``public_models`` table from a table file (see the module docstring)."""
    columns, rows, fmt = read_table(path)
    cols, benches = _resolve(columns)
    first = 2 if fmt in ("csv", "tsv") else 1
    return validate_rows(rows, cols, benches, source=str(path), collection=collection or Path(path).stem,
                         where=lambda i: f"{'row' if first == 2 else 'record'} {i + first}", scale=scale)


def _harness_scores(data: dict, path) -> dict:
    """benchmark -> score of one lm-evaluation-harness result, the metric chosen by ``HARNESS_METRICS``."""
    from ..forecast.scores import _harness_metrics
    by_task: dict = {}
    for task, metric, value in _harness_metrics(data, path):
        by_task.setdefault(task, {})[metric] = value
    out = {}
    for task, metrics in by_task.items():
        for pref in HARNESS_METRICS:
            hit = [m for m in metrics if m == pref or m.startswith(pref + "/")]
            if hit:
                out[task] = metrics[sorted(hit)[0]]
                break
    return out


def parse_harness_models(files: list[str | Path], sizes: str | Path, *, collection: str = "lm-eval-harness") -> list[dict]:
    """Rows for the ``public_models`` table from lm-evaluation-harness result files (one per model) and a side
    table with the table's columns (``file`` or ``model``, ``family``, ``params``, ``tokens``, ``date``, ...)."""
    columns, side, fmt = read_table(sizes)
    cols, rest = _resolve(columns)
    file_col = next((c for c in rest if c.strip().lower() == "file"), None)
    if "model" not in cols and file_col is None:
        raise ImportFormatError(f"{sizes}: a sizes table has a file or model column; found: {', '.join(columns)}")
    first = 2 if fmt in ("csv", "tsv") else 1
    raw, errors, benches = [], [], []
    from ..forecast.scores import load_harness_file
    for f in map(Path, files):
        try:
            data, i, r = load_harness_file(f, side, sizes, file_col=file_col, model_col=cols.get("model"))
            scores = _harness_scores(data, f)
        except ImportFormatError as e:
            errors.append(str(e))
            continue
        row = dict(r)
        if "model" not in cols or row.get(cols.get("model")) in (None, ""):
            row["model"] = f.stem
        benches += [b for b in scores if b not in benches]
        raw.append((f"{f} (sizes row {i + first})", {**row, **scores}))
    if errors:
        raise ImportFormatError(f"{len(errors)} problem(s), nothing imported:\n  " + "\n  ".join(errors[:25]))
    cols = {**cols, "model": cols.get("model", "model")}
    return validate_rows([r for _, r in raw], cols, benches, source=str(sizes), collection=collection,
                         where=lambda i: raw[i][0], scale="fraction")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelTable:
    """Public models as arrays: a row per model, NaN where a number is unknown.

    ``scores`` is models x ``benchmarks``, fractions in [0, 1]; ``date`` is in decimal years; ``C`` is training
    compute ``6 N_active D`` unless the table gave it.
    """

    model: np.ndarray
    family: np.ndarray
    N: np.ndarray
    N_active: np.ndarray
    D: np.ndarray
    C: np.ndarray
    date: np.ndarray
    reference: np.ndarray
    benchmarks: tuple
    scores: np.ndarray

    @classmethod
    def from_rows(cls, rows: list[dict]) -> "ModelTable":
        benches = sorted({b for r in rows for b in r["scores"]})
        num = lambda k: np.array([np.nan if r.get(k) is None else float(r[k]) for r in rows], float)  # noqa: E731
        return cls(model=np.array([r["model"] for r in rows], dtype=object),
                   family=np.array([r.get("family") or r["model"] for r in rows], dtype=object),
                   N=num("n"), N_active=num("n_active"), D=num("d"), C=num("c"),
                   date=np.array([np.nan if not r.get("date") else decimal_year(r["date"]) for r in rows], float),
                   reference=np.array([r.get("reference") or "" for r in rows], dtype=object), benchmarks=tuple(benches),
                   scores=np.array([[r["scores"].get(b, np.nan) for b in benches] for r in rows], float).reshape(len(rows), len(benches)))

    @classmethod
    def example(cls) -> "ModelTable":
        """The bundled example table."""
        return cls.from_rows(parse_model_table(example_path(), collection="example"))

    def __len__(self) -> int:
        return len(self.model)

    def __repr__(self) -> str:
        return f"ModelTable({len(self)} models, {len(set(self.family))} families, benchmarks={list(self.benchmarks)})"

    def subset(self, keep) -> "ModelTable":
        keep = np.asarray(keep)
        return dataclasses.replace(self, **{f.name: getattr(self, f.name)[keep] for f in dataclasses.fields(self)
                                            if f.name != "benchmarks"})

    def score(self, benchmark: str) -> np.ndarray:
        """One benchmark's scores (NaN where missing).

        Raises:
            KeyError: the table has no such benchmark (the message lists those it has).
        """
        if benchmark not in self.benchmarks:
            raise KeyError(f"no benchmark {benchmark!r}; the table has: {', '.join(self.benchmarks) or 'none'}")
        return self.scores[:, self.benchmarks.index(benchmark)]

    def metric(self, name: str) -> np.ndarray:
        """``compute`` (C), ``params`` (N), ``active_params``, ``tokens`` (D) or a benchmark's score."""
        fields = {"compute": self.C, "params": self.N, "active_params": np.where(np.isnan(self.N_active), self.N, self.N_active),
                  "tokens": self.D}
        if name in fields:
            return fields[name]
        try:
            return self.score(name)
        except KeyError:
            raise KeyError(f"no metric {name!r}; accepted: {', '.join(fields)} or a benchmark "
                           f"({', '.join(self.benchmarks) or 'none in this table'})") from None
