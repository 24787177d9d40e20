"""The run store: one SQLite file (WAL) holding runs, loss curves, fits and decisions.

Everything meets here: the trainer and the importers write runs, the fitter reads runs and writes
fits, the report reads everything. Writes are transactions, so a failed import writes nothing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

SCHEMA_VERSION = 3
DEFAULT_STORE = "scalinglab.db"
RUN_STATUSES = ("queued", "running", "finished", "diverged", "failed")

DUPLICATE_HINT = ("keep the stored ones with --on-duplicate skip or overwrite them with --on-duplicate replace "
                  "(on_duplicate='skip' / 'replace' from Python)")

_RUNS_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    run_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued','running','finished','diverged','failed')),
    family TEXT,
    n_total REAL, n_nonembedding REAL, n_active REAL,
    tokens REAL, unique_tokens REAL,
    flops_6nd REAL, flops_with_attention REAL,
    final_loss REAL,
    budget REAL,
    config TEXT NOT NULL DEFAULT '{}',
    extra TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
""" + _RUNS_TABLE.replace("{name}", "runs") + """
CREATE TABLE IF NOT EXISTS curves (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    split TEXT NOT NULL,
    step INTEGER NOT NULL,
    tokens REAL NOT NULL,
    flops REAL NOT NULL,
    loss REAL,
    PRIMARY KEY (run_id, split, step)
);
CREATE TABLE IF NOT EXISTS fits (
    fit_id INTEGER PRIMARY KEY AUTOINCREMENT,
    law TEXT NOT NULL,
    selection TEXT NOT NULL,
    params TEXT NOT NULL,
    intervals TEXT NOT NULL,
    objective REAL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS samples (
    source TEXT NOT NULL,
    task TEXT NOT NULL,
    model TEXT NOT NULL,
    problem TEXT NOT NULL,
    sample_id TEXT NOT NULL,
    answer TEXT,
    correct INTEGER NOT NULL,
    score REAL,
    verdict INTEGER,
    tokens REAL,
    flops REAL,
    PRIMARY KEY (task, model, problem, sample_id)
);
CREATE TABLE IF NOT EXISTS problem_counts (
    source TEXT NOT NULL,
    task TEXT NOT NULL,
    model TEXT NOT NULL,
    problem TEXT NOT NULL,
    n INTEGER NOT NULL,
    c INTEGER NOT NULL,
    PRIMARY KEY (task, model, problem)
);
CREATE TABLE IF NOT EXISTS scores (
    source TEXT NOT NULL,
    model TEXT NOT NULL,
    run_id TEXT,
    n REAL, d REAL, c REAL, loss REAL,
    task TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (model, task, metric, source)
);
CREATE TABLE IF NOT EXISTS decisions (
    decision_id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    decision TEXT NOT NULL,
    policy_hash TEXT,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""


@dataclasses.dataclass
class Run:
    """One training run as the store keeps it. Counts carry their convention in their name."""

    run_id: str
    name: str
    source: str
    status: str = "finished"
    family: str | None = None
    n_total: float | None = None
    n_nonembedding: float | None = None
    n_active: float | None = None
    tokens: float | None = None
    unique_tokens: float | None = None
    flops_6nd: float | None = None
    flops_with_attention: float | None = None
    final_loss: float | None = None
    budget: float | None = None
    config: dict = dataclasses.field(default_factory=dict)
    extra: dict = dataclasses.field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0

    def params(self, convention: str = "n_total") -> float | None:
        """Parameter count under ``convention`` (``n_total``, ``n_nonembedding`` or ``n_active``)."""
        return getattr(self, _PARAM_FIELDS[convention])

    def flops(self, convention: str = "6ND") -> float | None:
        """Training compute under ``convention`` (``6ND`` or ``6ND+attn``)."""
        return getattr(self, _FLOP_FIELDS[convention])


_PARAM_FIELDS = {"n_total": "n_total", "N_total": "n_total", "n_nonembedding": "n_nonembedding",
                 "N_nonembedding": "n_nonembedding", "n_active": "n_active", "N_active": "n_active"}
_FLOP_FIELDS = {"6ND": "flops_6nd", "6ND+attn": "flops_with_attention"}
_RUN_COLUMNS = [f.name for f in dataclasses.fields(Run)]


def config_hash(config: dict) -> str:
    """Stable 16-hex-digit key of a JSON-serialisable config (sorted keys)."""
    blob = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


class StoreError(RuntimeError):
    """A store operation that would lose or corrupt data was refused."""


class RunStore:
    """SQLite run store (WAL journal). Use as a context manager or call :meth:`close`.

    Args:
        path: database file; created with the current schema if absent.
        readonly: open read-only (a dashboard reading while a ladder writes).
    """

    def __init__(self, path: str | Path = DEFAULT_STORE, *, readonly: bool = False):
        self.path = Path(path)
        if readonly:
            if not self.path.exists():
                raise FileNotFoundError(f"no run store at {self.path}")
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            self._allow_queued()
            found = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if found is None:
                with self._db:
                    self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(found[0]) > SCHEMA_VERSION:
                raise StoreError(f"{self.path} has schema version {found[0]}, newer than this scalinglab ({SCHEMA_VERSION})")
            elif int(found[0]) < SCHEMA_VERSION:  # older stores gain the new tables above; nothing else changed
                with self._db:
                    self._db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
        self._db.row_factory = sqlite3.Row

    def _allow_queued(self) -> None:
        """Stores written before the ``queued`` status existed get the runs table's status check widened
        (SQLite cannot alter a CHECK constraint, so the table is rebuilt in one transaction)."""
        sql = self._db.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='runs'").fetchone()[0]
        if "'queued'" in sql:
            return
        self._db.execute("PRAGMA foreign_keys=OFF")      # else dropping the old table would cascade to the curves
        with self._db:      # the documented rebuild: new table, copy, drop, rename (references follow the name)
            self._db.execute(_RUNS_TABLE.replace("{name}", "runs_new"))
            self._db.execute("INSERT INTO runs_new SELECT * FROM runs")
            self._db.execute("DROP TABLE runs")
            self._db.execute("ALTER TABLE runs_new RENAME TO runs")
        self._db.execute("PRAGMA foreign_keys=ON")

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    # runs ---------------------------------------------------------------------------------------
    def add_runs(self, runs: Sequence[Run], curves: dict[str, Iterable[dict]] | None = None, *,
                 on_duplicate: str = "error") -> int:
        """Insert runs (and optional curves keyed by run_id) in one transaction.

        Args:
            on_duplicate: ``"error"`` (refuse the whole batch, naming the clashing ids),
                ``"skip"`` (keep what is stored) or ``"replace"``.
        Returns:
            the number of runs written.
        """
        if on_duplicate not in {"error", "skip", "replace"}:
            raise ValueError(f"on_duplicate must be error, skip or replace, not {on_duplicate!r}")
        ids = [r.run_id for r in runs]
        existing = self._existing_ids(ids)
        if existing and on_duplicate == "error":
            shown = ", ".join(sorted(existing)[:10])
            raise StoreError(f"{len(existing)} run(s) already in {self.path}: {shown}; {DUPLICATE_HINT}")
        now = time.time()
        written = 0
        with self._db:
            for run in runs:
                if run.run_id in existing and on_duplicate == "skip":
                    continue
                self._write_run(run, now)
                written += 1
            for run_id, points in (curves or {}).items():
                if run_id in existing and on_duplicate == "skip":
                    continue
                self._write_curve(run_id, points)
        return written

    def upsert_run(self, run: Run) -> None:
        """Insert or update one run (the trainer marks runs queued, then finished, diverged or failed; progress
        marks them running)."""
        with self._db:
            self._write_run(run, time.time())

    def _write_run(self, run: Run, now: float) -> None:
        if run.status not in RUN_STATUSES:
            raise ValueError(f"status {run.status!r} is not one of {RUN_STATUSES}")
        row = dataclasses.asdict(run)
        row["config"] = json.dumps(run.config, sort_keys=True, default=str)
        row["extra"] = json.dumps(run.extra, sort_keys=True, default=str)
        old = self._db.execute("SELECT created_at FROM runs WHERE run_id=?", (run.run_id,)).fetchone()
        row["created_at"] = old[0] if old else (run.created_at or now)
        row["updated_at"] = now
        row = {k: _clean(v) for k, v in row.items()}
        cols = ", ".join(_RUN_COLUMNS)
        marks = ", ".join(f":{c}" for c in _RUN_COLUMNS)
        self._db.execute(f"INSERT OR REPLACE INTO runs ({cols}) VALUES ({marks})", row)

    def set_progress(self, run_id: str, progress: dict) -> None:
        """Record a run's latest progress (step, loss, tokens/s, ETA) for live views; a ``queued`` run that
        reports progress has started, so it becomes ``running``."""
        with self._db:
            self._db.execute("UPDATE runs SET extra = json_set(extra, '$.progress', json(?)), updated_at=?, "
                             "status = CASE status WHEN 'queued' THEN 'running' ELSE status END WHERE run_id=?",
                             (json.dumps(progress), time.time(), run_id))

    def _existing_ids(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for i in range(0, len(ids), 500):
            chunk = list(ids[i:i + 500])
            q = f"SELECT run_id FROM runs WHERE run_id IN ({','.join('?' * len(chunk))})"
            found.update(r[0] for r in self._db.execute(q, chunk))
        return found

    def run(self, run_id: str) -> Run | None:
        row = self._db.execute("SELECT * FROM runs WHERE run_id=?", (run_id,)).fetchone()
        return _row_to_run(row) if row else None

    def runs(self, *, status: str | Sequence[str] | None = None, source: str | None = None,
             family: str | None = None) -> list[Run]:
        """Runs, oldest first, optionally filtered by status, source and family."""
        q, args = "SELECT * FROM runs WHERE 1=1", []
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            q += f" AND status IN ({','.join('?' * len(statuses))})"
            args += statuses
        if source is not None:
            q += " AND source=?"
            args.append(source)
        if family is not None:
            q += " AND family=?"
            args.append(family)
        q += " ORDER BY created_at, run_id"
        return [_row_to_run(r) for r in self._db.execute(q, args)]

    def delete_runs(self, run_ids: Sequence[str]) -> None:
        with self._db:
            self._db.executemany("DELETE FROM curves WHERE run_id=?", [(i,) for i in run_ids])
            self._db.executemany("DELETE FROM runs WHERE run_id=?", [(i,) for i in run_ids])

    # curves -------------------------------------------------------------------------------------
    def add_curve(self, run_id: str, points: Iterable[dict]) -> None:
        """Append loss-curve points: dicts with split, step, tokens, flops, loss."""
        with self._db:
            self._write_curve(run_id, points)

    def _write_curve(self, run_id: str, points: Iterable[dict]) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO curves (run_id, split, step, tokens, flops, loss) VALUES (?,?,?,?,?,?)",
            [(run_id, p.get("split", "val"), int(p["step"]), float(p["tokens"]), float(p["flops"]),
              _clean(float(p["loss"])) if p.get("loss") is not None else None) for p in points])

    def curve(self, run_id: str, split: str = "val") -> list[dict]:
        rows = self._db.execute("SELECT step, tokens, flops, loss FROM curves WHERE run_id=? AND split=? ORDER BY step",
                                (run_id, split))
        return [dict(r) for r in rows]

    # fits ---------------------------------------------------------------------------------------
    def add_fit(self, law: str, selection: dict, params: dict, intervals: dict, objective: float | None,
                payload: dict) -> int:
        with self._db:
            cur = self._db.execute(
                "INSERT INTO fits (law, selection, params, intervals, objective, payload, created_at) VALUES (?,?,?,?,?,?,?)",
                (law, json.dumps(selection, default=str), json.dumps(params), json.dumps(intervals),
                 _clean(objective), json.dumps(payload, default=str), time.time()))
            return int(cur.lastrowid)

    def fit(self, fit_id: int) -> dict:
        row = self._db.execute("SELECT * FROM fits WHERE fit_id=?", (fit_id,)).fetchone()
        if row is None:
            raise KeyError(f"no fit with id {fit_id} in {self.path}")
        return _row_to_fit(row)

    def fits(self, law: str | None = None) -> list[dict]:
        q, args = "SELECT * FROM fits", []
        if law:
            q += " WHERE law=?"
            args.append(law)
        return [_row_to_fit(r) for r in self._db.execute(q + " ORDER BY fit_id", args)]

    # samples (test-time compute) -----------------------------------------------------------------
    def _insert(self, table: str, columns: Sequence[str], rows: Iterable[dict], on_duplicate: str) -> None:
        """INSERT (``error``), INSERT OR IGNORE (``skip``) or INSERT OR REPLACE (``replace``) rows; the caller
        holds the transaction."""
        verb = {"error": "INSERT", "skip": "INSERT OR IGNORE", "replace": "INSERT OR REPLACE"}[on_duplicate]
        marks = ", ".join(f":{c}" for c in columns)
        self._db.executemany(f"{verb} INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                             [{c: r.get(c) for c in columns} for r in rows])

    def add_samples(self, rows: Sequence[dict], counts: Sequence[dict] = (), *, on_duplicate: str = "error") -> int:
        """Insert per-sample rows and/or per-problem counts in one transaction (all or nothing)."""
        try:
            with self._db:
                self._insert("samples", ("source", "task", "model", "problem", "sample_id", "answer", "correct", "score",
                                         "verdict", "tokens", "flops"), rows, on_duplicate)
                self._insert("problem_counts", ("source", "task", "model", "problem", "n", "c"), counts, on_duplicate)
        except sqlite3.IntegrityError as e:
            raise StoreError(f"samples already in {self.path} ({e}); {DUPLICATE_HINT}") from None
        return len(rows) + len(counts)

    def _select(self, table: str, order: str, **equal) -> list[dict]:
        """Rows of ``table`` whose columns equal the given non-None values."""
        q, args = f"SELECT * FROM {table} WHERE 1=1", []
        for col, val in equal.items():
            if val is not None:
                q += f" AND {col}=?"
                args.append(val)
        return [dict(r) for r in self._db.execute(f"{q} ORDER BY {order}", args)]

    def samples(self, task: str | None = None, model: str | None = None) -> list[dict]:
        return self._select("samples", "task, model, problem, sample_id", task=task, model=model)

    def problem_counts(self, task: str | None = None, model: str | None = None) -> list[dict]:
        return self._select("problem_counts", "task, model, problem", task=task, model=model)

    # downstream scores ---------------------------------------------------------------------------
    def add_scores(self, rows: Sequence[dict], *, on_duplicate: str = "replace") -> int:
        try:
            with self._db:
                self._insert("scores", ("source", "model", "run_id", "n", "d", "c", "loss", "task", "metric", "value"), rows,
                             on_duplicate)
        except sqlite3.IntegrityError as e:
            raise StoreError(f"scores already in {self.path} ({e}); {DUPLICATE_HINT}") from None
        return len(rows)

    def scores(self, task: str | None = None, metric: str | None = None) -> list[dict]:
        return self._select("scores", "c, model", task=task, metric=metric)

    # decisions ----------------------------------------------------------------------------------
    def add_decision(self, kind: str, subject: str, decision: str, payload: dict, policy_hash: str | None = None) -> int:
        with self._db:
            cur = self._db.execute(
                "INSERT INTO decisions (kind, subject, decision, policy_hash, payload, created_at) VALUES (?,?,?,?,?,?)",
                (kind, subject, decision, policy_hash, json.dumps(payload, default=str), time.time()))
            return int(cur.lastrowid)

    def decisions(self) -> list[dict]:
        out = []
        for r in self._db.execute("SELECT * FROM decisions ORDER BY decision_id"):
            d = dict(r)
            d["payload"] = json.loads(d["payload"])
            out.append(d)
        return out

    def schema_version(self) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])


def _row_to_run(row: sqlite3.Row) -> Run:
    d = dict(row)
    d["config"] = json.loads(d["config"])
    d["extra"] = json.loads(d["extra"])
    return Run(**d)


def _row_to_fit(row: sqlite3.Row) -> dict:
    d = dict(row)
    for key in ("selection", "params", "intervals", "payload"):
        d[key] = json.loads(d[key])
    return d
