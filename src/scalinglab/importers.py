"""Import runs from tables people already have: CSV/TSV, JSONL and Parquet.

Columns are found by common names or mapped explicitly; quantities may be spelled "1.2B" or "3e9".
Of N, D, C whatever is missing is derived with ``C = 6ND`` (stated in the report). Every problem is
collected with its row number and raised together; on any error nothing is written.
"""
from __future__ import annotations

import csv
import io
import dataclasses
import json
import math
import tomllib
from pathlib import Path

from ._units import parse_quantity
from .store import RUN_STATUSES, Run, RunStore, config_hash

FIELDS = ("n", "d", "c", "loss", "name", "unique_tokens", "status", "budget", "family")
ALIASES = {
    "n": ("N", "n", "params", "n_params", "num_params", "parameters", "model_size", "N_total", "n_total"),
    "d": ("D", "d", "tokens", "n_tokens", "num_tokens", "train_tokens", "training_tokens"),
    "c": ("C", "c", "flops", "FLOPs", "compute", "train_flops", "training_flops"),
    "loss": ("loss", "final_loss", "val_loss", "eval_loss", "validation_loss", "L"),
    "name": ("name", "Name", "run", "run_name", "run_id", "model", "id"),   # "Name": W&B's CSV export
    "unique_tokens": ("unique_tokens", "U", "U_D", "unique_data"),
    "status": ("status", "state"),
    "budget": ("budget", "isoflop", "compute_budget"),
    "family": ("family", "group"),
}
N_CONVENTIONS = ("n_total", "n_nonembedding", "n_active")


class ImportFormatError(ValueError):
    """The file cannot be imported as asked; the message says what, where, and what is accepted."""


@dataclasses.dataclass
class ImportResult:
    """What an import read, derived, dropped and wrote."""

    source: str
    runs: list[Run]
    derived: list[str]
    dropped: list[dict]
    columns: dict
    written: int = 0
    curves: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"source": self.source, "n_runs": len(self.runs), "written": self.written, "derived": self.derived,
                "dropped": self.dropped, "columns": self.columns}


def read_table(path: str | Path) -> tuple[list[str], list[dict], str]:
    """Rows of a CSV/TSV, JSONL or Parquet file as dicts, with the column names and the format.

    Raises:
        ImportFormatError: unknown extension, or content that is not what the extension says.
    """
    path = Path(path)
    if not path.exists():
        raise ImportFormatError(f"{path}: no such file")
    ext = path.suffix.lower()
    raw = path.read_bytes()
    if ext == ".parquet":
        if raw[:4] != b"PAR1":
            raise ImportFormatError(f"{path}: not a Parquet file (no PAR1 magic bytes)")
        try:
            import pyarrow.parquet as pq
        except ImportError:  # pragma: no cover - depends on the install
            raise ImportFormatError("reading Parquet needs pyarrow: pip install 'scalinglab[parquet]'") from None
        table = pq.read_table(path)
        return list(table.column_names), table.to_pylist(), "parquet"
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportFormatError(f"{path}: not UTF-8 text, so not a {ext or 'text'} file") from None
    if "\x00" in text:
        raise ImportFormatError(f"{path}: binary content, not a {ext} file")
    if ext in {".jsonl", ".ndjson"}:
        rows, cols = [], []
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line, object_pairs_hook=_unique_keys)
            except json.JSONDecodeError as e:
                raise ImportFormatError(f"{path}, line {i}: not valid JSON ({e.msg})") from None
            except ValueError as e:       # a repeated key, or an integer too long to read
                raise ImportFormatError(f"{path}, line {i}: {e}") from None
            if not isinstance(obj, dict):
                raise ImportFormatError(f"{path}, line {i}: expected a JSON object per line, got {type(obj).__name__}")
            rows.append(obj)
            cols += [k for k in obj if k not in cols]
        return cols, rows, "jsonl"
    if ext in {".csv", ".tsv"}:
        delimiter = "\t" if ext == ".tsv" else ","
        # the csv module on the whole text: quoted fields keep their newlines, and U+2028 is data, not a line break
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
        if not reader.fieldnames:
            raise ImportFormatError(f"{path}: empty file (no header row)")
        repeated = sorted({c for c in reader.fieldnames if reader.fieldnames.count(c) > 1})
        if repeated:
            raise ImportFormatError(f"{path}, line 1: duplicate column(s) {', '.join(map(repr, repeated))}: which one "
                                    "holds the data is ambiguous; rename or remove the extra ones")
        if len(reader.fieldnames) < 2:
            raise ImportFormatError(f"{path}: only one column ({reader.fieldnames[0]!r}) found with delimiter "
                                    f"{delimiter!r}; is this really a {ext} file?")
        rows = []
        for i, row in enumerate(reader, start=2):
            if None in row:
                raise ImportFormatError(f"{path}, line {i}: more fields than the header has")
            rows.append(row)
        return list(reader.fieldnames), rows, ext[1:]
    raise ImportFormatError(f"{path}: unsupported extension {ext!r}; accepted: .csv, .tsv, .jsonl, .ndjson, .parquet")


