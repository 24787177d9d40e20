import sqlite3

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
        assert st.schema_version() == 3
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
