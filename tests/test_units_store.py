import sqlite3

import numpy as np
import pytest

from scalinglab._units import format_quantity, parse_quantity
from scalinglab.store import Run, RunStore, StoreError, config_hash


@pytest.mark.parametrize("text,value", [("1.2B", 1.2e9), ("3e9", 3e9), ("500M", 5e8), ("70k", 7e4), ("1,000", 1000.0),
                                        (" 2T ", 2e12), (42, 42.0), ("1e-3", 1e-3)])
def test_parse_quantity(text, value):
    assert parse_quantity(text) == pytest.approx(value)


@pytest.mark.parametrize("bad", ["abc", "1.2X", "", True, None])
def test_parse_quantity_rejects(bad):
    with pytest.raises(ValueError):
        parse_quantity(bad)


def test_format_quantity():
    assert format_quantity(1.23e9) == "1.23B"
    assert format_quantity(5e5) == "500k"


def _run(i, **kw):
    return Run(run_id=config_hash({"i": i}), name=f"r{i}", source="test", n_total=1e6 * (i + 1), tokens=1e8,
               flops_6nd=6e14 * (i + 1), final_loss=3.0, **kw)


def test_store_schema_wal_and_roundtrip(tmp_path):
    path = tmp_path / "s.db"
    with RunStore(path) as st:
        assert st.schema_version() == 4
        st.add_runs([_run(0), _run(1, status="diverged")], curves={_run(0).run_id: [
            {"step": 1, "tokens": 10, "flops": 60, "loss": 5.0}, {"step": 2, "tokens": 20, "flops": 120, "loss": 4.0}]})
        assert [r.name for r in st.runs(status="finished")] == ["r0"]
        assert [p["loss"] for p in st.curve(_run(0).run_id)] == [5.0, 4.0]
        fid = st.add_fit("chinchilla", {"a": 1}, {"E": 1.0}, {"E": [0.9, 1.1]}, 0.1, {"law": "chinchilla"})
        assert st.fit(fid)["intervals"]["E"] == [0.9, 1.1]
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with RunStore(path, readonly=True) as ro:
        assert len(ro.runs()) == 2
        with pytest.raises(sqlite3.OperationalError):
            ro._db.execute("DELETE FROM runs")


def test_duplicates_refused_and_nothing_written(tmp_path):
    with RunStore(tmp_path / "s.db") as st:
        st.add_runs([_run(0)])
        with pytest.raises(StoreError, match="already in"):
            st.add_runs([_run(1), _run(0)])
        assert len(st.runs()) == 1          # r1 was not written either
        assert st.add_runs([_run(1), _run(0)], on_duplicate="skip") == 1
        assert len(st.runs()) == 2


def test_config_hash_is_order_independent():
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_curves_stored_as_arrays_roundtrip_exactly(tmp_path):
    rng = np.random.default_rng(0)
    step = np.arange(0, 5000, 7)
    affine = {"step": step, "tokens": step * 524288.0, "flops": step * 524288.0 * 6 * 1.234567e8,
              "loss": 3 + rng.normal(0, 0.01, step.size)}
    ragged = {"step": step[::-1], "tokens": np.cumsum(rng.random(step.size))[::-1], "flops": rng.random(step.size),
              "loss": np.where(step % 3 == 0, np.nan, rng.random(step.size))[::-1], "split": "train"}
    with RunStore(tmp_path / "s.db") as st:
        st.add_runs([_run(0), _run(1)], curves={_run(0).run_id: affine, _run(1).run_id: ragged})
        got = st.curves()
        assert set(got) == {_run(0).run_id}                          # split "val" by default
        for k in ("step", "tokens", "flops", "loss"):
            np.testing.assert_array_equal(got[_run(0).run_id][k], affine[k])
            np.testing.assert_array_equal(st.curves(split="train")[_run(1).run_id][k], ragged[k][::-1])
        pts = st.curve(_run(1).run_id, "train")
        assert pts[0]["loss"] is None and pts[1]["step"] == 7 and isinstance(pts[1]["step"], int)
        # points at stored steps replace them; new steps are added in order
        st.add_curve(_run(0).run_id, [{"step": 7, "tokens": 1.0, "flops": 2.0, "loss": 9.0},
                                      {"step": 5001, "tokens": 3.0, "flops": 4.0, "loss": None}])
        c = st.curves([_run(0).run_id])[_run(0).run_id]
        assert c["step"].size == step.size + 1 and c["loss"][1] == 9.0 and c["tokens"][1] == 1.0
        assert c["step"][-1] == 5001 and np.isnan(c["loss"][-1])
        st.delete_runs([_run(0).run_id])
        assert st.curve(_run(0).run_id) == []