def _unique_keys(pairs):
    keys = [k for k, _ in pairs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"duplicate key(s) {', '.join(map(repr, repeated))}: which value holds is ambiguous")
    return dict(pairs)


def load_mapping(path: str | Path) -> dict:
    """A column mapping file (JSON or TOML): ``{"n": "params", "d": "tokens", "loss": "val_loss"}``."""
    path = Path(path)
    if not path.is_file():
        raise ImportFormatError(f"--mapping {path}: no such file" + (" (it is a directory)" if path.is_dir() else ""))
    try:
        text = path.read_text()
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text, object_pairs_hook=_unique_keys)
    except (tomllib.TOMLDecodeError, ValueError, UnicodeDecodeError) as e:
        raise ImportFormatError(f"--mapping {path}: not a valid JSON or TOML mapping file ({e}); expected e.g. "
                                '{"n": "params", "d": "tokens", "loss": "val_loss"}') from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for k, v in data.items()):
        raise ImportFormatError(f"--mapping {path}: expected an object of field -> column name, e.g. "
                                '{"n": "params", "d": "tokens", "loss": "val_loss"}')
    unknown = set(data) - set(FIELDS) - {"n_convention"}
    if unknown:
        raise ImportFormatError(f"{path}: unknown mapping key(s) {sorted(unknown)}; accepted: {', '.join(FIELDS)}, n_convention")
    return data


def resolve_columns(columns: list[str], mapping: dict | None, source: str) -> dict:
    """Which file column holds each field (explicit mapping first, then the known aliases)."""
    mapping = {k: v for k, v in (mapping or {}).items() if v and k in FIELDS}
    found = {}
    for field in FIELDS:
        if field in mapping:
            if mapping[field] not in columns:
                raise ImportFormatError(f"{source}: column {mapping[field]!r} (for {field}) not found; "
                                        f"columns found: {', '.join(columns)}")
            found[field] = mapping[field]
            continue
        for alias in ALIASES[field]:
            if alias in columns:
                found[field] = alias
                break
    if "loss" not in found:
        raise ImportFormatError(f"{source}: no loss column (looked for {', '.join(ALIASES['loss'])}; "
                                f"columns found: {', '.join(columns)}); name it with --loss-col")
    have = [f for f in ("n", "d", "c") if f in found]
    if len(have) < 2:
        raise ImportFormatError(f"{source}: need two of N, D, C to derive the third; found only "
                                f"{', '.join(found[f] for f in have) or 'none'} (columns found: {', '.join(columns)}); "
                                "name them with --n-col / --d-col / --c-col")
    return found


FLOPS_TOLERANCE = (0.5, 3.0)     # C / 6ND a file may state: attention and embeddings move it, a typo moves it far


