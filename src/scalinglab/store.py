"""The run store: one SQLite file (WAL) holding runs, loss curves, fits and decisions.

Everything meets here: the trainer and the importers write runs, the fitter reads runs and writes
fits, the report reads everything. Writes are transactions, so a failed import writes nothing.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import sqlite3
import struct
import time
import zlib
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

SCHEMA_VERSION = 4
DEFAULT_STORE = "scalinglab.db"
LEASE_STALE_S = 120.0    # a driver that has not renewed its leases for this long has stopped
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
CREATE TABLE IF NOT EXISTS curve_arrays (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    split TEXT NOT NULL,
    n_points INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (run_id, split)
);
CREATE TABLE IF NOT EXISTS leases (
    key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    heartbeat REAL NOT NULL
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
CREATE TABLE IF NOT EXISTS public_models (
    collection TEXT NOT NULL,
    model TEXT NOT NULL,
    family TEXT,
    n REAL, n_active REAL, d REAL, c REAL,
    date TEXT,
    reference TEXT,
    scores TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (collection, model)
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


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _check_header(path: Path) -> None:
    """Refuse a file that is not an SQLite database before SQLite would take it for an empty one."""
    with open(path, "rb") as f:
        head = f.read(len(_SQLITE_MAGIC))
    if head != _SQLITE_MAGIC:
        what = "an empty file" if not head else "not an SQLite database"
        raise StoreError(f"{path} is not a scalinglab store ({what}); give --store a store file, or a new path to "
                         "start one")


def _explain_open_error(path: Path, e: sqlite3.DatabaseError, readonly: bool) -> str:
    text = str(e)
    if "not a database" in text:
        return f"{path} is not a scalinglab store (not an SQLite database: {text})"
    if "malformed" in text or "corrupt" in text or isinstance(e, sqlite3.DatabaseError) and "disk image" in text:
        return (f"{path} is corrupt ({text}); nothing was changed. SQLite's `.recover` command may save its contents "
                "into a new file")
    if "locked" in text or "busy" in text:
        return f"{path} is locked by another process (waited 30 s): {text}; try again when it is done"
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return (f"cannot {'read' if readonly else 'write'} {path}: {text} (a read-only file or folder?). Reading "
                "commands (runs, export, report, serve) open a read-only store")
    return f"{path} cannot be opened as a run store: {text}"


class RunStore:
    """SQLite run store (WAL journal). Use as a context manager or call :meth:`close`.

    Args:
        path: database file; created with the current schema if absent.
        readonly: open read-only (a dashboard reading while a ladder writes).
    """

    def __init__(self, path: str | Path = DEFAULT_STORE, *, readonly: bool = False):
        self.path = Path(path)
        self._db = None
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a directory, not a run store file (give --store a file such as {DEFAULT_STORE})")
        if readonly and not self.path.exists():
            raise FileNotFoundError(f"no run store at {self.path}")
        try:
            self._open(readonly)
        except (sqlite3.DatabaseError, StoreError) as e:
            if self._db is not None:
                self._db.close()
                self._db = None
            if isinstance(e, StoreError):
                raise
            raise StoreError(_explain_open_error(self.path, e, readonly)) from None

    def _open(self, readonly: bool) -> None:
        # a writer starts a store in an empty file, or one another writer has just created (no tables yet)
        existed = self.path.exists() and (readonly or self.path.stat().st_size > 0)
        if existed:
            _check_header(self.path)
        if readonly:
            try:
                self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
                self._db.execute("SELECT 1 FROM sqlite_master").fetchone()
            except sqlite3.OperationalError:   # a read-only folder: no shared-memory file can be made beside it
                if self._db is not None:
                    self._db.close()
                self._db = sqlite3.connect(f"file:{self.path}?immutable=1", uri=True, timeout=30)
            self._check_existing()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30)
            if existed and self._db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is not None:
                self._check_existing()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            self._allow_queued()
            found = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if found is None:
                with self._db:
                    self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(found[0]) < SCHEMA_VERSION:  # older stores gain the new tables above and their curves as arrays
                with self._db:
                    self._migrate_curves()
                    self._db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
        self._db.row_factory = sqlite3.Row
        # a read-only store older than schema 4 keeps its curves one row per point until opened for writing
        self._point_rows = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='curves'").fetchone() is not None

    def _check_existing(self) -> None:
        """An existing file must already be a scalinglab store (another program's SQLite file is never written)
        of a schema this version can read."""
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"meta", "runs"} <= tables or self._db.execute(
                "SELECT 1 FROM meta WHERE key='schema_version'").fetchone() is None:
            raise StoreError(f"{self.path} is not a scalinglab store: an SQLite database without the store's tables "
                             f"(found: {', '.join(sorted(tables)) or 'none'}); give --store a store file or a new path")
        version = int(self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path} has schema version {version}, newer than this scalinglab ({SCHEMA_VERSION}): "
                             "upgrade scalinglab (pip install -U scalinglab) to read it")

    def _migrate_curves(self) -> None:
        """Schema 3 -> 4: curves kept one row per point become one compressed array per (run, split)."""
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='curves'").fetchone() is None:
            return
        rows = self._db.execute("SELECT run_id, split, step, tokens, flops, loss FROM curves ORDER BY run_id, split, step")
        for (run_id, split), pts in itertools.groupby(rows, key=lambda r: (r[0], r[1])):
            pts = list(pts)
            self._put_curve(run_id, split, _columns_from_points([dict(zip(_CURVE_FIELDS, p[2:])) for p in pts]))
        self._db.execute("DROP TABLE curves")

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
    def add_runs(self, runs: Sequence[Run], curves: dict[str, Iterable[dict] | Mapping] | None = None, *,
                 on_duplicate: str = "error") -> int:
        """Insert runs (and optional curves keyed by run_id) in one transaction, as batched statements.

        Args:
            curves: per run_id, point dicts (see :meth:`add_curve`) or one mapping of columns.
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
        keep = [r for r in runs if not (r.run_id in existing and on_duplicate == "skip")]
        created = self._created_at([r.run_id for r in keep if r.run_id in existing])
        now = time.time()
        with self._db:
            self._db.executemany(self._insert_run_sql, [self._run_row(r, now, created.get(r.run_id)) for r in keep])
            for run_id, points in (curves or {}).items():
                if run_id in existing and on_duplicate == "skip":
                    continue
                self._write_curve(run_id, points)
        return len(keep)

    def upsert_run(self, run: Run) -> None:
        """Insert or update one run (the trainer marks runs queued, then finished, diverged or failed; progress
        marks them running)."""
        with self._db:
            self._write_run(run, time.time())

    def add_queued(self, runs: Sequence[Run]) -> None:
        """Placeholders for runs about to be trained; a run already stored (perhaps by another driver on the
        same store) is left as it is."""
        now = time.time()
        with self._db:
            self._db.executemany(self._insert_run_sql.replace("OR REPLACE", "OR IGNORE", 1),
                                 [self._run_row(r, now, None) for r in runs])

    _insert_run_sql = (f"INSERT OR REPLACE INTO runs ({', '.join(_RUN_COLUMNS)}) "
                       f"VALUES ({', '.join(':' + c for c in _RUN_COLUMNS)})")

    def _write_run(self, run: Run, now: float) -> None:
        self._db.execute(self._insert_run_sql, self._run_row(run, now, self._created_at([run.run_id]).get(run.run_id)))

    @staticmethod
    def _run_row(run: Run, now: float, created_at: float | None) -> dict:
        if run.status not in RUN_STATUSES:
            raise ValueError(f"status {run.status!r} is not one of {RUN_STATUSES}")
        row = {c: _clean(getattr(run, c)) for c in _RUN_COLUMNS}
        row["config"] = json.dumps(run.config, sort_keys=True, default=str)
        row["extra"] = json.dumps(run.extra, sort_keys=True, default=str)
        row["created_at"] = created_at if created_at is not None else (run.created_at or now)
        row["updated_at"] = now
        return row

    def _created_at(self, ids: Sequence[str]) -> dict[str, float]:
        found: dict[str, float] = {}
        for i in range(0, len(ids), 500):
            chunk = list(ids[i:i + 500])
            q = f"SELECT run_id, created_at FROM runs WHERE run_id IN ({','.join('?' * len(chunk))})"
            found.update((r[0], r[1]) for r in self._db.execute(q, chunk))
        return found

    def set_progress(self, run_id: str, progress: dict) -> None:
        """Record a run's latest progress (step, loss, tokens/s, ETA) for live views; a ``queued`` run that
        reports progress has started, so it becomes ``running``."""
        with self._db:
            self._db.execute("UPDATE runs SET extra = json_set(extra, '$.progress', json(?)), updated_at=?, "
                             "status = CASE status WHEN 'queued' THEN 'running' ELSE status END WHERE run_id=?",
                             (json.dumps(progress), time.time(), run_id))

    def claim(self, key: str, owner: str, *, stale_after: float = LEASE_STALE_S) -> bool:
        """Take the lease on ``key`` (a run or a WSD trunk) for ``owner`` unless another owner renewed it in the
        last ``stale_after`` seconds (then it is taken over: that driver stopped). True when ``owner`` holds it.

        Drivers sharing one store claim each run just before training it, so they split the work."""
        now = time.time()
        with self._db:    # one statement under SQLite's write lock: two drivers cannot both win
            self._db.execute("INSERT INTO leases VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET owner=excluded.owner, "
                             "heartbeat=excluded.heartbeat WHERE leases.owner=excluded.owner OR leases.heartbeat < ?",
                             (key, owner, now, now - stale_after))
            row = self._db.execute("SELECT owner FROM leases WHERE key=?", (key,)).fetchone()
        return row[0] == owner

    def renew_leases(self, owner: str) -> None:
        """Heartbeat: every lease ``owner`` holds stays fresh."""
        with self._db:
            self._db.execute("UPDATE leases SET heartbeat=? WHERE owner=?", (time.time(), owner))

    def break_lease(self, key: str, owner: str) -> None:
        """Drop the lease on ``key`` if ``owner`` (known to have stopped) still holds it."""
        with self._db:
            self._db.execute("DELETE FROM leases WHERE key=? AND owner=?", (key, owner))

    def release_leases(self, owner: str) -> None:
        with self._db:
            self._db.execute("DELETE FROM leases WHERE owner=?", (owner,))

    def lease(self, key: str) -> dict | None:
        """Who holds the lease on ``key`` and how many seconds ago they last renewed it (None: nobody)."""
        row = self._db.execute("SELECT owner, heartbeat FROM leases WHERE key=?", (key,)).fetchone()
        return None if row is None else {"owner": row[0], "age_s": time.time() - row[1]}

    def _existing_ids(self, ids: Sequence[str]) -> set[str]:
        return set(self._created_at(ids))

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
            self._db.executemany("DELETE FROM curve_arrays WHERE run_id=?", [(i,) for i in run_ids])
            self._db.executemany("DELETE FROM runs WHERE run_id=?", [(i,) for i in run_ids])

    # curves -------------------------------------------------------------------------------------
    def add_curve(self, run_id: str, points: Iterable[dict] | Mapping) -> None:
        """Add loss-curve points: dicts with split, step, tokens, flops, loss, or one mapping of columns
        (arrays ``step``, ``tokens``, ``flops``, ``loss`` and a ``split``). Points at a step already stored
        for that split replace it."""
        with self._db:
            self._write_curve(run_id, points)

    def _write_curve(self, run_id: str, points: Iterable[dict] | Mapping) -> None:
        if isinstance(points, Mapping):
            by_split = {points.get("split", "val"): _columns_from_arrays(points)}
        else:
            groups: dict[str, list[dict]] = {}
            for p in points:
                groups.setdefault(p.get("split", "val"), []).append(p)
            by_split = {split: _columns_from_points(pts) for split, pts in groups.items()}
        for split, cols in by_split.items():
            old = self._db.execute("SELECT data FROM curve_arrays WHERE run_id=? AND split=?", (run_id, split)).fetchone()
            if old is not None:
                cols = _merge_columns(_unpack_curve(old[0]), cols)
            self._put_curve(run_id, split, cols)

    def _put_curve(self, run_id: str, split: str, cols: dict) -> None:
        self._db.execute("INSERT OR REPLACE INTO curve_arrays (run_id, split, n_points, data) VALUES (?,?,?,?)",
                         (run_id, split, len(cols["step"]), _pack_curve(cols)))

    def curve(self, run_id: str, split: str = "val") -> list[dict]:
        """One run's curve as point dicts (step, tokens, flops, loss), by step."""
        cols = self.curves([run_id], split).get(run_id)
        if cols is None:
            return []
        loss = [None if v != v else v for v in cols["loss"].tolist()]        # NaN marks a missing loss
        return [{"step": s, "tokens": t, "flops": f, "loss": v}
                for s, t, f, v in zip(cols["step"].tolist(), cols["tokens"].tolist(), cols["flops"].tolist(), loss)]

    def curves(self, run_ids: Sequence[str] | None = None, split: str = "val") -> dict[str, dict]:
        """Curves of many runs in one query: ``{run_id: {"step", "tokens", "flops", "loss": numpy arrays}}``
        (a missing loss is NaN); all runs with a curve when ``run_ids`` is None."""
        if self._point_rows:
            return self._curves_from_point_rows(run_ids, split)
        q, args = "SELECT run_id, data FROM curve_arrays WHERE split=?", [split]
        if run_ids is None:
            return {r[0]: _unpack_curve(r[1]) for r in self._db.execute(q, args)}
        wanted = list(run_ids)
        out: dict[str, dict] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            rows = self._db.execute(f"{q} AND run_id IN ({','.join('?' * len(chunk))})", args + chunk)
            out.update((r[0], _unpack_curve(r[1])) for r in rows)
        return out

    def _curves_from_point_rows(self, run_ids, split) -> dict[str, dict]:
        wanted = None if run_ids is None else set(run_ids)
        rows = self._db.execute("SELECT run_id, step, tokens, flops, loss FROM curves WHERE split=? "
                                "ORDER BY run_id, step", (split,))
        return {run_id: _columns_from_points([dict(zip(_CURVE_FIELDS, p[1:])) for p in pts])
                for run_id, pts in itertools.groupby(rows, key=lambda r: r[0]) if wanted is None or run_id in wanted}

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

    # public model tables (observational laws, trends) ---------------------------------------------
    def add_public_models(self, rows: Sequence[dict], *, on_duplicate: str = "error") -> int:
        """Insert rows of a public model table (``collection, model, family, n, n_active, d, c, date, reference``
        and ``scores``, a dict benchmark -> score in [0, 1]) in one transaction (all or nothing)."""
        cols = ("collection", "model", "family", "n", "n_active", "d", "c", "date", "reference", "scores")
        rows = [{**r, "scores": json.dumps(r.get("scores") or {}, sort_keys=True)} for r in rows]
        try:
            with self._db:
                self._insert("public_models", cols, rows, on_duplicate)
        except sqlite3.IntegrityError as e:
            raise StoreError(f"models already in {self.path} ({e}); {DUPLICATE_HINT}") from None
        return len(rows)

    def public_models(self, collection: str | None = None) -> list[dict]:
        """Rows of the public model tables (all collections, or one); a read-only store older than the table
        has none."""
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='public_models'").fetchone() is None:
            return []
        rows = self._select("public_models", "collection, date, model", collection=collection)
        return [{**r, "scores": json.loads(r["scores"])} for r in rows]

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


# curves as arrays -------------------------------------------------------------------------------
# One blob per (run, split): a header, then the columns zlib-compressed with their bytes shuffled
# (byte k of every value together, which is what makes float64 curves compress). tokens and flops are
# usually step x a constant; then only the constant is kept. numpy is imported on use, so opening the
# store stays light.
_CURVE_FIELDS = ("step", "tokens", "flops", "loss")
_CURVE_MAGIC = b"SLC1"
_CURVE_HEADER = struct.Struct("<4sIBdd")          # magic, points, per-step flags (tokens, flops), both ratios


def _columns_from_points(points: Sequence[dict]) -> dict:
    import numpy as np
    return _columns_from_arrays({
        "step": np.fromiter((int(p["step"]) for p in points), np.int64, len(points)),
        "tokens": np.fromiter((float(p["tokens"]) for p in points), float, len(points)),
        "flops": np.fromiter((float(p["flops"]) for p in points), float, len(points)),
        "loss": np.fromiter((np.nan if p.get("loss") is None else float(p["loss"]) for p in points), float,
                            len(points))})


def _columns_from_arrays(cols: Mapping) -> dict:
    """Validated columns sorted by step, the last value kept where a step repeats; non-finite losses -> NaN."""
    import numpy as np
    step = np.asarray(cols["step"], dtype=np.int64)
    out = {"step": step, **{k: np.asarray(cols[k], dtype=float).reshape(-1) for k in ("tokens", "flops")}}
    loss = cols.get("loss")
    out["loss"] = np.full(step.size, np.nan) if loss is None else np.array(loss, dtype=float).reshape(-1)  # None -> NaN
    out["loss"][~np.isfinite(out["loss"])] = np.nan
    if any(out[k].shape != step.shape for k in _CURVE_FIELDS):
        raise ValueError(f"curve columns differ in length: {({k: out[k].size for k in _CURVE_FIELDS})}")
    order = np.argsort(step, kind="stable")
    if step.size and (np.diff(step[order]) == 0).any():                  # a repeated step: the last one wins
        _, last = np.unique(step[order][::-1], return_index=True)
        order = order[::-1][last]
    return {k: v[order] for k, v in out.items()}


def _merge_columns(old: dict, new: dict) -> dict:
    import numpy as np
    return _columns_from_arrays({k: np.concatenate([old[k], new[k]]) for k in _CURVE_FIELDS})


def _shuffle(a) -> bytes:
    return a.view("u1").reshape(-1, a.itemsize).T.tobytes()


def _unshuffle(buf: bytes, dtype, n: int):
    import numpy as np
    dt = np.dtype(dtype)
    return np.frombuffer(buf, np.uint8).reshape(dt.itemsize, n).T.copy().view(dt).reshape(n)


def _pack_curve(cols: dict) -> bytes:
    import numpy as np
    step = cols["step"].astype("<i8")
    flags, ratios, stored = 0, [0.0, 0.0], [step]
    for i, key in enumerate(("tokens", "flops")):
        x = cols[key].astype("<f8")
        r = float(x[-1] / step[-1]) if step.size and step[-1] else 0.0
        if step.size and np.array_equal(step * r, x):
            flags |= 1 << i
            ratios[i] = r
        else:
            stored.append(x)
    stored.append(cols["loss"].astype("<f8"))
    body = b"".join(_shuffle(a) for a in stored)
    return _CURVE_HEADER.pack(_CURVE_MAGIC, step.size, flags, *ratios) + zlib.compress(body, 6)


def _unpack_curve(blob: bytes) -> dict:
    magic, n, flags, *ratios = _CURVE_HEADER.unpack_from(blob)
    if magic != _CURVE_MAGIC:
        raise StoreError(f"unknown curve encoding {magic!r}")
    body = zlib.decompress(blob[_CURVE_HEADER.size:])
    step = _unshuffle(body[:8 * n], "<i8", n)
    out, at = {"step": step}, 8 * n
    for i, key in enumerate(("tokens", "flops")):
        if flags & (1 << i):
            out[key] = step * ratios[i]
        else:
            out[key] = _unshuffle(body[at:at + 8 * n], "<f8", n)
            at += 8 * n
    out["loss"] = _unshuffle(body[at:at + 8 * n], "<f8", n)
    return out