def _schema3_store(path, n_runs, n_points):
    db = sqlite3.connect(path)
    db.executescript("""
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO meta VALUES ('schema_version', '3');
    CREATE TABLE runs (run_id TEXT PRIMARY KEY, name TEXT NOT NULL, source TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('queued','running','finished','diverged','failed')), family TEXT,
        n_total REAL, n_nonembedding REAL, n_active REAL, tokens REAL, unique_tokens REAL, flops_6nd REAL,
        flops_with_attention REAL, final_loss REAL, budget REAL, config TEXT NOT NULL DEFAULT '{}',
        extra TEXT NOT NULL DEFAULT '{}', created_at REAL NOT NULL, updated_at REAL NOT NULL);
    CREATE TABLE curves (run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE, split TEXT NOT NULL,
        step INTEGER NOT NULL, tokens REAL NOT NULL, flops REAL NOT NULL, loss REAL, PRIMARY KEY (run_id, split, step));
    """)
    rows = []
    for i in range(n_runs):
        db.execute("INSERT INTO runs VALUES (?, ?, 'x', 'finished', NULL, 1, NULL, 1, 1, NULL, 6, NULL, 3, NULL, "
                   "'{}', '{}', ?, 0)", (f"r{i}", f"r{i}", i))
        rows += [(f"r{i}", split, s, s * 10.0 + i, s * 60.0 + i, None if s == 3 else 5.0 / (s + 1) + i)
                 for split in ("val", "train") for s in range(n_points)]
    db.executemany("INSERT INTO curves VALUES (?,?,?,?,?,?)", rows)
    db.commit()
    db.close()
    return rows


def test_schema3_store_read_only_then_migrated_to_arrays(tmp_path):
    path = tmp_path / "old.db"
    rows = _schema3_store(path, n_runs=4, n_points=50)
    want = {(r, sp, s): {"step": s, "tokens": t, "flops": f, "loss": v} for r, sp, s, t, f, v in rows}
    with RunStore(path, readonly=True) as ro:                      # read as it is, nothing written
        assert ro.curve("r2", "train") == [want[("r2", "train", s)] for s in range(50)]
        assert ro.schema_version() == 3
    with RunStore(path) as st:
        assert st.schema_version() == 4
        assert st._db.execute("SELECT name FROM sqlite_master WHERE name='curves'").fetchone() is None
        for r in ("r0", "r3"):
            for sp in ("val", "train"):
                assert st.curve(r, sp) == [want[(r, sp, s)] for s in range(50)]
        assert sorted(st.curves()) == ["r0", "r1", "r2", "r3"]


def test_a_second_writer_joins_a_store_another_has_just_created(tmp_path):
    """A store file that exists but is still empty (another writer's connect before its schema) is started, not
    refused; a reader meanwhile gets a clear error, never a traceback."""
    import sqlite3
    path = tmp_path / "s.db"
    path.touch()                                            # created, no page written yet
    with pytest.raises(StoreError, match="empty file"):
        RunStore(path, readonly=True)
    with RunStore(path) as st:
        assert st.runs() == []
    path2 = tmp_path / "t.db"
    sqlite3.connect(path2).execute("PRAGMA journal_mode=WAL").fetchone()   # an SQLite file without any table
    with RunStore(path2) as st:
        assert st.schema_version() > 0
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE experiments (id INTEGER)")
    with pytest.raises(StoreError, match="not a scalinglab store"):
        RunStore(other)