def parse_runs(path: str | Path, mapping: dict | None = None, *, drop_invalid: bool = False,
               n_convention: str = "n_total", trust_flops: bool = False) -> ImportResult:
    """Read and validate a table of runs without touching any store.

    A row with N, D and C all given must have C within ``FLOPS_TOLERANCE`` of 6ND, unless
    ``trust_flops``: then the file's C is authoritative and is the compute axis of every fit."""
    mapping = dict(mapping or {})
    n_convention = mapping.pop("n_convention", n_convention)
    if n_convention not in N_CONVENTIONS:
        raise ImportFormatError(f"n_convention must be one of {', '.join(N_CONVENTIONS)}, not {n_convention!r}")
    source = str(path)
    columns, rows, fmt = read_table(path)
    if not rows:
        raise ImportFormatError(f"{source}: no data rows")
    cols = resolve_columns(columns, mapping, source)
    first_line = 2 if fmt in {"csv", "tsv"} else 1
    errors, dropped, runs, derived = [], [], [], set()
    keys: dict = {}
    for i, row in enumerate(rows):
        where = f"row {i + first_line}" if fmt in {"csv", "tsv"} else f"record {i + 1}"
        vals = {}
        bad = False
        for field in ("n", "d", "c", "unique_tokens", "budget"):
            if field not in cols:
                continue
            raw = row.get(cols[field])
            if raw is None or (isinstance(raw, str) and raw.strip() == "") :
                if field in ("unique_tokens", "budget"):
                    continue
                errors.append(f"{where}: {cols[field]} is empty")
                bad = True
                continue
            try:
                v = parse_quantity(raw)
            except ValueError as e:
                errors.append(f"{where}: {cols[field]} = {raw!r}: {e}")
                bad = True
                continue
            if not math.isfinite(v) or v <= 0:
                errors.append(f"{where}: {cols[field]} = {raw!r} must be finite and positive")
                bad = True
                continue
            vals[field] = v
        raw_loss = row.get(cols["loss"])
        try:
            loss = parse_quantity(raw_loss)
        except ValueError:
            loss = float("nan")
        if not math.isfinite(loss) or loss <= 0:
            if drop_invalid:
                dropped.append({"where": where, "reason": f"loss {raw_loss!r} is not a finite positive number"})
                continue
            errors.append(f"{where}: loss {raw_loss!r} is not a finite positive number (use --drop-invalid to skip such rows)")
            bad = True
        if bad:
            continue
        n, d, c = vals.get("n"), vals.get("d"), vals.get("c")
        if None not in (n, d, c):
            ratio = c / (6.0 * n * d)
            if trust_flops:
                derived.add("C as the file states it (--trust-flops): the compute axis of every fit; N and D as given")
            elif not FLOPS_TOLERANCE[0] <= ratio <= FLOPS_TOLERANCE[1]:
                errors.append(f"{where}: {cols['c']} = {c:.4g} is {ratio:.3g} x 6ND (N = {n:.4g}, D = {d:.4g}); "
                              f"accepted: {FLOPS_TOLERANCE[0]:g}-{FLOPS_TOLERANCE[1]:g} x 6ND. Check the columns, leave "
                              "C out to derive it, or pass --trust-flops if the file's C is right")
                continue
        if c is None:
            c = 6.0 * n * d
            derived.add("C = 6*N*D")
        elif d is None:
            d = c / (6.0 * n)
            derived.add("D = C/(6*N)")
        elif n is None:
            n = c / (6.0 * d)
            derived.add("N = C/(6*D)")
        name = str(row.get(cols["name"])) if "name" in cols and row.get(cols["name"]) not in (None, "") else f"{Path(source).stem}-{i + 1}"
        key = name if "name" in cols else (n, d)
        if key in keys:
            errors.append(f"{where}: duplicate of {keys[key]} (key {key!r})")
            continue
        keys[key] = where
        status = str(row.get(cols["status"], "finished")).strip().lower() if "status" in cols else "finished"
        if status not in RUN_STATUSES:
            errors.append(f"{where}: status {status!r} is not one of {', '.join(RUN_STATUSES)}")
            continue
        extra = {k: v for k, v in row.items() if k not in cols.values()}
        counts = param_counts_for(n, n_convention)
        key_config = {"name": name, "N": n, "D": d, "loss": loss, "source": Path(source).name}
        runs.append(Run(run_id=config_hash(key_config), name=name, source=f"import:{Path(source).name}", status=status,
                        family=str(row[cols["family"]]) if "family" in cols and row.get(cols["family"]) else None,
                        tokens=d, unique_tokens=vals.get("unique_tokens"), flops_6nd=c, final_loss=loss,
                        budget=vals.get("budget"), config={"n_convention": n_convention}, extra=extra, **counts))
    if errors:
        shown = "\n  ".join(errors[:25])
        more = f"\n  ... and {len(errors) - 25} more" if len(errors) > 25 else ""
        raise ImportFormatError(f"{source}: {len(errors)} problem(s), nothing imported:\n  {shown}{more}")
    return ImportResult(source=source, runs=runs, derived=sorted(derived), dropped=dropped, columns=cols)


def param_counts_for(n: float, n_convention: str) -> dict:
    """The store's three parameter counts for an imported N stated under ``n_convention``: a dense model's
    total count is also its active count (the ``C = 6 N_active D`` convention); the rest stay unknown."""
    counts = {"n_total": None, "n_nonembedding": None, "n_active": None}
    counts[n_convention] = n
    if n_convention == "n_total":
        counts["n_active"] = n
    return counts


def import_runs(path: str | Path, store: RunStore, mapping: dict | None = None, *, drop_invalid: bool = False,
                n_convention: str = "n_total", on_duplicate: str = "error", trust_flops: bool = False) -> ImportResult:
    """Validate a table and write its runs to ``store`` in one transaction (all or nothing)."""
    result = parse_runs(path, mapping, drop_invalid=drop_invalid, n_convention=n_convention, trust_flops=trust_flops)
    result.written = store.add_runs(result.runs, on_duplicate=on_duplicate)
    return result


def export_runs(runs: list[Run], path: str | Path) -> int:
    """Write runs to CSV or Parquet (by extension); returns the number of rows."""
    path = Path(path)
    fields = ["run_id", "name", "source", "status", "family", "n_total", "n_nonembedding", "n_active", "tokens",
              "unique_tokens", "flops_6nd", "flops_with_attention", "final_loss", "budget"]
    rows = [{f: getattr(r, f) for f in fields} | {"config": json.dumps(r.config, sort_keys=True)} for r in runs]
    if path.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix.lower() in {".csv", ".tsv"}:
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields + ["config"], delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)
    else:
        raise ValueError(f"{path}: export writes .csv, .tsv or .parquet")
    return len(rows)
